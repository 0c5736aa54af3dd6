//! The Kinesis producer: `PutRecords` in batches within the service limits, retrying only
//! the entries that failed, with exponential backoff and jitter.
//!
//! Limits (Amazon Kinesis Data Streams API Reference, `PutRecords`,
//! <https://docs.aws.amazon.com/kinesis/latest/APIReference/API_PutRecords.html>): at most
//! 500 records per call, at most 5 MiB per call including partition keys, each record's data
//! plus partition key at most 1 MiB, partition keys 1 to 256 Unicode characters.
//!
//! Ordering: batches are sent one after another, and a batch is complete only when every
//! entry was accepted, so one key's records are never overtaken by a later batch. Within a
//! batch, `PutRecords` itself does not guarantee order when some entries fail and are
//! retried; the stages downstream depend on event time, not arrival order (DESIGN §4).

use crate::backoff::{Backoff, BackoffConfig};
use crate::kinesis::{KinesisError, KinesisPort, PutEntry, PutOutcome};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use thiserror::Error;

/// Most entries in one `PutRecords` call.
pub const MAX_RECORDS_PER_CALL: usize = 500;
/// Most bytes (data plus partition keys) in one `PutRecords` call: 5 MiB.
pub const MAX_BYTES_PER_CALL: usize = 5 * 1024 * 1024;
/// Most bytes of one record (data plus partition key): 1 MiB.
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;
/// Most Unicode characters in a partition key.
pub const MAX_PARTITION_KEY_CHARS: usize = 256;

/// Errors of the producer.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ProduceError {
    /// An entry breaks a per-record limit (never sent; nothing of the call was sent).
    #[error("entry {index}: {reason}")]
    InvalidEntry {
        /// Index of the entry in the input.
        index: usize,
        /// Which limit.
        reason: String,
    },
    /// Retries exhausted; `remaining` entries were not accepted.
    #[error(
        "PutRecords to {stream}: {remaining} entries not accepted after {attempts} attempts; last error: {last_error}"
    )]
    GaveUp {
        /// Stream.
        stream: String,
        /// Entries still not accepted.
        remaining: usize,
        /// Attempts made for the batch.
        attempts: u32,
        /// Last error code or message.
        last_error: String,
    },
    /// A non-retryable error (stream not found, access denied).
    #[error("PutRecords to {stream}: {error}")]
    Fatal {
        /// Stream.
        stream: String,
        /// The error.
        error: KinesisError,
    },
}

/// Counters of a producer (monotonic since creation).
#[derive(Debug, Default)]
pub struct ProducerStats {
    /// `PutRecords` calls made.
    pub calls: AtomicU64,
    /// Entries accepted.
    pub accepted: AtomicU64,
    /// Entries re-sent after a per-entry failure.
    pub retried_entries: AtomicU64,
    /// Calls that failed as a whole with a retryable error (throttling, 5xx).
    pub failed_calls: AtomicU64,
}

/// Checks one entry against the per-record limits.
///
/// # Errors
/// The reason, naming the limit.
pub fn check_entry(entry: &PutEntry) -> Result<(), String> {
    let chars = entry.partition_key.chars().count();
    if chars == 0 || chars > MAX_PARTITION_KEY_CHARS {
        return Err(format!(
            "partition key of {chars} characters is outside 1..={MAX_PARTITION_KEY_CHARS}"
        ));
    }
    let size = entry.data.len() + entry.partition_key.len();
    if size > MAX_RECORD_BYTES {
        return Err(format!(
            "record of {size} bytes (data plus partition key) exceeds the {MAX_RECORD_BYTES}-byte Kinesis limit"
        ));
    }
    Ok(())
}

/// Splits entries into consecutive batches within [`MAX_RECORDS_PER_CALL`] and
/// [`MAX_BYTES_PER_CALL`], in order; returns the index ranges.
pub fn batch_ranges(entries: &[PutEntry]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0usize;
    for (i, e) in entries.iter().enumerate() {
        let size = e.data.len() + e.partition_key.len();
        if i > start && (i - start >= MAX_RECORDS_PER_CALL || bytes + size > MAX_BYTES_PER_CALL) {
            out.push(start..i);
            start = i;
            bytes = 0;
        }
        bytes += size;
    }
    if start < entries.len() {
        out.push(start..entries.len());
    }
    out
}

/// Writes records to Kinesis streams.
pub struct Producer<K> {
    kinesis: Arc<K>,
    backoff: BackoffConfig,
    stats: Arc<ProducerStats>,
}

impl<K: KinesisPort> Producer<K> {
    /// A producer retrying with `backoff` (its `max_attempts` bounds the attempts per batch;
    /// 0 is taken as 12).
    pub fn new(kinesis: Arc<K>, backoff: BackoffConfig) -> Producer<K> {
        let backoff = BackoffConfig {
            max_attempts: if backoff.max_attempts == 0 {
                12
            } else {
                backoff.max_attempts
            },
            ..backoff
        };
        Producer {
            kinesis,
            backoff,
            stats: Arc::new(ProducerStats::default()),
        }
    }

    /// The counters.
    pub fn stats(&self) -> &Arc<ProducerStats> {
        &self.stats
    }

    /// Puts every entry to `stream` and returns when all were accepted. Entries are checked
    /// first (nothing is sent when one breaks a limit), then sent in batches (see
    /// [`batch_ranges`]); after a partial failure only the failed entries are sent again,
    /// in their original order, after a backoff delay.
    ///
    /// # Errors
    /// [`ProduceError::InvalidEntry`] before sending; [`ProduceError::GaveUp`] when a batch
    /// is still not fully accepted after `max_attempts`; [`ProduceError::Fatal`] on a
    /// non-retryable error. Earlier batches stay written (at-least-once).
    pub async fn put_all(&self, stream: &str, entries: &[PutEntry]) -> Result<(), ProduceError> {
        for (index, e) in entries.iter().enumerate() {
            check_entry(e).map_err(|reason| ProduceError::InvalidEntry { index, reason })?;
        }
        for range in batch_ranges(entries) {
            let batch = entries.get(range).unwrap_or_default();
            self.put_batch(stream, batch).await?;
        }
        Ok(())
    }

    async fn put_batch(&self, stream: &str, batch: &[PutEntry]) -> Result<(), ProduceError> {
        let mut backoff = Backoff::new(self.backoff);
        let mut pending: Vec<PutEntry> = batch.to_vec();
        loop {
            self.stats.calls.fetch_add(1, Ordering::Relaxed);
            let last_error = match self.kinesis.put_records(stream, &pending).await {
                Ok(outcomes) => {
                    let mut failed = Vec::new();
                    let mut last = String::new();
                    for (entry, outcome) in pending.into_iter().zip(outcomes) {
                        match outcome {
                            PutOutcome::Accepted { .. } => {
                                self.stats.accepted.fetch_add(1, Ordering::Relaxed);
                            }
                            PutOutcome::Failed { error_code, .. } => {
                                last = error_code;
                                failed.push(entry);
                            }
                        }
                    }
                    if failed.is_empty() {
                        return Ok(());
                    }
                    self.stats
                        .retried_entries
                        .fetch_add(failed.len() as u64, Ordering::Relaxed);
                    pending = failed;
                    last
                }
                Err(e) if e.is_retryable() => {
                    self.stats.failed_calls.fetch_add(1, Ordering::Relaxed);
                    e.to_string()
                }
                Err(error) => {
                    return Err(ProduceError::Fatal {
                        stream: stream.to_string(),
                        error,
                    });
                }
            };
            match backoff.next_delay() {
                Some(d) => {
                    tracing::debug!(stream, remaining = pending.len(), delay_ms = d.as_millis() as u64, error = %last_error, "PutRecords retry");
                    tokio::time::sleep(d).await;
                }
                None => {
                    return Err(ProduceError::GaveUp {
                        stream: stream.to_string(),
                        remaining: pending.len(),
                        attempts: backoff.attempts() + 1,
                        last_error,
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str, size: usize) -> PutEntry {
        PutEntry {
            partition_key: key.to_string(),
            data: vec![b'x'; size],
        }
    }

    #[test]
    fn batches_respect_count_and_byte_limits() {
        let many: Vec<PutEntry> = (0..1001).map(|_| entry("k", 10)).collect();
        assert_eq!(batch_ranges(&many), vec![0..500, 500..1000, 1000..1001]);
        // 6 records of 1 MiB - 1 byte (with the 1-byte key: 1 MiB each): 5 fit in 5 MiB.
        let big: Vec<PutEntry> = (0..6).map(|_| entry("k", MAX_RECORD_BYTES - 1)).collect();
        assert_eq!(batch_ranges(&big), vec![0..5, 5..6]);
        assert_eq!(batch_ranges(&[]), Vec::<std::ops::Range<usize>>::new());
    }

    #[test]
    fn entry_limits_are_checked() {
        assert_eq!(check_entry(&entry("k", 100)), Ok(()));
        assert_eq!(
            check_entry(&entry("", 1)).unwrap_err(),
            "partition key of 0 characters is outside 1..=256"
        );
        assert_eq!(
            check_entry(&entry(&"é".repeat(257), 1)).unwrap_err(),
            "partition key of 257 characters is outside 1..=256"
        );
        assert_eq!(
            check_entry(&entry("k", MAX_RECORD_BYTES)).unwrap_err(),
            "record of 1048577 bytes (data plus partition key) exceeds the 1048576-byte Kinesis limit"
        );
    }
}
