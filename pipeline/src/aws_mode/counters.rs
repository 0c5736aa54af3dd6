//! Counters of an aws-mode stage, summarised when it stops.

use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters shared by the shard processors of one stage (monotonic).
#[derive(Debug, Default)]
pub struct StageCounters {
    /// User records handed to the stage.
    pub records: AtomicU64,
    /// Events decoded (ingest) or read (detect), duplicates included.
    pub events: AtomicU64,
    /// Events dropped as duplicates by event id.
    pub duplicates: AtomicU64,
    /// Records sent to dead letters (ingest; act: findings the store refused for good).
    pub dead_letters: AtomicU64,
    /// CloudWatch Logs control messages dropped (ingest).
    pub control_messages: AtomicU64,
    /// Records that are not the JSON the stage expects (detect, act): logged and skipped.
    pub bad_records: AtomicU64,
    /// Records accepted by PutRecords on the next stream.
    pub forwarded: AtomicU64,
    /// Rows written to Parquet objects (ingest).
    pub archived_rows: AtomicU64,
    /// Objects written to S3 (ingest).
    pub objects: AtomicU64,
    /// Findings produced (detect) or received (act).
    pub findings: AtomicU64,
    /// Incidents opened (act).
    pub incidents: AtomicU64,
    /// Findings held back by a suppression or feedback: recorded, no incident (act).
    pub suppressed_findings: AtomicU64,
    /// Changes not recorded in the recent-changes index (ingest; logged).
    pub change_index_errors: AtomicU64,
    /// Stuck incidents the sweeper resumed (act).
    pub resumed_incidents: AtomicU64,
    /// Engine states saved (detect).
    pub state_saved: AtomicU64,
    /// Shards resumed from a saved engine state (detect).
    pub state_restored: AtomicU64,
    /// Shards started cold because no state was saved, or the last one was too large to
    /// save (detect).
    pub state_missing: AtomicU64,
    /// Saved states refused (corrupt, another version, configuration, stream or shard): the
    /// shard started cold (detect).
    pub state_refused: AtomicU64,
    /// States too large to save (detect; a marker was saved instead).
    pub state_too_large: AtomicU64,
    /// Records read again after a restore from a state behind the checkpoint: fed to the
    /// engine, their findings not forwarded again (detect).
    pub replayed_records: AtomicU64,
}

/// A snapshot of [`StageCounters`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CountersSnapshot {
    /// See [`StageCounters::records`].
    pub records: u64,
    /// See [`StageCounters::events`].
    pub events: u64,
    /// See [`StageCounters::duplicates`].
    pub duplicates: u64,
    /// See [`StageCounters::dead_letters`].
    pub dead_letters: u64,
    /// See [`StageCounters::control_messages`].
    pub control_messages: u64,
    /// See [`StageCounters::bad_records`].
    pub bad_records: u64,
    /// See [`StageCounters::forwarded`].
    pub forwarded: u64,
    /// See [`StageCounters::archived_rows`].
    pub archived_rows: u64,
    /// See [`StageCounters::objects`].
    pub objects: u64,
    /// See [`StageCounters::findings`].
    pub findings: u64,
    /// See [`StageCounters::incidents`].
    pub incidents: u64,
    /// See [`StageCounters::suppressed_findings`].
    pub suppressed_findings: u64,
    /// See [`StageCounters::change_index_errors`].
    pub change_index_errors: u64,
    /// See [`StageCounters::resumed_incidents`].
    pub resumed_incidents: u64,
    /// See [`StageCounters::state_saved`].
    pub state_saved: u64,
    /// See [`StageCounters::state_restored`].
    pub state_restored: u64,
    /// See [`StageCounters::state_missing`].
    pub state_missing: u64,
    /// See [`StageCounters::state_refused`].
    pub state_refused: u64,
    /// See [`StageCounters::state_too_large`].
    pub state_too_large: u64,
    /// See [`StageCounters::replayed_records`].
    pub replayed_records: u64,
}

impl StageCounters {
    /// The current values.
    pub fn snapshot(&self) -> CountersSnapshot {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        CountersSnapshot {
            records: g(&self.records),
            events: g(&self.events),
            duplicates: g(&self.duplicates),
            dead_letters: g(&self.dead_letters),
            control_messages: g(&self.control_messages),
            bad_records: g(&self.bad_records),
            forwarded: g(&self.forwarded),
            archived_rows: g(&self.archived_rows),
            objects: g(&self.objects),
            findings: g(&self.findings),
            incidents: g(&self.incidents),
            suppressed_findings: g(&self.suppressed_findings),
            change_index_errors: g(&self.change_index_errors),
            resumed_incidents: g(&self.resumed_incidents),
            state_saved: g(&self.state_saved),
            state_restored: g(&self.state_restored),
            state_missing: g(&self.state_missing),
            state_refused: g(&self.state_refused),
            state_too_large: g(&self.state_too_large),
            replayed_records: g(&self.replayed_records),
        }
    }
}

/// The counters of one running stage: its own set, or, for the single deployment profile's
/// `all` stage (ingest, detect and act in one process), the three stages' sets.
#[derive(Debug, Clone)]
pub enum StageCounterSet {
    /// One stage.
    One(Arc<StageCounters>),
    /// Ingest, detect and act of the single profile, in that order.
    Pipeline([Arc<StageCounters>; 3]),
}

impl StageCounterSet {
    /// The current values; for [`StageCounterSet::Pipeline`] as one stage whose input is the
    /// raw stream ([`CountersSnapshot::of_pipeline`]).
    pub fn snapshot(&self) -> CountersSnapshot {
        match self {
            StageCounterSet::One(c) => c.snapshot(),
            StageCounterSet::Pipeline([i, d, a]) => {
                CountersSnapshot::of_pipeline(&i.snapshot(), &d.snapshot(), &a.snapshot())
            }
        }
    }

    /// The first set (the stage's own; ingest's for the pipeline).
    pub fn first(&self) -> Arc<StageCounters> {
        match self {
            StageCounterSet::One(c) => c.clone(),
            StageCounterSet::Pipeline([i, _, _]) => i.clone(),
        }
    }
}

impl CountersSnapshot {
    /// The three stages of one process as one stage reading the raw stream: records, events,
    /// duplicates, control messages, archived rows, objects and change-index errors are
    /// ingest's; findings detect's; incidents, suppressed findings and resumed incidents act's; dead letters and
    /// unreadable records are summed over the three; nothing is forwarded to a stream
    /// (`forwarded` 0: events and findings stay in the process).
    pub fn of_pipeline(
        ingest: &CountersSnapshot,
        detect: &CountersSnapshot,
        act: &CountersSnapshot,
    ) -> CountersSnapshot {
        CountersSnapshot {
            records: ingest.records,
            events: ingest.events,
            duplicates: ingest.duplicates,
            dead_letters: ingest.dead_letters + detect.dead_letters + act.dead_letters,
            control_messages: ingest.control_messages,
            bad_records: ingest.bad_records + detect.bad_records + act.bad_records,
            forwarded: 0,
            archived_rows: ingest.archived_rows,
            objects: ingest.objects,
            findings: detect.findings,
            incidents: act.incidents,
            suppressed_findings: act.suppressed_findings,
            change_index_errors: ingest.change_index_errors,
            resumed_incidents: act.resumed_incidents,
            state_saved: detect.state_saved,
            state_restored: detect.state_restored,
            state_missing: detect.state_missing,
            state_refused: detect.state_refused,
            state_too_large: detect.state_too_large,
            replayed_records: detect.replayed_records,
        }
    }
}
