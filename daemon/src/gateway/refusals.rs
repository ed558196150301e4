//! Requests refused before authentication (no key, a foreign origin, a rebinding host, a form post): counted
//! by reason, never stored. A loop of such requests costs a counter increment, not a trace each, so it can
//! neither fill the disk nor evict the traces of requests that were served.
use std::sync::atomic::{AtomicU64, Ordering};

/// The reasons, a fixed set: the label values of `llmops_http_refused_total`.
const REASONS: [&str; 4] = ["unauthenticated", "origin_not_allowed", "host_not_allowed", "unsupported_media_type"];

#[derive(Default)]
pub struct Refusals {
    counts: [AtomicU64; REASONS.len()],
}

impl Refusals {
    pub fn count(&self, reason: &str) {
        if let Some(i) = REASONS.iter().position(|r| *r == reason) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn get(&self, reason: &str) -> u64 {
        REASONS.iter().position(|r| *r == reason).map_or(0, |i| self.counts[i].load(Ordering::Relaxed))
    }

    /// Appends the counter family to a Prometheus exposition.
    pub fn render(&self, text: &mut String) {
        use crate::export::prometheus::{MetricKind, MetricWriter};
        let mut writer = MetricWriter::new();
        let name = "llmops_http_refused_total";
        writer.family(
            name,
            "Requests refused before authentication, by reason (not stored as traces).",
            MetricKind::Counter,
        );
        for (reason, count) in REASONS.iter().zip(&self.counts) {
            writer.sample(name, &[("reason", reason)], count.load(Ordering::Relaxed) as f64);
        }
        text.push_str(&writer.finish());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_known_reasons_and_ignores_others() {
        let refusals = Refusals::default();
        refusals.count("unauthenticated");
        refusals.count("unauthenticated");
        refusals.count("something else");
        assert_eq!(refusals.get("unauthenticated"), 2);
        let mut text = String::new();
        refusals.render(&mut text);
        assert!(text.contains("llmops_http_refused_total{reason=\"unauthenticated\"} 2\n"), "{text}");
        assert!(text.contains("llmops_http_refused_total{reason=\"host_not_allowed\"} 0\n"), "{text}");
        assert_eq!(text.matches("reason=").count(), REASONS.len());
    }
}
