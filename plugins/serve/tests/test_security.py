"""Security and limits: the token, loopback by default, body and request limits, no tracebacks,
CORS off unless configured."""

from __future__ import annotations

import logging

import pytest
from embedline.errors import EmbedlineError
from embedline_serve import Limits, check_bind, is_loopback, main
from embedline_serve.errors import ServeError
from embedline_serve.security import resolve_token

TOKEN = "s3cret-token-value"


# -- the token ------------------------------------------------------------------------------------


def test_with_a_token_every_route_but_health_needs_it(make_client):
    client = make_client(token=TOKEN)
    assert client.get("/health").status_code == 200
    for method, path, body in [
        ("GET", "/v1/models", None),
        ("POST", "/v1/embeddings", {"model": "docs", "input": "cats"}),
        ("POST", "/search", {"query": "cats"}),
        ("GET", "/openapi.json", None),
        ("GET", "/docs", None),
        ("GET", "/media/a.png", None),
        ("GET", "/no/such/route", None),
    ]:
        for auth in (None, "Bearer wrong", TOKEN, f"Basic {TOKEN}", f"Bearer {TOKEN}x", "Bearer"):
            headers = {"Authorization": auth} if auth else {}
            response = client.request(method, path, json=body, headers=headers)
            assert response.status_code == 401, (path, headers)
            error = response.json()["error"]
            assert error["type"] == "authentication_error" and error["code"] == "invalid_api_key"
            assert response.headers["www-authenticate"] == "Bearer"
            assert TOKEN not in response.text
    good = {"Authorization": f"Bearer {TOKEN}"}
    assert client.get("/v1/models", headers=good).status_code == 200
    assert client.post("/v1/embeddings", json={"model": "docs", "input": "cats"}, headers=good).status_code == 200
    lower = {"authorization": f"bearer {TOKEN}"}  # the scheme is case-insensitive
    assert client.post("/search", json={"query": "cats"}, headers=lower).status_code == 200


def test_without_a_token_nothing_is_asked(client):
    assert client.get("/v1/models").status_code == 200


def test_the_token_comes_from_the_environment_when_not_given(monkeypatch):
    assert resolve_token(None) is None
    monkeypatch.setenv("EMBEDLINE_SERVE_TOKEN", "from-env")
    assert resolve_token(None) == "from-env"
    assert resolve_token("given") == "given"
    monkeypatch.setenv("EMBEDLINE_SERVE_TOKEN", "")
    assert resolve_token(None) is None


def test_the_token_is_never_shown(make_client, caplog):
    caplog.set_level(logging.DEBUG)
    client = make_client(token=TOKEN)
    client.get("/v1/models", headers={"Authorization": "Bearer nope"})
    client.get("/v1/models", headers={"Authorization": f"Bearer {TOKEN}"})
    assert TOKEN not in caplog.text
    middleware = [repr(m) for m in client.app.user_middleware]
    assert not any(TOKEN in m for m in middleware)


# -- where it listens -----------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost", "LOCALHOST"])
def test_loopback_addresses(host):
    assert is_loopback(host)
    check_bind(host, None)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "example.com", ""])
def test_any_other_address_needs_a_token(host):
    assert not is_loopback(host)
    with pytest.raises(ServeError, match="refusing to listen on .* without a token") as info:
        check_bind(host, None)
    assert isinstance(info.value, EmbedlineError)  # the command line prints it as one line
    assert "\n" not in str(info.value)
    check_bind(host, TOKEN)


def test_main_refuses_a_public_address_before_loading_anything(tmp_path):
    missing = tmp_path / "no-such-pipeline.toml"  # never read: the refusal comes first
    with pytest.raises(ServeError, match="without a token"):
        main(str(missing), host="0.0.0.0", port=0)


def test_main_says_when_the_port_is_taken(tmp_path):
    from embedline_serve import bind_socket

    taken = bind_socket("127.0.0.1", 0)
    try:
        with pytest.raises(ServeError, match="cannot listen on 127.0.0.1"):
            main(str(tmp_path / "never-read.toml"), port=taken.getsockname()[1])
    finally:
        taken.close()


def test_limits_must_be_positive_integers():
    with pytest.raises(ValueError, match="max_k"):
        Limits(max_k=0)
    with pytest.raises(ServeError, match="max_inputs"):
        main("x.toml", max_inputs=-1)


# -- limits ---------------------------------------------------------------------------------------


def test_a_body_over_the_limit_is_413(make_client):
    client = make_client(limits=Limits(max_body_bytes=1000))
    big = {"model": "docs", "input": ["word " * 300]}
    response = client.post("/v1/embeddings", json=big)
    assert response.status_code == 413
    assert response.json()["error"]["type"] == "invalid_request_error"
    search = client.post("/search", json={"query": "cats " * 300})
    assert search.status_code == 413


def test_a_streamed_body_without_length_is_cut_at_the_limit(make_client):
    client = make_client(limits=Limits(max_body_bytes=1000))

    def chunks():
        yield b'{"model": "docs", "input": "'
        for _ in range(50):
            yield b"cats " * 10
        yield b'"}'

    response = client.post("/v1/embeddings", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert "at most 1000 bytes" in response.json()["error"]["message"]


def test_an_upload_over_its_limit_is_413(make_client):
    client = make_client(limits=Limits(max_upload_bytes=2000))
    files = {"file": ("big.txt", b"cats purr " * 500, "text/plain")}
    response = client.post("/search", files=files)
    assert response.status_code == 413
    small = client.post("/search", files={"file": ("small.txt", b"cats purr and sleep", "text/plain")})
    assert small.status_code == 200


def test_too_many_inputs_too_long_an_input_and_too_large_a_k_are_422(make_client):
    client = make_client(limits=Limits(max_inputs=3, max_input_chars=50, max_k=5))
    many = client.post("/v1/embeddings", json={"model": "docs", "input": ["a", "b", "c", "d"]})
    assert many.status_code == 422 and many.json()["error"]["param"] == "input"
    assert "at most 3" in many.json()["error"]["message"]
    long = client.post("/v1/embeddings", json={"model": "docs", "input": ["fine", "x" * 51]})
    assert long.status_code == 422 and "input[1]" in long.json()["error"]["message"]
    query = client.post("/search", json={"query": "x" * 51})
    assert query.status_code == 422 and query.json()["error"]["param"] == "query"
    for k in (6, 0, -1, "three", True):
        response = client.post("/search", json={"query": "cats", "k": k})
        assert response.status_code == 422, k
        assert response.json()["error"]["param"] == "k"
    upload = client.post("/search", files={"file": ("q.txt", b"cats", "text/plain")}, data={"k": "6"})
    assert upload.status_code == 422 and upload.json()["error"]["param"] == "k"
    assert client.post("/search", json={"query": "cats", "k": 5}).status_code == 200


# -- errors never show internals ------------------------------------------------------------------


def test_an_unexpected_error_is_a_generic_500_and_the_traceback_is_logged(make_client, caplog):
    client = make_client()
    service = client.app.state.service

    def broken(*args, **kwargs):
        raise RuntimeError("internal detail /secret/path")

    service.search = broken
    service.count_tokens = broken
    caplog.set_level(logging.ERROR, logger="embedline.serve")
    for response in (
        client.post("/search", json={"query": "cats"}),
        client.post("/v1/embeddings", json={"model": "docs", "input": "cats"}),
    ):
        assert response.status_code == 500
        assert response.json() == {"error": {"message": "internal server error (logged on the server)",
                                             "type": "server_error", "param": None, "code": None}}
        assert "Traceback" not in response.text and "secret" not in response.text
    assert "internal detail /secret/path" in caplog.text
    assert any(record.exc_info for record in caplog.records)


def test_a_pipeline_error_says_what_to_do_without_paths(tmp_path, fake_config):
    from embedline import Pipeline
    from embedline.testing import FakeTextModel, fresh_plugin_manager
    from embedline_serve import create_app
    from fastapi.testclient import TestClient

    with Pipeline.from_dict(fake_config(None), base_dir=tmp_path, pm=fresh_plugin_manager(FakeTextModel())) as p:
        with TestClient(create_app(p)) as client:
            response = client.post("/search", json={"query": "cats"})  # nothing stored yet
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "collection_not_found"
    assert "embedline run" in response.json()["error"]["message"]
    assert str(tmp_path) not in response.text


def test_unknown_routes_and_methods_are_openai_style(client):
    assert client.get("/v2/nothing").json()["error"]["code"] == "not_found"
    wrong = client.get("/v1/embeddings")
    assert wrong.status_code == 405 and wrong.json()["error"]["code"] == "method_not_allowed"


# -- CORS -----------------------------------------------------------------------------------------


def test_cors_is_off_by_default(client):
    response = client.get("/health", headers={"Origin": "https://example.com"})
    assert "access-control-allow-origin" not in response.headers
    preflight = client.options("/v1/embeddings", headers={
        "Origin": "https://example.com", "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in preflight.headers


def test_cors_allows_the_configured_origins_and_preflights_need_no_token(make_client):
    client = make_client(token=TOKEN, cors_origins=["https://app.example"])
    preflight = client.options("/v1/embeddings", headers={
        "Origin": "https://app.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type"})
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://app.example"
    evil = {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    other = client.options("/v1/embeddings", headers=evil)
    assert other.headers.get("access-control-allow-origin") != "https://evil.example"
    response = client.get("/v1/models", headers={"Origin": "https://app.example", "Authorization": f"Bearer {TOKEN}"})
    assert response.headers["access-control-allow-origin"] == "https://app.example"
