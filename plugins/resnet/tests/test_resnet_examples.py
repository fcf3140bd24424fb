"""examples/images.toml runs end to end on the tiny model and photos make_tiny_models.py writes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from embedline import cli
from embedline.pipeline import Pipeline

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
OFFLINE = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


@pytest.fixture(scope="module")
def example(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("example")
    subprocess.run(
        [sys.executable, str(EXAMPLES / "make_tiny_models.py"), "resnet", "--out", str(folder / "models"),
         "--images", str(folder / "images")],
        check=True, capture_output=True, env=OFFLINE,
    )  # fmt: skip
    shutil.copy(EXAMPLES / "images.toml", folder / "images.toml")
    return folder


def test_images_example(example, pm, capsys):
    assert cli.main(["check", str(example / "images.toml")]) == 0
    assert "model:  resnet models/resnet -> collection 'images' [image]" in capsys.readouterr().out
    photos = sorted(p.name for p in (example / "images").iterdir())
    assert len(photos) == 8
    with Pipeline.from_toml(example / "images.toml", pm=pm) as pipeline:
        summary = pipeline.run()
        assert summary.embedded == 8 and not summary.failed, summary.format()
        hit = pipeline.search(file=example / "images" / "chelsea.jpg", k=1)[0]
        assert hit.uri == "images/chelsea.jpg" and hit.score > 0.999
    assert (example / "images.db").exists()
