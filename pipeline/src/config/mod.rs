//! `pipeline.toml`: the whole configuration, parsed strictly (`deny_unknown_fields`) and
//! validated before anything starts.

mod aws;

pub use aws::{AwsSection, DeploymentProfile, DetectStateConfig};

use crate::error::{Context, PipelineError, Result};
use aiops_act::ActConfig;
use aiops_detect::config::StatisticsConfig;
use aiops_detect::rules::{ChangeRules, ChangeRulesConfig};
use aiops_ingest::archive::ArchiveConfig;
use aiops_ingest::decode::DecodeLimits;
use aiops_ingest::dedup::DedupConfig;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The top level of `pipeline.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// `embedded` (one process, local stores) or `aws`.
    #[serde(default = "default_mode")]
    pub mode: String,
    /// Where embedded mode writes Parquet, the SQLite store and dead letters.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Decoding, de-duplication and bounds.
    #[serde(default)]
    pub ingest: IngestSection,
    /// Parquet archive roll-over.
    #[serde(default)]
    pub archive: ArchiveConfig,
    /// Inputs of embedded mode.
    #[serde(default)]
    pub sources: Vec<SourceConfig>,
    /// Detection.
    #[serde(default)]
    pub detect: DetectSection,
    /// Decisions and recovery.
    #[serde(default)]
    pub act: ActConfig,
    /// Channel capacities between stages.
    #[serde(default)]
    pub pipeline: PipelineSection,
    /// aws mode: streams, tables, bucket and the Kinesis/lease/S3 tuning.
    #[serde(default)]
    pub aws: AwsSection,
}

fn default_mode() -> String {
    "embedded".to_string()
}
fn default_data_dir() -> PathBuf {
    PathBuf::from("data")
}

/// `[ingest]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestSection {
    /// Largest decompressed size of one gzip payload, bytes. Default 64 MiB.
    pub max_decompressed_bytes: usize,
    /// Largest single record, bytes. Default 1 MiB (the Kinesis record limit).
    pub max_record_bytes: usize,
    /// Largest file read by the file source, bytes; a larger file is a dead letter.
    /// Default 512 MiB.
    pub max_file_bytes: u64,
    /// De-duplication window.
    pub dedup: DedupConfig,
}

impl Default for IngestSection {
    fn default() -> Self {
        let limits = DecodeLimits::default();
        IngestSection {
            max_decompressed_bytes: limits.max_decompressed_bytes,
            max_record_bytes: limits.max_record_bytes,
            max_file_bytes: 512 * 1024 * 1024,
            dedup: DedupConfig::default(),
        }
    }
}

impl IngestSection {
    /// The decoder bounds.
    pub fn limits(&self) -> DecodeLimits {
        DecodeLimits {
            max_decompressed_bytes: self.max_decompressed_bytes,
            max_record_bytes: self.max_record_bytes,
        }
    }
}

/// `[detect]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectSection {
    /// Change rules.
    pub change_rules: ChangeRulesConfig,
    /// Statistical detectors over event-time windows, and log template mining.
    pub statistics: StatisticsConfig,
}

/// `[pipeline]`: bounded channels between the embedded stages.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineSection {
    /// Capacity of the channels between stages, in batches: sources -> ingest carries whole
    /// files or batches of up to 500 Kinesis records; ingest -> detect carries the events of
    /// one such batch and holds 8 times as many in a live run (so a window close does not
    /// hold up ingest), and in a replay as many batches of at most 1,024 events;
    /// ingest and detect -> act carry single findings and hold 128 times as many. Small on
    /// purpose: a full channel slows the producer (back-pressure) instead of queueing
    /// gigabytes and seconds of latency. Default 8; 1 to 10,000.
    pub channel_capacity: usize,
    /// `aiops replay` feeds the statistical detectors in event-time order across all its
    /// inputs through a reorder buffer released by a watermark (the newest event time seen
    /// minus [`Self::replay_reorder_horizon_secs`]); this is its hard cap in events: beyond
    /// it the oldest events are released before the watermark passes them (counted in
    /// `reorder_early_releases`), so memory stays bounded whatever the input's size. 0 feeds
    /// each input's events sorted, in input order. Default 250,000; at most 50,000,000.
    pub replay_reorder_events: usize,
    /// Hard cap of the replay reorder buffer in bytes (the events' structs and strings,
    /// approximately; allocator overhead not counted): beyond it the oldest events are
    /// released early, as with [`Self::replay_reorder_events`]. Default 64 MiB (about 45,000
    /// CloudTrail events, ten minutes of a trail at 70 calls/s); at least 1 MiB, at most
    /// 64 GiB.
    pub replay_reorder_bytes: u64,
    /// The horizon of the replay reorder buffer, seconds of event time: an event is held
    /// until the newest event time seen is this far past it, so inputs whose events are out
    /// of order by up to this much (files of one delivery period, trails of several regions
    /// read one after the other within a day directory) reach the statistics in event-time
    /// order, as long as the caps above are not reached. An event older than one already fed
    /// is still fed (the statistics count it late) and is counted in `out_of_order_events`.
    /// Default 3600 (one hour); at most 30 days.
    pub replay_reorder_horizon_secs: u64,
    /// Threads that decode whole inputs (files, S3 objects) in parallel during a replay or a
    /// files source; their results are handed to ingest in input order, so the output does
    /// not depend on the thread count. 0 (default) uses the machine's cores; at most 256.
    pub decode_threads: usize,
    /// Threads that score the statistical series at a window close (the first also runs the
    /// detect loop). 0 (default) uses one less than the machine's cores, at least 1, leaving
    /// a core to ingest; at most 256.
    pub scoring_threads: usize,
}

impl Default for PipelineSection {
    fn default() -> Self {
        PipelineSection {
            channel_capacity: 8,
            replay_reorder_events: 250_000,
            replay_reorder_bytes: 64 * 1024 * 1024,
            replay_reorder_horizon_secs: 3600,
            decode_threads: 0,
            scoring_threads: 0,
        }
    }
}

/// One input of embedded mode.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SourceConfig {
    /// Files or directories: read once (recursively, in path order), then, with `follow`,
    /// polled for new files.
    Files {
        /// Files or directories.
        paths: Vec<PathBuf>,
        /// Keep polling for new files after the first pass. Default true.
        #[serde(default = "yes")]
        follow: bool,
        /// Poll interval in milliseconds. Default 1000.
        #[serde(default = "default_poll_ms")]
        poll_interval_ms: u64,
        /// File-name patterns (`*` wildcard) never read: documentation, tables and our own
        /// outputs. Default [`DEFAULT_EXCLUDE`].
        #[serde(default = "default_exclude")]
        exclude: Vec<String>,
    },
    /// Built-in traffic generator with injected incidents.
    Simulate(crate::sim::SimulateConfig),
}

/// File-name patterns the files source skips by default: documentation, licences, checksums
/// and aiops' own outputs. Skipped files are counted, not dead letters.
pub const DEFAULT_EXCLUDE: [&str; 16] = [
    "*.md",
    "*.txt",
    "*.rst",
    "*.html",
    "*.pdf",
    "LICENSE*",
    "NOTICE*",
    "*.parquet",
    "*.sqlite",
    "*.sqlite-*",
    "*.toml",
    "*.yaml",
    "*.yml",
    "*.csv",
    "dead-letters-*.jsonl",
    "*.inprogress",
];

/// [`DEFAULT_EXCLUDE`] as owned strings.
pub fn default_exclude() -> Vec<String> {
    DEFAULT_EXCLUDE.iter().map(|s| s.to_string()).collect()
}

fn yes() -> bool {
    true
}
fn default_poll_ms() -> u64 {
    1000
}

impl PipelineConfig {
    /// Reads and parses `path`.
    ///
    /// # Errors
    /// When the file cannot be read, or the TOML is invalid or has unknown fields (the error
    /// names the line, column and field).
    pub fn load(path: &Path) -> Result<PipelineConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read configuration {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("in {}", path.display()))
    }

    /// Parses TOML text.
    ///
    /// # Errors
    /// Invalid TOML or unknown fields.
    pub fn parse(text: &str) -> Result<PipelineConfig> {
        let cfg: PipelineConfig =
            toml::from_str(text).map_err(|e| PipelineError::Invalid(e.to_string()))?;
        Ok(cfg)
    }

    /// The built-in default (embedded mode, simulate source).
    pub fn builtin_default() -> PipelineConfig {
        PipelineConfig {
            mode: default_mode(),
            data_dir: default_data_dir(),
            ingest: IngestSection::default(),
            archive: ArchiveConfig::default(),
            sources: vec![SourceConfig::Simulate(crate::sim::SimulateConfig::default())],
            detect: DetectSection::default(),
            act: ActConfig::default(),
            pipeline: PipelineSection::default(),
            aws: AwsSection::default(),
        }
    }

    /// How S3 and DynamoDB are reached: the `[aws]` region and endpoint.
    pub fn aws_access(&self) -> aiops_history::AwsAccess {
        aiops_history::AwsAccess {
            region: self.aws.region.clone(),
            endpoint_url: self.aws.endpoint_url.clone(),
        }
    }

    /// Checks every section; the error says which field is wrong and why. Beside the values,
    /// it checks that every path of a files source exists and can be read (a file that opens,
    /// a directory that lists).
    ///
    /// # Errors
    /// The first problem found.
    pub fn validate(&self) -> Result<()> {
        match self.mode.as_str() {
            "embedded" => {}
            "aws" => {
                self.aws
                    .validate()
                    .map_err(|e| PipelineError::Invalid(format!("aws.{e}")))?;
                // aws mode reads the raw stream only: a source here would be ignored silently.
                if !self.sources.is_empty() {
                    return Err(PipelineError::Invalid(format!(
                        "sources: {} [[sources]] in mode \"aws\", which reads only the raw stream \
                         ([aws] raw_stream); sources are read in embedded mode (or with `aiops \
                         replay`): remove them",
                        self.sources.len()
                    )));
                }
            }
            other => {
                return Err(PipelineError::Invalid(format!(
                    "mode: {other:?} is not \"embedded\" or \"aws\""
                )));
            }
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(PipelineError::Invalid("data_dir: is empty".into()));
        }
        let l = self.ingest.limits();
        if l.max_record_bytes == 0 {
            return Err(PipelineError::Invalid(
                "ingest.max_record_bytes: must be at least 1".into(),
            ));
        }
        if l.max_decompressed_bytes < l.max_record_bytes {
            return Err(PipelineError::Invalid(format!(
                "ingest.max_decompressed_bytes: {} is smaller than ingest.max_record_bytes {}",
                l.max_decompressed_bytes, l.max_record_bytes
            )));
        }
        if self.ingest.max_file_bytes == 0 {
            return Err(PipelineError::Invalid(
                "ingest.max_file_bytes: must be at least 1".into(),
            ));
        }
        self.ingest
            .dedup
            .validate()
            .map_err(|e| PipelineError::Invalid(format!("ingest.dedup: {e}")))?;
        self.archive.validate()?;
        ChangeRules::new(&self.detect.change_rules)
            .map_err(|e| PipelineError::Invalid(format!("detect.{e}")))?;
        self.detect
            .statistics
            .validate()
            .map_err(|e| PipelineError::Invalid(e.to_string()))?;
        self.act.validate()?;
        if self.pipeline.channel_capacity == 0 || self.pipeline.channel_capacity > 10_000 {
            return Err(PipelineError::Invalid(
                "pipeline.channel_capacity: must be between 1 and 10000".into(),
            ));
        }
        if self.pipeline.scoring_threads > 256 {
            return Err(PipelineError::Invalid(
                "pipeline.scoring_threads: must be at most 256".into(),
            ));
        }
        if self.pipeline.replay_reorder_events > 50_000_000 {
            return Err(PipelineError::Invalid(
                "pipeline.replay_reorder_events: must be at most 50000000".into(),
            ));
        }
        if !(1 << 20..=64 << 30).contains(&self.pipeline.replay_reorder_bytes) {
            return Err(PipelineError::Invalid(
                "pipeline.replay_reorder_bytes: must be between 1048576 (1 MiB) and 68719476736 (64 GiB)".into(),
            ));
        }
        if self.pipeline.replay_reorder_horizon_secs > 30 * 86_400 {
            return Err(PipelineError::Invalid(
                "pipeline.replay_reorder_horizon_secs: must be at most 2592000 (30 days)".into(),
            ));
        }
        if self.pipeline.decode_threads > 256 {
            return Err(PipelineError::Invalid(
                "pipeline.decode_threads: must be at most 256".into(),
            ));
        }
        for (i, s) in self.sources.iter().enumerate() {
            match s {
                SourceConfig::Files {
                    paths,
                    poll_interval_ms,
                    ..
                } => {
                    if paths.is_empty() {
                        return Err(PipelineError::Invalid(format!(
                            "sources[{i}].paths: lists no path"
                        )));
                    }
                    // A path that does not exist (a typo) would read nothing, silently, for
                    // as long as the pipeline runs: the one check of the file system here.
                    for (j, path) in paths.iter().enumerate() {
                        aiops_ingest::files::check_input(path).map_err(|e| {
                            PipelineError::Invalid(format!("sources[{i}].paths[{j}]: {e}"))
                        })?;
                    }
                    if *poll_interval_ms == 0 {
                        return Err(PipelineError::Invalid(format!(
                            "sources[{i}].poll_interval_ms: must be at least 1"
                        )));
                    }
                }
                SourceConfig::Simulate(sim) => sim
                    .validate()
                    .map_err(|e| PipelineError::Invalid(format!("sources[{i}] (simulate).{e}")))?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_pipeline_toml_parses_and_validates() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipeline.toml");
        let cfg = PipelineConfig::load(&path).unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.mode, "embedded");
        assert!(matches!(cfg.sources[0], SourceConfig::Simulate(_)));
    }

    #[test]
    fn unknown_field_is_named() {
        let err = PipelineConfig::parse("mode = \"embedded\"\n[act]\nconfidence_treshold = 0.5\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `confidence_treshold`"), "{err}");
        assert!(err.contains("line 3"), "{err}");
    }

    #[test]
    fn out_of_range_values_are_named() {
        let cfg = PipelineConfig::parse("[act]\nconfidence_threshold = 1.5\n").unwrap();
        assert_eq!(
            cfg.validate().unwrap_err().to_string(),
            "act.confidence_threshold: 1.5 is outside 0..=1"
        );
        let cfg = PipelineConfig::parse("mode = \"cloud\"\n").unwrap();
        assert_eq!(
            cfg.validate().unwrap_err().to_string(),
            "mode: \"cloud\" is not \"embedded\" or \"aws\""
        );
        let cfg =
            PipelineConfig::parse("[detect.change_rules]\ndisabled_rules = [\"nope\"]\n").unwrap();
        assert_eq!(
            cfg.validate().unwrap_err().to_string(),
            "detect.change rules: disabled_rules names unknown rule \"nope\""
        );
    }

    #[test]
    fn a_files_source_path_that_does_not_exist_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("incoming");
        let text = format!(
            "[[sources]]\ntype = \"files\"\npaths = [{:?}, {:?}]\n",
            dir.path().display().to_string(),
            missing.display().to_string()
        );
        let cfg = PipelineConfig::parse(&text).unwrap();
        assert_eq!(
            cfg.validate().unwrap_err().to_string(),
            format!("sources[0].paths[1]: {} does not exist", missing.display())
        );
        std::fs::create_dir(&missing).unwrap();
        cfg.validate().unwrap();
    }

    #[test]
    fn shipped_pipeline_aws_toml_parses_and_validates() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipeline.aws.toml");
        let cfg = PipelineConfig::load(&path).unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.mode, "aws");
        assert_eq!(cfg.aws.raw_stream, "aiops-raw");
        assert_eq!(cfg.aws.endpoint_url, None);
        assert_eq!(cfg.archive.max_file_age_secs, 60);
        let bad = PipelineConfig::parse(
            "mode = \"aws\"\n[aws]\nhistory_bucket = \"b-1\"\nraw_shards = 0\n",
        )
        .unwrap();
        assert_eq!(
            bad.validate().unwrap_err().to_string(),
            "aws.raw_shards: 0 is outside 1..=1000"
        );
        let unknown = PipelineConfig::parse("mode = \"aws\"\n[aws]\nraw_streem = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(unknown.contains("unknown field `raw_streem`"), "{unknown}");
        let with_source = PipelineConfig::parse(
            "mode = \"aws\"\n[aws]\nhistory_bucket = \"b-1\"\n[[sources]]\ntype = \"simulate\"\n",
        )
        .unwrap();
        assert_eq!(
            with_source.validate().unwrap_err().to_string(),
            "sources: 1 [[sources]] in mode \"aws\", which reads only the raw stream ([aws] \
             raw_stream); sources are read in embedded mode (or with `aiops replay`): remove them"
        );
    }
}
