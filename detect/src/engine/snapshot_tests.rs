//! Tests of the engine state: a restored engine finds exactly what one that never stopped
//! finds; other versions, other configurations and corrupt documents are refused.

use super::*;
use aiops_core::{CloudTrailFields, LogFields, MetricFields, MetricValue, Position, Principal};

const S: i64 = 1_000_000;
const MIN: i64 = 60 * S;

fn base(id: String, t: i64, body: EventBody) -> Event {
    Event {
        event_id: id,
        event_time: t,
        ingest_time: t,
        decode_warnings: Vec::new(),
        account: Some("111122223333".into()),
        region: Some("us-east-1".into()),
        position: Position::default(),
        body,
    }
}

fn log(id: u64, t: i64, group: &str, msg: &str) -> Event {
    base(
        format!("l{id}"),
        t,
        EventBody::Logs(LogFields {
            log_group: group.into(),
            log_stream: "s".into(),
            message: msg.into(),
            level: LogLevel::detect(msg),
        }),
    )
}

fn call(id: u64, t: i64, principal: &str, name: &str, error: Option<&str>) -> Event {
    base(
        format!("c{id}"),
        t,
        EventBody::Cloudtrail(Box::new(CloudTrailFields {
            event_source: "s3.amazonaws.com".into(),
            event_name: name.into(),
            principal: Principal {
                arn: Some(principal.into()),
                ..Principal::default()
            },
            error_code: error.map(str::to_string),
            ..CloudTrailFields::default()
        })),
    )
}

fn metric(t: i64, v: f64) -> Event {
    base(
        format!("m{t}"),
        t,
        EventBody::Metrics(MetricFields {
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
    )
}

/// Three hours of mixed traffic (logs with stack traces and new templates, CloudTrail calls
/// with an AccessDenied burst, a metric with a spike) and an error burst in minute 150.
fn traffic() -> Vec<Event> {
    let mut out = Vec::new();
    let mut id = 0u64;
    for m in 0..180i64 {
        for k in 0..3i64 {
            id += 1;
            out.push(log(id, m * MIN + k * 15 * S, "g", "ERROR db timeout 42"));
        }
        id += 1;
        out.push(log(
            id,
            m * MIN + 20 * S,
            "app",
            "INFO request served in 12 ms",
        ));
        if m % 17 == 0 {
            // A Java stack trace: three fragments joined into one entry.
            for (j, line) in [
                "ERROR java.lang.IllegalStateException: boom",
                "\tat com.example.Foo.bar(Foo.java:42)",
                "\tat com.example.Main.main(Main.java:7)",
            ]
            .iter()
            .enumerate()
            {
                id += 1;
                out.push(log(id, m * MIN + 30 * S + j as i64, "app", line));
            }
        }
        if m == 90 {
            id += 1;
            out.push(log(
                id,
                m * MIN + 40 * S,
                "app",
                "WARN disk almost full on /var",
            ));
        }
        id += 1;
        out.push(call(
            id,
            m * MIN + 5 * S,
            "arn:aws:iam::1:user/alice",
            "GetObject",
            None,
        ));
        if (100..102).contains(&m) {
            for k in 0..40 {
                id += 1;
                out.push(call(
                    id,
                    m * MIN + k * S,
                    "arn:aws:iam::1:user/mallory",
                    "GetObject",
                    Some("AccessDenied"),
                ));
            }
        }
        let v = if m == 130 {
            95.0
        } else {
            20.0 + (m % 7) as f64 * 0.5
        };
        out.push(metric(m * MIN + 10 * S, v));
        if m == 150 {
            for k in 0..60 {
                id += 1;
                out.push(log(
                    id,
                    m * MIN + k * S / 2,
                    "g",
                    &format!("ERROR db timeout {k}"),
                ));
            }
        }
    }
    out
}

/// Findings without their wall-clock time.
fn comparable(mut f: Vec<Finding>) -> Vec<Finding> {
    for x in &mut f {
        x.detected_at = 0;
    }
    f
}

/// Feeds `events`, replacing the engine by one restored from its state after every `every`
/// events (never when `every` is 0), then flushes.
fn run(events: &[Event], every: usize) -> (Vec<Finding>, EngineCounters) {
    let cfg = StatisticsConfig::default();
    let mut e = StatsEngine::new(cfg.clone());
    let mut found = Vec::new();
    for (i, ev) in events.iter().enumerate() {
        if every > 0 && i > 0 && i % every == 0 {
            let bytes = e.state_bytes().unwrap();
            e = StatsEngine::from_state(cfg.clone(), &bytes).unwrap();
        }
        found.extend(e.observe(ev));
    }
    found.extend(e.flush());
    (comparable(found), e.counters())
}

#[test]
fn a_restored_engine_finds_exactly_what_an_engine_that_never_stopped_finds() {
    let events = traffic();
    let (straight, counters) = run(&events, 0);
    // The burst of minute 150 is one finding with its full count.
    let burst: Vec<&Finding> = straight
        .iter()
        .filter(|f| {
            f.evidence.window == Some((150 * MIN, 151 * MIN)) && f.detector == "log_level_rate"
        })
        .collect();
    assert_eq!(burst.len(), 1, "{straight:#?}");
    assert_eq!(burst[0].evidence.observed, Some(63.0));
    assert!(straight.len() >= 3, "{straight:#?}");
    // Restored every 7, 100 and 997 events (cuts inside open windows, inside the burst,
    // inside stack traces): the same findings, scores and counters, exactly.
    for every in [7, 100, 997] {
        let (restored, c) = run(&events, every);
        assert_eq!(restored, straight, "restored every {every} events");
        assert_eq!(c, counters, "restored every {every} events");
    }
}

#[test]
fn a_restored_engine_has_the_same_open_windows_and_models() {
    let events = traffic();
    let cfg = StatisticsConfig::default();
    let mut e = StatsEngine::new(cfg.clone());
    // Stop half-way through the burst of minute 150.
    let burst_start = events
        .iter()
        .position(|ev| matches!(&ev.body, EventBody::Logs(l) if l.message == "ERROR db timeout 0"))
        .unwrap();
    let cut = burst_start + 30;
    for ev in &events[..cut] {
        e.observe(ev);
    }
    let r = StatsEngine::from_state(cfg, &e.state_bytes().unwrap()).unwrap();
    assert_eq!(r.counters(), e.counters());
    assert_eq!(r.index.len(), e.index.len());
    for (key, &slot) in &e.index {
        let a = e.series[slot].as_ref().unwrap();
        let b = r.series[r.index[key]].as_ref().unwrap();
        let accs = |s: &Series| -> Vec<(i64, u64, u64)> {
            s.accs.iter().map(|w| (w.start, w.count, w.late)).collect()
        };
        assert_eq!(accs(a), accs(b), "{key}");
        assert_eq!(a.decision, b.decision, "{key}");
        match (&a.model, &b.model) {
            (Model::Count(x), Model::Count(y)) => assert_eq!(x, y, "{key}"),
            (Model::Value(x), Model::Value(y)) => {
                assert_eq!(format!("{x:?}"), format!("{y:?}"), "{key}")
            }
            _ => panic!("{key}: model kind changed"),
        }
    }
    // The burst's window is open with half the burst (the last entry may still wait in the
    // multi-line joiner, restored with it).
    let open = acc_count(&r, "log_level:g:ERROR", 150 * MIN);
    assert_eq!(open, acc_count(&e, "log_level:g:ERROR", 150 * MIN));
    assert!(open.is_some_and(|n| (30..=33).contains(&n)), "{open:?}");
    assert_eq!(
        r.groups.keys().collect::<Vec<_>>(),
        e.groups.keys().collect::<Vec<_>>()
    );
    for (g, lg) in &e.groups {
        assert_eq!(
            format!("{:?}", lg.miner.clone().templates()),
            format!("{:?}", r.groups[g].miner.clone().templates()),
            "{g}"
        );
    }
}

fn acc_count(e: &StatsEngine, key: &str, start: i64) -> Option<u64> {
    let slot = *e.index.get(key)?;
    e.series
        .get(slot)?
        .as_ref()?
        .accs
        .iter()
        .find(|a| a.start == start)
        .map(|a| a.count)
}

#[test]
fn another_version_is_refused() {
    let mut e = StatsEngine::new(StatisticsConfig::default());
    for ev in traffic().iter().take(50) {
        e.observe(ev);
    }
    let mut doc: serde_json::Value = serde_json::from_slice(&e.state_bytes().unwrap()).unwrap();
    assert_eq!(doc["version"], 1);
    doc["version"] = 2.into();
    let bytes = serde_json::to_vec(&doc).unwrap();
    match StatsEngine::from_state(StatisticsConfig::default(), &bytes) {
        Err(SnapshotError::Version {
            found: 2,
            supported: 1,
        }) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn another_configuration_is_refused() {
    let e = StatsEngine::new(StatisticsConfig::default());
    let other = StatisticsConfig {
        window_secs: 300,
        ..StatisticsConfig::default()
    };
    assert!(matches!(
        StatsEngine::from_state(other, &e.state_bytes().unwrap()),
        Err(SnapshotError::ConfigChanged)
    ));
}

#[test]
fn corrupt_documents_are_refused_never_a_panic() {
    let mut e = StatsEngine::new(StatisticsConfig::default());
    for ev in traffic().iter().take(500) {
        e.observe(ev);
    }
    let bytes = e.state_bytes().unwrap();
    let cfg = StatisticsConfig::default;
    // Truncated anywhere, garbage, empty, JSON of another shape.
    for cut in [0, 1, bytes.len() / 3, bytes.len() / 2, bytes.len() - 1] {
        assert!(
            matches!(
                StatsEngine::from_state(cfg(), &bytes[..cut]),
                Err(SnapshotError::Corrupt(_))
            ),
            "cut at {cut}"
        );
    }
    for junk in [
        &b"\x1f\x8b\x08garbage"[..],
        b"[]",
        b"{\"version\":1}",
        b"null",
    ] {
        assert!(matches!(
            StatsEngine::from_state(cfg(), junk),
            Err(SnapshotError::Corrupt(_))
        ));
    }
    // Well-formed but inconsistent: an index entry naming a slot that does not exist, an
    // unknown detector name.
    let mut doc: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let key = doc["state"]["index"]
        .as_object()
        .unwrap()
        .keys()
        .next()
        .unwrap()
        .clone();
    doc["state"]["index"][&key] = 1_000_000.into();
    let bad = serde_json::to_vec(&doc).unwrap();
    assert!(matches!(
        StatsEngine::from_state(cfg(), &bad),
        Err(SnapshotError::Corrupt(_))
    ));
    let text = String::from_utf8(bytes).unwrap();
    let renamed = text.replacen("\"log_level_rate\"", "\"made_up_rate\"", 1);
    assert_ne!(renamed, text);
    assert!(matches!(
        StatsEngine::from_state(cfg(), renamed.as_bytes()),
        Err(SnapshotError::Corrupt(_))
    ));
}
