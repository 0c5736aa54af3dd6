//! `aiops bench`: the end-to-end benchmark command, as a user runs it.
//!
//! Figures that depend on the machine (events per second, latency, memory) are not asserted
//! here (they live in benches/README.md); what is asserted is what the run must account for:
//! every generated event decoded, archived or dropped as a duplicate, every generated
//! destructive call found by the change rules, nothing left behind.

use std::path::Path;
use std::process::Command;

fn aiops() -> Command {
    Command::new(env!("CARGO_BIN_EXE_aiops"))
}

fn bench_json(work_dir: &Path, extra: &[&str]) -> serde_json::Value {
    let out = aiops()
        .args(["bench", "--events", "20000", "--json", "--work-dir"])
        .arg(work_dir)
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "aiops bench failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// What the generator (seed 7, 20,000 events, 2,000 destructive calls per million) makes for a
/// fixed end of event time: (end, records, bytes of the records). The counts are the same for
/// every end date (the traffic's shape depends on the time of day only, and every input ends at
/// a midnight); the byte size is exact for each date (timestamps are part of the payloads).
const FIXED_ENDS: [(&str, u64, u64); 3] = [
    ("2025-06-17", 16728, BYTES_2025_06_17),
    // A month end and a leap day.
    ("2025-01-31", 16728, BYTES_2025_01_31),
    ("2024-02-29", 16728, BYTES_2024_02_29),
];
const BYTES_2025_06_17: u64 = 13_171_126;
const BYTES_2025_01_31: u64 = 13_171_445;
const BYTES_2024_02_29: u64 = 13_171_119;

#[test]
fn bench_accounts_for_every_generated_event_and_destructive_call() {
    for (end, records, bytes) in FIXED_ENDS {
        let dir = tempfile::tempdir().unwrap();
        let extra = [
            "--destructive-per-million",
            "2000",
            "--warmup-secs",
            "0",
            "--end-time",
            end,
        ];
        let r = bench_json(dir.path(), &extra);
        assert_eq!(r["kind"], "bench");
        assert_eq!(r["mode"], "embedded");
        // The generator (seed 7) makes exactly these records and events.
        assert_eq!(r["events"], 20000, "{end}");
        assert_eq!(r["records"], records, "{end}");
        assert_eq!(r["bytes"], bytes, "{end}");
        // Producer retries are dropped; every other event is archived; nothing is a dead letter.
        assert_eq!(r["duplicates"], 16, "{end}");
        assert_eq!(r["archived_rows"], 19984, "{end}");
        assert_eq!(r["dead_letters"], 0, "{end}");
        // The 17 destructive calls in the input are 17 change-rule findings, each an incident.
        assert_eq!(r["change_findings"], 17, "{end}");
        assert_eq!(r["change_findings_measured"], 17, "{end}");
        assert!(r["incidents"].as_u64().unwrap() >= 17);
        let p50 = r["latency_p50_ms"].as_f64().unwrap();
        let p99 = r["latency_p99_ms"].as_f64().unwrap();
        let max = r["latency_max_ms"].as_f64().unwrap();
        assert!(0.0 <= p50 && p50 <= p99 && p99 <= max, "{r}");
        assert!(r["peak_rss_mib"].as_f64().unwrap() > 0.0);
        assert!(r["cpu_secs"].as_f64().unwrap() > 0.0);
        assert!(r["series"].as_u64().unwrap() > 1000);
        assert_eq!(r["log_groups"], 200);

        // The input is generated once and reused; the run's data directory is removed.
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        assert!(names[0].starts_with("input-") && names[0].ends_with(".bin"));
        let again = bench_json(dir.path(), &extra);
        assert_eq!(again["records"], records);
        assert_eq!(again["bytes"], bytes);
        assert_eq!(again["change_findings"], 17);
    }
}

#[test]
fn bench_refuses_an_end_time_in_the_future_or_not_a_time() {
    let dir = tempfile::tempdir().unwrap();
    for (end, says) in [
        ("2999-01-01", "in the future"),
        ("yesterday", "expected RFC 3339 or YYYY-MM-DD"),
        ("2000-01-01", "before 2000"),
    ] {
        let out = aiops()
            .args([
                "bench",
                "--events",
                "100",
                "--json",
                "--end-time",
                end,
                "--work-dir",
            ])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(!out.status.success(), "{end}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{end}: {err}");
    }
}

#[test]
fn bench_keeps_its_data_directory_on_request_with_readable_parquet() {
    let dir = tempfile::tempdir().unwrap();
    let r = bench_json(dir.path(), &["--keep"]);
    assert_eq!(r["dead_letters"], 0);
    let run = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_dir())
        .expect("the run directory is kept");
    // Parquet partitions of both sources, and the incident store.
    assert!(run.join("raw/source=cloudtrail").is_dir());
    assert!(run.join("raw/source=logs").is_dir());
    assert!(run.join("incidents.sqlite").is_file());
}

#[test]
fn bench_refuses_bad_arguments_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    for (args, message) in [
        (
            vec!["--events", "0"],
            "--events must be between 1 and 1000000000",
        ),
        (
            vec!["--rate=-5"],
            "--rate must be a non-negative number of events per second",
        ),
        (
            vec!["--cloudtrail-share", "1.5"],
            "--cloudtrail-share must be in [0, 1]",
        ),
        (
            vec!["--batch-records", "0"],
            "--batch-records must be between 1 and 10000",
        ),
    ] {
        let out = aiops()
            .arg("bench")
            .args(&args)
            .arg("--work-dir")
            .arg(dir.path())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(message), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn a_damaged_cached_input_is_regenerated_or_fails_the_run_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let first = bench_json(dir.path(), &[]);
    let input = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "bin"))
        .unwrap();
    // Truncated: its size no longer matches its header, so it is generated again.
    let len = std::fs::metadata(&input).unwrap().len();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&input)
        .unwrap();
    f.set_len(len / 2).unwrap();
    drop(f);
    let again = bench_json(dir.path(), &[]);
    assert_eq!(again["records"], first["records"]);
    assert_eq!(again["events"], 20000);
    // Garbled in the middle, same size: the run fails and names the file.
    let mut bytes = std::fs::read(&input).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid..mid + 4096].fill(0xff);
    std::fs::write(&input, &bytes).unwrap();
    let out = aiops()
        .args(["bench", "--events", "20000", "--work-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("reading the bench input failed"),
        "{stderr}"
    );
    assert!(stderr.contains(&input.display().to_string()), "{stderr}");
    assert!(out.stdout.is_empty());
    // No run directory is left behind.
    let dirs = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().is_dir())
        .count();
    assert_eq!(dirs, 0);
}
