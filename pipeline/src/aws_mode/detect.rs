//! The detect stage on Kinesis: each record of the events stream is one JSON `Event`; change
//! rules and the statistics engine turn events into findings, forwarded to the decisions
//! stream (one JSON `Finding` per record, partition key = the resource key, or the finding id)
//! before the batch counts as processed. Enrichment and the incident workflow happen in act,
//! which also writes the `findings` history table (each finding with act's verdict: suppressed
//! or not). With learned baselines (the patterns table, see `aiops learn`), each
//! shard's engine starts from them.
//!
//! Each batch is fed to the rules and the statistics in event-time order (stable), as embedded
//! mode feeds a delivery and a backtest reads the history back.
//!
//! State (`[aws.detect_state]`, see [`super::snapshot`]): the statistics engine (open windows,
//! series models, template dictionaries, watermark) and the de-duplication window live in the
//! shard processor, and are saved to S3 at each flush, before the checkpoint: the saved state
//! covers exactly the records read so far. A processor that takes the shard (after a crash, a
//! lease move or a restart) restores the state and reads on after the position it covers, so
//! an event is counted once: never lost with a dead worker, never counted twice.
//! - the state is ahead of the checkpoint (the worker died between the two writes): reading
//!   starts after the state's position; the records in between were fed and their findings
//!   forwarded before the state was written;
//! - the state is behind the checkpoint (an older object, e.g. written late by a worker that
//!   had lost its lease): reading starts after the state's position, the records up to the
//!   checkpoint are fed again and their findings, forwarded before, are not forwarded again;
//! - no state, a marker of a state too large to save, or a state refused (corrupt, of another
//!   version, configuration, stream or shard): logged and counted, the engine starts cold
//!   from the checkpoint, as without saved state. A read that fails (S3 unreachable) fails the
//!   shard, which is tried again, rather than starting cold.
//!
//! Without saved state (`enabled = false`, and the single profile, whose one detect processor
//! is shared by every raw shard), a worker that dies loses the counts of the windows still
//! open (findings of closed windows were already forwarded).

use super::counters::StageCounters;
use super::forward::Forward;
use super::keys::partition_key;
use super::snapshot::{self, Header, Position, STATE_FORMAT, STATE_VERSION, StateError};
use aiops_aws::consumer::{ConsumedRecord, ProcessError, ProcessorFactory, ShardProcessor};
use aiops_aws::kinesis::PutEntry;
use aiops_aws::lease::Checkpoint;
use aiops_aws::objects::ObjectStore;
use aiops_core::{Event, Finding};
use aiops_detect::baseline::Baselines;
use aiops_detect::config::StatisticsConfig;
use aiops_detect::engine::StatsEngine;
use aiops_detect::rules::ChangeRules;
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
    /// Where the engine state goes (`[aws.detect_state]`).
    pub objects: Arc<O>,
    /// Key prefix of the history.
    pub prefix: String,
    /// Learned baselines each shard's engine starts from (validated against `statistics`).
    pub baselines: Option<Arc<Baselines>>,
    /// Where and how often each shard saves its engine state (`None`: in memory only).
    pub state: Option<StateSettings>,
}

/// How detect saves its state (`[aws.detect_state]`).
#[derive(Debug, Clone)]
pub struct StateSettings {
    /// The stream read (part of the object key).
    pub stream: String,
    /// Least time between two snapshots (and checkpoints) of a shard.
    pub interval: Duration,
    /// Largest snapshot, compressed bytes.
    pub max_bytes: u64,
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
            shared: self.0.clone(),
            dedup: Deduplicator::new(&self.0.dedup).ok(),
            engine: Box::new(engine),
            last_flush: Instant::now(),
            shard_id: shard_id.to_string(),
            position: None,
            saved: None,
            replay_through: None,
        }
    }
}

/// The detect processor of one shard.
pub struct DetectProcessor<F, O> {
    shared: Arc<DetectShared<F, O>>,
    dedup: Option<Deduplicator>,
    engine: Box<StatsEngine>,
    last_flush: Instant,
    shard_id: String,
    /// The last record fed to the engine.
    position: Option<Position>,
    /// The position of the state last saved or restored.
    saved: Option<Position>,
    /// Records at or before this position are read again after a restore from a state
    /// behind the checkpoint: fed to the engine, their findings not forwarded again.
    replay_through: Option<Position>,
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
        let mut events: Vec<(Event, bool)> = Vec::with_capacity(records.len());
        if let Some(last) = records.last() {
            self.position = Some(Position::of(
                &last.sequence_number,
                last.sub_sequence_number,
            ));
        }
        for r in records {
            c.records.fetch_add(1, Ordering::Relaxed);
            let replayed = self.replay_through.as_ref().is_some_and(|p| {
                p.covers(&Position::of(&r.sequence_number, r.sub_sequence_number))
            });
            if replayed {
                c.replayed_records.fetch_add(1, Ordering::Relaxed);
            }
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
            events.push((event, replayed));
        }
        if let (Some(through), Some(pos)) = (&self.replay_through, &self.position)
            && !through.covers(pos)
        {
            self.replay_through = None;
        }
        // A batch of the events stream is not in event-time order (several ingest shards and
        // deliveries interleave): fed in event-time order (stable: ties keep their shard
        // order), as embedded mode feeds a delivery and as a backtest reads the history back.
        events.sort_by_key(|(e, _)| e.event_time);
        for (event, replayed) in &events {
            let (_, findings) = self.shared.rules.evaluate(event);
            for f in findings.into_iter().chain(self.engine.observe(event)) {
                if *replayed {
                    // Forwarded before the checkpoint this record is behind.
                    continue;
                }
                entries.push(finding_entry(&f)?);
            }
        }
        let forwarded = entries.len() as u64;
        self.shared.forward.forward(entries).await?;
        c.findings.fetch_add(forwarded, Ordering::Relaxed);
        c.forwarded.fetch_add(forwarded, Ordering::Relaxed);
        Ok(())
    }

    fn flush_due(&self) -> bool {
        let interval = match &self.shared.state {
            Some(s) => s.interval,
            None => self.shared.checkpoint_interval,
        };
        self.last_flush.elapsed() >= interval
    }

    async fn flush(&mut self) -> Result<(), ProcessError> {
        // Findings were forwarded in `process` (act records them in the findings table); the
        // state covering every record read is saved now: the checkpoint follows it.
        self.save_state().await?;
        self.last_flush = Instant::now();
        Ok(())
    }

    async fn resume(
        &mut self,
        checkpoint: &Checkpoint,
    ) -> Result<Option<Checkpoint>, ProcessError> {
        self.restore_state(checkpoint).await
    }
}

impl<F: Forward, O: ObjectStore> DetectProcessor<F, O> {
    fn state_key(&self, s: &StateSettings) -> String {
        snapshot::state_key(&self.shared.prefix, &s.stream, &self.shard_id)
    }

    /// Saves the state covering `self.position` (nothing when nothing was read since the last
    /// one). A state too large is replaced by a marker, so a restart starts cold rather than
    /// from an older state.
    async fn save_state(&mut self) -> Result<(), ProcessError> {
        let Some(s) = &self.shared.state else {
            return Ok(());
        };
        let Some(position) = self.position.clone() else {
            return Ok(());
        };
        if self.saved.as_ref() == Some(&position) {
            return Ok(());
        }
        let c = &self.shared.counters;
        let mut header = Header {
            format: STATE_FORMAT.into(),
            version: STATE_VERSION,
            stream: s.stream.clone(),
            shard: self.shard_id.clone(),
            position: position.clone(),
            written_at: aiops_core::time::now_micros(),
            engine: true,
            omitted: None,
        };
        let key = self.state_key(s);
        let body = match snapshot::encode(
            &header,
            self.dedup.as_ref(),
            Some(&self.engine),
            s.max_bytes,
        ) {
            Ok(b) => b,
            Err(e @ StateError::TooLarge { .. }) => {
                c.state_too_large.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(key = %key, error = %e, "detect state not saved (a restart of this shard starts cold); raise [aws.detect_state] max_bytes or lower [detect.statistics] max_series");
                header.engine = false;
                header.omitted = Some(e.to_string());
                snapshot::encode(&header, None, None, s.max_bytes)
                    .map_err(|e| ProcessError(e.to_string()))?
            }
            Err(e) => return Err(ProcessError(e.to_string())),
        };
        let bytes = body.len();
        self.shared
            .objects
            .put(&key, body, "application/gzip")
            .await
            .map_err(|e| ProcessError(format!("cannot save the detect state: {e}")))?;
        c.state_saved.fetch_add(1, Ordering::Relaxed);
        tracing::info!(key = %key, bytes, sequence_number = %position.sequence_number, "detect state saved");
        self.saved = Some(position);
        Ok(())
    }

    /// Restores the shard's saved state, if any, and answers where reading starts (see the
    /// module documentation).
    async fn restore_state(
        &mut self,
        checkpoint: &Checkpoint,
    ) -> Result<Option<Checkpoint>, ProcessError> {
        let Some(s) = &self.shared.state else {
            return Ok(None);
        };
        let c = &self.shared.counters;
        let key = self.state_key(s);
        let body = match self.shared.objects.get(&key).await {
            Ok(Some(b)) => b,
            Ok(None) => {
                c.state_missing.fetch_add(1, Ordering::Relaxed);
                tracing::info!(key = %key, checkpoint = ?checkpoint, "no saved detect state; the engine starts cold");
                return Ok(None);
            }
            Err(e) => {
                return Err(ProcessError(format!("cannot read the detect state: {e}")));
            }
        };
        let restored = match snapshot::decode(
            &body,
            &s.stream,
            &self.shard_id,
            &self.shared.statistics,
            Some(&self.shared.dedup),
            s.max_bytes,
        ) {
            Ok(r) => r,
            Err(e) => {
                c.state_refused.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(key = %key, error = %e, "saved detect state refused; the engine starts cold");
                return Ok(None);
            }
        };
        let position = restored.header.position;
        let Some(engine) = restored.engine else {
            c.state_missing.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(key = %key, omitted = ?restored.header.omitted, "the last detect state was not saved; the engine starts cold");
            return Ok(None);
        };
        let behind = match Position::of_checkpoint(checkpoint) {
            Some(cp) => match position.compare(&cp) {
                Some(std::cmp::Ordering::Less) => Some(cp),
                Some(_) => None,
                None => {
                    c.state_refused.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(key = %key, "saved detect state or checkpoint has a sequence number that is not a number; the engine starts cold");
                    return Ok(None);
                }
            },
            None => None,
        };
        *self.engine = engine;
        if let Some(d) = restored.dedup {
            self.dedup = Some(d);
        }
        self.position = Some(position.clone());
        self.saved = Some(position.clone());
        self.replay_through = behind;
        c.state_restored.fetch_add(1, Ordering::Relaxed);
        let e = self.engine.counters();
        tracing::info!(key = %key, sequence_number = %position.sequence_number, checkpoint = ?checkpoint, replay_through = ?self.replay_through, events = e.events, series = e.series_tracked, watermark = ?e.watermark, "detect state restored; reading after its position");
        Ok(Some(position.checkpoint()))
    }
}

#[cfg(test)]
#[path = "detect_state_tests.rs"]
mod state_tests;

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
            baselines: None,
            state: None,
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
