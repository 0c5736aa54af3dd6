//! The `findings` and `incidents` tables: their rows, batch encoding, in-memory Parquet files
//! for object stores, and the local writer.

use super::config::{ArchiveConfig, ArchiveError};
use super::local::ArchivedFile;
use super::raw_batch::{PartitionKey, raw_file_name, writer_properties};
use super::schema::{
    FINDINGS_SCHEMA_VERSION, INCIDENTS_SCHEMA_VERSION, findings_schema, incidents_schema,
};
use aiops_core::{Finding, FindingKind, Source};
use arrow_array::builder::{
    BooleanBuilder, Float64Builder, Int32Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::SchemaRef;
use parquet::arrow::ArrowWriter;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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

/// A list as JSON text, `None` (a null cell) when it is empty.
fn non_empty_json<T: Serialize>(items: &[T]) -> Option<String> {
    if items.is_empty() {
        None
    } else {
        serde_json::to_string(items).ok()
    }
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
/// `window_start` / `window_end`, `direction` and `priority` as their serialised names
/// (`spike`, `HIGH`), `top_contributors` as a JSON array of `{"name", "count"}` and `related`
/// as a JSON array of strings (both null when empty), `template_id` and `template` as they
/// are (null when the finding has no template). Every column keeps its declared type whatever the values
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
    // direction, priority, top_contributors, related (schema version 2), template_id (3),
    // suppressed (4).
    let mut v2: Vec<StringBuilder> = (0..6).map(|_| StringBuilder::new()).collect();
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
        v2[0].append_option(f.direction.map(|d| d.as_str()));
        v2[1].append_value(f.priority.as_str());
        v2[2].append_option(non_empty_json(&e.top_contributors));
        v2[3].append_option(non_empty_json(&e.related));
        v2[4].append_option(e.template_id.as_deref());
        v2[5].append_option(f.suppressed.as_deref());
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
    for b in tail.iter_mut().chain(v2.iter_mut()) {
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
