//! Change rules (DESIGN §4, first bullet): successful, mutating CloudTrail calls that destroy,
//! stop or weaken a watched resource produce a finding at once, with no window.
//!
//! The rule set is data: [`ChangeRulesConfig`] in `pipeline.toml` (`[detect.change_rules]`),
//! on top of the built-in defaults in `detect/rules/default.toml`. Each rule names the
//! CloudTrail `eventSource` and `eventName`s it matches, the resource type, where to take the
//! resource id from the record (paths into `requestParameters` / `responseElements`, then the
//! record's `resources` array), optional conditions, and the default recovery action.
//!
//! Never a finding: failed calls (`errorCode` set and non-empty), read-only calls, calls made
//! by AWS services on the customer's behalf (`userIdentity.type = AWSService`, an
//! `invokedBy` service, a service `sourceIPAddress` such as `autoscaling.amazonaws.com`, or a
//! service-linked role), and calls by principals listed in `ignore_principals` (the agent's own
//! recovery role).
//!
//! Detection apart from action: a call that an orchestrating service (`orchestrating_services`,
//! by default CloudFormation and Service Catalog) made on behalf of a person (an IAM user, an
//! assumed role that is not a service-linked role, root, a federated user: any identity whose
//! `userIdentity.type` is not `AWSService`) still produces its finding, marked not recoverable
//! (`recoverable = false`, the reason in the summary after [`NOT_RECOVERED_MARK`]): routing a
//! defence-evasion call through a stack must not hide it, and recovering it would fight the
//! stack, so the incident goes to a person.

use aiops_core::time::now_micros;
use aiops_core::{
    CloudTrailFields, Event, Evidence, Finding, FindingKind, Priority, ResourceKey, stable_hash,
};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use thiserror::Error;

/// The built-in rule set, TOML with one `[[rules]]` table per rule.
pub const DEFAULT_RULES_TOML: &str = include_str!("../rules/default.toml");

/// Put in a finding's summary before the reason it is not recovered automatically.
pub const NOT_RECOVERED_MARK: &str = "not recovered automatically: ";

/// Orchestrating services whose calls on behalf of a person are detected but not recovered
/// (the default of [`ChangeRulesConfig::orchestrating_services`]).
pub const DEFAULT_ORCHESTRATING_SERVICES: [&str; 2] = [
    "cloudformation.amazonaws.com",
    "servicecatalog.amazonaws.com",
];

/// Largest request-parameters text kept as evidence, in bytes.
const MAX_EVIDENCE_BYTES: usize = 4096;

/// A condition on the record: the value at `path` must equal `equals`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleCondition {
    /// A path such as `requestParameters.deletionProtection` (see [`ChangeRule::resource_id_paths`]).
    pub path: String,
    /// The JSON value the path must hold (TOML strings, booleans and numbers).
    pub equals: serde_json::Value,
}

/// One change rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeRule {
    /// Unique rule name, e.g. `ssm_delete_parameter`.
    pub name: String,
    /// CloudTrail `eventSource`, e.g. `ssm.amazonaws.com`.
    pub event_source: String,
    /// CloudTrail `eventName`s. Lambda's API version suffix (`DeleteFunction20150331`,
    /// `UpdateFunctionCode20150331v2`) is ignored when matching.
    pub event_names: Vec<String>,
    /// Resource type name, e.g. `ssm_parameter`; also the key of the action allowlist and of
    /// the Terraform target template.
    pub resource_type: String,
    /// Where the resource id is, tried in order; the first path that yields values wins. A
    /// path is dot-separated keys from the record root (`requestParameters.name`), where `[*]`
    /// after a key walks every element of an array (a single object counts as a one-element
    /// array). Values that are ARNs are reduced to their last `/` or `:` segment. When no path
    /// yields a value, the ids of the record's `resources` are used.
    pub resource_id_paths: Vec<String>,
    /// Extra conditions, all of which must hold.
    #[serde(default)]
    pub conditions: Vec<RuleCondition>,
    /// The default recovery action, e.g. `restore`, `start`, `recreate`.
    pub action: String,
    /// Why the call matters: `destructive` or `defence_evasion`.
    #[serde(default = "default_category")]
    pub category: String,
    /// Severity 1..=10 used by the statistical explainer. Default 7.
    #[serde(default = "default_severity")]
    pub severity: u8,
    /// When set, the call is detected and never recovered automatically: a Terraform apply
    /// of the resource's target cannot undo it. The text says what a person does instead;
    /// `{id}` is replaced by the resource id. It ends the finding's summary after
    /// `not recovered automatically: ` and so the incident's MANUAL_REVIEW outcome. Example:
    /// KMS `ScheduleKeyDeletion`, whose key reads as deleted to Terraform while it is pending
    /// deletion, so an apply would create a new key that cannot decrypt what the old one
    /// encrypted; the undo is `CancelKeyDeletion` then `EnableKey` (AWS KMS developer guide,
    /// "Deleting AWS KMS keys": a key pending deletion can be recovered only by cancelling the
    /// deletion, after which it is disabled). Default none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manual_recovery: Option<String>,
}

fn default_category() -> String {
    "destructive".to_string()
}
fn default_severity() -> u8 {
    7
}

/// `[detect.change_rules]` in `pipeline.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChangeRulesConfig {
    /// Evaluate change rules at all. Default true.
    pub enabled: bool,
    /// Start from the built-in rules ([`DEFAULT_RULES_TOML`]). Default true.
    pub use_default_rules: bool,
    /// Extra rules; a rule with the name of a built-in one replaces it.
    pub rules: Vec<ChangeRule>,
    /// Names of rules to switch off.
    pub disabled_rules: Vec<String>,
    /// Principal ARNs (or session issuer ARNs) whose calls never produce a finding, with `*`
    /// as a wildcard, e.g. the agent's own recovery role `arn:aws:iam::*:role/aiops-recovery`.
    pub ignore_principals: Vec<String>,
    /// Ignore calls made by AWS services on the customer's behalf. Default true.
    pub ignore_aws_service_calls: bool,
    /// Services that run a person's template or product (`invokedBy` or `sourceIPAddress`):
    /// their calls on behalf of a person still produce a finding, marked not recoverable.
    /// Default [`DEFAULT_ORCHESTRATING_SERVICES`].
    pub orchestrating_services: Vec<String>,
}

impl Default for ChangeRulesConfig {
    fn default() -> Self {
        ChangeRulesConfig {
            enabled: true,
            use_default_rules: true,
            rules: Vec::new(),
            disabled_rules: Vec::new(),
            ignore_principals: vec!["arn:aws:iam::*:role/aiops-recovery*".to_string()],
            ignore_aws_service_calls: true,
            orchestrating_services: DEFAULT_ORCHESTRATING_SERVICES
                .iter()
                .map(|s| s.to_string())
                .collect(),
        }
    }
}

/// An invalid rule set.
#[derive(Debug, Error, PartialEq)]
pub enum RuleError {
    /// The built-in or a given rules file is not valid TOML of the expected shape.
    #[error("change rules: cannot parse rule set: {0}")]
    Parse(String),
    /// A rule field is empty or out of range.
    #[error("change rule {rule:?}: {reason}")]
    Invalid {
        /// Rule name.
        rule: String,
        /// What is wrong.
        reason: String,
    },
    /// Two rules share a name.
    #[error("change rules: duplicate rule name {0:?}")]
    Duplicate(String),
    /// `disabled_rules` names a rule that does not exist.
    #[error("change rules: disabled_rules names unknown rule {0:?}")]
    UnknownDisabled(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    rules: Vec<ChangeRule>,
}

/// Why a CloudTrail event did not produce a finding (or that it did).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleVerdict {
    /// Not a CloudTrail event, or no rule names its source and event name.
    NoRule,
    /// A rule matched but the call failed (`errorCode` set).
    FailedCall,
    /// A rule matched but the call was read-only.
    ReadOnly,
    /// A rule matched but an AWS service made the call on the customer's behalf.
    AwsService,
    /// A rule matched but the caller is in `ignore_principals`.
    IgnoredPrincipal,
    /// A rule matched but its conditions did not hold.
    ConditionFalse,
    /// One finding per resource was produced.
    Finding,
    /// A CloudTrail Insights record (AWS's anomaly signal, never a call): no change rule
    /// applies; the record that starts an Insight gives one `cloudtrail_insight` finding
    /// (see [`crate::insight`]).
    Insight,
}

/// The compiled rule set.
#[derive(Debug, Clone)]
pub struct ChangeRules {
    rules: Vec<ChangeRule>,
    /// Rule indexes by event source, then by event name (API version suffix stripped); two
    /// levels so a look-up borrows the event's strings instead of allocating a key per event.
    by_call: HashMap<String, HashMap<String, Vec<usize>>>,
    ignore_principals: Vec<String>,
    ignore_aws_service_calls: bool,
    orchestrating_services: Vec<String>,
    enabled: bool,
}

impl ChangeRulesConfig {
    /// The effective rule list: defaults (unless disabled), replaced or extended by `rules`,
    /// minus `disabled_rules`.
    ///
    /// # Errors
    /// [`RuleError`] for an unparsable default set, duplicate names among `rules`, or an
    /// unknown name in `disabled_rules`.
    pub fn effective_rules(&self) -> Result<Vec<ChangeRule>, RuleError> {
        let mut rules: Vec<ChangeRule> = if self.use_default_rules {
            toml::from_str::<RuleFile>(DEFAULT_RULES_TOML)
                .map_err(|e| RuleError::Parse(e.to_string()))?
                .rules
        } else {
            Vec::new()
        };
        let mut seen = std::collections::HashSet::new();
        for r in &self.rules {
            if !seen.insert(r.name.clone()) {
                return Err(RuleError::Duplicate(r.name.clone()));
            }
            match rules.iter_mut().find(|d| d.name == r.name) {
                Some(slot) => *slot = r.clone(),
                None => rules.push(r.clone()),
            }
        }
        for name in &self.disabled_rules {
            let before = rules.len();
            rules.retain(|r| &r.name != name);
            if rules.len() == before {
                return Err(RuleError::UnknownDisabled(name.clone()));
            }
        }
        Ok(rules)
    }

    /// Checks the effective rule set.
    ///
    /// # Errors
    /// The first [`RuleError`] found.
    pub fn validate(&self) -> Result<(), RuleError> {
        ChangeRules::new(self).map(|_| ())
    }
}

fn invalid(rule: &ChangeRule, reason: impl Into<String>) -> RuleError {
    RuleError::Invalid {
        rule: rule.name.clone(),
        reason: reason.into(),
    }
}

/// `UpdateFunctionCode20150331v2` -> `UpdateFunctionCode`: drops Lambda's API version suffix
/// (eight digits, optionally followed by `v<digits>`).
pub fn strip_api_version(name: &str) -> &str {
    let b = name.as_bytes();
    let mut end = b.len();
    // optional v<digits>
    let mut i = end;
    while i > 0 && b[i - 1].is_ascii_digit() {
        i -= 1;
    }
    if i < end && i > 0 && b[i - 1] == b'v' {
        end = i - 1;
    }
    let mut j = end;
    while j > 0 && b[j - 1].is_ascii_digit() {
        j -= 1;
    }
    if end - j == 8 && j > 0 {
        &name[..j]
    } else {
        name
    }
}

/// Matches `text` against a pattern where `*` stands for any run of characters.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let mut rest = text;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            match rest.strip_prefix(part) {
                Some(r) => rest = r,
                None => return false,
            }
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(pos) => rest = &rest[pos + part.len()..],
                None => return false,
            }
        }
    }
    true
}

/// Whether an AWS service made the call on the customer's behalf: `userIdentity.type` is
/// `AWSService`, `invokedBy` names an `amazonaws.com` service, `sourceIPAddress` is an
/// `amazonaws.com` service name, or the caller is a service-linked role
/// (`:role/aws-service-role/`). See the CloudTrail userIdentity element,
/// <https://docs.aws.amazon.com/awscloudtrail/latest/userguide/cloudtrail-event-reference-user-identity.html>.
pub fn is_aws_service_call(ct: &CloudTrailFields) -> bool {
    let p = &ct.principal;
    if p.principal_type.as_deref() == Some("AWSService") {
        return true;
    }
    if p.invoked_by
        .as_deref()
        .is_some_and(|s| s.ends_with(".amazonaws.com") || s == "AWS Internal")
    {
        return true;
    }
    if ct
        .source_ip
        .as_deref()
        .is_some_and(|s| s.ends_with(".amazonaws.com") || s == "AWS Internal")
    {
        return true;
    }
    is_service_linked_role(ct)
}

/// Whether the caller is a service-linked role (`:role/aws-service-role/`, or an
/// `AWSServiceRoleFor...` session).
fn is_service_linked_role(ct: &CloudTrailFields) -> bool {
    let p = &ct.principal;
    [p.arn.as_deref(), p.session_issuer_arn.as_deref()]
        .into_iter()
        .flatten()
        .any(|a| {
            a.contains(":role/aws-service-role/") || a.contains("assumed-role/AWSServiceRoleFor")
        })
}

/// The orchestrating service (one of `services`, matched against `invokedBy` and
/// `sourceIPAddress`) through which a person made the call, when there is one: the identity is
/// not an `AWSService` identity and not a service-linked role. `None` for direct calls and for
/// calls by AWS services themselves.
pub fn orchestrated_for_person<'a>(
    ct: &CloudTrailFields,
    services: &'a [String],
) -> Option<&'a str> {
    let p = &ct.principal;
    if p.principal_type.as_deref() == Some("AWSService") || is_service_linked_role(ct) {
        return None;
    }
    let via = [p.invoked_by.as_deref(), ct.source_ip.as_deref()];
    services
        .iter()
        .find(|s| via.iter().flatten().any(|v| v == s))
        .map(String::as_str)
}

/// Walks a path (see [`ChangeRule::resource_id_paths`]) through a JSON value, collecting the
/// scalar values found (strings as is, numbers and booleans as text).
fn collect_path<'a>(
    value: &'a serde_json::Value,
    segments: &[&str],
    out: &mut Vec<&'a serde_json::Value>,
) {
    let Some((first, rest)) = segments.split_first() else {
        out.push(value);
        return;
    };
    let (key, each) = match first.strip_suffix("[*]") {
        Some(k) => (k, true),
        None => (*first, false),
    };
    let Some(next) = value.get(key) else {
        return;
    };
    if each {
        match next {
            serde_json::Value::Array(items) => {
                for item in items.iter().take(1000) {
                    collect_path(item, rest, out);
                }
            }
            other => collect_path(other, rest, out),
        }
    } else {
        collect_path(next, rest, out);
    }
}

/// Reduces an ARN to its last `/` or `:` segment; other ids are returned unchanged.
pub fn id_from_arn(id: &str) -> &str {
    if id.starts_with("arn:") {
        id.rsplit(['/', ':']).next().unwrap_or(id)
    } else {
        id
    }
}

fn scalar_text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A record view with the raw JSON parts parsed, for paths and conditions.
fn record_json(ct: &CloudTrailFields) -> serde_json::Value {
    let parse = |s: &Option<String>| {
        s.as_deref()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(t).ok())
            .unwrap_or(serde_json::Value::Null)
    };
    serde_json::json!({
        "requestParameters": parse(&ct.request_parameters),
        "responseElements": parse(&ct.response_elements),
    })
}

impl ChangeRules {
    /// Compiles the effective rule set of a configuration.
    ///
    /// # Errors
    /// [`RuleError`] when a rule has an empty name, source, event name list, resource type,
    /// id path list or action, a severity outside 1..=10, an unknown category, or a path
    /// not rooted at `requestParameters` / `responseElements`.
    pub fn new(config: &ChangeRulesConfig) -> Result<ChangeRules, RuleError> {
        let rules = config.effective_rules()?;
        let mut by_call: HashMap<String, HashMap<String, Vec<usize>>> = HashMap::new();
        let mut names = std::collections::HashSet::new();
        for (i, r) in rules.iter().enumerate() {
            if r.name.trim().is_empty() {
                return Err(invalid(r, "name is empty"));
            }
            if !names.insert(r.name.clone()) {
                return Err(RuleError::Duplicate(r.name.clone()));
            }
            if r.event_source.trim().is_empty() {
                return Err(invalid(r, "event_source is empty"));
            }
            if r.event_names.is_empty() || r.event_names.iter().any(|n| n.trim().is_empty()) {
                return Err(invalid(
                    r,
                    "event_names must list at least one non-empty name",
                ));
            }
            if r.resource_type.trim().is_empty() {
                return Err(invalid(r, "resource_type is empty"));
            }
            if r.action.trim().is_empty() {
                return Err(invalid(r, "action is empty"));
            }
            if !(1..=10).contains(&r.severity) {
                return Err(invalid(
                    r,
                    format!("severity {} is outside 1..=10", r.severity),
                ));
            }
            if r.category != "destructive" && r.category != "defence_evasion" {
                return Err(invalid(
                    r,
                    format!(
                        "category {:?} is not destructive or defence_evasion",
                        r.category
                    ),
                ));
            }
            for p in r
                .resource_id_paths
                .iter()
                .chain(r.conditions.iter().map(|c| &c.path))
            {
                if !(p.starts_with("requestParameters.") || p.starts_with("responseElements.")) {
                    return Err(invalid(
                        r,
                        format!(
                            "path {p:?} must start with requestParameters. or responseElements."
                        ),
                    ));
                }
            }
            for n in &r.event_names {
                by_call
                    .entry(r.event_source.clone())
                    .or_default()
                    .entry(strip_api_version(n).to_string())
                    .or_default()
                    .push(i);
            }
        }
        Ok(ChangeRules {
            rules,
            by_call,
            ignore_principals: config.ignore_principals.clone(),
            ignore_aws_service_calls: config.ignore_aws_service_calls,
            orchestrating_services: config.orchestrating_services.clone(),
            enabled: config.enabled,
        })
    }

    /// The compiled rules, in effect order.
    pub fn rules(&self) -> &[ChangeRule] {
        &self.rules
    }

    /// The resource types the rules watch, sorted and de-duplicated.
    pub fn watched_resource_types(&self) -> Vec<String> {
        let mut v: Vec<String> = self.rules.iter().map(|r| r.resource_type.clone()).collect();
        v.sort();
        v.dedup();
        v
    }

    /// Evaluates one event. Returns the verdict and, for [`RuleVerdict::Finding`], one finding
    /// per resource the call touched (e.g. two for `StopInstances` on two instances).
    ///
    /// A CloudTrail Insights record is never a change: its verdict is [`RuleVerdict::Insight`]
    /// and, for the record that starts an Insight, its finding is the one
    /// [`crate::insight::insight_finding`] makes (whether or not change rules are enabled).
    pub fn evaluate(&self, event: &Event) -> (RuleVerdict, Vec<Finding>) {
        let Some(ct) = event.cloudtrail() else {
            return (RuleVerdict::NoRule, Vec::new());
        };
        if ct.is_insight() {
            let findings = crate::insight::insight_finding(event).into_iter().collect();
            return (RuleVerdict::Insight, findings);
        }
        if !self.enabled {
            return (RuleVerdict::NoRule, Vec::new());
        }
        let Some(candidates) = self
            .by_call
            .get(ct.event_source.as_str())
            .and_then(|names| names.get(strip_api_version(&ct.event_name)))
        else {
            return (RuleVerdict::NoRule, Vec::new());
        };
        if ct
            .error_code
            .as_deref()
            .is_some_and(|c| !c.trim().is_empty())
        {
            return (RuleVerdict::FailedCall, Vec::new());
        }
        if ct.read_only == Some(true) {
            return (RuleVerdict::ReadOnly, Vec::new());
        }
        let orchestrator = orchestrated_for_person(ct, &self.orchestrating_services);
        if self.ignore_aws_service_calls && orchestrator.is_none() && is_aws_service_call(ct) {
            return (RuleVerdict::AwsService, Vec::new());
        }
        let p = &ct.principal;
        if self.ignore_principals.iter().any(|pat| {
            [p.arn.as_deref(), p.session_issuer_arn.as_deref()]
                .into_iter()
                .flatten()
                .any(|a| glob_match(pat, a))
        }) {
            return (RuleVerdict::IgnoredPrincipal, Vec::new());
        }
        let record = record_json(ct);
        let mut findings = Vec::new();
        let mut any_condition_false = false;
        for &i in candidates {
            let Some(rule) = self.rules.get(i) else {
                continue;
            };
            let holds = rule.conditions.iter().all(|c| {
                let segs: Vec<&str> = c.path.split('.').collect();
                let mut vals = Vec::new();
                collect_path(&record, &segs, &mut vals);
                vals.iter().any(|v| **v == c.equals)
            });
            if !holds {
                any_condition_false = true;
                continue;
            }
            for id in self.resource_ids(rule, ct, &record) {
                let mut f = self.finding(rule, event, ct, id);
                if let Some(service) = orchestrator {
                    f.recoverable = false;
                    f.summary = format!(
                        "{}; {NOT_RECOVERED_MARK}invoked through {service} on behalf of a person \
                         (recovery would fight the stack)",
                        f.summary
                    );
                } else if let Some(steps) = &rule.manual_recovery {
                    f.recoverable = false;
                    f.summary = format!(
                        "{}; {NOT_RECOVERED_MARK}Terraform cannot undo {}; to undo it: {}",
                        f.summary,
                        ct.event_name,
                        steps.replace(
                            "{id}",
                            f.resource
                                .as_ref()
                                .map_or("unknown", |r| r.resource_id.as_str())
                        )
                    );
                } else if !event.decode_warnings.is_empty() {
                    // The decoder repaired the record (invalid UTF-8 replaced, a mistyped field
                    // dropped): the resource name may not be the real one, and a recovery on a
                    // name that does not exist would make things worse. Seen, not recovered.
                    f.recoverable = false;
                    f.summary = format!(
                        "{}; {NOT_RECOVERED_MARK}the record was repaired when decoded ({}), so \
                         the resource name may differ from the real one",
                        f.summary,
                        event.decode_warnings.join("; ")
                    );
                }
                findings.push(f);
            }
        }
        if findings.is_empty() {
            let verdict = if any_condition_false {
                RuleVerdict::ConditionFalse
            } else {
                RuleVerdict::NoRule
            };
            return (verdict, findings);
        }
        (RuleVerdict::Finding, findings)
    }

    fn resource_ids(
        &self,
        rule: &ChangeRule,
        ct: &CloudTrailFields,
        record: &serde_json::Value,
    ) -> Vec<String> {
        let mut ids: Vec<String> = Vec::new();
        for path in &rule.resource_id_paths {
            let segs: Vec<&str> = path.split('.').collect();
            let mut vals = Vec::new();
            collect_path(record, &segs, &mut vals);
            for v in vals {
                if let Some(t) = scalar_text(v) {
                    let id = id_from_arn(&t).to_string();
                    if !ids.contains(&id) {
                        ids.push(id);
                    }
                }
            }
            if !ids.is_empty() {
                return ids;
            }
        }
        for r in &ct.resources {
            let id =
                r.id.as_deref()
                    .or(r.arn.as_deref())
                    .map(|s| id_from_arn(s).to_string());
            if let Some(id) = id
                && !ids.contains(&id)
            {
                ids.push(id);
            }
        }
        if ids.is_empty() {
            ids.push("unknown".to_string());
        }
        ids
    }

    fn finding(
        &self,
        rule: &ChangeRule,
        event: &Event,
        ct: &CloudTrailFields,
        id: String,
    ) -> Finding {
        let resource = ResourceKey {
            resource_type: rule.resource_type.clone(),
            resource_id: id.clone(),
            account: event.account.clone(),
            region: event.region.clone(),
        };
        let finding_id = format!(
            "{:016x}",
            stable_hash(&[
                rule.name.as_bytes(),
                event.event_id.as_bytes(),
                id.as_bytes()
            ])
        );
        // The evidence names the stable principal (the role of an assumed-role session: what
        // grouping and related changes match on); the summary names the caller, whose session
        // name is usually the person behind the role.
        let principal = ct.principal.key();
        let caller = ct.principal.caller();
        let mut sample = ct.request_parameters.clone().unwrap_or_default();
        if sample.len() > MAX_EVIDENCE_BYTES {
            let mut end = MAX_EVIDENCE_BYTES;
            while !sample.is_char_boundary(end) {
                end -= 1;
            }
            sample.truncate(end);
        }
        Finding {
            suppressed: None,
            finding_id,
            kind: FindingKind::ChangeRule,
            detector: rule.name.clone(),
            event_time: event.event_time,
            detected_at: now_micros(),
            summary: format!(
                "{} {} on {} {} by {}",
                ct.event_source, ct.event_name, rule.resource_type, id, caller
            ),
            resource: Some(resource),
            score: 1.0,
            default_action: Some(rule.action.clone()),
            recoverable: id != "unknown",
            direction: None,
            priority: Priority::High,
            evidence: Evidence {
                event_ids: vec![event.event_id.clone()],
                event_source: Some(ct.event_source.clone()),
                event_name: Some(ct.event_name.clone()),
                principal: Some(principal),
                source_ip: ct.source_ip.clone(),
                samples: if sample.is_empty() {
                    Vec::new()
                } else {
                    vec![sample]
                },
                ..Evidence::default()
            },
        }
    }

    /// The severity (1..=10) and category of the rule named `detector`, when it exists.
    pub fn rule_info(&self, detector: &str) -> Option<(u8, &str)> {
        self.rules
            .iter()
            .find(|r| r.name == detector)
            .map(|r| (r.severity, r.category.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aiops_core::{EventBody, Position, Principal};

    fn ct(source: &str, name: &str, params: &str) -> CloudTrailFields {
        CloudTrailFields {
            event_source: source.into(),
            event_name: name.into(),
            principal: Principal {
                principal_type: Some("IAMUser".into()),
                arn: Some("arn:aws:iam::123456789012:user/alice".into()),
                ..Default::default()
            },
            source_ip: Some("203.0.113.9".into()),
            read_only: Some(false),
            request_parameters: Some(params.into()),
            ..Default::default()
        }
    }

    fn ev(c: CloudTrailFields) -> Event {
        Event {
            event_id: "e-1".into(),
            event_time: 1_000_000,
            ingest_time: 2_000_000,
            decode_warnings: Vec::new(),
            account: Some("123456789012".into()),
            region: Some("us-east-1".into()),
            position: Position::default(),
            body: EventBody::Cloudtrail(Box::new(c)),
        }
    }

    fn rules() -> ChangeRules {
        ChangeRules::new(&ChangeRulesConfig::default()).unwrap()
    }

    #[test]
    fn default_rules_compile_and_cover_design_list() {
        let r = rules();
        let types = r.watched_resource_types();
        for t in [
            "ec2_instance",
            "ssm_parameter",
            "lambda_function",
            "dynamodb_table",
            "s3_bucket",
            "rds_db_instance",
            "rds_db_cluster",
            "cloudtrail_trail",
            "kms_key",
            "vpc_flow_log",
            "config_recorder",
        ] {
            assert!(types.iter().any(|x| x == t), "missing {t}");
        }
    }

    #[test]
    fn ssm_delete_parameter_opens_one_finding() {
        let (v, f) = rules().evaluate(&ev(ct(
            "ssm.amazonaws.com",
            "DeleteParameter",
            r#"{"name":"/prod/db/password"}"#,
        )));
        assert_eq!(v, RuleVerdict::Finding);
        assert_eq!(f.len(), 1);
        let r = f[0].resource.as_ref().unwrap();
        assert_eq!(r.resource_type, "ssm_parameter");
        assert_eq!(r.resource_id, "/prod/db/password");
        assert_eq!(f[0].default_action.as_deref(), Some("restore"));
        assert_eq!(f[0].detector, "ssm_delete_parameter");
        assert!(f[0].recoverable);
    }

    #[test]
    fn one_finding_per_instance() {
        let (_, f) = rules().evaluate(&ev(ct(
            "ec2.amazonaws.com",
            "StopInstances",
            r#"{"instancesSet":{"items":[{"instanceId":"i-1"},{"instanceId":"i-2"}]}}"#,
        )));
        let ids: Vec<&str> = f
            .iter()
            .map(|x| x.resource.as_ref().unwrap().resource_id.as_str())
            .collect();
        assert_eq!(ids, vec!["i-1", "i-2"]);
        assert_eq!(f[0].default_action.as_deref(), Some("start"));
    }

    #[test]
    fn failed_read_only_service_and_own_role_calls_are_skipped() {
        let r = rules();
        let mut failed = ct(
            "dynamodb.amazonaws.com",
            "DeleteTable",
            r#"{"tableName":"t"}"#,
        );
        failed.error_code = Some("ResourceInUseException".into());
        assert_eq!(r.evaluate(&ev(failed)).0, RuleVerdict::FailedCall);

        let mut empty_error = ct(
            "dynamodb.amazonaws.com",
            "DeleteTable",
            r#"{"tableName":"t"}"#,
        );
        empty_error.error_code = Some(String::new());
        assert_eq!(r.evaluate(&ev(empty_error)).0, RuleVerdict::Finding);

        let mut ro = ct(
            "dynamodb.amazonaws.com",
            "DeleteTable",
            r#"{"tableName":"t"}"#,
        );
        ro.read_only = Some(true);
        assert_eq!(r.evaluate(&ev(ro)).0, RuleVerdict::ReadOnly);

        let mut asg = ct(
            "ec2.amazonaws.com",
            "TerminateInstances",
            r#"{"instancesSet":{"items":[{"instanceId":"i-1"}]}}"#,
        );
        asg.principal.invoked_by = Some("autoscaling.amazonaws.com".into());
        assert_eq!(r.evaluate(&ev(asg)).0, RuleVerdict::AwsService);

        let mut own = ct("ssm.amazonaws.com", "DeleteParameter", r#"{"name":"/a"}"#);
        own.principal.session_issuer_arn =
            Some("arn:aws:iam::123456789012:role/aiops-recovery".into());
        assert_eq!(r.evaluate(&ev(own)).0, RuleVerdict::IgnoredPrincipal);
    }

    #[test]
    fn conditions_and_lambda_versions() {
        let r = rules();
        let on = ct(
            "rds.amazonaws.com",
            "ModifyDBInstance",
            r#"{"dBInstanceIdentifier":"db1","deletionProtection":true}"#,
        );
        assert_eq!(r.evaluate(&ev(on)).0, RuleVerdict::ConditionFalse);
        let off = ct(
            "rds.amazonaws.com",
            "ModifyDBInstance",
            r#"{"dBInstanceIdentifier":"db1","deletionProtection":false}"#,
        );
        assert_eq!(r.evaluate(&ev(off)).0, RuleVerdict::Finding);
        let (_, f) = r.evaluate(&ev(ct(
            "lambda.amazonaws.com",
            "DeleteFunction20150331",
            r#"{"functionName":"arn:aws:lambda:us-east-1:1:function:billing"}"#,
        )));
        assert_eq!(f[0].resource.as_ref().unwrap().resource_id, "billing");
        assert_eq!(
            strip_api_version("UpdateFunctionCode20150331v2"),
            "UpdateFunctionCode"
        );
        assert_eq!(strip_api_version("DeleteTable"), "DeleteTable");
        assert_eq!(strip_api_version("Get2"), "Get2");
    }

    #[test]
    fn config_overrides_and_errors() {
        let cfg = ChangeRulesConfig {
            disabled_rules: vec!["no_such_rule".into()],
            ..ChangeRulesConfig::default()
        };
        assert_eq!(
            ChangeRules::new(&cfg).unwrap_err(),
            RuleError::UnknownDisabled("no_such_rule".into())
        );
        let cfg = ChangeRulesConfig {
            disabled_rules: vec!["ssm_delete_parameter".into()],
            ..ChangeRulesConfig::default()
        };
        let r = ChangeRules::new(&cfg).unwrap();
        assert_eq!(
            r.evaluate(&ev(ct(
                "ssm.amazonaws.com",
                "DeleteParameter",
                r#"{"name":"/a"}"#
            )))
            .0,
            RuleVerdict::NoRule
        );
        let mut cfg = ChangeRulesConfig::default();
        cfg.rules.push(ChangeRule {
            name: "bad".into(),
            event_source: "x.amazonaws.com".into(),
            event_names: vec!["DeleteX".into()],
            resource_type: "x".into(),
            resource_id_paths: vec!["name".into()],
            conditions: vec![],
            action: "restore".into(),
            category: "destructive".into(),
            severity: 5,
            manual_recovery: None,
        });
        assert_eq!(
            ChangeRules::new(&cfg).unwrap_err().to_string(),
            "change rule \"bad\": path \"name\" must start with requestParameters. or responseElements."
        );
    }

    /// A trimmed copy of the CloudFormation-invoked DeleteTrail of the Panther detection-rule
    /// tests (../shared/data/cloudtrail/panther_03_DeleteTrail.json), normalised by hand.
    fn cfn_delete_trail() -> CloudTrailFields {
        let mut c = ct(
            "cloudtrail.amazonaws.com",
            "DeleteTrail",
            r#"{"name":"example-trail"}"#,
        );
        c.principal = Principal {
            principal_type: Some("AssumedRole".into()),
            arn: Some("arn:aws:sts::123456789012:assumed-role/example-role/example-user".into()),
            account_id: Some("123456789012".into()),
            session_issuer_arn: Some("arn:aws:iam::123456789012:role/example-role".into()),
            invoked_by: Some("cloudformation.amazonaws.com".into()),
            user_name: Some("example-role".into()),
        };
        c.source_ip = Some("111.111.111.111".into());
        c
    }

    #[test]
    fn orchestrated_destructive_call_of_a_person_is_detected_not_recovered() {
        let (v, f) = rules().evaluate(&ev(cfn_delete_trail()));
        assert_eq!(v, RuleVerdict::Finding);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].detector, "cloudtrail_delete_trail");
        assert!(!f[0].recoverable);
        assert_eq!(
            f[0].summary,
            "cloudtrail.amazonaws.com DeleteTrail on cloudtrail_trail example-trail by \
             arn:aws:sts::123456789012:assumed-role/example-role/example-user; not recovered \
             automatically: invoked through cloudformation.amazonaws.com on behalf of a person \
             (recovery would fight the stack)"
        );
        // The summary names the session (the person behind the role); the evidence keeps the
        // role, the stable principal that grouping and related changes match on.
        assert_eq!(
            f[0].evidence.principal.as_deref(),
            Some("arn:aws:iam::123456789012:role/example-role")
        );
        // The same call with the service name as source address (as real stacks log it).
        let mut c = cfn_delete_trail();
        c.principal.invoked_by = None;
        c.source_ip = Some("servicecatalog.amazonaws.com".into());
        let (v, f) = rules().evaluate(&ev(c));
        assert_eq!(v, RuleVerdict::Finding);
        assert!(!f[0].recoverable);
        // Direct calls stay recoverable.
        let (_, f) = rules().evaluate(&ev(ct(
            "cloudtrail.amazonaws.com",
            "DeleteTrail",
            r#"{"name":"example-trail"}"#,
        )));
        assert!(f[0].recoverable);
    }

    #[test]
    fn a_destructive_call_in_a_repaired_record_is_detected_not_recovered() {
        let mut e = ev(ct(
            "s3.amazonaws.com",
            "DeleteBucket",
            "{\"bucketName\":\"secr\u{fffd}ts\"}",
        ));
        e.decode_warnings = vec!["invalid UTF-8 replaced with U+FFFD".into()];
        let (v, f) = rules().evaluate(&e);
        assert_eq!(v, RuleVerdict::Finding);
        assert_eq!(f.len(), 1);
        assert!(!f[0].recoverable);
        assert!(
            f[0].summary.ends_with(
                "; not recovered automatically: the record was repaired when decoded (invalid \
                 UTF-8 replaced with U+FFFD), so the resource name may differ from the real one"
            ),
            "{}",
            f[0].summary
        );
        // The same record decoded cleanly stays recoverable.
        e.decode_warnings.clear();
        assert!(rules().evaluate(&e).1[0].recoverable);
    }

    #[test]
    fn aws_services_themselves_still_open_nothing() {
        let r = rules();
        let mut svc = cfn_delete_trail();
        svc.principal = Principal {
            principal_type: Some("AWSService".into()),
            invoked_by: Some("cloudformation.amazonaws.com".into()),
            ..Default::default()
        };
        assert_eq!(r.evaluate(&ev(svc)).0, RuleVerdict::AwsService);
        let mut slr = cfn_delete_trail();
        slr.principal.session_issuer_arn = Some(
            "arn:aws:iam::123456789012:role/aws-service-role/cloudformation.amazonaws.com/AWSServiceRoleForCloudFormation"
                .into(),
        );
        assert_eq!(r.evaluate(&ev(slr)).0, RuleVerdict::AwsService);
        let mut asg = ct(
            "ec2.amazonaws.com",
            "TerminateInstances",
            r#"{"instancesSet":{"items":[{"instanceId":"i-1"}]}}"#,
        );
        asg.principal.principal_type = Some("AssumedRole".into());
        asg.principal.invoked_by = Some("autoscaling.amazonaws.com".into());
        assert_eq!(r.evaluate(&ev(asg)).0, RuleVerdict::AwsService);
        let none = ChangeRulesConfig {
            orchestrating_services: Vec::new(),
            ..ChangeRulesConfig::default()
        };
        let r = ChangeRules::new(&none).unwrap();
        assert_eq!(
            r.evaluate(&ev(cfn_delete_trail())).0,
            RuleVerdict::AwsService
        );
    }

    #[test]
    fn glob() {
        assert!(glob_match(
            "arn:aws:iam::*:role/aiops-recovery*",
            "arn:aws:iam::1:role/aiops-recovery-x"
        ));
        assert!(!glob_match(
            "arn:aws:iam::*:role/aiops-recovery",
            "arn:aws:iam::1:role/other"
        ));
        assert!(glob_match("exact", "exact"));
    }
}
