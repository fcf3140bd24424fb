"""Chunks along a document's structure, sized by a model's own tokenizer (``by = "structure"``),
and the ``read_document`` hook through which reader plugins parse formats the core cannot."""

import math
import re

import pytest
from embedline import hookimpl
from embedline.chunking import Packer, count_words, pack, text_blocks
from embedline.config import ChunkSpec, SourceSpec
from embedline.contracts import Block, PluginInfo
from embedline.errors import ConfigError, ItemError
from embedline.pipeline import Pipeline
from embedline.sources import Documents, read_file, sniff_format
from embedline.testing import FakeTextModel, fresh_plugin_manager

_PIECE = re.compile(r"\w{1,3}|[^\w\s]")


class TinyTokens:
    """A tiny word-piece tokenizer: every 3 letters of a word, and every punctuation mark, is a
    token (so counts differ from word counts, as a real tokenizer's do)."""

    def __init__(self, limit: int = 40):
        self.limit = limit
        self.identity = f"tiny/{limit}"
        self.calls = 0

    def count(self, texts):
        self.calls += 1
        return [len(_PIECE.findall(t)) for t in texts]


def tiny_count(texts):
    return TinyTokens().count(texts)


def chunks_of(blocks, budget=40, count=tiny_count, heading=True):
    return list(pack(blocks, budget, count, heading=heading))


# -- the packer ----------------------------------------------------------------------------------


def test_blocks_of_one_section_share_a_chunk_and_the_heading_path_leads_it():
    blocks = [Block("Cats purr.", section=("Pets", "Cats")), Block("Cats sleep.", section=("Pets", "Cats"))]
    (chunk,) = chunks_of(blocks)
    assert chunk.text == "Pets > Cats\n\nCats purr.\n\nCats sleep."
    assert chunk.body == "Cats purr.\n\nCats sleep."
    assert chunk.section_text == "Pets > Cats"
    assert chunk.tokens == tiny_count([chunk.text])[0]


def test_a_new_section_or_page_starts_a_new_chunk():
    blocks = [
        Block("one", section=("A",)),
        Block("two", section=("A", "B")),
        Block("three", section=("A", "B"), page=2),
        Block("four", section=("A", "B"), page=3),
    ]
    got = [(c.section, c.page, c.body) for c in chunks_of(blocks)]
    assert got == [(("A",), None, "one"), (("A", "B"), None, "two"), (("A", "B"), 2, "three"), (("A", "B"), 3, "four")]


def test_without_heading_the_text_is_the_body():
    (chunk,) = chunks_of([Block("Cats purr.", section=("Pets",))], heading=False)
    assert chunk.text == chunk.body == "Cats purr."
    assert chunk.section == ("Pets",)  # still in the metadata


def test_no_chunk_exceeds_the_budget_heading_line_included():
    words = " ".join(f"word{i}" for i in range(300))
    sentences = " ".join(f"Sentence number {i} says something." for i in range(60))
    blocks = [
        Block(words, section=("A long heading path", "with two levels")),
        Block(sentences, section=("A long heading path", "with two levels")),
        Block("short", section=("Other",)),
    ]
    for budget in (12, 25, 40, 97):
        chunks = chunks_of(blocks, budget=budget)
        assert all(tiny_count([c.text])[0] <= budget for c in chunks), budget
        # nothing lost: every word of the input is in some chunk, in order
        text = " ".join(c.body for c in chunks)
        assert re.findall(r"word\d+", text) == [f"word{i}" for i in range(300)]
        assert text.count("says something.") == 60


def test_long_prose_is_cut_between_sentences():
    text = " ".join(f"This is sentence {i}." for i in range(20))
    chunks = chunks_of([Block(text)], budget=20)
    assert len(chunks) > 1
    assert all(c.body.endswith(".") and c.body.startswith("This is sentence") for c in chunks)


def test_a_long_table_is_cut_into_row_groups_that_repeat_the_header():
    header = "| name | value |\n| --- | --- |"
    rows = [f"| key{i} | val{i} |" for i in range(40)]
    block = Block("\n".join([header, *rows]), kind="table", section=("Keys",), header=header)
    chunks = chunks_of([block], budget=60)
    assert len(chunks) > 2
    for chunk in chunks:
        assert chunk.body.startswith(header + "\n| key")
        assert tiny_count([chunk.text])[0] <= 60
    got = [line for c in chunks for line in c.body.split("\n")[2:]]
    assert got == rows


def test_code_stays_whole_when_it_fits_else_is_cut_on_lines_inside_its_fences():
    small = Block("```python\nx = 1\ny = 2\n```", kind="code", header="```python", footer="```")
    (chunk,) = chunks_of([small])
    assert chunk.body == small.text
    lines = [f"value_{i} = compute({i})" for i in range(30)]
    big = Block("\n".join(["```python", *lines, "```"]), kind="code", header="```python", footer="```")
    chunks = chunks_of([big], budget=50)
    assert len(chunks) > 1
    for chunk in chunks:
        assert chunk.body.startswith("```python\n") and chunk.body.endswith("\n```")
        assert tiny_count([chunk.text])[0] <= 50
    assert [line for c in chunks for line in c.body.split("\n")[1:-1]] == lines


def test_a_long_list_repeats_its_lead_in():
    lead = "The options are:"
    items = [f"- option {i} does a thing" for i in range(30)]
    block = Block("\n\n".join([lead, "\n".join(items)]), kind="list", header=lead)
    chunks = chunks_of([block], budget=40)
    assert len(chunks) > 1
    assert all(c.body.startswith(lead) for c in chunks)
    assert [line for c in chunks for line in c.body.split("\n") if line.startswith("- ")] == items


def test_a_heading_path_longer_than_half_the_budget_is_shortened():
    section = tuple(f"Heading number {i}" for i in range(10))
    (chunk,) = chunks_of([Block("body text", section=section)], budget=30)
    line = chunk.text.split("\n\n")[0]
    assert line == "Heading number 8 > Heading number 9"  # the deepest headings that fit in half
    assert tiny_count([chunk.text])[0] <= 30


def test_joined_text_is_counted_again_so_a_merging_tokenizer_cannot_overflow():
    def merging(texts):  # each blank line between parts costs 5 tokens more than the parts' sum
        return [len(t.split()) + 5 * t.count("\n\n") for t in texts]

    blocks = [Block(f"w{i} x y") for i in range(10)]
    chunks = list(pack(blocks, 12, merging, heading=False))
    assert all(merging([c.text])[0] <= 12 for c in chunks)
    assert " ".join(c.body for c in chunks).split() == " ".join(b.text for b in blocks).split()


def test_packer_rejects_an_empty_budget():
    with pytest.raises(ValueError, match="at least one token"):
        Packer(0)


def test_plain_text_becomes_paragraph_blocks_whatever_the_pieces():
    text = "First para\nstill first.\n\n\nSecond para.\n  \nThird."
    want = ["First para\nstill first.", "Second para.", "Third."]
    assert [b.text for b in text_blocks([text])] == want
    assert [b.text for b in text_blocks(list(text))] == want  # one character at a time


def test_plain_text_without_blank_lines_is_handed_on_in_bounded_parts():
    from embedline import chunking

    text = "word " * 50_000
    blocks = list(text_blocks([text[i : i + 1000] for i in range(0, len(text), 1000)]))
    assert len(blocks) > 1
    assert all(len(b.text) <= chunking.MAX_PARAGRAPH_CHARS for b in blocks)
    assert sum(len(b.text.split()) for b in blocks) == 50_000


def test_count_words():
    assert count_words(["a b  c", "", "one"]) == [3, 0, 1]


# -- formats -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("head", "name", "fmt"),
    [
        (b"%PDF-1.7\n", "x.bin", "pdf"),
        (b"<!DOCTYPE html><html>", "page", "html"),
        (b"\n  <html lang=en>", "page.txt", "html"),
        (b"<p>hi</p>", "page.htm", "html"),
        (b"# Title\n", "notes.md", "markdown"),
        (b"# Title\n", "notes.MARKDOWN", "markdown"),
        (b"# Title\n", "notes.txt", None),
        (b"plain", "README", None),
    ],
)
def test_sniff_format(head, name, fmt):
    assert sniff_format(head, name) == fmt


# -- the source, with a reader plugin ------------------------------------------------------------


class SlideReader:
    """A reader plugin as a third party would write one: ``.slides`` text files, one slide per
    "---" separated part, the slide's first line its title; "(blank)" is a slide without text."""

    name = "slides"
    __version__ = "2.0"
    plugin_info = PluginInfo(kind="reader", formats=("markdown", "pdf"), description="slides for tests")

    def __init__(self):
        self.calls = []

    @hookimpl
    def read_document(self, path, format, encoding):
        self.calls.append((format, encoding))
        if format == "pdf":
            raise ValueError("encrypted PDF: a password is needed to read it")
        return self._blocks(path, encoding)

    def _blocks(self, path, encoding):
        with open(path, encoding=encoding) as fh:
            parts = fh.read().split("\n---\n")
        for page, part in enumerate(parts, start=1):
            title, _, body = part.strip().partition("\n")
            if title == "(blank)":
                yield Block("no text layer", kind="missing", page=page)
            else:
                yield Block(body.strip(), section=("Deck", title), page=page)


def source_spec(tmp_path, **chunk):
    return SourceSpec(path=tmp_path, chunk=ChunkSpec(**chunk), base_dir=tmp_path)


def slides_documents(reader, counter=None):
    return Documents(read=reader.read_document, formats=reader.plugin_info.formats, reader="slides@2.0", counter=counter)


def test_a_reader_plugin_parses_markdown_and_reports_pages_without_text(tmp_path):
    path = tmp_path / "deck.md"
    path.write_text("Intro\nHello there.\n---\n(blank)\n---\nCats\nCats purr.\n")
    reader = SlideReader()
    unit = read_file(path, source_spec(tmp_path, by="structure", max_tokens=None), slides_documents(reader))
    got = list(unit.items)
    items = [x for x in got if not isinstance(x, ItemError)]
    errors = [x for x in got if isinstance(x, ItemError)]
    assert [(i.text, i.metadata["section"], i.metadata["page"]) for i in items] == [
        ("Deck > Intro\n\nHello there.", "Deck > Intro", 1),
        ("Deck > Cats\n\nCats purr.", "Deck > Cats", 3),
    ]
    assert [(e.uri, e.reason) for e in errors] == [("deck.md#page=2", "no text layer")]
    assert [i.chunk for i in items] == [0, 1]
    assert reader.calls == [("markdown", "utf-8")]


def test_a_reader_failure_fails_the_file_with_its_reason(tmp_path):
    path = tmp_path / "locked.pdf"
    path.write_bytes(b"%PDF-1.7\n" + bytes(range(256)) * 8)
    unit = read_file(path, source_spec(tmp_path, by="structure", max_tokens=None), slides_documents(SlideReader()))
    with pytest.raises(ItemError) as err:
        list(unit.items)
    assert (err.value.uri, err.value.reason) == ("locked.pdf", "encrypted PDF: a password is needed to read it")


def test_pdf_and_html_without_a_reader_fail_saying_what_to_install(tmp_path):
    (tmp_path / "a.pdf").write_bytes(b"%PDF-1.4\n" + bytes(range(256)))
    (tmp_path / "b.html").write_text("<html><body><p>Hello</p></body></html>")
    for name in ("a.pdf", "b.html"):
        unit = read_file(tmp_path / name, source_spec(tmp_path))
        with pytest.raises(ItemError, match="needs a reader plugin.*embedline-documents"):
            list(unit.items)


def test_markdown_without_a_reader_is_plain_text_paragraphs(tmp_path):
    path = tmp_path / "notes.md"
    path.write_text("# Title\n\nFirst paragraph.\n\nSecond paragraph.\n")
    unit = read_file(path, source_spec(tmp_path, by="structure", max_tokens=None))
    assert [i.text for i in unit.items] == ["# Title\n\nFirst paragraph.\n\nSecond paragraph."]


def test_structure_ids_change_with_the_budget_the_tokenizer_and_the_heading_setting(tmp_path):
    path = tmp_path / "deck.md"
    path.write_text("Intro\nHello there.\n")
    reader = SlideReader()

    def ids(counter=None, **chunk):
        unit = read_file(path, source_spec(tmp_path, by="structure", **chunk), slides_documents(reader, counter))
        return [i.id for i in unit.items]

    base = ids(max_tokens=None)
    assert base == ids(max_tokens=None)  # stable
    assert len({base[0], ids(max_tokens=100)[0], ids(max_tokens=None, heading=False)[0]}) == 3
    assert ids(TinyTokens(40), max_tokens=None) != ids(TinyTokens(41), max_tokens=None)
    # the budget is the smaller of max_tokens and the model's limit: the same budget, the same ids
    assert ids(TinyTokens(40), max_tokens=None) == ids(TinyTokens(40), max_tokens=40) == ids(TinyTokens(40), max_tokens=90)


def test_rows_under_structure_are_packed_to_the_budget(tmp_path):
    rows = tmp_path / "rows.jsonl"
    long = " ".join(f"Sentence {i} is here." for i in range(40))
    rows.write_text('{"text": "%s"}\n' % long)
    from embedline.sources import read_jsonl

    (unit,) = read_jsonl(rows, source_spec(tmp_path, by="structure", max_tokens=None), Documents(counter=TinyTokens(30)))
    texts = [i.text for i in unit.items]
    assert len(texts) > 1 and all(tiny_count([t])[0] <= 30 for t in texts)


# -- through a pipeline --------------------------------------------------------------------------


class CountingModel(FakeTextModel):
    """The fake model, with a tokenizer: ``PluginInfo.tokenizer`` gives the chunker its counts."""

    name = "counting"

    def __init__(self, limit=24):
        super().__init__(name="counting")
        self.tokens = TinyTokens(limit)
        self.plugin_info = PluginInfo(
            kind="model", modalities=("text",), description="fake model with a tokenizer",
            tokenizer=lambda spec: self.tokens,
        )


def test_hook_read_document_a_reader_plugin_feeds_a_run_chunked_by_the_models_tokenizer(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    body = " ".join(f"Fact number {i} about cats." for i in range(12))
    (folder / "deck.md").write_text(f"Intro\n{body}\n---\n(blank)\n---\nDogs\nDogs bark.\n")
    (folder / "plain.txt").write_text("A plain note.\n\nAnother paragraph.\n")
    reader, model = SlideReader(), CountingModel(limit=24)
    pm = fresh_plugin_manager(reader, model, autoload=False)
    config = {
        "source": {"path": str(folder), "reader": "slides", "chunk": {"by": "structure"}},
        "model": {"plugin": "counting"},
        "store": {"plugin": "memory", "collection": "docs"},
    }
    with Pipeline.from_dict(config, pm=pm) as pipeline:
        summary = pipeline.run()
        hits = pipeline.search("Dogs bark", k=50)
    assert [(f.uri, f.reason) for f in summary.failed] == [(f"{folder / 'deck.md'}#page=2", "no text layer")]
    assert summary.embedded == len(hits) and summary.embedded > 3
    assert all(model.tokens.count([h.text])[0] <= 24 for h in hits)
    sections = {h.metadata.get("section") for h in hits}
    assert sections == {"Deck > Intro", "Deck > Dogs", None}  # the .txt file has no headings
    assert reader.calls == [("markdown", "utf-8")]  # .txt files are not the reader's


def test_a_reader_that_is_not_installed_is_a_config_error(tmp_path):
    pm = fresh_plugin_manager(CountingModel(), autoload=False)
    config = {
        "source": {"path": str(tmp_path), "reader": "nosuchreader", "chunk": {"by": "structure"}},
        "model": {"plugin": "counting"},
        "store": {"plugin": "memory", "collection": "docs"},
    }
    with pytest.raises(ConfigError, match="nosuchreader.*not installed"):
        Pipeline.from_dict(config, pm=pm)


@pytest.mark.parametrize(
    ("chunk", "message"),
    [
        ({"by": "paragraph", "max_tokens": "model"}, 'needs by = "structure"'),
        ({"by": "structure", "overlap": 5}, "no overlap"),
        ({"by": "structure", "max_tokens": "lots"}, 'an integer or "model"'),
    ],
)
def test_chunk_settings_are_checked(tmp_path, chunk, message):
    from embedline.config import parse_config

    with pytest.raises(ConfigError, match=message):
        parse_config({"source": {"path": str(tmp_path), "chunk": chunk}, "model": {"plugin": "fake"}})


def test_structure_defaults_to_the_models_limit(tmp_path):
    from embedline.config import parse_config

    config = parse_config({"source": {"path": str(tmp_path), "chunk": {"by": "structure"}}, "model": {"plugin": "fake"}})
    assert config.source.chunk.max_tokens is None and config.source.chunk.heading is True
    assert math.isclose(Documents().budget(config.source.chunk)[0], 256)  # no tokenizer: 256 words


def test_check_refuses_a_reader_that_is_missing_or_not_a_reader(tmp_path):
    from embedline.config import bind_plugins, parse_config

    pm = fresh_plugin_manager(CountingModel(), SlideReader(), autoload=False)

    def bound(reader):
        source = {"path": str(tmp_path), "reader": reader, "chunk": {"by": "structure"}}
        return bind_plugins(parse_config({"source": source, "model": {"plugin": "counting"}, "store": {"plugin": "memory"}}), pm)

    assert bound("slides").source.reader == "slides"
    with pytest.raises(ConfigError, match="source.reader.*nosuch") as err:
        bound("nosuch")
    assert err.value.key == "source.reader"
    with pytest.raises(ConfigError, match="model plugin, expected a reader plugin"):
        bound("counting")
    assert bound("documents").source.reader == "documents"  # the default, absent here: markdown is text
