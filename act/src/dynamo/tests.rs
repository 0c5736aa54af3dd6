//! Unit tests of the DynamoDB store: expressions, item sizes, trimming.

use super::*;
use aiops_core::{Evidence, FindingKind};

#[test]
fn expressions_only_use_placeholders() {
    let mut e = Expr::default();
    let mut sets = Vec::new();
    patch_clauses(
        &mut e,
        &IncidentPatch {
            action: Some("restore".into()),
            outcome: Some("x".into()),
            add_build_id: Some("b".into()),
            ..IncidentPatch::default()
        },
        &mut sets,
    );
    let text = sets.join(", ");
    assert_eq!(
        text,
        "#n0 = :v0, #n1 = :v1, #n2 = list_append(if_not_exists(#n2, :v2), :v3)"
    );
    let names = e.names().unwrap();
    assert_eq!(names["#n0"], "action");
    assert_eq!(names["#n1"], "outcome");
    assert_eq!(names["#n2"], "build_ids");
    assert_eq!(e.name("action"), "#n0");
}

#[test]
fn big_findings_are_trimmed_below_the_bound() {
    let f = Finding {
        suppressed: None,
        finding_id: "f".into(),
        kind: FindingKind::RateAnomaly,
        detector: "d".into(),
        event_time: 0,
        detected_at: 0,
        resource: None,
        score: 0.5,
        summary: "s".repeat(10_000),
        default_action: None,
        recoverable: false,
        evidence: Evidence {
            samples: vec!["x".repeat(100_000); 8],
            template: Some("t".repeat(50_000)),
            ..Evidence::default()
        },
        direction: None,
        priority: aiops_core::Priority::High,
    };
    let (t, cut) = trim_finding(&f, 16 * 1024);
    assert!(cut);
    let len = serde_json::to_string(&t).unwrap().len();
    assert!(len <= 16 * 1024, "{len}");
    assert_eq!(t.evidence.samples.len(), 5);
    assert!(t.evidence.samples.iter().all(|s| s.len() <= 1024));
    let (same, cut) = trim_finding(&t, 1 << 20);
    assert!(!cut);
    assert_eq!(same, t);
    // Tighter: the samples go first, the template stays.
    let (t, _) = trim_finding(&f, 8 * 1024);
    assert!(serde_json::to_string(&t).unwrap().len() <= 8 * 1024);
    assert!(t.evidence.samples.is_empty());
    assert_eq!(t.evidence.template.as_ref().map(String::len), Some(4096));
}
