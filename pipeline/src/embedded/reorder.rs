//! The replay reorder buffer: events from ingest, one batch per input (or part of one), are
//! handed to the statistics in event-time order across batches, held until a watermark (the
//! newest event time seen minus a horizon) passes them, with hard caps on the events and
//! bytes held. Beyond a cap the oldest events are released early; an event older than one
//! already released is still released (the statistics count it late) and counted out of
//! order. Memory is bounded by the caps, whatever the size of the input.
//!
//! Each batch is sorted (stable) and kept as a run; the runs are merged through a heap keyed
//! by (head event time, arrival number of the run), so the output is exactly a stable sort
//! by event time of everything held, ties in arrival order, which is what the replay fed the
//! statistics before (a sort of up to 500,000 buffered events) whenever the input's disorder
//! stays within the horizon and the caps.

use aiops_core::{Event, EventBody};
use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, VecDeque};

/// The bounds of a [`ReorderBuffer`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReorderLimits {
    /// Event time an event is held behind the newest one seen, microseconds.
    pub horizon_micros: i64,
    /// Most events held.
    pub max_events: usize,
    /// Most bytes held (see [`approx_bytes`]).
    pub max_bytes: u64,
}

/// What a [`ReorderBuffer`] counted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReorderStats {
    /// Events released before the watermark passed them because a cap was reached.
    pub early_releases: u64,
    /// Events released with an event time older than an event released before them.
    pub out_of_order: u64,
    /// Most events held at once.
    pub peak_events: usize,
    /// Most bytes held at once.
    pub peak_bytes: u64,
}

/// One batch, sorted by event time, with the approximate size of each event.
struct Run {
    /// Arrival number: ties between runs go to the earlier one.
    seq: u64,
    events: VecDeque<(u64, Event)>,
}

impl Run {
    /// (event time of the first event, arrival number); `i64::MAX` when empty (never in the
    /// heap).
    fn key(&self) -> (i64, u64) {
        (
            self.events.front().map_or(i64::MAX, |(_, e)| e.event_time),
            self.seq,
        )
    }
}

impl PartialEq for Run {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}
impl Eq for Run {}
impl PartialOrd for Run {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Run {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key().cmp(&other.key())
    }
}

/// The reorder buffer (see the module documentation).
pub(crate) struct ReorderBuffer {
    limits: ReorderLimits,
    runs: BinaryHeap<Reverse<Run>>,
    next_seq: u64,
    /// Newest event time seen, microseconds.
    max_seen: Option<i64>,
    /// Newest event time released, microseconds.
    last_released: Option<i64>,
    events: usize,
    bytes: u64,
    stats: ReorderStats,
}

impl ReorderBuffer {
    /// An empty buffer with these bounds.
    pub(crate) fn new(limits: ReorderLimits) -> ReorderBuffer {
        ReorderBuffer {
            limits,
            runs: BinaryHeap::new(),
            next_seq: 0,
            max_seen: None,
            last_released: None,
            events: 0,
            bytes: 0,
            stats: ReorderStats::default(),
        }
    }

    /// What it counted so far.
    pub(crate) fn stats(&self) -> ReorderStats {
        self.stats
    }

    /// Takes one batch and releases, in order, to `out` every event the watermark passed and
    /// those beyond the caps. Returns false as soon as `out` does (nothing more is released).
    pub(crate) fn push(
        &mut self,
        mut batch: Vec<Event>,
        out: &mut impl FnMut(Event) -> bool,
    ) -> bool {
        if batch.is_empty() {
            return true;
        }
        batch.sort_by_key(|e| e.event_time);
        let newest = batch.last().map_or(i64::MIN, |e| e.event_time);
        self.max_seen = Some(self.max_seen.map_or(newest, |m| m.max(newest)));
        let mut events = VecDeque::with_capacity(batch.len());
        for e in batch {
            let b = approx_bytes(&e);
            self.bytes += b;
            events.push_back((b, e));
        }
        self.events += events.len();
        self.stats.peak_events = self.stats.peak_events.max(self.events);
        self.stats.peak_bytes = self.stats.peak_bytes.max(self.bytes);
        self.runs.push(Reverse(Run {
            seq: self.next_seq,
            events,
        }));
        self.next_seq += 1;
        let watermark = self
            .max_seen
            .map_or(i64::MIN, |m| m.saturating_sub(self.limits.horizon_micros));
        self.release(watermark, out)
    }

    /// Releases everything held, in order.
    pub(crate) fn finish(&mut self, out: &mut impl FnMut(Event) -> bool) -> bool {
        self.release(i64::MAX, out)
    }

    fn over_cap(&self) -> bool {
        self.events > self.limits.max_events || self.bytes > self.limits.max_bytes
    }

    /// Releases the events at or before `watermark`, then the oldest while over a cap.
    fn release(&mut self, watermark: i64, out: &mut impl FnMut(Event) -> bool) -> bool {
        while let Some(Reverse(mut run)) = self.runs.pop() {
            // Take from this run while it holds the oldest event and that event is due.
            while let Some((_, front)) = run.events.front() {
                let t = front.event_time;
                let due = t <= watermark;
                if !due && !self.over_cap() {
                    break;
                }
                if let Some(Reverse(next)) = self.runs.peek()
                    && (t, run.seq) > next.key()
                {
                    break;
                }
                let Some((b, event)) = run.events.pop_front() else {
                    break;
                };
                self.events -= 1;
                self.bytes -= b;
                if !due {
                    self.stats.early_releases += 1;
                }
                match self.last_released {
                    Some(last) if t < last => self.stats.out_of_order += 1,
                    _ => self.last_released = Some(t),
                }
                if !out(event) {
                    return false;
                }
            }
            let Some((_, front)) = run.events.front() else {
                continue;
            };
            let stop = front.event_time > watermark && !self.over_cap();
            let stalled = self
                .runs
                .peek()
                .is_none_or(|Reverse(next)| run.key() < next.key());
            self.runs.push(Reverse(run));
            // The oldest held event is not due and no cap is reached: nothing more to do.
            if stop && stalled {
                return true;
            }
        }
        true
    }
}

/// The approximate bytes an event holds: its struct and the bytes of its strings (allocator
/// overhead not counted).
pub(crate) fn approx_bytes(e: &Event) -> u64 {
    let o = |s: &Option<String>| s.as_ref().map_or(0, String::len);
    let mut n = std::mem::size_of::<Event>()
        + e.event_id.len()
        + o(&e.account)
        + o(&e.region)
        + e.position.stream.len()
        + e.position.shard_id.len()
        + e.position.sequence_number.len()
        + e.decode_warnings
            .iter()
            .map(|w| w.len() + 24)
            .sum::<usize>();
    n += match &e.body {
        EventBody::Cloudtrail(ct) => {
            let p = &ct.principal;
            std::mem::size_of::<aiops_core::CloudTrailFields>()
                + ct.event_source.len()
                + ct.event_name.len()
                + o(&ct.event_type)
                + o(&p.principal_type)
                + o(&p.arn)
                + o(&p.account_id)
                + o(&p.session_issuer_arn)
                + o(&p.invoked_by)
                + o(&p.user_name)
                + o(&ct.source_ip)
                + o(&ct.user_agent)
                + o(&ct.error_code)
                + o(&ct.error_message)
                + ct.resources
                    .iter()
                    .map(|r| {
                        std::mem::size_of::<aiops_core::ResourceRef>()
                            + o(&r.resource_type)
                            + o(&r.id)
                            + o(&r.arn)
                    })
                    .sum::<usize>()
                + o(&ct.request_parameters)
                + o(&ct.response_elements)
                + o(&ct.recipient_account_id)
                + o(&ct.event_category)
                + ct.insight
                    .as_ref()
                    .map_or(0, |_| std::mem::size_of::<aiops_core::InsightFields>() + 64)
        }
        EventBody::Logs(l) => l.log_group.len() + l.log_stream.len() + l.message.len(),
        EventBody::Metrics(m) => {
            m.namespace.len()
                + m.metric.len()
                + m.dimensions
                    .iter()
                    .map(|(k, v)| k.len() + v.len() + 64)
                    .sum::<usize>()
                + o(&m.unit)
                + o(&m.metric_stream_name)
        }
    };
    n as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use aiops_core::{LogFields, Position};

    fn ev(id: &str, secs: i64) -> Event {
        Event {
            event_id: id.to_string(),
            event_time: secs * 1_000_000,
            ingest_time: 0,
            account: None,
            region: None,
            position: Position::default(),
            body: EventBody::Logs(LogFields {
                log_group: "g".into(),
                log_stream: "s".into(),
                message: "m".into(),
                level: None,
            }),
            decode_warnings: Vec::new(),
        }
    }

    fn limits(horizon_secs: i64, max_events: usize) -> ReorderLimits {
        ReorderLimits {
            horizon_micros: horizon_secs * 1_000_000,
            max_events,
            max_bytes: u64::MAX,
        }
    }

    /// Pushes each batch, then finishes; returns the ids released after each push.
    fn run(buf: &mut ReorderBuffer, batches: Vec<Vec<Event>>) -> Vec<Vec<String>> {
        let mut steps = Vec::new();
        for b in batches {
            let mut got = Vec::new();
            assert!(buf.push(b, &mut |e: Event| {
                got.push(e.event_id);
                true
            }));
            steps.push(got);
        }
        let mut got = Vec::new();
        assert!(buf.finish(&mut |e: Event| {
            got.push(e.event_id);
            true
        }));
        steps.push(got);
        steps
    }

    #[test]
    fn holds_until_the_watermark_and_merges_stably() {
        let mut buf = ReorderBuffer::new(limits(100, 1000));
        let steps = run(
            &mut buf,
            vec![
                vec![ev("a50", 50), ev("a10", 10), ev("a30", 30)],
                vec![ev("b30", 30), ev("b20", 20)],
                // max seen 140: the watermark 40 releases everything at or before 40.
                vec![ev("c140", 140), ev("c40", 40)],
            ],
        );
        assert_eq!(
            steps,
            vec![
                vec![],
                vec![],
                vec!["a10", "b20", "a30", "b30", "c40"],
                vec!["a50", "c140"],
            ]
        );
        assert_eq!(
            buf.stats(),
            ReorderStats {
                early_releases: 0,
                out_of_order: 0,
                peak_events: 7,
                peak_bytes: buf.stats().peak_bytes,
            }
        );
    }

    #[test]
    fn caps_release_the_oldest_early_and_late_arrivals_are_counted() {
        let mut buf = ReorderBuffer::new(limits(3600, 3));
        let steps = run(
            &mut buf,
            vec![
                vec![ev("a1", 1), ev("a2", 2)],
                vec![ev("b5", 5), ev("b4", 4)],
                vec![ev("c3", 3)],
            ],
        );
        assert_eq!(
            steps,
            vec![vec![], vec!["a1"], vec!["a2"], vec!["c3", "b4", "b5"]]
        );
        let s = buf.stats();
        assert_eq!((s.early_releases, s.out_of_order, s.peak_events), (2, 0, 4));

        let mut buf = ReorderBuffer::new(limits(10, 1000));
        let steps = run(
            &mut buf,
            vec![
                vec![ev("a100", 100)],
                vec![ev("b5", 5)],
                vec![ev("c50", 50)],
            ],
        );
        // b5 is released at once (behind the watermark 90) after a100 was held; c50 too.
        assert_eq!(steps, vec![vec![], vec!["b5"], vec!["c50"], vec!["a100"]]);
        assert_eq!(buf.stats().out_of_order, 0);

        let mut buf = ReorderBuffer::new(limits(10, 1000));
        let steps = run(
            &mut buf,
            vec![vec![ev("a100", 100), ev("a200", 200)], vec![ev("b5", 5)]],
        );
        assert_eq!(steps, vec![vec!["a100"], vec!["b5"], vec!["a200"]]);
        let s = buf.stats();
        assert_eq!((s.early_releases, s.out_of_order), (0, 1));
    }

    #[test]
    fn zero_caps_feed_each_batch_sorted_in_input_order() {
        let mut buf = ReorderBuffer::new(limits(3600, 0));
        let steps = run(
            &mut buf,
            vec![vec![ev("a9", 9), ev("a1", 1)], vec![ev("b0", 0)]],
        );
        assert_eq!(steps, vec![vec!["a1", "a9"], vec!["b0"], vec![]]);
        assert_eq!(buf.stats().out_of_order, 1);
        assert_eq!(buf.stats().early_releases, 3);
    }

    #[test]
    fn a_refused_event_stops_the_release() {
        let mut buf = ReorderBuffer::new(limits(0, 1000));
        let mut n = 0;
        assert!(!buf.push(vec![ev("a", 1), ev("b", 1)], &mut |_e: Event| {
            n += 1;
            false
        }));
        assert_eq!(n, 1);
    }

    #[test]
    fn bytes_count_the_strings() {
        let e = ev("abc", 1);
        assert_eq!(
            approx_bytes(&e),
            (std::mem::size_of::<Event>() + 3 + 1 + 1 + 1) as u64
        );
    }
}
