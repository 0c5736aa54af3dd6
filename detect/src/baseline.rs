//! Learned baselines (DESIGN §4, "pattern learning"): what a batch job learns from Parquet
//! history so that a freshly started detect stage is not blind.
//!
//! A [`Baselines`] document holds, per series (the engine's series keys):
//!
//! - for count series, the rate (mean count per window), the dispersion index `D = var / mean`
//!   of the counts around their hour-of-day mean (pooled within-hour variance, at least 1), the
//!   hour-of-day profile (mean count per window in each UTC hour) and the day-of-week profile
//!   (mean count per window on each weekday, Monday first);
//! - for value (metric) series, the median, the median absolute deviation, the hour-of-day means
//!   and the most recent window values with their window start times;
//!
//! per log group, the template dictionary (template id, text with `<*>` for parameters, lines
//! matched), when the group was first seen and how many entries it had; and the principal/API
//! pairs seen. It is JSON ([`Baselines::to_json`]), versioned ([`BASELINES_VERSION`]), and
//! checked against the detect configuration before use ([`Baselines::validate`]).
//!
//! **Learning** runs the statistics engine itself over history in event-time order
//! ([`crate::engine::StatsEngine::new_learning`]), so the series are exactly those the live
//! stage builds; each closed window feeds a [`SeriesProfile`].
//!
//! **Seeding** happens when a series is first seen after start. The model state is rebuilt
//! through the models' own update rules — never by writing their fields — by replaying a
//! synthetic history drawn from the baseline ([`seed_rate_model`], [`seed_value_detector`]):
//! for a count series, the windows of the last `min(learned windows, 15 days)` before the
//! series' first live window, each with a count drawn from the learned distribution (Poisson,
//! or negative binomial when `D > 1`, with mean `hour_of_day[h] · day_of_week[d] / mean(days)`)
//! at a deterministic quasi-random quantile (the golden-ratio sequence, Weyl 1916), so the
//! rate, dispersion and seasonal buckets converge to what was learned; for a value series, the
//! stored recent values are replayed with their original times. Template dictionaries are
//! seeded by adding each template text to a fresh miner with every `<*>` replaced by `0`, a
//! token the miner masks back to the same parameter.

use crate::config::StatisticsConfig;
use crate::rate::{RateConfig, RateModel, hour_and_weekday};
use crate::value::{ValueConfig, ValueDetector};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// The `format` field of every baselines document.
pub const BASELINES_FORMAT: &str = "aiops-baselines";
/// The version of the baselines document this code writes and reads.
pub const BASELINES_VERSION: u32 = 1;
/// Longest synthetic history replayed when seeding a count series, in days (the rate model's
/// day-of-week profile needs two weeks by default; older windows have decayed away).
pub const SEED_MAX_DAYS: i64 = 15;
/// Most recent values kept per value series (at most; the learner keeps
/// `value.history + value.calibration`).
pub const MAX_RECENT_VALUES: usize = 16_384;
/// Longest template text accepted, bytes.
pub const MAX_TEMPLATE_BYTES: usize = 65_536;

const MICROS: i64 = 1_000_000;
const DAY_US: i64 = 86_400 * MICROS;
const HOUR_US: i64 = 3_600 * MICROS;
/// The golden-ratio conjugate `(√5 − 1) / 2`: the step of the quasi-random sequence.
const GOLDEN: f64 = 0.618_033_988_749_894_8;

/// Errors of loading, saving or validating baselines.
#[derive(Debug, Error)]
pub enum BaselineError {
    /// The file could not be read or written.
    #[error("baselines {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The text is not a baselines JSON document.
    #[error("baselines are not valid JSON of the expected shape: {0}")]
    Json(#[from] serde_json::Error),
    /// A field is out of range or inconsistent with the detect configuration.
    #[error("baselines.{field}: {reason}")]
    Invalid {
        /// Path of the field, e.g. `series[3].count.hour_of_day`.
        field: String,
        /// What is wrong.
        reason: String,
    },
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> BaselineError {
    BaselineError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

/// Baselines learned from history (see the module documentation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Baselines {
    /// Always [`BASELINES_FORMAT`].
    pub format: String,
    /// [`BASELINES_VERSION`].
    pub version: u32,
    /// Window length the series were learned with, seconds; must equal
    /// `detect.statistics.window_secs` where they are used.
    pub window_secs: u64,
    /// Event time of the first event learned from, microseconds since the Unix epoch, UTC.
    pub learned_from: i64,
    /// Event time of the last event learned from, microseconds since the Unix epoch, UTC.
    pub learned_to: i64,
    /// Events learned from.
    pub events: u64,
    /// CloudTrail events among them (the novelty volume warm-up).
    pub cloudtrail_events: u64,
    /// One baseline per series, sorted by key.
    pub series: Vec<SeriesBaseline>,
    /// One template dictionary per log group, sorted by log group.
    pub log_groups: Vec<LogGroupBaseline>,
    /// Principal/API pairs seen, sorted.
    pub pairs: Vec<ApiPair>,
}

/// The baseline of one series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeriesBaseline {
    /// The engine's series key, e.g. `log_level:/ecs/api:ERROR`.
    pub key: String,
    /// Start of the first window with data, microseconds since the Unix epoch, UTC.
    pub first_window: i64,
    /// Start of the last window with data, microseconds.
    pub last_window: i64,
    /// Windows observed from the first one on (empty windows of count series included).
    pub windows: u64,
    /// Events counted (count series) or windows with a value (value series).
    pub events: u64,
    /// The count model's baseline (exactly one of `count` and `value` is set).
    pub count: Option<CountBaseline>,
    /// The value model's baseline.
    pub value: Option<ValueBaseline>,
}

/// The baseline of a count series: counts per window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CountBaseline {
    /// Mean count per window over all windows observed.
    pub rate: f64,
    /// Dispersion index: pooled variance of the counts around their hour-of-day mean, over the
    /// rate; at least 1 (1 = Poisson).
    pub dispersion: f64,
    /// Mean count per window in each UTC hour (24 entries; `null` for an hour never observed).
    pub hour_of_day: Vec<Option<f64>>,
    /// Mean count per window on each weekday, Monday first (7 entries; `null` for a day never
    /// observed).
    pub day_of_week: Vec<Option<f64>>,
}

/// The baseline of a value (metric) series: one value per window (the mean of its data
/// points).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValueBaseline {
    /// Median of the recent values.
    pub median: f64,
    /// Median absolute deviation of the recent values around the median.
    pub mad: f64,
    /// Mean value in each UTC hour over all windows (24 entries; `null` when never observed).
    pub hour_of_day: Vec<Option<f64>>,
    /// The most recent window values, oldest first: `[window start µs, value]`.
    pub recent: Vec<(i64, f64)>,
}

/// The template dictionary of one log group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogGroupBaseline {
    /// Log group name.
    pub log_group: String,
    /// Event time the group was first seen, microseconds since the Unix epoch, UTC.
    pub first_seen: i64,
    /// Log entries seen in the group.
    pub entries: u64,
    /// Templates, by id.
    pub templates: Vec<TemplateBaseline>,
}

/// One template of a dictionary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateBaseline {
    /// Template id in the learning run (series keys `log_template:<group>:<id>` use it).
    pub template_id: u64,
    /// Template text, `<*>` for parameters.
    pub text: String,
    /// Lines matched while learning.
    pub size: u64,
}

/// A principal/API pair (the novelty detector's memory).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiPair {
    /// Principal key (see `Principal::key`).
    pub principal: String,
    /// CloudTrail `eventSource`.
    pub event_source: String,
    /// CloudTrail `eventName`.
    pub event_name: String,
}

fn finite(x: f64, field: impl FnOnce() -> String) -> Result<(), BaselineError> {
    if x.is_finite() && x >= 0.0 {
        Ok(())
    } else {
        Err(invalid(field(), format!("{x} is not a finite number >= 0")))
    }
}

fn finite_any(x: f64, field: impl FnOnce() -> String) -> Result<(), BaselineError> {
    if x.is_finite() {
        Ok(())
    } else {
        Err(invalid(field(), format!("{x} is not finite")))
    }
}

fn check_profile(
    v: &[Option<f64>],
    len: usize,
    field: &str,
    non_negative: bool,
) -> Result<(), BaselineError> {
    if v.len() != len {
        return Err(invalid(
            field,
            format!("expected {len} entries, got {}", v.len()),
        ));
    }
    for (i, x) in v.iter().enumerate() {
        if let Some(x) = x {
            let f = || format!("{field}[{i}]");
            if non_negative {
                finite(*x, f)?;
            } else {
                finite_any(*x, f)?;
            }
        }
    }
    Ok(())
}

impl Baselines {
    /// An empty document learned with `window_secs`-second windows.
    pub fn empty(window_secs: u64) -> Baselines {
        Baselines {
            format: BASELINES_FORMAT.to_string(),
            version: BASELINES_VERSION,
            window_secs,
            learned_from: 0,
            learned_to: 0,
            events: 0,
            cloudtrail_events: 0,
            series: Vec::new(),
            log_groups: Vec::new(),
            pairs: Vec::new(),
        }
    }

    /// Checks the document and its fit with `cfg`: format and version, the same
    /// `window_secs`, at most `max_series` series, `max_log_groups` groups,
    /// `templates.max_templates` templates per group and `novelty.max_pairs` pairs, unique
    /// non-empty keys, exactly one model per series, finite numbers, 24 hour and 7 day
    /// entries, at most [`MAX_RECENT_VALUES`] recent values in time order.
    ///
    /// # Errors
    /// [`BaselineError::Invalid`] naming the first offending field.
    pub fn validate(&self, cfg: &StatisticsConfig) -> Result<(), BaselineError> {
        if self.format != BASELINES_FORMAT {
            return Err(invalid(
                "format",
                format!("{:?} is not {BASELINES_FORMAT:?}", self.format),
            ));
        }
        if self.version != BASELINES_VERSION {
            return Err(invalid(
                "version",
                format!(
                    "version {} is not supported (this build reads version {BASELINES_VERSION})",
                    self.version
                ),
            ));
        }
        if self.window_secs != cfg.window_secs {
            return Err(invalid(
                "window_secs",
                format!(
                    "learned with {} s windows, but detect.statistics.window_secs is {}: learn again with this configuration",
                    self.window_secs, cfg.window_secs
                ),
            ));
        }
        if self.learned_to < self.learned_from {
            return Err(invalid("learned_to", "is before learned_from"));
        }
        if self.series.len() > cfg.max_series {
            return Err(invalid(
                "series",
                format!(
                    "{} series exceed detect.statistics.max_series {}",
                    self.series.len(),
                    cfg.max_series
                ),
            ));
        }
        let mut keys = std::collections::HashSet::new();
        for (i, s) in self.series.iter().enumerate() {
            let at = |f: &str| format!("series[{i}].{f}");
            if s.key.is_empty() {
                return Err(invalid(at("key"), "is empty"));
            }
            if !keys.insert(s.key.as_str()) {
                return Err(invalid(at("key"), format!("{:?} appears twice", s.key)));
            }
            if s.last_window < s.first_window {
                return Err(invalid(at("last_window"), "is before first_window"));
            }
            match (&s.count, &s.value) {
                (Some(c), None) => {
                    finite(c.rate, || at("count.rate"))?;
                    if !(c.dispersion.is_finite() && c.dispersion >= 1.0) {
                        return Err(invalid(
                            at("count.dispersion"),
                            format!("{} is not a finite number >= 1", c.dispersion),
                        ));
                    }
                    check_profile(&c.hour_of_day, 24, &at("count.hour_of_day"), true)?;
                    check_profile(&c.day_of_week, 7, &at("count.day_of_week"), true)?;
                }
                (None, Some(v)) => {
                    finite_any(v.median, || at("value.median"))?;
                    finite(v.mad, || at("value.mad"))?;
                    check_profile(&v.hour_of_day, 24, &at("value.hour_of_day"), false)?;
                    if v.recent.len() > MAX_RECENT_VALUES {
                        return Err(invalid(
                            at("value.recent"),
                            format!(
                                "{} values exceed the limit {MAX_RECENT_VALUES}",
                                v.recent.len()
                            ),
                        ));
                    }
                    let mut prev = i64::MIN;
                    for (j, (t, x)) in v.recent.iter().enumerate() {
                        finite_any(*x, || at(&format!("value.recent[{j}]")))?;
                        if *t < prev {
                            return Err(invalid(
                                at(&format!("value.recent[{j}]")),
                                "is older than the value before it",
                            ));
                        }
                        prev = *t;
                    }
                }
                _ => {
                    return Err(invalid(
                        at("count"),
                        "exactly one of count and value must be set",
                    ));
                }
            }
        }
        if self.log_groups.len() > cfg.max_log_groups {
            return Err(invalid(
                "log_groups",
                format!(
                    "{} log groups exceed detect.statistics.max_log_groups {}",
                    self.log_groups.len(),
                    cfg.max_log_groups
                ),
            ));
        }
        let mut groups = std::collections::HashSet::new();
        for (i, g) in self.log_groups.iter().enumerate() {
            if !groups.insert(g.log_group.as_str()) {
                return Err(invalid(
                    format!("log_groups[{i}].log_group"),
                    format!("{:?} appears twice", g.log_group),
                ));
            }
            if g.templates.len() > cfg.templates.max_templates {
                return Err(invalid(
                    format!("log_groups[{i}].templates"),
                    format!(
                        "{} templates exceed detect.statistics.templates.max_templates {}",
                        g.templates.len(),
                        cfg.templates.max_templates
                    ),
                ));
            }
            for (j, t) in g.templates.iter().enumerate() {
                if t.text.len() > MAX_TEMPLATE_BYTES {
                    return Err(invalid(
                        format!("log_groups[{i}].templates[{j}].text"),
                        format!("longer than {MAX_TEMPLATE_BYTES} bytes"),
                    ));
                }
            }
        }
        if self.pairs.len() > cfg.novelty.max_pairs {
            return Err(invalid(
                "pairs",
                format!(
                    "{} pairs exceed detect.statistics.novelty.max_pairs {}",
                    self.pairs.len(),
                    cfg.novelty.max_pairs
                ),
            ));
        }
        Ok(())
    }

    /// The document as JSON bytes.
    ///
    /// # Errors
    /// [`BaselineError::Json`] (only for non-finite numbers, which [`Self::validate`] rejects).
    pub fn to_json(&self) -> Result<Vec<u8>, BaselineError> {
        Ok(serde_json::to_vec(self)?)
    }

    /// Parses JSON bytes (not yet validated against a configuration).
    ///
    /// # Errors
    /// [`BaselineError::Json`] when the bytes are not a baselines document.
    pub fn from_json(bytes: &[u8]) -> Result<Baselines, BaselineError> {
        Ok(serde_json::from_slice(bytes)?)
    }

    /// Reads a baselines file (JSON) and validates it against `cfg`.
    ///
    /// # Errors
    /// [`BaselineError`] when the file cannot be read, parsed or does not fit `cfg`.
    pub fn load(path: &Path, cfg: &StatisticsConfig) -> Result<Baselines, BaselineError> {
        let bytes = std::fs::read(path).map_err(|source| BaselineError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let b = Baselines::from_json(&bytes)?;
        b.validate(cfg)?;
        Ok(b)
    }

    /// Writes the document to `path` atomically (a temporary file in the same directory,
    /// renamed into place).
    ///
    /// # Errors
    /// [`BaselineError::Io`] when the file cannot be written.
    pub fn save(&self, path: &Path) -> Result<(), BaselineError> {
        let bytes = self.to_json()?;
        let io = |p: &Path| {
            let path = p.to_path_buf();
            move |source| BaselineError::Io { path, source }
        };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "baselines.json".to_string());
        let tmp = path.with_file_name(format!(".{name}.inprogress"));
        std::fs::write(&tmp, &bytes).map_err(io(&tmp))?;
        std::fs::rename(&tmp, path).map_err(io(path))
    }
}

/// Number of window starts (multiples of `len`) in `[a, b)`.
fn windows_in(a: i64, b: i64, len: i64) -> u64 {
    if b <= a || len <= 0 {
        return 0;
    }
    let first = a.div_euclid(len) + i64::from(a.rem_euclid(len) != 0);
    let last_excl = b.div_euclid(len) + i64::from(b.rem_euclid(len) != 0);
    u64::try_from(last_excl - first).unwrap_or(0)
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
struct Moments {
    n: u64,
    sum: f64,
    sum_sq: f64,
}

impl Moments {
    fn add(&mut self, x: f64, times: u64) {
        self.n = self.n.saturating_add(times);
        self.sum += x * times as f64;
        self.sum_sq += x * x * times as f64;
    }

    fn mean(&self) -> Option<f64> {
        (self.n > 0).then(|| self.sum / self.n as f64)
    }
}

/// What the learner accumulates for one series while it runs over history (fixed size for
/// count series; at most `recent_cap` values for value series).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesProfile {
    first_window: Option<i64>,
    last_window: i64,
    windows: u64,
    events: u64,
    hours: [Moments; 24],
    days: [Moments; 7],
    recent: Option<VecDeque<(i64, f64)>>,
    recent_cap: usize,
}

impl SeriesProfile {
    /// A profile of a count series.
    pub fn count() -> Self {
        SeriesProfile {
            first_window: None,
            last_window: 0,
            windows: 0,
            events: 0,
            hours: [Moments::default(); 24],
            days: [Moments::default(); 7],
            recent: None,
            recent_cap: 0,
        }
    }

    /// A profile of a value series keeping the `recent_cap` most recent values (at most
    /// [`MAX_RECENT_VALUES`]).
    pub fn value(recent_cap: usize) -> Self {
        let cap = recent_cap.clamp(1, MAX_RECENT_VALUES);
        SeriesProfile {
            recent: Some(VecDeque::with_capacity(cap.min(4096))),
            recent_cap: cap,
            ..SeriesProfile::count()
        }
    }

    /// Learns the count `k` of the window starting at `t` (µs).
    pub fn add_count(&mut self, t: i64, k: u64) {
        let (h, d) = hour_and_weekday(t);
        let x = k as f64;
        if let Some(m) = self.hours.get_mut(h) {
            m.add(x, 1);
        }
        if let Some(m) = self.days.get_mut(d) {
            m.add(x, 1);
        }
        self.first_window.get_or_insert(t);
        if k > 0 {
            self.last_window = self.last_window.max(t);
        }
        self.windows += 1;
        self.events = self.events.saturating_add(k);
    }

    /// Learns `n` empty windows of `len` µs starting at `start` (a count series' gap), in
    /// `O(hours of the gap)`.
    pub fn add_zeros(&mut self, start: i64, n: u64, len: i64) {
        if n == 0 || len <= 0 || self.first_window.is_none() {
            return;
        }
        let end = start.saturating_add(len.saturating_mul(i64::try_from(n).unwrap_or(i64::MAX)));
        let mut h = start.div_euclid(HOUR_US) * HOUR_US;
        while h < end {
            let a = h.max(start);
            let b = (h + HOUR_US).min(end);
            let c = windows_in(a, b, len);
            let (hour, day) = hour_and_weekday(a);
            if let Some(m) = self.hours.get_mut(hour) {
                m.add(0.0, c);
            }
            if let Some(m) = self.days.get_mut(day) {
                m.add(0.0, c);
            }
            h += HOUR_US;
        }
        self.windows = self.windows.saturating_add(n);
    }

    /// Learns the value `x` of the window starting at `t` (µs).
    pub fn add_value(&mut self, t: i64, x: f64) {
        if !x.is_finite() {
            return;
        }
        let (h, d) = hour_and_weekday(t);
        if let Some(m) = self.hours.get_mut(h) {
            m.add(x, 1);
        }
        if let Some(m) = self.days.get_mut(d) {
            m.add(x, 1);
        }
        self.first_window.get_or_insert(t);
        self.last_window = self.last_window.max(t);
        self.windows += 1;
        self.events += 1;
        let cap = self.recent_cap;
        if let Some(r) = self.recent.as_mut() {
            if r.len() >= cap {
                r.pop_front();
            }
            r.push_back((t, x));
        }
    }

    /// Events (count series) or values (value series) learned.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// The baseline of series `key`, or `None` when nothing was learned.
    pub fn to_baseline(&self, key: &str) -> Option<SeriesBaseline> {
        let first_window = self.first_window?;
        if self.events == 0 {
            return None;
        }
        let hour_of_day: Vec<Option<f64>> = self.hours.iter().map(Moments::mean).collect();
        let (count, value) = match &self.recent {
            None => {
                let rate = self.events as f64 / self.windows.max(1) as f64;
                // Pooled within-hour variance over the rate.
                let (mut ss, mut dof) = (0.0, 0u64);
                for m in &self.hours {
                    if m.n > 1 {
                        ss += (m.sum_sq - m.sum * m.sum / m.n as f64).max(0.0);
                        dof += m.n - 1;
                    }
                }
                let var = if dof > 0 { ss / dof as f64 } else { 0.0 };
                let d = if rate > 0.0 { var / rate } else { 1.0 };
                let dispersion = if d.is_finite() { d.max(1.0) } else { 1.0 };
                (
                    Some(CountBaseline {
                        rate,
                        dispersion,
                        hour_of_day,
                        day_of_week: self.days.iter().map(Moments::mean).collect(),
                    }),
                    None,
                )
            }
            Some(recent) => {
                let mut xs: Vec<f64> = recent.iter().map(|(_, x)| *x).collect();
                let median = median_of(&mut xs);
                let mut dev: Vec<f64> = xs.iter().map(|x| (x - median).abs()).collect();
                let mad = median_of(&mut dev);
                (
                    None,
                    Some(ValueBaseline {
                        median,
                        mad,
                        hour_of_day,
                        recent: recent.iter().copied().collect(),
                    }),
                )
            }
        };
        Some(SeriesBaseline {
            key: key.to_string(),
            first_window,
            last_window: self.last_window.max(first_window),
            windows: self.windows,
            events: self.events,
            count,
            value,
        })
    }
}

fn median_of(xs: &mut [f64]) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    let hi = xs.get(n / 2).copied().unwrap_or(0.0);
    if n % 2 == 1 {
        hi
    } else {
        (xs.get(n / 2 - 1).copied().unwrap_or(hi) + hi) / 2.0
    }
}

/// The `u`-quantile (u in [0, 1)) of a count with mean `mean` and dispersion index `d`:
/// Poisson when `d ≤ 1`, else negative binomial with `r = mean / (d − 1)` and success
/// probability `1 / d` (variance `d · mean`), accumulated term by term from `P(0)` with the
/// ratio `P(k+1) / P(k)`; above a mean of 200 the normal approximation
/// `mean + √(d · mean) · Φ⁻¹(u)` (statrs `erf_inv`).
pub fn count_quantile(mean: f64, d: f64, u: f64) -> u64 {
    if !(mean.is_finite() && mean > 0.0) {
        return 0;
    }
    let u = if u.is_finite() {
        u.clamp(0.0, 0.999_999)
    } else {
        0.5
    };
    let d = if d.is_finite() { d.max(1.0) } else { 1.0 };
    if mean > 200.0 {
        let z = std::f64::consts::SQRT_2 * statrs::function::erf::erf_inv(2.0 * u - 1.0);
        let x = (mean + (d * mean).sqrt() * z).round();
        return if x.is_finite() && x > 0.0 {
            x as u64
        } else {
            0
        };
    }
    let cap = (mean + 20.0 * (d * mean).sqrt() + 50.0) as u64;
    let (mut p, ratio): (f64, Box<dyn Fn(u64) -> f64>) = if d <= 1.0 + 1e-9 {
        ((-mean).exp(), Box::new(move |k| mean / (k as f64 + 1.0)))
    } else {
        let q = 1.0 / d;
        let r = mean / (d - 1.0);
        (
            q.powf(r),
            Box::new(move |k| (k as f64 + r) / (k as f64 + 1.0) * (1.0 - q)),
        )
    };
    let mut cdf = p;
    let mut k = 0u64;
    while cdf < u && k < cap {
        p *= ratio(k);
        k += 1;
        cdf += p;
        if !p.is_finite() {
            break;
        }
    }
    k
}

/// A rate model seeded from a count baseline (see the module documentation): the synthetic
/// windows `[end − n · window, end)`, `n = min(b.windows, 15 days of windows)` at least 1, are
/// fed to [`RateModel::observe`] / [`RateModel::observe_empty`] with `cfg` (scoring skipped:
/// `min_count` is raised for the replay only, which changes no learned moment). `end` is the
/// start of the series' first live window, µs; `window_us` the window length, µs.
pub fn seed_rate_model(
    b: &SeriesBaseline,
    c: &CountBaseline,
    end: i64,
    window_us: i64,
    cfg: &RateConfig,
) -> RateModel {
    let mut model = RateModel::new();
    if window_us <= 0 {
        return model;
    }
    let max_windows = u64::try_from(SEED_MAX_DAYS * DAY_US / window_us).unwrap_or(1);
    let n = b.windows.clamp(1, max_windows.max(1));
    let start = end.saturating_sub(window_us.saturating_mul(i64::try_from(n).unwrap_or(1)));
    let seed_cfg = RateConfig {
        min_count: u64::MAX,
        ..cfg.clone()
    };
    let days: Vec<f64> = c.day_of_week.iter().flatten().copied().collect();
    let day_mean = days.iter().sum::<f64>() / days.len().max(1) as f64;
    let weekly = days.len() == 7 && day_mean > 0.0;
    let phase = (aiops_core::stable_hash(&[b.key.as_bytes()]) >> 11) as f64 / (1u64 << 53) as f64;
    let mut zeros: Option<(i64, u64)> = None;
    for i in 0..n {
        let t = start + window_us * i64::try_from(i).unwrap_or(0);
        let (h, d) = hour_and_weekday(t);
        let mut mean = c.hour_of_day.get(h).copied().flatten().unwrap_or(c.rate);
        if weekly && let Some(Some(f)) = c.day_of_week.get(d) {
            mean *= f / day_mean;
        }
        let u = (phase + GOLDEN * i as f64).fract();
        let k = count_quantile(mean, c.dispersion, u);
        if k == 0 {
            match &mut zeros {
                Some((_, z)) => *z += 1,
                None => zeros = Some((t, 1)),
            }
            continue;
        }
        if let Some((zs, zn)) = zeros.take() {
            model.observe_empty(zs, zn, window_us, &seed_cfg);
        }
        model.observe(t, k, &seed_cfg);
    }
    if let Some((zs, zn)) = zeros {
        model.observe_empty(zs, zn, window_us, &seed_cfg);
    }
    model
}

/// A value detector seeded by replaying the baseline's recent values, oldest first, with
/// their original window times.
pub fn seed_value_detector(v: &ValueBaseline, cfg: &ValueConfig) -> ValueDetector {
    let mut det = ValueDetector::new(cfg);
    for &(t, x) in &v.recent {
        det.observe(t, x);
    }
    det
}

/// The line that seeds a template into a fresh miner: the template text with every `<*>`
/// replaced by `0` (a token the miner masks back to a parameter, alone or inside a token such
/// as `id=<*>`).
pub fn seed_line(template: &str) -> String {
    template.replace(crate::template::WILDCARD_TEXT, "0")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::{TemplateConfig, TemplateMiner};

    const MIN: i64 = 60 * MICROS;

    fn doc() -> Baselines {
        let mut p = SeriesProfile::count();
        for i in 0..120 {
            p.add_count(i * MIN, if i % 2 == 0 { 2 } else { 4 });
        }
        let mut b = Baselines::empty(60);
        b.series.push(p.to_baseline("log_level:g:ERROR").unwrap());
        b
    }

    #[test]
    fn profile_learns_rate_dispersion_and_hours() {
        let mut p = SeriesProfile::count();
        // Two hours: hour 0 alternates 2 and 4 (mean 3, variance 1), hour 1 is empty.
        for i in 0..60 {
            p.add_count(i * MIN, if i % 2 == 0 { 2 } else { 4 });
        }
        p.add_zeros(60 * MIN, 60, MIN);
        let b = p.to_baseline("k").unwrap();
        let c = b.count.unwrap();
        assert_eq!(b.windows, 120);
        assert_eq!(b.events, 180);
        assert_eq!(c.rate, 1.5);
        assert_eq!(c.hour_of_day[0], Some(3.0));
        assert_eq!(c.hour_of_day[1], Some(0.0));
        assert_eq!(c.hour_of_day[2], None);
        // 1970-01-01 was a Thursday (index 3): every window is on it.
        assert_eq!(c.day_of_week[3], Some(1.5));
        assert_eq!(c.day_of_week[0], None);
        // Pooled within-hour variance: 60 * 1 (hour 0, ss = 60) over 59 + 59 dof = 60 / 118;
        // below the rate, so the dispersion is floored at 1.
        assert_eq!(c.dispersion, 1.0);
        assert_eq!(b.first_window, 0);
        assert_eq!(b.last_window, 59 * MIN);
    }

    #[test]
    fn quantiles_follow_the_distributions() {
        // Poisson(2): P(0) = 0.1353, P(<=1) = 0.4060, P(<=2) = 0.6767.
        assert_eq!(count_quantile(2.0, 1.0, 0.10), 0);
        assert_eq!(count_quantile(2.0, 1.0, 0.30), 1);
        assert_eq!(count_quantile(2.0, 1.0, 0.60), 2);
        assert_eq!(count_quantile(0.0, 1.0, 0.99), 0);
        assert_eq!(count_quantile(f64::NAN, 1.0, 0.99), 0);
        // Normal approximation at the median.
        assert_eq!(count_quantile(1000.0, 4.0, 0.5), 1000);
        // Negative binomial mean 4, D = 2 (r = 4, q = 0.5): P(0) = 0.0625.
        assert_eq!(count_quantile(4.0, 2.0, 0.05), 0);
        assert_eq!(count_quantile(4.0, 2.0, 0.07), 1);
        // Empirical mean and variance of the quasi-random draws match mean and D * mean.
        let n = 20_000;
        let xs: Vec<f64> = (0..n)
            .map(|i| count_quantile(3.0, 2.5, (0.3 + GOLDEN * i as f64).fract()) as f64)
            .collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        assert!((mean - 3.0).abs() < 0.02, "{mean}");
        assert!((var / mean - 2.5).abs() < 0.1, "{}", var / mean);
    }

    #[test]
    fn seeded_rate_model_reaches_the_learned_rate() {
        let cfg = RateConfig::default();
        let c = CountBaseline {
            rate: 10.0,
            dispersion: 1.0,
            hour_of_day: vec![Some(10.0); 24],
            day_of_week: vec![Some(10.0); 7],
        };
        let b = SeriesBaseline {
            key: "k".into(),
            first_window: 0,
            last_window: 0,
            windows: 20 * 1440,
            events: 0,
            count: Some(c.clone()),
            value: None,
        };
        let end = 40 * DAY_US;
        let m = seed_rate_model(&b, &c, end, MIN, &cfg);
        assert_eq!(m.windows(), 15 * 1440);
        let base = m.baseline(end, &cfg);
        assert!((base - 10.0).abs() < 1.0, "{base}");
        // Scored at once: a burst of 60 is a finding, 12 is normal.
        assert!(m.score(end, 60, &cfg).score > 0.5);
        assert!(m.score(end, 12, &cfg).score < 0.2);
        // A fresh model scores nothing.
        assert_eq!(RateModel::new().score(end, 60, &cfg).score, 0.0);
    }

    #[test]
    fn seed_lines_mask_back_to_the_same_template() {
        let mut m = TemplateMiner::new(&TemplateConfig::default());
        let a = m.add("login by alice from 10.0.0.1 id=42");
        // A word position is a parameter once it has taken four distinct words.
        m.add("login by bob from 10.0.0.2 id=43");
        m.add("login by dave from 10.0.0.3 id=44");
        m.add("login by erin from 10.0.0.4 id=45");
        let text = m.template_text(a.template_id).unwrap();
        assert_eq!(text, "login by <*> from <*> id=<*>");
        let mut fresh = TemplateMiner::new(&TemplateConfig::default());
        let seeded = fresh.add(&seed_line(&text));
        assert!(seeded.created);
        assert_eq!(fresh.template_text(seeded.template_id).unwrap(), text);
        let again = fresh.add("login by carol from 10.1.1.1 id=7");
        assert!(!again.created);
        assert_eq!(again.template_id, seeded.template_id);
    }

    fn log_event(id: u64, t: i64, msg: &str) -> aiops_core::Event {
        aiops_core::Event {
            event_id: format!("e{id}"),
            event_time: t,
            ingest_time: t,
            decode_warnings: Vec::new(),
            account: None,
            region: None,
            position: aiops_core::Position::default(),
            body: aiops_core::EventBody::Logs(aiops_core::LogFields {
                log_group: "/ecs/api".into(),
                log_stream: "s".into(),
                message: msg.into(),
                level: aiops_core::LogLevel::detect(msg),
            }),
        }
    }

    /// `per_min(minute)` ERROR lines in each minute of `[from, to)`, plus a burst of
    /// `burst.1` lines in minute `burst.0`.
    fn traffic(
        from: i64,
        to: i64,
        per_min: impl Fn(i64) -> i64,
        burst: Option<(i64, i64)>,
        id: &mut u64,
    ) -> Vec<aiops_core::Event> {
        let mut out = Vec::new();
        for m in from..to {
            let mut n = per_min(m);
            if let Some((bm, bn)) = burst
                && bm == m
            {
                n += bn;
            }
            for k in 0..n {
                *id += 1;
                let t = m * MIN + k * (MIN / (n + 1));
                out.push(log_event(
                    *id,
                    t,
                    &format!("ERROR request {} failed: timeout", *id),
                ));
            }
        }
        out
    }

    fn run(
        e: &mut crate::engine::StatsEngine,
        events: &[aiops_core::Event],
    ) -> Vec<aiops_core::Finding> {
        let mut out = Vec::new();
        for ev in events {
            out.extend(e.observe(ev));
        }
        out.extend(e.flush());
        out
    }

    #[test]
    fn learned_baselines_make_a_fresh_engine_see_a_burst_at_once() {
        let mut cfg = StatisticsConfig::default();
        cfg.multiline.enabled = false;
        // Day-time traffic (08:00-20:00 UTC) is five times the night-time traffic.
        let rate = |m: i64| {
            if (8 * 60..20 * 60).contains(&m.rem_euclid(1440)) {
                10
            } else {
                2
            }
        };
        let mut id = 0;
        let history = traffic(0, 2 * 1440, rate, None, &mut id);
        let mut learner = crate::engine::StatsEngine::new_learning(cfg.clone());
        run(&mut learner, &history);
        let learned = learner.baselines();
        learned.validate(&cfg).unwrap();
        let level = learned
            .series
            .iter()
            .find(|s| s.key == "log_level:/ecs/api:ERROR")
            .unwrap();
        let c = level.count.as_ref().unwrap();
        assert_eq!(c.hour_of_day[3], Some(2.0));
        assert_eq!(c.hour_of_day[12], Some(10.0));
        assert_eq!(learned.log_groups.len(), 1);
        assert_eq!(
            learned.log_groups[0].templates[0].text,
            "ERROR request <*> failed: timeout"
        );
        // The next morning from 07:30, a burst of 60 at 07:40 (ten minutes after start,
        // before a fresh model scores anything).
        let day = 2 * 1440;
        let next = traffic(day + 450, day + 540, rate, Some((day + 460, 60)), &mut id);
        let burst_start = (day + 460) * MIN;
        let mut fresh = crate::engine::StatsEngine::new(cfg.clone());
        let cold = run(&mut fresh, &next);
        let mut seeded = crate::engine::StatsEngine::with_baselines(cfg.clone(), learned).unwrap();
        let warm = run(&mut seeded, &next);
        let hits = |f: &[aiops_core::Finding]| {
            f.iter()
                .filter(|f| f.evidence.window.map(|w| w.0) == Some(burst_start))
                .count()
        };
        assert_eq!(hits(&cold), 0, "{cold:#?}");
        assert!(hits(&warm) >= 1, "{warm:#?}");
        // No false finding: the 08:00 ramp-up is in the learned hour-of-day profile.
        let false_warm: Vec<_> = warm
            .iter()
            .filter(|f| f.evidence.window.map(|w| w.0) != Some(burst_start))
            .collect();
        assert!(false_warm.is_empty(), "{false_warm:#?}");
        let counters = seeded.counters();
        assert_eq!(counters.log_groups_seeded, 1);
        assert!(counters.series_seeded >= 2, "{counters:?}");
        // The template is known: no novelty, and the seeded miner's template is reused.
        assert_eq!(counters.templates_per_group.get("/ecs/api"), Some(&1));
    }

    #[test]
    fn empty_baselines_change_nothing() {
        let mut cfg = StatisticsConfig::default();
        cfg.multiline.enabled = false;
        let mut id = 0;
        let events = traffic(0, 120, |_| 3, Some((90, 50)), &mut id);
        let mut plain = crate::engine::StatsEngine::new(cfg.clone());
        let mut empty =
            crate::engine::StatsEngine::with_baselines(cfg.clone(), Baselines::empty(60)).unwrap();
        let strip = |v: Vec<aiops_core::Finding>| -> Vec<(String, i64, String)> {
            v.into_iter()
                .map(|f| (f.finding_id, f.event_time, f.summary))
                .collect()
        };
        let a = strip(run(&mut plain, &events));
        // The level series and the template series both see the burst: one merged finding.
        assert_eq!(a.len(), 1);
        assert_eq!(a, strip(run(&mut empty, &events)));
        // Tracing does not change findings either.
        let mut traced = crate::engine::StatsEngine::new(cfg);
        traced.trace_series(["log_level:/ecs/api:ERROR".to_string()]);
        assert_eq!(a, strip(run(&mut traced, &events)));
        let traces = traced.take_traces();
        assert_eq!(traces.len(), 120);
        let burst = traces.iter().find(|t| t.window_start == 90 * MIN).unwrap();
        assert_eq!(burst.observed, 53.0);
        assert!(burst.score >= 0.5);
        assert_eq!(traces.first().map(|t| t.observed), Some(3.0));
    }

    #[test]
    fn validation_names_the_field_and_round_trips() {
        let cfg = StatisticsConfig::default();
        let b = doc();
        b.validate(&cfg).unwrap();
        let back = Baselines::from_json(&b.to_json().unwrap()).unwrap();
        assert_eq!(back, b);
        let mut w = b.clone();
        w.window_secs = 300;
        assert_eq!(
            w.validate(&cfg).unwrap_err().to_string(),
            "baselines.window_secs: learned with 300 s windows, but detect.statistics.window_secs is 60: learn again with this configuration"
        );
        let mut h = b.clone();
        if let Some(c) = h.series[0].count.as_mut() {
            c.hour_of_day.pop();
        }
        assert_eq!(
            h.validate(&cfg).unwrap_err().to_string(),
            "baselines.series[0].count.hour_of_day: expected 24 entries, got 23"
        );
        let mut d = b.clone();
        if let Some(c) = d.series[0].count.as_mut() {
            c.dispersion = 0.5;
        }
        assert!(matches!(
            d.validate(&cfg),
            Err(BaselineError::Invalid { field, .. }) if field == "series[0].count.dispersion"
        ));
        let mut v = b.clone();
        v.version = 9;
        assert!(
            v.validate(&cfg)
                .unwrap_err()
                .to_string()
                .contains("version 9")
        );
        assert!(Baselines::from_json(b"{\"format\":1}").is_err());
        let dir = std::env::temp_dir().join(format!("aiops-baselines-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("b.json");
        b.save(&path).unwrap();
        assert_eq!(Baselines::load(&path, &cfg).unwrap(), b);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
