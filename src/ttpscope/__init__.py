"""ttpscope: evidence of adversary activity in, MITRE ATT&CK TTPs and defender answers out."""

__version__ = "0.1.0"
