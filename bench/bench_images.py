"""Images per second through embedline's resnet plugin vs a plain transformers loop, same files.

    python bench/bench_images.py                          # tiny random ResNet, 256 generated JPEGs
    python bench/bench_images.py --random-resnet50 -n 64  # ResNet-50 architecture (random weights)
    python bench/bench_images.py --model DIR --images DIR # a real model folder, your own images

Both sides do the same work on the same files with the same model folder and batch size:
embedline: ``EmbeddingModel.embed_items`` over file items (decode with embedline_media.image, the
model's image processor, forward pass, normalise); plain: ``PIL.Image.open(...).convert("RGB")``,
the same processor, ``AutoModel`` forward, normalise.  Runs alternate (so drift hits both sides),
the first run of each side is a warm-up, and medians are reported with their ratio
(embedline / plain; the goal is >= 0.95), and the median ratio of adjacent runs.  Both run single-threaded in Python, as embed_items does.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path


def make_images(folder: Path, n: int, size: int, seed: int = 0) -> list[Path]:
    """``n`` smooth random JPEGs (blobs on gradients: realistic to compress, unlike pure noise)."""
    import numpy as np
    from PIL import Image, ImageFilter

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    y, x = np.mgrid[0:size, 0:size] / size
    for i in range(n):
        base = np.stack([x * rng.uniform(0, 255), y * rng.uniform(0, 255), (x + y) / 2 * rng.uniform(0, 255)], axis=-1)
        noise = rng.normal(0, 40, (size // 8, size // 8, 3))
        noise = np.asarray(Image.fromarray(np.clip(noise + 128, 0, 255).astype("uint8")).resize((size, size)))
        image = Image.fromarray(np.clip(base + noise - 128, 0, 255).astype("uint8")).filter(ImageFilter.GaussianBlur(1))
        paths.append(folder / f"img{i:04d}.jpg")
        image.save(paths[-1], quality=90)
    return paths


def build_model(folder: Path, resnet50: bool) -> Path:
    if not resnet50:
        from embedline_resnet.testing import build_tiny_resnet

        return build_tiny_resnet(folder, image_size=224)
    import torch
    from transformers import ConvNextImageProcessorPil, ResNetConfig, ResNetForImageClassification

    torch.manual_seed(0)
    ResNetForImageClassification(ResNetConfig()).eval().save_pretrained(folder)  # ResNet-50 layout
    ConvNextImageProcessorPil(size={"shortest_edge": 224}).save_pretrained(folder)
    return folder


def embedline_side(model_dir: Path, batch_size: int):
    from embedline import load_model
    from embedline.pipeline import as_item

    model = load_model({"plugin": "resnet", "name": str(model_dir), "device": "cpu", "batch_size": batch_size,
                        "modalities": ["image"]})  # fmt: skip

    def run(paths: list[Path]):
        items = [as_item(p) for p in paths]  # reading + hashing the files: outside the embedding path
        start, cpu = time.perf_counter(), time.process_time()
        result = model.embed_items(items)
        elapsed = (time.perf_counter() - start, time.process_time() - cpu)
        assert not result.failures, result.failures[:3]
        return elapsed, result.vectors

    return run


def plain_side(model_dir: Path, batch_size: int):
    import torch
    from PIL import Image
    from transformers import AutoImageProcessor, AutoModel
    from transformers.utils import logging

    logging.set_verbosity_error()  # AutoModel on a classifier checkpoint reports the unused head
    processor = AutoImageProcessor.from_pretrained(model_dir, local_files_only=True, backend="pil")
    net = AutoModel.from_pretrained(model_dir, local_files_only=True).eval()

    def run(paths: list[Path]):
        start, cpu = time.perf_counter(), time.process_time()
        blocks = []
        for i in range(0, len(paths), batch_size):
            images = [Image.open(p).convert("RGB") for p in paths[i : i + batch_size]]
            with torch.inference_mode():
                pixels = processor(images=images, return_tensors="pt")["pixel_values"]
                features = net(pixel_values=pixels).pooler_output.flatten(1)
                blocks.append(torch.nn.functional.normalize(features, dim=-1).numpy())
        elapsed = (time.perf_counter() - start, time.process_time() - cpu)
        import numpy as np

        return elapsed, np.concatenate(blocks)

    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="a transformers image model folder (default: build one)")
    parser.add_argument("--random-resnet50", action="store_true", help="build a ResNet-50 layout with random weights")
    parser.add_argument("--images", type=Path, help="a folder of images (default: generate -n JPEGs)")
    parser.add_argument("-n", type=int, default=256, help="images to generate (default 256)")
    parser.add_argument("--size", type=int, default=224, help="side of generated images (default 224)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per side after one warm-up (default 5)")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

    import torch
    import transformers

    print("command:", shlex.join([Path(sys.executable).name, *sys.argv]))
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"machine: {platform.platform()}, {os.cpu_count()} cores (load average {load}), torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), transformers {transformers.__version__}, Python {platform.python_version()}")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model or build_model(Path(tmp) / "model", args.random_resnet50)
        if args.images:
            paths = sorted(p for p in args.images.rglob("*") if p.is_file())
        else:
            paths = make_images(Path(tmp) / "images", args.n, args.size)
        what = (
            "random ResNet-50 layout"
            if args.random_resnet50
            else "tiny random ResNet"
            if not args.model
            else str(model_dir)
        )
        print(f"model: {what}; {len(paths)} images; batch size {args.batch_size}; {args.repeats} timed runs per side")
        sides = {
            "embedline": embedline_side(model_dir, args.batch_size),
            "plain": plain_side(model_dir, args.batch_size),
        }
        vectors = {name: run(paths)[1] for name, run in sides.items()}  # warm-up, and the outputs to compare
        diff = float(abs(vectors["embedline"] - vectors["plain"]).max())
        times: dict[str, list[float]] = {name: [] for name in sides}
        cpu: dict[str, list[float]] = {name: [] for name in sides}
        for r in range(args.repeats):
            order = list(sides) if r % 2 == 0 else list(reversed(sides))
            for name in order:
                (wall, used), _ = sides[name](paths)
                times[name].append(wall)
                cpu[name].append(used)
    rate = {name: len(paths) / statistics.median(ts) for name, ts in times.items()}
    for name, ts in times.items():
        runs = ", ".join(f"{len(paths) / t:.3g}" for t in ts)
        print(f"{name:>9}: median {rate[name]:.1f} images/s (runs: {runs})")
    print(f"    ratio: {rate['embedline'] / rate['plain']:.3f} (embedline / plain; goal >= 0.95)")
    paired = statistics.median(p / e for e, p in zip(times["embedline"], times["plain"]))
    print(f"    ratio of adjacent runs, median: {paired:.3f} (less sensitive to a machine that gets busier)")
    by_cpu = statistics.median(cpu["plain"]) / statistics.median(cpu["embedline"])
    print(f"    ratio of CPU seconds used (process time, all threads): {by_cpu:.3f}")
    print(f"max |difference| between the two sides' vectors: {diff:.2e}")
    results = Path(__file__).resolve().parent / "results"  # git-ignored, as for the other bench scripts
    results.mkdir(exist_ok=True)
    record = {
        "bench": "images",
        "command": shlex.join([Path(sys.executable).name, *sys.argv]),
        "machine": {"cores": os.cpu_count(), "loadavg": load, "torch": torch.__version__},
        "images": len(paths),
        "batch_size": args.batch_size,
        "seconds": times,
        "cpu_seconds": cpu,
        "images_per_second": rate,
        "ratio": rate["embedline"] / rate["plain"],
        "paired_ratio": paired,
        "max_abs_difference": diff,
    }
    (results / "images.json").write_text(json.dumps(record, indent=2))
    print("results: bench/results/images.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
