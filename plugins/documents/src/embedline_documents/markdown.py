"""Markdown into blocks along its structure, with markdown-it-py (CommonMark plus tables).

Each top-level block of the document (paragraph, table, fenced or indented code, list, block
quote, raw HTML) becomes one :class:`~embedline.contracts.Block` holding its source text as
written, under the heading path in force where it starts.  Headings are not blocks of their own:
they are the ``section`` of the blocks below them (the core writes the path at the top of each
chunk).  A paragraph ending with ":" just before a list is the list's lead-in: it becomes the
list block's ``header``, so the two stay together and every part of a long list repeats it.
YAML front matter (``---`` ... ``---`` at the very top) and thematic breaks are dropped.

The file is read as a stream: lines gather into segments of about :data:`SEGMENT_BYTES` that end
at a blank line outside any code fence, and each segment is parsed on its own, so memory stays
about one segment whatever the file's size.  (A list or block quote whose items are separated by
blank lines may be cut in two at a segment's end; both halves keep their heading path.)
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterator
from typing import Any

from embedline.contracts import Block
from markdown_it import MarkdownIt

#: Bytes of markdown parsed at a time (segments end at a blank line outside code fences).
SEGMENT_BYTES = 1 << 18
#: A segment this long ends at the next line, blank or not (a text without blank lines).
MAX_SEGMENT_BYTES = 1 << 22
READ_BLOCK = 1 << 16

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_ATX_TRAIL = re.compile(r"\s+#+\s*$")


def _parser() -> MarkdownIt:
    return MarkdownIt("commonmark", {"html": True}).enable("table")


def read(path: str, encoding: str = "utf-8") -> Iterator[Block]:
    """The blocks of the markdown file at ``path``, read and parsed a segment at a time."""
    md = _parser()
    headings: list[tuple[int, str]] = []  # the heading path: (level, text), outermost first
    segments = _segments(_lines(path, encoding))
    first = True
    for segment in segments:
        if first:
            segment, first = _without_front_matter(segment), False
        yield from _blocks(md, segment, headings)


def parse(text: str) -> list[Block]:
    """The blocks of a markdown text held in memory (tests, small texts)."""
    md = _parser()
    headings: list[tuple[int, str]] = []
    return list(_blocks(md, _without_front_matter(text.splitlines(keepends=True)), headings))


def _lines(path: str, encoding: str) -> Iterator[str]:
    """The file's lines, decoded a block at a time; a decoding error names its byte."""
    decoder = codecs.getincrementaldecoder(encoding)()
    pending, offset = "", 0
    with open(path, "rb") as fh:
        while True:
            raw = fh.read(READ_BLOCK)
            try:
                text = decoder.decode(raw, final=not raw)
            except UnicodeDecodeError as exc:
                raise ValueError(f"not valid {encoding} text (byte {offset + exc.start})") from None
            offset += len(raw)
            lines = (pending + text).splitlines(keepends=True)
            # The last line may go on in the next block (a "\r" may be half of "\r\n").
            pending = lines.pop() if raw and lines and not lines[-1].endswith("\n") else ""
            yield from lines
            if not raw:
                return


def _segments(lines: Iterator[str]) -> Iterator[list[str]]:
    """Lines grouped into segments that end at a blank line outside a code fence."""
    segment: list[str] = []
    size = 0
    fence: str | None = None
    for line in lines:
        segment.append(line)
        size += len(line)
        m = _FENCE.match(line)
        if m:
            mark = m.group(1)
            if fence is None:
                fence = mark
            elif mark[0] == fence[0] and len(mark) >= len(fence) and not line.strip()[len(mark):].strip():
                fence = None
        elif (fence is None and size >= SEGMENT_BYTES and not line.strip()) or size >= MAX_SEGMENT_BYTES:
            yield segment
            segment, size = [], 0
    if segment:
        yield segment


def _without_front_matter(lines: list[str]) -> list[str]:
    if not lines or lines[0].rstrip("\r\n") != "---":
        return lines
    for i in range(1, min(len(lines), 200)):
        if lines[i].rstrip("\r\n") in ("---", "..."):
            return lines[i + 1 :]
    return lines


def _blocks(md: MarkdownIt, lines: list[str], headings: list[tuple[int, str]]) -> Iterator[Block]:
    tokens = md.parse("".join(lines))
    lead: Block | None = None  # a paragraph ending with ":" that may lead into a list
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token.level != 0 or token.nesting == -1 or token.map is None:
            i += 1
            continue
        end = _close(tokens, i)
        source = "".join(lines[token.map[0] : token.map[1]]).strip("\n")
        section = tuple(text for _, text in headings)
        kind = token.type
        block: Block | None = None
        if kind == "heading_open":
            level = int(token.tag[1])
            while headings and headings[-1][0] >= level:
                headings.pop()
            title = _plain(tokens[i + 1]) if i + 1 < len(tokens) else ""
            if title:
                headings.append((level, title))
        elif kind == "paragraph_open":
            block = Block(source, "paragraph", section)
        elif kind in ("fence", "code_block"):
            block = _code(source, token.type == "fence", section)
        elif kind == "table_open":
            rows = source.split("\n")
            block = Block(source, "table", section, header="\n".join(rows[:2]))
        elif kind in ("bullet_list_open", "ordered_list_open"):
            if lead is not None:
                block = Block(f"{lead.text}\n\n{source}", "list", section, header=lead.text)
                lead = None
            else:
                block = Block(source, "list", section)
        elif kind in ("blockquote_open", "html_block"):
            block = Block(source, "paragraph", section)
        # hr and anything else: no text worth a block
        if lead is not None:  # the paragraph before was no lead-in after all
            yield lead
            lead = None
        if block is not None and block.text.strip():
            if block.kind == "paragraph" and kind == "paragraph_open" and block.text.rstrip().endswith(":"):
                lead = block
            else:
                yield block
        i = end + 1
    if lead is not None:
        yield lead


def _close(tokens: list[Any], i: int) -> int:
    """The index of the token that closes the block opened at ``i`` (``i`` for a leaf token)."""
    if tokens[i].nesting != 1:
        return i
    depth = 0
    for j in range(i, len(tokens)):
        depth += tokens[j].nesting
        if depth == 0:
            return j
    return len(tokens) - 1


def _code(source: str, fenced: bool, section: tuple[str, ...]) -> Block:
    if not fenced:
        return Block(source, "code", section)
    rows = source.split("\n")
    mark = _FENCE.match(rows[0])
    closed = len(rows) > 1 and mark is not None and rows[-1].strip().startswith(mark.group(1)[0] * 3)
    return Block(source, "code", section, header=rows[0], footer=rows[-1] if closed else "")


def _plain(inline: Any) -> str:
    """A heading's plain text: code spans and link texts kept, markup and images' URLs dropped."""
    parts = []
    for child in inline.children or ():
        if child.type in ("text", "code_inline"):
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append(" ")
        elif child.type == "image":
            parts.append(child.content)
        elif child.type == "html_inline":
            continue
    text = " ".join("".join(parts).split())
    return _ATX_TRAIL.sub("", text)
