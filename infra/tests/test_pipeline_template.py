"""The pipeline.toml of the stages (templates/pipeline.toml.tftpl through tools/pipeline_config.py), and the
DynamoDB key schemas the code expects."""

from __future__ import annotations

import copy
import pathlib
import re
import shutil
import tempfile
import tomllib
import unittest

from . import util

import hcl  # noqa: E402
import pipeline_config  # noqa: E402

TEMPLATE = util.TERRAFORM / "templates" / "pipeline.toml.tftpl"
EXAMPLE = util.TERRAFORM / "terraform.tfvars.example"
REPO = util.INFRA.parent

EXPECTED_EXAMPLE = {
    "region": "us-east-1",
    "streams": {"raw": "aiops-raw", "events": "aiops-events", "decisions": "aiops-decisions"},
    "shards": {"raw": 2, "events": 2, "decisions": 1},
    "tables": {"incidents": "aiops-incidents", "leases": "aiops-leases", "locks": "aiops-locks", "patterns": "aiops-patterns"},
    "bucket": "aiops-history-123456789012-us-east-1",
    "prefix": "history",
    "projects": {"apply": "aiops-recovery-apply", "verify": "aiops-recovery-verify"},
    "changes_table": "aiops-changes",
    "topic_arn": "arn:aws:sns:us-east-1:123456789012:aiops-notifications",
    "model_id": "us.anthropic.claude-3-5-haiku-20241022-v1:0",
    "evidence_prefix": "history/evidence",
}


def validate_json(expect: dict) -> dict:
    """What `aiops validate --json` prints for a configuration with these names."""
    return {
        "mode": "aws",
        "region": expect["region"],
        "streams": dict(expect["streams"]),
        "shards": dict(expect["shards"]),
        "tables": dict(expect["tables"]),
        "bucket": expect["bucket"],
        "prefix": expect["prefix"],
        "data_dir": "/run/aiops/data",
        "endpoint_url": None,
    }


class RenderTest(unittest.TestCase):
    def test_placeholders_match_the_templatefile_call(self) -> None:
        placeholders = set(re.findall(r"\$\{([a-z_]+)\}", TEMPLATE.read_text(encoding="utf-8")))
        module = pipeline_config.Module(util.TERRAFORM, {})
        self.assertEqual(placeholders, set(module.templatefile_args()))

    def test_example_renders_the_sections_the_binary_reads(self) -> None:
        text, expect = pipeline_config.render(util.TERRAFORM, EXAMPLE)
        self.assertEqual(expect, EXPECTED_EXAMPLE)
        doc = tomllib.loads(text)
        self.assertEqual(doc["mode"], "aws")
        self.assertEqual(
            doc["aws"],
            {
                "region": "us-east-1",
                "raw_stream": "aiops-raw",
                "events_stream": "aiops-events",
                "decisions_stream": "aiops-decisions",
                "raw_shards": 2,
                "events_shards": 2,
                "decisions_shards": 1,
                "leases_table": "aiops-leases",
                "incidents_table": "aiops-incidents",
                "locks_table": "aiops-locks",
                "patterns_table": "aiops-patterns",
                "history_bucket": "aiops-history-123456789012-us-east-1",
                "history_prefix": "history",
                "metrics_namespace": "aiops/aiops",
                "metrics_interval_secs": 60,
            },
        )
        self.assertEqual(
            doc["act"],
            {
                "confidence_threshold": 0.8,
                "enrichment": {"provider": "bedrock", "model_id": "us.anthropic.claude-3-5-haiku-20241022-v1:0", "region": "us-east-1"},
                "store": {
                    "backend": "dynamodb",
                    "incidents_table": "aiops-incidents",
                    "locks_table": "aiops-locks",
                    "stats_table": "aiops-patterns",
                    "evidence_bucket": "aiops-history-123456789012-us-east-1",
                    "evidence_prefix": "history/evidence",
                },
                "changes": {"table": "aiops-changes"},
                "notify": {"backend": "sns", "topic_arn": "arn:aws:sns:us-east-1:123456789012:aiops-notifications", "subject_prefix": "aiops"},
                "recovery": {"executor": "codebuild", "apply_project": "aiops-recovery-apply", "verify_project": "aiops-recovery-verify"},
            },
        )
        self.assertEqual(pipeline_config.compare(text, expect, validate_json(expect)), [])

    def test_variables_reach_the_names(self) -> None:
        with tempfile.TemporaryDirectory() as d:
            tfvars = pathlib.Path(d) / "x.tfvars"
            tfvars.write_text(
                'region = "eu-west-1"\nname = "ops-prod"\nhistory_prefix = "h/v1"\nraw_shard_count = 4\n'
                'confidence_threshold = 1\nbedrock_model_id = "anthropic.claude-3-haiku-20240307-v1:0"\n',
                encoding="utf-8",
            )
            text, expect = pipeline_config.render(util.TERRAFORM, tfvars)
        self.assertEqual(expect["bucket"], "ops-prod-history-123456789012-eu-west-1")
        self.assertEqual(expect["streams"]["raw"], "ops-prod-raw")
        self.assertEqual(expect["shards"]["raw"], 4)
        self.assertEqual(expect["topic_arn"], "arn:aws:sns:eu-west-1:123456789012:ops-prod-notifications")
        self.assertEqual(expect["evidence_prefix"], "h/v1/evidence")
        doc = tomllib.loads(text)
        self.assertEqual(doc["act"]["confidence_threshold"], 1)
        self.assertEqual(doc["act"]["notify"]["subject_prefix"], "ops-prod")
        self.assertEqual(doc["aws"]["history_prefix"], "h/v1")

    def test_unsupported_expressions_fail_loudly(self) -> None:
        with tempfile.TemporaryDirectory() as d:
            root = pathlib.Path(d) / "tf"
            shutil.copytree(util.TERRAFORM, root, ignore=shutil.ignore_patterns(".terraform*"))
            stages = root / "stages.tf"
            text = stages.read_text(encoding="utf-8")
            stages.write_text(text.replace("region               = var.region", "region               = upper(var.region)"), encoding="utf-8")
            with self.assertRaises(pipeline_config.RenderError) as err:
                pipeline_config.render(root, EXAMPLE)
        self.assertIn("upper(var.region)", str(err.exception))

    def test_template_rendering(self) -> None:
        self.assertEqual(pipeline_config.render_template('a = "${x}" # $${y} %%{z}\nn = ${n}', {"x": "v", "n": 0.5}), 'a = "v" # ${y} %{z}\nn = 0.5')
        self.assertEqual(pipeline_config.render_template("n = ${n}", {"n": 2.0}), "n = 2")
        with self.assertRaises(pipeline_config.RenderError):
            pipeline_config.render_template("%{ if x }y%{ endif }", {"x": True})
        with self.assertRaises(pipeline_config.RenderError):
            pipeline_config.render_template("${missing}", {})


class CompareTest(unittest.TestCase):
    def setUp(self) -> None:
        self.text, self.expect = pipeline_config.render(util.TERRAFORM, EXAMPLE)

    def test_a_name_the_binary_resolves_differently_is_reported(self) -> None:
        got = validate_json(self.expect)
        got["tables"]["leases"] = "aiops-lease"
        got["prefix"] = "aiops"
        self.assertEqual(
            pipeline_config.compare(self.text, self.expect, got),
            [
                "tables.leases: the rendered configuration has 'aiops-lease', Terraform names 'aiops-leases'",
                "prefix: the rendered configuration has 'aiops', Terraform names 'history'",
            ],
        )

    def test_act_sections_are_compared(self) -> None:
        text = self.text.replace('backend = "sns"', 'backend = "none"').replace('evidence_prefix = "history/evidence"', 'evidence_prefix = "history/incidents/evidence"')
        self.assertEqual(
            pipeline_config.compare(text, self.expect, validate_json(self.expect)),
            [
                "act.store.evidence_prefix: the rendered configuration has 'history/incidents/evidence', Terraform names 'history/evidence'",
                "act.store.evidence_prefix: 'history/incidents/evidence' lies inside the Glue table location history/incidents/",
                "act.notify.backend: the rendered configuration has 'none', Terraform names 'sns'",
            ],
        )

    def test_the_previous_template_would_fail(self) -> None:
        # The template before the [act.*] sections: mode aws, names under [aws] only.
        old = "\n".join(line for line in self.text.splitlines() if not line.startswith("[act.")) + "\n"
        old = old.split("[act]")[0]
        problems = pipeline_config.compare(old, self.expect, validate_json(self.expect))
        self.assertIn("act.store.backend: the rendered configuration has None, Terraform names 'dynamodb'", problems)
        self.assertIn("act.enrichment.provider: the rendered configuration has None, Terraform names 'bedrock'", problems)

    def test_plan_expectations_skip_unknown_values(self) -> None:
        expect = copy.deepcopy(self.expect)
        expect["model_id"] = None
        expect["evidence_prefix"] = None
        self.assertEqual(pipeline_config.compare(self.text, expect, validate_json(expect)), [])


class KeySchemaTest(unittest.TestCase):
    """The tables' hash keys are the attributes the code reads and writes."""

    def test_hash_keys_match_the_code(self) -> None:
        doc = hcl.load(util.TERRAFORM / "dynamodb.tf")
        keys = {name: hcl.unquote(body["hash_key"]) for name, body in hcl.resources(doc, "aws_dynamodb_table")}
        setup = (REPO / "pipeline" / "src" / "aws_mode" / "setup.rs").read_text(encoding="utf-8")
        lease = re.search(r'ensure_table\(&ddb, &aws\.leases_table, "(\w+)"\)', setup)
        self.assertIsNotNone(lease, "pipeline/src/aws_mode/setup.rs no longer creates the lease table with ensure_table: update this test")
        dynamo = (REPO / "act" / "src" / "dynamo" / "mod.rs").read_text(encoding="utf-8")
        act_keys = re.findall(r'\.key_schema\(key\("(\w+)", KeyType::Hash\)\?\)', dynamo)
        self.assertEqual(len(act_keys), 3, "act/src/dynamo/mod.rs create_tables changed shape: update this test")
        assert lease is not None
        changes = (REPO / "act" / "src" / "dynamo" / "changes.rs").read_text(encoding="utf-8")
        change_keys = dict(
            (kind, name)
            for name, kind in re.findall(r'\.attribute_name\("(\w+)"\)\s*\.key_type\(KeyType::(Hash|Range)\)', changes)
        )
        self.assertEqual(set(change_keys), {"Hash", "Range"}, "act/src/dynamo/changes.rs create_table changed shape: update this test")
        self.assertEqual(
            keys,
            {
                "leases": lease.group(1),
                "incidents": act_keys[0],
                "locks": act_keys[1],
                "patterns": act_keys[2],
                "changes": change_keys["Hash"],
            },
        )
        range_keys = {name: hcl.unquote(body["range_key"]) for name, body in hcl.resources(doc, "aws_dynamodb_table") if "range_key" in body}
        self.assertEqual(range_keys, {"changes": change_keys["Range"]})
        self.assertEqual(keys["leases"], "leaseKey")


if __name__ == "__main__":
    unittest.main()
