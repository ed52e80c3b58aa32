"""Indicators of compromise in report text, reported apart from techniques (CVE ids: ``kb.vulns.extract_cves``).

Network indicators, hashes and e-mail addresses come from ``ioc-finder`` (maintained; it refangs
``hxxp``, ``[.]``, ``(dot)`` and friends through ``ioc-fanger``). It has no file paths or registry keys, so
those two are matched here with small patterns. Only lines that can hold an indicator are handed to the
library (it is the slow part), in bounded chunks, so a 20 MB report is read in bounded memory.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from typing import Callable, Iterable

# A candidate line: a dotted token (possibly defanged), an @, an IPv6-ish run or a long hex string.
_CANDIDATE = re.compile(r"\w(?:\.|\[\.\]|\(\.\)|\{\.\}|\[dot\]|\(dot\))\w|@|\[at\]|\w::?\w+:|"
                        r"\b[0-9a-fA-F]{32,}\b|hxxp", re.I)
# a backtick ends a path or key: reports quote them as Markdown code (`C:\x\y.exe`)
_WIN_PATH = re.compile(r"(?<![\w\\])(?:[A-Za-z]:|%[A-Za-z_]+%)(?:\\{1,2}[^\\/:*?\"<>|\r\n\s,;'`]+)+")
_UNIX_PATH = re.compile(r"(?<![\w/.:])/(?:tmp|var|etc|usr|bin|sbin|opt|home|root|dev|lib|Library|Users|"
                        r"Applications|System|private)(?:/[\w.@+-]+)+")
_REG_KEY = re.compile(r"\b(?:HKEY_LOCAL_MACHINE|HKEY_CURRENT_USER|HKEY_CLASSES_ROOT|HKEY_USERS|"
                      r"HKEY_CURRENT_CONFIG|HKLM|HKCU|HKCR|HKU)(?::)?(?:\\{1,2}[^\\\r\n\"'<>|,;`]+?)+"
                      r"(?=[\s\"',;)\]`]|$)")
# File extensions that are also top-level domains: "invoice.zip" or "run.sh" is a file, not a domain,
# unless it is seen in a URL or e-mail address.
_FILE_TLDS = frozenset("zip mov sh py pl ps rs md exe dll bat cmd js vbs doc docx xls xlsx pdf rar jar app txt"
                       .split())
_CHUNK = 1 << 16
_LINE = re.compile(r"[^\n]*\n?")
_TYPES = (("urls", "url"), ("domains", "domain"), ("ipv4s", "ipv4"), ("ipv6s", "ipv6"),
          ("email_addresses", "email"), ("md5s", "md5"), ("sha1s", "sha1"), ("sha256s", "sha256"))


def find_iocs(text: str, progress: Callable[[int, int], None] | None = None) -> dict[str, list[str]]:
    """Indicators by type (url, domain, ipv4, ipv6, email, md5, sha1, sha256, file_path, registry_key),
    refanged, each list in order of first mention."""
    from ioc_finder import find_iocs as library_find

    found: dict[str, OrderedDict[str, None]] = {t: OrderedDict() for _, t in _TYPES}
    total = len(text)
    for chunk_end, chunk in _candidate_chunks(text):
        res = library_find(chunk, parse_urls_without_scheme=False, parse_from_url_path=False,
                           parse_domain_name_from_xmpp_address=False,
                           included_ioc_types=[k for k, _ in _TYPES])
        for key, kind in _TYPES:
            for value in res.get(key) or ():
                found[kind][value] = None
        if progress:
            progress(chunk_end, total)
    # a "domain" that is a file name (file.zip, run.sh) and never part of a URL or address is dropped
    hosts = {_host(u) for u in found["url"]} | {e.rsplit("@", 1)[-1].lower() for e in found["email"]}
    for dom in list(found["domain"]):
        if dom.rsplit(".", 1)[-1].lower() in _FILE_TLDS and dom.lower() not in hosts:
            del found["domain"][dom]
    out = {kind: list(values) for kind, values in found.items()}
    out["file_path"] = _ordered(m.group().rstrip(".") for m in _iter_all((_WIN_PATH, _UNIX_PATH), text))
    out["registry_key"] = _ordered(m.group().rstrip(".\\") for m in _REG_KEY.finditer(text))
    return {k: v for k, v in out.items() if v}


def _host(url: str) -> str:
    m = re.match(r"^[a-z][a-z0-9+.-]*://([^/:?#]+)", url, re.I)
    return m.group(1).lower() if m else ""


def _ordered(values: Iterable[str]) -> list[str]:
    return list(OrderedDict.fromkeys(v for v in values if v))


def _iter_all(patterns, text):
    for pattern in patterns:
        yield from pattern.finditer(text)


def _candidate_chunks(text: str):
    """Lines that may hold an indicator, gathered into chunks of about 64 KB: (end offset, chunk text)."""
    buf: list[str] = []
    size = 0
    pos = 0
    for m in _LINE.finditer(text):
        line = m.group()
        if not line:
            break
        pos = m.end()
        if _CANDIDATE.search(line):
            buf.append(line)
            size += len(line)
            if size >= _CHUNK:
                yield pos, "".join(buf)
                buf, size = [], 0
    if buf:
        yield pos, "".join(buf)
    elif pos == 0:
        yield 0, ""
