//! Rolling-window storage: tiers of time buckets holding samples as sparse HDR bins, merged into
//! percentiles at query time.
use super::{Percentiles, RequestObservation};
use hdrhistogram::Histogram;
use std::collections::VecDeque;

pub(super) const FINE_MS: i64 = 10_000;
pub(super) const COARSE_MS: i64 = 60_000;

/// A rolling window; its edge has bucket granularity (see the `requests` module comment).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Window {
    OneMinute,
    FiveMinutes,
    OneHour,
}

impl Window {
    pub(super) const ALL: [Window; 3] = [Self::OneMinute, Self::FiveMinutes, Self::OneHour];

    pub(super) fn secs(self) -> u64 {
        [60, 300, 3600][self as usize]
    }

    /// Bucket width and how many buckets, the current one included, the window covers.
    pub(super) fn buckets(self) -> (i64, i64) {
        [(FINE_MS, 6), (FINE_MS, 30), (COARSE_MS, 60)][self as usize]
    }
}

pub(super) struct Series {
    pub(super) fine: Tier,
    pub(super) coarse: Tier,
}

pub(super) struct Tier {
    width_ms: i64,
    kept: i64,
    /// Sorted by index; only buckets that saw a request.
    pub(super) buckets: VecDeque<Bucket>,
}

#[derive(Default)]
pub(super) struct Bucket {
    pub(super) index: i64,
    pub(super) requests: u64,
    pub(super) errors: u64,
    pub(super) input_tokens: u64,
    pub(super) output_tokens: u64,
    pub(super) decode_tokens: u64,
    pub(super) decode_ms: f64,
    pub(super) cost_usd: f64,
    pub(super) latency: Sparse,
    pub(super) ttft: Sparse,
    pub(super) inter_token: Sparse,
}

/// Samples as (HDR bin's lowest value in µs, count), sorted by bin.
#[derive(Default)]
pub(super) struct Sparse(pub(super) Vec<(u32, u32)>);

impl Tier {
    pub(super) fn new(width_ms: i64, kept: i64) -> Self {
        Self { width_ms, kept, buckets: VecDeque::new() }
    }

    pub(super) fn prune(&mut self, now_ms: i64) {
        let oldest = now_ms.div_euclid(self.width_ms) - self.kept + 1;
        while self.buckets.front().is_some_and(|bucket| bucket.index < oldest) {
            self.buckets.pop_front();
        }
        if self.buckets.capacity() > 4 * self.buckets.len().max(4) {
            self.buckets.shrink_to_fit();
        }
    }

    pub(super) fn bucket_mut(&mut self, at_ms: i64) -> &mut Bucket {
        let index = at_ms.div_euclid(self.width_ms);
        let position = self.buckets.binary_search_by_key(&index, |bucket| bucket.index).unwrap_or_else(|position| {
            // The bucket before a new last one is done growing: give back the spare capacity.
            let appending = position == self.buckets.len();
            if let Some(done) = self.buckets.back_mut().filter(|_| appending) {
                for sparse in [&mut done.latency, &mut done.ttft, &mut done.inter_token] {
                    sparse.0.shrink_to_fit();
                }
            }
            self.buckets.insert(position, Bucket { index, ..Bucket::default() });
            position
        });
        &mut self.buckets[position]
    }
}

impl Bucket {
    pub(super) fn record(&mut self, obs: &RequestObservation<'_>, bins: Option<&Histogram<u64>>) {
        self.requests += 1;
        self.errors += u64::from(obs.error_type.is_some());
        self.input_tokens += obs.input_tokens;
        self.output_tokens += obs.output_tokens;
        self.latency.record(bin(bins, obs.latency_ms));
        if let Some(ttft_ms) = obs.ttft_ms {
            self.ttft.record(bin(bins, ttft_ms));
            if obs.output_tokens > 1 {
                self.decode_tokens += obs.output_tokens - 1;
                self.decode_ms += (obs.latency_ms - ttft_ms).max(0.0);
            }
        }
        for pair in obs.chunk_offsets_ms.windows(2) {
            self.inter_token.record(bin(bins, pair[1] - pair[0]));
        }
    }
}

impl Sparse {
    fn record(&mut self, bin: u32) {
        match self.0.binary_search_by_key(&bin, |&(b, _)| b) {
            Ok(i) => self.0[i].1 = self.0[i].1.saturating_add(1),
            Err(i) => self.0.insert(i, (bin, 1)),
        }
    }
}

/// A duration in ms as its HDR bin in µs (negative and NaN count as 0; beyond 71 minutes saturates). Without
/// a histogram (it could not be made), every µs is a bin of its own: exact, only sparser.
fn bin(bins: Option<&Histogram<u64>>, ms: f64) -> u32 {
    let us = (ms * 1000.0).round();
    let us = if us > 0.0 { us.min(f64::from(u32::MAX)) as u64 } else { 0 };
    u32::try_from(bins.map_or(us, |bins| bins.lowest_equivalent(us))).unwrap_or(u32::MAX)
}

pub(super) fn percentiles<'s>(parts: impl Iterator<Item = &'s Sparse>) -> Percentiles {
    let Ok(mut merged) = Histogram::<u64>::new(2) else { return Percentiles::default() };
    for &(bin, count) in parts.flat_map(|sparse| &sparse.0) {
        // Auto-resizing reaches any u32, so this cannot fail; a lost sample would only skew, not break.
        let _ = merged.record_n(u64::from(bin), u64::from(count));
    }
    let at = |quantile| {
        (!merged.is_empty()).then(|| merged.median_equivalent(merged.value_at_quantile(quantile)) as f64 / 1000.0)
    };
    Percentiles { count: merged.len(), p50: at(0.5), p95: at(0.95), p99: at(0.99) }
}
