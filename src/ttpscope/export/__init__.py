"""Case and analysis outputs: Navigator layer, STIX 2.1 bundle, HTML/Markdown report, JSON, CSV.

Extension point: ``ttpscope.export.outputs.EXPORTS`` maps a format name to an ``Exporter(file_name,
media_type, render(analysis, kb))``; a new format is one entry there. Every Navigator layer builder lives in
``ttpscope.export.layers``.
"""
