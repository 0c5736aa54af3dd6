//! The sources of the embedded pipeline: files (read once, or followed), the simulator and
//! the record feeds of `aiops bench`, each on a thread of its own sending to ingest.

use super::shared::{Counters, Input, RecordFeed, RunMode, spawn_stage};
use crate::config::{PipelineConfig, SourceConfig};
use crate::error::Result;
use crate::sim::{SimRecord, SimulateConfig, Simulator};
use aiops_core::time::now_micros;
use aiops_detect::rules::glob_match;
use aiops_ingest::files::list_files;
use crossbeam_channel::Sender;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Starts one thread per configured source and per feed, each sending to `tx`; they end
/// when their input does (or, following, when `stop` is set).
pub(crate) fn start_sources(
    config: &PipelineConfig,
    sources: Vec<SourceConfig>,
    feeds: Vec<RecordFeed>,
    mode: RunMode,
    tx: &Sender<Input>,
    stop: &Arc<AtomicBool>,
    counters: &Arc<Counters>,
) -> Result<Vec<JoinHandle<()>>> {
    let mut handles = Vec::new();
    for source in sources {
        let tx = tx.clone();
        let stop = stop.clone();
        let max_file = config.ingest.max_file_bytes;
        let src_counters = counters.clone();
        handles.push(spawn_stage("source", move || match source {
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
        let tx = tx.clone();
        handles.push(spawn_stage("feed", move || {
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
    Ok(handles)
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

fn simulate_source(config: SimulateConfig, mode: RunMode, tx: &Sender<Input>, stop: &AtomicBool) {
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
