//! The adapters against moto in server mode (DESIGN §8) through the real SDK clients: the
//! DynamoDB lease store's conditional writes, S3 single and multipart uploads, setup's
//! idempotence, and a producer/worker round trip on a real (emulated) Kinesis stream.
//!
//! Needs `AIOPS_MOTO_ENDPOINT` (set by `./scripts/test`, or `scripts/moto-server start`);
//! without it every test prints why and returns, so `cargo test` alone passes.

use aiops_aws::backoff::BackoffConfig;
use aiops_aws::consumer::{
    ConsumedRecord, ConsumerConfig, ProcessError, ProcessorFactory, ShardProcessor, Worker,
};
use aiops_aws::coordinator::{LeaseConfig, LeaseCoordinator};
use aiops_aws::kinesis::{KinesisPort, PutEntry, SdkKinesis, ShardInfo};
use aiops_aws::lease::{Checkpoint, DynamoLeaseStore, Lease, LeaseChange, LeaseStore};
use aiops_aws::objects::{ObjectStore, S3Config, S3ObjectStore};
use aiops_aws::producer::Producer;
use aiops_aws::setup;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

async fn sdk() -> Option<SdkConfig> {
    let endpoint = aiops_core::testenv::moto_endpoint("aws moto test")?;
    Some(
        aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(endpoint)
            .test_credentials()
            .load()
            .await,
    )
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

#[tokio::test]
async fn dynamodb_lease_writes_are_conditional() {
    let Some(sdk) = sdk().await else { return };
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    let table = unique("leases");
    let created = setup::ensure_table(&ddb, &table, "leaseKey").await.unwrap();
    assert_eq!(created.outcome, "created");
    assert_eq!(
        setup::ensure_table(&ddb, &table, "leaseKey")
            .await
            .unwrap()
            .outcome,
        "exists"
    );
    let store = DynamoLeaseStore::new(ddb, &table);
    let lease = Lease {
        key: Lease::key_of("ingest", "raw", "shardId-000000000001"),
        stage: "ingest".into(),
        stream: "raw".into(),
        shard_id: "shardId-000000000001".into(),
        owner: None,
        counter: 0,
        checkpoint: Checkpoint::TrimHorizon,
        owner_switches_since_checkpoint: 0,
        parent_shard_ids: vec!["shardId-000000000000".into()],
        last_renewal_millis: None,
    };
    assert!(store.create(&lease).await.unwrap());
    assert!(!store.create(&lease).await.unwrap());
    let take = LeaseChange::Take { owner: "w1".into() };
    // Wrong counter, then wrong owner expectation: refused.
    assert!(
        !store
            .update(&lease.key, 5, None, &take, 1, 2)
            .await
            .unwrap()
    );
    assert!(
        !store
            .update(&lease.key, 0, Some("w9"), &take, 1, 2)
            .await
            .unwrap()
    );
    assert!(
        store
            .update(&lease.key, 0, None, &take, 1000, 11_000)
            .await
            .unwrap()
    );
    // A second taker with the stale view loses.
    let take2 = LeaseChange::Take { owner: "w2".into() };
    assert!(
        !store
            .update(&lease.key, 0, None, &take2, 1, 2)
            .await
            .unwrap()
    );
    assert!(
        store
            .update(&lease.key, 1, Some("w1"), &LeaseChange::Renew, 2000, 12_000)
            .await
            .unwrap()
    );
    let cp = Checkpoint::Sequence {
        sequence_number: "49590338271490256608559692538361571095921575989136588898".into(),
        sub_sequence_number: Some(4),
    };
    assert!(
        store
            .update(
                &lease.key,
                2,
                Some("w1"),
                &LeaseChange::Checkpoint(cp.clone()),
                3000,
                13_000
            )
            .await
            .unwrap()
    );
    let got = store.get(&lease.key).await.unwrap().unwrap();
    assert_eq!(got.owner.as_deref(), Some("w1"));
    assert_eq!(got.counter, 3);
    assert_eq!(got.checkpoint, cp);
    assert_eq!(got.owner_switches_since_checkpoint, 0);
    assert_eq!(
        got.parent_shard_ids,
        vec!["shardId-000000000000".to_string()]
    );
    assert_eq!(got.last_renewal_millis, Some(3000));
    assert!(
        store
            .update(&lease.key, 3, Some("w1"), &LeaseChange::Release, 4000, 0)
            .await
            .unwrap()
    );
    let released = store.get(&lease.key).await.unwrap().unwrap();
    assert_eq!(released.owner, None);
    assert_eq!(released.counter, 4);
    let other = Lease {
        key: Lease::key_of("detect", "events", "shardId-000000000000"),
        stage: "detect".into(),
        stream: "events".into(),
        ..lease.clone()
    };
    assert!(store.create(&other).await.unwrap());
    let listed = store.list("ingest:raw:").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].key, lease.key);
    // Deletes are conditional on the counter: a stale view keeps the lease.
    assert!(!store.delete(&lease.key, 3).await.unwrap());
    assert!(store.get(&lease.key).await.unwrap().is_some());
    assert!(store.delete(&lease.key, 4).await.unwrap());
    assert_eq!(store.get(&lease.key).await.unwrap(), None);
    assert!(!store.delete(&lease.key, 4).await.unwrap());
    assert_eq!(store.list("ingest:raw:").await.unwrap().len(), 0);
}

/// Issue 18, on DynamoDB: a parent shard that left the stream with an unfinished lease counts
/// as finished for its children; a finished lease is deleted once it is older than
/// `finished_retention_ms` and every child started, and kept while younger or while a child
/// has not started; an aged-out lease goes once its children started.
#[tokio::test]
async fn dynamodb_lease_cleanup_and_parents_that_left_the_stream() {
    let Some(sdk) = sdk().await else { return };
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    let table = unique("leases");
    setup::ensure_table(&ddb, &table, "leaseKey").await.unwrap();
    let store = Arc::new(DynamoLeaseStore::new(ddb, &table));
    let coord = LeaseCoordinator::new(
        store.clone(),
        "w1",
        "ingest",
        "raw",
        LeaseConfig {
            finished_retention_ms: 60_000,
            ..LeaseConfig::default()
        },
    );
    let shard = |id: &str, parent: Option<&str>, closed: bool| ShardInfo {
        shard_id: id.into(),
        parent_shard_id: parent.map(str::to_string),
        adjacent_parent_shard_id: None,
        ending_sequence_number: closed.then(|| "99".to_string()),
    };
    // "gone" aged out of the stream: ListShards no longer returns it, its child "e" names it.
    let shards = vec![
        shard("p", None, true),
        shard("c1", Some("p"), false),
        shard("c2", Some("p"), false),
        shard("q", None, true),
        shard("d", Some("q"), false),
        shard("e", Some("gone"), false),
    ];
    let listed: HashSet<String> = shards.iter().map(|s| s.shard_id.clone()).collect();
    let key = |id: &str| Lease::key_of("ingest", "raw", id);
    let seq = |n: &str| Checkpoint::Sequence {
        sequence_number: n.into(),
        sub_sequence_number: None,
    };
    const T: i64 = 1_700_000_000_000;
    // (shard, parents, checkpoint written at T; None: left at TRIM_HORIZON)
    let leases: [(&str, &[&str], Option<Checkpoint>); 7] = [
        ("p", &[], Some(Checkpoint::ShardEnd)),
        ("c1", &["p"], Some(seq("5"))),
        ("c2", &["p"], None),
        ("q", &[], Some(Checkpoint::ShardEnd)),
        ("d", &["q"], Some(seq("7"))),
        ("gone", &[], Some(seq("3"))),
        ("e", &["gone"], None),
    ];
    for (id, parents, cp) in &leases {
        let lease = Lease {
            key: key(id),
            stage: "ingest".into(),
            stream: "raw".into(),
            shard_id: id.to_string(),
            owner: None,
            counter: 0,
            checkpoint: Checkpoint::TrimHorizon,
            owner_switches_since_checkpoint: 0,
            parent_shard_ids: parents.iter().map(|p| p.to_string()).collect(),
            last_renewal_millis: None,
        };
        assert!(store.create(&lease).await.unwrap());
        if let Some(cp) = cp {
            let change = LeaseChange::Checkpoint(cp.clone());
            assert!(
                store
                    .update(&key(id), 0, None, &change, T, T + 10_000)
                    .await
                    .unwrap()
            );
        }
    }

    // The unfinished lease of a parent absent from the listing counts as finished; a listed
    // unfinished parent does not; an empty listing (not known yet) only trusts SHARD_END.
    let parents = |ps: &[&str]| ps.iter().map(|p| p.to_string()).collect::<Vec<_>>();
    assert!(
        coord
            .parents_finished(&parents(&["gone"]), &listed)
            .await
            .unwrap()
    );
    assert!(
        coord
            .parents_finished(&parents(&["p"]), &listed)
            .await
            .unwrap()
    );
    assert!(
        !coord
            .parents_finished(&parents(&["c1"]), &listed)
            .await
            .unwrap()
    );
    assert!(
        !coord
            .parents_finished(&parents(&["gone"]), &HashSet::new())
            .await
            .unwrap()
    );
    assert!(
        !coord
            .parents_finished(&parents(&["gone", "c1"]), &listed)
            .await
            .unwrap()
    );

    // One millisecond short of the retention: nothing; "gone" waits for its child "e".
    assert_eq!(
        coord.clean_up(&shards, T + 59_999).await.unwrap(),
        Vec::<String>::new()
    );
    // At the retention: "q" (its child started) goes; "p" stays (child "c2" has not started).
    assert_eq!(
        coord.clean_up(&shards, T + 60_000).await.unwrap(),
        vec![key("q")]
    );
    // "e" starts: the aged-out "gone" goes, whatever its age.
    let change = LeaseChange::Checkpoint(seq("1"));
    assert!(
        store
            .update(&key("e"), 0, None, &change, T, T)
            .await
            .unwrap()
    );
    assert_eq!(coord.clean_up(&shards, T).await.unwrap(), vec![key("gone")]);
    // "c2" starts: "p" goes once old enough.
    assert!(
        store
            .update(&key("c2"), 0, None, &change, T, T)
            .await
            .unwrap()
    );
    assert_eq!(
        coord.clean_up(&shards, T + 59_999).await.unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(
        coord.clean_up(&shards, T + 60_000).await.unwrap(),
        vec![key("p")]
    );
    let left: Vec<String> = store
        .list(&Lease::prefix_of("ingest", "raw"))
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.shard_id)
        .collect();
    assert_eq!(left, vec!["c1", "c2", "d", "e"]);
    // A delete is conditional on the counter read: a lease written since is kept.
    assert!(!store.delete(&key("d"), 0).await.unwrap());
    assert!(store.get(&key("d")).await.unwrap().is_some());
    // A cleaned-up parent still listed is not given a new lease (it would be read again).
    assert_eq!(
        coord
            .sync_shards(
                &shards,
                aiops_aws::coordinator::InitialPosition::TrimHorizon
            )
            .await
            .unwrap(),
        0
    );
}

#[tokio::test]
async fn s3_small_and_multipart_objects_read_back_whole() {
    let Some(sdk) = sdk().await else { return };
    let s3 = aiops_aws::sdk::s3_client(&sdk, true);
    let bucket = unique("aiops-test");
    assert_eq!(
        setup::ensure_bucket(&s3, &bucket, Some("us-east-1"))
            .await
            .unwrap()
            .outcome,
        "created"
    );
    assert_eq!(
        setup::ensure_bucket(&s3, &bucket, Some("us-east-1"))
            .await
            .unwrap()
            .outcome,
        "exists"
    );
    let store = S3ObjectStore::new(
        s3.clone(),
        &bucket,
        S3Config {
            multipart_threshold_bytes: 6 * 1024 * 1024,
            part_size_bytes: 5 * 1024 * 1024,
            ..S3Config::default()
        },
    );
    let big: Vec<u8> = (0..11 * 1024 * 1024 + 7).map(|i| (i % 251) as u8).collect();
    store
        .put("x/big.bin", big.clone(), "application/octet-stream")
        .await
        .unwrap();
    store
        .put("x/small.bin", b"hello".to_vec(), "text/plain")
        .await
        .unwrap();
    assert_eq!(store.stats().multipart_uploads.load(Ordering::SeqCst), 1);
    assert_eq!(store.stats().parts.load(Ordering::SeqCst), 3);
    assert_eq!(store.stats().single_puts.load(Ordering::SeqCst), 1);
    let got = s3
        .get_object()
        .bucket(&bucket)
        .key("x/big.bin")
        .send()
        .await
        .unwrap();
    let body = got.body.collect().await.unwrap().into_bytes();
    assert_eq!(body.len(), big.len());
    assert!(body.as_ref() == big.as_slice());
    // A missing bucket is not retried for ever.
    let missing = S3ObjectStore::new(s3, &unique("missing"), S3Config::default());
    let err = missing
        .put("k", b"x".to_vec(), "text/plain")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("NoSuchBucket"), "{err}");
}

#[derive(Default)]
struct Seen(Mutex<Vec<(String, String)>>);

struct Rec(Arc<Seen>, usize);

impl ShardProcessor for Rec {
    async fn process(&mut self, records: Vec<ConsumedRecord>) -> Result<(), ProcessError> {
        let mut s = self.0.0.lock().unwrap();
        for r in records {
            self.1 += 1;
            s.push((r.shard_id, String::from_utf8(r.data).unwrap()));
        }
        Ok(())
    }
    fn flush_due(&self) -> bool {
        self.1 >= 100
    }
    async fn flush(&mut self) -> Result<(), ProcessError> {
        self.1 = 0;
        Ok(())
    }
}

struct RecFactory(Arc<Seen>);

impl ProcessorFactory for RecFactory {
    type Processor = Rec;
    fn create(&self, _shard: &str) -> Rec {
        Rec(self.0.clone(), 0)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_and_worker_round_trip_on_kinesis() {
    let Some(sdk) = sdk().await else { return };
    let kinesis_client = aws_sdk_kinesis::Client::new(&sdk);
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    let stream = unique("stream");
    let table = unique("leases");
    assert_eq!(
        setup::ensure_stream(&kinesis_client, &stream, 2)
            .await
            .unwrap()
            .outcome,
        "created"
    );
    assert_eq!(
        setup::ensure_stream(&kinesis_client, &stream, 2)
            .await
            .unwrap()
            .outcome,
        "exists"
    );
    setup::ensure_table(&ddb, &table, "leaseKey").await.unwrap();
    let kinesis = Arc::new(SdkKinesis::new(kinesis_client));
    let producer = Producer::new(kinesis.clone(), BackoffConfig::default());
    let entries: Vec<PutEntry> = (0..1200)
        .map(|i| PutEntry {
            partition_key: format!("key-{}", i % 37),
            data: format!("record-{i:05}").into_bytes(),
        })
        .collect();
    producer.put_all(&stream, &entries).await.unwrap();
    assert_eq!(producer.stats().calls.load(Ordering::SeqCst), 3);
    let store = Arc::new(DynamoLeaseStore::new(ddb, &table));
    let leases = Arc::new(LeaseCoordinator::new(
        store.clone(),
        "w1",
        "ingest",
        &stream,
        LeaseConfig {
            take_interval_ms: 200,
            ..LeaseConfig::default()
        },
    ));
    let seen = Arc::new(Seen::default());
    let worker = Worker::new(
        kinesis.clone(),
        leases,
        &stream,
        ConsumerConfig {
            idle_sleep_ms: 200,
            ..ConsumerConfig::default()
        },
        Arc::new(RecFactory(seen.clone())),
    );
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(worker.run(stop_rx));
    for _ in 0..300 {
        if seen.0.lock().unwrap().len() >= 1200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop_tx.send(true).unwrap();
    let report = task.await.unwrap().unwrap();
    let got = seen.0.lock().unwrap().clone();
    assert_eq!(got.len(), 1200, "{report:?}");
    let distinct: HashSet<&String> = got.iter().map(|g| &g.1).collect();
    assert_eq!(distinct.len(), 1200);
    // Each shard checkpointed at its last sequence number, released at the stop.
    let shards = kinesis.list_shards(&stream).await.unwrap();
    let mut per_shard: BTreeMap<String, usize> = BTreeMap::new();
    for (s, _) in &got {
        *per_shard.entry(s.clone()).or_default() += 1;
    }
    assert_eq!(per_shard.len(), 2);
    for shard in shards {
        let lease = store
            .get(&Lease::key_of("ingest", &stream, &shard.shard_id))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(lease.owner, None);
        // moto numbers each shard's records 1..=n.
        assert_eq!(
            lease.checkpoint,
            Checkpoint::Sequence {
                sequence_number: per_shard[&shard.shard_id].to_string(),
                sub_sequence_number: None
            }
        );
    }
    assert_eq!(report.records, 1200);
}
