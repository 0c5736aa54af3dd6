//! End-to-end tests of suppressions, related changes, the incident text view and feedback:
//! the binary on the replayed fixtures of `tests/fixtures/incidents` (written by its
//! `make_fixtures.py`): 70 minutes of `/ecs/payments-api` with an ERROR burst at 10:50 (`burst/`)
//! and a `DeleteParameter /prod/payments/db-password` at 10:48 (`change/`).

use std::path::{Path, PathBuf};
use std::process::Command;

const SERIES: &str = "log_level:/ecs/payments-api:ERROR";
const CHANGE_EVENT: &str = "5a000000-0000-4000-8000-000000000001";

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_aiops")
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/incidents")
}

/// Runs `aiops ARGS --data-dir DATA`; returns (exit code, stdout).
fn aiops(args: &[&str], data: &Path) -> (i32, String) {
    let out = Command::new(bin())
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .output()
        .expect("run aiops");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).expect("utf-8 stdout"),
    )
}

fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

/// Replays `dirs` of the fixtures; returns the incident lines and the summary.
fn replay(dirs: &[&str], data: &Path) -> (Vec<serde_json::Value>, serde_json::Value) {
    replay_with(dirs, data, &[])
}

/// [`replay`] with extra arguments (`--force`: read inputs the data directory already holds).
fn replay_with(
    dirs: &[&str],
    data: &Path,
    extra: &[&str],
) -> (Vec<serde_json::Value>, serde_json::Value) {
    let mut args = vec!["replay".to_string()];
    args.extend(extra.iter().map(|a| a.to_string()));
    for d in dirs {
        args.push(fixtures().join(d).display().to_string());
    }
    args.push("--json".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, out) = aiops(&args, data);
    assert_eq!(code, 0, "{out}");
    let mut lines = json_lines(&out);
    let summary = lines.pop().expect("summary line");
    assert_eq!(summary["kind"], "summary");
    (lines, summary)
}

/// Every row of the local `findings` table under `data`, in file order.
fn findings_table(data: &Path) -> Vec<aiops_core::Finding> {
    let mut files = Vec::new();
    let mut dirs = vec![data.join("findings")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).expect("findings dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                files.push(p);
            }
        }
    }
    files.sort();
    let mut out = Vec::new();
    for p in files {
        let file = std::fs::File::open(&p).expect("open parquet");
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .expect("parquet")
            .build()
            .expect("reader");
        for b in reader {
            out.extend(
                aiops_ingest::archive::decode_findings_batch(&b.expect("batch")).expect("decode"),
            );
        }
    }
    out
}

fn suppressions(data: &Path) -> Vec<serde_json::Value> {
    let (code, out) = aiops(&["suppress", "list", "--json"], data);
    assert_eq!(code, 0);
    json_lines(&out)
}

/// A suppressed series key: the burst's finding is recorded and counted as suppressed, no
/// incident opens; list shows the suppression, remove removes it.
#[test]
fn a_suppressed_series_opens_no_incident_until_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (code, out) = aiops(
        &["suppress", "add", SERIES, "--reason", "known deploy noise"],
        &data,
    );
    assert_eq!(code, 0);
    assert!(
        out.starts_with("SUPPRESSION sup-series-")
            && out.contains(&format!(
                " series {SERIES} | until removed | known deploy noise"
            )),
        "{out}"
    );
    let list = suppressions(&data);
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["kind"], "series");
    assert_eq!(list[0]["value"], SERIES);
    assert_eq!(list[0]["reason"], "known deploy noise");
    assert_eq!(list[0]["active"], true);
    assert!(list[0]["expires_at"].is_null());

    let (incidents, summary) = replay(&["burst"], &data);
    assert!(incidents.is_empty(), "{incidents:?}");
    assert_eq!(summary["findings"], 1, "{summary}");
    assert_eq!(summary["suppressed_findings"], 1, "{summary}");
    assert_eq!(summary["incidents"], 0, "{summary}");
    let (code, out) = aiops(&["incidents", "list"], &data);
    assert_eq!((code, out.as_str()), (0, ""));
    // The findings table records the finding, marked with why it opened no incident.
    let recorded = findings_table(&data);
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].evidence.series_key.as_deref(), Some(SERIES));
    let why = recorded[0]
        .suppressed
        .as_deref()
        .expect("marked suppressed");
    assert!(
        why.starts_with("suppressed: ")
            && why.contains(SERIES)
            && why.contains("known deploy noise"),
        "{why}"
    );

    let (code, out) = aiops(&["suppress", "remove", SERIES], &data);
    assert_eq!(
        (code, out.trim()),
        (0, format!("removed {SERIES}").as_str())
    );
    assert!(suppressions(&data).is_empty());
    let (code, _) = aiops(&["suppress", "remove", SERIES], &data);
    assert_eq!(code, 1, "nothing left to remove");
}

/// `--for` counts wall-clock time from now: after it, the suppression is listed as expired
/// and the same burst opens its incident.
#[test]
fn a_suppression_for_one_second_has_expired_two_seconds_later() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (code, out) = aiops(&["suppress", "add", SERIES, "--for", "1s"], &data);
    assert_eq!(code, 0);
    assert!(out.contains(" | until 20"), "{out}");
    assert_eq!(suppressions(&data)[0]["active"], true);
    std::thread::sleep(std::time::Duration::from_secs(2));
    let list = suppressions(&data);
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["active"], false);
    let (_, out) = aiops(&["suppress", "list"], &data);
    assert!(out.contains(" | expired 20"), "{out}");

    let (incidents, summary) = replay(&["burst"], &data);
    assert_eq!(summary["suppressed_findings"], 0, "{summary}");
    assert_eq!(summary["incidents"], 1, "{summary}");
    assert_eq!(incidents[0]["detector"], "log_level_rate");

    let (code, _) = aiops(&["suppress", "add", SERIES, "--for", "2x"], &data);
    assert_eq!(code, 2, "a unit that is not s, m, h or d is refused");
}

/// A DeleteParameter two minutes before an ERROR burst in the same service: the change's own
/// incident, and one incident for the burst whose first related change is that call, shown
/// first in the text view; `resolve --not-an-incident` records feedback that holds the same
/// burst back on the next replay.
#[test]
fn an_error_burst_lists_the_delete_parameter_before_it_as_related_change() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (incidents, summary) = replay(&["burst", "change"], &data);
    assert_eq!(summary["incidents"], 2, "{summary}");
    assert_eq!(summary["suppressed_findings"], 0, "{summary}");
    let mut keys: Vec<(String, String, String, String)> = incidents
        .iter()
        .map(|i| {
            let s = |k: &str| i[k].as_str().unwrap_or("").to_string();
            (s("detector"), s("resource_id"), s("state"), s("action"))
        })
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        vec![
            (
                "log_level_rate".to_string(),
                "/ecs/payments-api".to_string(),
                "MANUAL_REVIEW".to_string(),
                String::new()
            ),
            (
                "ssm_delete_parameter".to_string(),
                "/prod/payments/db-password".to_string(),
                "RESOLVED".to_string(),
                "restore".to_string()
            ),
        ]
    );
    let burst = incidents
        .iter()
        .find(|i| i["detector"] == "log_level_rate")
        .unwrap();
    let id = burst["incident_id"].as_str().unwrap();

    let (code, out) = aiops(&["incidents", "show", id, "--json"], &data);
    assert_eq!(code, 0);
    let shown: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shown["priority"], "HIGH");
    assert_eq!(shown["finding_count"], 1);
    let first = &shown["related_changes"][0];
    assert_eq!(first["event_id"], CHANGE_EVENT);
    assert_eq!(first["event_name"], "DeleteParameter");
    assert_eq!(first["resource"], "/prod/payments/db-password");
    assert_eq!(first["principal"], "arn:aws:iam::111122223333:user/alice");
    assert_eq!(first["event_time"], "2024-05-01T10:48:00.000000Z");
    assert_eq!(
        shown["group"]["related_changes"][0]["event_id"],
        CHANGE_EVENT
    );
    assert_eq!(shown["finding"]["evidence"]["series_key"], SERIES);

    let (code, text) = aiops(&["incidents", "show", id], &data);
    assert_eq!(code, 0);
    for expected in [
        "State:     MANUAL_REVIEW\nPriority:  HIGH\nResource:  log_group /ecs/payments-api\n",
        "Related changes (most related first):\n  1. ssm.amazonaws.com DeleteParameter /prod/payments/db-password by arn:aws:iam::111122223333:user/alice at 2024-05-01T10:48:00.000000Z (score ",
        &format!("[{CHANGE_EVENT}]\n\nFindings:\n"),
        &format!("      series: {SERIES}\n      count: 81 vs expected 0.10\n"),
        "      top contributors: ERROR Payment gateway call failed: connection reset by peer (81)\n",
        "\nTimeline:\n",
        "  action: none\n",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from:\n{text}"
        );
    }
    let (code, list) = aiops(&["incidents", "list"], &data);
    assert_eq!(code, 0);
    let line = list.lines().find(|l| l.contains(id)).unwrap();
    assert!(
        line.starts_with("HIGH     findings=1   INCIDENT "),
        "{line}"
    );

    // Feedback: not an incident; the same burst is held back next time.
    let (code, out) = aiops(
        &[
            "incidents",
            "resolve",
            id,
            "--not-an-incident",
            "--reason",
            "load test",
        ],
        &data,
    );
    assert_eq!(code, 0);
    assert_eq!(
        out.trim(),
        format!("closed {id} as not an incident; feedback recorded for 1 series: {SERIES}")
    );
    // A second close records nothing again.
    let (code, out) = aiops(&["incidents", "resolve", id, "--not-an-incident"], &data);
    assert_eq!(
        (code, out.trim()),
        (
            0,
            format!("{id} was closed as not an incident already; nothing recorded again").as_str()
        )
    );
    let (_, out) = aiops(&["incidents", "show", id, "--json"], &data);
    let shown: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shown["closed"], true);
    // The list says it is closed (its workflow state stays what it was).
    let (_, list) = aiops(&["incidents", "list"], &data);
    let line = list.lines().find(|l| l.contains(id)).unwrap();
    assert!(
        line.contains(&format!("CLOSED INCIDENT {id} MANUAL_REVIEW")),
        "{line}"
    );
    // The same files again: skipped by default (already ingested), read with --force.
    let (again, summary) = replay(&["burst"], &data);
    assert!(again.is_empty(), "{again:?}");
    assert_eq!(summary["skipped_inputs"], 1, "{summary}");
    assert_eq!(summary["findings"], 0, "{summary}");
    let (again, summary) = replay_with(&["burst"], &data, &["--force"]);
    assert!(again.is_empty(), "{again:?}");
    assert_eq!(summary["suppressed_findings"], 1, "{summary}");
    assert_eq!(summary["incidents"], 0, "{summary}");
}

/// Issue 18: `incidents show` prints the model's raw answer stored with the incident (text
/// view and `--json`), with control characters escaped in the text view.
#[test]
fn incidents_show_prints_the_raw_model_answer() {
    use aiops_act::{IncidentPatch, IncidentStore, SqliteStore};
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (incidents, _) = replay(&["change"], &data);
    let inc = incidents
        .iter()
        .find(|i| i["detector"] == "ssm_delete_parameter")
        .unwrap();
    let id = inc["incident_id"].as_str().unwrap();
    // Without a model there is no raw answer and no section.
    let (code, text) = aiops(&["incidents", "show", id], &data);
    assert_eq!(code, 0);
    assert!(!text.contains("Model answer"), "{text}");
    let raw = "[stopReason max_tokens]\n{\"classification\": \"FAIL\u{1b}[31m";
    let store = SqliteStore::open(&data.join("incidents.sqlite")).unwrap();
    assert!(
        store
            .annotate(
                id,
                aiops_core::WorkflowState::Resolved,
                &IncidentPatch {
                    raw_answer: Some(raw.into()),
                    ..IncidentPatch::default()
                },
                1,
            )
            .unwrap()
    );
    drop(store);
    let (code, text) = aiops(&["incidents", "show", id], &data);
    assert_eq!(code, 0);
    assert!(
        text.ends_with(
            "\nModel answer (raw, as received):\n  [stopReason max_tokens]\n  {\"classification\": \"FAIL\\u{1b}[31m\n"
        ),
        "{text:?}"
    );
    let (code, out) = aiops(&["incidents", "show", id, "--json"], &data);
    assert_eq!(code, 0);
    let shown: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(shown["raw_answer"], raw);
}
