# What a user needs after `terraform apply`: where to push the image, the names the stages use, and
# where to query the history.

output "ecr_repository_url" {
  description = "Push the aiops image here (tag = var.image_tag)."
  value       = aws_ecr_repository.aiops.repository_url
}

output "stream_names" {
  description = "Kinesis streams: raw (sources -> ingest), events (ingest -> detect), decisions (detect -> act)."
  value       = { for k, s in aws_kinesis_stream.this : k => s.name }
}

output "stream_arns" {
  description = "ARNs of the Kinesis streams."
  value       = { for k, s in aws_kinesis_stream.this : k => s.arn }
}

output "table_names" {
  description = "DynamoDB tables: incidents, locks, leases, patterns."
  value = {
    incidents = aws_dynamodb_table.incidents.name
    locks     = aws_dynamodb_table.locks.name
    leases    = aws_dynamodb_table.leases.name
    patterns  = aws_dynamodb_table.patterns.name
    changes   = aws_dynamodb_table.changes.name
  }
}

output "history_bucket" {
  description = "S3 bucket of the Parquet history."
  value       = aws_s3_bucket.history.id
}

output "history_location" {
  description = "S3 URI under which the tables live: <this>/<table>/source=<source>/dt=YYYY-MM-DD/hour=HH/."
  value       = "s3://${aws_s3_bucket.history.id}/${var.history_prefix}/"
}

output "glue_database" {
  description = "Glue database of the history tables (raw, and findings/incidents when the code defines them)."
  value       = aws_glue_catalog_database.history.name
}

output "athena_workgroup" {
  description = "Athena workgroup to query the history in (results encrypted, per-query scan limit)."
  value       = aws_athena_workgroup.history.name
}

output "recovery_projects" {
  description = "CodeBuild projects act starts: apply and verify."
  value       = { for k, p in aws_codebuild_project.recovery : k => p.name }
}

output "notification_topic_arn" {
  description = "SNS topic of incidents, reviews, recovery outcomes and alarms."
  value       = aws_sns_topic.notifications.arn
}

output "ecs_cluster" {
  description = "ECS cluster running the ingest, detect and act services."
  value       = aws_ecs_cluster.aiops.name
}

output "stage_role_arns" {
  description = "IAM roles of the stages (task roles)."
  value       = { for k, r in aws_iam_role.stage : k => r.arn }
}

output "kms_key_arn" {
  description = "Customer managed key of the deployment."
  value       = aws_kms_key.main.arn
}

output "pipeline_toml" {
  description = "The aws-mode pipeline.toml the stages run with (also useful to run a stage by hand)."
  value       = local.pipeline_toml
}

output "stage_commands" {
  description = "The command each ECS service's task runs, by service (deployment_profile: ingest, detect and act, or the single profile's all)."
  value       = { for s in local.stage_names : s => "aiops ${local.stage_commands[s]} --config /run/aiops/pipeline.toml" }
}
