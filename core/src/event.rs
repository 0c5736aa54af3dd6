//! The normalised event: one struct for CloudTrail calls, log lines and metric data points
//! (DESIGN §3). No AWS SDK types appear here.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Where an event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// A CloudTrail API call record (from EventBridge, a log file, or CloudWatch Logs).
    Cloudtrail,
    /// A CloudWatch Logs log event.
    Logs,
    /// A CloudWatch metric stream data point.
    Metrics,
}

impl Source {
    /// All sources, in the order used for partition listings.
    pub const ALL: [Source; 3] = [Source::Cloudtrail, Source::Logs, Source::Metrics];

    /// The lower-case name used in partition paths (`source=<name>`) and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Cloudtrail => "cloudtrail",
            Source::Logs => "logs",
            Source::Metrics => "metrics",
        }
    }

    /// Parses the lower-case name produced by [`Source::as_str`]; `None` for anything else.
    pub fn parse(s: &str) -> Option<Source> {
        match s {
            "cloudtrail" => Some(Source::Cloudtrail),
            "logs" => Some(Source::Logs),
            "metrics" => Some(Source::Metrics),
            _ => None,
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The position a record was read from, used for checkpoints and de-duplication.
///
/// For Kinesis, `stream` is the stream name, `shard_id` the shard, `sequence_number` the record's
/// sequence number (decimal string, up to 128 bits) and `sub_sequence_number` the index of a user
/// record inside a KPL-aggregated record (`None` for a plain record). For files, `stream` is
/// `file:<path>`, `shard_id` is `"file"` and `sequence_number` is the record's ordinal within
/// the file (decimal).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Position {
    /// Kinesis stream name, or `file:<path>` for file sources.
    pub stream: String,
    /// Kinesis shard id, or `"file"`.
    pub shard_id: String,
    /// Kinesis sequence number (decimal digits), or the record ordinal for files.
    pub sequence_number: String,
    /// KPL sub-sequence number (index of the user record inside the aggregate).
    pub sub_sequence_number: Option<u64>,
}

/// The principal (caller) of a CloudTrail API call, from `userIdentity`.
///
/// Every field is optional: `userIdentity` has many shapes (Root, IAMUser, AssumedRole,
/// FederatedUser, AWSService, AWSAccount, anonymous) and any field may be missing.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Principal {
    /// `userIdentity.type`, e.g. `IAMUser`, `AssumedRole`, `AWSService`, `Root`.
    pub principal_type: Option<String>,
    /// `userIdentity.arn`.
    pub arn: Option<String>,
    /// `userIdentity.accountId`.
    pub account_id: Option<String>,
    /// `userIdentity.sessionContext.sessionIssuer.arn` (the role behind an assumed-role session).
    pub session_issuer_arn: Option<String>,
    /// `userIdentity.invokedBy` (set when an AWS service called on the customer's behalf,
    /// e.g. `autoscaling.amazonaws.com`).
    pub invoked_by: Option<String>,
    /// `userIdentity.userName`, or the session issuer's user name.
    pub user_name: Option<String>,
}

impl Principal {
    /// A stable key naming the principal for series and reports: the session issuer ARN for
    /// assumed roles (sessions come and go, the role stays), else the ARN, else the
    /// `invokedBy` service, else `type:account`, else `"unknown"`.
    pub fn key(&self) -> String {
        if let Some(issuer) = &self.session_issuer_arn {
            return issuer.clone();
        }
        if let Some(arn) = &self.arn {
            return arn.clone();
        }
        if let Some(by) = &self.invoked_by {
            return by.clone();
        }
        match (&self.principal_type, &self.account_id) {
            (Some(t), Some(a)) => format!("{t}:{a}"),
            (Some(t), None) => t.clone(),
            _ => "unknown".to_string(),
        }
    }

    /// Who made the call, as CloudTrail names the caller: `userIdentity.arn` when present
    /// (for an assumed role the session ARN `arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION`,
    /// whose session name is usually the person or process behind the role), else
    /// [`Principal::key`]. For what a person reads (summaries, samples); series, grouping and
    /// related-change matching use the stable [`Principal::key`].
    pub fn caller(&self) -> String {
        match &self.arn {
            Some(arn) if !arn.is_empty() => arn.clone(),
            _ => self.key(),
        }
    }
}

/// A resource named by a CloudTrail record's `resources` array.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ResourceRef {
    /// `resources[].type`, e.g. `AWS::DynamoDB::Table`.
    pub resource_type: Option<String>,
    /// The resource id when known (taken from the ARN's last component when absent).
    pub id: Option<String>,
    /// `resources[].ARN`.
    pub arn: Option<String>,
}

/// The CloudTrail-specific part of a normalised event.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CloudTrailFields {
    /// `eventSource`, e.g. `ssm.amazonaws.com`.
    pub event_source: String,
    /// `eventName`, e.g. `DeleteParameter`.
    pub event_name: String,
    /// `eventType`, e.g. `AwsApiCall`, `AwsConsoleSignIn`.
    pub event_type: Option<String>,
    /// The caller.
    pub principal: Principal,
    /// `sourceIPAddress` (an IP, or a service name such as `autoscaling.amazonaws.com`).
    pub source_ip: Option<String>,
    /// `userAgent`.
    pub user_agent: Option<String>,
    /// `errorCode`: set means the call failed and changed nothing.
    pub error_code: Option<String>,
    /// `errorMessage`.
    pub error_message: Option<String>,
    /// `readOnly`; `None` when the record does not say. `Some(true)` for a CloudTrail Insights
    /// record (it reports an API's rate and changes nothing), so that no change logic ever
    /// takes one for a mutating call.
    pub read_only: Option<bool>,
    /// `resources`, possibly empty.
    pub resources: Vec<ResourceRef>,
    /// `requestParameters` as raw JSON text (`None` when absent or null).
    pub request_parameters: Option<String>,
    /// `responseElements` as raw JSON text (`None` when absent or null).
    pub response_elements: Option<String>,
    /// `recipientAccountId`.
    pub recipient_account_id: Option<String>,
    /// `eventCategory`: `Management`, `Data`, `NetworkActivity` or `Insight` (`None` when the
    /// record does not say; records before eventVersion 1.07 never do).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_category: Option<String>,
    /// For a CloudTrail Insights record (`eventCategory` `Insight`, `eventType`
    /// `AwsCloudTrailInsight`): its `insightDetails`. Such a record reports an unusual API
    /// call or error rate, not a call: `event_name`/`event_source` then name the API it is
    /// about (`insightDetails.eventName`/`eventSource`), and it is never a change (see
    /// [`CloudTrailFields::is_insight`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insight: Option<Box<InsightFields>>,
}

impl CloudTrailFields {
    /// Whether this is a CloudTrail Insights record (`eventCategory` `Insight`, `eventType`
    /// `AwsCloudTrailInsight`, or `insightDetails` present): an anomaly signal about an API's
    /// rate, never an API call of its own, so never a change-rule candidate.
    pub fn is_insight(&self) -> bool {
        self.insight.is_some()
            || self.event_category.as_deref() == Some("Insight")
            || self.event_type.as_deref() == Some("AwsCloudTrailInsight")
    }
}

/// The `insightDetails` of a CloudTrail Insights record.
///
/// Format: CloudTrail Insights `insightDetails` element,
/// <https://docs.aws.amazon.com/awscloudtrail/latest/userguide/cloudtrail-event-reference-insight-details.html>.
/// Rates are API calls (or errors, for `ApiErrorRateInsight`) per minute; durations are in
/// minutes. Every field is `None` when the record does not carry it as the documented type.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct InsightFields {
    /// `insightDetails.state`: `Start` or `End`.
    pub state: Option<String>,
    /// `insightDetails.insightType`: `ApiCallRateInsight` or `ApiErrorRateInsight`.
    pub insight_type: Option<String>,
    /// `insightDetails.errorCode`: the error whose rate is unusual (`ApiErrorRateInsight`).
    pub error_code: Option<String>,
    /// `sharedEventID`: the same for the `Start` and the `End` record of one Insights event.
    pub shared_event_id: Option<String>,
    /// `insightDetails.insightContext.statistics.baseline.average`: the usual rate, per minute.
    pub baseline_average: Option<f64>,
    /// `insightDetails.insightContext.statistics.insight.average`: the unusual rate, per
    /// minute (over the first minute for `Start`, the whole Insights event for `End`).
    pub insight_average: Option<f64>,
    /// `insightDetails.insightContext.statistics.baselineDuration`, in minutes.
    pub baseline_duration_minutes: Option<f64>,
    /// `insightDetails.insightContext.statistics.insightDuration`, in minutes.
    pub insight_duration_minutes: Option<f64>,
}

/// Severity of a log line, recognised from its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum LogLevel {
    /// Trace or debug output.
    Debug,
    /// Informational.
    Info,
    /// Warning.
    Warn,
    /// Error.
    Error,
    /// Fatal / critical / panic.
    Fatal,
}

impl LogLevel {
    /// Upper-case name (`DEBUG`, `INFO`, `WARN`, `ERROR`, `FATAL`).
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "DEBUG",
            LogLevel::Info => "INFO",
            LogLevel::Warn => "WARN",
            LogLevel::Error => "ERROR",
            LogLevel::Fatal => "FATAL",
        }
    }

    /// Recognises the level of a log line from the first level word found among its first
    /// 160 bytes (`ERROR`, `ERR`, `WARN`, `WARNING`, `FATAL`, `CRITICAL`, `PANIC`, `INFO`,
    /// `DEBUG`, `TRACE`; case-sensitive upper case, or JSON `"level":"error"` style in any
    /// case). Returns `None` when no level word is found.
    pub fn detect(message: &str) -> Option<LogLevel> {
        let head = &message.as_bytes()[..message.len().min(160)];
        let mut i = 0;
        while i < head.len() {
            let c = head[i];
            if c.is_ascii_alphabetic() {
                let start = i;
                while i < head.len() && head[i].is_ascii_alphabetic() {
                    i += 1;
                }
                let word = &head[start..i];
                if word.len() >= 3 && word.len() <= 8 {
                    let mut buf = [0u8; 8];
                    let upper_in_text = word.iter().all(|b| b.is_ascii_uppercase());
                    for (d, s) in buf.iter_mut().zip(word) {
                        *d = s.to_ascii_uppercase();
                    }
                    // Lower/mixed case only counts when quoted, as in JSON `"level":"error"`.
                    let quoted = start > 0 && head[start - 1] == b'"';
                    if upper_in_text || quoted {
                        let level = match &buf[..word.len()] {
                            b"ERROR" | b"ERR" => Some(LogLevel::Error),
                            b"WARN" | b"WARNING" => Some(LogLevel::Warn),
                            b"FATAL" | b"CRITICAL" | b"PANIC" | b"CRIT" => Some(LogLevel::Fatal),
                            b"INFO" => Some(LogLevel::Info),
                            b"DEBUG" | b"TRACE" => Some(LogLevel::Debug),
                            _ => None,
                        };
                        if level.is_some() {
                            return level;
                        }
                    }
                }
            } else {
                i += 1;
            }
        }
        None
    }
}

/// The log-specific part of a normalised event.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct LogFields {
    /// CloudWatch Logs log group name.
    pub log_group: String,
    /// CloudWatch Logs log stream name.
    pub log_stream: String,
    /// The log line.
    pub message: String,
    /// Severity recognised from the message, when any.
    pub level: Option<LogLevel>,
}

/// The metric-specific part of a normalised event (one CloudWatch metric stream data point).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct MetricFields {
    /// Metric namespace, e.g. `AWS/EC2`.
    pub namespace: String,
    /// Metric name, e.g. `CPUUtilization`.
    pub metric: String,
    /// Dimension name to value, sorted by name.
    pub dimensions: BTreeMap<String, String>,
    /// The data point's statistics.
    pub value: MetricValue,
    /// Unit, e.g. `Percent`, `Count`.
    pub unit: Option<String>,
    /// The metric stream's name.
    pub metric_stream_name: Option<String>,
}

/// Statistics of one metric data point, as CloudWatch metric streams deliver them.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct MetricValue {
    /// Maximum.
    pub max: f64,
    /// Minimum.
    pub min: f64,
    /// Sum.
    pub sum: f64,
    /// Sample count.
    pub count: f64,
}

impl MetricValue {
    /// The average (`sum / count`), or `sum` when `count` is zero.
    pub fn average(&self) -> f64 {
        if self.count > 0.0 {
            self.sum / self.count
        } else {
            self.sum
        }
    }
}

/// The source-specific part of an event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum EventBody {
    /// A CloudTrail API call.
    Cloudtrail(Box<CloudTrailFields>),
    /// A log line.
    Logs(LogFields),
    /// A metric data point.
    Metrics(MetricFields),
}

/// One normalised event (DESIGN §3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// CloudTrail `eventID`, the CloudWatch Logs event `id`, or a stable hash for metrics.
    pub event_id: String,
    /// When it happened: microseconds since the Unix epoch, UTC.
    pub event_time: i64,
    /// When aiops decoded it: microseconds since the Unix epoch, UTC.
    pub ingest_time: i64,
    /// AWS account id (CloudTrail `recipientAccountId`, the log owner, the metric's account).
    pub account: Option<String>,
    /// AWS region, e.g. `us-east-1`.
    pub region: Option<String>,
    /// Where it was read from.
    pub position: Position,
    /// The source-specific fields.
    pub body: EventBody,
    /// What the decoder had to repair to keep this event, one short sentence each (e.g.
    /// `"invalid UTF-8 replaced with U+FFFD"`, `"eventTime: number read as epoch seconds"`,
    /// `"userIdentity: expected an object, found a string"`); empty for a well-formed record.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub decode_warnings: Vec<String>,
}

impl Event {
    /// The source of this event, derived from its body.
    pub fn source(&self) -> Source {
        match self.body {
            EventBody::Cloudtrail(_) => Source::Cloudtrail,
            EventBody::Logs(_) => Source::Logs,
            EventBody::Metrics(_) => Source::Metrics,
        }
    }

    /// The CloudTrail fields, when this is a CloudTrail event.
    pub fn cloudtrail(&self) -> Option<&CloudTrailFields> {
        match &self.body {
            EventBody::Cloudtrail(ct) => Some(ct),
            _ => None,
        }
    }

    /// The log fields, when this is a log event.
    pub fn log(&self) -> Option<&LogFields> {
        match &self.body {
            EventBody::Logs(l) => Some(l),
            _ => None,
        }
    }

    /// The metric fields, when this is a metric data point.
    pub fn metric(&self) -> Option<&MetricFields> {
        match &self.body {
            EventBody::Metrics(m) => Some(m),
            _ => None,
        }
    }

    /// The partition key used when forwarding this event: the principal and API call for
    /// CloudTrail, the log group for logs, namespace/metric for metrics, so one series'
    /// events stay ordered on one shard.
    pub fn partition_key(&self) -> String {
        match &self.body {
            EventBody::Cloudtrail(ct) => {
                format!("ct|{}|{}", ct.principal.key(), ct.event_name)
            }
            EventBody::Logs(l) => format!("logs|{}", l.log_group),
            EventBody::Metrics(m) => format!("metrics|{}|{}", m.namespace, m.metric),
        }
    }
}

/// 64-bit FNV-1a over the given byte slices, with a separator byte between slices so that
/// `["ab","c"]` and `["a","bc"]` differ. Used for stable, process-independent ids
/// (Fowler–Noll–Vo hash, <http://www.isthe.com/chongo/tech/comp/fnv/>).
pub fn stable_hash(parts: &[&[u8]]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    for part in parts {
        for &b in *part {
            h ^= u64::from(b);
            h = h.wrapping_mul(PRIME);
        }
        h ^= 0xff;
        h = h.wrapping_mul(PRIME);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_detection_recognises_common_forms() {
        assert_eq!(
            LogLevel::detect("2024-01-01 ERROR db down"),
            Some(LogLevel::Error)
        );
        assert_eq!(LogLevel::detect("[WARN] slow"), Some(LogLevel::Warn));
        assert_eq!(
            LogLevel::detect(r#"{"level":"error","msg":"x"}"#),
            Some(LogLevel::Error)
        );
        assert_eq!(LogLevel::detect("an error happened"), None);
        assert_eq!(LogLevel::detect("INFO started"), Some(LogLevel::Info));
        assert_eq!(LogLevel::detect("CRITICAL disk"), Some(LogLevel::Fatal));
        assert_eq!(LogLevel::detect(""), None);
    }

    #[test]
    fn principal_key_prefers_session_issuer() {
        let p = Principal {
            arn: Some("arn:aws:sts::1:assumed-role/R/s".into()),
            session_issuer_arn: Some("arn:aws:iam::1:role/R".into()),
            ..Default::default()
        };
        assert_eq!(p.key(), "arn:aws:iam::1:role/R");
        let svc = Principal {
            principal_type: Some("AWSService".into()),
            invoked_by: Some("autoscaling.amazonaws.com".into()),
            ..Default::default()
        };
        assert_eq!(svc.key(), "autoscaling.amazonaws.com");
        assert_eq!(Principal::default().key(), "unknown");
    }

    #[test]
    fn insight_records_are_recognised_by_any_of_their_marks() {
        assert!(!CloudTrailFields::default().is_insight());
        let by_category = CloudTrailFields {
            event_category: Some("Insight".into()),
            ..Default::default()
        };
        assert!(by_category.is_insight());
        let by_type = CloudTrailFields {
            event_type: Some("AwsCloudTrailInsight".into()),
            ..Default::default()
        };
        assert!(by_type.is_insight());
        let by_details = CloudTrailFields {
            insight: Some(Box::default()),
            ..Default::default()
        };
        assert!(by_details.is_insight());
        let management = CloudTrailFields {
            event_category: Some("Management".into()),
            ..Default::default()
        };
        assert!(!management.is_insight());
    }

    #[test]
    fn decode_warnings_are_omitted_when_empty_and_default_when_missing() {
        let ev = Event {
            event_id: "e".into(),
            event_time: 1,
            ingest_time: 2,
            account: None,
            region: None,
            position: Position::default(),
            body: EventBody::Logs(LogFields::default()),
            decode_warnings: Vec::new(),
        };
        let text = serde_json::to_string(&ev).unwrap();
        assert!(!text.contains("decode_warnings"), "{text}");
        assert_eq!(serde_json::from_str::<Event>(&text).unwrap(), ev);
        let marked = Event {
            decode_warnings: vec!["invalid UTF-8 replaced with U+FFFD".into()],
            ..ev
        };
        let text = serde_json::to_string(&marked).unwrap();
        assert!(text.ends_with(r#""decode_warnings":["invalid UTF-8 replaced with U+FFFD"]}"#));
        assert_eq!(serde_json::from_str::<Event>(&text).unwrap(), marked);
    }

    #[test]
    fn stable_hash_separates_parts() {
        assert_ne!(stable_hash(&[b"ab", b"c"]), stable_hash(&[b"a", b"bc"]));
        assert_eq!(stable_hash(&[b"x"]), stable_hash(&[b"x"]));
    }
}
