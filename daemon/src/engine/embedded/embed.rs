//! `/v1/embeddings` on an embedding model: the request read and bounded (inputs as text or token ids, one
//! vector per input), and the answer in OpenAI's shape, L2-normalised as OpenAI's and llama-server's are, as
//! float lists or base64 (the OpenAI SDKs ask for base64 by default).
use super::request::Refusal;
use serde_json::{json, Value};

/// OpenAI's limit on inputs per request.
pub const MAX_INPUTS: usize = 2048;
/// OpenAI's limit on tokens per request, all inputs together.
pub const MAX_TOTAL_TOKENS: usize = 300_000;

#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    Text(String),
    Tokens(Vec<i32>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingRequest {
    pub inputs: Vec<Input>,
    pub base64: bool,
    pub model: String,
}

const PARAMETERS: &[&str] = &["model", "input", "encoding_format", "dimensions", "user"];

/// Reads the request; `dimensions` is accepted only when it is the model's own size (`n_embd`).
pub fn parse(body: &Value, n_embd: usize) -> Result<EmbeddingRequest, Refusal> {
    let Some(object) = body.as_object() else { return Err(Refusal::invalid("body", "the body must be an object")) };
    if let Some(unknown) = object.keys().find(|key| !PARAMETERS.contains(&key.as_str())) {
        let shown: String = unknown.chars().take(64).collect();
        return Err(Refusal::invalid_named(
            shown.clone(),
            format!("unknown parameter `{shown}` for /v1/embeddings: the embedded engine would ignore it"),
        ));
    }
    let base64 = match object.get("encoding_format").and_then(|f| (!f.is_null()).then_some(f)) {
        None => false,
        Some(Value::String(format)) if format == "float" => false,
        Some(Value::String(format)) if format == "base64" => true,
        Some(_) => return Err(Refusal::invalid("encoding_format", "`encoding_format` must be `float` or `base64`")),
    };
    match object.get("dimensions") {
        None | Some(Value::Null) => {}
        Some(dimensions) if dimensions.as_u64() == Some(n_embd as u64) => {}
        Some(dimensions) => {
            return Err(Refusal::invalid(
                "dimensions",
                format!("this model's vectors have {n_embd} dimensions and cannot be shortened (asked {dimensions})"),
            ))
        }
    }
    let inputs = inputs(object.get("input"))?;
    let model = object.get("model").and_then(Value::as_str).unwrap_or_default().to_string();
    Ok(EmbeddingRequest { inputs, base64, model })
}

fn inputs(input: Option<&Value>) -> Result<Vec<Input>, Refusal> {
    let invalid = |message: &str| Refusal::invalid("input", message);
    let inputs = match input {
        Some(Value::String(text)) => vec![Input::Text(text.clone())],
        Some(Value::Array(items)) if items.iter().all(Value::is_number) => vec![token_ids(items)?],
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(text) => Ok(Input::Text(text.clone())),
                Value::Array(tokens) => token_ids(tokens),
                _ => Err(invalid("each input must be a string or an array of token ids")),
            })
            .collect::<Result<Vec<_>, _>>()?,
        _ => return Err(invalid("`input` must be a string, an array of strings or token ids")),
    };
    if inputs.is_empty() {
        return Err(invalid("`input` is empty"));
    }
    if inputs.len() > MAX_INPUTS {
        return Err(Refusal::invalid("input", format!("{} inputs; at most {MAX_INPUTS} per request", inputs.len())));
    }
    if let Some(i) = inputs
        .iter()
        .position(|input| matches!(input, Input::Text(t) if t.is_empty()) || input == &Input::Tokens(Vec::new()))
    {
        return Err(Refusal::invalid("input", format!("input[{i}] is empty")));
    }
    Ok(inputs)
}

fn token_ids(items: &[Value]) -> Result<Input, Refusal> {
    items
        .iter()
        .map(|item| item.as_i64().and_then(|id| i32::try_from(id).ok()))
        .collect::<Option<Vec<i32>>>()
        .map(Input::Tokens)
        .ok_or_else(|| Refusal::invalid("input", "token ids must be integers"))
}

/// Scales `vector` to unit length (a zero vector stays zero).
pub fn normalise(vector: &mut [f32]) {
    let norm = vector.iter().map(|v| f64::from(*v) * f64::from(*v)).sum::<f64>().sqrt();
    if norm > 0.0 {
        for v in vector.iter_mut() {
            *v = (f64::from(*v) / norm) as f32;
        }
    }
}

/// The OpenAI answer for `vectors` (one per input, in order).
pub fn answer(request: &EmbeddingRequest, vectors: &[Vec<f32>], prompt_tokens: usize) -> Value {
    use base64::Engine as _;
    let data: Vec<Value> = vectors
        .iter()
        .enumerate()
        .map(|(index, vector)| {
            let embedding = if request.base64 {
                let bytes: Vec<u8> = vector.iter().flat_map(|v| v.to_le_bytes()).collect();
                Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(vector)
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    json!({"object": "list", "data": data, "model": request.model,
           "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_are_read_in_every_shape() {
        let parse = |body: Value| parse(&body, 4).expect("valid").inputs;
        assert_eq!(parse(json!({"input": "a"})), [Input::Text("a".into())]);
        assert_eq!(parse(json!({"input": ["a", "b"]})).len(), 2);
        assert_eq!(parse(json!({"input": [1, 2]})), [Input::Tokens(vec![1, 2])]);
        assert_eq!(parse(json!({"input": [[1], [2, 3]]})).len(), 2);
        assert!(super::parse(&json!({"input": "a", "encoding_format": "base64"}), 4).expect("valid").base64);
        assert!(super::parse(&json!({"input": "a", "dimensions": 4}), 4).is_ok());
    }

    #[test]
    fn what_cannot_be_honoured_is_refused_by_name() {
        let refused = |body: Value| parse(&body, 4).expect_err("refused").param.unwrap_or_default();
        assert_eq!(refused(json!({"input": "a", "dimensions": 2})), "dimensions");
        assert_eq!(refused(json!({"input": "a", "encoding_format": "int8"})), "encoding_format");
        assert_eq!(refused(json!({"input": "a", "truncate": true})), "truncate");
        assert_eq!(refused(json!({"input": []})), "input");
        assert_eq!(refused(json!({"input": ["a", ""]})), "input");
        assert_eq!(refused(json!({"input": [{"text": "a"}]})), "input");
        let many: Vec<Value> = (0..=MAX_INPUTS).map(|_| json!("x")).collect();
        assert_eq!(refused(json!({"input": many})), "input");
    }

    #[test]
    fn vectors_are_unit_length_and_base64_is_little_endian_f32() {
        let mut vector = vec![3.0, 4.0];
        normalise(&mut vector);
        assert_eq!(vector, [0.6, 0.8]);
        let request = EmbeddingRequest { inputs: vec![Input::Text("a".into())], base64: true, model: "m".into() };
        let answer = answer(&request, &[vec![1.0]], 1);
        assert_eq!(answer["data"][0]["embedding"], "AACAPw==");
        assert_eq!(answer["usage"]["prompt_tokens"], 1);
    }
}
