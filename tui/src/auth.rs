//! The bearer token every call to the daemon carries, added by a tonic interceptor so no call site can
//! forget it.
use std::fmt;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::{Request, Status};

/// Adds `authorization: Bearer <token>` to each request; adds nothing when no token was given.
#[derive(Clone, Default)]
pub struct BearerAuth {
    header: Option<MetadataValue<Ascii>>,
}

/// The token cannot travel in a gRPC header (control characters, non-ASCII).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidToken;

impl fmt::Display for InvalidToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the token must be printable ASCII (it is sent as a gRPC header)")
    }
}

impl std::error::Error for InvalidToken {}

impl BearerAuth {
    /// An empty token counts as none, so `LLMOPS_TOKEN=` disables authentication instead of sending `Bearer `.
    pub fn new(token: Option<&str>) -> Result<Self, InvalidToken> {
        let header = match token.map(str::trim).filter(|t| !t.is_empty()) {
            None => None,
            Some(token) => Some(format!("Bearer {token}").parse().map_err(|_| InvalidToken)?),
        };
        Ok(Self { header })
    }
}

// Hand-written so a token never ends up in debug output or logs.
impl fmt::Debug for BearerAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let token = if self.header.is_some() { "<redacted>" } else { "<none>" };
        f.debug_struct("BearerAuth").field("token", &token).finish()
    }
}

impl Interceptor for BearerAuth {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(header) = &self.header {
            request.metadata_mut().insert("authorization", header.clone());
        }
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authorization_of(mut auth: BearerAuth) -> Option<String> {
        let request = auth.call(Request::new(())).expect("interceptor never rejects");
        request.metadata().get("authorization").map(|v| v.to_str().expect("ascii header").to_owned())
    }

    #[test]
    fn token_becomes_bearer_header() {
        let auth = BearerAuth::new(Some("s3cret")).expect("valid token");
        assert_eq!(authorization_of(auth).as_deref(), Some("Bearer s3cret"));
    }

    #[test]
    fn missing_or_blank_token_sends_no_header() {
        assert_eq!(authorization_of(BearerAuth::new(None).expect("none")), None);
        assert_eq!(authorization_of(BearerAuth::new(Some("  ")).expect("blank")), None);
    }

    #[test]
    fn token_with_control_characters_is_refused() {
        assert_eq!(BearerAuth::new(Some("abc\ndef")).err(), Some(InvalidToken));
    }

    #[test]
    fn debug_output_hides_the_token() {
        let auth = BearerAuth::new(Some("s3cret")).expect("valid token");
        assert!(!format!("{auth:?}").contains("s3cret"));
    }
}
