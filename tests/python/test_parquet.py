"""pyarrow, a real Parquet client that aiops did not write, reads the raw history that
`aiops replay` and `aiops run` archive: the row count equals the reported `archived_rows`,
timestamps are timestamp[us, tz=UTC], partitions follow source=/dt=/hour=, event ids are unique."""
import json
import pathlib
import subprocess

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

ROOT = pathlib.Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "replay"


def run_json(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600)
    lines = [json.loads(l) for l in out.stdout.splitlines() if l.strip()]
    assert lines, out.stderr
    assert lines[-1]["kind"] == "summary", lines[-1]
    return lines[:-1], lines[-1]


def raw_dataset(data_dir):
    return ds.dataset(str(data_dir / "raw"), format="parquet", partitioning="hive")


def check_contract(data_dir, summary):
    dataset = raw_dataset(data_dir)
    table = dataset.to_table()
    assert table.num_rows == summary["archived_rows"]
    assert table.schema.field("event_time").type == pa.timestamp("us", tz="UTC")
    assert table.schema.field("ingest_time").type == pa.timestamp("us", tz="UTC")
    assert table.schema.field("schema_version").type == pa.int32()
    assert all(name == name.lower() for name in table.schema.names)
    ids = table.column("event_id").to_pylist()
    assert len(set(ids)) == len(ids), "duplicate event ids archived"
    # Every file's footer says INT64 TIMESTAMP(MICROS, isAdjustedToUTC=true).
    for f in dataset.files:
        col = pq.ParquetFile(f).schema.column(2)
        assert col.name == "event_time"
        assert col.physical_type == "INT64"
        logical = json.loads(col.logical_type.to_json())
        assert (logical["Type"], logical["isAdjustedToUTC"], logical["timeUnit"]) == ("Timestamp", True, "microseconds")
        rel = pathlib.Path(f).relative_to(data_dir / "raw").parts
        assert rel[0].startswith("source=") and rel[1].startswith("dt=") and rel[2].startswith("hour=")
    return table


def test_replay_of_own_fixtures(tmp_path, aiops_bin):
    incidents, summary = run_json([aiops_bin, "replay", str(FIXTURES), "--json", "--data-dir", str(tmp_path)])
    assert summary == {
        "kind": "summary", "events": 18, "dead_letters": 0, "duplicates": 1, "findings": 4,
        "incidents": 4, "suppressed_findings": 0, "archived_rows": 17, "control_messages": 0,
        "digest_files": 1, "skipped_files": 0, "skipped_inputs": 0, "inputs_read": 7,
        "input_bytes": 5862, "out_of_range_events": 0, "reorder_early_releases": 0,
        "out_of_order_events": 0,
    }
    table = check_contract(tmp_path, summary)
    by_source = {}
    for s in table.column("source").to_pylist():
        by_source[s] = by_source.get(s, 0) + 1
    assert by_source == {"cloudtrail": 11, "logs": 4, "metrics": 2}
    rows = {r["event_id"]: r for r in table.to_pylist()}
    ssm = rows["0b9f7c1e-1111-4a1a-9a1a-000000000001"]
    assert ssm["event_name"] == "DeleteParameter"
    assert json.loads(ssm["request_parameters"]) == {"name": "/prod/payments/db-password"}
    assert ssm["event_time"].isoformat() == "2024-05-01T12:00:00+00:00"
    assert (ssm["dt"], ssm["hour"]) == ("2024-05-01", 12) or (ssm["dt"], str(ssm["hour"])) == ("2024-05-01", "12")
    assert rows["0b9f7c1e-1111-4a1a-9a1a-000000000002"]["error_code"] == "ResourceInUseException"
    errors = [r for r in rows.values() if r["level"] == "ERROR"]
    assert len(errors) == 2 and all(r["log_group"] == "/ecs/checkout-api" for r in errors)
    cpu = [r for r in rows.values() if r["metric_name"] == "CPUUtilization"]
    assert sorted(r["value_max"] for r in cpu) == [40.0, 91.0]


def test_replay_of_shared_cloudtrail(tmp_path, aiops_bin, shared_data):
    folder = shared_data / "cloudtrail"
    if not folder.is_dir():
        import pytest
        pytest.skip(f"{folder} not present")
    _, summary = run_json([aiops_bin, "replay", str(folder), "--json", "--data-dir", str(tmp_path)])
    assert summary["dead_letters"] == 0
    assert summary["events"] == len(list(folder.glob("*.json")))
    check_contract(tmp_path, summary)


def test_simulated_run_archives_every_event(tmp_path, aiops_bin):
    # Rates low enough that a debug build on a busy 2-core machine keeps up with the simulated
    # clock, so the incidents injected at 2 s and 4 s of wall time are generated in time.
    config = tmp_path / "pipeline.toml"
    config.write_text(
        "[[sources]]\n"
        'type = "simulate"\n'
        "cloudtrail_per_sec = 4.0\n"
        "log_lines_per_sec = 8.0\n"
    )
    incidents, summary = run_json([aiops_bin, "run", "--json", "--duration", "7", "--config", str(config),
                                   "--data-dir", str(tmp_path / "data")])
    tmp_path = tmp_path / "data"
    assert summary["events"] > 3_000
    assert summary["dead_letters"] == 0
    assert summary["archived_rows"] == summary["events"] - summary["duplicates"]
    check_contract(tmp_path, summary)
    names = sorted(i["event_name"] for i in incidents)
    assert names == ["DeleteParameter", "TerminateInstances"], names
