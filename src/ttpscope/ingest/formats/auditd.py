"""Linux audit logs: raw ``audit.log`` text (``type=... msg=audit(ts:serial): k=v ...``) and the family that
recognises audit events (raw, or the auoms records of Azure Monitor's Syslog table, see
:mod:`ttpscope.ingest.formats.linux`).

The kernel writes one *event* as several records (SYSCALL, EXECVE, CWD, PATH..., PROCTITLE) sharing one
``audit(timestamp:serial)`` stamp. The reader groups them into one event:

* ``type`` is the event's characteristic record type — ``EXECVE`` when the event has one (SigmaHQ's
  auditd rules pair ``type: EXECVE`` with its ``a0``, ``a1``... arguments), else the first record that is
  not auxiliary (SYSCALL, USER_CMD, ADD_USER, SERVICE_STOP...); ``record_types`` lists them all;
* a key seen in several records keeps its first value, except that EXECVE's ``a0``... (the argv) win over
  SYSCALL's raw syscall arguments, and the names of several PATH records are joined with a newline;
* the syscall number becomes its name (``syscall: mknod``, as SigmaHQ's ``SYSCALL:`` selections and auoms
  name it; field names compare ignoring case), the number stays as ``syscall_r``; the ENRICHED format's
  interpreted values are kept, those whose name collides ignoring case as ``<name>_name`` (``uid_name``);
* values auditd hex-encodes (an unquoted ``proctitle``, ``name``, ``cmd``, EXECVE argument...) are decoded;
  ``(null)`` and ``?`` are missing;
* an execve event also gets the process-creation fields SigmaHQ's Linux rules use (``Image``,
  ``CommandLine``, ``CurrentDirectory``, ``ProcessId``, ``ParentProcessId``), and its log source names
  the ``process_creation`` category beside ``service: auditd``.

A line that is not an audit record (cut short, no ``msg=audit(...)`` stamp) is rejected with its line
number; the records around it are kept.
"""

from __future__ import annotations

import io
import re
from datetime import datetime, timezone
from typing import Iterator, Mapping

from ttpscope.ingest.base import IngestStats
from ttpscope.ingest.logsource import Family, LogSource, register

_STAMP = re.compile(r"(?:^|\s)msg=audit\((\d+(?:\.\d+)?):(\d+)\):\s?")
_HEX = re.compile(r"(?:[0-9A-Fa-f]{2})+\Z")
# records that only add detail to an event (never its characteristic type)
AUXILIARY = frozenset({"SYSCALL", "CWD", "PATH", "PROCTITLE", "SOCKADDR", "EOE", "BPRM_FCAPS", "MMAP",
                       "OBJ_PID", "FD_PAIR", "CAPSET", "NETFILTER_CFG", "KERN_MODULE", "UNKNOWN"})
# fields whose unquoted value auditd writes hex-encoded (when it holds a space, quote or control byte)
ENCODED = frozenset({"proctitle", "name", "cwd", "comm", "exe", "cmd", "acct", "path", "data", "key",
                     "old", "new", "old-chardev", "new-chardev", "root_dir", "grp", "new_group", "old_group"})
# syscall numbers → names, per audit arch (the calls auditd rule sets and SigmaHQ's rules name)
_X86_64 = {0: "read", 1: "write", 2: "open", 3: "close", 4: "stat", 9: "mmap", 10: "mprotect", 21: "access",
           41: "socket", 42: "connect", 43: "accept", 44: "sendto", 49: "bind", 50: "listen", 56: "clone",
           57: "fork", 58: "vfork", 59: "execve", 62: "kill", 63: "uname", 76: "truncate", 77: "ftruncate",
           82: "rename", 83: "mkdir", 84: "rmdir", 85: "creat", 86: "link", 87: "unlink", 88: "symlink",
           90: "chmod", 91: "fchmod", 92: "chown", 93: "fchown", 94: "lchown", 99: "sysinfo", 101: "ptrace",
           103: "syslog", 105: "setuid", 106: "setgid", 112: "setsid", 113: "setreuid", 117: "setresuid",
           133: "mknod", 135: "personality", 157: "prctl", 161: "chroot", 165: "mount", 166: "umount2",
           169: "reboot", 175: "init_module", 176: "delete_module", 188: "setxattr", 200: "tkill",
           257: "openat", 258: "mkdirat", 259: "mknodat", 260: "fchownat", 263: "unlinkat", 264: "renameat",
           268: "fchmodat", 288: "accept4", 313: "finit_module", 316: "renameat2", 319: "memfd_create",
           321: "bpf", 322: "execveat"}
SYSCALLS = {"c000003e": _X86_64}
MAX_OPEN = 64  # events still collecting records; the oldest is emitted when more are open
MISSING = ("(null)", "?", "(none)", "")


class Truncated(ValueError):
    """A quoted or bracketed value that never closes: the line was cut short."""


_TOKEN = re.compile(r'(?<!\S)([A-Za-z_][\w\-]*)=(?:"([^"]*)"|\'([^\']*)\'|(\[[^\]]*\])|(\S*))')


def parse_kv(text: str, quoted: set[str] | None = None, strict: bool = False) -> dict[str, str]:
    """``k=v k="quoted v" k=[...]`` → dict. Text between tokens that is not ``key=value`` (an unquoted
    value with spaces, as auoms writes ``proctitle``) continues the previous unquoted value. ``quoted``
    collects the keys whose value was quoted (literal, never hex); ``strict`` raises :class:`Truncated`
    on a quote that never closes."""
    out: dict[str, str] = {}
    last = None
    end = 0
    for m in _TOKEN.finditer(text):
        if last is not None and m.start() > end + 1:
            gap = text[end:m.start()].strip()
            if gap:
                out[last] = f"{out[last]} {gap}"
        key, dq, sq, bracket, bare = m.groups()
        if dq is not None or sq is not None:
            out[key] = dq if dq is not None else sq
            if quoted is not None:
                quoted.add(key)
            last = None  # a quoted value is whole
        elif bracket is not None:
            out[key] = bracket
            last = None
        else:
            if bare[:1] in ("\"", "'", "["):
                if strict:
                    raise Truncated(f"the value of {key} never closes")
                bare = bare[1:]
            out[key] = bare
            last = key
        end = m.end()
    if last is not None and end < len(text):
        gap = text[end:].strip()
        if gap:
            out[last] = f"{out[last]} {gap}"
    return out


def decode_hex(value: str) -> str:
    """An auditd hex-encoded string → text (NUL separators between arguments become spaces)."""
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        return value
    return raw.rstrip(b"\x00").replace(b"\x00", b" ").decode("utf-8", errors="replace")


def _value(key: str, raw: str, quoted: bool, execve: bool) -> str | None:
    if not quoted:
        if raw in MISSING:
            return None
        if (key in ENCODED or (execve and key[:1] == "a" and key[1:].isdigit())) and _HEX.match(raw):
            return decode_hex(raw)
    return raw


def parse_record(line: str) -> tuple[str, str, dict[str, str]] | None:
    """One audit line → (stamp "ts:serial", ISO time, fields incl. ``type``), or None if it is not one.
    Raises :class:`Truncated` when a quoted value never closes."""
    m = _STAMP.search(line)
    if m is None:
        return None
    kind = node = None
    for token in line[:m.start()].split():  # "type=SYSCALL", or "node=host type=SYSCALL"
        key, _, value = token.partition("=")
        if key == "type":
            kind = value
        elif key == "node":
            node = value
    if not kind:
        return None
    body = line[m.end():]
    if "\x1d" in body:  # ENRICHED format: interpreted values after a group separator (UID="root" ...)
        body, _, enriched = body.partition("\x1d")
    else:
        enriched = ""
    execve = kind == "EXECVE"
    fields: dict[str, str] = {}
    for key, dq, sq, bracket, bare in _TOKEN.findall(body):
        if bare:  # unquoted: auditd writes no spaces there (it hex-encodes such values)
            if bare[0] in "\"'[":
                raise Truncated(f"the value of {key} never closes")
            value = _value(key, bare, False, execve)
            if value is not None:
                fields[key] = value
        elif dq or sq or bracket:  # quoted: literal (an empty value, quoted or not, is missing)
            fields[key] = dq or sq or bracket
    if enriched:
        lower = {k.lower() for k in fields}
        for key, value in parse_kv(enriched).items():  # SYSCALL=execve, UID="root" ...
            low = key.lower()
            if low == "syscall":
                continue  # the name is worked out below
            # names compare ignoring case: UID="root" beside uid=0 is kept as uid_name
            fields[key if low not in lower else f"{low}_name"] = value
    number = fields.get("syscall")
    if number is not None and number.isdigit():
        name = SYSCALLS.get(fields.get("arch", ""), {}).get(int(number))
        if name:  # rules name the call (SYSCALL: mknod); auoms writes it so, with the number as syscall_r
            fields["syscall"] = name
            fields["syscall_r"] = number
    if node:
        fields.setdefault("node", node)
    fields["type"] = kind
    return f"{m.group(1)}:{m.group(2)}", m.group(1), fields


def iso_time(epoch: str) -> str:
    """An audit stamp's seconds → ISO-8601 UTC with milliseconds."""
    when = datetime.fromtimestamp(float(epoch), tz=timezone.utc)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def group_event(records: list[dict[str, str]], epoch: str, stamp: str) -> dict[str, str]:
    """The records of one audit event → one flat event (see the module docstring)."""
    types = [r["type"] for r in records]
    execve = next((r for r in records if r["type"] == "EXECVE"), None)
    event: dict[str, str] = {}
    names: list[str] = []
    for rec in records:
        kind = rec["type"]
        for key, value in rec.items():
            if kind == "PATH" and key == "name":
                names.append(value)
                continue
            if execve is not None and kind == "SYSCALL" and key[:1] == "a" and key[1:].isdigit():
                continue  # raw pointers: the EXECVE record holds the arguments
            event.setdefault(key, value)
    if names:
        event["name"] = "\n".join(names)
    main = "EXECVE" if execve is not None else next((t for t in types if t not in AUXILIARY), types[0])
    event["type"] = main
    event["record_types"] = "\n".join(dict.fromkeys(types))
    event["timestamp"] = iso_time(epoch)
    event["audit_id"] = stamp
    if execve is not None or event.get("syscall") in ("execve", "execveat"):
        _process_fields(event, execve)
    return event


def _process_fields(event: dict[str, str], execve: Mapping[str, str] | None) -> None:
    """The process-creation names SigmaHQ's Linux rules use, for an execve event."""
    if execve is not None:
        try:
            argc = int(execve.get("argc", "0"))
        except ValueError:
            argc = 0
        args = [execve.get(f"a{i}", "") for i in range(argc or 0)] or \
               [v for k, v in sorted(execve.items()) if k[:1] == "a" and k[1:].isdigit()]
        if args:
            event.setdefault("CommandLine", " ".join(args))
    elif event.get("proctitle"):
        event.setdefault("CommandLine", event["proctitle"])
    for sigma_name, name in (("Image", "exe"), ("CurrentDirectory", "cwd"), ("ProcessId", "pid"),
                             ("ParentProcessId", "ppid")):
        if name in event:
            event.setdefault(sigma_name, event[name])
    user = event.get("uid_name") or event.get("user")
    if user:
        event.setdefault("User", user)


def read_auditd(opener, stats: IngestStats) -> Iterator[tuple[int, dict]]:
    """Raw audit log text → one event per ``audit(ts:serial)`` stamp; the record number is the line of
    the event's first record."""
    open_events: dict[str, tuple[int, str, list[dict[str, str]]]] = {}
    with opener() as fh:
        text = io.TextIOWrapper(fh, encoding="utf-8", errors="replace", newline="")
        for lineno, line in enumerate(text, 1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            try:
                parsed = parse_record(line)
            except Truncated as exc:
                stats.reject(lineno, f"line {lineno}: audit record cut short ({exc}): {line[:80]!r}")
                continue
            if parsed is None:
                stats.reject(lineno, f"line {lineno}: not an audit record (no type=... msg=audit(time:serial):"
                                     f" stamp, or cut short): {line[:80]!r}")
                continue
            stamp, epoch, fields = parsed
            if fields["type"] == "EOE":  # end of event: emit it now
                pending = open_events.pop(stamp, None)
                if pending is not None:
                    stats.accept()
                    yield pending[0], group_event(pending[2], pending[1], stamp)
                continue
            pending = open_events.get(stamp)
            if pending is None:
                open_events[stamp] = (lineno, epoch, [fields])
                if len(open_events) > MAX_OPEN:
                    oldest = next(iter(open_events))
                    first, when, records = open_events.pop(oldest)
                    stats.accept()
                    yield first, group_event(records, when, oldest)
            else:
                pending[2].append(fields)
    for stamp, (first, when, records) in open_events.items():
        stats.accept()
        yield first, group_event(records, when, stamp)


def sniff_auditd(text: str, suffix: str) -> str | None:
    """Audit log text: its first non-blank line is an audit record."""
    first = next((ln for ln in text.splitlines() if ln.strip()), "")
    if first.startswith(("type=", "node=")) and "msg=audit(" in first[:200]:
        return "auditd"
    return None


# ---------------------------------------------------------------------------------------------- family
AUDITD = LogSource("linux", "auditd")
AUDITD_EXEC = LogSource("linux", "auditd", "process_creation")


def recognise(fields: Mapping[str, str]) -> LogSource | None:
    if "audit_id" in fields and "type" in fields and "record_types" in fields:
        return AUDITD_EXEC if "CommandLine" in fields and "Image" in fields else AUDITD
    if fields.get("auoms_version") or str(fields.get("EventType", "")).startswith("AUOMS_"):
        return AUDITD_EXEC if "CommandLine" in fields and "Image" in fields else AUDITD
    return None


FAMILY = register(Family(
    "linux-auditd", recognise,
    entities={"time": ("timestamp", "TimeGenerated", "EventTime"),
              "host": ("node", "Computer", "HostName", "hostname"),
              "user": ("User", "auid_name", "uid_name", "user", "auid", "uid"),
              "src_ip": ("addr", "laddr", "HostIP"),
              "dst_ip": ("raddr", "daddr")}))
