//! De-aggregation of records written by the Kinesis Producer Library (KPL).
//!
//! Format (KPL aggregation format, <https://github.com/awslabs/amazon-kinesis-producer/blob/master/aggregation-format.md>):
//! the record data is the 4 magic bytes `F3 89 9A C2`, then a protobuf (proto2)
//! `AggregatedRecord`, then the 16-byte MD5 digest of that protobuf. A record is aggregated
//! only when it starts with the magic, is longer than 20 bytes, its digest matches and its
//! protobuf is well formed; anything else is a plain record and passes through unchanged.
//!
//! ```text
//! message AggregatedRecord {
//!   repeated string partition_key_table     = 1;
//!   repeated string explicit_hash_key_table = 2;
//!   repeated Record records                 = 3;
//! }
//! message Record {
//!   required uint64 partition_key_index     = 1;
//!   optional uint64 explicit_hash_key_index = 2;
//!   required bytes  data                    = 3;
//!   repeated Tag    tags                    = 4;
//! }
//! ```

use super::protobuf::{ProtoError, Reader, expect_len, expect_varint};
use md5::{Digest, Md5};
use thiserror::Error;

/// The 4 bytes every KPL-aggregated record starts with.
pub const KPL_MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];

const DIGEST_LEN: usize = 16;

/// Why a Kinesis record is not (a well-formed) KPL aggregate. Every variant means: treat the
/// record as a plain record.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KplError {
    /// The data does not start with [`KPL_MAGIC`].
    #[error("no KPL magic prefix")]
    NoMagic,
    /// The data is not longer than 20 bytes (magic + digest).
    #[error("{0} bytes is too short for a KPL aggregated record")]
    TooShort(usize),
    /// The trailing 16 bytes are not the MD5 digest of the protobuf part.
    #[error("KPL MD5 digest mismatch")]
    DigestMismatch,
    /// The protobuf part is not a valid `AggregatedRecord`.
    #[error("malformed KPL AggregatedRecord: {0}")]
    Protobuf(String),
}

impl From<ProtoError> for KplError {
    fn from(e: ProtoError) -> Self {
        KplError::Protobuf(e.to_string())
    }
}

/// One user record inside a KPL aggregate, borrowing from the aggregate's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserRecord<'a> {
    /// The user record's partition key (from the partition key table).
    pub partition_key: &'a str,
    /// The explicit hash key (decimal 128-bit), when the producer set one.
    pub explicit_hash_key: Option<&'a str>,
    /// The user record's data.
    pub data: &'a [u8],
    /// Index of the user record in the aggregate: its KPL sub-sequence number.
    pub sub_sequence_number: u64,
}

/// Whether `data` passes the cheap checks for aggregation (magic and length); the digest and
/// protobuf are checked by [`deaggregate`].
pub fn has_kpl_magic(data: &[u8]) -> bool {
    data.len() > KPL_MAGIC.len() + DIGEST_LEN && data.starts_with(&KPL_MAGIC)
}

fn table_str(field: u32, bytes: &[u8]) -> Result<&str, KplError> {
    std::str::from_utf8(bytes)
        .map_err(|_| KplError::Protobuf(format!("field {field} is not valid UTF-8")))
}

/// De-aggregates a Kinesis record's data into its user records, in order, with
/// sub-sequence numbers `0..n`.
///
/// Memory is bounded by the input: user records borrow from `data`, and there can be at most
/// `data.len() / 2` of them.
///
/// # Errors
/// A [`KplError`] when the data is not a well-formed aggregate (no magic, too short, digest
/// mismatch, malformed protobuf, table index out of range, missing required field,
/// non-UTF-8 key); the caller then treats the data as one plain record.
pub fn deaggregate(data: &[u8]) -> Result<Vec<UserRecord<'_>>, KplError> {
    if !data.starts_with(&KPL_MAGIC) {
        return Err(KplError::NoMagic);
    }
    if data.len() <= KPL_MAGIC.len() + DIGEST_LEN {
        return Err(KplError::TooShort(data.len()));
    }
    let split = data.len() - DIGEST_LEN;
    let (body, digest) = (&data[KPL_MAGIC.len()..split], &data[split..]);
    if Md5::digest(body).as_slice() != digest {
        return Err(KplError::DigestMismatch);
    }

    let mut partition_keys: Vec<&str> = Vec::new();
    let mut hash_keys: Vec<&str> = Vec::new();
    let mut records: Vec<&[u8]> = Vec::new();
    let mut reader = Reader::new(body);
    while let Some((field, value)) = reader.next_field()? {
        match field {
            1 => partition_keys.push(table_str(1, expect_len(1, value)?)?),
            2 => hash_keys.push(table_str(2, expect_len(2, value)?)?),
            3 => records.push(expect_len(3, value)?),
            _ => {}
        }
    }

    let mut out = Vec::with_capacity(records.len());
    for (index, record) in records.into_iter().enumerate() {
        let mut pk_index = None;
        let mut ehk_index = None;
        let mut payload = None;
        let mut r = Reader::new(record);
        while let Some((field, value)) = r.next_field()? {
            match field {
                1 => pk_index = Some(expect_varint(1, value)?),
                2 => ehk_index = Some(expect_varint(2, value)?),
                3 => payload = Some(expect_len(3, value)?),
                4 => {
                    expect_len(4, value)?;
                }
                _ => {}
            }
        }
        let pk_index = pk_index.ok_or_else(|| {
            KplError::Protobuf(format!("record {index} has no partition_key_index"))
        })?;
        let payload =
            payload.ok_or_else(|| KplError::Protobuf(format!("record {index} has no data")))?;
        let partition_key = usize::try_from(pk_index)
            .ok()
            .and_then(|i| partition_keys.get(i))
            .copied()
            .ok_or_else(|| {
                KplError::Protobuf(format!(
                    "record {index}: partition_key_index {pk_index} out of range ({} keys)",
                    partition_keys.len()
                ))
            })?;
        let explicit_hash_key = match ehk_index {
            None => None,
            Some(i) => Some(
                usize::try_from(i)
                    .ok()
                    .and_then(|i| hash_keys.get(i))
                    .copied()
                    .ok_or_else(|| {
                        KplError::Protobuf(format!(
                            "record {index}: explicit_hash_key_index {i} out of range ({} keys)",
                            hash_keys.len()
                        ))
                    })?,
            ),
        };
        out.push(UserRecord {
            partition_key,
            explicit_hash_key,
            data: payload,
            sub_sequence_number: index as u64,
        });
    }
    Ok(out)
}

/// Encodes user records `(partition key, explicit hash key, data)` as one KPL aggregate
/// (magic + `AggregatedRecord` + MD5). Each distinct key is stored once in its table.
///
/// Used to build test inputs and by tools that replay data; the decoder never needs it.
pub fn aggregate(records: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
    fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8 & 0x7f) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    fn len_field(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
        varint(out, (u64::from(field) << 3) | 2);
        varint(out, bytes.len() as u64);
        out.extend_from_slice(bytes);
    }
    let mut pks: Vec<&str> = Vec::new();
    let mut ehks: Vec<&str> = Vec::new();
    let mut body = Vec::new();
    let mut recs = Vec::new();
    for &(pk, ehk, data) in records {
        let pi = pks.iter().position(|k| *k == pk).unwrap_or_else(|| {
            pks.push(pk);
            pks.len() - 1
        });
        let mut rec = Vec::with_capacity(data.len() + 8);
        varint(&mut rec, 1 << 3);
        varint(&mut rec, pi as u64);
        if let Some(ehk) = ehk {
            let ei = ehks.iter().position(|k| *k == ehk).unwrap_or_else(|| {
                ehks.push(ehk);
                ehks.len() - 1
            });
            varint(&mut rec, 2 << 3);
            varint(&mut rec, ei as u64);
        }
        len_field(&mut rec, 3, data);
        recs.push(rec);
    }
    for pk in &pks {
        len_field(&mut body, 1, pk.as_bytes());
    }
    for ehk in &ehks {
        len_field(&mut body, 2, ehk.as_bytes());
    }
    for rec in &recs {
        len_field(&mut body, 3, rec);
    }
    let mut out = Vec::with_capacity(body.len() + 20);
    out.extend_from_slice(&KPL_MAGIC);
    out.extend_from_slice(&body);
    out.extend_from_slice(Md5::digest(&body).as_slice());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_aggregate() {
        let agg = aggregate(&[
            ("pk-a", None, b"one"),
            ("pk-b", Some("123"), b"two"),
            ("pk-a", Some("123"), b""),
        ]);
        let recs = deaggregate(&agg).unwrap();
        assert_eq!(
            recs,
            vec![
                UserRecord {
                    partition_key: "pk-a",
                    explicit_hash_key: None,
                    data: b"one",
                    sub_sequence_number: 0
                },
                UserRecord {
                    partition_key: "pk-b",
                    explicit_hash_key: Some("123"),
                    data: b"two",
                    sub_sequence_number: 1
                },
                UserRecord {
                    partition_key: "pk-a",
                    explicit_hash_key: Some("123"),
                    data: b"",
                    sub_sequence_number: 2
                },
            ]
        );
    }

    #[test]
    fn non_aggregates_are_reported_as_plain() {
        assert_eq!(deaggregate(b"{\"a\":1}"), Err(KplError::NoMagic));
        let mut short = KPL_MAGIC.to_vec();
        short.extend([0u8; 16]);
        assert_eq!(deaggregate(&short), Err(KplError::TooShort(20)));
        let mut agg = aggregate(&[("k", None, b"data")]);
        let last = agg.len() - 1;
        agg[last] ^= 1;
        assert_eq!(deaggregate(&agg), Err(KplError::DigestMismatch));
    }

    #[test]
    fn bad_protobuf_with_a_valid_digest_is_an_error() {
        // Record referencing partition key index 5 of an empty table.
        let body = [0x1a, 0x04, 0x08, 0x05, 0x1a, 0x00];
        let mut data = KPL_MAGIC.to_vec();
        data.extend_from_slice(&body);
        data.extend_from_slice(Md5::digest(body).as_slice());
        assert_eq!(
            deaggregate(&data),
            Err(KplError::Protobuf(
                "record 0: partition_key_index 5 out of range (0 keys)".into()
            ))
        );
        // Record without data.
        let body = [0x0a, 0x01, b'k', 0x1a, 0x02, 0x08, 0x00];
        let mut data = KPL_MAGIC.to_vec();
        data.extend_from_slice(&body);
        data.extend_from_slice(Md5::digest(body).as_slice());
        assert_eq!(
            deaggregate(&data),
            Err(KplError::Protobuf("record 0 has no data".into()))
        );
    }
}
