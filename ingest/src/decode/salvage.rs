//! Keeping what decodes: lossy UTF-8 and records with mistyped optional fields (DESIGN §2:
//! "strings may hold invalid UTF-8 (replace it and keep the record) and fields may have
//! unexpected types (keep what decodes)").
//!
//! Both run only when the fast path fails (invalid UTF-8 found by the one validation pass,
//! or a typed parse that fails on a field's type), so well-formed input is parsed once.
//! What was repaired is written into the event's `decode_warnings`.

use super::doc::{CowStr, Doc, InsightDetailsDoc, Str, UserIdentity};
use super::error::DecodeError;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::BTreeMap;

/// The warning of an event whose JSON text held invalid UTF-8.
pub(crate) const LOSSY_WARNING: &str = "invalid UTF-8 replaced with U+FFFD";
/// The warning of an event whose JSON text held invalid UTF-16 (an unpaired surrogate).
pub(crate) const LOSSY_UTF16_WARNING: &str = "invalid UTF-16 replaced with U+FFFD";

/// Most warnings kept on one event (a record with hundreds of mistyped fields still costs a
/// bounded amount).
const MAX_WARNINGS: usize = 16;

/// `bytes` as text, every invalid UTF-8 sequence replaced with U+FFFD (as
/// `String::from_utf8_lossy` does), and the byte offsets in the returned text where a
/// replacement was made (ascending).
pub(crate) fn lossy_utf8(bytes: &[u8]) -> (String, Vec<usize>) {
    let mut text = String::with_capacity(bytes.len() + 16);
    let mut marks = Vec::new();
    for chunk in bytes.utf8_chunks() {
        text.push_str(chunk.valid());
        if !chunk.invalid().is_empty() {
            marks.push(text.len());
            text.push(char::REPLACEMENT_CHARACTER);
        }
    }
    (text, marks)
}

/// The replacement offsets of one lossily converted text, to tell which parts of it were
/// damaged.
#[derive(Debug, Default)]
pub(crate) struct Lossy {
    /// Address of the converted text's first byte.
    base: usize,
    /// Length of the converted text, in bytes.
    len: usize,
    /// Byte offsets of the replacements (ascending).
    marks: Vec<usize>,
    /// The warning of a damaged event.
    pub(crate) warning: &'static str,
}

impl Lossy {
    /// The marks of `text` (the string [`lossy_utf8`] returned with them); `warning` is
    /// what a damaged event is marked with.
    pub(crate) fn new(text: &str, marks: Vec<usize>, warning: &'static str) -> Lossy {
        Lossy {
            base: text.as_ptr() as usize,
            len: text.len(),
            marks,
            warning,
        }
    }

    /// Whether `part` (a slice of the converted text) holds a replacement. A slice from
    /// anywhere else counts as damaged when any replacement was made (conservative).
    pub(crate) fn damaged(&self, part: &[u8]) -> bool {
        let start = (part.as_ptr() as usize).wrapping_sub(self.base);
        if start > self.len || part.len() > self.len - start {
            return !self.marks.is_empty();
        }
        let end = start + part.len();
        let i = self.marks.partition_point(|&m| m < start);
        self.marks.get(i).is_some_and(|&m| m < end)
    }
}

/// Earliest plausible event time: 2000-01-01T00:00:00Z, in seconds since the Unix epoch.
const MIN_PLAUSIBLE_SECS: f64 = 946_684_800.0;
/// Latest plausible event time: 2100-01-01T00:00:00Z, in seconds since the Unix epoch.
const MAX_PLAUSIBLE_SECS: f64 = 4_102_444_800.0;

/// A number read as a time since the Unix epoch: seconds, milliseconds or microseconds,
/// whichever puts it between 2000-01-01 and 2100-01-01 (the three ranges do not overlap).
/// Returns microseconds and the unit's name, or `None` when no unit is plausible.
pub(crate) fn epoch_micros(v: f64) -> Option<(i64, &'static str)> {
    if !v.is_finite() {
        return None;
    }
    for (scale, unit) in [
        (1.0, "epoch seconds"),
        (1e3, "epoch milliseconds"),
        (1e6, "epoch microseconds"),
    ] {
        let secs = v / scale;
        if (MIN_PLAUSIBLE_SECS..=MAX_PLAUSIBLE_SECS).contains(&secs) {
            // In range, so the product is far below i64::MAX.
            return Some(((secs * 1e6).round() as i64, unit));
        }
    }
    None
}

/// The JSON type of a value's text, for warnings and reasons ("an object", "a number" ...).
pub(crate) fn json_kind(text: &str) -> &'static str {
    match text.as_bytes().first() {
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        Some(b'-' | b'0'..=b'9') => "a number",
        _ => "an unknown value",
    }
}

/// An object's members, each value kept as raw text (the last of duplicate keys wins).
type Members<'a> = BTreeMap<CowStr<'a>, &'a RawValue>;

fn get<'m, 'a>(m: &'m Members<'a>, key: &'static str) -> Option<&'m &'a RawValue> {
    m.get(&CowStr(Cow::Borrowed(key)))
}

/// Collects warnings, at most [`MAX_WARNINGS`] (then one "more repairs" line).
struct Warnings(Vec<String>);

impl Warnings {
    fn push(&mut self, w: String) {
        match self.0.len() {
            n if n < MAX_WARNINGS => self.0.push(w),
            n if n == MAX_WARNINGS => self.0.push("more fields repaired".to_owned()),
            _ => {}
        }
    }
}

/// How a string field of the wrong type is handled.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mistyped {
    /// Numbers and booleans kept as their JSON text; objects and arrays dropped.
    ScalarsAsText,
    /// Any value kept as its JSON text (`errorCode`: a call that failed must never look
    /// successful because its error code had an odd type).
    AllAsText,
}

/// A string member, tolerating other types as `how` says (warning in `w`).
fn str_member<'a>(m: &Members<'a>, key: &'static str, how: Mistyped, w: &mut Warnings) -> Str<'a> {
    let raw = get(m, key)?;
    let text = raw.get();
    if let Ok(s) = serde_json::from_str::<Option<CowStr<'a>>>(text) {
        return s;
    }
    let kind = json_kind(text);
    let scalar = matches!(kind, "a number" | "a boolean");
    if scalar || how == Mistyped::AllAsText {
        w.push(format!(
            "{key}: expected a string, found {kind}; kept as its JSON text"
        ));
        Some(CowStr(Cow::Borrowed(text)))
    } else {
        w.push(format!("{key}: expected a string, found {kind}; dropped"));
        None
    }
}

/// A required string member (`eventName`, `eventSource`): absent is `Ok(None)`, any type
/// other than a string or null an error.
fn required_str<'a>(m: &Members<'a>, key: &'static str) -> Result<Str<'a>, DecodeError> {
    let Some(raw) = get(m, key) else {
        return Ok(None);
    };
    serde_json::from_str::<Option<CowStr<'a>>>(raw.get()).map_err(|_| DecodeError::Unusable {
        what: "CloudTrail record",
        field: key,
        found: json_kind(raw.get()),
    })
}

/// `userIdentity` of any type: an object whose members are read one by one, an ARN or name
/// string, or nothing.
fn user_identity<'a>(m: &Members<'a>, w: &mut Warnings) -> Option<UserIdentity<'a>> {
    let raw = get(m, "userIdentity")?;
    let text = raw.get();
    if let Ok(u) = serde_json::from_str::<Option<UserIdentity<'a>>>(text) {
        return u;
    }
    match json_kind(text) {
        "an object" => {
            let inner: Members<'a> = serde_json::from_str(text).ok()?;
            let mut iw = Warnings(Vec::new());
            let mut u = UserIdentity {
                identity_type: str_member(&inner, "type", Mistyped::ScalarsAsText, &mut iw),
                arn: str_member(&inner, "arn", Mistyped::ScalarsAsText, &mut iw),
                account_id: str_member(&inner, "accountId", Mistyped::ScalarsAsText, &mut iw),
                invoked_by: str_member(&inner, "invokedBy", Mistyped::ScalarsAsText, &mut iw),
                user_name: str_member(&inner, "userName", Mistyped::ScalarsAsText, &mut iw),
                session_context: None,
            };
            if let Some(ctx) = get(&inner, "sessionContext") {
                match serde_json::from_str(ctx.get()) {
                    Ok(c) => u.session_context = c,
                    Err(_) => iw.push(format!(
                        "sessionContext: unreadable {}; dropped",
                        json_kind(ctx.get())
                    )),
                }
            }
            for x in iw.0 {
                w.push(format!("userIdentity.{x}"));
            }
            Some(u)
        }
        "a string" => {
            let s: CowStr<'a> = serde_json::from_str(text).ok()?;
            w.push(
                "userIdentity: expected an object, found a string; kept as the principal"
                    .to_owned(),
            );
            let mut u = UserIdentity::default();
            if s.starts_with("arn:") {
                u.arn = Some(s);
            } else if !s.is_empty() {
                u.user_name = Some(s);
            }
            Some(u)
        }
        kind => {
            w.push(format!(
                "userIdentity: expected an object, found {kind}; dropped"
            ));
            None
        }
    }
}

/// `eventTime` of the wrong type: a number (or a string of digits) read as epoch seconds,
/// milliseconds or microseconds when plausible.
fn event_time<'a>(m: &Members<'a>, doc: &mut Doc<'a>, w: &mut Warnings) -> Result<(), DecodeError> {
    let Some(raw) = get(m, "eventTime") else {
        return Ok(());
    };
    let text = raw.get();
    if let Ok(s) = serde_json::from_str::<Option<CowStr<'a>>>(text) {
        doc.event_time = s;
        return Ok(());
    }
    let kind = json_kind(text);
    let number = (kind == "a number")
        .then(|| serde_json::from_str::<f64>(text).ok())
        .flatten();
    match number.and_then(epoch_micros) {
        Some((micros, unit)) => {
            w.push(format!("eventTime: number read as {unit}"));
            doc.event_time_micros = Some(micros);
            Ok(())
        }
        None => Err(DecodeError::Unusable {
            what: "CloudTrail record",
            field: "eventTime",
            found: kind,
        }),
    }
}

/// Rebuilds the typed view of an object whose typed parse failed on a field's type, keeping
/// every field that decodes and noting each repair in `Doc::warnings`.
///
/// Salvaged: CloudTrail records (an object with `eventName`, `eventSource`, `eventTime`,
/// `eventVersion`, `userIdentity` or `insightDetails`) and EventBridge envelopes (`detail`,
/// `detail-type`) whose `detail` is such a record. Returns `None` for any other object (the
/// caller keeps the original error), `Some(Err)` when the record has no usable `eventName`,
/// `eventSource` or `eventTime` (a dead letter with that reason).
pub(crate) fn salvage_doc(text: &str) -> Option<Result<Doc<'_>, DecodeError>> {
    salvage_at(text, 0)
}

fn salvage_at(text: &str, depth: usize) -> Option<Result<Doc<'_>, DecodeError>> {
    let m: Members<'_> = serde_json::from_str(text).ok()?;
    let has = |k: &'static str| get(&m, k).is_some();
    // Other envelopes (Lambda events, log files, CloudWatch Logs payloads) are not salvaged:
    // their own readers report what is wrong.
    if ["kinesis", "awslogs", "Records", "messageType", "Events"]
        .into_iter()
        .any(has)
    {
        return None;
    }
    let envelope = depth == 0 && (has("detail") || has("detail-type"));
    let record = [
        "eventName",
        "eventSource",
        "eventTime",
        "eventVersion",
        "userIdentity",
        "insightDetails",
    ]
    .into_iter()
    .any(has);
    if envelope {
        return Some(salvage_envelope(&m));
    }
    if !record {
        return None;
    }
    Some(salvage_record(&m))
}

fn salvage_envelope<'a>(m: &Members<'a>) -> Result<Doc<'a>, DecodeError> {
    let mut w = Warnings(Vec::new());
    let mut doc = Doc {
        detail_type: str_member(m, "detail-type", Mistyped::ScalarsAsText, &mut w),
        account: str_member(m, "account", Mistyped::ScalarsAsText, &mut w),
        region: str_member(m, "region", Mistyped::ScalarsAsText, &mut w),
        ..Doc::default()
    };
    if let Some(detail) = get(m, "detail") {
        match salvage_at(detail.get(), 1) {
            Some(Ok(d)) => doc.detail = Some(Box::new(d)),
            Some(Err(e)) => return Err(e),
            None => {
                let detail_type = doc.detail_type.as_deref().unwrap_or("");
                if !detail_type.contains("CloudTrail") {
                    return Err(DecodeError::UnsupportedDetailType(detail_type.to_owned()));
                }
                return Err(DecodeError::WrongShape(format!(
                    "EventBridge detail is {}, not a CloudTrail record",
                    json_kind(detail.get())
                )));
            }
        }
    }
    doc.warnings = w.0;
    Ok(doc)
}

fn salvage_record<'a>(m: &Members<'a>) -> Result<Doc<'a>, DecodeError> {
    use Mistyped::{AllAsText, ScalarsAsText};
    let mut w = Warnings(Vec::new());
    let mut doc = Doc {
        event_name: required_str(m, "eventName")?,
        event_source: required_str(m, "eventSource")?,
        ..Doc::default()
    };
    event_time(m, &mut doc, &mut w)?;
    doc.event_id = str_member(m, "eventID", ScalarsAsText, &mut w);
    doc.event_type = str_member(m, "eventType", ScalarsAsText, &mut w);
    doc.event_category = str_member(m, "eventCategory", ScalarsAsText, &mut w);
    doc.aws_region = str_member(m, "awsRegion", ScalarsAsText, &mut w);
    doc.source_ip_address = str_member(m, "sourceIPAddress", ScalarsAsText, &mut w);
    doc.user_agent = str_member(m, "userAgent", ScalarsAsText, &mut w);
    doc.error_code = str_member(m, "errorCode", AllAsText, &mut w);
    doc.error_message = str_member(m, "errorMessage", AllAsText, &mut w);
    doc.recipient_account_id = str_member(m, "recipientAccountId", ScalarsAsText, &mut w);
    doc.shared_event_id = str_member(m, "sharedEventID", ScalarsAsText, &mut w);
    doc.user_identity = user_identity(m, &mut w);
    if let Some(raw) = get(m, "readOnly") {
        let probe = format!(r#"{{"readOnly":{}}}"#, raw.get());
        match serde_json::from_str::<Doc<'_>>(&probe) {
            Ok(r) => doc.read_only = r.read_only,
            Err(_) => w.push(format!(
                "readOnly: expected a boolean, found {}; dropped",
                json_kind(raw.get())
            )),
        }
    }
    if let Some(raw) = get(m, "insightDetails") {
        match serde_json::from_str::<Option<InsightDetailsDoc<'a>>>(raw.get()) {
            Ok(d) => doc.insight_details = d,
            Err(_) => w.push(format!(
                "insightDetails: unreadable {}; dropped",
                json_kind(raw.get())
            )),
        }
    }
    // Kept as raw JSON text whatever their type.
    doc.request_parameters = get(m, "requestParameters").copied();
    doc.response_elements = get(m, "responseElements").copied();
    doc.resources = get(m, "resources").copied();
    doc.warnings = w.0;
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lossy_marks_each_replacement() {
        let (t, marks) = lossy_utf8(b"a\xffb\xe9\xe9c");
        assert_eq!(t, "a\u{FFFD}b\u{FFFD}\u{FFFD}c");
        assert_eq!(marks, vec![1, 5, 8]);
        let l = Lossy::new(&t, marks, LOSSY_WARNING);
        assert!(l.damaged(&t.as_bytes()[0..2]));
        assert!(!l.damaged(&t.as_bytes()[0..1]));
        assert!(!l.damaged(&t.as_bytes()[11..]));
        assert!(l.damaged(b"elsewhere"));
    }

    #[test]
    fn epoch_units_by_magnitude() {
        assert_eq!(
            epoch_micros(1_709_630_129.0),
            Some((1_709_630_129_000_000, "epoch seconds"))
        );
        assert_eq!(
            epoch_micros(1_709_630_129_250.0),
            Some((1_709_630_129_250_000, "epoch milliseconds"))
        );
        assert_eq!(
            epoch_micros(1_709_630_129_250_001.0),
            Some((1_709_630_129_250_001, "epoch microseconds"))
        );
        assert_eq!(epoch_micros(12.0), None);
        assert_eq!(epoch_micros(-1_709_630_129.0), None);
        assert_eq!(epoch_micros(f64::NAN), None);
    }

    #[test]
    fn non_cloudtrail_objects_are_not_salvaged() {
        assert!(salvage_doc(r#"{"foo":1}"#).is_none());
        assert!(salvage_doc("[1]").is_none());
        // A Lambda Kinesis record with a mistyped field stays the Lambda reader's to report.
        assert!(salvage_doc(r#"{"eventSource":"aws:kinesis","kinesis":{"data":7}}"#).is_none());
        let e = salvage_doc(r#"{"eventName":7,"eventSource":"s","eventTime":"x"}"#)
            .unwrap()
            .err()
            .unwrap();
        assert_eq!(
            e.to_string(),
            "CloudTrail record has no usable eventName (found a number)"
        );
    }
}
