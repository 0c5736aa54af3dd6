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
use aiops_core::{Event, EventBody, Finding, FindingKind, Source};
use arrow_array::builder::{
    BooleanBuilder, Float64Builder, Int32Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow_array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, TimestampMicrosecondArray,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
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
    let mut b = RawBatchBuilder::with_capacity(events.len());
    for e in events {
        b.push(e);
    }
    b.finish()
}

/// Builds a record batch of the `raw` schema row by row, copying each event's fields straight
/// into the Arrow column builders (no copy of the event is kept), so an archive can buffer a
/// row group without holding the events.
pub struct RawBatchBuilder {
    rows: usize,
    version: Int32Builder,
    event_id: StringBuilder,
    event_time: TimestampMicrosecondBuilder,
    ingest_time: TimestampMicrosecondBuilder,
    /// account, region, stream, shard_id, sequence_number.
    strings: [StringBuilder; 5],
    sub_seq: Int64Builder,
    /// event_source .. error_message.
    ct: [StringBuilder; 13],
    read_only: BooleanBuilder,
    /// resources, request_parameters, response_elements, recipient_account_id.
    ct2: [StringBuilder; 4],
    /// log_group, log_stream, message, level.
    logs: [StringBuilder; 4],
    /// namespace, metric_name, dimensions.
    met: [StringBuilder; 3],
    /// value_max, value_min, value_sum, value_count.
    vals: [Float64Builder; 4],
    /// unit, metric_stream_name.
    met2: [StringBuilder; 2],
}

impl RawBatchBuilder {
    /// An empty builder with room for `rows` rows.
    pub fn with_capacity(rows: usize) -> RawBatchBuilder {
        let sb = || StringBuilder::with_capacity(rows, rows * 16);
        RawBatchBuilder {
            rows: 0,
            version: Int32Builder::with_capacity(rows),
            event_id: StringBuilder::with_capacity(rows, rows * 36),
            event_time: TimestampMicrosecondBuilder::with_capacity(rows).with_timezone("UTC"),
            ingest_time: TimestampMicrosecondBuilder::with_capacity(rows).with_timezone("UTC"),
            strings: std::array::from_fn(|_| sb()),
            sub_seq: Int64Builder::with_capacity(rows),
            ct: std::array::from_fn(|_| sb()),
            read_only: BooleanBuilder::with_capacity(rows),
            ct2: std::array::from_fn(|_| sb()),
            logs: std::array::from_fn(|_| sb()),
            met: std::array::from_fn(|_| sb()),
            vals: std::array::from_fn(|_| Float64Builder::with_capacity(rows)),
            met2: std::array::from_fn(|_| sb()),
        }
    }

    /// Rows pushed since the last [`RawBatchBuilder::finish`].
    pub fn len(&self) -> usize {
        self.rows
    }

    /// Whether no row is pending.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Appends one event as a row.
    pub fn push(&mut self, e: &Event) {
        self.rows += 1;
        self.version.append_value(RAW_SCHEMA_VERSION);
        self.event_id.append_value(&e.event_id);
        self.event_time.append_value(e.event_time);
        self.ingest_time.append_value(e.ingest_time);
        let [account, region, stream, shard, seq] = &mut self.strings;
        account.append_option(e.account.as_deref());
        region.append_option(e.region.as_deref());
        stream.append_value(&e.position.stream);
        shard.append_value(&e.position.shard_id);
        seq.append_value(&e.position.sequence_number);
        self.sub_seq.append_option(
            e.position
                .sub_sequence_number
                .map(|v| i64::try_from(v).unwrap_or(i64::MAX)),
        );
        match &e.body {
            EventBody::Cloudtrail(c) => {
                let values = [
                    Some(c.event_source.as_str()),
                    Some(c.event_name.as_str()),
                    c.event_type.as_deref(),
                    c.principal.principal_type.as_deref(),
                    c.principal.arn.as_deref(),
                    c.principal.account_id.as_deref(),
                    c.principal.session_issuer_arn.as_deref(),
                    c.principal.invoked_by.as_deref(),
                    c.principal.user_name.as_deref(),
                    c.source_ip.as_deref(),
                    c.user_agent.as_deref(),
                    c.error_code.as_deref(),
                    c.error_message.as_deref(),
                ];
                for (b, v) in self.ct.iter_mut().zip(values) {
                    b.append_option(v);
                }
                self.read_only.append_option(c.read_only);
                let [resources, request, response, recipient] = &mut self.ct2;
                if c.resources.is_empty() {
                    resources.append_null();
                } else {
                    resources.append_value(
                        serde_json::to_string(&c.resources).unwrap_or_else(|_| "[]".to_string()),
                    );
                }
                request.append_option(c.request_parameters.as_deref());
                response.append_option(c.response_elements.as_deref());
                recipient.append_option(c.recipient_account_id.as_deref());
            }
            _ => {
                for b in self.ct.iter_mut() {
                    b.append_null();
                }
                self.read_only.append_null();
                for b in self.ct2.iter_mut() {
                    b.append_null();
                }
            }
        }
        match &e.body {
            EventBody::Logs(l) => {
                let [group, stream, message, level] = &mut self.logs;
                group.append_value(&l.log_group);
                stream.append_value(&l.log_stream);
                message.append_value(&l.message);
                level.append_option(l.level.map(|v| v.as_str()));
            }
            _ => {
                for b in self.logs.iter_mut() {
                    b.append_null();
                }
            }
        }
        match &e.body {
            EventBody::Metrics(m) => {
                let [namespace, metric, dimensions] = &mut self.met;
                namespace.append_value(&m.namespace);
                metric.append_value(&m.metric);
                dimensions.append_value(
                    serde_json::to_string(&m.dimensions).unwrap_or_else(|_| "{}".to_string()),
                );
                let [max, min, sum, count] = &mut self.vals;
                max.append_value(m.value.max);
                min.append_value(m.value.min);
                sum.append_value(m.value.sum);
                count.append_value(m.value.count);
                let [unit, stream_name] = &mut self.met2;
                unit.append_option(m.unit.as_deref());
                stream_name.append_option(m.metric_stream_name.as_deref());
            }
            _ => {
                for b in self.met.iter_mut() {
                    b.append_null();
                }
                for b in self.vals.iter_mut() {
                    b.append_null();
                }
                for b in self.met2.iter_mut() {
                    b.append_null();
                }
            }
        }
    }

    /// The rows pushed so far as a record batch; the builder is empty afterwards.
    ///
    /// # Errors
    /// [`ArchiveError::Arrow`] only if the builders disagree with the schema (a bug).
    pub fn finish(&mut self) -> Result<RecordBatch, ArchiveError> {
        self.rows = 0;
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(41);
        columns.push(Arc::new(self.version.finish()));
        columns.push(Arc::new(self.event_id.finish()));
        columns.push(Arc::new(self.event_time.finish()));
        columns.push(Arc::new(self.ingest_time.finish()));
        for b in self.strings.iter_mut() {
            columns.push(Arc::new(b.finish()));
        }
        columns.push(Arc::new(self.sub_seq.finish()));
        for b in self.ct.iter_mut() {
            columns.push(Arc::new(b.finish()));
        }
        columns.push(Arc::new(self.read_only.finish()));
        for b in self
            .ct2
            .iter_mut()
            .chain(self.logs.iter_mut())
            .chain(self.met.iter_mut())
        {
            columns.push(Arc::new(b.finish()));
        }
        for b in self.vals.iter_mut() {
            columns.push(Arc::new(b.finish()));
        }
        for b in self.met2.iter_mut() {
            columns.push(Arc::new(b.finish()));
        }
        Ok(RecordBatch::try_new(raw_schema(), columns)?)
    }
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
/// queueing memory.
const WRITER_QUEUE: usize = 4;

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
    /// when `rows_per_row_group` are pending. The writer rolls files over by rows and size.
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

// ---------------------------------------------------------------------------------------------
// The `findings` and `incidents` tables, and reading the tables back.
// ---------------------------------------------------------------------------------------------

/// The source partition (`source=`) of a finding: `cloudtrail` for change rules and for series
/// fed by CloudTrail (`api_call:`, `api_error:`, `api_error_principal:`, `event_source:`),
/// `logs` for log series (`log_template:`, `log_level:`), `metrics` for `metric:` series; a
/// finding without a series key is a CloudTrail one. The partition projection of the Glue
/// tables lists exactly these three values.
pub fn finding_source(f: &Finding) -> Source {
    if f.kind == FindingKind::ChangeRule {
        return Source::Cloudtrail;
    }
    match f.evidence.series_key.as_deref() {
        Some(k) if k.starts_with("log_template:") || k.starts_with("log_level:") => Source::Logs,
        Some(k) if k.starts_with("metric:") => Source::Metrics,
        _ => Source::Cloudtrail,
    }
}

/// One row of the `incidents` table ([`incidents_schema`]): a snapshot of an incident as the
/// act stage left it. Plain data, so the archive does not depend on the act crate; the act
/// stage's `Incident` converts into it. Timestamps are microseconds since the Unix epoch, UTC.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct IncidentRow {
    /// `inc-<finding id>`.
    pub incident_id: String,
    /// Correlation id of builds and notifications.
    pub correlation_id: Option<String>,
    /// Cooldown key of the resource.
    pub resource_key: Option<String>,
    /// Resource type (`None` when the finding names no resource).
    pub resource_type: Option<String>,
    /// Resource id.
    pub resource_id: Option<String>,
    /// Account of the resource.
    pub account: Option<String>,
    /// Region of the resource.
    pub region: Option<String>,
    /// The finding that opened the incident.
    pub finding_id: Option<String>,
    /// The finding's detector (rule name or statistical detector).
    pub detector: Option<String>,
    /// The finding's kind (`change_rule`, `rate_anomaly`, `value_anomaly`, `novelty`).
    pub kind: Option<String>,
    /// Workflow state of this snapshot (`RESOLVED`, `MANUAL_REVIEW`, ...).
    pub workflow_state: Option<String>,
    /// Classification (`FAILURE`, `TAMPERING`, `ANOMALY`, `NORMAL`).
    pub classification: Option<String>,
    /// Confidence in [0, 1].
    pub confidence: Option<f64>,
    /// Severity 1..=10.
    pub severity: Option<i32>,
    /// Reasoning.
    pub reasoning: Option<String>,
    /// Chosen action.
    pub action: Option<String>,
    /// Who decided (`statistical`, `bedrock:<model>`).
    pub explainer: Option<String>,
    /// CodeBuild project of the recovery.
    pub codebuild_project: Option<String>,
    /// Terraform target of the recovery.
    pub terraform_target: Option<String>,
    /// Build ids, as a JSON array of strings.
    pub build_ids: Option<String>,
    /// Outcome in words.
    pub outcome: Option<String>,
    /// Timeline, as a JSON array of `{"state": "...", "at": "<RFC 3339 UTC>"}`.
    pub timeline: Option<String>,
    /// Event time of the finding, microseconds since the Unix epoch, UTC.
    pub event_time: Option<i64>,
    /// Created, microseconds since the Unix epoch, UTC.
    pub created_at: Option<i64>,
    /// Last changed, microseconds since the Unix epoch, UTC.
    pub updated_at: Option<i64>,
    /// Source partition of the incident (that of its finding, see [`finding_source`]); not a
    /// column: it is the `source=` partition value.
    pub source: Option<Source>,
}

/// A row type of one history table: its name, schema, partition and encoding. Implemented by
/// [`Finding`] (`findings`) and [`IncidentRow`] (`incidents`); every table uses the DESIGN §7
/// layout `<table>/source=<source>/dt=YYYY-MM-DD/hour=HH/`.
pub trait TableRow {
    /// Table name: the first path component under the history root.
    const TABLE: &'static str;
    /// The table's fixed Arrow schema.
    fn schema() -> SchemaRef;
    /// The partition the row belongs to (its source and the UTC hour of its event time).
    fn partition(&self) -> PartitionKey;
    /// Encodes rows as one record batch of [`TableRow::schema`], in order.
    ///
    /// # Errors
    /// [`ArchiveError::Arrow`] only if the builders disagree with the schema (a bug).
    fn encode(rows: &[&Self]) -> Result<RecordBatch, ArchiveError>
    where
        Self: Sized;
}

fn json_list(items: &[String]) -> Option<String> {
    Some(serde_json::to_string(items).unwrap_or_else(|_| "[]".to_string()))
}

impl TableRow for Finding {
    const TABLE: &'static str = "findings";

    fn schema() -> SchemaRef {
        findings_schema()
    }

    fn partition(&self) -> PartitionKey {
        PartitionKey::of(finding_source(self), self.event_time)
    }

    fn encode(rows: &[&Finding]) -> Result<RecordBatch, ArchiveError> {
        encode_findings_batch(rows)
    }
}

/// Encodes findings as one record batch of the `findings` schema ([`findings_schema`]), in
/// order: lists (`event_ids`, `samples`) as JSON arrays of strings, the evidence window as
/// `window_start` / `window_end`. Every column keeps its declared type whatever the values
/// (all null, all integral), so files of one table never disagree on a column's type.
///
/// # Errors
/// [`ArchiveError::Arrow`] only if the builders disagree with the schema (a bug).
pub fn encode_findings_batch(rows: &[&Finding]) -> Result<RecordBatch, ArchiveError> {
    let n = rows.len();
    let mut version = Int32Builder::with_capacity(n);
    let mut id = StringBuilder::new();
    let mut kind = StringBuilder::new();
    let mut detector = StringBuilder::new();
    let mut event_time = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut detected_at = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut res: Vec<StringBuilder> = (0..4).map(|_| StringBuilder::new()).collect();
    let mut score = Float64Builder::with_capacity(n);
    let mut summary = StringBuilder::new();
    let mut default_action = StringBuilder::new();
    let mut recoverable = BooleanBuilder::with_capacity(n);
    let mut series_key = StringBuilder::new();
    let mut w_start = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut w_end = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut observed = Float64Builder::with_capacity(n);
    let mut expected = Float64Builder::with_capacity(n);
    let mut tail: Vec<StringBuilder> = (0..7).map(|_| StringBuilder::new()).collect();
    for f in rows {
        version.append_value(FINDINGS_SCHEMA_VERSION);
        id.append_value(&f.finding_id);
        kind.append_value(f.kind.as_str());
        detector.append_value(&f.detector);
        event_time.append_value(f.event_time);
        detected_at.append_value(f.detected_at);
        let r = f.resource.as_ref();
        res[0].append_option(r.map(|r| r.resource_type.as_str()));
        res[1].append_option(r.map(|r| r.resource_id.as_str()));
        res[2].append_option(r.and_then(|r| r.account.as_deref()));
        res[3].append_option(r.and_then(|r| r.region.as_deref()));
        score.append_value(f.score);
        summary.append_value(&f.summary);
        default_action.append_option(f.default_action.as_deref());
        recoverable.append_value(f.recoverable);
        let e = &f.evidence;
        series_key.append_option(e.series_key.as_deref());
        w_start.append_option(e.window.map(|w| w.0));
        w_end.append_option(e.window.map(|w| w.1));
        observed.append_option(e.observed);
        expected.append_option(e.expected);
        tail[0].append_option(e.template.as_deref());
        tail[1].append_option(json_list(&e.event_ids));
        tail[2].append_option(e.principal.as_deref());
        tail[3].append_option(e.event_source.as_deref());
        tail[4].append_option(e.event_name.as_deref());
        tail[5].append_option(e.source_ip.as_deref());
        tail[6].append_option(json_list(&e.samples));
    }
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(version.finish()),
        Arc::new(id.finish()),
        Arc::new(kind.finish()),
        Arc::new(detector.finish()),
        Arc::new(event_time.finish()),
        Arc::new(detected_at.finish()),
    ];
    for b in res.iter_mut() {
        columns.push(Arc::new(b.finish()));
    }
    columns.push(Arc::new(score.finish()));
    columns.push(Arc::new(summary.finish()));
    columns.push(Arc::new(default_action.finish()));
    columns.push(Arc::new(recoverable.finish()));
    columns.push(Arc::new(series_key.finish()));
    columns.push(Arc::new(w_start.finish()));
    columns.push(Arc::new(w_end.finish()));
    columns.push(Arc::new(observed.finish()));
    columns.push(Arc::new(expected.finish()));
    for b in tail.iter_mut() {
        columns.push(Arc::new(b.finish()));
    }
    Ok(RecordBatch::try_new(findings_schema(), columns)?)
}

impl TableRow for IncidentRow {
    const TABLE: &'static str = "incidents";

    fn schema() -> SchemaRef {
        incidents_schema()
    }

    fn partition(&self) -> PartitionKey {
        PartitionKey::of(
            self.source.unwrap_or(Source::Cloudtrail),
            self.event_time.or(self.created_at).unwrap_or(0),
        )
    }

    fn encode(rows: &[&IncidentRow]) -> Result<RecordBatch, ArchiveError> {
        encode_incidents_batch(rows)
    }
}

/// Encodes incident snapshots as one record batch of the `incidents` schema
/// ([`incidents_schema`]), in order. Every column keeps its declared type whatever the values.
///
/// # Errors
/// [`ArchiveError::Arrow`] only if the builders disagree with the schema (a bug).
pub fn encode_incidents_batch(rows: &[&IncidentRow]) -> Result<RecordBatch, ArchiveError> {
    let n = rows.len();
    let mut version = Int32Builder::with_capacity(n);
    let mut id = StringBuilder::new();
    let mut head: Vec<StringBuilder> = (0..11).map(|_| StringBuilder::new()).collect();
    let mut confidence = Float64Builder::with_capacity(n);
    let mut severity = Int32Builder::with_capacity(n);
    let mut mid: Vec<StringBuilder> = (0..8).map(|_| StringBuilder::new()).collect();
    let mut times: Vec<TimestampMicrosecondBuilder> = (0..3)
        .map(|_| TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC"))
        .collect();
    for r in rows {
        version.append_value(INCIDENTS_SCHEMA_VERSION);
        id.append_value(&r.incident_id);
        for (b, v) in head.iter_mut().zip([
            &r.correlation_id,
            &r.resource_key,
            &r.resource_type,
            &r.resource_id,
            &r.account,
            &r.region,
            &r.finding_id,
            &r.detector,
            &r.kind,
            &r.workflow_state,
            &r.classification,
        ]) {
            b.append_option(v.as_deref());
        }
        confidence.append_option(r.confidence);
        severity.append_option(r.severity);
        for (b, v) in mid.iter_mut().zip([
            &r.reasoning,
            &r.action,
            &r.explainer,
            &r.codebuild_project,
            &r.terraform_target,
            &r.build_ids,
            &r.outcome,
            &r.timeline,
        ]) {
            b.append_option(v.as_deref());
        }
        for (b, v) in times
            .iter_mut()
            .zip([r.event_time, r.created_at, r.updated_at])
        {
            b.append_option(v);
        }
    }
    let mut columns: Vec<ArrayRef> = vec![Arc::new(version.finish()), Arc::new(id.finish())];
    for b in head.iter_mut() {
        columns.push(Arc::new(b.finish()));
    }
    columns.push(Arc::new(confidence.finish()));
    columns.push(Arc::new(severity.finish()));
    for b in mid.iter_mut() {
        columns.push(Arc::new(b.finish()));
    }
    for b in times.iter_mut() {
        columns.push(Arc::new(b.finish()));
    }
    Ok(RecordBatch::try_new(incidents_schema(), columns)?)
}

/// Encodes `rows`, in order, as one complete Parquet file of table `R` held in memory (same
/// writer properties as the raw table: Snappy, row groups of at most `rows_per_row_group`
/// rows), for object stores such as S3. `name` only labels errors.
///
/// # Errors
/// [`ArchiveError::Parquet`] when encoding fails; [`ArchiveError::Arrow`] on a schema bug.
pub fn encode_table_parquet<R: TableRow>(
    rows: &[&R],
    rows_per_row_group: usize,
    name: &str,
) -> Result<Vec<u8>, ArchiveError> {
    let perr = |source| ArchiveError::Parquet {
        path: PathBuf::from(name),
        source,
    };
    let mut writer =
        ArrowWriter::try_new(Vec::new(), R::schema(), Some(writer_properties())).map_err(perr)?;
    for chunk in rows.chunks(rows_per_row_group.max(1)) {
        let batch = R::encode(chunk)?;
        writer
            .write(&batch)
            .and_then(|_| writer.flush())
            .map_err(perr)?;
    }
    writer.into_inner().map_err(perr)
}

/// Writes one history table of rows `R` (`findings`, `incidents`) under a local directory in
/// the DESIGN §7 layout: rows are buffered per partition and written, one new file per
/// partition, at [`LocalTableWriter::flush`] (or when a partition holds `max_rows_per_file`
/// rows), under a hidden temporary name renamed into place when complete. Not thread-safe.
pub struct LocalTableWriter<R> {
    table_dir: PathBuf,
    writer_name: String,
    config: ArchiveConfig,
    pending: BTreeMap<PartitionKey, Vec<R>>,
    rows: usize,
    opened: Option<std::time::Instant>,
    files: u64,
    rows_written: u64,
}

impl<R: TableRow> LocalTableWriter<R> {
    /// A writer of table `R` under `<root>/<R::TABLE>/`; `writer_name` starts its file names
    /// (`<writer_name>-<file number>-<uuid>.parquet`, reduced to `[A-Za-z0-9_-]`).
    pub fn new(root: &Path, writer_name: &str, config: ArchiveConfig) -> Self {
        LocalTableWriter {
            table_dir: root.join(R::TABLE),
            writer_name: writer_name.to_string(),
            config,
            pending: BTreeMap::new(),
            rows: 0,
            opened: None,
            files: 0,
            rows_written: 0,
        }
    }

    /// Rows written to finished files so far.
    pub fn rows_written(&self) -> u64 {
        self.rows_written
    }

    /// Buffers one row; writes its partition at once when it holds `max_rows_per_file` rows.
    ///
    /// # Errors
    /// [`ArchiveError`] when that write fails.
    pub fn append(&mut self, row: R) -> Result<(), ArchiveError> {
        self.opened.get_or_insert_with(std::time::Instant::now);
        let key = row.partition();
        let part = self.pending.entry(key.clone()).or_default();
        part.push(row);
        self.rows += 1;
        if part.len() >= self.config.max_rows_per_file {
            self.write_partition(&key)?;
        }
        Ok(())
    }

    /// Whether buffered rows are older than `max_file_age_secs` (call [`Self::flush`] then).
    pub fn flush_due(&self) -> bool {
        self.rows > 0
            && self
                .opened
                .is_some_and(|t| t.elapsed().as_secs() >= self.config.max_file_age_secs)
    }

    fn write_partition(
        &mut self,
        key: &PartitionKey,
    ) -> Result<Option<ArchivedFile>, ArchiveError> {
        let Some(rows) = self.pending.remove(key) else {
            return Ok(None);
        };
        if rows.is_empty() {
            return Ok(None);
        }
        let dir = self.table_dir.join(key.relative_dir());
        std::fs::create_dir_all(&dir).map_err(|source| ArchiveError::Io {
            path: dir.clone(),
            source,
        })?;
        self.files += 1;
        let name = raw_file_name(&aiops_core::Position {
            stream: String::new(),
            shard_id: self.writer_name.clone(),
            sequence_number: self.files.to_string(),
            sub_sequence_number: None,
        });
        let tmp_path = dir.join(format!(".{name}.inprogress"));
        let final_path = dir.join(name);
        let refs: Vec<&R> = rows.iter().collect();
        let bytes = encode_table_parquet(
            &refs,
            self.config.rows_per_row_group,
            &final_path.to_string_lossy(),
        )?;
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| ArchiveError::Io { path, source }
        };
        {
            let mut file = File::create(&tmp_path).map_err(io(&tmp_path))?;
            std::io::Write::write_all(&mut file, &bytes).map_err(io(&tmp_path))?;
            file.sync_all().map_err(io(&tmp_path))?;
        }
        std::fs::rename(&tmp_path, &final_path).map_err(io(&final_path))?;
        self.rows -= rows.len();
        self.rows_written += rows.len() as u64;
        Ok(Some(ArchivedFile {
            path: final_path,
            rows: rows.len() as u64,
        }))
    }

    /// Writes every buffered partition as one new file each; returns the files written.
    ///
    /// # Errors
    /// [`ArchiveError`] when a file cannot be written; partitions written before stay written.
    pub fn flush(&mut self) -> Result<Vec<ArchivedFile>, ArchiveError> {
        let keys: Vec<PartitionKey> = self.pending.keys().cloned().collect();
        let mut out = Vec::new();
        for k in keys {
            if let Some(f) = self.write_partition(&k)? {
                out.push(f);
            }
        }
        self.opened = None;
        Ok(out)
    }
}

fn column<'a, T: 'static>(
    batch: &'a RecordBatch,
    name: &str,
) -> Result<Option<&'a T>, ArchiveError> {
    match batch.column_by_name(name) {
        None => Ok(None),
        Some(c) => c.as_any().downcast_ref::<T>().map(Some).ok_or_else(|| {
            ArchiveError::Decode(format!("column {name} has type {}", c.data_type()))
        }),
    }
}

/// A column of string values (`Utf8`), read by name; a missing column reads as all null (an
/// older file written before an additive schema change).
struct Strs<'a>(Option<&'a arrow_array::StringArray>);

impl<'a> Strs<'a> {
    fn of(batch: &'a RecordBatch, name: &str) -> Result<Self, ArchiveError> {
        Ok(Strs(column(batch, name)?))
    }
    fn get(&self, i: usize) -> Option<String> {
        self.0
            .filter(|a| i < a.len() && a.is_valid(i))
            .map(|a| a.value(i).to_string())
    }
}

fn ts_at(a: Option<&TimestampMicrosecondArray>, i: usize) -> Option<i64> {
    a.filter(|a| i < a.len() && a.is_valid(i))
        .map(|a| a.value(i))
}

fn f64_at(a: Option<&Float64Array>, i: usize) -> Option<f64> {
    a.filter(|a| i < a.len() && a.is_valid(i))
        .map(|a| a.value(i))
}

/// Decodes a record batch of the `raw` table (as read back from any file of it) into events,
/// in row order: the inverse of [`encode_raw_batch`]. Columns are looked up by name; a column
/// missing from an older file reads as null.
///
/// # Errors
/// [`ArchiveError::Decode`] when a column has an unexpected type, a required value
/// (`event_id`, `event_time`) is null, or a row holds no source-specific fields.
pub fn decode_raw_batch(batch: &RecordBatch) -> Result<Vec<Event>, ArchiveError> {
    let s = |n: &str| Strs::of(batch, n);
    let event_id = s("event_id")?;
    let event_time: Option<&TimestampMicrosecondArray> = column(batch, "event_time")?;
    let ingest_time: Option<&TimestampMicrosecondArray> = column(batch, "ingest_time")?;
    let (account, region, stream, shard, seq) = (
        s("account")?,
        s("region")?,
        s("stream")?,
        s("shard_id")?,
        s("sequence_number")?,
    );
    let sub_seq: Option<&Int64Array> = column(batch, "sub_sequence_number")?;
    let ct: Vec<Strs> = [
        "event_source",
        "event_name",
        "event_type",
        "principal_type",
        "principal_arn",
        "principal_account",
        "session_issuer_arn",
        "invoked_by",
        "user_name",
        "source_ip",
        "user_agent",
        "error_code",
        "error_message",
        "resources",
        "request_parameters",
        "response_elements",
        "recipient_account_id",
    ]
    .iter()
    .map(|n| s(n))
    .collect::<Result<_, _>>()?;
    let read_only: Option<&BooleanArray> = column(batch, "read_only")?;
    let logs: Vec<Strs> = ["log_group", "log_stream", "message", "level"]
        .iter()
        .map(|n| s(n))
        .collect::<Result<_, _>>()?;
    let met: Vec<Strs> = [
        "namespace",
        "metric_name",
        "dimensions",
        "unit",
        "metric_stream_name",
    ]
    .iter()
    .map(|n| s(n))
    .collect::<Result<_, _>>()?;
    let vals: Vec<Option<&Float64Array>> = ["value_max", "value_min", "value_sum", "value_count"]
        .iter()
        .map(|n| column(batch, n))
        .collect::<Result<_, _>>()?;
    let get = |v: &[Strs], k: usize, i: usize| v.get(k).and_then(|c| c.get(i));
    let mut out = Vec::with_capacity(batch.num_rows());
    for i in 0..batch.num_rows() {
        let id = event_id
            .get(i)
            .ok_or_else(|| ArchiveError::Decode(format!("row {i}: event_id is null")))?;
        let t = ts_at(event_time, i)
            .ok_or_else(|| ArchiveError::Decode(format!("row {i}: event_time is null")))?;
        let body = if let (Some(event_source), Some(event_name)) = (get(&ct, 0, i), get(&ct, 1, i))
        {
            let resources = match get(&ct, 13, i) {
                Some(text) => serde_json::from_str(&text).map_err(|e| {
                    ArchiveError::Decode(format!("row {i}: resources is not JSON: {e}"))
                })?,
                None => Vec::new(),
            };
            EventBody::Cloudtrail(Box::new(aiops_core::CloudTrailFields {
                event_source,
                event_name,
                event_type: get(&ct, 2, i),
                principal: aiops_core::Principal {
                    principal_type: get(&ct, 3, i),
                    arn: get(&ct, 4, i),
                    account_id: get(&ct, 5, i),
                    session_issuer_arn: get(&ct, 6, i),
                    invoked_by: get(&ct, 7, i),
                    user_name: get(&ct, 8, i),
                },
                source_ip: get(&ct, 9, i),
                user_agent: get(&ct, 10, i),
                error_code: get(&ct, 11, i),
                error_message: get(&ct, 12, i),
                read_only: read_only.filter(|a| a.is_valid(i)).map(|a| a.value(i)),
                resources,
                request_parameters: get(&ct, 14, i),
                response_elements: get(&ct, 15, i),
                recipient_account_id: get(&ct, 16, i),
                event_category: None,
                insight: None,
            }))
        } else if let Some(log_group) = get(&logs, 0, i) {
            EventBody::Logs(aiops_core::LogFields {
                log_group,
                log_stream: get(&logs, 1, i).unwrap_or_default(),
                message: get(&logs, 2, i).unwrap_or_default(),
                level: get(&logs, 3, i).and_then(|l| parse_level(&l)),
            })
        } else if let (Some(namespace), Some(metric)) = (get(&met, 0, i), get(&met, 1, i)) {
            let dimensions = match get(&met, 2, i) {
                Some(text) => serde_json::from_str(&text).map_err(|e| {
                    ArchiveError::Decode(format!("row {i}: dimensions is not JSON: {e}"))
                })?,
                None => std::collections::BTreeMap::new(),
            };
            let v = |k: usize| f64_at(vals.get(k).copied().flatten(), i).unwrap_or(f64::NAN);
            EventBody::Metrics(aiops_core::MetricFields {
                namespace,
                metric,
                dimensions,
                value: aiops_core::MetricValue {
                    max: v(0),
                    min: v(1),
                    sum: v(2),
                    count: v(3),
                },
                unit: get(&met, 3, i),
                metric_stream_name: get(&met, 4, i),
            })
        } else {
            return Err(ArchiveError::Decode(format!(
                "row {i} (event {id}): no CloudTrail, log or metric fields"
            )));
        };
        out.push(Event {
            event_id: id,
            event_time: t,
            ingest_time: ts_at(ingest_time, i).unwrap_or(t),
            decode_warnings: Vec::new(),
            account: account.get(i),
            region: region.get(i),
            position: aiops_core::Position {
                stream: stream.get(i).unwrap_or_default(),
                shard_id: shard.get(i).unwrap_or_default(),
                sequence_number: seq.get(i).unwrap_or_default(),
                sub_sequence_number: sub_seq
                    .filter(|a| a.is_valid(i))
                    .and_then(|a| u64::try_from(a.value(i)).ok()),
            },
            body,
        });
    }
    Ok(out)
}

fn parse_level(s: &str) -> Option<aiops_core::LogLevel> {
    use aiops_core::LogLevel;
    [
        LogLevel::Debug,
        LogLevel::Info,
        LogLevel::Warn,
        LogLevel::Error,
        LogLevel::Fatal,
    ]
    .into_iter()
    .find(|l| l.as_str() == s)
}

fn parse_kind(s: &str) -> Option<FindingKind> {
    [
        FindingKind::ChangeRule,
        FindingKind::RateAnomaly,
        FindingKind::ValueAnomaly,
        FindingKind::Novelty,
    ]
    .into_iter()
    .find(|k| k.as_str() == s)
}

/// Decodes a record batch of the `findings` table into findings, in row order: the inverse of
/// [`encode_findings_batch`] (the resource is present when `resource_type` is set).
///
/// # Errors
/// [`ArchiveError::Decode`] when a column has an unexpected type, a required value is null,
/// `kind` is unknown, or a JSON list column is not a JSON array of strings.
pub fn decode_findings_batch(batch: &RecordBatch) -> Result<Vec<Finding>, ArchiveError> {
    let s = |n: &str| Strs::of(batch, n);
    let (id, kind, detector) = (s("finding_id")?, s("kind")?, s("detector")?);
    let event_time: Option<&TimestampMicrosecondArray> = column(batch, "event_time")?;
    let detected_at: Option<&TimestampMicrosecondArray> = column(batch, "detected_at")?;
    let (rtype, rid, account, region) = (
        s("resource_type")?,
        s("resource_id")?,
        s("account")?,
        s("region")?,
    );
    let score: Option<&Float64Array> = column(batch, "score")?;
    let (summary, action) = (s("summary")?, s("default_action")?);
    let recoverable: Option<&BooleanArray> = column(batch, "recoverable")?;
    let series_key = s("series_key")?;
    let w_start: Option<&TimestampMicrosecondArray> = column(batch, "window_start")?;
    let w_end: Option<&TimestampMicrosecondArray> = column(batch, "window_end")?;
    let observed: Option<&Float64Array> = column(batch, "observed")?;
    let expected: Option<&Float64Array> = column(batch, "expected")?;
    let (template, event_ids, principal) = (s("template")?, s("event_ids")?, s("principal")?);
    let (event_source, event_name, source_ip, samples) = (
        s("event_source")?,
        s("event_name")?,
        s("source_ip")?,
        s("samples")?,
    );
    let list = |c: &Strs, i: usize| -> Result<Vec<String>, ArchiveError> {
        match c.get(i) {
            Some(t) => serde_json::from_str(&t)
                .map_err(|e| ArchiveError::Decode(format!("row {i}: not a JSON list: {e}"))),
            None => Ok(Vec::new()),
        }
    };
    let mut out = Vec::with_capacity(batch.num_rows());
    for i in 0..batch.num_rows() {
        let need = |v: Option<String>, what: &str| {
            v.ok_or_else(|| ArchiveError::Decode(format!("row {i}: {what} is null")))
        };
        let kind_text = need(kind.get(i), "kind")?;
        let resource = rtype.get(i).map(|t| aiops_core::ResourceKey {
            resource_type: t,
            resource_id: rid.get(i).unwrap_or_default(),
            account: account.get(i),
            region: region.get(i),
        });
        out.push(Finding {
            finding_id: need(id.get(i), "finding_id")?,
            kind: parse_kind(&kind_text)
                .ok_or_else(|| ArchiveError::Decode(format!("row {i}: kind {kind_text:?}")))?,
            detector: need(detector.get(i), "detector")?,
            event_time: ts_at(event_time, i)
                .ok_or_else(|| ArchiveError::Decode(format!("row {i}: event_time is null")))?,
            detected_at: ts_at(detected_at, i).unwrap_or(0),
            resource,
            score: f64_at(score, i).unwrap_or(0.0),
            summary: summary.get(i).unwrap_or_default(),
            default_action: action.get(i),
            recoverable: recoverable
                .filter(|a| a.is_valid(i))
                .is_some_and(|a| a.value(i)),
            evidence: aiops_core::Evidence {
                event_ids: list(&event_ids, i)?,
                event_source: event_source.get(i),
                event_name: event_name.get(i),
                principal: principal.get(i),
                source_ip: source_ip.get(i),
                series_key: series_key.get(i),
                window: ts_at(w_start, i).zip(ts_at(w_end, i)),
                observed: f64_at(observed, i),
                expected: f64_at(expected, i),
                template: template.get(i),
                samples: list(&samples, i)?,
                top_contributors: Vec::new(),
                related: Vec::new(),
            },
            direction: None,
            priority: aiops_core::Priority::High,
        });
    }
    Ok(out)
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
            decode_warnings: Vec::new(),
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
            decode_warnings: Vec::new(),
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
    fn a_failed_writer_is_reported_with_the_path_and_stops_archiving() {
        let dir = tempfile::tempdir().unwrap();
        // `raw` is a file, so the partition directory cannot be created.
        std::fs::write(dir.path().join("raw"), b"not a directory").unwrap();
        let cfg = ArchiveConfig {
            rows_per_row_group: 1,
            ..ArchiveConfig::default()
        };
        let mut a = LocalArchive::new(dir.path(), cfg);
        a.append(&ct_event("a", 1_700_000_000_000_000)).unwrap();
        let err = a.flush().unwrap_err().to_string();
        assert!(err.starts_with("archive writer: archive I/O on "), "{err}");
        assert!(err.contains("source=cloudtrail"), "{err}");
        // Every later call reports the same failure.
        let again = a.append(&ct_event("b", 1_700_000_000_000_000));
        let again = again.and_then(|_| a.flush().map(|_| ()));
        assert_eq!(again.unwrap_err().to_string(), err);
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

    fn read_back(bytes: &[u8]) -> (Vec<RecordBatch>, parquet::file::metadata::ParquetMetaData) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.parquet");
        std::fs::write(&path, bytes).unwrap();
        let meta = SerializedFileReader::new(File::open(&path).unwrap())
            .unwrap()
            .metadata()
            .clone();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            File::open(&path).unwrap(),
        )
        .unwrap()
        .build()
        .unwrap();
        (reader.map(|b| b.unwrap()).collect(), meta)
    }

    /// Every timestamp column of the footer: INT64, TIMESTAMP(MICROS, isAdjustedToUTC=true).
    fn assert_utc_micros(meta: &parquet::file::metadata::ParquetMetaData, names: &[&str]) {
        let schema = meta.file_metadata().schema_descr();
        for name in names {
            let col = (0..schema.num_columns())
                .map(|i| schema.column(i))
                .find(|c| c.name() == *name)
                .unwrap();
            assert_eq!(col.physical_type(), parquet::basic::Type::INT64, "{name}");
            assert_eq!(
                col.logical_type_ref(),
                Some(&parquet::basic::LogicalType::Timestamp(
                    parquet::basic::TimestampType {
                        is_adjusted_to_u_t_c: true,
                        unit: parquet::basic::TimeUnit::MICROS,
                    }
                )),
                "{name}"
            );
        }
    }

    fn finding(
        id: &str,
        kind: FindingKind,
        series: Option<&str>,
        observed: Option<f64>,
    ) -> Finding {
        Finding {
            finding_id: id.into(),
            kind,
            detector: "log_level_rate".into(),
            event_time: 1_714_564_860_000_000,
            detected_at: 1_714_564_861_000_000,
            resource: None,
            score: 1.0,
            summary: "s".into(),
            default_action: None,
            recoverable: false,
            evidence: aiops_core::Evidence {
                series_key: series.map(str::to_string),
                window: observed.map(|_| (1_714_564_800_000_000, 1_714_564_860_000_000)),
                observed,
                expected: observed.map(|_| 2.0),
                event_ids: vec!["e1".into(), "e2".into()],
                ..Default::default()
            },
            direction: None,
            priority: aiops_core::Priority::High,
        }
    }

    #[test]
    fn findings_keep_declared_types_when_values_are_integral_or_null() {
        // All scores and counts integral, every optional column null in the second batch.
        let a = finding(
            "f1",
            FindingKind::RateAnomaly,
            Some("log_level:g:ERROR"),
            Some(60.0),
        );
        let b = finding("f2", FindingKind::ChangeRule, None, None);
        let all_null = encode_table_parquet(&[&b], 10, "n").unwrap();
        let integral = encode_table_parquet(&[&a], 10, "i").unwrap();
        let (batches_n, meta_n) = read_back(&all_null);
        let (batches_i, meta_i) = read_back(&integral);
        assert_eq!(batches_n[0].schema(), findings_schema());
        assert_eq!(batches_i[0].schema(), findings_schema());
        for meta in [&meta_n, &meta_i] {
            assert_utc_micros(
                meta,
                &["event_time", "detected_at", "window_start", "window_end"],
            );
            let schema = meta.file_metadata().schema_descr();
            let types: Vec<(String, parquet::basic::Type)> = (0..schema.num_columns())
                .map(|i| {
                    (
                        schema.column(i).name().to_string(),
                        schema.column(i).physical_type(),
                    )
                })
                .collect();
            assert!(types.contains(&("score".into(), parquet::basic::Type::DOUBLE)));
            assert!(types.contains(&("observed".into(), parquet::basic::Type::DOUBLE)));
            assert!(types.contains(&("schema_version".into(), parquet::basic::Type::INT32)));
        }
        let back = decode_findings_batch(&batches_i[0]).unwrap();
        assert_eq!(back, vec![a.clone()]);
        assert_eq!(
            decode_findings_batch(&batches_n[0]).unwrap(),
            vec![b.clone()]
        );
        assert_eq!(finding_source(&a), Source::Logs);
        assert_eq!(finding_source(&b), Source::Cloudtrail);
        let spec = table_spec("findings", FINDINGS_SCHEMA_VERSION, &findings_schema());
        assert!(spec.columns.iter().all(|c| {
            c.glue_type != "unsupported"
                && c.name
                    .chars()
                    .all(|ch| ch.is_ascii_lowercase() || ch == '_')
        }));
        // Nested JSON as strings.
        let ids = batches_i[0]
            .column_by_name("event_ids")
            .unwrap()
            .as_any()
            .downcast_ref::<arrow_array::StringArray>()
            .unwrap()
            .value(0)
            .to_string();
        assert_eq!(ids, r#"["e1","e2"]"#);
    }

    #[test]
    fn incidents_keep_declared_types_when_all_null() {
        let empty = IncidentRow {
            incident_id: "inc-1".into(),
            ..IncidentRow::default()
        };
        let full = IncidentRow {
            incident_id: "inc-2".into(),
            confidence: Some(1.0),
            severity: Some(9),
            workflow_state: Some("RESOLVED".into()),
            timeline: Some(r#"[{"state":"DETECTED","at":"2024-05-01T12:00:00.000000Z"}]"#.into()),
            event_time: Some(1_714_564_800_000_000),
            created_at: Some(1_714_564_801_000_000),
            updated_at: Some(1_714_564_802_000_000),
            source: Some(Source::Logs),
            ..IncidentRow::default()
        };
        for rows in [vec![&empty], vec![&full]] {
            let (batches, meta) = read_back(&encode_table_parquet(&rows, 10, "x").unwrap());
            assert_eq!(batches[0].schema(), incidents_schema());
            assert_utc_micros(&meta, &["event_time", "created_at", "updated_at"]);
            let schema = meta.file_metadata().schema_descr();
            let conf = (0..schema.num_columns())
                .map(|i| schema.column(i))
                .find(|c| c.name() == "confidence")
                .unwrap();
            assert_eq!(conf.physical_type(), parquet::basic::Type::DOUBLE);
            let sev = (0..schema.num_columns())
                .map(|i| schema.column(i))
                .find(|c| c.name() == "severity")
                .unwrap();
            assert_eq!(sev.physical_type(), parquet::basic::Type::INT32);
        }
        assert_eq!(
            full.partition().relative_dir(),
            PathBuf::from("source=logs/dt=2024-05-01/hour=12")
        );
    }

    #[test]
    fn local_table_writer_writes_partitioned_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut w: LocalTableWriter<Finding> =
            LocalTableWriter::new(dir.path(), "embedded", ArchiveConfig::default());
        w.append(finding(
            "f1",
            FindingKind::RateAnomaly,
            Some("metric:a:b:"),
            Some(1.5),
        ))
        .unwrap();
        w.append(finding("f2", FindingKind::ChangeRule, None, None))
            .unwrap();
        let files = w.flush().unwrap();
        assert_eq!(files.len(), 2);
        assert_eq!(w.rows_written(), 2);
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
                "findings/source=cloudtrail/dt=2024-05-01/hour=12",
                "findings/source=metrics/dt=2024-05-01/hour=12"
            ]
        );
        assert!(w.flush().unwrap().is_empty());
    }

    #[test]
    fn raw_rows_decode_back_to_the_same_events() {
        let mut metric = log_event("m", 1_635_551_409_000_000);
        metric.body = EventBody::Metrics(aiops_core::MetricFields {
            namespace: "AWS/EC2".into(),
            metric: "CPUUtilization".into(),
            dimensions: [("InstanceId".to_string(), "i-1".to_string())].into(),
            value: aiops_core::MetricValue {
                max: 3.0,
                min: 1.0,
                sum: 4.0,
                count: 2.0,
            },
            unit: Some("Percent".into()),
            metric_stream_name: None,
        });
        let mut ct = ct_event("a", 1_635_551_409_000_000);
        if let EventBody::Cloudtrail(c) = &mut ct.body {
            c.resources = vec![aiops_core::ResourceRef {
                resource_type: Some("AWS::SSM::Parameter".into()),
                id: Some("/p".into()),
                arn: None,
            }];
        }
        let events = vec![ct, log_event("c", 1_635_551_409_000_001), metric];
        let refs: Vec<&Event> = events.iter().collect();
        let (batches, _) = read_back(&encode_raw_parquet(&refs, 2, "r").unwrap());
        let back: Vec<Event> = batches
            .iter()
            .flat_map(|b| decode_raw_batch(b).unwrap())
            .collect();
        assert_eq!(back, events);
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
