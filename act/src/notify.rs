//! Notifications (DESIGN §6): one message per incident when it reaches MANUAL_REVIEW, RESOLVED
//! or FAILED, through SNS in aws mode. The subject is printable ASCII and at most 99
//! characters (SNS: "must be ASCII text that begins with a letter, number, or punctuation mark;
//! must not include line breaks or control characters; and must be less than 100 characters
//! long", <https://docs.aws.amazon.com/sns/latest/api/API_Publish.html>); the message uses
//! `MessageStructure=json` with a readable body for people (`default`, `email`) and a JSON
//! body for machines (`sqs`, `lambda`, `http`, `https`); message attributes carry severity,
//! resource type and state for subscription filter policies.

use crate::aws::{Blocking, error_chain};
use crate::clock::{Clock, backoff};
use crate::incident::Incident;
use crate::text::truncate_utf8;
use aiops_core::time::format_rfc3339_micros;
use aws_sdk_sns::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sns::types::MessageAttributeValue;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;

/// Longest subject, characters (SNS: less than 100).
pub const MAX_SUBJECT_CHARS: usize = 99;
/// Bound of each free-text field in a notification, bytes.
const MAX_FIELD_BYTES: usize = 4096;

/// `[act.notify]` in `pipeline.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    /// `none` (the embedded default) or `sns`.
    pub backend: String,
    /// SNS topic ARN (for `sns`).
    pub topic_arn: String,
    /// First word of every subject. Default `aiops`.
    pub subject_prefix: String,
    /// Publish attempts for throttling and transient errors. Default 3.
    pub max_attempts: u32,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            backend: "none".into(),
            topic_arn: String::new(),
            subject_prefix: "aiops".into(),
            max_attempts: 3,
        }
    }
}

/// One notification, ready to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    /// Printable ASCII, at most [`MAX_SUBJECT_CHARS`] characters.
    pub subject: String,
    /// The readable body.
    pub text: String,
    /// The JSON body.
    pub json: serde_json::Value,
    /// Severity 1..=10 (0 when undecided).
    pub severity: u8,
    /// Resource type (`none` for findings without resource).
    pub resource_type: String,
    /// Workflow state name.
    pub state: String,
}

/// `s` as an SNS subject: every character outside printable ASCII becomes `?` (control
/// characters and line breaks become a space), runs of spaces collapse, and the result is cut
/// to `max_chars` characters (ending in `...` when cut) on a character boundary.
pub fn ascii_subject(s: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max_chars * 2));
    for c in s.chars() {
        let mapped = match c {
            ' '..='~' => c,
            c if c.is_control() || c.is_whitespace() => ' ',
            _ => '?',
        };
        if mapped == ' ' && (out.is_empty() || out.ends_with(' ')) {
            continue;
        }
        out.push(mapped);
    }
    let trimmed = out.trim_end();
    if trimmed.chars().count() <= max_chars {
        return trimmed.to_string();
    }
    let keep = max_chars.saturating_sub(3);
    let mut cut: String = trimmed.chars().take(keep).collect();
    cut.truncate(cut.trim_end().len());
    if max_chars >= 3 {
        cut.push_str("...");
    }
    cut
}

impl Notification {
    /// The notification of `incident` in its current (final) state.
    pub fn for_incident(i: &Incident, subject_prefix: &str) -> Notification {
        let resource = if i.resource_type.is_empty() {
            "no resource".to_string()
        } else {
            format!("{} {}", i.resource_type, i.resource_id)
        };
        let headline = match (i.state.as_str(), i.action.as_deref()) {
            ("RESOLVED", Some(a)) => format!("{a} verified"),
            ("FAILED", Some(a)) => format!("{a} failed"),
            ("MANUAL_REVIEW", _) => "needs a person".to_string(),
            _ => i.finding.summary.clone(),
        };
        let severity = i.severity.unwrap_or(0);
        let subject = ascii_subject(
            &format!(
                "{subject_prefix} {} sev {severity}: {resource}: {headline}",
                i.state.as_str()
            ),
            MAX_SUBJECT_CHARS,
        );
        let f = &i.finding;
        let e = &f.evidence;
        let mut text = String::new();
        let _ = writeln!(
            text,
            "aiops incident {}: {}",
            i.incident_id,
            i.state.as_str()
        );
        if !i.group.related_changes.is_empty() {
            let _ = writeln!(text, "What changed before it (most related first):");
            for c in i.group.related_changes.iter().take(5) {
                let _ = writeln!(
                    text,
                    "  {} {} {} by {} at {} (score {:.2})",
                    c.event_source,
                    c.event_name,
                    truncate_utf8(&c.resource, 256),
                    truncate_utf8(&c.principal, 256),
                    format_rfc3339_micros(c.event_time),
                    c.score
                );
            }
        }
        if let Some(p) = i.group.priority {
            let _ = writeln!(
                text,
                "Priority: {} ({} finding(s))",
                p.as_str(),
                i.group.finding_count.max(1)
            );
        }
        let _ = writeln!(
            text,
            "Resource: {} (account {}, region {})",
            truncate_utf8(&resource, 512),
            f.resource
                .as_ref()
                .and_then(|r| r.account.as_deref())
                .unwrap_or("-"),
            f.resource
                .as_ref()
                .and_then(|r| r.region.as_deref())
                .unwrap_or("-")
        );
        let _ = writeln!(
            text,
            "Finding: {} (detector {}, event time {})",
            truncate_utf8(&f.summary, 512),
            f.detector,
            format_rfc3339_micros(f.event_time)
        );
        if e.event_name.is_some() || e.principal.is_some() {
            let _ = writeln!(
                text,
                "Call: {} by {} from {}",
                e.event_name.as_deref().unwrap_or("-"),
                truncate_utf8(e.principal.as_deref().unwrap_or("-"), 512),
                e.source_ip.as_deref().unwrap_or("-")
            );
        }
        let _ = writeln!(
            text,
            "Decision: {} with confidence {} and severity {} (by {})",
            i.classification.as_deref().unwrap_or("-"),
            i.confidence.map_or("-".into(), |c| format!("{c:.2}")),
            i.severity.map_or("-".into(), |s| s.to_string()),
            i.explainer.as_deref().unwrap_or("-")
        );
        if let Some(r) = &i.reasoning {
            let _ = writeln!(text, "Reasoning: {}", truncate_utf8(r, MAX_FIELD_BYTES));
        }
        let _ = writeln!(
            text,
            "Action: {}{}",
            i.action.as_deref().unwrap_or("none"),
            i.terraform_target
                .as_deref()
                .map(|t| format!(" (Terraform target {t})"))
                .unwrap_or_default()
        );
        if !i.build_ids.is_empty() {
            let _ = writeln!(text, "Builds: {}", i.build_ids.join(", "));
        }
        let _ = writeln!(
            text,
            "Outcome: {}",
            truncate_utf8(i.outcome.as_deref().unwrap_or("-"), MAX_FIELD_BYTES)
        );
        if let Some(n) = &i.enrichment_note {
            let _ = writeln!(text, "Note: {}", truncate_utf8(n, MAX_FIELD_BYTES));
        }
        if let Some(r) = &i.evidence_ref {
            let _ = writeln!(text, "Evidence: {r}");
        }
        let _ = writeln!(text, "Correlation id: {}", i.correlation_id);
        let _ = writeln!(text, "Timeline:");
        for t in &i.timeline {
            let _ = writeln!(
                text,
                "  {:<16} {}",
                t.state.as_str(),
                format_rfc3339_micros(t.at)
            );
        }
        let json = json!({
            "incident_id": i.incident_id,
            "state": i.state.as_str(),
            "resource_type": i.resource_type,
            "resource_id": truncate_utf8(&i.resource_id, 512),
            "resource_key": truncate_utf8(&i.resource_key, 1024),
            "detector": f.detector,
            "summary": truncate_utf8(&f.summary, 512),
            "event_time": format_rfc3339_micros(f.event_time),
            "classification": i.classification,
            "confidence": i.confidence,
            "severity": i.severity,
            "reasoning": i.reasoning.as_deref().map(|r| truncate_utf8(r, MAX_FIELD_BYTES)),
            "explainer": i.explainer,
            "action": i.action,
            "terraform_target": i.terraform_target,
            "build_ids": i.build_ids,
            "outcome": i.outcome.as_deref().map(|o| truncate_utf8(o, MAX_FIELD_BYTES)),
            "enrichment_note": i.enrichment_note.as_deref().map(|o| truncate_utf8(o, MAX_FIELD_BYTES)),
            "evidence_ref": i.evidence_ref,
            "correlation_id": i.correlation_id,
            "timeline": i.timeline.iter().map(|t| json!({"state": t.state.as_str(), "at": format_rfc3339_micros(t.at)})).collect::<Vec<_>>(),
        });
        Notification {
            subject,
            text,
            json,
            severity,
            resource_type: if i.resource_type.is_empty() {
                "none".into()
            } else {
                i.resource_type.clone()
            },
            state: i.state.as_str().to_string(),
        }
    }

    /// The `MessageStructure=json` message: readable text for `default` and `email`, the JSON
    /// body (as a string) for `sqs`, `lambda`, `http` and `https`.
    pub fn structured_message(&self) -> String {
        let body = self.json.to_string();
        json!({
            "default": self.text,
            "email": self.text,
            "email-json": body,
            "sqs": body,
            "lambda": body,
            "http": body,
            "https": body,
        })
        .to_string()
    }
}

/// Errors of a notifier.
#[derive(Debug, Error)]
pub enum NotifyError {
    /// Publishing failed (after retries for throttling and transient errors).
    #[error("notification not sent: {0}")]
    Publish(String),
}

/// Sends notifications.
pub trait Notifier {
    /// Sends one notification. Returns a record of it (e.g. `sns:<message id>`), or `None`
    /// when notifications are disabled.
    ///
    /// # Errors
    /// [`NotifyError`] when it could not be sent.
    fn notify(&self, n: &Notification) -> Result<Option<String>, NotifyError>;
}

impl<T: Notifier + ?Sized> Notifier for Box<T> {
    fn notify(&self, n: &Notification) -> Result<Option<String>, NotifyError> {
        (**self).notify(n)
    }
}

impl<T: Notifier + ?Sized> Notifier for &T {
    fn notify(&self, n: &Notification) -> Result<Option<String>, NotifyError> {
        (**self).notify(n)
    }
}

/// Sends nothing (embedded default).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoopNotifier;

impl Notifier for NoopNotifier {
    fn notify(&self, _n: &Notification) -> Result<Option<String>, NotifyError> {
        Ok(None)
    }
}

/// Publishes to an SNS topic. Blocks on the SDK: never call from inside an async task.
pub struct SnsNotifier {
    client: aws_sdk_sns::Client,
    rt: Blocking,
    topic_arn: String,
    max_attempts: u32,
    clock: Arc<dyn Clock>,
}

impl SnsNotifier {
    /// A notifier publishing to `topic_arn`.
    pub fn new(
        sdk: &aws_config::SdkConfig,
        rt: Blocking,
        topic_arn: String,
        max_attempts: u32,
        clock: Arc<dyn Clock>,
    ) -> SnsNotifier {
        SnsNotifier {
            client: aws_sdk_sns::Client::new(sdk),
            rt,
            topic_arn,
            max_attempts: max_attempts.max(1),
            clock,
        }
    }

    fn attribute(data_type: &str, value: &str) -> Result<MessageAttributeValue, NotifyError> {
        MessageAttributeValue::builder()
            .data_type(data_type)
            .string_value(value)
            .build()
            .map_err(|e| NotifyError::Publish(e.to_string()))
    }
}

impl Notifier for SnsNotifier {
    fn notify(&self, n: &Notification) -> Result<Option<String>, NotifyError> {
        let message = n.structured_message();
        let mut attempt = 0;
        loop {
            let request = self
                .client
                .publish()
                .topic_arn(&self.topic_arn)
                .subject(&n.subject)
                .message(message.clone())
                .message_structure("json")
                .message_attributes(
                    "severity",
                    Self::attribute("Number", &n.severity.to_string())?,
                )
                .message_attributes(
                    "resource_type",
                    Self::attribute("String", &n.resource_type)?,
                )
                .message_attributes("state", Self::attribute("String", &n.state)?);
            match self.rt.block_on(request.send()) {
                Ok(out) => {
                    return Ok(Some(format!(
                        "sns:{}",
                        out.message_id().unwrap_or("unknown")
                    )));
                }
                Err(err) => {
                    let (code, msg, retryable) = match &err {
                        SdkError::ServiceError(se) => {
                            let code = se.err().code().unwrap_or("unknown").to_string();
                            let retryable = matches!(
                                code.as_str(),
                                "Throttled"
                                    | "ThrottlingException"
                                    | "InternalError"
                                    | "KMSThrottlingException"
                            );
                            (
                                code,
                                se.err().message().unwrap_or_default().to_string(),
                                retryable,
                            )
                        }
                        other => ("transport".to_string(), error_chain(other), true),
                    };
                    if retryable && attempt + 1 < self.max_attempts {
                        self.clock.sleep(backoff(
                            Duration::from_millis(200),
                            Duration::from_secs(5),
                            attempt,
                            u64::from(attempt),
                        ));
                        attempt += 1;
                        continue;
                    }
                    return Err(NotifyError::Publish(format!(
                        "{code}: {}",
                        truncate_utf8(&msg, 1024)
                    )));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_printable_ascii_and_cut_at_99() {
        assert_eq!(ascii_subject("a\tb\n\nc", 99), "a b c");
        assert_eq!(ascii_subject("ключ 🔑 é", 99), "???? ? ?");
        let long = format!(
            "aiops FAILED sev 9: ssm_parameter /prod/{}",
            "é".repeat(200)
        );
        let s = ascii_subject(&long, 99);
        assert_eq!(s.chars().count(), 99);
        assert!(s.ends_with("..."));
        assert!(s.bytes().all(|b| (0x20..=0x7e).contains(&b)));
        assert_eq!(ascii_subject(&"x".repeat(99), 99), "x".repeat(99));
        assert_eq!(
            ascii_subject(&"x".repeat(100), 99),
            format!("{}...", "x".repeat(96))
        );
    }
}
