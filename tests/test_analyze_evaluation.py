"""Benchmark metrics: expected values under random tie-breaking, bootstrap intervals."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ttpscope.analyze._evaluation import (attribution_metrics, bootstrap_ci, expected_hit, expected_reciprocal_rank,
                                          paired_bootstrap_ci, recommendation_metrics)


def test_ties_are_averaged_not_broken_by_position():
    s = np.array([1.0, 1.0, 1.0, 0.0])
    assert expected_hit(s, 0, 1) == pytest.approx(1 / 3)
    assert expected_hit(s, 2, 1) == pytest.approx(1 / 3)  # the same wherever the target sits
    assert expected_hit(s, 0, 2) == pytest.approx(2 / 3)
    assert expected_reciprocal_rank(s, 0) == pytest.approx((1 + 1 / 2 + 1 / 3) / 3)
    assert expected_hit(s, 3, 3) == 0.0 and expected_hit(s, 3, 4) == 1.0


def test_clear_winner_and_nan():
    s = np.array([0.2, 0.9, np.nan])
    assert attribution_metrics(s, 1) == {"top1": 1.0, "top5": 1.0, "mrr": 1.0}
    assert attribution_metrics(s, 0)["mrr"] == 0.5
    assert attribution_metrics(s, 2)["top1"] == 0.0  # NaN ranks last


def test_recommendation_metrics_with_observed_excluded():
    s = np.array([-np.inf, 5.0, 4.0, 3.0, 2.0, 1.0])  # item 0 observed
    m = recommendation_metrics(s, [1, 3], ks=(1, 2), ndcg_k=3)
    assert m["recall@1"] == 0.5 and m["recall@2"] == 0.5
    ideal = 1 + 1 / math.log2(3)
    assert m["ndcg@3"] == pytest.approx((1 + 1 / math.log2(4)) / ideal)
    tied = recommendation_metrics(np.array([1.0, 1.0, 1.0, 1.0]), [0], ks=(2,), ndcg_k=4)
    assert tied["recall@2"] == 0.5


def test_bootstrap_is_seeded_and_brackets_the_mean():
    vals = [0, 1] * 50
    lo, hi = bootstrap_ci(vals, seed=3)
    assert lo < 0.5 < hi and (lo, hi) == bootstrap_ci(vals, seed=3)
    assert paired_bootstrap_ci([1] * 20, [0] * 20) == (1.0, 1.0)
    assert all(math.isnan(x) for x in bootstrap_ci([]))
