//! The act step of the embedded pipeline, on the calling thread: every finding to the
//! `findings` table and through the incident workflow, every incident it handled to the
//! `incidents` table and to the caller's sink.
//!
//! A finding the store refuses for good ([`aiops_act::WorkflowError::is_permanent`]) goes to
//! `<data_dir>/dead_letters/` with the reason and act goes on. The stuck-incident sweeper
//! ([`aiops_act::sweeper`]) runs at the start (incidents a killed earlier run left behind) and
//! every `[act.sweeper] interval_secs` while act waits for findings.

use super::shared::{Counters, IncidentSink};
use crate::config::PipelineConfig;
use crate::error::{Context, Result};
use aiops_act::ActWorkflow;
use aiops_core::Finding;
use aiops_ingest::archive::{IncidentRow, LocalTableWriter};
use crossbeam_channel::Receiver;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Runs act until every sender of `f_rx` is gone (the stages before it ended) or it fails;
/// a failure sets `stop` so the sources end. Returns the act result and, apart, whether the
/// two tables could be flushed at the end.
pub(crate) fn run_act(
    config: &PipelineConfig,
    data_dir: &Path,
    workflow: &ActWorkflow,
    f_rx: Receiver<Finding>,
    counters: &Counters,
    stop: &AtomicBool,
    on_incident: &mut IncidentSink,
) -> (Result<()>, Result<()>) {
    let writer = format!(
        "embedded-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let mut findings_table: LocalTableWriter<Finding> =
        LocalTableWriter::new(data_dir, &writer, config.archive);
    let mut incidents_table: LocalTableWriter<IncidentRow> =
        LocalTableWriter::new(data_dir, &writer, config.archive);
    let mut act_result: Result<()> = Ok(());
    let mut dead_letters = crate::deadletter::DeadLetterWriter::new(&data_dir.join("dead_letters"));
    let sweeper = &workflow.config().sweeper;
    let sweep_every = Duration::from_secs(sweeper.interval_secs.max(1));
    let mut last_sweep: Option<Instant> = None;
    loop {
        if sweeper.enabled && last_sweep.is_none_or(|t| t.elapsed() >= sweep_every) {
            last_sweep = Some(Instant::now());
            match workflow.sweep(aiops_core::time::now_micros()) {
                Ok(r) if r.found > 0 => {
                    tracing::info!(
                        found = r.found,
                        resumed = r.resumed,
                        errors = r.errors,
                        "stuck-incident sweep"
                    );
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "stuck-incident sweep failed"),
            }
        }
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
        let handled = workflow.handle(&finding);
        // The findings table records act's verdict: a suppressed finding is marked with why.
        let mut recorded = finding.clone();
        if let Ok(h) = &handled {
            recorded.suppressed = h.suppressed.clone();
        }
        if let Err(e) = findings_table.append(recorded) {
            act_result = Err(e.into());
            stop.store(true, Ordering::SeqCst);
            break;
        }
        match handled {
            Ok(h) => {
                if let Some(reason) = &h.suppressed {
                    counters.suppressed_findings.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(finding = %finding.finding_id, series = finding.evidence.series_key.as_deref().unwrap_or("-"), %reason, "finding suppressed: recorded, no incident");
                }
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
            Err(e) if e.is_permanent() => {
                let reason = format!("finding {} cannot be handled: {e}", finding.finding_id);
                tracing::error!(%reason, "dead letter");
                let d = aiops_ingest::decode::DeadLetter {
                    reason,
                    position: aiops_core::Position {
                        stream: "act".into(),
                        shard_id: "embedded".into(),
                        sequence_number: finding.finding_id.clone(),
                        sub_sequence_number: None,
                    },
                    data: serde_json::to_vec(&finding).unwrap_or_default(),
                };
                if let Err(e) = dead_letters.write(&d).and_then(|_| dead_letters.flush()) {
                    act_result = Err(e);
                    stop.store(true, Ordering::SeqCst);
                    break;
                }
                counters.dead_letters.fetch_add(1, Ordering::Relaxed);
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
    (act_result, tables_flushed)
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
