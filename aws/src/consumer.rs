//! The polling Kinesis consumer: one task per leased shard, reading with `GetRecords` within
//! the per-shard limits, de-aggregating KPL records, handing them to a [`ShardProcessor`],
//! and checkpointing only after the processor made its products durable.
//!
//! Per shard (Amazon Kinesis Data Streams Developer Guide, "Quotas and limits" and
//! "Troubleshooting Kinesis Data Streams consumers",
//! <https://docs.aws.amazon.com/streams/latest/dev/service-sizes-and-limits.html>):
//! - at most 5 `GetRecords` calls per second (`min_call_interval_ms`, default 200), and a
//!   pause of `idle_sleep_ms` when a call returns nothing or the consumer is caught up;
//! - `ProvisionedThroughputExceededException` and transient errors: exponential backoff with
//!   full jitter, then the same call again;
//! - an iterator is valid for 5 minutes: when one expires (or before, when the previous call
//!   was `iterator_refresh_secs` ago, e.g. after a slow flush), a new one is requested
//!   `AFTER_SEQUENCE_NUMBER` of the last record handed to the processor (never `LATEST` nor
//!   `TRIM_HORIZON` once a record was read);
//! - a shard ends only when `NextShardIterator` is absent: then the processor flushes and the
//!   checkpoint `SHARD_END` is written; children start only after all their parents ended
//!   (or aged out of the stream: see [`crate::coordinator`]);
//! - a shard whose `GetShardIterator` answers `ResourceNotFoundException` while the last
//!   `ListShards` answer lacks it aged out of the stream's retention period: nothing more can
//!   be read from it, so it is checkpointed `SHARD_END` (logged as a loss) and its children go on.
//!
//! Resuming: a checkpoint `(sequence number, no sub-sequence)` restarts
//! `AFTER_SEQUENCE_NUMBER`; a checkpoint inside a KPL aggregate `(sequence number, k)` restarts
//! `AT_SEQUENCE_NUMBER` and skips user records `0..=k` of that record (as the KCL does).

use crate::backoff::{Backoff, BackoffConfig};
use crate::coordinator::{
    CheckpointResult, InitialPosition, LeaseConfig, LeaseCoordinator, LeaseHandle,
};
use crate::kinesis::{IteratorStart, KinesisError, KinesisPort, RecordsPage, SequenceNumber};
use crate::lease::{Checkpoint, LeaseError, LeaseStore};
use aiops_core::metrics::{Registry, Unit, dimensions, names};
use aiops_ingest::decode::kpl::deaggregate;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use thiserror::Error;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::{Duration, Instant};

/// Consumer settings (`[aws.consumer]`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsumerConfig {
    /// `Limit` of each `GetRecords` call, 1..=10000. Default 10,000.
    pub max_records_per_call: i32,
    /// Least time between two `GetRecords` calls on one shard, milliseconds (200: the
    /// 5 calls per second per shard limit). Default 200.
    pub min_call_interval_ms: u64,
    /// Pause after a call that returned no record or was caught up, milliseconds.
    /// Default 1,000.
    pub idle_sleep_ms: u64,
    /// Get a fresh iterator when the last one was obtained this long ago (iterators expire
    /// after 300 s), seconds. Default 240.
    pub iterator_refresh_secs: u64,
    /// Where a shard without checkpoint starts. Default `trim_horizon`.
    pub initial_position: InitialPosition,
    /// Backoff on throttled or failed reads (`max_attempts` is ignored: reads never give up).
    pub read_backoff: BackoffConfig,
    /// Attempts to write a checkpoint before the shard gives up its lease. Default 5.
    pub checkpoint_attempts: u32,
    /// How often a shard waiting for its parents checks them, milliseconds. Default 2,000.
    pub parent_poll_ms: u64,
    /// How long a stopping worker waits for its shards to flush and checkpoint, seconds.
    /// Default 60.
    pub shutdown_timeout_secs: u64,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            max_records_per_call: 10_000,
            min_call_interval_ms: 200,
            idle_sleep_ms: 1_000,
            iterator_refresh_secs: 240,
            initial_position: InitialPosition::TrimHorizon,
            read_backoff: BackoffConfig {
                base_ms: 200,
                max_ms: 10_000,
                max_attempts: 0,
            },
            checkpoint_attempts: 5,
            parent_poll_ms: 2_000,
            shutdown_timeout_secs: 60,
        }
    }
}

impl ConsumerConfig {
    /// Checks the ranges.
    ///
    /// # Errors
    /// A message naming the field.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=10_000).contains(&self.max_records_per_call) {
            return Err("max_records_per_call: must be between 1 and 10000".into());
        }
        if self.min_call_interval_ms < 200 {
            return Err(
                "min_call_interval_ms: must be at least 200 (5 GetRecords calls per second per shard)"
                    .into(),
            );
        }
        if self.idle_sleep_ms == 0 || self.idle_sleep_ms > 60_000 {
            return Err("idle_sleep_ms: must be between 1 and 60000".into());
        }
        if self.iterator_refresh_secs == 0 || self.iterator_refresh_secs >= 300 {
            return Err(
                "iterator_refresh_secs: must be between 1 and 299 (iterators expire after 300 s)"
                    .into(),
            );
        }
        self.read_backoff
            .validate()
            .map_err(|e| format!("read_backoff.{e}"))?;
        if self.checkpoint_attempts == 0 || self.checkpoint_attempts > 100 {
            return Err("checkpoint_attempts: must be between 1 and 100".into());
        }
        if self.parent_poll_ms == 0 {
            return Err("parent_poll_ms: must be at least 1".into());
        }
        if self.shutdown_timeout_secs == 0 {
            return Err("shutdown_timeout_secs: must be at least 1".into());
        }
        Ok(())
    }
}

/// One user record handed to a processor: a plain Kinesis record, or one user record of a
/// KPL aggregate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumedRecord {
    /// Stream name.
    pub stream: String,
    /// Shard id.
    pub shard_id: String,
    /// The Kinesis record's sequence number.
    pub sequence_number: String,
    /// Index inside a KPL aggregate; `None` for a plain record.
    pub sub_sequence_number: Option<u64>,
    /// Partition key (the user record's, for an aggregate).
    pub partition_key: String,
    /// Data.
    pub data: Vec<u8>,
    /// Approximate arrival time: microseconds since the Unix epoch, UTC.
    pub approximate_arrival_micros: Option<i64>,
}

/// A processor failure: the shard stops without checkpointing and its lease is released, so
/// the records are read again (by this worker or another).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("{0}")]
pub struct ProcessError(pub String);

/// What a stage does with the records of one shard.
pub trait ShardProcessor: Send + 'static {
    /// Handles one batch of records, in shard order. Products may stay buffered until
    /// [`ShardProcessor::flush`].
    fn process(
        &mut self,
        records: Vec<ConsumedRecord>,
    ) -> impl Future<Output = Result<(), ProcessError>> + Send;

    /// Whether buffered products should be made durable now (size or age).
    fn flush_due(&self) -> bool;

    /// Makes every product of the records processed so far durable; a checkpoint follows.
    fn flush(&mut self) -> impl Future<Output = Result<(), ProcessError>> + Send;

    /// Called once before the first read of a shard, with its stored `checkpoint` (never
    /// `SHARD_END`): a processor that restores saved state (detect's engine snapshot) answers
    /// where reading must start instead, the position its state covers; `None` (the default)
    /// starts after the checkpoint. A processor that answers a position before the checkpoint
    /// sees those records again and must not repeat their products.
    ///
    /// # Errors
    /// A [`ProcessError`] fails the shard (its lease is released; it is tried again).
    fn resume(
        &mut self,
        checkpoint: &Checkpoint,
    ) -> impl Future<Output = Result<Option<Checkpoint>, ProcessError>> + Send {
        let _ = checkpoint;
        async { Ok(None) }
    }
}

/// Creates one processor per shard.
pub trait ProcessorFactory: Send + Sync + 'static {
    /// The processor type.
    type Processor: ShardProcessor;
    /// A processor for a shard.
    fn create(&self, shard_id: &str) -> Self::Processor;
}

/// Counters of a worker (monotonic).
#[derive(Debug, Default)]
pub struct ConsumerStats {
    /// `GetRecords` calls.
    pub get_records_calls: AtomicU64,
    /// `GetShardIterator` calls.
    pub iterator_requests: AtomicU64,
    /// Kinesis records read.
    pub records: AtomicU64,
    /// User records handed to processors.
    pub user_records: AtomicU64,
    /// `ExpiredIteratorException` seen.
    pub expired_iterators: AtomicU64,
    /// Throttled or failed reads retried.
    pub read_retries: AtomicU64,
    /// Checkpoints written.
    pub checkpoints: AtomicU64,
    /// Shards processed to their end.
    pub shards_ended: AtomicU64,
    /// Leases lost while processing.
    pub leases_lost: AtomicU64,
    /// Shard tasks that failed (processor or fatal Kinesis error).
    pub shard_failures: AtomicU64,
    /// Leases deleted by the lease cleanup (finished or aged out, every child started).
    pub leases_removed: AtomicU64,
}

/// Why a shard task ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardExit {
    /// The shard is closed and fully processed (`SHARD_END` written).
    Ended,
    /// The worker is stopping; everything read was flushed and checkpointed.
    Stopped,
    /// The lease was lost; nothing more was checkpointed.
    LeaseLost,
}

/// Errors of a shard task.
#[derive(Debug, Error)]
pub enum ConsumerError {
    /// A non-retryable Kinesis error.
    #[error("shard {shard_id}: {error}")]
    Kinesis {
        /// Shard.
        shard_id: String,
        /// The error.
        error: KinesisError,
    },
    /// The processor failed.
    #[error("shard {shard_id}: processing failed: {error}")]
    Process {
        /// Shard.
        shard_id: String,
        /// The error.
        error: ProcessError,
    },
    /// The lease table failed repeatedly.
    #[error("shard {shard_id}: {error}")]
    Lease {
        /// Shard.
        shard_id: String,
        /// The error.
        error: LeaseError,
    },
    /// A record with a sequence number that is not decimal digits.
    #[error("shard {shard_id}: record sequence number {sequence_number:?} is not a decimal number")]
    BadSequenceNumber {
        /// Shard.
        shard_id: String,
        /// The value.
        sequence_number: String,
    },
}

/// Sleeps for `d` unless `stop` turns true first; returns whether stop was requested.
pub async fn sleep_or_stop(d: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    if *stop.borrow() {
        return true;
    }
    let sender_gone = tokio::select! {
        _ = tokio::time::sleep(d) => false,
        r = stop.wait_for(|v| *v) => r.is_err(),
    };
    if sender_gone {
        // Nobody can ask for a stop any more: just sleep.
        tokio::time::sleep(d).await;
    }
    *stop.borrow()
}

/// Splits a page's records into user records (KPL de-aggregation), dropping those at or
/// before `skip_through` (sequence number, sub-sequence number).
///
/// # Errors
/// [`ConsumerError::BadSequenceNumber`] for a record whose sequence number is not decimal.
pub fn user_records(
    stream: &str,
    shard_id: &str,
    page: &RecordsPage,
    skip_through: Option<&(SequenceNumber, u64)>,
) -> Result<Vec<ConsumedRecord>, ConsumerError> {
    let mut out = Vec::with_capacity(page.records.len());
    for r in &page.records {
        let seq = SequenceNumber::parse(&r.sequence_number).ok_or_else(|| {
            ConsumerError::BadSequenceNumber {
                shard_id: shard_id.to_string(),
                sequence_number: r.sequence_number.clone(),
            }
        })?;
        let skip_sub = match skip_through {
            Some((s, sub)) if *s == seq => Some(*sub),
            Some((s, _)) if seq < *s => continue,
            _ => None,
        };
        match deaggregate(&r.data) {
            Ok(users) if !users.is_empty() => {
                for u in users {
                    if skip_sub.is_some_and(|k| u.sub_sequence_number <= k) {
                        continue;
                    }
                    out.push(ConsumedRecord {
                        stream: stream.to_string(),
                        shard_id: shard_id.to_string(),
                        sequence_number: r.sequence_number.clone(),
                        sub_sequence_number: Some(u.sub_sequence_number),
                        partition_key: u.partition_key.to_string(),
                        data: u.data.to_vec(),
                        approximate_arrival_micros: r.approximate_arrival_micros,
                    });
                }
            }
            _ => {
                if skip_sub.is_some() {
                    // A plain record at the checkpoint's sequence number: already processed.
                    continue;
                }
                out.push(ConsumedRecord {
                    stream: stream.to_string(),
                    shard_id: shard_id.to_string(),
                    sequence_number: r.sequence_number.clone(),
                    sub_sequence_number: None,
                    partition_key: r.partition_key.clone(),
                    data: r.data.clone(),
                    approximate_arrival_micros: r.approximate_arrival_micros,
                });
            }
        }
    }
    Ok(out)
}

/// Everything one shard task needs.
pub struct ShardContext<K, S> {
    /// Kinesis.
    pub kinesis: Arc<K>,
    /// The lease coordinator.
    pub leases: Arc<LeaseCoordinator<S>>,
    /// Stream name.
    pub stream: String,
    /// Settings.
    pub config: ConsumerConfig,
    /// Counters.
    pub stats: Arc<ConsumerStats>,
    /// Shard ids listed by the last shard sync (for parents trimmed past retention).
    pub listed_shards: Arc<std::sync::Mutex<HashSet<String>>>,
    /// Where the consumer records its metrics (`None`: none). Per shard (dimensions `Stage`,
    /// `ShardId`): the gauges `MillisBehindLatest` (of every `GetRecords` answer) and
    /// `CheckpointAge` (milliseconds since the shard's last checkpoint, or since its consumer
    /// started); per stage: `MillisBehindLatest` (the highest of its shards since the last
    /// flush), the counter `RecordsIn` (user records handed to the processor),
    /// the distribution `BatchLatency` (milliseconds in [`ShardProcessor::process`] per
    /// batch) and the counter `Errors` (shard tasks that failed).
    pub metrics: Option<Arc<Registry>>,
}

impl<K, S> Clone for ShardContext<K, S> {
    fn clone(&self) -> Self {
        ShardContext {
            kinesis: self.kinesis.clone(),
            leases: self.leases.clone(),
            stream: self.stream.clone(),
            config: self.config,
            stats: self.stats.clone(),
            listed_shards: self.listed_shards.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

struct ShardRun<'a, K, S, P> {
    ctx: &'a ShardContext<K, S>,
    lease: &'a LeaseHandle,
    processor: &'a mut P,
    stop: watch::Receiver<bool>,
    backoff: Backoff,
    /// Last record handed to the processor (sequence number, sub-sequence number).
    last_read: Option<(String, Option<u64>)>,
    /// Records handed to the processor since the last checkpoint.
    unflushed: bool,
    /// `GetShardIterator` answered `ResourceNotFoundException` for a shard absent from the
    /// last listing: it aged out of the stream's retention period.
    aged_out: bool,
    /// When the last checkpoint was written (or the consumer started).
    last_checkpoint_at: Instant,
}

impl<K: KinesisPort, S: LeaseStore, P: ShardProcessor> ShardRun<'_, K, S, P> {
    fn err_kinesis(&self, error: KinesisError) -> ConsumerError {
        ConsumerError::Kinesis {
            shard_id: self.lease.shard_id.clone(),
            error,
        }
    }

    /// A new iterator at `start`, retrying throttling with backoff.
    async fn iterator(&mut self, start: &IteratorStart) -> Result<Option<String>, ConsumerError> {
        loop {
            if *self.stop.borrow() {
                return Ok(None);
            }
            self.ctx
                .stats
                .iterator_requests
                .fetch_add(1, Ordering::Relaxed);
            match self
                .ctx
                .kinesis
                .get_shard_iterator(&self.ctx.stream, &self.lease.shard_id, start)
                .await
            {
                Ok(it) => {
                    self.backoff.reset();
                    return Ok(Some(it));
                }
                Err(KinesisError::NotFound(msg)) if self.absent_from_listing() => {
                    tracing::warn!(shard = %self.lease.shard_id, error = %msg, "the shard aged out of the stream before it was read to its end; records after the checkpoint are lost to retention");
                    self.aged_out = true;
                    return Ok(None);
                }
                Err(e) if e.is_retryable() => {
                    self.ctx.stats.read_retries.fetch_add(1, Ordering::Relaxed);
                    let d = self.backoff.next_delay().unwrap_or(Duration::from_secs(10));
                    tracing::debug!(shard = %self.lease.shard_id, error = %e, delay_ms = d.as_millis() as u64, "GetShardIterator retry");
                    sleep_or_stop(d, &mut self.stop).await;
                }
                Err(e) => return Err(self.err_kinesis(e)),
            }
        }
    }

    /// Flushes the processor and writes `checkpoint`, retrying the write.
    async fn flush_and_checkpoint(
        &mut self,
        checkpoint: Checkpoint,
    ) -> Result<CheckpointResult, ConsumerError> {
        self.processor
            .flush()
            .await
            .map_err(|error| ConsumerError::Process {
                shard_id: self.lease.shard_id.clone(),
                error,
            })?;
        let mut attempts = 0;
        let mut backoff = Backoff::new(BackoffConfig {
            base_ms: 100,
            max_ms: 2_000,
            max_attempts: self.ctx.config.checkpoint_attempts,
        });
        loop {
            attempts += 1;
            match self
                .ctx
                .leases
                .checkpoint(&self.lease.key, checkpoint.clone())
                .await
            {
                Ok(r) => {
                    if r == CheckpointResult::Written {
                        self.ctx.stats.checkpoints.fetch_add(1, Ordering::Relaxed);
                        self.unflushed = false;
                        self.last_checkpoint_at = Instant::now();
                        self.shard_gauge(names::CHECKPOINT_AGE, 0.0);
                    }
                    return Ok(r);
                }
                Err(error) => match backoff.next_delay() {
                    Some(d) => {
                        tracing::warn!(lease = %self.lease.key, attempts, error = %error, "checkpoint failed; retrying");
                        tokio::time::sleep(d).await;
                    }
                    None => {
                        return Err(ConsumerError::Lease {
                            shard_id: self.lease.shard_id.clone(),
                            error,
                        });
                    }
                },
            }
        }
    }

    fn last_checkpoint(&self) -> Option<Checkpoint> {
        self.last_read
            .as_ref()
            .map(|(seq, sub)| Checkpoint::Sequence {
                sequence_number: seq.clone(),
                sub_sequence_number: *sub,
            })
    }

    /// Sets a per-shard gauge (milliseconds), if metrics are recorded.
    fn shard_gauge(&self, name: &str, value: f64) {
        if let Some(m) = &self.ctx.metrics {
            let dims = [(dimensions::SHARD_ID, self.lease.shard_id.as_str())];
            if let Err(e) = m.set_with(name, Unit::Milliseconds, &dims, value) {
                tracing::debug!(error = %e, "metric refused");
            }
        }
    }

    /// Whether the last shard listing is known (non-empty) and lacks this shard.
    fn absent_from_listing(&self) -> bool {
        self.ctx
            .listed_shards
            .lock()
            .map(|l| !l.is_empty() && !l.contains(&self.lease.shard_id))
            .unwrap_or(false)
    }

    /// No iterator was obtained: the shard aged out (flush, checkpoint `SHARD_END`: nothing
    /// more can be read from it, and its children may start), or a stop was requested.
    async fn finish_without_iterator(&mut self) -> Result<ShardExit, ConsumerError> {
        if !self.aged_out {
            return self.finish_stopped().await;
        }
        if self.flush_and_checkpoint(Checkpoint::ShardEnd).await? == CheckpointResult::LeaseLost {
            self.ctx.stats.leases_lost.fetch_add(1, Ordering::Relaxed);
            return Ok(ShardExit::LeaseLost);
        }
        self.ctx.stats.shards_ended.fetch_add(1, Ordering::Relaxed);
        Ok(ShardExit::Ended)
    }

    /// Stop requested: flush and checkpoint what was read, if anything.
    async fn finish_stopped(&mut self) -> Result<ShardExit, ConsumerError> {
        if self.unflushed
            && let Some(cp) = self.last_checkpoint()
            && self.flush_and_checkpoint(cp).await? == CheckpointResult::LeaseLost
        {
            return Ok(ShardExit::LeaseLost);
        }
        Ok(ShardExit::Stopped)
    }

    async fn run(&mut self) -> Result<ShardExit, ConsumerError> {
        // Children wait for their parents, unless they already started (then their parents
        // finished, and their leases may have been cleaned up since).
        if !self.lease.parent_shard_ids.is_empty()
            && !crate::coordinator::has_started(&self.lease.checkpoint)
        {
            loop {
                if *self.stop.borrow() {
                    return Ok(ShardExit::Stopped);
                }
                if self.lease.is_lost() || !self.ctx.leases.is_valid(&self.lease.key).await {
                    return Ok(ShardExit::LeaseLost);
                }
                let listed = self
                    .ctx
                    .listed_shards
                    .lock()
                    .map(|l| l.clone())
                    .unwrap_or_default();
                match self
                    .ctx
                    .leases
                    .parents_finished(&self.lease.parent_shard_ids, &listed)
                    .await
                {
                    Ok(true) => break,
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(lease = %self.lease.key, error = %e, "cannot read parent leases")
                    }
                }
                let d = Duration::from_millis(self.ctx.config.parent_poll_ms);
                if sleep_or_stop(d, &mut self.stop).await {
                    return Ok(ShardExit::Stopped);
                }
            }
        }
        // The checkpoint as stored now (the lease may have been stolen while waiting).
        let checkpoint = match self.ctx.leases.verify(&self.lease.key).await {
            Ok(Some(cp)) => cp,
            Ok(None) => {
                self.ctx.stats.leases_lost.fetch_add(1, Ordering::Relaxed);
                return Ok(ShardExit::LeaseLost);
            }
            Err(error) => {
                return Err(ConsumerError::Lease {
                    shard_id: self.lease.shard_id.clone(),
                    error,
                });
            }
        };
        if checkpoint == Checkpoint::ShardEnd {
            return Ok(ShardExit::Ended);
        }
        // A processor with saved state says where its state ends.
        let checkpoint = match self.processor.resume(&checkpoint).await {
            Ok(Some(start)) if start != Checkpoint::ShardEnd => {
                tracing::info!(shard = %self.lease.shard_id, checkpoint = ?checkpoint, start = ?start, "reading from the position of the processor's saved state");
                start
            }
            Ok(_) => checkpoint,
            Err(error) => {
                return Err(ConsumerError::Process {
                    shard_id: self.lease.shard_id.clone(),
                    error,
                });
            }
        };
        let mut skip_through: Option<(SequenceNumber, u64)> = None;
        let first_start = match &checkpoint {
            Checkpoint::ShardEnd => return Ok(ShardExit::Ended),
            Checkpoint::TrimHorizon => IteratorStart::TrimHorizon,
            Checkpoint::Latest => IteratorStart::Latest,
            Checkpoint::Sequence {
                sequence_number,
                sub_sequence_number: None,
            } => IteratorStart::AfterSequenceNumber(sequence_number.clone()),
            Checkpoint::Sequence {
                sequence_number,
                sub_sequence_number: Some(sub),
            } => {
                let seq = SequenceNumber::parse(sequence_number).ok_or_else(|| {
                    ConsumerError::BadSequenceNumber {
                        shard_id: self.lease.shard_id.clone(),
                        sequence_number: sequence_number.clone(),
                    }
                })?;
                skip_through = Some((seq, *sub));
                IteratorStart::AtSequenceNumber(sequence_number.clone())
            }
        };
        // Before any record is read, an expired iterator restarts where the first one did;
        // `LATEST` becomes "at the time the first iterator was taken", so nothing put in
        // between is skipped.
        let restart_before_reading = match &first_start {
            IteratorStart::Latest => IteratorStart::AtTimestamp(aiops_core::time::now_micros()),
            other => other.clone(),
        };
        let Some(mut iterator) = self.iterator(&first_start).await? else {
            return self.finish_without_iterator().await;
        };
        let mut iterator_taken = Instant::now();
        let mut last_call: Option<Instant> = None;
        let min_interval = Duration::from_millis(self.ctx.config.min_call_interval_ms);
        let refresh = Duration::from_secs(self.ctx.config.iterator_refresh_secs);
        loop {
            if *self.stop.borrow() {
                return self.finish_stopped().await;
            }
            if self.lease.is_lost() || !self.ctx.leases.is_valid(&self.lease.key).await {
                self.ctx.stats.leases_lost.fetch_add(1, Ordering::Relaxed);
                return Ok(ShardExit::LeaseLost);
            }
            if let Some(t) = last_call {
                let next = t + min_interval;
                if next > Instant::now()
                    && sleep_or_stop(next - Instant::now(), &mut self.stop).await
                {
                    return self.finish_stopped().await;
                }
            }
            if iterator_taken.elapsed() >= refresh {
                let start = self.resume_point(&restart_before_reading);
                let Some(it) = self.iterator(&start).await? else {
                    return self.finish_without_iterator().await;
                };
                iterator = it;
                iterator_taken = Instant::now();
            }
            last_call = Some(Instant::now());
            self.ctx
                .stats
                .get_records_calls
                .fetch_add(1, Ordering::Relaxed);
            let page = match self
                .ctx
                .kinesis
                .get_records(&iterator, self.ctx.config.max_records_per_call)
                .await
            {
                Ok(p) => p,
                Err(KinesisError::ExpiredIterator(msg)) => {
                    self.ctx
                        .stats
                        .expired_iterators
                        .fetch_add(1, Ordering::Relaxed);
                    let start = self.resume_point(&restart_before_reading);
                    tracing::info!(shard = %self.lease.shard_id, error = %msg, start = ?start, "iterator expired; new iterator");
                    let Some(it) = self.iterator(&start).await? else {
                        return self.finish_without_iterator().await;
                    };
                    iterator = it;
                    iterator_taken = Instant::now();
                    continue;
                }
                Err(e) if e.is_retryable() => {
                    self.ctx.stats.read_retries.fetch_add(1, Ordering::Relaxed);
                    let d = self.backoff.next_delay().unwrap_or(Duration::from_secs(10));
                    tracing::debug!(shard = %self.lease.shard_id, error = %e, delay_ms = d.as_millis() as u64, "GetRecords retry");
                    if sleep_or_stop(d, &mut self.stop).await {
                        return self.finish_stopped().await;
                    }
                    continue;
                }
                Err(e) => return Err(self.err_kinesis(e)),
            };
            self.backoff.reset();
            self.ctx
                .stats
                .records
                .fetch_add(page.records.len() as u64, Ordering::Relaxed);
            if let Some(behind) = page.millis_behind_latest {
                self.shard_gauge(names::MILLIS_BEHIND_LATEST, behind as f64);
                if let Some(m) = &self.ctx.metrics {
                    let _ = m.set_max_with(
                        names::MILLIS_BEHIND_LATEST,
                        Unit::Milliseconds,
                        &[],
                        behind as f64,
                    );
                }
            }
            self.shard_gauge(
                names::CHECKPOINT_AGE,
                self.last_checkpoint_at.elapsed().as_millis() as f64,
            );
            let users = user_records(
                &self.ctx.stream,
                &self.lease.shard_id,
                &page,
                skip_through.as_ref(),
            )?;
            if let Some(last) = page.records.last() {
                // Whole records are handed over: the next start is after this one.
                let last_sub = users
                    .last()
                    .filter(|u| u.sequence_number == last.sequence_number)
                    .and_then(|u| u.sub_sequence_number);
                self.last_read = Some((last.sequence_number.clone(), last_sub));
                skip_through = None;
            }
            if !users.is_empty() {
                self.ctx
                    .stats
                    .user_records
                    .fetch_add(users.len() as u64, Ordering::Relaxed);
                let n = users.len();
                let started = Instant::now();
                self.processor
                    .process(users)
                    .await
                    .map_err(|error| ConsumerError::Process {
                        shard_id: self.lease.shard_id.clone(),
                        error,
                    })?;
                if let Some(m) = &self.ctx.metrics {
                    let _ = m.add(names::RECORDS_IN, Unit::Count, n as f64);
                    let _ = m.record(
                        names::BATCH_LATENCY,
                        Unit::Milliseconds,
                        started.elapsed().as_secs_f64() * 1000.0,
                    );
                }
            }
            if !page.records.is_empty() {
                self.unflushed = true;
            }
            let caught_up = page.records.is_empty() || page.millis_behind_latest == Some(0);
            match page.next_iterator {
                None => {
                    let r = self.flush_and_checkpoint(Checkpoint::ShardEnd).await?;
                    if r == CheckpointResult::LeaseLost {
                        self.ctx.stats.leases_lost.fetch_add(1, Ordering::Relaxed);
                        return Ok(ShardExit::LeaseLost);
                    }
                    self.ctx.stats.shards_ended.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(shard = %self.lease.shard_id, "shard ended");
                    return Ok(ShardExit::Ended);
                }
                Some(next) => {
                    iterator = next;
                    iterator_taken = Instant::now();
                }
            }
            if self.unflushed
                && self.processor.flush_due()
                && let Some(cp) = self.last_checkpoint()
                && self.flush_and_checkpoint(cp).await? == CheckpointResult::LeaseLost
            {
                self.ctx.stats.leases_lost.fetch_add(1, Ordering::Relaxed);
                return Ok(ShardExit::LeaseLost);
            }
            if caught_up {
                let d = Duration::from_millis(self.ctx.config.idle_sleep_ms);
                if sleep_or_stop(d, &mut self.stop).await {
                    return self.finish_stopped().await;
                }
            }
        }
    }

    /// Where a new iterator starts: after the last record read, or where the first did.
    fn resume_point(&self, before_reading: &IteratorStart) -> IteratorStart {
        match &self.last_read {
            // Whole records were handed over, so "after" is right even inside an aggregate.
            Some((seq, _)) => IteratorStart::AfterSequenceNumber(seq.clone()),
            None => before_reading.clone(),
        }
    }
}

/// Consumes one leased shard until it ends, the lease is lost, or `stop` turns true (then
/// flushes and checkpoints what was read). See the module docs for the rules.
///
/// # Errors
/// [`ConsumerError`] on a non-retryable Kinesis error, a processor failure, or a lease table
/// failing beyond `checkpoint_attempts`; nothing read since the last checkpoint is
/// checkpointed then.
pub async fn consume_shard<K: KinesisPort, S: LeaseStore, P: ShardProcessor>(
    ctx: &ShardContext<K, S>,
    lease: &LeaseHandle,
    processor: &mut P,
    stop: watch::Receiver<bool>,
) -> Result<ShardExit, ConsumerError> {
    let mut run = ShardRun {
        ctx,
        lease,
        processor,
        stop,
        backoff: Backoff::new(BackoffConfig {
            max_attempts: 0,
            ..ctx.config.read_backoff
        }),
        last_read: None,
        unflushed: false,
        aged_out: false,
        last_checkpoint_at: Instant::now(),
    };
    let exit = run.run().await;
    if let Some(m) = &ctx.metrics {
        // The shard's gauges stop with its consumer (another worker may report it now).
        m.remove_series(dimensions::SHARD_ID, &lease.shard_id);
        if exit.is_err() {
            let _ = m.add(names::ERRORS, Unit::Count, 1.0);
        }
    }
    exit
}

/// Errors that stop a worker.
#[derive(Debug, Error)]
pub enum WorkerError {
    /// The stream does not exist (run `aiops setup`).
    #[error("stream {stream} not found: {error} (create it with `aiops setup`)")]
    StreamNotFound {
        /// Stream.
        stream: String,
        /// The error.
        error: KinesisError,
    },
    /// Kinesis failed at start.
    #[error("stream {stream}: {error}")]
    Kinesis {
        /// Stream.
        stream: String,
        /// The error.
        error: KinesisError,
    },
    /// The lease table failed at start.
    #[error("{0}")]
    Lease(#[from] LeaseError),
}

/// What a worker did, for its final log line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorkerReport {
    /// Worker id.
    pub worker_id: String,
    /// Stream.
    pub stream: String,
    /// `GetRecords` calls.
    pub get_records_calls: u64,
    /// Kinesis records read.
    pub records: u64,
    /// User records processed.
    pub user_records: u64,
    /// Checkpoints written.
    pub checkpoints: u64,
    /// Expired iterators replaced.
    pub expired_iterators: u64,
    /// Reads retried after throttling or transient errors.
    pub read_retries: u64,
    /// Shards processed to their end.
    pub shards_ended: u64,
    /// Leases lost.
    pub leases_lost: u64,
    /// Shard tasks that failed.
    pub shard_failures: u64,
    /// Leases deleted by the lease cleanup.
    pub leases_removed: u64,
    /// Lease releases that failed at shutdown.
    pub release_errors: u64,
}

/// Aborts the task when dropped (a worker future dropped mid-run takes its renewer along).
struct AbortOnDrop(Option<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(h) = &self.0 {
            h.abort();
        }
    }
}

/// A worker of one stage on one stream: keeps leases (sync, take, renew, release) and runs one
/// [`consume_shard`] task per held lease with a processor from the factory.
pub struct Worker<K, S, F> {
    ctx: ShardContext<K, S>,
    factory: Arc<F>,
}

impl<K: KinesisPort, S: LeaseStore, F: ProcessorFactory> Worker<K, S, F> {
    /// A worker. `lease_config` comes from the coordinator.
    pub fn new(
        kinesis: Arc<K>,
        leases: Arc<LeaseCoordinator<S>>,
        stream: &str,
        config: ConsumerConfig,
        factory: Arc<F>,
    ) -> Worker<K, S, F> {
        Worker {
            ctx: ShardContext {
                kinesis,
                leases,
                stream: stream.to_string(),
                config,
                stats: Arc::new(ConsumerStats::default()),
                listed_shards: Arc::new(std::sync::Mutex::new(HashSet::new())),
                metrics: None,
            },
            factory,
        }
    }

    /// Records the consumer's metrics (see [`ShardContext::metrics`]) into `registry`; the
    /// caller flushes it (e.g. [`aiops_core::metrics::Flusher`]).
    pub fn with_metrics(mut self, registry: Arc<Registry>) -> Worker<K, S, F> {
        self.ctx.metrics = Some(registry);
        self
    }

    /// The counters (live).
    pub fn stats(&self) -> Arc<ConsumerStats> {
        self.ctx.stats.clone()
    }

    async fn sync(&self) -> Result<(), KinesisError> {
        let shards = self.ctx.kinesis.list_shards(&self.ctx.stream).await?;
        if let Ok(mut l) = self.ctx.listed_shards.lock() {
            *l = shards.iter().map(|s| s.shard_id.clone()).collect();
        }
        if let Err(e) = self
            .ctx
            .leases
            .sync_shards(&shards, self.ctx.config.initial_position)
            .await
        {
            tracing::warn!(error = %e, "shard sync: cannot create leases");
        }
        match self
            .ctx
            .leases
            .clean_up(&shards, aiops_core::time::now_micros() / 1000)
            .await
        {
            Ok(removed) => {
                self.ctx
                    .stats
                    .leases_removed
                    .fetch_add(removed.len() as u64, Ordering::Relaxed);
            }
            Err(e) => tracing::warn!(error = %e, "shard sync: lease cleanup failed"),
        }
        Ok(())
    }

    /// Runs until `stop` turns true, then stops every shard (flush, checkpoint), releases the
    /// leases and returns a report.
    ///
    /// # Errors
    /// [`WorkerError`] when the stream does not exist or cannot be listed at start, or the
    /// lease table cannot be read at start. Later failures are logged and retried.
    pub async fn run(self, mut stop: watch::Receiver<bool>) -> Result<WorkerReport, WorkerError> {
        let stream = self.ctx.stream.clone();
        match self.sync().await {
            Ok(()) => {}
            Err(error @ KinesisError::NotFound(_)) => {
                return Err(WorkerError::StreamNotFound { stream, error });
            }
            Err(error) => return Err(WorkerError::Kinesis { stream, error }),
        }
        // Fail fast when the lease table is missing.
        self.ctx.leases.take().await.map(|h| {
            // Leases taken here are started in the loop below.
            drop(h);
        })?;
        let lease_cfg: LeaseConfig = *self.ctx.leases.config();
        let (child_stop_tx, child_stop_rx) = watch::channel(false);
        let (renew_stop_tx, mut renew_stop_rx) = watch::channel(false);
        let mut renewer = AbortOnDrop(Some({
            let leases = self.ctx.leases.clone();
            let stats = self.ctx.stats.clone();
            tokio::spawn(async move {
                let every = Duration::from_millis(lease_cfg.renew_interval_ms);
                loop {
                    if sleep_or_stop(every, &mut renew_stop_rx).await {
                        break;
                    }
                    let lost = leases.renew_all().await;
                    stats
                        .leases_lost
                        .fetch_add(lost.len() as u64, Ordering::Relaxed);
                }
            })
        }));
        let mut tasks: JoinSet<(String, Result<ShardExit, ConsumerError>)> = JoinSet::new();
        let mut running: HashMap<String, tokio::task::AbortHandle> = HashMap::new();
        let mut last_sync = Instant::now();
        let mut need_sync = false;
        let mut first = true;
        loop {
            if !first
                && sleep_or_stop(Duration::from_millis(lease_cfg.take_interval_ms), &mut stop).await
            {
                break;
            }
            first = false;
            if need_sync
                || last_sync.elapsed() >= Duration::from_millis(lease_cfg.shard_sync_interval_ms)
            {
                match self.sync().await {
                    Ok(()) => {
                        need_sync = false;
                        last_sync = Instant::now();
                    }
                    Err(e) => tracing::warn!(stream = %stream, error = %e, "shard sync failed"),
                }
            }
            if let Err(e) = self.ctx.leases.take().await {
                tracing::warn!(stream = %stream, error = %e, "taking leases failed");
            }
            // Reap finished shard tasks.
            while let Some(joined) = tasks.try_join_next() {
                let Ok((key, result)) = joined else {
                    self.ctx
                        .stats
                        .shard_failures
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::error!("a shard task panicked");
                    continue;
                };
                running.remove(&key);
                match result {
                    Ok(ShardExit::Ended) => {
                        need_sync = true;
                        if let Err(e) = self.ctx.leases.release(&key).await {
                            tracing::warn!(lease = %key, error = %e, "release after shard end failed");
                        }
                    }
                    Ok(ShardExit::LeaseLost) => {
                        tracing::info!(lease = %key, "shard stopped: lease lost");
                    }
                    Ok(ShardExit::Stopped) => {}
                    Err(e) => {
                        self.ctx
                            .stats
                            .shard_failures
                            .fetch_add(1, Ordering::Relaxed);
                        tracing::error!(lease = %key, error = %e, "shard failed; releasing its lease");
                        if let Err(e) = self.ctx.leases.release(&key).await {
                            tracing::warn!(lease = %key, error = %e, "release failed");
                        }
                    }
                }
            }
            // Start a task for every held lease without one.
            for handle in self.held_handles().await {
                if running.contains_key(&handle.key) {
                    continue;
                }
                let ctx = self.ctx.clone();
                let mut processor = self.factory.create(&handle.shard_id);
                let stop_rx = child_stop_rx.clone();
                let key = handle.key.clone();
                let abort = tasks.spawn(async move {
                    let r = consume_shard(&ctx, &handle, &mut processor, stop_rx).await;
                    (handle.key.clone(), r)
                });
                running.insert(key, abort);
            }
        }
        // Stop: shards flush and checkpoint while the renewer keeps the leases.
        let _ = child_stop_tx.send(true);
        let deadline = Duration::from_secs(self.ctx.config.shutdown_timeout_secs);
        let drained = tokio::time::timeout(deadline, async {
            while let Some(joined) = tasks.join_next().await {
                if let Ok((key, Err(e))) = joined {
                    self.ctx
                        .stats
                        .shard_failures
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::error!(lease = %key, error = %e, "shard failed while stopping");
                }
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                "shards did not stop within {} s; aborting them",
                deadline.as_secs()
            );
            tasks.abort_all();
        }
        let _ = renew_stop_tx.send(true);
        if let Some(r) = renewer.0.take() {
            let _ = r.await;
        }
        let release_errors = self.ctx.leases.release_all().await as u64;
        let s = &self.ctx.stats;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Ok(WorkerReport {
            worker_id: self.ctx.leases.worker_id().to_string(),
            stream,
            get_records_calls: g(&s.get_records_calls),
            records: g(&s.records),
            user_records: g(&s.user_records),
            checkpoints: g(&s.checkpoints),
            expired_iterators: g(&s.expired_iterators),
            read_retries: g(&s.read_retries),
            shards_ended: g(&s.shards_ended),
            leases_lost: g(&s.leases_lost),
            shard_failures: g(&s.shard_failures),
            leases_removed: g(&s.leases_removed),
            release_errors,
        })
    }

    async fn held_handles(&self) -> Vec<LeaseHandle> {
        self.ctx.leases.handles().await
    }
}
