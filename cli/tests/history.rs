//! End-to-end tests of the history commands: `aiops backtest` reproduces what the live
//! pipeline found; its precision/recall on NAB-style series agree with `aiops eval nab`; and
//! `aiops learn` makes a freshly started detect see at once what a cold one misses.

use aiops_core::{CloudTrailFields, Event, EventBody, LogFields, LogLevel, Position, Principal};
use aiops_ingest::archive::{ArchiveConfig, LocalArchive};
use flate2::Compression;
use flate2::write::GzEncoder;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

const MIN: i64 = 60_000_000;
/// 2024-05-01T00:00:00Z.
const DAY0: i64 = 1_714_521_600_000_000;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_aiops")
}

fn shared_data() -> PathBuf {
    std::env::var_os("AIOPS_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data"))
}

fn run_json(args: &[&str]) -> serde_json::Value {
    let out = Command::new(bin()).args(args).output().expect("run aiops");
    assert!(
        out.status.success(),
        "aiops {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    let last = stdout.lines().last().expect("output");
    serde_json::from_str(last).expect("json")
}

fn gz(data: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// One CloudWatch Logs subscription payload (gzip) of `lines` `(time µs, message)`.
fn cwl_payload(group: &str, lines: &[(i64, String)]) -> Vec<u8> {
    let events: Vec<serde_json::Value> = lines
        .iter()
        .enumerate()
        .map(|(i, (t, m))| {
            serde_json::json!({"id": format!("{group}-{t}-{i}"), "timestamp": t / 1000, "message": m})
        })
        .collect();
    gz(serde_json::json!({
        "messageType": "DATA_MESSAGE", "owner": "111122223333", "logGroup": group,
        "logStream": "task-1", "subscriptionFilters": ["aiops"], "logEvents": events,
    })
    .to_string()
    .as_bytes())
}

fn ct_record(
    id: &str,
    t: i64,
    name: &str,
    user: &str,
    params: serde_json::Value,
) -> serde_json::Value {
    serde_json::json!({
        "eventVersion": "1.09",
        "userIdentity": {"type": "IAMUser", "arn": format!("arn:aws:iam::111122223333:user/{user}"),
                         "accountId": "111122223333", "userName": user},
        "eventTime": aiops_core::time::format_rfc3339_micros(t),
        "eventSource": if name.starts_with("Delete") { "ssm.amazonaws.com" } else { "s3.amazonaws.com" },
        "eventName": name, "awsRegion": "us-east-1", "sourceIPAddress": "203.0.113.7",
        "userAgent": "aws-cli/2", "eventID": id, "eventType": "AwsApiCall",
        "readOnly": !name.starts_with("Delete"), "requestParameters": params,
        "recipientAccountId": "111122223333",
    })
}

/// Three hours of traffic as per-minute files (every file holds one minute, files sort by
/// minute, so the live pipeline sees the events in event-time order): two log groups, an
/// ERROR burst at 02:00, an S3 call per minute, a DeleteParameter at 02:30.
fn write_replay_input(dir: &Path) {
    for m in 0..180i64 {
        let t = DAY0 + m * MIN;
        let mut calls = vec![ct_record(
            &format!("ct-{m}"),
            t,
            "GetObject",
            "app",
            serde_json::json!({"bucketName": "b"}),
        )];
        if m == 150 {
            calls.push(ct_record(
                "ct-del",
                t + 1_000_000,
                "DeleteParameter",
                "alice",
                serde_json::json!({"name": "/prod/db"}),
            ));
        }
        let ct = serde_json::json!({ "Records": calls }).to_string();
        std::fs::write(dir.join(format!("m{m:04}-a-cloudtrail.json")), ct).unwrap();
        let mut errors: Vec<(i64, String)> = (0..2)
            .map(|k| {
                (
                    t + 5_000_000 + k * 20_000_000,
                    format!("ERROR upstream timeout {k}"),
                )
            })
            .collect();
        if m == 120 {
            errors.extend((0..40).map(|k| {
                (
                    t + 1_000_000 * (k + 10),
                    format!("ERROR payment {k} declined"),
                )
            }));
            errors.sort();
        }
        std::fs::write(
            dir.join(format!("m{m:04}-b-checkout.json.gz")),
            cwl_payload("/ecs/checkout", &errors),
        )
        .unwrap();
        let info: Vec<(i64, String)> = (0..4)
            .map(|k| {
                (
                    t + 2_000_000 + k * 14_000_000,
                    format!("INFO GET /api/items/{} 200", m * 4 + k),
                )
            })
            .collect();
        std::fs::write(
            dir.join(format!("m{m:04}-c-web.json.gz")),
            cwl_payload("/ecs/web", &info),
        )
        .unwrap();
    }
}

#[test]
fn backtest_of_a_replayed_history_finds_what_the_replay_found() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("input");
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&input).unwrap();
    write_replay_input(&input);
    let summary = run_json(&[
        "replay",
        input.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(summary["events"], 180 * 7 + 1 + 40);
    let live_findings = summary["findings"].as_u64().unwrap();
    assert!(live_findings >= 2, "{summary}");
    let result = run_json(&[
        "backtest",
        "--history",
        data.to_str().unwrap(),
        "--compare-live",
        "--json",
    ]);
    let cmp = &result["live_comparison"];
    assert_eq!(cmp["only_live"], serde_json::json!([]), "{cmp}");
    assert_eq!(cmp["only_backtest"], serde_json::json!([]), "{cmp}");
    assert_eq!(cmp["live"].as_u64(), Some(live_findings));
    assert_eq!(cmp["matching"].as_u64(), Some(live_findings));
    assert_eq!(result["figures"]["events"].as_u64(), Some(180 * 7 + 1 + 40));
    let findings = result["findings"].as_array().unwrap();
    let detectors: BTreeSet<&str> = findings
        .iter()
        .map(|f| f["detector"].as_str().unwrap())
        .collect();
    assert!(detectors.contains("ssm_delete_parameter"), "{detectors:?}");
    assert!(detectors.contains("log_level_rate"), "{detectors:?}");
    // A time range keeps only its events and findings.
    let part = run_json(&[
        "backtest",
        "--history",
        data.to_str().unwrap(),
        "--from",
        "2024-05-01T02:20:00Z",
        "--to",
        "2024-05-01T02:40:00Z",
        "--json",
    ]);
    assert_eq!(part["figures"]["events"].as_u64(), Some(20 * 7 + 1));
    let ids: Vec<&str> = part["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["detector"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"ssm_delete_parameter"));
}

fn findings_of(result: &serde_json::Value) -> Vec<aiops_core::Finding> {
    result["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| serde_json::from_value(f.clone()).expect("a finding"))
        .collect()
}

#[test]
fn compare_live_names_findings_only_live_only_in_the_backtest_and_those_that_differ() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("input");
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&input).unwrap();
    write_replay_input(&input);
    // A burst of the web service's GETs at 01:40, a finding both sides make alike.
    let gets: Vec<(i64, String)> = (0..60)
        .map(|k| {
            (
                DAY0 + 100 * MIN + (k + 1) * 500_000,
                format!("INFO GET /api/items/{} 200", 9000 + k),
            )
        })
        .collect();
    std::fs::write(
        input.join("m0100-d-web.json.gz"),
        cwl_payload("/ecs/web", &gets),
    )
    .unwrap();
    run_json(&[
        "replay",
        input.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
        "--json",
    ]);
    let history = data.to_str().unwrap();
    let args = ["backtest", "--history", history, "--compare-live", "--json"];
    let findings = findings_of(&run_json(&args));
    let n = findings.len();
    // Three findings: the ERROR burst, the GET burst, the DeleteParameter.
    assert_eq!(n, 3, "{findings:#?}");
    // The live table as the live run might have left it: the change rule's finding missing,
    // the ERROR burst's with another score, and a finding the backtest does not make.
    let rule = findings
        .iter()
        .find(|f| f.detector == "ssm_delete_parameter")
        .expect("the DeleteParameter finding")
        .clone();
    let burst = findings
        .iter()
        .find(|f| f.evidence.series_key.as_deref() == Some("log_level:/ecs/checkout:ERROR"))
        .expect("the ERROR burst's finding")
        .clone();
    assert_eq!(
        burst.evidence.window,
        Some((DAY0 + 120 * MIN, DAY0 + 121 * MIN))
    );
    let mut rescored = burst.clone();
    rescored.score = burst.score - 0.25;
    let mut extra = burst.clone();
    extra.evidence.window = Some((DAY0 + 121 * MIN, DAY0 + 122 * MIN));
    extra.event_time = DAY0 + 122 * MIN;
    extra.finding_id = "live-only".into();
    std::fs::remove_dir_all(data.join("findings")).unwrap();
    let mut table = aiops_ingest::archive::LocalTableWriter::<aiops_core::Finding>::new(
        &data,
        "edited",
        ArchiveConfig::default(),
    );
    for f in findings
        .iter()
        .filter(|f| f.finding_id != rule.finding_id && f.finding_id != burst.finding_id)
        .cloned()
        .chain([rescored, extra])
    {
        table.append(f).unwrap();
    }
    table.flush().unwrap();

    let result = run_json(&args);
    let cmp = &result["live_comparison"];
    let count = |k: &str| cmp[k].as_u64().unwrap() as usize;
    assert_eq!(
        [
            "live",
            "backtest",
            "matching",
            "differing",
            "only_live_count",
            "only_backtest_count",
            "live_duplicate_rows"
        ]
        .map(count),
        [n, n, n - 2, 1, 1, 1, 0],
        "{cmp}"
    );
    assert_eq!(
        cmp["differences"],
        serde_json::json!([{
            "kind": "rate_anomaly",
            "key": "log_level:/ecs/checkout:ERROR",
            "window_start": DAY0 + 120 * MIN,
            "window_start_text": "2024-05-01T02:00:00.000000Z",
            "fields": [{"field": "score", "live": burst.score - 0.25, "backtest": burst.score}],
        }])
    );
    assert_eq!(
        cmp["only_live"],
        serde_json::json!([{
            "kind": "rate_anomaly",
            "key": "log_level:/ecs/checkout:ERROR",
            "window_start": DAY0 + 121 * MIN,
            "window_start_text": "2024-05-01T02:01:00.000000Z",
            "finding_id": "live-only",
            "score": burst.score,
        }])
    );
    assert_eq!(
        cmp["only_backtest"],
        serde_json::json!([{
            "kind": "change_rule",
            "key": "ssm_delete_parameter 111122223333/us-east-1/ssm_parameter//prod/db",
            "window_start": DAY0 + 150 * MIN + 1_000_000,
            "window_start_text": "2024-05-01T02:30:01.000000Z",
            "finding_id": rule.finding_id,
            "score": 1.0,
        }])
    );
    // The same in text.
    let out = Command::new(bin())
        .args(["backtest", "--history", history, "--compare-live"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with("FINDING ") && !l.starts_with("backtest of "))
        .collect();
    assert_eq!(
        lines,
        [
            format!(
                "ONLY LIVE     2024-05-01T02:01:00.000000Z rate_anomaly  log_level:/ecs/checkout:ERROR score={:.2} finding live-only",
                burst.score
            ),
            format!(
                "ONLY BACKTEST 2024-05-01T02:30:01.000000Z change_rule   ssm_delete_parameter 111122223333/us-east-1/ssm_parameter//prod/db score=1.00 finding {}",
                rule.finding_id
            ),
            format!(
                "DIFFERS       2024-05-01T02:00:00.000000Z rate_anomaly  log_level:/ecs/checkout:ERROR | score: live {:?} backtest {:?}",
                burst.score - 0.25,
                burst.score
            ),
            format!(
                "live findings table: {n} findings (0 duplicate rows), backtest {n}; matching {}, differing 1, only live 1, only backtest 1",
                n - 2
            ),
        ]
    );
}

/// A NAB-style corpus: `timestamp,value` series at 5-minute steps, with labelled windows.
fn write_nab_corpus(dir: &Path) -> BTreeMap<String, Vec<(String, String)>> {
    let cat = dir.join("data").join("synthetic");
    std::fs::create_dir_all(&cat).unwrap();
    let mut labels = BTreeMap::new();
    for (s, (spikes, noise)) in [(vec![1400usize, 2600], 3.0), (vec![2000], 1.0)]
        .into_iter()
        .enumerate()
    {
        let name = format!("series_{s}.csv");
        let mut csv = String::from("timestamp,value\n");
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ s as u64;
        for i in 0..3000usize {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let u = (x % 10_000) as f64 / 10_000.0 - 0.5;
            let daily = 10.0 * ((i % 288) as f64 / 288.0 * std::f64::consts::TAU).sin();
            let mut v = 50.0 + daily + noise * u;
            if spikes.iter().any(|&p| i >= p && i < p + 3) {
                v += 60.0;
            }
            let t = DAY0 + i as i64 * 5 * MIN;
            let ts = aiops_core::time::format_rfc3339_micros(t);
            csv.push_str(&format!("{} {},{v:.4}\n", &ts[..10], &ts[11..19]));
        }
        std::fs::write(cat.join(&name), csv).unwrap();
        let windows = spikes
            .iter()
            .map(|&p| {
                let f = |i: usize| {
                    let ts = aiops_core::time::format_rfc3339_micros(DAY0 + i as i64 * 5 * MIN);
                    format!("{} {}.000000", &ts[..10], &ts[11..19])
                };
                (f(p - 10), f(p + 10))
            })
            .collect();
        labels.insert(format!("synthetic/{name}"), windows);
    }
    labels
}

/// The metric stream JSON lines of a NAB corpus: one data point per row (max = min = sum =
/// value, count 1), namespace `NAB`, metric `value`, dimension `series` = the series path.
fn nab_to_metric_stream(data: &Path, out: &Path) -> usize {
    let mut lines = Vec::new();
    let mut cats: Vec<PathBuf> = std::fs::read_dir(data)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    cats.sort();
    for cat in cats {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&cat)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for f in files {
            let series = format!(
                "{}/{}",
                cat.file_name().unwrap().to_string_lossy(),
                f.file_name().unwrap().to_string_lossy()
            );
            for row in std::fs::read_to_string(&f).unwrap().lines().skip(1) {
                let (ts, v) = row.split_once(',').unwrap();
                let t = aiops_core::time::parse_timestamp_micros(ts).unwrap();
                let v: f64 = v.trim().parse().unwrap();
                lines.push((t, serde_json::json!({
                    "metric_stream_name": "nab", "account_id": "111122223333", "region": "us-east-1",
                    "namespace": "NAB", "metric_name": "value", "dimensions": {"series": series},
                    "timestamp": t / 1000, "value": {"max": v, "min": v, "sum": v, "count": 1.0},
                    "unit": "None"
                }).to_string()));
            }
        }
    }
    // One file per series is fine: each series has its own window sequence, and the rows of
    // one series are in time order; but the watermark is shared, so feed all in time order.
    lines.sort_by_key(|(t, _)| *t);
    let n = lines.len();
    let text: String = lines.into_iter().map(|(_, l)| l + "\n").collect();
    std::fs::write(out, text).unwrap();
    n
}

/// The same detector as `aiops eval nab` (NabConfig: value history 4000, calibration 8000,
/// return period per hour, weekly profile, threshold 0.2, cooldown 100) inside the engine, with 5-minute windows (one row each) and
/// no idle eviction within a year (the engine forgets a series idle for `idle_eviction_secs`;
/// some NAB series pause for days).
const NAB_CONFIG: &str = r#"
[detect.statistics]
window_secs = 300
allowed_lateness_secs = 0
idle_eviction_secs = 31536000
[detect.statistics.value]
history = 4000
calibration = 8000
return_period_secs = 3600.0
weekly = true
[detect.statistics.decision]
finding_threshold = 0.2
cooldown = 100
"#;

/// Counts from `aiops eval nab --results-dir`: rows scoring at or above `threshold` inside and
/// outside labelled windows, windows with such a row, and all windows; per series.
fn eval_nab_counts(results: &Path, threshold: f64) -> (usize, usize, usize, usize) {
    let (mut inside, mut outside, mut detected, mut windows) = (0, 0, 0, 0);
    let mut files: Vec<PathBuf> = Vec::new();
    for cat in std::fs::read_dir(results.join("aiops")).unwrap() {
        for f in std::fs::read_dir(cat.unwrap().path()).unwrap() {
            files.push(f.unwrap().path());
        }
    }
    for f in files {
        let mut in_window = false;
        let mut window_hit = false;
        for row in std::fs::read_to_string(&f).unwrap().lines().skip(1) {
            let cols: Vec<&str> = row.split(',').collect();
            let score: f64 = cols[2].parse().unwrap();
            let label = cols[3] == "1";
            if label && !in_window {
                windows += 1;
                window_hit = false;
            }
            if !label && in_window && window_hit {
                detected += 1;
            }
            in_window = label;
            if score >= threshold && score > 0.0 {
                if label {
                    inside += 1;
                    window_hit = true;
                } else {
                    outside += 1;
                }
            }
        }
        if in_window && window_hit {
            detected += 1;
        }
    }
    (inside, outside, detected, windows)
}

fn check_nab_consistency(data: &Path, labels_path: &Path, tmp: &Path) -> serde_json::Value {
    let stream = tmp.join("nab-metrics.jsonl");
    let rows = nab_to_metric_stream(data, &stream);
    let config = tmp.join("nab.toml");
    std::fs::write(&config, NAB_CONFIG).unwrap();
    let history = tmp.join("history");
    let replay = run_json(&[
        "replay",
        stream.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "--data-dir",
        history.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(replay["archived_rows"].as_u64(), Some(rows as u64));
    // NAB labels (series path -> windows) converted to series keys.
    let nab_labels: BTreeMap<String, Vec<Vec<String>>> =
        serde_json::from_str(&std::fs::read_to_string(labels_path).unwrap()).unwrap();
    let converted: BTreeMap<String, &Vec<Vec<String>>> = nab_labels
        .iter()
        .filter(|(k, _)| data.join(k).exists())
        .map(|(k, w)| (format!("metric:NAB:value:series={k}"), w))
        .collect();
    let labels = tmp.join("series-labels.json");
    std::fs::write(&labels, serde_json::to_string(&converted).unwrap()).unwrap();
    let backtest = run_json(&[
        "backtest",
        "--history",
        history.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "--labels",
        labels.to_str().unwrap(),
        "--json",
    ]);
    let results = tmp.join("results");
    run_json(&[
        "eval",
        "nab",
        "--data",
        data.to_str().unwrap(),
        "--labels",
        labels_path.to_str().unwrap(),
        "--results-dir",
        results.to_str().unwrap(),
        "--json",
    ]);
    let (inside, outside, detected, windows) = eval_nab_counts(&results, 0.2);
    let l = &backtest["labels"];
    assert_eq!(l["true_findings"].as_u64(), Some(inside as u64), "{l}");
    assert_eq!(l["false_findings"].as_u64(), Some(outside as u64), "{l}");
    assert_eq!(l["detected_windows"].as_u64(), Some(detected as u64), "{l}");
    assert_eq!(l["windows"].as_u64(), Some(windows as u64), "{l}");
    let p = inside as f64 / (inside + outside).max(1) as f64;
    let r = detected as f64 / windows.max(1) as f64;
    assert!((l["precision"].as_f64().unwrap() - p).abs() < 1e-12);
    assert!((l["recall"].as_f64().unwrap() - r).abs() < 1e-12);
    backtest
}

#[test]
fn backtest_precision_and_recall_agree_with_eval_nab() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus = tmp.path().join("nab");
    let labels = write_nab_corpus(&corpus);
    let labels_path = corpus.join("combined_windows.json");
    std::fs::write(&labels_path, serde_json::to_string(&labels).unwrap()).unwrap();
    let b = check_nab_consistency(&corpus.join("data"), &labels_path, tmp.path());
    // The spikes are found.
    assert_eq!(b["labels"]["windows"].as_u64(), Some(3));
    assert_eq!(
        b["labels"]["detected_windows"].as_u64(),
        Some(3),
        "{}",
        b["labels"]
    );
}

#[test]
fn backtest_agrees_with_eval_nab_on_shared_nab_series() {
    let nab = shared_data().join("nab");
    if !nab.join("data").is_dir() {
        eprintln!("skipped: {} not present", nab.display());
        return;
    }
    // Series whose rows fall in distinct 300 s windows (aligned, no repeated timestamp), so
    // each row is one window of the engine (machine_temperature_system_failure, for one,
    // repeats 12 timestamps: the engine averages those rows, NAB scores them apart).
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    for name in [
        "realKnownCause/ambient_temperature_system_failure.csv",
        "artificialWithAnomaly/art_daily_jumpsup.csv",
    ] {
        let src = nab.join("data").join(name);
        if !src.exists() {
            continue;
        }
        let dst = data.join(name);
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        std::fs::copy(&src, &dst).unwrap();
    }
    let b = check_nab_consistency(
        &data,
        &nab.join("labels").join("combined_windows.json"),
        tmp.path(),
    );
    eprintln!("shared NAB subset: {}", b["labels"]);
}

// --- learned baselines ----------------------------------------------------------------------

/// Deterministic traffic of one minute at minute-of-history `m`: log groups with day-time
/// traffic (08:00-20:00 UTC) six to twenty times the night-time traffic, and CloudTrail calls
/// of a set of principals, each with its own rhythm.
fn minute_events(m: i64, out: &mut Vec<Event>, seq: &mut u64) {
    let t0 = DAY0 + m * MIN;
    let hour = (m % 1440) / 60;
    let day = (8..20).contains(&hour);
    let mut push = |t: i64, body: EventBody, seq: &mut u64| {
        *seq += 1;
        out.push(Event {
            event_id: format!("ev-{}", *seq),
            event_time: t,
            ingest_time: t,
            decode_warnings: Vec::new(),
            account: Some("111122223333".into()),
            region: Some("us-east-1".into()),
            position: Position {
                stream: "gen".into(),
                shard_id: "gen".into(),
                sequence_number: seq.to_string(),
                sub_sequence_number: None,
            },
            body,
        });
    };
    for (g, (night, dayn)) in [("/ecs/api", (1, 20)), ("/ecs/worker", (2, 12))] {
        let n = if day { dayn } else { night };
        for k in 0..n {
            let level = if k % 5 == 4 { "WARN" } else { "INFO" };
            let msg = format!("{level} request {} done in {} ms", m * 100 + k, 10 + k);
            push(
                t0 + (k + 1) * MIN / (n + 1),
                EventBody::Logs(LogFields {
                    log_group: g.into(),
                    log_stream: "s".into(),
                    level: LogLevel::detect(&msg),
                    message: msg,
                }),
                seq,
            );
        }
    }
    for (p, name, every) in [
        ("app", "GetObject", 1),
        ("app", "PutObject", 2),
        ("ci", "ListBuckets", 5),
    ] {
        let calls = if day { 3 } else { 1 };
        if m % every == 0 {
            for k in 0..calls {
                push(
                    t0 + 500_000 + k * 7_000_000,
                    EventBody::Cloudtrail(Box::new(CloudTrailFields {
                        event_source: "s3.amazonaws.com".into(),
                        event_name: name.into(),
                        principal: Principal {
                            arn: Some(format!("arn:aws:iam::111122223333:user/{p}")),
                            ..Principal::default()
                        },
                        read_only: Some(name != "PutObject"),
                        ..CloudTrailFields::default()
                    })),
                    seq,
                );
            }
        }
    }
}

fn write_history(dir: &Path, minutes: std::ops::Range<i64>, extra: &[Event], seq: &mut u64) {
    let mut a = LocalArchive::new(dir, ArchiveConfig::default());
    let mut buf = Vec::new();
    for m in minutes {
        buf.clear();
        minute_events(m, &mut buf, seq);
        let lo = DAY0 + m * MIN;
        buf.extend(
            extra
                .iter()
                .filter(|e| e.event_time >= lo && e.event_time < lo + MIN)
                .cloned(),
        );
        buf.sort_by_key(|e| e.event_time);
        for e in &buf {
            a.append(e).unwrap();
        }
    }
    a.flush().unwrap();
}

fn log_line(t: i64, group: &str, msg: &str, seq: &mut u64) -> Event {
    *seq += 1;
    Event {
        event_id: format!("inj-{}", *seq),
        event_time: t,
        ingest_time: t,
        decode_warnings: Vec::new(),
        account: Some("111122223333".into()),
        region: Some("us-east-1".into()),
        position: Position::default(),
        body: EventBody::Logs(LogFields {
            log_group: group.into(),
            log_stream: "s".into(),
            message: msg.into(),
            level: LogLevel::detect(msg),
        }),
    }
}

#[test]
fn learned_baselines_make_a_fresh_detect_see_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let learn_dir = tmp.path().join("learn");
    let day_dir = tmp.path().join("day");
    let mut seq = 0;
    // Four days of history.
    write_history(&learn_dir, 0..4 * 1440, &[], &mut seq);
    let baselines = tmp.path().join("baselines.json");
    let learned = run_json(&[
        "learn",
        "--history",
        learn_dir.to_str().unwrap(),
        "--out",
        baselines.to_str().unwrap(),
        "--json",
    ]);
    assert!(
        learned["summary"]["series"].as_u64().unwrap() >= 8,
        "{learned}"
    );
    assert_eq!(learned["summary"]["log_groups"].as_u64(), Some(2));
    // The fifth day, with three incidents: an ERROR burst at 00:10 (before a cold model scores
    // anything), a new FATAL template at 09:00, a WARN burst in the worker at 10:30.
    let start = 4 * 1440;
    let at = |h: i64, m: i64| DAY0 + (4 * 1440 + h * 60 + m) * MIN;
    let mut inj = Vec::new();
    for k in 0..40 {
        inj.push(log_line(
            at(0, 10) + k * 1_000_000,
            "/ecs/api",
            &format!("ERROR db pool exhausted {k}"),
            &mut seq,
        ));
    }
    inj.push(log_line(
        at(9, 0) + 30_000_000,
        "/ecs/api",
        "FATAL disk /var/lib full, shutting down",
        &mut seq,
    ));
    for k in 0..50 {
        inj.push(log_line(
            at(10, 30) + k * 1_000_000,
            "/ecs/worker",
            &format!("WARN retry {k} of job"),
            &mut seq,
        ));
    }
    write_history(&day_dir, start..start + 1440, &inj, &mut seq);
    let iso = |t: i64| aiops_core::time::format_rfc3339_micros(t);
    // Findings of log series carry their log group as resource, those of call series the
    // principal: label by resource key (and the event-source series, which has none).
    let labels = serde_json::json!({
        "111122223333/us-east-1/log_group//ecs/api":
            [[iso(at(0, 10)), iso(at(0, 12))], [iso(at(9, 0)), iso(at(9, 2))]],
        "111122223333/us-east-1/log_group//ecs/worker": [[iso(at(10, 30)), iso(at(10, 32))]],
        "111122223333/us-east-1/iam_principal/arn:aws:iam::111122223333:user/app": [],
        "111122223333/us-east-1/iam_principal/arn:aws:iam::111122223333:user/ci": [],
        "event_source:s3.amazonaws.com": [],
    });
    let labels_path = tmp.path().join("labels.json");
    std::fs::write(&labels_path, labels.to_string()).unwrap();
    let day = day_dir.to_str().unwrap();
    let lp = labels_path.to_str().unwrap();
    let cold = run_json(&["backtest", "--history", day, "--labels", lp, "--json"]);
    let warm = run_json(&[
        "backtest",
        "--history",
        day,
        "--labels",
        lp,
        "--baselines",
        baselines.to_str().unwrap(),
        "--json",
    ]);
    let fig = |r: &serde_json::Value| {
        (
            r["labels"]["false_findings"].as_u64().unwrap(),
            r["labels"]["detected_windows"].as_u64().unwrap(),
            r["labels"]["windows"].as_u64().unwrap(),
            r["labels"]["unlabelled_findings"].as_u64().unwrap(),
        )
    };
    eprintln!(
        "cold start: {:?} (false, detected, windows, unlabelled); with baselines: {:?}",
        fig(&cold),
        fig(&warm)
    );
    for (name, r) in [("cold", &cold), ("warm", &warm)] {
        for f in r["findings"].as_array().unwrap() {
            eprintln!(
                "{name}: {} {} {} {} {}",
                f["detector"],
                aiops_core::time::format_rfc3339_micros(f["event_time"].as_i64().unwrap()),
                f["evidence"]["series_key"],
                f["priority"],
                f["summary"]
            );
        }
    }
    let (cold_false, cold_detected, windows, _) = fig(&cold);
    let (warm_false, warm_detected, _, warm_unlabelled) = fig(&warm);
    assert_eq!(windows, 3);
    assert_eq!(warm_detected, 3, "{}", warm["labels"]);
    assert!(cold_detected < 3, "{}", cold["labels"]);
    assert!(cold_false > 0, "{:#}", cold["findings"]);
    assert_eq!(warm_false, 0, "{:#}", warm["findings"]);
    assert_eq!(warm_unlabelled, 0);
    assert!(warm["figures"]["series_seeded"].as_u64().unwrap() >= 8);
}
