//! Cumulative histograms since start, with the OpenTelemetry GenAI bucket bounds.

/// `gen_ai.client.operation.duration` and `gen_ai.server.time_to_first_token` buckets, seconds.
pub const DURATION_BOUNDS_S: [f64; 14] =
    [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92];
/// `gen_ai.server.time_per_output_token` buckets, seconds.
pub const TIME_PER_OUTPUT_TOKEN_BOUNDS_S: [f64; 13] =
    [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5];
/// `gen_ai.client.token.usage` buckets, tokens.
pub const TOKEN_USAGE_BOUNDS: [f64; 14] = [
    1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0, 16777216.0,
    67108864.0,
];

/// A histogram with fixed upper bounds (inclusive, like Prometheus `le`), counted since start.
#[derive(Debug, Clone, PartialEq)]
pub struct FixedHistogram {
    pub bounds: &'static [f64],
    /// `counts[i]`: observations in (`bounds[i-1]`, `bounds[i]`]; the last, `counts[bounds.len()]`, those above.
    pub counts: Vec<u64>,
    pub sum: f64,
    pub count: u64,
}

impl FixedHistogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        Self { bounds, counts: vec![0; bounds.len() + 1], sum: 0.0, count: 0 }
    }

    pub fn record(&mut self, value: f64) {
        if value.is_nan() {
            return;
        }
        let index = self.bounds.partition_point(|bound| *bound < value);
        if let Some(slot) = self.counts.get_mut(index) {
            *slot += 1;
        }
        self.sum += value;
        self.count += 1;
    }
}

/// Since start, per (route, model, operation, outcome). `duration_s.count` is the number of requests. Token
/// usage is recorded when the count is non-zero; TTFT and time per output token for successful streamed
/// requests (the latter when more than one token came: (latency − TTFT) / (output tokens − 1)).
#[derive(Debug, Clone, PartialEq)]
pub struct CumulativeStats {
    pub route: String,
    pub model: String,
    pub operation: String,
    /// `None` for successes.
    pub error_type: Option<String>,
    pub duration_s: FixedHistogram,
    pub ttft_s: FixedHistogram,
    pub time_per_output_token_s: FixedHistogram,
    pub input_tokens: FixedHistogram,
    pub output_tokens: FixedHistogram,
}
