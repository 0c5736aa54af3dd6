//! The statistical detection engine: tumbling event-time windows per series, closed by a
//! watermark, scored in parallel at every close (DESIGN §4).
//!
//! - **Windows**: tumbling, `window_secs` long, aligned to the Unix epoch. The watermark is the
//!   largest event time seen minus `allowed_lateness_secs`; every window that ends at or before
//!   the watermark is closed. An event for a window that is already closed is *late*: it is
//!   counted in `late_events` and added to the oldest open window, never dropped.
//! - **Series** (see [`crate::config::SeriesConfig`]): per log group and template, per log group
//!   and level (ERROR / WARN / FATAL), per principal and API call, per API error code (also per
//!   principal), per CloudTrail event source (count series); per metric (value series).
//! - **Scoring** at a close runs over all series in parallel (rayon), each series feeding its
//!   closed windows in time order to its model: [`crate::rate::RateModel`] for counts (empty
//!   windows count as zeros, applied in bulk), [`crate::value::ValueDetector`] for metric
//!   values (empty windows are missing data), then [`crate::decision::Decision`]. Novelty is
//!   flagged when a template is created in a log group, or a principal/API pair is first seen,
//!   after the warm-up.
//! - **Drops**: a busy count series ([`crate::rate::RateModel::busy`]) is closed at every
//!   close even without events, its empty windows scored one by one (a series that stops is a
//!   `drop` finding); windows in which the engine saw no event at all are a gap in the input
//!   and are never scored as drops. A close costs O(series with events + busy series).
//! - **Triage** ([`crate::triage`]): every finding gets a direction and a priority; aggregate
//!   series (error codes, event sources, log levels) name their top contributors per window
//!   (a Space-Saving sketch of [`crate::triage::TOP_K`] counters); one window's findings on
//!   nested series are merged into one. A spike below certainty waits one window for
//!   confirmation (`close::count_window`).
//! - **Determinism**: everything depends on event time and input order only (never on the
//!   wall clock, except `detected_at`), and findings are sorted by window, detector and series,
//!   so a replay and a live run of the same events give the same findings.
//! - **Bounds**: series are capped at `max_series` and evicted after `idle_eviction_secs` of
//!   event time without events; a series holds at most the open windows (bounded by the
//!   lateness) and fixed-size models; examples are capped per window.
//! - **Learned baselines** ([`crate::baseline`]): [`StatsEngine::with_baselines`] seeds each
//!   series' model when the series is first seen, and each log group's template dictionary
//!   when the group is first seen; [`StatsEngine::new_learning`] runs the same engine over
//!   history and [`StatsEngine::baselines`] exports what it learned. Without baselines nothing
//!   changes.
//! - **Traces** ([`StatsEngine::trace_series`]): for backtest reports, the observed, expected
//!   and raw score of every closed window of chosen series.

use crate::baseline::{
    ApiPair, BaselineError, Baselines, LogGroupBaseline, SeriesBaseline, SeriesProfile,
    TemplateBaseline, seed_line, seed_rate_model, seed_value_detector,
};
use crate::config::StatisticsConfig;
use crate::decision::Decision;
use crate::multiline::{MultilineCounters, MultilineJoiner};
use crate::rate::RateModel;
use crate::template::{TemplateMiner, template_key};
use crate::triage::{self, TopEntry, TopK};
use crate::value::ValueDetector;
use ahash::{AHashMap, AHashSet};
use aiops_core::{
    Contributor, Direction, Event, EventBody, Evidence, Finding, FindingKind, LogLevel, ResourceKey,
};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;

const MICROS: i64 = 1_000_000;

/// Engine counters (a snapshot; see [`StatsEngine::counters`]).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct EngineCounters {
    /// Events fed to [`StatsEngine::observe`].
    pub events: u64,
    /// Log entries after multi-line joining.
    pub log_entries: u64,
    /// Events (or joined log entries) whose window was already closed; they were added to the
    /// oldest open window.
    pub late_events: u64,
    /// Metric data points with a non-finite value (ignored).
    pub nonfinite_values: u64,
    /// Series currently tracked.
    pub series_tracked: u64,
    /// Series created so far.
    pub series_created: u64,
    /// Series evicted after being idle.
    pub series_evicted: u64,
    /// Events not tracked for a new series because `max_series` was reached.
    pub series_rejected: u64,
    /// Windows closed (window boundaries passed by the watermark).
    pub windows_closed: u64,
    /// Findings returned.
    pub findings: u64,
    /// Findings dropped by `max_findings_per_close`.
    pub findings_dropped: u64,
    /// Novelty findings suppressed by `novelty.max_per_window`.
    pub novelty_suppressed: u64,
    /// Log groups with a template miner.
    pub log_groups: u64,
    /// Log entries of groups beyond `max_log_groups` (no template series).
    pub log_groups_rejected: u64,
    /// Live templates per log group.
    pub templates_per_group: BTreeMap<String, u64>,
    /// Templates evicted (least recently used) over all groups.
    pub templates_evicted: u64,
    /// Multi-line joining counters.
    pub multiline: MultilineCounters,
    /// Log streams with a pending multi-line entry.
    pub multiline_pending: u64,
    /// Current watermark (µs since the epoch, UTC), once an event has been seen.
    pub watermark: Option<i64>,
    /// Start of the oldest open window (µs), once an event has been seen.
    pub open_from: Option<i64>,
    /// Series whose model was seeded from a learned baseline.
    pub series_seeded: u64,
    /// Log groups whose template dictionary was seeded from a learned baseline.
    pub log_groups_seeded: u64,
}

/// One closed window of a traced series (see [`StatsEngine::trace_series`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WindowTrace {
    /// Series key.
    pub key: String,
    /// Window start, microseconds since the Unix epoch, UTC.
    pub window_start: i64,
    /// Observed count (on-time events) or value (mean of the window's data points).
    pub observed: f64,
    /// What the model expected: the rate baseline `λ` (counts) or the median / seasonal mean
    /// (values).
    pub expected: f64,
    /// For count series, the model's dispersion index `D` (`λ ± 3·√(D·λ)` is a natural band);
    /// `None` for value series.
    pub dispersion: Option<f64>,
    /// The model's score in [0, 1] before the decision (cooldown) is applied.
    pub score: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum Model {
    Count(Box<RateModel>),
    Value(Box<ValueDetector>),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Spec {
    key: String,
    #[serde(deserialize_with = "snapshot::detector_name")]
    detector: snapshot::StaticName,
    what: String,
    resource: Option<ResourceKey>,
    /// Log group and template id, for template series.
    template: Option<(String, u64)>,
    /// Scope for the novelty cap (log group or principal).
    novelty_scope: Option<String>,
    #[serde(deserialize_with = "snapshot::detector_name")]
    novelty_detector: snapshot::StaticName,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct WindowAcc {
    start: i64,
    count: u64,
    /// Of `count`, events that arrived after their own window had closed (late): kept in the
    /// count, but a count series is scored on its on-time events only, since late events say
    /// nothing about the rate in this window (replaying unordered history must not look like
    /// a burst).
    late: u64,
    value_sum: f64,
    value_n: u64,
    /// Sample texts and event ids of the window's earliest events (see [`evidence`]).
    samples: Earliest<String>,
    event_ids: Earliest<()>,
    novel: bool,
    /// Top contributors (aggregate series only).
    top: TopK,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Series {
    spec: Spec,
    model: Model,
    decision: Decision,
    accs: Vec<WindowAcc>,
    accounted_until: Option<i64>,
    last_event: i64,
    /// What the learner accumulates (learning engines only).
    profile: Option<Box<SeriesProfile>>,
    /// Whether closed windows are traced.
    traced: bool,
    /// A spike finding waiting for the next window to confirm it (see `close::count_window`).
    pending: Option<Box<Candidate>>,
}

/// Learned baselines not yet applied: series and log groups seed themselves when first seen.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Seeds {
    series: AHashMap<String, SeriesBaseline>,
    groups: AHashMap<String, LogGroupBaseline>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Candidate {
    slot: usize,
    kind: FindingKind,
    window_start: i64,
    observed: f64,
    expected: f64,
    score: f64,
    samples: Vec<String>,
    event_ids: Vec<String>,
    direction: Option<Direction>,
    top: Vec<TopEntry>,
    /// A spike whose evidence is one window short of certain (see `close::count_window`): its
    /// priority is one step lower.
    marginal: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct LogGroup {
    miner: TemplateMiner,
    first_seen: i64,
    /// Log entries seen in this group (for the novelty volume warm-up).
    entries: u64,
}

/// A bounded set of keys with their last-seen time; when full, the oldest tenth is forgotten.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct SeenSet {
    map: AHashMap<u64, i64>,
    cap: usize,
}

impl SeenSet {
    /// Marks `key` seen at `t`; returns whether it was new.
    fn insert(&mut self, key: u64, t: i64) -> bool {
        if let Some(v) = self.map.get_mut(&key) {
            *v = (*v).max(t);
            return false;
        }
        if self.map.len() >= self.cap.max(1) {
            let mut all: Vec<(i64, u64)> = self.map.iter().map(|(k, v)| (*v, *k)).collect();
            all.sort_unstable();
            for (_, k) in all.iter().take((self.cap / 10).max(1)) {
                self.map.remove(k);
            }
        }
        self.map.insert(key, t);
        true
    }
}

/// What one event contributes to one series.
struct Contribution {
    key: String,
    value: Option<f64>,
    /// Whether the event's sample text goes to the window's samples (built at most once per
    /// event, and only while a window still takes samples).
    sample: bool,
    novel: bool,
    /// The contributor id this event adds to the series' top-contributor sketch (aggregate
    /// series only): a template id (log levels) or the principal's hash (CloudTrail).
    contributor: Option<u64>,
    detector: &'static str,
    novelty_detector: &'static str,
    /// How to describe a new series; `None` when the series exists already (the common case:
    /// nothing but the key is built for it).
    spec: Option<SpecParts>,
}

/// The descriptive parts of a new series' [`Spec`].
struct SpecParts {
    what: String,
    resource: Option<ResourceKey>,
    template: Option<(String, u64)>,
    novelty_scope: Option<String>,
}

fn spec_of(c: &Contribution) -> Spec {
    let (what, resource, template, novelty_scope) = match &c.spec {
        Some(p) => (
            p.what.clone(),
            p.resource.clone(),
            p.template.clone(),
            p.novelty_scope.clone(),
        ),
        None => (c.key.clone(), None, None, None),
    };
    Spec {
        key: c.key.clone(),
        detector: c.detector,
        what,
        resource,
        template,
        novelty_scope,
        novelty_detector: c.novelty_detector,
    }
}

/// An event handed to the engine: a log event it owns (for the multi-line joiner), or any
/// other event by reference. Lives on the stack for one call, so its size does not matter.
#[allow(clippy::large_enum_variant)]
enum Observed<'a> {
    Log(Event),
    Other(&'a Event),
}

/// The statistical detection engine. Feed it events with [`StatsEngine::observe`]; it returns
/// the findings of the windows each event's watermark closes.
#[derive(Debug)]
pub struct StatsEngine {
    cfg: StatisticsConfig,
    window_us: i64,
    lateness_us: i64,
    idle_us: i64,
    max_event_time: Option<i64>,
    /// Set while `flush` closes the last windows: the largest event time seen. A drop in a
    /// window ending after it is not reported (the window is cut short by the end of input).
    input_end: Option<i64>,
    first_event_time: Option<i64>,
    /// CloudTrail events seen (for the novelty volume warm-up).
    cloudtrail_events: u64,
    open_from: Option<i64>,
    series: Vec<Option<Series>>,
    index: AHashMap<String, usize>,
    free: Vec<usize>,
    groups: BTreeMap<String, LogGroup>,
    joiner: MultilineJoiner,
    pairs: SeenSet,
    counters: EngineCounters,
    seeds: Option<Box<Seeds>>,
    learning: bool,
    trace_keys: Option<AHashSet<String>>,
    traces: Vec<WindowTrace>,
    /// Starts of the open windows that received any event (sorted; bounded by the open
    /// windows).
    active: Vec<i64>,
    /// Principal names by hash, for naming top contributors (at most `MAX_NAMES`).
    names: AHashMap<u64, Box<str>>,
}

/// A series with recurring bursts is evicted only after this much idle event time (8 days),
/// whatever `idle_eviction_secs`, so a weekly job's series survives until its next run.
const RECURRING_IDLE_US: i64 = 8 * 86_400 * MICROS;

/// Principal names remembered for naming top contributors; when full, the table is cleared
/// (names come back with the next event of each principal).
const MAX_NAMES: usize = 100_000;

fn truncate_chars(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut out = s.get(..cut).unwrap_or("").to_string();
    out.push('…');
    out
}

fn finding_id(detector: &str, key: &str, window_start: i64) -> String {
    let h = aiops_core::stable_hash(&[
        detector.as_bytes(),
        key.as_bytes(),
        window_start.to_string().as_bytes(),
    ]);
    format!("{h:016x}")
}

impl StatsEngine {
    /// An engine with no state. The configuration should have passed
    /// [`StatisticsConfig::validate`]; out-of-range durations are clamped to at least one
    /// second (window) or zero (lateness).
    pub fn new(config: StatisticsConfig) -> Self {
        let window_us = i64::try_from(config.window_secs.max(1))
            .unwrap_or(60)
            .saturating_mul(MICROS);
        let lateness_us = i64::try_from(config.allowed_lateness_secs)
            .unwrap_or(0)
            .saturating_mul(MICROS);
        let idle_us = i64::try_from(config.idle_eviction_secs)
            .unwrap_or(i64::MAX / MICROS)
            .saturating_mul(MICROS)
            .max(window_us);
        StatsEngine {
            joiner: MultilineJoiner::new(&config.multiline),
            pairs: SeenSet {
                map: AHashMap::new(),
                cap: config.novelty.max_pairs,
            },
            cfg: config,
            window_us,
            lateness_us,
            idle_us,
            max_event_time: None,
            input_end: None,
            first_event_time: None,
            cloudtrail_events: 0,
            open_from: None,
            series: Vec::new(),
            index: AHashMap::new(),
            free: Vec::new(),
            groups: BTreeMap::new(),
            counters: EngineCounters::default(),
            seeds: None,
            learning: false,
            trace_keys: None,
            traces: Vec::new(),
            active: Vec::new(),
            names: AHashMap::new(),
        }
    }

    /// An engine seeded from learned baselines (see [`crate::baseline`]): the novelty warm-up
    /// counts from `baselines.learned_from` with `baselines.cloudtrail_events` already seen,
    /// the principal/API pairs are known, each log group's template dictionary is loaded when
    /// the group is first seen, and each series' model is seeded when the series is first
    /// seen. Detection itself is unchanged.
    ///
    /// # Errors
    /// [`BaselineError`] when the baselines do not fit `config` ([`Baselines::validate`]).
    pub fn with_baselines(
        config: StatisticsConfig,
        baselines: Baselines,
    ) -> Result<Self, BaselineError> {
        baselines.validate(&config)?;
        let mut e = StatsEngine::new(config);
        if baselines.events > 0 {
            e.first_event_time = Some(baselines.learned_from);
        }
        e.cloudtrail_events = baselines.cloudtrail_events;
        for p in &baselines.pairs {
            let pair = aiops_core::stable_hash(&[
                p.principal.as_bytes(),
                p.event_source.as_bytes(),
                p.event_name.as_bytes(),
            ]);
            e.pairs.insert(pair, baselines.learned_to);
        }
        let mut seeds = Seeds::default();
        for s in baselines.series {
            seeds.series.insert(s.key.clone(), s);
        }
        for g in baselines.log_groups {
            seeds.groups.insert(g.log_group.clone(), g);
        }
        e.seeds = Some(Box::new(seeds));
        Ok(e)
    }

    /// An engine that learns baselines while it runs (export them with
    /// [`StatsEngine::baselines`] after [`StatsEngine::flush`]). It detects exactly as
    /// [`StatsEngine::new`] does, except that series are never evicted for being idle, so
    /// every series seen (up to `max_series`) is learned.
    pub fn new_learning(config: StatisticsConfig) -> Self {
        let mut e = StatsEngine::new(config);
        e.learning = true;
        e
    }

    /// Traces the closed windows of the series with these keys from now on (replacing any
    /// earlier choice); collect them with [`StatsEngine::take_traces`].
    pub fn trace_series(&mut self, keys: impl IntoIterator<Item = String>) {
        self.trace_keys = Some(keys.into_iter().collect());
        for s in self.series.iter_mut().flatten() {
            s.traced = self
                .trace_keys
                .as_ref()
                .is_some_and(|k| k.contains(&s.spec.key));
        }
    }

    /// The window traces collected since the last call, in close order.
    pub fn take_traces(&mut self) -> Vec<WindowTrace> {
        std::mem::take(&mut self.traces)
    }

    /// What a learning engine learned ([`StatsEngine::new_learning`]): one baseline per series
    /// with events (sorted by key), the template dictionary of each log group, and the
    /// principal/API pairs (from the `api_call:` series). Call after [`StatsEngine::flush`].
    /// An engine that is not learning returns its dictionaries and pairs with no series.
    pub fn baselines(&mut self) -> Baselines {
        let mut b = Baselines::empty(self.cfg.window_secs);
        b.learned_from = self.first_event_time.unwrap_or(0);
        b.learned_to = self.max_event_time.unwrap_or(b.learned_from);
        b.events = self.counters.events;
        b.cloudtrail_events = self.cloudtrail_events;
        let mut pairs = Vec::new();
        for s in self.series.iter().flatten() {
            if let Some(p) = &s.profile
                && let Some(sb) = p.to_baseline(&s.spec.key)
            {
                b.series.push(sb);
            }
            if let Some(rest) = s.spec.key.strip_prefix("api_call:") {
                // `api_call:<principal>:<event source>:<event name>`; sources and names hold
                // no colon, principals (ARNs) may.
                let mut it = rest.rsplitn(3, ':');
                if let (Some(name), Some(source), Some(principal)) =
                    (it.next(), it.next(), it.next())
                {
                    pairs.push(ApiPair {
                        principal: principal.to_string(),
                        event_source: source.to_string(),
                        event_name: name.to_string(),
                    });
                }
            }
        }
        b.series.sort_by(|x, y| x.key.cmp(&y.key));
        pairs.sort();
        pairs.dedup();
        pairs.truncate(self.cfg.novelty.max_pairs);
        b.pairs = pairs;
        for (name, g) in self.groups.iter_mut() {
            b.log_groups.push(LogGroupBaseline {
                log_group: name.clone(),
                first_seen: g.first_seen,
                entries: g.entries,
                templates: g
                    .miner
                    .templates()
                    .into_iter()
                    .map(|t| TemplateBaseline {
                        template_id: t.template_id,
                        text: t.text,
                        size: t.size,
                    })
                    .collect(),
            });
        }
        b
    }

    /// The configuration in use.
    pub fn config(&self) -> &StatisticsConfig {
        &self.cfg
    }

    fn window_of(&self, t: i64) -> i64 {
        t.div_euclid(self.window_us) * self.window_us
    }

    /// Feeds one normalised event (any source). Returns the findings produced by the windows
    /// that the new watermark closed (usually none), sorted by window start, detector and
    /// series key.
    pub fn observe(&mut self, event: &Event) -> Vec<Finding> {
        if event.log().is_some() {
            // The multi-line joiner keeps log events: it needs its own copy.
            return self.observe_owned(event.clone());
        }
        self.observe_inner(event.event_time, Observed::Other(event))
    }

    /// [`StatsEngine::observe`] for an event the caller no longer needs: log events go to the
    /// multi-line joiner without a copy.
    pub fn observe_owned(&mut self, event: Event) -> Vec<Finding> {
        if event.log().is_some() {
            return self.observe_inner(event.event_time, Observed::Log(event));
        }
        self.observe_inner(event.event_time, Observed::Other(&event))
    }

    fn observe_inner(&mut self, t: i64, observed: Observed<'_>) -> Vec<Finding> {
        self.counters.events += 1;
        if self.first_event_time.is_none() {
            self.first_event_time = Some(t);
        }
        if self.open_from.is_none() {
            self.open_from = Some(self.window_of(t.saturating_sub(self.lateness_us)));
        }
        match observed {
            Observed::Log(log) => {
                for entry in self.joiner.push(log) {
                    self.ingest(&entry);
                }
            }
            Observed::Other(event) => self.ingest(event),
        }
        self.max_event_time = Some(self.max_event_time.map_or(t, |m| m.max(t)));
        let watermark = self
            .max_event_time
            .unwrap_or(t)
            .saturating_sub(self.lateness_us);
        let until = self.window_of(watermark);
        match self.open_from {
            Some(open) if until > open => self.close_until(until),
            _ => Vec::new(),
        }
    }

    /// Completes pending multi-line entries, closes every open window (end of a replay) and
    /// returns the findings.
    pub fn flush(&mut self) -> Vec<Finding> {
        for entry in self.joiner.flush_all() {
            self.ingest(&entry);
        }
        let last = self
            .series
            .iter()
            .flatten()
            .flat_map(|s| s.accs.iter().map(|a| a.start))
            .max();
        self.input_end = self.max_event_time;
        let mut out = match (last, self.open_from) {
            (Some(last), Some(open)) => {
                let until = last.saturating_add(self.window_us).max(open);
                if until > open {
                    self.close_until(until)
                } else {
                    Vec::new()
                }
            }
            _ => Vec::new(),
        };
        self.input_end = None;
        // Spikes still waiting for a next window are reported as they stand (nothing refuted
        // them).
        let pending: Vec<Candidate> = self
            .series
            .iter_mut()
            .flatten()
            .filter_map(|s| s.pending.take().map(|c| *c))
            .collect();
        if !pending.is_empty() {
            out.extend(self.finalize(pending));
        }
        out
    }

    /// A snapshot of the counters.
    pub fn counters(&self) -> EngineCounters {
        let mut c = self.counters.clone();
        c.series_tracked = self.series.iter().flatten().count() as u64;
        c.log_groups = self.groups.len() as u64;
        c.templates_per_group = self
            .groups
            .iter()
            .map(|(k, g)| (k.clone(), g.miner.len() as u64))
            .collect();
        c.templates_evicted = self.groups.values().map(|g| g.miner.evicted()).sum();
        c.multiline = self.joiner.counters();
        c.multiline_pending = self.joiner.pending_len() as u64;
        c.watermark = self
            .max_event_time
            .map(|m| m.saturating_sub(self.lateness_us));
        c.open_from = self.open_from;
        c
    }

    /// The window an event at `t` goes to, and whether it is late (its own window is closed,
    /// so it goes to the oldest open window and is counted in `late_events`).
    fn route(&mut self, t: i64) -> (i64, bool) {
        let w = self.window_of(t);
        match self.open_from {
            Some(open) if w < open => {
                self.counters.late_events += 1;
                (open, true)
            }
            _ => (w, false),
        }
    }

    fn ingest(&mut self, event: &Event) {
        let (window, late) = self.route(event.event_time);
        // Windows with any event (sorted; usually the last one or an append).
        if self.active.last() != Some(&window) {
            let pos = self.active.partition_point(|&w| w < window);
            if self.active.get(pos) != Some(&window) {
                self.active.insert(pos, window);
            }
        }
        let mut principal = None;
        let contributions = match &event.body {
            EventBody::Logs(_) => self.log_contributions(event),
            EventBody::Cloudtrail(ct) => {
                let p: &str = principal.insert(ct.principal.key());
                self.cloudtrail_contributions(event, p)
            }
            EventBody::Metrics(_) => self.metric_contributions(event),
        };
        let mut sample = None;
        for c in contributions {
            self.add(window, late, event, &c, &mut sample);
        }
    }

    fn resource(event: &Event, resource_type: &str, id: &str) -> ResourceKey {
        ResourceKey {
            resource_type: resource_type.to_string(),
            resource_id: id.to_string(),
            account: event.account.clone(),
            region: event.region.clone(),
        }
    }

    /// The descriptive parts for `key`, built by `parts` only when no series has that key
    /// yet.
    fn spec_if_new(&self, key: &str, parts: impl FnOnce() -> SpecParts) -> Option<SpecParts> {
        (!self.index.contains_key(key)).then(parts)
    }

    fn log_contributions(&mut self, event: &Event) -> Vec<Contribution> {
        let Some(log) = event.log() else {
            return Vec::new();
        };
        self.counters.log_entries += 1;
        let group = &log.log_group;
        let resource = || Some(Self::resource(event, "log_group", group));
        let mut out = Vec::new();
        let mut template_id = None;
        if self.cfg.series.log_templates {
            let first_line = log.message.lines().next().unwrap_or("");
            let max_groups = self.cfg.max_log_groups;
            let tcfg = &self.cfg.templates;
            if !self.groups.contains_key(group) {
                if self.groups.len() < max_groups {
                    let mut g = LogGroup {
                        miner: TemplateMiner::new(tcfg),
                        first_seen: event.event_time,
                        entries: 0,
                    };
                    if let Some(seeds) = self.seeds.as_mut()
                        && let Some(learned) = seeds.groups.remove(group)
                    {
                        seed_group(&mut g, &learned, group, &mut seeds.series);
                        self.counters.log_groups_seeded += 1;
                    }
                    self.groups.insert(group.clone(), g);
                } else {
                    self.counters.log_groups_rejected += 1;
                }
            }
            let warmup = i64::try_from(self.cfg.novelty.warmup_secs)
                .unwrap_or(i64::MAX / MICROS)
                .saturating_mul(MICROS);
            let novelty = self.cfg.novelty.enabled;
            let min_events = self.cfg.novelty.warmup_min_events;
            if let Some(g) = self.groups.get_mut(group) {
                let m = g.miner.add(first_line);
                template_id = Some(m.template_id);
                g.entries = g.entries.saturating_add(1);
                let novel = novelty
                    && m.created
                    && event.event_time.saturating_sub(g.first_seen) >= warmup
                    && g.entries > min_events;
                let tkey = template_key(m.template_id);
                let key = format!("log_template:{group}:{tkey}");
                let spec = self.spec_if_new(&key, || SpecParts {
                    what: format!("template {tkey} in log group {group}"),
                    resource: resource(),
                    template: Some((group.clone(), m.template_id)),
                    novelty_scope: Some(format!("log_group:{group}")),
                });
                out.push(Contribution {
                    key,
                    value: None,
                    sample: true,
                    novel,
                    contributor: None,
                    detector: "log_template_rate",
                    novelty_detector: "log_template_novelty",
                    spec,
                });
            }
        }
        if self.cfg.series.log_levels
            && let Some(level) = log.level
            && matches!(level, LogLevel::Error | LogLevel::Warn | LogLevel::Fatal)
        {
            let key = format!("log_level:{group}:{}", level.as_str());
            let spec = self.spec_if_new(&key, || SpecParts {
                what: format!("{} entries in log group {group}", level.as_str()),
                resource: resource(),
                template: None,
                novelty_scope: None,
            });
            out.push(Contribution {
                key,
                value: None,
                sample: true,
                novel: false,
                contributor: template_id,
                detector: "log_level_rate",
                novelty_detector: "",
                spec,
            });
        }
        out
    }

    fn cloudtrail_contributions(&mut self, event: &Event, principal: &str) -> Vec<Contribution> {
        // An Insights record is not a call (it has its own finding, `crate::insight`).
        let Some(ct) = event.cloudtrail().filter(|ct| !ct.is_insight()) else {
            return Vec::new();
        };
        let principal_id = aiops_core::stable_hash(&[principal.as_bytes()]);
        let (s, names) = (&self.cfg.series, &mut self.names);
        if (s.error_codes && ct.error_code.is_some() || s.event_sources)
            && !names.contains_key(&principal_id)
        {
            if names.len() >= MAX_NAMES {
                names.clear();
            }
            names.insert(principal_id, Box::from(principal));
        }
        let principal_res = || Some(Self::resource(event, "iam_principal", principal));
        let mut out = Vec::new();
        let s = &self.cfg.series;
        let (principal_calls, error_codes, per_principal, event_sources) = (
            s.principal_calls,
            s.error_codes,
            s.error_codes_per_principal,
            s.event_sources,
        );
        if principal_calls {
            let warmup = i64::try_from(self.cfg.novelty.warmup_secs)
                .unwrap_or(i64::MAX / MICROS)
                .saturating_mul(MICROS);
            let pair = aiops_core::stable_hash(&[
                principal.as_bytes(),
                ct.event_source.as_bytes(),
                ct.event_name.as_bytes(),
            ]);
            let new_pair = self.pairs.insert(pair, event.event_time);
            self.cloudtrail_events = self.cloudtrail_events.saturating_add(1);
            let warmed = self
                .first_event_time
                .is_some_and(|f| event.event_time.saturating_sub(f) >= warmup)
                && self.cloudtrail_events > self.cfg.novelty.warmup_min_events;
            let key = format!("api_call:{principal}:{}:{}", ct.event_source, ct.event_name);
            let spec = self.spec_if_new(&key, || SpecParts {
                what: format!("{} calls by {principal}", ct.event_name),
                resource: principal_res(),
                template: None,
                novelty_scope: Some(format!("principal:{principal}")),
            });
            out.push(Contribution {
                key,
                value: None,
                sample: true,
                novel: self.cfg.novelty.enabled && new_pair && warmed,
                contributor: None,
                detector: "api_call_rate",
                novelty_detector: "api_call_novelty",
                spec,
            });
        }
        if let Some(code) = &ct.error_code {
            if error_codes {
                let key = format!("api_error:{code}");
                let spec = self.spec_if_new(&key, || SpecParts {
                    what: format!("{code} errors"),
                    resource: None,
                    template: None,
                    novelty_scope: None,
                });
                out.push(Contribution {
                    key,
                    value: None,
                    sample: true,
                    novel: false,
                    contributor: Some(principal_id),
                    detector: "api_error_rate",
                    novelty_detector: "",
                    spec,
                });
            }
            if per_principal {
                let key = format!("api_error_principal:{principal}:{code}");
                let spec = self.spec_if_new(&key, || SpecParts {
                    what: format!("{code} errors for {principal}"),
                    resource: principal_res(),
                    template: None,
                    novelty_scope: None,
                });
                out.push(Contribution {
                    key,
                    value: None,
                    sample: true,
                    novel: false,
                    contributor: None,
                    detector: "api_error_principal_rate",
                    novelty_detector: "",
                    spec,
                });
            }
        }
        if event_sources {
            let key = format!("event_source:{}", ct.event_source);
            let spec = self.spec_if_new(&key, || SpecParts {
                what: format!("calls to {}", ct.event_source),
                resource: None,
                template: None,
                novelty_scope: None,
            });
            out.push(Contribution {
                key,
                value: None,
                sample: true,
                novel: false,
                contributor: Some(principal_id),
                detector: "event_source_rate",
                novelty_detector: "",
                spec,
            });
        }
        out
    }

    fn metric_contributions(&mut self, event: &Event) -> Vec<Contribution> {
        let Some(m) = event.metric() else {
            return Vec::new();
        };
        if !self.cfg.series.metrics {
            return Vec::new();
        }
        let v = m.value.average();
        if !v.is_finite() {
            self.counters.nonfinite_values += 1;
            return Vec::new();
        }
        let mut dims = String::new();
        for (i, (k, val)) in m.dimensions.iter().enumerate() {
            if i > 0 {
                dims.push(',');
            }
            let _ = write!(dims, "{k}={val}");
        }
        let key = format!("metric:{}:{}:{dims}", m.namespace, m.metric);
        let spec = self.spec_if_new(&key, || SpecParts {
            what: format!("{}/{} {{{dims}}}", m.namespace, m.metric),
            resource: None,
            template: None,
            novelty_scope: None,
        });
        vec![Contribution {
            key,
            value: Some(v),
            sample: false,
            novel: false,
            contributor: None,
            detector: "metric_value",
            novelty_detector: "",
            spec,
        }]
    }

    fn add(
        &mut self,
        window: i64,
        late: bool,
        event: &Event,
        c: &Contribution,
        sample: &mut Option<String>,
    ) {
        let slot = match self.index.get(c.key.as_str()) {
            Some(&s) => s,
            None => {
                let live = self.series.len() - self.free.len();
                if live >= self.cfg.max_series {
                    self.counters.series_rejected += 1;
                    return;
                }
                let learned = self
                    .seeds
                    .as_mut()
                    .and_then(|seeds| seeds.series.remove(c.key.as_str()));
                let mut accounted_until = None;
                let model = match (c.value.is_some(), learned) {
                    (true, Some(b)) if b.value.is_some() => {
                        self.counters.series_seeded += 1;
                        let v = b.value.as_ref();
                        Model::Value(Box::new(match v {
                            Some(v) => seed_value_detector(v, &self.cfg.value),
                            None => ValueDetector::new(&self.cfg.value),
                        }))
                    }
                    (false, Some(b)) if b.count.is_some() => {
                        self.counters.series_seeded += 1;
                        accounted_until = Some(window);
                        Model::Count(Box::new(match &b.count {
                            Some(cb) => {
                                seed_rate_model(&b, cb, window, self.window_us, &self.cfg.rate)
                            }
                            None => RateModel::new(),
                        }))
                    }
                    (true, _) => Model::Value(Box::new(ValueDetector::new(&self.cfg.value))),
                    (false, _) => Model::Count(Box::default()),
                };
                let profile = self.learning.then(|| {
                    Box::new(if c.value.is_some() {
                        SeriesProfile::value(
                            self.cfg
                                .value
                                .history
                                .saturating_add(self.cfg.value.calibration),
                        )
                    } else {
                        SeriesProfile::count()
                    })
                });
                let traced = self
                    .trace_keys
                    .as_ref()
                    .is_some_and(|k| k.contains(c.key.as_str()));
                let s = Series {
                    spec: spec_of(c),
                    model,
                    decision: Decision::new(),
                    accs: Vec::new(),
                    accounted_until,
                    last_event: event.event_time,
                    profile,
                    traced,
                    pending: None,
                };
                let slot = match self.free.pop() {
                    Some(i) => {
                        if let Some(x) = self.series.get_mut(i) {
                            *x = Some(s);
                        }
                        i
                    }
                    None => {
                        self.series.push(Some(s));
                        self.series.len() - 1
                    }
                };
                self.index.insert(c.key.clone(), slot);
                self.counters.series_created += 1;
                slot
            }
        };
        let max_samples = self.cfg.samples_per_window.min(10);
        let sample_max_bytes = self.cfg.sample_max_bytes;
        let Some(Some(s)) = self.series.get_mut(slot) else {
            return;
        };
        s.last_event = s.last_event.max(event.event_time);
        let pos = s.accs.partition_point(|a| a.start < window);
        if s.accs.get(pos).is_none_or(|a| a.start != window) {
            s.accs.insert(
                pos,
                WindowAcc {
                    start: window,
                    ..WindowAcc::default()
                },
            );
        }
        if let Some(acc) = s.accs.get_mut(pos) {
            acc.count += 1;
            acc.late += u64::from(late);
            if let Some(v) = c.value {
                acc.value_sum += v;
                acc.value_n += 1;
            }
            acc.novel |= c.novel;
            if let Some(id) = c.contributor {
                acc.top.add(id);
            }
            let (t, id) = (event.event_time, event.event_id.as_str());
            if c.sample
                && let Some(pos) = acc.samples.slot(t, id, max_samples)
            {
                let smp = sample.get_or_insert_with(|| sample_of(event, sample_max_bytes));
                acc.samples.insert(pos, t, id, smp.clone(), max_samples);
            }
            if let Some(pos) = acc.event_ids.slot(t, id, max_samples) {
                acc.event_ids.insert(pos, t, id, (), max_samples);
            }
        }
    }

    /// Closes every window starting before `until` (a window boundary) and returns findings.
    fn close_until(&mut self, until: i64) -> Vec<Finding> {
        // Multi-line entries that started in closing windows are complete now.
        for entry in self.joiner.flush_before(until) {
            self.ingest(&entry);
        }
        let open = self.open_from.unwrap_or(until);
        self.counters.windows_closed += u64::try_from((until - open) / self.window_us).unwrap_or(0);
        let n_active = self.active.partition_point(|&w| w < until);
        let active: Vec<i64> = self.active.drain(..n_active).collect();
        let ctx = CloseCtx {
            until,
            window_us: self.window_us,
            cfg: &self.cfg,
            active: &active,
        };
        let closed: Vec<(Vec<Candidate>, Vec<WindowTrace>)> = self
            .series
            .par_iter_mut()
            .enumerate()
            .filter_map(|(slot, s)| {
                let s = s.as_mut()?;
                // Nothing to close (no window before `until`) and nothing to catch up (a
                // busy count series scores its empty windows at every close).
                let busy = s.pending.is_some() || matches!(&s.model, Model::Count(m) if m.busy());
                if s.profile.is_none() && !busy && s.accs.first().is_none_or(|a| a.start >= until) {
                    return None;
                }
                let (c, t) = close_series(slot, s, &ctx);
                (!c.is_empty() || !t.is_empty()).then_some((c, t))
            })
            .collect();
        let mut candidates = Vec::new();
        for (c, t) in closed {
            candidates.extend(c);
            self.traces.extend(t);
        }
        // At the end of the input (`flush`), the last windows are cut short: a window that
        // ends after the last event seen is partial, and its low count is the end of the
        // input, not a drop of the series.
        if let Some(end) = self.input_end {
            let window_us = self.window_us;
            candidates.retain(|c| {
                c.direction != Some(Direction::Drop)
                    || c.window_start.saturating_add(window_us) <= end
            });
        }
        self.open_from = Some(until);
        let findings = self.finalize(candidates);
        self.evict_idle(until);
        findings
    }

    fn evict_idle(&mut self, until: i64) {
        if self.learning {
            return;
        }
        let limit = until.saturating_sub(self.idle_us);
        // A series with a recurring burst is kept until its weekly recurrence is overdue.
        let week_limit = until.saturating_sub(RECURRING_IDLE_US);
        for slot in 0..self.series.len() {
            let idle = matches!(
                self.series.get(slot),
                Some(Some(s)) if s.last_event < limit
                    && s.accs.is_empty()
                    && (s.last_event < week_limit
                        || !matches!(&s.model, Model::Count(m) if m.has_recurring()))
            );
            if idle && let Some(s) = self.series.get_mut(slot).and_then(Option::take) {
                self.index.remove(&s.spec.key);
                self.free.push(slot);
                self.counters.series_evicted += 1;
            }
        }
    }
}

/// Loads a learned template dictionary into a new log group: each template text is added to
/// the miner as its seed line ([`seed_line`]), in learned id order; the learned series of the
/// group's templates (`log_template:<group>:<template_key of the learned id>`) are re-keyed to the ids the miner
/// gives them now. The group counts as seen since the learned `first_seen`, with the learned
/// number of entries (the novelty warm-up).
fn seed_group(
    g: &mut LogGroup,
    learned: &LogGroupBaseline,
    group: &str,
    series: &mut AHashMap<String, SeriesBaseline>,
) {
    g.first_seen = g.first_seen.min(learned.first_seen);
    g.entries = learned.entries;
    let mut templates: Vec<&TemplateBaseline> = learned.templates.iter().collect();
    templates.sort_by_key(|t| t.template_id);
    let mut renamed = Vec::new();
    for t in templates {
        let m = g.miner.add(&seed_line(&t.text));
        let old = format!("log_template:{group}:{}", template_key(t.template_id));
        if let Some(mut b) = series.remove(&old) {
            b.key = format!("log_template:{group}:{}", template_key(m.template_id));
            renamed.push(b);
        }
    }
    for b in renamed {
        // Two learned templates that fold into one keep the busier baseline.
        match series.get(&b.key) {
            Some(existing) if existing.events >= b.events => {}
            _ => {
                series.insert(b.key.clone(), b);
            }
        }
    }
}

mod close;
mod evidence;
mod findings;
pub mod snapshot;

use close::{CloseCtx, close_series};
use evidence::{Earliest, sample_of};

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
