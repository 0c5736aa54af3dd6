//! Closing a series' windows: feeding counts (with empty windows and drops) and values to
//! their models and deciding which become candidate findings. Split from [`crate::engine`];
//! pure with respect to everything but the series, so it runs in parallel.

use super::*;

/// Empty windows of a busy series scored one by one per close at most; the rest of a longer
/// gap is learned in bulk (a drop is reported within the first few anyway).
const MAX_SCORED_EMPTY: u64 = 1440;

/// A spike is confirmed when the window after it is a spike candidate too (the effect size
/// met) with at most this upper-tail probability.
const CONFIRM_P: f64 = 0.01;

/// What one closed window of a count series holds.
struct CountWindow {
    start: i64,
    on_time: u64,
    samples: Vec<String>,
    event_ids: Vec<String>,
    top: Vec<TopEntry>,
}

/// Scores and learns one window of a count series; pushes its candidate and trace.
///
/// A spike finding whose score is below 1 (its tail probability above `10^−decades`) waits for
/// the next window of the series: if that window is a spike candidate with `p ≤ CONFIRM_P`
/// (0.01) the burst is confirmed, else the finding is *marginal* and its priority one step
/// lower (one window from a heavy tail is what an over-dispersed series does now and then; two
/// in a row are a burst). Either way it is reported, one window late. Drops and saturated
/// spikes are reported at once; a spike still waiting at the end of the input (flush) or
/// before a gap in the input is reported with its priority unchanged (nothing refuted it).
fn count_window(
    slot: usize,
    s: &mut Series,
    w: CountWindow,
    cfg: &StatisticsConfig,
    out: &mut Vec<Candidate>,
    traces: &mut Vec<WindowTrace>,
) {
    let Model::Count(model) = &mut s.model else {
        return;
    };
    let r = model.observe(w.start, w.on_time, &cfg.rate);
    if let Some(p) = s.profile.as_mut() {
        p.add_count(w.start, w.on_time);
    }
    if s.traced {
        traces.push(WindowTrace {
            key: s.spec.key.clone(),
            window_start: w.start,
            observed: w.on_time as f64,
            expected: r.expected,
            dispersion: Some(model.dispersion()),
            score: r.score,
        });
    }
    if let Some(mut p) = s.pending.take() {
        p.marginal = !(r.direction == Direction::Spike && r.p_value <= CONFIRM_P);
        out.push(*p);
    }
    let v = s.decision.decide(r.score, &cfg.decision);
    if v.finding {
        if r.direction == Direction::Drop {
            model.mark_drop_reported();
        }
        let c = Candidate {
            slot,
            kind: FindingKind::RateAnomaly,
            window_start: w.start,
            observed: w.on_time as f64,
            expected: r.expected,
            score: v.reported,
            samples: w.samples,
            event_ids: w.event_ids,
            direction: Some(r.direction),
            top: w.top,
            marginal: false,
        };
        if r.direction == Direction::Spike && r.score < 1.0 {
            s.pending = Some(Box::new(c));
        } else {
            out.push(c);
        }
    }
}

/// What a close passes to every series.
pub(super) struct CloseCtx<'a> {
    /// Windows starting before this are closed.
    pub until: i64,
    /// Window length, µs.
    pub window_us: i64,
    /// The configuration.
    pub cfg: &'a StatisticsConfig,
    /// Starts of the closing windows in which the engine saw any event (sorted). A window with
    /// no event at all, from any source, is a gap in the input, not the silence of one series:
    /// it is learned as empty but never scored as a drop.
    pub active: &'a [i64],
}

/// Learns the empty windows of a count series from `from` to `to` (window boundaries): one by
/// one, scored, while the series is busy or a spike waits for confirmation (at most
/// [`MAX_SCORED_EMPTY`]), the rest in bulk. Windows of an input gap (no event at all) are
/// learned without a score, and release a waiting spike as it stands.
fn count_gap(
    slot: usize,
    s: &mut Series,
    (from, to): (i64, i64),
    ctx: &CloseCtx<'_>,
    out: &mut Vec<Candidate>,
    traces: &mut Vec<WindowTrace>,
) {
    let (cfg, window_us) = (ctx.cfg, ctx.window_us);
    let mut t = from;
    let mut scored = 0;
    while t < to
        && scored < MAX_SCORED_EMPTY
        && (s.pending.is_some() || matches!(&s.model, Model::Count(m) if m.busy()))
    {
        if ctx.active.binary_search(&t).is_ok() {
            let w = CountWindow {
                start: t,
                on_time: 0,
                samples: Vec::new(),
                event_ids: Vec::new(),
                top: Vec::new(),
            };
            count_window(slot, s, w, cfg, out, traces);
        } else {
            // An input gap neither confirms nor refutes a waiting spike: it keeps its priority.
            if let Some(p) = s.pending.take() {
                out.push(*p);
            }
            if let Model::Count(model) = &mut s.model {
                model.observe_empty(t, 1, window_us, &cfg.rate);
            }
            s.decision.skip(1);
            if let Some(p) = s.profile.as_mut() {
                p.add_zeros(t, 1, window_us);
            }
        }
        t += window_us;
        scored += 1;
    }
    if t < to
        && let Model::Count(model) = &mut s.model
    {
        let gap = u64::try_from((to - t) / window_us).unwrap_or(0);
        model.observe_empty(t, gap, window_us, &cfg.rate);
        s.decision.skip(gap);
        if let Some(p) = s.profile.as_mut() {
            p.add_zeros(t, gap, window_us);
        }
    }
}

/// Feeds one series' closed windows (start < `until`) to its model, in time order, and returns
/// its candidate findings. Pure with respect to everything but the series itself, so it runs
/// in parallel.
pub(super) fn close_series(
    slot: usize,
    s: &mut Series,
    ctx: &CloseCtx<'_>,
) -> (Vec<Candidate>, Vec<WindowTrace>) {
    let (until, window_us, cfg) = (ctx.until, ctx.window_us, ctx.cfg);
    let n_closed = s.accs.partition_point(|a| a.start < until);
    let closed: Vec<WindowAcc> = s.accs.drain(..n_closed).collect();
    let mut out = Vec::new();
    let mut traces = Vec::new();
    for acc in closed {
        if acc.novel {
            out.push(Candidate {
                slot,
                kind: FindingKind::Novelty,
                window_start: acc.start,
                observed: acc.count as f64,
                expected: 0.0,
                score: cfg.novelty.score,
                samples: acc.samples.values(),
                event_ids: acc.event_ids.ids(),
                direction: None,
                top: Vec::new(),
                marginal: false,
            });
        }
        match &mut s.model {
            Model::Count(_) => {
                if let Some(from) = s.accounted_until
                    && acc.start > from
                {
                    count_gap(slot, s, (from, acc.start), ctx, &mut out, &mut traces);
                }
                let w = CountWindow {
                    start: acc.start,
                    on_time: acc.count.saturating_sub(acc.late),
                    top: acc.top.top(triage::TOP_REPORTED),
                    samples: acc.samples.into_values(),
                    event_ids: acc.event_ids.into_ids(),
                };
                count_window(slot, s, w, cfg, &mut out, &mut traces);
                s.accounted_until = Some(acc.start + window_us);
            }
            Model::Value(det) => {
                if acc.value_n > 0 {
                    let x = acc.value_sum / acc.value_n as f64;
                    let r = det.observe(acc.start, x);
                    if let Some(p) = s.profile.as_mut() {
                        p.add_value(acc.start, x);
                    }
                    if s.traced {
                        traces.push(WindowTrace {
                            key: s.spec.key.clone(),
                            window_start: acc.start,
                            observed: x,
                            expected: r.expected,
                            dispersion: None,
                            score: r.score,
                        });
                    }
                    let v = s.decision.decide(r.score, &cfg.decision);
                    if v.finding {
                        out.push(Candidate {
                            slot,
                            kind: FindingKind::ValueAnomaly,
                            window_start: acc.start,
                            observed: x,
                            expected: r.expected,
                            score: v.reported,
                            samples: acc.samples.into_values(),
                            event_ids: acc.event_ids.into_ids(),
                            direction: Some(if x < r.expected {
                                Direction::Drop
                            } else {
                                Direction::Spike
                            }),
                            top: Vec::new(),
                            marginal: false,
                        });
                    }
                }
                s.accounted_until = Some(acc.start + window_us);
            }
        }
    }
    // Empty windows up to the close count as zeros for count series. A quiet series does not
    // need this now: its next non-empty window learns the gap first (above), in closed form,
    // so a close costs O(series with events or busy). A busy series is caught up at every
    // close, its empty windows scored (a series that stops is a drop), and so is a learning
    // engine's, whose profile records every window in order.
    if let Model::Count(model) = &s.model
        && (s.profile.is_some() || model.busy() || s.pending.is_some())
        && let Some(from) = s.accounted_until
        && until > from
    {
        count_gap(slot, s, (from, until), ctx, &mut out, &mut traces);
        s.accounted_until = Some(until);
    }
    (out, traces)
}
