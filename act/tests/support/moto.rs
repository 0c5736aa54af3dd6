//! Resources in moto for one test (unique names), and the CodeBuild adapter with injected
//! faults.

#![allow(dead_code)]

use super::bedrock_stub::BedrockStub;
use super::{local_sdk, moto_endpoint, profiles};
use aiops_act::aws::Blocking;
use aiops_act::bedrock::{BedrockExplainer, EnrichmentConfig};
use aiops_act::clock::SystemClock;
use aiops_act::codebuild::{BuildApi, BuildStatus, PollConfig, SdkCodeBuild, StartError};
use aiops_act::dynamo::DynamoStore;
use aiops_act::notify::SnsNotifier;
use aiops_act::{ActConfig, RecoveryConfig, RecoveryPlan, StatisticalExplainer, StoreConfig};
use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::AttributeValue;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

pub const MODEL: &str = "us.anthropic.claude-3-5-haiku-20241022-v1:0";

/// One isolated set of resources in moto (unique names per test).
pub struct Env {
    pub rt: Blocking,
    pub sdk: SdkConfig,
    pub endpoint: String,
    pub store: StoreConfig,
    pub apply: String,
    pub verify: String,
    pub topic_arn: String,
    pub queue_url: String,
    pub sqs: aws_sdk_sqs::Client,
    pub codebuild: aws_sdk_codebuild::Client,
}

pub fn env(test: &str) -> Option<Env> {
    let endpoint = moto_endpoint(test)?;
    let rt = Blocking::owned(2).unwrap();
    let sdk = local_sdk(&rt, &endpoint);
    let tag = uuid::Uuid::new_v4().simple().to_string()[..10].to_string();
    let store = StoreConfig {
        backend: "dynamodb".into(),
        incidents_table: format!("incidents-{tag}"),
        locks_table: format!("locks-{tag}"),
        stats_table: format!("patterns-{tag}"),
        evidence_bucket: format!("evidence-{tag}"),
        ..StoreConfig::default()
    };
    DynamoStore::new(&sdk, rt.clone(), store.clone())
        .create_tables()
        .unwrap();
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(true)
            .build(),
    );
    rt.block_on(s3.create_bucket().bucket(&store.evidence_bucket).send())
        .unwrap();
    let codebuild = aws_sdk_codebuild::Client::new(&sdk);
    let apply = format!("apply-{tag}");
    let verify = format!("verify-{tag}");
    for name in [&apply, &verify] {
        rt.block_on(
            codebuild
                .create_project()
                .name(name)
                .source(
                    aws_sdk_codebuild::types::ProjectSource::builder()
                        .r#type(aws_sdk_codebuild::types::SourceType::S3)
                        .location("aiops-terraform/recovery.zip")
                        .build()
                        .unwrap(),
                )
                .artifacts(
                    aws_sdk_codebuild::types::ProjectArtifacts::builder()
                        .r#type(aws_sdk_codebuild::types::ArtifactsType::NoArtifacts)
                        .build()
                        .unwrap(),
                )
                .environment(
                    aws_sdk_codebuild::types::ProjectEnvironment::builder()
                        .r#type(aws_sdk_codebuild::types::EnvironmentType::LinuxContainer)
                        .compute_type(aws_sdk_codebuild::types::ComputeType::BuildGeneral1Small)
                        .image("aws/codebuild/standard:7.0")
                        .build()
                        .unwrap(),
                )
                .service_role("arn:aws:iam::123456789012:role/aiops-recovery")
                .send(),
        )
        .unwrap();
    }
    let sns = aws_sdk_sns::Client::new(&sdk);
    let topic_arn = rt
        .block_on(sns.create_topic().name(format!("notify-{tag}")).send())
        .unwrap()
        .topic_arn()
        .unwrap()
        .to_string();
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let queue_url = rt
        .block_on(sqs.create_queue().queue_name(format!("q-{tag}")).send())
        .unwrap()
        .queue_url()
        .unwrap()
        .to_string();
    let attrs = rt
        .block_on(
            sqs.get_queue_attributes()
                .queue_url(&queue_url)
                .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
                .send(),
        )
        .unwrap();
    let queue_arn = attrs
        .attributes()
        .unwrap()
        .get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .unwrap()
        .clone();
    rt.block_on(
        sns.subscribe()
            .topic_arn(&topic_arn)
            .protocol("sqs")
            .endpoint(queue_arn)
            .send(),
    )
    .unwrap();
    Some(Env {
        rt,
        sdk,
        endpoint,
        store,
        apply,
        verify,
        topic_arn,
        queue_url,
        sqs,
        codebuild,
    })
}

impl Env {
    pub fn dynamo(&self) -> DynamoStore {
        DynamoStore::new(&self.sdk, self.rt.clone(), self.store.clone())
    }

    /// The recent-changes index of this environment (its table created).
    pub fn changes(&self) -> aiops_act::dynamo::DynamoChangeIndex {
        let tag = self.store.incidents_table.trim_start_matches("incidents-");
        let idx = aiops_act::dynamo::DynamoChangeIndex::new(
            &self.sdk,
            self.rt.clone(),
            aiops_act::changes::ChangeIndexConfig {
                table: format!("changes-{tag}"),
                ..aiops_act::changes::ChangeIndexConfig::default()
            },
        );
        idx.create_table().unwrap();
        idx
    }

    pub fn config(&self) -> ActConfig {
        ActConfig {
            recovery: RecoveryConfig {
                executor: "codebuild".into(),
                apply_project: self.apply.clone(),
                verify_project: self.verify.clone(),
                ..RecoveryConfig::default()
            },
            store: self.store.clone(),
            ..ActConfig::default()
        }
    }

    pub fn poll() -> PollConfig {
        PollConfig {
            initial_ms: 5,
            max_ms: 20,
            timeout_secs: 60,
            start_attempts: 3,
        }
    }

    pub fn notifier(&self) -> SnsNotifier {
        SnsNotifier::new(
            &self.sdk,
            self.rt.clone(),
            self.topic_arn.clone(),
            3,
            Arc::new(SystemClock),
        )
    }

    pub fn bedrock(&self, stub: &BedrockStub) -> BedrockExplainer {
        let sdk = local_sdk(&self.rt, stub.url());
        BedrockExplainer::new(
            &sdk,
            self.rt.clone(),
            EnrichmentConfig {
                provider: "bedrock".into(),
                model_id: MODEL.into(),
                ..EnrichmentConfig::default()
            },
            StatisticalExplainer::new(profiles()),
            Arc::new(SystemClock),
        )
    }

    /// Build ids moto recorded for a project.
    pub fn builds(&self, project: &str) -> Vec<String> {
        self.rt
            .block_on(
                self.codebuild
                    .list_builds_for_project()
                    .project_name(project)
                    .send(),
            )
            .unwrap()
            .ids()
            .to_vec()
    }

    /// Every notification delivered to the subscribed queue so far (SNS envelopes).
    pub fn notifications(&self) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        loop {
            let resp = self
                .rt
                .block_on(
                    self.sqs
                        .receive_message()
                        .queue_url(&self.queue_url)
                        .max_number_of_messages(10)
                        .send(),
                )
                .unwrap();
            if resp.messages().is_empty() {
                break;
            }
            for m in resp.messages() {
                out.push(serde_json::from_str(m.body().unwrap()).unwrap());
                self.rt
                    .block_on(
                        self.sqs
                            .delete_message()
                            .queue_url(&self.queue_url)
                            .receipt_handle(m.receipt_handle().unwrap())
                            .send(),
                    )
                    .unwrap();
            }
        }
        out
    }

    pub fn raw_item(&self, incident_id: &str) -> HashMap<String, AttributeValue> {
        self.rt
            .block_on(
                self.dynamo()
                    .client()
                    .get_item()
                    .table_name(&self.store.incidents_table)
                    .key("incident_id", AttributeValue::S(incident_id.into()))
                    .send(),
            )
            .unwrap()
            .item()
            .unwrap()
            .clone()
    }
}

/// The real CodeBuild adapter with recording and injected faults.
pub struct Faulty {
    pub inner: SdkCodeBuild,
    pub verify_project: String,
    pub fail_verify: bool,
    pub account_limit: bool,
    pub starts: Mutex<Vec<RecoveryPlan>>,
    pub reads: AtomicUsize,
}

impl Faulty {
    pub fn new(env: &Env, fail_verify: bool, account_limit: bool) -> Faulty {
        Faulty {
            inner: SdkCodeBuild::new(&env.sdk, env.rt.clone()),
            verify_project: env.verify.clone(),
            fail_verify,
            account_limit,
            starts: Mutex::new(Vec::new()),
            reads: AtomicUsize::new(0),
        }
    }
}

impl BuildApi for Faulty {
    fn start(&self, plan: &RecoveryPlan) -> Result<String, StartError> {
        self.starts.lock().unwrap().push(plan.clone());
        if self.account_limit {
            return Err(StartError::AccountLimit(
                "AccountLimitExceededException: Cannot have more than 0 builds in queue for the account (injected)".into(),
            ));
        }
        self.inner.start(plan)
    }
    fn status(&self, build_id: &str) -> Result<BuildStatus, String> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        let real = self.inner.status(build_id)?;
        if self.fail_verify
            && real == BuildStatus::Succeeded
            && build_id.starts_with(&format!("{}:", self.verify_project))
        {
            // What the verify buildspec does when `terraform plan -detailed-exitcode` exits 2.
            return Ok(BuildStatus::Failed(format!(
                "build {build_id} FAILED: BUILD FAILED (terraform plan exit code 2: drift remains; injected)"
            )));
        }
        Ok(real)
    }
    fn stop(&self, build_id: &str) -> Result<(), String> {
        self.inner.stop(build_id)
    }
}
