//! Archiving a batch of events in the `raw` table format (`aiops_ingest::archive`).
//!
//! Input: 8,192 `aiops_core::Event` values built directly from a seeded generator (the same
//! events on every run), in event-time order over about 80 s: 60 % CloudTrail calls (2,000
//! principals over 14 APIs; request parameters as JSON text, response elements on a tenth,
//! KMS/S3 resources, 2 % failed calls with an error message, several user agents) and 40 %
//! log lines (200 log groups, ~100–200-byte messages, mixed levels).
//!
//! Group `parquet_raw` (`Throughput::ElementsAndBytes`: elements are events; bytes are the
//! events' JSON size, i.e. `serde_json` of each `Event`, a stand-in for "the data archived"
//! that does not depend on the encoding being measured):
//!
//! - `encode_raw_batch`: the events to one Arrow `RecordBatch` of the `raw` schema.
//! - `encode_raw_parquet`: the events to one complete Parquet file in memory (`Vec<u8>`,
//!   Snappy, one row group of at most `ArchiveConfig::default().rows_per_row_group` rows),
//!   as written to S3. Its encoded size is printed once at start.

/// The allocator of the `aiops` binary, so the figures match it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use aiops_benches::{Rng, position};
use aiops_core::{CloudTrailFields, Event, EventBody, LogFields, LogLevel, Principal, ResourceRef};
use aiops_ingest::archive::{ArchiveConfig, encode_raw_batch, encode_raw_parquet};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

const MICROS: i64 = 1_000_000;
/// 2024-05-01T12:00:00Z in microseconds since the Unix epoch.
const T0: i64 = 1_714_564_800 * MICROS;
/// Events per batch.
const BATCH: usize = 8192;
const ACCOUNT: &str = "123456789012";

/// (event source, event name, read-only) of the APIs called.
const APIS: [(&str, &str, bool); 14] = [
    ("ec2.amazonaws.com", "DescribeInstances", true),
    ("ec2.amazonaws.com", "TerminateInstances", false),
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
    ("iam.amazonaws.com", "AttachRolePolicy", false),
];

const USER_AGENTS: [&str; 4] = [
    "aws-sdk-java/2.25.40 Linux/5.10.219-208.866.amzn2.x86_64 OpenJDK_64-Bit_Server_VM/17.0.11+9-LTS Java/17.0.11 vendor/Amazon.com_Inc. exec-env/AWS_ECS_FARGATE",
    "Boto3/1.34.101 md/Botocore#1.34.101 ua/2.0 os/linux#5.10.219 md/arch#x86_64 lang/python#3.12.3 exec-env/AWS_Lambda_python3.12",
    "aws-cli/2.15.40 md/awscrt#0.19.19 ua/2.0 os/macos#23.4.0 md/arch#arm64 lang/python#3.11.9 prompt/off command/s3.cp",
    "console.amazonaws.com",
];

fn cloudtrail_event(seq: u64, t: i64, rng: &mut Rng) -> Event {
    let p = rng.below(2000).min(rng.below(2000));
    let api = ((p + rng.below(3)) % APIS.len() as u64) as usize;
    let (source, name, read_only) = APIS[api];
    let role = format!("app-role-{p}");
    let error = match rng.below(100) {
        0 => Some("AccessDenied"),
        1 => Some("ThrottlingException"),
        _ => None,
    };
    let resources = match source {
        "kms.amazonaws.com" => vec![ResourceRef {
            resource_type: Some("AWS::KMS::Key".into()),
            id: None,
            arn: Some(format!(
                "arn:aws:kms:us-east-1:{ACCOUNT}:key/{}",
                rng.uuid()
            )),
        }],
        "s3.amazonaws.com" => vec![
            ResourceRef {
                resource_type: Some("AWS::S3::Object".into()),
                id: None,
                arn: Some(format!(
                    "arn:aws:s3:::data-lake-{}/raw/part-{:08x}.parquet",
                    p % 50,
                    rng.next() >> 32
                )),
            },
            ResourceRef {
                resource_type: Some("AWS::S3::Bucket".into()),
                id: None,
                arn: Some(format!("arn:aws:s3:::data-lake-{}", p % 50)),
            },
        ],
        _ => Vec::new(),
    };
    let response_elements = (rng.below(10) == 0).then(|| {
        format!(
            r#"{{"requestId":"{}","instancesSet":{{"items":[{{"instanceId":"i-{:017x}","currentState":{{"code":32,"name":"shutting-down"}},"previousState":{{"code":16,"name":"running"}}}}]}}}}"#,
            rng.uuid(),
            rng.next() >> 4
        )
    });
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
            principal: Principal {
                principal_type: Some("AssumedRole".into()),
                arn: Some(format!(
                    "arn:aws:sts::{ACCOUNT}:assumed-role/{role}/i-{:017x}",
                    rng.next() >> 4
                )),
                account_id: Some(ACCOUNT.into()),
                session_issuer_arn: Some(format!("arn:aws:iam::{ACCOUNT}:role/{role}")),
                invoked_by: None,
                user_name: Some(role),
            },
            source_ip: Some(format!(
                "10.{}.{}.{}",
                rng.below(256),
                rng.below(256),
                rng.below(254) + 1
            )),
            user_agent: Some(USER_AGENTS[(p % 4) as usize].into()),
            error_code: error.map(str::to_owned),
            error_message: error.map(|e| {
                format!(
                    "{e}: User: arn:aws:sts::{ACCOUNT}:assumed-role/app-role-{p}/session is not authorized to perform: {name}"
                )
            }),
            read_only: Some(read_only),
            resources,
            request_parameters: Some(format!(
                r#"{{"key":"tenant-{}/item-{}","maxResults":100,"filters":[{{"name":"tag:env","values":["prod"]}}]}}"#,
                p % 97,
                rng.below(1_000_000)
            )),
            response_elements,
            recipient_account_id: Some(ACCOUNT.into()),
            event_category: None,
            insight: None,
        })),
    }
}

fn log_event(seq: u64, t: i64, rng: &mut Rng) -> Event {
    let group = rng.below(200).min(rng.below(200));
    let (level, message) = match rng.below(10) {
        0 => (
            Some(LogLevel::Error),
            format!(
                "2024-05-01 12:00:{:02},{:03} ERROR [pool-{}-thread-{}] c.e.payments.Gateway - charge failed for account {}: java.net.SocketTimeoutException: Read timed out",
                rng.below(60),
                rng.below(1000),
                rng.below(8),
                rng.below(64),
                rng.below(1_000_000)
            ),
        ),
        1..=3 => (
            Some(LogLevel::Info),
            format!(
                r#"{{"level":"info","msg":"order processed","order_id":"{}","items":{},"latency_ms":{}}}"#,
                rng.uuid(),
                rng.below(12),
                rng.below(900)
            ),
        ),
        4..=6 => (
            None,
            format!(
                r#"10.0.{}.{} - - [01/May/2024:12:00:{:02} +0000] "GET /api/v1/items/{} HTTP/1.1" 200 {} "-" "Mozilla/5.0""#,
                rng.below(256),
                rng.below(256),
                rng.below(60),
                rng.below(1_000_000),
                rng.below(90_000)
            ),
        ),
        _ => (
            None,
            format!(
                "REPORT RequestId: {}\tDuration: {}.{:02} ms\tBilled Duration: {} ms\tMemory Size: 512 MB\tMax Memory Used: {} MB",
                rng.uuid(),
                rng.below(3000),
                rng.below(100),
                rng.below(3000) + 1,
                rng.below(400) + 60
            ),
        ),
    };
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
            log_stream: format!("web/app/{:08x}", group * 2_654_435_761 % 0xffff_ffff),
            message,
            level,
        }),
    }
}

fn batch() -> Vec<Event> {
    let mut rng = Rng(0x0a2c_41fe_ba7c_0001);
    (0..BATCH)
        .map(|i| {
            let seq = i as u64;
            let t = T0 + i as i64 * 10_000;
            if rng.below(10) < 6 {
                cloudtrail_event(seq, t, &mut rng)
            } else {
                log_event(seq, t, &mut rng)
            }
        })
        .collect()
}

fn bench_parquet(c: &mut Criterion) {
    let events = batch();
    let refs: Vec<&Event> = events.iter().collect();
    let json: u64 = events
        .iter()
        .map(|e| serde_json::to_vec(e).map_or(0, |v| v.len() as u64))
        .sum();
    let rows_per_group = ArchiveConfig::default().rows_per_row_group;
    match encode_raw_parquet(&refs, rows_per_group, "bench") {
        Ok(file) => eprintln!(
            "parquet bench: {} events, {json} bytes as JSON, {} bytes as Parquet (Snappy)",
            events.len(),
            file.len()
        ),
        Err(e) => panic!("encode_raw_parquet failed on the bench batch: {e}"),
    }

    let mut g = c.benchmark_group("parquet_raw");
    g.throughput(Throughput::ElementsAndBytes {
        elements: events.len() as u64,
        bytes: json,
    });
    g.bench_function("encode_raw_batch", |b| {
        b.iter(|| black_box(encode_raw_batch(&refs).map_or(0, |batch| batch.num_rows())))
    });
    g.bench_function("encode_raw_parquet", |b| {
        b.iter(|| {
            black_box(
                encode_raw_parquet(&refs, rows_per_group, "bench").map_or(0, |file| file.len()),
            )
        })
    });
    g.finish();
}

criterion_group!(benches, bench_parquet);
criterion_main!(benches);
