//! What the embedded stages share: the inputs sources send, the counters, the run mode and
//! the hooks of `aiops bench`.

use crate::error::{Context, Result};
use crate::sim::SimRecord;
use aiops_act::Incident;
use aiops_ingest::manifest::{EventTimeRange, InputKey};
use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// What sources send to ingest.
pub(crate) enum Input {
    /// A whole file (or object).
    File {
        /// The path (or `s3://bucket/key`), as named in dead letters and positions.
        name: String,
        /// Its contents.
        data: Vec<u8>,
        /// Its content key, recorded in the manifest of ingested inputs once delivered.
        key: InputKey,
        /// Event-time ranges of this input delivered by earlier runs: its events there are
        /// duplicates.
        already: Vec<EventTimeRange>,
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

/// One whole input a [`FileFeed`] hands over: a file or an object, read or not.
#[derive(Debug)]
pub struct FeedFile {
    /// Where it came from (`s3://bucket/key`), as named in dead letters, positions and the
    /// manifest of ingested inputs.
    pub name: String,
    /// Its bytes, or why it could not be read (a dead letter; not recorded as ingested, so
    /// the next replay tries it again).
    pub data: Result<Vec<u8>, String>,
}

/// A source of whole inputs fed by code rather than configuration (`aiops replay
/// s3://...`): called on a thread of its own with a send function that takes one input and
/// returns false once the pipeline stopped accepting input. Each input goes through the
/// manifest of ingested inputs as a file does (skipped when already ingested).
pub type FileFeed = Box<dyn FnOnce(&dyn Fn(FeedFile) -> bool) + Send>;

/// Extra inputs, the replay's event-time range and measurement hooks of
/// [`run_embedded_with`] (`aiops replay`, `aiops bench`).
#[derive(Default)]
pub struct Probes {
    /// Record sources beside the configured ones.
    pub feeds: Vec<RecordFeed>,
    /// Sources of whole inputs (objects) beside the configured ones.
    pub file_feeds: Vec<FileFeed>,
    /// Only events in this range are kept (`aiops replay --from/--to`); the others are
    /// dropped and counted (`out_of_range_events`). Default: every event.
    pub event_time_range: EventTimeRange,
    /// Read every whole input even when the manifest of ingested inputs says the data
    /// directory holds it (`aiops replay --force`): its rows are written again. Default false.
    pub force: bool,
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
    /// Inputs (files, objects) skipped because the data directory already holds them (the
    /// manifest of ingested inputs), or because the same content came earlier in the run.
    pub skipped_inputs: AtomicU64,
    /// Inputs (files, objects) read and decoded.
    pub inputs_read: AtomicU64,
    /// Bytes of the inputs read (as stored: compressed when the input is).
    pub input_bytes: AtomicU64,
    /// Events outside the replay's event-time range (`--from/--to`), dropped.
    pub out_of_range_events: AtomicU64,
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
    /// Replay: events the reorder buffer released to the statistics before its watermark
    /// passed them, because it held `[pipeline] replay_reorder_events` or
    /// `replay_reorder_bytes`.
    pub reorder_early_releases: AtomicU64,
    /// Replay: events fed to the statistics after a newer event (their inputs were out of
    /// order by more than the reorder horizon, or the buffer was full); the statistics count
    /// those behind their closed window as late.
    pub out_of_order_events: AtomicU64,
}

/// The summary printed at the end of a replay (and of a run).
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Summary {
    /// Always `summary`.
    pub kind: &'static str,
    /// Events decoded (including duplicates; not those outside the event-time range).
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
    /// Inputs (files, objects) skipped as already ingested into the data directory.
    pub skipped_inputs: u64,
    /// Inputs (files, objects) read.
    pub inputs_read: u64,
    /// Bytes of the inputs read.
    pub input_bytes: u64,
    /// Events outside the replay's event-time range, dropped.
    pub out_of_range_events: u64,
    /// Replay: events the reorder buffer released before its watermark passed them (it was
    /// full); 0 when every event waited the whole horizon.
    pub reorder_early_releases: u64,
    /// Replay: events fed to the statistics after a newer event (inputs out of order by more
    /// than `[pipeline] replay_reorder_horizon_secs`, or the reorder buffer was full).
    pub out_of_order_events: u64,
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
            skipped_inputs: g(&self.skipped_inputs),
            inputs_read: g(&self.inputs_read),
            input_bytes: g(&self.input_bytes),
            out_of_range_events: g(&self.out_of_range_events),
            reorder_early_releases: g(&self.reorder_early_releases),
            out_of_order_events: g(&self.out_of_order_events),
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
