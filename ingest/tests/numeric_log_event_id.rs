//! Some producers (emulators, re-encoders) write CloudWatch Logs event ids as JSON numbers;
//! AWS writes strings. Both decode, to the same text.

use aiops_core::Position;
use aiops_ingest::decode::{DecodeLimits, DecodeOutput, decode_kinesis_record};

#[test]
fn numeric_and_string_log_event_ids_decode_alike() {
    let payload = br#"{"messageType":"DATA_MESSAGE","owner":"111122223333","logGroup":"/g","logStream":"s","subscriptionFilters":["f"],"logEvents":[{"id":37123456789012345,"timestamp":1714564980000,"message":"ERROR a"},{"id":"37123456789012346","timestamp":1714564981000,"message":"INFO b"}]}"#;
    let mut out = DecodeOutput::default();
    decode_kinesis_record(
        payload,
        &Position::default(),
        0,
        &DecodeLimits::default(),
        &mut out,
    );
    assert_eq!(out.dead_letters.len(), 0, "{:?}", out.dead_letters);
    let ids: Vec<&str> = out.events.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(ids, vec!["37123456789012345", "37123456789012346"]);
}
