"""The log metric filters of alarms.tf against the code and the binary's log lines.

alarms.tf counts dead letters and failed recoveries from the stages' JSON logs (the code publishes no
CloudWatch metrics). Each filter (local `log_metric_filters`: stage, metric, pattern) uses CloudWatch
Logs' JSON filter syntax restricted to a conjunction of string equalities,
`{ ($.level = "WARN") && ($.fields.message = "dead letter") }` (CloudWatch Logs user guide, "Filter
pattern syntax for metric filters", JSON log events). Two checks:

  source  every filter names a level and a message, and a tracing macro of that level logs exactly that
          message, with every other `$.fields.<name>` as a field, in the code of the filter's stage
          (pipeline/src/aws_mode/<stage>.rs, the stage's crate, or aws/src); a filter that matches nothing
          the stage logs fails here;
  match   the lines of a log (JSON lines as `aiops --log-format json` writes them) that the named
          filter matches must be at least one: the layout the filters assume (`level`, `fields.message`)
          is the binary's.

Usage:
  log_filters.py source --terraform DIR --repo ROOT
  log_filters.py match --terraform DIR --log FILE --filter NAME
Exit status 0 (silent) on success, 1 with one line per problem, 2 on usage or input errors.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re
import sys
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import hcl  # noqa: E402

#: Where each stage's log lines come from (paths relative to the repository root).
STAGE_SOURCES = {
    "ingest": ["pipeline/src/aws_mode/ingest.rs", "pipeline/src/aws_mode/mod.rs", "pipeline/src/aws_mode/settings.rs", "aws/src", "ingest/src"],
    "detect": ["pipeline/src/aws_mode/detect.rs", "pipeline/src/aws_mode/mod.rs", "pipeline/src/aws_mode/settings.rs", "aws/src", "detect/src"],
    "act": ["pipeline/src/aws_mode/act.rs", "pipeline/src/aws_mode/mod.rs", "pipeline/src/aws_mode/settings.rs", "aws/src", "act/src"],
}
#: A tracing macro call: level, then everything up to the closing `);` (fields, then the message literal).
MACRO = re.compile(r"tracing::(trace|debug|info|warn|error)!\((.*?)\)\s*;", re.S)
LAST_STRING = re.compile(r'"((?:[^"\\]|\\.)*)"\s*,?\s*$', re.S)
CONDITION = re.compile(r'^\(?\s*\$\.([A-Za-z0-9_.]+)\s*=\s*"([^"*]*)"\s*\)?$')


class FilterError(Exception):
    """A filter this tool cannot read; the message names it."""


def filters(root: pathlib.Path) -> dict[str, dict[str, Any]]:
    """The `log_metric_filters` local of the module: name -> {stage, metric, pattern}."""
    for path in hcl.tf_files(root):
        for block in hcl.load(path).get("locals", []):
            value = block.get("log_metric_filters")
            if isinstance(value, dict):
                return {
                    name: {k: _unescape(str(hcl.unquote(v))) for k, v in spec.items() if not k.startswith("__")}
                    for name, spec in value.items()
                    if not name.startswith("__")
                }
    raise FilterError(f"no local log_metric_filters under {root}")


def _unescape(text: str) -> str:
    return text.replace('\\"', '"').replace("\\\\", "\\")


def conditions(pattern: str) -> dict[str, str]:
    """`{ ($.a = "x") && ($.b.c = "y") }` as {"a": "x", "b.c": "y"}; FilterError for any other syntax."""
    m = re.fullmatch(r"\s*\{(.*)\}\s*", pattern, re.S)
    if not m:
        raise FilterError(f"not a JSON filter pattern: {pattern!r}")
    out: dict[str, str] = {}
    for part in m.group(1).split("&&"):
        c = CONDITION.match(part.strip())
        if not c:
            raise FilterError(f"unsupported condition {part.strip()!r} in {pattern!r} (only $.field = \"text\" joined by &&)")
        out[c.group(1)] = c.group(2)
    return out


def matches(conds: dict[str, str], event: Any) -> bool:
    """Whether a parsed JSON log event satisfies every equality."""
    for path, want in conds.items():
        value = event
        for key in path.split("."):
            if not isinstance(value, dict) or key not in value:
                return False
            value = value[key]
        if not isinstance(value, str) or value != want:
            return False
    return True


def logged_messages(repo: pathlib.Path, stage: str) -> list[tuple[str, str, str, str]]:
    """(file, level in upper case, message, field text) of every tracing macro in the stage's sources."""
    out = []
    for rel in STAGE_SOURCES[stage]:
        base = repo / rel
        files = sorted(base.rglob("*.rs")) if base.is_dir() else [base] if base.is_file() else []
        for f in files:
            text = f.read_text(encoding="utf-8")
            for m in MACRO.finditer(text):
                args = m.group(2)
                s = LAST_STRING.search(args)
                if s:
                    out.append((str(f.relative_to(repo)), m.group(1).upper(), s.group(1), args[: s.start()]))
    return out


def check_source(root: pathlib.Path, repo: pathlib.Path) -> list[str]:
    """Filters whose level and message no tracing call of their stage logs."""
    problems = []
    for name, spec in sorted(filters(root).items()):
        stage = spec.get("stage", "")
        if stage not in STAGE_SOURCES:
            problems.append(f"{name}: stage {stage!r} is not one of {sorted(STAGE_SOURCES)}")
            continue
        conds = conditions(spec.get("pattern", ""))
        level, message = conds.get("level"), conds.get("fields.message")
        if level is None or message is None:
            problems.append(f"{name}: the pattern must test $.level and $.fields.message")
            continue
        extra = [k.split(".", 1)[1] for k in conds if k.startswith("fields.") and k != "fields.message"]
        others = [k for k in conds if k != "level" and not k.startswith("fields.")]
        if others:
            problems.append(f"{name}: tests {others}, which the binary's JSON log lines do not have")
        found = [
            (f, lvl)
            for f, lvl, msg, fields in logged_messages(repo, stage)
            if msg == message and all(re.search(rf"\b{re.escape(x)}\s*=", fields) for x in extra)
        ]
        if not found:
            problems.append(f"{name}: no tracing call in the {stage} stage's code logs {message!r} with fields {extra}")
        elif not any(lvl == level for _, lvl in found):
            problems.append(f"{name}: {message!r} is logged at {sorted({lvl for _, lvl in found})}, the filter expects {level}")
    return problems


def count_matches(root: pathlib.Path, log: pathlib.Path, name: str) -> int:
    """Lines of a JSON-lines log that the filter `name` matches (non-JSON lines never match)."""
    specs = filters(root)
    if name not in specs:
        raise FilterError(f"no filter {name!r} in log_metric_filters ({sorted(specs)})")
    conds = conditions(specs[name]["pattern"])
    n = 0
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        n += matches(conds, event)
    return n


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="log_filters.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("source")
    p.add_argument("--terraform", type=pathlib.Path, required=True)
    p.add_argument("--repo", type=pathlib.Path, required=True)
    p = sub.add_parser("match")
    p.add_argument("--terraform", type=pathlib.Path, required=True)
    p.add_argument("--log", type=pathlib.Path, required=True)
    p.add_argument("--filter", required=True)
    args = parser.parse_args(argv[1:])
    try:
        if args.command == "source":
            problems = check_source(args.terraform, args.repo)
        else:
            n = count_matches(args.terraform, args.log, args.filter)
            problems = [] if n else [f"{args.filter}: matches no line of {args.log}"]
    except (FilterError, hcl.HclError, OSError) as e:
        print(f"log_filters: {e}", file=sys.stderr)
        return 2
    for line in problems:
        print(f"log_filters: {line}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
