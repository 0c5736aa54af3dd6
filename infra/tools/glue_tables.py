"""Glue tables of the Parquet history: generated from, and checked against, the code's schemas.

The code owns the Parquet schemas (DESIGN section 7); `aiops schema --json` prints them as

    {"tables": [{"name": "raw", "version": 1,
                 "columns": [{"name": "event_id", "type": "string"}, ...],
                 "partition_keys": [{"name": "source", "type": "string"}, ...]}, ...]}

with Glue/Hive type names. This tool

- `render`: prints infra/terraform/glue_tables.tf for such a schema (one aws_glue_catalog_table per
  table, Parquet SerDe, partition projection for the layout
  `<prefix>/<table>/source=<source>/dt=YYYY-MM-DD/hour=HH/<file>.parquet`);
- `write`: the same, written to <terraform dir>/glue_tables.tf;
- `check`: parses every .tf file of the Terraform directory (python-hcl2), and fails, with a diff, if
  a Glue table's columns (names, types, order), partition keys or schema version differ from the
  code's, or if its partition projection or location does not match the layout above.

Tables compared: those present in both the code's schema and the Terraform. `raw` must be in both; a
Glue table with no schema in the code is an error; a code table without a Glue table is reported as a
note (it is not queryable from Athena until `write` adds it).

Partition projection reference: Athena user guide, "Partition projection with Amazon Athena" and
"Supported types for partition projection" (enum, date, integer with digits).

Exit status of check: 0 = match (prints nothing but notes), 1 = mismatch, 2 = bad input.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import pathlib
import re
import sys
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

# --- the layout (DESIGN section 7) -------------------------------------------------------------

#: Partition keys of every history table, in path order, with their Glue type.
LAYOUT_PARTITION_KEYS: tuple[tuple[str, str], ...] = (("source", "string"), ("dt", "string"), ("hour", "string"))

#: Values of the `source` partition (the normalised event's source).
SOURCE_VALUES = "cloudtrail,logs,metrics"

#: Partition projection parameters per partition key, as Athena expects them in the table parameters.
#: `dt`'s range starts at the Terraform variable history_start_date and ends at NOW.
PROJECTION: dict[str, dict[str, str]] = {
    "source": {"type": "enum", "values": SOURCE_VALUES},
    "dt": {
        "type": "date",
        "format": "yyyy-MM-dd",
        "range": "${var.history_start_date},NOW",
        "interval": "1",
        "interval.unit": "DAYS",
    },
    "hour": {"type": "integer", "range": "0,23", "digits": "2"},
}

BUCKET_EXPR = "${aws_s3_bucket.history.id}"
PREFIX_EXPR = "${var.history_prefix}"

PARQUET_INPUT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
PARQUET_OUTPUT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"
PARQUET_SERDE = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"

#: Glue/Hive primitive type names accepted in a schema (DESIGN: nested JSON is kept as strings).
PRIMITIVE_TYPES = frozenset(
    {"string", "int", "bigint", "smallint", "tinyint", "double", "float", "boolean", "timestamp", "date", "binary"}
)
DECIMAL_TYPE = re.compile(r"^decimal\(\d{1,2},\d{1,2}\)$")
IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")

TABLE_DESCRIPTIONS = {
    "raw": "Normalised events (CloudTrail, CloudWatch Logs, metric streams) archived by the ingest stage",
    "findings": "Findings of the detect stage (change rules, statistical anomalies, novelty)",
    "incidents": "Incidents of the act stage: decision, workflow states, recovery and outcome",
}


class SchemaError(Exception):
    """The code's schema JSON is malformed; the message says where."""


@dataclasses.dataclass(frozen=True)
class Column:
    """One column: lower-case snake_case name and Glue/Hive type name."""

    name: str
    type: str

    def line(self) -> str:
        return f"{self.name} {self.type}"


@dataclasses.dataclass
class Table:
    """A history table as the code or the Terraform describes it."""

    name: str
    version: int | None
    columns: list[Column]
    partition_keys: list[Column]
    parameters: dict[str, str] = dataclasses.field(default_factory=dict)
    location: str | None = None
    input_format: str | None = None
    output_format: str | None = None
    serde: str | None = None


# --- the code's schema -------------------------------------------------------------------------------


def _columns(value: Any, where: str) -> list[Column]:
    if not isinstance(value, list):
        raise SchemaError(f"{where}: expected a list of {{name, type}} objects")
    out: list[Column] = []
    seen: set[str] = set()
    for i, c in enumerate(value):
        if not isinstance(c, dict) or not isinstance(c.get("name"), str) or not isinstance(c.get("type"), str):
            raise SchemaError(f"{where}[{i}]: expected {{\"name\": string, \"type\": string}}, got {c!r}")
        name, typ = c["name"], c["type"]
        if not IDENTIFIER.match(name):
            raise SchemaError(f"{where}[{i}]: column name {name!r} is not lower-case snake_case")
        if typ not in PRIMITIVE_TYPES and not DECIMAL_TYPE.match(typ):
            raise SchemaError(f"{where}[{i}]: column {name!r} has type {typ!r}, not a Glue/Hive primitive type")
        if name in seen:
            raise SchemaError(f"{where}[{i}]: duplicate column {name!r}")
        seen.add(name)
        out.append(Column(name, typ))
    return out


def parse_schema(text: str) -> dict[str, Table]:
    """The tables of `aiops schema --json` output, by name, in output order.

    Raises SchemaError if the text is not one JSON object of the documented shape (table and column
    names lower-case snake_case, known types, integer versions, no duplicates, partition keys not also
    columns).
    """
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise SchemaError(f"not JSON ({e}); first 200 characters: {text[:200]!r}") from e
    if not isinstance(doc, dict) or not isinstance(doc.get("tables"), list):
        raise SchemaError('expected an object {"tables": [...]}')
    tables: dict[str, Table] = {}
    for i, t in enumerate(doc["tables"]):
        where = f"tables[{i}]"
        if not isinstance(t, dict) or not isinstance(t.get("name"), str):
            raise SchemaError(f"{where}: expected an object with a string \"name\"")
        name = t["name"]
        if not IDENTIFIER.match(name):
            raise SchemaError(f"{where}: table name {name!r} is not lower-case snake_case")
        if name in tables:
            raise SchemaError(f"{where}: duplicate table {name!r}")
        version = t.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise SchemaError(f"{where} ({name}): \"version\" must be an integer >= 1, got {version!r}")
        columns = _columns(t.get("columns"), f"{where} ({name}).columns")
        if not columns:
            raise SchemaError(f"{where} ({name}): no columns")
        keys = _columns(t.get("partition_keys"), f"{where} ({name}).partition_keys")
        clash = {c.name for c in columns} & {k.name for k in keys}
        if clash:
            raise SchemaError(f"{where} ({name}): partition keys also listed as columns: {sorted(clash)}")
        tables[name] = Table(name, version, columns, keys)
    return tables


# --- the Terraform --------------------------------------------------------------------------------------


def _hcl_columns(blocks: list[dict[str, Any]]) -> list[Column]:
    import hcl

    return [Column(str(hcl.unquote(b.get("name"))), str(hcl.unquote(b.get("type")))) for b in blocks]


def load_terraform(root: pathlib.Path) -> dict[str, Table]:
    """Every aws_glue_catalog_table of the .tf files under root, by Glue table name.

    Columns and partition keys are read from literal `columns` / `partition_keys` blocks (a `dynamic`
    block is not evaluated: its table then shows no columns and fails the comparison).
    Raises hcl.HclError if a file does not parse, SchemaError if a table name is not a literal or two
    resources define the same Glue table.
    """
    import hcl

    tables: dict[str, Table] = {}
    for path in hcl.tf_files(root):
        doc = hcl.load(path)
        for rname, body in hcl.resources(doc, "aws_glue_catalog_table"):
            name = hcl.unquote(body.get("name"))
            if not isinstance(name, str) or not IDENTIFIER.match(name):
                raise SchemaError(f"{path}: aws_glue_catalog_table.{rname}: name must be a literal snake_case string, got {name!r}")
            if name in tables:
                raise SchemaError(f"{path}: aws_glue_catalog_table.{rname}: Glue table {name!r} defined twice")
            sds = hcl.blocks(body, "storage_descriptor")
            sd = sds[0] if sds else {}
            serdes = hcl.blocks(sd, "ser_de_info")
            params = hcl.string_map(body.get("parameters"))
            version_text = params.get("aiops.schema_version")
            version = int(version_text) if version_text is not None and version_text.isdigit() else None
            tables[name] = Table(
                name=name,
                version=version,
                columns=_hcl_columns(hcl.blocks(sd, "columns")),
                partition_keys=_hcl_columns(hcl.blocks(body, "partition_keys")),
                parameters=params,
                location=hcl.unquote(sd.get("location")),
                input_format=hcl.unquote(sd.get("input_format")),
                output_format=hcl.unquote(sd.get("output_format")),
                serde=hcl.unquote(serdes[0].get("serialization_library")) if serdes else None,
            )
    return tables


# --- comparison --------------------------------------------------------------------------------------------


def _diff(label: str, expected: list[Column], actual: list[Column]) -> list[str]:
    if expected == actual:
        return []
    lines = difflib.unified_diff(
        [c.line() for c in expected],
        [c.line() for c in actual],
        fromfile=f"{label} (code: aiops schema --json)",
        tofile=f"{label} (terraform)",
        lineterm="",
    )
    return ["\n".join(lines)]


def compare(code: dict[str, Table], terraform: dict[str, Table]) -> tuple[list[str], list[str]]:
    """(problems, notes) of comparing the code's tables with the Terraform's.

    Problems: `raw` missing on either side; a Terraform table with no code schema; for each table in
    both, a difference in columns (names, types, order) or partition keys, shown as a unified diff, or
    a schema version other than the code's. Notes: code tables that have no Glue table.
    """
    problems: list[str] = []
    notes: list[str] = []
    if "raw" not in code:
        problems.append("the code's schema has no table 'raw'")
    if "raw" not in terraform:
        problems.append("the Terraform has no aws_glue_catalog_table named 'raw'")
    for name in terraform:
        if name not in code:
            problems.append(f"Glue table {name!r} is in the Terraform but the code has no schema for it")
    for name, want in code.items():
        have = terraform.get(name)
        if have is None:
            if name != "raw":
                notes.append(f"the code's table {name!r} has no Glue table yet (run infra/tools/glue_tables.py write)")
            continue
        problems += _diff(f"{name}: columns", want.columns, have.columns)
        problems += _diff(f"{name}: partition keys", want.partition_keys, have.partition_keys)
        if have.version != want.version:
            problems.append(
                f"{name}: table parameter aiops.schema_version is {have.parameters.get('aiops.schema_version')!r}, the code's schema version is {want.version}"
            )
    return problems, notes


def expected_location(table: str) -> str:
    """The table's S3 location as the Terraform must write it (a directory, trailing '/')."""
    return f"s3://{BUCKET_EXPR}/{PREFIX_EXPR}/{table}/"


def expected_location_template(table: str) -> str:
    """storage.location.template of the table: its location plus the Hive-style partition path."""
    path = "/".join(f"{k}=${{{k}}}" for k, _ in LAYOUT_PARTITION_KEYS)
    return f"s3://{BUCKET_EXPR}/{PREFIX_EXPR}/{table}/{path}"


def expected_parameters(table: Table) -> dict[str, str]:
    """The table parameters the layout requires (projection, Parquet, schema version)."""
    params = {
        "EXTERNAL": "TRUE",
        "classification": "parquet",
        "projection.enabled": "true",
        "storage.location.template": expected_location_template(table.name),
    }
    for key, _ in LAYOUT_PARTITION_KEYS:
        for k, v in PROJECTION[key].items():
            params[f"projection.{key}.{k}"] = v
    if table.version is not None:
        params["aiops.schema_version"] = str(table.version)
    return params


def _unescape(value: str) -> str:
    # HCL writes a literal ${ as $${ (python-hcl2 returns the escape as written).
    return value.replace("$${", "${")


def layout_problems(table: Table) -> list[str]:
    """Differences between a Terraform Glue table and the Parquet layout of DESIGN section 7."""
    problems: list[str] = []
    want_keys = [Column(k, t) for k, t in LAYOUT_PARTITION_KEYS]
    problems += _diff(f"{table.name}: partition keys vs the layout source/dt/hour", want_keys, table.partition_keys)
    params = {k: _unescape(v) for k, v in table.parameters.items()}
    for k, v in expected_parameters(table).items():
        if k == "aiops.schema_version":
            continue
        if params.get(k) != v:
            problems.append(f"{table.name}: table parameter {k!r} is {params.get(k)!r}, the layout needs {v!r}")
    if table.version is None:
        problems.append(f"{table.name}: table parameter 'aiops.schema_version' is missing or not an integer")
    checks = [
        ("storage_descriptor.location", table.location, expected_location(table.name)),
        ("storage_descriptor.input_format", table.input_format, PARQUET_INPUT),
        ("storage_descriptor.output_format", table.output_format, PARQUET_OUTPUT),
        ("storage_descriptor.ser_de_info.serialization_library", table.serde, PARQUET_SERDE),
    ]
    for what, have, want in checks:
        if have != want:
            problems.append(f"{table.name}: {what} is {have!r}, the layout needs {want!r}")
    return problems


# --- rendering --------------------------------------------------------------------------------------------


def _hcl_string(value: str) -> str:
    out = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{out}"'


def _hcl_template(value: str) -> str:
    # Like _hcl_string, but keeps the ${...} interpolations of the bucket/prefix and escapes the
    # Athena placeholders ${source} etc. as $${source}.
    out = value.replace("\\", "\\\\").replace('"', '\\"')
    for key, _ in LAYOUT_PARTITION_KEYS:
        out = out.replace(f"${{{key}}}", f"$${{{key}}}")
    return f'"{out}"'


def render(code: dict[str, Table]) -> str:
    """glue_tables.tf for the code's tables (in schema order).

    Raises SchemaError if a table's partition keys are not the layout's source/dt/hour strings.
    """
    want_keys = [Column(k, t) for k, t in LAYOUT_PARTITION_KEYS]
    out = [
        "# GENERATED by infra/tools/glue_tables.py from `aiops schema --json`: do not edit by hand.",
        "# Regenerate after a schema change:",
        "#   target/debug/aiops schema --json > /tmp/schema.json",
        "#   python3 infra/tools/glue_tables.py write --schema /tmp/schema.json --terraform infra/terraform",
        "# infra/check fails when these tables and the code's Parquet schemas differ.",
        "#",
        "# Layout (DESIGN section 7): <history_prefix>/<table>/source=<source>/dt=YYYY-MM-DD/hour=HH/<file>.parquet,",
        "# read through Athena partition projection (no crawler, no MSCK REPAIR).",
    ]
    for t in code.values():
        if t.partition_keys != want_keys:
            raise SchemaError(
                f"table {t.name!r}: partition keys {[c.line() for c in t.partition_keys]} are not the layout's {[c.line() for c in want_keys]}"
            )
        desc = TABLE_DESCRIPTIONS.get(t.name, f"aiops history table {t.name}")
        params = expected_parameters(t)
        width = max(len(_hcl_string(k)) for k in params)
        out.append("")
        out.append(f'resource "aws_glue_catalog_table" "{t.name}" {{')
        out.append(f"  name          = {_hcl_string(t.name)}")
        out.append("  database_name = aws_glue_catalog_database.history.name")
        out.append(f"  description   = {_hcl_string(f'{desc} (schema version {t.version})')}")
        out.append('  table_type    = "EXTERNAL_TABLE"')
        out.append("")
        out.append("  parameters = {")
        for k, v in params.items():
            out.append(f"    {_hcl_string(k).ljust(width)} = {_hcl_template(v)}")
        out.append("  }")
        for c in t.partition_keys:
            out.append("")
            out.append("  partition_keys {")
            out.append(f"    name = {_hcl_string(c.name)}")
            out.append(f"    type = {_hcl_string(c.type)}")
            out.append("  }")
        out.append("")
        out.append("  storage_descriptor {")
        out.append(f"    location      = {_hcl_template(expected_location(t.name))}")
        out.append(f"    input_format  = {_hcl_string(PARQUET_INPUT)}")
        out.append(f"    output_format = {_hcl_string(PARQUET_OUTPUT)}")
        out.append("")
        out.append("    ser_de_info {")
        out.append('      name                  = "parquet"')
        out.append(f"      serialization_library = {_hcl_string(PARQUET_SERDE)}")
        out.append("      parameters = {")
        out.append('        "serialization.format" = "1"')
        out.append("      }")
        out.append("    }")
        for c in t.columns:
            out.append("")
            out.append("    columns {")
            out.append(f"      name = {_hcl_string(c.name)}")
            out.append(f"      type = {_hcl_string(c.type)}")
            out.append("    }")
        out.append("  }")
        out.append("}")
    return "\n".join(out) + "\n"


# --- command line ------------------------------------------------------------------------------------------


def _read_schema(path: str) -> dict[str, Table]:
    text = sys.stdin.read() if path == "-" else pathlib.Path(path).read_text(encoding="utf-8")
    return parse_schema(text)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("check", "render", "write"):
        p = sub.add_parser(name)
        p.add_argument("--schema", required=True, help="output of `aiops schema --json` (a file, or - for stdin)")
        if name != "render":
            p.add_argument("--terraform", required=True, help="the Terraform directory (infra/terraform)")
    args = parser.parse_args(argv[1:])

    try:
        code = _read_schema(args.schema)
        if args.command == "render":
            sys.stdout.write(render(code))
            return 0
        root = pathlib.Path(args.terraform)
        if args.command == "write":
            (root / "glue_tables.tf").write_text(render(code), encoding="utf-8")
            return 0
    except (SchemaError, OSError) as e:
        print(f"glue_tables: {e}", file=sys.stderr)
        return 2

    import hcl  # python-hcl2 is needed for check only

    try:
        terraform = load_terraform(root)
    except (SchemaError, hcl.HclError, OSError) as e:
        print(f"glue_tables: {e}", file=sys.stderr)
        return 2

    problems, notes = compare(code, terraform)
    for table in terraform.values():
        problems += layout_problems(table)
    for n in notes:
        print(f"glue_tables: note: {n}", file=sys.stderr)
    if problems:
        print("glue_tables: the Glue tables in the Terraform differ from the code's Parquet schemas:", file=sys.stderr)
        for p in problems:
            print(p, file=sys.stderr)
        print(
            "glue_tables: to regenerate: \"$AIOPS_BIN\" schema --json > /tmp/schema.json && "
            "python3 infra/tools/glue_tables.py write --schema /tmp/schema.json --terraform infra/terraform",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
