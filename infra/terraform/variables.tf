# Inputs of the aiops deployment. Every variable without a default must be set (see
# terraform.tfvars.example and README.md, "Variables to set").

# --- naming and placement -------------------------------------------------------------------

variable "name" {
  description = "Name prefix of every resource (streams, tables, buckets, roles, ...). Lower case letters, digits and '-', 3 to 20 characters."
  type        = string
  default     = "aiops"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,19}$", var.name))
    error_message = "name must be 3-20 characters of lower-case letters, digits and '-', starting with a letter."
  }
}

variable "region" {
  description = "AWS region to deploy into, e.g. us-east-1. CloudTrail API-call events reach EventBridge in the region where the call was made: deploy one raw stream per region, or forward other regions' events to this one (README.md)."
  type        = string

  validation {
    condition     = can(regex("^[a-z]{2}(-[a-z]+)+-[0-9]$", var.region))
    error_message = "region must look like us-east-1."
  }
}

variable "tags" {
  description = "Extra tags put on every resource (through the provider's default_tags)."
  type        = map(string)
  default     = {}
}

# --- Kinesis ----------------------------------------------------------------------------------

variable "raw_shard_count" {
  description = "Shards of the raw stream (CloudTrail via EventBridge, CloudWatch Logs subscriptions, metric streams). One shard takes 1 MB/s or 1,000 records/s of writes."
  type        = number
  default     = 2

  validation {
    condition     = var.raw_shard_count >= 1 && var.raw_shard_count == floor(var.raw_shard_count)
    error_message = "raw_shard_count must be a whole number >= 1."
  }
}

variable "events_shard_count" {
  description = "Shards of the events stream (normalised events from ingest to detect, partition key = series/resource key)."
  type        = number
  default     = 2

  validation {
    condition     = var.events_shard_count >= 1 && var.events_shard_count == floor(var.events_shard_count)
    error_message = "events_shard_count must be a whole number >= 1."
  }
}

variable "decisions_shard_count" {
  description = "Shards of the decisions stream (enriched findings from detect to act)."
  type        = number
  default     = 1

  validation {
    condition     = var.decisions_shard_count >= 1 && var.decisions_shard_count == floor(var.decisions_shard_count)
    error_message = "decisions_shard_count must be a whole number >= 1."
  }
}

variable "stream_retention_hours" {
  description = "Retention of the three Kinesis streams, in hours (24 to 8760). Above 24 hours Kinesis bills extended retention per shard-hour."
  type        = number
  default     = 24

  validation {
    condition     = var.stream_retention_hours >= 24 && var.stream_retention_hours <= 8760
    error_message = "stream_retention_hours must be between 24 and 8760."
  }
}

# --- sources ----------------------------------------------------------------------------------

variable "enable_cloudtrail_rule" {
  description = "Create the EventBridge rule that sends every \"AWS API Call via CloudTrail\" event of the default bus to the raw stream. Needs a trail that logs management events in this region."
  type        = bool
  default     = true
}

variable "log_group_names" {
  description = "CloudWatch Logs log groups to subscribe to the raw stream (one subscription filter each). Each group accepts at most two subscription filters."
  type        = list(string)
  default     = []
}

variable "log_filter_pattern" {
  description = "Filter pattern of the log subscription filters; empty forwards every log event."
  type        = string
  default     = ""
}

variable "log_distribution" {
  description = "How CloudWatch Logs spreads a log group's events over the raw stream's shards: ByLogStream (keeps a log stream's order) or Random (even spread)."
  type        = string
  default     = "ByLogStream"

  validation {
    condition     = contains(["ByLogStream", "Random"], var.log_distribution)
    error_message = "log_distribution must be ByLogStream or Random."
  }
}

# --- history (S3, Glue, Athena) -----------------------------------------------------------------

variable "history_prefix" {
  description = "Key prefix of the Parquet history in the bucket: objects are <prefix>/<table>/source=<source>/dt=YYYY-MM-DD/hour=HH/<file>.parquet. No leading or trailing '/'."
  type        = string
  default     = "history"

  validation {
    condition     = can(regex("^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$", var.history_prefix))
    error_message = "history_prefix must be path segments of letters, digits, '_' and '-', without leading or trailing '/'."
  }
}

variable "history_start_date" {
  description = "First day (YYYY-MM-DD, UTC) of the dt partition projection; Athena enumerates days from here to NOW for queries that do not filter on dt."
  type        = string
  default     = "2025-01-01"

  validation {
    condition     = can(regex("^[0-9]{4}-[0-9]{2}-[0-9]{2}$", var.history_start_date))
    error_message = "history_start_date must be YYYY-MM-DD."
  }
}

variable "history_ia_after_days" {
  description = "Days after which history objects move to S3 Standard-IA (S3 requires at least 30)."
  type        = number
  default     = 30

  validation {
    condition     = var.history_ia_after_days >= 30
    error_message = "history_ia_after_days must be at least 30 (S3 lifecycle minimum for Standard-IA)."
  }
}

variable "history_glacier_after_days" {
  description = "Days after which history objects move to S3 Glacier Instant Retrieval (still queryable by Athena); at least 30 days after history_ia_after_days."
  type        = number
  default     = 90

  validation {
    condition     = var.history_glacier_after_days >= 60
    error_message = "history_glacier_after_days must be at least 60 (30 days in Standard-IA after the earliest IA transition)."
  }
}

variable "history_expire_after_days" {
  description = "Days after which history objects are deleted; 0 keeps them for ever."
  type        = number
  default     = 730
}

variable "athena_results_expire_days" {
  description = "Days after which Athena query results are deleted from the results bucket."
  type        = number
  default     = 30
}

variable "athena_bytes_scanned_cutoff" {
  description = "Per-query limit of bytes scanned in the Athena workgroup (guards against a runaway scan of the whole history)."
  type        = number
  default     = 107374182400 # 100 GiB
}

# --- DynamoDB -----------------------------------------------------------------------------------

variable "deletion_protection" {
  description = "Turn on deletion protection of the DynamoDB tables. Set to false before `terraform destroy`."
  type        = bool
  default     = true
}

# --- compute (ECS Fargate) ----------------------------------------------------------------------

variable "image_tag" {
  description = "Tag (or digest, as sha256:...) of the aiops image in the ECR repository this module creates. The image runs `aiops ingest|detect|act --config <file>` and must contain /bin/sh."
  type        = string
}

variable "vpc_id" {
  description = "VPC of the Fargate tasks."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets of the Fargate tasks. They need a route to the AWS APIs (NAT gateway, or VPC interface endpoints for Kinesis, DynamoDB, S3, SNS, CodeBuild, Bedrock runtime, CloudWatch, CloudWatch Logs, ECR)."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) >= 1
    error_message = "subnet_ids needs at least one subnet."
  }
}

variable "stages" {
  description = "Per stage: number of Fargate tasks (shards are shared among them through the leases table), vCPU units (1024 = 1 vCPU) and memory in MiB (a valid Fargate combination)."
  type = map(object({
    desired_count = number
    cpu           = number
    memory        = number
  }))
  default = {
    ingest = { desired_count = 1, cpu = 512, memory = 1024 }
    detect = { desired_count = 1, cpu = 512, memory = 1024 }
    act    = { desired_count = 1, cpu = 256, memory = 512 }
  }

  validation {
    condition     = length(setsubtract(keys(var.stages), ["ingest", "detect", "act"])) == 0 && length(setsubtract(["ingest", "detect", "act"], keys(var.stages))) == 0
    error_message = "stages must have exactly the keys ingest, detect and act."
  }
}

variable "deployment_profile" {
  description = "scaled: three Fargate services (ingest, detect, act), each scaled by var.stages, joined by the raw, events and decisions streams. single: one Fargate task running the three stages in one process (`aiops run --config`, the embedded wiring with the raw stream in and S3/DynamoDB out), no events or decisions streams: the small footprint (README.md, \"Deployment profiles and cost\")."
  type        = string
  default     = "scaled"

  validation {
    condition     = contains(["single", "scaled"], var.deployment_profile)
    error_message = "deployment_profile must be single or scaled."
  }
}

variable "single_task" {
  description = "deployment_profile = single: vCPU units (1024 = 1 vCPU) and memory in MiB of the one task (a valid Fargate combination). var.stages is not used then."
  type = object({
    cpu    = number
    memory = number
  })
  default = { cpu = 512, memory = 1024 }
}

variable "cpu_architecture" {
  description = "CPU architecture of the aiops image: X86_64 or ARM64 (Graviton, about 20% cheaper per vCPU-hour)."
  type        = string
  default     = "X86_64"

  validation {
    condition     = contains(["X86_64", "ARM64"], var.cpu_architecture)
    error_message = "cpu_architecture must be X86_64 or ARM64."
  }
}

variable "container_insights" {
  description = "CloudWatch Container Insights on the ECS cluster (per-task CPU, memory and network metrics; billed as custom metrics, about $9 a month for the three services, README.md)."
  type        = bool
  default     = true
}

variable "log_retention_days" {
  description = "Retention of the stages' and CodeBuild's CloudWatch log groups, in days (a value CloudWatch Logs accepts)."
  type        = number
  default     = 365
}

# --- act: Bedrock enrichment ---------------------------------------------------------------------

variable "bedrock_model_id" {
  description = "Bedrock model id (e.g. anthropic.claude-3-5-haiku-20241022-v1:0), cross-region inference profile id (e.g. us.anthropic.claude-3-5-haiku-20241022-v1:0) or inference profile ARN that the act stage calls with Converse to classify and explain findings ([act.enrichment] of pipeline.toml). The act role may invoke this model only."
  type        = string
}

# --- act: recovery ------------------------------------------------------------------------------

variable "confidence_threshold" {
  description = "Confidence (0..1) below which act sends a decision to MANUAL_REVIEW instead of recovering."
  type        = number
  default     = 0.8

  validation {
    condition     = var.confidence_threshold >= 0 && var.confidence_threshold <= 1
    error_message = "confidence_threshold must be between 0 and 1."
  }
}

variable "notification_emails" {
  description = "E-mail addresses subscribed to the SNS topic (each must confirm the subscription)."
  type        = list(string)
  default     = []
}

variable "recovery_source" {
  description = "Where CodeBuild gets the Terraform that defines the watched resources (the configuration recoveries apply): type S3 (location = bucket/key of a zip), CODECOMMIT (location = clone URL) or GITHUB (location = repository URL; connection_arn = a CodeConnections connection, or null to use CodeBuild's stored GitHub credentials). source_version: branch, tag or commit, or null."
  type = object({
    type           = string
    location       = string
    source_version = optional(string)
    connection_arn = optional(string)
  })

  validation {
    condition     = contains(["S3", "CODECOMMIT", "GITHUB"], var.recovery_source.type)
    error_message = "recovery_source.type must be S3, CODECOMMIT or GITHUB."
  }
}

variable "recovery_state" {
  description = "S3 backend of the recovered configuration's Terraform state: bucket, key, and the KMS key ARN that encrypts the state objects (null if SSE-S3). The configuration must declare `backend \"s3\" {}`; the builds pass these values with -backend-config and lock with S3 lock files (use_lockfile, Terraform >= 1.10)."
  type = object({
    bucket      = string
    key         = string
    kms_key_arn = optional(string)
  })
}

variable "recovery_scope" {
  description = <<-EOT
    What the CodeBuild role may change: only resources under recovery.
    tag_key/tag_value: EC2 instances and RDS instances/clusters must carry this tag (aws:ResourceTag; new
    instances must be created with it, aws:RequestTag).
    ssm_parameter_paths: parameter name prefixes such as "/prod/" (name-scoped).
    lambda_function_prefixes, dynamodb_table_prefixes, s3_bucket_prefixes: name prefixes (name-scoped).
    pass_role_arns: IAM roles the recovered resources run with (instance profiles' roles, Lambda execution
    roles) that the build may pass; empty passes none.
    kms_key_arns: customer managed keys of the recovered resources (SecureString parameters, encrypted
    volumes, tables, databases) that the build may use, and re-enable or cancel the deletion of (the
    kms_key recovery).
    cloudtrail_trail_names: trails the build may re-create or restart logging of.
    guardduty_detector_ids: detectors the build may re-enable (a deleted detector is not re-created:
    guardduty:CreateDetector cannot be scoped to a resource).
    config_recorders: restart and re-create AWS Config recorders (these Config actions have no resource
    type, so this grants them on "*").
    vpc_flow_logs: re-create VPC flow logs (the new flow log must carry the recovery tag).
    An empty list grants nothing for that resource type. Recovery restores and never destroys: the role
    has no delete or terminate permission, so a plan that would replace a resource fails instead.
  EOT
  type = object({
    tag_key                  = optional(string, "aiops:recoverable")
    tag_value                = optional(string, "true")
    ec2_instances            = optional(bool, false)
    rds                      = optional(bool, false)
    ssm_parameter_paths      = optional(list(string), [])
    lambda_function_prefixes = optional(list(string), [])
    dynamodb_table_prefixes  = optional(list(string), [])
    s3_bucket_prefixes       = optional(list(string), [])
    pass_role_arns           = optional(list(string), [])
    kms_key_arns             = optional(list(string), [])
    cloudtrail_trail_names   = optional(list(string), [])
    guardduty_detector_ids   = optional(list(string), [])
    config_recorders         = optional(bool, false)
    vpc_flow_logs            = optional(bool, false)
  })

  validation {
    condition = alltrue([
      for p in concat(var.recovery_scope.lambda_function_prefixes, var.recovery_scope.dynamodb_table_prefixes, var.recovery_scope.s3_bucket_prefixes) :
      length(p) >= 3 && !strcontains(p, "*")
    ])
    error_message = "recovery_scope name prefixes must be at least 3 characters and contain no '*'."
  }

  validation {
    condition     = alltrue([for p in var.recovery_scope.ssm_parameter_paths : startswith(p, "/") && length(p) >= 2 && !strcontains(p, "*")])
    error_message = "recovery_scope.ssm_parameter_paths must start with '/', be longer than '/', and contain no '*'."
  }
}

variable "terraform_version" {
  description = "Terraform version the CodeBuild projects install (>= 1.10 for S3 lock files)."
  type        = string
  default     = "1.11.4"
}

variable "terraform_sha256" {
  description = "SHA-256 of terraform_<version>_linux_amd64.zip from releases.hashicorp.com (the SHA256SUMS file of that release); the build refuses a download that does not match."
  type        = string

  validation {
    condition     = can(regex("^[0-9a-f]{64}$", var.terraform_sha256))
    error_message = "terraform_sha256 must be 64 lower-case hex digits."
  }
}

variable "codebuild_timeout_minutes" {
  description = "Build timeout of the apply and verify projects, in minutes."
  type        = number
  default     = 30
}

# --- alarms -------------------------------------------------------------------------------------

variable "iterator_age_alarm_ms" {
  description = "Alarm when a stream's GetRecords.IteratorAgeMilliseconds (maximum over 1 minute) stays above this many milliseconds for 5 minutes: the consuming stage is falling behind."
  type        = number
  default     = 60000
}
