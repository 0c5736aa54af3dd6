//! Raw history on S3 (DESIGN §7): one buffer per shard, Parquet objects per partition written
//! when the buffer rolls over by rows, bytes or age, dead letters as JSON-lines objects.
//!
//! Object keys:
//! - `<prefix>/raw/source=<source>/dt=YYYY-MM-DD/hour=HH/<shard>-<first sequence number>-<uuid>.parquet`
//!   (partition by event time, UTC; the file name from [`aiops_ingest::archive::raw_file_name`]);
//! - `<prefix>/dead_letters/dt=YYYY-MM-DD/hour=HH/<shard>-<first sequence number>-<uuid>.jsonl`
//!   (partition by the time the dead letters were written).
//!
//! An object is written whole (multipart for large ones) only at flush, so a reader never sees
//! a partial file; the caller checkpoints only after [`RawArchive::flush`] succeeded. A
//! partition written before a later one failed is dropped from the buffer, so a retried flush
//! never writes it twice.

use crate::objects::{ObjectError, ObjectStore};
use aiops_core::time::partition_of;
use aiops_core::{Event, Position};
use aiops_ingest::archive::{
    ArchiveConfig, ArchiveError, PartitionKey, encode_raw_parquet, raw_file_name,
};
use std::collections::BTreeMap;
use thiserror::Error;
use tokio::time::Instant;

/// Errors of a flush.
#[derive(Debug, Error)]
pub enum RawArchiveError {
    /// Encoding a Parquet file failed.
    #[error(transparent)]
    Encode(#[from] ArchiveError),
    /// Writing an object failed.
    #[error(transparent)]
    Write(#[from] ObjectError),
}

/// What a flush wrote.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FlushReport {
    /// Keys of the objects written, in order.
    pub keys: Vec<String>,
    /// Rows written to Parquet objects.
    pub rows: u64,
    /// Dead letters written.
    pub dead_letters: u64,
}

struct Partition {
    first: Position,
    events: Vec<Event>,
}

/// The S3 archive buffer of one shard.
pub struct RawArchive {
    prefix: String,
    config: ArchiveConfig,
    partitions: BTreeMap<PartitionKey, Partition>,
    rows: usize,
    bytes: usize,
    opened: Option<Instant>,
    dead_letters: Vec<u8>,
    dead_first: Option<Position>,
    dead_count: u64,
}

fn join_key(prefix: &str, rest: &str) -> String {
    let p = prefix.trim_matches('/');
    if p.is_empty() {
        rest.to_string()
    } else {
        format!("{p}/{rest}")
    }
}

/// The key of a raw Parquet object of `partition` whose first row was read at `first`.
pub fn raw_object_key(prefix: &str, partition: &PartitionKey, first: &Position) -> String {
    join_key(
        prefix,
        &format!(
            "raw/source={}/dt={}/hour={}/{}",
            partition.source,
            partition.dt,
            partition.hour,
            raw_file_name(first)
        ),
    )
}

/// The key of a dead-letter object written at `written_micros` (microseconds since the Unix
/// epoch, UTC) whose first line came from `first`.
pub fn dead_letter_object_key(prefix: &str, written_micros: i64, first: &Position) -> String {
    let (dt, hour) = partition_of(written_micros);
    let name = raw_file_name(first);
    let stem = name.strip_suffix(".parquet").unwrap_or(&name);
    join_key(
        prefix,
        &format!("dead_letters/dt={dt}/hour={hour}/{stem}.jsonl"),
    )
}

impl RawArchive {
    /// An empty buffer writing under `prefix` (may be empty), rolling over by `config`.
    pub fn new(prefix: &str, config: ArchiveConfig) -> RawArchive {
        RawArchive {
            prefix: prefix.to_string(),
            config,
            partitions: BTreeMap::new(),
            rows: 0,
            bytes: 0,
            opened: None,
            dead_letters: Vec::new(),
            dead_first: None,
            dead_count: 0,
        }
    }

    /// Rows buffered.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Whether nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.rows == 0 && self.dead_count == 0
    }

    /// Buffers one event; `input_bytes` is the size of the input it came from (bounds the
    /// buffer's memory through `max_bytes_per_file`).
    pub fn append(&mut self, event: Event, input_bytes: usize) {
        self.opened.get_or_insert_with(Instant::now);
        let key = PartitionKey::of(event.source(), event.event_time);
        let first = event.position.clone();
        self.partitions
            .entry(key)
            .or_insert_with(|| Partition {
                first,
                events: Vec::new(),
            })
            .events
            .push(event);
        self.rows += 1;
        self.bytes = self.bytes.saturating_add(input_bytes);
    }

    /// Buffers one dead-letter JSON line (without the newline) read at `position`.
    pub fn append_dead_letter(&mut self, position: &Position, line: &[u8]) {
        self.opened.get_or_insert_with(Instant::now);
        if self.dead_first.is_none() {
            self.dead_first = Some(position.clone());
        }
        self.dead_letters.extend_from_slice(line);
        self.dead_letters.push(b'\n');
        self.dead_count += 1;
        self.bytes = self.bytes.saturating_add(line.len());
    }

    /// Whether the buffer should be written now: `max_rows_per_file` rows, about
    /// `max_bytes_per_file` input bytes, `max_open_partitions` partitions, or open for
    /// `max_file_age_secs`.
    pub fn flush_due(&self) -> bool {
        if self.is_empty() {
            return false;
        }
        self.rows >= self.config.max_rows_per_file
            || self.bytes >= self.config.max_bytes_per_file
            || self.partitions.len() >= self.config.max_open_partitions
            || self
                .opened
                .is_some_and(|t| t.elapsed().as_secs() >= self.config.max_file_age_secs)
    }

    /// Writes every buffered partition as one Parquet object and the dead letters as one
    /// JSON-lines object, then empties the buffer.
    ///
    /// # Errors
    /// [`RawArchiveError`] when encoding or writing fails; what was written before stays
    /// written and leaves the buffer, the rest stays buffered for the next flush.
    pub async fn flush<O: ObjectStore>(
        &mut self,
        store: &O,
    ) -> Result<FlushReport, RawArchiveError> {
        let mut report = FlushReport::default();
        while let Some((key, part)) = self.partitions.pop_first() {
            let object_key = raw_object_key(&self.prefix, &key, &part.first);
            let refs: Vec<&Event> = part.events.iter().collect();
            let encoded = encode_raw_parquet(&refs, self.config.rows_per_row_group, &object_key);
            let body = match encoded {
                Ok(b) => b,
                Err(e) => {
                    self.partitions.insert(key, part);
                    return Err(e.into());
                }
            };
            if let Err(e) = store
                .put(&object_key, body, "application/vnd.apache.parquet")
                .await
            {
                self.partitions.insert(key, part);
                return Err(e.into());
            }
            self.rows -= part.events.len();
            report.rows += part.events.len() as u64;
            report.keys.push(object_key);
        }
        if let Some(first) = &self.dead_first {
            let key = dead_letter_object_key(&self.prefix, aiops_core::time::now_micros(), first);
            store
                .put(&key, self.dead_letters.clone(), "application/x-ndjson")
                .await?;
            report.dead_letters = self.dead_count;
            report.keys.push(key);
            self.dead_letters.clear();
            self.dead_first = None;
            self.dead_count = 0;
        }
        self.rows = 0;
        self.bytes = 0;
        self.opened = None;
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::MemoryObjectStore;
    use aiops_core::{EventBody, LogFields};

    fn log_event(id: &str, t: i64, seq: &str) -> Event {
        Event {
            event_id: id.into(),
            event_time: t,
            ingest_time: t,
            decode_warnings: Vec::new(),
            account: None,
            region: None,
            position: Position {
                stream: "raw".into(),
                shard_id: "shardId-000000000000".into(),
                sequence_number: seq.into(),
                sub_sequence_number: None,
            },
            body: EventBody::Logs(LogFields {
                log_group: "g".into(),
                log_stream: "s".into(),
                message: "ERROR x".into(),
                level: None,
            }),
        }
    }

    #[tokio::test]
    async fn flush_writes_each_partition_once_even_after_a_failed_write() {
        let t0 = 1_635_551_409_000_000; // 2021-10-29T23:50:09Z
        let cfg = ArchiveConfig {
            max_rows_per_file: 3,
            ..ArchiveConfig::default()
        };
        let mut a = RawArchive::new("p", cfg);
        a.append(log_event("a", t0, "5"), 10);
        a.append(log_event("b", t0 + 3_600_000_000, "6"), 10);
        assert!(!a.flush_due());
        a.append(log_event("c", t0 + 1, "7"), 10);
        a.append_dead_letter(
            &Position {
                sequence_number: "8".into(),
                shard_id: "shardId-000000000000".into(),
                ..Position::default()
            },
            b"{\"reason\":\"bad\"}",
        );
        assert!(a.flush_due());
        let store = std::sync::Arc::new(MemoryObjectStore::new());
        // The first object is written, the next write fails.
        let failing = FailAfter {
            inner: store.clone(),
            ok: std::sync::atomic::AtomicUsize::new(1),
        };
        let err = a.flush(&failing).await.unwrap_err();
        assert!(err.to_string().contains("injected"), "{err}");
        assert_eq!(store.objects().len(), 1);
        assert_eq!(a.rows(), 1);
        let report = a.flush(store.as_ref()).await.unwrap();
        assert_eq!(report.rows, 1);
        assert_eq!(report.dead_letters, 1);
        let keys: Vec<String> = store.objects().keys().cloned().collect();
        assert_eq!(keys.len(), 3);
        assert!(keys[0].starts_with("p/dead_letters/dt="), "{keys:?}");
        assert!(keys[0].contains("/shardId-000000000000-8-"), "{keys:?}");
        assert!(
            keys[1].starts_with("p/raw/source=logs/dt=2021-10-29/hour=23/shardId-000000000000-5-")
        );
        assert!(
            keys[2].starts_with("p/raw/source=logs/dt=2021-10-30/hour=00/shardId-000000000000-6-")
        );
        assert!(a.is_empty());
        assert!(!a.flush_due());
    }

    struct FailAfter {
        inner: std::sync::Arc<MemoryObjectStore>,
        ok: std::sync::atomic::AtomicUsize,
    }

    impl ObjectStore for FailAfter {
        async fn put(&self, key: &str, body: Vec<u8>, ct: &str) -> Result<(), ObjectError> {
            use std::sync::atomic::Ordering;
            if self.ok.load(Ordering::SeqCst) == 0 {
                return Err(ObjectError::Write {
                    bucket: "m".into(),
                    key: key.into(),
                    reason: "injected".into(),
                });
            }
            self.ok.fetch_sub(1, Ordering::SeqCst);
            self.inner.put(key, body, ct).await
        }
    }

    #[test]
    fn keys_follow_the_layout() {
        let first = Position {
            stream: "raw".into(),
            shard_id: "shardId-000000000001".into(),
            sequence_number: "17".into(),
            sub_sequence_number: None,
        };
        let part = PartitionKey::of(aiops_core::Source::Logs, 1_635_551_409_000_000);
        let k = raw_object_key("/aiops/", &part, &first);
        assert!(
            k.starts_with("aiops/raw/source=logs/dt=2021-10-29/hour=23/shardId-000000000001-17-"),
            "{k}"
        );
        assert!(k.ends_with(".parquet"));
        let d = dead_letter_object_key("", 1_635_551_409_000_000, &first);
        assert!(
            d.starts_with("dead_letters/dt=2021-10-29/hour=23/shardId-000000000001-17-"),
            "{d}"
        );
        assert!(d.ends_with(".jsonl"));
    }
}
