//! Turning a close's candidates into findings: the novelty cap, priorities, naming the top
//! contributors, merging one window's nested findings ([`crate::triage`]) and the per-close cap.
//! Split from [`crate::engine`].

use super::*;

impl StatsEngine {
    pub(super) fn finalize(&mut self, mut candidates: Vec<Candidate>) -> Vec<Finding> {
        // Novelty cap per scope and window, in a deterministic order.
        candidates.sort_by(|a, b| {
            let ka = self.key_of(a.slot);
            let kb = self.key_of(b.slot);
            a.window_start
                .cmp(&b.window_start)
                .then(kind_rank(a.kind).cmp(&kind_rank(b.kind)))
                .then(ka.cmp(kb))
        });
        let mut per_scope: BTreeMap<(i64, String), u32> = BTreeMap::new();
        let mut findings = Vec::with_capacity(candidates.len());
        let now = aiops_core::time::now_micros();
        for c in candidates {
            let Some(Some(s)) = self.series.get(c.slot) else {
                continue;
            };
            let spec = s.spec.clone();
            if c.kind == FindingKind::Novelty {
                let scope = spec.novelty_scope.clone().unwrap_or_default();
                let n = per_scope.entry((c.window_start, scope)).or_insert(0);
                if *n >= self.cfg.novelty.max_per_window {
                    self.counters.novelty_suppressed += 1;
                    continue;
                }
                *n += 1;
            }
            let template = spec.template.as_ref().and_then(|(g, id)| {
                self.groups
                    .get_mut(g)
                    .and_then(|g| g.miner.template_text(*id))
            });
            let top = self.name_contributors(&spec, &c.top);
            findings.push(self.make_finding(&spec, &c, template, top, now));
        }
        let mut findings = triage::merge(findings);
        let cap = self.cfg.max_findings_per_close.max(1);
        if findings.len() > cap {
            let mut order: Vec<usize> = (0..findings.len()).collect();
            let scores: Vec<f64> = findings.iter().map(|f| f.score).collect();
            order.sort_by(|&a, &b| {
                let sa = scores.get(a).copied().unwrap_or(0.0);
                let sb = scores.get(b).copied().unwrap_or(0.0);
                sb.total_cmp(&sa).then(a.cmp(&b))
            });
            let mut keep = vec![false; findings.len()];
            for &i in order.iter().take(cap) {
                if let Some(k) = keep.get_mut(i) {
                    *k = true;
                }
            }
            self.counters.findings_dropped += (findings.len() - cap) as u64;
            findings = findings
                .into_iter()
                .zip(keep)
                .filter_map(|(f, k)| k.then_some(f))
                .collect();
        }
        self.counters.findings += findings.len() as u64;
        findings
    }

    /// Names the top contributors of a window: template ids of a log level series by their
    /// template text in the series' log group, principals from the name table.
    fn name_contributors(&mut self, spec: &Spec, top: &[TopEntry]) -> Vec<Contributor> {
        let group = spec
            .key
            .strip_prefix("log_level:")
            .and_then(|r| r.rsplit_once(':'))
            .map(|(g, _)| g);
        top.iter()
            .map(|e| {
                let name = match group {
                    Some(g) => self
                        .groups
                        .get_mut(g)
                        .and_then(|g| g.miner.template_text(e.id))
                        .map_or_else(|| format!("template {}", e.id), |t| truncate_chars(&t, 120)),
                    None => self
                        .names
                        .get(&e.id)
                        .map_or_else(|| format!("{:016x}", e.id), |n| n.to_string()),
                };
                Contributor {
                    name,
                    count: e.count,
                }
            })
            .collect()
    }

    fn key_of(&self, slot: usize) -> &str {
        match self.series.get(slot) {
            Some(Some(s)) => &s.spec.key,
            _ => "",
        }
    }

    fn make_finding(
        &self,
        spec: &Spec,
        c: &Candidate,
        template: Option<String>,
        top: Vec<Contributor>,
        now: i64,
    ) -> Finding {
        let window_end = c.window_start + self.window_us;
        let secs = self.window_us / MICROS;
        let start_text = aiops_core::time::format_rfc3339_micros(c.window_start);
        let (detector, summary) = match c.kind {
            FindingKind::Novelty => {
                let s = match &template {
                    Some(t) => format!(
                        "New log template in {}: \"{}\" (first seen in the {secs} s window from {start_text})",
                        spec.resource
                            .as_ref()
                            .map_or("?", |r| r.resource_id.as_str()),
                        truncate_chars(t, 160)
                    ),
                    None => format!(
                        "First {} (in the {secs} s window from {start_text})",
                        spec.what
                    ),
                };
                (spec.novelty_detector, s)
            }
            FindingKind::ValueAnomaly => (
                spec.detector,
                format!(
                    "{} = {:.4} in the {secs} s window from {start_text}, expected {:.4} (score {:.2})",
                    spec.what, c.observed, c.expected, c.score
                ),
            ),
            _ => {
                let what = match &template {
                    Some(t) => format!("{} \"{}\"", spec.what, truncate_chars(t, 120)),
                    None => spec.what.clone(),
                };
                let dir = match c.direction {
                    Some(Direction::Drop) => "drop",
                    _ => "spike",
                };
                let mut summary = format!(
                    "{what} in the {secs} s window from {start_text}: {} observed, {:.2} expected ({dir}, score {:.2})",
                    c.observed, c.expected, c.score
                );
                if !top.is_empty() {
                    let _ = write!(
                        summary,
                        "; top: {}",
                        triage::contributors_text(&top, c.observed)
                    );
                }
                (spec.detector, summary)
            }
        };
        let priority = triage::priority(
            c.kind,
            c.direction,
            &spec.key,
            template.as_deref(),
            triage::Distance {
                observed: c.observed,
                expected: c.expected,
                score: c.score,
                marginal: c.marginal,
            },
        );
        Finding {
            suppressed: None,
            finding_id: finding_id(detector, &spec.key, c.window_start),
            kind: c.kind,
            detector: detector.to_string(),
            event_time: window_end,
            detected_at: now,
            resource: spec.resource.clone(),
            score: c.score,
            summary,
            default_action: None,
            recoverable: false,
            direction: c.direction,
            priority,
            evidence: Evidence {
                top_contributors: top,
                event_ids: c.event_ids.clone(),
                series_key: Some(spec.key.clone()),
                window: Some((c.window_start, window_end)),
                observed: Some(c.observed),
                expected: Some(c.expected),
                template_id: spec.template.as_ref().map(|(_, id)| template_key(*id)),
                template,
                samples: c.samples.clone(),
                principal: spec
                    .resource
                    .as_ref()
                    .filter(|r| r.resource_type == "iam_principal")
                    .map(|r| r.resource_id.clone()),
                ..Evidence::default()
            },
        }
    }
}

fn kind_rank(k: FindingKind) -> u8 {
    match k {
        FindingKind::ChangeRule => 0,
        FindingKind::RateAnomaly => 1,
        FindingKind::ValueAnomaly => 2,
        FindingKind::Novelty => 3,
    }
}
