"""examples/clip.toml end to end, and the command line the docs show: a text query finds images."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from embedline.pipeline import Pipeline

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
OFFLINE = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def embedline(*args: str, cwd: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "embedline", *args], capture_output=True, text=True, env=OFFLINE, cwd=cwd, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def example(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("example")
    subprocess.run(
        [sys.executable, str(EXAMPLES / "make_tiny_models.py"), "clip", "--out", str(folder / "models"),
         "--images", str(folder / "images")],
        check=True, capture_output=True, env=OFFLINE,
    )  # fmt: skip
    shutil.copy(EXAMPLES / "clip.toml", folder / "clip.toml")
    return folder


def test_plugins_lists_resnet_and_clip(tmp_path):
    rows = {row["name"]: row for row in json.loads(embedline("plugins", "--json", cwd=tmp_path))}
    assert rows["clip"]["modalities"] == ["image", "text", "video"]
    assert rows["resnet"]["modalities"] == ["image", "video"]


def test_clip_example_text_query_finds_images(example, pm):
    with Pipeline.from_toml(example / "clip.toml", pm=pm) as pipeline:
        summary = pipeline.run()
        assert summary.embedded == 8 and not summary.failed, summary.format()
    hits = json.loads(embedline("search", "clip.toml", "a photo of a cat", "-k", "3", "--json", cwd=example))
    assert len(hits) == 3 and {h["modality"] for h in hits} == {"image"}
    assert all(h["uri"].startswith("images/") for h in hits)
    with Pipeline.from_toml(example / "clip.toml", pm=pm) as pipeline:  # an image file as the query
        top = pipeline.search(file=example / "images" / "chelsea.jpg", k=1)[0]
    assert top.uri == "images/chelsea.jpg" and top.score > 0.999
