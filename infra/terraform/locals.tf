# Values derived once and used across the module.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition

  # Resource names.
  stream_names = {
    raw       = "${var.name}-raw"
    events    = "${var.name}-events"
    decisions = "${var.name}-decisions"
  }
  table_names = {
    incidents = "${var.name}-incidents"
    leases    = "${var.name}-leases"
    patterns  = "${var.name}-patterns"
    locks     = "${var.name}-locks"
    changes   = "${var.name}-changes"
  }
  history_bucket_name        = "${var.name}-history-${local.account_id}-${var.region}"
  athena_results_bucket_name = "${var.name}-athena-results-${local.account_id}-${var.region}"
  access_logs_bucket_name    = "${var.name}-access-logs-${local.account_id}-${var.region}"
  glue_database_name         = replace("${var.name}_history", "-", "_")
  apply_project_name         = "${var.name}-recovery-apply"
  verify_project_name        = "${var.name}-recovery-verify"

  # Kinesis stream ARNs, built from the names so that IAM documents do not depend on the streams.
  stream_arns = { for k, n in local.stream_names : k => "arn:${local.partition}:kinesis:${var.region}:${local.account_id}:stream/${n}" }

  # Parquet history: one prefix per table (DESIGN section 7).
  history_table_prefixes = {
    raw       = "${var.history_prefix}/raw"
    findings  = "${var.history_prefix}/findings"
    incidents = "${var.history_prefix}/incidents"
  }
  # Beside the tables: ingest's dead letters (JSON lines, aws/src/archive.rs) and act's large evidence
  # (<incident_id>/finding.json, act/src/dynamo/mod.rs), outside every Glue table location.
  dead_letters_prefix = "${var.history_prefix}/dead_letters"
  evidence_prefix     = "${var.history_prefix}/evidence"
  # Detect's saved engine state, one object per events shard (pipeline/src/aws_mode/snapshot.rs:
  # state/detect/<events stream>/<shard id>/engine.json.gz), outside every Glue table location.
  detect_state_prefix = "${var.history_prefix}/state/detect"

  # CloudWatch namespace of the metrics the log metric filters of alarms.tf derive from the stages' logs.
  metrics_namespace = "aiops/${var.name}"

  # Bedrock: a foundation model id, or a cross-region inference profile id (geo prefix + model id).
  # An inference profile routes to the model in several regions, so the role needs the profile and the
  # underlying foundation model in every region (Bedrock user guide, "Prerequisites for inference profiles").
  bedrock_is_arn     = startswith(var.bedrock_model_id, "arn:")
  bedrock_is_profile = !local.bedrock_is_arn && can(regex("^(us|eu|apac|us-gov|ca|jp|au|global)\\.", var.bedrock_model_id))
  bedrock_base_model = local.bedrock_is_profile ? regex("^[a-z-]+\\.(.+)$", var.bedrock_model_id)[0] : var.bedrock_model_id
  bedrock_resource_arns = local.bedrock_is_arn ? [var.bedrock_model_id] : (
    local.bedrock_is_profile ? [
      "arn:${local.partition}:bedrock:${var.region}:${local.account_id}:inference-profile/${var.bedrock_model_id}",
      "arn:${local.partition}:bedrock:*::foundation-model/${local.bedrock_base_model}",
      ] : [
      "arn:${local.partition}:bedrock:${var.region}::foundation-model/${var.bedrock_model_id}",
    ]
  )
}
