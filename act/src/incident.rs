//! The incident record (DESIGN §6) and the store port it lives behind.

use crate::group::IncidentGroup;
use crate::suppress::{Feedback, Suppression};
use aiops_core::{Finding, WorkflowState};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use thiserror::Error;

/// One entry of an incident's timeline: the state entered and when (microseconds since the
/// Unix epoch, UTC, wall clock).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineEntry {
    /// State entered.
    pub state: WorkflowState,
    /// When, microseconds since the Unix epoch, UTC.
    pub at: i64,
}

/// One incident: the finding, the decision taken on it, the recovery and its outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    /// `inc-<finding id>`: the same finding delivered twice is one incident.
    pub incident_id: String,
    /// Correlation id passed to the recovery builds and notifications (a UUID).
    pub correlation_id: String,
    /// Cooldown key of the resource (`ResourceKey::key`), or `finding:<id>` without resource.
    pub resource_key: String,
    /// Resource type, e.g. `ssm_parameter` (empty for findings without a resource).
    pub resource_type: String,
    /// Resource id (empty for findings without a resource).
    pub resource_id: String,
    /// Current workflow state.
    pub state: WorkflowState,
    /// The finding that opened it.
    pub finding: Finding,
    /// Classification (`FAILURE`, `TAMPERING`, `ANOMALY`, `NORMAL`), once decided.
    pub classification: Option<String>,
    /// Confidence in [0, 1], once decided.
    pub confidence: Option<f64>,
    /// Severity 1..=10, once decided.
    pub severity: Option<u8>,
    /// Reasoning, once decided.
    pub reasoning: Option<String>,
    /// The chosen action (from the allowlist), once decided.
    pub action: Option<String>,
    /// Who decided (`statistical`, `bedrock:<model>`).
    pub explainer: Option<String>,
    /// CodeBuild project of the recovery (apply).
    pub codebuild_project: Option<String>,
    /// Terraform target address of the recovery.
    pub terraform_target: Option<String>,
    /// Build ids started (apply, then verify); `dry-run:...` ids for the dry-run executor.
    pub build_ids: Vec<String>,
    /// Outcome in words, e.g. `dry_run`, `verified`, `verify found drift`.
    pub outcome: Option<String>,
    /// Why the decision did not come from the configured model, when it did not (e.g.
    /// `bedrock answer unusable: truncated (stopReason max_tokens)`), or what was rejected.
    #[serde(default)]
    pub enrichment_note: Option<String>,
    /// Where the full evidence lives when it was too large for the item (`s3://bucket/key`);
    /// the inline `finding` is then a trimmed copy.
    #[serde(default)]
    pub evidence_ref: Option<String>,
    /// The notification sent for the final state (`sns:<message id>`), or why it failed.
    #[serde(default)]
    pub notification: Option<String>,
    /// The model's raw answer (stop reason and text, at most
    /// [`crate::bedrock::MAX_RAW_ANSWER_BYTES`] of text plus a truncation marker), when a
    /// model answered: why an answer was used or rejected.
    #[serde(default)]
    pub raw_answer: Option<String>,
    /// Every state entered, in order.
    pub timeline: Vec<TimelineEntry>,
    /// Grouping: every finding id, span, highest priority, related changes.
    #[serde(default)]
    pub group: IncidentGroup,
    /// Event time of the finding, microseconds since the Unix epoch, UTC.
    pub event_time: i64,
    /// Created, microseconds since the Unix epoch, UTC.
    pub created_at: i64,
    /// Last changed, microseconds since the Unix epoch, UTC.
    pub updated_at: i64,
}

/// Fields written together with a state transition (`None` leaves a field unchanged).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IncidentPatch {
    /// Classification.
    pub classification: Option<String>,
    /// Confidence.
    pub confidence: Option<f64>,
    /// Severity.
    pub severity: Option<u8>,
    /// Reasoning.
    pub reasoning: Option<String>,
    /// Action.
    pub action: Option<String>,
    /// Explainer.
    pub explainer: Option<String>,
    /// CodeBuild project.
    pub codebuild_project: Option<String>,
    /// Terraform target.
    pub terraform_target: Option<String>,
    /// Build id to append.
    pub add_build_id: Option<String>,
    /// Outcome.
    pub outcome: Option<String>,
    /// Enrichment note (fallback reason, rejected action).
    pub enrichment_note: Option<String>,
    /// Notification record.
    pub notification: Option<String>,
    /// The model's raw answer (bounded).
    pub raw_answer: Option<String>,
}

/// Errors of an incident store.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The backing database failed.
    #[error("incident store: {0}")]
    Backend(String),
    /// A stored item could not be read back.
    #[error("incident store: corrupt item {id}: {reason}")]
    Corrupt {
        /// Incident id.
        id: String,
        /// What is wrong.
        reason: String,
    },
    /// The store refused the write for good: retrying the same write can never succeed
    /// (DynamoDB `ValidationException`, an item over the size limit). The caller moves on
    /// (the act stage sends the finding to the dead letters with this reason).
    #[error("incident store: rejected for good: {0}")]
    Rejected(String),
    /// The workflow does not allow this transition.
    #[error("incident {id}: transition {from} -> {to} is not allowed")]
    IllegalTransition {
        /// Incident id.
        id: String,
        /// Current state.
        from: WorkflowState,
        /// Requested state.
        to: WorkflowState,
    },
}

impl StoreError {
    /// Whether retrying can never help ([`StoreError::Rejected`], a corrupt item, an illegal
    /// transition): the finding goes to the dead letters instead of blocking its shard.
    pub fn is_permanent(&self) -> bool {
        !matches!(self, StoreError::Backend(_))
    }
}

/// Where incidents and cooldown locks live (SQLite in embedded mode, DynamoDB in aws mode).
/// Every state change is conditional on the previous state, and a lock is taken only when it
/// is absent or expired, so two workers acting on the same decision start one recovery.
pub trait IncidentStore {
    /// Inserts the incident unless one with the same id exists. Returns `true` when inserted.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the store fails.
    fn create(&self, incident: &Incident) -> Result<bool, StoreError>;

    /// Moves `incident_id` from `from` to `to` and applies `patch`, only if its state is
    /// still `from`. Returns `true` when the transition happened, `false` when the state was
    /// not `from` (another worker moved it).
    ///
    /// # Errors
    /// [`StoreError::IllegalTransition`] when the workflow forbids `from -> to`;
    /// [`StoreError::Backend`] when the store fails.
    fn transition(
        &self,
        incident_id: &str,
        from: WorkflowState,
        to: WorkflowState,
        patch: &IncidentPatch,
        at: i64,
    ) -> Result<bool, StoreError>;

    /// Takes the cooldown lock of (`resource_key`, `action`) for `holder` until `expires_at`
    /// (microseconds since the epoch, UTC) if no lock of the resource for any action of
    /// `blocking` (the actions at least as destructive as `action`, `action` included; see
    /// [`crate::workflow::action_severity`]) is held at `now` by another holder. A lesser
    /// action's lock never blocks a more destructive one. The holder's own earlier write is
    /// recognised (a retried write succeeds). Returns `true` when taken.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the store fails.
    fn try_lock(
        &self,
        resource_key: &str,
        action: &str,
        blocking: &[String],
        holder: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<bool, StoreError>;

    /// Ids of the incidents the open-incident-by-group index names for any of `keys` whose
    /// last event time is at least `since` (microseconds), de-duplicated.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the store fails.
    fn open_groups(&self, keys: &[String], since: i64) -> Result<Vec<String>, StoreError>;

    /// Points each of `keys` at `incident_id` with `last_event_time`, unless the key already
    /// names another incident with a later last event time.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the store fails.
    fn index_groups(
        &self,
        keys: &[String],
        incident_id: &str,
        last_event_time: i64,
    ) -> Result<(), StoreError>;

    /// Replaces the group of `incident_id` with `group` only if the stored group's version is
    /// `expected_version` (another worker did not change it meanwhile). Returns `true` when
    /// written.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the store fails.
    fn update_group(
        &self,
        incident_id: &str,
        expected_version: u64,
        group: &IncidentGroup,
        at: i64,
    ) -> Result<bool, StoreError>;

    /// Adds or replaces (same id) a suppression.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the store fails.
    fn put_suppression(&self, suppression: &Suppression) -> Result<(), StoreError>;

    /// Every suppression (expired ones included; at most 1000), oldest first.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails or an item is corrupt.
    fn list_suppressions(&self) -> Result<Vec<Suppression>, StoreError>;

    /// Removes the suppression with this id, or of this target value. Returns `true` when one
    /// was removed.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the store fails.
    fn remove_suppression(&self, id_or_value: &str) -> Result<bool, StoreError>;

    /// Records feedback.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the store fails.
    fn add_feedback(&self, feedback: &Feedback) -> Result<(), StoreError>;

    /// Feedback given at or after `since` (microseconds, wall clock), at most 10000.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails or an item is corrupt.
    fn list_feedback(&self, since: i64) -> Result<Vec<Feedback>, StoreError>;

    /// Reads one incident.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails or the item is corrupt.
    fn get(&self, incident_id: &str) -> Result<Option<Incident>, StoreError>;

    /// Lists incidents, newest first, at most `limit`.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails or an item is corrupt.
    fn list(&self, limit: usize) -> Result<Vec<Incident>, StoreError>;

    /// Applies `patch` to `incident_id` without changing its state, only if its state is
    /// still `state` (used to record a build id as soon as the build starts, and the
    /// notification of a final state). Returns `true` when applied.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the store fails.
    fn annotate(
        &self,
        incident_id: &str,
        state: WorkflowState,
        patch: &IncidentPatch,
        at: i64,
    ) -> Result<bool, StoreError>;

    /// Incidents in one of `states` last changed before `updated_before` (microseconds since
    /// the epoch, UTC), oldest change first, at most `limit`: the candidates of the
    /// stuck-incident sweeper ([`crate::sweeper`]).
    ///
    /// # Errors
    /// [`StoreError`] when the store fails or an item is corrupt.
    fn stuck(
        &self,
        states: &[WorkflowState],
        updated_before: i64,
        limit: usize,
    ) -> Result<Vec<Incident>, StoreError>;

    /// Claims a stuck incident for resuming: sets its `updated_at` to `at` only if it is
    /// still in `state` with `updated_at == seen_updated_at` (nobody moved or claimed it since
    /// it was read). Of several sweepers, exactly one claim succeeds. Returns `true` when
    /// claimed.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the store fails.
    fn claim(
        &self,
        incident_id: &str,
        state: WorkflowState,
        seen_updated_at: i64,
        at: i64,
    ) -> Result<bool, StoreError>;

    /// Earlier incidents of the same resource, newest first, at most `limit`, never
    /// `exclude_incident_id` (the incident being decided: it must not count as its own
    /// history).
    ///
    /// # Errors
    /// [`StoreError`] when the store fails or an item is corrupt.
    fn history(
        &self,
        resource_key: &str,
        exclude_incident_id: &str,
        limit: usize,
    ) -> Result<Vec<Incident>, StoreError>;

    /// Adds one to the counter of final state `state` for `resource_type` (the outcome
    /// baseline the model sees as history). The first update of a counter creates it.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the store fails.
    fn count_outcome(&self, resource_type: &str, state: WorkflowState) -> Result<(), StoreError>;

    /// The outcome counters of `resource_type`: final state name (`RESOLVED`, ...) -> count.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the store fails.
    fn outcome_counts(&self, resource_type: &str) -> Result<BTreeMap<String, u64>, StoreError>;
}

macro_rules! forward_store {
    ($($ty:ty),*) => {$(
        impl<T: IncidentStore + ?Sized> IncidentStore for $ty {
            fn create(&self, incident: &Incident) -> Result<bool, StoreError> {
                (**self).create(incident)
            }
            fn transition(
                &self,
                incident_id: &str,
                from: WorkflowState,
                to: WorkflowState,
                patch: &IncidentPatch,
                at: i64,
            ) -> Result<bool, StoreError> {
                (**self).transition(incident_id, from, to, patch, at)
            }
            fn try_lock(
                &self,
                resource_key: &str,
                action: &str,
                blocking: &[String],
                holder: &str,
                now: i64,
                expires_at: i64,
            ) -> Result<bool, StoreError> {
                (**self).try_lock(resource_key, action, blocking, holder, now, expires_at)
            }
            fn open_groups(&self, keys: &[String], since: i64) -> Result<Vec<String>, StoreError> {
                (**self).open_groups(keys, since)
            }
            fn index_groups(
                &self,
                keys: &[String],
                incident_id: &str,
                last_event_time: i64,
            ) -> Result<(), StoreError> {
                (**self).index_groups(keys, incident_id, last_event_time)
            }
            fn update_group(
                &self,
                incident_id: &str,
                expected_version: u64,
                group: &IncidentGroup,
                at: i64,
            ) -> Result<bool, StoreError> {
                (**self).update_group(incident_id, expected_version, group, at)
            }
            fn put_suppression(&self, suppression: &Suppression) -> Result<(), StoreError> {
                (**self).put_suppression(suppression)
            }
            fn list_suppressions(&self) -> Result<Vec<Suppression>, StoreError> {
                (**self).list_suppressions()
            }
            fn remove_suppression(&self, id_or_value: &str) -> Result<bool, StoreError> {
                (**self).remove_suppression(id_or_value)
            }
            fn add_feedback(&self, feedback: &Feedback) -> Result<(), StoreError> {
                (**self).add_feedback(feedback)
            }
            fn list_feedback(&self, since: i64) -> Result<Vec<Feedback>, StoreError> {
                (**self).list_feedback(since)
            }
            fn get(&self, incident_id: &str) -> Result<Option<Incident>, StoreError> {
                (**self).get(incident_id)
            }
            fn list(&self, limit: usize) -> Result<Vec<Incident>, StoreError> {
                (**self).list(limit)
            }
            fn annotate(
                &self,
                incident_id: &str,
                state: WorkflowState,
                patch: &IncidentPatch,
                at: i64,
            ) -> Result<bool, StoreError> {
                (**self).annotate(incident_id, state, patch, at)
            }
            fn stuck(
                &self,
                states: &[WorkflowState],
                updated_before: i64,
                limit: usize,
            ) -> Result<Vec<Incident>, StoreError> {
                (**self).stuck(states, updated_before, limit)
            }
            fn claim(
                &self,
                incident_id: &str,
                state: WorkflowState,
                seen_updated_at: i64,
                at: i64,
            ) -> Result<bool, StoreError> {
                (**self).claim(incident_id, state, seen_updated_at, at)
            }
            fn history(
                &self,
                resource_key: &str,
                exclude_incident_id: &str,
                limit: usize,
            ) -> Result<Vec<Incident>, StoreError> {
                (**self).history(resource_key, exclude_incident_id, limit)
            }
            fn count_outcome(
                &self,
                resource_type: &str,
                state: WorkflowState,
            ) -> Result<(), StoreError> {
                (**self).count_outcome(resource_type, state)
            }
            fn outcome_counts(
                &self,
                resource_type: &str,
            ) -> Result<BTreeMap<String, u64>, StoreError> {
                (**self).outcome_counts(resource_type)
            }
        }
    )*};
}

forward_store!(&T, Box<T>, std::sync::Arc<T>);
