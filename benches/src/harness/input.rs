//! The cached input file of `aiops bench`: generated once by the simulator per set of
//! parameters, then read back record by record (by the embedded feed and the aws producer
//! alike).

use super::error::{BenchError, Context, Result};
use super::params::BenchArgs;
use aiops_core::time::{MICROS_PER_SEC, now_micros};
use aiops_pipeline::sim::{SimulateConfig, Simulator};
use serde::Serialize;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// Magic first line of a bench input file (format version 1).
const MAGIC: &[u8] = b"AIOPS-BENCH-INPUT 1\n";

/// Largest record accepted when reading an input file back: 1 MiB, Kinesis's record limit.
pub const MAX_RECORD_BYTES: u32 = 1024 * 1024;

/// What the input file holds (its header line, JSON).
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct InputHeader {
    pub(crate) seed: u64,
    pub(crate) events: u64,
    pub(crate) cloudtrail_share: f64,
    pub(crate) principals: usize,
    pub(crate) log_groups: usize,
    pub(crate) templates_per_group: usize,
    pub(crate) destructive_per_million: f64,
    pub(crate) span_secs: u64,
    /// End of the generated event times, microseconds since the epoch, UTC.
    #[serde(default)]
    pub(crate) end_micros: i64,
    /// Filled in after generation.
    pub(crate) records: u64,
    pub(crate) generated_events: u64,
    pub(crate) bytes: u64,
}

/// The end of the generated event times, microseconds since the epoch, UTC: `--end-time`, or
/// the last midnight (UTC) before now.
///
/// # Errors
/// When `--end-time` is neither RFC 3339 nor `YYYY-MM-DD`, or lies in the future (its events
/// would be dead letters: ingest refuses events more than a day ahead of the clock).
pub fn end_micros(args: &BenchArgs) -> Result<i64> {
    let day_us = 86_400 * MICROS_PER_SEC;
    let now = now_micros();
    match &args.end_time {
        None => Ok(now.div_euclid(day_us) * day_us),
        Some(text) => {
            let end = aiops_history::parse_time_arg("--end-time", text)?;
            if end > now {
                return Err(BenchError::Invalid(format!(
                    "--end-time {text:?} is in the future; generated events must be in the past"
                )));
            }
            // Ingest refuses events dated before 2000 (dead letters).
            let start = end - span_secs(args) as i64 * MICROS_PER_SEC;
            if start < 946_684_800 * MICROS_PER_SEC {
                return Err(BenchError::Invalid(format!(
                    "--end-time {text:?}: the generated events would start before 2000"
                )));
            }
            Ok(end)
        }
    }
}

/// The event-time span of the generated input, seconds (see [`BenchArgs::span_secs`]).
pub fn span_secs(args: &BenchArgs) -> u64 {
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
pub fn ensure_input(args: &BenchArgs, stop: &AtomicBool) -> Result<(PathBuf, InputHeader)> {
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
        .map_err(|e| BenchError::Invalid(format!("generator: {e}")))?;
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
            return Err(BenchError::Invalid(
                "interrupted while generating the input".into(),
            ));
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
pub struct RemoveOnDrop(pub Vec<PathBuf>);

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
        return Err(BenchError::Invalid("made with other parameters".into()));
    }
    let header_len = MAGIC.len() as u64 + serde_json::to_vec(&header)?.len() as u64 + 1;
    let expected = header_len + header.records * 8 + header.bytes;
    let actual = std::fs::metadata(path)?.len();
    if actual != expected {
        return Err(BenchError::Invalid(format!(
            "{actual} bytes where the header promises {expected} (truncated or extended)"
        )));
    }
    Ok(header)
}

/// A bench input file opened for reading: its header, then its records one by one. Used by
/// the embedded feed and by the aws-mode producer.
pub struct InputReader {
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
            return Err(BenchError::Invalid(format!(
                "{} is not a bench input file",
                path.display()
            )));
        }
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while reader.read(&mut byte)? == 1 && byte[0] != b'\n' {
            line.push(byte[0]);
            if line.len() > 64 * 1024 {
                return Err(BenchError::Invalid(format!(
                    "{}: header line too long",
                    path.display()
                )));
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
            Err(e) => return Err(BenchError::Invalid(format!("{}: {e}", self.path.display()))),
        }
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        let events = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        if len > MAX_RECORD_BYTES {
            return Err(BenchError::Invalid(format!(
                "{}: record of {len} bytes is corrupt",
                self.path.display()
            )));
        }
        let mut data = vec![0u8; len as usize];
        self.reader
            .read_exact(&mut data)
            .with_context(|| format!("{}: truncated record", self.path.display()))?;
        Ok(Some((data, events)))
    }
}
