//! The `findings` and `incidents` history tables as the stages write them: conversion of the
//! act stage's incidents into rows of the `incidents` table.

use aiops_act::Incident;
use aiops_ingest::archive::{IncidentRow, finding_source};

/// The `incidents` row of an incident snapshot: JSON arrays for `build_ids` and the
/// `timeline` (`[{"state": "DETECTED", "at": "<RFC 3339 UTC>"}, ...]`), the partition from
/// the incident's finding.
pub fn incident_row(i: &Incident) -> IncidentRow {
    let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_string());
    let timeline: Vec<serde_json::Value> = i
        .timeline
        .iter()
        .map(|t| {
            serde_json::json!({
                "state": t.state.as_str(),
                "at": aiops_core::time::format_rfc3339_micros(t.at),
            })
        })
        .collect();
    let resource = i.finding.resource.as_ref();
    IncidentRow {
        incident_id: i.incident_id.clone(),
        correlation_id: non_empty(&i.correlation_id),
        resource_key: non_empty(&i.resource_key),
        resource_type: non_empty(&i.resource_type),
        resource_id: non_empty(&i.resource_id),
        account: resource.and_then(|r| r.account.clone()),
        region: resource.and_then(|r| r.region.clone()),
        finding_id: Some(i.finding.finding_id.clone()),
        detector: Some(i.finding.detector.clone()),
        kind: Some(i.finding.kind.as_str().to_string()),
        workflow_state: Some(i.state.as_str().to_string()),
        classification: i.classification.clone(),
        confidence: i.confidence,
        severity: i.severity.map(i32::from),
        reasoning: i.reasoning.clone(),
        action: i.action.clone(),
        explainer: i.explainer.clone(),
        codebuild_project: i.codebuild_project.clone(),
        terraform_target: i.terraform_target.clone(),
        build_ids: Some(serde_json::to_string(&i.build_ids).unwrap_or_else(|_| "[]".into())),
        outcome: i.outcome.clone(),
        timeline: Some(serde_json::Value::Array(timeline).to_string()),
        event_time: Some(i.event_time),
        created_at: Some(i.created_at),
        updated_at: Some(i.updated_at),
        source: Some(finding_source(&i.finding)),
    }
}
