# What feeds the raw stream (DESIGN section 1):
# - CloudTrail API calls through an EventBridge rule on the default bus;
# - CloudWatch Logs subscription filters on the listed log groups.
# CloudWatch metric streams can be pointed at the raw stream through a Firehose delivery stream; that is
# left to the user (README.md).

# --- CloudTrail -> EventBridge -> Kinesis raw -------------------------------------------------------

resource "aws_cloudwatch_event_rule" "cloudtrail" {
  count = var.enable_cloudtrail_rule ? 1 : 0

  name        = "${var.name}-cloudtrail-to-raw"
  description = "Every AWS API call recorded by CloudTrail in this region, to the ${var.name} raw stream"
  event_pattern = jsonencode({
    "detail-type" = ["AWS API Call via CloudTrail"]
  })
}

data "aws_iam_policy_document" "events_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "events_to_raw" {
  count = var.enable_cloudtrail_rule ? 1 : 0

  name               = "${var.name}-events-to-raw"
  description        = "EventBridge puts CloudTrail API-call events into the ${var.name} raw stream"
  assume_role_policy = data.aws_iam_policy_document.events_assume.json
}

data "aws_iam_policy_document" "events_to_raw" {
  statement {
    sid       = "PutRaw"
    actions   = ["kinesis:PutRecord", "kinesis:PutRecords"]
    resources = [local.stream_arns.raw]
  }
  statement {
    sid       = "EncryptRaw"
    actions   = ["kms:GenerateDataKey"]
    resources = [aws_kms_key.main.arn]
  }
}

resource "aws_iam_role_policy" "events_to_raw" {
  count = var.enable_cloudtrail_rule ? 1 : 0

  name   = "put-raw"
  role   = aws_iam_role.events_to_raw[0].id
  policy = data.aws_iam_policy_document.events_to_raw.json
}

resource "aws_cloudwatch_event_target" "cloudtrail_to_raw" {
  count = var.enable_cloudtrail_rule ? 1 : 0

  rule     = aws_cloudwatch_event_rule.cloudtrail[0].name
  arn      = aws_kinesis_stream.this["raw"].arn
  role_arn = aws_iam_role.events_to_raw[0].arn

  # CloudTrail event ids are unique: an even spread over the raw shards.
  kinesis_target {
    partition_key_path = "$.detail.eventID"
  }

  # Throttled or failed deliveries are retried for up to a day, then kept in the dead-letter queue
  # (alarmed in alarms.tf) instead of being dropped.
  retry_policy {
    maximum_event_age_in_seconds = 86400
    maximum_retry_attempts       = 185
  }

  dead_letter_config {
    arn = aws_sqs_queue.events_dead_letter[0].arn
  }
}

resource "aws_sqs_queue" "events_dead_letter" {
  count = var.enable_cloudtrail_rule ? 1 : 0

  name                              = "${var.name}-cloudtrail-dead-letter"
  message_retention_seconds         = 1209600 # 14 days, the SQS maximum
  kms_master_key_id                 = aws_kms_key.main.arn
  kms_data_key_reuse_period_seconds = 3600
}

data "aws_iam_policy_document" "events_dead_letter" {
  count = var.enable_cloudtrail_rule ? 1 : 0

  statement {
    sid       = "EventBridgeDeadLetters"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.events_dead_letter[0].arn]
    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com"]
    }
    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = [aws_cloudwatch_event_rule.cloudtrail[0].arn]
    }
  }
}

resource "aws_sqs_queue_policy" "events_dead_letter" {
  count = var.enable_cloudtrail_rule ? 1 : 0

  queue_url = aws_sqs_queue.events_dead_letter[0].id
  policy    = data.aws_iam_policy_document.events_dead_letter[0].json
}

# --- CloudWatch Logs -> Kinesis raw -------------------------------------------------------------

data "aws_iam_policy_document" "logs_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["logs.amazonaws.com"]
    }
    # Only subscription filters of this account may use the role (CloudWatch Logs user guide,
    # "Subscription filters with Amazon Kinesis Data Streams", confused-deputy condition).
    condition {
      test     = "StringLike"
      variable = "aws:SourceArn"
      values   = ["arn:${local.partition}:logs:${var.region}:${local.account_id}:*"]
    }
  }
}

resource "aws_iam_role" "logs_to_raw" {
  count = length(var.log_group_names) > 0 ? 1 : 0

  name               = "${var.name}-logs-to-raw"
  description        = "CloudWatch Logs subscription filters put log events into the ${var.name} raw stream"
  assume_role_policy = data.aws_iam_policy_document.logs_assume.json
}

data "aws_iam_policy_document" "logs_to_raw" {
  statement {
    sid       = "PutRaw"
    actions   = ["kinesis:PutRecord"]
    resources = [local.stream_arns.raw]
  }
  statement {
    sid       = "EncryptRaw"
    actions   = ["kms:GenerateDataKey"]
    resources = [aws_kms_key.main.arn]
  }
}

resource "aws_iam_role_policy" "logs_to_raw" {
  count = length(var.log_group_names) > 0 ? 1 : 0

  name   = "put-raw"
  role   = aws_iam_role.logs_to_raw[0].id
  policy = data.aws_iam_policy_document.logs_to_raw.json
}

resource "aws_cloudwatch_log_subscription_filter" "to_raw" {
  for_each = toset(var.log_group_names)

  name            = "${var.name}-to-raw"
  log_group_name  = each.value
  filter_pattern  = var.log_filter_pattern
  destination_arn = aws_kinesis_stream.this["raw"].arn
  role_arn        = aws_iam_role.logs_to_raw[0].arn
  distribution    = var.log_distribution

  # The role's policy must exist before CloudWatch Logs test-delivers to the stream.
  depends_on = [aws_iam_role_policy.logs_to_raw]
}
