//! Joining multi-line log entries: a stack trace, a pretty-printed JSON document or a
//! multi-line error often arrives as several log events of the same stream. Consecutive
//! fragments of one stream are joined into one entry, which then counts once toward every
//! series.
//!
//! A fragment continues the pending entry of its stream (same log group and log stream) when
//! it:
//!
//! - starts with whitespace (indented stack frames, JSON bodies);
//! - starts with `at ` (Java frames), `Caused by`, `... N more`, `Suppressed:`,
//!   `Traceback (most recent call last)`, `During handling of the above exception`, or
//!   `The above exception was the direct cause`;
//! - starts with `}` or `]`, or the pending entry has an unclosed JSON value (more `{`/`[`
//!   than `}`/`]` outside strings since the first `{` or `[`);
//! - after a Python traceback, is the exception line (`SomeError: ...`,
//!   `pkg.SomeException`).
//!
//! Anything else starts a new entry and completes the previous one. The joined text is bounded
//! by `max_bytes` and `max_lines` (further fragments are still absorbed, and counted, but
//! their text is dropped); the number of pending streams is bounded by
//! `max_pending_streams` (the stalest is completed first). The joined entry keeps the first
//! fragment's event id, time and level.

use aiops_core::{Event, EventBody};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Multi-line joining configuration (`[detect.statistics.multiline]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MultilineConfig {
    /// Whether fragments are joined at all. Default true.
    pub enabled: bool,
    /// Maximum bytes of joined text kept per entry. Default 16384; 64..=1048576.
    pub max_bytes: usize,
    /// Maximum lines of joined text kept per entry. Default 500; at least 1.
    pub max_lines: usize,
    /// Maximum streams with a pending entry. Default 10000; at least 1.
    pub max_pending_streams: usize,
}

impl Default for MultilineConfig {
    fn default() -> Self {
        MultilineConfig {
            enabled: true,
            max_bytes: 16_384,
            max_lines: 500,
            max_pending_streams: 10_000,
        }
    }
}

/// A pending entry of one stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Pending {
    event: Event,
    lines: usize,
    truncated: bool,
    last_time: i64,
    /// JSON nesting depth since the first `{` or `[` (0 = none open).
    depth: i32,
    json_started: bool,
    in_string: bool,
    escaped: bool,
    traceback: bool,
    fragments: u64,
}

/// Counters of the joiner.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MultilineCounters {
    /// Fragments absorbed into a previous fragment's entry.
    pub joined_fragments: u64,
    /// Entries whose text hit `max_bytes` or `max_lines`.
    pub truncated_entries: u64,
    /// Entries completed early because `max_pending_streams` was reached.
    pub forced_flushes: u64,
}

/// Joins consecutive fragments of the same log stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MultilineJoiner {
    cfg: MultilineConfig,
    #[serde(with = "crate::engine::snapshot::map_as_pairs")]
    pending: BTreeMap<(String, String), Pending>,
    counters: MultilineCounters,
}

/// Whether `line` continues an entry regardless of what came before.
pub fn is_continuation(line: &str) -> bool {
    let b = line.as_bytes();
    match b.first() {
        None => return false,
        Some(b' ' | b'\t') => return true,
        Some(b'}' | b']') => return true,
        _ => {}
    }
    const STARTS: [&str; 8] = [
        "at ",
        "Caused by",
        "... ",
        "Suppressed:",
        "Traceback (most recent call last)",
        "During handling of the above exception",
        "The above exception was the direct cause",
        "\u{2026} ",
    ];
    STARTS.iter().any(|s| line.starts_with(s))
}

/// Whether `line` looks like the final line of a Python traceback (`ValueError: bad`,
/// `requests.exceptions.ConnectionError`).
fn is_exception_line(line: &str) -> bool {
    let name_end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
        .unwrap_or(line.len());
    let name = line.get(..name_end).unwrap_or("");
    if name.is_empty() {
        return false;
    }
    let rest = line.get(name_end..).unwrap_or("");
    let ends = ["Error", "Exception", "Warning", "Interrupt", "Exit"]
        .iter()
        .any(|s| name.ends_with(s));
    ends && (rest.is_empty() || rest.starts_with(':'))
}

impl Pending {
    fn scan_json(&mut self, text: &str) {
        for &c in text.as_bytes() {
            if !self.json_started {
                if c == b'{' || c == b'[' {
                    self.json_started = true;
                    self.depth = 1;
                }
                continue;
            }
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                } else if c == b'\\' {
                    self.escaped = true;
                } else if c == b'"' {
                    self.in_string = false;
                }
                continue;
            }
            match c {
                b'"' => self.in_string = true,
                b'{' | b'[' => self.depth = (self.depth + 1).min(1 << 20),
                b'}' | b']' => self.depth -= 1,
                _ => {}
            }
        }
    }

    fn json_open(&self) -> bool {
        self.json_started && self.depth > 0
    }
}

fn log_message_mut(e: &mut Event) -> Option<&mut String> {
    match &mut e.body {
        EventBody::Logs(l) => Some(&mut l.message),
        _ => None,
    }
}

impl MultilineJoiner {
    /// A joiner with nothing pending.
    pub fn new(cfg: &MultilineConfig) -> Self {
        MultilineJoiner {
            cfg: cfg.clone(),
            pending: BTreeMap::new(),
            counters: MultilineCounters::default(),
        }
    }

    /// Counters so far.
    pub fn counters(&self) -> MultilineCounters {
        self.counters
    }

    /// Streams with a pending entry.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    fn start(&self, event: Event) -> Pending {
        let mut p = Pending {
            last_time: event.event_time,
            event,
            lines: 1,
            truncated: false,
            depth: 0,
            json_started: false,
            in_string: false,
            escaped: false,
            traceback: false,
            fragments: 1,
        };
        let msg = p.event.log().map(|l| l.message.clone()).unwrap_or_default();
        p.traceback = msg.starts_with("Traceback (most recent call last)");
        p.scan_json(&msg);
        // Bound the first fragment too.
        if msg.len() > self.cfg.max_bytes
            && let Some(m) = log_message_mut(&mut p.event)
        {
            let mut cut = self.cfg.max_bytes;
            while !m.is_char_boundary(cut) {
                cut -= 1;
            }
            m.truncate(cut);
            p.truncated = true;
        }
        p
    }

    /// Feeds one log event. Returns the entries completed by it (the stream's previous entry
    /// when this fragment starts a new one, and possibly the stalest pending entry when the
    /// pending bound is reached), in completion order. Non-log events are returned as is.
    pub fn push(&mut self, event: Event) -> Vec<Event> {
        let Some(log) = event.log() else {
            return vec![event];
        };
        if !self.cfg.enabled {
            return vec![event];
        }
        let key = (log.log_group.clone(), log.log_stream.clone());
        let message = log.message.clone();
        let mut done = Vec::new();
        if let Some(p) = self.pending.get_mut(&key) {
            let cont = is_continuation(&message)
                || p.json_open()
                || (p.traceback && is_exception_line(&message));
            if cont {
                p.fragments += 1;
                p.last_time = p.last_time.max(event.event_time);
                p.traceback |= message.starts_with("Traceback (most recent call last)");
                p.scan_json(&message);
                self.counters.joined_fragments += 1;
                let (max_bytes, max_lines) = (self.cfg.max_bytes, self.cfg.max_lines);
                let mut newly_truncated = false;
                if let Some(m) = log_message_mut(&mut p.event) {
                    if !p.truncated
                        && p.lines < max_lines
                        && m.len() + 1 + message.len() <= max_bytes
                    {
                        m.push('\n');
                        m.push_str(&message);
                        p.lines += 1;
                    } else if !p.truncated {
                        p.truncated = true;
                        newly_truncated = true;
                    }
                }
                if newly_truncated {
                    self.counters.truncated_entries += 1;
                }
                return done;
            }
            if let Some(prev) = self.pending.remove(&key) {
                done.push(prev.event);
            }
        }
        if self.pending.len() >= self.cfg.max_pending_streams.max(1) {
            // Complete the stalest pending entry (ties by key, for determinism).
            let stalest = self
                .pending
                .iter()
                .min_by(|a, b| a.1.last_time.cmp(&b.1.last_time).then(a.0.cmp(b.0)))
                .map(|(k, _)| k.clone());
            if let Some(k) = stalest
                && let Some(p) = self.pending.remove(&k)
            {
                self.counters.forced_flushes += 1;
                done.push(p.event);
            }
        }
        let p = self.start(event);
        if p.truncated {
            self.counters.truncated_entries += 1;
        }
        self.pending.insert(key, p);
        done
    }

    /// Completes every pending entry that started before `time` (µs), ordered by start time
    /// then stream.
    pub fn flush_before(&mut self, time: i64) -> Vec<Event> {
        let keys: Vec<(String, String)> = self
            .pending
            .iter()
            .filter(|(_, p)| p.event.event_time < time)
            .map(|(k, _)| k.clone())
            .collect();
        let mut out: Vec<Event> = keys
            .into_iter()
            .filter_map(|k| self.pending.remove(&k))
            .map(|p| p.event)
            .collect();
        out.sort_by_key(|a| a.event_time);
        out
    }

    /// Completes every pending entry, ordered by start time then stream.
    pub fn flush_all(&mut self) -> Vec<Event> {
        self.flush_before(i64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aiops_core::{LogFields, Position};

    fn ev(id: &str, t: i64, stream: &str, msg: &str) -> Event {
        Event {
            event_id: id.into(),
            event_time: t,
            ingest_time: t,
            decode_warnings: Vec::new(),
            account: None,
            region: None,
            position: Position::default(),
            body: EventBody::Logs(LogFields {
                log_group: "g".into(),
                log_stream: stream.into(),
                message: msg.into(),
                level: None,
            }),
        }
    }

    fn msgs(v: &[Event]) -> Vec<String> {
        v.iter().map(|e| e.log().unwrap().message.clone()).collect()
    }

    #[test]
    fn java_stack_trace_is_one_entry() {
        let mut j = MultilineJoiner::new(&MultilineConfig::default());
        assert!(
            j.push(ev(
                "1",
                1,
                "s",
                "ERROR boom java.lang.IllegalStateException: x"
            ))
            .is_empty()
        );
        assert!(
            j.push(ev("2", 2, "s", "\tat com.a.B.c(B.java:10)"))
                .is_empty()
        );
        assert!(
            j.push(ev("3", 3, "s", "Caused by: java.io.IOException: y"))
                .is_empty()
        );
        assert!(j.push(ev("4", 4, "s", "... 12 more")).is_empty());
        let done = j.push(ev("5", 5, "s", "INFO next"));
        assert_eq!(
            msgs(&done),
            vec![
                "ERROR boom java.lang.IllegalStateException: x\n\tat com.a.B.c(B.java:10)\nCaused by: java.io.IOException: y\n... 12 more"
            ]
        );
        assert_eq!(done[0].event_id, "1");
        assert_eq!(done[0].event_time, 1);
        assert_eq!(j.counters().joined_fragments, 3);
        assert_eq!(msgs(&j.flush_all()), vec!["INFO next"]);
    }

    #[test]
    fn python_traceback_and_json_are_joined() {
        let mut j = MultilineJoiner::new(&MultilineConfig::default());
        j.push(ev("1", 1, "s", "Traceback (most recent call last):"));
        j.push(ev("2", 2, "s", "  File \"a.py\", line 1, in <module>"));
        j.push(ev("3", 3, "s", "ValueError: bad"));
        let done = j.push(ev("4", 4, "s", "{\"a\": {"));
        assert_eq!(msgs(&done).len(), 1);
        assert!(msgs(&done)[0].ends_with("ValueError: bad"));
        // Unclosed JSON: the next line has no indentation but is still joined.
        assert!(j.push(ev("5", 5, "s", "\"b\": \"}\"")).is_empty());
        assert!(j.push(ev("6", 6, "s", "}}")).is_empty());
        let done = j.push(ev("7", 7, "s", "next"));
        assert_eq!(msgs(&done), vec!["{\"a\": {\n\"b\": \"}\"\n}}"]);
    }

    #[test]
    fn streams_are_independent_and_bounded() {
        let cfg = MultilineConfig {
            max_bytes: 64,
            max_lines: 2,
            max_pending_streams: 2,
            ..MultilineConfig::default()
        };
        let mut j = MultilineJoiner::new(&cfg);
        j.push(ev("1", 1, "a", "head a"));
        j.push(ev("2", 2, "b", "head b"));
        // Interleaved continuation goes to its own stream.
        j.push(ev("3", 3, "a", "  more a"));
        j.push(ev("4", 4, "a", "  dropped (max_lines 2)"));
        assert_eq!(j.counters().truncated_entries, 1);
        // A third stream forces the stalest (b, last seen at 2) out.
        let done = j.push(ev("5", 5, "c", "head c"));
        assert_eq!(msgs(&done), vec!["head b"]);
        assert_eq!(j.counters().forced_flushes, 1);
        let rest = j.flush_before(5);
        assert_eq!(msgs(&rest), vec!["head a\n  more a"]);
        assert_eq!(j.pending_len(), 1);
    }
}
