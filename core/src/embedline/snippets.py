"""Search results that read well: the part of a hit's text that matches the query.

A chunk is up to a few hundred tokens; a result list shows one line of it.  :func:`snippet` picks
the sentence sharing the most words with the query (longer words weigh more; words match on
their first five letters, so "plugins" finds "plugin") and shows it and what follows it, as much
as fits, instead of the chunk's first characters.  The heading line the chunker put
at the top of the text is left out: :func:`section_of` gives it, for display on its own.
Plain string work: no model, no index, microseconds per hit.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

# A sentence ends at ".", "!" or "?" followed by a space (not inside "hooks.md" or "e.g.x").
_SENTENCE = re.compile(r"\S.*?(?:[.!?]+(?= )|$)")
_WORD = re.compile(r"[A-Za-z0-9_]+")
_STOP = frozenset(
    "a an and are as at be by can do does for from how i in is it its me my of on or so that the this to "
    "what when where which who why will with you your".split()
)


def section_of(hit: Any) -> str:
    """The heading path stored with a hit (``"Writing plugins > 5. Tests"``), or ""."""
    metadata: Mapping[str, Any] = getattr(hit, "metadata", None) or {}
    section = metadata.get("section")
    return section if isinstance(section, str) else ""


def body_of(text: str, section: str) -> str:
    """``text`` without the heading line the chunker put at its top."""
    if section and text.startswith(section + "\n\n"):
        return text[len(section) + 2 :]
    return text


def _terms(text: str) -> list[str]:
    return [w[:5] for w in (m.group().lower() for m in _WORD.finditer(text)) if w not in _STOP]


def snippet(text: str, query: str | None, *, section: str = "", width: int = 160) -> str:
    """One line of at most ``width`` characters from ``text``, around the sentence that best
    matches ``query`` (its start when nothing matches or there is no text query)."""
    body = " ".join(body_of(text, section).split())
    if len(body) <= width:
        return body
    wanted = set(_terms(query or ""))
    best, best_score = None, 0.0
    if wanted:
        for m in _SENTENCE.finditer(body):
            found = set(_terms(m.group())) & wanted
            score = sum(math.log1p(len(t)) for t in found)
            if score > best_score:
                best, best_score = m, score
    if best is None:
        return _cut(body, 0, width)
    start = best.start()
    while start < len(body) and body[start] == " ":
        start += 1
    return _cut(body, start, width)


def _cut(body: str, start: int, width: int) -> str:
    """``body[start:]`` in at most ``width`` characters, cut between words, marked with "…"."""
    lead = "…" if start > 0 else ""
    room = width - len(lead)
    piece = body[start:]
    if len(piece) <= room:
        return lead + piece
    cut = piece.rfind(" ", 0, room - 1)
    cut = cut if cut > room // 2 else room - 1
    return lead + piece[:cut].rstrip() + "…"


__all__ = ["body_of", "section_of", "snippet"]
