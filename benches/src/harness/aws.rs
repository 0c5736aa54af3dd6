//! `aiops bench --mode aws`: the end-to-end benchmark through the stage processes on Kinesis
//! (issue 7).
//!
//! With an aws-mode `--config` (`mode = "aws"`, the `[aws]` names and, for a local emulator
//! such as moto, `endpoint_url`), one run:
//! 1. writes the run's configuration to `<work-dir>/aws-run-<id>/pipeline.toml`: the given one
//!    with `data_dir` in the run directory and `[aws] checkpoint_interval_ms` lowered to at
//!    most [`RUN_CHECKPOINT_INTERVAL_MS`] (completion is observed through the detect stage's
//!    checkpoints, so a 5 s interval would add up to 5 s to every run);
//! 2. runs `aiops setup` on it (a child process of the current binary) to create the streams,
//!    tables and bucket (existing ones are used as they are);
//! 3. reads the cached generator input once (not measured) to find the records whose events
//!    match a change rule, by event id;
//! 4. starts `aiops ingest`, `aiops detect` and `aiops act` as child processes with that
//!    configuration and distinct worker ids, and waits until each holds the leases of every
//!    shard of its stream;
//! 5. puts the generated records on the raw stream with `PutRecords` (batches of at most
//!    `--batch-records` and 500 records and 5 MiB, cut by
//!    [`aiops_aws::producer::batch_ranges`]; entries a call did not accept are sent again
//!    after a backoff), paced at `--rate` events per second when given, partition key = a
//!    stable hash of the record (an exact retry lands on the same shard, as for a real
//!    producer), while two readers in this process follow the events and decisions streams
//!    from their tips (`LATEST` taken before the first put);
//! 6. waits until every event is accounted for: (a) every raw shard's last put record was
//!    processed by ingest (its lease checkpoint reached that sequence number, or an event of
//!    that record appeared on the events stream), (b) the events reader then read every
//!    events shard to its tip, (c) detect's checkpoint on every events shard reached the last
//!    record read there — the end of the measured run; then (d) act's checkpoints reach the
//!    tips of the decisions stream (not part of the elapsed time), with `--timeout-secs`;
//! 7. reads each stage's CPU time (`/proc/<pid>/stat` utime + stime over `sysconf(_SC_CLK_TCK)`)
//!    and peak resident memory (`VmHWM` of `/proc/<pid>/status`, sampled while the run
//!    lasts), stops the stages with SIGTERM (they flush, checkpoint and print their counters
//!    as JSON summary lines, which give the event, duplicate, dead-letter, archive, finding
//!    and incident counts), and reports.
//!
//! Figures ([`super::BenchReport`] fields): `elapsed_secs` runs from the first
//! `PutRecords` call to the moment (c) was observed (polled every 100 ms; it includes up to
//! one checkpoint interval of detect); `events` are the events ingest decoded (duplicates
//! included), `records`/`bytes` what was put on the raw stream; change-rule latency is the
//! finding's `detected_at` (detect's clock, same machine) minus the start of the `PutRecords`
//! call that carried the record, for every change-rule finding read from the decisions
//! stream whose event id is one of this run's records; `peak_rss_mib` is the sum of the three
//! stage processes' peaks and `cpu_secs` the sum of their CPU seconds when (c) was observed
//! (process start-up included; this process's own producer and readers are not counted).
//! The stages do not report their statistics engine, so `series`, `series_rejected`,
//! `log_groups` and `templates` are 0 in aws mode.
//!
//! On an emulator these figures measure the emulator (moto is a single Python process
//! answering every Kinesis, DynamoDB and S3 call) as much as aiops; they show that the stage
//! processes keep up and where latency comes from (GetRecords polling, checkpoint intervals),
//! not what aiops does per core on AWS. Against a real deployment the run writes synthetic
//! CloudTrail calls (destructive ones among them) to its raw stream: point it at a dedicated
//! one.

use super::error::{BenchError, Context, Result};
use super::input::InputReader;
use super::params::{BenchArgs, BenchReport};
use aiops_aws::backoff::Backoff;
use aiops_aws::kinesis::{
    IteratorStart, KinesisError, KinesisPort, KinesisRecord, PutEntry, PutOutcome, SdkKinesis,
    SequenceNumber,
};
use aiops_aws::lease::{Checkpoint, DynamoLeaseStore, Lease, LeaseStore};
use aiops_aws::producer::{MAX_RECORDS_PER_CALL, batch_ranges, check_entry};
use aiops_core::time::now_micros;
use aiops_core::{Finding, FindingKind, Position};
use aiops_detect::rules::ChangeRules;
use aiops_ingest::decode::{DecodeOutput, decode_kinesis_record};
use aiops_pipeline::PipelineConfig;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Upper bound of `[aws] checkpoint_interval_ms` in the run's configuration, milliseconds.
pub const RUN_CHECKPOINT_INTERVAL_MS: u64 = 500;

/// Most change-rule event ids remembered from the input (each maps to its record's put time).
const MAX_TRACKED_EVENTS: usize = 1_000_000;

/// Most latency samples kept.
const MAX_SAMPLES: usize = 1_000_000;

/// Least time between two `GetRecords` calls of a reader on one shard (5 calls per second
/// per shard, shared with the stage reading the same shard).
const READ_INTERVAL: Duration = Duration::from_millis(200);

/// How often completion, liveness and memory of the stages are checked.
const POLL: Duration = Duration::from_millis(100);

/// One stage child process.
struct StageProcess {
    name: &'static str,
    worker_id: String,
    child: Child,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
    peak_rss_kib: u64,
}

/// The stage processes; any still running when this is dropped (an error path) are killed.
struct Stages(Vec<StageProcess>);

impl Drop for Stages {
    fn drop(&mut self) {
        for s in &mut self.0 {
            if matches!(s.child.try_wait(), Ok(None)) {
                let _ = s.child.kill();
                let _ = s.child.wait();
            }
        }
    }
}

/// What a reader of one stream learned about a shard.
#[derive(Debug, Default)]
struct ShardTail {
    /// Last sequence number read in this run.
    last: Option<SequenceNumber>,
    /// Start of the latest `GetRecords` call that returned no record (the reader was at the
    /// tip of the shard when it started).
    caught_up_call_started: Option<Instant>,
}

/// Per shard id.
type Tails = Arc<Mutex<HashMap<String, ShardTail>>>;

/// Record index -> start of the `PutRecords` call carrying it (microseconds since the Unix
/// epoch, UTC), for the records with change-rule events.
type PutTimes = Arc<Mutex<HashMap<u64, i64>>>;

/// What the decisions reader collects.
#[derive(Debug, Default)]
struct Latencies {
    /// Change-rule findings read.
    change_findings: u64,
    /// (put time, latency) in microseconds, for the findings matched to a put record.
    samples: Vec<(i64, i64)>,
}

/// Runs `aiops bench --mode aws` on the cached `input` (which holds `generated_events`
/// events); see the module documentation for the steps and what each figure means.
///
/// # Errors
/// A configuration that is not aws mode, `aiops setup` failing, a stage process exiting or
/// not taking its leases, AWS calls failing for good, or the stages not accounting for every
/// event within `--timeout-secs`.
pub fn run(
    args: &BenchArgs,
    base: PipelineConfig,
    input: &Path,
    generated_events: u64,
) -> Result<BenchReport> {
    if base.mode != "aws" {
        return Err(BenchError::Invalid(format!(
            "--mode aws needs an aws-mode --config (mode = \"aws\", the [aws] streams, tables, \
             bucket and, for a local emulator, endpoint_url; see pipeline.aws.toml); this one \
             says mode = {:?}",
            base.mode
        )));
    }
    if args.timeout_secs == 0 {
        return Err(BenchError::Invalid(
            "--timeout-secs must be at least 1".into(),
        ));
    }
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let short = run_id.get(..8).unwrap_or(&run_id).to_string();
    let run_dir = args.work_dir.join(format!("aws-run-{short}"));
    std::fs::create_dir_all(&run_dir)
        .with_context(|| format!("cannot create {}", run_dir.display()))?;
    let mut cfg = base;
    cfg.data_dir = run_dir.join("data");
    cfg.aws.checkpoint_interval_ms = cfg
        .aws
        .checkpoint_interval_ms
        .min(RUN_CHECKPOINT_INTERVAL_MS);
    cfg.validate()
        .map_err(|e| BenchError::Invalid(format!("configuration: {e}")))?;
    let config_path = run_dir.join("pipeline.toml");
    std::fs::write(
        &config_path,
        toml::to_string(&cfg).context("cannot serialise the run configuration")?,
    )
    .with_context(|| format!("cannot write {}", config_path.display()))?;
    // The children read it back: make sure it round-trips.
    PipelineConfig::load(&config_path)
        .and_then(|c| c.validate())
        .context("the run configuration does not load back")?;

    if !args.json {
        eprintln!(
            "aws mode: stage processes on {} (figures measure the AWS endpoint, e.g. the moto \
             emulator, as much as aiops); run directory {}",
            cfg.aws
                .endpoint_url
                .as_deref()
                .unwrap_or("the SDK's default endpoints"),
            run_dir.display()
        );
    }
    let tracked = change_rule_events(&cfg, input)?;
    let exe = std::env::current_exe().context("cannot find the aiops binary")?;
    run_setup(&exe, &config_path, &run_dir)?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("aiops-bench")
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result = rt.block_on(run_async(
        args,
        &cfg,
        &exe,
        &config_path,
        &run_dir,
        &short,
        input,
        generated_events,
        tracked,
    ));
    drop(rt);
    if result.is_ok() && !args.keep {
        let _ = std::fs::remove_dir_all(&run_dir);
    }
    result
}

/// Event id -> index of its record in the input, for every event a change rule matches.
fn change_rule_events(cfg: &PipelineConfig, input: &Path) -> Result<HashMap<String, u64>> {
    let rules = ChangeRules::new(&cfg.detect.change_rules)?;
    let limits = cfg.ingest.limits();
    let mut tracked = HashMap::new();
    let mut index = 0u64;
    let position = Position::default();
    let now = now_micros();
    for_each_record(input, |data, _| {
        let mut out = DecodeOutput::default();
        decode_kinesis_record(data, &position, now, &limits, &mut out);
        for e in &out.events {
            if tracked.len() < MAX_TRACKED_EVENTS && !rules.evaluate(e).1.is_empty() {
                tracked.insert(e.event_id.clone(), index);
            }
        }
        index += 1;
        true
    })?;
    Ok(tracked)
}

/// Calls `f(data, events)` for each record of a bench input file, in order, until it returns
/// false.
fn for_each_record(input: &Path, mut f: impl FnMut(&[u8], u32) -> bool) -> Result<()> {
    let mut reader = InputReader::open(input)?;
    while let Some((data, n)) = reader.next_record()? {
        if !f(&data, n) {
            break;
        }
    }
    Ok(())
}

/// Runs `aiops setup --json` on the run configuration.
fn run_setup(exe: &Path, config: &Path, run_dir: &Path) -> Result<()> {
    let out = Command::new(exe)
        .arg("setup")
        .arg("--config")
        .arg(config)
        .arg("--json")
        .stdin(Stdio::null())
        .output()
        .context("cannot run aiops setup")?;
    let _ = std::fs::write(run_dir.join("setup.out"), &out.stdout);
    if !out.status.success() {
        return Err(BenchError::Invalid(format!(
            "aiops setup failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

fn spawn_stage(
    exe: &Path,
    config: &Path,
    run_dir: &Path,
    name: &'static str,
    run_id: &str,
) -> Result<StageProcess> {
    let worker_id = format!("bench-{name}-{run_id}");
    let stdout_path = run_dir.join(format!("{name}.out"));
    let stderr_path = run_dir.join(format!("{name}.log"));
    let stdout = std::fs::File::create(&stdout_path)
        .with_context(|| format!("cannot create {}", stdout_path.display()))?;
    let stderr = std::fs::File::create(&stderr_path)
        .with_context(|| format!("cannot create {}", stderr_path.display()))?;
    let mut command = Command::new(exe);
    command
        .arg(name)
        .arg("--config")
        .arg(config)
        .arg("--worker-id")
        .arg(&worker_id)
        .arg("--json")
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr);
    // The stage gets SIGTERM when the bench dies (Ctrl-C, SIGTERM, a crash), so no stage is
    // left running and holding its leases (prctl(2) PR_SET_PDEATHSIG; the bench spawns the
    // stages from its main thread, which lives as long as the process).
    // SAFETY: the closure runs in the child between fork and exec and only calls prctl, which
    // is async-signal-safe.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut command, || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = command
        .spawn()
        .with_context(|| format!("cannot start aiops {name}"))?;
    Ok(StageProcess {
        name,
        worker_id,
        child,
        stdout_path,
        stderr_path,
        peak_rss_kib: 0,
    })
}

/// The last `max` bytes of a file, as text (for error messages).
fn tail_of(path: &Path, max: usize) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let from = text.len().saturating_sub(max);
    String::from_utf8_lossy(text.get(from..).unwrap_or_default())
        .trim()
        .to_string()
}

impl Stages {
    /// Fails when a stage exited; samples each stage's `VmHWM`.
    fn check(&mut self) -> Result<()> {
        for s in &mut self.0 {
            if let Ok(Some(status)) = s.child.try_wait() {
                return Err(BenchError::Invalid(format!(
                    "aiops {} exited early ({status}); its log ends with:\n{}",
                    s.name,
                    tail_of(&s.stderr_path, 4000)
                )));
            }
            if let Some(k) = proc_status_kib(s.child.id(), "VmHWM:") {
                s.peak_rss_kib = s.peak_rss_kib.max(k);
            }
        }
        Ok(())
    }

    /// SIGTERM to every stage, then waits up to `grace` for them (SIGKILL after that).
    fn stop(&mut self, grace: Duration) {
        for s in &self.0 {
            if let Ok(pid) = libc::pid_t::try_from(s.child.id()) {
                // SAFETY: kill(2) with a PID of our own child that was not yet reaped.
                unsafe {
                    libc::kill(pid, libc::SIGTERM);
                }
            }
        }
        let deadline = Instant::now() + grace;
        for s in &mut self.0 {
            loop {
                match s.child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() >= deadline => {
                        tracing::warn!(stage = s.name, "stage did not stop in time; killed");
                        let _ = s.child.kill();
                        let _ = s.child.wait();
                        break;
                    }
                    Ok(None) => std::thread::sleep(POLL),
                }
            }
        }
    }
}

/// A `kB` field of `/proc/<pid>/status`, KiB.
fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// User + system CPU seconds of a process (`/proc/<pid>/stat` fields 14 and 15, clock ticks,
/// over `sysconf(_SC_CLK_TCK)`; proc(5)).
fn proc_cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces; the first
    // of them is field 3 (state), so utime (14) and stime (15) are at 11 and 12.
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks <= 0 {
        return None;
    }
    Some((utime + stime) / ticks as f64)
}

/// Whether a checkpoint covers the record with sequence number `seq`.
fn covers(checkpoint: &Checkpoint, seq: &SequenceNumber) -> bool {
    match checkpoint {
        Checkpoint::ShardEnd => true,
        Checkpoint::Sequence {
            sequence_number, ..
        } => SequenceNumber::parse(sequence_number).is_some_and(|c| &c >= seq),
        _ => false,
    }
}

/// The leases of `stage` on `stream`, by shard id.
async fn leases(
    store: &DynamoLeaseStore,
    stage: &str,
    stream: &str,
) -> Result<HashMap<String, Lease>> {
    Ok(store
        .list(&Lease::prefix_of(stage, stream))
        .await
        .with_context(|| format!("cannot read the {stage} leases"))?
        .into_iter()
        .map(|l| (l.shard_id.clone(), l))
        .collect())
}

/// Whether `stage` has a checkpoint covering `targets` (shard id -> sequence number) on
/// every shard of `stream`.
async fn checkpoints_cover(
    store: &DynamoLeaseStore,
    stage: &str,
    stream: &str,
    targets: &HashMap<String, SequenceNumber>,
) -> Result<bool> {
    if targets.is_empty() {
        return Ok(true);
    }
    let leases = leases(store, stage, stream).await?;
    Ok(targets.iter().all(|(shard, seq)| {
        leases
            .get(shard)
            .is_some_and(|l| covers(&l.checkpoint, seq))
    }))
}

/// Shard ids of a stream (open and closed).
async fn shard_ids(kinesis: &SdkKinesis, stream: &str) -> Result<Vec<String>> {
    Ok(kinesis
        .list_shards(stream)
        .await
        .with_context(|| format!("cannot list the shards of {stream}"))?
        .into_iter()
        .map(|s| s.shard_id)
        .collect())
}

/// Follows every shard of `stream` from its tip (iterators are taken before this returns),
/// calling `on_record` for each record, until `stop`.
async fn follow_stream(
    kinesis: Arc<SdkKinesis>,
    stream: &str,
    tails: Tails,
    stop: &watch::Receiver<bool>,
    on_record: Arc<dyn Fn(&KinesisRecord) + Send + Sync>,
) -> Result<Vec<tokio::task::JoinHandle<()>>> {
    let mut tasks = Vec::new();
    for shard in shard_ids(&kinesis, stream).await? {
        let iterator = kinesis
            .get_shard_iterator(stream, &shard, &IteratorStart::Latest)
            .await
            .with_context(|| format!("cannot read {stream} {shard}"))?;
        if let Ok(mut t) = tails.lock() {
            t.insert(shard.clone(), ShardTail::default());
        }
        tasks.push(tokio::spawn(follow_shard(
            kinesis.clone(),
            stream.to_string(),
            shard,
            iterator,
            tails.clone(),
            stop.clone(),
            on_record.clone(),
        )));
    }
    Ok(tasks)
}

async fn follow_shard(
    kinesis: Arc<SdkKinesis>,
    stream: String,
    shard: String,
    mut iterator: String,
    tails: Tails,
    stop: watch::Receiver<bool>,
    on_record: Arc<dyn Fn(&KinesisRecord) + Send + Sync>,
) {
    let mut last: Option<String> = None;
    while !*stop.borrow() {
        let started = Instant::now();
        match kinesis.get_records(&iterator, 10_000).await {
            Ok(page) => {
                for r in &page.records {
                    on_record(r);
                }
                if let Some(r) = page.records.last() {
                    last = Some(r.sequence_number.clone());
                }
                if let Ok(mut t) = tails.lock() {
                    let tail = t.entry(shard.clone()).or_default();
                    if let Some(seq) = last.as_deref().and_then(SequenceNumber::parse) {
                        tail.last = Some(seq);
                    }
                    if page.records.is_empty() {
                        tail.caught_up_call_started = Some(started);
                    }
                }
                match page.next_iterator {
                    Some(next) => iterator = next,
                    None => return,
                }
            }
            Err(KinesisError::ExpiredIterator(_)) => {
                let start = match &last {
                    Some(s) => IteratorStart::AfterSequenceNumber(s.clone()),
                    None => IteratorStart::Latest,
                };
                match kinesis.get_shard_iterator(&stream, &shard, &start).await {
                    Ok(it) => iterator = it,
                    Err(e) => tracing::warn!(%stream, %shard, error = %e, "bench reader"),
                }
            }
            Err(e) => tracing::warn!(%stream, %shard, error = %e, "bench reader"),
        }
        let spent = started.elapsed();
        if spent < READ_INTERVAL {
            tokio::time::sleep(READ_INTERVAL - spent).await;
        }
    }
}

/// Whether every shard in `tails` was read to its tip by a call started at or after `since`.
fn all_caught_up(tails: &Tails, since: Instant) -> bool {
    tails.lock().is_ok_and(|t| {
        t.values()
            .all(|s| s.caught_up_call_started.is_some_and(|c| c >= since))
    })
}

/// The last sequence number read per shard (shards with no record in this run left out).
fn last_read(tails: &Tails) -> HashMap<String, SequenceNumber> {
    tails
        .lock()
        .map(|t| {
            t.iter()
                .filter_map(|(k, v)| v.last.clone().map(|s| (k.clone(), s)))
                .collect()
        })
        .unwrap_or_default()
}

/// Puts `entries` with one `PutRecords` call per batch, sending the entries a call did not
/// accept again after a backoff; returns (shard id, sequence number) per entry, in order.
async fn put_batch(
    kinesis: &SdkKinesis,
    stream: &str,
    entries: &[PutEntry],
    backoff: aiops_aws::backoff::BackoffConfig,
) -> Result<Vec<(String, String)>> {
    let mut accepted: Vec<Option<(String, String)>> = vec![None; entries.len()];
    let mut pending: Vec<usize> = (0..entries.len()).collect();
    let mut backoff = Backoff::new(backoff);
    loop {
        let batch: Vec<PutEntry> = pending
            .iter()
            .filter_map(|&i| entries.get(i).cloned())
            .collect();
        let last_error = match kinesis.put_records(stream, &batch).await {
            Ok(outcomes) => {
                let mut failed = Vec::new();
                let mut last = String::new();
                for (&i, outcome) in pending.iter().zip(outcomes) {
                    match outcome {
                        PutOutcome::Accepted {
                            sequence_number,
                            shard_id,
                        } => {
                            if let Some(slot) = accepted.get_mut(i) {
                                *slot = Some((shard_id, sequence_number));
                            }
                        }
                        PutOutcome::Failed { error_code, .. } => {
                            last = error_code;
                            failed.push(i);
                        }
                    }
                }
                if failed.is_empty() {
                    return Ok(accepted.into_iter().flatten().collect());
                }
                pending = failed;
                last
            }
            Err(e) if e.is_retryable() => e.to_string(),
            Err(e) => return Err(BenchError::Invalid(format!("PutRecords to {stream}: {e}"))),
        };
        match backoff.next_delay() {
            Some(d) => tokio::time::sleep(d).await,
            None => {
                return Err(BenchError::Invalid(format!(
                    "PutRecords to {stream}: {} entries not accepted; last error: {last_error}",
                    pending.len()
                )));
            }
        }
    }
}

/// What the producer did.
#[derive(Debug, Default)]
struct Produced {
    records: u64,
    bytes: u64,
    events: u64,
    /// Last sequence number put per raw shard, of the records holding events.
    last: HashMap<String, SequenceNumber>,
}

/// Puts every record of `input` on the raw stream (see the module documentation, step 5).
async fn produce(
    kinesis: &SdkKinesis,
    cfg: &PipelineConfig,
    args: &BenchArgs,
    input: &Path,
    tracked: &HashSet<u64>,
    put_times: &PutTimes,
) -> Result<Produced> {
    let per_call = args.batch_records.clamp(1, MAX_RECORDS_PER_CALL);
    let per_call = if args.rate > 0.0 {
        per_call.min(100)
    } else {
        per_call
    };
    let mut produced = Produced::default();
    let started = Instant::now();
    // Records are read in chunks (the file is read synchronously: it is the cached input and
    // a chunk is at most `per_call` records of at most 1 MiB).
    let mut reader = InputReader::open(input)?;
    let mut index = 0u64;
    let mut done = false;
    while !done {
        let mut entries = Vec::with_capacity(per_call);
        let mut indexes = Vec::with_capacity(per_call);
        let mut counts = Vec::with_capacity(per_call);
        let mut chunk_events = 0u64;
        while entries.len() < per_call {
            let Some((data, n)) = reader.next_record()? else {
                done = true;
                break;
            };
            let len = data.len() as u64;
            let entry = PutEntry {
                partition_key: format!("{:016x}", aiops_core::stable_hash(&[&data])),
                data,
            };
            check_entry(&entry).map_err(|e| BenchError::Invalid(format!("record {index}: {e}")))?;
            produced.bytes += len;
            chunk_events += u64::from(n);
            entries.push(entry);
            indexes.push(index);
            counts.push(n);
            index += 1;
        }
        if entries.is_empty() {
            break;
        }
        if args.rate > 0.0 {
            // Put the chunk when the schedule says its first event is due.
            let due = Duration::from_secs_f64(produced.events as f64 / args.rate);
            let now = started.elapsed();
            if due > now {
                tokio::time::sleep(due - now).await;
            }
        }
        for range in batch_ranges(&entries) {
            let (Some(batch), Some(batch_indexes), Some(batch_counts)) = (
                entries.get(range.clone()),
                indexes.get(range.clone()),
                counts.get(range),
            ) else {
                continue;
            };
            let at = now_micros();
            if let Ok(mut p) = put_times.lock() {
                for i in batch_indexes.iter().filter(|i| tracked.contains(i)) {
                    p.insert(*i, at);
                }
            }
            let outcomes = put_batch(kinesis, &cfg.aws.raw_stream, batch, cfg.aws.producer).await?;
            // Records without events (control messages) leave no trace on the events stream.
            for ((shard, seq), _) in outcomes
                .into_iter()
                .zip(batch_counts)
                .filter(|(_, n)| **n > 0)
            {
                if let Some(seq) = SequenceNumber::parse(&seq) {
                    let e = produced.last.entry(shard).or_insert_with(|| seq.clone());
                    if seq > *e {
                        *e = seq;
                    }
                }
            }
        }
        produced.records += entries.len() as u64;
        produced.events += chunk_events;
    }
    Ok(produced)
}

/// The `counters` of the JSON summary line a stage printed when it stopped.
fn stage_counters(path: &Path) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v.get("kind").and_then(|k| k.as_str()) == Some("summary"))
        .and_then(|v| v.get("counters").cloned())
}

fn counter(v: &Option<serde_json::Value>, name: &str) -> u64 {
    v.as_ref()
        .and_then(|v| v.get(name))
        .and_then(|c| c.as_u64())
        .unwrap_or(0)
}

#[allow(clippy::too_many_arguments)]
async fn run_async(
    args: &BenchArgs,
    cfg: &PipelineConfig,
    exe: &Path,
    config_path: &Path,
    run_dir: &Path,
    run_id: &str,
    input: &Path,
    generated_events: u64,
    tracked: HashMap<String, u64>,
) -> Result<BenchReport> {
    let aws = &cfg.aws;
    let sdk = aiops_aws::sdk::load(aws.region.as_deref(), aws.endpoint_url.as_deref()).await;
    let kinesis = Arc::new(SdkKinesis::from_conf(&sdk));
    let leases_store =
        DynamoLeaseStore::new(aws_sdk_dynamodb::Client::new(&sdk), &aws.leases_table);
    let deadline = Instant::now() + Duration::from_secs(args.timeout_secs);

    let mut stages = Stages(Vec::new());
    for name in ["ingest", "detect", "act"] {
        stages
            .0
            .push(spawn_stage(exe, config_path, run_dir, name, run_id)?);
    }
    // Wait for every stage to hold the lease of every shard of its stream.
    let streams = [
        ("ingest", aws.raw_stream.as_str()),
        ("detect", aws.events_stream.as_str()),
        ("act", aws.decisions_stream.as_str()),
    ];
    let mut shards_of = HashMap::new();
    for (_, stream) in streams {
        shards_of.insert(stream, shard_ids(&kinesis, stream).await?);
    }
    loop {
        stages.check()?;
        let mut ready = true;
        for ((stage, stream), process) in streams.iter().zip(&stages.0) {
            let held = leases(&leases_store, stage, stream).await?;
            let shards = shards_of.get(stream).map(Vec::as_slice).unwrap_or_default();
            ready &= shards.iter().all(|s| {
                held.get(s)
                    .is_some_and(|l| l.owner.as_deref() == Some(process.worker_id.as_str()))
            });
        }
        if ready {
            break;
        }
        if Instant::now() >= deadline {
            return Err(BenchError::Invalid(
                "the stages did not take their shard leases within --timeout-secs".into(),
            ));
        }
        tokio::time::sleep(POLL).await;
    }

    // Readers of the events and decisions streams, from their tips.
    let (stop_tx, stop_rx) = watch::channel(false);
    let events_tails: Tails = Arc::default();
    let decisions_tails: Tails = Arc::default();
    let raw_seen: Arc<Mutex<HashMap<String, SequenceNumber>>> = Arc::default();
    let put_times: PutTimes = Arc::default();
    let latencies: Arc<Mutex<Latencies>> = Arc::default();
    let mut readers = {
        let raw_stream = aws.raw_stream.clone();
        let raw_seen = raw_seen.clone();
        let on_event: Arc<dyn Fn(&KinesisRecord) + Send + Sync> = Arc::new(move |r| {
            #[derive(serde::Deserialize)]
            struct WithPosition {
                position: Position,
            }
            if let Ok(e) = serde_json::from_slice::<WithPosition>(&r.data)
                && e.position.stream == raw_stream
                && let Some(seq) = SequenceNumber::parse(&e.position.sequence_number)
                && let Ok(mut seen) = raw_seen.lock()
            {
                let s = seen
                    .entry(e.position.shard_id)
                    .or_insert_with(|| seq.clone());
                if seq > *s {
                    *s = seq;
                }
            }
        });
        follow_stream(
            kinesis.clone(),
            &aws.events_stream,
            events_tails.clone(),
            &stop_rx,
            on_event,
        )
        .await?
    };
    // The records the producer stamps with their put time.
    let tracked_indexes: HashSet<u64> = tracked.values().copied().collect();
    {
        let put_times = put_times.clone();
        let latencies = latencies.clone();
        let on_decision: Arc<dyn Fn(&KinesisRecord) + Send + Sync> = Arc::new(move |r| {
            let Ok(f) = serde_json::from_slice::<Finding>(&r.data) else {
                return;
            };
            if f.kind != FindingKind::ChangeRule {
                return;
            }
            let put = f
                .evidence
                .event_ids
                .iter()
                .find_map(|id| tracked.get(id))
                .and_then(|i| put_times.lock().ok().and_then(|p| p.get(i).copied()));
            if let Ok(mut l) = latencies.lock() {
                l.change_findings += 1;
                if let Some(put) = put
                    && l.samples.len() < MAX_SAMPLES
                {
                    l.samples.push((put, f.detected_at - put));
                }
            }
        });
        readers.extend(
            follow_stream(
                kinesis.clone(),
                &aws.decisions_stream,
                decisions_tails.clone(),
                &stop_rx,
                on_decision,
            )
            .await?,
        );
    }

    let started = Instant::now();
    let started_micros = now_micros();
    let produced = produce(&kinesis, cfg, args, input, &tracked_indexes, &put_times).await?;
    if !args.json {
        eprintln!(
            "aws mode: {} records ({} events) put on {} in {:.2} s; waiting for the stages",
            produced.records,
            produced.events,
            aws.raw_stream,
            started.elapsed().as_secs_f64()
        );
    }

    // (a) ingest processed every raw shard's last record.
    loop {
        stages.check()?;
        let seen = raw_seen.lock().map(|s| s.clone()).unwrap_or_default();
        let pending: HashMap<String, SequenceNumber> = produced
            .last
            .iter()
            .filter(|(shard, seq)| seen.get(*shard).is_none_or(|s| s < *seq))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if checkpoints_cover(&leases_store, "ingest", &aws.raw_stream, &pending).await? {
            break;
        }
        if Instant::now() >= deadline {
            return Err(BenchError::Invalid(
                "timed out: ingest has not processed every record put on the raw stream".into(),
            ));
        }
        tokio::time::sleep(POLL).await;
    }
    // (b) every events shard read to its tip after that, (c) detect's checkpoints there.
    let ingested = Instant::now();
    while !all_caught_up(&events_tails, ingested) {
        stages.check()?;
        if Instant::now() >= deadline {
            return Err(BenchError::Invalid(
                "timed out reading the events stream to its tip".into(),
            ));
        }
        tokio::time::sleep(POLL).await;
    }
    let events_last = last_read(&events_tails);
    loop {
        stages.check()?;
        if checkpoints_cover(&leases_store, "detect", &aws.events_stream, &events_last).await? {
            break;
        }
        if Instant::now() >= deadline {
            return Err(BenchError::Invalid(
                "timed out: detect has not processed every event of the events stream".into(),
            ));
        }
        tokio::time::sleep(POLL).await;
    }
    let elapsed = started.elapsed().as_secs_f64().max(1e-9);
    let mut cpu = Vec::new();
    for s in &stages.0 {
        cpu.push(proc_cpu_secs(s.child.id()).unwrap_or(0.0));
    }
    stages.check()?;
    // (d) act: the decisions stream read to its tip, then act's checkpoints there.
    let detected = Instant::now();
    while !all_caught_up(&decisions_tails, detected) {
        stages.check()?;
        if Instant::now() >= deadline {
            return Err(BenchError::Invalid(
                "timed out reading the decisions stream to its tip".into(),
            ));
        }
        tokio::time::sleep(POLL).await;
    }
    let decisions_last = last_read(&decisions_tails);
    loop {
        stages.check()?;
        if checkpoints_cover(&leases_store, "act", &aws.decisions_stream, &decisions_last).await? {
            break;
        }
        if Instant::now() >= deadline {
            return Err(BenchError::Invalid(
                "timed out: act has not processed every finding of the decisions stream".into(),
            ));
        }
        tokio::time::sleep(POLL).await;
    }
    let _ = stop_tx.send(true);
    for r in readers.drain(..) {
        let _ = r.await;
    }
    let grace = Duration::from_secs(aws.consumer.shutdown_timeout_secs.saturating_add(15));
    tokio::task::block_in_place(|| stages.stop(grace));

    let ingest = stage_counters(&stages.0[0].stdout_path);
    let detect = stage_counters(&stages.0[1].stdout_path);
    let act = stage_counters(&stages.0[2].stdout_path);
    let events = counter(&ingest, "events");
    if events + counter(&ingest, "dead_letters") != generated_events {
        tracing::warn!(
            generated = generated_events,
            decoded = events,
            "ingest decoded a different number of events than were generated"
        );
    }
    let (change_findings, mut samples) = latencies
        .lock()
        .map(|l| (l.change_findings, l.samples.clone()))
        .unwrap_or_default();
    samples.sort_unstable();
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
    let cpu_secs: f64 = cpu.iter().sum();
    let peak_kib: u64 = stages.0.iter().map(|s| s.peak_rss_kib).sum();
    if !args.json {
        for (s, c) in stages.0.iter().zip(&cpu) {
            eprintln!(
                "  {:<6} pid {}: peak RSS {:.0} MiB, {:.2} CPU s",
                s.name,
                s.child.id(),
                s.peak_rss_kib as f64 / 1024.0,
                c
            );
        }
        eprintln!(
            "  note: aws mode measures the AWS endpoint (e.g. the moto emulator) as much as \
             aiops; series, log groups and templates are not reported by the stage processes (0)"
        );
    }
    Ok(BenchReport {
        kind: "bench",
        mode: "aws".to_string(),
        events,
        records: produced.records,
        bytes: produced.bytes,
        elapsed_secs: elapsed,
        events_per_sec: events as f64 / elapsed,
        mb_per_sec: produced.bytes as f64 / elapsed / 1e6,
        target_rate: args.rate,
        change_findings,
        change_findings_measured: lat.len() as u64,
        warmup_secs: args.warmup_secs,
        latency_p50_ms: pct(0.50),
        latency_p99_ms: pct(0.99),
        latency_max_ms: lat.last().map(|&v| v as f64 / 1000.0),
        latency_max_all_ms: max_all.map(|v| v as f64 / 1000.0),
        peak_rss_mib: peak_kib as f64 / 1024.0,
        cpu_secs,
        cpu_secs_per_million_events: if events > 0 {
            cpu_secs / events as f64 * 1e6
        } else {
            0.0
        },
        cores_used: cpu_secs / elapsed,
        series: 0,
        series_rejected: 0,
        log_groups: 0,
        templates: 0,
        findings: counter(&detect, "findings"),
        incidents: counter(&act, "incidents"),
        archived_rows: counter(&ingest, "archived_rows"),
        duplicates: counter(&ingest, "duplicates"),
        dead_letters: counter(&ingest, "dead_letters"),
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
    })
}
