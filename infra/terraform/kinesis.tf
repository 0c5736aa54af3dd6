# The three streams between the stages (DESIGN section 1): raw (sources -> ingest), events
# (ingest -> detect, partition key = series/resource key) and decisions (detect -> act).
# Provisioned mode: shards are the unit of parallelism and of cost; counts are variables.

locals {
  shard_counts = {
    raw       = var.raw_shard_count
    events    = var.events_shard_count
    decisions = var.decisions_shard_count
  }
}

# The single deployment profile has the raw stream only: its one process joins the stages in memory.
locals {
  active_stream_names = local.single ? { raw = local.stream_names.raw } : local.stream_names
}

resource "aws_kinesis_stream" "this" {
  for_each = local.active_stream_names

  name             = each.value
  shard_count      = local.shard_counts[each.key]
  retention_period = var.stream_retention_hours
  encryption_type  = "KMS"
  kms_key_id       = aws_kms_key.main.arn

  stream_mode_details {
    stream_mode = "PROVISIONED"
  }

  # Shard-level metrics are not enabled: the stream-level GetRecords.IteratorAgeMilliseconds that the
  # alarms use is a basic (free) metric.
  shard_level_metrics = []
}
