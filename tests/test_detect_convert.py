"""Sigma → Splunk / Elasticsearch / KQL through the real pySigma backends: known queries, failures, real rules."""

from __future__ import annotations

import pytest
from sigma.rule import SigmaRule

from ttpscope.detect.convert import convert_rules, normalize_target
from ttpscope.errors import InputError

RULE = """
title: Handmade LSASS dump via procdump
id: 0b1d4f3e-0000-4000-8000-000000000001
status: test
level: high
tags: [attack.credential-access, attack.t1003.001]
logsource: {product: windows, category: process_creation}
detection:
  selection:
    Image|endswith: '\\\\procdump.exe'
    CommandLine|contains: 'lsass'
  condition: selection
"""

# Security-channel rule: Defender XDR has no table for Windows Security events, so the KQL pipeline refuses it.
SECURITY_RULE = """
title: Handmade special logon
id: 0b1d4f3e-0000-4000-8000-000000000002
status: test
level: medium
logsource: {product: windows, service: security}
detection:
  selection: {EventID: 4672}
  condition: selection
"""


def test_known_queries_per_target():
    rule = SigmaRule.from_yaml(RULE)
    spl = convert_rules([rule], "splunk").queries[0].queries[0]
    assert 'Image="*\\\\procdump.exe"' in spl and 'CommandLine="*lsass*"' in spl
    lucene = convert_rules([rule], "elasticsearch").queries[0].queries[0]
    assert "process.executable" in lucene and "process.command_line" in lucene  # ECS field names
    esql = convert_rules([rule], "esql").queries[0].queries[0]
    assert esql.lower().startswith("from ") and "lsass" in esql
    kql = convert_rules([rule], "kql").queries[0].queries[0]
    assert kql.startswith("DeviceProcessEvents") and "ProcessCommandLine contains" in kql
    assert rule.applied_processing_items == set() or not rule.applied_processing_items  # caller's rule untouched


def test_failure_kept_with_reason_beside_success():
    rules = [SigmaRule.from_yaml(SECURITY_RULE), SigmaRule.from_yaml(RULE)]
    res = convert_rules(rules, "kusto")
    assert [r.rule_id for r in res.queries] == ["0b1d4f3e-0000-4000-8000-000000000001"]
    fail = res.failures[0]
    assert fail.rule_id == "0b1d4f3e-0000-4000-8000-000000000002"
    assert fail.error.startswith("SigmaTransformationError") and "table" in fail.error
    assert res.rate == 0.5
    # the same rule converts for Splunk: the failure is the target's, not the rule's
    assert convert_rules([SigmaRule.from_yaml(SECURITY_RULE)], "splunk").rate == 1.0


def test_unknown_target_and_pipeline():
    with pytest.raises(InputError, match="unknown target"):
        normalize_target("qradar")
    with pytest.raises(InputError, match="unknown pipeline"):
        convert_rules([], "splunk", pipeline="no_such_pipeline")


def test_real_sigmahq_windows_sample(shared_data):
    folder = shared_data / "sigma" / "rules" / "windows" / "process_creation"
    files = sorted(folder.glob("*.yml"))[:60]
    rules = [SigmaRule.from_yaml(f.read_text()) for f in files]
    for target, floor in (("splunk", 0.95), ("elasticsearch", 0.95), ("esql", 0.9), ("kusto", 0.8)):
        res = convert_rules(rules, target)
        assert res.rate >= floor, (target, [f.error for f in res.failures][:3])
        assert all(q.queries and q.queries[0].strip() for q in res.queries)
