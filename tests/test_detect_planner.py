"""The per-class plan store: a second run of the same compiled rules over inputs of the same classes plans no
class again, and finds the same detections, visibility and engine errors as a run without the store."""

from __future__ import annotations

from ttpscope.detect import planner
from ttpscope.detect.rules import load_rules
from ttpscope.detect.runner import compile_ruleset, detect, plan_store


def _key(res):
    return ([(d.rule_id, d.source, d.record, d.time, d.host, d.event) for d in res.detections],
            res.visibility(), sorted(res.with_data), res.engine_errors, res.totals(), res.summary()["rules"])


def test_second_run_reuses_the_plans_with_the_same_result(shared_data, kb, tmp_path, monkeypatch):
    monkeypatch.setenv("TTPSCOPE_HOME", str(tmp_path / "home"))  # a store of its own
    files = sorted((shared_data / "evtx" / "evtx-to-mitre-attack").rglob("*.evtx"))[:12]
    rs = load_rules(shared_data / "sigma" / "rules" / "windows" / "process_creation", kb=kb)
    keys: list[str] = []
    compiled = compile_ruleset(rs, keys=keys)
    built = []
    real = planner.Planner._build_plan
    monkeypatch.setattr(planner.Planner, "_build_plan",
                        lambda self, *a, **k: built.append(a[0]) or real(self, *a, **k))

    fresh = detect(files, rs, kb=kb, compiled=compiled, workers=1, cache=False)  # no store at all
    planned_fresh = len(built)
    first = detect(files, rs, kb=kb, compiled=compiled, workers=1)
    planned_first = len(built) - planned_fresh
    store = plan_store(keys)
    assert store.exists()
    second = detect(files, rs, kb=kb, compiled=compiled, workers=1)

    assert planned_fresh > 0 and planned_first == planned_fresh
    assert len(built) == planned_fresh + planned_first, "the second run planned classes again"
    assert fresh.detections, "the process_creation rules fire on these files"
    assert _key(first) == _key(fresh) == _key(second)
    assert plan_store(keys[1:]) != store  # another rule list (one rule fewer) never reads that store
