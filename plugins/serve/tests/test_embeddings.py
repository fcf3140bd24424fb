"""POST /v1/embeddings, GET /v1/models, GET /health, the OpenAPI document: in-process, on the fake
text model, against the vectors the pipeline makes locally."""

from __future__ import annotations

import base64

import numpy as np
import pytest
from embedline import Model, Pipeline, PluginInfo, hookimpl
from embedline.testing import FakeTextModel, fresh_plugin_manager

TEXTS = ["Cats purr and sleep all day.", "Rockets fly to orbit.", "Bread and cheese for lunch."]


def vectors_of(response) -> np.ndarray:
    data = response.json()["data"]
    assert [d["index"] for d in data] == list(range(len(data)))
    assert all(d["object"] == "embedding" for d in data)
    return np.array([d["embedding"] for d in data], dtype=np.float32)


def test_vectors_equal_the_pipelines_own_document_vectors(client, pipeline):
    response = client.post("/v1/embeddings", json={"model": "docs", "input": TEXTS})
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "list" and body["model"] == "docs"
    local = pipeline.model_at(0).embed(TEXTS, mode="document")
    np.testing.assert_allclose(vectors_of(response), local, atol=1e-6)


def test_a_single_string_is_one_input(client, pipeline):
    response = client.post("/v1/embeddings", json={"model": "docs", "input": TEXTS[0]})
    assert response.status_code == 200
    np.testing.assert_allclose(vectors_of(response), pipeline.model_at(0).embed(TEXTS[:1]), atol=1e-6)


def test_input_type_query_embeds_in_query_mode(client, pipeline, fake_model):
    client.post("/v1/embeddings", json={"model": "docs", "input": TEXTS})
    assert fake_model.modes[-1] == "document"  # the default
    response = client.post("/v1/embeddings", json={"model": "docs", "input": TEXTS, "input_type": "query"})
    assert response.status_code == 200
    assert fake_model.modes[-1] == "query"
    np.testing.assert_allclose(vectors_of(response), pipeline.model_at(0).embed(TEXTS, mode="query"), atol=1e-6)
    bad = client.post("/v1/embeddings", json={"model": "docs", "input": "x", "input_type": "passage"})
    assert bad.status_code == 422 and bad.json()["error"]["param"] == "input_type"


def test_base64_is_little_endian_float32_as_openai_sends_it(client, pipeline):
    response = client.post("/v1/embeddings", json={"model": "docs", "input": TEXTS, "encoding_format": "base64"})
    assert response.status_code == 200
    rows = [np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in response.json()["data"]]
    np.testing.assert_array_equal(np.stack(rows), pipeline.model_at(0).embed(TEXTS))
    floats = client.post("/v1/embeddings", json={"model": "docs", "input": TEXTS, "encoding_format": "float"})
    np.testing.assert_array_equal(np.stack(rows), vectors_of(floats))
    bad = client.post("/v1/embeddings", json={"model": "docs", "input": "x", "encoding_format": "int8"})
    assert bad.status_code == 422 and bad.json()["error"]["param"] == "encoding_format"


def test_usage_counts_whitespace_words_when_the_plugin_has_no_tokenizer(client):
    response = client.post("/v1/embeddings", json={"model": "docs", "input": ["one two three", "four five"]})
    assert response.json()["usage"] == {"prompt_tokens": 5, "total_tokens": 5}


def test_usage_uses_the_plugins_token_counter(tmp_path, fake_config):
    class Counted(FakeTextModel):
        plugin_info = PluginInfo(kind="model", modalities=("text",), tokenizer=lambda spec: _Letters())

    class _Letters:
        limit, identity = 1000, "letters"

        def count(self, texts):
            return [len(t.replace(" ", "")) for t in texts]

    from embedline_serve import create_app
    from fastapi.testclient import TestClient

    with Pipeline.from_dict(fake_config(None), base_dir=tmp_path, pm=fresh_plugin_manager(Counted())) as p:
        with TestClient(create_app(p)) as client:
            response = client.post("/v1/embeddings", json={"model": "docs", "input": ["ab cd", "efg"]})
    assert response.json()["usage"] == {"prompt_tokens": 7, "total_tokens": 7}


def test_dimensions_must_be_the_models_own(client):
    ok = client.post("/v1/embeddings", json={"model": "docs", "input": "cats", "dimensions": 16})
    assert ok.status_code == 200 and len(ok.json()["data"][0]["embedding"]) == 16
    bad = client.post("/v1/embeddings", json={"model": "docs", "input": "cats", "dimensions": 8})
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "dimensions"
    assert bad.json()["error"]["type"] == "invalid_request_error"
    assert bad.json()["error"]["code"] is None
    assert "16" in bad.json()["error"]["message"]


def test_an_unknown_model_is_a_404_model_not_found(client):
    response = client.post("/v1/embeddings", json={"model": "text-embedding-3-small", "input": "cats"})
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "model_not_found" and error["param"] == "model"
    assert "docs" in error["message"]  # says which models exist


def test_models_are_named_by_collection_by_their_name_and_by_aliases(make_client, pipeline):
    client = make_client(aliases={"text-embedding-3-small": "docs"})
    local = pipeline.model_at(0).embed(TEXTS[:1])
    for name in ("docs", "fake-bow", "text-embedding-3-small"):
        response = client.post("/v1/embeddings", json={"model": name, "input": TEXTS[0]})
        assert response.status_code == 200, name
        assert response.json()["model"] == "docs"
        np.testing.assert_allclose(vectors_of(response), local, atol=1e-6)
    listed = client.get("/v1/models").json()
    assert listed["object"] == "list"
    assert listed["data"][0]["id"] == "docs" and listed["data"][0]["owned_by"] == "embedline"
    assert set(listed["data"][0]["aliases"]) == {"fake-bow", "text-embedding-3-small"}
    assert client.get("/v1/models/text-embedding-3-small").json()["id"] == "docs"
    assert client.get("/v1/models/nope").json()["error"]["code"] == "model_not_found"
    with pytest.raises(ValueError, match="not a collection"):
        make_client(aliases={"x": "no-such-collection"})


def test_bad_inputs_are_openai_style_errors(client):
    cases = {
        "tokens": ({"model": "docs", "input": [1, 2, 3]}, "input"),
        "empty list": ({"model": "docs", "input": []}, "input"),
        "empty text": ({"model": "docs", "input": ["cats", "  "]}, "input"),
        "no model": ({"input": "cats"}, "model"),
    }
    for name, (body, param) in cases.items():
        response = client.post("/v1/embeddings", json=body)
        assert response.status_code == 422, name
        assert response.json()["error"]["param"] == param, name
        assert response.json()["error"]["type"] == "invalid_request_error", name
    json_type = {"content-type": "application/json"}
    broken = client.post("/v1/embeddings", content=b'{"model": "docs", "input": ', headers=json_type)
    assert broken.status_code == 422 and "JSON" in broken.json()["error"]["message"]


def test_an_input_the_model_cannot_embed_fails_alone(tmp_path, fake_config):
    from embedline_serve import create_app
    from fastapi.testclient import TestClient

    model = FakeTextModel(fail_on=("poison",))
    with Pipeline.from_dict(fake_config(None), base_dir=tmp_path, pm=fresh_plugin_manager(model)) as p:
        with TestClient(create_app(p), raise_server_exceptions=False) as client:
            bad = client.post("/v1/embeddings", json={"model": "docs", "input": ["fine", "a poison word"]})
            good = client.post("/v1/embeddings", json={"model": "docs", "input": ["fine"]})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "input"
    assert "poison" in bad.json()["error"]["message"] and "Traceback" not in bad.text
    assert good.status_code == 200


class ImageOnly:
    """A model plugin for images only (never loaded here: the route refuses it by its modalities)."""

    name = "pixels"
    plugin_info = PluginInfo(kind="model", modalities=("image",))

    @hookimpl
    def load_model(self, spec):
        return Model(dim=4, modalities=("image",), source="pixels", revision="1")


def test_a_model_that_does_not_embed_text_is_refused(tmp_path):
    from embedline_serve import create_app
    from fastapi.testclient import TestClient

    config = {
        "models": [{"plugin": "fake", "collection": "docs"}, {"plugin": "pixels", "collection": "pics"}],
        "store": {"plugin": "memory", "collection": "docs"},
    }
    with Pipeline.from_dict(config, base_dir=tmp_path, pm=fresh_plugin_manager(FakeTextModel(), ImageOnly())) as p:
        with TestClient(create_app(p)) as client:
            assert client.get("/health").json() == {"status": "ok", "models": ["docs", "pics"]}
            response = client.post("/v1/embeddings", json={"model": "pics", "input": "cats"})
            assert response.status_code == 400 and "not text" in response.json()["error"]["message"]
            assert client.post("/v1/embeddings", json={"model": "docs", "input": "cats"}).status_code == 200


def test_health_and_the_openapi_document(client):
    assert client.get("/health").json() == {"status": "ok", "models": ["docs"]}
    spec = client.get("/openapi.json").json()
    for path in ("/v1/embeddings", "/v1/models", "/search", "/health", "/media/{uri}"):
        assert path in spec["paths"], path
    assert "multipart/form-data" in spec["paths"]["/search"]["post"]["requestBody"]["content"]
    assert set(spec["paths"]["/media/{uri}"]) == {"get", "head"}
    ids = [op["operationId"] for methods in spec["paths"].values() for op in methods.values()]
    assert len(ids) == len(set(ids)), sorted(ids)  # client generators key methods on these
    assert client.get("/docs").status_code == 200
