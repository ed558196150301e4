//! What a web browser may do. Loopback is no boundary for a browser: any page the operator opens can POST to
//! `http://127.0.0.1:8080` (a `text/plain` form post needs no CORS preflight), and a DNS-rebinding page can read
//! the answers. So, before anything else runs:
//! - a request whose `Origin` is not in `server.cors_origins` gets a 403 (browsers send `Origin` on every
//!   cross-origin request and on POSTs; scripts and SDKs send none);
//! - a POST that is not `Content-Type: application/json` gets a 415 (what a form can send without a preflight);
//! - while no API key is required (no keys, loopback listener), the `Host` must name loopback, else 403: a
//!   rebinding page's requests carry its own host name.
//!
//! Allowed origins get CORS headers, and their preflight (`OPTIONS`) is answered.
use super::error::GatewayError;
use super::refusals::Refused;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};

pub struct BrowserPolicy {
    allowed_origins: Vec<String>,
}

impl BrowserPolicy {
    pub fn new(allowed_origins: &[String]) -> Self {
        Self { allowed_origins: allowed_origins.iter().map(|o| o.to_ascii_lowercase()).collect() }
    }

    /// The request's allowed `Origin`, if it has one; an error for one that is not allowed, a POST that is not
    /// JSON, or (when `loopback_only` is set) a `Host` that is not loopback.
    pub fn check(
        &self,
        method: &Method,
        headers: &HeaderMap,
        loopback_only: bool,
    ) -> Result<Option<HeaderValue>, (Refused, GatewayError)> {
        if loopback_only {
            let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
            if !host.is_empty() && !is_loopback_host(host) {
                return Err((
                    Refused::Host,
                    GatewayError::Forbidden {
                        message: format!(
                            "Host {} is not a loopback name: without API keys this daemon only answers requests \
                             addressed to localhost (create a key with `llmopsctl keys create` to serve others)",
                            printable(host)
                        ),
                        code: Refused::Host.as_str(),
                    },
                ));
            }
        }
        let origin = match headers.get(header::ORIGIN) {
            None => None,
            Some(origin) => {
                let text = origin.to_str().unwrap_or("").to_ascii_lowercase();
                if !self.allowed_origins.contains(&text) {
                    return Err((
                        Refused::Origin,
                        GatewayError::Forbidden {
                            message: format!(
                                "Origin {} is not allowed: browser pages may call this API only from the origins \
                                 in server.cors_origins",
                                printable(&text)
                            ),
                            code: Refused::Origin.as_str(),
                        },
                    ));
                }
                Some(origin.clone())
            }
        };
        if method == Method::POST && !is_json(headers) {
            return Err((
                Refused::MediaType,
                GatewayError::UnsupportedMediaType(
                    "Content-Type must be application/json (send the body as JSON with that header)".into(),
                ),
            ));
        }
        Ok(origin)
    }
}

/// The CORS preflight answer for an allowed origin.
pub fn preflight(origin: HeaderValue) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let headers = response.headers_mut();
    allow(headers, origin);
    headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST, OPTIONS"));
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static(
            "authorization, content-type, x-llmops-session-id, x-llmops-user, x-llmops-prompt, \
             x-llmops-prompt-variables",
        ),
    );
    headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    response
}

/// Marks a response as readable by `origin`.
pub fn allow(headers: &mut HeaderMap, origin: HeaderValue) {
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.insert(header::VARY, HeaderValue::from_static("Origin"));
    headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static("x-request-id"));
}

fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else { return false };
    let essence = value.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
}

/// `localhost`, `*.localhost`, `127.x.y.z`, `[::1]` or `0.0.0.0` (which reaches this host), with or without a port.
fn is_loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((inside, _)) => inside,
            None => return false,
        }
    } else {
        host.rsplit_once(':').map_or(host, |(name, port)| if port.parse::<u16>().is_ok() { name } else { host })
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    if name == "localhost" || name.ends_with(".localhost") {
        return true;
    }
    name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified())
}

/// A header value for an error message: bounded and without control characters.
fn printable(text: &str) -> String {
    let cleaned: String = text.chars().filter(|c| !c.is_control()).take(100).collect();
    format!("{cleaned:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).expect("header value"));
        }
        map
    }

    const JSON: (&str, &str) = ("content-type", "application/json");

    #[test]
    fn loopback_names_are_recognised() {
        for host in [
            "localhost",
            "localhost:8080",
            "127.0.0.1",
            "127.0.0.1:80",
            "127.1.2.3:9",
            "[::1]:8080",
            "[::1]",
            "a.localhost:1",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in
            ["evil.example", "evil.example:8080", "10.0.0.1", "[2001:db8::1]:80", "localhost.evil.example", "[::1"]
        {
            assert!(!is_loopback_host(host), "{host}");
        }
    }

    #[test]
    fn a_foreign_origin_a_form_post_and_a_rebinding_host_are_refused() {
        let policy = BrowserPolicy::new(&["https://chat.example.com".to_string()]);
        let foreign = headers(&[JSON, ("origin", "https://evil.example")]);
        let refused = policy.check(&Method::POST, &foreign, false).expect_err("foreign origin");
        assert_eq!(refused.0, Refused::Origin);
        assert_eq!(refused.1.status(), StatusCode::FORBIDDEN);

        let form = headers(&[("content-type", "text/plain")]);
        let refused = policy.check(&Method::POST, &form, false).expect_err("text/plain");
        assert_eq!((refused.0, refused.1.status()), (Refused::MediaType, StatusCode::UNSUPPORTED_MEDIA_TYPE));
        assert!(policy.check(&Method::POST, &HeaderMap::new(), false).is_err(), "no content type");

        let rebound = headers(&[JSON, ("host", "attacker.example:8080")]);
        assert_eq!(policy.check(&Method::POST, &rebound, true).expect_err("rebinding").0, Refused::Host);
        assert!(policy.check(&Method::POST, &rebound, false).is_ok(), "keys required: any host");
    }

    #[test]
    fn sdks_and_allowed_origins_pass() {
        let policy = BrowserPolicy::new(&["https://Chat.example.com".to_string()]);
        let sdk = headers(&[("content-type", "application/json; charset=utf-8"), ("host", "127.0.0.1:8080")]);
        assert_eq!(policy.check(&Method::POST, &sdk, true).expect("sdk"), None);
        let page = headers(&[JSON, ("origin", "https://chat.example.com"), ("host", "localhost:8080")]);
        assert!(policy.check(&Method::POST, &page, true).expect("allowed").is_some());
        assert!(policy.check(&Method::GET, &HeaderMap::new(), true).is_ok(), "GET needs no content type");
    }

    #[test]
    fn refusals_never_echo_long_values() {
        let policy = BrowserPolicy::new(&[]);
        let origin = format!("https://{}", "a".repeat(5000));
        let hostile = headers(&[JSON, ("origin", origin.as_str())]);
        let message = policy.check(&Method::POST, &hostile, false).expect_err("refused").1.message();
        assert!(message.len() < 400, "{message}");
        assert_eq!(printable("a\u{1b}]0;title\u{7}b"), "\"a]0;titleb\"");
    }
}
