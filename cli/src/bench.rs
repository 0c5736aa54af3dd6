//! `aiops bench`: the end-to-end benchmark (issue 7).
//!
//! The built-in traffic generator ([`aiops_pipeline::sim::Simulator`]) writes `--events` events
//! of realistic Kinesis records (CloudTrail EventBridge envelopes of ~1.3 KB from thousands of
//! principals, gzip CloudWatch Logs subscription payloads from hundreds of log groups with a
//! few hundred templates each, producer-retry duplicates, and a steady trickle of destructive
//! calls) to an input file once (cached by its parameters), then a feed thread reads that file
//! and hands the records to the embedded pipeline (decode -> de-duplicate -> Parquet archive
//! -> change rules and statistics -> act), as fast as it takes them or paced at `--rate`
//! events per second. Generation is not measured; reading the file is (it is what a Kinesis
//! source would cost at least).
//!
//! Reported: events and bytes per second (wall clock from the first record handed over until
//! the pipeline has flushed its Parquet files), latency from ingestion to change-rule finding
//! (p50, p99, max; measured inside the process from the moment the feed handed the record's
//! batch to the pipeline), peak resident memory (`VmHWM` of `/proc/self/status`, reset before
//! the run through `/proc/self/clear_refs`), CPU seconds per million events (`getrusage`
//! user + system time of the whole process over the run) and the statistics engine's series
//! count.

use aiops_core::Position;
use aiops_core::time::{MICROS_PER_SEC, now_micros};
use aiops_pipeline::PipelineConfig;
use aiops_pipeline::embedded::{Counters, Probes, RecordFeed, RunMode, run_embedded_with};
use aiops_pipeline::sim::{SimRecord, SimulateConfig, Simulator};
use anyhow::{Context, Result, bail};
use serde::Serialize;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Magic first line of a bench input file (format version 1).
const MAGIC: &[u8] = b"AIOPS-BENCH-INPUT 1\n";

/// Longest event-time span of a generated input: 30 days, in seconds.
const MAX_SPAN_SECS: u64 = 30 * 86_400;

/// Largest record accepted when reading an input file back: 1 MiB, Kinesis's record limit.
pub(crate) const MAX_RECORD_BYTES: u32 = 1024 * 1024;

/// `aiops bench` arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Events to generate and push through the pipeline.
    #[arg(long, default_value_t = 1_000_000)]
    pub events: u64,
    /// Events per second to feed (paced); 0 feeds as fast as the pipeline takes them.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// `embedded` (one process, threads and bounded channels) or `aws` (the `ingest`,
    /// `detect` and `act` stage processes on the Kinesis streams, DynamoDB tables and S3
    /// bucket an aws-mode `--config` names, normally a local emulator; see benches/README.md).
    #[arg(long, default_value = "embedded")]
    pub mode: String,
    /// aws mode: give up when the stages have not accounted for every event this many
    /// seconds after the stages were started.
    #[arg(long, default_value_t = 600)]
    pub timeout_secs: u64,
    /// Print the figures as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    /// Configuration (default: the built-in embedded default; its sources are ignored, the
    /// generator is the only source). Its `data_dir` is replaced by a fresh directory under
    /// `--work-dir`.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Where the generated input is cached and the run's data directory is made.
    #[arg(long, default_value = "/var/tmp/aiops-bench")]
    pub work_dir: PathBuf,
    /// Keep the run's data directory (Parquet, SQLite, dead letters) instead of deleting it.
    #[arg(long)]
    pub keep: bool,
    /// Share of events that are CloudTrail calls (the rest are log lines), in [0, 1].
    #[arg(long, default_value_t = 0.5)]
    pub cloudtrail_share: f64,
    /// Distinct principals making the CloudTrail calls (each calls two APIs of one service,
    /// so about two `api_call` series per principal).
    #[arg(long, default_value_t = 5000)]
    pub principals: usize,
    /// Distinct log groups.
    #[arg(long, default_value_t = 200)]
    pub log_groups: usize,
    /// Templates each log group draws from (0: the simulator's built-in dozen).
    #[arg(long, default_value_t = 300)]
    pub templates_per_group: usize,
    /// Successful destructive calls per million CloudTrail events (each opens an incident;
    /// their findings give the latency figures).
    #[arg(long, default_value_t = 200.0)]
    pub destructive_per_million: f64,
    /// Event time the generated traffic spans, seconds, ending at the last midnight (UTC)
    /// before the generation.
    /// Default: `events / rate` when paced (event time advances as fast as the wall clock,
    /// as in production), else 3600 (an hour of windows closes during the run).
    #[arg(long)]
    pub span_secs: Option<u64>,
    /// When the generated event times end: RFC 3339 or `YYYY-MM-DD` (its midnight, UTC).
    /// Default: the last midnight (UTC) before the generation. Fix it to make the input (and
    /// every count and size in the report) the same whatever the day the input is generated.
    #[arg(long, value_name = "TIME")]
    pub end_time: Option<String>,
    /// Random seed of the generator.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Seconds at the start of the run whose change-rule findings are left out of the latency
    /// percentiles (caches, tables and files warming up); the maximum over the whole run is
    /// reported beside them.
    #[arg(long, default_value_t = 2.0)]
    pub warmup_secs: f64,
    /// Records per batch handed to the pipeline (a Kinesis GetRecords response holds up to
    /// 10,000).
    #[arg(long, default_value_t = 500)]
    pub batch_records: usize,
}

/// What the input file holds (its header line, JSON).
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub(crate) struct InputHeader {
    seed: u64,
    events: u64,
    cloudtrail_share: f64,
    principals: usize,
    log_groups: usize,
    templates_per_group: usize,
    destructive_per_million: f64,
    span_secs: u64,
    /// End of the generated event times, microseconds since the epoch, UTC.
    #[serde(default)]
    end_micros: i64,
    /// Filled in after generation.
    records: u64,
    generated_events: u64,
    bytes: u64,
}

/// The figures `aiops bench` prints. In aws mode each field is measured as
/// [`crate::bench_aws`] describes (stage processes: their summed peak RSS and CPU seconds;
/// latency from the `PutRecords` call to the finding), and `series`, `series_rejected`,
/// `log_groups` and `templates` are 0 (the stage processes do not report them).
#[derive(Debug, Serialize)]
pub struct BenchReport {
    /// Always `bench`.
    pub kind: &'static str,
    /// `embedded` or `aws`.
    pub mode: String,
    /// Events decoded (CloudTrail calls and log lines, duplicates included).
    pub events: u64,
    /// Kinesis records handed to the pipeline.
    pub records: u64,
    /// Bytes of record data handed to the pipeline.
    pub bytes: u64,
    /// Wall-clock seconds from the first record handed over until the pipeline ended.
    pub elapsed_secs: f64,
    /// `events / elapsed_secs`.
    pub events_per_sec: f64,
    /// `bytes / elapsed_secs`, in MB (10^6 bytes) per second.
    pub mb_per_sec: f64,
    /// Requested feed rate, events per second (0: unpaced).
    pub target_rate: f64,
    /// Change-rule findings produced.
    pub change_findings: u64,
    /// Of them, those after the warm-up, whose latencies give the percentiles.
    pub change_findings_measured: u64,
    /// Warm-up left out of the percentiles, seconds.
    pub warmup_secs: f64,
    /// Latency from ingestion to change-rule finding after the warm-up, milliseconds: median.
    pub latency_p50_ms: Option<f64>,
    /// 99th percentile (nearest rank).
    pub latency_p99_ms: Option<f64>,
    /// Maximum after the warm-up.
    pub latency_max_ms: Option<f64>,
    /// Maximum over the whole run, warm-up included.
    pub latency_max_all_ms: Option<f64>,
    /// Peak resident memory of the process during the run, MiB.
    pub peak_rss_mib: f64,
    /// User + system CPU seconds of the process over the run.
    pub cpu_secs: f64,
    /// CPU seconds per million events.
    pub cpu_secs_per_million_events: f64,
    /// Average cores busy (`cpu_secs / elapsed_secs`).
    pub cores_used: f64,
    /// Series the statistics engine tracked at the end.
    pub series: u64,
    /// New series refused because `max_series` were tracked.
    pub series_rejected: u64,
    /// Log groups with a template miner.
    pub log_groups: u64,
    /// Templates over all log groups.
    pub templates: u64,
    /// Findings (change and statistical).
    pub findings: u64,
    /// Incidents opened.
    pub incidents: u64,
    /// Rows written to Parquet.
    pub archived_rows: u64,
    /// Duplicates dropped.
    pub duplicates: u64,
    /// Dead letters.
    pub dead_letters: u64,
    /// Available parallelism of the machine.
    pub cpus: usize,
}

/// Runs `aiops bench`: prints the report (text or JSON) and returns it.
///
/// # Errors
/// Invalid arguments or configuration, an input file that cannot be written or read, or a
/// pipeline failure.
pub fn cmd_bench(args: &BenchArgs, base: PipelineConfig) -> Result<BenchReport> {
    if args.mode != "embedded" && args.mode != "aws" {
        bail!("--mode {}: must be `embedded` or `aws`", args.mode);
    }
    if args.events == 0 || args.events > 1_000_000_000 {
        bail!("--events must be between 1 and 1000000000");
    }
    if !(args.rate.is_finite() && args.rate >= 0.0) {
        bail!("--rate must be a non-negative number of events per second");
    }
    if !(0.0..=1.0).contains(&args.cloudtrail_share) {
        bail!("--cloudtrail-share must be in [0, 1]");
    }
    if args.span_secs == Some(0) {
        bail!("--span-secs must be at least 1");
    }
    if !(args.warmup_secs.is_finite() && args.warmup_secs >= 0.0) {
        bail!("--warmup-secs must be a non-negative number of seconds");
    }
    if args.batch_records == 0 || args.batch_records > 10_000 {
        bail!("--batch-records must be between 1 and 10000");
    }
    if args.mode == "aws" && base.mode != "aws" {
        // Said before the input is generated (which can take a while).
        bail!(
            "--mode aws needs an aws-mode --config (mode = \"aws\", the [aws] streams, tables, \
             bucket and endpoint); the configuration says mode = {:?}",
            base.mode
        );
    }
    if args.principals == 0 || args.log_groups == 0 {
        bail!("--principals and --log-groups must be at least 1");
    }
    if args.rate > 1e9 {
        bail!("--rate must be at most 1000000000 events per second");
    }
    if span_secs(args) > MAX_SPAN_SECS {
        bail!(
            "the input would span {} s of event time (--span-secs, or --events / --rate); at most {MAX_SPAN_SECS} (30 days)",
            span_secs(args)
        );
    }
    if args.warmup_secs > 86_400.0 {
        bail!("--warmup-secs must be at most 86400");
    }
    if args.mode == "aws" && args.timeout_secs == 0 {
        bail!("--timeout-secs must be at least 1");
    }
    std::fs::create_dir_all(&args.work_dir)
        .with_context(|| format!("cannot create {}", args.work_dir.display()))?;
    // Ctrl-C / SIGTERM in embedded mode: stop feeding, let the pipeline drain, remove the run's
    // files, fail. (aws mode keeps the default action; its stage processes get SIGTERM from
    // the kernel when the bench dies.)
    let stop = Arc::new(AtomicBool::new(false));
    if args.mode == "embedded" {
        let flag = stop.clone();
        if let Err(e) = ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst)) {
            tracing::debug!(error = %e, "no signal handler; Ctrl-C ends the bench at once");
        }
    }
    let (input, header) = ensure_input(args, &stop)?;
    if args.mode == "aws" {
        return crate::bench_aws::run(args, base, &input, header.generated_events);
    }

    let data_dir = args
        .work_dir
        .join(format!("run-{}", uuid::Uuid::new_v4().simple()));
    let _cleanup = RemoveOnDrop(if args.keep {
        Vec::new()
    } else {
        vec![data_dir.clone()]
    });
    let mut config = base;
    config.mode = "embedded".into();
    config.data_dir = data_dir.clone();
    config.sources = Vec::new();
    config
        .validate()
        .map_err(|e| anyhow::anyhow!("configuration: {e}"))?;

    let counters = Arc::new(Counters::default());
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let engine = Arc::new(Mutex::new(None));
    let fed: Arc<Mutex<Result<(u64, u64), String>>> = Arc::new(Mutex::new(Ok((0, 0))));
    let feed: RecordFeed = {
        let input = input.clone();
        let rate = args.rate;
        let batch_records = if rate > 0.0 {
            args.batch_records.min(100)
        } else {
            args.batch_records
        };
        let fed = fed.clone();
        let stop = stop.clone();
        Box::new(move |send: &dyn Fn(Vec<SimRecord>) -> bool| {
            let result =
                feed_file(&input, rate, batch_records, &stop, send).map_err(|e| format!("{e:#}"));
            if let Ok(mut f) = fed.lock() {
                *f = result;
            }
        })
    };
    let probes = Probes {
        feeds: vec![feed],
        change_latency_micros: Some(latencies.clone()),
        engine_counters: Some(engine.clone()),
    };

    reset_peak_rss();
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    let started_micros = now_micros();
    run_embedded_with(
        &config,
        Vec::new(),
        RunMode::Follow,
        stop.clone(),
        counters.clone(),
        Box::new(|_| {}),
        None,
        probes,
    )?;
    let elapsed = started.elapsed().as_secs_f64().max(1e-9);
    let cpu = cpu_seconds() - cpu_before;
    let peak_rss_mib = peak_rss_kib().map_or(0.0, |k| k as f64 / 1024.0);

    if stop.load(Ordering::SeqCst) {
        bail!("interrupted; the run's files were removed");
    }
    let summary = counters.summary();
    let (records, bytes) = match fed.lock().map(|f| f.clone()) {
        Ok(Ok(totals)) => totals,
        Ok(Err(e)) => bail!("reading the bench input failed: {e}"),
        Err(_) => bail!("the bench feed thread panicked"),
    };
    if summary.events + summary.dead_letters != header.generated_events {
        bail!(
            "the pipeline decoded {} events and {} dead letters from an input of {} events",
            summary.events,
            summary.dead_letters,
            header.generated_events
        );
    }
    let samples: Vec<(i64, i64)> = latencies.lock().map(|l| l.clone()).unwrap_or_default();
    let max_all = samples.iter().map(|&(_, l)| l).max();
    let warm_from = started_micros.saturating_add((args.warmup_secs * 1e6) as i64);
    let mut lat: Vec<i64> = samples
        .iter()
        .filter(|&&(at, _)| at >= warm_from)
        .map(|&(_, l)| l)
        .collect();
    lat.sort_unstable();
    let pct = |p: f64| -> Option<f64> {
        if lat.is_empty() {
            return None;
        }
        // Nearest rank.
        let rank = ((p * lat.len() as f64).ceil() as usize).clamp(1, lat.len());
        lat.get(rank - 1).map(|&v| v as f64 / 1000.0)
    };
    let engine = engine.lock().ok().and_then(|e| e.clone());
    let report = BenchReport {
        kind: "bench",
        mode: args.mode.clone(),
        events: summary.events,
        records,
        bytes,
        elapsed_secs: elapsed,
        events_per_sec: summary.events as f64 / elapsed,
        mb_per_sec: bytes as f64 / elapsed / 1e6,
        target_rate: args.rate,
        change_findings: samples.len() as u64,
        change_findings_measured: lat.len() as u64,
        warmup_secs: args.warmup_secs,
        latency_p50_ms: pct(0.50),
        latency_p99_ms: pct(0.99),
        latency_max_ms: lat.last().map(|&v| v as f64 / 1000.0),
        latency_max_all_ms: max_all.map(|v| v as f64 / 1000.0),
        peak_rss_mib,
        cpu_secs: cpu,
        cpu_secs_per_million_events: if summary.events > 0 {
            cpu / summary.events as f64 * 1e6
        } else {
            0.0
        },
        cores_used: cpu / elapsed,
        series: engine.as_ref().map_or(0, |e| e.series_tracked),
        series_rejected: engine.as_ref().map_or(0, |e| e.series_rejected),
        log_groups: engine.as_ref().map_or(0, |e| e.log_groups),
        templates: engine
            .as_ref()
            .map_or(0, |e| e.templates_per_group.values().sum()),
        findings: summary.findings,
        incidents: summary.incidents,
        archived_rows: summary.archived_rows,
        duplicates: summary.duplicates,
        dead_letters: summary.dead_letters,
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    Ok(report)
}

/// Prints a report as text.
pub fn print_text(r: &BenchReport) {
    let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2} ms"));
    out!(
        "aiops bench ({} mode, {} cpus): {} events ({} records, {:.1} MB) in {:.2} s",
        r.mode,
        r.cpus,
        r.events,
        r.records,
        r.bytes as f64 / 1e6,
        r.elapsed_secs
    );
    out!(
        "  throughput        {:.0} events/s, {:.1} MB/s{}",
        r.events_per_sec,
        r.mb_per_sec,
        if r.target_rate > 0.0 {
            format!(" (fed at {:.0} events/s)", r.target_rate)
        } else {
            " (unpaced)".to_string()
        }
    );
    if r.change_findings > 0 && r.change_findings_measured == 0 {
        out!(
            "  (every change finding fell in the {:.0} s warm-up: run longer, or pass --warmup-secs 0)",
            r.warmup_secs
        );
    }
    out!(
        "  change findings   {} ({} after a {:.0} s warm-up): latency p50 {}, p99 {}, max {} (max {} with the warm-up)",
        r.change_findings,
        r.change_findings_measured,
        r.warmup_secs,
        ms(r.latency_p50_ms),
        ms(r.latency_p99_ms),
        ms(r.latency_max_ms),
        ms(r.latency_max_all_ms)
    );
    out!(
        "  resources         peak RSS {:.0} MiB, {:.2} CPU s ({:.2} per million events, {:.2} cores busy)",
        r.peak_rss_mib,
        r.cpu_secs,
        r.cpu_secs_per_million_events,
        r.cores_used
    );
    out!(
        "  detect            {} series, {} log groups, {} templates; {} findings, {} incidents",
        r.series,
        r.log_groups,
        r.templates,
        r.findings,
        r.incidents
    );
    out!(
        "  ingest            {} rows archived, {} duplicates, {} dead letters",
        r.archived_rows,
        r.duplicates,
        r.dead_letters
    );
}

/// The end of the generated event times, microseconds since the epoch, UTC: `--end-time`, or
/// the last midnight (UTC) before now.
///
/// # Errors
/// When `--end-time` is neither RFC 3339 nor `YYYY-MM-DD`, or lies in the future (its events
/// would be dead letters: ingest refuses events more than a day ahead of the clock).
fn end_micros(args: &BenchArgs) -> Result<i64> {
    let day_us = 86_400 * MICROS_PER_SEC;
    let now = now_micros();
    match &args.end_time {
        None => Ok(now.div_euclid(day_us) * day_us),
        Some(text) => {
            let end = aiops_history::parse_time_arg("--end-time", text)?;
            if end > now {
                bail!("--end-time {text:?} is in the future; generated events must be in the past");
            }
            // Ingest refuses events dated before 2000 (dead letters).
            let start = end - span_secs(args) as i64 * MICROS_PER_SEC;
            if start < 946_684_800 * MICROS_PER_SEC {
                bail!("--end-time {text:?}: the generated events would start before 2000");
            }
            Ok(end)
        }
    }
}

/// The event-time span of the generated input, seconds (see [`BenchArgs::span_secs`]).
fn span_secs(args: &BenchArgs) -> u64 {
    match args.span_secs {
        Some(s) => s,
        None if args.rate > 0.0 => ((args.events as f64 / args.rate).ceil() as u64).max(1),
        None => 3600,
    }
}

fn input_path(args: &BenchArgs, end_micros: i64) -> PathBuf {
    let key = format!(
        "{}-{}-{}-{}-{}-{}-{}-{}-{end_micros}",
        args.seed,
        args.events,
        args.cloudtrail_share,
        args.principals,
        args.log_groups,
        args.templates_per_group,
        args.destructive_per_million,
        span_secs(args)
    );
    let h = aiops_core::stable_hash(&[key.as_bytes()]);
    args.work_dir.join(format!("input-{h:016x}.bin"))
}

/// Returns the cached input file for these arguments, generating it first when missing.
fn ensure_input(args: &BenchArgs, stop: &AtomicBool) -> Result<(PathBuf, InputHeader)> {
    let end_micros = end_micros(args)?;
    let path = input_path(args, end_micros);
    if path.exists() {
        match cached_input(&path, args, end_micros) {
            Ok(header) => return Ok((path, header)),
            Err(reason) => {
                tracing::warn!(path = %path.display(), %reason, "cached bench input unusable; generating it again");
            }
        }
    }
    let events = args.events;
    let span = span_secs(args) as f64;
    let per_sec = events as f64 / span;
    let sim_config = SimulateConfig {
        seed: args.seed,
        speedup: 1.0,
        cloudtrail_per_sec: per_sec * args.cloudtrail_share,
        log_lines_per_sec: per_sec * (1.0 - args.cloudtrail_share),
        principals: args.principals.max(1),
        log_groups: args.log_groups.max(1),
        inject_incidents: false,
        duplicate_fraction: 0.001,
        duration_secs: 0,
        destructive_per_million: args.destructive_per_million,
        templates_per_group: args.templates_per_group,
    };
    sim_config
        .validate()
        .map_err(|e| anyhow::anyhow!("generator: {e}"))?;
    if !args.json {
        eprintln!(
            "generating {events} events into {} (once; reused by later runs with the same parameters)",
            path.display()
        );
    }
    // Event times end at `--end-time`, by default the last midnight (UTC) before the
    // generation: never in the future, and the same time of day on every run, so the
    // generator's diurnal curve (and with it every count) is the same whatever the hour the
    // input is generated.
    let span_us = (span * MICROS_PER_SEC as f64) as i64;
    let start = end_micros - span_us;
    let mut sim = Simulator::new(sim_config, start);
    // Names of its own, so two runs generating the same input do not write into one file; a
    // guard removes them on any error or interruption.
    let unique = uuid::Uuid::new_v4().simple().to_string();
    let tmp = path.with_extension(format!("{unique}.partial"));
    let final_tmp = path.with_extension(format!("{unique}.partial2"));
    let _cleanup = RemoveOnDrop(vec![tmp.clone(), final_tmp.clone()]);
    let file =
        std::fs::File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let mut w = BufWriter::new(file);
    let mut header = InputHeader {
        seed: args.seed,
        events,
        cloudtrail_share: args.cloudtrail_share,
        principals: args.principals,
        log_groups: args.log_groups,
        templates_per_group: args.templates_per_group,
        destructive_per_million: args.destructive_per_million,
        span_secs: span_secs(args),
        end_micros,
        records: 0,
        generated_events: 0,
        bytes: 0,
    };
    let mut body = Vec::new();
    let mut out = Vec::new();
    let mut t = start;
    while header.generated_events < events {
        if stop.load(Ordering::SeqCst) {
            bail!("interrupted while generating the input");
        }
        t += MICROS_PER_SEC;
        sim.advance_to(t, &mut out);
        for r in out.drain(..) {
            if header.generated_events >= events {
                break;
            }
            let len = u32::try_from(r.data.len()).context("record too large")?;
            body.extend_from_slice(&len.to_le_bytes());
            body.extend_from_slice(&r.events.to_le_bytes());
            body.extend_from_slice(&r.data);
            header.records += 1;
            header.generated_events += u64::from(r.events);
            header.bytes += u64::from(len);
        }
        if body.len() > 8 * 1024 * 1024 {
            w.write_all(&body)
                .with_context(|| format!("cannot write {}", tmp.display()))?;
            body.clear();
        }
    }
    // Header first: write it into a second file, then append the body.
    let body_file = tmp.clone();
    w.write_all(&body)
        .and_then(|_| w.flush())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    drop(w);
    {
        let mut out = BufWriter::new(
            std::fs::File::create(&final_tmp)
                .with_context(|| format!("cannot create {}", final_tmp.display()))?,
        );
        let written = (|| -> std::io::Result<()> {
            out.write_all(MAGIC)?;
            out.write_all(&serde_json::to_vec(&header)?)?;
            out.write_all(b"\n")?;
            let mut r = std::fs::File::open(&body_file)?;
            std::io::copy(&mut r, &mut out)?;
            out.flush()
        })();
        written.with_context(|| format!("cannot write {}", final_tmp.display()))?;
    }
    std::fs::rename(&final_tmp, &path).with_context(|| {
        format!(
            "cannot rename {} to {}",
            final_tmp.display(),
            path.display()
        )
    })?;
    Ok((path, header))
}

/// Removes its paths (files or directories) when dropped: partial inputs and, unless
/// `--keep`, a run's data directory, whatever way the run ends.
struct RemoveOnDrop(Vec<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        for p in &self.0 {
            if p.is_dir() {
                let _ = std::fs::remove_dir_all(p);
            } else {
                let _ = std::fs::remove_file(p);
            }
        }
    }
}

/// The header of a cached input file when the file is complete and was made with these
/// arguments: its header names the same parameters, and its size is the header's records and
/// bytes exactly.
fn cached_input(path: &Path, args: &BenchArgs, end_micros: i64) -> Result<InputHeader> {
    let header = InputReader::open(path)?.header;
    let wanted = (
        args.seed,
        args.events,
        args.cloudtrail_share,
        args.principals,
        args.log_groups,
        args.templates_per_group,
        args.destructive_per_million,
        span_secs(args),
        end_micros,
    );
    let found = (
        header.seed,
        header.events,
        header.cloudtrail_share,
        header.principals,
        header.log_groups,
        header.templates_per_group,
        header.destructive_per_million,
        header.span_secs,
        header.end_micros,
    );
    if wanted != found {
        bail!("made with other parameters");
    }
    let header_len = MAGIC.len() as u64 + serde_json::to_vec(&header)?.len() as u64 + 1;
    let expected = header_len + header.records * 8 + header.bytes;
    let actual = std::fs::metadata(path)?.len();
    if actual != expected {
        bail!("{actual} bytes where the header promises {expected} (truncated or extended)");
    }
    Ok(header)
}

/// A bench input file opened for reading: its header, then its records one by one. Used by
/// the embedded feed and by the aws-mode producer.
pub(crate) struct InputReader {
    path: PathBuf,
    reader: BufReader<std::fs::File>,
    /// What the file holds (its header line).
    pub(crate) header: InputHeader,
}

impl InputReader {
    /// Opens `path` and reads its header, leaving the reader at the first record.
    ///
    /// # Errors
    /// The file cannot be read, is not a bench input, or its header is not valid JSON.
    pub(crate) fn open(path: &Path) -> Result<InputReader> {
        let f =
            std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let mut reader = BufReader::with_capacity(1 << 20, f);
        let mut magic = vec![0u8; MAGIC.len()];
        reader
            .read_exact(&mut magic)
            .with_context(|| format!("{}: not a bench input file", path.display()))?;
        if magic != MAGIC {
            bail!("{} is not a bench input file", path.display());
        }
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while reader.read(&mut byte)? == 1 && byte[0] != b'\n' {
            line.push(byte[0]);
            if line.len() > 64 * 1024 {
                bail!("{}: header line too long", path.display());
            }
        }
        let header: InputHeader = serde_json::from_slice(&line)
            .with_context(|| format!("{}: bad header", path.display()))?;
        Ok(InputReader {
            path: path.to_path_buf(),
            reader,
            header,
        })
    }

    /// The next record: its data and the number of events in it; `None` at the end.
    ///
    /// # Errors
    /// A record longer than [`MAX_RECORD_BYTES`] (a corrupt length), a truncated record, or an
    /// I/O error; each names the file.
    pub(crate) fn next_record(&mut self) -> Result<Option<(Vec<u8>, u32)>> {
        let mut head = [0u8; 8];
        match self.reader.read_exact(&mut head) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => bail!("{}: {e}", self.path.display()),
        }
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        let events = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        if len > MAX_RECORD_BYTES {
            bail!("{}: record of {len} bytes is corrupt", self.path.display());
        }
        let mut data = vec![0u8; len as usize];
        self.reader
            .read_exact(&mut data)
            .with_context(|| format!("{}: truncated record", self.path.display()))?;
        Ok(Some((data, events)))
    }
}

/// Reads the records of `path` and hands them over in batches of `batch_records`, paced at
/// `rate` events per second when positive. Returns (records, bytes) handed over.
fn feed_file(
    path: &Path,
    rate: f64,
    batch_records: usize,
    stop: &AtomicBool,
    send: &dyn Fn(Vec<SimRecord>) -> bool,
) -> Result<(u64, u64)> {
    let mut input = InputReader::open(path)?;
    let started = Instant::now();
    let (mut records, mut bytes, mut events) = (0u64, 0u64, 0u64);
    let mut batch = Vec::with_capacity(batch_records);
    let mut batch_events = 0u64;
    loop {
        let next = input.next_record()?;
        let more = next.is_some();
        if let Some((data, n)) = next {
            let len = data.len() as u64;
            records += 1;
            bytes += len;
            batch_events += u64::from(n);
            batch.push(SimRecord {
                data,
                position: Position {
                    stream: "bench".to_string(),
                    shard_id: "shardId-000000000000".to_string(),
                    sequence_number: format!("{records:020}"),
                    sub_sequence_number: None,
                },
                events: n,
            });
        }
        if batch.len() >= batch_records || (!more && !batch.is_empty()) {
            if rate > 0.0 {
                // Hand the batch over when the schedule says its first event is due.
                let due = Duration::from_secs_f64(events as f64 / rate);
                let now = started.elapsed();
                if due > now {
                    std::thread::sleep(due - now);
                }
            }
            events += batch_events;
            batch_events = 0;
            if !send(std::mem::replace(
                &mut batch,
                Vec::with_capacity(batch_records),
            )) {
                break;
            }
        }
        if !more || stop.load(Ordering::SeqCst) {
            break;
        }
    }
    let header = &input.header;
    if !stop.load(Ordering::SeqCst) && (records, bytes) != (header.records, header.bytes) {
        bail!(
            "{}: {records} records of {bytes} bytes where the header promises {} of {}",
            path.display(),
            header.records,
            header.bytes
        );
    }
    Ok((records, bytes))
}

/// User + system CPU seconds of this process so far (`getrusage(RUSAGE_SELF)`).
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct we own; RUSAGE_SELF is always valid.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    if rc != 0 {
        return 0.0;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Resets the peak resident set size (`VmHWM`) to the current size (Linux 4.0+:
/// `echo 5 > /proc/self/clear_refs`); without it, the peak covers input generation too.
fn reset_peak_rss() {
    if std::fs::write("/proc/self/clear_refs", b"5").is_err() {
        tracing::debug!("cannot reset VmHWM; the peak includes input generation");
    }
}

/// Peak resident set size of this process, KiB (`VmHWM` in `/proc/self/status`).
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}
