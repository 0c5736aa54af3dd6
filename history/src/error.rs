//! The errors of the history crate: the typed errors of what it calls, each optionally wrapped
//! with a message saying what was being done (`cannot open data/raw/...`).

/// A `Result` whose error is [`HistoryError`].
pub type Result<T, E = HistoryError> = std::result::Result<T, E>;

/// What went wrong reading, learning from or writing the Parquet history.
///
/// The binary prints it with `{:#}`: the message, then each cause after `: `.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// A value given on the command line or in a file is malformed (a location, a time range,
    /// labels, a baselines generation); the message names the flag, file or key.
    #[error("{0}")]
    Invalid(String),
    /// One of the errors below, with a message saying what was being done.
    #[error("{what}")]
    Context {
        /// What was being done, naming the path, key or table.
        what: String,
        /// The underlying error.
        #[source]
        source: Box<HistoryError>,
    },
    /// A local file could not be opened, read or written, or a runtime could not start.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A Parquet file or footer could not be read or written.
    #[error(transparent)]
    Parquet(#[from] parquet::errors::ParquetError),
    /// An Arrow batch could not be read or built.
    #[error(transparent)]
    Arrow(#[from] arrow_schema::ArrowError),
    /// A Parquet batch did not hold the archive's schema.
    #[error(transparent)]
    Archive(#[from] aiops_ingest::archive::ArchiveError),
    /// An S3 request failed.
    #[error(transparent)]
    S3(#[from] aiops_aws::objects::ObjectError),
    /// Learned baselines do not parse or validate.
    #[error(transparent)]
    Baselines(#[from] aiops_detect::baseline::BaselineError),
    /// A detect configuration does not validate.
    #[error(transparent)]
    DetectConfig(#[from] aiops_detect::config::ConfigError),
    /// A timestamp does not parse.
    #[error(transparent)]
    Timestamp(#[from] aiops_core::time::TimestampError),
    /// A change rule does not compile.
    #[error(transparent)]
    Rules(#[from] aiops_detect::rules::RuleError),
    /// The de-duplication settings are invalid.
    #[error(transparent)]
    Dedup(#[from] aiops_ingest::dedup::DedupConfigError),
    /// A DynamoDB request (the patterns table) failed.
    #[error(transparent)]
    DynamoDb(Box<aws_sdk_dynamodb::Error>),
    /// JSON (labels, baselines, a report) does not parse or serialise.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

impl HistoryError {
    /// The error under every [`HistoryError::Context`] layer: what actually failed.
    pub fn root(&self) -> &HistoryError {
        let mut e = self;
        while let HistoryError::Context { source, .. } = e {
            e = source;
        }
        e
    }
}

impl<E, R> From<aws_sdk_dynamodb::error::SdkError<E, R>> for HistoryError
where
    aws_sdk_dynamodb::Error: From<aws_sdk_dynamodb::error::SdkError<E, R>>,
{
    fn from(e: aws_sdk_dynamodb::error::SdkError<E, R>) -> Self {
        HistoryError::DynamoDb(Box::new(e.into()))
    }
}

aiops_core::error_context!(HistoryError);
