//! Comparing backtest findings with the live run's `findings` table (`aiops backtest
//! --compare-live`).
//!
//! A finding is identified on both sides by its [`FindingKey`]: its kind, its series key (for
//! a change rule, which has none: its detector and resource key) and the start of its window
//! (for a change rule: its event time). Findings with the same key on both sides are compared
//! field by field — every field of the finding as serialised, evidence fields one by one, except
//! the wall-clock `detected_at` — so a finding both sides made but with another score or other
//! evidence is reported apart from findings only one side made, with the fields that differ.

use crate::error::Result;
use crate::location::{AwsAccess, HistoryLocation};
use crate::reader;
use aiops_core::{Finding, FindingKind};
use serde::Serialize;
use std::collections::BTreeMap;

/// At most this many findings are listed in each of [`LiveComparison::only_live`],
/// [`LiveComparison::only_backtest`] and [`LiveComparison::differences`]; the counts are
/// always complete.
pub const MAX_LISTED: usize = 100;

/// What identifies a finding in the comparison.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct FindingKey {
    /// The finding's kind (`change_rule`, `rate_anomaly`, `value_anomaly`, `novelty`).
    pub kind: FindingKind,
    /// The series key (`log_level:/ecs/api:ERROR`); for a finding without one (change rules)
    /// `<detector> <resource key>` (`ssm_delete_parameter 1111/us-east-1/ssm_parameter//x`).
    pub key: String,
    /// Start of the finding's window, microseconds since the Unix epoch, UTC; a finding
    /// without a window (change rules): its event time.
    pub window_start: i64,
}

impl FindingKey {
    /// The key of `f` (see [`FindingKey`]).
    pub fn of(f: &Finding) -> FindingKey {
        let key = match &f.evidence.series_key {
            Some(k) => k.clone(),
            None => format!(
                "{} {}",
                f.detector,
                f.resource
                    .as_ref()
                    .map_or_else(|| "-".to_string(), aiops_core::ResourceKey::key)
            ),
        };
        FindingKey {
            kind: f.kind,
            key,
            window_start: f.evidence.window.map_or(f.event_time, |w| w.0),
        }
    }
}

/// A finding only one side made.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OneSided {
    /// Its key.
    #[serde(flatten)]
    pub key: FindingKey,
    /// Window start as RFC 3339 UTC (the same instant as `window_start`).
    pub window_start_text: String,
    /// The finding's id.
    pub finding_id: String,
    /// Its score in [0, 1].
    pub score: f64,
}

/// One field that differs between the live and the backtest finding of one key.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldDiff {
    /// The field, as serialised: `score`, `summary`, `priority`, or `evidence.<name>`
    /// (`evidence.observed`, `evidence.template`, ...).
    pub field: String,
    /// Its value in the live `findings` table (JSON; `null` when absent).
    pub live: serde_json::Value,
    /// Its value in the backtest (JSON; `null` when absent).
    pub backtest: serde_json::Value,
}

/// A finding both sides made, whose fields differ.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FindingDiff {
    /// Its key.
    #[serde(flatten)]
    pub key: FindingKey,
    /// Window start as RFC 3339 UTC.
    pub window_start_text: String,
    /// The fields that differ, in field order (top-level fields, then the evidence's).
    pub fields: Vec<FieldDiff>,
}

/// How backtest findings compare with the live run's `findings` table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LiveComparison {
    /// Findings in the live table in the time range (distinct keys).
    pub live: usize,
    /// Rows of the live table in the time range whose key an earlier row had already
    /// (at-least-once delivery writes a finding again after a crash); not counted in `live`.
    pub live_duplicate_rows: usize,
    /// Findings of the backtest (distinct keys).
    pub backtest: usize,
    /// Findings on both sides, identical in every compared field.
    pub matching: usize,
    /// Findings on both sides whose score or evidence (or another field) differ.
    pub differing: usize,
    /// Findings only the live run made.
    pub only_live_count: usize,
    /// Findings only the backtest made.
    pub only_backtest_count: usize,
    /// The first [`MAX_LISTED`] findings only the live run made, in key order.
    pub only_live: Vec<OneSided>,
    /// The first [`MAX_LISTED`] findings only the backtest made, in key order.
    pub only_backtest: Vec<OneSided>,
    /// The first [`MAX_LISTED`] findings on both sides that differ, in key order, with the
    /// fields that differ.
    pub differences: Vec<FindingDiff>,
}

/// The compared fields of a finding as JSON: every serialised field but `detected_at` (wall
/// clock) and `suppressed` (act's verdict on the finding, which a backtest does not make).
fn compared_fields(f: &Finding) -> serde_json::Map<String, serde_json::Value> {
    match serde_json::to_value(f) {
        Ok(serde_json::Value::Object(mut m)) => {
            m.remove("detected_at");
            m.remove("suppressed");
            m
        }
        _ => serde_json::Map::new(),
    }
}

/// The fields that differ between `live` and `backtest`, top-level fields first (in the
/// order of [`Finding`]), then the evidence's one by one (`evidence.<name>`).
pub fn field_diffs(live: &Finding, backtest: &Finding) -> Vec<FieldDiff> {
    let (a, b) = (compared_fields(live), compared_fields(backtest));
    let mut out = Vec::new();
    let null = serde_json::Value::Null;
    let mut names: Vec<&String> = a.keys().chain(b.keys()).collect();
    names.sort_by_key(|n| (n.as_str() == "evidence", field_rank(n)));
    names.dedup();
    for name in names {
        let (x, y) = (a.get(name).unwrap_or(&null), b.get(name).unwrap_or(&null));
        if x == y {
            continue;
        }
        match (name.as_str(), x, y) {
            ("evidence", serde_json::Value::Object(ex), serde_json::Value::Object(ey)) => {
                let mut sub: Vec<&String> = ex.keys().chain(ey.keys()).collect();
                sub.sort_by_key(|n| evidence_rank(n));
                sub.dedup();
                for s in sub {
                    let (u, v) = (ex.get(s).unwrap_or(&null), ey.get(s).unwrap_or(&null));
                    if u != v {
                        out.push(FieldDiff {
                            field: format!("evidence.{s}"),
                            live: u.clone(),
                            backtest: v.clone(),
                        });
                    }
                }
            }
            _ => out.push(FieldDiff {
                field: name.clone(),
                live: x.clone(),
                backtest: y.clone(),
            }),
        }
    }
    out
}

/// Position of a top-level field in [`Finding`] (unknown names last, by name).
fn field_rank(name: &str) -> (usize, String) {
    const ORDER: [&str; 13] = [
        "finding_id",
        "kind",
        "detector",
        "event_time",
        "resource",
        "score",
        "summary",
        "default_action",
        "recoverable",
        "direction",
        "priority",
        "evidence",
        "",
    ];
    let i = ORDER.iter().position(|n| *n == name).unwrap_or(ORDER.len());
    (i, name.to_string())
}

/// Position of an evidence field in [`aiops_core::Evidence`] (unknown names last, by name).
fn evidence_rank(name: &str) -> (usize, String) {
    const ORDER: [&str; 15] = [
        "event_ids",
        "event_source",
        "event_name",
        "principal",
        "source_ip",
        "series_key",
        "window",
        "observed",
        "expected",
        "template",
        "template_id",
        "samples",
        "top_contributors",
        "related",
        "",
    ];
    let i = ORDER.iter().position(|n| *n == name).unwrap_or(ORDER.len());
    (i, name.to_string())
}

fn one_sided(k: &FindingKey, f: &Finding) -> OneSided {
    OneSided {
        key: k.clone(),
        window_start_text: aiops_core::time::format_rfc3339_micros(k.window_start),
        finding_id: f.finding_id.clone(),
        score: f.score,
    }
}

/// Compares two sets of findings by [`FindingKey`]: `live` as read from the `findings` table
/// (in table order; a later row with a key seen before counts as a duplicate row and is not
/// compared), `backtest` as the backtest made them.
pub fn compare_findings(live: &[Finding], backtest: &[Finding]) -> LiveComparison {
    let mut live_by: BTreeMap<FindingKey, &Finding> = BTreeMap::new();
    let mut live_duplicate_rows = 0;
    for f in live {
        match live_by.entry(FindingKey::of(f)) {
            std::collections::btree_map::Entry::Occupied(_) => live_duplicate_rows += 1,
            std::collections::btree_map::Entry::Vacant(v) => {
                v.insert(f);
            }
        }
    }
    let mut ours: BTreeMap<FindingKey, &Finding> = BTreeMap::new();
    for f in backtest {
        ours.entry(FindingKey::of(f)).or_insert(f);
    }
    let mut c = LiveComparison {
        live: live_by.len(),
        live_duplicate_rows,
        backtest: ours.len(),
        matching: 0,
        differing: 0,
        only_live_count: 0,
        only_backtest_count: 0,
        only_live: Vec::new(),
        only_backtest: Vec::new(),
        differences: Vec::new(),
    };
    for (k, l) in &live_by {
        match ours.get(k) {
            None => {
                c.only_live_count += 1;
                if c.only_live.len() < MAX_LISTED {
                    c.only_live.push(one_sided(k, l));
                }
            }
            Some(b) => {
                let fields = field_diffs(l, b);
                if fields.is_empty() {
                    c.matching += 1;
                } else {
                    c.differing += 1;
                    if c.differences.len() < MAX_LISTED {
                        c.differences.push(FindingDiff {
                            key: k.clone(),
                            window_start_text: aiops_core::time::format_rfc3339_micros(
                                k.window_start,
                            ),
                            fields,
                        });
                    }
                }
            }
        }
    }
    for (k, b) in &ours {
        if !live_by.contains_key(k) {
            c.only_backtest_count += 1;
            if c.only_backtest.len() < MAX_LISTED {
                c.only_backtest.push(one_sided(k, b));
            }
        }
    }
    c
}

/// Compares `findings` with the `findings` table at `location` within `[from, to)` (by the
/// findings' event time); see [`compare_findings`].
///
/// # Errors
/// When the table cannot be read or a file of it does not decode.
pub fn compare_live(
    location: &HistoryLocation,
    access: &AwsAccess,
    from: Option<i64>,
    to: Option<i64>,
    findings: &[Finding],
) -> Result<LiveComparison> {
    let mut live = Vec::new();
    reader::for_each_batch(location, access, "findings", |batch| {
        for f in aiops_ingest::archive::decode_findings_batch(batch)? {
            if from.is_some_and(|a| f.event_time < a) || to.is_some_and(|b| f.event_time >= b) {
                continue;
            }
            live.push(f);
        }
        Ok(())
    })?;
    Ok(compare_findings(&live, findings))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aiops_core::{Evidence, Priority, ResourceKey};

    fn rate(key: &str, start: i64, score: f64) -> Finding {
        Finding {
            suppressed: None,
            finding_id: format!("id-{key}-{start}"),
            kind: FindingKind::RateAnomaly,
            detector: "log_level_rate".into(),
            event_time: start + 60_000_000,
            detected_at: 7,
            resource: None,
            score,
            summary: "burst".into(),
            default_action: None,
            recoverable: false,
            direction: None,
            priority: Priority::High,
            evidence: Evidence {
                series_key: Some(key.into()),
                window: Some((start, start + 60_000_000)),
                observed: Some(40.0),
                expected: Some(2.0),
                ..Evidence::default()
            },
        }
    }

    #[test]
    fn findings_are_matched_by_kind_key_and_window_and_differences_named() {
        let a = rate("log_level:g:ERROR", 0, 0.9);
        let b = rate("log_level:g:WARN", 0, 0.8);
        let c = rate("log_level:g:ERROR", 60_000_000, 0.7);
        let mut a_live = a.clone();
        a_live.detected_at = 99; // wall clock: never compared
        let mut b_live = b.clone();
        b_live.score = 0.75;
        b_live.evidence.observed = Some(39.0);
        let d = rate("log_level:h:ERROR", 0, 0.6);
        let live = vec![a_live.clone(), b_live, d.clone(), a_live];
        let c_cmp = compare_findings(&live, &[a, b, c]);
        assert_eq!(
            (
                c_cmp.live,
                c_cmp.live_duplicate_rows,
                c_cmp.backtest,
                c_cmp.matching,
                c_cmp.differing,
                c_cmp.only_live_count,
                c_cmp.only_backtest_count
            ),
            (3, 1, 3, 1, 1, 1, 1)
        );
        assert_eq!(c_cmp.differences.len(), 1);
        let d0 = &c_cmp.differences[0];
        assert_eq!(d0.key.key, "log_level:g:WARN");
        assert_eq!(
            d0.fields
                .iter()
                .map(|f| (f.field.as_str(), f.live.clone(), f.backtest.clone()))
                .collect::<Vec<_>>(),
            vec![
                ("score", serde_json::json!(0.75), serde_json::json!(0.8)),
                (
                    "evidence.observed",
                    serde_json::json!(39.0),
                    serde_json::json!(40.0)
                )
            ]
        );
        assert_eq!(c_cmp.only_live[0].key.key, "log_level:h:ERROR");
        assert_eq!(c_cmp.only_backtest[0].key.window_start, 60_000_000);
        assert_eq!(
            c_cmp.only_backtest[0].window_start_text,
            "1970-01-01T00:01:00.000000Z"
        );
    }

    #[test]
    fn change_rules_are_keyed_by_detector_resource_and_event_time() {
        let mut f = rate("x", 0, 1.0);
        f.kind = FindingKind::ChangeRule;
        f.detector = "ssm_delete_parameter".into();
        f.event_time = 5;
        f.evidence = Evidence::default();
        f.resource = Some(ResourceKey {
            resource_type: "ssm_parameter".into(),
            resource_id: "/prod/db".into(),
            account: Some("1".into()),
            region: None,
        });
        assert_eq!(
            FindingKey::of(&f),
            FindingKey {
                kind: FindingKind::ChangeRule,
                key: "ssm_delete_parameter 1/-/ssm_parameter//prod/db".into(),
                window_start: 5,
            }
        );
    }
}
