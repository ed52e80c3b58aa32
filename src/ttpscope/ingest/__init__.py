"""Event sources (EVTX, JSON lines, Parquet, CSV, and zip/tar/gz archives of them) read into narrow Arrow
batches, with read/accepted/rejected counts per source.

    from ttpscope.ingest import EventReader
    reader = EventReader(["logs/"])
    for batch in reader.batches():      # EventBatch: one event class (Channel, Provider_Name, EventID, log source)
        batch.logsource                 # LogSource(product, service, category), recognised from content
        batch.table                     # pyarrow.Table: the internal "::" columns (BASE_COLUMNS), then string fields
    reader.stats                        # [IngestStats(source, format, read, accepted, rejected, reasons)]

Field naming follows :mod:`ttpscope.ingest.flatten`.
"""

from ttpscope.ingest.base import BASE_COLUMNS, EventBatch, EventReader, IngestStats, expand_sources, read_table
from ttpscope.ingest.flatten import flatten_evtx_event, flatten_json_event
from ttpscope.ingest import formats  # noqa: F401,E402  (registers the log families beyond Windows)

__all__ = ["BASE_COLUMNS", "EventBatch", "EventReader", "IngestStats", "expand_sources", "read_table",
           "flatten_evtx_event", "flatten_json_event"]
