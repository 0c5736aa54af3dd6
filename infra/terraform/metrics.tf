# The stages' own metrics, from the CloudWatch Embedded Metric Format (EMF) lines each stage prints on
# stdout (core/src/metrics.rs): the awslogs driver sends them to the stage's log group, and CloudWatch
# Logs extracts the metrics with no API call from the task ("Specification: Embedded metric format",
# Amazon CloudWatch User Guide). Namespace local.metrics_namespace (`aws.metrics_namespace` of the rendered pipeline.toml),
# dimensions [Stage] and [Stage, ShardId]:
# - RecordsIn, EventsIn, DeadLetters, Duplicates, Findings, Incidents, Errors, MetricsDropped (Count,
#   summed per flush period), BatchLatency (Milliseconds, a distribution) per stage;
# - MillisBehindLatest (Milliseconds): per shard, and per stage the highest over its shards;
# - CheckpointAge (Milliseconds) per shard: time since the shard's last checkpoint.
# The alarms below watch lag, dead letters and stage errors per stage; the dashboard shows them all.

resource "aws_cloudwatch_metric_alarm" "stage_lag" {
  for_each = toset(local.stage_names)

  alarm_name          = "${var.name}-${each.key}-lag"
  alarm_description   = "aiops ${each.key}: MillisBehindLatest (highest over its shards) above ${var.iterator_age_alarm_ms} ms for 5 minutes, or no metric at all (the stage is down)"
  namespace           = local.metrics_namespace
  metric_name         = "MillisBehindLatest"
  dimensions          = { Stage = each.key }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 5
  datapoints_to_alarm = 5
  threshold           = var.iterator_age_alarm_ms
  comparison_operator = "GreaterThanThreshold"
  # A running stage reports its lag every flush period: no data means it is not reading.
  treat_missing_data = "breaching"
  alarm_actions      = [aws_sns_topic.notifications.arn]
  ok_actions         = [aws_sns_topic.notifications.arn]
}

resource "aws_cloudwatch_metric_alarm" "stage_dead_letters" {
  for_each = toset(local.stage_names)

  alarm_name          = "${var.name}-${each.key}-emf-dead-letters"
  alarm_description   = "aiops ${each.key} sent records to the dead letters (EMF metric DeadLetters); see the stage's log group"
  namespace           = local.metrics_namespace
  metric_name         = "DeadLetters"
  dimensions          = { Stage = each.key }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.notifications.arn]
  ok_actions          = [aws_sns_topic.notifications.arn]
}

resource "aws_cloudwatch_metric_alarm" "stage_errors" {
  for_each = toset(local.stage_names)

  alarm_name          = "${var.name}-${each.key}-errors"
  alarm_description   = "aiops ${each.key}: shard tasks or writes failed (EMF metric Errors); see the stage's log group"
  namespace           = local.metrics_namespace
  metric_name         = "Errors"
  dimensions          = { Stage = each.key }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.notifications.arn]
  ok_actions          = [aws_sns_topic.notifications.arn]
}

locals {
  # One graph widget per metric, a line per stage (CloudWatch dashboard body structure and syntax,
  # Amazon CloudWatch API Reference: widgets of type "metric" with properties.metrics rows
  # [namespace, metric name, dimension name, dimension value, {options}]).
  dashboard_stage_widgets = [
    for i, m in [
      { metric = "MillisBehindLatest", stat = "Maximum", title = "Lag: MillisBehindLatest (highest shard)" },
      { metric = "RecordsIn", stat = "Sum", title = "Records in" },
      { metric = "EventsIn", stat = "Sum", title = "Events in" },
      { metric = "DeadLetters", stat = "Sum", title = "Dead letters" },
      { metric = "Duplicates", stat = "Sum", title = "Duplicates" },
      { metric = "Findings", stat = "Sum", title = "Findings" },
      { metric = "Incidents", stat = "Sum", title = "Incidents" },
      { metric = "Errors", stat = "Sum", title = "Stage errors" },
      { metric = "BatchLatency", stat = "p99", title = "Batch latency p99 (ms)" },
      ] : {
      type   = "metric"
      x      = (i % 3) * 8
      y      = floor(i / 3) * 6
      width  = 8
      height = 6
      properties = {
        title   = m.title
        region  = var.region
        view    = "timeSeries"
        stacked = false
        stat    = m.stat
        period  = 60
        metrics = [for s in local.stage_names : [local.metrics_namespace, m.metric, "Stage", s]]
      }
    }
  ]
  # Per shard: a SEARCH expression finds every ShardId the stages reported.
  dashboard_shard_widgets = [
    for i, m in ["MillisBehindLatest", "CheckpointAge"] : {
      type   = "metric"
      x      = i * 12
      y      = 18
      width  = 12
      height = 6
      properties = {
        title  = "${m} per shard (ms)"
        region = var.region
        view   = "timeSeries"
        period = 60
        metrics = [[{
          id         = "s${i}"
          expression = "SEARCH('{${local.metrics_namespace},Stage,ShardId} MetricName=\"${m}\"', 'Maximum', 60)"
        }]]
      }
    }
  ]
}

resource "aws_cloudwatch_dashboard" "aiops" {
  dashboard_name = var.name
  dashboard_body = jsonencode({
    widgets = concat(local.dashboard_stage_widgets, local.dashboard_shard_widgets)
  })
}
