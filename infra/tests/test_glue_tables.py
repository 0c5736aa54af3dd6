"""Tests of infra/tools/glue_tables.py: schema parsing, comparison, layout rules, rendering."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import pathlib
import tempfile
import unittest

from . import util  # noqa: F401  (puts infra/tools on sys.path)

import glue_tables as gt  # noqa: E402

LAYOUT_KEYS = [{"name": "source", "type": "string"}, {"name": "dt", "type": "string"}, {"name": "hour", "type": "string"}]


def schema_doc() -> dict:
    """A small schema in the shape `aiops schema --json` prints."""
    return {
        "tables": [
            {
                "name": "raw",
                "version": 1,
                "columns": [
                    {"name": "schema_version", "type": "int"},
                    {"name": "event_id", "type": "string"},
                    {"name": "event_time", "type": "timestamp"},
                    {"name": "read_only", "type": "boolean"},
                    {"name": "value_max", "type": "double"},
                    {"name": "sub_sequence_number", "type": "bigint"},
                ],
                "partition_keys": copy.deepcopy(LAYOUT_KEYS),
            },
            {
                "name": "findings",
                "version": 2,
                "columns": [{"name": "finding_id", "type": "string"}, {"name": "score", "type": "double"}],
                "partition_keys": copy.deepcopy(LAYOUT_KEYS),
            },
        ]
    }


def tables(doc: dict) -> dict[str, gt.Table]:
    return gt.parse_schema(json.dumps(doc))


class ParseSchemaTest(unittest.TestCase):
    def test_valid_schema_keeps_order_and_types(self) -> None:
        t = tables(schema_doc())
        self.assertEqual(list(t), ["raw", "findings"])
        self.assertEqual(t["raw"].version, 1)
        self.assertEqual(
            [c.line() for c in t["raw"].columns],
            [
                "schema_version int",
                "event_id string",
                "event_time timestamp",
                "read_only boolean",
                "value_max double",
                "sub_sequence_number bigint",
            ],
        )
        self.assertEqual([c.line() for c in t["raw"].partition_keys], ["source string", "dt string", "hour string"])

    def assert_schema_error(self, doc: object, fragment: str) -> None:
        text = doc if isinstance(doc, str) else json.dumps(doc)
        with self.assertRaises(gt.SchemaError) as cm:
            gt.parse_schema(text)
        self.assertIn(fragment, str(cm.exception))

    def test_rejects_non_json(self) -> None:
        self.assert_schema_error("usage: aiops <command>", "not JSON")

    def test_rejects_missing_tables(self) -> None:
        self.assert_schema_error({"table": []}, 'expected an object {"tables": [...]}')

    def test_rejects_unknown_type(self) -> None:
        doc = schema_doc()
        doc["tables"][0]["columns"][1]["type"] = "varchar"
        self.assert_schema_error(doc, "column 'event_id' has type 'varchar'")

    def test_rejects_duplicate_column(self) -> None:
        doc = schema_doc()
        doc["tables"][0]["columns"].append({"name": "event_id", "type": "string"})
        self.assert_schema_error(doc, "duplicate column 'event_id'")

    def test_rejects_missing_version(self) -> None:
        doc = schema_doc()
        del doc["tables"][1]["version"]
        self.assert_schema_error(doc, '(findings): "version" must be an integer >= 1, got None')

    def test_rejects_partition_key_that_is_a_column(self) -> None:
        doc = schema_doc()
        doc["tables"][0]["columns"].append({"name": "dt", "type": "string"})
        self.assert_schema_error(doc, "partition keys also listed as columns: ['dt']")

    def test_rejects_camel_case_name(self) -> None:
        doc = schema_doc()
        doc["tables"][0]["columns"][1]["name"] = "eventId"
        self.assert_schema_error(doc, "column name 'eventId' is not lower-case snake_case")


class CompareTest(unittest.TestCase):
    def test_identical_tables_match(self) -> None:
        code = tables(schema_doc())
        self.assertEqual(gt.compare(code, copy.deepcopy(code)), ([], []))

    def test_reordered_columns_are_a_diff(self) -> None:
        code = tables(schema_doc())
        tf = copy.deepcopy(code)
        cols = tf["raw"].columns
        cols[1], cols[2] = cols[2], cols[1]
        problems, notes = gt.compare(code, tf)
        self.assertEqual(notes, [])
        self.assertEqual(len(problems), 1)
        diff = problems[0].splitlines()
        self.assertEqual(diff[0], "--- raw: columns (code: aiops schema --json)")
        self.assertEqual(diff[1], "+++ raw: columns (terraform)")
        self.assertEqual(
            diff[2:],
            [
                "@@ -1,6 +1,6 @@",
                " schema_version int",
                "+event_time timestamp",
                " event_id string",
                "-event_time timestamp",
                " read_only boolean",
                " value_max double",
                " sub_sequence_number bigint",
            ],
        )

    def test_changed_type_is_a_diff(self) -> None:
        code = tables(schema_doc())
        tf = copy.deepcopy(code)
        tf["raw"].columns[5] = gt.Column("sub_sequence_number", "int")
        problems, _ = gt.compare(code, tf)
        self.assertEqual(len(problems), 1)
        self.assertIn("-sub_sequence_number bigint", problems[0].splitlines())
        self.assertIn("+sub_sequence_number int", problems[0].splitlines())

    def test_missing_column_is_a_diff(self) -> None:
        code = tables(schema_doc())
        tf = copy.deepcopy(code)
        del tf["findings"].columns[1]
        problems, _ = gt.compare(code, tf)
        self.assertEqual(len(problems), 1)
        self.assertIn("-score double", problems[0].splitlines())

    def test_partition_key_difference(self) -> None:
        code = tables(schema_doc())
        tf = copy.deepcopy(code)
        tf["raw"].partition_keys = [gt.Column("dt", "string"), gt.Column("hour", "string")]
        problems, _ = gt.compare(code, tf)
        self.assertEqual(len(problems), 1)
        self.assertTrue(problems[0].startswith("--- raw: partition keys (code: aiops schema --json)"))
        self.assertIn("-source string", problems[0].splitlines())

    def test_version_difference(self) -> None:
        code = tables(schema_doc())
        tf = copy.deepcopy(code)
        tf["findings"].version = 1
        tf["findings"].parameters = {"aiops.schema_version": "1"}
        problems, _ = gt.compare(code, tf)
        self.assertEqual(problems, ["findings: table parameter aiops.schema_version is '1', the code's schema version is 2"])

    def test_code_table_without_glue_table_is_a_note(self) -> None:
        code = tables(schema_doc())
        tf = {"raw": copy.deepcopy(code["raw"])}
        problems, notes = gt.compare(code, tf)
        self.assertEqual(problems, [])
        self.assertEqual(notes, ["the code's table 'findings' has no Glue table yet (run infra/tools/glue_tables.py write)"])

    def test_glue_table_without_code_schema_is_a_problem(self) -> None:
        code = tables(schema_doc())
        tf = copy.deepcopy(code)
        tf["decisions"] = copy.deepcopy(code["findings"])
        problems, _ = gt.compare(code, tf)
        self.assertEqual(problems, ["Glue table 'decisions' is in the Terraform but the code has no schema for it"])

    def test_raw_missing_on_either_side(self) -> None:
        code = tables(schema_doc())
        only_findings = {"findings": copy.deepcopy(code["findings"])}
        problems, _ = gt.compare(only_findings, only_findings)
        self.assertEqual(
            problems,
            ["the code's schema has no table 'raw'", "the Terraform has no aws_glue_catalog_table named 'raw'"],
        )


class RenderAndLoadTest(unittest.TestCase):
    """render() output, parsed back with python-hcl2, matches the schema and the layout."""

    def render_to(self, directory: pathlib.Path, code: dict[str, gt.Table]) -> None:
        (directory / "glue_tables.tf").write_text(gt.render(code), encoding="utf-8")

    def test_round_trip(self) -> None:
        code = tables(schema_doc())
        with tempfile.TemporaryDirectory() as d:
            self.render_to(pathlib.Path(d), code)
            tf = gt.load_terraform(pathlib.Path(d))
        self.assertEqual(list(tf), ["raw", "findings"])
        self.assertEqual(gt.compare(code, tf), ([], []))
        for t in tf.values():
            self.assertEqual(gt.layout_problems(t), [])
        self.assertEqual(
            tf["raw"].parameters["storage.location.template"],
            "s3://${aws_s3_bucket.history.id}/${var.history_prefix}/raw/source=$${source}/dt=$${dt}/hour=$${hour}",
        )
        self.assertEqual(tf["findings"].parameters["aiops.schema_version"], "2")

    def test_layout_violations_are_reported(self) -> None:
        code = tables(schema_doc())
        with tempfile.TemporaryDirectory() as d:
            text = gt.render({"raw": code["raw"]})
            text = text.replace('"projection.hour.digits"      = "2"', '"projection.hour.digits"      = "1"')
            text = text.replace("/source=$${source}/dt=$${dt}/", "/dt=$${dt}/source=$${source}/")
            text = text.replace(gt.PARQUET_SERDE, "org.openx.data.jsonserde.JsonSerDe")
            (pathlib.Path(d) / "glue_tables.tf").write_text(text, encoding="utf-8")
            tf = gt.load_terraform(pathlib.Path(d))
        self.assertEqual(
            gt.layout_problems(tf["raw"]),
            [
                "raw: table parameter 'storage.location.template' is "
                "'s3://${aws_s3_bucket.history.id}/${var.history_prefix}/raw/dt=${dt}/source=${source}/hour=${hour}', "
                "the layout needs 's3://${aws_s3_bucket.history.id}/${var.history_prefix}/raw/source=${source}/dt=${dt}/hour=${hour}'",
                "raw: table parameter 'projection.hour.digits' is '1', the layout needs '2'",
                "raw: storage_descriptor.ser_de_info.serialization_library is 'org.openx.data.jsonserde.JsonSerDe', "
                f"the layout needs '{gt.PARQUET_SERDE}'",
            ],
        )

    def test_render_refuses_other_partition_keys(self) -> None:
        doc = schema_doc()
        doc["tables"][0]["partition_keys"] = [{"name": "dt", "type": "string"}]
        with self.assertRaises(gt.SchemaError) as cm:
            gt.render(tables(doc))
        self.assertIn("are not the layout's", str(cm.exception))

    def test_duplicate_glue_table_is_an_error(self) -> None:
        code = tables(schema_doc())
        with tempfile.TemporaryDirectory() as d:
            self.render_to(pathlib.Path(d), {"raw": code["raw"]})
            text = (pathlib.Path(d) / "glue_tables.tf").read_text(encoding="utf-8")
            (pathlib.Path(d) / "copy.tf").write_text(text.replace('"aws_glue_catalog_table" "raw"', '"aws_glue_catalog_table" "raw2"'), encoding="utf-8")
            with self.assertRaises(gt.SchemaError) as cm:
                gt.load_terraform(pathlib.Path(d))
        self.assertIn("Glue table 'raw' defined twice", str(cm.exception))

    def test_committed_glue_tables_follow_the_layout(self) -> None:
        tf = gt.load_terraform(util.TERRAFORM)
        self.assertIn("raw", tf)
        for t in tf.values():
            self.assertEqual(gt.layout_problems(t), [], t.name)


class CommandLineTest(unittest.TestCase):
    def run_check(self, schema: dict, terraform_dir: pathlib.Path) -> tuple[int, str]:
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(schema, f)
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err):
                code = gt.main(["glue_tables.py", "check", "--schema", f.name, "--terraform", str(terraform_dir)])
        finally:
            pathlib.Path(f.name).unlink()
        return code, err.getvalue()

    def test_check_passes_silently_and_fails_with_diff(self) -> None:
        doc = schema_doc()
        with tempfile.TemporaryDirectory() as d:
            (pathlib.Path(d) / "glue_tables.tf").write_text(gt.render(tables(doc)), encoding="utf-8")
            self.assertEqual(self.run_check(doc, pathlib.Path(d)), (0, ""))
            doc["tables"][0]["columns"].append({"name": "new_column", "type": "string"})
            code, err = self.run_check(doc, pathlib.Path(d))
        self.assertEqual(code, 1)
        self.assertIn("the Glue tables in the Terraform differ from the code's Parquet schemas", err)
        self.assertIn("\n-new_column string\n", err)

    def test_check_reports_bad_schema_with_status_2(self) -> None:
        with tempfile.TemporaryDirectory() as d:
            code, err = self.run_check({"tables": [{"name": "raw"}]}, pathlib.Path(d))
        self.assertEqual(code, 2)
        self.assertIn('tables[0] (raw): "version" must be an integer >= 1, got None', err)


if __name__ == "__main__":
    unittest.main()
