//! The statistical engine `aiops_detect::engine::StatsEngine` (default `StatisticsConfig`:
//! 60 s tumbling windows, 10 s allowed lateness): window update and scoring at window close.
//!
//! Inputs are `aiops_core::Event` values built directly (no decoding), from a seeded
//! generator, so every run sees the same events:
//!
//! - **Mixed stream** (100,000 events over 240 s of event time, i.e. 4 windows closed per
//!   pass; events slightly out of order, within the lateness): 60 % CloudTrail calls by 3,000
//!   principals (skewed: a few are busy, most are quiet) over 14 APIs of 8 services, each
//!   principal using about three APIs, 2 % of calls failing (`AccessDenied`,
//!   `ThrottlingException`); 40 % log lines from 200 log groups with 300 templates each
//!   (skewed use of groups and templates; 7 % WARN, 2 % ERROR).
//! - **Window close**: `N` = 10,000 or 100,000 count series (`api_call:` series of N/4
//!   principals × 4 APIs, plus the 4 `event_source:` series), each with one event in the open
//!   window; then one event moves the watermark past the window's end.
//!
//! Groups:
//!
//! - `window_observe`: `StatsEngine::observe` over the mixed stream. `steady_*`: the same
//!   engine across iterations, the stream shifted by 240 s each time (untimed), so series,
//!   templates and models are warm, as in a long-running process; `fresh_1_thread`: a new
//!   engine per iteration (every series and template is created). The closes the stream
//!   causes are included (amortised). Run inside a rayon pool of 1 or 2 threads (the
//!   engine scores in parallel at each close). `Throughput::ElementsAndBytes`: elements are
//!   events, bytes are the events' JSON size (`serde_json` of `Event`).
//! - `window_close`: only the `observe` call that closes the window (scoring every series,
//!   building findings, evicting idle series), timed alone; refilling the window with one event
//!   per series happens untimed between iterations. Run in rayon pools of 1 and 2 threads
//!   (`ThreadPool::install`) to show the scaling. `Throughput::Elements`: series scored per
//!   close (no byte stream is read at a close, so no bytes are declared).
//!
//! Both groups use 10 samples: each iteration is long, and the untimed refills add up.

/// The allocator of the `aiops` binary, so the figures match it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use aiops_benches::{Rng, position};
use aiops_core::{CloudTrailFields, Event, EventBody, LogFields, LogLevel, Principal, ResourceRef};
use aiops_detect::config::{NoveltyConfig, StatisticsConfig};
use aiops_detect::engine::StatsEngine;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rayon::{ThreadPool, ThreadPoolBuilder};
use std::hint::black_box;
use std::time::{Duration, Instant};

const MICROS: i64 = 1_000_000;
/// 2024-05-01T00:00:00Z in microseconds since the Unix epoch.
const T0: i64 = 1_714_521_600 * MICROS;
/// Events in the mixed stream.
const STREAM_EVENTS: usize = 100_000;
/// Event time the mixed stream spans: four 60 s windows.
const STREAM_SPAN: i64 = 240 * MICROS;

/// (event source, event name, read-only) of the APIs called.
const APIS: [(&str, &str, bool); 14] = [
    ("ec2.amazonaws.com", "DescribeInstances", true),
    ("ec2.amazonaws.com", "DescribeVolumes", true),
    ("s3.amazonaws.com", "GetObject", true),
    ("s3.amazonaws.com", "PutObject", false),
    ("kms.amazonaws.com", "Decrypt", true),
    ("kms.amazonaws.com", "GenerateDataKey", true),
    ("sts.amazonaws.com", "AssumeRole", true),
    ("dynamodb.amazonaws.com", "GetItem", true),
    ("dynamodb.amazonaws.com", "PutItem", false),
    ("dynamodb.amazonaws.com", "Query", true),
    ("lambda.amazonaws.com", "Invoke", false),
    ("ssm.amazonaws.com", "GetParameter", true),
    ("sqs.amazonaws.com", "SendMessage", false),
    ("sqs.amazonaws.com", "ReceiveMessage", false),
];

const VERBS: [&str; 20] = [
    "Fetching",
    "Storing",
    "Deleting",
    "Updating",
    "Validating",
    "Sending",
    "Receiving",
    "Parsing",
    "Loading",
    "Saving",
    "Retrying",
    "Opening",
    "Closing",
    "Scheduling",
    "Starting",
    "Stopping",
    "Resolving",
    "Refreshing",
    "Syncing",
    "Publishing",
];
const NOUNS: [&str; 15] = [
    "order", "invoice", "session", "cart", "profile", "token", "payment", "shipment", "report",
    "ledger", "catalog", "image", "message", "quota", "webhook",
];
const ACCOUNT: &str = "123456789012";

/// A CloudTrail event by principal `p` calling `APIS[api]` at `t`; `error` sets `errorCode`.
fn cloudtrail_event(
    p: u64,
    api: usize,
    t: i64,
    error: Option<&str>,
    seq: u64,
    rng: &mut Rng,
) -> Event {
    let (source, name, read_only) = APIS[api % APIS.len()];
    let role = format!("app-role-{p}");
    let principal = Principal {
        principal_type: Some("AssumedRole".into()),
        arn: Some(format!(
            "arn:aws:sts::{ACCOUNT}:assumed-role/{role}/i-{:017x}",
            rng.next() >> 4
        )),
        account_id: Some(ACCOUNT.into()),
        session_issuer_arn: Some(format!("arn:aws:iam::{ACCOUNT}:role/{role}")),
        invoked_by: None,
        user_name: Some(role),
    };
    let resources = if source == "kms.amazonaws.com" {
        vec![ResourceRef {
            resource_type: Some("AWS::KMS::Key".into()),
            id: Some(format!("key-{}", p % 40)),
            arn: Some(format!(
                "arn:aws:kms:us-east-1:{ACCOUNT}:key/key-{}",
                p % 40
            )),
        }]
    } else {
        Vec::new()
    };
    Event {
        event_id: rng.uuid(),
        event_time: t,
        ingest_time: t + 2 * MICROS,
        decode_warnings: Vec::new(),
        account: Some(ACCOUNT.into()),
        region: Some("us-east-1".into()),
        position: position(seq),
        body: EventBody::Cloudtrail(Box::new(CloudTrailFields {
            event_source: source.into(),
            event_name: name.into(),
            event_type: Some("AwsApiCall".into()),
            principal,
            source_ip: Some(rng.private_ip()),
            user_agent: Some(
                "aws-sdk-java/2.25.40 Linux/5.10.219 OpenJDK_64-Bit_Server_VM/17.0.11+9-LTS".into(),
            ),
            error_code: error.map(str::to_owned),
            error_message: error.map(|e| format!("{e}: not authorized to perform {name}")),
            read_only: Some(read_only),
            resources,
            request_parameters: Some(format!(
                r#"{{"key":"tenant-{}/item-{}","maxResults":100}}"#,
                p % 97,
                rng.below(1_000_000)
            )),
            response_elements: None,
            recipient_account_id: Some(ACCOUNT.into()),
            event_category: None,
            insight: None,
        })),
    }
}

/// A log event of template `tpl` in log group `group` at `t`.
fn log_event(group: u64, tpl: u64, t: i64, seq: u64, rng: &mut Rng) -> Event {
    let r = rng.below(100);
    let (level, word) = match r {
        0..=1 => (LogLevel::Error, "ERROR"),
        2..=8 => (LogLevel::Warn, "WARN"),
        _ => (LogLevel::Info, "INFO"),
    };
    // The first two tokens name the template (the miner routes on them).
    let message = format!(
        "{} {} {word} request_id={} took {} ms status={} bytes={}",
        VERBS[(tpl % 20) as usize],
        NOUNS[((tpl / 20) % 15) as usize],
        rng.uuid(),
        rng.below(2_000),
        [200, 201, 204, 400, 404, 500][rng.below(6) as usize],
        rng.below(100_000)
    );
    Event {
        event_id: format!("3798123871236547891239876123987612398761239876{seq:010}"),
        event_time: t,
        ingest_time: t + 2 * MICROS,
        decode_warnings: Vec::new(),
        account: Some(ACCOUNT.into()),
        region: Some("us-east-1".into()),
        position: position(seq),
        body: EventBody::Logs(LogFields {
            log_group: format!("/ecs/service-{group}"),
            log_stream: format!("web/app/{:08x}", (group * 7 + rng.below(4)) * 2_654_435_761),
            message,
            level: Some(level),
        }),
    }
}

/// The mixed stream: `STREAM_EVENTS` events over `STREAM_SPAN` from `T0`.
fn mixed_stream() -> Vec<Event> {
    let mut rng = Rng(0x5eed_0fa1_0b05);
    (0..STREAM_EVENTS)
        .map(|i| {
            let seq = i as u64;
            let t =
                T0 + STREAM_SPAN * i as i64 / STREAM_EVENTS as i64 - (rng.below(3_000_000) as i64);
            if rng.below(10) < 6 {
                let p = rng.skewed(3000);
                let api = ((p + rng.below(3)) % APIS.len() as u64) as usize;
                let error = match rng.below(100) {
                    0 => Some("AccessDenied"),
                    1 => Some("ThrottlingException"),
                    _ => None,
                };
                cloudtrail_event(p, api, t, error, seq, &mut rng)
            } else {
                let group = rng.skewed(200);
                let tpl = rng.skewed(300);
                log_event(group, tpl, t, seq, &mut rng)
            }
        })
        .collect()
}

fn json_bytes(events: &[Event]) -> u64 {
    events
        .iter()
        .map(|e| serde_json::to_vec(e).map_or(0, |v| v.len() as u64))
        .sum()
}

fn pool(threads: usize) -> ThreadPool {
    match ThreadPoolBuilder::new().num_threads(threads).build() {
        Ok(p) => p,
        Err(e) => panic!("cannot build a rayon pool of {threads} threads: {e}"),
    }
}

fn shift(events: &mut [Event], by: i64) {
    for e in events {
        e.event_time += by;
        e.ingest_time += by;
    }
}

fn bench_observe(c: &mut Criterion) {
    let mut stream = mixed_stream();
    let throughput = Throughput::ElementsAndBytes {
        elements: stream.len() as u64,
        bytes: json_bytes(&stream),
    };
    let pools = [(1, pool(1)), (2, pool(2))];
    let mut g = c.benchmark_group("window_observe");
    g.sample_size(10);
    g.throughput(throughput);

    // Steady state: one engine per pool size, warmed on two passes, fed shifted passes.
    for (threads, pool) in &pools {
        let mut engine = StatsEngine::new(StatisticsConfig::default());
        for _ in 0..2 {
            for e in &stream {
                black_box(engine.observe(e));
            }
            shift(&mut stream, STREAM_SPAN);
        }
        let k = engine.counters();
        eprintln!(
            "window_observe: warm engine: {} series, {} log groups, {} windows closed, {} findings",
            k.series_tracked, k.log_groups, k.windows_closed, k.findings
        );
        let name = format!(
            "steady_{threads}_thread{}",
            if *threads > 1 { "s" } else { "" }
        );
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    let findings = pool.install(|| {
                        let mut n = 0usize;
                        for e in &stream {
                            n += engine.observe(e).len();
                        }
                        n
                    });
                    total += start.elapsed();
                    black_box(findings);
                    shift(&mut stream, STREAM_SPAN);
                }
                total
            })
        });
    }

    let (_, pool1) = &pools[0];
    g.bench_function("fresh_1_thread", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let mut engine = StatsEngine::new(StatisticsConfig::default());
                let start = Instant::now();
                let findings = pool1.install(|| {
                    let mut n = 0usize;
                    for e in &stream {
                        n += engine.observe(e).len();
                    }
                    n
                });
                total += start.elapsed();
                black_box(findings);
                drop(engine);
            }
            total
        })
    });
    g.finish();
}

/// An engine with `n` count series, each with one event in the open window, and what it
/// takes to close that window again and again.
struct CloseFixture {
    engine: StatsEngine,
    /// One event per series (principal `i / 4`, API `i % 4`), at `window + (i % 60) s`.
    fill: Vec<Event>,
    /// An event at `window + 70 s`: the watermark (−10 s lateness) passes the window's end.
    closer: Event,
}

impl CloseFixture {
    fn new(n: usize) -> Self {
        // Room for every series and principal/API pair: nothing is rejected or forgotten.
        let defaults = StatisticsConfig::default();
        let cfg = StatisticsConfig {
            max_series: 2 * n + 1000,
            novelty: NoveltyConfig {
                max_pairs: 2 * n + 1000,
                ..defaults.novelty.clone()
            },
            ..defaults
        };
        let mut rng = Rng(0xc105_e000 + n as u64);
        let fill: Vec<Event> = (0..n)
            .map(|i| {
                let t = T0 + (i % 60) as i64 * MICROS;
                cloudtrail_event((i / 4) as u64, i % 4, t, None, i as u64, &mut rng)
            })
            .collect();
        let closer = cloudtrail_event(0, 0, T0 + 70 * MICROS, None, n as u64, &mut rng);
        let mut f = CloseFixture {
            engine: StatsEngine::new(cfg),
            fill,
            closer,
        };
        // Warm-up: create the series and give the models a few windows of history.
        for _ in 0..3 {
            f.refill();
            black_box(f.close());
            f.advance();
        }
        let k = f.engine.counters();
        eprintln!(
            "window_close: {} series tracked ({} rejected), {} windows closed",
            k.series_tracked, k.series_rejected, k.windows_closed
        );
        f
    }

    /// Feeds one event per series into the open window (no window closes meanwhile).
    fn refill(&mut self) {
        for e in &self.fill {
            black_box(self.engine.observe(e));
        }
    }

    /// Closes the open window (the timed part); returns the number of findings.
    fn close(&mut self) -> usize {
        self.engine.observe(&self.closer).len()
    }

    /// Moves every input one window on, for the next round.
    fn advance(&mut self) {
        shift(&mut self.fill, 60 * MICROS);
        shift(std::slice::from_mut(&mut self.closer), 60 * MICROS);
    }
}

fn bench_close(c: &mut Criterion) {
    let pools = [(1, pool(1)), (2, pool(2))];
    let mut g = c.benchmark_group("window_close");
    g.sample_size(10);
    for n in [10_000usize, 100_000] {
        let mut f = CloseFixture::new(n);
        g.throughput(Throughput::Elements(n as u64));
        for (threads, pool) in &pools {
            let id = BenchmarkId::new(format!("series_{n}"), format!("threads_{threads}"));
            g.bench_function(id, |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        f.refill();
                        let start = Instant::now();
                        let findings = pool.install(|| f.close());
                        total += start.elapsed();
                        black_box(findings);
                        f.advance();
                    }
                    total
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench_observe, bench_close);
criterion_main!(benches);
