//! Grouping findings into incidents (DESIGN §6, "Grouping and context"): the pure core.
//!
//! A finding names *group keys*: `series:<series key>` (consecutive windows of one series),
//! `resource:<resource key>`, `log_group:<name>`,
//! `principal:<principal key>` and `service:<name>` (from the `[[act.grouping.services]]` map,
//! or, when no service matches, from the name heuristic [`name_tokens`]: `/ecs/payments-api`
//! and `/prod/payments/db-password` both give `service:payments`). A statistical finding joins
//! an open incident when they share a key and overlap in time: the finding's event time lies
//! within `gap_secs` of the incident's span `[first_event_time, last_event_time]`.
//!
//! A change-rule finding always opens its own incident (one per changed resource, with its own
//! recovery) whose only key is its `resource:` key, so only findings on the same resource join
//! it; on statistical incidents the change appears as a related change (see
//! [`crate::changes`]).
//!
//! The incident keeps every finding id (bounded), a brief of the first findings, its span and
//! its highest priority ([`IncidentGroup`]); the workflow notifies when an incident opens and
//! when its priority rises, not per finding.

use crate::changes::RelatedChange;
use crate::text::truncate_utf8;
use aiops_core::{Finding, FindingKind};
use serde::{Deserialize, Serialize};

/// Incident priority, lowest first (`Ord`: `Low < Medium < High`): the finding priority of
/// `aiops_core`, so an incident's priority is the highest of its findings'.
pub use aiops_core::Priority;

/// The priority of a finding, as detect set it (`Finding::priority`; findings stored before
/// priorities existed read as `HIGH`).
pub fn finding_priority(f: &Finding) -> Priority {
    f.priority
}

/// One `[[act.grouping.services]]` entry: what belongs to a service. Patterns use `*` for any
/// run of characters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceDef {
    /// Service name, e.g. `payments`.
    pub name: String,
    /// Log group patterns, e.g. `/ecs/payments-*`.
    pub log_groups: Vec<String>,
    /// Resource patterns, matched against resource ids, ARNs and resource keys, e.g.
    /// `/prod/payments/*`, `arn:aws:dynamodb:*:table/payments-*`.
    pub resources: Vec<String>,
    /// Principal patterns (ARNs or principal keys), e.g. `arn:aws:iam::*:role/payments-*`.
    pub principals: Vec<String>,
}

/// `[act.grouping]` in `pipeline.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GroupingConfig {
    /// Group findings at all (off: one incident per finding, as before). Default true.
    pub enabled: bool,
    /// Largest gap between a finding and an incident's span for the finding to join it,
    /// seconds of event time. Default 600.
    pub gap_secs: u64,
    /// How far before an incident's first finding changes are looked up, seconds of event
    /// time. Default 3600.
    pub lookback_secs: u64,
    /// Related changes kept on an incident. Default 5, at most 20.
    pub max_related_changes: usize,
    /// Finding ids kept on an incident (the count goes on). Default 500, at most 2000.
    pub max_finding_ids: usize,
    /// Use the name heuristic when no service of `services` matches. Default true.
    pub name_heuristic: bool,
    /// How long the workflow reuses the suppressions and feedback it read, seconds of wall
    /// clock (a new suppression or feedback takes effect within this time; 0: read them for
    /// every finding). Default 30.
    pub suppression_refresh_secs: u64,
    /// The service map.
    pub services: Vec<ServiceDef>,
}

impl Default for GroupingConfig {
    fn default() -> Self {
        GroupingConfig {
            enabled: true,
            gap_secs: 600,
            lookback_secs: 3600,
            max_related_changes: 5,
            max_finding_ids: 500,
            name_heuristic: true,
            suppression_refresh_secs: 30,
            services: Vec::new(),
        }
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
                Some(pos) => rest = rest.get(pos + part.len()..).unwrap_or_default(),
                None => return false,
            }
        }
    }
    true
}

/// Words that say nothing about which service a name belongs to (environments, platforms,
/// kinds of resource), skipped by [`name_tokens`].
pub const GENERIC_WORDS: &[&str] = &[
    "aws",
    "prod",
    "production",
    "dev",
    "staging",
    "stage",
    "test",
    "qa",
    "ecs",
    "eks",
    "lambda",
    "api",
    "apis",
    "app",
    "apps",
    "service",
    "services",
    "svc",
    "web",
    "db",
    "database",
    "password",
    "secret",
    "secrets",
    "config",
    "logs",
    "log",
    "default",
    "main",
    "function",
    "functions",
    "table",
    "bucket",
    "cluster",
    "instance",
    "parameter",
    "role",
    "user",
    "users",
    "task",
    "tasks",
    "worker",
    "workers",
    "server",
    "backend",
    "frontend",
    "internal",
    "public",
    "private",
    "vpc",
    "us",
    "eu",
    "east",
    "west",
    "north",
    "south",
    "central",
    "arn",
    "iam",
    "sts",
    "assumed",
    "ssm",
    "s3",
    "rds",
    "kms",
    "key",
    "keys",
    "trail",
    "amazonaws",
    "com",
    "var",
    "aiops",
];

/// The service-like words of a name: split on every character outside `[A-Za-z0-9]`, lower
/// case, without [`GENERIC_WORDS`], words shorter than 3 characters and words with a digit;
/// sorted and de-duplicated. `/ecs/payments-api` -> `["payments"]`.
pub fn name_tokens(name: &str) -> Vec<String> {
    let mut out: Vec<String> = name
        .split(|c: char| !c.is_ascii_alphanumeric())
        .map(str::to_ascii_lowercase)
        .filter(|w| w.len() >= 3 && !w.bytes().any(|b| b.is_ascii_digit()))
        .filter(|w| !GENERIC_WORDS.contains(&w.as_str()))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// What a finding is about, for grouping and ranking: parsed from its resource and evidence.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FindingScope {
    /// `ResourceKey::key` of its resource.
    pub resource_key: Option<String>,
    /// Its resource id.
    pub resource_id: Option<String>,
    /// The log group of a log series (`log_level:<group>:<LEVEL>`,
    /// `log_template:<group>:<id>`).
    pub log_group: Option<String>,
    /// The template id of a template series, or the template a finding carries
    /// (`evidence.template_id`, e.g. a level burst merged with its one template's finding).
    pub template_id: Option<String>,
    /// The principal of the evidence, or of an API series (`api_call:<principal>:...`,
    /// `api_error_principal:<principal>:<code>`).
    pub principal: Option<String>,
    /// The series key, for statistical findings.
    pub series_key: Option<String>,
}

/// The scope of a finding (see [`FindingScope`]).
pub fn finding_scope(f: &Finding) -> FindingScope {
    let series = f.evidence.series_key.clone();
    let mut scope = FindingScope {
        resource_key: f.resource.as_ref().map(|r| r.key()),
        resource_id: f.resource.as_ref().map(|r| r.resource_id.clone()),
        principal: f.evidence.principal.clone(),
        series_key: series.clone(),
        template_id: f.evidence.template_id.clone(),
        ..FindingScope::default()
    };
    if let Some(k) = series.as_deref() {
        if let Some(rest) = k.strip_prefix("log_level:") {
            scope.log_group = rest.rsplit_once(':').map(|(g, _)| g.to_string());
        } else if let Some(rest) = k.strip_prefix("log_template:")
            && let Some((g, t)) = rest.rsplit_once(':')
        {
            scope.log_group = Some(g.to_string());
            if scope.template_id.is_none() {
                scope.template_id = Some(t.to_string());
            }
        } else if let Some(rest) = k.strip_prefix("api_call:") {
            // api_call:<principal>:<event source>:<event name>
            let p = rest.rsplitn(3, ':').nth(2);
            if scope.principal.is_none() {
                scope.principal = p.map(str::to_string);
            }
        } else if let Some(rest) = k.strip_prefix("api_error_principal:")
            && scope.principal.is_none()
        {
            scope.principal = rest.rsplit_once(':').map(|(p, _)| p.to_string());
        }
    }
    scope
}

/// The services of a resource, log group or principal: the configured services any of whose
/// patterns match, else (with `name_heuristic`) the service-like words of the names.
pub fn services_of(
    cfg: &GroupingConfig,
    resources: &[&str],
    log_groups: &[&str],
    principals: &[&str],
) -> Vec<String> {
    let any = |pats: &[String], names: &[&str]| {
        pats.iter().any(|p| names.iter().any(|n| glob_match(p, n)))
    };
    let mut out: Vec<String> = cfg
        .services
        .iter()
        .filter(|s| {
            any(&s.resources, resources)
                || any(&s.log_groups, log_groups)
                || any(&s.principals, principals)
        })
        .map(|s| s.name.clone())
        .collect();
    if out.is_empty() && cfg.name_heuristic {
        for n in resources.iter().chain(log_groups) {
            out.extend(name_tokens(n));
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The group keys of a finding (see the module documentation), sorted. A change-rule finding
/// has only its `resource:` key.
pub fn group_keys(f: &Finding, cfg: &GroupingConfig) -> Vec<String> {
    let s = finding_scope(f);
    let mut keys = Vec::new();
    if let Some(r) = &s.resource_key {
        keys.push(format!("resource:{r}"));
    }
    if f.kind == FindingKind::ChangeRule {
        return keys;
    }
    if let Some(k) = &s.series_key {
        keys.push(format!("series:{k}"));
    }
    if let Some(g) = &s.log_group {
        keys.push(format!("log_group:{g}"));
    }
    if let Some(p) = &s.principal {
        keys.push(format!("principal:{p}"));
    }
    let resources: Vec<&str> = s.resource_id.iter().map(String::as_str).collect();
    let groups: Vec<&str> = s.log_group.iter().map(String::as_str).collect();
    let principals: Vec<&str> = s.principal.iter().map(String::as_str).collect();
    for svc in services_of(cfg, &resources, &groups, &principals) {
        keys.push(format!("service:{svc}"));
    }
    keys.sort();
    keys.dedup();
    keys.into_iter().map(|k| truncate_utf8(&k, 1024)).collect()
}

/// A short record of one finding of an incident, for the text view.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FindingBrief {
    /// Finding id.
    pub finding_id: String,
    /// `change_rule`, `rate_anomaly`, ...
    pub kind: String,
    /// Detector or rule name.
    pub detector: String,
    /// Series key (statistical findings).
    pub series_key: Option<String>,
    /// Event time, microseconds since the Unix epoch, UTC.
    pub event_time: i64,
    /// Priority.
    pub priority: Priority,
    /// Score in [0, 1].
    pub score: f64,
    /// Observed count or value in the window.
    pub observed: Option<f64>,
    /// Expected count or value.
    pub expected: Option<f64>,
    /// Top contributors (principals, streams, templates) when the evidence names them.
    #[serde(default)]
    pub contributors: Vec<String>,
    /// Summary (at most 512 bytes).
    pub summary: String,
}

/// Briefs kept per incident (the ids go on to `max_finding_ids`).
pub const MAX_BRIEFS: usize = 20;

impl FindingBrief {
    /// The brief of `f`.
    pub fn of(f: &Finding) -> FindingBrief {
        FindingBrief {
            finding_id: f.finding_id.clone(),
            kind: f.kind.as_str().to_string(),
            detector: truncate_utf8(&f.detector, 256),
            series_key: f
                .evidence
                .series_key
                .as_deref()
                .map(|k| truncate_utf8(k, 512)),
            event_time: f.event_time,
            priority: finding_priority(f),
            score: if f.score.is_finite() { f.score } else { 0.0 },
            observed: f.evidence.observed.filter(|v| v.is_finite()),
            expected: f.evidence.expected.filter(|v| v.is_finite()),
            contributors: contributors(f),
            summary: truncate_utf8(&f.summary, 512),
        }
    }
}

/// The top contributors a finding's evidence names (`top_contributors` or `contributors`, a
/// list of strings or of objects with `name`/`key` and `count`), at most 5, as text.
pub fn contributors(f: &Finding) -> Vec<String> {
    let Ok(v) = serde_json::to_value(&f.evidence) else {
        return Vec::new();
    };
    let Some(list) = v
        .get("top_contributors")
        .or_else(|| v.get("contributors"))
        .and_then(|l| l.as_array())
    else {
        return Vec::new();
    };
    list.iter()
        .take(5)
        .filter_map(|c| match c {
            serde_json::Value::String(s) => Some(truncate_utf8(s, 256)),
            serde_json::Value::Object(o) => {
                let name = o
                    .get("name")
                    .or_else(|| o.get("key"))
                    .or_else(|| o.get("value"))
                    .and_then(|n| n.as_str())?;
                let kind = o.get("kind").and_then(|k| k.as_str());
                let count = o.get("count").and_then(|c| c.as_f64());
                let mut s = match kind {
                    Some(k) => format!("{k} {name}"),
                    None => name.to_string(),
                };
                if let Some(c) = count {
                    s.push_str(&format!(" ({c})"));
                }
                Some(truncate_utf8(&s, 256))
            }
            _ => None,
        })
        .collect()
}

/// The grouping state of an incident (stored with it as JSON).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct IncidentGroup {
    /// Ids of every finding of the incident, in arrival order (at most `max_finding_ids`).
    pub finding_ids: Vec<String>,
    /// How many findings joined in all (may exceed `finding_ids.len()`).
    pub finding_count: u64,
    /// Briefs of the first [`MAX_BRIEFS`] findings.
    pub findings: Vec<FindingBrief>,
    /// Group keys of the incident (union over its findings; only the resource key for a
    /// change-rule incident).
    pub keys: Vec<String>,
    /// Earliest finding event time, microseconds since the Unix epoch, UTC.
    pub first_event_time: i64,
    /// Latest finding event time, microseconds since the Unix epoch, UTC.
    pub last_event_time: i64,
    /// Highest priority of its findings.
    pub priority: Option<Priority>,
    /// Opened by a change rule: only findings on the same resource join it.
    pub change_incident: bool,
    /// The lookback's changes ranked by relatedness, best first (see [`crate::changes`]).
    pub related_changes: Vec<RelatedChange>,
    /// Closed (resolved as not an incident): nothing joins it any more.
    pub closed: bool,
    /// Optimistic-concurrency version: each write of the group is conditional on it.
    pub version: u64,
}

impl IncidentGroup {
    /// The group of an incident opened by `f`.
    pub fn open(f: &Finding, cfg: &GroupingConfig) -> IncidentGroup {
        IncidentGroup {
            finding_ids: vec![f.finding_id.clone()],
            finding_count: 1,
            findings: vec![FindingBrief::of(f)],
            keys: group_keys(f, cfg),
            first_event_time: f.event_time,
            last_event_time: f.event_time,
            priority: Some(finding_priority(f)),
            change_incident: f.kind == FindingKind::ChangeRule,
            related_changes: Vec::new(),
            closed: false,
            version: 0,
        }
    }

    /// Whether `f` (with keys `keys`) may join: open, time overlap within `gap_secs`, a shared
    /// key, not a change-rule finding, and for a change-rule incident the same resource.
    pub fn accepts(&self, f: &Finding, keys: &[String], cfg: &GroupingConfig) -> bool {
        if self.closed || f.kind == FindingKind::ChangeRule {
            return false;
        }
        if self.finding_ids.contains(&f.finding_id) {
            return true;
        }
        let gap = i64::try_from(cfg.gap_secs)
            .unwrap_or(i64::MAX / 1_000_000)
            .saturating_mul(1_000_000);
        let overlaps = f.event_time >= self.first_event_time.saturating_sub(gap)
            && f.event_time <= self.last_event_time.saturating_add(gap);
        if !overlaps {
            return false;
        }
        if self.change_incident {
            return f
                .resource
                .as_ref()
                .is_some_and(|r| self.keys.contains(&format!("resource:{}", r.key())));
        }
        keys.iter().any(|k| self.keys.contains(k))
    }

    /// This group with `f` added (`keys` its group keys). Returns the new group and whether the
    /// priority rose. A finding already in the group changes nothing.
    pub fn with(
        &self,
        f: &Finding,
        keys: &[String],
        cfg: &GroupingConfig,
    ) -> (IncidentGroup, bool) {
        let mut g = self.clone();
        if g.finding_ids.contains(&f.finding_id) {
            return (g, false);
        }
        if g.finding_ids.len() < cfg.max_finding_ids {
            g.finding_ids.push(f.finding_id.clone());
        }
        g.finding_count = g.finding_count.saturating_add(1);
        if g.findings.len() < MAX_BRIEFS {
            g.findings.push(FindingBrief::of(f));
        }
        if !g.change_incident {
            for k in keys {
                if !g.keys.contains(k) && g.keys.len() < 64 {
                    g.keys.push(k.clone());
                }
            }
            g.keys.sort();
        }
        g.first_event_time = g.first_event_time.min(f.event_time);
        g.last_event_time = g.last_event_time.max(f.event_time);
        let p = finding_priority(f);
        let rose = g.priority.is_none_or(|old| p > old);
        if rose {
            g.priority = Some(p);
        }
        g.version = g.version.saturating_add(1);
        (g, rose)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aiops_core::{Evidence, ResourceKey};

    fn stat(id: &str, series: &str, t: i64, score: f64) -> Finding {
        Finding {
            suppressed: None,
            finding_id: id.into(),
            kind: FindingKind::RateAnomaly,
            detector: "rate".into(),
            event_time: t,
            detected_at: 0,
            resource: None,
            score,
            summary: "s".into(),
            default_action: None,
            recoverable: false,
            evidence: Evidence {
                series_key: Some(series.into()),
                ..Evidence::default()
            },
            direction: Some(aiops_core::Direction::Spike),
            // As detect would rank them: the higher the score, the higher the priority.
            priority: if score >= 0.999 {
                aiops_core::Priority::High
            } else if score >= 0.99 {
                aiops_core::Priority::Medium
            } else {
                aiops_core::Priority::Low
            },
        }
    }

    #[test]
    fn heuristic_names_share_the_service() {
        assert_eq!(name_tokens("/ecs/payments-api"), ["payments"]);
        assert_eq!(name_tokens("/prod/payments/db-password"), ["payments"]);
        assert_eq!(name_tokens("i-0abc"), Vec::<String>::new());
        let cfg = GroupingConfig::default();
        let f = stat("a", "log_level:/ecs/payments-api:ERROR", 0, 0.5);
        assert_eq!(
            group_keys(&f, &cfg),
            [
                "log_group:/ecs/payments-api",
                "series:log_level:/ecs/payments-api:ERROR",
                "service:payments"
            ]
        );
        let t = stat("b", "log_template:/ecs/payments-api:t-1f", 0, 0.5);
        assert_eq!(finding_scope(&t).template_id.as_deref(), Some("t-1f"));
        let api = stat(
            "c",
            "api_call:arn:aws:iam::1:user/alice:ssm.amazonaws.com:DeleteParameter",
            0,
            0.5,
        );
        assert_eq!(
            finding_scope(&api).principal.as_deref(),
            Some("arn:aws:iam::1:user/alice")
        );
    }

    #[test]
    fn configured_services_win_over_the_heuristic() {
        let cfg = GroupingConfig {
            services: vec![ServiceDef {
                name: "checkout".into(),
                log_groups: vec!["/ecs/payments-*".into()],
                ..ServiceDef::default()
            }],
            ..GroupingConfig::default()
        };
        let f = stat("a", "log_level:/ecs/payments-api:ERROR", 0, 0.5);
        assert_eq!(
            group_keys(&f, &cfg),
            [
                "log_group:/ecs/payments-api",
                "series:log_level:/ecs/payments-api:ERROR",
                "service:checkout"
            ]
        );
    }

    #[test]
    fn joining_follows_gap_keys_and_change_rule_resources() {
        let cfg = GroupingConfig::default();
        let min = 60_000_000;
        let a = stat("a", "log_level:/ecs/payments-api:ERROR", 0, 0.5);
        let g = IncidentGroup::open(&a, &cfg);
        let b = stat("b", "log_template:/ecs/payments-api:t1", 9 * min, 0.9995);
        let kb = group_keys(&b, &cfg);
        assert!(g.accepts(&b, &kb, &cfg));
        let (g2, rose) = g.with(&b, &kb, &cfg);
        assert!(rose);
        assert_eq!(g2.priority, Some(Priority::High));
        assert_eq!(g2.finding_ids, ["a", "b"]);
        assert_eq!((g2.first_event_time, g2.last_event_time), (0, 9 * min));
        assert_eq!(g2.version, 1);
        let late = stat("c", "log_level:/ecs/payments-api:ERROR", 20 * min, 0.5);
        assert!(!g2.accepts(&late, &group_keys(&late, &cfg), &cfg));
        let other = stat("d", "log_level:/ecs/orders:ERROR", min, 0.5);
        assert!(!g2.accepts(&other, &group_keys(&other, &cfg), &cfg));

        let mut change = stat("x", "", 0, 1.0);
        change.kind = FindingKind::ChangeRule;
        change.evidence.series_key = None;
        change.resource = Some(ResourceKey {
            resource_type: "ssm_parameter".into(),
            resource_id: "/prod/payments/db-password".into(),
            account: Some("1".into()),
            region: Some("us-east-1".into()),
        });
        let cg = IncidentGroup::open(&change, &cfg);
        assert_eq!(
            cg.keys,
            ["resource:1/us-east-1/ssm_parameter//prod/payments/db-password"]
        );
        assert!(!cg.accepts(&a, &group_keys(&a, &cfg), &cfg));
        let mut same = stat("y", "x", min, 0.5);
        same.resource = change.resource.clone();
        assert!(cg.accepts(&same, &group_keys(&same, &cfg), &cfg));
        let mut change2 = change.clone();
        change2.finding_id = "x2".into();
        assert!(!cg.accepts(&change2, &group_keys(&change2, &cfg), &cfg));
    }
}
