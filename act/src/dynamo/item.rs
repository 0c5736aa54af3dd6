//! Reading an incident item back (the attributes `DynamoStore::to_item` writes).

use super::Item;
use crate::group::IncidentGroup;
use crate::incident::{Incident, StoreError, TimelineEntry};
use aiops_core::{Finding, WorkflowState};
use aws_sdk_dynamodb::types::AttributeValue;

/// The incident an item holds.
///
/// # Errors
/// [`StoreError::Corrupt`] when a required attribute is missing or unreadable.
pub(crate) fn item_to_incident(item: &Item) -> Result<Incident, StoreError> {
    let id = match item.get("incident_id") {
        Some(AttributeValue::S(v)) => v.clone(),
        _ => {
            return Err(StoreError::Corrupt {
                id: "?".into(),
                reason: "no incident_id".into(),
            });
        }
    };
    let corrupt = |reason: String| StoreError::Corrupt {
        id: id.clone(),
        reason,
    };
    let get_s = |k: &str| match item.get(k) {
        Some(AttributeValue::S(v)) => Some(v.clone()),
        _ => None,
    };
    let req_s = |k: &str| get_s(k).ok_or_else(|| corrupt(format!("missing {k}")));
    let get_i = |k: &str| -> Result<Option<i64>, StoreError> {
        match item.get(k) {
            Some(AttributeValue::N(v)) => v
                .parse::<i64>()
                .map(Some)
                .map_err(|e| corrupt(format!("{k}: {e}"))),
            _ => Ok(None),
        }
    };
    let req_i = |k: &str| get_i(k)?.ok_or_else(|| corrupt(format!("missing {k}")));
    let state_name = req_s("workflow_state")?;
    let state = WorkflowState::parse(&state_name)
        .ok_or_else(|| corrupt(format!("unknown workflow_state {state_name:?}")))?;
    let finding: Finding =
        serde_json::from_str(&req_s("finding")?).map_err(|e| corrupt(format!("finding: {e}")))?;
    let confidence = match item.get("confidence") {
        Some(AttributeValue::N(v)) => Some(
            v.parse::<f64>()
                .map_err(|e| corrupt(format!("confidence: {e}")))?,
        ),
        _ => None,
    };
    let severity = get_i("severity")?.and_then(|v| u8::try_from(v).ok());
    let build_ids = match item.get("build_ids") {
        Some(AttributeValue::L(l)) => l
            .iter()
            .filter_map(|v| match v {
                AttributeValue::S(s) => Some(s.clone()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    let mut timeline = Vec::new();
    if let Some(AttributeValue::L(l)) = item.get("timeline") {
        for e in l {
            let AttributeValue::M(m) = e else {
                return Err(corrupt("timeline entry is not a map".into()));
            };
            let st = match m.get("state") {
                Some(AttributeValue::S(v)) => WorkflowState::parse(v),
                _ => None,
            }
            .ok_or_else(|| corrupt("timeline entry without a known state".into()))?;
            let at = match m.get("at") {
                Some(AttributeValue::N(v)) => v.parse::<i64>().ok(),
                _ => None,
            }
            .ok_or_else(|| corrupt("timeline entry without a time".into()))?;
            timeline.push(TimelineEntry { state: st, at });
        }
    }
    let group = match get_s("grp") {
        None => IncidentGroup::default(),
        Some(g) => serde_json::from_str(&g).map_err(|e| corrupt(format!("grp: {e}")))?,
    };
    Ok(Incident {
        group,
        incident_id: id.clone(),
        correlation_id: req_s("correlation_id")?,
        resource_key: req_s("resource_key")?,
        resource_type: get_s("resource_type").unwrap_or_default(),
        resource_id: get_s("resource_id").unwrap_or_default(),
        state,
        finding,
        classification: get_s("classification"),
        confidence,
        severity,
        reasoning: get_s("reasoning"),
        action: get_s("action"),
        explainer: get_s("explainer"),
        codebuild_project: get_s("codebuild_project"),
        terraform_target: get_s("terraform_target"),
        build_ids,
        outcome: get_s("outcome"),
        enrichment_note: get_s("enrichment_note"),
        evidence_ref: get_s("evidence_ref"),
        notification: get_s("notification"),
        raw_answer: get_s("raw_answer"),
        timeline,
        event_time: req_i("event_time")?,
        created_at: req_i("created_at")?,
        updated_at: req_i("updated_at")?,
    })
}
