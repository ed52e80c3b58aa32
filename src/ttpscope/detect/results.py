"""Detections (rule × event; the record is :class:`ttpscope.model.Detection`) and the Observations they become.

JSON shape of a detection (``--json`` list items, ``--jsonl`` lines)::

    {"rule_id", "title", "level", "techniques": [...], "tactics": [...], "time", "host", "user",
     "source": input file (archive members as "archive.zip!member"), "record": EVTX record id or line number,
     "event": {field: value}}

Each detection yields one :class:`~ttpscope.model.Observation` per technique of its rule
(``source_kind="sigma"``, ``source_ref`` = rule id); a rule without techniques still yields the detection,
and no observation.
"""

from __future__ import annotations

from typing import Any

from ttpscope.model import LEVEL_CONFIDENCE, Detection, Observation  # noqa: F401 (re-exported)

USER_FIELDS = ("User", "TargetUserName", "SubjectUserName", "AccountName", "UserName", "user.name")
DOMAIN_FOR = {"TargetUserName": "TargetDomainName", "SubjectUserName": "SubjectDomainName", "AccountName": "Domain"}
_NO_USER = {"", "-", "SYSTEM"}


def event_user(event: dict[str, Any]) -> str | None:
    """The acting/affected account of an event, DOMAIN\\name when the domain is known."""
    for name in USER_FIELDS:
        value = event.get(name)
        if isinstance(value, str) and value.strip() and value not in ("-",):
            domain = event.get(DOMAIN_FOR.get(name, ""))
            if domain and "\\" not in value and domain != "-":
                return f"{domain}\\{value}"
            return value
    return None


def observations_of(detections: list[Detection], kb=None) -> list[Observation]:
    return [o for d in detections for o in d.observations(kb)]


def write_parquet(detections: list[Detection], where: str) -> str:
    """Detections as a Parquet dataset (one file, ``part-00000.parquet``) in folder ``where``: a local path
    or a URI pyarrow writes (file://, hdfs://, s3://, gs://) and Spark, DuckDB or pandas read back. The
    event and the matched fields are JSON texts; times are UTC. Returns the file written."""
    from urllib.parse import urlsplit

    import orjson
    import pyarrow as pa
    import pyarrow.parquet as pq
    from pyarrow import fs

    from ttpscope.errors import TtpscopeError

    if "://" in where:
        try:
            filesystem, root = fs.FileSystem.from_uri(where)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
            raise TtpscopeError(f"{where}: cannot write Parquet there ({exc})") from None
    else:
        filesystem, root = fs.LocalFileSystem(), str(__import__("pathlib").Path(where).expanduser().resolve())
    text = pa.string()
    columns = {
        "rule_id": ([d.rule_id for d in detections], text), "title": ([d.title for d in detections], text),
        "level": ([d.level for d in detections], text),
        "techniques": ([list(d.techniques) for d in detections], pa.list_(text)),
        "tactics": ([list(d.tactics) for d in detections], pa.list_(text)),
        "time": ([d.time for d in detections], pa.timestamp("us", tz="UTC")),
        "host": ([d.host for d in detections], text), "user": ([d.user for d in detections], text),
        "source": ([d.source for d in detections], text),
        "record": ([None if d.record is None else str(d.record) for d in detections], text),
        "logsource": ([d.logsource for d in detections], text),
        "event": ([orjson.dumps(d.event, default=str).decode() for d in detections], text),
        "matched": ([orjson.dumps(d.matched, default=str).decode() for d in detections], text),
    }
    table = pa.table({k: pa.array(v, type=t) for k, (v, t) in columns.items()})
    try:
        filesystem.create_dir(root, recursive=True)
        target = f"{root.rstrip('/')}/part-00000.parquet"
        pq.write_table(table, target, filesystem=filesystem)
    except OSError as exc:
        raise TtpscopeError(f"{where}: cannot write Parquet there ({exc})") from None
    return target if "://" not in where else f"{urlsplit(where).scheme}://{target}"
