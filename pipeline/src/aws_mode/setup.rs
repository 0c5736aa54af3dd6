//! `aiops setup`: creates what an aws-mode configuration names.

use super::settings::act_config;
use crate::config::PipelineConfig;
use crate::error::{Context, Result};
use aiops_aws::setup::SetupAction;

/// An act table `setup` ensured: its name and what it holds.
pub type EnsuredTable = (String, &'static str);

/// `aiops setup`: creates the streams with their shard counts (only the raw stream under the
/// single deployment profile), the lease table, the incident tables (as the act stage's
/// DynamoDB store defines them), the recent-changes table and the bucket.
///
/// Returns what was done to each stream, the lease table and the bucket, and each act table
/// ensured as (name, what it holds).
///
/// # Errors
/// When the async runtime cannot start or AWS refuses a creation.
pub fn setup(cfg: &PipelineConfig) -> Result<(Vec<SetupAction>, Vec<EnsuredTable>)> {
    let aws = &cfg.aws;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let actions = rt.block_on(async {
        let sdk = aiops_aws::sdk::load(aws.region.as_deref(), aws.endpoint_url.as_deref()).await;
        let kinesis = aws_sdk_kinesis::Client::new(&sdk);
        let ddb = aws_sdk_dynamodb::Client::new(&sdk);
        let path_style = aws
            .s3_force_path_style
            .unwrap_or_else(|| aiops_aws::sdk::endpoint_overridden(aws.endpoint_url.as_deref()));
        let s3 = aiops_aws::sdk::s3_client(&sdk, path_style);
        let region = sdk.region().map(|r| r.to_string());
        let mut actions = Vec::new();
        let mut streams = vec![(&aws.raw_stream, aws.raw_shards)];
        // The single profile joins the stages in memory: no events or decisions stream.
        if aws.deployment_profile == crate::config::DeploymentProfile::Scaled {
            streams.push((&aws.events_stream, aws.events_shards));
            streams.push((&aws.decisions_stream, aws.decisions_shards));
        }
        for (name, shards) in streams {
            actions.push(aiops_aws::setup::ensure_stream(&kinesis, name, shards).await?);
        }
        actions.push(aiops_aws::setup::ensure_table(&ddb, &aws.leases_table, "leaseKey").await?);
        actions.push(
            aiops_aws::setup::ensure_bucket(&s3, &aws.history_bucket, region.as_deref()).await?,
        );
        Ok::<_, aiops_aws::setup::SetupError>(actions)
    })?;
    drop(rt);
    // The incident tables, as the act stage's store declares them (it blocks on its own
    // runtime, so outside ours).
    let act_cfg = act_config(cfg);
    let blocking = aiops_act::aws::Blocking::owned(1)?;
    let sdk = blocking.block_on(aiops_aws::sdk::load(
        act_cfg.aws.region.as_deref(),
        act_cfg.aws.endpoint_url.as_deref(),
    ));
    aiops_act::dynamo::DynamoStore::new(&sdk, blocking.clone(), act_cfg.store.clone())
        .create_tables()
        .context("cannot create the incident tables")?;
    aiops_act::dynamo::DynamoChangeIndex::new(&sdk, blocking.clone(), act_cfg.changes.clone())
        .create_table()
        .context("cannot create the recent-changes table")?;
    let tables = vec![
        (act_cfg.store.incidents_table.clone(), "incident store"),
        (act_cfg.store.locks_table.clone(), "cooldown locks"),
        (
            act_cfg.store.stats_table.clone(),
            "learned baselines and outcome counters",
        ),
        (act_cfg.changes.table.clone(), "recent changes"),
    ];
    Ok((actions, tables))
}
