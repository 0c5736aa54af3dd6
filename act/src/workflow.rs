//! The incident workflow (DESIGN §6): open an incident for a finding, decide on it, gate it on
//! confidence and cooldown, recover, verify, record every step.

use crate::explain::Explainer;
use crate::incident::{Incident, IncidentPatch, IncidentStore, StoreError, TimelineEntry};
use aiops_core::time::now_micros;
use aiops_core::{Decision, Finding, WorkflowState};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use thiserror::Error;

/// `[act]` in `pipeline.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ActConfig {
    /// Below this confidence a decision goes to MANUAL_REVIEW, never to an action. Default 0.8.
    pub confidence_threshold: f64,
    /// How long a recovery of one resource blocks another recovery of it, seconds (wall
    /// clock). Default 900.
    pub cooldown_secs: u64,
    /// Allowed actions per resource type; an action not listed is never taken.
    pub allowlist: BTreeMap<String, Vec<String>>,
    /// The recovery through CodeBuild.
    pub recovery: RecoveryConfig,
}

/// `[act.recovery]`: which CodeBuild projects run Terraform, and the target of each resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecoveryConfig {
    /// `dry_run` (record what would run; embedded default) or `codebuild`.
    pub executor: String,
    /// CodeBuild project running `terraform apply -target`.
    pub apply_project: String,
    /// CodeBuild project running `terraform plan -detailed-exitcode -target`.
    pub verify_project: String,
    /// Terraform address template per resource type; `{id}` is the resource id and `{slug}`
    /// the id with every character outside `[A-Za-z0-9_]` replaced by `_`.
    pub targets: BTreeMap<String, String>,
}

impl Default for RecoveryConfig {
    fn default() -> Self {
        let targets = [
            ("ec2_instance", "aws_instance.{slug}"),
            ("ssm_parameter", "aws_ssm_parameter.{slug}"),
            ("lambda_function", "aws_lambda_function.{slug}"),
            ("dynamodb_table", "aws_dynamodb_table.{slug}"),
            ("s3_bucket", "aws_s3_bucket.{slug}"),
            ("rds_db_instance", "aws_db_instance.{slug}"),
            ("rds_db_cluster", "aws_rds_cluster.{slug}"),
            ("cloudtrail_trail", "aws_cloudtrail.{slug}"),
            (
                "config_recorder",
                "aws_config_configuration_recorder.{slug}",
            ),
            ("vpc_flow_log", "aws_flow_log.{slug}"),
            (
                "resolver_query_log_config",
                "aws_route53_resolver_query_log_config.{slug}",
            ),
            ("kms_key", "aws_kms_key.{slug}"),
            ("guardduty_detector", "aws_guardduty_detector.{slug}"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        RecoveryConfig {
            executor: "dry_run".to_string(),
            apply_project: "aiops-recovery-apply".to_string(),
            verify_project: "aiops-recovery-verify".to_string(),
            targets,
        }
    }
}

impl Default for ActConfig {
    fn default() -> Self {
        let allow = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let allowlist = [
            ("ec2_instance", allow(&["start", "recreate"])),
            ("ssm_parameter", allow(&["restore"])),
            ("lambda_function", allow(&["restore", "recreate"])),
            ("dynamodb_table", allow(&["recreate"])),
            ("s3_bucket", allow(&["restore", "recreate"])),
            ("rds_db_instance", allow(&["start", "restore", "recreate"])),
            ("rds_db_cluster", allow(&["start", "recreate"])),
            ("cloudtrail_trail", allow(&["restore", "recreate"])),
            ("config_recorder", allow(&["restore"])),
            ("vpc_flow_log", allow(&["recreate"])),
            ("resolver_query_log_config", allow(&["recreate"])),
            ("kms_key", allow(&["restore"])),
            ("guardduty_detector", allow(&["recreate"])),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        ActConfig {
            confidence_threshold: 0.8,
            cooldown_secs: 900,
            allowlist,
            recovery: RecoveryConfig::default(),
        }
    }
}

/// A configuration value out of range.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("act.{field}: {reason}")]
pub struct ActConfigError {
    /// Dotted field path below `act`.
    pub field: String,
    /// What is wrong.
    pub reason: String,
}

impl ActConfig {
    /// Checks ranges, the executor name, and that every allowlisted type has a target.
    ///
    /// # Errors
    /// [`ActConfigError`] naming the first field out of range.
    pub fn validate(&self) -> Result<(), ActConfigError> {
        let bad = |field: &str, reason: String| {
            Err(ActConfigError {
                field: field.to_string(),
                reason,
            })
        };
        if !(0.0..=1.0).contains(&self.confidence_threshold) {
            return bad(
                "confidence_threshold",
                format!("{} is outside 0..=1", self.confidence_threshold),
            );
        }
        if self.cooldown_secs == 0 {
            return bad("cooldown_secs", "must be at least 1".into());
        }
        if self.recovery.executor != "dry_run" && self.recovery.executor != "codebuild" {
            return bad(
                "recovery.executor",
                format!("{:?} is not dry_run or codebuild", self.recovery.executor),
            );
        }
        if self.recovery.apply_project.trim().is_empty() {
            return bad("recovery.apply_project", "is empty".into());
        }
        if self.recovery.verify_project.trim().is_empty() {
            return bad("recovery.verify_project", "is empty".into());
        }
        for (t, actions) in &self.allowlist {
            if actions.iter().any(|a| a.trim().is_empty()) {
                return bad(&format!("allowlist.{t}"), "contains an empty action".into());
            }
            if !actions.is_empty() && !self.recovery.targets.contains_key(t) {
                return bad(
                    &format!("recovery.targets.{t}"),
                    "missing: every resource type with allowed actions needs a Terraform target"
                        .into(),
                );
            }
        }
        for (t, tpl) in &self.recovery.targets {
            if !tpl.contains("{id}") && !tpl.contains("{slug}") {
                return bad(
                    &format!("recovery.targets.{t}"),
                    format!("{tpl:?} names neither {{id}} nor {{slug}}"),
                );
            }
        }
        Ok(())
    }

    /// Whether `action` is allowed for `resource_type`.
    pub fn allows(&self, resource_type: &str, action: &str) -> bool {
        self.allowlist
            .get(resource_type)
            .is_some_and(|v| v.iter().any(|a| a == action))
    }

    /// The Terraform target of a resource, from its type's template.
    pub fn terraform_target(&self, resource_type: &str, resource_id: &str) -> Option<String> {
        let slug: String = resource_id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.recovery
            .targets
            .get(resource_type)
            .map(|t| t.replace("{id}", resource_id).replace("{slug}", &slug))
    }
}

/// What a recovery executor is asked to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoveryPlan {
    /// CodeBuild project (apply or verify).
    pub project: String,
    /// Environment overrides: `RESOURCE_TYPE`, `RESOURCE_ID`, `TF_TARGET`, `CORRELATION_ID`,
    /// `ACTION`.
    pub environment: BTreeMap<String, String>,
}

/// How a build ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BuildOutcome {
    /// The build succeeded (for verify: no drift).
    Succeeded,
    /// Nothing ran: the dry-run executor recorded the plan.
    DryRun,
    /// The build failed, timed out or could not start; the reason.
    Failed(String),
}

/// A finished build: its id and outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildResult {
    /// Build id (`dry-run:<project>:<uuid>` for the dry-run executor).
    pub build_id: String,
    /// How it ended.
    pub outcome: BuildOutcome,
}

/// Runs recovery builds (CodeBuild in aws mode; the dry-run executor in embedded mode).
pub trait RecoveryExecutor {
    /// Runs one build to completion (or time-out) and reports how it ended. Implementations
    /// never return before the build is finished: "accepted" is not "succeeded".
    fn run(&self, plan: &RecoveryPlan) -> BuildResult;
}

/// Records the build it would start and runs nothing.
#[derive(Debug, Default, Clone)]
pub struct DryRunExecutor;

impl RecoveryExecutor for DryRunExecutor {
    fn run(&self, plan: &RecoveryPlan) -> BuildResult {
        tracing::info!(project = %plan.project, environment = ?plan.environment, "dry run: build not started");
        BuildResult {
            build_id: format!("dry-run:{}:{}", plan.project, uuid::Uuid::new_v4().simple()),
            outcome: BuildOutcome::DryRun,
        }
    }
}

/// Errors of the workflow.
#[derive(Debug, Error)]
pub enum WorkflowError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The workflow, over a store, an explainer and an executor.
pub struct Workflow<S, E, X> {
    store: S,
    explainer: E,
    executor: X,
    config: ActConfig,
    worker_id: String,
}

/// The result of handling one finding.
#[derive(Debug, Clone, PartialEq)]
pub struct Handled {
    /// The incident as it ended up (`None` when the finding was already handled).
    pub incident: Option<Incident>,
    /// Whether this call opened the incident (false for a duplicate delivery).
    pub opened: bool,
}

impl<S: IncidentStore, E: Explainer, X: RecoveryExecutor> Workflow<S, E, X> {
    /// A workflow for one worker (`worker_id` names the holder of cooldown locks).
    pub fn new(store: S, explainer: E, executor: X, config: ActConfig, worker_id: String) -> Self {
        Workflow {
            store,
            explainer,
            executor,
            config,
            worker_id,
        }
    }

    /// The store (for reads).
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Handles one finding end to end: DETECTED -> ANALYZING -> DECIDED -> (SKIPPED_COOLDOWN |
    /// MANUAL_REVIEW | EXECUTING -> VERIFYING -> RESOLVED | FAILED). A finding already handled
    /// (same incident id) is not handled again.
    ///
    /// # Errors
    /// [`WorkflowError`] when the store fails; the incident stays in its last written state.
    pub fn handle(&self, finding: &Finding) -> Result<Handled, WorkflowError> {
        let now = now_micros();
        let (resource_key, resource_type, resource_id) = match &finding.resource {
            Some(r) => (r.key(), r.resource_type.clone(), r.resource_id.clone()),
            None => (
                format!("finding:{}", finding.finding_id),
                String::new(),
                String::new(),
            ),
        };
        let incident = Incident {
            incident_id: format!("inc-{}", finding.finding_id),
            correlation_id: uuid::Uuid::new_v4().to_string(),
            resource_key: resource_key.clone(),
            resource_type: resource_type.clone(),
            resource_id: resource_id.clone(),
            state: WorkflowState::Detected,
            finding: finding.clone(),
            classification: None,
            confidence: None,
            severity: None,
            reasoning: None,
            action: None,
            explainer: None,
            codebuild_project: None,
            terraform_target: None,
            build_ids: Vec::new(),
            outcome: None,
            timeline: vec![TimelineEntry {
                state: WorkflowState::Detected,
                at: now,
            }],
            event_time: finding.event_time,
            created_at: now,
            updated_at: now,
        };
        if !self.store.create(&incident)? {
            return Ok(Handled {
                incident: None,
                opened: false,
            });
        }
        let id = incident.incident_id.clone();
        let step = |from, to, patch: IncidentPatch| -> Result<bool, WorkflowError> {
            Ok(self.store.transition(&id, from, to, &patch, now_micros())?)
        };
        use WorkflowState::*;
        if !step(Detected, Analyzing, IncidentPatch::default())? {
            return self.finish(&id);
        }
        let decision: Decision = self.explainer.explain(finding);
        // Guard rail: only an allowlisted action for this resource type is ever taken.
        let action = decision
            .action
            .clone()
            .filter(|a| finding.recoverable && self.config.allows(&resource_type, a));
        let rejected = decision.action.is_some() && action.is_none();
        let mut reasoning = decision.reasoning.clone();
        if rejected {
            reasoning.push_str(&format!(
                " [action {:?} rejected: not allowed for resource type {:?}]",
                decision.action.as_deref().unwrap_or_default(),
                resource_type
            ));
        }
        let target = action
            .as_ref()
            .and_then(|_| self.config.terraform_target(&resource_type, &resource_id));
        let decided = IncidentPatch {
            classification: Some(decision.classification.as_str().to_string()),
            confidence: Some(decision.confidence),
            severity: Some(decision.severity),
            reasoning: Some(reasoning),
            action: action.clone(),
            explainer: Some(decision.explainer.clone()),
            codebuild_project: target
                .as_ref()
                .map(|_| self.config.recovery.apply_project.clone()),
            terraform_target: target.clone(),
            ..IncidentPatch::default()
        };
        if !step(Analyzing, Decided, decided)? {
            return self.finish(&id);
        }
        let (Some(action), Some(target)) = (action, target) else {
            let outcome = if rejected {
                "model action rejected by allowlist; needs a person"
            } else {
                "no automatic action; needs a person"
            };
            step(
                Decided,
                ManualReview,
                IncidentPatch {
                    outcome: Some(outcome.into()),
                    ..IncidentPatch::default()
                },
            )?;
            return self.finish(&id);
        };
        if decision.confidence < self.config.confidence_threshold {
            step(
                Decided,
                ManualReview,
                IncidentPatch {
                    outcome: Some(format!(
                        "confidence {:.2} below threshold {:.2}",
                        decision.confidence, self.config.confidence_threshold
                    )),
                    ..IncidentPatch::default()
                },
            )?;
            return self.finish(&id);
        }
        let now = now_micros();
        let expires = now.saturating_add(
            i64::try_from(self.config.cooldown_secs)
                .unwrap_or(i64::MAX / 1_000_000)
                .saturating_mul(1_000_000),
        );
        if !self
            .store
            .try_lock(&resource_key, &self.worker_id, now, expires)?
        {
            step(
                Decided,
                SkippedCooldown,
                IncidentPatch {
                    outcome: Some(
                        "another recovery of this resource is within its cooldown".into(),
                    ),
                    ..IncidentPatch::default()
                },
            )?;
            return self.finish(&id);
        }
        let mut env = BTreeMap::new();
        env.insert("RESOURCE_TYPE".to_string(), resource_type.clone());
        env.insert("RESOURCE_ID".to_string(), resource_id.clone());
        env.insert("TF_TARGET".to_string(), target.clone());
        env.insert(
            "CORRELATION_ID".to_string(),
            incident.correlation_id.clone(),
        );
        env.insert("ACTION".to_string(), action.clone());
        let apply = self.executor.run(&RecoveryPlan {
            project: self.config.recovery.apply_project.clone(),
            environment: env.clone(),
        });
        if let BuildOutcome::Failed(reason) = &apply.outcome {
            step(
                Decided,
                Executing,
                IncidentPatch {
                    add_build_id: Some(apply.build_id.clone()),
                    ..IncidentPatch::default()
                },
            )?;
            step(
                Executing,
                Failed,
                IncidentPatch {
                    outcome: Some(format!("apply build failed: {reason}")),
                    ..IncidentPatch::default()
                },
            )?;
            return self.finish(&id);
        }
        step(
            Decided,
            Executing,
            IncidentPatch {
                add_build_id: Some(apply.build_id.clone()),
                ..IncidentPatch::default()
            },
        )?;
        let verify = self.executor.run(&RecoveryPlan {
            project: self.config.recovery.verify_project.clone(),
            environment: env,
        });
        step(
            Executing,
            Verifying,
            IncidentPatch {
                add_build_id: Some(verify.build_id.clone()),
                ..IncidentPatch::default()
            },
        )?;
        let (to, outcome) = match (&apply.outcome, &verify.outcome) {
            (BuildOutcome::DryRun, _) | (_, BuildOutcome::DryRun) => (
                Resolved,
                "dry_run: apply and verify recorded, not run; nothing was changed".to_string(),
            ),
            (_, BuildOutcome::Succeeded) => {
                (Resolved, "verified: no drift after apply".to_string())
            }
            (_, BuildOutcome::Failed(r)) => (Failed, format!("verify build failed: {r}")),
        };
        step(
            Verifying,
            to,
            IncidentPatch {
                outcome: Some(outcome),
                ..IncidentPatch::default()
            },
        )?;
        self.finish(&id)
    }

    fn finish(&self, id: &str) -> Result<Handled, WorkflowError> {
        Ok(Handled {
            incident: self.store.get(id)?,
            opened: true,
        })
    }
}
