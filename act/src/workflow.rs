//! The incident workflow (DESIGN §6): open an incident for a finding, decide on it, gate it on
//! the allowlist, confidence and cooldown, recover, verify, notify, and record every step.
//!
//! DETECTED -> ANALYZING -> DECIDED -> (SKIPPED_COOLDOWN | MANUAL_REVIEW | EXECUTING ->
//! VERIFYING -> RESOLVED | FAILED). Every transition is conditional on the previous state, so
//! of several workers handling the same incident only one moves it, and only the worker whose
//! transition into MANUAL_REVIEW, RESOLVED or FAILED succeeded sends that state's notification:
//! one per incident.

use crate::changes::{ChangeIndex, RankTarget, RelatedChange, rank_changes};
use crate::clock::{Clock, SystemClock};
pub use crate::config::{ActConfig, ActConfigError, RecoveryConfig};
use crate::explain::{ExplainContext, Explainer};
use crate::group::{IncidentGroup, Priority, group_keys};
use crate::incident::{Incident, IncidentPatch, IncidentStore, StoreError, TimelineEntry};
use crate::notify::{NoopNotifier, Notification, Notifier};
use crate::suppress::{
    FEEDBACK_DAYS, Feedback, held_back_by_feedback, is_suppressed, series_min_scores,
};
use crate::text::truncate_utf8;
use aiops_core::{Finding, FindingKind, WorkflowState};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
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

    /// Waits for a build started earlier (its id recorded on an incident the sweeper resumes)
    /// to end, and reports how it ended, without starting another. The default cannot read
    /// builds and reports the build as failed.
    fn wait(&self, build_id: &str) -> BuildResult {
        BuildResult {
            build_id: Some(build_id.to_string()),
            outcome: BuildOutcome::Failed(format!(
                "build {build_id} was started before a restart and this executor cannot read its status"
            )),
        }
    }
    /// The id of a build of `plan.project` already started for the same incident (its
    /// `CORRELATION_ID` override), other than `exclude`, when the executor can tell: a worker
    /// that died between StartBuild and recording the id left it running. The default finds
    /// none.
    fn find_started(&self, plan: &RecoveryPlan, exclude: &[String]) -> Option<String> {
        let _ = (plan, exclude);
        None
    }
}

impl<T: RecoveryExecutor + ?Sized> RecoveryExecutor for Box<T> {
    fn run(&self, plan: &RecoveryPlan, started: &mut dyn FnMut(&str)) -> BuildResult {
        (**self).run(plan, started)
    }
    fn find_started(&self, plan: &RecoveryPlan, exclude: &[String]) -> Option<String> {
        (**self).find_started(plan, exclude)
    }
    fn wait(&self, build_id: &str) -> BuildResult {
        (**self).wait(build_id)
    }
}

impl<T: RecoveryExecutor + ?Sized> RecoveryExecutor for &T {
    fn run(&self, plan: &RecoveryPlan, started: &mut dyn FnMut(&str)) -> BuildResult {
        (**self).run(plan, started)
    }
    fn find_started(&self, plan: &RecoveryPlan, exclude: &[String]) -> Option<String> {
        (**self).find_started(plan, exclude)
    }
    fn wait(&self, build_id: &str) -> BuildResult {
        (**self).wait(build_id)
    }
}

impl<T: RecoveryExecutor + ?Sized> RecoveryExecutor for std::sync::Arc<T> {
    fn run(&self, plan: &RecoveryPlan, started: &mut dyn FnMut(&str)) -> BuildResult {
        (**self).run(plan, started)
    }
    fn find_started(&self, plan: &RecoveryPlan, exclude: &[String]) -> Option<String> {
        (**self).find_started(plan, exclude)
    }
    fn wait(&self, build_id: &str) -> BuildResult {
        (**self).wait(build_id)
    }
}

/// The environment overrides of an incident's recovery builds: `RESOURCE_TYPE`,
/// `RESOURCE_ID`, `TF_TARGET`, `CORRELATION_ID` (the incident's), `ACTION`; each build adds
/// `PHASE` (`apply` or `verify`) when it starts.
pub fn recovery_env(incident: &Incident, action: &str, target: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("RESOURCE_TYPE".to_string(), incident.resource_type.clone()),
        ("RESOURCE_ID".to_string(), incident.resource_id.clone()),
        ("TF_TARGET".to_string(), target.to_string()),
        (
            "CORRELATION_ID".to_string(),
            incident.correlation_id.clone(),
        ),
        ("ACTION".to_string(), action.to_string()),
    ])
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

    fn wait(&self, build_id: &str) -> BuildResult {
        BuildResult {
            build_id: Some(build_id.to_string()),
            outcome: if build_id.starts_with("dry-run:") {
                BuildOutcome::DryRun
            } else {
                BuildOutcome::Failed(format!("build {build_id} is not a dry-run build"))
            },
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

impl WorkflowError {
    /// Whether handling the same finding again can never succeed (see
    /// [`StoreError::is_permanent`]): the act stage sends it to the dead letters and moves on.
    pub fn is_permanent(&self) -> bool {
        match self {
            WorkflowError::Store(e) => e.is_permanent(),
        }
    }
}

/// The workflow, over a store, an explainer, an executor and a notifier.
pub struct Workflow<S, E, X, N = NoopNotifier> {
    store: S,
    explainer: E,
    executor: X,
    notifier: N,
    config: ActConfig,
    worker_id: String,
    changes: Option<Arc<dyn ChangeIndex + Send + Sync>>,
    clock: Arc<dyn Clock>,
    filters: std::sync::Mutex<Option<Filters>>,
    incident_priorities: Vec<Priority>,
}

/// Suppressions and feedback thresholds as last read, and when (wall clock, microseconds).
struct Filters {
    read_at: i64,
    suppressions: Vec<crate::suppress::Suppression>,
    min_scores: BTreeMap<String, f64>,
}

/// The result of handling one finding.
#[derive(Debug, Clone, PartialEq)]
pub struct Handled {
    /// The incident as it ended up: the one opened, or the one the finding joined (`None`
    /// when the finding was already handled or is suppressed).
    pub incident: Option<Incident>,
    /// Whether this call opened the incident (false for a duplicate delivery or a join).
    pub opened: bool,
    /// Whether the finding joined an open incident.
    pub joined: bool,
    /// Why the finding opens no incident, when it is suppressed (a suppression, or "not an
    /// incident" feedback on its series): the pipeline records it marked `suppressed`.
    pub suppressed: Option<String>,
    /// Whether the finding's priority is below the ones that open an incident
    /// ([`Workflow::with_incident_priorities`]) and no open incident took it: it is recorded
    /// (findings table) and opens nothing.
    pub below_priority: bool,
}

/// How destructive an action is (DESIGN §6 cooldown): `start` 1, `restore` 2, `recreate` 3,
/// any other action 2. A lock taken for an action blocks that action and the less
/// destructive ones, never a more destructive one.
pub fn action_severity(action: &str) -> u8 {
    match action {
        "start" => 1,
        "recreate" => 3,
        _ => 2,
    }
}

/// The actions whose held lock blocks `action`: those of `known` (and `action` itself) at
/// least as destructive as it, sorted.
pub fn blocking_actions(action: &str, known: &[String]) -> Vec<String> {
    let sev = action_severity(action);
    let mut v: Vec<String> = known
        .iter()
        .map(String::as_str)
        .chain([action, "start", "restore", "recreate"])
        .filter(|a| action_severity(a) >= sev)
        .map(str::to_string)
        .collect();
    v.sort();
    v.dedup();
    v
}

/// What [`close_not_an_incident`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct ClosedIncident {
    /// The incident after the close.
    pub incident: Incident,
    /// `true` when it was closed already: nothing was changed and no feedback recorded again.
    pub already_closed: bool,
    /// The series keys feedback was recorded for (sorted; empty when already closed, or when
    /// no finding of the incident has a series, e.g. a change-rule incident: change rules are
    /// not held back by feedback, a suppression of the resource key silences them).
    pub feedback_series: Vec<String>,
}

/// Closes `incident_id` as "not an incident" at `now` (wall clock, microseconds): its group is
/// marked closed (nothing joins it any more) and one [`Feedback`] per series key of its
/// findings is recorded with the highest score of that series (the threshold rule in
/// [`crate::suppress`]); findings without a series (change rules) record none. An incident
/// closed already is returned unchanged (`already_closed`), so feedback is never counted
/// twice. Returns `None` when the incident does not exist.
///
/// # Errors
/// [`StoreError`] when the store fails.
pub fn close_not_an_incident<S: IncidentStore + ?Sized>(
    store: &S,
    incident_id: &str,
    note: Option<String>,
    now: i64,
) -> Result<Option<ClosedIncident>, StoreError> {
    for _ in 0..5 {
        let Some(i) = store.get(incident_id)? else {
            return Ok(None);
        };
        if i.group.closed {
            return Ok(Some(ClosedIncident {
                incident: i,
                already_closed: true,
                feedback_series: Vec::new(),
            }));
        }
        let mut g = i.group.clone();
        if g.finding_ids.is_empty() {
            g.finding_ids.push(i.finding.finding_id.clone());
            g.findings.push(crate::group::FindingBrief::of(&i.finding));
        }
        g.closed = true;
        g.version = g.version.saturating_add(1);
        if !store.update_group(incident_id, i.group.version, &g, now)? {
            continue;
        }
        let mut per_series: BTreeMap<String, f64> = BTreeMap::new();
        for b in &g.findings {
            let Some(k) = b.series_key.clone() else {
                continue;
            };
            let e = per_series.entry(k).or_insert(b.score);
            if b.score > *e {
                *e = b.score;
            }
        }
        let feedback_series: Vec<String> = per_series.keys().cloned().collect();
        for (series_key, score) in per_series {
            store.add_feedback(&Feedback {
                incident_id: incident_id.to_string(),
                verdict: "not_an_incident".into(),
                series_key,
                score,
                note: note.as_deref().map(|n| truncate_utf8(n, 1024)),
                at: now,
            })?;
        }
        return Ok(store.get(incident_id)?.map(|incident| ClosedIncident {
            incident,
            already_closed: false,
            feedback_series,
        }));
    }
    Err(StoreError::Backend(format!(
        "incident {incident_id}: group changed five times while closing; try again"
    )))
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
    /// A workflow for one worker (`worker_id` names the worker in logs; the incident, not
    /// the worker, holds its cooldown lock), without notifications (see
    /// [`Workflow::with_notifier`]).
    pub fn new(store: S, explainer: E, executor: X, config: ActConfig, worker_id: String) -> Self {
        Workflow {
            store,
            explainer,
            executor,
            notifier: NoopNotifier,
            config,
            worker_id,
            changes: None,
            clock: Arc::new(SystemClock),
            filters: std::sync::Mutex::new(None),
            incident_priorities: vec![Priority::High],
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
            changes: self.changes,
            clock: self.clock,
            filters: std::sync::Mutex::new(None),
            incident_priorities: self.incident_priorities,
        }
    }

    /// The same workflow reading related changes from `changes` (the recent-changes index
    /// the pipeline feeds with [`crate::changes::change_from_event`]).
    pub fn with_changes(mut self, changes: Arc<dyn ChangeIndex + Send + Sync>) -> Self {
        self.changes = Some(changes);
        self
    }

    /// The same workflow opening incidents only for findings of these priorities (detect's
    /// `[detect.statistics] incident_priorities`, default `["HIGH"]`); change-rule findings
    /// always open one. A finding of another priority still joins an open incident it
    /// belongs to (as evidence), and is otherwise only recorded ([`Handled::below_priority`]).
    pub fn with_incident_priorities(mut self, priorities: Vec<Priority>) -> Self {
        self.incident_priorities = priorities;
        self
    }

    /// The same workflow with another wall clock (tests: suppression expiry).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The workflow's wall clock, microseconds since the epoch, UTC.
    pub(crate) fn now(&self) -> i64 {
        self.clock.now_micros()
    }

    /// The worker this workflow runs on (logs).
    pub(crate) fn worker_id(&self) -> &str {
        &self.worker_id
    }

    /// Why `finding` opens no incident at `now`, when it does not: an active suppression, or
    /// "not an incident" feedback on its series that its score does not exceed.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    pub fn suppression_reason(
        &self,
        finding: &Finding,
        now: i64,
    ) -> Result<Option<String>, StoreError> {
        let refresh = i64::try_from(self.config.grouping.suppression_refresh_secs)
            .unwrap_or(i64::MAX / 1_000_000)
            .saturating_mul(1_000_000);
        let mut cache = self
            .filters
            .lock()
            .map_err(|_| StoreError::Backend("suppression cache mutex poisoned".into()))?;
        let fresh = cache
            .as_ref()
            .is_some_and(|c| refresh > 0 && now >= c.read_at && now - c.read_at < refresh);
        if !fresh {
            let since = now.saturating_sub(FEEDBACK_DAYS * 86_400 * 1_000_000);
            *cache = Some(Filters {
                read_at: now,
                suppressions: self.store.list_suppressions()?,
                min_scores: series_min_scores(&self.store.list_feedback(since)?, now),
            });
        }
        let Some(filters) = cache.as_ref() else {
            return Ok(None);
        };
        if let Some(s) = is_suppressed(finding, now, &filters.suppressions) {
            return Ok(Some(format!(
                "suppressed: {} {}{}",
                s.kind.as_str(),
                s.value,
                s.reason
                    .as_deref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            )));
        }
        if finding.kind == FindingKind::ChangeRule || finding.evidence.series_key.is_none() {
            return Ok(None);
        }
        Ok(held_back_by_feedback(finding, &filters.min_scores).map(|min| {
            format!(
                "suppressed: feedback says not an incident for this series (score {:.4} is not above {:.4})",
                finding.score, min
            )
        }))
    }

    /// The related changes of a group: the lookback's changes ranked against its resources,
    /// log groups and principals; its own events excluded.
    fn related(&self, g: &IncidentGroup, own_events: &[String]) -> Vec<RelatedChange> {
        let Some(index) = &self.changes else {
            return Vec::new();
        };
        let cfg = &self.config.grouping;
        let lookback = i64::try_from(cfg.lookback_secs)
            .unwrap_or(0)
            .saturating_mul(1_000_000);
        let mut target = RankTarget {
            start: g.first_event_time,
            ..RankTarget::default()
        };
        for k in &g.keys {
            if let Some(r) = k.strip_prefix("resource:") {
                // <account>/<region>/<type>/<id>: the id is what changes name.
                if let Some(id) = r.splitn(4, '/').nth(3) {
                    target.resources.push(id.to_string());
                }
            } else if let Some(l) = k.strip_prefix("log_group:") {
                target.log_groups.push(l.to_string());
            } else if let Some(p) = k.strip_prefix("principal:") {
                target.principals.push(p.to_string());
            }
        }
        match index.recent(
            None,
            g.first_event_time.saturating_sub(lookback),
            g.last_event_time,
            1000,
        ) {
            Ok(mut changes) => {
                changes.retain(|c| !own_events.contains(&c.event_id));
                rank_changes(&changes, &target, cfg)
            }
            Err(e) => {
                tracing::warn!(error = %e, "recent changes unavailable; incident without related changes");
                Vec::new()
            }
        }
    }

    /// Joins `finding` to an open incident sharing a group key within the gap, when there is
    /// one. Notifies when the incident's priority rises.
    fn try_join(
        &self,
        finding: &Finding,
        keys: &[String],
    ) -> Result<Option<Handled>, WorkflowError> {
        let cfg = &self.config.grouping;
        let gap = i64::try_from(cfg.gap_secs)
            .unwrap_or(0)
            .saturating_mul(1_000_000);
        let ids = self
            .store
            .open_groups(keys, finding.event_time.saturating_sub(gap))?;
        for id in ids {
            for _ in 0..5 {
                let Some(inc) = self.store.get(&id)? else {
                    break;
                };
                if inc.group.finding_ids.contains(&finding.finding_id) {
                    return Ok(Some(Handled {
                        incident: None,
                        opened: false,
                        joined: false,
                        below_priority: false,
                        suppressed: None,
                    }));
                }
                if !inc.group.accepts(finding, keys, cfg) {
                    break;
                }
                let (mut g, rose) = inc.group.with(finding, keys, cfg);
                let own: Vec<String> = inc.finding.evidence.event_ids.clone();
                g.related_changes = self.related(&g, &own);
                if !self
                    .store
                    .update_group(&id, inc.group.version, &g, self.now())?
                {
                    continue;
                }
                if let Err(e) = self.store.index_groups(&g.keys, &id, g.last_event_time) {
                    tracing::warn!(incident = %id, error = %e, "group index not updated");
                }
                let updated = self.store.get(&id)?;
                // The incident's own notification (at its final state) carries the priority
                // it has by then; a rise after it was sent gets one of its own.
                if rose
                    && inc.group.priority.is_some()
                    && let Some(u) = &updated
                    && u.state.is_terminal()
                {
                    self.notify_priority(u, g.priority.unwrap_or(Priority::Low));
                }
                return Ok(Some(Handled {
                    incident: updated,
                    opened: false,
                    joined: true,
                    below_priority: false,
                    suppressed: None,
                }));
            }
        }
        Ok(None)
    }

    fn notify_priority(&self, incident: &Incident, p: Priority) {
        let mut n = Notification::for_incident(incident, &self.config.notify.subject_prefix);
        n.subject = crate::notify::ascii_subject(
            &format!(
                "{} priority raised to {}: {}",
                self.config.notify.subject_prefix,
                p.as_str(),
                incident.finding.summary
            ),
            crate::notify::MAX_SUBJECT_CHARS,
        );
        if let Err(e) = self.notifier.notify(&n) {
            tracing::error!(incident = %incident.incident_id, error = %e, "priority notification failed");
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
        let now = self.now();
        if let Some(reason) = self.suppression_reason(finding, now)? {
            return Ok(Handled {
                incident: None,
                opened: false,
                joined: false,
                below_priority: false,
                suppressed: Some(reason),
            });
        }
        let grouping = self.config.grouping.enabled;
        let keys = group_keys(finding, &self.config.grouping);
        if grouping
            && finding.kind != FindingKind::ChangeRule
            && let Some(h) = self.try_join(finding, &keys)?
        {
            return Ok(h);
        }
        if !finding.opens_incident(&self.incident_priorities) {
            return Ok(Handled {
                incident: None,
                opened: false,
                joined: false,
                below_priority: true,
                suppressed: None,
            });
        }
        let mut group = IncidentGroup::open(finding, &self.config.grouping);
        if grouping {
            group.related_changes = self.related(&group, &finding.evidence.event_ids);
        }
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
            raw_answer: None,
            notification: None,
            timeline: vec![TimelineEntry {
                state: WorkflowState::Detected,
                at: now,
            }],
            event_time: finding.event_time,
            created_at: now,
            updated_at: now,
            group,
        };
        if !self.store.create(&incident)? {
            return Ok(Handled {
                incident: None,
                opened: false,
                joined: false,
                below_priority: false,
                suppressed: None,
            });
        }
        let id = incident.incident_id.clone();
        if grouping
            && let Err(e) = self
                .store
                .index_groups(&incident.group.keys, &id, finding.event_time)
        {
            tracing::warn!(incident = %id, error = %e, "group index not updated; later findings open their own incidents");
        }
        let step = |from, to, patch: IncidentPatch| -> Result<bool, WorkflowError> {
            Ok(self.store.transition(&id, from, to, &patch, self.now())?)
        };
        use WorkflowState::*;
        if !step(Detected, Analyzing, IncidentPatch::default())? {
            return self.finish(&id);
        }
        let mut analyzing = incident;
        analyzing.state = Analyzing;
        self.decide(&analyzing)
    }

    /// From ANALYZING: decides on the incident's finding (explainer, guard rails), moves it
    /// to DECIDED, then to MANUAL_REVIEW or on through the cooldown to the recovery.
    pub(crate) fn decide(&self, incident: &Incident) -> Result<Handled, WorkflowError> {
        use WorkflowState::*;
        let id = incident.incident_id.clone();
        let finding = &incident.finding;
        let resource_type = incident.resource_type.clone();
        let resource_id = incident.resource_id.clone();
        let resource_key = incident.resource_key.clone();
        let step = |from, to, patch: IncidentPatch| -> Result<bool, WorkflowError> {
            Ok(self.store.transition(&id, from, to, &patch, self.now())?)
        };

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
                let reason = not_recovered_reason(finding);
                notes.push(match &reason {
                    Some(r) => format!("action {a:?} not taken: {r}"),
                    None => format!(
                        "action {a:?} not taken: {} findings do not recover on their own",
                        finding.kind.as_str()
                    ),
                });
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
            raw_answer: explanation.raw_answer.clone(),
            ..IncidentPatch::default()
        };
        if !step(Analyzing, Decided, decided)? {
            return self.finish(&id);
        }
        let (Some(action), Some(target)) = (action, target) else {
            let outcome = if !explanation.may_act {
                "model answer unusable; statistical classification only; needs a person"
            } else if let (true, Some(r)) = (rejected, not_recovered_reason(finding)) {
                return self.end(
                    &id,
                    Decided,
                    ManualReview,
                    format!("detected, not recovered: {r}; needs a person"),
                );
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
        self.lock_and_recover(incident, &action, &target)
    }

    /// From DECIDED: takes the cooldown lock (else SKIPPED_COOLDOWN), moves to EXECUTING and
    /// recovers.
    pub(crate) fn lock_and_recover(
        &self,
        incident: &Incident,
        action: &str,
        target: &str,
    ) -> Result<Handled, WorkflowError> {
        use WorkflowState::*;
        let id = incident.incident_id.as_str();
        // Cooldown: one lock per (resource key, action), taken only when no lock of an
        // action at least as destructive is held by another incident. The lock, not a query
        // of recent incidents, decides, so this incident's own record can never make it look
        // like a recovery is already running; a lesser action's cooldown never swallows a
        // more destructive change. The incident holds the lock, not the worker: its own
        // retried write, or a sweeper resuming it on another worker, is recognised.
        let now = self.now();
        let blocking =
            blocking_actions(action, self.config.allowed_actions(&incident.resource_type));
        let expires = now.saturating_add(
            i64::try_from(self.config.cooldown_secs)
                .unwrap_or(i64::MAX / 1_000_000)
                .saturating_mul(1_000_000),
        );
        if !self
            .store
            .try_lock(&incident.resource_key, action, &blocking, id, now, expires)?
        {
            return self.end(
                id,
                Decided,
                SkippedCooldown,
                format!(
                    "another recovery of this resource ({}) is within its cooldown",
                    blocking.join(" or ")
                ),
            );
        }
        if !self.store.transition(
            id,
            Decided,
            Executing,
            &IncidentPatch::default(),
            self.now(),
        )? {
            return self.finish(id);
        }
        self.recover(incident, action, target, Executing, None)
    }

    /// The recovery from EXECUTING (apply, then verify) or VERIFYING (verify): apply, then
    /// verify; only a verified outcome is RESOLVED. With `resume_build` (a build of that
    /// state started before, its id recorded on the incident) that build is waited for
    /// instead of starting another.
    pub(crate) fn recover(
        &self,
        incident: &Incident,
        action: &str,
        target: &str,
        from: WorkflowState,
        resume_build: Option<String>,
    ) -> Result<Handled, WorkflowError> {
        use WorkflowState::*;
        let id = incident.incident_id.as_str();
        let env = recovery_env(incident, action, target);
        let unrecorded = |r: &BuildResult, recorded: bool| {
            if recorded { None } else { r.build_id.clone() }
        };
        let mut resume = resume_build;
        let mut apply_outcome = None;
        if from == Executing {
            let (apply, apply_recorded) = match resume.take() {
                Some(b) => (self.executor.wait(&b), true),
                None => self.run_build(id, Executing, &self.config.recovery.apply_project, &env),
            };
            if let BuildOutcome::Failed(reason) = &apply.outcome {
                return self.end_with(
                    id,
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
            if !self.store.transition(
                id,
                Executing,
                Verifying,
                &IncidentPatch {
                    add_build_id: unrecorded(&apply, apply_recorded),
                    ..IncidentPatch::default()
                },
                self.now(),
            )? {
                return self.finish(id);
            }
            apply_outcome = Some(apply.outcome);
        }
        let (verify, verify_recorded) = match resume.take() {
            Some(b) => (self.executor.wait(&b), true),
            None => self.run_build(id, Verifying, &self.config.recovery.verify_project, &env),
        };
        let (to, outcome) = match (&apply_outcome, &verify.outcome) {
            (Some(BuildOutcome::DryRun), _) | (_, BuildOutcome::DryRun) => (
                Resolved,
                "dry_run: apply and verify recorded, not run; nothing was changed".to_string(),
            ),
            (_, BuildOutcome::Succeeded) => {
                (Resolved, "verified: no drift after apply".to_string())
            }
            (_, BuildOutcome::Failed(r)) => (Failed, format!("verify build failed: {r}")),
        };
        self.end_with(
            id,
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
            match self.store.annotate(id, state, &patch, self.now()) {
                Ok(done) => recorded = done,
                Err(e) => {
                    tracing::warn!(incident = %id, build_id, error = %e, "build id not recorded at start; recorded at the next transition");
                }
            }
        };
        // PHASE tells the two builds apart (one project may run both; the StartBuild
        // idempotency token differs with it).
        let mut environment = env.clone();
        environment.insert(
            "PHASE".to_string(),
            if state == WorkflowState::Verifying {
                "verify"
            } else {
                "apply"
            }
            .to_string(),
        );
        let result = self.executor.run(
            &RecoveryPlan {
                project: project.to_string(),
                environment,
            },
            &mut started,
        );
        (result, recorded)
    }

    pub(crate) fn end(
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
    pub(crate) fn end_with(
        &self,
        id: &str,
        from: WorkflowState,
        to: WorkflowState,
        patch: IncidentPatch,
    ) -> Result<Handled, WorkflowError> {
        if !self.store.transition(id, from, to, &patch, self.now())? {
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
                    self.now(),
                )?;
            }
        }
        self.finish(id)
    }

    pub(crate) fn finish(&self, id: &str) -> Result<Handled, WorkflowError> {
        Ok(Handled {
            incident: self.store.get(id)?,
            opened: true,
            joined: false,
            below_priority: false,
            suppressed: None,
        })
    }
}

/// The reason a change-rule finding is not recovered automatically, from its summary (detect
/// writes it after `not recovered automatically: `), when it says one.
fn not_recovered_reason(f: &Finding) -> Option<String> {
    const MARK: &str = "not recovered automatically: ";
    if f.kind != FindingKind::ChangeRule || f.recoverable {
        return None;
    }
    f.summary
        .find(MARK)
        .and_then(|p| f.summary.get(p + MARK.len()..))
        .map(|r| truncate_utf8(r, 512))
}
