"""STIX patterns → matcher terms (stix2-patterns parses everything beyond the one-comparison form)."""

from __future__ import annotations

import pytest

from ttpscope.feeds.patterns import InvalidPattern, Term, UnsupportedPattern, parse_pattern


@pytest.mark.parametrize("pattern, terms", [
    ("[ipv4-addr:value = '10.1.2.3']", [[Term("ip", "eq", "10.1.2.3")]]),
    ("[ipv4-addr:value = '10.1.2.9/24']", [[Term("ip", "cidr", "10.1.2.0/24")]]),
    ("[ipv6-addr:value = '2001:DB8::1']", [[Term("ip", "eq", "2001:db8::1")]]),
    ("[domain-name:value = 'Evil.Example.']", [[Term("domain", "eq", "evil.example")]]),
    ("[file:hashes.'SHA-256' = 'AB' AND file:name IN ('a.exe', 'b.exe')] OR [url:value LIKE 'http://x/%']",
     [[Term("hash", "eq", "ab"), Term("filename", "eq", "a.exe")],
      [Term("hash", "eq", "ab"), Term("filename", "eq", "b.exe")], [Term("url", "like", "http://x/%")]]),
    ("[windows-registry-key:key = 'HKEY_CURRENT_USER\\\\Software\\\\X\\\\']", [[Term("regkey", "eq", "hkcu\\software\\x")]]),
    ("[network-traffic:dst_ref.value ISSUBSET '198.51.100.0/24']", [[Term("ip", "cidr", "198.51.100.0/24")]]),
    ("[process:name MATCHES '^evil[0-9]+\\\\.exe$']", [[Term("process", "regex", "^evil[0-9]+\\.exe$")]]),
    ("[email-addr:value = 'a@b.example' OR mutex:name = 'Global\\\\M']",
     [[Term("email", "eq", "a@b.example")], [Term("mutex", "eq", "global\\m")]]),
])
def test_patterns_become_terms(pattern, terms):
    assert parse_pattern(pattern) == terms


@pytest.mark.parametrize("pattern, why", [
    ("[process:pid = 4]", "process:pid"),
    ("[ipv4-addr:value = '1.2.3.4'] AND [domain-name:value = 'x.example']", "AND between observations"),
    ("[ipv4-addr:value = '1.2.3.4'] FOLLOWEDBY [domain-name:value = 'x.example']", "FOLLOWEDBY"),
    ("[ipv4-addr:value = '1.2.3.4'] REPEATS 2 TIMES", "qualifiers"),
    ("[ipv4-addr:value != '1.2.3.4']", "negated"),
    ("[file:size > 10]", "file:size"),
])
def test_unsupported_patterns_say_why(pattern, why):
    with pytest.raises(UnsupportedPattern, match=why):
        parse_pattern(pattern)


@pytest.mark.parametrize("pattern", ["", "[ipv4-addr:value = ", "ipv4-addr:value = '1.2.3.4'",
                                     "[ipv4-addr:value = 'not-an-ip']"])
def test_malformed_patterns_are_invalid(pattern):
    with pytest.raises(InvalidPattern):
        parse_pattern(pattern)
