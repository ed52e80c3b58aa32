"""The web app and REST API (FastAPI), thin over the library."""
