//! "What changed" (DESIGN §6): every successful mutating CloudTrail call, kept in a bounded
//! recent-changes index, and the ranking of an incident's lookback changes by relatedness.
//!
//! The pipeline feeds the index where events are seen: [`change_from_event`] turns a
//! normalised event into a [`Change`] (CloudTrail only; successful = no error code; mutating
//! = `readOnly` not true and the event name not `Get*`, `List*`, `Describe*`, `Head*`,
//! `Lookup*`, `Search*`), and [`ChangeIndex::record`] stores it. The workflow reads it where
//! incidents open or grow and ranks with [`rank_changes`].
//!
//! Implementations: [`MemoryChangeIndex`] (bounded by time and by count per account and
//! region), [`crate::SqliteStore`] (table `changes`, pruned by time and count on write) and
//! [`crate::dynamo::DynamoChangeIndex`] (TTL, conditional writes, time-bucketed partitions).
//!
//! # Relatedness score (in [0, 1], documented here and nowhere else)
//!
//! For a change and an incident (its resources, log groups, principals and services):
//! - `+0.40` same resource: a resource id of the change equals a resource id of the incident,
//!   or one contains the other (ARN vs id);
//! - `+0.25` same service: the services of the change's resources and principal (configured
//!   map or name heuristic, see [`crate::group::services_of`]) meet the incident's services;
//! - `+0.15 × J` name overlap, `J` the Jaccard index of the name words
//!   ([`crate::group::name_tokens`]) of the change's resources and of the incident's
//!   resources and log groups;
//! - `+0.10` same principal as in the incident's evidence;
//! - `+0.10 × (1 − age / lookback)` recency, `age` = the incident's first event time minus the
//!   change's event time (0 for changes after it), clamped to [0, lookback].
//!
//! Only changes with some relatedness besides recency are kept; the best
//! `max_related_changes` are stored, ties broken by the later event time, then the event id.

use crate::group::{GroupingConfig, name_tokens, services_of};
use crate::incident::StoreError;
use crate::text::truncate_utf8;
use aiops_core::Event;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Mutex;

/// Resource names kept per change.
pub const MAX_CHANGE_RESOURCES: usize = 8;
/// Longest resource name kept, bytes.
const MAX_NAME_BYTES: usize = 512;

/// One successful mutating CloudTrail call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// CloudTrail `eventID`.
    pub event_id: String,
    /// Event time, microseconds since the Unix epoch, UTC.
    pub event_time: i64,
    /// Account id (`-` when unknown).
    pub account: String,
    /// Region (`-` when unknown).
    pub region: String,
    /// `eventSource`, e.g. `ssm.amazonaws.com`.
    pub event_source: String,
    /// `eventName`, e.g. `DeleteParameter`.
    pub event_name: String,
    /// Principal key of the caller (`Principal::key`).
    pub principal: String,
    /// Resource names the call touched: ids and ARNs of `resources`, then name/id/ARN-like
    /// request parameters (at most [`MAX_CHANGE_RESOURCES`], each at most 512 bytes).
    pub resources: Vec<String>,
}

/// One change as related to an incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RelatedChange {
    /// CloudTrail `eventID`.
    pub event_id: String,
    /// `eventName`.
    pub event_name: String,
    /// `eventSource`.
    pub event_source: String,
    /// The change's first resource name (empty when none).
    pub resource: String,
    /// Principal key of the caller.
    pub principal: String,
    /// Event time, microseconds since the Unix epoch, UTC.
    pub event_time: i64,
    /// Relatedness score in [0, 1] (see the module documentation).
    pub score: f64,
    /// Why it is related: `same resource`, `same service`, `name overlap`, `same principal`.
    pub reasons: Vec<String>,
}

/// Event-name prefixes of read-only calls.
const READ_PREFIXES: [&str; 6] = ["Get", "List", "Describe", "Head", "Lookup", "Search"];

/// Request-parameter keys whose values name resources: exactly these, or ending in `Name`,
/// `Id`, `Arn`, `ARN` or `Identifier`.
fn is_name_key(k: &str) -> bool {
    matches!(k, "name" | "bucketName" | "key" | "names" | "keyId")
        || ["Name", "Id", "Arn", "ARN", "Identifier"]
            .iter()
            .any(|s| k.ends_with(s))
}

fn collect_names(v: &serde_json::Value, depth: usize, out: &mut Vec<String>) {
    if depth > 4 || out.len() >= MAX_CHANGE_RESOURCES {
        return;
    }
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m.iter().take(64) {
                match x {
                    serde_json::Value::String(s) if is_name_key(k) && !s.is_empty() => {
                        let s = truncate_utf8(s, MAX_NAME_BYTES);
                        if !out.contains(&s) && out.len() < MAX_CHANGE_RESOURCES {
                            out.push(s);
                        }
                    }
                    serde_json::Value::Array(items) if is_name_key(k) => {
                        for i in items.iter().take(MAX_CHANGE_RESOURCES) {
                            if let serde_json::Value::String(s) = i {
                                let s = truncate_utf8(s, MAX_NAME_BYTES);
                                if !out.contains(&s) && out.len() < MAX_CHANGE_RESOURCES {
                                    out.push(s);
                                }
                            } else {
                                collect_names(i, depth + 1, out);
                            }
                        }
                    }
                    _ => collect_names(x, depth + 1, out),
                }
            }
        }
        serde_json::Value::Array(items) => {
            for i in items.iter().take(MAX_CHANGE_RESOURCES) {
                collect_names(i, depth + 1, out);
            }
        }
        _ => {}
    }
}

/// The change of `event`, when it is a successful mutating CloudTrail call (see the module
/// documentation); `None` otherwise. Pure: the pipeline calls it for every event and records
/// what it returns.
pub fn change_from_event(event: &Event) -> Option<Change> {
    let ct = event.cloudtrail()?;
    if ct
        .error_code
        .as_deref()
        .is_some_and(|c| !c.trim().is_empty())
    {
        return None;
    }
    if ct.read_only == Some(true)
        || READ_PREFIXES.iter().any(|p| ct.event_name.starts_with(p))
        || ct.event_type.as_deref().is_some_and(|t| t != "AwsApiCall")
    {
        return None;
    }
    let mut resources = Vec::new();
    for r in &ct.resources {
        for s in [r.id.as_deref(), r.arn.as_deref()].into_iter().flatten() {
            let s = truncate_utf8(s, MAX_NAME_BYTES);
            if !s.is_empty() && !resources.contains(&s) && resources.len() < MAX_CHANGE_RESOURCES {
                resources.push(s);
            }
        }
    }
    if let Some(params) = ct
        .request_parameters
        .as_deref()
        .and_then(|p| serde_json::from_str::<serde_json::Value>(p).ok())
    {
        collect_names(&params, 0, &mut resources);
    }
    Some(Change {
        event_id: truncate_utf8(&event.event_id, 256),
        event_time: event.event_time,
        account: event.account.clone().unwrap_or_else(|| "-".into()),
        region: event.region.clone().unwrap_or_else(|| "-".into()),
        event_source: truncate_utf8(&ct.event_source, 256),
        event_name: truncate_utf8(&ct.event_name, 256),
        principal: truncate_utf8(&ct.principal.key(), MAX_NAME_BYTES),
        resources,
    })
}

/// The recent-changes index (port): time-bounded and count-bounded per account and region.
pub trait ChangeIndex {
    /// Stores `change` (a change already stored, same event id, is not stored twice). Returns
    /// `true` when stored.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the store fails.
    fn record(&self, change: &Change) -> Result<bool, StoreError>;

    /// The changes with `since <= event_time <= until` (microseconds), of `scope` (account,
    /// region) when given, else of every scope; newest first, at most `limit`.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails or an item is corrupt.
    fn recent(
        &self,
        scope: Option<(&str, &str)>,
        since: i64,
        until: i64,
        limit: usize,
    ) -> Result<Vec<Change>, StoreError>;
}

impl<T: ChangeIndex + ?Sized> ChangeIndex for std::sync::Arc<T> {
    fn record(&self, change: &Change) -> Result<bool, StoreError> {
        (**self).record(change)
    }
    fn recent(
        &self,
        scope: Option<(&str, &str)>,
        since: i64,
        until: i64,
        limit: usize,
    ) -> Result<Vec<Change>, StoreError> {
        (**self).recent(scope, since, until, limit)
    }
}

impl<T: ChangeIndex + ?Sized> ChangeIndex for Box<T> {
    fn record(&self, change: &Change) -> Result<bool, StoreError> {
        (**self).record(change)
    }
    fn recent(
        &self,
        scope: Option<(&str, &str)>,
        since: i64,
        until: i64,
        limit: usize,
    ) -> Result<Vec<Change>, StoreError> {
        (**self).recent(scope, since, until, limit)
    }
}

/// `[act.changes]`: bounds of the recent-changes index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChangeIndexConfig {
    /// Changes older than this (event time, relative to the newest change of the scope) are
    /// dropped, seconds. Default 7200 (twice the default lookback).
    pub retention_secs: u64,
    /// Changes kept per account and region (the oldest go first). Default 10000.
    pub max_per_scope: usize,
    /// DynamoDB table of aws mode (key `bucket` + `sort_key`, TTL `ttl`).
    pub table: String,
}

impl Default for ChangeIndexConfig {
    fn default() -> Self {
        ChangeIndexConfig {
            retention_secs: 7200,
            max_per_scope: 10_000,
            table: "aiops-changes".into(),
        }
    }
}

/// The in-memory index: one queue per (account, region), newest last, bounded by
/// `retention_secs` of event time and `max_per_scope` entries.
#[derive(Debug)]
pub struct MemoryChangeIndex {
    cfg: ChangeIndexConfig,
    scopes: Mutex<HashMap<(String, String), Scope>>,
}

/// The changes of one (account, region) keyed by (event time, arrival number), so oldest
/// first and ties in arrival order, and their event ids (so a change delivered twice is found
/// in O(1), not by a scan of up to `max_per_scope` entries per record). A change recorded out
/// of event-time order (the calls of one CloudTrail delivery are not sorted) is placed in
/// O(log n), not by shifting the newer changes of the queue.
#[derive(Debug, Default)]
struct Scope {
    queue: BTreeMap<(i64, u64), Change>,
    ids: HashSet<String>,
    next_seq: u64,
}

impl MemoryChangeIndex {
    /// An empty index with these bounds.
    pub fn new(cfg: ChangeIndexConfig) -> MemoryChangeIndex {
        MemoryChangeIndex {
            cfg,
            scopes: Mutex::new(HashMap::new()),
        }
    }
}

fn retention_micros(secs: u64) -> i64 {
    i64::try_from(secs)
        .unwrap_or(i64::MAX / 1_000_000)
        .saturating_mul(1_000_000)
}

impl ChangeIndex for MemoryChangeIndex {
    fn record(&self, change: &Change) -> Result<bool, StoreError> {
        let mut scopes = self
            .scopes
            .lock()
            .map_err(|_| StoreError::Backend("change index mutex poisoned".into()))?;
        let scope = scopes
            .entry((change.account.clone(), change.region.clone()))
            .or_default();
        if scope.ids.contains(&change.event_id) {
            return Ok(false);
        }
        let seq = scope.next_seq;
        scope.next_seq += 1;
        let q = &mut scope.queue;
        q.insert((change.event_time, seq), change.clone());
        scope.ids.insert(change.event_id.clone());
        let newest = q.last_key_value().map_or(change.event_time, |(k, _)| k.0);
        let horizon = newest.saturating_sub(retention_micros(self.cfg.retention_secs));
        while q.first_key_value().is_some_and(|(k, _)| k.0 < horizon)
            || q.len() > self.cfg.max_per_scope
        {
            if let Some((_, old)) = q.pop_first() {
                scope.ids.remove(&old.event_id);
            }
        }
        Ok(true)
    }

    fn recent(
        &self,
        scope: Option<(&str, &str)>,
        since: i64,
        until: i64,
        limit: usize,
    ) -> Result<Vec<Change>, StoreError> {
        let scopes = self
            .scopes
            .lock()
            .map_err(|_| StoreError::Backend("change index mutex poisoned".into()))?;
        // Sorted and cut by reference; only the `limit` kept are cloned (an incident's look-up
        // in a busy account would otherwise copy every change of the lookback).
        let mut hits: Vec<&Change> = scopes
            .iter()
            .filter(|((a, r), _)| scope.is_none_or(|(sa, sr)| sa == a && sr == r))
            .flat_map(|(_, s)| {
                // Each queue is in event-time order: only its [since, until] slice is read.
                let range = if since <= until {
                    s.queue.range((since, 0)..=(until, u64::MAX))
                } else {
                    s.queue.range((since, 0)..(since, 0))
                };
                range.map(|(_, c)| c)
            })
            .collect();
        hits.sort_by(|a, b| newest_first(a, b));
        hits.truncate(limit);
        Ok(hits.into_iter().cloned().collect())
    }
}

/// Sorts changes newest first, then by event id.
pub fn sort_newest_first(v: &mut [Change]) {
    v.sort_by(newest_first);
}

/// The order of [`sort_newest_first`]: later event time first, ties by event id.
fn newest_first(a: &Change, b: &Change) -> std::cmp::Ordering {
    b.event_time
        .cmp(&a.event_time)
        .then_with(|| a.event_id.cmp(&b.event_id))
}

/// What an incident is about, for ranking changes against it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RankTarget {
    /// Resource ids (and keys) of its findings.
    pub resources: Vec<String>,
    /// Log groups of its findings.
    pub log_groups: Vec<String>,
    /// Principals in its evidence.
    pub principals: Vec<String>,
    /// Its first event time, microseconds since the Unix epoch, UTC.
    pub start: i64,
}

fn same_resource(a: &str, b: &str) -> bool {
    !a.is_empty() && !b.is_empty() && (a == b || a.ends_with(b) || b.ends_with(a))
}

/// Ranks `changes` against `target` (see the module documentation for the score); returns the
/// best `cfg.max_related_changes` with some relatedness besides recency.
pub fn rank_changes(
    changes: &[Change],
    target: &RankTarget,
    cfg: &GroupingConfig,
) -> Vec<RelatedChange> {
    let lookback = retention_micros(cfg.lookback_secs).max(1);
    let t_res: Vec<&str> = target.resources.iter().map(String::as_str).collect();
    let t_groups: Vec<&str> = target.log_groups.iter().map(String::as_str).collect();
    let t_princ: Vec<&str> = target.principals.iter().map(String::as_str).collect();
    let t_services: BTreeSet<String> = services_of(cfg, &t_res, &t_groups, &t_princ)
        .into_iter()
        .collect();
    let t_words: BTreeSet<String> = t_res
        .iter()
        .chain(&t_groups)
        .flat_map(|n| name_tokens(n))
        .collect();
    let mut out: Vec<RelatedChange> = Vec::new();
    for c in changes {
        let mut score = 0.0;
        let mut reasons = Vec::new();
        if c.resources
            .iter()
            .any(|r| t_res.iter().any(|t| same_resource(r, t)))
        {
            score += 0.40;
            reasons.push("same resource".to_string());
        }
        let c_res: Vec<&str> = c.resources.iter().map(String::as_str).collect();
        let c_services: BTreeSet<String> = services_of(cfg, &c_res, &[], &[c.principal.as_str()])
            .into_iter()
            .collect();
        if !c_services.is_disjoint(&t_services) {
            score += 0.25;
            reasons.push("same service".to_string());
        }
        let c_words: BTreeSet<String> = c_res.iter().flat_map(|n| name_tokens(n)).collect();
        let union = c_words.union(&t_words).count();
        if union > 0 {
            let j = c_words.intersection(&t_words).count() as f64 / union as f64;
            if j > 0.0 {
                score += 0.15 * j;
                reasons.push("name overlap".to_string());
            }
        }
        if t_princ.iter().any(|p| *p == c.principal) {
            score += 0.10;
            reasons.push("same principal".to_string());
        }
        if reasons.is_empty() {
            continue;
        }
        let age = target.start.saturating_sub(c.event_time).clamp(0, lookback);
        score += 0.10 * (1.0 - age as f64 / lookback as f64);
        out.push(RelatedChange {
            event_id: c.event_id.clone(),
            event_name: c.event_name.clone(),
            event_source: c.event_source.clone(),
            resource: c.resources.first().cloned().unwrap_or_default(),
            principal: c.principal.clone(),
            event_time: c.event_time,
            score,
            reasons,
        });
    }
    out.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| b.event_time.cmp(&a.event_time))
            .then_with(|| a.event_id.cmp(&b.event_id))
    });
    out.truncate(cfg.max_related_changes);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use aiops_core::{CloudTrailFields, EventBody, Position, Principal};

    fn ct_event(name: &str, params: &str, read_only: Option<bool>, error: Option<&str>) -> Event {
        Event {
            event_id: format!("ev-{name}"),
            event_time: 1_000,
            ingest_time: 2_000,
            account: Some("123456789012".into()),
            region: Some("us-east-1".into()),
            position: Position::default(),
            decode_warnings: Vec::new(),
            body: EventBody::Cloudtrail(Box::new(CloudTrailFields {
                event_source: "ssm.amazonaws.com".into(),
                event_name: name.into(),
                event_type: Some("AwsApiCall".into()),
                principal: Principal {
                    arn: Some("arn:aws:iam::123456789012:user/alice".into()),
                    ..Principal::default()
                },
                read_only,
                error_code: error.map(str::to_string),
                request_parameters: Some(params.into()),
                ..CloudTrailFields::default()
            })),
        }
    }

    #[test]
    fn only_successful_mutating_calls_are_changes() {
        let c = change_from_event(&ct_event(
            "DeleteParameter",
            r#"{"name":"/prod/payments/db-password"}"#,
            Some(false),
            None,
        ))
        .unwrap();
        assert_eq!(c.resources, ["/prod/payments/db-password"]);
        assert_eq!(c.principal, "arn:aws:iam::123456789012:user/alice");
        assert_eq!(
            (c.account.as_str(), c.region.as_str()),
            ("123456789012", "us-east-1")
        );
        assert!(change_from_event(&ct_event("GetParameter", "{}", None, None)).is_none());
        assert!(change_from_event(&ct_event("PutParameter", "{}", Some(true), None)).is_none());
        assert!(
            change_from_event(&ct_event("PutParameter", "{}", None, Some("AccessDenied")))
                .is_none()
        );
        let c = change_from_event(&ct_event(
            "TerminateInstances",
            r#"{"instancesSet":{"items":[{"instanceId":"i-1"},{"instanceId":"i-2"}]}}"#,
            None,
            Some(""),
        ))
        .unwrap();
        assert_eq!(c.resources, ["i-1", "i-2"]);
    }

    fn change(id: &str, t: i64, res: &str) -> Change {
        Change {
            event_id: id.into(),
            event_time: t,
            account: "1".into(),
            region: "r".into(),
            event_source: "ssm.amazonaws.com".into(),
            event_name: "PutParameter".into(),
            principal: "p".into(),
            resources: vec![res.into()],
        }
    }

    #[test]
    fn memory_index_is_bounded_by_time_and_count() {
        let idx = MemoryChangeIndex::new(ChangeIndexConfig {
            retention_secs: 10,
            max_per_scope: 3,
            table: String::new(),
        });
        let s = 1_000_000;
        assert!(idx.record(&change("a", 0, "x")).unwrap());
        assert!(!idx.record(&change("a", 0, "x")).unwrap());
        idx.record(&change("b", 5 * s, "x")).unwrap();
        idx.record(&change("c", 11 * s, "x")).unwrap(); // drops a (older than 11 - 10 s)
        let ids = |v: Vec<Change>| v.into_iter().map(|c| c.event_id).collect::<Vec<_>>();
        assert_eq!(ids(idx.recent(None, 0, i64::MAX, 10).unwrap()), ["c", "b"]);
        idx.record(&change("d", 12 * s, "x")).unwrap();
        idx.record(&change("e", 13 * s, "x")).unwrap(); // count bound 3: drops b
        assert_eq!(
            ids(idx.recent(Some(("1", "r")), 0, i64::MAX, 10).unwrap()),
            ["e", "d", "c"]
        );
        assert_eq!(
            ids(idx.recent(Some(("2", "r")), 0, i64::MAX, 10).unwrap()),
            Vec::<String>::new()
        );
        assert_eq!(ids(idx.recent(None, 12 * s, 12 * s, 10).unwrap()), ["d"]);
        // A duplicate of a kept change is refused; one of a dropped change is new again.
        assert!(!idx.record(&change("d", 12 * s, "x")).unwrap());
        assert!(idx.record(&change("b", 14 * s, "x")).unwrap());
        assert_eq!(
            ids(idx.recent(None, 0, i64::MAX, 10).unwrap()),
            ["b", "e", "d"]
        );
        // A change recorded out of event-time order takes its place by event time: the count
        // bound then drops the oldest by event time (d), not the first recorded.
        assert!(idx.record(&change("f", 13 * s + 1, "x")).unwrap());
        assert_eq!(
            ids(idx.recent(None, 0, i64::MAX, 10).unwrap()),
            ["b", "f", "e"]
        );
        assert_eq!(
            ids(idx.recent(None, 13 * s, 13 * s + 1, 10).unwrap()),
            ["f", "e"]
        );
        assert_eq!(
            ids(idx.recent(None, 14 * s, 13 * s, 10).unwrap()),
            Vec::<String>::new()
        );
    }

    #[test]
    fn ranking_scores_are_exact() {
        let cfg = GroupingConfig::default();
        let min = 60_000_000;
        let target = RankTarget {
            log_groups: vec!["/ecs/payments-api".into()],
            start: 10 * min,
            ..RankTarget::default()
        };
        let changes = vec![
            change("ssm", 8 * min, "/prod/payments/db-password"),
            change("other", 9 * min, "/prod/orders/db-password"),
        ];
        let r = rank_changes(&changes, &target, &cfg);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].event_id, "ssm");
        assert_eq!(r[0].reasons, ["same service", "name overlap"]);
        let want = 0.25 + 0.15 + 0.10 * (1.0 - 2.0 / 60.0);
        assert!((r[0].score - want).abs() < 1e-12, "{}", r[0].score);
        let same = RankTarget {
            resources: vec!["/prod/payments/db-password".into()],
            principals: vec!["p".into()],
            start: 8 * min,
            ..RankTarget::default()
        };
        let r = rank_changes(&changes, &same, &cfg);
        assert_eq!(
            r[0].reasons,
            [
                "same resource",
                "same service",
                "name overlap",
                "same principal"
            ]
        );
        assert!((r[0].score - 1.0).abs() < 1e-12);
        // the other change: same principal only, 1 min after the start (age 0)
        assert_eq!(r[1].event_id, "other");
        assert!((r[1].score - 0.2).abs() < 1e-12, "{}", r[1].score);
    }
}
