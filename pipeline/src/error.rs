//! The errors of the pipeline crate: configuration that does not load or validate, stages that
//! cannot start, and the typed errors of the stage crates, each optionally wrapped with a
//! message saying what was being done.

/// A `Result` whose error is [`PipelineError`].
pub type Result<T, E = PipelineError> = std::result::Result<T, E>;

/// What stopped a pipeline from starting or finishing.
///
/// The binary prints it with `{:#}`: the message, then each cause after `: `.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The configuration is invalid, or a stage was asked for something it cannot do; the
    /// message names the key (`ingest.max_record_bytes: must be at least 1`).
    #[error("{0}")]
    Invalid(String),
    /// One of the errors below, with a message saying what was being done.
    #[error("{what}")]
    Context {
        /// What was being done, naming the file, table or stage.
        what: String,
        /// The underlying error.
        #[source]
        source: Box<PipelineError>,
    },
    /// A stage thread panicked; the name says which.
    #[error("{0} thread panicked")]
    StagePanicked(&'static str),
    /// A file could not be read or written, or a thread or runtime could not start.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The history (baselines, tables) could not be read or written.
    #[error(transparent)]
    History(#[from] aiops_history::HistoryError),
    /// The manifest of ingested inputs could not be read or written.
    #[error(transparent)]
    Manifest(#[from] aiops_ingest::manifest::ManifestError),
    /// The Parquet archive could not be opened or written.
    #[error(transparent)]
    Archive(#[from] aiops_ingest::archive::ArchiveError),
    /// The archive section of the configuration does not validate.
    #[error(transparent)]
    ArchiveConfig(#[from] aiops_ingest::archive::ArchiveConfigError),
    /// The act section of the configuration does not validate.
    #[error(transparent)]
    ActConfig(#[from] aiops_act::config::ActConfigError),
    /// A change rule does not compile.
    #[error(transparent)]
    Rules(#[from] aiops_detect::rules::RuleError),
    /// The act workflow failed.
    #[error(transparent)]
    Workflow(#[from] aiops_act::workflow::WorkflowError),
    /// The act stage's AWS clients could not be built.
    #[error(transparent)]
    ActAws(#[from] aiops_act::aws::AwsSetupError),
    /// Learned baselines do not fit the configuration.
    #[error(transparent)]
    Baselines(#[from] aiops_detect::baseline::BaselineError),
    /// The de-duplication settings are invalid.
    #[error(transparent)]
    Dedup(#[from] aiops_ingest::dedup::DedupConfigError),
    /// The incident store failed.
    #[error(transparent)]
    Store(#[from] aiops_act::incident::StoreError),
    /// The act stage could not be built from its configuration.
    #[error(transparent)]
    ActSetup(#[from] aiops_act::setup::SetupError),
    /// The AWS resources (streams, tables, buckets) could not be created.
    #[error(transparent)]
    AwsSetup(#[from] aiops_aws::setup::SetupError),
    /// A Kinesis stage worker failed.
    #[error(transparent)]
    Worker(#[from] aiops_aws::consumer::WorkerError),
    /// The findings or incidents table could not be flushed to S3.
    #[error(transparent)]
    TableFlush(#[from] crate::aws_mode::tables::TableFlushError),
    /// A thread pool could not be built.
    #[error(transparent)]
    ThreadPool(#[from] rayon::ThreadPoolBuildError),
    /// JSON could not be written.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

aiops_core::error_context!(PipelineError);
