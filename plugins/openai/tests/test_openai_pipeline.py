"""A whole pipeline through the fake endpoint into the built-in memory store, the fingerprint rule
(another host, model or dimension is refused), and the key never showing anywhere."""

from __future__ import annotations

import json
import logging
import traceback

import pytest
from embedline.contracts import describe_fingerprint, fingerprint_id
from embedline.errors import ConfigError, EmbedlineError, ModelMismatchError, ModelSourceError
from embedline.testing import memory_store

from embedline_openai.testing import FakeEmbeddingServer, answer

NOTES = {
    "cats.txt": "the cat sits on the mat and sleeps",
    "river.txt": "the river is cold in the morning",
    "music.txt": "she plays the guitar and sings a song",
}


@pytest.fixture
def notes(tmp_path):
    folder = tmp_path / "notes"
    folder.mkdir()
    for name, text in NOTES.items():
        (folder / name).write_text(text)
    return folder


def pipeline(tmp_path, pm, model):
    from embedline import Pipeline

    config = {"source": {"path": "notes"}, "model": model, "store": memory_store(tmp_path, collection="notes")}
    return Pipeline.from_dict(config, base_dir=tmp_path, pm=pm)


def test_run_and_search_through_the_endpoint(tmp_path, notes, pm, section, server):
    with pipeline(tmp_path, pm, section(batch_size=2)) as p:
        summary = p.run()
        assert summary.embedded == 3 and not summary.failed
        assert summary.counters.get("tokens", 0) > 0
        [hit] = p.search("the cat sits on the mat", k=1)
        assert hit.uri == "notes/cats.txt" and hit.score > 0.7
        assert p.search("a cold river in the morning", k=1)[0].uri == "notes/river.txt"
    # Again: nothing changed, nothing embedded.
    with pipeline(tmp_path, pm, section(batch_size=2)) as p:
        again = p.run()
        assert again.embedded == 0 and again.skipped == 3


@pytest.mark.parametrize(
    "change",
    [
        {"name": "other-embed"},  # another model, same dimension
        {"base_url": "http://localhost:{port}/v1"},  # another host, same server
        {"dimensions": 8},  # shortened vectors
    ],
)
def test_a_collection_is_refused_through_another_endpoint_model_or_dimension(tmp_path, notes, pm, section, server, change):
    with pipeline(tmp_path, pm, section()) as p:
        assert p.run().embedded == 3
    change = {k: v.format(port=server.port) if isinstance(v, str) else v for k, v in change.items()}
    with pipeline(tmp_path, pm, section(**change)) as p, pytest.raises(ModelMismatchError) as caught:
        p.search("the cat", k=1)
    assert "was filled by openai 0.1.0 127.0.0.1:" in str(caught.value)


def test_identity_is_endpoint_model_and_dimension_in_settings(pm, section, server):
    # The core compares plugin, revision, dim, normalized and settings (not source).
    import embedline

    model = embedline.load_model(section(), pm=pm).model
    assert model.source == f"127.0.0.1:{server.port}/fake-embed"
    assert model.settings == {"endpoint": f"127.0.0.1:{server.port}", "model": "fake-embed", "dimensions": 16}


def test_the_same_endpoint_with_another_key_or_timeout_keeps_the_collection(tmp_path, notes, pm, section, server, monkeypatch):
    with pipeline(tmp_path, pm, section()) as p:
        p.run()
    server.api_key = "sk-rotated-key-0000000000"
    monkeypatch.setenv("FAKE_OPENAI_KEY", "sk-rotated-key-0000000000")
    with pipeline(tmp_path, pm, section(timeout=5, max_retries=1, batch_size=7)) as p:
        assert p.search("the cat sits on the mat", k=1)[0].uri == "notes/cats.txt"


def test_a_bad_item_fails_alone_and_the_run_goes_on(tmp_path, notes, pm, section, server):
    (notes / "long.txt").write_text("word " * 50)
    server.max_input_chars = 100
    with pipeline(tmp_path, pm, section()) as p:
        summary = p.run()
    assert summary.embedded == 3
    [failure] = summary.failed
    assert failure.uri == "notes/long.txt" and "HTTP 400" in failure.reason


def test_a_refused_key_stops_the_run_naming_the_file_and_key(tmp_path, notes, pm, section, server, monkeypatch):
    monkeypatch.setenv("FAKE_OPENAI_KEY", "sk-wrong-000000000000")
    with pipeline(tmp_path, pm, section()) as p, pytest.raises(ConfigError) as caught:
        p.run()
    assert caught.value.key == "model.api_key"
    assert "refused the API key (401)" in str(caught.value)


# -- the key never shows ----------------------------------------------------------------------------


def everything_shown(exc: BaseException) -> str:
    return str(exc) + repr(exc) + "".join(traceback.format_exception(exc))


def test_the_key_never_appears(tmp_path, notes, pm, section, server, api_key, caplog, monkeypatch):
    import embedline

    caplog.set_level(logging.DEBUG)  # every logger, httpx's and httpcore's too
    secret_parts = [api_key, api_key[8:]]  # the whole key and its distinctive tail
    shown: list[str] = []

    model = embedline.load_model(section(), pm=pm)
    fingerprint = model.model.fingerprint()
    shown += [repr(model), repr(model.model), repr(model.model.impl), str(model.model.settings)]
    shown += [json.dumps(fingerprint), describe_fingerprint(fingerprint), fingerprint_id(fingerprint)]
    shown += [repr(model.model.spec)]

    # Errors: every kind, with a server that repeats what it was sent in its messages.
    failures = []
    for scripted in (
        [answer(400, body={"error": {"message": f"bad request from key {api_key}"}})],
        [answer(500, body={"error": {"message": f"upstream said Bearer {api_key}"}})] * 4,
        [answer(mutate="not_json")],
    ):
        server.reset()
        server.then(*scripted)
        with pytest.raises(Exception) as caught:  # noqa: PT011 - any error, all checked below
            model.embed(["a cat"])
        failures.append(caught.value)
    monkeypatch.setenv("FAKE_OPENAI_KEY", api_key + "-wrong")
    for keys in ({}, {"name": "missing-model"}, {"base_url": server.url + "/nowhere"}):
        with pytest.raises(EmbedlineError) as caught:
            embedline.load_model(section(**keys), pm=pm)
        failures.append(caught.value)
    shown += [everything_shown(exc) for exc in failures]
    assert any("refused the API key" in str(exc) for exc in failures)

    # A whole run, its summary and its failures.
    monkeypatch.setenv("FAKE_OPENAI_KEY", api_key)
    server.reset()
    with pipeline(tmp_path, pm, section()) as p:
        summary = p.run()
        shown += [summary.format(), json.dumps(summary.to_dict(), default=str), repr(p.model())]
        shown += [json.dumps(h.to_dict(), default=str) for h in p.search("the cat", k=3)]

    shown += [record.getMessage() for record in caplog.records] + [caplog.text]
    everything = "\n".join(shown)
    assert server.requests and api_key in server.requests[0].headers["authorization"]  # it was sent
    for part in secret_parts:
        assert part not in everything


def test_the_key_is_hidden_in_a_literal_base_url_query_too(pm, section, server, api_key):
    import embedline

    with pytest.raises(ModelSourceError) as caught:
        embedline.load_model(section(base_url=f"http://127.0.0.1:{server.port}/x?api-key={api_key}"), pm=pm)
    assert api_key not in everything_shown(caught.value)


def test_a_second_server_on_another_port_is_another_endpoint(pm, section, server):
    import embedline

    with FakeEmbeddingServer({"fake-embed": 16}) as other:
        a = embedline.load_model(section(), pm=pm)
        b = embedline.load_model(section(base_url=other.url), pm=pm)
    assert a.model.source != b.model.source
    assert fingerprint_id(a.model.fingerprint()) != fingerprint_id(b.model.fingerprint())
