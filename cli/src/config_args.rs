//! The configuration options every command shares, and loading the configuration they name.

use aiops_pipeline::PipelineConfig;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// Which configuration a command runs with.
#[derive(clap::Args, Clone)]
pub struct ConfigArgs {
    /// Configuration file (default: ./pipeline.toml when present, else the built-in default:
    /// embedded mode with the simulate source).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Where embedded mode writes Parquet, the SQLite store and dead letters (overrides
    /// `data_dir`).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

/// Loads, overrides and validates the configuration `args` name; returns it and where it came
/// from (a path, or `built-in default`).
///
/// # Errors
/// When it cannot be read, parsed or validated.
pub fn load_config(args: &ConfigArgs) -> Result<(PipelineConfig, String)> {
    let (mut cfg, origin) = match &args.config {
        Some(p) => (PipelineConfig::load(p)?, p.display().to_string()),
        None => {
            let default = Path::new("pipeline.toml");
            if default.exists() {
                (PipelineConfig::load(default)?, "pipeline.toml".to_string())
            } else {
                (
                    PipelineConfig::builtin_default(),
                    "built-in default".to_string(),
                )
            }
        }
    };
    if let Some(d) = &args.data_dir {
        cfg.data_dir = d.clone();
    }
    cfg.validate()
        .with_context(|| format!("invalid configuration ({origin})"))?;
    Ok((cfg, origin))
}
