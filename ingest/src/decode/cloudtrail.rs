//! CloudTrail record normalisation (DESIGN §2, §3).
//!
//! Record fields: CloudTrail record contents,
//! <https://docs.aws.amazon.com/awscloudtrail/latest/userguide/cloudtrail-event-reference-record-contents.html>;
//! `userIdentity`:
//! <https://docs.aws.amazon.com/awscloudtrail/latest/userguide/cloudtrail-event-reference-user-identity.html>;
//! Insights records:
//! <https://docs.aws.amazon.com/awscloudtrail/latest/userguide/cloudtrail-insights-fields-trails.html>.

use super::doc::{CowStr, Doc, InsightDetailsDoc, ResourceElem, Str, UserIdentity};
use super::error::DecodeError;
use super::salvage::{LOSSY_WARNING, epoch_micros, lossy_utf8, salvage_doc};
use aiops_core::time::parse_timestamp_micros;
use aiops_core::{
    CloudTrailFields, Event, EventBody, InsightFields, Position, Principal, ResourceRef,
    stable_hash,
};
use serde_json::value::RawValue;

/// Account and region of an enclosing envelope (EventBridge `account`/`region`, CloudWatch
/// Logs `owner`), used when the record itself does not say.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Envelope<'e> {
    pub account: Option<&'e str>,
    pub region: Option<&'e str>,
}

/// The string, owned, unless absent or empty (empty strings, e.g. Panther's `"errorCode": ""`
/// on successful calls, mean "not set").
fn own(s: Str<'_>) -> Option<String> {
    match s {
        Some(CowStr(c)) if !c.is_empty() => Some(c.into_owned()),
        _ => None,
    }
}

fn non_empty<'s>(s: &'s Str<'_>) -> Option<&'s str> {
    s.as_deref().filter(|s| !s.is_empty())
}

/// The last component of an ARN, after the last `/` or `:` (`None` when empty).
pub(crate) fn id_from_arn(arn: &str) -> Option<String> {
    arn.rsplit(['/', ':'])
        .next()
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

fn principal(identity: Option<UserIdentity<'_>>) -> Principal {
    let Some(u) = identity else {
        return Principal::default();
    };
    let issuer = u.session_context.and_then(|c| c.session_issuer);
    let (issuer_arn, issuer_user) = match issuer {
        Some(i) => (own(i.arn), own(i.user_name)),
        None => (None, None),
    };
    Principal {
        principal_type: own(u.identity_type),
        arn: own(u.arn),
        account_id: own(u.account_id),
        session_issuer_arn: issuer_arn,
        invoked_by: own(u.invoked_by),
        user_name: own(u.user_name).or(issuer_user),
    }
}

/// `resources[]`: objects `{type, ARN}` (CloudTrail) or ARN strings (EventBridge style).
/// Elements of any other shape are skipped; a `resources` that is not an array gives none.
fn resources(raw: Option<&RawValue>) -> Vec<ResourceRef> {
    let Some(raw) = raw else {
        return Vec::new();
    };
    let Ok(items) = serde_json::from_str::<Vec<&RawValue>>(raw.get()) else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let text = item.get();
        let resource = if text.starts_with('{') {
            serde_json::from_str::<ResourceElem<'_>>(text)
                .ok()
                .map(|r| (own(r.resource_type), own(r.arn)))
        } else if text.starts_with('"') {
            serde_json::from_str::<CowStr<'_>>(text)
                .ok()
                .map(|arn| (None, own(Some(arn))))
        } else {
            None
        };
        match resource {
            Some((None, None)) | None => {}
            Some((resource_type, arn)) => out.push(ResourceRef {
                resource_type,
                id: arn.as_deref().and_then(id_from_arn),
                arn,
            }),
        }
    }
    out
}

/// Raw JSON text of a nested value; `None` when absent or null (null never reaches here:
/// serde maps it to `None`).
fn raw_text(raw: Option<&RawValue>) -> Option<String> {
    raw.map(|r| r.get().to_owned())
}

/// The `insightDetails` of an Insights record, normalised.
fn insight(details: InsightDetailsDoc<'_>, shared_event_id: Option<String>) -> InsightFields {
    let stats = details.insight_context.and_then(|c| c.statistics);
    let (baseline, insight, insight_duration, baseline_duration) = match stats {
        Some(s) => (
            s.baseline.and_then(|a| a.average),
            s.insight.and_then(|a| a.average),
            s.insight_duration,
            s.baseline_duration,
        ),
        None => (None, None, None, None),
    };
    InsightFields {
        state: own(details.state),
        insight_type: own(details.insight_type),
        error_code: own(details.error_code),
        shared_event_id,
        baseline_average: baseline,
        insight_average: insight,
        baseline_duration_minutes: baseline_duration,
        insight_duration_minutes: insight_duration,
    }
}

/// `eventTime` in microseconds: the salvaged value, an ISO-8601 string, or a string of digits
/// read as epoch seconds/milliseconds/microseconds when plausible (with a warning).
fn event_time(doc: &mut Doc<'_>) -> Result<i64, DecodeError> {
    if let Some(micros) = doc.event_time_micros {
        return Ok(micros);
    }
    let Some(text) = non_empty(&doc.event_time) else {
        return Err(DecodeError::MissingField {
            what: "CloudTrail record",
            field: "eventTime",
        });
    };
    match parse_timestamp_micros(text) {
        Ok(t) => Ok(t),
        Err(e) => {
            let digits = !text.is_empty()
                && text.bytes().all(|b| b.is_ascii_digit() || b == b'.')
                && text.len() <= 24;
            match digits
                .then(|| text.parse::<f64>().ok())
                .flatten()
                .and_then(epoch_micros)
            {
                Some((t, unit)) => {
                    doc.warnings
                        .push(format!("eventTime: string of digits read as {unit}"));
                    Ok(t)
                }
                None => Err(e.into()),
            }
        }
    }
}

/// Normalises a parsed CloudTrail record (an API call, or a CloudTrail Insights record).
///
/// `raw` is the record's JSON text (hashed into the event id when `eventID` is missing).
/// An Insights record (`insightDetails` present) takes its event name and source from
/// `insightDetails.eventName`/`eventSource` (the API it reports on) and carries the rest in
/// [`InsightFields`]. Repairs noted in `doc.warnings` become the event's `decode_warnings`.
///
/// # Errors
/// [`DecodeError::MissingField`] without `eventName`, `eventSource` or `eventTime`;
/// [`DecodeError::BadEventTime`] when `eventTime` does not parse.
pub(crate) fn cloudtrail_event(
    doc: &mut Doc<'_>,
    raw: &[u8],
    envelope: Envelope<'_>,
    position: Position,
    ingest_time: i64,
) -> Result<Event, DecodeError> {
    const WHAT: &str = "CloudTrail record";
    let mut details = doc.insight_details.take();
    let event_name = own(doc.event_name.take())
        .or_else(|| details.as_mut().and_then(|d| own(d.event_name.take())))
        .ok_or(DecodeError::MissingField {
            what: WHAT,
            field: "eventName",
        })?;
    let event_source = own(doc.event_source.take())
        .or_else(|| details.as_mut().and_then(|d| own(d.event_source.take())))
        .ok_or(DecodeError::MissingField {
            what: WHAT,
            field: "eventSource",
        })?;
    let event_time = event_time(doc)?;
    let event_id =
        own(doc.event_id.take()).unwrap_or_else(|| format!("{:016x}", stable_hash(&[raw])));
    let principal = principal(doc.user_identity.take());
    let recipient_account_id = own(doc.recipient_account_id.take());
    let account = recipient_account_id
        .clone()
        .or_else(|| principal.account_id.clone())
        .or_else(|| {
            envelope
                .account
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        });
    let region = own(doc.aws_region.take())
        .or_else(|| envelope.region.filter(|s| !s.is_empty()).map(str::to_owned));
    let insight = details.map(|d| Box::new(insight(d, own(doc.shared_event_id.take()))));
    let fields = CloudTrailFields {
        event_source,
        event_name,
        event_type: own(doc.event_type.take()),
        principal,
        source_ip: own(doc.source_ip_address.take()),
        user_agent: own(doc.user_agent.take()),
        error_code: own(doc.error_code.take()),
        error_message: own(doc.error_message.take()),
        // An Insights record reports a rate and changes nothing (see `CloudTrailFields`).
        read_only: if insight.is_some() {
            Some(true)
        } else {
            doc.read_only
        },
        resources: resources(doc.resources.take()),
        request_parameters: raw_text(doc.request_parameters.take()),
        response_elements: raw_text(doc.response_elements.take()),
        recipient_account_id,
        event_category: own(doc.event_category.take()),
        insight,
    };
    Ok(Event {
        event_id,
        event_time,
        ingest_time,
        account,
        region,
        position,
        body: EventBody::Cloudtrail(Box::new(fields)),
        decode_warnings: std::mem::take(&mut doc.warnings),
    })
}

/// Decodes one CloudTrail record (the JSON object CloudTrail writes as an element of
/// `Records`) into a normalised event.
///
/// `ingest_time` is in microseconds since the Unix epoch, UTC. Tolerates every
/// `userIdentity` shape, `requestParameters`/`responseElements` of any JSON type (kept as raw
/// JSON text, `None` when absent or null), missing or string `readOnly`, empty `errorCode`
/// (treated as absent) and `eventTime` as ISO-8601 or `YYYY-MM-DD HH:MM:SS`. The event id is
/// `eventID`, or the hex [`stable_hash`] of the record bytes when it is missing. Like the
/// other decoders it keeps what decodes: invalid UTF-8 is replaced with U+FFFD, optional
/// fields of the wrong type are repaired or dropped, an `eventTime` number is read as epoch
/// seconds/milliseconds/microseconds when plausible; each repair is listed in
/// `decode_warnings`. CloudTrail Insights records decode too (see [`InsightFields`]).
///
/// # Errors
/// [`DecodeError`] when the bytes are not a JSON object, or `eventName`, `eventSource` or a
/// usable `eventTime` is missing.
pub fn parse_cloudtrail_record(
    record: &[u8],
    position: Position,
    ingest_time: i64,
) -> Result<Event, DecodeError> {
    const WHAT: &str = "CloudTrail record";
    let fixed;
    let (text, lossy) = match std::str::from_utf8(record) {
        Ok(s) => (s, false),
        Err(_) => {
            fixed = lossy_utf8(record).0;
            (fixed.as_str(), true)
        }
    };
    let mut doc = match serde_json::from_str::<Doc<'_>>(text) {
        Ok(doc) => doc,
        Err(e) if e.classify() == serde_json::error::Category::Data => match salvage_doc(text) {
            Some(salvaged) => salvaged?,
            None => return Err(DecodeError::from_json(WHAT, record, e)),
        },
        Err(e) => return Err(DecodeError::from_json(WHAT, record, e)),
    };
    let mut ev = cloudtrail_event(
        &mut doc,
        text.as_bytes(),
        Envelope::default(),
        position,
        ingest_time,
    )?;
    if lossy {
        ev.decode_warnings.insert(0, LOSSY_WARNING.to_owned());
    }
    Ok(ev)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_from_arn_takes_last_component() {
        assert_eq!(
            id_from_arn("arn:aws:kms:us-west-2:1:key/abc").as_deref(),
            Some("abc")
        );
        assert_eq!(
            id_from_arn("arn:aws:s3:::bucket").as_deref(),
            Some("bucket")
        );
        assert_eq!(
            id_from_arn("arn:aws:sns:us-east-1:1:topic").as_deref(),
            Some("topic")
        );
        assert_eq!(id_from_arn("arn:aws:iam::1:role/"), None);
    }

    #[test]
    fn minimal_record_and_quirks() {
        let rec = br#"{"eventName":"X","eventSource":"s.amazonaws.com","eventTime":"2024-01-01T00:00:00Z",
            "readOnly":"TRUE","errorCode":"","requestParameters":[1,"a"],"responseElements":"text",
            "resources":[{"type":"AWS::S3::Bucket","ARN":"arn:aws:s3:::b"},"arn:aws:sqs:r:1:q",7]}"#;
        let ev = parse_cloudtrail_record(rec, Position::default(), 5).unwrap();
        let ct = ev.cloudtrail().unwrap();
        assert_eq!(ev.event_time, 1_704_067_200_000_000);
        assert_eq!(ev.ingest_time, 5);
        assert_eq!(
            ev.event_id,
            format!("{:016x}", stable_hash(&[rec.as_slice()]))
        );
        assert_eq!(ct.read_only, Some(true));
        assert_eq!(ct.error_code, None);
        assert_eq!(ct.request_parameters.as_deref(), Some(r#"[1,"a"]"#));
        assert_eq!(ct.response_elements.as_deref(), Some(r#""text""#));
        assert_eq!(
            ct.resources,
            vec![
                ResourceRef {
                    resource_type: Some("AWS::S3::Bucket".into()),
                    id: Some("b".into()),
                    arn: Some("arn:aws:s3:::b".into())
                },
                ResourceRef {
                    resource_type: None,
                    id: Some("q".into()),
                    arn: Some("arn:aws:sqs:r:1:q".into())
                },
            ]
        );
        assert_eq!(ct.principal, Principal::default());
        assert_eq!(ev.account, None);
    }

    #[test]
    fn missing_fields_have_clear_reasons() {
        let e = parse_cloudtrail_record(
            br#"{"eventSource":"a","eventTime":"2024-01-01T00:00:00Z"}"#,
            Position::default(),
            0,
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "CloudTrail record has no eventName");
        let e = parse_cloudtrail_record(
            br#"{"eventName":"a","eventTime":"2024-01-01T00:00:00Z"}"#,
            Position::default(),
            0,
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "CloudTrail record has no eventSource");
        let e = parse_cloudtrail_record(
            br#"{"eventName":"a","eventSource":"b"}"#,
            Position::default(),
            0,
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "CloudTrail record has no eventTime");
        let e = parse_cloudtrail_record(
            br#"{"eventName":"a","eventSource":"b","eventTime":"soon"}"#,
            Position::default(),
            0,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "CloudTrail record has an unparseable eventTime: invalid timestamp \"soon\": too short"
        );
        let e = parse_cloudtrail_record(br#"{"eventName":5}"#, Position::default(), 0).unwrap_err();
        assert_eq!(
            e.to_string(),
            "CloudTrail record has no usable eventName (found a number)"
        );
    }

    #[test]
    fn user_identity_shapes() {
        let p = |ui: &str| {
            let rec = format!(
                r#"{{"eventName":"X","eventSource":"s","eventTime":"2024-01-01T00:00:00Z","userIdentity":{ui}}}"#
            );
            parse_cloudtrail_record(rec.as_bytes(), Position::default(), 0)
                .unwrap()
                .cloudtrail()
                .unwrap()
                .principal
                .clone()
        };
        assert_eq!(
            p(r#"{"type":"AWSService","invokedBy":"autoscaling.amazonaws.com"}"#),
            Principal {
                principal_type: Some("AWSService".into()),
                invoked_by: Some("autoscaling.amazonaws.com".into()),
                ..Default::default()
            }
        );
        assert_eq!(
            p(r#"{"type":"AWSAccount","principalId":"","accountId":"ANONYMOUS_PRINCIPAL"}"#),
            Principal {
                principal_type: Some("AWSAccount".into()),
                account_id: Some("ANONYMOUS_PRINCIPAL".into()),
                ..Default::default()
            }
        );
        assert_eq!(
            p(
                r#"{"type":"FederatedUser","arn":"arn:aws:sts::1:federated-user/bob","accountId":"1",
                "sessionContext":{"attributes":{},"sessionIssuer":{"type":"IAMUser","arn":"arn:aws:iam::1:user/bob","userName":"bob"}}}"#
            ),
            Principal {
                principal_type: Some("FederatedUser".into()),
                arn: Some("arn:aws:sts::1:federated-user/bob".into()),
                account_id: Some("1".into()),
                session_issuer_arn: Some("arn:aws:iam::1:user/bob".into()),
                user_name: Some("bob".into()),
                ..Default::default()
            }
        );
        assert_eq!(p("null"), Principal::default());
        assert_eq!(p(r#"{"sessionContext":null}"#), Principal::default());
    }
}
