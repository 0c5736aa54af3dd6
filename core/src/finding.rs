//! Findings (what detect reports), decisions (what enrichment concludes) and the incident
//! workflow states (DESIGN §4–§6).

use serde::{Deserialize, Serialize};
use std::fmt;

/// The resource a finding is about: type (a rule's resource type name such as
/// `ssm_parameter`), id, and where it lives.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct ResourceKey {
    /// Resource type name from the rule set, e.g. `ssm_parameter`, `ec2_instance`.
    pub resource_type: String,
    /// Resource id, e.g. `/prod/db/password`, `i-0abc`.
    pub resource_id: String,
    /// Account id, when known.
    pub account: Option<String>,
    /// Region, when known.
    pub region: Option<String>,
}

impl ResourceKey {
    /// The key used for cooldown locks and incident look-ups:
    /// `<account>/<region>/<type>/<id>` with `-` for unknown parts.
    pub fn key(&self) -> String {
        format!(
            "{}/{}/{}/{}",
            self.account.as_deref().unwrap_or("-"),
            self.region.as_deref().unwrap_or("-"),
            self.resource_type,
            self.resource_id
        )
    }
}

/// What produced a finding. Ordered as declared (change rules first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// A change rule matched a destructive CloudTrail call.
    ChangeRule,
    /// A count series exceeded its learned rate.
    RateAnomaly,
    /// A value series left its robust location/scale band.
    ValueAnomaly,
    /// A template, or a principal/API pair, seen for the first time after warm-up.
    Novelty,
}

impl FindingKind {
    /// Snake-case name, as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::ChangeRule => "change_rule",
            FindingKind::RateAnomaly => "rate_anomaly",
            FindingKind::ValueAnomaly => "value_anomaly",
            FindingKind::Novelty => "novelty",
        }
    }
}

/// Which way a statistical finding departs from its expectation (DESIGN §4, "Both tails").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// More than expected: a burst (count series) or a value above its band.
    Spike,
    /// Less than expected: a busy series that went quiet or fell steeply, or a value below its
    /// band.
    Drop,
}

impl Direction {
    /// Lower-case name, as serialised (`spike`, `drop`).
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Spike => "spike",
            Direction::Drop => "drop",
        }
    }
}

/// How urgent a finding is (DESIGN §4): it decides whether the finding opens an incident
/// (see the detect configuration's `incident_priorities`); every finding is recorded either
/// way. Ordered `Low < Medium < High`. The default is `High`: findings stored before
/// priorities existed deserialise as `HIGH` (they all opened an incident then).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "UPPERCASE")]
pub enum Priority {
    /// Recorded only by default (e.g. a rate change of an INFO or DEBUG template).
    Low,
    /// Worth a look (e.g. a WARN burst, a new principal/API pair, a single unconfirmed
    /// window of an ERROR series); opens an incident only when configured to.
    Medium,
    /// Opens an incident (change rules, ERROR/FATAL bursts, AccessDenied bursts, drops of a
    /// busy series, new error templates).
    #[default]
    High,
}

impl Priority {
    /// Upper-case name, as serialised (`HIGH`, `MEDIUM`, `LOW`).
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "LOW",
            Priority::Medium => "MEDIUM",
            Priority::High => "HIGH",
        }
    }

    /// Parses an upper-case name (`HIGH`, `MEDIUM`, `LOW`).
    pub fn parse(s: &str) -> Option<Priority> {
        [Priority::Low, Priority::Medium, Priority::High]
            .into_iter()
            .find(|p| p.as_str() == s)
    }
}

/// One of the top contributors to an aggregate series in a window, e.g. the principal behind
/// most of the AccessDenied calls.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Contributor {
    /// The contributor: a principal key (CloudTrail) or a template text (logs).
    pub name: String,
    /// Events it contributed to the window (a lower bound, exact unless the series had more
    /// distinct contributors in the window than its sketch holds).
    pub count: u64,
}

/// A bounded sample of the evidence behind a finding.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Evidence {
    /// Ids of the events behind the finding (at most a few).
    pub event_ids: Vec<String>,
    /// CloudTrail `eventSource`, for change rules.
    pub event_source: Option<String>,
    /// CloudTrail `eventName`, for change rules.
    pub event_name: Option<String>,
    /// The caller's principal key (see `Principal::key`).
    pub principal: Option<String>,
    /// The caller's source IP or service name.
    pub source_ip: Option<String>,
    /// The series key, for statistical findings.
    pub series_key: Option<String>,
    /// Window start and end, microseconds since the Unix epoch, UTC.
    pub window: Option<(i64, i64)>,
    /// Observed value (count or value) in the window.
    pub observed: Option<f64>,
    /// Expected value from the model.
    pub expected: Option<f64>,
    /// The template text (variables as `<*>`, as the miner had it when the finding was made),
    /// for findings on a template series (`log_template:<group>:<id>`); `None` for every
    /// other finding, and for a template evicted from the miner's dictionary before the window
    /// closed.
    pub template: Option<String>,
    /// The template's content-derived id, 16 lowercase hexadecimal digits (the `<id>` of the
    /// series key `log_template:<group>:<id>`; detect's `template_key`), for findings on a
    /// template series; `None` for every other finding. A finding that merged one window's
    /// findings of nested series (a log level and the one template that makes it up) carries
    /// the template of its template member when exactly one member had a template.
    /// Findings stored before it existed read as `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_id: Option<String>,
    /// A few example lines or the CloudTrail request parameters.
    pub samples: Vec<String>,
    /// For aggregate series (error codes, event sources, log levels): the top contributors in
    /// the window, largest first (at most a few); their total is `observed`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub top_contributors: Vec<Contributor>,
    /// Findings of the same window on nested series merged into this one (one line each:
    /// `<detector> <series key>: <observed> observed, <expected> expected`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub related: Vec<String>,
}

/// One finding (DESIGN §4): something detect believes is wrong.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// Stable id: the same input produces the same id (hex of a hash of detector and key).
    pub finding_id: String,
    /// What produced it.
    pub kind: FindingKind,
    /// The rule or detector name, e.g. `ssm_delete_parameter`.
    pub detector: String,
    /// Event time of the triggering event or window end: microseconds since the epoch, UTC.
    pub event_time: i64,
    /// Wall-clock time the finding was made: microseconds since the epoch, UTC.
    pub detected_at: i64,
    /// The resource it concerns, when one is known.
    pub resource: Option<ResourceKey>,
    /// Anomaly score in [0, 1] (1 for change rules).
    pub score: f64,
    /// One-line human summary.
    pub summary: String,
    /// The default recovery action named by the rule (`None` for statistical findings).
    pub default_action: Option<String>,
    /// Whether this finding may lead to recovery on its own (change rules only).
    pub recoverable: bool,
    /// Which way it departs from the expectation (`None` for change rules and novelty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<Direction>,
    /// How urgent it is; decides whether it opens an incident.
    #[serde(default)]
    pub priority: Priority,
    /// Why act opened no incident for it, when a suppression (`aiops suppress add`) or "not an
    /// incident" feedback held it back; `None` when it was not suppressed. Set by act only: a
    /// finding leaves detect with `None`, and the `findings` table records act's verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suppressed: Option<String>,
    /// Supporting evidence.
    pub evidence: Evidence,
}

impl Finding {
    /// Whether this finding opens an incident when `incident_priorities` are the priorities
    /// that do (detect's `incident_priorities`, default `["HIGH"]`): change-rule findings
    /// always do; others when their priority is listed. Findings that open none are still
    /// recorded (findings table, backtest).
    pub fn opens_incident(&self, incident_priorities: &[Priority]) -> bool {
        self.kind == FindingKind::ChangeRule || incident_priorities.contains(&self.priority)
    }
}

/// Model or explainer classification of a finding (DESIGN §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Classification {
    /// Something broke.
    Failure,
    /// Someone tampered with the account or evaded defences.
    Tampering,
    /// Statistically unusual, cause unknown.
    Anomaly,
    /// Expected behaviour.
    Normal,
}

impl Classification {
    /// Upper-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Classification::Failure => "FAILURE",
            Classification::Tampering => "TAMPERING",
            Classification::Anomaly => "ANOMALY",
            Classification::Normal => "NORMAL",
        }
    }
}

/// The enrichment of one finding: classification and recommended action (DESIGN §5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// The finding decided on.
    pub finding: Finding,
    /// Classification.
    pub classification: Classification,
    /// Confidence in [0, 1].
    pub confidence: f64,
    /// Severity 1 (low) to 10 (critical).
    pub severity: u8,
    /// Why, in prose.
    pub reasoning: String,
    /// The recommended action from the allowlist, or `None`.
    pub action: Option<String>,
    /// Predicted impact, in prose.
    pub predicted_impact: String,
    /// Who decided: `statistical` or `bedrock:<model id>`.
    pub explainer: String,
}

/// Incident workflow states (DESIGN §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum WorkflowState {
    /// Finding received, incident opened.
    Detected,
    /// Enrichment running.
    Analyzing,
    /// Classification and action chosen.
    Decided,
    /// Another recovery for the same resource is within its cooldown.
    SkippedCooldown,
    /// Below the confidence gate, or not recoverable: a person decides.
    ManualReview,
    /// Recovery build started.
    Executing,
    /// Verification build running.
    Verifying,
    /// Recovery verified.
    Resolved,
    /// Recovery or verification failed.
    Failed,
}

impl WorkflowState {
    /// All states in workflow order.
    pub const ALL: [WorkflowState; 9] = [
        WorkflowState::Detected,
        WorkflowState::Analyzing,
        WorkflowState::Decided,
        WorkflowState::SkippedCooldown,
        WorkflowState::ManualReview,
        WorkflowState::Executing,
        WorkflowState::Verifying,
        WorkflowState::Resolved,
        WorkflowState::Failed,
    ];

    /// Upper snake-case name, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkflowState::Detected => "DETECTED",
            WorkflowState::Analyzing => "ANALYZING",
            WorkflowState::Decided => "DECIDED",
            WorkflowState::SkippedCooldown => "SKIPPED_COOLDOWN",
            WorkflowState::ManualReview => "MANUAL_REVIEW",
            WorkflowState::Executing => "EXECUTING",
            WorkflowState::Verifying => "VERIFYING",
            WorkflowState::Resolved => "RESOLVED",
            WorkflowState::Failed => "FAILED",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<WorkflowState> {
        WorkflowState::ALL.into_iter().find(|w| w.as_str() == s)
    }

    /// Whether the workflow allows a transition from `self` to `next` (DESIGN §6:
    /// DETECTED -> ANALYZING -> DECIDED -> (SKIPPED_COOLDOWN | MANUAL_REVIEW | EXECUTING) ->
    /// VERIFYING -> RESOLVED | FAILED; EXECUTING may also fail directly).
    pub fn can_move_to(self, next: WorkflowState) -> bool {
        use WorkflowState::*;
        matches!(
            (self, next),
            (Detected, Analyzing)
                | (Analyzing, Decided)
                | (Decided, SkippedCooldown)
                | (Decided, ManualReview)
                | (Decided, Executing)
                | (Executing, Verifying)
                | (Executing, Failed)
                | (Verifying, Resolved)
                | (Verifying, Failed)
        )
    }

    /// Whether the state is final.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            WorkflowState::SkippedCooldown
                | WorkflowState::ManualReview
                | WorkflowState::Resolved
                | WorkflowState::Failed
        )
    }
}

impl fmt::Display for WorkflowState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workflow_transitions_follow_design() {
        use WorkflowState::*;
        assert!(Detected.can_move_to(Analyzing));
        assert!(!Detected.can_move_to(Executing));
        assert!(Decided.can_move_to(ManualReview));
        assert!(!Resolved.can_move_to(Failed));
        assert!(Verifying.can_move_to(Resolved));
        for s in WorkflowState::ALL {
            assert_eq!(WorkflowState::parse(s.as_str()), Some(s));
        }
    }

    #[test]
    fn direction_and_priority_serialise_as_documented() {
        assert_eq!(serde_json::to_string(&Direction::Drop).unwrap(), "\"drop\"");
        assert_eq!(
            serde_json::to_string(&Direction::Spike).unwrap(),
            "\"spike\""
        );
        assert_eq!(serde_json::to_string(&Priority::High).unwrap(), "\"HIGH\"");
        assert_eq!(
            serde_json::from_str::<Priority>("\"MEDIUM\"").unwrap(),
            Priority::Medium
        );
        assert_eq!(Priority::parse("LOW"), Some(Priority::Low));
        assert_eq!(Priority::parse("low"), None);
        assert!(Priority::Low < Priority::Medium && Priority::Medium < Priority::High);
    }

    #[test]
    fn only_listed_priorities_and_change_rules_open_incidents() {
        let mut f = Finding {
            suppressed: None,
            finding_id: "1".into(),
            kind: FindingKind::RateAnomaly,
            detector: "log_template_rate".into(),
            event_time: 0,
            detected_at: 0,
            resource: None,
            score: 0.6,
            summary: String::new(),
            default_action: None,
            recoverable: false,
            direction: Some(Direction::Spike),
            priority: Priority::Low,
            evidence: Evidence::default(),
        };
        assert!(!f.opens_incident(&[Priority::High]));
        f.priority = Priority::High;
        assert!(f.opens_incident(&[Priority::High]));
        assert!(!f.opens_incident(&[]));
        f.kind = FindingKind::ChangeRule;
        f.priority = Priority::Low;
        assert!(f.opens_incident(&[]));
        // Stored before priorities existed: no field, read as HIGH with no direction.
        let mut v = serde_json::to_value(&f).unwrap();
        let o = v.as_object_mut().unwrap();
        o.remove("priority");
        o.remove("direction");
        let back: Finding = serde_json::from_value(v).unwrap();
        assert_eq!((back.priority, back.direction), (Priority::High, None));
    }

    #[test]
    fn resource_key_marks_unknown_parts() {
        let r = ResourceKey {
            resource_type: "ssm_parameter".into(),
            resource_id: "/a".into(),
            account: Some("1".into()),
            region: None,
        };
        assert_eq!(r.key(), "1/-/ssm_parameter//a");
    }
}
