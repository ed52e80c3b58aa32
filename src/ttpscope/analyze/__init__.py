"""Analyses of a Case (or technique set) against the knowledge base: pure functions, no file access.

The case report model lives here too: :mod:`ttpscope.analyze.report` (``CaseAnalysis`` and one typed result
per section), :mod:`ttpscope.analyze.sections` (the report-sections registry ``SECTIONS``: key → title and
function of a context) and :mod:`ttpscope.analyze.evidence` (the one evidence-strength rule every output and
the web matrix share). File loaders (Atomic indexes, inventories) are in :mod:`ttpscope.kb`.
"""
