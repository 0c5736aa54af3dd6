//! Learned baselines in the DynamoDB `patterns` table (key `pattern_key`, shared with the act
//! stage's outcome counters under `act/...`).
//!
//! A baselines document can exceed DynamoDB's 400 KB item limit
//! (<https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ServiceQuotas.html>), so
//! it is stored gzip-compressed in parts of at most [`PART_BYTES`] bytes:
//!
//! - `detect/baselines/<generation>/<n>` (n = 0, 1, ...): attribute `data` (binary), a part;
//! - `detect/baselines/current`: attributes `generation` (S), `parts` (N), `bytes` (N,
//!   compressed), `series` (N), `window_secs` (N), `created_at` (N, microseconds since the
//!   Unix epoch, UTC).
//!
//! The parts of a new generation are written first and the `current` item last, so a reader
//! never sees a half-written document; older generations are deleted afterwards.

use crate::error::{Context, HistoryError, Result};
use aiops_detect::baseline::Baselines;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use std::io::{Read, Write};

/// Bytes of compressed document per item (a margin below DynamoDB's 400 KB item limit).
pub const PART_BYTES: usize = 350 * 1024;
/// Most parts of one document (about 350 MB compressed).
pub const MAX_PARTS: usize = 1000;
/// Key of the item naming the current generation.
pub const CURRENT_KEY: &str = "detect/baselines/current";

fn part_key(generation: &str, n: usize) -> String {
    format!("detect/baselines/{generation}/{n}")
}

fn number(item: &std::collections::HashMap<String, AttributeValue>, name: &str) -> Option<u64> {
    match item.get(name) {
        Some(AttributeValue::N(v)) => v.parse().ok(),
        _ => None,
    }
}

/// Writes `baselines` to `table` as a new generation and makes it current; returns the
/// generation id and the number of parts.
///
/// # Errors
/// When compression or a DynamoDB call fails, or the document needs more than [`MAX_PARTS`].
pub async fn save(client: &Client, table: &str, baselines: &Baselines) -> Result<(String, usize)> {
    let json = baselines.to_json()?;
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    gz.write_all(&json)?;
    let packed = gz.finish()?;
    let parts: Vec<&[u8]> = packed.chunks(PART_BYTES).collect();
    if parts.len() > MAX_PARTS {
        return Err(HistoryError::Invalid(format!(
            "baselines are {} bytes compressed: more than {MAX_PARTS} items of {PART_BYTES} bytes",
            packed.len()
        )));
    }
    let previous = current(client, table).await?;
    let generation = uuid::Uuid::new_v4().simple().to_string();
    for (n, chunk) in parts.iter().enumerate() {
        client
            .put_item()
            .table_name(table)
            .item("pattern_key", AttributeValue::S(part_key(&generation, n)))
            .item("data", AttributeValue::B(Blob::new(chunk.to_vec())))
            .send()
            .await
            .with_context(|| format!("cannot write baselines part {n} to {table}"))?;
    }
    client
        .put_item()
        .table_name(table)
        .item("pattern_key", AttributeValue::S(CURRENT_KEY.to_string()))
        .item("generation", AttributeValue::S(generation.clone()))
        .item("parts", AttributeValue::N(parts.len().to_string()))
        .item("bytes", AttributeValue::N(packed.len().to_string()))
        .item(
            "series",
            AttributeValue::N(baselines.series.len().to_string()),
        )
        .item(
            "window_secs",
            AttributeValue::N(baselines.window_secs.to_string()),
        )
        .item(
            "created_at",
            AttributeValue::N(aiops_core::time::now_micros().to_string()),
        )
        .send()
        .await
        .with_context(|| format!("cannot write {CURRENT_KEY} to {table}"))?;
    if let Some((old, n)) = previous
        && old != generation
    {
        for i in 0..n {
            // Best effort: an orphaned part is never read again.
            let _ = client
                .delete_item()
                .table_name(table)
                .key("pattern_key", AttributeValue::S(part_key(&old, i)))
                .send()
                .await;
        }
    }
    Ok((generation, parts.len()))
}

async fn current(client: &Client, table: &str) -> Result<Option<(String, usize)>> {
    let resp = client
        .get_item()
        .table_name(table)
        .key("pattern_key", AttributeValue::S(CURRENT_KEY.to_string()))
        .consistent_read(true)
        .send()
        .await
        .with_context(|| format!("cannot read {CURRENT_KEY} from {table}"))?;
    let Some(item) = resp.item() else {
        return Ok(None);
    };
    let generation = match item.get("generation") {
        Some(AttributeValue::S(g)) => g.clone(),
        _ => {
            return Err(HistoryError::Invalid(format!(
                "{table}: {CURRENT_KEY} has no generation"
            )));
        }
    };
    let parts = number(item, "parts")
        .and_then(|n| usize::try_from(n).ok())
        .filter(|&n| (1..=MAX_PARTS).contains(&n))
        .ok_or_else(|| {
            HistoryError::Invalid(format!("{table}: {CURRENT_KEY} has no valid part count"))
        })?;
    Ok(Some((generation, parts)))
}

/// Reads the current baselines from `table`: `None` when none were learned yet. The document
/// is not validated here (the caller validates it against its configuration).
///
/// # Errors
/// When a DynamoDB call fails, a part is missing, or the document does not decode.
pub async fn load(client: &Client, table: &str) -> Result<Option<Baselines>> {
    let Some((generation, parts)) = current(client, table).await? else {
        return Ok(None);
    };
    let mut packed = Vec::new();
    for n in 0..parts {
        let resp = client
            .get_item()
            .table_name(table)
            .key("pattern_key", AttributeValue::S(part_key(&generation, n)))
            .consistent_read(true)
            .send()
            .await
            .with_context(|| format!("cannot read baselines part {n} from {table}"))?;
        match resp.item().and_then(|i| i.get("data")) {
            Some(AttributeValue::B(b)) => packed.extend_from_slice(b.as_ref()),
            _ => {
                return Err(HistoryError::Invalid(format!(
                    "{table}: baselines part {n} of generation {generation} is missing"
                )));
            }
        }
    }
    let mut json = Vec::new();
    GzDecoder::new(packed.as_slice())
        .take(2 * 1024 * 1024 * 1024)
        .read_to_end(&mut json)
        .context("baselines in the patterns table are not gzip")?;
    Ok(Some(Baselines::from_json(&json)?))
}
