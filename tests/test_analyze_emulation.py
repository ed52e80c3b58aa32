"""Emulation plans with Atomic Red Team tests: real indexes, newer ids bridged, hand-made and bad files."""

from __future__ import annotations

import pytest

from ttpscope.analyze.emulation import emulation_plan, plan_markdown
from ttpscope.errors import InputError, NotFoundError
from ttpscope.export.layers import plan_layer, validate_layer
from ttpscope.kb.atomics import load_atomics


@pytest.fixture(scope="module")
def atomics(shared_data):
    return load_atomics([shared_data / "atomic-red-team" / "Indexes-CSV"])


@pytest.mark.parametrize("group", ["APT29", "FIN7"])
def test_emulation_plan_real(kb, atomics, group):
    plan = emulation_plan(kb, group, atomics)
    order = {s: i for i, s in enumerate(kb.tactic_order())}
    idx = [order[s["tactic"]] for s in plan["steps"]]
    assert idx == sorted(idx)  # ordered by tactic
    assert plan["summary"]["with_atomics"] >= 20
    step = next(s for s in plan["steps"] if s["technique"] == "T1059.001")
    assert step["procedure"] and step["atomics"]
    assert {"name", "guid", "platform"} <= set(step["atomics"][0])
    assert all(len(a["guid"]) == 36 for s in plan["steps"] for a in s["atomics"])
    md = plan_markdown(plan)
    assert md.startswith(f"# Emulation plan: {plan['group']['name']}") and "T1059.001" in md
    assert validate_layer(plan_layer(plan, kb), kb) == []


def test_emulation_bridges_newer_atomic_ids(kb, atomics):
    plan = emulation_plan(kb, "APT29", atomics, platforms=["windows"])
    step = next(s for s in plan["steps"] if s["technique"] == "T1562.001")  # Atomic files it as T1685 now
    assert step["atomics"] and all(a["technique"] == "T1685" for a in step["atomics"])
    assert all("windows" in a["platforms"] for s in plan["steps"] for a in s["atomics"])


def test_atomics_handmade_and_bad(tmp_path, kb):
    good = tmp_path / "windows-index.csv"
    good.write_text("Tactic,Technique #,Technique Name,Test #,Test Name,Test GUID,Executor Name\n"
                    "credential-access,T1003.001,OS Credential Dumping: LSASS Memory,1,Dump LSASS,"
                    "11111111-1111-1111-1111-111111111111,powershell\n"
                    "credential-access,BAD,x,2,y,,powershell\n")
    idx = load_atomics([good])
    assert [t.name for t in idx.tests_for("T1003.001")] == ["Dump LSASS"]
    assert idx.tests_for("T1003.001")[0].platforms == ["windows"]
    assert len(idx.errors) == 1 and "line 3" in idx.errors[0]
    bad = tmp_path / "x-index.csv"
    bad.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(InputError, match="not an Atomic Red Team CSV"):
        load_atomics([bad])
    with pytest.raises(InputError, match="no such file"):
        load_atomics([tmp_path / "missing"])
    with pytest.raises(NotFoundError, match="no group"):
        emulation_plan(kb, "Definitely Not A Group", idx)
