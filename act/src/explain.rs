//! Explainers: turn a finding into a decision (DESIGN §5). The statistical explainer needs no
//! model and is the fallback whenever a model's answer cannot be used.

use crate::incident::Incident;
use aiops_core::{Classification, Decision, Finding, FindingKind};
use std::collections::BTreeMap;

/// What the workflow knows besides the finding when it asks for a decision.
#[derive(Debug, Clone, Copy)]
pub struct ExplainContext<'a> {
    /// Actions allowed for the finding's resource type (the model may only choose among
    /// these; the workflow rejects anything else).
    pub allowed_actions: &'a [String],
    /// Earlier incidents of the same resource, newest first (never the incident itself).
    pub history: &'a [Incident],
    /// Final-state counters of the resource type (`RESOLVED` -> n, ...).
    pub outcome_counts: &'a BTreeMap<String, u64>,
}

/// A decision and how it was reached.
#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    /// The decision.
    pub decision: Decision,
    /// Why the decision did not come from the configured explainer, when it did not, e.g.
    /// `bedrock answer unusable: truncated (stopReason max_tokens)`.
    pub note: Option<String>,
    /// `false` when the decision must not lead to an action whatever it says: the model's
    /// answer was unusable (malformed, truncated, off-schema), so the fallback's
    /// classification is kept for the record and a person decides (DESIGN §5: "anything else
    /// falls back to the statistical explainer, never to an action").
    pub may_act: bool,
    /// The model's answer as received (stop reason and text, bounded by
    /// [`crate::bedrock::bound_raw_answer`]), when a model answered; stored with the incident
    /// so a person can see why an answer was used or rejected. `None` for explainers without
    /// a model and when no answer came back.
    pub raw_answer: Option<String>,
}

impl Explanation {
    /// A decision that may act, with no note.
    pub fn plain(decision: Decision) -> Explanation {
        Explanation {
            decision,
            note: None,
            may_act: true,
            raw_answer: None,
        }
    }
}

/// Something that classifies a finding and recommends an action.
pub trait Explainer {
    /// Decides on one finding. Never fails: an explainer that cannot answer falls back and
    /// says why in [`Explanation::note`].
    fn explain(&self, finding: &Finding, context: &ExplainContext<'_>) -> Explanation;

    /// Whether [`ExplainContext::history`] and [`ExplainContext::outcome_counts`] are used
    /// (the workflow skips the store reads otherwise). Default `false`.
    fn wants_history(&self) -> bool {
        false
    }
}

impl<T: Explainer + ?Sized> Explainer for Box<T> {
    fn explain(&self, finding: &Finding, context: &ExplainContext<'_>) -> Explanation {
        (**self).explain(finding, context)
    }
    fn wants_history(&self) -> bool {
        (**self).wants_history()
    }
}

impl<T: Explainer + ?Sized> Explainer for &T {
    fn explain(&self, finding: &Finding, context: &ExplainContext<'_>) -> Explanation {
        (**self).explain(finding, context)
    }
    fn wants_history(&self) -> bool {
        (**self).wants_history()
    }
}

/// What the statistical explainer knows about a change rule: severity 1..=10 and category
/// (`destructive` or `defence_evasion`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleProfile {
    /// Severity 1..=10.
    pub severity: u8,
    /// `destructive` or `defence_evasion`.
    pub category: String,
}

/// The built-in explainer: change-rule findings are FAILURE (destructive) or TAMPERING
/// (defence evasion) with confidence 0.9 and the rule's default action; statistical findings
/// are ANOMALY with confidence equal to their score and no action (a person reviews them).
#[derive(Debug, Clone, Default)]
pub struct StatisticalExplainer {
    rules: BTreeMap<String, RuleProfile>,
}

/// Confidence the statistical explainer gives a change-rule finding: the call is certain to
/// have happened and to have changed the resource, so only intent is unknown.
pub const CHANGE_RULE_CONFIDENCE: f64 = 0.9;

impl StatisticalExplainer {
    /// An explainer knowing the profiles of the change rules, keyed by rule name.
    pub fn new(rules: BTreeMap<String, RuleProfile>) -> Self {
        StatisticalExplainer { rules }
    }

    /// The profile of a change rule, when known.
    pub fn profile(&self, rule: &str) -> Option<&RuleProfile> {
        self.rules.get(rule)
    }

    /// The statistical decision on `finding` (see the type's documentation).
    pub fn decide(&self, finding: &Finding) -> Decision {
        match finding.kind {
            FindingKind::ChangeRule => {
                let profile = self.rules.get(&finding.detector);
                let tampering = profile.is_some_and(|p| p.category == "defence_evasion");
                let severity = profile.map_or(7, |p| p.severity.clamp(1, 10));
                let resource = finding
                    .resource
                    .as_ref()
                    .map(|r| format!("{} {}", r.resource_type, r.resource_id))
                    .unwrap_or_else(|| "an unknown resource".to_string());
                Decision {
                    finding: finding.clone(),
                    classification: if tampering {
                        Classification::Tampering
                    } else {
                        Classification::Failure
                    },
                    confidence: CHANGE_RULE_CONFIDENCE,
                    severity,
                    reasoning: format!(
                        "Change rule {} matched a successful {} call on {}{}.",
                        finding.detector,
                        finding.evidence.event_name.as_deref().unwrap_or("API"),
                        resource,
                        if tampering {
                            "; it weakens logging or protection (defence evasion)"
                        } else {
                            ""
                        }
                    ),
                    action: finding.default_action.clone(),
                    predicted_impact: format!(
                        "{resource} is gone, stopped or weakened until restored"
                    ),
                    explainer: "statistical".to_string(),
                }
            }
            _ => {
                let score = if finding.score.is_finite() {
                    finding.score.clamp(0.0, 1.0)
                } else {
                    0.0
                };
                Decision {
                    finding: finding.clone(),
                    classification: Classification::Anomaly,
                    confidence: score,
                    severity: (3.0 + (score * 4.0).round()) as u8,
                    reasoning: format!(
                        "{} (observed {}, expected {}).",
                        finding.summary,
                        finding
                            .evidence
                            .observed
                            .map_or("n/a".to_string(), |v| format!("{v:.1}")),
                        finding
                            .evidence
                            .expected
                            .map_or("n/a".to_string(), |v| format!("{v:.1}"))
                    ),
                    action: None,
                    predicted_impact: "unknown; statistical anomaly for review".to_string(),
                    explainer: "statistical".to_string(),
                }
            }
        }
    }
}

impl Explainer for StatisticalExplainer {
    fn explain(&self, finding: &Finding, _context: &ExplainContext<'_>) -> Explanation {
        Explanation::plain(self.decide(finding))
    }
}
