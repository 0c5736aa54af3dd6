//! The `findings` and `incidents` history tables on S3 (DESIGN §7): one buffer per shard
//! processor, one Parquet object per partition written at flush, before the shard
//! checkpoints. Keys: `<prefix>/<table>/source=<s>/dt=YYYY-MM-DD/hour=HH/<shard>-<n>-<uuid>.parquet`
//! (`n` counts the processor's objects).

use aiops_aws::objects::{ObjectError, ObjectStore};
use aiops_ingest::archive::{
    ArchiveConfig, ArchiveError, PartitionKey, TableRow, encode_table_parquet, raw_file_name,
};
use std::collections::BTreeMap;
use std::time::Instant;
use thiserror::Error;

/// Errors of a flush.
#[derive(Debug, Error)]
pub enum TableFlushError {
    /// Encoding a Parquet object failed.
    #[error(transparent)]
    Encode(#[from] ArchiveError),
    /// Writing an object failed.
    #[error(transparent)]
    Write(#[from] ObjectError),
}

/// The S3 buffer of one history table for one shard processor.
pub struct TableBuffer<R> {
    prefix: String,
    writer: String,
    config: ArchiveConfig,
    parts: BTreeMap<PartitionKey, Vec<R>>,
    rows: usize,
    opened: Option<Instant>,
    objects: u64,
}

impl<R: TableRow> TableBuffer<R> {
    /// An empty buffer writing under `prefix` (may be empty); `writer` (the shard id) starts
    /// the object names.
    pub fn new(prefix: &str, writer: &str, config: ArchiveConfig) -> Self {
        TableBuffer {
            prefix: prefix.trim_matches('/').to_string(),
            writer: writer.to_string(),
            config,
            parts: BTreeMap::new(),
            rows: 0,
            opened: None,
            objects: 0,
        }
    }

    /// Rows buffered.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Buffers one row.
    pub fn append(&mut self, row: R) {
        self.opened.get_or_insert_with(Instant::now);
        self.parts.entry(row.partition()).or_default().push(row);
        self.rows += 1;
    }

    /// Whether the buffer should be written now: `max_rows_per_file` rows, or rows older than
    /// `max_file_age_secs`.
    pub fn flush_due(&self) -> bool {
        self.rows > 0
            && (self.rows >= self.config.max_rows_per_file
                || self
                    .opened
                    .is_some_and(|t| t.elapsed().as_secs() >= self.config.max_file_age_secs))
    }

    /// The key of the next object of `partition`.
    fn key(&mut self, partition: &PartitionKey) -> String {
        self.objects += 1;
        let name = raw_file_name(&aiops_core::Position {
            stream: String::new(),
            shard_id: self.writer.clone(),
            sequence_number: self.objects.to_string(),
            sub_sequence_number: None,
        });
        let rest = format!(
            "{}/source={}/dt={}/hour={}/{name}",
            R::TABLE,
            partition.source,
            partition.dt,
            partition.hour
        );
        if self.prefix.is_empty() {
            rest
        } else {
            format!("{}/{rest}", self.prefix)
        }
    }

    /// Writes every buffered partition as one object; returns the keys written. A partition
    /// written before a later one failed leaves the buffer (never written twice).
    ///
    /// # Errors
    /// [`TableFlushError`] when encoding or writing fails; the rest stays buffered.
    pub async fn flush<O: ObjectStore>(
        &mut self,
        store: &O,
    ) -> Result<Vec<String>, TableFlushError> {
        let mut keys = Vec::new();
        while let Some((partition, rows)) = self.parts.pop_first() {
            let key = self.key(&partition);
            let refs: Vec<&R> = rows.iter().collect();
            let body = match encode_table_parquet(&refs, self.config.rows_per_row_group, &key) {
                Ok(b) => b,
                Err(e) => {
                    self.parts.insert(partition, rows);
                    return Err(e.into());
                }
            };
            if let Err(e) = store
                .put(&key, body, "application/vnd.apache.parquet")
                .await
            {
                self.parts.insert(partition, rows);
                return Err(e.into());
            }
            self.rows -= rows.len();
            keys.push(key);
        }
        self.opened = None;
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aiops_aws::testing::MemoryObjectStore;
    use aiops_core::{Evidence, Finding, FindingKind};

    #[tokio::test]
    async fn findings_go_to_their_partitions() {
        let f = |id: &str, key: Option<&str>| Finding {
            suppressed: None,
            finding_id: id.into(),
            kind: if key.is_some() {
                FindingKind::RateAnomaly
            } else {
                FindingKind::ChangeRule
            },
            detector: "d".into(),
            event_time: 1_714_564_800_000_000,
            detected_at: 0,
            resource: None,
            score: 1.0,
            summary: String::new(),
            default_action: None,
            recoverable: false,
            evidence: Evidence {
                series_key: key.map(str::to_string),
                ..Evidence::default()
            },
            direction: None,
            priority: aiops_core::Priority::High,
        };
        let mut b: TableBuffer<Finding> =
            TableBuffer::new("/hist/", "shardId-000000000000", ArchiveConfig::default());
        b.append(f("a", Some("log_level:g:ERROR")));
        b.append(f("b", None));
        assert_eq!(b.rows(), 2);
        assert!(!b.flush_due());
        let store = MemoryObjectStore::new();
        let keys = b.flush(&store).await.unwrap();
        assert_eq!(keys.len(), 2);
        assert!(keys[0].starts_with(
            "hist/findings/source=cloudtrail/dt=2024-05-01/hour=12/shardId-000000000000-1-"
        ));
        assert!(keys[1].starts_with(
            "hist/findings/source=logs/dt=2024-05-01/hour=12/shardId-000000000000-2-"
        ));
        assert_eq!(b.rows(), 0);
        assert_eq!(store.objects().len(), 2);
    }
}
