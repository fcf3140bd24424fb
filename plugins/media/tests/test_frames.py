"""embedline_media.frames: the part of the image plugins' work that does not need their model."""

from __future__ import annotations

import numpy as np
from embedline_media.frames import _stacked


def test_frames_are_batched_without_a_copy_when_they_can_be():
    batch = np.random.default_rng(0).random((5, 3, 4, 4), dtype=np.float32)
    rows = [f for x in (batch[0:1], batch[1:3], batch[3:5]) for f in x]  # as preprocess hands them out
    assert np.shares_memory(_stacked(rows[1:4]), batch) and np.array_equal(_stacked(rows[1:4]), batch[1:4])
    apart = _stacked([rows[0], rows[2]])  # not consecutive: copied
    assert not np.shares_memory(apart, batch) and np.array_equal(apart, batch[[0, 2]])
    assert _stacked([np.ones((3, 4, 4), np.float32)] * 2).shape == (2, 3, 4, 4)
