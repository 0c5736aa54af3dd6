"""The stage roles grant every DynamoDB call the stage's code makes, on the table it makes it on
(act/src/dynamo/ for act and ingest, history/src/patterns.rs for detect's learned baselines).

IAM denies what a role does not grant, and nothing but a deployment shows it: a stage whose role lacks
one call fails on AWS while every emulator test passes (moto does not enforce IAM). This test reads
the calls from the code (`.<operation>()` followed by `.table_name(&self.cfg.<table>)` in
act/src/dynamo/) and the grants from the Terraform policy documents (infra/tools/iam_lint.py's view).
"""

from __future__ import annotations

import re
import unittest

from . import util

import iam_lint  # noqa: E402

REPO = util.INFRA.parent
DYNAMO = REPO / "act" / "src" / "dynamo"

#: Configuration field of a table name in the code -> the Terraform aws_dynamodb_table resource.
TABLES = {"incidents_table": "incidents", "locks_table": "locks", "stats_table": "patterns", "table": "changes"}

#: Functions only an operator's command runs (`aiops setup`, `aiops suppress add|remove`,
#: `aiops incidents resolve --not-an-incident`), with the operator's credentials, never a stage.
OPERATOR_ONLY = {"create_tables", "create_table", "put_suppression", "remove_suppression", "add_feedback"}

#: Functions of the recent-changes index by the stage that calls them (act/src/dynamo/changes.rs):
#: ingest records changes, act reads them.
CHANGE_INDEX_STAGE = {"record": "ingest", "recent": "act"}


#: Functions of history/src/patterns.rs (learned baselines in the patterns table) the detect stage
#: runs when it starts; the others are `aiops learn`'s (an operator's).
BASELINE_READERS = {"current", "load"}


def calls() -> dict[str, set[tuple[str, str]]]:
    """{stage: {(IAM action, table resource)}} of the DynamoDB calls the stages make."""
    out: dict[str, set[tuple[str, str]]] = {"ingest": set(), "detect": set(), "act": set()}
    patterns = (REPO / "history" / "src" / "patterns.rs").read_text(encoding="utf-8")
    parts = re.split(r"\n\s*(?:pub(?:\([a-z]+\))? )?(?:async )?fn (\w+)", patterns)
    for name, body in zip(parts[1::2], parts[2::2]):
        if name in BASELINE_READERS:
            for op in re.findall(r"\.(\w+)\(\)\s*\.table_name\(table\)", body):
                out["detect"].add(("dynamodb:" + "".join(w.capitalize() for w in op.split("_")), "patterns"))
    for path in sorted(DYNAMO.glob("*.rs")):
        if path.name == "tests.rs":
            continue
        text = path.read_text(encoding="utf-8")
        # Split at function definitions: each call belongs to the function above it.
        parts = re.split(r"\n\s*(?:pub(?:\([a-z]+\))? )?fn (\w+)", text)
        for name, body in zip(parts[1::2], parts[2::2]):
            if name in OPERATOR_ONLY:
                continue
            stage = CHANGE_INDEX_STAGE.get(name, "act") if path.name == "changes.rs" else "act"
            for op, field in re.findall(r"\.(\w+)\(\)\s*\.table_name\(&self\.cfg\.(\w+)\)", body):
                action = "dynamodb:" + "".join(w.capitalize() for w in op.split("_"))
                out[stage].add((action, TABLES[field]))
    return out


def granted(statements: list[dict], action: str, table: str) -> bool:
    arn = f"aws_dynamodb_table.{table}.arn"
    for st in statements:
        effect = str(st.get("effect", "Allow")).strip('"')
        if effect != "Allow":
            continue
        actions = iam_lint._strings(st.get("actions", []), {})
        resources = " ".join(iam_lint._strings(st.get("resources", []), {}))
        if action in actions and arn in resources:
            return True
    return False


class StageGrantsTest(unittest.TestCase):
    def test_the_code_makes_the_calls_this_test_expects(self) -> None:
        # A guard against the parser silently finding nothing.
        c = calls()
        self.assertIn(("dynamodb:UpdateItem", "locks"), c["act"])
        self.assertIn(("dynamodb:Query", "changes"), c["act"])
        self.assertEqual(c["ingest"], {("dynamodb:PutItem", "changes")})
        self.assertEqual(c["detect"], {("dynamodb:GetItem", "patterns")})

    def test_every_stage_call_is_granted(self) -> None:
        docs, _ = iam_lint.collect(util.TERRAFORM)
        missing = []
        for stage, needed in calls().items():
            for role in (stage, "all"):
                for action, table in sorted(needed):
                    if not granted(docs.get(role, []), action, table):
                        missing.append(f"{role}: {action} on aws_dynamodb_table.{table}")
        self.assertEqual(missing, [])


if __name__ == "__main__":
    unittest.main()
