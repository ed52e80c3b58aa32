"""Event sources (EVTX, JSON lines, Parquet, CSV) read into Arrow tables, with read/accepted/rejected counts."""
