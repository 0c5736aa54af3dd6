//! The embedded pipeline (DESIGN §1): sources -> ingest (decode, de-duplicate, dead letters,
//! Parquet archive) -> detect (change rules, statistics) -> act (incidents in SQLite, dry-run
//! recovery), one thread per stage joined by bounded channels, so a slow stage slows its
//! producers instead of growing memory. Beside the `raw` table, the act thread writes every
//! finding to the `findings` table and every incident snapshot it handled to the `incidents`
//! table (DESIGN §7 layout under the data directory).

use crate::config::{PipelineConfig, SourceConfig};
use crate::deadletter::DeadLetterWriter;
use crate::simulate::{SimRecord, Simulator};
use aiops_act::{Incident, RuleProfile};
use aiops_core::time::now_micros;
use aiops_core::{Event, Finding, Position};
use aiops_detect::baseline::Baselines;
use aiops_detect::engine::StatsEngine;
use aiops_detect::rules::{ChangeRules, RuleVerdict, glob_match};
use aiops_ingest::archive::{IncidentRow, LocalArchive, LocalTableWriter};
use aiops_ingest::decode::{DecodeOutput, decode_file, decode_kinesis_record};
use aiops_ingest::dedup::Deduplicator;
use aiops_ingest::files::list_files;
use anyhow::{Context, Result};
use crossbeam_channel::{Receiver, Sender, bounded};
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What sources send to ingest.
enum Input {
    /// A whole file.
    File { name: String, data: Vec<u8> },
    /// A file that could not be read or is too large: a dead letter.
    Unreadable {
        name: String,
        reason: String,
        head: Vec<u8>,
    },
    /// Kinesis-like records, and when the source received them (microseconds since the Unix
    /// epoch, UTC): the events' `ingest_time`, so time spent queued before decode counts in
    /// the latency from ingestion to finding.
    Records {
        records: Vec<SimRecord>,
        received_at: i64,
    },
}

/// A source of Kinesis-like records fed by code rather than configuration (`aiops bench`):
/// called on a thread of its own with a send function that takes a batch and returns false
/// once the pipeline stopped accepting input; the source ends when the function returns.
pub type RecordFeed = Box<dyn FnOnce(&dyn Fn(Vec<SimRecord>) -> bool) + Send>;

/// Change-rule latency samples: (the event's `ingest_time`, latency), both in microseconds
/// (see [`Probes::change_latency_micros`]).
pub type LatencySamples = Arc<std::sync::Mutex<Vec<(i64, i64)>>>;

/// Extra inputs and measurement hooks of [`run_embedded_with`], for `aiops bench`.
#[derive(Default)]
pub struct Probes {
    /// Record sources beside the configured ones.
    pub feeds: Vec<RecordFeed>,
    /// When set, ingest appends one sample per change-rule finding: the triggering event's
    /// `ingest_time` (when its record reached the pipeline, microseconds since the Unix epoch,
    /// UTC) and the wall-clock microseconds from then until the finding was produced. At most
    /// [`MAX_LATENCY_SAMPLES`] samples are kept.
    pub change_latency_micros: Option<LatencySamples>,
    /// When set, receives the statistics engine's counters when detect ends (series tracked,
    /// log groups, templates).
    pub engine_counters:
        Option<Arc<std::sync::Mutex<Option<aiops_detect::engine::EngineCounters>>>>,
}

/// Upper bound of the latency samples kept by [`Probes::change_latency_micros`].
pub const MAX_LATENCY_SAMPLES: usize = 1_000_000;

/// Earliest event time accepted: 2000-01-01T00:00:00Z, microseconds since the epoch.
pub const EARLIEST_EVENT_TIME: i64 = 946_684_800_000_000;
/// How far ahead of the wall clock an event time may be: one day, in microseconds.
pub const MAX_FUTURE_MICROS: i64 = 86_400_000_000;

/// Counters shared by the stages; read for progress and the summary.
#[derive(Debug, Default)]
pub struct Counters {
    /// Events decoded (including duplicates).
    pub events: AtomicU64,
    /// Records that could not be decoded.
    pub dead_letters: AtomicU64,
    /// Events dropped as duplicates.
    pub duplicates: AtomicU64,
    /// CloudWatch Logs control messages dropped.
    pub control_messages: AtomicU64,
    /// CloudTrail digest files skipped.
    pub digest_files: AtomicU64,
    /// Files skipped by the files source's `exclude` patterns.
    pub skipped_files: AtomicU64,
    /// Findings produced.
    pub findings: AtomicU64,
    /// Incidents opened.
    pub incidents: AtomicU64,
    /// Rows accepted by the Parquet archive.
    pub archived_rows: AtomicU64,
    /// Change-rule matches skipped because the call failed.
    pub skipped_failed_calls: AtomicU64,
    /// Change-rule matches skipped because an AWS service made the call.
    pub skipped_service_calls: AtomicU64,
}

/// The summary printed at the end of a replay (and of a run).
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Summary {
    /// Always `summary`.
    pub kind: &'static str,
    /// Events decoded (including duplicates).
    pub events: u64,
    /// Records sent to dead letters.
    pub dead_letters: u64,
    /// Duplicate events dropped.
    pub duplicates: u64,
    /// Findings produced.
    pub findings: u64,
    /// Incidents opened.
    pub incidents: u64,
    /// Rows written to Parquet.
    pub archived_rows: u64,
    /// CloudWatch Logs control messages dropped.
    pub control_messages: u64,
    /// CloudTrail digest files skipped.
    pub digest_files: u64,
    /// Files skipped by `exclude` patterns.
    pub skipped_files: u64,
}

impl Counters {
    /// A snapshot as a [`Summary`].
    pub fn summary(&self) -> Summary {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Summary {
            kind: "summary",
            events: g(&self.events),
            dead_letters: g(&self.dead_letters),
            duplicates: g(&self.duplicates),
            findings: g(&self.findings),
            incidents: g(&self.incidents),
            archived_rows: g(&self.archived_rows),
            control_messages: g(&self.control_messages),
            digest_files: g(&self.digest_files),
            skipped_files: g(&self.skipped_files),
        }
    }
}

/// How the pipeline ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunMode {
    /// Process the sources once and stop (replay).
    Once,
    /// Follow sources until stopped.
    Follow,
}

/// Called with each incident when its workflow has run.
pub type IncidentSink = Box<dyn FnMut(&Incident) + Send>;

/// Runs the embedded pipeline until the sources end (`RunMode::Once`) or `stop` is set. With
/// `baselines`, detect starts from them (see `aiops_detect::baseline`).
///
/// # Errors
/// When the data directory, the SQLite store or the Parquet archive cannot be used, or the
/// baselines do not fit the configuration; a stage that fails stops the pipeline and its
/// error is returned after the others drained.
pub fn run_embedded(
    config: &PipelineConfig,
    sources: Vec<SourceConfig>,
    mode: RunMode,
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
    on_incident: IncidentSink,
    baselines: Option<Baselines>,
) -> Result<()> {
    run_embedded_with(
        config,
        sources,
        mode,
        stop,
        counters,
        on_incident,
        baselines,
        Probes::default(),
    )
}

/// [`run_embedded`] with extra record feeds and measurement hooks ([`Probes`]).
///
/// # Errors
/// As [`run_embedded`].
#[allow(clippy::too_many_arguments)]
pub fn run_embedded_with(
    config: &PipelineConfig,
    sources: Vec<SourceConfig>,
    mode: RunMode,
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
    mut on_incident: IncidentSink,
    baselines: Option<Baselines>,
    probes: Probes,
) -> Result<()> {
    let Probes {
        feeds,
        change_latency_micros,
        engine_counters,
    } = probes;
    let data_dir = config.data_dir.clone();
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
    let cap = config.pipeline.channel_capacity;
    let (in_tx, in_rx) = bounded::<Input>(cap);
    // Decoded events wait for detect in up to 8x as many batches: a window close (scoring
    // every series with events) must not hold up ingest and, with it, the change rules.
    let (ev_tx, ev_rx) = bounded::<Vec<Event>>(cap.saturating_mul(8));
    let (f_tx, f_rx) = bounded::<Finding>(cap.saturating_mul(128));

    let rules = ChangeRules::new(&config.detect.change_rules)?;
    let profiles: BTreeMap<String, RuleProfile> = rules
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
        .collect();
    let worker_id = format!("embedded-{}", uuid::Uuid::new_v4().simple());
    // Store, explainer, executor and notifier as [act] chooses them (embedded default: SQLite
    // in data_dir, statistical explainer, dry-run executor, no notifications).
    let workflow = aiops_act::build(&config.act, &data_dir, worker_id, profiles)?;

    // Sources.
    let mut source_handles = Vec::new();
    for source in sources {
        let tx = in_tx.clone();
        let stop = stop.clone();
        let max_file = config.ingest.max_file_bytes;
        let src_counters = counters.clone();
        source_handles.push(spawn_stage("source", move || match source {
            SourceConfig::Files {
                paths,
                follow,
                poll_interval_ms,
                exclude,
            } => file_source(
                &paths,
                &exclude,
                follow && mode == RunMode::Follow,
                Duration::from_millis(poll_interval_ms),
                max_file,
                &tx,
                &stop,
                &src_counters,
            ),
            SourceConfig::Simulate(sim) => simulate_source(sim, mode, &tx, &stop),
        })?);
    }
    for feed in feeds {
        let tx = in_tx.clone();
        source_handles.push(spawn_stage("feed", move || {
            let send = |records: Vec<SimRecord>| {
                tx.send(Input::Records {
                    records,
                    received_at: now_micros(),
                })
                .is_ok()
            };
            feed(&send);
        })?);
    }
    drop(in_tx);

    // Ingest: decode, de-duplicate, change rules (so a destructive call never waits behind
    // the statistics), archive.
    let rule_tx = f_tx.clone();
    let ingest = {
        let counters = counters.clone();
        let limits = config.ingest.limits();
        let mut dedup = Deduplicator::new(&config.ingest.dedup)?;
        let mut archive = LocalArchive::new(&data_dir, config.archive);
        let mut dlq = DeadLetterWriter::new(&data_dir.join("dead_letters"));
        spawn_stage("ingest", move || -> Result<()> {
            let change = ChangeStage {
                rules,
                findings: rule_tx,
                counters: counters.clone(),
                latency_micros: change_latency_micros,
            };
            let result = ingest_loop(
                &in_rx,
                &ev_tx,
                &change,
                &limits,
                &mut dedup,
                &mut archive,
                &mut dlq,
            );
            // Whatever happened, make what was accepted durable.
            let flushed = archive.flush();
            let dlq_flushed = dlq.flush();
            result?;
            flushed?;
            dlq_flushed?;
            Ok(())
        })?
    };

    // Detect: change rules at once; statistics at window close (scored in parallel on the
    // detect pool; one thread calls the engine). A replay
    // (RunMode::Once) feeds the statistics in event-time order across all its files, through a
    // bounded reorder buffer, so history is seen as it happened however the files are laid out.
    let mut stats = match baselines {
        Some(b) => StatsEngine::with_baselines(config.detect.statistics.clone(), b)
            .context("learned baselines")?,
        None => StatsEngine::new(config.detect.statistics.clone()),
    };
    let reorder_capacity = match mode {
        RunMode::Once => config.pipeline.replay_reorder_events,
        RunMode::Follow => 0,
    };
    // The engine scores a window close on its own rayon pool; the detect loop itself runs on
    // that pool's first thread, so with one scoring thread nothing is handed between threads.
    let scoring_threads = match config.pipeline.scoring_threads {
        0 => std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .saturating_sub(1)
            .max(1),
        n => n,
    };
    let scoring_pool = rayon::ThreadPoolBuilder::new()
        .num_threads(scoring_threads)
        .thread_name(|i| format!("detect-{i}"))
        .build()
        .context("cannot start the detect thread pool")?;
    let detect = {
        let counters = counters.clone();
        spawn_stage("detect", move || -> Result<()> {
            scoring_pool.install(move || -> Result<()> {
                let send = |f: Finding| {
                    counters.findings.fetch_add(1, Ordering::Relaxed);
                    f_tx.send(f).is_ok()
                };
                let mut reorder: Vec<Event> = Vec::new();
                let drain = |buf: &mut Vec<Event>, stats: &mut StatsEngine| -> bool {
                    buf.sort_by_key(|e| e.event_time);
                    for e in buf.drain(..) {
                        for f in stats.observe_owned(e) {
                            if !send(f) {
                                return false;
                            }
                        }
                    }
                    true
                };
                for batch in ev_rx {
                    for event in batch {
                        if reorder_capacity == 0 {
                            for f in stats.observe_owned(event) {
                                if !send(f) {
                                    return Ok(());
                                }
                            }
                        } else {
                            reorder.push(event);
                            if reorder.len() >= reorder_capacity && !drain(&mut reorder, &mut stats)
                            {
                                return Ok(());
                            }
                        }
                    }
                }
                if !drain(&mut reorder, &mut stats) {
                    return Ok(());
                }
                // Sources ended: close every open window.
                for f in stats.flush() {
                    if !send(f) {
                        break;
                    }
                }
                if let Some(slot) = &engine_counters
                    && let Ok(mut slot) = slot.lock()
                {
                    *slot = Some(stats.counters());
                }
                Ok(())
            })
        })?
    };

    // Act (on this thread), writing the findings and incidents tables.
    let writer = format!(
        "embedded-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let mut findings_table: LocalTableWriter<Finding> =
        LocalTableWriter::new(&data_dir, &writer, config.archive);
    let mut incidents_table: LocalTableWriter<IncidentRow> =
        LocalTableWriter::new(&data_dir, &writer, config.archive);
    let mut act_result: Result<()> = Ok(());
    loop {
        let finding = match f_rx.recv_timeout(Duration::from_secs(1)) {
            Ok(f) => f,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                if let Err(e) = flush_due_tables(&mut findings_table, &mut incidents_table) {
                    act_result = Err(e);
                    stop.store(true, Ordering::SeqCst);
                    break;
                }
                continue;
            }
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
        };
        if let Err(e) = findings_table.append(finding.clone()) {
            act_result = Err(e.into());
            stop.store(true, Ordering::SeqCst);
            break;
        }
        match workflow.handle(&finding) {
            Ok(h) => {
                if h.opened {
                    counters.incidents.fetch_add(1, Ordering::Relaxed);
                }
                if let Some(i) = h.incident {
                    if let Err(e) = incidents_table.append(aiops_history::tables::incident_row(&i))
                    {
                        act_result = Err(e.into());
                        stop.store(true, Ordering::SeqCst);
                        break;
                    }
                    on_incident(&i);
                }
            }
            Err(e) => {
                act_result = Err(e.into());
                stop.store(true, Ordering::SeqCst);
                break;
            }
        }
        if let Err(e) = flush_due_tables(&mut findings_table, &mut incidents_table) {
            act_result = Err(e);
            stop.store(true, Ordering::SeqCst);
            break;
        }
    }
    // After a failure, detect's sends fail and it stops (as when the receiver is gone).
    drop(f_rx);
    let tables_flushed = findings_table
        .flush()
        .and_then(|_| incidents_table.flush())
        .map(|_| ())
        .context("cannot write the findings or incidents table");
    for h in source_handles {
        if h.join().is_err() {
            tracing::error!("a source thread panicked");
        }
    }
    let ingest_result = ingest
        .join()
        .map_err(|_| anyhow::anyhow!("ingest thread panicked"))?;
    let detect_result = detect
        .join()
        .map_err(|_| anyhow::anyhow!("detect thread panicked"))?;
    ingest_result?;
    detect_result?;
    act_result?;
    tables_flushed
}

/// Starts a pipeline thread named `name` (shown by `top -H`, `perf` and panics).
fn spawn_stage<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<std::thread::JoinHandle<T>> {
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(f)
        .with_context(|| format!("cannot start the {name} thread"))
}

fn flush_due_tables(
    findings: &mut LocalTableWriter<Finding>,
    incidents: &mut LocalTableWriter<IncidentRow>,
) -> Result<()> {
    if findings.flush_due() {
        findings.flush()?;
    }
    if incidents.flush_due() {
        incidents.flush()?;
    }
    Ok(())
}

fn record_dead_letters(
    out: &mut DecodeOutput,
    dlq: &mut DeadLetterWriter,
    counters: &Counters,
) -> Result<()> {
    for d in out.dead_letters.drain(..) {
        tracing::warn!(reason = %d.reason, stream = %d.position.stream, sequence_number = %d.position.sequence_number, "dead letter");
        dlq.write(&d)?;
        counters.dead_letters.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

/// Change-rule evaluation on the ingest thread: findings go straight to act.
struct ChangeStage {
    rules: ChangeRules,
    findings: Sender<Finding>,
    counters: Arc<Counters>,
    latency_micros: Option<LatencySamples>,
}

impl ChangeStage {
    /// Evaluates one event; false once act stopped taking findings.
    fn evaluate(&self, event: &Event) -> bool {
        let (verdict, findings) = self.rules.evaluate(event);
        match verdict {
            RuleVerdict::FailedCall => {
                self.counters
                    .skipped_failed_calls
                    .fetch_add(1, Ordering::Relaxed);
            }
            RuleVerdict::AwsService => {
                self.counters
                    .skipped_service_calls
                    .fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
        if findings.is_empty() {
            return true;
        }
        if let Some(samples) = &self.latency_micros
            && let Ok(mut samples) = samples.lock()
            && samples.len() < MAX_LATENCY_SAMPLES
        {
            let latency = now_micros().saturating_sub(event.ingest_time);
            samples.extend(findings.iter().map(|_| (event.ingest_time, latency)));
        }
        for f in findings {
            self.counters.findings.fetch_add(1, Ordering::Relaxed);
            if self.findings.send(f).is_err() {
                return false;
            }
        }
        true
    }
}

fn ingest_loop(
    rx: &Receiver<Input>,
    tx: &Sender<Vec<Event>>,
    change: &ChangeStage,
    limits: &aiops_ingest::decode::DecodeLimits,
    dedup: &mut Deduplicator,
    archive: &mut LocalArchive,
    dlq: &mut DeadLetterWriter,
) -> Result<()> {
    let counters: &Counters = &change.counters;
    let mut out = DecodeOutput::default();
    let mut last_roll = Instant::now();
    loop {
        let input = match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(i) => Some(i),
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => None,
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
        };
        let mut ingest_time = now_micros();
        match input {
            Some(Input::File { name, data }) => {
                decode_file(&name, &data, ingest_time, limits, &mut out)
            }
            Some(Input::Unreadable { name, reason, head }) => {
                out.dead_letters.push(aiops_ingest::decode::DeadLetter {
                    reason,
                    data: head,
                    position: Position {
                        stream: format!("file:{name}"),
                        shard_id: "file".into(),
                        sequence_number: "0".into(),
                        sub_sequence_number: None,
                    },
                });
            }
            Some(Input::Records {
                records,
                received_at,
            }) => {
                ingest_time = received_at;
                for r in &records {
                    decode_kinesis_record(&r.data, &r.position, ingest_time, limits, &mut out);
                }
            }
            None => {}
        }
        record_dead_letters(&mut out, dlq, counters)?;
        counters
            .control_messages
            .fetch_add(std::mem::take(&mut out.control_messages), Ordering::Relaxed);
        counters
            .digest_files
            .fetch_add(std::mem::take(&mut out.digest_files), Ordering::Relaxed);
        if !out.events.is_empty() {
            let mut batch = Vec::with_capacity(out.events.len());
            for e in out.events.drain(..) {
                // An event time AWS cannot have produced (before 2000, or more than a day
                // ahead of the clock) would drag the watermark and the de-duplication window
                // with it: such an event is a dead letter, not history.
                if e.event_time < EARLIEST_EVENT_TIME
                    || e.event_time > ingest_time.saturating_add(MAX_FUTURE_MICROS)
                {
                    dlq.write(&aiops_ingest::decode::DeadLetter {
                        reason: format!(
                            "event time {} is outside [2000-01-01, now + 1 day]",
                            aiops_core::time::format_rfc3339_micros(e.event_time)
                        ),
                        data: serde_json::to_vec(&e).unwrap_or_default(),
                        position: e.position.clone(),
                    })?;
                    counters.dead_letters.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                counters.events.fetch_add(1, Ordering::Relaxed);
                if dedup.is_duplicate(&e.event_id, e.event_time) {
                    counters.duplicates.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                if !change.evaluate(&e) {
                    return Ok(());
                }
                archive.append(&e)?;
                counters.archived_rows.fetch_add(1, Ordering::Relaxed);
                batch.push(e);
            }
            if !batch.is_empty() && tx.send(batch).is_err() {
                break;
            }
        }
        if last_roll.elapsed() >= Duration::from_secs(1) {
            archive.roll_expired()?;
            dlq.flush()?;
            last_roll = Instant::now();
        }
    }
    Ok(())
}

/// Reads a regular file of at most `max` bytes; anything else is an error saying why.
fn read_bounded(file: &Path, max: u64) -> std::result::Result<Vec<u8>, String> {
    use std::io::Read;
    let meta = std::fs::metadata(file).map_err(|e| format!("cannot read file: {e}"))?;
    if meta.is_dir() {
        return Err("cannot list directory (permission denied or I/O error)".to_string());
    }
    if !meta.is_file() {
        return Err("not a regular file (pipe, socket or device); not read".to_string());
    }
    let f = std::fs::File::open(file).map_err(|e| format!("cannot read file: {e}"))?;
    let mut data = Vec::new();
    f.take(max.saturating_add(1))
        .read_to_end(&mut data)
        .map_err(|e| format!("cannot read file: {e}"))?;
    if data.len() as u64 > max {
        return Err(format!(
            "file exceeds the {max}-byte limit (ingest.max_file_bytes)"
        ));
    }
    Ok(data)
}

#[allow(clippy::too_many_arguments)]
fn file_source(
    paths: &[PathBuf],
    exclude: &[String],
    follow: bool,
    poll: Duration,
    max_file_bytes: u64,
    tx: &Sender<Input>,
    stop: &AtomicBool,
    counters: &Counters,
) {
    // Files already read, by path, size and modification time (so a rewritten file is read
    // again). Bounded by the number of files in the watched directories.
    let mut seen: HashSet<(PathBuf, u64, Option<std::time::SystemTime>)> = HashSet::new();
    loop {
        for root in paths {
            if !root.exists() {
                if !follow {
                    let _ = tx.send(Input::Unreadable {
                        name: root.display().to_string(),
                        reason: "path does not exist".into(),
                        head: Vec::new(),
                    });
                }
                continue;
            }
            for file in list_files(root) {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let meta = std::fs::metadata(&file).ok();
                let size = meta.as_ref().map_or(0, |m| m.len());
                let key = (file.clone(), size, meta.and_then(|m| m.modified().ok()));
                if seen.contains(&key) {
                    continue;
                }
                let excluded = file
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .is_some_and(|n| exclude.iter().any(|p| glob_match(p, &n)));
                if excluded {
                    seen.insert(key);
                    counters.skipped_files.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let name = file.display().to_string();
                let input = if size > max_file_bytes {
                    Input::Unreadable {
                        name,
                        reason: format!(
                            "file of {size} bytes exceeds the {max_file_bytes}-byte limit (ingest.max_file_bytes)"
                        ),
                        head: Vec::new(),
                    }
                } else {
                    match read_bounded(&file, max_file_bytes) {
                        Ok(data) => Input::File { name, data },
                        Err(reason) => Input::Unreadable {
                            name,
                            reason,
                            head: Vec::new(),
                        },
                    }
                };
                seen.insert(key);
                if tx.send(input).is_err() {
                    return;
                }
            }
        }
        if !follow {
            return;
        }
        let until = Instant::now() + poll;
        while Instant::now() < until {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50).min(poll));
        }
    }
}

fn simulate_source(
    config: crate::simulate::SimulateConfig,
    mode: RunMode,
    tx: &Sender<Input>,
    stop: &AtomicBool,
) {
    let started = Instant::now();
    let duration = config.duration_secs;
    let mut sim = Simulator::new(config, now_micros());
    loop {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let elapsed = started.elapsed().as_secs_f64();
        let until = sim.sim_time_at(elapsed);
        let mut out = Vec::new();
        sim.advance_to(until, &mut out);
        while !out.is_empty() {
            let rest = out.split_off(out.len().min(500));
            if tx
                .send(Input::Records {
                    records: std::mem::replace(&mut out, rest),
                    received_at: now_micros(),
                })
                .is_err()
            {
                return;
            }
        }
        if (duration > 0 && elapsed >= duration as f64) || (mode == RunMode::Once && duration == 0)
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
