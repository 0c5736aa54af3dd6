# CloudWatch alarms, notifying the SNS topic:
# - iterator age of each stream (AWS/Kinesis GetRecords.IteratorAgeMilliseconds, stream level): the
#   stage that consumes the stream is falling behind;
# - dead letters: records a stage could not decode or deliver (custom metric aiops/DeadLetters), and
#   CloudTrail events EventBridge could not deliver to the raw stream (its SQS dead-letter queue);
# - failed recoveries (custom metric aiops/RecoveriesFailed): a recovery ended FAILED.
# The custom metrics are published by the stages without dimensions.

resource "aws_cloudwatch_metric_alarm" "iterator_age" {
  for_each = local.stream_names

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
  alarm_description   = "aiops stages sent records to dead letters (undecodable or undeliverable input)"
  namespace           = "aiops"
  metric_name         = "DeadLetters"
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.notifications.arn]
  ok_actions          = [aws_sns_topic.notifications.arn]
}

resource "aws_cloudwatch_metric_alarm" "recoveries_failed" {
  alarm_name          = "${var.name}-recoveries-failed"
  alarm_description   = "An aiops recovery ended FAILED (build failed, timed out, or verification found drift)"
  namespace           = "aiops"
  metric_name         = "RecoveriesFailed"
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.notifications.arn]
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
