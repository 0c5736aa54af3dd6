//! The ingest stage on Kinesis: decode each record of the raw stream (KPL user records already
//! split by the consumer), de-duplicate by event id, forward normalised events to the events
//! stream (one JSON `Event` per record, partition key `Event::partition_key()`; in the single
//! deployment profile: to detect in the same process, see [`super::forward`]), buffer them for
//! the S3 archive, and send undecodable records to the dead-letter prefix. Every successful
//! mutating CloudTrail call is recorded in the recent-changes index (DynamoDB), where the act
//! workers read an incident's related changes; a failure there is counted and logged and never
//! holds the shard back. The consumer
//! checkpoints after [`ShardProcessor::flush`], i.e. once the Parquet objects are in S3; the
//! forwarded records were accepted by PutRecords before `process` returned.

use super::counters::StageCounters;
use super::forward::Forward;
use super::keys::partition_key;
use crate::deadletter::DeadLetterLine;
use aiops_act::change_from_event;
use aiops_act::setup::DynChangeIndex;
use aiops_aws::archive::RawArchive;
use aiops_aws::consumer::{ConsumedRecord, ProcessError, ProcessorFactory, ShardProcessor};
use aiops_aws::kinesis::PutEntry;
use aiops_aws::objects::ObjectStore;
use aiops_aws::producer::check_entry;
use aiops_core::Position;
use aiops_core::time::{format_rfc3339_micros, now_micros};
use aiops_ingest::archive::ArchiveConfig;
use aiops_ingest::decode::{DeadLetter, DecodeLimits, DecodeOutput, decode_kinesis_record};
use aiops_ingest::dedup::{DedupConfig, Deduplicator};
use base64::Engine;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// What every ingest shard processor shares.
pub struct IngestShared<F, O> {
    /// Where the events go: the events stream, or detect in the same process.
    pub forward: F,
    /// Where Parquet and dead-letter objects go.
    pub objects: Arc<O>,
    /// Key prefix.
    pub prefix: String,
    /// Roll-over bounds.
    pub archive: ArchiveConfig,
    /// Decoder bounds.
    pub limits: DecodeLimits,
    /// De-duplication window (one window per shard processor).
    pub dedup: DedupConfig,
    /// Counters.
    pub counters: Arc<StageCounters>,
    /// The recent-changes index fed with every change seen (`None`: not fed).
    pub changes: Option<DynChangeIndex>,
}

/// Most changes recorded per `process` call: a batch of mostly mutating calls cannot hold the
/// shard back for long; the rest are counted as not recorded.
pub const MAX_CHANGES_PER_BATCH: usize = 2_000;

/// Records `changes` in `index` on a blocking thread (its AWS adapter blocks on its own
/// runtime), counting and logging failures; never fails.
async fn record_changes(
    index: DynChangeIndex,
    changes: Vec<aiops_act::Change>,
    counters: Arc<StageCounters>,
) {
    let failed = tokio::task::spawn_blocking(move || {
        let mut failed = 0u64;
        for change in &changes {
            if let Err(e) = index.record(change) {
                if failed == 0 {
                    tracing::warn!(error = %e, event_id = %change.event_id, "change not recorded in the recent-changes index");
                }
                failed += 1;
            }
        }
        failed
    })
    .await
    .unwrap_or_else(|e| {
        tracing::warn!(error = %e, "recording changes panicked");
        1
    });
    counters
        .change_index_errors
        .fetch_add(failed, Ordering::Relaxed);
}

/// Creates one [`IngestProcessor`] per shard.
pub struct IngestFactory<F, O>(pub Arc<IngestShared<F, O>>);

impl<F: Forward, O: ObjectStore> ProcessorFactory for IngestFactory<F, O> {
    type Processor = IngestProcessor<F, O>;
    fn create(&self, _shard_id: &str) -> IngestProcessor<F, O> {
        IngestProcessor {
            shared: self.0.clone(),
            // validate() checked the configuration; a default window is the safe fallback.
            dedup: Deduplicator::new(&self.0.dedup)
                .or_else(|_| Deduplicator::new(&DedupConfig::default()))
                .ok(),
            archive: RawArchive::new(&self.0.prefix, self.0.archive),
        }
    }
}

/// The ingest processor of one shard. Its de-duplication memory lives as long as it does: a
/// shard read again after a crash or a lease change starts with an empty window, so nothing
/// that was never made durable is dropped as a "duplicate".
pub struct IngestProcessor<F, O> {
    shared: Arc<IngestShared<F, O>>,
    dedup: Option<Deduplicator>,
    archive: RawArchive,
}

/// One dead-letter JSON line (the format of [`DeadLetterLine`]) for `d`.
pub(super) fn dead_letter_line(d: &DeadLetter) -> Vec<u8> {
    let line = DeadLetterLine {
        reason: &d.reason,
        stream: &d.position.stream,
        shard_id: &d.position.shard_id,
        sequence_number: &d.position.sequence_number,
        sub_sequence_number: d.position.sub_sequence_number,
        written_at: format_rfc3339_micros(now_micros()),
        size: d.data.len(),
        data_base64: base64::engine::general_purpose::STANDARD.encode(&d.data),
    };
    serde_json::to_vec(&line).unwrap_or_default()
}

impl<F: Forward, O: ObjectStore> ShardProcessor for IngestProcessor<F, O> {
    async fn process(&mut self, records: Vec<ConsumedRecord>) -> Result<(), ProcessError> {
        let c = &self.shared.counters;
        let ingest_time = now_micros();
        let mut entries: Vec<PutEntry> = Vec::new();
        let mut changes: Vec<aiops_act::Change> = Vec::new();
        for r in records {
            c.records.fetch_add(1, Ordering::Relaxed);
            let position = Position {
                stream: r.stream,
                shard_id: r.shard_id,
                sequence_number: r.sequence_number,
                sub_sequence_number: r.sub_sequence_number,
            };
            let mut out = DecodeOutput::default();
            decode_kinesis_record(
                &r.data,
                &position,
                ingest_time,
                &self.shared.limits,
                &mut out,
            );
            c.control_messages
                .fetch_add(out.control_messages, Ordering::Relaxed);
            for d in &out.dead_letters {
                tracing::warn!(reason = %d.reason, shard = %d.position.shard_id, sequence_number = %d.position.sequence_number, "dead letter");
                self.archive
                    .append_dead_letter(&d.position, &dead_letter_line(d));
                c.dead_letters.fetch_add(1, Ordering::Relaxed);
            }
            let share = r.data.len() / out.events.len().max(1);
            for e in out.events {
                c.events.fetch_add(1, Ordering::Relaxed);
                if self
                    .dedup
                    .as_mut()
                    .is_some_and(|d| d.is_duplicate(&e.event_id, e.event_time))
                {
                    c.duplicates.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                if self.shared.changes.is_some()
                    && let Some(change) = change_from_event(&e)
                {
                    if changes.len() < MAX_CHANGES_PER_BATCH {
                        changes.push(change);
                    } else {
                        c.change_index_errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                let data = serde_json::to_vec(&e)
                    .map_err(|err| ProcessError(format!("cannot serialise event: {err}")))?;
                let entry = PutEntry {
                    partition_key: partition_key(&e.partition_key()),
                    data,
                };
                match check_entry(&entry) {
                    Ok(()) => entries.push(entry),
                    Err(reason) => {
                        // Archived, not forwarded: the normalised event outgrew the record.
                        let d = DeadLetter {
                            reason: format!("not forwarded to the events stream: {reason}"),
                            data: r.data.clone(),
                            position: e.position.clone(),
                        };
                        self.archive
                            .append_dead_letter(&d.position, &dead_letter_line(&d));
                        c.dead_letters.fetch_add(1, Ordering::Relaxed);
                    }
                }
                self.archive.append(e, share);
            }
        }
        if let Some(index) = &self.shared.changes
            && !changes.is_empty()
        {
            record_changes(index.clone(), changes, self.shared.counters.clone()).await;
        }
        let forwarded = entries.len() as u64;
        self.shared.forward.forward(entries).await?;
        c.forwarded.fetch_add(forwarded, Ordering::Relaxed);
        Ok(())
    }

    fn flush_due(&self) -> bool {
        self.archive.flush_due()
    }

    async fn flush(&mut self) -> Result<(), ProcessError> {
        if self.archive.is_empty() {
            return Ok(());
        }
        let report = self
            .archive
            .flush(self.shared.objects.as_ref())
            .await
            .map_err(|e| ProcessError(e.to_string()))?;
        let c = &self.shared.counters;
        c.archived_rows.fetch_add(report.rows, Ordering::Relaxed);
        c.objects
            .fetch_add(report.keys.len() as u64, Ordering::Relaxed);
        tracing::info!(
            objects = report.keys.len(),
            rows = report.rows,
            dead_letters = report.dead_letters,
            "archive flushed"
        );
        Ok(())
    }
}
