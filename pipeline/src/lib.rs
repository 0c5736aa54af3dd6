//! # aiops-pipeline
//!
//! Where the stages are joined (DESIGN §1): the configuration (`pipeline.toml`: [`config`]),
//! the embedded runtime (one process, bounded channels between the stage threads:
//! [`embedded`]), the aws-mode stage runners on Kinesis ([`aws_mode`]), dead-letter writing
//! ([`deadletter`]) and the traffic simulator ([`sim`]) that both `aiops run` and
//! `aiops bench` use. Learned baselines are loaded through `aiops_history`.

pub mod aws_mode;
pub mod config;
pub mod deadletter;
pub mod embedded;
pub mod error;
pub mod sim;

pub use config::{PipelineConfig, SourceConfig};
pub use error::{PipelineError, Result};
