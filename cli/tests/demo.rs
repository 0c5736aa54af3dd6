//! The quick-start demo as a new user runs it (`aiops run --duration 40`, built-in default
//! configuration: embedded mode on the simulated account), checked for what the README promises:
//! incidents for the injected scenario only — the three destructive changes, the error burst
//! in `/ecs/checkout-api` (its level and template findings one incident) and the AccessDenied
//! burst naming its principal — and none for the failed `DeleteTable`, the autoscaling
//! termination or the routine INFO/DEBUG traffic around them.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_aiops")
}

/// `aiops ARGS` in `cwd` (no `pipeline.toml` there: the built-in default); (exit code, stdout).
fn aiops(args: &[&str], cwd: &Path) -> (i32, String) {
    let out = Command::new(bin())
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run aiops");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).expect("utf-8 stdout"),
    )
}

fn show(id: &str, cwd: &Path) -> serde_json::Value {
    let (code, out) = aiops(
        &["incidents", "show", id, "--data-dir", "data", "--json"],
        cwd,
    );
    assert_eq!(code, 0, "{out}");
    serde_json::from_str(&out).expect("incident json")
}

#[test]
fn the_quick_start_demo_opens_the_injected_incidents_and_no_others() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    let (code, out) = aiops(
        &["run", "--duration", "40", "--json", "--data-dir", "data"],
        cwd,
    );
    assert_eq!(code, 0, "{out}");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    let incidents: Vec<&serde_json::Value> =
        lines.iter().filter(|l| l["kind"] == "incident").collect();
    let opened: BTreeSet<(String, String, String)> = incidents
        .iter()
        .map(|i| {
            (
                i["detector"].as_str().unwrap_or("-").to_string(),
                i["resource_type"].as_str().unwrap_or("-").to_string(),
                i["resource_id"].as_str().unwrap_or("-").to_string(),
            )
        })
        .collect();
    let expected: BTreeSet<(String, String, String)> = [
        (
            "ssm_delete_parameter",
            "ssm_parameter",
            "/prod/payments/db-password",
        ),
        (
            "ec2_terminate_instances",
            "ec2_instance",
            "i-0a1b2c3d4e5f60718",
        ),
        (
            "lambda_delete_function",
            "lambda_function",
            "billing-worker",
        ),
        ("log_level_rate", "log_group", "/ecs/checkout-api"),
        ("api_error_rate", "-", "-"),
    ]
    .iter()
    .map(|(d, t, r)| (d.to_string(), t.to_string(), r.to_string()))
    .collect();
    assert_eq!(opened, expected, "{out}");
    assert_eq!(incidents.len(), 5, "one incident each: {out}");
    let summary = lines
        .iter()
        .find(|l| l["kind"] == "summary")
        .expect("summary line");
    assert_eq!(summary["incidents"], 5, "{summary}");
    assert_eq!(summary["dead_letters"], 0, "{summary}");

    // Changes are recovered (dry run); statistics go to a person.
    for i in &incidents {
        let want = if i["detector"].as_str().is_some_and(|d| d.ends_with("_rate")) {
            "MANUAL_REVIEW"
        } else {
            "RESOLVED"
        };
        assert_eq!(i["state"], want, "{i}");
    }

    // The error burst: one incident whose finding merged the burst's template finding.
    let burst = incidents
        .iter()
        .find(|i| i["detector"] == "log_level_rate")
        .expect("burst incident");
    let burst = show(burst["incident_id"].as_str().unwrap(), cwd);
    assert_eq!(burst["priority"], "HIGH");
    assert_eq!(
        burst["finding"]["evidence"]["series_key"],
        "log_level:/ecs/checkout-api:ERROR"
    );
    let related = burst["finding"]["evidence"]["related"]
        .as_array()
        .expect("related findings");
    assert_eq!(related.len(), 1, "{related:?}");
    assert!(
        related[0]
            .as_str()
            .is_some_and(|r| r.starts_with("log_template_rate log_template:/ecs/checkout-api:")),
        "{related:?}"
    );

    // The AccessDenied burst names the principal behind 120 of its calls, first.
    let denied = incidents
        .iter()
        .find(|i| i["detector"] == "api_error_rate")
        .expect("AccessDenied incident");
    let denied = show(denied["incident_id"].as_str().unwrap(), cwd);
    let top = &denied["finding"]["evidence"]["top_contributors"][0];
    assert_eq!(top["name"], "arn:aws:iam::123456789012:user/mallory");
    assert_eq!(top["count"], 120);
}
