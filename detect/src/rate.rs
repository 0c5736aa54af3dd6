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
//! Sources: the Poisson and negative binomial upper tails are the regularised incomplete gamma
//! and beta functions (statrs `gamma_lr`, `beta_reg`); exponentially weighted moments as in
//! Roberts (1959), "Control chart tests based on geometric moving averages".

use crate::numeric::surprise_score;
use serde::{Deserialize, Serialize};

/// Microseconds per hour.
const HOUR_US: i64 = 3_600_000_000;
/// Microseconds per day.
const DAY_US: i64 = 86_400_000_000;

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
        }
    }
}

/// Hour-of-day (24 buckets, UTC) and day-of-week (7 buckets) exponentially weighted means of
/// the count per window.
#[derive(Debug, Clone, PartialEq)]
pub struct SeasonalProfile {
    hour: [f64; 24],
    day: [f64; 7],
    hour_seen: u32,
    day_seen: u8,
}

impl Default for SeasonalProfile {
    fn default() -> Self {
        SeasonalProfile {
            hour: [0.0; 24],
            day: [0.0; 7],
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
            if self.hour_seen & (1 << h) == 0 {
                *v = k;
                self.hour_seen |= 1 << h;
            } else {
                *v += alpha * (k - *v);
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
            *v *= decay_factor(alpha, n);
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
    /// Score in [0, 1] (0 while warming up or below `min_count`).
    pub score: f64,
    /// Upper-tail probability `P(X ≥ k)` under the model (1 when not scored).
    pub p_value: f64,
    /// The baseline `λ` the count was compared with (expected count per window).
    pub expected: f64,
    /// Whether the negative binomial (rather than Poisson) tail was used.
    pub negative_binomial: bool,
}

/// The rate model of one count series. Its size is fixed (about 300 bytes).
#[derive(Debug, Clone, PartialEq)]
pub struct RateModel {
    /// Recent EW mean and second moment of the count.
    mean: f64,
    m2: f64,
    /// Long-term EW mean.
    long_mean: f64,
    seasonal: SeasonalProfile,
    windows: u64,
    /// Events learned so far (sum of counts).
    events: u64,
    first_window: Option<i64>,
}

impl Default for RateModel {
    fn default() -> Self {
        Self::new()
    }
}

impl RateModel {
    /// An empty model.
    pub fn new() -> Self {
        RateModel {
            mean: 0.0,
            m2: 0.0,
            long_mean: 0.0,
            seasonal: SeasonalProfile::default(),
            windows: 0,
            events: 0,
            first_window: None,
        }
    }

    /// Windows observed so far (including empty ones).
    pub fn windows(&self) -> u64 {
        self.windows
    }

    /// The baseline for a window starting at `t` (µs): the largest of the recent, long-term and
    /// (when enough history exists) seasonal rates, floored at `min_expected`.
    pub fn baseline(&self, t: i64, cfg: &RateConfig) -> f64 {
        let mut b = self.mean.max(self.long_mean);
        if let Some(first) = self.first_window {
            let days = (t - first) / DAY_US;
            if days >= i64::from(cfg.seasonal_min_days)
                && let Some(s) = self
                    .seasonal
                    .expected(t, days >= i64::from(cfg.weekly_min_days))
            {
                b = b.max(s);
            }
        }
        if b.is_finite() {
            b.max(cfg.min_expected)
        } else {
            cfg.min_expected
        }
    }

    /// The dispersion index `var / mean` of recent counts (at least 1).
    pub fn dispersion(&self) -> f64 {
        if self.mean <= 0.0 {
            return 1.0;
        }
        let var = (self.m2 - self.mean * self.mean).max(0.0);
        let d = var / self.mean;
        if d.is_finite() { d.max(1.0) } else { 1.0 }
    }

    /// Scores a count `k` for the window starting at `t` without updating the model.
    pub fn score(&self, t: i64, k: u64, cfg: &RateConfig) -> RateScore {
        let lambda = self.baseline(t, cfg);
        let d = self.dispersion();
        let use_nb = cfg.negative_binomial && d > 1.0 + 1e-9;
        let mut out = RateScore {
            score: 0.0,
            p_value: 1.0,
            expected: lambda,
            negative_binomial: use_nb,
        };
        if self.windows < u64::from(cfg.min_windows)
            || self.events < cfg.min_events
            || k < cfg.min_count.max(1)
        {
            return out;
        }
        let p = if use_nb {
            negative_binomial_sf(k, lambda, d * lambda)
        } else {
            poisson_sf(k, lambda)
        };
        out.p_value = p;
        out.score = surprise_score(p, cfg.decades);
        out
    }

    /// Scores and then learns the count `k` of the window starting at `t`.
    pub fn observe(&mut self, t: i64, k: u64, cfg: &RateConfig) -> RateScore {
        let s = self.score(t, k, cfg);
        self.events = self.events.saturating_add(k);
        self.learn(t, k as f64, s.expected, cfg);
        s
    }

    fn learn(&mut self, t: i64, k: f64, lambda: f64, cfg: &RateConfig) {
        let sd = (self.dispersion() * lambda).sqrt();
        let cap = lambda + cfg.winsor_sigmas * sd + 1.0;
        let x = if self.windows >= u64::from(cfg.min_windows) {
            k.min(cap)
        } else {
            k
        };
        if self.windows == 0 {
            self.mean = x;
            self.m2 = x * x;
            self.long_mean = x;
        } else {
            self.mean += cfg.alpha * (x - self.mean);
            self.m2 += cfg.alpha * (x * x - self.m2);
            self.long_mean += cfg.long_alpha * (x - self.long_mean);
        }
        self.seasonal.update(t, x, cfg.seasonal_alpha);
        self.first_window.get_or_insert(t);
        self.windows += 1;
    }

    /// Learns `n` consecutive empty windows starting at `start` (µs, window-aligned) of length
    /// `len` µs, in `O(hours)` rather than `O(n)`: the exponentially weighted moments decay by
    /// `(1 − α)^n` in closed form, and each hour bucket by `(1 − α)` to the number of its
    /// windows. Gaps longer than two weeks only replay their last two weeks into the buckets
    /// (older zeros would have decayed them to at most `(1 − α)^(336 · windows per hour)`).
    pub fn observe_empty(&mut self, start: i64, n: u64, len: i64, cfg: &RateConfig) {
        if n == 0 || len <= 0 {
            return;
        }
        if self.windows == 0 {
            // A series starts with its first non-empty window; leading zeros carry nothing.
            return;
        }
        let f = decay_factor(cfg.alpha, n);
        self.mean *= f;
        self.m2 *= f;
        self.long_mean *= decay_factor(cfg.long_alpha, n);
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
        self.windows = self.windows.saturating_add(n);
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
        let s = m.score(201 * MIN, 5, &cfg);
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
