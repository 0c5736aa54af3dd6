//! The built-in `simulate` source: realistic CloudTrail (EventBridge envelopes) and CloudWatch
//! Logs subscription traffic (gzip payloads), as the raw Kinesis records AWS would deliver,
//! with a diurnal rate, many principals, services and log groups, a few producer retries
//! (duplicates), and injected incidents in the first 20 seconds of wall-clock time.
//!
//! The generator is pure: [`Simulator::advance_to`] emits every record whose simulated event
//! time falls in the elapsed interval, so the same seed gives the same records.

use aiops_core::Position;
use aiops_core::time::{MICROS_PER_SEC, format_rfc3339_micros};
use flate2::Compression;
use flate2::write::GzEncoder;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::io::Write;

/// `[[sources]] type = "simulate"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimulateConfig {
    /// Random seed: the same seed gives the same traffic. Default 42.
    pub seed: u64,
    /// Simulated seconds per wall-clock second. Default 180 (an hour of traffic in 20 s, so
    /// the statistical detectors have a baseline before the bursts are injected).
    pub speedup: f64,
    /// Mean CloudTrail events per simulated second at the daily mean. Default 20.
    pub cloudtrail_per_sec: f64,
    /// Mean log lines per simulated second at the daily mean. Default 40.
    pub log_lines_per_sec: f64,
    /// Distinct principals. Default 2000.
    pub principals: usize,
    /// Distinct log groups. Default 120.
    pub log_groups: usize,
    /// Inject the incident scenario (deleted SSM parameter, terminated instance, deleted
    /// Lambda function, failed DeleteTable, autoscaling termination, a deploy of
    /// checkout-api, its error burst, AccessDenied burst). Default true.
    pub inject_incidents: bool,
    /// Fraction of records delivered twice (producer retries). Default 0.001.
    pub duplicate_fraction: f64,
    /// Stop after this many wall-clock seconds; 0 runs until stopped. Default 0.
    pub duration_secs: u64,
    /// Successful destructive calls (SSM DeleteParameter, EC2 TerminateInstances, Lambda
    /// DeleteFunction by a person, each on a resource of its own) per million CloudTrail
    /// events, beside the injected scenario. Default 0; `aiops bench` uses them to measure
    /// the latency from ingestion to change-rule finding.
    pub destructive_per_million: f64,
    /// Distinct log templates each log group draws from; 0 uses the built-in pool of a dozen
    /// service templates. `aiops bench` uses a few hundred, as real services have. Default 0.
    pub templates_per_group: usize,
}

impl Default for SimulateConfig {
    fn default() -> Self {
        SimulateConfig {
            seed: 42,
            speedup: 180.0,
            cloudtrail_per_sec: 20.0,
            log_lines_per_sec: 40.0,
            principals: 2000,
            log_groups: 120,
            inject_incidents: true,
            duplicate_fraction: 0.001,
            duration_secs: 0,
            destructive_per_million: 0.0,
            templates_per_group: 0,
        }
    }
}

impl SimulateConfig {
    /// Checks ranges.
    ///
    /// # Errors
    /// A message naming the field.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.speedup.is_finite() && self.speedup > 0.0 && self.speedup <= 100_000.0) {
            return Err(format!("speedup: {} is outside (0, 100000]", self.speedup));
        }
        for (name, v) in [
            ("cloudtrail_per_sec", self.cloudtrail_per_sec),
            ("log_lines_per_sec", self.log_lines_per_sec),
        ] {
            if !(v.is_finite() && (0.0..=10_000_000.0).contains(&v)) {
                return Err(format!("{name}: {v} is outside [0, 10000000]"));
            }
        }
        if self.principals == 0 || self.principals > 10_000_000 {
            return Err("principals: must be between 1 and 10000000".into());
        }
        if self.log_groups == 0 || self.log_groups > 1_000_000 {
            return Err("log_groups: must be between 1 and 1000000".into());
        }
        if !(self.destructive_per_million.is_finite()
            && (0.0..=1_000_000.0).contains(&self.destructive_per_million))
        {
            return Err(format!(
                "destructive_per_million: {} is outside [0, 1000000]",
                self.destructive_per_million
            ));
        }
        if self.templates_per_group > 100_000 {
            return Err("templates_per_group: must be at most 100000".into());
        }
        if !(0.0..=0.5).contains(&self.duplicate_fraction) {
            return Err(format!(
                "duplicate_fraction: {} is outside [0, 0.5]",
                self.duplicate_fraction
            ));
        }
        Ok(())
    }
}

/// One simulated Kinesis record: its data and position.
#[derive(Debug, Clone)]
pub struct SimRecord {
    /// The record's data, exactly as Kinesis would hold it.
    pub data: Vec<u8>,
    /// Stream `simulate`, shard `shardId-000000000000`, increasing sequence numbers.
    pub position: Position,
    /// Events in `data`: 1 for a CloudTrail record, the log events of a subscription
    /// payload, 0 for a control message.
    pub events: u32,
}

/// An injected incident: wall-clock offset from the start, seconds, and what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Injection {
    DeleteParameter,
    TerminateInstance,
    FailedDeleteTable,
    DeleteFunction,
    AutoscalingTerminate,
    DeployCheckoutApi,
    ErrorBurst,
    AccessDeniedBurst,
}

const INJECTIONS: [(f64, Injection); 8] = [
    (2.0, Injection::DeleteParameter),
    (4.0, Injection::TerminateInstance),
    (6.0, Injection::FailedDeleteTable),
    (8.0, Injection::DeleteFunction),
    (10.0, Injection::AutoscalingTerminate),
    // A deploy of checkout-api (a new task definition) six simulated minutes before its
    // ERROR burst: not destructive (no change rule), the burst incident's related change.
    (14.0, Injection::DeployCheckoutApi),
    (16.0, Injection::ErrorBurst),
    (18.0, Injection::AccessDeniedBurst),
];

/// The error-burst log group.
pub const BURST_LOG_GROUP: &str = "/ecs/checkout-api";

const SERVICES: [(&str, &[&str]); 8] = [
    (
        "ec2.amazonaws.com",
        &[
            "DescribeInstances",
            "DescribeVolumes",
            "DescribeSecurityGroups",
            "CreateTags",
        ],
    ),
    (
        "s3.amazonaws.com",
        &[
            "GetBucketAcl",
            "ListBuckets",
            "GetBucketLocation",
            "PutBucketTagging",
        ],
    ),
    ("iam.amazonaws.com", &["GetRole", "ListRoles", "GetPolicy"]),
    ("sts.amazonaws.com", &["AssumeRole", "GetCallerIdentity"]),
    (
        "lambda.amazonaws.com",
        &["GetFunction", "ListFunctions20150331", "Invoke"],
    ),
    (
        "dynamodb.amazonaws.com",
        &["DescribeTable", "ListTables", "UpdateTimeToLive"],
    ),
    (
        "ssm.amazonaws.com",
        &["GetParameter", "GetParameters", "DescribeParameters"],
    ),
    (
        "kms.amazonaws.com",
        &["Decrypt", "GenerateDataKey", "DescribeKey"],
    ),
];

const TEMPLATES: [&str; 12] = [
    "INFO Request {uuid} completed in {n} ms",
    "INFO GET /api/v1/items/{n} 200 {n}ms",
    "INFO POST /api/v1/orders 201 {n}ms user={n}",
    "DEBUG cache hit key=item:{n} ttl={n}",
    "INFO Processed batch of {n} messages from queue {word}",
    "WARN Retrying connection to {ip}:5432 attempt {n}",
    "INFO Health check passed in {n} ms",
    "INFO Started task {hex} on instance i-{hex}",
    "DEBUG Loaded config version {n}",
    "INFO Published event {uuid} to topic {word}",
    "WARN Slow query took {n} ms: SELECT * FROM orders WHERE id = {n}",
    "ERROR Failed to process message {hex}: timeout after {n} ms",
];

const REGIONS: [&str; 3] = ["us-east-1", "eu-west-1", "us-west-2"];
const ACCOUNT: &str = "123456789012";

/// The traffic generator.
pub struct Simulator {
    config: SimulateConfig,
    rng: StdRng,
    start: i64,
    now: i64,
    seq: u64,
    ct_carry: f64,
    log_carry: f64,
    injected: usize,
    burst_left: u32,
    /// Simulated time the error burst starts (its first line).
    burst_start: i64,
    denied_left: u32,
    /// Simulated time the AccessDenied burst starts.
    denied_start: i64,
    last_dup: Option<SimRecord>,
    sent_control: bool,
    /// Procedural template pool (`templates_per_group` > 0): four times the per-group count;
    /// group `g` draws from a window of it starting at `g * templates_per_group / 2`.
    templates: Vec<String>,
    /// Destructive calls generated so far (each names a resource of its own).
    destructive: u64,
}

impl Simulator {
    /// A generator whose simulated clock starts at `start` (microseconds since the epoch,
    /// UTC).
    pub fn new(config: SimulateConfig, start: i64) -> Simulator {
        let rng = StdRng::seed_from_u64(config.seed);
        let templates = (0..config.templates_per_group.saturating_mul(4))
            .map(procedural_template)
            .collect();
        Simulator {
            config,
            rng,
            start,
            now: start,
            seq: 0,
            ct_carry: 0.0,
            log_carry: 0.0,
            injected: 0,
            burst_left: 0,
            burst_start: 0,
            denied_left: 0,
            denied_start: 0,
            last_dup: None,
            sent_control: false,
            templates,
            destructive: 0,
        }
    }

    /// The simulated time at `wall_elapsed_secs` seconds after the start.
    pub fn sim_time_at(&self, wall_elapsed_secs: f64) -> i64 {
        self.start + (wall_elapsed_secs * self.config.speedup * MICROS_PER_SEC as f64) as i64
    }

    fn position(&mut self) -> Position {
        self.seq += 1;
        Position {
            stream: "simulate".to_string(),
            shard_id: "shardId-000000000000".to_string(),
            sequence_number: format!("{:020}", self.seq),
            sub_sequence_number: None,
        }
    }

    fn diurnal(&self, t: i64) -> f64 {
        let hour =
            (t.rem_euclid(86_400 * MICROS_PER_SEC)) as f64 / (3600.0 * MICROS_PER_SEC as f64);
        1.0 + 0.5 * ((hour - 8.0) / 24.0 * std::f64::consts::TAU).sin()
    }

    /// Emits every record with a simulated event time in `(previous time, until]`.
    pub fn advance_to(&mut self, until: i64, out: &mut Vec<SimRecord>) {
        if until <= self.now {
            return;
        }
        if !self.sent_control {
            self.sent_control = true;
            let data = gzip(&json!({
                "messageType": "CONTROL_MESSAGE",
                "owner": "CloudwatchLogs",
                "logGroup": "",
                "logStream": "",
                "subscriptionFilters": [],
                "logEvents": [{"id": "", "timestamp": self.now / 1000, "message": "CWL CONTROL MESSAGE: Checking health of destination Kinesis stream."}]
            }));
            let position = self.position();
            out.push(SimRecord {
                data,
                position,
                events: 0,
            });
        }
        // Work in steps of at most one simulated second so rates follow the diurnal curve.
        while self.now < until {
            let step_end = (self.now + MICROS_PER_SEC).min(until);
            let dt = (step_end - self.now) as f64 / MICROS_PER_SEC as f64;
            let m = self.diurnal(step_end);
            self.ct_carry += self.config.cloudtrail_per_sec * m * dt;
            self.log_carry += self.config.log_lines_per_sec * m * dt;
            let n_ct = self.ct_carry.floor();
            self.ct_carry -= n_ct;
            let n_log = self.log_carry.floor();
            self.log_carry -= n_log;
            let destructive_p = self.config.destructive_per_million / 1_000_000.0;
            for _ in 0..n_ct as u64 {
                let t = self.rng.random_range(self.now..step_end.max(self.now + 1));
                let rec = if destructive_p > 0.0 && self.rng.random::<f64>() < destructive_p {
                    self.destructive_record(t)
                } else {
                    self.cloudtrail_record(t)
                };
                self.emit(rec, 1, out);
            }
            if n_log >= 1.0 {
                self.log_batches(n_log as usize, self.now, step_end, out);
            }
            // The checkout service fails now and then (about one error every two simulated
            // minutes), so its error series has a quiet baseline before the burst.
            if self.config.inject_incidents && self.rng.random::<f64>() < dt / 120.0 {
                let m = self.fill("ERROR Payment gateway call failed: connection reset by peer after {n} ms (order {n})");
                let data =
                    self.subscription_payload(BURST_LOG_GROUP, "stream-0", &[(step_end - 1, m)]);
                self.emit(data, 1, out);
            }
            self.injections(step_end, out);
            self.now = step_end;
        }
    }

    fn emit(&mut self, data: Vec<u8>, events: u32, out: &mut Vec<SimRecord>) {
        let position = self.position();
        let rec = SimRecord {
            data,
            position,
            events,
        };
        if self.rng.random::<f64>() < self.config.duplicate_fraction {
            self.last_dup = Some(rec.clone());
        }
        out.push(rec);
        if let Some(d) = self.last_dup.take() {
            // A producer retry: the same data again under a new sequence number.
            let position = self.position();
            out.push(SimRecord {
                data: d.data,
                position,
                events: d.events,
            });
        }
    }

    fn uuid(&mut self) -> String {
        let a: u128 = self.rng.random();
        let s = format!("{a:032x}");
        format!(
            "{}-{}-{}-{}-{}",
            &s[0..8],
            &s[8..12],
            &s[12..16],
            &s[16..20],
            &s[20..32]
        )
    }

    /// A principal, its user agent and index. Activity is skewed (a few principals make most
    /// calls): index = floor(n * u^3) for uniform u.
    fn principal(&mut self) -> (serde_json::Value, String, usize) {
        let u: f64 = self.rng.random();
        let i = ((self.config.principals as f64) * u * u * u) as usize % self.config.principals;
        if i.is_multiple_of(3) {
            let user = format!("user-{i:05}");
            (
                json!({"type": "IAMUser", "principalId": format!("AIDA{i:016}"), "arn": format!("arn:aws:iam::{ACCOUNT}:user/{user}"), "accountId": ACCOUNT, "userName": user}),
                "aws-cli/2.15.0 Python/3.11".to_string(),
                i,
            )
        } else {
            let role = format!("app-role-{:04}", i % 500);
            let session = format!("session-{i}");
            (
                json!({"type": "AssumedRole", "principalId": format!("AROA{i:016}:{session}"), "arn": format!("arn:aws:sts::{ACCOUNT}:assumed-role/{role}/{session}"), "accountId": ACCOUNT,
                       "sessionContext": {"sessionIssuer": {"type": "Role", "principalId": format!("AROA{i:016}"), "arn": format!("arn:aws:iam::{ACCOUNT}:role/{role}"), "accountId": ACCOUNT, "userName": role},
                                          "attributes": {"creationDate": "2024-01-01T00:00:00Z", "mfaAuthenticated": "false"}}}),
                "aws-sdk-java/2.20.0".to_string(),
                i,
            )
        }
    }

    fn envelope(&mut self, t: i64, detail: serde_json::Value, region: &str) -> Vec<u8> {
        let source = detail
            .get("eventSource")
            .and_then(|v| v.as_str())
            .and_then(|s| s.strip_suffix(".amazonaws.com"))
            .unwrap_or("unknown")
            .to_string();
        let id = self.uuid();
        let v = json!({
            "version": "0",
            "id": id,
            "detail-type": "AWS API Call via CloudTrail",
            "source": format!("aws.{source}"),
            "account": ACCOUNT,
            "time": format_rfc3339_seconds(t),
            "region": region,
            "resources": [],
            "detail": detail,
        });
        serde_json::to_vec(&v).unwrap_or_default()
    }

    #[allow(clippy::too_many_arguments)]
    fn record(
        &mut self,
        t: i64,
        source: &str,
        name: &str,
        identity: serde_json::Value,
        agent: &str,
        params: serde_json::Value,
        error: Option<&str>,
        read_only: bool,
        ip: &str,
    ) -> Vec<u8> {
        let region = REGIONS[self.rng.random_range(0..REGIONS.len())];
        let mut detail = json!({
            "eventVersion": "1.09",
            "userIdentity": identity,
            "eventTime": format_rfc3339_seconds(t),
            "eventSource": source,
            "eventName": name,
            "awsRegion": region,
            "sourceIPAddress": ip,
            "userAgent": agent,
            "requestParameters": params,
            "responseElements": null,
            "requestID": self.uuid(),
            "eventID": self.uuid(),
            "readOnly": read_only,
            "eventType": "AwsApiCall",
            "managementEvent": true,
            "recipientAccountId": ACCOUNT,
            "eventCategory": "Management",
        });
        if let (Some(code), Some(obj)) = (error, detail.as_object_mut()) {
            obj.insert("errorCode".into(), json!(code));
            obj.insert("errorMessage".into(), json!(format!("{code}: simulated")));
        }
        self.envelope(t, detail, region)
    }

    fn cloudtrail_record(&mut self, t: i64) -> Vec<u8> {
        let (identity, agent, i) = self.principal();
        // Each principal works with one service and calls two of its APIs, as applications do.
        let (source, names) = SERVICES[i % SERVICES.len()];
        let name = names[(i / SERVICES.len() + self.rng.random_range(0..2)) % names.len()];
        let read_only = name.starts_with("Describe")
            || name.starts_with("Get")
            || name.starts_with("List")
            || name == "Decrypt";
        let error = if self.rng.random::<f64>() < 0.01 {
            Some("AccessDenied")
        } else {
            None
        };
        let params = json!({"maxResults": self.rng.random_range(1..100)});
        let ip = format!(
            "10.{}.{}.{}",
            self.rng.random_range(0..255),
            self.rng.random_range(0..255),
            self.rng.random_range(1..255)
        );
        self.record(
            t, source, name, identity, &agent, params, error, read_only, &ip,
        )
    }

    /// A successful destructive call by a person on a resource of its own (so each opens an
    /// incident of its own).
    fn destructive_record(&mut self, t: i64) -> Vec<u8> {
        self.destructive += 1;
        let n = self.destructive;
        let alice = alice_identity();
        let (source, name, params) = match n % 3 {
            0 => (
                "ssm.amazonaws.com",
                "DeleteParameter",
                json!({"name": format!("/bench/app-{n}/db-password")}),
            ),
            1 => (
                "ec2.amazonaws.com",
                "TerminateInstances",
                json!({"instancesSet": {"items": [{"instanceId": format!("i-{n:017x}")}]}}),
            ),
            _ => (
                "lambda.amazonaws.com",
                "DeleteFunction20150331",
                json!({"functionName": format!("bench-worker-{n}")}),
            ),
        };
        self.record(
            t,
            source,
            name,
            alice,
            "aws-cli/2.15.0",
            params,
            None,
            false,
            "203.0.113.10",
        )
    }

    fn fill(&mut self, template: &str) -> String {
        let mut out = String::with_capacity(template.len() + 32);
        let mut rest = template;
        while let Some(start) = rest.find('{') {
            out.push_str(&rest[..start]);
            let Some(end) = rest[start..].find('}') else {
                break;
            };
            match &rest[start + 1..start + end] {
                "uuid" => out.push_str(&self.uuid()),
                "n" => out.push_str(&self.rng.random_range(1..5000).to_string()),
                "hex" => out.push_str(&format!(
                    "{:012x}",
                    self.rng.random::<u64>() & 0xffff_ffff_ffff
                )),
                "ip" => out.push_str(&format!(
                    "10.0.{}.{}",
                    self.rng.random_range(0..255),
                    self.rng.random_range(1..255)
                )),
                "word" => out.push_str(
                    ["orders", "payments", "events", "audit"][self.rng.random_range(0..4)],
                ),
                other => out.push_str(other),
            }
            rest = &rest[start + end + 1..];
        }
        out.push_str(rest);
        out
    }

    fn log_group_name(&self, i: usize) -> String {
        if i == 0 {
            BURST_LOG_GROUP.to_string()
        } else if i.is_multiple_of(2) {
            format!("/aws/lambda/service-{i:03}")
        } else {
            format!("/ecs/app-{i:03}")
        }
    }

    fn log_batches(&mut self, n: usize, from: i64, to: i64, out: &mut Vec<SimRecord>) {
        // Group lines into subscription payloads of up to 8 events per log group.
        let mut remaining = n;
        while remaining > 0 {
            let group = self.rng.random_range(0..self.config.log_groups);
            let take = remaining.min(self.rng.random_range(1..=8usize));
            remaining -= take;
            let mut events = Vec::with_capacity(take);
            for _ in 0..take {
                let t = self.rng.random_range(from..to.max(from + 1));
                if !self.templates.is_empty() {
                    // Skewed use of the group's templates (a few are most of the volume).
                    let n = self.config.templates_per_group;
                    let u: f64 = self.rng.random();
                    let k = ((n as f64) * u * u) as usize % n;
                    let i = (group * n / 2 + k) % self.templates.len();
                    let template = self.templates.get(i).cloned().unwrap_or_default();
                    let message = self.fill(&template);
                    events.push((t, message));
                    continue;
                }
                // Templates per group: a group uses a window of the pool; errors are rare.
                let k = if self.rng.random::<f64>() < 0.002 {
                    TEMPLATES.len() - 1
                } else {
                    (group + self.rng.random_range(0..6)) % (TEMPLATES.len() - 1)
                };
                let message = self.fill(TEMPLATES[k]);
                events.push((t, message));
            }
            let stream = format!("stream-{}", group % 7);
            let name = self.log_group_name(group);
            let data = self.subscription_payload(&name, &stream, &events);
            self.emit(data, events.len() as u32, out);
        }
    }

    fn subscription_payload(
        &mut self,
        group: &str,
        stream: &str,
        events: &[(i64, String)],
    ) -> Vec<u8> {
        let log_events: Vec<serde_json::Value> = events
            .iter()
            .map(|(t, m)| {
                let id = format!(
                    "{:056}",
                    self.rng.random::<u64>() as u128 * 1_000_003 + (*t as u128)
                );
                json!({"id": id, "timestamp": t / 1000, "message": m})
            })
            .collect();
        gzip(&json!({
            "messageType": "DATA_MESSAGE",
            "owner": ACCOUNT,
            "logGroup": group,
            "logStream": stream,
            "subscriptionFilters": ["aiops"],
            "logEvents": log_events,
        }))
    }

    fn injections(&mut self, until: i64, out: &mut Vec<SimRecord>) {
        if !self.config.inject_incidents {
            return;
        }
        while self.injected < INJECTIONS.len() {
            let (wall, what) = INJECTIONS[self.injected];
            let at = self.sim_time_at(wall);
            if at > until {
                break;
            }
            self.injected += 1;
            self.inject(what, at, out);
        }
        // Bursts run on the simulated clock, not per tick: line k of N is due at
        // start + k * BURST_SPAN / N, so a slow or loaded machine (longer ticks) emits the same
        // event times as a fast one.
        let due = burst_due(self.burst_start, BURST_LINES, self.burst_left, until);
        for chunk in due.chunks(10) {
            let events: Vec<(i64, String)> = chunk
                .iter()
                .map(|&t| {
                    let m = self.fill("ERROR Payment gateway call failed: connection reset by peer after {n} ms (order {n})");
                    (t, m)
                })
                .collect();
            let data = self.subscription_payload(BURST_LOG_GROUP, "stream-burst", &events);
            self.emit(data, events.len() as u32, out);
        }
        self.burst_left -= due.len() as u32;
        let due = burst_due(self.denied_start, DENIED_CALLS, self.denied_left, until);
        for &t in &due {
            let identity = json!({"type": "IAMUser", "principalId": "AIDAEXFILTRATOR0001", "arn": format!("arn:aws:iam::{ACCOUNT}:user/mallory"), "accountId": ACCOUNT, "userName": "mallory"});
            let secret = format!("prod/secret-{}", self.rng.random_range(0..50));
            let rec = self.record(
                t,
                "secretsmanager.amazonaws.com",
                "GetSecretValue",
                identity,
                "aws-cli/2.15.0",
                json!({"secretId": secret}),
                Some("AccessDenied"),
                true,
                "198.51.100.77",
            );
            self.emit(rec, 1, out);
        }
        self.denied_left -= due.len() as u32;
    }

    fn inject(&mut self, what: Injection, t: i64, out: &mut Vec<SimRecord>) {
        let alice = alice_identity();
        let ops = json!({"type": "AssumedRole", "principalId": "AROAOPS:bob", "arn": format!("arn:aws:sts::{ACCOUNT}:assumed-role/ops-admin/bob"), "accountId": ACCOUNT,
                         "sessionContext": {"sessionIssuer": {"type": "Role", "arn": format!("arn:aws:iam::{ACCOUNT}:role/ops-admin"), "accountId": ACCOUNT, "userName": "ops-admin"}}});
        let rec = match what {
            Injection::DeleteParameter => self.record(
                t,
                "ssm.amazonaws.com",
                "DeleteParameter",
                alice,
                "aws-cli/2.15.0",
                json!({"name": "/prod/payments/db-password"}),
                None,
                false,
                "203.0.113.10",
            ),
            Injection::TerminateInstance => self.record(
                t,
                "ec2.amazonaws.com",
                "TerminateInstances",
                ops,
                "console.amazonaws.com",
                json!({"instancesSet": {"items": [{"instanceId": "i-0a1b2c3d4e5f60718"}]}}),
                None,
                false,
                "203.0.113.11",
            ),
            Injection::FailedDeleteTable => self.record(
                t,
                "dynamodb.amazonaws.com",
                "DeleteTable",
                alice,
                "aws-cli/2.15.0",
                json!({"tableName": "orders"}),
                Some("ResourceInUseException"),
                false,
                "203.0.113.10",
            ),
            Injection::DeleteFunction => self.record(
                t,
                "lambda.amazonaws.com",
                "DeleteFunction20150331",
                ops,
                "aws-sdk-go/1.44",
                json!({"functionName": "billing-worker"}),
                None,
                false,
                "203.0.113.11",
            ),
            Injection::AutoscalingTerminate => {
                let asg = json!({"type": "AssumedRole", "principalId": "AROAASG:AutoScaling", "arn": format!("arn:aws:sts::{ACCOUNT}:assumed-role/AWSServiceRoleForAutoScaling/AutoScaling"), "accountId": ACCOUNT, "invokedBy": "autoscaling.amazonaws.com",
                                 "sessionContext": {"sessionIssuer": {"type": "Role", "arn": format!("arn:aws:iam::{ACCOUNT}:role/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling"), "accountId": ACCOUNT}}});
                self.record(
                    t,
                    "ec2.amazonaws.com",
                    "TerminateInstances",
                    asg,
                    "autoscaling.amazonaws.com",
                    json!({"instancesSet": {"items": [{"instanceId": "i-0fedcba9876543210"}]}}),
                    None,
                    false,
                    "autoscaling.amazonaws.com",
                )
            }
            Injection::DeployCheckoutApi => {
                let deployer = json!({"type": "AssumedRole", "principalId": "AROADEPLOY:gha-run-8812", "arn": format!("arn:aws:sts::{ACCOUNT}:assumed-role/github-actions-deploy/gha-run-8812"), "accountId": ACCOUNT,
                                      "sessionContext": {"sessionIssuer": {"type": "Role", "arn": format!("arn:aws:iam::{ACCOUNT}:role/github-actions-deploy"), "accountId": ACCOUNT, "userName": "github-actions-deploy"}}});
                self.record(
                    t,
                    "ecs.amazonaws.com",
                    "UpdateService",
                    deployer,
                    "aws-sdk-go-v2/1.24.0",
                    json!({"cluster": "prod", "service": "checkout-api", "taskDefinition": "checkout-api:42"}),
                    None,
                    false,
                    "192.0.2.44",
                )
            }
            Injection::ErrorBurst => {
                self.burst_start = next_minute(t);
                self.burst_left = BURST_LINES;
                return;
            }
            Injection::AccessDeniedBurst => {
                self.denied_start = next_minute(t);
                self.denied_left = DENIED_CALLS;
                return;
            }
        };
        self.emit(rec, 1, out);
    }
}

/// Lines of the injected error burst.
const BURST_LINES: u32 = 400;
/// Calls of the injected AccessDenied burst.
const DENIED_CALLS: u32 = 120;
/// Simulated time a burst lasts, microseconds (20 s: inside one default 60 s window).
const BURST_SPAN_US: i64 = 20 * MICROS_PER_SEC;

/// The start of the simulated minute after `t` (microseconds): bursts start on a minute
/// boundary, so the demo's bursts fall in one 60 s window whatever the clock's start.
fn next_minute(t: i64) -> i64 {
    let minute = 60 * MICROS_PER_SEC;
    (t.div_euclid(minute) + 1) * minute
}

/// Event times of a burst of `total` items starting at `start` (spread evenly over
/// [`BURST_SPAN_US`]) that are due by `until`, given `left` of them not yet emitted.
fn burst_due(start: i64, total: u32, left: u32, until: i64) -> Vec<i64> {
    let done = total.saturating_sub(left);
    (done..total)
        .map(|k| start + i64::from(k) * BURST_SPAN_US / i64::from(total.max(1)))
        .take_while(|&t| t <= until)
        .collect()
}

/// The `userIdentity` of alice, the IAM user who makes the destructive calls.
fn alice_identity() -> serde_json::Value {
    json!({"type": "IAMUser", "principalId": "AIDAALICE0000000001", "arn": format!("arn:aws:iam::{ACCOUNT}:user/alice"), "accountId": ACCOUNT, "userName": "alice"})
}

/// Template `k` of the procedural pool: a level, four words chosen by independent hashes of
/// `k` (so two templates rarely share more than two of them) and parameters in between.
fn procedural_template(k: usize) -> String {
    const WORDS: [&str; 48] = [
        "cache",
        "order",
        "payment",
        "session",
        "token",
        "queue",
        "worker",
        "shard",
        "lease",
        "index",
        "upload",
        "invoice",
        "profile",
        "cart",
        "search",
        "report",
        "ledger",
        "quota",
        "export",
        "import",
        "webhook",
        "schema",
        "replica",
        "snapshot",
        "bucket",
        "stream",
        "cursor",
        "batch",
        "tenant",
        "config",
        "metric",
        "alert",
        "refund",
        "catalog",
        "price",
        "coupon",
        "shipment",
        "address",
        "inventory",
        "review",
        "rating",
        "message",
        "channel",
        "thread",
        "ticket",
        "budget",
        "account",
        "policy",
    ];
    const VERBS: [&str; 16] = [
        "loaded",
        "saved",
        "evicted",
        "refreshed",
        "rejected",
        "accepted",
        "scheduled",
        "expired",
        "merged",
        "split",
        "opened",
        "closed",
        "synced",
        "queued",
        "dropped",
        "retried",
    ];
    let h = |salt: u64| -> usize {
        let x = (k as u64)
            .wrapping_add(salt)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15);
        ((x ^ (x >> 29)).wrapping_mul(0xbf58_476d_1ce4_e5b9) >> 32) as usize
    };
    let level = match k % 10 {
        0 => "WARN",
        1 | 2 => "DEBUG",
        _ => "INFO",
    };
    let w = |salt: u64| WORDS[h(salt) % WORDS.len()];
    let v = VERBS[h(7) % VERBS.len()];
    match k % 4 {
        0 => format!(
            "{level} {} {v} id={{n}} in {{n}} ms {} {}",
            w(1),
            w(2),
            w(3)
        ),
        1 => format!(
            "{level} {} {} {v} for {{uuid}} {} size={{n}}",
            w(1),
            w(2),
            w(3)
        ),
        2 => format!(
            "{level} {} {v} {} from {{ip}} {} attempt {{n}} {}",
            w(1),
            w(2),
            w(3),
            w(4)
        ),
        _ => format!(
            "{level} {} {v} key={} {{hex}} {} after {{n}} ms",
            w(1),
            w(2),
            w(3)
        ),
    }
}

fn format_rfc3339_seconds(t: i64) -> String {
    let s = format_rfc3339_micros(t - t.rem_euclid(MICROS_PER_SEC));
    // 2024-01-01T00:00:00.000000Z -> 2024-01-01T00:00:00Z, as CloudTrail writes it.
    format!("{}Z", &s[..19])
}

fn gzip(v: &serde_json::Value) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
    let _ = enc.write_all(&serde_json::to_vec(v).unwrap_or_default());
    enc.finish().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Event times (seconds) of mallory's AccessDenied calls generated up to 20 wall seconds
    /// in ticks of `tick_secs` simulated seconds.
    fn denied_times(tick_secs: i64) -> Vec<i64> {
        let cfg = SimulateConfig {
            cloudtrail_per_sec: 0.5,
            log_lines_per_sec: 0.5,
            ..SimulateConfig::default()
        };
        let mut sim = Simulator::new(cfg, 1_700_000_012_345_678);
        let end = sim.sim_time_at(20.0);
        let mut out = Vec::new();
        let mut t = sim.start;
        while t < end {
            t = (t + tick_secs * MICROS_PER_SEC).min(end);
            sim.advance_to(t, &mut out);
        }
        let mut times: Vec<i64> = out
            .iter()
            .filter_map(|r| serde_json::from_slice::<serde_json::Value>(&r.data).ok())
            .filter(|v| v["detail"]["userIdentity"]["userName"] == "mallory")
            .filter_map(|v| {
                v["detail"]["eventTime"]
                    .as_str()
                    .and_then(|t| aiops_core::time::parse_timestamp_micros(t).ok())
            })
            .map(|t| t / MICROS_PER_SEC)
            .collect();
        times.sort_unstable();
        times
    }

    #[test]
    fn a_burst_has_the_same_event_times_on_a_slow_machine_and_fits_one_minute() {
        // A fast machine ticks every simulated second; a loaded one every 3 simulated minutes.
        let fast = denied_times(1);
        let slow = denied_times(180);
        assert_eq!(fast.len(), 120);
        assert_eq!(fast, slow);
        // All 120 in one minute, starting on its boundary.
        assert_eq!(fast[0] % 60, 0);
        assert_eq!(fast[0] / 60, fast[119] / 60);
    }

    #[test]
    fn injections_all_happen_within_twenty_wall_seconds() {
        let cfg = SimulateConfig::default();
        let mut sim = Simulator::new(cfg, 1_700_000_000_000_000);
        let mut out = Vec::new();
        let until = sim.sim_time_at(20.0);
        sim.advance_to(until, &mut out);
        let text: Vec<String> = out
            .iter()
            .map(|r| String::from_utf8_lossy(&r.data).into_owned())
            .collect();
        for name in [
            "\"DeleteParameter\"",
            "\"UpdateService\"",
            "\"DeleteFunction20150331\"",
            "\"GetSecretValue\"",
        ] {
            assert!(text.iter().any(|t| t.contains(name)), "{name} not injected");
        }
        assert_eq!(
            text.iter()
                .filter(|t| t.contains("\"TerminateInstances\""))
                .count(),
            2
        );
        assert_eq!(sim.burst_left, 0);
        // Roughly 20 s * 120 * 20 CloudTrail events per simulated second, +-50% diurnal.
        let ct = text.iter().filter(|t| t.contains("detail-type")).count();
        assert!(ct > 24_000 && ct < 73_000, "{ct}");
    }

    #[test]
    fn same_seed_same_traffic() {
        let mut a = Simulator::new(SimulateConfig::default(), 0);
        let mut b = Simulator::new(SimulateConfig::default(), 0);
        let (mut oa, mut ob) = (Vec::new(), Vec::new());
        a.advance_to(60 * MICROS_PER_SEC, &mut oa);
        b.advance_to(60 * MICROS_PER_SEC, &mut ob);
        assert_eq!(oa.len(), ob.len());
        assert!(oa.iter().zip(&ob).all(|(x, y)| x.data == y.data));
    }
}
