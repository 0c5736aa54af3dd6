//! The act stage on a Kinesis fake with the DynamoDB store on moto (skipped without
//! `AIOPS_MOTO_ENDPOINT`): a finding whose incident item can never be written goes to the
//! dead letters with the reason, the next finding is handled, and the shard checkpoints past
//! both.

use super::*;
use aiops_act::aws::{Blocking, load_sdk_config};
use aiops_act::dynamo::DynamoStore;
use aiops_act::notify::NoopNotifier;
use aiops_act::setup::{DynExecutor, DynExplainer, DynNotifier, DynStore};
use aiops_act::{ActConfig, DryRunExecutor, StatisticalExplainer, StoreConfig, Workflow};
use aiops_aws::consumer::{ConsumerConfig, ProcessorFactory, ShardProcessor, Worker};
use aiops_aws::coordinator::{LeaseConfig, LeaseCoordinator};
use aiops_aws::lease::{Checkpoint, Lease};
use aiops_aws::testing::{FakeKinesis, MemoryLeaseStore, MemoryObjectStore};
use aiops_core::{Evidence, FindingKind, ResourceKey};
use std::collections::BTreeMap;

const STREAM: &str = "decisions";

fn finding(id: &str, sample_bytes: usize) -> Finding {
    Finding {
        suppressed: None,
        finding_id: id.into(),
        kind: FindingKind::ChangeRule,
        detector: "ssm_delete_parameter".into(),
        event_time: 1_700_000_000_000_000,
        detected_at: 1_700_000_001_000_000,
        resource: Some(ResourceKey {
            resource_type: "ssm_parameter".into(),
            resource_id: format!("/prod/{id}"),
            account: Some("123456789012".into()),
            region: Some("us-east-1".into()),
        }),
        score: 1.0,
        summary: "deleted".into(),
        default_action: Some("restore".into()),
        recoverable: true,
        evidence: Evidence {
            samples: vec!["x".repeat(sample_bytes)],
            ..Evidence::default()
        },
        direction: None,
        priority: aiops_core::Priority::High,
    }
}

#[test]
fn a_refused_finding_goes_to_dead_letters_and_the_shard_checkpoints() {
    let Some(endpoint) = aiops_core::testenv::moto_endpoint(
        "a_refused_finding_goes_to_dead_letters_and_the_shard_checkpoints",
    ) else {
        return;
    };
    let rt = Blocking::owned(2).unwrap();
    let sdk = rt.block_on(load_sdk_config(Some("us-east-1"), Some(&endpoint)));
    let tag = uuid::Uuid::new_v4().simple().to_string()[..10].to_string();
    let store_cfg = StoreConfig {
        backend: "dynamodb".into(),
        incidents_table: format!("incidents-{tag}"),
        locks_table: format!("locks-{tag}"),
        stats_table: String::new(),
        // Everything inline, no S3 offload: a large finding outgrows the item bound.
        inline_finding_max_bytes: 4 << 20,
        evidence_bucket: String::new(),
        ..StoreConfig::default()
    };
    let store = DynamoStore::new(&sdk, rt.clone(), store_cfg.clone());
    let check = DynamoStore::new(&sdk, rt.clone(), store_cfg.clone());
    store.create_tables().unwrap();
    let config = ActConfig {
        store: store_cfg,
        ..ActConfig::default()
    };
    let workflow: ActWorkflow = Workflow::new(
        Box::new(store) as DynStore,
        Box::new(StatisticalExplainer::new(BTreeMap::new())) as DynExplainer,
        Box::new(DryRunExecutor) as DynExecutor,
        config,
        "w1".into(),
    )
    .with_notifier(Box::new(NoopNotifier) as DynNotifier);

    let kinesis = Arc::new(FakeKinesis::new());
    kinesis.create_stream(STREAM, 1, 99);
    let shard = "shardId-000000000000";
    let big = serde_json::to_vec(&finding("big", 500 * 1024)).unwrap();
    let seq_big = kinesis.append(STREAM, shard, "k", &big);
    let small = serde_json::to_vec(&finding("small", 10)).unwrap();
    let seq_small = kinesis.append(STREAM, shard, "k", &small);

    let leases_store = Arc::new(MemoryLeaseStore::new());
    let leases = Arc::new(LeaseCoordinator::new(
        leases_store.clone(),
        "w1",
        "act",
        STREAM,
        LeaseConfig {
            take_interval_ms: 100,
            ..LeaseConfig::default()
        },
    ));
    let counters = Arc::new(StageCounters::default());
    let objects = Arc::new(MemoryObjectStore::new());
    // The workflow's SDK runtime must be dropped outside the async runtime: keep a handle.
    let workflow = Arc::new(workflow);
    let factory = ActFactory(Arc::new(ActShared {
        workflow: workflow.clone(),
        checkpoint_interval: Duration::from_millis(50),
        counters: counters.clone(),
        objects: objects.clone(),
        prefix: "history".into(),
        archive: ArchiveConfig::default(),
        in_flight: Arc::new(tokio::sync::Semaphore::new(4)),
    }));
    let worker = Worker::new(
        kinesis.clone(),
        leases,
        STREAM,
        ConsumerConfig {
            idle_sleep_ms: 50,
            ..ConsumerConfig::default()
        },
        Arc::new(factory),
    );
    let key = Lease::key_of("act", STREAM, shard);
    let want = Checkpoint::Sequence {
        sequence_number: seq_small.clone(),
        sub_sequence_number: None,
    };
    let tokio_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    tokio_rt.block_on(async {
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = tokio::spawn(worker.run(stop_rx));
        for _ in 0..300 {
            if leases_store
                .snapshot()
                .get(&key)
                .is_some_and(|l| l.checkpoint == want)
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        stop_tx.send(true).unwrap();
        task.await.unwrap().unwrap();
    });
    drop(tokio_rt);

    // The shard checkpointed past both records.
    assert_eq!(leases_store.snapshot()[&key].checkpoint, want);
    let c = counters.snapshot();
    assert_eq!(c.records, 2);
    assert_eq!(c.findings, 2);
    assert_eq!(c.dead_letters, 1);
    assert_eq!(c.incidents, 1);
    // One dead-letter object, one line: the refused record with the reason.
    let dead: Vec<(String, Vec<u8>)> = objects
        .objects()
        .into_iter()
        .filter(|(k, _)| k.starts_with("history/dead_letters/"))
        .collect();
    assert_eq!(dead.len(), 1, "{:?}", objects.objects().keys());
    let text = String::from_utf8(dead[0].1.clone()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1);
    let line: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(line["stream"], STREAM);
    assert_eq!(line["shard_id"], shard);
    assert_eq!(line["sequence_number"], seq_big.as_str());
    assert_eq!(line["size"], big.len());
    let reason = line["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("finding big cannot be handled: incident store: rejected for good: incident inc-big would be "),
        "{reason}"
    );
    assert!(reason.ends_with("above the 358400-byte bound"), "{reason}");
    // The next finding was handled; the refused one left nothing behind.
    use aiops_act::IncidentStore;
    let got = (
        check.get("inc-small").unwrap(),
        check.get("inc-big").unwrap(),
    );
    assert!(got.0.is_some_and(|i| i.state.is_terminal()));
    assert_eq!(got.1, None);
}

/// Runs every build for 400 ms and records how many ran at once, at most.
#[derive(Default)]
struct Slow {
    now: std::sync::atomic::AtomicUsize,
    max: std::sync::atomic::AtomicUsize,
    runs: std::sync::Mutex<Vec<String>>,
}

impl aiops_act::RecoveryExecutor for Slow {
    fn run(
        &self,
        plan: &aiops_act::RecoveryPlan,
        started: &mut dyn FnMut(&str),
    ) -> aiops_act::BuildResult {
        let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(n, Ordering::SeqCst);
        let id = format!("dry-run:{}:{}", plan.project, uuid::Uuid::new_v4().simple());
        started(&id);
        std::thread::sleep(Duration::from_millis(400));
        self.runs
            .lock()
            .unwrap()
            .push(plan.environment["RESOURCE_ID"].clone());
        self.now.fetch_sub(1, Ordering::SeqCst);
        aiops_act::BuildResult {
            build_id: Some(id),
            outcome: aiops_act::BuildOutcome::DryRun,
        }
    }
}

fn record(seq: usize, f: &Finding) -> ConsumedRecord {
    ConsumedRecord {
        stream: STREAM.into(),
        shard_id: "shardId-000000000000".into(),
        sequence_number: seq.to_string(),
        sub_sequence_number: None,
        partition_key: "k".into(),
        data: serde_json::to_vec(f).unwrap(),
        approximate_arrival_micros: None,
    }
}

fn profiles() -> BTreeMap<String, aiops_act::RuleProfile> {
    BTreeMap::from([(
        "ssm_delete_parameter".to_string(),
        aiops_act::RuleProfile {
            severity: 7,
            category: "destructive".into(),
        },
    )])
}

/// Handles `findings` as one batch with `permits` findings in flight; returns the executor.
async fn batch(findings: &[Finding], permits: usize) -> (Arc<Slow>, Arc<StageCounters>) {
    let slow = Arc::new(Slow::default());
    let workflow: ActWorkflow = Workflow::new(
        Box::new(aiops_act::SqliteStore::in_memory().unwrap()) as DynStore,
        Box::new(StatisticalExplainer::new(profiles())) as DynExplainer,
        Box::new(slow.clone()) as DynExecutor,
        ActConfig::default(),
        "w1".into(),
    )
    .with_notifier(Box::new(NoopNotifier) as DynNotifier);
    let counters = Arc::new(StageCounters::default());
    let factory = ActFactory(Arc::new(ActShared {
        workflow: Arc::new(workflow),
        checkpoint_interval: Duration::from_secs(60),
        counters: counters.clone(),
        objects: Arc::new(MemoryObjectStore::new()),
        prefix: "history".into(),
        archive: ArchiveConfig::default(),
        in_flight: Arc::new(tokio::sync::Semaphore::new(permits)),
    }));
    let mut p = factory.create("shardId-000000000000");
    let records = findings
        .iter()
        .enumerate()
        .map(|(i, f)| record(i + 1, f))
        .collect();
    p.process(records).await.unwrap();
    (slow, counters)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn findings_of_different_resources_are_handled_side_by_side_within_the_bound() {
    let three: Vec<Finding> = ["a", "b", "c"].iter().map(|id| finding(id, 10)).collect();
    let (slow, c) = batch(&three, 4).await;
    // Three resources, each apply then verify: three builds at once.
    assert_eq!(slow.max.load(Ordering::SeqCst), 3);
    assert_eq!(slow.runs.lock().unwrap().len(), 6);
    assert_eq!(c.snapshot().incidents, 3);
    // Bounded: two permits, at most two at once.
    let (slow, _) = batch(&three, 2).await;
    assert_eq!(slow.max.load(Ordering::SeqCst), 2);
    assert_eq!(slow.runs.lock().unwrap().len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn findings_of_one_resource_are_handled_one_at_a_time_in_order() {
    // Two findings on one resource: one lane, in order; the second is within the first's
    // cooldown, so only the first recovers (apply, verify), never two builds at once.
    let mut second = finding("a", 10);
    second.finding_id = "a2".into();
    let (slow, c) = batch(&[finding("a", 10), second], 4).await;
    assert_eq!(slow.max.load(Ordering::SeqCst), 1);
    assert_eq!(
        *slow.runs.lock().unwrap(),
        vec!["/prod/a".to_string(), "/prod/a".to_string()]
    );
    assert_eq!(c.snapshot().incidents, 2);
}

#[test]
fn lanes_group_by_resource_in_record_order() {
    let mut a2 = finding("a", 10);
    a2.finding_id = "a2".into();
    let mut none = finding("n", 10);
    none.resource = None;
    let items: Vec<(ConsumedRecord, Finding)> = [finding("a", 10), finding("b", 10), a2, none]
        .into_iter()
        .enumerate()
        .map(|(i, f)| (record(i + 1, &f), f))
        .collect();
    let got: Vec<Vec<String>> = lanes(items)
        .into_iter()
        .map(|l| l.into_iter().map(|(_, f)| f.finding_id).collect())
        .collect();
    assert_eq!(got, vec![vec!["a", "a2"], vec!["b"], vec!["n"]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_finding_is_recorded_with_its_verdict_in_the_findings_table() {
    use aiops_act::{IncidentStore, Suppression, SuppressionKind};
    let store = aiops_act::SqliteStore::in_memory().unwrap();
    // The resource of finding "a" is suppressed; "b" is not.
    let quiet = finding("a", 10);
    let key = quiet.resource.as_ref().unwrap().key();
    let now = aiops_core::time::now_micros();
    store
        .put_suppression(&Suppression::new(
            SuppressionKind::Resource,
            &key,
            Some("planned migration".into()),
            now,
            Some(3600),
        ))
        .unwrap();
    let workflow: ActWorkflow = Workflow::new(
        Box::new(store) as DynStore,
        Box::new(StatisticalExplainer::new(profiles())) as DynExplainer,
        Box::new(DryRunExecutor) as DynExecutor,
        ActConfig::default(),
        "w1".into(),
    )
    .with_notifier(Box::new(NoopNotifier) as DynNotifier);
    let counters = Arc::new(StageCounters::default());
    let objects = Arc::new(MemoryObjectStore::new());
    let factory = ActFactory(Arc::new(ActShared {
        workflow: Arc::new(workflow),
        checkpoint_interval: Duration::from_secs(60),
        counters: counters.clone(),
        objects: objects.clone(),
        prefix: "history".into(),
        archive: ArchiveConfig::default(),
        in_flight: Arc::new(tokio::sync::Semaphore::new(2)),
    }));
    let mut p = factory.create("shardId-000000000000");
    p.process(vec![record(1, &quiet), record(2, &finding("b", 10))])
        .await
        .unwrap();
    p.flush().await.unwrap();
    let c = counters.snapshot();
    assert_eq!((c.findings, c.suppressed_findings, c.incidents), (2, 1, 1));
    // Both findings are in the findings table, "a" marked with the suppression's reason.
    let mut rows: Vec<(String, Option<String>)> = Vec::new();
    for (k, body) in objects.objects() {
        if !k.starts_with("history/findings/") {
            continue;
        }
        let mut file = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut file, &body).unwrap();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
        for batch in reader {
            for f in aiops_ingest::archive::decode_findings_batch(&batch.unwrap()).unwrap() {
                rows.push((f.finding_id, f.suppressed));
            }
        }
    }
    rows.sort();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0].0, "a");
    assert!(
        rows[0]
            .1
            .as_deref()
            .is_some_and(|r| r.contains("planned migration")),
        "{rows:?}"
    );
    assert_eq!(rows[1], ("b".to_string(), None));
    // The incidents table has the one incident ("b").
    assert_eq!(
        objects
            .objects()
            .keys()
            .filter(|k| k.starts_with("history/incidents/"))
            .count(),
        1
    );
}
