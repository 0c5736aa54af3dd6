//! Token interner: every distinct token text once, as a `u32`.

use super::WILDCARD;
use super::token::WILDCARD_TEXT;

/// Id of the empty gap (a token glued to the one before it).
pub(super) const GAP_NONE: u32 = 1;
/// Id of a one-space gap.
pub(super) const GAP_SPACE: u32 = 2;

/// Token interner: text <-> `u32` id. Id 0 is the wildcard, 1 the empty gap, 2 one space.
///
/// An open-addressing hash table (linear probing, at most half full) of ids, keyed by a
/// seeded hash of the token bytes; the texts live in one arena string. The hash mixes 8-byte
/// words with the folded multiply of aHash's fallback hasher, from a seed drawn at random per
/// interner, so colliding tokens cannot be prepared in advance.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(super) struct Interner {
    /// `id + 1` per slot, 0 when empty; the length is a power of two.
    slots: Vec<u32>,
    /// Per id.
    entries: Vec<InternEntry>,
    /// Every interned text, back to back.
    arena: String,
    seed: u64,
    /// A direct-mapped cache of short texts (at most 8 bytes) in front of the table, indexed
    /// by the low bits of their hash: a repeated short token is found with one load instead
    /// of a slot and then its entry. Not serialized; refilled as tokens are looked up.
    #[serde(skip)]
    recent: Vec<Recent>,
}

/// One slot of [`Interner::recent`]: a short text as its word (see `small_word`) and its
/// length, and its id + 1 (0 when the slot is empty).
#[derive(Debug, Clone, Copy, Default)]
struct Recent {
    word: u64,
    len: u32,
    id_plus_one: u32,
}

/// Slots of [`Interner::recent`] (a power of two; 16 KiB).
const RECENT_SLOTS: usize = 1024;

#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
struct InternEntry {
    hash: u64,
    /// For a text of at most 8 bytes, its bytes as one word (see `small_word`), so that
    /// short texts compare without reading the arena.
    word: u64,
    /// Byte range of the text in the arena.
    start: usize,
    end: usize,
    /// Whether the token is parameter-like (wildcard or bare partial mask).
    param_like: bool,
    /// Whether the token contains a mask (routes to the wildcard child).
    masked: bool,
    /// Whether the token is a value after a key (starts with `=`).
    value: bool,
}

const HASH_MUL: u64 = 0x5851_f42d_4c95_7f2d;

fn folded_multiply(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

/// The bytes of a slice of at most 8 bytes as one word; together with the length (hashed
/// separately) the word determines the slice.
fn small_word(b: &[u8]) -> u64 {
    let n = b.len();
    let u32_at = |i: usize| {
        b.get(i..i + 4)
            .and_then(|s| <[u8; 4]>::try_from(s).ok())
            .map_or(0, u32::from_le_bytes)
    };
    if n >= 4 {
        u64::from(u32_at(0)) | (u64::from(u32_at(n - 4)) << 32)
    } else if n > 0 {
        let at = |i: usize| u64::from(b.get(i).copied().unwrap_or(0));
        at(0) | (at(n / 2) << 8) | (at(n - 1) << 16)
    } else {
        0
    }
}

/// Seeded hash of a token's bytes: 8-byte words (the last one overlapping the previous) folded
/// in with a multiply each. `word` is `small_word(b)` when `b` has at most 8 bytes.
fn hash_token(seed: u64, b: &[u8], word: u64) -> u64 {
    let mut h = folded_multiply(seed ^ b.len() as u64, HASH_MUL);
    if b.len() <= 8 {
        return folded_multiply(h ^ word, HASH_MUL);
    }
    let mut chunks = b.chunks_exact(8);
    for c in &mut chunks {
        let w = <[u8; 8]>::try_from(c).map_or(0, u64::from_le_bytes);
        h = folded_multiply(h ^ w, HASH_MUL);
    }
    if !chunks.remainder().is_empty() {
        let last = b.get(b.len() - 8..).unwrap_or(&[]);
        let w = <[u8; 8]>::try_from(last).map_or(0, u64::from_le_bytes);
        h = folded_multiply(h ^ w, HASH_MUL);
    }
    h
}

impl Interner {
    pub(super) fn new() -> Self {
        // A random seed per miner (aHash's RandomState draws it from the OS).
        let seed = ahash::RandomState::new().hash_one(0u64);
        let mut i = Interner {
            slots: vec![0; 256],
            entries: Vec::new(),
            arena: String::new(),
            seed,
            recent: Vec::new(),
        };
        let id = i.intern(WILDCARD_TEXT, true, true);
        debug_assert_eq!(id, WILDCARD);
        let none = i.intern("", false, false);
        debug_assert_eq!(none, GAP_NONE);
        let space = i.intern(" ", false, false);
        debug_assert_eq!(space, GAP_SPACE);
        i
    }

    pub(super) fn intern(&mut self, text: &str, masked: bool, param_like: bool) -> u32 {
        self.intern_bytes(text.as_bytes(), masked, param_like)
    }

    /// [`Interner::intern`] for the UTF-8 bytes of a text.
    pub(super) fn intern_bytes(&mut self, b: &[u8], masked: bool, param_like: bool) -> u32 {
        let short = b.len() <= 8;
        let word = if short { small_word(b) } else { 0 };
        let hash = hash_token(self.seed, b, word);
        let len = u32::try_from(b.len()).unwrap_or(u32::MAX);
        let at = hash as usize & (RECENT_SLOTS - 1);
        if short
            && let Some(r) = self.recent.get(at)
            && r.id_plus_one != 0
            && r.word == word
            && r.len == len
        {
            // The word and the length determine a short text.
            return r.id_plus_one - 1;
        }
        let id = self.lookup_or_insert(b, hash, word, masked, param_like);
        if short {
            if self.recent.is_empty() {
                self.recent = vec![Recent::default(); RECENT_SLOTS];
            }
            if let Some(r) = self.recent.get_mut(at) {
                *r = Recent {
                    word,
                    len,
                    id_plus_one: id.saturating_add(1),
                };
            }
        }
        id
    }

    /// The table lookup of [`Interner::intern_bytes`], inserting the text when it is new.
    fn lookup_or_insert(
        &mut self,
        b: &[u8],
        hash: u64,
        word: u64,
        masked: bool,
        param_like: bool,
    ) -> u32 {
        let short = b.len() <= 8;
        let mask = self.slots.len() - 1;
        let mut pos = hash as usize & mask;
        loop {
            match self.slots.get(pos).copied() {
                Some(0) | None => break,
                Some(slot) => {
                    if let Some(e) = self.entries.get(slot as usize - 1)
                        && e.hash == hash
                        && e.end - e.start == b.len()
                        && (if short {
                            e.word == word
                        } else {
                            self.arena.as_bytes().get(e.start..e.end) == Some(b)
                        })
                    {
                        return slot - 1;
                    }
                }
            }
            pos = (pos + 1) & mask;
        }
        let id = u32::try_from(self.entries.len()).unwrap_or(u32::MAX - 1);
        let start = self.arena.len();
        // Validated once, when first seen (the callers pass UTF-8).
        match std::str::from_utf8(b) {
            Ok(text) => self.arena.push_str(text),
            Err(_) => self.arena.push_str(&String::from_utf8_lossy(b)),
        }
        self.entries.push(InternEntry {
            hash,
            word,
            start,
            end: self.arena.len(),
            param_like,
            masked,
            value: b.first() == Some(&b'='),
        });
        if let Some(s) = self.slots.get_mut(pos) {
            *s = id + 1;
        }
        if self.entries.len() * 2 > self.slots.len() {
            self.grow();
        }
        id
    }

    /// Doubles the table and re-inserts every id.
    fn grow(&mut self) {
        let len = self.slots.len() * 2;
        let mask = len - 1;
        let mut slots = vec![0u32; len];
        for (id, e) in self.entries.iter().enumerate() {
            let mut pos = e.hash as usize & mask;
            while slots.get(pos).is_some_and(|&s| s != 0) {
                pos = (pos + 1) & mask;
            }
            if let Some(s) = slots.get_mut(pos) {
                *s = u32::try_from(id + 1).unwrap_or(u32::MAX);
            }
        }
        self.slots = slots;
    }

    pub(super) fn text(&self, id: u32) -> &str {
        self.entries
            .get(id as usize)
            .and_then(|e| self.arena.get(e.start..e.end))
            .unwrap_or(WILDCARD_TEXT)
    }

    pub(super) fn is_param_like(&self, id: u32) -> bool {
        self.entries.get(id as usize).is_none_or(|e| e.param_like)
    }

    pub(super) fn is_masked(&self, id: u32) -> bool {
        self.entries.get(id as usize).is_none_or(|e| e.masked)
    }

    /// Whether a token is the value of a key (starts with `=`).
    pub(super) fn is_value(&self, id: u32) -> bool {
        self.entries.get(id as usize).is_some_and(|e| e.value)
    }

    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }
}
