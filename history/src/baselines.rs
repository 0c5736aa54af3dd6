//! Loading learned baselines (`aiops learn`) for detect: from a file or the DynamoDB patterns
//! table.

use crate::error::{Context, Result};
use crate::patterns;
use aiops_detect::baseline::Baselines;
use aiops_detect::config::StatisticsConfig;

/// Loads learned baselines named by `spec`: a JSON file, or `dynamodb://<table>` (the
/// patterns table; `None` when nothing was learned yet). Validated against `cfg`.
///
/// # Errors
/// When they cannot be read or do not fit the configuration.
pub fn load_baselines(
    spec: &str,
    cfg: &StatisticsConfig,
    region: Option<&str>,
    endpoint: Option<&str>,
) -> Result<Option<Baselines>> {
    let b = if let Some(table) = spec.strip_prefix("dynamodb://") {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        let loaded = rt.block_on(async {
            let sdk = aiops_aws::sdk::load(region, endpoint).await;
            patterns::load(&aws_sdk_dynamodb::Client::new(&sdk), table).await
        })?;
        match loaded {
            Some(b) => b,
            None => return Ok(None),
        }
    } else {
        let bytes = std::fs::read(spec).with_context(|| format!("cannot read baselines {spec}"))?;
        Baselines::from_json(&bytes).with_context(|| format!("baselines {spec}"))?
    };
    b.validate(cfg)
        .with_context(|| format!("baselines {spec}"))?;
    Ok(Some(b))
}
