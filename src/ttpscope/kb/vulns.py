"""CVE → ATT&CK technique mappings: CTID Mappings Explorer (KEV) JSON and the older attack_to_cve CSV.

    from ttpscope.kb.vulns import load_mappings
    maps = load_mappings(["../shared/data/ctid-mappings-explorer/mappings/kev",
                          "../shared/data/ctid-attack_to_cve/AttackToCveMappings.csv"])
    maps.techniques_for_cve("CVE-2021-44228")
    # {'exploitation_technique': ['T1190'], 'secondary_impact': ['T1486', 'T1496', ...]}
    maps.mappings_for_cve("CVE-2021-44228")   # [CveMapping(...)] with comments, references, sources

Sources are files, folders (searched recursively for ``*.json`` and ``*.csv``) or ``http(s)://`` URLs
(downloaded once into the cache, ``refresh=True`` downloads again). Mapping types follow Mappings Explorer:
``exploitation_technique``, ``primary_impact``, ``secondary_impact``, ``uncategorized``. The same CVE
mapped by several files is merged; each mapping keeps the list of files that state it.

Bad input: a file that is not valid JSON/CSV or not a mapping file raises ``InputError`` naming it; one bad
record inside a good file is skipped and listed in ``VulnMappings.errors`` (the good records are kept).
Files of Mappings Explorer frameworks that map controls rather than CVEs (e.g. NIST 800-53) are listed in
``skipped`` when met inside a folder, and are an error when named directly.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import orjson

from ttpscope.errors import InputError
from ttpscope.paths import cache_dir

MAPPING_TYPES = ("exploitation_technique", "primary_impact", "secondary_impact", "uncategorized")
_CSV_COLUMNS = {"Exploitation Technique": "exploitation_technique", "Primary Impact": "primary_impact",
                "Secondary Impact": "secondary_impact", "Uncategorized": "uncategorized"}
CVE_RE = re.compile(r"\bCVE-\d{4}-\d{4,}\b", re.I)
_CVE_EXACT = re.compile(r"^CVE-\d{4}-\d{4,}$", re.I)
_TECH_RE = re.compile(r"^T\d{4}(\.\d{3})?$")


@dataclass(frozen=True)
class CveMapping:
    """One CVE → technique link of one mapping type."""

    cve: str
    technique_id: str
    mapping_type: str  # one of MAPPING_TYPES
    technique_name: str = ""
    description: str = ""  # the CVE's description (Mappings Explorer capability_description)
    capability_group: str = ""  # e.g. code_execution
    comments: str = ""
    references: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()  # files / URLs that state this link
    attack_versions: tuple[str, ...] = ()  # ATT&CK release(s) the sources were mapped against
    domain: str = ""  # ATT&CK domain of the source (enterprise, mobile, ics); "" when the source says not

    def to_dict(self) -> dict:
        return {"cve": self.cve, "id": self.technique_id, "name": self.technique_name,
                "mapping_type": self.mapping_type, "capability_group": self.capability_group,
                "comments": self.comments, "references": list(self.references), "sources": list(self.sources),
                "attack_versions": list(self.attack_versions), "domain": self.domain}


@dataclass
class VulnMappings:
    """All loaded CVE mappings, indexed by CVE and by technique."""

    by_cve: dict[str, list[CveMapping]] = field(default_factory=dict)
    sources: list[dict] = field(default_factory=list)  # per file: {source, format, attack_version, read, accepted, rejected}
    errors: list[str] = field(default_factory=list)  # rejected records: "file [record]: problem"
    skipped: list[str] = field(default_factory=list)  # files in a folder that are not CVE mappings
    descriptions: dict[str, str] = field(default_factory=dict)  # CVE -> description where a source gives one

    def cves(self) -> list[str]:
        return sorted(self.by_cve)

    def __contains__(self, cve: str) -> bool:
        return normalize_cve(cve) in self.by_cve

    def __len__(self) -> int:
        return len(self.by_cve)

    def mappings_for_cve(self, cve: str) -> list[CveMapping]:
        """Every mapping of a CVE, in mapping-type order then technique id ([] if unmapped)."""
        order = {t: i for i, t in enumerate(MAPPING_TYPES)}
        return sorted(self.by_cve.get(normalize_cve(cve), ()),
                      key=lambda m: (order.get(m.mapping_type, 99), m.technique_id))

    def techniques_for_cve(self, cve: str, mapping_types: Iterable[str] | None = None) -> dict[str, list[str]]:
        """Technique ids of a CVE grouped by mapping type (only the types present), e.g.
        ``{'exploitation_technique': ['T1190'], 'primary_impact': ['T1059']}``."""
        wanted = set(mapping_types) if mapping_types else None
        out: dict[str, list[str]] = {}
        for m in self.mappings_for_cve(cve):
            if wanted is None or m.mapping_type in wanted:
                out.setdefault(m.mapping_type, []).append(m.technique_id)
        return out

    def cves_for_technique(self, technique_id: str, mapping_types: Iterable[str] | None = None) -> list[str]:
        """CVEs whose mappings name the technique (exact id; pass a parent and its subs separately)."""
        wanted = set(mapping_types) if mapping_types else None
        return sorted(cve for cve, maps in self.by_cve.items()
                      if any(m.technique_id == technique_id and (wanted is None or m.mapping_type in wanted)
                             for m in maps))

    def describe(self, cve: str) -> str:
        return self.descriptions.get(normalize_cve(cve), "")

    # ---------------------------------------------------------------- building
    def _add(self, m: CveMapping) -> None:
        bucket = self.by_cve.setdefault(m.cve, [])
        for i, old in enumerate(bucket):
            if old.technique_id == m.technique_id and old.mapping_type == m.mapping_type:
                bucket[i] = CveMapping(
                    m.cve, m.technique_id, m.mapping_type, old.technique_name or m.technique_name,
                    old.description or m.description, old.capability_group or m.capability_group,
                    old.comments or m.comments, tuple(dict.fromkeys(old.references + m.references)),
                    tuple(dict.fromkeys(old.sources + m.sources)),
                    tuple(dict.fromkeys(old.attack_versions + m.attack_versions)), old.domain or m.domain)
                return
        bucket.append(m)
        if m.description:
            self.descriptions.setdefault(m.cve, m.description)


def normalize_cve(cve: str) -> str:
    return cve.strip().upper()


def extract_cves(text: str) -> list[str]:
    """CVE ids found anywhere in a text (a scanner's CSV/JSON/plain export), upper-cased, first-seen order."""
    return list(dict.fromkeys(normalize_cve(m) for m in CVE_RE.findall(text)))


# -------------------------------------------------------------------- sources
def _fetch(url: str, refresh: bool) -> Path:
    """Download a mapping file once into the cache (``cache/mappings``)."""
    from ttpscope.kb.sources import http_get

    suffix = ".csv" if url.lower().split("?")[0].endswith(".csv") else ".json"
    target = cache_dir("mappings") / (hashlib.sha256(url.encode()).hexdigest()[:24] + suffix)
    if target.is_file() and not refresh:
        return target
    data = http_get(url, "give mapping files with --mappings PATH or TTPSCOPE_CVE_MAPPINGS")
    tmp = target.with_suffix(target.suffix + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(target)
    return target


def _expand(source: str | Path, refresh: bool) -> list[tuple[Path, str, bool]]:
    """(local file, label, named directly) for a file, folder or URL."""
    text = str(source)
    if text.startswith(("http://", "https://")):
        return [(_fetch(text, refresh), text, True)]
    path = Path(text).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in (".json", ".csv"))
        if not files:
            raise InputError(text, None, "folder holds no .json or .csv mapping files")
        return [(p, str(p), False) for p in files]
    if not path.is_file():
        raise InputError(text, None, "no such file or folder")
    return [(path, str(path), True)]


def _parse_mapex(raw: bytes, label: str, direct: bool, out: VulnMappings) -> None:
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InputError(label, None, f"not valid JSON ({exc})") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("mapping_objects"), list):
        if not direct and isinstance(doc, (dict, list)):  # e.g. a descriptions or schema file beside the mappings
            if isinstance(doc, list) and doc and all(isinstance(d, dict) and "id" in d and "description" in d
                                                     for d in doc[:5]):
                for d in doc:
                    if isinstance(d, dict) and _CVE_EXACT.match(str(d.get("id", ""))):
                        out.descriptions.setdefault(normalize_cve(d["id"]), str(d.get("description") or ""))
                out.sources.append({"source": label, "format": "cve-descriptions", "attack_version": None,
                                    "read": len(doc), "accepted": len(doc), "rejected": 0})
                return
            out.skipped.append(f"{label}: not a Mappings Explorer file (no 'mapping_objects')")
            return
        raise InputError(label, None, "not a Mappings Explorer file: no 'mapping_objects' list")
    meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    framework = str(meta.get("mapping_framework") or "")
    attack_version = str(meta.get("attack_version") or "") or None
    domain = str(meta.get("technology_domain") or "").lower()
    objs = doc["mapping_objects"]
    cve_like = [o for o in objs if isinstance(o, dict) and _CVE_EXACT.match(str(o.get("capability_id", "")).strip())]
    if objs and not cve_like:
        problem = f"mapping framework '{framework or '?'}' maps no CVEs (capability ids are not CVE-YYYY-N)"
        if direct:
            raise InputError(label, None, problem)
        out.skipped.append(f"{label}: {problem}")
        return
    accepted = rejected = 0
    for i, obj in enumerate(objs):
        where = f"mapping_objects[{i}]"
        if not isinstance(obj, dict):
            out.errors.append(f"{label} [{where}]: not an object")
            rejected += 1
            continue
        cve = str(obj.get("capability_id") or "").strip()
        tid = str(obj.get("attack_object_id") or "").strip().rstrip(".").upper()
        mtype = str(obj.get("mapping_type") or "").strip().lower()
        if obj.get("status") == "non_mappable" and not tid:
            rejected += 1  # a deliberate "no technique" record, not an error
            continue
        problem = None
        if not _CVE_EXACT.match(cve):
            problem = f"capability_id {cve!r} is not a CVE id"
        elif not _TECH_RE.match(tid):
            problem = f"attack_object_id {tid!r} is not a technique id"
        elif mtype not in MAPPING_TYPES:
            problem = f"mapping_type {mtype!r} is not one of {', '.join(MAPPING_TYPES)}"
        if problem:
            out.errors.append(f"{label} [{where} {cve}]: {problem}")
            rejected += 1
            continue
        refs = obj.get("references") or []
        out._add(CveMapping(
            normalize_cve(cve), tid, mtype, str(obj.get("attack_object_name") or ""),
            str(obj.get("capability_description") or ""), str(obj.get("capability_group") or ""),
            str(obj.get("comments") or "").strip(), tuple(str(r) for r in refs if r) if isinstance(refs, list) else (),
            (label,), (attack_version,) if attack_version else (), domain))
        accepted += 1
    out.sources.append({"source": label, "format": f"mappings-explorer {framework}".strip(),
                        "attack_version": attack_version, "read": len(objs), "accepted": accepted,
                        "rejected": rejected})


def _parse_csv(raw: bytes, label: str, direct: bool, out: VulnMappings) -> None:
    text = raw.decode("utf-8-sig", errors="replace")
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in (reader.fieldnames or [])]
    if "CVE ID" not in header or not any(c in header for c in _CSV_COLUMNS):
        problem = "not an attack_to_cve CSV (needs a 'CVE ID' column and mapping-type columns " \
                  "such as 'Primary Impact')"
        if direct:
            raise InputError(label, None, problem)
        out.skipped.append(f"{label}: {problem}")
        return
    reader.fieldnames = header
    read = accepted = rejected = 0
    for row in reader:
        read += 1
        line = reader.line_num
        cve = (row.get("CVE ID") or "").strip()
        if not _CVE_EXACT.match(cve):
            out.errors.append(f"{label} [line {line}]: 'CVE ID' {cve!r} is not a CVE id")
            rejected += 1
            continue
        bad = []
        added = 0
        for column, mtype in _CSV_COLUMNS.items():
            for token in re.split(r"[;,\s]+", row.get(column) or ""):
                tid = token.strip().rstrip(".").upper()  # the CSV has a few 'T1036.' typos
                if not tid:
                    continue
                if not _TECH_RE.match(tid):
                    bad.append(f"{column} {token.strip()!r}")
                    continue
                out._add(CveMapping(normalize_cve(cve), tid, mtype, sources=(label,)))
                added += 1
        if bad:
            out.errors.append(f"{label} [line {line} {cve}]: not technique ids: {', '.join(bad)}")
        if added:
            accepted += 1
        else:
            rejected += 1
    out.sources.append({"source": label, "format": "attack_to_cve csv", "attack_version": None,
                        "read": read, "accepted": accepted, "rejected": rejected})


def load_mappings(paths_or_urls: Iterable[str | Path], refresh: bool = False) -> VulnMappings:
    """Load CVE → technique mappings from files, folders and URLs (JSON Mappings Explorer or CSV).

    Raises ``InputError`` for a missing path or a file that is unreadable / not a mapping file; rejected
    records inside a good file are kept in ``errors``. Results are memoised per process by the files'
    identity, so repeated calls are free.
    """
    sources = [str(s) for s in paths_or_urls]
    if not sources:
        raise InputError("mappings", None, "no mapping file given (a Mappings Explorer JSON, an attack_to_cve "
                                           "CSV, a folder of them, or a URL)")
    files: list[tuple[Path, str, bool]] = []
    for src in sources:
        files.extend(_expand(src, refresh))
    key = tuple((str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns, label, direct)
                for p, label, direct in files)
    if key in _memo and not refresh:
        return _memo[key]
    out = VulnMappings()
    for path, label, direct in files:
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise InputError(label, None, f"cannot read: {exc.strerror}") from exc
        head = raw.lstrip()[:1]
        if path.suffix.lower() == ".csv" or (head and head not in (b"{", b"[")):
            _parse_csv(raw, label, direct, out)
        else:
            _parse_mapex(raw, label, direct, out)
    if not out.by_cve:
        raise InputError(", ".join(sources), None, "no CVE mappings found" +
                         (f" ({len(out.errors)} records rejected, first: {out.errors[0]})" if out.errors else ""))
    _memo[key] = out
    return out


_memo: dict[tuple, VulnMappings] = {}

# Official Mappings Explorer KEV mappings (Enterprise), used when no source is given and
# TTPSCOPE_CVE_MAPPINGS is unset; downloaded once into the cache.
OFFICIAL_KEV_URL = ("https://raw.githubusercontent.com/center-for-threat-informed-defense/mappings-explorer/main/"
                    "mappings/kev/attack-16.1/kev-07.28.2025/enterprise/kev-07.28.2025_attack-16.1-enterprise.json")


def configured_mappings(sources: Iterable[str | Path] | None = None) -> VulnMappings | None:
    """The CVE mappings the user asked for: ``sources`` when given, else ``TTPSCOPE_CVE_MAPPINGS``; None when
    neither is set (CVEs are then listed without their technique links, and nothing is downloaded)."""
    sources = list(sources or [])
    if not sources and not os.environ.get("TTPSCOPE_CVE_MAPPINGS", "").strip():
        return None
    return load_mappings(sources or default_sources())


def default_sources() -> list[str]:
    """``TTPSCOPE_CVE_MAPPINGS`` (paths/URLs separated by the OS path separator), else the official KEV URL."""
    env = os.environ.get("TTPSCOPE_CVE_MAPPINGS", "").strip()
    if env:
        return split_sources(env)
    return [OFFICIAL_KEV_URL]


def split_sources(text: str, sep: str = os.pathsep) -> list[str]:
    """Split a path list; on POSIX the separator ':' also occurs in URLs (``https://h:8443/x``), so a
    scheme and the port after a host are joined back to their URL."""
    out: list[str] = []
    for piece in text.split(sep):
        if out and sep == ":" and (
                (out[-1].lower() in ("http", "https") and piece.startswith("//"))
                or (out[-1].lower().startswith(("http://", "https://")) and re.match(r"\d+(/|$)", piece))):
            out[-1] += ":" + piece
        else:
            out.append(piece)
    return [s.strip() for s in out if s.strip()]


def resolve_mapping_techniques(mappings: list[CveMapping], kb, resolver=None) -> tuple[list[CveMapping], list[str]]:
    """Map technique ids onto ``kb``'s release (follows revocations); returns (kept mappings, notes).

    Mapping files are made against one ATT&CK release (15.1, 16.1): an id revoked since is replaced,
    an id the knowledge base lacks is dropped with a note. Mappings of another domain (a mobile file
    when ``kb`` is enterprise) are left out silently. ``resolver(kb, id) -> Resolution`` replaces
    ``kb.resolve_technique`` (e.g. to map ids newer than the knowledge base).
    """
    kept: list[CveMapping] = []
    notes: list[str] = []
    seen: set[tuple[str, str]] = set()
    for m in mappings:
        if m.domain and m.domain != kb.domain:
            continue
        res = resolver(kb, m.technique_id) if resolver else kb.resolve_technique(m.technique_id)
        if res.id is None:
            notes.append(f"{m.cve}: {res.note}")
            continue
        if res.note:
            notes.append(f"{m.cve}: {res.note}")
        if (res.id, m.mapping_type) in seen:
            continue
        seen.add((res.id, m.mapping_type))
        kept.append(CveMapping(m.cve, res.id, m.mapping_type, kb.name_of(res.id), m.description,
                               m.capability_group, m.comments, m.references, m.sources, m.attack_versions,
                               m.domain))
    return kept, notes


def cve_view(mappings: VulnMappings, cve: str, kb=None, resolver=None) -> dict:
    """JSON-ready answer for one CVE: ``{cve, description, techniques: [{id, name, mapping_type, ...}], notes}``.

    With ``kb`` the ids are resolved onto its release and its provenance is added. Raises NotFoundError for
    a CVE no loaded source maps.
    """
    from ttpscope.errors import NotFoundError

    key = normalize_cve(cve)
    if not _CVE_EXACT.match(key):
        raise InputError(cve, None, "not a CVE id (expected CVE-YYYY-NNNN)")
    maps = mappings.mappings_for_cve(key)
    if not maps:
        raise NotFoundError(f"{key} is not in the loaded CVE mappings ({len(mappings)} CVEs from "
                            f"{len([s for s in mappings.sources if s['format'] != 'cve-descriptions'])} files)")
    notes: list[str] = []
    if kb is not None:
        maps, notes = resolve_mapping_techniques(maps, kb, resolver)
    view = {
        "cve": key,
        "description": mappings.describe(key),
        "techniques": [{"id": m.technique_id, "name": m.technique_name, "mapping_type": m.mapping_type,
                        "capability_group": m.capability_group, "comments": m.comments,
                        "references": list(m.references), "sources": list(m.sources)} for m in maps],
        "notes": notes,
    }
    if kb is not None:
        view.update(kb.provenance())
    return view
