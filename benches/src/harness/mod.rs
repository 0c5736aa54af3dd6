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

pub mod aws;
pub mod error;
mod input;
mod params;

pub use error::BenchError;
pub use params::{BenchArgs, BenchReport};

use aiops_core::Position;
use aiops_core::time::now_micros;
use aiops_pipeline::PipelineConfig;
use aiops_pipeline::embedded::{Counters, Probes, RecordFeed, RunMode, run_embedded_with};
use aiops_pipeline::sim::SimRecord;
use error::{Context, Result};
use input::{InputReader, RemoveOnDrop, ensure_input, span_secs};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Longest event-time span of a generated input: 30 days, in seconds.
const MAX_SPAN_SECS: u64 = 30 * 86_400;

/// Runs `aiops bench` and returns its report.
///
/// # Errors
/// Invalid arguments or configuration, an input file that cannot be written or read, or a
/// pipeline failure.
pub fn cmd_bench(args: &BenchArgs, base: PipelineConfig) -> Result<BenchReport> {
    if args.mode != "embedded" && args.mode != "aws" {
        return Err(BenchError::Invalid(format!(
            "--mode {}: must be `embedded` or `aws`",
            args.mode
        )));
    }
    if args.events == 0 || args.events > 1_000_000_000 {
        return Err(BenchError::Invalid(
            "--events must be between 1 and 1000000000".into(),
        ));
    }
    if !(args.rate.is_finite() && args.rate >= 0.0) {
        return Err(BenchError::Invalid(
            "--rate must be a non-negative number of events per second".into(),
        ));
    }
    if !(0.0..=1.0).contains(&args.cloudtrail_share) {
        return Err(BenchError::Invalid(
            "--cloudtrail-share must be in [0, 1]".into(),
        ));
    }
    if args.span_secs == Some(0) {
        return Err(BenchError::Invalid("--span-secs must be at least 1".into()));
    }
    if !(args.warmup_secs.is_finite() && args.warmup_secs >= 0.0) {
        return Err(BenchError::Invalid(
            "--warmup-secs must be a non-negative number of seconds".into(),
        ));
    }
    if args.batch_records == 0 || args.batch_records > 10_000 {
        return Err(BenchError::Invalid(
            "--batch-records must be between 1 and 10000".into(),
        ));
    }
    if args.mode == "aws" && base.mode != "aws" {
        // Said before the input is generated (which can take a while).
        return Err(BenchError::Invalid(format!(
            "--mode aws needs an aws-mode --config (mode = \"aws\", the [aws] streams, tables, \
             bucket and endpoint); the configuration says mode = {:?}",
            base.mode
        )));
    }
    if args.principals == 0 || args.log_groups == 0 {
        return Err(BenchError::Invalid(
            "--principals and --log-groups must be at least 1".into(),
        ));
    }
    if args.rate > 1e9 {
        return Err(BenchError::Invalid(
            "--rate must be at most 1000000000 events per second".into(),
        ));
    }
    if span_secs(args) > MAX_SPAN_SECS {
        return Err(BenchError::Invalid(format!(
            "the input would span {} s of event time (--span-secs, or --events / --rate); at most {MAX_SPAN_SECS} (30 days)",
            span_secs(args)
        )));
    }
    if args.warmup_secs > 86_400.0 {
        return Err(BenchError::Invalid(
            "--warmup-secs must be at most 86400".into(),
        ));
    }
    if args.mode == "aws" && args.timeout_secs == 0 {
        return Err(BenchError::Invalid(
            "--timeout-secs must be at least 1".into(),
        ));
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
        return aws::run(args, base, &input, header.generated_events);
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
        .map_err(|e| BenchError::Invalid(format!("configuration: {e}")))?;

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
        ..Probes::default()
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
        return Err(BenchError::Invalid(
            "interrupted; the run's files were removed".into(),
        ));
    }
    let summary = counters.summary();
    let (records, bytes) = match fed.lock().map(|f| f.clone()) {
        Ok(Ok(totals)) => totals,
        Ok(Err(e)) => {
            return Err(BenchError::Invalid(format!(
                "reading the bench input failed: {e}"
            )));
        }
        Err(_) => return Err(BenchError::Invalid("the bench feed thread panicked".into())),
    };
    if summary.events + summary.dead_letters != header.generated_events {
        return Err(BenchError::Invalid(format!(
            "the pipeline decoded {} events and {} dead letters from an input of {} events",
            summary.events, summary.dead_letters, header.generated_events
        )));
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
        return Err(BenchError::Invalid(format!(
            "{}: {records} records of {bytes} bytes where the header promises {} of {}",
            path.display(),
            header.records,
            header.bytes
        )));
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
