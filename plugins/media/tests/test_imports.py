"""Importing embedline_media (any of its modules) loads none of the decoding libraries."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

MODULES = ("embedline_media", "embedline_media.image", "embedline_media.audio", "embedline_media.video",
           "embedline_media.frames", "embedline_media.testing")  # fmt: skip


@pytest.mark.parametrize("module", MODULES)
def test_importing_loads_no_heavy_library(module):
    code = (
        "import json, sys\n"
        f"import {module}\n"
        "heavy = ('PIL', 'soundfile', 'av', 'soxr', 'numpy', 'torch', 'transformers')\n"
        "print(json.dumps([m for m in heavy if m in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == []


def test_it_is_a_library_not_a_plugin():
    from importlib.metadata import distribution

    entry_points = distribution("embedline-media").entry_points
    assert not [ep for ep in entry_points if ep.group == "embedline"]
