//! One typed view of every top-level JSON object the decoders accept.
//!
//! A single struct borrows every field any input shape uses (CloudTrail record, EventBridge
//! envelope, CloudTrail log file, digest file, CloudWatch Logs payload, metric stream line,
//! Lambda events), so a document is parsed once and then dispatched on which fields are
//! present. Unknown fields are skipped without building `serde_json::Value` trees; nested
//! JSON that is kept as text (`requestParameters`, `responseElements`) is borrowed as
//! [`RawValue`]. Fields whose type differs between shapes are borrowed raw and parsed by the
//! branch that needs them.

use serde::de::{self, IgnoredAny, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;

/// A JSON string borrowed from the input when it has no escapes, owned otherwise.
///
/// Serde only borrows a bare `Cow<str>` field; inside `Option` it always allocates, hence this
/// newtype whose visitor keeps borrowed strings borrowed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct CowStr<'a>(pub Cow<'a, str>);

impl std::ops::Deref for CowStr<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for CowStr<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = CowStr<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V(std::marker::PhantomData))
    }
}

/// Optional borrowed string.
pub(crate) type Str<'a> = Option<CowStr<'a>>;

/// An id that producers write as a string (AWS) or as a number (some emulators and
/// re-encoders): either way it is kept as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IdText<'a>(pub Cow<'a, str>);

impl std::ops::Deref for IdText<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for IdText<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = IdText<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an integer")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(IdText(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(IdText(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(IdText(Cow::Owned(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(IdText(Cow::Owned(v.to_string())))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(IdText(Cow::Owned(v.to_string())))
            }
            fn visit_u128<E: de::Error>(self, v: u128) -> Result<Self::Value, E> {
                Ok(IdText(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// Every field of every accepted top-level object (see module docs).
#[derive(Deserialize, Default)]
#[serde(default)]
pub(crate) struct Doc<'a> {
    // ---- CloudTrail record (also the element of `Records`, the EventBridge `detail`) ----
    #[serde(borrow, rename = "eventID")]
    pub event_id: Str<'a>,
    #[serde(borrow, rename = "eventName")]
    pub event_name: Str<'a>,
    #[serde(borrow, rename = "eventSource")]
    pub event_source: Str<'a>,
    #[serde(borrow, rename = "eventTime")]
    pub event_time: Str<'a>,
    #[serde(borrow, rename = "eventType")]
    pub event_type: Str<'a>,
    #[serde(rename = "eventVersion")]
    pub event_version: Option<IgnoredAny>,
    #[serde(borrow, rename = "awsRegion")]
    pub aws_region: Str<'a>,
    #[serde(borrow, rename = "sourceIPAddress")]
    pub source_ip_address: Str<'a>,
    #[serde(borrow, rename = "userAgent")]
    pub user_agent: Str<'a>,
    #[serde(borrow, rename = "errorCode")]
    pub error_code: Str<'a>,
    #[serde(borrow, rename = "errorMessage")]
    pub error_message: Str<'a>,
    #[serde(rename = "readOnly", deserialize_with = "read_only")]
    pub read_only: Option<bool>,
    #[serde(borrow, rename = "userIdentity")]
    pub user_identity: Option<UserIdentity<'a>>,
    #[serde(borrow, rename = "requestParameters")]
    pub request_parameters: Option<&'a RawValue>,
    #[serde(borrow, rename = "responseElements")]
    pub response_elements: Option<&'a RawValue>,
    #[serde(borrow, rename = "recipientAccountId")]
    pub recipient_account_id: Str<'a>,
    /// Objects in a CloudTrail record, ARN strings in an EventBridge envelope.
    #[serde(borrow)]
    pub resources: Option<&'a RawValue>,
    #[serde(borrow, rename = "eventCategory")]
    pub event_category: Str<'a>,

    // ---- CloudTrail Insights record ----
    #[serde(borrow, rename = "insightDetails")]
    pub insight_details: Option<InsightDetailsDoc<'a>>,
    #[serde(borrow, rename = "sharedEventID")]
    pub shared_event_id: Str<'a>,

    // ---- `aws cloudtrail lookup-events` output ----
    #[serde(borrow, rename = "Events")]
    pub lookup_events: Option<Vec<&'a RawValue>>,

    // ---- CloudTrail log file / Lambda Kinesis event ----
    #[serde(borrow, rename = "Records")]
    pub records: Option<Vec<&'a RawValue>>,

    // ---- CloudTrail digest file ----
    #[serde(rename = "digestStartTime")]
    pub digest_start_time: Option<IgnoredAny>,
    #[serde(rename = "digestEndTime")]
    pub digest_end_time: Option<IgnoredAny>,
    #[serde(rename = "digestS3Object")]
    pub digest_s3_object: Option<IgnoredAny>,

    // ---- EventBridge envelope ----
    #[serde(borrow, rename = "detail-type")]
    pub detail_type: Str<'a>,
    /// The CloudTrail record of an EventBridge event, parsed in the same pass as the envelope.
    #[serde(borrow)]
    pub detail: Option<Box<Doc<'a>>>,
    #[serde(borrow)]
    pub account: Str<'a>,
    /// EventBridge envelope region, or metric stream region.
    #[serde(borrow)]
    pub region: Str<'a>,

    // ---- CloudWatch Logs subscription payload ----
    #[serde(borrow, rename = "messageType")]
    pub message_type: Str<'a>,
    #[serde(borrow)]
    pub owner: Str<'a>,
    #[serde(borrow, rename = "logGroup")]
    pub log_group: Str<'a>,
    #[serde(borrow, rename = "logStream")]
    pub log_stream: Str<'a>,
    #[serde(borrow, rename = "logEvents")]
    pub log_events: Option<Vec<&'a RawValue>>,

    // ---- Lambda events ----
    #[serde(borrow)]
    pub awslogs: Option<AwsLogs<'a>>,
    #[serde(borrow)]
    pub kinesis: Option<LambdaKinesis<'a>>,
    #[serde(borrow, rename = "eventSourceARN")]
    pub event_source_arn: Str<'a>,

    // ---- CloudWatch metric stream (JSON output format) ----
    #[serde(borrow)]
    pub metric_stream_name: Str<'a>,
    #[serde(borrow)]
    pub account_id: Str<'a>,
    #[serde(borrow)]
    pub namespace: Str<'a>,
    #[serde(borrow)]
    pub metric_name: Str<'a>,
    #[serde(borrow)]
    pub dimensions: Option<&'a RawValue>,
    #[serde(borrow)]
    pub timestamp: Option<&'a RawValue>,
    #[serde(borrow)]
    pub value: Option<&'a RawValue>,
    #[serde(borrow)]
    pub unit: Str<'a>,

    // ---- filled by the salvage path (never read from JSON) ----
    /// `eventTime` already converted (a number read as epoch seconds, milliseconds or
    /// microseconds), in microseconds since the Unix epoch.
    #[serde(skip)]
    pub event_time_micros: Option<i64>,
    /// What was repaired to keep this record (becomes `Event::decode_warnings`).
    #[serde(skip)]
    pub warnings: Vec<String>,
}

impl Doc<'_> {
    /// Whether any CloudTrail record field is present.
    pub fn looks_like_cloudtrail(&self) -> bool {
        self.insight_details.is_some()
            || self.event_name.is_some()
            || self.event_source.is_some()
            || self.event_time.is_some()
            || self.event_version.is_some()
            || self.user_identity.is_some()
    }

    /// Whether the digest-file fields are present.
    pub fn looks_like_digest(&self) -> bool {
        self.digest_start_time.is_some()
            || self.digest_end_time.is_some()
            || self.digest_s3_object.is_some()
    }

    /// Whether the metric stream fields are present.
    pub fn looks_like_metric(&self) -> bool {
        self.metric_stream_name.is_some()
            || (self.metric_name.is_some() && self.namespace.is_some())
    }
}

/// `userIdentity`, any of its shapes (Root, IAMUser, AssumedRole, FederatedUser, AWSService,
/// AWSAccount, anonymous, IdentityCenterUser ...): every field optional.
#[derive(Deserialize, Default)]
#[serde(default)]
pub(crate) struct UserIdentity<'a> {
    #[serde(borrow, rename = "type")]
    pub identity_type: Str<'a>,
    #[serde(borrow)]
    pub arn: Str<'a>,
    #[serde(borrow, rename = "accountId")]
    pub account_id: Str<'a>,
    #[serde(borrow, rename = "invokedBy")]
    pub invoked_by: Str<'a>,
    #[serde(borrow, rename = "userName")]
    pub user_name: Str<'a>,
    #[serde(borrow, rename = "sessionContext")]
    pub session_context: Option<SessionContext<'a>>,
}

/// `userIdentity.sessionContext`.
#[derive(Deserialize, Default)]
#[serde(default)]
pub(crate) struct SessionContext<'a> {
    #[serde(borrow, rename = "sessionIssuer")]
    pub session_issuer: Option<SessionIssuer<'a>>,
}

/// `userIdentity.sessionContext.sessionIssuer`.
#[derive(Deserialize, Default)]
#[serde(default)]
pub(crate) struct SessionIssuer<'a> {
    #[serde(borrow)]
    pub arn: Str<'a>,
    #[serde(borrow, rename = "userName")]
    pub user_name: Str<'a>,
}

/// `awslogs` of a Lambda CloudWatch Logs event.
#[derive(Deserialize, Default)]
#[serde(default)]
pub(crate) struct AwsLogs<'a> {
    /// Base64 of the gzip subscription payload.
    #[serde(borrow)]
    pub data: Str<'a>,
}

/// `kinesis` of one record of a Lambda Kinesis event.
#[derive(Deserialize, Default)]
#[serde(default)]
pub(crate) struct LambdaKinesis<'a> {
    /// Base64 of the Kinesis record's data.
    #[serde(borrow)]
    pub data: Str<'a>,
    #[serde(borrow, rename = "sequenceNumber")]
    pub sequence_number: Str<'a>,
    /// Some producers (the kinesis-aggregation test events) nest `eventID` here.
    #[serde(borrow, rename = "eventID")]
    pub event_id: Str<'a>,
}

/// One CloudTrail `resources[]` element.
#[derive(Deserialize, Default)]
#[serde(default)]
pub(crate) struct ResourceElem<'a> {
    #[serde(borrow, rename = "type")]
    pub resource_type: Str<'a>,
    #[serde(borrow, rename = "ARN")]
    pub arn: Str<'a>,
}

/// `insightDetails` of a CloudTrail Insights record,
/// <https://docs.aws.amazon.com/awscloudtrail/latest/userguide/cloudtrail-event-reference-insight-details.html>.
#[derive(Deserialize, Default)]
#[serde(default)]
pub(crate) struct InsightDetailsDoc<'a> {
    #[serde(borrow)]
    pub state: Str<'a>,
    #[serde(borrow, rename = "eventSource")]
    pub event_source: Str<'a>,
    #[serde(borrow, rename = "eventName")]
    pub event_name: Str<'a>,
    #[serde(borrow, rename = "insightType")]
    pub insight_type: Str<'a>,
    #[serde(borrow, rename = "errorCode")]
    pub error_code: Str<'a>,
    #[serde(rename = "insightContext")]
    pub insight_context: Option<InsightContextDoc>,
}

/// `insightDetails.insightContext` (only `statistics` is read; `attributions` is skipped).
#[derive(Deserialize, Default)]
#[serde(default)]
pub(crate) struct InsightContextDoc {
    pub statistics: Option<InsightStatisticsDoc>,
}

/// `insightDetails.insightContext.statistics`: rates per minute, durations in minutes.
#[derive(Deserialize, Default)]
#[serde(default)]
pub(crate) struct InsightStatisticsDoc {
    pub baseline: Option<AverageDoc>,
    pub insight: Option<AverageDoc>,
    #[serde(rename = "insightDuration")]
    pub insight_duration: Option<f64>,
    #[serde(rename = "baselineDuration")]
    pub baseline_duration: Option<f64>,
}

/// `{"average": <number>}`.
#[derive(Deserialize, Default)]
#[serde(default)]
pub(crate) struct AverageDoc {
    pub average: Option<f64>,
}

/// One element of `aws cloudtrail lookup-events` output's `Events`: the record is the JSON
/// text in `CloudTrailEvent` (LookupEvents API, `Event` data type,
/// <https://docs.aws.amazon.com/awscloudtrail/latest/APIReference/API_Event.html>).
#[derive(Deserialize, Default)]
#[serde(default)]
pub(crate) struct LookupEventElem<'a> {
    #[serde(borrow, rename = "CloudTrailEvent")]
    pub cloudtrail_event: Str<'a>,
}

/// One element of a CloudWatch Logs payload's `logEvents`.
#[derive(Deserialize)]
pub(crate) struct LogEventElem<'a> {
    #[serde(borrow, default)]
    pub id: Option<IdText<'a>>,
    /// Milliseconds since the Unix epoch.
    pub timestamp: i64,
    #[serde(borrow)]
    pub message: CowStr<'a>,
}

/// A metric stream data point's `value`.
#[derive(Deserialize)]
pub(crate) struct MetricValueElem {
    pub max: f64,
    pub min: f64,
    pub sum: f64,
    pub count: f64,
}

/// `readOnly`: a boolean, the strings "true"/"false" (any case), or null/missing (`None`).
/// Other strings and numbers are tolerated as `None`.
fn read_only<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<bool>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a boolean or \"true\"/\"false\"")
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
            Ok(Some(v))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            if v.eq_ignore_ascii_case("true") {
                Ok(Some(true))
            } else if v.eq_ignore_ascii_case("false") {
                Ok(Some(false))
            } else {
                Ok(None)
            }
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
            d.deserialize_any(V)
        }
    }
    d.deserialize_option(V)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_without_escapes_are_borrowed() {
        let text = r#"{"eventName":"Plain","eventSource":"a\"b","readOnly":"False"}"#;
        let doc: Doc<'_> = serde_json::from_str(text).unwrap();
        assert!(matches!(
            doc.event_name,
            Some(CowStr(Cow::Borrowed("Plain")))
        ));
        assert!(matches!(doc.event_source, Some(CowStr(Cow::Owned(ref s))) if s == "a\"b"));
        assert_eq!(doc.read_only, Some(false));
        let doc: Doc<'_> = serde_json::from_slice(text.as_bytes()).unwrap();
        assert!(matches!(
            doc.event_name,
            Some(CowStr(Cow::Borrowed("Plain")))
        ));
    }

    #[test]
    fn read_only_forms() {
        let ro = |v: &str| {
            serde_json::from_str::<Doc<'_>>(&format!(r#"{{"readOnly":{v}}}"#))
                .map(|d| d.read_only)
                .map_err(|e| e.to_string())
        };
        assert_eq!(ro("true"), Ok(Some(true)));
        assert_eq!(ro("false"), Ok(Some(false)));
        assert_eq!(ro(r#""true""#), Ok(Some(true)));
        assert_eq!(ro(r#""maybe""#), Ok(None));
        assert_eq!(ro("null"), Ok(None));
        assert_eq!(ro("1"), Ok(None));
        assert_eq!(
            ro("[]"),
            Err("invalid type: sequence, expected a boolean or \"true\"/\"false\" at line 1 column 14".into())
        );
        assert_eq!(
            serde_json::from_str::<Doc<'_>>("{}")
                .map(|d| d.read_only)
                .ok(),
            Some(None)
        );
    }
}
