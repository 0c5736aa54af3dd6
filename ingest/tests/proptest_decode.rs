//! The decoders never panic: arbitrary bytes, and mutations of valid inputs (byte flips,
//! truncations, insertions), into `decode_file`, `decode_kinesis_record` and the KPL
//! de-aggregator (also with a valid MD5 over a random protobuf, so the protobuf reader itself
//! is exercised past the digest check).

mod common;

use aiops_ingest::decode::kpl::{KPL_MAGIC, aggregate, deaggregate};
use aiops_ingest::decode::{DecodeLimits, DecodeOutput};
use common::*;
use md5::{Digest, Md5};
use proptest::prelude::*;

const CT: &str = r#"{"eventID":"p-1","eventName":"StopInstances","eventSource":"ec2.amazonaws.com","eventTime":"2024-03-05T10:00:00Z","readOnly":"false","userIdentity":{"type":"AssumedRole","arn":"arn:aws:sts::1:assumed-role/R/s","sessionContext":{"sessionIssuer":{"arn":"arn:aws:iam::1:role/R"}}},"requestParameters":{"instancesSet":{"items":[{"instanceId":"i-1"}]}},"responseElements":null,"resources":[{"type":"AWS::EC2::Instance","ARN":"arn:aws:ec2:us-east-1:1:instance/i-1"}]}"#;

fn seeds() -> Vec<Vec<u8>> {
    let cwl = format!(
        r#"{{"messageType":"DATA_MESSAGE","owner":"1","logGroup":"g","logStream":"s","subscriptionFilters":[],"logEvents":[{{"id":"1","timestamp":1709632800000,"message":"ERROR x"}},{{"id":"2","timestamp":1709632800001,"message":{}}}]}}"#,
        serde_json::to_string(CT).unwrap()
    );
    let eb = format!(
        r#"{{"version":"0","detail-type":"AWS API Call via CloudTrail","source":"aws.ec2","account":"1","region":"us-east-1","detail":{CT}}}"#
    );
    let log_file = format!(r#"{{"Records":[{CT},{CT}]}}"#);
    let metric = r#"{"metric_stream_name":"s","account_id":"1","region":"r","namespace":"AWS/EC2","metric_name":"CPUUtilization","dimensions":{"InstanceId":"i-1"},"timestamp":1709632800000,"value":{"max":1,"min":0,"sum":2,"count":3},"unit":"Percent"}"#;
    let agg = aggregate(&[
        ("a", None, CT.as_bytes()),
        ("b", Some("1"), metric.as_bytes()),
    ]);
    let lambda = format!(
        r#"{{"Records":[{{"kinesis":{{"sequenceNumber":"1","data":"{}"}},"eventID":"shardId-0:1","eventSourceARN":"arn:aws:kinesis:r:1:stream/s"}}]}}"#,
        b64(&agg)
    );
    let awslogs = format!(
        r#"{{"awslogs":{{"data":"{}"}}}}"#,
        b64(&gzip(cwl.as_bytes()))
    );
    vec![
        CT.as_bytes().to_vec(),
        format!("{CT}\n{metric}\n{CT}").into_bytes(),
        gzip(cwl.as_bytes()),
        eb.into_bytes(),
        gzip(log_file.as_bytes()),
        agg,
        lambda.into_bytes(),
        awslogs.into_bytes(),
    ]
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Truncate(usize),
    Insert(usize, u8),
    Remove(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Remove),
    ]
}

fn apply(mut data: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let n = data.len().max(1);
        match *m {
            Mutation::Flip(i, b) => {
                if !data.is_empty() {
                    data[i % n] ^= b | 1;
                }
            }
            Mutation::Truncate(i) => data.truncate(i % n),
            Mutation::Insert(i, b) => data.insert(i % (data.len() + 1), b),
            Mutation::Remove(i) => {
                if !data.is_empty() {
                    data.remove(i % n);
                }
            }
        }
    }
    data
}

/// Runs both entry points; checks the invariants that hold for any input.
fn decode_everything(data: &[u8]) {
    let limits = DecodeLimits {
        max_decompressed_bytes: 1 << 20,
        max_record_bytes: 64 * 1024,
    };
    let out: DecodeOutput = file_with("prop.json", data, &limits);
    for d in &out.dead_letters {
        assert!(!d.reason.is_empty());
    }
    let pos = kpos("123");
    let out = kinesis_with(data, &pos, &limits);
    for d in &out.dead_letters {
        assert!(!d.reason.is_empty());
    }
    for e in &out.events {
        assert!(!e.event_id.is_empty());
        assert_eq!(e.ingest_time, INGEST);
    }
    let _ = deaggregate(data);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        decode_everything(&data);
    }

    #[test]
    fn arbitrary_bytes_with_magic_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut gz = vec![0x1f, 0x8b];
        gz.extend_from_slice(&data);
        decode_everything(&gz);
        let mut kpl = KPL_MAGIC.to_vec();
        kpl.extend_from_slice(&data);
        decode_everything(&kpl);
    }

    #[test]
    fn random_protobuf_with_valid_digest_never_panics(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut data = KPL_MAGIC.to_vec();
        data.extend_from_slice(&body);
        data.extend_from_slice(Md5::digest(&body).as_slice());
        if let Ok(records) = deaggregate(&data) {
            for (i, r) in records.iter().enumerate() {
                prop_assert_eq!(r.sub_sequence_number, i as u64);
            }
        }
        decode_everything(&data);
    }

    #[test]
    fn mutated_valid_inputs_never_panic(
        seed in 0usize..8,
        mutations in proptest::collection::vec(mutation(), 1..6),
    ) {
        let data = apply(seeds()[seed].clone(), &mutations);
        decode_everything(&data);
    }

    #[test]
    fn mutated_aggregates_with_recomputed_digest_never_panic(
        mutations in proptest::collection::vec(mutation(), 1..6),
    ) {
        let agg = seeds()[5].clone();
        let body = apply(agg[4..agg.len() - 16].to_vec(), &mutations);
        let mut data = KPL_MAGIC.to_vec();
        data.extend_from_slice(&body);
        data.extend_from_slice(Md5::digest(&body).as_slice());
        decode_everything(&data);
    }
}

#[test]
fn seeds_decode_cleanly() {
    // The unmutated seeds are valid: events, no dead letters.
    let counts: Vec<(usize, usize)> = seeds()
        .iter()
        .map(|s| {
            let out = kinesis(s, &kpos("1"));
            (out.events.len(), out.dead_letters.len())
        })
        .collect();
    assert_eq!(
        counts,
        [
            (1, 0),
            (3, 0),
            (2, 0),
            (1, 0),
            (2, 0),
            (2, 0),
            (2, 0),
            (2, 0)
        ]
    );
}
