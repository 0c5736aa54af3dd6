//! Fault injection behind the Kinesis port (no emulator): what moto does not do — expired
//! iterators, throttling on reads and on PutRecords, closed parent shards after a split — run
//! through the same consumer, worker, lease and producer code as production. Time is Tokio's
//! paused clock, so backoff and polling intervals pass instantly and deterministically.

use aiops_aws::backoff::BackoffConfig;
use aiops_aws::consumer::{
    ConsumedRecord, ConsumerConfig, ProcessError, ProcessorFactory, ShardContext, ShardExit,
    ShardProcessor, Worker, consume_shard,
};
use aiops_aws::coordinator::{InitialPosition, LeaseConfig, LeaseCoordinator};
use aiops_aws::kinesis::{IteratorStart, PutEntry, SequenceNumber};
use aiops_aws::lease::{Checkpoint, Lease};
use aiops_aws::producer::{ProduceError, Producer};
use aiops_aws::testing::{FakeCall, FakeKinesis, MemoryLeaseStore, PutFault, ReadFault};
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

const STREAM: &str = "raw";
const SHARD0: &str = "shardId-000000000000";

/// (shard, sequence number, sub-sequence number, data) of one processed record.
type Processed = (String, String, Option<u64>, String);

/// What a recording processor saw, shared by every processor of a factory.
#[derive(Default)]
struct Journal {
    /// Records in processing order.
    processed: Mutex<Vec<Processed>>,
    flushes: AtomicU64,
    /// Where the processor's saved state says reading starts (`ShardProcessor::resume`).
    resume_at: Mutex<Option<Checkpoint>>,
}

impl Journal {
    fn data(&self) -> Vec<String> {
        self.processed
            .lock()
            .unwrap()
            .iter()
            .map(|p| p.3.clone())
            .collect()
    }
    fn len(&self) -> usize {
        self.processed.lock().unwrap().len()
    }
}

struct Recording {
    shard: String,
    journal: Arc<Journal>,
    flush_every: usize,
    since_flush: usize,
}

impl ShardProcessor for Recording {
    async fn process(&mut self, records: Vec<ConsumedRecord>) -> Result<(), ProcessError> {
        let mut p = self.journal.processed.lock().unwrap();
        for r in records {
            assert_eq!(r.shard_id, self.shard);
            p.push((
                r.shard_id,
                r.sequence_number,
                r.sub_sequence_number,
                String::from_utf8(r.data).unwrap(),
            ));
            self.since_flush += 1;
        }
        Ok(())
    }
    fn flush_due(&self) -> bool {
        self.since_flush >= self.flush_every
    }
    async fn flush(&mut self) -> Result<(), ProcessError> {
        self.since_flush = 0;
        self.journal.flushes.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    async fn resume(&mut self, _: &Checkpoint) -> Result<Option<Checkpoint>, ProcessError> {
        Ok(self.journal.resume_at.lock().unwrap().clone())
    }
}

struct Factory {
    journal: Arc<Journal>,
    flush_every: usize,
}

impl ProcessorFactory for Factory {
    type Processor = Recording;
    fn create(&self, shard_id: &str) -> Recording {
        Recording {
            shard: shard_id.to_string(),
            journal: self.journal.clone(),
            flush_every: self.flush_every,
            since_flush: 0,
        }
    }
}

fn consumer_config() -> ConsumerConfig {
    ConsumerConfig {
        read_backoff: BackoffConfig {
            base_ms: 200,
            max_ms: 5_000,
            max_attempts: 0,
        },
        parent_poll_ms: 500,
        ..ConsumerConfig::default()
    }
}

fn lease_config() -> LeaseConfig {
    LeaseConfig {
        failover_ms: 10_000,
        renew_interval_ms: 3_000,
        take_interval_ms: 1_000,
        shard_sync_interval_ms: 5_000,
        max_leases_per_worker: 100,
        finished_retention_ms: 0,
    }
}

fn coordinator(
    store: &Arc<MemoryLeaseStore>,
    worker: &str,
) -> Arc<LeaseCoordinator<MemoryLeaseStore>> {
    Arc::new(LeaseCoordinator::new(
        store.clone(),
        worker,
        "ingest",
        STREAM,
        lease_config(),
    ))
}

fn context(
    kinesis: &Arc<FakeKinesis>,
    leases: &Arc<LeaseCoordinator<MemoryLeaseStore>>,
) -> ShardContext<FakeKinesis, MemoryLeaseStore> {
    ShardContext {
        kinesis: kinesis.clone(),
        leases: leases.clone(),
        stream: STREAM.to_string(),
        config: consumer_config(),
        stats: Arc::default(),
        listed_shards: Arc::default(),
        metrics: None,
    }
}

/// Waits (virtual time) until `cond` holds, at most `secs` seconds.
async fn wait_until(secs: u64, cond: impl Fn() -> bool) {
    for _ in 0..secs * 10 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(cond(), "condition not met within {secs} s");
}

fn fill(kinesis: &FakeKinesis, shard: &str, n: usize, tag: &str) -> Vec<String> {
    (0..n)
        .map(|i| {
            let data = format!("{tag}{i}");
            kinesis.append(STREAM, shard, "k", data.as_bytes());
            data
        })
        .collect()
}

/// Runs one shard consumer on the single shard of a fresh stream until `done`, then stops
/// it; returns the exit and the lease table.
async fn run_one_shard(
    kinesis: &Arc<FakeKinesis>,
    journal: &Arc<Journal>,
    flush_every: usize,
    done: impl Fn() -> bool,
) -> (ShardExit, BTreeMap<String, Lease>) {
    let store = Arc::new(MemoryLeaseStore::new());
    let leases = coordinator(&store, "w1");
    let shards = aiops_aws::kinesis::KinesisPort::list_shards(kinesis.as_ref(), STREAM)
        .await
        .unwrap();
    leases
        .sync_shards(&shards, InitialPosition::TrimHorizon)
        .await
        .unwrap();
    let handles = leases.take().await.unwrap();
    assert_eq!(handles.len(), 1);
    let ctx = context(kinesis, &leases);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut processor = Factory {
        journal: journal.clone(),
        flush_every,
    }
    .create(SHARD0);
    let handle = handles[0].clone();
    let task =
        tokio::spawn(async move { consume_shard(&ctx, &handle, &mut processor, stop_rx).await });
    // Keep the lease renewed while the shard runs.
    let renewer = {
        let leases = leases.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(3)).await;
                leases.renew_all().await;
            }
        })
    };
    wait_until(600, done).await;
    stop_tx.send(true).unwrap();
    let exit = task.await.unwrap().unwrap();
    renewer.abort();
    (exit, store.snapshot())
}

#[tokio::test(start_paused = true)]
async fn expired_iterator_mid_shard_resumes_after_the_last_processed_record() {
    let kinesis = Arc::new(FakeKinesis::new());
    // Sequence numbers 9, 10, 11, ...: a string comparison would put "10" before "9".
    kinesis.create_stream(STREAM, 1, 9);
    let expected = fill(&kinesis, SHARD0, 250, "r");
    // Page 1 (100 records) passes, then the iterator expires, then everything passes.
    kinesis.script_reads(SHARD0, vec![ReadFault::Pass, ReadFault::Expire]);
    let journal = Arc::new(Journal::default());
    let j = journal.clone();
    let (exit, leases) = run_one_shard(&kinesis, &journal, 1_000_000, move || j.len() >= 250).await;
    assert_eq!(exit, ShardExit::Stopped);
    // No gap, no duplicate, in order.
    assert_eq!(journal.data(), expected);
    let calls = kinesis.calls();
    let starts: Vec<IteratorStart> = calls
        .iter()
        .filter_map(|c| match c {
            FakeCall::GetShardIterator { start, .. } => Some(start.clone()),
            _ => None,
        })
        .collect();
    // First from the checkpoint (TRIM_HORIZON), then after record 100 (sequence 108).
    assert_eq!(
        starts,
        vec![
            IteratorStart::TrimHorizon,
            IteratorStart::AfterSequenceNumber("108".into())
        ]
    );
    // No flood: exactly the 250 records were returned by GetRecords, once each.
    let returned: usize = calls
        .iter()
        .map(|c| match c {
            FakeCall::GetRecords { returned, .. } => *returned,
            _ => 0,
        })
        .sum();
    assert_eq!(returned, 250);
    // The stop flushed and checkpointed the last record (sequence 9 + 249 = 258).
    let lease = &leases[&Lease::key_of("ingest", STREAM, SHARD0)];
    assert_eq!(
        lease.checkpoint,
        Checkpoint::Sequence {
            sequence_number: "258".into(),
            sub_sequence_number: None
        }
    );
    assert_eq!(journal.flushes.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn a_processor_with_saved_state_chooses_where_reading_starts() {
    let kinesis = Arc::new(FakeKinesis::new());
    kinesis.create_stream(STREAM, 1, 9);
    let all = fill(&kinesis, SHARD0, 100, "r");
    // The lease says TRIM_HORIZON; the processor's state covers records 0..50 (sequence 58).
    let journal = Arc::new(Journal::default());
    *journal.resume_at.lock().unwrap() = Some(Checkpoint::Sequence {
        sequence_number: "58".into(),
        sub_sequence_number: None,
    });
    let j = journal.clone();
    let (exit, _) = run_one_shard(&kinesis, &journal, 1_000_000, move || j.len() >= 50).await;
    assert_eq!(exit, ShardExit::Stopped);
    assert_eq!(journal.data(), all[50..].to_vec());
    let first = kinesis.calls().into_iter().find_map(|c| match c {
        FakeCall::GetShardIterator { start, .. } => Some(start),
        _ => None,
    });
    assert_eq!(first, Some(IteratorStart::AfterSequenceNumber("58".into())));
}

#[tokio::test(start_paused = true)]
async fn throttled_reads_back_off_and_lose_nothing() {
    let kinesis = Arc::new(FakeKinesis::new());
    kinesis.create_stream(STREAM, 1, 1);
    let expected = fill(&kinesis, SHARD0, 300, "t");
    use ReadFault::{Pass, Throttle};
    kinesis.script_reads(
        SHARD0,
        vec![
            Throttle, Throttle, Throttle, Throttle, Throttle, Pass, Throttle, Throttle, Throttle,
        ],
    );
    let journal = Arc::new(Journal::default());
    let started = tokio::time::Instant::now();
    let j = journal.clone();
    let (_, leases) = run_one_shard(&kinesis, &journal, 100, move || j.len() >= 300).await;
    let elapsed = started.elapsed();
    assert_eq!(journal.data(), expected);
    let calls = kinesis.calls();
    let throttled = calls
        .iter()
        .filter(|c| {
            matches!(
                c,
                FakeCall::GetRecords {
                    fault: Some(ReadFault::Throttle),
                    ..
                }
            )
        })
        .count();
    assert_eq!(throttled, 8);
    // Only one iterator: throttling never re-creates it.
    let iterators = calls
        .iter()
        .filter(|c| matches!(c, FakeCall::GetShardIterator { .. }))
        .count();
    assert_eq!(iterators, 1);
    // Backoff delays are at least base/2 = 100 ms each (virtual clock): 8 retries >= 800 ms.
    assert!(elapsed >= Duration::from_millis(800), "{elapsed:?}");
    // Checkpoints every 100 records (flush_every), last at sequence 300.
    assert_eq!(
        leases[&Lease::key_of("ingest", STREAM, SHARD0)].checkpoint,
        Checkpoint::Sequence {
            sequence_number: "300".into(),
            sub_sequence_number: None
        }
    );
}

#[tokio::test(start_paused = true)]
async fn get_records_stays_within_five_calls_per_second_per_shard() {
    let kinesis = Arc::new(FakeKinesis::new());
    kinesis.create_stream(STREAM, 1, 1);
    kinesis.set_page_size(10);
    fill(&kinesis, SHARD0, 10_000, "x");
    let journal = Arc::new(Journal::default());
    let start = tokio::time::Instant::now();
    // Stop after 10 virtual seconds, long before the 10,000 records are read.
    let (_, _) = run_one_shard(&kinesis, &journal, 1000, move || {
        start.elapsed() >= Duration::from_secs(10)
    })
    .await;
    let calls = kinesis
        .calls()
        .iter()
        .filter(|c| matches!(c, FakeCall::GetRecords { .. }))
        .count();
    // 200 ms apart: at most 51 calls in 10 s (the first at t = 0).
    assert!(
        (45..=51).contains(&calls),
        "{calls} GetRecords calls in 10 s"
    );
    assert_eq!(journal.len(), calls * 10);
}

#[tokio::test(start_paused = true)]
async fn a_checkpoint_inside_a_kpl_aggregate_skips_the_processed_user_records() {
    let kinesis = Arc::new(FakeKinesis::new());
    kinesis.create_stream(STREAM, 1, 41);
    let agg = aiops_ingest::decode::kpl::aggregate(&[
        ("a", None, b"u0".as_slice()),
        ("b", None, b"u1".as_slice()),
        ("c", None, b"u2".as_slice()),
    ]);
    let seq = kinesis.append(STREAM, SHARD0, "a", &agg);
    kinesis.append(STREAM, SHARD0, "p", b"plain");
    assert_eq!(seq, "41");
    let store = Arc::new(MemoryLeaseStore::new());
    let leases = coordinator(&store, "w1");
    let shards = aiops_aws::kinesis::KinesisPort::list_shards(kinesis.as_ref(), STREAM)
        .await
        .unwrap();
    leases
        .sync_shards(&shards, InitialPosition::TrimHorizon)
        .await
        .unwrap();
    let key = Lease::key_of("ingest", STREAM, SHARD0);
    // A previous owner processed user records 0 and 1 of the aggregate, then died.
    let h = leases.take().await.unwrap().remove(0);
    leases
        .checkpoint(
            &key,
            Checkpoint::Sequence {
                sequence_number: "41".into(),
                sub_sequence_number: Some(1),
            },
        )
        .await
        .unwrap();
    let mut handle = h.clone();
    handle.checkpoint = Checkpoint::Sequence {
        sequence_number: "41".into(),
        sub_sequence_number: Some(1),
    };
    let journal = Arc::new(Journal::default());
    let ctx = context(&kinesis, &leases);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut p = Factory {
        journal: journal.clone(),
        flush_every: 1,
    }
    .create(SHARD0);
    let task = tokio::spawn(async move { consume_shard(&ctx, &handle, &mut p, stop_rx).await });
    let j = journal.clone();
    wait_until(30, move || j.len() >= 2).await;
    stop_tx.send(true).unwrap();
    task.await.unwrap().unwrap();
    let processed = journal.processed.lock().unwrap().clone();
    assert_eq!(
        processed,
        vec![
            (
                SHARD0.to_string(),
                "41".to_string(),
                Some(2),
                "u2".to_string()
            ),
            (
                SHARD0.to_string(),
                "42".to_string(),
                None,
                "plain".to_string()
            ),
        ]
    );
    let starts: Vec<IteratorStart> = kinesis
        .calls()
        .into_iter()
        .filter_map(|c| match c {
            FakeCall::GetShardIterator { start, .. } => Some(start),
            _ => None,
        })
        .collect();
    assert_eq!(starts, vec![IteratorStart::AtSequenceNumber("41".into())]);
}

#[tokio::test(start_paused = true)]
async fn put_records_throttling_retries_only_failed_entries_and_loses_nothing() {
    let kinesis = Arc::new(FakeKinesis::new());
    kinesis.create_stream("events", 1, 1);
    kinesis.script_puts(vec![
        PutFault::ThrottleCall,
        PutFault::FailEntries(vec![0, 3, 7]),
        PutFault::Pass,
    ]);
    let producer = Producer::new(
        kinesis.clone(),
        BackoffConfig {
            base_ms: 100,
            max_ms: 1000,
            max_attempts: 5,
        },
    );
    let entries: Vec<PutEntry> = (0..10)
        .map(|i| PutEntry {
            partition_key: format!("key{}", i % 2),
            data: format!("e{i}").into_bytes(),
        })
        .collect();
    producer.put_all("events", &entries).await.unwrap();
    let calls: Vec<(usize, usize)> = kinesis
        .calls()
        .into_iter()
        .filter_map(|c| match c {
            FakeCall::PutRecords {
                entries, accepted, ..
            } => Some((entries, accepted)),
            _ => None,
        })
        .collect();
    // Whole call throttled; then 10 sent, 7 accepted; then only the 3 failed ones.
    assert_eq!(calls, vec![(10, 0), (10, 7), (3, 3)]);
    let mut written: Vec<String> = kinesis
        .records("events", "shardId-000000000000")
        .into_iter()
        .map(|r| String::from_utf8(r.data).unwrap())
        .collect();
    // The retried entries come last, in their original order.
    assert_eq!(written[7..], ["e0".to_string(), "e3".into(), "e7".into()]);
    written.sort();
    let mut want: Vec<String> = (0..10).map(|i| format!("e{i}")).collect();
    want.sort();
    assert_eq!(written, want);
    assert_eq!(producer.stats().retried_entries.load(Ordering::SeqCst), 3);
    assert_eq!(producer.stats().failed_calls.load(Ordering::SeqCst), 1);
    assert_eq!(producer.stats().accepted.load(Ordering::SeqCst), 10);
}

#[tokio::test(start_paused = true)]
async fn put_records_gives_up_after_max_attempts_and_reports_what_is_left() {
    let kinesis = Arc::new(FakeKinesis::new());
    kinesis.create_stream("events", 1, 1);
    kinesis.script_puts(vec![PutFault::ThrottleCall; 3]);
    let producer = Producer::new(
        kinesis.clone(),
        BackoffConfig {
            base_ms: 100,
            max_ms: 1000,
            max_attempts: 3,
        },
    );
    let entries = vec![PutEntry {
        partition_key: "k".into(),
        data: b"x".to_vec(),
    }];
    let err = producer.put_all("events", &entries).await.unwrap_err();
    assert!(
        matches!(
            err,
            ProduceError::GaveUp {
                remaining: 1,
                attempts: 3,
                ..
            }
        ),
        "{err}"
    );
    assert!(kinesis.records("events", "shardId-000000000000").is_empty());
}

#[tokio::test(start_paused = true)]
async fn split_shard_children_start_after_the_parent_ends_and_keys_stay_in_order() {
    let kinesis = Arc::new(FakeKinesis::new());
    kinesis.create_stream(STREAM, 1, 99);
    // 8 keys, 40 records each before the split (all on the parent) ...
    let producer = Producer::new(kinesis.clone(), BackoffConfig::default());
    let batch = |from: usize, to: usize| -> Vec<PutEntry> {
        (from..to)
            .flat_map(|n| {
                (0..8).map(move |k| PutEntry {
                    partition_key: format!("key{k}"),
                    data: format!("key{k}:{n:04}").into_bytes(),
                })
            })
            .collect()
    };
    producer.put_all(STREAM, &batch(0, 40)).await.unwrap();
    let children = kinesis.split(STREAM, SHARD0);
    // ... and 40 more each after it (on the two children, by key).
    producer.put_all(STREAM, &batch(40, 80)).await.unwrap();
    assert_eq!(kinesis.records(STREAM, SHARD0).len(), 320);
    let on_children: usize = children
        .iter()
        .map(|c| kinesis.records(STREAM, c).len())
        .sum();
    assert_eq!(on_children, 320);

    // Two workers share the three leases; the children must wait for the parent's end.
    let store = Arc::new(MemoryLeaseStore::new());
    let journal = Arc::new(Journal::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut workers = Vec::new();
    for id in ["w1", "w2"] {
        let leases = coordinator(&store, id);
        let w = Worker::new(
            kinesis.clone(),
            leases,
            STREAM,
            consumer_config(),
            Arc::new(Factory {
                journal: journal.clone(),
                flush_every: 25,
            }),
        );
        let rx = stop_rx.clone();
        workers.push(tokio::spawn(async move { w.run(rx).await }));
    }
    let j = journal.clone();
    wait_until(300, move || j.len() >= 640).await;
    stop_tx.send(true).unwrap();
    for w in workers {
        w.await.unwrap().unwrap();
    }
    let processed = journal.processed.lock().unwrap().clone();
    // Exactly once each.
    assert_eq!(processed.len(), 640);
    let distinct: HashSet<&String> = processed.iter().map(|p| &p.3).collect();
    assert_eq!(distinct.len(), 640);
    // Every parent record before any child record.
    let last_parent = processed.iter().rposition(|p| p.0 == SHARD0).unwrap();
    let first_child = processed.iter().position(|p| p.0 != SHARD0).unwrap();
    assert_eq!(last_parent, 319);
    assert_eq!(first_child, 320);
    // One key's records in order across parent and child.
    let mut last: BTreeMap<String, String> = BTreeMap::new();
    for p in &processed {
        let (key, n) = p.3.split_once(':').unwrap();
        if let Some(prev) = last.get(key) {
            assert!(n > prev.as_str(), "{key}: {n} after {prev}");
        }
        last.insert(key.to_string(), n.to_string());
    }
    assert_eq!(last.len(), 8);
    assert!(last.values().all(|n| n == "0079"));
    // Leases: the parent ended; each child checkpointed at its last record.
    let snap = store.snapshot();
    assert_eq!(
        snap[&Lease::key_of("ingest", STREAM, SHARD0)].checkpoint,
        Checkpoint::ShardEnd
    );
    for c in &children {
        let last_seq = kinesis
            .records(STREAM, c)
            .last()
            .unwrap()
            .sequence_number
            .clone();
        let lease = &snap[&Lease::key_of("ingest", STREAM, c)];
        assert_eq!(
            lease.checkpoint,
            Checkpoint::Sequence {
                sequence_number: last_seq,
                sub_sequence_number: None
            }
        );
        assert_eq!(lease.parent_shard_ids, vec![SHARD0.to_string()]);
        // Released at the clean stop.
        assert_eq!(lease.owner, None);
    }
}

#[tokio::test(start_paused = true)]
async fn leases_balance_fail_over_and_hand_back() {
    let kinesis = Arc::new(FakeKinesis::new());
    kinesis.create_stream(STREAM, 4, 1);
    let store = Arc::new(MemoryLeaseStore::new());
    let a = coordinator(&store, "A");
    let shards = aiops_aws::kinesis::KinesisPort::list_shards(kinesis.as_ref(), STREAM)
        .await
        .unwrap();
    assert_eq!(
        a.sync_shards(&shards, InitialPosition::TrimHorizon)
            .await
            .unwrap(),
        4
    );
    assert_eq!(
        a.sync_shards(&shards, InitialPosition::TrimHorizon)
            .await
            .unwrap(),
        0
    );
    // Alone, A takes all four.
    assert_eq!(a.take().await.unwrap().len(), 4);
    let b = coordinator(&store, "B");
    // B steals one per round until both hold the target of 2.
    assert_eq!(b.take().await.unwrap().len(), 1);
    assert_eq!(b.take().await.unwrap().len(), 1);
    assert_eq!(b.take().await.unwrap().len(), 0);
    // A learns of the steals at its next renewal.
    assert_eq!(a.renew_all().await.len(), 2);
    assert_eq!(a.held_keys().await.len(), 2);
    assert_eq!(b.held_keys().await.len(), 2);
    // A checkpoints a shard, then dies (no more renewals).
    let a_key = a.held_keys().await[0].clone();
    let cp = Checkpoint::Sequence {
        sequence_number: "17".into(),
        sub_sequence_number: None,
    };
    a.checkpoint(&a_key, cp.clone()).await.unwrap();
    // B sees A's leases unchanged, but not yet for the failover time.
    assert_eq!(b.take().await.unwrap().len(), 0);
    tokio::time::advance(Duration::from_millis(10_001)).await;
    b.renew_all().await;
    let taken = b.take().await.unwrap();
    assert_eq!(taken.len(), 2);
    let resumed = taken.iter().find(|h| h.key == a_key).unwrap();
    assert_eq!(resumed.checkpoint, cp);
    assert!(!a.is_valid(&a_key).await);
    // A's late checkpoint is refused.
    assert_eq!(
        a.checkpoint(&a_key, Checkpoint::ShardEnd).await.unwrap(),
        aiops_aws::coordinator::CheckpointResult::LeaseLost
    );
    // B stops cleanly: every lease is free at once for C.
    assert_eq!(b.release_all().await, 0);
    assert!(store.snapshot().values().all(|l| l.owner.is_none()));
    let c = coordinator(&store, "C");
    assert_eq!(c.take().await.unwrap().len(), 4);
    // C restarts with the same id: it takes its own leases back at once.
    let c2 = coordinator(&store, "C");
    assert_eq!(c2.take().await.unwrap().len(), 4);
    assert_eq!(c.renew_all().await.len(), 4);
}

#[tokio::test(start_paused = true)]
async fn a_crashed_worker_loses_nothing_its_successor_resumes_from_the_checkpoint() {
    let kinesis = Arc::new(FakeKinesis::new());
    kinesis.create_stream(STREAM, 2, 1);
    kinesis.set_page_size(20);
    let producer = Producer::new(kinesis.clone(), BackoffConfig::default());
    let entries: Vec<PutEntry> = (0..400)
        .map(|i| PutEntry {
            partition_key: format!("p{}", i % 13),
            data: format!("ev{i:04}").into_bytes(),
        })
        .collect();
    producer.put_all(STREAM, &entries).await.unwrap();
    let store = Arc::new(MemoryLeaseStore::new());
    let journal = Arc::new(Journal::default());
    let factory = Arc::new(Factory {
        journal: journal.clone(),
        flush_every: 50,
    });
    // Worker 1 runs a while, then is killed: its task is aborted (no flush, no release).
    let (_stop1_tx, stop1_rx) = watch::channel(false);
    let w1 = Worker::new(
        kinesis.clone(),
        coordinator(&store, "w1"),
        STREAM,
        consumer_config(),
        factory.clone(),
    );
    let t1 = tokio::spawn(async move { w1.run(stop1_rx).await });
    let j = journal.clone();
    wait_until(60, move || j.len() >= 150).await;
    t1.abort();
    let _ = t1.await;
    let before_crash = journal.len();
    // Worker 2 takes over after the failover time, from the checkpoints.
    let (stop2_tx, stop2_rx) = watch::channel(false);
    let w2 = Worker::new(
        kinesis.clone(),
        coordinator(&store, "w2"),
        STREAM,
        consumer_config(),
        factory.clone(),
    );
    let t2 = tokio::spawn(async move { w2.run(stop2_rx).await });
    let j = journal.clone();
    wait_until(120, move || {
        let d: HashSet<String> = j.data().into_iter().collect();
        d.len() >= 400
    })
    .await;
    stop2_tx.send(true).unwrap();
    let report = t2.await.unwrap().unwrap();
    let data = journal.data();
    let distinct: HashSet<&String> = data.iter().collect();
    assert_eq!(distinct.len(), 400, "every event at least once");
    // Re-read at most what was read since the last checkpoint of each shard (< 50 + a page).
    let duplicates = data.len() - 400;
    assert!(duplicates < 2 * (50 + 20), "{duplicates} duplicates");
    assert!(before_crash >= 150);
    assert_eq!(report.worker_id, "w2");
    // Every shard checkpointed at its last record and released.
    for (key, lease) in store.snapshot() {
        let shard = lease.shard_id.clone();
        let last = kinesis
            .records(STREAM, &shard)
            .last()
            .unwrap()
            .sequence_number
            .clone();
        assert_eq!(
            lease.checkpoint,
            Checkpoint::Sequence {
                sequence_number: last,
                sub_sequence_number: None
            },
            "{key}"
        );
        assert_eq!(lease.owner, None);
    }
    assert!(SequenceNumber::parse("10") > SequenceNumber::parse("9"));
}

#[tokio::test(start_paused = true)]
async fn a_parent_that_left_the_stream_counts_as_finished_and_its_lease_is_removed() {
    let kinesis = Arc::new(FakeKinesis::new());
    kinesis.create_stream(STREAM, 1, 99);
    let parent_seqs: Vec<String> = (0..10)
        .map(|i| kinesis.append(STREAM, SHARD0, "k", format!("p{i}").as_bytes()))
        .collect();
    let children = kinesis.split(STREAM, SHARD0);
    assert_eq!(
        children,
        vec!["shardId-000000000001", "shardId-000000000002"]
    );
    for (c, tag) in children.iter().zip(["a", "b"]) {
        fill(&kinesis, c, 5, tag);
    }
    // The leases exist; the parent was read to its 4th record, then its worker fell behind.
    let store = Arc::new(MemoryLeaseStore::new());
    let w0 = coordinator(&store, "w0");
    let shards = aiops_aws::kinesis::KinesisPort::list_shards(kinesis.as_ref(), STREAM)
        .await
        .unwrap();
    assert_eq!(
        w0.sync_shards(&shards, InitialPosition::TrimHorizon)
            .await
            .unwrap(),
        3
    );
    assert_eq!(w0.take().await.unwrap().len(), 3);
    let parent_key = Lease::key_of("ingest", STREAM, SHARD0);
    let partial = Checkpoint::Sequence {
        sequence_number: parent_seqs[3].clone(),
        sub_sequence_number: None,
    };
    w0.checkpoint(&parent_key, partial.clone()).await.unwrap();
    assert_eq!(w0.release_all().await, 0);
    // The parent shard ages out of the stream with its lease unfinished.
    assert!(kinesis.age_out(STREAM, SHARD0));

    let journal = Arc::new(Journal::default());
    let worker = Worker::new(
        kinesis.clone(),
        coordinator(&store, "w1"),
        STREAM,
        consumer_config(),
        Arc::new(Factory {
            journal: journal.clone(),
            flush_every: 1,
        }),
    );
    let stats = worker.stats();
    let (stop_tx, stop_rx) = watch::channel(false);
    let task = tokio::spawn(async move { worker.run(stop_rx).await });
    // The children start (their parent counts as finished), and once both started the
    // parent's lease is removed at the next shard sync.
    let (j, st) = (journal.clone(), store.clone());
    let pk = parent_key.clone();
    wait_until(120, move || {
        j.len() == 10 && !st.snapshot().contains_key(&pk)
    })
    .await;
    stop_tx.send(true).unwrap();
    let report = task.await.unwrap().unwrap();

    let mut data = journal.data();
    data.sort();
    assert_eq!(
        data,
        vec!["a0", "a1", "a2", "a3", "a4", "b0", "b1", "b2", "b3", "b4"]
    );
    assert_eq!(report.shard_failures, 0);
    assert_eq!(report.shards_ended, 1);
    assert_eq!(report.leases_removed, 1);
    assert_eq!(stats.leases_removed.load(Ordering::SeqCst), 1);
    let snap = store.snapshot();
    let keys: Vec<&String> = snap.keys().collect();
    assert_eq!(
        keys,
        vec![
            &Lease::key_of("ingest", STREAM, &children[0]),
            &Lease::key_of("ingest", STREAM, &children[1]),
        ]
    );
    for c in &children {
        let last = kinesis
            .records(STREAM, c)
            .last()
            .unwrap()
            .sequence_number
            .clone();
        assert_eq!(
            snap[&Lease::key_of("ingest", STREAM, c)].checkpoint,
            Checkpoint::Sequence {
                sequence_number: last,
                sub_sequence_number: None
            }
        );
    }
    // The aged-out parent was never read (its records are gone): no iterator came back.
    assert!(kinesis.calls().iter().all(|c| !matches!(
        c,
        FakeCall::GetRecords { shard_id, .. } if shard_id == SHARD0
    )));
}

#[tokio::test(start_paused = true)]
async fn finished_leases_are_removed_after_the_retention_once_every_child_started() {
    let kinesis = Arc::new(FakeKinesis::new());
    // Sequence numbers from 10: above the checkpoints "5" and "6" written below.
    kinesis.create_stream(STREAM, 1, 10);
    let children = kinesis.split(STREAM, SHARD0);
    let shards = aiops_aws::kinesis::KinesisPort::list_shards(kinesis.as_ref(), STREAM)
        .await
        .unwrap();
    let store = Arc::new(MemoryLeaseStore::new());
    let leases = Arc::new(LeaseCoordinator::new(
        store.clone(),
        "w1",
        "ingest",
        STREAM,
        LeaseConfig {
            finished_retention_ms: 60_000,
            ..lease_config()
        },
    ));
    assert_eq!(
        leases
            .sync_shards(&shards, InitialPosition::TrimHorizon)
            .await
            .unwrap(),
        3
    );
    assert_eq!(leases.take().await.unwrap().len(), 3);
    let key = |s: &str| Lease::key_of("ingest", STREAM, s);
    // The parent ends (its lease records the time of that write: lastRenewalMillis).
    assert_eq!(
        leases
            .checkpoint(&key(SHARD0), Checkpoint::ShardEnd)
            .await
            .unwrap(),
        aiops_aws::coordinator::CheckpointResult::Written
    );
    leases.release(&key(SHARD0)).await.unwrap();
    let ended_at = store.snapshot()[&key(SHARD0)].last_renewal_millis.unwrap();
    let seq = |n: &str| Checkpoint::Sequence {
        sequence_number: n.into(),
        sub_sequence_number: None,
    };
    // One child started, the other has not: the parent stays, however old.
    leases
        .checkpoint(&key(&children[0]), seq("5"))
        .await
        .unwrap();
    assert_eq!(
        leases
            .clean_up(&shards, ended_at + 3_600_000)
            .await
            .unwrap(),
        Vec::<String>::new()
    );
    // Both started, but the retention has not passed: it stays.
    leases
        .checkpoint(&key(&children[1]), seq("6"))
        .await
        .unwrap();
    assert_eq!(
        leases.clean_up(&shards, ended_at + 59_999).await.unwrap(),
        Vec::<String>::new()
    );
    // An empty listing (not known) removes nothing.
    assert_eq!(
        leases.clean_up(&[], ended_at + 60_000).await.unwrap(),
        Vec::<String>::new()
    );
    // Retention passed: removed; the children (open) stay.
    assert_eq!(
        leases.clean_up(&shards, ended_at + 60_000).await.unwrap(),
        vec![key(SHARD0)]
    );
    let snap = store.snapshot();
    assert_eq!(
        snap.keys().cloned().collect::<Vec<_>>(),
        vec![key(&children[0]), key(&children[1])]
    );
    // The parent is still listed (within the stream's retention): it gets no new lease, so it
    // is not read again.
    assert_eq!(
        leases
            .sync_shards(&shards, InitialPosition::TrimHorizon)
            .await
            .unwrap(),
        0
    );
    // A child that started does not wait for its (removed) parent when taken over.
    kinesis.append(STREAM, &children[0], "k", b"late");
    let handle = leases
        .handles()
        .await
        .into_iter()
        .find(|h| h.shard_id == children[0])
        .unwrap();
    assert_eq!(handle.checkpoint, seq("5"));
    let ctx = context(&kinesis, &leases);
    *ctx.listed_shards.lock().unwrap() = shards.iter().map(|s| s.shard_id.clone()).collect();
    let journal = Arc::new(Journal::default());
    let mut processor = Factory {
        journal: journal.clone(),
        flush_every: 1,
    }
    .create(&children[0]);
    let (stop_tx, stop_rx) = watch::channel(false);
    let task =
        tokio::spawn(async move { consume_shard(&ctx, &handle, &mut processor, stop_rx).await });
    let j = journal.clone();
    wait_until(30, move || j.len() == 1).await;
    stop_tx.send(true).unwrap();
    assert_eq!(task.await.unwrap().unwrap(), ShardExit::Stopped);
    assert_eq!(journal.data(), vec!["late"]);
}

/// A processor that flushes the metrics registry at every batch (so the test sees exactly
/// what the consumer recorded before that batch), checkpointing every batch.
struct Metered {
    registry: Arc<aiops_core::metrics::Registry>,
    lines: Arc<Mutex<Vec<String>>>,
    batches: i64,
}

impl ShardProcessor for Metered {
    async fn process(&mut self, _records: Vec<ConsumedRecord>) -> Result<(), ProcessError> {
        self.batches += 1;
        let lines = self.registry.flush_lines(self.batches);
        self.lines.lock().unwrap().extend(lines);
        Ok(())
    }
    fn flush_due(&self) -> bool {
        true
    }
    async fn flush(&mut self) -> Result<(), ProcessError> {
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn the_consumer_records_lag_checkpoint_age_records_and_batch_latency_as_emf() {
    use serde_json::{Value, json};
    let kinesis = Arc::new(FakeKinesis::new());
    kinesis.create_stream(STREAM, 1, 1);
    kinesis.set_page_size(10);
    fill(&kinesis, SHARD0, 30, "r");
    let store = Arc::new(MemoryLeaseStore::new());
    let leases = coordinator(&store, "w1");
    let shards = aiops_aws::kinesis::KinesisPort::list_shards(kinesis.as_ref(), STREAM)
        .await
        .unwrap();
    leases
        .sync_shards(&shards, InitialPosition::TrimHorizon)
        .await
        .unwrap();
    let handle = leases.take().await.unwrap().remove(0);
    let registry = Arc::new(aiops_core::metrics::Registry::new("ingest"));
    let lines = Arc::new(Mutex::new(Vec::new()));
    let mut ctx = context(&kinesis, &leases);
    ctx.metrics = Some(registry.clone());
    let mut processor = Metered {
        registry: registry.clone(),
        lines: lines.clone(),
        batches: 0,
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let task =
        tokio::spawn(async move { consume_shard(&ctx, &handle, &mut processor, stop_rx).await });
    let l = lines.clone();
    wait_until(60, move || l.lock().unwrap().len() == 6).await;
    stop_tx.send(true).unwrap();
    assert_eq!(task.await.unwrap().unwrap(), ShardExit::Stopped);
    let mut all = lines.lock().unwrap().clone();
    // After the shard stopped: its gauges are gone, the stage counters stay.
    all.extend(registry.flush_lines(4));
    let docs: Vec<Value> = all
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let shard_doc = |ts: i64, age: f64, behind: f64| {
        json!({
            "_aws": {"Timestamp": ts, "CloudWatchMetrics": [{
                "Namespace": "aiops",
                "Dimensions": [["Stage", "ShardId"]],
                "Metrics": [
                    {"Name": "CheckpointAge", "Unit": "Milliseconds"},
                    {"Name": "MillisBehindLatest", "Unit": "Milliseconds"},
                ]}]},
            "Stage": "ingest",
            "ShardId": SHARD0,
            "CheckpointAge": age,
            "MillisBehindLatest": behind,
        })
    };
    let stage_doc = |ts: i64, behind: Option<f64>| {
        let mut d = json!({
            "_aws": {"Timestamp": ts, "CloudWatchMetrics": [{
                "Namespace": "aiops",
                "Dimensions": [["Stage"]],
                "Metrics": [
                    {"Name": "BatchLatency", "Unit": "Milliseconds"},
                    {"Name": "RecordsIn", "Unit": "Count"},
                ]}]},
            "Stage": "ingest",
            "BatchLatency": [0.0],
            "RecordsIn": 10.0,
        });
        if let Some(b) = behind {
            d["MillisBehindLatest"] = json!(b);
            d["_aws"]["CloudWatchMetrics"][0]["Metrics"] = json!([
                {"Name": "BatchLatency", "Unit": "Milliseconds"},
                {"Name": "MillisBehindLatest", "Unit": "Milliseconds"},
                {"Name": "RecordsIn", "Unit": "Count"},
            ]);
        }
        d
    };
    let stage_only_lag = |ts: i64, behind: f64| {
        json!({
            "_aws": {"Timestamp": ts, "CloudWatchMetrics": [{
                "Namespace": "aiops",
                "Dimensions": [["Stage"]],
                "Metrics": [{"Name": "MillisBehindLatest", "Unit": "Milliseconds"}]}]},
            "Stage": "ingest",
            "MillisBehindLatest": behind,
        })
    };
    // Batch 1: read at once (age 0), 1000 ms behind (the fake's answer short of the tip).
    // Batches 2 and 3: read 200 ms after the previous checkpoint (5 calls/s per shard);
    // the third page reaches the tip (0 behind). Each flush holds the previous batch's
    // RecordsIn and BatchLatency (0 ms on the paused clock).
    assert_eq!(
        docs,
        vec![
            stage_only_lag(1, 1000.0),
            shard_doc(1, 0.0, 1000.0),
            stage_doc(2, Some(1000.0)),
            shard_doc(2, 200.0, 1000.0),
            stage_doc(3, Some(0.0)),
            shard_doc(3, 200.0, 0.0),
            stage_doc(4, None),
        ]
    );
}
