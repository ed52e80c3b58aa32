"""Analyses of a Case (or technique set) against the knowledge base: pure functions, no file access."""
