//! The backtest report: one self-contained HTML file (inline CSS and SVG, no script, no
//! network), with per plotted finding an SVG chart of its series around it — observed values,
//! the expected value and band, labelled windows, the finding's window — over a strip of the
//! model's anomaly score with the finding threshold; then a table of every finding and the
//! run's figures.
//!
//! Expected band: for count series `λ ± 3·√(D·λ)` (the rate model's baseline `λ` and
//! dispersion index `D`, floored at 0); for metric values the median ± 3·1.4826·MAD of the
//! preceding 60 windows of the chart (the robust z-score band of the value detector's `level`
//! measure). Windows of a count series without events are drawn as 0.

use super::backtest::{Figures, PLOT_AFTER, PLOT_BEFORE, plot_key};
use super::labels::{LabelScore, Labels};
use aiops_core::Finding;
use aiops_core::time::format_rfc3339_micros;
use aiops_detect::engine::WindowTrace;
use std::collections::BTreeMap;
use std::fmt::Write as _;

const W: f64 = 880.0;
const H: f64 = 220.0;
const SCORE_H: f64 = 56.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 12.0;
const GAP: f64 = 26.0;
const BOTTOM: f64 = 24.0;

/// Escapes text for HTML element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// Everything the report shows.
pub struct ReportInput<'a> {
    /// The history read (a path or `s3://` URL), for the title.
    pub history: &'a str,
    /// The configuration file used, for the title.
    pub config: &'a str,
    /// Every finding of the run.
    pub findings: &'a [Finding],
    /// Indices into `findings` of the findings to plot, in time order.
    pub plotted: &'a [usize],
    /// Traces by series key.
    pub traces: &'a BTreeMap<String, Vec<WindowTrace>>,
    /// Labels, if any.
    pub labels: Option<&'a Labels>,
    /// Label figures, if any.
    pub label_score: Option<&'a LabelScore>,
    /// Run figures.
    pub figures: &'a Figures,
    /// Window length, microseconds.
    pub window_us: i64,
    /// Finding threshold of the decision, drawn on the score strip.
    pub threshold: f64,
    /// Event time of the last event of the run, µs (no data is drawn after it).
    pub data_end: i64,
}

fn fmt_num(x: f64) -> String {
    if !x.is_finite() {
        return "–".into();
    }
    let a = x.abs();
    if a >= 1e6 || (a > 0.0 && a < 1e-3) {
        format!("{x:.3e}")
    } else if a >= 100.0 || x.fract() == 0.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.3}")
    }
}

fn hhmm(t: i64) -> String {
    let s = format_rfc3339_micros(t);
    s.get(11..16).unwrap_or("").to_string()
}

struct Point {
    t: i64,
    observed: Option<f64>,
    expected: Option<f64>,
    lo: Option<f64>,
    hi: Option<f64>,
    score: f64,
}

/// The windows of the chart `[from, to)`, filled from the traces: for a count series, a
/// window without a trace between its first trace and the end of the data (`data_end`, µs)
/// is 0 with the previous expectation; elsewhere there is no data.
fn points(
    traces: &[WindowTrace],
    from: i64,
    to: i64,
    window_us: i64,
    counts: bool,
    data_end: i64,
) -> Vec<Point> {
    let first = traces
        .iter()
        .map(|t| t.window_start)
        .min()
        .unwrap_or(i64::MAX);
    let by: BTreeMap<i64, &WindowTrace> = traces
        .iter()
        .filter(|t| t.window_start >= from && t.window_start < to)
        .map(|t| (t.window_start, t))
        .collect();
    let mut out = Vec::new();
    let mut last_expected: Option<(f64, Option<f64>)> = None;
    let mut recent: Vec<f64> = Vec::new();
    let mut t = from;
    let mut n = 0;
    while t < to && n < 100_000 {
        n += 1;
        match by.get(&t) {
            Some(tr) => {
                let (lo, hi) = match tr.dispersion {
                    Some(d) => {
                        let sd = (d.max(1.0) * tr.expected.max(0.0)).sqrt();
                        (
                            Some((tr.expected - 3.0 * sd).max(0.0)),
                            Some(tr.expected + 3.0 * sd),
                        )
                    }
                    None => robust_band(&recent),
                };
                if tr.dispersion.is_none() {
                    recent.push(tr.observed);
                    if recent.len() > 60 {
                        recent.remove(0);
                    }
                }
                last_expected = Some((tr.expected, tr.dispersion));
                out.push(Point {
                    t,
                    observed: Some(tr.observed),
                    expected: Some(tr.expected),
                    lo,
                    hi,
                    score: tr.score,
                });
            }
            None if counts && t > first && t <= data_end => {
                let (e, d) = match last_expected {
                    Some((e, d)) => (Some(e), d),
                    None => (None, None),
                };
                let (lo, hi) = match (e, d) {
                    (Some(e), Some(d)) => {
                        let sd = (d.max(1.0) * e.max(0.0)).sqrt();
                        (Some((e - 3.0 * sd).max(0.0)), Some(e + 3.0 * sd))
                    }
                    _ => (None, None),
                };
                out.push(Point {
                    t,
                    observed: Some(0.0),
                    expected: e,
                    lo,
                    hi,
                    score: 0.0,
                });
            }
            None => out.push(Point {
                t,
                observed: None,
                expected: None,
                lo: None,
                hi: None,
                score: 0.0,
            }),
        }
        t += window_us;
    }
    out
}

fn robust_band(recent: &[f64]) -> (Option<f64>, Option<f64>) {
    if recent.len() < 5 {
        return (None, None);
    }
    let mut v = recent.to_vec();
    v.sort_by(f64::total_cmp);
    let med = v.get(v.len() / 2).copied().unwrap_or(0.0);
    let mut dev: Vec<f64> = v.iter().map(|x| (x - med).abs()).collect();
    dev.sort_by(f64::total_cmp);
    let mad = dev.get(dev.len() / 2).copied().unwrap_or(0.0) * 1.482_602_218_505_602;
    (Some(med - 3.0 * mad), Some(med + 3.0 * mad))
}

fn nice_max(x: f64) -> f64 {
    if !(x.is_finite() && x > 0.0) {
        return 1.0;
    }
    let p = 10f64.powf(x.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if m * p >= x {
            return m * p;
        }
    }
    10.0 * p
}

/// One finding's chart as an SVG element.
fn chart(inp: &ReportInput<'_>, f: &Finding) -> String {
    let key = plot_key(f).unwrap_or_default();
    let traces = inp.traces.get(&key).map(Vec::as_slice).unwrap_or(&[]);
    let w = inp.window_us.max(1);
    let at = f.evidence.window.map_or(f.event_time, |x| x.0);
    let at = at.div_euclid(w) * w;
    let from = at - PLOT_BEFORE * w;
    let to = at + PLOT_AFTER * w;
    let counts = !key.starts_with("metric:");
    let pts = points(traces, from, to, w, counts, inp.data_end);
    let plot_h = H - TOP - GAP - SCORE_H - BOTTOM;
    let x = |t: i64| LEFT + (t - from) as f64 / (to - from).max(1) as f64 * (W - LEFT - RIGHT);
    let (mut ymin, mut ymax) = (f64::INFINITY, f64::NEG_INFINITY);
    for p in &pts {
        for v in [p.observed, p.expected, p.lo, p.hi].into_iter().flatten() {
            if v.is_finite() {
                ymin = ymin.min(v);
                ymax = ymax.max(v);
            }
        }
    }
    if !ymin.is_finite() {
        ymin = 0.0;
        ymax = 1.0;
    }
    if counts || ymin >= 0.0 && ymin < ymax * 0.3 {
        ymin = ymin.min(0.0);
    }
    let ymax = if ymin >= 0.0 {
        nice_max(ymax)
    } else {
        ymax + (ymax - ymin) * 0.05
    };
    let span = (ymax - ymin).max(1e-12);
    let y = |v: f64| TOP + (1.0 - (v - ymin) / span) * plot_h;
    let score_top = TOP + plot_h + GAP;
    let ys = |s: f64| score_top + (1.0 - s.clamp(0.0, 1.0)) * SCORE_H;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="plot" data-finding="{}" data-series="{}" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" aria-label="{}">"#,
        esc(&f.finding_id),
        esc(&key),
        esc(&format!(
            "{} around {}",
            key,
            format_rfc3339_micros(f.event_time)
        ))
    );
    let _ = write!(
        svg,
        r##"<rect x="{LEFT}" y="{TOP}" width="{}" height="{plot_h}" fill="#fff" stroke="#ccd"/>"##,
        W - LEFT - RIGHT
    );
    // Labelled windows.
    if let Some(l) = inp.labels
        && let Some(k) = l.key_of(f)
    {
        for &(a, b) in l.windows.get(k).into_iter().flatten() {
            let (a, b) = (a.max(from), b.min(to));
            if b > a {
                let _ = write!(
                    svg,
                    r##"<rect class="label" x="{:.1}" y="{TOP}" width="{:.1}" height="{:.1}" fill="#f5a623" fill-opacity="0.18"/>"##,
                    x(a),
                    (x(b) - x(a)).max(1.0),
                    plot_h + GAP + SCORE_H
                );
            }
        }
    }
    // The finding's window.
    let (fa, fb) = f
        .evidence
        .window
        .unwrap_or((f.event_time, f.event_time + w));
    let _ = write!(
        svg,
        r##"<rect class="finding" x="{:.1}" y="{TOP}" width="{:.1}" height="{:.1}" fill="#d0021b" fill-opacity="0.22"/>"##,
        x(fa),
        (x(fb) - x(fa)).max(2.0),
        plot_h + GAP + SCORE_H
    );
    // Band.
    let band: Vec<&Point> = pts
        .iter()
        .filter(|p| p.lo.is_some() && p.hi.is_some())
        .collect();
    if band.len() >= 2 {
        let mut d = String::new();
        for (i, p) in band.iter().enumerate() {
            let _ = write!(
                d,
                "{}{:.1},{:.1}",
                if i == 0 { "M" } else { "L" },
                x(p.t) + 0.5 * (x(p.t + w) - x(p.t)),
                y(p.hi.unwrap_or(0.0).min(ymax))
            );
        }
        for p in band.iter().rev() {
            let _ = write!(
                d,
                "L{:.1},{:.1}",
                x(p.t) + 0.5 * (x(p.t + w) - x(p.t)),
                y(p.lo.unwrap_or(0.0).max(ymin))
            );
        }
        let _ = write!(
            svg,
            r##"<path class="band" d="{d}Z" fill="#4a90e2" fill-opacity="0.15" stroke="none"/>"##
        );
    }
    let line = |pick: &dyn Fn(&Point) -> Option<f64>| {
        let mut d = String::new();
        let mut pen = false;
        let mut n = 0;
        for p in &pts {
            match pick(p) {
                Some(v) if v.is_finite() => {
                    let _ = write!(
                        d,
                        "{}{:.1},{:.1}",
                        if pen { "L" } else { "M" },
                        x(p.t) + 0.5 * (x(p.t + w) - x(p.t)),
                        y(v.clamp(ymin, ymax))
                    );
                    pen = true;
                    n += 1;
                }
                _ => pen = false,
            }
        }
        (d, n)
    };
    let (d, _) = line(&|p: &Point| p.expected);
    if !d.is_empty() {
        let _ = write!(
            svg,
            r##"<path class="expected" d="{d}" fill="none" stroke="#4a90e2" stroke-width="1.5" stroke-dasharray="5 3"/>"##
        );
    }
    let (d, n) = line(&|p: &Point| p.observed);
    let _ = write!(
        svg,
        r##"<path class="observed" data-points="{n}" d="{d}" fill="none" stroke="#222" stroke-width="1.6"/>"##
    );
    // Y axis.
    for i in 0..=4 {
        let v = ymin + span * f64::from(i) / 4.0;
        let _ = write!(
            svg,
            r##"<line x1="{LEFT}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="#eef"/><text x="{:.1}" y="{:.1}" font-size="10" text-anchor="end" fill="#556">{}</text>"##,
            W - RIGHT,
            y(v),
            y(v),
            LEFT - 4.0,
            y(v) + 3.0,
            esc(&fmt_num(v))
        );
    }
    // Score strip.
    let _ = write!(
        svg,
        r##"<rect x="{LEFT}" y="{score_top}" width="{}" height="{SCORE_H}" fill="#fafafa" stroke="#ccd"/><text x="{:.1}" y="{:.1}" font-size="10" text-anchor="end" fill="#556">score</text>"##,
        W - LEFT - RIGHT,
        LEFT - 4.0,
        score_top + SCORE_H / 2.0
    );
    let bar_w = ((W - LEFT - RIGHT) / pts.len().max(1) as f64 * 0.8).max(0.8);
    let mut bars = String::new();
    for p in &pts {
        if p.score > 0.0 {
            let _ = write!(
                bars,
                r#"<rect x="{:.1}" y="{:.1}" width="{bar_w:.1}" height="{:.1}"/>"#,
                x(p.t),
                ys(p.score),
                score_top + SCORE_H - ys(p.score)
            );
        }
    }
    let _ = write!(svg, r##"<g class="score" fill="#7b61ff">{bars}</g>"##);
    let _ = write!(
        svg,
        r##"<line class="threshold" x1="{LEFT}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="#d0021b" stroke-dasharray="3 3"/>"##,
        W - RIGHT,
        ys(inp.threshold),
        ys(inp.threshold)
    );
    // Time axis.
    let ticks = 6;
    for i in 0..=ticks {
        let t = from + (to - from) * i / ticks;
        let _ = write!(
            svg,
            r##"<text x="{:.1}" y="{:.1}" font-size="10" text-anchor="middle" fill="#556">{}</text>"##,
            x(t),
            H - 8.0,
            esc(&hhmm(t))
        );
    }
    svg.push_str("</svg>");
    svg
}

const CSS: &str = "body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#222;background:#f4f5f8}\
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 10px}.sub{color:#667;font-size:13px}\
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:10px;margin:14px 0}\
.card{background:#fff;border:1px solid #dde;border-radius:6px;padding:10px}.card b{display:block;font-size:20px}\
.card span{color:#667;font-size:12px}.finding{background:#fff;border:1px solid #dde;border-radius:6px;padding:12px;margin:0 0 14px}\
.finding h3{font-size:14px;margin:0 0 4px}.finding p{margin:0 0 8px;font-size:12px;color:#445}\
.legend{font-size:11px;color:#556}.legend i{display:inline-block;width:14px;height:8px;margin:0 4px 0 10px;vertical-align:middle}\
table{border-collapse:collapse;background:#fff;font-size:12px;width:100%}th,td{border:1px solid #dde;padding:4px 6px;text-align:left;vertical-align:top}\
th{background:#eef0f6}td.n{text-align:right;font-variant-numeric:tabular-nums}";

/// Renders the whole report.
pub fn render(inp: &ReportInput<'_>) -> String {
    let fig = inp.figures;
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>aiops backtest: {}</title><style>{CSS}</style></head><body>",
        esc(inp.history)
    );
    let _ = write!(
        h,
        "<h1>aiops backtest</h1><div class=\"sub\">history <code>{}</code> · configuration <code>{}</code> · events {} to {}</div>",
        esc(inp.history),
        esc(inp.config),
        esc(fig.first_event.as_deref().unwrap_or("–")),
        esc(fig.last_event.as_deref().unwrap_or("–"))
    );
    h.push_str("<div class=\"cards\" id=\"figures\">");
    let mut card = |label: &str, value: String| {
        let _ = write!(
            h,
            "<div class=\"card\"><b>{}</b><span>{}</span></div>",
            esc(&value),
            esc(label)
        );
    };
    card("events", fig.events.to_string());
    card("findings", fig.findings.to_string());
    card("change rules", fig.change_rule_findings.to_string());
    card("statistical", fig.statistical_findings.to_string());
    card("series", fig.series.to_string());
    card("duplicates dropped", fig.duplicates.to_string());
    card("late events", fig.late_events.to_string());
    card("events / s", format!("{:.0}", fig.events_per_sec));
    if let Some(s) = inp.label_score {
        let pct = |x: Option<f64>| x.map_or("–".to_string(), |v| format!("{:.1} %", 100.0 * v));
        card("precision", pct(s.precision));
        card("recall", pct(s.recall));
        card("F1", pct(s.f1));
        card(
            "median delay",
            s.median_delay_secs
                .map_or("–".to_string(), |d| format!("{d:.0} s")),
        );
        card(
            "windows detected",
            format!("{} / {}", s.detected_windows, s.windows),
        );
    }
    h.push_str("</div>");
    let _ = write!(
        h,
        "<h2>Findings plotted ({} of {})</h2><div class=\"legend\"><i style=\"background:#222\"></i>observed<i style=\"background:#4a90e2\"></i>expected (dashed) and band<i style=\"background:#d0021b;opacity:.4\"></i>finding window<i style=\"background:#f5a623;opacity:.5\"></i>labelled window<i style=\"background:#7b61ff\"></i>anomaly score (dashed line: threshold {})</div>",
        inp.plotted.len(),
        inp.findings.len(),
        inp.threshold
    );
    for &i in inp.plotted {
        let Some(f) = inp.findings.get(i) else {
            continue;
        };
        let _ = write!(
            h,
            "<div class=\"finding\" id=\"f-{}\"><h3>{} · {} · score {:.2}</h3><p>{} — {}</p>{}</div>",
            esc(&f.finding_id),
            esc(&format_rfc3339_micros(f.event_time)),
            esc(&f.detector),
            f.score,
            esc(&plot_key(f).unwrap_or_default()),
            esc(&f.summary),
            chart(inp, f)
        );
    }
    let _ = write!(
        h,
        "<h2>All findings ({})</h2><table id=\"findings\"><tr><th>event time</th><th>detector</th><th>kind</th><th>series or resource</th><th>score</th><th>observed</th><th>expected</th><th>summary</th></tr>",
        inp.findings.len()
    );
    for f in inp.findings {
        let what = f
            .evidence
            .series_key
            .clone()
            .or_else(|| f.resource.as_ref().map(aiops_core::ResourceKey::key))
            .unwrap_or_default();
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{:.2}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
            esc(&format_rfc3339_micros(f.event_time)),
            esc(&f.detector),
            esc(f.kind.as_str()),
            esc(&what),
            f.score,
            f.evidence.observed.map_or(String::new(), fmt_num),
            f.evidence.expected.map_or(String::new(), fmt_num),
            esc(&f.summary)
        );
    }
    h.push_str("</table><h2>Run</h2><table id=\"run\">");
    let json = serde_json::to_value(fig).unwrap_or_default();
    if let Some(obj) = json.as_object() {
        for (k, v) in obj {
            if k == "by_detector" {
                continue;
            }
            let text = match v {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Null => "–".into(),
                other => other.to_string(),
            };
            let _ = write!(h, "<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(&text));
        }
    }
    h.push_str("</table><h2>Findings per detector</h2><table><tr><th>detector</th><th>kind</th><th>findings</th></tr>");
    for d in &fig.by_detector {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td></tr>",
            esc(&d.detector),
            esc(&d.kind),
            d.findings
        );
    }
    h.push_str("</table>");
    if let Some(s) = inp.label_score {
        h.push_str("<h2>Labelled keys</h2><table><tr><th>key</th><th>windows</th><th>detected</th><th>findings</th><th>in a window</th></tr>");
        for k in &s.keys {
            let _ = write!(
                h,
                "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                esc(&k.key),
                k.windows,
                k.detected,
                k.findings,
                k.true_findings
            );
        }
        h.push_str("</table>");
    }
    h.push_str("</body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use aiops_core::{Evidence, FindingKind};

    const MIN: i64 = 60_000_000;

    #[test]
    fn one_chart_per_plotted_finding_with_drawn_data() {
        let f = Finding {
            suppressed: None,
            finding_id: "abc".into(),
            kind: FindingKind::RateAnomaly,
            detector: "log_level_rate".into(),
            event_time: 101 * MIN,
            detected_at: 0,
            resource: None,
            score: 0.9,
            summary: "burst <b>".into(),
            default_action: None,
            recoverable: false,
            evidence: Evidence {
                series_key: Some("log_level:g:ERROR".into()),
                window: Some((100 * MIN, 101 * MIN)),
                ..Evidence::default()
            },
            direction: None,
            priority: aiops_core::Priority::High,
        };
        let traces: Vec<WindowTrace> = (20..110)
            .filter(|m| m % 7 != 0)
            .map(|m| WindowTrace {
                key: "log_level:g:ERROR".into(),
                window_start: m * MIN,
                observed: if m == 100 { 60.0 } else { 2.0 },
                expected: 2.0,
                dispersion: Some(1.0),
                score: if m == 100 { 0.9 } else { 0.0 },
            })
            .collect();
        let mut by = BTreeMap::new();
        by.insert("log_level:g:ERROR".to_string(), traces);
        let fig = Figures {
            files: 1,
            rows: 10,
            events: 10,
            duplicates: 0,
            findings: 1,
            change_rule_findings: 0,
            statistical_findings: 1,
            first_event: None,
            last_event: None,
            late_events: 0,
            series: 1,
            series_seeded: 0,
            windows_closed: 3,
            peak_buffered_rows: 1,
            elapsed_secs: 1.0,
            events_per_sec: 10.0,
            by_detector: Vec::new(),
        };
        let findings = vec![f];
        let html = render(&ReportInput {
            history: "data",
            config: "pipeline.toml",
            findings: &findings,
            plotted: &[0],
            traces: &by,
            labels: None,
            label_score: None,
            figures: &fig,
            window_us: MIN,
            threshold: 0.5,
            data_end: 200 * MIN,
        });
        assert_eq!(html.matches("<svg class=\"plot\"").count(), 1);
        // 120 windows of context (10 to 130), 90 before and 30 after; the series starts at
        // window 20 and ends at 109 (the data runs on to 200): missing count windows are zeros.
        assert!(
            html.contains("class=\"observed\" data-points=\"110\""),
            "{html}"
        );
        assert!(html.contains("burst &lt;b&gt;"));
        assert!(!html.contains("<script"));
        assert!(!html.contains("http"));
    }
}
