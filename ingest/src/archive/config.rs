//! Errors and configuration of the Parquet archive.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use thiserror::Error;

/// Errors from the Parquet archive.
#[derive(Debug, Error)]
pub enum ArchiveError {
    /// A file or directory operation failed.
    #[error("archive I/O on {path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Encoding a batch or writing the Parquet footer failed.
    #[error("parquet encoding for {path}: {source}")]
    Parquet {
        /// The file being written.
        path: PathBuf,
        /// The underlying error.
        source: parquet::errors::ParquetError,
    },
    /// Building an Arrow record batch failed (a schema/array mismatch: a bug).
    #[error("arrow batch: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    /// A batch read back from a table does not hold what its schema promises.
    #[error("decoding a history batch: {0}")]
    Decode(String),
    /// The `raw` archive's writer thread failed earlier (the reason names the file and the
    /// cause) or is gone; nothing more is archived.
    #[error("archive writer: {0}")]
    Writer(String),
}

/// When archive files are closed and a new one started, and how rows are grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ArchiveConfig {
    /// Close a file once this many rows were written to it. Default 1,000,000.
    pub max_rows_per_file: usize,
    /// Close a file once its encoded size reaches this many bytes. Default 128 MiB.
    pub max_bytes_per_file: usize,
    /// Close a file once it has been open this many seconds (wall clock). Default 300 s.
    pub max_file_age_secs: u64,
    /// Rows buffered per partition before they are encoded as one row group. Default 16,384.
    pub rows_per_row_group: usize,
    /// Bytes of row data (the rows' strings and fixed-width values, as buffered in the Arrow
    /// builders) buffered per partition before they are encoded as one row group, whatever
    /// the row count. Up to [`super::local::WRITER_QUEUE`] such row groups wait for the
    /// writer thread and one more is being encoded, so this bounds the archive's memory:
    /// 16,384 CloudTrail rows are about 23 MB, and the groups held at once were about
    /// 90 MiB of a 1M-event replay's peak RSS (4 MiB groups: 351-356 MiB peak, 8 MiB:
    /// 368-384 MiB, 16,384 rows: 436-442 MiB). Default 4 MiB (about 2,900 CloudTrail rows,
    /// still a few hundred KB a column chunk after compression); 64 KiB to 1 GiB.
    pub max_row_group_bytes: usize,
    /// Largest number of partitions with an open file at once; opening one more closes the
    /// oldest. Default 64.
    pub max_open_partitions: usize,
}

impl Default for ArchiveConfig {
    fn default() -> Self {
        ArchiveConfig {
            max_rows_per_file: 1_000_000,
            max_bytes_per_file: 128 * 1024 * 1024,
            max_file_age_secs: 300,
            rows_per_row_group: 16_384,
            max_row_group_bytes: 4 * 1024 * 1024,
            max_open_partitions: 64,
        }
    }
}

/// A configuration value out of range.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("archive.{field}: {reason}")]
pub struct ArchiveConfigError {
    /// The field name.
    pub field: &'static str,
    /// What is wrong.
    pub reason: &'static str,
}

impl ArchiveConfig {
    /// Checks that every bound is positive and row groups fit in a file.
    ///
    /// # Errors
    /// [`ArchiveConfigError`] naming the first field out of range.
    pub fn validate(&self) -> Result<(), ArchiveConfigError> {
        let bad = |field, reason| Err(ArchiveConfigError { field, reason });
        if self.max_rows_per_file == 0 {
            return bad("max_rows_per_file", "must be at least 1");
        }
        if self.max_bytes_per_file < 1024 {
            return bad("max_bytes_per_file", "must be at least 1024 bytes");
        }
        if self.max_file_age_secs == 0 {
            return bad("max_file_age_secs", "must be at least 1 second");
        }
        if self.rows_per_row_group == 0 || self.rows_per_row_group > 1_048_576 {
            return bad("rows_per_row_group", "must be between 1 and 1048576");
        }
        if !(64 * 1024..=1024 * 1024 * 1024).contains(&self.max_row_group_bytes) {
            return bad(
                "max_row_group_bytes",
                "must be between 65536 (64 KiB) and 1073741824 (1 GiB)",
            );
        }
        if self.max_open_partitions == 0 || self.max_open_partitions > 10_000 {
            return bad("max_open_partitions", "must be between 1 and 10000");
        }
        Ok(())
    }
}
