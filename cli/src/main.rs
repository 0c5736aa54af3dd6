//! `aiops`: the streaming AIOps agent for AWS. See README.md.

/// Writes one line to stdout; a closed stdout (a reader that went away, as with `| head`) is
/// not an error: the work goes on and its results are still stored.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

mod aws_cmd;
mod bench_cmd;
mod config_args;
mod eval;
mod history_cmd;
mod incidents_cmd;
mod replay_cmd;

use aiops_act::Incident;
use aiops_pipeline::aws_mode;
use aiops_pipeline::config::PipelineConfig;
use aiops_pipeline::embedded::{Counters, RunMode, bound_simulation, run_embedded};
use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use config_args::{ConfigArgs, load_config};
use indicatif::{ProgressBar, ProgressStyle};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Streaming AIOps agent for AWS: CloudTrail and CloudWatch Logs in, incidents and verified
/// recovery out.
#[derive(Parser)]
#[command(name = "aiops", version, about)]
struct Cli {
    /// Log format on stderr: `text` or `json` (use json in production).
    #[arg(long, global = true, default_value = "text", env = "AIOPS_LOG_FORMAT")]
    log_format: String,
    /// Log filter, e.g. `info`, `aiops=debug` (overrides RUST_LOG).
    #[arg(long, global = true, env = "AIOPS_LOG")]
    log_level: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the pipeline on the configured sources until Ctrl-C.
    Run {
        #[command(flatten)]
        config: ConfigArgs,
        /// Stop after this many seconds (0: run until Ctrl-C). A simulate source emits the
        /// traffic of that many seconds and then ends (on a slow machine the run takes longer,
        /// with the same traffic); other sources stop after that much wall-clock time.
        #[arg(long, default_value_t = 0)]
        duration: u64,
        /// Print JSON lines on stdout: one per incident, then a summary when stopped.
        #[arg(long)]
        json: bool,
        /// aws mode: this worker's id in the lease tables (default: host name plus a random
        /// suffix).
        #[arg(long, env = "AIOPS_WORKER_ID")]
        worker_id: Option<String>,
        /// Start detect from learned baselines (`aiops learn`): a JSON file, or
        /// `dynamodb://<patterns table>`; in aws mode the `[aws] patterns_table` is used by
        /// default, `none` turns that off.
        #[arg(long, env = "AIOPS_BASELINES")]
        baselines: Option<String>,
    },
    /// Process files, directories or s3:// prefixes once and exit with a summary.
    Replay(replay_cmd::ReplayArgs),
    /// Run the detect code over Parquet history (a data directory or s3://bucket/prefix) with
    /// a configuration, and score it against labelled windows.
    Backtest(history_cmd::BacktestArgs),
    /// Learn per-series baselines and template dictionaries from Parquet history, for detect
    /// to load at start.
    Learn(history_cmd::LearnArgs),
    /// Check the configuration and say precisely what is wrong.
    Validate {
        #[command(flatten)]
        config: ConfigArgs,
        /// Print the resolved resource names as one JSON object: `{"mode",
        /// "deployment_profile", "streams": {"raw", "events", "decisions"}, "tables":
        /// {"incidents", "leases", ...}, "bucket", "prefix", ...}` (the single profile's
        /// `streams` and `shards` name only the raw stream).
        #[arg(long)]
        json: bool,
    },
    /// Print the Parquet table schemas (columns with Glue/Hive types, partition keys).
    Schema {
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// End-to-end benchmark: generated traffic through the embedded pipeline; prints events
    /// and bytes per second, latency from ingestion to change-rule finding, peak memory and
    /// CPU seconds per million events.
    Bench(aiops_benches::harness::BenchArgs),
    /// Evaluate the detectors on public benchmarks (NAB, Loghub).
    Eval {
        #[command(subcommand)]
        command: eval::EvalCommand,
    },
    /// Read incidents from the store, and close them with feedback.
    Incidents {
        #[command(subcommand)]
        command: incidents_cmd::IncidentsCommand,
    },
    /// Suppress findings of a series, template or resource (for a while or until removed).
    Suppress {
        #[command(subcommand)]
        command: incidents_cmd::SuppressCommand,
    },
    #[command(flatten)]
    Aws(aws_cmd::AwsCommand),
}

fn init_logging(format: &str, level: Option<&str>) -> Result<()> {
    let filter = match level {
        Some(l) => tracing_subscriber::EnvFilter::try_new(l)
            .with_context(|| format!("invalid --log-level {l:?}"))?,
        None => tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        "json" => builder.json().init(),
        "text" => builder.init(),
        other => bail!("--log-format {other:?} is not text or json"),
    }
    Ok(())
}

/// The process allocator: mimalloc (many small per-event allocations on every stage).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = Cli::parse();
    if let Err(e) = init_logging(&cli.log_format, cli.log_level.as_deref()) {
        eprintln!("error: {e:#}");
        std::process::exit(2);
    }
    let code = match dispatch(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            2
        }
    };
    std::process::exit(code);
}

fn dispatch(command: Command) -> Result<i32> {
    match command {
        Command::Run {
            config,
            duration,
            json,
            worker_id,
            baselines,
        } => cmd_run(&config, duration, json, worker_id, baselines.as_deref()),
        Command::Replay(args) => replay_cmd::cmd_replay(&args),
        Command::Backtest(args) => history_cmd::cmd_backtest(&args),
        Command::Learn(args) => history_cmd::cmd_learn(&args),
        Command::Validate { config, json } => {
            let (cfg, origin) = load_config(&config)?;
            if json {
                let mut names = cfg.aws.names_json(&cfg.mode);
                names["data_dir"] = serde_json::json!(cfg.data_dir);
                out!("{names}");
                return Ok(0);
            }
            let rules = aiops_detect::rules::ChangeRules::new(&cfg.detect.change_rules)?;
            out!(
                "configuration OK ({origin}): mode {}, data_dir {}, {} source(s), {} change rules over {} resource types",
                cfg.mode,
                cfg.data_dir.display(),
                cfg.sources.len(),
                rules.rules().len(),
                rules.watched_resource_types().len()
            );
            Ok(0)
        }
        Command::Schema { json } => {
            let tables = aiops_ingest::archive::all_table_specs();
            if json {
                out!("{}", serde_json::json!({ "tables": tables }));
            } else {
                for t in tables {
                    out!("{} (version {})", t.name, t.version);
                    for c in t.columns {
                        out!("  {:<24} {}", c.name, c.glue_type);
                    }
                    let parts: Vec<String> =
                        t.partition_keys.iter().map(|p| p.name.clone()).collect();
                    out!("  partitioned by {}", parts.join(", "));
                }
            }
            Ok(0)
        }
        Command::Incidents { command } => incidents_cmd::cmd_incidents(command),
        Command::Suppress { command } => incidents_cmd::cmd_suppress(command),
        Command::Aws(command) => aws_cmd::dispatch(command),
        Command::Bench(args) => {
            let base = match &args.config {
                Some(p) => PipelineConfig::load(p)?,
                None => PipelineConfig::builtin_default(),
            };
            let report = aiops_benches::harness::cmd_bench(&args, base)?;
            if args.json {
                out!("{}", serde_json::to_string(&report)?);
            } else {
                bench_cmd::print_text(&report);
            }
            Ok(0)
        }
        Command::Eval { command } => {
            eval::run(command)?;
            Ok(0)
        }
    }
}

fn incident_line(i: &Incident) -> String {
    let what = match &i.finding.evidence.event_name {
        Some(name) => format!(
            "{} by {}",
            name,
            i.finding.evidence.principal.as_deref().unwrap_or("unknown")
        ),
        None => i.finding.summary.clone(),
    };
    let resource = if i.resource_type.is_empty() {
        "-".to_string()
    } else {
        format!("{} {}", i.resource_type, i.resource_id)
    };
    format!(
        "INCIDENT {} {:<16} {} | {} | action={} target={} | {}",
        i.incident_id,
        i.state.as_str(),
        resource,
        what,
        i.action.as_deref().unwrap_or("none"),
        i.terraform_target.as_deref().unwrap_or("-"),
        i.outcome.as_deref().unwrap_or("")
    )
}

/// The JSON line `replay --json` prints per incident.
fn incident_replay_json(i: &Incident) -> serde_json::Value {
    serde_json::json!({
        "kind": "incident",
        "incident_id": i.incident_id,
        "resource_type": if i.resource_type.is_empty() { None } else { Some(&i.resource_type) },
        "resource_id": if i.resource_id.is_empty() { None } else { Some(&i.resource_id) },
        "event_name": i.finding.evidence.event_name,
        "event_id": i.finding.evidence.event_ids.first(),
        "detector": i.finding.detector,
        "state": i.state,
        "action": i.action,
    })
}

fn progress_bar(hidden: bool) -> ProgressBar {
    if hidden {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new_spinner();
    pb.set_style(
        ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    pb.enable_steady_tick(Duration::from_millis(200));
    pb
}

/// Updates `pb` from `counters` every 200 ms until `done`; with `position` (objects handed
/// over), the bar's position follows it and the message shows the bytes read.
fn spawn_progress(
    pb: ProgressBar,
    counters: Arc<Counters>,
    done: Arc<AtomicBool>,
    position: Option<Arc<std::sync::atomic::AtomicU64>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let started = std::time::Instant::now();
        while !done.load(Ordering::SeqCst) {
            let s = counters.summary();
            let secs = started.elapsed().as_secs_f64().max(0.001);
            let read = match &position {
                Some(p) => {
                    pb.set_position(p.load(Ordering::Relaxed));
                    format!("{:.1} MiB | ", s.input_bytes as f64 / (1024.0 * 1024.0))
                }
                None => String::new(),
            };
            pb.set_message(format!(
                "{read}events {} ({:.0}/s) | duplicates {} | dead letters {} | findings {} | incidents {}",
                s.events,
                s.events as f64 / secs,
                s.duplicates,
                s.dead_letters,
                s.findings,
                s.incidents
            ));
            std::thread::sleep(Duration::from_millis(200));
        }
    })
}

/// Baselines named on the command line for embedded mode (`none` or absent: none).
fn embedded_baselines(
    cfg: &PipelineConfig,
    spec: Option<&str>,
) -> Result<Option<aiops_detect::baseline::Baselines>> {
    match spec {
        None | Some("none") | Some("") => Ok(None),
        Some(s) => Ok(aiops_history::load_baselines(
            s,
            &cfg.detect.statistics,
            cfg.aws.region.as_deref(),
            cfg.aws.endpoint_url.as_deref(),
        )?),
    }
}

fn cmd_run(
    args: &ConfigArgs,
    duration: u64,
    json: bool,
    worker_id: Option<String>,
    baselines: Option<&str>,
) -> Result<i32> {
    let (cfg, origin) = load_config(args)?;
    if cfg.mode == "aws" {
        use aws_mode::Stage;
        return aws_cmd::run_stages(
            &cfg,
            &[Stage::Ingest, Stage::Detect, Stage::Act],
            worker_id,
            duration,
            json,
            baselines,
        );
    }
    let learned = embedded_baselines(&cfg, baselines)?;
    if cfg.sources.is_empty() {
        bail!("configuration ({origin}) lists no [[sources]]: nothing to run");
    }
    eprintln!(
        "aiops run: configuration {origin}, data in {} (Ctrl-C stops and flushes)",
        cfg.data_dir.display()
    );
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        ctrlc::set_handler(move || stop.store(true, Ordering::SeqCst))
            .context("cannot install the Ctrl-C handler")?;
    }
    // Simulated traffic ends by itself after `duration` (the same traffic on a slow machine);
    // other sources are stopped after `duration` seconds of wall-clock time.
    let mut sources = cfg.sources.clone();
    if duration > 0 && !bound_simulation(&mut sources, duration) {
        let stop = stop.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(duration));
            stop.store(true, Ordering::SeqCst);
        });
    }
    let counters = Arc::new(Counters::default());
    let pb = progress_bar(json);
    let done = Arc::new(AtomicBool::new(false));
    let ticker = spawn_progress(pb.clone(), counters.clone(), done.clone(), None);
    let printer = pb.clone();
    let result = run_embedded(
        &cfg,
        sources,
        RunMode::Follow,
        stop,
        counters.clone(),
        Box::new(move |i| {
            if json {
                out!("{}", incident_replay_json(i));
            } else {
                printer.suspend(|| out!("{}", incident_line(i)));
            }
        }),
        learned,
    );
    done.store(true, Ordering::SeqCst);
    let _ = ticker.join();
    pb.finish_and_clear();
    result?;
    let s = counters.summary();
    if json {
        out!("{}", serde_json::to_string(&s)?);
    }
    eprintln!(
        "stopped: {} events, {} duplicates, {} dead letters, {} findings, {} incidents, {} rows archived under {}",
        s.events,
        s.duplicates,
        s.dead_letters,
        s.findings,
        s.incidents,
        s.archived_rows,
        cfg.data_dir.join("raw").display()
    );
    Ok(0)
}
