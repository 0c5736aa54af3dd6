"""Reading Terraform files with python-hcl2 (PyPI `python-hcl2`, pinned in requirements-hcl2.txt).

python-hcl2 8.x returns string literals with their quotes (`"raw"`) and block labels quoted as dict
keys; older releases return them bare. `unquote` and `blocks` hide that difference so the checks work
with either.
"""

from __future__ import annotations

import pathlib
from typing import Any, Iterator

import hcl2  # type: ignore[import-untyped]


class HclError(Exception):
    """A .tf file that python-hcl2 cannot parse; the message names the file and the parser's error."""


def load(path: pathlib.Path) -> dict[str, Any]:
    """Parses one .tf file into python-hcl2's dict form.

    Raises HclError (file name and parser message) if the file is not valid HCL2.
    """
    try:
        with path.open("r", encoding="utf-8") as f:
            return hcl2.load(f)
    except Exception as e:  # python-hcl2 raises lark errors of several types
        raise HclError(f"{path}: {type(e).__name__}: {e}") from e


def unquote(value: Any) -> Any:
    """A string literal without its surrounding double quotes; other values unchanged."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        return value[1:-1]
    return value


def tf_files(root: pathlib.Path) -> list[pathlib.Path]:
    """Every .tf file under root (recursively, skipping .terraform/ working directories), sorted."""
    return sorted(p for p in root.rglob("*.tf") if ".terraform" not in p.parts)


def resources(doc: dict[str, Any], resource_type: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(name, body) of every `resource "<resource_type>" "<name>"` block of a parsed file."""
    for entry in doc.get("resource", []):
        for rtype, by_name in entry.items():
            if unquote(rtype) != resource_type:
                continue
            for rname, body in by_name.items():
                yield unquote(rname), body


def blocks(body: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """The nested blocks `name { ... }` of a block body, in file order (empty list if none)."""
    value = body.get(name, [])
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list):
        return [b for b in value if isinstance(b, dict)]
    return []


def string_map(value: Any) -> dict[str, str]:
    """A map attribute (`parameters = { "k" = "v" }`) as plain strings, quotes removed."""
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], dict):
        value = value[0]
    if not isinstance(value, dict):
        return {}
    return {str(unquote(k)): str(unquote(v)) for k, v in value.items() if k != "__is_block__"}
