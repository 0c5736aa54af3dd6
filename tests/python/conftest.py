import os
import pathlib
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def aiops_bin():
    path = os.environ.get("AIOPS_BIN") or str(ROOT / "target" / "debug" / "aiops")
    if not os.path.exists(path):
        pytest.fail(f"aiops binary not found at {path}: build it first (cargo build) or set AIOPS_BIN")
    return path


@pytest.fixture(scope="session")
def shared_data():
    return pathlib.Path(os.environ.get("AIOPS_SHARED_DATA") or (ROOT.parent / "shared" / "data"))
