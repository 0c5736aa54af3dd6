"""Shared paths for the tests: the infra directory, its Terraform and tools (put on sys.path)."""

import pathlib
import sys

INFRA = pathlib.Path(__file__).resolve().parent.parent
TERRAFORM = INFRA / "terraform"
TOOLS = INFRA / "tools"
if str(TOOLS) not in sys.path:
    sys.path.insert(0, str(TOOLS))
