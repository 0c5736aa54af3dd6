"""Crash test of aws mode: 2 ingest workers on a 4-shard raw stream, 20,000 events put while
they run, each worker killed with SIGKILL at least twice mid-stream and restarted (one with
the same worker id, taking its leases back at once; the other with a new id, taking over
after the failover time). Afterwards every event is in S3 at least once and exactly once
after de-duplication by event id, no shard is stuck (each lease checkpointed at its shard's
last record), and the lease table shows every shard owned by a live worker; a clean stop
then hands every lease back."""
import json
import threading
import time
import uuid

import pyarrow as pa

from aws_support import (
    client,
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

EVENTS = 20_000
BATCH = 500


def envelope(i, when):
    event_id = f"crash-{i:06d}-{uuid.uuid4().hex[:8]}"
    return event_id, json.dumps({
        "version": "0",
        "id": event_id,
        "detail-type": "AWS API Call via CloudTrail",
        "source": "aws.s3",
        "account": "111122223333",
        "time": when,
        "region": "us-east-1",
        "detail": {
            "eventVersion": "1.09",
            "userIdentity": {"type": "IAMUser", "arn": f"arn:aws:iam::111122223333:user/u{i % 50}",
                             "accountId": "111122223333"},
            "eventTime": when,
            "eventSource": "s3.amazonaws.com",
            "eventName": "GetObject",
            "awsRegion": "us-east-1",
            "eventID": event_id,
            "readOnly": True,
            "requestParameters": {"bucketName": "b", "key": f"k{i}"},
            "recipientAccountId": "111122223333",
        },
    }).encode()


def test_sigkilled_ingest_workers_lose_nothing(tmp_path, aiops_bin):
    endpoint = moto_endpoint()
    names = unique_names()
    config = write_config(tmp_path / "pipeline.toml", endpoint, names, raw_shards=4, events_shards=2,
                          extra="max_bytes_per_file = 1048576\n")
    env = stage_env(endpoint)
    run_setup(aiops_bin, config, env)
    kinesis = client("kinesis", endpoint)
    s3 = client("s3", endpoint)
    ddb = client("dynamodb", endpoint)
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    payloads = [envelope(i, when) for i in range(EVENTS)]
    expected = {event_id for event_id, _ in payloads}

    # The producer puts the events in batches while the workers run and crash.
    produced = threading.Event()
    failures = []

    def produce():
        try:
            for start in range(0, EVENTS, BATCH):
                entries = [{"Data": data, "PartitionKey": event_id}
                           for event_id, data in payloads[start:start + BATCH]]
                while entries:
                    resp = kinesis.put_records(StreamName=names["raw"], Records=entries)
                    entries = [e for e, r in zip(entries, resp["Records"]) if "ErrorCode" in r]
                time.sleep(0.25)
        except Exception as e:  # reported by the main thread
            failures.append(e)
        finally:
            produced.set()

    logs = tmp_path
    workers = {
        "a": start_stage(aiops_bin, "ingest", config, env, "worker-a", logs / "a.log"),
        "b": start_stage(aiops_bin, "ingest", config, env, "worker-b-0", logs / "b.log"),
    }
    ids = {"a": "worker-a", "b": "worker-b-0"}
    started = time.monotonic()
    producer = threading.Thread(target=produce)
    producer.start()
    kills = {"a": 0, "b": 0}
    try:
        # Four kills at 1.5 s intervals, alternating, all while events are still being put.
        for n, name in enumerate(["a", "b", "a", "b"]):
            time.sleep(1.5)
            assert not produced.is_set(), "the producer finished before the kills: not mid-stream"
            workers[name].kill()  # SIGKILL: no flush, no checkpoint, no lease release
            workers[name].wait()
            kills[name] += 1
            time.sleep(0.3)
            if name == "b":
                ids["b"] = f"worker-b-{n}"  # a new id: takes over after the failover time
            workers[name] = start_stage(aiops_bin, "ingest", config, env, ids[name], logs / f"{name}.log")
        producer.join(timeout=120)
        assert not failures, failures
        assert kills == {"a": 2, "b": 2}

        # The last record of each shard, as boto3 reads them.
        last_seq = {}
        for shard in kinesis.list_shards(StreamName=names["raw"])["Shards"]:
            it = kinesis.get_shard_iterator(StreamName=names["raw"], ShardId=shard["ShardId"],
                                            ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
            seqs = []
            while True:
                page = kinesis.get_records(ShardIterator=it, Limit=10000)
                if not page["Records"]:
                    break
                seqs.extend(int(r["SequenceNumber"]) for r in page["Records"])
                it = page["NextShardIterator"]
            last_seq[shard["ShardId"]] = max(seqs)
        assert len(last_seq) == 4

        def settled():
            leases = [l for l in ddb.scan(TableName=names["leases"], ConsistentRead=True)["Items"]
                      if l["stage"]["S"] == "ingest"]
            live = set(ids.values())
            ok = len(leases) == 4 and all(
                l.get("leaseOwner", {}).get("S") in live
                and l["checkpoint"]["S"] == str(last_seq[l["shardId"]["S"]])
                for l in leases
            )
            return leases if ok else None

        leases = wait_for("every shard checkpointed at its last record and owned by a live worker",
                          settled, timeout=90)
        owners = {l["leaseOwner"]["S"] for l in leases}
        elapsed = time.monotonic() - started
    finally:
        for p in workers.values():
            if p.poll() is None:
                p.terminate()
        summaries = [stop_stage(p) for p in workers.values()]

    # Every event at least once; exactly once after de-duplication by event id.
    tables = parquet_tables(s3, names["bucket"], names["prefix"] + "/raw/")
    table = pa.concat_tables([t for _, t in tables])
    archived = table.column("event_id").to_pylist()
    assert set(archived) == expected
    duplicates = len(archived) - len(expected)
    assert duplicates >= 0
    # Leases: spread over both workers while they ran, all handed back at the clean stop.
    assert owners <= set(ids.values())
    after = [l for l in ddb.scan(TableName=names["leases"], ConsistentRead=True)["Items"]
             if l["stage"]["S"] == "ingest"]
    assert all("leaseOwner" not in l for l in after)
    assert all(s[0]["worker"]["shard_failures"] == 0 for s in summaries)
    print(f"crash test: {len(archived)} rows for {len(expected)} events ({duplicates} duplicates "
          f"re-read after {sum(kills.values())} SIGKILLs), {len(tables)} objects, final owners {sorted(owners)}, "
          f"settled in {elapsed:.1f} s")
