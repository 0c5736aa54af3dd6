//! Detect's saved state: one object per shard of the events stream,
//! `<history_prefix>/state/detect/<stream>/<shard id>/engine.json.gz`, overwritten by each
//! snapshot (an S3 PUT is atomic: a reader sees the old or the new one, never a mix).
//!
//! Format (gzip, three lines of compact JSON, so the small header can be checked first):
//! 1. the header: `{"format":"aiops-detect-state","version":1,"stream","shard",
//!    "position":{"sequence_number","sub_sequence_number"},"written_at","engine":true}`;
//!    `position` is the last record of the shard the state covers (every record up to and
//!    including it was fed to the engine, and nothing after it); `engine` false marks a state
//!    that was not saved (too large; `omitted` says why), so a restart starts cold instead of
//!    from an older snapshot;
//! 2. the de-duplication window ([`DedupState`]), or `null`;
//! 3. the engine document ([`aiops_detect::engine::snapshot`], its own version inside).
//!
//! Bounds: the compressed object is at most `[aws.detect_state] max_bytes` (the encoder stops
//! as soon as it passes the bound), and a read inflates at most [`INFLATE_FACTOR`] times that.
//! A header of another format or version, another stream or shard, a document that does not
//! decode, or an engine state of another version or configuration is refused with a
//! [`StateError`]: the caller logs and counts it and starts cold.

use aiops_aws::kinesis::SequenceNumber;
use aiops_aws::lease::Checkpoint;
use aiops_detect::StatsEngine;
use aiops_detect::config::StatisticsConfig;
use aiops_detect::engine::snapshot::SnapshotError;
use aiops_ingest::dedup::{DedupConfig, DedupState, Deduplicator};
use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::io::{Read, Write};
use thiserror::Error;

/// The `format` of the header.
pub const STATE_FORMAT: &str = "aiops-detect-state";
/// The header version this build writes and reads.
pub const STATE_VERSION: u32 = 1;
/// A read inflates at most this many times `max_bytes` (a guard against a crafted object).
pub const INFLATE_FACTOR: u64 = 64;

/// Why a state was not saved or not restored.
#[derive(Debug, Error)]
pub enum StateError {
    /// The compressed state passed `max_bytes`.
    #[error("the detect state is larger than max_bytes = {limit}")]
    TooLarge {
        /// The bound.
        limit: u64,
    },
    /// Serialising or compressing failed.
    #[error("cannot encode the detect state: {0}")]
    Encode(String),
    /// Not a gzip object, truncated, not the three lines, or a header that does not parse.
    #[error("the detect state is corrupt: {0}")]
    Corrupt(String),
    /// A header of another format or version.
    #[error(
        "the detect state has format {format:?} version {version} (this build reads {STATE_FORMAT:?} version {STATE_VERSION})"
    )]
    Version {
        /// Format found.
        format: String,
        /// Version found.
        version: u32,
    },
    /// The state of another stream or shard (a copied or misplaced object).
    #[error("the detect state belongs to {stream}/{shard}")]
    OtherShard {
        /// Its stream.
        stream: String,
        /// Its shard.
        shard: String,
    },
    /// The engine document was refused.
    #[error(transparent)]
    Engine(#[from] SnapshotError),
}

/// The last record a state covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// Sequence number (decimal digits).
    pub sequence_number: String,
    /// KPL sub-sequence number of the last user record fed, `None` for a plain record.
    pub sub_sequence_number: Option<u64>,
}

impl Position {
    /// The position of a record.
    pub fn of(sequence_number: &str, sub_sequence_number: Option<u64>) -> Position {
        Position {
            sequence_number: sequence_number.to_string(),
            sub_sequence_number,
        }
    }

    /// Compares two positions in shard order (`None` when a sequence number is not decimal).
    /// A plain record (no sub-sequence number) sorts after every user record of the same
    /// sequence number.
    pub fn compare(&self, other: &Position) -> Option<Ordering> {
        let a = SequenceNumber::parse(&self.sequence_number)?;
        let b = SequenceNumber::parse(&other.sequence_number)?;
        let sub = |p: &Position| p.sub_sequence_number.unwrap_or(u64::MAX);
        Some(a.cmp(&b).then(sub(self).cmp(&sub(other))))
    }

    /// Whether a record at `record` is at or before this position (`false` when either
    /// sequence number is not decimal).
    pub fn covers(&self, record: &Position) -> bool {
        matches!(record.compare(self), Some(Ordering::Less | Ordering::Equal))
    }

    /// The checkpoint of this position.
    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint::Sequence {
            sequence_number: self.sequence_number.clone(),
            sub_sequence_number: self.sub_sequence_number,
        }
    }

    /// The position of a checkpoint (`None` for `TRIM_HORIZON`, `LATEST`, `SHARD_END`).
    pub fn of_checkpoint(c: &Checkpoint) -> Option<Position> {
        match c {
            Checkpoint::Sequence {
                sequence_number,
                sub_sequence_number,
            } => Some(Position::of(sequence_number, *sub_sequence_number)),
            _ => None,
        }
    }
}

/// The first line of a state object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    /// [`STATE_FORMAT`].
    pub format: String,
    /// [`STATE_VERSION`].
    pub version: u32,
    /// The events stream.
    pub stream: String,
    /// The shard id.
    pub shard: String,
    /// The last record the state covers.
    pub position: Position,
    /// When it was written: microseconds since the Unix epoch, UTC.
    pub written_at: i64,
    /// Whether the engine state follows; `false` marks a state that was not saved.
    pub engine: bool,
    /// Why the engine state was not saved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub omitted: Option<String>,
}

/// A restored state.
#[derive(Debug)]
pub struct Restored {
    /// Its header.
    pub header: Header,
    /// The engine, or `None` when the state was not saved (a marker).
    pub engine: Option<StatsEngine>,
    /// The de-duplication window.
    pub dedup: Option<Deduplicator>,
}

/// The key of a shard's state object.
pub fn state_key(prefix: &str, stream: &str, shard: &str) -> String {
    let prefix = prefix.trim_matches('/');
    let rest = format!("state/detect/{stream}/{shard}/engine.json.gz");
    if prefix.is_empty() {
        rest
    } else {
        format!("{prefix}/{rest}")
    }
}

/// A `Vec` that refuses to grow past a bound.
struct Bounded {
    out: Vec<u8>,
    limit: usize,
    exceeded: bool,
}

impl Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.out.len().saturating_add(buf.len()) > self.limit {
            self.exceeded = true;
            return Err(std::io::Error::other("max_bytes reached"));
        }
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Encodes a state (gzip of the three lines), at most `max_bytes` compressed.
///
/// # Errors
/// [`StateError::TooLarge`] past the bound, [`StateError::Encode`] when serialisation fails.
pub fn encode(
    header: &Header,
    dedup: Option<&Deduplicator>,
    engine: Option<&StatsEngine>,
    max_bytes: u64,
) -> Result<Vec<u8>, StateError> {
    let limit = usize::try_from(max_bytes).unwrap_or(usize::MAX);
    let mut gz = GzEncoder::new(
        Bounded {
            out: Vec::new(),
            limit,
            exceeded: false,
        },
        Compression::fast(),
    );
    let result = (|| -> Result<(), String> {
        serde_json::to_writer(&mut gz, header).map_err(|e| e.to_string())?;
        gz.write_all(b"\n").map_err(|e| e.to_string())?;
        serde_json::to_writer(&mut gz, &dedup.map(Deduplicator::state))
            .map_err(|e| e.to_string())?;
        gz.write_all(b"\n").map_err(|e| e.to_string())?;
        if let Some(e) = engine {
            e.write_state(&mut gz).map_err(|e| e.to_string())?;
        }
        Ok(())
    })();
    let too_large = |gz: &GzEncoder<Bounded>| gz.get_ref().exceeded;
    if let Err(e) = result {
        return Err(if too_large(&gz) {
            StateError::TooLarge { limit: max_bytes }
        } else {
            StateError::Encode(e)
        });
    }
    if let Err(e) = gz.try_finish() {
        return Err(if too_large(&gz) {
            StateError::TooLarge { limit: max_bytes }
        } else {
            StateError::Encode(e.to_string())
        });
    }
    gz.finish()
        .map(|b| b.out)
        .map_err(|e| StateError::Encode(e.to_string()))
}

/// Decodes a state object of `stream`/`shard` written by [`encode`]: the engine is rebuilt
/// with `statistics` (which must be the configuration it was saved with) and the
/// de-duplication window with `dedup` (`None`: not restored).
///
/// # Errors
/// Any [`StateError`] but `TooLarge` and `Encode`: the caller starts cold.
pub fn decode(
    bytes: &[u8],
    stream: &str,
    shard: &str,
    statistics: &StatisticsConfig,
    dedup: Option<&DedupConfig>,
    max_bytes: u64,
) -> Result<Restored, StateError> {
    let mut text = Vec::new();
    GzDecoder::new(bytes)
        .take(max_bytes.saturating_mul(INFLATE_FACTOR))
        .read_to_end(&mut text)
        .map_err(|e| StateError::Corrupt(format!("gzip: {e}")))?;
    let mut lines = text.splitn(3, |b| *b == b'\n');
    let (Some(head), Some(dedup_line), Some(engine_doc)) =
        (lines.next(), lines.next(), lines.next())
    else {
        return Err(StateError::Corrupt("fewer than three lines".into()));
    };
    // The version first, so that a future header is reported as a version, not as corrupt.
    #[derive(Deserialize)]
    struct Version {
        format: String,
        version: u32,
    }
    let v: Version =
        serde_json::from_slice(head).map_err(|e| StateError::Corrupt(format!("header: {e}")))?;
    if v.format != STATE_FORMAT || v.version != STATE_VERSION {
        return Err(StateError::Version {
            format: v.format,
            version: v.version,
        });
    }
    let header: Header =
        serde_json::from_slice(head).map_err(|e| StateError::Corrupt(format!("header: {e}")))?;
    if header.stream != stream || header.shard != shard {
        return Err(StateError::OtherShard {
            stream: header.stream,
            shard: header.shard,
        });
    }
    if SequenceNumber::parse(&header.position.sequence_number).is_none() {
        return Err(StateError::Corrupt(format!(
            "position {:?} is not a sequence number",
            header.position.sequence_number
        )));
    }
    if !header.engine {
        return Ok(Restored {
            header,
            engine: None,
            dedup: None,
        });
    }
    let saved: Option<DedupState> = serde_json::from_slice(dedup_line)
        .map_err(|e| StateError::Corrupt(format!("de-duplication window: {e}")))?;
    let engine = StatsEngine::from_state(statistics.clone(), engine_doc)?;
    let dedup = match (dedup, saved) {
        (Some(cfg), Some(s)) => Deduplicator::with_state(cfg, s).ok(),
        (Some(cfg), None) => Deduplicator::new(cfg).ok(),
        (None, _) => None,
    };
    Ok(Restored {
        header,
        engine: Some(engine),
        dedup,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(seq: &str) -> Header {
        Header {
            format: STATE_FORMAT.into(),
            version: STATE_VERSION,
            stream: "events".into(),
            shard: "shardId-0".into(),
            position: Position::of(seq, None),
            written_at: 1,
            engine: true,
            omitted: None,
        }
    }

    #[test]
    fn positions_compare_as_numbers_and_plain_records_after_their_user_records() {
        let p = Position::of("100", Some(2));
        assert!(p.covers(&Position::of("99", None)));
        assert!(p.covers(&Position::of("100", Some(2))));
        assert!(!p.covers(&Position::of("100", Some(3))));
        assert!(!p.covers(&Position::of("100", None)));
        assert!(!p.covers(&Position::of("1000", Some(0))));
        assert!(Position::of("100", None).covers(&Position::of("100", Some(7))));
        assert!(!p.covers(&Position::of("x", None)));
    }

    #[test]
    fn a_state_round_trips_and_a_foreign_or_damaged_one_is_refused() {
        let stats = StatisticsConfig::default();
        let dcfg = DedupConfig::default();
        let engine = StatsEngine::new(stats.clone());
        let mut d = Deduplicator::new(&dcfg).unwrap();
        d.is_duplicate("e1", 5);
        let bytes = encode(&header("42"), Some(&d), Some(&engine), 1 << 20).unwrap();
        let r = decode(&bytes, "events", "shardId-0", &stats, Some(&dcfg), 1 << 20).unwrap();
        assert_eq!(r.header, header("42"));
        assert!(r.engine.is_some());
        assert!(r.dedup.unwrap().is_duplicate("e1", 5));
        assert!(matches!(
            decode(&bytes, "events", "shardId-1", &stats, Some(&dcfg), 1 << 20),
            Err(StateError::OtherShard { .. })
        ));
        // Truncated, not gzip.
        for bad in [&bytes[..bytes.len() / 2], b"plain text"] {
            assert!(matches!(
                decode(bad, "events", "shardId-0", &stats, None, 1 << 20),
                Err(StateError::Corrupt(_))
            ));
        }
        // Another header version.
        let mut h = header("42");
        h.version = 9;
        let bytes = encode(&h, None, Some(&engine), 1 << 20).unwrap();
        assert!(matches!(
            decode(&bytes, "events", "shardId-0", &stats, None, 1 << 20),
            Err(StateError::Version { version: 9, .. })
        ));
        // Too large to save.
        assert!(matches!(
            encode(&header("42"), Some(&d), Some(&engine), 64),
            Err(StateError::TooLarge { limit: 64 })
        ));
    }
}
