"""Shared fixtures: the real embedded knowledge bases, the public data sets, an isolated TTPSCOPE_HOME."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT / ".." / "shared"
SHARED_DATA = (SHARED / "data").resolve()

# Each public data set the tests read, by its folder name (the layout of ../shared/data, which
# scripts/fetch-data reproduces in its cache): what it is, so a skip can say what is missing.
DATA_SETS = {
    "sigma": "SigmaHQ rules and regression data",
    "evtx": "EVTX-to-MITRE-Attack sample logs",
    "atomic-red-team": "Atomic Red Team indexes",
    "attack": "ATT&CK for ICS v18.1 bundle and the collection index",
    "ctid-mappings-explorer": "CTID Mappings Explorer (KEV, NIST 800-53)",
    "ctid-attack_to_cve": "CTID ATT&CK-to-CVE mappings",
    "ctid-top-attack-techniques": "CTID Top ATT&CK Techniques",
    "tram": "TRAM annotated CTI reports",
    "otrf-atomic-windows": "OTRF Security-Datasets (Windows atomics)",
    "otrf-cross-environment": "OTRF Security-Datasets (cross-environment)",
}
COMPLETE = ".complete"  # written by scripts/fetch-data once a data set is fully in the cache


def data_cache() -> Path:
    """The cache scripts/fetch-data fills (keep in step with scripts/fetch-data)."""
    if os.environ.get("TTPSCOPE_DATA"):
        return Path(os.environ["TTPSCOPE_DATA"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ttpscope-data"


def pytest_configure(config):
    # Every test run gets its own workspace and caches unless the caller chose one.
    if "TTPSCOPE_HOME" not in os.environ:
        import tempfile

        os.environ["TTPSCOPE_HOME"] = tempfile.mkdtemp(prefix="ttpscope-test-home-")


class DataSets:
    """``shared_data / "sigma" / "rules"``: the path of a public data set, from ../shared/data or the cache.

    A data set found in neither skips the test, naming it and how to fetch it; in CI with ../shared
    present that is a failure instead, so CI here can never hide a missing data set behind a skip.
    """

    def __truediv__(self, rel) -> Path:
        rel = PurePosixPath(rel)
        name = rel.parts[0]
        if (SHARED_DATA / name).is_dir():
            return SHARED_DATA / rel
        cache = data_cache()
        if (cache / name / COMPLETE).is_file():
            return cache / rel
        what = DATA_SETS.get(name, name)
        message = (f"needs the public data set '{name}' ({what}): not in {SHARED_DATA} nor in {cache}; "
                   f"fetch it with `scripts/fetch-data {name}` (or set TTPSCOPE_DATA to a copy)")
        if os.environ.get("CI") and SHARED.exists():
            pytest.fail(message)
        pytest.skip(message)

    def __repr__(self) -> str:
        return f"DataSets({SHARED_DATA}, {data_cache()})"


@pytest.fixture(scope="session")
def shared_data() -> DataSets:
    return DataSets()


@pytest.fixture(scope="session")
def kb():
    """The embedded Enterprise ATT&CK v15.1 knowledge base."""
    from ttpscope.kb import load_kb

    return load_kb("enterprise", "embedded")


@pytest.fixture(scope="session")
def ics_kb():
    from ttpscope.kb import load_kb

    return load_kb("ics", "embedded")
