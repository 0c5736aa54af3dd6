"""Check 1: every .tf file under a directory parses with python-hcl2.

Usage: python parse_tf.py <dir>
Exit status 0 if all files parse (prints nothing), 1 if any fails (prints each failure), 2 if the
directory holds no .tf file.
"""

from __future__ import annotations

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import hcl  # noqa: E402


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: parse_tf.py <dir>", file=sys.stderr)
        return 2
    root = pathlib.Path(argv[1])
    files = hcl.tf_files(root)
    if not files:
        print(f"parse_tf: no .tf file under {root}", file=sys.stderr)
        return 2
    failures = []
    for path in files:
        try:
            hcl.load(path)
        except hcl.HclError as e:
            failures.append(str(e))
    for f in failures:
        print(f"parse_tf: {f}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
