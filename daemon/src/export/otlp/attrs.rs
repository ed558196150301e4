//! Span attribute values, and the bound on every string a span carries.
use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, ArrayValue, KeyValue};

/// Names, routes, models, tenants, ids: short in practice. A longer one (an import, a hostile header) is cut
/// here, so one trace cannot make a batch the collector refuses.
pub const MAX_LABEL_CHARS: usize = 1024;

/// `text` cut to at most `max_chars` characters (never inside one), and whether anything was cut.
pub fn truncate(text: &str, max_chars: usize) -> (&str, bool) {
    match text.char_indices().nth(max_chars) {
        Some((at, _)) => (&text[..at], true),
        None => (text, false),
    }
}

/// A label cut to [`MAX_LABEL_CHARS`].
pub fn label(text: &str) -> &str {
    truncate(text, MAX_LABEL_CHARS).0
}

pub fn string_value(text: &str) -> AnyValue {
    AnyValue { value: Some(Value::StringValue(label(text).to_string())) }
}

/// The attributes of one span or event, in the order they are added (the golden payloads depend on it).
#[derive(Debug, Default)]
pub struct Attrs(Vec<KeyValue>);

impl Attrs {
    pub fn push(&mut self, key: impl Into<String>, value: Value) {
        self.0.push(KeyValue { key: key.into(), value: Some(AnyValue { value: Some(value) }) });
    }

    /// A label, cut to [`MAX_LABEL_CHARS`].
    pub fn str(&mut self, key: impl Into<String>, value: &str) {
        self.push(key, Value::StringValue(label(value).to_string()));
    }

    /// A label, left out when empty (an unset field of the trace).
    pub fn str_set(&mut self, key: impl Into<String>, value: &str) {
        if !value.is_empty() {
            self.str(key, value);
        }
    }

    /// Text the caller has already bounded (content under its budget, JSON built from bounded parts).
    pub fn text(&mut self, key: impl Into<String>, value: String) {
        self.push(key, Value::StringValue(value));
    }

    pub fn int(&mut self, key: impl Into<String>, value: i64) {
        self.push(key, Value::IntValue(value));
    }

    pub fn uint(&mut self, key: impl Into<String>, value: u64) {
        self.int(key, i64::try_from(value).unwrap_or(i64::MAX));
    }

    /// Left out when not finite: OTLP/JSON has no spelling for NaN or infinity that every backend reads.
    pub fn float(&mut self, key: impl Into<String>, value: f64) {
        if value.is_finite() {
            self.push(key, Value::DoubleValue(value));
        }
    }

    pub fn bool(&mut self, key: impl Into<String>, value: bool) {
        self.push(key, Value::BoolValue(value));
    }

    /// A string array; each element is a label.
    pub fn strs<S: AsRef<str>>(&mut self, key: impl Into<String>, values: impl IntoIterator<Item = S>) {
        let values = values.into_iter().map(|value| string_value(value.as_ref())).collect();
        self.push(key, Value::ArrayValue(ArrayValue { values }));
    }

    pub fn into_vec(self) -> Vec<KeyValue> {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncate_stops_on_a_char_boundary() {
        assert_eq!(truncate("héllo", 2), ("hé", true));
        assert_eq!(truncate("héllo", 5), ("héllo", false));
        assert_eq!(truncate("🦀🦀🦀", 1), ("🦀", true));
        assert_eq!(truncate("", 0), ("", false));
        assert_eq!(truncate("a", 0), ("", true));
    }
}
