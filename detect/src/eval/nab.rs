//! The Numenta Anomaly Benchmark (NAB): corpus loading, the streaming run of the value detector,
//! results files, and a re-implementation of NAB's scorer.
//!
//! Sources: Lavin & Ahmad, "Evaluating Real-time Anomaly Detection Algorithms – the Numenta
//! Anomaly Benchmark", IEEE ICMLA 2015 (<https://arxiv.org/abs/1510.03336>), and the scoring
//! rules summarised in `data/nab/README.md`:
//!
//! - the first `min(floor(0.15 N), 750)` rows of a series (the probationary period) are not
//!   scored;
//! - a row is a detection when its anomaly score is `>= threshold`; one threshold per profile,
//!   chosen by sweeping every distinct score over the whole corpus and keeping the best total;
//! - scaled sigmoid `σ(y) = 2 / (1 + e^(5y)) − 1`, and `−1` for `y > 3`;
//! - inside a window `[L, R]` of `W` rows, a detection at row `i` is worth
//!   `σ(−(R − i + 1) / W) · A_TP / σ(−1)`; a window counts only its best (earliest) detection,
//!   and a window without one costs `−A_FN`;
//! - outside windows, a detection at row `i` is worth `A_FP · σ(|R' − i| / (W' − 1))` where
//!   `R'`, `W'` belong to the previous window, or `−A_FP` before the first window;
//! - normalised score `100 (S − S_null) / (S_perfect − S_null)` with
//!   `S_perfect = windows · A_TP` and `S_null = −A_FN · windows`.

use crate::config::DecisionConfig;
use crate::decision::Decision;
use crate::value::{ValueConfig, ValueDetector};
use rayon::prelude::*;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Errors from loading or writing a NAB corpus.
#[derive(Debug, Error)]
pub enum NabError {
    /// A file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The path concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The labels file is not the expected JSON object.
    #[error("labels file {path}: {message}")]
    Labels {
        /// The labels file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A data row could not be parsed.
    #[error("{path} line {line}: {message}")]
    Row {
        /// The data file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// No series were found under the data directory.
    #[error("no NAB series (*.csv) found under {0}")]
    Empty(PathBuf),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> NabError + '_ {
    move |source| NabError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One NAB series with its labelled anomaly windows.
#[derive(Debug, Clone, PartialEq)]
pub struct NabSeries {
    /// Path relative to the data directory, with `/` separators, e.g.
    /// `realKnownCause/nyc_taxi.csv` (the key used by the labels file).
    pub name: String,
    /// The timestamps as written in the file (`YYYY-MM-DD HH:MM:SS`).
    pub timestamp_text: Vec<String>,
    /// Timestamps: microseconds since the Unix epoch, UTC.
    pub timestamps: Vec<i64>,
    /// The values.
    pub values: Vec<f64>,
    /// Labelled anomaly windows `(start, end)`, inclusive, microseconds since the epoch, UTC.
    pub windows: Vec<(i64, i64)>,
}

impl NabSeries {
    /// The category (first path component), e.g. `realKnownCause`.
    pub fn category(&self) -> &str {
        self.name.split('/').next().unwrap_or("")
    }

    /// The file name (last path component), e.g. `nyc_taxi.csv`.
    pub fn file_name(&self) -> &str {
        self.name.rsplit('/').next().unwrap_or(&self.name)
    }
}

/// A NAB cost profile: the weights of a true positive, a false negative (missed window) and a
/// false positive.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CostProfile {
    /// Profile name as in NAB's `config/profiles.json`.
    pub name: &'static str,
    /// `A_TP`.
    pub tp_weight: f64,
    /// `A_FN`.
    pub fn_weight: f64,
    /// `A_FP`.
    pub fp_weight: f64,
}

/// NAB's three profiles (NAB `config/profiles.json`).
pub const PROFILES: [CostProfile; 3] = [
    CostProfile {
        name: "standard",
        tp_weight: 1.0,
        fn_weight: 1.0,
        fp_weight: 0.11,
    },
    CostProfile {
        name: "reward_low_FP_rate",
        tp_weight: 1.0,
        fn_weight: 1.0,
        fp_weight: 0.22,
    },
    CostProfile {
        name: "reward_low_FN_rate",
        tp_weight: 1.0,
        fn_weight: 2.0,
        fp_weight: 0.11,
    },
];

/// Loads every `*.csv` under `data_dir/<category>/` (sorted by name) with its windows from
/// `labels` (NAB's `combined_windows.json`: series path -> list of `[start, end]` timestamps).
/// A series absent from the labels file has no windows.
///
/// # Errors
/// [`NabError`] when a file cannot be read, a row or label cannot be parsed, or no series is
/// found.
pub fn load_corpus(data_dir: &Path, labels: &Path) -> Result<Vec<NabSeries>, NabError> {
    let windows = load_windows(labels)?;
    let mut files: Vec<(String, PathBuf)> = Vec::new();
    let mut cats: Vec<PathBuf> = std::fs::read_dir(data_dir)
        .map_err(io_err(data_dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    cats.sort();
    for cat in cats {
        let cat_name = cat
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut entries: Vec<PathBuf> = std::fs::read_dir(&cat)
            .map_err(io_err(&cat))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "csv"))
            .collect();
        entries.sort();
        for f in entries {
            let fname = f
                .file_name()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            files.push((format!("{cat_name}/{fname}"), f));
        }
    }
    if files.is_empty() {
        return Err(NabError::Empty(data_dir.to_path_buf()));
    }
    files
        .into_iter()
        .map(|(name, path)| {
            let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
            let w = windows.get(&name).cloned().unwrap_or_default();
            parse_series(&name, &path, &text, w)
        })
        .collect()
}

/// Parses NAB's `combined_windows.json`.
///
/// # Errors
/// [`NabError::Io`] or [`NabError::Labels`].
pub fn load_windows(labels: &Path) -> Result<BTreeMap<String, Vec<(i64, i64)>>, NabError> {
    let text = std::fs::read_to_string(labels).map_err(io_err(labels))?;
    parse_windows(&text).map_err(|message| NabError::Labels {
        path: labels.to_path_buf(),
        message,
    })
}

/// Parses the text of a `combined_windows.json` file: an object mapping series path to a list
/// of `[start, end]` timestamp strings.
///
/// # Errors
/// A message naming the offending entry.
pub fn parse_windows(text: &str) -> Result<BTreeMap<String, Vec<(i64, i64)>>, String> {
    let raw: BTreeMap<String, Vec<Vec<String>>> =
        serde_json::from_str(text).map_err(|e| e.to_string())?;
    let mut out = BTreeMap::new();
    for (name, wins) in raw {
        let mut parsed = Vec::with_capacity(wins.len());
        for w in wins {
            let (Some(a), Some(b)) = (w.first(), w.get(1)) else {
                return Err(format!("{name}: a window must be [start, end]"));
            };
            let a =
                aiops_core::time::parse_timestamp_micros(a).map_err(|e| format!("{name}: {e}"))?;
            let b =
                aiops_core::time::parse_timestamp_micros(b).map_err(|e| format!("{name}: {e}"))?;
            parsed.push((a, b));
        }
        parsed.sort_unstable();
        out.insert(name, parsed);
    }
    Ok(out)
}

/// Parses one NAB data file (`timestamp,value` with a header line).
///
/// # Errors
/// [`NabError::Row`] naming the line.
pub fn parse_series(
    name: &str,
    path: &Path,
    text: &str,
    windows: Vec<(i64, i64)>,
) -> Result<NabSeries, NabError> {
    let mut s = NabSeries {
        name: name.to_string(),
        timestamp_text: Vec::new(),
        timestamps: Vec::new(),
        values: Vec::new(),
        windows,
    };
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if i == 0 || line.is_empty() {
            continue;
        }
        let row_err = |message: String| NabError::Row {
            path: path.to_path_buf(),
            line: i + 1,
            message,
        };
        let (ts, val) = line
            .split_once(',')
            .ok_or_else(|| row_err("expected timestamp,value".into()))?;
        let t = aiops_core::time::parse_timestamp_micros(ts).map_err(|e| row_err(e.to_string()))?;
        let v: f64 = val
            .trim()
            .parse()
            .map_err(|e: std::num::ParseFloatError| row_err(e.to_string()))?;
        s.timestamp_text.push(ts.to_string());
        s.timestamps.push(t);
        s.values.push(v);
    }
    Ok(s)
}

/// The detector configuration used for NAB: the engine's value detector and decision, with
/// parameters for NAB's row-per-observation series.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NabConfig {
    /// The value detector (the same code the engine runs for metric series).
    pub value: ValueConfig,
    /// The decision (threshold and cooldown) applied to its scores.
    pub decision: DecisionConfig,
}

impl Default for NabConfig {
    /// The preset used by `aiops eval nab`: a longer history (4000 rows) and calibration
    /// (8000 values per measure) than the engine default, since a NAB series is up to 22 000
    /// rows of one metric, and return period scoring per hour (`return_period_secs` 3600, see
    /// [`crate::value`]: NAB's series are sampled every 5 minutes to every hour) and the weekly
    /// seasonal profile (`weekly`; some series span months of weekday traffic); every other
    /// value setting (measures, seasonal expectation, CUSUM, suppression of 100 rows) is the
    /// engine default, so `cli/tests/history.rs`'s engine configuration reproduces it. Findings
    /// at score 0.2 (an event expected about once in 100 hours at the series' sampling rate)
    /// with a cooldown of 100 rows. One configuration for every series: nothing depends on the
    /// file.
    fn default() -> Self {
        NabConfig {
            value: ValueConfig {
                history: 4000,
                calibration: 8000,
                return_period_secs: 3600.0,
                weekly: true,
                ..ValueConfig::default()
            },
            decision: DecisionConfig {
                finding_threshold: 0.2,
                cooldown: 100,
            },
        }
    }
}

/// Runs the streaming value detector and the decision over one series, row by row: the score
/// of row `i` is computed from rows `0..=i` only. Returns one score in `[0, 1]` per row (0
/// when the detector suppresses it, see [`ValueConfig::suppress`], and during a cooldown
/// after a finding).
pub fn detect_series(series: &NabSeries, config: &NabConfig) -> Vec<f64> {
    let mut det = ValueDetector::new(&config.value);
    let mut decision = Decision::new();
    series
        .timestamps
        .iter()
        .zip(&series.values)
        .map(|(&t, &v)| {
            let s = det.observe(t, v);
            decision.decide(s.score, &config.decision).reported
        })
        .collect()
}

/// NAB's scaled sigmoid: `2 / (1 + e^(5y)) − 1`, and `−1` when `y > 3`.
pub fn scaled_sigmoid(y: f64) -> f64 {
    if y > 3.0 {
        -1.0
    } else {
        2.0 / (1.0 + (5.0 * y).exp()) - 1.0
    }
}

/// The length of NAB's probationary period for a series of `n` rows:
/// `min(floor(0.15 n), 750)`.
pub fn probationary_rows(n: usize) -> usize {
    ((n as f64 * 0.15).floor() as usize).min(750)
}

/// How a detection at a row would count, before profile weights.
#[derive(Debug, Clone, Copy, PartialEq)]
enum RowRole {
    /// In the probationary period: never scored.
    Probation,
    /// Inside window `window`; a detection is worth `value · A_TP` (value in (0, 1]).
    InWindow { window: usize, value: f64 },
    /// Outside windows; a detection is worth `value · A_FP` (value in [−1, 0]).
    Outside { value: f64 },
}

/// The labelled rows of one series, ready to score.
#[derive(Debug, Clone)]
struct Labelled {
    roles: Vec<RowRole>,
    /// Number of windows with at least one scorable row.
    windows: usize,
    /// Per window: whether it has a scorable row.
    window_scorable: Vec<bool>,
}

/// Row indices `[L, R]` of each window (first row at or after the start, last row at or before
/// the end); windows without rows are dropped.
fn window_rows(timestamps: &[i64], windows: &[(i64, i64)]) -> Vec<(usize, usize)> {
    windows
        .iter()
        .filter_map(|&(a, b)| {
            let l = timestamps.partition_point(|&t| t < a);
            let r_excl = timestamps.partition_point(|&t| t <= b);
            (r_excl > l).then(|| (l, r_excl - 1))
        })
        .collect()
}

fn label_rows(timestamps: &[i64], windows: &[(i64, i64)]) -> Labelled {
    let n = timestamps.len();
    let prob = probationary_rows(n);
    let wins = window_rows(timestamps, windows);
    let max_tp = scaled_sigmoid(-1.0);
    let mut roles = Vec::with_capacity(n);
    let mut window_scorable = vec![false; wins.len()];
    let mut next = 0usize; // index of the next window not yet passed
    let mut prev: Option<(usize, usize)> = None;
    for i in 0..n {
        while let Some(&(_, r)) = wins.get(next) {
            if i > r {
                prev = wins.get(next).copied();
                next += 1;
            } else {
                break;
            }
        }
        let role = match wins.get(next) {
            Some(&(l, r)) if i >= l && i <= r => {
                let w = (r - l + 1) as f64;
                let pos = -((r - i + 1) as f64) / w;
                RowRole::InWindow {
                    window: next,
                    value: scaled_sigmoid(pos) / max_tp,
                }
            }
            _ => match prev {
                Some((l, r)) => {
                    let w = (r - l + 1) as f64;
                    let denom = (w - 1.0).max(1.0);
                    RowRole::Outside {
                        value: scaled_sigmoid((i.abs_diff(r) as f64) / denom),
                    }
                }
                None => RowRole::Outside { value: -1.0 },
            },
        };
        if i < prob {
            roles.push(RowRole::Probation);
        } else {
            if let RowRole::InWindow { window, .. } = role
                && let Some(s) = window_scorable.get_mut(window)
            {
                *s = true;
            }
            roles.push(role);
        }
    }
    let windows = window_scorable.iter().filter(|s| **s).count();
    Labelled {
        roles,
        windows,
        window_scorable,
    }
}

/// Per-series outcome at the chosen threshold of one profile.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileOutcome {
    /// Raw (unnormalised) NAB score of this series.
    pub score: f64,
    /// Windows detected.
    pub tp: usize,
    /// Detections outside windows (rows).
    pub fp: usize,
    /// Windows missed.
    pub fn_: usize,
}

/// The result of one profile over a corpus.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProfileResult {
    /// Profile name.
    pub profile: String,
    /// The chosen threshold (a detection is `score >= threshold`); `None` when the best
    /// choice is to never fire.
    pub threshold: Option<f64>,
    /// Raw total score `S`.
    pub raw_score: f64,
    /// `S_null = −A_FN · windows`.
    pub null_score: f64,
    /// `S_perfect = A_TP · windows`.
    pub perfect_score: f64,
    /// Normalised score `100 (S − S_null) / (S_perfect − S_null)` (0 when the corpus has no
    /// windows).
    pub normalized: f64,
    /// Per-series outcome, in corpus order.
    pub files: Vec<FileOutcome>,
}

/// One series' scores, for [`score_corpus`].
#[derive(Debug, Clone, Copy)]
pub struct ScoredSeries<'a> {
    /// Row timestamps, microseconds since the epoch, UTC, non-decreasing.
    pub timestamps: &'a [i64],
    /// Labelled windows, inclusive, microseconds.
    pub windows: &'a [(i64, i64)],
    /// Anomaly score per row, in `[0, 1]` (non-finite scores count as 0).
    pub scores: &'a [f64],
}

/// Scores a corpus under one profile with NAB's threshold sweep: every distinct positive score
/// of every scorable row is tried as the threshold and the best corpus total is kept (ties go
/// to the highest threshold, i.e. the fewest detections). A score of 0 is never a detection.
pub fn score_corpus(series: &[ScoredSeries<'_>], profile: &CostProfile) -> ProfileResult {
    let labelled: Vec<Labelled> = series
        .iter()
        .map(|s| label_rows(s.timestamps, s.windows))
        .collect();
    let total_windows: usize = labelled.iter().map(|l| l.windows).sum();
    let null_score = -profile.fn_weight * total_windows as f64;
    let perfect_score = profile.tp_weight * total_windows as f64;

    // Every scorable row: (score, series, row).
    let mut rows: Vec<(f64, usize, usize)> = Vec::new();
    for (si, (s, l)) in series.iter().zip(&labelled).enumerate() {
        for (ri, role) in l.roles.iter().enumerate() {
            if !matches!(role, RowRole::Probation) {
                let sc = s.scores.get(ri).copied().unwrap_or(0.0);
                let sc = if sc.is_finite() { sc } else { 0.0 };
                rows.push((sc, si, ri));
            }
        }
    }
    rows.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));

    // Best window value so far, per series and window (None = not detected yet).
    let mut best: Vec<Vec<Option<f64>>> = labelled
        .iter()
        .map(|l| vec![None; l.window_scorable.len()])
        .collect();
    let mut total = null_score;
    let mut best_total = null_score;
    let mut best_threshold: Option<f64> = None;
    let mut i = 0;
    while i < rows.len() {
        let th = rows.get(i).map_or(0.0, |r| r.0);
        if th <= 0.0 {
            // A score of 0 is never a detection, so a detector that never fires scores exactly
            // the null score.
            break;
        }
        while let Some(&(sc, si, ri)) = rows.get(i) {
            if sc != th {
                break;
            }
            match labelled.get(si).and_then(|l| l.roles.get(ri)) {
                Some(RowRole::InWindow { window, value }) => {
                    if let Some(slot) = best.get_mut(si).and_then(|b| b.get_mut(*window)) {
                        let v = value * profile.tp_weight;
                        match slot {
                            None => {
                                total += v + profile.fn_weight;
                                *slot = Some(v);
                            }
                            Some(old) if v > *old => {
                                total += v - *old;
                                *slot = Some(v);
                            }
                            Some(_) => {}
                        }
                    }
                }
                Some(RowRole::Outside { value }) => total += value * profile.fp_weight,
                _ => {}
            }
            i += 1;
        }
        if total > best_total + 1e-12 {
            best_total = total;
            best_threshold = Some(th);
        }
    }

    let files: Vec<FileOutcome> = series
        .iter()
        .zip(&labelled)
        .map(|(s, l)| file_outcome(s, l, best_threshold, profile))
        .collect();
    let raw: f64 = files.iter().map(|f| f.score).sum();
    let normalized = if perfect_score > null_score {
        100.0 * (raw - null_score) / (perfect_score - null_score)
    } else {
        0.0
    };
    ProfileResult {
        profile: profile.name.to_string(),
        threshold: best_threshold,
        raw_score: raw,
        null_score,
        perfect_score,
        normalized,
        files,
    }
}

fn file_outcome(
    s: &ScoredSeries<'_>,
    l: &Labelled,
    threshold: Option<f64>,
    profile: &CostProfile,
) -> FileOutcome {
    let mut best: Vec<Option<f64>> = vec![None; l.window_scorable.len()];
    let mut fp = 0usize;
    let mut fp_sum = 0.0;
    if let Some(th) = threshold {
        for (ri, role) in l.roles.iter().enumerate() {
            let sc = s.scores.get(ri).copied().unwrap_or(0.0);
            let sc = if sc.is_finite() { sc } else { 0.0 };
            if sc < th || sc <= 0.0 {
                continue;
            }
            match role {
                RowRole::InWindow { window, value } => {
                    if let Some(slot) = best.get_mut(*window) {
                        let v = value * profile.tp_weight;
                        if slot.is_none_or(|o| v > o) {
                            *slot = Some(v);
                        }
                    }
                }
                RowRole::Outside { value } => {
                    fp += 1;
                    fp_sum += value * profile.fp_weight;
                }
                RowRole::Probation => {}
            }
        }
    }
    let mut tp = 0;
    let mut fn_ = 0;
    let mut score = fp_sum;
    for (b, scorable) in best.iter().zip(&l.window_scorable) {
        if !scorable {
            continue;
        }
        match b {
            Some(v) => {
                tp += 1;
                score += v;
            }
            None => {
                fn_ += 1;
                score -= profile.fn_weight;
            }
        }
    }
    FileOutcome { score, tp, fp, fn_ }
}

/// Per-series detail in a NAB report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NabFileReport {
    /// Series path, e.g. `realKnownCause/nyc_taxi.csv`.
    pub file: String,
    /// Rows in the series.
    pub rows: usize,
    /// Labelled windows.
    pub windows: usize,
    /// Outcome under each profile at that profile's corpus threshold, keyed by profile name.
    pub profiles: BTreeMap<String, FileOutcome>,
}

/// A full NAB report: the normalised score of each profile plus per-series detail.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NabReport {
    /// Normalised score, standard profile.
    pub standard: f64,
    /// Normalised score, reward_low_FP_rate profile.
    #[serde(rename = "reward_low_FP_rate")]
    pub reward_low_fp_rate: f64,
    /// Normalised score, reward_low_FN_rate profile.
    #[serde(rename = "reward_low_FN_rate")]
    pub reward_low_fn_rate: f64,
    /// The chosen threshold per profile (`null` when never firing is best).
    pub thresholds: BTreeMap<String, Option<f64>>,
    /// Per-series detail, in corpus order.
    pub files: Vec<NabFileReport>,
}

/// Scores already-computed detector outputs (`scores[i]` belongs to `corpus[i]`) under the
/// three profiles.
pub fn report(corpus: &[NabSeries], scores: &[Vec<f64>]) -> NabReport {
    let input: Vec<ScoredSeries<'_>> = corpus
        .iter()
        .zip(scores)
        .map(|(s, sc)| ScoredSeries {
            timestamps: &s.timestamps,
            windows: &s.windows,
            scores: sc,
        })
        .collect();
    let results: Vec<ProfileResult> = PROFILES.iter().map(|p| score_corpus(&input, p)).collect();
    let mut files: Vec<NabFileReport> = corpus
        .iter()
        .map(|s| NabFileReport {
            file: s.name.clone(),
            rows: s.values.len(),
            windows: s.windows.len(),
            profiles: BTreeMap::new(),
        })
        .collect();
    let mut thresholds = BTreeMap::new();
    for r in &results {
        thresholds.insert(r.profile.clone(), r.threshold);
        for (f, o) in files.iter_mut().zip(&r.files) {
            f.profiles.insert(r.profile.clone(), o.clone());
        }
    }
    let norm = |name: &str| {
        results
            .iter()
            .find(|r| r.profile == name)
            .map_or(0.0, |r| r.normalized)
    };
    NabReport {
        standard: norm("standard"),
        reward_low_fp_rate: norm("reward_low_FP_rate"),
        reward_low_fn_rate: norm("reward_low_FN_rate"),
        thresholds,
        files,
    }
}

/// Runs the detector over every series (in parallel, one series per task; each series is
/// processed strictly in row order) and returns the scores in corpus order.
pub fn detect_corpus(corpus: &[NabSeries], config: &NabConfig) -> Vec<Vec<f64>> {
    corpus
        .par_iter()
        .map(|s| detect_series(s, config))
        .collect()
}

/// Writes NAB results files `out/aiops/<category>/aiops_<file>.csv` with the columns
/// `timestamp,value,anomaly_score,label` (label 1 inside a labelled window).
///
/// # Errors
/// [`NabError::Io`] when a directory or file cannot be written.
pub fn write_results(
    out: &Path,
    corpus: &[NabSeries],
    scores: &[Vec<f64>],
) -> Result<(), NabError> {
    use std::io::Write;
    for (s, sc) in corpus.iter().zip(scores) {
        let dir = out.join("aiops").join(s.category());
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let path = dir.join(format!("aiops_{}", s.file_name()));
        let file = std::fs::File::create(&path).map_err(io_err(&path))?;
        let mut w = std::io::BufWriter::new(file);
        let write = |w: &mut std::io::BufWriter<std::fs::File>| -> std::io::Result<()> {
            writeln!(w, "timestamp,value,anomaly_score,label")?;
            for (i, ((ts, t), v)) in s
                .timestamp_text
                .iter()
                .zip(&s.timestamps)
                .zip(&s.values)
                .enumerate()
            {
                let label = u8::from(s.windows.iter().any(|&(a, b)| *t >= a && *t <= b));
                let score = sc.get(i).copied().unwrap_or(0.0);
                writeln!(w, "{ts},{v},{score},{label}")?;
            }
            w.flush()
        };
        write(&mut w).map_err(io_err(&path))?;
    }
    Ok(())
}

/// Loads the corpus, runs the detector with `config`, optionally writes results files under
/// `results_dir`, and scores the three profiles.
///
/// # Errors
/// [`NabError`] from loading or writing.
pub fn run(
    data_dir: &Path,
    labels: &Path,
    results_dir: Option<&Path>,
    config: &NabConfig,
) -> Result<NabReport, NabError> {
    let corpus = load_corpus(data_dir, labels)?;
    let scores = detect_corpus(&corpus, config);
    if let Some(out) = results_dir {
        write_results(out, &corpus, &scores)?;
    }
    Ok(report(&corpus, &scores))
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000;

    /// 20 rows one second apart, one window over rows 10..=13 (W = 4); probation = 3 rows.
    fn series() -> (Vec<i64>, Vec<(i64, i64)>) {
        ((0..20).map(|i| i * S).collect(), vec![(10 * S, 13 * S)])
    }

    #[test]
    fn never_firing_detector_scores_zero_and_perfect_scores_hundred() {
        let (ts, w) = series();
        let zeros = vec![0.0; 20];
        let input = [ScoredSeries {
            timestamps: &ts,
            windows: &w,
            scores: &zeros,
        }];
        for p in &PROFILES {
            let r = score_corpus(&input, p);
            assert_eq!(r.threshold, None);
            assert_eq!(r.normalized, 0.0);
            assert_eq!(r.raw_score, -p.fn_weight);
        }
        let mut perfect = vec![0.0; 20];
        perfect[10] = 1.0;
        let input = [ScoredSeries {
            timestamps: &ts,
            windows: &w,
            scores: &perfect,
        }];
        for p in &PROFILES {
            let r = score_corpus(&input, p);
            assert_eq!(r.threshold, Some(1.0));
            assert!((r.normalized - 100.0).abs() < 1e-12, "{}", r.normalized);
            assert_eq!(
                r.files[0],
                FileOutcome {
                    score: 1.0,
                    tp: 1,
                    fp: 0,
                    fn_: 0
                }
            );
        }
    }

    #[test]
    fn hand_computed_case() {
        let (ts, w) = series();
        let mut sc = vec![0.0; 20];
        sc[1] = 0.9; // probationary: ignored
        sc[5] = 0.5; // before the first window: costs A_FP
        sc[11] = 1.0; // in the window, position -(13 - 11 + 1) / 4 = -0.75
        sc[12] = 1.0; // later in the same window: does not add
        sc[16] = 0.8; // 3 rows after the window: sigma(3 / 3) * A_FP
        let input = [ScoredSeries {
            timestamps: &ts,
            windows: &w,
            scores: &sc,
        }];
        // sigma(-0.75) / sigma(-1) = 0.9669890878000605 (computed by hand from
        // 2 / (1 + e^(5y)) - 1); sigma(1) = -0.9866142981514303.
        let tp = 0.966_989_087_800_060_5;
        assert!((scaled_sigmoid(-0.75) / scaled_sigmoid(-1.0) - tp).abs() < 1e-15);
        assert!((scaled_sigmoid(1.0) + 0.986_614_298_151_430_3).abs() < 1e-15);
        assert_eq!(scaled_sigmoid(3.5), -1.0);
        let r = score_corpus(&input, &PROFILES[0]);
        // Threshold 1.0 (only the TP) beats 0.8 (TP + 0.11 * -0.98661) and 0.5.
        assert_eq!(r.threshold, Some(1.0));
        assert!((r.raw_score - tp).abs() < 1e-12);
        assert!(
            (r.normalized - 98.349_454_390_003_02).abs() < 1e-9,
            "{}",
            r.normalized
        );
        let r = score_corpus(&input, &PROFILES[2]);
        assert!((r.normalized - 98.899_636_260_002_01).abs() < 1e-9);
        // At threshold 0.5 the file would score tp - 0.11 - 0.11 * 0.98661...
        let l = label_rows(&ts, &w);
        let o = file_outcome(&input[0], &l, Some(0.5), &PROFILES[0]);
        assert_eq!(o.tp, 1);
        assert_eq!(o.fp, 2);
        assert!((o.score - (tp - 0.11 - 0.11 * 0.986_614_298_151_430_3)).abs() < 1e-12);
        assert_eq!(probationary_rows(20), 3);
        assert_eq!(probationary_rows(100_000), 750);
    }

    #[test]
    fn parses_labels_and_rows() {
        let w = parse_windows(
            r#"{"a/x.csv": [["2014-04-10 07:15:00.000000", "2014-04-11 16:45:00.000000"]], "a/y.csv": []}"#,
        )
        .unwrap();
        assert_eq!(w["a/x.csv"], vec![(1_397_114_100 * S, 1_397_234_700 * S)]);
        assert!(w["a/y.csv"].is_empty());
        assert!(parse_windows(r#"{"a": [["2014-04-10 07:15:00"]]}"#).is_err());
        let s = parse_series(
            "a/x.csv",
            Path::new("x.csv"),
            "timestamp,value\n2014-04-10 07:15:00,1.5\n2014-04-10 07:20:00,2\n",
            vec![],
        )
        .unwrap();
        assert_eq!(s.values, vec![1.5, 2.0]);
        assert_eq!(s.category(), "a");
        assert_eq!(s.file_name(), "x.csv");
        assert!(parse_series("a", Path::new("x"), "h\nbad,1\n", vec![]).is_err());
    }
}
