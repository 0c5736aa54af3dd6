//! `aiops bench`: printing its report; the harness is `aiops_benches::harness`.

use aiops_benches::harness::BenchReport;

/// Prints a report as text.
pub fn print_text(r: &BenchReport) {
    let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2} ms"));
    out!(
        "aiops bench ({} mode, {} cpus): {} events ({} records, {:.1} MB) in {:.2} s",
        r.mode,
        r.cpus,
        r.events,
        r.records,
        r.bytes as f64 / 1e6,
        r.elapsed_secs
    );
    out!(
        "  throughput        {:.0} events/s, {:.1} MB/s{}",
        r.events_per_sec,
        r.mb_per_sec,
        if r.target_rate > 0.0 {
            format!(" (fed at {:.0} events/s)", r.target_rate)
        } else {
            " (unpaced)".to_string()
        }
    );
    if r.change_findings > 0 && r.change_findings_measured == 0 {
        out!(
            "  (every change finding fell in the {:.0} s warm-up: run longer, or pass --warmup-secs 0)",
            r.warmup_secs
        );
    }
    out!(
        "  change findings   {} ({} after a {:.0} s warm-up): latency p50 {}, p99 {}, max {} (max {} with the warm-up)",
        r.change_findings,
        r.change_findings_measured,
        r.warmup_secs,
        ms(r.latency_p50_ms),
        ms(r.latency_p99_ms),
        ms(r.latency_max_ms),
        ms(r.latency_max_all_ms)
    );
    out!(
        "  resources         peak RSS {:.0} MiB, {:.2} CPU s ({:.2} per million events, {:.2} cores busy)",
        r.peak_rss_mib,
        r.cpu_secs,
        r.cpu_secs_per_million_events,
        r.cores_used
    );
    out!(
        "  detect            {} series, {} log groups, {} templates; {} findings, {} incidents",
        r.series,
        r.log_groups,
        r.templates,
        r.findings,
        r.incidents
    );
    out!(
        "  ingest            {} rows archived, {} duplicates, {} dead letters",
        r.archived_rows,
        r.duplicates,
        r.dead_letters
    );
}
