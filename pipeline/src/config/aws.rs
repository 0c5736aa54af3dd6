//! `[aws]` in `pipeline.toml`: the names of a deployment (streams, tables, bucket) and the
//! tuning of the Kinesis consumer, leases, producer and S3 uploads. The flat names match what
//! `infra/terraform/templates/pipeline.toml.tftpl` renders.

use aiops_aws::backoff::BackoffConfig;
use aiops_aws::consumer::ConsumerConfig;
use aiops_aws::coordinator::LeaseConfig;
use aiops_aws::objects::S3Config;
use serde::{Deserialize, Serialize};

/// How the stages of aws mode are deployed (`[aws] deployment_profile`; Terraform's variable of
/// the same name renders it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeploymentProfile {
    /// Three stages joined by the raw, events and decisions streams, each its own process
    /// (`aiops ingest`, `detect`, `act`), each scaled on its own.
    #[default]
    Scaled,
    /// The three stages in one process (`aiops run`) reading the raw stream only: events and
    /// findings go from stage to stage in memory, to S3 and DynamoDB as in `scaled`; no events
    /// or decisions stream. The small footprint.
    Single,
}

/// `[aws]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AwsSection {
    /// `scaled` (default) or `single`: see [`DeploymentProfile`].
    pub deployment_profile: DeploymentProfile,
    /// Region; default: the SDK chain (`AWS_REGION`, profile, instance metadata).
    pub region: Option<String>,
    /// Endpoint of every client (a local emulator); default: the SDK's, which honours
    /// `AWS_ENDPOINT_URL` and `AWS_ENDPOINT_URL_<SERVICE>`.
    pub endpoint_url: Option<String>,
    /// Address S3 buckets by path (`endpoint/bucket`); default: true when an endpoint
    /// override is in effect (emulators), false on AWS.
    pub s3_force_path_style: Option<bool>,
    /// Kinesis stream the sources write to (CloudTrail via EventBridge, CloudWatch Logs
    /// subscriptions, metric streams). Default `aiops-raw`.
    pub raw_stream: String,
    /// Kinesis stream of normalised events (ingest -> detect). Default `aiops-events`.
    pub events_stream: String,
    /// Kinesis stream of findings (detect -> act). Default `aiops-decisions`.
    pub decisions_stream: String,
    /// Shards `aiops setup` gives the raw stream. Default 2.
    pub raw_shards: i32,
    /// Shards `aiops setup` gives the events stream. Default 2.
    pub events_shards: i32,
    /// Shards `aiops setup` gives the decisions stream. Default 1.
    pub decisions_shards: i32,
    /// DynamoDB lease table of all stages (key `leaseKey`). Default `aiops-leases`.
    pub leases_table: String,
    /// DynamoDB incidents table. Default `aiops-incidents`.
    pub incidents_table: String,
    /// DynamoDB cooldown lock table. Default `aiops-locks`.
    pub locks_table: String,
    /// DynamoDB table of outcome counters per resource type. Default `aiops-patterns`.
    pub patterns_table: String,
    /// S3 bucket of the raw history (required in aws mode).
    pub history_bucket: String,
    /// Key prefix in the bucket (may be empty). Default `aiops`.
    pub history_prefix: String,
    /// Bedrock model id or inference profile for the act stage's enrichment (fills
    /// `act.enrichment.model_id` when that is empty).
    pub bedrock_model_id: Option<String>,
    /// SNS topic for notifications (fills `act.notify.topic_arn` when that is empty).
    pub sns_topic_arn: Option<String>,
    /// CloudWatch namespace of the stages' own metrics (Embedded Metric Format lines on
    /// stdout, see `aiops_core::metrics`); default `aiops`. Terraform renders
    /// `aiops/<deployment name>`, the namespace of its dashboard and alarms.
    pub metrics_namespace: Option<String>,
    /// Seconds between two flushes of a stage's metrics (EMF lines on stdout); 0 turns them
    /// off. Default 60 (CloudWatch's standard resolution; counters are summed per flush).
    pub metrics_interval_secs: u64,
    /// Detect and act checkpoint at most this often, milliseconds (their products are
    /// durable as soon as PutRecords or the store accepted them). Default 5,000.
    pub checkpoint_interval_ms: u64,
    /// Kinesis consumer (`[aws.consumer]`).
    pub consumer: ConsumerConfig,
    /// Shard leases (`[aws.leases]`).
    pub leases: LeaseConfig,
    /// Retries of `PutRecords` (`[aws.producer]`).
    pub producer: BackoffConfig,
    /// S3 uploads (`[aws.s3]`).
    pub s3: S3Config,
    /// Detect's engine state snapshots (`[aws.detect_state]`).
    pub detect_state: DetectStateConfig,
}

/// `[aws.detect_state]`: each detect shard saves its statistics engine's state (open windows,
/// series models, template dictionaries, watermark, de-duplication window) to
/// `s3://<history_bucket>/<history_prefix>/state/detect/<events stream>/<shard id>/engine.json.gz`
/// before each checkpoint, so a worker that takes the shard over (or the same one restarted)
/// resumes exactly where it stopped. Scaled profile only (the single profile's detect is shared
/// by every raw shard of the process and keeps its state in memory).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectStateConfig {
    /// Whether detect saves and restores its state. Default true.
    pub enabled: bool,
    /// Least time between two snapshots of a shard, milliseconds, 1,000..=3,600,000. Detect
    /// checkpoints only after a snapshot of the same position, so while this is on it is also
    /// detect's checkpoint interval (in place of `checkpoint_interval_ms`; a flush forced by
    /// the findings buffer snapshots too). Default 30,000.
    pub interval_ms: u64,
    /// Largest snapshot, gzip-compressed bytes, 1 KiB..=1 GiB: a larger state is not saved (a
    /// marker is written instead, so a restart starts cold rather than from an older state)
    /// and is counted and logged. Default 64 MiB.
    pub max_bytes: u64,
}

impl Default for DetectStateConfig {
    fn default() -> Self {
        DetectStateConfig {
            enabled: true,
            interval_ms: 30_000,
            max_bytes: 64 * 1024 * 1024,
        }
    }
}

impl DetectStateConfig {
    /// Checks the ranges.
    ///
    /// # Errors
    /// A message naming the field.
    pub fn validate(&self) -> Result<(), String> {
        if !(1_000..=3_600_000).contains(&self.interval_ms) {
            return Err(format!(
                "interval_ms: {} is outside 1000..=3600000",
                self.interval_ms
            ));
        }
        if !(1024..=1024 * 1024 * 1024).contains(&self.max_bytes) {
            return Err(format!(
                "max_bytes: {} is outside 1024..=1073741824",
                self.max_bytes
            ));
        }
        Ok(())
    }
}

impl Default for AwsSection {
    fn default() -> Self {
        AwsSection {
            deployment_profile: DeploymentProfile::Scaled,
            region: None,
            endpoint_url: None,
            s3_force_path_style: None,
            raw_stream: "aiops-raw".into(),
            events_stream: "aiops-events".into(),
            decisions_stream: "aiops-decisions".into(),
            raw_shards: 2,
            events_shards: 2,
            decisions_shards: 1,
            leases_table: "aiops-leases".into(),
            incidents_table: "aiops-incidents".into(),
            locks_table: "aiops-locks".into(),
            patterns_table: "aiops-patterns".into(),
            history_bucket: String::new(),
            history_prefix: "aiops".into(),
            bedrock_model_id: None,
            sns_topic_arn: None,
            metrics_namespace: None,
            metrics_interval_secs: 60,
            checkpoint_interval_ms: 5_000,
            consumer: ConsumerConfig::default(),
            leases: LeaseConfig::default(),
            producer: BackoffConfig::default(),
            s3: S3Config::default(),
            detect_state: DetectStateConfig::default(),
        }
    }
}

fn stream_name_ok(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

fn table_name_ok(s: &str) -> bool {
    (3..=255).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

fn bucket_name_ok(s: &str) -> bool {
    (3..=63).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && s.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric())
}

impl AwsSection {
    /// Checks names against the AWS naming rules (Kinesis streams: 1-128 of
    /// `[a-zA-Z0-9_.-]`; DynamoDB tables: 3-255 of the same; S3 buckets: 3-63 of
    /// `[a-z0-9.-]`, starting and ending with a letter or digit), shard counts, and every
    /// tuning section. The message starts with the field name (below `aws.`).
    ///
    /// # Errors
    /// The first problem found.
    pub fn validate(&self) -> Result<(), String> {
        for (field, name) in [
            ("raw_stream", &self.raw_stream),
            ("events_stream", &self.events_stream),
            ("decisions_stream", &self.decisions_stream),
        ] {
            if !stream_name_ok(name) {
                return Err(format!(
                    "{field}: {name:?} is not a Kinesis stream name (1-128 of [a-zA-Z0-9_.-])"
                ));
            }
        }
        if self.raw_stream == self.events_stream
            || self.events_stream == self.decisions_stream
            || self.raw_stream == self.decisions_stream
        {
            return Err(
                "raw_stream, events_stream, decisions_stream: must be three different streams"
                    .into(),
            );
        }
        for (field, n) in [
            ("raw_shards", self.raw_shards),
            ("events_shards", self.events_shards),
            ("decisions_shards", self.decisions_shards),
        ] {
            if !(1..=1000).contains(&n) {
                return Err(format!("{field}: {n} is outside 1..=1000"));
            }
        }
        for (field, name) in [
            ("leases_table", &self.leases_table),
            ("incidents_table", &self.incidents_table),
            ("locks_table", &self.locks_table),
            ("patterns_table", &self.patterns_table),
        ] {
            if !table_name_ok(name) {
                return Err(format!(
                    "{field}: {name:?} is not a DynamoDB table name (3-255 of [a-zA-Z0-9_.-])"
                ));
            }
        }
        if self.history_bucket.is_empty() {
            return Err(
                "history_bucket: is required in aws mode (the S3 bucket of the raw history)".into(),
            );
        }
        if !bucket_name_ok(&self.history_bucket) {
            return Err(format!(
                "history_bucket: {:?} is not an S3 bucket name (3-63 of [a-z0-9.-])",
                self.history_bucket
            ));
        }
        if self.history_prefix.len() > 512 {
            return Err("history_prefix: longer than 512 bytes".into());
        }
        if let Some(ns) = &self.metrics_namespace {
            // CloudWatch: 1-255 characters; the `AWS/` prefix is reserved for AWS services.
            if ns.is_empty() || ns.chars().count() > 255 || ns.starts_with("AWS/") {
                return Err(format!(
                    "metrics_namespace: {ns:?} is not a CloudWatch namespace (1-255 characters, not starting with AWS/)"
                ));
            }
        }
        if self.metrics_interval_secs > 3_600 {
            return Err(format!(
                "metrics_interval_secs: {} is over 3600 (0 turns the metrics off)",
                self.metrics_interval_secs
            ));
        }
        if self.checkpoint_interval_ms == 0 || self.checkpoint_interval_ms > 3_600_000 {
            return Err("checkpoint_interval_ms: must be between 1 and 3600000".into());
        }
        self.consumer
            .validate()
            .map_err(|e| format!("consumer.{e}"))?;
        self.leases.validate().map_err(|e| format!("leases.{e}"))?;
        self.producer
            .validate()
            .map_err(|e| format!("producer.{e}"))?;
        self.s3.validate().map_err(|e| format!("s3.{e}"))?;
        self.detect_state
            .validate()
            .map_err(|e| format!("detect_state.{e}"))?;
        Ok(())
    }

    /// The resolved names as one JSON object (for `aiops validate --json`). Under the single
    /// deployment profile the stages are joined in memory: `streams` and `shards` name only
    /// the raw stream.
    pub fn names_json(&self, mode: &str) -> serde_json::Value {
        let (streams, shards) = match self.deployment_profile {
            DeploymentProfile::Scaled => (
                serde_json::json!({
                    "raw": self.raw_stream,
                    "events": self.events_stream,
                    "decisions": self.decisions_stream,
                }),
                serde_json::json!({
                    "raw": self.raw_shards,
                    "events": self.events_shards,
                    "decisions": self.decisions_shards,
                }),
            ),
            DeploymentProfile::Single => (
                serde_json::json!({ "raw": self.raw_stream }),
                serde_json::json!({ "raw": self.raw_shards }),
            ),
        };
        serde_json::json!({
            "mode": mode,
            "deployment_profile": self.deployment_profile,
            "region": self.region,
            "endpoint_url": self.endpoint_url,
            "streams": streams,
            "shards": shards,
            "tables": {
                "incidents": self.incidents_table,
                "leases": self.leases_table,
                "locks": self.locks_table,
                "patterns": self.patterns_table,
            },
            "bucket": self.history_bucket,
            "prefix": self.history_prefix,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> AwsSection {
        AwsSection {
            history_bucket: "aiops-history-123".into(),
            ..AwsSection::default()
        }
    }

    #[test]
    fn defaults_need_only_a_bucket() {
        assert_eq!(
            AwsSection::default().validate().unwrap_err(),
            "history_bucket: is required in aws mode (the S3 bucket of the raw history)"
        );
        assert_eq!(valid().validate(), Ok(()));
    }

    #[test]
    fn metrics_settings_are_checked() {
        let reserved = AwsSection {
            metrics_namespace: Some("AWS/Kinesis".into()),
            ..valid()
        };
        assert_eq!(
            reserved.validate().unwrap_err(),
            "metrics_namespace: \"AWS/Kinesis\" is not a CloudWatch namespace (1-255 characters, not starting with AWS/)"
        );
        let slow = AwsSection {
            metrics_interval_secs: 3_601,
            ..valid()
        };
        assert_eq!(
            slow.validate().unwrap_err(),
            "metrics_interval_secs: 3601 is over 3600 (0 turns the metrics off)"
        );
        let off = AwsSection {
            metrics_namespace: Some("aiops/prod".into()),
            metrics_interval_secs: 0,
            ..valid()
        };
        assert_eq!(off.validate(), Ok(()));
    }

    #[test]
    fn names_are_checked() {
        let bad = AwsSection {
            raw_stream: "has space".into(),
            ..valid()
        };
        assert_eq!(
            bad.validate().unwrap_err(),
            "raw_stream: \"has space\" is not a Kinesis stream name (1-128 of [a-zA-Z0-9_.-])"
        );
        let same = AwsSection {
            events_stream: "aiops-raw".into(),
            ..valid()
        };
        assert!(
            same.validate()
                .unwrap_err()
                .contains("three different streams")
        );
        let bucket = AwsSection {
            history_bucket: "Upper".into(),
            ..valid()
        };
        assert!(
            bucket
                .validate()
                .unwrap_err()
                .starts_with("history_bucket:")
        );
        let table = AwsSection {
            leases_table: "x".into(),
            ..valid()
        };
        assert!(table.validate().unwrap_err().starts_with("leases_table:"));
        let consumer = AwsSection {
            consumer: ConsumerConfig {
                min_call_interval_ms: 100,
                ..ConsumerConfig::default()
            },
            ..valid()
        };
        assert_eq!(
            consumer.validate().unwrap_err(),
            "consumer.min_call_interval_ms: must be at least 200 (5 GetRecords calls per second per shard)"
        );
    }

    #[test]
    fn names_json_has_the_documented_shape() {
        let j = valid().names_json("aws");
        assert_eq!(j["mode"], "aws");
        assert_eq!(j["streams"]["raw"], "aiops-raw");
        assert_eq!(j["streams"]["events"], "aiops-events");
        assert_eq!(j["streams"]["decisions"], "aiops-decisions");
        assert_eq!(j["tables"]["incidents"], "aiops-incidents");
        assert_eq!(j["tables"]["leases"], "aiops-leases");
        assert_eq!(j["bucket"], "aiops-history-123");
        assert_eq!(j["prefix"], "aiops");
        assert_eq!(j["deployment_profile"], "scaled");
        // The single profile creates and reads no events or decisions stream.
        let single = AwsSection {
            deployment_profile: DeploymentProfile::Single,
            ..valid()
        };
        let j = single.names_json("aws");
        assert_eq!(j["deployment_profile"], "single");
        assert_eq!(j["streams"], serde_json::json!({"raw": "aiops-raw"}));
        assert_eq!(j["shards"], serde_json::json!({"raw": 2}));
    }
}
