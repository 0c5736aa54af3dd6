//! The aws-mode commands (`aiops ingest|detect|act|setup`): arguments and printing; the
//! stage runners are `aiops_pipeline::aws_mode`'s.

use crate::config_args::{ConfigArgs, load_config};
use aiops_pipeline::PipelineConfig;
use aiops_pipeline::aws_mode::{self, Stage};
use anyhow::{Result, bail};

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
        config: ConfigArgs,
        /// Print one JSON object per resource.
        #[arg(long)]
        json: bool,
    },
}

/// Arguments of a stage process.
#[derive(clap::Args)]
pub struct StageArgs {
    #[command(flatten)]
    config: ConfigArgs,
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
            let (cfg, _) = load_config(&config)?;
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
    let (cfg, _) = load_config(&a.config)?;
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

/// Runs `stages` in this process ([`aws_mode::run_stages`]) and prints each stage's summary:
/// a line on stderr, and with `json` one JSON object per stage on stdout. Exit code 2 when a
/// stage's worker failed.
///
/// # Errors
/// As [`aws_mode::run_stages`].
pub fn run_stages(
    cfg: &PipelineConfig,
    stages: &[Stage],
    worker_id: Option<String>,
    duration: u64,
    json: bool,
    baselines: Option<&str>,
) -> Result<i32> {
    let outcomes = aws_mode::run_stages(cfg, stages, worker_id, duration, baselines)?;
    let mut code = 0;
    for o in outcomes {
        match o.report {
            Ok(report) => {
                if json {
                    out!(
                        "{}",
                        serde_json::json!({
                            "kind": "summary",
                            "stage": o.stage.name(),
                            "worker": report,
                            "counters": o.counters,
                        })
                    );
                }
                eprintln!(
                    "aiops {} stopped: worker {}, {} records, {} checkpoints, {} expired iterators, {} read retries, {} shards ended, {} leases lost; {}",
                    o.stage.name(),
                    report.worker_id,
                    report.records,
                    report.checkpoints,
                    report.expired_iterators,
                    report.read_retries,
                    report.shards_ended,
                    report.leases_lost,
                    serde_json::to_string(&o.counters).unwrap_or_default()
                );
            }
            Err(e) => {
                eprintln!("error: aiops {}: {e}", o.stage.name());
                code = 2;
            }
        }
    }
    Ok(code)
}

/// `aiops setup`: creates the streams, tables and bucket, and prints what was done.
fn setup(cfg: &PipelineConfig, json: bool) -> Result<i32> {
    let (actions, tables) = aws_mode::setup(cfg)?;
    for a in &actions {
        if json {
            out!("{}", serde_json::to_string(a)?);
        } else {
            out!(
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
    for (t, holds) in tables {
        if json {
            out!(
                "{}",
                serde_json::json!({"kind": "table", "name": t, "outcome": "ensured", "detail": holds})
            );
        } else {
            out!("table {t}: ensured ({holds})");
        }
    }
    Ok(0)
}
