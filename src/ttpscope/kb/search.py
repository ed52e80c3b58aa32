"""Ranked free-text search over techniques, groups, software, campaigns and mitigations.

BM25 over descriptions plus strong boosts for matches in the name and aliases: an analyst typing
"credential dumping" expects OS Credential Dumping first, then techniques that talk about it.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable

from ttpscope.kb.aliases import normalize

if TYPE_CHECKING:
    from ttpscope.kb.base import KnowledgeBase

_TOKEN = re.compile(r"[a-z0-9]+")
_STOP = frozenset("a an and are as at be by for from has have in is it its may of on or that the this to was "
                  "were which with".split())
KINDS = ("technique", "group", "software", "campaign", "mitigation")


def tokens(text: str) -> list[str]:
    return [t for t in _TOKEN.findall(text.casefold()) if t not in _STOP]


@dataclass
class _Doc:
    kind: str
    id: str
    name: str
    names: list[str]  # name + aliases
    name_terms: frozenset[str]  # terms of the object's own name
    length: int


class SearchIndex:
    def __init__(self) -> None:
        self.docs: list[_Doc] = []
        self.postings: dict[str, list[tuple[int, int]]] = defaultdict(list)
        self.name_postings: dict[str, set[int]] = defaultdict(set)
        self.avg_len = 1.0

    @classmethod
    def build(cls, kb: KnowledgeBase) -> SearchIndex:
        from ttpscope.kb.base import plain

        idx = cls()
        sources: list[tuple[str, Iterable]] = [
            ("technique", (t for t in kb.techniques.values() if not t.deprecated)),
            ("group", (g for g in kb.groups.values() if not g.deprecated)),
            ("software", (s for s in kb.software.values() if not s.deprecated)),
            ("campaign", (c for c in kb.campaigns.values() if not c.deprecated)),
            ("mitigation", (m for m in kb.mitigations.values() if not m.deprecated)),
        ]
        total = 0
        for kind, objs in sources:
            for obj in objs:
                names = [obj.name, *getattr(obj, "aliases", []), *getattr(obj, "misp_aliases", [])]
                if kind == "technique" and obj.parent and obj.parent in kb.techniques:
                    names.append(f"{kb.techniques[obj.parent].name} {obj.name}")
                body = tokens(plain(obj.description))
                doc_id = len(idx.docs)
                idx.docs.append(_Doc(kind, obj.id, obj.name, names, frozenset(tokens(obj.name)), len(body)))
                total += len(body)
                for term, tf in Counter(body).items():
                    idx.postings[term].append((doc_id, tf))
                for name in names:
                    for term in tokens(name):
                        idx.name_postings[term].add(doc_id)
        idx.avg_len = total / max(1, len(idx.docs))
        return idx

    def query(self, text: str, kinds: Iterable[str] | None = None, limit: int = 20) -> list[dict]:
        wanted = set(kinds) if kinds else set(KINDS)
        terms = list(dict.fromkeys(tokens(text)))
        qnorm = normalize(text)
        scores: dict[int, float] = defaultdict(float)
        n_docs = len(self.docs)
        k1, b = 1.2, 0.75
        for term in terms:
            posting = self.postings.get(term, ())
            if posting:
                idf = math.log(1 + (n_docs - len(posting) + 0.5) / (len(posting) + 0.5))
                for doc_id, tf in posting:
                    norm = tf * (k1 + 1) / (tf + k1 * (1 - b + b * self.docs[doc_id].length / self.avg_len))
                    scores[doc_id] += idf * norm
            name_hits = self.name_postings.get(term, ())
            if name_hits:
                idf = math.log(1 + n_docs / len(name_hits))
                for doc_id in name_hits:
                    scores[doc_id] += 2.0 * idf
        for doc_id, doc in enumerate(self.docs):
            if qnorm and (qnorm == normalize(doc.id) or any(qnorm == normalize(n) for n in doc.names)):
                scores[doc_id] += 100.0  # exact name, alias or id
            elif terms and doc_id in scores:
                if all(t in doc.name_terms for t in terms):
                    scores[doc_id] += 20.0  # every query word in the object's own name
                elif all(doc_id in self.name_postings.get(t, ()) for t in terms):
                    scores[doc_id] += 10.0  # every query word in an alias or the parent's name
        ranked = sorted(((s, d) for d, s in scores.items() if self.docs[d].kind in wanted),
                        key=lambda p: (-p[0], self.docs[p[1]].id))
        return [{"kind": self.docs[d].kind, "id": self.docs[d].id, "name": self.docs[d].name,
                 "score": round(s, 3)} for s, d in ranked[:limit]]
