"""AWS CloudTrail: the native ``{"Records": [...]}`` files (plain or ``.json.gz``) and the family that
recognises CloudTrail records however they arrive (native files, JSON lines, the logstash shape of the
OTRF data with ``@timestamp``/``@version``, EventBridge envelopes, the Sentinel ``AWSCloudTrail`` table).

Each element of ``Records`` is one event, flattened like any JSON event (``userIdentity.type``,
``requestParameters.bucketName``: the dotted names SigmaHQ's CloudTrail rules use). A document that
parses whole is read at orjson speed; one that does not is split record by record, so that a broken
record is rejected (with its index and line) and the records beside it are kept.
"""

from __future__ import annotations

import re
from typing import Iterator, Mapping

import orjson

from ttpscope.ingest.base import IngestStats
from ttpscope.ingest.flatten import flatten_json_event
from ttpscope.ingest.logsource import Family, LogSource, register

DOCUMENT_LIMIT = 256 * 1024 * 1024
_RECORDS_HEAD = re.compile(rb'\A\s*\{\s*"Records"\s*:\s*\[')


def is_records_document(head: bytes) -> bool:
    """Whether the bytes open a CloudTrail ``{"Records": [`` document."""
    return _RECORDS_HEAD.match(head.lstrip(b"\xef\xbb\xbf")) is not None


def read_cloudtrail(opener, stats: IngestStats) -> Iterator[tuple[int, dict]]:
    """A ``{"Records": [...]}`` document → one event per record (record number = index in Records)."""
    with opener() as fh:
        raw = fh.read(DOCUMENT_LIMIT + 1)
    if len(raw) > DOCUMENT_LIMIT:
        stats.reject(1, "CloudTrail document larger than 256 MB")
        return
    yield from read_records_document(raw, stats)


def read_records_document(raw: bytes, stats: IngestStats) -> Iterator[tuple[int, dict]]:
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        yield from _split_records(raw, stats)
        return
    records = doc.get("Records") if isinstance(doc, dict) else None
    if not isinstance(records, list):
        stats.reject(1, "not a CloudTrail document: no Records list")
        return
    for i, rec in enumerate(records, 1):
        if not isinstance(rec, dict):
            stats.reject(i, f"CloudTrail record {i}: not a JSON object but a {type(rec).__name__}")
            continue
        stats.accept()
        yield i, whole_objects(flatten_json_event(rec))


def _split_records(raw: bytes, stats: IngestStats) -> Iterator[tuple[int, dict]]:
    """The Records array element by element (string-aware bracket depth), each parsed on its own."""
    m = _RECORDS_HEAD.match(raw.lstrip(b"\xef\xbb\xbf"))
    if m is None:
        stats.reject(1, "not valid JSON and not a CloudTrail Records document")
        return
    pos = m.end() + (len(raw) - len(raw.lstrip(b"\xef\xbb\xbf")))
    n = len(raw)
    index = 0
    while pos < n:
        while pos < n and raw[pos] in b" \t\r\n,":
            pos += 1
        if pos >= n or raw[pos] == ord("]"):
            break
        start = pos
        end = _element_end(raw, pos)
        index += 1
        line = raw.count(b"\n", 0, start) + 1
        chunk = raw[start:end]
        if end >= n and not chunk.rstrip().endswith(b"}"):
            stats.reject(index, f"CloudTrail record {index} (line {line}): cut short, the document ends inside it")
            break
        try:
            rec = orjson.loads(chunk)
        except orjson.JSONDecodeError as exc:
            stats.reject(index, f"CloudTrail record {index} (line {line}): not valid JSON: {exc}")
            pos = end
            continue
        if not isinstance(rec, dict):
            stats.reject(index, f"CloudTrail record {index} (line {line}): not a JSON object")
        else:
            stats.accept()
            yield index, whole_objects(flatten_json_event(rec))
        pos = end


def _element_end(raw: bytes, pos: int) -> int:
    """End (exclusive) of the array element starting at ``pos``: its closing bracket at depth 0, or the
    next top-level comma."""
    depth = 0
    in_string = False
    escaped = False
    n = len(raw)
    i = pos
    while i < n:
        c = raw[i]
        if in_string:
            if escaped:
                escaped = False
            elif c == 0x5C:  # backslash
                escaped = True
            elif c == 0x22:
                in_string = False
        elif c == 0x22:
            in_string = True
        elif c in (0x7B, 0x5B):  # { [
            depth += 1
        elif c in (0x7D, 0x5D):  # } ]
            depth -= 1
            if depth == 0:
                return i + 1
            if depth < 0:
                return i
        elif c == 0x2C and depth == 0:
            return i
        elif c == 0x0A and depth == 1 and raw[i + 1:i + 2] == b"{" and raw[i - 1:i] not in (b",", b"[", b"{"):
            # a record cut short and followed, on its own line, by the next one: resynchronise there
            return i
        i += 1
    return n


WHOLE_OBJECTS = ("requestParameters", "responseElements")


def whole_objects(fields: dict[str, str]) -> dict[str, str]:
    """A flat CloudTrail record also gets ``requestParameters`` and ``responseElements`` whole, as JSON
    text of their flattened leaves: a few SigmaHQ rules search them as one field
    (``requestParameters|contains: Suspended``)."""
    for name in WHOLE_OBJECTS:
        if name in fields:
            continue
        prefix = name + "."
        leaves = {k[len(prefix):]: v for k, v in fields.items() if k.startswith(prefix)}
        if leaves:
            fields[name] = orjson.dumps(leaves).decode()
    return fields


# ---------------------------------------------------------------------------------------------- family
CLOUDTRAIL = LogSource("aws", "cloudtrail")


def recognise(fields: Mapping[str, str]) -> LogSource | None:
    if fields.get("Type") == "AWSCloudTrail":  # the Microsoft Sentinel table
        return CLOUDTRAIL
    if "eventName" not in fields or "eventSource" not in fields:
        return None
    if "awsRegion" in fields or "recipientAccountId" in fields or \
            str(fields["eventSource"]).endswith(".amazonaws.com"):
        return CLOUDTRAIL
    return None


def unwrap_eventbridge(fields: dict[str, str]) -> dict[str, str]:
    """An EventBridge / CloudWatch Events envelope (``detail-type: AWS API Call via CloudTrail``): the
    CloudTrail record is its ``detail``; its fields get their own names, the envelope keeps its."""
    if not str(fields.get("detail-type", "")).endswith("via CloudTrail"):
        return fields
    out = {k: v for k, v in fields.items() if not k.startswith("detail.")}
    for key, value in fields.items():
        if key.startswith("detail."):
            out[key[7:]] = value
    return whole_objects(out)


# the Sentinel AWSCloudTrail table's columns → the record's own names (names compare ignoring case, so
# EventName already is eventName)
SENTINEL_RENAMES = {"UserIdentityType": "userIdentity.type", "UserIdentityArn": "userIdentity.arn",
                    "UserIdentityUserName": "userIdentity.userName",
                    "UserIdentityAccountId": "userIdentity.accountId",
                    "UserIdentityPrincipalid": "userIdentity.principalId",
                    "SessionIssuerType": "userIdentity.sessionContext.sessionIssuer.type",
                    "SessionIssuerUserName": "userIdentity.sessionContext.sessionIssuer.userName",
                    "SessionMfaAuthenticated": "userIdentity.sessionContext.attributes.mfaAuthenticated",
                    "AWSRegion": "awsRegion", "SourceIpAddress": "sourceIPAddress",
                    "RecipientAccountId": "recipientAccountId"}

FAMILY = register(Family(
    "aws-cloudtrail", recognise, renames=SENTINEL_RENAMES,
    entities={"time": ("eventTime", "@timestamp", "TimeGenerated"),
              "user": ("userIdentity.userName", "UserIdentityUserName", "UserIdentityArn",
                       "userIdentity.sessionContext.sessionIssuer.userName", "userIdentity.arn",
                       "userIdentity.principalId", "userIdentity.invokedBy"),
              "src_ip": ("sourceIPAddress", "SourceIpAddress"),
              "account": ("recipientAccountId", "userIdentity.accountId", "RecipientAccountId"),
              "region": ("awsRegion", "AWSRegion")}))


# The honey-bucket alert export (Breach Insider; OTRF's S3 honey-bucket dataset): a CSV of CloudTrail S3
# data events under display names. Its log source is CloudTrail's; the names become CloudTrail's own.
# The export has no eventSource (rules that name one do not match) and writes userIdentity and
# requestParameters as Python-dict text.
HONEYBUCKET_RENAMES = {"Event Type": "eventType", "Event Name": "eventName", "Request ID": "requestID",
                       "User ID": "userIdentity", "Request Parameters": "requestParameters",
                       "Event ID": "eventID", "Event DateTime": "eventTime", "Source IP": "sourceIPAddress",
                       "Request User Agent": "userAgent"}


def recognise_honeybucket(fields: Mapping[str, str]) -> LogSource | None:
    if "Event Name" in fields and "Alarm DateTime" in fields and "Source IP" in fields:
        return CLOUDTRAIL
    return None


HONEYBUCKET = register(Family(
    "aws-s3-honeybucket", recognise_honeybucket, renames=HONEYBUCKET_RENAMES,
    entities={"time": ("Event DateTime", "eventTime"), "src_ip": ("Source IP", "sourceIPAddress")}))
