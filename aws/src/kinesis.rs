//! The Kinesis port: the few Kinesis Data Streams calls the consumer and producer make, behind
//! a trait, so that the same consumer code runs against the AWS SDK ([`SdkKinesis`]) and
//! against fault-injecting fakes (`crate::testing::FakeKinesis`).
//!
//! API reference: Amazon Kinesis Data Streams API Reference
//! (<https://docs.aws.amazon.com/kinesis/latest/APIReference/>): `ListShards`,
//! `GetShardIterator`, `GetRecords`, `PutRecords`.

use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kinesis::primitives::{Blob, DateTime};
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, ShardIteratorType};
use std::future::Future;
use thiserror::Error;

/// One shard as `ListShards` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardInfo {
    /// Shard id, e.g. `shardId-000000000003`.
    pub shard_id: String,
    /// The parent shard (the shard split, or one of the two merged).
    pub parent_shard_id: Option<String>,
    /// The other parent of a merge.
    pub adjacent_parent_shard_id: Option<String>,
    /// Set when the shard is closed (split or merged): its last sequence number.
    pub ending_sequence_number: Option<String>,
}

impl ShardInfo {
    /// The parents of the shard (0, 1 or 2 shard ids).
    pub fn parents(&self) -> Vec<String> {
        self.parent_shard_id
            .iter()
            .chain(self.adjacent_parent_shard_id.iter())
            .cloned()
            .collect()
    }
}

/// Where a new shard iterator starts (`ShardIteratorType` and its argument).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IteratorStart {
    /// The oldest record still in the shard.
    TrimHorizon,
    /// Just after the newest record (records put later).
    Latest,
    /// At the record with this sequence number (decimal digits).
    AtSequenceNumber(String),
    /// Just after the record with this sequence number (decimal digits).
    AfterSequenceNumber(String),
    /// At the first record put at or after this time: microseconds since the Unix epoch, UTC.
    AtTimestamp(i64),
}

/// One record as `GetRecords` returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KinesisRecord {
    /// Sequence number (decimal digits, up to 128 bits).
    pub sequence_number: String,
    /// Partition key the producer gave.
    pub partition_key: String,
    /// The data blob (up to 1 MiB).
    pub data: Vec<u8>,
    /// `ApproximateArrivalTimestamp`: microseconds since the Unix epoch, UTC.
    pub approximate_arrival_micros: Option<i64>,
}

/// One page of `GetRecords`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RecordsPage {
    /// Records, in shard order.
    pub records: Vec<KinesisRecord>,
    /// The iterator for the next call; `None` when the shard is closed and fully read
    /// (the only signal that a shard has ended).
    pub next_iterator: Option<String>,
    /// How far behind the tip of the shard this page is, milliseconds (0: caught up).
    pub millis_behind_latest: Option<i64>,
}

/// One entry of a `PutRecords` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutEntry {
    /// Partition key (1 to 256 Unicode characters).
    pub partition_key: String,
    /// Data (its size plus the partition key's must be at most 1 MiB).
    pub data: Vec<u8>,
}

/// The result of one `PutRecords` entry, in request order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutOutcome {
    /// Written: the record's sequence number and shard.
    Accepted {
        /// Sequence number assigned.
        sequence_number: String,
        /// Shard written to.
        shard_id: String,
    },
    /// Not written; retry it. `error_code` is `ProvisionedThroughputExceededException` or
    /// `InternalFailure` (the two codes `PutRecords` reports per entry).
    Failed {
        /// Error code.
        error_code: String,
        /// Error message.
        error_message: String,
    },
}

/// Errors of a Kinesis call, classified for the retry decisions of the consumer and producer.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KinesisError {
    /// `ExpiredIteratorException`: the iterator is older than 5 minutes; get a new one.
    #[error("shard iterator expired: {0}")]
    ExpiredIterator(String),
    /// `ProvisionedThroughputExceededException`, `KMSThrottlingException`,
    /// `LimitExceededException` or another throttling code: back off and retry.
    #[error("throttled: {0}")]
    Throttled(String),
    /// `ResourceNotFoundException`: the stream or shard does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// A transient failure (`InternalFailure`, a 5xx, a time-out, a broken connection):
    /// retry with backoff.
    #[error("transient: {0}")]
    Transient(String),
    /// Anything else (invalid argument, access denied, KMS errors): not retried.
    #[error("{0}")]
    Other(String),
}

impl KinesisError {
    /// Whether retrying the same call later can succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            KinesisError::Throttled(_) | KinesisError::Transient(_)
        )
    }

    /// Classifies an error code and message (as AWS returns them) into a variant.
    pub fn from_code(code: &str, message: &str) -> KinesisError {
        let text = if message.is_empty() {
            code.to_string()
        } else {
            format!("{code}: {message}")
        };
        match code {
            "ExpiredIteratorException" => KinesisError::ExpiredIterator(text),
            "ProvisionedThroughputExceededException"
            | "KMSThrottlingException"
            | "LimitExceededException"
            | "ThrottlingException"
            | "Throttling"
            | "RequestLimitExceeded" => KinesisError::Throttled(text),
            "ResourceNotFoundException" => KinesisError::NotFound(text),
            "InternalFailure" | "InternalFailureException" | "ServiceUnavailable" => {
                KinesisError::Transient(text)
            }
            _ => KinesisError::Other(text),
        }
    }
}

/// Classifies an SDK error: service errors by their code (5xx without a known code are
/// transient), time-outs, dispatch and response errors as transient.
pub fn classify_sdk_error<E, R>(err: &SdkError<E, R>) -> KinesisError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    match err {
        SdkError::ServiceError(se) => {
            let e = se.err();
            let code = e.code().unwrap_or("Unknown");
            let known = KinesisError::from_code(code, e.message().unwrap_or(""));
            match known {
                KinesisError::Other(text) if code == "Unknown" => KinesisError::Transient(text),
                other => other,
            }
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            KinesisError::Transient(crate::error_chain(err))
        }
        _ => KinesisError::Other(crate::error_chain(err)),
    }
}

/// The Kinesis calls aiops makes. Implementations are shared between tasks (`Send + Sync`).
pub trait KinesisPort: Send + Sync + 'static {
    /// Every shard of `stream` (all pages of `ListShards`), open and closed.
    fn list_shards(
        &self,
        stream: &str,
    ) -> impl Future<Output = Result<Vec<ShardInfo>, KinesisError>> + Send;

    /// A new shard iterator (`GetShardIterator`).
    fn get_shard_iterator(
        &self,
        stream: &str,
        shard_id: &str,
        start: &IteratorStart,
    ) -> impl Future<Output = Result<String, KinesisError>> + Send;

    /// One `GetRecords` call with at most `limit` records (1..=10000).
    fn get_records(
        &self,
        iterator: &str,
        limit: i32,
    ) -> impl Future<Output = Result<RecordsPage, KinesisError>> + Send;

    /// One `PutRecords` call (at most 500 entries, 5 MiB in all); per-entry outcomes in
    /// request order.
    fn put_records(
        &self,
        stream: &str,
        entries: &[PutEntry],
    ) -> impl Future<Output = Result<Vec<PutOutcome>, KinesisError>> + Send;
}

/// [`KinesisPort`] over the AWS SDK for Rust.
#[derive(Debug, Clone)]
pub struct SdkKinesis {
    client: aws_sdk_kinesis::Client,
}

impl SdkKinesis {
    /// Wraps a client.
    pub fn new(client: aws_sdk_kinesis::Client) -> SdkKinesis {
        SdkKinesis { client }
    }

    /// A client from a loaded SDK configuration.
    pub fn from_conf(sdk: &aws_config::SdkConfig) -> SdkKinesis {
        SdkKinesis::new(aws_sdk_kinesis::Client::new(sdk))
    }

    /// The wrapped client.
    pub fn client(&self) -> &aws_sdk_kinesis::Client {
        &self.client
    }
}

fn micros_to_datetime(micros: i64) -> DateTime {
    DateTime::from_secs_and_nanos(
        micros.div_euclid(1_000_000),
        u32::try_from(micros.rem_euclid(1_000_000) * 1000).unwrap_or(0),
    )
}

fn datetime_to_micros(t: &DateTime) -> i64 {
    t.secs()
        .saturating_mul(1_000_000)
        .saturating_add(i64::from(t.subsec_nanos() / 1000))
}

/// Largest number of `ListShards` pages read (10,000 shards per page): a bound on a
/// misbehaving endpoint that never stops returning tokens.
const MAX_LIST_PAGES: usize = 1000;

impl KinesisPort for SdkKinesis {
    async fn list_shards(&self, stream: &str) -> Result<Vec<ShardInfo>, KinesisError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..MAX_LIST_PAGES {
            let req = match &token {
                Some(t) => self.client.list_shards().next_token(t),
                None => self.client.list_shards().stream_name(stream),
            };
            let resp = req.send().await.map_err(|e| classify_sdk_error(&e))?;
            for s in resp.shards() {
                out.push(ShardInfo {
                    shard_id: s.shard_id().to_string(),
                    parent_shard_id: s.parent_shard_id().map(str::to_string),
                    adjacent_parent_shard_id: s.adjacent_parent_shard_id().map(str::to_string),
                    ending_sequence_number: s
                        .sequence_number_range()
                        .and_then(|r| r.ending_sequence_number())
                        .map(str::to_string),
                });
            }
            match resp.next_token() {
                Some(t) if !t.is_empty() && !resp.shards().is_empty() => token = Some(t.into()),
                _ => return Ok(out),
            }
        }
        Ok(out)
    }

    async fn get_shard_iterator(
        &self,
        stream: &str,
        shard_id: &str,
        start: &IteratorStart,
    ) -> Result<String, KinesisError> {
        let mut req = self
            .client
            .get_shard_iterator()
            .stream_name(stream)
            .shard_id(shard_id);
        req = match start {
            IteratorStart::TrimHorizon => req.shard_iterator_type(ShardIteratorType::TrimHorizon),
            IteratorStart::Latest => req.shard_iterator_type(ShardIteratorType::Latest),
            IteratorStart::AtSequenceNumber(s) => req
                .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
                .starting_sequence_number(s),
            IteratorStart::AfterSequenceNumber(s) => req
                .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                .starting_sequence_number(s),
            IteratorStart::AtTimestamp(t) => req
                .shard_iterator_type(ShardIteratorType::AtTimestamp)
                .timestamp(micros_to_datetime(*t)),
        };
        let resp = req.send().await.map_err(|e| classify_sdk_error(&e))?;
        resp.shard_iterator()
            .map(str::to_string)
            .ok_or_else(|| KinesisError::Other("GetShardIterator returned no iterator".into()))
    }

    async fn get_records(&self, iterator: &str, limit: i32) -> Result<RecordsPage, KinesisError> {
        let resp = self
            .client
            .get_records()
            .shard_iterator(iterator)
            .limit(limit.clamp(1, 10_000))
            .send()
            .await
            .map_err(|e| classify_sdk_error(&e))?;
        let records = resp
            .records()
            .iter()
            .map(|r| KinesisRecord {
                sequence_number: r.sequence_number().to_string(),
                partition_key: r.partition_key().unwrap_or_default().to_string(),
                data: r.data().as_ref().to_vec(),
                approximate_arrival_micros: r
                    .approximate_arrival_timestamp()
                    .map(datetime_to_micros),
            })
            .collect();
        Ok(RecordsPage {
            records,
            next_iterator: resp.next_shard_iterator().map(str::to_string),
            millis_behind_latest: resp.millis_behind_latest(),
        })
    }

    async fn put_records(
        &self,
        stream: &str,
        entries: &[PutEntry],
    ) -> Result<Vec<PutOutcome>, KinesisError> {
        let mut req = self.client.put_records().stream_name(stream);
        for e in entries {
            let entry = PutRecordsRequestEntry::builder()
                .partition_key(&e.partition_key)
                .data(Blob::new(e.data.clone()))
                .build()
                .map_err(|err| KinesisError::Other(format!("invalid PutRecords entry: {err}")))?;
            req = req.records(entry);
        }
        let resp = req.send().await.map_err(|e| classify_sdk_error(&e))?;
        if resp.records().len() != entries.len() {
            return Err(KinesisError::Transient(format!(
                "PutRecords answered {} results for {} entries",
                resp.records().len(),
                entries.len()
            )));
        }
        Ok(resp
            .records()
            .iter()
            .map(|r| match (r.error_code(), r.sequence_number()) {
                (None, Some(seq)) => PutOutcome::Accepted {
                    sequence_number: seq.to_string(),
                    shard_id: r.shard_id().unwrap_or_default().to_string(),
                },
                (code, _) => PutOutcome::Failed {
                    error_code: code.unwrap_or("InternalFailure").to_string(),
                    error_message: r.error_message().unwrap_or_default().to_string(),
                },
            })
            .collect())
    }
}

/// A Kinesis sequence number, ordered as a number.
///
/// Sequence numbers are decimal strings (`0|([1-9]\d{0,128})` in the API reference): real
/// ones have about 56 digits, beyond `u128`, and moto's are small integers, so they are never
/// compared as strings nor squeezed into a fixed-width integer: the digits (leading zeros
/// removed) are compared by length, then lexicographically, which is exact numeric order.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SequenceNumber(String);

/// Longest accepted sequence number, in digits (the API allows 129).
pub const MAX_SEQUENCE_DIGITS: usize = 129;

impl SequenceNumber {
    /// Parses decimal digits; `None` when empty, longer than [`MAX_SEQUENCE_DIGITS`] or not
    /// all ASCII digits.
    pub fn parse(s: &str) -> Option<SequenceNumber> {
        if s.is_empty() || s.len() > MAX_SEQUENCE_DIGITS || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let trimmed = s.trim_start_matches('0');
        Some(SequenceNumber(if trimmed.is_empty() {
            "0".to_string()
        } else {
            trimmed.to_string()
        }))
    }

    /// The canonical decimal text (no leading zeros).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Ord for SequenceNumber {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0
            .len()
            .cmp(&other.0.len())
            .then_with(|| self.0.cmp(&other.0))
    }
}

impl PartialOrd for SequenceNumber {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl std::fmt::Display for SequenceNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_compare_as_numbers() {
        let p = |s| SequenceNumber::parse(s).unwrap();
        assert!(p("9") < p("10"));
        assert!(p("10") > p("9"));
        assert_eq!(p("007"), p("7"));
        assert_eq!(p("000").as_str(), "0");
        // Real Kinesis sequence numbers have 56 digits: more than u128 holds.
        let a = p("49590338271490256608559692538361571095921575989136588898");
        let b = p("49590338271490256608559692538361571095921575989136588899");
        let c = p("149590338271490256608559692538361571095921575989136588");
        assert!(a < b);
        assert!(c < a);
        assert_eq!(SequenceNumber::parse(""), None);
        assert_eq!(SequenceNumber::parse("12a"), None);
        assert_eq!(SequenceNumber::parse("-1"), None);
        assert_eq!(SequenceNumber::parse(&"1".repeat(130)), None);
    }

    #[test]
    fn error_codes_are_classified() {
        assert!(matches!(
            KinesisError::from_code("ExpiredIteratorException", "x"),
            KinesisError::ExpiredIterator(_)
        ));
        let t = KinesisError::from_code("ProvisionedThroughputExceededException", "slow down");
        assert_eq!(
            t,
            KinesisError::Throttled("ProvisionedThroughputExceededException: slow down".into())
        );
        assert!(t.is_retryable());
        assert!(KinesisError::from_code("InternalFailure", "").is_retryable());
        assert!(!KinesisError::from_code("ResourceNotFoundException", "").is_retryable());
        assert!(!KinesisError::from_code("InvalidArgumentException", "").is_retryable());
    }

    #[test]
    fn timestamps_round_trip_in_micros() {
        let t = 1_714_564_800_123_456;
        assert_eq!(datetime_to_micros(&micros_to_datetime(t)), t);
        assert_eq!(datetime_to_micros(&micros_to_datetime(-1)), -1);
    }
}
