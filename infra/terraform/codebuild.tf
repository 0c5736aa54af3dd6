# Recovery through CodeBuild (DESIGN section 6). Two projects over the user's own Terraform (the
# configuration that defines the watched resources, var.recovery_source):
# - apply:  terraform apply -target=$TF_TARGET -auto-approve      (buildspec/apply.yml)
# - verify: terraform plan -detailed-exitcode -target=$TF_TARGET   (buildspec/verify.yml)
# act starts them with StartBuild and environment overrides RESOURCE_TYPE, RESOURCE_ID, TF_TARGET,
# CORRELATION_ID, and polls BatchGetBuilds.
#
# The projects' role may change only the resources under recovery (var.recovery_scope: tag-scoped EC2
# and RDS, name-scoped SSM parameters, Lambda functions, DynamoDB tables and S3 buckets) and has no
# delete or terminate permission.

locals {
  codebuild_log_group = "/aiops/${var.name}/codebuild"

  recovery_projects = {
    apply  = { name = local.apply_project_name, buildspec = "apply.yml", description = "terraform apply of the resource under recovery" }
    verify = { name = local.verify_project_name, buildspec = "verify.yml", description = "terraform plan -detailed-exitcode: verifies a recovery (no drift)" }
  }

  recovery_project_arns = [for p in local.recovery_projects : "arn:${local.partition}:codebuild:${var.region}:${local.account_id}:project/${p.name}"]

  # Source bucket/key of an S3 source ("bucket/path/to/source.zip").
  recovery_source_s3_bucket = var.recovery_source.type == "S3" ? split("/", var.recovery_source.location)[0] : null
  recovery_source_s3_object = var.recovery_source.type == "S3" ? var.recovery_source.location : null
  # Repository name of a CodeCommit clone URL (https://git-codecommit.<region>.amazonaws.com/v1/repos/<name>).
  recovery_source_codecommit_repo = var.recovery_source.type == "CODECOMMIT" ? element(split("/", var.recovery_source.location), length(split("/", var.recovery_source.location)) - 1) : null

  scope             = var.recovery_scope
  region_account    = "${var.region}:${local.account_id}"
  recovery_tag_cond = "aws:ResourceTag/${local.scope.tag_key}"
  recovery_req_cond = "aws:RequestTag/${local.scope.tag_key}"
}

resource "aws_cloudwatch_log_group" "codebuild" {
  name              = local.codebuild_log_group
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.main.arn
}

resource "aws_codebuild_project" "recovery" {
  for_each = local.recovery_projects

  name           = each.value.name
  description    = each.value.description
  service_role   = aws_iam_role.codebuild.arn
  encryption_key = aws_kms_key.main.arn
  build_timeout  = var.codebuild_timeout_minutes
  queued_timeout = 60

  source {
    type      = var.recovery_source.type
    location  = var.recovery_source.location
    buildspec = file("${path.module}/buildspec/${each.value.buildspec}")

    dynamic "auth" {
      for_each = var.recovery_source.type == "GITHUB" && var.recovery_source.connection_arn != null ? [var.recovery_source.connection_arn] : []
      content {
        type     = "CODECONNECTIONS"
        resource = auth.value
      }
    }
  }

  source_version = var.recovery_source.source_version

  artifacts {
    type = "NO_ARTIFACTS"
  }

  environment {
    compute_type                = "BUILD_GENERAL1_SMALL"
    image                       = "aws/codebuild/amazonlinux-x86_64-standard:5.0"
    type                        = "LINUX_CONTAINER"
    image_pull_credentials_type = "CODEBUILD"
    privileged_mode             = false

    environment_variable {
      name  = "TF_VERSION"
      value = var.terraform_version
    }
    environment_variable {
      name  = "TF_SHA256"
      value = var.terraform_sha256
    }
    environment_variable {
      name  = "TF_STATE_BUCKET"
      value = var.recovery_state.bucket
    }
    environment_variable {
      name  = "TF_STATE_KEY"
      value = var.recovery_state.key
    }
    # Set per build by act (StartBuild environmentVariablesOverride); "none" is refused by the buildspec.
    environment_variable {
      name  = "TF_TARGET"
      value = "none"
    }
    environment_variable {
      name  = "RESOURCE_TYPE"
      value = "none"
    }
    environment_variable {
      name  = "RESOURCE_ID"
      value = "none"
    }
    environment_variable {
      name  = "CORRELATION_ID"
      value = "none"
    }
  }

  logs_config {
    cloudwatch_logs {
      status      = "ENABLED"
      group_name  = aws_cloudwatch_log_group.codebuild.name
      stream_name = each.key
    }
    s3_logs {
      status = "DISABLED"
    }
  }
}

# --- the builds' role ----------------------------------------------------------------------------------

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
      values   = [for p in local.recovery_projects : "arn:${local.partition}:codebuild:${var.region}:${local.account_id}:project/${p.name}"]
    }
  }
}

resource "aws_iam_role" "codebuild" {
  name               = "${var.name}-recovery-build"
  description        = "Recovery builds of ${var.name}: terraform apply/plan of resources under recovery only"
  assume_role_policy = data.aws_iam_policy_document.codebuild_assume.json
}

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

  dynamic "statement" {
    for_each = var.recovery_state.kms_key_arn != null ? [var.recovery_state.kms_key_arn] : []
    content {
      sid       = "StateKey"
      actions   = ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"]
      resources = [statement.value]
    }
  }

  # Source of the recovered configuration.
  dynamic "statement" {
    for_each = var.recovery_source.type == "S3" ? [1] : []
    content {
      sid       = "SourceObject"
      actions   = ["s3:GetObject", "s3:GetObjectVersion"]
      resources = ["arn:${local.partition}:s3:::${local.recovery_source_s3_object}"]
    }
  }

  dynamic "statement" {
    for_each = var.recovery_source.type == "S3" ? [1] : []
    content {
      sid       = "SourceBucket"
      actions   = ["s3:GetBucketAcl", "s3:GetBucketLocation"]
      resources = ["arn:${local.partition}:s3:::${local.recovery_source_s3_bucket}"]
    }
  }

  dynamic "statement" {
    for_each = var.recovery_source.type == "CODECOMMIT" ? [1] : []
    content {
      sid       = "SourceRepository"
      actions   = ["codecommit:GitPull"]
      resources = ["arn:${local.partition}:codecommit:${local.region_account}:${local.recovery_source_codecommit_repo}"]
    }
  }

  dynamic "statement" {
    for_each = var.recovery_source.type == "GITHUB" && var.recovery_source.connection_arn != null ? [var.recovery_source.connection_arn] : []
    content {
      sid       = "SourceConnection"
      actions   = ["codeconnections:UseConnection", "codeconnections:GetConnectionToken", "codestar-connections:UseConnection", "codestar-connections:GetConnectionToken"]
      resources = [statement.value]
    }
  }
}

# What Terraform may change when it restores a resource: only resources under recovery.
data "aws_iam_policy_document" "codebuild_recovery" {
  # Read-only calls that IAM cannot scope to a resource (AWS service authorization reference: these
  # actions have no resource type), needed by `terraform plan` to refresh the target and what it
  # references (subnets, security groups, images, ...).
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
      "ssm:DescribeParameters",
      "lambda:ListFunctions",
      "dynamodb:ListTables",
      "s3:ListAllMyBuckets",
      "sts:GetCallerIdentity",
    ]
    resources = ["*"]
  }

  # --- EC2 instances carrying the recovery tag ---
  dynamic "statement" {
    for_each = local.scope.ec2_instances ? [1] : []
    content {
      sid       = "Ec2ReadInstances"
      actions   = ["ec2:DescribeInstanceAttribute"]
      resources = ["arn:${local.partition}:ec2:${local.region_account}:instance/*"]
    }
  }

  dynamic "statement" {
    for_each = local.scope.ec2_instances ? [1] : []
    content {
      sid = "Ec2ManageTagged"
      actions = [
        "ec2:StartInstances",
        "ec2:StopInstances",
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

  dynamic "statement" {
    for_each = local.scope.ec2_instances ? [1] : []
    content {
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
  dynamic "statement" {
    for_each = local.scope.ec2_instances ? [1] : []
    content {
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

  dynamic "statement" {
    for_each = local.scope.ec2_instances ? [1] : []
    content {
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
  dynamic "statement" {
    for_each = local.scope.rds ? [1] : []
    content {
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

  dynamic "statement" {
    for_each = local.scope.rds ? [1] : []
    content {
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

  dynamic "statement" {
    for_each = local.scope.rds ? [1] : []
    content {
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
  dynamic "statement" {
    for_each = local.scope.rds ? [1] : []
    content {
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
  dynamic "statement" {
    for_each = length(local.scope.ssm_parameter_paths) > 0 ? [1] : []
    content {
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
  dynamic "statement" {
    for_each = length(local.scope.lambda_function_prefixes) > 0 ? [1] : []
    content {
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
  dynamic "statement" {
    for_each = length(local.scope.dynamodb_table_prefixes) > 0 ? [1] : []
    content {
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
  dynamic "statement" {
    for_each = length(local.scope.s3_bucket_prefixes) > 0 ? [1] : []
    content {
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
  dynamic "statement" {
    for_each = length(local.scope.pass_role_arns) > 0 ? [1] : []
    content {
      sid       = "PassRecoveredRoles"
      actions   = ["iam:PassRole"]
      resources = local.scope.pass_role_arns
      condition {
        test     = "StringEquals"
        variable = "iam:PassedToService"
        values   = ["ec2.amazonaws.com", "lambda.amazonaws.com", "rds.amazonaws.com"]
      }
    }
  }

  # --- keys of the recovered resources ---
  dynamic "statement" {
    for_each = length(local.scope.kms_key_arns) > 0 ? [1] : []
    content {
      sid       = "RecoveredResourceKeys"
      actions   = ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey"]
      resources = local.scope.kms_key_arns
    }
  }

  dynamic "statement" {
    for_each = length(local.scope.kms_key_arns) > 0 ? [1] : []
    content {
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
}

resource "aws_iam_role_policy" "codebuild_base" {
  name   = "build-base"
  role   = aws_iam_role.codebuild.id
  policy = data.aws_iam_policy_document.codebuild_base.json
}

resource "aws_iam_role_policy" "codebuild_recovery" {
  name   = "recovery-scope"
  role   = aws_iam_role.codebuild.id
  policy = data.aws_iam_policy_document.codebuild_recovery.json
}
