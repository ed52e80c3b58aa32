"""Actor (group), software and campaign mentions linked to the knowledge base.

Names come from ATT&CK (names and aliases) and, for groups, the MISP galaxies (``Fancy Bear`` → G0007).
Many software names are also English words ("at", "Net", "Page", "Ping"): a name that ATT&CK's own technique
descriptions use as an ordinary lowercase word must be written exactly as ATT&CK writes it, and lowercase
names of that kind are not matched at all.

Context rules (:func:`resolve_mentions`): a name followed by a product word ("Equation Editor", "Cobalt
Strike Server" is fine, "Office Equation Editor" is not the Equation group) is not a mention; a one-word
alias that is also an ordinary word needs corroboration (another alias of the same entity, or "group",
"actor", "APT" next to it). A name that is both a group and a software (Carbanak, CozyDuke) keeps both
readings; the sentence decides (group words such as "actor", "gang", "attributed" vs software words such
as "malware", "backdoor", "sample"), and a sentence without either keeps both. ATT&CK campaigns are named
too ("Operation Dream Job", "Night Dragon"), only as ATT&CK spells them; a one-word campaign name needs
"campaign" or "operation" next to it.
"""

from __future__ import annotations

from ttpscope.extract.phrases import PhraseMatcher, tokens

MIN_NAME_LEN = 2


def _common_words(kb) -> set[str]:
    words: set[str] = set()
    for tech in kb.techniques.values():
        words.update(w for w in tech.description.split() if w.isalpha() and w.islower())
    return words


class EntityMatcher:
    """Finds group and software names of a knowledge base in text."""

    def __init__(self, kb):
        self.kb = kb
        common = _common_words(kb)
        # phrase -> every (kind, id) it names: a group and a software may share a name (Carbanak)
        readings: dict[tuple[str, ...], list[tuple[str, str]]] = {}
        spelling: dict[tuple[str, ...], tuple[str, bool]] = {}
        self.weak: set[tuple[str, ...]] = set()  # one-word aliases that are ordinary words
        self.weak_campaigns: set[tuple[str, ...]] = set()  # one-word campaign names ("Frankenstein")
        for kind, table, names_of in (
            ("group", kb.groups, lambda o: [o.name, *o.aliases, *o.misp_aliases]),
            ("software", kb.software, lambda o: [o.name, *o.aliases]),
            # ATT&CK's bare ids as campaign names ("C0010") are no names a report uses
            ("campaign", kb.campaigns, lambda o: [n for n in (o.name, *o.aliases) if not _CAMPAIGN_ID.match(n)]),
        ):
            for obj in sorted(table.values(), key=lambda o: o.id):
                if obj.deprecated:
                    continue
                for name in dict.fromkeys(names_of(obj)):
                    toks = tuple(tokens(name))
                    if not toks or len(name.strip()) < MIN_NAME_LEN:
                        continue
                    ordinary = len(toks) == 1 and (toks[0] in common or len(toks[0]) <= 3)
                    if ordinary and name == name.lower():
                        continue  # "at", "ping": lowercase common words are not names in prose
                    if len(toks) == 1 and toks[0] in _ENGLISH:
                        self.weak.add(toks)
                    if kind == "campaign":
                        ordinary = True  # campaign names are phrases ("Night Dragon"): only as ATT&CK spells them
                        if len(toks) == 1:
                            self.weak_campaigns.add(toks)
                    entry = readings.setdefault(toks, [])
                    if (kind, obj.id) not in entry and not any(k == kind for k, _ in entry):
                        entry.append((kind, obj.id))
                    prev = spelling.get(toks)
                    spelling[toks] = (name, ordinary or bool(prev and prev[1]))
        self.matcher: PhraseMatcher[tuple[tuple[str, ...], tuple[tuple[str, str], ...]]] = PhraseMatcher()
        for toks, entry in readings.items():
            name, case_sensitive = spelling[toks]
            self.matcher.add(name, (toks, tuple(entry)), case_sensitive=case_sensitive)

    def find(self, text: str, offset: int = 0) -> list[tuple[str, str, int, int, str]]:
        """(kind, id, start, end, surface) of every mention; offsets shifted by ``offset``. A name with a
        group and a software reading gives both, unless the sentence says which one (see the module doc);
        a name followed by a product word is no mention."""
        out = []
        for h in self.matcher.finditer(text):
            toks, entry = h.value
            if _followed_by_product(text, h.end):
                continue
            chosen = _reading(text, h.start, h.end, entry)
            for kind, oid in chosen:
                out.append((kind, oid, h.start + offset, h.end + offset, h.surface))
        return out

    def is_weak(self, surface: str, kind: str | None = None) -> bool:
        """Whether a mention needs corroboration: an alias that is an ordinary word, or (``kind`` campaign)
        a one-word campaign name, which needs "campaign" or "operation" next to it."""
        toks = tuple(tokens(surface))
        return toks in self.weak or (kind == "campaign" and toks in self.weak_campaigns)


# words after a name that make it part of a product's name ("Office Equation Editor", "Turla Server" is not)
_PRODUCT_WORDS = frozenset("""editor editors office suite studio player reader viewer engine runtime sdk api plugin
toolkit framework library package driver extension add-in formula formulas solver""".split())
_GROUP_CUES = frozenset("""group groups actor actors gang gangs crew apt operators operator attackers attacker adversary
adversaries attributed attribution campaign campaigns behind members intrusion set""".split())
_SOFTWARE_CUES = frozenset("""malware backdoor backdoors trojan trojans implant implants sample samples payload payloads
binary binaries variant variants dropper droppers loader loaders rat executable dll module modules plugin
infection infected installs installed installer ransomware tool tools family families version versions
code botnet""".split())
# a small list of one-word aliases that are everyday English (beyond the words ATT&CK's own texts use)
_ENGLISH = frozenset("""equation turla? darkhotel sandworm? gold silver iron bronze copper tin platinum carbon cobalt
lotus ke3chang? patchwork machete poseidon wirte sidewinder scarlet magic hound rocket kitten charming
thrip leafminer gallium? inception cleaver strider sowbug honeybee elephant bad rabbit nomad""".replace("?", "").split())


def _followed_by_product(text: str, end: int) -> bool:
    m = _NEXT_WORD.match(text, end)
    return bool(m) and m.group(1).lower() in _PRODUCT_WORDS


def _reading(text: str, start: int, end: int, entry) -> list[tuple[str, str]]:
    """Which of a name's readings the sentence means: group cues or software cues within six words."""
    campaigns = [r for r in entry if r[0] == "campaign"]  # a campaign reading is never the ambiguity here
    entry = [r for r in entry if r[0] != "campaign"]
    if len(entry) < 2:
        return list(entry) + campaigns
    window = tokens(text[max(0, start - 60):start]) [-6:] + tokens(text[end:end + 60])[:6]
    g = sum(w in _GROUP_CUES for w in window)
    sw = sum(w in _SOFTWARE_CUES for w in window)
    if g > sw:
        return [r for r in entry if r[0] == "group"] + campaigns
    if sw > g:
        return [r for r in entry if r[0] == "software"] + campaigns
    return list(entry) + campaigns


def corroborated(mentions: list[dict], matcher: EntityMatcher, text_of=None) -> bool:
    """Whether an entity named only through weak one-word aliases is corroborated: one of its mentions
    uses a non-weak alias, or has a group word ("group", "actor", "APT") next to it."""
    for m in mentions:
        if not matcher.is_weak(m.get("surface", "")):
            return True
        around = m.get("around", "")
        if any(w in {"group", "actor", "apt", "gang", "crew"} for w in tokens(around)):
            return True
    return False


import re as _re  # noqa: E402

_CAMPAIGN_ID = _re.compile(r"^C\d{4}$")
_NEXT_WORD = _re.compile(r"[\s\-]+([A-Za-z][A-Za-z-]*)")
