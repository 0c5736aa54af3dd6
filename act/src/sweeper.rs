//! The stuck-incident sweeper: finishes what a worker started and never finished.
//!
//! A worker that dies (or whose store write failed) between two transitions leaves its
//! incident in DETECTED, ANALYZING, DECIDED, EXECUTING or VERIFYING, and the finding is not
//! delivered again (its shard checkpointed, or the redelivery finds the incident already
//! created). The sweeper lists incidents in those states whose last change is older than
//! `[act.sweeper] stuck_after_secs` ([`IncidentStore::stuck`]), claims each one with a
//! conditional write on its state and `updated_at` ([`IncidentStore::claim`]: of several
//! sweepers exactly one resumes it), and resumes it from its state ([`plan`], a pure
//! decision):
//!
//! - DETECTED: moves it to ANALYZING and decides; ANALYZING: decides;
//! - DECIDED: the recorded decision goes through the confidence gate and the cooldown lock
//!   (the incident holds the lock, so its own earlier lock is recognised) to the recovery;
//! - EXECUTING / VERIFYING with the build id of that phase recorded: that build is verified
//!   (`BatchGetBuilds`, [`RecoveryExecutor::wait`]), never started a second time; without
//!   one, a build of the incident started but never recorded (the worker died between
//!   StartBuild and the write; [`RecoveryExecutor::find_started`]: its `CORRELATION_ID`) is
//!   verified and recorded, and only when there is none is the build started.
//!
//! An incident whose build of the current phase is recorded counts as stuck only after
//! `stuck_after_secs` plus `[act.recovery] build_timeout_secs`: until then the worker that
//! started the build may still be polling it.

use crate::config::{ActConfigError, RecoveryConfig};
use crate::explain::Explainer;
use crate::incident::{Incident, IncidentStore};
use crate::notify::Notifier;
use crate::workflow::{RecoveryExecutor, Workflow, WorkflowError};
use aiops_core::WorkflowState;
use serde::{Deserialize, Serialize};

/// `[act.sweeper]`: the stuck-incident sweeper.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SweeperConfig {
    /// Whether the act stage runs the sweeper. Default true.
    pub enabled: bool,
    /// An incident unchanged for this long in a non-final state is stuck, seconds (wall
    /// clock). Default 900 (15 minutes); 60..=86400.
    pub stuck_after_secs: u64,
    /// How often the act stage sweeps, seconds. Default 60; 1..=3600.
    pub interval_secs: u64,
    /// Most incidents resumed per sweep. Default 20; 1..=1000.
    pub batch: usize,
}

impl Default for SweeperConfig {
    fn default() -> Self {
        SweeperConfig {
            enabled: true,
            stuck_after_secs: 900,
            interval_secs: 60,
            batch: 20,
        }
    }
}

impl SweeperConfig {
    /// Checks the ranges documented on the fields.
    ///
    /// # Errors
    /// [`ActConfigError`] naming the first field out of range (`sweeper.<field>`).
    pub fn validate(&self) -> Result<(), ActConfigError> {
        let bad = |field: &str, reason: String| {
            Err(ActConfigError {
                field: format!("sweeper.{field}"),
                reason,
            })
        };
        if !(60..=86_400).contains(&self.stuck_after_secs) {
            return bad(
                "stuck_after_secs",
                format!("{} is outside 60..=86400", self.stuck_after_secs),
            );
        }
        if !(1..=3600).contains(&self.interval_secs) {
            return bad(
                "interval_secs",
                format!("{} is outside 1..=3600", self.interval_secs),
            );
        }
        if !(1..=1000).contains(&self.batch) {
            return bad("batch", format!("{} is outside 1..=1000", self.batch));
        }
        Ok(())
    }
}

/// The states an incident can be stuck in (every non-final state).
pub const STUCK_STATES: [WorkflowState; 5] = [
    WorkflowState::Detected,
    WorkflowState::Analyzing,
    WorkflowState::Decided,
    WorkflowState::Executing,
    WorkflowState::Verifying,
];

/// How a stuck incident is resumed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resume {
    /// DETECTED: move to ANALYZING, then decide.
    Analyze,
    /// ANALYZING: decide.
    Decide,
    /// DECIDED: confidence gate, cooldown lock, recovery.
    Gate,
    /// EXECUTING with the apply build recorded: wait for that build (never start another).
    AwaitApply(String),
    /// EXECUTING without an apply build: start it.
    StartApply,
    /// VERIFYING with the verify build recorded: wait for that build.
    AwaitVerify(String),
    /// VERIFYING without a verify build: start it.
    StartVerify,
}

/// The id of the build of `project` among `ids` (CodeBuild ids are `<project>:<uuid>`,
/// dry-run ids `dry-run:<project>:<uuid>`), skipping the first `skip` matches; the last
/// match when several remain.
fn build_of(ids: &[String], project: &str, skip: usize) -> Option<String> {
    let real = format!("{project}:");
    let dry = format!("dry-run:{project}:");
    ids.iter()
        .filter(|i| i.starts_with(&real) || i.starts_with(&dry))
        .skip(skip)
        .last()
        .cloned()
}

/// Whether `incident` is stuck at `now` (microseconds since the epoch, UTC) and, if so, how
/// it is resumed (see the module documentation). Pure.
pub fn plan(
    incident: &Incident,
    now: i64,
    cfg: &SweeperConfig,
    recovery: &RecoveryConfig,
) -> Option<Resume> {
    use WorkflowState::*;
    let secs = |s: u64| i64::try_from(s).unwrap_or(i64::MAX / 1_000_000) * 1_000_000;
    let ids = &incident.build_ids;
    let resume = match incident.state {
        Detected => Resume::Analyze,
        Analyzing => Resume::Decide,
        Decided => Resume::Gate,
        Executing => match build_of(ids, &recovery.apply_project, 0) {
            Some(b) => Resume::AwaitApply(b),
            None => Resume::StartApply,
        },
        Verifying => {
            // With one project for both builds, the first of its ids is the apply build.
            let skip = usize::from(recovery.apply_project == recovery.verify_project);
            match build_of(ids, &recovery.verify_project, skip) {
                Some(b) => Resume::AwaitVerify(b),
                None => Resume::StartVerify,
            }
        }
        _ => return None,
    };
    let mut after = secs(cfg.stuck_after_secs);
    if matches!(resume, Resume::AwaitApply(_) | Resume::AwaitVerify(_)) {
        after = after.saturating_add(secs(recovery.build_timeout_secs));
    }
    (now.saturating_sub(incident.updated_at) >= after).then_some(resume)
}

/// What one sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Incidents listed as stuck candidates.
    pub found: usize,
    /// Incidents resumed (each to a final state, or as far as the workflow got).
    pub resumed: usize,
    /// Incidents another sweeper claimed first, or that moved since they were listed.
    pub claimed_elsewhere: usize,
    /// Incidents whose resumption failed (logged; they are found again by a later sweep).
    pub errors: usize,
}

impl<S: IncidentStore, E: Explainer, X: RecoveryExecutor, N: Notifier> Workflow<S, E, X, N> {
    /// One sweep at `now` (microseconds since the epoch, UTC, wall clock): resumes up to
    /// `[act.sweeper] batch` stuck incidents (see the module documentation). Blocks while
    /// builds run.
    ///
    /// # Errors
    /// [`WorkflowError`] when the stuck incidents cannot be listed; a failure to resume one
    /// incident is counted in [`SweepReport::errors`] and does not stop the sweep.
    pub fn sweep(&self, now: i64) -> Result<SweepReport, WorkflowError> {
        let cfg = &self.config().sweeper;
        let recovery = &self.config().recovery;
        let oldest = now.saturating_sub(
            i64::try_from(cfg.stuck_after_secs).unwrap_or(i64::MAX / 1_000_000) * 1_000_000,
        );
        let candidates = self.store().stuck(&STUCK_STATES, oldest, cfg.batch)?;
        let mut report = SweepReport {
            found: candidates.len(),
            ..SweepReport::default()
        };
        for incident in candidates {
            let Some(resume) = plan(&incident, now, cfg, recovery) else {
                continue;
            };
            let id = incident.incident_id.clone();
            match self
                .store()
                .claim(&id, incident.state, incident.updated_at, now)
            {
                Ok(true) => {}
                Ok(false) => {
                    report.claimed_elsewhere += 1;
                    continue;
                }
                Err(e) => {
                    tracing::warn!(incident = %id, error = %e, "stuck incident not claimed");
                    report.errors += 1;
                    continue;
                }
            }
            tracing::warn!(incident = %id, state = %incident.state, resume = ?resume, worker = %self.worker_id(), "resuming a stuck incident");
            match self.resume(&incident, resume) {
                Ok(h) => {
                    report.resumed += 1;
                    if let Some(i) = h.incident {
                        tracing::info!(incident = %id, state = %i.state, "stuck incident resumed");
                    }
                }
                Err(e) => {
                    tracing::error!(incident = %id, error = %e, "stuck incident not resumed; a later sweep retries");
                    report.errors += 1;
                }
            }
        }
        Ok(report)
    }

    /// A build of `project` started for `incident` whose id was never recorded (the worker
    /// died between StartBuild and the write), found through the executor and recorded now;
    /// `None` when there is none.
    fn started_unrecorded(
        &self,
        incident: &Incident,
        project: &str,
        action: &str,
        target: &str,
    ) -> Option<String> {
        let plan = crate::RecoveryPlan {
            project: project.to_string(),
            environment: crate::workflow::recovery_env(incident, action, target),
        };
        let found = self.executor().find_started(&plan, &incident.build_ids)?;
        tracing::warn!(incident = %incident.incident_id, build_id = %found, "build started before a restart but never recorded; verifying it instead of starting another");
        let patch = crate::IncidentPatch {
            add_build_id: Some(found.clone()),
            ..crate::IncidentPatch::default()
        };
        if let Err(e) =
            self.store()
                .annotate(&incident.incident_id, incident.state, &patch, self.now())
        {
            tracing::warn!(incident = %incident.incident_id, error = %e, "found build id not recorded");
        }
        Some(found)
    }

    /// Resumes `incident` as `resume` says.
    ///
    /// # Errors
    /// [`WorkflowError`] when the store fails.
    fn resume(
        &self,
        incident: &Incident,
        resume: Resume,
    ) -> Result<crate::workflow::Handled, WorkflowError> {
        use WorkflowState::*;
        let id = incident.incident_id.as_str();
        let now = self.now();
        let decided = || match (&incident.action, &incident.terraform_target) {
            (Some(a), Some(t)) => Some((a.clone(), t.clone())),
            _ => None,
        };
        match resume {
            Resume::Analyze => {
                if !self.store().transition(
                    id,
                    Detected,
                    Analyzing,
                    &crate::IncidentPatch::default(),
                    now,
                )? {
                    return self.finish(id);
                }
                let mut analyzing = incident.clone();
                analyzing.state = Analyzing;
                self.decide(&analyzing)
            }
            Resume::Decide => self.decide(incident),
            Resume::Gate => {
                let threshold = self.config().confidence_threshold;
                match decided() {
                    Some((a, t)) if incident.confidence.unwrap_or(0.0) >= threshold => {
                        self.lock_and_recover(incident, &a, &t)
                    }
                    _ => self.end(
                        id,
                        Decided,
                        ManualReview,
                        "resumed after a stall: no automatic action decided; needs a person".into(),
                    ),
                }
            }
            Resume::AwaitApply(_)
            | Resume::StartApply
            | Resume::AwaitVerify(_)
            | Resume::StartVerify => {
                let from = incident.state;
                let Some((a, t)) = decided() else {
                    return self.end(
                        id,
                        from,
                        Failed,
                        "resumed after a stall: no action or target recorded; needs a person"
                            .into(),
                    );
                };
                let build = match resume {
                    Resume::AwaitApply(b) | Resume::AwaitVerify(b) => Some(b),
                    Resume::StartApply => self.started_unrecorded(
                        incident,
                        &self.config().recovery.apply_project,
                        &a,
                        &t,
                    ),
                    _ => self.started_unrecorded(
                        incident,
                        &self.config().recovery.verify_project,
                        &a,
                        &t,
                    ),
                };
                self.recover(incident, &a, &t, from, build)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aiops_core::{Finding, FindingKind};

    const MIN: i64 = 60_000_000;

    fn incident(state: WorkflowState, updated_at: i64, build_ids: &[&str]) -> Incident {
        let finding = Finding {
            suppressed: None,
            finding_id: "f".into(),
            kind: FindingKind::ChangeRule,
            detector: "d".into(),
            event_time: 0,
            detected_at: 0,
            resource: None,
            score: 1.0,
            summary: "s".into(),
            default_action: None,
            recoverable: true,
            evidence: aiops_core::Evidence::default(),
            direction: None,
            priority: aiops_core::Priority::High,
        };
        Incident {
            incident_id: "inc-f".into(),
            correlation_id: "c".into(),
            resource_key: "r".into(),
            resource_type: "t".into(),
            resource_id: "i".into(),
            state,
            finding,
            classification: None,
            confidence: None,
            severity: None,
            reasoning: None,
            action: None,
            explainer: None,
            codebuild_project: None,
            terraform_target: None,
            build_ids: build_ids.iter().map(|s| s.to_string()).collect(),
            outcome: None,
            enrichment_note: None,
            evidence_ref: None,
            notification: None,
            raw_answer: None,
            timeline: Vec::new(),
            group: Default::default(),
            event_time: 0,
            created_at: 0,
            updated_at,
        }
    }

    #[test]
    fn plans_by_state_age_and_recorded_build() {
        use WorkflowState::*;
        let cfg = SweeperConfig::default();
        let rec = RecoveryConfig {
            apply_project: "apply".into(),
            verify_project: "verify".into(),
            build_timeout_secs: 3600,
            ..RecoveryConfig::default()
        };
        let now = 1_000 * MIN;
        let at = |m: i64| now - m * MIN;
        // Younger than 15 minutes: not stuck.
        assert_eq!(
            plan(&incident(Detected, at(14), &[]), now, &cfg, &rec),
            None
        );
        assert_eq!(
            plan(&incident(Detected, at(15), &[]), now, &cfg, &rec),
            Some(Resume::Analyze)
        );
        assert_eq!(
            plan(&incident(Analyzing, at(20), &[]), now, &cfg, &rec),
            Some(Resume::Decide)
        );
        assert_eq!(
            plan(&incident(Decided, at(20), &[]), now, &cfg, &rec),
            Some(Resume::Gate)
        );
        assert_eq!(
            plan(&incident(Executing, at(20), &[]), now, &cfg, &rec),
            Some(Resume::StartApply)
        );
        // A recorded apply build may still run for build_timeout_secs: 15 + 60 minutes.
        let running = incident(Executing, at(20), &["apply:b1"]);
        assert_eq!(plan(&running, now, &cfg, &rec), None);
        let old = incident(Executing, at(75), &["apply:b1"]);
        assert_eq!(
            plan(&old, now, &cfg, &rec),
            Some(Resume::AwaitApply("apply:b1".into()))
        );
        assert_eq!(
            plan(
                &incident(Verifying, at(80), &["apply:b1", "verify:b2"]),
                now,
                &cfg,
                &rec
            ),
            Some(Resume::AwaitVerify("verify:b2".into()))
        );
        assert_eq!(
            plan(&incident(Verifying, at(20), &["apply:b1"]), now, &cfg, &rec),
            Some(Resume::StartVerify)
        );
        assert_eq!(
            plan(
                &incident(Verifying, at(80), &["dry-run:verify:x"]),
                now,
                &cfg,
                &rec
            ),
            Some(Resume::AwaitVerify("dry-run:verify:x".into()))
        );
        // Final states are never stuck.
        for s in [Resolved, Failed, ManualReview, SkippedCooldown] {
            assert_eq!(plan(&incident(s, 0, &[]), now, &cfg, &rec), None);
        }
        // One project for both builds: its first id is the apply build.
        let same = RecoveryConfig {
            verify_project: "apply".into(),
            ..rec.clone()
        };
        assert_eq!(
            plan(
                &incident(Verifying, at(20), &["apply:b1"]),
                now,
                &cfg,
                &same
            ),
            Some(Resume::StartVerify)
        );
    }

    #[test]
    fn config_ranges_are_checked() {
        assert_eq!(SweeperConfig::default().validate(), Ok(()));
        let e = SweeperConfig {
            stuck_after_secs: 10,
            ..SweeperConfig::default()
        }
        .validate()
        .unwrap_err();
        assert_eq!(e.field, "sweeper.stuck_after_secs");
        assert_eq!(
            e.to_string(),
            "act.sweeper.stuck_after_secs: 10 is outside 60..=86400"
        );
        let e: Result<SweeperConfig, _> = toml::from_str("stuck_after_sec = 60");
        assert!(e.is_err());
    }
}
