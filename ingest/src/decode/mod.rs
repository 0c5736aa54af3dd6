//! Decoders for every input of DESIGN §2.
//!
//! Entry points:
//! - [`decode_kinesis_record`]: the data of one Kinesis record (KPL-aggregated or plain; gzip
//!   CloudWatch Logs subscription payload, EventBridge envelope, CloudTrail record or log
//!   file, metric stream JSON lines).
//! - [`decode_file`]: the bytes of one file (gzip detected by magic bytes; CloudTrail log file
//!   `{"Records":[...]}`, digest files skipped, one record per file, NDJSON, metric stream
//!   lines, Lambda Kinesis / CloudWatch Logs events, CloudWatch Logs subscription payloads,
//!   bare arrays of records, `aws cloudtrail lookup-events` output, Firehose output).
//!
//! Neither panics on any input: what cannot be decoded becomes a [`DeadLetter`] with the
//! reason and the original bytes, and decoding goes on with the next record.
//!
//! Shapes are recognised by content, never by file name (except the `CloudTrail-Digest` rule):
//!
//! | recognised by | input |
//! |---|---|
//! | bytes `1f 8b` | gzip, one or several members (inflated through a capped reader, then recognised again) |
//! | bytes `F3 89 9A C2` + valid MD5 + protobuf (Kinesis records only) | KPL aggregate ([`kpl`]) |
//! | a NUL byte among the first 8 KiB | binary data: one dead letter for the whole input |
//! | several JSON values one after the other, with or without whitespace between them (`}{`) | NDJSON, Firehose output, saved pages: each value recognised alone |
//! | `[` | bare array (`jq -s`, security tools): each element recognised alone |
//! | `Records` whose element has `kinesis` | Lambda Kinesis event |
//! | `Records` otherwise | CloudTrail log file |
//! | `Events` | `aws cloudtrail lookup-events` output: each `CloudTrailEvent` string decoded as a record |
//! | `awslogs` | Lambda CloudWatch Logs event |
//! | `messageType` | CloudWatch Logs subscription payload |
//! | `detail-type` / `detail` | EventBridge event ("... via CloudTrail") |
//! | `digestStartTime` / `digestEndTime` / `digestS3Object` | CloudTrail digest file (skipped, counted) |
//! | `metric_stream_name`, or `metric_name` + `namespace` | CloudWatch metric stream line |
//! | `kinesis` | one record of a Lambda Kinesis event |
//! | `insightDetails` | CloudTrail Insights record (an event with `CloudTrailFields::insight`, never a change) |
//! | `eventName` / `eventSource` / `eventTime` / `eventVersion` / `userIdentity` | single CloudTrail record |
//!
//! Keeping what decodes (each repair listed in the event's `decode_warnings`):
//! - invalid UTF-8 is replaced with U+FFFD; only the events whose JSON text held it are marked;
//! - a CloudTrail record (or the `detail` of an EventBridge event) with a field of the wrong
//!   type keeps every field that decodes: a numeric `eventTime` is read as epoch seconds,
//!   milliseconds or microseconds (whichever is between 2000 and 2100), a string
//!   `userIdentity` becomes the principal's ARN or name, numbers in string fields are kept as
//!   text, an `errorCode` of any type is kept as its JSON text (a failed call never looks
//!   successful), anything else unreadable is dropped. Only a record without a usable
//!   `eventName`, `eventSource` or `eventTime` is a dead letter.
//!
//! Dead letters: an element of `Records`, of a bare array or of `Events`, a value of a
//! multi-value text (an NDJSON line, a Firehose record) and a CloudWatch Logs log event each
//! fail alone, with their own JSON text as data (a value that does not parse runs to the next
//! line starting with `{` or `[`, or the next `}{`); a document that cannot be read at all is
//! one dead letter with the bytes given to the decoder for it (before inflation). For a
//! Lambda Kinesis event, the data is the record's base64-decoded Kinesis data (what the
//! Kinesis record held), or the base64 text when it does not decode.

mod cloudtrail;
mod dispatch;
mod doc;
mod error;
pub mod gzip;
pub mod kpl;
mod protobuf;
mod salvage;

pub use cloudtrail::parse_cloudtrail_record;
pub use error::DecodeError;

use aiops_core::{Event, Position};
use serde::{Deserialize, Serialize};

/// Bounds applied while decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DecodeLimits {
    /// Largest decompressed size of one gzip payload, in bytes (a larger one is a dead letter:
    /// gzip bombs never reach memory). Default 64 MiB.
    pub max_decompressed_bytes: usize,
    /// Largest size of one record (a Kinesis record's data, one element of a `Records` or
    /// `Events` array, one CloudWatch Logs log event's JSON text, one CloudTrail record,
    /// EventBridge event or metric stream line wherever it appears: a whole file, an NDJSON
    /// line, a value of a Firehose object, an element of a bare array), in bytes. Documents
    /// that hold records (log files, CloudWatch Logs payloads, arrays) are bounded by
    /// `max_decompressed_bytes` instead. Default 1 MiB (the Kinesis limit).
    pub max_record_bytes: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_decompressed_bytes: 64 * 1024 * 1024,
            max_record_bytes: 1024 * 1024,
        }
    }
}

/// A [`DecodeLimits`] value out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeLimitsError {
    /// `max_decompressed_bytes` is 0.
    #[error("decode.max_decompressed_bytes must be at least 1")]
    MaxDecompressedBytes,
    /// `max_record_bytes` is 0.
    #[error("decode.max_record_bytes must be at least 1")]
    MaxRecordBytes,
}

impl DecodeLimits {
    /// Checks that both limits are positive.
    ///
    /// # Errors
    /// [`DecodeLimitsError`] naming the first limit out of range.
    pub fn validate(&self) -> Result<(), DecodeLimitsError> {
        if self.max_decompressed_bytes == 0 {
            return Err(DecodeLimitsError::MaxDecompressedBytes);
        }
        if self.max_record_bytes == 0 {
            return Err(DecodeLimitsError::MaxRecordBytes);
        }
        Ok(())
    }
}

/// A record that could not be decoded: why, the original bytes, and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Human-readable reason (the `Display` of a [`DecodeError`], at most 1024 bytes), e.g.
    /// `"gzip payload exceeds 67108864 bytes decompressed (gzip bomb?)"`.
    pub reason: String,
    /// The original bytes of the record: for a whole document, the bytes given to the decoder
    /// (before any decompression); for an element of `Records`, `Events` or a bare array, a
    /// value of a multi-value text (an NDJSON line, a Firehose record) or a log event, its
    /// JSON text (after U+FFFD replacement when the text held invalid UTF-8, or converted
    /// from UTF-16); for a record of a Lambda Kinesis event, the Kinesis record's data
    /// (base64-decoded, as Kinesis held it) or the base64 text when it does not decode.
    pub data: Vec<u8>,
    /// Where the record came from.
    pub position: Position,
}

/// What decoding produced, appended to by the decoders.
#[derive(Debug, Default)]
pub struct DecodeOutput {
    /// Decoded events, in input order.
    pub events: Vec<Event>,
    /// Records that could not be decoded.
    pub dead_letters: Vec<DeadLetter>,
    /// CloudWatch Logs CONTROL_MESSAGE payloads acknowledged and dropped.
    pub control_messages: u64,
    /// CloudTrail digest files skipped.
    pub digest_files: u64,
}

/// Decodes the data of one Kinesis record read at `position`.
///
/// A KPL aggregate (see [`kpl`]) is split into its user records, each positioned at the
/// record's sequence number with `sub_sequence_number = Some(index)`; each user record, or
/// the plain record, is then decoded as a document: gzip (detected by magic bytes) is
/// inflated within `limits.max_decompressed_bytes`, and the JSON is recognised by shape (see
/// the module docs). Events are pushed to `out.events` with `ingest_time` (microseconds since
/// the Unix epoch, UTC); what cannot be decoded goes to `out.dead_letters` at `position`.
/// Never panics.
pub fn decode_kinesis_record(
    data: &[u8],
    position: &Position,
    ingest_time: i64,
    limits: &DecodeLimits,
    out: &mut DecodeOutput,
) {
    let mut decoder = dispatch::Decoder::new(ingest_time, *limits, out);
    decoder.kinesis_record(data, position, dispatch::Nest::default());
}

/// Decodes the bytes of one file named `name` (an S3 key or a path).
///
/// A name containing `CloudTrail-Digest` is a CloudTrail digest file: skipped and counted in
/// `out.digest_files`. Anything else is decoded as a document (gzip by magic bytes, then
/// JSON recognised by shape, see the module docs). Records are positioned at
/// `Position { stream: "file:<name>", shard_id: "file", sequence_number: <ordinal>,
/// sub_sequence_number: None }`, the ordinal counting every event and dead letter of the
/// file from 0, except records of a Lambda Kinesis event, which carry the Kinesis position
/// the event names. `ingest_time` is in microseconds since the Unix epoch, UTC. Never panics.
pub fn decode_file(
    name: &str,
    data: &[u8],
    ingest_time: i64,
    limits: &DecodeLimits,
    out: &mut DecodeOutput,
) {
    if name.contains("CloudTrail-Digest") {
        out.digest_files += 1;
        return;
    }
    let mut origin = dispatch::Origin::File {
        stream: format!("file:{name}"),
        next: 0,
    };
    let mut decoder = dispatch::Decoder::new(ingest_time, *limits, out);
    decoder.document(data, data, &mut origin, dispatch::Nest::default());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_validation() {
        assert_eq!(DecodeLimits::default().validate(), Ok(()));
        let zero = DecodeLimits {
            max_record_bytes: 0,
            ..DecodeLimits::default()
        };
        assert_eq!(zero.validate(), Err(DecodeLimitsError::MaxRecordBytes));
        let zero = DecodeLimits {
            max_decompressed_bytes: 0,
            ..DecodeLimits::default()
        };
        assert_eq!(
            zero.validate().unwrap_err().to_string(),
            "decode.max_decompressed_bytes must be at least 1"
        );
    }
}
