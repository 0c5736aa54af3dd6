"""History on S3 for analysts and backtests, with clients aiops did not write.

The aws-mode pipeline (`aiops run` with mode = "aws": ingest, detect and act in one process, one
shard per stream) reads CloudTrail EventBridge envelopes and CloudWatch Logs subscription
payloads that boto3 puts into the raw stream of a moto server, and writes the `raw`, `findings`
and `incidents` tables to S3. Then:

- pyarrow's dataset API reads the partitioned `raw` table straight from S3 with Hive
  partitioning: one row per input event, the declared types, the partition values;
- DuckDB runs the five example queries of docs/athena.md, as written there, over the same files
  (downloaded: DuckDB's S3 extension would need a download of its own), and each result is
  checked against values this test computes from its own input;
- `aiops backtest --history s3://bucket/prefix` finds exactly the findings the live stages
  recorded in the `findings` table (act writes it, each finding with its verdict).
"""
import gzip
import io
import json
import pathlib
import re
import subprocess
import uuid
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone

import pytest

from aws_support import (
    client,
    list_keys,
    moto_endpoint,
    run_setup,
    stage_env,
    stop_stage,
    unique_names,
    wait_for,
    write_config,
)

ROOT = pathlib.Path(__file__).resolve().parents[2]
ACCOUNT = "111122223333"
T0 = datetime(2024, 5, 1, 10, 0, tzinfo=timezone.utc)
IP = "203.0.113.7"
DESTRUCTIVE = re.compile(r"^(Delete|Terminate|Stop|Disable)")


def iso(t):
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def micros(t):
    return (t - datetime(1970, 1, 1, tzinfo=timezone.utc)) // timedelta(microseconds=1)


def ct(event_id, t, source, name, params=None, error=None, read_only=False, ip=IP, role=None):
    identity = (
        {
            "type": "AssumedRole",
            "arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/{role}/s",
            "accountId": ACCOUNT,
            "sessionContext": {"sessionIssuer": {"type": "Role", "arn": f"arn:aws:iam::{ACCOUNT}:role/{role}"}},
        }
        if role
        else {"type": "IAMUser", "arn": f"arn:aws:iam::{ACCOUNT}:user/alice", "accountId": ACCOUNT, "userName": "alice"}
    )
    detail = {
        "eventVersion": "1.09", "userIdentity": identity, "eventTime": iso(t),
        "eventSource": f"{source}.amazonaws.com", "eventName": name, "awsRegion": "us-east-1",
        "sourceIPAddress": ip, "userAgent": "aws-cli/2.15.0", "requestID": str(uuid.uuid4()),
        "eventID": event_id, "eventType": "AwsApiCall", "readOnly": read_only,
        "requestParameters": params, "responseElements": None, "recipientAccountId": ACCOUNT,
    }
    if error:
        detail["errorCode"] = error
        detail["errorMessage"] = "denied"
    return {
        "kind": "ct", "t": t, "id": event_id, "name": name, "ip": ip, "error": error, "read_only": read_only,
        "principal": f"arn:aws:iam::{ACCOUNT}:role/{role}" if role else f"arn:aws:iam::{ACCOUNT}:user/alice",
        "body": {"version": "0", "id": str(uuid.uuid4()), "detail-type": "AWS API Call via CloudTrail",
                 "source": f"aws.{source}", "account": ACCOUNT, "time": iso(t), "region": "us-east-1",
                 "resources": [], "detail": detail},
    }


def log(group, t, message, n):
    return {"kind": "log", "t": t, "group": group, "message": message, "id": f"{group}-{n}"}


def build_input():
    """Two log groups over 2 h 10 min (an ERROR line every 3 minutes in one, and a burst of 60
    at 12:00), and CloudTrail calls: destructive, failed, read-only, from two IPs."""
    events = []
    n = 0
    for m in range(130):
        base = T0 + timedelta(minutes=m)
        if m % 3 == 0:
            n += 1
            events.append(log("/ecs/checkout", base + timedelta(seconds=10), f"ERROR db timeout after {30 + m % 7} ms", n))
        for k in range(3):
            n += 1
            events.append(log("/ecs/web", base + timedelta(seconds=5 + 15 * k), f"INFO GET /api/items/{m * 3 + k} 200", n))
        if m == 120:
            for k in range(60):
                n += 1
                events.append(log("/ecs/checkout", base + timedelta(seconds=k, milliseconds=500), f"ERROR payment {k} declined", n))
    twelve = T0 + timedelta(hours=2)
    events += [
        ct("ct-1", twelve + timedelta(minutes=3), "ssm", "DeleteParameter", {"name": "/prod/payments/db-password"}),
        ct("ct-2", twelve + timedelta(minutes=4), "ec2", "TerminateInstances",
           {"instancesSet": {"items": [{"instanceId": "i-0abc1234def567890"}]}}, role="deployer", ip="198.51.100.9"),
        ct("ct-3", twelve + timedelta(minutes=5), "dynamodb", "DeleteTable", {"tableName": "orders"}, error="AccessDenied"),
        ct("ct-4", twelve + timedelta(minutes=6), "ec2", "DescribeInstances", None, read_only=True),
        ct("ct-5", T0 + timedelta(minutes=30), "s3", "ListBuckets", None, read_only=True),
        ct("ct-6", twelve + timedelta(minutes=7), "lambda", "DeleteFunction20150331", {"functionName": "payments-api"}),
    ]
    events.sort(key=lambda e: (e["t"], e["id"]))
    return events


def records(events):
    """Kinesis records in event-time order: one per CloudTrail envelope, one gzip
    subscription payload per run of consecutive lines of one log group (at most 50)."""
    out = []
    run = []

    def flush():
        if run:
            payload = {"messageType": "DATA_MESSAGE", "owner": ACCOUNT, "logGroup": run[0]["group"],
                       "logStream": "task-1", "subscriptionFilters": ["aiops"],
                       "logEvents": [{"id": e["id"], "timestamp": micros(e["t"]) // 1000, "message": e["message"]} for e in run]}
            out.append(gzip.compress(json.dumps(payload).encode()))
            run.clear()

    for e in events:
        if e["kind"] == "log":
            if run and (run[0]["group"] != e["group"] or len(run) >= 50):
                flush()
            run.append(e)
        else:
            flush()
            out.append(json.dumps(e["body"]).encode())
    flush()
    return out


def s3_tables(s3, bucket, prefix, table):
    import pyarrow.parquet as pq

    out = []
    for key in list_keys(s3, bucket, f"{prefix}/{table}/"):
        if key.endswith(".parquet"):
            out.append((key, pq.read_table(io.BytesIO(s3.get_object(Bucket=bucket, Key=key)["Body"].read()))))
    return out


def athena_queries():
    text = (ROOT / "docs" / "athena.md").read_text()
    blocks = re.findall(r"```sql\n(.*?)```", text, re.S)
    queries = {}
    for b in blocks:
        m = re.match(r"-- query: (\w+)\n", b)
        if m:
            queries[m.group(1)] = b
    return queries, blocks


def duckdb_dialect(sql):
    # The one difference documented in docs/athena.md: replace every match, as Athena does.
    return re.sub(r"regexp_replace\(([^()]*?), '([^']*)', '([^']*)'\)", r"regexp_replace(\1, '\2', '\3', 'g')", sql)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, aiops_bin):
    endpoint = moto_endpoint()
    tmp = tmp_path_factory.mktemp("history-s3")
    names = unique_names()
    config = write_config(tmp / "pipeline.toml", endpoint, names, raw_shards=1, events_shards=1)
    env = stage_env(endpoint)
    run_setup(aiops_bin, config, env)
    kinesis = client("kinesis", endpoint)
    s3 = client("s3", endpoint)
    events = build_input()
    recs = records(events)
    for i in range(0, len(recs), 100):
        batch = recs[i:i + 100]
        resp = kinesis.put_records(StreamName=names["raw"], Records=[{"Data": d, "PartitionKey": "p"} for d in batch])
        assert resp["FailedRecordCount"] == 0
    log = open(tmp / "run.log", "ab")
    proc = subprocess.Popen(
        [aiops_bin, "--log-level", "info", "run", "--config", str(config), "--worker-id", "history", "--json",
         "--baselines", "none"],
        env=env, stdout=subprocess.PIPE, stderr=log,
    )
    try:
        def done():
            raw = sum(t.num_rows for _, t in s3_tables(s3, names["bucket"], names["prefix"], "raw"))
            findings = s3_tables(s3, names["bucket"], names["prefix"], "findings")
            incidents = {r for _, t in s3_tables(s3, names["bucket"], names["prefix"], "incidents")
                         for r in t.column("incident_id").to_pylist()}
            kinds = {k for _, t in findings for k in t.column("kind").to_pylist()}
            return raw >= len(events) and "rate_anomaly" in kinds and len(incidents) >= 4
        wait_for("raw, findings and incidents tables on S3", done, timeout=120)
    finally:
        stop_stage(proc)
    return {"endpoint": endpoint, "names": names, "config": config, "env": env, "events": events, "tmp": tmp, "s3": s3}


def test_pyarrow_reads_the_partitioned_raw_table_from_s3(pipeline):
    import pyarrow as pa
    import pyarrow.dataset as ds
    import pyarrow.fs as pafs

    names, events = pipeline["names"], pipeline["events"]
    host = pipeline["endpoint"].split("://", 1)[1]
    fs = pafs.S3FileSystem(endpoint_override=host, scheme="http", access_key="testing",
                           secret_key="testing", region="us-east-1")
    dataset = ds.dataset(f"{names['bucket']}/{names['prefix']}/raw", filesystem=fs, format="parquet",
                         partitioning="hive")
    table = dataset.to_table()
    assert table.num_rows == len(events)
    assert table.schema.field("event_time").type == pa.timestamp("us", tz="UTC")
    # Columns that are null in every file (no metric, no KPL aggregate) keep their types.
    assert table.column("value_max").null_count == table.num_rows
    assert table.schema.field("value_max").type == pa.float64()
    assert table.schema.field("sub_sequence_number").type == pa.int64()
    assert table.schema.field("read_only").type == pa.bool_()
    assert set(table.column("event_id").to_pylist()) == {e["id"] for e in events}
    by_source = Counter(table.column("source").to_pylist())
    assert by_source == Counter("cloudtrail" if e["kind"] == "ct" else "logs" for e in events)
    # Partition values are the event-time hour.
    rows = table.select(["event_time", "dt", "hour"]).to_pylist()
    assert all(str(r["dt"]) == r["event_time"].strftime("%Y-%m-%d") and int(r["hour"]) == r["event_time"].hour for r in rows)
    # A filter on the partition columns prunes files: only the 12:00 hour.
    noon = dataset.to_table(filter=(ds.field("hour") == 12) & (ds.field("source") == "logs"))
    assert noon.num_rows == sum(1 for e in events if e["kind"] == "log" and e["t"].hour == 12)
    # The findings and incidents tables: the declared types, UTC microsecond timestamps in the footers.
    for table_name, times in (("findings", ["event_time", "detected_at", "window_start", "window_end"]),
                              ("incidents", ["event_time", "created_at", "updated_at"])):
        for key, t in s3_tables(pipeline["s3"], names["bucket"], names["prefix"], table_name):
            assert t.schema.field("schema_version").type == pa.int32()
            for name in times:
                assert t.schema.field(name).type == pa.timestamp("us", tz="UTC"), (key, name)
            assert all(n == n.lower() for n in t.schema.names)
            assert key.split("/")[2].startswith("source=")


def test_duckdb_runs_the_athena_examples(pipeline):
    import duckdb

    names, events, s3 = pipeline["names"], pipeline["events"], pipeline["s3"]
    local = pipeline["tmp"] / "download"
    for key in list_keys(s3, names["bucket"], names["prefix"] + "/"):
        if key.endswith(".parquet"):
            path = local / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(s3.get_object(Bucket=names["bucket"], Key=key)["Body"].read())
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    for table in ("raw", "findings", "incidents"):
        glob = str(local / names["prefix"] / table / "*" / "*" / "*" / "*.parquet")
        con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{glob}', hive_partitioning = true, "
                    f"hive_types_autocast = false, union_by_name = true)")
    queries, blocks = athena_queries()
    assert set(queries) == {
        "destructive_calls_per_principal_per_day", "error_bursts_per_log_group_per_hour",
        "incidents_by_outcome_and_time_to_resolve", "top_templates_in_the_hour_before_an_incident",
        "events_from_a_given_ip",
    }

    def run(name):
        cur = con.execute(duckdb_dialect(queries[name]))
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, row)) for row in cur.fetchall()]

    cts = [e for e in events if e["kind"] == "ct"]
    logs = [e for e in events if e["kind"] == "log"]

    # 1. Destructive calls per principal per day.
    expected = Counter((e["t"].strftime("%Y-%m-%d"), e["principal"], e["name"]) for e in cts
                       if not e["error"] and not e["read_only"] and DESTRUCTIVE.match(e["name"]))
    got = run("destructive_calls_per_principal_per_day")
    assert {(r["day"], r["principal"], r["event_name"]): r["calls"] for r in got} == dict(expected)
    assert len(got) == 3

    # 2. Error bursts per log group per hour.
    per_hour = Counter((e["group"], e["t"].replace(minute=0, second=0, microsecond=0)) for e in logs
                       if e["message"].startswith("ERROR"))
    expected = {k: v for k, v in per_hour.items() if v >= 50}
    got = run("error_bursts_per_log_group_per_hour")
    assert {(r["log_group"], r["hour_start"]): r["errors"] for r in got} == expected
    assert expected == {("/ecs/checkout", T0 + timedelta(hours=2)): 60 + 4}

    # 3. Incidents by outcome and time to resolve: one incident per successful destructive
    # call a change rule watches (resolved by the dry-run executor), the burst for review.
    got = run("incidents_by_outcome_and_time_to_resolve")
    states = {r["workflow_state"]: r for r in got}
    change = sum(1 for e in cts if not e["error"] and not e["read_only"] and DESTRUCTIVE.match(e["name"]))
    assert states["RESOLVED"]["incidents"] == change == 3
    assert states["RESOLVED"]["outcome"].startswith("dry_run")
    assert states["MANUAL_REVIEW"]["incidents"] >= 1
    assert all(r["avg_seconds_to_state"] >= 0 and r["max_seconds_to_state"] >= r["avg_seconds_to_state"] for r in got)

    # 4. Top templates in the hour before each incident, from the input lines.
    incident_times = dict(con.execute("SELECT DISTINCT incident_id, event_time FROM incidents").fetchall())
    got = run("top_templates_in_the_hour_before_an_incident")
    by_incident = defaultdict(list)
    for r in got:
        by_incident[r["incident_id"]].append((r["template"], r["lines"]))
    for inc, at in incident_times.items():
        window = Counter(re.sub(r"[0-9]+", "<*>", e["message"]) for e in logs if at - timedelta(hours=1) <= e["t"] < at)
        top = sorted(window.items(), key=lambda kv: (-kv[1], kv[0]))[:3]
        assert by_incident[inc] == top, inc
    assert len(incident_times) >= 4

    # 5. Everything a given IP did.
    got = run("events_from_a_given_ip")
    expected = sorted(((e["t"], e["name"]) for e in cts if e["ip"] == IP))
    assert [(r["event_time"], r["event_name"]) for r in got] == expected
    assert [r["error_code"] for r in got if r["event_name"] == "DeleteTable"] == ["AccessDenied"]


def test_backtest_on_s3_history_finds_what_the_live_run_found(pipeline, aiops_bin):
    names = pipeline["names"]
    out = subprocess.run(
        [aiops_bin, "backtest", "--history", f"s3://{names['bucket']}/{names['prefix']}", "--config",
         str(pipeline["config"]), "--compare-live", "--json"],
        env=pipeline["env"], capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["figures"]["events"] == len(pipeline["events"])
    cmp = result["live_comparison"]
    assert cmp["only_live"] == [] and cmp["only_backtest"] == [], cmp
    assert cmp["matching"] == cmp["live"] == cmp["backtest"] == len(result["findings"])
    # The same set, read independently with pyarrow.
    live = {r for _, t in s3_tables(pipeline["s3"], names["bucket"], names["prefix"], "findings")
            for r in t.column("finding_id").to_pylist()}
    assert {f["finding_id"] for f in result["findings"]} == live
    kinds = Counter(f["kind"] for f in result["findings"])
    assert kinds["change_rule"] == 3 and kinds["rate_anomaly"] >= 1, kinds


def test_athena_table_definitions_match_the_code_schemas(aiops_bin):
    """The DDL of docs/athena.md declares the columns of `aiops schema --json` (the same that
    infra/check compares with the Glue tables of infra/terraform/glue_tables.tf)."""
    schema = json.loads(subprocess.run([aiops_bin, "schema", "--json"], capture_output=True, text=True,
                                       check=True).stdout)
    _, blocks = athena_queries()
    ddl = {}
    for b in blocks:
        m = re.search(r"CREATE EXTERNAL TABLE IF NOT EXISTS aiops_history\.(\w+) \((.*?)\n\)\nPARTITIONED BY \((.*?)\)", b, re.S)
        if m:
            cols = [tuple(c.strip().rstrip(",").split()) for c in m.group(2).strip().splitlines()]
            parts = [tuple(p.strip().split()) for p in m.group(3).split(",")]
            version = re.search(r"'aiops.schema_version' = '(\d+)'", b).group(1)
            ddl[m.group(1)] = (cols, parts, int(version))
    assert set(ddl) == {t["name"] for t in schema["tables"]}
    for t in schema["tables"]:
        cols, parts, version = ddl[t["name"]]
        assert cols == [(c["name"], c["type"]) for c in t["columns"]], t["name"]
        assert parts == [(p["name"], p["type"]) for p in t["partition_keys"]], t["name"]
        assert version == t["version"]


def test_learn_writes_baselines_to_the_patterns_table_and_detect_starts_from_them(pipeline, aiops_bin):
    """`aiops learn --out dynamodb://<patterns table>` on the S3 history, then a backtest that
    starts from the patterns table: every series seen again is seeded."""
    names = pipeline["names"]
    history = f"s3://{names['bucket']}/{names['prefix']}"
    learned = subprocess.run(
        [aiops_bin, "learn", "--history", history, "--config", str(pipeline["config"]),
         "--out", f"dynamodb://{names['patterns']}", "--json"],
        env=pipeline["env"], capture_output=True, text=True, timeout=300,
    )
    assert learned.returncode == 0, learned.stderr
    summary = json.loads(learned.stdout)["summary"]
    assert summary["events"] == len(pipeline["events"])
    assert summary["log_groups"] == 2 and summary["items"] >= 1
    ddb = client("dynamodb", pipeline["endpoint"])
    current = ddb.get_item(TableName=names["patterns"], Key={"pattern_key": {"S": "detect/baselines/current"}})["Item"]
    assert int(current["series"]["N"]) == summary["series"]
    out = subprocess.run(
        [aiops_bin, "backtest", "--history", history, "--config", str(pipeline["config"]),
         "--baselines", f"dynamodb://{names['patterns']}", "--json"],
        env=pipeline["env"], capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr
    figures = json.loads(out.stdout)["figures"]
    assert figures["series_seeded"] == summary["series"], (figures, summary)
