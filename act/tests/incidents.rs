//! Issue 16 scenarios on the embedded store (SQLite), with the SQLite and the in-memory
//! recent-changes indexes.

mod support;

use aiops_act::SqliteStore;
use aiops_act::changes::{ChangeIndexConfig, MemoryChangeIndex};
use std::sync::Arc;
use support::scenarios::*;

#[test]
fn a_delete_parameter_then_error_burst_sqlite_index() {
    let store = Arc::new(SqliteStore::in_memory().unwrap());
    delete_parameter_then_error_burst(store.clone(), store);
}

#[test]
fn a_delete_parameter_then_error_burst_memory_index() {
    delete_parameter_then_error_burst(
        SqliteStore::in_memory().unwrap(),
        Arc::new(MemoryChangeIndex::new(ChangeIndexConfig::default())),
    );
}

#[test]
fn c_cloudformation_delete_trail_goes_to_manual_review() {
    let store = Arc::new(SqliteStore::in_memory().unwrap());
    cfn_delete_trail_needs_a_person(store.clone(), store);
}

#[test]
fn d_policy_then_delete_bucket_plans_the_recreate() {
    let store = Arc::new(SqliteStore::in_memory().unwrap());
    policy_then_delete_bucket_plans_recreate(store.clone(), store);
}

#[test]
fn e_suppression_expires_and_feedback_holds_back() {
    let store = Arc::new(SqliteStore::in_memory().unwrap());
    suppressed_series_and_feedback(store.clone(), store);
}
