//! Issue 18, "act that finishes what it starts", on moto (skipped without
//! `AIOPS_MOTO_ENDPOINT`): the SDK's retry of a conditional write that was applied is
//! recognised as ours; the stuck-incident sweeper verifies a recorded build instead of
//! starting a second one; an item over the size bound is refused for good.

mod support;

use aiops_act::clock::SystemClock;
use aiops_act::codebuild::CodeBuildExecutor;
use aiops_act::dynamo::{DynamoStore, WRITE_TOKEN_ATTR};
use aiops_act::{Incident, IncidentStore, StatisticalExplainer, StoreError, Workflow};
use aiops_core::WorkflowState;
use aws_sdk_dynamodb::config::interceptors::{
    BeforeDeserializationInterceptorContextMut, BeforeTransmitInterceptorContextRef,
};
use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use aws_sdk_dynamodb::types::AttributeValue;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::bedrock_stub::{BedrockStub, Reply};
use support::moto::{Env, Faulty, env};
use support::*;

/// Loses the response of the first attempt of every `PutItem` / `UpdateItem` on the given
/// tables that DynamoDB applied (its 200 becomes a 500), so the SDK retries the identical
/// request: what a timeout or a reset connection after an applied write does. The calls of
/// the test are sequential, so the request in flight is the one last transmitted.
#[derive(Debug, Default)]
struct LoseFirstResponse {
    tables: Vec<String>,
    in_flight: Mutex<Option<(String, Vec<u8>)>>,
    seen: Mutex<HashSet<Vec<u8>>>,
    lost: AtomicUsize,
}

#[derive(Debug, Clone)]
struct Lose(Arc<LoseFirstResponse>);

impl Intercept for Lose {
    fn name(&self) -> &'static str {
        "LoseFirstResponse"
    }

    fn read_before_transmit(
        &self,
        ctx: &BeforeTransmitInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let target = ctx
            .request()
            .headers()
            .get("x-amz-target")
            .unwrap_or_default()
            .to_string();
        let body = ctx.request().body().bytes().unwrap_or_default().to_vec();
        *self.0.in_flight.lock().unwrap() = Some((target, body));
        Ok(())
    }

    fn modify_before_deserialization(
        &self,
        ctx: &mut BeforeDeserializationInterceptorContextMut<'_>,
        _rc: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some((target, body)) = self.0.in_flight.lock().unwrap().take() else {
            return Ok(());
        };
        if !(target.ends_with(".PutItem") || target.ends_with(".UpdateItem")) {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&body).to_string();
        if !self
            .0
            .tables
            .iter()
            .any(|t| text.contains(&format!("\"TableName\":\"{t}\"")))
        {
            return Ok(());
        }
        if ctx.response().status().as_u16() != 200 {
            return Ok(());
        }
        if self.0.seen.lock().unwrap().insert(body) {
            *ctx.response_mut().status_mut() = 500u16.try_into()?;
            self.0.lost.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }
}

/// The environment's store over a client that loses the first response of every applied
/// incident and lock write (three attempts, 10 ms backoff).
fn losing_store(env: &Env) -> (DynamoStore, Arc<LoseFirstResponse>) {
    let state = Arc::new(LoseFirstResponse {
        tables: vec![
            env.store.incidents_table.clone(),
            env.store.locks_table.clone(),
        ],
        ..LoseFirstResponse::default()
    });
    let conf = aws_sdk_dynamodb::config::Builder::from(&env.sdk)
        .interceptor(Lose(state.clone()))
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(3)
                .with_initial_backoff(Duration::from_millis(10)),
        )
        .build();
    let store = env
        .dynamo()
        .with_client(aws_sdk_dynamodb::Client::from_conf(conf));
    (store, state)
}

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

#[test]
fn the_sdk_retry_of_an_applied_write_is_recognised_as_ours() {
    let Some(env) = env("the_sdk_retry_of_an_applied_write_is_recognised_as_ours") else {
        return;
    };
    let (store, lost) = losing_store(&env);
    let stub = BedrockStub::always(Reply::answer(answer_json("FAILURE", 0.96, 9, "recreate")));
    let faulty = Arc::new(Faulty::new(&env, false, false));
    let wf = Workflow::new(
        store,
        env.bedrock(&stub),
        CodeBuildExecutor::new(faulty.clone(), Env::poll(), Arc::new(SystemClock)),
        env.config(),
        "worker-a".into(),
    );
    let h = wf.handle(&rds("retry1", "prod-db")).unwrap();
    assert!(h.opened);
    let i = h.incident.unwrap();
    use WorkflowState::*;
    // Every write of the incident lost its first response and was retried; none was taken
    // for "another worker moved it": no SKIPPED_COOLDOWN, no incident left half-way.
    assert_eq!(
        states(&i),
        vec![Detected, Analyzing, Decided, Executing, Verifying, Resolved]
    );
    assert_eq!(i.state, Resolved);
    assert_eq!(i.outcome.as_deref(), Some("verified: no drift after apply"));
    // Each build id once, although both annotations were retried.
    assert_eq!(i.build_ids.len(), 2, "{:?}", i.build_ids);
    assert!(i.build_ids[0].starts_with(&format!("{}:", env.apply)));
    assert!(i.build_ids[1].starts_with(&format!("{}:", env.verify)));
    assert_eq!(faulty.starts.lock().unwrap().len(), 2);
    assert_eq!(env.builds(&env.apply).len(), 1);
    // create, 5 transitions, 2 build-id annotations, the lock, the group index entry.
    let n = lost.lost.load(Ordering::SeqCst);
    assert_eq!(n, 10, "lost responses: {n}");
}

#[test]
fn the_same_token_twice_is_ours_another_token_is_not() {
    let Some(env) = env("the_same_token_twice_is_ours_another_token_is_not") else {
        return;
    };
    let store = env.dynamo();
    let item = HashMap::from([
        (
            "incident_id".to_string(),
            AttributeValue::S("inc-tok".into()),
        ),
        (
            "workflow_state".to_string(),
            AttributeValue::S("DETECTED".into()),
        ),
    ]);
    // Our write, then the same write again (what the SDK's retry sends): both succeed.
    assert!(store.create_item_with_token(item.clone(), "tok-a").unwrap());
    assert!(store.create_item_with_token(item.clone(), "tok-a").unwrap());
    // Another caller's create of the same incident: not ours.
    assert!(!store.create_item_with_token(item, "tok-b").unwrap());
    let raw = env.raw_item("inc-tok");
    assert_eq!(
        raw.get(WRITE_TOKEN_ATTR),
        Some(&AttributeValue::S("tok-a".into()))
    );
}

#[test]
fn the_sweeper_verifies_a_recorded_build_instead_of_starting_another() {
    let Some(env) = env("the_sweeper_verifies_a_recorded_build") else {
        return;
    };
    // A worker started the apply build, recorded its id, and died in EXECUTING 3 hours ago.
    let apply_id = env
        .rt
        .block_on(env.codebuild.start_build().project_name(&env.apply).send())
        .unwrap()
        .build_value()
        .unwrap()
        .id()
        .unwrap()
        .to_string();
    let now = aiops_core::time::now_micros();
    let then = now - 3 * 3600 * 1_000_000;
    let finding = rds("stuck1", "prod-db");
    let stuck = Incident {
        incident_id: "inc-stuck1".into(),
        correlation_id: "corr-stuck1".into(),
        resource_key: finding.resource.as_ref().unwrap().key(),
        resource_type: "rds_db_instance".into(),
        resource_id: "prod-db".into(),
        state: WorkflowState::Executing,
        finding,
        classification: Some("FAILURE".into()),
        confidence: Some(0.96),
        severity: Some(9),
        reasoning: Some("r".into()),
        action: Some("recreate".into()),
        explainer: Some("bedrock".into()),
        codebuild_project: Some(env.apply.clone()),
        terraform_target: Some("module.rds[\"prod-db\"]".into()),
        build_ids: vec![apply_id.clone()],
        outcome: None,
        enrichment_note: None,
        evidence_ref: None,
        notification: None,
        raw_answer: None,
        timeline: [
            WorkflowState::Detected,
            WorkflowState::Analyzing,
            WorkflowState::Decided,
            WorkflowState::Executing,
        ]
        .into_iter()
        .map(|state| aiops_act::TimelineEntry { state, at: then })
        .collect(),
        group: Default::default(),
        event_time: then,
        created_at: then,
        updated_at: then,
    };
    let store = env.dynamo();
    assert!(store.create(&stuck).unwrap());
    // A young incident in DETECTED is left alone (its worker may still be on it).
    let mut young = stuck.clone();
    young.incident_id = "inc-young".into();
    young.state = WorkflowState::Detected;
    young.build_ids.clear();
    young.updated_at = now - 60 * 1_000_000;
    assert!(store.create(&young).unwrap());

    let faulty = Arc::new(Faulty::new(&env, false, false));
    let wf = Workflow::new(
        store,
        StatisticalExplainer::new(profiles()),
        CodeBuildExecutor::new(faulty.clone(), Env::poll(), Arc::new(SystemClock)),
        env.config(),
        "worker-b".into(),
    );
    let report = wf.sweep(now).unwrap();
    assert_eq!(report.found, 1);
    assert_eq!(report.resumed, 1);
    assert_eq!(report.errors, 0);
    let i = wf.store().get("inc-stuck1").unwrap().unwrap();
    use WorkflowState::*;
    assert_eq!(i.state, Resolved);
    assert_eq!(
        states(&i),
        vec![Detected, Analyzing, Decided, Executing, Verifying, Resolved]
    );
    // The recorded apply build was verified, not started again: exactly one apply build
    // exists; the one build started is the verify build.
    assert_eq!(env.builds(&env.apply), vec![apply_id.clone()]);
    let starts = faulty.starts.lock().unwrap().clone();
    assert_eq!(starts.len(), 1);
    assert_eq!(starts[0].project, env.verify);
    assert_eq!(starts[0].environment["CORRELATION_ID"], "corr-stuck1");
    assert_eq!(i.build_ids.len(), 2);
    assert_eq!(i.build_ids[0], apply_id);
    // The look-up of a build started but never recorded runs against CodeBuild (moto keeps
    // no environment overrides, so it finds none there).
    let api = aiops_act::codebuild::SdkCodeBuild::new(&env.sdk, env.rt.clone());
    assert_eq!(
        aiops_act::codebuild::BuildApi::find(&api, &env.apply, "corr-stuck1", &[]),
        Ok(None)
    );
    assert!(faulty.reads.load(Ordering::SeqCst) >= 2);
    // Nothing is stuck any more; the young incident is untouched.
    assert_eq!(
        wf.sweep(now).unwrap(),
        aiops_act::sweeper::SweepReport::default()
    );
    assert_eq!(
        wf.store().get("inc-young").unwrap().unwrap().state,
        WorkflowState::Detected
    );
}

#[test]
fn an_item_over_the_size_bound_is_refused_for_good() {
    let Some(env) = env("an_item_over_the_size_bound_is_refused_for_good") else {
        return;
    };
    let mut cfg = env.store.clone();
    // Inline everything (no S3 offload, no trimming): the item outgrows the bound.
    cfg.inline_finding_max_bytes = 4 << 20;
    cfg.evidence_bucket = String::new();
    let store = DynamoStore::new(&env.sdk, env.rt.clone(), cfg);
    let mut f = rds("big1", "prod-db");
    f.evidence.samples = vec!["x".repeat(100_000); 5];
    let wf = Workflow::new(
        store,
        StatisticalExplainer::new(profiles()),
        CodeBuildExecutor::new(
            Faulty::new(&env, false, false),
            Env::poll(),
            Arc::new(SystemClock),
        ),
        env.config(),
        "worker-a".into(),
    );
    let err = wf.handle(&f).unwrap_err();
    assert!(err.is_permanent(), "{err}");
    let aiops_act::WorkflowError::Store(StoreError::Rejected(reason)) = &err else {
        panic!("{err:?}");
    };
    assert!(reason.contains("above the 358400-byte bound"), "{reason}");
    assert_eq!(wf.store().get("inc-big1").unwrap(), None);
}
