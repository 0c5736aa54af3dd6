//! Comparing backtest findings with the live run's `findings` table.

use crate::error::Result;
use crate::location::{AwsAccess, HistoryLocation};
use crate::reader;

/// How backtest findings compare with the live run's `findings` table.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LiveComparison {
    /// Findings in the live table (in the time range).
    pub live: usize,
    /// Findings of the backtest.
    pub backtest: usize,
    /// Findings on both sides.
    pub matching: usize,
    /// Ids of findings only the live run made (at most 100).
    pub only_live: Vec<String>,
    /// Ids of findings only the backtest made (at most 100).
    pub only_backtest: Vec<String>,
}

/// What identifies a finding for the comparison: everything detect decides (id, kind,
/// detector, event time, resource, score, window, observed and expected values, evidence
/// ids), not the wall-clock `detected_at`.
fn finding_identity(f: &aiops_core::Finding) -> String {
    let mut f = f.clone();
    f.detected_at = 0;
    serde_json::to_string(&f).unwrap_or_default()
}

/// Compares `findings` with the `findings` table at `location` within `[from, to)` (by the
/// findings' event time).
///
/// # Errors
/// When the table cannot be read.
pub fn compare_live(
    location: &HistoryLocation,
    access: &AwsAccess,
    from: Option<i64>,
    to: Option<i64>,
    findings: &[aiops_core::Finding],
) -> Result<LiveComparison> {
    use std::collections::BTreeMap;
    let mut live: BTreeMap<String, String> = BTreeMap::new();
    reader::for_each_batch(location, access, "findings", |batch| {
        for f in aiops_ingest::archive::decode_findings_batch(batch)? {
            if from.is_some_and(|a| f.event_time < a) || to.is_some_and(|b| f.event_time >= b) {
                continue;
            }
            live.insert(finding_identity(&f), f.finding_id.clone());
        }
        Ok(())
    })?;
    let ours: BTreeMap<String, String> = findings
        .iter()
        .map(|f| (finding_identity(f), f.finding_id.clone()))
        .collect();
    let matching = ours.keys().filter(|k| live.contains_key(*k)).count();
    Ok(LiveComparison {
        live: live.len(),
        backtest: ours.len(),
        matching,
        only_live: live
            .iter()
            .filter(|(k, _)| !ours.contains_key(*k))
            .map(|(_, id)| id.clone())
            .take(100)
            .collect(),
        only_backtest: ours
            .iter()
            .filter(|(k, _)| !live.contains_key(*k))
            .map(|(_, id)| id.clone())
            .take(100)
            .collect(),
    })
}
