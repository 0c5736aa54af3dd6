//! End-to-end test of `aiops bench --mode aws`: the stage processes on the moto emulator.
//!
//! Needs `AIOPS_MOTO_ENDPOINT` (set by `./scripts/test`, or `scripts/moto-server start`);
//! without it the test prints why and passes without running. The same generated input goes
//! through the embedded pipeline first: both modes must decode the same events, drop the same
//! duplicates and find the same change-rule findings.

use std::path::Path;
use std::process::Command;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_aiops")
}

/// An aws-mode configuration on the emulator with resource names of this test only and
/// short timings (as `tests/python/aws_support.py` writes them).
fn write_config(path: &Path, endpoint: &str) {
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let tag = &tag[..10];
    std::fs::write(
        path,
        format!(
            r#"mode = "aws"

[aws]
region = "us-east-1"
endpoint_url = "{endpoint}"
raw_stream = "bench-raw-{tag}"
events_stream = "bench-events-{tag}"
decisions_stream = "bench-decisions-{tag}"
raw_shards = 2
events_shards = 2
decisions_shards = 1
leases_table = "bench-leases-{tag}"
incidents_table = "bench-incidents-{tag}"
locks_table = "bench-locks-{tag}"
patterns_table = "bench-patterns-{tag}"
history_bucket = "aiops-bench-{tag}"
history_prefix = "history"
checkpoint_interval_ms = 500

[aws.consumer]
idle_sleep_ms = 200
parent_poll_ms = 500

[aws.leases]
failover_ms = 3000
renew_interval_ms = 1000
take_interval_ms = 500
shard_sync_interval_ms = 5000

[archive]
max_file_age_secs = 2
max_rows_per_file = 2000
"#
        ),
    )
    .unwrap();
}

fn bench(mode: &str, work_dir: &Path, config: Option<&Path>, endpoint: &str) -> serde_json::Value {
    let mut cmd = Command::new(bin());
    cmd.args([
        "bench",
        "--mode",
        mode,
        "--events",
        "2000",
        "--destructive-per-million",
        "20000",
        "--warmup-secs",
        "0",
        "--timeout-secs",
        "300",
        "--json",
    ])
    .arg("--work-dir")
    .arg(work_dir)
    .env("AWS_ACCESS_KEY_ID", "testing")
    .env("AWS_SECRET_ACCESS_KEY", "testing")
    .env("AWS_REGION", "us-east-1")
    .env("AWS_EC2_METADATA_DISABLED", "true")
    .env("AWS_ENDPOINT_URL", endpoint)
    .env_remove("AWS_PROFILE")
    .env_remove("AIOPS_WORKER_ID");
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "aiops bench --mode {mode} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[test]
fn aws_mode_accounts_for_every_event_through_the_stage_processes() {
    let Some(endpoint) = aiops_core::testenv::moto_endpoint(
        "aws_mode_accounts_for_every_event_through_the_stage_processes",
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pipeline.aws.toml");
    write_config(&config, &endpoint);
    let embedded = bench("embedded", dir.path(), None, &endpoint);
    let aws = bench("aws", dir.path(), Some(&config), &endpoint);

    assert_eq!(aws["kind"], "bench");
    assert_eq!(aws["mode"], "aws");
    // The same cached input, the same decoding, de-duplication and change rules.
    for field in [
        "records",
        "bytes",
        "events",
        "duplicates",
        "dead_letters",
        "change_findings",
    ] {
        assert_eq!(aws[field], embedded[field], "{field}");
    }
    let change = aws["change_findings"].as_u64().unwrap();
    assert!(change > 0, "the input must hold destructive calls");
    // Every change-rule finding was matched to the PutRecords call of its record.
    assert_eq!(aws["change_findings_measured"].as_u64(), Some(change));
    assert!(aws["latency_p50_ms"].as_f64().unwrap() > 0.0);
    assert!(aws["latency_p99_ms"].as_f64().unwrap() >= aws["latency_p50_ms"].as_f64().unwrap());
    assert_eq!(aws["latency_max_ms"], aws["latency_max_all_ms"]);
    // Every event but the duplicates was archived by ingest.
    assert_eq!(
        aws["archived_rows"].as_u64().unwrap(),
        aws["events"].as_u64().unwrap() - aws["duplicates"].as_u64().unwrap()
    );
    assert!(aws["findings"].as_u64().unwrap() >= change);
    assert!(aws["incidents"].as_u64().unwrap() >= 1);
    assert!(aws["peak_rss_mib"].as_f64().unwrap() > 0.0);
    assert!(aws["cpu_secs"].as_f64().unwrap() > 0.0);
    // Not reported by the stage processes.
    assert_eq!(aws["series"], 0);
    assert_eq!(aws["templates"], 0);
}
