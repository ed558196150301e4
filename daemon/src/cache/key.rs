//! The response cache's key: a SHA-256 over everything that decides the answer and nothing that does not, so
//! equal requests meet and different ones never do.
use serde_json::Value;
use sha2::{Digest, Sha256};

pub type Key = [u8; 32];

/// Versions the encoding: a change to it must not meet entries persisted under the old one.
const DOMAIN: &[u8] = b"llmopsd/cache-key/v2";
/// Top-level request fields that change how or to whom the answer is delivered, not the answer itself.
const IGNORED: [&str; 5] = ["stream", "stream_options", "user", "safety_identifier", "metadata"];

/// SHA-256 over a canonical form of: the endpoint name, the tenant (tenants never share entries: a hit would
/// tell one what another asked), the route's resolved targets in order (engine name and
/// model), the registry prompt name and version (empty when none), and the request body minus the fields that
/// do not change the answer: `stream`, `stream_options`, `user`, `safety_identifier`, `metadata` (top level
/// only: a `metadata` property inside a tool's schema does change the answer). Object keys sorted recursively;
/// numbers as serde_json writes them; no whitespace.
///
/// Every field before the body is length-prefixed (and the targets counted), and the body's canonical JSON is
/// self-delimiting and last, so no two different inputs share a preimage.
pub fn cache_key(endpoint: &str, tenant: &str, targets: &[(&str, &str)], prompt: (&str, &str), body: &Value) -> Key {
    let mut hasher = Sha256::new();
    field(&mut hasher, DOMAIN);
    field(&mut hasher, endpoint.as_bytes());
    field(&mut hasher, tenant.as_bytes());
    hasher.update((targets.len() as u64).to_le_bytes());
    for (engine, model) in targets {
        field(&mut hasher, engine.as_bytes());
        field(&mut hasher, model.as_bytes());
    }
    field(&mut hasher, prompt.0.as_bytes());
    field(&mut hasher, prompt.1.as_bytes());
    match body {
        Value::Object(map) => {
            write_object(&mut hasher, map.iter().filter(|(name, _)| !IGNORED.contains(&name.as_str())))
        }
        other => write_value(&mut hasher, other),
    }
    hasher.finalize().into()
}

/// Whether the same request gives the same answer: `temperature` 0 (or 0.0) with at most one choice, or an
/// integer `seed`. A request without `temperature` samples at the engine's default (1 in OpenAI's API).
pub fn is_deterministic(body: &Value) -> bool {
    if body.get("seed").is_some_and(|seed| seed.is_i64() || seed.is_u64()) {
        return true;
    }
    let one_choice = match body.get("n") {
        None | Some(Value::Null) => true,
        Some(n) => n.as_u64() == Some(1),
    };
    one_choice && body.get("temperature").and_then(Value::as_f64) == Some(0.0)
}

/// Lowercase hex, for logs, traces and the admin API.
pub fn hex(key: &Key) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(64);
    for byte in key {
        out.push(DIGITS[usize::from(byte >> 4)] as char);
        out.push(DIGITS[usize::from(byte & 0x0f)] as char);
    }
    out
}

/// Where canonical JSON goes: straight into the hasher (no copy of the body), or a string in tests.
trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

impl Sink for Sha256 {
    fn put(&mut self, bytes: &[u8]) {
        self.update(bytes);
    }
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

fn field(sink: &mut impl Sink, bytes: &[u8]) {
    sink.put(&(bytes.len() as u64).to_le_bytes());
    sink.put(bytes);
}

/// Recursion is bounded by the parser that built `value` (serde_json stops at 128 levels).
fn write_value(sink: &mut impl Sink, value: &Value) {
    match value {
        Value::Null => sink.put(b"null"),
        Value::Bool(true) => sink.put(b"true"),
        Value::Bool(false) => sink.put(b"false"),
        Value::Number(number) => sink.put(number.to_string().as_bytes()),
        Value::String(text) => write_str(sink, text),
        Value::Array(items) => {
            sink.put(b"[");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    sink.put(b",");
                }
                write_value(sink, item);
            }
            sink.put(b"]");
        }
        Value::Object(map) => write_object(sink, map.iter()),
    }
}

/// Keys in byte order: the map keeps the order the client sent (preserve_order), which must not matter.
fn write_object<'a>(sink: &mut impl Sink, members: impl Iterator<Item = (&'a String, &'a Value)>) {
    let mut members: Vec<_> = members.collect();
    members.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    sink.put(b"{");
    for (i, (name, value)) in members.into_iter().enumerate() {
        if i > 0 {
            sink.put(b",");
        }
        write_str(sink, name);
        sink.put(b":");
        write_value(sink, value);
    }
    sink.put(b"}");
}

/// JSON string escaping: quotes, backslashes and control characters; everything else as UTF-8. Injective,
/// which is all the key needs.
fn write_str(sink: &mut impl Sink, text: &str) {
    sink.put(b"\"");
    let bytes = text.as_bytes();
    let mut start = 0;
    for (i, &byte) in bytes.iter().enumerate() {
        let escaped: &[u8] = match byte {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x00..=0x1f => b"",
            _ => continue,
        };
        sink.put(&bytes[start..i]);
        if escaped.is_empty() {
            const DIGITS: &[u8; 16] = b"0123456789abcdef";
            sink.put(&[b'\\', b'u', b'0', b'0', DIGITS[usize::from(byte >> 4)], DIGITS[usize::from(byte & 0x0f)]]);
        } else {
            sink.put(escaped);
        }
        start = i + 1;
    }
    sink.put(&bytes[start..]);
    sink.put(b"\"");
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const TARGETS: [(&str, &str); 2] = [("vllm", "llama-3-8b"), ("llamacpp", "qwen")];

    fn key(body: &Value) -> Key {
        cache_key("chat.completions", "", &TARGETS, ("", ""), body)
    }

    fn base() -> Value {
        json!({"model": "m", "temperature": 0, "messages": [{"role": "user", "content": "hi"}]})
    }

    fn canonical(value: &Value) -> String {
        let mut out = Vec::new();
        write_value(&mut out, value);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn canonical_form_sorts_keys_recursively_without_whitespace() {
        let value: Value = serde_json::from_str(r#"{"b": [1, {"z": 1.5, "a": null}], "a": "q\"\\\n\u0001é"}"#).unwrap();
        assert_eq!(canonical(&value), r#"{"a":"q\"\\\u000a\u0001é","b":[1,{"a":null,"z":1.5}]}"#);
    }

    #[test]
    fn ignores_delivery_fields_and_key_order() {
        let plain = key(&base());
        let mut noisy = base();
        let extra = json!({"stream": true, "stream_options": {"include_usage": true}, "user": "u1",
            "safety_identifier": "s", "metadata": {"a": "b"}});
        noisy.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        assert_eq!(key(&noisy), plain);
        let reordered: Value =
            serde_json::from_str(r#"{"messages":[{"content":"hi","role":"user"}],"temperature":0,"model":"m"}"#)
                .unwrap();
        assert_eq!(key(&reordered), plain);
    }

    #[test]
    fn changes_with_what_decides_the_answer() {
        let plain = key(&base());
        let variants = [
            json!({"temperature": 0.5}),
            json!({"messages": [{"role": "user", "content": "hello"}]}),
            json!({"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]}),
            json!({"response_format": {"type": "json_object"}}),
            json!({"max_tokens": 10}),
        ];
        for variant in variants {
            let mut body = base();
            body.as_object_mut().unwrap().extend(variant.as_object().unwrap().clone());
            assert_ne!(key(&body), plain, "{variant}");
        }
        // Nested `metadata` (inside a tool schema) is part of the request, unlike the top-level field.
        let mut nested = base();
        nested["tools"] = json!([{"metadata": 1}]);
        let mut nested2 = base();
        nested2["tools"] = json!([{"metadata": 2}]);
        assert_ne!(key(&nested), key(&nested2));
        let body = base();
        assert_ne!(cache_key("completions", "", &TARGETS, ("", ""), &body), plain);
        // Tenants never see each other's answers (a hit would tell one what another asked).
        assert_ne!(cache_key("chat.completions", "acme", &TARGETS, ("", ""), &body), plain);
        assert_ne!(cache_key("chat.completions", "", &[("vllm", "llama-3-8b")], ("", ""), &body), plain);
        assert_ne!(cache_key("chat.completions", "", &[("vllm", "other"), TARGETS[1]], ("", ""), &body), plain);
        assert_ne!(cache_key("chat.completions", "", &[TARGETS[1], TARGETS[0]], ("", ""), &body), plain);
        let v1 = cache_key("chat.completions", "", &TARGETS, ("greet", "1"), &body);
        assert_ne!(v1, plain);
        assert_ne!(cache_key("chat.completions", "", &TARGETS, ("greet", "2"), &body), v1);
    }

    #[test]
    fn length_prefixes_keep_fields_apart() {
        let body = base();
        assert_ne!(
            cache_key("e", "", &[("ab", "c")], ("", ""), &body),
            cache_key("e", "", &[("a", "bc")], ("", ""), &body)
        );
        assert_ne!(cache_key("e", "", &[], ("ab", ""), &body), cache_key("e", "", &[], ("a", "b"), &body));
        assert_ne!(cache_key("e", "", &[("", "")], ("", ""), &body), cache_key("e", "", &[], ("", ""), &body));
    }

    #[test]
    fn deterministic_requests() {
        assert!(is_deterministic(&json!({"temperature": 0})));
        assert!(is_deterministic(&json!({"temperature": 0.0, "n": 1})));
        assert!(is_deterministic(&json!({"temperature": 0.7, "seed": 42})));
        assert!(is_deterministic(&json!({"seed": -3, "n": 4})));
        assert!(!is_deterministic(&json!({})));
        assert!(!is_deterministic(&json!({"temperature": 0.2})));
        assert!(!is_deterministic(&json!({"temperature": 0, "n": 2})));
        assert!(!is_deterministic(&json!({"temperature": "0"})));
        assert!(!is_deterministic(&json!({"seed": 1.5})));
        assert!(!is_deterministic(&json!([1])));
    }

    #[test]
    fn hex_is_lowercase_and_full_length() {
        let mut key = [0u8; 32];
        key[0] = 0xab;
        key[31] = 0x0f;
        let text = hex(&key);
        assert_eq!(text.len(), 64);
        assert!(text.starts_with("ab00"));
        assert!(text.ends_with("000f"));
    }
}
