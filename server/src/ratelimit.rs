//! Token-bucket rate limits keyed by SSB key or by source address.
//!
//! Time comes from `tokio::time::Instant`, so tests drive it with tokio's
//! paused clock.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Buckets one generation may hold before it is retired early, so a flood
/// of source addresses cannot grow memory without bound.
const MAX_PER_GENERATION: usize = 100_000;

/// A set of token buckets, one per key.
///
/// Buckets expire without a scan: they live in two generations, and every
/// `window` (the time an empty bucket takes to fill up again) the older
/// generation is dropped whole and the current one becomes the older. A
/// bucket untouched for a whole window is full, which is the same as not
/// being there; one touched since is moved into the current generation.
pub struct RateLimiter<K> {
    /// Tokens added per second.
    rate_per_sec: f64,
    /// Bucket size.
    burst: f64,
    /// How long a bucket takes to fill from empty: the generation length.
    window: Duration,
    buckets: Mutex<Generations<K>>,
}

struct Generations<K> {
    current: HashMap<K, Bucket>,
    previous: HashMap<K, Bucket>,
    /// When `current` was started.
    started: Instant,
}

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    /// `per_minute` tokens a minute, up to `burst` at once.
    pub fn new(per_minute: u32, burst: u32) -> RateLimiter<K> {
        let rate_per_sec = f64::from(per_minute) / 60.0;
        let burst = f64::from(burst.max(1));
        let window = if rate_per_sec > 0.0 {
            Duration::from_secs_f64((burst / rate_per_sec).min(86_400.0))
        } else {
            Duration::from_secs(86_400)
        };
        RateLimiter {
            rate_per_sec,
            burst,
            window,
            buckets: Mutex::new(Generations {
                current: HashMap::new(),
                previous: HashMap::new(),
                started: Instant::now(),
            }),
        }
    }

    fn refill(&self, b: &mut Bucket, now: Instant) {
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.rate_per_sec).min(self.burst);
        b.at = now;
    }

    /// Rotates the generations when a window has passed (or the current
    /// one is full), then finds `key`'s bucket, moving it into the current
    /// generation; `None` if it has none (a full bucket).
    fn bucket<'a>(
        &self,
        g: &'a mut Generations<K>,
        key: &K,
        now: Instant,
    ) -> Option<&'a mut Bucket> {
        let age = now.saturating_duration_since(g.started);
        if age >= self.window || g.current.len() >= MAX_PER_GENERATION {
            // Two windows without a touch: dropped. One: kept as previous.
            g.previous = if age >= self.window.saturating_mul(2) {
                HashMap::new()
            } else {
                std::mem::take(&mut g.current)
            };
            g.current.clear();
            g.started = now;
        }
        if !g.current.contains_key(key) {
            let old = g.previous.remove(key)?;
            g.current.insert(key.clone(), old);
        }
        g.current.get_mut(key)
    }

    /// Takes a token for `key`; on refusal, how long until one is there.
    pub fn take(&self, key: &K) -> Result<(), Duration> {
        let now = Instant::now();
        let mut g = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if self.bucket(&mut g, key, now).is_none() {
            g.current.insert(
                key.clone(),
                Bucket {
                    tokens: self.burst,
                    at: now,
                },
            );
        }
        let bucket = g
            .current
            .get_mut(key)
            .expect("invariant: the bucket was just found or inserted");
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
        let mut g = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        match self.bucket(&mut g, key, now) {
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

    /// How many buckets are held (both generations).
    pub fn len(&self) -> usize {
        let g = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        g.current.len() + g.previous.len()
    }

    /// Whether no bucket is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
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

    #[tokio::test(start_paused = true)]
    async fn buckets_expire_by_generation_without_losing_an_empty_one() {
        // 60 a minute, burst 10: a bucket fills in 10 s, the window.
        let rl = RateLimiter::new(60, 10);
        for i in 0..1000 {
            let _ = rl.take(&i);
        }
        for _ in 0..10 {
            let _ = rl.take(&-1);
        }
        assert!(rl.take(&-1).is_err(), "-1 is empty");
        assert_eq!(rl.len(), 1001);
        // Half a window later -1 is still half empty, wherever it is kept.
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(rl.check(&-1).is_ok());
        for _ in 0..5 {
            assert!(rl.take(&-1).is_ok());
        }
        assert!(rl.take(&-1).is_err(), "not refilled by a rotation");
        // Two windows on, the untouched buckets are gone; -1 was touched.
        tokio::time::advance(Duration::from_secs(11)).await;
        let _ = rl.check(&-1);
        tokio::time::advance(Duration::from_secs(11)).await;
        let _ = rl.check(&-1);
        assert!(rl.len() <= 1, "{}", rl.len());
    }
}
