"""HTML into blocks along its structure, with selectolax (lexbor).

The page's main text is kept and its furniture dropped: scripts, styles, forms (not one that
wraps the whole page, as ASP.NET pages do), embedded frames and media, navigation, site headers
and footers (those outside an ``<article>`` or ``<main>``), asides, hidden elements, elements
with a landmark role other than the content's (navigation, banner, contentinfo, complementary,
search) and elements whose class or id names them as furniture (``site-footer``, ``mainNav``,
``cookie-banner``, ``sidebar``, ``breadcrumbs``, ``share-buttons``, ``skip-link`` ...: a name
counts when its first or last word is such a word, and not on an element wrapping an ``<h1>``).
When the page has a ``<main>`` (or ``role="main"``), only that is read; else its biggest
``<article>``; else the whole body.

What is left is walked in document order.  Headings are not blocks: they set the ``section`` of
the blocks below them (a heading of level n replaces those of levels n and deeper), under the
page's ``<title>``, unless the first ``<h1>`` repeats the title (then the ``<h1>`` is the root).
Text flows into ``paragraph`` blocks, cut at block elements (``<p>``, ``<div>``, ``<li>`` ...);
``<pre>`` is a fenced ``code`` block; a data ``<table>`` a ``table`` of markdown pipe rows whose
``header`` is its header row and the delimiter row; ``<ul>``, ``<ol>`` and ``<dl>`` are ``list``
blocks of one line per item, led by the paragraph just before when that ends with ":".  Tables
used for layout (with headings or tables inside) are read as containers.

The bytes are decoded by their byte order mark, else by the ``<meta charset>`` (or XML
declaration) near the top, else with the encoding given (UTF-8 by default), bad bytes replaced.
The parser holds the whole tree, so a file over :data:`MAX_HTML_BYTES` is refused unread.
"""

from __future__ import annotations

import codecs
import os
import re
from collections.abc import Iterator
from typing import Any

from embedline.contracts import Block
from selectolax.lexbor import LexborHTMLParser

#: The largest HTML file read: the parsed tree needs several times the file's size in memory.
MAX_HTML_BYTES = 64 << 20

#: Bytes at the top of the file searched for a ``<meta charset>`` or XML declaration.
_SNIFF_BYTES = 4096

_DROP_TAGS = frozenset(
    "script style noscript template svg button iframe frame frameset object embed applet canvas "
    "video audio map select textarea datalist dialog menu nav aside".split()
)
_FURNITURE_TAGS = frozenset({"header", "footer"})  # dropped unless inside <article> or <main>
_CONTENT_TAGS = frozenset({"article", "main"})
#: A <form> around any of these is the page itself (ASP.NET wraps whole pages in one), not a form.
_CONTENT_MARKERS = "main, article, h1, h2, [role=main]"
_NEVER_DROPPED = frozenset({"html", "body", "main", "article"})
_DROP_ROLES = frozenset(
    "navigation banner contentinfo complementary search menu menubar toolbar dialog alertdialog".split()
)
#: Words naming page furniture in class and id names (first or last word of a name).
_FURNITURE_WORDS = frozenset(
    "nav navbar navigation navlinks sidenav topnav subnav menu menubar megamenu sidebar footer "
    "masthead copyright cookie cookies consent gdpr breadcrumb breadcrumbs share sharing sharethis "
    "social ad ads adsense advert adverts advertisement sponsored promo banner skip skiplink "
    "skiplinks toc pagination pager popup modal newsletter toolbar".split()
)
#: Names starting or ending with these words describe a state, not the element (``has-sidebar``).
_STATE_PREFIXES = frozenset("has with no is show hide js toggle".split())
_STATE_SUFFIXES = frozenset("open opened active visible expanded collapsed shown enabled disabled closed".split())
_HIDDEN_STYLE = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden", re.IGNORECASE)
_NAME_WORDS = re.compile(r"[^A-Za-z0-9]+|(?<=[a-z0-9])(?=[A-Z])")

_HEADINGS = {f"h{n}": n for n in range(1, 7)}
#: Elements that end the text flowing before them and start a new one.
_BLOCK_TAGS = frozenset(
    "address article aside blockquote body caption center dd details dialog div dl dt fieldset "
    "figcaption figure footer form h1 h2 h3 h4 h5 h6 header hr html legend li main nav ol p pre "
    "section summary table tbody td tfoot th thead tr ul".split()
)
_LISTS = frozenset({"ul", "ol"})

_BREAK = "\ue000"  # stands for a <br> while whitespace is collapsed
_WHITESPACE = re.compile(rf"[^\S{_BREAK}]+")
_TITLE_SEPARATORS = "|-–—·:»/•"
_HEADING_MARKS = "¶#§ \t\n"

_BOMS = ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))
_META_CHARSET = re.compile(rb"""<meta[^>]*?charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE)
_XML_ENCODING = re.compile(rb"""^\s*<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9_.:-]+)""", re.IGNORECASE)
#: Labels browsers read as another encoding than Python's codec of that name (WHATWG Encoding).
_LABEL_CODECS = {
    "iso-8859-1": "cp1252",
    "iso8859-1": "cp1252",
    "latin1": "cp1252",
    "latin-1": "cp1252",
    "l1": "cp1252",
    "ascii": "cp1252",
    "us-ascii": "cp1252",
    "iso-8859-9": "cp1254",
    "latin5": "cp1254",
    "tis-620": "cp874",
    "iso-8859-11": "cp874",
    "gb2312": "gbk",
    "euc-kr": "cp949",
    "ks_c_5601-1987": "cp949",
    "shift_jis": "cp932",
    "x-sjis": "cp932",
}


def read(path: str | os.PathLike[str], encoding: str = "utf-8") -> Iterator[Block]:
    """The blocks of the HTML file at ``path`` (read, decoded and parsed when iteration starts).

    ``encoding`` decodes a page that declares none (no byte order mark, no ``<meta charset>``).
    """
    tree = LexborHTMLParser(_decode(_read_bytes(path), encoding))
    title = _title(tree)
    root, inside_content = _content_root(tree)
    if root is None:
        return
    yield from _Walker(title).blocks(root, inside_content)


def _read_bytes(path: str | os.PathLike[str]) -> bytes:
    """The file's bytes, refused unread when there are more than :data:`MAX_HTML_BYTES`."""
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size > MAX_HTML_BYTES:
            raise ValueError(_too_large(size))
        data = fh.read(MAX_HTML_BYTES + 1)  # the file may have grown since
    if len(data) > MAX_HTML_BYTES:
        raise ValueError(_too_large(len(data)))
    return data


def _too_large(size: int) -> str:
    return f"{size} bytes of HTML: more than the {_amount(MAX_HTML_BYTES)} this reader parses at once"


def _amount(size: int) -> str:
    """A byte count as people write it: ``64 MiB``, ``12 KiB``, ``100 bytes``."""
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if size >= 1 << shift and size % (1 << shift) == 0:
            return f"{size >> shift} {unit}"
    return f"{size} bytes"


def _decode(data: bytes, fallback: str = "utf-8") -> str:
    """The page's text: by its BOM, else its declared charset, else ``fallback`` (bad bytes replaced)."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return data[len(bom) :].decode(encoding, errors="replace")
    match = _XML_ENCODING.search(data, 0, _SNIFF_BYTES) or _META_CHARSET.search(data, 0, _SNIFF_BYTES)
    declared = _codec(match.group(1).decode("ascii")) if match else None
    return data.decode(declared or fallback, errors="replace")


def _codec(label: str) -> str | None:
    """The codec a browser reads a charset label with, or None for an unknown label."""
    label = label.strip().lower()
    try:
        name = codecs.lookup(_LABEL_CODECS.get(label, label)).name
    except LookupError:
        return None
    # A label written in ASCII inside the page cannot mean UTF-16/32 (browsers then read UTF-8).
    return "utf-8" if name.startswith(("utf-16", "utf-32")) else name


def _title(tree: LexborHTMLParser) -> str:
    """The text of the page's ``<title>`` (in ``<head>``, not an SVG's), whitespace collapsed."""
    node = tree.css_first("head > title") or tree.css_first("head title")
    return _collapse(node.text(deep=True)) if node is not None else ""


def _content_root(tree: LexborHTMLParser) -> tuple[Any | None, bool]:
    """Where the page's own text is: its ``<main>``, else its biggest ``<article>``, else the body.

    Returns the node and whether it is (inside) an article or main, which keeps the ``<header>``
    and ``<footer>`` inside it.
    """
    for main in tree.css("main, [role=main]"):
        if _text_size(main):
            return main, True
    best, best_size = None, 0
    for article in tree.css("article"):
        size = _text_size(article)
        if size > best_size:
            best, best_size = article, size
    if best is not None:
        return best, True
    return tree.body, False


def _text_size(node: Any) -> int:
    """About how many characters of text ``node`` holds (furniture inside counted too: cheap)."""
    return len(node.text(deep=True, strip=True))


def _collapse(text: str) -> str:
    """Runs of whitespace as one space; a ``<br>`` as a line break."""
    text = _WHITESPACE.sub(" ", text)
    return "\n".join(line.strip() for line in text.split(_BREAK)).strip()


def _is_furniture(node: Any, inside_content: bool) -> bool:
    """Whether an element is page furniture (navigation, banners, scripts ...), not content."""
    tag = node.tag
    if tag in _DROP_TAGS:
        return True
    if tag in _NEVER_DROPPED:
        return False
    if tag in _FURNITURE_TAGS and not inside_content:
        return True
    if tag == "form":
        return not _contains(node, _CONTENT_MARKERS)
    attributes = node.attributes
    if not attributes:
        return False
    if (attributes.get("role") or "").strip().lower() in _DROP_ROLES:
        return True
    if "hidden" in attributes or (attributes.get("aria-hidden") or "").strip().lower() == "true":
        return True
    if _HIDDEN_STYLE.search(attributes.get("style") or ""):
        return True
    names = f"{attributes.get('class') or ''} {attributes.get('id') or ''}"
    # A furniture name on an element that wraps the content is a layout class, not furniture.
    return _furniture_name(names) and not _contains(node, "main, article, h1, [role=main]")


def _contains(node: Any, selector: str) -> bool:
    """Whether an element below ``node`` (not ``node`` itself) matches the CSS ``selector``."""
    return any(child.tag[:1] != "-" and child.css_first(selector) is not None for child in _children(node))


def _furniture_name(names: str) -> bool:
    """Whether a class or id name names furniture: its first or last word does (``main-nav``)."""
    for name in names.split():
        words = [word.lower() for word in _NAME_WORDS.split(name) if word]
        if not words or words[0] in _STATE_PREFIXES or words[-1] in _STATE_SUFFIXES:
            continue
        if words[0] in _FURNITURE_WORDS or words[-1] in _FURNITURE_WORDS:
            return True
    return False


def _children(node: Any) -> list[Any]:
    """The node's child nodes (elements, texts, comments) in order."""
    children = []
    child = node.child
    while child is not None:
        children.append(child)
        child = child.next
    return children


def _collect(
    node: Any, inside_content: bool, collapse: bool = True, stop: frozenset[str] = frozenset()
) -> tuple[str, list[Any]]:
    """The text inside ``node``, furniture left out, and the elements of ``stop`` found in it.

    The ``stop`` elements (a list item's sub-lists) are returned in document order and their
    text is not collected.  Block elements inside separate their texts by a space; ``collapse``
    collapses whitespace (else it is kept as written, for ``<pre>``).
    """
    parts: list[str] = []
    stopped: list[Any] = []
    stack: list[tuple[Any, bool]] = [(child, inside_content) for child in reversed(_children(node))]
    while stack:
        current, inside = stack.pop()
        tag = current.tag
        if tag == "-text":
            parts.append(current.text_content or "")
            continue
        if tag.startswith("-") or _is_furniture(current, inside):
            continue
        if tag in stop:
            stopped.append(current)
            continue
        if tag == "br":
            parts.append(_BREAK if collapse else "\n")
            continue
        if tag in _BLOCK_TAGS and collapse:
            parts.append(" ")
        inside = inside or tag in _CONTENT_TAGS
        stack.extend((child, inside) for child in reversed(_children(current)))
    text = "".join(parts)
    return (_collapse(text) if collapse else text), stopped


class _Walker:
    """Turns the content's elements into blocks, in document order, tracking the heading path."""

    def __init__(self, title: str) -> None:
        self._title = title
        self._levels: list[tuple[int, str]] = [(0, title)] if title else []
        self._seen_h1 = False
        self._flow: list[str] = []  # text of the paragraph being gathered
        self._held: Block | None = None  # a paragraph that may lead into a list

    def blocks(self, root: Any, inside_content: bool) -> Iterator[Block]:
        """Every block under ``root``."""
        done = object()  # marks the end of a block element: the text gathered so far is a paragraph
        stack: list[Any] = [(root, inside_content)]
        while stack:
            item = stack.pop()
            if item is done:
                yield from self._paragraph()
                continue
            node, inside = item
            tag = node.tag
            if tag == "-text":
                self._flow.append(node.text_content or "")
                continue
            if tag.startswith("-") or _is_furniture(node, inside):
                continue
            if tag == "br":
                self._flow.append(_BREAK)
                continue
            inside = inside or tag in _CONTENT_TAGS
            if tag in _BLOCK_TAGS:
                yield from self._paragraph()
            if tag in _HEADINGS:
                yield from self._release()
                self._heading(_HEADINGS[tag], " ".join(_collect(node, inside)[0].split()))
                continue
            block = self._special(node, tag, inside)
            if block is not None:
                yield from self._emit(block)
                continue
            if tag in _BLOCK_TAGS:
                stack.append(done)
            stack.extend((child, inside) for child in reversed(_children(node)))
        yield from self._paragraph()
        yield from self._release()

    def _special(self, node: Any, tag: str, inside: bool) -> Block | None:
        """The block of a ``<pre>``, data table or list, or None for elements read as flow."""
        if tag == "pre":
            return self._code(node, inside)
        if tag == "table" and not _is_layout_table(node):
            return self._table(node, inside)
        if tag in _LISTS or tag == "dl":
            lines = _list_lines(node, inside, 0) if tag in _LISTS else _definition_lines(node, inside)
            return Block("\n".join(lines), "list", self._section()) if lines else _NOTHING
        return None

    def _section(self) -> tuple[str, ...]:
        return tuple(text for _, text in self._levels)

    def _heading(self, level: int, text: str) -> None:
        """A heading of ``level`` replaces those of its level and deeper in the path."""
        text = text.strip(_HEADING_MARKS)  # permalink marks Sphinx and others append
        if not text:
            return
        if level == 1 and not self._seen_h1:
            self._seen_h1 = True
            if self._title and _repeats(self._title, text):
                self._levels = []
        self._levels = [(n, t) for n, t in self._levels if n < level] + [(level, text)]

    def _paragraph(self) -> Iterator[Block]:
        """The text gathered since the last block boundary, as a paragraph (held: a lead-in?)."""
        if not self._flow:
            return
        text = _collapse("".join(self._flow))
        self._flow = []
        if text:
            yield from self._emit(Block(text, "paragraph", self._section()))

    def _emit(self, block: Block) -> Iterator[Block]:
        """Yield the held paragraph and ``block``, joining them when the paragraph leads a list."""
        if block is _NOTHING:
            return
        held, self._held = self._held, None
        if held is not None:
            if block.kind == "list" and held.section == block.section:
                block = Block(f"{held.text}\n\n{block.text}", "list", block.section, header=held.text)
            else:
                yield held
        if block.kind == "paragraph" and block.text.endswith(":"):
            self._held = block
        else:
            yield block

    def _release(self) -> Iterator[Block]:
        held, self._held = self._held, None
        if held is not None:
            yield held

    def _code(self, node: Any, inside: bool) -> Block:
        """A ``<pre>`` as a fenced code block, its text as written."""
        code = _collect(node, inside, collapse=False)[0].strip("\n").rstrip()
        if not code.strip():
            return _NOTHING
        return Block(f"```\n{code}\n```", "code", self._section(), header="```", footer="```")

    def _table(self, node: Any, inside: bool) -> Block:
        """A data table as markdown pipe rows; its header rows and the delimiter are the header."""
        header_rows, body_rows = _table_rows(node, inside)
        rows = header_rows + body_rows
        width = max((len(row) for row in rows), default=0)
        if not any(cell for row in rows for cell in row):
            return _NOTHING
        lines = [_pipe_row(row, width) for row in rows]
        if header_rows:
            delimiter = _pipe_row(["---"] * width, width)
            lines.insert(len(header_rows), delimiter)
            header = "\n".join(lines[: len(header_rows) + 1])
        else:
            header = ""
        return Block("\n".join(lines), "table", self._section(), header=header)


_NOTHING = Block("", "paragraph")  # an element that holds no text: no block, but no flow either


def _repeats(title: str, heading: str) -> bool:
    """Whether a heading repeats the page title (``Widget`` in ``Widget | Acme docs``)."""
    title, heading = title.casefold(), heading.casefold()
    if title == heading:
        return True
    if title.startswith(heading):
        return title[len(heading) :].lstrip()[:1] in _TITLE_SEPARATORS
    if title.endswith(heading):
        return title[: -len(heading)].rstrip()[-1:] in _TITLE_SEPARATORS
    return False


def _is_layout_table(node: Any) -> bool:
    """Whether a table lays out the page rather than holding data: headings or tables inside."""
    role = (node.attributes.get("role") or "").strip().lower()
    return role in ("presentation", "none") or _contains(node, "table, h1, h2, h3, h4, h5, h6")


def _table_rows(table: Any, inside: bool) -> tuple[list[list[str]], list[list[str]]]:
    """The table's header rows (in ``<thead>``, else leading rows of ``<th>`` only) and other rows."""
    header: list[list[str]] = []
    body: list[list[str]] = []
    for group, row in _rows(table):
        cells: list[str] = []
        all_th = True
        for cell in _children(row):
            if cell.tag not in ("td", "th"):
                continue
            all_th = all_th and cell.tag == "th"
            text = " ".join(_collect(cell, inside)[0].split()).replace("|", "\\|")
            span = _span(cell.attributes.get("colspan"))
            cells.extend([text] + [""] * (span - 1))
        if not cells:
            continue
        if group == "thead" or (all_th and not body and group != "tfoot"):
            header.append(cells)
        else:
            body.append(cells)
    return header, body


def _rows(table: Any) -> Iterator[tuple[str, Any]]:
    """The table's own rows (not those of tables inside it) with the group each is in."""
    for child in _children(table):
        if child.tag == "tr":
            yield "tbody", child
        elif child.tag in ("thead", "tbody", "tfoot"):
            for row in _children(child):
                if row.tag == "tr":
                    yield child.tag, row


def _span(value: str | None) -> int:
    """A ``colspan`` as a count of columns, within reason."""
    return min(max(_integer(value, 1), 1), 50)


def _integer(value: str | None, default: int) -> int:
    """An integer attribute's value, or ``default`` when it is missing or not a number."""
    try:
        return int((value or "").strip())
    except ValueError:
        return default


def _pipe_row(cells: list[str], width: int) -> str:
    cells = cells + [""] * (width - len(cells))
    return "| " + " | ".join(cells) + " |"


def _list_lines(node: Any, inside: bool, depth: int) -> list[str]:
    """A ``<ul>``/``<ol>`` as lines ``- item`` / ``1. item``, sub-lists indented under their item."""
    ordered = node.tag == "ol"
    number = _integer(node.attributes.get("start"), 1)
    lines: list[str] = []
    for child in _children(node):
        if child.tag != "li":
            if child.tag in _LISTS:  # a list directly inside a list: a sub-list of the item before
                lines.extend(_list_lines(child, inside, depth + 1))
            continue
        if _is_furniture(child, inside):
            continue
        text, sublists = _collect(child, inside, stop=_LISTS)
        text = " ".join(text.split())
        marker = f"{number}." if ordered else "-"
        number += 1
        if text:
            lines.append(f"{'  ' * depth}{marker} {text}")
        for sub in sublists:
            lines.extend(_list_lines(sub, inside, depth + 1))
    return lines


def _definition_lines(node: Any, inside: bool) -> list[str]:
    """A ``<dl>`` as lines ``- term: definition``."""
    lines: list[str] = []
    term, defined = "", True
    for child in _children(node):
        if child.tag not in ("dt", "dd") or _is_furniture(child, inside):
            continue
        text = " ".join(_collect(child, inside)[0].split())
        if child.tag == "dt":
            if not defined:  # a term without a definition
                lines.append(f"- {term}")
            term, defined = text, not text
        elif text:
            lines.append(f"- {term}: {text}" if term else f"- {text}")
            defined = True
    if not defined:
        lines.append(f"- {term}")
    return lines
