"""The benchmarks run from the repository and write their JSON (smoke runs; the real runs are in bench/)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import orjson
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow
def test_attribution_bench_smoke(tmp_path, capsys):
    out = tmp_path / "attribution.json"
    _load("attribution_bench").main(["--limit", "6", "--draws", "1", "--out", str(out)])
    data = orjson.loads(out.read_bytes())
    a = data["a"]["summary"]
    assert a["queries"] == 11  # every attributed campaign with >= 3 techniques
    for method in ("prior", "jaccard", "tfidf-cosine", "idf-overlap", "naive-bayes", "instance-knn", "ttpscope"):
        m = a[method]["top1"]
        assert 0.0 <= m["ci95"][0] <= m["mean"] <= m["ci95"][1] <= 1.0
    assert data["b"] and data["kb"]["attack_version"] == "15.1"
    assert "top-1 / best" in capsys.readouterr().out


@pytest.mark.slow
def test_anticipation_bench_smoke(tmp_path):
    out = tmp_path / "anticipation.json"
    _load("anticipation_bench").main(["--folds", "5", "--out", str(out)])
    data = orjson.loads(out.read_bytes())
    s = data["random_all"]
    assert s["entities"] > 100
    assert s["ttpscope"]["recall@20"]["mean"] > s["popularity"]["recall@20"]["mean"]
