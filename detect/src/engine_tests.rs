//! Tests of the engine: windows, watermark, series, findings.

use super::*;
use aiops_core::{CloudTrailFields, LogFields, MetricFields, MetricValue, Position, Principal};

const S: i64 = 1_000_000;
const MIN: i64 = 60 * S;

fn log(id: u64, t: i64, group: &str, msg: &str) -> Event {
    Event {
        event_id: format!("e{id}"),
        event_time: t,
        ingest_time: t,
        decode_warnings: Vec::new(),
        account: Some("111122223333".into()),
        region: Some("us-east-1".into()),
        position: Position::default(),
        body: EventBody::Logs(LogFields {
            log_group: group.into(),
            log_stream: "s".into(),
            message: msg.into(),
            level: LogLevel::detect(msg),
        }),
    }
}

fn call(id: u64, t: i64, principal: &str, name: &str, error: Option<&str>) -> Event {
    Event {
        event_id: format!("c{id}"),
        event_time: t,
        ingest_time: t,
        decode_warnings: Vec::new(),
        account: Some("111122223333".into()),
        region: Some("us-east-1".into()),
        position: Position::default(),
        body: EventBody::Cloudtrail(Box::new(CloudTrailFields {
            event_source: "s3.amazonaws.com".into(),
            event_name: name.into(),
            principal: Principal {
                arn: Some(principal.into()),
                ..Principal::default()
            },
            error_code: error.map(str::to_string),
            ..CloudTrailFields::default()
        })),
    }
}

fn metric(t: i64, v: f64) -> Event {
    Event {
        event_id: format!("m{t}"),
        event_time: t,
        ingest_time: t,
        decode_warnings: Vec::new(),
        account: None,
        region: None,
        position: Position::default(),
        body: EventBody::Metrics(MetricFields {
            namespace: "AWS/EC2".into(),
            metric: "CPUUtilization".into(),
            dimensions: [("InstanceId".to_string(), "i-1".to_string())].into(),
            value: MetricValue {
                max: v,
                min: v,
                sum: v,
                count: 1.0,
            },
            unit: None,
            metric_stream_name: None,
        }),
    }
}

/// Novelty and multi-line joining off, so each event counts in its window at once.
fn quiet_config() -> StatisticsConfig {
    let mut c = StatisticsConfig::default();
    c.novelty.enabled = false;
    c.multiline.enabled = false;
    c
}

fn acc_counts(e: &StatsEngine, key: &str) -> Vec<(i64, u64)> {
    let slot = e.index.get(key).copied().unwrap();
    e.series[slot]
        .as_ref()
        .unwrap()
        .accs
        .iter()
        .map(|a| (a.start, a.count))
        .collect()
}

fn model_windows(e: &StatsEngine, key: &str) -> u64 {
    let slot = e.index.get(key).copied().unwrap();
    match &e.series[slot].as_ref().unwrap().model {
        Model::Count(m) => m.windows(),
        Model::Value(d) => d.observed(),
    }
}

#[test]
fn watermark_closes_windows_and_late_events_go_to_the_oldest_open_window() {
    let mut e = StatsEngine::new(quiet_config());
    let key = "log_level:g:ERROR";
    e.observe(&log(1, 5 * S, "g", "ERROR a"));
    // First event: watermark -5 s, window [-60 s, 0) is the oldest open one? No: the oldest
    // open window is the one containing the watermark.
    assert_eq!(e.counters().open_from, Some(-MIN));
    e.observe(&log(2, 65 * S, "g", "ERROR b"));
    // Watermark 55 s: nothing closes yet (window [0, 60) ends at 60 s).
    assert_eq!(e.counters().open_from, Some(0));
    assert_eq!(acc_counts(&e, key), vec![(0, 1), (MIN, 1)]);
    e.observe(&log(3, 130 * S, "g", "ERROR c"));
    // Watermark 120 s: windows [0, 60) and [60, 120) are closed.
    assert_eq!(e.counters().open_from, Some(2 * MIN));
    assert_eq!(e.counters().watermark, Some(120 * S));
    assert_eq!(acc_counts(&e, key), vec![(2 * MIN, 1)]);
    // An event for the closed window [0, 60) is late: counted and added to [120, 180).
    e.observe(&log(4, 50 * S, "g", "ERROR late"));
    assert_eq!(e.counters().late_events, 1);
    assert_eq!(acc_counts(&e, key), vec![(2 * MIN, 2)]);
    // Windows -60..0 (opening window), 0, 60 were closed: 3 boundaries passed.
    assert_eq!(e.counters().windows_closed, 3);
    assert_eq!(model_windows(&e, key), 2);
}

#[test]
fn out_of_order_shards_within_lateness_are_not_late() {
    let mut cfg = quiet_config();
    cfg.allowed_lateness_secs = 30;
    let mut e = StatsEngine::new(cfg);
    let key = "log_level:g:ERROR";
    // Two shards interleaved: shard A is ahead of shard B by up to 25 s.
    let a = [10, 40, 70, 100];
    let b = [0, 20, 50, 80];
    for (i, (ta, tb)) in a.iter().zip(&b).enumerate() {
        e.observe(&log(2 * i as u64, ta * S, "g", "ERROR a"));
        e.observe(&log(2 * i as u64 + 1, tb * S, "g", "ERROR b"));
    }
    assert_eq!(e.counters().late_events, 0);
    // Watermark 100 - 30 = 70 s: window [0, 60) closed with its 5 events, [60, 120) open with 3.
    assert_eq!(acc_counts(&e, key), vec![(MIN, 3)]);
    assert_eq!(model_windows(&e, key), 1);
    // Shard A jumps to 160 s (watermark 130 s closes [60, 120)); shard B's 85 s is late.
    e.observe(&log(100, 160 * S, "g", "ERROR a"));
    e.observe(&log(101, 85 * S, "g", "ERROR b"));
    assert_eq!(e.counters().late_events, 1);
    assert_eq!(acc_counts(&e, key), vec![(2 * MIN, 2)]);
}

#[test]
fn empty_windows_count_as_zeros() {
    let mut e = StatsEngine::new(quiet_config());
    let key = "log_level:g:ERROR";
    e.observe(&log(1, 0, "g", "ERROR a"));
    // Another group keeps the watermark moving through 5 empty windows of group g.
    e.observe(&log(2, 6 * MIN, "h", "INFO x"));
    e.observe(&log(3, 6 * MIN + 30 * S, "g", "ERROR b"));
    // Watermark 6:20 -> windows before 6:00 are closed: [0,1) with 1 event is learned; the 5
    // empty windows after it are learned when the series' next window closes (lazily, in
    // closed form), not at every close.
    assert_eq!(model_windows(&e, key), 1);
    let f = e.flush();
    assert!(f.is_empty());
    // [0,1), the 5 zeros, then [6,7).
    assert_eq!(model_windows(&e, key), 7);
}

/// Steady ERROR traffic (`per_min` per minute) in group g for `minutes`.
fn steady_n(
    e: &mut StatsEngine,
    from_min: i64,
    minutes: i64,
    per_min: i64,
    id: &mut u64,
) -> Vec<Finding> {
    let mut out = Vec::new();
    for m in from_min..from_min + minutes {
        for k in 0..per_min {
            *id += 1;
            out.extend(e.observe(&log(
                *id,
                m * MIN + k * (50 / per_min) * S,
                "g",
                "ERROR db timeout 42",
            )));
        }
    }
    out
}

fn steady(e: &mut StatsEngine, from_min: i64, minutes: i64, id: &mut u64) -> Vec<Finding> {
    steady_n(e, from_min, minutes, 2, id)
}

#[test]
fn error_burst_in_a_log_group_opens_one_finding_with_evidence() {
    let mut e = StatsEngine::new(quiet_config());
    let mut id = 0;
    let before = steady(&mut e, 0, 120, &mut id);
    assert!(before.is_empty(), "{before:?}");
    // A burst of 60 errors within the minute starting at 120.
    let mut found = Vec::new();
    for k in 0..60 {
        id += 1;
        found.extend(e.observe(&log(
            id,
            120 * MIN + k * S,
            "g",
            &format!("ERROR db timeout {k}"),
        )));
    }
    found.extend(steady(&mut e, 121, 5, &mut id));
    let level: Vec<&Finding> = found
        .iter()
        .filter(|f| f.detector == "log_level_rate")
        .collect();
    // One finding: the level series' (it names its top template), the template series'
    // finding of the same window merged into it.
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(level.len(), 1, "{found:#?}");
    let f = level[0];
    assert_eq!(f.priority, aiops_core::Priority::High);
    assert_eq!(f.direction, Some(aiops_core::Direction::Spike));
    assert_eq!(
        f.evidence.top_contributors,
        vec![aiops_core::Contributor {
            name: "ERROR db timeout <*>".into(),
            count: 60
        }]
    );
    assert_eq!(f.evidence.related.len(), 1);
    // The merged template finding's template, by id and text.
    let tkey = template_key(
        TemplateMiner::new(&crate::template::TemplateConfig::default())
            .add("ERROR db timeout 0")
            .template_id,
    );
    assert_eq!(
        f.evidence.related[0],
        format!("log_template_rate log_template:g:{tkey}: 60 observed, 2.00 expected")
    );
    assert_eq!(f.evidence.template_id.as_deref(), Some(tkey.as_str()));
    assert_eq!(f.evidence.template.as_deref(), Some("ERROR db timeout <*>"));
    assert_eq!(f.kind, FindingKind::RateAnomaly);
    assert!(!f.recoverable);
    assert_eq!(f.default_action, None);
    assert_eq!(f.evidence.series_key.as_deref(), Some("log_level:g:ERROR"));
    assert_eq!(f.evidence.window, Some((120 * MIN, 121 * MIN)));
    assert_eq!(f.evidence.observed, Some(60.0));
    assert_eq!(f.evidence.expected, Some(2.0));
    assert_eq!(f.event_time, 121 * MIN);
    assert_eq!(f.evidence.samples.len(), 3);
    assert_eq!(f.evidence.samples[0], "ERROR db timeout 0");
    assert_eq!(f.evidence.event_ids.len(), 3);
    assert_eq!(
        f.resource,
        Some(ResourceKey {
            resource_type: "log_group".into(),
            resource_id: "g".into(),
            account: Some("111122223333".into()),
            region: Some("us-east-1".into()),
        })
    );
    assert_eq!(
        f.finding_id,
        format!(
            "{:016x}",
            aiops_core::stable_hash(&[
                b"log_level_rate",
                b"log_level:g:ERROR",
                (120 * MIN).to_string().as_bytes()
            ])
        )
    );
    assert_eq!(f.score, 1.0);
    assert!(f.summary.contains("60 observed"), "{}", f.summary);
    assert!(
        f.summary.contains("top: ERROR db timeout <*>: 60 of 60"),
        "{}",
        f.summary
    );
}

#[test]
fn a_windows_evidence_does_not_depend_on_the_arrival_order_of_its_events() {
    // The same burst, its events arriving in time order or in reverse (as the lines of one
    // delivery can), all within the open window: the same finding, samples and event ids.
    let run = |reverse: bool| {
        let mut e = StatsEngine::new(quiet_config());
        let mut id = 0;
        let mut found = steady(&mut e, 0, 120, &mut id);
        let mut burst: Vec<Event> = (0..60)
            .map(|k| {
                log(
                    1000 + k as u64,
                    120 * MIN + k * S,
                    "g",
                    &format!("ERROR db timeout {k}"),
                )
            })
            .collect();
        if reverse {
            burst.reverse();
        }
        for ev in &burst {
            found.extend(e.observe(ev));
        }
        found.extend(steady(&mut e, 121, 5, &mut id));
        found
            .into_iter()
            .map(|mut f| {
                f.detected_at = 0;
                f
            })
            .collect::<Vec<_>>()
    };
    let (forward, backward) = (run(false), run(true));
    assert_eq!(forward.len(), 1, "{forward:#?}");
    assert_eq!(
        forward[0].evidence.samples,
        [
            "ERROR db timeout 0",
            "ERROR db timeout 1",
            "ERROR db timeout 2"
        ]
    );
    assert_eq!(forward[0].evidence.event_ids, ["e1000", "e1001", "e1002"]);
    assert_eq!(backward, forward);
}

#[test]
fn access_denied_burst_from_one_principal() {
    let mut e = StatsEngine::new(quiet_config());
    let mut found = Vec::new();
    let mut id = 0;
    for m in 0..90 {
        id += 1;
        found.extend(e.observe(&call(
            id,
            m * MIN,
            "arn:aws:iam::1:user/ci",
            "GetObject",
            None,
        )));
    }
    for k in 0..40 {
        id += 1;
        found.extend(e.observe(&call(
            id,
            90 * MIN + k * S,
            "arn:aws:iam::1:user/mallory",
            "GetObject",
            Some("AccessDenied"),
        )));
    }
    for m in 91..95 {
        id += 1;
        found.extend(e.observe(&call(
            id,
            m * MIN,
            "arn:aws:iam::1:user/ci",
            "GetObject",
            None,
        )));
    }
    found.extend(e.flush());
    // The error series are brand new (no history), so they cannot fire; the event source
    // series (s3, steady at 1 per minute) does see the burst of calls.
    let detectors: Vec<&str> = found.iter().map(|f| f.detector.as_str()).collect();
    assert_eq!(detectors, vec!["event_source_rate"], "{found:#?}");

    // With history (occasional denials), a burst fires for the principal and the code.
    let mut cfg = quiet_config();
    cfg.rate.min_events = 10;
    let mut e = StatsEngine::new(cfg);
    let mut found = Vec::new();
    for m in 0..120 {
        id += 1;
        let err = (m % 10 == 0).then_some("AccessDenied");
        found.extend(e.observe(&call(
            id,
            m * MIN,
            "arn:aws:iam::1:user/mallory",
            "GetObject",
            err,
        )));
    }
    assert!(found.is_empty(), "{found:#?}");
    for k in 0..40 {
        id += 1;
        found.extend(e.observe(&call(
            id,
            120 * MIN + k * S,
            "arn:aws:iam::1:user/mallory",
            "GetObject",
            Some("AccessDenied"),
        )));
    }
    found.extend(e.flush());
    // One merged finding: the code's, naming the principal; the per-principal one is evidence.
    let keys: Vec<&str> = found
        .iter()
        .map(|f| f.evidence.series_key.as_deref().unwrap_or(""))
        .collect();
    assert_eq!(keys, vec!["api_error:AccessDenied"], "{found:#?}");
    let f = &found[0];
    assert_eq!(f.priority, aiops_core::Priority::High);
    assert_eq!(
        f.evidence.top_contributors,
        vec![aiops_core::Contributor {
            name: "arn:aws:iam::1:user/mallory".into(),
            count: 40
        }]
    );
    assert!(
        f.evidence
            .related
            .iter()
            .any(|r| r.contains("api_error_principal:arn:aws:iam::1:user/mallory:AccessDenied")),
        "{:?}",
        f.evidence.related
    );
}

#[test]
fn a_day_with_no_traffic_does_not_raise_findings_when_traffic_resumes() {
    let mut e = StatsEngine::new(quiet_config());
    let mut id = 0;
    let mut found = steady_n(&mut e, 0, 4 * 1440, 10, &mut id);
    // Nothing at all for a day (the watermark does not move), then the same traffic again.
    found.extend(steady_n(&mut e, 5 * 1440, 180, 10, &mut id));
    found.extend(e.flush());
    assert!(found.is_empty(), "{found:#?}");
    assert_eq!(e.counters().late_events, 0);
}

#[test]
fn findings_are_deterministic() {
    let run = || {
        let mut e = StatsEngine::new(StatisticsConfig::default());
        let mut id = 0;
        let mut out = steady(&mut e, 0, 90, &mut id);
        for k in 0..50 {
            id += 1;
            out.extend(e.observe(&log(
                id,
                90 * MIN + k * S,
                "g",
                "ERROR disk full on /dev/sda1",
            )));
            id += 1;
            out.extend(e.observe(&log(id, 90 * MIN + k * S, "h", "WARN slow request 1234 ms")));
        }
        out.extend(e.flush());
        out.into_iter()
            .map(|mut f| {
                f.detected_at = 0;
                f
            })
            .collect::<Vec<_>>()
    };
    let a = run();
    assert!(!a.is_empty());
    assert_eq!(a, run());
    // Sorted by window start, then kind, then series key.
    let order: Vec<(i64, String)> = a
        .iter()
        .map(|f| {
            (
                f.evidence.window.unwrap().0,
                f.evidence.series_key.clone().unwrap(),
            )
        })
        .collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order.len(), sorted.len());
}

#[test]
fn new_template_after_warmup_is_a_novelty_finding() {
    let mut cfg = StatisticsConfig::default();
    cfg.novelty.warmup_secs = 600;
    cfg.novelty.warmup_min_events = 0;
    let mut e = StatsEngine::new(cfg);
    let mut id = 0;
    let mut found = steady(&mut e, 0, 30, &mut id);
    id += 1;
    found.extend(e.observe(&log(
        id,
        30 * MIN + 5 * S,
        "g",
        "FATAL out of memory: killed process 7",
    )));
    found.extend(steady(&mut e, 31, 3, &mut id));
    let nov: Vec<&Finding> = found
        .iter()
        .filter(|f| f.kind == FindingKind::Novelty)
        .collect();
    assert_eq!(nov.len(), 1, "{found:#?}");
    assert_eq!(nov[0].detector, "log_template_novelty");
    assert_eq!(
        nov[0].evidence.template.as_deref(),
        Some("FATAL out of memory: killed process <*>")
    );
    assert_eq!(nov[0].evidence.window, Some((30 * MIN, 31 * MIN)));
    assert_eq!(nov[0].score, 0.7);
}

#[test]
fn stack_trace_counts_once() {
    let mut cfg = quiet_config();
    cfg.multiline.enabled = true;
    let mut e = StatsEngine::new(cfg);
    e.observe(&log(1, S, "g", "ERROR request failed"));
    e.observe(&log(
        2,
        S,
        "g",
        "\tat com.example.Handler.run(Handler.java:42)",
    ));
    e.observe(&log(
        3,
        S,
        "g",
        "Caused by: java.net.SocketTimeoutException",
    ));
    e.observe(&log(4, 2 * S, "g", "INFO next request"));
    e.flush();
    let c = e.counters();
    assert_eq!(c.log_entries, 2);
    assert_eq!(c.multiline.joined_fragments, 2);
    assert_eq!(c.templates_per_group.get("g"), Some(&2));
    assert_eq!(model_windows(&e, "log_level:g:ERROR"), 1);
}

#[test]
fn metric_spike_is_a_value_finding_and_nan_is_counted() {
    let mut e = StatsEngine::new(quiet_config());
    let mut found = Vec::new();
    for m in 0..300 {
        let v = 20.0 + ((m * 37) % 10) as f64 / 10.0;
        found.extend(e.observe(&metric(m * MIN, v)));
    }
    assert!(found.is_empty(), "{found:#?}");
    found.extend(e.observe(&metric(300 * MIN, 95.0)));
    found.extend(e.observe(&metric(301 * MIN, f64::NAN)));
    found.extend(e.observe(&metric(302 * MIN, 20.5)));
    found.extend(e.flush());
    assert_eq!(found.len(), 1, "{found:#?}");
    let f = &found[0];
    assert_eq!(f.kind, FindingKind::ValueAnomaly);
    assert_eq!(f.detector, "metric_value");
    assert_eq!(
        f.evidence.series_key.as_deref(),
        Some("metric:AWS/EC2:CPUUtilization:InstanceId=i-1")
    );
    assert_eq!(f.evidence.observed, Some(95.0));
    assert_eq!(e.counters().nonfinite_values, 1);
}

#[test]
fn series_cap_and_idle_eviction() {
    let mut cfg = quiet_config();
    cfg.max_series = 2;
    cfg.series.log_templates = false;
    cfg.idle_eviction_secs = 600;
    let mut e = StatsEngine::new(cfg);
    e.observe(&log(1, 0, "a", "ERROR x"));
    e.observe(&log(2, 0, "b", "ERROR x"));
    e.observe(&log(3, 0, "c", "ERROR x"));
    assert_eq!(e.counters().series_rejected, 1);
    assert_eq!(e.counters().series_tracked, 2);
    // Only "a" stays active; after 10 minutes "b" is evicted, making room for "c".
    for m in 1..15 {
        e.observe(&log(10 + m as u64, m * MIN, "a", "ERROR x"));
    }
    assert_eq!(e.counters().series_evicted, 1);
    e.observe(&log(100, 15 * MIN, "c", "ERROR x"));
    assert_eq!(e.counters().series_tracked, 2);
    assert_eq!(e.counters().series_created, 3);
}

#[test]
fn parallel_close_keeps_results_independent_of_series_order() {
    // Two engines fed the same events for different series in a different order produce the
    // same set of findings.
    let events = |rev: bool| {
        let mut v = Vec::new();
        let mut id = 0;
        for m in 0..100i64 {
            let mut groups = vec!["g1", "g2", "g3"];
            if rev {
                groups.reverse();
            }
            for g in groups {
                id += 1;
                let n = if m == 80 { 40 } else { 2 };
                for k in 0..n {
                    v.push(log(id * 100 + k, m * MIN + k as i64 * S, g, "ERROR x 1"));
                }
            }
        }
        v
    };
    let run = |rev: bool| {
        let mut e = StatsEngine::new(quiet_config());
        let mut out: Vec<(String, i64)> = Vec::new();
        for ev in events(rev) {
            out.extend(
                e.observe(&ev)
                    .into_iter()
                    .map(|f| (f.finding_id, f.event_time)),
            );
        }
        out
    };
    let a = run(false);
    // Per group, the level and template findings of the burst are merged into one.
    assert_eq!(a.len(), 3);
    assert_eq!(a, run(true));
}

#[test]
fn sparse_history_is_no_baseline_for_novelty() {
    // Same traffic as above, but the volume warm-up (default 10,000 entries per log group) has
    // not been reached: a new template is not reported as novel.
    let mut cfg = StatisticsConfig::default();
    cfg.novelty.warmup_secs = 600;
    let mut e = StatsEngine::new(cfg);
    let mut id = 0;
    let mut found = steady(&mut e, 0, 30, &mut id);
    id += 1;
    found.extend(e.observe(&log(
        id,
        30 * MIN + 5 * S,
        "g",
        "FATAL out of memory: killed process 7",
    )));
    found.extend(steady(&mut e, 31, 3, &mut id));
    assert!(
        found.iter().all(|f| f.kind != FindingKind::Novelty),
        "{found:#?}"
    );
}

#[test]
fn a_pile_of_late_events_is_not_a_burst() {
    // 40 minutes of steady traffic (2 ERROR lines a minute), then 30 ERROR lines stamped 20 to
    // 30 minutes in the past arrive (an unordered replay, a lagging shard): they are counted as
    // late and kept in the open window, but they do not make that window a burst.
    let mut e = StatsEngine::new(quiet_config());
    let mut id = 0;
    let mut found = steady(&mut e, 0, 40, &mut id);
    for k in 0..30 {
        id += 1;
        found.extend(e.observe(&log(id, (10 + k % 10) * MIN + k * S, "g", "ERROR late")));
    }
    found.extend(steady(&mut e, 40, 3, &mut id));
    found.extend(e.flush());
    assert_eq!(e.counters().late_events, 30);
    assert!(
        found.iter().all(|f| f.kind != FindingKind::RateAnomaly),
        "{found:#?}"
    );
    // The same 30 lines on time are a burst.
    let mut e = StatsEngine::new(quiet_config());
    let mut id = 0;
    let mut found = steady(&mut e, 0, 40, &mut id);
    for k in 0..30 {
        id += 1;
        found.extend(e.observe(&log(id, 40 * MIN + k * S, "g", "ERROR now")));
    }
    found.extend(steady(&mut e, 41, 3, &mut id));
    found.extend(e.flush());
    assert!(
        found.iter().any(|f| f.kind == FindingKind::RateAnomaly
            && f.evidence.series_key.as_deref() == Some("log_level:g:ERROR")),
        "{found:#?}"
    );
}

#[test]
fn template_series_keys_do_not_depend_on_what_came_before() {
    let history = [
        "user alice logged in from 10.0.0.1",
        "disk /dev/sda1 at 91 percent",
        "job 17 finished in 3 s",
    ];
    let novel = "FATAL out of memory: killed process 7";
    let run = |order: [usize; 3]| {
        let mut cfg = StatisticsConfig::default();
        cfg.novelty.warmup_secs = 600;
        cfg.novelty.warmup_min_events = 0;
        let mut e = StatsEngine::new(cfg);
        let mut found = Vec::new();
        let mut id = 0;
        for m in 0..34 {
            for (k, &i) in order.iter().enumerate() {
                id += 1;
                let t = m * MIN + (k as i64 + 1) * S;
                found.extend(e.observe(&log(id, t, "g", history[i])));
            }
            if m == 30 {
                id += 1;
                found.extend(e.observe(&log(id, 30 * MIN + 5 * S, "g", novel)));
            }
        }
        found
            .into_iter()
            .filter(|f| f.kind == FindingKind::Novelty)
            .map(|f| {
                (
                    f.evidence.series_key,
                    f.evidence.template_id,
                    f.evidence.template,
                )
            })
            .collect::<Vec<_>>()
    };
    let key = TemplateMiner::new(&crate::template::TemplateConfig::default())
        .add(novel)
        .template_id;
    let want = vec![(
        Some(format!("log_template:g:{}", template_key(key))),
        Some(template_key(key)),
        Some("FATAL out of memory: killed process <*>".to_string()),
    )];
    assert_eq!(run([0, 1, 2]), want);
    assert_eq!(run([2, 0, 1]), want);
}

#[test]
fn a_gap_in_the_whole_input_is_not_a_drop_but_silence_among_traffic_is() {
    // A busy group (200 a minute) and a quiet one (2 a minute).
    let run = |quiet_keeps_logging: bool| {
        let mut e = StatsEngine::new(quiet_config());
        let mut id = 0;
        let mut found = Vec::new();
        for m in 0..120i64 {
            let silent = (60..90).contains(&m);
            if !silent {
                for k in 0..200 {
                    id += 1;
                    let t = m * MIN + k * (S / 4);
                    found.extend(e.observe(&log(id, t, "g", "ERROR db timeout 42")));
                }
            }
            if !silent || quiet_keeps_logging {
                id += 1;
                found.extend(e.observe(&log(id, m * MIN + 55 * S, "q", "INFO tick")));
            }
        }
        found.extend(e.flush());
        found
    };
    // Nothing at all for 30 minutes: an input gap, no finding.
    assert!(run(false).is_empty(), "{:#?}", run(false));
    // The other group kept logging: the busy group's silence is one drop, at its start.
    let found = run(true);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].evidence.window, Some((60 * MIN, 61 * MIN)));
    assert_eq!(found[0].direction, Some(aiops_core::Direction::Drop));
}

#[test]
fn the_window_cut_short_by_the_end_of_the_input_is_not_a_drop() {
    // A busy group (200 a minute) whose input ends 5 s into a minute: the flushed last
    // window holds a handful of lines, which is the end of the input, not a drop.
    let run = |end_secs: i64| {
        let mut e = StatsEngine::new(quiet_config());
        let mut id = 0;
        let mut found = Vec::new();
        for m in 0..120i64 {
            for k in 0..200 {
                let t = m * MIN + k * (S * 3 / 10);
                if m == 119 && t >= 119 * MIN + end_secs * S {
                    break;
                }
                id += 1;
                found.extend(e.observe(&log(id, t, "g", "INFO request served")));
            }
        }
        found.extend(e.flush());
        found
    };
    let found = run(5);
    assert!(
        found
            .iter()
            .all(|f| f.direction != Some(aiops_core::Direction::Drop)),
        "{found:#?}"
    );
}
