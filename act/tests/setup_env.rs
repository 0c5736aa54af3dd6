//! `aiops_act::build` as a binary wires it, with the SDK's standard environment: credentials
//! and region from the environment, Bedrock reached through `AWS_ENDPOINT_URL_BEDROCK_RUNTIME`
//! (the Bedrock stub), and, when moto runs, DynamoDB, CodeBuild and SNS through
//! `[act.aws] endpoint_url`. One test in this binary, because it sets process environment
//! variables (only loopback endpoints and dummy credentials).

mod support;

use aiops_act::{ActConfig, IncidentStore, RecoveryConfig};
use aiops_core::WorkflowState;
use support::bedrock_stub::{BedrockStub, Reply};
use support::moto::{MODEL, env};
use support::*;

fn example_act(file: &str) -> ActConfig {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    let doc: toml::Table = toml::from_str(&text).unwrap();
    let act = doc.get("act").cloned().unwrap();
    let cfg: ActConfig = act.try_into().unwrap();
    cfg.validate().unwrap();
    cfg
}

#[test]
fn build_wires_bedrock_dynamodb_codebuild_and_sns_from_the_standard_environment() {
    let stub = BedrockStub::always(Reply::answer(answer_json("FAILURE", 0.97, 9, "recreate")));
    // SAFETY: the only test of this binary sets the environment before any thread reads it.
    unsafe {
        std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
        std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
        std::env::remove_var("AWS_SESSION_TOKEN");
        std::env::remove_var("AWS_PROFILE");
        std::env::set_var("AWS_REGION", "us-east-1");
        std::env::set_var("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", stub.url());
    }

    // The example embedded + Bedrock configuration validates and runs: embedded stores,
    // Bedrock for enrichment.
    let bedrock = example_act("pipeline.bedrock.toml");
    assert_eq!(bedrock.enrichment.provider, "bedrock");
    assert_eq!(bedrock.store.backend, "sqlite");
    assert_eq!(bedrock.recovery.executor, "dry_run");
    assert_eq!(
        example_act("pipeline.toml").enrichment.provider,
        "statistical"
    );
    let mut cfg = bedrock.clone();
    cfg.enrichment.model_id = MODEL.into();
    cfg.enrichment.endpoint_url = None; // the environment variable decides
    let dir = tempfile::tempdir().unwrap();
    let wf = aiops_act::build(&cfg, dir.path(), "embedded-1".into(), profiles()).unwrap();
    let f = change_finding(
        "env1",
        "rds_delete_db_instance",
        "rds_db_instance",
        "prod-db",
        "recreate",
    );
    let i = wf.handle(&f).unwrap().incident.unwrap();
    assert_eq!(i.state, WorkflowState::Resolved);
    assert_eq!(
        i.explainer.as_deref(),
        Some(format!("bedrock:{MODEL}").as_str())
    );
    assert!(i.outcome.as_deref().unwrap().starts_with("dry_run"));
    assert_eq!(stub.requests().len(), 1);
    assert_eq!(stub.requests()[0].model_id, MODEL);
    drop(wf);

    // aws mode: everything through build(), against moto.
    let Some(m) = env("build_wires_aws_mode") else {
        return;
    };
    let mut cfg = m.config();
    cfg.recovery = RecoveryConfig {
        poll_initial_ms: 5,
        poll_max_ms: 20,
        ..cfg.recovery
    };
    cfg.aws.endpoint_url = Some(m.endpoint.clone());
    cfg.enrichment.provider = "bedrock".into();
    cfg.enrichment.model_id = MODEL.into();
    cfg.notify.backend = "sns".into();
    cfg.notify.topic_arn = m.topic_arn.clone();
    let wf = aiops_act::build(&cfg, dir.path(), "aws-1".into(), profiles()).unwrap();
    let f = change_finding(
        "env2",
        "rds_delete_db_instance",
        "rds_db_instance",
        "orders-db",
        "recreate",
    );
    let i = wf.handle(&f).unwrap().incident.unwrap();
    assert_eq!(i.state, WorkflowState::Resolved);
    assert_eq!(i.outcome.as_deref(), Some("verified: no drift after apply"));
    assert_eq!(m.builds(&m.apply), vec![i.build_ids[0].clone()]);
    assert_eq!(m.builds(&m.verify), vec![i.build_ids[1].clone()]);
    assert_eq!(m.notifications().len(), 1);
    assert_eq!(stub.requests().len(), 2);
    drop(wf);
    // `aiops incidents list|show` read the same store.
    let store = aiops_act::open_store(&cfg, dir.path(), true).unwrap();
    assert_eq!(store.list(10).unwrap(), vec![i.clone()]);
    assert_eq!(store.get("inc-env2").unwrap(), Some(i));
}
