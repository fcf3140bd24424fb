"""Dynamic batching: concurrent requests share model calls, and each gets its own rows back."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from embedline import Pipeline
from embedline.testing import fresh_plugin_manager
from embedline_serve import DynamicBatcher, create_app


def rows_for(texts):
    """A row per text that says which text it is: [len, first code point]."""
    return np.array([[len(t), ord(t[0])] for t in texts], dtype=np.float32)


class Recorder:
    def __init__(self, delay=0.0, fail_on=None):
        self.calls = []
        self.delay = delay
        self.fail_on = fail_on
        self.lock = threading.Lock()

    def __call__(self, texts, mode):
        with self.lock:
            self.calls.append((list(texts), mode))
        time.sleep(self.delay)
        if self.fail_on and any(self.fail_on in t for t in texts):
            raise ValueError(f"cannot embed {self.fail_on}")
        return rows_for(texts)


def submit_all(batcher, texts, mode="document"):
    """Submit one job per text from as many threads at once; the results in order."""
    start = threading.Barrier(len(texts))

    def one(text):
        start.wait()
        return batcher.submit([text], mode).result(timeout=10)

    with ThreadPoolExecutor(len(texts)) as pool:
        return list(pool.map(one, texts))


def test_concurrent_jobs_share_calls_and_get_their_own_rows():
    embed = Recorder(delay=0.02)
    batcher = DynamicBatcher(embed, max_batch=8, max_wait_ms=20)
    texts = [f"{chr(65 + i)}{'x' * i}" for i in range(24)]
    results = submit_all(batcher, texts)
    batcher.close()
    for text, rows in zip(texts, results):
        np.testing.assert_array_equal(rows, rows_for([text]))
    assert len(embed.calls) < len(texts)
    assert all(len(t) <= 8 for t, _ in embed.calls)  # one job per text here: never more than max_batch
    assert sum(len(t) for t, _ in embed.calls) == len(texts)
    assert batcher.calls == len(embed.calls) and batcher.texts == 24 and batcher.jobs == 24


def test_turned_off_every_job_is_a_call_of_its_own():
    embed = Recorder(delay=0.005)
    batcher = DynamicBatcher(embed, max_batch=8, max_wait_ms=20, enabled=False)
    texts = [f"{chr(65 + i)}" for i in range(10)]
    results = submit_all(batcher, texts)
    batcher.close()
    assert len(embed.calls) == 10
    for text, rows in zip(texts, results):
        np.testing.assert_array_equal(rows, rows_for([text]))


def test_a_lone_request_waits_at_most_max_wait():
    embed = Recorder()
    batcher = DynamicBatcher(embed, max_batch=64, max_wait_ms=5)
    started = time.perf_counter()
    rows = batcher.submit(["hello", "world"]).result(timeout=5)
    assert time.perf_counter() - started < 0.5
    np.testing.assert_array_equal(rows, rows_for(["hello", "world"]))
    assert embed.calls == [(["hello", "world"], "document")]
    batcher.close()


def test_a_large_request_is_one_call_and_is_not_split():
    embed = Recorder()
    batcher = DynamicBatcher(embed, max_batch=4, max_wait_ms=5)
    texts = [f"t{i}" for i in range(10)]
    np.testing.assert_array_equal(batcher.submit(texts).result(timeout=5), rows_for(texts))
    assert len(embed.calls) == 1
    batcher.close()


def test_modes_are_never_mixed_in_one_call():
    embed = Recorder(delay=0.02)
    batcher = DynamicBatcher(embed, max_batch=16, max_wait_ms=30)
    blocker = batcher.submit(["first"], "document")  # keeps the worker busy while the rest queue up
    time.sleep(0.005)
    futures = [batcher.submit([f"q{i}"], "query") for i in range(3)]
    futures += [batcher.submit([f"d{i}"], "document") for i in range(3)]
    blocker.result(timeout=5)
    for future in futures:
        future.result(timeout=5)
    batcher.close()
    for texts, mode in embed.calls:
        assert {t[0] for t in texts} <= ({"q"} if mode == "query" else {"d", "f"})


def test_a_failing_input_fails_its_own_request_only():
    embed = Recorder(delay=0.01, fail_on="poison")
    batcher = DynamicBatcher(embed, max_batch=16, max_wait_ms=30)
    texts = ["alpha", "poison pill", "gamma", "delta"]
    futures = [batcher.submit([t]) for t in texts]
    outcomes = []
    for future in futures:
        try:
            outcomes.append(future.result(timeout=5))
        except ValueError as exc:
            outcomes.append(exc)
    batcher.close()
    assert isinstance(outcomes[1], ValueError)
    for i in (0, 2, 3):
        np.testing.assert_array_equal(outcomes[i], rows_for([texts[i]]))


def test_a_cancelled_request_is_not_embedded():
    gate = threading.Event()

    def embed(texts, mode):
        gate.wait(5)
        return rows_for(texts)

    calls = []
    batcher = DynamicBatcher(lambda t, m: calls.append(list(t)) or embed(t, m), max_batch=1, max_wait_ms=0)
    first = batcher.submit(["busy"])
    time.sleep(0.02)
    gone = batcher.submit(["gone"])
    assert gone.cancel()
    gate.set()
    first.result(timeout=5)
    batcher.close()
    assert ["gone"] not in calls


def test_the_lock_keeps_other_users_of_the_model_out():
    lock = threading.Lock()
    inside = []

    def embed(texts, mode):
        inside.append(lock.locked())
        return rows_for(texts)

    batcher = DynamicBatcher(embed, max_batch=4, lock=lock)
    batcher.submit(["a"]).result(timeout=5)
    batcher.close()
    assert inside == [True]
    with pytest.raises(RuntimeError, match="closed"):
        batcher.submit(["b"])


# -- through HTTP ---------------------------------------------------------------------------------


async def _concurrent_requests(app, texts):
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        requests = [client.post("/v1/embeddings", json={"model": "docs", "input": t}) for t in texts]
        return await asyncio.gather(*requests)


@pytest.mark.parametrize("batching", [True, False])
def test_concurrent_http_requests_are_batched_into_fewer_model_calls(tmp_path, fake_config, CountingModel, batching):
    model = CountingModel(delay=0.02)
    texts = [f"request number {i} about cats and dogs {'!' * i}" for i in range(32)]
    with Pipeline.from_dict(fake_config(None, batch_size=16), base_dir=tmp_path, pm=fresh_plugin_manager(model)) as p:
        local = p.model_at(0).embed(texts)
        model.calls = 0
        app = create_app(p, batching=batching, max_wait_ms=10)
        responses = asyncio.run(_concurrent_requests(app, texts))
        stats = app.state.service.stats()["docs"]
        app.state.service.close()
    for i, response in enumerate(responses):
        assert response.status_code == 200
        got = np.array(response.json()["data"][0]["embedding"], dtype=np.float32)
        np.testing.assert_allclose(got, local[i], atol=1e-6)  # each response is its own text's vector
    if batching:
        assert model.calls < len(texts) // 2, model.sizes
        assert max(model.sizes) > 1
    else:
        assert model.calls == len(texts)
    assert stats == {"calls": model.calls, "texts": len(texts), "requests": len(texts)}
    assert model.max_concurrent == 1  # one model call at a time
