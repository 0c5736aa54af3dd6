//! Exponential backoff with full jitter, for retries of throttled or failed AWS calls.
//!
//! Algorithm: "Exponential Backoff And Jitter", AWS Architecture Blog (Marc Brooker, 2015,
//! <https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/>), "full
//! jitter": the `n`-th delay (from 0) is drawn uniformly from `[0, min(max, base * 2^n)]`,
//! with a floor of `base / 2` here so that a retry never follows at once.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Backoff bounds (`base_ms`, `max_ms`, `max_attempts`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackoffConfig {
    /// First delay bound, milliseconds. Default 100.
    pub base_ms: u64,
    /// Largest delay, milliseconds. Default 10,000.
    pub max_ms: u64,
    /// Most attempts of one operation (the first try included) before giving up; 0 means
    /// retry without end (used only for reads that must never give up). Default 12.
    pub max_attempts: u32,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        BackoffConfig {
            base_ms: 100,
            max_ms: 10_000,
            max_attempts: 12,
        }
    }
}

impl BackoffConfig {
    /// Checks the bounds: `1 <= base_ms <= max_ms <= 300000`, `max_attempts <= 1000`.
    ///
    /// # Errors
    /// A message naming the field out of range.
    pub fn validate(&self) -> Result<(), String> {
        if self.base_ms == 0 {
            return Err("base_ms: must be at least 1".into());
        }
        if self.max_ms < self.base_ms || self.max_ms > 300_000 {
            return Err(format!(
                "max_ms: {} must be between base_ms ({}) and 300000",
                self.max_ms, self.base_ms
            ));
        }
        if self.max_attempts > 1000 {
            return Err("max_attempts: must be at most 1000".into());
        }
        Ok(())
    }
}

/// The state of one retried operation: how many delays were given, and the random source.
#[derive(Debug)]
pub struct Backoff {
    config: BackoffConfig,
    attempt: u32,
    rng: StdRng,
}

impl Backoff {
    /// A backoff seeded from the operating system's random source.
    pub fn new(config: BackoffConfig) -> Backoff {
        Backoff::seeded(config, rand::random())
    }

    /// A backoff with a fixed seed (reproducible delays, for tests).
    pub fn seeded(config: BackoffConfig, seed: u64) -> Backoff {
        Backoff {
            config,
            attempt: 0,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// Delays given since the last [`Backoff::reset`].
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// Starts over after a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// The upper bound of the next delay: `min(max_ms, base_ms * 2^attempt)` milliseconds.
    pub fn ceiling(&self) -> Duration {
        let exp = 1u64.checked_shl(self.attempt.min(40)).unwrap_or(u64::MAX);
        Duration::from_millis(
            self.config
                .base_ms
                .saturating_mul(exp)
                .min(self.config.max_ms),
        )
    }

    /// The next delay, drawn uniformly from `[base_ms / 2, ceiling]`; `None` when
    /// `max_attempts` attempts were made (the caller gives up). A first try is an attempt,
    /// so with `max_attempts = 3` two delays are given.
    pub fn next_delay(&mut self) -> Option<Duration> {
        if self.config.max_attempts > 0 && self.attempt + 1 >= self.config.max_attempts {
            return None;
        }
        let ceiling = u64::try_from(self.ceiling().as_millis()).unwrap_or(u64::MAX);
        let floor = (self.config.base_ms / 2).min(ceiling);
        let ms = self.rng.random_range(floor..=ceiling);
        self.attempt = self.attempt.saturating_add(1);
        Some(Duration::from_millis(ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_within_ceiling_and_stop_at_max_attempts() {
        let cfg = BackoffConfig {
            base_ms: 100,
            max_ms: 1000,
            max_attempts: 6,
        };
        let mut b = Backoff::seeded(cfg, 7);
        let mut ceilings = Vec::new();
        let mut delays = Vec::new();
        while let Some(d) = {
            ceilings.push(b.ceiling());
            b.next_delay()
        } {
            delays.push(d);
        }
        assert_eq!(delays.len(), 5);
        let ms: Vec<u64> = ceilings.iter().map(|c| c.as_millis() as u64).collect();
        assert_eq!(ms, vec![100, 200, 400, 800, 1000, 1000]);
        for (d, c) in delays.iter().zip(&ceilings) {
            assert!(*d >= Duration::from_millis(50) && d <= c, "{d:?} vs {c:?}");
        }
        b.reset();
        assert_eq!(b.attempts(), 0);
        assert_eq!(b.ceiling(), Duration::from_millis(100));
    }

    #[test]
    fn unbounded_when_max_attempts_is_zero_and_seed_reproduces() {
        let cfg = BackoffConfig {
            base_ms: 10,
            max_ms: 20,
            max_attempts: 0,
        };
        let mut a = Backoff::seeded(cfg, 1);
        let mut b = Backoff::seeded(cfg, 1);
        for _ in 0..100 {
            let (x, y) = (a.next_delay().unwrap(), b.next_delay().unwrap());
            assert_eq!(x, y);
            assert!(x <= Duration::from_millis(20));
        }
        assert_eq!(a.attempts(), 100);
    }

    #[test]
    fn validation_names_the_field() {
        let bad = BackoffConfig {
            base_ms: 0,
            ..BackoffConfig::default()
        };
        assert_eq!(bad.validate().unwrap_err(), "base_ms: must be at least 1");
        assert_eq!(BackoffConfig::default().validate(), Ok(()));
    }
}
