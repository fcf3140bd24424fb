"""The HTML reader on pages written by the tests: main text kept and furniture dropped, heading
paths under the title, tables, code and lists as blocks, charsets, and the size limit."""

from __future__ import annotations

import codecs
from pathlib import Path

import embedline_documents
import pytest
from embedline.contracts import Block
from embedline_documents import html

ARTICLE_PAGE = """<!DOCTYPE html>
<html lang="en"><head>
<meta charset="utf-8">
<title>Widget</title>
<style>body { color: red } .hidden-style-marker { }</style>
<script>var tracking = "TRACKING-SCRIPT";</script>
</head>
<body class="has-sidebar">
<a class="skip-link" href="#content">Skip to content</a>
<header class="site-header">
  <div class="logo">Acme Corp</div>
  <nav><ul><li><a href="/">Home</a></li><li><a href="/products">Products</a></li></ul></nav>
</header>
<div id="cookie-banner">We use cookies to improve your experience. <button>Accept all</button></div>
<div class="layout">
  <div class="sidebar"><h3>Related widgets</h3><ul><li>Gadget</li><li>Gizmo</li></ul></div>
  <div id="mainMenu">Menu entry</div>
  <div class="content-navigation-free-article">
  <article>
    <header><h1>Widget</h1></header>
    <p>The widget   turns
       text into <em>vectors</em>.</p>
    <h2>Install <a class="headerlink" href="#install">¶</a></h2>
    <p>Run the installer first.</p>
    <pre><code>pip install widget
if ready:
    widget --help</code></pre>
    <h3>Options</h3>
    <p>You can choose between:</p>
    <ul>
      <li>fast mode</li>
      <li>slow mode
        <ul><li>very slow</li></ul>
      </li>
    </ul>
    <table>
      <thead><tr><th>Name</th><th>Default</th></tr></thead>
      <tbody><tr><td>size</td><td>a|b</td></tr><tr><td>depth</td><td>3</td></tr></tbody>
    </table>
    <h2>Usage</h2>
    <p>Call it from Python.</p>
    <div class="share-buttons">Share on Mastodon</div>
    <footer>Written by the widget team.</footer>
  </article>
  </div>
</div>
<aside>Sponsored: buy more widgets</aside>
<footer class="site-footer">Copyright 2024 Acme Corp</footer>
<script>console.log("FOOTER-SCRIPT")</script>
</body></html>
"""

FURNITURE = (
    "TRACKING-SCRIPT", "color: red", "Skip to content", "Acme Corp", "Home", "Products", "cookies",
    "Accept all", "Related widgets", "Gadget", "Menu entry", "Share on Mastodon", "Sponsored",
    "Copyright", "FOOTER-SCRIPT",
)


def _page(tmp_path: Path, text: str, name: str = "page.html") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _body(title: str, body: str) -> str:
    head = f"<title>{title}</title>" if title else ""
    return f"<!DOCTYPE html><html><head><meta charset='utf-8'>{head}</head><body>{body}</body></html>"


def test_article_page_blocks(tmp_path):
    blocks = list(html.read(_page(tmp_path, ARTICLE_PAGE)))

    assert blocks == [
        Block("The widget turns text into vectors.", "paragraph", ("Widget",)),
        Block("Run the installer first.", "paragraph", ("Widget", "Install")),
        Block(
            "```\npip install widget\nif ready:\n    widget --help\n```",
            "code",
            ("Widget", "Install"),
            header="```",
            footer="```",
        ),
        Block(
            "You can choose between:\n\n- fast mode\n- slow mode\n  - very slow",
            "list",
            ("Widget", "Install", "Options"),
            header="You can choose between:",
        ),
        Block(
            "| Name | Default |\n| --- | --- |\n| size | a\\|b |\n| depth | 3 |",
            "table",
            ("Widget", "Install", "Options"),
            header="| Name | Default |\n| --- | --- |",
        ),
        Block("Call it from Python.", "paragraph", ("Widget", "Usage")),
        Block("Written by the widget team.", "paragraph", ("Widget", "Usage")),  # the article's own footer
    ]
    everything = "\n".join(b.text for b in blocks)
    for text in FURNITURE:
        assert text not in everything


def test_read_document_hook_dispatches_to_the_html_reader(tmp_path):
    path = _page(tmp_path, ARTICLE_PAGE)

    through_hook = list(embedline_documents.read_document(path=str(path), format="html", encoding="utf-8"))

    assert through_hook == list(html.read(str(path)))
    assert len(through_hook) == 7


def test_furniture_dropped_from_a_page_without_main_or_article(tmp_path):
    body = """
    <header><p>Site header text</p></header>
    <div class="page-banner"><h1>Guide</h1></div>
    <div class="content-navigation-free-article"><p>Kept: navigation is not a word of its own here.</p></div>
    <div class="main-nav">Main nav text</div>
    <div id="topNav">Top nav text</div>
    <ol class="breadcrumbs"><li>Docs</li><li>Guide</li></ol>
    <div class="social-share">Social share text</div>
    <div class="footer-links">Footer links text</div>
    <div class="ad-slot">Advertisement text</div>
    <div role="navigation">Role navigation text</div>
    <div role="complementary">Role complementary text</div>
    <div hidden>Hidden attribute text</div>
    <div style="display: none">Display none text</div>
    <div aria-hidden="true">Aria hidden text</div>
    <form><p>Form text</p><button>Send</button></form>
    <noscript>Enable JavaScript</noscript>
    <iframe src="/ad"></iframe>
    <p>Body text stays.</p>
    <footer><p>Site footer text</p></footer>
    """
    blocks = list(html.read(_page(tmp_path, _body("Guide | Acme", body))))

    # The banner wraps the h1, so it stays: the h1 repeats the title and replaces it.
    assert blocks == [
        Block("Kept: navigation is not a word of its own here.", "paragraph", ("Guide",)),
        Block("Body text stays.", "paragraph", ("Guide",)),
    ]


def test_main_is_read_alone(tmp_path):
    body = """
    <div class="intro">Outside main: a teaser.</div>
    <main><h1>Manual</h1><p>Inside main.</p><header><p>A header inside main is content.</p></header></main>
    <div>Also outside main.</div>
    """
    blocks = list(html.read(_page(tmp_path, _body("Manual", body))))

    assert [(b.text, b.section) for b in blocks] == [
        ("Inside main.", ("Manual",)),
        ("A header inside main is content.", ("Manual",)),
    ]


def test_biggest_article_is_read(tmp_path):
    body = """
    <article><h2>Teaser</h2><p>Short.</p></article>
    <article><h2>Story</h2><p>The long story, told with many more words than the teaser has.</p></article>
    <div>Text outside both articles.</div>
    """
    blocks = list(html.read(_page(tmp_path, _body("News", body))))

    assert [(b.text, b.section) for b in blocks] == [
        ("The long story, told with many more words than the teaser has.", ("News", "Story")),
    ]


def test_title_only_page_has_the_title_as_section(tmp_path):
    body = "<p>First paragraph.</p><div>Second <b>one</b>, in a div.</div>"
    blocks = list(html.read(_page(tmp_path, _body("  Release   notes ", body))))

    assert blocks == [
        Block("First paragraph.", "paragraph", ("Release notes",)),
        Block("Second one, in a div.", "paragraph", ("Release notes",)),
    ]


def test_heading_paths(tmp_path):
    body = """
    <p>Before any heading.</p>
    <h1>Widget</h1><p>a</p>
    <h2>Install</h2><p>b</p>
    <h3>On Linux</h3><p>c</p>
    <h2>Usage</h2><p>d</p>
    <h4>Deep</h4><p>e</p>
    <h1>Appendix</h1><p>f</p>
    """
    blocks = list(html.read(_page(tmp_path, _body("Acme documentation", body))))

    assert [(b.text, b.section) for b in blocks] == [
        ("Before any heading.", ("Acme documentation",)),
        ("a", ("Acme documentation", "Widget")),
        ("b", ("Acme documentation", "Widget", "Install")),
        ("c", ("Acme documentation", "Widget", "Install", "On Linux")),
        ("d", ("Acme documentation", "Widget", "Usage")),
        ("e", ("Acme documentation", "Widget", "Usage", "Deep")),
        ("f", ("Acme documentation", "Appendix")),
    ]


@pytest.mark.parametrize("title", ["Widget", "Widget | Acme docs", "Acme docs — Widget"])
def test_first_h1_repeating_the_title_replaces_it(tmp_path, title):
    body = "<h1>Widget</h1><h2>Install</h2><p>Run it.</p>"
    blocks = list(html.read(_page(tmp_path, _body(title, body))))

    assert [(b.text, b.section) for b in blocks] == [("Run it.", ("Widget", "Install"))]


def test_no_title_and_no_headings(tmp_path):
    blocks = list(html.read(_page(tmp_path, _body("", "<p>Just text.</p>"))))

    assert blocks == [Block("Just text.", "paragraph", ())]


def test_text_flow_cut_at_block_elements(tmp_path):
    body = "<div>Text in a div <span>inline</span><div>inner block</div>tail text<br>after a break</div>"
    blocks = list(html.read(_page(tmp_path, _body("T", body))))

    assert [b.text for b in blocks] == ["Text in a div inline", "inner block", "tail text\nafter a break"]


def test_lists_ordered_definition_and_lead_ins(tmp_path):
    body = """
    <h2>Steps</h2>
    <p>Do this:</p>
    <ol start="3"><li>open</li><li>close</li></ol>
    <p>Not a lead-in.</p>
    <ul><li>one</li></ul>
    <p>A colon before a table:</p>
    <table><tr><td>x</td><td>y</td></tr></table>
    <p>A colon before a heading:</p>
    <h2>Glossary</h2>
    <ul></ul>
    <dl><dt>Block</dt><dd>A piece of a document.</dd><dt>Chunk</dt><dd>What is embedded.</dd></dl>
    <p>Last words:</p>
    """
    blocks = list(html.read(_page(tmp_path, _body("T", body))))

    assert blocks == [
        Block("Do this:\n\n3. open\n4. close", "list", ("T", "Steps"), header="Do this:"),
        Block("Not a lead-in.", "paragraph", ("T", "Steps")),
        Block("- one", "list", ("T", "Steps")),
        Block("A colon before a table:", "paragraph", ("T", "Steps")),
        Block("| x | y |", "table", ("T", "Steps")),  # no header row: no header
        Block("A colon before a heading:", "paragraph", ("T", "Steps")),
        Block("- Block: A piece of a document.\n- Chunk: What is embedded.", "list", ("T", "Glossary")),
        Block("Last words:", "paragraph", ("T", "Glossary")),
    ]


def test_table_header_of_th_cells_and_colspan(tmp_path):
    body = """
    <table>
      <caption>Prices</caption>
      <tr><th>Plan</th><th>Price</th><th>Seats</th></tr>
      <tr><td>Free</td><td colspan="2">nothing</td></tr>
      <tr><td>Team <p>with support</p></td><td>10</td></tr>
    </table>
    """
    blocks = list(html.read(_page(tmp_path, _body("T", body))))

    assert blocks == [
        Block(
            "| Plan | Price | Seats |\n| --- | --- | --- |\n| Free | nothing |  |\n| Team with support | 10 |  |",
            "table",
            ("T",),
            header="| Plan | Price | Seats |\n| --- | --- | --- |",
        ),
    ]


def test_layout_table_is_read_as_a_container(tmp_path):
    body = """
    <table role="presentation"><tr>
      <td><h2>Left</h2><p>Left column text.</p></td>
      <td><h2>Right</h2><p>Right column text.</p></td>
    </tr></table>
    """
    blocks = list(html.read(_page(tmp_path, _body("T", body))))

    assert [(b.kind, b.text, b.section) for b in blocks] == [
        ("paragraph", "Left column text.", ("T", "Left")),
        ("paragraph", "Right column text.", ("T", "Right")),
    ]


def test_latin1_page_with_meta_charset(tmp_path):
    page = (
        '<html><head><meta charset="iso-8859-1"><title>Caf\xe9</title></head>'
        "<body><p>Cr\xe8me br\xfbl\xe9e \x96 na\xefve</p></body></html>"
    )
    path = tmp_path / "latin1.html"
    path.write_bytes(page.encode("latin-1"))

    blocks = list(html.read(path))

    # Browsers read iso-8859-1 as windows-1252: byte 0x96 is an en dash.
    assert blocks == [Block("Crème brûlée – naïve", "paragraph", ("Café",))]


def test_http_equiv_charset(tmp_path):
    page = (
        '<html><head><meta http-equiv="Content-Type" content="text/html; charset=windows-1251"></head>'
        "<body><p>Привет</p></body></html>"
    )
    path = tmp_path / "cyrillic.html"
    path.write_bytes(page.encode("cp1251"))

    assert [b.text for b in html.read(path)] == ["Привет"]


def test_byte_order_mark_wins_over_meta(tmp_path):
    page = '<html><head><meta charset="iso-8859-1"></head><body><p>Grüße ✓</p></body></html>'
    utf16 = tmp_path / "utf16.html"
    utf16.write_bytes(codecs.BOM_UTF16_LE + page.encode("utf-16-le"))
    utf8 = tmp_path / "utf8.html"
    utf8.write_bytes(codecs.BOM_UTF8 + page.encode("utf-8"))

    assert [b.text for b in html.read(utf16)] == ["Grüße ✓"]
    assert [b.text for b in html.read(utf8)] == ["Grüße ✓"]


def test_undeclared_bytes_are_utf8_with_replacement(tmp_path):
    path = tmp_path / "broken.html"
    path.write_bytes(b"<p>caf\xc3\xa9 and a stray \xff byte</p>")

    assert [b.text for b in html.read(path)] == ["café and a stray \ufffd byte"]


def test_undeclared_bytes_decoded_with_the_given_encoding(tmp_path):
    path = tmp_path / "legacy.html"
    path.write_bytes("<p>Grüße</p>".encode("cp1252"))

    assert [b.text for b in html.read(path, encoding="cp1252")] == ["Grüße"]


def test_oversized_file_refused_before_reading(tmp_path):
    path = tmp_path / "huge.html"
    with open(path, "wb") as fh:  # sparse: no disk is written
        fh.truncate(html.MAX_HTML_BYTES + 1)

    blocks = html.read(path)  # lazy: nothing is opened before iteration

    with pytest.raises(ValueError) as caught:
        next(iter(blocks))
    assert str(caught.value) == f"{(64 << 20) + 1} bytes of HTML: more than the 64 MiB this reader parses at once"


def test_size_limit_is_the_module_setting(tmp_path, monkeypatch):
    monkeypatch.setattr(html, "MAX_HTML_BYTES", 1000)
    small = _page(tmp_path, _body("T", "<p>" + "x" * 100 + "</p>"), "small.html")
    large = _page(tmp_path, _body("T", "<p>" + "x" * 2000 + "</p>"), "large.html")

    assert [b.text for b in html.read(small)] == ["x" * 100]
    with pytest.raises(ValueError, match=r"^\d+ bytes of HTML: more than the 1000 bytes this reader parses at once$"):
        list(html.read(large))


def test_page_of_furniture_only_has_no_blocks(tmp_path):
    body = """
    <header class="site-header"><a href="/">Acme</a></header>
    <nav><ul><li>Home</li><li>Blog</li></ul></nav>
    <div class="cookie-consent">We use cookies. <button>OK</button></div>
    <script>var x = 1;</script>
    <footer>Copyright Acme</footer>
    """
    assert list(html.read(_page(tmp_path, _body("Acme", body)))) == []


def test_missing_file_is_an_os_error(tmp_path):
    with pytest.raises(OSError):
        list(html.read(tmp_path / "absent.html"))


def test_form_wrapping_the_whole_page_is_not_dropped(tmp_path):
    body = """
    <form id="aspnetForm" action="/page.aspx">
      <h1>Annual report</h1><p>Revenue grew.</p>
      <div role="search"><input name="q"><p>Search the site</p></div>
    </form>
    """
    blocks = list(html.read(_page(tmp_path, _body("Reports", body))))

    assert [(b.text, b.section) for b in blocks] == [("Revenue grew.", ("Reports", "Annual report"))]
