//! The ingest thread of the embedded pipeline: decode, drop events of impossible times,
//! de-duplicate, run the change rules (so a destructive call never waits behind the
//! statistics), record every successful mutating CloudTrail call in the recent-changes index
//! (read by the act workflow for an incident's related changes), archive to Parquet, and pass
//! the events on to detect. Events outside the replay's event-time range are dropped; the
//! inputs read in full are returned at the end, for the manifest of ingested inputs.

use super::shared::{
    Counters, EARLIEST_EVENT_TIME, Input, LatencySamples, MAX_FUTURE_MICROS, MAX_LATENCY_SAMPLES,
    spawn_stage,
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
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

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
) -> Result<JoinHandle<Result<Vec<ManifestEntry>>>> {
    let counters = counters.clone();
    let limits = config.ingest.limits();
    let mut dedup = Deduplicator::new(&config.ingest.dedup)?;
    let mut archive = LocalArchive::new(data_dir, config.archive);
    let mut dlq = DeadLetterWriter::new(&data_dir.join("dead_letters"));
    spawn_stage("ingest", move || -> Result<Vec<ManifestEntry>> {
        let change = ChangeStage {
            rules,
            changes,
            findings,
            counters: counters.clone(),
            latency_micros,
        };
        let mut delivered = Vec::new();
        let result = ingest_loop(
            &in_rx,
            &ev_tx,
            &change,
            &limits,
            range,
            &mut dedup,
            &mut archive,
            &mut dlq,
            &mut delivered,
        );
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

/// Loops until the inputs end; every input read in full (its events archived and passed on,
/// its dead letters written) is pushed to `delivered`.
#[allow(clippy::too_many_arguments)]
fn ingest_loop(
    rx: &Receiver<Input>,
    tx: &Sender<Vec<Event>>,
    change: &ChangeStage,
    limits: &aiops_ingest::decode::DecodeLimits,
    range: EventTimeRange,
    dedup: &mut Deduplicator,
    archive: &mut LocalArchive,
    dlq: &mut DeadLetterWriter,
    delivered: &mut Vec<ManifestEntry>,
) -> Result<()> {
    let counters: &Counters = &change.counters;
    let mut out = DecodeOutput::default();
    let mut last_roll = Instant::now();
    loop {
        let input = match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(i) => Some(i),
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => None,
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
        };
        let mut ingest_time = now_micros();
        // The input being read when it is a whole one: recorded once its events went on.
        let mut entry: Option<ManifestEntry> = None;
        let mut already = Vec::new();
        match input {
            Some(Input::File {
                name,
                data,
                key,
                already: before,
            }) => {
                counters.inputs_read.fetch_add(1, Ordering::Relaxed);
                counters
                    .input_bytes
                    .fetch_add(data.len() as u64, Ordering::Relaxed);
                decode_file(&name, &data, ingest_time, limits, &mut out);
                already = before;
                entry = Some(ManifestEntry { key, name, range });
            }
            Some(Input::Unreadable { name, reason, head }) => {
                out.dead_letters.push(aiops_ingest::decode::DeadLetter {
                    reason,
                    data: head,
                    position: Position {
                        stream: format!("file:{name}"),
                        shard_id: "file".into(),
                        sequence_number: "0".into(),
                        sub_sequence_number: None,
                    },
                });
            }
            Some(Input::Records {
                records,
                received_at,
            }) => {
                ingest_time = received_at;
                for r in &records {
                    decode_kinesis_record(&r.data, &r.position, ingest_time, limits, &mut out);
                }
            }
            None => {}
        }
        record_dead_letters(&mut out, dlq, counters)?;
        counters
            .control_messages
            .fetch_add(std::mem::take(&mut out.control_messages), Ordering::Relaxed);
        counters
            .digest_files
            .fetch_add(std::mem::take(&mut out.digest_files), Ordering::Relaxed);
        if !out.events.is_empty() {
            let mut batch = Vec::with_capacity(out.events.len());
            for e in out.events.drain(..) {
                // An event time AWS cannot have produced (before 2000, or more than a day
                // ahead of the clock) would drag the watermark and the de-duplication window
                // with it: such an event is a dead letter, not history.
                if e.event_time < EARLIEST_EVENT_TIME
                    || e.event_time > ingest_time.saturating_add(MAX_FUTURE_MICROS)
                {
                    dlq.write(&aiops_ingest::decode::DeadLetter {
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
                // Delivered by an earlier run (the manifest of ingested inputs), or seen in
                // the de-duplication window.
                if already.iter().any(|r| r.contains(e.event_time))
                    || dedup.is_duplicate(&e.event_id, e.event_time)
                {
                    counters.duplicates.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                if !change.evaluate(&e) {
                    return Ok(());
                }
                archive.append(&e)?;
                counters.archived_rows.fetch_add(1, Ordering::Relaxed);
                batch.push(e);
            }
            if !batch.is_empty() && tx.send(batch).is_err() {
                break;
            }
        }
        delivered.extend(entry);
        if last_roll.elapsed() >= Duration::from_secs(1) {
            archive.roll_expired()?;
            dlq.flush()?;
            last_roll = Instant::now();
        }
    }
    Ok(())
}
