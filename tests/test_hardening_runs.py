"""Issue 11, "Runs": what a run does with a file name that is not UTF-8, with the failure report of
an earlier run, with a very large file, and what its progress bar counts."""

import json
import os
import random
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from embedline import hookimpl
from embedline.config import ChunkSpec, SourceSpec, load_config
from embedline.errors import ModelMismatchError, StoreError
from embedline.pipeline import Pipeline
from embedline.sources import Source, content_id
from embedline.stages import Outcome
from embedline.testing import FakeTextModel, fresh_plugin_manager, lite_store, memory_store
from embedline.errors import ItemError

BAD = b"bad\xffname.txt"  # 0xff never occurs in UTF-8
BAD_URI = "docs/bad\\xffname.txt"


def write_bytes_name(folder: Path, name: bytes, data: bytes) -> None:
    fd = os.open(os.path.join(os.fsencode(folder), name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


@pytest.fixture
def docs(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "good.txt").write_text("a good file with a plain name")
    return folder


def pipeline(tmp_path, store=None, **sections):
    return {
        "source": {"path": "docs"},
        "model": {"plugin": "fake"},
        "store": store or memory_store(tmp_path),
        **sections,
    }


def assert_utf8(text: str) -> None:
    text.encode("utf-8")  # raises on a lone surrogate


# -- 1. a file name that is not UTF-8 ------------------------------------------------------------------


def test_a_file_name_that_is_not_utf8_is_stored_under_an_escaped_uri(tmp_path, docs, pm):
    write_bytes_name(docs, BAD, b"the content of a file with a strange name")
    with Pipeline.from_dict(pipeline(tmp_path), base_dir=tmp_path, pm=pm) as p:
        summary = p.run()
        rows = dict((uri, row_id) for row_id, uri in p.store.scan("test"))
        hit = p.search("the content of a file with a strange name", k=1)[0]
    assert summary.failed == [] and summary.embedded == 2
    assert sorted(rows) == [BAD_URI, "docs/good.txt"]
    assert hit.uri == BAD_URI and hit.metadata == {"path": "bad\\xffname.txt"}
    for uri in rows:
        assert_utf8(uri)
    assert_utf8(summary.format())


def test_the_failure_report_never_raises_and_shows_the_name_escaped(tmp_path, docs, pm):
    write_bytes_name(docs, b"empty\xfe.txt", b"")
    data = pipeline(tmp_path, pipeline={"failures": "run.failures.jsonl"})
    with Pipeline.from_dict(data, base_dir=tmp_path, pm=pm) as p:
        summary = p.run()
    assert summary.embedded == 1
    report = [json.loads(line) for line in (tmp_path / "run.failures.jsonl").read_text("utf-8").splitlines()]
    assert report == [{"uri": "docs/empty\\xfe.txt", "stage": "read", "reason": "empty file"}]
    assert "failed: docs/empty\\xfe.txt: read: empty file" in summary.format()
    assert summary.to_dict()["failed"][0]["uri"] == "docs/empty\\xfe.txt"


def test_names_that_are_utf8_keep_their_uri_and_escaped_names_keep_their_bytes():
    from embedline.sources import printable

    for name in ["plain.txt", "café ñ 日本.md", "back\\slash.txt", "tab\tand space", "emoji 🙂.txt", "\\xff.txt"]:
        assert printable(name) == name
    for raw in [b"bad\xffname.txt", b"\xc3(", b"caf\xe9.txt", b"\xed\xa0\x80 surrogate half", b"ok \xf0\x9f\x99"]:
        shown = printable(os.fsdecode(raw))
        assert_utf8(shown)
        # lossless: the escapes decode back to the bytes (for names that hold no literal `\x`)
        assert shown.encode("utf-8").decode("unicode_escape").encode("latin-1") == raw or "\\" not in shown
        assert re.fullmatch(r"([^\\]|\\x[0-9a-f]{2})*", shown)
    assert_utf8(printable("lone \ud800 surrogate"))  # one that stands for no byte: never raises


@pytest.mark.plugins("milvus")
def test_milvus_stores_a_file_whose_name_is_not_utf8(tmp_path, docs, pm):
    write_bytes_name(docs, BAD, b"the content of a file with a strange name")
    with Pipeline.from_dict(pipeline(tmp_path, store=lite_store(tmp_path)), base_dir=tmp_path, pm=pm) as p:
        summary = p.run()
        uris = sorted(uri for _, uri in p.store.scan("test"))
        hits = p.search("the content of a file with a strange name", k=2, filter={"uri": BAD_URI})
    assert summary.failed == [] and summary.embedded == 2
    assert uris == [BAD_URI, "docs/good.txt"]
    assert [h.uri for h in hits] == [BAD_URI]


# -- 2. a refused run touches nothing ----------------------------------------------------------------


def run_with_a_failure(tmp_path, docs, pm, **model):
    (docs / "empty.txt").write_bytes(b"")
    data = pipeline(tmp_path, pipeline={"failures": "run.failures.jsonl"}, model={"plugin": "fake", **model})
    with Pipeline.from_dict(data, base_dir=tmp_path, pm=pm) as p:
        return p.run(), data


def test_a_run_refused_for_a_model_mismatch_leaves_the_previous_report(tmp_path, docs, pm):
    summary, _ = run_with_a_failure(tmp_path, docs, pm, dim=16)
    report = tmp_path / "run.failures.jsonl"
    assert summary.report == str(report)
    before = report.read_text()
    other = pipeline(tmp_path, pipeline={"failures": "run.failures.jsonl"}, model={"plugin": "fake", "dim": 8})
    with Pipeline.from_dict(other, base_dir=tmp_path, pm=pm) as p, pytest.raises(ModelMismatchError):
        p.run()
    assert report.read_text() == before


class LockedStore:
    """A store plugin whose database another process holds, as Milvus Lite refuses a second one."""

    name = "locked"
    __version__ = "1.0"

    @property
    def plugin_info(self):
        from embedline.contracts import PluginInfo

        return PluginInfo(kind="store", description="always in use")

    @hookimpl
    def store(self, spec):
        raise StoreError("vectors.db is in use: another process has it open")


def test_a_run_refused_because_the_store_is_in_use_leaves_the_previous_report(tmp_path, docs):
    pm = fresh_plugin_manager(FakeTextModel(), LockedStore())
    run_with_a_failure(tmp_path, docs, fresh_plugin_manager(FakeTextModel()))
    report = tmp_path / "run.failures.jsonl"
    before = report.read_text()
    data = pipeline(tmp_path, store={"plugin": "locked"}, pipeline={"failures": "run.failures.jsonl"})
    with Pipeline.from_dict(data, base_dir=tmp_path, pm=pm) as p, pytest.raises(StoreError, match="in use"):
        p.run()
    assert report.read_text() == before


def test_the_report_is_replaced_by_the_next_run_with_failures_and_removed_by_one_without(tmp_path, docs, pm):
    run_with_a_failure(tmp_path, docs, pm)
    report = tmp_path / "run.failures.jsonl"
    (docs / "empty.txt").unlink()
    (docs / "blank.txt").write_text("   \n")
    summary, data = run_with_a_failure(tmp_path, docs, pm)  # empty.txt again, and blank.txt
    assert [json.loads(line)["uri"] for line in report.read_text().splitlines()] == ["docs/blank.txt", "docs/empty.txt"]
    (docs / "empty.txt").unlink()
    (docs / "blank.txt").unlink()
    with Pipeline.from_dict(data, base_dir=tmp_path, pm=pm) as p:
        assert p.run().report is None
    assert not report.exists()


# -- 14. a dict pipeline writes a report only when asked ----------------------------------------------


def test_a_dict_pipeline_writes_no_failure_report_unless_it_names_one(tmp_path, docs, pm):
    (docs / "empty.txt").write_bytes(b"")
    with Pipeline.from_dict(pipeline(tmp_path), base_dir=tmp_path, pm=pm) as p:
        summary = p.run()
    assert [(e.uri, e.reason) for e in summary.failed] == [("docs/empty.txt", "empty file")]
    assert summary.report is None
    assert sorted(p.name for p in tmp_path.rglob("*.jsonl")) == []
    data = pipeline(tmp_path, pipeline={"failures": "logs/failed.jsonl"})
    with Pipeline.from_dict(data, base_dir=tmp_path, pm=pm) as p:
        summary = p.run()
    assert summary.report == str(tmp_path / "logs" / "failed.jsonl")
    assert json.loads((tmp_path / "logs" / "failed.jsonl").read_text())["uri"] == "docs/empty.txt"


def test_a_pipeline_file_keeps_its_report_next_to_it(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "nightly.toml").write_text('[source]\npath = "docs"\n[model]\nplugin = "fake"\n[store]\nplugin = "memory"\n')
    assert load_config(tmp_path / "nightly.toml").failures == tmp_path / "nightly.failures.jsonl"
    (tmp_path / "other.toml").write_text('[pipeline]\nfailures = "x/f.jsonl"\n[model]\nplugin = "fake"\n')
    assert load_config(tmp_path / "other.toml").failures == tmp_path / "x" / "f.jsonl"


# -- 3. reading and chunking as a stream ----------------------------------------------------------------

_WORD = re.compile(r"\S+")
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n\s*")


def _windows_83ed1f5(text, max_tokens, overlap):
    spans = [m.span() for m in _WORD.finditer(text)]
    if not spans:
        return []
    step = max_tokens - overlap
    out = []
    for start in range(0, len(spans), step):
        window = spans[start : start + max_tokens]
        out.append(text[window[0][0] : window[-1][1]])
        if start + max_tokens >= len(spans):
            break
    return out


def chunk_text_83ed1f5(text, spec):
    """`embedline.sources.chunk_text` as of 83ed1f5 (whole text in memory): the reference."""
    if spec.by == "none":
        return [text] if text.strip() else []
    if spec.by == "tokens":
        return _windows_83ed1f5(text, spec.max_tokens, spec.overlap)
    chunks, current, size = [], [], 0
    for para in _PARAGRAPH_BREAK.split(text):
        para = para.strip()
        if not para:
            continue
        n = len(_WORD.findall(para))
        if n > spec.max_tokens:
            if current:
                chunks.append("\n\n".join(current))
                current, size = [], 0
            chunks.extend(_windows_83ed1f5(para, spec.max_tokens, spec.overlap))
            continue
        if current and size + n > spec.max_tokens:
            chunks.append("\n\n".join(current))
            current, size = [], 0
        current.append(para)
        size += n
    if current:
        chunks.append("\n\n".join(current))
    return chunks


# whitespace the regexes and str.strip()/split() agree on, the Unicode kinds included
_SPACES = [" ", " ", " ", "\t", "\n", "\n", "\n", "\r", "\r\n", "\x0b", "\x0c", "\x1c", "\x85", "\u2003", "\u3000", "\u2028"]


def random_text(rng: random.Random) -> str:
    out = []
    for _ in range(rng.randrange(0, 120)):
        roll = rng.random()
        if roll < 0.55:
            out.append("".join(rng.choice("abcdéxyz日本🙂.,") for _ in range(rng.randrange(1, 9))))
        elif roll < 0.6:
            out.append("w" * rng.randrange(10, 200))  # a long word, cut by many pieces
        elif roll < 0.75:
            out.append(rng.choice(["\n\n", "\n \n", "\n\t\n", "\n \t \n\n  ", "\r\n\r\n", "\n\x0b\n"]))
        else:
            out.append("".join(rng.choice(_SPACES) for _ in range(rng.randrange(1, 5))))
    return "".join(out)


def random_pieces(rng: random.Random, text: str) -> list[str]:
    pieces, i = [], 0
    while i < len(text):
        n = rng.choice([1, 1, 2, 3, 5, 8, 40, 1000])
        pieces.append(text[i : i + n])
        i += n
    if rng.random() < 0.2:
        pieces.insert(rng.randrange(len(pieces) + 1), "")
    return pieces


def random_spec(rng: random.Random) -> ChunkSpec:
    by = rng.choice(["paragraph", "paragraph", "tokens", "none"])
    max_tokens = rng.choice([1, 2, 3, 4, 7, 16])
    return ChunkSpec(by=by, max_tokens=max_tokens, overlap=rng.randrange(max_tokens))


def test_streamed_chunks_equal_whole_text_chunks_on_random_texts():
    from embedline.sources import chunk_text, iter_chunks

    rng = random.Random(11)
    for case in range(4000):
        text, spec = random_text(rng), random_spec(rng)
        expected = chunk_text_83ed1f5(text, spec)
        pieces = random_pieces(rng, text)
        assert list(iter_chunks(pieces, spec)) == expected, (case, spec, pieces)
        assert chunk_text(text, spec) == expected, (case, spec, text)


def test_text_files_read_in_small_blocks_keep_their_ids_chunks_and_errors(tmp_path, monkeypatch):
    import embedline.sources as sources

    monkeypatch.setattr(sources, "READ_BLOCK", 5)  # multi-byte characters cut between blocks
    rng = random.Random(3)
    folder = tmp_path / "files"
    folder.mkdir()
    expected = {}
    for n in range(60):
        spec = random_spec(rng)
        text = random_text(rng)
        data = text.encode("utf-8")
        if n % 10 == 9:  # a bad byte somewhere, or a character cut at the end
            at = rng.randrange(len(data) + 1)
            data = data[:at] + rng.choice([b"\xff", b"\xe6\x97", b"\xc3("]) + data[at:]
        name = f"f{n:02}.txt"
        (folder / name).write_bytes(data)
        unit = sources.read_file(folder / name, SourceSpec(path=folder, chunk=spec, base_dir=tmp_path))
        try:
            whole = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            assert unit.error.reason == f"not valid utf-8 text (byte {exc.start})", name
            continue
        if not data:
            assert unit.error.reason == "empty file"
            continue
        chunks = chunk_text_83ed1f5(whole, spec)
        if not chunks:
            assert unit.error.reason == "no text (only whitespace)", name
            continue
        key = content_id("text", data, f"chunk={spec.by}/{spec.max_tokens}/{spec.overlap}")
        expected[name] = [(f"{key}:{i}", chunk) for i, chunk in enumerate(chunks)]
        assert unit.error is None
        assert [(it.id, it.text) for it in unit.items] == expected[name], name
        assert [(it.id, it.text) for it in unit.items] == expected[name], name  # iterating again reads again
    assert len(expected) > 30


def test_a_text_file_that_changes_while_it_is_chunked_is_a_failure_of_that_file(tmp_path, pm, monkeypatch):
    import embedline.sources as sources

    monkeypatch.setattr(sources, "READ_BLOCK", 8)  # more than one block: chunked as the file is read again
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.txt").write_text("one two three four five six")
    (folder / "b.txt").write_text("stays the same")
    spec = SourceSpec(path=folder, chunk=ChunkSpec(by="tokens", max_tokens=2), base_dir=tmp_path)
    a, b = Source(spec)
    (folder / "a.txt").write_text("one two three four five six, and more")
    with pytest.raises(ItemError, match="changed while it was read"):
        list(a.items)
    from embedline.ledger import RunLedger
    from embedline.stages import Target, route_unit

    targets = [Target(index=0, collection="c", identity="m", batch_size=2)]
    ledger = RunLedger(1)
    routed, outcome = route_unit(a, targets, {"text": 0}, ledger)
    assert len(routed) == outcome.items == 4 and [e.stage for e in outcome.failures] == ["read"]
    assert "docs/a.txt" in ledger.failed_uris
    assert [it.text for _, it in route_unit(b, targets, {"text": 0}, ledger)[0]] == ["stays the", "same"]


def test_chunk_by_none_fails_a_text_file_above_the_size_limit(tmp_path, monkeypatch):
    import embedline.sources as sources

    monkeypatch.setattr(sources, "MAX_WHOLE_TEXT", 100)
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "small.txt").write_text("x" * 100)
    (folder / "large.txt").write_text("x" * 101)
    spec = SourceSpec(path=folder, chunk=ChunkSpec(by="none"), base_dir=tmp_path)
    got = {u.uri: u for u in Source(spec)}
    assert [it.text for it in got["docs/small.txt"].items] == ["x" * 100]
    assert got["docs/large.txt"].error.reason.startswith('101 bytes of text: too large for chunk by = "none"')


_MEMORY_SCRIPT = textwrap.dedent(
    """
    import resource, sys
    import numpy
    from embedline import hookimpl
    from embedline.contracts import Model, PluginInfo
    from embedline.pipeline import Pipeline
    from embedline.testing import fresh_plugin_manager
    try:
        from embedline.testing import NullStore
    except ImportError:  # 83ed1f5, to compare with: the memory store, rows dropped
        from embedline._memory_store import MemoryStore
        class NullStore(MemoryStore):
            def upsert(self, collection, records):
                pass

    class Null:
        name = "null"
        plugin_info = PluginInfo(kind="store", description="keeps nothing")
        @hookimpl
        def store(self, spec):
            return NullStore()

    class Ones:  # a model that costs nothing: what is measured is reading and chunking
        name = "ones"
        plugin_info = PluginInfo(kind="model", modalities=("text",), description="ones")
        @hookimpl
        def load_model(self, spec):
            return Model(dim=4, modalities=("text",), source="ones", revision="1", normalized=False, settings={})
        @hookimpl
        def preprocess(self, model, items, mode):
            return [item.text for item in items]
        @hookimpl
        def embed(self, model, inputs, mode):
            return numpy.ones((len(inputs), 4), dtype=numpy.float32)

    pm = fresh_plugin_manager(Ones(), Null())
    data = {"source": {"path": sys.argv[1]}, "model": {"plugin": "ones", "batch_size": 256}, "store": {"plugin": "null"}}
    with Pipeline.from_dict(data, pm=pm) as p:
        p.model()
        p.store
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        summary = p.run()
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(summary.items, summary.embedded, len(summary.failed), before, after)
    """
)


def test_a_large_text_file_is_ingested_in_bounded_memory(tmp_path):
    """60 MB of text, paragraphs of 20 to 400 words: the old reader held the file, its text, its
    paragraphs and its chunks at once (over 250 MB more); the stream holds a few windows."""
    rng = random.Random(0)
    words = [f"w{n}" for n in range(500)] + ["a", "the", "of", "embedline", "chunk"]
    big = tmp_path / "big.txt"
    with open(big, "w", encoding="utf-8") as fh:
        written = 0
        while written < 60_000_000:
            para = " ".join(rng.choices(words, k=rng.randrange(20, 400))) + "\n\n"
            fh.write(para)
            written += len(para)
    proc = subprocess.run([sys.executable, "-c", _MEMORY_SCRIPT, str(big)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    items, embedded, failed, before, after = map(int, proc.stdout.split())
    assert failed == 0 and items == embedded > 50_000
    grew_mb = (after - before) / 1024  # ru_maxrss is in KiB on Linux
    assert grew_mb < 80, f"peak memory grew by {grew_mb:.0f} MB while ingesting a 60 MB file"


# -- 4. the progress bar counts items done -----------------------------------------------------------


class FakeBar:
    """What the run's tqdm bar is given (tqdm's own drawing is not under test)."""

    def __init__(self):
        self.total, self.n, self.postfix, self.closed, self.seen = 0, 0, "", False, []

    def set_postfix_str(self, text, refresh=True):
        self.postfix = text

    def update(self, n=1):
        self.n += n
        self.seen.append((self.n, self.total, self.postfix))

    def close(self):
        self.closed = True


def test_progress_counts_items_done_against_items_known():
    from embedline.pipeline import RunProgress

    bar = FakeBar()
    progress = RunProgress(3, bar)
    progress.add(Outcome(units=1, items=4, skipped=1))  # a file of 4 chunks, one a duplicate
    progress.add(Outcome(units=1, failures=[ItemError("b", "read", "empty file")]))
    progress.add(Outcome(units=1, items=2, unrouted={"image": 1}))
    assert (progress.files, progress.known, progress.done) == (3, 7, 3)
    assert (bar.n, bar.total, bar.postfix) == (3, 7, "files 3/3")  # every file read: 43%, not 100%
    progress.add(Outcome(embedded=2, failures=[ItemError("a", "embed", "NaN")]))
    progress.add(Outcome(skipped=1))  # already stored
    assert (bar.n, bar.total) == (progress.done, progress.known) == (7, 7)
    rows = RunProgress(None)
    rows.add(Outcome(units=2, items=2))
    assert rows.read() == "rows 2" and rows.done == 0


def test_a_run_reaches_100_percent_only_when_every_item_is_done(tmp_path, docs, pm, monkeypatch):
    import embedline.pipeline as pipeline_module

    for n in range(5):
        (docs / f"p{n}.txt").write_text("\n\n".join(f"paragraph {n} {k} with words" for k in range(6)))
    (docs / "empty.txt").write_bytes(b"")
    bars = []

    def recording(total, enabled):
        bars.append(pipeline_module.RunProgress(total, FakeBar()))
        return bars[-1]

    monkeypatch.setattr(pipeline_module, "_progress", recording)
    data = pipeline(tmp_path, source={"path": "docs", "chunk": {"max_tokens": 4}}, model={"plugin": "fake", "batch_size": 4})
    with Pipeline.from_dict(data, base_dir=tmp_path, pm=pm) as p:
        summary = p.run(progress=True)
    (progress,) = bars
    bar = progress._bar
    assert bar.closed and progress.files == summary.units == 7
    assert progress.known == progress.done == bar.n == bar.total == summary.items + 1  # + the file that failed
    assert all(n <= total for n, total, _ in bar.seen)
    all_read = [n for n, total, postfix in bar.seen if postfix == "files 7/7" and n < total]
    assert all_read, "every file was read before the items were embedded: the bar must not say 100% then"
