//! Reading the tables back: record batches of `raw` and `findings` decoded into events and
//! findings.

use super::config::ArchiveError;
use aiops_core::{Direction, Event, EventBody, Finding, FindingKind};
use arrow_array::{
    Array, BooleanArray, Float64Array, Int64Array, RecordBatch, TimestampMicrosecondArray,
};

pub(crate) fn column<'a, T: 'static>(
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
/// missing from an older file reads as null (in a file of schema version 1: no decode
/// warnings, no `event_category`, no Insights details).
///
/// # Errors
/// [`ArchiveError::Decode`] when a column has an unexpected type, a required value
/// (`event_id`, `event_time`) is null, a row holds no source-specific fields, or a JSON column
/// (`resources`, `dimensions`, `decode_warnings`, `insight`) does not hold its JSON shape.
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
    // Schema version 2; absent from files of version 1 (read as no warnings, no category, no
    // Insights details).
    let (warnings, category, insight) =
        (s("decode_warnings")?, s("event_category")?, s("insight")?);
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
                event_category: category.get(i),
                insight: match insight.get(i) {
                    Some(text) => Some(Box::new(serde_json::from_str(&text).map_err(|e| {
                        ArchiveError::Decode(format!("row {i}: insight is not JSON: {e}"))
                    })?)),
                    None => None,
                },
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
            account: account.get(i),
            region: region.get(i),
            decode_warnings: json_strings(&warnings, i, "decode_warnings")?,
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

fn parse_direction(s: &str) -> Option<Direction> {
    [Direction::Spike, Direction::Drop]
        .into_iter()
        .find(|d| d.as_str() == s)
}

/// The JSON array of strings in row `i` of a string column; null (or a missing column) reads
/// as an empty list.
fn json_strings(c: &Strs, i: usize, what: &str) -> Result<Vec<String>, ArchiveError> {
    match c.get(i) {
        Some(t) => serde_json::from_str(&t).map_err(|e| {
            ArchiveError::Decode(format!(
                "row {i}: {what} is not a JSON list of strings: {e}"
            ))
        }),
        None => Ok(Vec::new()),
    }
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
/// [`encode_findings_batch`] (the resource is present when `resource_type` is set). Columns
/// are looked up by name; in a file of schema version 1 the columns of version 2 are missing
/// and read as no direction, priority `HIGH`, no top contributors and nothing related; in a
/// file of version 1 or 2 the `template_id` column of version 3 is missing and reads as no
/// template id; in a file of version 1 to 3 the `suppressed` column of version 4 is missing
/// and reads as not suppressed.
///
/// # Errors
/// [`ArchiveError::Decode`] when a column has an unexpected type, a required value is null,
/// `kind`, `direction` or `priority` is unknown, or a JSON list column is not a JSON array of
/// strings (`top_contributors`: of `{"name", "count"}` objects).
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
    // Schema version 2; absent from files of version 1 (read as no direction, priority HIGH,
    // no contributors, nothing related).
    let (direction, priority, contributors, related) = (
        s("direction")?,
        s("priority")?,
        s("top_contributors")?,
        s("related")?,
    );
    // Schema version 3; absent from older files (read as no template id).
    let template_id = s("template_id")?;
    // Schema version 4; absent from older files (read as not suppressed).
    let suppressed = s("suppressed")?;
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
            suppressed: suppressed.get(i),
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
                event_ids: json_strings(&event_ids, i, "event_ids")?,
                event_source: event_source.get(i),
                event_name: event_name.get(i),
                principal: principal.get(i),
                source_ip: source_ip.get(i),
                series_key: series_key.get(i),
                window: ts_at(w_start, i).zip(ts_at(w_end, i)),
                observed: f64_at(observed, i),
                expected: f64_at(expected, i),
                template: template.get(i),
                template_id: template_id.get(i),
                samples: json_strings(&samples, i, "samples")?,
                top_contributors: match contributors.get(i) {
                    Some(t) => serde_json::from_str(&t).map_err(|e| {
                        ArchiveError::Decode(format!(
                            "row {i}: top_contributors is not a JSON list of {{name, count}}: {e}"
                        ))
                    })?,
                    None => Vec::new(),
                },
                related: json_strings(&related, i, "related")?,
            },
            direction: match direction.get(i) {
                Some(t) => Some(
                    parse_direction(&t)
                        .ok_or_else(|| ArchiveError::Decode(format!("row {i}: direction {t:?}")))?,
                ),
                None => None,
            },
            priority: match priority.get(i) {
                Some(t) => aiops_core::Priority::parse(&t)
                    .ok_or_else(|| ArchiveError::Decode(format!("row {i}: priority {t:?}")))?,
                None => aiops_core::Priority::High,
            },
        });
    }
    Ok(out)
}
