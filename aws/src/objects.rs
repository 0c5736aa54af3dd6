//! The object store port and its S3 adapter: whole objects written at once (the archive
//! writes a file only when it is complete, so a reader never sees a partial one), with a
//! multipart upload for large bodies.
//!
//! S3 limits (Amazon S3 User Guide, "Uploading and copying objects using multipart upload",
//! <https://docs.aws.amazon.com/AmazonS3/latest/userguide/qfacts.html>): parts of 5 MiB to
//! 5 GiB except the last, at most 10,000 parts.

use crate::backoff::{Backoff, BackoffConfig};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use thiserror::Error;

/// Smallest S3 part (except the last): 5 MiB.
pub const MIN_PART_BYTES: usize = 5 * 1024 * 1024;
/// Most parts in one multipart upload.
pub const MAX_PARTS: usize = 10_000;

/// Errors of an object store.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ObjectError {
    /// The write failed after every retry, or with a non-retryable error.
    #[error("writing s3://{bucket}/{key}: {reason}")]
    Write {
        /// Bucket.
        bucket: String,
        /// Key.
        key: String,
        /// Last error.
        reason: String,
    },
    /// A listing or a read failed.
    #[error("reading s3://{bucket}/{key}: {reason}")]
    Read {
        /// Bucket.
        bucket: String,
        /// Key or key prefix.
        key: String,
        /// The error.
        reason: String,
    },
}

/// Where whole objects are written.
pub trait ObjectStore: Send + Sync + 'static {
    /// Writes `body` under `key`; returns when the object is durable (S3: the PUT or the
    /// multipart completion succeeded).
    fn put(
        &self,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> impl Future<Output = Result<(), ObjectError>> + Send;

    /// Reads the whole object `key`: `None` when it does not exist. A store that cannot read
    /// (a write-only sink) answers [`ObjectError::Read`].
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<Vec<u8>>, ObjectError>> + Send {
        let key = key.to_string();
        async move {
            Err(ObjectError::Read {
                bucket: String::new(),
                key,
                reason: "this object store cannot read".into(),
            })
        }
    }
}

/// S3 upload settings (`[aws.s3]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    /// Bodies of at least this many bytes use a multipart upload. Default 16 MiB.
    pub multipart_threshold_bytes: usize,
    /// Part size of multipart uploads, at least 5 MiB. Default 8 MiB.
    pub part_size_bytes: usize,
    /// Retries of a failed write (the whole object again).
    pub backoff: BackoffConfig,
}

impl Default for S3Config {
    fn default() -> Self {
        S3Config {
            multipart_threshold_bytes: 16 * 1024 * 1024,
            part_size_bytes: 8 * 1024 * 1024,
            backoff: BackoffConfig {
                base_ms: 200,
                max_ms: 10_000,
                max_attempts: 8,
            },
        }
    }
}

impl S3Config {
    /// Checks the ranges.
    ///
    /// # Errors
    /// A message naming the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.part_size_bytes < MIN_PART_BYTES || self.part_size_bytes > 1024 * 1024 * 1024 {
            return Err(format!(
                "part_size_bytes: must be between {MIN_PART_BYTES} (5 MiB) and 1073741824"
            ));
        }
        if self.multipart_threshold_bytes < self.part_size_bytes {
            return Err("multipart_threshold_bytes: must be at least part_size_bytes".into());
        }
        if self.backoff.max_attempts == 0 {
            return Err("backoff.max_attempts: must be at least 1".into());
        }
        self.backoff.validate().map_err(|e| format!("backoff.{e}"))
    }
}

/// Counters of an S3 store.
#[derive(Debug, Default)]
pub struct ObjectStats {
    /// Objects written with one PUT.
    pub single_puts: AtomicU64,
    /// Objects written with a multipart upload.
    pub multipart_uploads: AtomicU64,
    /// Parts uploaded.
    pub parts: AtomicU64,
    /// Writes retried.
    pub retries: AtomicU64,
    /// Bytes written.
    pub bytes: AtomicU64,
}

/// [`ObjectStore`] over S3.
#[derive(Debug, Clone)]
pub struct S3ObjectStore {
    client: aws_sdk_s3::Client,
    bucket: String,
    config: S3Config,
    stats: Arc<ObjectStats>,
}

fn s3_error<E, R>(err: &SdkError<E, R>) -> (String, bool)
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    match err {
        SdkError::ServiceError(se) => {
            let code = se.err().code().unwrap_or("Unknown");
            let fatal = matches!(
                code,
                "NoSuchBucket"
                    | "AccessDenied"
                    | "InvalidAccessKeyId"
                    | "SignatureDoesNotMatch"
                    | "InvalidBucketName"
            );
            (
                format!("{code}: {}", se.err().message().unwrap_or("")),
                !fatal,
            )
        }
        _ => (crate::error_chain(err), true),
    }
}

/// Splits `len` bytes into part ranges of `part_size` (the last one shorter).
pub fn part_ranges(len: usize, part_size: usize) -> Vec<std::ops::Range<usize>> {
    let size = part_size.max(1);
    (0..len.div_ceil(size))
        .map(|i| i * size..((i + 1) * size).min(len))
        .collect()
}

impl S3ObjectStore {
    /// A store writing to `bucket`.
    pub fn new(client: aws_sdk_s3::Client, bucket: &str, config: S3Config) -> S3ObjectStore {
        S3ObjectStore {
            client,
            bucket: bucket.to_string(),
            config,
            stats: Arc::new(ObjectStats::default()),
        }
    }

    /// The counters.
    pub fn stats(&self) -> &Arc<ObjectStats> {
        &self.stats
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    async fn put_once(
        &self,
        key: &str,
        body: &[u8],
        content_type: &str,
    ) -> Result<(), (String, bool)> {
        if body.len() < self.config.multipart_threshold_bytes {
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(key)
                .content_type(content_type)
                .body(ByteStream::from(body.to_vec()))
                .send()
                .await
                .map_err(|e| s3_error(&e))?;
            self.stats.single_puts.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        let mut part_size = self.config.part_size_bytes;
        if body.len().div_ceil(part_size) > MAX_PARTS {
            part_size = body.len().div_ceil(MAX_PARTS);
        }
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .send()
            .await
            .map_err(|e| s3_error(&e))?;
        let upload_id = created
            .upload_id()
            .ok_or_else(|| {
                (
                    "CreateMultipartUpload returned no upload id".to_string(),
                    true,
                )
            })?
            .to_string();
        let result = self.upload_parts(key, &upload_id, body, part_size).await;
        if result.is_err() {
            // Best effort: a dangling upload costs storage until a lifecycle rule removes it.
            let _ = self
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(&upload_id)
                .send()
                .await;
        }
        result
    }

    async fn upload_parts(
        &self,
        key: &str,
        upload_id: &str,
        body: &[u8],
        part_size: usize,
    ) -> Result<(), (String, bool)> {
        let mut parts = Vec::new();
        for (i, range) in part_ranges(body.len(), part_size).into_iter().enumerate() {
            let number = i32::try_from(i + 1).map_err(|_| ("too many parts".to_string(), false))?;
            let chunk = body.get(range).unwrap_or_default().to_vec();
            let resp = self
                .client
                .upload_part()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(upload_id)
                .part_number(number)
                .body(ByteStream::from(chunk))
                .send()
                .await
                .map_err(|e| s3_error(&e))?;
            self.stats.parts.fetch_add(1, Ordering::Relaxed);
            parts.push(
                CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(resp.e_tag().map(str::to_string))
                    .build(),
            );
        }
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| s3_error(&e))?;
        self.stats.multipart_uploads.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

impl ObjectStore for S3ObjectStore {
    async fn put(&self, key: &str, body: Vec<u8>, content_type: &str) -> Result<(), ObjectError> {
        let mut backoff = Backoff::new(self.config.backoff);
        loop {
            match self.put_once(key, &body, content_type).await {
                Ok(()) => {
                    self.stats
                        .bytes
                        .fetch_add(body.len() as u64, Ordering::Relaxed);
                    return Ok(());
                }
                Err((reason, retryable)) => {
                    let delay = if retryable {
                        backoff.next_delay()
                    } else {
                        None
                    };
                    match delay {
                        Some(d) => {
                            self.stats.retries.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(bucket = %self.bucket, key, error = %reason, delay_ms = d.as_millis() as u64, "S3 write failed; retrying");
                            tokio::time::sleep(d).await;
                        }
                        None => {
                            return Err(ObjectError::Write {
                                bucket: self.bucket.clone(),
                                key: key.to_string(),
                                reason,
                            });
                        }
                    }
                }
            }
        }
    }

    /// GetObject, retried as writes are (`[aws.s3] backoff`); `NoSuchKey` is `None`.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, ObjectError> {
        let mut backoff = Backoff::new(self.config.backoff);
        loop {
            let reason = match self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(key)
                .send()
                .await
            {
                Ok(resp) => match resp.body.collect().await {
                    Ok(body) => return Ok(Some(body.into_bytes().to_vec())),
                    Err(e) => (e.to_string(), true),
                },
                Err(SdkError::ServiceError(se)) if se.err().is_no_such_key() => return Ok(None),
                Err(e) => s3_error(&e),
            };
            let delay = if reason.1 { backoff.next_delay() } else { None };
            match delay {
                Some(d) => {
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(bucket = %self.bucket, key, error = %reason.0, delay_ms = d.as_millis() as u64, "S3 read failed; retrying");
                    tokio::time::sleep(d).await;
                }
                None => {
                    return Err(ObjectError::Read {
                        bucket: self.bucket.clone(),
                        key: key.to_string(),
                        reason: reason.0,
                    });
                }
            }
        }
    }
}

/// One object of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedObject {
    /// Key.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
}

/// Every object under `prefix` in `bucket` (ListObjectsV2, all pages, in key order), at most
/// `max_keys` of them.
///
/// # Errors
/// [`ObjectError::Read`] when a page cannot be listed, or more than `max_keys` objects match.
pub async fn list_objects(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
    max_keys: usize,
) -> Result<Vec<ListedObject>, ObjectError> {
    Ok(list_pages(client, bucket, prefix, None, max_keys)
        .await?
        .objects)
}

/// One level of a bucket: what ListObjectsV2 returns for a prefix, all pages.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    /// The common prefixes (with a delimiter: the "directories" right under the prefix, each
    /// ending with the delimiter), in key order.
    pub prefixes: Vec<String>,
    /// The objects (with a delimiter: those right under the prefix), in key order.
    pub objects: Vec<ListedObject>,
    /// ListObjectsV2 requests made (pages).
    pub requests: u64,
}

/// Lists `prefix` in `bucket` (ListObjectsV2, all pages); with `delimiter` (`/`), the keys
/// beyond the next delimiter are rolled up into [`Listing::prefixes`]. At most `max_keys`
/// objects and prefixes.
///
/// # Errors
/// [`ObjectError::Read`] when a page cannot be listed, or more than `max_keys` entries match.
pub async fn list_pages(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
    delimiter: Option<&str>,
    max_keys: usize,
) -> Result<Listing, ObjectError> {
    let mut out = Listing::default();
    let mut token: Option<String> = None;
    loop {
        let page = client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .set_delimiter(delimiter.map(str::to_string))
            .set_continuation_token(token.take())
            .send()
            .await
            .map_err(|e| ObjectError::Read {
                bucket: bucket.to_string(),
                key: prefix.to_string(),
                reason: s3_error(&e).0,
            })?;
        out.requests += 1;
        for o in page.contents() {
            if let Some(key) = o.key() {
                out.objects.push(ListedObject {
                    key: key.to_string(),
                    size: o.size().and_then(|s| u64::try_from(s).ok()).unwrap_or(0),
                });
            }
        }
        out.prefixes.extend(
            page.common_prefixes()
                .iter()
                .filter_map(|p| p.prefix().map(str::to_string)),
        );
        if out.objects.len() + out.prefixes.len() > max_keys {
            return Err(ObjectError::Read {
                bucket: bucket.to_string(),
                key: prefix.to_string(),
                reason: format!("more than {max_keys} objects under the prefix"),
            });
        }
        match page.next_continuation_token() {
            Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_string()),
            _ => break,
        }
    }
    Ok(out)
}

/// The bytes of object `key`, or of the byte range `range` of it (an HTTP `Range` value such
/// as `bytes=-65536` for the last 64 KiB, RFC 9110 §14.1.2).
///
/// # Errors
/// [`ObjectError::Read`] when the object cannot be read.
pub async fn get_object(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    range: Option<&str>,
) -> Result<Vec<u8>, ObjectError> {
    let read_err = |reason: String| ObjectError::Read {
        bucket: bucket.to_string(),
        key: key.to_string(),
        reason,
    };
    let resp = client
        .get_object()
        .bucket(bucket)
        .key(key)
        .set_range(range.map(str::to_string))
        .send()
        .await
        .map_err(|e| read_err(s3_error(&e).0))?;
    let body = resp
        .body
        .collect()
        .await
        .map_err(|e| read_err(e.to_string()))?;
    Ok(body.into_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_cover_the_body_exactly() {
        assert_eq!(part_ranges(10, 4), vec![0..4, 4..8, 8..10]);
        assert_eq!(part_ranges(8, 4), vec![0..4, 4..8]);
        assert_eq!(part_ranges(0, 4), Vec::<std::ops::Range<usize>>::new());
    }

    #[test]
    fn config_validation() {
        assert_eq!(S3Config::default().validate(), Ok(()));
        let small = S3Config {
            part_size_bytes: 1024,
            ..S3Config::default()
        };
        assert_eq!(
            small.validate().unwrap_err(),
            "part_size_bytes: must be between 5242880 (5 MiB) and 1073741824"
        );
    }
}
