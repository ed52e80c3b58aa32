"""Actor and software names: normalisation and enrichment from the MISP galaxies in `pymispgalaxies`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson

_NON_ALNUM = re.compile(r"[^0-9a-z]+")
_GROUP_URL = re.compile(r"attack\.mitre\.org/groups/(G\d{4})", re.I)

# MISP meta keys worth showing an analyst as context of an actor.
CONTEXT_KEYS = {
    "country": "country",
    "cfr-suspected-state-sponsor": "suspected_state_sponsor",
    "cfr-suspected-victims": "suspected_victims",
    "cfr-target-category": "target_categories",
    "cfr-type-of-incident": "incident_type",
    "attribution-confidence": "attribution_confidence",
}


def normalize(name: str) -> str:
    """Case- and punctuation-insensitive key: 'Fancy Bear', 'fancy-bear' and 'FANCYBEAR' agree."""
    return _NON_ALNUM.sub("", name.casefold())


def misp_galaxy_dir() -> Path | None:
    """The clusters folder shipped inside `pymispgalaxies`, without importing its code."""
    import importlib.util

    spec = importlib.util.find_spec("pymispgalaxies")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "misp-galaxy" / "clusters"
    return path if path.is_dir() else None


def misp_actor_records(clusters: Path | None = None) -> list[dict[str, Any]]:
    """Actor entries of the threat-actor and mitre-intrusion-set galaxies.

    Each record: {group_id (if MISP links it to an ATT&CK group), names, context}.
    """
    clusters = clusters or misp_galaxy_dir()
    if clusters is None:
        return []
    records = []
    for fname in ("threat-actor.json", "mitre-intrusion-set.json"):
        path = clusters / fname
        if not path.is_file():
            continue
        for value in orjson.loads(path.read_bytes()).get("values", []):
            meta = value.get("meta") or {}
            group_id = None
            for ext in meta.get("external_id") or []:
                if isinstance(ext, str) and re.fullmatch(r"G\d{4}", ext):
                    group_id = ext
            if group_id is None:
                for ref in meta.get("refs") or []:
                    m = _GROUP_URL.search(str(ref))
                    if m:
                        group_id = m.group(1).upper()
                        break
            raw_name = value.get("value", "")
            # mitre-intrusion-set values read "APT28 - G0007"
            name = re.sub(r"\s+-\s+G\d{4}$", "", raw_name)
            names = [name] + [s for s in (meta.get("synonyms") or []) if isinstance(s, str)]
            context = {}
            for key, label in CONTEXT_KEYS.items():
                if meta.get(key):
                    context[label] = meta[key]
            records.append({"group_id": group_id, "names": names, "context": context, "galaxy": fname})
    return records
