//! Building row batches and Parquet files of the `raw` table: the Arrow column builders,
//! partition keys, file names and writer properties.

use super::config::ArchiveError;
use super::schema::{RAW_SCHEMA_VERSION, raw_schema};
use aiops_core::time::partition_of;
use aiops_core::{Event, EventBody, Source};
use arrow_array::builder::{
    BooleanBuilder, Float64Builder, Int32Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use std::path::PathBuf;
use std::sync::Arc;

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
    /// decode_warnings, event_category, insight (schema version 2).
    v2: [StringBuilder; 3],
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
            v2: std::array::from_fn(|_| sb()),
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

    /// Bytes of row data pending, approximately: the strings of every string column plus
    /// the fixed-width values and offsets (8 bytes a value), not the builders' spare
    /// capacity.
    pub fn bytes(&self) -> usize {
        let strings: usize = std::iter::once(&self.event_id)
            .chain(&self.strings)
            .chain(&self.ct)
            .chain(&self.ct2)
            .chain(&self.logs)
            .chain(&self.met)
            .chain(&self.met2)
            .chain(&self.v2)
            .map(|b| b.values_slice().len())
            .sum();
        // Offsets of the 35 string columns and the 9 fixed-width columns, 8 bytes or less each.
        strings + self.rows * 8 * 44
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
        let [warnings, category, insight] = &mut self.v2;
        if e.decode_warnings.is_empty() {
            warnings.append_null();
        } else {
            warnings.append_option(serde_json::to_string(&e.decode_warnings).ok());
        }
        match &e.body {
            EventBody::Cloudtrail(c) => {
                category.append_option(c.event_category.as_deref());
                insight.append_option(
                    c.insight
                        .as_deref()
                        .and_then(|i| serde_json::to_string(i).ok()),
                );
            }
            _ => {
                category.append_null();
                insight.append_null();
            }
        }
    }

    /// The rows pushed so far as a record batch; the builder is empty afterwards.
    ///
    /// # Errors
    /// [`ArchiveError::Arrow`] only if the builders disagree with the schema (a bug).
    pub fn finish(&mut self) -> Result<RecordBatch, ArchiveError> {
        self.rows = 0;
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(raw_schema().fields().len());
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
        for b in self.met2.iter_mut().chain(self.v2.iter_mut()) {
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

pub(crate) fn writer_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_created_by(format!("aiops {}", env!("CARGO_PKG_VERSION")))
        .build()
}
