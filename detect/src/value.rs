//! Streaming value detector (experimental draft v2).

use crate::numeric::{SortedWindow, clamp01, surprise_score};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// Value detector configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ValueConfig {
    /// Trailing history length for median (observations).
    pub history: usize,
    /// Minimum observations before scoring.
    pub min_history: usize,
    /// Short mean length for level shifts.
    pub short_window: usize,
    /// Seasonal EW alpha.
    pub seasonal_alpha: f64,
    /// Minimum samples per slot.
    pub seasonal_min_samples: u32,
    /// Slots per day.
    pub slots_per_day: u32,
    /// Calibration history.
    pub calibration: usize,
    /// Minimum calibration before a measure counts.
    pub min_calibration: usize,
    /// Measures bitmask: 1 level, 2 shift, 4 seasonal, 8 diff.
    pub measures: u32,
    /// Cooldown observations after a firing.
    pub cooldown: usize,
    /// Firing level.
    pub fire_level: f64,
    /// Cooldown multiplier.
    pub cooldown_factor: f64,
    /// Relative floor.
    pub relative_floor: f64,
    /// Decades for score.
    pub decades: f64,
    /// Tail quantile anchor.
    pub tail_quantile: f64,
    /// Combination: 0 Bonferroni, 1 Fisher, 2 second smallest.
    pub combine: u32,
}

impl Default for ValueConfig {
    fn default() -> Self {
        ValueConfig {
            history: 1000,
            min_history: 20,
            short_window: 5,
            seasonal_alpha: 0.2,
            seasonal_min_samples: 3,
            slots_per_day: 96,
            calibration: 1000,
            min_calibration: 50,
            measures: 15,
            cooldown: 0,
            fire_level: 0.5,
            cooldown_factor: 0.5,
            relative_floor: 1e-6,
            decades: 10.0,
            tail_quantile: 0.9,
            combine: 0,
        }
    }
}

/// Score of one observation.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ValueScore {
    /// Score in [0,1].
    pub score: f64,
    /// Expected value.
    pub expected: f64,
    /// Smallest p.
    pub p: f64,
    /// Which measure.
    pub measure: u32,
}

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    mean: f64,
    absdev: f64,
    n: u32,
}

/// A nonconformity calibrator.
#[derive(Debug, Clone)]
struct Calib {
    w: SortedWindow,
}

impl Calib {
    fn new(cap: usize) -> Self {
        Calib {
            w: SortedWindow::new(cap),
        }
    }
    fn pvalue(&self, a: f64, min_n: usize, floor: f64, tq: f64) -> f64 {
        let n = self.w.len();
        if n < min_n || !a.is_finite() {
            return 1.0;
        }
        let ge = n - self.w.count_below(a);
        if ge > 0 {
            return ((ge as f64 + 1.0) / (n as f64 + 1.0)).min(1.0);
        }
        let q = self.w.quantile(tq).unwrap_or(0.0);
        let max = self.w.quantile(1.0).unwrap_or(0.0);
        let (mut s, mut c) = (0.0, 0usize);
        for v in self.w.top(((1.0 - tq) * n as f64).ceil() as usize) {
            if v > q {
                s += v - q;
                c += 1;
            }
        }
        let beta = if c > 0 { s / c as f64 } else { 0.0 }
            .max(floor)
            .max(1e-300);
        (1.0 / (n as f64 + 1.0)) * (-(a - max) / beta).exp()
    }
}

/// The detector.
#[derive(Debug, Clone)]
pub struct ValueDetector {
    cfg: ValueConfig,
    hist: SortedWindow,
    recent: VecDeque<f64>,
    slots: Vec<Slot>,
    calib: Vec<Calib>,
    cooldown_left: usize,
    first_time: Option<i64>,
    prev: Option<f64>,
}

impl ValueDetector {
    /// New detector.
    pub fn new(cfg: &ValueConfig) -> Self {
        ValueDetector {
            cfg: cfg.clone(),
            hist: SortedWindow::new(cfg.history),
            recent: VecDeque::new(),
            slots: vec![Slot::default(); cfg.slots_per_day.max(1) as usize],
            calib: (0..4).map(|_| Calib::new(cfg.calibration)).collect(),
            cooldown_left: 0,
            first_time: None,
            prev: None,
        }
    }

    /// Observe.
    pub fn observe(&mut self, t: i64, x: f64) -> ValueScore {
        if !x.is_finite() {
            return ValueScore::default();
        }
        let first = *self.first_time.get_or_insert(t);
        let spd = self.cfg.slots_per_day.max(1) as i64;
        let slot_len = 86_400_000_000 / spd;
        let slot = (t.rem_euclid(86_400_000_000) / slot_len) as usize;
        self.recent.push_back(x);
        while self.recent.len() > self.cfg.short_window.max(1) {
            self.recent.pop_front();
        }
        let mut out = ValueScore {
            p: 1.0,
            ..Default::default()
        };
        let mut measures: [Option<f64>; 4] = [None; 4];
        let med = self.hist.median().unwrap_or(x);
        let floor = self.cfg.relative_floor * med.abs().max(1e-9);
        if self.hist.len() >= self.cfg.min_history {
            let m = self.cfg.measures;
            if m & 1 != 0 {
                measures[0] = Some((x - med).abs());
            }
            if m & 2 != 0 {
                let sm = self.recent.iter().sum::<f64>() / self.recent.len() as f64;
                measures[1] = Some((sm - med).abs());
            }
            if m & 4 != 0
                && t - first >= 86_400_000_000 * 2
                && let Some(s) = self.slots.get(slot)
                && s.n >= self.cfg.seasonal_min_samples
            {
                measures[2] = Some((x - s.mean).abs());
            }
            if m & 8 != 0
                && let Some(p) = self.prev
            {
                measures[3] = Some((x - p).abs());
            }
            out.expected = med;
        }
        let k = measures.iter().filter(|m| m.is_some()).count().max(1) as f64;
        let mut ps: Vec<(f64, u32)> = Vec::new();
        for (i, m) in measures.iter().enumerate() {
            if let (Some(a), Some(c)) = (m, self.calib.get(i)) {
                let p = c.pvalue(*a, self.cfg.min_calibration, floor, self.cfg.tail_quantile);
                ps.push((p.max(1e-300), i as u32));
            }
        }
        ps.sort_by(|a, b| a.0.total_cmp(&b.0));
        if let Some(&(p0, m0)) = ps.first() {
            out.measure = m0;
            out.p = match self.cfg.combine {
                1 => {
                    let x: f64 = ps.iter().map(|(p, _)| -2.0 * p.ln()).sum();
                    let chi = statrs::distribution::ChiSquared::new(2.0 * ps.len() as f64).ok();
                    chi.map_or(1.0, |c| statrs::distribution::ContinuousCDF::sf(&c, x))
                }
                2 => ps.get(1).map_or(1.0, |p| p.0 * k),
                _ => p0 * k,
            };
        }
        out.score = clamp01(surprise_score(out.p.min(1.0), self.cfg.decades));
        for (i, m) in measures.iter().enumerate() {
            if let (Some(a), Some(c)) = (m, self.calib.get_mut(i)) {
                c.w.push(*a);
            }
        }
        if self.cooldown_left > 0 {
            self.cooldown_left -= 1;
            out.score *= self.cfg.cooldown_factor;
        } else if out.score >= self.cfg.fire_level && self.cfg.cooldown > 0 {
            self.cooldown_left = self.cfg.cooldown;
        }
        self.hist.push(x);
        self.prev = Some(x);
        if let Some(s) = self.slots.get_mut(slot) {
            if s.n == 0 {
                s.mean = x;
                s.absdev = 0.0;
            } else {
                let a = self.cfg.seasonal_alpha;
                let d = (x - s.mean).abs();
                s.mean += a * (x - s.mean);
                s.absdev += a * (d - s.absdev);
            }
            s.n = s.n.saturating_add(1);
        }
        out
    }
}
