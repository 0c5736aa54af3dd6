//! What the embedded stages share: the inputs sources send, the counters, the run mode and
//! the hooks of `aiops bench`.

use crate::error::{Context, Result};
use crate::sim::SimRecord;
use aiops_act::Incident;
use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// What sources send to ingest.
pub(crate) enum Input {
    /// A whole file.
    File {
        /// The path, as named in dead letters and positions.
        name: String,
        /// Its contents.
        data: Vec<u8>,
    },
    /// A file that could not be read or is too large: a dead letter.
    Unreadable {
        /// The path.
        name: String,
        /// Why it was not read.
        reason: String,
        /// The first bytes, when any were read.
        head: Vec<u8>,
    },
    /// Kinesis-like records, and when the source received them (microseconds since the Unix
    /// epoch, UTC): the events' `ingest_time`, so time spent queued before decode counts in
    /// the latency from ingestion to finding.
    Records {
        /// The records.
        records: Vec<SimRecord>,
        /// When the source received them, µs since the epoch.
        received_at: i64,
    },
}

/// A source of Kinesis-like records fed by code rather than configuration (`aiops bench`):
/// called on a thread of its own with a send function that takes a batch and returns false
/// once the pipeline stopped accepting input; the source ends when the function returns.
pub type RecordFeed = Box<dyn FnOnce(&dyn Fn(Vec<SimRecord>) -> bool) + Send>;

/// Change-rule latency samples: (the event's `ingest_time`, latency), both in microseconds
/// (see [`Probes::change_latency_micros`]).
pub type LatencySamples = Arc<std::sync::Mutex<Vec<(i64, i64)>>>;

/// Extra inputs and measurement hooks of [`run_embedded_with`], for `aiops bench`.
#[derive(Default)]
pub struct Probes {
    /// Record sources beside the configured ones.
    pub feeds: Vec<RecordFeed>,
    /// When set, ingest appends one sample per change-rule finding: the triggering event's
    /// `ingest_time` (when its record reached the pipeline, microseconds since the Unix epoch,
    /// UTC) and the wall-clock microseconds from then until the finding was produced. At most
    /// [`MAX_LATENCY_SAMPLES`] samples are kept.
    pub change_latency_micros: Option<LatencySamples>,
    /// When set, receives the statistics engine's counters when detect ends (series tracked,
    /// log groups, templates).
    pub engine_counters:
        Option<Arc<std::sync::Mutex<Option<aiops_detect::engine::EngineCounters>>>>,
}

/// Upper bound of the latency samples kept by [`Probes::change_latency_micros`].
pub const MAX_LATENCY_SAMPLES: usize = 1_000_000;

/// Earliest event time accepted: 2000-01-01T00:00:00Z, microseconds since the epoch.
pub const EARLIEST_EVENT_TIME: i64 = 946_684_800_000_000;
/// How far ahead of the wall clock an event time may be: one day, in microseconds.
pub const MAX_FUTURE_MICROS: i64 = 86_400_000_000;

/// Counters shared by the stages; read for progress and the summary.
#[derive(Debug, Default)]
pub struct Counters {
    /// Events decoded (including duplicates).
    pub events: AtomicU64,
    /// Records that could not be decoded.
    pub dead_letters: AtomicU64,
    /// Events dropped as duplicates.
    pub duplicates: AtomicU64,
    /// CloudWatch Logs control messages dropped.
    pub control_messages: AtomicU64,
    /// CloudTrail digest files skipped.
    pub digest_files: AtomicU64,
    /// Files skipped by the files source's `exclude` patterns.
    pub skipped_files: AtomicU64,
    /// Findings produced.
    pub findings: AtomicU64,
    /// Incidents opened.
    pub incidents: AtomicU64,
    /// Findings a suppression (or "not an incident" feedback) held back: recorded, no
    /// incident.
    pub suppressed_findings: AtomicU64,
    /// Changes the recent-changes index could not record (logged; the stream goes on).
    pub change_index_errors: AtomicU64,
    /// Rows accepted by the Parquet archive.
    pub archived_rows: AtomicU64,
    /// Change-rule matches skipped because the call failed.
    pub skipped_failed_calls: AtomicU64,
    /// Change-rule matches skipped because an AWS service made the call.
    pub skipped_service_calls: AtomicU64,
}

/// The summary printed at the end of a replay (and of a run).
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Summary {
    /// Always `summary`.
    pub kind: &'static str,
    /// Events decoded (including duplicates).
    pub events: u64,
    /// Records sent to dead letters.
    pub dead_letters: u64,
    /// Duplicate events dropped.
    pub duplicates: u64,
    /// Findings produced.
    pub findings: u64,
    /// Incidents opened.
    pub incidents: u64,
    /// Findings held back by a suppression or feedback (recorded, no incident).
    pub suppressed_findings: u64,
    /// Rows written to Parquet.
    pub archived_rows: u64,
    /// CloudWatch Logs control messages dropped.
    pub control_messages: u64,
    /// CloudTrail digest files skipped.
    pub digest_files: u64,
    /// Files skipped by `exclude` patterns.
    pub skipped_files: u64,
}

impl Counters {
    /// A snapshot as a [`Summary`].
    pub fn summary(&self) -> Summary {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Summary {
            kind: "summary",
            events: g(&self.events),
            dead_letters: g(&self.dead_letters),
            duplicates: g(&self.duplicates),
            findings: g(&self.findings),
            incidents: g(&self.incidents),
            suppressed_findings: g(&self.suppressed_findings),
            archived_rows: g(&self.archived_rows),
            control_messages: g(&self.control_messages),
            digest_files: g(&self.digest_files),
            skipped_files: g(&self.skipped_files),
        }
    }
}

/// How the pipeline ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunMode {
    /// Process the sources once and stop (replay).
    Once,
    /// Follow sources until stopped.
    Follow,
}

/// Called with each incident when its workflow has run.
pub type IncidentSink = Box<dyn FnMut(&Incident) + Send>;

/// Starts a pipeline thread named `name` (shown by `top -H`, `perf` and panics).
pub(crate) fn spawn_stage<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<std::thread::JoinHandle<T>> {
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(f)
        .with_context(|| format!("cannot start the {name} thread"))
}
