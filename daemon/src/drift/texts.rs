//! Drift alerts as people (and chat or paging webhooks) read them: the signal's name in words, its unit, the
//! direction ("up", "down"), the numbers before and after and how many requests each side saw; and for alerts
//! that no condition clears, how they end.
use super::changepoint::Direction;
use super::shift::Shift;
use crate::alerts::{Evidence, Raised, Severity, Summary};
use std::collections::BTreeMap;

/// The signal in words.
pub fn label(signal: &str) -> &'static str {
    match signal {
        "output_tokens" => "output length",
        "input_tokens" => "prompt length",
        "ttft_ms" => "time to first token",
        "latency_ms" => "latency",
        "tokens_per_s" => "decode speed",
        "error_rate" => "error rate",
        "refusal_rate" => "refusal rate",
        "empty_rate" => "empty-answer rate",
        "length_finish_rate" => "share of answers cut at max_tokens",
        _ => "signal",
    }
}

fn unit(signal: &str) -> &'static str {
    match signal {
        "output_tokens" | "input_tokens" => "tokens",
        "ttft_ms" | "latency_ms" => "ms",
        "tokens_per_s" => "tokens/s",
        _ => "",
    }
}

/// A number with as many digits as a person needs: 1234, 123, 40, 38.4, 0.25.
pub fn number(x: f64) -> String {
    match x.abs() {
        a if a.is_nan() => "n/a".into(),
        a if a.fract() == 0.0 || a >= 100.0 => format!("{x:.0}"),
        a if a >= 10.0 => format!("{x:.1}"),
        _ => format!("{x:.2}"),
    }
}

/// A value of `signal` with its unit: "38.4 tokens", "250 ms", "12.5%".
pub fn amount(signal: &str, x: f64) -> String {
    if signal.ends_with("_rate") {
        return format!("{:.1}%", x * 100.0);
    }
    match unit(signal) {
        "" => number(x),
        unit => format!("{} {unit}", number(x)),
    }
}

/// "+50%", "-20%", or "x3.1" for big rises; empty when there is no baseline to compare with.
fn relative(before: f64, after: f64) -> String {
    if before.is_nan() || before <= 0.0 || !after.is_finite() {
        return String::new();
    }
    let ratio = after / before;
    if ratio >= 3.0 {
        format!(" (x{ratio:.1})")
    } else {
        format!(" ({:+.0}%)", (ratio - 1.0) * 100.0)
    }
}

fn direction(before: f64, after: f64) -> &'static str {
    if after > before {
        "up"
    } else if after < before {
        "down"
    } else {
        "changed"
    }
}

fn p_value(p: f64) -> String {
    if p < 0.001 {
        format!("{p:.1e}")
    } else {
        format!("{p:.4}")
    }
}

/// "1 h", "15 min", "90 s".
pub fn duration(secs: u64) -> String {
    if secs >= 3600 && secs.is_multiple_of(3600) {
        format!("{} h", secs / 3600)
    } else if secs >= 60 && secs.is_multiple_of(60) {
        format!("{} min", secs / 60)
    } else {
        format!("{secs} s")
    }
}

fn place(labels: &BTreeMap<String, String>) -> String {
    let get = |k: &str| labels.get(k).map(String::as_str).unwrap_or_default();
    let version = match get("prompt_version") {
        "" => String::new(),
        v => format!(", prompt version {v}"),
    };
    format!("on route {} (model {}{version})", get("route"), get("model"))
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

fn drift_raised(
    key: String,
    signal: &str,
    title: String,
    message: String,
    evidence: Evidence,
    labels: &BTreeMap<String, String>,
    rule: &str,
) -> Raised {
    let mut labels = labels.clone();
    labels.insert("signal".into(), signal.into());
    Raised { key, rule: rule.into(), severity: Severity::Warning, title, message, evidence, labels }
}

fn how_windows_end(window_size: usize) -> String {
    format!("It resolves when a later window of {window_size} requests matches the reference again.")
}

/// A numeric signal whose window differs from the reference (KS or normed Wasserstein); the evidence carries
/// both summaries.
pub fn window_drift(
    key: String,
    signal: &str,
    evidence: Evidence,
    labels: &BTreeMap<String, String>,
    window_size: usize,
) -> Raised {
    let (r, c) = (evidence.reference.clone().unwrap_or_default(), evidence.current.clone().unwrap_or_default());
    let way = direction(r.mean, c.mean);
    let test = if evidence.statistic == "ks_p_value" {
        format!("Kolmogorov-Smirnov p = {}, under {}", p_value(evidence.value), p_value(evidence.threshold))
    } else {
        format!("normed Wasserstein distance {:.3}, over {}", evidence.value, number(evidence.threshold))
    };
    let title = format!("{} drifted {way} {}", label(signal), place(labels));
    let message = format!(
        "{}: mean from {} to {}{}, median from {} to {}, p95 from {} to {}, over the last {} requests against {} \
         reference requests ({test}). {}",
        capitalised(&title),
        amount(signal, r.mean),
        amount(signal, c.mean),
        relative(r.mean, c.mean),
        amount(signal, r.p50),
        amount(signal, c.p50),
        amount(signal, r.p95),
        amount(signal, c.p95),
        c.n,
        r.n,
        how_windows_end(window_size),
    );
    drift_raised(key, signal, title, message, evidence, labels, "drift")
}

/// A rate whose window differs from the reference by the two-proportion z-test; the evidence carries both
/// windows as summaries of their 0/1 outcomes.
pub fn rate_drift(
    key: String,
    signal: &str,
    evidence: Evidence,
    labels: &BTreeMap<String, String>,
    window_size: usize,
) -> Raised {
    let (r, c) = (evidence.reference.clone().unwrap_or_default(), evidence.current.clone().unwrap_or_default());
    let title = format!("{} drifted {} {}", label(signal), direction(r.mean, c.mean), place(labels));
    let message = format!(
        "{}: from {} of {} reference requests to {} of the last {} (two-proportion z-test p = {}, under {}). {}",
        capitalised(&title),
        amount(signal, r.mean),
        r.n,
        amount(signal, c.mean),
        c.n,
        p_value(evidence.value),
        p_value(evidence.threshold),
        how_windows_end(window_size),
    );
    drift_raised(key, signal, title, message, evidence, labels, "drift")
}

fn how_one_offs_end(timeout_secs: u64, what: &str) -> String {
    format!(
        "No condition clears this alert: it resolves {} after the last {what}; acknowledge it to silence it until \
         the next one.",
        duration(timeout_secs)
    )
}

/// A change point found by CUSUM: the baseline it learnt and the run of requests since the change began.
pub fn shift(
    key: String,
    signal: &str,
    shift: &Shift,
    h: f64,
    labels: &BTreeMap<String, String>,
    timeout_secs: u64,
) -> Raised {
    let way = match shift.direction {
        Direction::Down => "down",
        _ => "up",
    };
    let (r, c) = (&shift.reference, &shift.current);
    let title = format!("{} shifted {way} {}", label(signal), place(labels));
    let message = format!(
        "{}: mean from {} over {} reference requests to {}{} over the last {}, p95 from {} to {} (CUSUM {:.1} \
         over {}). {}",
        capitalised(&title),
        amount(signal, r.mean),
        r.n,
        amount(signal, c.mean),
        relative(r.mean, c.mean),
        c.n,
        amount(signal, r.p95),
        amount(signal, c.p95),
        shift.statistic,
        number(h),
        how_one_offs_end(timeout_secs, "shift"),
    );
    let evidence = Evidence {
        statistic: "cusum".into(),
        value: shift.statistic,
        threshold: h,
        reference: Some(r.clone()),
        current: Some(c.clone()),
        reference_n: r.n,
        current_n: c.n,
        detail: format!(
            "{signal} shifted {way}: geometric mean {} -> {} (log sd {:.3} in the reference)",
            amount(signal, shift.reference_geomean),
            amount(signal, shift.current_geomean),
            shift.log_sd
        ),
    };
    drift_raised(key, signal, title, message, evidence, labels, "drift")
}

/// A prompt far longer than the reference's: one request, compared with the reference's summary.
pub fn input_anomaly(
    key: String,
    input: f64,
    p99: f64,
    factor: f64,
    reference: Option<Summary>,
    labels: &BTreeMap<String, String>,
    timeout_secs: u64,
) -> Raised {
    let signal = "input_tokens";
    let title = format!("unusually long prompt {}", place(labels));
    let median = reference.as_ref().map(|r| format!(", median {}", amount(signal, r.p50))).unwrap_or_default();
    let message = format!(
        "{}: {}, {} times the usual p99 of {}{median} (alert above {}, {} x p99). A possible prompt injection or \
         runaway loop. {}",
        capitalised(&title),
        amount(signal, input),
        number(input / p99.max(f64::MIN_POSITIVE)),
        amount(signal, p99),
        amount(signal, p99 * factor),
        number(factor),
        how_one_offs_end(timeout_secs, "such prompt"),
    );
    let evidence = Evidence {
        statistic: signal.into(),
        value: input,
        threshold: p99 * factor,
        reference_n: reference.as_ref().map_or(0, |r| r.n),
        current_n: 1,
        current: Some(Summary { n: 1, mean: input, p50: input, p95: input }),
        reference,
        detail: format!("p99 of the reference {}; a possible prompt injection or runaway loop", amount(signal, p99)),
    };
    drift_raised(key, signal, title, message, evidence, labels, "input_anomaly")
}

/// Why a window alert resolved.
pub fn window_resolved(window_size: usize) -> String {
    format!("the last {window_size} requests match the reference again")
}

/// Why a one-off alert resolved.
pub fn expired(timeout_secs: u64) -> String {
    format!("no recurrence within {} of the last one", duration(timeout_secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_units_and_durations_read_naturally() {
        assert_eq!(amount("output_tokens", 38.44), "38.4 tokens");
        assert_eq!(amount("latency_ms", 1234.5), "1234 ms");
        assert_eq!(amount("tokens_per_s", 7.256), "7.26 tokens/s");
        assert_eq!(amount("refusal_rate", 0.125), "12.5%");
        assert_eq!(
            (number(f64::NAN), number(40.0), number(0.25)),
            ("n/a".to_string(), "40".to_string(), "0.25".to_string())
        );
        assert_eq!(
            (relative(10.0, 15.0), relative(10.0, 8.0), relative(10.0, 40.0)),
            (" (+50%)".to_string(), " (-20%)".to_string(), " (x4.0)".to_string())
        );
        assert_eq!(relative(0.0, 3.0), "");
        assert_eq!(
            (duration(3600), duration(900), duration(90), duration(1)),
            ("1 h".to_string(), "15 min".to_string(), "90 s".to_string(), "1 s".to_string())
        );
        assert_eq!((p_value(1.234e-9), p_value(0.0056)), ("1.2e-9".to_string(), "0.0056".to_string()));
        assert_eq!(capitalised("output length"), "Output length");
    }
}
