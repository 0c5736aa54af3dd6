//! Decoder hot paths: CloudTrail (EventBridge envelope and log-file form), CloudWatch Logs
//! subscription payloads (gunzip + parse), KPL de-aggregation; each against parsing the same
//! bytes into `serde_json::Value` (the naive way). Throughput in elements and bytes.

use aiops_core::Position;
use aiops_ingest::decode::{DecodeLimits, DecodeOutput, decode_file, decode_kinesis_record, kpl};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use flate2::Compression;
use flate2::write::GzEncoder;
use std::hint::black_box;
use std::io::Write;

fn record(i: usize) -> String {
    format!(
        r#"{{"eventVersion":"1.09","userIdentity":{{"type":"AssumedRole","principalId":"AROAEXAMPLE:s{i}","arn":"arn:aws:sts::123456789012:assumed-role/app-role-{r}/s{i}","accountId":"123456789012","sessionContext":{{"sessionIssuer":{{"type":"Role","principalId":"AROAEXAMPLE","arn":"arn:aws:iam::123456789012:role/app-role-{r}","accountId":"123456789012","userName":"app-role-{r}"}},"attributes":{{"creationDate":"2024-05-01T11:00:00Z","mfaAuthenticated":"false"}}}}}},"eventTime":"2024-05-01T12:00:{s:02}Z","eventSource":"ec2.amazonaws.com","eventName":"DescribeInstances","awsRegion":"us-east-1","sourceIPAddress":"10.0.{a}.{b}","userAgent":"aws-sdk-java/2.20.0","requestParameters":{{"maxResults":{i},"filterSet":{{"items":[{{"name":"tag:env","valueSet":{{"items":[{{"value":"prod"}}]}}}}]}}}},"responseElements":null,"requestID":"6f1c{i:08}-aaaa-bbbb-cccc-000000000000","eventID":"0b9f{i:08}-1111-4a1a-9a1a-000000000000","readOnly":true,"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"123456789012","eventCategory":"Management"}}"#,
        r = i % 500,
        s = i % 60,
        a = i % 250,
        b = (i / 250) % 250 + 1
    )
}

fn eventbridge(i: usize) -> Vec<u8> {
    format!(
        r#"{{"version":"0","id":"5f1c{i:08}-aaaa-bbbb-cccc-000000000001","detail-type":"AWS API Call via CloudTrail","source":"aws.ec2","account":"123456789012","time":"2024-05-01T12:00:00Z","region":"us-east-1","resources":[],"detail":{}}}"#,
        record(i)
    )
    .into_bytes()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::default());
    let _ = e.write_all(data);
    e.finish().unwrap_or_default()
}

fn position() -> Position {
    Position {
        stream: "raw".into(),
        shard_id: "shardId-000000000000".into(),
        sequence_number: "49590338271490256608559692538361571095921575989136588898".into(),
        sub_sequence_number: None,
    }
}

fn bench_cloudtrail(c: &mut Criterion) {
    let limits = DecodeLimits::default();
    let records: Vec<Vec<u8>> = (0..1000).map(eventbridge).collect();
    let bytes: usize = records.iter().map(Vec::len).sum();
    let mut g = c.benchmark_group("cloudtrail_eventbridge");
    g.throughput(Throughput::Elements(records.len() as u64));
    g.bench_function("aiops_decode", |b| {
        b.iter(|| {
            let mut out = DecodeOutput::default();
            for r in &records {
                decode_kinesis_record(r, &position(), 0, &limits, &mut out);
            }
            black_box(out.events.len())
        })
    });
    g.bench_function("serde_json_value", |b| {
        b.iter(|| {
            let mut n = 0;
            for r in &records {
                let v: serde_json::Value = serde_json::from_slice(r).unwrap_or_default();
                n += v.as_object().map_or(0, |o| o.len());
            }
            black_box(n)
        })
    });
    g.throughput(Throughput::Bytes(bytes as u64));
    g.bench_function(BenchmarkId::new("aiops_decode", "bytes"), |b| {
        b.iter(|| {
            let mut out = DecodeOutput::default();
            for r in &records {
                decode_kinesis_record(r, &position(), 0, &limits, &mut out);
            }
            black_box(out.events.len())
        })
    });
    g.finish();

    let log_file = format!(
        r#"{{"Records":[{}]}}"#,
        (0..1000).map(record).collect::<Vec<_>>().join(",")
    )
    .into_bytes();
    let gz = gzip(&log_file);
    let mut g = c.benchmark_group("cloudtrail_log_file");
    g.throughput(Throughput::Elements(1000));
    g.bench_function("aiops_decode_gzip", |b| {
        b.iter(|| {
            let mut out = DecodeOutput::default();
            decode_file("x.json.gz", &gz, 0, &limits, &mut out);
            black_box(out.events.len())
        })
    });
    g.bench_function("aiops_decode_plain", |b| {
        b.iter(|| {
            let mut out = DecodeOutput::default();
            decode_file("x.json", &log_file, 0, &limits, &mut out);
            black_box(out.events.len())
        })
    });
    g.finish();
}

fn bench_cwlogs(c: &mut Criterion) {
    let limits = DecodeLimits::default();
    let events: Vec<String> = (0..100)
        .map(|i| {
            format!(
                r#"{{"id":"3700000000000000000000000000000000000000000000000000{i:04}","timestamp":17145649{i:05},"message":"INFO GET /api/v1/items/{i} 200 {i}ms request_id=6f1c{i:08}-aaaa"}}"#
            )
        })
        .collect();
    let payload = format!(
        r#"{{"messageType":"DATA_MESSAGE","owner":"123456789012","logGroup":"/ecs/checkout-api","logStream":"web-1","subscriptionFilters":["aiops"],"logEvents":[{}]}}"#,
        events.join(",")
    );
    let gz = gzip(payload.as_bytes());
    let mut g = c.benchmark_group("cwlogs_subscription");
    g.throughput(Throughput::Elements(100));
    g.bench_function("aiops_decode", |b| {
        b.iter(|| {
            let mut out = DecodeOutput::default();
            decode_kinesis_record(&gz, &position(), 0, &limits, &mut out);
            black_box(out.events.len())
        })
    });
    g.finish();
}

fn bench_kpl(c: &mut Criterion) {
    let bodies: Vec<Vec<u8>> = (0..100).map(eventbridge).collect();
    let parts: Vec<(&str, Option<&str>, &[u8])> = bodies
        .iter()
        .map(|b| ("partition-key", None, b.as_slice()))
        .collect();
    let agg = kpl::aggregate(&parts);
    let mut g = c.benchmark_group("kpl_deaggregate");
    g.throughput(Throughput::Bytes(agg.len() as u64));
    g.bench_function("deaggregate_100", |b| {
        b.iter(|| black_box(kpl::deaggregate(&agg).map(|v| v.len()).unwrap_or(0)))
    });
    g.finish();
}

criterion_group!(benches, bench_cloudtrail, bench_cwlogs, bench_kpl);
criterion_main!(benches);
