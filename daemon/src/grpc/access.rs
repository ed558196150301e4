//! Who may call what on the TCP listener: a bearer token names a role, the method path names the role it needs.
//! Read-only callers see traces, status, telemetry and the watch streams; everything else (keys, acknowledging,
//! replay, prompts, datasets and evaluation runs, scores, cache clears) needs the admin token. A method not listed
//! as read-only needs admin, so a call added later is closed until someone decides otherwise.
use std::sync::Arc;

/// What a caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    ReadOnly,
    Admin,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::ReadOnly => "read-only",
            Role::Admin => "admin",
        }
    }
}

/// Methods (`/package.Service/Method`) the read-only role may call.
const READ_ONLY_METHODS: &[&str] = &[
    "/llmops.v1.TraceService/ListTraces",
    "/llmops.v1.TraceService/GetTrace",
    "/llmops.v1.TraceService/WatchTraces",
    "/llmops.v1.StatusService/GetStatus",
    "/llmops.v1.StatusService/GetEngineLogs",
    "/llmops.v1.TelemetryService/GetTelemetry",
    "/llmops.v1.TelemetryService/WatchTelemetry",
    "/llmops.v1.TelemetryService/QueryTelemetry",
    "/llmops.v1.TelemetryService/GetRequestMetrics",
    "/llmops.v1.BudgetService/ListBudgets",
    "/llmops.v1.BudgetService/WatchBudgets",
    "/llmops.v1.AlertService/ListAlerts",
    "/llmops.v1.AlertService/WatchAlerts",
    "/llmops.v1.CacheService/GetCacheStats",
    "/llmops.v1.EvalService/ListDatasets",
    "/llmops.v1.EvalService/GetDataset",
    "/llmops.v1.EvalService/ListEvalRuns",
    "/llmops.v1.EvalService/GetEvalRun",
    "/llmops.v1.EvalService/CompareEvalRuns",
    "/llmops.v1.FeedbackService/ListScores",
    "/llmops.v1.PromptService/ListPrompts",
    "/llmops.v1.PromptService/GetPrompt",
    "/llmops.v1.PromptService/DiffPrompt",
];

/// Services every authenticated caller may use whatever its role (load balancers' health checks, grpcurl).
const OPEN_SERVICES: &[&str] = &["/grpc.health.v1.Health/", "/grpc.reflection.v1.", "/grpc.reflection.v1alpha."];

/// The role a method needs.
pub fn required_role(path: &str) -> Role {
    if READ_ONLY_METHODS.contains(&path) || OPEN_SERVICES.iter().any(|prefix| path.starts_with(prefix)) {
        Role::ReadOnly
    } else {
        Role::Admin
    }
}

/// The method path of a call, copied from the HTTP request into the extensions tonic's interceptors see
/// (they are handed headers and extensions, not the URI).
#[derive(Debug, Clone)]
pub struct MethodPath(pub String);

pub fn tag_method_path<B>(mut request: axum::http::Request<B>) -> axum::http::Request<B> {
    // Bounded: a path longer than any of our methods is simply not one of them (and so needs admin).
    let path: String = request.uri().path().chars().take(256).collect();
    request.extensions_mut().insert(MethodPath(path));
    request
}

/// The tokens the TCP listener accepts. `None` (the Unix socket, whose file mode is the access control)
/// lets every call through as admin.
#[derive(Clone, Default)]
pub struct Tokens {
    inner: Option<Arc<TokenHeaders>>,
}

struct TokenHeaders {
    admin: String,
    read_only: Option<String>,
}

impl Tokens {
    pub fn open() -> Self {
        Self { inner: None }
    }

    pub fn new(admin: String, read_only: Option<String>) -> Self {
        Self {
            inner: Some(Arc::new(TokenHeaders {
                admin: format!("Bearer {admin}"),
                read_only: read_only.map(|token| format!("Bearer {token}")),
            })),
        }
    }

    /// The role an `authorization` header value grants, if any.
    fn role_of(&self, given: &str) -> Option<Role> {
        let tokens = self.inner.as_ref()?;
        // Both compared every time, so timing tells nothing about which one came close.
        let admin = constant_time_eq(given.as_bytes(), tokens.admin.as_bytes());
        let read = tokens.read_only.as_ref().is_some_and(|t| constant_time_eq(given.as_bytes(), t.as_bytes()));
        if admin {
            Some(Role::Admin)
        } else if read {
            Some(Role::ReadOnly)
        } else {
            None
        }
    }

    /// The interceptor's check: authenticated, and in a role that may call this method.
    pub fn check(&self, request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if self.inner.is_none() {
            return Ok(request);
        }
        let given = request.metadata().get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
        let Some(role) = self.role_of(given) else {
            return Err(tonic::Status::unauthenticated(
                "missing or wrong bearer token (authorization: Bearer <token>)",
            ));
        };
        let path = request.extensions().get::<MethodPath>().map_or("", |p| p.0.as_str());
        let needed = required_role(path);
        if role == Role::ReadOnly && needed == Role::Admin {
            return Err(tonic::Status::permission_denied(format!(
                "{path} needs the admin role; this token has the read-only role (traces, status, telemetry, watch)"
            )));
        }
        Ok(request)
    }
}

/// Compares secrets without leaking where they differ through timing.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(tokens: &Tokens, header: Option<&str>, path: &str) -> Result<(), tonic::Code> {
        let mut request = tonic::Request::new(());
        if let Some(header) = header {
            request.metadata_mut().insert("authorization", header.parse().expect("ascii"));
        }
        request.extensions_mut().insert(MethodPath(path.into()));
        tokens.check(request).map(|_| ()).map_err(|status| status.code())
    }

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"Bearer abc", b"Bearer abc"));
        assert!(!constant_time_eq(b"Bearer abd", b"Bearer abc"));
        assert!(!constant_time_eq(b"Bearer ab", b"Bearer abc"));
    }

    #[test]
    fn roles_gate_methods() {
        let tokens = Tokens::new("admin-t".into(), Some("read-t".into()));
        let list = "/llmops.v1.TraceService/ListTraces";
        let create_key = "/llmops.v1.KeyService/CreateKey";
        assert_eq!(call(&tokens, Some("Bearer read-t"), list), Ok(()));
        assert_eq!(call(&tokens, Some("Bearer read-t"), create_key), Err(tonic::Code::PermissionDenied));
        assert_eq!(call(&tokens, Some("Bearer admin-t"), create_key), Ok(()));
        assert_eq!(call(&tokens, Some("Bearer admin-t"), list), Ok(()));
        assert_eq!(call(&tokens, Some("Bearer nope"), list), Err(tonic::Code::Unauthenticated));
        assert_eq!(call(&tokens, None, list), Err(tonic::Code::Unauthenticated));
        assert_eq!(call(&tokens, Some("Bearer read-t"), "/grpc.health.v1.Health/Check"), Ok(()));
    }

    #[test]
    fn unknown_and_hostile_paths_need_admin() {
        let tokens = Tokens::new("admin-t".into(), Some("read-t".into()));
        for path in ["", "/llmops.v1.TraceService/Replay", "/llmops.v1.TraceService/ListTracesX", &"/x".repeat(10_000)]
        {
            assert_eq!(call(&tokens, Some("Bearer read-t"), path), Err(tonic::Code::PermissionDenied), "{path:.40}");
        }
        let tagged = tag_method_path(
            axum::http::Request::builder().uri(format!("/{}", "a".repeat(5000))).body(()).expect("req"),
        );
        assert_eq!(tagged.extensions().get::<MethodPath>().map(|p| p.0.len()), Some(256));
    }

    #[test]
    fn without_a_read_token_only_the_admin_token_works() {
        let tokens = Tokens::new("admin-t".into(), None);
        assert_eq!(
            call(&tokens, Some("Bearer "), "/llmops.v1.StatusService/GetStatus"),
            Err(tonic::Code::Unauthenticated)
        );
        assert_eq!(call(&Tokens::open(), None, "/llmops.v1.KeyService/CreateKey"), Ok(()));
    }
}
