"""Ranking metrics for the benchmarks, taken as expected values under random tie-breaking.

Overlap scores tie a lot (many groups explain the same two techniques equally): ranking ties by id would
make a method look better or worse by the alphabet. Every metric here is therefore its expectation over a
uniformly random order within ties, which linearity of expectation makes exact and cheap.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np


def _position(scores: np.ndarray, i: int, rel: float = 1e-9) -> tuple[int, int]:
    """(a, b): candidates strictly above item i, and others tied with it (NaN counts as -inf)."""
    scores = np.nan_to_num(np.asarray(scores, dtype=float), nan=-np.inf)
    s = scores[i]
    tol = rel * max(1.0, abs(s)) if np.isfinite(s) else 0.0
    above = int(np.sum(scores > s + tol))
    tied = int(np.sum(np.abs(scores - s) <= tol)) - 1 if np.isfinite(s) else int(np.sum(scores == s)) - 1
    return above, tied


def expected_hit(scores: np.ndarray, i: int, k: int) -> float:
    """P(item i ranks within the top k) under random tie-breaking."""
    a, b = _position(scores, i)
    return max(0, min(k - a, b + 1)) / (b + 1)


def expected_reciprocal_rank(scores: np.ndarray, i: int) -> float:
    a, b = _position(scores, i)
    return sum(1.0 / r for r in range(a + 1, a + b + 2)) / (b + 1)


def attribution_metrics(scores: np.ndarray, target: int, ks: Sequence[int] = (1, 5)) -> dict[str, float]:
    """top-k hits and reciprocal rank of the target candidate (expected values)."""
    out = {f"top{k}": expected_hit(scores, target, k) for k in ks}
    out["mrr"] = expected_reciprocal_rank(scores, target)
    return out


def recommendation_metrics(scores: np.ndarray, hidden: Iterable[int], ks: Sequence[int] = (10, 20),
                           ndcg_k: int = 20) -> dict[str, float]:
    """recall@k and NDCG@k of hidden items (observed items must score -inf), expected under ties."""
    hidden = list(hidden)
    out: dict[str, float] = {}
    if not hidden:
        return out
    positions = [_position(scores, i) for i in hidden]
    for k in ks:
        out[f"recall@{k}"] = sum(max(0, min(k - a, b + 1)) / (b + 1) for a, b in positions) / len(hidden)
    dcg = 0.0
    for a, b in positions:
        dcg += sum(1.0 / math.log2(r + 1) for r in range(a + 1, min(a + b + 1, ndcg_k) + 1)) / (b + 1)
    ideal = sum(1.0 / math.log2(r + 1) for r in range(1, min(len(hidden), ndcg_k) + 1))
    out[f"ndcg@{ndcg_k}"] = dcg / ideal
    return out


def bootstrap_ci(values: Sequence[float], n: int = 2000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean (resampling queries with replacement, fixed seed)."""
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(n, v.size))].mean(axis=1)
    lo, hi = np.percentile(means, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return float(lo), float(hi)


def paired_bootstrap_ci(a: Sequence[float], b: Sequence[float], n: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% interval of mean(a - b) over the same queries: is one method better than another?"""
    return bootstrap_ci(np.asarray(a, float) - np.asarray(b, float), n=n, seed=seed)
