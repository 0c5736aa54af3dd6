//! `aiops learn`: the statistics engine run over the `raw` history in event-time order in
//! learning mode (the same series, windows and template miners as the live detect stage), and
//! its baselines written where detect loads them at start: a JSON file (embedded mode), or the
//! DynamoDB patterns table (`dynamodb://<table>`, aws mode).

use super::reader::RawMerge;
use crate::error::{Context, Result};
use crate::location::{AwsAccess, HistoryLocation, write_atomically};
use crate::{patterns, progress};
use aiops_detect::baseline::Baselines;
use aiops_detect::config::StatisticsConfig;
use aiops_detect::engine::StatsEngine;
use aiops_ingest::dedup::DedupConfig;
use aiops_ingest::dedup::Deduplicator;
use serde::Serialize;
use std::time::Instant;

/// What a learning run produced.
pub struct Learned {
    /// The baselines.
    pub baselines: Baselines,
    /// Events learned from (after de-duplication).
    pub events: u64,
    /// Wall-clock seconds.
    pub elapsed_secs: f64,
}

/// Figures of a learning run, as printed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LearnSummary {
    /// Events learned from.
    pub events: u64,
    /// First event time (RFC 3339).
    pub learned_from: Option<String>,
    /// Last event time (RFC 3339).
    pub learned_to: Option<String>,
    /// Series with a baseline.
    pub series: usize,
    /// Count series among them.
    pub count_series: usize,
    /// Value series among them.
    pub value_series: usize,
    /// Log groups with a template dictionary.
    pub log_groups: usize,
    /// Templates over all groups.
    pub templates: usize,
    /// Principal/API pairs.
    pub pairs: usize,
    /// Size of the JSON document, bytes.
    pub bytes: usize,
    /// DynamoDB items written (parts), when written there.
    pub items: Option<usize>,
    /// Wall-clock seconds.
    pub elapsed_secs: f64,
}

/// Learns baselines from the `raw` table at `location` (reached with `access`) in `[from, to)`
/// with `statistics` (`[detect.statistics]`), de-duplicating with `dedup` (`[ingest.dedup]`) as
/// the live detect stage does.
///
/// # Errors
/// When the history cannot be read.
pub fn learn(
    location: &HistoryLocation,
    access: &AwsAccess,
    statistics: &StatisticsConfig,
    dedup: &DedupConfig,
    from: Option<i64>,
    to: Option<i64>,
    quiet: bool,
) -> Result<Learned> {
    let started = Instant::now();
    let mut engine = StatsEngine::new_learning(statistics.clone());
    let mut dedup = Deduplicator::new(dedup)?;
    let mut merge = RawMerge::open(location, access, from, to)?;
    let pb = progress::bar(merge.total_rows(), quiet, "rows");
    let mut events = 0u64;
    let mut n = 0u64;
    while let Some(e) = merge.next_event()? {
        n += 1;
        if n.is_multiple_of(4096) {
            pb.set_position(merge.rows_read);
        }
        if dedup.is_duplicate(&e.event_id, e.event_time) {
            continue;
        }
        events += 1;
        engine.observe(&e);
    }
    engine.flush();
    pb.finish_and_clear();
    let baselines = engine.baselines();
    baselines
        .validate(statistics)
        .context("the learned baselines do not validate (a bug)")?;
    Ok(Learned {
        baselines,
        events,
        elapsed_secs: started.elapsed().as_secs_f64(),
    })
}

/// Writes learned baselines to `out` (a file, or `dynamodb://<table>` reached with `access`)
/// and summarises them.
///
/// # Errors
/// When they cannot be written.
pub fn write(l: &Learned, out: &str, access: &AwsAccess) -> Result<LearnSummary> {
    let b = &l.baselines;
    let json = b.to_json()?;
    let items = if let Some(table) = out.strip_prefix("dynamodb://") {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        let (_, parts) = rt.block_on(async {
            let sdk =
                aiops_aws::sdk::load(access.region.as_deref(), access.endpoint_url.as_deref())
                    .await;
            patterns::save(&aws_sdk_dynamodb::Client::new(&sdk), table, b).await
        })?;
        Some(parts)
    } else {
        write_atomically(std::path::Path::new(out), &json)?;
        None
    };
    let fmt = |t: i64| (b.events > 0).then(|| aiops_core::time::format_rfc3339_micros(t));
    Ok(LearnSummary {
        events: l.events,
        learned_from: fmt(b.learned_from),
        learned_to: fmt(b.learned_to),
        series: b.series.len(),
        count_series: b.series.iter().filter(|s| s.count.is_some()).count(),
        value_series: b.series.iter().filter(|s| s.value.is_some()).count(),
        log_groups: b.log_groups.len(),
        templates: b.log_groups.iter().map(|g| g.templates.len()).sum(),
        pairs: b.pairs.len(),
        bytes: json.len(),
        items,
        elapsed_secs: l.elapsed_secs,
    })
}
