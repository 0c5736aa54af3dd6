//! The decoding engine: unwraps envelopes (gzip, KPL, Lambda base64), recognises each JSON
//! document's shape and hands it to the per-source normalisers, turning every failure into
//! a dead letter for the smallest unit that failed.
//!
//! Dead-letter granularity: an element of `Records`, a line of NDJSON and a CloudWatch Logs
//! log event fail alone (their JSON text is the dead letter's data); a document that cannot
//! be read at all (corrupt gzip, not JSON, unknown shape) is one dead letter carrying the
//! bytes the decoder was given for it (before inflation).

use super::cloudtrail::{Envelope, cloudtrail_event};
use super::doc::{CowStr, Doc, LogEventElem, MetricValueElem, Str};
use super::error::DecodeError;
use super::gzip::{gunzip_bounded, is_gzip};
use super::kpl::{deaggregate, has_kpl_magic};
use super::{DeadLetter, DecodeLimits, DecodeOutput};
use aiops_core::{
    Event, EventBody, LogFields, LogLevel, MetricFields, MetricValue, Position, stable_hash,
};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::de::IgnoredAny;
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

/// One decoding call's state.
pub(crate) struct Decoder<'o> {
    pub ingest_time: i64,
    pub limits: DecodeLimits,
    pub out: &'o mut DecodeOutput,
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

/// Parses a document: when the bytes are valid UTF-8 (checked once, fast) the string reader
/// skips per-string validation; otherwise the slice reader reports where it breaks.
pub(crate) fn parse_doc(text: &[u8]) -> Result<Doc<'_>, serde_json::Error> {
    match std::str::from_utf8(text) {
        Ok(s) => serde_json::from_str(s),
        Err(_) => serde_json::from_slice(text),
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

/// Several non-blank lines, at least one of which is a one-line JSON object.
fn looks_like_ndjson(text: &[u8]) -> bool {
    let mut lines = 0usize;
    let mut object_lines = 0usize;
    for line in text.split(|&b| b == b'\n') {
        let line = trim(line);
        if line.is_empty() {
            continue;
        }
        lines += 1;
        if line.len() >= 2 && line.first() == Some(&b'{') && line.last() == Some(&b'}') {
            object_lines += 1;
        }
    }
    lines >= 2 && object_lines >= 1
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

impl Decoder<'_> {
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

    /// JSON text: one object, or NDJSON (one object per line). Parse errors report lines and
    /// columns of the text as given (only a UTF-8 byte-order mark is skipped).
    fn text(&mut self, text: &[u8], original: &[u8], origin: &mut Origin<'_>, nest: Nest) {
        let text = strip_bom(text);
        let t = trim(text);
        if t.is_empty() {
            return self.dead(origin.next(), DecodeError::Empty, original);
        }
        match parse_doc(text) {
            Ok(mut doc) => self.dispatch(&mut doc, t, original, origin, nest),
            Err(e) => {
                if looks_like_ndjson(t) {
                    self.lines(t, origin, nest);
                } else {
                    self.dead(origin.next(), shape_error("JSON document", t, e), original);
                }
            }
        }
    }

    /// NDJSON: each non-blank line is decoded on its own.
    fn lines(&mut self, text: &[u8], origin: &mut Origin<'_>, nest: Nest) {
        for line in text.split(|&b| b == b'\n') {
            let line = trim(line);
            if line.is_empty() {
                continue;
            }
            if let Some(e) = self.too_large(line.len()) {
                self.dead(origin.next(), e, line);
                continue;
            }
            match parse_doc(line) {
                Ok(mut doc) => self.dispatch(&mut doc, line, line, origin, nest),
                Err(e) => self.dead(origin.next(), shape_error("JSON line", line, e), line),
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
                Ok(ev) => self.out.events.push(ev),
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
                Err(e) => {
                    self.dead(origin.next(), shape_error("Records element", raw, e), raw);
                    continue;
                }
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
                Ok(ev) => self.out.events.push(ev),
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
                    Ok(ev) => self.out.events.push(ev),
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
            self.out.events.push(Event {
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
            });
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
        match cloudtrail_event(&mut detail, record, envelope, pos.clone(), self.ingest_time) {
            Ok(ev) => self.out.events.push(ev),
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
            Ok(ev) => self.out.events.push(ev),
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
    let doc = serde_json::from_str::<Doc<'_>>(t).ok()?;
    (doc.event_name.is_some() && doc.event_source.is_some()).then_some(doc)
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
    })
}
