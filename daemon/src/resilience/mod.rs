//! Per-target resilience for the router's fallback chains: circuit breakers (stop sending to a target that keeps
//! failing, probe it again after a cooldown, honour a provider's `Retry-After`) and bounded, jittered retries.
//! Time is passed in (`Instant`, `SystemTime`) and randomness is injected, so tests are deterministic and never
//! sleep.
pub mod breaker;
pub mod retry;

pub use breaker::{BreakerConfig, BreakerState, BreakerStatus, CircuitBreaker, Open, OpenCause, Permit};
pub use retry::{jitter_rng, parse_retry_after, RetryPolicy, RETRY_AFTER_CAP};

/// Durations in config files are whole milliseconds (`*_ms` keys), like the rest of the daemon's config.
mod serde_ms {
    pub mod millis {
        use serde::{Deserialize, Deserializer, Serializer};
        use std::time::Duration;
        pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        }
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
            u64::deserialize(d).map(Duration::from_millis)
        }
    }

    pub mod opt_millis {
        use serde::{Deserialize, Deserializer, Serializer};
        use std::time::Duration;
        pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
            match d {
                Some(d) => super::millis::serialize(d, s),
                None => s.serialize_none(),
            }
        }
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
            Option::<u64>::deserialize(d).map(|ms| ms.map(Duration::from_millis))
        }
    }
}

/// Breaker transitions, here so breaker.rs stays readable. Time is `t0 + offset`: no test sleeps.
#[cfg(test)]
mod breaker_tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn breaker(consecutive: u32, ratio: f64, min_requests: u32, probes: u32) -> CircuitBreaker {
        let config = BreakerConfig {
            consecutive_failures: consecutive,
            error_ratio: ratio,
            min_requests,
            window: ms(1000),
            cooldown: ms(500),
            half_open_probes: probes,
        };
        config.validate().expect("valid test config");
        CircuitBreaker::new(config)
    }

    fn fail(b: &CircuitBreaker, now: Instant) {
        b.try_acquire(now).expect("closed").failure(now);
    }

    fn succeed(b: &CircuitBreaker, now: Instant) {
        b.try_acquire(now).expect("closed").success(now);
    }

    /// Opens `b` by consecutive failures at `t`.
    fn open(b: &CircuitBreaker, t: Instant) {
        while b.state() == BreakerState::Closed {
            fail(b, t);
        }
    }

    #[test]
    fn config_defaults_and_toml() {
        let c: BreakerConfig = toml::from_str("").expect("empty config");
        assert_eq!(c, BreakerConfig::default());
        assert_eq!((c.consecutive_failures, c.min_requests, c.half_open_probes), (5, 20, 1));
        assert_eq!((c.error_ratio, c.window, c.cooldown), (0.5, ms(30_000), ms(15_000)));
        let c: BreakerConfig = toml::from_str("window_ms = 2000\ncooldown_ms = 250").expect("ms fields");
        assert_eq!((c.window, c.cooldown), (ms(2000), ms(250)));
        let e = toml::from_str::<BreakerConfig>("cooldown = 5").expect_err("unknown key").to_string();
        assert!(e.contains("cooldown"), "{e}");
        let bad = BreakerConfig { error_ratio: 1.5, ..BreakerConfig::default() };
        assert!(bad.validate().expect_err("ratio").contains("error_ratio = 1.5"));
        let bad = BreakerConfig { half_open_probes: 0, ..BreakerConfig::default() };
        assert!(bad.validate().is_err());
        assert_eq!(BreakerState::HalfOpen.as_str(), "half_open");
    }

    #[test]
    fn closed_to_open_by_consecutive_failures() {
        let b = breaker(3, 1.0, 1000, 1);
        let t = Instant::now();
        fail(&b, t);
        fail(&b, t);
        succeed(&b, t); // a success breaks the streak
        fail(&b, t);
        fail(&b, t);
        assert_eq!(b.state(), BreakerState::Closed);
        fail(&b, t);
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!((b.failures(), b.opened_count()), (5, 1));
        let open = b.try_acquire(t + ms(100)).expect_err("open");
        assert_eq!(open, Open { retry_in: ms(400), cause: OpenCause::Breaker });
    }

    #[test]
    fn closed_to_open_by_ratio_needs_min_requests() {
        let b = breaker(0, 0.5, 10, 1);
        let t = Instant::now();
        for _ in 0..4 {
            fail(&b, t);
        }
        // 4 of 4 failed, but below min_requests; consecutive trigger is off.
        assert_eq!(b.state(), BreakerState::Closed);
        for _ in 0..5 {
            succeed(&b, t);
        }
        assert_eq!(b.status(t).window_requests, 9);
        fail(&b, t); // 5 of 10
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[test]
    fn old_outcomes_leave_the_window() {
        let b = breaker(0, 0.5, 4, 1);
        let t = Instant::now();
        for _ in 0..3 {
            fail(&b, t);
        }
        // A window (1 s) later those failures have aged out: 1 failure of 4 requests stays closed.
        let later = t + ms(1000);
        assert_eq!(b.status(later).window_requests, 0);
        for _ in 0..3 {
            succeed(&b, later);
        }
        fail(&b, later);
        assert_eq!(b.state(), BreakerState::Closed);
        // Within the window, the same failures would have tripped it.
        let b = breaker(0, 0.5, 4, 1);
        for i in 0..3 {
            fail(&b, t + ms(100 * i));
        }
        fail(&b, t + ms(950));
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[test]
    fn open_to_half_open_after_cooldown_with_probe_limit() {
        let b = breaker(1, 1.0, 1000, 2);
        let t = Instant::now();
        open(&b, t);
        assert!(b.try_acquire(t + ms(499)).is_err());
        let p1 = b.try_acquire(t + ms(500)).expect("probe 1");
        assert_eq!(b.state(), BreakerState::HalfOpen);
        let p2 = b.try_acquire(t + ms(500)).expect("probe 2");
        assert!(p1.is_probe() && p2.is_probe());
        let busy = b.try_acquire(t + ms(501)).expect_err("probe slots taken");
        assert_eq!(busy, Open { retry_in: Duration::ZERO, cause: OpenCause::Breaker });
        drop((p1, p2));
    }

    #[test]
    fn half_open_success_closes_and_resets() {
        let b = breaker(2, 1.0, 1000, 1);
        let t = Instant::now();
        open(&b, t);
        b.try_acquire(t + ms(500)).expect("probe").success(t + ms(600));
        assert_eq!(b.state(), BreakerState::Closed);
        let s = b.status(t + ms(600));
        assert_eq!((s.consecutive_failures, s.window_requests, s.opened_count), (0, 0, 1));
        // Counters were reset: one failure does not reopen a 2-failure breaker.
        fail(&b, t + ms(700));
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn half_open_failure_reopens_with_a_fresh_cooldown() {
        let b = breaker(1, 1.0, 1000, 1);
        let t = Instant::now();
        open(&b, t);
        b.try_acquire(t + ms(600)).expect("probe").failure(t + ms(700));
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.opened_count(), 2);
        let open = b.try_acquire(t + ms(1100)).expect_err("cooldown restarted at 700");
        assert_eq!(open.retry_in, ms(100));
        assert!(b.try_acquire(t + ms(1200)).is_ok());
    }

    #[test]
    fn dropped_permit_frees_the_probe_without_an_outcome() {
        let b = breaker(1, 1.0, 1000, 1);
        let t = Instant::now();
        open(&b, t);
        drop(b.try_acquire(t + ms(500)).expect("probe"));
        assert_eq!(b.state(), BreakerState::HalfOpen);
        let probe = b.try_acquire(t + ms(500)).expect("slot freed");
        probe.success(t + ms(510));
        assert_eq!(b.state(), BreakerState::Closed);
        // A dropped permit while closed counts as nothing either.
        drop(b.try_acquire(t + ms(520)).expect("closed"));
        assert_eq!(b.status(t + ms(520)).window_requests, 0);
    }

    #[test]
    fn stale_permits_do_not_move_a_newer_state() {
        let b = breaker(1, 1.0, 1000, 2);
        let t = Instant::now();
        let slow = b.try_acquire(t).expect("closed");
        open(&b, t);
        let p1 = b.try_acquire(t + ms(500)).expect("probe 1");
        let p2 = b.try_acquire(t + ms(500)).expect("probe 2");
        p1.success(t + ms(510));
        // The second probe and the pre-open request finish after the breaker closed: they count as failures
        // in the totals but cannot reopen it.
        p2.failure(t + ms(520));
        slow.failure(t + ms(530));
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.failures(), 3);
    }

    #[test]
    fn retry_after_blocks_without_tripping() {
        let b = breaker(1, 1.0, 1000, 1);
        let t = Instant::now();
        b.block_until(t, t + ms(2000));
        b.block_until(t, t + ms(1000)); // never shortens
        b.block_until(t, t); // in the past: ignored
        let blocked = b.try_acquire(t + ms(500)).expect_err("blocked");
        assert_eq!(blocked, Open { retry_in: ms(1500), cause: OpenCause::RetryAfter });
        let s = b.status(t + ms(500));
        assert_eq!((s.state, s.opened_count, s.failures, s.blocked_for), (BreakerState::Closed, 0, 0, Some(ms(1500))));
        succeed(&b, t + ms(2000));
        assert_eq!(b.status(t + ms(2000)).blocked_for, None);
    }

    #[test]
    fn shared_across_threads() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<CircuitBreaker>();
        assert_send_sync::<Permit>();
        let b = breaker(1000, 1.0, 1_000_000, 1);
        let t = Instant::now();
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| (0..100).for_each(|_| fail(&b, t)));
            }
        });
        assert_eq!(b.status(t).window_failures, 400);
    }
}
