//! Labelled windows and how findings are scored against them.
//!
//! A labels file is one JSON object mapping a *series key* (e.g.
//! `log_level:/ecs/api:ERROR`, `metric:AWS/EC2:CPUUtilization:InstanceId=i-1`) or a *resource
//! key* (`<account>/<region>/<type>/<id>`, see `ResourceKey::key`) to a list of
//! `[start, end]` windows; `start` and `end` are RFC 3339 / ISO-8601 timestamps (UTC when no
//! zone is given, NAB's `2014-02-19 10:50:00.000000` form included) or integers in
//! microseconds since the Unix epoch. A key with an empty list is labelled normal throughout.
//!
//! Scoring (per finding, then per window):
//! - a finding is *scored* when its series key or its resource key is a key of the labels
//!   file; other findings are counted as `unlabelled_findings` and do not enter the figures;
//! - a scored finding *hits* a window of its key when its time span overlaps the window: the
//!   evidence window `[window_start, window_end)` for statistical findings, the instant
//!   `event_time` for change rules (`[start, end]` inclusive);
//! - precision = scored findings that hit a window / scored findings; recall = windows hit
//!   by at least one finding / windows; F1 = their harmonic mean (`null` when undefined);
//! - the delay of a detected window is the `event_time` of its earliest hitting finding
//!   (the end of the window it was raised at, for statistical findings) minus the window
//!   start, at least 0.

use crate::error::{Context, HistoryError, Result};
use aiops_core::Finding;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

/// Labelled windows per key: `(start, end)` inclusive, microseconds since the Unix epoch, UTC,
/// sorted.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Labels {
    /// Windows per series or resource key.
    pub windows: BTreeMap<String, Vec<(i64, i64)>>,
}

fn parse_time(v: &serde_json::Value, what: &str) -> Result<i64> {
    match v {
        serde_json::Value::String(s) => aiops_core::time::parse_timestamp_micros(s)
            .with_context(|| format!("{what}: not a timestamp")),
        serde_json::Value::Number(n) => n.as_i64().ok_or_else(|| {
            HistoryError::Invalid(format!("{what}: {n} is not an integer of microseconds"))
        }),
        other => Err(HistoryError::Invalid(format!(
            "{what}: expected a timestamp string or microseconds, got {other}"
        ))),
    }
}

impl Labels {
    /// Parses the text of a labels file (see the module documentation).
    ///
    /// # Errors
    /// A message naming the key and window that is not `[start, end]` with `start <= end`.
    pub fn parse(text: &str) -> Result<Labels> {
        let raw: BTreeMap<String, Vec<Vec<serde_json::Value>>> = serde_json::from_str(text)
            .context("labels: expected {\"key\": [[start, end], ...]}")?;
        let mut windows = BTreeMap::new();
        for (key, list) in raw {
            let mut out = Vec::with_capacity(list.len());
            for (i, w) in list.iter().enumerate() {
                let what = format!("labels[{key:?}][{i}]");
                let [a, b] = w.as_slice() else {
                    return Err(HistoryError::Invalid(format!(
                        "{what}: a window is [start, end]"
                    )));
                };
                let (a, b) = (parse_time(a, &what)?, parse_time(b, &what)?);
                if b < a {
                    return Err(HistoryError::Invalid(format!(
                        "{what}: end is before start"
                    )));
                }
                out.push((a, b));
            }
            out.sort_unstable();
            windows.insert(key, out);
        }
        Ok(Labels { windows })
    }

    /// Reads and parses a labels file.
    ///
    /// # Errors
    /// When the file cannot be read or parsed.
    pub fn load(path: &Path) -> Result<Labels> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read labels {}", path.display()))?;
        Labels::parse(&text).with_context(|| format!("in {}", path.display()))
    }

    /// The windows of the label key a finding belongs to: its series key, else its resource
    /// key, when either is labelled.
    pub fn key_of(&self, f: &Finding) -> Option<&str> {
        if let Some(k) = f.evidence.series_key.as_deref()
            && self.windows.contains_key(k)
        {
            return self.windows.get_key_value(k).map(|(k, _)| k.as_str());
        }
        let rk = f.resource.as_ref()?.key();
        self.windows.get_key_value(&rk).map(|(k, _)| k.as_str())
    }
}

/// The time span of a finding for scoring: the evidence window `[start, end)` of statistical
/// findings, the instant `[event_time, event_time + 1)` otherwise (µs).
pub fn finding_span(f: &Finding) -> (i64, i64) {
    match f.evidence.window {
        Some((a, b)) if b > a => (a, b),
        _ => (f.event_time, f.event_time.saturating_add(1)),
    }
}

/// Figures of one labelled key.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeyScore {
    /// The label key.
    pub key: String,
    /// Windows labelled.
    pub windows: usize,
    /// Windows hit by at least one finding.
    pub detected: usize,
    /// Findings of this key.
    pub findings: usize,
    /// Of those, findings inside a window.
    pub true_findings: usize,
}

/// Precision, recall, F1 and detection delay of findings against labels.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LabelScore {
    /// Labelled windows.
    pub windows: usize,
    /// Windows hit by at least one finding.
    pub detected_windows: usize,
    /// Windows without a finding.
    pub missed_windows: usize,
    /// Findings of labelled keys.
    pub scored_findings: usize,
    /// Scored findings inside a window.
    pub true_findings: usize,
    /// Scored findings outside every window.
    pub false_findings: usize,
    /// Findings of keys absent from the labels file (not scored).
    pub unlabelled_findings: usize,
    /// `true_findings / scored_findings`; `None` without scored findings.
    pub precision: Option<f64>,
    /// `detected_windows / windows`; `None` without windows.
    pub recall: Option<f64>,
    /// Harmonic mean of precision and recall; `None` when either is undefined or both are 0.
    pub f1: Option<f64>,
    /// Mean delay from window start to the first finding, seconds, over detected windows.
    pub mean_delay_secs: Option<f64>,
    /// Median of the same delays, seconds.
    pub median_delay_secs: Option<f64>,
    /// Largest of the same delays, seconds.
    pub max_delay_secs: Option<f64>,
    /// Per key, sorted by key.
    pub keys: Vec<KeyScore>,
}

/// Scores `findings` against `labels` (see the module documentation).
pub fn score(labels: &Labels, findings: &[Finding]) -> LabelScore {
    let mut first_hit: BTreeMap<(&str, usize), i64> = BTreeMap::new();
    let mut per_key: BTreeMap<&str, KeyScore> = labels
        .windows
        .iter()
        .map(|(k, w)| {
            (
                k.as_str(),
                KeyScore {
                    key: k.clone(),
                    windows: w.len(),
                    detected: 0,
                    findings: 0,
                    true_findings: 0,
                },
            )
        })
        .collect();
    let (mut scored, mut true_f, mut unlabelled) = (0, 0, 0);
    for f in findings {
        let Some(key) = labels.key_of(f) else {
            unlabelled += 1;
            continue;
        };
        scored += 1;
        let (a, b) = finding_span(f);
        let mut hit = false;
        for (i, &(s, e)) in labels.windows.get(key).into_iter().flatten().enumerate() {
            if a <= e && b > s {
                hit = true;
                let at = first_hit.entry((key, i)).or_insert(f.event_time);
                *at = (*at).min(f.event_time);
            }
        }
        if let Some(k) = per_key.get_mut(key) {
            k.findings += 1;
            k.true_findings += usize::from(hit);
        }
        true_f += usize::from(hit);
    }
    let mut delays: Vec<f64> = Vec::new();
    for (&(key, i), &t) in &first_hit {
        if let Some(&(s, _)) = labels.windows.get(key).and_then(|w| w.get(i)) {
            delays.push((t - s).max(0) as f64 / 1e6);
        }
        if let Some(k) = per_key.get_mut(key) {
            k.detected += 1;
        }
    }
    delays.sort_by(f64::total_cmp);
    let windows: usize = labels.windows.values().map(Vec::len).sum();
    let detected = first_hit.len();
    let precision = (scored > 0).then(|| true_f as f64 / scored as f64);
    let recall = (windows > 0).then(|| detected as f64 / windows as f64);
    let f1 = match (precision, recall) {
        (Some(p), Some(r)) if p + r > 0.0 => Some(2.0 * p * r / (p + r)),
        _ => None,
    };
    let n = delays.len();
    LabelScore {
        windows,
        detected_windows: detected,
        missed_windows: windows - detected,
        scored_findings: scored,
        true_findings: true_f,
        false_findings: scored - true_f,
        unlabelled_findings: unlabelled,
        precision,
        recall,
        f1,
        mean_delay_secs: (n > 0).then(|| delays.iter().sum::<f64>() / n as f64),
        median_delay_secs: (n > 0).then(|| {
            let hi = delays.get(n / 2).copied().unwrap_or(0.0);
            if n % 2 == 1 {
                hi
            } else {
                (delays.get(n / 2 - 1).copied().unwrap_or(hi) + hi) / 2.0
            }
        }),
        max_delay_secs: delays.last().copied(),
        keys: per_key.into_values().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aiops_core::{Evidence, FindingKind};

    const MIN: i64 = 60_000_000;

    fn f(key: &str, start: i64) -> Finding {
        Finding {
            suppressed: None,
            finding_id: format!("{key}{start}"),
            kind: FindingKind::RateAnomaly,
            detector: "log_level_rate".into(),
            event_time: start + MIN,
            detected_at: 0,
            resource: None,
            score: 0.9,
            summary: String::new(),
            default_action: None,
            recoverable: false,
            evidence: Evidence {
                series_key: Some(key.into()),
                window: Some((start, start + MIN)),
                ..Evidence::default()
            },
            direction: None,
            priority: aiops_core::Priority::High,
        }
    }

    #[test]
    fn precision_recall_f1_and_delay() {
        let labels = Labels::parse(&format!(
            r#"{{"a": [[{}, {}], ["1970-01-01T01:00:00Z", "1970-01-01T01:10:00Z"]], "b": []}}"#,
            10 * MIN,
            20 * MIN
        ))
        .unwrap();
        assert_eq!(
            labels.windows["a"],
            vec![(10 * MIN, 20 * MIN), (60 * MIN, 70 * MIN)]
        );
        let findings = vec![
            f("a", 12 * MIN), // hit, delay 3 min
            f("a", 15 * MIN), // hit, same window
            f("a", 40 * MIN), // false
            f("b", 5 * MIN),  // false (labelled normal)
            f("c", 5 * MIN),  // unlabelled
        ];
        let s = score(&labels, &findings);
        assert_eq!((s.windows, s.detected_windows, s.missed_windows), (2, 1, 1));
        assert_eq!(
            (s.scored_findings, s.true_findings, s.false_findings),
            (4, 2, 2)
        );
        assert_eq!(s.unlabelled_findings, 1);
        assert_eq!(s.precision, Some(0.5));
        assert_eq!(s.recall, Some(0.5));
        assert_eq!(s.f1, Some(0.5));
        assert_eq!(s.mean_delay_secs, Some(180.0));
        assert_eq!(s.max_delay_secs, Some(180.0));
        assert_eq!(s.keys[0].detected, 1);
        assert_eq!(s.keys[1].findings, 1);
        // A window that begins inside the finding's evidence window counts as hit.
        let edge = score(&labels, &[f("a", 9 * MIN + 30_000_000)]);
        assert_eq!(edge.detected_windows, 1);
        assert_eq!(edge.mean_delay_secs, Some(30.0));
    }

    #[test]
    fn bad_labels_are_named() {
        let e = Labels::parse(r#"{"a": [["2024-01-01T00:00:00Z"]]}"#).unwrap_err();
        assert_eq!(e.to_string(), "labels[\"a\"][0]: a window is [start, end]");
        let e = Labels::parse(r#"{"a": [[5, 1]]}"#).unwrap_err();
        assert_eq!(e.to_string(), "labels[\"a\"][0]: end is before start");
        assert!(Labels::parse("[]").is_err());
    }
}
