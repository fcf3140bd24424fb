"""The resnet plugin through a real plugin manager, on a tiny random ResNet built by the tests.

No test here needs real weights (none exist offline), so none is marked integration.
"""

from __future__ import annotations

import textwrap
from concurrent.futures import ThreadPoolExecutor

import embedline_resnet
import numpy as np
import pytest
from embedline.contracts import Failed, Item
from embedline.errors import ConfigError, ModelSourceError
from embedline.pipeline import Pipeline
from embedline.testing import import_cost, lite_store


def image_items(folder, names):
    return [Item(id=f"{n}:0", uri=n, modality="image", path=str(folder / n)) for n in names]


def run_hooks(pm, model, items, mode="document"):
    inputs = pm.call("preprocess", "resnet", model=model, items=items, mode=mode)
    good = [x for x in inputs if not isinstance(x, Failed)]
    return inputs, pm.call("embed", "resnet", model=model, inputs=good, mode=mode)


# -- the module stays light ------------------------------------------------------------------


def test_importing_the_plugin_loads_no_heavy_library():
    heavy, _ = import_cost("resnet")
    assert heavy == []


def test_plugin_info():
    info = embedline_resnet.plugin_info
    assert info.kind == "model" and info.modalities == ("image", "video")
    defaults = {k: o.default for k, o in info.options.items()}
    assert defaults["backend"] == "transformers" and defaults["pooling"] == "auto"
    assert (defaults["clip_seconds"], defaults["clip_overlap"], defaults["frames_per_second"], defaults["max_frames"]) == (
        10.0, 0.0, 1.0, 32,
    )  # fmt: skip
    with pytest.raises(ValueError, match="clip_overlap"):
        info.validate({**defaults, "clip_overlap": 10.0})
    with pytest.raises(ValueError, match="image_size"):
        info.validate({**defaults, "image_size": 2})


# -- loading ---------------------------------------------------------------------------------


def test_loads_a_folder(load, tiny_resnet):
    from transformers import ResNetModel

    model = load()
    assert model.dim == 16  # hidden_sizes[-1]: 2048 for ResNet-50
    assert model.modalities == ("image", "video")
    assert model.revision.startswith("sha256:")
    assert model.normalized is True
    assert isinstance(model.impl.net, ResNetModel)  # classifier checkpoint, base model kept
    assert model.segment == (10.0, 0.0)
    assert model.settings["backend"] == "transformers" and model.settings["pooling"] == "pooler"
    assert "ConvNextImageProcessorPil" in model.settings["processor"]
    assert "shortest_edge:32" in model.settings["processor"]


def test_vectors_are_what_plain_transformers_gives(load, tiny_resnet, good_images, pm):
    import torch
    from PIL import Image
    from transformers import AutoImageProcessor, ResNetModel

    folder, _ = good_images
    names = ["rgb.jpg", "photo.bmp", "gray.png", "photo.tiff"]
    model = load()
    _, vectors = run_hooks(pm, model, image_items(folder, names))
    processor = AutoImageProcessor.from_pretrained(tiny_resnet, local_files_only=True)
    net = ResNetModel.from_pretrained(tiny_resnet, local_files_only=True).eval()
    images = [Image.open(folder / n).convert("RGB") for n in names]
    with torch.inference_mode():
        plain = net(**processor(images=images, return_tensors="pt")).pooler_output.flatten(1)
    plain = torch.nn.functional.normalize(plain, dim=-1).numpy()
    assert vectors.shape == (4, 16)
    assert np.abs(vectors - plain).max() < 1e-5


def test_settings_that_change_vectors_change_the_fingerprint(load):
    base = load()
    assert load().fingerprint() == base.fingerprint()
    bigger = load(image_size=48)
    assert "shortest_edge:48" in bigger.settings["processor"]
    assert bigger.fingerprint() != base.fingerprint()
    assert load(pooling="mean").fingerprint() != base.fingerprint()
    assert load(clip_seconds=5.0).fingerprint() != base.fingerprint()
    assert load(frames_per_second=2.0).fingerprint() != base.fingerprint()
    assert load(normalize=False).fingerprint() != base.fingerprint()
    images_only = load(modalities=["image"])  # video windows do not concern an image collection
    assert images_only.segment is None and "clip_seconds" not in images_only.settings
    assert load(modalities=["image"], clip_seconds=5.0).fingerprint() == images_only.fingerprint()


def test_mean_pooling_for_a_backbone_without_a_pooled_output(tmp_path, load, good_images, pm):
    import torch
    from transformers import ViTConfig, ViTImageProcessorPil, ViTModel

    torch.manual_seed(0)
    config = ViTConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, image_size=32, patch_size=8
    )
    ViTModel(config, add_pooling_layer=False).save_pretrained(tmp_path / "vit")
    ViTImageProcessorPil(size={"height": 32, "width": 32}).save_pretrained(tmp_path / "vit")
    model = load(str(tmp_path / "vit"))
    assert model.dim == 32 and model.settings["pooling"] == "mean"
    folder, _ = good_images
    inputs, vectors = run_hooks(pm, model, image_items(folder, ["rgb.jpg"]))
    with torch.inference_mode():
        hidden = model.impl.net(pixel_values=torch.from_numpy(inputs[0])).last_hidden_state
    assert np.allclose(vectors[0], torch.nn.functional.normalize(hidden.mean(dim=1), dim=-1)[0].numpy(), atol=1e-5)
    with pytest.raises(ConfigError, match="no trained pooler"):
        load(str(tmp_path / "vit"), pooling="pooler")


def test_missing_models_fail_fast_with_directions(load):
    with pytest.raises(ModelSourceError, match="does not exist"):
        load("./models/nothing-here")
    with pytest.raises(ModelSourceError, match="no ResNet weights ship on PyPI"):
        load("microsoft/resnet-50")  # offline, not cached


def test_torchhub_without_torchvision_says_what_to_do(load):
    pytest.importorskip("torch")
    try:
        import torchvision  # noqa: F401
    except ImportError:
        pass
    else:  # pragma: no cover - not on the machines this project is tested on
        pytest.skip("torchvision is installed")
    with pytest.raises(ModelSourceError, match=r"pip install torchvision.*backend = \"transformers\""):
        load("pytorch/vision", backend="torchhub")
    with pytest.raises(ConfigError, match="trust_remote_code"):
        load("someone/their-models", backend="torchhub")


def test_torchhub_from_a_local_hub_folder(tmp_path, load, good_images, pm):
    """A folder with a hubconf.py (as a clone of pytorch/vision is): classifier removed, features kept."""
    (tmp_path / "hub").mkdir()
    (tmp_path / "hub" / "hubconf.py").write_text(
        textwrap.dedent("""
        import torch

        class Tiny(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = torch.nn.Conv2d(3, 6, 3)
                self.pool = torch.nn.AdaptiveAvgPool2d(1)
                self.fc = torch.nn.Linear(6, 1000)

            def forward(self, x):
                return self.fc(torch.flatten(self.pool(self.conv(x)), 1))

        def resnet50(weights=None, **kwargs):
            torch.manual_seed(0)
            return Tiny()
    """)
    )
    model = load("hub", backend="torchhub", image_size=32)
    assert model.dim == 6  # the fc layer is gone
    assert model.settings["backend"] == "torchhub" and model.revision.startswith("params-sha256:")
    assert model.settings["processor"] == "resize=33 bilinear crop=32 imagenet-mean-std"
    folder, _ = good_images
    inputs, vectors = run_hooks(pm, model, image_items(folder, ["rgb.jpg", "exif_rotated.jpg"]))
    assert inputs[0].shape == (1, 3, 32, 32)
    assert vectors.shape == (2, 6) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


# -- preprocess / embed ----------------------------------------------------------------------


def test_bad_items_fail_alone(load, good_images, bad_images, pm):
    good_folder, _ = good_images
    bad_folder, reasons = bad_images
    items = image_items(good_folder, ["rgb.jpg"]) + image_items(bad_folder, list(reasons))
    items.append(Item(id="t:0", uri="note", modality="text", text="not an image"))
    model = load()
    inputs, vectors = run_hooks(pm, model, items)
    assert not isinstance(inputs[0], Failed) and vectors.shape == (1, 16)
    for item, value in zip(items[1:-1], inputs[1:-1]):
        assert isinstance(value, Failed) and reasons[item.uri] in value.reason
    assert "not text" in inputs[-1].reason


def test_preprocess_is_thread_safe(load, good_images, pm):
    folder, expected = good_images
    items = image_items(folder, sorted(expected))
    model = load()
    reference = pm.call("preprocess", "resnet", model=model, items=items, mode="document")
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(
            pool.map(lambda _: pm.call("preprocess", "resnet", model=model, items=items, mode="document"), range(8))
        )
    for result in results:
        assert all(np.array_equal(a, b) for a, b in zip(result, reference))


# -- pipelines -------------------------------------------------------------------------------


def _config(tmp_path, source, model, **store):
    return {"source": {"path": source}, "model": model, "store": lite_store(tmp_path, **store)}


def test_a_folder_with_bad_images_stores_every_good_one(tmp_path, tiny_resnet, good_images, bad_images, pm):
    import shutil

    folder = tmp_path / "mixed"
    shutil.copytree(good_images[0], folder)
    for name in bad_images[1]:
        shutil.copy(bad_images[0] / name, folder / name)
    config = _config(
        tmp_path, "mixed", {"plugin": "resnet", "name": str(tiny_resnet), "device": "cpu"}, metric="COSINE"
    )
    with Pipeline.from_dict(config, base_dir=tmp_path, pm=pm) as pipeline:
        summary = pipeline.run()
        assert summary.embedded == len(good_images[1]), summary.format()
        failed = {e.uri.rpartition("/")[2]: e for e in summary.failed}
        assert set(failed) == set(bad_images[1])
        for name, word in bad_images[1].items():
            assert failed[name].uri == f"mixed/{name}" and word in failed[name].reason, failed[name]
        assert "mixed/truncated.jpg" in summary.format()
        hits = pipeline.search(file=folder / "exif_rotated.jpg", k=2)  # an image file as the query
        assert hits[0].uri == "mixed/exif_rotated.jpg" and hits[0].modality == "image"
        assert hits[0].score > 0.999


def test_photos_exact_and_near_duplicates(tmp_path, tiny_resnet, photos, pm):
    """Exact copies must come back first; near duplicates are measured (recall@1) and printed."""
    from PIL import Image, ImageOps

    config = _config(
        tmp_path, str(photos), {"plugin": "resnet", "name": str(tiny_resnet), "device": "cpu"}, metric="COSINE"
    )
    variants = tmp_path / "variants"
    variants.mkdir()
    queries: dict[str, list] = {"resized": [], "flipped": [], "jpeg q=50": []}
    for path in sorted(photos.glob("*.png")):
        image = Image.open(path).convert("RGB")
        half = image.resize((image.width // 2, image.height // 2), Image.Resampling.BILINEAR)
        half.save(variants / f"{path.stem}-resized.png")
        ImageOps.mirror(image).save(variants / f"{path.stem}-flipped.png")
        image.save(variants / f"{path.stem}-q50.jpg", quality=50)
        queries["resized"].append((variants / f"{path.stem}-resized.png", path.name))
        queries["flipped"].append((variants / f"{path.stem}-flipped.png", path.name))
        queries["jpeg q=50"].append((variants / f"{path.stem}-q50.jpg", path.name))
    with Pipeline.from_dict(config, base_dir=tmp_path, pm=pm) as pipeline:
        summary = pipeline.run()
        assert summary.embedded == len(queries["resized"]) and not summary.failed
        exact = pipeline.search(file=sorted(photos.glob("*.png")), k=1)
        for path, hits in zip(sorted(photos.glob("*.png")), exact):
            assert hits[0].uri.endswith(path.name) and hits[0].score > 0.999
        recall = {}
        for kind, pairs in queries.items():
            hits = pipeline.search(file=[q for q, _ in pairs], k=1)
            recall[kind] = sum(h[0].uri.endswith(name) for h, (_, name) in zip(hits, pairs)) / len(pairs)
        assert pipeline.run().skipped == summary.embedded  # nothing changed, nothing embedded
    print(f"\nnear-duplicate recall@1 over {len(queries['resized'])} photos, tiny random ResNet: "
          + ", ".join(f"{k} {v:.2f}" for k, v in recall.items()))  # fmt: skip


def test_asking_resnet_for_text_fails_at_check_time(tmp_path, capsys):
    from embedline import cli

    (tmp_path / "embed.toml").write_text(
        textwrap.dedent("""
        [source]
        path = "."
        [model]
        plugin = "resnet"
        modalities = ["image", "text"]
        [store]
        uri = "x.db"
    """)
    )
    assert cli.main(["check", str(tmp_path / "embed.toml")]) == 1
    err = capsys.readouterr().err
    assert "model.modalities" in err and "cannot embed text" in err


def test_routing_texts_to_minilm_and_images_to_resnet(tmp_path, tiny_resnet, good_images, pm):
    import shutil

    minilm_testing = pytest.importorskip("embedline_minilm.testing", reason="routes texts to the minilm plugin")

    folder = tmp_path / "mixed"
    folder.mkdir()
    for name in ("rgb.jpg", "rgba.png", "animated.gif"):
        shutil.copy(good_images[0] / name, folder / name)
    shutil.copy(good_images[0] / "palette.png", folder / "actually-an-image.txt")  # bytes decide, not the name
    (folder / "a.txt").write_text("the cat sits on the table\n\nthe dog runs in the park")
    (folder / "b.md").write_text("a red car near the river")
    minilm = minilm_testing.build_tiny_sentence_transformer(tmp_path / "st", dim=32)
    config = {
        "source": {"path": "mixed"},
        "models": [
            {"plugin": "minilm", "name": str(minilm), "device": "cpu", "collection": "texts"},
            {"plugin": "resnet", "name": str(tiny_resnet), "device": "cpu", "collection": "images"},
        ],
        "store": lite_store(tmp_path),
    }
    with Pipeline.from_dict(config, base_dir=tmp_path, pm=pm) as pipeline:
        summary = pipeline.run()
        assert summary.embedded == 6 and not summary.failed, summary.format()
        assert pipeline.store.count("texts") == 2 and pipeline.store.count("images") == 4
        image_hits = pipeline.search(file=folder / "actually-an-image.txt", k=4)
        assert {h.uri for h in image_hits} == {
            f"mixed/{n}" for n in ("rgb.jpg", "rgba.png", "animated.gif", "actually-an-image.txt")
        }
        assert image_hits[0].uri == "mixed/actually-an-image.txt"
        text_hits = pipeline.search("a cat on a table", k=3)
        assert {h.modality for h in text_hits} == {"text"}
