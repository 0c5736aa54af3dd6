//! A stage's CloudWatch metrics in aws mode: the Kinesis consumer records records in, lag,
//! checkpoint age, batch latency and shard errors into the stage's
//! [`Registry`](aiops_core::metrics::Registry) itself; this module adds the stage's own
//! counters ([`StageCounterSet`]: events, dead letters, duplicates, findings, incidents) as
//! deltas right before each flush, and runs the flushing thread (EMF lines on stdout, which
//! the container's log driver sends to CloudWatch Logs; see `aiops_core::metrics`).

use super::counters::{CountersSnapshot, StageCounterSet};
use aiops_core::metrics::{DEFAULT_MAX_SERIES, Flusher, NAMESPACE, Registry, Unit, names};
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

/// The counter metrics a stage's counters feed, as (metric name, increase) between two
/// snapshots `before` and `now` of the same counters (monotonic, so every increase
/// is >= 0; a counter that went down, which cannot happen, counts 0). Every metric is listed,
/// increases of 0 included, so a quiet stage still reports `DeadLetters 0` (an alarm then
/// sees data, not a gap).
///
/// `DeadLetters` sums the records sent to the dead letters (ingest; act: findings the incident
/// store refused for good) and the records a stage could not read and skipped (detect, act:
/// `bad_records`): both are input the stage lost.
pub fn counter_deltas(
    before: &CountersSnapshot,
    now: &CountersSnapshot,
) -> [(&'static str, u64); 5] {
    let d = |a: u64, b: u64| b.saturating_sub(a);
    [
        (names::EVENTS_IN, d(before.events, now.events)),
        (
            names::DEAD_LETTERS,
            d(before.dead_letters, now.dead_letters) + d(before.bad_records, now.bad_records),
        ),
        (names::DUPLICATES, d(before.duplicates, now.duplicates)),
        (names::FINDINGS, d(before.findings, now.findings)),
        (names::INCIDENTS, d(before.incidents, now.incidents)),
    ]
}

/// The metrics of one running stage: its registry (handed to the Kinesis worker) and the
/// thread that flushes it every interval, copying the stage's counters in first.
#[derive(Debug)]
pub struct StageMetrics {
    /// The stage's registry (dimension `Stage` = the stage's name).
    pub registry: Arc<Registry>,
    flusher: Option<Flusher>,
}

impl StageMetrics {
    /// Metrics of stage `stage` (`ingest`, `detect`, `act`) in `namespace` (default
    /// [`NAMESPACE`]), fed from `counters`, flushed to stdout every `interval_secs` seconds
    /// (0: a registry that is never flushed, i.e. no metrics).
    ///
    /// # Errors
    /// The operating system's error when the flushing thread cannot start.
    pub fn start(
        stage: &str,
        namespace: Option<&str>,
        interval_secs: u64,
        counters: StageCounterSet,
    ) -> std::io::Result<StageMetrics> {
        StageMetrics::start_to(stage, namespace, interval_secs, counters, std::io::stdout())
    }

    /// [`StageMetrics::start`] writing the EMF lines to `out`.
    ///
    /// # Errors
    /// The operating system's error when the flushing thread cannot start.
    pub fn start_to<W: Write + Send + 'static>(
        stage: &str,
        namespace: Option<&str>,
        interval_secs: u64,
        counters: StageCounterSet,
        out: W,
    ) -> std::io::Result<StageMetrics> {
        let registry = Arc::new(Registry::with_bounds(
            stage,
            namespace.unwrap_or(NAMESPACE),
            DEFAULT_MAX_SERIES,
        ));
        if interval_secs == 0 {
            return Ok(StageMetrics {
                registry,
                flusher: None,
            });
        }
        // Registered at 0 so every flush carries it: an alarm on stage errors sees data (0)
        // from a healthy stage, not a gap.
        let _ = registry.add(names::ERRORS, Unit::Count, 0.0);
        let fed = registry.clone();
        let mut before = CountersSnapshot::default();
        let flusher = Flusher::start_with_hook(
            registry.clone(),
            Duration::from_secs(interval_secs),
            out,
            move || {
                let now = counters.snapshot();
                for (name, delta) in counter_deltas(&before, &now) {
                    // Names are the constants of `names`: valid, so the registry accepts
                    // them (a full registry drops and counts the update itself).
                    let _ = fed.add(name, Unit::Count, delta as f64);
                }
                before = now;
            },
        )?;
        Ok(StageMetrics {
            registry,
            flusher: Some(flusher),
        })
    }

    /// Flushes once more (with the final counters) and stops the thread.
    pub fn stop(mut self) {
        if let Some(f) = self.flusher.take() {
            f.stop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws_mode::counters::StageCounters;
    use std::sync::Mutex;

    #[test]
    fn deltas_are_the_increase_of_each_counter_and_dead_letters_include_unreadable_records() {
        let before = CountersSnapshot {
            events: 100,
            dead_letters: 2,
            bad_records: 1,
            duplicates: 5,
            findings: 3,
            incidents: 1,
            ..CountersSnapshot::default()
        };
        let now = CountersSnapshot {
            events: 160,
            dead_letters: 4,
            bad_records: 4,
            duplicates: 5,
            findings: 7,
            incidents: 2,
            records: 999,
            ..CountersSnapshot::default()
        };
        assert_eq!(
            counter_deltas(&before, &now),
            [
                ("EventsIn", 60),
                ("DeadLetters", 5),
                ("Duplicates", 0),
                ("Findings", 4),
                ("Incidents", 1),
            ]
        );
    }

    /// A writer the test reads back.
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
    fn a_stopped_stage_flushes_its_counters_and_the_consumer_metrics_as_emf() {
        use std::sync::atomic::Ordering;
        let counters = Arc::new(StageCounters::default());
        let out = Shared::default();
        let m = StageMetrics::start_to(
            "detect",
            Some("aiops/test"),
            3600,
            StageCounterSet::One(counters.clone()),
            out.clone(),
        )
        .unwrap();
        counters.events.fetch_add(42, Ordering::Relaxed);
        counters.bad_records.fetch_add(1, Ordering::Relaxed);
        counters.findings.fetch_add(3, Ordering::Relaxed);
        // What the Kinesis consumer records itself.
        m.registry
            .add(names::RECORDS_IN, Unit::Count, 40.0)
            .unwrap();
        m.stop();
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 1, "{text}");
        let l = &lines[0];
        assert_eq!(l["Stage"], "detect");
        assert_eq!(l["_aws"]["CloudWatchMetrics"][0]["Namespace"], "aiops/test");
        assert_eq!(
            l["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            serde_json::json!([["Stage"]])
        );
        assert_eq!(l["EventsIn"], 42.0);
        assert_eq!(l["DeadLetters"], 1.0);
        assert_eq!(l["Duplicates"], 0.0);
        assert_eq!(l["Findings"], 3.0);
        assert_eq!(l["Incidents"], 0.0);
        assert_eq!(l["RecordsIn"], 40.0);
        assert_eq!(l["Errors"], 0.0);
    }

    #[test]
    fn interval_zero_turns_the_metrics_off() {
        let set = StageCounterSet::One(Arc::new(StageCounters::default()));
        let out = Shared::default();
        let m = StageMetrics::start_to("act", None, 0, set, out.clone()).unwrap();
        m.registry.add(names::RECORDS_IN, Unit::Count, 1.0).unwrap();
        m.stop();
        assert!(out.0.lock().unwrap().is_empty());
    }
}
