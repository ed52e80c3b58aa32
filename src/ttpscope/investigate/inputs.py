"""Where the commands' technique inputs come from: ids given, a Navigator layer or text file of ids, or a
case (a case JSON file, or a case of the workspace by name or id). The CLI's analysis and defender commands
all read their input through here."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from ttpscope.errors import InputError
from ttpscope.export.layers import technique_ids_from_file
from ttpscope.model import Case
from ttpscope.store import Workspace


def load_case(ref: str, workspace: Workspace | None = None) -> Case:
    """A Case from a case JSON file, else by name or id from the workspace (default: the user's)."""
    path = Path(ref)
    if path.is_file():
        try:
            return Case.from_json(path.read_bytes(), str(path))
        except OSError as exc:
            raise InputError(str(path), None, f"cannot read: {exc.strerror}") from exc
    return (workspace or Workspace()).get_case(ref)


def case_techniques(ref: str, workspace: Workspace | None = None) -> list[str]:
    """The distinct technique ids of a stored case, sorted."""
    return sorted({o.technique_id for o in (workspace or Workspace()).get_case(ref).observations})


def techniques_from(ids: Iterable[str] | None = None, layer: str | Path | None = None) -> list[str]:
    """Technique ids given, then those of a Navigator layer / text file, first occurrence kept."""
    out = list(ids or [])
    if layer:
        out.extend(technique_ids_from_file(layer))
    return list(dict.fromkeys(out))
