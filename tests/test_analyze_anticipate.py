"""Anticipation: co-occurrence models on hand-built baskets and on the real KB."""

from __future__ import annotations

import numpy as np

from ttpscope.analyze.anticipate import AnticipationModel, AnticipationParams, anticipate


def test_learns_what_co_occurs(kb):
    baskets = {f"G{i:04d}": {"T1566.001", "T1204.002", "T1547.001"} for i in range(1, 6)}
    baskets.update({f"S{i:04d}": {"T1486", "T1490"} for i in range(1, 6)})
    baskets.update({f"C{i:04d}": {"T1566.001", "T1105"} for i in range(1, 3)})
    model = AnticipationModel(kb, baskets, AnticipationParams(later_bias=0, earlier_penalty=0))
    s = model.scores({"T1566.001": 1.0})
    ranked = [model.items[j] for j in np.argsort(-s)[:2]]
    assert set(ranked) == {"T1204.002", "T1547.001"}
    assert s[model.index["T1566.001"]] == -np.inf  # observed techniques are never predicted


def test_later_tactics_are_favoured(kb):
    baskets = {"G0001": {"T1003.001", "T1021.002", "T1566.001"}, "G0002": {"T1003.001", "T1021.002", "T1566.001"}}
    flat = AnticipationModel(kb, baskets, AnticipationParams(later_bias=0, earlier_penalty=0))
    biased = AnticipationModel(kb, baskets, AnticipationParams(later_bias=0.5, earlier_penalty=0.5))
    obs = {"T1003.001": 1.0}
    i_lat, i_ini = flat.index["T1021.002"], flat.index["T1566.001"]
    assert flat.scores(obs)[i_lat] == flat.scores(obs)[i_ini]
    assert biased.scores(obs)[i_lat] > biased.scores(obs)[i_ini]


def test_predictions_on_the_real_kb(kb):
    r = anticipate(["T1566.001", "T1059.001", "T1003.001"], kb, top=10)
    ids = [p.technique_id for p in r.predictions]
    assert len(ids) == 10 and not {"T1566.001", "T1059.001", "T1003.001"} & set(ids)
    assert r.reached_tactics == ["initial-access", "execution", "credential-access"]
    scores = [p.score for p in r.predictions]
    assert scores == sorted(scores, reverse=True)
    assert all(p.profiles for p in r.predictions) and any(p.because_of for p in r.predictions)
    sims = [[x["similarity"] for x in p.profiles] for p in r.predictions]
    assert all(0 < v <= 1 for row in sims for v in row) and all(row == sorted(row, reverse=True) for row in sims)
    assert any(p.later_stage for p in r.predictions)
    assert any(p.watch["data_components"] for p in r.predictions)
    assert any(p.watch["mitigations"] for p in r.predictions)
    assert r.to_dict()["provenance"]["attack_version"] == "15.1"


def test_nothing_observed_falls_back_to_popularity(kb):
    r = anticipate(["T0000"], kb, top=3)
    assert r.unresolved == ["T0000"] and len(r.predictions) == 3
    assert r.predictions[0].profiles == []


def test_deterministic(kb):
    a = anticipate(["T1190", "T1505.003"], kb, top=15).to_dict()
    b = anticipate(["T1505.003", "T1190"], kb, top=15).to_dict()
    assert a == b
