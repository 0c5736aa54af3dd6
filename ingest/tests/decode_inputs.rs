//! Every input shape of DESIGN §2, decoded from the synthetic fixtures (tests/fixtures/synthetic)
//! and from inputs built here, with exact expected values.

mod common;

use aiops_core::{EventBody, LogLevel, Position, Principal, ResourceRef, stable_hash};
use aiops_ingest::decode::kpl::aggregate;
use common::*;
use serde_json::Value;
use std::collections::BTreeMap;

fn synthetic(name: &str) -> Vec<u8> {
    read(&fixture(&format!("synthetic/{name}")))
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

#[test]
fn eventbridge_cloudtrail_event() {
    let name = "eventbridge_ssm_delete_parameter.json";
    let out = file(name, &synthetic(name));
    assert!(out.dead_letters.is_empty(), "{:?}", out.dead_letters);
    assert_eq!(out.events.len(), 1);
    let ev = &out.events[0];
    assert_eq!(ev.event_id, "3c1f0d2a-5b6e-4f70-8a91-b2c3d4e5f601");
    assert_eq!(ev.event_time, 1_709_630_129_250_000);
    assert_eq!(ev.ingest_time, INGEST);
    // No recipientAccountId: the caller's account.
    assert_eq!(ev.account.as_deref(), Some("210987654321"));
    assert_eq!(ev.region.as_deref(), Some("eu-west-1"));
    assert_eq!(ev.position, fpos(name, 0));
    let EventBody::Cloudtrail(ct) = &ev.body else {
        panic!("not CloudTrail")
    };
    assert_eq!(ct.event_source, "ssm.amazonaws.com");
    assert_eq!(ct.event_name, "DeleteParameter");
    assert_eq!(ct.event_type.as_deref(), Some("AwsApiCall"));
    assert_eq!(
        ct.principal,
        Principal {
            principal_type: Some("AssumedRole".into()),
            arn: Some("arn:aws:sts::210987654321:assumed-role/DeployRole/deployer".into()),
            account_id: Some("210987654321".into()),
            session_issuer_arn: Some("arn:aws:iam::210987654321:role/DeployRole".into()),
            invoked_by: None,
            user_name: Some("DeployRole".into()),
        }
    );
    assert_eq!(ct.source_ip.as_deref(), Some("198.51.100.23"));
    assert_eq!(ct.user_agent.as_deref(), Some("aws-cli/2.15.0"));
    assert_eq!(ct.error_code, None);
    assert_eq!(ct.read_only, Some(false));
    assert_eq!(
        ct.resources,
        vec![ResourceRef {
            resource_type: Some("AWS::SSM::Parameter".into()),
            id: Some("db-password".into()),
            arn: Some("arn:aws:ssm:eu-west-1:210987654321:parameter/app/prod/db-password".into()),
        }]
    );
    assert_eq!(
        json(ct.request_parameters.as_deref().unwrap()),
        json(r#"{"name":"/app/prod/db-password"}"#)
    );
    assert_eq!(ct.response_elements, None);
    assert_eq!(ct.recipient_account_id, None);
}

#[test]
fn eventbridge_envelope_supplies_account_and_region() {
    let ev = br#"{"version":"0","detail-type":"AWS Console Sign In via CloudTrail","source":"aws.signin","account":"999988887777","region":"ap-south-1","resources":["arn:aws:iam::999988887777:root"],
        "detail":{"eventName":"ConsoleLogin","eventSource":"signin.amazonaws.com","eventTime":"2024-03-05T10:00:00Z","userIdentity":{"type":"Root"}}}"#;
    let out = kinesis(ev, &kpos("100"));
    assert_eq!(out.events.len(), 1, "{:?}", out.dead_letters);
    let e = &out.events[0];
    assert_eq!(e.account.as_deref(), Some("999988887777"));
    assert_eq!(e.region.as_deref(), Some("ap-south-1"));
    assert_eq!(e.position, kpos("100"));
    // No eventID: the hex stable hash of the detail's bytes.
    let start = ev.windows(9).position(|w| w == b"\"detail\":").unwrap() + 9;
    let detail = &ev[start..ev.len() - 1];
    assert_eq!(e.event_id, format!("{:016x}", stable_hash(&[detail])));
    assert_eq!(
        e.cloudtrail().unwrap().principal.principal_type.as_deref(),
        Some("Root")
    );
}

fn check_log_file_events(out: &aiops_ingest::decode::DecodeOutput, pos: impl Fn(u64) -> Position) {
    assert!(out.dead_letters.is_empty(), "{:?}", out.dead_letters);
    assert_eq!(out.events.len(), 4);
    let ev = &out.events;
    for (i, e) in ev.iter().enumerate() {
        assert_eq!(e.position, pos(i as u64));
    }
    let times: Vec<i64> = ev.iter().map(|e| e.event_time).collect();
    assert_eq!(
        times,
        [
            1_709_632_800_000_000,
            1_709_632_801_000_000,
            1_709_632_802_000_000,
            1_709_632_803_000_000
        ]
    );

    let ct0 = ev[0].cloudtrail().unwrap();
    assert_eq!(ct0.event_name, "TerminateInstances");
    assert_eq!(
        ct0.principal,
        Principal {
            principal_type: Some("AWSService".into()),
            invoked_by: Some("autoscaling.amazonaws.com".into()),
            ..Default::default()
        }
    );
    assert_eq!(ct0.principal.key(), "autoscaling.amazonaws.com");
    assert_eq!(ev[0].account.as_deref(), Some("123456789012"));

    let ct1 = ev[1].cloudtrail().unwrap();
    assert_eq!(ct1.event_name, "ConsoleLogin");
    assert_eq!(
        ct1.read_only,
        Some(false),
        "readOnly given as the string \"false\""
    );
    assert_eq!(ct1.error_code, None);
    assert_eq!(ct1.error_message.as_deref(), Some("Failed authentication"));
    assert_eq!(ct1.request_parameters, None);
    assert_eq!(
        ct1.response_elements.as_deref(),
        Some(r#"{"ConsoleLogin":"Failure"}"#)
    );
    assert_eq!(ct1.principal.principal_type.as_deref(), Some("Root"));
    // No recipientAccountId: userIdentity.accountId.
    assert_eq!(ev[1].account.as_deref(), Some("123456789012"));

    let ct2 = ev[2].cloudtrail().unwrap();
    assert_eq!(ct2.error_code.as_deref(), Some("AccessDenied"));
    assert_eq!(ct2.read_only, Some(true));
    assert_eq!(
        ct2.principal.account_id.as_deref(),
        Some("ANONYMOUS_PRINCIPAL")
    );
    assert_eq!(ct2.principal.key(), "AWSAccount:ANONYMOUS_PRINCIPAL");
    assert_eq!(
        ct2.resources,
        vec![
            ResourceRef {
                resource_type: Some("AWS::S3::Object".into()),
                id: Some("logo.png".into()),
                arn: Some("arn:aws:s3:::public-assets/logo.png".into()),
            },
            ResourceRef {
                resource_type: Some("AWS::S3::Bucket".into()),
                id: Some("public-assets".into()),
                arn: Some("arn:aws:s3:::public-assets".into()),
            },
        ]
    );

    // No userIdentity, no eventID, no account at all, requestParameters a string.
    let ct3 = ev[3].cloudtrail().unwrap();
    assert_eq!(ct3.principal, Principal::default());
    assert_eq!(ct3.request_parameters.as_deref(), Some("\"opaque\""));
    assert_eq!(ct3.read_only, None);
    assert_eq!(ev[3].account, None);
    assert_eq!(ev[3].event_id.len(), 16);
    assert!(ev[3].event_id.bytes().all(|b| b.is_ascii_hexdigit()));
}

#[test]
fn cloudtrail_log_file_plain_gzip_and_in_kinesis() {
    let name = "cloudtrail_log_file.json";
    let plain = synthetic(name);
    check_log_file_events(&file(name, &plain), |i| fpos(name, i));
    let gz_name = "AWSLogs/123456789012/CloudTrail/us-east-1/2024/03/05/file.json.gz";
    check_log_file_events(&file(gz_name, &gzip(&plain)), |i| fpos(gz_name, i));
    // A gzip CloudTrail log file as the data of one Kinesis record: all share its position.
    check_log_file_events(&kinesis(&gzip(&plain), &kpos("77")), |_| kpos("77"));
    // The stable hash of the id-less record is the same whichever way it arrived.
    let a = file(name, &plain);
    let b = kinesis(&gzip(&plain), &kpos("1"));
    assert_eq!(a.events[3].event_id, b.events[3].event_id);
}

#[test]
fn digest_files_are_skipped_and_counted() {
    let out = file("digest.json", &synthetic("digest.json"));
    assert_eq!(
        (out.digest_files, out.events.len(), out.dead_letters.len()),
        (1, 0, 0)
    );
    let out = file("digest.json.gz", &gzip(&synthetic("digest.json")));
    assert_eq!(
        (out.digest_files, out.events.len(), out.dead_letters.len()),
        (1, 0, 0)
    );
    // By name, whatever the content.
    let out = file(
        "AWSLogs/1/CloudTrail-Digest/us-east-1/2024/03/05/1_CloudTrail-Digest_us-east-1_t_us-east-1_20240305T100000Z.json.gz",
        b"\x1f\x8b garbage",
    );
    assert_eq!(
        (out.digest_files, out.events.len(), out.dead_letters.len()),
        (1, 0, 0)
    );
}

fn metric_id(parts: &[&str]) -> String {
    let bytes: Vec<&[u8]> = parts.iter().map(|p| p.as_bytes()).collect();
    format!("{:016x}", stable_hash(&bytes))
}

#[test]
fn metric_stream_lines() {
    let name = "metric_stream.ndjson";
    let out = file(name, &synthetic(name));
    assert!(out.dead_letters.is_empty(), "{:?}", out.dead_letters);
    assert_eq!(out.events.len(), 2);
    let e0 = &out.events[0];
    let m0 = e0.metric().unwrap();
    assert_eq!(e0.event_time, 1_709_632_800_000_000);
    assert_eq!(e0.account.as_deref(), Some("123456789012"));
    assert_eq!(e0.region.as_deref(), Some("us-east-1"));
    assert_eq!(e0.position, fpos(name, 0));
    assert_eq!(m0.namespace, "AWS/EC2");
    assert_eq!(m0.metric, "CPUUtilization");
    assert_eq!(m0.unit.as_deref(), Some("Percent"));
    assert_eq!(m0.metric_stream_name.as_deref(), Some("ops-stream"));
    assert_eq!(m0.value.max, 91.5);
    assert_eq!(m0.value.min, 12.25);
    assert_eq!(m0.value.sum, 210.0);
    assert_eq!(m0.value.count, 4.0);
    assert_eq!(
        e0.event_id,
        metric_id(&[
            "ops-stream",
            "123456789012",
            "us-east-1",
            "AWS/EC2",
            "CPUUtilization",
            "InstanceId",
            "i-0123456789abcdef0",
            "1709632800000"
        ])
    );
    let e1 = &out.events[1];
    let m1 = e1.metric().unwrap();
    let dims: BTreeMap<String, String> = [
        (
            "LoadBalancer".to_string(),
            "app/web/0123456789abcdef".to_string(),
        ),
        (
            "TargetGroup".to_string(),
            "targetgroup/web/0123456789abcdef".to_string(),
        ),
    ]
    .into();
    assert_eq!(m1.dimensions, dims);
    // Dimensions hashed in sorted order.
    assert_eq!(
        e1.event_id,
        metric_id(&[
            "ops-stream",
            "123456789012",
            "us-east-1",
            "AWS/ApplicationELB",
            "HTTPCode_Target_5XX_Count",
            "LoadBalancer",
            "app/web/0123456789abcdef",
            "TargetGroup",
            "targetgroup/web/0123456789abcdef",
            "1709632860000"
        ])
    );
    assert_eq!(e1.position, fpos(name, 1));
    // The same lines as one Kinesis record.
    let k = kinesis(&synthetic(name), &kpos("5"));
    assert_eq!(k.events.len(), 2);
    assert_eq!(k.events[1].event_id, e1.event_id);
    // A line missing its value.
    let bad = br#"{"metric_stream_name":"s","namespace":"AWS/EC2","metric_name":"CPUUtilization","timestamp":1}"#;
    let out = file("m.json", bad);
    assert_eq!(
        out.dead_letters[0].reason,
        "metric stream line has no value"
    );
}

const CT_LINE: &str = r#"{"eventID":"k-1","eventName":"DeleteFunction20150331","eventSource":"lambda.amazonaws.com","eventTime":"2024-03-05T10:00:00Z","awsRegion":"us-east-1","recipientAccountId":"123456789012","userIdentity":{"type":"IAMUser","arn":"arn:aws:iam::123456789012:user/ops","accountId":"123456789012","userName":"ops"},"requestParameters":{"functionName":"billing"},"responseElements":null}"#;

#[test]
fn kpl_aggregated_kinesis_record_of_json_user_records() {
    let metric = r#"{"metric_stream_name":"s","account_id":"1","region":"r","namespace":"AWS/Lambda","metric_name":"Errors","dimensions":{"FunctionName":"billing"},"timestamp":1709632800000,"value":{"max":1,"min":0,"sum":3,"count":5},"unit":"Count"}"#;
    let eb = String::from_utf8(synthetic("eventbridge_ssm_delete_parameter.json")).unwrap();
    let agg = aggregate(&[
        ("pk1", None, CT_LINE.as_bytes()),
        (
            "pk2",
            Some("170141183460469231731687303715884105728"),
            metric.as_bytes(),
        ),
        ("pk1", None, b"not json"),
        ("pk3", None, &gzip(eb.as_bytes())),
    ]);
    let pos = kpos("49590338271490256608559692538361571095921575989136588898");
    let out = kinesis(&agg, &pos);
    let ids: Vec<&str> = out.events.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(ids[0], "k-1");
    assert_eq!(ids[2], "3c1f0d2a-5b6e-4f70-8a91-b2c3d4e5f601");
    assert_eq!(out.events[1].source(), aiops_core::Source::Metrics);
    let subs: Vec<Option<u64>> = out
        .events
        .iter()
        .map(|e| e.position.sub_sequence_number)
        .collect();
    assert_eq!(subs, [Some(0), Some(1), Some(3)]);
    assert!(
        out.events
            .iter()
            .all(|e| e.position.sequence_number == pos.sequence_number)
    );
    assert_eq!(out.dead_letters.len(), 1);
    assert_eq!(out.dead_letters[0].data, b"not json");
    assert_eq!(out.dead_letters[0].position.sub_sequence_number, Some(2));
}

#[test]
fn lambda_kinesis_event_with_json_and_aggregated_data() {
    let agg = aggregate(&[
        ("a", None, CT_LINE.as_bytes()),
        ("b", None, CT_LINE.replace("k-1", "k-2").as_bytes()),
    ]);
    let event = format!(
        r#"{{"Records":[
        {{"kinesis":{{"kinesisSchemaVersion":"1.0","partitionKey":"p","sequenceNumber":"111","data":"{}","approximateArrivalTimestamp":1709632800.5}},
          "eventSource":"aws:kinesis","eventVersion":"1.0","eventID":"shardId-000000000004:111","eventName":"aws:kinesis:record","awsRegion":"us-east-1",
          "eventSourceARN":"arn:aws:kinesis:us-east-1:123456789012:stream/raw-events"}},
        {{"kinesis":{{"partitionKey":"p","sequenceNumber":"222","data":"{}"}},"eventSource":"aws:kinesis","eventID":"shardId-000000000004:222",
          "eventSourceARN":"arn:aws:kinesis:us-east-1:123456789012:stream/raw-events"}}]}}"#,
        b64(CT_LINE.as_bytes()),
        b64(&agg)
    );
    let out = file("lambda.json", event.as_bytes());
    assert!(out.dead_letters.is_empty(), "{:?}", out.dead_letters);
    let got: Vec<(&str, Position)> = out
        .events
        .iter()
        .map(|e| (e.event_id.as_str(), e.position.clone()))
        .collect();
    let p = |seq: &str, sub| Position {
        stream: "raw-events".into(),
        shard_id: "shardId-000000000004".into(),
        sequence_number: seq.into(),
        sub_sequence_number: sub,
    };
    assert_eq!(
        got,
        vec![
            ("k-1", p("111", None)),
            ("k-1", p("222", Some(0))),
            ("k-2", p("222", Some(1)))
        ]
    );
    let ct = out.events[0].cloudtrail().unwrap();
    assert_eq!(ct.event_name, "DeleteFunction20150331");
    assert_eq!(ct.principal.user_name.as_deref(), Some("ops"));
    assert_eq!(
        ct.request_parameters.as_deref(),
        Some(r#"{"functionName":"billing"}"#)
    );
}

fn cwl_payload() -> String {
    let ct_msg = serde_json::to_string(CT_LINE).unwrap();
    format!(
        r#"{{"messageType":"DATA_MESSAGE","owner":"123456789012","logGroup":"/aws/lambda/billing","logStream":"2024/03/05/[$LATEST]abc","subscriptionFilters":["all"],"logEvents":[
        {{"id":"37000000000000000000000000000000000000000000000000000000","timestamp":1709632800123,"message":"2024-03-05T10:00:00.123Z abc WARN retrying payment 3/5"}},
        {{"id":"37000000000000000000000000000000000000000000000000000001","timestamp":1709632800124,"message":"{{\"level\":\"error\",\"msg\":\"db timeout\",\"eventSource\":\"app\"}}"}},
        {{"id":"37000000000000000000000000000000000000000000000000000002","timestamp":1709632800125,"message":{ct_msg}}},
        {{"timestamp":1709632800126,"message":"plain line"}}]}}"#
    )
}

fn check_cwl_events(out: &aiops_ingest::decode::DecodeOutput, pos: impl Fn(u64) -> Position) {
    assert!(out.dead_letters.is_empty(), "{:?}", out.dead_letters);
    assert_eq!(out.events.len(), 4);
    let e = &out.events;
    let l0 = e[0].log().unwrap();
    assert_eq!(
        e[0].event_id,
        "37000000000000000000000000000000000000000000000000000000"
    );
    assert_eq!(e[0].event_time, 1_709_632_800_123_000);
    assert_eq!(e[0].account.as_deref(), Some("123456789012"));
    assert_eq!(l0.log_group, "/aws/lambda/billing");
    assert_eq!(l0.log_stream, "2024/03/05/[$LATEST]abc");
    assert_eq!(
        l0.message,
        "2024-03-05T10:00:00.123Z abc WARN retrying payment 3/5"
    );
    assert_eq!(l0.level, Some(LogLevel::Warn));
    // A JSON log line that mentions eventSource but is no CloudTrail record stays a log line.
    let l1 = e[1].log().expect("JSON app log stays a log line");
    assert_eq!(
        l1.message,
        r#"{"level":"error","msg":"db timeout","eventSource":"app"}"#
    );
    assert_eq!(l1.level, Some(LogLevel::Error));
    // The CloudTrail record delivered through CloudWatch Logs.
    let ct = e[2]
        .cloudtrail()
        .expect("CloudTrail message decoded as CloudTrail");
    assert_eq!(e[2].event_id, "k-1");
    assert_eq!(e[2].event_time, 1_709_632_800_000_000);
    assert_eq!(ct.event_name, "DeleteFunction20150331");
    // No id: hash of group, stream, timestamp and message.
    assert_eq!(
        e[3].event_id,
        format!(
            "{:016x}",
            stable_hash(&[
                b"/aws/lambda/billing",
                b"2024/03/05/[$LATEST]abc",
                b"1709632800126",
                b"plain line"
            ])
        )
    );
    assert_eq!(e[3].log().unwrap().level, None);
    for (i, ev) in e.iter().enumerate() {
        assert_eq!(ev.position, pos(i as u64));
    }
}

#[test]
fn cloudwatch_logs_payload_gzip_plain_and_lambda() {
    let payload = cwl_payload();
    check_cwl_events(&kinesis(&gzip(payload.as_bytes()), &kpos("8")), |_| {
        kpos("8")
    });
    check_cwl_events(&kinesis(payload.as_bytes(), &kpos("8")), |_| kpos("8"));
    check_cwl_events(&file("cwl.json", payload.as_bytes()), |i| {
        fpos("cwl.json", i)
    });
    let lambda = format!(
        r#"{{"awslogs":{{"data":"{}"}}}}"#,
        b64(&gzip(payload.as_bytes()))
    );
    check_cwl_events(&file("awslogs.json", lambda.as_bytes()), |i| {
        fpos("awslogs.json", i)
    });
    check_cwl_events(&kinesis(lambda.as_bytes(), &kpos("9")), |_| kpos("9"));
}

#[test]
fn ndjson_cloudtrail_records_in_one_kinesis_record() {
    let text = format!("{CT_LINE}\r\n{}\r\n", CT_LINE.replace("k-1", "k-2"));
    let out = kinesis(text.as_bytes(), &kpos("3"));
    let ids: Vec<&str> = out.events.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(ids, ["k-1", "k-2"]);
    assert!(out.dead_letters.is_empty());
}
