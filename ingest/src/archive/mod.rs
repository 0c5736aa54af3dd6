//! Raw history in Parquet (DESIGN §7).
//!
//! Layout: `<root>/<table>/source=<source>/dt=YYYY-MM-DD/hour=HH/<file>.parquet`, partitioned by
//! event time (UTC). Each file is written under a hidden temporary name (`.<name>.inprogress`,
//! which Hive, Athena and pyarrow ignore) and renamed into place only when it is complete, so a
//! reader never sees a half-written file and a crash never leaves a corrupt one behind.
//! File names are unique: `<shard>-<first sequence number>-<uuid>.parquet`.
//!
//! The schema of each table is fixed and versioned here ([`RAW_SCHEMA_VERSION`]); timestamps
//! are INT64 microseconds with `isAdjustedToUTC = true`; column names are lower-case
//! snake_case; nested JSON is kept as strings. Only additive changes are allowed.
//!
//! Parquet format: <https://parquet.apache.org/docs/file-format/>; Hive partition naming as
//! read by Athena: <https://docs.aws.amazon.com/athena/latest/ug/partitions.html>.

mod config;
mod local;
mod raw_batch;
mod read;
mod schema;
mod tables;
#[cfg(test)]
mod tests;

pub use config::{ArchiveConfig, ArchiveConfigError, ArchiveError};
pub use local::{ArchivedFile, LocalArchive};
pub use raw_batch::{
    PartitionKey, RawBatchBuilder, encode_raw_batch, encode_raw_parquet, raw_file_name,
};
pub use read::{decode_findings_batch, decode_raw_batch};
pub use schema::{
    ColumnSpec, FINDINGS_SCHEMA_VERSION, INCIDENTS_SCHEMA_VERSION, RAW_SCHEMA_VERSION, TableSpec,
    all_table_specs, findings_schema, glue_type, incidents_schema, raw_schema, table_spec,
};
pub use tables::{
    IncidentRow, LocalTableWriter, TableRow, encode_findings_batch, encode_incidents_batch,
    encode_table_parquet, finding_source,
};
