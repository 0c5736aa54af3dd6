//! Benchmark support crate: the end-to-end benchmark harness that `aiops bench` calls
//! ([`harness`]: embedded and aws mode), and the deterministic input helpers the criterion
//! benchmarks in `benches/` share. The criterion benchmarks themselves live in `benches/`.

pub mod harness;

use aiops_core::Position;

/// SplitMix64 (Steele, Lea, Flood, "Fast splittable pseudorandom number generators", OOPSLA
/// 2014): a small deterministic generator, so every benchmark input is the same on every run.
/// The field is the state; any seed works.
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A value in `[0, n)` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// Skewed toward 0: the smaller of two uniform draws (about twice as likely at 0 as at n/2).
    pub fn skewed(&mut self, n: u64) -> u64 {
        self.below(n).min(self.below(n))
    }

    /// A random v4 GUID, as CloudTrail writes `eventID` and most `requestID`s.
    pub fn uuid(&mut self) -> String {
        let a = self.next();
        let b = self.next();
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            0x8000 | ((b >> 48) & 0x3fff),
            b & 0xffff_ffff_ffff
        )
    }

    /// `digits` lowercase hexadecimal digits.
    pub fn hex(&mut self, digits: usize) -> String {
        let mut s = String::with_capacity(digits);
        while s.len() < digits {
            s.push_str(&format!("{:016x}", self.next()));
        }
        s.truncate(digits);
        s
    }

    /// A public-looking IPv4 address (first octet 1..=223).
    pub fn ip(&mut self) -> String {
        let v = self.next();
        format!(
            "{}.{}.{}.{}",
            (v & 0xff) % 223 + 1,
            (v >> 8) & 0xff,
            (v >> 16) & 0xff,
            ((v >> 24) & 0xff) % 254 + 1
        )
    }

    /// An address in 10.0.0.0/8, as VPC-internal callers have.
    pub fn private_ip(&mut self) -> String {
        let v = self.next();
        format!(
            "10.{}.{}.{}",
            (v >> 8) & 0xff,
            (v >> 16) & 0xff,
            ((v >> 24) & 0xff) % 254 + 1
        )
    }
}

/// The Kinesis position of the `seq`-th record of a four-shard `aiops-raw` stream.
pub fn position(seq: u64) -> Position {
    Position {
        stream: "aiops-raw".into(),
        shard_id: format!("shardId-{:012}", seq % 4),
        sequence_number: format!("4959033827149025660855969253836157109592157598{seq:010}"),
        sub_sequence_number: None,
    }
}
