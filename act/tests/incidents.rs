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
fn disable_key_then_schedule_key_deletion_is_not_swallowed_by_the_cooldown() {
    let store = Arc::new(SqliteStore::in_memory().unwrap());
    disable_then_schedule_key_deletion_needs_a_person(store.clone(), store);
}

#[test]
fn e_suppression_expires_and_feedback_holds_back() {
    let store = Arc::new(SqliteStore::in_memory().unwrap());
    suppressed_series_and_feedback(store.clone(), store);
}

struct Recorder {
    sent: std::sync::Mutex<Vec<aiops_act::notify::Notification>>,
}

impl aiops_act::notify::Notifier for &Recorder {
    fn notify(
        &self,
        n: &aiops_act::notify::Notification,
    ) -> Result<Option<String>, aiops_act::notify::NotifyError> {
        let mut s = self.sent.lock().unwrap();
        s.push(n.clone());
        Ok(Some(format!("test:{}", s.len())))
    }
}

/// One notification when the incident opens, one when its priority rises, none for a
/// finding that joins without raising it.
#[test]
fn notifies_on_open_and_priority_rise_not_per_finding() {
    use aiops_act::clock::ManualClock;
    let rec = Recorder {
        sent: std::sync::Mutex::new(Vec::new()),
    };
    let store = Arc::new(SqliteStore::in_memory().unwrap());
    // Every priority opens an incident here, so a LOW finding opens one and its rise is seen.
    let wf = workflow(store.clone(), store, Arc::new(ManualClock::new(T0)))
        .with_notifier(&rec)
        .with_incident_priorities(vec![
            aiops_act::Priority::Low,
            aiops_act::Priority::Medium,
            aiops_act::Priority::High,
        ]);
    let series = "log_level:/ecs/payments-api:ERROR";
    let h = wf.handle(&stat("n1", series, T0, 0.95, 10.0, 2.0)).unwrap();
    assert!(h.opened);
    assert_eq!(
        h.incident.unwrap().group.priority,
        Some(aiops_act::Priority::Low)
    );
    let h = wf
        .handle(&stat(
            "n2",
            "log_template:/ecs/payments-api:t-1",
            T0 + 60 * SEC,
            0.96,
            9.0,
            1.0,
        ))
        .unwrap();
    assert!(h.joined);
    let h = wf
        .handle(&stat("n3", series, T0 + 120 * SEC, 0.9995, 80.0, 2.0))
        .unwrap();
    assert!(h.joined);
    let i = h.incident.unwrap();
    assert_eq!(i.group.priority, Some(aiops_act::Priority::High));
    assert_eq!(i.group.finding_count, 3);
    let subjects: Vec<String> = rec
        .sent
        .lock()
        .unwrap()
        .iter()
        .map(|n| n.subject.clone())
        .collect();
    assert_eq!(
        subjects,
        [
            "aiops MANUAL_REVIEW sev 7: no resource: needs a person".to_string(),
            "aiops priority raised to HIGH: 10 in log_level:/ecs/payments-api:ERROR, expected 2"
                .to_string(),
        ]
    );
}

/// The text view of the CloudFormation-invoked DeleteTrail incident, exactly.
#[test]
fn text_view_of_the_cloudformation_delete_trail() {
    use aiops_act::clock::ManualClock;
    let store = Arc::new(SqliteStore::in_memory().unwrap());
    let wf = workflow(store.clone(), store, Arc::new(ManualClock::new(T0)));
    let (_, findings) = aiops_detect::rules::ChangeRules::new(&Default::default())
        .unwrap()
        .evaluate(&cfn_delete_trail_event());
    let i = wf.handle(&findings[0]).unwrap().incident.unwrap();
    let text = aiops_act::render_incident(&i);
    assert_eq!(text, EXPECTED_TEXT.replace("{ID}", &findings[0].finding_id));
}

const EXPECTED_TEXT: &str = "\
Incident inc-{ID}
State:     MANUAL_REVIEW
Priority:  HIGH
Resource:  cloudtrail_trail example-trail
Span:      2019-01-01T00:00:00.000000Z .. 2019-01-01T00:00:00.000000Z (1 finding)
Summary:   cloudtrail.amazonaws.com DeleteTrail on cloudtrail_trail example-trail by arn:aws:sts::123456789012:assumed-role/example-role/example-user; not recovered automatically: invoked through cloudformation.amazonaws.com on behalf of a person (recovery would fight the stack)

Related changes (most related first):
  none found in the lookback

Findings:
  - {ID} change_rule cloudtrail_delete_trail at 2019-01-01T00:00:00.000000Z (score 1.0000, HIGH)
      cloudtrail.amazonaws.com DeleteTrail on cloudtrail_trail example-trail by arn:aws:sts::123456789012:assumed-role/example-role/example-user; not recovered automatically: invoked through cloudformation.amazonaws.com on behalf of a person (recovery would fight the stack)

Evidence (first finding):
  principal: arn:aws:iam::123456789012:role/example-role
  events: fc906f39-d1f3-5c39-a503-d0aae7cbaadf
  sample: {\"name\":\"example-trail\"}

Timeline:
  2023-11-14T22:13:20.000000Z DETECTED
  2023-11-14T22:13:20.000000Z ANALYZING
  2023-11-14T22:13:20.000000Z DECIDED
  2023-11-14T22:13:20.000000Z MANUAL_REVIEW

Decision:
  classification TAMPERING confidence 0.90 severity 9 by statistical
  reasoning: Change rule cloudtrail_delete_trail matched a successful DeleteTrail call on cloudtrail_trail example-trail; it weakens logging or protection (defence evasion).
  action: none
  outcome: detected, not recovered: invoked through cloudformation.amazonaws.com on behalf of a person (recovery would fight the stack); needs a person
  note: action \"recreate\" not taken: invoked through cloudformation.amazonaws.com on behalf of a person (recovery would fight the stack)
";

/// The SQLite recent-changes index is bounded by event time and by count per scope.
#[test]
fn sqlite_change_index_is_bounded_by_time_and_count() {
    use aiops_act::changes::{Change, ChangeIndex};
    let store = SqliteStore::in_memory()
        .unwrap()
        .with_change_bounds(ChangeIndexConfig {
            retention_secs: 10,
            max_per_scope: 3,
            table: String::new(),
        });
    let c = |id: &str, t: i64, account: &str| Change {
        event_id: id.into(),
        event_time: t,
        account: account.into(),
        region: "r".into(),
        event_source: "s3.amazonaws.com".into(),
        event_name: "PutBucketPolicy".into(),
        principal: "p".into(),
        resources: vec!["b".into()],
    };
    let ids = |v: Vec<Change>| v.into_iter().map(|c| c.event_id).collect::<Vec<_>>();
    assert!(store.record(&c("a", 0, "1")).unwrap());
    assert!(!store.record(&c("a", 0, "1")).unwrap());
    store.record(&c("b", 5 * SEC, "1")).unwrap();
    store.record(&c("x", 0, "2")).unwrap();
    store.record(&c("c", 11 * SEC, "1")).unwrap(); // a is older than 11 s - 10 s
    assert_eq!(
        ids(store.recent(None, 0, i64::MAX, 10).unwrap()),
        ["c", "b", "x"]
    );
    store.record(&c("d", 12 * SEC, "1")).unwrap();
    store.record(&c("e", 13 * SEC, "1")).unwrap(); // three per scope: b goes
    assert_eq!(
        ids(store.recent(Some(("1", "r")), 0, i64::MAX, 10).unwrap()),
        ["e", "d", "c"]
    );
    assert_eq!(
        ids(store.recent(Some(("2", "r")), 0, i64::MAX, 10).unwrap()),
        ["x"]
    );
    assert_eq!(
        ids(store.recent(None, 12 * SEC, 13 * SEC, 1).unwrap()),
        ["e"]
    );
}

/// With the default incident priorities (`HIGH` only), a `LOW` finding opens no incident and
/// says so; a `HIGH` one opens it, and a later `LOW` finding of the same group joins it.
#[test]
fn only_the_configured_priorities_open_an_incident() {
    use aiops_act::clock::ManualClock;
    let store = Arc::new(SqliteStore::in_memory().unwrap());
    let wf = workflow(store.clone(), store, Arc::new(ManualClock::new(T0)));
    let series = "log_level:/ecs/payments-api:ERROR";
    let low = wf.handle(&stat("p1", series, T0, 0.95, 10.0, 2.0)).unwrap();
    assert!(low.incident.is_none() && !low.opened && low.below_priority);
    let high = wf
        .handle(&stat("p2", series, T0 + 60 * SEC, 0.9995, 80.0, 2.0))
        .unwrap();
    assert!(high.opened && !high.below_priority);
    let joined = wf
        .handle(&stat("p3", series, T0 + 120 * SEC, 0.95, 12.0, 2.0))
        .unwrap();
    assert!(joined.joined && !joined.below_priority);
    assert_eq!(
        joined.incident.unwrap().group.finding_ids,
        vec!["p2".to_string(), "p3".to_string()]
    );
}
