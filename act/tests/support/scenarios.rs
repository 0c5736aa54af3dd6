//! The incident scenarios of issue 16, run against any store (SQLite in `incidents.rs`,
//! DynamoDB on moto in `aws_moto.rs`) with exact expectations.

use aiops_act::changes::ChangeIndex;
use aiops_act::clock::{Clock, ManualClock};
use aiops_act::*;
use aiops_core::{
    CloudTrailFields, Event, EventBody, Evidence, Finding, FindingKind, Position, Principal,
};
use aiops_detect::rules::{ChangeRules, ChangeRulesConfig};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Event time of the scenarios: 2023-11-14T22:13:20Z, microseconds.
pub const T0: i64 = 1_700_000_000_000_000;
/// One second, microseconds.
pub const SEC: i64 = 1_000_000;

fn profiles() -> BTreeMap<String, RuleProfile> {
    let rules = ChangeRules::new(&ChangeRulesConfig::default()).unwrap();
    rules
        .rules()
        .iter()
        .map(|r| {
            (
                r.name.clone(),
                RuleProfile {
                    severity: r.severity,
                    category: r.category.clone(),
                },
            )
        })
        .collect()
}

/// A workflow over `store` with the statistical explainer, the dry-run executor, `changes`
/// and a manual clock at `T0`.
pub fn workflow<S: IncidentStore>(
    store: S,
    changes: Arc<dyn ChangeIndex + Send + Sync>,
    clock: Arc<ManualClock>,
) -> Workflow<S, StatisticalExplainer, DryRunExecutor> {
    Workflow::new(
        store,
        StatisticalExplainer::new(profiles()),
        DryRunExecutor,
        ActConfig::default(),
        "w1".into(),
    )
    .with_changes(changes)
    .with_clock(clock)
}

/// A successful CloudTrail call by alice in 123456789012/us-east-1.
pub fn ct_event(id: &str, t: i64, source: &str, name: &str, params: &str) -> Event {
    Event {
        event_id: id.into(),
        event_time: t,
        ingest_time: t,
        account: Some("123456789012".into()),
        region: Some("us-east-1".into()),
        position: Position::default(),
        decode_warnings: Vec::new(),
        body: EventBody::Cloudtrail(Box::new(CloudTrailFields {
            event_source: source.into(),
            event_name: name.into(),
            event_type: Some("AwsApiCall".into()),
            principal: Principal {
                principal_type: Some("IAMUser".into()),
                arn: Some("arn:aws:iam::123456789012:user/alice".into()),
                account_id: Some("123456789012".into()),
                ..Principal::default()
            },
            source_ip: Some("203.0.113.9".into()),
            read_only: Some(false),
            request_parameters: Some(params.into()),
            ..CloudTrailFields::default()
        })),
    }
}

/// The fixture `tests/fixtures/cloudtrail_cfn_delete_trail.json` normalised by hand (the
/// fields the change rules read).
pub fn cfn_delete_trail_event() -> Event {
    let text = include_str!("../fixtures/cloudtrail_cfn_delete_trail.json");
    let r: serde_json::Value = serde_json::from_str(text).unwrap();
    let s = |p: &str| r.pointer(p).and_then(|v| v.as_str()).map(str::to_string);
    Event {
        event_id: s("/eventID").unwrap(),
        event_time: 1_546_300_800_000_000,
        ingest_time: 1_546_300_800_000_000,
        account: s("/recipientAccountId"),
        region: s("/awsRegion"),
        position: Position::default(),
        decode_warnings: Vec::new(),
        body: EventBody::Cloudtrail(Box::new(CloudTrailFields {
            event_source: s("/eventSource").unwrap(),
            event_name: s("/eventName").unwrap(),
            event_type: s("/eventType"),
            principal: Principal {
                principal_type: s("/userIdentity/type"),
                arn: s("/userIdentity/arn"),
                account_id: s("/userIdentity/accountId"),
                session_issuer_arn: s("/userIdentity/sessionContext/sessionIssuer/arn"),
                invoked_by: s("/userIdentity/invokedBy"),
                user_name: s("/userIdentity/sessionContext/sessionIssuer/userName"),
            },
            source_ip: s("/sourceIPAddress"),
            read_only: r.get("readOnly").and_then(|v| v.as_bool()),
            request_parameters: r.get("requestParameters").map(|v| v.to_string()),
            ..CloudTrailFields::default()
        })),
    }
}

/// A statistical finding of `series` at `t`.
pub fn stat(id: &str, series: &str, t: i64, score: f64, observed: f64, expected: f64) -> Finding {
    Finding {
        suppressed: None,
        finding_id: id.into(),
        kind: FindingKind::RateAnomaly,
        detector: "rate".into(),
        event_time: t,
        detected_at: t,
        resource: None,
        score,
        summary: format!("{observed} in {series}, expected {expected}"),
        default_action: None,
        recoverable: false,
        evidence: Evidence {
            series_key: Some(series.into()),
            observed: Some(observed),
            expected: Some(expected),
            ..Evidence::default()
        },
        direction: Some(aiops_core::Direction::Spike),
        // As detect would rank them: the higher the score, the higher the priority.
        priority: if score >= 0.999 {
            aiops_core::Priority::High
        } else if score >= 0.99 {
            aiops_core::Priority::Medium
        } else {
            aiops_core::Priority::Low
        },
    }
}

fn rules() -> ChangeRules {
    ChangeRules::new(&ChangeRulesConfig::default()).unwrap()
}

/// (a) DeleteParameter /prod/payments/db-password, then 2 min later an ERROR burst in
/// /ecs/payments-api, then a template finding of the same burst (b): the change keeps its own
/// incident; the burst opens one incident whose first related change is the DeleteParameter,
/// and the template finding joins it.
pub fn delete_parameter_then_error_burst<S: IncidentStore>(
    store: S,
    changes: Arc<dyn ChangeIndex + Send + Sync>,
) {
    let clock = Arc::new(ManualClock::new(T0));
    let wf = workflow(store, changes.clone(), clock);
    let del = ct_event(
        "ev-delete-param",
        T0,
        "ssm.amazonaws.com",
        "DeleteParameter",
        r#"{"name":"/prod/payments/db-password"}"#,
    );
    // The pipeline feeds the index with every successful mutating call, and detect's change
    // rules turn the destructive ones into findings.
    assert!(changes.record(&change_from_event(&del).unwrap()).unwrap());
    let noise = ct_event(
        "ev-put-orders",
        T0 - 30 * SEC,
        "ssm.amazonaws.com",
        "PutParameter",
        r#"{"name":"/prod/orders/feature-flag"}"#,
    );
    assert!(changes.record(&change_from_event(&noise).unwrap()).unwrap());
    let (_, findings) = rules().evaluate(&del);
    assert_eq!(findings.len(), 1);
    let h = wf.handle(&findings[0]).unwrap();
    assert!(h.opened);
    let change_inc = h.incident.unwrap();
    assert_eq!(change_inc.state, aiops_core::WorkflowState::Resolved);
    assert_eq!(change_inc.action.as_deref(), Some("restore"));
    assert!(change_inc.group.change_incident);

    let burst = stat(
        "burst-1",
        "log_level:/ecs/payments-api:ERROR",
        T0 + 120 * SEC,
        0.9995,
        48.0,
        2.0,
    );
    let h = wf.handle(&burst).unwrap();
    assert!(h.opened);
    assert!(!h.joined);
    let inc = h.incident.unwrap();
    assert_eq!(inc.incident_id, "inc-burst-1");
    assert_ne!(inc.incident_id, change_inc.incident_id);
    let rc = &inc.group.related_changes;
    assert_eq!(rc.len(), 1, "{rc:?}");
    assert_eq!(rc[0].event_id, "ev-delete-param");
    assert_eq!(rc[0].event_name, "DeleteParameter");
    assert_eq!(rc[0].resource, "/prod/payments/db-password");
    assert_eq!(rc[0].principal, "arn:aws:iam::123456789012:user/alice");
    assert_eq!(rc[0].event_time, T0);
    assert_eq!(rc[0].reasons, ["same service", "name overlap"]);
    let want = 0.25 + 0.15 + 0.10 * (1.0 - 120.0 / 3600.0);
    assert!((rc[0].score - want).abs() < 1e-9, "{}", rc[0].score);
    assert_eq!(inc.group.priority, Some(Priority::High));

    // (b) the template finding of the same burst joins the incident.
    let tpl = stat(
        "burst-tpl",
        "log_template:/ecs/payments-api:t-5a1f",
        T0 + 180 * SEC,
        0.995,
        40.0,
        0.0,
    );
    let h = wf.handle(&tpl).unwrap();
    assert!(!h.opened);
    assert!(h.joined);
    let inc = h.incident.unwrap();
    assert_eq!(inc.incident_id, "inc-burst-1");
    assert_eq!(inc.group.finding_ids, ["burst-1", "burst-tpl"]);
    assert_eq!(inc.group.finding_count, 2);
    assert_eq!(
        (inc.group.first_event_time, inc.group.last_event_time),
        (T0 + 120 * SEC, T0 + 180 * SEC)
    );
    assert_eq!(inc.group.related_changes[0].event_id, "ev-delete-param");
    // A duplicate delivery changes nothing.
    let h = wf.handle(&tpl).unwrap();
    assert_eq!(
        (h.opened, h.joined, h.incident.is_none()),
        (false, false, true)
    );
    let mut ids: Vec<String> = wf
        .store()
        .list(10)
        .unwrap()
        .into_iter()
        .map(|i| i.incident_id)
        .collect();
    ids.sort();
    let mut want = vec![change_inc.incident_id.clone(), "inc-burst-1".to_string()];
    want.sort();
    assert_eq!(ids, want);

    let text = render_incident(&wf.store().get("inc-burst-1").unwrap().unwrap());
    assert!(text.contains("Priority:  HIGH"), "{text}");
    assert!(text.contains(
        "  1. ssm.amazonaws.com DeleteParameter /prod/payments/db-password by arn:aws:iam::123456789012:user/alice at 2023-11-14T22:13:20"
    ), "{text}");
    assert!(
        text.contains(
            "      series: log_level:/ecs/payments-api:ERROR\n      count: 48 vs expected 2\n"
        ),
        "{text}"
    );
    let related = text.find("Related changes").unwrap();
    let findings = text.find("Findings:").unwrap();
    assert!(related < findings);
}

/// (c) The CloudFormation-invoked DeleteTrail: an incident in MANUAL_REVIEW with the reason,
/// no action, no build.
pub fn cfn_delete_trail_needs_a_person<S: IncidentStore>(
    store: S,
    changes: Arc<dyn ChangeIndex + Send + Sync>,
) {
    let wf = workflow(store, changes, Arc::new(ManualClock::new(T0)));
    let (_, findings) = rules().evaluate(&cfn_delete_trail_event());
    assert_eq!(findings.len(), 1);
    let i = wf.handle(&findings[0]).unwrap().incident.unwrap();
    assert_eq!(i.state, aiops_core::WorkflowState::ManualReview);
    assert_eq!(i.resource_type, "cloudtrail_trail");
    assert_eq!(i.resource_id, "example-trail");
    assert_eq!(i.action, None);
    assert!(i.build_ids.is_empty());
    assert_eq!(i.terraform_target, None);
    assert_eq!(
        i.outcome.as_deref(),
        Some(
            "detected, not recovered: invoked through cloudformation.amazonaws.com on behalf of a person (recovery would fight the stack); needs a person"
        )
    );
    assert_eq!(
        i.enrichment_note.as_deref(),
        Some(
            "action \"recreate\" not taken: invoked through cloudformation.amazonaws.com on behalf of a person (recovery would fight the stack)"
        )
    );
}

/// (d) PutBucketPolicy then DeleteBucket of the same bucket 27 s apart: the restore and then
/// the recreate are planned; a lesser action within the recreate's cooldown is skipped.
pub fn policy_then_delete_bucket_plans_recreate<S: IncidentStore>(
    store: S,
    changes: Arc<dyn ChangeIndex + Send + Sync>,
) {
    let clock = Arc::new(ManualClock::new(T0));
    let wf = workflow(store, changes, clock.clone());
    let put = ct_event(
        "ev-put-policy",
        T0,
        "s3.amazonaws.com",
        "PutBucketPolicy",
        r#"{"bucketName":"payments-artifacts","policy":"{}"}"#,
    );
    let del = ct_event(
        "ev-delete-bucket",
        T0 + 27 * SEC,
        "s3.amazonaws.com",
        "DeleteBucket",
        r#"{"bucketName":"payments-artifacts"}"#,
    );
    let (_, f1) = rules().evaluate(&put);
    let i1 = wf.handle(&f1[0]).unwrap().incident.unwrap();
    assert_eq!(i1.state, aiops_core::WorkflowState::Resolved);
    assert_eq!(i1.action.as_deref(), Some("restore"));
    clock.advance(Duration::from_secs(27));
    let (_, f2) = rules().evaluate(&del);
    let i2 = wf.handle(&f2[0]).unwrap().incident.unwrap();
    assert_eq!(i2.state, aiops_core::WorkflowState::Resolved);
    assert_eq!(i2.action.as_deref(), Some("recreate"));
    assert_eq!(
        i2.terraform_target.as_deref(),
        Some("aws_s3_bucket.payments_artifacts")
    );
    assert_eq!(i2.build_ids.len(), 2);
    // Another policy change within the cooldown: restore is blocked by the restore and the
    // recreate locks.
    clock.advance(Duration::from_secs(10));
    let again = ct_event(
        "ev-put-policy-2",
        T0 + 37 * SEC,
        "s3.amazonaws.com",
        "DeleteBucketPolicy",
        r#"{"bucketName":"payments-artifacts"}"#,
    );
    let (_, f3) = rules().evaluate(&again);
    let i3 = wf.handle(&f3[0]).unwrap().incident.unwrap();
    assert_eq!(i3.state, aiops_core::WorkflowState::SkippedCooldown);
    assert_eq!(
        i3.outcome.as_deref(),
        Some("another recovery of this resource (recreate or restore) is within its cooldown")
    );
}

/// `DisableKey` then `ScheduleKeyDeletion` of the same key 20 s apart: the disable is restored
/// (Terraform re-enables the key); the scheduled deletion, which Terraform cannot undo, opens
/// its own incident in MANUAL_REVIEW with the steps that do, instead of being swallowed by the
/// disable's cooldown.
pub fn disable_then_schedule_key_deletion_needs_a_person<S: IncidentStore>(
    store: S,
    changes: Arc<dyn ChangeIndex + Send + Sync>,
) {
    let clock = Arc::new(ManualClock::new(T0));
    let wf = workflow(store, changes, clock.clone());
    let key = "1234abcd-12ab-34cd-56ef-1234567890ab";
    let disable = ct_event(
        "ev-disable-key",
        T0,
        "kms.amazonaws.com",
        "DisableKey",
        &format!(r#"{{"keyId":"{key}"}}"#),
    );
    let delete = ct_event(
        "ev-schedule-deletion",
        T0 + 20 * SEC,
        "kms.amazonaws.com",
        "ScheduleKeyDeletion",
        &format!(r#"{{"keyId":"{key}","pendingWindowInDays":7}}"#),
    );
    let (_, f1) = rules().evaluate(&disable);
    let i1 = wf.handle(&f1[0]).unwrap().incident.unwrap();
    assert_eq!(i1.state, aiops_core::WorkflowState::Resolved);
    assert_eq!(i1.action.as_deref(), Some("restore"));
    assert_eq!(
        i1.terraform_target.as_deref(),
        Some("aws_kms_key.r_1234abcd_12ab_34cd_56ef_1234567890ab")
    );
    clock.advance(Duration::from_secs(20));
    let (_, f2) = rules().evaluate(&delete);
    assert_eq!(f2.len(), 1);
    assert!(!f2[0].recoverable);
    let i2 = wf.handle(&f2[0]).unwrap().incident.unwrap();
    assert_eq!(i2.state, aiops_core::WorkflowState::ManualReview);
    assert_eq!(i2.action, None);
    assert!(i2.build_ids.is_empty());
    assert_eq!(
        i2.outcome.as_deref(),
        Some(&*format!(
            "detected, not recovered: Terraform cannot undo ScheduleKeyDeletion; to undo it: aws kms cancel-key-deletion --key-id {key} && aws kms enable-key --key-id {key} (within the 7-30 day waiting period); needs a person"
        ))
    );
}

/// (e) A suppressed series key: the finding is marked suppressed and opens no incident; after
/// the suppression's period (wall clock) the same series opens one again. "Not an incident"
/// feedback then holds back findings of that series that do not score higher.
pub fn suppressed_series_and_feedback<S: IncidentStore>(
    store: S,
    changes: Arc<dyn ChangeIndex + Send + Sync>,
) {
    let clock = Arc::new(ManualClock::new(T0));
    let wf = workflow(store, changes, clock.clone());
    let series = "log_level:/ecs/payments-api:ERROR";
    let sup = Suppression::new(
        SuppressionKind::Series,
        series,
        Some("planned deploy".into()),
        T0,
        Some(2 * 3600),
    );
    wf.store().put_suppression(&sup).unwrap();
    assert_eq!(wf.store().list_suppressions().unwrap(), vec![sup]);
    let h = wf
        .handle(&stat("s1", series, T0, 0.9995, 50.0, 2.0))
        .unwrap();
    assert_eq!(
        h.suppressed.as_deref(),
        Some("suppressed: series log_level:/ecs/payments-api:ERROR (planned deploy)")
    );
    assert!(h.incident.is_none() && !h.opened);
    assert!(wf.store().list(10).unwrap().is_empty());
    // One microsecond before the end it still holds; at the end it no longer does.
    clock.advance(Duration::from_secs(2 * 3600) - Duration::from_micros(1));
    let h = wf
        .handle(&stat("s2", series, T0 + SEC, 0.9995, 50.0, 2.0))
        .unwrap();
    assert!(h.suppressed.is_some());
    clock.advance(Duration::from_micros(1));
    let h = wf
        .handle(&stat("s3", series, T0 + 2 * SEC, 0.9995, 50.0, 2.0))
        .unwrap();
    assert_eq!(h.suppressed, None);
    assert!(h.opened);
    assert_eq!(wf.store().list(10).unwrap().len(), 1);

    // Feedback: not an incident.
    let closed = close_not_an_incident(
        wf.store(),
        "inc-s3",
        Some("known noise".into()),
        clock.now_micros(),
    )
    .unwrap()
    .unwrap();
    assert!(closed.incident.group.closed);
    assert!(!closed.already_closed);
    assert_eq!(closed.feedback_series, [series]);
    let fb = wf.store().list_feedback(0).unwrap();
    assert_eq!(fb.len(), 1);
    assert_eq!(fb[0].series_key, series);
    assert_eq!(fb[0].score, 0.9995);
    // Closing it again changes nothing and records no second feedback.
    let again = close_not_an_incident(wf.store(), "inc-s3", None, clock.now_micros())
        .unwrap()
        .unwrap();
    assert!(again.already_closed);
    assert!(again.feedback_series.is_empty());
    assert_eq!(wf.store().list_feedback(0).unwrap().len(), 1);
    // Suppressions and feedback are re-read every `suppression_refresh_secs` (30 s).
    clock.advance(Duration::from_secs(30));
    let h = wf
        .handle(&stat("s4", series, T0 + 3 * SEC, 0.9995, 50.0, 2.0))
        .unwrap();
    assert_eq!(
        h.suppressed.as_deref(),
        Some(
            "suppressed: feedback says not an incident for this series (score 0.9995 is not above 0.9995)"
        )
    );
    let h = wf
        .handle(&stat("s5", series, T0 + 4 * SEC, 0.99999, 500.0, 2.0))
        .unwrap();
    assert_eq!(h.suppressed, None);
    assert!(h.opened, "a closed incident takes no new findings");
    assert!(wf.store().remove_suppression(series).unwrap());
    assert!(wf.store().list_suppressions().unwrap().is_empty());
}
