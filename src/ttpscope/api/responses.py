"""Response classes the app and its routers share."""

from __future__ import annotations

import re
from typing import Any

import orjson
from fastapi.responses import JSONResponse, Response


class ORJSONResponse(JSONResponse):
    """JSON via orjson: faster, and datetimes / non-str keys serialise without surprises."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS, default=str)


def attachment(body: bytes | str, media_type: str, filename: str) -> Response:
    return Response(body, media_type=media_type,
                    headers={"content-disposition": f'attachment; filename="{filename}"'})


def safe_name(name: str) -> str:
    """A case name as a download file name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")[:80] or "case"
