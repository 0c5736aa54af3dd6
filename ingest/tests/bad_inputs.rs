//! The bad-input corpus: every malformed input becomes dead letters with exact reasons, and
//! good records next to bad ones are still decoded.

mod common;

use aiops_ingest::decode::DecodeLimits;
use common::*;
use std::io::Write;

const GOOD: &str = r#"{"eventID":"e-1","eventName":"DeleteTable","eventSource":"dynamodb.amazonaws.com","eventTime":"2024-03-05T10:00:00Z","awsRegion":"us-east-1","recipientAccountId":"123456789012"}"#;

#[test]
fn gzip_bomb_is_a_dead_letter_not_an_out_of_memory() {
    // 100 MiB of zeros, gzipped (about 100 KB), against a 1 MiB cap.
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let chunk = vec![0u8; 1 << 20];
    for _ in 0..100 {
        enc.write_all(&chunk).unwrap();
    }
    let bomb = enc.finish().unwrap();
    assert!(bomb.len() < 1 << 20, "bomb is {} bytes", bomb.len());
    let limits = DecodeLimits {
        max_decompressed_bytes: 1 << 20,
        max_record_bytes: 1 << 20,
    };
    let out = file_with("bomb.json.gz", &bomb, &limits);
    assert_eq!(out.events.len(), 0);
    assert_eq!(out.dead_letters.len(), 1);
    assert_eq!(
        out.dead_letters[0].reason,
        "gzip payload exceeds 1048576 bytes decompressed (gzip bomb?)"
    );
    assert_eq!(out.dead_letters[0].data, bomb);
    assert_eq!(out.dead_letters[0].position, fpos("bomb.json.gz", 0));
    let out = kinesis_with(&bomb, &kpos("1"), &limits);
    assert_eq!(out.dead_letters.len(), 1);
    assert_eq!(out.dead_letters[0].position, kpos("1"));
}

fn reasons(out: &aiops_ingest::decode::DecodeOutput) -> Vec<&str> {
    out.dead_letters.iter().map(|d| d.reason.as_str()).collect()
}

#[test]
fn truncated_gzip() {
    let z = gzip(GOOD.as_bytes());
    let cut = &z[..z.len() / 2];
    let out = file("cut.json.gz", cut);
    assert_eq!(out.events.len(), 0);
    assert_eq!(
        reasons(&out),
        vec!["truncated or corrupt gzip: incomplete deflate stream"]
    );
    assert_eq!(out.dead_letters[0].data, cut);
    // Only the trailer missing (CRC and length): still truncated.
    let out = kinesis(&z[..z.len() - 4], &kpos("9"));
    assert_eq!(
        reasons(&out),
        vec!["truncated or corrupt gzip: unexpected end of file"]
    );
}

#[test]
fn not_json_and_wrong_shapes() {
    let cases: [(&[u8], &str); 9] = [
        (
            b"hello world",
            "not JSON: expected value at line 1 column 1",
        ),
        (
            b"{\"eventName\": ",
            "not JSON: EOF while parsing a value at line 1 column 14",
        ),
        (
            b"true",
            "JSON of the wrong shape: expected a JSON object, found a boolean",
        ),
        (
            b"\"a string\"",
            "JSON of the wrong shape: expected a JSON object, found a string",
        ),
        (
            b"42",
            "JSON of the wrong shape: expected a JSON object, found a number",
        ),
        (
            b"null",
            "JSON of the wrong shape: expected a JSON object, found null",
        ),
        (
            b"{\"foo\":1}",
            "JSON of the wrong shape: JSON object of unknown shape (keys: foo)",
        ),
        (
            b"{}",
            "JSON of the wrong shape: JSON object of unknown shape (no keys)",
        ),
        (
            br#"{"eventName":["X"],"eventSource":"s","eventTime":"2024-01-01T00:00:00Z"}"#,
            "CloudTrail record has no usable eventName (found an array)",
        ),
    ];
    for (input, reason) in cases {
        let out = file("x.json", input);
        assert_eq!(out.events.len(), 0, "{input:?}");
        assert_eq!(reasons(&out), vec![reason], "{input:?}");
        assert_eq!(out.dead_letters[0].data, input);
        assert_eq!(out.dead_letters[0].position, fpos("x.json", 0));
        let k = kinesis(input, &kpos("5"));
        assert_eq!(reasons(&k), vec![reason], "{input:?}");
        assert_eq!(k.dead_letters[0].position, kpos("5"));
    }
}

#[test]
fn oversized_record() {
    // A 2 MB CloudTrail record (a huge requestParameters) against the 1 MiB default.
    let big = format!(
        r#"{{"eventID":"big","eventName":"PutObject","eventSource":"s3.amazonaws.com","eventTime":"2024-03-05T10:00:00Z","requestParameters":{{"pad":"{}"}}}}"#,
        "x".repeat(2_000_000)
    );
    let n = big.len();
    let reason = format!("record of {n} bytes exceeds the 1048576-byte limit");
    let out = file("big.json", big.as_bytes());
    assert_eq!(out.events.len(), 0);
    assert_eq!(reasons(&out), vec![reason.as_str()]);
    assert_eq!(out.dead_letters[0].data.len(), n);
    let out = kinesis(big.as_bytes(), &kpos("1"));
    assert_eq!(reasons(&out), vec![reason.as_str()]);

    // In a CloudTrail log file, only the oversized element is a dead letter.
    let log = format!(r#"{{"Records":[{GOOD},{big},{GOOD}]}}"#);
    let out = file("log.json", log.as_bytes());
    assert_eq!(out.events.len(), 2);
    assert_eq!(reasons(&out), vec![reason.as_str()]);
    assert_eq!(out.dead_letters[0].data, big.as_bytes());
    assert_eq!(out.dead_letters[0].position, fpos("log.json", 1));
    assert_eq!(out.events[1].position, fpos("log.json", 2));
}

#[test]
fn empty_inputs() {
    for input in [&b""[..], b"  \n\t ", b"\xEF\xBB\xBF"] {
        let out = file("empty.json", input);
        assert_eq!(out.events.len(), 0);
        assert_eq!(reasons(&out), vec!["empty record"], "{input:?}");
        assert_eq!(out.dead_letters[0].data, input);
        let out = kinesis(input, &kpos("3"));
        assert_eq!(reasons(&out), vec!["empty record"], "{input:?}");
    }
    // An empty gzip payload inflates to nothing: still one dead letter.
    let out = file("empty.json.gz", &gzip(b""));
    assert_eq!(reasons(&out), vec!["empty record"]);
}

#[test]
fn invalid_utf8() {
    let mut input = br#"{"eventID":"e","eventName":""#.to_vec();
    input.extend_from_slice(b"\xff\xfe");
    input.extend_from_slice(br#"","eventSource":"s","eventTime":"2024-01-01T00:00:00Z"}"#);
    // Invalid UTF-8 inside a string: replaced, the record kept and marked.
    let out = file("utf8.json", &input);
    assert!(out.dead_letters.is_empty(), "{:?}", out.dead_letters);
    assert_eq!(out.events.len(), 1);
    let ev = &out.events[0];
    assert_eq!(ev.event_id, "e");
    assert_eq!(ev.cloudtrail().unwrap().event_name, "\u{FFFD}\u{FFFD}");
    assert_eq!(ev.decode_warnings, ["invalid UTF-8 replaced with U+FFFD"]);
    // Outside a string it breaks the JSON: a dead letter with the original bytes.
    let bad = b"{\"eventName\":\"X\",\xff}";
    let out = file("utf8.json", bad);
    assert_eq!(out.events.len(), 0);
    assert_eq!(
        reasons(&out),
        vec!["not JSON: key must be a string at line 1 column 18"]
    );
    assert_eq!(out.dead_letters[0].data, bad);
}

#[test]
fn ndjson_with_good_and_bad_lines() {
    let text = format!(
        "{GOOD}\ngarbage line\n\n{}\n[7]\n{}\n{{\"eventName\":\"X\",\"eventSource\":\"s\"}}\n{{\"truncated\":\n",
        GOOD.replace("e-1", "e-2"),
        r#"{"metric_stream_name":"m","account_id":"1","region":"r","namespace":"AWS/EC2","metric_name":"CPUUtilization","dimensions":{},"timestamp":1709632800000,"value":{"max":1,"min":1,"sum":1,"count":1},"unit":"Percent"}"#,
    );
    let out = file("mixed.ndjson", text.as_bytes());
    let ids: Vec<&str> = out.events.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(ids.len(), 3);
    assert_eq!(&ids[..2], ["e-1", "e-2"]);
    assert_eq!(out.events[2].metric().unwrap().metric, "CPUUtilization");
    assert_eq!(
        reasons(&out),
        vec![
            "not JSON: expected value at line 1 column 1",
            "JSON of the wrong shape: expected a JSON object, found a number",
            "CloudTrail record has no eventTime",
            "not JSON: EOF while parsing a value at line 1 column 13",
        ]
    );
    let datas: Vec<&[u8]> = out.dead_letters.iter().map(|d| d.data.as_slice()).collect();
    assert_eq!(
        datas,
        vec![
            &b"garbage line"[..],
            b"7",
            br#"{"eventName":"X","eventSource":"s"}"#,
            br#"{"truncated":"#
        ]
    );
    // Ordinals count every record of the file, events and dead letters alike.
    let event_ordinals: Vec<&str> = out
        .events
        .iter()
        .map(|e| e.position.sequence_number.as_str())
        .collect();
    assert_eq!(event_ordinals, ["0", "2", "4"]);
    let dead_ordinals: Vec<&str> = out
        .dead_letters
        .iter()
        .map(|d| d.position.sequence_number.as_str())
        .collect();
    assert_eq!(dead_ordinals, ["1", "3", "5", "6"]);
}

#[test]
fn cloudtrail_log_file_with_bad_elements() {
    let log = format!(
        r#"{{"Records":[{GOOD}, 7, {{"eventName":"X"}}, {{"eventName":"A","eventSource":"b","eventTime":"2024-13-01T00:00:00Z"}}, {}]}}"#,
        GOOD.replace("e-1", "e-2")
    );
    let out = file("CloudTrail/log.json.gz", &gzip(log.as_bytes()));
    let ids: Vec<&str> = out.events.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(ids, ["e-1", "e-2"]);
    assert_eq!(
        reasons(&out),
        vec![
            "JSON of the wrong shape: expected a JSON object, found a number",
            "CloudTrail record has no eventSource",
            "CloudTrail record has an unparseable eventTime: invalid timestamp \"2024-13-01T00:00:00Z\": date out of range",
        ]
    );
    assert_eq!(out.dead_letters[1].data, br#"{"eventName":"X"}"#);
}

#[test]
fn cloudwatch_logs_payload_with_a_bad_log_event() {
    let payload = r#"{"messageType":"DATA_MESSAGE","owner":"123456789012","logGroup":"/app","logStream":"s1","subscriptionFilters":["f"],"logEvents":[
        {"id":"1","timestamp":1709632800000,"message":"INFO ok"},
        {"id":"2","timestamp":"yesterday","message":"WARN bad ts"},
        {"id":"3","message":"no timestamp"},
        {"id":"4","timestamp":9223372036854775807,"message":"overflow"},
        {"id":"5","timestamp":1709632800001,"message":"{\"eventName\":\"DeleteTrail\",\"eventSource\":\"cloudtrail.amazonaws.com\",\"eventTime\":\"bad\"}"},
        {"id":"6","timestamp":1709632800002,"message":"ERROR fine"}]}"#;
    let out = kinesis(&gzip(payload.as_bytes()), &kpos("11"));
    let ids: Vec<&str> = out.events.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(ids, ["1", "6"]);
    assert_eq!(
        reasons(&out),
        vec![
            "invalid CloudWatch Logs log event: invalid type: string \"yesterday\", expected i64 at line 1 column 33",
            "invalid CloudWatch Logs log event: missing field `timestamp` at line 1 column 35",
            "CloudWatch Logs log event timestamp 9223372036854775807 ms is out of range",
            "CloudTrail record has an unparseable eventTime: invalid timestamp \"bad\": too short",
        ]
    );
    assert!(out.dead_letters.iter().all(|d| d.position == kpos("11")));
}

#[test]
fn unsupported_envelopes() {
    let out = file(
        "m.json",
        br#"{"messageType":"SOMETHING_ELSE","logEvents":[]}"#,
    );
    assert_eq!(
        reasons(&out),
        vec!["unknown CloudWatch Logs messageType \"SOMETHING_ELSE\""]
    );
    let out = file("eb.json", br#"{"version":"0","detail-type":"EC2 Instance State-change Notification","source":"aws.ec2","detail":{"state":"stopped"}}"#);
    assert_eq!(
        reasons(&out),
        vec![
            "unsupported EventBridge detail-type \"EC2 Instance State-change Notification\" (only CloudTrail events are decoded)"
        ]
    );
    let out = file("s3.json", br#"{"Records":[{"eventSource":"aws:s3","eventName":"ObjectCreated:Put","eventTime":"2024-01-01T00:00:00Z","s3":{}}]}"#);
    assert_eq!(
        reasons(&out),
        vec!["unsupported Lambda event record from eventSource \"aws:s3\""]
    );
    let out = file("l.json", br#"{"Records":[{"kinesis":{"data":"@@@","sequenceNumber":"1"},"eventID":"shardId-0:1","eventSourceARN":"arn:aws:kinesis:us-east-1:1:stream/s"}]}"#);
    assert_eq!(
        reasons(&out),
        vec!["invalid base64 in Lambda Kinesis record data: Invalid symbol 64, offset 0."]
    );
    assert_eq!(out.dead_letters[0].data, b"@@@");
    assert_eq!(out.dead_letters[0].position.stream, "s");
    let out = file("a.json", br#"{"awslogs":{"data":"!!"}}"#);
    assert_eq!(
        reasons(&out),
        vec!["invalid base64 in awslogs.data: Invalid symbol 33, offset 0."]
    );
    let out = file("a.json", br#"{"awslogs":{}}"#);
    assert_eq!(
        reasons(&out),
        vec!["Lambda CloudWatch Logs event has no awslogs.data"]
    );
}

#[test]
fn kpl_with_bad_digest_is_a_plain_record() {
    let mut agg = aiops_ingest::decode::kpl::aggregate(&[("pk", None, GOOD.as_bytes())]);
    let out = kinesis(&agg, &kpos("1"));
    assert_eq!(out.events.len(), 1);
    assert_eq!(out.events[0].position.sub_sequence_number, Some(0));
    let last = agg.len() - 1;
    agg[last] ^= 0xff;
    let out = kinesis(&agg, &kpos("1"));
    assert_eq!(out.events.len(), 0);
    assert_eq!(out.dead_letters.len(), 1);
    assert_eq!(out.dead_letters[0].data, agg);
    assert_eq!(out.dead_letters[0].position.sub_sequence_number, None);
    // A valid aggregate (digest and protobuf) without user records: a partition key table only.
    let body = [0x0a, 0x01, b'k'];
    let mut empty = vec![0xF3, 0x89, 0x9A, 0xC2];
    empty.extend_from_slice(&body);
    use md5::Digest;
    empty.extend_from_slice(md5::Md5::digest(body).as_slice());
    let out = kinesis(&empty, &kpos("2"));
    assert_eq!(
        reasons(&out),
        vec!["KPL aggregated record holds no user records"]
    );
    assert_eq!(out.dead_letters[0].data, empty);
}

#[test]
fn nesting_is_bounded() {
    // gzip(gzip(gzip(record))): two gzip layers are followed, a third is refused.
    let two = gzip(&gzip(GOOD.as_bytes()));
    assert_eq!(file("two.gz", &two).events.len(), 1);
    let three = gzip(&two);
    let out = file("three.gz", &three);
    assert_eq!(reasons(&out), vec!["gzip nested more than 2 levels deep"]);
    assert_eq!(out.dead_letters[0].data, three);
    // Envelopes in envelopes: a Lambda event whose data is a Lambda event ... 7 levels deep.
    let mut doc = GOOD.to_string();
    for level in 0..7 {
        doc = format!(
            r#"{{"Records":[{{"kinesis":{{"sequenceNumber":"{level}","data":"{}"}},"eventID":"shardId-0:{level}"}}]}}"#,
            b64(doc.as_bytes())
        );
    }
    let out = file("deep.json", doc.as_bytes());
    assert_eq!(out.events.len(), 0);
    assert_eq!(reasons(&out), vec!["envelopes nested deeper than 6 levels"]);
    assert_eq!(out.dead_letters[0].position.sequence_number, "1");
}

#[test]
fn reasons_are_bounded() {
    let huge = format!(
        r#"{{"messageType":"DATA_MESSAGE","logGroup":"g","logEvents":"{}"}}"#,
        "r".repeat(100_000)
    );
    let out = file("huge.json", huge.as_bytes());
    assert_eq!(out.dead_letters.len(), 1);
    let reason = &out.dead_letters[0].reason;
    assert_eq!(reason.len(), 1024);
    assert!(reason.starts_with("invalid JSON document: invalid type: string \"rrr"));
    assert!(reason.ends_with("r..."));
}
