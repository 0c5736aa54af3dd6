"""Detect state survives a dead worker (issue 18): events put straight on the events stream
(one shard), the first half of an ERROR burst read by detect worker 1, which saves its engine
state to S3 and is then killed with SIGKILL while the burst's window is still open. Worker 2
(another id: it takes the lease after the failover time) restores the state and reads on;
the rest of the burst is put. The burst is exactly one finding on the decisions stream with
its full count, and the findings are exactly those of an uninterrupted run over the same
events; worker 2 read only the records after the state's position (none counted twice)."""
import gzip
import json
import time
import uuid

from aws_support import (
    client,
    moto_endpoint,
    read_stream,
    run_setup,
    stage_env,
    start_stage,
    stop_stage,
    unique_names,
    wait_for,
    write_config,
)

MIN_US = 60_000_000
STATE = "[aws.detect_state]\ninterval_ms = 1000\n"


def event(n, t_us, group, message, tag):
    return {
        "event_id": f"{tag}-{n:05d}",
        "event_time": t_us,
        "ingest_time": t_us,
        "account": "111122223333",
        "region": "us-east-1",
        "position": {"stream": "", "shard_id": "", "sequence_number": "", "sub_sequence_number": None},
        "body": {"kind": "logs", "log_group": group, "log_stream": "s", "message": message,
                 "level": "ERROR"},
    }


def traffic(start_us, group, tag):
    """Two ERROR lines a minute for two hours, 60 in minute 120 (the burst), then six minutes
    of two a minute (they close the burst's window). Returns (before, after): `before` ends
    half-way through the burst."""
    out = []
    for m in range(120):
        for k in range(2):
            out.append((start_us + m * MIN_US + k * 25_000_000, "ERROR db timeout 42"))
    for k in range(60):
        out.append((start_us + 120 * MIN_US + k * 1_000_000, f"ERROR db timeout {k}"))
    for m in range(121, 127):
        for k in range(2):
            out.append((start_us + m * MIN_US + k * 25_000_000, "ERROR db timeout 42"))
    events = [event(n, t, group, msg, tag) for n, (t, msg) in enumerate(out)]
    half = 240 + 30
    return events[:half], events[half:]


def put(kinesis, stream, events):
    """Puts the events in order (one shard); returns the last sequence number."""
    last = None
    for e in events:
        r = kinesis.put_record(StreamName=stream, Data=json.dumps(e).encode(), PartitionKey="k")
        last = r["SequenceNumber"]
    return last


def state_header(s3, bucket, key):
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except s3.exceptions.NoSuchKey:
        return None
    return json.loads(gzip.decompress(body).split(b"\n", 1)[0])


def findings(kinesis, stream):
    out = []
    for r in read_stream(kinesis, stream):
        f = json.loads(r["Data"])
        f.pop("detected_at", None)
        out.append(f)
    return out


def burst_of(found, window):
    return [f for f in found if f["evidence"].get("window") == window]


def run(tmp_path, aiops_bin, endpoint, kill):
    """One deployment; returns (findings on the decisions stream, details)."""
    names = unique_names()
    workdir = tmp_path / ("killed" if kill else "straight")
    workdir.mkdir()
    config = write_config(workdir / "pipeline.toml", endpoint, names, events_shards=1, extra=STATE)
    env = stage_env(endpoint)
    run_setup(aiops_bin, config, env)
    kinesis = client("kinesis", endpoint)
    s3 = client("s3", endpoint)
    (shard,) = kinesis.list_shards(StreamName=names["events"])["Shards"]
    key = f"{names['prefix']}/state/detect/{names['events']}/{shard['ShardId']}/engine.json.gz"
    start_us = (int(time.time()) // 60 - 180) * MIN_US
    group = f"/app/{names['prefix']}"
    before, after = traffic(start_us, group, uuid.uuid4().hex[:8])
    window = [start_us + 120 * MIN_US, start_us + 121 * MIN_US]
    details = {"window": window}

    half_seq = put(kinesis, names["events"], before)
    d1 = start_stage(aiops_bin, "detect", config, env, "detect-1", workdir / "detect-1.log")
    procs = [d1]
    try:
        if kill:
            # Worker 1 saved the state of every record put so far (half the burst, its
            # window open), then dies without a flush, a checkpoint or a lease release.
            header = wait_for(
                "the detect state covering the first half of the burst",
                lambda: (h := state_header(s3, names["bucket"], key))
                and h["position"]["sequence_number"] == half_seq and h,
                timeout=60,
            )
            assert header["format"] == "aiops-detect-state" and header["version"] == 1
            assert header["engine"] is True
            assert burst_of(findings(kinesis, names["decisions"]), window) == []
            d1.kill()
            d1.wait()
            details["state_sequence_number"] = header["position"]["sequence_number"]
            d2 = start_stage(aiops_bin, "detect", config, env, "detect-2", workdir / "detect-2.log")
            procs.append(d2)
        last_seq = put(kinesis, names["events"], after)
        wait_for("the burst finding on the decisions stream",
                 lambda: burst_of(findings(kinesis, names["decisions"]), window), timeout=90)
        # Everything read and saved: the state covers the last record.
        wait_for("the detect state covering the last record",
                 lambda: (h := state_header(s3, names["bucket"], key))
                 and h["position"]["sequence_number"] == last_seq, timeout=60)
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        summaries = [stop_stage(p) for p in procs if p.returncode != -9]
    details["summary"] = summaries[-1][0]
    details["log"] = (workdir / ("detect-2.log" if kill else "detect-1.log")).read_text()
    details["after"] = len(after)
    return findings(kinesis, names["decisions"]), details


def test_a_detect_worker_killed_mid_burst_loses_and_repeats_nothing(tmp_path, aiops_bin):
    endpoint = moto_endpoint()
    straight, s = run(tmp_path, aiops_bin, endpoint, kill=False)
    killed, k = run(tmp_path, aiops_bin, endpoint, kill=True)

    # The burst: one finding with the full count, in both runs.
    for found, d in ((straight, s), (killed, k)):
        burst = burst_of(found, d["window"])
        assert len(burst) == 1, burst
        assert burst[0]["detector"] == "log_level_rate"
        assert burst[0]["evidence"]["observed"] == 60.0
    # Exactly the findings of the uninterrupted run (ids differ only by the window times and
    # the log group, which are per run: compare what is found, and how).
    def shape(found, d):
        base = d["window"][0]
        return sorted(
            (f["detector"], f["kind"], f["evidence"]["window"][0] - base if f["evidence"].get("window") else None,
             f["evidence"].get("observed"), f["evidence"].get("expected"), f["score"], f["priority"])
            for f in found
        )
    assert shape(killed, k) == shape(straight, s)
    assert len({f["finding_id"] for f in killed}) == len(killed), "a finding forwarded twice"

    # Worker 2 resumed from the state and read only what came after it: no event twice.
    c = k["summary"]["counters"]
    assert c["state_restored"] == 1, c
    assert c["state_refused"] == 0 and c["state_missing"] == 0, c
    assert c["records"] == k["after"], c
    assert c["duplicates"] == 0 and c["replayed_records"] == 0, c
    assert "detect state restored" in k["log"]
    # The uninterrupted worker started cold (no state yet) and saved its state.
    cs = s["summary"]["counters"]
    assert cs["state_missing"] == 1 and cs["state_saved"] >= 1, cs
    print(f"detect restart: {len(killed)} findings, burst observed 60 once; worker 2 read "
          f"{c['records']} records after the state at {k['state_sequence_number']}")
