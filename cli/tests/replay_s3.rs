//! `aiops replay s3://bucket/prefix --from --to` against the local S3 emulator (moto): the
//! trail's day folders outside the range are never listed, files are chosen by their
//! delivery time, and the events and incidents are those of a replay of the same files from
//! disk. Skipped without `AIOPS_MOTO_ENDPOINT` (run by `./scripts/test`), failed under CI.

use aiops_aws::objects::{ObjectStore, S3Config, S3ObjectStore};
use flate2::Compression;
use flate2::write::GzEncoder;
use std::io::Write;
use std::path::Path;
use std::process::Command;

const ACCOUNT: &str = "123456789012";

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// A CloudTrail record of SSM `name` on parameter `param` at `time` (RFC 3339).
fn record(id: &str, name: &str, param: &str, time: &str) -> serde_json::Value {
    serde_json::json!({"eventVersion": "1.09", "eventTime": time,
        "userIdentity": {"type": "IAMUser", "arn": format!("arn:aws:iam::{ACCOUNT}:user/alice"), "accountId": ACCOUNT},
        "eventSource": "ssm.amazonaws.com", "eventName": name, "awsRegion": "us-east-1",
        "sourceIPAddress": "203.0.113.7", "userAgent": "aws-cli",
        "requestParameters": {"name": param}, "responseElements": null,
        "eventID": id, "readOnly": name.starts_with("Get"), "eventType": "AwsApiCall",
        "recipientAccountId": ACCOUNT})
}

/// One CloudTrail log file: its key under the trail layout, and its gzip body.
struct LogFile {
    key: String,
    body: Vec<u8>,
}

fn log_file(day: u32, delivered: &str, records: Vec<serde_json::Value>) -> LogFile {
    let name = format!(
        "{ACCOUNT}_CloudTrail_us-east-1_202405{day:02}T{delivered}Z_f{day:02}{delivered}.json.gz"
    );
    let key = format!("AWSLogs/{ACCOUNT}/CloudTrail/us-east-1/2024/05/{day:02}/{name}");
    let body = gzip(
        serde_json::json!({ "Records": records })
            .to_string()
            .as_bytes(),
    );
    LogFile { key, body }
}

/// Five days of a trail, 2024-05-01 to 05, two files a day (delivered 10:05 and 14:05, three
/// calls each, one of them a DeleteParameter), plus two files delivered just after midnight
/// holding calls of the day before: on the 2nd (05-01T23:58, outside the range, and
/// 05-02T00:01) and on the 4th (05-03T23:59, inside, and 05-04T00:02, outside).
fn trail_files() -> Vec<LogFile> {
    let mut files = Vec::new();
    let mut n = 0u32;
    let mut id = || {
        n += 1;
        format!("e0000000-0000-4000-8000-{n:012}")
    };
    for day in 1..=5u32 {
        for (hour, delivered) in [(10, "1005"), (14, "1405")] {
            let t = |m: u32| format!("2024-05-{day:02}T{hour:02}:{m:02}:00Z");
            files.push(log_file(
                day,
                delivered,
                vec![
                    record(&id(), "GetParameter", "/app/config", &t(0)),
                    record(&id(), "DeleteParameter", &format!("/d{day}/h{hour}"), &t(1)),
                    record(&id(), "GetParameter", "/app/config", &t(2)),
                ],
            ));
        }
    }
    files.push(log_file(
        2,
        "0005",
        vec![
            record(&id(), "DeleteParameter", "/late/d1", "2024-05-01T23:58:00Z"),
            record(&id(), "GetParameter", "/app/config", "2024-05-02T00:01:00Z"),
        ],
    ));
    files.push(log_file(
        4,
        "0010",
        vec![
            record(&id(), "DeleteParameter", "/late/d3", "2024-05-03T23:59:00Z"),
            record(
                &id(),
                "DeleteParameter",
                "/early/d4",
                "2024-05-04T00:02:00Z",
            ),
        ],
    ));
    files
}

struct Replay {
    incidents: Vec<serde_json::Value>,
    summary: serde_json::Value,
}

fn replay(input: &str, data_dir: &Path, endpoint: &str) -> Replay {
    let out = Command::new(env!("CARGO_BIN_EXE_aiops"))
        .args([
            "replay",
            input,
            "--from",
            "2024-05-02",
            "--to",
            "2024-05-04",
            "--json",
        ])
        .arg("--data-dir")
        .arg(data_dir)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_ENDPOINT_URL", endpoint)
        .env_remove("AWS_PROFILE")
        .current_dir(data_dir.parent().unwrap())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let summary = lines.pop().unwrap();
    Replay {
        incidents: lines,
        summary,
    }
}

fn incident_keys(r: &Replay) -> Vec<(String, String, String)> {
    let mut v: Vec<_> = r
        .incidents
        .iter()
        .map(|i| {
            let s = |k: &str| i[k].as_str().unwrap_or("").to_string();
            (s("resource_id"), s("state"), s("action"))
        })
        .collect();
    v.sort();
    v
}

#[test]
fn s3_replay_lists_only_the_days_of_the_range_and_matches_a_local_replay() {
    let Some(endpoint) = aiops_core::testenv::moto_endpoint(
        "s3_replay_lists_only_the_days_of_the_range_and_matches_a_local_replay",
    ) else {
        return;
    };
    let bucket = format!("aiops-trail-{}", uuid::Uuid::new_v4().simple());
    let files = trail_files();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(&endpoint)
            .test_credentials()
            .load()
            .await;
        let s3 = aiops_aws::sdk::s3_client(&sdk, true);
        aiops_aws::setup::ensure_bucket(&s3, &bucket, Some("us-east-1"))
            .await
            .unwrap();
        let store = S3ObjectStore::new(s3, &bucket, S3Config::default());
        for f in &files {
            store
                .put(&f.key, f.body.clone(), "application/gzip")
                .await
                .unwrap();
        }
        // A digest file and another service's logs: never listed.
        for key in [
            format!("AWSLogs/{ACCOUNT}/CloudTrail-Digest/us-east-1/2024/05/02/{ACCOUNT}_CloudTrail-Digest_us-east-1_t_us-east-1_20240502T100500Z.json.gz"),
            format!("AWSLogs/{ACCOUNT}/vpcflowlogs/us-east-1/2024/05/02/flow.log.gz"),
        ] {
            store.put(&key, gzip(b"{}"), "application/gzip").await.unwrap();
        }
    });

    let tmp = tempfile::tempdir().unwrap();
    let from_s3 = replay(
        &format!("s3://{bucket}/AWSLogs/"),
        &tmp.path().join("s3-data"),
        &endpoint,
    );
    // Listed: the day folders 02, 03 and 04 (files delivered early on the 4th may hold calls
    // of the 3rd): 3 + 2 + 3 objects. Read: all of the 2nd and 3rd, and of the 4th only the
    // file delivered at 00:10 (within an hour of the range's end). Requests: AWSLogs/, the
    // account, CloudTrail/, the region, 2024/, 05/ and the three days.
    let s = &from_s3.summary;
    assert_eq!(
        (
            &s["day_prefixes"],
            &s["objects_listed"],
            &s["objects_selected"],
            &s["list_requests"],
            &s["inputs_read"]
        ),
        (
            &serde_json::json!(3),
            &serde_json::json!(8),
            &serde_json::json!(6),
            &serde_json::json!(9),
            &serde_json::json!(6)
        ),
        "{s}"
    );
    // Events of [05-02, 05-04): 3 + 3 + 1 on the 2nd, 6 on the 3rd, 1 delivered on the 4th;
    // 05-01T23:58 and 05-04T00:02 dropped.
    assert_eq!(
        (
            &s["events"],
            &s["out_of_range_events"],
            &s["incidents"],
            &s["dead_letters"]
        ),
        (
            &serde_json::json!(14),
            &serde_json::json!(2),
            &serde_json::json!(5),
            &serde_json::json!(0)
        ),
        "{s}"
    );
    let restored = |p: &str| (p.to_string(), "RESOLVED".to_string(), "restore".to_string());
    assert_eq!(
        incident_keys(&from_s3),
        vec![
            restored("/d2/h10"),
            restored("/d2/h14"),
            restored("/d3/h10"),
            restored("/d3/h14"),
            restored("/late/d3"),
        ]
    );

    // The same files from disk, laid out as in the bucket: the same events and incidents.
    let local = tmp.path().join("local");
    for f in &files {
        let day: &str = f.key.split('/').nth(6).unwrap();
        let name = f.key.rsplit('/').next().unwrap();
        let read_from_s3 = matches!(day, "02" | "03") || name.contains("T0010Z");
        if read_from_s3 {
            let path = local.join(day).join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, &f.body).unwrap();
        }
    }
    let from_disk = replay(
        local.to_str().unwrap(),
        &tmp.path().join("local-data"),
        &endpoint,
    );
    for field in [
        "events",
        "out_of_range_events",
        "duplicates",
        "archived_rows",
        "findings",
        "incidents",
        "inputs_read",
        "input_bytes",
    ] {
        assert_eq!(from_disk.summary[field], s[field], "{field}");
    }
    assert_eq!(incident_keys(&from_disk), incident_keys(&from_s3));

    // Again into the same data directory: every object is skipped by its content.
    let again = replay(
        &format!("s3://{bucket}/AWSLogs/"),
        &tmp.path().join("s3-data"),
        &endpoint,
    );
    let a = &again.summary;
    assert_eq!(
        (
            &a["skipped_inputs"],
            &a["inputs_read"],
            &a["events"],
            &a["incidents"]
        ),
        (
            &serde_json::json!(6),
            &serde_json::json!(0),
            &serde_json::json!(0),
            &serde_json::json!(0)
        ),
        "{a}"
    );
}
