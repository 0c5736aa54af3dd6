use aiops_act::*;
use aiops_core::{Evidence, Finding, FindingKind, ResourceKey, WorkflowState};
use std::collections::BTreeMap;
use std::sync::Mutex;

fn finding(id: &str, kind: FindingKind, action: Option<&str>) -> Finding {
    Finding {
        finding_id: id.into(),
        kind,
        detector: "ssm_delete_parameter".into(),
        event_time: 1_000,
        detected_at: 2_000,
        resource: Some(ResourceKey {
            resource_type: "ssm_parameter".into(),
            resource_id: "/prod/db".into(),
            account: Some("1".into()),
            region: Some("us-east-1".into()),
        }),
        score: 1.0,
        summary: "deleted".into(),
        default_action: action.map(Into::into),
        recoverable: kind == FindingKind::ChangeRule,
        evidence: Evidence::default(),
    }
}

fn profiles() -> BTreeMap<String, RuleProfile> {
    let mut m = BTreeMap::new();
    m.insert(
        "ssm_delete_parameter".to_string(),
        RuleProfile {
            severity: 7,
            category: "destructive".into(),
        },
    );
    m
}

struct Scripted {
    outcomes: Mutex<Vec<BuildOutcome>>,
    plans: Mutex<Vec<RecoveryPlan>>,
}

impl RecoveryExecutor for &Scripted {
    fn run(&self, plan: &RecoveryPlan) -> BuildResult {
        self.plans.lock().unwrap().push(plan.clone());
        let outcome = self.outcomes.lock().unwrap().remove(0);
        BuildResult {
            build_id: format!("b{}", self.plans.lock().unwrap().len()),
            outcome,
        }
    }
}

fn states(i: &Incident) -> Vec<WorkflowState> {
    i.timeline.iter().map(|t| t.state).collect()
}

#[test]
fn dry_run_change_rule_goes_through_every_state() {
    let wf = Workflow::new(
        SqliteStore::in_memory().unwrap(),
        StatisticalExplainer::new(profiles()),
        DryRunExecutor,
        ActConfig::default(),
        "w1".into(),
    );
    let h = wf
        .handle(&finding("f1", FindingKind::ChangeRule, Some("restore")))
        .unwrap();
    let i = h.incident.unwrap();
    use WorkflowState::*;
    assert_eq!(
        states(&i),
        vec![Detected, Analyzing, Decided, Executing, Verifying, Resolved]
    );
    assert_eq!(i.action.as_deref(), Some("restore"));
    assert_eq!(
        i.terraform_target.as_deref(),
        Some("aws_ssm_parameter._prod_db")
    );
    assert_eq!(i.codebuild_project.as_deref(), Some("aiops-recovery-apply"));
    assert_eq!(i.build_ids.len(), 2);
    assert!(i.build_ids[0].starts_with("dry-run:aiops-recovery-apply:"));
    assert!(i.build_ids[1].starts_with("dry-run:aiops-recovery-verify:"));
    assert!(i.outcome.unwrap().starts_with("dry_run"));
    // Same finding again: one incident, not two.
    let again = wf
        .handle(&finding("f1", FindingKind::ChangeRule, Some("restore")))
        .unwrap();
    assert!(!again.opened);
    assert_eq!(wf.store().list(10).unwrap().len(), 1);
}

#[test]
fn second_recovery_of_same_resource_is_skipped_by_cooldown() {
    let wf = Workflow::new(
        SqliteStore::in_memory().unwrap(),
        StatisticalExplainer::new(profiles()),
        DryRunExecutor,
        ActConfig::default(),
        "w1".into(),
    );
    wf.handle(&finding("f1", FindingKind::ChangeRule, Some("restore")))
        .unwrap();
    let i = wf
        .handle(&finding("f2", FindingKind::ChangeRule, Some("restore")))
        .unwrap()
        .incident
        .unwrap();
    assert_eq!(i.state, WorkflowState::SkippedCooldown);
    assert!(i.build_ids.is_empty());
}

#[test]
fn statistical_finding_goes_to_manual_review_without_build() {
    let wf = Workflow::new(
        SqliteStore::in_memory().unwrap(),
        StatisticalExplainer::new(profiles()),
        DryRunExecutor,
        ActConfig::default(),
        "w1".into(),
    );
    let mut f = finding("f3", FindingKind::RateAnomaly, None);
    f.resource = None;
    f.score = 0.97;
    let i = wf.handle(&f).unwrap().incident.unwrap();
    assert_eq!(i.state, WorkflowState::ManualReview);
    assert_eq!(i.classification.as_deref(), Some("ANOMALY"));
    assert_eq!(i.confidence, Some(0.97));
    assert_eq!(i.resource_key, "finding:f3");
    assert!(i.build_ids.is_empty());
}

#[test]
fn failing_verify_ends_failed_and_action_outside_allowlist_is_rejected() {
    let exec = Scripted {
        outcomes: Mutex::new(vec![
            BuildOutcome::Succeeded,
            BuildOutcome::Failed("drift: exit code 2".into()),
        ]),
        plans: Mutex::new(vec![]),
    };
    let wf = Workflow::new(
        SqliteStore::in_memory().unwrap(),
        StatisticalExplainer::new(profiles()),
        &exec,
        ActConfig::default(),
        "w1".into(),
    );
    let i = wf
        .handle(&finding("f4", FindingKind::ChangeRule, Some("restore")))
        .unwrap()
        .incident
        .unwrap();
    assert_eq!(i.state, WorkflowState::Failed);
    assert_eq!(
        i.outcome.as_deref(),
        Some("verify build failed: drift: exit code 2")
    );
    let plans = exec.plans.lock().unwrap();
    assert_eq!(
        plans[0].environment["TF_TARGET"],
        "aws_ssm_parameter._prod_db"
    );
    assert_eq!(plans[1].project, "aiops-recovery-verify");
    drop(plans);

    let mut bad = finding("f5", FindingKind::ChangeRule, Some("delete_database"));
    bad.resource.as_mut().unwrap().resource_id = "/other".into();
    let i = wf.handle(&bad).unwrap().incident.unwrap();
    assert_eq!(i.state, WorkflowState::ManualReview);
    assert_eq!(i.action, None);
    assert!(i.reasoning.unwrap().contains("rejected"));
    assert_eq!(exec.plans.lock().unwrap().len(), 2);
}

#[test]
fn low_confidence_threshold_sends_to_manual_review() {
    let cfg = ActConfig {
        confidence_threshold: 0.95,
        ..ActConfig::default()
    };
    let wf = Workflow::new(
        SqliteStore::in_memory().unwrap(),
        StatisticalExplainer::new(profiles()),
        DryRunExecutor,
        cfg,
        "w1".into(),
    );
    let i = wf
        .handle(&finding("f6", FindingKind::ChangeRule, Some("restore")))
        .unwrap()
        .incident
        .unwrap();
    assert_eq!(i.state, WorkflowState::ManualReview);
    assert_eq!(
        i.outcome.as_deref(),
        Some("confidence 0.90 below threshold 0.95")
    );
}

#[test]
fn transitions_are_conditional_and_locks_exclusive() {
    let s = SqliteStore::in_memory().unwrap();
    assert!(s.try_lock("k", "a", 10, 100).unwrap());
    assert!(!s.try_lock("k", "b", 50, 200).unwrap());
    assert!(s.try_lock("k", "b", 100, 200).unwrap());
    let err = s
        .transition(
            "x",
            WorkflowState::Detected,
            WorkflowState::Resolved,
            &IncidentPatch::default(),
            1,
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "incident x: transition DETECTED -> RESOLVED is not allowed"
    );
}
