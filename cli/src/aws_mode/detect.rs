//! The detect stage on Kinesis: each record of the events stream is one JSON `Event`; change
//! rules and the statistics engine turn events into findings, forwarded to the decisions
//! stream (one JSON `Finding` per record, partition key = the resource key, or the finding id)
//! before the batch counts as processed. Enrichment and the incident workflow happen in act.
//!
//! State: the statistics engine's open windows live in the shard processor; they are rebuilt
//! from the stream only as far back as the checkpoint, so a worker that dies loses the counts
//! of windows still open (findings of closed windows were already forwarded).

use super::counters::StageCounters;
use super::partition_key;
use aiops_aws::consumer::{ConsumedRecord, ProcessError, ProcessorFactory, ShardProcessor};
use aiops_aws::kinesis::{KinesisPort, PutEntry};
use aiops_aws::producer::Producer;
use aiops_core::{Event, Finding};
use aiops_detect::config::StatisticsConfig;
use aiops_detect::engine::StatsEngine;
use aiops_detect::rules::ChangeRules;
use aiops_ingest::dedup::{DedupConfig, Deduplicator};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// What every detect shard processor shares.
pub struct DetectShared<K> {
    /// Writes to the decisions stream.
    pub producer: Producer<K>,
    /// The decisions stream.
    pub decisions_stream: String,
    /// Change rules.
    pub rules: ChangeRules,
    /// Statistics configuration (one engine per shard: a series' events share a shard).
    pub statistics: StatisticsConfig,
    /// De-duplication window by event id (at-least-once delivery from ingest).
    pub dedup: DedupConfig,
    /// Least time between checkpoints.
    pub checkpoint_interval: Duration,
    /// Counters.
    pub counters: Arc<StageCounters>,
}

/// Creates one [`DetectProcessor`] per shard.
pub struct DetectFactory<K>(pub Arc<DetectShared<K>>);

impl<K: KinesisPort> ProcessorFactory for DetectFactory<K> {
    type Processor = DetectProcessor<K>;
    fn create(&self, _shard_id: &str) -> DetectProcessor<K> {
        DetectProcessor {
            shared: self.0.clone(),
            dedup: Deduplicator::new(&self.0.dedup).ok(),
            engine: Box::new(StatsEngine::new(self.0.statistics.clone())),
            last_flush: Instant::now(),
        }
    }
}

/// The detect processor of one shard.
pub struct DetectProcessor<K> {
    shared: Arc<DetectShared<K>>,
    dedup: Option<Deduplicator>,
    engine: Box<StatsEngine>,
    last_flush: Instant,
}

/// The decisions-stream record of a finding.
pub fn finding_entry(f: &Finding) -> Result<PutEntry, ProcessError> {
    let key = match &f.resource {
        Some(r) => r.key(),
        None => f.finding_id.clone(),
    };
    Ok(PutEntry {
        partition_key: partition_key(&key),
        data: serde_json::to_vec(f)
            .map_err(|e| ProcessError(format!("cannot serialise finding: {e}")))?,
    })
}

impl<K: KinesisPort> ShardProcessor for DetectProcessor<K> {
    async fn process(&mut self, records: Vec<ConsumedRecord>) -> Result<(), ProcessError> {
        let c = &self.shared.counters;
        let mut entries = Vec::new();
        for r in records {
            c.records.fetch_add(1, Ordering::Relaxed);
            let event: Event = match serde_json::from_slice(&r.data) {
                Ok(e) => e,
                Err(e) => {
                    c.bad_records.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(shard = %r.shard_id, sequence_number = %r.sequence_number, error = %e, "events stream record is not an Event; skipped");
                    continue;
                }
            };
            c.events.fetch_add(1, Ordering::Relaxed);
            if self
                .dedup
                .as_mut()
                .is_some_and(|d| d.is_duplicate(&event.event_id, event.event_time))
            {
                c.duplicates.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let (_, findings) = self.shared.rules.evaluate(&event);
            for f in findings.into_iter().chain(self.engine.observe(&event)) {
                entries.push(finding_entry(&f)?);
            }
        }
        if !entries.is_empty() {
            self.shared
                .producer
                .put_all(&self.shared.decisions_stream, &entries)
                .await
                .map_err(|e| ProcessError(e.to_string()))?;
            c.findings
                .fetch_add(entries.len() as u64, Ordering::Relaxed);
            c.forwarded
                .fetch_add(entries.len() as u64, Ordering::Relaxed);
        }
        Ok(())
    }

    fn flush_due(&self) -> bool {
        self.last_flush.elapsed() >= self.shared.checkpoint_interval
    }

    async fn flush(&mut self) -> Result<(), ProcessError> {
        // Findings were forwarded in `process`; nothing is buffered.
        self.last_flush = Instant::now();
        Ok(())
    }
}
