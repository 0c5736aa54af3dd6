//! Embedded dead letters: one JSON line per undecodable record under
//! `<data_dir>/dead_letters/`, with the reason, the position and the original bytes in base64.

use crate::error::{Context, Result};
use aiops_core::time::{format_rfc3339_micros, now_micros};
use aiops_ingest::decode::DeadLetter;
use base64::Engine;
use serde::Serialize;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// One line of a dead-letter file.
#[derive(Debug, Serialize)]
pub struct DeadLetterLine<'a> {
    /// Why the record could not be decoded.
    pub reason: &'a str,
    /// Stream (or `file:<path>`) it came from.
    pub stream: &'a str,
    /// Shard (or `file`).
    pub shard_id: &'a str,
    /// Sequence number (or record ordinal in the file).
    pub sequence_number: &'a str,
    /// KPL sub-sequence number, when any.
    pub sub_sequence_number: Option<u64>,
    /// When it was written, RFC 3339 UTC.
    pub written_at: String,
    /// Size of the original bytes.
    pub size: usize,
    /// The original bytes, standard base64.
    pub data_base64: String,
}

/// Appends dead letters to `<dir>/dead-letters-<utc time>-<uuid>.jsonl`, created on the first
/// dead letter of the run.
pub struct DeadLetterWriter {
    dir: PathBuf,
    file: Option<(PathBuf, BufWriter<File>)>,
}

impl DeadLetterWriter {
    /// A writer for `dir` (created when the first dead letter arrives).
    pub fn new(dir: &Path) -> DeadLetterWriter {
        DeadLetterWriter {
            dir: dir.to_path_buf(),
            file: None,
        }
    }

    /// Writes one dead letter.
    ///
    /// # Errors
    /// When the directory or file cannot be created or written.
    pub fn write(&mut self, d: &DeadLetter) -> Result<()> {
        if self.file.is_none() {
            std::fs::create_dir_all(&self.dir)
                .with_context(|| format!("cannot create {}", self.dir.display()))?;
            let stamp: String = format_rfc3339_micros(now_micros())
                .chars()
                .filter(|c| c.is_ascii_digit())
                .take(14)
                .collect();
            let path = self.dir.join(format!(
                "dead-letters-{stamp}-{}.jsonl",
                uuid::Uuid::new_v4().simple()
            ));
            let f =
                File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
            self.file = Some((path, BufWriter::new(f)));
        }
        let line = DeadLetterLine {
            reason: &d.reason,
            stream: &d.position.stream,
            shard_id: &d.position.shard_id,
            sequence_number: &d.position.sequence_number,
            sub_sequence_number: d.position.sub_sequence_number,
            written_at: format_rfc3339_micros(now_micros()),
            size: d.data.len(),
            data_base64: base64::engine::general_purpose::STANDARD.encode(&d.data),
        };
        if let Some((path, w)) = self.file.as_mut() {
            serde_json::to_writer(&mut *w, &line)?;
            w.write_all(b"\n")
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        Ok(())
    }

    /// Flushes buffered lines to the file and to disk.
    ///
    /// # Errors
    /// When the write or sync fails.
    pub fn flush(&mut self) -> Result<()> {
        if let Some((path, w)) = self.file.as_mut() {
            w.flush()
                .with_context(|| format!("cannot write {}", path.display()))?;
            w.get_ref()
                .sync_data()
                .with_context(|| format!("cannot sync {}", path.display()))?;
        }
        Ok(())
    }
}
