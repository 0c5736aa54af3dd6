//! # aiops-act
//!
//! The act stage (DESIGN §5–§6): incidents and their workflow in a store with conditional
//! transitions, cooldown locks, the confidence gate, the action allowlist, explainers and
//! recovery executors. Embedded mode uses [`sqlite::SqliteStore`],
//! [`explain::StatisticalExplainer`] and [`workflow::DryRunExecutor`].

pub mod explain;
pub mod incident;
pub mod sqlite;
pub mod workflow;

pub use explain::{Explainer, RuleProfile, StatisticalExplainer};
pub use incident::{Incident, IncidentPatch, IncidentStore, StoreError, TimelineEntry};
pub use sqlite::SqliteStore;
pub use workflow::{
    ActConfig, BuildOutcome, BuildResult, DryRunExecutor, RecoveryConfig, RecoveryExecutor,
    RecoveryPlan, Workflow, WorkflowError,
};
