"""Pipelines end to end through the hooks, on the built-in memory store (saved to a file)."""

import json

import numpy as np
import pytest

from embedline import hookimpl
from embedline.contracts import Failed, Item, Model, PluginInfo
from embedline.errors import CollectionNotFoundError, ItemError, ModelMismatchError, PluginError
from embedline.filters import parse_where
from embedline.pipeline import Pipeline
from embedline.testing import FakeTextModel, fresh_plugin_manager, memory_store

DOCS = {
    "cats.md": "Cats purr and sleep all day.\n\nA cat chases mice in the garden.",
    "space.md": "Rockets fly to orbit.\n\nThe moon orbits the earth.",
    "cooking.md": "Boil the pasta in salted water.",
}


@pytest.fixture
def corpus(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    for name, text in DOCS.items():
        (folder / name).write_text(text)
    return folder


def pipeline_dict(tmp_path, corpus, **model):
    return {
        "source": {"path": str(corpus), "chunk": {"by": "paragraph", "max_tokens": 8}},
        "model": {"plugin": "fake", "batch_size": 2, **model},
        "store": memory_store(tmp_path),
    }


def test_hook_load_model(tmp_path, corpus, pm, fake_model):
    with Pipeline.from_dict(pipeline_dict(tmp_path, corpus, dim=12), base_dir=tmp_path, pm=pm) as p:
        model = p.model()
        assert fake_model.loads == 1
        assert model.dim == 12 and model.modalities == ("text",)
        fp = model.fingerprint
        assert fp["plugin"] == "fake" and fp["plugin_version"] == "1.0" and fp["dim"] == 12
        assert fp["settings"] == {"dim": 12} and fp["normalized"] is True
        p.model()
        assert fake_model.loads == 1  # loaded once per pipeline


def test_hook_preprocess_failures_do_not_stop_the_batch(tmp_path, corpus, pm):
    with Pipeline.from_dict(pipeline_dict(tmp_path, corpus), base_dir=tmp_path, pm=pm) as p:
        items = [Item(id=f"i{n}:0", uri=f"item{n}", modality="text", text=t) for n, t in enumerate(["a", "", "b"])]
        result = p.model().embed_items(items)
    assert [it.uri for it in result.items] == ["item0", "item2"]
    assert result.vectors.shape == (2, 16)
    assert [(e.uri, e.stage, e.reason) for e in result.failures] == [("item1", "preprocess", "no text to embed")]


def test_hook_embed_isolates_the_inputs_that_fail(tmp_path, corpus):
    fake = FakeTextModel(fail_on=["mice"])
    pm = fresh_plugin_manager(fake)
    with Pipeline.from_dict(pipeline_dict(tmp_path, corpus), base_dir=tmp_path, pm=pm) as p:
        summary = p.run()
        assert summary.embedded == summary.items - 1
        (failure,) = summary.failed
        assert failure.uri == "docs/cats.md" and failure.stage == "embed"
        assert "cannot embed text containing 'mice'" in failure.reason
        assert p.store.count("test") == summary.items - 1


def test_hook_store_rows_round_trip(tmp_path, corpus, pm):
    with Pipeline.from_dict(pipeline_dict(tmp_path, corpus), base_dir=tmp_path, pm=pm) as p:
        summary = p.run()
        assert (summary.units, summary.items, summary.embedded, summary.skipped) == (3, 5, 5, 0)
        assert p.store.count("test") == 5
        hits = p.search("A cat chases mice in the garden.", k=3)
    top = hits[0]
    assert top.uri == "docs/cats.md" and top.chunk == 1 and top.text == "A cat chases mice in the garden."
    assert top.metadata == {"path": "cats.md"}
    assert top.score == pytest.approx(1.0, abs=1e-5)  # identical text, normalised vectors, cosine
    assert len(hits) == 3 and hits[0].score >= hits[1].score >= hits[2].score


def test_rerun_embeds_nothing_and_changes_embed_only_the_change(tmp_path, corpus, pm, fake_model):
    config = pipeline_dict(tmp_path, corpus)
    with Pipeline.from_dict(config, base_dir=tmp_path, pm=pm) as p:
        p.run()
    first = fake_model.embedded
    with Pipeline.from_dict(config, base_dir=tmp_path, pm=pm) as p:
        again = p.run()
    assert fake_model.embedded == first
    assert (again.embedded, again.skipped, again.items) == (0, 5, 5)
    (corpus / "cooking.md").write_text("Boil the rice.")
    with Pipeline.from_dict(config, base_dir=tmp_path, pm=pm) as p:
        changed = p.run()
    assert (changed.embedded, changed.skipped) == (1, 4)
    assert fake_model.embedded == first + 1


def test_identical_content_is_stored_once(tmp_path, corpus, pm):
    (corpus / "copy.md").write_text(DOCS["cooking.md"])
    with Pipeline.from_dict(pipeline_dict(tmp_path, corpus), base_dir=tmp_path, pm=pm) as p:
        summary = p.run()
        assert summary.items == 6 and summary.embedded == 5 and p.store.count("test") == 5


def test_another_model_is_refused_with_both_named(tmp_path, corpus, pm):
    with Pipeline.from_dict(pipeline_dict(tmp_path, corpus, dim=16), base_dir=tmp_path, pm=pm) as p:
        p.run()
    with Pipeline.from_dict(pipeline_dict(tmp_path, corpus, dim=8), base_dir=tmp_path, pm=pm) as p:
        with pytest.raises(ModelMismatchError) as err:
            p.search("cats")
        message = str(err.value)
        assert "collection 'test' was filled by fake 1.0 fake-bow@fake-1 dim=16" in message
        assert "this pipeline's model is fake 1.0 fake-bow@fake-1 dim=8" in message
        with pytest.raises(ModelMismatchError):
            p.run()
    with Pipeline.from_dict(pipeline_dict(tmp_path, corpus, dim=16, normalize=False), base_dir=tmp_path, pm=pm) as p:
        with pytest.raises(ModelMismatchError, match="normalized"):
            p.search("cats")


def test_search_before_run_says_what_to_do(tmp_path, corpus, pm):
    with Pipeline.from_dict(pipeline_dict(tmp_path, corpus), base_dir=tmp_path, pm=pm) as p:
        with pytest.raises(CollectionNotFoundError, match="collection 'test' does not exist"):
            p.search("cats")


def test_on_error_fail_stops_at_the_first_bad_item(tmp_path, corpus, pm):
    (corpus / "bad.md").write_bytes(b"\xff\xfe not utf-8")
    config = pipeline_dict(tmp_path, corpus)
    with Pipeline.from_dict(config, base_dir=tmp_path, pm=pm) as p:
        summary = p.run()
        assert [e.uri for e in summary.failed] == ["docs/bad.md"] and summary.embedded == 5
    config["pipeline"] = {"on_error": "fail"}
    with Pipeline.from_dict(config, base_dir=tmp_path, pm=pm) as p:
        with pytest.raises(ItemError, match="docs/bad.md: read: not valid utf-8"):
            p.run()


def test_search_with_filter_and_many_queries(tmp_path, corpus, pm):
    with Pipeline.from_dict(pipeline_dict(tmp_path, corpus), base_dir=tmp_path, pm=pm) as p:
        p.run()
        hits = p.search("the moon", k=5, filter={"path": "space.md"})
        assert {h.uri for h in hits} == {"docs/space.md"} and len(hits) == 2
        hits = p.search("the moon", k=5, filter=parse_where(["uri^=docs/c", "chunk>=1"]))
        assert [(h.uri, h.chunk) for h in hits] == [("docs/cats.md", 1)]
        many = p.search(["Rockets fly to orbit.", "Boil the pasta in salted water."], k=1)
        assert [h[0].uri for h in many] == ["docs/space.md", "docs/cooking.md"]


def test_searches_check_the_collection_once_per_pipeline(tmp_path, corpus, pm):
    with Pipeline.from_dict(pipeline_dict(tmp_path, corpus), base_dir=tmp_path, pm=pm) as p:
        p.run()
    with Pipeline.from_dict(pipeline_dict(tmp_path, corpus), base_dir=tmp_path, pm=pm) as p:
        store = p.store
        reads = []
        get_fingerprint = store.get_fingerprint
        store.get_fingerprint = lambda collection: reads.append(collection) or get_fingerprint(collection)
        first = p.search("the moon", k=1)
        assert [h.uri for h in first] == ["docs/space.md"] and reads == ["test"]
        for query in ("cats", "pasta", "the moon"):
            p.search(query, k=1)
        assert reads == ["test"]  # checked on the first search only
        assert p.search("the moon", k=1) == first


def test_a_run_that_wrote_flushes_its_collection_once(tmp_path, corpus, pm):
    def spied(p):
        flushed = []
        store = p.store
        store.flush = lambda collection: flushed.append(collection)
        return flushed

    with Pipeline.from_dict(pipeline_dict(tmp_path, corpus), base_dir=tmp_path, pm=pm) as p:
        flushed = spied(p)
        assert p.run().embedded == 5 and flushed == ["test"]
    with Pipeline.from_dict(pipeline_dict(tmp_path, corpus), base_dir=tmp_path, pm=pm) as p:
        flushed = spied(p)
        assert p.run().embedded == 0 and flushed == []  # nothing written, nothing to flush


class ThreadNoting(FakeTextModel):
    """Notes the thread each load runs on; fails to load while ``broken``."""

    def __init__(self, broken=False):
        super().__init__()
        self.threads, self.broken = [], broken

    @hookimpl
    def load_model(self, spec):
        import threading

        self.threads.append(threading.current_thread().name)
        if self.broken:
            raise ValueError("weights are unreadable")
        return super().load_model(spec)


def test_a_first_search_loads_the_model_while_the_store_opens(tmp_path, corpus):
    model = ThreadNoting()
    config = pipeline_dict(tmp_path, corpus)
    with Pipeline.from_dict(config, base_dir=tmp_path, pm=fresh_plugin_manager(model)) as p:
        p.run()
    model.threads.clear()
    with Pipeline.from_dict(config, base_dir=tmp_path, pm=fresh_plugin_manager(model)) as p:
        assert p.search("the moon", k=1)[0].uri == "docs/space.md"
        p.search("cats", k=1)
    assert model.threads == ["embedline-model-load"]  # once, beside the store's start


def test_a_model_that_fails_to_load_on_the_helper_thread_fails_the_search(tmp_path, corpus):
    config = pipeline_dict(tmp_path, corpus)
    with Pipeline.from_dict(config, base_dir=tmp_path, pm=fresh_plugin_manager(FakeTextModel())) as p:
        p.run()
    model = ThreadNoting(broken=True)
    with Pipeline.from_dict(config, base_dir=tmp_path, pm=fresh_plugin_manager(model)) as p:
        with pytest.raises(Exception, match="weights are unreadable"):
            p.search("the moon", k=1)


def test_a_store_that_fails_to_open_fails_the_search_with_its_own_error(tmp_path, corpus):
    config = pipeline_dict(tmp_path, corpus)
    (tmp_path / "vectors.npz").write_bytes(b"not an npz file")
    with Pipeline.from_dict(config, base_dir=tmp_path, pm=fresh_plugin_manager(ThreadNoting())) as p:
        with pytest.raises(Exception, match="vectors.npz"):
            p.search("the moon", k=1)


def test_file_path_as_query(tmp_path, corpus, pm):
    with Pipeline.from_dict(pipeline_dict(tmp_path, corpus), base_dir=tmp_path, pm=pm) as p:
        p.run()
        query = tmp_path / "query.txt"
        query.write_text("Boil the pasta in salted water.")
        assert p.search(file=str(query), k=1)[0].uri == "docs/cooking.md"


def test_library_api_and_pymilvus_model_interface(tmp_path, corpus, pm):
    with Pipeline.from_dict(pipeline_dict(tmp_path, corpus), base_dir=tmp_path, pm=pm) as p:
        vectors = p.embed(["hello world", "goodbye"])
        assert vectors.shape == (2, 16) and vectors.dtype == np.float32
        model = p.model()
        assert model.dim == 16
        docs = model.encode_documents(["hello world"])
        queries = model.encode_queries(["hello world"])
        assert isinstance(docs, list) and docs[0].shape == (16,)
        np.testing.assert_allclose(docs[0], vectors[0])
        np.testing.assert_allclose(model(["hello world"])[0], queries[0])


def test_load_model_from_a_dict(pm):
    from embedline import load_model

    model = load_model({"plugin": "fake", "dim": 4}, pm=pm)
    assert model.dim == 4 and model.embed(["x"]).shape == (1, 4)


class ByteImageModel:
    """An image 'model' for routing tests: byte histogram of the file."""

    name = "bytes"
    plugin_info = PluginInfo(kind="model", modalities=("image",), options={})

    @hookimpl
    def load_model(self, spec):
        return Model(dim=8, modalities=("image",), source="bytes", revision="1")

    @hookimpl
    def preprocess(self, model, items, mode):
        return [it.read_bytes() if it.path else Failed("not a file") for it in items]

    @hookimpl
    def embed(self, model, inputs, mode):
        return np.stack([np.bincount(np.frombuffer(b, np.uint8) % 8, minlength=8) for b in inputs]).astype(np.float32)


def test_items_are_routed_by_modality_from_their_bytes(tmp_path, corpus, fake_model):
    (corpus / "picture.md").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(200)))  # the name lies
    pm = fresh_plugin_manager(fake_model, ByteImageModel())
    config = pipeline_dict(tmp_path, corpus)
    text_only = {**config}
    with Pipeline.from_dict(text_only, base_dir=tmp_path, pm=pm) as p:
        summary = p.run()
        assert summary.unrouted == {"image": 1} and summary.embedded == 5
    del config["model"]
    config["models"] = [
        {"plugin": "fake", "collection": "texts"},
        {"plugin": "bytes", "collection": "images"},
    ]
    with Pipeline.from_dict(config, base_dir=tmp_path, pm=pm) as p:
        summary = p.run()
        assert summary.unrouted == {} and summary.embedded == 6
        assert p.store.count("texts") == 5 and p.store.count("images") == 1
        (hit,) = p.search(file=corpus / "picture.md", k=1)
        assert hit.uri == "docs/picture.md" and hit.modality == "image"


class WrongShape(FakeTextModel):
    @hookimpl
    def embed(self, model, inputs, mode):
        return np.zeros((len(inputs), model.dim + 1))


def test_a_plugin_returning_the_wrong_shape_is_named(tmp_path, corpus):
    pm = fresh_plugin_manager(WrongShape())
    with Pipeline.from_dict(pipeline_dict(tmp_path, corpus), base_dir=tmp_path, pm=pm) as p:
        with pytest.raises(PluginError, match="plugin 'fake': embed returned shape \\(2, 17\\), expected \\(2, 16\\)"):
            p.run()


def test_summary_as_json(tmp_path, corpus, pm):
    (corpus / "empty.md").write_text("")
    with Pipeline.from_dict(pipeline_dict(tmp_path, corpus), base_dir=tmp_path, pm=pm) as p:
        data = json.loads(json.dumps(p.run().to_dict()))
    assert data["failed"] == [{"uri": "docs/empty.md", "stage": "read", "reason": "empty file"}]
    assert data["embedded"] == 5


class Sized:
    """A prepared input whose len() is its cost, as a tokenising plugin returns them."""

    def __init__(self, text: str, size: int):
        self.text, self.size = text, size

    def __len__(self) -> int:
        return self.size


class SizeRecorder(FakeTextModel):
    """Hands ``embed`` inputs sized by word count and records the sizes of every batch."""

    def __init__(self):
        super().__init__()
        self.batches: list[list[int]] = []

    @hookimpl
    def preprocess(self, model, items, mode):
        return [Sized(it.text, len(it.text.split())) for it in items]

    @hookimpl
    def embed(self, model, inputs, mode):
        self.batches.append([len(x) for x in inputs])
        return FakeTextModel.embed(self, model, [x.text for x in inputs], mode)


def test_batches_hold_inputs_of_similar_size(tmp_path):
    sizes = [7, 1, 5, 2, 8, 3, 6, 4, 9]
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"text": " ".join(["w"] * n) + f" n{n}"}) + "\n" for n in sizes))
    recorder = SizeRecorder()
    config = {
        "source": {"path": str(rows), "chunk": {"by": "none"}},
        "model": {"plugin": "fake", "batch_size": 2},
        "store": memory_store(tmp_path),
    }
    with Pipeline.from_dict(config, base_dir=tmp_path, pm=fresh_plugin_manager(recorder)) as p:
        assert p.run().embedded == 9
        # One window (up to LENGTH_GROUP_ITEMS), ordered by the inputs' len(), cut into batches of 2.
        assert recorder.batches == [[2, 3], [4, 5], [6, 7], [8, 9], [10]]
        hit = p.search("w w w w n4", k=1)[0]
        assert hit.text == "w w w w n4"  # each row got its own vector


def test_embed_keeps_the_input_order_across_size_ordered_batches(tmp_path, corpus, pm):
    texts = ["one two three four", "one", "one two", "four three two one five six", "six", "two one"]
    with Pipeline.from_dict(pipeline_dict(tmp_path, corpus), base_dir=tmp_path, pm=pm) as p:
        model = p.model()
        together = model.embed(texts)
        one_by_one = np.concatenate([model.embed([t]) for t in texts])
    np.testing.assert_allclose(together, one_by_one, atol=1e-6)
