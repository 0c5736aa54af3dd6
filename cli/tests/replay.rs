//! End-to-end tests of `aiops replay`: the exact incidents for the shared CloudTrail fixtures
//! and for the repository's own fixtures, and a corpus of bad inputs that must become dead
//! letters without stopping anything.

use base64::Engine;
use flate2::Compression;
use flate2::write::GzEncoder;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_aiops")
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn shared_data() -> PathBuf {
    std::env::var_os("AIOPS_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("../shared/data"))
}

struct Replay {
    incidents: Vec<serde_json::Value>,
    summary: serde_json::Value,
    status: i32,
}

fn replay(paths: &[&Path], data_dir: &Path, config: Option<&Path>) -> Replay {
    let mut cmd = Command::new(bin());
    cmd.arg("replay");
    for p in paths {
        cmd.arg(p);
    }
    cmd.arg("--json").arg("--data-dir").arg(data_dir);
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    let out = cmd.output().expect("run aiops");
    let stdout = String::from_utf8(out.stdout).expect("utf-8 stdout");
    let mut lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    let summary = lines.pop().unwrap_or_default();
    Replay {
        incidents: lines,
        summary,
        status: out.status.code().unwrap_or(-1),
    }
}

fn incident_keys(r: &Replay) -> Vec<(String, String, String, String, String)> {
    let s = |v: &serde_json::Value, k: &str| v[k].as_str().unwrap_or("").to_string();
    let mut v: Vec<_> = r
        .incidents
        .iter()
        .map(|i| {
            assert_eq!(i["kind"], "incident");
            (
                s(i, "event_name"),
                s(i, "resource_type"),
                s(i, "resource_id"),
                s(i, "state"),
                s(i, "action"),
            )
        })
        .collect();
    v.sort();
    v
}

fn owned(v: &[(&str, &str, &str, &str, &str)]) -> Vec<(String, String, String, String, String)> {
    v.iter()
        .map(|(a, b, c, d, e)| {
            (
                a.to_string(),
                b.to_string(),
                c.to_string(),
                d.to_string(),
                e.to_string(),
            )
        })
        .collect()
}

/// One incident per resource changed by a successful destructive call on a watched resource
/// type; none for `_error_` records, the autoscaling termination or non-destructive calls. The
/// DeleteTrail a person made through CloudFormation (`invokedBy` cloudformation.amazonaws.com)
/// is seen (defence evasion must not hide behind a stack) but not recovered (recovery would
/// fight the stack): `MANUAL_REVIEW`, no action.
#[test]
fn shared_cloudtrail_fixtures_open_exactly_the_expected_incidents() {
    let dir = shared_data().join("cloudtrail");
    if !dir.is_dir() {
        eprintln!("skipped: {} not present", dir.display());
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let r = replay(&[&dir], tmp.path(), None);
    assert_eq!(r.status, 0);
    assert_eq!(r.summary["dead_letters"], 0);
    assert_eq!(r.summary["events"], 45);
    assert_eq!(r.summary["incidents"], 28);
    let expected = owned(&[
        (
            "DeleteBucket",
            "s3_bucket",
            "secrets",
            "RESOLVED",
            "recreate",
        ),
        (
            "DeleteBucketEncryption",
            "s3_bucket",
            "sensitive-data-bucket",
            "RESOLVED",
            "restore",
        ),
        (
            "DeleteDBCluster",
            "rds_db_cluster",
            "aurora-cluster-prod",
            "RESOLVED",
            "recreate",
        ),
        (
            "DeleteDBInstance",
            "rds_db_instance",
            "customer-data-db",
            "RESOLVED",
            "recreate",
        ),
        (
            "DeleteDBInstance",
            "rds_db_instance",
            "production-mysql-db",
            "RESOLVED",
            "recreate",
        ),
        (
            "DeleteDeliveryChannel",
            "config_recorder",
            "default",
            "RESOLVED",
            "restore",
        ),
        (
            "DeleteFlowLogs",
            "vpc_flow_log",
            "fl-0e17aa62a21d4bbfe",
            "RESOLVED",
            "recreate",
        ),
        (
            "DeleteFlowLogs",
            "vpc_flow_log",
            "fl-0ef673ef70c4f07cc",
            "RESOLVED",
            "recreate",
        ),
        (
            "DeleteFunction",
            "lambda_function",
            "basic-node-task",
            "RESOLVED",
            "recreate",
        ),
        (
            "DeleteResolverQueryLogConfig",
            "resolver_query_log_config",
            "rqlc-4473f20ca554c07",
            "RESOLVED",
            "recreate",
        ),
        (
            "DeleteResolverQueryLogConfig",
            "resolver_query_log_config",
            "rqlc-5aa596fe3bd84ec6",
            "RESOLVED",
            "recreate",
        ),
        (
            "DeleteTable",
            "dynamodb_table",
            "Music",
            "RESOLVED",
            "recreate",
        ),
        (
            "DeleteTrail",
            "cloudtrail_trail",
            "example-trail",
            "MANUAL_REVIEW",
            "",
        ),
        (
            "DeleteTrail",
            "cloudtrail_trail",
            "stratus-red-team-cloudtraild-trail-kvrwohmiai",
            "RESOLVED",
            "recreate",
        ),
        ("DisableKey", "kms_key", "1", "RESOLVED", "restore"),
        (
            "ModifyDBInstance",
            "rds_db_instance",
            "production-mysql",
            "RESOLVED",
            "restore",
        ),
        (
            "PutBucketVersioning",
            "s3_bucket",
            "important-files-bucket",
            "RESOLVED",
            "restore",
        ),
        (
            "PutEventSelectors",
            "cloudtrail_trail",
            "sample-cloudtrail-name",
            "RESOLVED",
            "restore",
        ),
        (
            "PutEventSelectors",
            "cloudtrail_trail",
            "stratus-red-team-ctes-trail-khlvciwdor",
            "RESOLVED",
            "restore",
        ),
        // Same KMS key as DisableKey a moment earlier: Terraform cannot undo a scheduled
        // deletion, so it needs a person (and is not swallowed by the DisableKey cooldown).
        ("ScheduleKeyDeletion", "kms_key", "1", "MANUAL_REVIEW", ""),
        (
            "StopInstances",
            "ec2_instance",
            "i-DDd6c7B0e18F0E35f",
            "RESOLVED",
            "start",
        ),
        (
            "StopInstances",
            "ec2_instance",
            "i-EXAMPLE56126103cb",
            "RESOLVED",
            "start",
        ),
        (
            "StopInstances",
            "ec2_instance",
            "i-EXAMPLEaff4840c22",
            "RESOLVED",
            "start",
        ),
        (
            "StopLogging",
            "cloudtrail_trail",
            "example-trail",
            "RESOLVED",
            "restore",
        ),
        (
            "StopLogging",
            "cloudtrail_trail",
            "stratus-red-team-ct-stop-trail-buykxbqejv",
            "RESOLVED",
            "restore",
        ),
        (
            "TerminateInstances",
            "ec2_instance",
            "i-0d9853f67e40ab80b",
            "RESOLVED",
            "recreate",
        ),
        (
            "UpdateFunctionCode20150331v2",
            "lambda_function",
            "production-api",
            "RESOLVED",
            "restore",
        ),
        (
            "UpdateFunctionCode20150331v2",
            "lambda_function",
            "stratus-red-team-olc-func-vayhjqkdav",
            "RESOLVED",
            "restore",
        ),
    ]);
    assert_eq!(incident_keys(&r), expected);
    // The failed calls and the autoscaling termination are decoded and archived, not incidents.
    let ids: Vec<&str> = r
        .incidents
        .iter()
        .filter_map(|i| i["event_id"].as_str())
        .collect();
    for file in [
        "panther_02_StopLogging_error_InvalidTrailName.json",
        "panther_11_TerminateInstances_autoscaling.json",
        "panther_22_DeleteDBInstance_error_AccessDenied.json",
    ] {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let id = v["eventID"].as_str().unwrap();
        assert!(!ids.contains(&id), "{file} must not open an incident");
    }
}

#[test]
fn own_fixtures_replay_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let r = replay(&[&root().join("tests/fixtures/replay")], tmp.path(), None);
    assert_eq!(r.status, 0);
    assert_eq!(
        r.summary,
        serde_json::json!({"kind": "summary", "events": 18, "dead_letters": 0, "duplicates": 1,
            "findings": 4, "incidents": 4, "suppressed_findings": 0, "archived_rows": 17, "control_messages": 0,
            "digest_files": 1, "skipped_files": 0, "skipped_inputs": 0, "inputs_read": 7,
            "input_bytes": 5862, "out_of_range_events": 0,
            "reorder_early_releases": 0, "out_of_order_events": 0})
    );
    assert_eq!(
        incident_keys(&r),
        owned(&[
            (
                "DeleteFunction20150331",
                "lambda_function",
                "billing-worker",
                "RESOLVED",
                "recreate"
            ),
            (
                "DeleteParameter",
                "ssm_parameter",
                "/prod/payments/db-password",
                "RESOLVED",
                "restore"
            ),
            (
                "StopInstances",
                "ec2_instance",
                "i-0aaaaaaaaaaaaaaa1",
                "RESOLVED",
                "start"
            ),
            (
                "StopInstances",
                "ec2_instance",
                "i-0aaaaaaaaaaaaaaa2",
                "RESOLVED",
                "start"
            ),
        ])
    );
}

/// Rows in the Parquet files of `table` under `data_dir`, from their footers.
fn parquet_rows(data_dir: &Path, table: &str) -> i64 {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let mut rows = 0;
    let mut stack = vec![data_dir.join(table)];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries {
            let path = e.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|x| x == "parquet") {
                let reader =
                    SerializedFileReader::new(std::fs::File::open(&path).unwrap()).unwrap();
                rows += reader.metadata().file_metadata().num_rows();
            }
        }
    }
    rows
}

/// Incidents in the store of `data_dir` (`aiops incidents list --json`).
fn stored_incidents(data_dir: &Path) -> usize {
    let out = Command::new(bin())
        .args(["incidents", "list", "--json", "--data-dir"])
        .arg(data_dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    String::from_utf8(out.stdout).unwrap().lines().count()
}

/// Replaying the same inputs into the same data directory adds nothing: every file is skipped
/// by its content (`skipped_inputs`), whatever its name or directory, and the Parquet history
/// and the incident store stay as the first replay left them.
#[test]
fn replaying_the_same_inputs_again_adds_no_rows_and_no_incidents() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    let fixtures = root().join("tests/fixtures/replay");
    let first = replay(&[&fixtures], &data_dir, None);
    assert_eq!(first.status, 0);
    assert_eq!(
        (
            &first.summary["inputs_read"],
            &first.summary["skipped_inputs"],
            &first.summary["archived_rows"],
            &first.summary["incidents"]
        ),
        (
            &serde_json::json!(7),
            &serde_json::json!(0),
            &serde_json::json!(17),
            &serde_json::json!(4)
        )
    );
    assert_eq!(parquet_rows(&data_dir, "raw"), 17);
    assert_eq!(stored_incidents(&data_dir), 4);
    let manifest = std::fs::read_to_string(data_dir.join("ingested/manifest.jsonl")).unwrap();
    assert_eq!(manifest.lines().count(), 7);

    // The same files again, and copies of them under other names: all skipped.
    let copies = tmp.path().join("copies");
    std::fs::create_dir_all(&copies).unwrap();
    for e in std::fs::read_dir(&fixtures).unwrap() {
        let p = e.unwrap().path();
        let name = format!("copy-{}", p.file_name().unwrap().to_string_lossy());
        std::fs::copy(&p, copies.join(name)).unwrap();
    }
    let second = replay(&[&fixtures, &copies], &data_dir, None);
    assert_eq!(second.status, 0);
    assert!(second.incidents.is_empty());
    assert_eq!(
        second.summary,
        serde_json::json!({"kind": "summary", "events": 0, "dead_letters": 0, "duplicates": 0,
            "findings": 0, "incidents": 0, "suppressed_findings": 0, "archived_rows": 0, "control_messages": 0,
            "digest_files": 0, "skipped_files": 0, "skipped_inputs": 14, "inputs_read": 0,
            "input_bytes": 0, "out_of_range_events": 0,
            "reorder_early_releases": 0, "out_of_order_events": 0})
    );
    assert_eq!(parquet_rows(&data_dir, "raw"), 17);
    assert_eq!(stored_incidents(&data_dir), 4);
    let manifest = std::fs::read_to_string(data_dir.join("ingested/manifest.jsonl")).unwrap();
    assert_eq!(manifest.lines().count(), 7, "nothing new recorded");

    // A file whose content changed is a new input: read, its one new event archived.
    let changed = tmp.path().join("changed.json");
    let text =
        std::fs::read_to_string(fixtures.join("eventbridge_ssm_delete_parameter.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let id = v["detail"]["eventID"].as_str().unwrap();
    std::fs::write(
        &changed,
        text.replace(id, "d0000000-0000-4000-8000-000000000001"),
    )
    .unwrap();
    let third = replay(&[&fixtures, &changed], &data_dir, None);
    assert_eq!(
        (
            &third.summary["inputs_read"],
            &third.summary["skipped_inputs"],
            &third.summary["archived_rows"]
        ),
        (
            &serde_json::json!(1),
            &serde_json::json!(7),
            &serde_json::json!(1)
        )
    );
    assert_eq!(parquet_rows(&data_dir, "raw"), 18);
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn ct_record(id: &str, name: &str, params: &str) -> String {
    format!(
        r#"{{"eventVersion":"1.09","userIdentity":{{"type":"IAMUser","arn":"arn:aws:iam::111122223333:user/alice","accountId":"111122223333"}},"eventTime":"2024-05-01T12:00:00Z","eventSource":"ssm.amazonaws.com","eventName":"{name}","awsRegion":"us-east-1","sourceIPAddress":"203.0.113.7","userAgent":"aws-cli","requestParameters":{params},"responseElements":null,"eventID":"{id}","readOnly":false,"eventType":"AwsApiCall","recipientAccountId":"111122223333"}}"#
    )
}

#[test]
fn bad_inputs_become_dead_letters_and_good_records_go_on() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    let good = ct_record(
        "a0000000-0000-4000-8000-000000000001",
        "DeleteParameter",
        r#"{"name":"/good/one"}"#,
    );
    let mut bad: Vec<(&str, Vec<u8>)> = Vec::new();
    let full = gzip(good.as_bytes());
    bad.push(("truncated.json.gz", full[..full.len() / 2].to_vec()));
    bad.push(("not_json.json", b"this is not JSON at all".to_vec()));
    bad.push(("wrong_shape.json", br#"{"foo": 1, "bar": [1, 2]}"#.to_vec()));
    bad.push(("bomb.json.gz", gzip(&vec![b' '; 48 * 1024 * 1024])));
    let big = format!("\"{}\"", "x".repeat(2 * 1024 * 1024));
    bad.push((
        "huge_record.json",
        ct_record("a0000000-0000-4000-8000-000000000099", "PutParameter", &big).into_bytes(),
    ));
    bad.push(("empty.json", Vec::new()));
    for (name, data) in &bad {
        std::fs::write(input.join(name), data).unwrap();
    }
    // Good records alongside: a whole file, and NDJSON with one bad line in the middle.
    std::fs::write(input.join("good.json"), &good).unwrap();
    let ndjson = format!(
        "{}\n{{not json\n{}\n",
        ct_record(
            "a0000000-0000-4000-8000-000000000002",
            "DeleteParameter",
            r#"{"name":"/good/two"}"#
        ),
        ct_record(
            "a0000000-0000-4000-8000-000000000003",
            "GetParameter",
            r#"{"name":"/good/three"}"#
        )
    );
    std::fs::write(input.join("mixed.ndjson"), ndjson).unwrap();
    let config = tmp.path().join("pipeline.toml");
    std::fs::write(
        &config,
        "[ingest]\nmax_decompressed_bytes = 16777216\nmax_record_bytes = 1048576\n",
    )
    .unwrap();
    let data_dir = tmp.path().join("data");
    let r = replay(&[&input], &data_dir, Some(&config));
    assert_eq!(r.status, 0);
    assert_eq!(r.summary["dead_letters"], 7, "{}", r.summary);
    assert_eq!(r.summary["events"], 3, "{}", r.summary);
    assert_eq!(r.summary["archived_rows"], 3);
    let mut ids: Vec<String> = r
        .incidents
        .iter()
        .map(|i| i["resource_id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    assert_eq!(ids, vec!["/good/one", "/good/two"]);

    // Dead letters: one JSON line each, with a reason and the original bytes.
    let dlq_dir = data_dir.join("dead_letters");
    let mut lines = Vec::new();
    for e in std::fs::read_dir(&dlq_dir).unwrap() {
        let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
        for l in text.lines() {
            lines.push(serde_json::from_str::<serde_json::Value>(l).unwrap());
        }
    }
    assert_eq!(lines.len(), 7);
    for (name, data) in &bad {
        let line = lines
            .iter()
            .find(|l| l["stream"].as_str().unwrap().ends_with(name))
            .unwrap_or_else(|| panic!("no dead letter for {name}"));
        assert!(!line["reason"].as_str().unwrap().is_empty());
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(line["data_base64"].as_str().unwrap())
            .unwrap();
        assert_eq!(&decoded, data, "{name}: original bytes kept");
    }
    let bad_line = lines
        .iter()
        .find(|l| l["stream"].as_str().unwrap().ends_with("mixed.ndjson"))
        .unwrap();
    assert_eq!(
        bad_line["data_base64"],
        base64::engine::general_purpose::STANDARD.encode("{not json")
    );
    assert_eq!(bad_line["sequence_number"], "1");
}

/// A burst of errors in one log group and an AccessDenied burst, replayed from files, open
/// statistical findings that go to review (never to an action), next to the change rules.
#[test]
fn replayed_error_and_access_denied_bursts_open_review_incidents() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    let t0: i64 = 1_714_557_600_000; // 2024-05-01T10:00:00Z, milliseconds
    let minute = 60_000;
    let mut log_events = Vec::new();
    let mut ct_lines = Vec::new();
    let mut n = 0u64;
    for m in 0..70i64 {
        // Baseline: INFO lines, an ERROR every 10 minutes, CloudTrail calls with a rare denial.
        for k in 0..4 {
            n += 1;
            log_events.push(serde_json::json!({"id": format!("{n:056}"), "timestamp": t0 + m * minute + k * 10_000,
                "message": format!("INFO GET /api/v1/items/{k} 200 {m}ms")}));
        }
        if m % 10 == 0 {
            n += 1;
            log_events.push(
                serde_json::json!({"id": format!("{n:056}"), "timestamp": t0 + m * minute + 45_000,
                "message": "ERROR Payment gateway call failed: connection reset by peer"}),
            );
        }
        let burst = m == 60;
        for k in 0..if burst { 60 } else { 3 } {
            n += 1;
            let denied = burst || (m % 15 == 0 && k == 0);
            let t = t0 + m * minute + k * 500;
            let secs = t / 1000;
            let time = format!(
                "2024-05-01T{:02}:{:02}:{:02}Z",
                (secs / 3600) % 24,
                (secs / 60) % 60,
                secs % 60
            );
            let mut rec = serde_json::json!({"eventVersion": "1.09", "eventTime": time,
                "userIdentity": {"type": "IAMUser", "arn": "arn:aws:iam::111122223333:user/mallory", "accountId": "111122223333"},
                "eventSource": "secretsmanager.amazonaws.com", "eventName": "GetSecretValue", "awsRegion": "us-east-1",
                "sourceIPAddress": "198.51.100.77", "requestParameters": {"secretId": "prod/db"}, "responseElements": null,
                "eventID": format!("c0000000-0000-4000-8000-{n:012}"), "readOnly": true, "eventType": "AwsApiCall",
                "recipientAccountId": "111122223333"});
            if denied {
                rec["errorCode"] = serde_json::json!("AccessDenied");
            }
            ct_lines.push(rec.to_string());
        }
        if m == 50 {
            for k in 0..80 {
                n += 1;
                log_events.push(serde_json::json!({"id": format!("{n:056}"), "timestamp": t0 + m * minute + k * 500,
                    "message": "ERROR Payment gateway call failed: connection reset by peer"}));
            }
        }
    }
    let payload = serde_json::json!({"messageType": "DATA_MESSAGE", "owner": "111122223333",
        "logGroup": "/ecs/checkout-api", "logStream": "web-1", "subscriptionFilters": ["aiops"],
        "logEvents": log_events});
    std::fs::write(
        input.join("a_logs.gz"),
        gzip(payload.to_string().as_bytes()),
    )
    .unwrap();
    std::fs::write(input.join("b_calls.ndjson"), ct_lines.join("\n")).unwrap();
    let r = replay(&[&input], &tmp.path().join("data"), None);
    assert_eq!(r.status, 0);
    assert_eq!(r.summary["dead_letters"], 0);
    let mut detectors: Vec<(String, String)> = r
        .incidents
        .iter()
        .map(|i| {
            (
                i["detector"].as_str().unwrap_or("").to_string(),
                i["state"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    detectors.sort();
    detectors.dedup();
    for expected in ["log_level_rate", "api_error_rate"] {
        assert!(
            detectors
                .iter()
                .any(|(d, s)| d == expected && s == "MANUAL_REVIEW"),
            "{expected} missing from {detectors:?}"
        );
    }
    assert!(r.incidents.iter().all(|i| i["action"].is_null()));
}

/// Inputs a directory walk meets in the wild: symlink loops, a named pipe, a record dated in
/// the year 9999. The replay finishes, reports each as a dead letter, and keeps the good one.
#[test]
fn symlink_loops_pipes_and_impossible_times_do_not_stop_a_replay() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    let good = ct_record(
        "a0000000-0000-4000-8000-0000000000a1",
        "DeleteParameter",
        r#"{"name":"/good"}"#,
    );
    std::fs::write(input.join("good.json"), &good).unwrap();
    let future = good
        .replace("2024-05-01T12:00:00Z", "9999-12-31T23:59:59Z")
        .replace("0000000000a1", "0000000000a2");
    std::fs::write(input.join("future.json"), future).unwrap();
    std::os::unix::fs::symlink(".", input.join("loop_a")).unwrap();
    std::os::unix::fs::symlink(".", input.join("loop_b")).unwrap();
    let fifo = input.join("pipe.json");
    let status = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(status.success());
    let r = replay(&[&input], &tmp.path().join("data"), None);
    assert_eq!(r.status, 0);
    assert_eq!(r.summary["events"], 1, "{}", r.summary);
    assert_eq!(r.summary["dead_letters"], 2, "{}", r.summary);
    assert_eq!(r.incidents.len(), 1);
    assert_eq!(r.incidents[0]["resource_id"], "/good");
}

/// The dead letters under `data_dir`, one JSON object per line.
fn dead_letter_lines(data_dir: &Path) -> Vec<serde_json::Value> {
    let mut lines = Vec::new();
    let Ok(dir) = std::fs::read_dir(data_dir.join("dead_letters")) else {
        return lines;
    };
    for e in dir {
        let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
        for l in text.lines() {
            lines.push(serde_json::from_str::<serde_json::Value>(l).unwrap());
        }
    }
    lines
}

/// A path that does not exist is a mistake on the command line or in the configuration, not
/// a dead letter: `replay` and `validate` exit 2 and name it, and nothing is written.
#[test]
fn a_missing_input_or_configured_path_is_an_error_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    let out = Command::new(bin())
        .args(["replay", "/nonexistent/x.json", "--json", "--data-dir"])
        .arg(&data_dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: cannot replay: /nonexistent/x.json does not exist\n"
    );
    assert!(!data_dir.exists(), "nothing is written");

    let incoming = tmp.path().join("incoming");
    let config = tmp.path().join("pipeline.toml");
    std::fs::write(
        &config,
        format!(
            "[[sources]]\ntype = \"files\"\npaths = [{:?}]\n",
            incoming.display().to_string()
        ),
    )
    .unwrap();
    let out = Command::new(bin())
        .arg("validate")
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "error: invalid configuration ({}): sources[0].paths[0]: {} does not exist\n",
            config.display(),
            incoming.display()
        )
    );
    std::fs::create_dir(&incoming).unwrap();
    let out = Command::new(bin())
        .arg("validate")
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A binary file (an executable, a core dump) holds NUL bytes and, by chance, many newlines:
/// it is one dead letter with the whole file, not one per "line".
#[test]
fn a_binary_file_is_one_dead_letter_not_one_per_line() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    let mut binary = b"\x7fELF\x02\x01\x01\x00\x00\x00".to_vec();
    for i in 0..500u32 {
        binary.extend_from_slice(&i.to_le_bytes());
        binary.extend_from_slice(b"{\"x\":1}\n\x00\xff");
    }
    std::fs::write(input.join("core"), &binary).unwrap();
    let data_dir = tmp.path().join("data");
    let r = replay(&[&input], &data_dir, None);
    assert_eq!(r.status, 0);
    assert_eq!(r.summary["dead_letters"], 1, "{}", r.summary);
    assert_eq!(r.summary["events"], 0, "{}", r.summary);
    let lines = dead_letter_lines(&data_dir);
    assert_eq!(lines.len(), 1);
    assert_eq!(
        lines[0]["reason"],
        "binary data (NUL byte at offset 7), not JSON text"
    );
    let kept = base64::engine::general_purpose::STANDARD
        .decode(lines[0]["data_base64"].as_str().unwrap())
        .unwrap();
    assert_eq!(kept, binary, "the whole file is kept");
}

/// CloudTrail Insights records (an Insight on TerminateInstances and the end of one on
/// GetRole errors) are kept in the raw history and never taken for calls: no change-rule
/// incident for the TerminateInstances Insight, and the Insight's start is one
/// `cloudtrail_insight` finding with its API and rates, which opens one review incident.
#[test]
fn insights_records_are_history_and_a_finding_of_their_own_never_a_change() {
    let tmp = tempfile::tempdir().unwrap();
    let input = root().join("ingest/tests/fixtures/shapes/insights_log_file.json");
    let r = replay(&[&input], tmp.path(), None);
    assert_eq!(r.status, 0);
    assert_eq!(
        r.summary,
        serde_json::json!({"kind": "summary", "events": 2, "dead_letters": 0, "duplicates": 0,
            "findings": 1, "incidents": 1, "suppressed_findings": 0, "archived_rows": 2,
            "control_messages": 0, "digest_files": 0, "skipped_files": 0, "skipped_inputs": 0,
            "inputs_read": 1, "input_bytes": 1827, "out_of_range_events": 0,
            "reorder_early_releases": 0, "out_of_order_events": 0})
    );
    assert_eq!(
        incident_keys(&r),
        owned(&[(
            "TerminateInstances",
            "aws_api",
            "ec2.amazonaws.com:TerminateInstances",
            "MANUAL_REVIEW",
            ""
        )])
    );
    assert_eq!(r.incidents[0]["detector"], "cloudtrail_insight");
    assert_eq!(parquet_rows(tmp.path(), "raw"), 2);
    assert_eq!(parquet_rows(tmp.path(), "findings"), 1);
    let out = Command::new(bin())
        .args(["incidents", "show", "--data-dir"])
        .arg(tmp.path())
        .arg(r.incidents[0]["incident_id"].as_str().unwrap())
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    for line in [
        "Resource:  aws_api ec2.amazonaws.com:TerminateInstances",
        "Summary:   CloudTrail Insight (ApiCallRateInsight): ec2.amazonaws.com TerminateInstances calls at 12.5/min against a baseline of 0.0104166667/min",
        "  - 1e92942a0861209a rate_anomaly cloudtrail_insight at 2024-03-05T13:05:00.000000Z (score 1.0000, HIGH)",
        "      series: cloudtrail_insight:ApiCallRateInsight:ec2.amazonaws.com:TerminateInstances",
        "  events: d4000000-0000-4000-8000-000000000001",
    ] {
        assert!(text.lines().any(|l| l == line), "{line:?} not in\n{text}");
    }
}
