//! Unit tests of the ledger (a file of their own to keep ledger.rs short). Time is passed in, never slept.
use super::*;
use crate::budget::{Limit, Scope, Window};

const T0: i64 = 1_709_164_800_000; // 2024-02-29T00:00:00Z
const HOUR: i64 = 3_600_000;

fn spec(name: &str, scope: Scope, window: Window, limit: Limit, action: Action) -> BudgetSpec {
    BudgetSpec { name: name.into(), scope, window, limit, action }
}

fn key(tenant: &str) -> RequestKey {
    RequestKey { tenant: tenant.into(), route: "chat".into(), model: "gpt-4o".into() }
}

fn amount(usd: f64, tokens: u64) -> Amount {
    Amount { usd, tokens }
}

#[test]
fn free_requests_pass_a_usd_budget_but_not_a_request_budget() {
    let usd = Ledger::in_memory(vec![spec("usd", Scope::Global, Window::Day, Limit::Usd(0.0), Action::Reject)]);
    for _ in 0..100 {
        let _ = usd
            .reserve(&key("a"), amount(0.0, 500), T0)
            .expect("a free request is not blocked")
            .settle(amount(0.0, 700), T0);
    }
    assert!(usd.reserve(&key("a"), amount(0.001, 1), T0).is_err(), "a paid request is");
    assert_eq!(usd.usage(T0)[0].requests, 100);

    let req = Ledger::in_memory(vec![spec("req", Scope::Global, Window::Day, Limit::Requests(2), Action::Reject)]);
    let first = req.reserve(&key("a"), amount(0.0, 0), T0).expect("1st");
    let _ = req.reserve(&key("a"), amount(0.0, 0), T0).expect("2nd").settle(amount(0.0, 0), T0);
    // In-flight requests count: a third cannot start while the first runs.
    assert!(req.reserve(&key("a"), amount(0.0, 0), T0).is_err());
    let _ = first.settle(Amount::default(), T0);
    assert!(req.reserve(&key("a"), amount(0.0, 0), T0).is_err());

    let tok = Ledger::in_memory(vec![spec("tok", Scope::Global, Window::Day, Limit::Tokens(100), Action::Reject)]);
    let _ = tok.reserve(&key("a"), amount(0.0, 80), T0).expect("fits").settle(amount(0.0, 100), T0);
    assert!(tok.reserve(&key("a"), amount(0.0, 0), T0).is_err(), "a token budget blocks free requests");
}

#[test]
fn concurrency_overspends_by_at_most_one_reservation() {
    let specs = vec![
        spec("usd", Scope::Global, Window::Day, Limit::Usd(1.0), Action::Reject),
        spec("tok", Scope::Tenant("acme".into()), Window::Day, Limit::Tokens(5000), Action::Downgrade),
    ];
    for overrun in [false, true] {
        let ledger = Ledger::in_memory(specs.clone());
        let barrier = std::sync::Barrier::new(200);
        // Per thread: (largest usd estimate, largest token estimate, usd over estimates, tokens over estimates).
        let results: Vec<(f64, u64, f64, u64)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..200u64)
                .map(|i| {
                    let (ledger, barrier) = (&ledger, &barrier);
                    s.spawn(move || {
                        let est = amount(0.01 + (i % 5) as f64 * 0.01, 50 + (i % 7) * 40);
                        let mut out = (0.0, 0, 0.0, 0);
                        barrier.wait();
                        for round in 0..20 {
                            let Ok(r) = ledger.reserve(&key("acme"), est, T0 + round) else { break };
                            std::thread::yield_now();
                            let factor = if overrun && i % 3 == 0 { 1.1 } else { 0.5 + (i % 6) as f64 * 0.1 };
                            let actual = amount(est.usd * factor, (est.tokens as f64 * factor) as u64);
                            out.0 = f64::max(out.0, est.usd);
                            out.1 = out.1.max(est.tokens);
                            out.2 += (actual.usd - est.usd).max(0.0);
                            out.3 += actual.tokens.saturating_sub(est.tokens);
                            let _ = r.settle(actual, T0 + round);
                        }
                        out
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("thread")).collect()
        });
        let max_usd = results.iter().map(|r| r.0).fold(0.0, f64::max);
        let max_tok = results.iter().map(|r| r.1).max().unwrap_or(0);
        let (over_usd, over_tok): (f64, u64) = (results.iter().map(|r| r.2).sum(), results.iter().map(|r| r.3).sum());
        if !overrun {
            assert_eq!((over_usd, over_tok), (0.0, 0));
        }
        // Top up sequentially until refused, so the budgets are surely full whatever the threads' timing was.
        let small = amount(0.01, 50);
        while let Ok(r) = ledger.reserve(&key("acme"), small, T0 + 50) {
            let _ = r.settle(small, T0 + 50);
        }
        let u = ledger.usage(T0 + 100);
        assert!(u[0].used.usd < 1.0 + max_usd + over_usd + 1e-9, "usd {} (overrun {overrun})", u[0].used.usd);
        assert!(u[1].used.tokens < 5000 + max_tok + over_tok, "tokens {} (overrun {overrun})", u[1].used.tokens);
        assert!(u[0].used.usd >= 1.0 || u[1].used.tokens >= 5000, "{u:?}");
        // Nothing is left reserved.
        assert_eq!(
            (u[0].in_flight, u[0].reserved, u[1].in_flight, u[1].reserved),
            (0, Amount::default(), 0, Amount::default())
        );
    }
}

#[test]
fn concurrency_slots_are_released_on_settle_drop_and_release() {
    let ledger = Ledger::in_memory(vec![spec(
        "slots",
        Scope::Route("chat".into()),
        Window::Minute,
        Limit::Concurrent(2),
        Action::Reject,
    )]);
    let a = ledger.reserve(&key("x"), amount(1.0, 1), T0).expect("1");
    let b = ledger.reserve(&key("y"), amount(1.0, 1), T0).expect("2");
    let denied = ledger.reserve(&key("z"), amount(1.0, 1), T0).expect_err("full");
    assert_eq!(denied.resets_at_unix_ms, T0 + 1000);
    assert!(denied.message.contains("2 requests in flight of 2"), "{}", denied.message);
    let other_route = RequestKey { route: "embed".into(), ..key("z") };
    drop(ledger.reserve(&other_route, amount(1.0, 1), T0).expect("another route is not limited"));
    let _ = a.settle(amount(0.5, 1), T0);
    let c = ledger.reserve(&key("z"), amount(1.0, 1), T0).expect("freed by settle");
    drop(b); // forgotten reservation
    let d = ledger.reserve(&key("z"), amount(1.0, 1), T0).expect("freed by drop");
    c.release();
    drop(d);
    let u = &ledger.usage(T0)[0];
    assert_eq!((u.in_flight, u.reserved, u.requests, u.remaining), (0, Amount::default(), 1, 2.0));
}

#[test]
fn alerts_fire_once_per_threshold_and_window() {
    let ledger = Ledger::in_memory(vec![
        spec("soft", Scope::Global, Window::Hour, Limit::Tokens(1000), Action::Alert),
        spec("hard", Scope::Tenant("acme".into()), Window::Hour, Limit::Requests(3), Action::Reject),
    ]);
    let spend = |tokens: u64, now: i64| -> Vec<(String, f64)> {
        let r = ledger.reserve(&key("acme"), amount(0.0, 100), now).expect("admitted");
        r.settle(amount(0.0, tokens), now).into_iter().map(|a| (a.budget, a.threshold)).collect()
    };
    assert!(spend(700, T0).is_empty());
    assert_eq!(spend(150, T0 + 1), vec![("soft".to_string(), 0.8)]);
    // The third request fills "hard" (an enforcing budget alerts at 100% only); "soft" passes 100% too.
    assert_eq!(spend(200, T0 + 2), vec![("soft".to_string(), 1.0), ("hard".to_string(), 1.0)]);
    let alert_budget_never_denies = ledger.reserve(&key("other"), amount(0.0, 100), T0 + 3).expect("soft only");
    assert!(alert_budget_never_denies.settle(amount(0.0, 100), T0 + 3).is_empty(), "fired once already");
    // Next hour: fresh counters, fresh alerts; both thresholds crossed at once fire together.
    let fresh: Vec<f64> = spend(5000, T0 + HOUR).into_iter().map(|(_, t)| t).collect();
    assert_eq!(fresh, vec![0.8, 1.0]);
}

#[test]
fn denial_names_budget_limit_usage_and_reset() {
    let ledger = Ledger::in_memory(vec![
        spec("cheap-route", Scope::Route("chat".into()), Window::Day, Limit::Usd(1.0), Action::Downgrade),
        spec("acme-monthly", Scope::Tenant("acme".into()), Window::Month, Limit::Usd(2.0), Action::Reject),
        spec("watch", Scope::Global, Window::Minute, Limit::Usd(0.1), Action::Alert),
    ]);
    let now = T0 + 13 * HOUR + 5_000;
    let _ = ledger.reserve(&key("acme"), amount(0.5, 10), now).expect("fits").settle(amount(1.25, 10), now);
    // Only the route budget is full: downgrade, resetting at the next UTC midnight.
    let d = ledger.reserve(&key("globex"), amount(0.5, 10), now).expect_err("route full");
    assert_eq!((d.budget.as_str(), d.action, d.resets_at_unix_ms), ("cheap-route", Action::Downgrade, T0 + 24 * HOUR));
    assert_eq!(
        d.message,
        "budget \"cheap-route\" (route:chat, usd limit per day (UTC)) exhausted: $1.2500 used + $0.0000 reserved \
         of $1.0000; resets at 2024-03-01T00:00:00Z"
    );
    assert_eq!(d.retry_after_secs(now), 11 * 3600 - 5);
    let held = ledger.reserve(&RequestKey { route: "other".into(), ..key("acme") }, amount(0.8, 1), now).expect("room");
    // Both enforcing budgets are full for acme on route chat: reject wins over downgrade.
    let d = ledger.reserve(&key("acme"), amount(0.5, 10), now).expect_err("both full");
    assert_eq!((d.budget.as_str(), d.action), ("acme-monthly", Action::Reject));
    assert!(d.message.contains("$1.2500 used + $0.8000 reserved of $2.0000"), "{}", d.message);
    assert!(d.message.contains("resets at 2024-03-01T00:00:00Z"), "{}", d.message);
    assert_eq!(d.to_string(), d.message);
    held.release();
}

#[test]
fn reservation_spanning_a_reset_settles_into_the_new_window() {
    let ledger = Ledger::in_memory(vec![spec("tok", Scope::Global, Window::Hour, Limit::Tokens(1000), Action::Reject)]);
    let _ = ledger.reserve(&key("a"), amount(0.0, 900), T0).expect("fits").settle(amount(0.0, 900), T0);
    let long = ledger.reserve(&key("a"), amount(0.0, 500), T0 + HOUR - 1).expect("900 < 1000");
    let u = &ledger.usage(T0 + HOUR)[0];
    assert_eq!((u.window_start, u.used.tokens, u.reserved.tokens, u.in_flight), (T0 + HOUR, 0, 500, 1));
    let _ = long.settle(amount(0.0, 300), T0 + HOUR + 10);
    let u = &ledger.usage(T0 + HOUR + 20)[0];
    assert_eq!((u.used.tokens, u.reserved.tokens, u.requests), (300, 0, 1));
}

#[test]
fn usage_reports_remaining_burn_rate_and_projection() {
    let ledger = Ledger::in_memory(vec![
        spec("day", Scope::Model("gpt-4o".into()), Window::Day, Limit::Usd(10.0), Action::Reject),
        spec("idle", Scope::Model("llama".into()), Window::Day, Limit::Usd(10.0), Action::Reject),
    ]);
    let _ = ledger.reserve(&key("a"), amount(1.0, 0), T0 + HOUR).expect("ok").settle(amount(2.0, 0), T0 + HOUR);
    let open = ledger.reserve(&key("a"), amount(0.5, 7), T0 + HOUR).expect("ok");
    let u = ledger.usage(T0 + 2 * HOUR);
    assert_eq!((u[0].remaining, u[0].requests, u[0].in_flight), (8.0, 1, 1));
    assert_eq!((u[0].reserved, u[0].resets_at_unix_ms), (amount(0.5, 7), T0 + 24 * HOUR));
    // $2 in 2 h: $1/h, so the remaining $8 last 8 h.
    assert!((u[0].burn_rate_per_hour - 1.0).abs() < 1e-9);
    assert_eq!(u[0].projected_exhaustion_unix_ms, Some(T0 + 10 * HOUR));
    assert_eq!((u[1].burn_rate_per_hour, u[1].projected_exhaustion_unix_ms, u[1].remaining), (0.0, None, 10.0));
    // At that rate a slow spender does not run out before the reset.
    let u = ledger.usage(T0 + 20 * HOUR);
    assert_eq!(u[0].projected_exhaustion_unix_ms, None);
    let _ = open.settle(amount(9.0, 7), T0 + 20 * HOUR);
    let u = ledger.usage(T0 + 21 * HOUR);
    assert_eq!((u[0].remaining, u[0].projected_exhaustion_unix_ms), (0.0, Some(T0 + 21 * HOUR)));
}
