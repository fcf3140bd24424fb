"""embedline_media.image.load_image on real files Pillow writes: every mode in, upright RGB out."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from embedline.contracts import Item
from embedline_media import MediaError
from embedline_media.image import item_frames, load_image


def test_every_mode_decodes_to_upright_rgb(good_images):
    folder, expected = good_images
    assert len(expected) >= 16
    for name, expect in expected.items():
        image = load_image(folder / name)
        assert image.mode == "RGB", name
        assert image.size == expect.size, name
        for (x, y), rgb in expect.pixels:
            got = image.getpixel((x, y))
            assert max(abs(a - b) for a, b in zip(got, rgb)) <= expect.tolerance, f"{name} at {(x, y)}: {got} != {rgb}"


def test_animated_files_give_their_first_frame(good_images):
    from PIL import Image

    folder, expected = good_images
    animated = [n for n in expected if n.startswith("animated.")]
    assert {"animated.gif", "animated.png"} <= set(animated)
    for name in animated:
        with Image.open(folder / name) as im:
            assert getattr(im, "n_frames", 1) == 3, name  # green, red, blue
        assert load_image(folder / name).getpixel((5, 5)) == (0, 255, 0), name


def test_bad_files_raise_a_media_error_with_the_reason(bad_images):
    folder, reasons = bad_images
    for name, word in reasons.items():
        with pytest.raises(MediaError) as caught:
            load_image(folder / name)
        assert word in str(caught.value), f"{name}: {caught.value}"
        assert str(folder) not in str(caught.value)  # the reason only: the pipeline adds the file name


def test_a_missing_file_is_a_media_error(tmp_path):
    with pytest.raises(MediaError, match="cannot read the file"):
        load_image(tmp_path / "nothing.png")


def test_max_pixels_is_per_call_and_leaves_pillow_alone(good_images):
    from PIL import Image

    folder, _ = good_images
    before = Image.MAX_IMAGE_PIXELS
    with pytest.raises(MediaError, match=r"40x30 = 1,200 pixels, more than the limit of 1,000"):
        load_image(folder / "rgb.jpg", max_pixels=1000)
    assert load_image(folder / "rgb.jpg", max_pixels=1200).size == (40, 30)
    assert Image.MAX_IMAGE_PIXELS == before


def test_decoding_is_thread_safe(good_images):
    folder, expected = good_images
    names = sorted(expected) * 6
    reference = {name: np.asarray(load_image(folder / name)) for name in expected}
    with ThreadPoolExecutor(max_workers=6) as pool:
        decoded = list(pool.map(lambda n: (n, np.asarray(load_image(folder / n))), names))
    for name, array in decoded:
        assert np.array_equal(array, reference[name]), name


def test_item_frames(good_images, tmp_path):
    folder, _ = good_images
    image = Item(id="a:0", uri="rgb.jpg", modality="image", path=str(folder / "rgb.jpg"))
    assert [im.size for im in item_frames(image)] == [(40, 30)]
    with pytest.raises(MediaError, match="not an image or a video"):
        item_frames(Item(id="b:0", uri="x.wav", modality="audio", path=str(folder / "rgb.jpg")))
    with pytest.raises(MediaError, match="no file"):
        item_frames(Item(id="c:0", uri="<input>", modality="image", text="hello"))

