"""The web app and REST API (FastAPI), thin over the library: ``create_app(Settings(token=...))``."""

from ttpscope.api.app import Settings, create_app

__all__ = ["Settings", "create_app"]
