//! Shared test helpers: SDK configuration for local endpoints (static dummy credentials, a
//! fixed region, so nothing reaches for instance metadata or real credentials), findings,
//! rule profiles, a scripted recovery executor, and the moto endpoint.

#![allow(dead_code)]

pub mod bedrock_stub;
pub mod moto;
pub mod scenarios;

use aiops_act::aws::Blocking;
use aiops_act::{BuildOutcome, BuildResult, RecoveryExecutor, RecoveryPlan, RuleProfile};
use aiops_core::{Evidence, Finding, FindingKind, ResourceKey};
use aws_config::{BehaviorVersion, SdkConfig};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// An SDK configuration for a local endpoint: region us-east-1, static dummy credentials.
pub fn local_sdk(rt: &Blocking, endpoint: &str) -> SdkConfig {
    rt.block_on(
        aws_config::defaults(BehaviorVersion::latest())
            .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                "testing", "testing", None, None, "tests",
            ))
            .endpoint_url(endpoint)
            .load(),
    )
}

/// The moto endpoint from `AIOPS_MOTO_ENDPOINT`, or `None` after printing why the test is
/// skipped; under CI (`CI=true`) a missing endpoint fails the test (see `aiops_core::testenv`).
pub fn moto_endpoint(test: &str) -> Option<String> {
    aiops_core::testenv::moto_endpoint(test)
}

/// The rule profiles of the tests' change rules.
pub fn profiles() -> BTreeMap<String, RuleProfile> {
    [
        ("ssm_delete_parameter", 7, "destructive"),
        ("rds_delete_db_instance", 9, "destructive"),
        ("rds_delete_db_cluster", 9, "destructive"),
        ("cloudtrail_stop_logging", 9, "defence_evasion"),
    ]
    .into_iter()
    .map(|(n, s, c)| {
        (
            n.to_string(),
            RuleProfile {
                severity: s,
                category: c.to_string(),
            },
        )
    })
    .collect()
}

/// A change-rule finding on `resource_type`/`resource_id` by detector `detector`.
pub fn change_finding(
    id: &str,
    detector: &str,
    resource_type: &str,
    resource_id: &str,
    action: &str,
) -> Finding {
    Finding {
        suppressed: None,
        finding_id: id.into(),
        kind: FindingKind::ChangeRule,
        detector: detector.into(),
        event_time: 1_700_000_000_000_000,
        detected_at: 1_700_000_001_000_000,
        resource: Some(ResourceKey {
            resource_type: resource_type.into(),
            resource_id: resource_id.into(),
            account: Some("123456789012".into()),
            region: Some("us-east-1".into()),
        }),
        score: 1.0,
        summary: format!("{detector} on {resource_id}"),
        default_action: Some(action.into()),
        recoverable: true,
        evidence: Evidence {
            event_ids: vec![format!("ev-{id}")],
            event_source: Some("rds.amazonaws.com".into()),
            event_name: Some("DeleteDBInstance".into()),
            principal: Some("arn:aws:iam::123456789012:user/mallory".into()),
            source_ip: Some("198.51.100.7".into()),
            samples: vec![format!("{{\"dBInstanceIdentifier\":\"{resource_id}\"}}")],
            ..Evidence::default()
        },
        direction: None,
        priority: aiops_core::Priority::High,
    }
}

/// A model answer as JSON text.
pub fn answer_json(classification: &str, confidence: f64, severity: u8, action: &str) -> String {
    serde_json::json!({
        "classification": classification,
        "confidence": confidence,
        "severity": severity,
        "reasoning": "A human principal deleted the resource outside change management.",
        "recommended_action": action,
        "predicted_impact": "Dependent services fail until the resource is restored.",
    })
    .to_string()
}

/// A recovery executor returning scripted outcomes (default `Succeeded`) and recording plans.
#[derive(Default)]
pub struct Scripted {
    pub outcomes: Mutex<Vec<BuildOutcome>>,
    pub plans: Mutex<Vec<RecoveryPlan>>,
}

impl RecoveryExecutor for Scripted {
    fn run(&self, plan: &RecoveryPlan, started: &mut dyn FnMut(&str)) -> BuildResult {
        let n = {
            let mut p = self.plans.lock().unwrap();
            p.push(plan.clone());
            p.len()
        };
        let outcome = {
            let mut o = self.outcomes.lock().unwrap();
            if o.is_empty() {
                BuildOutcome::Succeeded
            } else {
                o.remove(0)
            }
        };
        let id = format!("{}:build-{n}", plan.project);
        started(&id);
        BuildResult {
            build_id: Some(id),
            outcome,
        }
    }
}
