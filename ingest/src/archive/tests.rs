//! Tests of the Parquet archive.

use super::*;
use aiops_core::{CloudTrailFields, LogFields, LogLevel, Position, Principal};
use aiops_core::{Event, EventBody, Finding, FindingKind, Source};
use arrow_array::{Array, RecordBatch};
use parquet::file::reader::{FileReader, SerializedFileReader};
use std::fs::File;
use std::path::{Path, PathBuf};

fn ct_event(id: &str, t: i64) -> Event {
    Event {
        event_id: id.to_string(),
        event_time: t,
        ingest_time: t + 5,
        account: Some("123456789012".into()),
        region: Some("us-east-1".into()),
        decode_warnings: Vec::new(),
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
        decode_warnings: Vec::new(),
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
    assert_eq!(spec.columns.len(), 44);
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
    for bytes in [65_535, 1_073_741_825] {
        let bad = ArchiveConfig {
            max_row_group_bytes: bytes,
            ..ArchiveConfig::default()
        };
        assert_eq!(
            bad.validate().unwrap_err().to_string(),
            "archive.max_row_group_bytes: must be between 65536 (64 KiB) and 1073741824 (1 GiB)"
        );
    }
    for bytes in [65_536, 1_073_741_824] {
        let ok = ArchiveConfig {
            max_row_group_bytes: bytes,
            ..ArchiveConfig::default()
        };
        assert_eq!(ok.validate(), Ok(()));
    }
}

#[test]
fn row_groups_are_cut_by_bytes_before_rows() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = ArchiveConfig {
        rows_per_row_group: 1000,
        max_row_group_bytes: 65_536,
        ..ArchiveConfig::default()
    };
    let mut a = LocalArchive::new(dir.path(), cfg);
    // About 30 KB a row: the third row of a group passes 64 KiB and cuts it.
    let params = format!(r#"{{"v":"{}"}}"#, "x".repeat(30_000));
    for i in 0..10 {
        let mut e = ct_event(&format!("b{i}"), 1_635_551_409_000_000 + i);
        if let EventBody::Cloudtrail(ct) = &mut e.body {
            ct.request_parameters = Some(params.clone());
        }
        a.append(&e).unwrap();
    }
    let files = a.flush().unwrap();
    assert_eq!(files.len(), 1);
    let reader = SerializedFileReader::new(File::open(&files[0].path).unwrap()).unwrap();
    let groups: Vec<i64> = reader
        .metadata()
        .row_groups()
        .iter()
        .map(|g| g.num_rows())
        .collect();
    assert_eq!(groups, vec![3, 3, 3, 1]);
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

fn finding(id: &str, kind: FindingKind, series: Option<&str>, observed: Option<f64>) -> Finding {
    Finding {
        suppressed: None,
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

/// An event that exercises every column added in raw schema version 2: a CloudTrail Insights
/// record with an `eventCategory`, `insightDetails` and two decode warnings.
fn insight_event() -> Event {
    let mut e = ct_event("ins", 1_714_564_860_000_000);
    e.decode_warnings = vec![
        "invalid UTF-8 replaced with U+FFFD".into(),
        "userIdentity: expected an object, found a string".into(),
    ];
    if let EventBody::Cloudtrail(c) = &mut e.body {
        c.event_name = "PutParameter".into();
        c.event_type = Some("AwsCloudTrailInsight".into());
        c.read_only = Some(true);
        c.request_parameters = None;
        c.event_category = Some("Insight".into());
        c.insight = Some(Box::new(aiops_core::InsightFields {
            state: Some("Start".into()),
            insight_type: Some("ApiCallRateInsight".into()),
            error_code: None,
            shared_event_id: Some("12345678-aaaa-bbbb-cccc-1234567890ab".into()),
            baseline_average: Some(0.5),
            insight_average: Some(12.25),
            baseline_duration_minutes: Some(10080.0),
            insight_duration_minutes: Some(1.0),
        }));
    }
    e
}

/// The string cells of column `name` in `batch`, null as `None`.
fn str_cells(batch: &RecordBatch, name: &str) -> Vec<Option<String>> {
    let a = batch
        .column_by_name(name)
        .unwrap()
        .as_any()
        .downcast_ref::<arrow_array::StringArray>()
        .unwrap();
    (0..a.len())
        .map(|i| a.is_valid(i).then(|| a.value(i).to_string()))
        .collect()
}

/// The bytes of a Parquet file as a writer of schema version 1 made it: the first `columns`
/// columns of `batch` (the schema before the additive change), `schema_version` set to 1.
fn old_version_file(batch: &RecordBatch, columns: usize) -> Vec<u8> {
    versioned_file(batch, columns, 1)
}

/// The bytes of a Parquet file of the first `columns` columns of `batch`, `schema_version` set
/// to `version`.
fn versioned_file(batch: &RecordBatch, columns: usize, version: i32) -> Vec<u8> {
    let old = batch.project(&(0..columns).collect::<Vec<_>>()).unwrap();
    let mut cols = old.columns().to_vec();
    cols[0] = std::sync::Arc::new(arrow_array::Int32Array::from(vec![version; old.num_rows()]));
    let old = RecordBatch::try_new(old.schema(), cols).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(Vec::new(), old.schema(), None).unwrap();
    w.write(&old).unwrap();
    w.into_inner().unwrap()
}

#[test]
fn schema_versions_add_columns_at_the_end_only() {
    let raw: Vec<String> = raw_schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(RAW_SCHEMA_VERSION, 2);
    assert_eq!(raw.len(), 44);
    assert_eq!(raw[40], "metric_stream_name");
    assert_eq!(raw[41..], ["decode_warnings", "event_category", "insight"]);
    let findings: Vec<String> = findings_schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(FINDINGS_SCHEMA_VERSION, 4);
    assert_eq!(findings.len(), 32);
    assert_eq!(findings[19], "template");
    assert_eq!(findings[25], "samples");
    assert_eq!(
        findings[26..],
        [
            "direction",
            "priority",
            "top_contributors",
            "related",
            "template_id",
            "suppressed"
        ]
    );
    let specs = all_table_specs();
    assert_eq!(
        specs.iter().map(|t| t.version).collect::<Vec<_>>(),
        [2, 4, 1]
    );
    assert!(
        specs[0].columns[41..]
            .iter()
            .chain(&specs[1].columns[26..])
            .all(|c| c.glue_type == "string")
    );
}

#[test]
fn raw_rows_keep_decode_warnings_category_and_insight() {
    let mut management = ct_event("mgmt", 1_714_564_860_000_001);
    if let EventBody::Cloudtrail(c) = &mut management.body {
        c.event_category = Some("Management".into());
    }
    let mut log = log_event("log", 1_714_564_860_000_002);
    log.decode_warnings = vec!["invalid UTF-8 replaced with U+FFFD".into()];
    let events = vec![
        insight_event(),
        management,
        log,
        ct_event("plain", 1_714_564_860_000_003),
    ];
    let refs: Vec<&Event> = events.iter().collect();
    let (batches, _) = read_back(&encode_raw_parquet(&refs, 10, "r").unwrap());
    assert_eq!(batches.len(), 1);
    let b = &batches[0];
    assert_eq!(b.schema(), raw_schema());
    assert_eq!(
        str_cells(b, "decode_warnings"),
        [
            Some(
                r#"["invalid UTF-8 replaced with U+FFFD","userIdentity: expected an object, found a string"]"#
                    .to_string()
            ),
            None,
            Some(r#"["invalid UTF-8 replaced with U+FFFD"]"#.to_string()),
            None,
        ]
    );
    assert_eq!(
        str_cells(b, "event_category"),
        [
            Some("Insight".to_string()),
            Some("Management".to_string()),
            None,
            None
        ]
    );
    assert_eq!(
        str_cells(b, "insight"),
        [
            Some(
                concat!(
                    r#"{"state":"Start","insight_type":"ApiCallRateInsight","error_code":null,"#,
                    r#""shared_event_id":"12345678-aaaa-bbbb-cccc-1234567890ab","#,
                    r#""baseline_average":0.5,"insight_average":12.25,"#,
                    r#""baseline_duration_minutes":10080.0,"insight_duration_minutes":1.0}"#
                )
                .to_string()
            ),
            None,
            None,
            None,
        ]
    );
    let versions = b
        .column_by_name("schema_version")
        .unwrap()
        .as_any()
        .downcast_ref::<arrow_array::Int32Array>()
        .unwrap()
        .values()
        .to_vec();
    assert_eq!(versions, [2, 2, 2, 2]);
    assert_eq!(decode_raw_batch(b).unwrap(), events);
}

#[test]
fn raw_files_of_schema_version_1_still_read() {
    let events = vec![insight_event(), log_event("log", 1_714_564_860_000_002)];
    let refs: Vec<&Event> = events.iter().collect();
    let old = old_version_file(&encode_raw_batch(&refs).unwrap(), 41);
    let (batches, _) = read_back(&old);
    assert_eq!(batches[0].num_columns(), 41);
    assert!(batches[0].column_by_name("decode_warnings").is_none());
    let back = decode_raw_batch(&batches[0]).unwrap();
    // What version 1 could not store comes back empty; everything else is unchanged.
    let mut expected = events.clone();
    for e in &mut expected {
        e.decode_warnings.clear();
        if let EventBody::Cloudtrail(c) = &mut e.body {
            c.event_category = None;
            c.insight = None;
        }
    }
    assert_eq!(back, expected);
}

/// A finding that uses every column added in findings schema version 2.
fn merged_drop_finding() -> Finding {
    let mut f = finding(
        "f-drop",
        FindingKind::RateAnomaly,
        Some("api_error:AccessDenied"),
        Some(141.0),
    );
    f.direction = Some(aiops_core::Direction::Drop);
    f.priority = aiops_core::Priority::Medium;
    f.evidence.top_contributors = vec![
        aiops_core::Contributor {
            name: "IAMUser:123456789012:mallory".into(),
            count: 120,
        },
        aiops_core::Contributor {
            name: "IAMUser:123456789012:bob".into(),
            count: 3,
        },
    ];
    f.evidence.related = vec![
        "count_rate api_error_principal:AccessDenied:mallory: 120 observed, 1.5 expected".into(),
    ];
    f
}

#[test]
fn findings_keep_direction_priority_contributors_and_related() {
    let full = merged_drop_finding();
    let mut spike = finding(
        "f-spike",
        FindingKind::RateAnomaly,
        Some("log_level:g:ERROR"),
        Some(60.0),
    );
    spike.direction = Some(aiops_core::Direction::Spike);
    spike.priority = aiops_core::Priority::Low;
    let rule = finding("f-rule", FindingKind::ChangeRule, None, None);
    let rows = [&full, &spike, &rule];
    let (batches, _) = read_back(&encode_table_parquet(&rows, 10, "f").unwrap());
    let b = &batches[0];
    assert_eq!(b.schema(), findings_schema());
    assert_eq!(
        str_cells(b, "direction"),
        [Some("drop".to_string()), Some("spike".to_string()), None]
    );
    assert_eq!(
        str_cells(b, "priority"),
        [
            Some("MEDIUM".to_string()),
            Some("LOW".to_string()),
            Some("HIGH".to_string())
        ]
    );
    assert_eq!(
        str_cells(b, "top_contributors"),
        [
            Some(
                r#"[{"name":"IAMUser:123456789012:mallory","count":120},{"name":"IAMUser:123456789012:bob","count":3}]"#
                    .to_string()
            ),
            None,
            None
        ]
    );
    assert_eq!(
        str_cells(b, "related"),
        [
            Some(
                r#"["count_rate api_error_principal:AccessDenied:mallory: 120 observed, 1.5 expected"]"#
                    .to_string()
            ),
            None,
            None
        ]
    );
    assert_eq!(decode_findings_batch(b).unwrap(), vec![full, spike, rule]);
}

#[test]
fn findings_files_of_schema_version_1_still_read() {
    let full = merged_drop_finding();
    let mut low = finding(
        "f-low",
        FindingKind::RateAnomaly,
        Some("log_level:g:INFO"),
        Some(9.0),
    );
    low.priority = aiops_core::Priority::Low;
    let old = old_version_file(&encode_findings_batch(&[&full, &low]).unwrap(), 26);
    let (batches, _) = read_back(&old);
    assert_eq!(batches[0].num_columns(), 26);
    let back = decode_findings_batch(&batches[0]).unwrap();
    // Version 1 stored no direction, priority, contributors or related findings: they read
    // as none, HIGH (every finding opened an incident then), empty, empty.
    let mut expected = vec![full, low];
    for f in &mut expected {
        f.direction = None;
        f.priority = aiops_core::Priority::High;
        f.evidence.top_contributors.clear();
        f.evidence.related.clear();
    }
    assert_eq!(back, expected);
}

#[test]
fn bad_values_in_version_2_columns_are_decode_errors() {
    let f = merged_drop_finding();
    let batch = encode_findings_batch(&[&f]).unwrap();
    let with = |name: &str, value: &str| {
        let mut cols = batch.columns().to_vec();
        let i = batch.schema().index_of(name).unwrap();
        cols[i] = std::sync::Arc::new(arrow_array::StringArray::from(vec![value]));
        RecordBatch::try_new(batch.schema(), cols).unwrap()
    };
    let err = |b: RecordBatch| decode_findings_batch(&b).unwrap_err().to_string();
    assert!(err(with("priority", "URGENT")).ends_with(r#"row 0: priority "URGENT""#));
    assert!(err(with("direction", "up")).ends_with(r#"row 0: direction "up""#));
    assert!(
        err(with("top_contributors", r#"["x"]"#))
            .contains("row 0: top_contributors is not a JSON list of {name, count}")
    );
    assert!(err(with("related", "{}")).contains("row 0: related is not a JSON list of strings"));
    let e = insight_event();
    let raw = encode_raw_batch(&[&e]).unwrap();
    let mut cols = raw.columns().to_vec();
    cols[raw.schema().index_of("insight").unwrap()] =
        std::sync::Arc::new(arrow_array::StringArray::from(vec!["not json"]));
    let bad = RecordBatch::try_new(raw.schema(), cols).unwrap();
    let msg = decode_raw_batch(&bad).unwrap_err().to_string();
    assert!(msg.contains("row 0: insight is not JSON"), "{msg}");
}

/// A finding on a template series, as detect makes it: the id and the text of its template.
fn template_finding() -> Finding {
    let mut f = finding(
        "f-tpl",
        FindingKind::RateAnomaly,
        Some("log_template:/ecs/checkout:8c0f6c1b7a3e2d41"),
        Some(40.0),
    );
    f.detector = "log_template_rate".into();
    f.evidence.template_id = Some("8c0f6c1b7a3e2d41".into());
    f.evidence.template = Some("ERROR payment <*> declined".into());
    f
}

#[test]
fn findings_keep_template_id_and_text_and_leave_them_null_elsewhere() {
    let tpl = template_finding();
    let level = finding(
        "f-level",
        FindingKind::RateAnomaly,
        Some("log_level:/ecs/checkout:ERROR"),
        Some(42.0),
    );
    let rule = finding("f-rule", FindingKind::ChangeRule, None, None);
    let (batches, _) = read_back(&encode_table_parquet(&[&tpl, &level, &rule], 10, "t").unwrap());
    let b = &batches[0];
    assert_eq!(
        str_cells(b, "template_id"),
        [Some("8c0f6c1b7a3e2d41".to_string()), None, None]
    );
    assert_eq!(
        str_cells(b, "template"),
        [Some("ERROR payment <*> declined".to_string()), None, None]
    );
    let versions = b
        .column_by_name("schema_version")
        .unwrap()
        .as_any()
        .downcast_ref::<arrow_array::Int32Array>()
        .unwrap()
        .values()
        .to_vec();
    assert_eq!(versions, [4, 4, 4]);
    assert_eq!(decode_findings_batch(b).unwrap(), vec![tpl, level, rule]);
    // In the finding JSON: both keys on the template finding; no template_id key elsewhere.
    let json = serde_json::to_value(template_finding()).unwrap();
    assert_eq!(json["evidence"]["template_id"], "8c0f6c1b7a3e2d41");
    assert_eq!(json["evidence"]["template"], "ERROR payment <*> declined");
    let plain = serde_json::to_value(finding("f", FindingKind::ChangeRule, None, None)).unwrap();
    assert!(plain["evidence"].get("template_id").is_none(), "{plain}");
    assert_eq!(plain["evidence"]["template"], serde_json::Value::Null);
}

#[test]
fn findings_record_why_a_finding_was_suppressed_and_older_files_read_as_not_suppressed() {
    let mut held = template_finding();
    held.suppressed = Some("suppressed: series log_template:/ecs/checkout:8c0f6c1b7a3e2d41 until removed (deploy noise)".into());
    let plain = finding(
        "f-level",
        FindingKind::RateAnomaly,
        Some("log_level:/ecs/checkout:ERROR"),
        Some(42.0),
    );
    let (batches, _) = read_back(&encode_table_parquet(&[&held, &plain], 10, "t").unwrap());
    assert_eq!(
        str_cells(&batches[0], "suppressed"),
        [held.suppressed.clone(), None]
    );
    assert_eq!(
        decode_findings_batch(&batches[0]).unwrap(),
        vec![held.clone(), plain.clone()]
    );
    // A file of version 3 has no `suppressed` column: its findings read as not suppressed.
    let v3 = versioned_file(&encode_findings_batch(&[&held, &plain]).unwrap(), 31, 3);
    let (batches, _) = read_back(&v3);
    assert!(batches[0].column_by_name("suppressed").is_none());
    let mut unmarked = held;
    unmarked.suppressed = None;
    assert_eq!(
        decode_findings_batch(&batches[0]).unwrap(),
        vec![unmarked, plain]
    );
    // In the finding JSON the key is absent unless set.
    let json = serde_json::to_value(finding("f", FindingKind::ChangeRule, None, None)).unwrap();
    assert!(json.get("suppressed").is_none(), "{json}");
}

#[test]
fn findings_files_of_schema_version_2_read_without_template_id() {
    let tpl = template_finding();
    let full = merged_drop_finding();
    let v2 = versioned_file(&encode_findings_batch(&[&tpl, &full]).unwrap(), 30, 2);
    let (batches, _) = read_back(&v2);
    assert_eq!(batches[0].num_columns(), 30);
    assert!(batches[0].column_by_name("template_id").is_none());
    let back = decode_findings_batch(&batches[0]).unwrap();
    // The template text was stored in version 2 already; only the id reads as none.
    let mut expected_tpl = tpl;
    expected_tpl.evidence.template_id = None;
    assert_eq!(
        expected_tpl.evidence.template.as_deref(),
        Some("ERROR payment <*> declined")
    );
    assert_eq!(back, vec![expected_tpl, full]);
}
