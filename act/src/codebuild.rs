//! Recovery through AWS CodeBuild (DESIGN §6): `StartBuild` of a project with environment
//! variable overrides, then `BatchGetBuilds` polled with exponential backoff until the build
//! ends or a time-out passes. "Accepted" is never "succeeded": [`CodeBuildExecutor::run`]
//! returns only when CodeBuild reports a final status (or on time-out, after asking CodeBuild
//! to stop the build).
//!
//! Errors: an account build limit (`AccountLimitExceededException`) or any other StartBuild
//! rejection fails the build at once, with no retry loop (the cooldown lock then keeps the
//! resource from being retried for its cooldown); throttling of StartBuild is retried a few
//! times with backoff. The CodeBuild calls sit behind [`BuildApi`] so a test can inject what no
//! emulator does (failed builds, account limits).

use crate::aws::{Blocking, error_chain};
use crate::clock::{Clock, backoff};
use crate::text::truncate_utf8;
use crate::workflow::{BuildOutcome, BuildResult, RecoveryExecutor, RecoveryPlan};
use aws_sdk_codebuild::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_codebuild::types::{EnvironmentVariable, EnvironmentVariableType, StatusType};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// Polling settings of the CodeBuild executor (part of `[act.recovery]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollConfig {
    /// Wait before the first status read, milliseconds; doubles per read.
    pub initial_ms: u64,
    /// Longest wait between status reads, milliseconds.
    pub max_ms: u64,
    /// Give up on a build after this long, seconds (the build is then asked to stop).
    pub timeout_secs: u64,
    /// StartBuild attempts when throttled.
    pub start_attempts: u32,
}

impl Default for PollConfig {
    fn default() -> Self {
        PollConfig {
            initial_ms: 5_000,
            max_ms: 30_000,
            timeout_secs: 3_600,
            start_attempts: 3,
        }
    }
}

/// Why StartBuild failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartError {
    /// `AccountLimitExceededException`: the account's concurrent build limit.
    AccountLimit(String),
    /// Throttled: may be retried after a backoff.
    Throttled(String),
    /// Anything else (unknown project, invalid input, access denied, network).
    Other(String),
}

/// A build's status as read from CodeBuild.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildStatus {
    /// Queued or running (also any status this code does not know yet).
    InProgress(String),
    /// `SUCCEEDED`.
    Succeeded,
    /// `FAILED`, `FAULT`, `STOPPED` or `TIMED_OUT`, with the failing phase and its messages.
    Failed(String),
}

/// The CodeBuild calls the executor needs.
pub trait BuildApi: Send + Sync {
    /// Starts a build of `plan.project` with `plan.environment` as overrides; returns its id.
    ///
    /// # Errors
    /// [`StartError`].
    fn start(&self, plan: &RecoveryPlan) -> Result<String, StartError>;
    /// Reads a build's status.
    ///
    /// # Errors
    /// A description of the failure (treated as transient until the time-out).
    fn status(&self, build_id: &str) -> Result<BuildStatus, String>;
    /// Asks CodeBuild to stop a build (best effort).
    ///
    /// # Errors
    /// A description of the failure.
    fn stop(&self, build_id: &str) -> Result<(), String>;
    /// The newest build of `project` (among its last 100) whose environment has
    /// `CORRELATION_ID` = `correlation_id`, other than `exclude`. The default finds none.
    ///
    /// # Errors
    /// A description of the failure.
    fn find(
        &self,
        project: &str,
        correlation_id: &str,
        exclude: &[String],
    ) -> Result<Option<String>, String> {
        let _ = (project, correlation_id, exclude);
        Ok(None)
    }
}

impl<T: BuildApi + ?Sized> BuildApi for Arc<T> {
    fn start(&self, plan: &RecoveryPlan) -> Result<String, StartError> {
        (**self).start(plan)
    }
    fn status(&self, build_id: &str) -> Result<BuildStatus, String> {
        (**self).status(build_id)
    }
    fn stop(&self, build_id: &str) -> Result<(), String> {
        (**self).stop(build_id)
    }
    fn find(
        &self,
        project: &str,
        correlation_id: &str,
        exclude: &[String],
    ) -> Result<Option<String>, String> {
        (**self).find(project, correlation_id, exclude)
    }
}

/// The environment variable overrides of a plan: every entry as a `PLAINTEXT` variable, in
/// name order.
///
/// # Errors
/// A description when a variable cannot be built (an empty name).
pub fn environment_overrides(plan: &RecoveryPlan) -> Result<Vec<EnvironmentVariable>, String> {
    plan.environment
        .iter()
        .map(|(k, v)| {
            EnvironmentVariable::builder()
                .name(k)
                .value(v)
                .r#type(EnvironmentVariableType::Plaintext)
                .build()
                .map_err(|e| e.to_string())
        })
        .collect()
}

/// The `idempotencyToken` of a plan's StartBuild: `aiops-<CORRELATION_ID>-<16 hex digits of
/// a stable hash of the project and the `PHASE` variable>`, at most 64 characters (the
/// correlation id is cut to fit), or `None` without a correlation id. The phase keeps apart
/// the apply and verify builds of a configuration that runs both in one project. CodeBuild returns the build already started for a
/// token repeated within 5 minutes instead of starting another (CodeBuild API reference,
/// StartBuild, `idempotencyToken`), so an SDK retry after a lost response, or a worker that
/// restarts soon after dying between StartBuild and recording the build, starts no second
/// build of the same project for the same incident.
pub fn idempotency_token(plan: &RecoveryPlan) -> Option<String> {
    let cid = plan.environment.get("CORRELATION_ID")?;
    let phase = plan.environment.get("PHASE").map_or("", String::as_str);
    let hash = aiops_core::stable_hash(&[plan.project.as_bytes(), phase.as_bytes()]);
    Some(format!(
        "aiops-{}-{hash:016x}",
        truncate_utf8(cid, 64 - 6 - 17)
    ))
}

/// [`BuildApi`] over the AWS SDK. Blocks on the SDK: never call from inside an async task.
#[derive(Clone)]
pub struct SdkCodeBuild {
    client: aws_sdk_codebuild::Client,
    rt: Blocking,
}

impl SdkCodeBuild {
    /// A CodeBuild client from the SDK configuration.
    pub fn new(sdk: &aws_config::SdkConfig, rt: Blocking) -> SdkCodeBuild {
        SdkCodeBuild {
            client: aws_sdk_codebuild::Client::new(sdk),
            rt,
        }
    }
}

fn sdk_error<E, R>(err: &SdkError<E, R>) -> (String, String)
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    match err {
        SdkError::ServiceError(se) => (
            se.err().code().unwrap_or("unknown").to_string(),
            se.err().message().unwrap_or_default().to_string(),
        ),
        other => ("transport".to_string(), error_chain(other)),
    }
}

impl BuildApi for SdkCodeBuild {
    fn start(&self, plan: &RecoveryPlan) -> Result<String, StartError> {
        let env = environment_overrides(plan).map_err(StartError::Other)?;
        let request = self
            .client
            .start_build()
            .project_name(&plan.project)
            .set_idempotency_token(idempotency_token(plan))
            .set_environment_variables_override(Some(env));
        match self.rt.block_on(request.send()) {
            Ok(out) => out
                .build_value()
                .and_then(|b| b.id())
                .map(str::to_string)
                .ok_or_else(|| StartError::Other("StartBuild returned no build id".into())),
            Err(err) => {
                let (code, msg) = sdk_error(&err);
                let what = format!("{code}: {}", truncate_utf8(&msg, 1024));
                Err(match code.as_str() {
                    "AccountLimitExceededException" => StartError::AccountLimit(what),
                    "ThrottlingException" | "Throttling" | "TooManyRequestsException" => {
                        StartError::Throttled(what)
                    }
                    _ => StartError::Other(what),
                })
            }
        }
    }

    fn status(&self, build_id: &str) -> Result<BuildStatus, String> {
        let out = self
            .rt
            .block_on(self.client.batch_get_builds().ids(build_id).send())
            .map_err(|e| {
                let (code, msg) = sdk_error(&e);
                format!("{code}: {}", truncate_utf8(&msg, 1024))
            })?;
        let Some(build) = out.builds().iter().find(|b| b.id() == Some(build_id)) else {
            return Err(format!("build {build_id} not found"));
        };
        let phase = build.current_phase().unwrap_or("unknown").to_string();
        Ok(match build.build_status() {
            Some(StatusType::Succeeded) => BuildStatus::Succeeded,
            Some(
                s @ (StatusType::Failed
                | StatusType::Fault
                | StatusType::Stopped
                | StatusType::TimedOut),
            ) => {
                let mut why = Vec::new();
                for p in build.phases() {
                    let failed = p.phase_status().is_some_and(|s| {
                        !matches!(s, StatusType::Succeeded | StatusType::InProgress)
                    });
                    if failed {
                        let msgs: Vec<&str> =
                            p.contexts().iter().filter_map(|c| c.message()).collect();
                        why.push(format!(
                            "{} {}{}",
                            p.phase_type().map(|t| t.as_str()).unwrap_or("?"),
                            p.phase_status().map(|s| s.as_str()).unwrap_or("?"),
                            if msgs.is_empty() {
                                String::new()
                            } else {
                                format!(" ({})", msgs.join("; "))
                            }
                        ));
                    }
                }
                BuildStatus::Failed(truncate_utf8(
                    &format!(
                        "build {} {}{}",
                        build_id,
                        s.as_str(),
                        if why.is_empty() {
                            format!(" in phase {phase}")
                        } else {
                            format!(": {}", why.join(", "))
                        }
                    ),
                    2048,
                ))
            }
            _ => BuildStatus::InProgress(phase),
        })
    }

    fn stop(&self, build_id: &str) -> Result<(), String> {
        self.rt
            .block_on(self.client.stop_build().id(build_id).send())
            .map(|_| ())
            .map_err(|e| {
                let (code, msg) = sdk_error(&e);
                format!("{code}: {msg}")
            })
    }
    fn find(
        &self,
        project: &str,
        correlation_id: &str,
        exclude: &[String],
    ) -> Result<Option<String>, String> {
        let err = |e: &dyn std::fmt::Display| truncate_utf8(&e.to_string(), 1024);
        let listed = self
            .rt
            .block_on(
                self.client
                    .list_builds_for_project()
                    .project_name(project)
                    .sort_order(aws_sdk_codebuild::types::SortOrderType::Descending)
                    .send(),
            )
            .map_err(|e| {
                let (code, msg) = sdk_error(&e);
                format!("{code}: {}", err(&msg))
            })?;
        let ids: Vec<String> = listed
            .ids()
            .iter()
            .filter(|i| !exclude.contains(i))
            .take(100)
            .cloned()
            .collect();
        if ids.is_empty() {
            return Ok(None);
        }
        let out = self
            .rt
            .block_on(
                self.client
                    .batch_get_builds()
                    .set_ids(Some(ids.clone()))
                    .send(),
            )
            .map_err(|e| {
                let (code, msg) = sdk_error(&e);
                format!("{code}: {}", err(&msg))
            })?;
        let ours = |b: &aws_sdk_codebuild::types::Build| {
            b.environment().is_some_and(|env| {
                env.environment_variables()
                    .iter()
                    .any(|v| v.name() == "CORRELATION_ID" && v.value() == correlation_id)
            })
        };
        // Newest first, as listed.
        Ok(ids.into_iter().find(|id| {
            out.builds()
                .iter()
                .any(|b| b.id() == Some(id.as_str()) && ours(b))
        }))
    }
}

/// The CodeBuild recovery executor (see the module documentation).
pub struct CodeBuildExecutor<B> {
    api: B,
    poll: PollConfig,
    clock: Arc<dyn Clock>,
}

impl<B: BuildApi> CodeBuildExecutor<B> {
    /// An executor over `api`, polling as `poll` says, waiting on `clock`.
    pub fn new(api: B, poll: PollConfig, clock: Arc<dyn Clock>) -> CodeBuildExecutor<B> {
        CodeBuildExecutor { api, poll, clock }
    }

    /// The build API (tests).
    pub fn api(&self) -> &B {
        &self.api
    }
}

impl<B: BuildApi> RecoveryExecutor for CodeBuildExecutor<B> {
    fn find_started(&self, plan: &RecoveryPlan, exclude: &[String]) -> Option<String> {
        let cid = plan.environment.get("CORRELATION_ID")?;
        match self.api.find(&plan.project, cid, exclude) {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(project = %plan.project, error = %e, "cannot look for an unrecorded build; starting one");
                None
            }
        }
    }

    fn run(&self, plan: &RecoveryPlan, started: &mut dyn FnMut(&str)) -> BuildResult {
        let mut attempt = 0;
        let build_id = loop {
            match self.api.start(plan) {
                Ok(id) => break id,
                Err(StartError::Throttled(m)) if attempt + 1 < self.poll.start_attempts.max(1) => {
                    let d = backoff(
                        Duration::from_secs(1),
                        Duration::from_secs(10),
                        attempt,
                        u64::from(attempt),
                    );
                    tracing::warn!(project = %plan.project, error = %m, "StartBuild throttled; retrying");
                    self.clock.sleep(d);
                    attempt += 1;
                }
                Err(e) => {
                    let reason = match e {
                        StartError::AccountLimit(m) => {
                            format!(
                                "CodeBuild account build limit reached, build not started ({m})"
                            )
                        }
                        StartError::Throttled(m) => {
                            format!("StartBuild throttled, build not started ({m})")
                        }
                        StartError::Other(m) => format!("StartBuild failed ({m})"),
                    };
                    tracing::error!(project = %plan.project, reason = %reason, "recovery build not started");
                    return BuildResult {
                        build_id: None,
                        outcome: BuildOutcome::Failed(reason),
                    };
                }
            }
        };
        tracing::info!(project = %plan.project, build_id = %build_id, "recovery build started");
        started(&build_id);
        self.wait(&build_id)
    }

    fn wait(&self, build_id: &str) -> BuildResult {
        let build_id = build_id.to_string();
        let start = self.clock.now_micros();
        let timeout_us = i64::try_from(self.poll.timeout_secs)
            .unwrap_or(i64::MAX / 1_000_000)
            .saturating_mul(1_000_000);
        let mut delay = Duration::from_millis(self.poll.initial_ms);
        let max = Duration::from_millis(self.poll.max_ms.max(self.poll.initial_ms));
        loop {
            self.clock.sleep(delay);
            let last = match self.api.status(&build_id) {
                Ok(BuildStatus::Succeeded) => {
                    return BuildResult {
                        build_id: Some(build_id),
                        outcome: BuildOutcome::Succeeded,
                    };
                }
                Ok(BuildStatus::Failed(reason)) => {
                    return BuildResult {
                        build_id: Some(build_id),
                        outcome: BuildOutcome::Failed(reason),
                    };
                }
                Ok(BuildStatus::InProgress(phase)) => format!("IN_PROGRESS in phase {phase}"),
                Err(e) => {
                    tracing::warn!(build_id = %build_id, error = %e, "cannot read build status; will retry");
                    format!("status unreadable: {e}")
                }
            };
            if self.clock.now_micros().saturating_sub(start) >= timeout_us {
                let stopped = match self.api.stop(&build_id) {
                    Ok(()) => "stop requested".to_string(),
                    Err(e) => format!("stop failed: {e}"),
                };
                return BuildResult {
                    build_id: Some(build_id),
                    outcome: BuildOutcome::Failed(format!(
                        "timed out after {} s waiting for the build ({last}); {stopped}",
                        self.poll.timeout_secs
                    )),
                };
            }
            delay = (delay * 2).min(max);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    struct Scripted {
        start: Mutex<Vec<Result<String, StartError>>>,
        statuses: Mutex<Vec<BuildStatus>>,
        reads: Mutex<u32>,
        stops: Mutex<Vec<String>>,
    }

    impl BuildApi for Scripted {
        fn start(&self, _plan: &RecoveryPlan) -> Result<String, StartError> {
            self.start.lock().unwrap().remove(0)
        }
        fn status(&self, _id: &str) -> Result<BuildStatus, String> {
            *self.reads.lock().unwrap() += 1;
            let mut s = self.statuses.lock().unwrap();
            if s.len() > 1 {
                Ok(s.remove(0))
            } else {
                Ok(s[0].clone())
            }
        }
        fn stop(&self, id: &str) -> Result<(), String> {
            self.stops.lock().unwrap().push(id.to_string());
            Ok(())
        }
    }

    fn plan() -> RecoveryPlan {
        let mut env = BTreeMap::new();
        env.insert("TF_TARGET".to_string(), "aws_db_instance.prod".to_string());
        env.insert("RESOURCE_TYPE".to_string(), "rds_db_instance".to_string());
        RecoveryPlan {
            project: "apply".into(),
            environment: env,
        }
    }

    fn scripted(start: Vec<Result<String, StartError>>, statuses: Vec<BuildStatus>) -> Scripted {
        Scripted {
            start: Mutex::new(start),
            statuses: Mutex::new(statuses),
            reads: Mutex::new(0),
            stops: Mutex::new(vec![]),
        }
    }

    fn poll() -> PollConfig {
        PollConfig {
            initial_ms: 1_000,
            max_ms: 4_000,
            timeout_secs: 20,
            start_attempts: 3,
        }
    }

    #[test]
    fn accepted_is_not_succeeded_a_failure_after_polling_is_failed() {
        let clock = Arc::new(ManualClock::new(0));
        let api = scripted(
            vec![Ok("b1".into())],
            vec![
                BuildStatus::InProgress("QUEUED".into()),
                BuildStatus::InProgress("BUILD".into()),
                BuildStatus::Failed("build b1 FAILED: BUILD FAILED (exit status 2)".into()),
            ],
        );
        let x = CodeBuildExecutor::new(api, poll(), clock.clone());
        let r = x.run(&plan(), &mut |_| {});
        assert_eq!(r.build_id.as_deref(), Some("b1"));
        assert_eq!(
            r.outcome,
            BuildOutcome::Failed("build b1 FAILED: BUILD FAILED (exit status 2)".into())
        );
        assert_eq!(*x.api().reads.lock().unwrap(), 3);
        assert_eq!(
            clock.sleeps(),
            vec![
                Duration::from_secs(1),
                Duration::from_secs(2),
                Duration::from_secs(4)
            ]
        );
    }

    #[test]
    fn account_limit_fails_at_once_without_retry() {
        let clock = Arc::new(ManualClock::new(0));
        let api = scripted(
            vec![Err(StartError::AccountLimit(
                "AccountLimitExceededException: Cannot have more than 1 builds in queue for the account".into(),
            ))],
            vec![BuildStatus::Succeeded],
        );
        let x = CodeBuildExecutor::new(api, poll(), clock.clone());
        let r = x.run(&plan(), &mut |_| {});
        assert_eq!(r.build_id, None);
        assert_eq!(
            r.outcome,
            BuildOutcome::Failed("CodeBuild account build limit reached, build not started (AccountLimitExceededException: Cannot have more than 1 builds in queue for the account)".into())
        );
        assert_eq!(*x.api().reads.lock().unwrap(), 0);
        assert!(clock.sleeps().is_empty());
    }

    #[test]
    fn throttled_start_is_retried_then_polls() {
        let clock = Arc::new(ManualClock::new(0));
        let api = scripted(
            vec![
                Err(StartError::Throttled(
                    "ThrottlingException: slow down".into(),
                )),
                Ok("b2".into()),
            ],
            vec![BuildStatus::Succeeded],
        );
        let x = CodeBuildExecutor::new(api, poll(), clock.clone());
        let r = x.run(&plan(), &mut |_| {});
        assert_eq!(
            r,
            BuildResult {
                build_id: Some("b2".into()),
                outcome: BuildOutcome::Succeeded
            }
        );
        assert_eq!(clock.sleeps().len(), 2);
    }

    #[test]
    fn a_build_that_never_ends_times_out_and_is_stopped() {
        let clock = Arc::new(ManualClock::new(0));
        let api = scripted(
            vec![Ok("b3".into())],
            vec![BuildStatus::InProgress("BUILD".into())],
        );
        let x = CodeBuildExecutor::new(api, poll(), clock.clone());
        let r = x.run(&plan(), &mut |_| {});
        assert_eq!(
            r.outcome,
            BuildOutcome::Failed("timed out after 20 s waiting for the build (IN_PROGRESS in phase BUILD); stop requested".into())
        );
        assert_eq!(*x.api().stops.lock().unwrap(), vec!["b3".to_string()]);
        // 1 + 2 + 4 + 4 + 4 + 4 + 4 = 23 s >= 20 s
        assert_eq!(*x.api().reads.lock().unwrap(), 7);
    }

    #[test]
    fn idempotency_token_is_stable_per_incident_and_project_and_bounded() {
        let mut p = plan();
        assert_eq!(idempotency_token(&p), None);
        p.environment
            .insert("CORRELATION_ID".into(), "corr-1234".into());
        let t = idempotency_token(&p).unwrap();
        assert_eq!(t, idempotency_token(&p).unwrap());
        assert!(t.starts_with("aiops-corr-1234-") && t.len() == 32, "{t}");
        let mut verify = p.clone();
        verify.project = "aiops-verify".into();
        assert_ne!(idempotency_token(&verify).unwrap(), t);
        // One project for both builds: the phase tells them apart.
        let mut apply = p.clone();
        apply.environment.insert("PHASE".into(), "apply".into());
        let mut verify_same_project = p.clone();
        verify_same_project
            .environment
            .insert("PHASE".into(), "verify".into());
        assert_ne!(
            idempotency_token(&apply).unwrap(),
            idempotency_token(&verify_same_project).unwrap()
        );
        let mut long = p.clone();
        long.environment
            .insert("CORRELATION_ID".into(), "c".repeat(300));
        assert_eq!(idempotency_token(&long).unwrap().len(), 64);
        let mut none = p;
        none.environment.remove("CORRELATION_ID");
        assert_eq!(idempotency_token(&none), None);
    }

    #[test]
    fn environment_overrides_are_plaintext_in_name_order() {
        let env = environment_overrides(&plan()).unwrap();
        let got: Vec<(String, String, String)> = env
            .iter()
            .map(|e| {
                (
                    e.name().to_string(),
                    e.value().to_string(),
                    e.r#type().map(|t| t.as_str()).unwrap_or("").to_string(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "RESOURCE_TYPE".into(),
                    "rds_db_instance".into(),
                    "PLAINTEXT".into()
                ),
                (
                    "TF_TARGET".into(),
                    "aws_db_instance.prod".into(),
                    "PLAINTEXT".into()
                ),
            ]
        );
    }
}
