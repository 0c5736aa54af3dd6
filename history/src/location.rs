//! Where a history lives and how AWS is reached; times and files as the commands give them.

use crate::error::{Context, HistoryError, Result};
use std::path::{Path, PathBuf};

/// Where a history lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HistoryLocation {
    /// A local directory holding `raw/`, `findings/`, `incidents/`.
    Local(PathBuf),
    /// `s3://<bucket>/<prefix>`.
    S3 {
        /// Bucket.
        bucket: String,
        /// Key prefix without leading or trailing `/` (may be empty).
        prefix: String,
    },
}

impl HistoryLocation {
    /// Parses `s3://bucket[/prefix]` or a local path.
    ///
    /// # Errors
    /// An `s3://` URL without a bucket.
    pub fn parse(text: &str) -> Result<HistoryLocation> {
        if let Some(rest) = text.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(HistoryError::Invalid(format!(
                    "--history {text:?}: no bucket (expected s3://bucket/prefix)"
                )));
            }
            return Ok(HistoryLocation::S3 {
                bucket: bucket.to_string(),
                prefix: prefix.trim_matches('/').to_string(),
            });
        }
        Ok(HistoryLocation::Local(PathBuf::from(text)))
    }
}

impl std::fmt::Display for HistoryLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HistoryLocation::Local(p) => write!(f, "{}", p.display()),
            HistoryLocation::S3 { bucket, prefix } if prefix.is_empty() => {
                write!(f, "s3://{bucket}")
            }
            HistoryLocation::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

/// How S3 and DynamoDB are reached: the `[aws]` region and endpoint of the configuration
/// (both optional: the standard chain and `AWS_ENDPOINT_URL` apply otherwise).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AwsAccess {
    /// Region override.
    pub region: Option<String>,
    /// Endpoint override (a local emulator).
    pub endpoint_url: Option<String>,
}

/// Parses `--from` / `--to`: RFC 3339 (`2024-05-01T12:00:00Z`), `YYYY-MM-DD HH:MM:SS` (UTC),
/// or a date `YYYY-MM-DD` (its midnight, UTC); microseconds since the Unix epoch, UTC.
///
/// # Errors
/// When the text is none of these.
pub fn parse_time_arg(flag: &str, text: &str) -> Result<i64> {
    let full = if text.len() == 10 {
        format!("{text}T00:00:00Z")
    } else {
        text.to_string()
    };
    aiops_core::time::parse_timestamp_micros(&full)
        .with_context(|| format!("{flag} {text:?}: expected RFC 3339 or YYYY-MM-DD"))
}

/// Parses the `--from` / `--to` pair ([`parse_time_arg`]) into an event-time range `[from, to)`
/// in microseconds.
///
/// # Errors
/// When either does not parse, or `to` is not after `from`.
pub fn time_range(from: Option<&str>, to: Option<&str>) -> Result<(Option<i64>, Option<i64>)> {
    let from = from.map(|t| parse_time_arg("--from", t)).transpose()?;
    let to = to.map(|t| parse_time_arg("--to", t)).transpose()?;
    if let (Some(a), Some(b)) = (from, to)
        && b <= a
    {
        return Err(HistoryError::Invalid("--to must be after --from".into()));
    }
    Ok((from, to))
}

/// Writes `bytes` to `path` through a temporary file renamed into place.
///
/// # Errors
/// When the file cannot be written.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".to_string());
    let tmp = path.with_file_name(format!(".{name}.inprogress"));
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_and_times_parse() {
        assert_eq!(
            HistoryLocation::parse("s3://b/p/q/").unwrap(),
            HistoryLocation::S3 {
                bucket: "b".into(),
                prefix: "p/q".into()
            }
        );
        assert_eq!(
            HistoryLocation::parse("s3://b").unwrap().to_string(),
            "s3://b"
        );
        assert!(HistoryLocation::parse("s3:///x").is_err());
        assert_eq!(
            HistoryLocation::parse("data").unwrap(),
            HistoryLocation::Local(PathBuf::from("data"))
        );
        assert_eq!(
            parse_time_arg("--from", "2024-05-01").unwrap(),
            1_714_521_600_000_000
        );
        assert_eq!(
            parse_time_arg("--from", "2024-05-01T12:00:00Z").unwrap(),
            1_714_564_800_000_000
        );
        assert!(parse_time_arg("--from", "yesterday").is_err());
        assert!(time_range(Some("2024-05-02"), Some("2024-05-01")).is_err());
    }
}
