# CloudWatch alarms, notifying the SNS topic:
# - iterator age of each stream (AWS/Kinesis GetRecords.IteratorAgeMilliseconds, stream level): the
#   stage that consumes the stream is falling behind;
# - dead letters: records a stage could not decode (metric DeadLetters), and CloudTrail events
#   EventBridge could not deliver to the raw stream (its SQS dead-letter queue);
# - failed recoveries (metric RecoveriesFailed): an incident ended FAILED.
#
# The stages publish no custom metrics (the code has no CloudWatch client): DeadLetters and
# RecoveriesFailed are counted from the stages' logs by metric filters. The tasks log JSON lines
# (AIOPS_LOG_FORMAT=json, stages.tf), one object per event as tracing-subscriber writes them:
#   {"timestamp":"...","level":"WARN","fields":{"message":"dead letter","reason":"...",...},"target":"..."}
# and the filters match the level and the exact messages of the code:
# - ingest, pipeline/src/aws_mode/ingest.rs: WARN "dead letter" for each undecodable record (also archived
#   under <history_prefix>/dead_letters/);
# - detect and act, pipeline/src/aws_mode/detect.rs and act.rs: WARN "events stream record is not an Event;
#   skipped" and "decisions stream record is not a Finding; skipped" (such records are dropped);
# - act, pipeline/src/aws_mode/act.rs: INFO "incident" with field state = "FAILED" once per incident that
#   ends FAILED (the apply or verify build failed, timed out or found drift; act/src/workflow.rs).
# infra/check (tools/log_filters.py) checks that each filter's level and message are logged by the code
# and matches the dead-letter filter against a log line of the built binary.

locals {
  log_metric_filters = {
    ingest_dead_letters = {
      stage   = "ingest"
      metric  = "DeadLetters"
      pattern = "{ ($.level = \"WARN\") && ($.fields.message = \"dead letter\") }"
    }
    detect_skipped_records = {
      stage   = "detect"
      metric  = "DeadLetters"
      pattern = "{ ($.level = \"WARN\") && ($.fields.message = \"events stream record is not an Event; skipped\") }"
    }
    act_skipped_records = {
      stage   = "act"
      metric  = "DeadLetters"
      pattern = "{ ($.level = \"WARN\") && ($.fields.message = \"decisions stream record is not a Finding; skipped\") }"
    }
    act_failed_incidents = {
      stage   = "act"
      metric  = "RecoveriesFailed"
      pattern = "{ ($.level = \"INFO\") && ($.fields.message = \"incident\") && ($.fields.state = \"FAILED\") }"
    }
  }
}

resource "aws_cloudwatch_log_metric_filter" "stage" {
  for_each = local.log_metric_filters

  name = "${var.name}-${replace(each.key, "_", "-")}"
  # The single profile's one task logs every stage's lines to the "all" log group.
  log_group_name = aws_cloudwatch_log_group.stage[local.single ? "all" : each.value.stage].name
  pattern        = each.value.pattern

  metric_transformation {
    namespace = local.metrics_namespace
    name      = each.value.metric
    value     = "1"
    unit      = "Count"
  }
}

resource "aws_cloudwatch_metric_alarm" "iterator_age" {
  for_each = local.active_stream_names

  alarm_name          = "${var.name}-${each.key}-iterator-age"
  alarm_description   = "The consumer of the ${each.value} stream is more than ${var.iterator_age_alarm_ms} ms behind"
  namespace           = "AWS/Kinesis"
  metric_name         = "GetRecords.IteratorAgeMilliseconds"
  dimensions          = { StreamName = aws_kinesis_stream.this[each.key].name }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 5
  datapoints_to_alarm = 5
  threshold           = var.iterator_age_alarm_ms
  comparison_operator = "GreaterThanThreshold"
  # No GetRecords at all (every consumer down) publishes no data point: that is breaching.
  treat_missing_data = "breaching"
  alarm_actions      = [aws_sns_topic.notifications.arn]
  ok_actions         = [aws_sns_topic.notifications.arn]
}

resource "aws_cloudwatch_metric_alarm" "dead_letters" {
  alarm_name          = "${var.name}-dead-letters"
  alarm_description   = "aiops stages met records they could not decode (ingest: dead letters under ${var.history_prefix}/dead_letters/; detect, act: skipped records); see the stages' logs"
  namespace           = local.metrics_namespace
  metric_name         = "DeadLetters"
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  # A metric filter publishes only when a log line matches: no data means no dead letter.
  treat_missing_data = "notBreaching"
  alarm_actions      = [aws_sns_topic.notifications.arn]
  ok_actions         = [aws_sns_topic.notifications.arn]

  depends_on = [aws_cloudwatch_log_metric_filter.stage]
}

resource "aws_cloudwatch_metric_alarm" "recoveries_failed" {
  alarm_name          = "${var.name}-recoveries-failed"
  alarm_description   = "An aiops recovery ended FAILED (build failed, timed out, or verification found drift)"
  namespace           = local.metrics_namespace
  metric_name         = "RecoveriesFailed"
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.notifications.arn]

  depends_on = [aws_cloudwatch_log_metric_filter.stage]
}

resource "aws_cloudwatch_metric_alarm" "cloudtrail_dead_letters" {
  count = var.enable_cloudtrail_rule ? 1 : 0

  alarm_name          = "${var.name}-cloudtrail-dead-letters"
  alarm_description   = "EventBridge could not deliver CloudTrail events to the raw stream; they wait in ${aws_sqs_queue.events_dead_letter[0].name}"
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = aws_sqs_queue.events_dead_letter[0].name }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.notifications.arn]
  ok_actions          = [aws_sns_topic.notifications.arn]
}
