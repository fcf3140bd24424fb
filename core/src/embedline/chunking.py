"""Chunks along a document's structure, sized by the model's own tokenizer (``by = "structure"``).

A reader plugin (``read_document``) parses markdown, HTML or PDF into :class:`~embedline.contracts.Block`;
plain text becomes paragraph blocks here (:func:`text_blocks`).  :class:`Packer` packs consecutive
blocks of one section (and one page) into chunks of at most ``budget`` tokens, counted by a
:class:`~embedline.contracts.TokenCounter` (the model's tokenizer) or, without one, in words.
Each chunk's embedded text starts with its heading path (``Writing plugins > 5. Tests``) when
``heading`` is on, and that line is counted too, so no chunk is ever cut by the model.

A block too long for one chunk is cut: tables, code and lists between lines, each part repeating
the block's ``header`` (the table's header rows, the code fence, the list's lead-in) and
``footer``; prose between sentences, then between words.  Nothing here imports a heavy library.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence

import attrs

from embedline.contracts import Block

Count = Callable[[Sequence[str]], list[int]]

#: Heading paths are written ``A > B > C`` in the chunk text and in the ``section`` metadata.
SECTION_SEPARATOR = " > "

_SENTENCE_END = re.compile(r"(?<=[.!?:;])\s+")
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n\s*")


def count_words(texts: Sequence[str]) -> list[int]:
    """The counter of models without a tokenizer: whitespace-separated words."""
    return [len(text.split()) for text in texts]


@attrs.frozen
class Chunk:
    """A packed chunk: ``text`` is what is embedded (heading line + body)."""

    text: str
    body: str
    section: tuple[str, ...] = ()
    page: int | None = None
    tokens: int = 0  # of ``text``, as the counter counts

    @property
    def section_text(self) -> str:
        return SECTION_SEPARATOR.join(self.section)


class Packer:
    """Blocks in, chunks out, holding about one chunk's blocks at a time."""

    def __init__(self, budget: int, count: Count = count_words, *, heading: bool = True):
        if budget < 1:
            raise ValueError(f"a chunk must hold at least one token, got a budget of {budget}")
        self.budget, self.count, self.heading = budget, count, heading
        self._key: tuple[tuple[str, ...], int | None] | None = None
        self._prefix = ""
        self._room = budget  # tokens left for the body once the heading line is counted
        self._parts: list[str] = []
        self._used = 0

    def feed(self, block: Block) -> list[Chunk]:
        out: list[Chunk] = []
        key = (block.section, block.page)
        if key != self._key:
            self._flush(out)
            self._key = key
            self._prefix, self._room = self._heading_line(block.section)
        text = block.text.strip("\n")
        if not text.strip():
            return out
        n = self.count([text])[0]
        if n > self._room:
            self._flush(out)
            for part in self._split(block, text):
                out += self._emit([part])
            return out
        if self._parts and self._used + n > self._room:
            self._flush(out)
        self._parts.append(text)
        self._used += n
        return out

    def finish(self) -> list[Chunk]:
        out: list[Chunk] = []
        self._flush(out)
        self._key = None
        return out

    # -- internals --------------------------------------------------------------------------

    def _heading_line(self, section: tuple[str, ...]) -> tuple[str, int]:
        """The heading line and the room it leaves; a path that would take more than half of
        the budget is shortened to its last headings, then left out."""
        if not self.heading or not section:
            return "", self.budget
        for start in range(len(section)):
            line = SECTION_SEPARATOR.join(section[start:])
            n = self.count([line])[0]
            if n <= self.budget // 2:
                return line, self.budget - n
        return "", self.budget

    def _flush(self, out: list[Chunk]) -> None:
        if self._parts:
            out += self._emit(self._parts)
        self._parts, self._used = [], 0

    def _emit(self, parts: list[str]) -> list[Chunk]:
        """``parts`` as one chunk, checked with one count of the whole text: where joining made
        more tokens than the parts' sum (a tokenizer merging across them), the last parts move
        to a chunk of their own."""
        section, page = self._key if self._key is not None else ((), None)
        body = "\n\n".join(parts)
        text = f"{self._prefix}\n\n{body}" if self._prefix else body
        n = self.count([text])[0]
        if n > self.budget and len(parts) > 1:
            cut = len(parts) // 2
            return self._emit(parts[:cut]) + self._emit(parts[cut:])
        return [Chunk(text, body, section, page, n)]

    def _split(self, block: Block, text: str) -> list[str]:
        """Pieces of a block too long for one chunk, each fitting the room left by the heading."""
        if block.kind in ("table", "code", "list"):
            header, footer = block.header.strip("\n"), block.footer.strip("\n")
            lines = text.split("\n")
            if header and "\n".join(lines[: header.count("\n") + 1]) == header:
                lines = lines[header.count("\n") + 1 :]
            else:
                header = ""
            if footer and lines and lines[-1] == footer:
                lines = lines[:-1]
            else:
                footer = ""
            frame = self.count([f"{header}\n{footer}"])[0] if header or footer else 0
            if frame > self._room // 2:  # a header too long to repeat: plain lines
                header = footer = ""
                frame = 0
            pieces = self._pack(lines, "\n", self._room - frame)
            return ["\n".join(p for p in (header, piece, footer) if p) for piece in pieces]
        sentences = [s for s in _SENTENCE_END.split(text) if s.strip()]
        return self._pack(sentences, " ", self._room)

    def _pack(self, units: list[str], joiner: str, room: int) -> list[str]:
        """Consecutive units joined while they fit in ``room``; a unit too long is cut by words."""
        room = max(room, 1)
        counts = self.count(units) if units else []
        pieces: list[str] = []
        current: list[str] = []
        used = 0
        for unit, n in zip(units, counts):
            if n > room:
                if current:
                    pieces.append(joiner.join(current))
                    current, used = [], 0
                pieces += self._words(unit, room)
                continue
            if current and used + n + (1 if joiner == "\n" else 0) > room:
                pieces.append(joiner.join(current))
                current, used = [], 0
            current.append(unit)
            used += n
        if current:
            pieces.append(joiner.join(current))
        return [p for p in pieces if p.strip()]

    def _words(self, text: str, room: int) -> list[str]:
        words = text.split()
        counts = self.count(words)
        pieces, current, used = [], [], 0
        for word, n in zip(words, counts):
            if current and used + n > room:
                pieces.append(" ".join(current))
                current, used = [], 0
            current.append(word)  # a single word longer than the room is kept whole: the model cuts it
            used += n
        if current:
            pieces.append(" ".join(current))
        return pieces


def pack(blocks: Iterable[Block], budget: int, count: Count = count_words, *, heading: bool = True) -> Iterator[Chunk]:
    """The chunks of ``blocks``, produced while they are read."""
    packer = Packer(budget, count, heading=heading)
    for block in blocks:
        yield from packer.feed(block)
    yield from packer.finish()


#: A paragraph of plain text this long is handed on as a block even if it goes on.
MAX_PARAGRAPH_CHARS = 1 << 16


def text_blocks(pieces: Iterable[str]) -> Iterator[Block]:
    """Plain text (in pieces, as it is read) as paragraph blocks: blank lines separate them.
    A paragraph longer than :data:`MAX_PARAGRAPH_CHARS` is handed on in parts cut at whitespace,
    so memory stays bounded on a text without blank lines."""
    tail = ""
    for piece in pieces:
        text = tail + piece
        pos = 0
        for m in _PARAGRAPH_BREAK.finditer(text):
            if m.end() == len(text):  # the break may go on in the next piece
                break
            para = text[pos : m.start()].strip()
            if para:
                yield Block(para)
            pos = m.end()
        tail = text[pos:]
        while len(tail) > MAX_PARAGRAPH_CHARS:
            cut = max(tail.rfind(" ", 0, MAX_PARAGRAPH_CHARS), tail.rfind("\n", 0, MAX_PARAGRAPH_CHARS))
            cut = cut if cut > 0 else MAX_PARAGRAPH_CHARS
            if tail[:cut].strip():
                yield Block(tail[:cut].strip())
            tail = tail[cut:]
    if tail.strip():
        yield Block(tail.strip())


__all__ = ["Chunk", "Count", "Packer", "SECTION_SEPARATOR", "count_words", "pack", "text_blocks"]
