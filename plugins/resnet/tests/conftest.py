"""Fixtures for the resnet plugin tests: a tiny random ResNet, and image files in every mode.

The images are written by :mod:`embedline_media.testing` (no fixtures checked in): each good file
comes with what it must decode to, each bad file with the words its failure reason must contain.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from embedline.testing import model_plugin_fixtures
from embedline_media.testing import image_fixtures

offline_hub, pm, load = model_plugin_fixtures("resnet", default="tiny_resnet")


@pytest.fixture(scope="session")
def tiny_resnet(tmp_path_factory) -> Path:
    from embedline_resnet.testing import build_tiny_resnet

    return build_tiny_resnet(tmp_path_factory.mktemp("models") / "resnet")


# -- image files -------------------------------------------------------------------------------

#: ``(folder, {name: Expect})`` and ``(folder, {name: reason word})``, written by embedline_media.testing.
good_images, bad_images = image_fixtures()


@pytest.fixture(scope="session")
def photos(tmp_path_factory) -> Path:
    """The public-domain photos scikit-image ships, as PNG files."""
    from PIL import Image
    from skimage import data

    folder = tmp_path_factory.mktemp("photos")
    for name in ("astronaut", "coffee", "chelsea", "rocket", "horse", "camera", "coins", "clock", "moon",
                 "hubble_deep_field", "immunohistochemistry", "colorwheel", "logo", "grass", "brick", "page"):  # fmt: skip
        array = getattr(data, name)()
        if array.dtype == bool:
            array = array.astype(np.uint8) * 255
        Image.fromarray(array).save(folder / f"{name}.png")
    return folder
