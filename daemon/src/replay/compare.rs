//! How a re-run differs from its original: text, tokens, latency and cost.
use crate::trace::Trace;
use std::time::Duration;

/// Diffing long answers character by character is quadratic at worst; past this the ratio is approximate.
const DIFF_DEADLINE: Duration = Duration::from_millis(200);

/// Re-run minus original, where both sides have the value.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub original_id: String,
    pub replay_id: String,
    pub text_identical: bool,
    /// 0..1, by a character-level diff (1 = identical).
    pub text_similarity: f64,
    pub output_tokens_delta: i64,
    pub input_tokens_delta: i64,
    pub latency_delta_ms: f64,
    pub ttft_delta_ms: Option<f64>,
    pub cost_delta_usd: Option<f64>,
    pub same_route: bool,
}

/// Re-run minus original.
pub fn compare(original: &Trace, replay: &Trace) -> Comparison {
    let diff = similar::TextDiff::configure()
        .timeout(DIFF_DEADLINE)
        .diff_chars(original.response_text.as_str(), replay.response_text.as_str());
    let signed =
        |a: u64, b: u64| i64::try_from(b).unwrap_or(i64::MAX).saturating_sub(i64::try_from(a).unwrap_or(i64::MAX));
    Comparison {
        original_id: original.id.clone(),
        replay_id: replay.id.clone(),
        text_identical: original.response_text == replay.response_text,
        text_similarity: f64::from(diff.ratio()),
        output_tokens_delta: signed(original.output_tokens, replay.output_tokens),
        input_tokens_delta: signed(original.input_tokens, replay.input_tokens),
        latency_delta_ms: replay.latency_ms - original.latency_ms,
        ttft_delta_ms: original.ttft_ms.zip(replay.ttft_ms).map(|(a, b)| b - a),
        cost_delta_usd: original.cost_usd.zip(replay.cost_usd).map(|(a, b)| b - a),
        same_route: original.route == replay.route,
    }
}

#[cfg(test)]
mod tests {
    use super::super::recorded_chat as original;
    use super::*;

    #[test]
    fn comparison_is_replay_minus_original() {
        let replay = Trace {
            id: "t2".into(),
            route: "code".into(),
            response_text: "Hello there!".into(),
            output_tokens: 5,
            latency_ms: 70.0,
            ttft_ms: Some(25.0),
            cost_usd: None,
            ..Trace::default()
        };
        let c = compare(&original(), &replay);
        assert!(!c.text_identical);
        assert!(c.text_similarity > 0.9 && c.text_similarity < 1.0, "{}", c.text_similarity);
        assert_eq!(c.output_tokens_delta, 2);
        assert_eq!(c.latency_delta_ms, -30.0);
        assert_eq!(c.ttft_delta_ms, Some(5.0));
        assert_eq!(c.cost_delta_usd, None, "no cost on one side: no delta");
        assert!(!c.same_route);
        assert!(compare(&original(), &original()).text_identical);
    }
}
