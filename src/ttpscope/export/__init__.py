"""Case and analysis outputs: Navigator layer, STIX 2.1 bundle, HTML/Markdown report, JSON, CSV."""
