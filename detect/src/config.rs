//! Configuration of the statistical detectors (`[detect.statistics]` in `pipeline.toml`).
//!
//! Every struct is `#[serde(deny_unknown_fields, default)]`: a table may set any subset of its
//! fields, a misspelt field is an error, and [`StatisticsConfig::validate`] rejects values out
//! of range with a message naming the field.

use crate::multiline::MultilineConfig;
use crate::rate::RateConfig;
use crate::template::TemplateConfig;
use crate::value::ValueConfig;
use aiops_core::{Finding, Priority};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// A configuration value out of its allowed range.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ConfigError {
    /// `field` (its path under `detect.statistics`) must satisfy `rule`.
    #[error("detect.statistics.{field} must be {rule} (got {value})")]
    OutOfRange {
        /// Dotted path of the field under `detect.statistics`, e.g. `rate.alpha`.
        field: &'static str,
        /// The rule it breaks, e.g. `in (0, 1]`.
        rule: &'static str,
        /// The offending value, as text.
        value: String,
    },
}

/// Which series the engine tracks (`[detect.statistics.series]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SeriesConfig {
    /// Count of log entries per log group and template (`log_template:<group>:<id>`).
    /// Default true.
    pub log_templates: bool,
    /// Count of ERROR / WARN / FATAL log entries per log group (`log_level:<group>:<LEVEL>`).
    /// Default true.
    pub log_levels: bool,
    /// Count of calls per principal and API (`api_call:<principal>:<source>:<name>`).
    /// Default true.
    pub principal_calls: bool,
    /// Count of failed calls per error code (`api_error:<code>`). Default true.
    pub error_codes: bool,
    /// Count of failed calls per principal and error code
    /// (`api_error_principal:<principal>:<code>`), e.g. an AccessDenied burst from one
    /// principal. Default true.
    pub error_codes_per_principal: bool,
    /// Count of calls per CloudTrail event source (`event_source:<source>`). Default true.
    pub event_sources: bool,
    /// Metric values per namespace, metric and dimensions
    /// (`metric:<namespace>:<metric>:<dims>`); the window value is the mean of the data
    /// points' averages. Default true.
    pub metrics: bool,
}

impl Default for SeriesConfig {
    fn default() -> Self {
        SeriesConfig {
            log_templates: true,
            log_levels: true,
            principal_calls: true,
            error_codes: true,
            error_codes_per_principal: true,
            event_sources: true,
            metrics: true,
        }
    }
}

/// The combination that decides when a score becomes a finding
/// (`[detect.statistics.decision]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DecisionConfig {
    /// A window (count series) or observation (value series) whose score is at least this
    /// becomes a finding. Scores are `−log10(p) / decades` of the detector's tail probability
    /// `p`, so with the default `decades = 10`, 0.5 means `p ≤ 1e−5`. Default 0.5; in (0, 1].
    pub finding_threshold: f64,
    /// After a finding, the same series raises no new finding for this many windows (count
    /// series) or observations (value series), and its score is reported as 0 meanwhile.
    /// Default 10.
    pub cooldown: u32,
}

impl Default for DecisionConfig {
    fn default() -> Self {
        DecisionConfig {
            finding_threshold: 0.5,
            cooldown: 10,
        }
    }
}

/// Novelty: the first appearance of a log template or a principal/API pair after warm-up
/// (`[detect.statistics.novelty]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NoveltyConfig {
    /// Whether novelty findings are raised. Default true.
    pub enabled: bool,
    /// Event-time warm-up in seconds: templates are novel only after their log group has been
    /// seen this long, principal/API pairs only after the engine has seen events for this
    /// long. Default 86400 (a day: daily jobs and their principals must have run once before
    /// a pair counts as new).
    pub warmup_secs: u64,
    /// Volume warm-up: templates are novel only after their log group has produced this many
    /// log entries, principal/API pairs only after the engine has seen this many CloudTrail
    /// events. A sparse history (a few events over months) is no baseline for "first time".
    /// Default 10000.
    pub warmup_min_events: u64,
    /// Score given to a novelty finding, in [0, 1]. Default 0.7.
    pub score: f64,
    /// At most this many novelty findings per log group (or per principal) per window; the
    /// rest are counted in `novelty_suppressed`. Default 5.
    pub max_per_window: u32,
    /// Principal/API pairs remembered (oldest-seen evicted first). Default 100000.
    pub max_pairs: usize,
}

impl Default for NoveltyConfig {
    fn default() -> Self {
        NoveltyConfig {
            enabled: true,
            warmup_secs: 86_400,
            warmup_min_events: 10_000,
            score: 0.7,
            max_per_window: 5,
            max_pairs: 100_000,
        }
    }
}

/// Configuration for all statistical detectors (`[detect.statistics]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatisticsConfig {
    /// Tumbling event-time window length in seconds; windows are aligned to the Unix epoch.
    /// Default 60.
    pub window_secs: u64,
    /// Allowed lateness in seconds: the watermark is the maximum event time seen minus this;
    /// a window closes when the watermark passes its end. Later events are counted in
    /// `late_events` and added to the oldest open window. Default 10.
    pub allowed_lateness_secs: u64,
    /// A series without events for this many seconds of event time is evicted (its model is
    /// forgotten). Default 259200 (3 days). A count series that learned a recurring burst
    /// is kept for at least 8 days, so a weekly job is still known at its next run.
    pub idle_eviction_secs: u64,
    /// Maximum number of series tracked; events for new series beyond it are counted in
    /// `series_rejected` and not tracked. Default 100000.
    pub max_series: usize,
    /// Maximum number of log groups with a template miner; entries of further groups only
    /// feed the level series. Default 10000.
    pub max_log_groups: usize,
    /// Maximum findings returned per window close (highest scores kept); the rest are counted
    /// in `findings_dropped`. Default 1000.
    pub max_findings_per_close: usize,
    /// Example lines kept per series and window for log findings. Default 3; at most 10.
    pub samples_per_window: usize,
    /// Example lines are cut to this many bytes (on a character boundary). Default 512.
    pub sample_max_bytes: usize,
    /// Which series are tracked.
    pub series: SeriesConfig,
    /// Rate model for count series.
    pub rate: RateConfig,
    /// Value detector for metric series.
    pub value: ValueConfig,
    /// When a score becomes a finding.
    pub decision: DecisionConfig,
    /// Novelty findings.
    pub novelty: NoveltyConfig,
    /// Log template miner (per log group).
    pub templates: TemplateConfig,
    /// Joining multi-line log entries.
    pub multiline: MultilineConfig,
    /// The finding priorities that open an incident (`"HIGH"`, `"MEDIUM"`, `"LOW"`); findings
    /// of other priorities are only recorded (findings table, backtest). See
    /// [`StatisticsConfig::opens_incident`] and [`crate::triage`] for how priorities are
    /// given. Default `["HIGH"]`: ERROR/FATAL and AccessDenied bursts, drops of busy series,
    /// new error templates and value anomalies open one; a WARN burst, a new principal/API
    /// pair or a single unconfirmed window (`MEDIUM`) and an INFO or DEBUG template's rate
    /// change (`LOW`) are recorded only.
    pub incident_priorities: Vec<Priority>,
}

impl Default for StatisticsConfig {
    fn default() -> Self {
        StatisticsConfig {
            window_secs: 60,
            allowed_lateness_secs: 10,
            idle_eviction_secs: 259_200,
            max_series: 100_000,
            max_log_groups: 10_000,
            max_findings_per_close: 1000,
            samples_per_window: 3,
            sample_max_bytes: 512,
            series: SeriesConfig::default(),
            rate: RateConfig::default(),
            value: ValueConfig::default(),
            decision: DecisionConfig::default(),
            novelty: NoveltyConfig::default(),
            templates: TemplateConfig::default(),
            multiline: MultilineConfig::default(),
            incident_priorities: vec![Priority::High],
        }
    }
}

fn check(
    ok: bool,
    field: &'static str,
    rule: &'static str,
    value: impl ToString,
) -> Result<(), ConfigError> {
    if ok {
        Ok(())
    } else {
        Err(ConfigError::OutOfRange {
            field,
            rule,
            value: value.to_string(),
        })
    }
}

fn unit_open_closed(x: f64) -> bool {
    x > 0.0 && x <= 1.0
}

impl StatisticsConfig {
    /// Whether `finding` opens an incident: its priority is one of `incident_priorities`.
    /// Change-rule findings always do (they are `HIGH` and drive recovery).
    pub fn opens_incident(&self, finding: &Finding) -> bool {
        finding.opens_incident(&self.incident_priorities)
    }

    /// Checks every field against its documented range.
    ///
    /// # Errors
    /// The first [`ConfigError::OutOfRange`] found, naming the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        const WEEK: u64 = 7 * 86_400;
        check(
            self.window_secs >= 1 && self.window_secs <= 86_400,
            "window_secs",
            "between 1 and 86400",
            self.window_secs,
        )?;
        check(
            self.allowed_lateness_secs <= WEEK,
            "allowed_lateness_secs",
            "at most 604800 (one week)",
            self.allowed_lateness_secs,
        )?;
        check(
            self.idle_eviction_secs >= self.window_secs,
            "idle_eviction_secs",
            "at least window_secs",
            self.idle_eviction_secs,
        )?;
        check(
            self.max_series >= 1,
            "max_series",
            "at least 1",
            self.max_series,
        )?;
        check(
            self.max_findings_per_close >= 1,
            "max_findings_per_close",
            "at least 1",
            self.max_findings_per_close,
        )?;
        check(
            self.samples_per_window <= 10,
            "samples_per_window",
            "at most 10",
            self.samples_per_window,
        )?;
        check(
            self.sample_max_bytes >= 16 && self.sample_max_bytes <= 65_536,
            "sample_max_bytes",
            "between 16 and 65536",
            self.sample_max_bytes,
        )?;
        let d = &self.decision;
        check(
            unit_open_closed(d.finding_threshold),
            "decision.finding_threshold",
            "in (0, 1]",
            d.finding_threshold,
        )?;
        let r = &self.rate;
        check(
            unit_open_closed(r.alpha),
            "rate.alpha",
            "in (0, 1]",
            r.alpha,
        )?;
        check(
            unit_open_closed(r.long_alpha),
            "rate.long_alpha",
            "in (0, 1]",
            r.long_alpha,
        )?;
        check(
            unit_open_closed(r.seasonal_alpha),
            "rate.seasonal_alpha",
            "in (0, 1]",
            r.seasonal_alpha,
        )?;
        check(
            r.min_expected > 0.0 && r.min_expected.is_finite(),
            "rate.min_expected",
            "a finite number > 0",
            r.min_expected,
        )?;
        check(
            r.decades > 0.0 && r.decades.is_finite(),
            "rate.decades",
            "a finite number > 0",
            r.decades,
        )?;
        check(
            r.winsor_sigmas > 0.0 && r.winsor_sigmas.is_finite(),
            "rate.winsor_sigmas",
            "a finite number > 0",
            r.winsor_sigmas,
        )?;
        check(
            r.min_ratio >= 1.0 && r.min_ratio.is_finite(),
            "rate.min_ratio",
            "a finite number >= 1",
            r.min_ratio,
        )?;
        check(
            r.min_excess >= 0.0 && r.min_excess.is_finite(),
            "rate.min_excess",
            "a finite number >= 0",
            r.min_excess,
        )?;
        let v = &self.value;
        check(v.history >= 3, "value.history", "at least 3", v.history)?;
        check(
            v.min_history >= 2 && v.min_history <= v.history,
            "value.min_history",
            "between 2 and value.history",
            v.min_history,
        )?;
        check(
            v.short_window >= 1 && v.short_window <= v.history,
            "value.short_window",
            "between 1 and value.history",
            v.short_window,
        )?;
        check(
            v.calibration >= 10,
            "value.calibration",
            "at least 10",
            v.calibration,
        )?;
        check(
            v.min_calibration >= 1 && v.min_calibration <= v.calibration,
            "value.min_calibration",
            "between 1 and value.calibration",
            v.min_calibration,
        )?;
        check(
            v.tail_quantile > 0.0 && v.tail_quantile < 1.0,
            "value.tail_quantile",
            "in (0, 1)",
            v.tail_quantile,
        )?;
        check(
            v.slots_per_day >= 1 && v.slots_per_day <= 1440,
            "value.slots_per_day",
            "between 1 and 1440",
            v.slots_per_day,
        )?;
        check(
            unit_open_closed(v.seasonal_alpha),
            "value.seasonal_alpha",
            "in (0, 1]",
            v.seasonal_alpha,
        )?;
        check(
            v.seasonal_min_days >= 0.0 && v.seasonal_min_days.is_finite(),
            "value.seasonal_min_days",
            "a finite number >= 0",
            v.seasonal_min_days,
        )?;
        check(
            v.decades > 0.0 && v.decades.is_finite(),
            "value.decades",
            "a finite number > 0",
            v.decades,
        )?;
        check(
            v.relative_floor >= 0.0 && v.relative_floor.is_finite(),
            "value.relative_floor",
            "a finite number >= 0",
            v.relative_floor,
        )?;
        check(
            (1..=7).contains(&v.seasonal_days),
            "value.seasonal_days",
            "between 1 and 7",
            v.seasonal_days,
        )?;
        check(
            v.suppress <= 100_000,
            "value.suppress",
            "at most 100000 observations",
            v.suppress,
        )?;
        check(
            v.likelihood_short >= 1 && v.likelihood_short <= 10_000,
            "value.likelihood_short",
            "between 1 and 10000 observations",
            v.likelihood_short,
        )?;
        check(
            v.return_period_secs.is_finite() && (0.0..=1e9).contains(&v.return_period_secs),
            "value.return_period_secs",
            "a finite number of seconds in [0, 1e9]",
            v.return_period_secs,
        )?;
        check(
            v.cusum_k >= 0.0 && v.cusum_k.is_finite(),
            "value.cusum_k",
            "a finite number >= 0",
            v.cusum_k,
        )?;
        check(
            v.cusum_cap >= 0.0 && v.cusum_cap.is_finite(),
            "value.cusum_cap",
            "a finite number >= 0",
            v.cusum_cap,
        )?;
        check(
            v.level || v.shift || v.seasonal || v.step || v.cusum,
            "value.level",
            "true for at least one of level, shift, seasonal, step, cusum",
            v.level,
        )?;
        let n = &self.novelty;
        check(
            (0.0..=1.0).contains(&n.score),
            "novelty.score",
            "in [0, 1]",
            n.score,
        )?;
        check(
            n.max_pairs >= 1,
            "novelty.max_pairs",
            "at least 1",
            n.max_pairs,
        )?;
        let t = &self.templates;
        check(
            t.depth >= 3 && t.depth <= 16,
            "templates.depth",
            "between 3 and 16",
            t.depth,
        )?;
        check(
            unit_open_closed(t.similarity_threshold),
            "templates.similarity_threshold",
            "in (0, 1]",
            t.similarity_threshold,
        )?;
        check(
            t.max_children >= 1,
            "templates.max_children",
            "at least 1",
            t.max_children,
        )?;
        check(
            t.max_templates >= 1,
            "templates.max_templates",
            "at least 1",
            t.max_templates,
        )?;
        check(
            t.max_tokens >= 8 && t.max_tokens <= 1024,
            "templates.max_tokens",
            "between 8 and 1024",
            t.max_tokens,
        )?;
        check(
            t.max_interned >= 1000,
            "templates.max_interned",
            "at least 1000",
            t.max_interned,
        )?;
        let m = &self.multiline;
        check(
            m.max_bytes >= 64 && m.max_bytes <= 1 << 20,
            "multiline.max_bytes",
            "between 64 and 1048576",
            m.max_bytes,
        )?;
        check(
            m.max_lines >= 1,
            "multiline.max_lines",
            "at least 1",
            m.max_lines,
        )?;
        check(
            m.max_pending_streams >= 1,
            "multiline.max_pending_streams",
            "at least 1",
            m.max_pending_streams,
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(StatisticsConfig::default().validate(), Ok(()));
    }

    #[test]
    fn errors_name_the_field() {
        let mut c = StatisticsConfig::default();
        c.rate.alpha = 0.0;
        let e = c.validate().unwrap_err();
        assert_eq!(
            e.to_string(),
            "detect.statistics.rate.alpha must be in (0, 1] (got 0)"
        );
        let c = StatisticsConfig {
            window_secs: 0,
            ..StatisticsConfig::default()
        };
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            "detect.statistics.window_secs must be between 1 and 86400 (got 0)"
        );
        let mut c = StatisticsConfig::default();
        c.templates.similarity_threshold = f64::NAN;
        assert!(matches!(
            c.validate(),
            Err(ConfigError::OutOfRange {
                field: "templates.similarity_threshold",
                ..
            })
        ));
    }

    #[test]
    fn partial_toml_uses_defaults_and_rejects_unknown_fields() {
        let c: StatisticsConfig =
            toml::from_str("window_secs = 30\n[rate]\nalpha = 0.1\n").unwrap();
        assert_eq!(c.window_secs, 30);
        assert_eq!(c.rate.alpha, 0.1);
        assert_eq!(c.rate.long_alpha, RateConfig::default().long_alpha);
        assert_eq!(c.allowed_lateness_secs, 10);
        assert!(toml::from_str::<StatisticsConfig>("window_sec = 30\n").is_err());
        assert!(toml::from_str::<StatisticsConfig>("[rate]\nalpah = 0.1\n").is_err());
    }
}
