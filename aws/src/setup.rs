//! Idempotent creation of what an aws-mode configuration names: Kinesis streams with their
//! shard counts, DynamoDB tables (on-demand capacity), and the S3 bucket. Existing resources
//! are left as they are (a stream with another shard count is reported, not resharded).

use crate::error_chain;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, TableStatus,
};
use aws_sdk_kinesis::types::StreamStatus;
use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration};
use serde::Serialize;
use std::time::Duration;
use thiserror::Error;

/// Errors of setup.
#[derive(Debug, Error)]
pub enum SetupError {
    /// An AWS call failed.
    #[error("{resource}: {reason}")]
    Aws {
        /// The resource (e.g. `stream aiops-raw`).
        resource: String,
        /// What failed.
        reason: String,
    },
    /// The resource did not become ready in time.
    #[error("{0}: not ACTIVE after waiting")]
    NotReady(String),
}

/// What setup did with one resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SetupAction {
    /// `stream`, `table` or `bucket`.
    pub kind: String,
    /// Name.
    pub name: String,
    /// `created` or `exists`.
    pub outcome: String,
    /// Extra information (shard count of an existing stream).
    pub detail: Option<String>,
}

fn aws_err(resource: &str, err: &(dyn std::error::Error + 'static)) -> SetupError {
    SetupError::Aws {
        resource: resource.to_string(),
        reason: error_chain(err),
    }
}

/// Most status polls while waiting for a resource (one per 500 ms: 2 minutes).
const MAX_POLLS: usize = 240;

/// Creates the stream with `shards` shards unless it exists, then waits until it is ACTIVE.
///
/// # Errors
/// [`SetupError`] when a call fails or the stream does not become ACTIVE.
pub async fn ensure_stream(
    client: &aws_sdk_kinesis::Client,
    name: &str,
    shards: i32,
) -> Result<SetupAction, SetupError> {
    let resource = format!("stream {name}");
    let mut action = SetupAction {
        kind: "stream".into(),
        name: name.into(),
        outcome: "exists".into(),
        detail: None,
    };
    match client
        .describe_stream_summary()
        .stream_name(name)
        .send()
        .await
    {
        Ok(d) => {
            if let Some(s) = d.stream_description_summary() {
                action.detail = Some(format!("{} open shards", s.open_shard_count()));
            }
        }
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            client
                .create_stream()
                .stream_name(name)
                .shard_count(shards)
                .send()
                .await
                .map_err(|e| aws_err(&resource, &e))?;
            action.outcome = "created".into();
            action.detail = Some(format!("{shards} shards"));
        }
        Err(e) => return Err(aws_err(&resource, &e)),
    }
    for _ in 0..MAX_POLLS {
        let d = client
            .describe_stream_summary()
            .stream_name(name)
            .send()
            .await
            .map_err(|e| aws_err(&resource, &e))?;
        if d.stream_description_summary()
            .is_some_and(|s| *s.stream_status() == StreamStatus::Active)
        {
            return Ok(action);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(SetupError::NotReady(resource))
}

/// Creates a DynamoDB table with a string hash key `hash_key` (on-demand capacity) unless it
/// exists, then waits until it is ACTIVE.
///
/// # Errors
/// [`SetupError`] when a call fails or the table does not become ACTIVE.
pub async fn ensure_table(
    client: &aws_sdk_dynamodb::Client,
    name: &str,
    hash_key: &str,
) -> Result<SetupAction, SetupError> {
    let resource = format!("table {name}");
    let mut action = SetupAction {
        kind: "table".into(),
        name: name.into(),
        outcome: "exists".into(),
        detail: None,
    };
    match client.describe_table().table_name(name).send().await {
        Ok(_) => {}
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            let attr = AttributeDefinition::builder()
                .attribute_name(hash_key)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(|e| aws_err(&resource, &e))?;
            let key = KeySchemaElement::builder()
                .attribute_name(hash_key)
                .key_type(KeyType::Hash)
                .build()
                .map_err(|e| aws_err(&resource, &e))?;
            let created = client
                .create_table()
                .table_name(name)
                .attribute_definitions(attr)
                .key_schema(key)
                .billing_mode(BillingMode::PayPerRequest)
                .send()
                .await;
            match created {
                Ok(_) => action.outcome = "created".into(),
                // Created meanwhile by another process.
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_resource_in_use_exception()) => {}
                Err(e) => return Err(aws_err(&resource, &e)),
            }
        }
        Err(e) => return Err(aws_err(&resource, &e)),
    }
    wait_table(client, name).await?;
    Ok(action)
}

/// Waits until a DynamoDB table is ACTIVE.
///
/// # Errors
/// [`SetupError`] when a call fails or the table does not become ACTIVE.
pub async fn wait_table(client: &aws_sdk_dynamodb::Client, name: &str) -> Result<(), SetupError> {
    let resource = format!("table {name}");
    for _ in 0..MAX_POLLS {
        let d = client
            .describe_table()
            .table_name(name)
            .send()
            .await
            .map_err(|e| aws_err(&resource, &e))?;
        if d.table()
            .and_then(|t| t.table_status())
            .is_some_and(|s| *s == TableStatus::Active)
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(SetupError::NotReady(resource))
}

/// Creates the bucket unless it exists (in `region`; `us-east-1` takes no location
/// constraint).
///
/// # Errors
/// [`SetupError`] when a call fails.
pub async fn ensure_bucket(
    client: &aws_sdk_s3::Client,
    name: &str,
    region: Option<&str>,
) -> Result<SetupAction, SetupError> {
    let resource = format!("bucket {name}");
    let mut action = SetupAction {
        kind: "bucket".into(),
        name: name.into(),
        outcome: "exists".into(),
        detail: None,
    };
    if client.head_bucket().bucket(name).send().await.is_ok() {
        return Ok(action);
    }
    let mut req = client.create_bucket().bucket(name);
    if let Some(r) = region.filter(|r| *r != "us-east-1") {
        req = req.create_bucket_configuration(
            CreateBucketConfiguration::builder()
                .location_constraint(BucketLocationConstraint::from(r))
                .build(),
        );
    }
    match req.send().await {
        Ok(_) => action.outcome = "created".into(),
        Err(e)
            if e.as_service_error().is_some_and(|s| {
                s.is_bucket_already_owned_by_you() || s.is_bucket_already_exists()
            }) => {}
        Err(e) => return Err(aws_err(&resource, &e)),
    }
    Ok(action)
}
