"""One-line errors: a refused key, a missing model or URL, malformed answers, a wrong dimension;
and Azure OpenAI's URL, header and api-version."""

from __future__ import annotations

import pytest
from embedline.errors import ConfigError, ModelSourceError

from embedline_openai.testing import answer

TEXTS = ["a cat sits on the mat", "dogs run in the park"]


def embed_hook(pm, model, inputs, mode="document"):
    return pm.call("embed", "openai", model=model.model, inputs=list(inputs), mode=mode)


def one_line(exc: BaseException) -> str:
    message = str(exc)
    assert message and "\n" not in message
    return message


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_key_at_load_is_a_config_error_on_api_key(open_model, server, monkeypatch, status, waits):
    monkeypatch.setenv("FAKE_OPENAI_KEY", "sk-wrong-Zz81kdP0q2notTheKey")
    if status == 403:
        server.then(answer(403, body={"error": {"message": "You are not allowed to use this model."}}))
    with pytest.raises(ConfigError) as caught:
        open_model()
    message = one_line(caught.value)
    assert caught.value.key == "model.api_key"
    assert f"refused the API key ({status}): set api_key = \"${{OPENAI_API_KEY}}\"" in message
    assert "sk-wrong-Zz81kdP0q2notTheKey" not in message  # the server repeated it: hidden
    assert "notTheKey" not in message
    assert waits == []  # not retried


def test_no_key_for_an_endpoint_that_wants_one(open_model, section, pm, server):
    import embedline

    keys = section()
    del keys["api_key"]
    with pytest.raises(ConfigError, match=r"asks for an API key, and none was set \(401\)"):
        embedline.load_model(keys, pm=pm)


def test_a_key_revoked_during_a_run_stops_it(open_model, server, pm, monkeypatch):
    model = open_model()
    server.api_key = "sk-another-key-entirely"
    with pytest.raises(ConfigError, match=r"refused the API key \(401\)") as caught:
        embed_hook(pm, model, TEXTS)
    assert caught.value.key == "model.api_key"


def test_an_unknown_model_is_a_model_source_error_naming_model_and_url(open_model, server):
    with pytest.raises(ModelSourceError) as caught:
        open_model(name="text-embedding-9-huge")
    message = one_line(caught.value)
    assert "model 'text-embedding-9-huge' or URL" in message
    assert f"http://127.0.0.1:{server.port}/v1/embeddings not found (404)" in message
    assert "The model `text-embedding-9-huge` does not exist" in message


def test_a_wrong_url_is_a_model_source_error_with_credentials_hidden(open_model, server, api_key):
    with pytest.raises(ModelSourceError) as caught:
        open_model(base_url=f"http://127.0.0.1:{server.port}/api?api_key={api_key}&x=1")
    message = one_line(caught.value)
    assert f"URL http://127.0.0.1:{server.port}/api/embeddings not found (404)" in message
    assert api_key not in message
    assert "<html" not in message  # a 404 page is not quoted


@pytest.mark.parametrize(
    ("mutate", "detail"),
    [
        ("not_json", "not JSON (text/html): '<html><body>Welcome to nginx!"),
        ("no_data", "no `data` list (got model, object, usage)"),
        ("drop", "1 embeddings for 2 inputs"),
    ],
)
def test_malformed_answers(open_model, server, pm, mutate, detail):
    # At load the probe finds it: the endpoint is not what base_url should name.
    server.then(answer(mutate=mutate))
    with pytest.raises(ModelSourceError) as caught:
        open_model()
    assert "gave a malformed answer" in one_line(caught.value)
    # Once the endpoint has answered well, a bad answer fails that batch only (the core retries
    # its inputs one by one).
    model = open_model()
    server.always = answer(mutate=mutate)
    with pytest.raises(RuntimeError) as caught:
        embed_hook(pm, model, TEXTS)
    assert not isinstance(caught.value, ModelSourceError)
    assert detail in one_line(caught.value)


def test_a_first_answer_malformed_without_a_probe_stops_the_run(open_model, server, pm):
    model = open_model(dimensions=16)
    server.then(answer(mutate="no_data"))
    with pytest.raises(ModelSourceError, match="is base_url an OpenAI-compatible API root"):
        embed_hook(pm, model, TEXTS)


def test_dimensions_the_endpoint_ignores_is_a_config_error_on_first_use(pm, section):
    import embedline
    from embedline_openai.testing import FakeEmbeddingServer

    with FakeEmbeddingServer({"fake-embed": 16}, ignore_dimensions=True) as tei_like:
        model = embedline.load_model(section(base_url=tei_like.url, dimensions=8), pm=pm)
        with pytest.raises(ConfigError) as caught:
            embed_hook(pm, model, TEXTS)
    assert caught.value.key == "model.dimensions"
    assert "returned 16-d vectors for model 'fake-embed', but dimensions = 8" in one_line(caught.value)


def test_vectors_of_another_length_than_the_probe_found(open_model, server, pm):
    model = open_model()
    server.always = answer(mutate="wrong_dim")
    with pytest.raises(ModelSourceError) as caught:
        embed_hook(pm, model, TEXTS)
    assert "returned 17-d vectors for model 'fake-embed', but 16-d when the model was loaded" in one_line(caught.value)


def test_a_rejected_input_fails_alone_in_a_run(open_model, server):
    server.max_input_chars = 40
    model = open_model(batch_size=8)
    texts = ["short one", "x " * 40, "another short one"]
    result = model.embed_items([_item(t, i) for i, t in enumerate(texts)])
    assert [it.uri for it in result.items] == ["t0", "t2"]
    [failure] = result.failures
    assert failure.uri == "t1" and failure.stage == "embed"
    assert "rejected the request (HTTP 400): This model's maximum context length is 40" in failure.reason


def _item(text, i):
    from embedline.contracts import Item

    return Item(id=str(i), uri=f"t{i}", modality="text", text=text)


# -- Azure OpenAI -------------------------------------------------------------------------------


@pytest.fixture
def through_proxy(server, monkeypatch):
    """Every http:// request goes to the fake server as an HTTP proxy, so an Azure host name
    reaches it (the fake reads the absolute URL a client sends to a proxy)."""
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{server.port}")
    return server


def test_azure_deployment_url_api_key_header_and_api_version(open_model, through_proxy, api_key):
    model = open_model(
        base_url="http://my-resource.openai.azure.com/openai/deployments/fake-embed", api_version="2024-10-21"
    )
    [probe] = through_proxy.requests
    assert probe.path == "/openai/deployments/fake-embed/embeddings"
    assert probe.query == {"api-version": ["2024-10-21"]}
    assert probe.headers["api-key"] == api_key and "authorization" not in probe.headers
    assert model.model.source == "my-resource.openai.azure.com/deployments/fake-embed/fake-embed"


def test_azure_v1_url_needs_no_api_version(open_model, through_proxy):
    model = open_model(base_url="http://my-resource.openai.azure.com/openai/v1")
    [probe] = through_proxy.requests
    assert probe.path == "/openai/v1/embeddings" and probe.query == {}
    assert model.model.source == "my-resource.openai.azure.com/fake-embed"


def test_azure_deployment_url_without_api_version_is_a_config_error(open_model, server):
    with pytest.raises(ConfigError, match="needs api_version") as caught:
        open_model(base_url="https://my-resource.openai.azure.com/openai/deployments/emb")
    assert caught.value.key == "model.api_version"
    assert server.requests == []


def test_an_error_inside_a_200_answer_is_quoted(open_model, server, pm, api_key):
    model = open_model()
    server.then(answer(201, body={"error": {"message": f"quota exceeded for {api_key}"}}))
    with pytest.raises(RuntimeError) as caught:
        embed_hook(pm, model, TEXTS)
    message = one_line(caught.value)
    assert "an error instead of `data`: quota exceeded for ***" in message and api_key not in message
