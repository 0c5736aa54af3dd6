//! The detect stage on Kinesis: each record of the events stream is one JSON `Event`; change
//! rules and the statistics engine turn events into findings, forwarded to the decisions
//! stream (one JSON `Finding` per record, partition key = the resource key, or the finding id)
//! before the batch counts as processed. Enrichment and the incident workflow happen in act.
//! Findings are also buffered for the `findings` history table on S3, written at flush, before
//! the shard checkpoints. With learned baselines (the patterns table, see `aiops learn`), each
//! shard's engine starts from them.
//!
//! Each batch is fed to the rules and the statistics in event-time order (stable), as embedded
//! mode feeds a delivery and a backtest reads the history back.
//!
//! State: the statistics engine's open windows live in the shard processor; they are rebuilt
//! from the stream only as far back as the checkpoint, so a worker that dies loses the counts
//! of windows still open (findings of closed windows were already forwarded).

use super::counters::StageCounters;
use super::forward::Forward;
use super::keys::partition_key;
use super::tables::TableBuffer;
use aiops_aws::consumer::{ConsumedRecord, ProcessError, ProcessorFactory, ShardProcessor};
use aiops_aws::kinesis::PutEntry;
use aiops_aws::objects::ObjectStore;
use aiops_core::{Event, Finding};
use aiops_detect::baseline::Baselines;
use aiops_detect::config::StatisticsConfig;
use aiops_detect::engine::StatsEngine;
use aiops_detect::rules::ChangeRules;
use aiops_ingest::archive::ArchiveConfig;
use aiops_ingest::dedup::{DedupConfig, Deduplicator};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// What every detect shard processor shares.
pub struct DetectShared<F, O> {
    /// Where the findings go: the decisions stream, or act in the same process.
    pub forward: F,
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
    /// Where the `findings` table goes.
    pub objects: Arc<O>,
    /// Key prefix of the history.
    pub prefix: String,
    /// Roll-over bounds of the `findings` objects.
    pub archive: ArchiveConfig,
    /// Learned baselines each shard's engine starts from (validated against `statistics`).
    pub baselines: Option<Arc<Baselines>>,
}

/// Creates one [`DetectProcessor`] per shard.
pub struct DetectFactory<F, O>(pub Arc<DetectShared<F, O>>);

impl<F: Forward, O: ObjectStore> ProcessorFactory for DetectFactory<F, O> {
    type Processor = DetectProcessor<F, O>;
    fn create(&self, shard_id: &str) -> DetectProcessor<F, O> {
        let statistics = self.0.statistics.clone();
        let engine = match &self.0.baselines {
            // Validated when loaded; a failure here falls back to an engine without them.
            Some(b) => StatsEngine::with_baselines(statistics.clone(), (**b).clone())
                .unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "learned baselines not used");
                    StatsEngine::new(statistics)
                }),
            None => StatsEngine::new(statistics),
        };
        DetectProcessor {
            findings: TableBuffer::new(&self.0.prefix, shard_id, self.0.archive),
            shared: self.0.clone(),
            dedup: Deduplicator::new(&self.0.dedup).ok(),
            engine: Box::new(engine),
            last_flush: Instant::now(),
        }
    }
}

/// The detect processor of one shard.
pub struct DetectProcessor<F, O> {
    shared: Arc<DetectShared<F, O>>,
    dedup: Option<Deduplicator>,
    engine: Box<StatsEngine>,
    findings: TableBuffer<Finding>,
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

impl<F: Forward, O: ObjectStore> ShardProcessor for DetectProcessor<F, O> {
    async fn process(&mut self, records: Vec<ConsumedRecord>) -> Result<(), ProcessError> {
        let c = &self.shared.counters;
        let mut entries = Vec::new();
        let mut events: Vec<Event> = Vec::with_capacity(records.len());
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
            events.push(event);
        }
        // A batch of the events stream is not in event-time order (several ingest shards and
        // deliveries interleave): fed in event-time order (stable: ties keep their shard
        // order), as embedded mode feeds a delivery and as a backtest reads the history back.
        events.sort_by_key(|e| e.event_time);
        for event in &events {
            let (_, findings) = self.shared.rules.evaluate(event);
            for f in findings.into_iter().chain(self.engine.observe(event)) {
                entries.push(finding_entry(&f)?);
                self.findings.append(f);
            }
        }
        let forwarded = entries.len() as u64;
        self.shared.forward.forward(entries).await?;
        c.findings.fetch_add(forwarded, Ordering::Relaxed);
        c.forwarded.fetch_add(forwarded, Ordering::Relaxed);
        Ok(())
    }

    fn flush_due(&self) -> bool {
        self.last_flush.elapsed() >= self.shared.checkpoint_interval || self.findings.flush_due()
    }

    async fn flush(&mut self) -> Result<(), ProcessError> {
        // Findings were forwarded in `process`; their history rows are written now, before
        // the checkpoint.
        if self.findings.rows() > 0 {
            let keys = self
                .findings
                .flush(self.shared.objects.as_ref())
                .await
                .map_err(|e| ProcessError(e.to_string()))?;
            tracing::info!(objects = keys.len(), "findings table flushed");
        }
        self.last_flush = Instant::now();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aiops_aws::testing::MemoryObjectStore;
    use aiops_core::{CloudTrailFields, EventBody, Position, Principal};
    use std::sync::Mutex;

    /// Keeps what it is given.
    #[derive(Default)]
    struct Kept(Mutex<Vec<PutEntry>>);

    impl Forward for Kept {
        async fn forward(&self, entries: Vec<PutEntry>) -> Result<(), ProcessError> {
            self.0.lock().unwrap().extend(entries);
            Ok(())
        }
    }

    fn record(n: u64, minute: i64) -> ConsumedRecord {
        let t = 1_714_550_400_000_000 + minute * 60_000_000;
        let e = Event {
            event_id: format!("e{n}"),
            event_time: t,
            ingest_time: t,
            decode_warnings: Vec::new(),
            account: Some("111122223333".into()),
            region: Some("us-east-1".into()),
            position: Position::default(),
            body: EventBody::Cloudtrail(Box::new(CloudTrailFields {
                event_source: "s3.amazonaws.com".into(),
                event_name: "GetObject".into(),
                principal: Principal {
                    arn: Some("arn:aws:iam::111122223333:user/alice".into()),
                    ..Principal::default()
                },
                ..CloudTrailFields::default()
            })),
        };
        ConsumedRecord {
            stream: "events".into(),
            shard_id: "shardId-0".into(),
            sequence_number: n.to_string(),
            sub_sequence_number: None,
            partition_key: "k".into(),
            data: serde_json::to_vec(&e).unwrap(),
            approximate_arrival_micros: None,
        }
    }

    #[tokio::test]
    async fn a_batch_is_fed_in_event_time_order_so_no_event_of_it_is_late() {
        let shared = DetectShared {
            forward: Kept::default(),
            rules: ChangeRules::new(&Default::default()).unwrap(),
            statistics: StatisticsConfig::default(),
            dedup: DedupConfig::default(),
            checkpoint_interval: Duration::from_secs(5),
            counters: Arc::default(),
            objects: Arc::new(MemoryObjectStore::new()),
            prefix: "p".into(),
            archive: ArchiveConfig::default(),
            baselines: None,
        };
        let mut p = DetectFactory(Arc::new(shared)).create("shardId-0");
        // Minute 10 arrives before minute 0 in the same batch (two ingest shards interleaved):
        // fed as it arrived, the minute-0 event would be 10 minutes behind the watermark.
        p.process(vec![record(1, 10), record(2, 0), record(3, 5)])
            .await
            .unwrap();
        let c = p.engine.counters();
        assert_eq!(c.events, 3);
        assert_eq!(c.late_events, 0);
        // A later batch is not reordered with this one: an event older than the watermark
        // there is late, as it would be in a backtest's order too.
        p.process(vec![record(4, 1)]).await.unwrap();
        assert_eq!(p.engine.counters().late_events, 1);
    }
}
