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
pub mod forward;
mod ingest;
mod keys;
pub mod metrics;
mod settings;
mod setup;
mod single;
pub mod snapshot;
pub mod tables;

pub use crate::config::{AwsSection, DeploymentProfile};
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
use counters::{StageCounterSet, StageCounters};
use forward::{ToProcessor, ToStream};
use metrics::StageMetrics;
use single::SingleFactory;
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
    /// The single deployment profile: raw stream -> S3, findings and incidents, the three
    /// stages in one process joined in memory.
    All,
}

impl Stage {
    /// The stream the stage reads: ingest the raw stream, detect the events stream, act the
    /// decisions stream.
    pub fn stream(self, aws: &AwsSection) -> &str {
        match self {
            Stage::Ingest => &aws.raw_stream,
            Stage::Detect => &aws.events_stream,
            Stage::Act => &aws.decisions_stream,
            Stage::All => &aws.raw_stream,
        }
    }

    /// The name used in lease keys and logs.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Ingest => "ingest",
            Stage::Detect => "detect",
            Stage::Act => "act",
            Stage::All => "all",
        }
    }

    /// Whether running this stage runs `part` (`All` runs every part).
    pub fn runs(self, part: Stage) -> bool {
        self == part || self == Stage::All
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

/// The stages to run for `requested` under `profile`: the scaled profile runs what was asked;
/// the single profile runs the three stages as [`Stage::All`], and refuses one stage alone
/// (its events and decisions streams do not exist).
///
/// # Errors
/// [`PipelineError::Invalid`] for one stage under the single profile, or [`Stage::All`] under
/// the scaled one.
pub fn profile_stages(profile: DeploymentProfile, requested: &[Stage]) -> Result<Vec<Stage>> {
    let all = [Stage::Ingest, Stage::Detect, Stage::Act]
        .iter()
        .all(|s| requested.contains(s))
        || requested.contains(&Stage::All);
    match profile {
        DeploymentProfile::Single if all => Ok(vec![Stage::All]),
        DeploymentProfile::Single => Err(PipelineError::Invalid(
            "aws.deployment_profile = \"single\" runs ingest, detect and act in one process on the raw stream: start it with `aiops run`, not one stage alone".into(),
        )),
        DeploymentProfile::Scaled if requested.contains(&Stage::All) => {
            Err(PipelineError::Invalid(
                "stage `all` needs aws.deployment_profile = \"single\"".into(),
            ))
        }
        DeploymentProfile::Scaled => Ok(requested.to_vec()),
    }
}

/// What the stage processors are built from (shared by the scaled and the single profile).
struct Parts<'a> {
    c: &'a Clients,
    cfg: &'a PipelineConfig,
    rules: &'a ChangeRules,
    learned: &'a Option<Arc<aiops_detect::baseline::Baselines>>,
    changes: &'a Option<aiops_act::setup::DynChangeIndex>,
}

impl Parts<'_> {
    fn ingest<F>(
        &self,
        forward: F,
        counters: &Arc<StageCounters>,
    ) -> ingest::IngestShared<F, S3ObjectStore> {
        ingest::IngestShared {
            forward,
            objects: self.c.objects.clone(),
            prefix: self.cfg.aws.history_prefix.clone(),
            archive: self.cfg.archive,
            limits: self.cfg.ingest.limits(),
            dedup: self.cfg.ingest.dedup,
            counters: counters.clone(),
            changes: self.changes.clone(),
        }
    }

    fn detect<F>(
        &self,
        forward: F,
        counters: &Arc<StageCounters>,
    ) -> detect::DetectShared<F, S3ObjectStore> {
        detect::DetectShared {
            forward,
            rules: self.rules.clone(),
            statistics: self.cfg.detect.statistics.clone(),
            dedup: self.cfg.ingest.dedup,
            checkpoint_interval: Duration::from_millis(self.cfg.aws.checkpoint_interval_ms),
            counters: counters.clone(),
            objects: self.c.objects.clone(),
            prefix: self.cfg.aws.history_prefix.clone(),
            baselines: self.learned.clone(),
            state: None,
        }
    }

    fn act(
        &self,
        workflow: &Option<Arc<aiops_act::ActWorkflow>>,
        counters: &Arc<StageCounters>,
    ) -> Result<act::ActShared<S3ObjectStore>> {
        let Some(workflow) = workflow.clone() else {
            return Err(PipelineError::Invalid(
                "act stage without a workflow".into(),
            ));
        };
        let permits = workflow.config().max_in_flight.max(1);
        Ok(act::ActShared {
            workflow,
            checkpoint_interval: Duration::from_millis(self.cfg.aws.checkpoint_interval_ms),
            counters: counters.clone(),
            objects: self.c.objects.clone(),
            prefix: self.cfg.aws.history_prefix.clone(),
            archive: self.cfg.archive,
            in_flight: Arc::new(tokio::sync::Semaphore::new(permits)),
        })
    }
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
    let stages = &profile_stages(cfg.aws.deployment_profile, stages)?;
    let rules = ChangeRules::new(&cfg.detect.change_rules)?;
    let learned = if stages.iter().any(|s| s.runs(Stage::Detect)) {
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
    let workflow = if stages.iter().any(|s| s.runs(Stage::Act)) {
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
    let changes = if stages.iter().any(|s| s.runs(Stage::Ingest)) {
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
    if stages == &[Stage::All] {
        eprintln!(
            "aiops all (single deployment profile): worker {worker_id}, raw stream {}, lease table {} (Ctrl-C or SIGTERM stops, flushes and hands the leases back)",
            cfg.aws.raw_stream, cfg.aws.leases_table
        );
    } else {
        eprintln!(
            "aiops {}: worker {worker_id}, streams raw={} events={} decisions={}, lease table {} (Ctrl-C or SIGTERM stops, flushes and hands the leases back)",
            names.join("+"),
            cfg.aws.raw_stream,
            cfg.aws.events_stream,
            cfg.aws.decisions_stream,
            cfg.aws.leases_table
        );
    }
    let outcomes = rt.block_on(async {
        let c = clients(cfg).await;
        let (stop_tx, stop_rx) = watch::channel(false);
        tokio::spawn(async move {
            wait_for_stop(duration).await;
            let _ = stop_tx.send(true);
        });
        let mut tasks: Vec<(Stage, StageCounterSet, StageMetrics, WorkerTask)> = Vec::new();
        for &stage in stages {
            let set = match stage {
                Stage::All => StageCounterSet::Pipeline(Default::default()),
                _ => StageCounterSet::One(Arc::default()),
            };
            let metrics = StageMetrics::start(
                stage.name(),
                cfg.aws.metrics_namespace.as_deref(),
                cfg.aws.metrics_interval_secs,
                set.clone(),
            )
            .context("cannot start the metrics thread")?;
            let to_stream = |stream: &str| ToStream {
                producer: Producer::new(c.kinesis.clone(), cfg.aws.producer),
                stream: stream.to_string(),
            };
            let parts = Parts {
                c: &c,
                cfg,
                rules: &rules,
                learned: &learned,
                changes: &changes,
            };
            let registry = metrics.registry.clone();
            let stop = stop_rx.clone();
            let task = match (stage, &set) {
                (Stage::Ingest, StageCounterSet::One(counters)) => {
                    let shared = parts.ingest(to_stream(&cfg.aws.events_stream), counters);
                    let factory = ingest::IngestFactory(Arc::new(shared));
                    spawn_worker(&c, cfg, stage, &worker_id, factory, registry, stop)
                }
                (Stage::Detect, StageCounterSet::One(counters)) => {
                    let mut shared = parts.detect(to_stream(&cfg.aws.decisions_stream), counters);
                    // Each shard of the events stream saves its engine state (the single
                    // profile's detect is shared by every raw shard: in memory only).
                    let st = &cfg.aws.detect_state;
                    shared.state = st.enabled.then(|| detect::StateSettings {
                        stream: cfg.aws.events_stream.clone(),
                        interval: Duration::from_millis(st.interval_ms),
                        max_bytes: st.max_bytes,
                    });
                    let factory = detect::DetectFactory(Arc::new(shared));
                    spawn_worker(&c, cfg, stage, &worker_id, factory, registry, stop)
                }
                (Stage::Act, StageCounterSet::One(counters)) => {
                    let shared = parts.act(&workflow, counters)?;
                    // Detached: the sweeper ends when `stop` turns true.
                    let _sweeper =
                        act::spawn_sweeper(shared.workflow.clone(), counters.clone(), stop.clone());
                    let factory = act::ActFactory(Arc::new(shared));
                    spawn_worker(&c, cfg, stage, &worker_id, factory, registry, stop)
                }
                (Stage::All, StageCounterSet::Pipeline([ic, dc, ac])) => {
                    let shared = parts.act(&workflow, ac)?;
                    let _sweeper =
                        act::spawn_sweeper(shared.workflow.clone(), ac.clone(), stop.clone());
                    let act = SingleFactory::act(&act::ActFactory(Arc::new(shared)));
                    let detect = detect::DetectFactory(Arc::new(
                        parts.detect(ToProcessor::new(act.clone(), "decisions"), dc),
                    ));
                    let factory = SingleFactory::new(|f| parts.ingest(f, ic), detect, act);
                    spawn_worker(&c, cfg, stage, &worker_id, factory, registry, stop)
                }
                _ => {
                    return Err(PipelineError::Invalid(format!(
                        "stage {} without its counters",
                        stage.name()
                    )));
                }
            };
            tasks.push((stage, set, metrics, task));
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
