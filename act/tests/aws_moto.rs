//! The act stage against moto (DynamoDB, S3, CodeBuild, SNS with an SQS queue subscribed to
//! read the notifications) and the Bedrock stub, through the real AWS SDK clients. Needs
//! `AIOPS_MOTO_ENDPOINT` (e.g. `http://127.0.0.1:5000`, see `scripts/moto-server`); each
//! test prints SKIP and passes without it.
//!
//! What moto cannot do (failed builds, account build limits) is injected behind the CodeBuild
//! port ([`BuildApi`]), wrapping the real SDK adapter.

mod support;

use aiops_act::clock::SystemClock;
use aiops_act::codebuild::{CodeBuildExecutor, PollConfig, SdkCodeBuild};
use aiops_act::dynamo::{DYNAMODB_MAX_ITEM_BYTES, item_size};
use aiops_act::{
    Explainer, Incident, IncidentPatch, IncidentStore, StatisticalExplainer, Workflow,
};
use aiops_core::WorkflowState;
use aws_sdk_dynamodb::types::AttributeValue;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Barrier};
use support::bedrock_stub::{BedrockStub, Reply};
use support::moto::{Env, Faulty, MODEL, env};
use support::*;

fn states(i: &Incident) -> Vec<WorkflowState> {
    i.timeline.iter().map(|t| t.state).collect()
}

fn rds(id: &str, db: &str) -> aiops_core::Finding {
    change_finding(
        id,
        "rds_delete_db_instance",
        "rds_db_instance",
        db,
        "recreate",
    )
}

fn attr(n: &serde_json::Value, name: &str) -> (String, String) {
    (
        n["MessageAttributes"][name]["Type"]
            .as_str()
            .unwrap_or("?")
            .to_string(),
        n["MessageAttributes"][name]["Value"]
            .as_str()
            .unwrap_or("?")
            .to_string(),
    )
}

#[test]
fn confident_destructive_change_is_resolved_with_both_builds_recorded() {
    let Some(env) = env("confident_destructive_change_is_resolved") else {
        return;
    };
    let stub = BedrockStub::always(Reply::answer(answer_json("FAILURE", 0.96, 9, "recreate")));
    let wf = Workflow::new(
        env.dynamo(),
        env.bedrock(&stub),
        CodeBuildExecutor::new(
            Faulty::new(&env, false, false),
            Env::poll(),
            Arc::new(SystemClock),
        ),
        env.config(),
        "worker-a".into(),
    )
    .with_notifier(env.notifier());
    let i = wf
        .handle(&rds("res1", "prod-db"))
        .unwrap()
        .incident
        .unwrap();
    use WorkflowState::*;
    assert_eq!(
        states(&i),
        vec![Detected, Analyzing, Decided, Executing, Verifying, Resolved]
    );
    assert_eq!(i.outcome.as_deref(), Some("verified: no drift after apply"));
    assert_eq!(
        i.explainer.as_deref(),
        Some(format!("bedrock:{MODEL}").as_str())
    );
    // Both builds recorded, on the incident and in CodeBuild.
    assert_eq!(i.build_ids.len(), 2);
    assert_eq!(env.builds(&env.apply), vec![i.build_ids[0].clone()]);
    assert_eq!(env.builds(&env.verify), vec![i.build_ids[1].clone()]);
    let api = wf.executor().api();
    let starts = api.starts.lock().unwrap();
    assert_eq!(starts.len(), 2);
    let expected_env: BTreeMap<String, String> = [
        ("ACTION", "recreate"),
        ("CORRELATION_ID", i.correlation_id.as_str()),
        ("PHASE", "apply"),
        ("RESOURCE_ID", "prod-db"),
        ("RESOURCE_TYPE", "rds_db_instance"),
        ("TF_TARGET", "aws_db_instance.prod_db"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(starts[0].environment, expected_env);
    assert_eq!(starts[0].project, env.apply);
    assert_eq!(starts[1].project, env.verify);
    // "Succeeded" came from BatchGetBuilds, not from StartBuild being accepted.
    assert_eq!(api.reads.load(Ordering::SeqCst), 2);
    // One notification.
    let n = env.notifications();
    assert_eq!(n.len(), 1);
    assert_eq!(
        n[0]["Subject"],
        "aiops RESOLVED sev 9: rds_db_instance prod-db: recreate verified"
    );
    assert_eq!(attr(&n[0], "severity"), ("Number".into(), "9".into()));
    assert_eq!(
        attr(&n[0], "resource_type"),
        ("String".into(), "rds_db_instance".into())
    );
    let body: serde_json::Value = serde_json::from_str(n[0]["Message"].as_str().unwrap()).unwrap();
    assert_eq!(body["incident_id"], "inc-res1");
    assert_eq!(body["state"], "RESOLVED");
    assert_eq!(body["build_ids"], serde_json::json!(i.build_ids));
    assert_eq!(
        i.notification.as_deref(),
        Some(format!("sns:{}", n[0]["MessageId"].as_str().unwrap()).as_str())
    );
    // The item as DESIGN §6 and dynamodb.tf lay it out.
    let item = env.raw_item("inc-res1");
    let created = match &item["created_at"] {
        AttributeValue::N(v) => v.parse::<i64>().unwrap(),
        other => panic!("{other:?}"),
    };
    assert_eq!(created, i.created_at);
    assert_eq!(
        item["ttl"],
        AttributeValue::N((created / 1_000_000 + 90 * 86_400).to_string())
    );
    assert_eq!(item["workflow_state"], AttributeValue::S("RESOLVED".into()));
    assert_eq!(
        item["resource_key"],
        AttributeValue::S("123456789012/us-east-1/rds_db_instance/prod-db".into())
    );
    assert!(item_size(&item) < DYNAMODB_MAX_ITEM_BYTES);
    let store = env.dynamo();
    assert_eq!(
        store.outcome_counts("rds_db_instance").unwrap(),
        BTreeMap::from([("RESOLVED".to_string(), 1)])
    );
    assert_eq!(store.list(10).unwrap(), vec![i.clone()]);
}

#[test]
fn low_confidence_goes_to_manual_review_with_one_notification_and_no_build() {
    let Some(env) = env("low_confidence_goes_to_manual_review") else {
        return;
    };
    let stub = BedrockStub::always(Reply::answer(answer_json("ANOMALY", 0.55, 6, "recreate")));
    let wf = Workflow::new(
        env.dynamo(),
        env.bedrock(&stub),
        CodeBuildExecutor::new(
            Faulty::new(&env, false, false),
            Env::poll(),
            Arc::new(SystemClock),
        ),
        env.config(),
        "worker-a".into(),
    )
    .with_notifier(env.notifier());
    let i = wf
        .handle(&rds("low1", "prod-db"))
        .unwrap()
        .incident
        .unwrap();
    use WorkflowState::*;
    assert_eq!(states(&i), vec![Detected, Analyzing, Decided, ManualReview]);
    assert_eq!(
        i.outcome.as_deref(),
        Some("confidence 0.55 below threshold 0.80")
    );
    assert!(i.build_ids.is_empty());
    assert!(env.builds(&env.apply).is_empty());
    assert!(env.builds(&env.verify).is_empty());
    let n = env.notifications();
    assert_eq!(n.len(), 1);
    assert_eq!(
        n[0]["Subject"],
        "aiops MANUAL_REVIEW sev 6: rds_db_instance prod-db: needs a person"
    );
    assert_eq!(attr(&n[0], "severity"), ("Number".into(), "6".into()));
}

#[test]
fn failing_verify_build_ends_failed_with_one_notification() {
    let Some(env) = env("failing_verify_build_ends_failed") else {
        return;
    };
    let stub = BedrockStub::always(Reply::answer(answer_json("FAILURE", 0.93, 9, "recreate")));
    let wf = Workflow::new(
        env.dynamo(),
        env.bedrock(&stub),
        CodeBuildExecutor::new(
            Faulty::new(&env, true, false),
            Env::poll(),
            Arc::new(SystemClock),
        ),
        env.config(),
        "worker-a".into(),
    )
    .with_notifier(env.notifier());
    let i = wf
        .handle(&rds("fail1", "prod-db"))
        .unwrap()
        .incident
        .unwrap();
    use WorkflowState::*;
    assert_eq!(
        states(&i),
        vec![Detected, Analyzing, Decided, Executing, Verifying, Failed]
    );
    assert_eq!(
        i.outcome,
        Some(format!(
            "verify build failed: build {} FAILED: BUILD FAILED (terraform plan exit code 2: drift remains; injected)",
            i.build_ids[1]
        ))
    );
    assert_eq!(env.builds(&env.apply), vec![i.build_ids[0].clone()]);
    assert_eq!(env.builds(&env.verify), vec![i.build_ids[1].clone()]);
    let n = env.notifications();
    assert_eq!(n.len(), 1);
    assert_eq!(
        n[0]["Subject"],
        "aiops FAILED sev 9: rds_db_instance prod-db: recreate failed"
    );
    assert_eq!(
        env.dynamo().outcome_counts("rds_db_instance").unwrap(),
        BTreeMap::from([("FAILED".to_string(), 1)])
    );
}

#[test]
fn account_build_limit_is_failed_and_notified_once_without_a_retry_loop() {
    let Some(env) = env("account_build_limit") else {
        return;
    };
    let wf = Workflow::new(
        env.dynamo(),
        StatisticalExplainer::new(profiles()),
        CodeBuildExecutor::new(
            Faulty::new(&env, false, true),
            Env::poll(),
            Arc::new(SystemClock),
        ),
        env.config(),
        "worker-a".into(),
    )
    .with_notifier(env.notifier());
    let i = wf
        .handle(&rds("lim1", "prod-db"))
        .unwrap()
        .incident
        .unwrap();
    use WorkflowState::*;
    assert_eq!(
        states(&i),
        vec![Detected, Analyzing, Decided, Executing, Failed]
    );
    assert_eq!(
        i.outcome.as_deref(),
        Some(
            "apply build failed: CodeBuild account build limit reached, build not started (AccountLimitExceededException: Cannot have more than 0 builds in queue for the account (injected))"
        )
    );
    assert!(i.build_ids.is_empty());
    // The same resource again within its cooldown: skipped, no second start, no notification.
    let again = wf
        .handle(&rds("lim2", "prod-db"))
        .unwrap()
        .incident
        .unwrap();
    assert_eq!(again.state, SkippedCooldown);
    assert_eq!(wf.executor().api().starts.lock().unwrap().len(), 1);
    assert!(env.builds(&env.apply).is_empty());
    let n = env.notifications();
    assert_eq!(n.len(), 1);
    assert_eq!(
        n[0]["Subject"],
        "aiops FAILED sev 9: rds_db_instance prod-db: recreate failed"
    );
}

#[test]
fn two_workers_given_the_same_decision_start_exactly_one_build_50_times() {
    let Some(env) = env("two_workers_start_exactly_one_build") else {
        return;
    };
    let make = |worker: &str| {
        Workflow::new(
            env.dynamo(),
            StatisticalExplainer::new(profiles()),
            CodeBuildExecutor::new(
                SdkCodeBuild::new(&env.sdk, env.rt.clone()),
                PollConfig {
                    initial_ms: 1,
                    max_ms: 5,
                    timeout_secs: 60,
                    start_attempts: 1,
                },
                Arc::new(SystemClock),
            ),
            env.config(),
            worker.to_string(),
        )
    };
    let a = make("worker-a");
    let b = make("worker-b");
    let mut builds_before = 0;
    for n in 0..50 {
        // (1) The same decision delivered to both workers (same finding id).
        let f = rds(&format!("same-{n}"), &format!("db-{n}"));
        // (2) Two decisions for the same resource (different finding ids).
        let g1 = rds(&format!("pair-a-{n}"), &format!("dbp-{n}"));
        let g2 = rds(&format!("pair-b-{n}"), &format!("dbp-{n}"));
        for (fa, fb) in [(&f, &f), (&g1, &g2)] {
            let barrier = Barrier::new(2);
            let (ra, rb) = std::thread::scope(|s| {
                let ha = s.spawn(|| {
                    barrier.wait();
                    a.handle(fa).unwrap()
                });
                let hb = s.spawn(|| {
                    barrier.wait();
                    b.handle(fb).unwrap()
                });
                (ha.join().unwrap(), hb.join().unwrap())
            });
            let builds_now = env.builds(&env.apply).len();
            assert_eq!(
                builds_now - builds_before,
                1,
                "iteration {n}: exactly one apply build"
            );
            builds_before = builds_now;
            let ended: Vec<WorkflowState> = [ra, rb]
                .into_iter()
                .filter_map(|h| h.incident.map(|i| i.state))
                .collect();
            if std::ptr::eq(fa, fb) {
                assert_eq!(
                    ended,
                    vec![WorkflowState::Resolved],
                    "iteration {n}: one opener"
                );
            } else {
                let mut sorted: Vec<&str> = ended.iter().map(|s| s.as_str()).collect();
                sorted.sort();
                assert_eq!(
                    sorted,
                    vec!["RESOLVED", "SKIPPED_COOLDOWN"],
                    "iteration {n}"
                );
            }
        }
    }
    assert_eq!(env.builds(&env.apply).len(), 100);
    assert_eq!(env.builds(&env.verify).len(), 100);
}

#[test]
fn a_failure_state_is_written_whatever_the_attribute_names() {
    let Some(env) = env("reserved_words") else {
        return;
    };
    let store = env.dynamo();
    let i = Incident {
        incident_id: "inc-rw".into(),
        correlation_id: "c".into(),
        resource_key: "k/rw".into(),
        resource_type: "rds_db_instance".into(),
        resource_id: "rw".into(),
        state: WorkflowState::Detected,
        finding: rds("rw", "rw"),
        classification: None,
        confidence: None,
        severity: None,
        reasoning: None,
        action: None,
        explainer: None,
        codebuild_project: None,
        terraform_target: None,
        build_ids: vec![],
        outcome: None,
        enrichment_note: None,
        evidence_ref: None,
        raw_answer: None,
        notification: None,
        timeline: vec![aiops_act::TimelineEntry {
            state: WorkflowState::Detected,
            at: 1,
        }],
        event_time: 1,
        created_at: 1,
        updated_at: 1,
        group: Default::default(),
    };
    assert!(store.create(&i).unwrap());
    assert!(!store.create(&i).unwrap(), "create is conditional");
    use WorkflowState::*;
    let full = IncidentPatch {
        classification: Some("FAILURE".into()),
        confidence: Some(0.9),
        severity: Some(9),
        reasoning: Some("r".into()),
        action: Some("recreate".into()), // `action` is a DynamoDB reserved word
        explainer: Some("statistical".into()),
        codebuild_project: Some("p".into()),
        terraform_target: Some("aws_db_instance.rw".into()),
        add_build_id: Some("b1".into()),
        outcome: Some("apply build failed: x".into()),
        enrichment_note: Some("n".into()),
        notification: Some("sns:1".into()),
        raw_answer: Some("[stopReason end_turn]\n{\"classification\": \"FAILURE\"}".into()),
    };
    for (from, to) in [
        (Detected, Analyzing),
        (Analyzing, Decided),
        (Decided, Executing),
    ] {
        assert!(
            store
                .transition(&i.incident_id, from, to, &IncidentPatch::default(), 2)
                .unwrap()
        );
    }
    assert!(
        store
            .transition(&i.incident_id, Executing, Failed, &full, 3)
            .unwrap()
    );
    // Conditional on the previous state: a second worker's write is refused, not applied.
    assert!(
        !store
            .transition(&i.incident_id, Executing, Failed, &full, 4)
            .unwrap()
    );
    let got = store.get(&i.incident_id).unwrap().unwrap();
    assert_eq!(got.state, Failed);
    assert_eq!(got.action.as_deref(), Some("recreate"));
    assert_eq!(got.build_ids, vec!["b1".to_string()]);
    assert_eq!(
        got.raw_answer.as_deref(),
        Some("[stopReason end_turn]\n{\"classification\": \"FAILURE\"}")
    );
    assert_eq!(
        states(&got),
        vec![Detected, Analyzing, Decided, Executing, Failed]
    );
    // The defect this guards against: the same update with literal names is refused.
    let err = env
        .rt
        .block_on(
            store
                .client()
                .update_item()
                .table_name(&env.store.incidents_table)
                .key("incident_id", AttributeValue::S("inc-rw".into()))
                .update_expression("SET workflow_state = :s, action = :a")
                .expression_attribute_values(":s", AttributeValue::S("FAILED".into()))
                .expression_attribute_values(":a", AttributeValue::S("recreate".into()))
                .send(),
        )
        .unwrap_err();
    let text = format!("{}", aws_sdk_dynamodb::error::DisplayErrorContext(&err));
    assert!(text.contains("reserved keyword"), "{text}");
}

#[test]
fn an_outcome_counter_is_created_by_its_first_update() {
    let Some(env) = env("outcome_counter_first_update") else {
        return;
    };
    let store = env.dynamo();
    assert!(store.outcome_counts("s3_bucket").unwrap().is_empty());
    store
        .count_outcome("s3_bucket", WorkflowState::Resolved)
        .unwrap();
    store
        .count_outcome("s3_bucket", WorkflowState::Resolved)
        .unwrap();
    store
        .count_outcome("s3_bucket", WorkflowState::Failed)
        .unwrap();
    assert_eq!(
        store.outcome_counts("s3_bucket").unwrap(),
        BTreeMap::from([("FAILED".to_string(), 1), ("RESOLVED".to_string(), 2)])
    );
    // The defect this guards against: `SET n = n + :one` on an item without `n` fails.
    let err = env
        .rt
        .block_on(
            store
                .client()
                .update_item()
                .table_name(&env.store.stats_table)
                .key(
                    "pattern_key",
                    AttributeValue::S("act/outcomes/ec2_instance".into()),
                )
                .update_expression("SET #c = #c + :one")
                .expression_attribute_names("#c", "count_resolved")
                .expression_attribute_values(":one", AttributeValue::N("1".into()))
                .send(),
        )
        .unwrap_err();
    let text = format!("{}", aws_sdk_dynamodb::error::DisplayErrorContext(&err));
    assert!(text.contains("ValidationException"), "{text}");
}

#[test]
fn the_cooldown_lock_is_not_fooled_by_the_incidents_own_record() {
    let Some(env) = env("cooldown_own_record") else {
        return;
    };
    let exec = Scripted::default();
    let wf = Workflow::new(
        env.dynamo(),
        StatisticalExplainer::new(profiles()),
        &exec,
        env.config(),
        "worker-a".into(),
    );
    let first = wf
        .handle(&rds("cd1", "orders-db"))
        .unwrap()
        .incident
        .unwrap();
    // The incident's own record is visible in the by_resource index...
    let store = env.dynamo();
    let seen = store
        .history(&first.resource_key, "someone-else", 10)
        .unwrap();
    assert_eq!(
        seen.iter()
            .map(|i| i.incident_id.as_str())
            .collect::<Vec<_>>(),
        vec!["inc-cd1"]
    );
    // ...yet it recovered: the lock item decides, not a query that includes itself.
    assert_eq!(first.state, WorkflowState::Resolved);
    assert!(
        store
            .history(&first.resource_key, "inc-cd1", 10)
            .unwrap()
            .is_empty()
    );
    // A second incident of the same resource within the cooldown is skipped.
    let second = wf
        .handle(&rds("cd2", "orders-db"))
        .unwrap()
        .incident
        .unwrap();
    assert_eq!(second.state, WorkflowState::SkippedCooldown);
    assert_eq!(
        exec.plans.lock().unwrap().len(),
        2,
        "apply + verify of the first only"
    );
    // The lock is exclusive until it expires, then taken again.
    let above_restore = ["recreate".to_string(), "restore".to_string()];
    assert!(
        store
            .try_lock("k/lock", "restore", &above_restore, "w1", 100, 1_000)
            .unwrap()
    );
    assert!(
        !store
            .try_lock("k/lock", "restore", &above_restore, "w2", 999, 2_000)
            .unwrap()
    );
    assert!(
        store
            .try_lock("k/lock", "restore", &above_restore, "w1", 999, 1_000)
            .unwrap()
    );
    assert!(
        store
            .try_lock(
                "k/lock",
                "recreate",
                &["recreate".to_string()],
                "w3",
                999,
                3_000
            )
            .unwrap()
    );
    assert!(
        !store
            .try_lock("k/lock", "restore", &above_restore, "w2", 1_000, 2_000)
            .unwrap()
    );
    assert!(
        store
            .try_lock("k/lock", "restore", &above_restore, "w2", 3_000, 4_000)
            .unwrap()
    );
    // Listing newest first across states, and history newest first.
    let all = store.list(10).unwrap();
    assert_eq!(
        all.iter()
            .map(|i| i.incident_id.as_str())
            .collect::<Vec<_>>(),
        vec!["inc-cd2", "inc-cd1"]
    );
    let hist = store.history(&first.resource_key, "x", 10).unwrap();
    assert_eq!(
        hist.iter()
            .map(|i| i.incident_id.as_str())
            .collect::<Vec<_>>(),
        vec!["inc-cd2", "inc-cd1"]
    );
    assert_eq!(store.list(1).unwrap().len(), 1);
}

#[test]
fn large_evidence_goes_to_s3_and_items_stay_below_400_kb() {
    let Some(env) = env("large_evidence") else {
        return;
    };
    let mut f = rds("big1", "big-db");
    f.evidence.samples = (0..8)
        .map(|n| format!("{n}:{}", "x".repeat(100_000)))
        .collect();
    let wf = Workflow::new(
        env.dynamo(),
        StatisticalExplainer::new(profiles()),
        Scripted::default(),
        env.config(),
        "worker-a".into(),
    );
    let i = wf.handle(&f).unwrap().incident.unwrap();
    assert_eq!(i.state, WorkflowState::Resolved);
    let key = "incidents/evidence/inc-big1/finding.json".to_string();
    assert_eq!(
        i.evidence_ref,
        Some(format!("s3://{}/{key}", env.store.evidence_bucket))
    );
    assert_eq!(i.finding.evidence.samples.len(), 5);
    assert!(i.finding.evidence.samples.iter().all(|s| s.len() <= 1024));
    let size = item_size(&env.raw_item("inc-big1"));
    assert!(size < 80 * 1024, "item of {size} bytes");
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&env.sdk)
            .force_path_style(true)
            .build(),
    );
    let body = env.rt.block_on(async {
        let o = s3
            .get_object()
            .bucket(&env.store.evidence_bucket)
            .key(&key)
            .send()
            .await
            .unwrap();
        o.body.collect().await.unwrap().into_bytes()
    });
    let full: aiops_core::Finding = serde_json::from_slice(&body).unwrap();
    assert_eq!(full, f);
    assert_eq!(
        i.enrichment_note
            .as_deref()
            .map(|n| n.starts_with("finding of ")),
        Some(true)
    );
}

#[test]
fn the_bedrock_explainer_reads_history_from_dynamodb() {
    let Some(env) = env("bedrock_history_from_dynamodb") else {
        return;
    };
    let stub = BedrockStub::always(Reply::answer(answer_json("FAILURE", 0.95, 9, "recreate")));
    let x = env.bedrock(&stub);
    assert!(x.wants_history());
    let wf = Workflow::new(
        env.dynamo(),
        x,
        Scripted::default(),
        env.config(),
        "w".into(),
    );
    wf.handle(&rds("hist1", "hist-db")).unwrap();
    let mut g = rds("hist2", "hist-db");
    g.detector = "rds_stop_db_instance".into();
    let i = wf.handle(&g).unwrap().incident.unwrap();
    assert_eq!(i.state, WorkflowState::SkippedCooldown);
    let reqs = stub.requests();
    assert_eq!(reqs.len(), 2);
    let doc: serde_json::Value = serde_json::from_str(&reqs[1].user_text()).unwrap();
    assert_eq!(doc["history_same_resource"][0]["state"], "RESOLVED");
    assert_eq!(doc["history_same_resource"].as_array().unwrap().len(), 1);
    assert_eq!(
        doc["outcomes_same_resource_type"],
        serde_json::json!({"RESOLVED": 1})
    );
}
