"""The single deployment profile end to end (`[aws] deployment_profile = "single"`): the same input
as test_aws_e2e.py's three-stage test — CloudTrail events in their EventBridge envelope put into the
raw stream by boto3, CloudWatch Logs lines through a real subscription filter — read by ONE
`aiops run` process that joins ingest, detect and act in memory. No events or decisions stream
exists; the results are the three-stage profile's: one incident per destructive change in DynamoDB,
the log-error burst as one finding (in the findings table on S3 and as an incident), one Parquet row
per distinct input event, the undecodable record a dead letter, every lease handed back."""
import json
import time

import pyarrow as pa

from aws_support import (
    client,
    emf_totals,
    list_keys,
    moto_endpoint,
    parquet_tables,
    run_setup,
    stage_env,
    start_stage,
    stop_stage,
    unique_names,
    wait_for,
    write_config,
)
from test_aws_e2e import ACCOUNT, CHANGE_TYPES, cloudtrail_events, log_events


def test_single_profile_runs_the_three_stages_in_one_process(tmp_path, aiops_bin):
    endpoint = moto_endpoint()
    names = unique_names()
    config = write_config(tmp_path / "pipeline.toml", endpoint, names, profile="single")
    env = stage_env(endpoint)
    actions = run_setup(aiops_bin, config, env)
    streams = {a["name"] for a in actions if a["kind"] == "stream"}
    assert streams == {names["raw"]}, actions
    kinesis = client("kinesis", endpoint)
    logs = client("logs", endpoint)
    s3 = client("s3", endpoint)
    ddb = client("dynamodb", endpoint)

    def stream_exists(name):
        try:
            kinesis.describe_stream_summary(StreamName=name)
            return True
        except kinesis.exceptions.ResourceNotFoundException:
            return False

    assert [stream_exists(names[k]) for k in ("raw", "events", "decisions")] == [True, False, False]

    # One stage alone is refused under the single profile (its streams do not exist).
    refused = start_stage(aiops_bin, "detect", config, env, "single-detect", tmp_path / "detect.log")
    refused.wait(timeout=60)
    assert refused.returncode != 0
    assert "deployment_profile" in (tmp_path / "detect.log").read_text()

    events = cloudtrail_events()
    for e in events:
        kinesis.put_record(StreamName=names["raw"], Data=json.dumps(e).encode(), PartitionKey=e["id"])
    kinesis.put_record(StreamName=names["raw"], Data=json.dumps(events[0]).encode(),
                       PartitionKey=events[0]["id"])
    kinesis.put_record(StreamName=names["raw"], Data=b"\x00not json at all", PartitionKey="junk")

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

    proc = start_stage(aiops_bin, "run", config, env, "single-all", tmp_path / "run.log")
    try:
        def incidents():
            items = ddb.scan(TableName=names["incidents"])["Items"]
            change = [i for i in items if i.get("resource_type", {}).get("S") in CHANGE_TYPES]
            burst = [i for i in items if i.get("resource_id", {}).get("S") == group]
            done = all(i["workflow_state"]["S"] == "RESOLVED" for i in change)
            return (change, burst) if len(change) >= 3 and burst and done else None

        change, burst_incidents = wait_for("three change incidents and the burst in DynamoDB", incidents, timeout=90)

        def archived():
            tables = parquet_tables(s3, names["bucket"], names["prefix"] + "/raw/")
            return tables if sum(t.num_rows for _, t in tables) >= len(events) + len(lines) else None

        tables = wait_for("every event archived in S3", archived, timeout=60)

        def findings_table():
            found = parquet_tables(s3, names["bucket"], names["prefix"] + "/findings/")
            return found or None

        findings = wait_for("the findings table in S3", findings_table, timeout=60)
    finally:
        summaries = stop_stage(proc)
    emf = proc.emf

    assert sorted((i["resource_type"]["S"], i["resource_id"]["S"]) for i in change) == [
        ("ec2_instance", "i-0abc1234def567890"),
        ("lambda_function", "payments-api"),
        ("ssm_parameter", "/prod/payments/db-password"),
    ]
    assert len(burst_incidents) == 1
    incidents_all = ddb.scan(TableName=names["incidents"])["Items"]
    assert not [i for i in incidents_all if i.get("resource_id", {}).get("S") in ("orders", "i-0autoscaled00000")]

    # The burst: one finding, 60 ERROR lines against about 2 a minute, in the findings table.
    rows = pa.concat_tables([t for _, t in findings]).to_pylist()
    burst = [r for r in rows if r["detector"] == "log_level_rate" and r["series_key"] == f"log_level:{group}:ERROR"]
    assert len(burst) == 1, burst
    assert burst[0]["observed"] == 60.0

    table = pa.concat_tables([t for _, t in tables])
    ids = table.column("event_id").to_pylist()
    assert len(ids) == len(events) + len(lines)
    assert len(set(ids)) == len(ids)
    dead = list_keys(s3, names["bucket"], names["prefix"] + "/dead_letters/")
    assert len(dead) == 1

    # One summary, stage `all`, its input the raw stream; nothing forwarded to a stream.
    (summary,) = summaries
    assert summary["stage"] == "all"
    counters = summary["counters"]
    assert counters["duplicates"] == 1
    assert counters["dead_letters"] == 1
    assert counters["forwarded"] == 0
    assert counters["incidents"] >= 4
    assert counters["findings"] >= 4
    totals = emf_totals(emf)
    assert emf and all(line["Stage"] == "all" for line in emf)
    assert totals["RecordsIn"] == counters["records"]
    assert totals["DeadLetters"] == 1 and totals["Duplicates"] == 1
    assert totals["Incidents"] == counters["incidents"]

    # Leases: one per raw shard, stage `all`, all handed back.
    leases = ddb.scan(TableName=names["leases"])["Items"]
    assert len(leases) == 2
    assert all("leaseOwner" not in lease for lease in leases)
