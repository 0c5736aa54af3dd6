//! The engine's state as a versioned document, so a detect worker that dies (or a shard that
//! moves to another worker) resumes exactly where the last snapshot was taken: open windows
//! with their counts, samples and top contributors, every series' model and decision state,
//! pending spike confirmations, each log group's template dictionary (the Drain tree, with its
//! interner), the multi-line joiner's pending entries, novelty sets, the watermark and the
//! counters.
//!
//! - **Format**: one JSON object (serde_json with `float_roundtrip`, so every `f64` is restored
//!   bit for bit): `{"version": 1, "config": <StatisticsConfig>, "state": {...}}`. The caller
//!   compresses it (the aws-mode stage writes it gzip-compressed to S3).
//! - **Version**: [`ENGINE_STATE_VERSION`]; a document of another version is refused with
//!   [`SnapshotError::Version`] (the caller starts cold). Any change to the engine's state
//!   types that is not additive with a default bumps it.
//! - **Configuration**: the state holds the statistics configuration it was built with; a
//!   different configuration refuses it ([`SnapshotError::ConfigChanged`]): windows, models and
//!   caps would not mean the same thing.
//! - **Not kept**: backtest traces ([`StatsEngine::trace_series`]) and scratch buffers.
//! - **Checks**: a document that parses but whose series index, free list or active windows
//!   do not fit together is refused ([`SnapshotError::Corrupt`]), never a panic later.

use super::*;
use std::io::Write;
use thiserror::Error;

/// The version of the engine state document this build writes and reads.
pub const ENGINE_STATE_VERSION: u32 = 1;

/// Why an engine state was not written or not restored.
#[derive(Debug, Error)]
pub enum SnapshotError {
    /// The document is not a valid engine state (truncated, not JSON, wrong shape, or
    /// inconsistent).
    #[error("engine state is corrupt: {0}")]
    Corrupt(String),
    /// The document is of a version this build does not read.
    #[error("engine state version {found} is not supported (this build reads version {supported})")]
    Version {
        /// The version found.
        found: u64,
        /// The version this build reads.
        supported: u32,
    },
    /// The state was built with another statistics configuration.
    #[error("engine state was written with another [detect.statistics] configuration")]
    ConfigChanged,
    /// The state could not be serialised or written to the writer.
    #[error("cannot write engine state: {0}")]
    Write(String),
}

/// Detector names a series can carry (the `&'static str` of [`Spec`]); a name outside this
/// list makes the document corrupt. Keep in step with the detectors in `engine.rs`.
const DETECTORS: [&str; 10] = [
    "",
    "log_template_rate",
    "log_template_novelty",
    "log_level_rate",
    "api_call_rate",
    "api_call_novelty",
    "api_error_rate",
    "api_error_principal_rate",
    "event_source_rate",
    "metric_value",
];

/// A detector name (a `&'static str` that serde's derive does not take for a borrow).
pub(super) type StaticName = &'static str;

/// Deserialises a detector name into the static name of the same text.
pub(super) fn detector_name<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<&'static str, D::Error> {
    let s = String::deserialize(d)?;
    DETECTORS
        .iter()
        .find(|n| **n == s)
        .copied()
        .ok_or_else(|| serde::de::Error::custom(format!("unknown detector {s:?}")))
}

/// A map with keys JSON cannot hold (tuples) as a list of `[key, value]` pairs
/// (`#[serde(with = "crate::engine::snapshot::map_as_pairs")]`).
pub(crate) mod map_as_pairs {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::collections::BTreeMap;

    /// Writes the pairs in key order.
    pub(crate) fn serialize<K: Serialize, V: Serialize, S: Serializer>(
        map: &BTreeMap<K, V>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(map.iter())
    }

    /// Reads the pairs back (a repeated key keeps its last value).
    pub(crate) fn deserialize<'de, K, V, D>(d: D) -> Result<BTreeMap<K, V>, D::Error>
    where
        K: Deserialize<'de> + Ord,
        V: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        Ok(Vec::<(K, V)>::deserialize(d)?.into_iter().collect())
    }
}

/// The engine's fields, borrowed for writing.
#[derive(Serialize)]
struct StateRef<'a> {
    max_event_time: Option<i64>,
    input_end: Option<i64>,
    first_event_time: Option<i64>,
    cloudtrail_events: u64,
    open_from: Option<i64>,
    series: &'a [Option<Series>],
    index: &'a AHashMap<String, usize>,
    free: &'a [usize],
    groups: &'a BTreeMap<String, LogGroup>,
    joiner: &'a MultilineJoiner,
    pairs: &'a SeenSet,
    counters: &'a EngineCounters,
    seeds: &'a Option<Box<Seeds>>,
    learning: bool,
    active: &'a [i64],
    names: &'a AHashMap<u64, Box<str>>,
}

/// The engine's fields, owned, as read back.
#[derive(Deserialize)]
struct StateOwned {
    max_event_time: Option<i64>,
    input_end: Option<i64>,
    first_event_time: Option<i64>,
    cloudtrail_events: u64,
    open_from: Option<i64>,
    series: Vec<Option<Series>>,
    index: AHashMap<String, usize>,
    free: Vec<usize>,
    groups: BTreeMap<String, LogGroup>,
    joiner: MultilineJoiner,
    pairs: SeenSet,
    counters: EngineCounters,
    seeds: Option<Box<Seeds>>,
    learning: bool,
    active: Vec<i64>,
    names: AHashMap<u64, Box<str>>,
}

#[derive(Serialize)]
struct DocumentRef<'a> {
    version: u32,
    config: &'a StatisticsConfig,
    state: StateRef<'a>,
}

#[derive(Deserialize)]
struct Document {
    version: u64,
    config: StatisticsConfig,
    state: StateOwned,
}

/// Only the version, read first so that a document of another version is reported as such
/// rather than as corrupt.
#[derive(Deserialize)]
struct Header {
    version: u64,
}

impl StatsEngine {
    /// Writes the engine's state (see the module documentation) to `w` as one JSON document.
    ///
    /// # Errors
    /// [`SnapshotError::Write`] when serialisation or the writer fails (a writer may refuse
    /// to grow past a size bound).
    pub fn write_state<W: Write>(&self, w: W) -> Result<(), SnapshotError> {
        let doc = DocumentRef {
            version: ENGINE_STATE_VERSION,
            config: &self.cfg,
            state: StateRef {
                max_event_time: self.max_event_time,
                input_end: self.input_end,
                first_event_time: self.first_event_time,
                cloudtrail_events: self.cloudtrail_events,
                open_from: self.open_from,
                series: &self.series,
                index: &self.index,
                free: &self.free,
                groups: &self.groups,
                joiner: &self.joiner,
                pairs: &self.pairs,
                counters: &self.counters,
                seeds: &self.seeds,
                learning: self.learning,
                active: &self.active,
                names: &self.names,
            },
        };
        serde_json::to_writer(w, &doc).map_err(|e| SnapshotError::Write(e.to_string()))
    }

    /// The engine's state as one JSON document (see [`StatsEngine::write_state`]).
    ///
    /// # Errors
    /// [`SnapshotError::Write`] when serialisation fails.
    pub fn state_bytes(&self) -> Result<Vec<u8>, SnapshotError> {
        let mut out = Vec::new();
        self.write_state(&mut out)?;
        Ok(out)
    }

    /// An engine with the state of `bytes` (written by [`StatsEngine::write_state`]) and the
    /// configuration `config`, which must be the one the state was built with.
    ///
    /// # Errors
    /// [`SnapshotError::Version`] for a document of another version,
    /// [`SnapshotError::ConfigChanged`] when `config` differs from the state's, and
    /// [`SnapshotError::Corrupt`] for anything that is not a consistent engine state.
    pub fn from_state(config: StatisticsConfig, bytes: &[u8]) -> Result<Self, SnapshotError> {
        let header: Header =
            serde_json::from_slice(bytes).map_err(|e| SnapshotError::Corrupt(e.to_string()))?;
        if header.version != u64::from(ENGINE_STATE_VERSION) {
            return Err(SnapshotError::Version {
                found: header.version,
                supported: ENGINE_STATE_VERSION,
            });
        }
        let doc: Document =
            serde_json::from_slice(bytes).map_err(|e| SnapshotError::Corrupt(e.to_string()))?;
        if doc.version != u64::from(ENGINE_STATE_VERSION) {
            return Err(SnapshotError::Version {
                found: doc.version,
                supported: ENGINE_STATE_VERSION,
            });
        }
        if doc.config != config {
            return Err(SnapshotError::ConfigChanged);
        }
        let s = doc.state;
        check(&s).map_err(SnapshotError::Corrupt)?;
        let mut e = StatsEngine::new(config);
        e.max_event_time = s.max_event_time;
        e.input_end = s.input_end;
        e.first_event_time = s.first_event_time;
        e.cloudtrail_events = s.cloudtrail_events;
        e.open_from = s.open_from;
        e.series = s.series;
        e.index = s.index;
        e.free = s.free;
        e.groups = s.groups;
        e.joiner = s.joiner;
        e.pairs = s.pairs;
        e.counters = s.counters;
        e.seeds = s.seeds;
        e.learning = s.learning;
        e.active = s.active;
        e.names = s.names;
        Ok(e)
    }
}

/// Checks that the series table, its index and free list, and the active windows fit
/// together (what the engine indexes without further checks).
fn check(s: &StateOwned) -> Result<(), String> {
    for (key, &slot) in &s.index {
        match s.series.get(slot) {
            Some(Some(series)) if series.spec.key == *key => {}
            _ => {
                return Err(format!(
                    "series index entry {key:?} -> {slot} has no such series"
                ));
            }
        }
    }
    let live = s.series.iter().filter(|x| x.is_some()).count();
    if live != s.index.len() {
        return Err(format!("{live} series but {} index entries", s.index.len()));
    }
    for &slot in &s.free {
        if !matches!(s.series.get(slot), Some(None)) {
            return Err(format!("free slot {slot} is not an empty slot"));
        }
    }
    if s.active.windows(2).any(|w| w[0] > w[1]) {
        return Err("active windows are not sorted".into());
    }
    for series in s.series.iter().flatten() {
        if let Some(p) = &series.pending
            && p.slot >= s.series.len()
        {
            return Err(format!(
                "pending finding of {:?} names slot {}",
                series.spec.key, p.slot
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "snapshot_tests.rs"]
mod tests;
