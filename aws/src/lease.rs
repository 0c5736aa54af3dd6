//! Shard leases, as the Kinesis Client Library (KCL) keeps them: one DynamoDB item per shard
//! with its owner, a counter bumped by every write, the checkpoint (sequence number and
//! sub-sequence number, or a sentinel), the parent shards and the number of owner changes
//! since the last checkpoint; every write is conditional on the counter (and owner) read
//! before, so two workers never both believe they hold a shard for longer than the failover
//! time.
//!
//! Source: "Use a lease table to track the shards processed by the KCL consumer application",
//! Amazon Kinesis Data Streams Developer Guide
//! (<https://docs.aws.amazon.com/streams/latest/dev/kcl-dynamoDB.html>), and the KCL's
//! `DynamoDBLeaseTaker` / `DynamoDBLeaseRenewer` (expiry is judged by each worker from the
//! time it last saw a lease's counter change, not from clocks written by others).
//!
//! Item attributes (names as the KCL's where they exist): `leaseKey` (S, hash key:
//! `<stage>:<stream>:<shard id>`), `stage` (S), `streamName` (S), `shardId` (S), `leaseOwner`
//! (S, absent when free), `leaseCounter` (N), `checkpoint` (S: sequence number, or
//! `TRIM_HORIZON`, `LATEST`, `SHARD_END`), `checkpointSubSequenceNumber` (N, present for a
//! KPL user record), `ownerSwitchesSinceCheckpoint` (N), `parentShardId` (SS, absent without
//! parents), `lastRenewalMillis` and `leaseExpiresAtMillis` (N, milliseconds since the Unix
//! epoch by the owner's clock; informational, for operators).

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::AttributeValue;
use std::collections::HashMap;
use std::future::Future;
use thiserror::Error;

/// Where a shard's processing stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checkpoint {
    /// Nothing processed; start at the oldest record.
    TrimHorizon,
    /// Nothing processed; start at the newest record.
    Latest,
    /// Processed up to and including this record (and, for a KPL aggregate, this user record).
    Sequence {
        /// Sequence number (decimal digits).
        sequence_number: String,
        /// KPL sub-sequence number of the last user record processed in that record.
        sub_sequence_number: Option<u64>,
    },
    /// The shard is closed and every record was processed.
    ShardEnd,
}

impl Checkpoint {
    /// The stored text of the `checkpoint` attribute.
    pub fn as_attribute(&self) -> &str {
        match self {
            Checkpoint::TrimHorizon => "TRIM_HORIZON",
            Checkpoint::Latest => "LATEST",
            Checkpoint::ShardEnd => "SHARD_END",
            Checkpoint::Sequence {
                sequence_number, ..
            } => sequence_number,
        }
    }

    /// Parses the `checkpoint` attribute and the optional sub-sequence number.
    ///
    /// # Errors
    /// A message when the text is neither a sentinel nor decimal digits.
    pub fn from_attribute(text: &str, sub: Option<u64>) -> Result<Checkpoint, String> {
        match text {
            "TRIM_HORIZON" => Ok(Checkpoint::TrimHorizon),
            "LATEST" => Ok(Checkpoint::Latest),
            "SHARD_END" => Ok(Checkpoint::ShardEnd),
            s if crate::kinesis::SequenceNumber::parse(s).is_some() => Ok(Checkpoint::Sequence {
                sequence_number: s.to_string(),
                sub_sequence_number: sub,
            }),
            other => Err(format!(
                "checkpoint {other:?} is not a sequence number or sentinel"
            )),
        }
    }
}

/// One lease (one shard of one stream, for one stage).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// `<stage>:<stream>:<shard id>`.
    pub key: String,
    /// Stage name (`ingest`, `detect`, `act`).
    pub stage: String,
    /// Stream name.
    pub stream: String,
    /// Shard id.
    pub shard_id: String,
    /// Worker holding it; `None` when free.
    pub owner: Option<String>,
    /// Bumped by every write.
    pub counter: u64,
    /// Progress.
    pub checkpoint: Checkpoint,
    /// Owner changes since the last checkpoint (a shard that keeps changing hands without
    /// progress is visible here).
    pub owner_switches_since_checkpoint: u64,
    /// Parent shard ids (0, 1 or 2), processed to their end before this one starts.
    pub parent_shard_ids: Vec<String>,
    /// Last write by the owner: milliseconds since the Unix epoch, UTC (owner's clock).
    pub last_renewal_millis: Option<i64>,
}

impl Lease {
    /// The lease key of a shard.
    pub fn key_of(stage: &str, stream: &str, shard_id: &str) -> String {
        format!("{stage}:{stream}:{shard_id}")
    }

    /// The key prefix of every lease of a stage's stream.
    pub fn prefix_of(stage: &str, stream: &str) -> String {
        format!("{stage}:{stream}:")
    }
}

/// What a conditional write changes. Every change also bumps `leaseCounter` by 1 and, except
/// [`LeaseChange::Release`], writes `lastRenewalMillis` and `leaseExpiresAtMillis`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseChange {
    /// Become the owner (`ownerSwitchesSinceCheckpoint` + 1).
    Take {
        /// The new owner.
        owner: String,
    },
    /// Keep the lease.
    Renew,
    /// Record progress (`ownerSwitchesSinceCheckpoint` = 0).
    Checkpoint(Checkpoint),
    /// Give the lease up (`leaseOwner` removed).
    Release,
}

/// Errors of a lease store.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum LeaseError {
    /// The store failed (network, throttling, missing table).
    #[error("lease table: {0}")]
    Backend(String),
    /// An item could not be read.
    #[error("lease table: corrupt item {key}: {reason}")]
    Corrupt {
        /// Lease key.
        key: String,
        /// What is wrong.
        reason: String,
    },
}

/// The lease table port.
pub trait LeaseStore: Send + Sync + 'static {
    /// Every lease whose key starts with `prefix` (strongly consistent).
    fn list(&self, prefix: &str) -> impl Future<Output = Result<Vec<Lease>, LeaseError>> + Send;

    /// One lease (strongly consistent).
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<Lease>, LeaseError>> + Send;

    /// Creates the lease unless one with its key exists. Returns `true` when created.
    fn create(&self, lease: &Lease) -> impl Future<Output = Result<bool, LeaseError>> + Send;

    /// Applies `change` if the lease's counter is still `expected_counter` and its owner
    /// still `expected_owner` (`None`: no owner). Returns `false` when the condition failed.
    /// `now_millis` and `expires_millis` (milliseconds since the Unix epoch) are written as
    /// `lastRenewalMillis` / `leaseExpiresAtMillis`.
    fn update(
        &self,
        key: &str,
        expected_counter: u64,
        expected_owner: Option<&str>,
        change: &LeaseChange,
        now_millis: i64,
        expires_millis: i64,
    ) -> impl Future<Output = Result<bool, LeaseError>> + Send;

    /// Deletes the lease if its counter is still `expected_counter` (a lease written since it
    /// was read is kept). Returns `false` when the condition failed or the lease is gone.
    /// Used by the lease cleanup ([`crate::coordinator::LeaseCoordinator::clean_up`]).
    fn delete(
        &self,
        key: &str,
        expected_counter: u64,
    ) -> impl Future<Output = Result<bool, LeaseError>> + Send;
}

/// [`LeaseStore`] over a DynamoDB table whose hash key is `leaseKey` (S).
#[derive(Debug, Clone)]
pub struct DynamoLeaseStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

fn sdk_err<E, R>(err: &SdkError<E, R>) -> LeaseError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    match err {
        SdkError::ServiceError(se) => LeaseError::Backend(format!(
            "{}: {}",
            se.err().code().unwrap_or("Unknown"),
            se.err().message().unwrap_or("")
        )),
        _ => LeaseError::Backend(crate::error_chain(err)),
    }
}

fn is_condition_failed<E, R>(err: &SdkError<E, R>) -> bool
where
    E: ProvideErrorMetadata,
{
    matches!(err, SdkError::ServiceError(se) if se.err().code() == Some("ConditionalCheckFailedException"))
}

/// Largest number of scan pages read by [`DynamoLeaseStore::list`] (1 MB each).
const MAX_SCAN_PAGES: usize = 1000;

impl DynamoLeaseStore {
    /// A store on `table`.
    pub fn new(client: aws_sdk_dynamodb::Client, table: &str) -> DynamoLeaseStore {
        DynamoLeaseStore {
            client,
            table: table.to_string(),
        }
    }

    /// The table name.
    pub fn table(&self) -> &str {
        &self.table
    }
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

/// Reads a lease from a DynamoDB item.
///
/// # Errors
/// [`LeaseError::Corrupt`] when a required attribute is missing or malformed.
pub fn lease_from_item(item: &HashMap<String, AttributeValue>) -> Result<Lease, LeaseError> {
    let key = item
        .get("leaseKey")
        .and_then(|v| v.as_s().ok())
        .cloned()
        .unwrap_or_default();
    let corrupt = |reason: String| LeaseError::Corrupt {
        key: key.clone(),
        reason,
    };
    let get_s = |name: &str| -> Result<String, LeaseError> {
        item.get(name)
            .and_then(|v| v.as_s().ok())
            .cloned()
            .ok_or_else(|| corrupt(format!("{name} missing or not a string")))
    };
    let get_n = |name: &str| -> Result<Option<u64>, LeaseError> {
        match item.get(name) {
            None => Ok(None),
            Some(v) => v
                .as_n()
                .ok()
                .and_then(|t| t.parse::<u64>().ok())
                .map(Some)
                .ok_or_else(|| corrupt(format!("{name} is not a non-negative integer"))),
        }
    };
    if key.is_empty() {
        return Err(corrupt("leaseKey missing".into()));
    }
    let checkpoint_text = get_s("checkpoint")?;
    let sub = get_n("checkpointSubSequenceNumber")?;
    let checkpoint = Checkpoint::from_attribute(&checkpoint_text, sub).map_err(corrupt)?;
    Ok(Lease {
        key: key.clone(),
        stage: get_s("stage")?,
        stream: get_s("streamName")?,
        shard_id: get_s("shardId")?,
        owner: item.get("leaseOwner").and_then(|v| v.as_s().ok()).cloned(),
        counter: get_n("leaseCounter")?.unwrap_or(0),
        checkpoint,
        owner_switches_since_checkpoint: get_n("ownerSwitchesSinceCheckpoint")?.unwrap_or(0),
        parent_shard_ids: item
            .get("parentShardId")
            .and_then(|v| v.as_ss().ok())
            .cloned()
            .unwrap_or_default(),
        last_renewal_millis: item
            .get("lastRenewalMillis")
            .and_then(|v| v.as_n().ok())
            .and_then(|t| t.parse().ok()),
    })
}

/// The DynamoDB item of a new lease.
pub fn lease_to_item(lease: &Lease) -> HashMap<String, AttributeValue> {
    let mut item = HashMap::new();
    item.insert("leaseKey".to_string(), s(&lease.key));
    item.insert("stage".to_string(), s(&lease.stage));
    item.insert("streamName".to_string(), s(&lease.stream));
    item.insert("shardId".to_string(), s(&lease.shard_id));
    if let Some(o) = &lease.owner {
        item.insert("leaseOwner".to_string(), s(o));
    }
    item.insert("leaseCounter".to_string(), n(lease.counter));
    item.insert("checkpoint".to_string(), s(lease.checkpoint.as_attribute()));
    if let Checkpoint::Sequence {
        sub_sequence_number: Some(sub),
        ..
    } = &lease.checkpoint
    {
        item.insert("checkpointSubSequenceNumber".to_string(), n(sub));
    }
    item.insert(
        "ownerSwitchesSinceCheckpoint".to_string(),
        n(lease.owner_switches_since_checkpoint),
    );
    if !lease.parent_shard_ids.is_empty() {
        item.insert(
            "parentShardId".to_string(),
            AttributeValue::Ss(lease.parent_shard_ids.clone()),
        );
    }
    item
}

impl LeaseStore for DynamoLeaseStore {
    async fn list(&self, prefix: &str) -> Result<Vec<Lease>, LeaseError> {
        let mut out = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        for _ in 0..MAX_SCAN_PAGES {
            let resp = self
                .client
                .scan()
                .table_name(&self.table)
                .consistent_read(true)
                .filter_expression("begins_with(leaseKey, :p)")
                .expression_attribute_values(":p", s(prefix))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| sdk_err(&e))?;
            for item in resp.items() {
                out.push(lease_from_item(item)?);
            }
            match resp.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => break,
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    async fn get(&self, key: &str) -> Result<Option<Lease>, LeaseError> {
        let resp = self
            .client
            .get_item()
            .table_name(&self.table)
            .consistent_read(true)
            .key("leaseKey", s(key))
            .send()
            .await
            .map_err(|e| sdk_err(&e))?;
        resp.item().map(lease_from_item).transpose()
    }

    async fn create(&self, lease: &Lease) -> Result<bool, LeaseError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(lease_to_item(lease)))
            .condition_expression("attribute_not_exists(leaseKey)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failed(&e) => Ok(false),
            Err(e) => Err(sdk_err(&e)),
        }
    }

    async fn update(
        &self,
        key: &str,
        expected_counter: u64,
        expected_owner: Option<&str>,
        change: &LeaseChange,
        now_millis: i64,
        expires_millis: i64,
    ) -> Result<bool, LeaseError> {
        let mut sets = vec!["leaseCounter = leaseCounter + :one".to_string()];
        let mut removes: Vec<&str> = Vec::new();
        let mut values: HashMap<String, AttributeValue> = HashMap::new();
        values.insert(":one".into(), n(1));
        values.insert(":expected".into(), n(expected_counter));
        let condition = match expected_owner {
            Some(o) => {
                values.insert(":owner".into(), s(o));
                "leaseCounter = :expected AND leaseOwner = :owner"
            }
            None => "leaseCounter = :expected AND attribute_not_exists(leaseOwner)",
        };
        let mut renewal = || {
            sets.push("lastRenewalMillis = :now".into());
            sets.push("leaseExpiresAtMillis = :expires".into());
            values.insert(":now".into(), n(now_millis));
            values.insert(":expires".into(), n(expires_millis));
        };
        match change {
            LeaseChange::Take { owner } => {
                renewal();
                sets.push("leaseOwner = :new_owner".into());
                sets.push(
                    "ownerSwitchesSinceCheckpoint = if_not_exists(ownerSwitchesSinceCheckpoint, :zero) + :one"
                        .into(),
                );
                values.insert(":new_owner".into(), s(owner));
                values.insert(":zero".into(), n(0));
            }
            LeaseChange::Renew => renewal(),
            LeaseChange::Checkpoint(cp) => {
                renewal();
                sets.push("checkpoint = :cp".into());
                sets.push("ownerSwitchesSinceCheckpoint = :zero".into());
                values.insert(":cp".into(), s(cp.as_attribute()));
                values.insert(":zero".into(), n(0));
                match cp {
                    Checkpoint::Sequence {
                        sub_sequence_number: Some(sub),
                        ..
                    } => {
                        sets.push("checkpointSubSequenceNumber = :sub".into());
                        values.insert(":sub".into(), n(sub));
                    }
                    _ => removes.push("checkpointSubSequenceNumber"),
                }
            }
            LeaseChange::Release => {
                removes.push("leaseOwner");
                removes.push("leaseExpiresAtMillis");
            }
        }
        let mut expr = format!("SET {}", sets.join(", "));
        if !removes.is_empty() {
            expr.push_str(&format!(" REMOVE {}", removes.join(", ")));
        }
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("leaseKey", s(key))
            .update_expression(expr)
            .condition_expression(condition)
            .set_expression_attribute_values(Some(values))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failed(&e) => Ok(false),
            Err(e) => Err(sdk_err(&e)),
        }
    }

    async fn delete(&self, key: &str, expected_counter: u64) -> Result<bool, LeaseError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("leaseKey", s(key))
            .condition_expression("leaseCounter = :expected")
            .expression_attribute_values(":expected", n(expected_counter))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failed(&e) => Ok(false),
            Err(e) => Err(sdk_err(&e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_round_trip() {
        let lease = Lease {
            key: Lease::key_of("ingest", "raw", "shardId-000000000002"),
            stage: "ingest".into(),
            stream: "raw".into(),
            shard_id: "shardId-000000000002".into(),
            owner: Some("w1".into()),
            counter: 7,
            checkpoint: Checkpoint::Sequence {
                sequence_number: "42".into(),
                sub_sequence_number: Some(3),
            },
            owner_switches_since_checkpoint: 1,
            parent_shard_ids: vec!["shardId-000000000000".into()],
            last_renewal_millis: None,
        };
        assert_eq!(lease.key, "ingest:raw:shardId-000000000002");
        let back = lease_from_item(&lease_to_item(&lease)).unwrap();
        assert_eq!(back, lease);
    }

    #[test]
    fn corrupt_items_are_named() {
        let mut item = lease_to_item(&Lease {
            key: "k".into(),
            stage: "s".into(),
            stream: "r".into(),
            shard_id: "x".into(),
            owner: None,
            counter: 0,
            checkpoint: Checkpoint::TrimHorizon,
            owner_switches_since_checkpoint: 0,
            parent_shard_ids: vec![],
            last_renewal_millis: None,
        });
        item.insert("checkpoint".into(), s("12ab"));
        assert_eq!(
            lease_from_item(&item).unwrap_err().to_string(),
            "lease table: corrupt item k: checkpoint \"12ab\" is not a sequence number or sentinel"
        );
        item.insert("checkpoint".into(), s("SHARD_END"));
        item.insert("leaseCounter".into(), n(-1));
        assert_eq!(
            lease_from_item(&item).unwrap_err().to_string(),
            "lease table: corrupt item k: leaseCounter is not a non-negative integer"
        );
    }
}
