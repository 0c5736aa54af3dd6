"""Tests of infra/tools/log_filters.py: the alarms' log metric filters against the stages' log calls."""

from __future__ import annotations

import json
import pathlib
import tempfile
import textwrap
import unittest

from . import util

import log_filters  # noqa: E402

REPO = util.INFRA.parent

ALARMS = """
locals {
  log_metric_filters = {
    ingest_dead_letters = {
      stage   = "ingest"
      metric  = "DeadLetters"
      pattern = "{ ($.level = \\"WARN\\") && ($.fields.message = \\"dead letter\\") }"
    }
    act_failed = {
      stage   = "act"
      metric  = "RecoveriesFailed"
      pattern = "{ ($.level = \\"INFO\\") && ($.fields.message = \\"incident\\") && ($.fields.state = \\"FAILED\\") }"
    }
  }
}
"""


def fake_repo(root: pathlib.Path, ingest_rs: str, act_rs: str) -> None:
    src = root / "pipeline" / "src" / "aws_mode"
    src.mkdir(parents=True)
    (src / "ingest.rs").write_text(textwrap.dedent(ingest_rs), encoding="utf-8")
    (src / "act.rs").write_text(textwrap.dedent(act_rs), encoding="utf-8")


class LogFiltersTest(unittest.TestCase):
    def setUp(self) -> None:
        self.tmp = tempfile.TemporaryDirectory()
        self.root = pathlib.Path(self.tmp.name)
        (self.root / "tf").mkdir()
        (self.root / "tf" / "alarms.tf").write_text(ALARMS, encoding="utf-8")

    def tearDown(self) -> None:
        self.tmp.cleanup()

    def test_patterns_parse_to_equalities(self) -> None:
        specs = log_filters.filters(self.root / "tf")
        self.assertEqual(
            log_filters.conditions(specs["act_failed"]["pattern"]),
            {"level": "INFO", "fields.message": "incident", "fields.state": "FAILED"},
        )
        with self.assertRaises(log_filters.FilterError):
            log_filters.conditions('{ $.latency > 5 }')
        with self.assertRaises(log_filters.FilterError):
            log_filters.conditions('"dead letter"')

    def test_matching_json_log_events(self) -> None:
        conds = {"level": "WARN", "fields.message": "dead letter"}
        self.assertTrue(log_filters.matches(conds, {"level": "WARN", "fields": {"message": "dead letter", "reason": "x"}}))
        self.assertFalse(log_filters.matches(conds, {"level": "INFO", "fields": {"message": "dead letter"}}))
        self.assertFalse(log_filters.matches(conds, {"level": "WARN", "message": "dead letter"}))

    def test_source_calls_satisfy_the_filters(self) -> None:
        fake_repo(
            self.root / "repo",
            """
            tracing::warn!(reason = %d.reason, shard = %d.position.shard_id, "dead letter");
            """,
            """
            tracing::info!(incident = %i.incident_id, state = %i.state, "incident");
            """,
        )
        self.assertEqual(log_filters.check_source(self.root / "tf", self.root / "repo"), [])

    def test_wrong_level_missing_field_and_wrong_stage_are_reported(self) -> None:
        fake_repo(
            self.root / "repo",
            """
            tracing::info!(reason = %d.reason, "dead letter");
            tracing::info!(incident = %id, state = %s, "incident");
            """,
            """
            tracing::info!(incident = %i.incident_id, "incident");
            """,
        )
        self.assertEqual(
            log_filters.check_source(self.root / "tf", self.root / "repo"),
            [
                "act_failed: no tracing call in the act stage's code logs 'incident' with fields ['state']",
                "ingest_dead_letters: 'dead letter' is logged at ['INFO'], the filter expects WARN",
            ],
        )

    def test_count_matches_reads_json_lines_only(self) -> None:
        log = self.root / "log.txt"
        lines = [
            "aiops ingest: worker w-1",
            json.dumps({"timestamp": "t", "level": "WARN", "fields": {"message": "dead letter"}, "target": "aiops"}),
            json.dumps({"timestamp": "t", "level": "WARN", "fields": {"message": "archive flushed"}, "target": "aiops"}),
        ]
        log.write_text("\n".join(lines) + "\n", encoding="utf-8")
        self.assertEqual(log_filters.count_matches(self.root / "tf", log, "ingest_dead_letters"), 1)
        self.assertEqual(log_filters.count_matches(self.root / "tf", log, "act_failed"), 0)

    def test_the_deployment_filters_match_the_code(self) -> None:
        self.assertEqual(log_filters.check_source(util.TERRAFORM, REPO), [])
        self.assertEqual(
            sorted(log_filters.filters(util.TERRAFORM)),
            ["act_failed_incidents", "act_skipped_records", "detect_skipped_records", "ingest_dead_letters"],
        )


if __name__ == "__main__":
    unittest.main()
