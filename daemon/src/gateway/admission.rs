//! Before a request runs: its key's rate limits, then, per target, a budget reservation of its estimated
//! cost (prompt tokens + `max_tokens`, priced at the target's price). After it ends, the reservation is
//! settled with what it really used.
use super::error::GatewayError;
use super::request::ClientRequest;
use super::usage::estimate_tokens;
use crate::auth::Principal;
use crate::budget::{Action, Amount, Denied, Ledger, RateLimiter, RequestKey, Reservation};
use crate::router::Target;
use std::time::Instant;

/// Output tokens reserved for a request that sets no `max_tokens`.
pub const DEFAULT_OUTPUT_ESTIMATE: u64 = 1024;

pub struct Admission {
    pub budgets: Ledger,
    pub rate_limiter: RateLimiter,
}

/// What a request is expected to use, before any engine is asked.
#[derive(Debug, Clone, Copy)]
pub struct Estimate {
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// The output estimate is the client's own `max_tokens` (not the default).
    pub output_from_client: bool,
}

impl Estimate {
    pub fn of(request: &ClientRequest) -> Self {
        let max_tokens = ["max_completion_tokens", "max_tokens"]
            .iter()
            .find_map(|field| request.body.get(field).and_then(serde_json::Value::as_u64));
        // `n` choices each generate up to max_tokens.
        let choices = request.body.get("n").and_then(serde_json::Value::as_u64).unwrap_or(1).max(1);
        Self {
            input_tokens: estimate_tokens(&request.prompt_text),
            output_tokens: max_tokens.unwrap_or(DEFAULT_OUTPUT_ESTIMATE).saturating_mul(choices),
            output_from_client: max_tokens.is_some(),
        }
    }

    /// Saturating: a client's `max_tokens` of 2^64-1 must not wrap to a small number past a token limit.
    pub fn tokens(&self) -> u64 {
        self.input_tokens.saturating_add(self.output_tokens)
    }

    fn amount(&self, target: &Target) -> Amount {
        let usd = target.price.map_or(0.0, |price| price.cost_usd(self.input_tokens, self.output_tokens, 0));
        Amount { usd, tokens: self.tokens() }
    }
}

/// A target's budgets said no.
pub enum NotAdmitted {
    /// Try the route's next target.
    Downgrade(Denied),
    Reject(GatewayError),
}

impl Admission {
    /// The key's (or, without a key, the tenant's) requests and tokens per minute.
    pub fn rate_limit(&self, principal: &Principal, estimate: &Estimate) -> Result<(), GatewayError> {
        let key = principal.key_id.as_deref().unwrap_or(&principal.tenant);
        let limit = self.rate_limiter.tokens_per_min().filter(|_| estimate.output_from_client);
        if let Some(per_min) = limit.filter(|limit| estimate.tokens() > u64::from(*limit)) {
            // It could never fit: waiting would not help, so say what to change instead of a 429.
            return Err(GatewayError::invalid_param(
                "max_tokens",
                format!(
                    "this request may use up to {} tokens (about {} in the prompt, up to {} generated, `n` \
                     included), more than the limit of {per_min} tokens per minute for {key}: lower max_tokens",
                    estimate.tokens(),
                    estimate.input_tokens,
                    estimate.output_tokens
                ),
            ));
        }
        self.rate_limiter.check(key, estimate.tokens(), Instant::now()).map_err(|limited| GatewayError::RateLimited {
            message: format!(
                "Rate limit reached for {key}: {} {} per minute. Try again in {:.1} s.",
                limited.limit,
                limited.which.as_str(),
                limited.retry_after.as_secs_f64()
            ),
            retry_after_secs: limited.retry_after.as_secs_f64().ceil().max(1.0) as u64,
        })
    }

    /// Reserves the estimate against every budget that applies to this target.
    pub fn reserve(
        &self,
        principal: &Principal,
        route: &str,
        target: &Target,
        estimate: &Estimate,
    ) -> Result<Reservation, NotAdmitted> {
        let key =
            RequestKey { tenant: principal.tenant.clone(), route: route.to_string(), model: target.model.clone() };
        let now = crate::clock::unix_ms();
        self.budgets.reserve(&key, estimate.amount(target), now).map_err(|denied| match denied.action {
            Action::Downgrade => NotAdmitted::Downgrade(denied),
            Action::Reject | Action::Alert => NotAdmitted::Reject(budget_exceeded(&denied, now)),
        })
    }
}

pub fn budget_exceeded(denied: &Denied, now_unix_ms: i64) -> GatewayError {
    GatewayError::BudgetExceeded {
        message: denied.message.clone(),
        retry_after_secs: denied.retry_after_secs(now_unix_ms),
    }
}
