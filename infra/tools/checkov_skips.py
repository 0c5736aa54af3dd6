"""Every checkov skip under a directory carries a written reason.

A skip is an inline comment `#checkov:skip=<CHECK_ID>:<reason>` in a .tf file. This fails (exit 1,
one line per offence) for a skip without a check id of the form CKV_AWS_123 / CKV2_AWS_12, or whose
reason is shorter than MIN_REASON characters. It also fails for a checkov configuration file
(.checkov.yaml / .checkov.yml) under the directory, since a `skip-check` there would carry no reason.

Usage: python checkov_skips.py <dir>
"""

from __future__ import annotations

import pathlib
import re
import sys

MIN_REASON = 20
SKIP = re.compile(r"checkov:skip=([^:\s]*)(?::(.*))?")
CHECK_ID = re.compile(r"^CKV2?_[A-Z0-9]+_\d+$")


def offences(root: pathlib.Path) -> list[str]:
    """Skips without a valid check id or a reason of at least MIN_REASON characters; config files."""
    out: list[str] = []
    for cfg in list(root.rglob(".checkov.yaml")) + list(root.rglob(".checkov.yml")):
        out.append(f"{cfg}: checkov configuration files are not allowed (skips there have no reason)")
    for path in sorted(root.rglob("*.tf")):
        if ".terraform" in path.parts:
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            m = SKIP.search(line)
            if not m:
                continue
            check, reason = m.group(1), (m.group(2) or "").strip()
            if not CHECK_ID.match(check):
                out.append(f"{path}:{n}: skip of {check!r}, not a checkov check id")
            if len(reason) < MIN_REASON:
                out.append(f"{path}:{n}: skip of {check} without a written reason (at least {MIN_REASON} characters)")
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: checkov_skips.py <dir>", file=sys.stderr)
        return 2
    problems = offences(pathlib.Path(argv[1]))
    for p in problems:
        print(f"checkov_skips: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
