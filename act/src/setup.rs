//! Wiring: builds the act stage's workflow from `[act]`, choosing each adapter, so a binary
//! needs one call. The AWS adapters share one small Tokio runtime owned by the workflow's
//! adapters; the workflow must run on a thread of its own (or in `spawn_blocking`), never
//! inside an async task.

use crate::aws::{AwsSetupError, Blocking, load_sdk_config};
use crate::bedrock::BedrockExplainer;
use crate::changes::ChangeIndex;
use crate::clock::SystemClock;
use crate::codebuild::{CodeBuildExecutor, SdkCodeBuild};
use crate::config::{ActConfig, ActConfigError};
use crate::dynamo::{DynamoChangeIndex, DynamoStore};
use crate::explain::{Explainer, RuleProfile, StatisticalExplainer};
use crate::incident::{IncidentStore, StoreError};
use crate::notify::{NoopNotifier, Notifier, SnsNotifier};
use crate::sqlite::SqliteStore;
use crate::workflow::{DryRunExecutor, RecoveryExecutor, Workflow};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use thiserror::Error;

/// A boxed incident store.
pub type DynStore = Box<dyn IncidentStore + Send + Sync>;
/// A boxed explainer.
pub type DynExplainer = Box<dyn Explainer + Send + Sync>;
/// A boxed recovery executor.
pub type DynExecutor = Box<dyn RecoveryExecutor + Send + Sync>;
/// A boxed notifier.
pub type DynNotifier = Box<dyn Notifier + Send + Sync>;
/// The workflow as [`build`] assembles it.
pub type ActWorkflow = Workflow<DynStore, DynExplainer, DynExecutor, DynNotifier>;

/// The SQLite file of the embedded store, below the data directory.
pub const SQLITE_FILE: &str = "incidents.sqlite";

/// Errors building the act stage.
#[derive(Debug, Error)]
pub enum SetupError {
    /// `[act]` is invalid.
    #[error(transparent)]
    Config(#[from] ActConfigError),
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The AWS runtime could not start.
    #[error(transparent)]
    Aws(#[from] AwsSetupError),
    /// `open_store(.., must_exist = true)` found no SQLite file.
    #[error("no incident store at {0} (run or replay first, or pass --data-dir)")]
    NoStore(PathBuf),
}

/// What the AWS adapters share: the runtime and the SDK configuration of `[act.aws]`.
struct AwsParts {
    rt: Blocking,
    sdk: aws_config::SdkConfig,
}

fn aws_parts(config: &ActConfig) -> Result<AwsParts, SetupError> {
    let rt = Blocking::owned(2)?;
    let sdk = rt.block_on(load_sdk_config(
        config.aws.region.as_deref(),
        config.aws.endpoint_url.as_deref(),
    ));
    Ok(AwsParts { rt, sdk })
}

fn store_with(
    config: &ActConfig,
    data_dir: &Path,
    must_exist: bool,
    aws: &mut Option<AwsParts>,
) -> Result<DynStore, SetupError> {
    Ok(match config.store.backend.as_str() {
        "dynamodb" => {
            if aws.is_none() {
                *aws = Some(aws_parts(config)?);
            }
            let Some(a) = aws.as_ref() else {
                return Err(AwsSetupError::Runtime("no runtime".into()).into());
            };
            Box::new(DynamoStore::new(&a.sdk, a.rt.clone(), config.store.clone()))
        }
        _ => {
            let path = data_dir.join(SQLITE_FILE);
            if must_exist && !path.exists() {
                return Err(SetupError::NoStore(path));
            }
            Box::new(SqliteStore::open(&path)?)
        }
    })
}

/// Opens the configured incident store (for `aiops incidents list|show`): SQLite at
/// `<data_dir>/incidents.sqlite` (with `must_exist`, a missing file is
/// [`SetupError::NoStore`]) or DynamoDB.
///
/// # Errors
/// [`SetupError`].
pub fn open_store(
    config: &ActConfig,
    data_dir: &Path,
    must_exist: bool,
) -> Result<DynStore, SetupError> {
    config.validate()?;
    let mut aws = None;
    store_with(config, data_dir, must_exist, &mut aws)
}

/// Builds the workflow `[act]` describes: store (`sqlite` | `dynamodb`), explainer
/// (`statistical` | `bedrock`, falling back to the statistical explainer built from
/// `rule_profiles`), executor (`dry_run` | `codebuild`) and notifier (`none` | `sns`).
/// `worker_id` names this worker in logs (the incident holds its cooldown lock).
///
/// # Errors
/// [`SetupError`] when the configuration is invalid, the store cannot be opened or the AWS
/// runtime cannot start. No AWS call is made here.
pub fn build(
    config: &ActConfig,
    data_dir: &Path,
    worker_id: String,
    rule_profiles: BTreeMap<String, RuleProfile>,
) -> Result<ActWorkflow, SetupError> {
    config.validate()?;
    let mut aws: Option<AwsParts> = None;
    let store = store_with(config, data_dir, false, &mut aws)?;
    let needs_aws = config.enrichment.provider == "bedrock"
        || config.recovery.executor == "codebuild"
        || config.notify.backend == "sns";
    if needs_aws && aws.is_none() {
        aws = Some(aws_parts(config)?);
    }
    let statistical = StatisticalExplainer::new(rule_profiles);
    let clock = Arc::new(SystemClock);
    let explainer: DynExplainer = match (config.enrichment.provider.as_str(), aws.as_ref()) {
        ("bedrock", Some(a)) => {
            // Bedrock gets its own SDK configuration: the act-wide endpoint override (an
            // emulator without Bedrock) must not apply to it.
            let e = &config.enrichment;
            let region = e.region.as_deref().or(config.aws.region.as_deref());
            let sdk =
                a.rt.block_on(load_sdk_config(region, e.endpoint_url.as_deref()));
            Box::new(BedrockExplainer::new(
                &sdk,
                a.rt.clone(),
                e.clone(),
                statistical,
                clock.clone(),
            ))
        }
        _ => Box::new(statistical),
    };
    let executor: DynExecutor = match (config.recovery.executor.as_str(), aws.as_ref()) {
        ("codebuild", Some(a)) => Box::new(CodeBuildExecutor::new(
            SdkCodeBuild::new(&a.sdk, a.rt.clone()),
            config.recovery.poll(),
            clock.clone(),
        )),
        _ => Box::new(DryRunExecutor),
    };
    let notifier: DynNotifier = match (config.notify.backend.as_str(), aws.as_ref()) {
        ("sns", Some(a)) => Box::new(SnsNotifier::new(
            &a.sdk,
            a.rt.clone(),
            config.notify.topic_arn.clone(),
            config.notify.max_attempts,
            clock,
        )),
        _ => Box::new(NoopNotifier),
    };
    let changes = changes_with(config, data_dir, &mut aws)?;
    Ok(
        Workflow::new(store, explainer, executor, config.clone(), worker_id)
            .with_notifier(notifier)
            .with_changes(changes),
    )
}

/// The recent-changes index, shared (one handle for the workflow and the feeder).
pub type DynChangeIndex = Arc<dyn ChangeIndex + Send + Sync>;

fn changes_with(
    config: &ActConfig,
    data_dir: &Path,
    aws: &mut Option<AwsParts>,
) -> Result<DynChangeIndex, SetupError> {
    Ok(match config.store.backend.as_str() {
        "dynamodb" => {
            if aws.is_none() {
                *aws = Some(aws_parts(config)?);
            }
            let Some(a) = aws.as_ref() else {
                return Err(AwsSetupError::Runtime("no runtime".into()).into());
            };
            Arc::new(DynamoChangeIndex::new(
                &a.sdk,
                a.rt.clone(),
                config.changes.clone(),
            ))
        }
        _ => Arc::new(
            SqliteStore::open(&data_dir.join(SQLITE_FILE))?
                .with_change_bounds(config.changes.clone()),
        ),
    })
}

/// Opens the recent-changes index of `[act]` where events are seen (the pipeline feeds it
/// with [`crate::changes::change_from_event`] for every event): the `changes` table of the
/// SQLite file in `data_dir` in embedded mode, the DynamoDB table `[act.changes] table` in
/// aws mode. [`build`] gives the workflow its own handle to the same index.
///
/// # Errors
/// [`SetupError`] when the configuration is invalid or the store cannot be opened.
pub fn open_change_index(
    config: &ActConfig,
    data_dir: &Path,
) -> Result<DynChangeIndex, SetupError> {
    config.validate()?;
    let mut aws = None;
    changes_with(config, data_dir, &mut aws)
}
