//! Tokenizer and masking: splits a line into tokens and replaces the variable parts of each
//! token with `<*>`.
//!
//! A line is first cut at ASCII whitespace into chunks. A chunk that holds a delimiter of a
//! structured fragment (`=`, `:`, `,`, `;`, `|`, brackets, quotes) is cut further into
//! *pieces*, each a delimiter run and the text after it (`uid=0,tty=ssh` becomes `uid`,
//! `=0`, `,tty`, `=ssh`), so constant keys stay constant and each value is a position of its
//! own. Delimiters at the end of a chunk stay with its last piece (`init()`, `error:`). This
//! is the preprocessing of Drain (P. He et al., ICWS 2017: split on delimiters, mask known
//! variable shapes) with the delimiter set of the Loghub-2.0 template rules (Z. A. Khan et
//! al., "Guidelines for Assessing the Accuracy of Log Message Template Identification
//! Techniques", ICSE 2022; Z. Jiang et al., "A Large-scale Evaluation for Log Parsing
//! Techniques: How Far are We?", ISSTA 2024).
//!
//! Masking works on the *segments* of a piece (runs of letters and digits between
//! punctuation), so `blk_-1234` becomes `blk_<*>` and `5000ms` becomes `<*>ms`: the constant
//! prefix and suffix around a variable are kept. A run of variable segments joined by `.`,
//! `-` or `_` is one variable, including a constant segment between two of them
//! (`attempt_1445_0020_m_000000_0` becomes `attempt_<*>`). UUIDs, URLs (after the scheme) and
//! paths (`/a/b/c`, `C:\x\y`, registry keys `HKLM\a\b`) are one variable each, whatever
//! their separators; a host name right before `:<port>` is one variable with the port.

/// The text that stands for a parameter in templates.
pub const WILDCARD_TEXT: &str = "<*>";

/// Byte class: ASCII whitespace, as `str::split_ascii_whitespace` splits on.
pub(super) const C_SPACE: u8 = 1;
/// Byte class: ASCII digit.
pub(super) const C_DIGIT: u8 = 2;
/// Byte class: `/` or `\\` (path markers).
pub(super) const C_SLASH: u8 = 4;
/// Byte class: part of a segment (ASCII letter or digit, or any byte of a non-ASCII char).
const C_SEG: u8 = 8;
/// Byte class: ASCII punctuation.
const C_PUNCT: u8 = 16;
/// Byte class: ASCII hexadecimal digit.
const C_HEX: u8 = 32;
/// Byte class: anything but an ASCII digit.
pub(super) const C_NOT_DIGIT: u8 = 64;
/// Byte class: a delimiter of structured fragments, where a chunk is cut into pieces.
pub(super) const C_SPLIT: u8 = 128;

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
        if matches!(
            b,
            b'=' | b','
                | b':'
                | b';'
                | b'|'
                | b'('
                | b')'
                | b'['
                | b']'
                | b'{'
                | b'}'
                | b'"'
                | b'\''
        ) {
            c |= C_SPLIT;
        }
        t[i] = c;
        i += 1;
    }
    t
};

pub(super) fn class(b: u8) -> u8 {
    BYTE_CLASS[b as usize]
}

fn is_seg_byte(b: u8) -> bool {
    class(b) & C_SEG != 0
}

/// Splits a line on ASCII whitespace (as `str::split_ascii_whitespace`) in one pass, yielding
/// each chunk's byte range and which of [`C_DIGIT`], [`C_SLASH`], [`C_NOT_DIGIT`] and
/// [`C_SPLIT`] its bytes hold.
pub(super) struct Chunks<'a> {
    pub(super) bytes: &'a [u8],
    pub(super) pos: usize,
}

impl Iterator for Chunks<'_> {
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
        Some((
            start,
            i,
            flags & (C_DIGIT | C_SLASH | C_NOT_DIGIT | C_SPLIT),
        ))
    }
}

/// Whether the delimiter at `i` of `chunk` cuts it: quotes only when not inside a word
/// (`don't` stays whole), `:` not before a path (`C:\`, `http://` are kept whole).
fn cuts_at(chunk: &[u8], i: usize) -> bool {
    let Some(&c) = chunk.get(i) else {
        return false;
    };
    if class(c) & C_SPLIT == 0 {
        return false;
    }
    match c {
        b'\'' | b'"' => {
            let before = i.checked_sub(1).and_then(|j| chunk.get(j)).copied();
            let after = chunk.get(i + 1).copied();
            !(before.is_some_and(is_seg_byte) && after.is_some_and(is_seg_byte))
        }
        b':' => !matches!(chunk.get(i + 1), Some(b'/' | b'\\')),
        _ => true,
    }
}

/// Cuts a chunk into pieces (see the module documentation): pushes each piece's byte range,
/// relative to the chunk, to `out` (cleared first). A chunk without a cut is one piece.
pub(super) fn pieces(chunk: &[u8], out: &mut Vec<(usize, usize)>) {
    out.clear();
    let n = chunk.len();
    let mut start = 0;
    let mut i = 0;
    while i < n {
        // A cut is the start of a delimiter run that follows text and precedes more text.
        let delim = chunk.get(i).is_some_and(|&c| class(c) & C_SPLIT != 0);
        if delim && i > start && cuts_at(chunk, i) && !cuts_at(chunk, i - 1) {
            let mut j = i;
            while j < n && class(chunk.get(j).copied().unwrap_or(b' ')) & C_SPLIT != 0 {
                j += 1;
            }
            if j >= n {
                break;
            }
            out.push((start, i));
            start = i;
            i = j;
            continue;
        }
        i += 1;
    }
    out.push((start, n));
}

/// How a token was masked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum MaskKind {
    /// No parameter inside: the token is used as is.
    Constant,
    /// The whole token is a parameter.
    Wildcard,
    /// Part of the token is a parameter; the masked text is in the buffer. `bare` is true when
    /// everything besides the parameters is punctuation (e.g. `<*>:<*>`, `(<*>)`).
    Partial { bare: bool },
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

/// Whether a token core is a hardware address or similar identifier: at least four groups of
/// two or more hexadecimal digits joined by `:`, with a digit (`00:0d:60:ea:81:91`,
/// `FF:F2:9F:15:7E:6E:00:0D`). This is the `ID` mask of Drain3's default masking
/// (`([0-9a-f]{2,}:){3,}([0-9a-f]{2,})`, here in either case); a clock time (three groups)
/// is not one.
fn is_hex_id(core: &[u8]) -> bool {
    // Fast rejection: a `:` after two to four hexadecimal digits.
    let first = core.iter().take_while(|c| c.is_ascii_hexdigit()).count();
    if !(2..=4).contains(&first) || core.get(first) != Some(&b':') {
        return false;
    }
    let mut groups = 0;
    for g in core.split(|&c| c == b':') {
        if g.len() < 2 || !g.iter().all(u8::is_ascii_hexdigit) {
            return false;
        }
        groups += 1;
    }
    groups >= 4 && core.iter().any(u8::is_ascii_digit)
}

/// Whether a chunk, without its surrounding punctuation, is a hardware address or similar
/// identifier ([`is_hex_id`]): masked whole rather than cut at its `:`.
pub(super) fn is_hex_id_chunk(chunk: &[u8]) -> bool {
    // Four groups of two and three `:` at least; most chunks fail here.
    if chunk.len() < 11 {
        return false;
    }
    let lo = chunk.iter().take_while(|&&c| is_lead_punct(c)).count();
    let first = chunk
        .get(lo..)
        .unwrap_or(&[])
        .iter()
        .take_while(|c| c.is_ascii_hexdigit())
        .count();
    if !(2..=4).contains(&first) || chunk.get(lo + first) != Some(&b':') {
        return false;
    }
    let mut hi = chunk.len();
    while hi > lo && chunk.get(hi - 1).is_some_and(|&c| is_trail_punct(c)) {
        hi -= 1;
    }
    is_hex_id(chunk.get(lo..hi).unwrap_or(&[]))
}

/// Whether a token core is a path: it starts with `/`, `./`, `~/` or `../` and has at least
/// two slashes; or it starts with a drive (`C:\`); or it has at least two backslashes (a
/// Windows path or registry key); or at least three slashes (a relative path).
fn is_path(core: &[u8]) -> bool {
    let (mut slashes, mut backslashes) = (0usize, 0usize);
    for &b in core {
        slashes += usize::from(b == b'/');
        backslashes += usize::from(b == b'\\');
    }
    let starts = core.first() == Some(&b'/')
        || core.starts_with(b"./")
        || core.starts_with(b"~/")
        || core.starts_with(b"../");
    (starts && slashes >= 2)
        || (core.len() > 2 && core.get(1..3) == Some(b":\\"))
        || backslashes >= 2
        || slashes >= 3
}

fn is_lead_punct(c: u8) -> bool {
    matches!(
        c,
        b'(' | b'[' | b'{' | b'<' | b'"' | b'\'' | b'=' | b':' | b',' | b';' | b'|'
    )
}

fn is_trail_punct(c: u8) -> bool {
    matches!(
        c,
        b')' | b']' | b'}' | b'>' | b'"' | b'\'' | b',' | b';' | b':' | b'.'
    )
}

/// Masks one token (a piece of a chunk) known to hold a digit, `/` or `\` (the tokenizer
/// knows from its byte classes); `flags` holds at least the [`C_SLASH`] class of the token's
/// bytes. The masked text, written to `out` (cleared first) for [`MaskKind::Partial`], is
/// UTF-8: it is made of pieces of the token cut at ASCII bytes, and `<*>`.
pub(super) fn mask_marked_token(tok: &[u8], flags: u8, out: &mut Vec<u8>) -> MaskKind {
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
    // Paths and URLs hold `/` or `\`.
    let slashed = flags & C_SLASH != 0;
    let url = if slashed { find(core, b"://") } else { None };
    if url.is_none()
        && (is_uuid(core)
            || is_hex_id(core)
            || (slashed && (is_path(core) || is_name_version(core))))
    {
        return mask_whole(tok, lo, hi, out);
    }
    if let Some(pos) = url {
        // URL: keep the scheme, mask the rest.
        if pos == 0 {
            return mask_whole(tok, lo, hi, out);
        }
        out.extend_from_slice(tok.get(..lo + pos + 3).unwrap_or(&[]));
        out.extend_from_slice(WILDCARD_TEXT.as_bytes());
        out.extend_from_slice(tok.get(hi..).unwrap_or(&[]));
        return MaskKind::Partial { bare: false };
    }
    let kind = mask_segments(tok, out);
    if matches!(kind, MaskKind::Partial { .. }) && is_dotted_name(core) {
        // A host or domain name with a variable part is one variable.
        return mask_whole(tok, lo, hi, out);
    }
    kind
}

/// Whether a token core is a dotted name of at least three labels (letters, digits, `-`,
/// `_`) whose last label is letters: a host or domain name such as `node-7.corp.example.com`.
fn is_dotted_name(core: &[u8]) -> bool {
    // Fast rejection: the last label (letters) must follow a dot.
    let tail = core
        .iter()
        .rev()
        .take_while(|c| c.is_ascii_alphabetic())
        .count();
    if tail == 0 || core.len() <= tail || core.get(core.len() - tail - 1) != Some(&b'.') {
        return false;
    }
    let dots = core.iter().filter(|&&c| c == b'.').count();
    let last = core.rsplit(|&c| c == b'.').next().unwrap_or(&[]);
    dots >= 2
        && !last.is_empty()
        && last.iter().all(u8::is_ascii_alphabetic)
        && core
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_'))
}

/// The token with its core `tok[lo..hi]` replaced by `<*>`.
fn mask_whole(tok: &[u8], lo: usize, hi: usize, out: &mut Vec<u8>) -> MaskKind {
    out.clear();
    if lo == 0 && hi == tok.len() {
        return MaskKind::Wildcard;
    }
    out.extend_from_slice(tok.get(..lo).unwrap_or(&[]));
    out.extend_from_slice(WILDCARD_TEXT.as_bytes());
    out.extend_from_slice(tok.get(hi..).unwrap_or(&[]));
    MaskKind::Partial { bare: true }
}

/// Masks the token whole, keeping its leading delimiters (a host name before a port).
pub(super) fn mask_core(tok: &[u8], out: &mut Vec<u8>) -> MaskKind {
    let mut lo = 0;
    while tok.get(lo).is_some_and(|&c| is_lead_punct(c)) {
        lo += 1;
    }
    mask_whole(tok, lo, tok.len(), out)
}

/// The segment scan of [`mask_marked_token`]. Punctuation between segments is ASCII, so byte
/// offsets are char boundaries; `pending` is the punctuation run since the previous segment;
/// `held` is a constant segment (with the punctuation before it) after a parameter, written
/// out unless a parameter follows it (then the three are one variable).
fn mask_segments(tok: &[u8], out: &mut Vec<u8>) -> MaskKind {
    let b = tok;
    let mut i = 0;
    let mut any_param = false;
    let mut any_const_alnum = false;
    let mut last_was_param = false;
    let mut pending = (0usize, 0usize);
    let mut held: Option<(usize, usize)> = None;
    let joiner = |p: &[u8]| matches!(p, b"." | b"-" | b"_");
    while let Some(&c) = b.get(i) {
        if class(c) & C_SEG == 0 {
            i += 1;
            pending.1 = i;
            continue;
        }
        let start = i;
        let mut digits = 0usize;
        let mut lead_digits = 0usize;
        let mut all_hex = true;
        let mut tail_alpha = true;
        while let Some(&x) = b.get(i) {
            let k = class(x);
            if k & C_SEG == 0 {
                break;
            }
            let d = k & C_DIGIT != 0;
            if d && lead_digits == i - start {
                lead_digits += 1;
            } else if lead_digits > 0 && !x.is_ascii_alphabetic() {
                tail_alpha = false;
            }
            digits += usize::from(d);
            all_hex &= k & C_HEX != 0;
            i += 1;
        }
        let len = i - start;
        let punct = b.get(pending.0..pending.1).unwrap_or(&[]);
        // A number with a short unit glued to it (`5000ms`, `16GB`): `<*>` and the unit.
        let unit = lead_digits > 0
            && tail_alpha
            && (1..=2).contains(&(len - lead_digits))
            && !(all_hex && len >= 6);
        if segment_is_param(c, len, digits, all_hex) {
            any_param = true;
            if last_was_param && joiner(punct) {
                // Collapse `<*>.<*>`, `<*>-<*>`, `<*>_<*>`.
            } else if let Some(h) = held.take().filter(|_| joiner(punct)) {
                // `<*>_m_<*>`: the constant between two parameters joins them.
                let _ = h;
            } else {
                if let Some((hs, he)) = held.take() {
                    out.extend_from_slice(tok.get(hs..he).unwrap_or(&[]));
                    any_const_alnum = true;
                }
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
            if unit {
                out.extend_from_slice(tok.get(start + lead_digits..i).unwrap_or(&[]));
                any_const_alnum = true;
                last_was_param = false;
            } else {
                last_was_param = true;
            }
        } else {
            if let Some((hs, he)) = held.take() {
                out.extend_from_slice(tok.get(hs..he).unwrap_or(&[]));
                any_const_alnum = true;
            }
            if last_was_param && joiner(punct) {
                held = Some((pending.0, i));
            } else {
                out.extend_from_slice(tok.get(pending.0..i).unwrap_or(&[]));
                any_const_alnum = true;
            }
            last_was_param = false;
        }
        pending = (i, i);
    }
    if let Some((hs, he)) = held.take() {
        out.extend_from_slice(tok.get(hs..he).unwrap_or(&[]));
        any_const_alnum = true;
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

/// The first position of `needle` (non-empty) in `hay`: a scan for its first byte, comparing
/// the rest only there.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let (&first, rest) = needle.split_first()?;
    let last = hay.len().checked_sub(needle.len())?;
    let mut from = 0;
    while from <= last {
        let at = from + hay.get(from..=last)?.iter().position(|&c| c == first)?;
        if hay.get(at + 1..at + needle.len()) == Some(rest) {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// Whether a piece (without its leading delimiters) is a host name: letters, digits, `.`,
/// `-` and `_` only, with a letter and a `.` or `-` (`db-1.example.com`, `msra-sa-41`).
pub(super) fn is_host(piece: &[u8]) -> bool {
    let mut lo = 0;
    while piece.get(lo).is_some_and(|&c| is_lead_punct(c)) {
        lo += 1;
    }
    let core = piece.get(lo..).unwrap_or(&[]);
    // One pass: every byte allowed, with a letter and a `.` or `-` among them.
    let (mut letter, mut sep) = (false, false);
    for &c in core {
        if c.is_ascii_alphabetic() {
            letter = true;
        } else if matches!(c, b'.' | b'-') {
            sep = true;
        } else if !(c.is_ascii_digit() || c == b'_') {
            return false;
        }
    }
    letter && sep
}

/// Whether a piece is `:` and a port number (with trailing punctuation).
pub(super) fn is_port(piece: &[u8]) -> bool {
    let Some(rest) = piece.strip_prefix(b":") else {
        return false;
    };
    let digits = rest.iter().take_while(|c| c.is_ascii_digit()).count();
    digits > 0
        && rest
            .get(digits..)
            .is_some_and(|t| t.iter().all(|&c| is_trail_punct(c)))
}

/// Whether a token is an English weekday or month name (full or three-letter, any case,
/// with trailing punctuation): a date part, hence a parameter.
pub(super) fn is_date_word(tok: &[u8]) -> bool {
    // Trailing ASCII punctuation is trimmed byte by byte: every byte of a non-ASCII char is
    // >= 0x80, so this equals trimming chars.
    if tok.len() < 3 {
        return false;
    }
    // Most words fail here: the first letter of no weekday or month name.
    if !tok.first().is_some_and(|c| {
        matches!(
            c.to_ascii_lowercase(),
            b'a' | b'd' | b'f' | b'j' | b'm' | b'n' | b'o' | b's' | b't' | b'w'
        )
    }) {
        return false;
    }
    // The first three bytes, ASCII lowercase, as one word: every name has its own three
    // letters (and is either just those or the full name).
    let key = match tok.get(..3) {
        Some(&[a, b, c]) => u32::from_be_bytes([
            0,
            a.to_ascii_lowercase(),
            b.to_ascii_lowercase(),
            c.to_ascii_lowercase(),
        ]),
        _ => return false,
    };
    const fn k(t: &[u8; 3]) -> u32 {
        u32::from_be_bytes([0, t[0], t[1], t[2]])
    }
    let name: &[u8] = match key {
        x if x == k(b"mon") => b"monday",
        x if x == k(b"tue") => b"tuesday",
        x if x == k(b"wed") => b"wednesday",
        x if x == k(b"thu") => b"thursday",
        x if x == k(b"fri") => b"friday",
        x if x == k(b"sat") => b"saturday",
        x if x == k(b"sun") => b"sunday",
        x if x == k(b"jan") => b"january",
        x if x == k(b"feb") => b"february",
        x if x == k(b"mar") => b"march",
        x if x == k(b"apr") => b"april",
        x if x == k(b"may") => b"may",
        x if x == k(b"jun") => b"june",
        x if x == k(b"jul") => b"july",
        x if x == k(b"aug") => b"august",
        x if x == k(b"sep") => b"september",
        x if x == k(b"oct") => b"october",
        x if x == k(b"nov") => b"november",
        x if x == k(b"dec") => b"december",
        _ => return false,
    };
    let mut t = tok;
    while let Some((&last, rest)) = t.split_last() {
        if class(last) & C_PUNCT == 0 {
            break;
        }
        t = rest;
    }
    t.len() == 3 || (t.len() == name.len() && t.eq_ignore_ascii_case(name))
}

/// Unit words skipped in skeletons when they follow a parameter (`12 ms`, `1.2 KB)`).
pub(super) fn is_unit_word(tok: &str) -> bool {
    const WORDS: [&str; 9] = [
        "byte", "bytes", "second", "seconds", "minutes", "hours", "h", "hr", "hrs",
    ];
    let t = tok.trim_matches(|c: char| c.is_ascii_punctuation());
    is_unit_abbreviation(t) || WORDS.iter().any(|w| w.eq_ignore_ascii_case(t))
}

/// Unit abbreviations that are part of the quantity before them (`1.2 KB`, `3 ms`): masked
/// with it as one parameter, as the Loghub-2.0 templates do.
pub(super) fn is_unit_abbreviation(t: &str) -> bool {
    const UNITS: [&str; 17] = [
        "b", "kb", "mb", "gb", "tb", "kib", "mib", "gib", "ns", "us", "ms", "s", "sec", "secs",
        "min", "mins", "%",
    ];
    t.len() <= 4 && UNITS.iter().any(|u| u.eq_ignore_ascii_case(t))
}

/// The size unit of a chunk (`KB)` -> `KB`), if it is one (`B`, `KB`, `MB`, `GB`, `TB`,
/// `KiB`, `MiB`, `GiB`, any case): its byte range without leading `(` and trailing
/// punctuation. A size unit after a number is part of that parameter, as in the Loghub-2.0
/// templates (`estimated size <*>, free <*>` for `16.0 KB, free 317.5 KB`); time units are
/// kept (`took <*> ms`).
pub(super) fn unit_core(tok: &[u8]) -> Option<(usize, usize)> {
    if tok.len() > 6 {
        return None;
    }
    let lo = tok.iter().take_while(|&&c| c == b'(').count();
    let mut hi = tok.len();
    while hi > lo && tok.get(hi - 1).is_some_and(|&c| is_trail_punct(c)) {
        hi -= 1;
    }
    let core = tok.get(lo..hi)?;
    if core.len() > 4
        || !matches!(
            core.first().map(u8::to_ascii_lowercase),
            Some(b'b' | b'k' | b'm' | b'g' | b't')
        )
    {
        return None;
    }
    const UNITS: [&[u8]; 8] = [b"b", b"kb", b"mb", b"gb", b"tb", b"kib", b"mib", b"gib"];
    UNITS
        .iter()
        .any(|u| u.eq_ignore_ascii_case(core))
        .then_some((lo, hi))
}

/// The common constant prefix and suffix of two token texts around a variable part, as a
/// template token (`=true` and `=3` give `=<*>`; `storage1` and `storage7` give
/// `storage<*>`), or `None` when nothing constant is shared. The prefix ends at punctuation,
/// or at a letter followed by a digit (or a `<*>`) in both texts; the suffix starts at
/// punctuation. `a` may already hold a `<*>` (a template token). Host names
/// ([`is_dotted_name`]) share nothing: they are one variable each.
pub(super) fn common_affix(a: &str, b: &str) -> Option<String> {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if is_dotted_name(a) || is_dotted_name(b) {
        return None;
    }
    let wild = WILDCARD_TEXT.as_bytes();
    let a_stop = find(a, wild).unwrap_or(a.len());
    let b_stop = find(b, wild).unwrap_or(b.len());
    let mut p = a
        .iter()
        .zip(b)
        .take(a_stop.min(b_stop))
        .take_while(|(x, y)| x == y)
        .count();
    let digit_or_wild = |s: &[u8], at: usize| {
        s.get(at).is_some_and(u8::is_ascii_digit)
            || s.get(at..).is_some_and(|r| r.starts_with(wild))
    };
    while p > 0 {
        let last = a.get(p - 1).copied().unwrap_or(b' ');
        if last.is_ascii_punctuation()
            || (last.is_ascii_alphabetic() && digit_or_wild(a, p) && digit_or_wild(b, p))
        {
            break;
        }
        p -= 1;
    }
    let tail = |s: &[u8]| find(s, wild).map_or(s.len(), |w| s.len() - w - wild.len());
    let (a_tail, b_tail) = (tail(a), tail(b));
    let room = (a.len() - p).min(b.len() - p);
    let mut s = a
        .iter()
        .rev()
        .zip(b.iter().rev())
        .take(a_tail.min(b_tail).min(room))
        .take_while(|(x, y)| x == y)
        .count();
    while s > 0 {
        let first = a.get(a.len() - s).copied().unwrap_or(b' ');
        if first.is_ascii_punctuation() {
            break;
        }
        s -= 1;
    }
    if p == 0 && s == 0 {
        return None;
    }
    let mut out = String::with_capacity(p + s + wild.len());
    out.push_str(std::str::from_utf8(a.get(..p)?).ok()?);
    out.push_str(WILDCARD_TEXT);
    out.push_str(std::str::from_utf8(a.get(a.len() - s..)?).ok()?);
    Some(out)
}

/// Whether a chunk is masked whole rather than cut at its delimiters: it holds a URL
/// (`scheme://`), or, without its surrounding punctuation, starts like a path (`/`, `./`,
/// `~/`, `../`, `C:\`, `\\`) and is one (see [`is_path`]).
pub(super) fn is_whole(chunk: &[u8]) -> bool {
    if find(chunk, b"://").is_some() {
        return true;
    }
    let lo = chunk.iter().take_while(|&&c| is_lead_punct(c)).count();
    let core = chunk.get(lo..).unwrap_or(&[]);
    let starts = core.first().is_some_and(|&c| c == b'/' || c == b'\\')
        || core.starts_with(b"./")
        || core.starts_with(b"~/")
        || core.starts_with(b"../")
        || core.get(1..3) == Some(b":\\");
    starts && is_path(core)
}

/// Whether a token core is a name and version (`HTTP/1.1`, `curl/7.58.0`): letters, `/`, then
/// a digit and digits and dots. Such a token is one variable.
fn is_name_version(core: &[u8]) -> bool {
    let Some(slash) = core.iter().position(|&c| c == b'/') else {
        return false;
    };
    let (name, version) = (
        core.get(..slash).unwrap_or(&[]),
        core.get(slash + 1..).unwrap_or(&[]),
    );
    !name.is_empty()
        && name.iter().all(u8::is_ascii_alphabetic)
        && version.first().is_some_and(u8::is_ascii_digit)
        && version.iter().all(|&c| c.is_ascii_digit() || c == b'.')
}
