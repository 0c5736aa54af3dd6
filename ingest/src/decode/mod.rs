//! Decoders for every input of DESIGN §2.
//!
//! Entry points:
//! - [`decode_kinesis_record`]: the data of one Kinesis record (KPL-aggregated or plain; gzip
//!   CloudWatch Logs subscription payload, EventBridge envelope, CloudTrail record or log
//!   file, metric stream JSON lines).
//! - [`decode_file`]: the bytes of one file (gzip detected by magic bytes; CloudTrail log file
//!   `{"Records":[...]}`, digest files skipped, one record per file, NDJSON, metric stream
//!   lines, Lambda Kinesis / CloudWatch Logs events, CloudWatch Logs subscription payloads).
//!
//! Neither panics on any input: what cannot be decoded becomes a [`DeadLetter`] with the
//! reason and the original bytes, and decoding goes on with the next record.

use aiops_core::{Event, Position};
use serde::{Deserialize, Serialize};

/// Bounds applied while decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DecodeLimits {
    /// Largest decompressed size of one gzip payload, in bytes (a larger one is a dead letter:
    /// gzip bombs never reach memory). Default 64 MiB.
    pub max_decompressed_bytes: usize,
    /// Largest size of one record (a Kinesis record's data, one NDJSON line, one element of a
    /// `Records` array, one log event message), in bytes. Default 1 MiB (the Kinesis limit).
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

/// A record that could not be decoded: why, the original bytes, and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Human-readable reason, e.g. `"gzip payload exceeds 67108864 bytes decompressed"`.
    pub reason: String,
    /// The original bytes of the record (before any decompression or base64 decoding done by
    /// the decoder).
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

/// Decodes the data of one Kinesis record (placeholder until the decoders land).
pub fn decode_kinesis_record(
    data: &[u8],
    position: &Position,
    _ingest_time: i64,
    _limits: &DecodeLimits,
    out: &mut DecodeOutput,
) {
    out.dead_letters.push(DeadLetter {
        reason: "decoder not implemented".into(),
        data: data.to_vec(),
        position: position.clone(),
    });
}

/// Decodes the bytes of one file named `name` (placeholder until the decoders land).
pub fn decode_file(
    name: &str,
    data: &[u8],
    _ingest_time: i64,
    _limits: &DecodeLimits,
    out: &mut DecodeOutput,
) {
    out.dead_letters.push(DeadLetter {
        reason: "decoder not implemented".into(),
        data: data.to_vec(),
        position: Position {
            stream: format!("file:{name}"),
            shard_id: "file".into(),
            sequence_number: "0".into(),
            sub_sequence_number: None,
        },
    });
}
