//! The act stage on Kinesis: each record of the decisions stream is one JSON `Finding`; the
//! incident workflow (DESIGN §6: DETECTED -> ANALYZING -> DECIDED -> ...) runs for it with the
//! store, explainer, executor and notifier `[act]` configures (in aws mode: DynamoDB). The
//! workflow's AWS adapters block on their own runtime, so each finding runs on a blocking
//! thread. A finding delivered twice opens one incident (the incident id derives from the
//! finding id, created conditionally). Every finding read is buffered for the `findings`
//! history table with the workflow's verdict (`suppressed`: the reason, when a suppression
//! matched it), and every incident snapshot handled for the `incidents` table; both are
//! written to S3 at flush, before the shard checkpoints.
//!
//! A finding the store refuses for good (DynamoDB `ValidationException`, an item over the
//! size bound: [`aiops_act::WorkflowError::is_permanent`]) goes to the dead letters
//! (`<prefix>/dead_letters/...jsonl`, the ingest format, with the reason) and is counted; the
//! shard moves on and checkpoints past it. Any other failure stops the shard without a
//! checkpoint, so the records are read again.
//!
//! The findings of a batch are handled in lanes ([`lanes`]): one per resource, in record
//! order, lanes side by side up to `[act] max_in_flight` findings at once per worker, so a
//! slow recovery of one resource does not hold up the others; the batch checkpoints when
//! every lane is done.
//!
//! [`spawn_sweeper`] runs the stuck-incident sweeper ([`aiops_act::sweeper`]) every
//! `[act.sweeper] interval_secs` on a blocking thread, beside the shard processors.

use super::counters::StageCounters;
use super::ingest::dead_letter_line;
use super::tables::TableBuffer;
use aiops_act::ActWorkflow;
use aiops_aws::archive::RawArchive;
use aiops_aws::consumer::{ConsumedRecord, ProcessError, ProcessorFactory, ShardProcessor};
use aiops_aws::objects::ObjectStore;
use aiops_core::{Finding, Position};
use aiops_ingest::archive::{ArchiveConfig, IncidentRow};
use aiops_ingest::decode::DeadLetter;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// What every act shard processor shares.
pub struct ActShared<O> {
    /// The workflow.
    pub workflow: Arc<ActWorkflow>,
    /// Least time between checkpoints.
    pub checkpoint_interval: Duration,
    /// Counters.
    pub counters: Arc<StageCounters>,
    /// Where the `findings` and `incidents` tables and the dead letters go.
    pub objects: Arc<O>,
    /// Key prefix of the history.
    pub prefix: String,
    /// Roll-over bounds of the `findings` and `incidents` objects.
    pub archive: ArchiveConfig,
    /// Findings handled at once by this worker, over all its shards (`[act] max_in_flight`
    /// permits).
    pub in_flight: Arc<tokio::sync::Semaphore>,
}

/// The findings of one batch in lanes, one per resource (the resource key; a finding without
/// a resource is its own lane), each in record order, lanes in the order of their first
/// finding: findings of one resource are handled one after the other, never at once.
pub fn lanes(items: Vec<(ConsumedRecord, Finding)>) -> Vec<Vec<(ConsumedRecord, Finding)>> {
    let mut order: Vec<String> = Vec::new();
    let mut by_key: std::collections::HashMap<String, Vec<(ConsumedRecord, Finding)>> =
        std::collections::HashMap::new();
    for (r, f) in items {
        let key = match &f.resource {
            Some(res) => format!("resource:{}", res.key()),
            None => format!("finding:{}", f.finding_id),
        };
        if !by_key.contains_key(&key) {
            order.push(key.clone());
        }
        by_key.entry(key).or_default().push((r, f));
    }
    order
        .into_iter()
        .filter_map(|k| by_key.remove(&k))
        .collect()
}

/// Creates one [`ActProcessor`] per shard.
pub struct ActFactory<O>(pub Arc<ActShared<O>>);

impl<O: ObjectStore> ProcessorFactory for ActFactory<O> {
    type Processor = ActProcessor<O>;
    fn create(&self, shard_id: &str) -> ActProcessor<O> {
        ActProcessor {
            findings: TableBuffer::new(&self.0.prefix, shard_id, self.0.archive),
            incidents: TableBuffer::new(&self.0.prefix, shard_id, self.0.archive),
            dead_letters: RawArchive::new(&self.0.prefix, self.0.archive),
            shared: self.0.clone(),
            last_flush: Instant::now(),
        }
    }
}

/// The act processor of one shard.
pub struct ActProcessor<O> {
    shared: Arc<ActShared<O>>,
    findings: TableBuffer<Finding>,
    incidents: TableBuffer<IncidentRow>,
    dead_letters: RawArchive,
    last_flush: Instant,
}

impl<O: ObjectStore> ShardProcessor for ActProcessor<O> {
    async fn process(&mut self, records: Vec<ConsumedRecord>) -> Result<(), ProcessError> {
        let c = self.shared.counters.clone();
        let mut parsed = Vec::with_capacity(records.len());
        for r in records {
            c.records.fetch_add(1, Ordering::Relaxed);
            match serde_json::from_slice::<Finding>(&r.data) {
                Ok(f) => {
                    c.findings.fetch_add(1, Ordering::Relaxed);
                    parsed.push((r, f));
                }
                Err(e) => {
                    c.bad_records.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(shard = %r.shard_id, sequence_number = %r.sequence_number, error = %e, "decisions stream record is not a Finding; skipped");
                }
            }
        }
        // One lane per resource, in record order; lanes run side by side, each on a blocking
        // thread, as many at once as the worker's permits allow.
        let mut running = tokio::task::JoinSet::new();
        for lane in lanes(parsed) {
            let permit = self
                .shared
                .in_flight
                .clone()
                .acquire_owned()
                .await
                .map_err(|e| ProcessError(format!("act permits closed: {e}")))?;
            let workflow = self.shared.workflow.clone();
            running.spawn_blocking(move || {
                let _permit = permit;
                let mut out = Vec::with_capacity(lane.len());
                for (r, f) in lane {
                    let result = workflow.handle(&f);
                    // A retryable failure ends the lane: the resource's later findings wait
                    // for the records to be read again.
                    let stop = matches!(&result, Err(e) if !e.is_permanent());
                    out.push((r, f, result));
                    if stop {
                        break;
                    }
                }
                out
            });
        }
        let mut failure: Option<ProcessError> = None;
        while let Some(done) = running.join_next().await {
            let results = match done {
                Ok(v) => v,
                Err(e) => {
                    failure.get_or_insert(ProcessError(format!("incident workflow panicked: {e}")));
                    continue;
                }
            };
            for (r, mut finding, result) in results {
                let handled = match result {
                    Ok(h) => h,
                    Err(e) if e.is_permanent() => {
                        let reason =
                            format!("finding {} cannot be handled: {e}", finding.finding_id);
                        tracing::error!(shard = %r.shard_id, sequence_number = %r.sequence_number, %reason, "dead letter");
                        let d = DeadLetter {
                            reason,
                            position: Position {
                                stream: r.stream.clone(),
                                shard_id: r.shard_id.clone(),
                                sequence_number: r.sequence_number.clone(),
                                sub_sequence_number: r.sub_sequence_number,
                            },
                            data: r.data,
                        };
                        self.dead_letters
                            .append_dead_letter(&d.position, &dead_letter_line(&d));
                        c.dead_letters.fetch_add(1, Ordering::Relaxed);
                        // The finding itself is still history (no incident came of it).
                        self.findings.append(finding);
                        continue;
                    }
                    Err(e) => {
                        failure.get_or_insert(ProcessError(e.to_string()));
                        continue;
                    }
                };
                if let Some(reason) = &handled.suppressed {
                    c.suppressed_findings.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(shard = %r.shard_id, %reason, "finding suppressed: recorded, no incident");
                }
                finding.suppressed = handled.suppressed.clone();
                self.findings.append(finding);
                if handled.opened {
                    c.incidents.fetch_add(1, Ordering::Relaxed);
                }
                if let Some(i) = &handled.incident {
                    tracing::info!(incident = %i.incident_id, state = %i.state, resource = %i.resource_key, "incident");
                    self.incidents
                        .append(aiops_history::tables::incident_row(i));
                }
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn flush_due(&self) -> bool {
        self.last_flush.elapsed() >= self.shared.checkpoint_interval
            || self.findings.flush_due()
            || self.incidents.flush_due()
            || self.dead_letters.flush_due()
    }

    async fn flush(&mut self) -> Result<(), ProcessError> {
        if self.findings.rows() > 0 {
            let keys = self
                .findings
                .flush(self.shared.objects.as_ref())
                .await
                .map_err(|e| ProcessError(e.to_string()))?;
            tracing::info!(objects = keys.len(), "findings table flushed");
        }
        if self.incidents.rows() > 0 {
            let keys = self
                .incidents
                .flush(self.shared.objects.as_ref())
                .await
                .map_err(|e| ProcessError(e.to_string()))?;
            tracing::info!(objects = keys.len(), "incidents table flushed");
        }
        if !self.dead_letters.is_empty() {
            let report = self
                .dead_letters
                .flush(self.shared.objects.as_ref())
                .await
                .map_err(|e| ProcessError(e.to_string()))?;
            tracing::info!(
                dead_letters = report.dead_letters,
                "act dead letters written"
            );
        }
        self.last_flush = Instant::now();
        Ok(())
    }
}

/// Runs the stuck-incident sweeper of `workflow` every `[act.sweeper] interval_secs` (the
/// first sweep one interval after the start) until `stop` turns true; each sweep on a
/// blocking thread (it may wait for builds). Resumed incidents are counted in
/// `counters.resumed_incidents`. Returns at once when the sweeper is disabled.
pub fn spawn_sweeper(
    workflow: Arc<ActWorkflow>,
    counters: Arc<StageCounters>,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let cfg = workflow.config().sweeper.clone();
        if !cfg.enabled {
            return;
        }
        let interval = Duration::from_secs(cfg.interval_secs.max(1));
        loop {
            if *stop.borrow() {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() {
                        return;
                    }
                    continue;
                }
            }
            let wf = workflow.clone();
            let swept =
                tokio::task::spawn_blocking(move || wf.sweep(aiops_core::time::now_micros())).await;
            match swept {
                Ok(Ok(report)) => {
                    counters
                        .resumed_incidents
                        .fetch_add(report.resumed as u64, Ordering::Relaxed);
                    if report.found > 0 {
                        tracing::info!(
                            found = report.found,
                            resumed = report.resumed,
                            claimed_elsewhere = report.claimed_elsewhere,
                            errors = report.errors,
                            "stuck-incident sweep"
                        );
                    }
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "stuck-incident sweep failed; retried at the next interval")
                }
                Err(e) => tracing::error!(error = %e, "stuck-incident sweep panicked"),
            }
        }
    })
}

#[cfg(test)]
#[path = "act_tests.rs"]
mod tests;
