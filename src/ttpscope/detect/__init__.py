"""Sigma rules: loading, ATT&CK tag mapping, compilation to SQL, execution on DuckDB/Spark, correlation."""
