"""STIX 2.1 indicator patterns → the comparisons the log matcher can run.

A pattern becomes a disjunction of conjunctions (``[[Term, ...], ...]``): an event matches the indicator
when every term of one conjunction matches a value of that event. Parsing is by ``stix2-patterns`` (through
``stix2.pattern_visitor``, which builds typed expressions on its parse tree). The one-comparison form
``[type:path = 'value']`` that nearly every feed uses is recognised by a regular expression that accepts
exactly that production of the grammar, because the ANTLR parse costs ~1 ms a pattern and a large feed
brings hundreds of thousands; anything else goes through the full parser.

Matchable observables: IPv4/IPv6 addresses (``network-traffic`` src/dst refs too; CIDR through ``=`` or
``ISSUBSET``), domain names, URLs, file hashes and names, Windows registry keys, process names, e-mail
addresses and mutexes; operators ``=``, ``IN``, ``LIKE``, ``MATCHES`` and ``ISSUBSET`` (addresses).
Everything else (``AND`` between observations, ``FOLLOWEDBY``, qualifiers, negations, ordering
comparisons, other object types) is reported as unsupported with the reason, never silently dropped.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

# (object type, property path) -> the kind of value the matcher compares
_KINDS: dict[tuple[str, str], str] = {
    ("ipv4-addr", "value"): "ip",
    ("ipv6-addr", "value"): "ip",
    ("network-traffic", "dst_ref.value"): "ip",
    ("network-traffic", "src_ref.value"): "ip",
    ("domain-name", "value"): "domain",
    ("url", "value"): "url",
    ("file", "name"): "filename",
    ("windows-registry-key", "key"): "regkey",
    ("process", "name"): "process",
    ("process", "image_ref.name"): "process",
    ("email-addr", "value"): "email",
    ("mutex", "name"): "mutex",
}
KINDS = ("ip", "domain", "url", "hash", "filename", "regkey", "process", "email", "mutex")

_SIMPLE = re.compile(
    r"^\[\s*([a-z0-9][a-z0-9-]*):((?:[a-z0-9_]+|'[^']+')(?:\.(?:[a-z0-9_]+|'[^']+'))*)\s*=\s*"
    r"'((?:[^'\\]|\\['\\])*)'\s*\]$")
_REG_PREFIX = (("hkey_local_machine", "hklm"), ("hkey_current_user", "hkcu"), ("hkey_users", "hku"),
               ("hkey_classes_root", "hkcr"), ("hkey_current_config", "hkcc"))


@dataclass(frozen=True, slots=True)
class Term:
    """One comparison: ``kind`` (ip, domain, ...), ``op`` (eq, like, regex, cidr) and the lower-cased value."""

    kind: str
    op: str
    value: str


class UnsupportedPattern(ValueError):
    """A valid pattern the matcher cannot run (the message says why)."""


class InvalidPattern(ValueError):
    """Not a STIX 2.1 pattern at all."""


def normalize(kind: str, value: str) -> str:
    """The form values are compared in (both sides): lower case; registry hives abbreviated as Sysmon does."""
    v = value.strip().lower()
    if kind == "regkey":
        for long, short in _REG_PREFIX:
            if v.startswith(long):
                v = short + v[len(long):]
                break
        v = v.rstrip("\\")
    elif kind == "domain":
        v = v.rstrip(".")
    return v


def _unescape(text: str) -> str:
    return text.replace("\\'", "'").replace("\\\\", "\\")


def _path_key(path: str) -> tuple[str, bool]:
    """'hashes.'SHA-256'' -> ('hashes', True) for hashes; else the dotted path."""
    parts = [p.strip("'") for p in re.findall(r"'[^']+'|[^.]+", path)]
    if parts and parts[0] == "hashes":
        return "hashes", True
    return ".".join(parts), False


def _kind(obj_type: str, path: str) -> str:
    key, is_hash = _path_key(path)
    if obj_type == "file" and is_hash:
        return "hash"
    if obj_type == "artifact" and is_hash:
        return "hash"
    kind = _KINDS.get((obj_type, key))
    if kind is None:
        raise UnsupportedPattern(f"{obj_type}:{key} is not an observable the log matcher compares")
    return kind


_DOTTED = re.compile(r"^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$")


def _term(kind: str, op: str, value: str) -> Term:
    if kind == "ip" and op == "eq" and _DOTTED.match(value):  # the common case, without ipaddress's cost
        return Term("ip", "eq", value)
    if kind == "ip" and op in ("eq", "cidr"):
        try:
            net = ipaddress.ip_network(value.strip(), strict=False)
        except ValueError:
            raise InvalidPattern(f"{value!r} is not an IP address or network") from None
        if net.num_addresses == 1:
            return Term("ip", "eq", str(net.network_address).lower())
        if net.version != 4:
            raise UnsupportedPattern(f"IPv6 network {value!r}: only IPv4 ranges are matched")
        return Term("ip", "cidr", str(net))
    if op == "cidr":
        raise UnsupportedPattern("ISSUBSET applies to addresses only")
    return Term(kind, op, normalize(kind, value) if op == "eq" else value.lower())


def parse_pattern(pattern: str) -> list[list[Term]]:
    """The pattern as a disjunction of conjunctions of terms.

    Raises ``InvalidPattern`` (syntax) or ``UnsupportedPattern`` (valid but not matchable on logs)."""
    if not isinstance(pattern, str) or not pattern.strip():
        raise InvalidPattern("empty pattern")
    m = _SIMPLE.match(pattern.strip())
    if m:
        obj_type, path, value = m.group(1), m.group(2), _unescape(m.group(3))
        return [[_term(_kind(obj_type, path), "eq", value)]]
    from stix2.pattern_visitor import create_pattern_object

    try:
        tree = create_pattern_object(pattern, version="2.1")
    except Exception as exc:  # the parser raises several types; all mean the same to a feed
        raise InvalidPattern(f"not a STIX 2.1 pattern: {str(exc).splitlines()[0][:200]}") from None
    dnf = _dnf(tree)
    if len(dnf) > 256:
        raise UnsupportedPattern(f"the pattern expands to {len(dnf)} alternatives (limit 256)")
    return dnf


def _dnf(node) -> list[list[Term]]:
    from stix2 import patterns as P

    if isinstance(node, P.ObservationExpression):
        return _dnf(node.operand)
    if isinstance(node, P.OrObservationExpression):
        return [c for op in node.operands for c in _dnf(op)]
    if isinstance(node, P.ParentheticalExpression):
        return _dnf(node.expression)
    if isinstance(node, P.AndObservationExpression):
        raise UnsupportedPattern("AND between observations needs several correlated events")
    if isinstance(node, P.FollowedByObservationExpression):
        raise UnsupportedPattern("FOLLOWEDBY needs ordered correlated events")
    if isinstance(node, P.QualifiedObservationExpression):
        raise UnsupportedPattern("qualifiers (WITHIN, REPEATS, START/STOP) are not matched on logs")
    if isinstance(node, P.OrBooleanExpression):
        return [c for op in node.operands for c in _dnf(op)]
    if isinstance(node, P.AndBooleanExpression):
        out: list[list[Term]] = [[]]
        for op in node.operands:
            out = [a + b for a in out for b in _dnf(op)]
        return out
    if isinstance(node, P._ComparisonExpression):
        return _comparison(node)
    raise UnsupportedPattern(f"{type(node).__name__} is not matched on logs")


def _comparison(node) -> list[list[Term]]:
    from stix2 import patterns as P

    if node.negated:
        raise UnsupportedPattern(f"negated comparison NOT {node.operator}")
    lhs = node.lhs
    parts = []
    for comp in lhs.property_path:
        name = getattr(comp, "property_name", None) or getattr(comp, "reference_property_name", None)
        if name is None or isinstance(comp, P.ListObjectPathComponent):
            raise UnsupportedPattern("list indexes in object paths are not matched on logs")
        parts.append(name)
    path = ".".join(f"'{p}'" if "-" in p else p for p in parts)
    kind = _kind(lhs.object_type_name, path)

    def text(const) -> str:
        value = getattr(const, "value", None)
        if not isinstance(value, str):
            raise UnsupportedPattern(f"{lhs.object_type_name}:{path} compared with a non-string constant")
        return _unescape(value)  # the parse tree keeps the pattern's escapes (\\ and \')

    if isinstance(node, P.EqualityComparisonExpression):
        return [[_term(kind, "eq", text(node.rhs))]]
    if isinstance(node, P.InComparisonExpression):
        # each member is its own alternative
        return [[_term(kind, "eq", text(v))] for v in node.rhs.value]
    if isinstance(node, P.LikeComparisonExpression):
        return [[_term(kind, "like", text(node.rhs))]]
    if isinstance(node, P.MatchesComparisonExpression):
        pattern = text(node.rhs)
        try:
            re.compile(pattern)
        except re.error as exc:
            raise InvalidPattern(f"MATCHES {pattern!r}: {exc}") from None
        return [[_term(kind, "regex", pattern)]]
    if isinstance(node, P.IsSubsetComparisonExpression):
        return [[_term(kind, "cidr", text(node.rhs))]]
    raise UnsupportedPattern(f"operator {node.operator} is not matched on logs")


def pattern_kinds(dnf: list[list[Term]]) -> list[str]:
    return sorted({t.kind for conj in dnf for t in conj})
