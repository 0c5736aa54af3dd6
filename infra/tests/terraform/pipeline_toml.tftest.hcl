# Plans the module against a mock AWS provider (no account, no credentials) with the variables of
# terraform.tfvars.example, so that infra/check can read the rendered pipeline.toml and the planned
# resource names (`terraform test -json -verbose`; tools/pipeline_config.py from-plan) and run the
# binary's `aiops validate` on it. Needs Terraform >= 1.11 (override_during); infra/check copies this
# file into a scratch copy of the module, so the module itself keeps required_version >= 1.6.
#
# The account id, partition and topic ARN are those tools/pipeline_config.py render assumes, so both
# renderings must be byte-identical.

mock_provider "aws" {
  override_during = plan

  mock_data "aws_caller_identity" {
    defaults = { account_id = "123456789012" }
  }
  mock_data "aws_partition" {
    defaults = { partition = "aws" }
  }
  # The policy documents are checked by checkov and tools/iam_lint.py; here any valid JSON will do.
  mock_data "aws_iam_policy_document" {
    defaults = {
      json          = "{\"Version\":\"2012-10-17\",\"Statement\":[]}"
      minified_json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}"
    }
  }
  mock_resource "aws_sns_topic" {
    defaults = { arn = "arn:aws:sns:us-east-1:123456789012:aiops-notifications" }
  }
}

run "pipeline_toml" {
  command = plan

  assert {
    condition     = strcontains(output.pipeline_toml, "raw_stream = \"${aws_kinesis_stream.this["raw"].name}\"")
    error_message = "pipeline.toml does not name the raw stream"
  }
  assert {
    condition     = strcontains(output.pipeline_toml, "leases_table = \"${aws_dynamodb_table.leases.name}\"")
    error_message = "pipeline.toml does not name the lease table"
  }
  assert {
    condition     = strcontains(output.pipeline_toml, "history_bucket = \"${aws_s3_bucket.history.bucket}\"")
    error_message = "pipeline.toml does not name the history bucket"
  }
  assert {
    condition     = strcontains(output.pipeline_toml, "topic_arn = \"${aws_sns_topic.notifications.arn}\"")
    error_message = "pipeline.toml does not name the notification topic"
  }
  # aws/src/lease.rs keys leases by `leaseKey`.
  assert {
    condition     = aws_dynamodb_table.leases.hash_key == "leaseKey"
    error_message = "the lease table's hash key is not leaseKey (aws/src/lease.rs)"
  }
}
