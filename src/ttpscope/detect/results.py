"""Detections (rule × event; the record is :class:`ttpscope.model.Detection`) and the Observations they become.

JSON shape of a detection (``--json`` list items, ``--jsonl`` lines)::

    {"rule_id", "title", "level", "techniques": [...], "tactics": [...], "time", "host", "user",
     "source": input file (archive members as "archive.zip!member"), "record": EVTX record id or line number,
     "event": {field: value}}

Detections become :class:`~ttpscope.model.Observation` records by aggregation (:func:`observations_of`): one
rule's hits for one technique on one entity (the host, else the user, account or source IP) within a time
window are one Observation (``source_kind="sigma"``, ``source_ref`` = rule id) with the hit count, first and
last seen, the first hit's evidence and a few more sample hits; outputs then grow with findings, not events.
A rule without techniques still yields its detections, and no observation.
"""

from __future__ import annotations

from datetime import datetime, timedelta
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


WINDOW = timedelta(hours=1)  # hits of one rule on one entity further apart than this are separate findings
SAMPLES = 5  # evidence hits kept per observation: the first (as its evidence) and up to four more
ENTITY_FIELDS = ("host", "user", "account", "src_ip")


def hit_entity(det: Detection) -> tuple[str, str]:
    """(kind, value) of the entity a hit is about: the host, else the user, account or source IP."""
    for name in ENTITY_FIELDS:
        value = getattr(det, name)
        if value:
            return name, value
    return "none", ""


def _sample(det: Detection) -> dict[str, Any]:
    return {"time": det.time.isoformat().replace("+00:00", "Z") if det.time else None, "source": det.source,
            "record": det.record, "matched": det.matched, "event": det.event}


def observations_of(detections: list[Detection], kb=None, window: timedelta = WINDOW,
                    samples: int = SAMPLES) -> list[Observation]:
    """Aggregated observations of these detections: per (rule, technique, entity), hits in time order, a
    new observation when a hit comes more than ``window`` after the current one's first hit. Untimed hits
    of a rule on an entity form one observation. In order of first hit."""
    epoch = datetime.min.replace(tzinfo=None)
    groups: dict[tuple[str, str, str, str], list[Detection]] = {}
    for det in detections:
        if det.techniques:
            groups.setdefault((det.rule_id, *hit_entity(det), det.logsource or ""), []).append(det)
    out: list[Observation] = []
    for (_rule, kind, value, _ls), hits in groups.items():
        hits.sort(key=lambda d: (d.time is not None, d.time.replace(tzinfo=None) if d.time else epoch))
        runs: list[list[Detection]] = []
        for det in hits:
            run = runs[-1] if runs else None
            if run is None or (det.time is not None and (run[0].time is None or det.time - run[0].time > window)):
                runs.append([det])
            else:
                run.append(det)
        for run in runs:
            first, last = run[0], run[-1]
            for template in first.observations(kb):
                ev = template.evidence
                ev["logsource"] = first.logsource
                ev["entity"] = {"kind": kind, "value": value}
                ev["count"] = len(run)
                if len(run) > 1:
                    ev["samples"] = [_sample(d) for d in run[1:samples]]
                template.count = len(run)
                template.first_seen = first.time
                template.last_seen = last.time or first.time
                out.append(template)
    out.sort(key=lambda o: (o.time is None, o.time.replace(tzinfo=None) if o.time else epoch, o.source_ref))
    return out


def write_parquet(detections: list[Detection], where: str) -> str:
    """Detections as a Parquet dataset (one file, ``part-00000.parquet``) in folder ``where``: a local path
    or a URI pyarrow writes (file://, hdfs://, s3://, gs://) and Spark, DuckDB or pandas read back. The
    event and the matched fields are JSON texts; times are UTC. Returns the file written."""
    from pathlib import Path
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
        filesystem, root = fs.LocalFileSystem(), str(Path(where).expanduser().resolve())
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
