"""Fetch the SigmaHQ rule release into the cache (``ttpscope rules update``)."""

from __future__ import annotations

import io
import shutil
import zipfile
from datetime import datetime, timezone
from pathlib import PurePosixPath

from ttpscope.errors import InputError, OfflineError

SIGMAHQ_RELEASE = "https://github.com/SigmaHQ/sigma/releases/latest/download/sigma_all_rules.zip"
MAX_DOWNLOAD = 200 * 1024 * 1024


def update_rules(url: str = SIGMAHQ_RELEASE, timeout: float = 60.0) -> dict:
    """Download a Sigma rule archive (zip) and make it the default rule set.

    Members are extracted only when their path stays inside the target folder (no ``..``, no absolute
    paths) and ends in .yml/.yaml. Raises OfflineError when the server cannot be reached.
    """
    import requests

    from ttpscope.paths import cache_dir

    try:
        resp = requests.get(url, timeout=timeout, stream=True)
        resp.raise_for_status()
        data = io.BytesIO()
        for chunk in resp.iter_content(1 << 20):
            data.write(chunk)
            if data.tell() > MAX_DOWNLOAD:
                raise InputError(url, None, f"download larger than {MAX_DOWNLOAD >> 20} MB")
    except requests.RequestException as exc:
        raise OfflineError(f"cannot download the Sigma rules from {url}: {exc.__class__.__name__}; "
                           "without network access, pass any folder of rules with --rules") from exc
    try:
        zf = zipfile.ZipFile(data)
    except zipfile.BadZipFile as exc:
        raise InputError(url, None, f"not a zip archive: {exc}") from exc
    root = cache_dir("rules") / "sigmahq"
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    target = root / stamp
    tmp = root / f".{stamp}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    count = 0
    with zf:
        for info in zf.infolist():
            name = PurePosixPath(info.filename)
            if info.is_dir() or name.suffix.lower() not in (".yml", ".yaml"):
                continue
            if name.is_absolute() or ".." in name.parts:
                continue
            dest = tmp.joinpath(*name.parts)
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(zf.read(info))
            count += 1
    if count == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise InputError(url, None, "the archive holds no .yml rule files")
    tmp.rename(target)
    (root / "current").write_text(str(target), encoding="utf-8")
    for old in sorted(p for p in root.iterdir() if p.is_dir() and p != target)[:-2]:  # keep two older ones
        shutil.rmtree(old, ignore_errors=True)
    return {"url": url, "path": str(target), "rules": count}
