use aiops_act::notify::{Notification, Notifier, NotifyError};
use aiops_act::*;
use aiops_core::{Evidence, Finding, FindingKind, ResourceKey, WorkflowState};
use std::collections::BTreeMap;
use std::sync::Mutex;

fn finding(id: &str, kind: FindingKind, action: Option<&str>) -> Finding {
    Finding {
        suppressed: None,
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
        direction: None,
        priority: aiops_core::Priority::High,
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

impl RecoveryExecutor for Scripted {
    fn run(&self, plan: &RecoveryPlan, started: &mut dyn FnMut(&str)) -> BuildResult {
        self.plans.lock().unwrap().push(plan.clone());
        let outcome = self.outcomes.lock().unwrap().remove(0);
        let id = format!("b{}", self.plans.lock().unwrap().len());
        started(&id);
        BuildResult {
            build_id: Some(id),
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
    assert_eq!(
        i.enrichment_note.as_deref(),
        Some(
            "action \"delete_database\" rejected: not allowed for resource type \"ssm_parameter\" (allowed: restore)"
        )
    );
    assert_eq!(
        i.outcome.as_deref(),
        Some("recommended action rejected by the guard rails; needs a person")
    );
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
    let above_restore = ["recreate".to_string(), "restore".to_string()];
    assert!(
        s.try_lock("k", "restore", &above_restore, "a", 10, 100)
            .unwrap()
    );
    assert!(
        !s.try_lock("k", "restore", &above_restore, "b", 50, 200)
            .unwrap()
    );
    // The holder's own retried write is recognised.
    assert!(
        s.try_lock("k", "restore", &above_restore, "a", 50, 100)
            .unwrap()
    );
    // A more destructive action is not blocked by a lesser one's lock...
    assert!(
        s.try_lock("k", "recreate", &["recreate".to_string()], "c", 50, 300)
            .unwrap()
    );
    // ...and blocks the lesser one even after the lesser lock expired.
    assert!(
        !s.try_lock("k", "restore", &above_restore, "b", 100, 200)
            .unwrap()
    );
    assert!(
        s.try_lock("k", "restore", &above_restore, "b", 300, 400)
            .unwrap()
    );
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

// --- RDS, notifications, migration, wiring -------------------------------------------------

#[derive(Default)]
struct Recorder {
    sent: Mutex<Vec<Notification>>,
}

impl Notifier for Recorder {
    fn notify(&self, n: &Notification) -> Result<Option<String>, NotifyError> {
        let mut s = self.sent.lock().unwrap();
        s.push(n.clone());
        Ok(Some(format!("test:{}", s.len())))
    }
}

fn rds_finding(id: &str, detector: &str, resource_type: &str, db: &str, action: &str) -> Finding {
    let mut f = finding(id, FindingKind::ChangeRule, Some(action));
    f.detector = detector.into();
    f.resource.as_mut().unwrap().resource_type = resource_type.into();
    f.resource.as_mut().unwrap().resource_id = db.into();
    f
}

#[test]
fn every_default_change_rule_is_handled_including_rds() {
    // "Covered" means: the rule's resource type has allowed actions, the rule's default action
    // is among them, and a Terraform target exists, so the workflow can act on it.
    let rules =
        aiops_detect::rules::ChangeRules::new(&aiops_detect::rules::ChangeRulesConfig::default())
            .unwrap();
    let cfg = ActConfig::default();
    let mut types: Vec<String> = Vec::new();
    for r in rules.rules() {
        assert!(
            cfg.allows(&r.resource_type, &r.action),
            "rule {}: action {} not allowed for {}",
            r.name,
            r.action,
            r.resource_type
        );
        assert!(
            cfg.terraform_target(&r.resource_type, "x").is_some(),
            "rule {}: no target for {}",
            r.name,
            r.resource_type
        );
        types.push(r.resource_type.clone());
    }
    assert!(types.iter().any(|t| t == "rds_db_instance"));
    assert!(types.iter().any(|t| t == "rds_db_cluster"));
}

#[test]
fn rds_instance_and_cluster_deletions_are_recovered_with_their_targets() {
    let exec = Scripted {
        outcomes: Mutex::new(vec![
            BuildOutcome::Succeeded,
            BuildOutcome::Succeeded,
            BuildOutcome::Succeeded,
            BuildOutcome::Succeeded,
        ]),
        plans: Mutex::new(vec![]),
    };
    let mut p = profiles();
    for n in ["rds_delete_db_instance", "rds_delete_db_cluster"] {
        p.insert(
            n.into(),
            RuleProfile {
                severity: 9,
                category: "destructive".into(),
            },
        );
    }
    let wf = Workflow::new(
        SqliteStore::in_memory().unwrap(),
        StatisticalExplainer::new(p),
        &exec,
        ActConfig::default(),
        "w1".into(),
    );
    let a = wf
        .handle(&rds_finding(
            "r1",
            "rds_delete_db_instance",
            "rds_db_instance",
            "orders-db",
            "recreate",
        ))
        .unwrap()
        .incident
        .unwrap();
    let b = wf
        .handle(&rds_finding(
            "r2",
            "rds_delete_db_cluster",
            "rds_db_cluster",
            "orders-cluster",
            "recreate",
        ))
        .unwrap()
        .incident
        .unwrap();
    assert_eq!(a.state, WorkflowState::Resolved);
    assert_eq!(b.state, WorkflowState::Resolved);
    assert_eq!(a.severity, Some(9));
    let plans = exec.plans.lock().unwrap();
    let targets: Vec<&str> = plans
        .iter()
        .map(|p| p.environment["TF_TARGET"].as_str())
        .collect();
    assert_eq!(
        targets,
        vec![
            "aws_db_instance.orders_db",
            "aws_db_instance.orders_db",
            "aws_rds_cluster.orders_cluster",
            "aws_rds_cluster.orders_cluster"
        ]
    );
    assert_eq!(a.build_ids, vec!["b1".to_string(), "b2".to_string()]);
    assert_eq!(b.build_ids, vec!["b3".to_string(), "b4".to_string()]);
}

#[test]
fn each_final_state_notifies_exactly_once() {
    let exec = Scripted {
        outcomes: Mutex::new(vec![
            BuildOutcome::Succeeded,
            BuildOutcome::Succeeded,
            BuildOutcome::Succeeded,
            BuildOutcome::Failed("drift".into()),
        ]),
        plans: Mutex::new(vec![]),
    };
    let rec = Recorder::default();
    let wf = Workflow::new(
        SqliteStore::in_memory().unwrap(),
        StatisticalExplainer::new(profiles()),
        &exec,
        ActConfig::default(),
        "w1".into(),
    )
    .with_notifier(&rec);
    let resolved = wf
        .handle(&finding("n1", FindingKind::ChangeRule, Some("restore")))
        .unwrap()
        .incident
        .unwrap();
    // Same finding again (duplicate delivery): no second notification.
    assert!(
        !wf.handle(&finding("n1", FindingKind::ChangeRule, Some("restore")))
            .unwrap()
            .opened
    );
    // Same resource within the cooldown: SKIPPED_COOLDOWN, no notification.
    let skipped = wf
        .handle(&finding("n2", FindingKind::ChangeRule, Some("restore")))
        .unwrap()
        .incident
        .unwrap();
    assert_eq!(skipped.state, WorkflowState::SkippedCooldown);
    let mut other = finding("n3", FindingKind::ChangeRule, Some("restore"));
    other.resource.as_mut().unwrap().resource_id = "/prod/other".into();
    let failed = wf.handle(&other).unwrap().incident.unwrap();
    let mut stat = finding("n4", FindingKind::RateAnomaly, None);
    stat.resource = None;
    stat.score = 0.97;
    let review = wf.handle(&stat).unwrap().incident.unwrap();
    let sent = rec.sent.lock().unwrap();
    let subjects: Vec<&str> = sent.iter().map(|n| n.subject.as_str()).collect();
    assert_eq!(
        subjects,
        vec![
            "aiops RESOLVED sev 7: ssm_parameter /prod/db: restore verified",
            "aiops FAILED sev 7: ssm_parameter /prod/other: restore failed",
            "aiops MANUAL_REVIEW sev 7: no resource: needs a person",
        ]
    );
    assert_eq!(sent[0].severity, 7);
    assert_eq!(sent[0].resource_type, "ssm_parameter");
    assert_eq!(sent[2].resource_type, "none");
    assert_eq!(sent[1].json["outcome"], "verify build failed: drift");
    assert!(
        sent[0]
            .text
            .contains("Outcome: verified: no drift after apply\n")
    );
    drop(sent);
    // The notification is recorded on the incident.
    let get = |id: &str| wf.store().get(id).unwrap().unwrap().notification;
    assert_eq!(get(&resolved.incident_id).as_deref(), Some("test:1"));
    assert_eq!(get(&failed.incident_id).as_deref(), Some("test:2"));
    assert_eq!(get(&review.incident_id).as_deref(), Some("test:3"));
    assert_eq!(get(&skipped.incident_id), None);
    // The outcome counters feed the model's history.
    assert_eq!(
        wf.store().outcome_counts("ssm_parameter").unwrap(),
        BTreeMap::from([
            ("FAILED".to_string(), 1),
            ("RESOLVED".to_string(), 1),
            ("SKIPPED_COOLDOWN".to_string(), 1)
        ])
    );
}

#[test]
fn an_old_sqlite_file_is_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("incidents.sqlite");
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(
            "CREATE TABLE incidents (incident_id TEXT PRIMARY KEY, correlation_id TEXT NOT NULL, \
             resource_key TEXT NOT NULL, resource_type TEXT NOT NULL, resource_id TEXT NOT NULL, \
             workflow_state TEXT NOT NULL, finding TEXT NOT NULL, classification TEXT, confidence REAL, \
             severity INTEGER, reasoning TEXT, action TEXT, explainer TEXT, codebuild_project TEXT, \
             terraform_target TEXT, build_ids TEXT NOT NULL, outcome TEXT, timeline TEXT NOT NULL, \
             event_time INTEGER NOT NULL, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);",
        )
        .unwrap();
    }
    let wf = Workflow::new(
        SqliteStore::open(&path).unwrap(),
        StatisticalExplainer::new(profiles()),
        DryRunExecutor,
        ActConfig::default(),
        "w1".into(),
    );
    let i = wf
        .handle(&finding("m1", FindingKind::ChangeRule, Some("restore")))
        .unwrap()
        .incident
        .unwrap();
    assert_eq!(i.state, WorkflowState::Resolved);
    assert_eq!(wf.store().list(5).unwrap().len(), 1);
}

#[test]
fn build_wires_the_embedded_defaults_and_open_store_reads_them() {
    let dir = tempfile::tempdir().unwrap();
    let missing = aiops_act::open_store(&ActConfig::default(), dir.path(), true)
        .err()
        .unwrap()
        .to_string();
    assert_eq!(
        missing,
        format!(
            "no incident store at {} (run or replay first, or pass --data-dir)",
            dir.path().join("incidents.sqlite").display()
        )
    );
    let wf = aiops_act::build(&ActConfig::default(), dir.path(), "w1".into(), profiles()).unwrap();
    let i = wf
        .handle(&finding("w1", FindingKind::ChangeRule, Some("restore")))
        .unwrap()
        .incident
        .unwrap();
    assert_eq!(i.state, WorkflowState::Resolved);
    assert_eq!(i.explainer.as_deref(), Some("statistical"));
    assert!(i.build_ids[0].starts_with("dry-run:aiops-recovery-apply:"));
    drop(wf);
    let store = aiops_act::open_store(&ActConfig::default(), dir.path(), true).unwrap();
    assert_eq!(store.get("inc-w1").unwrap().unwrap(), i);
    let mut bad = ActConfig::default();
    bad.recovery.executor = "terraform".into();
    assert_eq!(
        aiops_act::build(&bad, dir.path(), "w".into(), profiles())
            .err()
            .unwrap()
            .to_string(),
        "act.recovery.executor: \"terraform\" is not dry_run or codebuild"
    );
}
