# One customer managed key encrypts everything the deployment stores or carries: the Kinesis streams,
# DynamoDB tables, S3 history and Athena results, SNS topic, SQS dead-letter queue, CloudWatch log groups,
# ECR images and CodeBuild artifacts. IAM policies grant each principal kms:Decrypt/GenerateDataKey on
# this key only where it reads or writes data; access to the data itself stays with each resource's IAM.

data "aws_iam_policy_document" "kms" {
  #checkov:skip=CKV_AWS_109:This is a key policy: its Resource "*" means this key only (KMS developer guide, "Key policies"), and the account-root statement is KMS's default key policy, which lets IAM policies delegate use of the key.
  #checkov:skip=CKV_AWS_111:Key policy: Resource "*" is the key itself; write access is granted to the account root (default key policy) and to CloudWatch Logs, CloudWatch and EventBridge under source-account/ARN conditions.
  #checkov:skip=CKV_AWS_356:Key policy: Resource "*" is the only form a key policy takes and denotes the key itself, not every resource.
  # Key administration and IAM-delegated use by the account (AWS default key policy).
  statement {
    sid       = "AccountRoot"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }

  # CloudWatch Logs encrypts the log groups of this deployment (CloudWatch Logs user guide,
  # "Encrypt log data in CloudWatch Logs using AWS KMS").
  statement {
    sid = "CloudWatchLogs"
    actions = [
      "kms:Encrypt*",
      "kms:Decrypt*",
      "kms:ReEncrypt*",
      "kms:GenerateDataKey*",
      "kms:Describe*",
    ]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["logs.${var.region}.amazonaws.com"]
    }
    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = ["arn:${local.partition}:logs:${var.region}:${local.account_id}:log-group:/aiops/${var.name}/*"]
    }
  }

  # CloudWatch alarms publish to the encrypted SNS topic; EventBridge sends failed deliveries to the
  # encrypted SQS dead-letter queue (SNS and EventBridge user guides, "encrypted topics/queues").
  statement {
    sid       = "AlarmsAndEventsToEncryptedTopicAndQueue"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey*"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["cloudwatch.amazonaws.com", "events.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_kms_key" "main" {
  description             = "${var.name}: streams, tables, history, topic, logs"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.kms.json
}

resource "aws_kms_alias" "main" {
  name          = "alias/${var.name}"
  target_key_id = aws_kms_key.main.key_id
}
