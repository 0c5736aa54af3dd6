"""Helpers of the aws-mode tests (test_aws_*.py): boto3 clients on the moto server that
./scripts/test starts (AIOPS_MOTO_ENDPOINT), aiops configurations with unique resource names,
and stage processes started and stopped by PID."""
import json
import os
import signal
import subprocess
import time
import uuid

import boto3
import pytest

REGION = "us-east-1"


def moto_endpoint():
    """The moto endpoint; skips the test without one, except under CI (CI=true), where a
    missing emulator fails the test so a broken emulator start never turns into a green run."""
    endpoint = os.environ.get("AIOPS_MOTO_ENDPOINT")
    if not endpoint:
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail("AIOPS_MOTO_ENDPOINT is not set under CI=true: the emulator did not start")
        pytest.skip("AIOPS_MOTO_ENDPOINT is not set (./scripts/test starts moto and sets it)")
    if not (endpoint.startswith("http://127.0.0.1:") or endpoint.startswith("http://localhost:")):
        pytest.fail(f"AIOPS_MOTO_ENDPOINT={endpoint} is not a loopback URL")
    return endpoint


def client(service, endpoint):
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def stage_env(endpoint):
    env = dict(os.environ)
    env.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_REGION=REGION,
        AWS_EC2_METADATA_DISABLED="true",
        AWS_ENDPOINT_URL=endpoint,
    )
    env.pop("AWS_PROFILE", None)
    env.pop("AIOPS_WORKER_ID", None)
    return env


def unique_names():
    tag = uuid.uuid4().hex[:10]
    return {
        "raw": f"raw-{tag}",
        "events": f"events-{tag}",
        "decisions": f"decisions-{tag}",
        "leases": f"leases-{tag}",
        "incidents": f"incidents-{tag}",
        "locks": f"locks-{tag}",
        "patterns": f"patterns-{tag}",
        "bucket": f"aiops-{tag}",
        "prefix": f"history-{tag}",
    }


def write_config(path, endpoint, names, raw_shards=2, events_shards=2, extra=""):
    """An aws-mode pipeline.toml with short timings so tests finish quickly."""
    path.write_text(
        f"""mode = "aws"
data_dir = "{path.parent / 'data'}"

[aws]
region = "{REGION}"
endpoint_url = "{endpoint}"
raw_stream = "{names['raw']}"
events_stream = "{names['events']}"
decisions_stream = "{names['decisions']}"
raw_shards = {raw_shards}
events_shards = {events_shards}
decisions_shards = 1
leases_table = "{names['leases']}"
incidents_table = "{names['incidents']}"
locks_table = "{names['locks']}"
patterns_table = "{names['patterns']}"
history_bucket = "{names['bucket']}"
history_prefix = "{names['prefix']}"
checkpoint_interval_ms = 500
metrics_interval_secs = 1

[aws.consumer]
idle_sleep_ms = 200
parent_poll_ms = 500

[aws.leases]
failover_ms = 3000
renew_interval_ms = 1000
take_interval_ms = 500
shard_sync_interval_ms = 5000

[archive]
max_file_age_secs = 2
max_rows_per_file = 2000
{extra}
"""
    )
    return path


def run_setup(aiops_bin, config, env):
    out = subprocess.run(
        [aiops_bin, "setup", "--config", str(config), "--json"],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()]


def start_stage(aiops_bin, stage, config, env, worker_id, log_path):
    log = open(log_path, "ab")
    return subprocess.Popen(
        [aiops_bin, "--log-level", "info", stage, "--config", str(config),
         "--worker-id", worker_id, "--json"],
        env=env, stdout=subprocess.PIPE, stderr=log,
    )


def stop_stage(proc, timeout=60):
    """SIGTERM, then the JSON summary lines it printed; asserts a clean exit. The stage's
    metrics (CloudWatch Embedded Metric Format lines, the objects with an `_aws` member) are
    kept apart, in `proc.emf`."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"stage exited with {proc.returncode}"
    lines = [json.loads(line) for line in out.decode().splitlines() if line.strip()]
    proc.emf = [line for line in lines if "_aws" in line]
    return [line for line in lines if "_aws" not in line]


def emf_totals(emf_lines, dims=("Stage",)):
    """Sums each metric over the EMF lines whose dimension set is `dims` (a distribution: its
    sample count), after checking every line against the EMF specification's shape: every
    declared metric present at the root, every dimension a string at the root."""
    totals = {}
    for line in emf_lines:
        meta = line["_aws"]
        assert isinstance(meta["Timestamp"], int)
        (directive,) = meta["CloudWatchMetrics"]
        (dim_set,) = directive["Dimensions"]
        for d in dim_set:
            assert isinstance(line[d], str), line
        for m in directive["Metrics"]:
            assert m["Name"] in line, line
        if tuple(dim_set) != tuple(dims):
            continue
        for m in directive["Metrics"]:
            v = line[m["Name"]]
            totals[m["Name"]] = totals.get(m["Name"], 0) + (len(v) if isinstance(v, list) else v)
    return totals


def wait_for(what, predicate, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def read_stream(kinesis, stream):
    """Every record of every shard of a stream (boto3 GetRecords from TRIM_HORIZON)."""
    out = []
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        it = kinesis.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while it:
            page = kinesis.get_records(ShardIterator=it, Limit=10000)
            out.extend(page["Records"])
            if not page["Records"]:
                break
            it = page.get("NextShardIterator")
    return out


def parquet_tables(s3, bucket, prefix):
    """Every Parquet object under prefix, read with pyarrow."""
    import io

    import pyarrow.parquet as pq

    tables = []
    for key in list_keys(s3, bucket, prefix):
        if key.endswith(".parquet"):
            body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            tables.append((key, pq.read_table(io.BytesIO(body))))
    return tables


def list_keys(s3, bucket, prefix):
    keys = []
    token = None
    while True:
        kwargs = {"Bucket": bucket, "Prefix": prefix}
        if token:
            kwargs["ContinuationToken"] = token
        page = s3.list_objects_v2(**kwargs)
        keys.extend(o["Key"] for o in page.get("Contents", []))
        if not page.get("IsTruncated"):
            return keys
        token = page["NextContinuationToken"]
