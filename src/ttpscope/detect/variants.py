"""Log-source variants: which processing pipelines a rule is compiled through, and where each runs.

A rule is compiled once per *variant*, i.e. per processing pipeline that can carry it: ``sysmon`` (Sysmon
event ids + channel), ``security`` (Security 4688 / 4657 with pySigma's windows-audit field renames, e.g.
``Image`` → ``NewProcessName``), ``windows`` (channel by service, PowerShell categories), ``antivirus``
(SigmaHQ's product-less ``category: antivirus`` on Microsoft Defender's detection events) — the *channel
variants*, which run on Windows event log classes, where folding their channel and EventID conditions
decides what runs where (a process_creation rule runs on Sysmon EventID 1 *and* on Security 4688) — and
``plain`` (the rule's own fields, no condition added), which runs only on classes whose log source admits
the rule's (:meth:`~ttpscope.ingest.logsource.LogSource.admits`: every attribute the rule names must match).
No variant runs on every event, and a class of unknown log source runs no rule.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

from ttpscope.ingest.logsource import LogSource
from ttpscope.ingest.windows import ANTIVIRUS_EVENT_IDS, ANTIVIRUS_FIELDS, DEFENDER_CHANNEL, EXTRA_SERVICE_CHANNELS

if TYPE_CHECKING:
    from sigma.processing.pipeline import ProcessingPipeline

# pySigma is imported by the functions that build pipelines and variant lists (compiling), not at import:
# the planner needs only :func:`runs_on`, and a run whose rules come from the rule index never compiles.
# Services missing from pySigma's Windows channel table: EXTRA_SERVICE_CHANNELS (shared with ingest)


def _extra_services_pipeline() -> ProcessingPipeline:
    from sigma.processing.conditions import LogsourceCondition
    from sigma.processing.pipeline import ProcessingItem, ProcessingPipeline
    from sigma.processing.transformations import AddConditionTransformation

    return ProcessingPipeline(
        name="ttpscope: channels of services pySigma does not map",
        priority=10,
        items=[ProcessingItem(identifier=f"ttpscope_{svc}_channel",
                              transformation=AddConditionTransformation({"Channel": channel}),
                              rule_conditions=[LogsourceCondition(product="windows", service=svc)])
               for svc, channel in EXTRA_SERVICE_CHANNELS.items()],
    )


def _defined_function(module_name: str, name: str):
    """The plain function behind a pySigma ``@Pipeline``-decorated pipeline.

    pySigma's ``Pipeline`` decorator is a process-wide singleton: every decorated pipeline shares one
    instance whose ``func`` is the last one decorated, so after plugin autodiscovery (which imports pySigma's
    own test pipelines, e.g. for ``rules convert --pipeline``) ``sysmon_pipeline()`` silently returns another
    pipeline and Sysmon rules lose their channel condition. Re-running the defining module restores the
    decorator long enough to take the function itself.
    """
    import importlib

    module = importlib.import_module(module_name)
    func = getattr(getattr(module, name), "func", None)
    if func is None:  # a plain function: nothing to undo
        return getattr(module, name)
    if func.__module__ != module_name or func.__name__ != name:
        func = getattr(importlib.reload(module), name).func
    return func


def _antivirus_pipeline() -> ProcessingPipeline:
    """SigmaHQ's product-less `category: antivirus` rules on Microsoft Defender's detection events, with
    the generic fields renamed to Defender's (``Signature`` → ``ThreatName``, ``Filename`` → ``Path``)."""
    from sigma.processing.conditions import LogsourceCondition
    from sigma.processing.pipeline import ProcessingItem, ProcessingPipeline
    from sigma.processing.transformations import AddConditionTransformation, FieldMappingTransformation

    def antivirus():  # a condition object belongs to one processing item
        return [LogsourceCondition(category="antivirus")]

    return ProcessingPipeline(name="ttpscope: antivirus on Microsoft Defender", priority=10, items=[
        ProcessingItem(identifier="ttpscope_antivirus_fields", transformation=FieldMappingTransformation(
            dict(ANTIVIRUS_FIELDS)), rule_conditions=antivirus()),
        ProcessingItem(identifier="ttpscope_antivirus_channel", transformation=AddConditionTransformation(
            {"Channel": DEFENDER_CHANNEL, "EventID": list(ANTIVIRUS_EVENT_IDS)}), rule_conditions=antivirus())])


@cache
def _sysmon_pipeline():
    """pySigma's Sysmon pipeline function, taken once (see :func:`_defined_function`)."""
    return _defined_function("sigma.pipelines.sysmon.sysmon", "sysmon_pipeline")


def variant_pipelines() -> dict[str, ProcessingPipeline]:
    """The processing pipelines, by variant name (built fresh: pipelines keep state while applied)."""
    from sigma.processing.pipeline import ProcessingPipeline
    from sigma.pipelines.windows import windows_audit_pipeline, windows_logsource_pipeline

    return {
        "sysmon": _sysmon_pipeline()() + windows_logsource_pipeline(),
        "security": windows_audit_pipeline() + windows_logsource_pipeline(),
        "windows": windows_logsource_pipeline() + _extra_services_pipeline(),
        "antivirus": _antivirus_pipeline(),
        "plain": ProcessingPipeline(),
    }


@cache
def _mapped() -> dict[str, frozenset]:
    """The Sysmon and Windows-audit categories and the Windows services pySigma's pipelines map."""
    from sigma.pipelines.common import windows_logsource_mapping
    from sigma.pipelines.sysmon.sysmon import sysmon_generic_logsource_eventid_mapping
    from sigma.pipelines.windows.windows import generic_logsource_to_windows_audit_event_mapping

    return {"SYSMON_CATEGORIES": frozenset(sysmon_generic_logsource_eventid_mapping),
            "AUDIT_CATEGORIES": frozenset(generic_logsource_to_windows_audit_event_mapping),
            "MAPPED_SERVICES": frozenset(windows_logsource_mapping) | frozenset(EXTRA_SERVICE_CHANNELS)}


def __getattr__(name: str) -> Any:  # SYSMON_CATEGORIES, AUDIT_CATEGORIES, MAPPED_SERVICES: from pySigma, lazily
    if name in ("SYSMON_CATEGORIES", "AUDIT_CATEGORIES", "MAPPED_SERVICES"):
        return _mapped()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


WINDOWS_CATEGORIES = frozenset({"ps_module", "ps_script", "ps_classic_start", "ps_classic_provider_start",
                                "ps_classic_script"})
# variants whose pipelines add the Windows channel / EventID conditions: they run on Windows event log
# classes (those with a Channel), where folding those conditions decides what runs where
CHANNEL_VARIANTS = frozenset({"sysmon", "security", "windows", "antivirus"})


def variants_for(logsource: dict[str, str | None]) -> tuple[list[str], str | None]:
    """Which variants a rule compiles to, and a note on where it can run.

    Every rule gets the ``plain`` variant (its fields as written, no added condition), which runs only on
    classes whose log source admits the rule's (:meth:`~ttpscope.ingest.logsource.LogSource.admits`):
    CloudTrail rules on CloudTrail, Defender XDR tables for Windows process rules. A Windows rule whose
    category or service has a Windows event log also gets the channel variants (:data:`CHANNEL_VARIANTS`)."""
    product, category, service = logsource.get("product"), logsource.get("category"), logsource.get("service")
    mapped = _mapped()
    if category == "antivirus" and product in (None, "windows") and not service:
        return ["antivirus", "plain"], None
    if product != "windows":
        return ["plain"], None
    if category:
        out = []
        if category in mapped["SYSMON_CATEGORIES"]:
            out.append("sysmon")
        if category in mapped["AUDIT_CATEGORIES"]:
            out.append("security")
        if category in WINDOWS_CATEGORIES:
            out.append("windows")
        if out:
            return out + ["plain"], None
        return ["plain"], (f"log source category '{category}' has no Windows event log mapping: the rule runs "
                           "only on sources declared or recognised as that category")
    if service and service not in mapped["MAPPED_SERVICES"]:
        return ["plain"], (f"log source service '{service}' has no Windows channel mapping: the rule runs only "
                           "on sources declared or recognised as that service")
    return ["windows", "plain"], None


def runs_on(variant: str, rule_logsource: dict, channel_variants: bool, source: LogSource,
            has_channel: bool) -> bool:
    """Whether a rule's variant runs on an event class of log source ``source`` (``has_channel``: the
    class's events name their Windows event log). Channel variants run on Windows event log classes; the
    plain variant where the class's log source admits the rule's, and on Windows event logs only for
    rules without a channel variant (else the channel variant, with its field mapping, is the one)."""
    if variant in CHANNEL_VARIANTS:
        return has_channel and source.product == "windows"
    if channel_variants and has_channel:
        return False
    return source.admits(rule_logsource)
