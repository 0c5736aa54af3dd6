//! `aiops backtest`: the live detect code (change rules, then the statistics engine, event by
//! event, exactly as the detect stage calls them) over the `raw` history in event-time order.

use super::labels::{LabelScore, Labels, score};
use super::reader::RawMerge;
use crate::error::{Context, Result};
use crate::location::{AwsAccess, HistoryLocation};
use crate::progress;
use aiops_core::{Finding, FindingKind};
use aiops_detect::baseline::Baselines;
use aiops_detect::config::StatisticsConfig;
use aiops_detect::engine::{EngineCounters, StatsEngine, WindowTrace};
use aiops_detect::rules::ChangeRules;
use aiops_detect::rules::ChangeRulesConfig;
use aiops_ingest::dedup::DedupConfig;
use aiops_ingest::dedup::Deduplicator;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

/// Windows of context drawn before a finding in the report.
pub const PLOT_BEFORE: i64 = 90;
/// Windows of context drawn after a finding in the report.
pub const PLOT_AFTER: i64 = 30;
/// Most findings plotted in one report (the findings table lists them all).
pub const MAX_PLOTS: usize = 200;

/// What one backtest needs.
pub struct BacktestInput<'a> {
    /// Where the history is.
    pub location: &'a HistoryLocation,
    /// How S3 is reached.
    pub access: &'a AwsAccess,
    /// The change rules tried (`[detect.change_rules]`).
    pub change_rules: &'a ChangeRulesConfig,
    /// The statistics tried (`[detect.statistics]`).
    pub statistics: &'a StatisticsConfig,
    /// De-duplication as the live detect stage does it (`[ingest.dedup]`).
    pub dedup: &'a DedupConfig,
    /// Event-time range `[from, to)`, microseconds; `None` is unbounded.
    pub from: Option<i64>,
    /// End of the range (exclusive).
    pub to: Option<i64>,
    /// Learned baselines the engine starts from, if any.
    pub baselines: Option<&'a Baselines>,
    /// Hide the progress bar.
    pub quiet: bool,
}

/// The outcome of one pass over the history.
#[derive(Debug, Default)]
pub struct PassResult {
    /// Findings in the order the detect code returned them.
    pub findings: Vec<Finding>,
    /// Window traces of the traced series (second pass only), by series key, in time order.
    pub traces: BTreeMap<String, Vec<WindowTrace>>,
    /// Rows read from the files.
    pub rows_read: u64,
    /// Events given to detect (after the time range and de-duplication).
    pub events: u64,
    /// Events dropped as duplicates (same event id within the de-duplication window).
    pub duplicates: u64,
    /// Files read.
    pub files: usize,
    /// Largest number of rows the merge held at once.
    pub peak_buffered_rows: usize,
    /// Event time of the first and last event, µs.
    pub first_event: Option<i64>,
    /// Event time of the last event, µs.
    pub last_event: Option<i64>,
    /// Engine counters at the end.
    pub engine: EngineCounters,
    /// Wall-clock seconds of the pass.
    pub elapsed_secs: f64,
}

/// Which windows of which series to trace: per series key, the `[from, to)` ranges (µs).
pub type TracePlan = HashMap<String, Vec<(i64, i64)>>;

/// The series a finding is drawn with: its own series, or for a change rule the
/// principal/API call series of the call (`api_call:<principal>:<source>:<name>`).
pub fn plot_key(f: &Finding) -> Option<String> {
    if let Some(k) = &f.evidence.series_key {
        return Some(k.clone());
    }
    match (
        &f.evidence.principal,
        &f.evidence.event_source,
        &f.evidence.event_name,
    ) {
        (Some(p), Some(s), Some(n)) => Some(format!("api_call:{p}:{s}:{n}")),
        _ => None,
    }
}

/// The trace plan of a report: for the first [`MAX_PLOTS`] findings (by score, then time),
/// [`PLOT_BEFORE`] windows before to [`PLOT_AFTER`] windows after each.
pub fn trace_plan(findings: &[Finding], window_us: i64) -> (Vec<usize>, TracePlan) {
    let mut order: Vec<usize> = (0..findings.len()).collect();
    order.sort_by(|&a, &b| {
        let (fa, fb) = (&findings[a], &findings[b]);
        fb.score
            .total_cmp(&fa.score)
            .then(fa.event_time.cmp(&fb.event_time))
    });
    order.truncate(MAX_PLOTS);
    order.sort_by_key(|&i| (findings[i].event_time, i));
    let mut plan: TracePlan = HashMap::new();
    for &i in &order {
        let f = &findings[i];
        if let Some(k) = plot_key(f) {
            let at = f.evidence.window.map_or(f.event_time, |w| w.0);
            plan.entry(k)
                .or_default()
                .push((at - PLOT_BEFORE * window_us, at + PLOT_AFTER * window_us));
        }
    }
    (order, plan)
}

/// Runs the detect code over the history once; with a `plan`, also keeps the traces of the
/// planned series and windows.
///
/// # Errors
/// When the history cannot be read, the change rules are invalid, or the baselines do not fit
/// the configuration.
pub fn run_pass(input: &BacktestInput<'_>, plan: Option<&TracePlan>) -> Result<PassResult> {
    let started = Instant::now();
    let rules = ChangeRules::new(input.change_rules)?;
    let mut stats = match input.baselines {
        Some(b) => StatsEngine::with_baselines(input.statistics.clone(), b.clone())
            .context("learned baselines")?,
        None => StatsEngine::new(input.statistics.clone()),
    };
    if let Some(p) = plan {
        stats.trace_series(p.keys().cloned());
    }
    let mut dedup = Deduplicator::new(input.dedup)?;
    let mut merge = RawMerge::open(input.location, input.access, input.from, input.to)?;
    let pb = progress::bar(merge.total_rows(), input.quiet, "rows");
    let mut out = PassResult {
        files: merge.files(),
        ..PassResult::default()
    };
    let keep_traces = |traces: Vec<WindowTrace>, out: &mut PassResult| {
        let Some(p) = plan else { return };
        for t in traces {
            let wanted = p.get(&t.key).is_some_and(|r| {
                r.iter()
                    .any(|&(a, b)| t.window_start >= a && t.window_start < b)
            });
            if wanted {
                out.traces.entry(t.key.clone()).or_default().push(t);
            }
        }
    };
    let mut n = 0u64;
    while let Some(event) = merge.next_event()? {
        n += 1;
        if n.is_multiple_of(4096) {
            pb.set_position(merge.rows_read);
        }
        if dedup.is_duplicate(&event.event_id, event.event_time) {
            out.duplicates += 1;
            continue;
        }
        out.events += 1;
        out.first_event.get_or_insert(event.event_time);
        out.last_event = Some(event.event_time);
        let (_, findings) = rules.evaluate(&event);
        out.findings.extend(findings);
        out.findings.extend(stats.observe(&event));
        if plan.is_some() {
            let t = stats.take_traces();
            keep_traces(t, &mut out);
        }
    }
    out.findings.extend(stats.flush());
    let t = stats.take_traces();
    keep_traces(t, &mut out);
    pb.finish_and_clear();
    out.rows_read = merge.rows_read;
    out.peak_buffered_rows = merge.peak_buffered;
    out.engine = stats.counters();
    out.elapsed_secs = started.elapsed().as_secs_f64();
    Ok(out)
}

/// Findings counted by detector and kind.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DetectorCount {
    /// Detector (rule or statistical detector) name.
    pub detector: String,
    /// Finding kind.
    pub kind: String,
    /// Findings.
    pub findings: usize,
}

/// The figures of a backtest (the `--json` object without the findings).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figures {
    /// Files read.
    pub files: usize,
    /// Rows read.
    pub rows: u64,
    /// Events given to detect.
    pub events: u64,
    /// Duplicate events dropped.
    pub duplicates: u64,
    /// Findings.
    pub findings: usize,
    /// Of which change-rule findings.
    pub change_rule_findings: usize,
    /// Of which statistical findings (rate, value, novelty).
    pub statistical_findings: usize,
    /// Event time of the first event (RFC 3339), if any.
    pub first_event: Option<String>,
    /// Event time of the last event (RFC 3339), if any.
    pub last_event: Option<String>,
    /// Events that arrived after their window had closed.
    pub late_events: u64,
    /// Series tracked at the end.
    pub series: u64,
    /// Series seeded from learned baselines.
    pub series_seeded: u64,
    /// Windows closed.
    pub windows_closed: u64,
    /// Largest number of rows held by the merge at once.
    pub peak_buffered_rows: usize,
    /// Wall-clock seconds.
    pub elapsed_secs: f64,
    /// Events per second of wall-clock time.
    pub events_per_sec: f64,
    /// Findings per detector.
    pub by_detector: Vec<DetectorCount>,
}

/// The figures of a pass.
pub fn figures(r: &PassResult) -> Figures {
    let mut by: BTreeMap<(String, String), usize> = BTreeMap::new();
    for f in &r.findings {
        *by.entry((f.detector.clone(), f.kind.as_str().to_string()))
            .or_default() += 1;
    }
    let change = r
        .findings
        .iter()
        .filter(|f| f.kind == FindingKind::ChangeRule)
        .count();
    Figures {
        files: r.files,
        rows: r.rows_read,
        events: r.events,
        duplicates: r.duplicates,
        findings: r.findings.len(),
        change_rule_findings: change,
        statistical_findings: r.findings.len() - change,
        first_event: r.first_event.map(aiops_core::time::format_rfc3339_micros),
        last_event: r.last_event.map(aiops_core::time::format_rfc3339_micros),
        late_events: r.engine.late_events,
        series: r.engine.series_tracked,
        series_seeded: r.engine.series_seeded,
        windows_closed: r.engine.windows_closed,
        peak_buffered_rows: r.peak_buffered_rows,
        elapsed_secs: r.elapsed_secs,
        events_per_sec: r.events as f64 / r.elapsed_secs.max(1e-9),
        by_detector: by
            .into_iter()
            .map(|((detector, kind), findings)| DetectorCount {
                detector,
                kind,
                findings,
            })
            .collect(),
    }
}

/// Scores findings against labels, when given.
pub fn label_score(labels: Option<&Labels>, findings: &[Finding]) -> Option<LabelScore> {
    labels.map(|l| score(l, findings))
}
