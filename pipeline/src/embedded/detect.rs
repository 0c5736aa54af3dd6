//! The detect thread of the embedded pipeline: the statistics engine at window close, scored
//! in parallel on its own rayon pool (the detect loop runs on the pool's first thread). A
//! replay (`RunMode::Once`) feeds the statistics in event-time order across all its files,
//! through a reorder buffer released by a watermark and bounded in events and bytes
//! ([`super::reorder`]), so history is seen as it happened however the files are laid out
//! (within the horizon); a live run (`RunMode::Follow`) feeds each batch of events from ingest (one
//! delivery) in event-time order, which is how `aiops backtest` will read them back.

use super::reorder::{ReorderBuffer, ReorderLimits};
use super::shared::{Counters, RunMode, spawn_stage};
use crate::config::PipelineConfig;
use crate::error::{Context, Result};
use aiops_core::{Event, Finding};
use aiops_detect::baseline::Baselines;
use aiops_detect::engine::{EngineCounters, StatsEngine};
use crossbeam_channel::{Receiver, Sender};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Starts the detect thread: event batches from `ev_rx`, findings to `f_tx`; at the end
/// every open window is closed and, when asked, the engine's counters are left in
/// `engine_counters`.
pub(crate) fn start_detect(
    config: &PipelineConfig,
    mode: RunMode,
    baselines: Option<Baselines>,
    ev_rx: Receiver<Vec<Event>>,
    f_tx: Sender<Finding>,
    counters: &Arc<Counters>,
    engine_counters: Option<Arc<Mutex<Option<EngineCounters>>>>,
) -> Result<JoinHandle<Result<()>>> {
    let mut stats = match baselines {
        Some(b) => StatsEngine::with_baselines(config.detect.statistics.clone(), b)
            .context("learned baselines")?,
        None => StatsEngine::new(config.detect.statistics.clone()),
    };
    // A replay orders events across inputs through the reorder buffer; a live run sorts each
    // delivery on its own.
    let reorder_limits = match mode {
        RunMode::Once => Some(ReorderLimits {
            horizon_micros: i64::try_from(config.pipeline.replay_reorder_horizon_secs)
                .unwrap_or(i64::MAX / 1_000_000)
                .saturating_mul(1_000_000),
            max_events: config.pipeline.replay_reorder_events,
            max_bytes: config.pipeline.replay_reorder_bytes,
        }),
        RunMode::Follow => None,
    };
    let scoring_pool = scoring_pool(config.pipeline.scoring_threads)?;
    let counters = counters.clone();
    spawn_stage("detect", move || -> Result<()> {
        scoring_pool.install(move || -> Result<()> {
            let send = |f: Finding| {
                counters.findings.fetch_add(1, Ordering::Relaxed);
                f_tx.send(f).is_ok()
            };
            let mut reorder = reorder_limits.map(ReorderBuffer::new);
            let report = |reorder: &Option<ReorderBuffer>| {
                if let Some(r) = reorder {
                    let s = r.stats();
                    counters
                        .reorder_early_releases
                        .store(s.early_releases, Ordering::Relaxed);
                    counters
                        .out_of_order_events
                        .store(s.out_of_order, Ordering::Relaxed);
                }
            };
            for mut batch in ev_rx {
                let fed = match &mut reorder {
                    Some(r) => r.push(batch, &mut |e| {
                        stats.observe_owned(e).into_iter().all(&send)
                    }),
                    None => {
                        // A delivery is not in event-time order (the calls of one CloudTrail
                        // delivery, the lines of one subscription payload): fed in event-time
                        // order (stable, so ties keep their arrival order, as a backtest
                        // orders them), a live run sees what a backtest of its history sees,
                        // up to events that straddle two batches.
                        batch.sort_by_key(|e| e.event_time);
                        batch
                            .into_iter()
                            .all(|e| stats.observe_owned(e).into_iter().all(&send))
                    }
                };
                if !fed {
                    report(&reorder);
                    return Ok(());
                }
            }
            if let Some(r) = &mut reorder
                && !r.finish(&mut |e| stats.observe_owned(e).into_iter().all(&send))
            {
                report(&reorder);
                return Ok(());
            }
            report(&reorder);
            if let Some(r) = &reorder {
                let s = r.stats();
                tracing::debug!(
                    peak_events = s.peak_events,
                    peak_bytes = s.peak_bytes,
                    early_releases = s.early_releases,
                    out_of_order = s.out_of_order,
                    "replay reorder buffer"
                );
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
    })
}

/// The pool that scores a window close: `threads` (`[pipeline] scoring_threads`), 0 for one
/// less than the machine's cores, at least 1, leaving a core to ingest.
fn scoring_pool(threads: usize) -> Result<rayon::ThreadPool> {
    let threads = match threads {
        0 => std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .saturating_sub(1)
            .max(1),
        n => n,
    };
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("detect-{i}"))
        .build()
        .context("cannot start the detect thread pool")
}
