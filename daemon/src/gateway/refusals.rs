//! Requests refused before authentication (no key, a foreign origin, a rebinding host, a form post): counted
//! by reason, never stored. A loop of such requests costs a counter increment, not a trace each, so it can
//! neither fill the disk nor evict the traces of requests that were served.
use std::sync::atomic::{AtomicU64, Ordering};

/// Why a request was refused before authentication; its name is the label value of `llmops_http_refused_total`
/// and, for the browser checks, the error code the client gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Unauthenticated,
    Origin,
    Host,
    MediaType,
}

impl Refused {
    const ALL: [Refused; 4] = [Self::Unauthenticated, Self::Origin, Self::Host, Self::MediaType];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unauthenticated => "unauthenticated",
            Self::Origin => "origin_not_allowed",
            Self::Host => "host_not_allowed",
            Self::MediaType => "unsupported_media_type",
        }
    }
}

#[derive(Default)]
pub struct Refusals {
    /// Indexed by `Refused as usize`.
    counts: [AtomicU64; Refused::ALL.len()],
}

impl Refusals {
    pub fn count(&self, reason: Refused) {
        self.counts[reason as usize].fetch_add(1, Ordering::Relaxed);
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
        for reason in Refused::ALL {
            let count = self.counts[reason as usize].load(Ordering::Relaxed);
            writer.sample(name, &[("reason", reason.as_str())], count as f64);
        }
        text.push_str(&writer.finish());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_is_rendered_with_its_count() {
        let refusals = Refusals::default();
        refusals.count(Refused::Unauthenticated);
        refusals.count(Refused::Unauthenticated);
        refusals.count(Refused::Host);
        let mut text = String::new();
        refusals.render(&mut text);
        assert!(text.contains("llmops_http_refused_total{reason=\"unauthenticated\"} 2\n"), "{text}");
        assert!(text.contains("llmops_http_refused_total{reason=\"host_not_allowed\"} 1\n"), "{text}");
        assert!(text.contains("llmops_http_refused_total{reason=\"origin_not_allowed\"} 0\n"), "{text}");
        assert_eq!(text.matches("reason=").count(), Refused::ALL.len());
    }
}
