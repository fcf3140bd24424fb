"""The openai plugin through its real hooks against a fake endpoint: probe, vectors, order, batching."""

from __future__ import annotations

import numpy as np
import pytest
from embedline.contracts import Failed, Item
from embedline.errors import ConfigError
from embedline.testing import import_cost

from embedline_openai import _backend
from embedline_openai.testing import answer, fake_vector

TEXTS = ["a cat sits on the mat", "dogs run in the park", "the river is cold", "music and songs", "red car"]


def expected(texts, dim=16):
    return np.asarray([fake_vector(t, dim) for t in texts], dtype=np.float32)


def embed_hook(pm, model, inputs, mode="document"):
    """The plugin's own ``embed`` hook, one call (no batching by the core)."""
    return pm.call("embed", "openai", model=model.model, inputs=list(inputs), mode=mode)


def test_plugin_is_a_text_model_and_imports_nothing_heavy(pm):
    info = pm.info("openai")
    assert info.kind == "model" and info.modalities == ("text",)
    assert info.options["api_key"].secret
    assert all(option.help for option in info.options.values())
    heavy, _ = import_cost("openai", heavy=("httpx", "numpy", "torch", "openai"))
    assert heavy == []


def test_load_probes_the_dimension_once(open_model, server):
    model = open_model()
    assert model.dim == 16
    assert model.model.normalized  # the probe's vector is unit length, and normalize = true
    assert model.model.source == f"127.0.0.1:{server.port}/fake-embed"
    assert model.model.revision == "api"
    assert model.model.settings == {"endpoint": f"127.0.0.1:{server.port}", "model": "fake-embed", "dimensions": 16}
    [probe] = server.requests
    assert probe.path == "/v1/embeddings"
    assert probe.body == {"model": "fake-embed", "input": ["embedline probe"], "encoding_format": "float"}
    assert probe.headers["authorization"].startswith("Bearer ")
    assert probe.headers["content-type"] == "application/json"


def test_vectors_are_float32_in_input_order(open_model):
    model = open_model()
    vectors = model.embed(TEXTS)
    assert vectors.dtype == np.float32 and vectors.shape == (len(TEXTS), 16)
    np.testing.assert_allclose(vectors, expected(TEXTS), atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("mutate", ["shuffle", "no_index", "base64"])
def test_order_is_restored_from_index(open_model, server, pm, mutate):
    model = open_model()
    server.always = answer(mutate=mutate)
    vectors = embed_hook(pm, model, TEXTS)
    np.testing.assert_allclose(vectors, expected(TEXTS), atol=1e-6)


def test_the_fake_server_really_shuffles(server, api_key):
    import httpx

    server.always = answer(mutate="shuffle")
    body = {"model": "fake-embed", "input": TEXTS}
    got = httpx.post(server.url + "/embeddings", json=body, headers={"Authorization": f"Bearer {api_key}"}).json()
    assert sorted(d["index"] for d in got["data"]) == list(range(len(TEXTS)))
    assert [d["index"] for d in got["data"]] != list(range(len(TEXTS)))


def test_dimensions_is_sent_and_skips_the_probe(open_model, server, pm):
    model = open_model(dimensions=8)
    assert server.requests == [] and model.dim == 8
    assert model.model.settings["dimensions"] == 8
    vectors = embed_hook(pm, model, TEXTS[:2])
    assert vectors.shape == (2, 8)
    assert server.requests[0].body["dimensions"] == 8
    short = np.asarray([fake_vector(t, 16)[:8] for t in TEXTS[:2]])
    np.testing.assert_allclose(vectors, short / np.linalg.norm(short, axis=1, keepdims=True), atol=1e-6)


def test_requests_are_cut_by_batch_size(open_model, server, pm):
    model = open_model(batch_size=3)
    server.requests.clear()
    texts = [f"text number {i}" for i in range(7)]
    vectors = embed_hook(pm, model, texts)
    assert [len(r.inputs) for r in server.requests] == [3, 3, 1]
    assert [t for r in server.requests for t in r.inputs] == texts
    np.testing.assert_allclose(vectors, expected(texts), atol=1e-6)


def test_requests_are_cut_by_estimated_tokens(open_model, server, pm):
    # 16 characters -> 16 // 4 + 1 = 5 tokens: two texts fit in 10, a third does not.
    model = open_model(max_batch_tokens=10, batch_size=100)
    server.requests.clear()
    texts = ["sixteen chars ok"] * 5 + ["a text far longer than the ten-token limit of one request"] + ["sixteen chars ok"]
    vectors = embed_hook(pm, model, texts)
    assert [len(r.inputs) for r in server.requests] == [2, 2, 1, 1, 1]
    assert len(server.requests[3].inputs[0]) > 40  # over the limit alone: it goes alone
    np.testing.assert_allclose(vectors, expected(texts), atol=1e-6)


def test_tiktoken_counts_tokens_when_it_is_importable(open_model, server, pm, monkeypatch):
    class Encoding:  # stands for tiktoken's: one token per character
        def encode(self, text, disallowed_special=()):
            return list(text)

    monkeypatch.setattr(_backend, "tiktoken_encoding", lambda name: Encoding())
    model = open_model(max_batch_tokens=32, batch_size=100)
    server.requests.clear()
    embed_hook(pm, model, ["sixteen chars ok"] * 4)  # 16 tokens each: two per request
    assert [len(r.inputs) for r in server.requests] == [2, 2]


def test_whole_run_batches_follow_batch_size(open_model, server):
    model = open_model(batch_size=4)
    server.requests.clear()
    texts = [f"sentence {i} about cats" for i in range(10)]
    np.testing.assert_allclose(model.embed(texts), expected(texts), atol=1e-6)
    assert sorted(len(r.inputs) for r in server.requests) == [2, 4, 4]


def test_preprocess_fails_empty_text_and_other_modalities(open_model, pm):
    model = open_model()
    items = [
        Item(id="1", uri="a", modality="text", text="hello"),
        Item(id="2", uri="b", modality="text", text="   "),
        Item(id="3", uri="c", modality="text", text=""),
        Item(id="4", uri="d", modality="image", path="x.png"),
    ]
    out = pm.call("preprocess", "openai", model=model.model, items=items, mode="document")
    assert out[0] == "hello"
    assert out[1] == out[2] == Failed("no text to embed (empty)")
    assert isinstance(out[3], Failed) and "image" in out[3].reason


def test_mode_only_matters_with_input_types_or_prompts(open_model, server):
    plain = open_model()
    server.requests.clear()
    np.testing.assert_allclose(plain.encode_queries(["red car"])[0], plain.encode_documents(["red car"])[0])
    assert all("input_type" not in r.body for r in server.requests)

    model = open_model(query_input_type="query", document_input_type="passage", query_prompt="query: ")
    assert {k: v for k, v in model.model.settings.items() if k not in ("endpoint", "model")} == {
        "dimensions": 16, "document_input_type": "passage", "query_input_type": "query", "query_prompt": "query: "
    }
    server.requests.clear()
    model.encode_queries(["red car"])
    model.encode_documents(["red car"])
    query, document = server.requests
    assert query.body["input_type"] == "query" and query.inputs == ["query: red car"]
    assert document.body["input_type"] == "passage" and document.inputs == ["red car"]


def test_normalize_false_keeps_the_endpoints_vectors(open_model, server, pm):
    model = open_model(normalize=False)
    assert model.model.normalized  # the endpoint's own vectors are unit length
    model = open_model(normalize=False, dimensions=8)
    assert not model.model.normalized  # no probe: nothing says they are


def test_token_usage_is_counted(open_model):
    model = open_model()
    model.embed(["one two three", "four"])
    assert model.model.counters.get("tokens") == 4


@pytest.mark.parametrize(
    ("keys", "where", "text"),
    [
        ({"timeout": 0}, "model.timeout", "greater than 0"),
        ({"timeout": -1.5}, "model.timeout", "greater than 0"),
        ({"max_retries": -1}, "model.max_retries", "0 or more"),
        ({"base_url": "ftp://example.com/v1"}, "model.base_url", "http:// or https://"),
        ({"base_url": "localhost:8000/v1"}, "model.base_url", "http:// or https://"),
        ({"dimensions": 0}, "model.dimensions", "positive"),
        ({"max_batch_tokens": 0}, "model.max_batch_tokens", "positive"),
        ({"timeout": "60"}, "model.timeout", "expected int or float"),
    ],
)
def test_bad_option_values_are_config_errors_before_any_request(open_model, server, keys, where, text):
    with pytest.raises(ConfigError) as caught:
        open_model(**keys)
    assert caught.value.key == where and text in str(caught.value)
    assert server.requests == []


def test_openai_without_a_key_is_a_config_error_without_a_request(pm):
    import embedline

    with pytest.raises(ConfigError, match=r'needs an API key: set api_key = "\$\{OPENAI_API_KEY\}"') as caught:
        embedline.load_model({"plugin": "openai"}, pm=pm)  # the default: api.openai.com
    assert caught.value.key == "model.api_key"


def test_a_local_endpoint_needs_no_key(pm, server):
    import embedline

    server.api_key = None
    model = embedline.load_model({"plugin": "openai", "name": "fake-embed", "base_url": server.url}, pm=pm)
    assert model.dim == 16
    assert "authorization" not in server.requests[0].headers


def test_base_url_may_name_the_embeddings_url_itself(open_model, server):
    model = open_model(base_url=server.url + "/embeddings/")
    assert model.dim == 16 and server.requests[0].path == "/v1/embeddings"
