"""Event sources (EVTX, JSON lines, Parquet, CSV, and zip/tar/gz archives of them) read into narrow Arrow
batches, with read/accepted/rejected counts per source.

    from ttpscope.ingest import EventReader
    reader = EventReader(["logs/"])
    for batch in reader.batches():      # EventBatch: one event class (Channel, Provider_Name, EventID)
        batch.table                     # pyarrow.Table: _src, _rec, _time, _host, then string fields
    reader.stats                        # [IngestStats(source, format, read, accepted, rejected, reasons)]

Field naming follows :mod:`ttpscope.ingest.flatten`.
"""

from ttpscope.ingest.base import BASE_COLUMNS, EventBatch, EventReader, IngestStats, expand_sources, read_table
from ttpscope.ingest.flatten import flatten_evtx_event, flatten_json_event
from ttpscope.ingest import formats  # noqa: F401,E402  (registers the log families beyond Windows)

__all__ = ["BASE_COLUMNS", "EventBatch", "EventReader", "IngestStats", "expand_sources", "read_table",
           "flatten_evtx_event", "flatten_json_event"]
