"""`aiops run` as an operator uses it: a files source that follows a directory picks up a file
dropped while running, prints its incident, and Ctrl-C (SIGINT) stops it cleanly with every
Parquet file finished (no in-progress files left) and readable."""
import json
import pathlib
import signal
import subprocess
import time

import pyarrow.dataset as ds

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "replay" / "eventbridge_ssm_delete_parameter.json"


def test_follow_then_sigint_flushes(tmp_path, aiops_bin):
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    config = tmp_path / "pipeline.toml"
    config.write_text(
        f'data_dir = "{tmp_path / "data"}"\n'
        "[[sources]]\n"
        'type = "files"\n'
        f'paths = ["{incoming}"]\n'
        "follow = true\n"
        "poll_interval_ms = 100\n"
    )
    proc = subprocess.Popen([aiops_bin, "run", "--json", "--config", str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)
        (incoming / "later.json").write_bytes(FIXTURE.read_bytes())
        line = proc.stdout.readline()
        incident = json.loads(line)
        assert incident["kind"] == "incident"
        assert incident["resource_id"] == "/prod/payments/db-password"
        assert incident["state"] == "RESOLVED"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["kind"] == "summary"
    assert summary["archived_rows"] == 1
    raw = tmp_path / "data" / "raw"
    leftovers = [p for p in raw.rglob("*") if p.name.endswith(".inprogress")]
    assert leftovers == []
    assert ds.dataset(str(raw), format="parquet", partitioning="hive").count_rows() == 1
