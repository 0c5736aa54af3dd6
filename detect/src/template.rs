//! A streaming log template miner in the style of Drain.
//!
//! Source: P. He, J. Zhu, Z. Zheng, M. R. Lyu, "Drain: An Online Log Parsing Approach with
//! Fixed Depth Tree", IEEE ICWS 2017. The structure follows the paper: a line is masked and
//! split into tokens; the first tree layer is the token count, the next `depth − 2` layers are
//! the leading tokens (a token holding a parameter goes to the wildcard child, as does any
//! token once a node has `max_children` children); a leaf holds log clusters, and the line
//! joins the most similar one (share of equal constant positions, ties to the template with
//! more parameters) when that similarity reaches `similarity_threshold`; the template then
//! turns every differing position into `<*>`. Otherwise a new cluster starts.
//!
//! Two additions, both general rather than tuned to a data set:
//!
//! - **Masking** (applied per token before the tree): numbers, hexadecimal ids, UUIDs, IPv4
//!   addresses (as dotted numbers), paths and URLs become `<*>`. Masking works on the
//!   segments of a token (runs of letters and digits between punctuation), so `blk_-1234`
//!   becomes `blk_<*>`, `uid=0` becomes `uid=<*>` and `10.0.0.1:80` becomes `<*>:<*>`; a run
//!   of parameter segments joined by `.`, `-` or `_` collapses into one `<*>`.
//! - **Optional parameters**: a line that matches no cluster of its own length joins an
//!   existing cluster whose *skeleton* is identical — the sequence of its constant tokens,
//!   ignoring parameters and a unit word right after a parameter (`1190 bytes (1.16 KB)
//!   sent` and `403 bytes sent` share the skeleton `bytes sent`). Such a cluster holds up to
//!   [`MAX_SHAPES`] token-count variants ("shapes"); its template text aligns them and puts
//!   `<*>` where they differ.
//!
//! The hot path allocates nothing per token: one pass over the line's bytes (classified by a
//! 256-entry table) yields the tokens as slices of the line together with whether they hold a
//! digit or a slash, so tokens without either skip masking altogether; masked variants are
//! built in a reused buffer, and every distinct token text is interned once into a `u32` (an
//! open-addressing table over a seeded hash, texts in one arena).
//! Memory is bounded by `max_templates` clusters (least recently matched evicted first) and
//! `max_tokens` tokens per line; the interner is rebuilt from the live clusters when it
//! exceeds `max_interned`.

use ahash::AHashMap;
use serde::{Deserialize, Serialize};

/// The text that stands for a parameter in templates.
pub const WILDCARD_TEXT: &str = "<*>";

/// Maximum number of token-count variants ("shapes") one cluster may hold.
pub const MAX_SHAPES: usize = 8;

/// Token id of a fully masked token (`<*>`).
const WILDCARD: u32 = 0;

/// Configuration of the template miner (`[detect.statistics.templates]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TemplateConfig {
    /// Depth of the prefix tree including the root and length layers (Drain's `depth`); the
    /// number of leading tokens used for routing is `depth − 2`. Default 4; at least 3.
    pub depth: usize,
    /// Minimum similarity for a line to join a cluster (Drain's `st`): the share of the
    /// template's constant positions that the line matches. Default 0.8; in `(0, 1]`.
    pub similarity_threshold: f64,
    /// Maximum children of a tree node before new tokens route to the wildcard child
    /// (Drain's `maxChild`). Default 100; at least 1.
    pub max_children: usize,
    /// Maximum clusters (templates) per miner, i.e. per log group; the least recently matched
    /// cluster is evicted first. Default 1000; at least 1.
    pub max_templates: usize,
    /// Tokens of a line beyond this count are folded into one trailing `<*>`. Default 128;
    /// at least 8.
    pub max_tokens: usize,
    /// Interned token texts kept before the interner is rebuilt from the live clusters.
    /// Default 200000; at least 1000.
    pub max_interned: usize,
    /// Treat English weekday and month names (`Mon`, `June`) as parameters, since they are
    /// parts of dates. Default true.
    pub mask_dates: bool,
}

impl Default for TemplateConfig {
    fn default() -> Self {
        TemplateConfig {
            depth: 4,
            similarity_threshold: 0.8,
            max_children: 100,
            max_templates: 1000,
            max_tokens: 128,
            max_interned: 200_000,
            mask_dates: true,
        }
    }
}

/// The outcome of adding one line to the miner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TemplateMatch {
    /// Id of the cluster the line joined. Ids are unique within one miner for its whole life
    /// (an evicted cluster's id is never reused).
    pub template_id: u64,
    /// Whether this line created the cluster.
    pub created: bool,
}

/// How a token was masked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MaskKind {
    /// No parameter inside: the token is used as is.
    Constant,
    /// The whole token is a parameter.
    Wildcard,
    /// Part of the token is a parameter; the masked text is in the buffer. `bare` is true when
    /// everything besides the parameters is punctuation (e.g. `<*>:<*>`, `(<*>)`).
    Partial { bare: bool },
}

/// Byte class: ASCII whitespace, as `str::split_ascii_whitespace` splits on.
const C_SPACE: u8 = 1;
/// Byte class: ASCII digit.
const C_DIGIT: u8 = 2;
/// Byte class: `/` or `\\` (path markers).
const C_SLASH: u8 = 4;
/// Byte class: part of a segment (ASCII letter or digit, or any byte of a non-ASCII char).
const C_SEG: u8 = 8;
/// Byte class: ASCII punctuation.
const C_PUNCT: u8 = 16;
/// Byte class: ASCII hexadecimal digit.
const C_HEX: u8 = 32;
/// Byte class: anything but an ASCII digit.
const C_NOT_DIGIT: u8 = 64;

/// The classes of every byte value, so the tokenizer classifies a byte with one load.
static BYTE_CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        let mut c = 0;
        if matches!(b, b' ' | b'\t' | b'\n' | b'\x0C' | b'\r') {
            c |= C_SPACE;
        }
        if b.is_ascii_digit() {
            c |= C_DIGIT;
        } else {
            c |= C_NOT_DIGIT;
        }
        if b == b'/' || b == b'\\' {
            c |= C_SLASH;
        }
        if b.is_ascii_alphanumeric() || b >= 0x80 {
            c |= C_SEG;
        }
        if b.is_ascii_punctuation() {
            c |= C_PUNCT;
        }
        if b.is_ascii_hexdigit() {
            c |= C_HEX;
        }
        t[i] = c;
        i += 1;
    }
    t
};

fn class(b: u8) -> u8 {
    BYTE_CLASS[b as usize]
}

fn is_seg_byte(b: u8) -> bool {
    class(b) & C_SEG != 0
}

/// Splits a line on ASCII whitespace (as `str::split_ascii_whitespace`) in one pass, yielding
/// each token's byte range and which of [`C_DIGIT`], [`C_SLASH`] and [`C_NOT_DIGIT`] its bytes
/// hold.
struct Tokens<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Iterator for Tokens<'_> {
    type Item = (usize, usize, u8);

    fn next(&mut self) -> Option<Self::Item> {
        let b = self.bytes;
        let mut i = self.pos;
        while let Some(&c) = b.get(i) {
            if class(c) & C_SPACE == 0 {
                break;
            }
            i += 1;
        }
        if i >= b.len() {
            self.pos = i;
            return None;
        }
        let start = i;
        let mut flags = 0u8;
        while let Some(&c) = b.get(i) {
            let k = class(c);
            if k & C_SPACE != 0 {
                break;
            }
            flags |= k;
            i += 1;
        }
        self.pos = i;
        Some((start, i, flags & (C_DIGIT | C_SLASH | C_NOT_DIGIT)))
    }
}

/// Whether an alphanumeric segment is a parameter: it starts with a digit; or it is
/// hexadecimal with at least one digit and at least 6 characters; or it has more digits
/// than letters. The segment is given by its first byte, length, number of ASCII digits and
/// whether all its bytes are hexadecimal digits (the segment scan gathers these as it goes).
fn segment_is_param(first: u8, len: usize, digits: usize, all_hex: bool) -> bool {
    if first.is_ascii_digit() {
        return true;
    }
    if digits == 0 {
        return false;
    }
    if len >= 6 && all_hex {
        return true;
    }
    digits * 2 > len
}

fn is_uuid(core: &[u8]) -> bool {
    if core.len() != 36 {
        return false;
    }
    core.iter().enumerate().all(|(i, &b)| {
        if matches!(i, 8 | 13 | 18 | 23) {
            b == b'-'
        } else {
            b.is_ascii_hexdigit()
        }
    })
}

fn is_path(core: &[u8]) -> bool {
    let slashes = core.iter().filter(|&&b| b == b'/').count();
    let starts = core.first() == Some(&b'/')
        || core.starts_with(b"./")
        || core.starts_with(b"~/")
        || core.starts_with(b"../");
    (starts && slashes >= 2) || (core.len() > 2 && core.get(1..3) == Some(b":\\"))
}

fn is_lead_punct(c: u8) -> bool {
    matches!(c, b'(' | b'[' | b'{' | b'<' | b'"' | b'\'')
}

fn is_trail_punct(c: u8) -> bool {
    matches!(
        c,
        b')' | b']' | b'}' | b'>' | b'"' | b'\'' | b',' | b';' | b':' | b'.'
    )
}

/// Masks one token. Writes the masked text into `out` (cleared first) for
/// [`MaskKind::Partial`].
#[cfg(test)]
fn mask_token(tok: &str, out: &mut String) -> MaskKind {
    out.clear();
    let flags = tok.bytes().fold(0, |f, c| f | class(c));
    // Quick exit: no digit and no path/URL marker means nothing to mask.
    if flags & (C_DIGIT | C_SLASH) == 0 {
        return MaskKind::Constant;
    }
    let mut bytes = Vec::new();
    let kind = mask_marked_token(tok.as_bytes(), flags, &mut bytes);
    out.push_str(&String::from_utf8_lossy(&bytes));
    kind
}

/// `mask_token` for a token (the bytes of a `&str` between ASCII whitespace) known to hold a
/// digit, `/` or `\` (the tokenizer knows from its byte classes); `flags` holds at least the
/// [`C_SLASH`] class of the token's bytes. The masked text, written to `out`, is UTF-8: it is
/// made of pieces of the token cut at ASCII bytes, and `<*>`.
fn mask_marked_token(tok: &[u8], flags: u8, out: &mut Vec<u8>) -> MaskKind {
    out.clear();
    let b = tok;
    // Strip surrounding punctuation to look at the core.
    let mut lo = 0;
    while b.get(lo).is_some_and(|&c| is_lead_punct(c)) {
        lo += 1;
    }
    let mut hi = b.len();
    while hi > lo && b.get(hi - 1).is_some_and(|&c| is_trail_punct(c)) {
        hi -= 1;
    }
    let core = b.get(lo..hi).unwrap_or(&[]);
    let whole = |out: &mut Vec<u8>| {
        if lo == 0 && hi == b.len() {
            return MaskKind::Wildcard;
        }
        out.extend_from_slice(tok.get(..lo).unwrap_or(&[]));
        out.extend_from_slice(WILDCARD_TEXT.as_bytes());
        out.extend_from_slice(tok.get(hi..).unwrap_or(&[]));
        MaskKind::Partial { bare: true }
    };
    // Paths and URLs hold `/` or `\`.
    let slashed = flags & C_SLASH != 0;
    if is_uuid(core) || (slashed && is_path(core)) {
        return whole(out);
    }
    let url = if slashed { find(core, b"://") } else { None };
    if let Some(pos) = url {
        // URL: keep the scheme, mask the rest.
        if pos == 0 {
            return whole(out);
        }
        out.extend_from_slice(tok.get(..lo + pos + 3).unwrap_or(&[]));
        out.extend_from_slice(WILDCARD_TEXT.as_bytes());
        out.extend_from_slice(tok.get(hi..).unwrap_or(&[]));
        return MaskKind::Partial { bare: false };
    }
    // Segment scan. Punctuation between segments is ASCII, so byte offsets are char
    // boundaries; `pending` is the punctuation run since the previous segment.
    let mut i = 0;
    let mut any_param = false;
    let mut any_const_alnum = false;
    let mut last_was_param = false;
    let mut pending = (0usize, 0usize);
    while let Some(&c) = b.get(i) {
        if class(c) & C_SEG == 0 {
            i += 1;
            pending.1 = i;
            continue;
        }
        let start = i;
        let mut digits = 0usize;
        let mut all_hex = true;
        while let Some(&x) = b.get(i) {
            let k = class(x);
            if k & C_SEG == 0 {
                break;
            }
            digits += usize::from(k & C_DIGIT != 0);
            all_hex &= k & C_HEX != 0;
            i += 1;
        }
        let punct = b.get(pending.0..pending.1).unwrap_or(&[]);
        if segment_is_param(c, i - start, digits, all_hex) {
            any_param = true;
            if last_was_param && matches!(punct, b"." | b"-" | b"_") {
                // Collapse `<*>.<*>`, `<*>-<*>`, `<*>_<*>`.
            } else {
                let mut end = pending.1;
                // A minus sign right before a number belongs to it.
                if punct.last() == Some(&b'-') {
                    let before = if pending.1 - pending.0 >= 2 {
                        b.get(pending.1 - 2).copied()
                    } else {
                        out.last().copied()
                    };
                    if before.is_none_or(|p| !is_seg_byte(p)) {
                        end -= 1;
                    }
                }
                out.extend_from_slice(tok.get(pending.0..end).unwrap_or(&[]));
                out.extend_from_slice(WILDCARD_TEXT.as_bytes());
            }
            last_was_param = true;
        } else {
            out.extend_from_slice(tok.get(pending.0..i).unwrap_or(&[]));
            any_const_alnum = true;
            last_was_param = false;
        }
        pending = (i, i);
    }
    out.extend_from_slice(tok.get(pending.0..pending.1).unwrap_or(&[]));
    if !any_param {
        out.clear();
        return MaskKind::Constant;
    }
    if out == WILDCARD_TEXT.as_bytes() {
        out.clear();
        return MaskKind::Wildcard;
    }
    MaskKind::Partial {
        bare: !any_const_alnum,
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Whether a token is an English weekday or month name (full or three-letter, any case,
/// with trailing punctuation): a date part, hence a parameter.
fn is_date_word(tok: &[u8]) -> bool {
    // Trailing ASCII punctuation is trimmed byte by byte: every byte of a non-ASCII char is
    // >= 0x80, so this equals trimming chars.
    let mut t = tok;
    while let Some((&last, rest)) = t.split_last() {
        if class(last) & C_PUNCT == 0 {
            break;
        }
        t = rest;
    }
    if t.len() < 3 || t.len() > 9 {
        return false;
    }
    // Every name starts with one of these letters.
    if !matches!(
        t.first().map(u8::to_ascii_lowercase),
        Some(b'm' | b't' | b'w' | b'f' | b's' | b'j' | b'a' | b'o' | b'n' | b'd')
    ) {
        return false;
    }
    let mut buf = [0u8; 9];
    for (d, s) in buf.iter_mut().zip(t) {
        *d = s.to_ascii_lowercase();
    }
    let w = buf.get(..t.len()).unwrap_or(&[]);
    matches!(
        w,
        b"mon"
            | b"tue"
            | b"wed"
            | b"thu"
            | b"fri"
            | b"sat"
            | b"sun"
            | b"monday"
            | b"tuesday"
            | b"wednesday"
            | b"thursday"
            | b"friday"
            | b"saturday"
            | b"sunday"
            | b"jan"
            | b"feb"
            | b"mar"
            | b"apr"
            | b"may"
            | b"jun"
            | b"jul"
            | b"aug"
            | b"sep"
            | b"oct"
            | b"nov"
            | b"dec"
            | b"january"
            | b"february"
            | b"march"
            | b"april"
            | b"june"
            | b"july"
            | b"august"
            | b"september"
            | b"october"
            | b"november"
            | b"december"
    )
}

/// Unit words skipped in skeletons when they follow a parameter (`12 ms`, `1.2 KB)`).
fn is_unit_word(tok: &str) -> bool {
    let t = tok.trim_matches(|c: char| c.is_ascii_punctuation());
    matches!(
        t.to_ascii_lowercase().as_str(),
        "b" | "kb"
            | "mb"
            | "gb"
            | "tb"
            | "kib"
            | "mib"
            | "gib"
            | "byte"
            | "bytes"
            | "ns"
            | "us"
            | "ms"
            | "s"
            | "sec"
            | "secs"
            | "second"
            | "seconds"
            | "min"
            | "mins"
            | "minutes"
            | "h"
            | "hr"
            | "hrs"
            | "hours"
            | "%"
    )
}

/// Token interner: text <-> `u32` id. Id 0 is the wildcard.
///
/// An open-addressing hash table (linear probing, at most half full) of ids, keyed by a
/// seeded hash of the token bytes; the texts live in one arena string. The hash mixes 8-byte
/// words with the folded multiply of aHash's fallback hasher, from a seed drawn at random per
/// interner, so colliding tokens cannot be prepared in advance.
#[derive(Debug, Clone)]
struct Interner {
    /// `id + 1` per slot, 0 when empty; the length is a power of two.
    slots: Vec<u32>,
    /// Per id.
    entries: Vec<InternEntry>,
    /// Every interned text, back to back.
    arena: String,
    seed: u64,
}

#[derive(Debug, Clone, Copy)]
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
    fn new() -> Self {
        // A random seed per miner (aHash's RandomState draws it from the OS).
        let seed = ahash::RandomState::new().hash_one(0u64);
        let mut i = Interner {
            slots: vec![0; 256],
            entries: Vec::new(),
            arena: String::new(),
            seed,
        };
        let id = i.intern(WILDCARD_TEXT, true, true);
        debug_assert_eq!(id, WILDCARD);
        i
    }

    fn intern(&mut self, text: &str, masked: bool, param_like: bool) -> u32 {
        self.intern_bytes(text.as_bytes(), masked, param_like)
    }

    /// [`Interner::intern`] for the UTF-8 bytes of a text.
    fn intern_bytes(&mut self, b: &[u8], masked: bool, param_like: bool) -> u32 {
        let short = b.len() <= 8;
        let word = if short { small_word(b) } else { 0 };
        let hash = hash_token(self.seed, b, word);
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

    fn text(&self, id: u32) -> &str {
        self.entries
            .get(id as usize)
            .and_then(|e| self.arena.get(e.start..e.end))
            .unwrap_or(WILDCARD_TEXT)
    }

    fn is_param_like(&self, id: u32) -> bool {
        self.entries.get(id as usize).is_none_or(|e| e.param_like)
    }

    fn is_masked(&self, id: u32) -> bool {
        self.entries.get(id as usize).is_none_or(|e| e.masked)
    }

    fn len(&self) -> usize {
        self.entries.len()
    }
}

#[derive(Debug, Clone, Default)]
struct Node {
    children: AHashMap<u32, usize>,
    wildcard: Option<usize>,
    /// At leaves: (cluster slot, shape index).
    clusters: Vec<(usize, u8)>,
}

#[derive(Debug, Clone)]
struct Shape {
    tokens: Vec<u32>,
    leaf: usize,
}

#[derive(Debug, Clone)]
struct Cluster {
    id: u64,
    shapes: Vec<Shape>,
    skeleton: u64,
    size: u64,
    last_used: u64,
    /// Cached template text; `None` when it must be recomputed.
    text: Option<String>,
}

/// A summary of one template, for reports and evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TemplateInfo {
    /// Template id (see [`TemplateMatch::template_id`]).
    pub template_id: u64,
    /// Template text with `<*>` for parameters.
    pub text: String,
    /// Lines matched so far.
    pub size: u64,
}

/// The streaming template miner for one log group.
#[derive(Debug, Clone)]
pub struct TemplateMiner {
    cfg: TemplateConfig,
    interner: Interner,
    nodes: Vec<Node>,
    /// Length layer: token count (at most `max_tokens`) -> node index.
    by_len: Vec<Option<usize>>,
    clusters: Vec<Option<Cluster>>,
    free: Vec<usize>,
    by_id: AHashMap<u64, usize>,
    by_skeleton: AHashMap<u64, usize>,
    next_id: u64,
    clock: u64,
    live: usize,
    evicted: u64,
    scratch: Vec<u8>,
    tokens: Vec<u32>,
}

impl TemplateMiner {
    /// An empty miner. Out-of-range configuration values are clamped to their documented
    /// bounds (use [`crate::config::StatisticsConfig::validate`] to reject them instead).
    pub fn new(cfg: &TemplateConfig) -> Self {
        let mut cfg = cfg.clone();
        cfg.depth = cfg.depth.max(3);
        cfg.max_children = cfg.max_children.max(1);
        cfg.max_templates = cfg.max_templates.max(1);
        cfg.max_tokens = cfg.max_tokens.max(8);
        cfg.max_interned = cfg.max_interned.max(1000);
        if !(cfg.similarity_threshold > 0.0 && cfg.similarity_threshold <= 1.0) {
            cfg.similarity_threshold = 0.5;
        }
        TemplateMiner {
            cfg,
            interner: Interner::new(),
            nodes: vec![Node::default()],
            by_len: Vec::new(),
            clusters: Vec::new(),
            free: Vec::new(),
            by_id: AHashMap::new(),
            by_skeleton: AHashMap::new(),
            next_id: 1,
            clock: 0,
            live: 0,
            evicted: 0,
            scratch: Vec::with_capacity(64),
            tokens: Vec::with_capacity(64),
        }
    }

    /// Number of live templates.
    pub fn len(&self) -> usize {
        self.live
    }

    /// Whether no template exists yet.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Templates evicted so far (least recently matched first).
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Masks and tokenises `line` into `self.tokens`.
    fn tokenize(&mut self, line: &str) {
        self.tokens.clear();
        let max = self.cfg.max_tokens;
        let bytes = line.as_bytes();
        let tokens = Tokens { bytes, pos: 0 };
        for (start, end, flags) in tokens {
            if self.tokens.len() + 1 >= max {
                self.tokens.push(WILDCARD);
                break;
            }
            // Whitespace is ASCII, so the token is the UTF-8 of a `&str` slice.
            let tok = bytes.get(start..end).unwrap_or(&[]);
            // A date word is letters and trailing punctuation: no digit.
            if flags & C_DIGIT == 0 && self.cfg.mask_dates && is_date_word(tok) {
                self.tokens.push(WILDCARD);
                continue;
            }
            let kind = if flags & (C_DIGIT | C_SLASH) == 0 {
                MaskKind::Constant
            } else if flags & C_NOT_DIGIT == 0 {
                // Only digits: one numeric segment, what `mask_marked_token` makes `<*>`.
                MaskKind::Wildcard
            } else {
                mask_marked_token(tok, flags, &mut self.scratch)
            };
            let id = match kind {
                MaskKind::Constant => self.interner.intern_bytes(tok, false, false),
                MaskKind::Wildcard => WILDCARD,
                MaskKind::Partial { bare } => self.interner.intern_bytes(&self.scratch, true, bare),
            };
            self.tokens.push(id);
        }
    }

    /// The skeleton hash of a token sequence: constant tokens only, skipping a unit word that
    /// follows a parameter.
    fn skeleton(&self, tokens: &[u32]) -> u64 {
        let mut parts: Vec<&[u8]> = Vec::with_capacity(tokens.len());
        let mut after_param = false;
        for &t in tokens {
            if self.interner.is_masked(t) {
                after_param = true;
                continue;
            }
            let text = self.interner.text(t);
            if after_param && is_unit_word(text) {
                after_param = false;
                continue;
            }
            after_param = false;
            parts.push(text.as_bytes());
        }
        aiops_core::stable_hash(&parts)
    }

    /// Finds (creating if needed) the leaf for a token sequence.
    fn leaf_for(&mut self, tokens: &[u32], create: bool) -> Option<usize> {
        let n = tokens.len();
        let mut node = match self.by_len.get(n).copied().flatten() {
            Some(i) => i,
            None => {
                if !create {
                    return None;
                }
                self.nodes.push(Node::default());
                let i = self.nodes.len() - 1;
                if self.by_len.len() <= n {
                    self.by_len.resize(n + 1, None);
                }
                if let Some(slot) = self.by_len.get_mut(n) {
                    *slot = Some(i);
                }
                i
            }
        };
        let route = (self.cfg.depth - 2).min(n);
        for &tok in tokens.iter().take(route) {
            let masked = self.interner.is_masked(tok);
            let cur = self.nodes.get(node)?;
            let next = if !masked {
                cur.children.get(&tok).copied()
            } else {
                None
            };
            let next = match next {
                Some(c) => Some(c),
                None => {
                    let can_add = !masked && cur.children.len() < self.cfg.max_children;
                    if !create {
                        // Without creating: constant tokens not present fall back to wildcard.
                        cur.wildcard
                    } else if can_add {
                        self.nodes.push(Node::default());
                        let c = self.nodes.len() - 1;
                        if let Some(cur) = self.nodes.get_mut(node) {
                            cur.children.insert(tok, c);
                        }
                        Some(c)
                    } else {
                        match cur.wildcard {
                            Some(w) => Some(w),
                            None => {
                                self.nodes.push(Node::default());
                                let c = self.nodes.len() - 1;
                                if let Some(cur) = self.nodes.get_mut(node) {
                                    cur.wildcard = Some(c);
                                }
                                Some(c)
                            }
                        }
                    }
                }
            };
            node = next?;
        }
        Some(node)
    }

    /// Similarity of a shape to the line: the share of the template's constant positions that
    /// the line matches (1 when the template is all parameters), and the number of parameter
    /// positions (the tie-breaker). This differs from Drain's `simSeq`, which divides by the
    /// full length: a template that has already generalised some positions is not penalised
    /// for them.
    fn similarity(template: &[u32], line: &[u32]) -> (f64, usize) {
        if template.len() != line.len() || line.is_empty() {
            return (0.0, 0);
        }
        let mut same = 0usize;
        let mut params = 0usize;
        for (&a, &b) in template.iter().zip(line) {
            if a == WILDCARD {
                params += 1;
            } else if a == b {
                same += 1;
            }
        }
        let constants = line.len() - params;
        let sim = if constants == 0 {
            1.0
        } else {
            same as f64 / constants as f64
        };
        (sim, params)
    }

    /// Adds one line and returns the template it joined.
    pub fn add(&mut self, line: &str) -> TemplateMatch {
        self.tokenize(line);
        if self.interner.len() > self.cfg.max_interned {
            self.compact_interner();
            self.tokenize(line);
        }
        self.clock += 1;
        let tokens = std::mem::take(&mut self.tokens);
        let result = self.add_tokens(&tokens);
        self.tokens = tokens;
        result
    }

    fn add_tokens(&mut self, tokens: &[u32]) -> TemplateMatch {
        // 1. Drain: most similar shape in the leaf.
        let leaf = self.leaf_for(tokens, true);
        let mut best: Option<(usize, u8, f64, usize)> = None;
        if let Some(leaf) = leaf.and_then(|l| self.nodes.get(l)) {
            for &(slot, shape) in &leaf.clusters {
                let Some(Some(c)) = self.clusters.get(slot) else {
                    continue;
                };
                let Some(s) = c.shapes.get(shape as usize) else {
                    continue;
                };
                let (sim, params) = Self::similarity(&s.tokens, tokens);
                let better = match best {
                    None => true,
                    Some((_, _, bs, bp)) => sim > bs || (sim == bs && params > bp),
                };
                if better {
                    best = Some((slot, shape, sim, params));
                }
            }
        }
        if let Some((slot, shape, sim, _)) = best
            && sim >= self.cfg.similarity_threshold
        {
            self.merge_into(slot, shape as usize, tokens);
            return self.touch(slot, false);
        }
        // 2. Same skeleton, other shape (optional parameters).
        let skeleton = self.skeleton(tokens);
        if let Some(&slot) = self.by_skeleton.get(&skeleton)
            && let Some(leaf) = leaf
        {
            let same_len = self
                .clusters
                .get(slot)
                .and_then(|c| c.as_ref())
                .and_then(|c| c.shapes.iter().position(|s| s.tokens.len() == tokens.len()));
            match same_len {
                Some(shape) => {
                    self.merge_into(slot, shape, tokens);
                    return self.touch(slot, false);
                }
                None => {
                    if let Some(Some(c)) = self.clusters.get_mut(slot)
                        && c.shapes.len() < MAX_SHAPES
                    {
                        let idx = c.shapes.len();
                        c.shapes.push(Shape {
                            tokens: tokens.to_vec(),
                            leaf,
                        });
                        c.text = None;
                        if let Some(n) = self.nodes.get_mut(leaf) {
                            n.clusters.push((slot, idx as u8));
                        }
                        return self.touch(slot, false);
                    }
                }
            }
        }
        // 3. New cluster.
        if self.live >= self.cfg.max_templates {
            self.evict_lru();
        }
        let id = self.next_id;
        self.next_id += 1;
        let cluster = Cluster {
            id,
            shapes: vec![Shape {
                tokens: tokens.to_vec(),
                leaf: leaf.unwrap_or(0),
            }],
            skeleton,
            size: 0,
            last_used: 0,
            text: None,
        };
        let slot = match self.free.pop() {
            Some(s) => {
                if let Some(c) = self.clusters.get_mut(s) {
                    *c = Some(cluster);
                }
                s
            }
            None => {
                self.clusters.push(Some(cluster));
                self.clusters.len() - 1
            }
        };
        self.live += 1;
        self.by_id.insert(id, slot);
        self.by_skeleton.entry(skeleton).or_insert(slot);
        if let Some(n) = leaf.and_then(|l| self.nodes.get_mut(l)) {
            n.clusters.push((slot, 0));
        }
        self.touch(slot, true)
    }

    fn merge_into(&mut self, slot: usize, shape: usize, tokens: &[u32]) {
        if let Some(Some(c)) = self.clusters.get_mut(slot)
            && let Some(s) = c.shapes.get_mut(shape)
        {
            let mut changed = false;
            for (t, &l) in s.tokens.iter_mut().zip(tokens) {
                if *t != l && *t != WILDCARD {
                    *t = WILDCARD;
                    changed = true;
                }
            }
            if changed {
                c.text = None;
            }
        }
    }

    fn touch(&mut self, slot: usize, created: bool) -> TemplateMatch {
        let clock = self.clock;
        match self.clusters.get_mut(slot) {
            Some(Some(c)) => {
                c.size += 1;
                c.last_used = clock;
                TemplateMatch {
                    template_id: c.id,
                    created,
                }
            }
            _ => TemplateMatch {
                template_id: 0,
                created,
            },
        }
    }

    /// Evicts the least recently matched tenth of the clusters (at least one), so that
    /// eviction cost is amortised.
    fn evict_lru(&mut self) {
        let mut order: Vec<(u64, u64, usize)> = self
            .clusters
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.as_ref().map(|c| (c.last_used, c.id, i)))
            .collect();
        order.sort_unstable();
        let n = (self.live / 10).max(1);
        for &(_, _, slot) in order.iter().take(n) {
            self.remove_cluster(slot);
        }
    }

    fn remove_cluster(&mut self, slot: usize) {
        let Some(c) = self.clusters.get_mut(slot).and_then(Option::take) else {
            return;
        };
        for s in &c.shapes {
            if let Some(n) = self.nodes.get_mut(s.leaf) {
                n.clusters.retain(|&(sl, _)| sl != slot);
            }
        }
        self.by_id.remove(&c.id);
        if self.by_skeleton.get(&c.skeleton) == Some(&slot) {
            self.by_skeleton.remove(&c.skeleton);
        }
        self.free.push(slot);
        self.live -= 1;
        self.evicted += 1;
    }

    /// Rebuilds the interner (and the tree, whose keys are token ids) from the live clusters.
    fn compact_interner(&mut self) {
        let old = std::mem::replace(&mut self.interner, Interner::new());
        let mut remap: AHashMap<u32, u32> = AHashMap::new();
        remap.insert(WILDCARD, WILDCARD);
        // Rebuild the tree from scratch.
        self.nodes = vec![Node::default()];
        self.by_len.clear();
        let slots: Vec<usize> = (0..self.clusters.len()).collect();
        for slot in slots {
            let Some(Some(c)) = self.clusters.get_mut(slot) else {
                continue;
            };
            let mut shapes = std::mem::take(&mut c.shapes);
            for s in &mut shapes {
                for t in &mut s.tokens {
                    let new = match remap.get(t) {
                        Some(&n) => n,
                        None => {
                            let n = self.interner.intern(
                                old.text(*t),
                                old.is_masked(*t),
                                old.is_param_like(*t),
                            );
                            remap.insert(*t, n);
                            n
                        }
                    };
                    *t = new;
                }
            }
            for (i, s) in shapes.iter_mut().enumerate() {
                let leaf = self.leaf_for(&s.tokens, true).unwrap_or(0);
                s.leaf = leaf;
                if let Some(n) = self.nodes.get_mut(leaf) {
                    n.clusters.push((slot, i as u8));
                }
            }
            if let Some(Some(c)) = self.clusters.get_mut(slot) {
                c.shapes = shapes;
            }
        }
    }

    /// The template text of a cluster (`None` for an unknown or evicted id). For a cluster with
    /// several shapes, the shapes are aligned (longest common subsequence) and every stretch
    /// where they differ becomes one `<*>`.
    pub fn template_text(&mut self, template_id: u64) -> Option<String> {
        let slot = *self.by_id.get(&template_id)?;
        let c = self.clusters.get(slot)?.as_ref()?;
        if let Some(t) = &c.text {
            return Some(t.clone());
        }
        let text = self.render(c);
        if let Some(Some(c)) = self.clusters.get_mut(slot) {
            c.text = Some(text.clone());
        }
        Some(text)
    }

    fn render(&self, c: &Cluster) -> String {
        let mut merged: Vec<u32> = c
            .shapes
            .first()
            .map(|s| s.tokens.clone())
            .unwrap_or_default();
        for s in c.shapes.iter().skip(1) {
            merged = align(&merged, &s.tokens);
        }
        let mut out = String::new();
        for (i, &t) in merged.iter().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            out.push_str(self.interner.text(t));
        }
        out
    }

    /// Every live template, ordered by id.
    pub fn templates(&mut self) -> Vec<TemplateInfo> {
        let mut ids: Vec<u64> = self.by_id.keys().copied().collect();
        ids.sort_unstable();
        ids.into_iter()
            .filter_map(|id| {
                let size = self
                    .by_id
                    .get(&id)
                    .and_then(|&s| self.clusters.get(s))
                    .and_then(|c| c.as_ref())
                    .map_or(0, |c| c.size);
                self.template_text(id).map(|text| TemplateInfo {
                    template_id: id,
                    text,
                    size,
                })
            })
            .collect()
    }
}

/// Aligns two token sequences by longest common subsequence; tokens outside the common
/// subsequence become a single wildcard per stretch.
fn align(a: &[u32], b: &[u32]) -> Vec<u32> {
    let (n, m) = (a.len(), b.len());
    // Bounded by max_tokens (≤ a few hundred), so the table stays small.
    let mut dp = vec![0u16; (n + 1) * (m + 1)];
    let idx = |i: usize, j: usize| i * (m + 1) + j;
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            let v = if a.get(i) == b.get(j) {
                dp.get(idx(i + 1, j + 1)).copied().unwrap_or(0) + 1
            } else {
                dp.get(idx(i + 1, j))
                    .copied()
                    .unwrap_or(0)
                    .max(dp.get(idx(i, j + 1)).copied().unwrap_or(0))
            };
            if let Some(d) = dp.get_mut(idx(i, j)) {
                *d = v;
            }
        }
    }
    let mut out = Vec::with_capacity(n.max(m));
    let (mut i, mut j) = (0, 0);
    let mut gap = false;
    let push_gap = |out: &mut Vec<u32>, gap: &mut bool| {
        if *gap {
            if out.last() != Some(&WILDCARD) {
                out.push(WILDCARD);
            }
            *gap = false;
        }
    };
    while i < n && j < m {
        if a.get(i) == b.get(j) {
            push_gap(&mut out, &mut gap);
            if let Some(&t) = a.get(i) {
                out.push(t);
            }
            i += 1;
            j += 1;
        } else if dp.get(idx(i + 1, j)).copied().unwrap_or(0)
            >= dp.get(idx(i, j + 1)).copied().unwrap_or(0)
        {
            gap = true;
            i += 1;
        } else {
            gap = true;
            j += 1;
        }
    }
    if i < n || j < m {
        gap = true;
    }
    push_gap(&mut out, &mut gap);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(tok: &str) -> String {
        let mut out = String::new();
        match mask_token(tok, &mut out) {
            MaskKind::Constant => tok.to_string(),
            MaskKind::Wildcard => WILDCARD_TEXT.to_string(),
            MaskKind::Partial { .. } => out,
        }
    }

    fn split(line: &str) -> Vec<(&str, u8)> {
        Tokens {
            bytes: line.as_bytes(),
            pos: 0,
        }
        .map(|(a, b, f)| (&line[a..b], f))
        .collect()
    }

    #[test]
    fn tokens_split_on_ascii_whitespace_and_flag_digits_and_slashes() {
        assert_eq!(
            split("  a1 b\tc/d\n\x0be\r\x0cf  é9 "),
            vec![
                ("a1", C_DIGIT | C_NOT_DIGIT),
                ("b", C_NOT_DIGIT),
                ("c/d", C_SLASH | C_NOT_DIGIT),
                // Vertical tab is not ASCII whitespace for `split_ascii_whitespace` either.
                ("\x0be", C_NOT_DIGIT),
                ("f", C_NOT_DIGIT),
                ("é9", C_DIGIT | C_NOT_DIGIT),
            ]
        );
        assert_eq!(split(""), vec![]);
        assert_eq!(split(" \t "), vec![]);
        assert_eq!(
            split("x\\y 0042"),
            vec![("x\\y", C_SLASH | C_NOT_DIGIT), ("0042", C_DIGIT)]
        );
        for line in ["a  b\tc", "\u{a0}x y\u{2003}z", " lead trail "] {
            let ours: Vec<&str> = split(line).into_iter().map(|(t, _)| t).collect();
            let std: Vec<&str> = line.split_ascii_whitespace().collect();
            assert_eq!(ours, std, "{line:?}");
        }
    }

    #[test]
    fn digit_only_tokens_take_the_shortcut_to_the_same_wildcard() {
        let mut out = String::new();
        assert_eq!(mask_token("0042", &mut out), MaskKind::Wildcard);
        let mut m = TemplateMiner::new(&TemplateConfig::default());
        m.tokenize("0042 abc 7 x7");
        let abc = m.interner.intern("abc", false, false);
        let x7 = m.interner.intern("x7", false, false);
        assert_eq!(m.tokens, vec![WILDCARD, abc, WILDCARD, x7]);
    }

    #[test]
    fn date_words() {
        for w in ["Mon", "jun.", "SEPTEMBER,", "Jun/", "thu:"] {
            assert!(is_date_word(w.as_bytes()), "{w}");
        }
        for w in ["Monkey", "ju", "Jun2", "octopus", "", "...", "é", "Xmas"] {
            assert!(!is_date_word(w.as_bytes()), "{w}");
        }
    }

    #[test]
    fn interner_returns_one_id_per_text() {
        let mut i = Interner::new();
        assert_eq!(i.intern(WILDCARD_TEXT, true, true), WILDCARD);
        let ab = i.intern("ab", false, false);
        // Same first, middle and last byte as "ab" but longer: a different text.
        let abb = i.intern("abb", false, false);
        let long = i.intern("a-much-longer-token-text", true, false);
        assert_eq!((ab, abb, long), (1, 2, 3));
        assert_eq!(i.intern("ab", true, true), ab);
        assert_eq!(i.intern("a-much-longer-token-text", false, false), long);
        assert_eq!(i.text(abb), "abb");
        assert!(!i.is_masked(ab) && !i.is_param_like(ab));
        assert!(i.is_masked(long) && !i.is_param_like(long));
        // Past the initial table size, ids and texts survive the growth.
        let ids: Vec<u32> = (0..5000)
            .map(|n| i.intern(&format!("t{n}"), false, false))
            .collect();
        assert_eq!(ids.first(), Some(&4));
        assert_eq!(ids.last(), Some(&5003));
        for (n, &id) in ids.iter().enumerate() {
            assert_eq!(i.intern(&format!("t{n}"), false, false), id);
            assert_eq!(i.text(id), format!("t{n}"));
        }
        assert_eq!(i.len(), 5004);
        assert_eq!(i.text(99_999), WILDCARD_TEXT);
    }

    #[test]
    fn masking_rules() {
        let cases = [
            ("hello", "hello"),
            ("42", "<*>"),
            ("-17", "<*>"),
            ("3.14", "<*>"),
            ("10.0.0.1", "<*>"),
            ("10.0.0.1:8080", "<*>:<*>"),
            ("/10.250.19.102:54106", "/<*>:<*>"),
            ("blk_-1608999687919862906", "blk_<*>"),
            ("blk_38865049064139660", "blk_<*>"),
            ("uid=0", "uid=<*>"),
            ("(uid=0)", "(uid=<*>)"),
            ("0x1F2e", "<*>"),
            ("a489c868f0c37da93b76227c91bb03908ac0e742", "<*>"),
            ("b9000564-fe1a-409b-b8cc-1e88b294cd1d", "<*>"),
            ("[b9000564-fe1a-409b-b8cc-1e88b294cd1d]", "[<*>]"),
            ("/var/lib/nova/instances/_base/a489c8", "<*>"),
            ("hdfs://host:9000/path", "hdfs://<*>"),
            ("SOCKS5", "SOCKS5"),
            ("ee0", "ee0"),
            ("node-129", "node-<*>"),
            ("core.2275", "core.<*>"),
            ("attempt_1445144423722_0020_m_000000_0", "attempt_<*>_m_<*>"),
            ("07:07:00", "<*>:<*>:<*>"),
            ("(18.4", "(<*>"),
            ("<1", "<<*>"),
            ("x-5", "x-<*>"),
            ("héllo", "héllo"),
            ("", ""),
        ];
        for (input, want) in cases {
            assert_eq!(masked(input), want, "{input}");
        }
    }

    #[test]
    fn drain_groups_and_generalises() {
        let mut m = TemplateMiner::new(&TemplateConfig::default());
        let a = m.add("Received block blk_1 of size 67108864 from /10.251.42.84");
        let b = m.add("Received block blk_2 of size 3 from /10.251.42.85");
        assert!(a.created);
        assert!(!b.created);
        assert_eq!(a.template_id, b.template_id);
        assert_eq!(
            m.template_text(a.template_id).as_deref(),
            Some("Received block blk_<*> of size <*> from /<*>")
        );
        // Different constant words, same length: a different template.
        let c = m.add("Deleting block blk_1 file /a/b/blk_1");
        assert_ne!(c.template_id, a.template_id);
        // A constant word that differs in a long line is generalised.
        let d = m.add("session opened for user root by uid 0");
        let e = m.add("session opened for user news by uid 0");
        assert_eq!(d.template_id, e.template_id);
        assert_eq!(
            m.template_text(d.template_id).as_deref(),
            Some("session opened for user <*> by uid <*>")
        );
        assert_eq!(m.len(), 3);
        assert_eq!(m.template_text(999), None);
    }

    #[test]
    fn optional_parameters_share_a_template() {
        let mut m = TemplateMiner::new(&TemplateConfig::default());
        let a = m.add(
            "proxy.example.com:5070 close, 403 bytes sent, 426 bytes received, lifetime 00:01",
        );
        let b = m.add(
            "proxy.example.com:5070 close, 1190 bytes (1.16 KB) sent, 1671 bytes (1.63 KB) received, lifetime <1 sec",
        );
        assert_eq!(a.template_id, b.template_id);
        assert!(!b.created);
        assert_eq!(
            m.template_text(a.template_id).as_deref(),
            Some(
                "proxy.example.com:<*> close, <*> bytes <*> sent, <*> bytes <*> received, lifetime <*>"
            )
        );
        // A constant extra word is not optional: a different template.
        let c = m.add("proxy.example.com:5070 close, 403 bytes sent, 426 bytes received, lifetime 00:01 user=root");
        assert_ne!(c.template_id, a.template_id);
    }

    #[test]
    fn least_recently_used_templates_are_evicted() {
        let cfg = TemplateConfig {
            max_templates: 3,
            ..TemplateConfig::default()
        };
        let mut m = TemplateMiner::new(&cfg);
        let ids: Vec<u64> = ["alpha one", "beta two three", "gamma four five six"]
            .iter()
            .map(|l| m.add(l).template_id)
            .collect();
        assert_eq!(ids, vec![1, 2, 3]);
        // Touch 1 and 3; adding a fourth evicts 2 (least recently used).
        m.add("alpha one");
        m.add("gamma four five six");
        let d = m.add("delta seven eight nine ten");
        assert_eq!(d.template_id, 4);
        assert_eq!(m.len(), 3);
        assert_eq!(m.evicted(), 1);
        assert_eq!(m.template_text(2), None);
        assert_eq!(m.template_text(1).as_deref(), Some("alpha one"));
        // Seen again, it is a new template with a new id.
        assert_eq!(m.add("beta two three").template_id, 5);
    }

    #[test]
    fn interner_compaction_keeps_templates() {
        let cfg = TemplateConfig {
            max_interned: 1000,
            max_templates: 10,
            ..TemplateConfig::default()
        };
        let mut m = TemplateMiner::new(&cfg);
        let keep = m.add("steady state message here").template_id;
        for i in 0..3000 {
            // Distinct constant words grow the interner past its bound.
            m.add(&format!("w{}x{} unique words", i, "abcdefgh"));
            m.add("steady state message here");
        }
        assert!(m.interner.len() <= 1000 + 8);
        assert_eq!(m.add("steady state message here").template_id, keep);
        assert_eq!(
            m.template_text(keep).as_deref(),
            Some("steady state message here")
        );
    }

    #[test]
    fn long_lines_are_bounded_and_dates_masked() {
        let mut m = TemplateMiner::new(&TemplateConfig::default());
        let line = (0..500)
            .map(|i| format!("w{i}"))
            .collect::<Vec<_>>()
            .join(" ");
        let t = m.add(&line);
        let text = m.template_text(t.template_id).unwrap_or_default();
        assert_eq!(text.split(' ').count(), 128);
        assert!(text.ends_with("<*>"));
        let a = m.add("connection from 1.2.3.4 () at Fri Jun 17 07:07:00 2005");
        let b = m.add("connection from 1.2.3.5 () at Sun Jul 10 12:00:01 2005");
        assert_eq!(a.template_id, b.template_id);
        assert_eq!(
            m.template_text(a.template_id).as_deref(),
            Some("connection from <*> () at <*> <*> <*> <*>:<*>:<*> <*>")
        );
    }
}
