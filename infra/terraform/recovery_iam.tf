# IAM of the recovery builds (the CodeBuild projects of codebuild.tf).
#
# The role may change only the resources under recovery (var.recovery_scope): EC2 instances and RDS
# databases that carry the recovery tag (aws:ResourceTag, and aws:RequestTag for new ones), SSM
# parameters under the listed paths, and Lambda functions, DynamoDB tables and S3 buckets whose names
# start with the listed prefixes. It has no delete or terminate permission: a recovery restores, and a
# plan that would replace a resource fails instead of destroying it.
#
# Each optional statement is its own policy document with `count`, so that checkov scans its content
# (checkov does not expand `dynamic "statement"` blocks); the enabled ones are merged into two managed
# policies (compute: EC2 and RDS; data: SSM, Lambda, DynamoDB, S3, roles and keys; security: trails,
# GuardDuty detectors, Config recorders, flow logs) to stay within IAM's policy size limits.

data "aws_iam_policy_document" "codebuild_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["codebuild.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = local.recovery_project_arns
    }
  }
}

resource "aws_iam_role" "codebuild" {
  name               = "${var.name}-recovery-build"
  description        = "Recovery builds of ${var.name}: terraform apply/plan of resources under recovery only"
  assume_role_policy = data.aws_iam_policy_document.codebuild_assume.json
}

# --- what every build needs: logs, the project key, the recovered configuration's state and source ---

data "aws_iam_policy_document" "codebuild_base" {
  statement {
    sid       = "BuildLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["arn:${local.partition}:logs:${local.region_account}:log-group:${local.codebuild_log_group}:*"]
  }

  statement {
    sid       = "ProjectKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.main.arn]
  }

  # Terraform state of the recovered configuration (S3 backend with lock files).
  statement {
    sid       = "StateList"
    actions   = ["s3:ListBucket"]
    resources = ["arn:${local.partition}:s3:::${var.recovery_state.bucket}"]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = [var.recovery_state.key, "${var.recovery_state.key}.tflock"]
    }
  }

  statement {
    sid     = "StateReadWrite"
    actions = ["s3:GetObject", "s3:PutObject"]
    resources = [
      "arn:${local.partition}:s3:::${var.recovery_state.bucket}/${var.recovery_state.key}",
      "arn:${local.partition}:s3:::${var.recovery_state.bucket}/${var.recovery_state.key}.tflock",
    ]
  }

  statement {
    sid       = "StateLockRelease"
    actions   = ["s3:DeleteObject"]
    resources = ["arn:${local.partition}:s3:::${var.recovery_state.bucket}/${var.recovery_state.key}.tflock"]
  }
}

data "aws_iam_policy_document" "codebuild_state_key" {
  count = var.recovery_state.kms_key_arn != null ? 1 : 0

  statement {
    sid       = "StateKey"
    actions   = ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"]
    resources = [var.recovery_state.kms_key_arn]
  }
}

data "aws_iam_policy_document" "codebuild_source_s3" {
  count = var.recovery_source.type == "S3" ? 1 : 0

  statement {
    sid       = "SourceObject"
    actions   = ["s3:GetObject", "s3:GetObjectVersion"]
    resources = ["arn:${local.partition}:s3:::${local.recovery_source_s3_object}"]
  }

  statement {
    sid       = "SourceBucket"
    actions   = ["s3:GetBucketAcl", "s3:GetBucketLocation"]
    resources = ["arn:${local.partition}:s3:::${local.recovery_source_s3_bucket}"]
  }
}

data "aws_iam_policy_document" "codebuild_source_codecommit" {
  count = var.recovery_source.type == "CODECOMMIT" ? 1 : 0

  statement {
    sid       = "SourceRepository"
    actions   = ["codecommit:GitPull"]
    resources = ["arn:${local.partition}:codecommit:${local.region_account}:${local.recovery_source_codecommit_repo}"]
  }
}

data "aws_iam_policy_document" "codebuild_source_connection" {
  count = var.recovery_source.type == "GITHUB" && var.recovery_source.connection_arn != null ? 1 : 0

  statement {
    sid       = "SourceConnection"
    actions   = ["codeconnections:UseConnection", "codeconnections:GetConnectionToken", "codestar-connections:UseConnection", "codestar-connections:GetConnectionToken"]
    resources = [var.recovery_source.connection_arn]
  }
}

data "aws_iam_policy_document" "codebuild_build" {
  source_policy_documents = concat(
    [data.aws_iam_policy_document.codebuild_base.json],
    data.aws_iam_policy_document.codebuild_state_key[*].json,
    data.aws_iam_policy_document.codebuild_source_s3[*].json,
    data.aws_iam_policy_document.codebuild_source_codecommit[*].json,
    data.aws_iam_policy_document.codebuild_source_connection[*].json,
  )
}

resource "aws_iam_role_policy" "codebuild_build" {
  name   = "build"
  role   = aws_iam_role.codebuild.id
  policy = data.aws_iam_policy_document.codebuild_build.json
}

# --- what Terraform may change when it restores a resource ----------------------------------------------

# Read-only calls that IAM cannot scope to a resource (AWS service authorization reference: these
# actions have no resource type), needed by `terraform plan` to refresh the target and what it
# references (subnets, security groups, images, ...).
data "aws_iam_policy_document" "recovery_refresh_read_only" {
  statement {
    sid = "RefreshReadOnly"
    actions = [
      "ec2:DescribeInstances",
      "ec2:DescribeInstanceTypes",
      "ec2:DescribeInstanceCreditSpecifications",
      "ec2:DescribeImages",
      "ec2:DescribeSubnets",
      "ec2:DescribeSecurityGroups",
      "ec2:DescribeVpcs",
      "ec2:DescribeVolumes",
      "ec2:DescribeNetworkInterfaces",
      "ec2:DescribeTags",
      "ec2:DescribeKeyPairs",
      "ec2:DescribeLaunchTemplates",
      "ec2:DescribeLaunchTemplateVersions",
      "ec2:DescribeFlowLogs",
      "ssm:DescribeParameters",
      "cloudtrail:DescribeTrails",
      "lambda:ListFunctions",
      "dynamodb:ListTables",
      "s3:ListAllMyBuckets",
      "sts:GetCallerIdentity",
    ]
    resources = ["*"]
  }
}

# --- EC2 instances carrying the recovery tag ---
data "aws_iam_policy_document" "recovery_ec2_read_instances" {
  count = local.scope.ec2_instances ? 1 : 0

  statement {
    sid       = "Ec2ReadInstances"
    actions   = ["ec2:DescribeInstanceAttribute"]
    resources = ["arn:${local.partition}:ec2:${local.region_account}:instance/*"]
  }
}

data "aws_iam_policy_document" "recovery_ec2_manage_tagged" {
  count = local.scope.ec2_instances ? 1 : 0

  statement {
    sid = "Ec2ManageTagged"
    actions = [
      "ec2:StartInstances",
      "ec2:RebootInstances",
      "ec2:ModifyInstanceAttribute",
      "ec2:MonitorInstances",
      "ec2:UnmonitorInstances",
      "ec2:CreateTags",
    ]
    resources = ["arn:${local.partition}:ec2:${local.region_account}:instance/*"]
    condition {
      test     = "StringEquals"
      variable = local.recovery_tag_cond
      values   = [local.scope.tag_value]
    }
  }
}

data "aws_iam_policy_document" "recovery_ec2_run_tagged_instance" {
  count = local.scope.ec2_instances ? 1 : 0

  statement {
    sid       = "Ec2RunTaggedInstance"
    actions   = ["ec2:RunInstances"]
    resources = ["arn:${local.partition}:ec2:${local.region_account}:instance/*"]
    condition {
      test     = "StringEquals"
      variable = local.recovery_req_cond
      values   = [local.scope.tag_value]
    }
  }
}

# Resources a new instance uses or creates alongside it; the instance itself must carry the tag.
data "aws_iam_policy_document" "recovery_ec2_run_uses" {
  count = local.scope.ec2_instances ? 1 : 0

  statement {
    sid     = "Ec2RunUses"
    actions = ["ec2:RunInstances"]
    resources = [
      "arn:${local.partition}:ec2:${var.region}::image/*",
      "arn:${local.partition}:ec2:${var.region}::snapshot/*",
      "arn:${local.partition}:ec2:${local.region_account}:subnet/*",
      "arn:${local.partition}:ec2:${local.region_account}:security-group/*",
      "arn:${local.partition}:ec2:${local.region_account}:network-interface/*",
      "arn:${local.partition}:ec2:${local.region_account}:volume/*",
      "arn:${local.partition}:ec2:${local.region_account}:key-pair/*",
      "arn:${local.partition}:ec2:${local.region_account}:launch-template/*",
    ]
  }
}

data "aws_iam_policy_document" "recovery_ec2_tag_on_launch" {
  count = local.scope.ec2_instances ? 1 : 0

  statement {
    sid     = "Ec2TagOnLaunch"
    actions = ["ec2:CreateTags"]
    resources = [
      "arn:${local.partition}:ec2:${local.region_account}:instance/*",
      "arn:${local.partition}:ec2:${local.region_account}:volume/*",
      "arn:${local.partition}:ec2:${local.region_account}:network-interface/*",
    ]
    condition {
      test     = "StringEquals"
      variable = "ec2:CreateAction"
      values   = ["RunInstances"]
    }
  }
}

# --- RDS instances and clusters carrying the recovery tag ---
# Reading (refresh) covers the account's databases and the groups and snapshots they use.
data "aws_iam_policy_document" "recovery_rds_read" {
  count = local.scope.rds ? 1 : 0

  statement {
    sid = "RdsRead"
    actions = [
      "rds:DescribeDBInstances",
      "rds:DescribeDBClusters",
      "rds:DescribeDBSubnetGroups",
      "rds:DescribeDBParameterGroups",
      "rds:DescribeDBClusterParameterGroups",
      "rds:DescribeOptionGroups",
      "rds:DescribeDBSnapshots",
      "rds:DescribeDBClusterSnapshots",
    ]
    resources = [
      "arn:${local.partition}:rds:${local.region_account}:db:*",
      "arn:${local.partition}:rds:${local.region_account}:cluster:*",
      "arn:${local.partition}:rds:${local.region_account}:subgrp:*",
      "arn:${local.partition}:rds:${local.region_account}:pg:*",
      "arn:${local.partition}:rds:${local.region_account}:cluster-pg:*",
      "arn:${local.partition}:rds:${local.region_account}:og:*",
      "arn:${local.partition}:rds:${local.region_account}:snapshot:*",
      "arn:${local.partition}:rds:${local.region_account}:cluster-snapshot:*",
    ]
  }
}

data "aws_iam_policy_document" "recovery_rds_manage_tagged" {
  count = local.scope.rds ? 1 : 0

  statement {
    sid = "RdsManageTagged"
    actions = [
      "rds:StartDBInstance",
      "rds:StartDBCluster",
      "rds:RebootDBInstance",
      "rds:ModifyDBInstance",
      "rds:ModifyDBCluster",
      "rds:AddTagsToResource",
      "rds:ListTagsForResource",
    ]
    resources = [
      "arn:${local.partition}:rds:${local.region_account}:db:*",
      "arn:${local.partition}:rds:${local.region_account}:cluster:*",
    ]
    condition {
      test     = "StringEquals"
      variable = local.recovery_tag_cond
      values   = [local.scope.tag_value]
    }
  }
}

data "aws_iam_policy_document" "recovery_rds_create_tagged" {
  count = local.scope.rds ? 1 : 0

  statement {
    sid = "RdsCreateTagged"
    actions = [
      "rds:CreateDBInstance",
      "rds:CreateDBCluster",
      "rds:RestoreDBInstanceFromDBSnapshot",
      "rds:RestoreDBInstanceToPointInTime",
      "rds:RestoreDBClusterFromSnapshot",
      "rds:RestoreDBClusterToPointInTime",
      "rds:AddTagsToResource",
    ]
    resources = [
      "arn:${local.partition}:rds:${local.region_account}:db:*",
      "arn:${local.partition}:rds:${local.region_account}:cluster:*",
    ]
    condition {
      test     = "StringEquals"
      variable = local.recovery_req_cond
      values   = [local.scope.tag_value]
    }
  }
}

# Groups and snapshots a new or restored database uses.
data "aws_iam_policy_document" "recovery_rds_create_uses" {
  count = local.scope.rds ? 1 : 0

  statement {
    sid = "RdsCreateUses"
    actions = [
      "rds:CreateDBInstance",
      "rds:CreateDBCluster",
      "rds:RestoreDBInstanceFromDBSnapshot",
      "rds:RestoreDBInstanceToPointInTime",
      "rds:RestoreDBClusterFromSnapshot",
      "rds:RestoreDBClusterToPointInTime",
      "rds:ListTagsForResource",
    ]
    resources = [
      "arn:${local.partition}:rds:${local.region_account}:subgrp:*",
      "arn:${local.partition}:rds:${local.region_account}:pg:*",
      "arn:${local.partition}:rds:${local.region_account}:cluster-pg:*",
      "arn:${local.partition}:rds:${local.region_account}:og:*",
      "arn:${local.partition}:rds:${local.region_account}:snapshot:*",
      "arn:${local.partition}:rds:${local.region_account}:cluster-snapshot:*",
      "arn:${local.partition}:rds:${local.region_account}:secgrp:*",
    ]
  }
}

# --- SSM parameters under the listed paths ---
data "aws_iam_policy_document" "recovery_ssm_parameters" {
  count = length(local.scope.ssm_parameter_paths) > 0 ? 1 : 0

  statement {
    sid = "SsmParameters"
    actions = [
      "ssm:GetParameter",
      "ssm:GetParameters",
      "ssm:GetParameterHistory",
      "ssm:PutParameter",
      "ssm:AddTagsToResource",
      "ssm:ListTagsForResource",
    ]
    resources = [for p in local.scope.ssm_parameter_paths : "arn:${local.partition}:ssm:${local.region_account}:parameter${p}*"]
  }
}

# --- Lambda functions with the listed name prefixes ---
data "aws_iam_policy_document" "recovery_lambda_functions" {
  count = length(local.scope.lambda_function_prefixes) > 0 ? 1 : 0

  statement {
    sid = "LambdaFunctions"
    actions = [
      "lambda:GetFunction",
      "lambda:GetFunctionConfiguration",
      "lambda:GetFunctionCodeSigningConfig",
      "lambda:GetFunctionConcurrency",
      "lambda:GetPolicy",
      "lambda:ListVersionsByFunction",
      "lambda:ListTags",
      "lambda:CreateFunction",
      "lambda:UpdateFunctionCode",
      "lambda:UpdateFunctionConfiguration",
      "lambda:PublishVersion",
      "lambda:PutFunctionConcurrency",
      "lambda:TagResource",
    ]
    resources = [for p in local.scope.lambda_function_prefixes : "arn:${local.partition}:lambda:${local.region_account}:function:${p}*"]
  }
}

# --- DynamoDB tables with the listed name prefixes (restore from PITR or backup included) ---
data "aws_iam_policy_document" "recovery_dynamodb_tables" {
  count = length(local.scope.dynamodb_table_prefixes) > 0 ? 1 : 0

  statement {
    sid = "DynamoDbTables"
    actions = [
      "dynamodb:DescribeTable",
      "dynamodb:DescribeContinuousBackups",
      "dynamodb:DescribeTimeToLive",
      "dynamodb:DescribeKinesisStreamingDestination",
      "dynamodb:ListTagsOfResource",
      "dynamodb:CreateTable",
      "dynamodb:UpdateTable",
      "dynamodb:UpdateContinuousBackups",
      "dynamodb:UpdateTimeToLive",
      "dynamodb:TagResource",
      "dynamodb:RestoreTableToPointInTime",
      "dynamodb:RestoreTableFromBackup",
      # A restore writes the items into the new table with the caller's permissions.
      "dynamodb:PutItem",
      "dynamodb:UpdateItem",
      "dynamodb:GetItem",
      "dynamodb:Query",
      "dynamodb:Scan",
      "dynamodb:BatchWriteItem",
    ]
    resources = [for p in local.scope.dynamodb_table_prefixes : "arn:${local.partition}:dynamodb:${local.region_account}:table/${p}*"]
  }
}

# --- S3 buckets with the listed name prefixes (bucket configuration and policy, no objects) ---
data "aws_iam_policy_document" "recovery_s3_buckets" {
  count = length(local.scope.s3_bucket_prefixes) > 0 ? 1 : 0

  statement {
    sid = "S3Buckets"
    actions = [
      "s3:CreateBucket",
      "s3:ListBucket",
      "s3:GetBucketAcl",
      "s3:GetBucketCORS",
      "s3:GetBucketWebsite",
      "s3:GetBucketVersioning",
      "s3:GetAccelerateConfiguration",
      "s3:GetBucketRequestPayment",
      "s3:GetBucketLogging",
      "s3:GetLifecycleConfiguration",
      "s3:GetReplicationConfiguration",
      "s3:GetEncryptionConfiguration",
      "s3:GetBucketObjectLockConfiguration",
      "s3:GetBucketTagging",
      "s3:GetBucketPolicy",
      "s3:GetBucketPublicAccessBlock",
      "s3:GetBucketOwnershipControls",
      "s3:PutBucketPolicy",
      "s3:PutBucketTagging",
      "s3:PutBucketVersioning",
      "s3:PutEncryptionConfiguration",
      "s3:PutBucketPublicAccessBlock",
      "s3:PutBucketOwnershipControls",
      "s3:PutLifecycleConfiguration",
    ]
    resources = [for p in local.scope.s3_bucket_prefixes : "arn:${local.partition}:s3:::${p}*"]
  }
}

# --- roles the recovered resources run with ---
data "aws_iam_policy_document" "recovery_pass_recovered_roles" {
  count = length(local.scope.pass_role_arns) > 0 ? 1 : 0

  statement {
    sid       = "PassRecoveredRoles"
    actions   = ["iam:PassRole"]
    resources = local.scope.pass_role_arns
    condition {
      test     = "StringEquals"
      variable = "iam:PassedToService"
      values   = ["ec2.amazonaws.com", "lambda.amazonaws.com", "rds.amazonaws.com", "cloudtrail.amazonaws.com", "config.amazonaws.com", "vpc-flow-logs.amazonaws.com"]
    }
  }
}

# --- keys of the recovered resources ---
data "aws_iam_policy_document" "recovery_recovered_resource_keys" {
  count = length(local.scope.kms_key_arns) > 0 ? 1 : 0

  statement {
    sid = "RecoveredResourceKeys"
    actions = [
      "kms:Decrypt",
      "kms:Encrypt",
      "kms:GenerateDataKey",
      "kms:DescribeKey",
      "kms:GetKeyPolicy",
      "kms:GetKeyRotationStatus",
      "kms:ListResourceTags",
      "kms:EnableKey",
      "kms:CancelKeyDeletion",
    ]
    resources = local.scope.kms_key_arns
  }
}

data "aws_iam_policy_document" "recovery_recovered_resource_key_grants" {
  count = length(local.scope.kms_key_arns) > 0 ? 1 : 0

  statement {
    sid       = "RecoveredResourceKeyGrants"
    actions   = ["kms:CreateGrant"]
    resources = local.scope.kms_key_arns
    condition {
      test     = "Bool"
      variable = "kms:GrantIsForAWSResource"
      values   = ["true"]
    }
  }
}

data "aws_iam_policy_document" "recovery_compute" {
  source_policy_documents = concat(
    [data.aws_iam_policy_document.recovery_refresh_read_only.json],
    data.aws_iam_policy_document.recovery_ec2_read_instances[*].json,
    data.aws_iam_policy_document.recovery_ec2_manage_tagged[*].json,
    data.aws_iam_policy_document.recovery_ec2_run_tagged_instance[*].json,
    data.aws_iam_policy_document.recovery_ec2_run_uses[*].json,
    data.aws_iam_policy_document.recovery_ec2_tag_on_launch[*].json,
    data.aws_iam_policy_document.recovery_rds_read[*].json,
    data.aws_iam_policy_document.recovery_rds_manage_tagged[*].json,
    data.aws_iam_policy_document.recovery_rds_create_tagged[*].json,
    data.aws_iam_policy_document.recovery_rds_create_uses[*].json,
  )
}

data "aws_iam_policy_document" "recovery_data" {
  source_policy_documents = concat(
    data.aws_iam_policy_document.recovery_ssm_parameters[*].json,
    data.aws_iam_policy_document.recovery_lambda_functions[*].json,
    data.aws_iam_policy_document.recovery_dynamodb_tables[*].json,
    data.aws_iam_policy_document.recovery_s3_buckets[*].json,
    data.aws_iam_policy_document.recovery_pass_recovered_roles[*].json,
    data.aws_iam_policy_document.recovery_recovered_resource_keys[*].json,
    data.aws_iam_policy_document.recovery_recovered_resource_key_grants[*].json,
  )
}

resource "aws_iam_policy" "recovery_compute" {
  name        = "${var.name}-recovery-compute"
  description = "aiops recovery builds: refresh reads, tagged EC2 instances and RDS databases"
  policy      = data.aws_iam_policy_document.recovery_compute.json
}

resource "aws_iam_role_policy_attachment" "recovery_compute" {
  role       = aws_iam_role.codebuild.name
  policy_arn = aws_iam_policy.recovery_compute.arn
}

# An IAM policy needs at least one statement: the data policy exists only when some data scope is set.
resource "aws_iam_policy" "recovery_data" {
  count = length(local.scope.ssm_parameter_paths) + length(local.scope.lambda_function_prefixes) + length(local.scope.dynamodb_table_prefixes) + length(local.scope.s3_bucket_prefixes) + length(local.scope.pass_role_arns) + length(local.scope.kms_key_arns) > 0 ? 1 : 0

  name        = "${var.name}-recovery-data"
  description = "aiops recovery builds: name-scoped SSM parameters, Lambda functions, DynamoDB tables, S3 buckets; passable roles and keys"
  policy      = data.aws_iam_policy_document.recovery_data.json
}

resource "aws_iam_role_policy_attachment" "recovery_data" {
  count = length(aws_iam_policy.recovery_data)

  role       = aws_iam_role.codebuild.name
  policy_arn = aws_iam_policy.recovery_data[0].arn
}

# --- defence-evasion recoveries: trails, detectors, Config recorders, flow logs ---
data "aws_iam_policy_document" "recovery_cloudtrail" {
  count = length(local.scope.cloudtrail_trail_names) > 0 ? 1 : 0

  statement {
    sid = "CloudTrailTrails"
    actions = [
      "cloudtrail:GetTrail",
      "cloudtrail:GetTrailStatus",
      "cloudtrail:GetEventSelectors",
      "cloudtrail:GetInsightSelectors",
      "cloudtrail:ListTags",
      "cloudtrail:CreateTrail",
      "cloudtrail:UpdateTrail",
      "cloudtrail:StartLogging",
      "cloudtrail:PutEventSelectors",
      "cloudtrail:PutInsightSelectors",
      "cloudtrail:AddTags",
    ]
    resources = [for n in local.scope.cloudtrail_trail_names : "arn:${local.partition}:cloudtrail:${local.region_account}:trail/${n}"]
  }
}

data "aws_iam_policy_document" "recovery_guardduty" {
  count = length(local.scope.guardduty_detector_ids) > 0 ? 1 : 0

  statement {
    sid       = "GuardDutyDetectors"
    actions   = ["guardduty:GetDetector", "guardduty:UpdateDetector", "guardduty:ListTagsForResource", "guardduty:TagResource"]
    resources = [for d in local.scope.guardduty_detector_ids : "arn:${local.partition}:guardduty:${local.region_account}:detector/${d}"]
  }
}

data "aws_iam_policy_document" "recovery_config" {
  count = local.scope.config_recorders ? 1 : 0

  # AWS Config recorder actions have no resource type (Service Authorization Reference, AWS Config):
  # Resource must be "*". Granted only when recovery_scope.config_recorders is set, in this region only.
  statement {
    sid = "ConfigRecorders"
    actions = [
      "config:DescribeConfigurationRecorders",
      "config:DescribeConfigurationRecorderStatus",
      "config:PutConfigurationRecorder",
      "config:StartConfigurationRecorder",
    ]
    resources = ["*"]
    condition {
      test     = "StringEquals"
      variable = "aws:RequestedRegion"
      values   = [var.region]
    }
  }
}

data "aws_iam_policy_document" "recovery_flow_log_create" {
  count = local.scope.vpc_flow_logs ? 1 : 0

  statement {
    sid       = "FlowLogTagged"
    actions   = ["ec2:CreateFlowLogs"]
    resources = ["arn:${local.partition}:ec2:${local.region_account}:vpc-flow-log/*"]
    condition {
      test     = "StringEquals"
      variable = local.recovery_req_cond
      values   = [local.scope.tag_value]
    }
  }
}

data "aws_iam_policy_document" "recovery_flow_log_uses" {
  count = local.scope.vpc_flow_logs ? 1 : 0

  statement {
    sid     = "FlowLogSources"
    actions = ["ec2:CreateFlowLogs"]
    resources = [
      "arn:${local.partition}:ec2:${local.region_account}:vpc/*",
      "arn:${local.partition}:ec2:${local.region_account}:subnet/*",
      "arn:${local.partition}:ec2:${local.region_account}:network-interface/*",
    ]
  }
}

data "aws_iam_policy_document" "recovery_flow_log_tags" {
  count = local.scope.vpc_flow_logs ? 1 : 0

  statement {
    sid       = "FlowLogTagOnCreate"
    actions   = ["ec2:CreateTags"]
    resources = ["arn:${local.partition}:ec2:${local.region_account}:vpc-flow-log/*"]
    condition {
      test     = "StringEquals"
      variable = "ec2:CreateAction"
      values   = ["CreateFlowLogs"]
    }
  }
}

data "aws_iam_policy_document" "recovery_flow_log_delivery" {
  count = local.scope.vpc_flow_logs ? 1 : 0

  # The caller of CreateFlowLogs sets up delivery to CloudWatch Logs or S3 (EC2 user guide, "IAM
  # permissions to publish flow logs"); CreateLogDelivery has no resource type.
  statement {
    sid       = "FlowLogDelivery"
    actions   = ["logs:CreateLogDelivery"]
    resources = ["*"]
  }
}

data "aws_iam_policy_document" "recovery_security" {
  source_policy_documents = concat(
    data.aws_iam_policy_document.recovery_cloudtrail[*].json,
    data.aws_iam_policy_document.recovery_guardduty[*].json,
    data.aws_iam_policy_document.recovery_config[*].json,
    data.aws_iam_policy_document.recovery_flow_log_create[*].json,
    data.aws_iam_policy_document.recovery_flow_log_uses[*].json,
    data.aws_iam_policy_document.recovery_flow_log_tags[*].json,
    data.aws_iam_policy_document.recovery_flow_log_delivery[*].json,
  )
}

resource "aws_iam_policy" "recovery_security" {
  count = length(local.scope.cloudtrail_trail_names) + length(local.scope.guardduty_detector_ids) > 0 || local.scope.config_recorders || local.scope.vpc_flow_logs ? 1 : 0

  name        = "${var.name}-recovery-security"
  description = "aiops recovery builds: restart or re-create trails, re-enable detectors, Config recorders and flow logs"
  policy      = data.aws_iam_policy_document.recovery_security.json
}

resource "aws_iam_role_policy_attachment" "recovery_security" {
  count = length(aws_iam_policy.recovery_security)

  role       = aws_iam_role.codebuild.name
  policy_arn = aws_iam_policy.recovery_security[0].arn
}
