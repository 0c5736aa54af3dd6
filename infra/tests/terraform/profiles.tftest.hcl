# The deployment profiles (variables.tf deployment_profile), planned against a mock AWS provider (no
# account, no credentials): scaled has three streams and three services; single has the raw stream and
# one service "all" running `aiops run`, and its role reads the raw stream only. Run by infra/check
# (terraform >= 1.11) from a scratch copy of the module, with terraform.tfvars.example.

mock_provider "aws" {
  override_during = plan

  mock_data "aws_caller_identity" {
    defaults = { account_id = "123456789012" }
  }
  mock_data "aws_partition" {
    defaults = { partition = "aws" }
  }
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

run "scaled" {
  command = plan

  assert {
    condition     = length(aws_kinesis_stream.this) == 3 && length(aws_ecs_service.stage) == 3
    error_message = "scaled: expected three streams and three services"
  }
  assert {
    condition     = output.stage_commands["detect"] == "aiops detect --config /run/aiops/pipeline.toml"
    error_message = "scaled: the detect task does not run `aiops detect`"
  }
  assert {
    condition     = length(aws_cloudwatch_metric_alarm.stage_lag) == 3 && length(aws_cloudwatch_metric_alarm.iterator_age) == 3
    error_message = "scaled: expected a lag alarm per stage and an iterator-age alarm per stream"
  }
}

run "single" {
  command = plan

  variables {
    deployment_profile = "single"
  }

  assert {
    condition     = keys(aws_kinesis_stream.this) == ["raw"]
    error_message = "single: expected the raw stream only"
  }
  assert {
    condition     = keys(aws_ecs_service.stage) == ["all"] && aws_ecs_service.stage["all"].desired_count == 1
    error_message = "single: expected one service \"all\" with one task"
  }
  assert {
    condition     = output.stage_commands == { all = "aiops run --config /run/aiops/pipeline.toml" }
    error_message = "single: the task does not run `aiops run --config`"
  }
  assert {
    condition     = aws_ecs_task_definition.stage["all"].cpu == "512" && aws_ecs_task_definition.stage["all"].memory == "1024"
    error_message = "single: the task size is not var.single_task"
  }
  assert {
    condition     = keys(aws_cloudwatch_metric_alarm.stage_lag) == ["all"] && keys(aws_cloudwatch_metric_alarm.iterator_age) == ["raw"]
    error_message = "single: expected the lag alarm of \"all\" and the raw stream's iterator-age alarm"
  }
  assert {
    condition     = alltrue([for f in aws_cloudwatch_log_metric_filter.stage : f.log_group_name == aws_cloudwatch_log_group.stage["all"].name])
    error_message = "single: the log metric filters do not watch the \"all\" log group"
  }
}
