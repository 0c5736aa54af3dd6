//! History in Parquet for the people and jobs that use it (DESIGN §4, §7): `aiops backtest`
//! (try a detect configuration on history), `aiops learn` (baselines that detect loads at
//! start), and the `findings` / `incidents` tables written beside `raw`.
//!
//! `--history` names where the archive writes: the data directory in embedded mode
//! (`--data-dir`, holding `raw/`), or `s3://<bucket>/<prefix>` in aws mode (`[aws]
//! history_bucket` and `history_prefix`). S3 is read with the AWS SDK and the standard
//! credential chain; `AWS_ENDPOINT_URL` points it at an emulator.

pub mod backtest;
pub mod labels;
pub mod learn;
pub mod patterns;
pub mod reader;
pub mod report;
pub mod tables;

use aiops_detect::baseline::Baselines;
use aiops_detect::config::StatisticsConfig;
use anyhow::{Context, Result, bail};
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
                bail!("--history {text:?}: no bucket (expected s3://bucket/prefix)");
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

/// Progress bars on stderr.
pub mod progress {
    use indicatif::{ProgressBar, ProgressStyle};

    /// A bar over `total` units (rows), showing the rate and time remaining; hidden when
    /// `quiet` or when stderr is not a terminal.
    pub fn bar(total: u64, quiet: bool, unit: &str) -> ProgressBar {
        if quiet || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            return ProgressBar::hidden();
        }
        let pb = ProgressBar::new(total);
        let template = format!(
            "{{bar:40}} {{pos}}/{{len}} {unit} · {{per_sec}} · {{elapsed_precise}} elapsed · ETA {{eta}}"
        );
        pb.set_style(
            ProgressStyle::with_template(&template)
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        pb
    }
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

/// Loads learned baselines named by `spec`: a JSON file, or `dynamodb://<table>` (the
/// patterns table; `None` when nothing was learned yet). Validated against `cfg`.
///
/// # Errors
/// When they cannot be read or do not fit the configuration.
pub fn load_baselines(
    spec: &str,
    cfg: &StatisticsConfig,
    region: Option<&str>,
    endpoint: Option<&str>,
) -> Result<Option<Baselines>> {
    let b = if let Some(table) = spec.strip_prefix("dynamodb://") {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        let loaded = rt.block_on(async {
            let sdk = aiops_aws::sdk::load(region, endpoint).await;
            patterns::load(&aws_sdk_dynamodb::Client::new(&sdk), table).await
        })?;
        match loaded {
            Some(b) => b,
            None => return Ok(None),
        }
    } else {
        let bytes = std::fs::read(spec).with_context(|| format!("cannot read baselines {spec}"))?;
        Baselines::from_json(&bytes).with_context(|| format!("baselines {spec}"))?
    };
    b.validate(cfg)
        .with_context(|| format!("baselines {spec}"))?;
    Ok(Some(b))
}

/// How backtest findings compare with the live run's `findings` table.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LiveComparison {
    /// Findings in the live table (in the time range).
    pub live: usize,
    /// Findings of the backtest.
    pub backtest: usize,
    /// Findings on both sides.
    pub matching: usize,
    /// Ids of findings only the live run made (at most 100).
    pub only_live: Vec<String>,
    /// Ids of findings only the backtest made (at most 100).
    pub only_backtest: Vec<String>,
}

/// What identifies a finding for the comparison: everything detect decides (id, kind,
/// detector, event time, resource, score, window, observed and expected values, evidence
/// ids), not the wall-clock `detected_at`.
fn finding_identity(f: &aiops_core::Finding) -> String {
    let mut f = f.clone();
    f.detected_at = 0;
    serde_json::to_string(&f).unwrap_or_default()
}

/// Compares `findings` with the `findings` table at `location` within `[from, to)` (by the
/// findings' event time).
///
/// # Errors
/// When the table cannot be read.
pub fn compare_live(
    location: &HistoryLocation,
    access: &AwsAccess,
    from: Option<i64>,
    to: Option<i64>,
    findings: &[aiops_core::Finding],
) -> Result<LiveComparison> {
    use std::collections::BTreeMap;
    let mut live: BTreeMap<String, String> = BTreeMap::new();
    reader::for_each_batch(location, access, "findings", |batch| {
        for f in aiops_ingest::archive::decode_findings_batch(batch)? {
            if from.is_some_and(|a| f.event_time < a) || to.is_some_and(|b| f.event_time >= b) {
                continue;
            }
            live.insert(finding_identity(&f), f.finding_id.clone());
        }
        Ok(())
    })?;
    let ours: BTreeMap<String, String> = findings
        .iter()
        .map(|f| (finding_identity(f), f.finding_id.clone()))
        .collect();
    let matching = ours.keys().filter(|k| live.contains_key(*k)).count();
    Ok(LiveComparison {
        live: live.len(),
        backtest: ours.len(),
        matching,
        only_live: live
            .iter()
            .filter(|(k, _)| !ours.contains_key(*k))
            .map(|(_, id)| id.clone())
            .take(100)
            .collect(),
        only_backtest: ours
            .iter()
            .filter(|(k, _)| !live.contains_key(*k))
            .map(|(_, id)| id.clone())
            .take(100)
            .collect(),
    })
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
        bail!("--to must be after --from");
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
