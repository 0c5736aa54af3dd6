//! Triage of the engine's findings (DESIGN §4): the priority of a finding, the top contributors
//! of an aggregate series in a window, and the merging of one window's findings on nested
//! series into one. Split from [`crate::engine`], which calls it at every window close.
//!
//! - **Priority** ([`priority`]): change rules and drops of a busy series are `HIGH`; a spike
//!   or novelty takes the severity of what it counts: the log level (FATAL, ERROR -> `HIGH`;
//!   WARN -> `MEDIUM`), the words of the template (an upper-case ERROR/FATAL/CRITICAL/SEVERE/
//!   PANIC token, a class name ending in `Exception` or `Error`, `Traceback` -> `HIGH`;
//!   WARN/WARNING -> `MEDIUM`; anything else, INFO and DEBUG included -> `LOW`), the error code
//!   (authorisation failures such as `AccessDenied` -> `HIGH`, other codes -> `MEDIUM`), and
//!   `LOW` for call counts per principal or event source. Then the distance from the
//!   expectation: a `MEDIUM` spike at least [`FAR_RATIO`] times its expectation with a score of
//!   at least [`FAR_SCORE`] becomes `HIGH`; a *marginal* spike (one window whose tail
//!   probability is above `10^−decades`, refuted by the next window of the series, which is not
//!   itself a spike with `p ≤ 0.01`: what an over-dispersed series does now and then) is one step lower (`HIGH` -> `MEDIUM`,
//!   `MEDIUM` -> `LOW`). A first principal/API pair is `MEDIUM`; a value anomaly `HIGH` (its
//!   detector decides). Syslog severities (RFC 5424 §6.2.1) and the usual log levels are the
//!   source of the word lists. By default only `HIGH` opens an incident (see
//!   `StatisticsConfig::incident_priorities`).
//! - **Top contributors** ([`TopK`]): the Space-Saving sketch of Metwally, Agrawal and El Abbadi
//!   (2005), "Efficient computation of frequent and top-k elements in data streams": at most
//!   [`TOP_K`] counters per series and window; a newcomer replaces the smallest counter and
//!   inherits its count as its error. The reported count is the guaranteed one (count minus
//!   error), exact for a contributor that was never evicted.
//! - **Merging** ([`merge`]): findings of the same window and direction whose series share a
//!   family key (a log group; an error code; a principal; an event source) are one finding;
//!   the one of highest priority, then largest count, then score, stays and the others become
//!   its `related` evidence. Its priority is the highest of the group.

use aiops_core::{Contributor, Direction, Finding, FindingKind, Priority};

/// Counters per series and window in the top-contributor sketch.
pub const TOP_K: usize = 8;
/// Contributors named in a finding.
pub const TOP_REPORTED: usize = 3;
/// A spike at least this many times its expectation is "far" (see [`priority`]).
pub const FAR_RATIO: f64 = 10.0;
/// A score at least this is "far" (see [`priority`]).
pub const FAR_SCORE: f64 = 0.9;

/// One counter of the sketch: contributor id, count and error. The id is named when a
/// finding is made (principals from the engine's name table, templates from their miner), so
/// counting allocates nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TopEntry {
    /// Contributor id: a hash of the principal, or a template id.
    pub id: u64,
    /// Count, an upper bound of the true count.
    pub count: u64,
    /// Over-count inherited when the entry replaced another.
    pub error: u64,
}

/// A Space-Saving sketch of at most [`TOP_K`] counters (see the module documentation). Empty
/// sketches do not allocate.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TopK {
    entries: Vec<TopEntry>,
}

impl TopK {
    /// Counts one event of contributor `id` (one allocation per sketch, when it is first used).
    pub fn add(&mut self, id: u64) {
        if let Some(e) = self.entries.iter_mut().find(|e| e.id == id) {
            e.count += 1;
            return;
        }
        if self.entries.len() < TOP_K {
            self.entries.push(TopEntry {
                id,
                count: 1,
                error: 0,
            });
            return;
        }
        if let Some(min) = self.entries.iter_mut().min_by_key(|e| e.count) {
            let c = min.count;
            *min = TopEntry {
                id,
                count: c + 1,
                error: c,
            };
        }
    }

    /// The entries with their guaranteed counts (count minus error), largest first (ties by
    /// id), at most `n`, dropping those whose guaranteed count is 0.
    pub fn top(&self, n: usize) -> Vec<TopEntry> {
        let mut v: Vec<TopEntry> = self
            .entries
            .iter()
            .map(|e| TopEntry {
                id: e.id,
                count: e.count - e.error,
                error: 0,
            })
            .filter(|e| e.count > 0)
            .collect();
        v.sort_by(|a, b| b.count.cmp(&a.count).then(a.id.cmp(&b.id)));
        v.truncate(n);
        v
    }
}

/// Whether an upper-case token names an error severity.
fn error_word(w: &str) -> bool {
    matches!(
        w,
        "ERROR" | "ERR" | "FATAL" | "CRITICAL" | "CRIT" | "SEVERE" | "PANIC" | "EMERG" | "ALERT"
    ) || w == "Traceback"
        || ((w.ends_with("Exception") || w.ends_with("Error"))
            && w.chars().next().is_some_and(char::is_uppercase))
}

/// The severity a text's words imply: `High` for error words, `Medium` for warnings, else
/// `Low` (see the module documentation).
pub fn text_severity(text: &str) -> Priority {
    let mut out = Priority::Low;
    for w in text.split(|c: char| !c.is_ascii_alphanumeric() && c != '_') {
        if error_word(w) {
            return Priority::High;
        }
        if matches!(w, "WARN" | "WARNING" | "Warning") {
            out = Priority::Medium;
        }
    }
    out
}

/// The severity of a CloudTrail error code: authorisation and authentication failures are
/// `High` (someone is trying what they may not), other codes `Medium`.
pub fn error_code_severity(code: &str) -> Priority {
    const AUTH: [&str; 8] = [
        "AccessDenied",
        "Unauthorized",
        "AuthFailure",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "NotAuthorized",
        "Forbidden",
        "InvalidAccessKeyId",
    ];
    if AUTH.iter().any(|a| code.contains(a)) {
        Priority::High
    } else {
        Priority::Medium
    }
}

/// The severity of the series itself, from its key (`log_level:<group>:<LEVEL>`,
/// `api_error:<code>`, `api_error_principal:<principal>:<code>`) or its template text.
fn series_severity(key: &str, template: Option<&str>) -> Priority {
    if let Some(rest) = key.strip_prefix("log_level:") {
        return match rest.rsplit_once(':').map(|x| x.1) {
            Some("FATAL" | "ERROR") => Priority::High,
            Some("WARN") => Priority::Medium,
            _ => Priority::Low,
        };
    }
    if let Some(code) = key.strip_prefix("api_error:") {
        return error_code_severity(code);
    }
    if let Some(rest) = key.strip_prefix("api_error_principal:") {
        return error_code_severity(rest.rsplit_once(':').map_or(rest, |x| x.1));
    }
    if key.starts_with("log_template:") {
        return template.map_or(Priority::Low, text_severity);
    }
    Priority::Low
}

/// How far a finding is from its expectation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Distance {
    /// Observed count per window (rate findings) or value.
    pub observed: f64,
    /// Expected count per window or value.
    pub expected: f64,
    /// Score in [0, 1].
    pub score: f64,
    /// A spike that the next window refuted (see `engine::close::count_window`).
    pub marginal: bool,
}

/// The priority of a statistical finding of series `key` (see the module documentation).
pub fn priority(
    kind: FindingKind,
    direction: Option<Direction>,
    key: &str,
    template: Option<&str>,
    d: Distance,
) -> Priority {
    let Distance {
        observed,
        expected,
        score,
        marginal,
    } = d;
    match kind {
        FindingKind::ChangeRule | FindingKind::ValueAnomaly => Priority::High,
        FindingKind::Novelty => {
            if key.starts_with("log_template:") {
                template.map_or(Priority::Medium, text_severity)
            } else {
                Priority::Medium
            }
        }
        FindingKind::RateAnomaly => {
            if direction == Some(Direction::Drop) {
                return Priority::High;
            }
            let base = series_severity(key, template);
            let far = score >= FAR_SCORE && observed >= FAR_RATIO * expected.max(f64::MIN_POSITIVE);
            match base {
                Priority::Medium if far && !marginal => Priority::High,
                Priority::High if marginal => Priority::Medium,
                Priority::Medium if marginal => Priority::Low,
                p => p,
            }
        }
    }
}

/// The family keys of a series (see the module documentation): findings of one window and
/// direction sharing one are merged.
pub fn family_keys(key: &str) -> Vec<String> {
    let (prefix, rest) = key.split_once(':').unwrap_or((key, ""));
    match prefix {
        "log_template" | "log_level" => match rest.rsplit_once(':') {
            Some((group, _)) => vec![format!("log_group:{group}")],
            None => vec![key.to_string()],
        },
        "api_error" => vec![key.to_string()],
        "api_error_principal" => match rest.rsplit_once(':') {
            Some((principal, code)) => {
                vec![
                    format!("api_error:{code}"),
                    format!("principal:{principal}"),
                ]
            }
            None => vec![key.to_string()],
        },
        "api_call" => {
            let mut it = rest.rsplitn(3, ':');
            match (it.next(), it.next(), it.next()) {
                (Some(_), Some(source), Some(principal)) => vec![
                    format!("principal:{principal}"),
                    format!("event_source:{source}"),
                ],
                _ => vec![key.to_string()],
            }
        }
        "event_source" => vec![key.to_string()],
        _ => vec![key.to_string()],
    }
}

/// Names the top contributors of a finding: `name: count of total` pairs for the summary.
pub fn contributors_text(top: &[Contributor], total: f64) -> String {
    let mut s = String::new();
    for (i, c) in top.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str(&format!("{}: {} of {}", c.name, c.count, total));
    }
    s
}

fn find(parent: &mut [usize], mut i: usize) -> usize {
    while let Some(&p) = parent.get(i) {
        if p == i {
            break;
        }
        let gp = parent.get(p).copied().unwrap_or(p);
        if let Some(x) = parent.get_mut(i) {
            *x = gp;
        }
        i = p;
    }
    i
}

/// Merges findings of the same window (`evidence.window`) and direction (novelty counts as a
/// spike) whose series share a family key (see [`family_keys`]); findings without a series
/// key (change rules) are kept as they are. The kept finding of a group is the one of highest
/// priority, then largest observed count, then score; the others become one line each in its
/// `evidence.related`, its priority becomes the group's highest, and its summary says how
/// many findings were merged. A kept finding without a template takes the template (id and
/// text) of its group's template finding when the group holds exactly one (a level burst made
/// of one template names it). Output order follows the kept findings' input order.
pub fn merge(findings: Vec<Finding>) -> Vec<Finding> {
    let n = findings.len();
    let mut parent: Vec<usize> = (0..n).collect();
    let mut owner: std::collections::HashMap<(i64, bool, String), usize> =
        std::collections::HashMap::new();
    for (i, f) in findings.iter().enumerate() {
        let (Some(key), Some((w, _))) = (&f.evidence.series_key, f.evidence.window) else {
            continue;
        };
        let drop = f.direction == Some(Direction::Drop);
        for fam in family_keys(key) {
            match owner.get(&(w, drop, fam.clone())) {
                Some(&j) => {
                    let (a, b) = (find(&mut parent, i), find(&mut parent, j));
                    if a != b
                        && let Some(x) = parent.get_mut(a.max(b))
                    {
                        *x = a.min(b);
                    }
                }
                None => {
                    owner.insert((w, drop, fam), i);
                }
            }
        }
    }
    let mut groups: Vec<Vec<usize>> = vec![Vec::new(); n];
    for i in 0..n {
        let r = find(&mut parent, i);
        if let Some(g) = groups.get_mut(r) {
            g.push(i);
        }
    }
    let rank = |f: &Finding| {
        (
            f.priority,
            f.evidence.observed.unwrap_or(0.0),
            f.score,
            f.evidence.top_contributors.len(),
        )
    };
    let mut slots: Vec<Option<Finding>> = findings.into_iter().map(Some).collect();
    let mut out = Vec::new();
    for g in groups.into_iter().filter(|g| !g.is_empty()) {
        let mut members: Vec<Finding> = g
            .iter()
            .filter_map(|&i| slots.get_mut(i).and_then(Option::take))
            .collect();
        if members.len() == 1 {
            out.extend(members);
            continue;
        }
        let best = members
            .iter()
            .enumerate()
            .max_by(|(ia, a), (ib, b)| {
                let (ra, rb) = (rank(a), rank(b));
                ra.0.cmp(&rb.0)
                    .then(ra.1.total_cmp(&rb.1))
                    .then(ra.2.total_cmp(&rb.2))
                    .then(ra.3.cmp(&rb.3))
                    .then(ib.cmp(ia))
            })
            .map_or(0, |(i, _)| i);
        let mut keep = members.swap_remove(best);
        members.sort_by(|a, b| a.evidence.series_key.cmp(&b.evidence.series_key));
        if keep.evidence.template_id.is_none() {
            let mut ids = members.iter().filter_map(|m| {
                m.evidence
                    .template_id
                    .as_ref()
                    .map(|id| (id, &m.evidence.template))
            });
            if let (Some((id, text)), None) = (ids.next(), ids.next()) {
                keep.evidence.template_id = Some(id.clone());
                keep.evidence.template = text.clone();
            }
        }
        for m in &members {
            keep.priority = keep.priority.max(m.priority);
            keep.evidence.related.push(format!(
                "{} {}: {} observed, {:.2} expected",
                m.detector,
                m.evidence.series_key.as_deref().unwrap_or("-"),
                m.evidence.observed.unwrap_or(0.0),
                m.evidence.expected.unwrap_or(0.0)
            ));
            if keep.evidence.top_contributors.is_empty() && !m.evidence.top_contributors.is_empty()
            {
                keep.evidence.top_contributors = m.evidence.top_contributors.clone();
            }
        }
        keep.summary
            .push_str(&format!(" [+{} related findings merged]", members.len()));
        out.push(keep);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn space_saving_keeps_the_heavy_hitter_exact() {
        let mut t = TopK::default();
        // 20 bystanders once each, interleaved with 120 events of id 0.
        for i in 0..140u64 {
            let id = if i % 7 == 3 && i / 7 < 20 {
                100 + i / 7
            } else {
                0
            };
            t.add(id);
        }
        let top = t.top(3);
        assert_eq!(top.first().map(|e| (e.id, e.count)), Some((0, 120)));
    }

    #[test]
    fn severities_follow_levels_and_words() {
        assert_eq!(text_severity("INFO Health check passed"), Priority::Low);
        assert_eq!(
            text_severity("DEBUG Loaded config version <*>"),
            Priority::Low
        );
        assert_eq!(text_severity("0 errors found"), Priority::Low);
        assert_eq!(text_severity("WARN disk <*> at <*>%"), Priority::Medium);
        assert_eq!(text_severity("ERROR connection refused"), Priority::High);
        assert_eq!(
            text_severity("java.lang.NullPointerException at <*>"),
            Priority::High
        );
        assert_eq!(error_code_severity("AccessDenied"), Priority::High);
        assert_eq!(
            error_code_severity("Client.UnauthorizedOperation"),
            Priority::High
        );
        assert_eq!(error_code_severity("ThrottlingException"), Priority::Medium);
    }

    #[test]
    fn priorities_of_rate_findings() {
        let p = |key: &str, t: Option<&str>, dir, o, e, s| {
            let d = Distance {
                observed: o,
                expected: e,
                score: s,
                marginal: false,
            };
            priority(FindingKind::RateAnomaly, Some(dir), key, t, d)
        };
        // One window of evidence short of certain: one step lower.
        assert_eq!(
            priority(
                FindingKind::RateAnomaly,
                Some(Direction::Spike),
                "log_level:g:ERROR",
                None,
                Distance {
                    observed: 30.0,
                    expected: 1.0,
                    score: 0.6,
                    marginal: true
                }
            ),
            Priority::Medium
        );
        use Direction::*;
        assert_eq!(
            p("log_template:g:1", Some("INFO ok"), Spike, 400.0, 2.0, 1.0),
            Priority::Low
        );
        assert_eq!(
            p("log_template:g:1", Some("INFO ok"), Drop, 0.0, 900.0, 1.0),
            Priority::High
        );
        assert_eq!(
            p("log_level:g:ERROR", None, Spike, 30.0, 5.0, 0.6),
            Priority::High
        );
        assert_eq!(
            p("log_level:g:WARN", None, Spike, 30.0, 5.0, 0.6),
            Priority::Medium
        );
        assert_eq!(
            p("log_level:g:WARN", None, Spike, 60.0, 5.0, 0.95),
            Priority::High
        );
        assert_eq!(
            p(
                "api_error_principal:arn:aws:iam::1:user/m:AccessDenied",
                None,
                Spike,
                9.0,
                1.0,
                0.6
            ),
            Priority::High
        );
        assert_eq!(
            p(
                "api_call:p:s3.amazonaws.com:GetObject",
                None,
                Spike,
                90.0,
                1.0,
                1.0
            ),
            Priority::Low
        );
    }

    #[test]
    fn family_keys_nest_series() {
        assert_eq!(family_keys("log_level:a:b:ERROR"), vec!["log_group:a:b"]);
        assert_eq!(family_keys("log_template:a:b:42"), vec!["log_group:a:b"]);
        assert_eq!(
            family_keys("api_error_principal:arn:aws:iam::1:user/m:AccessDenied"),
            vec!["api_error:AccessDenied", "principal:arn:aws:iam::1:user/m"]
        );
        assert_eq!(
            family_keys("api_call:arn:aws:iam::1:user/m:s3.amazonaws.com:GetObject"),
            vec![
                "principal:arn:aws:iam::1:user/m",
                "event_source:s3.amazonaws.com"
            ]
        );
    }
}
