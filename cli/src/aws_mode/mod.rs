//! aws mode (DESIGN §1): each stage its own process on Kinesis — `aiops ingest`,
//! `aiops detect`, `aiops act` — or all three in one process (`aiops run` with
//! `mode = "aws"`), plus `aiops setup` to create what the configuration names.
//!
//! Streams: `raw` (what the sources write) -> ingest -> `events` (one JSON `Event` per
//! record, partition key `Event::partition_key()`) -> detect -> `decisions` (one JSON
//! `Finding` per record, partition key = the finding's resource key, or its id) -> act
//! (incident workflow in DynamoDB). Several workers of a stage share a stream's shards through
//! the lease table; a worker's id defaults to the host name plus a random suffix.

mod act;
mod config;
mod counters;
mod detect;
mod ingest;
mod tables;

pub use config::AwsSection;

use crate::config::PipelineConfig;
use aiops_act::RuleProfile;
use aiops_aws::consumer::{ProcessorFactory, Worker, WorkerReport};
use aiops_aws::coordinator::LeaseCoordinator;
use aiops_aws::kinesis::SdkKinesis;
use aiops_aws::lease::DynamoLeaseStore;
use aiops_aws::objects::S3ObjectStore;
use aiops_aws::producer::Producer;
use aiops_core::stable_hash;
use aiops_detect::rules::ChangeRules;
use anyhow::{Context, Result, bail};
use counters::StageCounters;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The stage subcommands of aws mode.
#[derive(clap::Subcommand)]
pub enum AwsCommand {
    /// aws mode: run the ingest stage (raw stream -> S3 history + events stream) until
    /// Ctrl-C or SIGTERM.
    Ingest(StageArgs),
    /// aws mode: run the detect stage (events stream -> decisions stream) until Ctrl-C or
    /// SIGTERM.
    Detect(StageArgs),
    /// aws mode: run the act stage (decisions stream -> incidents in DynamoDB) until Ctrl-C
    /// or SIGTERM.
    Act(StageArgs),
    /// aws mode: create the streams, tables and bucket the configuration names (existing
    /// ones are left as they are).
    Setup {
        #[command(flatten)]
        config: crate::ConfigArgs,
        /// Print one JSON object per resource.
        #[arg(long)]
        json: bool,
    },
}

/// Arguments of a stage process.
#[derive(clap::Args)]
pub struct StageArgs {
    #[command(flatten)]
    config: crate::ConfigArgs,
    /// This worker's id in the lease table (default: host name plus a random suffix; must be
    /// unique among the running workers of a stage).
    #[arg(long, env = "AIOPS_WORKER_ID")]
    worker_id: Option<String>,
    /// Stop after this many seconds (0: until Ctrl-C or SIGTERM).
    #[arg(long, default_value_t = 0)]
    duration: u64,
    /// Print a JSON summary line per stage on stdout when stopped.
    #[arg(long)]
    json: bool,
    /// detect: start from learned baselines (`aiops learn`): a JSON file or
    /// `dynamodb://<table>`; default the `[aws] patterns_table`; `none` turns them off.
    #[arg(long, env = "AIOPS_BASELINES")]
    baselines: Option<String>,
}

/// One stage of the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Raw stream -> S3 + events stream.
    Ingest,
    /// Events stream -> decisions stream.
    Detect,
    /// Decisions stream -> incidents.
    Act,
}

impl Stage {
    /// The name used in lease keys and logs.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Ingest => "ingest",
            Stage::Detect => "detect",
            Stage::Act => "act",
        }
    }
}

/// Runs an aws-mode subcommand.
///
/// # Errors
/// An invalid configuration, a missing stream or table, or AWS failing at start.
pub fn dispatch(cmd: AwsCommand) -> Result<i32> {
    match cmd {
        AwsCommand::Ingest(a) => stage_command(Stage::Ingest, a),
        AwsCommand::Detect(a) => stage_command(Stage::Detect, a),
        AwsCommand::Act(a) => stage_command(Stage::Act, a),
        AwsCommand::Setup { config, json } => {
            let (cfg, _) = crate::load_config(&config)?;
            require_aws(&cfg)?;
            setup(&cfg, json)
        }
    }
}

fn require_aws(cfg: &PipelineConfig) -> Result<()> {
    if cfg.mode != "aws" {
        bail!(
            "this command needs mode = \"aws\" (the configuration says {:?}); see pipeline.aws.toml",
            cfg.mode
        );
    }
    Ok(())
}

fn stage_command(stage: Stage, a: StageArgs) -> Result<i32> {
    let (cfg, _) = crate::load_config(&a.config)?;
    require_aws(&cfg)?;
    run_stages(
        &cfg,
        &[stage],
        a.worker_id,
        a.duration,
        a.json,
        a.baselines.as_deref(),
    )
}

/// A Kinesis partition key for `key`: itself when 1 to 256 characters, else its first 200
/// characters and a 64-bit stable hash of the whole (same key, same shard); `-` when empty.
pub fn partition_key(key: &str) -> String {
    if key.is_empty() {
        return "-".to_string();
    }
    if key.chars().count() <= aiops_aws::producer::MAX_PARTITION_KEY_CHARS {
        return key.to_string();
    }
    let head: String = key.chars().take(200).collect();
    format!("{head}#{:016x}", stable_hash(&[key.as_bytes()]))
}

/// The default worker id: the host name (from `/proc/sys/kernel/hostname`, else `HOSTNAME`,
/// else `aiops`) and 8 random hex digits.
pub fn default_worker_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "aiops".to_string());
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}-{}", suffix.get(..8).unwrap_or(&suffix))
}

/// The `[act]` configuration aws mode runs with: incidents in DynamoDB under the `[aws]`
/// table names, `[aws]` region and endpoint for the act clients unless `[act.aws]` sets
/// them, and `[aws]` Bedrock model and SNS topic where `[act]` leaves them empty.
pub fn act_config(cfg: &PipelineConfig) -> aiops_act::ActConfig {
    let aws = &cfg.aws;
    let mut a = cfg.act.clone();
    a.store.backend = "dynamodb".into();
    a.store.incidents_table = aws.incidents_table.clone();
    a.store.locks_table = aws.locks_table.clone();
    a.store.stats_table = aws.patterns_table.clone();
    if a.aws.region.is_none() {
        a.aws.region = aws.region.clone();
    }
    if a.aws.endpoint_url.is_none() {
        a.aws.endpoint_url = aws.endpoint_url.clone();
    }
    if let Some(m) = &aws.bedrock_model_id
        && a.enrichment.model_id.is_empty()
    {
        a.enrichment.model_id = m.clone();
    }
    if let Some(t) = &aws.sns_topic_arn
        && a.notify.topic_arn.is_empty()
    {
        a.notify.topic_arn = t.clone();
    }
    a
}

fn rule_profiles(rules: &ChangeRules) -> BTreeMap<String, RuleProfile> {
    rules
        .rules()
        .iter()
        .map(|r| {
            (
                r.name.clone(),
                RuleProfile {
                    severity: r.severity,
                    category: r.category.clone(),
                },
            )
        })
        .collect()
}

struct Clients {
    kinesis: Arc<SdkKinesis>,
    leases: Arc<DynamoLeaseStore>,
    objects: Arc<S3ObjectStore>,
}

async fn clients(cfg: &PipelineConfig) -> Clients {
    let aws = &cfg.aws;
    let sdk = aiops_aws::sdk::load(aws.region.as_deref(), aws.endpoint_url.as_deref()).await;
    let path_style = aws
        .s3_force_path_style
        .unwrap_or_else(|| aiops_aws::sdk::endpoint_overridden(aws.endpoint_url.as_deref()));
    Clients {
        kinesis: Arc::new(SdkKinesis::from_conf(&sdk)),
        leases: Arc::new(DynamoLeaseStore::new(
            aws_sdk_dynamodb::Client::new(&sdk),
            &aws.leases_table,
        )),
        objects: Arc::new(S3ObjectStore::new(
            aiops_aws::sdk::s3_client(&sdk, path_style),
            &aws.history_bucket,
            aws.s3,
        )),
    }
}

type WorkerTask = tokio::task::JoinHandle<Result<WorkerReport, aiops_aws::consumer::WorkerError>>;

fn spawn_worker<F: ProcessorFactory>(
    c: &Clients,
    cfg: &PipelineConfig,
    stage: Stage,
    stream: &str,
    worker_id: &str,
    factory: F,
    stop: watch::Receiver<bool>,
) -> WorkerTask {
    let coordinator = Arc::new(LeaseCoordinator::new(
        c.leases.clone(),
        worker_id,
        stage.name(),
        stream,
        cfg.aws.leases,
    ));
    let worker = Worker::new(
        c.kinesis.clone(),
        coordinator,
        stream,
        cfg.aws.consumer,
        Arc::new(factory),
    );
    tokio::spawn(worker.run(stop))
}

/// The learned baselines the detect stage starts from: `spec` (a file or `dynamodb://<table>`;
/// `none` for none), by default the `[aws] patterns_table` — where a missing table or no
/// learned document means none (logged), while a document that does not fit the
/// configuration is an error.
///
/// # Errors
/// An explicit `spec` that cannot be read, or baselines that do not fit the configuration.
pub fn detect_baselines(
    cfg: &PipelineConfig,
    spec: Option<&str>,
) -> Result<Option<aiops_detect::baseline::Baselines>> {
    let region = cfg.aws.region.as_deref();
    let endpoint = cfg.aws.endpoint_url.as_deref();
    match spec {
        Some("none") | Some("") => Ok(None),
        Some(s) => aiops_history::load_baselines(s, &cfg.detect.statistics, region, endpoint),
        None => {
            let spec = format!("dynamodb://{}", cfg.aws.patterns_table);
            match aiops_history::load_baselines(&spec, &cfg.detect.statistics, region, endpoint) {
                Ok(b) => {
                    if b.is_none() {
                        tracing::info!(table = %cfg.aws.patterns_table, "no learned baselines in the patterns table; detect starts without");
                    }
                    Ok(b)
                }
                Err(e)
                    if e.chain().any(|c| {
                        matches!(
                            c.downcast_ref::<aiops_detect::baseline::BaselineError>(),
                            Some(aiops_detect::baseline::BaselineError::Invalid { .. })
                        )
                    }) =>
                {
                    Err(e)
                }
                Err(e) => {
                    tracing::warn!(table = %cfg.aws.patterns_table, error = %format!("{e:#}"), "cannot read learned baselines; detect starts without");
                    Ok(None)
                }
            }
        }
    }
}

/// Runs `stages` (one process) until Ctrl-C, SIGTERM or `duration` seconds (0: no limit);
/// on stop every shard flushes, checkpoints and releases its lease. With `json`, prints one
/// summary line per stage on stdout. `baselines` chooses the detect stage's learned baselines
/// (see [`detect_baselines`]).
///
/// # Errors
/// An invalid configuration, the async runtime or the act stage failing to start; a
/// worker that fails at start (missing stream or lease table) makes the exit code 2.
pub fn run_stages(
    cfg: &PipelineConfig,
    stages: &[Stage],
    worker_id: Option<String>,
    duration: u64,
    json: bool,
    baselines: Option<&str>,
) -> Result<i32> {
    let worker_id = worker_id
        .filter(|w| !w.trim().is_empty())
        .unwrap_or_else(default_worker_id);
    let rules = ChangeRules::new(&cfg.detect.change_rules)?;
    let learned = if stages.contains(&Stage::Detect) {
        detect_baselines(cfg, baselines)?.map(Arc::new)
    } else {
        None
    };
    if let Some(b) = &learned {
        eprintln!(
            "aiops detect: learned baselines of {} series and {} log groups",
            b.series.len(),
            b.log_groups.len()
        );
    }
    // The act workflow owns its own small runtime: build it (and later drop it) outside ours.
    let workflow = if stages.contains(&Stage::Act) {
        let act_cfg = act_config(cfg);
        Some(Arc::new(
            aiops_act::build(
                &act_cfg,
                &cfg.data_dir,
                worker_id.clone(),
                rule_profiles(&rules),
            )
            .context("cannot build the act stage")?,
        ))
    } else {
        None
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("aiops-aws")
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let names: Vec<&str> = stages.iter().map(|s| s.name()).collect();
    eprintln!(
        "aiops {}: worker {worker_id}, streams raw={} events={} decisions={}, lease table {} (Ctrl-C or SIGTERM stops, flushes and hands the leases back)",
        names.join("+"),
        cfg.aws.raw_stream,
        cfg.aws.events_stream,
        cfg.aws.decisions_stream,
        cfg.aws.leases_table
    );
    let code = rt.block_on(async {
        let c = clients(cfg).await;
        let (stop_tx, stop_rx) = watch::channel(false);
        tokio::spawn(async move {
            wait_for_stop(duration).await;
            let _ = stop_tx.send(true);
        });
        let mut tasks: Vec<(Stage, Arc<StageCounters>, WorkerTask)> = Vec::new();
        for &stage in stages {
            let counters = Arc::new(StageCounters::default());
            let producer = || Producer::new(c.kinesis.clone(), cfg.aws.producer);
            let task = match stage {
                Stage::Ingest => spawn_worker(
                    &c,
                    cfg,
                    stage,
                    &cfg.aws.raw_stream,
                    &worker_id,
                    ingest::IngestFactory(Arc::new(ingest::IngestShared {
                        producer: producer(),
                        events_stream: cfg.aws.events_stream.clone(),
                        objects: c.objects.clone(),
                        prefix: cfg.aws.history_prefix.clone(),
                        archive: cfg.archive,
                        limits: cfg.ingest.limits(),
                        dedup: cfg.ingest.dedup,
                        counters: counters.clone(),
                    })),
                    stop_rx.clone(),
                ),
                Stage::Detect => spawn_worker(
                    &c,
                    cfg,
                    stage,
                    &cfg.aws.events_stream,
                    &worker_id,
                    detect::DetectFactory(Arc::new(detect::DetectShared {
                        producer: producer(),
                        decisions_stream: cfg.aws.decisions_stream.clone(),
                        rules: rules.clone(),
                        statistics: cfg.detect.statistics.clone(),
                        dedup: cfg.ingest.dedup,
                        checkpoint_interval: Duration::from_millis(cfg.aws.checkpoint_interval_ms),
                        counters: counters.clone(),
                        objects: c.objects.clone(),
                        prefix: cfg.aws.history_prefix.clone(),
                        archive: cfg.archive,
                        baselines: learned.clone(),
                    })),
                    stop_rx.clone(),
                ),
                Stage::Act => {
                    let Some(wf) = workflow.clone() else {
                        bail!("act stage without a workflow");
                    };
                    spawn_worker(
                        &c,
                        cfg,
                        stage,
                        &cfg.aws.decisions_stream,
                        &worker_id,
                        act::ActFactory(Arc::new(act::ActShared {
                            workflow: wf,
                            checkpoint_interval: Duration::from_millis(
                                cfg.aws.checkpoint_interval_ms,
                            ),
                            counters: counters.clone(),
                            objects: c.objects.clone(),
                            prefix: cfg.aws.history_prefix.clone(),
                            archive: cfg.archive,
                        })),
                        stop_rx.clone(),
                    )
                }
            };
            tasks.push((stage, counters, task));
        }
        let mut code = 0;
        for (stage, counters, task) in tasks {
            let result = task.await;
            let counters = counters.snapshot();
            match result {
                Ok(Ok(report)) => {
                    if json {
                        println!(
                            "{}",
                            serde_json::json!({
                                "kind": "summary",
                                "stage": stage.name(),
                                "worker": report,
                                "counters": counters,
                            })
                        );
                    }
                    eprintln!(
                        "aiops {} stopped: worker {}, {} records, {} checkpoints, {} expired iterators, {} read retries, {} shards ended, {} leases lost; {}",
                        stage.name(),
                        report.worker_id,
                        report.records,
                        report.checkpoints,
                        report.expired_iterators,
                        report.read_retries,
                        report.shards_ended,
                        report.leases_lost,
                        serde_json::to_string(&counters).unwrap_or_default()
                    );
                }
                Ok(Err(e)) => {
                    eprintln!("error: aiops {}: {e}", stage.name());
                    code = 2;
                }
                Err(e) => {
                    eprintln!("error: aiops {}: worker task failed: {e}", stage.name());
                    code = 2;
                }
            }
        }
        Ok::<i32, anyhow::Error>(code)
    })?;
    drop(rt);
    drop(workflow);
    Ok(code)
}

async fn wait_for_stop(duration: u64) {
    let limit = async {
        if duration > 0 {
            tokio::time::sleep(Duration::from_secs(duration)).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    {
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term => {}
            _ = limit => {}
        }
    }
    #[cfg(not(unix))]
    {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = limit => {}
        }
    }
    eprintln!("aiops: stopping (flushing, checkpointing, handing leases back)");
}

/// `aiops setup`: creates the three streams with their shard counts, the lease table, the
/// incident tables (as the act stage's DynamoDB store defines them) and the bucket.
fn setup(cfg: &PipelineConfig, json: bool) -> Result<i32> {
    let aws = &cfg.aws;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let actions = rt.block_on(async {
        let sdk = aiops_aws::sdk::load(aws.region.as_deref(), aws.endpoint_url.as_deref()).await;
        let kinesis = aws_sdk_kinesis::Client::new(&sdk);
        let ddb = aws_sdk_dynamodb::Client::new(&sdk);
        let path_style = aws
            .s3_force_path_style
            .unwrap_or_else(|| aiops_aws::sdk::endpoint_overridden(aws.endpoint_url.as_deref()));
        let s3 = aiops_aws::sdk::s3_client(&sdk, path_style);
        let region = sdk.region().map(|r| r.to_string());
        let mut actions = Vec::new();
        for (name, shards) in [
            (&aws.raw_stream, aws.raw_shards),
            (&aws.events_stream, aws.events_shards),
            (&aws.decisions_stream, aws.decisions_shards),
        ] {
            actions.push(aiops_aws::setup::ensure_stream(&kinesis, name, shards).await?);
        }
        actions.push(aiops_aws::setup::ensure_table(&ddb, &aws.leases_table, "leaseKey").await?);
        actions.push(
            aiops_aws::setup::ensure_bucket(&s3, &aws.history_bucket, region.as_deref()).await?,
        );
        Ok::<_, aiops_aws::setup::SetupError>(actions)
    })?;
    drop(rt);
    // The incident tables, as the act stage's store declares them (it blocks on its own
    // runtime, so outside ours).
    let act_cfg = act_config(cfg);
    let blocking = aiops_act::aws::Blocking::owned(1)?;
    let sdk = blocking.block_on(aiops_aws::sdk::load(
        act_cfg.aws.region.as_deref(),
        act_cfg.aws.endpoint_url.as_deref(),
    ));
    aiops_act::dynamo::DynamoStore::new(&sdk, blocking.clone(), act_cfg.store.clone())
        .create_tables()
        .context("cannot create the incident tables")?;
    for a in &actions {
        if json {
            println!("{}", serde_json::to_string(a)?);
        } else {
            println!(
                "{} {}: {}{}",
                a.kind,
                a.name,
                a.outcome,
                a.detail
                    .as_deref()
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default()
            );
        }
    }
    let tables = [
        &act_cfg.store.incidents_table,
        &act_cfg.store.locks_table,
        &act_cfg.store.stats_table,
    ];
    for t in tables {
        if json {
            println!(
                "{}",
                serde_json::json!({"kind": "table", "name": t, "outcome": "ensured", "detail": "incident store"})
            );
        } else {
            println!("table {t}: ensured (incident store)");
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_pipeline_aws_toml_parses_and_validates() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipeline.aws.toml");
        let cfg = PipelineConfig::load(&path).unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.mode, "aws");
        assert_eq!(cfg.aws.raw_stream, "aiops-raw");
        assert_eq!(cfg.aws.endpoint_url, None);
        assert_eq!(cfg.archive.max_file_age_secs, 60);
        let bad = PipelineConfig::parse(
            "mode = \"aws\"\n[aws]\nhistory_bucket = \"b-1\"\nraw_shards = 0\n",
        )
        .unwrap();
        assert_eq!(
            bad.validate().unwrap_err().to_string(),
            "aws.raw_shards: 0 is outside 1..=1000"
        );
        let unknown = PipelineConfig::parse("mode = \"aws\"\n[aws]\nraw_streem = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(unknown.contains("unknown field `raw_streem`"), "{unknown}");
    }

    #[test]
    fn partition_keys_fit_kinesis() {
        assert_eq!(partition_key("logs|/aws/lambda/f"), "logs|/aws/lambda/f");
        assert_eq!(partition_key(""), "-");
        let long = "x".repeat(300);
        let k = partition_key(&long);
        assert_eq!(k.chars().count(), 200 + 1 + 16);
        assert_eq!(k, partition_key(&long));
        assert_ne!(k, partition_key(&"x".repeat(301)));
    }

    #[test]
    fn worker_ids_are_unique_and_named_after_the_host() {
        let a = default_worker_id();
        let b = default_worker_id();
        assert_ne!(a, b);
        let (host, suffix) = a.rsplit_once('-').unwrap();
        assert!(!host.is_empty());
        assert_eq!(suffix.len(), 8);
    }

    #[test]
    fn act_runs_on_dynamodb_with_the_aws_names() {
        let cfg = PipelineConfig::parse(
            "mode = \"aws\"\n[aws]\nhistory_bucket = \"b-1\"\nincidents_table = \"inc\"\nlocks_table = \"locks\"\nregion = \"eu-west-1\"\nsns_topic_arn = \"arn:aws:sns:eu-west-1:1:t\"\n",
        )
        .unwrap();
        cfg.validate().unwrap();
        let a = act_config(&cfg);
        assert_eq!(a.store.backend, "dynamodb");
        assert_eq!(a.store.incidents_table, "inc");
        assert_eq!(a.store.locks_table, "locks");
        assert_eq!(a.store.stats_table, "aiops-patterns");
        assert_eq!(a.aws.region.as_deref(), Some("eu-west-1"));
        assert_eq!(a.notify.topic_arn, "arn:aws:sns:eu-west-1:1:t");
    }
}
