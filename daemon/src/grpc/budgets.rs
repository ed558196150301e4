//! `llmops.v1.BudgetService`: budgets with usage, remaining, burn rate and projected exhaustion, as a list
//! and as a watch stream of changes.
use super::watch::{self, WatchStream};
use crate::budget::{Action, BudgetUsage, Ledger, Limit};
use crate::shutdown::Shutdown;
use llmops_proto::v1 as pb;
use std::time::Duration;
use tonic::{Request, Response, Status};

/// How often a watch looks for changed budgets.
const WATCH_EVERY: Duration = Duration::from_secs(1);
/// Updates a watcher may have unread before it is dropped.
const WATCH_BACKLOG: usize = 16;

pub struct BudgetApi {
    pub budgets: Ledger,
    pub shutdown: Shutdown,
}

fn action_name(action: Action) -> &'static str {
    match action {
        Action::Reject => "reject",
        Action::Downgrade => "downgrade",
        Action::Alert => "alert",
    }
}

pub fn budget_to_proto(usage: &BudgetUsage) -> pb::Budget {
    let spec = &usage.spec;
    let (used, reserved) = match spec.limit {
        Limit::Usd(_) => (usage.used.usd, usage.reserved.usd),
        Limit::Tokens(_) => (usage.used.tokens as f64, usage.reserved.tokens as f64),
        Limit::Requests(_) => (usage.requests as f64, usage.in_flight as f64),
        Limit::Concurrent(_) => (usage.in_flight as f64, 0.0),
    };
    pb::Budget {
        name: spec.name.clone(),
        scope: spec.scope.to_string(),
        window: if matches!(spec.limit, Limit::Concurrent(_)) { String::new() } else { spec.window.as_str().into() },
        limit_kind: spec.limit.unit().into(),
        limit: spec.limit.value(),
        action: action_name(spec.action).into(),
        used,
        reserved,
        remaining: usage.remaining,
        in_flight: usage.in_flight,
        window_start_unix_ms: usage.window_start,
        resets_at_unix_ms: usage.resets_at_unix_ms,
        burn_rate_per_hour: usage.burn_rate_per_hour,
        projected_exhaustion_unix_ms: usage.projected_exhaustion_unix_ms,
        used_usd: usage.used.usd,
        used_tokens: usage.used.tokens,
        requests: usage.requests,
    }
}

fn snapshot(budgets: &Ledger) -> (i64, Vec<pb::Budget>) {
    let now = crate::clock::unix_ms();
    (now, budgets.usage(now).iter().map(budget_to_proto).collect())
}

/// Budgets whose spend or holds differ from what was sent (all of them before anything was sent). Burn rates
/// drift every second; an update is for a change in what was spent or held.
fn changed_since(sent: Option<&[pb::Budget]>, now: &[pb::Budget]) -> Vec<pb::Budget> {
    now.iter()
        .filter(|b| {
            sent.and_then(|sent| sent.iter().find(|p| p.name == b.name)).is_none_or(|p| {
                (p.used, p.reserved, p.in_flight, p.window_start_unix_ms)
                    != (b.used, b.reserved, b.in_flight, b.window_start_unix_ms)
            })
        })
        .cloned()
        .collect()
}

#[tonic::async_trait]
impl pb::budget_service_server::BudgetService for BudgetApi {
    async fn list_budgets(
        &self,
        _: Request<pb::ListBudgetsRequest>,
    ) -> Result<Response<pb::ListBudgetsResponse>, Status> {
        let (at_unix_ms, budgets) = snapshot(&self.budgets);
        Ok(Response::new(pb::ListBudgetsResponse { at_unix_ms, budgets }))
    }

    type WatchBudgetsStream = WatchStream<pb::BudgetUpdate>;

    async fn watch_budgets(
        &self,
        _: Request<pb::WatchBudgetsRequest>,
    ) -> Result<Response<Self::WatchBudgetsStream>, Status> {
        // Spend is not evented: a task per viewer polls the ledger and offers what changed.
        let (sender, receiver) = watch::channel(WATCH_BACKLOG);
        tokio::spawn(poll_changes(self.budgets.clone(), self.shutdown.clone(), sender));
        Ok(Response::new(watch::follow(receiver, self.shutdown.clone(), |update| update)))
    }
}

/// Offers the viewer the budgets that changed, every `WATCH_EVERY`, until it goes away or is dropped.
async fn poll_changes(budgets: Ledger, mut shutdown: Shutdown, sender: watch::Sender<pb::BudgetUpdate>) {
    // What the viewer was last sent: each update carries every change since, so one it could not take is
    // folded into the next instead of lost.
    let mut delivered: Option<Vec<pb::Budget>> = None;
    let mut ticker = tokio::time::interval(WATCH_EVERY);
    // Updates in a row that found the viewer's buffer full.
    let mut missed = 0u64;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.wait() => return,
            _ = sender.closed() => return,
        }
        let (at_unix_ms, now) = snapshot(&budgets);
        let changed = changed_since(delivered.as_deref(), &now);
        if delivered.is_some() && changed.is_empty() {
            continue;
        }
        match sender.offer(pb::BudgetUpdate { at_unix_ms, budgets: changed, missed: 0 }) {
            watch::Offer::Buffered => {
                delivered = Some(now);
                missed = 0;
            }
            // Folded into the next update; a viewer that stops reading altogether is dropped.
            watch::Offer::Full => {
                missed += 1;
                if missed >= WATCH_BACKLOG as u64 {
                    sender.drop_viewer(missed);
                    return;
                }
            }
            watch::Offer::Gone => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_budgets_whose_spend_changed_are_sent_again() {
        let budget = |name: &str, used: f64| pb::Budget { name: name.into(), used, ..pb::Budget::default() };
        let sent = vec![budget("a", 1.0), budget("b", 2.0)];
        assert_eq!(changed_since(None, &sent).len(), 2, "everything first");
        let now = vec![budget("a", 1.0), budget("b", 2.5)];
        assert_eq!(changed_since(Some(&sent), &now), vec![budget("b", 2.5)]);
        assert!(changed_since(Some(&now), &now).is_empty());
    }
}
