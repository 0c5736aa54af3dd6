//! `[act]` in `pipeline.toml`: the confidence gate, cooldown, allowlist, and which adapters
//! the act stage uses (explainer, incident store, recovery executor, notifier).

use crate::bedrock::EnrichmentConfig;
use crate::changes::ChangeIndexConfig;
use crate::codebuild::PollConfig;
use crate::group::GroupingConfig;
use crate::notify::NotifyConfig;
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
    /// Who decides: the statistical explainer or Bedrock.
    pub enrichment: EnrichmentConfig,
    /// Where incidents and cooldown locks live.
    pub store: StoreConfig,
    /// Where notifications go.
    pub notify: NotifyConfig,
    /// SDK settings shared by the AWS adapters of the act stage (DynamoDB, S3, CodeBuild,
    /// SNS; Bedrock has its own in `enrichment`).
    pub aws: AwsSection,
    /// Grouping findings into incidents, the service map, the related-changes lookback.
    pub grouping: GroupingConfig,
    /// Bounds of the recent-changes index.
    pub changes: ChangeIndexConfig,
    /// The stuck-incident sweeper (`[act.sweeper]`).
    pub sweeper: crate::sweeper::SweeperConfig,
    /// Findings an aws-mode act worker handles at once (over all its shards), never two of
    /// one resource at once. Default 4; 1..=64 (1: one at a time).
    pub max_in_flight: usize,
}

/// `[act.aws]`: SDK settings for the act stage's AWS clients.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AwsSection {
    /// Region; default: the SDK chain (`AWS_REGION`, profile).
    pub region: Option<String>,
    /// Endpoint of every act client except Bedrock (local emulators such as moto); default:
    /// the SDK's, which honours `AWS_ENDPOINT_URL` and `AWS_ENDPOINT_URL_<SERVICE>`.
    pub endpoint_url: Option<String>,
}

/// `[act.store]`: the incident store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `sqlite` (embedded default: `<data_dir>/incidents.sqlite`) or `dynamodb`.
    pub backend: String,
    /// DynamoDB incidents table (key `incident_id`; GSIs `by_resource`, `by_state`).
    pub incidents_table: String,
    /// DynamoDB cooldown lock table (key `resource_key`).
    pub locks_table: String,
    /// DynamoDB table of outcome counters per resource type (key `pattern_key`; the
    /// deployment's `patterns` table); empty: no counters.
    pub stats_table: String,
    /// Incidents expire this many days after creation (DynamoDB TTL attribute `ttl`).
    pub ttl_days: u32,
    /// S3 bucket for evidence too large for a DynamoDB item; empty: such evidence is trimmed.
    pub evidence_bucket: String,
    /// Key prefix in `evidence_bucket`.
    pub evidence_prefix: String,
    /// Largest inline finding (JSON) in a DynamoDB item, bytes; larger ones go to S3 (or are
    /// trimmed). Default 65536, at most 262144 so items stay far below DynamoDB's 400 KB.
    pub inline_finding_max_bytes: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            backend: "sqlite".into(),
            incidents_table: "aiops-incidents".into(),
            locks_table: "aiops-locks".into(),
            stats_table: "aiops-patterns".into(),
            ttl_days: 90,
            evidence_bucket: String::new(),
            evidence_prefix: "incidents/evidence".into(),
            inline_finding_max_bytes: 64 * 1024,
        }
    }
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
    /// a valid Terraform resource name made from it (see [`terraform_name`]).
    pub targets: BTreeMap<String, String>,
    /// First wait before reading a build's status, milliseconds (doubles). Default 5000.
    pub poll_initial_ms: u64,
    /// Longest wait between status reads, milliseconds. Default 30000.
    pub poll_max_ms: u64,
    /// Give up on one build after this long, seconds (it is asked to stop). Default 3600.
    pub build_timeout_secs: u64,
    /// StartBuild attempts when throttled (an account build limit is never retried).
    /// Default 3.
    pub start_attempts: u32,
}

impl RecoveryConfig {
    /// The polling settings of the CodeBuild executor.
    pub fn poll(&self) -> PollConfig {
        PollConfig {
            initial_ms: self.poll_initial_ms,
            max_ms: self.poll_max_ms,
            timeout_secs: self.build_timeout_secs,
            start_attempts: self.start_attempts,
        }
    }
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
        let poll = PollConfig::default();
        RecoveryConfig {
            executor: "dry_run".to_string(),
            apply_project: "aiops-recovery-apply".to_string(),
            verify_project: "aiops-recovery-verify".to_string(),
            targets,
            poll_initial_ms: poll.initial_ms,
            poll_max_ms: poll.max_ms,
            build_timeout_secs: poll.timeout_secs,
            start_attempts: poll.start_attempts,
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
            enrichment: EnrichmentConfig::default(),
            store: StoreConfig::default(),
            notify: NotifyConfig::default(),
            aws: AwsSection::default(),
            grouping: GroupingConfig::default(),
            changes: ChangeIndexConfig::default(),
            sweeper: crate::sweeper::SweeperConfig::default(),
            max_in_flight: 4,
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
    /// Checks ranges, adapter names and their required settings, and that every
    /// allowlisted type has a target.
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
        self.sweeper.validate()?;
        if !(1..=64).contains(&self.max_in_flight) {
            return bad(
                "max_in_flight",
                format!("{} is outside 1..=64", self.max_in_flight),
            );
        }
        let r = &self.recovery;
        if r.executor != "dry_run" && r.executor != "codebuild" {
            return bad(
                "recovery.executor",
                format!("{:?} is not dry_run or codebuild", r.executor),
            );
        }
        if r.apply_project.trim().is_empty() {
            return bad("recovery.apply_project", "is empty".into());
        }
        if r.verify_project.trim().is_empty() {
            return bad("recovery.verify_project", "is empty".into());
        }
        if r.poll_initial_ms == 0 || r.poll_max_ms < r.poll_initial_ms {
            return bad(
                "recovery.poll_initial_ms",
                format!(
                    "must be at least 1 and at most poll_max_ms ({})",
                    r.poll_max_ms
                ),
            );
        }
        if r.build_timeout_secs == 0 || r.build_timeout_secs > 8 * 3600 {
            return bad(
                "recovery.build_timeout_secs",
                format!("{} is outside 1..=28800", r.build_timeout_secs),
            );
        }
        if !(1..=10).contains(&r.start_attempts) {
            return bad(
                "recovery.start_attempts",
                format!("{} is outside 1..=10", r.start_attempts),
            );
        }
        for (t, actions) in &self.allowlist {
            if actions.iter().any(|a| a.trim().is_empty()) {
                return bad(&format!("allowlist.{t}"), "contains an empty action".into());
            }
            if !actions.is_empty() && !r.targets.contains_key(t) {
                return bad(
                    &format!("recovery.targets.{t}"),
                    "missing: every resource type with allowed actions needs a Terraform target"
                        .into(),
                );
            }
        }
        for (t, tpl) in &r.targets {
            if !tpl.contains("{id}") && !tpl.contains("{slug}") {
                return bad(
                    &format!("recovery.targets.{t}"),
                    format!("{tpl:?} names neither {{id}} nor {{slug}}"),
                );
            }
        }
        let e = &self.enrichment;
        match e.provider.as_str() {
            "statistical" => {}
            "bedrock" => {
                if e.model_id.trim().is_empty() {
                    return bad(
                        "enrichment.model_id",
                        "is empty: name a Bedrock model id or inference profile id/ARN".into(),
                    );
                }
            }
            other => {
                return bad(
                    "enrichment.provider",
                    format!("{other:?} is not statistical or bedrock"),
                );
            }
        }
        if let Err((field, reason)) = e.check_max_tokens() {
            return bad(&field, reason);
        }
        if !(0.0..=1.0).contains(&e.temperature) {
            return bad(
                "enrichment.temperature",
                format!("{} is outside 0..=1", e.temperature),
            );
        }
        if !(1..=10_000).contains(&e.calls_per_minute) {
            return bad(
                "enrichment.calls_per_minute",
                format!("{} is outside 1..=10000", e.calls_per_minute),
            );
        }
        if e.cache_size > 1_000_000 {
            return bad(
                "enrichment.cache_size",
                format!("{} is above 1000000", e.cache_size),
            );
        }
        if !(1..=10).contains(&e.max_attempts) {
            return bad(
                "enrichment.max_attempts",
                format!("{} is outside 1..=10", e.max_attempts),
            );
        }
        if e.history_limit > 50 {
            return bad(
                "enrichment.history_limit",
                format!("{} is above 50", e.history_limit),
            );
        }
        if !(256..=65_536).contains(&e.max_evidence_bytes) {
            return bad(
                "enrichment.max_evidence_bytes",
                format!("{} is outside 256..=65536", e.max_evidence_bytes),
            );
        }
        let s = &self.store;
        match s.backend.as_str() {
            "sqlite" => {}
            "dynamodb" => {
                if s.incidents_table.trim().is_empty() {
                    return bad("store.incidents_table", "is empty".into());
                }
                if s.locks_table.trim().is_empty() {
                    return bad("store.locks_table", "is empty".into());
                }
            }
            other => {
                return bad(
                    "store.backend",
                    format!("{other:?} is not sqlite or dynamodb"),
                );
            }
        }
        if s.ttl_days == 0 {
            return bad("store.ttl_days", "must be at least 1".into());
        }
        if !(1024..=262_144).contains(&s.inline_finding_max_bytes) {
            return bad(
                "store.inline_finding_max_bytes",
                format!("{} is outside 1024..=262144", s.inline_finding_max_bytes),
            );
        }
        let g = &self.grouping;
        if g.gap_secs == 0 || g.gap_secs > 86_400 {
            return bad(
                "grouping.gap_secs",
                format!("{} is outside 1..=86400", g.gap_secs),
            );
        }
        if g.lookback_secs > 86_400 {
            return bad(
                "grouping.lookback_secs",
                format!("{} is above 86400", g.lookback_secs),
            );
        }
        if g.max_related_changes > 20 {
            return bad(
                "grouping.max_related_changes",
                format!("{} is above 20", g.max_related_changes),
            );
        }
        if !(1..=2000).contains(&g.max_finding_ids) {
            return bad(
                "grouping.max_finding_ids",
                format!("{} is outside 1..=2000", g.max_finding_ids),
            );
        }
        if let Some(svc) = g.services.iter().find(|s| s.name.trim().is_empty()) {
            return bad(
                "grouping.services",
                format!("a service has an empty name ({svc:?})"),
            );
        }
        let c = &self.changes;
        if c.retention_secs < g.lookback_secs {
            return bad(
                "changes.retention_secs",
                format!(
                    "{} is below grouping.lookback_secs ({})",
                    c.retention_secs, g.lookback_secs
                ),
            );
        }
        if !(1..=1_000_000).contains(&c.max_per_scope) {
            return bad(
                "changes.max_per_scope",
                format!("{} is outside 1..=1000000", c.max_per_scope),
            );
        }
        let n = &self.notify;
        match n.backend.as_str() {
            "none" => {}
            "sns" => {
                if !n.topic_arn.starts_with("arn:") {
                    return bad(
                        "notify.topic_arn",
                        format!("{:?} is not an SNS topic ARN", n.topic_arn),
                    );
                }
            }
            other => return bad("notify.backend", format!("{other:?} is not none or sns")),
        }
        if !(1..=10).contains(&n.max_attempts) {
            return bad(
                "notify.max_attempts",
                format!("{} is outside 1..=10", n.max_attempts),
            );
        }
        if n.subject_prefix.trim().is_empty() || !n.subject_prefix.is_ascii() {
            return bad("notify.subject_prefix", "must be non-empty ASCII".into());
        }
        Ok(())
    }

    /// Whether `action` is allowed for `resource_type`.
    pub fn allows(&self, resource_type: &str, action: &str) -> bool {
        self.allowlist
            .get(resource_type)
            .is_some_and(|v| v.iter().any(|a| a == action))
    }

    /// The actions allowed for `resource_type` (empty when none).
    pub fn allowed_actions(&self, resource_type: &str) -> &[String] {
        self.allowlist
            .get(resource_type)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// The Terraform target of a resource, from its type's template (`{slug}` is
    /// [`terraform_name`] of the id, `{id}` the id itself).
    pub fn terraform_target(&self, resource_type: &str, resource_id: &str) -> Option<String> {
        let slug = terraform_name(resource_id);
        self.recovery
            .targets
            .get(resource_type)
            .map(|t| t.replace("{id}", resource_id).replace("{slug}", &slug))
    }
}

/// A valid Terraform resource name for `id`: every character outside `[A-Za-z0-9_]` becomes
/// `_`, and `r_` is put in front when the result does not start with a letter or `_` (a KMS
/// key id such as `1234abcd-...`, an empty id). Terraform names must start with a letter or
/// underscore and hold only letters, digits, underscores and dashes
/// (<https://developer.hashicorp.com/terraform/language/syntax/configuration#identifiers>).
pub fn terraform_name(id: &str) -> String {
    let slug: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    match slug.chars().next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => slug,
        _ => format!("r_{slug}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_adapter_settings_are_checked() {
        assert_eq!(ActConfig::default().validate(), Ok(()));
        let mut c = ActConfig::default();
        c.enrichment.provider = "bedrock".into();
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            "act.enrichment.model_id: is empty: name a Bedrock model id or inference profile id/ARN"
        );
        c.enrichment.model_id = "us.anthropic.claude-3-5-haiku-20241022-v1:0".into();
        assert_eq!(c.validate(), Ok(()));
        c.notify.backend = "sns".into();
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            "act.notify.topic_arn: \"\" is not an SNS topic ARN"
        );
        c.notify.topic_arn = "arn:aws:sns:us-east-1:123456789012:aiops".into();
        c.store.backend = "postgres".into();
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            "act.store.backend: \"postgres\" is not sqlite or dynamodb"
        );
    }

    #[test]
    fn rds_types_have_targets() {
        let c = ActConfig::default();
        assert_eq!(
            c.terraform_target("rds_db_instance", "prod-db").as_deref(),
            Some("aws_db_instance.prod_db")
        );
        assert_eq!(
            c.terraform_target("rds_db_cluster", "prod-cluster")
                .as_deref(),
            Some("aws_rds_cluster.prod_cluster")
        );
        assert_eq!(c.allowed_actions("rds_db_cluster"), ["start", "recreate"]);
        assert!(c.allowed_actions("unknown").is_empty());
    }

    /// Terraform identifiers: a letter or `_` first, then letters, digits, `_` and `-`.
    fn valid_terraform_name(name: &str) -> bool {
        let mut chars = name.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    }

    #[test]
    fn terraform_targets_are_valid_for_every_default_resource_type() {
        let c = ActConfig::default();
        // One id per resource type of the default rules, each of a shape that type has,
        // several starting with a digit or holding characters Terraform rejects.
        let cases = [
            ("ec2_instance", "i-0abc123", "aws_instance.i_0abc123"),
            (
                "ssm_parameter",
                "/prod/payments/db-password",
                "aws_ssm_parameter._prod_payments_db_password",
            ),
            (
                "lambda_function",
                "2fa-handler",
                "aws_lambda_function.r_2fa_handler",
            ),
            (
                "dynamodb_table",
                "orders.v2",
                "aws_dynamodb_table.orders_v2",
            ),
            ("s3_bucket", "123-logs", "aws_s3_bucket.r_123_logs"),
            ("rds_db_instance", "prod-db", "aws_db_instance.prod_db"),
            ("rds_db_cluster", "9cluster", "aws_rds_cluster.r_9cluster"),
            (
                "cloudtrail_trail",
                "example-trail",
                "aws_cloudtrail.example_trail",
            ),
            (
                "config_recorder",
                "default",
                "aws_config_configuration_recorder.default",
            ),
            ("vpc_flow_log", "fl-0123", "aws_flow_log.fl_0123"),
            (
                "resolver_query_log_config",
                "rqlc-1",
                "aws_route53_resolver_query_log_config.rqlc_1",
            ),
            (
                "kms_key",
                "1234abcd-12ab-34cd-56ef-1234567890ab",
                "aws_kms_key.r_1234abcd_12ab_34cd_56ef_1234567890ab",
            ),
            (
                "guardduty_detector",
                "12abc34d567e8fa901bc2d34e56789f0",
                "aws_guardduty_detector.r_12abc34d567e8fa901bc2d34e56789f0",
            ),
        ];
        assert_eq!(cases.len(), c.recovery.targets.len());
        for (t, id, want) in cases {
            let got = c.terraform_target(t, id).unwrap();
            assert_eq!(got, want, "{t}");
            let name = got.split_once('.').map(|(_, n)| n).unwrap();
            assert!(valid_terraform_name(name), "{got}");
        }
        assert_eq!(terraform_name(""), "r_");
        assert_eq!(terraform_name("_x"), "_x");
        assert_eq!(terraform_name("é1"), "_1");
    }
}
