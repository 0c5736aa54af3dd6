//! The manifest of ingested inputs: which files and objects a data directory already holds,
//! so that replaying them again adds no row, finding or incident (idempotent replay).
//!
//! It lives in `<data_dir>/ingested/manifest.jsonl`, one JSON object per input:
//!
//! ```json
//! {"sha256":"<64 hex digits>","bytes":1234,"name":"in/a.json.gz","from":null,"to":null,"recorded_at":"2024-05-01T12:00:00.000000Z"}
//! ```
//!
//! - **Key: the content**, the SHA-256 of the input's bytes and its size ([`InputKey`]), never
//!   its name: the same file under another name, in another directory or fetched from S3 is
//!   the same input, and a file rewritten in place is a new one.
//! - **`from`/`to`**: the event-time range `[from, to)` the run kept (`aiops replay --from/--to`;
//!   `null` is unbounded). A later run skips the input only when the ranges recorded for it
//!   cover the range asked for; otherwise it reads it again and drops, as duplicates, the
//!   events inside the ranges recorded before.
//! - **Acknowledge after delivery**: a line is appended only once the run that read the
//!   input delivered it (its rows in finished Parquet files, its dead letters written, its
//!   findings handled). A run that fails or is killed before that records nothing of it, and
//!   the next replay reads the input again (at-least-once, as everywhere else).
//!
//! A line that cannot be parsed (a line torn by a crash mid-append) is ignored with a
//! warning: its input is read again.

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The manifest file under a data directory.
pub const MANIFEST_PATH: &str = "ingested/manifest.jsonl";

/// Errors of the manifest.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The manifest exists but cannot be read.
    #[error("cannot read the manifest of ingested inputs {}: {source}", .path.display())]
    Read {
        /// The manifest file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// Entries could not be appended (or made durable).
    #[error("cannot write the manifest of ingested inputs {}: {source}", .path.display())]
    Write {
        /// The manifest file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
}

/// What identifies an input: the SHA-256 of its bytes and its size in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct InputKey {
    /// SHA-256 of the bytes.
    pub sha256: [u8; 32],
    /// Size in bytes.
    pub bytes: u64,
}

impl InputKey {
    /// The key of `data` (hashes it: about 2 ms per MiB on one core without SHA extensions).
    pub fn of(data: &[u8]) -> InputKey {
        let digest = Sha256::digest(data);
        let mut sha256 = [0u8; 32];
        sha256.copy_from_slice(&digest);
        InputKey {
            sha256,
            bytes: data.len() as u64,
        }
    }

    /// The SHA-256 as 64 lowercase hex digits.
    pub fn sha256_hex(&self) -> String {
        use std::fmt::Write as _;
        self.sha256
            .iter()
            .fold(String::with_capacity(64), |mut s, b| {
                let _ = write!(s, "{b:02x}");
                s
            })
    }

    fn from_hex(hex: &str, bytes: u64) -> Option<InputKey> {
        if hex.len() != 64 || !hex.is_ascii() {
            return None;
        }
        let mut sha256 = [0u8; 32];
        for (i, b) in sha256.iter_mut().enumerate() {
            *b = u8::from_str_radix(hex.get(i * 2..i * 2 + 2)?, 16).ok()?;
        }
        Some(InputKey { sha256, bytes })
    }
}

/// An event-time range `[from, to)` in microseconds since the Unix epoch, UTC; `None` is
/// unbounded on that side. The default is everything.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventTimeRange {
    /// First event time kept, inclusive.
    pub from: Option<i64>,
    /// First event time no longer kept (exclusive).
    pub to: Option<i64>,
}

impl EventTimeRange {
    /// Whether event time `t` (µs) is in the range.
    pub fn contains(&self, t: i64) -> bool {
        self.from.is_none_or(|f| t >= f) && self.to.is_none_or(|e| t < e)
    }

    fn bounds(&self) -> (i64, i64) {
        (self.from.unwrap_or(i64::MIN), self.to.unwrap_or(i64::MAX))
    }

    /// Whether the union of `ranges` holds every time of `self`.
    pub fn covered_by(&self, ranges: &[EventTimeRange]) -> bool {
        let (start, end) = self.bounds();
        let mut spans: Vec<(i64, i64)> = ranges.iter().map(EventTimeRange::bounds).collect();
        spans.sort_unstable();
        let mut reached = start;
        for (a, b) in spans {
            if reached >= end {
                break;
            }
            if a <= reached {
                reached = reached.max(b);
            }
        }
        // `i64::MAX` stands for "unbounded": reaching it covers an unbounded end.
        reached >= end
    }

    /// Whether the two ranges share a time.
    pub fn overlaps(&self, other: &EventTimeRange) -> bool {
        let (a0, a1) = self.bounds();
        let (b0, b1) = other.bounds();
        a0.max(b0) < a1.min(b1)
    }
}

/// One input a run delivered, to be recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestEntry {
    /// The content key.
    pub key: InputKey,
    /// The path or `s3://bucket/key` it was read from (for people; not part of the key).
    pub name: String,
    /// The event-time range the run kept.
    pub range: EventTimeRange,
}

/// What to do with an input ([`Ledger::claim`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Already ingested for the whole range asked for (by an earlier run, or earlier in this
    /// one): skip it.
    Skip,
    /// Read it; drop the events inside `already` (ranges of it delivered before) as
    /// duplicates.
    Read {
        /// Ranges of this input delivered before that overlap the range asked for.
        already: Vec<EventTimeRange>,
    },
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Line {
    sha256: String,
    bytes: u64,
    #[serde(default)]
    name: String,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    recorded_at: Option<String>,
}

/// The manifest of a data directory, loaded, plus the inputs claimed by the running replay.
/// Shared by the sources of a run (the map is behind a mutex).
#[derive(Debug)]
pub struct Ledger {
    path: PathBuf,
    inputs: Mutex<HashMap<InputKey, Vec<EventTimeRange>>>,
    ignored_lines: usize,
}

fn parse_time(text: Option<&str>) -> Result<Option<i64>, ()> {
    text.map(|t| aiops_core::time::parse_timestamp_micros(t).map_err(|_| ()))
        .transpose()
}

impl Ledger {
    /// Loads `<data_dir>/ingested/manifest.jsonl` (none yet: an empty ledger).
    ///
    /// # Errors
    /// [`ManifestError::Read`] when the file exists but cannot be read.
    pub fn open(data_dir: &Path) -> Result<Ledger, ManifestError> {
        let path = data_dir.join(MANIFEST_PATH);
        let mut inputs: HashMap<InputKey, Vec<EventTimeRange>> = HashMap::new();
        let mut ignored_lines = 0;
        let text = match std::fs::read(&path) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => return Err(ManifestError::Read { path, source }),
        };
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let parsed = serde_json::from_str::<Line>(line).ok().and_then(|l| {
                let key = InputKey::from_hex(&l.sha256, l.bytes)?;
                let from = parse_time(l.from.as_deref()).ok()?;
                let to = parse_time(l.to.as_deref()).ok()?;
                Some((key, EventTimeRange { from, to }))
            });
            match parsed {
                Some((key, range)) => inputs.entry(key).or_default().push(range),
                None => {
                    ignored_lines += 1;
                    tracing::warn!(path = %path.display(), line = n + 1, "manifest line ignored (not an entry); its input will be read again");
                }
            }
        }
        Ok(Ledger {
            path,
            inputs: Mutex::new(inputs),
            ignored_lines,
        })
    }

    /// The manifest file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Lines of the manifest that were not entries (ignored when loading).
    pub fn ignored_lines(&self) -> usize {
        self.ignored_lines
    }

    /// Inputs known (recorded or claimed), counting each content once.
    pub fn len(&self) -> usize {
        self.inputs.lock().map_or(0, |m| m.len())
    }

    /// Whether no input is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Decides whether the input `key` is read for event times in `range`, and when it is,
    /// claims that range for this run (a second copy of the same content in the same run is
    /// then skipped).
    pub fn claim(&self, key: InputKey, range: EventTimeRange) -> Claim {
        let mut inputs = match self.inputs.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let ranges = inputs.entry(key).or_default();
        if range.covered_by(ranges) {
            return Claim::Skip;
        }
        let already = ranges
            .iter()
            .filter(|r| r.overlaps(&range))
            .copied()
            .collect();
        ranges.push(range);
        Claim::Read { already }
    }

    /// Appends `entries` to the manifest in one write and makes it durable (`fsync`).
    ///
    /// # Errors
    /// [`ManifestError::Write`] when the directory or file cannot be written.
    pub fn record(&self, entries: &[ManifestEntry]) -> Result<(), ManifestError> {
        if entries.is_empty() {
            return Ok(());
        }
        let err = |source| ManifestError::Write {
            path: self.path.clone(),
            source,
        };
        let now = aiops_core::time::format_rfc3339_micros(aiops_core::time::now_micros());
        let mut text = String::new();
        for e in entries {
            let line = Line {
                sha256: e.key.sha256_hex(),
                bytes: e.key.bytes,
                name: e.name.clone(),
                from: e.range.from.map(aiops_core::time::format_rfc3339_micros),
                to: e.range.to.map(aiops_core::time::format_rfc3339_micros),
                recorded_at: Some(now.clone()),
            };
            let json = serde_json::to_string(&line)
                .map_err(|e| err(std::io::Error::other(e.to_string())))?;
            text.push_str(&json);
            text.push('\n');
        }
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&self.path)
            .map_err(err)?;
        // A line torn by a crash mid-append stays one ignored line: start on a line of our own.
        if file.metadata().map_err(err)?.len() > 0 {
            use std::io::{Read, Seek, SeekFrom};
            let mut last = [0u8; 1];
            file.seek(SeekFrom::End(-1)).map_err(err)?;
            file.read_exact(&mut last).map_err(err)?;
            if last[0] != b'\n' {
                text.insert(0, '\n');
            }
        }
        file.write_all(text.as_bytes()).map_err(err)?;
        file.sync_data().map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000_000;

    fn r(from: Option<i64>, to: Option<i64>) -> EventTimeRange {
        EventTimeRange { from, to }
    }

    #[test]
    fn ranges_cover_contain_and_overlap() {
        let all = EventTimeRange::default();
        assert!(all.contains(i64::MIN) && all.contains(0));
        assert!(r(Some(0), Some(DAY)).contains(0));
        assert!(!r(Some(0), Some(DAY)).contains(DAY));
        assert!(all.covered_by(&[all]));
        assert!(!all.covered_by(&[r(Some(0), None)]));
        assert!(all.covered_by(&[r(None, Some(DAY)), r(Some(DAY), None)]));
        assert!(
            r(Some(DAY), Some(3 * DAY))
                .covered_by(&[r(Some(0), Some(2 * DAY)), r(Some(2 * DAY), Some(4 * DAY))])
        );
        assert!(!r(Some(DAY), Some(3 * DAY)).covered_by(&[r(Some(0), Some(2 * DAY))]));
        assert!(!r(Some(0), Some(DAY)).covered_by(&[]));
        assert!(r(Some(0), Some(DAY)).overlaps(&all));
        assert!(!r(Some(0), Some(DAY)).overlaps(&r(Some(DAY), None)));
        assert!(r(Some(0), None).overlaps(&r(Some(DAY), None)));
    }

    #[test]
    fn keys_round_trip_through_hex() {
        let k = InputKey::of(b"abc");
        assert_eq!(
            k.sha256_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(k.bytes, 3);
        assert_eq!(InputKey::from_hex(&k.sha256_hex(), 3), Some(k));
        assert_eq!(InputKey::from_hex("zz", 3), None);
    }

    #[test]
    fn recorded_inputs_are_skipped_by_the_next_run_and_partial_ranges_are_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let a = InputKey::of(b"a");
        let b = InputKey::of(b"b");
        let first = Ledger::open(dir.path()).unwrap();
        assert!(first.is_empty());
        let day1 = r(Some(0), Some(DAY));
        assert_eq!(first.claim(a, day1), Claim::Read { already: vec![] });
        // The same content again in the same run: skipped.
        assert_eq!(first.claim(a, day1), Claim::Skip);
        assert_eq!(
            first.claim(b, EventTimeRange::default()),
            Claim::Read { already: vec![] }
        );
        first
            .record(&[ManifestEntry {
                key: a,
                name: "x/a.json".into(),
                range: day1,
            }])
            .unwrap();
        // b was claimed but never recorded (the run failed before delivering it).
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(first.path())
            .unwrap();
        file.write_all(b"{\"sha256\":\"torn").unwrap();
        drop(file);

        let second = Ledger::open(dir.path()).unwrap();
        assert_eq!(second.len(), 1);
        assert_eq!(second.ignored_lines(), 1);
        assert_eq!(second.claim(a, day1), Claim::Skip);
        assert_eq!(
            second.claim(a, r(Some(0), Some(2 * DAY))),
            Claim::Read {
                already: vec![day1]
            }
        );
        assert_eq!(
            second.claim(b, EventTimeRange::default()),
            Claim::Read { already: vec![] }
        );
        // Appending after the torn line starts a line of its own.
        second
            .record(&[ManifestEntry {
                key: b,
                name: "s3://bucket/b.json".into(),
                range: EventTimeRange::default(),
            }])
            .unwrap();
        let third = Ledger::open(dir.path()).unwrap();
        assert_eq!((third.len(), third.ignored_lines()), (2, 1));
        assert_eq!(third.claim(b, r(Some(DAY), None)), Claim::Skip);
        let text = std::fs::read_to_string(second.path()).unwrap();
        let line: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(line["name"], "x/a.json");
        assert_eq!(line["bytes"], 1);
        assert_eq!(line["from"], "1970-01-01T00:00:00.000000Z");
        assert_eq!(line["to"], "1970-01-02T00:00:00.000000Z");
    }
}
