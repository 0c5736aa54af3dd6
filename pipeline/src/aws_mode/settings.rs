//! What aws mode runs with, derived from the configuration: the act configuration on
//! DynamoDB, the change rules' profiles, and the learned baselines detect starts from.

use crate::config::PipelineConfig;
use crate::error::Result;
use aiops_act::RuleProfile;
use aiops_detect::rules::ChangeRules;
use std::collections::BTreeMap;

/// The `[act]` configuration aws mode runs with: incidents in DynamoDB under the `[aws]`
/// table names, `[aws]` region and endpoint for the act clients unless `[act.aws]` sets
/// them, and `[aws]` Bedrock model and SNS topic where `[act]` leaves them empty.
pub fn act_config(cfg: &PipelineConfig) -> aiops_act::ActConfig {
    let aws = &cfg.aws;
    let mut a = cfg.act.clone();
    a.store.backend = "dynamodb".into();
    a.store.incidents_table = aws.incidents_table.clone();
    a.store.locks_table = aws.locks_table.clone();
    a.store.stats_table = aws.patterns_table.clone();
    if a.aws.region.is_none() {
        a.aws.region = aws.region.clone();
    }
    if a.aws.endpoint_url.is_none() {
        a.aws.endpoint_url = aws.endpoint_url.clone();
    }
    if let Some(m) = &aws.bedrock_model_id
        && a.enrichment.model_id.is_empty()
    {
        a.enrichment.model_id = m.clone();
    }
    if let Some(t) = &aws.sns_topic_arn
        && a.notify.topic_arn.is_empty()
    {
        a.notify.topic_arn = t.clone();
    }
    a
}

/// Each change rule's severity and category, by rule name, for the explainer.
pub fn rule_profiles(rules: &ChangeRules) -> BTreeMap<String, RuleProfile> {
    rules
        .rules()
        .iter()
        .map(|r| {
            (
                r.name.clone(),
                RuleProfile {
                    severity: r.severity,
                    category: r.category.clone(),
                },
            )
        })
        .collect()
}

/// The learned baselines the detect stage starts from: `spec` (a file or `dynamodb://<table>`;
/// `none` for none), by default the `[aws] patterns_table` — where a missing table or no
/// learned document means none (logged), while a document that does not fit the
/// configuration is an error.
///
/// # Errors
/// An explicit `spec` that cannot be read, or baselines that do not fit the configuration.
pub fn detect_baselines(
    cfg: &PipelineConfig,
    spec: Option<&str>,
) -> Result<Option<aiops_detect::baseline::Baselines>> {
    let region = cfg.aws.region.as_deref();
    let endpoint = cfg.aws.endpoint_url.as_deref();
    match spec {
        Some("none") | Some("") => Ok(None),
        Some(s) => Ok(aiops_history::load_baselines(
            s,
            &cfg.detect.statistics,
            region,
            endpoint,
        )?),
        None => {
            let spec = format!("dynamodb://{}", cfg.aws.patterns_table);
            match aiops_history::load_baselines(&spec, &cfg.detect.statistics, region, endpoint) {
                Ok(b) => {
                    if b.is_none() {
                        tracing::info!(table = %cfg.aws.patterns_table, "no learned baselines in the patterns table; detect starts without");
                    }
                    Ok(b)
                }
                Err(e)
                    if matches!(
                        e.root(),
                        aiops_history::HistoryError::Baselines(
                            aiops_detect::baseline::BaselineError::Invalid { .. }
                        )
                    ) =>
                {
                    Err(e.into())
                }
                Err(e) => {
                    tracing::warn!(table = %cfg.aws.patterns_table, error = %format!("{e:#}"), "cannot read learned baselines; detect starts without");
                    Ok(None)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn act_runs_on_dynamodb_with_the_aws_names() {
        let cfg = PipelineConfig::parse(
            "mode = \"aws\"\n[aws]\nhistory_bucket = \"b-1\"\nincidents_table = \"inc\"\nlocks_table = \"locks\"\nregion = \"eu-west-1\"\nsns_topic_arn = \"arn:aws:sns:eu-west-1:1:t\"\n",
        )
        .unwrap();
        cfg.validate().unwrap();
        let a = act_config(&cfg);
        assert_eq!(a.store.backend, "dynamodb");
        assert_eq!(a.store.incidents_table, "inc");
        assert_eq!(a.store.locks_table, "locks");
        assert_eq!(a.store.stats_table, "aiops-patterns");
        assert_eq!(a.aws.region.as_deref(), Some("eu-west-1"));
        assert_eq!(a.notify.topic_arn, "arn:aws:sns:eu-west-1:1:t");
    }
}
