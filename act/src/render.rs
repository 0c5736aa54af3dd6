//! The text view of an incident (what `aiops incidents show ID` prints): state, priority,
//! resource, the related changes first, the findings with their series, counts against the
//! expected and top contributors, the timeline, the action and its outcome, and the model's raw
//! answer when a model answered (control characters escaped). The JSON form
//! (`--json`) is the serialised [`Incident`] and keeps everything.

use crate::incident::Incident;
use crate::text::truncate_utf8;
use aiops_core::time::format_rfc3339_micros;
use std::fmt::Write as _;

fn num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// `incident` as readable text (lines end with `\n`; free text cut to bounded lengths).
pub fn render_incident(i: &Incident) -> String {
    let mut t = String::new();
    let g = &i.group;
    let priority = g
        .priority
        .map(|p| p.as_str())
        .unwrap_or(crate::group::finding_priority(&i.finding).as_str());
    let _ = writeln!(t, "Incident {}", i.incident_id);
    let _ = writeln!(
        t,
        "State:     {}{}",
        i.state.as_str(),
        if g.closed {
            " (closed: not an incident)"
        } else {
            ""
        }
    );
    let _ = writeln!(t, "Priority:  {priority}");
    let resource = if i.resource_type.is_empty() {
        "none".to_string()
    } else {
        format!("{} {}", i.resource_type, truncate_utf8(&i.resource_id, 256))
    };
    let _ = writeln!(t, "Resource:  {resource}");
    let count = g.finding_count.max(1);
    let (first, last) = if g.finding_ids.is_empty() {
        (i.event_time, i.event_time)
    } else {
        (g.first_event_time, g.last_event_time)
    };
    let _ = writeln!(
        t,
        "Span:      {} .. {} ({} finding{})",
        format_rfc3339_micros(first),
        format_rfc3339_micros(last),
        count,
        if count == 1 { "" } else { "s" }
    );
    let _ = writeln!(t, "Summary:   {}", truncate_utf8(&i.finding.summary, 512));

    let _ = writeln!(t, "\nRelated changes (most related first):");
    if g.related_changes.is_empty() {
        let _ = writeln!(t, "  none found in the lookback");
    }
    for (n, c) in g.related_changes.iter().enumerate() {
        let _ = writeln!(
            t,
            "  {}. {} {} {} by {} at {} (score {:.2}: {}) [{}]",
            n + 1,
            c.event_source,
            c.event_name,
            if c.resource.is_empty() {
                "-"
            } else {
                c.resource.as_str()
            },
            c.principal,
            format_rfc3339_micros(c.event_time),
            c.score,
            c.reasons.join(", "),
            c.event_id
        );
    }

    let _ = writeln!(t, "\nFindings:");
    let briefs = if g.findings.is_empty() {
        vec![crate::group::FindingBrief::of(&i.finding)]
    } else {
        g.findings.clone()
    };
    for b in &briefs {
        let _ = writeln!(
            t,
            "  - {} {} {} at {} (score {:.4}, {})",
            b.finding_id,
            b.kind,
            b.detector,
            format_rfc3339_micros(b.event_time),
            b.score,
            b.priority.as_str()
        );
        if let Some(s) = &b.series_key {
            let _ = writeln!(t, "      series: {s}");
        }
        match (b.observed, b.expected) {
            (Some(o), Some(e)) => {
                let _ = writeln!(t, "      count: {} vs expected {}", num(o), num(e));
            }
            (Some(o), None) => {
                let _ = writeln!(t, "      observed: {}", num(o));
            }
            _ => {}
        }
        if !b.contributors.is_empty() {
            let _ = writeln!(t, "      top contributors: {}", b.contributors.join(", "));
        }
        let _ = writeln!(t, "      {}", b.summary);
    }
    if (briefs.len() as u64) < count {
        let _ = writeln!(t, "  ... and {} more", count - briefs.len() as u64);
    }
    let e = &i.finding.evidence;
    if e.principal.is_some() || !e.samples.is_empty() || !e.event_ids.is_empty() {
        let _ = writeln!(t, "\nEvidence (first finding):");
    }
    if let Some(p) = &e.principal {
        let _ = writeln!(t, "  principal: {}", truncate_utf8(p, 256));
    }
    if !e.event_ids.is_empty() {
        let ids: Vec<String> = e
            .event_ids
            .iter()
            .take(5)
            .map(|x| truncate_utf8(x, 128))
            .collect();
        let _ = writeln!(t, "  events: {}", ids.join(", "));
    }
    for s in e.samples.iter().take(3) {
        let _ = writeln!(t, "  sample: {}", truncate_utf8(s, 256));
    }

    let _ = writeln!(t, "\nTimeline:");
    for e in &i.timeline {
        let _ = writeln!(t, "  {} {}", format_rfc3339_micros(e.at), e.state.as_str());
    }

    let _ = writeln!(t, "\nDecision:");
    let _ = writeln!(
        t,
        "  classification {} confidence {} severity {} by {}",
        i.classification.as_deref().unwrap_or("-"),
        i.confidence.map_or("-".to_string(), |c| format!("{c:.2}")),
        i.severity.map_or("-".to_string(), |s| s.to_string()),
        i.explainer.as_deref().unwrap_or("-")
    );
    if let Some(r) = &i.reasoning {
        let _ = writeln!(t, "  reasoning: {}", truncate_utf8(r, 1024));
    }
    let _ = writeln!(t, "  action: {}", i.action.as_deref().unwrap_or("none"));
    if let Some(target) = &i.terraform_target {
        let _ = writeln!(t, "  terraform target: {target}");
    }
    if !i.build_ids.is_empty() {
        let _ = writeln!(t, "  builds: {}", i.build_ids.join(", "));
    }
    let _ = writeln!(t, "  outcome: {}", i.outcome.as_deref().unwrap_or("-"));
    if let Some(n) = &i.enrichment_note {
        let _ = writeln!(t, "  note: {}", truncate_utf8(n, 1024));
    }
    if let Some(raw) = &i.raw_answer {
        let _ = writeln!(t, "\nModel answer (raw, as received):");
        for line in raw.lines() {
            let _ = writeln!(t, "  {}", escape_controls(line));
        }
    }
    t
}

/// `line` with control characters other than tab written as `\u{..}`: a model answer is
/// untrusted text and must not drive the terminal (escape sequences).
fn escape_controls(line: &str) -> String {
    line.chars()
        .map(|c| {
            if c.is_control() && c != '\t' {
                format!("\\u{{{:x}}}", u32::from(c))
            } else {
                c.to_string()
            }
        })
        .collect()
}
