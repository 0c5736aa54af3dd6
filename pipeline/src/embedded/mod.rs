//! The embedded pipeline (DESIGN §1): sources -> ingest (decode, de-duplicate, dead letters,
//! Parquet archive) -> detect (change rules, statistics) -> act (incidents in SQLite, dry-run
//! recovery), one thread per stage joined by bounded channels, so a slow stage slows its
//! producers instead of growing memory. Beside the `raw` table, the act thread writes every
//! finding to the `findings` table and every incident snapshot it handled to the `incidents`
//! table (DESIGN §7 layout under the data directory).

//!
//! [`run_embedded_with`] reads top to bottom: load the manifest of ingested inputs, build the
//! channels and the act workflow, start the sources ([`sources`]), start ingest ([`ingest`]),
//! start detect ([`detect`]), run act on the calling thread ([`act`]), wait for the threads
//! and drain, then record the inputs read as ingested (`aiops_ingest::manifest`): a replay of
//! the same inputs into the same data directory skips them.

mod act;
mod decode_pool;
mod detect;
mod ingest;
mod reorder;
mod shared;
mod sources;

pub use sources::bound_simulation;

pub use shared::{
    Counters, EARLIEST_EVENT_TIME, FeedFile, FileFeed, IncidentSink, LatencySamples,
    MAX_FUTURE_MICROS, MAX_LATENCY_SAMPLES, Probes, RecordFeed, RunMode, Summary,
};

use crate::config::{PipelineConfig, SourceConfig};
use crate::error::{Context, PipelineError, Result};
use aiops_act::{ActWorkflow, RuleProfile};
use aiops_core::{Event, Finding};
use aiops_detect::baseline::Baselines;
use aiops_detect::rules::ChangeRules;
use aiops_ingest::manifest::{Ledger, ManifestEntry};
use crossbeam_channel::bounded;
use shared::Input;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::thread::JoinHandle;

/// Batches of events the channel from ingest to detect holds per `[pipeline]
/// channel_capacity` in a live run (a replay holds `channel_capacity` batches of at most
/// 1,024 events): room for the deliveries that arrive while detect closes a window.
const LIVE_EVENT_BATCHES_PER_SLOT: usize = 8;

/// Runs the embedded pipeline until the sources end (`RunMode::Once`) or `stop` is set. With
/// `baselines`, detect starts from them (see `aiops_detect::baseline`). Whole inputs (files)
/// the data directory already holds are skipped (`skipped_inputs`); those read are recorded
/// in its manifest of ingested inputs when the run ends without error.
///
/// # Errors
/// When the data directory, its manifest of ingested inputs, the SQLite store or the Parquet
/// archive cannot be used, or the baselines do not fit the configuration; a stage that fails
/// stops the pipeline and its error is returned after the others drained (and nothing is
/// recorded as ingested).
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
        file_feeds,
        event_time_range,
        force,
        change_latency_micros,
        engine_counters,
    } = probes;
    let data_dir = config.data_dir.clone();
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
    let ledger = Arc::new(Ledger::open(&data_dir)?);
    let cap = config.pipeline.channel_capacity;
    let (in_tx, in_rx) = bounded::<Input>(cap);
    // Decoded events wait for detect in up to 8x as many batches in a live run: a window
    // close (scoring every series with events) must not hold up ingest and, with it, the
    // change rules. A replay sends batches of at most 1,024 events and detect holds its own
    // reorder buffer, so `cap` batches are enough to keep both threads busy; 8x as many held
    // 64 x 1,024 decoded events (about 100 MB of a 1M-event CloudTrail replay's peak).
    let ev_batches = match mode {
        RunMode::Once => cap,
        RunMode::Follow => cap.saturating_mul(LIVE_EVENT_BATCHES_PER_SLOT),
    };
    let (ev_tx, ev_rx) = bounded::<Vec<Event>>(ev_batches);
    let (f_tx, f_rx) = bounded::<Finding>(cap.saturating_mul(128));
    let rules = ChangeRules::new(&config.detect.change_rules)?;
    let changes = change_index(config)?;
    let workflow = build_workflow(config, &rules)?.with_changes(changes.clone());

    let gate = sources::InputGate {
        ledger: ledger.clone(),
        range: event_time_range,
        force,
        counters: counters.clone(),
        tx: in_tx,
    };
    let source_threads =
        sources::start_sources(config, sources, feeds, file_feeds, mode, &gate, &stop)?;
    drop(gate);
    let ingest_thread = ingest::start_ingest(
        config,
        &data_dir,
        rules,
        Some(changes),
        event_time_range,
        in_rx,
        ev_tx,
        f_tx.clone(),
        &counters,
        change_latency_micros,
        mode,
    )?;
    let detect_thread = detect::start_detect(
        config,
        mode,
        baselines,
        ev_rx,
        f_tx,
        &counters,
        engine_counters,
    )?;
    let (act_result, tables_flushed) = act::run_act(
        config,
        &data_dir,
        &workflow,
        f_rx,
        &counters,
        &stop,
        &mut on_incident,
    );
    let delivered = wait_and_drain(source_threads, ingest_thread, detect_thread)?;
    act_result?;
    tables_flushed?;
    // Acknowledge after delivery: only now, with every row in a finished Parquet file and
    // every finding handled, are the inputs read recorded as ingested.
    ledger.record(&delivered)?;
    Ok(())
}

/// The one recent-changes index ingest feeds and the workflow reads. With the SQLite store it
/// is in memory (bounded by `[act.changes]`): a second connection writing the SQLite file for
/// every change from the ingest thread would contend with the workflow's writes ("database is
/// locked") and slow ingest. The index only needs the last `retention_secs` of changes; a
/// restarted run starts with it empty (changes seen before the restart are not listed as
/// related). With DynamoDB it is the `[act.changes] table`.
fn change_index(config: &PipelineConfig) -> Result<aiops_act::setup::DynChangeIndex> {
    if config.act.store.backend == "dynamodb" {
        return Ok(aiops_act::open_change_index(&config.act, &config.data_dir)?);
    }
    Ok(Arc::new(aiops_act::MemoryChangeIndex::new(
        config.act.changes.clone(),
    )))
}

/// The act workflow [act] chooses: store, explainer, executor and notifier (embedded
/// default: SQLite in the data directory, statistical explainer, dry-run executor, no
/// notifications), knowing each change rule's severity and category.
fn build_workflow(config: &PipelineConfig, rules: &ChangeRules) -> Result<ActWorkflow> {
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
    Ok(
        aiops_act::build(&config.act, &config.data_dir, worker_id, profiles)?
            .with_incident_priorities(config.detect.statistics.incident_priorities.clone()),
    )
}

/// Waits for the sources, ingest and detect to end (act has returned: their sends fail or
/// their inputs end) and returns the inputs ingest read in full, or the first stage error,
/// ingest before detect.
fn wait_and_drain(
    sources: Vec<JoinHandle<()>>,
    ingest: JoinHandle<Result<Vec<ManifestEntry>>>,
    detect: JoinHandle<Result<()>>,
) -> Result<Vec<ManifestEntry>> {
    for h in sources {
        if h.join().is_err() {
            tracing::error!("a source thread panicked");
        }
    }
    let ingest_result = ingest
        .join()
        .map_err(|_| PipelineError::StagePanicked("ingest"))?;
    let detect_result = detect
        .join()
        .map_err(|_| PipelineError::StagePanicked("detect"))?;
    let delivered = ingest_result?;
    detect_result?;
    Ok(delivered)
}
