//! The local `raw` archive: rows buffered per partition, encoded, written and renamed into
//! place by a writer thread of its own.

use super::config::{ArchiveConfig, ArchiveError};
use super::raw_batch::{PartitionKey, RawBatchBuilder, raw_file_name, writer_properties};
use super::schema::raw_schema;
use aiops_core::{Event, Source};
use arrow_array::RecordBatch;
use parquet::arrow::ArrowWriter;
use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A file the archive finished and renamed into place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivedFile {
    /// Final path of the file.
    pub path: PathBuf,
    /// Rows in it.
    pub rows: u64,
}

struct OpenFile {
    writer: ArrowWriter<File>,
    tmp_path: PathBuf,
    final_path: PathBuf,
    rows_written: u64,
    opened_at: std::time::Instant,
}

/// Rows of one partition not yet handed to the writer thread.
struct PendingGroup {
    rows: RawBatchBuilder,
    /// Position of its first row (names the file when the writer opens one).
    first: aiops_core::Position,
    /// When its first row arrived.
    since: std::time::Instant,
}

/// What the archive's writer thread is asked to do, in order.
enum WriterCommand {
    /// Append a row group to the partition's open file (opening one, named after `first`,
    /// when none is open).
    Write {
        key: PartitionKey,
        first: aiops_core::Position,
        batch: RecordBatch,
    },
    /// Close the files open longer than the configured age.
    RollExpired,
    /// Close every file and reply with the files finished since the last flush.
    Flush(std::sync::mpsc::SyncSender<Result<Vec<ArchivedFile>, ArchiveError>>),
}

/// Row groups waiting for the writer thread, at most: a slow disk slows `append` instead of
/// queueing memory (each at most `max_row_group_bytes`).
pub(crate) const WRITER_QUEUE: usize = 4;

/// Writes the `raw` table under a local directory, partitioned and rolled over by size and
/// age. The caller's thread only copies each event into its partition's Arrow column
/// builders; Parquet encoding, compression, `fsync` and the rename happen on a writer thread
/// of the archive's own (`archive-writer`), so a row group or a file roll-over never stalls
/// the stream. Not thread-safe: one archive per ingest worker.
pub struct LocalArchive {
    config: ArchiveConfig,
    pending: HashMap<PartitionKey, PendingGroup>,
    rows_archived: u64,
    /// The partition of the last event of each source and its hour (event time divided by
    /// one hour), so the partition strings are formatted once per hour, not per event.
    last_partition: [Option<(i64, PartitionKey)>; 3],
    commands: Option<std::sync::mpsc::SyncSender<WriterCommand>>,
    writer: Option<std::thread::JoinHandle<()>>,
    /// The writer thread's first error; once set, every call returns it.
    failed: Arc<std::sync::Mutex<Option<String>>>,
}

impl LocalArchive {
    /// An archive writing the `raw` table under `<root>/raw/`; starts its writer thread.
    pub fn new(root: &Path, config: ArchiveConfig) -> LocalArchive {
        let (tx, rx) = std::sync::mpsc::sync_channel(WRITER_QUEUE);
        let failed = Arc::new(std::sync::Mutex::new(None));
        let mut files = ArchiveFiles {
            table_dir: root.join("raw"),
            config,
            open: HashMap::new(),
            finished: Vec::new(),
        };
        let thread_failed = failed.clone();
        let writer = std::thread::Builder::new()
            .name("archive-writer".into())
            .spawn(move || files.run(&rx, &thread_failed));
        let (commands, writer) = match writer {
            Ok(handle) => (Some(tx), Some(handle)),
            Err(e) => {
                if let Ok(mut f) = failed.lock() {
                    *f = Some(format!("cannot start the archive writer thread: {e}"));
                }
                (None, None)
            }
        };
        LocalArchive {
            config,
            pending: HashMap::new(),
            rows_archived: 0,
            last_partition: [None, None, None],
            commands,
            writer,
            failed,
        }
    }

    /// Rows accepted so far (buffered or written).
    pub fn rows_archived(&self) -> u64 {
        self.rows_archived
    }

    fn check_failed(&self) -> Result<(), ArchiveError> {
        match self.failed.lock().ok().and_then(|f| f.clone()) {
            Some(reason) => Err(ArchiveError::Writer(reason)),
            None => Ok(()),
        }
    }

    fn send(&self, command: WriterCommand) -> Result<(), ArchiveError> {
        let sent = self
            .commands
            .as_ref()
            .is_some_and(|tx| tx.send(command).is_ok());
        if sent {
            return Ok(());
        }
        self.check_failed()?;
        Err(ArchiveError::Writer(
            "the archive writer thread stopped".into(),
        ))
    }

    /// Buffers one event; hands its partition's rows to the writer thread as one row group
    /// when `rows_per_row_group` rows or `max_row_group_bytes` bytes are pending. The writer
    /// rolls files over by rows and size.
    ///
    /// # Errors
    /// [`ArchiveError::Writer`] once the writer thread failed (a file could not be created or
    /// written): the error names the file and the cause.
    pub fn append(&mut self, event: &Event) -> Result<(), ArchiveError> {
        let source = event.source();
        let hour = event.event_time.div_euclid(3_600_000_000);
        let slot = match source {
            Source::Cloudtrail => 0,
            Source::Logs => 1,
            Source::Metrics => 2,
        };
        let key = match self.last_partition.get(slot) {
            Some(Some((h, k))) if *h == hour => k.clone(),
            _ => {
                let k = PartitionKey::of(source, event.event_time);
                if let Some(cached) = self.last_partition.get_mut(slot) {
                    *cached = Some((hour, k.clone()));
                }
                k
            }
        };
        if !self.pending.contains_key(&key) {
            self.check_failed()?;
            if self.pending.len() >= self.config.max_open_partitions {
                // Hand over the longest-waiting partition's rows to bound the builders.
                let oldest = self
                    .pending
                    .iter()
                    .min_by_key(|(_, g)| g.since)
                    .map(|(k, _)| k.clone());
                if let Some(k) = oldest {
                    self.hand_over(&k)?;
                }
            }
            self.pending.insert(
                key.clone(),
                PendingGroup {
                    rows: RawBatchBuilder::with_capacity(self.config.rows_per_row_group.min(1024)),
                    first: event.position.clone(),
                    since: std::time::Instant::now(),
                },
            );
        }
        self.rows_archived += 1;
        let full = match self.pending.get_mut(&key) {
            Some(g) => {
                g.rows.push(event);
                g.rows.len() >= self.config.rows_per_row_group
                    || g.rows.bytes() >= self.config.max_row_group_bytes
            }
            None => false,
        };
        if full {
            self.hand_over(&key)?;
        }
        Ok(())
    }

    /// Sends a partition's pending rows to the writer thread as one row group.
    fn hand_over(&mut self, key: &PartitionKey) -> Result<(), ArchiveError> {
        let Some(mut g) = self.pending.remove(key) else {
            return Ok(());
        };
        if g.rows.is_empty() {
            return Ok(());
        }
        let batch = g.rows.finish()?;
        self.send(WriterCommand::Write {
            key: key.clone(),
            first: g.first,
            batch,
        })
    }

    /// Hands over the rows that waited `max_file_age_secs` or longer and closes every file
    /// open that long. Call periodically: a row is in a finished file at most about twice
    /// `max_file_age_secs` after it arrived.
    ///
    /// # Errors
    /// [`ArchiveError::Writer`] once the writer thread failed.
    pub fn roll_expired(&mut self) -> Result<(), ArchiveError> {
        let max_age = std::time::Duration::from_secs(self.config.max_file_age_secs);
        let mut expired: Vec<PartitionKey> = self
            .pending
            .iter()
            .filter(|(_, g)| g.since.elapsed() >= max_age)
            .map(|(k, _)| k.clone())
            .collect();
        expired.sort();
        for k in expired {
            self.hand_over(&k)?;
        }
        self.send(WriterCommand::RollExpired)
    }

    /// Writes everything pending and closes every open file, so all rows accepted so far are
    /// durable and visible; waits for the writer thread. Returns the files finished since the
    /// last call.
    ///
    /// # Errors
    /// [`ArchiveError::Writer`] when a file could not be written or finished (files already
    /// finished stay finished).
    pub fn flush(&mut self) -> Result<Vec<ArchivedFile>, ArchiveError> {
        let mut keys: Vec<PartitionKey> = self.pending.keys().cloned().collect();
        keys.sort();
        for k in keys {
            self.hand_over(&k)?;
        }
        let (reply_tx, reply_rx) = std::sync::mpsc::sync_channel(1);
        self.send(WriterCommand::Flush(reply_tx))?;
        match reply_rx.recv() {
            Ok(result) => result,
            Err(_) => {
                self.check_failed()?;
                Err(ArchiveError::Writer(
                    "the archive writer thread stopped".into(),
                ))
            }
        }
    }
}

impl Drop for LocalArchive {
    /// Stops the writer thread after it handled what it was sent (rows not flushed stay in
    /// their `.inprogress` files, as after a crash).
    fn drop(&mut self) {
        self.commands = None;
        if let Some(handle) = self.writer.take() {
            let _ = handle.join();
        }
    }
}

/// The writer thread's state: the open files of the `raw` table.
struct ArchiveFiles {
    table_dir: PathBuf,
    config: ArchiveConfig,
    open: HashMap<PartitionKey, OpenFile>,
    finished: Vec<ArchivedFile>,
}

impl ArchiveFiles {
    fn run(
        &mut self,
        commands: &std::sync::mpsc::Receiver<WriterCommand>,
        failed: &std::sync::Mutex<Option<String>>,
    ) {
        let mut broken = false;
        for command in commands {
            let result = match command {
                WriterCommand::Write { .. } | WriterCommand::RollExpired if broken => Ok(()),
                WriterCommand::Write { key, first, batch } => self.write(&key, &first, &batch),
                WriterCommand::RollExpired => self.roll_expired(),
                WriterCommand::Flush(reply) => {
                    let result = if broken {
                        Err(ArchiveError::Writer(
                            failed
                                .lock()
                                .ok()
                                .and_then(|f| f.clone())
                                .unwrap_or_default(),
                        ))
                    } else {
                        self.flush()
                    };
                    let failure = result.as_ref().err().map(|e| e.to_string());
                    let _ = reply.send(result);
                    match failure {
                        Some(reason) => Err(ArchiveError::Writer(reason)),
                        None => Ok(()),
                    }
                }
            };
            if let Err(e) = result
                && !broken
            {
                broken = true;
                tracing::error!(error = %e, "archive writer failed; no more rows are written");
                if let Ok(mut f) = failed.lock() {
                    *f = Some(e.to_string());
                }
            }
        }
    }

    fn write(
        &mut self,
        key: &PartitionKey,
        first: &aiops_core::Position,
        batch: &RecordBatch,
    ) -> Result<(), ArchiveError> {
        if !self.open.contains_key(key) {
            if self.open.len() >= self.config.max_open_partitions {
                self.close_oldest()?;
            }
            let file = self.create_file(key, first)?;
            self.open.insert(key.clone(), file);
        }
        let Some(f) = self.open.get_mut(key) else {
            return Ok(());
        };
        f.writer
            .write(batch)
            .and_then(|_| f.writer.flush())
            .map_err(|source| ArchiveError::Parquet {
                path: f.tmp_path.clone(),
                source,
            })?;
        f.rows_written += batch.num_rows() as u64;
        let roll = f.rows_written >= self.config.max_rows_per_file as u64
            || f.writer.bytes_written() >= self.config.max_bytes_per_file;
        if roll {
            self.close(key)?;
        }
        Ok(())
    }

    fn create_file(
        &self,
        key: &PartitionKey,
        first: &aiops_core::Position,
    ) -> Result<OpenFile, ArchiveError> {
        let dir = self.table_dir.join(key.relative_dir());
        std::fs::create_dir_all(&dir).map_err(|source| ArchiveError::Io {
            path: dir.clone(),
            source,
        })?;
        let name = raw_file_name(first);
        let tmp_path = dir.join(format!(".{name}.inprogress"));
        let final_path = dir.join(name);
        let file = File::create(&tmp_path).map_err(|source| ArchiveError::Io {
            path: tmp_path.clone(),
            source,
        })?;
        let writer = ArrowWriter::try_new(file, raw_schema(), Some(writer_properties())).map_err(
            |source| ArchiveError::Parquet {
                path: tmp_path.clone(),
                source,
            },
        )?;
        Ok(OpenFile {
            writer,
            tmp_path,
            final_path,
            rows_written: 0,
            opened_at: std::time::Instant::now(),
        })
    }

    fn close(&mut self, key: &PartitionKey) -> Result<(), ArchiveError> {
        let Some(f) = self.open.remove(key) else {
            return Ok(());
        };
        let OpenFile {
            writer,
            tmp_path,
            final_path,
            rows_written,
            ..
        } = f;
        let file = writer
            .into_inner()
            .map_err(|source| ArchiveError::Parquet {
                path: tmp_path.clone(),
                source,
            })?;
        file.sync_all().map_err(|source| ArchiveError::Io {
            path: tmp_path.clone(),
            source,
        })?;
        drop(file);
        std::fs::rename(&tmp_path, &final_path).map_err(|source| ArchiveError::Io {
            path: final_path.clone(),
            source,
        })?;
        self.finished.push(ArchivedFile {
            path: final_path,
            rows: rows_written,
        });
        Ok(())
    }

    fn close_oldest(&mut self) -> Result<(), ArchiveError> {
        let oldest = self
            .open
            .iter()
            .min_by_key(|(_, f)| f.opened_at)
            .map(|(k, _)| k.clone());
        match oldest {
            Some(k) => self.close(&k),
            None => Ok(()),
        }
    }

    fn roll_expired(&mut self) -> Result<(), ArchiveError> {
        let max_age = std::time::Duration::from_secs(self.config.max_file_age_secs);
        let mut expired: Vec<PartitionKey> = self
            .open
            .iter()
            .filter(|(_, f)| f.opened_at.elapsed() >= max_age)
            .map(|(k, _)| k.clone())
            .collect();
        expired.sort();
        for k in expired {
            self.close(&k)?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<Vec<ArchivedFile>, ArchiveError> {
        let mut keys: Vec<PartitionKey> = self.open.keys().cloned().collect();
        keys.sort();
        for k in keys {
            self.close(&k)?;
        }
        Ok(std::mem::take(&mut self.finished))
    }
}
