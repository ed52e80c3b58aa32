"""Actor (group) and software mentions linked to the knowledge base.

Names come from ATT&CK (names and aliases) and, for groups, the MISP galaxies (``Fancy Bear`` → G0007).
Many software names are also English words ("at", "Net", "Page", "Ping"): a name that ATT&CK's own technique
descriptions use as an ordinary lowercase word must be written exactly as ATT&CK writes it, and lowercase
names of that kind are not matched at all.
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
        self.matcher: PhraseMatcher[tuple[str, str]] = PhraseMatcher()
        # software first, then groups overwrite on a clash: an actor name in a report is the more telling
        for kind, table, names_of in (
            ("software", kb.software, lambda o: [o.name, *o.aliases]),
            ("group", kb.groups, lambda o: [o.name, *o.aliases, *o.misp_aliases]),
        ):
            for obj in sorted(table.values(), key=lambda o: o.id):
                if obj.deprecated:
                    continue
                for name in dict.fromkeys(names_of(obj)):
                    toks = tokens(name)
                    if not toks or len(name.strip()) < MIN_NAME_LEN:
                        continue
                    ordinary = len(toks) == 1 and (toks[0] in common or len(toks[0]) <= 3)
                    if ordinary and name == name.lower():
                        continue  # "at", "ping": lowercase common words are not names in prose
                    self.matcher.add(name, (kind, obj.id), case_sensitive=ordinary, overwrite=kind == "group")

    def find(self, text: str, offset: int = 0) -> list[tuple[str, str, int, int, str]]:
        """(kind, id, start, end, surface) of every mention; offsets shifted by ``offset``."""
        return [(h.value[0], h.value[1], h.start + offset, h.end + offset, h.surface)
                for h in self.matcher.finditer(text)]
