//! Rate model for count series: how surprising is this window's count, given a learned,
//! slowly adapting rate?
//!
//! Each closed window contributes one count `k` (empty windows count as 0). The model keeps
//! three baselines of the expected count per window:
//!
//! - a recent rate: exponentially weighted mean with weight `alpha` per window;
//! - a long-term rate: the same with the smaller weight `long_alpha`;
//! - a seasonal rate: exponentially weighted means per hour of day (UTC) and, once enough
//!   history exists, a day-of-week factor (see [`SeasonalProfile`]), used after
//!   `seasonal_min_days` (hour of day) and `weekly_min_days` (day of week).
//!
//! The burst test uses the largest available baseline `λ` (floored at `min_expected`), so a
//! quiet spell — a night, or a whole day with no traffic — never makes normal traffic look
//! like a burst. The tail probability `p = P(X ≥ k)` comes from statrs: the Poisson survival
//! function, or the negative binomial one when the recent counts are over-dispersed
//! (variance above the mean; the dispersion index `D = var / mean` is kept and the negative
//! binomial gets mean `λ` and variance `D · λ`). The score is `−log10(p) / decades`, clamped
//! to [0, 1]; it is 0 while the model has seen fewer than `min_windows` windows or when
//! `k < min_count`. Updates are winsorised at `λ + winsor_sigmas · sd + 1`, so one burst does
//! not teach the model that bursts are normal.
//!
//! The dispersion index is the larger of the recent one and a long-term one (second moment
//! weighted with `long_alpha`), so a calm spell of a bursty series does not make its next burst
//! look impossible.
//!
//! **Minimum effect size.** A window is a spike only if, besides its tail probability, its
//! count is at least `min_ratio` times the expectation and exceeds it by at least `min_excess`
//! events; a drop only if its count is at most the expectation over `min_ratio` and at least
//! `min_excess` below it. A tiny rate that quadruples (0.5 to 2 lines a minute) is not news.
//!
//! **Lower tail (drops).** A window that satisfies the drop effect size scores the lower tail
//! `P(X ≤ k)` (Poisson: regularised upper incomplete gamma; negative binomial: `I_p(r, k+1)`).
//! Consecutive low windows multiply their probabilities (their `−log10` are summed, as in a
//! one-sided CUSUM of log-likelihoods, Page 1954), so a busy but bursty series that stays
//! silent for a few windows is a drop even when one silent window is plausible. After a drop is
//! reported ([`RateModel::mark_drop_reported`]) no new drop is scored until a window is no
//! longer low. A series is *busy* ([`RateModel::busy`]) when an empty window would count as a
//! low one and has probability at most 10 %: the engine scores the empty windows of busy
//! series at every close, so a series that stops altogether gives a drop.
//!
//! **Recurring bursts (weekly and daily seasonality at window resolution).** Hour-of-day
//! buckets cannot hold a five-minute job. Each model keeps at most [`MAX_RECURRING`] *slots*:
//! a slot is a time of week (seconds since Monday 00:00 UTC, at the window start) where a
//! window's count met the spike effect size against the regular baseline. A slot's value is an
//! exponentially weighted mean (weight 1/2) of the counts seen at that exact time of week, and
//! it is halved by every empty recurrence; slots whose value falls below `min_count` are
//! forgotten, and a full set replaces its smallest slot. A slot is *weekly* once a burst
//! recurred at its time of week, *daily* once a burst came at exactly its time of day on an
//! earlier day (at least 12 hours before). The spike expectation of a window is the largest of
//! the regular baseline and the values of the weekly or daily slots within
//! [`SLOT_TOLERANCE_SECS`] at the same time of week or, failing that, of the daily slots at
//! the same time of day, whose last burst is at least 12 hours old (a burst never makes its
//! own next minutes expected). So a job that runs at 09:00 every weekday is expected
//! from its third day, a weekly one from its second or third week, and the end of the job is
//! not a drop (the drop expectation uses the regular baseline, whose dispersion the job makes
//! large). This is the seasonal-naive idea (compare with the same time one season ago,
//! Hyndman & Athanasopoulos, *Forecasting: Principles and Practice*, §5.2) kept sparse.
//!
//! Sources: the Poisson and negative binomial tails are the regularised incomplete gamma
//! and beta functions (statrs `gamma_lr`, `gamma_ur`, `beta_reg`); exponentially weighted
//! moments as in Roberts (1959), "Control chart tests based on geometric moving averages".

use aiops_core::Direction;
use serde::{Deserialize, Serialize};

/// Microseconds per hour.
const HOUR_US: i64 = 3_600_000_000;
/// Microseconds per day.
const DAY_US: i64 = 86_400_000_000;
/// Microseconds per week.
const WEEK_US: i64 = 7 * DAY_US;
/// Most recurring-burst slots a count model keeps (see the module documentation).
pub const MAX_RECURRING: usize = 32;
/// Two times of week (or day) within this many seconds match as the same recurring slot.
pub const SLOT_TOLERANCE_SECS: i64 = 60;
/// A recurring slot is used only this long (12 h) after the burst that last updated it.
const SLOT_MIN_AGE_US: i64 = 12 * HOUR_US;
/// A window whose spike score reaches this (the default finding threshold, `p ≤ 1e−5` with
/// the default `decades`) is not learned raw by the long-term moments.
const ANOMALY_SCORE: f64 = 0.5;
/// A series is busy when an empty window has at most this probability.
const BUSY_EMPTY_P: f64 = 0.1;

/// Rate model configuration (`[detect.statistics.rate]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateConfig {
    /// Weight of each window in the recent rate (exponentially weighted). Default 0.02
    /// (about 50 windows of memory); in (0, 1].
    pub alpha: f64,
    /// Weight of each window in the long-term rate. Default 0.001 (about 1000 windows);
    /// in (0, 1].
    pub long_alpha: f64,
    /// Weight of each window in its hour-of-day bucket (the day-of-week buckets use
    /// `seasonal_alpha / 24`, so both remember about the same number of days). Default 0.005:
    /// with 60 s windows a bucket gets 60 windows a day, so it remembers about 3 days of that
    /// hour. In (0, 1].
    pub seasonal_alpha: f64,
    /// Days of history before the hour-of-day profile is used. Default 3.
    pub seasonal_min_days: u32,
    /// Days of history before the day-of-week factor is used. Default 14.
    pub weekly_min_days: u32,
    /// Windows observed before the series is scored at all. Default 30.
    pub min_windows: u32,
    /// Smallest count that can score above 0 (a burst of 1 is not a burst). Default 5.
    pub min_count: u64,
    /// Events (summed over all windows) the series must have seen before it is scored.
    /// Default 0: empty windows are evidence of a quiet series (a log group that never logs
    /// errors), so by default only `min_windows` of observation are required.
    pub min_events: u64,
    /// Floor of the expected count per window, so a series that was always empty still has a
    /// finite, positive rate. Default 0.05; > 0.
    pub min_expected: f64,
    /// Use the negative binomial tail when counts are over-dispersed (else always Poisson).
    /// Default true.
    pub negative_binomial: bool,
    /// Score scale: `score = −log10(p) / decades`. Default 10; > 0.
    pub decades: f64,
    /// Counts above `λ + winsor_sigmas · sd + 1` are clipped before updating the model.
    /// Default 4; > 0.
    pub winsor_sigmas: f64,
    /// Minimum effect size, ratio: a spike needs `k ≥ min_ratio · λ`, a drop `k ≤ λ / min_ratio`.
    /// Default 2; ≥ 1.
    pub min_ratio: f64,
    /// Minimum effect size, events per window: a spike needs `k − λ ≥ min_excess`, a drop
    /// `λ − k ≥ min_excess` (so only a series expecting at least this many events per window
    /// can drop). Default 10; ≥ 0.
    pub min_excess: f64,
}

impl Default for RateConfig {
    fn default() -> Self {
        RateConfig {
            alpha: 0.02,
            long_alpha: 0.001,
            seasonal_alpha: 0.005,
            seasonal_min_days: 3,
            weekly_min_days: 14,
            min_windows: 30,
            min_count: 5,
            min_events: 0,
            min_expected: 0.05,
            negative_binomial: true,
            decades: 10.0,
            winsor_sigmas: 4.0,
            min_ratio: 2.0,
            min_excess: 10.0,
        }
    }
}

/// Hour-of-day (24 buckets, UTC) and day-of-week (7 buckets) exponentially weighted means of
/// the count per window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeasonalProfile {
    hour: [f64; 24],
    day: [f64; 7],
    /// Windows learned per hour bucket (saturating), for a bias-corrected start.
    hour_n: [u16; 24],
    hour_seen: u32,
    day_seen: u8,
}

impl Default for SeasonalProfile {
    fn default() -> Self {
        SeasonalProfile {
            hour: [0.0; 24],
            day: [0.0; 7],
            hour_n: [0; 24],
            hour_seen: 0,
            day_seen: 0,
        }
    }
}

/// Hour of day (0..24) and day of week (0 = Monday .. 6 = Sunday) of a time in µs, UTC.
pub fn hour_and_weekday(t: i64) -> (usize, usize) {
    let hour = (t.rem_euclid(DAY_US) / HOUR_US) as usize;
    // 1970-01-01 was a Thursday (index 3 with Monday = 0).
    let day = ((t.div_euclid(DAY_US) + 3).rem_euclid(7)) as usize;
    (hour.min(23), day.min(6))
}

impl SeasonalProfile {
    fn update(&mut self, t: i64, k: f64, alpha: f64) {
        let (h, d) = hour_and_weekday(t);
        if let Some(v) = self.hour.get_mut(h) {
            // The first windows of a bucket are averaged (weight 1/n), not taken as the level.
            let n = self.hour_n.get(h).copied().unwrap_or(u16::MAX);
            let a = alpha.max(1.0 / (f64::from(n) + 1.0));
            if self.hour_seen & (1 << h) == 0 {
                *v = k;
                self.hour_seen |= 1 << h;
            } else {
                *v += a * (k - *v);
            }
            if let Some(c) = self.hour_n.get_mut(h) {
                *c = c.saturating_add(1);
            }
        }
        if let Some(v) = self.day.get_mut(d) {
            if self.day_seen & (1 << d) == 0 {
                *v = k;
                self.day_seen |= 1 << d;
            } else {
                *v += alpha / 24.0 * (k - *v);
            }
        }
    }

    /// Applies `n` empty windows to the buckets of the hour starting at `t`.
    fn decay(&mut self, t: i64, n: u64, alpha: f64) {
        if n == 0 {
            return;
        }
        let (h, d) = hour_and_weekday(t);
        if let Some(v) = self.hour.get_mut(h) {
            // Bias-corrected like `update`: while the bucket is young, the n zeros are averaged
            // in; afterwards each decays it by (1 − α).
            let seen = u64::from(self.hour_n.get(h).copied().unwrap_or(u16::MAX));
            *v *= zeros_factor(seen, n, alpha);
            if let Some(c) = self.hour_n.get_mut(h) {
                *c = u16::try_from(seen.saturating_add(n)).unwrap_or(u16::MAX);
            }
        }
        if let Some(v) = self.day.get_mut(d) {
            *v *= decay_factor(alpha / 24.0, n);
        }
        self.hour_seen |= 1 << h;
        self.day_seen |= 1 << d;
    }

    /// The seasonal expected count for a window starting at `t`: the hour-of-day mean, times
    /// the day-of-week factor (that day's mean over the mean of all days) when `weekly`.
    /// `None` when the hour bucket has never been observed.
    pub fn expected(&self, t: i64, weekly: bool) -> Option<f64> {
        let (h, d) = hour_and_weekday(t);
        if self.hour_seen & (1 << h) == 0 {
            return None;
        }
        let base = *self.hour.get(h)?;
        if weekly && self.day_seen == 0x7f {
            let mean = self.day.iter().sum::<f64>() / 7.0;
            if mean > 0.0 {
                return Some(base * self.day.get(d)? / mean);
            }
        }
        Some(base)
    }
}

/// `(1 − alpha)^n`, computed in log space so huge `n` gives 0 rather than overflow.
fn decay_factor(alpha: f64, n: u64) -> f64 {
    let a = alpha.clamp(0.0, 1.0);
    if a >= 1.0 {
        return 0.0;
    }
    ((n as f64) * (1.0 - a).ln()).exp()
}

/// The factor by which `n` zeros scale a bias-corrected exponentially weighted mean that has
/// learned `seen` values: the first zeros, while the weight `1 / (count + 1)` exceeds `alpha`,
/// are averaged in (`seen / (seen + young)`); the others decay it by `(1 − alpha)` each.
fn zeros_factor(seen: u64, n: u64, alpha: f64) -> f64 {
    let limit = (1.0 / alpha.max(1e-12)).floor() as u64;
    let young = limit.saturating_sub(seen).min(n);
    let mut f = 1.0;
    if young > 0 && seen > 0 {
        f = seen as f64 / (seen + young) as f64;
    }
    f * decay_factor(alpha, n - young)
}

/// Count of multiples of `len` in `[a, b)`.
fn multiples_in(a: i64, b: i64, len: i64) -> u64 {
    if b <= a || len <= 0 {
        return 0;
    }
    let first = a.div_euclid(len) + i64::from(a.rem_euclid(len) != 0);
    let last_excl = b.div_euclid(len) + i64::from(b.rem_euclid(len) != 0);
    u64::try_from(last_excl - first).unwrap_or(0)
}

/// The score of one window's count.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateScore {
    /// Score in [0, 1] (0 while warming up, below the effect size or below `min_count`).
    pub score: f64,
    /// Tail probability under the model of the scored direction (1 when not scored): `P(X ≥ k)`
    /// for a spike; for a drop, the product of `P(X ≤ k)` over the run of low windows ending
    /// here.
    pub p_value: f64,
    /// The expectation `λ` the count was compared with (expected count per window): the spike
    /// expectation (regular baseline or recurring burst) unless the window is a drop
    /// candidate, then the regular baseline.
    pub expected: f64,
    /// Whether the negative binomial (rather than Poisson) tail was used.
    pub negative_binomial: bool,
    /// Which tail was scored.
    pub direction: Direction,
}

/// One recurring-burst slot (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct Slot {
    /// Seconds since Monday 00:00 UTC of the window start.
    pos: u32,
    /// Exponentially weighted count at this time of week.
    value: f32,
    /// Whether the burst recurred at the same time of week.
    weekly: bool,
    /// Whether a burst came at the same time of day on another day.
    daily: bool,
    /// Window start (µs) of its last burst: a slot is only used from [`SLOT_MIN_AGE_US`] after
    /// it, so a burst never makes its own next minutes expected.
    last: i64,
}

/// The rate model of one count series: fixed-size moments and profile (about 400 bytes) plus
/// at most [`MAX_RECURRING`] slots (12 bytes each, allocated only for series with bursts).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RateModel {
    /// Recent EW mean and second moment of the count.
    mean: f64,
    m2: f64,
    /// Long-term EW mean and second moment.
    long_mean: f64,
    long_m2: f64,
    seasonal: SeasonalProfile,
    windows: u64,
    /// Events learned so far (sum of counts).
    events: u64,
    first_window: Option<i64>,
    /// Recurring-burst slots.
    slots: Vec<Slot>,
    /// `−log10` of the product of the lower-tail probabilities of the current run of low
    /// windows (0 when the last window was not low).
    drop_run: f64,
    /// A drop was reported in the current run of low windows.
    drop_reported: bool,
    /// Whether an empty window would be a drop candidate with probability ≤ 10 % (as of the
    /// last window learned).
    busy: bool,
}

impl Default for RateModel {
    fn default() -> Self {
        Self::new()
    }
}

/// Seconds since Monday 00:00 UTC of a time in µs.
fn time_of_week(t: i64) -> u32 {
    // 1970-01-01 was a Thursday: Monday 00:00 was 3 days earlier.
    u32::try_from((t + 3 * DAY_US).rem_euclid(WEEK_US) / 1_000_000).unwrap_or(0)
}

/// Circular distance between two positions modulo `period` (seconds).
fn circular(a: u32, b: u32, period: u32) -> u32 {
    let d = a.abs_diff(b) % period;
    d.min(period - d)
}

/// Score in [0, 1] for a tail probability of `10^(−decades_seen)`: `decades_seen / decades`.
fn decades_score(decades_seen: f64, decades: f64) -> f64 {
    if decades_seen.is_nan() || !(decades > 0.0 && decades.is_finite()) {
        return 0.0;
    }
    (decades_seen / decades).clamp(0.0, 1.0)
}

/// `−log10 p`, with `p` clamped to `[1e−300, 1]`.
fn neg_log10(p: f64) -> f64 {
    if p.is_nan() {
        return 0.0;
    }
    -p.clamp(1e-300, 1.0).log10()
}

impl RateModel {
    /// An empty model.
    pub fn new() -> Self {
        RateModel {
            mean: 0.0,
            m2: 0.0,
            long_mean: 0.0,
            long_m2: 0.0,
            seasonal: SeasonalProfile::default(),
            windows: 0,
            events: 0,
            first_window: None,
            slots: Vec::new(),
            drop_run: 0.0,
            drop_reported: false,
            busy: false,
        }
    }

    /// Windows observed so far (including empty ones).
    pub fn windows(&self) -> u64 {
        self.windows
    }

    /// The regular baseline for a window starting at `t` (µs): the largest of the recent,
    /// long-term and (when enough history exists) seasonal rates, floored at `min_expected`.
    /// Recurring bursts are not included (see [`RateModel::expected_spike`]).
    pub fn baseline(&self, t: i64, cfg: &RateConfig) -> f64 {
        self.combined(t, cfg, f64::max)
    }

    /// The recent, long-term and (when enough history exists) seasonal rates at `t` folded
    /// with `pick` (`max` or `min`), floored at `min_expected`.
    fn combined(&self, t: i64, cfg: &RateConfig, pick: fn(f64, f64) -> f64) -> f64 {
        let mut b = pick(self.mean, self.long_mean);
        if let Some(first) = self.first_window {
            let days = (t - first) / DAY_US;
            if days >= i64::from(cfg.seasonal_min_days)
                && let Some(s) = self
                    .seasonal
                    .expected(t, days >= i64::from(cfg.weekly_min_days))
            {
                b = pick(b, s);
            }
        }
        if b.is_finite() {
            b.max(cfg.min_expected)
        } else {
            cfg.min_expected
        }
    }

    /// The drop baseline for a window starting at `t` (µs): the smallest of the recent,
    /// long-term and (when enough history exists) seasonal rates, floored at `min_expected`.
    /// The lower tail is scored against the lowest plausible expectation, as the upper tail is
    /// against the highest ([`RateModel::baseline`]): a scheduled step down (business hours
    /// ending) is not a drop once the time-of-day profile knows it, and a series is a drop
    /// candidate only when it falls below what every baseline expects.
    pub fn drop_baseline(&self, t: i64, cfg: &RateConfig) -> f64 {
        self.combined(t, cfg, f64::min)
    }

    /// The value of the confirmed recurring burst expected at `t` (µs): the largest value of
    /// the confirmed slots within [`SLOT_TOLERANCE_SECS`] at the same time of week, else at the
    /// same time of day; `None` when there is none.
    pub fn recurring(&self, t: i64) -> Option<f64> {
        let pos = time_of_week(t);
        let tol = SLOT_TOLERANCE_SECS as u32;
        let best = |period: u32, daily_only: bool| {
            self.slots
                .iter()
                .filter(|s| {
                    (s.daily || (s.weekly && !daily_only))
                        && t.saturating_sub(s.last) >= SLOT_MIN_AGE_US
                        && circular(s.pos, pos, period) <= tol
                })
                .map(|s| f64::from(s.value))
                .reduce(f64::max)
        };
        best(7 * 86_400, false).or_else(|| best(86_400, true))
    }

    /// Whether the model holds any recurring-burst slot.
    pub fn has_recurring(&self) -> bool {
        !self.slots.is_empty()
    }

    /// The spike expectation at `t`: the regular baseline, or a recurring burst when larger.
    pub fn expected_spike(&self, t: i64, cfg: &RateConfig) -> f64 {
        self.spike_expectation(t, self.baseline(t, cfg))
    }

    fn spike_expectation(&self, t: i64, b: f64) -> f64 {
        if self.slots.is_empty() {
            return b;
        }
        match self.recurring(t) {
            Some(r) if r.is_finite() => b.max(r),
            _ => b,
        }
    }

    /// The dispersion index `var / mean` (at least 1): the larger of the recent and the
    /// long-term one.
    pub fn dispersion(&self) -> f64 {
        fn index(mean: f64, m2: f64) -> f64 {
            if mean <= 0.0 {
                return 1.0;
            }
            let d = (m2 - mean * mean).max(0.0) / mean;
            if d.is_finite() { d.max(1.0) } else { 1.0 }
        }
        index(self.mean, self.m2).max(index(self.long_mean, self.long_m2))
    }

    /// Whether the series is busy: past `min_windows`, and an empty window now would be a drop
    /// candidate (regular baseline at least `min_excess`) with probability at most 10 %. The
    /// engine scores the empty windows of busy series at every close.
    pub fn busy(&self) -> bool {
        self.busy
    }

    fn compute_busy(&self, t: i64, cfg: &RateConfig) -> bool {
        if self.windows < u64::from(cfg.min_windows) {
            return false;
        }
        let lambda = self.drop_baseline(t, cfg);
        if lambda < cfg.min_excess.max(f64::MIN_POSITIVE) || lambda < cfg.min_count as f64 {
            return false;
        }
        // P(X = 0) in closed form (no special function at every window): e^−λ (Poisson),
        // (1/D)^(λ / (D − 1)) (negative binomial with mean λ and variance D·λ).
        let (d, nb) = self.tail_model(cfg);
        let ln_p0 = if nb {
            -d.ln() * lambda / (d - 1.0)
        } else {
            -lambda
        };
        ln_p0 <= BUSY_EMPTY_P.ln()
    }

    fn tail_model(&self, cfg: &RateConfig) -> (f64, bool) {
        let d = self.dispersion();
        (d, cfg.negative_binomial && d > 1.0 + 1e-9)
    }

    fn lower_tail(&self, k: u64, lambda: f64, cfg: &RateConfig) -> f64 {
        let (d, nb) = self.tail_model(cfg);
        if nb {
            negative_binomial_cdf(k, lambda, d * lambda)
        } else {
            poisson_cdf(k, lambda)
        }
    }

    /// Whether `k` is a drop candidate against the regular baseline `lambda`.
    fn low(k: u64, lambda: f64, cfg: &RateConfig) -> bool {
        let k = k as f64;
        k <= lambda / cfg.min_ratio.max(1.0) && lambda - k >= cfg.min_excess.max(0.0)
    }

    /// Scores a count `k` for the window starting at `t` without updating the model: the
    /// drop tail when `k` is a drop candidate, else the spike tail (see the module
    /// documentation).
    pub fn score(&self, t: i64, k: u64, cfg: &RateConfig) -> RateScore {
        self.score_at(t, k, cfg, self.baseline(t, cfg))
    }

    /// [`RateModel::score`] with the regular baseline at `t` already known.
    fn score_at(&self, t: i64, k: u64, cfg: &RateConfig, regular: f64) -> RateScore {
        let (d, use_nb) = self.tail_model(cfg);
        let warm = self.windows >= u64::from(cfg.min_windows) && self.events >= cfg.min_events;
        let floor = self.drop_baseline(t, cfg);
        if Self::low(k, floor, cfg) {
            let mut out = RateScore {
                score: 0.0,
                p_value: 1.0,
                expected: floor,
                negative_binomial: use_nb,
                direction: Direction::Drop,
            };
            if warm {
                let run = self.drop_run + neg_log10(self.lower_tail(k, floor, cfg));
                out.p_value = 10f64.powf(-run);
                if !self.drop_reported {
                    out.score = decades_score(run, cfg.decades);
                }
            }
            return out;
        }
        let lambda = self.spike_expectation(t, regular);
        let mut out = RateScore {
            score: 0.0,
            p_value: 1.0,
            expected: lambda,
            negative_binomial: use_nb,
            direction: Direction::Spike,
        };
        let kf = k as f64;
        if !warm
            || k < cfg.min_count.max(1)
            || kf < cfg.min_ratio.max(1.0) * lambda
            || kf - lambda < cfg.min_excess.max(0.0)
        {
            return out;
        }
        let p = if use_nb {
            negative_binomial_sf(k, lambda, d * lambda)
        } else {
            poisson_sf(k, lambda)
        };
        out.p_value = p;
        out.score = decades_score(neg_log10(p), cfg.decades);
        out
    }

    /// Scores and then learns the count `k` of the window starting at `t`.
    pub fn observe(&mut self, t: i64, k: u64, cfg: &RateConfig) -> RateScore {
        let regular = self.baseline(t, cfg);
        let s = self.score_at(t, k, cfg, regular);
        let floor = self.drop_baseline(t, cfg);
        if Self::low(k, floor, cfg) {
            self.drop_run += neg_log10(self.lower_tail(k, floor, cfg));
        } else {
            self.drop_run = 0.0;
            self.drop_reported = false;
        }
        self.events = self.events.saturating_add(k);
        self.learn_slots(t, k, regular, cfg);
        self.learn(t, k as f64, &s, cfg);
        self.busy = self.compute_busy(t + 1, cfg);
        s
    }

    /// Records that a drop finding was made: no new drop is scored until a window is no longer
    /// low.
    pub fn mark_drop_reported(&mut self) {
        self.drop_reported = true;
    }

    fn learn_slots(&mut self, t: i64, k: u64, regular: f64, cfg: &RateConfig) {
        let kf = k as f64;
        let burst = k >= cfg.min_count.max(1)
            && kf >= cfg.min_ratio.max(1.0) * regular
            && kf - regular >= cfg.min_excess.max(0.0);
        if self.slots.is_empty() && !burst {
            return;
        }
        let pos = time_of_week(t);
        if let Some(i) = self.slots.iter().position(|s| s.pos == pos) {
            if let Some(s) = self.slots.get_mut(i) {
                let v = f64::from(s.value);
                s.value = (v + 0.5 * (kf - v)) as f32;
                if kf >= cfg.min_ratio.max(1.0) * regular {
                    s.weekly = true;
                    s.last = t;
                }
                if f64::from(s.value) >= cfg.min_count as f64 {
                    return;
                }
            }
            self.slots.swap_remove(i);
            return;
        }
        if !burst {
            return;
        }
        // A burst at the same time of day on an earlier day confirms both.
        let mut daily = false;
        for s in &mut self.slots {
            if circular(s.pos, pos, 86_400) == 0 && t.saturating_sub(s.last) >= SLOT_MIN_AGE_US {
                s.daily = true;
                daily = true;
            }
        }
        let slot = Slot {
            pos,
            value: kf as f32,
            weekly: false,
            daily,
            last: t,
        };
        if self.slots.len() < MAX_RECURRING {
            self.slots.push(slot);
        } else if let Some((i, _)) = self
            .slots
            .iter()
            .enumerate()
            .min_by(|a, b| a.1.value.total_cmp(&b.1.value))
            && let Some(s) = self.slots.get_mut(i)
            && s.value < slot.value
        {
            *s = slot;
        }
    }

    fn learn(&mut self, t: i64, k: f64, s: &RateScore, cfg: &RateConfig) {
        let lambda = s.expected;
        let sd = (self.dispersion() * lambda).sqrt();
        let cap = lambda + cfg.winsor_sigmas * sd + 1.0;
        let warm = self.windows >= u64::from(cfg.min_windows);
        let x = if warm { k.min(cap) } else { k };
        // The long-term moments, which carry the dispersion of a bursty series, learn the raw
        // count unless the window was itself anomalous: winsorising every window would clip
        // exactly the tail that makes a series over-dispersed, and underestimate it.
        let anomalous = s.direction == Direction::Spike && s.score >= ANOMALY_SCORE;
        let xl = if warm && anomalous { x } else { k };
        // Bias-corrected start: the first windows are averaged, not taken as the level.
        let n = self.windows as f64 + 1.0;
        let a = cfg.alpha.max(1.0 / n);
        let la = cfg.long_alpha.max(1.0 / n);
        self.mean += a * (x - self.mean);
        self.m2 += a * (x * x - self.m2);
        self.long_mean += la * (xl - self.long_mean);
        self.long_m2 += la * (xl * xl - self.long_m2);
        self.seasonal.update(t, x, cfg.seasonal_alpha);
        self.first_window.get_or_insert(t);
        self.windows += 1;
    }

    /// Learns `n` consecutive empty windows starting at `start` (µs, window-aligned) of length
    /// `len` µs, in `O(hours + slots)` rather than `O(n)`: the exponentially weighted moments
    /// decay by `(1 − α)^n` in closed form, each hour bucket by `(1 − α)` to the number of its
    /// windows, and each recurring slot is halved once per recurrence in the gap. Gaps longer
    /// than two weeks only replay their last two weeks into the buckets (older zeros would have
    /// decayed them to at most `(1 − α)^(336 · windows per hour)`). The drop run is not
    /// extended: the engine scores the empty windows of busy series one by one instead.
    pub fn observe_empty(&mut self, start: i64, n: u64, len: i64, cfg: &RateConfig) {
        if n == 0 || len <= 0 {
            return;
        }
        if self.windows == 0 {
            // A series starts with its first non-empty window; leading zeros carry nothing.
            return;
        }
        let f = zeros_factor(self.windows, n, cfg.alpha);
        self.mean *= f;
        self.m2 *= f;
        let lf = zeros_factor(self.windows, n, cfg.long_alpha);
        self.long_mean *= lf;
        self.long_m2 *= lf;
        let end = start.saturating_add(len.saturating_mul(i64::try_from(n).unwrap_or(i64::MAX)));
        let from = start.max(end.saturating_sub(14 * DAY_US));
        let mut h = from.div_euclid(HOUR_US) * HOUR_US;
        while h < end {
            let a = h.max(from);
            let b = (h + HOUR_US).min(end);
            let count = multiples_in(a, b, len);
            self.seasonal.decay(a, count, cfg.seasonal_alpha);
            h += HOUR_US;
        }
        let min = cfg.min_count as f64;
        self.slots.retain_mut(|s| {
            // Window starts at this time of week: t ≡ pos − 3 days (mod week).
            let offset = i64::from(s.pos) * 1_000_000 - 3 * DAY_US;
            let times = multiples_in(start - offset, end - offset, WEEK_US).min(64);
            s.value = (f64::from(s.value) * 0.5f64.powi(times as i32)) as f32;
            f64::from(s.value) >= min
        });
        self.drop_run = 0.0;
        self.drop_reported = false;
        self.windows = self.windows.saturating_add(n);
        self.busy = self.compute_busy(end, cfg);
    }
}

/// `P(X ≤ k)` for `X ~ Poisson(λ)`: the regularised upper incomplete gamma `Q(k + 1, λ)`
/// (statrs `checked_gamma_ur`). 1 (no evidence) for invalid inputs.
pub fn poisson_cdf(k: u64, lambda: f64) -> f64 {
    if !(lambda.is_finite() && lambda > 0.0) {
        return 1.0;
    }
    match statrs::function::gamma::checked_gamma_ur(k as f64 + 1.0, lambda) {
        Ok(p) if p.is_finite() => p.clamp(0.0, 1.0),
        _ => 1.0,
    }
}

/// `P(X ≤ k)` for a negative binomial with the given mean and variance (variance > mean):
/// with `r = mean² / (var − mean)` and `p = mean / var`, `P(X ≤ k) = I_p(r, k + 1)` (statrs
/// `checked_beta_reg`, as in its `NegativeBinomial::cdf`). Falls back to [`poisson_cdf`] when
/// the variance does not exceed the mean; 1 for invalid inputs.
pub fn negative_binomial_cdf(k: u64, mean: f64, var: f64) -> f64 {
    if !(mean.is_finite() && mean > 0.0 && var.is_finite()) {
        return 1.0;
    }
    if var <= mean * (1.0 + 1e-9) {
        return poisson_cdf(k, mean);
    }
    let p = mean / var;
    let r = mean * mean / (var - mean);
    if !(r > 0.0 && r.is_finite() && p > 0.0 && p < 1.0) {
        return 1.0;
    }
    match statrs::function::beta::checked_beta_reg(r, k as f64 + 1.0, p) {
        Ok(v) if v.is_finite() => v.clamp(0.0, 1.0),
        _ => 1.0,
    }
}

/// `P(X ≥ k)` for `X ~ Poisson(λ)`: the regularised lower incomplete gamma `P(k, λ)` (statrs
/// `checked_gamma_lr`). 1 for `k = 0`; 1 (no evidence) for invalid inputs.
pub fn poisson_sf(k: u64, lambda: f64) -> f64 {
    if k == 0 {
        return 1.0;
    }
    if !(lambda.is_finite() && lambda > 0.0) {
        return 1.0;
    }
    match statrs::function::gamma::checked_gamma_lr(k as f64, lambda) {
        Ok(p) if p.is_finite() => p.clamp(0.0, 1.0),
        _ => 1.0,
    }
}

/// `P(X ≥ k)` for a negative binomial with the given mean and variance (variance > mean):
/// `r = mean² / (var − mean)`, `p = mean / var`, and `P(X ≥ k) = I_{1−p}(k, r)` (statrs
/// `checked_beta_reg`, as in its `NegativeBinomial::sf`). Falls back to [`poisson_sf`] when
/// the variance does not exceed the mean; 1 for invalid inputs.
pub fn negative_binomial_sf(k: u64, mean: f64, var: f64) -> f64 {
    if k == 0 {
        return 1.0;
    }
    if !(mean.is_finite() && mean > 0.0 && var.is_finite()) {
        return 1.0;
    }
    if var <= mean * (1.0 + 1e-9) {
        return poisson_sf(k, mean);
    }
    let p = mean / var;
    let r = mean * mean / (var - mean);
    if !(r > 0.0 && r.is_finite() && p > 0.0 && p < 1.0) {
        return 1.0;
    }
    match statrs::function::beta::checked_beta_reg(k as f64, r, 1.0 - p) {
        Ok(v) if v.is_finite() => v.clamp(0.0, 1.0),
        _ => 1.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use statrs::distribution::{DiscreteCDF, NegativeBinomial, Poisson};

    const MIN: i64 = 60_000_000;

    #[test]
    fn poisson_tail_matches_statrs_and_exact_values() {
        // P(X >= 1 | 1) = 1 - e^-1.
        assert!((poisson_sf(1, 1.0) - (1.0 - (-1.0f64).exp())).abs() < 1e-12);
        // P(X >= 3 | 2) = 1 - e^-2 (1 + 2 + 2) = 0.3233235838169366
        assert!((poisson_sf(3, 2.0) - 0.323_323_583_816_936_6).abs() < 1e-12);
        let d = Poisson::new(4.5).unwrap();
        assert!((poisson_sf(9, 4.5) - d.sf(8)).abs() < 1e-14);
        assert_eq!(poisson_sf(0, 3.0), 1.0);
        assert_eq!(poisson_sf(5, 0.0), 1.0);
        assert_eq!(poisson_sf(5, f64::NAN), 1.0);
        assert_eq!(poisson_sf(5, f64::INFINITY), 1.0);
        // Far tail stays positive and finite.
        let p = poisson_sf(1000, 0.05);
        assert!(p.is_finite() && p >= 0.0 && p < 1e-300_f64.max(1e-200));
    }

    #[test]
    fn negative_binomial_tail_matches_statrs() {
        // mean 4, var 8 -> p = 0.5, r = 4.
        let d = NegativeBinomial::new(4.0, 0.5).unwrap();
        assert!((negative_binomial_sf(10, 4.0, 8.0) - d.sf(9)).abs() < 1e-14);
        // Not over-dispersed: Poisson.
        assert_eq!(negative_binomial_sf(7, 3.0, 3.0), poisson_sf(7, 3.0));
        assert_eq!(negative_binomial_sf(7, 3.0, f64::NAN), 1.0);
        // Over-dispersion makes the same count less surprising.
        assert!(negative_binomial_sf(12, 4.0, 12.0) > poisson_sf(12, 4.0));
    }

    fn warm(model: &mut RateModel, cfg: &RateConfig, k: u64, windows: i64) -> i64 {
        let mut t = 0;
        for i in 0..windows {
            t = i * MIN;
            model.observe(t, k, cfg);
        }
        t + MIN
    }

    #[test]
    fn tiny_history_never_scores() {
        let cfg = RateConfig::default();
        let mut m = RateModel::new();
        let s = m.observe(0, 1000, &cfg);
        assert_eq!(s.score, 0.0);
        assert_eq!(s.p_value, 1.0);
    }

    #[test]
    fn burst_over_constant_rate_scores_exactly() {
        let cfg = RateConfig::default();
        let mut m = RateModel::new();
        let t = warm(&mut m, &cfg, 2, 100);
        // Zero variance: dispersion 1, Poisson with λ = 2.
        assert_eq!(m.dispersion(), 1.0);
        let s = m.score(t, 20, &cfg);
        assert_eq!(s.expected, 2.0);
        assert!(!s.negative_binomial);
        let p = poisson_sf(20, 2.0);
        assert_eq!(s.p_value, p);
        assert!((s.score - (-p.log10() / 10.0).min(1.0)).abs() < 1e-12);
        // A normal count scores 0 (below min_count) and nothing is NaN.
        assert_eq!(m.score(t, 3, &cfg).score, 0.0);
    }

    #[test]
    fn all_zero_history_has_finite_floor() {
        let cfg = RateConfig {
            min_events: 0,
            ..RateConfig::default()
        };
        let mut m = RateModel::new();
        // A series whose first window had 1 event, then only empty windows.
        m.observe(0, 1, &cfg);
        m.observe_empty(MIN, 200, MIN, &cfg);
        // 20 events: past the effect size (ratio 2, excess 10) over the floor.
        let s = m.score(201 * MIN, 20, &cfg);
        assert!(s.score.is_finite() && s.score > 0.0 && s.score <= 1.0);
        assert!(s.expected >= cfg.min_expected);
    }

    #[test]
    fn too_few_events_in_history_never_score() {
        let cfg = RateConfig {
            min_events: 50,
            ..RateConfig::default()
        };
        let mut m = RateModel::new();
        // 40 windows (past min_windows) but only one event in them: not a baseline.
        m.observe(0, 1, &cfg);
        m.observe_empty(MIN, 39, MIN, &cfg);
        let s = m.score(40 * MIN, 8, &cfg);
        assert_eq!(s.score, 0.0);
        assert_eq!(s.p_value, 1.0);
    }

    #[test]
    fn a_day_without_traffic_does_not_inflate_normal_traffic() {
        let cfg = RateConfig::default();
        let mut m = RateModel::new();
        // Four days of 10 per minute.
        let day_windows = 1440;
        let t = warm(&mut m, &cfg, 10, 4 * day_windows);
        // One day with no traffic at all.
        m.observe_empty(t, day_windows as u64, MIN, &cfg);
        let after = t + day_windows * MIN;
        // Recent mean decayed to ~0, but the long-term and seasonal baselines remember.
        assert!(m.mean < 1e-6);
        let s = m.score(after, 10, &cfg);
        assert!(s.expected > 5.0, "baseline {}", s.expected);
        assert!(s.score < 0.1, "score {}", s.score);
    }

    #[test]
    fn empty_windows_match_explicit_zeros_for_moments() {
        let cfg = RateConfig::default();
        let mut a = RateModel::new();
        let mut b = RateModel::new();
        a.observe(0, 8, &cfg);
        b.observe(0, 8, &cfg);
        a.observe_empty(MIN, 5, MIN, &cfg);
        for i in 1..=5 {
            b.observe(i * MIN, 0, &cfg);
        }
        assert!((a.mean - b.mean).abs() < 1e-12);
        assert!((a.m2 - b.m2).abs() < 1e-9);
        assert!((a.long_mean - b.long_mean).abs() < 1e-12);
        assert_eq!(a.windows(), b.windows());
    }

    #[test]
    fn busy_uses_the_probability_of_an_empty_window() {
        let cfg = RateConfig::default();
        let mut m = RateModel::new();
        warm(&mut m, &cfg, 12, 100);
        // Poisson(12): P(0) = e^-12, busy.
        assert!(m.busy());
        assert!((m.lower_tail(0, 12.0, &cfg) - (-12f64).exp()).abs() < 1e-15);
        // Below min_excess (10 per window): never busy.
        let mut m = RateModel::new();
        warm(&mut m, &cfg, 9, 100);
        assert!(!m.busy());
        // Mean 12 with dispersion 12: P(0) = (1/12)^(12/11) = 0.0665 <= 0.1, busy; with
        // dispersion 40: (1/40)^(12/39) = 0.32, not busy.
        let nb = |d: f64| -> f64 { (1.0 / d).powf(12.0 / (d - 1.0)) };
        assert!((nb(12.0) - 0.0665).abs() < 1e-3 && (nb(40.0) - 0.3216).abs() < 1e-3);
        let mut m = RateModel::new();
        for i in 0..200 {
            // Alternating 0 and 24: mean 12, variance 144, dispersion 12.
            m.observe(i * MIN, if i % 2 == 0 { 0 } else { 24 }, &cfg);
        }
        assert!((m.dispersion() - 12.0).abs() < 0.5, "{}", m.dispersion());
        assert!(m.busy());
    }

    #[test]
    fn drop_of_a_busy_series_scores_the_lower_tail() {
        let cfg = RateConfig::default();
        let mut m = RateModel::new();
        let t = warm(&mut m, &cfg, 100, 100);
        assert!(m.busy());
        // Silence: P(X = 0 | Poisson(100)) = e^-100, far past 10 decades.
        let s = m.score(t, 0, &cfg);
        assert_eq!(s.direction, Direction::Drop);
        assert_eq!(s.expected, 100.0);
        assert_eq!(s.score, 1.0);
        // A steep drop: 40 of 100 is at most 100 / 2 and 60 below.
        let s = m.score(t, 40, &cfg);
        assert_eq!(s.direction, Direction::Drop);
        assert_eq!(s.p_value, 10f64.powf(-neg_log10(poisson_cdf(40, 100.0))));
        assert!(s.score > 0.5);
        // 60 of 100 is not half: no drop, and no spike either.
        let s = m.score(t, 60, &cfg);
        assert_eq!((s.direction, s.score), (Direction::Spike, 0.0));
        // Once reported, the same run of low windows reports no new drop.
        m.observe(t, 0, &cfg);
        m.mark_drop_reported();
        assert_eq!(m.score(t + MIN, 0, &cfg).score, 0.0);
        m.observe(t + MIN, 100, &cfg);
        assert_eq!(m.score(t + 2 * MIN, 0, &cfg).score, 1.0);
    }

    #[test]
    fn lower_tails_match_statrs() {
        let d = Poisson::new(4.5).unwrap();
        assert!((poisson_cdf(3, 4.5) - d.cdf(3)).abs() < 1e-14);
        // mean 4, var 8 -> p = 0.5, r = 4.
        let d = NegativeBinomial::new(4.0, 0.5).unwrap();
        assert!((negative_binomial_cdf(2, 4.0, 8.0) - d.cdf(2)).abs() < 1e-14);
        assert_eq!(negative_binomial_cdf(2, 4.0, 4.0), poisson_cdf(2, 4.0));
        assert_eq!(poisson_cdf(2, f64::NAN), 1.0);
    }

    #[test]
    fn effect_size_gates_spikes() {
        let cfg = RateConfig::default();
        let mut m = RateModel::new();
        let t = warm(&mut m, &cfg, 2, 100);
        // 11 is 5.5 times 2 but only 9 above it: not a spike.
        assert_eq!(m.score(t, 11, &cfg).score, 0.0);
        assert_eq!(m.score(t, 11, &cfg).p_value, 1.0);
        let s = m.score(t, 12, &cfg);
        assert_eq!(s.p_value, poisson_sf(12, 2.0));
        // With a large expectation, the ratio decides: 150 of 100 is not twice.
        let mut m = RateModel::new();
        let t = warm(&mut m, &cfg, 100, 100);
        assert_eq!(m.score(t, 150, &cfg).score, 0.0);
        assert!(m.score(t, 200, &cfg).score > 0.5);
    }

    #[test]
    fn a_weekly_burst_is_expected_from_its_second_recurrence() {
        let cfg = RateConfig::default();
        let mut m = RateModel::new();
        // Monday 2024-01-01 09:00 UTC, as minutes since the epoch.
        let monday = 1_704_067_200 * 1_000_000;
        let job = |w: i64| monday + w * 7 * DAY_US + 9 * HOUR_US;
        for w in 0..3i64 {
            for i in 0..(7 * 1440) {
                let t = monday + w * 7 * DAY_US + i * MIN;
                let k = if (0..5).contains(&(t - job(w)).div_euclid(MIN)) {
                    100
                } else {
                    1
                };
                if t == job(w) {
                    let expected = m.recurring(t);
                    // Week 1: nothing known; week 2: one burst, not yet a recurrence;
                    // week 3: the recurring burst is expected.
                    assert_eq!(expected, [None, None, Some(100.0)][w as usize], "week {w}");
                }
                m.observe(t, k, &cfg);
            }
        }
        // Tuesday 09:00 is not expected (a weekly burst, not a daily one).
        assert_eq!(m.recurring(job(2) + DAY_US), None);
    }

    #[test]
    fn weekday_of_epoch_is_thursday() {
        assert_eq!(hour_and_weekday(0), (0, 3));
        // 2024-05-06 was a Monday; 13:30 UTC.
        let t = aiops_core::time::parse_timestamp_micros("2024-05-06T13:30:00Z").unwrap();
        assert_eq!(hour_and_weekday(t), (13, 0));
        assert_eq!(multiples_in(0, 3 * MIN, MIN), 3);
        assert_eq!(multiples_in(1, 3 * MIN, MIN), 2);
        assert_eq!(multiples_in(5, 5, MIN), 0);
    }
}
