//! The ingest thread of the embedded pipeline: decode, drop events of impossible times,
//! de-duplicate, run the change rules (so a destructive call never waits behind the
//! statistics), record every successful mutating CloudTrail call in the recent-changes index
//! (read by the act workflow for an incident's related changes), archive to Parquet, and pass
//! the events on to detect. Events outside the replay's event-time range are dropped; the
//! inputs read in full are returned at the end, for the manifest of ingested inputs.

use super::decode_pool::DecodePool;
use super::shared::{
    Counters, EARLIEST_EVENT_TIME, Input, LatencySamples, MAX_FUTURE_MICROS, MAX_LATENCY_SAMPLES,
    RunMode, spawn_stage,
};
use crate::config::PipelineConfig;
use crate::deadletter::DeadLetterWriter;
use crate::error::Result;
use aiops_act::change_from_event;
use aiops_act::setup::DynChangeIndex;
use aiops_core::time::now_micros;
use aiops_core::{Event, Finding, Position};
use aiops_detect::rules::{ChangeRules, RuleVerdict};
use aiops_ingest::archive::LocalArchive;
use aiops_ingest::decode::{DecodeOutput, decode_file, decode_kinesis_record};
use aiops_ingest::dedup::Deduplicator;
use aiops_ingest::manifest::{EventTimeRange, ManifestEntry};
use crossbeam_channel::{Receiver, Sender};
use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Most events per batch a replay sends to detect: the channel between them holds
/// `[pipeline] channel_capacity` batches in a replay, so at most 8 x 1,024 events by default
/// whatever the size of the inputs.
const REPLAY_BATCH_EVENTS: usize = 1024;

/// Starts the ingest thread: inputs from `in_rx`, event batches to `ev_tx`, change-rule
/// findings to `findings`, changes to `changes` (when given), events outside `range`
/// dropped; on its way out it flushes the archive and the dead letters, and returns the
/// inputs it read in full (to record once the whole run delivered them).
#[allow(clippy::too_many_arguments)]
pub(crate) fn start_ingest(
    config: &PipelineConfig,
    data_dir: &Path,
    rules: ChangeRules,
    changes: Option<DynChangeIndex>,
    range: EventTimeRange,
    in_rx: Receiver<Input>,
    ev_tx: Sender<Vec<Event>>,
    findings: Sender<Finding>,
    counters: &Arc<Counters>,
    latency_micros: Option<LatencySamples>,
    mode: RunMode,
) -> Result<JoinHandle<Result<Vec<ManifestEntry>>>> {
    let counters = counters.clone();
    let limits = config.ingest.limits();
    let mut dedup = Deduplicator::new(&config.ingest.dedup)?;
    let mut archive = LocalArchive::new(data_dir, config.archive);
    let mut dlq = DeadLetterWriter::new(&data_dir.join("dead_letters"));
    let pool = DecodePool::start(config.pipeline.decode_threads, limits)?;
    let max_batch = match mode {
        RunMode::Once => REPLAY_BATCH_EVENTS,
        RunMode::Follow => 0,
    };
    spawn_stage("ingest", move || -> Result<Vec<ManifestEntry>> {
        let change = ChangeStage {
            rules,
            changes,
            findings,
            counters: counters.clone(),
            latency_micros,
        };
        let mut delivered = Vec::new();
        let mut sinks = Sinks {
            tx: &ev_tx,
            change: &change,
            dedup: &mut dedup,
            archive: &mut archive,
            dlq: &mut dlq,
            max_batch,
        };
        let result = ingest_loop(&in_rx, &pool, &limits, range, &mut sinks, &mut delivered);
        drop(pool);
        // Whatever happened, make what was accepted durable.
        let flushed = archive.flush();
        let dlq_flushed = dlq.flush();
        result?;
        flushed?;
        dlq_flushed?;
        Ok(delivered)
    })
}

fn record_dead_letters(
    out: &mut DecodeOutput,
    dlq: &mut DeadLetterWriter,
    counters: &Counters,
) -> Result<()> {
    for d in out.dead_letters.drain(..) {
        tracing::warn!(reason = %d.reason, stream = %d.position.stream, sequence_number = %d.position.sequence_number, "dead letter");
        dlq.write(&d)?;
        counters.dead_letters.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

/// Change-rule evaluation on the ingest thread: findings go straight to act; every change
/// goes to the recent-changes index.
struct ChangeStage {
    rules: ChangeRules,
    changes: Option<DynChangeIndex>,
    findings: Sender<Finding>,
    counters: Arc<Counters>,
    latency_micros: Option<LatencySamples>,
}

impl ChangeStage {
    /// Records the change `event` is, when it is one (a successful mutating CloudTrail call),
    /// in the recent-changes index. A failure is counted and logged (the first, then every
    /// 1000th) and never stops the stream: the incidents only miss that related change.
    fn record_change(&self, event: &Event) {
        let (Some(index), Some(change)) = (&self.changes, change_from_event(event)) else {
            return;
        };
        if let Err(e) = index.record(&change) {
            let n = self
                .counters
                .change_index_errors
                .fetch_add(1, Ordering::Relaxed);
            if n.is_multiple_of(1000) {
                tracing::warn!(error = %e, event_id = %change.event_id, errors = n + 1, "change not recorded in the recent-changes index");
            }
        }
    }

    /// Evaluates one event; false once act stopped taking findings.
    fn evaluate(&self, event: &Event) -> bool {
        self.record_change(event);
        let (verdict, findings) = self.rules.evaluate(event);
        match verdict {
            RuleVerdict::FailedCall => {
                self.counters
                    .skipped_failed_calls
                    .fetch_add(1, Ordering::Relaxed);
            }
            RuleVerdict::AwsService => {
                self.counters
                    .skipped_service_calls
                    .fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
        if findings.is_empty() {
            return true;
        }
        if let Some(samples) = &self.latency_micros
            && let Ok(mut samples) = samples.lock()
            && samples.len() < MAX_LATENCY_SAMPLES
        {
            let latency = now_micros().saturating_sub(event.ingest_time);
            samples.extend(findings.iter().map(|_| (event.ingest_time, latency)));
        }
        for f in findings {
            self.counters.findings.fetch_add(1, Ordering::Relaxed);
            if self.findings.send(f).is_err() {
                return false;
            }
        }
        true
    }
}

/// An input taken from the sources, in the order taken: being decoded by the pool, or to
/// decode on the ingest thread when its turn comes.
enum Pending {
    /// A whole input the decode pool is decoding.
    Decoding {
        result: Receiver<DecodeOutput>,
        entry: ManifestEntry,
        already: Vec<EventTimeRange>,
        bytes: u64,
        ingest_time: i64,
    },
    /// Anything else (Kinesis-like records, unreadable inputs), decoded when its turn comes.
    Inline(Input),
}

/// Where ingest sends what it accepted, and what it keeps.
struct Sinks<'a> {
    tx: &'a Sender<Vec<Event>>,
    change: &'a ChangeStage,
    dedup: &'a mut Deduplicator,
    archive: &'a mut LocalArchive,
    dlq: &'a mut DeadLetterWriter,
    /// Most events per batch sent to detect (0: one batch per input).
    max_batch: usize,
}

/// Loops until the inputs end; every input read in full (its events archived and passed on,
/// its dead letters written) is pushed to `delivered`. Whole inputs are decoded by `pool`,
/// several at once, and taken back in the order they came.
#[allow(clippy::too_many_arguments)]
fn ingest_loop(
    rx: &Receiver<Input>,
    pool: &DecodePool,
    limits: &aiops_ingest::decode::DecodeLimits,
    range: EventTimeRange,
    sinks: &mut Sinks<'_>,
    delivered: &mut Vec<ManifestEntry>,
) -> Result<()> {
    let mut out = DecodeOutput::default();
    let mut last_roll = Instant::now();
    let mut pending: VecDeque<Pending> = VecDeque::new();
    let mut sources_ended = false;
    loop {
        // Take inputs while the pool has room: wait (up to a second, to roll files over) only
        // when nothing is pending.
        while !sources_ended && pending.len() < pool.in_flight() {
            let input = if pending.is_empty() {
                match rx.recv_timeout(Duration::from_secs(1)) {
                    Ok(i) => i,
                    Err(crossbeam_channel::RecvTimeoutError::Timeout) => break,
                    Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                        sources_ended = true;
                        break;
                    }
                }
            } else {
                match rx.try_recv() {
                    Ok(i) => i,
                    Err(crossbeam_channel::TryRecvError::Empty) => break,
                    Err(crossbeam_channel::TryRecvError::Disconnected) => {
                        sources_ended = true;
                        break;
                    }
                }
            };
            pending.push_back(match input {
                Input::File {
                    name,
                    data,
                    key,
                    already,
                } => {
                    let ingest_time = now_micros();
                    let bytes = data.len() as u64;
                    let result = pool.submit(name.clone(), data, ingest_time);
                    Pending::Decoding {
                        result,
                        entry: ManifestEntry { key, name, range },
                        already,
                        bytes,
                        ingest_time,
                    }
                }
                other => Pending::Inline(other),
            });
        }
        let Some(next) = pending.pop_front() else {
            if sources_ended {
                break;
            }
            roll(sinks, &mut last_roll)?;
            continue;
        };
        let counters: &Counters = &sinks.change.counters;
        let mut ingest_time = now_micros();
        // The input being read when it is a whole one: recorded once its events went on.
        let mut entry: Option<ManifestEntry> = None;
        let mut already = Vec::new();
        match next {
            Pending::Decoding {
                result,
                entry: e,
                already: before,
                bytes,
                ingest_time: t,
            } => {
                counters.inputs_read.fetch_add(1, Ordering::Relaxed);
                counters.input_bytes.fetch_add(bytes, Ordering::Relaxed);
                ingest_time = t;
                match result.recv() {
                    Ok(decoded) => out = decoded,
                    Err(_) => out.dead_letters.push(aiops_ingest::decode::DeadLetter {
                        reason: "the decode thread failed on this input".into(),
                        data: Vec::new(),
                        position: file_position(&e.name),
                    }),
                }
                already = before;
                entry = Some(e);
            }
            Pending::Inline(Input::Unreadable { name, reason, head }) => {
                out.dead_letters.push(aiops_ingest::decode::DeadLetter {
                    reason,
                    data: head,
                    position: file_position(&name),
                });
            }
            Pending::Inline(Input::Records {
                records,
                received_at,
            }) => {
                ingest_time = received_at;
                for r in &records {
                    decode_kinesis_record(&r.data, &r.position, ingest_time, limits, &mut out);
                }
            }
            Pending::Inline(Input::File { name, data, .. }) => {
                // Never queued inline (whole inputs go to the pool); decoded here all the same.
                decode_file(&name, &data, ingest_time, limits, &mut out);
            }
        }
        if !deliver(&mut out, ingest_time, range, &already, sinks)? {
            return Ok(());
        }
        delivered.extend(entry);
        if last_roll.elapsed() >= Duration::from_secs(1) {
            roll(sinks, &mut last_roll)?;
        }
    }
    Ok(())
}

/// Rolls expired Parquet files over and flushes the dead letters.
fn roll(sinks: &mut Sinks<'_>, last_roll: &mut Instant) -> Result<()> {
    sinks.archive.roll_expired()?;
    sinks.dlq.flush()?;
    *last_roll = Instant::now();
    Ok(())
}

/// The position of a whole input named `name`, for its dead letters.
fn file_position(name: &str) -> Position {
    Position {
        stream: format!("file:{name}"),
        shard_id: "file".into(),
        sequence_number: "0".into(),
        sub_sequence_number: None,
    }
}

/// Writes the dead letters of one decoded input and passes its events on: events of
/// impossible times become dead letters, those outside `range` are dropped, duplicates
/// (seen in the de-duplication window, or in `already`: delivered by an earlier run) are
/// dropped; the rest go through the change rules, the archive and to detect. False once
/// act or detect stopped taking what ingest sends.
fn deliver(
    out: &mut DecodeOutput,
    ingest_time: i64,
    range: EventTimeRange,
    already: &[EventTimeRange],
    sinks: &mut Sinks<'_>,
) -> Result<bool> {
    let counters: &Counters = &sinks.change.counters;
    record_dead_letters(out, sinks.dlq, counters)?;
    counters
        .control_messages
        .fetch_add(std::mem::take(&mut out.control_messages), Ordering::Relaxed);
    counters
        .digest_files
        .fetch_add(std::mem::take(&mut out.digest_files), Ordering::Relaxed);
    if out.events.is_empty() {
        return Ok(true);
    }
    let room = match sinks.max_batch {
        0 => out.events.len(),
        n => out.events.len().min(n),
    };
    let mut batch = Vec::with_capacity(room);
    for e in out.events.drain(..) {
        // An event time AWS cannot have produced (before 2000, or more than a day ahead of
        // the clock) would drag the watermark and the de-duplication window with it: such an
        // event is a dead letter, not history.
        if e.event_time < EARLIEST_EVENT_TIME
            || e.event_time > ingest_time.saturating_add(MAX_FUTURE_MICROS)
        {
            sinks.dlq.write(&aiops_ingest::decode::DeadLetter {
                reason: format!(
                    "event time {} is outside [2000-01-01, now + 1 day]",
                    aiops_core::time::format_rfc3339_micros(e.event_time)
                ),
                data: serde_json::to_vec(&e).unwrap_or_default(),
                position: e.position.clone(),
            })?;
            counters.dead_letters.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        if !range.contains(e.event_time) {
            counters.out_of_range_events.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        counters.events.fetch_add(1, Ordering::Relaxed);
        // Delivered by an earlier run (the manifest of ingested inputs), or seen in the
        // de-duplication window.
        if already.iter().any(|r| r.contains(e.event_time))
            || sinks.dedup.is_duplicate(&e.event_id, e.event_time)
        {
            counters.duplicates.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        if !sinks.change.evaluate(&e) {
            return Ok(false);
        }
        sinks.archive.append(&e)?;
        counters.archived_rows.fetch_add(1, Ordering::Relaxed);
        batch.push(e);
        // A replay sends an input's events in parts, so the channel to detect holds a
        // bounded number of events, not of inputs.
        if sinks.max_batch > 0 && batch.len() >= sinks.max_batch {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(sinks.max_batch));
            if sinks.tx.send(full).is_err() {
                return Ok(false);
            }
        }
    }
    Ok(batch.is_empty() || sinks.tx.send(batch).is_ok())
}
