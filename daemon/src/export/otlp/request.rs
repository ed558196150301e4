//! What the client's request body says about the call: its sampling parameters (exported in every mode: they
//! are settings, not text the user wrote) and, for `content`, its messages.
use super::attrs::{truncate, Attrs};
use serde_json::{Map, Value};

/// A larger body is not parsed at all: export runs for every trace, and the gateway's own limits come first.
pub const MAX_REQUEST_JSON_BYTES: usize = 1 << 20;
/// OpenAI allows 4 stop sequences; the rest of a hostile list is dropped.
const MAX_STOP_SEQUENCES: usize = 16;
const MAX_STOP_CHARS: usize = 256;

/// The body as a JSON object, or `None` when it is absent, too large, not JSON or not an object (privacy
/// mode keeps no body: the trace's `request_json` is empty).
pub fn parse(json: &str) -> Option<Map<String, Value>> {
    if json.is_empty() || json.len() > MAX_REQUEST_JSON_BYTES {
        return None;
    }
    match serde_json::from_str(json) {
        Ok(Value::Object(body)) => Some(body),
        _ => None,
    }
}

/// The request parameters the GenAI conventions name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Params {
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub max_tokens: Option<i64>,
    pub seed: Option<i64>,
    pub frequency_penalty: Option<f64>,
    pub presence_penalty: Option<f64>,
    pub stop: Vec<String>,
    /// `n`, kept only when it is not 1 (the conventions say so: 1 is the default).
    pub choice_count: Option<i64>,
    /// `json_object` or `json_schema`: what the client asked the answer to be.
    pub response_format: Option<String>,
}

impl Params {
    pub fn of(body: Option<&Map<String, Value>>) -> Self {
        let Some(body) = body else { return Self::default() };
        let float = |key: &str| body.get(key).and_then(Value::as_f64).filter(|value| value.is_finite());
        let int = |key: &str| body.get(key).and_then(Value::as_i64);
        let stop = match body.get("stop") {
            Some(Value::String(one)) => vec![one.as_str()],
            Some(Value::Array(many)) => many.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        let response_format = body
            .get("response_format")
            .and_then(|format| format.get("type"))
            .and_then(Value::as_str)
            .filter(|kind| matches!(*kind, "json_object" | "json_schema"));
        Self {
            temperature: float("temperature"),
            top_p: float("top_p"),
            // The newer name wins, as it does at OpenAI when a client sends both.
            max_tokens: int("max_completion_tokens").or_else(|| int("max_tokens")),
            seed: int("seed"),
            frequency_penalty: float("frequency_penalty"),
            presence_penalty: float("presence_penalty"),
            stop: stop
                .into_iter()
                .take(MAX_STOP_SEQUENCES)
                .map(|text| truncate(text, MAX_STOP_CHARS).0.to_string())
                .collect(),
            choice_count: int("n").filter(|&n| n != 1),
            response_format: response_format.map(str::to_string),
        }
    }

    /// `gen_ai.request.*` and `gen_ai.output.type`.
    pub fn add_genai(&self, attrs: &mut Attrs) {
        let floats = [
            ("gen_ai.request.temperature", self.temperature),
            ("gen_ai.request.top_p", self.top_p),
            ("gen_ai.request.frequency_penalty", self.frequency_penalty),
            ("gen_ai.request.presence_penalty", self.presence_penalty),
        ];
        for (key, value) in floats {
            if let Some(value) = value {
                attrs.float(key, value);
            }
        }
        let ints = [
            ("gen_ai.request.max_tokens", self.max_tokens),
            ("gen_ai.request.seed", self.seed),
            ("gen_ai.request.choice.count", self.choice_count),
        ];
        for (key, value) in ints {
            if let Some(value) = value {
                attrs.int(key, value);
            }
        }
        if !self.stop.is_empty() {
            attrs.strs("gen_ai.request.stop_sequences", &self.stop);
        }
        if self.response_format.is_some() {
            attrs.str("gen_ai.output.type", "json");
        }
    }

    /// The parameters as one JSON object with the OpenAI names (OpenInference's `llm.invocation_parameters`,
    /// Langfuse's model parameters); `None` when the request set none.
    pub fn to_json(&self) -> Option<String> {
        let mut object = Map::new();
        let mut put = |key: &str, value: Option<Value>| {
            if let Some(value) = value {
                object.insert(key.to_string(), value);
            }
        };
        put("temperature", self.temperature.map(Value::from));
        put("top_p", self.top_p.map(Value::from));
        put("max_tokens", self.max_tokens.map(Value::from));
        put("seed", self.seed.map(Value::from));
        put("frequency_penalty", self.frequency_penalty.map(Value::from));
        put("presence_penalty", self.presence_penalty.map(Value::from));
        put("stop", (!self.stop.is_empty()).then(|| Value::from(self.stop.clone())));
        put("n", self.choice_count.map(Value::from));
        put("response_format", self.response_format.clone().map(Value::from));
        (!object.is_empty()).then(|| Value::Object(object).to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_parameters_and_ignores_what_it_cannot_use() {
        let body = parse(
            r#"{"temperature":0.2,"max_tokens":10,"max_completion_tokens":20,"n":1,"stop":"END",
               "seed":"7","response_format":{"type":"text"}}"#,
        );
        let params = Params::of(body.as_ref());
        assert_eq!(params.temperature, Some(0.2));
        assert_eq!(params.max_tokens, Some(20));
        assert_eq!(params.choice_count, None, "n = 1 is the default");
        assert_eq!(params.stop, ["END"]);
        assert_eq!(params.seed, None, "a string seed is not a seed");
        assert_eq!(params.response_format, None);
        assert_eq!(params.to_json().as_deref(), Some(r#"{"temperature":0.2,"max_tokens":20,"stop":["END"]}"#));
    }

    #[test]
    fn no_body_means_no_parameters() {
        assert_eq!(parse("[1, 2]"), None);
        assert_eq!(parse("{not json"), None);
        assert_eq!(parse(""), None);
        let big = format!(r#"{{"temperature":1,"pad":"{}"}}"#, "x".repeat(MAX_REQUEST_JSON_BYTES));
        assert_eq!(parse(&big), None);
        assert_eq!(Params::of(None).to_json(), None);
    }
}
