"""Shared fixtures: the real embedded knowledge bases, the shared data folder, an isolated TTPSCOPE_HOME."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = (ROOT / ".." / "shared" / "data").resolve()


def pytest_configure(config):
    # Every test run gets its own workspace and caches unless the caller chose one.
    if "TTPSCOPE_HOME" not in os.environ:
        import tempfile

        os.environ["TTPSCOPE_HOME"] = tempfile.mkdtemp(prefix="ttpscope-test-home-")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"the shared data folder is missing: {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def kb():
    """The embedded Enterprise ATT&CK v15.1 knowledge base."""
    from ttpscope.kb import load_kb

    return load_kb("enterprise", "embedded")


@pytest.fixture(scope="session")
def ics_kb():
    from ttpscope.kb import load_kb

    return load_kb("ics", "embedded")
