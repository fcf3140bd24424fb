"""Retries: 429 and 5xx, timeouts and connection errors; exponential backoff with full jitter,
Retry-After honoured, every wait capped; waits recorded through the injected sleep."""

from __future__ import annotations

import email.utils
import socket
import time

import numpy as np
import pytest
from embedline.errors import ModelSourceError

from embedline_openai import _backend
from embedline_openai.testing import answer, fake_vector

TEXTS = ["a cat sits on the mat", "dogs run in the park"]


def embed_hook(pm, model, inputs, mode="document"):
    return pm.call("embed", "openai", model=model.model, inputs=list(inputs), mode=mode)


@pytest.fixture
def upper_bound(monkeypatch):
    """Full jitter drawing its maximum, so each wait is the backoff's bound."""
    monkeypatch.setattr(_backend, "jitter", lambda: 1.0)


def test_429_honours_retry_after_seconds_and_ms(open_model, server, pm, waits):
    model = open_model()
    server.requests.clear()
    server.then(
        answer(429, headers={"Retry-After": "7"}),
        answer(429, headers={"retry-after-ms": "1500", "Retry-After": "9"}),  # ms wins
    )
    vectors = embed_hook(pm, model, TEXTS)
    assert waits == [7.0, 1.5]
    assert len(server.requests) == 3
    assert model.model.counters["retries"] == 2
    np.testing.assert_allclose(vectors, [fake_vector(t, 16) for t in TEXTS], atol=1e-6)


def test_retry_after_as_an_http_date(open_model, server, pm, waits):
    model = open_model()
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    server.then(answer(503, headers={"Retry-After": when}))
    embed_hook(pm, model, TEXTS)
    [wait] = waits
    assert 27 <= wait <= 30.5


def test_retry_after_is_capped(open_model, server, pm, waits):
    model = open_model()
    server.then(answer(429, headers={"Retry-After": "3600"}))
    embed_hook(pm, model, TEXTS)
    assert waits == [_backend.MAX_WAIT] == [60.0]


def test_backoff_doubles_from_half_a_second_and_is_capped(open_model, server, pm, waits, upper_bound):
    model = open_model(max_retries=9)
    server.then(*[answer(500)] * 9)
    embed_hook(pm, model, TEXTS)
    assert waits == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]


def test_full_jitter_waits_stay_under_the_growing_bound(open_model, server, pm, waits):
    model = open_model(max_retries=6)
    server.then(*[answer(502)] * 6)
    embed_hook(pm, model, TEXTS)
    bounds = [0.5 * 2**i for i in range(6)]
    assert len(waits) == 6
    assert all(0 <= w <= b for w, b in zip(waits, bounds))


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504, 408])
def test_these_answers_are_retried(open_model, server, pm, waits, status):
    model = open_model()
    server.then(answer(status))
    embed_hook(pm, model, TEXTS)
    assert len(waits) == 1


def test_x_should_retry_decides(open_model, server, pm, waits):
    model = open_model()
    server.then(answer(400, headers={"x-should-retry": "true"}))
    embed_hook(pm, model, TEXTS)
    assert len(waits) == 1
    server.then(answer(500, headers={"x-should-retry": "false"}))
    with pytest.raises(RuntimeError, match="HTTP 500"):
        embed_hook(pm, model, TEXTS)
    assert len(waits) == 1


def test_gives_up_after_max_retries_with_one_line(open_model, server, pm, waits, upper_bound):
    model = open_model(max_retries=2)
    server.requests.clear()
    server.always = answer(503, body={"error": {"message": "The server is overloaded.\nTry later."}})
    with pytest.raises(RuntimeError) as caught:
        embed_hook(pm, model, TEXTS)
    message = str(caught.value)
    assert "\n" not in message
    assert "HTTP 503: The server is overloaded. Try later." in message
    assert "after 3 attempts (max_retries = 2)" in message
    assert len(server.requests) == 3 and waits == [0.5, 1.0]


def test_after_giving_up_the_next_requests_try_once_until_one_succeeds(open_model, server, pm, waits):
    # The core retries a failed batch one input at a time: those tries must not each wait again.
    model = open_model(max_retries=2)
    server.always = answer(500)
    with pytest.raises(RuntimeError):
        embed_hook(pm, model, TEXTS)
    server.requests.clear()
    for text in TEXTS:
        with pytest.raises(RuntimeError, match="after 1 attempt "):
            embed_hook(pm, model, [text])
    assert len(server.requests) == 2 and len(waits) == 2
    server.always = None
    embed_hook(pm, model, TEXTS)  # the endpoint is back
    server.then(answer(500))
    embed_hook(pm, model, TEXTS)  # and a failure is retried again
    assert len(waits) == 3


def test_a_slow_answer_times_out_and_is_retried(open_model, server, pm, waits):
    model = open_model(timeout=0.2, max_retries=2)
    server.then(answer(delay=1.0))
    vectors = embed_hook(pm, model, TEXTS)
    assert vectors.shape == (2, 16) and len(waits) == 1


def test_an_endpoint_that_never_answers_in_time(open_model, server, pm, waits):
    model = open_model(timeout=0.2, max_retries=1)
    server.always = answer(delay=1.0)
    with pytest.raises(RuntimeError, match=r"gave no answer within 0.2 s \(timeout\), after 2 attempts"):
        embed_hook(pm, model, TEXTS)
    assert len(waits) == 1


def test_a_refused_connection_is_retried_then_a_model_source_error(open_model, waits):
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ModelSourceError) as caught:
        open_model(base_url=f"http://127.0.0.1:{port}/v1", max_retries=2)
    message = str(caught.value)
    assert message.startswith(f"cannot reach http://127.0.0.1:{port}/v1/embeddings: ConnectError")
    assert "after 3 attempts (max_retries = 2)" in message and "\n" not in message
    assert len(waits) == 2


def test_an_endpoint_going_away_mid_run_stops_the_run(open_model, server, pm, waits):
    model = open_model(max_retries=1, dimensions=16)  # no probe: no connection kept alive
    server.stop()
    with pytest.raises(ModelSourceError, match="cannot reach"):
        embed_hook(pm, model, TEXTS)


def test_max_retries_zero_tries_once(open_model, server, pm, waits):
    model = open_model(max_retries=0)
    server.requests.clear()
    server.then(answer(429, headers={"Retry-After": "1"}))
    with pytest.raises(RuntimeError, match="HTTP 429"):
        embed_hook(pm, model, TEXTS)
    assert waits == [] and len(server.requests) == 1


def test_the_probe_is_retried_too(open_model, server, waits):
    server.then(answer(429, headers={"Retry-After": "2"}), answer(500))
    model = open_model()
    assert model.dim == 16 and waits[0] == 2.0 and len(waits) == 2


@pytest.mark.parametrize(
    ("headers", "wait"),
    [
        ({"Retry-After": "2.5"}, 2.5),
        ({"Retry-After": "-5"}, 0.0),
        ({"Retry-After": "soon"}, None),
        ({"retry-after-ms": "250"}, 0.25),
        ({"retry-after-ms": "x", "Retry-After": "3"}, 3.0),
        ({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0.0),  # in the past
        ({}, None),
    ],
)
def test_retry_after_values(headers, wait):
    import httpx

    assert _backend.retry_after(httpx.Headers(headers)) == wait
