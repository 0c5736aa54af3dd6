"""aws mode end to end, driven by clients no one here wrote: boto3 puts CloudTrail events in
their EventBridge envelope into the raw stream, and CloudWatch Logs events arrive through a
real subscription filter (moto delivers them to Kinesis as gzip records). The three stages run
as separate `aiops` processes. Then: an incident per destructive change is in the DynamoDB
incidents table, the log-error burst is a finding on the decisions stream, and pyarrow reading
the Parquet objects from S3 counts exactly one row per distinct input event."""
import json
import subprocess
import time
import uuid

from aws_support import (
    client,
    moto_endpoint,
    parquet_tables,
    list_keys,
    read_stream,
    run_setup,
    stage_env,
    start_stage,
    stop_stage,
    emf_totals,
    unique_names,
    wait_for,
    write_config,
)

ACCOUNT = "111122223333"
CHANGE_TYPES = {"ec2_instance", "lambda_function", "ssm_parameter"}


def envelope(event_name, source, detail_extra, event_id, when="2024-05-01T12:00:00Z", principal=None):
    identity = principal or {
        "type": "IAMUser",
        "principalId": "AIDAEXAMPLE",
        "arn": f"arn:aws:iam::{ACCOUNT}:user/alice",
        "accountId": ACCOUNT,
        "userName": "alice",
    }
    detail = {
        "eventVersion": "1.09",
        "userIdentity": identity,
        "eventTime": when,
        "eventSource": f"{source}.amazonaws.com",
        "eventName": event_name,
        "awsRegion": "us-east-1",
        "sourceIPAddress": "203.0.113.7",
        "userAgent": "aws-cli/2.15.0",
        "requestID": str(uuid.uuid4()),
        "eventID": event_id,
        "eventType": "AwsApiCall",
        "managementEvent": True,
        "recipientAccountId": ACCOUNT,
    }
    detail.update(detail_extra)
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "AWS API Call via CloudTrail",
        "source": f"aws.{source}",
        "account": ACCOUNT,
        "time": when,
        "region": "us-east-1",
        "resources": [],
        "detail": detail,
    }


def cloudtrail_events():
    """Three destructive changes, and three calls that are not incidents."""
    return [
        envelope("DeleteParameter", "ssm",
                 {"requestParameters": {"name": "/prod/payments/db-password"}, "responseElements": None,
                  "readOnly": False}, "ct-0001"),
        envelope("TerminateInstances", "ec2",
                 {"requestParameters": {"instancesSet": {"items": [{"instanceId": "i-0abc1234def567890"}]}},
                  "responseElements": None, "readOnly": False}, "ct-0002"),
        envelope("DeleteFunction", "lambda",
                 {"requestParameters": {"functionName": "payments-api"}, "responseElements": None,
                  "readOnly": False}, "ct-0003"),
        # Failed call: changed nothing.
        envelope("DeleteTable", "dynamodb",
                 {"requestParameters": {"tableName": "orders"}, "errorCode": "AccessDenied",
                  "errorMessage": "not authorized", "readOnly": False}, "ct-0004"),
        # Read-only.
        envelope("DescribeInstances", "ec2", {"requestParameters": None, "readOnly": True}, "ct-0005"),
        # An AWS service acting on the customer's behalf.
        envelope("TerminateInstances", "ec2",
                 {"requestParameters": {"instancesSet": {"items": [{"instanceId": "i-0autoscaled00000"}]}},
                  "readOnly": False}, "ct-0006",
                 principal={"type": "AWSService", "invokedBy": "autoscaling.amazonaws.com"}),
    ]


def log_events(start_ms):
    """Two ERROR lines a minute for 120 minutes, a burst of 60 in minute 120, then 5 quiet
    minutes that move the watermark past the burst's window."""
    out = []
    minute = 60_000
    for m in range(120):
        for k in range(2):
            out.append({"timestamp": start_ms + m * minute + k * 25_000, "message": "ERROR db timeout 42"})
    for k in range(60):
        out.append({"timestamp": start_ms + 120 * minute + k * 1000, "message": f"ERROR db timeout {k}"})
    for m in range(121, 126):
        for k in range(2):
            out.append({"timestamp": start_ms + m * minute + k * 25_000, "message": "ERROR db timeout 42"})
    return out


def test_three_stage_processes_end_to_end(tmp_path, aiops_bin):
    endpoint = moto_endpoint()
    names = unique_names()
    config = write_config(tmp_path / "pipeline.toml", endpoint, names)
    env = stage_env(endpoint)
    actions = run_setup(aiops_bin, config, env)
    assert {(a["kind"], a["name"]) for a in actions} >= {
        ("stream", names["raw"]), ("stream", names["events"]), ("stream", names["decisions"]),
        ("table", names["leases"]), ("bucket", names["bucket"]), ("table", names["incidents"]),
    }
    kinesis = client("kinesis", endpoint)
    logs = client("logs", endpoint)
    s3 = client("s3", endpoint)
    ddb = client("dynamodb", endpoint)

    # CloudTrail via EventBridge: one record each, one delivered twice (at-least-once), and
    # one record that is not decodable.
    events = cloudtrail_events()
    for e in events:
        kinesis.put_record(StreamName=names["raw"], Data=json.dumps(e).encode(), PartitionKey=e["id"])
    kinesis.put_record(StreamName=names["raw"], Data=json.dumps(events[0]).encode(),
                       PartitionKey=events[0]["id"])
    kinesis.put_record(StreamName=names["raw"], Data=b"\x00not json at all", PartitionKey="junk")

    # CloudWatch Logs through a subscription filter to the raw stream.
    group = f"/aws/lambda/payments-{names['prefix']}"
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName="2024/05/01/[$LATEST]abc")
    stream_arn = kinesis.describe_stream_summary(StreamName=names["raw"])["StreamDescriptionSummary"]["StreamARN"]
    logs.put_subscription_filter(
        logGroupName=group, filterName="to-aiops", filterPattern="",
        destinationArn=stream_arn, roleArn=f"arn:aws:iam::{ACCOUNT}:role/cwl-to-kinesis",
    )
    start_ms = (int(time.time()) // 60 - 180) * 60_000
    lines = log_events(start_ms)
    logs.put_log_events(logGroupName=group, logStreamName="2024/05/01/[$LATEST]abc", logEvents=lines)

    started = time.monotonic()
    procs = {
        stage: start_stage(aiops_bin, stage, config, env, f"e2e-{stage}", tmp_path / f"{stage}.log")
        for stage in ("ingest", "detect", "act")
    }
    try:
        def incidents():
            items = ddb.scan(TableName=names["incidents"])["Items"]
            change = [i for i in items if i.get("resource_type", {}).get("S") in CHANGE_TYPES]
            done = all(i["workflow_state"]["S"] == "RESOLVED" for i in change)
            return change if len(change) >= 3 and done else None

        items = wait_for("three change incidents in DynamoDB", incidents, timeout=90)

        def burst_finding():
            found = []
            for r in read_stream(kinesis, names["decisions"]):
                f = json.loads(r["Data"])
                if f["detector"] == "log_level_rate" and f["evidence"].get("series_key") == f"log_level:{group}:ERROR":
                    found.append(f)
            return found

        burst = wait_for("the log-error burst finding on the decisions stream", burst_finding, timeout=60)

        def archived():
            tables = parquet_tables(s3, names["bucket"], names["prefix"] + "/raw/")
            rows = sum(t.num_rows for _, t in tables)
            return tables if rows >= len(events) + len(lines) else None

        tables = wait_for("every event archived in S3", archived, timeout=60)
        keys = [k for k, _ in tables]
        elapsed = time.monotonic() - started
    finally:
        summaries = {stage: stop_stage(p) for stage, p in procs.items()}
    emf = {stage: p.emf for stage, p in procs.items()}

    # Incidents: one per destructive change, none for the failed, read-only or service calls.
    change = sorted((i["resource_type"]["S"], i["resource_id"]["S"]) for i in items)
    assert change == [
        ("ec2_instance", "i-0abc1234def567890"),
        ("lambda_function", "payments-api"),
        ("ssm_parameter", "/prod/payments/db-password"),
    ]
    assert all(i["workflow_state"]["S"] == "RESOLVED" for i in items)
    incidents_all = ddb.scan(TableName=names["incidents"])["Items"]
    # Nothing for the failed call, the read-only call or the autoscaling termination.
    assert not [i for i in incidents_all if i.get("resource_id", {}).get("S") in ("orders", "i-0autoscaled00000")]

    # The burst: 60 ERROR lines in one minute against a learned 2 per minute.
    assert len(burst) == 1, burst
    assert burst[0]["evidence"]["observed"] == 60.0
    assert burst[0]["evidence"]["window"] == [start_ms * 1000 + 120 * 60_000_000, start_ms * 1000 + 121 * 60_000_000]

    # S3: exactly one row per distinct input event (the duplicate delivery removed), in the
    # DESIGN §7 layout; the undecodable record is a dead letter.
    import pyarrow as pa

    table = pa.concat_tables([t for _, t in tables])
    ids = table.column("event_id").to_pylist()
    assert len(ids) == len(events) + len(lines)
    assert len(set(ids)) == len(ids)
    assert set(ids) >= {e["detail"]["eventID"] for e in events}
    assert all(k.split("/")[2].startswith("source=") and k.split("/")[3].startswith("dt=")
               and k.split("/")[4].startswith("hour=") for k in keys)
    assert {k.split("/")[2] for k in keys} == {"source=cloudtrail", "source=logs"}
    dead = [k for k in list_keys(s3, names["bucket"], names["prefix"] + "/dead_letters/")]
    assert len(dead) == 1
    body = s3.get_object(Bucket=names["bucket"], Key=dead[0])["Body"].read().decode()
    assert len(body.splitlines()) == 1
    assert json.loads(body)["stream"] == names["raw"]

    # Clean stops: summaries printed, every lease handed back.
    ingest = summaries["ingest"][0]
    assert ingest["stage"] == "ingest"
    assert ingest["counters"]["duplicates"] == 1
    assert ingest["counters"]["dead_letters"] == 1
    assert summaries["act"][0]["counters"]["incidents"] >= 4

    # Recent changes (DESIGN §6): ingest records every successful mutating CloudTrail call in
    # the DynamoDB index the act workers read related changes from; failed and read-only
    # calls are not changes.
    assert ingest["counters"]["change_index_errors"] == 0
    recorded = {json.loads(i["body"]["S"])["event_id"]
                for i in ddb.scan(TableName="aiops-changes")["Items"]}
    assert {"ct-0001", "ct-0002", "ct-0003"} <= recorded, recorded
    assert not {"ct-0004", "ct-0005"} & recorded
    leases = ddb.scan(TableName=names["leases"])["Items"]
    assert len(leases) == 2 + 2 + 1
    assert all("leaseOwner" not in lease for lease in leases)

    # Metrics (EMF lines on each stage's stdout, the final flush at the stop at least): the
    # stage series carry the same counts as the stage's summary.
    for stage in ("ingest", "detect", "act"):
        counters = summaries[stage][0]["counters"]
        totals = emf_totals(emf[stage])
        assert emf[stage] and all(line["Stage"] == stage for line in emf[stage])
        assert all(line["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "aiops" for line in emf[stage])
        assert totals["RecordsIn"] == counters["records"], (stage, totals, counters)
        assert totals["EventsIn"] == counters["events"], (stage, totals, counters)
        assert totals["DeadLetters"] == counters["dead_letters"] + counters["bad_records"]
        assert totals["Duplicates"] == counters["duplicates"]
        assert totals["Findings"] == counters["findings"]
        assert totals["Incidents"] == counters["incidents"]
        assert totals["BatchLatency"] >= 1
        assert "MillisBehindLatest" in totals
    ingest_totals = emf_totals(emf["ingest"])
    assert ingest_totals["DeadLetters"] == 1 and ingest_totals["Duplicates"] == 1
    assert emf_totals(emf["act"])["Incidents"] >= 4
    assert emf_totals(emf["detect"])["Findings"] >= 1
    # Per shard (flushed every second while the shard is read): the lag and checkpoint age of
    # each raw-stream shard ingest read.
    raw_shards = {sh["ShardId"] for sh in kinesis.list_shards(StreamName=names["raw"])["Shards"]}
    shard_lines = [line for line in emf["ingest"] if "ShardId" in line]
    assert {line["ShardId"] for line in shard_lines if "MillisBehindLatest" in line} == raw_shards
    assert {line["ShardId"] for line in shard_lines if "CheckpointAge" in line} == raw_shards
    print(f"end to end: {len(ids)} rows in {len(keys)} objects, {len(incidents_all)} incidents, {elapsed:.1f} s")


def test_suppressions_live_in_dynamodb_in_aws_mode(tmp_path, aiops_bin):
    """`aiops suppress add|list|remove` with an aws-mode configuration use the DynamoDB store
    the act workers read (DESIGN §6: suppressions are stored with the incidents)."""
    endpoint = moto_endpoint()
    names = unique_names()
    config = write_config(tmp_path / "pipeline.toml", endpoint, names)
    env = stage_env(endpoint)
    run_setup(aiops_bin, config, env)

    def aiops(*args):
        out = subprocess.run([aiops_bin, *args, "--config", str(config)], env=env,
                             capture_output=True, text=True, timeout=60)
        return out.returncode, out.stdout

    series = f"log_level:/ecs/payments-{names['prefix']}:ERROR"
    code, out = aiops("suppress", "add", series, "--for", "2h", "--reason", "load test")
    assert code == 0, out
    assert out.startswith("SUPPRESSION sup-series-") and "| load test" in out
    code, out = aiops("suppress", "list", "--json")
    mine = [json.loads(line) for line in out.splitlines() if json.loads(line)["value"] == series]
    assert code == 0 and len(mine) == 1
    assert mine[0]["kind"] == "series" and mine[0]["active"] is True
    assert mine[0]["reason"] == "load test" and mine[0]["expires_at"] is not None
    code, out = aiops("suppress", "remove", mine[0]["suppression_id"])
    assert (code, out.strip()) == (0, f"removed {mine[0]['suppression_id']}")
    code, out = aiops("suppress", "list", "--json")
    assert series not in out


def test_a_suppressed_series_opens_no_incident_in_aws_mode(tmp_path, aiops_bin):
    """The act workers read the suppressions of the DynamoDB store: the log-error burst of a
    suppressed series reaches act, is counted as suppressed, and opens no incident."""
    endpoint = moto_endpoint()
    names = unique_names()
    config = write_config(tmp_path / "pipeline.toml", endpoint, names)
    env = stage_env(endpoint)
    run_setup(aiops_bin, config, env)
    kinesis = client("kinesis", endpoint)
    logs = client("logs", endpoint)
    ddb = client("dynamodb", endpoint)
    group = f"/aws/lambda/payments-{names['prefix']}"
    out = subprocess.run([aiops_bin, "suppress", "add", f"log_level:{group}:ERROR", "--config",
                          str(config)], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr

    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName="s")
    stream_arn = kinesis.describe_stream_summary(StreamName=names["raw"])["StreamDescriptionSummary"]["StreamARN"]
    logs.put_subscription_filter(
        logGroupName=group, filterName="to-aiops", filterPattern="",
        destinationArn=stream_arn, roleArn=f"arn:aws:iam::{ACCOUNT}:role/cwl-to-kinesis",
    )
    start_ms = (int(time.time()) // 60 - 180) * 60_000
    logs.put_log_events(logGroupName=group, logStreamName="s", logEvents=log_events(start_ms))
    procs = {
        stage: start_stage(aiops_bin, stage, config, env, f"sup-{stage}", tmp_path / f"{stage}.log")
        for stage in ("ingest", "detect", "act")
    }
    try:
        wait_for("the burst finding suppressed by act",
                 lambda: "finding suppressed" in (tmp_path / "act.log").read_text(errors="replace"),
                 timeout=90)
    finally:
        summaries = {stage: stop_stage(p) for stage, p in procs.items()}
    act = summaries["act"][0]["counters"]
    assert act["suppressed_findings"] >= 1, act
    assert act["incidents"] == 0, act
    items = ddb.scan(TableName=names["incidents"])["Items"]
    assert not [i for i in items if i.get("resource_id", {}).get("S") == group]
