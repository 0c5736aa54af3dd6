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

use aiops_core::time::partition_of;
use aiops_core::{Event, EventBody, Source};
use arrow_array::builder::{
    BooleanBuilder, Float64Builder, Int32Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use thiserror::Error;

/// Version of the `raw` table schema written in every file's `schema_version` column.
pub const RAW_SCHEMA_VERSION: i32 = 1;

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
        if self.max_open_partitions == 0 || self.max_open_partitions > 10_000 {
            return bad("max_open_partitions", "must be between 1 and 10000");
        }
        Ok(())
    }
}

/// A column of a table, with its Glue/Hive type name (for Athena DDL and `aiops schema`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ColumnSpec {
    /// Column name (lower-case snake_case).
    pub name: String,
    /// Glue/Hive type: `string`, `int`, `bigint`, `double`, `boolean`, `timestamp`.
    #[serde(rename = "type")]
    pub glue_type: String,
}

/// A table's schema as Athena sees it: columns in file order, then the partition keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableSpec {
    /// Table name (`raw`, `findings`, `incidents`).
    pub name: String,
    /// Schema version written in the `schema_version` column.
    pub version: i32,
    /// Columns stored in the Parquet files, in order.
    pub columns: Vec<ColumnSpec>,
    /// Hive partition keys, in path order (`source`, `dt`, `hour`).
    pub partition_keys: Vec<ColumnSpec>,
}

/// The Glue/Hive type name of an Arrow type used in our schemas.
pub fn glue_type(data_type: &DataType) -> &'static str {
    match data_type {
        DataType::Utf8 | DataType::LargeUtf8 => "string",
        DataType::Int32 => "int",
        DataType::Int64 => "bigint",
        DataType::Float64 => "double",
        DataType::Boolean => "boolean",
        DataType::Timestamp(_, _) => "timestamp",
        _ => "unsupported",
    }
}

/// Builds the [`TableSpec`] of a table from its Arrow schema.
pub fn table_spec(name: &str, version: i32, schema: &Schema) -> TableSpec {
    let string = |n: &str| ColumnSpec {
        name: n.to_string(),
        glue_type: "string".to_string(),
    };
    TableSpec {
        name: name.to_string(),
        version,
        columns: schema
            .fields()
            .iter()
            .map(|f| ColumnSpec {
                name: f.name().clone(),
                glue_type: glue_type(f.data_type()).to_string(),
            })
            .collect(),
        partition_keys: vec![string("source"), string("dt"), string("hour")],
    }
}

fn ts_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// The Arrow schema of the `raw` table (normalised events), version [`RAW_SCHEMA_VERSION`].
/// The partition columns (`source`, `dt`, `hour`) live in the path, not in the file.
pub fn raw_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            let s = |n: &str| Field::new(n, DataType::Utf8, true);
            let f = |n: &str| Field::new(n, DataType::Float64, true);
            Arc::new(Schema::new(vec![
                Field::new("schema_version", DataType::Int32, false),
                Field::new("event_id", DataType::Utf8, false),
                Field::new("event_time", ts_type(), false),
                Field::new("ingest_time", ts_type(), false),
                s("account"),
                s("region"),
                s("stream"),
                s("shard_id"),
                s("sequence_number"),
                Field::new("sub_sequence_number", DataType::Int64, true),
                s("event_source"),
                s("event_name"),
                s("event_type"),
                s("principal_type"),
                s("principal_arn"),
                s("principal_account"),
                s("session_issuer_arn"),
                s("invoked_by"),
                s("user_name"),
                s("source_ip"),
                s("user_agent"),
                s("error_code"),
                s("error_message"),
                Field::new("read_only", DataType::Boolean, true),
                s("resources"),
                s("request_parameters"),
                s("response_elements"),
                s("recipient_account_id"),
                s("log_group"),
                s("log_stream"),
                s("message"),
                s("level"),
                s("namespace"),
                s("metric_name"),
                s("dimensions"),
                f("value_max"),
                f("value_min"),
                f("value_sum"),
                f("value_count"),
                s("unit"),
                s("metric_stream_name"),
            ]))
        })
        .clone()
}

/// Version of the `findings` table schema.
pub const FINDINGS_SCHEMA_VERSION: i32 = 1;
/// Version of the `incidents` table schema.
pub const INCIDENTS_SCHEMA_VERSION: i32 = 1;

/// The Arrow schema of the `findings` table, version [`FINDINGS_SCHEMA_VERSION`]: one row per
/// finding; JSON lists (`event_ids`, `samples`) are strings.
pub fn findings_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            let s = |n: &str| Field::new(n, DataType::Utf8, true);
            let f = |n: &str| Field::new(n, DataType::Float64, true);
            let t = |n: &str| Field::new(n, ts_type(), true);
            Arc::new(Schema::new(vec![
                Field::new("schema_version", DataType::Int32, false),
                Field::new("finding_id", DataType::Utf8, false),
                s("kind"),
                s("detector"),
                t("event_time"),
                t("detected_at"),
                s("resource_type"),
                s("resource_id"),
                s("account"),
                s("region"),
                f("score"),
                s("summary"),
                s("default_action"),
                Field::new("recoverable", DataType::Boolean, true),
                s("series_key"),
                t("window_start"),
                t("window_end"),
                f("observed"),
                f("expected"),
                s("template"),
                s("event_ids"),
                s("principal"),
                s("event_source"),
                s("event_name"),
                s("source_ip"),
                s("samples"),
            ]))
        })
        .clone()
}

/// The Arrow schema of the `incidents` table, version [`INCIDENTS_SCHEMA_VERSION`]: one row
/// per incident state snapshot; `timeline` and `build_ids` are JSON strings.
pub fn incidents_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            let s = |n: &str| Field::new(n, DataType::Utf8, true);
            let t = |n: &str| Field::new(n, ts_type(), true);
            Arc::new(Schema::new(vec![
                Field::new("schema_version", DataType::Int32, false),
                Field::new("incident_id", DataType::Utf8, false),
                s("correlation_id"),
                s("resource_key"),
                s("resource_type"),
                s("resource_id"),
                s("account"),
                s("region"),
                s("finding_id"),
                s("detector"),
                s("kind"),
                s("workflow_state"),
                s("classification"),
                Field::new("confidence", DataType::Float64, true),
                Field::new("severity", DataType::Int32, true),
                s("reasoning"),
                s("action"),
                s("explainer"),
                s("codebuild_project"),
                s("terraform_target"),
                s("build_ids"),
                s("outcome"),
                s("timeline"),
                t("event_time"),
                t("created_at"),
                t("updated_at"),
            ]))
        })
        .clone()
}

/// The [`TableSpec`]s of every table, in the order `raw`, `findings`, `incidents`.
pub fn all_table_specs() -> Vec<TableSpec> {
    vec![
        table_spec("raw", RAW_SCHEMA_VERSION, &raw_schema()),
        table_spec("findings", FINDINGS_SCHEMA_VERSION, &findings_schema()),
        table_spec("incidents", INCIDENTS_SCHEMA_VERSION, &incidents_schema()),
    ]
}

/// Encodes events as one record batch of the `raw` schema, in the given order.
///
/// # Errors
/// [`ArchiveError::Arrow`] only if the builders disagree with the schema (a bug).
pub fn encode_raw_batch(events: &[&Event]) -> Result<RecordBatch, ArchiveError> {
    let n = events.len();
    let mut version = Int32Builder::with_capacity(n);
    let mut event_id = StringBuilder::with_capacity(n, n * 36);
    let mut event_time = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut ingest_time = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut strings: Vec<StringBuilder> = (0..5).map(|_| StringBuilder::new()).collect();
    let mut sub_seq = Int64Builder::with_capacity(n);
    let mut ct: Vec<StringBuilder> = (0..13).map(|_| StringBuilder::new()).collect();
    let mut read_only = BooleanBuilder::with_capacity(n);
    let mut ct2: Vec<StringBuilder> = (0..4).map(|_| StringBuilder::new()).collect();
    let mut logs: Vec<StringBuilder> = (0..4).map(|_| StringBuilder::new()).collect();
    let mut met: Vec<StringBuilder> = (0..3).map(|_| StringBuilder::new()).collect();
    let mut vals: Vec<Float64Builder> = (0..4).map(|_| Float64Builder::with_capacity(n)).collect();
    let mut met2: Vec<StringBuilder> = (0..2).map(|_| StringBuilder::new()).collect();

    for e in events {
        version.append_value(RAW_SCHEMA_VERSION);
        event_id.append_value(&e.event_id);
        event_time.append_value(e.event_time);
        ingest_time.append_value(e.ingest_time);
        strings[0].append_option(e.account.as_deref());
        strings[1].append_option(e.region.as_deref());
        strings[2].append_value(&e.position.stream);
        strings[3].append_value(&e.position.shard_id);
        strings[4].append_value(&e.position.sequence_number);
        sub_seq.append_option(
            e.position
                .sub_sequence_number
                .map(|v| i64::try_from(v).unwrap_or(i64::MAX)),
        );
        match &e.body {
            EventBody::Cloudtrail(c) => {
                ct[0].append_value(&c.event_source);
                ct[1].append_value(&c.event_name);
                ct[2].append_option(c.event_type.as_deref());
                ct[3].append_option(c.principal.principal_type.as_deref());
                ct[4].append_option(c.principal.arn.as_deref());
                ct[5].append_option(c.principal.account_id.as_deref());
                ct[6].append_option(c.principal.session_issuer_arn.as_deref());
                ct[7].append_option(c.principal.invoked_by.as_deref());
                ct[8].append_option(c.principal.user_name.as_deref());
                ct[9].append_option(c.source_ip.as_deref());
                ct[10].append_option(c.user_agent.as_deref());
                ct[11].append_option(c.error_code.as_deref());
                ct[12].append_option(c.error_message.as_deref());
                read_only.append_option(c.read_only);
                if c.resources.is_empty() {
                    ct2[0].append_null();
                } else {
                    ct2[0].append_value(
                        serde_json::to_string(&c.resources).unwrap_or_else(|_| "[]".to_string()),
                    );
                }
                ct2[1].append_option(c.request_parameters.as_deref());
                ct2[2].append_option(c.response_elements.as_deref());
                ct2[3].append_option(c.recipient_account_id.as_deref());
            }
            _ => {
                for b in ct.iter_mut() {
                    b.append_null();
                }
                read_only.append_null();
                for b in ct2.iter_mut() {
                    b.append_null();
                }
            }
        }
        match &e.body {
            EventBody::Logs(l) => {
                logs[0].append_value(&l.log_group);
                logs[1].append_value(&l.log_stream);
                logs[2].append_value(&l.message);
                logs[3].append_option(l.level.map(|v| v.as_str()));
            }
            _ => {
                for b in logs.iter_mut() {
                    b.append_null();
                }
            }
        }
        match &e.body {
            EventBody::Metrics(m) => {
                met[0].append_value(&m.namespace);
                met[1].append_value(&m.metric);
                met[2].append_value(
                    serde_json::to_string(&m.dimensions).unwrap_or_else(|_| "{}".to_string()),
                );
                vals[0].append_value(m.value.max);
                vals[1].append_value(m.value.min);
                vals[2].append_value(m.value.sum);
                vals[3].append_value(m.value.count);
                met2[0].append_option(m.unit.as_deref());
                met2[1].append_option(m.metric_stream_name.as_deref());
            }
            _ => {
                for b in met.iter_mut() {
                    b.append_null();
                }
                for b in vals.iter_mut() {
                    b.append_null();
                }
                for b in met2.iter_mut() {
                    b.append_null();
                }
            }
        }
    }

    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(version.finish()),
        Arc::new(event_id.finish()),
        Arc::new(event_time.finish()),
        Arc::new(ingest_time.finish()),
    ];
    for b in strings.iter_mut() {
        columns.push(Arc::new(b.finish()));
    }
    columns.push(Arc::new(sub_seq.finish()));
    for b in ct.iter_mut() {
        columns.push(Arc::new(b.finish()));
    }
    columns.push(Arc::new(read_only.finish()));
    for b in ct2.iter_mut() {
        columns.push(Arc::new(b.finish()));
    }
    for b in logs.iter_mut() {
        columns.push(Arc::new(b.finish()));
    }
    for b in met.iter_mut() {
        columns.push(Arc::new(b.finish()));
    }
    for b in vals.iter_mut() {
        columns.push(Arc::new(b.finish()));
    }
    for b in met2.iter_mut() {
        columns.push(Arc::new(b.finish()));
    }
    Ok(RecordBatch::try_new(raw_schema(), columns)?)
}

/// The partition a row belongs to: source and the UTC hour of its event time.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartitionKey {
    /// `source=` value.
    pub source: Source,
    /// `dt=` value, `YYYY-MM-DD`.
    pub dt: String,
    /// `hour=` value, `HH`.
    pub hour: String,
}

impl PartitionKey {
    /// The partition of an event time (microseconds since the epoch, UTC).
    pub fn of(source: Source, event_time: i64) -> PartitionKey {
        let (dt, hour) = partition_of(event_time);
        PartitionKey { source, dt, hour }
    }

    /// The relative directory `source=<s>/dt=<d>/hour=<h>`.
    pub fn relative_dir(&self) -> PathBuf {
        PathBuf::from(format!("source={}", self.source))
            .join(format!("dt={}", self.dt))
            .join(format!("hour={}", self.hour))
    }
}

/// The unique file name of an archive file whose first row was read at `first`:
/// `<shard>-<first sequence number>-<uuid>.parquet`, the shard and sequence number reduced to
/// `[A-Za-z0-9_-]` (others become `_`) and cut to 64 characters each, the uuid a random v4 in
/// simple (32 hex digits) form. Used by the local archive and for S3 object names.
pub fn raw_file_name(first: &aiops_core::Position) -> String {
    format!(
        "{}-{}-{}.parquet",
        sanitize(&first.shard_id),
        sanitize(&first.sequence_number),
        uuid::Uuid::new_v4().simple()
    )
}

/// Encodes `events`, in order, as one complete Parquet file of the `raw` schema (same writer
/// properties as [`LocalArchive`]: Snappy, row groups of at most `rows_per_row_group` rows,
/// at least 1) held in memory, for object stores such as S3. `name` only labels errors.
///
/// # Errors
/// [`ArchiveError::Parquet`] when encoding fails; [`ArchiveError::Arrow`] on a schema bug.
pub fn encode_raw_parquet(
    events: &[&Event],
    rows_per_row_group: usize,
    name: &str,
) -> Result<Vec<u8>, ArchiveError> {
    let perr = |source| ArchiveError::Parquet {
        path: PathBuf::from(name),
        source,
    };
    let mut writer =
        ArrowWriter::try_new(Vec::new(), raw_schema(), Some(writer_properties())).map_err(perr)?;
    for chunk in events.chunks(rows_per_row_group.max(1)) {
        let batch = encode_raw_batch(chunk)?;
        writer
            .write(&batch)
            .and_then(|_| writer.flush())
            .map_err(perr)?;
    }
    writer.into_inner().map_err(perr)
}

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
    pending: Vec<Event>,
    opened_at: std::time::Instant,
}

/// Writes the `raw` table under a local directory, partitioned and rolled over by size and
/// age. Not thread-safe: one writer per ingest worker.
pub struct LocalArchive {
    table_dir: PathBuf,
    config: ArchiveConfig,
    open: HashMap<PartitionKey, OpenFile>,
    finished: Vec<ArchivedFile>,
    rows_archived: u64,
}

fn sanitize(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    out.truncate(64);
    out
}

fn writer_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_created_by(format!("aiops {}", env!("CARGO_PKG_VERSION")))
        .build()
}

impl LocalArchive {
    /// An archive writing the `raw` table under `<root>/raw/`.
    pub fn new(root: &Path, config: ArchiveConfig) -> LocalArchive {
        LocalArchive {
            table_dir: root.join("raw"),
            config,
            open: HashMap::new(),
            finished: Vec::new(),
            rows_archived: 0,
        }
    }

    /// Rows accepted so far (buffered or written).
    pub fn rows_archived(&self) -> u64 {
        self.rows_archived
    }

    /// Buffers one event; encodes a row group when its partition has
    /// `rows_per_row_group` rows pending, and rolls the file over by size.
    ///
    /// # Errors
    /// [`ArchiveError`] when a file cannot be created or written.
    pub fn append(&mut self, event: &Event) -> Result<(), ArchiveError> {
        let key = PartitionKey::of(event.source(), event.event_time);
        if !self.open.contains_key(&key) {
            if self.open.len() >= self.config.max_open_partitions {
                self.close_oldest()?;
            }
            let file = self.create_file(&key, event)?;
            self.open.insert(key.clone(), file);
        }
        self.rows_archived += 1;
        let rows_per_group = self.config.rows_per_row_group;
        let full = match self.open.get_mut(&key) {
            Some(f) => {
                f.pending.push(event.clone());
                f.pending.len() >= rows_per_group
            }
            None => false,
        };
        if full {
            self.write_pending(&key)?;
            let roll = self.open.get(&key).is_some_and(|f| {
                f.rows_written >= self.config.max_rows_per_file as u64
                    || f.writer.bytes_written() >= self.config.max_bytes_per_file
            });
            if roll {
                self.close(&key)?;
            }
        }
        Ok(())
    }

    fn create_file(&self, key: &PartitionKey, first: &Event) -> Result<OpenFile, ArchiveError> {
        let dir = self.table_dir.join(key.relative_dir());
        std::fs::create_dir_all(&dir).map_err(|source| ArchiveError::Io {
            path: dir.clone(),
            source,
        })?;
        let name = raw_file_name(&first.position);
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
            pending: Vec::new(),
            opened_at: std::time::Instant::now(),
        })
    }

    fn write_pending(&mut self, key: &PartitionKey) -> Result<(), ArchiveError> {
        let Some(f) = self.open.get_mut(key) else {
            return Ok(());
        };
        if f.pending.is_empty() {
            return Ok(());
        }
        let refs: Vec<&Event> = f.pending.iter().collect();
        let batch = encode_raw_batch(&refs)?;
        f.writer
            .write(&batch)
            .and_then(|_| f.writer.flush())
            .map_err(|source| ArchiveError::Parquet {
                path: f.tmp_path.clone(),
                source,
            })?;
        f.rows_written += f.pending.len() as u64;
        f.pending.clear();
        Ok(())
    }

    fn close(&mut self, key: &PartitionKey) -> Result<(), ArchiveError> {
        self.write_pending(key)?;
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

    /// Closes every file open longer than `max_file_age_secs`. Call periodically.
    ///
    /// # Errors
    /// [`ArchiveError`] when a file cannot be finished.
    pub fn roll_expired(&mut self) -> Result<(), ArchiveError> {
        let max_age = std::time::Duration::from_secs(self.config.max_file_age_secs);
        let expired: Vec<PartitionKey> = self
            .open
            .iter()
            .filter(|(_, f)| f.opened_at.elapsed() >= max_age)
            .map(|(k, _)| k.clone())
            .collect();
        for k in expired {
            self.close(&k)?;
        }
        Ok(())
    }

    /// Writes everything pending and closes every open file, so all rows accepted so far are
    /// durable and visible. Returns the files finished since the last call.
    ///
    /// # Errors
    /// [`ArchiveError`] when a file cannot be finished; files already finished stay finished.
    pub fn flush(&mut self) -> Result<Vec<ArchivedFile>, ArchiveError> {
        let mut keys: Vec<PartitionKey> = self.open.keys().cloned().collect();
        keys.sort();
        for k in keys {
            self.close(&k)?;
        }
        Ok(std::mem::take(&mut self.finished))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aiops_core::{CloudTrailFields, LogFields, LogLevel, Position, Principal};
    use parquet::file::reader::{FileReader, SerializedFileReader};

    fn ct_event(id: &str, t: i64) -> Event {
        Event {
            event_id: id.to_string(),
            event_time: t,
            ingest_time: t + 5,
            account: Some("123456789012".into()),
            region: Some("us-east-1".into()),
            position: Position {
                stream: "file:x".into(),
                shard_id: "file".into(),
                sequence_number: "7".into(),
                sub_sequence_number: Some(2),
            },
            body: EventBody::Cloudtrail(Box::new(CloudTrailFields {
                event_source: "ssm.amazonaws.com".into(),
                event_name: "DeleteParameter".into(),
                principal: Principal {
                    arn: Some("arn:aws:iam::1:user/a".into()),
                    ..Default::default()
                },
                request_parameters: Some(r#"{"name":"/p"}"#.into()),
                read_only: Some(false),
                ..Default::default()
            })),
        }
    }

    fn log_event(id: &str, t: i64) -> Event {
        Event {
            event_id: id.to_string(),
            event_time: t,
            ingest_time: t,
            account: None,
            region: None,
            position: Position::default(),
            body: EventBody::Logs(LogFields {
                log_group: "/aws/lambda/f".into(),
                log_stream: "s".into(),
                message: "ERROR boom".into(),
                level: Some(LogLevel::Error),
            }),
        }
    }

    #[test]
    fn writes_partitioned_files_with_utc_micro_timestamps() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = LocalArchive::new(dir.path(), ArchiveConfig::default());
        // 2021-10-29T23:50:09Z and one hour later (next day).
        let t0 = 1_635_551_409_000_000;
        a.append(&ct_event("a", t0)).unwrap();
        a.append(&ct_event("b", t0 + 3_600_000_000)).unwrap();
        a.append(&log_event("c", t0)).unwrap();
        let files = a.flush().unwrap();
        assert_eq!(files.len(), 3);
        assert_eq!(a.rows_archived(), 3);
        let mut rels: Vec<String> = files
            .iter()
            .map(|f| {
                f.path
                    .parent()
                    .unwrap()
                    .strip_prefix(dir.path())
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        rels.sort();
        assert_eq!(
            rels,
            vec![
                "raw/source=cloudtrail/dt=2021-10-29/hour=23",
                "raw/source=cloudtrail/dt=2021-10-30/hour=00",
                "raw/source=logs/dt=2021-10-29/hour=23",
            ]
        );
        let name = files[0]
            .path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert!(
            name.starts_with("file-7-") && name.ends_with(".parquet"),
            "{name}"
        );
        // Footer: event_time is INT64 TIMESTAMP(MICROS, isAdjustedToUTC=true).
        let reader = SerializedFileReader::new(File::open(&files[0].path).unwrap()).unwrap();
        let schema = reader.metadata().file_metadata().schema_descr();
        let col = schema.column(2);
        assert_eq!(col.name(), "event_time");
        assert_eq!(col.physical_type(), parquet::basic::Type::INT64);
        assert_eq!(
            col.logical_type_ref(),
            Some(&parquet::basic::LogicalType::Timestamp(
                parquet::basic::TimestampType {
                    is_adjusted_to_u_t_c: true,
                    unit: parquet::basic::TimeUnit::MICROS,
                }
            ))
        );
        assert_eq!(reader.metadata().file_metadata().num_rows(), 1);
        // No temporary files remain.
        let leftovers = walk(dir.path())
            .into_iter()
            .filter(|p| p.to_string_lossy().contains("inprogress"))
            .count();
        assert_eq!(leftovers, 0);
    }

    #[test]
    fn rolls_over_by_row_count() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = ArchiveConfig {
            max_rows_per_file: 4,
            rows_per_row_group: 2,
            ..ArchiveConfig::default()
        };
        let mut a = LocalArchive::new(dir.path(), cfg);
        for i in 0..10 {
            a.append(&ct_event(&format!("e{i}"), 1_635_551_409_000_000 + i))
                .unwrap();
        }
        let files = a.flush().unwrap();
        let mut rows: Vec<u64> = files.iter().map(|f| f.rows).collect();
        rows.sort();
        assert_eq!(rows, vec![2, 4, 4]);
    }

    #[test]
    fn in_memory_parquet_holds_every_row_in_row_groups() {
        let events: Vec<Event> = (0..5)
            .map(|i| ct_event(&format!("m{i}"), 1_635_551_409_000_000 + i))
            .collect();
        let refs: Vec<&Event> = events.iter().collect();
        let bytes = encode_raw_parquet(&refs, 2, "mem").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mem.parquet");
        std::fs::write(&path, &bytes).unwrap();
        let reader = SerializedFileReader::new(File::open(&path).unwrap()).unwrap();
        assert_eq!(reader.metadata().file_metadata().num_rows(), 5);
        assert_eq!(reader.metadata().num_row_groups(), 3);
        let name = raw_file_name(&Position {
            stream: "s".into(),
            shard_id: "shardId-000000000001".into(),
            sequence_number: "4960".into(),
            sub_sequence_number: None,
        });
        assert!(name.starts_with("shardId-000000000001-4960-"), "{name}");
        assert_eq!(
            name.len(),
            "shardId-000000000001-4960-".len() + 32 + ".parquet".len()
        );
    }

    #[test]
    fn schema_column_names_are_lower_snake_case() {
        for f in raw_schema().fields() {
            assert!(
                f.name()
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{}",
                f.name()
            );
        }
        let spec = table_spec("raw", RAW_SCHEMA_VERSION, &raw_schema());
        assert_eq!(spec.columns.len(), 41);
        assert!(spec.columns.iter().all(|c| c.glue_type != "unsupported"));
    }

    #[test]
    fn config_validation_names_the_field() {
        let bad = ArchiveConfig {
            rows_per_row_group: 0,
            ..ArchiveConfig::default()
        };
        assert_eq!(
            bad.validate().unwrap_err().to_string(),
            "archive.rows_per_row_group: must be between 1 and 1048576"
        );
        assert!(ArchiveConfig::default().validate().is_ok());
    }

    fn walk(p: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        if let Ok(rd) = std::fs::read_dir(p) {
            for e in rd.flatten() {
                let path = e.path();
                if path.is_dir() {
                    out.extend(walk(&path));
                } else {
                    out.push(path);
                }
            }
        }
        out
    }
}
