//! The input shapes users bring from elsewhere (issue 17): bare arrays of records, `aws
//! cloudtrail lookup-events` output, Firehose output (values back to back, several gzip
//! members), CloudTrail Insights records, invalid UTF-8, mistyped fields and binary files.
//! Fixtures under `tests/fixtures/shapes/` (synthetic, modelled on the AWS formats).

mod common;

use aiops_core::{Event, InsightFields, Position, Principal, ResourceRef};
use aiops_ingest::decode::DecodeOutput;
use common::*;
use serde_json::{Value, json};

fn shape(name: &str) -> Vec<u8> {
    read(&fixture(&format!("shapes/{name}")))
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

/// 2024-03-05T10:00:00Z in microseconds.
const T10: i64 = 1_709_632_800_000_000;
const SEC: i64 = 1_000_000;

fn ids(out: &DecodeOutput) -> Vec<&str> {
    out.events.iter().map(|e| e.event_id.as_str()).collect()
}

fn names(out: &DecodeOutput) -> Vec<&str> {
    out.events
        .iter()
        .map(|e| e.cloudtrail().unwrap().event_name.as_str())
        .collect()
}

fn reasons(out: &DecodeOutput) -> Vec<&str> {
    out.dead_letters.iter().map(|d| d.reason.as_str()).collect()
}

fn seqs(positions: impl Iterator<Item = Position>) -> Vec<String> {
    positions.map(|p| p.sequence_number).collect()
}

fn concat_gzip(members: &[&[u8]]) -> Vec<u8> {
    members.iter().flat_map(|m| gzip(m)).collect()
}

fn check_bare_array(out: &DecodeOutput, pos: impl Fn(u64) -> Position) {
    assert!(out.dead_letters.is_empty(), "{:?}", out.dead_letters);
    assert_eq!(
        ids(out),
        [
            "a1000000-0000-4000-8000-000000000001",
            "a1000000-0000-4000-8000-000000000002",
            "a1000000-0000-4000-8000-000000000003"
        ]
    );
    assert_eq!(
        names(out),
        ["StopLogging", "TerminateInstances", "DescribeInstances"]
    );
    let times: Vec<i64> = out.events.iter().map(|e| e.event_time).collect();
    assert_eq!(times, [T10 + SEC, T10 + 2 * SEC, T10 + 3 * SEC]);
    for (i, e) in out.events.iter().enumerate() {
        assert_eq!(e.position, pos(i as u64));
        assert_eq!(e.account.as_deref(), Some("111122223333"));
        assert_eq!(e.region.as_deref(), Some("us-east-1"));
        assert!(e.decode_warnings.is_empty());
        let ct = e.cloudtrail().unwrap();
        assert_eq!(ct.event_category.as_deref(), Some("Management"));
        assert!(!ct.is_insight());
        assert_eq!(
            ct.principal.arn.as_deref(),
            Some("arn:aws:iam::111122223333:user/alice")
        );
    }
    let term = out.events[1].cloudtrail().unwrap();
    assert_eq!(term.read_only, Some(false));
    assert_eq!(
        json(term.request_parameters.as_deref().unwrap()),
        json!({"instancesSet": {"items": [{"instanceId": "i-0a1b2c3d4e5f60718"}]}})
    );
    assert_eq!(out.events[2].cloudtrail().unwrap().read_only, Some(true));
}

#[test]
fn bare_array_of_records_plain_gzip_and_in_kinesis() {
    let name = "bare_array_records.json";
    let data = shape(name);
    check_bare_array(&file(name, &data), |i| fpos(name, i));
    check_bare_array(&file("x.json.gz", &gzip(&data)), |i| fpos("x.json.gz", i));
    check_bare_array(&kinesis(&gzip(&data), &kpos("77")), |_| kpos("77"));
}

#[test]
fn bare_array_of_eventbridge_events_and_bad_elements() {
    let fh = String::from_utf8(shape("firehose_eventbridge.json")).unwrap();
    let third = fh.lines().nth(1).unwrap();
    let text = format!(r#"[{third}, 7, {{"foo":1}}, [], {third}]"#);
    let out = file("arr.json", text.as_bytes());
    assert_eq!(names(&out), ["GetBucketAcl", "GetBucketAcl"]);
    assert_eq!(
        seqs(out.events.iter().map(|e| e.position.clone())),
        ["0", "4"]
    );
    assert_eq!(
        reasons(&out),
        [
            "JSON of the wrong shape: expected a JSON object, found a number",
            "JSON of the wrong shape: JSON object of unknown shape (keys: foo)",
            "JSON of the wrong shape: expected a JSON object, found an array",
        ]
    );
    let datas: Vec<&[u8]> = out.dead_letters.iter().map(|d| d.data.as_slice()).collect();
    assert_eq!(datas, [&b"7"[..], br#"{"foo":1}"#, b"[]"]);
    assert_eq!(
        seqs(out.dead_letters.iter().map(|d| d.position.clone())),
        ["1", "2", "3"]
    );
    // An empty array holds nothing: no event, no dead letter.
    let out = file("empty.json", b" [ ] ");
    assert!(out.events.is_empty() && out.dead_letters.is_empty());
}

#[test]
fn lookup_events_output() {
    let name = "lookup_events.json";
    let out = file(name, &shape(name));
    assert!(out.dead_letters.is_empty(), "{:?}", out.dead_letters);
    assert_eq!(
        ids(&out),
        [
            "b2000000-0000-4000-8000-000000000001",
            "b2000000-0000-4000-8000-000000000002"
        ]
    );
    assert_eq!(names(&out), ["DeleteDBInstance", "ListBuckets"]);
    let del = &out.events[0];
    assert_eq!(del.event_time, T10 + 3600 * SEC);
    assert_eq!(del.position, fpos(name, 0));
    assert_eq!(del.region.as_deref(), Some("eu-west-1"));
    assert_eq!(del.account.as_deref(), Some("111122223333"));
    assert!(del.decode_warnings.is_empty());
    let ct = del.cloudtrail().unwrap();
    assert_eq!(ct.event_source, "rds.amazonaws.com");
    assert_eq!(
        ct.principal,
        Principal {
            principal_type: Some("AssumedRole".into()),
            arn: Some("arn:aws:sts::111122223333:assumed-role/DBARole/bob".into()),
            account_id: Some("111122223333".into()),
            session_issuer_arn: Some("arn:aws:iam::111122223333:role/DBARole".into()),
            invoked_by: None,
            user_name: Some("DBARole".into()),
        }
    );
    assert_eq!(ct.read_only, Some(false));
    assert_eq!(ct.error_code, None);
    assert_eq!(
        json(ct.request_parameters.as_deref().unwrap()),
        json!({"dBInstanceIdentifier": "orders-db", "skipFinalSnapshot": true})
    );
    assert_eq!(out.events[1].position, fpos(name, 1));
    assert_eq!(out.events[1].event_time, T10 + 3540 * SEC);
}

#[test]
fn lookup_events_pages_and_bad_elements() {
    let page = String::from_utf8(shape("lookup_events.json")).unwrap();
    // Two pages saved one after the other (`aws ... >> file`), then one with bad elements.
    let bad = r#"{"Events":[{"EventId":"x","EventName":"DeleteBucket"},{"CloudTrailEvent":"not json"},{"CloudTrailEvent":"{\"eventName\":\"DeleteBucket\",\"eventSource\":\"s3.amazonaws.com\",\"eventTime\":1709632800,\"eventID\":\"f-1\"}"}]}"#;
    let text = format!("{page}{page}{bad}");
    let out = file("pages.json", text.as_bytes());
    assert_eq!(
        names(&out),
        [
            "DeleteDBInstance",
            "ListBuckets",
            "DeleteDBInstance",
            "ListBuckets",
            "DeleteBucket"
        ]
    );
    let last = &out.events[4];
    assert_eq!(last.event_id, "f-1");
    assert_eq!(last.event_time, T10);
    assert_eq!(
        last.decode_warnings,
        ["eventTime: number read as epoch seconds"]
    );
    assert_eq!(
        reasons(&out),
        [
            "lookup-events element has no CloudTrailEvent",
            "not JSON: expected ident at line 1 column 2",
        ]
    );
    assert_eq!(
        out.dead_letters[0].data,
        br#"{"EventId":"x","EventName":"DeleteBucket"}"#
    );
    assert_eq!(
        seqs(out.dead_letters.iter().map(|d| d.position.clone())),
        ["4", "5"]
    );
}

fn check_firehose_eventbridge(out: &DecodeOutput, pos: impl Fn(u64) -> Position) {
    assert!(out.dead_letters.is_empty(), "{:?}", out.dead_letters);
    assert_eq!(
        ids(out),
        [
            "c3000000-0000-4000-8000-000000000011",
            "c3000000-0000-4000-8000-000000000012",
            "c3000000-0000-4000-8000-000000000013"
        ]
    );
    assert_eq!(
        names(out),
        ["DeleteDBInstance", "PutParameter", "GetBucketAcl"]
    );
    let times: Vec<i64> = out.events.iter().map(|e| e.event_time).collect();
    let t12 = T10 + 7200 * SEC;
    assert_eq!(times, [t12, t12 + SEC, t12 + 2 * SEC]);
    for (i, e) in out.events.iter().enumerate() {
        assert_eq!(e.position, pos(i as u64));
        assert_eq!(e.region.as_deref(), Some("eu-west-1"));
    }
}

#[test]
fn firehose_eventbridge_values_back_to_back() {
    let name = "firehose_eventbridge.json";
    let data = shape(name);
    check_firehose_eventbridge(&file(name, &data), |i| fpos(name, i));
    // Firehose with GZIP compression of each record: one gzip member per value.
    let text = String::from_utf8(data.clone()).unwrap();
    let split = text.find("}{\"version\"").unwrap() + 1;
    let (a, rest) = text.split_at(split);
    let gz = concat_gzip(&[a.as_bytes(), rest.as_bytes()]);
    check_firehose_eventbridge(&file("fh.gz", &gz), |i| fpos("fh.gz", i));
    check_firehose_eventbridge(&kinesis(&data, &kpos("9")), |_| kpos("9"));
}

#[test]
fn firehose_value_that_breaks_costs_only_itself() {
    let text = String::from_utf8(shape("firehose_eventbridge.json")).unwrap();
    let split = text.find("}{\"version\"").unwrap() + 1;
    let (a, rest) = text.split_at(split);
    let broken = format!("{a}{{\"version\":\"0\",\"detail\":{{\"eventName\":}}{rest}");
    let out = file("fh.json", broken.as_bytes());
    assert_eq!(
        names(&out),
        ["DeleteDBInstance", "PutParameter", "GetBucketAcl"]
    );
    assert_eq!(
        reasons(&out),
        ["not JSON: expected value at line 1 column 38"]
    );
    assert_eq!(
        out.dead_letters[0].data,
        br#"{"version":"0","detail":{"eventName":}"#
    );
    assert_eq!(
        seqs(out.events.iter().map(|e| e.position.clone())),
        ["0", "2", "3"]
    );
}

/// A CloudWatch Logs subscription DATA_MESSAGE payload (JSON text).
fn cwl(group: &str, events: &[(&str, i64, &str)]) -> String {
    let log_events: Vec<Value> = events
        .iter()
        .map(|(id, ts, msg)| json!({"id": id, "timestamp": ts, "message": msg}))
        .collect();
    json!({
        "messageType": "DATA_MESSAGE",
        "owner": "111122223333",
        "logGroup": group,
        "logStream": "s-1",
        "subscriptionFilters": ["to-firehose"],
        "logEvents": log_events,
    })
    .to_string()
}

#[test]
fn firehose_of_cloudwatch_logs_payloads_in_gzip_members() {
    let trail_msg = r#"{"eventVersion":"1.09","eventTime":"2024-03-05T10:00:00Z","eventSource":"rds.amazonaws.com","eventName":"DeleteDBInstance","awsRegion":"eu-west-1","userIdentity":{"type":"IAMUser","arn":"arn:aws:iam::111122223333:user/bob","accountId":"111122223333"},"requestParameters":{"dBInstanceIdentifier":"orders-db"},"eventID":"g7000000-0000-4000-8000-000000000001","readOnly":false}"#;
    let p1 = cwl(
        "aws-cloudtrail-logs",
        &[(
            "3800000000000000000000000000000000000001",
            1_709_632_800_100,
            trail_msg,
        )],
    );
    let p2 = cwl(
        "/ecs/checkout",
        &[
            (
                "3800000000000000000000000000000000000002",
                1_709_632_801_000,
                "INFO started",
            ),
            (
                "3800000000000000000000000000000000000003",
                1_709_632_802_000,
                "ERROR db down",
            ),
        ],
    );
    let control = r#"{"messageType":"CONTROL_MESSAGE","owner":"CloudwatchLogs","logGroup":"","logStream":"","subscriptionFilters":[],"logEvents":[]}"#;
    let gz = concat_gzip(&[p1.as_bytes(), control.as_bytes(), p2.as_bytes()]);
    let out = file("firehose/2024/03/05/10/cwl-1", &gz);
    assert!(out.dead_letters.is_empty(), "{:?}", out.dead_letters);
    assert_eq!(out.control_messages, 1);
    assert_eq!(
        ids(&out),
        [
            "g7000000-0000-4000-8000-000000000001",
            "3800000000000000000000000000000000000002",
            "3800000000000000000000000000000000000003"
        ]
    );
    let ct = out.events[0].cloudtrail().unwrap();
    assert_eq!(ct.event_name, "DeleteDBInstance");
    assert_eq!(out.events[0].event_time, T10);
    let msgs: Vec<&str> = out.events[1..]
        .iter()
        .map(|e| e.log().unwrap().message.as_str())
        .collect();
    assert_eq!(msgs, ["INFO started", "ERROR db down"]);
    assert_eq!(
        out.events[2].log().unwrap().log_group,
        "/ecs/checkout".to_owned()
    );
}

#[test]
fn insights_records_are_events_of_their_own_kind() {
    let name = "insights_log_file.json";
    let out = file(name, &shape(name));
    assert!(out.dead_letters.is_empty(), "{:?}", out.dead_letters);
    assert_eq!(out.events.len(), 2);
    let start = &out.events[0];
    assert_eq!(start.event_id, "d4000000-0000-4000-8000-000000000001");
    assert_eq!(start.event_time, T10 + 3 * 3600 * SEC + 5 * 60 * SEC);
    assert_eq!(start.account.as_deref(), Some("111122223333"));
    assert_eq!(start.region.as_deref(), Some("us-east-1"));
    assert_eq!(start.position, fpos(name, 0));
    assert!(start.decode_warnings.is_empty());
    let ct = start.cloudtrail().unwrap();
    assert!(ct.is_insight());
    assert_eq!(ct.event_name, "TerminateInstances");
    assert_eq!(ct.event_source, "ec2.amazonaws.com");
    assert_eq!(ct.event_type.as_deref(), Some("AwsCloudTrailInsight"));
    assert_eq!(ct.event_category.as_deref(), Some("Insight"));
    assert_eq!(ct.principal, Principal::default());
    assert_eq!(ct.error_code, None);
    // Never a mutating call for any change logic.
    assert_eq!(ct.read_only, Some(true));
    assert_eq!(ct.resources, Vec::<ResourceRef>::new());
    assert_eq!(
        ct.insight.as_deref(),
        Some(&InsightFields {
            state: Some("Start".into()),
            insight_type: Some("ApiCallRateInsight".into()),
            error_code: None,
            shared_event_id: Some("d4000000-0000-4000-8000-0000000000aa".into()),
            baseline_average: Some(0.0104166667),
            insight_average: Some(12.5),
            baseline_duration_minutes: Some(10080.0),
            insight_duration_minutes: Some(1.0),
        })
    );
    let end = out.events[1].cloudtrail().unwrap();
    assert_eq!(end.event_name, "GetRole");
    assert_eq!(end.event_source, "iam.amazonaws.com");
    // The error of an error-rate Insight is not an error of this record.
    assert_eq!(end.error_code, None);
    assert_eq!(
        end.insight.as_deref(),
        Some(&InsightFields {
            state: Some("End".into()),
            insight_type: Some("ApiErrorRateInsight".into()),
            error_code: Some("AccessDenied".into()),
            shared_event_id: Some("d4000000-0000-4000-8000-0000000000aa".into()),
            baseline_average: Some(0.25),
            insight_average: Some(40.75),
            baseline_duration_minutes: Some(10083.0),
            insight_duration_minutes: Some(4.0),
        })
    );
}

#[test]
fn insight_via_eventbridge_and_without_api_name() {
    let text = String::from_utf8(shape("insights_log_file.json")).unwrap();
    let doc: Value = json(&text);
    let rec = &doc["Records"][0];
    let eb = json!({"version":"0","detail-type":"AWS Insight via CloudTrail","source":"aws.cloudtrail",
        "account":"111122223333","region":"us-east-1","detail": rec});
    let out = kinesis(eb.to_string().as_bytes(), &kpos("3"));
    assert_eq!(names(&out), ["TerminateInstances"]);
    assert!(out.events[0].cloudtrail().unwrap().is_insight());
    let mut nameless = rec.clone();
    nameless["insightDetails"]
        .as_object_mut()
        .unwrap()
        .remove("eventName");
    let out = file("i.json", nameless.to_string().as_bytes());
    assert_eq!(reasons(&out), ["CloudTrail record has no eventName"]);
}

#[test]
fn mistyped_fields_are_salvaged_and_marked() {
    let name = "salvage_mistyped.ndjson";
    let data = shape(name);
    let out = file(name, &data);
    assert_eq!(
        names(&out),
        [
            "TerminateInstances",
            "DeleteParameter",
            "DeleteDBCluster",
            "DeleteFunction20150331"
        ]
    );
    assert_eq!(
        seqs(out.events.iter().map(|e| e.position.clone())),
        ["0", "1", "2", "5"]
    );
    let w = |e: &Event| e.decode_warnings.clone();

    // A destructive call with a numeric eventTime and a string userIdentity: a normal event.
    let term = &out.events[0];
    assert_eq!(term.event_id, "e5000000-0000-4000-8000-000000000001");
    assert_eq!(term.event_time, T10);
    assert_eq!(
        w(term),
        [
            "eventTime: number read as epoch seconds",
            "userIdentity: expected an object, found a string; kept as the principal"
        ]
    );
    let ct = term.cloudtrail().unwrap();
    assert_eq!(
        ct.principal,
        Principal {
            arn: Some("arn:aws:iam::111122223333:user/mallory".into()),
            ..Principal::default()
        }
    );
    assert_eq!(
        ct.resources,
        [ResourceRef {
            resource_type: Some("AWS::EC2::Instance".into()),
            id: Some("i-0f1e2d3c4b5a69788".into()),
            arn: Some("arn:aws:ec2:us-east-1:111122223333:instance/i-0f1e2d3c4b5a69788".into()),
        }]
    );
    assert_eq!(ct.read_only, Some(false));
    assert_eq!(ct.error_code, None);
    assert_eq!(ct.source_ip.as_deref(), Some("203.0.113.66"));
    assert_eq!(term.account.as_deref(), Some("111122223333"));

    let del = &out.events[1];
    assert_eq!(del.event_time, T10 + 1_500_000);
    assert_eq!(
        w(del),
        [
            "eventTime: number read as epoch milliseconds",
            "sourceIPAddress: expected a string, found a number; kept as its JSON text",
            "userIdentity.accountId: expected a string, found a number; kept as its JSON text",
            "readOnly: expected a boolean, found an array; dropped",
        ]
    );
    let ct = del.cloudtrail().unwrap();
    assert_eq!(ct.source_ip.as_deref(), Some("3405803842"));
    assert_eq!(ct.principal.account_id.as_deref(), Some("111122223333"));
    assert_eq!(ct.principal.user_name.as_deref(), Some("mallory"));
    assert_eq!(ct.read_only, None);
    assert_eq!(
        ct.request_parameters.as_deref(),
        Some(r#""name=/prod/payments/db-password""#)
    );

    // An errorCode of the wrong type is kept as text: the failed call never looks successful.
    let failed = &out.events[2];
    assert_eq!(failed.event_time, T10 + 2 * SEC);
    assert_eq!(
        failed.cloudtrail().unwrap().error_code.as_deref(),
        Some(r#"{"code":"AccessDenied"}"#)
    );
    assert_eq!(
        w(failed),
        [
            "errorCode: expected a string, found an object; kept as its JSON text",
            "eventTime: string of digits read as epoch seconds"
        ]
    );

    // EventBridge envelope whose detail has a numeric eventTime.
    let func = &out.events[3];
    assert_eq!(func.event_time, T10 + 6 * SEC);
    assert_eq!(func.region.as_deref(), Some("us-east-1"));
    assert_eq!(w(func), ["eventTime: number read as epoch seconds"]);

    // No usable time, no event name: dead letters, each costing only its own line.
    assert_eq!(
        reasons(&out),
        [
            "CloudTrail record has no usable eventTime (found an object)",
            "CloudTrail record has no eventName"
        ]
    );
    let lines: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
    assert_eq!(out.dead_letters[0].data, lines[3]);
    assert_eq!(out.dead_letters[1].data, lines[4]);
    assert_eq!(
        seqs(out.dead_letters.iter().map(|d| d.position.clone())),
        ["3", "4"]
    );

    // The same records as elements of a log file, salvaged alike.
    let elems: Vec<&str> = std::str::from_utf8(&data)
        .unwrap()
        .lines()
        .take(3)
        .collect();
    let log = format!(r#"{{"Records":[{}]}}"#, elems.join(","));
    let out = file("log.json", log.as_bytes());
    assert_eq!(
        names(&out),
        ["TerminateInstances", "DeleteParameter", "DeleteDBCluster"]
    );
    assert_eq!(out.events[0].decode_warnings.len(), 2);
}

#[test]
fn implausible_numeric_time_is_a_dead_letter() {
    let rec = br#"{"eventName":"DeleteBucket","eventSource":"s3.amazonaws.com","eventTime":12345}"#;
    let out = file("t.json", rec);
    assert_eq!(
        reasons(&out),
        ["CloudTrail record has no usable eventTime (found a number)"]
    );
    assert_eq!(out.dead_letters[0].data, rec);
}

#[test]
fn invalid_utf8_in_a_cloudwatch_logs_payload_marks_only_its_event() {
    let mut payload = cwl(
        "/ecs/checkout",
        &[
            ("1", 1_709_632_800_000, "INFO ok"),
            ("2", 1_709_632_801_000, "ERROR caf@ closed"),
            ("3", 1_709_632_802_000, "INFO ok again"),
        ],
    )
    .into_bytes();
    // A Latin-1 "é" (0xE9) where the UTF-8 text had "@".
    let at = payload.iter().position(|&b| b == b'@').unwrap();
    payload[at] = 0xE9;
    for out in [
        file("cwl.gz", &gzip(&payload)),
        kinesis(&gzip(&payload), &kpos("4")),
    ] {
        assert!(out.dead_letters.is_empty(), "{:?}", out.dead_letters);
        assert_eq!(ids(&out), ["1", "2", "3"]);
        let msgs: Vec<&str> = out
            .events
            .iter()
            .map(|e| e.log().unwrap().message.as_str())
            .collect();
        assert_eq!(
            msgs,
            ["INFO ok", "ERROR caf\u{FFFD} closed", "INFO ok again"]
        );
        let warned: Vec<usize> = out.events.iter().map(|e| e.decode_warnings.len()).collect();
        assert_eq!(warned, [0, 1, 0]);
        assert_eq!(
            out.events[1].decode_warnings,
            ["invalid UTF-8 replaced with U+FFFD"]
        );
    }
}

#[test]
fn invalid_utf8_in_an_ndjson_export_keeps_the_destructive_call() {
    let lines = [
        r#"{"eventID":"h-1","eventName":"GetObject","eventSource":"s3.amazonaws.com","eventTime":"2024-03-05T10:00:00Z"}"#,
        r#"{"eventID":"h-2","eventName":"DeleteBucket","eventSource":"s3.amazonaws.com","eventTime":"2024-03-05T10:00:01Z","userAgent":"Jos@ CLI","requestParameters":{"bucketName":"invoices"},"resources":[{"type":"AWS::S3::Bucket","ARN":"arn:aws:s3:::invoices"}]}"#,
        r#"{"eventID":"h-3","eventName":"GetObject","eventSource":"s3.amazonaws.com","eventTime":"2024-03-05T10:00:02Z"}"#,
    ];
    let mut data = lines.join("\n").into_bytes();
    let at = data.iter().position(|&b| b == b'@').unwrap();
    data[at] = 0xE9;
    let out = file("export.ndjson", &data);
    assert!(out.dead_letters.is_empty(), "{:?}", out.dead_letters);
    assert_eq!(ids(&out), ["h-1", "h-2", "h-3"]);
    let del = &out.events[1];
    assert_eq!(del.decode_warnings, ["invalid UTF-8 replaced with U+FFFD"]);
    let ct = del.cloudtrail().unwrap();
    assert_eq!(ct.event_name, "DeleteBucket");
    assert_eq!(ct.user_agent.as_deref(), Some("Jos\u{FFFD} CLI"));
    assert_eq!(ct.resources[0].id.as_deref(), Some("invoices"));
    assert!(out.events[0].decode_warnings.is_empty());
    assert!(out.events[2].decode_warnings.is_empty());
}

#[test]
fn a_binary_file_is_one_dead_letter() {
    let mut data = b"PK\x03\x04\x14\x00\x00\x00".to_vec();
    for _ in 0..50 {
        data.extend_from_slice(b"\n{\"eventName\":\"X\"}\n\x00\x01garbage");
    }
    let out = file("archive.zip", &data);
    assert_eq!(out.events.len(), 0);
    assert_eq!(
        reasons(&out),
        ["binary data (NUL byte at offset 5), not JSON text"]
    );
    assert_eq!(out.dead_letters[0].data, data);
    assert_eq!(out.dead_letters[0].position, fpos("archive.zip", 0));
    // Inflated from gzip, the dead letter carries the gzip bytes.
    let gz = gzip(&data);
    let out = file("archive.gz", &gz);
    assert_eq!(out.dead_letters.len(), 1);
    assert_eq!(out.dead_letters[0].data, gz);
}

fn utf16(text: &str, big_endian: bool, bom: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let units = bom
        .then_some(0xFEFF_u16)
        .into_iter()
        .chain(text.encode_utf16());
    for u in units {
        out.extend_from_slice(&if big_endian {
            u.to_be_bytes()
        } else {
            u.to_le_bytes()
        });
    }
    out
}

#[test]
fn utf16_text_as_windows_powershell_writes_it() {
    let page = String::from_utf8(shape("lookup_events.json")).unwrap();
    for (big_endian, bom) in [(false, true), (true, true), (false, false), (true, false)] {
        let data = utf16(&page, big_endian, bom);
        let out = file("lookup.json", &data);
        assert!(out.dead_letters.is_empty(), "{:?}", out.dead_letters);
        assert_eq!(names(&out), ["DeleteDBInstance", "ListBuckets"]);
        assert!(out.events.iter().all(|e| e.decode_warnings.is_empty()));
    }
    // An unpaired surrogate inside a string: replaced, its event marked.
    let rec = r#"{"eventID":"u-1","eventName":"DeleteBucket","eventSource":"s3.amazonaws.com","eventTime":"2024-03-05T10:00:00Z","userAgent":"X"}"#;
    let mut data = utf16(rec, false, true);
    let x = data.len() - 6; // the "X" before `"}`
    assert_eq!(&data[x..x + 2], b"X\0");
    data[x..x + 2].copy_from_slice(&0xD800_u16.to_le_bytes());
    let out = file("u.json", &data);
    assert_eq!(ids(&out), ["u-1"]);
    assert_eq!(
        out.events[0].cloudtrail().unwrap().user_agent.as_deref(),
        Some("\u{FFFD}")
    );
    assert_eq!(
        out.events[0].decode_warnings,
        ["invalid UTF-16 replaced with U+FFFD"]
    );
}

#[test]
fn eventbridge_envelope_salvage_keeps_the_detail_type_check() {
    // Not a CloudTrail event, and a field of an unexpected type: still "unsupported".
    let ev = br#"{"version":"0","detail-type":"EC2 Instance State-change Notification","source":"aws.ec2","account":"111122223333","region":"us-east-1","detail":{"instance-id":"i-1","state":"stopped","owner":7}}"#;
    let out = file("ec2.json", ev);
    assert_eq!(
        reasons(&out),
        [
            "unsupported EventBridge detail-type \"EC2 Instance State-change Notification\" (only CloudTrail events are decoded)"
        ]
    );
    assert_eq!(out.dead_letters[0].data, ev);
}
