//! Token counts for a trace: what the engine reported, else the daemon's own count, marked as estimated.
use crate::trace::Trace;

/// When an engine reports no usage: about four characters a token, the usual rule of thumb for English BPE.
pub fn estimate_tokens(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4)
}

/// Sets the trace's token counts: `reported` (prompt, completion) when the engine sent usage; otherwise the
/// prompt estimated from its text and the completion from `counted_output` (stream chunks, or an estimate
/// from the answer's text), with `tokens_estimated` set so nobody mistakes them for the engine's count.
pub fn settle_tokens(trace: &mut Trace, reported: Option<(u64, u64)>, counted_output: u64) {
    match reported {
        Some((input, output)) => {
            trace.input_tokens = input;
            trace.output_tokens = output;
        }
        None => {
            trace.input_tokens = estimate_tokens(&trace.prompt_text);
            trace.output_tokens = counted_output;
            trace.tokens_estimated = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reported_usage_wins_and_an_estimate_says_so() {
        let mut trace = Trace { prompt_text: "12345678".into(), ..Trace::default() };
        settle_tokens(&mut trace, Some((3, 9)), 4);
        assert_eq!((trace.input_tokens, trace.output_tokens, trace.tokens_estimated), (3, 9, false));
        let mut trace = Trace { prompt_text: "12345678".into(), ..Trace::default() };
        settle_tokens(&mut trace, None, 4);
        assert_eq!((trace.input_tokens, trace.output_tokens, trace.tokens_estimated), (2, 4, true));
        assert_eq!(estimate_tokens("héllo"), 2, "characters, not bytes");
    }
}
