//! The sources of the embedded pipeline: files (read once, or followed), the simulator, the
//! record feeds of `aiops bench` and the object feeds of `aiops replay s3://...`, each on a
//! thread of its own sending to ingest. Every whole input (file or object) is offered to the
//! manifest of ingested inputs first: one the data directory already holds is skipped.

use super::shared::{Counters, FeedFile, FileFeed, Input, RecordFeed, RunMode, spawn_stage};
use crate::config::{PipelineConfig, SourceConfig};
use crate::error::Result;
use crate::sim::{SimRecord, SimulateConfig, Simulator};
use aiops_core::time::now_micros;
use aiops_detect::rules::glob_match;
use aiops_ingest::files::list_files;
use aiops_ingest::manifest::{Claim, EventTimeRange, InputKey, Ledger};
use crossbeam_channel::Sender;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Where whole inputs go: the manifest of ingested inputs decides whether each is read, then
/// the channel to ingest.
#[derive(Clone)]
pub(crate) struct InputGate {
    /// The manifest of the data directory, with the inputs claimed by this run.
    pub ledger: Arc<Ledger>,
    /// The replay's event-time range.
    pub range: EventTimeRange,
    /// Read every input, whatever the manifest says.
    pub force: bool,
    /// Counters (`skipped_inputs`).
    pub counters: Arc<Counters>,
    /// To ingest.
    pub tx: Sender<Input>,
}

impl InputGate {
    /// Sends the input `name` with `data` to ingest unless the data directory already holds
    /// it (counted in `skipped_inputs`); false once ingest stopped taking input.
    fn offer(&self, name: String, data: Vec<u8>) -> bool {
        let key = InputKey::of(&data);
        let claim = if self.force {
            Claim::Read {
                already: Vec::new(),
            }
        } else {
            self.ledger.claim(key, self.range)
        };
        match claim {
            Claim::Skip => {
                tracing::debug!(input = %name, sha256 = %key.sha256_hex(), "already ingested; skipped");
                self.counters.skipped_inputs.fetch_add(1, Ordering::Relaxed);
                true
            }
            Claim::Read { already } => self
                .tx
                .send(Input::File {
                    name,
                    data,
                    key,
                    already,
                })
                .is_ok(),
        }
    }

    /// Sends an input that could not be read to ingest (a dead letter); false once ingest
    /// stopped taking input.
    fn unreadable(&self, name: String, reason: String) -> bool {
        self.tx
            .send(Input::Unreadable {
                name,
                reason,
                head: Vec::new(),
            })
            .is_ok()
    }
}

/// Starts one thread per configured source and per feed, each sending to `gate`; they end
/// when their input does (or, following, when `stop` is set).
pub(crate) fn start_sources(
    config: &PipelineConfig,
    sources: Vec<SourceConfig>,
    feeds: Vec<RecordFeed>,
    file_feeds: Vec<FileFeed>,
    mode: RunMode,
    gate: &InputGate,
    stop: &Arc<AtomicBool>,
) -> Result<Vec<JoinHandle<()>>> {
    let mut handles = Vec::new();
    let tx = &gate.tx;
    for source in sources {
        let gate = gate.clone();
        let stop = stop.clone();
        let max_file = config.ingest.max_file_bytes;
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
                &gate,
                &stop,
            ),
            SourceConfig::Simulate(sim) => simulate_source(sim, mode, &gate.tx, &stop),
        })?);
    }
    for feed in file_feeds {
        let gate = gate.clone();
        handles.push(spawn_stage("object-feed", move || {
            let send = |file: FeedFile| match file.data {
                Ok(data) => gate.offer(file.name, data),
                Err(reason) => gate.unreadable(file.name, reason),
            };
            feed(&send);
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

fn file_source(
    paths: &[PathBuf],
    exclude: &[String],
    follow: bool,
    poll: Duration,
    max_file_bytes: u64,
    gate: &InputGate,
    stop: &AtomicBool,
) {
    let counters = &gate.counters;
    // Files already read, by path, size and modification time (so a rewritten file is read
    // again). Bounded by the number of files in the watched directories.
    let mut seen: HashSet<(PathBuf, u64, Option<std::time::SystemTime>)> = HashSet::new();
    loop {
        for root in paths {
            if !root.exists() {
                if !follow {
                    let _ =
                        gate.unreadable(root.display().to_string(), "path does not exist".into());
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
                seen.insert(key);
                let sent = if size > max_file_bytes {
                    gate.unreadable(
                        name,
                        format!(
                            "file of {size} bytes exceeds the {max_file_bytes}-byte limit (ingest.max_file_bytes)"
                        ),
                    )
                } else {
                    match read_bounded(&file, max_file_bytes) {
                        Ok(data) => gate.offer(name, data),
                        Err(reason) => gate.unreadable(name, reason),
                    }
                };
                if !sent {
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

/// Bounds the simulate sources of `sources` to `duration_secs` wall-clock seconds (`aiops run
/// --duration`): each one's `duration_secs` becomes at most `duration_secs`, so it emits
/// exactly the simulated traffic of that span and then ends, however slowly the pipeline
/// consumes it (a loaded machine takes longer; the traffic, and so the findings, are the
/// same). Returns whether every source now ends by itself (only simulate sources): then no
/// wall-clock stop is needed, and one would cut the simulated traffic short on a slow machine.
/// `duration_secs == 0` changes nothing and returns false.
pub fn bound_simulation(sources: &mut [SourceConfig], duration_secs: u64) -> bool {
    if duration_secs == 0 {
        return false;
    }
    let mut all_simulated = !sources.is_empty();
    for source in sources.iter_mut() {
        match source {
            SourceConfig::Simulate(sim) => {
                if sim.duration_secs == 0 || sim.duration_secs > duration_secs {
                    sim.duration_secs = duration_secs;
                }
            }
            _ => all_simulated = false,
        }
    }
    all_simulated
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
        // With a duration, the traffic ends exactly at its simulated end, even when this loop
        // was held up by a slow pipeline past it.
        let until = if duration > 0 {
            sim.sim_time_at(elapsed.min(duration as f64))
        } else {
            sim.sim_time_at(elapsed)
        };
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
