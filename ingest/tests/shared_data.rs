//! The public fixtures: every CloudTrail record of ../shared/data/cloudtrail (when present),
//! and the Kinesis / KPL / CloudWatch Logs fixtures (from tests/fixtures, and from
//! ../shared/data/kinesis when present).

mod common;

use aiops_core::{Position, ResourceRef};
use aiops_ingest::decode::kpl::{UserRecord, deaggregate};
use common::*;
use serde_json::Value;

#[test]
fn every_shared_cloudtrail_record_decodes_to_one_event() {
    let Some(data) = shared_data() else { return };
    let dir = data.join("cloudtrail");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    assert_eq!(names.len(), 45, "fixture count changed");
    for name in &names {
        let out = file(name, &read(&dir.join(name)));
        assert_eq!(out.events.len(), 1, "{name}: {:?}", out.dead_letters);
        assert!(
            out.dead_letters.is_empty(),
            "{name}: {:?}",
            out.dead_letters
        );
        let ev = &out.events[0];
        assert_eq!(ev.position, fpos(name, 0), "{name}");
        assert_eq!(ev.ingest_time, INGEST);
        let ct = ev.cloudtrail().unwrap();
        // File names mark failed calls with `_error_`.
        assert_eq!(
            ct.error_code.is_some(),
            name.contains("_error_") || name.contains("LeaveOrganization"),
            "{name}"
        );
    }
}

#[test]
fn shared_cloudtrail_spot_checks() {
    let Some(data) = shared_data() else { return };
    let dir = data.join("cloudtrail");
    let one = |name: &str| {
        let mut out = file(name, &read(&dir.join(name)));
        assert_eq!(out.events.len(), 1, "{name}");
        out.events.remove(0)
    };

    let ev = one("panther_11_TerminateInstances_autoscaling.json");
    let ct = ev.cloudtrail().unwrap();
    assert_eq!(ev.event_id, "58a2708c-ddcf-5852-8ebd-dce9dd447497");
    assert_eq!(ev.event_time, 1_635_551_409_000_000); // "2021-10-29 23:50:09"
    assert_eq!(ev.account.as_deref(), Some("111222333444"));
    assert_eq!(ev.region.as_deref(), Some("us-west-2"));
    assert_eq!(ct.event_name, "TerminateInstances");
    assert_eq!(ct.event_source, "ec2.amazonaws.com");
    assert_eq!(ct.error_code, None);
    assert_eq!(ct.read_only, Some(false));
    assert_eq!(ct.principal.principal_type.as_deref(), Some("AssumedRole"));
    assert_eq!(
        ct.principal.invoked_by.as_deref(),
        Some("autoscaling.amazonaws.com")
    );
    assert_eq!(
        ct.principal.session_issuer_arn.as_deref(),
        Some(
            "arn:aws:iam::111222333444:role/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling"
        )
    );
    assert_eq!(
        ct.principal.user_name.as_deref(),
        Some("AWSServiceRoleForAutoScaling")
    );
    assert_eq!(ct.source_ip.as_deref(), Some("autoscaling.amazonaws.com"));
    let req: Value = serde_json::from_str(ct.request_parameters.as_deref().unwrap()).unwrap();
    assert_eq!(
        req["instancesSet"]["items"][0]["instanceId"],
        "i-0d9853f67e40ab80b"
    );

    let ev = one("panther_02_StopLogging_error_InvalidTrailName.json");
    let ct = ev.cloudtrail().unwrap();
    assert_eq!(ct.event_name, "StopLogging");
    assert_eq!(ct.event_source, "cloudtrail.amazonaws.com");
    assert_eq!(ct.error_code.as_deref(), Some("InvalidTrailNameException"));
    assert_eq!(ct.response_elements, None);
    assert_eq!(ev.event_time, 1_546_300_800_000_000);

    let ev = one("panther_30_ConsoleLogin_root_success.json");
    let ct = ev.cloudtrail().unwrap();
    assert_eq!(ct.event_name, "ConsoleLogin");
    assert_eq!(ct.event_source, "signin.amazonaws.com");
    assert_eq!(ct.event_type.as_deref(), Some("AwsConsoleSignIn"));
    assert_eq!(ct.principal.principal_type.as_deref(), Some("Root"));
    assert_eq!(
        ct.principal.arn.as_deref(),
        Some("arn:aws:iam::123456789012:root")
    );
    assert_eq!(ct.read_only, None);
    assert_eq!(ct.request_parameters, None);
    assert_eq!(
        ct.response_elements.as_deref(),
        Some("{\n    \"ConsoleLogin\": \"Success\"\n  }")
    );
    assert_eq!(ev.event_time, 1_546_300_800_000_000);

    let ev = one("panther_04_PutEventSelectors_disabled.json");
    assert_eq!(ev.event_time, 1_732_557_081_000_000); // "2024-11-25 17:51:21.000000000"
    assert_eq!(ev.cloudtrail().unwrap().event_name, "PutEventSelectors");

    let ev = one("awsdocs_01_DynamoDB_DeleteTable.json");
    let ct = ev.cloudtrail().unwrap();
    assert_eq!(ev.event_id, "a954451c-c2fc-4561-8aea-7a30ba1fdf52");
    assert_eq!(ev.event_time, 1_430_746_700_000_000);
    assert_eq!(ev.account.as_deref(), Some("111122223333"));
    assert_eq!(ct.event_name, "DeleteTable");
    assert_eq!(ct.event_source, "dynamodb.amazonaws.com");
    assert_eq!(ct.read_only, None);
    assert_eq!(ct.principal.principal_type.as_deref(), Some("AssumedRole"));
    assert_eq!(
        ct.principal.session_issuer_arn.as_deref(),
        Some("arn:aws:iam::444455556666:role/admin-role")
    );
    assert_eq!(
        ct.principal.key(),
        "arn:aws:iam::444455556666:role/admin-role"
    );

    let ev = one("panther_15_DeleteBucket.json");
    let ct = ev.cloudtrail().unwrap();
    assert_eq!(ct.error_code, None, "empty errorCode means success");
    assert_eq!(ev.event_time, 1_581_641_034_000_000);

    let ev = one("panther_16_DeleteObjects.json");
    let ct = ev.cloudtrail().unwrap();
    assert_eq!(ct.principal.principal_type.as_deref(), Some("IAMUser"));
    assert_eq!(ct.principal.user_name.as_deref(), Some("Alice"));
    assert_eq!(
        ct.resources,
        vec![ResourceRef {
            resource_type: Some("AWS::S3::Object".into()),
            id: Some("example-object".into()),
            arn: Some("arn:aws:s3:::example-bucket/example-object".into()),
        }]
    );

    let ev = one("panther_22_DeleteDBInstance_error_AccessDenied.json");
    let ct = ev.cloudtrail().unwrap();
    assert_eq!(ct.error_code.as_deref(), Some("AccessDenied"));
    assert_eq!(ct.response_elements, None);
    assert_eq!(ev.event_time, 1_705_329_000_000_000);
}

/// The 100 user records of the awslabs sample: partition key "abc", one explicit hash key,
/// data alternating between the alphabet forwards and backwards.
#[test]
fn sample_lambda_event_yields_the_100_listed_user_records() {
    for dir in kinesis_dirs() {
        let event: Value =
            serde_json::from_slice(&read(&dir.join("SampleLambdaEvent_aggregated.json"))).unwrap();
        let expected: Value = serde_json::from_slice(&read(
            &dir.join("SampleLambdaEvent_aggregated.expected.json"),
        ))
        .unwrap();
        let rec = &event["Records"][0]["kinesis"];
        let raw = unb64(rec["data"].as_str().unwrap());
        assert_eq!(raw.len() as u64, expected["raw_len"].as_u64().unwrap());
        assert_eq!(
            hex(&raw[raw.len() - 16..]),
            expected["md5_trailer_hex"].as_str().unwrap()
        );

        let users = deaggregate(&raw).unwrap();
        assert_eq!(
            users.len() as u64,
            expected["n_user_records"].as_u64().unwrap()
        );
        let ehk = expected["explicit_hash_keys"][0].as_str().unwrap();
        let forwards = "abcdefghijklmnopqrstuvwxyz";
        let backwards: String = forwards.chars().rev().collect();
        for (i, u) in users.iter().enumerate() {
            let data = if i % 2 == 0 {
                forwards
            } else {
                backwards.as_str()
            };
            assert_eq!(
                *u,
                UserRecord {
                    partition_key: "abc",
                    explicit_hash_key: Some(ehk),
                    data: data.as_bytes(),
                    sub_sequence_number: i as u64,
                }
            );
        }
        for (i, first) in expected["first_records"]
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
        {
            assert_eq!(
                users[i].partition_key,
                first["partition_key"].as_str().unwrap()
            );
            assert_eq!(users[i].data, first["data"].as_str().unwrap().as_bytes());
            assert_eq!(
                users[i].explicit_hash_key,
                first["explicit_hash_key"].as_str()
            );
        }

        // Through the whole decoder: each user record is decoded on its own (these are not
        // JSON, so each is one dead letter) at the record's sequence number + sub-sequence.
        let out = file(
            "SampleLambdaEvent_aggregated.json",
            &read(&dir.join("SampleLambdaEvent_aggregated.json")),
        );
        assert_eq!(out.events.len(), 0);
        assert_eq!(out.dead_letters.len(), 100);
        for (i, d) in out.dead_letters.iter().enumerate() {
            assert_eq!(
                d.position,
                Position {
                    stream: "arn:aws:kinesis:EXAMPLE".into(),
                    shard_id: "shardId-000000000000".into(),
                    sequence_number: "49545115243490985018280067714973144582180062593244200961"
                        .into(),
                    sub_sequence_number: Some(i as u64),
                }
            );
            assert_eq!(d.data, users[i].data);
            assert_eq!(d.reason, "not JSON: expected value at line 1 column 1");
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn python_test_vectors_yield_their_user_records() {
    for dir in kinesis_dirs() {
        let doc: Value = serde_json::from_slice(&read(
            &dir.join("kinesis-aggregation_python_test_vectors.json"),
        ))
        .unwrap();
        let vectors = doc["vectors"].as_array().unwrap();
        assert_eq!(vectors.len(), 4);
        for v in vectors {
            let name = v["name"].as_str().unwrap();
            let event = &v["event"];
            let b64data = event["kinesis"]["data"]
                .as_str()
                .or(event["data"].as_str())
                .unwrap();
            let raw = unb64(b64data);
            assert_eq!(raw.len() as u64, v["raw_len"].as_u64().unwrap(), "{name}");
            let expected = v["expected_user_records"].as_array().unwrap();
            let seq = event["kinesis"]["sequenceNumber"]
                .as_str()
                .or(event["kinesisStreamRecordMetadata"]["sequenceNumber"].as_str())
                .unwrap();
            let pos = Position {
                stream: "AggRecordStream".into(),
                shard_id: "shardId-000000000003".into(),
                sequence_number: seq.into(),
                sub_sequence_number: None,
            };
            let out = kinesis(&raw, &pos);
            assert_eq!(out.events.len(), 0, "{name}: user records are plain text");
            if v["aggregated"].as_bool().unwrap() {
                let users = deaggregate(&raw).unwrap();
                assert_eq!(users.len(), expected.len(), "{name}");
                for (i, (u, e)) in users.iter().zip(expected).enumerate() {
                    assert_eq!(
                        u.partition_key,
                        e["partition_key"].as_str().unwrap(),
                        "{name}"
                    );
                    assert_eq!(u.data, e["data"].as_str().unwrap().as_bytes(), "{name}");
                    assert_eq!(
                        u.explicit_hash_key,
                        e["explicit_hash_key"].as_str(),
                        "{name}"
                    );
                    assert_eq!(u.sub_sequence_number, i as u64);
                }
                let subs: Vec<Option<u64>> = out
                    .dead_letters
                    .iter()
                    .map(|d| d.position.sub_sequence_number)
                    .collect();
                assert_eq!(
                    subs,
                    (0..expected.len() as u64).map(Some).collect::<Vec<_>>(),
                    "{name}"
                );
                let datas: Vec<&[u8]> =
                    out.dead_letters.iter().map(|d| d.data.as_slice()).collect();
                let want: Vec<&[u8]> = expected
                    .iter()
                    .map(|e| e["data"].as_str().unwrap().as_bytes())
                    .collect();
                assert_eq!(datas, want, "{name}");
            } else {
                // Not aggregated: passes through unchanged, as one plain record.
                assert!(deaggregate(&raw).is_err(), "{name}");
                assert_eq!(expected.len(), 1);
                assert_eq!(raw, expected[0]["data"].as_str().unwrap().as_bytes());
                assert_eq!(out.dead_letters.len(), 1);
                assert_eq!(out.dead_letters[0].data, raw);
                assert_eq!(out.dead_letters[0].position, pos);
            }
            // The Lambda record shapes also decode as files, at the positions they name.
            if event.get("kinesis").is_some() {
                let out = file(name, event.to_string().as_bytes());
                assert_eq!(out.dead_letters.len(), expected.len(), "{name}");
                for (i, d) in out.dead_letters.iter().enumerate() {
                    assert_eq!(d.position.stream, "AggRecordStream");
                    assert_eq!(d.position.shard_id, "shardId-000000000003");
                    assert_eq!(d.position.sequence_number, seq);
                    assert_eq!(d.position.sub_sequence_number, Some(i as u64));
                }
            }
        }
    }
}

#[test]
fn aws_lambda_go_kinesis_event() {
    for dir in kinesis_dirs() {
        let out = file(
            "aws-lambda-go_kinesis-event.json",
            &read(&dir.join("aws-lambda-go_kinesis-event.json")),
        );
        // Both records hold "Hello World": not JSON, so one dead letter each, at the Kinesis
        // positions the event names.
        assert_eq!(out.events.len(), 0);
        assert_eq!(out.dead_letters.len(), 2);
        let seqs = [
            "49568167373333333333333333333333333333333333333333333333",
            "49568167373333333334444444444444444444444444444444444444",
        ];
        for (d, seq) in out.dead_letters.iter().zip(seqs) {
            assert_eq!(d.data, b"Hello World");
            assert_eq!(
                d.position,
                Position {
                    stream: "simple-stream".into(),
                    shard_id: "shardId-000000000000".into(),
                    sequence_number: seq.into(),
                    sub_sequence_number: None,
                }
            );
            assert_eq!(d.reason, "not JSON: expected value at line 1 column 1");
        }
    }
}

#[test]
fn aws_lambda_go_cloudwatch_logs_event_gives_two_log_events() {
    for dir in kinesis_dirs() {
        let name = "aws-lambda-go_cloudwatch-logs-event.json";
        let out = file(name, &read(&dir.join("cwlogs").join(name)));
        assert!(out.dead_letters.is_empty(), "{:?}", out.dead_letters);
        assert_eq!(out.events.len(), 2);
        for (i, ev) in out.events.iter().enumerate() {
            let log = ev.log().unwrap();
            assert_eq!(ev.event_id, format!("eventId{}", i + 1));
            assert_eq!(ev.event_time, 1_440_442_987_000_000 + i as i64 * 1000);
            assert_eq!(ev.account.as_deref(), Some("123456789123"));
            assert_eq!(ev.region, None);
            assert_eq!(ev.position, fpos(name, i as u64));
            assert_eq!(log.log_group, "testLogGroup");
            assert_eq!(log.log_stream, "testLogStream");
            assert_eq!(log.level, Some(aiops_core::LogLevel::Error));
        }
        assert_eq!(
            out.events[0].log().unwrap().message,
            "[ERROR] First test message"
        );
        assert_eq!(
            out.events[1].log().unwrap().message,
            "[ERROR] Second test message"
        );
    }
}

#[test]
fn cloudwatch_logs_payload_carrying_cloudtrail_gives_three_cloudtrail_events() {
    for dir in kinesis_dirs() {
        let data = read(&dir.join("cwlogs/synthetic_data_message_cloudtrail.kinesis_data.gz"));
        let pos = kpos("42");
        let out = kinesis(&data, &pos);
        assert!(out.dead_letters.is_empty(), "{:?}", out.dead_letters);
        assert_eq!(out.events.len(), 3);
        let want = [
            (
                "10163ed2-2253-469d-a5ee-cbc6651f8934",
                "StopLogging",
                "cloudtrail.amazonaws.com",
                1_722_431_184_000_000,
                "143434273843",
            ),
            (
                "ee73c230-44bc-4492-8542-cfb189eae287",
                "DeleteTrail",
                "cloudtrail.amazonaws.com",
                1_722_430_001_000_000,
                "847129010505",
            ),
            (
                "ded2f5af-f3a5-46d2-a170-a23206a32c36",
                "DeleteFlowLogs",
                "ec2.amazonaws.com",
                1_722_438_469_000_000,
                "498376118699",
            ),
        ];
        for (ev, (id, name, source, time, account)) in out.events.iter().zip(want) {
            let ct = ev
                .cloudtrail()
                .expect("decoded as CloudTrail, not as a log line");
            assert_eq!(ev.event_id, id);
            assert_eq!(ct.event_name, name);
            assert_eq!(ct.event_source, source);
            assert_eq!(ev.event_time, time);
            assert_eq!(ev.account.as_deref(), Some(account));
            assert_eq!(ct.principal.principal_type.as_deref(), Some("IAMUser"));
            assert_eq!(ev.position, pos);
        }
        // The decoded JSON form of the same payload gives the same events.
        let json = file(
            "payload.json",
            &read(&dir.join("cwlogs/synthetic_data_message_cloudtrail.json")),
        );
        assert_eq!(json.events.len(), 3);
        for (a, b) in json.events.iter().zip(&out.events) {
            assert_eq!(a.body, b.body);
            assert_eq!(a.event_time, b.event_time);
        }
    }
}

#[test]
fn control_message_is_counted_and_dropped() {
    for dir in kinesis_dirs() {
        let data = read(&dir.join("cwlogs/synthetic_control_message.kinesis_data.gz"));
        let out = kinesis(&data, &kpos("7"));
        assert_eq!(out.events.len(), 0);
        assert_eq!(out.control_messages, 1);
        assert_eq!(out.dead_letters.len(), 0);
        assert_eq!(out.digest_files, 0);
    }
}
