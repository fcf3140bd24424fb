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
    tokens: int = 0  # of ``text``, as the counter counts (-1: not counted yet)
    parts: tuple[str, ...] = attrs.field(default=(), eq=False, repr=False)  # the blocks joined in ``body``
    prefix: str = attrs.field(default="", eq=False, repr=False)

    @property
    def section_text(self) -> str:
        return SECTION_SEPARATOR.join(self.section)


class Packer:
    """Blocks in, chunks out, holding about one chunk's blocks at a time.

    ``feed`` and ``finish`` give chunks whose parts' counts fit; :meth:`verify` counts each
    chunk's whole text (many in one call) and cuts again the rare one that joining made too
    long.  :func:`pack` does both, counting blocks and chunks in batches: a tokenizer call costs
    far more than the tokens it counts."""

    def __init__(self, budget: int, count: Count = count_words, *, heading: bool = True):
        if budget < 1:
            raise ValueError(f"a chunk must hold at least one token, got a budget of {budget}")
        self.budget, self.count, self.heading = budget, count, heading
        self._key: tuple[tuple[str, ...], int | None] | None = None
        self._prefix = ""
        self._room = budget  # tokens left for the body once the heading line is counted
        self._parts: list[str] = []
        self._used = 0
        self.line_counts: dict[str, int] = {}  # heading lines counted ahead (by pack)

    def feed(self, block: Block, tokens: int | None = None) -> list[Chunk]:
        """The chunks ``block`` completes; ``tokens`` is its count if already known."""
        out: list[Chunk] = []
        key = (block.section, block.page)
        if key != self._key:
            self._flush(out)
            self._key = key
            self._prefix, self._room = self._heading_line(block.section)
        text = block.text.strip("\n")
        if not text.strip():
            return out
        n = self.count([text])[0] if tokens is None else tokens
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
            n = self.line_counts.pop(line, None)
            n = self.count([line])[0] if n is None else n
            if n <= self.budget // 2:
                return line, self.budget - n
        return "", self.budget

    def _flush(self, out: list[Chunk]) -> None:
        if self._parts:
            out += self._emit(self._parts)
        self._parts, self._used = [], 0

    def _emit(self, parts: list[str]) -> list[Chunk]:
        """``parts`` as one chunk, not counted as a whole yet (see :meth:`verify`)."""
        section, page = self._key if self._key is not None else ((), None)
        return [_chunk(parts, self._prefix, section, page)]

    def verify(self, chunks: list[Chunk]) -> list[Chunk]:
        """``chunks`` with their whole text counted, in one call; where joining made more tokens
        than the parts' sum (a tokenizer merging across them), the chunk is cut in two between
        its parts, and again, until each fits."""
        counts = self.count([c.text for c in chunks]) if chunks else []
        out: list[Chunk] = []
        for chunk, n in zip(chunks, counts):
            if n <= self.budget or len(chunk.parts) <= 1:
                out.append(attrs.evolve(chunk, tokens=n))
                continue
            cut = len(chunk.parts) // 2
            halves = [_chunk(list(p), chunk.prefix, chunk.section, chunk.page) for p in (chunk.parts[:cut], chunk.parts[cut:])]
            out += self.verify(halves)
        return out

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


def _chunk(parts: list[str], prefix: str, section: tuple[str, ...], page: int | None) -> Chunk:
    body = "\n\n".join(parts)
    text = f"{prefix}\n\n{body}" if prefix else body
    return Chunk(text, body, section, page, -1, tuple(parts), prefix)


#: Blocks counted, and chunks verified, per tokenizer call in :func:`pack`.
COUNT_BATCH = 64


def pack(blocks: Iterable[Block], budget: int, count: Count = count_words, *, heading: bool = True) -> Iterator[Chunk]:
    """The chunks of ``blocks``, produced while they are read (about :data:`COUNT_BATCH` blocks
    ahead): blocks are counted, and chunks verified, a batch per tokenizer call."""
    packer = Packer(budget, count, heading=heading)
    pending: list[Chunk] = []
    for group in _batches(blocks, COUNT_BATCH):
        texts = [b.text.strip("\n") for b in group]
        lines = list(dict.fromkeys(SECTION_SEPARATOR.join(b.section) for b in group if heading and b.section))
        counts = count(texts + lines)
        packer.line_counts = dict(zip(lines, counts[len(texts) :]))
        for block, n in zip(group, counts):
            pending += packer.feed(block, n)
        if len(pending) >= COUNT_BATCH:
            yield from packer.verify(pending)
            pending = []
    yield from packer.verify(pending + packer.finish())


def _batches(blocks: Iterable[Block], size: int) -> Iterator[list[Block]]:
    group: list[Block] = []
    for block in blocks:
        group.append(block)
        if len(group) >= size:
            yield group
            group = []
    if group:
        yield group


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
