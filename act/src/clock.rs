//! Time for the adapters that wait (Bedrock retries, CodeBuild polling, budgets, circuit
//! breakers): the system clock in production, a manual clock in tests so nothing depends on
//! how fast a machine is.

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// A source of wall-clock time that can also wait.
pub trait Clock: Send + Sync {
    /// Now, microseconds since the Unix epoch, UTC.
    fn now_micros(&self) -> i64;
    /// Blocks the calling thread for `d` (the manual clock advances instead).
    fn sleep(&self, d: Duration);
}

/// The system clock; `sleep` is `std::thread::sleep` (callers run on their own thread, never
/// inside an async task).
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_micros(&self) -> i64 {
        aiops_core::time::now_micros()
    }
    fn sleep(&self, d: Duration) {
        std::thread::sleep(d);
    }
}

/// A clock that only moves when told to, or when something sleeps on it (tests). Records every
/// sleep so tests can check a backoff schedule exactly.
#[derive(Debug, Default)]
pub struct ManualClock {
    now: AtomicI64,
    sleeps: Mutex<Vec<Duration>>,
}

impl ManualClock {
    /// A clock showing `now` (microseconds since the Unix epoch, UTC).
    pub fn new(now: i64) -> ManualClock {
        ManualClock {
            now: AtomicI64::new(now),
            sleeps: Mutex::new(Vec::new()),
        }
    }

    /// Moves the clock forward by `d`.
    pub fn advance(&self, d: Duration) {
        let us = i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
        self.now.fetch_add(us, Ordering::SeqCst);
    }

    /// Every sleep requested so far, in order.
    pub fn sleeps(&self) -> Vec<Duration> {
        self.sleeps.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Clock for ManualClock {
    fn now_micros(&self) -> i64 {
        self.now.load(Ordering::SeqCst)
    }
    fn sleep(&self, d: Duration) {
        if let Ok(mut s) = self.sleeps.lock() {
            s.push(d);
        }
        self.advance(d);
    }
}

impl<C: Clock + ?Sized> Clock for std::sync::Arc<C> {
    fn now_micros(&self) -> i64 {
        (**self).now_micros()
    }
    fn sleep(&self, d: Duration) {
        (**self).sleep(d)
    }
}

/// Exponential backoff with "equal jitter": attempt `n` (0-based) waits between half and all
/// of `min(max, base * 2^n)`, the jitter drawn from `seed` (any per-call varying value).
/// Source: "Exponential Backoff And Jitter", AWS Architecture Blog, 2015.
pub fn backoff(base: Duration, max: Duration, attempt: u32, seed: u64) -> Duration {
    let factor = 1u64.checked_shl(attempt.min(30)).unwrap_or(u64::MAX);
    let ceiling = u64::try_from(base.as_millis())
        .unwrap_or(u64::MAX)
        .saturating_mul(factor)
        .min(u64::try_from(max.as_millis()).unwrap_or(u64::MAX));
    let half = ceiling / 2;
    let jitter = if half == 0 {
        0
    } else {
        // splitmix64 of the seed: cheap, deterministic per seed.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        z % (half + 1)
    };
    Duration::from_millis(half + jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        for seed in [0u64, 1, 99, u64::MAX] {
            let d0 = backoff(Duration::from_millis(100), Duration::from_secs(2), 0, seed);
            assert!((50..=100).contains(&d0.as_millis()), "{d0:?}");
            let d3 = backoff(Duration::from_millis(100), Duration::from_secs(2), 3, seed);
            assert!((400..=800).contains(&d3.as_millis()), "{d3:?}");
            let d20 = backoff(Duration::from_millis(100), Duration::from_secs(2), 20, seed);
            assert!((1000..=2000).contains(&d20.as_millis()), "{d20:?}");
        }
        assert_eq!(
            backoff(Duration::ZERO, Duration::from_secs(1), 5, 7),
            Duration::ZERO
        );
    }

    #[test]
    fn manual_clock_advances_on_sleep() {
        let c = ManualClock::new(1_000);
        c.sleep(Duration::from_millis(3));
        c.advance(Duration::from_micros(5));
        assert_eq!(c.now_micros(), 4_005);
        assert_eq!(c.sleeps(), vec![Duration::from_millis(3)]);
    }
}
