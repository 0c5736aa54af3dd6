//! `aiops replay`: files, directories and `s3://bucket/prefix` locations, read once through
//! the embedded pipeline, with incidents and a summary printed; the work is the pipeline's
//! (`aiops_pipeline::embedded`) and, for S3, `aiops_aws::trail`'s.

use crate::config_args::{ConfigArgs, load_config};
use crate::{
    embedded_baselines, incident_line, incident_replay_json, progress_bar, spawn_progress,
};
use aiops_aws::trail::{DEFAULT_CONCURRENCY, S3Inputs, TrailListing};
use aiops_history::{HistoryLocation, time_range};
use aiops_ingest::manifest::EventTimeRange;
use aiops_pipeline::config::{self, SourceConfig};
use aiops_pipeline::embedded::{Counters, FeedFile, FileFeed, Probes, RunMode, run_embedded_with};
use anyhow::{Context, Result};
use indicatif::ProgressBar;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// `aiops replay` arguments.
#[derive(clap::Args)]
pub struct ReplayArgs {
    /// Files or directories (read recursively, in path order), or `s3://bucket/prefix`
    /// (CloudTrail log files listed by the trail's date folders, see README).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    #[command(flatten)]
    config: ConfigArgs,
    /// Keep only events at or after this time (RFC 3339 or YYYY-MM-DD, UTC); on S3, only the
    /// days that can hold them are listed.
    #[arg(long)]
    from: Option<String>,
    /// Keep only events before this time (exclusive; RFC 3339 or YYYY-MM-DD, UTC).
    #[arg(long)]
    to: Option<String>,
    /// Print JSON lines: one per incident, then a summary.
    #[arg(long)]
    json: bool,
    /// Start detect from learned baselines (`aiops learn`): a JSON file, or
    /// `dynamodb://<patterns table>`.
    #[arg(long, env = "AIOPS_BASELINES")]
    baselines: Option<String>,
    /// Read every input even when the data directory already holds it (by default an
    /// input recorded in `<data-dir>/ingested/manifest.jsonl` is skipped and counted in
    /// `skipped_inputs`); its rows are written again.
    #[arg(long)]
    force: bool,
}

/// One `s3://` location and what its listing chose to read.
struct S3Plan {
    bucket: String,
    listing: TrailListing,
}

/// Totals of the S3 listings, for the summary.
#[derive(Default)]
struct S3Totals {
    listed: u64,
    selected: u64,
    list_requests: u64,
    day_prefixes: u64,
}

/// Runs `aiops replay`; returns the exit code.
///
/// # Errors
/// Invalid arguments or configuration, an input path that does not exist or cannot be read,
/// an S3 location that cannot be listed, or a pipeline that fails.
pub fn cmd_replay(args: &ReplayArgs) -> Result<i32> {
    let (cfg, _origin) = load_config(&args.config)?;
    let (from, to) = time_range(args.from.as_deref(), args.to.as_deref())?;
    let range = EventTimeRange { from, to };
    let mut local = Vec::new();
    let mut s3 = Vec::new();
    for p in &args.paths {
        match p.to_str().filter(|s| s.starts_with("s3://")) {
            Some(url) => match HistoryLocation::parse(url)? {
                HistoryLocation::S3 { bucket, prefix } => s3.push((bucket, prefix)),
                HistoryLocation::Local(_) => local.push(p.clone()),
            },
            None => {
                // A path that does not exist or cannot be read is a mistake on the command
                // line, not a dead letter: nothing would be replayed and the exit status
                // would say all went well.
                aiops_ingest::files::check_input(p)
                    .map_err(|e| anyhow::anyhow!("cannot replay: {e}"))?;
                local.push(p.clone());
            }
        }
    }
    let learned = embedded_baselines(&cfg, args.baselines.as_deref())?;
    let hide_progress = args.json || !std::io::IsTerminal::is_terminal(&std::io::stderr());

    // S3: list first (the number of objects sizes the progress bar), read in the pipeline.
    let mut plans = Vec::new();
    let mut totals = S3Totals::default();
    let inputs = if s3.is_empty() {
        None
    } else {
        let inputs = S3Inputs::connect(cfg.aws.region.as_deref(), cfg.aws.endpoint_url.as_deref())?;
        for (bucket, prefix) in s3 {
            let spinner = progress_bar(hide_progress);
            spinner.set_message(format!("listing s3://{bucket}/{prefix}"));
            let listing = inputs
                .list(&bucket, &prefix, &range)
                .with_context(|| format!("cannot replay s3://{bucket}/{prefix}"));
            spinner.finish_and_clear();
            let listing = listing?;
            totals.listed += listing.listed;
            totals.selected += listing.objects.len() as u64;
            totals.list_requests += listing.list_requests;
            totals.day_prefixes += listing.day_prefixes.len() as u64;
            plans.push(S3Plan { bucket, listing });
        }
        Some(inputs)
    };
    let objects_done = Arc::new(AtomicU64::new(0));
    let file_feeds: Vec<FileFeed> = match inputs {
        Some(inputs) => vec![s3_feed(
            inputs,
            plans,
            cfg.ingest.max_file_bytes,
            objects_done.clone(),
        )],
        None => Vec::new(),
    };
    let sources = if local.is_empty() {
        Vec::new()
    } else {
        vec![SourceConfig::Files {
            paths: local,
            follow: false,
            poll_interval_ms: 1000,
            exclude: config::default_exclude(),
        }]
    };

    let counters = Arc::new(Counters::default());
    let pb = if file_feeds.is_empty() || hide_progress {
        progress_bar(hide_progress)
    } else {
        object_bar(totals.selected)
    };
    let done = Arc::new(AtomicBool::new(false));
    let position = (!file_feeds.is_empty()).then(|| objects_done.clone());
    let ticker = spawn_progress(pb.clone(), counters.clone(), done.clone(), position);
    let printer = pb.clone();
    let json = args.json;
    let result = run_embedded_with(
        &cfg,
        sources,
        RunMode::Once,
        Arc::new(AtomicBool::new(false)),
        counters.clone(),
        Box::new(move |i| {
            if json {
                out!("{}", incident_replay_json(i));
            } else {
                printer.suspend(|| out!("{}", incident_line(i)));
            }
        }),
        learned,
        Probes {
            file_feeds,
            event_time_range: range,
            force: args.force,
            ..Probes::default()
        },
    );
    done.store(true, Ordering::SeqCst);
    let _ = ticker.join();
    pb.finish_and_clear();
    result?;
    print_summary(&counters, &totals, args, &cfg.data_dir)?;
    Ok(0)
}

/// The feed that reads the listed objects, location by location, in key order.
fn s3_feed(inputs: S3Inputs, plans: Vec<S3Plan>, max_bytes: u64, done: Arc<AtomicU64>) -> FileFeed {
    Box::new(move |send: &dyn Fn(FeedFile) -> bool| {
        for plan in &plans {
            let mut open = true;
            inputs.fetch(
                &plan.bucket,
                &plan.listing.objects,
                DEFAULT_CONCURRENCY,
                max_bytes,
                |object, data| {
                    open = send(FeedFile {
                        name: format!("s3://{}/{}", plan.bucket, object.key),
                        data,
                    });
                    done.fetch_add(1, Ordering::Relaxed);
                    open
                },
            );
            if !open {
                return;
            }
        }
    })
}

/// A progress bar over the objects to read.
fn object_bar(total: u64) -> ProgressBar {
    let pb = ProgressBar::new(total);
    pb.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {elapsed_precise} [{bar:30}] {pos}/{len} objects (eta {eta}) {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    pb.enable_steady_tick(std::time::Duration::from_millis(200));
    pb
}

fn print_summary(
    counters: &Counters,
    totals: &S3Totals,
    args: &ReplayArgs,
    data_dir: &std::path::Path,
) -> Result<()> {
    let s = counters.summary();
    let from_s3 = args
        .paths
        .iter()
        .any(|p| p.to_str().is_some_and(|s| s.starts_with("s3://")));
    if args.json {
        let mut v = serde_json::to_value(&s)?;
        if from_s3 {
            v["objects_listed"] = totals.listed.into();
            v["objects_selected"] = totals.selected.into();
            v["list_requests"] = totals.list_requests.into();
            v["day_prefixes"] = totals.day_prefixes.into();
        }
        out!("{v}");
        return Ok(());
    }
    if from_s3 {
        out!(
            "listed: {} objects in {} day folders ({} list requests), {} of them selected for the time range",
            totals.listed,
            totals.day_prefixes,
            totals.list_requests,
            totals.selected
        );
    }
    out!(
        "replayed: {} inputs read ({} bytes), {} skipped as already ingested; {} events ({} outside --from/--to dropped), {} duplicates, {} dead letters, {} control messages, {} digest files and {} excluded files skipped, {} findings, {} incidents, {} rows archived under {}",
        s.inputs_read,
        s.input_bytes,
        s.skipped_inputs,
        s.events,
        s.out_of_range_events,
        s.duplicates,
        s.dead_letters,
        s.control_messages,
        s.digest_files,
        s.skipped_files,
        s.findings,
        s.incidents,
        s.archived_rows,
        data_dir.join("raw").display()
    );
    if s.out_of_order_events > 0 || s.reorder_early_releases > 0 {
        out!(
            "ordering: {} events reached the statistics behind a newer event ({} released early by the full reorder buffer); raise [pipeline] replay_reorder_horizon_secs, replay_reorder_events or replay_reorder_bytes to order them",
            s.out_of_order_events,
            s.reorder_early_releases
        );
    }
    Ok(())
}
