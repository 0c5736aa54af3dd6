//! Suppressions and feedback (DESIGN §6): the pure checks. The stores keep them with the
//! incidents ([`crate::IncidentStore`]: SQLite in embedded mode, DynamoDB in aws mode).
//!
//! A suppression names a series key (`log_level:/ecs/payments-api:ERROR`), a template id
//! (`t-1f2e...`) or a resource key (`123456789012/us-east-1/ssm_parameter//prod/x`), with an
//! optional expiry (wall clock) and a reason. A suppressed finding is still recorded (the
//! pipeline marks it `suppressed`) but opens no incident and joins none.
//!
//! Feedback: `resolve --not-an-incident` closes an incident and records a [`Feedback`] per
//! series key of its findings, with the highest score those findings had. **Rule**: a later
//! finding of such a series opens an incident only when its score is strictly above the
//! feedback's score (the highest over the series' feedback of the last `feedback_days`);
//! otherwise it is handled like a suppressed one (recorded, counted, no incident). The act
//! workflow applies the rule (through [`series_min_scores`]) to every finding it handles; the
//! detect stage does not read feedback, so the finding itself is still made and recorded.

use crate::group::finding_scope;
use aiops_core::Finding;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What a suppression matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SuppressionKind {
    /// A statistical series key.
    Series,
    /// A log template id.
    Template,
    /// A resource key (`ResourceKey::key`).
    Resource,
}

impl SuppressionKind {
    /// `series`, `template` or `resource`.
    pub fn as_str(self) -> &'static str {
        match self {
            SuppressionKind::Series => "series",
            SuppressionKind::Template => "template",
            SuppressionKind::Resource => "resource",
        }
    }

    /// Parses [`SuppressionKind::as_str`].
    pub fn parse(s: &str) -> Option<SuppressionKind> {
        match s {
            "series" => Some(SuppressionKind::Series),
            "template" => Some(SuppressionKind::Template),
            "resource" => Some(SuppressionKind::Resource),
            _ => None,
        }
    }

    /// The kind a CLI argument most likely names: a resource key has four `/`-separated parts
    /// and a known account/region shape (`<account>/<region>/<type>/<id>`), a series key has
    /// a `:`, anything else is a template id.
    pub fn guess(target: &str) -> SuppressionKind {
        let parts: Vec<&str> = target.splitn(4, '/').collect();
        if parts.len() == 4
            && (parts[0] == "-" || parts[0].bytes().all(|b| b.is_ascii_digit()))
            && !parts[2].is_empty()
        {
            SuppressionKind::Resource
        } else if target.contains(':') {
            SuppressionKind::Series
        } else {
            SuppressionKind::Template
        }
    }
}

/// One suppression.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suppression {
    /// `sup-<kind>-<hash of value>`: adding the same target twice replaces it.
    pub suppression_id: String,
    /// What it matches.
    pub kind: SuppressionKind,
    /// The series key, template id or resource key.
    pub value: String,
    /// Why (free text, at most 1 KiB).
    pub reason: Option<String>,
    /// Created, microseconds since the Unix epoch, UTC (wall clock).
    pub created_at: i64,
    /// Expires at (wall clock, microseconds); `None`: until removed.
    pub expires_at: Option<i64>,
}

impl Suppression {
    /// A suppression of `value` created at `now`, for `for_secs` seconds (`None`: until
    /// removed).
    pub fn new(
        kind: SuppressionKind,
        value: &str,
        reason: Option<String>,
        now: i64,
        for_secs: Option<u64>,
    ) -> Suppression {
        let hash = aiops_core::stable_hash(&[kind.as_str().as_bytes(), value.as_bytes()]);
        Suppression {
            suppression_id: format!("sup-{}-{hash:016x}", kind.as_str()),
            kind,
            value: value.to_string(),
            reason: reason.map(|r| crate::text::truncate_utf8(&r, 1024)),
            created_at: now,
            expires_at: for_secs.map(|s| {
                now.saturating_add(
                    i64::try_from(s)
                        .unwrap_or(i64::MAX / 1_000_000)
                        .saturating_mul(1_000_000),
                )
            }),
        }
    }

    /// Whether it is in force at `now` (wall clock, microseconds).
    pub fn active(&self, now: i64) -> bool {
        self.expires_at.is_none_or(|e| now < e)
    }

    /// Whether it matches `f` (ignoring expiry).
    pub fn matches(&self, f: &Finding) -> bool {
        let s = finding_scope(f);
        match self.kind {
            SuppressionKind::Series => s.series_key.as_deref() == Some(self.value.as_str()),
            SuppressionKind::Template => s.template_id.as_deref() == Some(self.value.as_str()),
            SuppressionKind::Resource => s.resource_key.as_deref() == Some(self.value.as_str()),
        }
    }
}

/// The first suppression of `list` in force at `now` that matches `f`.
pub fn is_suppressed<'a>(
    f: &Finding,
    now: i64,
    list: &'a [Suppression],
) -> Option<&'a Suppression> {
    list.iter().find(|s| s.active(now) && s.matches(f))
}

/// "Not an incident" feedback on one series of a closed incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Feedback {
    /// The incident it was given on.
    pub incident_id: String,
    /// `not_an_incident`.
    pub verdict: String,
    /// The series key (empty for findings without one, e.g. change rules).
    pub series_key: String,
    /// The highest score of the incident's findings of that series.
    pub score: f64,
    /// A note (at most 1 KiB).
    pub note: Option<String>,
    /// When given, microseconds since the Unix epoch, UTC (wall clock).
    pub at: i64,
}

/// How long feedback raises a series' threshold, days (DESIGN: feedback is not for ever; a
/// series that changes behaviour months later should page again).
pub const FEEDBACK_DAYS: i64 = 30;

/// The minimum score per series a finding must exceed to open an incident, from the feedback
/// given within [`FEEDBACK_DAYS`] before `now` (the rule in the module documentation): series
/// key -> highest feedback score: the threshold the act workflow holds each series' findings to.
pub fn series_min_scores(feedback: &[Feedback], now: i64) -> BTreeMap<String, f64> {
    let horizon = now.saturating_sub(FEEDBACK_DAYS * 86_400 * 1_000_000);
    let mut out: BTreeMap<String, f64> = BTreeMap::new();
    for f in feedback
        .iter()
        .filter(|f| f.at >= horizon && !f.series_key.is_empty())
    {
        let e = out.entry(f.series_key.clone()).or_insert(f.score);
        if f.score > *e {
            *e = f.score;
        }
    }
    out
}

/// Whether feedback holds `f` back: its series has a minimum score (see
/// [`series_min_scores`]) and its score is not above it. Returns that minimum.
pub fn held_back_by_feedback(f: &Finding, min_scores: &BTreeMap<String, f64>) -> Option<f64> {
    let series = f.evidence.series_key.as_deref()?;
    let min = *min_scores.get(series)?;
    (f.score <= min).then_some(min)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aiops_core::{Evidence, FindingKind};

    fn f(series: &str, score: f64) -> Finding {
        Finding {
            suppressed: None,
            finding_id: "f".into(),
            kind: FindingKind::RateAnomaly,
            detector: "rate".into(),
            event_time: 0,
            detected_at: 0,
            resource: None,
            score,
            summary: String::new(),
            default_action: None,
            recoverable: false,
            evidence: Evidence {
                series_key: Some(series.into()),
                ..Evidence::default()
            },
            direction: None,
            priority: aiops_core::Priority::High,
        }
    }

    #[test]
    fn suppression_matches_and_expires() {
        let h = 3_600_000_000;
        let s = Suppression::new(
            SuppressionKind::Series,
            "log_level:/ecs/a:ERROR",
            Some("deploy".into()),
            0,
            Some(7200),
        );
        assert_eq!(s.expires_at, Some(2 * h));
        let list = [s];
        assert!(is_suppressed(&f("log_level:/ecs/a:ERROR", 0.9), 2 * h - 1, &list).is_some());
        assert!(is_suppressed(&f("log_level:/ecs/a:ERROR", 0.9), 2 * h, &list).is_none());
        assert!(is_suppressed(&f("log_level:/ecs/b:ERROR", 0.9), 0, &list).is_none());
        let t = Suppression::new(SuppressionKind::Template, "t-9", None, 0, None);
        assert!(t.matches(&f("log_template:/ecs/a:t-9", 0.5)));
        // A level finding that merged the template's finding carries its id, and matches.
        let mut merged = f("log_level:/ecs/a:ERROR", 0.9);
        assert!(!t.matches(&merged));
        merged.evidence.template_id = Some("t-9".into());
        assert!(t.matches(&merged));
        assert!(t.active(i64::MAX));
        assert_eq!(
            SuppressionKind::guess("log_level:/ecs/a:ERROR"),
            SuppressionKind::Series
        );
        assert_eq!(
            SuppressionKind::guess("123456789012/us-east-1/ssm_parameter//prod/x"),
            SuppressionKind::Resource
        );
        assert_eq!(SuppressionKind::guess("t-9"), SuppressionKind::Template);
    }

    #[test]
    fn feedback_raises_the_series_threshold() {
        let day = 86_400_000_000;
        let fb = |score, at| Feedback {
            incident_id: "i".into(),
            verdict: "not_an_incident".into(),
            series_key: "s".into(),
            score,
            note: None,
            at,
        };
        let min = series_min_scores(&[fb(0.95, 0), fb(0.99, day), fb(1.0, -31 * day)], 2 * day);
        assert_eq!(min.get("s"), Some(&0.99));
        assert_eq!(held_back_by_feedback(&f("s", 0.99), &min), Some(0.99));
        assert_eq!(held_back_by_feedback(&f("s", 0.995), &min), None);
        assert_eq!(held_back_by_feedback(&f("t", 0.5), &min), None);
    }
}
