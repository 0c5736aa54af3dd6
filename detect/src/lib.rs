//! # aiops-detect
//!
//! The detect stage (DESIGN §4): change rules on destructive CloudTrail calls, and the
//! statistical detectors over event-time windows.

pub mod baseline;
pub mod config;
pub mod decision;
pub mod engine;
pub mod eval;
pub mod insight;
pub mod multiline;
pub mod numeric;
pub mod rate;
pub mod rules;
pub mod template;
pub mod triage;
pub mod value;

pub use config::{ConfigError, StatisticsConfig};
pub use engine::{EngineCounters, StatsEngine, WindowTrace};
