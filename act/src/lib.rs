//! # aiops-act
//!
//! The act stage (DESIGN §5–§6): incidents and their workflow in a store with conditional
//! transitions, cooldown locks, the confidence gate, the action allowlist, explainers,
//! recovery executors and notifications.
//!
//! | port | embedded mode | aws mode |
//! |---|---|---|
//! | [`IncidentStore`] | [`SqliteStore`] | [`dynamo::DynamoStore`] |
//! | [`Explainer`] | [`StatisticalExplainer`] | [`bedrock::BedrockExplainer`] (either mode) |
//! | [`RecoveryExecutor`] | [`DryRunExecutor`] | [`codebuild::CodeBuildExecutor`] |
//! | [`notify::Notifier`] | [`notify::NoopNotifier`] | [`notify::SnsNotifier`] |
//! | [`ChangeIndex`] | [`SqliteStore`], [`MemoryChangeIndex`] | [`dynamo::DynamoChangeIndex`] |
//!
//! Grouping ([`group`]), "what changed" ([`changes`]), suppressions and feedback
//! ([`suppress`]) and the text view ([`render`]) are pure cores the workflow and the CLI call.
//!
//! What the pipeline and the CLI call:
//! - for every event where events are seen: `if let Some(c) = change_from_event(&event) {
//!   index.record(&c)? }`, `index` from [`open_change_index`];
//! - for every finding: [`Workflow::handle`]; a [`Handled`] with `suppressed: Some(reason)`
//!   is recorded in the findings table marked suppressed and opens no incident; `joined`
//!   says it joined an open incident;
//! - `aiops incidents show ID`: [`render_incident`] (`--json`: the serialised [`Incident`]);
//!   `incidents list`: `incident.group.priority`, `incident.group.finding_count`;
//! - `aiops incidents resolve ID --not-an-incident`: [`close_not_an_incident`];
//! - `aiops suppress add|list|remove`: [`Suppression::new`] (kind from
//!   [`SuppressionKind::guess`]) and [`IncidentStore::put_suppression`],
//!   [`IncidentStore::list_suppressions`], [`IncidentStore::remove_suppression`];
//! - the workflow, to raise a series' threshold after feedback:
//!   [`suppress::series_min_scores`] over [`IncidentStore::list_feedback`].
//!
//! [`setup::build`] assembles the workflow from `[act]` in one call. The AWS adapters block on
//! the AWS SDK (see [`aws`]): run the workflow on its own thread, never inside an async task.

pub mod answer;
pub mod aws;
pub mod bedrock;
pub mod changes;
pub mod clock;
pub mod codebuild;
pub mod config;
pub mod dynamo;
pub mod explain;
pub mod group;
pub mod incident;
pub mod model_limits;
pub mod notify;
pub mod render;
pub mod setup;
pub mod sqlite;
pub mod suppress;
pub mod sweeper;
pub mod text;
pub mod workflow;

pub use changes::{Change, ChangeIndex, MemoryChangeIndex, RelatedChange, change_from_event};
pub use config::{ActConfig, ActConfigError, AwsSection, RecoveryConfig, StoreConfig};
pub use explain::{ExplainContext, Explainer, Explanation, RuleProfile, StatisticalExplainer};
pub use group::{GroupingConfig, IncidentGroup, Priority, finding_priority};
pub use incident::{Incident, IncidentPatch, IncidentStore, StoreError, TimelineEntry};
pub use render::render_incident;
pub use setup::{ActWorkflow, SetupError, build, open_change_index, open_store};
pub use sqlite::SqliteStore;
pub use suppress::{Feedback, Suppression, SuppressionKind, is_suppressed};
pub use workflow::{
    BuildOutcome, BuildResult, ClosedIncident, DryRunExecutor, Handled, RecoveryExecutor,
    RecoveryPlan, Workflow, WorkflowError, action_severity, close_not_an_incident,
};
