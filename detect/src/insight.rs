//! CloudTrail Insights records as findings of their own. An Insights record is AWS's own
//! anomaly signal on an API's call rate or error rate (record format:
//! <https://docs.aws.amazon.com/awscloudtrail/latest/userguide/cloudtrail-insights-fields-trails.html>):
//! it changes nothing, so no change rule ever takes one for a call (the decoder marks it
//! read-only) and the statistics do not count it as a call; instead the record that starts an
//! Insight (`insightDetails.state` `Start`, or no state) becomes one finding:
//!
//! - kind `rate_anomaly`, detector [`INSIGHT_DETECTOR`] (`cloudtrail_insight`), priority
//!   `HIGH` (an Insight is rare and already filtered by AWS: it opens an incident for review,
//!   never a recovery), score 1, direction `spike` when the Insight's rate is at or above the
//!   baseline's, else `drop`;
//! - evidence: the API (`event_source`, `event_name`), `observed` = the Insight's average
//!   rate (`insightContext.statistics.insight.average`, calls or errors per minute) and
//!   `expected` = the baseline's (`statistics.baseline.average`, per minute), the series key
//!   `cloudtrail_insight:<insight type>:<event source>:<event name>[:<error code>]`, the
//!   window from the record's event time over the Insight's duration (minutes; one minute
//!   when not given), the record's event id;
//! - resource `aws_api` `<event source>:<event name>` in the record's account and region.
//!
//! The record that ends an Insight (`End`) is kept in the raw history only.

use aiops_core::time::now_micros;
use aiops_core::{
    Direction, Event, Evidence, Finding, FindingKind, InsightFields, Priority, ResourceKey,
    stable_hash,
};

/// The detector name of Insight findings.
pub const INSIGHT_DETECTOR: &str = "cloudtrail_insight";

/// The finding a CloudTrail Insights record that starts an Insight makes (see the module
/// documentation); `None` for any other event, including the record that ends one.
pub fn insight_finding(event: &Event) -> Option<Finding> {
    let ct = event.cloudtrail()?;
    if !ct.is_insight() {
        return None;
    }
    let empty = InsightFields::default();
    let insight = ct.insight.as_deref().unwrap_or(&empty);
    if insight
        .state
        .as_deref()
        .is_some_and(|s| s.eq_ignore_ascii_case("end"))
    {
        return None;
    }
    let insight_type = insight.insight_type.as_deref().unwrap_or("Insight");
    let api = format!("{}:{}", ct.event_source, ct.event_name);
    let mut series_key = format!("{INSIGHT_DETECTOR}:{insight_type}:{api}");
    if let Some(code) = &insight.error_code {
        series_key.push(':');
        series_key.push_str(code);
    }
    let rate = |v: Option<f64>| v.filter(|v| v.is_finite());
    let (observed, expected) = (
        rate(insight.insight_average),
        rate(insight.baseline_average),
    );
    let direction = match (observed, expected) {
        (Some(o), Some(e)) if o < e => Direction::Drop,
        _ => Direction::Spike,
    };
    let minutes = insight
        .insight_duration_minutes
        .filter(|m| m.is_finite() && *m > 0.0)
        .unwrap_or(1.0)
        .min(525_600.0);
    let window_end = event
        .event_time
        .saturating_add((minutes * 60_000_000.0) as i64);
    let what = if insight_type == "ApiErrorRateInsight" {
        match &insight.error_code {
            Some(code) => format!("{code} errors"),
            None => "errors".to_string(),
        }
    } else {
        "calls".to_string()
    };
    let per_min = |v: Option<f64>| v.map_or("unknown".to_string(), |v| format!("{v}/min"));
    let summary = format!(
        "CloudTrail Insight ({insight_type}): {} {} {what} at {} against a baseline of {}",
        ct.event_source,
        ct.event_name,
        per_min(observed),
        per_min(expected)
    );
    let finding_id = format!(
        "{:016x}",
        stable_hash(&[INSIGHT_DETECTOR.as_bytes(), event.event_id.as_bytes()])
    );
    Some(Finding {
        suppressed: None,
        finding_id,
        kind: FindingKind::RateAnomaly,
        detector: INSIGHT_DETECTOR.to_string(),
        event_time: event.event_time,
        detected_at: now_micros(),
        resource: Some(ResourceKey {
            resource_type: "aws_api".to_string(),
            resource_id: api,
            account: event.account.clone(),
            region: event.region.clone(),
        }),
        score: 1.0,
        summary,
        default_action: None,
        recoverable: false,
        direction: Some(direction),
        priority: Priority::High,
        evidence: Evidence {
            event_ids: vec![event.event_id.clone()],
            event_source: Some(ct.event_source.clone()),
            event_name: Some(ct.event_name.clone()),
            series_key: Some(series_key),
            window: Some((event.event_time, window_end)),
            observed,
            expected,
            ..Evidence::default()
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{ChangeRules, RuleVerdict};
    use aiops_core::{CloudTrailFields, EventBody, Position};

    const T: i64 = 1_709_643_900_000_000; // 2024-03-05T13:05:00Z

    /// The Start record of `ingest/tests/fixtures/shapes/insights_log_file.json`, as the
    /// decoder normalises it (its test there checks these fields).
    fn insight_event(state: &str, insight_type: &str, error_code: Option<&str>) -> Event {
        Event {
            event_id: "d4000000-0000-4000-8000-000000000001".into(),
            event_time: T,
            ingest_time: T,
            account: Some("111122223333".into()),
            region: Some("us-east-1".into()),
            position: Position::default(),
            body: EventBody::Cloudtrail(Box::new(CloudTrailFields {
                event_source: "ec2.amazonaws.com".into(),
                event_name: "TerminateInstances".into(),
                event_type: Some("AwsCloudTrailInsight".into()),
                read_only: Some(true),
                recipient_account_id: Some("111122223333".into()),
                event_category: Some("Insight".into()),
                insight: Some(Box::new(InsightFields {
                    state: Some(state.into()),
                    insight_type: Some(insight_type.into()),
                    error_code: error_code.map(str::to_string),
                    shared_event_id: Some("d4000000-0000-4000-8000-0000000000aa".into()),
                    baseline_average: Some(0.0104166667),
                    insight_average: Some(12.5),
                    baseline_duration_minutes: Some(10080.0),
                    insight_duration_minutes: Some(1.0),
                })),
                ..CloudTrailFields::default()
            })),
            decode_warnings: Vec::new(),
        }
    }

    #[test]
    fn the_start_of_an_insight_is_one_finding_with_its_rates() {
        let e = insight_event("Start", "ApiCallRateInsight", None);
        let mut f = insight_finding(&e).unwrap();
        assert!(f.detected_at > 0);
        f.detected_at = 0;
        assert_eq!(
            f,
            Finding {
                suppressed: None,
                finding_id: format!(
                    "{:016x}",
                    stable_hash(&[
                        b"cloudtrail_insight".as_slice(),
                        b"d4000000-0000-4000-8000-000000000001".as_slice()
                    ])
                ),
                kind: FindingKind::RateAnomaly,
                detector: "cloudtrail_insight".into(),
                event_time: T,
                detected_at: 0,
                resource: Some(ResourceKey {
                    resource_type: "aws_api".into(),
                    resource_id: "ec2.amazonaws.com:TerminateInstances".into(),
                    account: Some("111122223333".into()),
                    region: Some("us-east-1".into()),
                }),
                score: 1.0,
                summary: "CloudTrail Insight (ApiCallRateInsight): ec2.amazonaws.com \
                          TerminateInstances calls at 12.5/min against a baseline of \
                          0.0104166667/min"
                    .into(),
                default_action: None,
                recoverable: false,
                direction: Some(Direction::Spike),
                priority: Priority::High,
                evidence: Evidence {
                    event_ids: vec!["d4000000-0000-4000-8000-000000000001".into()],
                    event_source: Some("ec2.amazonaws.com".into()),
                    event_name: Some("TerminateInstances".into()),
                    series_key: Some(
                        "cloudtrail_insight:ApiCallRateInsight:ec2.amazonaws.com:TerminateInstances"
                            .into()
                    ),
                    window: Some((T, T + 60_000_000)),
                    observed: Some(12.5),
                    expected: Some(0.0104166667),
                    ..Evidence::default()
                },
            }
        );
    }

    #[test]
    fn change_rules_never_take_an_insight_for_a_call() {
        let rules = ChangeRules::new(&crate::rules::ChangeRulesConfig::default()).unwrap();
        // TerminateInstances has a change rule; its Insight is not a termination.
        let (verdict, findings) =
            rules.evaluate(&insight_event("Start", "ApiCallRateInsight", None));
        assert_eq!(verdict, RuleVerdict::Insight);
        assert_eq!(
            findings
                .iter()
                .map(|f| (f.kind, f.detector.as_str()))
                .collect::<Vec<_>>(),
            [(FindingKind::RateAnomaly, "cloudtrail_insight")]
        );
        let (verdict, findings) = rules.evaluate(&insight_event("End", "ApiCallRateInsight", None));
        assert_eq!((verdict, findings.len()), (RuleVerdict::Insight, 0));
    }

    #[test]
    fn an_error_rate_insight_names_its_error_and_a_lower_rate_is_a_drop() {
        let mut e = insight_event("Start", "ApiErrorRateInsight", Some("AccessDenied"));
        if let EventBody::Cloudtrail(ct) = &mut e.body
            && let Some(i) = ct.insight.as_deref_mut()
        {
            i.insight_average = Some(0.5);
            i.baseline_average = Some(4.25);
            i.insight_duration_minutes = None;
        }
        let f = insight_finding(&e).unwrap();
        assert_eq!(
            f.summary,
            "CloudTrail Insight (ApiErrorRateInsight): ec2.amazonaws.com TerminateInstances \
             AccessDenied errors at 0.5/min against a baseline of 4.25/min"
        );
        assert_eq!(f.direction, Some(Direction::Drop));
        assert_eq!(
            f.evidence.series_key.as_deref(),
            Some(
                "cloudtrail_insight:ApiErrorRateInsight:ec2.amazonaws.com:TerminateInstances:AccessDenied"
            )
        );
        assert_eq!(f.evidence.window, Some((T, T + 60_000_000)));
    }
}
