//! `aiops backtest` and `aiops learn`: arguments and printing; the work is `aiops_history`'s.

use crate::config_args::{ConfigArgs, load_config};
use aiops_history::{HistoryLocation, backtest, labels, learn, load_baselines, run, time_range};
use anyhow::Result;
use std::io::Write;
use std::path::PathBuf;

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
    /// history (in the same time range), by kind, series key and window start: findings only
    /// live, only in the backtest, and findings on both sides whose score or evidence differ
    /// (with the fields that differ).
    #[arg(long)]
    compare_live: bool,
    /// Print one JSON object (figures, label scores, findings) instead of text.
    #[arg(long)]
    json: bool,
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

/// A JSON value as short text for a comparison line: strings bare, anything else as JSON,
/// cut to 80 characters.
fn short_value(v: &serde_json::Value) -> String {
    let text = match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if text.chars().count() > 80 {
        let cut: String = text.chars().take(79).collect();
        format!("{cut}…")
    } else {
        text
    }
}

/// Prints the comparison with the live `findings` table: one `ONLY LIVE`, `ONLY BACKTEST` or
/// `DIFFERS` line per listed finding (`DIFFERS` with each differing field's live and backtest
/// values), then a summary line with the counts.
fn write_comparison(
    out: &mut impl Write,
    c: &aiops_history::compare::LiveComparison,
) -> std::io::Result<()> {
    for (label, list) in [
        ("ONLY LIVE    ", &c.only_live),
        ("ONLY BACKTEST", &c.only_backtest),
    ] {
        for f in list {
            writeln!(
                out,
                "{label} {} {:<13} {} score={:.2} finding {}",
                f.window_start_text,
                f.key.kind.as_str(),
                f.key.key,
                f.score,
                f.finding_id
            )?;
        }
    }
    for d in &c.differences {
        let fields: Vec<String> = d
            .fields
            .iter()
            .map(|f| {
                format!(
                    "{}: live {} backtest {}",
                    f.field,
                    short_value(&f.live),
                    short_value(&f.backtest)
                )
            })
            .collect();
        writeln!(
            out,
            "DIFFERS       {} {:<13} {} | {}",
            d.window_start_text,
            d.key.kind.as_str(),
            d.key.key,
            fields.join("; ")
        )?;
    }
    writeln!(
        out,
        "live findings table: {} findings ({} duplicate rows), backtest {}; matching {}, differing {}, only live {}, only backtest {}",
        c.live,
        c.live_duplicate_rows,
        c.backtest,
        c.matching,
        c.differing,
        c.only_live_count,
        c.only_backtest_count
    )
}

/// Runs `aiops backtest`.
///
/// # Errors
/// Invalid arguments or configuration, or history that cannot be read.
pub fn cmd_backtest(args: &BacktestArgs) -> Result<i32> {
    let (cfg, origin) = load_config(&args.config)?;
    let location = HistoryLocation::parse(&args.history)?;
    let (from, to) = time_range(args.from.as_deref(), args.to.as_deref())?;
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
    let access = cfg.aws_access();
    let req = run::BacktestRequest {
        input: backtest::BacktestInput {
            location: &location,
            access: &access,
            change_rules: &cfg.detect.change_rules,
            statistics: &cfg.detect.statistics,
            dedup: &cfg.ingest.dedup,
            from,
            to,
            baselines: baselines.as_ref(),
            quiet: args.json,
        },
        labels: labels.as_ref(),
        compare_live: args.compare_live,
        report: args.report.as_deref(),
        config_origin: &origin,
        threshold: cfg.detect.statistics.decision.finding_threshold,
    };
    let run::BacktestOutcome {
        findings,
        figures,
        scores,
        comparison,
    } = run::run_backtest(&req)?;
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
            "findings": findings,
        });
        writeln!(out, "{obj}")?;
        return Ok(0);
    }
    for f in &findings {
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
        write_comparison(&mut out, c)?;
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
    let (cfg, origin) = load_config(&args.config)?;
    let location = HistoryLocation::parse(&args.history)?;
    let (from, to) = time_range(args.from.as_deref(), args.to.as_deref())?;
    let access = cfg.aws_access();
    let result = learn::learn(
        &location,
        &access,
        &cfg.detect.statistics,
        &cfg.ingest.dedup,
        from,
        to,
        args.json,
    )?;
    let summary = learn::write(&result, &args.out, &access)?;
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
