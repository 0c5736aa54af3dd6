# Recovery through CodeBuild (DESIGN section 6). Two projects over the user's own Terraform (the
# configuration that defines the watched resources, var.recovery_source):
# - apply:  terraform apply -target=$TF_TARGET -auto-approve      (buildspec/apply.yml)
# - verify: terraform plan -detailed-exitcode -target=$TF_TARGET   (buildspec/verify.yml)
# act starts them with StartBuild and environment overrides RESOURCE_TYPE, RESOURCE_ID, TF_TARGET,
# CORRELATION_ID, and polls BatchGetBuilds.
#
# The projects' role (recovery_iam.tf) may change only the resources under recovery
# (var.recovery_scope) and has no delete or terminate permission.

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
