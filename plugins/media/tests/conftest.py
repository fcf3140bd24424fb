"""Fixtures for the embedline-media tests: sample files from :mod:`embedline_media.testing`."""

from __future__ import annotations

import pytest
from embedline_media.testing import image_fixtures
from embedline_media.testing import tone as make_tone

good_images, bad_images = image_fixtures()


@pytest.fixture(scope="session")
def tone():
    """``tone(seconds, freq=440, rate=16000, amplitude=0.3)``: a sine; ``freq=0`` gives white noise."""
    return make_tone
