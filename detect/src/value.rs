//! Streaming value detector for metric series (and the NAB evaluation): robust location,
//! seasonality and conformal calibration.
//!
//! For each observation `x` (one per closed window for metric series, one per row for NAB)
//! the detector computes up to five *nonconformity measures*, each from the past only:
//!
//! - `level`: the robust z-score `|x − median| / (1.4826 · MAD)` over the trailing `history`
//!   observations (median and median absolute deviation; the scale is floored at
//!   `relative_floor · |median|` and 1e−12, so zero variance is explicit, not a division by
//!   zero);
//! - `shift`: `|mean of the last short_window observations − median|` (a sustained shift);
//! - `seasonal`: `|x − m_slot|`, where `m_slot` is the median of the means of the same
//!   time-of-day slot (`slots_per_day` slots, UTC) on the last `seasonal_days` completed days
//!   (a robust seasonal-naive expectation, as the median-based decomposition of Hochenbaum,
//!   Vallis & Kejariwal, "Automatic Anomaly Detection in the Cloud Via Statistical Learning",
//!   2017: an incident on one day does not become the next day's expectation), used once the
//!   series spans `seasonal_min_days` and the slot has `seasonal_min_samples` completed days;
//!   with `weekly` on, the measure is `min(|x − m_slot|, |x − w_slot|)`, where `w_slot` is the
//!   same median over the slot of the same weekday on the last `seasonal_days` completed weeks
//!   (used once the series spans `7 · seasonal_min_days` days and the weekly slot has
//!   `seasonal_min_samples` completed weeks): a value explained by either the daily or the
//!   weekly profile is not a seasonal surprise (a quiet weekend is not a drop), as in the
//!   multiple seasonal periods of Hochenbaum et al. 2017 and of TBATS (De Livera, Hyndman &
//!   Snyder, "Forecasting time series with complex seasonal patterns using exponential
//!   smoothing", JASA 106, 2011);
//! - `step`: `|x − previous observation|`;
//! - `cusum`: the larger of the two one-sided CUSUM statistics of the robust z-score
//!   `z = (x − median) / (1.4826 · MAD)`, `S⁺ ← min(cap, max(0, S⁺ + z − k))` and
//!   `S⁻ ← min(cap, max(0, S⁻ − z − k))` (Page, "Continuous inspection schemes", Biometrika
//!   41, 1954): it accumulates a small persistent departure (a slow onset, a modest level
//!   shift) that no single observation shows, so such changes are seen early.
//!
//! Each measure is turned into a p-value by *conformal calibration* against the trailing
//! `calibration` values of the same measure (Laxhammar & Falkman, "Inductive conformal anomaly
//! detection for sequential detection of anomalous sub-trajectories", Annals of Mathematics and
//! Artificial Intelligence 74, 2015): `p = (#{past ≥ a} + 1) / (n + 1)`. Beyond the largest
//! past value the tail is extrapolated as exponential (peaks over threshold with a generalised
//! Pareto shape of 0, as in Siffer et al., "Anomaly Detection in Streams with Extreme Value
//! Theory", KDD 2017): `p = exp(−(a − max) / β) / (n + 1)`, where `β` is the mean excess over
//! the `tail_quantile` quantile (at least `(max − median) / ln(n / 2)` of the calibration values,
//! the order-statistic estimate of an exponential scale; at least `relative_floor · |median|` of
//! the series; never below 1e−12). The measures' p-values are combined with the harmonic
//! mean p-value ([`combine`]), and the raw score is `−log10(p) / decades` clamped to [0, 1].
//!
//! *Likelihood stage* (after the anomaly likelihood of Ahmad, Lavin, Purdy & Agha,
//! "Unsupervised real-time anomaly detection for streaming data", Neurocomputing 262, 2017,
//! used by Numenta HTM on NAB): the mean of the last `likelihood_short` raw scores is compared
//! with the distribution of its own past values, and its p-value is combined (harmonic mean)
//! with the measures' one. HTM models that distribution as a Gaussian; here it is calibrated
//! like the measures (conformal p-value with the exponential tail), because raw scores are
//! `−log10` of p-values, skewed, so a Gaussian tail overstates how rare a high mean is
//! (measured on NAB: the Gaussian version scored 65.1 standard, the conformal one 67.8). An
//! isolated surprise among ordinary ones is discounted (its combined p-value is about twice
//! the measures' one) while an event that stays surprising keeps both p-values small, so
//! fewer single blips become findings. The stage starts once a measure is calibrated.
//!
//! *Return period* (optional, [`ValueConfig::return_period_secs`]): a p-value is a rarity per
//! observation, so at the same p-value a series sampled every 5 minutes shows twelve times as
//! many such surprises per day as an hourly one. With a time unit `u` (seconds) the combined
//! p-value becomes `min(1, p · u / Δ)`, where `Δ` is the mean time between the detector's
//! observations so far (elapsed time over observations, gaps included): the expected number of
//! equally surprising observations per `u` seconds, the reciprocal of the event's *return
//! period* in units of `u` (Gumbel, "Statistics of Extremes", 1958; Coles, "An Introduction to
//! Statistical Modeling of Extreme Values", Springer 2001, section 4.4.1). One threshold then
//! means the same rate of findings per hour for every sampling rate (measured on NAB, where
//! series are sampled every 5 minutes to every hour: with `u` = 3600 s and the finding threshold
//! at 0.2, standard 71.38 and reward_low_FP_rate 65.73, against 67.84 and 56.88 without).
//!
//! *Suppression*: the reported score is the raw score when it is above every raw score of
//! the previous `suppress` observations, else 0. An event that keeps scoring (a level shift
//! that persists, a metric stuck at zero) is reported once, at its onset, and a stronger event
//! inside the period still is; the suppression does not depend on any threshold, so NAB's
//! threshold sweep sees the same detections the engine makes (the suppression period of the
//! detectors in NAB, e.g. CAD OSE's `restPeriod`, Lavin & Ahmad 2015, plays the same role).
//! The level shift's new values are learned at once, so calibration and median move to the new
//! level within `history / 2` observations.
//!
//! Calibration makes the score scale-free: a series whose values always swing widely needs a
//! wider swing to score, a flat series scores any change. Edge cases are explicit: a
//! non-finite input is ignored (score 0, model unchanged); fewer than `min_history`
//! observations or fewer than `min_calibration` calibration values give score 0; a series
//! with zero variance has `β` at its floor, so any departure scores 1.
//!
//! Memory per detector is bounded: `16 · (history + 6 · calibration) + 16 · suppress +
//! 8 · likelihood_short` bytes for the windows plus about 100 bytes per seasonal slot
//! (`slots_per_day` slots, eight times as many with `weekly`).

use crate::numeric::{MAD_TO_SIGMA, SortedWindow, surprise_score};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

const DAY_US: i64 = 86_400_000_000;

/// Value detector configuration (`[detect.statistics.value]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ValueConfig {
    /// Trailing observations for the median. Default 256; at least 3.
    pub history: usize,
    /// Observations before any score. Default 20; between 2 and `history`.
    pub min_history: usize,
    /// Observations averaged by the `shift` measure. Default 5; between 1 and `history`.
    pub short_window: usize,
    /// Trailing values of each measure kept for calibration. Default 512; at least 10.
    pub calibration: usize,
    /// Calibration values needed before a measure counts. Default 50.
    pub min_calibration: usize,
    /// Quantile above which the calibration tail scale is estimated. Default 0.9; in (0, 1).
    pub tail_quantile: f64,
    /// Time-of-day slots of the seasonal profile (UTC). Default 96 (15 minutes); 1..=1440.
    pub slots_per_day: u32,
    /// Not used any more (the slot expectation is now a median of daily means, see
    /// `seasonal_days`); accepted so existing configuration files stay valid. Default 0.2.
    pub seasonal_alpha: f64,
    /// Completed days a slot needs before the seasonal measure uses it. Default 3; values
    /// above `seasonal_days` mean the seasonal measure is never used.
    pub seasonal_min_samples: u32,
    /// Days the series must span before the seasonal measure is used. Default 2.
    pub seasonal_min_days: f64,
    /// Score scale: `score = −log10(p) / decades`. Default 10; > 0.
    pub decades: f64,
    /// Floor of the tail scale, relative to `|median|` (absolute floor 1e−12). Default 1e−6.
    pub relative_floor: f64,
    /// Use the `level` measure. Default true.
    pub level: bool,
    /// Use the `shift` measure. Default true.
    pub shift: bool,
    /// Use the `seasonal` measure. Default true.
    pub seasonal: bool,
    /// Use the `step` measure. Default true.
    pub step: bool,
    /// Completed days whose slot means the seasonal expectation is the median of. Default 3;
    /// 1..=7.
    pub seasonal_days: usize,
    /// Use the `cusum` measure. Default true.
    pub cusum: bool,
    /// Reference value `k` of the CUSUM, in robust standard deviations (half the shift it is
    /// quickest to detect). Default 0.5 (a shift of one standard deviation, Page 1954); >= 0.
    pub cusum_k: f64,
    /// Bound of the CUSUM statistics, in robust standard deviations: a sustained shift
    /// saturates them here instead of growing until the median has moved, so the calibration
    /// does not learn ever larger values. Default 10 (twice the usual decision interval
    /// `h = 5` for `k = 0.5`); >= 0.
    pub cusum_cap: f64,
    /// Suppression period, in observations: a score is reported (non-zero) only when it is
    /// above every raw score of the previous `suppress` observations, so an event that keeps
    /// scoring (a level shift that persists, a series stuck at zero) is reported once, at its
    /// strongest onset, while a stronger event inside the period still is. Default 100; 0
    /// turns suppression off; at most 100 000.
    pub suppress: usize,
    /// Use the `likelihood` stage (see the module documentation). Default true.
    pub likelihood: bool,
    /// Raw scores averaged by the `likelihood` stage (the short window of HTM's anomaly
    /// likelihood, Ahmad et al. 2017, whose default is 10). Default 20: four times
    /// `short_window`, so the stage looks at a longer scale than the `shift` measure it is
    /// combined with; 1..=10 000.
    pub likelihood_short: usize,
    /// Time unit, in seconds, of the *return period* scoring (see the module documentation):
    /// the combined p-value is multiplied by `return_period_secs / interval` (`interval` the
    /// mean time between the observations so far, gaps included), so the score
    /// measures how rare the observation is per unit of time rather than per observation.
    /// 0 turns it off (the default; the NAB preset uses 3600, one hour); finite, 0..=10⁹.
    pub return_period_secs: f64,
    /// Let the `seasonal` measure also use the weekly profile (see the module documentation).
    /// Default false (the NAB preset turns it on); costs `7 · slots_per_day` slots.
    pub weekly: bool,
}

impl Default for ValueConfig {
    fn default() -> Self {
        ValueConfig {
            history: 256,
            min_history: 20,
            short_window: 5,
            calibration: 512,
            min_calibration: 50,
            tail_quantile: 0.9,
            slots_per_day: 96,
            seasonal_alpha: 0.2,
            seasonal_min_samples: 3,
            seasonal_min_days: 2.0,
            decades: 10.0,
            relative_floor: 1e-6,
            level: true,
            shift: true,
            seasonal: true,
            step: true,
            seasonal_days: 3,
            cusum: true,
            cusum_k: 0.5,
            cusum_cap: 10.0,
            suppress: 100,
            likelihood: true,
            likelihood_short: 20,
            return_period_secs: 0.0,
            weekly: false,
        }
    }
}

/// The nonconformity measures, in the order used by [`ValueScore::measure`].
pub const MEASURES: [&str; N_MEASURES] = ["level", "shift", "seasonal", "step", "cusum"];

/// Number of measures.
pub const N_MEASURES: usize = 5;

/// Index of the `likelihood` stage in [`MEASURE_NAMES`] (reported as [`ValueScore::measure`]
/// when its p-value is smaller than the measures' combined one; Ahmad et al. 2017).
pub const LIKELIHOOD: usize = 5;

/// The measures ([`MEASURES`]) and the `likelihood` stage, in the order used by
/// [`ValueScore::measure`] (see the module documentation for their sources).
pub const MEASURE_NAMES: [&str; N_MEASURES + 1] =
    ["level", "shift", "seasonal", "step", "cusum", "likelihood"];

/// The score of one observation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ValueScore {
    /// Score in [0, 1]: the raw score, or 0 when it is suppressed (see
    /// [`ValueConfig::suppress`]).
    pub score: f64,
    /// The score before suppression, in [0, 1]: `−log10(p_value) / decades`.
    pub raw_score: f64,
    /// Combined p-value (1 when not scored).
    pub p_value: f64,
    /// What the observation was compared with: the seasonal slot mean (of the daily or the
    /// weekly profile, whichever is nearer) when the seasonal measure decided the score, else the trailing median (the observation itself before any
    /// history).
    pub expected: f64,
    /// Index into [`MEASURE_NAMES`] of the measure with the smallest p-value, or
    /// [`LIKELIHOOD`] when the `likelihood` stage decided the score (`None` when no measure
    /// was available).
    pub measure: Option<usize>,
    /// Whether the input was ignored (non-finite).
    pub ignored: bool,
}

/// Most days a seasonal slot remembers.
const MAX_SEASONAL_DAYS: usize = 7;

/// One time-of-day slot: the means of the slot on the last completed days (a ring) and the
/// running sum of the current day.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
struct Slot {
    days: [f64; MAX_SEASONAL_DAYS],
    len: usize,
    next: usize,
    day: Option<i64>,
    sum: f64,
    n: u32,
}

impl Slot {
    /// Adds `x` observed on day `day`; a new day first closes the previous day's mean.
    fn add(&mut self, day: i64, x: f64, keep: usize) {
        let keep = keep.clamp(1, MAX_SEASONAL_DAYS);
        if self.day != Some(day) {
            if self.n > 0 {
                let m = self.sum / f64::from(self.n);
                if let Some(d) = self.days.get_mut(self.next % keep) {
                    *d = m;
                }
                self.next = (self.next + 1) % keep;
                self.len = (self.len + 1).min(keep);
            }
            self.day = Some(day);
            self.sum = 0.0;
            self.n = 0;
        }
        self.sum += x;
        self.n = self.n.saturating_add(1);
    }

    /// The median of the completed days' means, when at least `min_days` are held.
    fn expected(&self, min_days: usize) -> Option<f64> {
        if self.len == 0 || self.len < min_days {
            return None;
        }
        let mut days = self.days;
        let v = days.get_mut(..self.len)?;
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n % 2 == 1 {
            v.get(n / 2).copied()
        } else {
            Some(0.5 * (v.get(n / 2 - 1)? + v.get(n / 2)?))
        }
    }
}

/// Conformal p-value of `a` against a calibration window, with an exponential tail beyond the
/// largest value (see the module documentation). 1 when fewer than `min_n` values are held or
/// `a` is not finite.
pub fn conformal_p_value(
    w: &SortedWindow,
    a: f64,
    min_n: usize,
    tail_quantile: f64,
    floor: f64,
) -> f64 {
    let n = w.len();
    if n < min_n.max(1) || !a.is_finite() {
        return 1.0;
    }
    let ge = n - w.count_below(a);
    if ge > 0 {
        return ((ge as f64 + 1.0) / (n as f64 + 1.0)).min(1.0);
    }
    let q = w.quantile(tail_quantile).unwrap_or(0.0);
    let max = w.quantile(1.0).unwrap_or(0.0);
    let tail = ((1.0 - tail_quantile) * n as f64).ceil() as usize;
    let (mut sum, mut cnt) = (0.0, 0usize);
    for v in w.top(tail) {
        if v > q {
            sum += v - q;
            cnt += 1;
        }
    }
    let mean_excess = if cnt > 0 { sum / cnt as f64 } else { 0.0 };
    // A discrete or nearly constant measure can have no excess over its upper quantile. For an
    // exponential tail the maximum of n values lies about β·ln(n/2) above the median, which
    // gives a second, order-statistic estimate of β that keeps a hair above the maximum from
    // looking infinitely surprising.
    let spread = (max - w.median().unwrap_or(max)) / (n as f64 / 2.0).ln().max(1.0);
    let beta = mean_excess.max(spread).max(floor).max(1e-12);
    let p = (-(a - max) / beta).exp() / (n as f64 + 1.0);
    if p.is_finite() {
        p.clamp(0.0, 1.0)
    } else {
        0.0
    }
}

/// Combines the measures' p-values with the harmonic mean p-value, `p = k / Σ 1/p_i` over the
/// `k` available measures (Wilson, "The harmonic mean p-value for combining dependent tests",
/// PNAS 116(4), 2019): valid under dependence up to a small factor, never above the Bonferroni
/// bound `k · min p_i`, and smaller when several measures agree. Returns the combined p-value
/// (in [0, 1]) and the index of the measure with the smallest p-value; `None` when no measure
/// is available.
pub fn combine(p_values: &[Option<f64>]) -> Option<(f64, usize)> {
    let mut best: Option<(f64, usize)> = None;
    let mut inv = 0.0;
    let mut k = 0usize;
    for (i, p) in p_values.iter().enumerate() {
        if let Some(p) = p {
            let p = if p.is_nan() {
                1.0
            } else {
                p.clamp(1e-300, 1.0)
            };
            inv += 1.0 / p;
            k += 1;
            if best.is_none_or(|(bp, _)| p < bp) {
                best = Some((p, i));
            }
        }
    }
    let (_, i) = best?;
    Some(((k as f64 / inv).clamp(0.0, 1.0), i))
}

/// The streaming value detector of one series.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ValueDetector {
    cfg: ValueConfig,
    history: SortedWindow,
    recent: VecDeque<f64>,
    recent_sum: f64,
    slots: Vec<Slot>,
    calibration: [SortedWindow; N_MEASURES],
    cusum: (f64, f64),
    first_time: Option<i64>,
    previous: Option<f64>,
    observed: u64,
    raw_scores: VecDeque<(u64, f64)>,
    /// The last `likelihood_short` raw scores of the measures (before the `likelihood` stage).
    likelihood_recent: VecDeque<f64>,
    /// Calibration of the `likelihood` stage: the trailing averages of those raw scores.
    likelihood_calibration: SortedWindow,
    /// Slots of the weekly profile (`7 · slots_per_day`; empty when `weekly` is off).
    #[serde(default)]
    weekly_slots: Vec<Slot>,
}

impl ValueDetector {
    /// A detector with no history. Out-of-range configuration values are clamped (use
    /// [`crate::config::StatisticsConfig::validate`] to reject them).
    pub fn new(cfg: &ValueConfig) -> Self {
        let cfg = cfg.clone();
        let cal = cfg.calibration.max(10);
        ValueDetector {
            history: SortedWindow::new(cfg.history.max(3)),
            recent: VecDeque::with_capacity(cfg.short_window.max(1)),
            recent_sum: 0.0,
            slots: vec![Slot::default(); cfg.slots_per_day.clamp(1, 1440) as usize],
            calibration: [
                SortedWindow::new(cal),
                SortedWindow::new(cal),
                SortedWindow::new(cal),
                SortedWindow::new(cal),
                SortedWindow::new(cal),
            ],
            first_time: None,
            previous: None,
            cusum: (0.0, 0.0),
            observed: 0,
            raw_scores: VecDeque::new(),
            likelihood_recent: VecDeque::new(),
            likelihood_calibration: SortedWindow::new(cal),
            weekly_slots: if cfg.weekly {
                vec![Slot::default(); 7 * cfg.slots_per_day.clamp(1, 1440) as usize]
            } else {
                Vec::new()
            },
            cfg,
        }
    }

    /// Finite observations learned so far.
    pub fn observed(&self) -> u64 {
        self.observed
    }

    fn slot_of(&self, t: i64) -> usize {
        let n = self.slots.len().max(1) as i64;
        let len = (DAY_US / n).max(1);
        ((t.rem_euclid(DAY_US) / len) as usize).min(self.slots.len().saturating_sub(1))
    }

    fn week_slot_of(&self, t: i64) -> usize {
        let n = self.weekly_slots.len().max(1) as i64;
        let len = (7 * DAY_US / n).max(1);
        ((t.rem_euclid(7 * DAY_US) / len) as usize).min(self.weekly_slots.len().saturating_sub(1))
    }

    /// Scores `x` observed at `t` (µs since the epoch, UTC; used for the seasonal slot), then
    /// learns it. Observations must come in time order for the seasonal measure to be
    /// meaningful; scoring uses only earlier observations.
    pub fn observe(&mut self, t: i64, x: f64) -> ValueScore {
        if !x.is_finite() {
            return ValueScore {
                score: 0.0,
                raw_score: 0.0,
                p_value: 1.0,
                expected: self.history.median().unwrap_or(0.0),
                measure: None,
                ignored: true,
            };
        }
        let first = *self.first_time.get_or_insert(t);
        let slot = self.slot_of(t);
        let week_slot = self.week_slot_of(t);
        let median = self.history.median().unwrap_or(x);
        let mut out = ValueScore {
            score: 0.0,
            raw_score: 0.0,
            p_value: 1.0,
            expected: median,
            measure: None,
            ignored: false,
        };
        // Short mean including x.
        let k = self.cfg.short_window.max(1);
        let (sum_with, len_with) = if self.recent.len() >= k {
            (
                self.recent_sum - self.recent.front().copied().unwrap_or(0.0) + x,
                k,
            )
        } else {
            (self.recent_sum + x, self.recent.len() + 1)
        };
        let mut measures: [Option<f64>; N_MEASURES] = [None; N_MEASURES];
        let mut slot_mean = None;
        if self.history.len() >= self.cfg.min_history {
            let mad = self.history.mad_around(median).unwrap_or(0.0) * MAD_TO_SIGMA;
            let scale = mad.max(self.cfg.relative_floor * median.abs()).max(1e-12);
            if self.cfg.level {
                measures[0] = Some((x - median).abs() / scale);
            }
            if self.cfg.shift {
                measures[1] = Some((sum_with / len_with as f64 - median).abs());
            }
            if self.cfg.seasonal
                && (t - first) as f64 >= self.cfg.seasonal_min_days * DAY_US as f64
                && let Some(m) = self
                    .slots
                    .get(slot)
                    .and_then(|s| s.expected(self.cfg.seasonal_min_samples as usize))
            {
                let mut a = (x - m).abs();
                slot_mean = Some(m);
                // The weekly profile, when it explains x better (module documentation).
                if (t - first) as f64 >= 7.0 * self.cfg.seasonal_min_days * DAY_US as f64
                    && let Some(w) = self
                        .weekly_slots
                        .get(week_slot)
                        .and_then(|s| s.expected(self.cfg.seasonal_min_samples as usize))
                    && (x - w).abs() < a
                {
                    a = (x - w).abs();
                    slot_mean = Some(w);
                }
                measures[2] = Some(a);
            }
            if self.cfg.step
                && let Some(p) = self.previous
            {
                measures[3] = Some((x - p).abs());
            }
            if self.cfg.cusum {
                let z = (x - median) / scale;
                let (k, cap) = (self.cfg.cusum_k.max(0.0), self.cfg.cusum_cap.max(0.0));
                let (hi, lo) = self.cusum;
                let hi = (hi + z - k).clamp(0.0, cap);
                let lo = (lo - z - k).clamp(0.0, cap);
                if hi.is_finite() && lo.is_finite() {
                    self.cusum = (hi, lo);
                    measures[4] = Some(hi.max(lo));
                }
            }
        }
        let floor = self.cfg.relative_floor * median.abs();
        let mut p_values: [Option<f64>; N_MEASURES] = [None; N_MEASURES];
        for ((m, cal), pv) in measures.iter().zip(&self.calibration).zip(&mut p_values) {
            if let Some(a) = m {
                *pv = Some(conformal_p_value(
                    cal,
                    *a,
                    self.cfg.min_calibration,
                    self.cfg.tail_quantile,
                    floor,
                ));
            }
        }
        if let Some((p0, i0)) = combine(&p_values) {
            let (mut p, mut i) = (p0, i0);
            // The `likelihood` stage: the mean of the last `likelihood_short` raw scores (this
            // one included), calibrated against its own trailing values; it starts once a
            // measure is calibrated (before that the raw scores are 0 by construction, not
            // information).
            let calibrated = measures
                .iter()
                .zip(&self.calibration)
                .any(|(m, cal)| m.is_some() && cal.len() >= self.cfg.min_calibration.max(1));
            if self.cfg.likelihood && calibrated {
                let raw0 = surprise_score(p0, self.cfg.decades);
                let short = self.cfg.likelihood_short.clamp(1, 10_000);
                let skip = (self.likelihood_recent.len() + 1).saturating_sub(short);
                let (sum, n) = self
                    .likelihood_recent
                    .iter()
                    .skip(skip)
                    .fold((raw0, 1usize), |(s, n), v| (s + v, n + 1));
                let avg = sum / n as f64;
                let cal = &self.likelihood_calibration;
                if cal.len() >= self.cfg.min_calibration.max(1) {
                    let pl = conformal_p_value(
                        cal,
                        avg,
                        self.cfg.min_calibration,
                        self.cfg.tail_quantile,
                        0.0,
                    );
                    if let Some((pc, _)) = combine(&[Some(p0), Some(pl)]) {
                        p = pc;
                    }
                    if pl < p0 {
                        i = LIKELIHOOD;
                    }
                }
                self.likelihood_calibration.push(avg);
                if self.likelihood_recent.len() >= short {
                    self.likelihood_recent.pop_front();
                }
                self.likelihood_recent.push_back(raw0);
            }
            // Return period: the expected number of equally surprising observations per
            // `return_period_secs`, p · unit / mean interval (Coles 2001, section 4.4.1).
            let unit = self.cfg.return_period_secs;
            if unit > 0.0 && self.observed > 0 && t > first {
                let interval = (t - first) as f64 / 1e6 / self.observed as f64;
                p = (p * unit.min(1e9) / interval).min(1.0);
            }
            out.p_value = p;
            out.measure = Some(i);
            let raw = surprise_score(p, self.cfg.decades);
            // Suppression: report only a score above every raw score of the previous
            // `suppress` observations (one finding per event, whatever the threshold).
            let peak = self.raw_scores.front().map_or(0.0, |&(_, v)| v);
            out.score = if raw > peak { raw } else { 0.0 };
            out.raw_score = raw;
            if i == 2
                && let Some(m) = slot_mean
            {
                out.expected = m;
            }
        }
        // Sliding maximum of the raw scores over the last `period` observations: a deque of
        // (observation number, score) with decreasing scores, so the front is the maximum
        // (O(1) amortised per observation, at most `period` entries).
        let period = self.cfg.suppress.min(100_000) as u64;
        if period > 0 {
            let now = self.observed;
            while self
                .raw_scores
                .front()
                .is_some_and(|&(j, _)| j + period <= now)
            {
                self.raw_scores.pop_front();
            }
            while self
                .raw_scores
                .back()
                .is_some_and(|&(_, v)| v <= out.raw_score)
            {
                self.raw_scores.pop_back();
            }
            self.raw_scores.push_back((now, out.raw_score));
        }
        // Learn.
        for (m, cal) in measures.iter().zip(self.calibration.iter_mut()) {
            if let Some(a) = m {
                cal.push(*a);
            }
        }
        self.history.push(x);
        if self.recent.len() >= k {
            self.recent.pop_front();
        }
        self.recent.push_back(x);
        // Recomputed (at most `short_window` terms) so no floating-point drift accumulates.
        self.recent_sum = self.recent.iter().sum();
        self.previous = Some(x);
        let day = t.div_euclid(DAY_US);
        let keep = self.cfg.seasonal_days;
        if let Some(s) = self.slots.get_mut(slot) {
            s.add(day, x, keep);
        }
        if let Some(s) = self.weekly_slots.get_mut(week_slot) {
            s.add(t.div_euclid(7 * DAY_US), x, keep);
        }
        self.observed += 1;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000_000;

    fn cfg() -> ValueConfig {
        ValueConfig {
            min_history: 5,
            min_calibration: 5,
            seasonal: false,
            ..ValueConfig::default()
        }
    }

    #[test]
    fn conformal_p_value_exact_values() {
        let mut w = SortedWindow::new(100);
        for v in [1.0, 2.0, 3.0, 4.0] {
            w.push(v);
        }
        // 2 of 4 values >= 3 -> (2 + 1) / 5.
        assert_eq!(conformal_p_value(&w, 3.0, 1, 0.5, 0.0), 0.6);
        assert_eq!(conformal_p_value(&w, 0.0, 1, 0.5, 0.0), 1.0);
        assert_eq!(conformal_p_value(&w, 4.0, 1, 0.5, 0.0), 0.4);
        // Beyond the max: q(0.5) = 3 (nearest rank of 1.5 -> index 2), tail = top 2 values
        // {3, 4}, excess over 3 -> {1} -> mean excess 1; order-statistic estimate
        // (max - median) / max(ln(n / 2), 1) = (4 - 2.5) / 1 = 1.5 -> beta = 1.5;
        // p = exp(-(6 - 4) / 1.5) / 5.
        let p = conformal_p_value(&w, 6.0, 1, 0.5, 0.0);
        assert!((p - (-2.0f64 / 1.5).exp() / 5.0).abs() < 1e-15);
        // Too little calibration, NaN.
        assert_eq!(conformal_p_value(&w, 6.0, 10, 0.5, 0.0), 1.0);
        assert_eq!(conformal_p_value(&w, f64::NAN, 1, 0.5, 0.0), 1.0);
    }

    #[test]
    fn zero_variance_series_scores_any_change_at_one() {
        let c = cfg();
        let mut d = ValueDetector::new(&c);
        let mut last = None;
        for i in 0..100 {
            last = Some(d.observe(i * MIN, 5.0));
        }
        // Constant input: every measure is 0, p = 1, score 0.
        let s = last.unwrap();
        assert_eq!(s.score, 0.0);
        assert_eq!(s.p_value, 1.0);
        // Any departure: beta at its floor (1e-6 * 5), p underflows to 0 -> score 1.
        let s = d.observe(100 * MIN, 5.1);
        assert_eq!(s.score, 1.0);
        assert_eq!(s.expected, 5.0);
        assert!(s.p_value.is_finite());
    }

    #[test]
    fn tiny_history_scores_zero() {
        let c = cfg();
        let mut d = ValueDetector::new(&c);
        for i in 0..5 {
            let s = d.observe(i * MIN, (i * 1000) as f64);
            assert_eq!(s.score, 0.0);
            assert_eq!(s.measure, None);
        }
    }

    #[test]
    fn non_finite_inputs_are_ignored() {
        let c = cfg();
        let mut d = ValueDetector::new(&c);
        for i in 0..30 {
            d.observe(i * MIN, (i % 3) as f64);
        }
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let s = d.observe(31 * MIN, bad);
            assert!(s.ignored);
            assert_eq!(s.score, 0.0);
            assert_eq!(s.p_value, 1.0);
        }
        assert_eq!(d.observed(), 30);
    }

    #[test]
    fn spike_scores_high_and_noise_low() {
        let c = ValueConfig {
            seasonal: false,
            ..ValueConfig::default()
        };
        let mut d = ValueDetector::new(&c);
        // Deterministic noise in [0, 1).
        let mut max_noise_score: f64 = 0.0;
        for i in 0..400 {
            let x = 10.0 + ((i * 7919) % 100) as f64 / 100.0;
            let s = d.observe(i * MIN, x);
            if i > 300 {
                max_noise_score = max_noise_score.max(s.score);
            }
        }
        let s = d.observe(400 * MIN, 50.0);
        assert!(s.score >= 0.9, "spike {}", s.score);
        assert!(max_noise_score < 0.35, "noise {max_noise_score}");
        assert!(s.score.is_finite() && s.p_value.is_finite());
    }
}

#[cfg(test)]
#[path = "value_tests.rs"]
mod behaviour_tests;
