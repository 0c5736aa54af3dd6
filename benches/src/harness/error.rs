//! The errors of the benchmark harness: bad arguments, a bench input file that is not what it
//! claims, a stage that cannot start or does not finish in time, and the typed errors of what
//! it calls, each optionally wrapped with a message saying what was being done.

/// A `Result` whose error is [`BenchError`].
pub type Result<T, E = BenchError> = std::result::Result<T, E>;

/// What stopped a benchmark run.
///
/// The binary prints it with `{:#}`: the message, then each cause after `: `.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// An argument is out of range, the input file is corrupt, a stage timed out or the run
    /// was interrupted; the message says which.
    #[error("{0}")]
    Invalid(String),
    /// One of the errors below, with a message saying what was being done.
    #[error("{what}")]
    Context {
        /// What was being done, naming the file, stream or stage.
        what: String,
        /// The underlying error.
        #[source]
        source: Box<BenchError>,
    },
    /// A file could not be read or written, or a process or runtime could not start.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The pipeline could not be configured, started or finished.
    #[error(transparent)]
    Pipeline(#[from] aiops_pipeline::PipelineError),
    /// A change rule does not compile.
    #[error(transparent)]
    Rules(#[from] aiops_detect::rules::RuleError),
    /// A time argument does not parse.
    #[error(transparent)]
    History(#[from] aiops_history::HistoryError),
    /// The header of a bench input file is not valid JSON.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// A Kinesis request failed.
    #[error(transparent)]
    Kinesis(#[from] aiops_aws::kinesis::KinesisError),
    /// A lease could not be read.
    #[error(transparent)]
    Lease(#[from] aiops_aws::lease::LeaseError),
    /// A run configuration could not be serialised.
    #[error(transparent)]
    Toml(#[from] toml::ser::Error),
    /// A number does not fit where it must go (a record longer than 4 GiB).
    #[error(transparent)]
    TryFromInt(#[from] std::num::TryFromIntError),
}

aiops_core::error_context!(BenchError);
