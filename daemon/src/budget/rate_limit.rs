//! Per-key token buckets: requests per minute and tokens per minute, refilled continuously, burst = one minute's
//! worth. Time is passed in, so tests step it without sleeping.
use crate::sync::MutexExt;
use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Above this many keys, buckets that have refilled completely are forgotten (a full bucket equals a new one).
const PRUNE_ABOVE: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateKind {
    Requests,
    Tokens,
}

impl RateKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RateKind::Requests => "requests",
            RateKind::Tokens => "tokens",
        }
    }
}

impl fmt::Display for RateKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rate limit of {limit} {which} per minute reached; retry after {:.1}s", retry_after.as_secs_f64())]
pub struct RateLimited {
    /// When the emptier bucket holds enough again (for `Retry-After`).
    pub retry_after: Duration,
    /// The bucket that needs the longer wait.
    pub which: RateKind,
    pub limit: u32,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// May go negative: a request larger than the burst is admitted from a full bucket and leaves a debt, so the
    /// long-run rate still holds.
    level: f64,
    at: Instant,
}

impl Bucket {
    fn refill(&mut self, per_min: u32, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.level = (self.level + elapsed * f64::from(per_min) / 60.0).min(f64::from(per_min));
        self.at = self.at.max(now);
    }

    /// Time until the bucket holds `cost` (capped at the burst), or zero.
    fn wait_for(&self, per_min: u32, cost: f64) -> Option<Duration> {
        if per_min == 0 {
            return Some(Duration::from_secs(60));
        }
        let need = cost.min(f64::from(per_min));
        (self.level < need).then(|| Duration::from_secs_f64((need - self.level) * 60.0 / f64::from(per_min)))
    }
}

#[derive(Debug, Clone, Copy)]
struct Buckets {
    requests: Bucket,
    tokens: Bucket,
}

/// Rate limits shared by all keys; each key (API key or tenant) has its own pair of buckets.
#[derive(Debug)]
pub struct RateLimiter {
    requests_per_min: Option<u32>,
    tokens_per_min: Option<u32>,
    buckets: Mutex<HashMap<String, Buckets>>,
}

impl RateLimiter {
    /// `None` turns a limit off; `Some(0)` admits nothing.
    pub fn new(requests_per_min: Option<u32>, tokens_per_min: Option<u32>) -> RateLimiter {
        RateLimiter { requests_per_min, tokens_per_min, buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes one request and `tokens` (the estimate: prompt + `max_tokens`) from `key`'s buckets, or neither.
    /// The tokens-per-minute limit, if one is set.
    pub fn tokens_per_min(&self) -> Option<u32> {
        self.tokens_per_min
    }

    pub fn check(&self, key: &str, tokens: u64, now: Instant) -> Result<(), RateLimited> {
        if self.requests_per_min.is_none() && self.tokens_per_min.is_none() {
            return Ok(());
        }
        let mut map = self.buckets.locked();
        if map.len() > PRUNE_ABOVE && !map.contains_key(key) {
            self.prune(&mut map, now);
        }
        let b = map.entry(key.to_string()).or_insert_with(|| self.full(now));
        let mut worst: Option<RateLimited> = None;
        let limits = [
            (RateKind::Requests, self.requests_per_min, &mut b.requests, 1.0),
            (RateKind::Tokens, self.tokens_per_min, &mut b.tokens, tokens as f64),
        ];
        let mut take = Vec::with_capacity(2);
        for (which, per_min, bucket, cost) in limits {
            let Some(per_min) = per_min else { continue };
            bucket.refill(per_min, now);
            match bucket.wait_for(per_min, cost) {
                Some(retry_after) if worst.as_ref().is_none_or(|w| retry_after > w.retry_after) => {
                    worst = Some(RateLimited { retry_after, which, limit: per_min });
                }
                Some(_) => {}
                None => take.push((bucket, cost)),
            }
        }
        if let Some(limited) = worst {
            return Err(limited);
        }
        for (bucket, cost) in take {
            bucket.level -= cost;
        }
        Ok(())
    }

    /// Gives back tokens reserved by `check` but not used (the real usage is known after the response).
    pub fn refund(&self, key: &str, tokens: u64) {
        let Some(per_min) = self.tokens_per_min else { return };
        let mut map = self.buckets.locked();
        if let Some(b) = map.get_mut(key) {
            b.tokens.level = (b.tokens.level + tokens as f64).min(f64::from(per_min));
        }
    }

    fn full(&self, now: Instant) -> Buckets {
        let level = |l: Option<u32>| f64::from(l.unwrap_or(0));
        Buckets {
            requests: Bucket { level: level(self.requests_per_min), at: now },
            tokens: Bucket { level: level(self.tokens_per_min), at: now },
        }
    }

    fn prune(&self, map: &mut HashMap<String, Buckets>, now: Instant) {
        let full = |b: &Bucket, per_min: Option<u32>| {
            let Some(per_min) = per_min else { return true };
            let mut b = *b;
            b.refill(per_min, now);
            b.level >= f64::from(per_min)
        };
        map.retain(|_, b| !(full(&b.requests, self.requests_per_min) && full(&b.tokens, self.tokens_per_min)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn requests_burst_then_refill() {
        let rl = RateLimiter::new(Some(60), None);
        let t0 = Instant::now();
        for _ in 0..60 {
            rl.check("k", 0, t0).expect("within the burst");
        }
        let err = rl.check("k", 0, t0).expect_err("burst spent");
        assert_eq!((err.which, err.limit), (RateKind::Requests, 60));
        assert!((err.retry_after.as_secs_f64() - 1.0).abs() < 1e-6, "{err:?}");
        assert!(err.to_string().contains("60 requests per minute"), "{err}");
        // One request per second refills; other keys are independent.
        rl.check("other", 0, t0).expect("own bucket");
        let err = rl.check("k", 0, t0 + secs(0.5)).expect_err("half a request");
        assert!((err.retry_after.as_secs_f64() - 0.5).abs() < 1e-6, "{err:?}");
        rl.check("k", 0, t0 + secs(1.0)).expect("refilled");
        rl.check("k", 0, t0 + secs(1.0)).expect_err("spent again");
        // The burst never exceeds a minute's worth, however long the key was idle.
        let later = t0 + secs(3600.0);
        for _ in 0..60 {
            rl.check("k", 0, later).expect("full again");
        }
        rl.check("k", 0, later).expect_err("capped at the burst");
    }

    #[test]
    fn tokens_limit_and_refund() {
        let rl = RateLimiter::new(Some(1000), Some(600));
        let t0 = Instant::now();
        rl.check("k", 500, t0).expect("fits");
        let err = rl.check("k", 200, t0).expect_err("100 left");
        assert_eq!(err.which, RateKind::Tokens);
        // 100 more tokens at 10 tokens/s: 10 s.
        assert!((err.retry_after.as_secs_f64() - 10.0).abs() < 1e-6, "{err:?}");
        // A refused request takes nothing from either bucket.
        rl.refund("k", 400);
        rl.check("k", 500, t0).expect("refund made room");
        // Larger than the burst: admitted from a full bucket, then the debt is paid back over time.
        let rl = RateLimiter::new(None, Some(600));
        rl.check("big", 1200, t0).expect("full bucket admits an oversized request");
        let err = rl.check("big", 1, t0 + secs(60.0)).expect_err("still in debt");
        assert!((err.retry_after.as_secs_f64() - 0.1).abs() < 1e-6, "{err:?}");
        rl.check("big", 1, t0 + secs(60.1)).expect("debt paid");
    }

    #[test]
    fn longer_wait_wins_and_zero_blocks() {
        let t0 = Instant::now();
        let rl = RateLimiter::new(Some(1), Some(600));
        rl.check("k", 10, t0).expect("first");
        let err = rl.check("k", 600, t0).expect_err("no request left");
        // Requests need 60 s, tokens (590 of 600 at 10/s) 1 s: the longer wait is reported.
        assert_eq!((err.which, err.retry_after), (RateKind::Requests, secs(60.0)));
        let rl = RateLimiter::new(Some(2), Some(60));
        rl.check("k", 60, t0).expect("first");
        let err = rl.check("k", 30, t0).expect_err("tokens empty");
        assert_eq!((err.which, err.retry_after), (RateKind::Tokens, secs(30.0)));
        let rl = RateLimiter::new(Some(0), None);
        assert_eq!(rl.check("k", 0, t0).expect_err("zero admits nothing").retry_after, secs(60.0));
        assert!(RateLimiter::new(None, None).check("k", u64::MAX, t0).is_ok());
    }
}
