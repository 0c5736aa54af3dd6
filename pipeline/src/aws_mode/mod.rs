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
mod counters;
mod detect;
mod ingest;
mod keys;
pub mod metrics;
mod settings;
mod setup;
pub mod tables;

pub use crate::config::AwsSection;
pub use counters::CountersSnapshot;
pub use keys::{default_worker_id, partition_key};
pub use settings::{act_config, detect_baselines, rule_profiles};
pub use setup::setup;

use crate::config::PipelineConfig;
use crate::error::{Context, PipelineError, Result};
use aiops_aws::consumer::{ProcessorFactory, Worker, WorkerReport};
use aiops_aws::coordinator::LeaseCoordinator;
use aiops_aws::kinesis::SdkKinesis;
use aiops_aws::lease::DynamoLeaseStore;
use aiops_aws::objects::S3ObjectStore;
use aiops_aws::producer::Producer;
use aiops_detect::rules::ChangeRules;
use counters::StageCounters;
use metrics::StageMetrics;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

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
    /// The stream the stage reads: ingest the raw stream, detect the events stream, act the
    /// decisions stream.
    pub fn stream(self, aws: &AwsSection) -> &str {
        match self {
            Stage::Ingest => &aws.raw_stream,
            Stage::Detect => &aws.events_stream,
            Stage::Act => &aws.decisions_stream,
        }
    }

    /// The name used in lease keys and logs.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Ingest => "ingest",
            Stage::Detect => "detect",
            Stage::Act => "act",
        }
    }
}

/// How one stage of [`run_stages`] ended.
#[derive(Debug)]
pub struct StageOutcome {
    /// The stage.
    pub stage: Stage,
    /// Its counters when it stopped.
    pub counters: CountersSnapshot,
    /// Its worker's report, or why the worker failed (a missing stream or lease table).
    pub report: std::result::Result<WorkerReport, String>,
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
    worker_id: &str,
    factory: F,
    metrics: Arc<aiops_core::metrics::Registry>,
    stop: watch::Receiver<bool>,
) -> WorkerTask {
    let stream = stage.stream(&cfg.aws);
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
    )
    .with_metrics(metrics);
    tokio::spawn(worker.run(stop))
}

/// Runs `stages` (one process) until Ctrl-C, SIGTERM or `duration` seconds (0: no limit);
/// on stop every shard flushes, checkpoints and releases its lease. Returns each stage's
/// outcome (its worker report or why it failed, and its counters). `baselines` chooses the detect stage's learned baselines
/// (see [`detect_baselines`]).
///
/// # Errors
/// An invalid configuration, the async runtime or the act stage failing to start; a
/// worker that fails at start (missing stream or lease table) is a failed outcome.
pub fn run_stages(
    cfg: &PipelineConfig,
    stages: &[Stage],
    worker_id: Option<String>,
    duration: u64,
    baselines: Option<&str>,
) -> Result<Vec<StageOutcome>> {
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
            .context("cannot build the act stage")?
            .with_incident_priorities(cfg.detect.statistics.incident_priorities.clone()),
        ))
    } else {
        None
    };
    // The recent-changes index ingest feeds (DynamoDB; its own runtime, built outside ours).
    let changes = if stages.contains(&Stage::Ingest) {
        Some(
            aiops_act::open_change_index(&act_config(cfg), &cfg.data_dir)
                .context("cannot open the recent-changes index")?,
        )
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
    let outcomes = rt.block_on(async {
        let c = clients(cfg).await;
        let (stop_tx, stop_rx) = watch::channel(false);
        tokio::spawn(async move {
            wait_for_stop(duration).await;
            let _ = stop_tx.send(true);
        });
        let mut tasks: Vec<(Stage, Arc<StageCounters>, StageMetrics, WorkerTask)> = Vec::new();
        for &stage in stages {
            let counters = Arc::new(StageCounters::default());
            let metrics = StageMetrics::start(
                stage.name(),
                cfg.aws.metrics_namespace.as_deref(),
                cfg.aws.metrics_interval_secs,
                counters.clone(),
            )
            .context("cannot start the metrics thread")?;
            let producer = || Producer::new(c.kinesis.clone(), cfg.aws.producer);
            let task = match stage {
                Stage::Ingest => spawn_worker(
                    &c,
                    cfg,
                    stage,
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
                        changes: changes.clone(),
                    })),
                    metrics.registry.clone(),
                    stop_rx.clone(),
                ),
                Stage::Detect => spawn_worker(
                    &c,
                    cfg,
                    stage,
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
                    metrics.registry.clone(),
                    stop_rx.clone(),
                ),
                Stage::Act => {
                    let Some(wf) = workflow.clone() else {
                        return Err(PipelineError::Invalid(
                            "act stage without a workflow".into(),
                        ));
                    };
                    // Dropped with the stage: the sweeper ends when `stop_rx` turns true.
                    let _sweeper =
                        act::spawn_sweeper(wf.clone(), counters.clone(), stop_rx.clone());
                    let permits = wf.config().max_in_flight.max(1);
                    spawn_worker(
                        &c,
                        cfg,
                        stage,
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
                            in_flight: Arc::new(tokio::sync::Semaphore::new(permits)),
                        })),
                        metrics.registry.clone(),
                        stop_rx.clone(),
                    )
                }
            };
            tasks.push((stage, counters, metrics, task));
        }
        let mut outcomes = Vec::new();
        for (stage, counters, metrics, task) in tasks {
            let result = task.await;
            if !matches!(result, Ok(Ok(_))) {
                // A worker that failed (not a shard: the consumer counts those) is a stage error.
                let _ = metrics.registry.add(
                    aiops_core::metrics::names::ERRORS,
                    aiops_core::metrics::Unit::Count,
                    1.0,
                );
            }
            // The final flush, with the final counters, before the summary is printed.
            metrics.stop();
            let counters = counters.snapshot();
            let report = match result {
                Ok(Ok(report)) => Ok(report),
                Ok(Err(e)) => Err(e.to_string()),
                Err(e) => Err(format!("worker task failed: {e}")),
            };
            outcomes.push(StageOutcome {
                stage,
                counters,
                report,
            });
        }
        Ok::<Vec<StageOutcome>, PipelineError>(outcomes)
    })?;
    drop(rt);
    drop(workflow);
    drop(changes);
    Ok(outcomes)
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
