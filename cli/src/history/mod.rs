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

use crate::ConfigArgs;
use aiops_detect::baseline::Baselines;
use aiops_detect::config::StatisticsConfig;
use anyhow::{Context, Result, bail};
use std::io::Write;
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

impl AwsAccess {
    /// The access a configuration names.
    pub fn of(cfg: &crate::config::PipelineConfig) -> AwsAccess {
        AwsAccess {
            region: cfg.aws.region.clone(),
            endpoint_url: cfg.aws.endpoint_url.clone(),
        }
    }
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

/// `aiops backtest` arguments.
#[derive(clap::Args)]
pub struct BacktestArgs {
    /// The history: a data directory (holding `raw/`) or `s3://bucket/prefix`.
    #[arg(long)]
    history: String,
    #[command(flatten)]
    config: ConfigArgs,
    /// Start of the event-time range (RFC 3339 or YYYY-MM-DD, UTC), inclusive.
    #[arg(long)]
    from: Option<String>,
    /// End of the event-time range, exclusive.
    #[arg(long)]
    to: Option<String>,
    /// Labelled windows: `{"series or resource key": [[start, end], ...]}`.
    #[arg(long)]
    labels: Option<PathBuf>,
    /// Write a self-contained HTML report here.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Start detect from learned baselines (a file, or `dynamodb://<patterns table>`).
    #[arg(long)]
    baselines: Option<String>,
    /// Compare with the findings the live run wrote to the `findings` table of the same
    /// history (in the same time range): which findings match, which only one side has.
    #[arg(long)]
    compare_live: bool,
    /// Print one JSON object (figures, label scores, findings) instead of text.
    #[arg(long)]
    json: bool,
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

/// `aiops learn` arguments.
#[derive(clap::Args)]
pub struct LearnArgs {
    /// The history: a data directory (holding `raw/`) or `s3://bucket/prefix`.
    #[arg(long)]
    history: String,
    /// Where the baselines go: a JSON file, or `dynamodb://<patterns table>`.
    #[arg(long)]
    out: String,
    #[command(flatten)]
    config: ConfigArgs,
    /// Start of the event-time range (RFC 3339 or YYYY-MM-DD, UTC), inclusive.
    #[arg(long)]
    from: Option<String>,
    /// End of the event-time range, exclusive.
    #[arg(long)]
    to: Option<String>,
    /// Print one JSON summary object.
    #[arg(long)]
    json: bool,
}

fn range(from: &Option<String>, to: &Option<String>) -> Result<(Option<i64>, Option<i64>)> {
    let from = from
        .as_deref()
        .map(|t| parse_time_arg("--from", t))
        .transpose()?;
    let to = to
        .as_deref()
        .map(|t| parse_time_arg("--to", t))
        .transpose()?;
    if let (Some(a), Some(b)) = (from, to)
        && b <= a
    {
        bail!("--to must be after --from");
    }
    Ok((from, to))
}

fn finding_line(f: &aiops_core::Finding) -> String {
    let what = f
        .evidence
        .series_key
        .clone()
        .or_else(|| f.resource.as_ref().map(aiops_core::ResourceKey::key))
        .unwrap_or_default();
    format!(
        "FINDING {} {:<26} {:<13} score={:.2} {} | {}",
        aiops_core::time::format_rfc3339_micros(f.event_time),
        f.detector,
        f.kind.as_str(),
        f.score,
        what,
        f.summary
    )
}

/// Runs `aiops backtest`.
///
/// # Errors
/// Invalid arguments or configuration, or history that cannot be read.
pub fn cmd_backtest(args: &BacktestArgs) -> Result<i32> {
    let (cfg, origin) = crate::load_config(&args.config)?;
    let location = HistoryLocation::parse(&args.history)?;
    let (from, to) = range(&args.from, &args.to)?;
    let labels = args
        .labels
        .as_deref()
        .map(labels::Labels::load)
        .transpose()?;
    let baselines = match &args.baselines {
        Some(spec) => load_baselines(
            spec,
            &cfg.detect.statistics,
            cfg.aws.region.as_deref(),
            cfg.aws.endpoint_url.as_deref(),
        )?,
        None => None,
    };
    let access = AwsAccess::of(&cfg);
    let input = backtest::BacktestInput {
        location: &location,
        access: &access,
        config: &cfg,
        from,
        to,
        baselines: baselines.as_ref(),
        quiet: args.json,
    };
    let pass = backtest::run_pass(&input, None)?;
    let figures = backtest::figures(&pass);
    let comparison = if args.compare_live {
        Some(compare_live(&location, &access, from, to, &pass.findings)?)
    } else {
        None
    };
    let scores = backtest::label_score(labels.as_ref(), &pass.findings);
    if let Some(path) = &args.report {
        let window_us = i64::try_from(cfg.detect.statistics.window_secs)
            .unwrap_or(60)
            .saturating_mul(1_000_000);
        let (plotted, plan) = backtest::trace_plan(&pass.findings, window_us);
        // Second pass: the same run, tracing the plotted series.
        let traced = backtest::run_pass(&input, Some(&plan))?;
        let html = report::render(&report::ReportInput {
            history: &location.to_string(),
            config: &origin,
            findings: &pass.findings,
            plotted: &plotted,
            traces: &traced.traces,
            labels: labels.as_ref(),
            label_score: scores.as_ref(),
            figures: &figures,
            window_us,
            threshold: cfg.detect.statistics.decision.finding_threshold,
            data_end: pass.last_event.unwrap_or(i64::MAX),
        });
        write_atomically(path, html.as_bytes())?;
    }
    let mut out = std::io::stdout().lock();
    if args.json {
        let obj = serde_json::json!({
            "kind": "backtest",
            "history": location.to_string(),
            "config": origin,
            "from": from.map(aiops_core::time::format_rfc3339_micros),
            "to": to.map(aiops_core::time::format_rfc3339_micros),
            "figures": figures,
            "labels": scores,
            "live_comparison": comparison,
            "baselines": args.baselines,
            "report": args.report,
            "findings": pass.findings,
        });
        writeln!(out, "{obj}")?;
        return Ok(0);
    }
    for f in &pass.findings {
        writeln!(out, "{}", finding_line(f))?;
    }
    writeln!(
        out,
        "backtest of {location}: {} events ({} duplicates dropped) from {} files, {} to {}; {} findings ({} change rules, {} statistical); {:.1} s, {:.0} events/s",
        figures.events,
        figures.duplicates,
        figures.files,
        figures.first_event.as_deref().unwrap_or("-"),
        figures.last_event.as_deref().unwrap_or("-"),
        figures.findings,
        figures.change_rule_findings,
        figures.statistical_findings,
        figures.elapsed_secs,
        figures.events_per_sec
    )?;
    if let Some(s) = &scores {
        let pct = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{:.3}", v));
        writeln!(
            out,
            "labels: precision {} recall {} F1 {} | windows {} detected {} missed {} | findings scored {} in windows {} outside {} unlabelled {} | delay mean {} s median {} s",
            pct(s.precision),
            pct(s.recall),
            pct(s.f1),
            s.windows,
            s.detected_windows,
            s.missed_windows,
            s.scored_findings,
            s.true_findings,
            s.false_findings,
            s.unlabelled_findings,
            s.mean_delay_secs.map_or("-".into(), |d| format!("{d:.0}")),
            s.median_delay_secs
                .map_or("-".into(), |d| format!("{d:.0}"))
        )?;
    }
    if let Some(c) = &comparison {
        writeln!(
            out,
            "live findings table: {} findings, backtest {}, matching {}, only live {}, only backtest {}",
            c.live,
            c.backtest,
            c.matching,
            c.live - c.matching,
            c.backtest - c.matching
        )?;
    }
    if let Some(p) = &args.report {
        writeln!(out, "report: {}", p.display())?;
    }
    Ok(0)
}

/// Runs `aiops learn`.
///
/// # Errors
/// Invalid arguments or configuration, history that cannot be read, or baselines that cannot
/// be written.
pub fn cmd_learn(args: &LearnArgs) -> Result<i32> {
    let (cfg, origin) = crate::load_config(&args.config)?;
    let location = HistoryLocation::parse(&args.history)?;
    let (from, to) = range(&args.from, &args.to)?;
    let result = learn::learn(&location, &cfg, from, to, args.json)?;
    let summary = learn::write(&result, &args.out, &cfg)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        let obj = serde_json::json!({
            "kind": "learn",
            "history": location.to_string(),
            "config": origin,
            "out": args.out,
            "summary": summary,
        });
        writeln!(out, "{obj}")?;
    } else {
        writeln!(
            out,
            "learned from {location}: {} events ({} to {}), {} series ({} count, {} value), {} log groups with {} templates, {} principal/API pairs; written to {} in {:.1} s",
            summary.events,
            summary.learned_from.as_deref().unwrap_or("-"),
            summary.learned_to.as_deref().unwrap_or("-"),
            summary.series,
            summary.count_series,
            summary.value_series,
            summary.log_groups,
            summary.templates,
            summary.pairs,
            args.out,
            summary.elapsed_secs
        )?;
    }
    Ok(0)
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
        assert!(range(&Some("2024-05-02".into()), &Some("2024-05-01".into())).is_err());
    }
}
