//! What `aiops bench` is asked (its arguments) and what it reports.

use serde::Serialize;
use std::path::PathBuf;

/// `aiops bench` arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Events to generate and push through the pipeline.
    #[arg(long, default_value_t = 1_000_000)]
    pub events: u64,
    /// Events per second to feed (paced); 0 feeds as fast as the pipeline takes them.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// `embedded` (one process, threads and bounded channels) or `aws` (the `ingest`,
    /// `detect` and `act` stage processes on the Kinesis streams, DynamoDB tables and S3
    /// bucket an aws-mode `--config` names, normally a local emulator; see benches/README.md).
    #[arg(long, default_value = "embedded")]
    pub mode: String,
    /// aws mode: give up when the stages have not accounted for every event this many
    /// seconds after the stages were started.
    #[arg(long, default_value_t = 600)]
    pub timeout_secs: u64,
    /// Print the figures as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    /// Configuration (default: the built-in embedded default; its sources are ignored, the
    /// generator is the only source). Its `data_dir` is replaced by a fresh directory under
    /// `--work-dir`.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Where the generated input is cached and the run's data directory is made.
    #[arg(long, default_value = "/var/tmp/aiops-bench")]
    pub work_dir: PathBuf,
    /// Keep the run's data directory (Parquet, SQLite, dead letters) instead of deleting it.
    #[arg(long)]
    pub keep: bool,
    /// Share of events that are CloudTrail calls (the rest are log lines), in [0, 1].
    #[arg(long, default_value_t = 0.5)]
    pub cloudtrail_share: f64,
    /// Distinct principals making the CloudTrail calls (each calls two APIs of one service,
    /// so about two `api_call` series per principal).
    #[arg(long, default_value_t = 5000)]
    pub principals: usize,
    /// Distinct log groups.
    #[arg(long, default_value_t = 200)]
    pub log_groups: usize,
    /// Templates each log group draws from (0: the simulator's built-in dozen).
    #[arg(long, default_value_t = 300)]
    pub templates_per_group: usize,
    /// Successful destructive calls per million CloudTrail events (each opens an incident;
    /// their findings give the latency figures).
    #[arg(long, default_value_t = 200.0)]
    pub destructive_per_million: f64,
    /// Event time the generated traffic spans, seconds, ending at the last midnight (UTC)
    /// before the generation.
    /// Default: `events / rate` when paced (event time advances as fast as the wall clock,
    /// as in production), else 3600 (an hour of windows closes during the run).
    #[arg(long)]
    pub span_secs: Option<u64>,
    /// When the generated event times end: RFC 3339 or `YYYY-MM-DD` (its midnight, UTC).
    /// Default: the last midnight (UTC) before the generation. Fix it to make the input (and
    /// every count and size in the report) the same whatever the day the input is generated.
    #[arg(long, value_name = "TIME")]
    pub end_time: Option<String>,
    /// Random seed of the generator.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Seconds at the start of the run whose change-rule findings are left out of the latency
    /// percentiles (caches, tables and files warming up); the maximum over the whole run is
    /// reported beside them.
    #[arg(long, default_value_t = 2.0)]
    pub warmup_secs: f64,
    /// Records per batch handed to the pipeline (a Kinesis GetRecords response holds up to
    /// 10,000).
    #[arg(long, default_value_t = 500)]
    pub batch_records: usize,
}

/// The figures `aiops bench` prints. In aws mode each field is measured as
/// [`super::aws`] describes (stage processes: their summed peak RSS and CPU seconds;
/// latency from the `PutRecords` call to the finding), and `series`, `series_rejected`,
/// `log_groups` and `templates` are 0 (the stage processes do not report them).
#[derive(Debug, Serialize)]
pub struct BenchReport {
    /// Always `bench`.
    pub kind: &'static str,
    /// `embedded` or `aws`.
    pub mode: String,
    /// Events decoded (CloudTrail calls and log lines, duplicates included).
    pub events: u64,
    /// Kinesis records handed to the pipeline.
    pub records: u64,
    /// Bytes of record data handed to the pipeline.
    pub bytes: u64,
    /// Wall-clock seconds from the first record handed over until the pipeline ended.
    pub elapsed_secs: f64,
    /// `events / elapsed_secs`.
    pub events_per_sec: f64,
    /// `bytes / elapsed_secs`, in MB (10^6 bytes) per second.
    pub mb_per_sec: f64,
    /// Requested feed rate, events per second (0: unpaced).
    pub target_rate: f64,
    /// Change-rule findings produced.
    pub change_findings: u64,
    /// Of them, those after the warm-up, whose latencies give the percentiles.
    pub change_findings_measured: u64,
    /// Warm-up left out of the percentiles, seconds.
    pub warmup_secs: f64,
    /// Latency from ingestion to change-rule finding after the warm-up, milliseconds: median.
    pub latency_p50_ms: Option<f64>,
    /// 99th percentile (nearest rank).
    pub latency_p99_ms: Option<f64>,
    /// Maximum after the warm-up.
    pub latency_max_ms: Option<f64>,
    /// Maximum over the whole run, warm-up included.
    pub latency_max_all_ms: Option<f64>,
    /// Peak resident memory of the process during the run, MiB.
    pub peak_rss_mib: f64,
    /// User + system CPU seconds of the process over the run.
    pub cpu_secs: f64,
    /// CPU seconds per million events.
    pub cpu_secs_per_million_events: f64,
    /// Average cores busy (`cpu_secs / elapsed_secs`).
    pub cores_used: f64,
    /// Series the statistics engine tracked at the end.
    pub series: u64,
    /// New series refused because `max_series` were tracked.
    pub series_rejected: u64,
    /// Log groups with a template miner.
    pub log_groups: u64,
    /// Templates over all log groups.
    pub templates: u64,
    /// Findings (change and statistical).
    pub findings: u64,
    /// Incidents opened.
    pub incidents: u64,
    /// Rows written to Parquet.
    pub archived_rows: u64,
    /// Duplicates dropped.
    pub duplicates: u64,
    /// Dead letters.
    pub dead_letters: u64,
    /// Available parallelism of the machine.
    pub cpus: usize,
}
