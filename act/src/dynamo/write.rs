//! Conditional writes that recognise their own retried write (DESIGN §6), and the reads of the
//! stuck-incident sweeper.
//!
//! The SDK retries a request whose response it did not get (a timeout, a reset connection, a
//! 5xx). When the first attempt was applied, the retry fails its own condition
//! (`attribute_not_exists(incident_id)`, `workflow_state = :from`) and DynamoDB answers
//! `ConditionalCheckFailedException`, which alone reads as "another worker moved it": the
//! workflow would stop and leave the incident in DETECTED or EXECUTING for nobody.
//!
//! So every conditional write of an incident item also sets [`WRITE_TOKEN_ATTR`] to a token
//! unique to that one call ([`new_write_token`]; the SDK's retry sends the same body, so the
//! same token). On `ConditionalCheckFailedException` the item as it is now comes back with the
//! error (`ReturnValuesOnConditionCheckFailure::AllOld`, aws-sdk-dynamodb 1.136), or, when the
//! service returns none, from one strongly consistent `GetItem`; if it carries our token, the
//! write that failed its condition was a retry of our own applied write, and the call reports
//! success. An update's condition also requires the item not to carry the call's token yet,
//! so a retry whose own condition would still hold (an annotation appending a build id) is
//! never applied twice.

use super::{DynamoStore, Expr, GSI_BY_STATE, Item, backend, is_conditional_failure, n, s};
use crate::incident::{Incident, StoreError};
use aiops_core::WorkflowState;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};

/// The attribute holding the token of the last conditional write of an incident item.
pub const WRITE_TOKEN_ATTR: &str = "write_token";

/// A token unique to one write call (a random UUID, 32 hex digits).
pub fn new_write_token() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Whether `item` carries `token` in [`WRITE_TOKEN_ATTR`].
pub(crate) fn carries_token(item: Option<&Item>, token: &str) -> bool {
    matches!(item.and_then(|i| i.get(WRITE_TOKEN_ATTR)), Some(AttributeValue::S(t)) if t == token)
}

impl DynamoStore {
    /// Writes a new incident item (`attribute_not_exists(incident_id)`) with a fresh token.
    /// Returns `true` when written, also when the write that failed its condition was the SDK's
    /// retry of our own applied put.
    ///
    /// # Errors
    /// [`StoreError::Rejected`] when DynamoDB refuses the item as invalid;
    /// [`StoreError::Backend`] for any other failure.
    pub(crate) fn create_item(&self, item: Item) -> Result<bool, StoreError> {
        self.create_item_with_token(item, &new_write_token())
    }

    /// [`DynamoStore::create_item`] with a given token: a second call with the same item and
    /// token is what the SDK's retry of an applied put sends.
    ///
    /// # Errors
    /// As [`DynamoStore::create_item`].
    pub fn create_item_with_token(&self, mut item: Item, token: &str) -> Result<bool, StoreError> {
        let id = match item.get("incident_id") {
            Some(AttributeValue::S(v)) => v.clone(),
            _ => {
                return Err(StoreError::Rejected(
                    "incident item without incident_id".into(),
                ));
            }
        };
        item.insert(WRITE_TOKEN_ATTR.into(), s(token));
        let mut e = Expr::default();
        let k = e.name("incident_id");
        let request = self
            .client
            .put_item()
            .table_name(&self.cfg.incidents_table)
            .set_item(Some(item))
            .condition_expression(format!("attribute_not_exists({k})"))
            .set_expression_attribute_names(e.names())
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        match self.rt.block_on(request.send()) {
            Ok(_) => Ok(true),
            Err(err) if is_conditional_failure(&err) => {
                let old = match err.as_service_error() {
                    Some(PutItemError::ConditionalCheckFailedException(c)) => c.item().cloned(),
                    _ => None,
                };
                self.ours(&id, old, token)
            }
            Err(err) => Err(backend("put incident", &err)),
        }
    }

    /// A conditional `UpdateItem` of incident `incident_id` (`SET` clauses `sets`, condition
    /// `condition`, names and values in `e`) that also sets a fresh token. Returns `true` when
    /// applied (also when the failed condition was the SDK's retry of our own applied
    /// update), `false` when the condition does not hold.
    ///
    /// # Errors
    /// [`StoreError::Rejected`] when DynamoDB refuses the request as invalid;
    /// [`StoreError::Backend`] for any other failure.
    pub(crate) fn update(
        &self,
        what: &str,
        incident_id: &str,
        e: Expr,
        sets: Vec<String>,
        condition: String,
    ) -> Result<bool, StoreError> {
        self.update_with_token(what, incident_id, e, sets, condition, &new_write_token())
    }

    /// [`DynamoStore::update`] with a given token.
    fn update_with_token(
        &self,
        what: &str,
        incident_id: &str,
        mut e: Expr,
        mut sets: Vec<String>,
        condition: String,
        token: &str,
    ) -> Result<bool, StoreError> {
        let t = e.name(WRITE_TOKEN_ATTR);
        let tv = e.value(s(token));
        sets.push(format!("{t} = {tv}"));
        // A retry of an applied update must not apply twice (a second build id appended, a
        // second timeline entry) even where its own condition still holds (annotate): the
        // item carrying this call's token fails it, and is then recognised as ours.
        let request = self
            .client
            .update_item()
            .table_name(&self.cfg.incidents_table)
            .key("incident_id", s(incident_id))
            .update_expression(format!("SET {}", sets.join(", ")))
            .condition_expression(format!(
                "({condition}) AND (attribute_not_exists({t}) OR {t} <> {tv})"
            ))
            .set_expression_attribute_names(e.names())
            .set_expression_attribute_values(e.values())
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        match self.rt.block_on(request.send()) {
            Ok(_) => Ok(true),
            Err(err) if is_conditional_failure(&err) => {
                let old = match err.as_service_error() {
                    Some(UpdateItemError::ConditionalCheckFailedException(c)) => c.item().cloned(),
                    _ => None,
                };
                self.ours(incident_id, old, token)
            }
            Err(err) => Err(backend(what, &err)),
        }
    }

    /// Whether the incident item (`old`, returned with the failed condition, else read with a
    /// consistent read) carries `token`: our own write was applied before.
    fn ours(&self, incident_id: &str, old: Option<Item>, token: &str) -> Result<bool, StoreError> {
        if let Some(item) = old {
            return Ok(carries_token(Some(&item), token));
        }
        let resp = self
            .rt
            .block_on(
                self.client
                    .get_item()
                    .table_name(&self.cfg.incidents_table)
                    .key("incident_id", s(incident_id))
                    .consistent_read(true)
                    .projection_expression("#t")
                    .expression_attribute_names("#t", WRITE_TOKEN_ATTR)
                    .send(),
            )
            .map_err(|err| backend("read write token", &err))?;
        let ours = carries_token(resp.item(), token);
        if ours {
            tracing::info!(incident = %incident_id, "conditional write failed on its own retried write; treated as applied");
        }
        Ok(ours)
    }

    /// See [`crate::IncidentStore::stuck`]: queries the `by_state` index per state, keeping
    /// items with `updated_at < updated_before` (a filter: the index sorts by `created_at`).
    pub(crate) fn stuck_incidents(
        &self,
        states: &[WorkflowState],
        updated_before: i64,
        limit: usize,
    ) -> Result<Vec<Incident>, StoreError> {
        let mut out = Vec::new();
        for state in states {
            let mut start: Option<Item> = None;
            loop {
                let mut e = Expr::default();
                let k = e.name("workflow_state");
                let v = e.value(s(state.as_str()));
                let u = e.name("updated_at");
                let before = e.value(n(updated_before));
                let request = self
                    .client
                    .query()
                    .table_name(&self.cfg.incidents_table)
                    .index_name(GSI_BY_STATE)
                    .key_condition_expression(format!("{k} = {v}"))
                    .filter_expression(format!("{u} < {before}"))
                    .set_expression_attribute_names(e.names())
                    .set_expression_attribute_values(e.values())
                    .set_exclusive_start_key(start.take());
                let resp = self
                    .rt
                    .block_on(request.send())
                    .map_err(|err| backend("query stuck incidents", &err))?;
                for item in resp.items() {
                    out.push(super::item_to_incident(item)?);
                }
                match resp.last_evaluated_key() {
                    Some(k) if !k.is_empty() && out.len() < limit.saturating_mul(4) => {
                        start = Some(k.clone());
                    }
                    _ => break,
                }
            }
        }
        out.sort_by(|a, b| {
            a.updated_at
                .cmp(&b.updated_at)
                .then_with(|| a.incident_id.cmp(&b.incident_id))
        });
        out.truncate(limit);
        Ok(out)
    }

    /// See [`crate::IncidentStore::claim`].
    pub(crate) fn claim_incident(
        &self,
        incident_id: &str,
        state: WorkflowState,
        seen_updated_at: i64,
        at: i64,
    ) -> Result<bool, StoreError> {
        let mut e = Expr::default();
        let ws = e.name("workflow_state");
        let st = e.value(s(state.as_str()));
        let ua = e.name("updated_at");
        let seen = e.value(n(seen_updated_at));
        let at_v = e.value(n(at));
        self.update(
            "claim stuck incident",
            incident_id,
            e,
            vec![format!("{ua} = {at_v}")],
            format!("{ws} = {st} AND {ua} = {seen}"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn a_token_is_recognised_only_when_it_is_ours() {
        let t = new_write_token();
        assert_eq!(t.len(), 32);
        assert_ne!(t, new_write_token());
        let item: Item = HashMap::from([(WRITE_TOKEN_ATTR.to_string(), s(t.clone()))]);
        assert!(carries_token(Some(&item), &t));
        assert!(!carries_token(Some(&item), "other"));
        assert!(!carries_token(None, &t));
        assert!(!carries_token(Some(&HashMap::new()), &t));
    }
}
