"""Fast dictionary matching of multi-word phrases (technique names, synonyms, actor and software aliases).

Text is tokenised into lowercase word tokens with their character spans; every phrase is a tuple of tokens
looked up by hashing the n-grams that start at each token. Hyphens and spaces inside phrases are
interchangeable ("side-loading", "side loading" and "sideloading" all match), and matching is linear in the
text length, so a 20 MB report costs a few seconds, not a regex alternation of thousands of names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Generic, Iterator, TypeVar

V = TypeVar("V")
_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_$]*(?:'s)?")


def tokens(text: str) -> list[str]:
    return [t.lower().removesuffix("'s") for t in _TOKEN.findall(text)]


@dataclass(slots=True, frozen=True)
class PhraseHit(Generic[V]):
    start: int  # offsets into the matched text
    end: int
    surface: str  # the text as written
    value: V


class PhraseMatcher(Generic[V]):
    """Longest-match lookup of token phrases; each phrase maps to one value.

    ``case_sensitive`` phrases must appear exactly as registered (for short or common-word names such as
    the software "Net" or "at").
    """

    def __init__(self) -> None:
        self._phrases: dict[tuple[str, ...], tuple[V, str | None]] = {}
        self._first: set[str] = set()
        self.max_len = 1

    def __len__(self) -> int:
        return len(self._phrases)

    def add(self, phrase: str, value: V, case_sensitive: bool = False, overwrite: bool = False) -> None:
        toks = tuple(tokens(phrase))
        if not toks:
            return
        variants = {toks}
        if len(toks) > 1 and "-" in phrase:  # "Side-Loading" also written "sideloading"
            variants.add(tuple(tokens(phrase.replace("-", ""))))
        exact = " ".join(_TOKEN.findall(phrase)) if case_sensitive else None
        for v in variants:
            if overwrite or v not in self._phrases:
                self._phrases[v] = (value, exact)
                self._first.add(v[0])
                self.max_len = max(self.max_len, len(v))

    def finditer(self, text: str) -> Iterator[PhraseHit[V]]:
        """Non-overlapping longest matches, left to right."""
        spans = [(m.start(), m.end()) for m in _TOKEN.finditer(text)]
        low = [text[s:e].lower().removesuffix("'s") for s, e in spans]
        i, n = 0, len(low)
        while i < n:
            if low[i] not in self._first:
                i += 1
                continue
            hit = None
            for k in range(min(self.max_len, n - i), 0, -1):
                entry = self._phrases.get(tuple(low[i:i + k]))
                if entry is None:
                    continue
                value, exact = entry
                start, end = spans[i][0], spans[i + k - 1][1]
                if exact is not None and " ".join(_TOKEN.findall(text[start:end])) != exact:
                    continue
                if k > 1 and not _contiguous(text, spans[i:i + k]):
                    continue
                hit = PhraseHit(start, end, text[start:end], value)
                i += k
                break
            if hit is None:
                i += 1
            else:
                yield hit


def _contiguous(text: str, spans: list[tuple[int, int]]) -> bool:
    """Tokens of a phrase are separated only by spaces, hyphens or slashes (not by a sentence break)."""
    for (_, e), (s, _) in zip(spans, spans[1:]):
        gap = text[e:s]
        if len(gap) > 3 or any(c not in " -/\t\n_" for c in gap):
            return False
    return True
