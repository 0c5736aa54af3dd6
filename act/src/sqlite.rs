//! The embedded incident store: one SQLite file (DESIGN §1, embedded mode).
//!
//! Transitions are `UPDATE ... WHERE incident_id = ? AND workflow_state = ?` and cooldown locks
//! `INSERT ... ON CONFLICT DO UPDATE ... WHERE expires_at <= now`, the SQLite equivalents of
//! DynamoDB conditional writes, so two processes sharing the file still start one recovery.

use crate::changes::{Change, ChangeIndex, ChangeIndexConfig, sort_newest_first};
use crate::group::IncidentGroup;
use crate::incident::{Incident, IncidentPatch, IncidentStore, StoreError, TimelineEntry};
use crate::suppress::{Feedback, Suppression, SuppressionKind};
use aiops_core::{Finding, WorkflowState};
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

/// An [`IncidentStore`] (and [`ChangeIndex`]) in a SQLite database file.
///
/// Tables: `incidents` (the group as JSON in `grp`), `action_locks` (one row per (resource
/// key, action)), `group_index` (group key -> open incident), `suppressions`, `feedback`, and
/// `changes` (the recent-changes index, pruned on every write by event time and by count per
/// account and region, see [`ChangeIndexConfig`]).
pub struct SqliteStore {
    conn: Mutex<Connection>,
    changes: ChangeIndexConfig,
}

fn backend(e: rusqlite::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS incidents (
    incident_id TEXT PRIMARY KEY,
    correlation_id TEXT NOT NULL,
    resource_key TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    workflow_state TEXT NOT NULL,
    finding TEXT NOT NULL,
    classification TEXT,
    confidence REAL,
    severity INTEGER,
    reasoning TEXT,
    action TEXT,
    explainer TEXT,
    codebuild_project TEXT,
    terraform_target TEXT,
    build_ids TEXT NOT NULL,
    outcome TEXT,
    enrichment_note TEXT,
    evidence_ref TEXT,
    notification TEXT,
    timeline TEXT NOT NULL,
    event_time INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS incidents_by_resource ON incidents(resource_key, created_at);
CREATE INDEX IF NOT EXISTS incidents_by_state ON incidents(workflow_state, created_at);
CREATE TABLE IF NOT EXISTS locks (
    resource_key TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS action_locks (
    resource_key TEXT NOT NULL,
    action TEXT NOT NULL,
    holder TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (resource_key, action)
);
CREATE TABLE IF NOT EXISTS group_index (
    group_key TEXT PRIMARY KEY,
    incident_id TEXT NOT NULL,
    last_event_time INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS suppressions (
    suppression_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    value TEXT NOT NULL,
    reason TEXT,
    created_at INTEGER NOT NULL,
    expires_at INTEGER
);
CREATE TABLE IF NOT EXISTS feedback (
    incident_id TEXT NOT NULL,
    series_key TEXT NOT NULL,
    verdict TEXT NOT NULL,
    score REAL NOT NULL,
    note TEXT,
    at INTEGER NOT NULL,
    PRIMARY KEY (incident_id, series_key)
);
CREATE TABLE IF NOT EXISTS changes (
    event_id TEXT PRIMARY KEY,
    account TEXT NOT NULL,
    region TEXT NOT NULL,
    event_time INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS changes_by_scope ON changes(account, region, event_time);
CREATE INDEX IF NOT EXISTS changes_by_time ON changes(event_time);
CREATE TABLE IF NOT EXISTS outcome_counts (
    resource_type TEXT NOT NULL,
    workflow_state TEXT NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (resource_type, workflow_state)
);
";

/// Columns added after the first release: added to an existing file when missing.
const ADDED_COLUMNS: [&str; 5] = [
    "enrichment_note",
    "evidence_ref",
    "notification",
    "grp",
    "raw_answer",
];

fn migrate(conn: &Connection) -> Result<(), StoreError> {
    let mut stmt = conn
        .prepare("SELECT name FROM pragma_table_info('incidents')")
        .map_err(backend)?;
    let existing: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .map_err(backend)?
        .collect::<Result<_, _>>()
        .map_err(backend)?;
    for col in ADDED_COLUMNS {
        if !existing.iter().any(|c| c == col) {
            conn.execute_batch(&format!("ALTER TABLE incidents ADD COLUMN {col} TEXT"))
                .map_err(backend)?;
        }
    }
    Ok(())
}

impl SqliteStore {
    /// Opens (creating when missing) the database at `path`, in WAL mode with a 5 s busy
    /// timeout so several processes can share it.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the file cannot be opened or the schema created.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| StoreError::Backend(format!("{}: {e}", parent.display())))?;
        }
        let conn = Connection::open(path).map_err(backend)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(backend)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(backend)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(backend)?;
        conn.execute_batch(SCHEMA).map_err(backend)?;
        migrate(&conn)?;
        Ok(SqliteStore {
            conn: Mutex::new(conn),
            changes: ChangeIndexConfig::default(),
        })
    }

    /// The same store with these recent-changes bounds.
    pub fn with_change_bounds(mut self, cfg: ChangeIndexConfig) -> SqliteStore {
        self.changes = cfg;
        self
    }

    /// An in-memory store (tests).
    ///
    /// # Errors
    /// [`StoreError::Backend`] when SQLite fails.
    pub fn in_memory() -> Result<SqliteStore, StoreError> {
        let conn = Connection::open_in_memory().map_err(backend)?;
        conn.execute_batch(SCHEMA).map_err(backend)?;
        migrate(&conn)?;
        Ok(SqliteStore {
            conn: Mutex::new(conn),
            changes: ChangeIndexConfig::default(),
        })
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let guard = self
            .conn
            .lock()
            .map_err(|_| StoreError::Backend("connection mutex poisoned".into()))?;
        f(&guard)
    }
}

fn json<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Backend(e.to_string()))
}

const COLUMNS: &str = "incident_id, correlation_id, resource_key, resource_type, resource_id, \
    workflow_state, finding, classification, confidence, severity, reasoning, action, explainer, \
    codebuild_project, terraform_target, build_ids, outcome, timeline, event_time, created_at, \
    updated_at, enrichment_note, evidence_ref, notification, grp, raw_answer";

fn row_to_incident(row: &rusqlite::Row<'_>) -> rusqlite::Result<Result<Incident, StoreError>> {
    let id: String = row.get(0)?;
    let state: String = row.get(5)?;
    let finding: String = row.get(6)?;
    let build_ids: String = row.get(15)?;
    let timeline: String = row.get(17)?;
    let corrupt = |reason: String| StoreError::Corrupt {
        id: id.clone(),
        reason,
    };
    let Some(state) = WorkflowState::parse(&state) else {
        return Ok(Err(corrupt(format!("unknown workflow_state {state:?}"))));
    };
    let finding: Finding = match serde_json::from_str(&finding) {
        Ok(f) => f,
        Err(e) => return Ok(Err(corrupt(format!("finding: {e}")))),
    };
    let build_ids: Vec<String> = match serde_json::from_str(&build_ids) {
        Ok(v) => v,
        Err(e) => return Ok(Err(corrupt(format!("build_ids: {e}")))),
    };
    let timeline: Vec<TimelineEntry> = match serde_json::from_str(&timeline) {
        Ok(v) => v,
        Err(e) => return Ok(Err(corrupt(format!("timeline: {e}")))),
    };
    let severity: Option<i64> = row.get(9)?;
    let grp: Option<String> = row.get(24)?;
    let group: IncidentGroup = match grp.as_deref().map(serde_json::from_str) {
        None => IncidentGroup::default(),
        Some(Ok(g)) => g,
        Some(Err(e)) => return Ok(Err(corrupt(format!("grp: {e}")))),
    };
    Ok(Ok(Incident {
        incident_id: id.clone(),
        correlation_id: row.get(1)?,
        resource_key: row.get(2)?,
        resource_type: row.get(3)?,
        resource_id: row.get(4)?,
        state,
        finding,
        classification: row.get(7)?,
        confidence: row.get(8)?,
        severity: severity.and_then(|s| u8::try_from(s).ok()),
        reasoning: row.get(10)?,
        action: row.get(11)?,
        explainer: row.get(12)?,
        codebuild_project: row.get(13)?,
        terraform_target: row.get(14)?,
        build_ids,
        outcome: row.get(16)?,
        timeline,
        event_time: row.get(18)?,
        created_at: row.get(19)?,
        updated_at: row.get(20)?,
        enrichment_note: row.get(21)?,
        evidence_ref: row.get(22)?,
        notification: row.get(23)?,
        raw_answer: row.get(25)?,
        group,
    }))
}

impl IncidentStore for SqliteStore {
    fn create(&self, i: &Incident) -> Result<bool, StoreError> {
        let finding = json(&i.finding)?;
        let build_ids = json(&i.build_ids)?;
        let timeline = json(&i.timeline)?;
        let grp = json(&i.group)?;
        self.with(|c| {
            let n = c
                .execute(
                    &format!(
                        "INSERT OR IGNORE INTO incidents ({COLUMNS}) VALUES \
                         (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,?19,?20,?21,?22,?23,?24,?25,?26)"
                    ),
                    params![
                        i.incident_id,
                        i.correlation_id,
                        i.resource_key,
                        i.resource_type,
                        i.resource_id,
                        i.state.as_str(),
                        finding,
                        i.classification,
                        i.confidence,
                        i.severity.map(i64::from),
                        i.reasoning,
                        i.action,
                        i.explainer,
                        i.codebuild_project,
                        i.terraform_target,
                        build_ids,
                        i.outcome,
                        timeline,
                        i.event_time,
                        i.created_at,
                        i.updated_at,
                        i.enrichment_note,
                        i.evidence_ref,
                        i.notification,
                        grp,
                        i.raw_answer,
                    ],
                )
                .map_err(backend)?;
            Ok(n == 1)
        })
    }

    fn transition(
        &self,
        incident_id: &str,
        from: WorkflowState,
        to: WorkflowState,
        patch: &IncidentPatch,
        at: i64,
    ) -> Result<bool, StoreError> {
        if !from.can_move_to(to) {
            return Err(StoreError::IllegalTransition {
                id: incident_id.to_string(),
                from,
                to,
            });
        }
        self.with(|c| {
            let tx = c.unchecked_transaction().map_err(backend)?;
            let current: Option<(String, String, String)> = tx
                .query_row(
                    "SELECT workflow_state, timeline, build_ids FROM incidents WHERE incident_id = ?1",
                    params![incident_id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()
                .map_err(backend)?;
            let Some((state, timeline, build_ids)) = current else {
                return Ok(false);
            };
            if state != from.as_str() {
                return Ok(false);
            }
            let mut timeline: Vec<TimelineEntry> =
                serde_json::from_str(&timeline).map_err(|e| StoreError::Corrupt {
                    id: incident_id.to_string(),
                    reason: format!("timeline: {e}"),
                })?;
            timeline.push(TimelineEntry { state: to, at });
            let mut build_ids: Vec<String> =
                serde_json::from_str(&build_ids).map_err(|e| StoreError::Corrupt {
                    id: incident_id.to_string(),
                    reason: format!("build_ids: {e}"),
                })?;
            if let Some(b) = &patch.add_build_id {
                build_ids.push(b.clone());
            }
            let n = tx
                .execute(
                    "UPDATE incidents SET workflow_state = ?1, timeline = ?2, build_ids = ?3, \
                     classification = COALESCE(?4, classification), \
                     confidence = COALESCE(?5, confidence), \
                     severity = COALESCE(?6, severity), \
                     reasoning = COALESCE(?7, reasoning), \
                     action = COALESCE(?8, action), \
                     explainer = COALESCE(?9, explainer), \
                     codebuild_project = COALESCE(?10, codebuild_project), \
                     terraform_target = COALESCE(?11, terraform_target), \
                     outcome = COALESCE(?12, outcome), \
                     updated_at = ?13, \
                     enrichment_note = COALESCE(?16, enrichment_note), \
                     notification = COALESCE(?17, notification), \
                     raw_answer = COALESCE(?18, raw_answer) \
                     WHERE incident_id = ?14 AND workflow_state = ?15",
                    params![
                        to.as_str(),
                        json(&timeline)?,
                        json(&build_ids)?,
                        patch.classification,
                        patch.confidence,
                        patch.severity.map(i64::from),
                        patch.reasoning,
                        patch.action,
                        patch.explainer,
                        patch.codebuild_project,
                        patch.terraform_target,
                        patch.outcome,
                        at,
                        incident_id,
                        from.as_str(),
                        patch.enrichment_note,
                        patch.notification,
                        patch.raw_answer,
                    ],
                )
                .map_err(backend)?;
            tx.commit().map_err(backend)?;
            Ok(n == 1)
        })
    }

    fn try_lock(
        &self,
        resource_key: &str,
        action: &str,
        blocking: &[String],
        holder: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<bool, StoreError> {
        self.with(|c| {
            let tx = c.unchecked_transaction().map_err(backend)?;
            let mut held = false;
            for a in blocking.iter().map(String::as_str).chain([action]) {
                let other: Option<String> = tx
                    .query_row(
                        "SELECT holder FROM action_locks WHERE resource_key = ?1 AND action = ?2 \
                         AND expires_at > ?3 AND holder != ?4",
                        params![resource_key, a, now, holder],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(backend)?;
                held |= other.is_some();
            }
            if held {
                return Ok(false);
            }
            tx.execute(
                "INSERT INTO action_locks (resource_key, action, holder, expires_at) \
                 VALUES (?1, ?2, ?3, ?4) ON CONFLICT(resource_key, action) DO UPDATE SET \
                 holder = excluded.holder, expires_at = excluded.expires_at",
                params![resource_key, action, holder, expires_at],
            )
            .map_err(backend)?;
            tx.commit().map_err(backend)?;
            Ok(true)
        })
    }

    fn open_groups(&self, keys: &[String], since: i64) -> Result<Vec<String>, StoreError> {
        self.with(|c| {
            let mut out: Vec<String> = Vec::new();
            for k in keys {
                let id: Option<String> = c
                    .query_row(
                        "SELECT incident_id FROM group_index WHERE group_key = ?1 \
                         AND last_event_time >= ?2",
                        params![k, since],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(backend)?;
                if let Some(id) = id
                    && !out.contains(&id)
                {
                    out.push(id);
                }
            }
            Ok(out)
        })
    }

    fn index_groups(
        &self,
        keys: &[String],
        incident_id: &str,
        last_event_time: i64,
    ) -> Result<(), StoreError> {
        self.with(|c| {
            for k in keys {
                c.execute(
                    "INSERT INTO group_index (group_key, incident_id, last_event_time) \
                     VALUES (?1, ?2, ?3) ON CONFLICT(group_key) DO UPDATE SET \
                     incident_id = excluded.incident_id, last_event_time = excluded.last_event_time \
                     WHERE group_index.incident_id = excluded.incident_id \
                     OR group_index.last_event_time <= excluded.last_event_time",
                    params![k, incident_id, last_event_time],
                )
                .map_err(backend)?;
            }
            Ok(())
        })
    }

    fn update_group(
        &self,
        incident_id: &str,
        expected_version: u64,
        group: &IncidentGroup,
        at: i64,
    ) -> Result<bool, StoreError> {
        let body = json(group)?;
        self.with(|c| {
            let tx = c.unchecked_transaction().map_err(backend)?;
            let current: Option<Option<String>> = tx
                .query_row(
                    "SELECT grp FROM incidents WHERE incident_id = ?1",
                    params![incident_id],
                    |r| r.get(0),
                )
                .optional()
                .map_err(backend)?;
            let Some(current) = current else {
                return Ok(false);
            };
            let version = match current
                .as_deref()
                .map(serde_json::from_str::<IncidentGroup>)
            {
                None => 0,
                Some(Ok(g)) => g.version,
                Some(Err(e)) => {
                    return Err(StoreError::Corrupt {
                        id: incident_id.to_string(),
                        reason: format!("grp: {e}"),
                    });
                }
            };
            if version != expected_version {
                return Ok(false);
            }
            tx.execute(
                "UPDATE incidents SET grp = ?1, updated_at = ?2 WHERE incident_id = ?3",
                params![body, at, incident_id],
            )
            .map_err(backend)?;
            tx.commit().map_err(backend)?;
            Ok(true)
        })
    }

    fn put_suppression(&self, s: &Suppression) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "INSERT OR REPLACE INTO suppressions \
                 (suppression_id, kind, value, reason, created_at, expires_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    s.suppression_id,
                    s.kind.as_str(),
                    s.value,
                    s.reason,
                    s.created_at,
                    s.expires_at
                ],
            )
            .map_err(backend)?;
            Ok(())
        })
    }

    fn list_suppressions(&self) -> Result<Vec<Suppression>, StoreError> {
        self.with(|c| {
            let mut stmt = c
                .prepare(
                    "SELECT suppression_id, kind, value, reason, created_at, expires_at \
                     FROM suppressions ORDER BY created_at, suppression_id LIMIT 1000",
                )
                .map_err(backend)?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, Option<String>>(3)?,
                        r.get::<_, i64>(4)?,
                        r.get::<_, Option<i64>>(5)?,
                    ))
                })
                .map_err(backend)?;
            let mut out = Vec::new();
            for r in rows {
                let (id, kind, value, reason, created_at, expires_at) = r.map_err(backend)?;
                let kind = SuppressionKind::parse(&kind).ok_or_else(|| StoreError::Corrupt {
                    id: id.clone(),
                    reason: format!("unknown suppression kind {kind:?}"),
                })?;
                out.push(Suppression {
                    suppression_id: id,
                    kind,
                    value,
                    reason,
                    created_at,
                    expires_at,
                });
            }
            Ok(out)
        })
    }

    fn remove_suppression(&self, id_or_value: &str) -> Result<bool, StoreError> {
        self.with(|c| {
            let n = c
                .execute(
                    "DELETE FROM suppressions WHERE suppression_id = ?1 OR value = ?1",
                    params![id_or_value],
                )
                .map_err(backend)?;
            Ok(n > 0)
        })
    }

    fn add_feedback(&self, f: &Feedback) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "INSERT OR REPLACE INTO feedback (incident_id, series_key, verdict, score, note, at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    f.incident_id,
                    f.series_key,
                    f.verdict,
                    if f.score.is_finite() { f.score } else { 0.0 },
                    f.note,
                    f.at
                ],
            )
            .map_err(backend)?;
            Ok(())
        })
    }

    fn list_feedback(&self, since: i64) -> Result<Vec<Feedback>, StoreError> {
        self.with(|c| {
            let mut stmt = c
                .prepare(
                    "SELECT incident_id, series_key, verdict, score, note, at FROM feedback \
                     WHERE at >= ?1 ORDER BY at, incident_id, series_key LIMIT 10000",
                )
                .map_err(backend)?;
            let rows = stmt
                .query_map(params![since], |r| {
                    Ok(Feedback {
                        incident_id: r.get(0)?,
                        series_key: r.get(1)?,
                        verdict: r.get(2)?,
                        score: r.get(3)?,
                        note: r.get(4)?,
                        at: r.get(5)?,
                    })
                })
                .map_err(backend)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(backend)
        })
    }

    fn get(&self, incident_id: &str) -> Result<Option<Incident>, StoreError> {
        self.with(|c| {
            let r = c
                .query_row(
                    &format!("SELECT {COLUMNS} FROM incidents WHERE incident_id = ?1"),
                    params![incident_id],
                    row_to_incident,
                )
                .optional()
                .map_err(backend)?;
            r.transpose()
        })
    }

    fn annotate(
        &self,
        incident_id: &str,
        state: WorkflowState,
        patch: &IncidentPatch,
        at: i64,
    ) -> Result<bool, StoreError> {
        self.with(|c| {
            let tx = c.unchecked_transaction().map_err(backend)?;
            if let Some(b) = &patch.add_build_id {
                let current: Option<String> = tx
                    .query_row(
                        "SELECT build_ids FROM incidents WHERE incident_id = ?1 AND workflow_state = ?2",
                        params![incident_id, state.as_str()],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(backend)?;
                let Some(current) = current else {
                    return Ok(false);
                };
                let mut ids: Vec<String> =
                    serde_json::from_str(&current).map_err(|e| StoreError::Corrupt {
                        id: incident_id.to_string(),
                        reason: format!("build_ids: {e}"),
                    })?;
                ids.push(b.clone());
                tx.execute(
                    "UPDATE incidents SET build_ids = ?1 WHERE incident_id = ?2",
                    params![json(&ids)?, incident_id],
                )
                .map_err(backend)?;
            }
            let n = tx
                .execute(
                    "UPDATE incidents SET \
                     classification = COALESCE(?1, classification), \
                     confidence = COALESCE(?2, confidence), \
                     severity = COALESCE(?3, severity), \
                     reasoning = COALESCE(?4, reasoning), \
                     action = COALESCE(?5, action), \
                     explainer = COALESCE(?6, explainer), \
                     codebuild_project = COALESCE(?7, codebuild_project), \
                     terraform_target = COALESCE(?8, terraform_target), \
                     outcome = COALESCE(?9, outcome), \
                     enrichment_note = COALESCE(?10, enrichment_note), \
                     notification = COALESCE(?11, notification), \
                     raw_answer = COALESCE(?15, raw_answer), \
                     updated_at = ?12 \
                     WHERE incident_id = ?13 AND workflow_state = ?14",
                    params![
                        patch.classification,
                        patch.confidence,
                        patch.severity.map(i64::from),
                        patch.reasoning,
                        patch.action,
                        patch.explainer,
                        patch.codebuild_project,
                        patch.terraform_target,
                        patch.outcome,
                        patch.enrichment_note,
                        patch.notification,
                        at,
                        incident_id,
                        state.as_str(),
                        patch.raw_answer,
                    ],
                )
                .map_err(backend)?;
            tx.commit().map_err(backend)?;
            Ok(n == 1)
        })
    }

    fn stuck(
        &self,
        states: &[WorkflowState],
        updated_before: i64,
        limit: usize,
    ) -> Result<Vec<Incident>, StoreError> {
        let mut out = Vec::new();
        for state in states {
            let found: Vec<Incident> = self.with(|c| {
                let mut stmt = c
                    .prepare(&format!(
                        "SELECT {COLUMNS} FROM incidents WHERE workflow_state = ?1 AND updated_at < ?2 \
                         ORDER BY updated_at, incident_id LIMIT ?3"
                    ))
                    .map_err(backend)?;
                let rows = stmt
                    .query_map(
                        params![
                            state.as_str(),
                            updated_before,
                            i64::try_from(limit).unwrap_or(i64::MAX)
                        ],
                        row_to_incident,
                    )
                    .map_err(backend)?;
                let mut v = Vec::new();
                for r in rows {
                    v.push(r.map_err(backend)??);
                }
                Ok(v)
            })?;
            out.extend(found);
        }
        out.sort_by(|a, b| {
            a.updated_at
                .cmp(&b.updated_at)
                .then_with(|| a.incident_id.cmp(&b.incident_id))
        });
        out.truncate(limit);
        Ok(out)
    }

    fn claim(
        &self,
        incident_id: &str,
        state: WorkflowState,
        seen_updated_at: i64,
        at: i64,
    ) -> Result<bool, StoreError> {
        self.with(|c| {
            let n = c
                .execute(
                    "UPDATE incidents SET updated_at = ?1 \
                     WHERE incident_id = ?2 AND workflow_state = ?3 AND updated_at = ?4",
                    params![at, incident_id, state.as_str(), seen_updated_at],
                )
                .map_err(backend)?;
            Ok(n == 1)
        })
    }

    fn history(
        &self,
        resource_key: &str,
        exclude_incident_id: &str,
        limit: usize,
    ) -> Result<Vec<Incident>, StoreError> {
        self.with(|c| {
            let mut stmt = c
                .prepare(&format!(
                    "SELECT {COLUMNS} FROM incidents WHERE resource_key = ?1 AND incident_id != ?2 \
                     ORDER BY created_at DESC, incident_id LIMIT ?3"
                ))
                .map_err(backend)?;
            let rows = stmt
                .query_map(
                    params![
                        resource_key,
                        exclude_incident_id,
                        i64::try_from(limit).unwrap_or(i64::MAX)
                    ],
                    row_to_incident,
                )
                .map_err(backend)?;
            let mut out = Vec::new();
            for r in rows {
                out.push(r.map_err(backend)??);
            }
            Ok(out)
        })
    }

    fn count_outcome(&self, resource_type: &str, state: WorkflowState) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO outcome_counts (resource_type, workflow_state, count) VALUES (?1, ?2, 1) \
                 ON CONFLICT(resource_type, workflow_state) DO UPDATE SET count = count + 1",
                params![resource_type, state.as_str()],
            )
            .map_err(backend)?;
            Ok(())
        })
    }

    fn outcome_counts(&self, resource_type: &str) -> Result<BTreeMap<String, u64>, StoreError> {
        self.with(|c| {
            let mut stmt = c
                .prepare(
                    "SELECT workflow_state, count FROM outcome_counts WHERE resource_type = ?1",
                )
                .map_err(backend)?;
            let rows = stmt
                .query_map(params![resource_type], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
                })
                .map_err(backend)?;
            let mut out = BTreeMap::new();
            for r in rows {
                let (state, n) = r.map_err(backend)?;
                out.insert(state, u64::try_from(n).unwrap_or(0));
            }
            Ok(out)
        })
    }

    fn list(&self, limit: usize) -> Result<Vec<Incident>, StoreError> {
        self.with(|c| {
            let mut stmt = c
                .prepare(&format!(
                    "SELECT {COLUMNS} FROM incidents ORDER BY created_at DESC, incident_id LIMIT ?1"
                ))
                .map_err(backend)?;
            let rows = stmt
                .query_map(
                    params![i64::try_from(limit).unwrap_or(i64::MAX)],
                    row_to_incident,
                )
                .map_err(backend)?;
            let mut out = Vec::new();
            for r in rows {
                out.push(r.map_err(backend)??);
            }
            Ok(out)
        })
    }
}

impl ChangeIndex for SqliteStore {
    fn record(&self, change: &Change) -> Result<bool, StoreError> {
        let body = json(change)?;
        let retention = i64::try_from(self.changes.retention_secs)
            .unwrap_or(i64::MAX / 1_000_000)
            .saturating_mul(1_000_000);
        let max = i64::try_from(self.changes.max_per_scope).unwrap_or(i64::MAX);
        self.with(|c| {
            let tx = c.unchecked_transaction().map_err(backend)?;
            let n = tx
                .execute(
                    "INSERT OR IGNORE INTO changes (event_id, account, region, event_time, body) \
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![
                        change.event_id,
                        change.account,
                        change.region,
                        change.event_time,
                        body
                    ],
                )
                .map_err(backend)?;
            // Time bound: relative to the newest change of the scope (event time, so a
            // replay of old data keeps its own window).
            tx.execute(
                "DELETE FROM changes WHERE account = ?1 AND region = ?2 AND event_time < \
                 (SELECT MAX(event_time) FROM changes WHERE account = ?1 AND region = ?2) - ?3",
                params![change.account, change.region, retention],
            )
            .map_err(backend)?;
            // Count bound per scope: the oldest go first.
            tx.execute(
                "DELETE FROM changes WHERE event_id IN (SELECT event_id FROM changes \
                 WHERE account = ?1 AND region = ?2 ORDER BY event_time DESC, event_id \
                 LIMIT -1 OFFSET ?3)",
                params![change.account, change.region, max],
            )
            .map_err(backend)?;
            tx.commit().map_err(backend)?;
            Ok(n == 1)
        })
    }

    fn recent(
        &self,
        scope: Option<(&str, &str)>,
        since: i64,
        until: i64,
        limit: usize,
    ) -> Result<Vec<Change>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with(|c| {
            let (sql, account, region) = match scope {
                Some((a, r)) => (
                    "SELECT body FROM changes WHERE account = ?1 AND region = ?2 \
                     AND event_time >= ?3 AND event_time <= ?4 \
                     ORDER BY event_time DESC, event_id LIMIT ?5",
                    a,
                    r,
                ),
                None => (
                    "SELECT body FROM changes WHERE ?1 = ?1 AND ?2 = ?2 \
                     AND event_time >= ?3 AND event_time <= ?4 \
                     ORDER BY event_time DESC, event_id LIMIT ?5",
                    "",
                    "",
                ),
            };
            let mut stmt = c.prepare(sql).map_err(backend)?;
            let rows = stmt
                .query_map(params![account, region, since, until, limit], |r| {
                    r.get::<_, String>(0)
                })
                .map_err(backend)?;
            let mut out = Vec::new();
            for r in rows {
                let body = r.map_err(backend)?;
                let change: Change =
                    serde_json::from_str(&body).map_err(|e| StoreError::Corrupt {
                        id: "changes".into(),
                        reason: e.to_string(),
                    })?;
                out.push(change);
            }
            sort_newest_first(&mut out);
            Ok(out)
        })
    }
}
