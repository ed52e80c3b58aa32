"""The web case matrix and the case's Navigator layer tell the same strength for every technique: both come
from the one evidence-strength rule (ttpscope.analyze.evidence), checked on the bundled example case."""

from __future__ import annotations

import re
from pathlib import Path

import orjson
import pytest
from fastapi.testclient import TestClient

from ttpscope.api import Settings, create_app
from ttpscope.api.matrix import case_marks, gradient
from ttpscope.investigate import investigate
from ttpscope.store import Workspace

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
TOKEN = "matrix-token-0123456789abcdef"
CELL = re.compile(r'<li class="(?:cell|sub) marked[^"]*" data-id="(T[\d.]+)"\s*style="background:(#[0-9a-f]{6})"')


@pytest.fixture(scope="module")
def example(tmp_path_factory, kb):
    """The example evidence investigated into a fresh workspace, and a server over that workspace."""
    tmp = tmp_path_factory.mktemp("matrix")
    ws = Workspace(tmp / "workspace.duckdb")
    result = investigate([EXAMPLES / "evidence"], rules=EXAMPLES / "rules", name="matrix-example", workspace=ws,
                         formats=("layer",), out=tmp / "out")
    client = TestClient(create_app(Settings(token=TOKEN, bundle="embedded", workspace=str(ws.path))))
    return result, client


def _layer_scores(layer: dict) -> dict[str, set[float]]:
    scores: dict[str, set[float]] = {}
    for cell in layer["techniques"]:
        if "score" in cell:
            scores.setdefault(cell["techniqueID"], set()).add(cell["score"])
    return scores


def test_case_matrix_and_layer_give_the_same_strength(example, kb):
    result, client = example
    case = result.case
    downloaded = _layer_scores(client.get(f"/api/cases/{case.id}/export/layer").json())
    written = _layer_scores(orjson.loads(result.outputs["layer"].read_bytes()))
    assert downloaded == written and len(written) >= 10  # the example tells a story of a dozen techniques
    assert all(len(s) == 1 for s in written.values())  # one strength per technique, whatever its tactic
    marks, meta = case_marks(kb, case)
    assert meta["kind"] == "case" and set(marks) == set(written)
    for tid, (score,) in written.items():
        assert round(100 * marks[tid]["score"]) == score, tid
    # and the page draws each marked cell in the colour of that strength
    page = client.get("/", params={"case": case.id})
    assert page.status_code == 200
    drawn: dict[str, set[str]] = {}
    for tid, colour in CELL.findall(page.text):
        drawn.setdefault(tid, set()).add(colour)
    assert set(drawn) == set(written)
    for tid, colours in drawn.items():
        assert colours == {gradient(marks[tid]["score"])}, tid

