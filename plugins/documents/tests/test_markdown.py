"""Markdown into blocks along its structure (markdown-it-py), and chunks made from them."""

import subprocess
import sys
import textwrap

import embedline_documents
from embedline.chunking import pack
from embedline_documents import markdown

DOC = textwrap.dedent(
    """\
    ---
    title: Front matter is not text
    tags: [a, b]
    ---
    # Writing `plugins`

    A plugin is a small distribution.

    ## 1. The [distribution](https://example.org/x)

    Its files:

    - `pyproject.toml`
    - `src/`

    | key | meaning |
    | --- | --- |
    | name | the plugin |
    | kind | what it is |

    ```toml
    [project]

    name = "x"
    ```

    ### Deeper ###

    Under a third level.

    ## 2. Tests

    Run them.

    ***

    > A quote, kept as text.

    Text after a list that is no lead-in.
    """
)


def test_headings_make_the_section_path_and_are_not_blocks(tmp_path):
    path = tmp_path / "doc.md"
    path.write_text(DOC)
    blocks = list(markdown.read(str(path)))
    got = [(b.kind, b.section) for b in blocks]
    assert got == [
        ("paragraph", ("Writing plugins",)),
        ("list", ("Writing plugins", "1. The distribution")),
        ("table", ("Writing plugins", "1. The distribution")),
        ("code", ("Writing plugins", "1. The distribution")),
        ("paragraph", ("Writing plugins", "1. The distribution", "Deeper")),
        ("paragraph", ("Writing plugins", "2. Tests")),
        ("paragraph", ("Writing plugins", "2. Tests")),
        ("paragraph", ("Writing plugins", "2. Tests")),
    ]
    assert not any("Front matter" in b.text for b in blocks)
    assert all(b.page is None for b in blocks)


def test_a_list_keeps_its_lead_in_tables_their_header_code_its_fences():
    blocks = markdown.parse(DOC)
    lst = next(b for b in blocks if b.kind == "list")
    assert lst.header == "Its files:"
    assert lst.text == "Its files:\n\n- `pyproject.toml`\n- `src/`"
    assert not any(b.kind == "paragraph" and b.text == "Its files:" for b in blocks)  # not twice
    table = next(b for b in blocks if b.kind == "table")
    assert table.header == "| key | meaning |\n| --- | --- |"
    assert table.text.endswith("| kind | what it is |")
    code = next(b for b in blocks if b.kind == "code")
    assert code.text == '```toml\n[project]\n\nname = "x"\n```'  # the blank line inside stays
    assert (code.header, code.footer) == ("```toml", "```")


def test_a_file_without_headings_has_an_empty_section_path():
    blocks = markdown.parse("Just a note.\n\nAnother paragraph.\n")
    assert [(b.text, b.section) for b in blocks] == [("Just a note.", ()), ("Another paragraph.", ())]


def test_setext_headings_and_a_heading_level_going_back_up():
    blocks = markdown.parse("Top\n===\n\n### Deep\n\ntext one\n\n## Middle\n\ntext two\n")
    assert [(b.text, b.section) for b in blocks] == [("text one", ("Top", "Deep")), ("text two", ("Top", "Middle"))]


def test_an_unclosed_fence_and_a_paragraph_ending_with_a_colon_before_no_list():
    blocks = markdown.parse("Note:\n\n```\ncode that never ends\n")
    assert [(b.kind, b.text) for b in blocks] == [("paragraph", "Note:"), ("code", "```\ncode that never ends")]
    assert blocks[1].footer == ""


def test_undecodable_markdown_names_its_byte(tmp_path):
    path = tmp_path / "bad.md"
    path.write_bytes(b"# Title\n\nok\n\n\xff\xfe")
    try:
        list(markdown.read(str(path)))
    except ValueError as exc:
        assert str(exc) == "not valid utf-8 text (byte 13)"
    else:
        raise AssertionError("no error")


def test_the_hook_dispatches_on_format_and_passes_the_encoding(tmp_path):
    path = tmp_path / "latin.md"
    path.write_bytes("# Caf\xe9\n\nCr\xe8me.\n".encode("latin-1"))
    blocks = list(embedline_documents.read_document(path=str(path), format="markdown", encoding="latin-1"))
    assert [(b.text, b.section) for b in blocks] == [("Crème.", ("Café",))]
    assert embedline_documents.read_document(path=str(path), format="docx", encoding="utf-8") is None


def test_chunks_of_a_document_carry_its_heading_path(tmp_path):
    path = tmp_path / "doc.md"
    path.write_text(DOC)
    chunks = list(pack(markdown.read(str(path)), 60))
    assert chunks[0].text == "Writing plugins\n\nA plugin is a small distribution."
    deeper = next(c for c in chunks if "third level" in c.body)
    assert deeper.text.startswith("Writing plugins > 1. The distribution > Deeper\n\n")


def test_a_10_mb_markdown_file_is_read_in_bounded_memory(tmp_path):
    """Parsed a segment at a time: peak memory grows by far less than the file's size."""
    section = "## Section {i}\n\n" + "Some words about the section, repeated to fill the file. " * 20 + "\n\n"
    table = "| a | b |\n| --- | --- |\n" + "| cell | cell |\n" * 30 + "\n"
    code = "```\n" + "x = 1\n" * 30 + "```\n\n"
    path = tmp_path / "big.md"
    with open(path, "w") as fh:
        i = 0
        while fh.tell() < 10 << 20:
            fh.write(section.format(i=i) + table + code)
            i += 1
    script = textwrap.dedent(
        f"""
        import resource
        from embedline.chunking import pack
        from embedline_documents import markdown
        markdown.read  # imported before the baseline
        import markdown_it
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        n = sections = 0
        last = None
        for chunk in pack(markdown.read({str(path)!r}), 200):
            n += 1
            if chunk.section != last:
                sections, last = sections + 1, chunk.section
        grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
        print(n, sections, grown)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.split()
    chunks, sections, grown_kib = map(int, out)
    assert sections == i  # every section seen, in order, once
    assert chunks >= 2 * i
    assert grown_kib < 40 * 1024, f"peak memory grew by {grown_kib} KiB reading a 10 MiB file"
