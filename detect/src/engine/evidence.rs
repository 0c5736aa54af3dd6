//! The bounded evidence of a window (sample texts, event ids): the earliest events of the
//! window by `(event time, event id)`, not the first to arrive, so a window's evidence is the
//! same whatever order its events were processed in. A live run sees the events of one
//! second in the order they arrive (the CloudTrail calls of a delivery, the lines of a
//! subscription payload are not sorted); a replay and a backtest see them in event-time
//! order. Split from [`crate::engine`].

use aiops_core::{Event, EventBody};
use std::fmt::Write as _;

use super::truncate_chars;

/// The sample text of an event: the log message, or `<source> <name> by <caller>[ from
/// <ip>][ failed <code>]` for a CloudTrail call (the caller as [`aiops_core::Principal::caller`]:
/// the session ARN of an assumed role), cut to `max` bytes.
pub(super) fn sample_of(event: &Event, max: usize) -> String {
    match &event.body {
        EventBody::Logs(l) => truncate_chars(&l.message, max),
        EventBody::Cloudtrail(ct) => {
            let mut sample = format!(
                "{} {} by {}",
                ct.event_source,
                ct.event_name,
                ct.principal.caller()
            );
            if let Some(ip) = &ct.source_ip {
                let _ = write!(sample, " from {ip}");
            }
            if let Some(code) = &ct.error_code {
                let _ = write!(sample, " failed {code}");
            }
            truncate_chars(&sample, max)
        }
        EventBody::Metrics(_) => String::new(),
    }
}

/// The at most `max` earliest events of a window by `(event time µs, event id)`, each with a
/// value (a sample text, or nothing for the event-id list), kept sorted.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub(super) struct Earliest<T> {
    items: Vec<(i64, String, T)>,
}

impl<T> Earliest<T> {
    /// Where the event `(t, id)` goes, or `None` when `max` events that sort before it are
    /// kept already (the common case once a window is full and events arrive in time order:
    /// one comparison with the last kept event).
    pub(super) fn slot(&self, t: i64, id: &str, max: usize) -> Option<usize> {
        if self.items.len() >= max
            && self
                .items
                .last()
                .is_none_or(|(lt, lid, _)| (t, id) >= (*lt, lid.as_str()))
        {
            return None;
        }
        let pos = self
            .items
            .partition_point(|(kt, kid, _)| (*kt, kid.as_str()) <= (t, id));
        (pos < max).then_some(pos)
    }

    /// Keeps the event `(t, id)` with `value` at `pos` (from [`Earliest::slot`]) and drops
    /// what no longer fits in `max`.
    pub(super) fn insert(&mut self, pos: usize, t: i64, id: &str, value: T, max: usize) {
        self.items.insert(pos, (t, id.to_string(), value));
        self.items.truncate(max);
    }

    /// Number of events kept.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.items.len()
    }
}

impl Earliest<String> {
    /// The kept values, earliest first.
    pub(super) fn values(&self) -> Vec<String> {
        self.items.iter().map(|(_, _, v)| v.clone()).collect()
    }

    /// The kept values, earliest first, consuming.
    pub(super) fn into_values(self) -> Vec<String> {
        self.items.into_iter().map(|(_, _, v)| v).collect()
    }
}

impl Earliest<()> {
    /// The kept event ids, earliest first.
    pub(super) fn ids(&self) -> Vec<String> {
        self.items.iter().map(|(_, id, _)| id.clone()).collect()
    }

    /// The kept event ids, earliest first, consuming.
    pub(super) fn into_ids(self) -> Vec<String> {
        self.items.into_iter().map(|(_, id, _)| id).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keep(events: &[(i64, &str)], max: usize) -> Vec<String> {
        let mut e: Earliest<()> = Earliest::default();
        for (t, id) in events {
            if let Some(pos) = e.slot(*t, id, max) {
                e.insert(pos, *t, id, (), max);
            }
        }
        assert!(e.len() <= max);
        e.into_ids()
    }

    #[test]
    fn the_earliest_events_are_kept_whatever_their_arrival_order() {
        let events = [(5, "e"), (1, "b"), (3, "c"), (1, "a"), (9, "z"), (2, "d")];
        let want = vec!["a".to_string(), "b".into(), "d".into()];
        assert_eq!(keep(&events, 3), want);
        let mut sorted = events.to_vec();
        sorted.sort();
        assert_eq!(keep(&sorted, 3), want);
        let mut reversed = sorted.clone();
        reversed.reverse();
        assert_eq!(keep(&reversed, 3), want);
        assert_eq!(keep(&events, 0), Vec::<String>::new());
        let mut s: Earliest<String> = Earliest::default();
        for (t, id, v) in [(2, "x", "second"), (1, "y", "first")] {
            if let Some(pos) = s.slot(t, id, 10) {
                s.insert(pos, t, id, v.to_string(), 10);
            }
        }
        assert_eq!(s.values(), ["first", "second"]);
        assert_eq!(s.into_values(), ["first", "second"]);
    }
}
