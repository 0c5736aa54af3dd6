//! A small, bounded reader of the protobuf (proto2) wire format: varints, length-delimited
//! fields, fixed 32/64-bit fields, unknown fields skipped. Groups (deprecated wire types 3 and
//! 4) are rejected. Every read is bounds-checked against the input slice; nothing allocates.
//!
//! Wire format reference: <https://protobuf.dev/programming-guides/encoding/>.

use thiserror::Error;

/// Why a protobuf message could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ProtoError {
    /// The input ends in the middle of a field.
    #[error("truncated protobuf")]
    Truncated,
    /// A varint is longer than 10 bytes or overflows 64 bits.
    #[error("malformed varint")]
    BadVarint,
    /// Field number 0 or above 2^29 - 1.
    #[error("invalid field number")]
    BadFieldNumber,
    /// Wire type 3/4 (groups) or 6/7 (undefined).
    #[error("unsupported wire type {0}")]
    BadWireType(u8),
    /// A known field carries the wrong wire type.
    #[error("field {field} has wire type {wire_type}, expected {expected}")]
    WrongWireType {
        /// The field number.
        field: u32,
        /// The wire type found.
        wire_type: u8,
        /// The wire type expected.
        expected: u8,
    },
}

/// Wire type of varint fields.
pub const VARINT: u8 = 0;
/// Wire type of fixed 64-bit fields.
pub const FIXED64: u8 = 1;
/// Wire type of length-delimited fields (bytes, strings, embedded messages).
pub const LEN: u8 = 2;
/// Wire type of fixed 32-bit fields.
pub const FIXED32: u8 = 5;

/// A field's value as read from the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value<'a> {
    /// Wire type 0.
    Varint(u64),
    /// Wire type 1 (raw little-endian).
    Fixed64(u64),
    /// Wire type 2.
    Len(&'a [u8]),
    /// Wire type 5 (raw little-endian).
    Fixed32(u32),
}

impl Value<'_> {
    /// The wire type of this value.
    pub fn wire_type(&self) -> u8 {
        match self {
            Value::Varint(_) => VARINT,
            Value::Fixed64(_) => FIXED64,
            Value::Len(_) => LEN,
            Value::Fixed32(_) => FIXED32,
        }
    }
}

/// Iterates over the fields of one message.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader over the bytes of one message.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn byte(&mut self) -> Result<u8, ProtoError> {
        let b = *self.buf.get(self.pos).ok_or(ProtoError::Truncated)?;
        self.pos += 1;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64, ProtoError> {
        let mut value = 0u64;
        for i in 0..10u32 {
            let b = self.byte()?;
            if i == 9 && b > 1 {
                return Err(ProtoError::BadVarint);
            }
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(ProtoError::BadVarint)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ProtoError> {
        let end = self.pos.checked_add(n).ok_or(ProtoError::Truncated)?;
        let s = self.buf.get(self.pos..end).ok_or(ProtoError::Truncated)?;
        self.pos = end;
        Ok(s)
    }

    /// The next field as `(field number, value)`, or `None` at the end of the message.
    ///
    /// # Errors
    /// [`ProtoError`] on truncated input, malformed varints, invalid field numbers or wire
    /// types.
    pub fn next_field(&mut self) -> Result<Option<(u32, Value<'a>)>, ProtoError> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let field = u32::try_from(key >> 3).map_err(|_| ProtoError::BadFieldNumber)?;
        if field == 0 || field > (1 << 29) - 1 {
            return Err(ProtoError::BadFieldNumber);
        }
        // Masked to 3 bits, always fits.
        let wire_type = (key & 7) as u8;
        let value = match wire_type {
            VARINT => Value::Varint(self.varint()?),
            FIXED64 => {
                let s = self.take(8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(s);
                Value::Fixed64(u64::from_le_bytes(a))
            }
            LEN => {
                let n = usize::try_from(self.varint()?).map_err(|_| ProtoError::Truncated)?;
                Value::Len(self.take(n)?)
            }
            FIXED32 => {
                let s = self.take(4)?;
                let mut a = [0u8; 4];
                a.copy_from_slice(s);
                Value::Fixed32(u32::from_le_bytes(a))
            }
            other => return Err(ProtoError::BadWireType(other)),
        };
        Ok(Some((field, value)))
    }
}

/// The bytes of a length-delimited value, or [`ProtoError::WrongWireType`].
///
/// # Errors
/// When `value` is not length-delimited.
pub fn expect_len<'a>(field: u32, value: Value<'a>) -> Result<&'a [u8], ProtoError> {
    match value {
        Value::Len(s) => Ok(s),
        other => Err(ProtoError::WrongWireType {
            field,
            wire_type: other.wire_type(),
            expected: LEN,
        }),
    }
}

/// The number of a varint value, or [`ProtoError::WrongWireType`].
///
/// # Errors
/// When `value` is not a varint.
pub fn expect_varint(field: u32, value: Value<'_>) -> Result<u64, ProtoError> {
    match value {
        Value::Varint(v) => Ok(v),
        other => Err(ProtoError::WrongWireType {
            field,
            wire_type: other.wire_type(),
            expected: VARINT,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(buf: &[u8]) -> Result<Vec<(u32, Value<'_>)>, ProtoError> {
        let mut r = Reader::new(buf);
        let mut v = Vec::new();
        while let Some(f) = r.next_field()? {
            v.push(f);
        }
        Ok(v)
    }

    #[test]
    fn reads_every_wire_type() {
        // field 1 varint 300; field 2 bytes "hi"; field 3 fixed32 1; field 4 fixed64 2
        let buf = [
            0x08, 0xac, 0x02, 0x12, 0x02, b'h', b'i', 0x1d, 1, 0, 0, 0, 0x21, 2, 0, 0, 0, 0, 0, 0,
            0,
        ];
        assert_eq!(
            fields(&buf).unwrap(),
            vec![
                (1, Value::Varint(300)),
                (2, Value::Len(b"hi")),
                (3, Value::Fixed32(1)),
                (4, Value::Fixed64(2)),
            ]
        );
    }

    #[test]
    fn rejects_malformed_input() {
        assert_eq!(fields(&[0x12, 0x05, b'a']), Err(ProtoError::Truncated));
        assert_eq!(fields(&[0x08]), Err(ProtoError::Truncated));
        assert_eq!(fields(&[0x00, 0x01]), Err(ProtoError::BadFieldNumber));
        assert_eq!(fields(&[0x0b]), Err(ProtoError::BadWireType(3)));
        assert_eq!(
            fields(&[
                0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02
            ]),
            Err(ProtoError::BadVarint)
        );
        // A length that overflows usize arithmetic is truncation, not a panic.
        assert_eq!(
            fields(&[
                0x12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01
            ]),
            Err(ProtoError::Truncated)
        );
        assert_eq!(
            expect_len(1, Value::Varint(1)),
            Err(ProtoError::WrongWireType {
                field: 1,
                wire_type: 0,
                expected: 2
            })
        );
    }
}
