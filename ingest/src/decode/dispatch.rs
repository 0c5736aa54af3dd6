//! The decoding engine: unwraps envelopes (gzip, KPL, Lambda base64), recognises each JSON
//! document's shape and hands it to the per-source normalisers, turning every failure into
//! a dead letter for the smallest unit that failed.
//!
//! Dead-letter granularity: an element of `Records`, a line of NDJSON and a CloudWatch Logs
//! log event fail alone (their JSON text is the dead letter's data); a document that cannot
//! be read at all (corrupt gzip, not JSON, unknown shape) is one dead letter carrying the
//! bytes the decoder was given for it (before inflation).

use super::cloudtrail::{Envelope, cloudtrail_event};
use super::doc::{CowStr, Doc, LogEventElem, LookupEventElem, MetricValueElem, Str};
use super::error::DecodeError;
use super::gzip::{gunzip_bounded, is_gzip};
use super::kpl::{deaggregate, has_kpl_magic};
use super::salvage::{
    LOSSY_UTF16_WARNING, LOSSY_WARNING, Lossy, json_kind, lossy_utf8, salvage_doc,
};
use super::{DeadLetter, DecodeLimits, DecodeOutput};
use aiops_core::{
    Event, EventBody, LogFields, LogLevel, MetricFields, MetricValue, Position, stable_hash,
};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::de::IgnoredAny;
use serde_json::error::Category;
use serde_json::value::RawValue;
use std::collections::BTreeMap;

/// Most envelopes (gzip, KPL, base64) unwrapped inside one another.
pub(crate) const MAX_DEPTH: usize = 6;
/// Most gzip layers inflated inside one another (each may hold `max_decompressed_bytes`).
pub(crate) const MAX_GZIP_DEPTH: usize = 2;

/// Where decoded records are positioned.
pub(crate) enum Origin<'p> {
    /// Everything inside shares the Kinesis record's position.
    Kinesis(&'p Position),
    /// A file: each record gets the next ordinal.
    File { stream: String, next: u64 },
}

impl Origin<'_> {
    /// The position of the next record.
    fn next(&mut self) -> Position {
        match self {
            Origin::Kinesis(p) => (*p).clone(),
            Origin::File { stream, next } => {
                let n = *next;
                *next += 1;
                Position {
                    stream: stream.clone(),
                    shard_id: "file".to_owned(),
                    sequence_number: n.to_string(),
                    sub_sequence_number: None,
                }
            }
        }
    }
}

/// Envelope nesting so far.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Nest {
    depth: usize,
    gzip: usize,
}

impl Nest {
    fn deeper(self) -> Nest {
        Nest {
            depth: self.depth + 1,
            gzip: self.gzip,
        }
    }
}

/// Bytes looked at for a NUL byte before text is taken as binary (as `git` and GNU `grep`
/// decide): JSON text never holds a raw NUL.
pub(crate) const BINARY_SNIFF_BYTES: usize = 8192;

/// One decoding call's state.
pub(crate) struct Decoder<'o> {
    ingest_time: i64,
    limits: DecodeLimits,
    out: &'o mut DecodeOutput,
    /// Where invalid UTF-8 (or UTF-16) was replaced in the text being decoded (`None`:
    /// nothing was replaced).
    lossy: Option<Lossy>,
}

/// The body and byte order of UTF-16 text: after a byte-order mark (`FF FE` little-endian,
/// `FE FF` big-endian), or without one when the text starts with an ASCII `{`, `[` or
/// whitespace followed (little-endian) or preceded (big-endian) by a zero byte.
fn utf16_body(b: &[u8]) -> Option<(&[u8], bool)> {
    match b {
        [0xFF, 0xFE, rest @ ..] => Some((rest, false)),
        [0xFE, 0xFF, rest @ ..] => Some((rest, true)),
        [b'{' | b'[' | b' ' | b'\n' | b'\r' | b'\t', 0, ..] => Some((b, false)),
        [0, b'{' | b'[' | b' ' | b'\n' | b'\r' | b'\t', ..] => Some((b, true)),
        _ => None,
    }
}

/// UTF-16 text as UTF-8, unpaired surrogates (and an odd last byte) replaced with U+FFFD, and
/// the byte offsets of the replacements in the returned text (see [`lossy_utf8`]).
fn utf16_to_utf8(b: &[u8], big_endian: bool) -> (String, Vec<usize>) {
    let units = b.chunks_exact(2).map(|c| {
        let pair = [c[0], c[1]];
        if big_endian {
            u16::from_be_bytes(pair)
        } else {
            u16::from_le_bytes(pair)
        }
    });
    let mut text = String::with_capacity(b.len() / 2 + 16);
    let mut marks = Vec::new();
    for c in char::decode_utf16(units) {
        match c {
            Ok(c) => text.push(c),
            Err(_) => {
                marks.push(text.len());
                text.push(char::REPLACEMENT_CHARACTER);
            }
        }
    }
    if b.len() % 2 == 1 {
        marks.push(text.len());
        text.push(char::REPLACEMENT_CHARACTER);
    }
    (text, marks)
}

/// The end of a value that did not parse: the next point after its first byte where a value
/// can start on its own (a `{` or `[` first on a line, or a `{` right after a `}`), or the
/// end of the text.
fn resync_point(text: &[u8]) -> usize {
    for at in memchr::memchr2_iter(b'{', b'[', text).filter(|&i| i > 0) {
        let prev = text[at - 1];
        if prev == b'\n' || (prev == b'}' && text[at] == b'{') {
            return at;
        }
    }
    text.len()
}

fn trim(b: &[u8]) -> &[u8] {
    b.trim_ascii()
}

fn strip_bom(b: &[u8]) -> &[u8] {
    b.strip_prefix(&[0xEF, 0xBB, 0xBF]).unwrap_or(b)
}

fn own(s: &Str<'_>) -> Option<String> {
    s.as_deref().filter(|s| !s.is_empty()).map(str::to_owned)
}

/// The reason for a document that did not parse as a JSON object of any known shape.
fn shape_error(what: &'static str, text: &[u8], err: serde_json::Error) -> DecodeError {
    let kind = match text.first() {
        Some(b'{') => return DecodeError::from_json(what, text, err),
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        Some(b'-' | b'0'..=b'9') => "a number",
        _ => return DecodeError::from_json(what, text, err),
    };
    match serde_json::from_slice::<IgnoredAny>(text) {
        Ok(_) => DecodeError::WrongShape(format!("expected a JSON object, found {kind}")),
        Err(e) => DecodeError::from_json(what, text, e),
    }
}

/// `s` cut to at most `max` bytes, on a character boundary.
fn cut(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Longest dead-letter reason kept, in bytes (serde messages quote offending values).
pub(crate) const MAX_REASON_BYTES: usize = 1024;

/// Up to 8 top-level keys of an object, for the "unknown shape" reason.
fn key_list(text: &[u8]) -> String {
    match serde_json::from_slice::<BTreeMap<String, IgnoredAny>>(text) {
        Ok(m) if m.is_empty() => "no keys".to_owned(),
        Ok(m) => {
            let mut keys: Vec<&str> = m.keys().take(8).map(|k| cut(k, 64)).collect();
            if m.len() > 8 {
                keys.push("...");
            }
            format!("keys: {}", keys.join(", "))
        }
        Err(_) => "unreadable keys".to_owned(),
    }
}

/// The decoded length of standard base64 text (exact for well-formed padded input).
fn base64_decoded_len(text: &str) -> usize {
    let pad = text.bytes().rev().take(2).filter(|&b| b == b'=').count();
    (text.len() / 4 * 3).saturating_sub(pad)
}

/// Stream name from a Kinesis stream ARN (`arn:aws:kinesis:<region>:<account>:stream/<name>`).
fn stream_from_arn(arn: &str) -> &str {
    match arn.split_once(":stream/") {
        Some((_, rest)) => rest.split('/').next().unwrap_or(rest),
        None => arn,
    }
}

impl<'o> Decoder<'o> {
    /// A decoder appending to `out`; `ingest_time` in microseconds since the Unix epoch.
    pub(crate) fn new(ingest_time: i64, limits: DecodeLimits, out: &'o mut DecodeOutput) -> Self {
        Decoder {
            ingest_time,
            limits,
            out,
            lossy: None,
        }
    }

    /// Appends a decoded event; `raw` is the JSON text it was decoded from (a slice of the
    /// text being decoded), to mark the event when that text held invalid UTF-8.
    fn emit(&mut self, mut ev: Event, raw: &[u8]) {
        if let Some(l) = self.lossy.as_ref().filter(|l| l.damaged(raw)) {
            ev.decode_warnings.insert(0, l.warning.to_owned());
        }
        self.out.events.push(ev);
    }

    fn dead(&mut self, position: Position, reason: DecodeError, data: &[u8]) {
        let mut reason = reason.to_string();
        if reason.len() > MAX_REASON_BYTES {
            let keep = cut(&reason, MAX_REASON_BYTES - 3).len();
            reason.truncate(keep);
            reason.push_str("...");
        }
        self.out.dead_letters.push(DeadLetter {
            reason,
            data: data.to_vec(),
            position,
        });
    }

    fn too_large(&self, size: usize) -> Option<DecodeError> {
        (size > self.limits.max_record_bytes).then_some(DecodeError::TooLarge {
            size,
            limit: self.limits.max_record_bytes,
        })
    }

    /// The data of one Kinesis record at `position`.
    pub(crate) fn kinesis_record(&mut self, data: &[u8], position: &Position, nest: Nest) {
        if trim(data).is_empty() {
            return self.dead(position.clone(), DecodeError::Empty, data);
        }
        if let Some(e) = self.too_large(data.len()) {
            return self.dead(position.clone(), e, data);
        }
        if nest.depth >= MAX_DEPTH {
            return self.dead(position.clone(), DecodeError::TooDeep(MAX_DEPTH), data);
        }
        if has_kpl_magic(data) {
            // Any error means: a plain record (KPL rules), decoded below.
            if let Ok(records) = deaggregate(data) {
                if records.is_empty() {
                    return self.dead(position.clone(), DecodeError::EmptyAggregate, data);
                }
                for r in records {
                    let pos = Position {
                        sub_sequence_number: Some(r.sub_sequence_number),
                        ..position.clone()
                    };
                    self.document(r.data, r.data, &mut Origin::Kinesis(&pos), nest.deeper());
                }
                return;
            }
        }
        self.document(data, data, &mut Origin::Kinesis(position), nest);
    }

    /// A document: gzip (by magic bytes, inflated and recognised again) or JSON text.
    /// `original` is what a whole-document dead letter carries (the bytes before inflation).
    pub(crate) fn document(
        &mut self,
        bytes: &[u8],
        original: &[u8],
        origin: &mut Origin<'_>,
        nest: Nest,
    ) {
        if !is_gzip(bytes) {
            return self.text(bytes, original, origin, nest);
        }
        if nest.gzip >= MAX_GZIP_DEPTH {
            let reason = DecodeError::GzipTooDeep(MAX_GZIP_DEPTH);
            return self.dead(origin.next(), reason, original);
        }
        if nest.depth >= MAX_DEPTH {
            return self.dead(origin.next(), DecodeError::TooDeep(MAX_DEPTH), original);
        }
        match gunzip_bounded(bytes, self.limits.max_decompressed_bytes) {
            Ok(inflated) => {
                let nest = Nest {
                    depth: nest.depth + 1,
                    gzip: nest.gzip + 1,
                };
                self.document(&inflated, original, origin, nest);
            }
            Err(e) => self.dead(origin.next(), e.into(), original),
        }
    }

    /// JSON text: one value, or several back to back (NDJSON lines, or values written with no
    /// separator at all, `}{`, as Kinesis Data Firehose writes them to S3), each decoded as
    /// if it were its own input. UTF-8 (a byte-order mark is skipped) or UTF-16 (by its
    /// byte-order mark, or a zero byte next to the first character). Binary data (a NUL byte among the first
    /// [`BINARY_SNIFF_BYTES`]) is one dead letter. Invalid UTF-8 is replaced with U+FFFD
    /// (see [`Lossy`]): the events whose JSON text held it are kept and marked. Parse errors
    /// report lines and columns of the value as given (only a UTF-8 byte-order mark is
    /// skipped).
    fn text(&mut self, text: &[u8], original: &[u8], origin: &mut Origin<'_>, nest: Nest) {
        let converted: String;
        let (s, lossy) = if let Some((body, big_endian)) = utf16_body(text) {
            // UTF-16 (Windows PowerShell 5 writes redirected output so): converted first.
            let (c, marks) = utf16_to_utf8(body, big_endian);
            converted = c;
            if converted.trim_ascii().is_empty() {
                return self.dead(origin.next(), DecodeError::Empty, original);
            }
            let head = &converted.as_bytes()[..converted.len().min(BINARY_SNIFF_BYTES)];
            if let Some(at) = memchr::memchr(0, head) {
                return self.dead(origin.next(), DecodeError::Binary(at), original);
            }
            let lossy =
                (!marks.is_empty()).then(|| Lossy::new(&converted, marks, LOSSY_UTF16_WARNING));
            (converted.as_str(), lossy)
        } else {
            let text = strip_bom(text);
            if trim(text).is_empty() {
                return self.dead(origin.next(), DecodeError::Empty, original);
            }
            let head = &text[..text.len().min(BINARY_SNIFF_BYTES)];
            if let Some(at) = memchr::memchr(0, head) {
                return self.dead(origin.next(), DecodeError::Binary(at), original);
            }
            match std::str::from_utf8(text) {
                Ok(s) => (s, None),
                Err(_) => {
                    let (f, marks) = lossy_utf8(text);
                    converted = f;
                    let lossy = Lossy::new(&converted, marks, LOSSY_WARNING);
                    (converted.as_str(), Some(lossy))
                }
            }
        };
        let saved = std::mem::replace(&mut self.lossy, lossy);
        let mut rest = s.trim_ascii_start();
        let mut first = true;
        while !rest.is_empty() {
            let used = self.value(rest, first, original, origin, nest);
            first = false;
            rest = rest.get(used..).unwrap_or("").trim_ascii_start();
        }
        self.lossy = saved;
    }

    /// Decodes the first JSON value of `rest` (non-empty, no leading whitespace) and returns
    /// the number of bytes it used. `first` says whether it starts the text; a value that is
    /// the whole text is dead-lettered with `original` (the bytes before inflation).
    fn value(
        &mut self,
        rest: &str,
        first: bool,
        original: &[u8],
        origin: &mut Origin<'_>,
        nest: Nest,
    ) -> usize {
        let whole =
            |used: usize| first && rest.get(used..).is_none_or(|r| r.trim_ascii().is_empty());
        match rest.as_bytes().first() {
            Some(b'{') => {
                let mut it = serde_json::Deserializer::from_str(rest).into_iter::<Doc<'_>>();
                match it.next() {
                    Some(Ok(mut doc)) => {
                        let used = it.byte_offset();
                        let raw = rest.get(..used).unwrap_or(rest).as_bytes();
                        let orig = if whole(used) { original } else { raw };
                        self.dispatch(&mut doc, raw, orig, origin, nest);
                        used
                    }
                    Some(Err(e)) => self.bad_value(rest, first, original, origin, nest, e),
                    None => rest.len(),
                }
            }
            Some(b'[') => {
                let mut it = serde_json::Deserializer::from_str(rest).into_iter::<Vec<&RawValue>>();
                match it.next() {
                    Some(Ok(items)) => {
                        let used = it.byte_offset();
                        self.array(items, origin, nest);
                        used
                    }
                    Some(Err(e)) => self.bad_value(rest, first, original, origin, nest, e),
                    None => rest.len(),
                }
            }
            _ => {
                let mut it = serde_json::Deserializer::from_str(rest).into_iter::<IgnoredAny>();
                match it.next() {
                    Some(Ok(_)) => {
                        let used = it.byte_offset();
                        let raw = rest.get(..used).unwrap_or(rest);
                        let orig = if whole(used) {
                            original
                        } else {
                            raw.as_bytes()
                        };
                        let reason = DecodeError::WrongShape(format!(
                            "expected a JSON object, found {}",
                            json_kind(raw)
                        ));
                        self.dead(origin.next(), reason, orig);
                        used
                    }
                    Some(Err(e)) => self.bad_value(rest, first, original, origin, nest, e),
                    None => rest.len(),
                }
            }
        }
    }

    /// A value at the start of `rest` that did not parse. Valid JSON with a field of an
    /// unexpected type is salvaged when it is a CloudTrail record (see [`salvage_doc`]);
    /// anything else is a dead letter up to the next point where a value can start on its
    /// own (a line starting with `{` or `[`, or `}{`). Returns the bytes used.
    fn bad_value(
        &mut self,
        rest: &str,
        first: bool,
        original: &[u8],
        origin: &mut Origin<'_>,
        nest: Nest,
        e: serde_json::Error,
    ) -> usize {
        if e.classify() == Category::Data {
            let mut it = serde_json::Deserializer::from_str(rest).into_iter::<IgnoredAny>();
            if let Some(Ok(_)) = it.next() {
                let used = it.byte_offset();
                let raw = rest.get(..used).unwrap_or(rest);
                let whole = first && rest.get(used..).is_none_or(|r| r.trim_ascii().is_empty());
                let what = if whole { "JSON document" } else { "JSON value" };
                let orig = if whole { original } else { raw.as_bytes() };
                self.salvage_or_dead(raw, orig, what, e, origin, nest);
                return used;
            }
        }
        let used = resync_point(rest.as_bytes());
        let seg = rest.get(..used).unwrap_or(rest).trim_ascii_end();
        let whole = first && used == rest.len();
        let what = if whole { "JSON document" } else { "JSON value" };
        let orig = if whole { original } else { seg.as_bytes() };
        // Lines and columns of the value alone (the error of the stream counts from `rest`).
        let e = match whole {
            true => e,
            false => serde_json::from_str::<IgnoredAny>(seg).err().unwrap_or(e),
        };
        self.dead(origin.next(), shape_error(what, seg.as_bytes(), e), orig);
        used
    }

    /// An object whose typed parse failed with `e`: salvaged and dispatched when it is a
    /// CloudTrail record or an EventBridge event carrying one, else a dead letter (data
    /// `orig`, reason from `e` about `what`).
    fn salvage_or_dead(
        &mut self,
        text: &str,
        orig: &[u8],
        what: &'static str,
        e: serde_json::Error,
        origin: &mut Origin<'_>,
        nest: Nest,
    ) {
        let raw = text.as_bytes();
        if e.classify() == Category::Data {
            match salvage_doc(text) {
                Some(Ok(mut doc)) => return self.dispatch(&mut doc, raw, orig, origin, nest),
                Some(Err(reason)) => return self.dead(origin.next(), reason, orig),
                None => {}
            }
        }
        self.dead(origin.next(), shape_error(what, raw, e), orig);
    }

    /// A bare JSON array (`[{...},{...}]`: exports of security tools, `jq -s` output): each
    /// element decoded as its own input; an element that is not an object is a dead letter.
    fn array(&mut self, items: Vec<&RawValue>, origin: &mut Origin<'_>, nest: Nest) {
        self.out.events.reserve(items.len());
        for el in items {
            let text = el.get();
            let raw = text.as_bytes();
            if !text.starts_with('{') {
                let reason = DecodeError::WrongShape(format!(
                    "expected a JSON object, found {}",
                    json_kind(text)
                ));
                self.dead(origin.next(), reason, raw);
                continue;
            }
            match serde_json::from_str::<Doc<'_>>(text) {
                Ok(mut doc) => self.dispatch(&mut doc, raw, raw, origin, nest),
                Err(e) => self.salvage_or_dead(text, raw, "array element", e, origin, nest),
            }
        }
    }

    /// Routes a parsed object by the fields it carries.
    fn dispatch(
        &mut self,
        doc: &mut Doc<'_>,
        raw: &[u8],
        original: &[u8],
        origin: &mut Origin<'_>,
        nest: Nest,
    ) {
        if let Some(records) = doc.records.take() {
            return self.records(records, origin, nest);
        }
        if let Some(events) = doc.lookup_events.take() {
            return self.lookup_events(events, origin);
        }
        if doc.awslogs.is_some() {
            return self.awslogs(doc, original, origin, nest);
        }
        if doc.message_type.is_some() {
            return self.cwlogs(doc, original, origin);
        }
        if doc.detail_type.is_some() || doc.detail.is_some() {
            return self.eventbridge(doc, raw, original, origin);
        }
        if doc.looks_like_digest() {
            self.out.digest_files += 1;
            return;
        }
        if doc.looks_like_metric() {
            return self.metric(doc, raw, original, origin);
        }
        if doc.kinesis.is_some() {
            return self.lambda_kinesis(doc, raw, origin, nest);
        }
        if doc.looks_like_cloudtrail() {
            let pos = origin.next();
            if let Some(e) = self.too_large(raw.len()) {
                return self.dead(pos, e, original);
            }
            match cloudtrail_event(doc, raw, Envelope::default(), pos.clone(), self.ingest_time) {
                Ok(ev) => self.emit(ev, raw),
                Err(e) => self.dead(pos, e, original),
            }
            return;
        }
        let reason =
            DecodeError::WrongShape(format!("JSON object of unknown shape ({})", key_list(raw)));
        self.dead(origin.next(), reason, original);
    }

    /// `Records`: CloudTrail log file elements, or Lambda Kinesis event records, decided per
    /// element by its shape.
    fn records(&mut self, records: Vec<&RawValue>, origin: &mut Origin<'_>, nest: Nest) {
        self.out.events.reserve(records.len());
        for el in records {
            let text = el.get();
            let raw = text.as_bytes();
            if let Some(e) = self.too_large(raw.len()) {
                self.dead(origin.next(), e, raw);
                continue;
            }
            let mut doc = match serde_json::from_str::<Doc<'_>>(text) {
                Ok(doc) => doc,
                Err(e) => match (e.classify() == Category::Data)
                    .then(|| salvage_doc(text))
                    .flatten()
                {
                    Some(Ok(doc)) => doc,
                    Some(Err(reason)) => {
                        self.dead(origin.next(), reason, raw);
                        continue;
                    }
                    None => {
                        self.dead(origin.next(), shape_error("Records element", raw, e), raw);
                        continue;
                    }
                },
            };
            if doc.kinesis.is_some() {
                self.lambda_kinesis(&mut doc, raw, origin, nest);
                continue;
            }
            let pos = origin.next();
            if let Some(src) = doc
                .event_source
                .as_deref()
                .filter(|s| s.starts_with("aws:"))
            {
                let reason = DecodeError::UnsupportedLambdaSource(src.to_owned());
                self.dead(pos, reason, raw);
                continue;
            }
            match cloudtrail_event(
                &mut doc,
                raw,
                Envelope::default(),
                pos.clone(),
                self.ingest_time,
            ) {
                Ok(ev) => self.emit(ev, raw),
                Err(e) => self.dead(pos, e, raw),
            }
        }
    }

    /// `aws cloudtrail lookup-events` output: each element's `CloudTrailEvent` (the record as
    /// a JSON string) decoded as a CloudTrail record. Format: LookupEvents API,
    /// <https://docs.aws.amazon.com/awscloudtrail/latest/APIReference/API_LookupEvents.html>.
    fn lookup_events(&mut self, events: Vec<&RawValue>, origin: &mut Origin<'_>) {
        const WHAT: &str = "lookup-events element";
        self.out.events.reserve(events.len());
        for el in events {
            let text = el.get();
            let raw = text.as_bytes();
            if let Some(e) = self.too_large(raw.len()) {
                self.dead(origin.next(), e, raw);
                continue;
            }
            let elem = match serde_json::from_str::<LookupEventElem<'_>>(text) {
                Ok(elem) => elem,
                Err(e) => {
                    self.dead(origin.next(), shape_error(WHAT, raw, e), raw);
                    continue;
                }
            };
            let pos = origin.next();
            let Some(CowStr(record)) = elem.cloudtrail_event else {
                let reason = DecodeError::MissingField {
                    what: WHAT,
                    field: "CloudTrailEvent",
                };
                self.dead(pos, reason, raw);
                continue;
            };
            let record: &str = &record;
            let parsed = match serde_json::from_str::<Doc<'_>>(record) {
                Ok(doc) => Ok(doc),
                Err(e) => match (e.classify() == Category::Data)
                    .then(|| salvage_doc(record))
                    .flatten()
                {
                    Some(salvaged) => salvaged,
                    None => Err(DecodeError::from_json(
                        "lookup-events CloudTrailEvent",
                        record.as_bytes(),
                        e,
                    )),
                },
            };
            let event = parsed.and_then(|mut doc| {
                cloudtrail_event(
                    &mut doc,
                    record.as_bytes(),
                    Envelope::default(),
                    pos.clone(),
                    self.ingest_time,
                )
            });
            match event {
                Ok(ev) => self.emit(ev, raw),
                Err(e) => self.dead(pos, e, raw),
            }
        }
    }

    /// One record of a Lambda Kinesis event: base64 `kinesis.data` decoded once, then decoded
    /// as a Kinesis record at the position the event names.
    fn lambda_kinesis(
        &mut self,
        doc: &mut Doc<'_>,
        raw: &[u8],
        origin: &mut Origin<'_>,
        nest: Nest,
    ) {
        let base = origin.next();
        let stream = doc
            .event_source_arn
            .as_deref()
            .filter(|s| !s.is_empty())
            .map_or(base.stream, |arn| stream_from_arn(arn).to_owned());
        let kinesis = doc.kinesis.take().unwrap_or_default();
        let event_id = doc.event_id.as_deref().or(kinesis.event_id.as_deref());
        let (shard_id, id_seq) = match event_id.and_then(|id| id.split_once(':')) {
            Some((shard, seq)) => (shard.to_owned(), Some(seq.to_owned())),
            None => (base.shard_id, None),
        };
        let sequence_number = own(&kinesis.sequence_number)
            .or(id_seq)
            .unwrap_or(base.sequence_number);
        let position = Position {
            stream,
            shard_id,
            sequence_number,
            sub_sequence_number: None,
        };
        let Some(CowStr(data)) = kinesis.data else {
            let reason = DecodeError::MissingField {
                what: "Lambda Kinesis record",
                field: "kinesis.data",
            };
            return self.dead(position, reason, raw);
        };
        if let Some(e) = self.too_large(base64_decoded_len(&data)) {
            return self.dead(position, e, data.as_bytes());
        }
        match STANDARD.decode(data.as_bytes()) {
            Ok(bytes) => self.kinesis_record(&bytes, &position, nest.deeper()),
            Err(source) => {
                let reason = DecodeError::Base64 {
                    what: "Lambda Kinesis record data",
                    source,
                };
                self.dead(position, reason, data.as_bytes());
            }
        }
    }

    /// A Lambda CloudWatch Logs event: `awslogs.data` is base64 of a gzip subscription payload.
    fn awslogs(&mut self, doc: &mut Doc<'_>, original: &[u8], origin: &mut Origin<'_>, nest: Nest) {
        let data = doc.awslogs.take().and_then(|a| a.data);
        let Some(CowStr(data)) = data else {
            let reason = DecodeError::MissingField {
                what: "Lambda CloudWatch Logs event",
                field: "awslogs.data",
            };
            return self.dead(origin.next(), reason, original);
        };
        let size = base64_decoded_len(&data);
        if size > self.limits.max_decompressed_bytes {
            let reason = DecodeError::TooLarge {
                size,
                limit: self.limits.max_decompressed_bytes,
            };
            return self.dead(origin.next(), reason, original);
        }
        if nest.depth >= MAX_DEPTH {
            return self.dead(origin.next(), DecodeError::TooDeep(MAX_DEPTH), original);
        }
        match STANDARD.decode(data.as_bytes()) {
            Ok(bytes) => self.document(&bytes, &bytes, origin, nest.deeper()),
            Err(source) => {
                let reason = DecodeError::Base64 {
                    what: "awslogs.data",
                    source,
                };
                self.dead(origin.next(), reason, original);
            }
        }
    }

    /// A CloudWatch Logs subscription payload (already inflated).
    fn cwlogs(&mut self, doc: &mut Doc<'_>, original: &[u8], origin: &mut Origin<'_>) {
        match doc.message_type.as_deref() {
            Some("CONTROL_MESSAGE") => {
                self.out.control_messages += 1;
                return;
            }
            Some("DATA_MESSAGE") => {}
            other => {
                let reason = DecodeError::UnknownMessageType(other.unwrap_or("").to_owned());
                return self.dead(origin.next(), reason, original);
            }
        }
        let Some(events) = doc.log_events.take() else {
            let reason = DecodeError::MissingField {
                what: "CloudWatch Logs DATA_MESSAGE",
                field: "logEvents",
            };
            return self.dead(origin.next(), reason, original);
        };
        let owner = doc.owner.as_deref().filter(|s| !s.is_empty());
        self.out.events.reserve(events.len());
        let log_group = doc.log_group.as_deref().unwrap_or("");
        let log_stream = doc.log_stream.as_deref().unwrap_or("");
        for el in events {
            let text = el.get();
            let raw = text.as_bytes();
            let pos = origin.next();
            if let Some(e) = self.too_large(raw.len()) {
                self.dead(pos, e, raw);
                continue;
            }
            let le = match serde_json::from_str::<LogEventElem<'_>>(text) {
                Ok(le) => le,
                Err(e) => {
                    let reason = DecodeError::from_json("CloudWatch Logs log event", raw, e);
                    self.dead(pos, reason, raw);
                    continue;
                }
            };
            let Some(event_time) = le.timestamp.checked_mul(1000) else {
                let reason = DecodeError::TimestampOutOfRange {
                    what: "CloudWatch Logs log event",
                    millis: le.timestamp,
                };
                self.dead(pos, reason, raw);
                continue;
            };
            let message: &str = &le.message;
            if let Some(mut ct) = cloudtrail_in_message(message) {
                let envelope = Envelope {
                    account: owner,
                    region: None,
                };
                match cloudtrail_event(
                    &mut ct,
                    message.as_bytes(),
                    envelope,
                    pos.clone(),
                    self.ingest_time,
                ) {
                    Ok(ev) => self.emit(ev, raw),
                    Err(e) => self.dead(pos, e, raw),
                }
                continue;
            }
            let event_id = le
                .id
                .as_ref()
                .filter(|s| !s.is_empty())
                .map(|s| s.to_string())
                .unwrap_or_else(|| {
                    let ts = le.timestamp.to_string();
                    format!(
                        "{:016x}",
                        stable_hash(&[
                            log_group.as_bytes(),
                            log_stream.as_bytes(),
                            ts.as_bytes(),
                            message.as_bytes()
                        ])
                    )
                });
            let ev = Event {
                event_id,
                event_time,
                ingest_time: self.ingest_time,
                account: owner.map(str::to_owned),
                region: None,
                position: pos,
                body: EventBody::Logs(LogFields {
                    log_group: log_group.to_owned(),
                    log_stream: log_stream.to_owned(),
                    level: LogLevel::detect(message),
                    message: le.message.0.into_owned(),
                }),
                decode_warnings: Vec::new(),
            };
            self.emit(ev, raw);
        }
    }

    /// An EventBridge event carrying a CloudTrail record in `detail`.
    fn eventbridge(
        &mut self,
        doc: &mut Doc<'_>,
        raw: &[u8],
        original: &[u8],
        origin: &mut Origin<'_>,
    ) {
        let pos = origin.next();
        if let Some(e) = self.too_large(raw.len()) {
            return self.dead(pos, e, original);
        }
        let detail_type = doc.detail_type.as_deref().unwrap_or("");
        if !detail_type.contains("CloudTrail") {
            let reason = DecodeError::UnsupportedDetailType(detail_type.to_owned());
            return self.dead(pos, reason, original);
        }
        let Some(mut detail) = doc.detail.take() else {
            let reason = DecodeError::MissingField {
                what: "EventBridge event",
                field: "detail",
            };
            return self.dead(pos, reason, original);
        };
        // The detail was parsed in the same pass as the envelope; its raw bytes are only
        // needed to hash a record without eventID (rare), so they are looked up only then.
        let has_id = detail.event_id.as_deref().is_some_and(|s| !s.is_empty());
        let detail_raw = if has_id {
            None
        } else {
            serde_json::from_slice::<DetailRaw<'_>>(raw)
                .ok()
                .and_then(|d| d.detail)
        };
        let record = detail_raw.map_or(raw, |r| r.get().as_bytes());
        let envelope = Envelope {
            account: doc.account.as_deref(),
            region: doc.region.as_deref(),
        };
        detail.warnings.append(&mut doc.warnings);
        match cloudtrail_event(&mut detail, record, envelope, pos.clone(), self.ingest_time) {
            Ok(ev) => self.emit(ev, raw),
            Err(e) => self.dead(pos, e, original),
        }
    }

    /// One CloudWatch metric stream data point (JSON output format).
    fn metric(&mut self, doc: &mut Doc<'_>, raw: &[u8], original: &[u8], origin: &mut Origin<'_>) {
        let pos = origin.next();
        if let Some(e) = self.too_large(raw.len()) {
            return self.dead(pos, e, original);
        }
        match metric_event(doc, pos.clone(), self.ingest_time) {
            Ok(ev) => self.emit(ev, raw),
            Err(e) => self.dead(pos, e, original),
        }
    }
}

/// The raw `detail` of an EventBridge event.
#[derive(serde::Deserialize)]
struct DetailRaw<'a> {
    #[serde(borrow)]
    detail: Option<&'a RawValue>,
}

/// A log message that is a CloudTrail record (a trail delivering to CloudWatch Logs): a JSON
/// object with `eventName` and `eventSource`. Anything else is a log line.
fn cloudtrail_in_message(message: &str) -> Option<Doc<'_>> {
    let t = message.trim_ascii_start();
    if !t.starts_with('{') {
        return None;
    }
    let finder = memchr::memmem::find(t.as_bytes(), b"\"eventSource\"");
    finder?;
    let doc = match serde_json::from_str::<Doc<'_>>(t) {
        Ok(doc) => doc,
        Err(e) if e.classify() == Category::Data => salvage_doc(t)?.ok()?,
        Err(_) => return None,
    };
    (doc.insight_details.is_some() || (doc.event_name.is_some() && doc.event_source.is_some()))
        .then_some(doc)
}

/// Normalises one metric stream line.
///
/// Format: CloudWatch metric streams JSON output,
/// <https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch-metric-streams-formats-json.html>.
fn metric_event(
    doc: &mut Doc<'_>,
    position: Position,
    ingest_time: i64,
) -> Result<Event, DecodeError> {
    const WHAT: &str = "metric stream line";
    let missing = |field| DecodeError::MissingField { what: WHAT, field };
    let invalid = |source| DecodeError::Invalid { what: WHAT, source };
    let namespace = own(&doc.namespace).ok_or_else(|| missing("namespace"))?;
    let metric = own(&doc.metric_name).ok_or_else(|| missing("metric_name"))?;
    let millis: i64 =
        serde_json::from_str(doc.timestamp.ok_or_else(|| missing("timestamp"))?.get())
            .map_err(invalid)?;
    let value: MetricValueElem =
        serde_json::from_str(doc.value.ok_or_else(|| missing("value"))?.get()).map_err(invalid)?;
    let dimensions: BTreeMap<String, String> = match doc.dimensions {
        Some(d) => serde_json::from_str(d.get()).map_err(invalid)?,
        None => BTreeMap::new(),
    };
    let event_time = millis
        .checked_mul(1000)
        .ok_or(DecodeError::TimestampOutOfRange { what: WHAT, millis })?;
    let stream = own(&doc.metric_stream_name);
    let account = own(&doc.account_id);
    let region = own(&doc.region);
    let ts = millis.to_string();
    let mut parts: Vec<&[u8]> = Vec::with_capacity(6 + 2 * dimensions.len());
    parts.push(stream.as_deref().unwrap_or("").as_bytes());
    parts.push(account.as_deref().unwrap_or("").as_bytes());
    parts.push(region.as_deref().unwrap_or("").as_bytes());
    parts.push(namespace.as_bytes());
    parts.push(metric.as_bytes());
    for (k, v) in &dimensions {
        parts.push(k.as_bytes());
        parts.push(v.as_bytes());
    }
    parts.push(ts.as_bytes());
    let event_id = format!("{:016x}", stable_hash(&parts));
    Ok(Event {
        event_id,
        event_time,
        ingest_time,
        account,
        region,
        position,
        body: EventBody::Metrics(MetricFields {
            namespace,
            metric,
            dimensions,
            value: MetricValue {
                max: value.max,
                min: value.min,
                sum: value.sum,
                count: value.count,
            },
            unit: own(&doc.unit),
            metric_stream_name: stream,
        }),
        decode_warnings: Vec::new(),
    })
}
