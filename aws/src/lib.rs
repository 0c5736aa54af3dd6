//! # aiops-aws
//!
//! AWS adapters of aiops, through the official AWS SDK for Rust (DESIGN §1, §7, §8):
//!
//! - [`sdk`]: shared SDK configuration (region, credentials and endpoint from the standard
//!   chain, with an optional endpoint override for local emulators).
//! - [`kinesis`]: the Kinesis port ([`kinesis::KinesisPort`]) and its SDK adapter.
//! - [`producer`]: `PutRecords` batching within the service limits, retrying only the failed
//!   entries with backoff.
//! - [`lease`]: shard leases in DynamoDB as the Kinesis Client Library keeps them (one item
//!   per shard, conditional writes); [`coordinator`]: the [`coordinator::LeaseCoordinator`]
//!   that takes, renews, balances, checkpoints and releases them.
//! - [`consumer`]: the polling shard consumer and the [`consumer::Worker`] running one
//!   consumer per leased shard.
//! - [`objects`] and [`archive`]: S3 objects (multipart for large files) and the raw history
//!   archive in the DESIGN §7 layout.
//! - [`setup`]: idempotent creation of streams, tables and the bucket.
//! - [`trail`]: reading CloudTrail log files (and any input) from S3 for `aiops replay
//!   s3://...`: listing by the trail's date-partitioned layout, bounded parallel GETs.
//! - [`testing`]: in-memory fakes of the ports with fault injection, for tests.

pub mod archive;
pub mod backoff;
pub mod consumer;
pub mod coordinator;
pub mod kinesis;
pub mod lease;
pub mod objects;
pub mod producer;
pub mod sdk;
pub mod setup;
pub mod testing;
pub mod trail;

/// The message of an error and of every error in its `source()` chain, joined by `: ` (the
/// SDK's top-level messages alone, such as "service error", say little).
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut next = err.source();
    let mut depth = 0;
    while let Some(e) = next {
        let s = e.to_string();
        if !out.ends_with(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        next = e.source();
        depth += 1;
        if depth >= 8 {
            break;
        }
    }
    out
}
