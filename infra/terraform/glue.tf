# Glue Data Catalog database of the Parquet history, and the Athena workgroup that queries it.
# The tables are in glue_tables.tf, generated from the code's schemas (infra/tools/glue_tables.py).
#
# The Data Catalog's own encryption setting (aws_glue_data_catalog_encryption_settings) is account-wide,
# so it is left to the account's baseline rather than set by this application module (README.md).

resource "aws_glue_catalog_database" "history" {
  name        = local.glue_database_name
  description = "${var.name}: Parquet history of normalised events, findings and incidents (s3://${local.history_bucket_name}/${var.history_prefix}/)"
}

resource "aws_athena_workgroup" "history" {
  name          = var.name
  description   = "Queries over the ${var.name} Parquet history"
  state         = "ENABLED"
  force_destroy = false

  configuration {
    enforce_workgroup_configuration    = true
    publish_cloudwatch_metrics_enabled = true
    bytes_scanned_cutoff_per_query     = var.athena_bytes_scanned_cutoff

    engine_version {
      selected_engine_version = "Athena engine version 3"
    }

    result_configuration {
      output_location       = "s3://${aws_s3_bucket.athena_results.id}/results/"
      expected_bucket_owner = local.account_id

      encryption_configuration {
        encryption_option = "SSE_KMS"
        kms_key_arn       = aws_kms_key.main.arn
      }
    }
  }
}

# Ready-made queries, listed under "Saved queries" of the workgroup in the Athena console.

resource "aws_athena_named_query" "destructive_calls" {
  name        = "${var.name}-destructive-calls-last-day"
  description = "Successful mutating CloudTrail calls of the last 24 hours, newest first"
  workgroup   = aws_athena_workgroup.history.id
  database    = aws_glue_catalog_database.history.name
  query       = <<-SQL
    SELECT event_time, account, region, event_source, event_name, principal_arn, source_ip, resources
    FROM raw
    WHERE source = 'cloudtrail'
      AND dt >= date_format(current_date - interval '1' day, '%Y-%m-%d')
      AND read_only IS DISTINCT FROM true
      AND error_code IS NULL
    ORDER BY event_time DESC
    LIMIT 200
  SQL
}

resource "aws_athena_named_query" "events_per_hour" {
  name        = "${var.name}-events-per-hour"
  description = "Archived events per source and hour over the last 7 days"
  workgroup   = aws_athena_workgroup.history.id
  database    = aws_glue_catalog_database.history.name
  query       = <<-SQL
    SELECT source, dt, hour, count(*) AS events
    FROM raw
    WHERE dt >= date_format(current_date - interval '7' day, '%Y-%m-%d')
    GROUP BY source, dt, hour
    ORDER BY dt, hour, source
  SQL
}
