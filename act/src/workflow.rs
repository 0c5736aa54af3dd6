//! The incident workflow (DESIGN §6): open an incident for a finding, decide on it, gate it on
//! the allowlist, confidence and cooldown, recover, verify, notify, and record every step.
//!
//! DETECTED -> ANALYZING -> DECIDED -> (SKIPPED_COOLDOWN | MANUAL_REVIEW | EXECUTING ->
//! VERIFYING -> RESOLVED | FAILED). Every transition is conditional on the previous state, so
//! of several workers handling the same incident only one moves it, and only the worker whose
//! transition into MANUAL_REVIEW, RESOLVED or FAILED succeeded sends that state's notification:
//! one per incident.

pub use crate::config::{ActConfig, ActConfigError, RecoveryConfig};
use crate::explain::{ExplainContext, Explainer};
use crate::incident::{Incident, IncidentPatch, IncidentStore, StoreError, TimelineEntry};
use crate::notify::{NoopNotifier, Notification, Notifier};
use crate::text::truncate_utf8;
use aiops_core::time::now_micros;
use aiops_core::{Finding, WorkflowState};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use thiserror::Error;

/// What a recovery executor is asked to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoveryPlan {
    /// CodeBuild project (apply or verify).
    pub project: String,
    /// Environment overrides: `RESOURCE_TYPE`, `RESOURCE_ID`, `TF_TARGET`, `CORRELATION_ID`,
    /// `ACTION`.
    pub environment: BTreeMap<String, String>,
}

/// How a build ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BuildOutcome {
    /// The build succeeded (for verify: no drift).
    Succeeded,
    /// Nothing ran: the dry-run executor recorded the plan.
    DryRun,
    /// The build failed, timed out or could not start; the reason.
    Failed(String),
}

/// A finished build: its id and outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildResult {
    /// Build id (`dry-run:<project>:<uuid>` for the dry-run executor); `None` when the build
    /// could not be started.
    pub build_id: Option<String>,
    /// How it ended.
    pub outcome: BuildOutcome,
}

/// Runs recovery builds (CodeBuild in aws mode; the dry-run executor in embedded mode).
pub trait RecoveryExecutor {
    /// Runs one build to completion (or time-out) and reports how it ended; calls `started`
    /// with the build id as soon as the build is accepted (so the incident shows it while the
    /// build runs). Implementations never return before the build is finished: "accepted" is
    /// not "succeeded".
    fn run(&self, plan: &RecoveryPlan, started: &mut dyn FnMut(&str)) -> BuildResult;
}

impl<T: RecoveryExecutor + ?Sized> RecoveryExecutor for Box<T> {
    fn run(&self, plan: &RecoveryPlan, started: &mut dyn FnMut(&str)) -> BuildResult {
        (**self).run(plan, started)
    }
}

impl<T: RecoveryExecutor + ?Sized> RecoveryExecutor for &T {
    fn run(&self, plan: &RecoveryPlan, started: &mut dyn FnMut(&str)) -> BuildResult {
        (**self).run(plan, started)
    }
}

impl<T: RecoveryExecutor + ?Sized> RecoveryExecutor for std::sync::Arc<T> {
    fn run(&self, plan: &RecoveryPlan, started: &mut dyn FnMut(&str)) -> BuildResult {
        (**self).run(plan, started)
    }
}

/// Records the build it would start and runs nothing.
#[derive(Debug, Default, Clone)]
pub struct DryRunExecutor;

impl RecoveryExecutor for DryRunExecutor {
    fn run(&self, plan: &RecoveryPlan, started: &mut dyn FnMut(&str)) -> BuildResult {
        tracing::info!(project = %plan.project, environment = ?plan.environment, "dry run: build not started");
        let id = format!("dry-run:{}:{}", plan.project, uuid::Uuid::new_v4().simple());
        started(&id);
        BuildResult {
            build_id: Some(id),
            outcome: BuildOutcome::DryRun,
        }
    }
}

/// Errors of the workflow.
#[derive(Debug, Error)]
pub enum WorkflowError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The workflow, over a store, an explainer, an executor and a notifier.
pub struct Workflow<S, E, X, N = NoopNotifier> {
    store: S,
    explainer: E,
    executor: X,
    notifier: N,
    config: ActConfig,
    worker_id: String,
}

/// The result of handling one finding.
#[derive(Debug, Clone, PartialEq)]
pub struct Handled {
    /// The incident as it ended up (`None` when the finding was already handled).
    pub incident: Option<Incident>,
    /// Whether this call opened the incident (false for a duplicate delivery).
    pub opened: bool,
}

/// Longest resource key used for locks and look-ups, bytes (DynamoDB partition keys are at
/// most 2048 bytes).
pub const MAX_RESOURCE_KEY_BYTES: usize = 1024;

/// `key` itself when at most [`MAX_RESOURCE_KEY_BYTES`] long, else its first ~1000 bytes
/// followed by `#` and the hex of a stable hash of the whole key (still unique per resource).
pub fn bounded_key(key: String) -> String {
    if key.len() <= MAX_RESOURCE_KEY_BYTES {
        return key;
    }
    let hash = aiops_core::stable_hash(&[key.as_bytes()]);
    let head = truncate_utf8(&key, MAX_RESOURCE_KEY_BYTES - 24);
    format!("{head}#{hash:016x}")
}

/// Longest reasoning stored, bytes.
const MAX_REASONING_BYTES: usize = 8 * 1024;
/// Longest outcome / note stored, bytes.
const MAX_NOTE_BYTES: usize = 4 * 1024;

impl<S: IncidentStore, E: Explainer, X: RecoveryExecutor> Workflow<S, E, X, NoopNotifier> {
    /// A workflow for one worker (`worker_id` names the holder of cooldown locks), without
    /// notifications (see [`Workflow::with_notifier`]).
    pub fn new(store: S, explainer: E, executor: X, config: ActConfig, worker_id: String) -> Self {
        Workflow {
            store,
            explainer,
            executor,
            notifier: NoopNotifier,
            config,
            worker_id,
        }
    }
}

impl<S: IncidentStore, E: Explainer, X: RecoveryExecutor, N: Notifier> Workflow<S, E, X, N> {
    /// The same workflow sending notifications through `notifier`.
    pub fn with_notifier<N2: Notifier>(self, notifier: N2) -> Workflow<S, E, X, N2> {
        Workflow {
            store: self.store,
            explainer: self.explainer,
            executor: self.executor,
            notifier,
            config: self.config,
            worker_id: self.worker_id,
        }
    }

    /// The store (for reads).
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The explainer.
    pub fn explainer(&self) -> &E {
        &self.explainer
    }

    /// The executor.
    pub fn executor(&self) -> &X {
        &self.executor
    }

    /// The configuration.
    pub fn config(&self) -> &ActConfig {
        &self.config
    }

    /// Handles one finding end to end: DETECTED -> ANALYZING -> DECIDED -> (SKIPPED_COOLDOWN |
    /// MANUAL_REVIEW | EXECUTING -> VERIFYING -> RESOLVED | FAILED). A finding already handled
    /// (same incident id) is not handled again. Blocks while builds run.
    ///
    /// # Errors
    /// [`WorkflowError`] when the store fails; the incident stays in its last written state.
    pub fn handle(&self, finding: &Finding) -> Result<Handled, WorkflowError> {
        let now = now_micros();
        let (resource_key, resource_type, resource_id) = match &finding.resource {
            Some(r) => (
                bounded_key(r.key()),
                r.resource_type.clone(),
                r.resource_id.clone(),
            ),
            None => (
                format!("finding:{}", finding.finding_id),
                String::new(),
                String::new(),
            ),
        };
        let incident = Incident {
            incident_id: format!("inc-{}", finding.finding_id),
            correlation_id: uuid::Uuid::new_v4().to_string(),
            resource_key: resource_key.clone(),
            resource_type: resource_type.clone(),
            resource_id: resource_id.clone(),
            state: WorkflowState::Detected,
            finding: finding.clone(),
            classification: None,
            confidence: None,
            severity: None,
            reasoning: None,
            action: None,
            explainer: None,
            codebuild_project: None,
            terraform_target: None,
            build_ids: Vec::new(),
            outcome: None,
            enrichment_note: None,
            evidence_ref: None,
            notification: None,
            timeline: vec![TimelineEntry {
                state: WorkflowState::Detected,
                at: now,
            }],
            event_time: finding.event_time,
            created_at: now,
            updated_at: now,
        };
        if !self.store.create(&incident)? {
            return Ok(Handled {
                incident: None,
                opened: false,
            });
        }
        let id = incident.incident_id.clone();
        let step = |from, to, patch: IncidentPatch| -> Result<bool, WorkflowError> {
            Ok(self.store.transition(&id, from, to, &patch, now_micros())?)
        };
        use WorkflowState::*;
        if !step(Detected, Analyzing, IncidentPatch::default())? {
            return self.finish(&id);
        }

        // Decide. The history excludes this incident: it must not count as its own past.
        let allowed = self.config.allowed_actions(&resource_type).to_vec();
        let (history, counts) = if self.explainer.wants_history() {
            let limit = self.config.enrichment.history_limit;
            let history = self
                .store
                .history(&resource_key, &id, limit)
                .unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "incident history unavailable; deciding without it");
                    Vec::new()
                });
            let counts = if resource_type.is_empty() {
                BTreeMap::new()
            } else {
                self.store.outcome_counts(&resource_type).unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "outcome counters unavailable; deciding without them");
                    BTreeMap::new()
                })
            };
            (history, counts)
        } else {
            (Vec::new(), BTreeMap::new())
        };
        let explanation = self.explainer.explain(
            finding,
            &ExplainContext {
                allowed_actions: &allowed,
                history: &history,
                outcome_counts: &counts,
            },
        );
        let decision = &explanation.decision;

        // Guard rails: only an allowlisted action for this resource type is ever taken, only
        // for a finding that may recover on its own, only from a usable answer.
        let mut notes: Vec<String> = explanation.note.iter().cloned().collect();
        let action = match decision.action.clone() {
            None => None,
            Some(_) if !explanation.may_act => None,
            Some(a) if !self.config.allows(&resource_type, &a) => {
                notes.push(format!(
                    "action {:?} rejected: not allowed for resource type {:?} (allowed: {})",
                    truncate_utf8(&a, 64),
                    resource_type,
                    if allowed.is_empty() {
                        "none".to_string()
                    } else {
                        allowed.join(", ")
                    }
                ));
                tracing::warn!(incident = %id, action = %a, resource_type = %resource_type, "action outside the allowlist rejected");
                None
            }
            Some(a) if !finding.recoverable => {
                notes.push(format!(
                    "action {a:?} not taken: {} findings do not recover on their own",
                    finding.kind.as_str()
                ));
                None
            }
            Some(a) => Some(a),
        };
        let rejected = decision.action.is_some() && action.is_none();
        let target = action
            .as_ref()
            .and_then(|_| self.config.terraform_target(&resource_type, &resource_id));
        let note = (!notes.is_empty()).then(|| truncate_utf8(&notes.join("; "), MAX_NOTE_BYTES));
        let decided = IncidentPatch {
            classification: Some(decision.classification.as_str().to_string()),
            confidence: Some(decision.confidence),
            severity: Some(decision.severity),
            reasoning: Some(truncate_utf8(&decision.reasoning, MAX_REASONING_BYTES)),
            action: action.clone(),
            explainer: Some(decision.explainer.clone()),
            codebuild_project: target
                .as_ref()
                .map(|_| self.config.recovery.apply_project.clone()),
            terraform_target: target.clone(),
            enrichment_note: note,
            ..IncidentPatch::default()
        };
        if !step(Analyzing, Decided, decided)? {
            return self.finish(&id);
        }
        let (Some(action), Some(target)) = (action, target) else {
            let outcome = if !explanation.may_act {
                "model answer unusable; statistical classification only; needs a person"
            } else if rejected {
                "recommended action rejected by the guard rails; needs a person"
            } else {
                "no automatic action; needs a person"
            };
            return self.end(&id, Decided, ManualReview, outcome.to_string());
        };
        if decision.confidence < self.config.confidence_threshold {
            return self.end(
                &id,
                Decided,
                ManualReview,
                format!(
                    "confidence {:.2} below threshold {:.2}",
                    decision.confidence, self.config.confidence_threshold
                ),
            );
        }

        // Cooldown: one lock item per resource key, taken only when absent or expired. The
        // lock, not a query of recent incidents, decides, so this incident's own record can
        // never make it look like a recovery is already running.
        let now = now_micros();
        let expires = now.saturating_add(
            i64::try_from(self.config.cooldown_secs)
                .unwrap_or(i64::MAX / 1_000_000)
                .saturating_mul(1_000_000),
        );
        if !self
            .store
            .try_lock(&resource_key, &self.worker_id, now, expires)?
        {
            return self.end(
                &id,
                Decided,
                SkippedCooldown,
                "another recovery of this resource is within its cooldown".to_string(),
            );
        }

        // Recover: apply, then verify; only a verified outcome is RESOLVED.
        let mut env = BTreeMap::new();
        env.insert("RESOURCE_TYPE".to_string(), resource_type.clone());
        env.insert("RESOURCE_ID".to_string(), resource_id.clone());
        env.insert("TF_TARGET".to_string(), target.clone());
        env.insert(
            "CORRELATION_ID".to_string(),
            incident.correlation_id.clone(),
        );
        env.insert("ACTION".to_string(), action.clone());
        if !step(Decided, Executing, IncidentPatch::default())? {
            return self.finish(&id);
        }
        let (apply, apply_recorded) =
            self.run_build(&id, Executing, &self.config.recovery.apply_project, &env);
        let unrecorded = |r: &BuildResult, recorded: bool| {
            if recorded { None } else { r.build_id.clone() }
        };
        if let BuildOutcome::Failed(reason) = &apply.outcome {
            return self.end_with(
                &id,
                Executing,
                Failed,
                IncidentPatch {
                    add_build_id: unrecorded(&apply, apply_recorded),
                    outcome: Some(truncate_utf8(
                        &format!("apply build failed: {reason}"),
                        MAX_NOTE_BYTES,
                    )),
                    ..IncidentPatch::default()
                },
            );
        }
        if !step(
            Executing,
            Verifying,
            IncidentPatch {
                add_build_id: unrecorded(&apply, apply_recorded),
                ..IncidentPatch::default()
            },
        )? {
            return self.finish(&id);
        }
        let (verify, verify_recorded) =
            self.run_build(&id, Verifying, &self.config.recovery.verify_project, &env);
        let (to, outcome) = match (&apply.outcome, &verify.outcome) {
            (BuildOutcome::DryRun, _) | (_, BuildOutcome::DryRun) => (
                Resolved,
                "dry_run: apply and verify recorded, not run; nothing was changed".to_string(),
            ),
            (_, BuildOutcome::Succeeded) => {
                (Resolved, "verified: no drift after apply".to_string())
            }
            (_, BuildOutcome::Failed(r)) => (Failed, format!("verify build failed: {r}")),
        };
        self.end_with(
            &id,
            Verifying,
            to,
            IncidentPatch {
                add_build_id: unrecorded(&verify, verify_recorded),
                outcome: Some(truncate_utf8(&outcome, MAX_NOTE_BYTES)),
                ..IncidentPatch::default()
            },
        )
    }

    /// Runs one build, recording its id on the incident (in `state`) as soon as it starts.
    /// Returns the result and whether the id was recorded.
    fn run_build(
        &self,
        id: &str,
        state: WorkflowState,
        project: &str,
        env: &BTreeMap<String, String>,
    ) -> (BuildResult, bool) {
        let mut recorded = false;
        let mut started = |build_id: &str| {
            let patch = IncidentPatch {
                add_build_id: Some(build_id.to_string()),
                ..IncidentPatch::default()
            };
            match self.store.annotate(id, state, &patch, now_micros()) {
                Ok(done) => recorded = done,
                Err(e) => {
                    tracing::warn!(incident = %id, build_id, error = %e, "build id not recorded at start; recorded at the next transition");
                }
            }
        };
        let result = self.executor.run(
            &RecoveryPlan {
                project: project.to_string(),
                environment: env.clone(),
            },
            &mut started,
        );
        (result, recorded)
    }

    fn end(
        &self,
        id: &str,
        from: WorkflowState,
        to: WorkflowState,
        outcome: String,
    ) -> Result<Handled, WorkflowError> {
        self.end_with(
            id,
            from,
            to,
            IncidentPatch {
                outcome: Some(truncate_utf8(&outcome, MAX_NOTE_BYTES)),
                ..IncidentPatch::default()
            },
        )
    }

    /// Moves into a final state; the worker whose transition succeeded counts the outcome and
    /// sends the one notification of the incident.
    fn end_with(
        &self,
        id: &str,
        from: WorkflowState,
        to: WorkflowState,
        patch: IncidentPatch,
    ) -> Result<Handled, WorkflowError> {
        if !self.store.transition(id, from, to, &patch, now_micros())? {
            return self.finish(id);
        }
        let Some(incident) = self.store.get(id)? else {
            return self.finish(id);
        };
        if !incident.resource_type.is_empty()
            && let Err(e) = self.store.count_outcome(&incident.resource_type, to)
        {
            tracing::warn!(incident = %id, error = %e, "outcome counter not updated");
        }
        if matches!(
            to,
            WorkflowState::ManualReview | WorkflowState::Resolved | WorkflowState::Failed
        ) {
            let n = Notification::for_incident(&incident, &self.config.notify.subject_prefix);
            let record = match self.notifier.notify(&n) {
                Ok(Some(r)) => Some(r),
                Ok(None) => None,
                Err(e) => {
                    tracing::error!(incident = %id, error = %e, "notification failed");
                    Some(truncate_utf8(&format!("failed: {e}"), MAX_NOTE_BYTES))
                }
            };
            if let Some(r) = record {
                self.store.annotate(
                    id,
                    to,
                    &IncidentPatch {
                        notification: Some(r),
                        ..IncidentPatch::default()
                    },
                    now_micros(),
                )?;
            }
        }
        self.finish(id)
    }

    fn finish(&self, id: &str) -> Result<Handled, WorkflowError> {
        Ok(Handled {
            incident: self.store.get(id)?,
            opened: true,
        })
    }
}
