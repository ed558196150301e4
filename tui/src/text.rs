//! Small formatting rules shared by tables and reports, so a value reads the same everywhere.
use llmops_proto::v1::Trace;

/// What the views print for a value that is not set.
pub const UNSET: &str = "-";

pub fn dash_if_empty(text: &str) -> String {
    if text.is_empty() { UNSET } else { text }.to_owned()
}

/// Milliseconds rounded to whole numbers: sub-millisecond detail is noise in a table.
pub fn format_ms(ms: f64) -> String {
    format!("{ms:.0}")
}

pub fn optional_ms(ms: Option<f64>) -> String {
    ms.map_or_else(|| UNSET.to_owned(), format_ms)
}

/// HTTP status 0 means no answer arrived.
pub fn http_status_text(status: u32) -> String {
    if status == 0 {
        UNSET.to_owned()
    } else {
        status.to_string()
    }
}

/// "type: message", or whichever of the two is set.
pub fn error_text(trace: &Trace) -> String {
    match (trace.error_type.is_empty(), trace.error_message.is_empty()) {
        (false, false) => format!("{}: {}", trace.error_type, trace.error_message),
        (false, true) => trace.error_type.clone(),
        (true, _) => trace.error_message.clone(),
    }
}

/// Keeps table rows on one line whatever an upstream error message contains.
pub fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// At most `max_chars` characters, the last being "…" when something was cut.
pub fn truncate(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_owned();
    }
    let kept: String = text.chars().take(max_chars.saturating_sub(1)).collect();
    format!("{kept}…")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_cut_with_an_ellipsis() {
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(truncate("abcd", 4), "abcd");
        assert_eq!(truncate("ééééé", 3), "éé…");
    }

    #[test]
    fn error_text_joins_type_and_message() {
        let both = Trace { error_type: "timeout".into(), error_message: "after 30s".into(), ..Trace::default() };
        assert_eq!(error_text(&both), "timeout: after 30s");
        let only_type = Trace { error_type: "timeout".into(), ..Trace::default() };
        assert_eq!(error_text(&only_type), "timeout");
        assert_eq!(error_text(&Trace::default()), "");
    }

    #[test]
    fn unset_values_read_as_dashes() {
        assert_eq!(dash_if_empty(""), "-");
        assert_eq!(optional_ms(None), "-");
        assert_eq!(optional_ms(Some(12.5)), "12");
        assert_eq!(http_status_text(0), "-");
        assert_eq!(one_line("a\n  b\tc"), "a b c");
    }
}
