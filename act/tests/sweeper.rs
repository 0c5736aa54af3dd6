//! The stuck-incident sweeper over the embedded store (SQLite): the same resumption as in aws
//! mode (see `finish_moto.rs` for DynamoDB and CodeBuild).

use aiops_act::sweeper::SweepReport;
use aiops_act::*;
use aiops_core::{Evidence, Finding, FindingKind, ResourceKey, WorkflowState};
use std::collections::BTreeMap;
use std::sync::Mutex;

const MIN: i64 = 60_000_000;
const NOW: i64 = 1_800_000_000_000_000;

fn finding(id: &str) -> Finding {
    Finding {
        suppressed: None,
        finding_id: id.into(),
        kind: FindingKind::ChangeRule,
        detector: "ssm_delete_parameter".into(),
        event_time: NOW - 200 * MIN,
        detected_at: NOW - 200 * MIN,
        resource: Some(ResourceKey {
            resource_type: "ssm_parameter".into(),
            resource_id: "/prod/db".into(),
            account: Some("1".into()),
            region: Some("us-east-1".into()),
        }),
        score: 1.0,
        summary: "deleted".into(),
        default_action: Some("restore".into()),
        recoverable: true,
        evidence: Evidence::default(),
        direction: None,
        priority: aiops_core::Priority::High,
    }
}

fn profiles() -> BTreeMap<String, RuleProfile> {
    BTreeMap::from([(
        "ssm_delete_parameter".to_string(),
        RuleProfile {
            severity: 7,
            category: "destructive".into(),
        },
    )])
}

/// Records the builds it starts and the builds it waits for; every build succeeds.
#[derive(Default)]
struct Counting {
    started: Mutex<Vec<String>>,
    waited: Mutex<Vec<String>>,
    /// Builds "already running" per project (started by a worker that died before it
    /// recorded the id), found by correlation id.
    running: Mutex<Vec<(String, String, String)>>,
}

impl RecoveryExecutor for Counting {
    fn run(&self, plan: &RecoveryPlan, started: &mut dyn FnMut(&str)) -> BuildResult {
        let id = format!(
            "{}:new-{}",
            plan.project,
            self.started.lock().unwrap().len()
        );
        self.started.lock().unwrap().push(id.clone());
        started(&id);
        BuildResult {
            build_id: Some(id),
            outcome: BuildOutcome::Succeeded,
        }
    }
    fn find_started(&self, plan: &RecoveryPlan, exclude: &[String]) -> Option<String> {
        self.running
            .lock()
            .unwrap()
            .iter()
            .find(|(p, c, id)| {
                *p == plan.project
                    && *c == plan.environment["CORRELATION_ID"]
                    && !exclude.contains(id)
            })
            .map(|(_, _, id)| id.clone())
    }
    fn wait(&self, build_id: &str) -> BuildResult {
        self.waited.lock().unwrap().push(build_id.to_string());
        BuildResult {
            build_id: Some(build_id.to_string()),
            outcome: BuildOutcome::Succeeded,
        }
    }
}

fn incident(id: &str, state: WorkflowState, updated_at: i64, build_ids: &[&str]) -> Incident {
    let f = finding(id);
    let states: Vec<WorkflowState> = WorkflowState::ALL
        .iter()
        .copied()
        .take_while(|s| *s != state)
        .chain([state])
        .collect();
    Incident {
        incident_id: format!("inc-{id}"),
        correlation_id: format!("corr-{id}"),
        resource_key: f.resource.as_ref().unwrap().key(),
        resource_type: "ssm_parameter".into(),
        resource_id: "/prod/db".into(),
        state,
        finding: f,
        classification: Some("FAILURE".into()),
        confidence: Some(0.9),
        severity: Some(7),
        reasoning: Some("r".into()),
        action: Some("restore".into()),
        explainer: Some("statistical".into()),
        codebuild_project: Some("aiops-recovery-apply".into()),
        terraform_target: Some("aws_ssm_parameter.this[\"/prod/db\"]".into()),
        build_ids: build_ids.iter().map(|s| s.to_string()).collect(),
        outcome: None,
        enrichment_note: None,
        evidence_ref: None,
        notification: None,
        raw_answer: None,
        timeline: states
            .into_iter()
            .map(|state| TimelineEntry {
                state,
                at: updated_at,
            })
            .collect(),
        group: Default::default(),
        event_time: updated_at,
        created_at: updated_at,
        updated_at,
    }
}

fn workflow(store: SqliteStore) -> Workflow<SqliteStore, StatisticalExplainer, Counting> {
    Workflow::new(
        store,
        StatisticalExplainer::new(profiles()),
        Counting::default(),
        ActConfig::default(),
        "sweeper".into(),
    )
}

#[test]
fn executing_with_a_recorded_build_is_verified_not_rebuilt() {
    let store = SqliteStore::in_memory().unwrap();
    let i = incident(
        "x1",
        WorkflowState::Executing,
        NOW - 180 * MIN,
        &["aiops-recovery-apply:old-1"],
    );
    assert!(store.create(&i).unwrap());
    let wf = workflow(store);
    let r = wf.sweep(NOW).unwrap();
    assert_eq!(
        r,
        SweepReport {
            found: 1,
            resumed: 1,
            claimed_elsewhere: 0,
            errors: 0
        }
    );
    let i = wf.store().get("inc-x1").unwrap().unwrap();
    assert_eq!(i.state, WorkflowState::Resolved);
    assert_eq!(i.outcome.as_deref(), Some("verified: no drift after apply"));
    // The recorded apply build was waited for; the only build started is the verify build.
    assert_eq!(
        *wf.executor().waited.lock().unwrap(),
        vec!["aiops-recovery-apply:old-1".to_string()]
    );
    assert_eq!(
        *wf.executor().started.lock().unwrap(),
        vec!["aiops-recovery-verify:new-0".to_string()]
    );
    assert_eq!(
        i.build_ids,
        vec!["aiops-recovery-apply:old-1", "aiops-recovery-verify:new-0"]
    );
    // Done: a second sweep finds nothing.
    assert_eq!(wf.sweep(NOW).unwrap(), SweepReport::default());
}

#[test]
fn stuck_states_resume_from_where_they_stopped_and_young_ones_wait() {
    let store = SqliteStore::in_memory().unwrap();
    let old = NOW - 20 * MIN;
    // DETECTED: decided again from the stored finding, then recovered.
    assert!(
        store
            .create(&incident("d1", WorkflowState::Detected, old, &[]))
            .unwrap()
    );
    // DECIDED after its own lock was taken (the worker died before EXECUTING): its own lock
    // does not make it SKIPPED_COOLDOWN.
    let decided = incident("d2", WorkflowState::Decided, old - MIN, &[]);
    assert!(store.create(&decided).unwrap());
    let blocking = workflow::blocking_actions("restore", &["restore".to_string()]);
    assert!(
        store
            .try_lock(
                &decided.resource_key,
                "restore",
                &blocking,
                "inc-d2",
                old,
                NOW + 60 * MIN
            )
            .unwrap()
    );
    // EXECUTING without a build id: the apply build is started.
    assert!(
        store
            .create(&incident(
                "d3",
                WorkflowState::Executing,
                old - 2 * MIN,
                &[]
            ))
            .unwrap()
    );
    // Younger than 15 minutes: left to its worker.
    assert!(
        store
            .create(&incident(
                "d4",
                WorkflowState::Analyzing,
                NOW - 5 * MIN,
                &[]
            ))
            .unwrap()
    );
    let wf = workflow(store);
    let r = wf.sweep(NOW).unwrap();
    assert_eq!(r.found, 3);
    assert_eq!(r.resumed, 3);
    let state = |id: &str| wf.store().get(id).unwrap().unwrap();
    // Oldest change first: d3 (EXECUTING: apply, verify), d2 (its own lock recognised:
    // apply, verify), d1 (decided again; d2 holds the resource's lock: cooldown).
    assert_eq!(state("inc-d2").state, WorkflowState::Resolved);
    assert_eq!(state("inc-d3").state, WorkflowState::Resolved);
    assert_eq!(state("inc-d1").state, WorkflowState::SkippedCooldown);
    assert_eq!(state("inc-d4").state, WorkflowState::Analyzing);
    let started = wf.executor().started.lock().unwrap().clone();
    assert_eq!(
        started,
        vec![
            "aiops-recovery-apply:new-0",
            "aiops-recovery-verify:new-1",
            "aiops-recovery-apply:new-2",
            "aiops-recovery-verify:new-3",
        ]
    );
}

#[test]
fn a_build_started_but_never_recorded_is_found_and_verified_not_started_again() {
    let store = SqliteStore::in_memory().unwrap();
    // The worker died between StartBuild and recording the id: EXECUTING, no build id.
    assert!(
        store
            .create(&incident(
                "u1",
                WorkflowState::Executing,
                NOW - 20 * MIN,
                &[]
            ))
            .unwrap()
    );
    let wf = workflow(store);
    wf.executor().running.lock().unwrap().extend([
        (
            "aiops-recovery-apply".to_string(),
            "corr-other".to_string(),
            "aiops-recovery-apply:other".to_string(),
        ),
        (
            "aiops-recovery-apply".to_string(),
            "corr-u1".to_string(),
            "aiops-recovery-apply:lost-1".to_string(),
        ),
    ]);
    let r = wf.sweep(NOW).unwrap();
    assert_eq!(r.resumed, 1);
    let i = wf.store().get("inc-u1").unwrap().unwrap();
    assert_eq!(i.state, WorkflowState::Resolved);
    assert_eq!(
        *wf.executor().waited.lock().unwrap(),
        vec!["aiops-recovery-apply:lost-1".to_string()]
    );
    // Only the verify build was started; the found apply build is recorded first.
    assert_eq!(
        *wf.executor().started.lock().unwrap(),
        vec!["aiops-recovery-verify:new-0".to_string()]
    );
    assert_eq!(
        i.build_ids,
        vec!["aiops-recovery-apply:lost-1", "aiops-recovery-verify:new-0"]
    );
}
