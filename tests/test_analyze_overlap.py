"""Overlap: similarity of cases, campaigns and groups; shared/distinguishing techniques; clustering."""

from __future__ import annotations

import numpy as np
import pytest

from ttpscope.analyze.overlap import cluster, overlap, similarity
from ttpscope.errors import NotFoundError
from ttpscope.model import Case, Observation


def test_weighted_jaccard_bounds():
    assert similarity({"a": 1.0, "b": 2.0}, {"a": 1.0, "b": 2.0}) == 1.0
    assert similarity({"a": 1.0}, {"b": 1.0}) == 0.0
    assert similarity({"a": 1.0, "b": 3.0}, {"a": 1.0}) == pytest.approx(0.25)


def test_identical_disjoint_and_partial_sets(kb):
    r = overlap([("one", ["T1553.006", "T1059.001"]), ("same", ["T1553.006", "T1059.001"]),
                 ("other", ["T1486"]), ("sibling", ["T1059.003"])], kb)
    m = np.array(r.matrix)
    assert m[0, 1] == 1.0 and m[0, 2] == 0.0
    assert 0 < m[0, 3] < 0.5  # a sibling sub-technique overlaps through the parent only
    top = r.pairs[0]
    assert (top["a"], top["b"], top["similarity"]) == ("one", "same", 1.0)
    pair = next(p for p in r.pairs if p["b"] == "other" and p["a"] == "one")
    assert pair["shared"] == [] and {x["technique_id"] for x in pair["only_a"]} == {"T1553.006", "T1059.001"}
    # rarest first among shared
    rar = [x["rarity"] for x in top["shared"]]
    assert rar == sorted(rar, reverse=True)


def test_campaigns_and_groups(kb):
    r = overlap(["C0024", "APT29", "C0025", "Sandworm Team", "C0028"], kb)
    keys = [i["key"] for i in r.items]
    assert keys == ["C0024", "G0016", "C0025", "G0034", "C0028"]
    m = np.array(r.matrix)
    assert m[0, 1] > m[0, 3]  # SolarWinds is closer to APT29 than to Sandworm
    assert m[2, 3] > m[2, 1]  # the 2016 Ukraine attack is closer to Sandworm than to APT29
    clusters = r.clustering["clusters"]
    assert any({"C0024", "G0016"} <= set(c) for c in clusters) or r.clustering["linkage"]
    assert sorted(r.clustering["dendrogram"]["leaves"]) == sorted(keys)
    assert len(r.clustering["linkage"]) == len(keys) - 1


def test_cases_with_the_same_name_stay_apart(kb):
    a = Case("x", [Observation("T1059.001", "manual", "m")])
    b = Case("x", [Observation("T1059.001", "manual", "m"), Observation("T1105", "manual", "m")])
    r = overlap([a, b], kb)
    assert [i["key"] for i in r.items] == ["x", "x (2)"] and r.items[0]["kind"] == "case"


def test_unknown_item(kb):
    with pytest.raises(NotFoundError):
        overlap(["no such campaign or group at all"], kb)


def test_cluster_cuts_at_threshold():
    m = np.array([[1, .9, 0], [.9, 1, 0.05], [0, 0.05, 1]])
    out = cluster(["a", "b", "c"], m, threshold=0.5)
    assert out["clusters"] == [["a", "b"], ["c"]]
    assert cluster(["a"], np.eye(1))["clusters"] == [["a"]]
