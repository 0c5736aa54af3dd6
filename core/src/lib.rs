//! # aiops-core
//!
//! The vocabulary every aiops stage shares (DESIGN §3–§6): the normalised [`Event`] with its
//! [`Position`], the [`Finding`] detect produces, the [`Decision`] enrichment adds, and the
//! incident [`WorkflowState`]s, and the stage [`metrics`] rendered as CloudWatch Embedded Metric
//! Format lines. No AWS SDK types live here.
//!
//! All timestamps are `i64` microseconds since the Unix epoch, UTC (see [`time`]).

pub mod error_context;
pub mod event;
pub mod finding;
pub mod metrics;
pub mod testenv;
pub mod time;

pub use event::{
    CloudTrailFields, Event, EventBody, InsightFields, LogFields, LogLevel, MetricFields,
    MetricValue, Position, Principal, ResourceRef, Source, stable_hash,
};
pub use finding::{
    Classification, Contributor, Decision, Direction, Evidence, Finding, FindingKind, Priority,
    ResourceKey, WorkflowState,
};
