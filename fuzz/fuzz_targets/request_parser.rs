//! A client's request as the gateway reads it: header lines (`name: value`) up to a blank line, then the
//! body, parsed for one of the three endpoints (the first byte picks it). Whatever it is, parsing returns a
//! request or an error that renders as an OpenAI-shaped response; it never panics.
#![no_main]

use axum::response::IntoResponse;
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use llmopsd::gateway::request::{ClientRequest, Endpoint};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    let endpoint = Endpoint::ALL[usize::from(selector) % Endpoint::ALL.len()];
    let (headers, body) = split_headers(rest);
    match ClientRequest::parse(endpoint, body, &headers) {
        Ok(mut request) => {
            let _ = request.upstream_body("engine-model");
        }
        Err(error) => {
            let _ = error.into_response();
        }
    }
});

/// `name: value` lines before the first empty line become headers (invalid ones are skipped, as the
/// HTTP server would have refused them); the rest is the body. Without an empty line it is all body.
fn split_headers(data: &[u8]) -> (HeaderMap, &[u8]) {
    let mut headers = HeaderMap::new();
    let Some(end) = data.windows(2).position(|w| w == b"\n\n") else {
        return (headers, data);
    };
    for line in data[..end].split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
            headers.append(name, value);
        }
    }
    (headers, &data[end + 2..])
}
