"""The workspace: cases, observations, detections, documents in one DuckDB file under TTPSCOPE_HOME."""
