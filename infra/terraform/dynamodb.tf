# DynamoDB tables (DESIGN sections 1 and 6). On-demand capacity, point-in-time recovery, encryption with
# the deployment's key, deletion protection.
#
# - incidents: one item per incident (key incident_id); GSI by_resource (resource_key + created_at) for
#   an incident history of a resource, GSI by_state (workflow_state + created_at) for open work; TTL
#   attribute `ttl` (seconds since the Unix epoch).
# - locks: cooldown locks, one item per resource key, taken with a conditional write (absent or
#   expired). A table of their own rather than items in `incidents`: the lock key space (resource_key)
#   cannot collide with incident ids, lock items do not need the incident attributes, locks expire
#   through their own TTL attribute `ttl`, and the table's metrics show lock contention alone.
# - leases: one lease per stream shard and consuming stage (owner, counter, checkpoint, parents), as
#   the Kinesis Client Library keeps them; hash key `leaseKey` (S), the KCL's attribute name, which
#   aws/src/lease.rs reads and writes.
# - patterns: the act stage's outcome counters per resource type (item `act/outcomes/<type>`, key
#   pattern_key; act/src/dynamo/mod.rs), which the explainer weighs in its decision.
#   The locks table also holds the incident groups (`group#...`), suppressions (`suppression#...`) and
#   "not an incident" feedback (`feedback#...`) under the same key.
# - changes: the recent-changes index (act/src/dynamo/changes.rs): every successful mutating CloudTrail
#   call ingest sees, read by act when an incident opens or grows ("what changed"). Partition key
#   `bucket` (S, the 5-minute event-time bucket), sort key `sort_key` (S, `<event time>#<event id>`),
#   TTL `ttl` (event time or now, plus `[act.changes] retention_secs`).

resource "aws_dynamodb_table" "incidents" {
  name                        = local.table_names.incidents
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "incident_id"
  deletion_protection_enabled = var.deletion_protection

  attribute {
    name = "incident_id"
    type = "S"
  }
  attribute {
    name = "resource_key"
    type = "S"
  }
  attribute {
    name = "workflow_state"
    type = "S"
  }
  # created_at: microseconds since the Unix epoch, UTC (the code's timestamp unit).
  attribute {
    name = "created_at"
    type = "N"
  }

  global_secondary_index {
    name            = "by_resource"
    hash_key        = "resource_key"
    range_key       = "created_at"
    projection_type = "ALL"
  }

  global_secondary_index {
    name            = "by_state"
    hash_key        = "workflow_state"
    range_key       = "created_at"
    projection_type = "ALL"
  }

  ttl {
    attribute_name = "ttl"
    enabled        = true
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = aws_kms_key.main.arn
  }
}

resource "aws_dynamodb_table" "locks" {
  name                        = local.table_names.locks
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "resource_key"
  deletion_protection_enabled = var.deletion_protection

  attribute {
    name = "resource_key"
    type = "S"
  }

  # Expired locks are removed by DynamoDB within days; the conditional write treats an expired lock as
  # absent, so correctness never waits for TTL deletion.
  ttl {
    attribute_name = "ttl"
    enabled        = true
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = aws_kms_key.main.arn
  }
}

resource "aws_dynamodb_table" "leases" {
  name                        = local.table_names.leases
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "leaseKey"
  deletion_protection_enabled = var.deletion_protection

  attribute {
    name = "leaseKey"
    type = "S"
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = aws_kms_key.main.arn
  }
}

resource "aws_dynamodb_table" "patterns" {
  name                        = local.table_names.patterns
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "pattern_key"
  deletion_protection_enabled = var.deletion_protection

  attribute {
    name = "pattern_key"
    type = "S"
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = aws_kms_key.main.arn
  }
}

resource "aws_dynamodb_table" "changes" {
  name                        = local.table_names.changes
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "bucket"
  range_key                   = "sort_key"
  deletion_protection_enabled = var.deletion_protection

  attribute {
    name = "bucket"
    type = "S"
  }
  attribute {
    name = "sort_key"
    type = "S"
  }

  # Changes are kept for `[act.changes] retention_secs` (2 h by default); DynamoDB deletes expired
  # items within days, and every read filters on its own time window, so correctness never waits for it.
  ttl {
    attribute_name = "ttl"
    enabled        = true
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = aws_kms_key.main.arn
  }
}
