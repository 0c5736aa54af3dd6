//! Bounded gzip inflation.
//!
//! Every gzip payload is inflated through a reader capped at the configured limit, so a gzip
//! bomb (a few kilobytes that inflate to gigabytes) costs at most `limit + 1` bytes of memory
//! and is reported as an error, never an out-of-memory. Concatenated gzip members (RFC 1952
//! §2.2, "a gzip file consists of a series of members") are inflated as one stream.

use flate2::read::MultiGzDecoder;
use std::io::Read;
use thiserror::Error;

/// The two magic bytes every gzip member starts with (RFC 1952 §2.3.1: ID1 = 0x1f, ID2 = 0x8b).
pub const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Why a gzip payload could not be inflated.
#[derive(Debug, Error)]
pub enum GzipError {
    /// The payload inflates to more than the limit (likely a gzip bomb).
    #[error("gzip payload exceeds {limit} bytes decompressed (gzip bomb?)")]
    TooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The stream is truncated or corrupt (bad header, bad deflate data, bad CRC or length).
    #[error("truncated or corrupt gzip: {0}")]
    Corrupt(#[source] std::io::Error),
}

/// Whether `data` starts with the gzip magic bytes `1f 8b` (detection by content, never by name).
pub fn is_gzip(data: &[u8]) -> bool {
    data.starts_with(&GZIP_MAGIC)
}

/// Inflates a gzip payload (one or more concatenated members) into at most `max_bytes` bytes.
///
/// # Errors
/// [`GzipError::TooLarge`] when the inflated data would exceed `max_bytes` (only `max_bytes + 1`
/// bytes are ever produced), [`GzipError::Corrupt`] when the stream is truncated or invalid.
pub fn gunzip_bounded(data: &[u8], max_bytes: usize) -> Result<Vec<u8>, GzipError> {
    let cap = u64::try_from(max_bytes)
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    let mut reader = MultiGzDecoder::new(data).take(cap);
    let mut out = Vec::with_capacity(initial_capacity(data, max_bytes));
    reader.read_to_end(&mut out).map_err(GzipError::Corrupt)?;
    if out.len() > max_bytes {
        return Err(GzipError::TooLarge { limit: max_bytes });
    }
    Ok(out)
}

/// Room to inflate `data` into: the size the last member's trailer states (ISIZE, RFC 1952
/// §2.3.1: the input size modulo 2^32, exact for the usual single-member file), so the
/// output is not grown and copied while it is inflated; 8x the compressed size when the
/// trailer is missing or implausible (more than deflate's 1032:1 can produce). Never above
/// `max_bytes + 1` nor 64 MiB (a larger payload grows as it is read).
fn initial_capacity(data: &[u8], max_bytes: usize) -> usize {
    let ceiling = max_bytes.saturating_add(1).min(64 * 1024 * 1024);
    let stated = data
        .len()
        .checked_sub(4)
        .and_then(|at| data.get(at..))
        .and_then(|t| <[u8; 4]>::try_from(t).ok())
        .map(|t| u32::from_le_bytes(t) as usize)
        .filter(|&n| n > 0 && n <= data.len().saturating_mul(1032));
    // Typical compression ratios of JSON are 5-20x.
    stated
        .unwrap_or_else(|| data.len().saturating_mul(8))
        .min(ceiling)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::Compression;
    use flate2::write::GzEncoder;
    use std::io::Write;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn inflates_within_limit_and_at_exact_limit() {
        let z = gz(b"hello world");
        assert_eq!(gunzip_bounded(&z, 1024).unwrap(), b"hello world");
        assert_eq!(gunzip_bounded(&z, 11).unwrap(), b"hello world");
    }

    #[test]
    fn one_byte_over_the_limit_is_an_error() {
        let z = gz(b"hello world");
        let err = gunzip_bounded(&z, 10).unwrap_err();
        assert!(matches!(err, GzipError::TooLarge { limit: 10 }));
        assert_eq!(
            err.to_string(),
            "gzip payload exceeds 10 bytes decompressed (gzip bomb?)"
        );
    }

    #[test]
    fn output_is_sized_from_the_trailer() {
        let data: Vec<u8> = (0..100_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        let z = gz(&data);
        assert_eq!(initial_capacity(&z, 1 << 20), 100_000);
        assert_eq!(initial_capacity(&z, 999), 1_000);
        assert_eq!(gunzip_bounded(&z, 1 << 20).unwrap(), data);
        // A trailer claiming more than deflate can produce: 8x the compressed size.
        let mut lie = z.clone();
        let n = lie.len();
        lie[n - 4..].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(initial_capacity(&lie, usize::MAX), n * 8);
        assert_eq!(initial_capacity(b"ab", 1 << 20), 16);
    }

    #[test]
    fn concatenated_members_are_one_stream() {
        let mut z = gz(b"ab");
        z.extend(gz(b"cd"));
        assert_eq!(gunzip_bounded(&z, 100).unwrap(), b"abcd");
    }

    #[test]
    fn truncated_stream_is_corrupt() {
        let z = gz(&[7u8; 4096]);
        let cut = &z[..z.len() - 5];
        assert!(matches!(
            gunzip_bounded(cut, 1 << 20),
            Err(GzipError::Corrupt(_))
        ));
        assert!(is_gzip(cut));
        assert!(!is_gzip(b"{}"));
    }
}
