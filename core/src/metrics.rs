//! Stage metrics, emitted as CloudWatch Embedded Metric Format (EMF) log lines: structured
//! JSON log events from which CloudWatch Logs extracts metrics, with no extra API call and no
//! agent (the stage's stdout goes to CloudWatch Logs through the `awslogs` log driver).
//!
//! Format source: "Specification: Embedded metric format", Amazon CloudWatch User Guide
//! (<https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html>);
//! the `x-amzn-logs-format: json/emf` header is not required ("Using the PutLogEvents API to
//! send manually-created embedded metric format logs", same guide). One line is one JSON object:
//!
//! ```json
//! {"_aws":{"Timestamp":1733300000000,"CloudWatchMetrics":[{"Namespace":"aiops",
//!   "Dimensions":[["Stage"]],"Metrics":[{"Name":"RecordsIn","Unit":"Count"}]}]},
//!  "Stage":"ingest","RecordsIn":42}
//! ```
//!
//! - `Timestamp`: milliseconds since the Unix epoch, UTC.
//! - `Dimensions`: one dimension set per line (the keys of the series, `Stage` first); the
//!   spec allows at most [`MAX_DIMENSIONS`] (30) keys per set; dimension values are strings.
//! - `Metrics`: at most [`MAX_METRICS_PER_DIRECTIVE`] (100) definitions per directive; a series
//!   with more metrics is split over several lines. A value is a number, or an array of at
//!   most [`MAX_SAMPLES`] (100) numbers (a distribution: CloudWatch computes its statistics).
//! - Units are CloudWatch's (`Count`, `Milliseconds`, `Seconds`, `Bytes`, `Count/Second`,
//!   `None`).
//!
//! The [`Registry`] holds counters (summed between flushes, reset to 0 by a flush and still
//! emitted as 0 afterwards), gauges (the last value set since the previous flush; emitted only
//! when set) and distributions (up to [`MAX_SAMPLES`] samples between flushes; emitted only
//! when sampled). It is bounded: at most `max_series` dimension sets and
//! [`MAX_METRICS_PER_SERIES`] metrics per set; what does not fit is dropped and counted in the
//! `MetricsDropped` counter of the stage series. Non-finite values are dropped (JSON has no NaN).

use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::time::Duration;
use thiserror::Error;

/// The CloudWatch namespace of every aiops metric.
pub const NAMESPACE: &str = "aiops";
/// Most metric definitions in one EMF metric directive (EMF specification).
pub const MAX_METRICS_PER_DIRECTIVE: usize = 100;
/// Most dimension keys in one EMF dimension set (EMF specification).
pub const MAX_DIMENSIONS: usize = 30;
/// Most values of one metric in one EMF document (EMF specification: arrays of up to 100).
pub const MAX_SAMPLES: usize = 100;
/// Most metrics one series (dimension set) holds in a [`Registry`].
pub const MAX_METRICS_PER_SERIES: usize = 1_000;
/// Default bound of the number of series (dimension sets) of a [`Registry`].
pub const DEFAULT_MAX_SERIES: usize = 1_000;

/// Metric names every stage uses (the Terraform dashboard and alarms name these).
pub mod names {
    /// Counter: Kinesis user records read by the stage (unit Count).
    pub const RECORDS_IN: &str = "RecordsIn";
    /// Counter: normalised events (ingest: produced; detect: consumed) (unit Count).
    pub const EVENTS_IN: &str = "EventsIn";
    /// Counter: records or items sent to the dead letters (unit Count).
    pub const DEAD_LETTERS: &str = "DeadLetters";
    /// Counter: events dropped as duplicates (unit Count).
    pub const DUPLICATES: &str = "Duplicates";
    /// Counter: findings produced (unit Count).
    pub const FINDINGS: &str = "Findings";
    /// Counter: incidents opened (unit Count).
    pub const INCIDENTS: &str = "Incidents";
    /// Counter: stage errors (failed shard tasks, failed writes) (unit Count).
    pub const ERRORS: &str = "Errors";
    /// Gauge per shard (dimension `ShardId`): `MillisBehindLatest` of the last `GetRecords`
    /// answer; and per stage (no `ShardId`): the highest over the stage's shards since the
    /// last flush (unit Milliseconds). The lag alarm uses the stage series.
    pub const MILLIS_BEHIND_LATEST: &str = "MillisBehindLatest";
    /// Gauge per shard (dimension `ShardId`): time since the shard's last checkpoint (or since
    /// its consumer started, before the first one) (unit Milliseconds).
    pub const CHECKPOINT_AGE: &str = "CheckpointAge";
    /// Distribution: wall time to process one batch of records (unit Milliseconds).
    pub const BATCH_LATENCY: &str = "BatchLatency";
    /// Counter: metric updates dropped by the registry bounds (unit Count).
    pub const METRICS_DROPPED: &str = "MetricsDropped";
}

/// Dimension names.
pub mod dimensions {
    /// The stage (`ingest`, `detect`, `act`, or `all` for the single-process profile).
    pub const STAGE: &str = "Stage";
    /// A Kinesis shard id.
    pub const SHARD_ID: &str = "ShardId";
}

/// A CloudWatch unit (the subset aiops uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// `Count`.
    Count,
    /// `Milliseconds`.
    Milliseconds,
    /// `Seconds`.
    Seconds,
    /// `Bytes`.
    Bytes,
    /// `Count/Second`.
    CountPerSecond,
    /// `None`.
    None,
}

impl Unit {
    /// The unit as CloudWatch spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Milliseconds => "Milliseconds",
            Unit::Seconds => "Seconds",
            Unit::Bytes => "Bytes",
            Unit::CountPerSecond => "Count/Second",
            Unit::None => "None",
        }
    }
}

/// The value of one metric in one EMF document.
#[derive(Debug, Clone, PartialEq)]
pub enum MetricValue {
    /// One number.
    Single(f64),
    /// Up to [`MAX_SAMPLES`] numbers.
    Samples(Vec<f64>),
}

/// One metric of a series, ready to render.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricPoint {
    /// Metric name (1..=255 characters; not `_aws` nor a dimension name).
    pub name: String,
    /// Unit.
    pub unit: Unit,
    /// Value.
    pub value: MetricValue,
}

/// Why a metric update was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum MetricsError {
    /// A name the EMF specification does not allow (empty, over 255 characters, `_aws`, or
    /// the same as a dimension name).
    #[error("metric name {0:?} is not allowed")]
    BadName(String),
    /// More than [`MAX_DIMENSIONS`] dimensions, an empty dimension name, or a value over 1024
    /// characters.
    #[error("dimensions {0} are not allowed (at most 30 keys, values up to 1024 characters)")]
    BadDimensions(String),
}

/// Renders one series as EMF lines (JSON objects, no newline): one line per
/// [`MAX_METRICS_PER_DIRECTIVE`] metrics, in the order given. `dims` are (name, value) pairs
/// in the order of the dimension set; `timestamp_millis` is milliseconds since the Unix epoch.
/// Pure; metrics with a non-finite value or no sample are left out, and nothing is rendered
/// when none is left. Members are written in key order (`serde_json`'s map; EMF does not
/// depend on member order).
pub fn render_emf(
    namespace: &str,
    timestamp_millis: i64,
    dims: &[(String, String)],
    metrics: &[MetricPoint],
) -> Vec<String> {
    let usable: Vec<&MetricPoint> = metrics
        .iter()
        .filter(|m| match &m.value {
            MetricValue::Single(v) => v.is_finite(),
            MetricValue::Samples(s) => s.iter().any(|v| v.is_finite()),
        })
        .collect();
    let keys: Vec<Value> = dims
        .iter()
        .take(MAX_DIMENSIONS)
        .map(|(k, _)| Value::String(k.clone()))
        .collect();
    usable
        .chunks(MAX_METRICS_PER_DIRECTIVE)
        .map(|chunk| {
            let definitions: Vec<Value> = chunk
                .iter()
                .map(|m| json!({"Name": m.name, "Unit": m.unit.as_str()}))
                .collect();
            let mut root = Map::new();
            root.insert(
                "_aws".into(),
                json!({
                    "Timestamp": timestamp_millis,
                    "CloudWatchMetrics": [{
                        "Namespace": namespace,
                        "Dimensions": [keys.clone()],
                        "Metrics": definitions,
                    }],
                }),
            );
            for (k, v) in dims.iter().take(MAX_DIMENSIONS) {
                root.insert(k.clone(), Value::String(v.clone()));
            }
            for m in chunk {
                let value = match &m.value {
                    MetricValue::Single(v) => json!(v),
                    MetricValue::Samples(s) => Value::Array(
                        s.iter()
                            .filter(|v| v.is_finite())
                            .take(MAX_SAMPLES)
                            .map(|v| json!(v))
                            .collect(),
                    ),
                };
                root.insert(m.name.clone(), value);
            }
            Value::Object(root).to_string()
        })
        .collect()
}

#[derive(Debug, Clone)]
enum Slot {
    Counter(f64),
    Gauge(Option<f64>),
    Samples(Vec<f64>),
}

#[derive(Debug)]
struct Series {
    metrics: BTreeMap<String, (Unit, Slot)>,
}

#[derive(Debug)]
struct Inner {
    series: BTreeMap<Vec<(String, String)>, Series>,
    dropped: u64,
}

/// The metrics of one stage process (see the module docs). Cheap to share (`Arc`), safe to
/// update from any thread.
#[derive(Debug)]
pub struct Registry {
    stage: String,
    namespace: String,
    max_series: usize,
    inner: Mutex<Inner>,
}

fn valid_name(name: &str, dims: &[(String, String)]) -> bool {
    !name.is_empty()
        && name.chars().count() <= 255
        && name != "_aws"
        && !dims.iter().any(|(k, _)| k == name)
}

impl Registry {
    /// A registry for `stage` (the value of the `Stage` dimension of every series) in the
    /// [`NAMESPACE`] namespace, bounded to [`DEFAULT_MAX_SERIES`] series.
    pub fn new(stage: &str) -> Registry {
        Registry::with_bounds(stage, NAMESPACE, DEFAULT_MAX_SERIES)
    }

    /// A registry with an explicit namespace and series bound (at least 1).
    pub fn with_bounds(stage: &str, namespace: &str, max_series: usize) -> Registry {
        Registry {
            stage: stage.to_string(),
            namespace: namespace.to_string(),
            max_series: max_series.max(1),
            inner: Mutex::new(Inner {
                series: BTreeMap::new(),
                dropped: 0,
            }),
        }
    }

    /// The stage name.
    pub fn stage(&self) -> &str {
        &self.stage
    }

    fn dims(&self, extra: &[(&str, &str)]) -> Result<Vec<(String, String)>, MetricsError> {
        let mut d = vec![(dimensions::STAGE.to_string(), self.stage.clone())];
        for (k, v) in extra {
            if k.is_empty() || v.chars().count() > 1024 || d.iter().any(|(x, _)| x == k) {
                return Err(MetricsError::BadDimensions(format!("{extra:?}")));
            }
            d.push(((*k).to_string(), (*v).to_string()));
        }
        if d.len() > MAX_DIMENSIONS {
            return Err(MetricsError::BadDimensions(format!("{extra:?}")));
        }
        Ok(d)
    }

    fn update(
        &self,
        name: &str,
        unit: Unit,
        extra: &[(&str, &str)],
        apply: impl FnOnce(Option<Slot>) -> Slot,
    ) -> Result<(), MetricsError> {
        let dims = self.dims(extra)?;
        if !valid_name(name, &dims) {
            return Err(MetricsError::BadName(name.to_string()));
        }
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let full = inner.series.len() >= self.max_series;
        let Some(series) = (match inner.series.get_mut(&dims) {
            Some(s) => Some(s),
            None if full => None,
            None => Some(inner.series.entry(dims).or_insert(Series {
                metrics: BTreeMap::new(),
            })),
        }) else {
            inner.dropped += 1;
            return Ok(());
        };
        let previous = series.metrics.get(name).map(|(_, s)| s.clone());
        if previous.is_none() && series.metrics.len() >= MAX_METRICS_PER_SERIES {
            inner.dropped += 1;
            return Ok(());
        }
        series
            .metrics
            .insert(name.to_string(), (unit, apply(previous)));
        Ok(())
    }

    /// Adds `delta` to a counter of the stage series.
    ///
    /// # Errors
    /// [`MetricsError::BadName`] for a name EMF does not allow.
    pub fn add(&self, name: &str, unit: Unit, delta: f64) -> Result<(), MetricsError> {
        self.add_with(name, unit, &[], delta)
    }

    /// Adds `delta` to a counter of the series with the extra dimensions `extra` (after
    /// `Stage`). A non-finite delta is ignored.
    ///
    /// # Errors
    /// [`MetricsError`] for a name or dimensions EMF does not allow.
    pub fn add_with(
        &self,
        name: &str,
        unit: Unit,
        extra: &[(&str, &str)],
        delta: f64,
    ) -> Result<(), MetricsError> {
        let delta = if delta.is_finite() { delta } else { 0.0 };
        self.update(name, unit, extra, |prev| match prev {
            Some(Slot::Counter(v)) => Slot::Counter(v + delta),
            _ => Slot::Counter(delta),
        })
    }

    /// Sets a gauge of the stage series.
    ///
    /// # Errors
    /// [`MetricsError::BadName`] for a name EMF does not allow.
    pub fn set(&self, name: &str, unit: Unit, value: f64) -> Result<(), MetricsError> {
        self.set_with(name, unit, &[], value)
    }

    /// Sets a gauge of the series with the extra dimensions `extra` (e.g. `[("ShardId", id)]`).
    /// A non-finite value is ignored.
    ///
    /// # Errors
    /// [`MetricsError`] for a name or dimensions EMF does not allow.
    pub fn set_with(
        &self,
        name: &str,
        unit: Unit,
        extra: &[(&str, &str)],
        value: f64,
    ) -> Result<(), MetricsError> {
        self.update(name, unit, extra, |prev| {
            if value.is_finite() {
                Slot::Gauge(Some(value))
            } else {
                match prev {
                    Some(Slot::Gauge(v)) => Slot::Gauge(v),
                    _ => Slot::Gauge(None),
                }
            }
        })
    }

    /// Raises a gauge of the series with the extra dimensions `extra` to `value` if it is
    /// higher than what was set since the last flush (a maximum per flush period, e.g. the
    /// stage's `MillisBehindLatest` over all its shards). A non-finite value is ignored.
    ///
    /// # Errors
    /// [`MetricsError`] for a name or dimensions EMF does not allow.
    pub fn set_max_with(
        &self,
        name: &str,
        unit: Unit,
        extra: &[(&str, &str)],
        value: f64,
    ) -> Result<(), MetricsError> {
        self.update(name, unit, extra, |prev| {
            let prev = match prev {
                Some(Slot::Gauge(v)) => v,
                _ => None,
            };
            match (prev, value.is_finite()) {
                (Some(p), true) => Slot::Gauge(Some(p.max(value))),
                (None, true) => Slot::Gauge(Some(value)),
                (p, false) => Slot::Gauge(p),
            }
        })
    }

    /// Adds a sample to a distribution of the stage series; samples past [`MAX_SAMPLES`]
    /// between two flushes are dropped (and counted in `MetricsDropped`).
    ///
    /// # Errors
    /// [`MetricsError::BadName`] for a name EMF does not allow.
    pub fn record(&self, name: &str, unit: Unit, value: f64) -> Result<(), MetricsError> {
        let mut overflow = false;
        self.update(name, unit, &[], |prev| {
            let mut s = match prev {
                Some(Slot::Samples(s)) => s,
                _ => Vec::new(),
            };
            if !value.is_finite() {
            } else if s.len() < MAX_SAMPLES {
                s.push(value);
            } else {
                overflow = true;
            }
            Slot::Samples(s)
        })?;
        if overflow {
            self.inner
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .dropped += 1;
        }
        Ok(())
    }

    /// Forgets every series whose extra dimension `key` has `value` (e.g. a shard whose lease
    /// this worker gave up, so its gauges stop). Returns the number of series removed.
    pub fn remove_series(&self, key: &str, value: &str) -> usize {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let before = inner.series.len();
        inner
            .series
            .retain(|dims, _| !dims.iter().any(|(k, v)| k == key && v == value));
        before - inner.series.len()
    }

    /// Takes what is due (see the module docs), resets counters, clears gauges and samples,
    /// and renders it as EMF lines stamped `timestamp_millis` (milliseconds since the Unix
    /// epoch, UTC), series in dimension order and metrics in name order.
    pub fn flush_lines(&self, timestamp_millis: i64) -> Vec<String> {
        let mut rendered = Vec::new();
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let dropped = std::mem::take(&mut inner.dropped);
        let stage_dims = vec![(dimensions::STAGE.to_string(), self.stage.clone())];
        if dropped > 0 {
            let s = inner.series.entry(stage_dims).or_insert(Series {
                metrics: BTreeMap::new(),
            });
            let slot = s
                .metrics
                .entry(names::METRICS_DROPPED.to_string())
                .or_insert((Unit::Count, Slot::Counter(0.0)));
            if let Slot::Counter(v) = &mut slot.1 {
                *v += dropped as f64;
            }
        }
        for (dims, series) in inner.series.iter_mut() {
            let mut points = Vec::new();
            for (name, (unit, slot)) in series.metrics.iter_mut() {
                let value = match slot {
                    Slot::Counter(v) => Some(MetricValue::Single(std::mem::take(v))),
                    Slot::Gauge(v) => v.take().map(MetricValue::Single),
                    Slot::Samples(s) if s.is_empty() => None,
                    Slot::Samples(s) => Some(MetricValue::Samples(std::mem::take(s))),
                };
                if let Some(value) = value {
                    points.push(MetricPoint {
                        name: name.clone(),
                        unit: *unit,
                        value,
                    });
                }
            }
            rendered.extend(render_emf(&self.namespace, timestamp_millis, dims, &points));
        }
        rendered
    }

    /// [`Registry::flush_lines`], each line written to `out` followed by `\n` in one
    /// `write_all` (so concurrent writers to the same stream do not split it). Returns the
    /// number of lines.
    ///
    /// # Errors
    /// The writer's error (the flushed values are lost then).
    pub fn flush_to<W: Write>(&self, out: &mut W, timestamp_millis: i64) -> std::io::Result<usize> {
        let lines = self.flush_lines(timestamp_millis);
        for line in &lines {
            let mut buf = Vec::with_capacity(line.len() + 1);
            buf.extend_from_slice(line.as_bytes());
            buf.push(b'\n');
            out.write_all(&buf)?;
        }
        out.flush()?;
        Ok(lines.len())
    }
}

/// A thread that flushes a [`Registry`] to standard output (or another writer) every
/// `interval` (the stage's log stream: CloudWatch Logs through the container's log driver), and
/// once more when stopped or dropped.
#[derive(Debug)]
pub struct Flusher {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Flusher {
    /// Starts flushing `registry` to stdout every `interval` (at least 1 s; CloudWatch's
    /// standard resolution is 60 s). Write errors are ignored (metrics are best effort).
    ///
    /// # Errors
    /// The operating system's error when the thread cannot be started.
    pub fn start(registry: Arc<Registry>, interval: Duration) -> std::io::Result<Flusher> {
        Flusher::start_to(registry, interval, std::io::stdout())
    }

    /// [`Flusher::start`] to any writer (stderr, a file), e.g. where stdout carries the
    /// command's own output.
    ///
    /// # Errors
    /// The operating system's error when the thread cannot be started.
    pub fn start_to<W: Write + Send + 'static>(
        registry: Arc<Registry>,
        interval: Duration,
        out: W,
    ) -> std::io::Result<Flusher> {
        Flusher::start_with_hook(registry, interval, out, || {})
    }

    /// [`Flusher::start_to`] that calls `before_flush` on the flushing thread right before
    /// each flush (the final one included): the place to copy counters kept elsewhere (a
    /// stage's own atomics) into the registry, so every flush carries their latest values.
    ///
    /// # Errors
    /// The operating system's error when the thread cannot be started.
    pub fn start_with_hook<W, H>(
        registry: Arc<Registry>,
        interval: Duration,
        mut out: W,
        mut before_flush: H,
    ) -> std::io::Result<Flusher>
    where
        W: Write + Send + 'static,
        H: FnMut() + Send + 'static,
    {
        let interval = interval.max(Duration::from_secs(1));
        let (tx, rx) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("aiops-metrics".into())
            .spawn(move || {
                loop {
                    let stop = !matches!(
                        rx.recv_timeout(interval),
                        Err(mpsc::RecvTimeoutError::Timeout)
                    );
                    before_flush();
                    let now = crate::time::now_micros() / 1000;
                    let _ = registry.flush_to(&mut out, now);
                    if stop {
                        break;
                    }
                }
            })?;
        Ok(Flusher {
            stop: Some(tx),
            thread: Some(thread),
        })
    }

    /// Stops the thread after a final flush, and waits for it.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(lines: &[String]) -> Vec<Value> {
        lines
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn a_stage_flush_renders_the_documented_emf_lines() {
        let r = Registry::new("ingest");
        r.add(names::RECORDS_IN, Unit::Count, 40.0).unwrap();
        r.add(names::RECORDS_IN, Unit::Count, 2.0).unwrap();
        r.add(names::DEAD_LETTERS, Unit::Count, 1.0).unwrap();
        r.record(names::BATCH_LATENCY, Unit::Milliseconds, 12.5)
            .unwrap();
        r.record(names::BATCH_LATENCY, Unit::Milliseconds, 3.0)
            .unwrap();
        let shard = [(dimensions::SHARD_ID, "shardId-000000000001")];
        r.set_with(names::MILLIS_BEHIND_LATEST, Unit::Milliseconds, &shard, 9.0)
            .unwrap();
        r.set_with(names::MILLIS_BEHIND_LATEST, Unit::Milliseconds, &shard, 7.0)
            .unwrap();
        r.set_with(names::CHECKPOINT_AGE, Unit::Milliseconds, &shard, 1500.0)
            .unwrap();
        r.set_max_with(names::MILLIS_BEHIND_LATEST, Unit::Milliseconds, &[], 30.0)
            .unwrap();
        r.set_max_with(names::MILLIS_BEHIND_LATEST, Unit::Milliseconds, &[], 20.0)
            .unwrap();
        let lines = r.flush_lines(1_733_300_000_000);
        assert_eq!(
            parse(&lines),
            vec![
                json!({
                    "_aws": {"Timestamp": 1_733_300_000_000_i64, "CloudWatchMetrics": [{
                        "Namespace": "aiops",
                        "Dimensions": [["Stage"]],
                        "Metrics": [
                            {"Name": "BatchLatency", "Unit": "Milliseconds"},
                            {"Name": "DeadLetters", "Unit": "Count"},
                            {"Name": "MillisBehindLatest", "Unit": "Milliseconds"},
                            {"Name": "RecordsIn", "Unit": "Count"},
                        ]}]},
                    "Stage": "ingest",
                    "BatchLatency": [12.5, 3.0],
                    "DeadLetters": 1.0,
                    "MillisBehindLatest": 30.0,
                    "RecordsIn": 42.0,
                }),
                json!({
                    "_aws": {"Timestamp": 1_733_300_000_000_i64, "CloudWatchMetrics": [{
                        "Namespace": "aiops",
                        "Dimensions": [["Stage", "ShardId"]],
                        "Metrics": [
                            {"Name": "CheckpointAge", "Unit": "Milliseconds"},
                            {"Name": "MillisBehindLatest", "Unit": "Milliseconds"},
                        ]}]},
                    "Stage": "ingest",
                    "ShardId": "shardId-000000000001",
                    "CheckpointAge": 1500.0,
                    "MillisBehindLatest": 7.0,
                }),
            ]
        );
        // The next flush: counters reset and still reported, gauges and samples not set again
        // are left out.
        assert_eq!(
            parse(&r.flush_lines(1_733_300_060_000)),
            vec![json!({
                "_aws": {"Timestamp": 1_733_300_060_000_i64, "CloudWatchMetrics": [{
                    "Namespace": "aiops",
                    "Dimensions": [["Stage"]],
                    "Metrics": [
                        {"Name": "DeadLetters", "Unit": "Count"},
                        {"Name": "RecordsIn", "Unit": "Count"},
                    ]}]},
                "Stage": "ingest",
                "DeadLetters": 0.0,
                "RecordsIn": 0.0,
            })]
        );
    }

    #[test]
    fn more_than_100_metrics_split_over_lines_and_bounds_hold() {
        let r = Registry::with_bounds("detect", "aiops", 2);
        for i in 0..150 {
            r.add(&format!("M{i:03}"), Unit::Count, 1.0).unwrap();
        }
        // A second series fits, a third does not (dropped and counted).
        r.set_with("G", Unit::None, &[("ShardId", "a")], 1.0)
            .unwrap();
        r.set_with("G", Unit::None, &[("ShardId", "b")], 1.0)
            .unwrap();
        for _ in 0..(MAX_SAMPLES + 3) {
            r.record("L", Unit::Milliseconds, 1.0).unwrap();
        }
        let docs = parse(&r.flush_lines(5));
        assert_eq!(docs.len(), 3);
        let defs = |d: &Value| {
            d["_aws"]["CloudWatchMetrics"][0]["Metrics"]
                .as_array()
                .unwrap()
                .len()
        };
        assert_eq!(defs(&docs[0]), 100);
        // 50 counters + L + MetricsDropped.
        assert_eq!(defs(&docs[1]), 52);
        assert_eq!(docs[1]["MetricsDropped"], json!(4.0));
        assert_eq!(docs[0]["L"].as_array().unwrap().len(), MAX_SAMPLES);
        assert_eq!(docs[2]["ShardId"], json!("a"));
        assert_eq!(docs[2]["G"], json!(1.0));
        // Names and dimensions EMF refuses.
        assert_eq!(
            r.add("_aws", Unit::Count, 1.0),
            Err(MetricsError::BadName("_aws".into()))
        );
        assert_eq!(
            r.add("Stage", Unit::Count, 1.0),
            Err(MetricsError::BadName("Stage".into()))
        );
        let many: Vec<(String, String)> = (0..30).map(|i| (format!("D{i}"), "v".into())).collect();
        let many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert!(matches!(
            r.set_with("G", Unit::None, &many, 1.0),
            Err(MetricsError::BadDimensions(_))
        ));
        // Removing a shard's series stops its gauges.
        assert_eq!(r.remove_series("ShardId", "a"), 1);
    }

    #[test]
    fn non_finite_values_are_left_out() {
        let points = vec![
            MetricPoint {
                name: "A".into(),
                unit: Unit::Count,
                value: MetricValue::Single(f64::NAN),
            },
            MetricPoint {
                name: "B".into(),
                unit: Unit::Seconds,
                value: MetricValue::Samples(vec![f64::INFINITY, 2.0]),
            },
        ];
        let dims = vec![("Stage".to_string(), "act".to_string())];
        assert_eq!(
            render_emf("aiops", 1, &dims, &points),
            vec![
                r#"{"B":[2.0],"Stage":"act","_aws":{"CloudWatchMetrics":[{"Dimensions":[["Stage"]],"Metrics":[{"Name":"B","Unit":"Seconds"}],"Namespace":"aiops"}],"Timestamp":1}}"#
                    .to_string()
            ]
        );
        assert!(render_emf("aiops", 1, &dims, &points[..1]).is_empty());
        let mut out = Vec::new();
        let r = Registry::new("act");
        r.add(names::INCIDENTS, Unit::Count, 2.0).unwrap();
        assert_eq!(r.flush_to(&mut out, 1).unwrap(), 1);
        assert!(out.ends_with(b"}\n"));
    }

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stopped_flusher_writes_what_is_left() {
        let r = Arc::new(Registry::new("detect"));
        let out = Shared::default();
        let f = Flusher::start_to(r.clone(), Duration::from_secs(3600), out.clone()).unwrap();
        r.add(names::FINDINGS, Unit::Count, 3.0).unwrap();
        f.stop();
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1);
        let doc: Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(doc["Findings"], json!(3.0));
        assert_eq!(doc["Stage"], json!("detect"));
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Metrics"],
            json!([{"Name": "Findings", "Unit": "Count"}])
        );
    }
}
