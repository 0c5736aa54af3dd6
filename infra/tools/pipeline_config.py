"""The pipeline.toml the stages run with, rendered as Terraform renders it, and checked against the binary.

The ECS tasks (stages.tf) run `aiops <stage> --config pipeline.toml` with the text of
`templatefile("templates/pipeline.toml.tftpl", {...})`. This tool renders that file without an AWS
account, and checks that the binary accepts it and that the names it resolves are the Terraform
resource names:

  render   evaluates the arguments of the templatefile call in stages.tf (references to var.*, local.*,
           the caller identity and partition, and the SNS topic's ARN, with the variables of a .tfvars
           file over the defaults of variables.tf and a fixed account id), renders the template, and
           writes the file and the expected names (a JSON object, below) evaluated from locals.tf;
  from-plan  takes the same from `terraform test -json -verbose` of a plan against a mock AWS provider
           (infra/tests/terraform/pipeline_toml.tftest.hcl): output `pipeline_toml` and the planned
           resources' names (streams, tables, history bucket and its lifecycle prefix, CodeBuild
           projects, topic ARN);
  compare  compares `aiops validate --config <file> --json` (streams, tables, bucket, prefix, region,
           shards) and the rendered [act.*] sections (DynamoDB store and evidence location, SNS topic,
           Bedrock model, CodeBuild projects) with the expected names.

Expected names (JSON): {"region", "streams": {"raw", "events", "decisions"}, "shards": {...},
"tables": {"incidents", "leases", "locks", "patterns"}, "bucket", "prefix", "projects": {"apply",
"verify"}, "changes_table", "topic_arn", "model_id", "evidence_prefix" (null when not known)}.

Only what the module uses is evaluated: string templates with `${reference}` parts, numbers and
references; anything else (a function call, a conditional) is an error naming the expression, so a
change to the templatefile arguments that this renderer cannot follow fails loudly instead of
rendering something else. Template syntax: `${name}` and the `$${` escape (Terraform's template
language, https://developer.hashicorp.com/terraform/language/expressions/strings); a `%{` directive is
an error.

Usage:
  pipeline_config.py render --terraform DIR [--var-file FILE] --out TOML --expect JSON
  pipeline_config.py from-plan --test-output JSON_LINES --out TOML --expect JSON
  pipeline_config.py compare --config TOML --expect JSON --validate JSON
Exit status 0 (silent) on success, 1 with one line per problem, 2 on usage or input errors.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re
import sys
import tomllib
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import hcl  # noqa: E402

#: The account id and partition the renderer assumes (the mock provider of the Terraform test uses the same).
ACCOUNT_ID = "123456789012"
PARTITION = "aws"
TEMPLATE = "templates/pipeline.toml.tftpl"
#: Tables of the Parquet history (glue_tables.tf); the evidence prefix must lie outside their locations.
HISTORY_TABLES = ("raw", "findings", "incidents")


class RenderError(Exception):
    """An expression or template this renderer does not evaluate, or a missing input; the message names it."""


# --- evaluating the module's expressions -------------------------------------------------------------------


class Module:
    """The variables, locals and resources of a Terraform directory, parsed with python-hcl2."""

    def __init__(self, root: pathlib.Path, tfvars: dict[str, Any]) -> None:
        self.root = root
        self.vars: dict[str, Any] = {}
        self.locals: dict[str, Any] = {}
        self.resources: dict[tuple[str, str], dict[str, Any]] = {}
        self.stage_locals: dict[str, Any] = {}
        for path in hcl.tf_files(root):
            doc = hcl.load(path)
            for block in doc.get("variable", []):
                for name, body in block.items():
                    if "default" in body:
                        self.vars[str(hcl.unquote(name))] = _literal(body["default"])
            for block in doc.get("locals", []):
                for k, v in block.items():
                    if not k.startswith("__"):
                        self.locals[k] = v
            for entry in doc.get("resource", []):
                for rtype, by_name in entry.items():
                    for rname, body in by_name.items():
                        self.resources[(str(hcl.unquote(rtype)), str(hcl.unquote(rname)))] = body
        self.vars.update({k: _literal(v) for k, v in tfvars.items()})
        self._active: set[str] = set()

    def ref(self, expr: str) -> Any:
        """The value of a reference such as `var.name`, `local.stream_names.raw` or `aws_sns_topic.x.arn`."""
        parts = expr.split(".")
        if parts[0] == "var" and len(parts) == 2:
            if parts[1] not in self.vars:
                raise RenderError(f"variable {parts[1]!r} has no default and is not in the .tfvars file")
            return self.vars[parts[1]]
        if parts[0] == "local" and len(parts) >= 2:
            if parts[1] not in self.locals:
                raise RenderError(f"no local value {parts[1]!r}")
            if expr in self._active:
                raise RenderError(f"cycle through {expr}")
            self._active.add(expr)
            try:
                value: Any = self.locals[parts[1]]
                for p in parts[2:]:
                    if not isinstance(value, dict) or p not in value:
                        raise RenderError(f"{expr}: no key {p!r}")
                    value = value[p]
                return self.value(value)
            finally:
                self._active.discard(expr)
        if expr == "data.aws_caller_identity.current.account_id":
            return ACCOUNT_ID
        if expr == "data.aws_partition.current.partition":
            return PARTITION
        if len(parts) == 3 and parts[0] == "aws_sns_topic" and parts[2] == "arn":
            body = self.resources.get(("aws_sns_topic", parts[1]))
            if body is None:
                raise RenderError(f"no resource aws_sns_topic.{parts[1]}")
            name = self.value(body.get("name"))
            return f"arn:{PARTITION}:sns:{self.ref('var.region')}:{ACCOUNT_ID}:{name}"
        raise RenderError(f"cannot evaluate the reference {expr!r} without Terraform")

    def value(self, v: Any) -> Any:
        """A python-hcl2 attribute value evaluated: numbers and booleans as they are, strings with their
        `${reference}` parts replaced, maps and lists element-wise."""
        if isinstance(v, (bool, int, float)) or v is None:
            return v
        if isinstance(v, dict):
            return {k: self.value(x) for k, x in v.items() if not k.startswith("__")}
        if isinstance(v, list):
            return [self.value(x) for x in v]
        if not isinstance(v, str):
            raise RenderError(f"unsupported value {v!r}")
        whole = re.fullmatch(r"\$\{([A-Za-z0-9_.]+)\}", v)
        if whole:
            return self.ref(whole.group(1))
        if len(v) >= 2 and v[0] == '"' and v[-1] == '"':
            return self._string(v[1:-1])
        raise RenderError(f"cannot evaluate the expression {v!r} without Terraform")

    def _string(self, body: str) -> str:
        out: list[str] = []
        i = 0
        while i < len(body):
            if body.startswith("$${", i):
                out.append("${")
                i += 3
            elif body.startswith("${", i):
                end = body.find("}", i)
                inner = body[i + 2 : end] if end > 0 else ""
                if not re.fullmatch(r"[A-Za-z0-9_.]+", inner):
                    raise RenderError(f"cannot evaluate the interpolation ${{{inner}}} without Terraform")
                value = self.ref(inner)
                if isinstance(value, (dict, list)):
                    raise RenderError(f"${{{inner}}} is not a string")
                out.append(_tf_string(value))
                i = end + 1
            elif body.startswith("%{", i):
                raise RenderError("template directives (%{...}) are not evaluated")
            elif body[i] == "\\" and i + 1 < len(body):
                esc = body[i + 1]
                if esc not in ('"', "\\"):
                    raise RenderError(f"unsupported escape \\{esc} in {body!r}")
                out.append(esc)
                i += 2
            else:
                out.append(body[i])
                i += 1
        return "".join(out)

    def templatefile_args(self) -> dict[str, str]:
        """The argument map of the `templatefile(".../pipeline.toml.tftpl", {...})` call (name -> expression)."""
        expr = self.locals.get("pipeline_toml")
        if not isinstance(expr, str):
            raise RenderError("stages.tf has no local pipeline_toml")
        m = re.fullmatch(r'\$\{templatefile\("\$\{path\.module\}/' + re.escape(TEMPLATE) + r'", \{(.*)\}\)\}', expr, re.S)
        if not m:
            raise RenderError(f"local pipeline_toml is not templatefile({TEMPLATE!r}, {{...}}): {expr[:120]}")
        args: dict[str, str] = {}
        for item in m.group(1).split(","):
            key, sep, ref = item.partition("=")
            if not sep:
                raise RenderError(f"cannot read the templatefile argument {item.strip()!r}")
            args[key.strip()] = ref.strip()
        return args


def _literal(v: Any) -> Any:
    """A .tfvars or default value as Python: strings unquoted, maps and lists element-wise."""
    if isinstance(v, str):
        return hcl.unquote(v)
    if isinstance(v, dict):
        return {str(hcl.unquote(k)): _literal(x) for k, x in v.items() if not str(k).startswith("__")}
    if isinstance(v, list):
        return [_literal(x) for x in v]
    return v


def _tf_string(value: Any) -> str:
    """A primitive value as Terraform converts it to a string (numbers without a trailing .0)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def render_template(text: str, values: dict[str, Any]) -> str:
    """Renders a Terraform template that uses only `${name}` interpolations and the `$${` escape."""
    out: list[str] = []
    i = 0
    while i < len(text):
        if text.startswith("$${", i):
            out.append("${")
            i += 3
        elif text.startswith("${", i):
            end = text.find("}", i)
            name = text[i + 2 : end].strip() if end > 0 else ""
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise RenderError(f"template expression ${{{name}}} is not a variable name")
            if name not in values:
                raise RenderError(f"template variable {name!r} is not passed by the templatefile call")
            out.append(_tf_string(values[name]))
            i = end + 1
        elif text.startswith("%%{", i):
            out.append("%{")
            i += 3
        elif text.startswith("%{", i):
            raise RenderError("template directives (%{...}) are not rendered by this tool")
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def render(root: pathlib.Path, var_file: pathlib.Path | None) -> tuple[str, dict[str, Any]]:
    """(rendered pipeline.toml, expected names) for the module at root and the variables of var_file."""
    tfvars = hcl.load(var_file) if var_file else {}
    module = Module(root, tfvars)
    args = module.templatefile_args()
    values = {k: module.value("${" + ref + "}") for k, ref in args.items()}
    text = render_template((root / TEMPLATE).read_text(encoding="utf-8"), values)
    streams = module.ref("local.stream_names")
    tables = module.ref("local.table_names")
    expect = {
        "region": module.ref("var.region"),
        "streams": {k: streams[k] for k in ("raw", "events", "decisions")},
        "shards": {
            "raw": module.ref("var.raw_shard_count"),
            "events": module.ref("var.events_shard_count"),
            "decisions": module.ref("var.decisions_shard_count"),
        },
        "tables": {k: tables[k] for k in ("incidents", "leases", "locks", "patterns")},
        "changes_table": tables["changes"],
        "bucket": module.ref("local.history_bucket_name"),
        "prefix": module.ref("var.history_prefix"),
        "projects": {"apply": module.ref("local.apply_project_name"), "verify": module.ref("local.verify_project_name")},
        "topic_arn": module.ref("aws_sns_topic.notifications.arn"),
        "model_id": module.ref("var.bedrock_model_id"),
        "evidence_prefix": module.ref("local.evidence_prefix"),
    }
    return text, expect


# --- from a Terraform test plan --------------------------------------------------------------------------------


def from_plan(test_output: pathlib.Path) -> tuple[str, dict[str, Any]]:
    """(pipeline.toml, expected names) from the JSON lines of `terraform test -json -verbose` (one plan run)."""
    plan = None
    with test_output.open(encoding="utf-8") as f:
        for line in f:
            if '"test_plan"' not in line:
                continue
            msg = json.loads(line)
            if msg.get("type") == "test_plan":
                plan = msg["test_plan"]
    if plan is None:
        raise RenderError(f"{test_output}: no test_plan message (was the test run with -json -verbose?)")
    try:
        text = plan["output_changes"]["pipeline_toml"]["after"]
    except KeyError as e:
        raise RenderError(f"{test_output}: the plan has no output pipeline_toml") from e
    if not isinstance(text, str):
        raise RenderError("output pipeline_toml is unknown in the plan (a computed value reached the template)")
    after = {rc["address"]: rc["change"]["after"] for rc in plan.get("resource_changes", [])}

    def attr(address: str, name: str) -> Any:
        if address not in after or after[address] is None:
            raise RenderError(f"the plan has no resource {address}")
        value = after[address].get(name)
        if value is None:
            raise RenderError(f"{address}.{name} is unknown in the plan")
        return value

    lifecycle_prefix = None
    for rule in attr("aws_s3_bucket_lifecycle_configuration.history", "rule"):
        for flt in rule.get("filter") or []:
            if flt.get("prefix"):
                lifecycle_prefix = flt["prefix"].rstrip("/")
    if lifecycle_prefix is None:
        raise RenderError("aws_s3_bucket_lifecycle_configuration.history has no rule with a prefix filter")
    topic = attr("aws_sns_topic.notifications", "arn")
    expect = {
        "region": topic.split(":")[3],
        "streams": {k: attr(f'aws_kinesis_stream.this["{k}"]', "name") for k in ("raw", "events", "decisions")},
        "shards": {k: attr(f'aws_kinesis_stream.this["{k}"]', "shard_count") for k in ("raw", "events", "decisions")},
        "tables": {k: attr(f"aws_dynamodb_table.{k}", "name") for k in ("incidents", "leases", "locks", "patterns")},
        "changes_table": attr("aws_dynamodb_table.changes", "name"),
        "bucket": attr("aws_s3_bucket.history", "bucket"),
        "prefix": lifecycle_prefix,
        "projects": {k: attr(f'aws_codebuild_project.recovery["{k}"]', "name") for k in ("apply", "verify")},
        "topic_arn": topic,
        "model_id": None,
        "evidence_prefix": None,
    }
    return text, expect


# --- comparing with the binary ------------------------------------------------------------------------------------


def compare(config_text: str, expect: dict[str, Any], validate: dict[str, Any]) -> list[str]:
    """Differences between the binary's view of the rendered file and the expected names, one line each."""
    problems: list[str] = []

    def same(what: str, got: Any, want: Any) -> None:
        if got != want:
            problems.append(f"{what}: the rendered configuration has {got!r}, Terraform names {want!r}")

    same("mode", validate.get("mode"), "aws")
    for key in ("streams", "tables", "shards"):
        for name, want in expect[key].items():
            same(f"{key}.{name}", (validate.get(key) or {}).get(name), want)
    same("bucket", validate.get("bucket"), expect["bucket"])
    same("prefix", validate.get("prefix"), expect["prefix"])
    same("region", validate.get("region"), expect["region"])

    try:
        act = tomllib.loads(config_text).get("act", {})
    except tomllib.TOMLDecodeError as e:
        return problems + [f"the rendered configuration is not TOML: {e}"]
    store, notify = act.get("store", {}), act.get("notify", {})
    enrichment, recovery = act.get("enrichment", {}), act.get("recovery", {})
    same("act.store.backend", store.get("backend"), "dynamodb")
    same("act.store.incidents_table", store.get("incidents_table"), expect["tables"]["incidents"])
    same("act.store.locks_table", store.get("locks_table"), expect["tables"]["locks"])
    same("act.store.stats_table", store.get("stats_table"), expect["tables"]["patterns"])
    same("act.store.evidence_bucket", store.get("evidence_bucket"), expect["bucket"])
    same("act.changes.table", act.get("changes", {}).get("table"), expect["changes_table"])
    evidence = str(store.get("evidence_prefix", "")).strip("/")
    if expect.get("evidence_prefix") is not None:
        same("act.store.evidence_prefix", evidence, expect["evidence_prefix"])
    if not evidence.startswith(expect["prefix"] + "/"):
        problems.append(f"act.store.evidence_prefix: {evidence!r} is not under the history prefix {expect['prefix']!r}")
    for table in HISTORY_TABLES:
        location = f"{expect['prefix']}/{table}"
        if evidence == location or evidence.startswith(location + "/"):
            problems.append(f"act.store.evidence_prefix: {evidence!r} lies inside the Glue table location {location}/")
    same("act.notify.backend", notify.get("backend"), "sns")
    same("act.notify.topic_arn", notify.get("topic_arn"), expect["topic_arn"])
    same("act.enrichment.provider", enrichment.get("provider"), "bedrock")
    if expect.get("model_id") is not None:
        same("act.enrichment.model_id", enrichment.get("model_id"), expect["model_id"])
    same("act.recovery.executor", recovery.get("executor"), "codebuild")
    same("act.recovery.apply_project", recovery.get("apply_project"), expect["projects"]["apply"])
    same("act.recovery.verify_project", recovery.get("verify_project"), expect["projects"]["verify"])
    return problems


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="pipeline_config.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("render")
    p.add_argument("--terraform", type=pathlib.Path, required=True)
    p.add_argument("--var-file", type=pathlib.Path)
    p.add_argument("--out", type=pathlib.Path, required=True)
    p.add_argument("--expect", type=pathlib.Path, required=True)
    p = sub.add_parser("from-plan")
    p.add_argument("--test-output", type=pathlib.Path, required=True)
    p.add_argument("--out", type=pathlib.Path, required=True)
    p.add_argument("--expect", type=pathlib.Path, required=True)
    p = sub.add_parser("compare")
    p.add_argument("--config", type=pathlib.Path, required=True)
    p.add_argument("--expect", type=pathlib.Path, required=True)
    p.add_argument("--validate", type=pathlib.Path, required=True)
    args = parser.parse_args(argv[1:])
    try:
        if args.command in ("render", "from-plan"):
            if args.command == "render":
                text, expect = render(args.terraform, args.var_file)
            else:
                text, expect = from_plan(args.test_output)
            args.out.write_text(text, encoding="utf-8")
            args.expect.write_text(json.dumps(expect, indent=1, sort_keys=True) + "\n", encoding="utf-8")
            return 0
        problems = compare(
            args.config.read_text(encoding="utf-8"),
            json.loads(args.expect.read_text(encoding="utf-8")),
            json.loads(args.validate.read_text(encoding="utf-8")),
        )
    except (RenderError, hcl.HclError, OSError, json.JSONDecodeError) as e:
        print(f"pipeline_config: {e}", file=sys.stderr)
        return 2
    for line in problems:
        print(f"pipeline_config: {line}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
