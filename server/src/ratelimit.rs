//! Token-bucket rate limits keyed by SSB key or by source address.
//!
//! Time comes from `tokio::time::Instant`, so tests drive it with tokio's
//! paused clock.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Buckets above this many are pruned of full ones, so a flood of source
/// addresses cannot grow memory without bound.
const PRUNE_ABOVE: usize = 10_000;

/// A set of token buckets, one per key.
pub struct RateLimiter<K> {
    /// Tokens added per second.
    rate_per_sec: f64,
    /// Bucket size.
    burst: f64,
    buckets: Mutex<HashMap<K, Bucket>>,
}

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    /// `per_minute` tokens a minute, up to `burst` at once.
    pub fn new(per_minute: u32, burst: u32) -> RateLimiter<K> {
        RateLimiter {
            rate_per_sec: f64::from(per_minute) / 60.0,
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn refill(&self, b: &mut Bucket, now: Instant) {
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.rate_per_sec).min(self.burst);
        b.at = now;
    }

    /// Takes a token for `key`; on refusal, how long until one is there.
    pub fn take(&self, key: &K) -> Result<(), Duration> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() > PRUNE_ABOVE {
            let (rate, burst) = (self.rate_per_sec, self.burst);
            buckets.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * rate < burst
            });
        }
        let bucket = buckets.entry(key.clone()).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        self.refill(bucket, now);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(self.wait_for(bucket.tokens))
        }
    }

    /// Whether `key` has a token, without taking it; on refusal, how long
    /// until one is there.
    pub fn check(&self, key: &K) -> Result<(), Duration> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        match buckets.get_mut(key) {
            None => Ok(()),
            Some(bucket) => {
                self.refill(bucket, now);
                if bucket.tokens >= 1.0 {
                    Ok(())
                } else {
                    Err(self.wait_for(bucket.tokens))
                }
            }
        }
    }

    fn wait_for(&self, tokens: f64) -> Duration {
        if self.rate_per_sec <= 0.0 {
            return Duration::from_secs(60);
        }
        Duration::from_secs_f64(((1.0 - tokens) / self.rate_per_sec).max(0.001))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn burst_then_refill() {
        let rl = RateLimiter::new(10, 5);
        for _ in 0..5 {
            assert!(rl.take(&"k").is_ok());
        }
        let wait = rl.take(&"k").expect_err("burst used up");
        assert!(
            wait <= Duration::from_secs(6) && wait > Duration::from_secs(5),
            "{wait:?}"
        );
        assert!(rl.take(&"other").is_ok(), "keys are independent");
        tokio::time::advance(Duration::from_secs(6)).await;
        assert!(rl.check(&"k").is_ok());
        assert!(rl.take(&"k").is_ok());
        assert!(rl.take(&"k").is_err());
    }
}
