//! Why a record could not be decoded. The `Display` text of a [`DecodeError`] is the reason
//! written into each [`super::DeadLetter`].

use super::gzip::GzipError;
use aiops_core::time::TimestampError;
use thiserror::Error;

/// Why one record could not be decoded.
#[derive(Debug, Error)]
pub enum DecodeError {
    /// Zero bytes, or only whitespace.
    #[error("empty record")]
    Empty,
    /// A record above `DecodeLimits::max_record_bytes`.
    #[error("record of {size} bytes exceeds the {limit}-byte limit")]
    TooLarge {
        /// Size of the record, in bytes.
        size: usize,
        /// The limit, in bytes.
        limit: usize,
    },
    /// The gzip payload could not be inflated (bomb, truncated, corrupt).
    #[error(transparent)]
    Gzip(#[from] GzipError),
    /// Gzip inside gzip deeper than the decoder inflates (each layer may hold
    /// `max_decompressed_bytes`).
    #[error("gzip nested more than {0} levels deep")]
    GzipTooDeep(usize),
    /// Envelopes (gzip, base64, KPL) nested deeper than the decoder follows.
    #[error("envelopes nested deeper than {0} levels")]
    TooDeep(usize),
    /// The bytes are not valid UTF-8 (JSON must be).
    #[error("invalid UTF-8 at byte {offset}: {source}")]
    InvalidUtf8 {
        /// Byte offset of the first invalid sequence.
        offset: usize,
        /// The JSON parser's error for the same input.
        source: serde_json::Error,
    },
    /// Not JSON at all (syntax error), or cut short.
    #[error("not JSON: {0}")]
    NotJson(serde_json::Error),
    /// Valid JSON, but not a shape any decoder accepts.
    #[error("JSON of the wrong shape: {0}")]
    WrongShape(String),
    /// A JSON value of the right overall shape with a field of the wrong type.
    #[error("invalid {what}: {source}")]
    Invalid {
        /// What was being read, e.g. `CloudTrail record`.
        what: &'static str,
        /// The JSON parser's error (with line and column).
        source: serde_json::Error,
    },
    /// A required field is missing or null.
    #[error("{what} has no {field}")]
    MissingField {
        /// What was being read.
        what: &'static str,
        /// The missing field's JSON name.
        field: &'static str,
    },
    /// A required field of the wrong type (a record without a usable event name, source or
    /// time cannot be placed or matched, so it is not salvaged).
    #[error("{what} has no usable {field} (found {found})")]
    Unusable {
        /// What was being read.
        what: &'static str,
        /// The field's JSON name.
        field: &'static str,
        /// The JSON type found instead, e.g. `a number`.
        found: &'static str,
    },
    /// Bytes that are not text (a NUL byte among the first 8 KiB, as `git` and `grep` decide):
    /// one dead letter for the whole input, never one per line.
    #[error("binary data (NUL byte at offset {0}), not JSON text")]
    Binary(usize),
    /// A CloudTrail `eventTime` that is not an ISO-8601 timestamp.
    #[error("CloudTrail record has an unparseable eventTime: {0}")]
    BadEventTime(#[from] TimestampError),
    /// A millisecond timestamp whose microsecond value overflows `i64`.
    #[error("{what} timestamp {millis} ms is out of range")]
    TimestampOutOfRange {
        /// What carried it.
        what: &'static str,
        /// The value, in milliseconds since the Unix epoch.
        millis: i64,
    },
    /// Base64 text that does not decode.
    #[error("invalid base64 in {what}: {source}")]
    Base64 {
        /// Where it was found.
        what: &'static str,
        /// The decoder's error.
        source: base64::DecodeError,
    },
    /// A CloudWatch Logs payload whose `messageType` is neither DATA_MESSAGE nor CONTROL_MESSAGE.
    #[error("unknown CloudWatch Logs messageType {0:?}")]
    UnknownMessageType(String),
    /// An EventBridge event that does not carry a CloudTrail record.
    #[error("unsupported EventBridge detail-type {0:?} (only CloudTrail events are decoded)")]
    UnsupportedDetailType(String),
    /// A Lambda event record from an event source other than Kinesis.
    #[error("unsupported Lambda event record from eventSource {0:?}")]
    UnsupportedLambdaSource(String),
    /// A KPL aggregate with a valid digest and protobuf but no user records.
    #[error("KPL aggregated record holds no user records")]
    EmptyAggregate,
}

impl DecodeError {
    /// Classifies a JSON parse error of `input` into not-JSON / invalid UTF-8 / wrong shape.
    pub(crate) fn from_json(what: &'static str, input: &[u8], e: serde_json::Error) -> Self {
        use serde_json::error::Category;
        match e.classify() {
            Category::Data => DecodeError::Invalid { what, source: e },
            Category::Syntax | Category::Eof | Category::Io => match std::str::from_utf8(input) {
                Err(u) => DecodeError::InvalidUtf8 {
                    offset: u.valid_up_to(),
                    source: e,
                },
                Ok(_) => DecodeError::NotJson(e),
            },
        }
    }
}
