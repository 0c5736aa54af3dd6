//! The embedded incident store: one SQLite file (DESIGN §1, embedded mode).
//!
//! Transitions are `UPDATE ... WHERE incident_id = ? AND workflow_state = ?` and cooldown locks
//! `INSERT ... ON CONFLICT DO UPDATE ... WHERE expires_at <= now`, the SQLite equivalents of
//! DynamoDB conditional writes, so two processes sharing the file still start one recovery.

use crate::incident::{Incident, IncidentPatch, IncidentStore, StoreError, TimelineEntry};
use aiops_core::{Finding, WorkflowState};
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

/// An [`IncidentStore`] in a SQLite database file.
pub struct SqliteStore {
    conn: Mutex<Connection>,
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
CREATE TABLE IF NOT EXISTS outcome_counts (
    resource_type TEXT NOT NULL,
    workflow_state TEXT NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (resource_type, workflow_state)
);
";

/// Columns added after the first release: added to an existing file when missing.
const ADDED_COLUMNS: [&str; 3] = ["enrichment_note", "evidence_ref", "notification"];

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
        })
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
    updated_at, enrichment_note, evidence_ref, notification";

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
    }))
}

impl IncidentStore for SqliteStore {
    fn create(&self, i: &Incident) -> Result<bool, StoreError> {
        let finding = json(&i.finding)?;
        let build_ids = json(&i.build_ids)?;
        let timeline = json(&i.timeline)?;
        self.with(|c| {
            let n = c
                .execute(
                    &format!(
                        "INSERT OR IGNORE INTO incidents ({COLUMNS}) VALUES \
                         (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,?19,?20,?21,?22,?23,?24)"
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
                     notification = COALESCE(?17, notification) \
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
        holder: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<bool, StoreError> {
        self.with(|c| {
            let n = c
                .execute(
                    "INSERT INTO locks (resource_key, holder, expires_at) VALUES (?1, ?2, ?3) \
                     ON CONFLICT(resource_key) DO UPDATE SET holder = excluded.holder, \
                     expires_at = excluded.expires_at WHERE locks.expires_at <= ?4",
                    params![resource_key, holder, expires_at, now],
                )
                .map_err(backend)?;
            Ok(n == 1)
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
                    ],
                )
                .map_err(backend)?;
            tx.commit().map_err(backend)?;
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
