//! De-duplication by event id within a bounded window (DESIGN §7: delivery is at-least-once,
//! de-duplicated by event id).
//!
//! An id is *remembered* while both hold:
//! - its recorded event time is not older than `horizon` behind the newest event time seen
//!   (`event_time >= newest - horizon`), and
//! - it is among the `capacity` most recently recorded ids (eviction in insertion order).
//!
//! Memory is bounded: ids are stored as 64-bit [`stable_hash`]es, not strings; one id costs
//! about 16 bytes in the insertion queue plus about 18 bytes in the hash table (load factor
//! included), i.e. roughly 35 MB for the default capacity of 1,000,000 (the table starts with
//! room for [`INITIAL_IDS`] and grows to that only when the horizon holds as many ids).
//!
//! Collisions: two different ids with the same 64-bit hash are treated as the same id, so the
//! second event would be dropped as a duplicate. With `n` remembered ids the chance that a new
//! id collides with one of them is about `n / 2^64` (5.4e-14 for n = 10^6), negligible next to
//! the at-least-once duplicates this removes.

use ahash::AHashMap;
use aiops_core::stable_hash;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use thiserror::Error;

/// Ids the table has room for when it starts (at most `capacity`): 262,144, an hour of a
/// trail at 72 calls/s, about 13 MB. A busier stream grows the table (doubling, so a few
/// rehashes of some milliseconds each, once) up to `capacity`; room for the whole default
/// `capacity` up front was about 50 MB that a stream of that rate never fills within the
/// horizon (a 1M-event replay of 3.7 hours holds about 270,000 ids).
pub const INITIAL_IDS: usize = 262_144;

/// Largest accepted capacity (memory guard: about 1.7 GB of ids).
pub const MAX_CAPACITY: usize = 50_000_000;

/// Largest accepted horizon in seconds (about 10 years; keeps microseconds within `i64`).
pub const MAX_HORIZON_SECS: u64 = 315_360_000;

/// De-duplication settings (`[dedup]` in the pipeline configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DedupConfig {
    /// Most ids remembered at once. Default 1,000,000.
    pub capacity: usize,
    /// How far behind the newest event time seen an id is still remembered, in seconds of
    /// event time. Default 3600.
    pub horizon_secs: u64,
}

impl Default for DedupConfig {
    fn default() -> Self {
        DedupConfig {
            capacity: 1_000_000,
            horizon_secs: 3600,
        }
    }
}

/// An invalid [`DedupConfig`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DedupConfigError {
    /// `capacity` is 0 or above [`MAX_CAPACITY`].
    #[error("dedup.capacity must be between 1 and {MAX_CAPACITY}, got {0}")]
    Capacity(usize),
    /// `horizon_secs` is 0 or above [`MAX_HORIZON_SECS`].
    #[error("dedup.horizon_secs must be between 1 and {MAX_HORIZON_SECS}, got {0}")]
    Horizon(u64),
}

impl DedupConfig {
    /// Checks the bounds.
    ///
    /// # Errors
    /// [`DedupConfigError`] naming the first field out of range.
    pub fn validate(&self) -> Result<(), DedupConfigError> {
        if self.capacity == 0 || self.capacity > MAX_CAPACITY {
            return Err(DedupConfigError::Capacity(self.capacity));
        }
        if self.horizon_secs == 0 || self.horizon_secs > MAX_HORIZON_SECS {
            return Err(DedupConfigError::Horizon(self.horizon_secs));
        }
        Ok(())
    }
}

/// Remembers event ids within a bounded window and reports repeats (see the module docs for
/// the exact rule).
#[derive(Debug)]
pub struct Deduplicator {
    capacity: usize,
    horizon_micros: i64,
    /// id hash -> event time (microseconds) it was recorded with.
    seen: AHashMap<u64, i64>,
    /// (id hash, event time) in insertion order.
    order: VecDeque<(u64, i64)>,
    /// Newest event time seen, microseconds since the Unix epoch, UTC.
    newest: Option<i64>,
}

impl Deduplicator {
    /// An empty de-duplicator.
    ///
    /// # Errors
    /// [`DedupConfigError`] when the configuration is out of range.
    pub fn new(config: &DedupConfig) -> Result<Self, DedupConfigError> {
        config.validate()?;
        // validate() bounds horizon_secs so the product fits in i64.
        let horizon_micros = i64::try_from(config.horizon_secs)
            .unwrap_or(i64::MAX / 1_000_000)
            .saturating_mul(1_000_000);
        Ok(Deduplicator {
            capacity: config.capacity,
            horizon_micros,
            // Room for up to INITIAL_IDS ids up front, growing (doubling) to `capacity` only
            // if the horizon holds more: see INITIAL_IDS.
            seen: AHashMap::with_capacity(config.capacity.min(INITIAL_IDS)),
            order: VecDeque::with_capacity(config.capacity.min(INITIAL_IDS)),
            newest: None,
        })
    }

    /// Number of ids currently remembered (ids past the horizon may still count until they
    /// reach the front of the insertion queue).
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether no id is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// The newest event time seen, in microseconds since the Unix epoch, UTC.
    pub fn newest_event_time(&self) -> Option<i64> {
        self.newest
    }

    fn cutoff(&self) -> i64 {
        self.newest
            .map_or(i64::MIN, |n| n.saturating_sub(self.horizon_micros))
    }

    fn evict(&mut self) {
        let cutoff = self.cutoff();
        while let Some(&(hash, time)) = self.order.front() {
            if time >= cutoff && self.order.len() <= self.capacity {
                break;
            }
            self.order.pop_front();
            // Only forget the id if the map still holds this insertion (a re-recorded id has
            // a newer time and a later queue entry).
            if self.seen.get(&hash) == Some(&time) {
                self.seen.remove(&hash);
            }
        }
    }

    /// Whether `event_id` was already seen within the window; records it when not.
    ///
    /// `event_time` is in microseconds since the Unix epoch, UTC. An event older than the
    /// horizon behind the newest event time is never reported as a duplicate and is not
    /// recorded (it would be forgotten at once).
    pub fn is_duplicate(&mut self, event_id: &str, event_time: i64) -> bool {
        self.newest = Some(self.newest.map_or(event_time, |n| n.max(event_time)));
        self.evict();
        let cutoff = self.cutoff();
        let hash = stable_hash(&[event_id.as_bytes()]);
        if self
            .seen
            .get(&hash)
            .is_some_and(|&recorded| recorded >= cutoff)
        {
            return true;
        }
        if event_time < cutoff {
            return false;
        }
        self.seen.insert(hash, event_time);
        self.order.push_back((hash, event_time));
        self.evict();
        false
    }

    /// What the de-duplicator remembers, to save it (detect's state snapshot) and restore it
    /// with [`Deduplicator::with_state`].
    pub fn state(&self) -> DedupState {
        DedupState {
            order: self.order.iter().copied().collect(),
            newest: self.newest,
        }
    }

    /// A de-duplicator for `config` remembering what `state` holds (ids beyond `config`'s
    /// capacity or horizon are forgotten at once, as they would have been).
    ///
    /// # Errors
    /// [`DedupConfigError`] when the configuration is out of range.
    pub fn with_state(config: &DedupConfig, state: DedupState) -> Result<Self, DedupConfigError> {
        let mut d = Deduplicator::new(config)?;
        for (hash, time) in state.order {
            // In insertion order: a re-recorded id ends with its latest time, as it was.
            d.seen.insert(hash, time);
            d.order.push_back((hash, time));
        }
        d.newest = state.newest;
        d.evict();
        Ok(d)
    }
}

/// The ids a [`Deduplicator`] remembers (see [`Deduplicator::state`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DedupState {
    /// `(id hash, event time µs)` in insertion order.
    pub order: Vec<(u64, i64)>,
    /// The newest event time seen, µs.
    pub newest: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restored_deduplicator_answers_as_the_original_would() {
        let cfg = DedupConfig {
            capacity: 3,
            horizon_secs: 60,
        };
        let mut a = Deduplicator::new(&cfg).unwrap();
        for (id, t) in [("a", 100), ("b", 110), ("a", 200), ("c", 205), ("d", 206)] {
            a.is_duplicate(id, t * S);
        }
        let mut b = Deduplicator::with_state(&cfg, a.state()).unwrap();
        assert_eq!(b.state(), a.state());
        for (id, t) in [("a", 207), ("b", 207), ("c", 208), ("e", 209), ("d", 300)] {
            assert_eq!(b.is_duplicate(id, t * S), a.is_duplicate(id, t * S), "{id}");
        }
        assert_eq!(b.state(), a.state());
    }

    const S: i64 = 1_000_000;

    fn dedup(capacity: usize, horizon_secs: u64) -> Deduplicator {
        Deduplicator::new(&DedupConfig {
            capacity,
            horizon_secs,
        })
        .unwrap()
    }

    #[test]
    fn duplicate_within_window() {
        let mut d = dedup(10, 60);
        assert!(!d.is_duplicate("a", 100 * S));
        assert!(!d.is_duplicate("b", 100 * S));
        assert!(d.is_duplicate("a", 100 * S));
        assert!(d.is_duplicate("a", 150 * S));
        assert!(d.is_duplicate("b", 160 * S));
        assert_eq!(d.len(), 2);
        assert_eq!(d.newest_event_time(), Some(160 * S));
    }

    #[test]
    fn forgotten_after_horizon() {
        let mut d = dedup(10, 60);
        assert!(!d.is_duplicate("a", 0));
        // Exactly at the horizon: still remembered.
        assert!(!d.is_duplicate("b", 60 * S));
        assert!(d.is_duplicate("a", 60 * S));
        // One microsecond past: forgotten, and recorded afresh.
        assert!(!d.is_duplicate("c", 60 * S + 1));
        assert!(!d.is_duplicate("a", 60 * S + 1));
        assert!(d.is_duplicate("a", 60 * S + 1));
        assert_eq!(d.len(), 3);
    }

    #[test]
    fn late_events_beyond_horizon_are_not_recorded() {
        let mut d = dedup(10, 60);
        assert!(!d.is_duplicate("new", 1000 * S));
        assert!(!d.is_duplicate("old", 10 * S));
        assert!(!d.is_duplicate("old", 10 * S));
        assert_eq!(d.len(), 1);
    }

    #[test]
    fn out_of_order_insertions_expire_by_time_not_position() {
        let mut d = dedup(10, 60);
        assert!(!d.is_duplicate("x", 100 * S));
        assert!(!d.is_duplicate("late", 50 * S));
        // newest 100 s, cutoff 40 s: both remembered.
        assert!(d.is_duplicate("late", 100 * S));
        // newest 111 s, cutoff 51 s: "late" (50 s) forgotten though it sits behind "x".
        assert!(!d.is_duplicate("y", 111 * S));
        assert!(!d.is_duplicate("late", 111 * S));
        assert!(d.is_duplicate("x", 111 * S));
        // The stale queue entry of "late" must not evict its re-recorded copy later on.
        assert!(!d.is_duplicate("z", 161 * S));
        assert!(d.is_duplicate("late", 161 * S));
    }

    #[test]
    fn forgotten_after_capacity() {
        let mut d = dedup(3, 3600);
        for id in ["a", "b", "c"] {
            assert!(!d.is_duplicate(id, 0));
        }
        assert!(d.is_duplicate("a", 0));
        assert!(!d.is_duplicate("d", 0)); // evicts "a", the oldest insertion
        assert_eq!(d.len(), 3);
        assert!(!d.is_duplicate("a", 0)); // forgotten; now evicts "b"
        assert!(!d.is_duplicate("b", 0));
        assert!(d.is_duplicate("d", 0));
        assert_eq!(d.len(), 3);
    }

    #[test]
    fn config_defaults_and_validation() {
        let c: DedupConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(
            c,
            DedupConfig {
                capacity: 1_000_000,
                horizon_secs: 3600
            }
        );
        assert_eq!(c.validate(), Ok(()));
        assert!(serde_json::from_str::<DedupConfig>(r#"{"capcity":1}"#).is_err());
        let zero = DedupConfig { capacity: 0, ..c };
        assert_eq!(zero.validate(), Err(DedupConfigError::Capacity(0)));
        assert_eq!(
            zero.validate().unwrap_err().to_string(),
            "dedup.capacity must be between 1 and 50000000, got 0"
        );
        let h = DedupConfig {
            horizon_secs: 0,
            ..c
        };
        assert_eq!(
            Deduplicator::new(&h).unwrap_err(),
            DedupConfigError::Horizon(0)
        );
    }
}
