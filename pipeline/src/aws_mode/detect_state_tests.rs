//! Tests of detect's saved state: a shard taken over mid-burst finds the burst once, with its
//! full count; a state behind the checkpoint does not forward findings twice; a corrupt or
//! unknown state starts cold and is counted.

use super::*;
use crate::aws_mode::snapshot::state_key;
use aiops_aws::testing::MemoryObjectStore;
use aiops_core::{EventBody, LogFields, LogLevel, Position as EventPosition};
use std::sync::Mutex;

const MIN: i64 = 60_000_000;
const T0: i64 = 1_714_550_400_000_000;

/// Keeps what it is given.
#[derive(Default)]
struct Kept(Mutex<Vec<PutEntry>>);

impl Forward for Kept {
    async fn forward(&self, entries: Vec<PutEntry>) -> Result<(), ProcessError> {
        self.0.lock().unwrap().extend(entries);
        Ok(())
    }
}

impl Kept {
    /// The findings forwarded so far, without their wall-clock time.
    fn findings(&self) -> Vec<Finding> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|e| {
                let mut f: Finding = serde_json::from_slice(&e.data).unwrap();
                f.detected_at = 0;
                f
            })
            .collect()
    }
}

fn record(seq: u64, t: i64, msg: &str) -> ConsumedRecord {
    let e = Event {
        event_id: format!("e{seq}"),
        event_time: t,
        ingest_time: t,
        decode_warnings: Vec::new(),
        account: Some("111122223333".into()),
        region: Some("us-east-1".into()),
        position: EventPosition::default(),
        body: EventBody::Logs(LogFields {
            log_group: "/app/api".into(),
            log_stream: "s".into(),
            message: msg.into(),
            level: LogLevel::detect(msg),
        }),
    };
    ConsumedRecord {
        stream: "events".into(),
        shard_id: "shardId-0".into(),
        sequence_number: seq.to_string(),
        sub_sequence_number: None,
        partition_key: "k".into(),
        data: serde_json::to_vec(&e).unwrap(),
        approximate_arrival_micros: None,
    }
}

/// Two hours of 2 errors a minute, a burst of 60 in minute 120, then five quiet-ish minutes.
fn traffic() -> Vec<ConsumedRecord> {
    let mut out = Vec::new();
    let mut seq = 100;
    let mut push = |t: i64, msg: String| {
        seq += 1;
        out.push(record(seq, t, &msg));
    };
    for m in 0..120 {
        for k in 0..2 {
            push(T0 + m * MIN + k * 25_000_000, "ERROR db timeout 42".into());
        }
    }
    for k in 0..60 {
        push(
            T0 + 120 * MIN + k * 1_000_000,
            format!("ERROR db timeout {k}"),
        );
    }
    for m in 121..127 {
        for k in 0..2 {
            push(T0 + m * MIN + k * 25_000_000, "ERROR db timeout 42".into());
        }
    }
    out
}

fn shared(objects: Arc<MemoryObjectStore>) -> Arc<DetectShared<Kept, MemoryObjectStore>> {
    let mut statistics = StatisticsConfig::default();
    statistics.multiline.enabled = false;
    Arc::new(DetectShared {
        forward: Kept::default(),
        rules: ChangeRules::new(&Default::default()).unwrap(),
        statistics,
        dedup: DedupConfig::default(),
        checkpoint_interval: Duration::from_secs(5),
        counters: Arc::default(),
        objects,
        prefix: "aiops".into(),
        baselines: None,
        state: Some(StateSettings {
            stream: "events".into(),
            interval: Duration::from_secs(30),
            max_bytes: 16 << 20,
        }),
    })
}

async fn feed(p: &mut DetectProcessor<Kept, MemoryObjectStore>, records: &[ConsumedRecord]) {
    for batch in records.chunks(25) {
        p.process(batch.to_vec()).await.unwrap();
    }
}

fn checkpoint(r: &ConsumedRecord) -> Checkpoint {
    Checkpoint::Sequence {
        sequence_number: r.sequence_number.clone(),
        sub_sequence_number: None,
    }
}

/// What one processor that never stopped forwards.
async fn uninterrupted(records: &[ConsumedRecord]) -> Vec<Finding> {
    let s = shared(Arc::new(MemoryObjectStore::new()));
    let mut p = DetectFactory(s.clone()).create("shardId-0");
    assert_eq!(p.resume(&Checkpoint::TrimHorizon).await.unwrap(), None);
    feed(&mut p, records).await;
    s.forward.findings()
}

fn burst_of(findings: &[Finding]) -> Vec<&Finding> {
    findings
        .iter()
        .filter(|f| f.evidence.window == Some((T0 + 120 * MIN, T0 + 121 * MIN)))
        .collect()
}

#[tokio::test]
async fn a_shard_taken_over_mid_burst_finds_the_burst_once_with_its_full_count() {
    let records = traffic();
    let straight = uninterrupted(&records).await;
    let burst = burst_of(&straight);
    assert_eq!(burst.len(), 1, "{straight:#?}");
    assert_eq!(burst[0].evidence.observed, Some(60.0));

    // Worker 1 reads up to the middle of the burst, saves its state and checkpoints there,
    // reads a few more records (not checkpointed) and dies.
    let objects = Arc::new(MemoryObjectStore::new());
    let s1 = shared(objects.clone());
    let mut p1 = DetectFactory(s1.clone()).create("shardId-0");
    let cut = 240 + 30;
    feed(&mut p1, &records[..cut]).await;
    p1.flush().await.unwrap();
    let key = state_key("aiops", "events", "shardId-0");
    assert!(objects.objects().contains_key(&key));
    feed(&mut p1, &records[cut..cut + 10]).await;
    drop(p1);

    // Worker 2 takes the lease at the checkpoint: it restores the state and reads on after it.
    let s2 = shared(objects.clone());
    let mut p2 = DetectFactory(s2.clone()).create("shardId-0");
    let start = p2.resume(&checkpoint(&records[cut - 1])).await.unwrap();
    assert_eq!(start, Some(checkpoint(&records[cut - 1])));
    feed(&mut p2, &records[cut..]).await;
    let mut both = s1.forward.findings();
    both.extend(s2.forward.findings());
    assert_eq!(both, straight);
    assert_eq!(burst_of(&both).len(), 1);
    let c = s2.counters.snapshot();
    assert_eq!(
        (c.state_restored, c.state_missing, c.state_refused),
        (1, 0, 0)
    );
    assert_eq!(c.replayed_records, 0);
}

#[tokio::test]
async fn a_state_ahead_of_the_checkpoint_starts_after_the_state() {
    // The worker died after saving its state but before the checkpoint: reading starts after
    // the state's position, not at the older checkpoint (those records are in the state).
    let records = traffic();
    let objects = Arc::new(MemoryObjectStore::new());
    let s1 = shared(objects.clone());
    let mut p1 = DetectFactory(s1).create("shardId-0");
    feed(&mut p1, &records[..270]).await;
    p1.flush().await.unwrap();
    let mut p2 = DetectFactory(shared(objects)).create("shardId-0");
    let start = p2.resume(&checkpoint(&records[200])).await.unwrap();
    assert_eq!(start, Some(checkpoint(&records[269])));
    assert_eq!(p2.replay_through, None);
}

#[tokio::test]
async fn a_state_behind_the_checkpoint_is_replayed_without_forwarding_findings_twice() {
    let records = traffic();
    let straight = uninterrupted(&records).await;
    // Worker 1 saves its state before the burst (record 230), then reads past the burst's
    // window close (its finding forwarded), checkpoints there, and dies; the object holds the
    // older state again (written late by a worker that had lost the lease).
    let objects = Arc::new(MemoryObjectStore::new());
    let key = state_key("aiops", "events", "shardId-0");
    let s1 = shared(objects.clone());
    let mut p1 = DetectFactory(s1.clone()).create("shardId-0");
    feed(&mut p1, &records[..230]).await;
    p1.flush().await.unwrap();
    let old = objects.objects()[&key].clone();
    let ckpt = 310;
    feed(&mut p1, &records[..ckpt][230..]).await;
    p1.flush().await.unwrap();
    assert_eq!(burst_of(&s1.forward.findings()).len(), 1);
    objects.insert(&key, old);
    drop(p1);

    let s2 = shared(objects);
    let mut p2 = DetectFactory(s2.clone()).create("shardId-0");
    let start = p2.resume(&checkpoint(&records[ckpt - 1])).await.unwrap();
    assert_eq!(start, Some(checkpoint(&records[229])));
    feed(&mut p2, &records[230..]).await;
    let mut both = s1.forward.findings();
    both.extend(s2.forward.findings());
    assert_eq!(both, straight, "each finding forwarded once");
    assert_eq!(s2.counters.snapshot().replayed_records, (ckpt - 230) as u64);
}

#[tokio::test]
async fn a_corrupt_or_unknown_state_is_counted_and_the_engine_starts_cold() {
    let records = traffic();
    let objects = Arc::new(MemoryObjectStore::new());
    let key = state_key("aiops", "events", "shardId-0");
    // Nothing saved yet: cold, counted as missing.
    let s = shared(objects.clone());
    let mut p = DetectFactory(s.clone()).create("shardId-0");
    assert_eq!(p.resume(&Checkpoint::TrimHorizon).await.unwrap(), None);
    assert_eq!(s.counters.snapshot().state_missing, 1);
    feed(&mut p, &records[..50]).await;
    p.flush().await.unwrap();
    let good = objects.objects()[&key].clone();

    // Not gzip; gzip of something else; truncated; a header of a future version.
    let mut future = Vec::new();
    {
        use std::io::Write as _;
        let mut gz = flate2::write::GzEncoder::new(&mut future, flate2::Compression::fast());
        gz.write_all(b"{\"format\":\"aiops-detect-state\",\"version\":2}\nnull\n{}")
            .unwrap();
        gz.finish().unwrap();
    }
    let bad: Vec<Vec<u8>> = vec![
        b"not a state".to_vec(),
        good[..good.len() / 2].to_vec(),
        future,
    ];
    for (i, body) in bad.into_iter().enumerate() {
        objects.insert(&key, body);
        let s = shared(objects.clone());
        let mut p = DetectFactory(s.clone()).create("shardId-0");
        let cp = checkpoint(&records[49]);
        assert_eq!(p.resume(&cp).await.unwrap(), None, "case {i}");
        let c = s.counters.snapshot();
        assert_eq!((c.state_refused, c.state_restored), (1, 0), "case {i}");
        assert_eq!(p.engine.counters().events, 0, "case {i}: cold");
    }
    // Another statistics configuration: refused too.
    objects.insert(&key, good);
    let mut other = (*shared(objects.clone())).clone_for_test();
    other.statistics.window_secs = 300;
    let s = Arc::new(other);
    let mut p = DetectFactory(s.clone()).create("shardId-0");
    assert_eq!(p.resume(&checkpoint(&records[49])).await.unwrap(), None);
    assert_eq!(s.counters.snapshot().state_refused, 1);
}

#[tokio::test]
async fn a_state_too_large_leaves_a_marker_so_a_restart_starts_cold() {
    let records = traffic();
    let objects = Arc::new(MemoryObjectStore::new());
    let mut tiny = (*shared(objects.clone())).clone_for_test();
    if let Some(st) = tiny.state.as_mut() {
        st.max_bytes = 600;
    }
    let s = Arc::new(tiny);
    let mut p = DetectFactory(s.clone()).create("shardId-0");
    feed(&mut p, &records[..100]).await;
    p.flush().await.unwrap();
    assert_eq!(s.counters.snapshot().state_too_large, 1);
    let mut p2 = DetectFactory(s.clone()).create("shardId-0");
    assert_eq!(p2.resume(&checkpoint(&records[99])).await.unwrap(), None);
    assert_eq!(s.counters.snapshot().state_missing, 1);
}

impl DetectShared<Kept, MemoryObjectStore> {
    /// A copy with fresh counters and forward (the test's way to vary one setting).
    fn clone_for_test(&self) -> Self {
        DetectShared {
            forward: Kept::default(),
            rules: self.rules.clone(),
            statistics: self.statistics.clone(),
            dedup: self.dedup,
            checkpoint_interval: self.checkpoint_interval,
            counters: Arc::default(),
            objects: self.objects.clone(),
            prefix: self.prefix.clone(),
            baselines: None,
            state: self.state.clone(),
        }
    }
}
