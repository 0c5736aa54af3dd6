//! Decoder hot paths of `aiops_ingest::decode`, each against baselines on the same bytes.
//!
//! Groups (every benchmark declares `Throughput::ElementsAndBytes`, so criterion reports both
//! elements per second and bytes per second):
//!
//! - `cloudtrail_eventbridge`: 1,000 EventBridge "AWS API Call via CloudTrail" events (one
//!   Kinesis record each, about 1–3 KB, 1.68 MB in all; sizes printed at start), decoded by
//!   `aiops_decode` ([`decode_kinesis_record`] to normalised events), `serde_json_value`
//!   (parsing the same bytes into `serde_json::Value`, the naive way) and `memchr` (the raw
//!   limit of reading the bytes: counting the `"` of every record with
//!   `memchr::memchr_iter(..).count()`). Elements are records, bytes are the records' JSON
//!   bytes. `benches/compare-decode` prints the ratios.
//! - `cloudtrail_log_file`: one CloudTrail log file (`{"Records":[...]}`, 1,000 records), as
//!   delivered (gzip) and plain, through [`decode_file`]; plus `serde_json::Value` on the
//!   plain file. Elements are records; bytes are the file's bytes as given to the decoder
//!   (compressed for the gzip case).
//! - `cwlogs_subscription`: 20 gzip CloudWatch Logs subscription payloads (50 log events each,
//!   five log-line shapes: JSON app logs, access logs, Lambda START/REPORT, Java errors),
//!   through `aiops_decode` and `gunzip_only` (the inflate cost alone). Elements are log
//!   events; bytes are the gzip payload bytes (what Kinesis carries).
//! - `kpl`: one KPL aggregate of 100 EventBridge events: `deaggregate` alone and
//!   `deaggregate_decode` (the whole [`decode_kinesis_record`] path). Elements are user
//!   records; bytes are the aggregate's bytes.
//!
//! Records follow the shapes of real CloudTrail records (key order as CloudTrail writes it;
//! see `/work/shared/data/cloudtrail`): assumed-role EC2 reads, Auto Scaling terminations
//! (`invokedBy`), S3 data events with `resources` and `additionalEventData`, KMS `Decrypt`,
//! failed `RunInstances` (`errorCode`/`errorMessage`), console sign-ins and `AssumeRole` by an
//! AWS service, with thousands of principals and unique event/request ids from a seeded
//! generator, so every run sees the same bytes.

/// The allocator of the `aiops` binary, so the figures match it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use aiops_benches::Rng;
use aiops_core::Position;
use aiops_ingest::decode::{DecodeLimits, DecodeOutput, decode_file, decode_kinesis_record, kpl};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use std::hint::black_box;
use std::io::{Read, Write};

const ACCOUNTS: [&str; 3] = ["123456789012", "210987654321", "555566667777"];
const REGIONS: [&str; 3] = ["us-east-1", "eu-west-1", "us-west-2"];

/// `eventTime` for second `secs` of 2024-05-01 (ISO-8601, UTC, as CloudTrail writes it).
fn event_time(secs: u64) -> String {
    let s = secs % 86_400;
    format!(
        "2024-05-01T{:02}:{:02}:{:02}Z",
        s / 3600,
        (s / 60) % 60,
        s % 60
    )
}

/// One CloudTrail record (the element of `Records`, or an EventBridge event's `detail`) of
/// shape `i % 20`, at second `i / 10` of the day, with ids from `rng`. Returns the record and
/// its service prefix (`ec2`, `s3`, ...) for the EventBridge `source`.
fn cloudtrail_record(i: usize, rng: &mut Rng) -> (String, &'static str) {
    let account = ACCOUNTS[i % ACCOUNTS.len()];
    let region = REGIONS[(i / 3) % REGIONS.len()];
    let time = event_time(i as u64 / 10);
    let event_id = rng.uuid();
    let request_id = rng.uuid();
    let ip = rng.ip();
    let role = rng.below(2000);
    let user = rng.below(500);
    let session = rng.hex(16);
    let key_id = rng.uuid();
    let instance = rng.hex(17);
    let tls = format!(
        r#""tlsDetails":{{"tlsVersion":"TLSv1.3","cipherSuite":"TLS_AES_128_GCM_SHA256","clientProvidedHostHeader":"{{svc}}.{region}.amazonaws.com"}}"#
    );
    let assumed = |role_name: &str, session_name: &str, invoked_by: Option<&str>| {
        let invoked = invoked_by
            .map(|s| format!(r#""invokedBy":"{s}","#))
            .unwrap_or_default();
        format!(
            r#"{{"type":"AssumedRole","principalId":"AROA{p}:{session_name}","arn":"arn:aws:sts::{account}:assumed-role/{role_name}/{session_name}","accountId":"{account}","accessKeyId":"ASIA{k}",{invoked}"sessionContext":{{"sessionIssuer":{{"type":"Role","principalId":"AROA{p}","arn":"arn:aws:iam::{account}:role/{role_name}","accountId":"{account}","userName":"{role_name}"}},"attributes":{{"creationDate":"{time}","mfaAuthenticated":"false"}}}}}}"#,
            p = session.to_uppercase(),
            k = session.get(..12).unwrap_or("").to_uppercase(),
        )
    };
    let iam_user = |name: &str| {
        format!(
            r#"{{"type":"IAMUser","principalId":"AIDA{p}","arn":"arn:aws:iam::{account}:user/{name}","accountId":"{account}","accessKeyId":"AKIA{k}","userName":"{name}"}}"#,
            p = session.to_uppercase(),
            k = session.get(..12).unwrap_or("").to_uppercase(),
        )
    };
    match i % 20 {
        // Assumed-role application reads (the bulk of real management events).
        0..=6 => {
            let ident = assumed(&format!("app-role-{role}"), &format!("i-{instance}"), None);
            let tls = tls.replace("{svc}", "ec2");
            (
                format!(
                    r#"{{"eventVersion":"1.09","userIdentity":{ident},"eventTime":"{time}","eventSource":"ec2.amazonaws.com","eventName":"DescribeInstances","awsRegion":"{region}","sourceIPAddress":"{ip}","userAgent":"aws-sdk-java/2.25.{r} Linux/5.10.219-208.866.amzn2.x86_64 OpenJDK_64-Bit_Server_VM/17.0.11+9-LTS Java/17.0.11 vendor/Amazon.com_Inc. md/internal exec-env/AWS_ECS_FARGATE","requestParameters":{{"instancesSet":{{}},"filterSet":{{"items":[{{"name":"tag:aws:autoscaling:groupName","valueSet":{{"items":[{{"value":"web-asg-{r}"}}]}}}},{{"name":"instance-state-name","valueSet":{{"items":[{{"value":"running"}}]}}}}]}}}},"responseElements":null,"requestID":"{request_id}","eventID":"{event_id}","readOnly":true,"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"{account}","eventCategory":"Management",{tls}}}"#,
                    r = role % 40,
                ),
                "ec2",
            )
        }
        // Auto Scaling terminating an instance (invokedBy, responseElements).
        7 => {
            let ident = assumed(
                "AWSServiceRoleForAutoScaling",
                "AutoScaling",
                Some("autoscaling.amazonaws.com"),
            );
            (
                format!(
                    r#"{{"eventVersion":"1.08","userIdentity":{ident},"eventTime":"{time}","eventSource":"ec2.amazonaws.com","eventName":"TerminateInstances","awsRegion":"{region}","sourceIPAddress":"autoscaling.amazonaws.com","userAgent":"autoscaling.amazonaws.com","requestParameters":{{"instancesSet":{{"items":[{{"instanceId":"i-{instance}"}}]}}}},"responseElements":{{"requestId":"{request_id}","instancesSet":{{"items":[{{"instanceId":"i-{instance}","currentState":{{"code":32,"name":"shutting-down"}},"previousState":{{"code":16,"name":"running"}}}}]}}}},"requestID":"{request_id}","eventID":"{event_id}","readOnly":false,"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"{account}","eventCategory":"Management"}}"#
                ),
                "ec2",
            )
        }
        // S3 data event by an IAM user (resources, additionalEventData).
        8..=11 => {
            let ident = iam_user(&format!("svc-user-{user}"));
            let tls = tls.replace("{svc}", "s3");
            let bucket = format!("data-lake-{}-{}", account, user % 50);
            (
                format!(
                    r#"{{"eventVersion":"1.10","userIdentity":{ident},"eventTime":"{time}","eventSource":"s3.amazonaws.com","eventName":"GetObject","awsRegion":"{region}","sourceIPAddress":"{ip}","userAgent":"[aws-cli/2.15.{u} Python/3.11.8 Linux/6.1.0 exe/x86_64.amzn.2 prompt/off command/s3.cp]","requestParameters":{{"bucketName":"{bucket}","Host":"{bucket}.s3.{region}.amazonaws.com","key":"raw/2024/05/01/part-{r}.parquet"}},"responseElements":null,"additionalEventData":{{"SignatureVersion":"SigV4","CipherSuite":"TLS_AES_128_GCM_SHA256","bytesTransferredIn":0,"AuthenticationMethod":"AuthHeader","x-amz-id-2":"{x}","bytesTransferredOut":{n}}},"requestID":"{req}","eventID":"{event_id}","readOnly":true,"resources":[{{"type":"AWS::S3::Object","ARN":"arn:aws:s3:::{bucket}/raw/2024/05/01/part-{r}.parquet"}},{{"accountId":"{account}","type":"AWS::S3::Bucket","ARN":"arn:aws:s3:::{bucket}"}}],"eventType":"AwsApiCall","managementEvent":false,"recipientAccountId":"{account}","eventCategory":"Data",{tls}}}"#,
                    u = user % 30,
                    r = rng.hex(8),
                    x = rng.hex(56),
                    n = rng.below(50_000_000),
                    req = rng.hex(16).to_uppercase(),
                ),
                "s3",
            )
        }
        // KMS Decrypt by a Lambda function's role (encryptionContext, KMS key resource).
        12..=14 => {
            let ident = assumed(&format!("lambda-exec-{role}"), &format!("fn-{role}"), None);
            (
                format!(
                    r#"{{"eventVersion":"1.09","userIdentity":{ident},"eventTime":"{time}","eventSource":"kms.amazonaws.com","eventName":"Decrypt","awsRegion":"{region}","sourceIPAddress":"lambda.amazonaws.com","userAgent":"lambda.amazonaws.com","requestParameters":{{"encryptionContext":{{"aws:lambda:FunctionArn":"arn:aws:lambda:{region}:{account}:function:fn-{role}"}},"encryptionAlgorithm":"SYMMETRIC_DEFAULT"}},"responseElements":null,"requestID":"{request_id}","eventID":"{event_id}","readOnly":true,"resources":[{{"accountId":"{account}","type":"AWS::KMS::Key","ARN":"arn:aws:kms:{region}:{account}:key/{key_id}"}}],"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"{account}","eventCategory":"Management"}}"#
                ),
                "kms",
            )
        }
        // A failed call: RunInstances denied (errorCode, long errorMessage).
        15 => {
            let ident = assumed(
                &format!("ci-deploy-{}", role % 100),
                "aws-go-sdk-1722511821",
                None,
            );
            let tls = tls.replace("{svc}", "ec2");
            (
                format!(
                    r#"{{"eventVersion":"1.09","userIdentity":{ident},"eventTime":"{time}","eventSource":"ec2.amazonaws.com","eventName":"RunInstances","awsRegion":"{region}","sourceIPAddress":"{ip}","userAgent":"aws-sdk-go-v2/1.30.3 os/linux lang/go#1.22.5 md/GOOS#linux md/GOARCH#amd64 api/ec2#1.173.0","errorCode":"Client.UnauthorizedOperation","errorMessage":"You are not authorized to perform this operation. User: arn:aws:sts::{account}:assumed-role/ci-deploy-{c}/aws-go-sdk-1722511821 is not authorized to perform: ec2:RunInstances on resource: arn:aws:ec2:{region}:{account}:instance/* because no identity-based policy allows the ec2:RunInstances action. Encoded authorization failure message: {enc}","requestParameters":{{"instancesSet":{{"items":[{{"imageId":"ami-{ami}","minCount":1,"maxCount":10}}]}},"instanceType":"p2.xlarge","blockDeviceMapping":{{}},"monitoring":{{"enabled":false}},"disableApiTermination":false,"disableApiStop":false,"clientToken":"{token}","subnetId":"subnet-{subnet}"}},"responseElements":null,"requestID":"{request_id}","eventID":"{event_id}","readOnly":false,"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"{account}","eventCategory":"Management",{tls}}}"#,
                    c = role % 100,
                    enc = rng.hex(400),
                    ami = rng.hex(17),
                    token = rng.uuid(),
                    subnet = rng.hex(17),
                ),
                "ec2",
            )
        }
        // Console sign-in (AwsConsoleSignIn, additionalEventData).
        16 => {
            let ident = iam_user(&format!("person-{user}"));
            let tls = tls.replace("{svc}", "signin");
            (
                format!(
                    r#"{{"eventVersion":"1.08","userIdentity":{ident},"eventTime":"{time}","eventSource":"signin.amazonaws.com","eventName":"ConsoleLogin","awsRegion":"us-east-1","sourceIPAddress":"{ip}","userAgent":"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15","requestParameters":null,"responseElements":{{"ConsoleLogin":"Success"}},"additionalEventData":{{"LoginTo":"https://console.aws.amazon.com/console/home?state=hashArgs%23&isauthcode=true","MobileVersion":"No","MFAIdentifier":"arn:aws:iam::{account}:mfa/person-{user}","MFAUsed":"Yes"}},"eventID":"{event_id}","readOnly":false,"eventType":"AwsConsoleSignIn","managementEvent":true,"recipientAccountId":"{account}","eventCategory":"Management",{tls}}}"#
                ),
                "signin",
            )
        }
        // AssumeRole by an AWS service (AWSService identity, credentials in the response).
        _ => (
            format!(
                r#"{{"eventVersion":"1.08","userIdentity":{{"type":"AWSService","invokedBy":"lambda.amazonaws.com"}},"eventTime":"{time}","eventSource":"sts.amazonaws.com","eventName":"AssumeRole","awsRegion":"{region}","sourceIPAddress":"lambda.amazonaws.com","userAgent":"lambda.amazonaws.com","requestParameters":{{"roleArn":"arn:aws:iam::{account}:role/lambda-exec-{role}","roleSessionName":"fn-{role}"}},"responseElements":{{"credentials":{{"accessKeyId":"ASIA{k}","sessionToken":"{tok}","expiration":"May 1, 2024, 11:59:59 PM"}},"assumedRoleUser":{{"assumedRoleId":"AROA{p}:fn-{role}","arn":"arn:aws:sts::{account}:assumed-role/lambda-exec-{role}/fn-{role}"}}}},"requestID":"{request_id}","eventID":"{event_id}","readOnly":true,"resources":[{{"accountId":"{account}","type":"AWS::IAM::Role","ARN":"arn:aws:iam::{account}:role/lambda-exec-{role}"}}],"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"{account}","sharedEventID":"{shared}","eventCategory":"Management"}}"#,
                k = session.get(..12).unwrap_or("").to_uppercase(),
                tok = rng.hex(300),
                p = session.to_uppercase(),
                shared = rng.uuid(),
            ),
            "sts",
        ),
    }
}

/// `n` CloudTrail records from a fixed seed (see [`cloudtrail_record`]).
fn cloudtrail_records(n: usize) -> Vec<(String, &'static str)> {
    let mut rng = Rng(0x00c1_0d7a_11ce_5eed);
    (0..n).map(|i| cloudtrail_record(i, &mut rng)).collect()
}

/// The EventBridge "AWS API Call via CloudTrail" event around a record.
fn eventbridge(i: usize, record: &str, service: &str, rng: &mut Rng) -> Vec<u8> {
    format!(
        r#"{{"version":"0","id":"{id}","detail-type":"AWS API Call via CloudTrail","source":"aws.{service}","account":"{account}","time":"{time}","region":"{region}","resources":[],"detail":{record}}}"#,
        id = rng.uuid(),
        account = ACCOUNTS[i % ACCOUNTS.len()],
        time = event_time(i as u64 / 10),
        region = REGIONS[(i / 3) % REGIONS.len()],
    )
    .into_bytes()
}

fn eventbridge_events(n: usize) -> Vec<Vec<u8>> {
    let mut rng = Rng(0xeb0e_eb0e_eb0e_eb0e);
    cloudtrail_records(n)
        .iter()
        .enumerate()
        .map(|(i, (r, s))| eventbridge(i, r, s, &mut rng))
        .collect()
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

fn both(elements: usize, bytes: usize) -> Throughput {
    Throughput::ElementsAndBytes {
        elements: elements as u64,
        bytes: bytes as u64,
    }
}

fn bench_cloudtrail(c: &mut Criterion) {
    let limits = DecodeLimits::default();
    let pos = position();
    let records = eventbridge_events(1000);
    let bytes: usize = records.iter().map(Vec::len).sum();
    eprintln!(
        "cloudtrail_eventbridge: {} records, {bytes} bytes (min {}, max {} bytes per record)",
        records.len(),
        records.iter().map(Vec::len).min().unwrap_or(0),
        records.iter().map(Vec::len).max().unwrap_or(0)
    );
    // Check once, outside the timing, that every record decodes to one event.
    let mut check = DecodeOutput::default();
    for r in &records {
        decode_kinesis_record(r, &pos, 0, &limits, &mut check);
    }
    assert_eq!(
        (check.events.len(), check.dead_letters.len()),
        (records.len(), 0),
        "every generated EventBridge record must decode"
    );

    let mut g = c.benchmark_group("cloudtrail_eventbridge");
    g.throughput(both(records.len(), bytes));
    g.bench_function("aiops_decode", |b| {
        b.iter(|| {
            let mut out = DecodeOutput::default();
            for r in &records {
                decode_kinesis_record(r, &pos, 0, &limits, &mut out);
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
    g.bench_function("memchr", |b| {
        b.iter(|| {
            let mut n = 0;
            for r in &records {
                n += memchr::memchr_iter(b'"', r).count();
            }
            black_box(n)
        })
    });
    g.finish();

    let body = cloudtrail_records(1000)
        .into_iter()
        .map(|(r, _)| r)
        .collect::<Vec<_>>()
        .join(",");
    let log_file = format!(r#"{{"Records":[{body}]}}"#).into_bytes();
    let gz = gzip(&log_file);
    let name_gz = "AWSLogs/123456789012/CloudTrail/us-east-1/2024/05/01/123456789012_CloudTrail_us-east-1_20240501T1200Z_a1b2c3d4e5f6g7h8.json.gz";
    let name_plain = name_gz.trim_end_matches(".gz");
    let mut g = c.benchmark_group("cloudtrail_log_file");
    g.throughput(both(1000, gz.len()));
    g.bench_function("aiops_decode_gzip", |b| {
        b.iter(|| {
            let mut out = DecodeOutput::default();
            decode_file(name_gz, &gz, 0, &limits, &mut out);
            black_box(out.events.len())
        })
    });
    g.throughput(both(1000, log_file.len()));
    g.bench_function("aiops_decode_plain", |b| {
        b.iter(|| {
            let mut out = DecodeOutput::default();
            decode_file(name_plain, &log_file, 0, &limits, &mut out);
            black_box(out.events.len())
        })
    });
    g.bench_function("serde_json_value_plain", |b| {
        b.iter(|| {
            let v: serde_json::Value = serde_json::from_slice(&log_file).unwrap_or_default();
            black_box(v["Records"].as_array().map_or(0, Vec::len))
        })
    });
    g.finish();
}

/// One log line of log group `group`, shape `i % 5`.
fn log_line(group: usize, i: usize, rng: &mut Rng) -> String {
    match i % 5 {
        0 => format!(
            r#"{{"level":"info","ts":"2024-05-01T12:00:{:02}.{:03}Z","caller":"handler/orders.go:{}","msg":"order processed","order_id":"{}","customer":"c-{}","items":{},"latency_ms":{}}}"#,
            i % 60,
            rng.below(1000),
            40 + group % 200,
            rng.uuid(),
            rng.below(100_000),
            rng.below(12),
            rng.below(900)
        ),
        1 => format!(
            r#"{} - - [01/May/2024:12:00:{:02} +0000] "GET /api/v1/items/{}?page={} HTTP/1.1" 200 {} "-" "Mozilla/5.0 (X11; Linux x86_64)" rt={}.{:03}"#,
            rng.ip(),
            i % 60,
            rng.below(1_000_000),
            rng.below(20),
            rng.below(90_000),
            rng.below(2),
            rng.below(1000)
        ),
        2 => format!("START RequestId: {} Version: $LATEST", rng.uuid()),
        3 => format!(
            "REPORT RequestId: {}\tDuration: {}.{:02} ms\tBilled Duration: {} ms\tMemory Size: 512 MB\tMax Memory Used: {} MB",
            rng.uuid(),
            rng.below(3000),
            rng.below(100),
            rng.below(3000) + 1,
            rng.below(400) + 60
        ),
        _ => format!(
            "2024-05-01 12:00:{:02},{:03} ERROR [pool-{}-thread-{}] c.e.payments.Gateway - charge failed for account {}: java.net.SocketTimeoutException: Read timed out after {} ms",
            i % 60,
            rng.below(1000),
            rng.below(8),
            rng.below(64),
            rng.below(1_000_000),
            rng.below(30_000)
        ),
    }
}

fn bench_cwlogs(c: &mut Criterion) {
    let limits = DecodeLimits::default();
    let pos = position();
    let mut rng = Rng(0x0c10_0d10_6500_0001);
    let payloads: Vec<Vec<u8>> = (0..20)
        .map(|p| {
            let events: Vec<String> = (0..50)
                .map(|i| {
                    let msg = serde_json::Value::String(log_line(p, i, &mut rng)).to_string();
                    format!(
                        r#"{{"id":"{}{:016}","timestamp":{},"message":{msg}}}"#,
                        "3798123871236547891239876123987612398761239876",
                        rng.below(10_000_000_000_000_000),
                        1_714_564_800_000 + (p * 50 + i) as u64 * 7
                    )
                })
                .collect();
            let payload = format!(
                r#"{{"messageType":"DATA_MESSAGE","owner":"123456789012","logGroup":"/ecs/service-{p}","logStream":"web/app/{}","subscriptionFilters":["aiops-raw"],"logEvents":[{}]}}"#,
                rng.hex(32),
                events.join(",")
            );
            gzip(payload.as_bytes())
        })
        .collect();
    let elements = 20 * 50;
    let bytes: usize = payloads.iter().map(Vec::len).sum();
    let mut check = DecodeOutput::default();
    for p in &payloads {
        decode_kinesis_record(p, &pos, 0, &limits, &mut check);
    }
    assert_eq!(
        (check.events.len(), check.dead_letters.len()),
        (elements, 0),
        "every generated log event must decode"
    );

    let mut g = c.benchmark_group("cwlogs_subscription");
    g.throughput(both(elements, bytes));
    g.bench_function("aiops_decode", |b| {
        b.iter(|| {
            let mut out = DecodeOutput::default();
            for p in &payloads {
                decode_kinesis_record(p, &pos, 0, &limits, &mut out);
            }
            black_box(out.events.len())
        })
    });
    g.bench_function("gunzip_only", |b| {
        let mut buf = Vec::with_capacity(64 * 1024);
        b.iter(|| {
            let mut n = 0;
            for p in &payloads {
                buf.clear();
                let _ = GzDecoder::new(p.as_slice()).read_to_end(&mut buf);
                n += buf.len();
            }
            black_box(n)
        })
    });
    g.finish();
}

fn bench_kpl(c: &mut Criterion) {
    let limits = DecodeLimits::default();
    let pos = position();
    let bodies = eventbridge_events(100);
    let keys: Vec<String> = (0..100).map(|i| format!("pk-{i}")).collect();
    let parts: Vec<(&str, Option<&str>, &[u8])> = bodies
        .iter()
        .zip(&keys)
        .map(|(b, k)| (k.as_str(), None, b.as_slice()))
        .collect();
    let agg = kpl::aggregate(&parts);
    let mut g = c.benchmark_group("kpl");
    g.throughput(both(parts.len(), agg.len()));
    g.bench_function("deaggregate", |b| {
        b.iter(|| black_box(kpl::deaggregate(&agg).map(|v| v.len()).unwrap_or(0)))
    });
    g.bench_function("deaggregate_decode", |b| {
        b.iter(|| {
            let mut out = DecodeOutput::default();
            decode_kinesis_record(&agg, &pos, 0, &limits, &mut out);
            black_box(out.events.len())
        })
    });
    g.finish();
}

criterion_group!(benches, bench_cloudtrail, bench_cwlogs, bench_kpl);
criterion_main!(benches);
