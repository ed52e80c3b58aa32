"""Indicators of compromise in report text, reported apart from techniques (CVE ids: ``kb.vulns.extract_cves``).

Network indicators, hashes and e-mail addresses come from ``ioc-finder`` (maintained; it refangs
``hxxp``, ``[.]``, ``(dot)`` and friends through ``ioc-fanger``). It has no file paths or registry keys, so
those two are matched here with small patterns. Only lines that can hold an indicator are handed to the
library (it is the slow part), in bounded chunks, so a 20 MB report is read in bounded memory.

What is found is then screened (:func:`screen_iocs`): MISP warning lists (``pymispwarninglists``: top
sites, vendor and cloud service domains, public DNS resolvers, RFC 1918 and reserved ranges, known benign
hashes, contact addresses), a public-suffix check (``publicsuffixlist``, its bundled list: offline), the
publishing vendor's own domains and addresses, URLs that are references (citations, footnotes) and standard
system paths. A value the author defanged (``evil[.]com``, ``hxxp://``) is the author saying "indicator" and
passes the warning lists (never a public suffix). Screened-out values are kept as "not an indicator" with the
reason and the list that matched.
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from typing import Callable, Iterable

# A candidate line: a dotted token (possibly defanged), an @, an IPv6-ish run or a long hex string.
_CANDIDATE = re.compile(r"\w(?:\.|\[\.\]|\(\.\)|\{\.\}|\[dot\]|\(dot\))\w|@|\[at\]|\w::?\w+:|"
                        r"\b[0-9a-fA-F]{32,}\b|hxxp", re.I)
# a backtick ends a path or key: reports quote them as Markdown code (`C:\x\y.exe`)
_WIN_PATH = re.compile(r"(?<![\w\\])(?:[A-Za-z]:|%[A-Za-z_]+%)(?:\\{1,2}[^\\/:*?\"<>|\r\n\s,;'`]+)+")
_UNIX_PATH = re.compile(r"(?<![\w/.:])/(?:tmp|var|etc|usr|bin|sbin|opt|home|root|dev|lib|Library|Users|"
                        r"Applications|System|private)(?:/[\w.@+-]+)+")
# a key's segment may hold single spaces ("Windows NT") when a backslash follows: a key is not cut at a space
_REG_SEG = r"[^\\\s\"'<>|,;`]+(?: [^\\\s\"'<>|,;`]+(?=\\))*"
_REG_KEY = re.compile(r"\b(?:HKEY_LOCAL_MACHINE|HKEY_CURRENT_USER|HKEY_CLASSES_ROOT|HKEY_USERS|"
                      r"HKEY_CURRENT_CONFIG|HKLM|HKCU|HKCR|HKU)(?::)?(?:\\{1,2}" + _REG_SEG + r")+"
                      r"(?=[\s\"',;)\]`]|$)")
# File extensions that are also top-level domains: "invoice.zip" or "run.sh" is a file, not a domain,
# unless it is seen in a URL or e-mail address.
_FILE_TLDS = frozenset("zip mov sh py pl ps rs md exe dll bat cmd js vbs doc docx xls xlsx pdf rar jar app txt"
                       .split())
_CHUNK = 1 << 16
_LINE = re.compile(r"[^\n]*\n?")
# No indicator is longer than this: a longer line is handed to the library in pieces (whole words, a word
# longer than this cut), as the library's time grows faster than linearly with a line's length (a 200 KB
# URL-like line took minutes); a longer word is no single indicator and is never reported whole.
MAX_INDICATOR = 2048
_TYPES = (("urls", "url"), ("domains", "domain"), ("ipv4s", "ipv4"), ("ipv6s", "ipv6"),
          ("email_addresses", "email"), ("md5s", "md5"), ("sha1s", "sha1"), ("sha256s", "sha256"))


def find_iocs(text: str, progress: Callable[[int, int], None] | None = None, deadline: float | None = None,
              stopped: list[int] | None = None) -> dict[str, list[str]]:
    """Indicators by type (url, domain, ipv4, ipv6, email, md5, sha1, sha256, file_path, registry_key),
    refanged, each list in order of first mention.

    ``deadline`` (``time.monotonic()``): the library is given no further chunk after it, and the offset
    reached is appended to ``stopped``; what was found before is returned."""
    from ioc_finder import find_iocs as library_find

    found: dict[str, OrderedDict[str, None]] = {t: OrderedDict() for _, t in _TYPES}
    total = len(text)
    done = 0
    for chunk_end, chunk in _candidate_chunks(text):
        if deadline is not None and time.monotonic() > deadline:
            if stopped is not None:
                stopped.append(done)
            break
        done = chunk_end
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
            if len(line) > MAX_INDICATOR:
                line = _pieces(line)
            buf.append(line)
            size += len(line)
            if size >= _CHUNK:
                yield pos, "".join(buf)
                buf, size = [], 0
    if buf:
        yield pos, "".join(buf)
    elif pos == 0:
        yield 0, ""


def _pieces(line: str) -> str:
    """A long line as lines of at most :data:`MAX_INDICATOR` characters, cut between words (a longer word:
    cut in it)."""
    out: list[str] = []
    cur = 0
    for m in re.finditer(r"\S+", line):
        word = m.group()
        if len(word) > MAX_INDICATOR:
            out.extend(word[i:i + MAX_INDICATOR] + "\n" for i in range(0, len(word), MAX_INDICATOR))
            cur = 0
            continue
        if cur and cur + 1 + len(word) > MAX_INDICATOR:
            out.append("\n")
            cur = 0
        out.append((" " if cur else "") + word)
        cur += len(word) + (1 if cur else 0)
    out.append("\n")
    return "".join(out)


# ------------------------------------------------------------------ screening
# The MISP warning lists used: values on them are benign infrastructure or not indicators at all. Lists of
# a million sites, cloud and CDN address ranges, dynamic DNS and VPN ranges are left out on purpose:
# attackers host C2 there, so a hit on them says nothing.
WARNING_LISTS = (
    "alexa", "tranco10k", "majestic_million", "cisco_top10k", "moz-top500", "google", "microsoft",
    "microsoft-office365", "microsoft-win10-connection-endpoints", "security-provider-blogpost",
    "second-level-tlds", "tlds", "rfc6761", "captive-portals", "lots-project", "whats-my-ip", "url-shortener",
    "rfc1918", "rfc5735", "rfc6598", "multicast", "ipv6-linklocal", "public-dns-v4", "public-dns-v6",
    "sinkholes", "empty-hashes", "common-ioc-false-positive", "ti-falsepositives", "nioc-filehash",
    "eicar.com", "mozilla-CA", "common-contact-emails",
)
# RFC 5737 documentation ranges are dropped from the RFC 5735 list: reports and exercises use them as
# stand-ins for the real addresses they cannot publish, so they stand for an indicator, not for benign space
_DOCUMENTATION_RANGES = {"192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"}
_SYSTEM_PATH = re.compile(r"^/(?:usr/(?:local/)?)?s?bin/[\w.+-]+$|^/etc/[\w.-]+$|^/dev/(?:null|zero|u?random|tcp)\b|"
                          r"^/(?:usr/)?lib(?:64)?/?$|^/tmp/?$|^/var/tmp/?$", re.I)
_SYSTEM_BINARIES = frozenset("""
cmd powershell pwsh rundll32 regsvr32 mshta wscript cscript schtasks reg net net1 wmic certutil bitsadmin
vssadmin wevtutil sc whoami ipconfig nltest systeminfo tasklist taskkill netsh msiexec bcdedit attrib icacls
explorer svchost lsass winlogon services csrss smss conhost notepad calc ntdsutil dsquery nslookup ping
""".split())
_WIN_SYSTEM_PATH = re.compile(r"^(?:[a-z]:|%(?:systemroot|windir)%)\\{1,2}windows\\{1,2}(?:system32|syswow64)"
                              r"\\{1,2}([\w.-]+?)(?:\.exe)?$|^%(?:systemroot|windir)%\\{1,2}(?:system32|syswow64)"
                              r"\\{1,2}([\w.-]+?)(?:\.exe)?$", re.I)
_HASH_KINDS = frozenset({"md5", "sha1", "sha256", "sha512"})
_NET_KINDS = frozenset({"domain", "url", "email", "ipv4", "ipv6"})
# a defanging mark; the value is the whole word (run of non-space) holding it. Words are found first and
# searched one by one: \S*mark\S* searched over a long run without a mark is quadratic
_DEFANG_MARK = re.compile(r"\[\.\]|\(\.\)|\{\.\}|\[dot\]|\(dot\)|hxxps?|\[:\]|\[@\]|\[at\]|\[://\]", re.I)
_WORD = re.compile(r"\S+")
_URL = re.compile(r"\b(?:https?|hxxps?)(?::|\[:\])//[^\s<>\"'`)\]]+", re.I)

_warninglists = None
_psl = None


def warning_lists():
    """The selected MISP warning lists (loaded once per process)."""
    global _warninglists
    if _warninglists is None:
        import json
        from pathlib import Path

        import pymispwarninglists
        from pymispwarninglists import WarningLists
        from pymispwarninglists.api import WarningList

        root = Path(pymispwarninglists.__file__).parent / "data" / "misp-warninglists" / "lists"
        lists, exact = [], []
        for name in WARNING_LISTS:
            f = root / name / "list.json"
            if not f.is_file():
                continue
            data = json.loads(f.read_text(encoding="utf-8"))
            if name == "rfc5735":
                data["list"] = [v for v in data["list"] if v not in _DOCUMENTATION_RANGES]
            if name.startswith("public-dns-v"):
                # tens of thousands of single resolver addresses: an exact set (building CIDR filters for
                # them costs ten seconds); the few real ranges stay CIDR-searched
                single = [v.rsplit("/", 1)[0] for v in data["list"] if v.endswith(("/32", "/128")) or "/" not in v]
                data["list"] = [v for v in data["list"] if "/" in v and not v.endswith(("/32", "/128"))]
                exact.append(dict(data, list=single, type="string"))
            lists.append(data)
        _warninglists = WarningLists(slow_search=True, lists=lists)
        for data in exact:  # searched by exact match (slow_search=False)
            _warninglists.warninglists[data["name"] + " (addresses)"] = WarningList(data, slow_search=False)
    return _warninglists


def public_suffixes():
    global _psl
    if _psl is None:
        from publicsuffixlist import PublicSuffixList

        _psl = PublicSuffixList()  # the list bundled with the package: no network
    return _psl


def registrable(domain: str) -> str | None:
    """The registrable part of a host name (``a.b.example.co.uk`` → ``example.co.uk``), None for a public
    suffix or an unknown top-level domain."""
    domain = domain.lower().strip(".")
    try:
        return public_suffixes().privatesuffix(domain, accept_unknown=False)
    except TypeError:  # an older publicsuffixlist without accept_unknown
        return public_suffixes().privatesuffix(domain)


def defanged_values(text: str) -> set[str]:
    """Values the author wrote defanged, refanged (lower case): the author's own "this is an indicator"."""
    from ttpscope.extract.features import refang

    out = set()
    for m in _WORD.finditer(text):
        word = m.group()
        if len(word) > MAX_INDICATOR or not _DEFANG_MARK.search(word):
            continue
        v = refang(word).strip("`'\"()[]<>.,;:").lower()
        if v:
            out.add(v)
            host = _host(v) if "://" in v else v.rsplit("@", 1)[-1]
            out.add(host)
    return out


def reference_urls(text: str) -> set[str]:
    """URLs that are citations: in a References / Sources / Footnotes section, on a footnote line
    (``[3] https://...``, ``3. https://...``), or introduced by "see", "available at", "source:"."""
    from ttpscope.extract.features import refang

    out: set[str] = set()
    in_refs = False
    for line in text.splitlines():
        st = line.strip().lstrip("#").strip()
        low = st.lower().rstrip(":")
        if re.match(r"^(?:\d+(?:\.\d+)*\.?\s+)?(?:references?|sources?|footnotes?|endnotes?|bibliography|"
                    r"further reading|links|citations?|notes|resources)$", low):
            in_refs = True
            continue
        if in_refs and st and (line.lstrip().startswith("#") or (len(st) < 60 and not _URL.search(st)
                                                                  and not re.match(r"^[\[\d(]", st))):
            in_refs = False
        footnote = re.match(r"^\s*(?:\[\d{1,3}\]|\d{1,3}[.)]|\^\d{1,3}|[¹²³⁴⁵⁶⁷⁸⁹⁰]+)\s*\S*\s*", line)
        for m in _URL.finditer(line):
            before = line[max(0, m.start() - 40):m.start()].lower()
            defanged = "hxxp" in m.group().lower() or "[.]" in m.group()
            if defanged:
                continue
            if in_refs or footnote or re.search(r"(?:\bsee|available (?:at|from)|source|reported by|"
                                                 r"published (?:at|by|on)|read more|more at|blog post|"
                                                 r"according to|cf\.|via)\W*$", before):
                out.add(refang(m.group()).rstrip(".,;:"))
    return out


def screen_iocs(iocs: dict[str, list[str]], *, vendor_domains: set[str] | frozenset[str] = frozenset(),
                references: set[str] | frozenset[str] = frozenset(),
                defanged: set[str] | frozenset[str] = frozenset()) -> tuple[dict[str, list[str]], list[dict]]:
    """Split indicators into (kept by type, not-indicators ``[{type, value, reason, list}]``).

    ``vendor_domains``: the publisher's registrable domains (their addresses and pages are not
    indicators); ``references``: URLs the report cites; ``defanged``: values the author defanged."""
    kept: dict[str, list[str]] = {}
    rejected: list[dict] = []
    vendors = {d.lower() for d in vendor_domains}
    refs = {r.lower().rstrip("/") for r in references}
    for kind, values in iocs.items():
        for value in values:
            why = _screen_one(kind, value, vendors, refs, defanged)
            if why is None:
                kept.setdefault(kind, []).append(value)
            else:
                reason, listed = why
                entry = {"type": kind, "value": value, "reason": reason}
                if listed:
                    entry["list"] = listed
                rejected.append(entry)
    return kept, rejected


def _screen_one(kind: str, value: str, vendors: set[str], refs: set[str], defanged) -> tuple[str, str | None] | None:
    low = value.lower()
    host = None
    if kind == "domain":
        host = low
    elif kind == "url":
        host = _host(value)
        if low.rstrip("/") in refs:
            return "a reference the report cites", None
    elif kind == "email":
        host = low.rsplit("@", 1)[-1]
    if host is not None and kind in ("domain", "url", "email") and not re.match(r"^[\d.]+$|^\[?[0-9a-f:]+\]?$", host):
        if public_suffixes().is_public(host):
            return "a public suffix, not a domain", None
        reg = registrable(host)
        if reg is None:
            return "not a registrable domain (unknown top-level domain)", None
        if reg in vendors:
            return "the publisher's own domain", None
    if kind == "file_path":
        base = value.replace("/", "\\").rsplit("\\", 1)[-1].lower().removesuffix(".exe")
        m = _WIN_SYSTEM_PATH.match(value)
        if _SYSTEM_PATH.match(value) or (m and base in _SYSTEM_BINARIES):
            return "a standard system path", None
        return None
    if kind not in _NET_KINDS and kind not in _HASH_KINDS:
        return None
    if low in defanged or (host is not None and host in defanged):
        return None  # the author marked it as an indicator
    lists = warning_lists()
    for probe in dict.fromkeys(v for v in (value, host) if v):
        try:
            hits = lists.search(probe)
        except Exception:  # a value a list's matcher cannot parse is simply not on it
            hits = []
        if hits:
            return "on a MISP warning list", hits[0].name
    return None
