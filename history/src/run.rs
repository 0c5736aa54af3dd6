//! One whole `aiops backtest`: the pass over the history, the label scores, the comparison
//! with the live run and the HTML report.

use crate::backtest::{BacktestInput, Figures, figures, label_score, run_pass, trace_plan};
use crate::compare::{LiveComparison, compare_live};
use crate::error::Result;
use crate::labels::{LabelScore, Labels};
use crate::location::write_atomically;
use crate::report;
use aiops_core::Finding;

/// One whole `aiops backtest`: a pass over the history, the label scores, the comparison with
/// the live `findings` table and the HTML report, as asked.
pub struct BacktestRequest<'a> {
    /// What the pass reads and runs.
    pub input: BacktestInput<'a>,
    /// Labelled windows to score the findings against.
    pub labels: Option<&'a Labels>,
    /// Compare with the live run's `findings` table of the same history.
    pub compare_live: bool,
    /// Write a self-contained HTML report here.
    pub report: Option<&'a std::path::Path>,
    /// Where the configuration came from, as the report names it.
    pub config_origin: &'a str,
    /// The statistics `finding_threshold` drawn in the report.
    pub threshold: f64,
}

/// What one whole backtest found.
pub struct BacktestOutcome {
    /// The findings, in the order detect returned them.
    pub findings: Vec<Finding>,
    /// The run's figures.
    pub figures: Figures,
    /// Scores against the labels, when labels were given.
    pub scores: Option<LabelScore>,
    /// The comparison with the live `findings` table, when asked.
    pub comparison: Option<LiveComparison>,
}

/// Runs a whole backtest (a second, tracing pass when a report is asked).
///
/// # Errors
/// When the history cannot be read, the configuration does not run, or the report cannot be
/// written.
pub fn run_backtest(req: &BacktestRequest<'_>) -> Result<BacktestOutcome> {
    let input = &req.input;
    let pass = run_pass(input, None)?;
    let figures = figures(&pass);
    let comparison = if req.compare_live {
        Some(compare_live(
            input.location,
            input.access,
            input.from,
            input.to,
            &pass.findings,
        )?)
    } else {
        None
    };
    let scores = label_score(req.labels, &pass.findings);
    if let Some(path) = req.report {
        let window_us = i64::try_from(input.statistics.window_secs)
            .unwrap_or(60)
            .saturating_mul(1_000_000);
        let (plotted, plan) = trace_plan(&pass.findings, window_us);
        // Second pass: the same run, tracing the plotted series.
        let traced = run_pass(input, Some(&plan))?;
        let html = report::render(&report::ReportInput {
            history: &input.location.to_string(),
            config: req.config_origin,
            findings: &pass.findings,
            plotted: &plotted,
            traces: &traced.traces,
            labels: req.labels,
            label_score: scores.as_ref(),
            figures: &figures,
            window_us,
            threshold: req.threshold,
            data_end: pass.last_event.unwrap_or(i64::MAX),
        });
        write_atomically(path, html.as_bytes())?;
    }
    Ok(BacktestOutcome {
        findings: pass.findings,
        figures,
        scores,
        comparison,
    })
}
