//! The same template id everywhere (issue 15): CloudWatch Logs traffic replayed twice, the
//! second time with every minute's lines in the opposite order (so the templates first appear
//! in another order, each from another first line), then `aiops backtest` and `aiops learn`
//! over each data directory. Every template has the same id and text in both replays, in the
//! backtests, in the live `findings` table and in the learned dictionaries.

use aiops_detect::template::{TemplateConfig, TemplateMiner, template_key};
use flate2::Compression;
use flate2::write::GzEncoder;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::Command;

const S: i64 = 1_000_000;
const MIN: i64 = 60 * S;
/// 2024-05-01T00:00:00Z.
const DAY0: i64 = 1_714_521_600_000_000;
const GROUP: &str = "/ecs/orders";

fn run_json(args: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_aiops"))
        .args(args)
        .output()
        .expect("run aiops");
    assert!(
        out.status.success(),
        "aiops {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    serde_json::from_str(stdout.lines().last().expect("output")).expect("json")
}

/// One gzip CloudWatch Logs subscription payload of `lines` `(time µs, message)`.
fn cwl_payload(lines: &[(i64, String)]) -> Vec<u8> {
    let events: Vec<serde_json::Value> = lines
        .iter()
        .enumerate()
        .map(|(i, (t, m))| serde_json::json!({"id": format!("{t}-{i}"), "timestamp": t / 1000, "message": m}))
        .collect();
    let body = serde_json::json!({
        "messageType": "DATA_MESSAGE", "owner": "111122223333", "logGroup": GROUP,
        "logStream": "task-1", "subscriptionFilters": ["aiops"], "logEvents": events,
    });
    let mut e = GzEncoder::new(Vec::new(), Compression::fast());
    e.write_all(body.to_string().as_bytes()).unwrap();
    e.finish().unwrap()
}

/// The messages of minute `m`, in their forward order: each of five templates a few times
/// with other values, a burst of cache misses (INFO) at minute 45 and of declined payments
/// (ERROR) at minute 52 (a count series is scored from its 31st window on).
fn minute_lines(m: i64) -> Vec<String> {
    let mut out = Vec::new();
    for k in 0..3 {
        let n = m * 3 + k;
        out.push(format!(
            "INFO order {} accepted from 10.0.{}.{}",
            1000 + n,
            n % 7,
            n % 250
        ));
        out.push(format!("INFO cache miss for key user-{}", 500 + n));
        out.push(format!(
            "WARN slow query took {} ms on table orders",
            200 + n
        ));
        out.push(format!(
            "INFO GET /api/items/{} 200 in {}ms",
            40 + n,
            3 + n % 9
        ));
    }
    out.push(format!("ERROR payment {} declined: card expired", 9000 + m));
    if m == 45 {
        out.extend((0..60).map(|k| format!("INFO cache miss for key user-{}", 7000 + k)));
    }
    if m == 52 {
        out.extend((0..40).map(|k| format!("ERROR payment {} declined: card expired", 8000 + k)));
    }
    out
}

/// An hour of traffic, one file per minute; `reversed`: each minute's messages in the
/// opposite order on the same timestamps.
fn write_input(dir: &Path, reversed: bool) {
    std::fs::create_dir_all(dir).unwrap();
    for m in 0..60i64 {
        let mut lines = minute_lines(m);
        if reversed {
            lines.reverse();
        }
        let step = MIN / (lines.len() as i64 + 1);
        let timed: Vec<(i64, String)> = lines
            .into_iter()
            .enumerate()
            .map(|(i, l)| (DAY0 + m * MIN + (i as i64 + 1) * step / 1000 * 1000, l))
            .collect();
        std::fs::write(dir.join(format!("m{m:04}.json.gz")), cwl_payload(&timed)).unwrap();
    }
}

/// `series key -> (template_id, template)` of the findings that carry a template.
fn templates_of_findings(
    result: &serde_json::Value,
) -> BTreeMap<String, (Option<String>, Option<String>)> {
    result["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| !f["evidence"]["template_id"].is_null())
        .map(|f| {
            let e = &f["evidence"];
            (
                e["series_key"].as_str().unwrap_or("-").to_string(),
                (
                    e["template_id"].as_str().map(str::to_string),
                    e["template"].as_str().map(str::to_string),
                ),
            )
        })
        .collect()
}

/// `(template id, text)` of every template of the learned dictionary of `GROUP`.
fn learned_templates(baselines: &Path) -> Vec<(String, String)> {
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(baselines).unwrap()).unwrap();
    let group = doc["log_groups"]
        .as_array()
        .expect("log_groups")
        .iter()
        .find(|g| g["log_group"] == GROUP)
        .expect("the log group");
    let mut out: Vec<(String, String)> = group["templates"]
        .as_array()
        .expect("templates")
        .iter()
        .map(|t| {
            (
                template_key(t["template_id"].as_u64().expect("id")),
                t["text"].as_str().expect("text").to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn templates_keep_their_id_and_text_whatever_order_they_first_appear_in() {
    let tmp = tempfile::tempdir().unwrap();
    let mut per_run = Vec::new();
    for (name, reversed) in [("forward", false), ("reversed", true)] {
        let input = tmp.path().join(format!("{name}-input"));
        let data = tmp.path().join(format!("{name}-data"));
        write_input(&input, reversed);
        let summary = run_json(&[
            "replay",
            input.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
            "--json",
        ]);
        assert_eq!(summary["events"], 60 * 13 + 60 + 40, "{summary}");
        let history = data.to_str().unwrap();
        let backtest = run_json(&["backtest", "--history", history, "--compare-live", "--json"]);
        // The live run (replay) and the backtest agree, template ids and texts included.
        let cmp = &backtest["live_comparison"];
        assert_eq!(
            [
                "matching",
                "differing",
                "only_live_count",
                "only_backtest_count"
            ]
            .map(|k| cmp[k].as_u64().unwrap()),
            [cmp["live"].as_u64().unwrap(), 0, 0, 0],
            "{name}: {cmp}"
        );
        let baselines = tmp.path().join(format!("{name}-baselines.json"));
        run_json(&[
            "learn",
            "--history",
            history,
            "--out",
            baselines.to_str().unwrap(),
            "--json",
        ]);
        per_run.push((
            templates_of_findings(&backtest),
            learned_templates(&baselines),
        ));
    }
    let id = |line: &str| {
        template_key(
            TemplateMiner::new(&TemplateConfig::default())
                .add(line)
                .template_id,
        )
    };
    // Content-derived ids: the same in every run, and in every release that keeps the
    // masking (learned baselines and suppressions name them).
    let (cache, payment) = (
        "0d32bd482119fdda".to_string(),
        "275a41b8fdde9c7f".to_string(),
    );
    assert_eq!(id("INFO cache miss for key user-7000"), cache);
    assert_eq!(id("ERROR payment 9000 declined: card expired"), payment);
    let expected_findings: BTreeMap<String, (Option<String>, Option<String>)> = [
        (
            format!("log_template:{GROUP}:{cache}"),
            (
                Some(cache.clone()),
                Some("INFO cache miss for key user-<*>".to_string()),
            ),
        ),
        (
            format!("log_level:{GROUP}:ERROR"),
            (
                Some(payment.clone()),
                Some("ERROR payment <*> declined: card expired".to_string()),
            ),
        ),
    ]
    .into_iter()
    .collect();
    let mut expected_dictionary: Vec<(String, String)> = [
        (
            "INFO order 1000 accepted from 10.0.0.0",
            "INFO order <*> accepted from <*>",
        ),
        (
            "INFO cache miss for key user-500",
            "INFO cache miss for key user-<*>",
        ),
        (
            "WARN slow query took 200 ms on table orders",
            "WARN slow query took <*> ms on table orders",
        ),
        ("INFO GET /api/items/40 200 in 3ms", "INFO GET <*> in <*>ms"),
        (
            "ERROR payment 9000 declined: card expired",
            "ERROR payment <*> declined: card expired",
        ),
    ]
    .into_iter()
    .map(|(line, text)| (id(line), text.to_string()))
    .collect();
    expected_dictionary.sort();
    for (run, (findings, dictionary)) in ["forward", "reversed"].iter().zip(&per_run) {
        assert_eq!(findings, &expected_findings, "{run}");
        assert_eq!(dictionary, &expected_dictionary, "{run}");
    }
}
