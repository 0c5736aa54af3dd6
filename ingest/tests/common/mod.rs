//! Helpers shared by the integration tests.
#![allow(dead_code)]

use aiops_core::Position;
use aiops_ingest::decode::{DecodeLimits, DecodeOutput, decode_file, decode_kinesis_record};
use std::path::{Path, PathBuf};

/// The ingest time every test decodes with (2024-03-05T12:00:00Z, microseconds).
pub const INGEST: i64 = 1_709_640_000_000_000;

/// `../shared/data` relative to the workspace, when present.
pub fn shared_data() -> Option<PathBuf> {
    let p = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/data"));
    if p.is_dir() {
        Some(p)
    } else {
        println!("skipping: shared data folder {} not present", p.display());
        None
    }
}

/// A file under `tests/fixtures/`.
pub fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

/// Reads a file.
pub fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Kinesis data folders to run the kinesis assertions on: the fixture copy always, the shared
/// folder too when present.
pub fn kinesis_dirs() -> Vec<PathBuf> {
    let mut v = vec![fixture("kinesis")];
    if let Some(s) = shared_data() {
        v.push(s.join("kinesis"));
    }
    v
}

/// Decodes a file with default limits.
pub fn file(name: &str, data: &[u8]) -> DecodeOutput {
    file_with(name, data, &DecodeLimits::default())
}

/// Decodes a file with the given limits.
pub fn file_with(name: &str, data: &[u8], limits: &DecodeLimits) -> DecodeOutput {
    let mut out = DecodeOutput::default();
    decode_file(name, data, INGEST, limits, &mut out);
    out
}

/// Decodes a Kinesis record with default limits.
pub fn kinesis(data: &[u8], pos: &Position) -> DecodeOutput {
    kinesis_with(data, pos, &DecodeLimits::default())
}

/// Decodes a Kinesis record with the given limits.
pub fn kinesis_with(data: &[u8], pos: &Position, limits: &DecodeLimits) -> DecodeOutput {
    let mut out = DecodeOutput::default();
    decode_kinesis_record(data, pos, INGEST, limits, &mut out);
    out
}

/// A Kinesis position.
pub fn kpos(seq: &str) -> Position {
    Position {
        stream: "raw".into(),
        shard_id: "shardId-000000000001".into(),
        sequence_number: seq.into(),
        sub_sequence_number: None,
    }
}

/// The position `decode_file` gives the record with this ordinal.
pub fn fpos(name: &str, ordinal: u64) -> Position {
    Position {
        stream: format!("file:{name}"),
        shard_id: "file".into(),
        sequence_number: ordinal.to_string(),
        sub_sequence_number: None,
    }
}

/// Gzips bytes.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// Base64 (standard, padded).
pub fn b64(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// Base64-decodes.
pub fn unb64(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}
