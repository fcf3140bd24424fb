"""The clip plugin through a real plugin manager, on a tiny random CLIP built by the tests.

No test here needs real weights (none exist offline), so none is marked integration.  With random
weights a text query cannot find the *right* image; these tests check the mechanics (one space,
the right rows and fields, truncation, thread safety) and exactness against plain transformers.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import embedline_clip
import numpy as np
import pytest
from embedline.contracts import Failed, Item
from embedline.errors import ModelSourceError
from embedline.pipeline import Pipeline
from embedline.testing import import_cost, lite_store

LONG = " ".join(["a photo of a small cat sitting on a red chair"] * 4)  # ~180 characters: > 77 tokens


def text_items(*texts):
    return [Item(id=f"t{i}:0", uri=f"mem://{i}", modality="text", text=t) for i, t in enumerate(texts)]


def image_items(folder, names):
    return [Item(id=f"{n}:0", uri=n, modality="image", path=str(folder / n)) for n in names]


def run_hooks(pm, model, items, mode="document"):
    inputs = pm.call("preprocess", "clip", model=model, items=items, mode=mode)
    good = [x for x in inputs if not isinstance(x, Failed)]
    return inputs, pm.call("embed", "clip", model=model, inputs=good, mode=mode)


def test_importing_the_plugin_loads_no_heavy_library():
    heavy, _ = import_cost("clip")
    assert heavy == []


def test_plugin_info():
    info = embedline_clip.plugin_info
    assert info.kind == "model" and info.modalities == ("image", "text", "video")
    defaults = {k: o.default for k, o in info.options.items()}
    with pytest.raises(ValueError, match="frames_per_second"):
        info.validate({**defaults, "frames_per_second": 0})


def test_loads_a_folder(load):
    from transformers import CLIPModel

    model = load()
    assert model.dim == 32 and model.modalities == ("image", "text", "video")
    assert isinstance(model.impl.net, CLIPModel)
    assert model.revision.startswith("sha256:")
    assert model.settings["context_length"] == 77
    assert model.settings["tokenizer"].startswith("sha256:")
    assert "CLIPImageProcessorPil" in model.settings["processor"]
    assert model.segment == (10.0, 0.0)
    assert load(modalities=["image", "text"]).segment is None


def test_vectors_are_what_plain_transformers_gives(load, tiny_clip, photos, pm):
    import torch
    from PIL import Image
    from transformers import CLIPModel, CLIPProcessor

    names = ["astronaut.jpg", "coffee.png", "logo.png"]
    texts = ["a photo of a cat", "an astronaut", LONG]
    model = load()
    _, vectors = run_hooks(pm, model, image_items(photos, names) + text_items(*texts))
    processor = CLIPProcessor.from_pretrained(tiny_clip, local_files_only=True)
    net = CLIPModel.from_pretrained(tiny_clip, local_files_only=True).eval()
    images = [Image.open(photos / n).convert("RGB") for n in names[:2]]
    with torch.inference_mode():
        pixels = processor(images=images, return_tensors="pt")["pixel_values"]
        image_features = net.get_image_features(pixel_values=pixels).pooler_output
        tokens = processor(text=texts, padding=True, truncation=True, return_tensors="pt")
        text_features = net.get_text_features(**tokens).pooler_output
    plain = torch.nn.functional.normalize(torch.cat([image_features, text_features]), dim=-1).numpy()
    assert np.abs(vectors[[0, 1, 3, 4, 5]] - plain).max() < 1e-5  # row 2 (RGBA logo) is composited on white


def test_long_texts_are_truncated_and_counted(load, pm):
    model = load()
    inputs, vectors = run_hooks(pm, model, text_items("short", LONG, LONG + " more"))
    assert [x.truncated for x in inputs] == [False, True, True]
    assert model.counters == {"truncated": 2}
    assert [len(x.ids) for x in inputs] == [7, 77, 77]  # start + 5 characters + end; the context
    assert np.allclose(vectors[1], vectors[2])  # what lies past the context is not seen
    empty = pm.call("preprocess", "clip", model=model, items=text_items("   "), mode="query")
    assert isinstance(empty[0], Failed) and "empty" in empty[0].reason


def test_mixed_batches_give_the_same_vectors_as_separate_ones(load, photos, pm):
    model = load()
    images = image_items(photos, ["chelsea.jpg", "rocket.png"])
    texts = text_items("a cat", "a rocket")
    _, mixed = run_hooks(pm, model, [images[0], texts[0], images[1], texts[1]])
    _, only_images = run_hooks(pm, model, images)
    _, only_texts = run_hooks(pm, model, texts)
    assert np.allclose(mixed[[0, 2]], only_images, atol=1e-5) and np.allclose(mixed[[1, 3]], only_texts, atol=1e-5)


def test_preprocess_is_thread_safe(load, photos, pm):
    model = load()
    items = image_items(photos, sorted(p.name for p in photos.iterdir())) + text_items("a cat", LONG, "x" * 300)
    reference = pm.call("preprocess", "clip", model=model, items=items, mode="document")
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(
            pool.map(lambda _: pm.call("preprocess", "clip", model=model, items=items, mode="document"), range(8))
        )
    for result in results:
        for a, b in zip(result, reference):
            assert np.array_equal(getattr(a, "ids", a), getattr(b, "ids", b))
    assert model.counters == {}  # counted by embed, once a batch has worked


def test_not_a_clip_model(tmp_path, load):
    from transformers import BertConfig

    BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64).save_pretrained(
        tmp_path / "bert"
    )
    with pytest.raises(ModelSourceError, match="'bert' model, not CLIP"):
        load(str(tmp_path / "bert"))
    with pytest.raises(ModelSourceError, match="no CLIP weights ship on PyPI"):
        load("openai/clip-vit-large-patch14")  # offline, not cached


def test_text_and_image_queries_search_an_image_collection(tmp_path, tiny_clip, photos, pm):
    config = {
        "source": {"path": str(photos)},
        "model": {"plugin": "clip", "name": str(tiny_clip), "device": "cpu", "modalities": ["image", "text"]},
        "store": lite_store(tmp_path, collection="clip_images", metric="COSINE"),
    }
    with Pipeline.from_dict(config, base_dir=tmp_path, pm=pm) as pipeline:
        summary = pipeline.run()
        assert summary.embedded == len(list(photos.iterdir())) and not summary.failed
        hits = pipeline.search("a photo of a cat", k=3)
        assert len(hits) == 3
        for hit in hits:
            assert hit.modality == "image" and hit.uri.rpartition("/")[2] in {p.name for p in photos.iterdir()}
            assert hit.metadata["path"] == hit.uri.rpartition("/")[2] and -1.0 <= hit.score <= 1.0
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
        by_image = pipeline.search(file=photos / "chelsea.jpg", k=1)[0]
        assert by_image.uri.endswith("chelsea.jpg") and by_image.score > 0.999
        query = pipeline.model("text").embed(["a photo of a cat"], mode="query")
        assert abs(float(np.linalg.norm(query)) - 1.0) < 1e-5  # normalised: cosine scores compare


def test_truncation_is_counted_in_the_run_summary(tmp_path, tiny_clip, pm):
    (tmp_path / "texts").mkdir()
    (tmp_path / "texts" / "long.txt").write_text(LONG)
    (tmp_path / "texts" / "short.txt").write_text("a cat")
    config = {
        "source": {"path": "texts"},
        "model": {"plugin": "clip", "name": str(tiny_clip), "device": "cpu"},
        "store": lite_store(tmp_path),
    }
    with Pipeline.from_dict(config, base_dir=tmp_path, pm=pm) as pipeline:
        summary = pipeline.run()
    assert summary.embedded == 2 and summary.counters == {"truncated": 1}
    assert "truncated: 1" in summary.format()
