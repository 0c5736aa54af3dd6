# The three stages as ECS Fargate services, one task definition each, running the aiops image as
#   aiops ingest|detect|act --config /run/aiops/pipeline.toml
# (the configuration is rendered from templates/pipeline.toml.tftpl and handed to the task in an
# environment variable, then written to an in-task volume: the root filesystem stays read-only).
#
# Why Fargate services and not Lambda functions behind Kinesis event source mappings: the stages are
# long-lived stateful consumers. ingest buffers a Parquet file per partition and rolls it over by size
# or age, advancing a shard's checkpoint only after the file is durably written; detect keeps
# event-time windows, watermarks and the log template miner in memory per key; both lose that state
# (or write tiny files) when an invocation ends. The lease table already spreads shards over workers,
# so scale-out is `desired_count` (README.md, "Why ECS Fargate").

locals {
  # deployment_profile (variables.tf): three services, or one task "all" running `aiops run`.
  single      = var.deployment_profile == "single"
  stage_names = local.single ? ["all"] : ["ingest", "detect", "act"]
  stage_sizes = local.single ? {
    all = { desired_count = 1, cpu = var.single_task.cpu, memory = var.single_task.memory }
  } : var.stages
  # The aiops subcommand each task runs.
  stage_commands = { for s in local.stage_names : s => s == "all" ? "run" : s }

  image = startswith(var.image_tag, "sha256:") ? "${aws_ecr_repository.aiops.repository_url}@${var.image_tag}" : "${aws_ecr_repository.aiops.repository_url}:${var.image_tag}"

  pipeline_toml = templatefile("${path.module}/templates/pipeline.toml.tftpl", {
    name                 = var.name
    deployment_profile   = var.deployment_profile
    region               = var.region
    raw_stream           = local.stream_names.raw
    events_stream        = local.stream_names.events
    decisions_stream     = local.stream_names.decisions
    raw_shards           = var.raw_shard_count
    events_shards        = var.events_shard_count
    decisions_shards     = var.decisions_shard_count
    leases_table         = local.table_names.leases
    incidents_table      = local.table_names.incidents
    locks_table          = local.table_names.locks
    patterns_table       = local.table_names.patterns
    changes_table        = local.table_names.changes
    history_bucket       = local.history_bucket_name
    history_prefix       = var.history_prefix
    metrics_namespace    = local.metrics_namespace
    evidence_prefix      = local.evidence_prefix
    bedrock_model_id     = var.bedrock_model_id
    confidence_threshold = var.confidence_threshold
    apply_project        = local.apply_project_name
    verify_project       = local.verify_project_name
    topic_arn            = aws_sns_topic.notifications.arn
  })
}

# --- image registry ---------------------------------------------------------------------------------

resource "aws_ecr_repository" "aiops" {
  name                 = var.name
  image_tag_mutability = "IMMUTABLE"

  image_scanning_configuration {
    scan_on_push = true
  }

  encryption_configuration {
    encryption_type = "KMS"
    kms_key         = aws_kms_key.main.arn
  }
}

resource "aws_ecr_lifecycle_policy" "aiops" {
  repository = aws_ecr_repository.aiops.name
  policy = jsonencode({
    rules = [{
      rulePriority = 1
      description  = "Keep the 30 most recent images"
      selection = {
        tagStatus   = "any"
        countType   = "imageCountMoreThan"
        countNumber = 30
      }
      action = { type = "expire" }
    }]
  })
}

# --- cluster, logs, network ------------------------------------------------------------------------

resource "aws_ecs_cluster" "aiops" {
  name = var.name

  setting {
    name  = "containerInsights"
    value = var.container_insights ? "enabled" : "disabled"
  }
}

resource "aws_cloudwatch_log_group" "stage" {
  for_each = toset(local.stage_names)

  name              = "/aiops/${var.name}/${each.key}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.main.arn
}

resource "aws_security_group" "stages" {
  name        = "${var.name}-stages"
  description = "aiops stage tasks: no inbound; outbound HTTPS to the AWS APIs only"
  vpc_id      = var.vpc_id

  egress {
    description = "HTTPS to AWS service endpoints (through NAT or VPC endpoints)"
    protocol    = "tcp"
    from_port   = 443
    to_port     = 443
    cidr_blocks = ["0.0.0.0/0"]
  }
}

# --- task definitions and services ---------------------------------------------------------------

resource "aws_ecs_task_definition" "stage" {
  for_each = toset(local.stage_names)

  family                   = "${var.name}-${each.key}"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = tostring(local.stage_sizes[each.key].cpu)
  memory                   = tostring(local.stage_sizes[each.key].memory)
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.stage[each.key].arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = var.cpu_architecture
  }

  volume {
    name = "run"
  }

  container_definitions = jsonencode([{
    name                   = each.key
    image                  = local.image
    essential              = true
    readonlyRootFilesystem = true
    privileged             = false
    entryPoint             = ["/bin/sh", "-c"]
    command                = ["printf '%s' \"$AIOPS_PIPELINE_TOML\" > /run/aiops/pipeline.toml && exec aiops ${local.stage_commands[each.key]} --config /run/aiops/pipeline.toml"]
    environment = [
      { name = "AIOPS_PIPELINE_TOML", value = local.pipeline_toml },
      { name = "AWS_REGION", value = var.region },
      { name = "RUST_LOG", value = "info" },
      # JSON lines on stderr: the log metric filters of alarms.tf match their fields.
      { name = "AIOPS_LOG_FORMAT", value = "json" },
    ]
    # The image's HEALTHCHECK (infra/docker/Dockerfile): the configuration parses and validates.
    healthCheck = {
      command     = ["CMD", "/usr/local/bin/aiops", "validate", "--config", "/run/aiops/pipeline.toml"]
      interval    = 60
      timeout     = 10
      retries     = 3
      startPeriod = 30
    }
    mountPoints = [{ sourceVolume = "run", containerPath = "/run/aiops", readOnly = false }]
    # Fargate's maximum: time to flush the open Parquet files and checkpoint before SIGKILL.
    stopTimeout = 120
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        "awslogs-group"         = aws_cloudwatch_log_group.stage[each.key].name
        "awslogs-region"        = var.region
        "awslogs-stream-prefix" = each.key
      }
    }
  }])
}

resource "aws_ecs_service" "stage" {
  for_each = toset(local.stage_names)

  name             = each.key
  cluster          = aws_ecs_cluster.aiops.id
  task_definition  = aws_ecs_task_definition.stage[each.key].arn
  desired_count    = local.stage_sizes[each.key].desired_count
  launch_type      = "FARGATE"
  platform_version = "LATEST"
  propagate_tags   = "SERVICE"

  # Leases hand shards over between old and new tasks, so a rolling deployment may run both.
  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  network_configuration {
    subnets          = var.subnet_ids
    security_groups  = [aws_security_group.stages.id]
    assign_public_ip = false
  }
}

# --- execution role (image pull, log delivery) ----------------------------------------------------------

data "aws_iam_policy_document" "ecs_tasks_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = ["arn:${local.partition}:ecs:${var.region}:${local.account_id}:*"]
    }
  }
}

resource "aws_iam_role" "execution" {
  name               = "${var.name}-task-execution"
  description        = "ECS pulls the aiops image and delivers the stages' logs"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

data "aws_iam_policy_document" "execution" {
  statement {
    sid       = "RegistryLogin"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"] # GetAuthorizationToken has no resource type (service authorization reference)
  }
  statement {
    sid       = "PullImage"
    actions   = ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"]
    resources = [aws_ecr_repository.aiops.arn]
  }
  statement {
    sid       = "ImageKey"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.main.arn]
  }
  statement {
    sid       = "Logs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = [for g in aws_cloudwatch_log_group.stage : "${g.arn}:*"]
  }
}

resource "aws_iam_role_policy" "execution" {
  name   = "pull-and-log"
  role   = aws_iam_role.execution.id
  policy = data.aws_iam_policy_document.execution.json
}


# --- task roles: each stage only the calls its code makes ---------------------------------------------
#
# The calls, from the code (README.md, "Least privilege, per role"):
# - every stage consumes its input stream through the shard leases (aws/src/kinesis.rs: ListShards,
#   GetShardIterator, GetRecords; aws/src/lease.rs: Scan, GetItem, PutItem, UpdateItem on the lease table);
# - ingest and detect forward with PutRecords (aws/src/producer.rs); ingest writes Parquet objects and
#   dead letters (aws/src/objects.rs: PutObject, or CreateMultipartUpload/UploadPart/
#   CompleteMultipartUpload, all authorised by s3:PutObject, and AbortMultipartUpload);
# - act (act/src/): incidents PutItem/GetItem/UpdateItem and Query on the two indexes, locks PutItem,
#   outcome counters GetItem/UpdateItem (dynamo.rs), evidence PutObject (dynamo.rs), Converse =
#   bedrock:InvokeModel (bedrock.rs), StartBuild/BatchGetBuilds/StopBuild (codebuild.rs), Publish
#   (notify.rs).
# The encrypted stores are used through their services only (kms:ViaService): Kinesis, DynamoDB, S3 and
# SNS call KMS on the role's behalf.

resource "aws_iam_role" "stage" {
  for_each = toset(local.stage_names)

  name               = "${var.name}-${each.key}"
  description        = "aiops ${each.key} stage"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

locals {
  kinesis_read_actions  = ["kinesis:ListShards", "kinesis:GetShardIterator", "kinesis:GetRecords"]
  kinesis_write_actions = ["kinesis:PutRecords"]
  lease_actions         = ["dynamodb:Scan", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"]
  # Objects written whole or in parts (s3:PutObject covers the multipart calls) and parts abandoned.
  s3_write_actions   = ["s3:PutObject", "s3:AbortMultipartUpload"]
  history_bucket_arn = "arn:${local.partition}:s3:::${local.history_bucket_name}"

  # Input stream and the services that use the key on each stage's behalf.
  stage_io = local.single ? {
    all = { input = local.stream_arns.raw, key_services = ["kinesis", "dynamodb", "s3", "sns"] }
    } : {
    ingest = { input = local.stream_arns.raw, key_services = ["kinesis", "dynamodb", "s3"] }
    detect = { input = local.stream_arns.events, key_services = ["kinesis", "dynamodb", "s3"] }
    act    = { input = local.stream_arns.decisions, key_services = ["kinesis", "dynamodb", "s3", "sns"] }
  }
}

# Statements every stage needs: its input stream (read), the lease table, the key through its services.
data "aws_iam_policy_document" "stage_common" {
  for_each = local.stage_io

  statement {
    sid       = "ReadInputStream"
    actions   = local.kinesis_read_actions
    resources = [each.value.input]
  }
  statement {
    sid       = "Leases"
    actions   = local.lease_actions
    resources = [aws_dynamodb_table.leases.arn]
  }
  statement {
    sid       = "KeyThroughServices"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.main.arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = [for s in each.value.key_services : "${s}.${var.region}.amazonaws.com"]
    }
  }
}

# What each stage writes besides its output stream, shared by the scaled stage roles and the single
# profile's "all" role.
data "aws_iam_policy_document" "ingest_archive" {
  # The recent-changes index: ingest records every successful mutating CloudTrail call (a conditional
  # PutItem, so a change delivered twice is stored once).
  statement {
    sid       = "RecordChanges"
    actions   = ["dynamodb:PutItem"]
    resources = [aws_dynamodb_table.changes.arn]
  }
  statement {
    sid     = "ArchiveRawHistoryAndDeadLetters"
    actions = local.s3_write_actions
    resources = [
      "${local.history_bucket_arn}/${local.history_table_prefixes.raw}/*",
      "${local.history_bucket_arn}/${local.dead_letters_prefix}/*",
    ]
  }
}

data "aws_iam_policy_document" "detect_archive" {
  # Learned baselines (`aiops learn --out dynamodb://<patterns table>`), read when detect starts
  # (history/src/patterns.rs: the `current` item, then its parts).
  statement {
    sid       = "LearnedBaselines"
    actions   = ["dynamodb:GetItem"]
    resources = [aws_dynamodb_table.patterns.arn]
  }
}

data "aws_iam_policy_document" "ingest" {
  count = local.single ? 0 : 1

  source_policy_documents = [
    data.aws_iam_policy_document.stage_common["ingest"].json,
    data.aws_iam_policy_document.ingest_archive.json,
  ]

  statement {
    sid       = "WriteEvents"
    actions   = local.kinesis_write_actions
    resources = [local.stream_arns.events]
  }
}

data "aws_iam_policy_document" "detect" {
  count = local.single ? 0 : 1

  source_policy_documents = [
    data.aws_iam_policy_document.stage_common["detect"].json,
    data.aws_iam_policy_document.detect_archive.json,
  ]

  statement {
    sid       = "WriteDecisions"
    actions   = local.kinesis_write_actions
    resources = [local.stream_arns.decisions]
  }
  # Each events shard's engine state ([aws.detect_state]): written before each checkpoint, read
  # when a worker takes the shard (GetObject; a missing object is NoSuchKey only with ListBucket,
  # otherwise AccessDenied, which detect treats as a read failure: so ListBucket on the prefix).
  statement {
    sid       = "DetectState"
    actions   = ["s3:PutObject", "s3:GetObject"]
    resources = ["${local.history_bucket_arn}/${local.detect_state_prefix}/${local.stream_names.events}/*"]
  }
  statement {
    sid       = "DetectStateMissing"
    actions   = ["s3:ListBucket"]
    resources = [local.history_bucket_arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${local.detect_state_prefix}/${local.stream_names.events}/*"]
    }
  }
}

data "aws_iam_policy_document" "act" {
  count = local.single ? 0 : 1

  source_policy_documents = [
    data.aws_iam_policy_document.stage_common["act"].json,
    data.aws_iam_policy_document.act_own.json,
  ]
}

# The single profile: the three stages in one process read the raw stream only and forward nothing
# to Kinesis; they write what ingest, detect and act write.
data "aws_iam_policy_document" "all" {
  count = local.single ? 1 : 0

  source_policy_documents = [
    data.aws_iam_policy_document.stage_common["all"].json,
    data.aws_iam_policy_document.ingest_archive.json,
    data.aws_iam_policy_document.detect_archive.json,
    data.aws_iam_policy_document.act_own.json,
  ]
}

data "aws_iam_policy_document" "act_own" {

  statement {
    sid       = "Incidents"
    actions   = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"]
    resources = [aws_dynamodb_table.incidents.arn]
  }
  statement {
    sid     = "IncidentIndexes"
    actions = ["dynamodb:Query"]
    resources = [
      for gsi in aws_dynamodb_table.incidents.global_secondary_index : "${aws_dynamodb_table.incidents.arn}/index/${gsi.name}"
    ]
  }
  # Cooldown locks (UpdateItem, conditional), incident groups (GetItem, PutItem), and the suppressions
  # and feedback every finding is checked against (Scan of their key prefix); act/src/dynamo/mod.rs.
  statement {
    sid       = "CooldownLocksGroupsSuppressions"
    actions   = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:Scan"]
    resources = [aws_dynamodb_table.locks.arn]
  }
  statement {
    sid       = "RelatedChanges"
    actions   = ["dynamodb:Query"]
    resources = [aws_dynamodb_table.changes.arn]
  }
  statement {
    sid       = "OutcomeCounters"
    actions   = ["dynamodb:GetItem", "dynamodb:UpdateItem"]
    resources = [aws_dynamodb_table.patterns.arn]
  }
  statement {
    sid       = "LargeEvidence"
    actions   = ["s3:PutObject"]
    resources = ["${local.history_bucket_arn}/${local.evidence_prefix}/*"]
  }
  # The findings and incidents Parquet tables (glue_tables.tf), written by act (pipeline/src/aws_mode/act.rs):
  # each finding is recorded with act's verdict (suppressed or not) beside the incidents.
  statement {
    sid     = "ArchiveFindingsAndIncidents"
    actions = local.s3_write_actions
    resources = [
      "${local.history_bucket_arn}/${local.history_table_prefixes.findings}/*",
      "${local.history_bucket_arn}/${local.history_table_prefixes.incidents}/*",
    ]
  }
  statement {
    sid       = "EnrichWithConfiguredModel"
    actions   = ["bedrock:InvokeModel"]
    resources = local.bedrock_resource_arns
  }
  statement {
    sid       = "RunRecoveryBuilds"
    actions   = ["codebuild:StartBuild", "codebuild:BatchGetBuilds", "codebuild:StopBuild", "codebuild:ListBuildsForProject"]
    resources = [for p in aws_codebuild_project.recovery : p.arn]
  }
  statement {
    sid       = "Notify"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.notifications.arn]
  }
}

locals {
  stage_policies = local.single ? {
    all = data.aws_iam_policy_document.all[0].json
    } : {
    ingest = data.aws_iam_policy_document.ingest[0].json
    detect = data.aws_iam_policy_document.detect[0].json
    act    = data.aws_iam_policy_document.act[0].json
  }
}

resource "aws_iam_role_policy" "stage" {
  for_each = toset(local.stage_names)

  name   = each.key
  role   = aws_iam_role.stage[each.key].id
  policy = local.stage_policies[each.key]
}
