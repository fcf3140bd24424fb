"""``backend = "torchhub"``: ``resnet50`` from ``pytorch/vision`` through ``torch.hub``, classifier removed.

``name`` is a hub repository (``pytorch/vision``, the default, or ``owner/repo[:ref]``) or a local
folder holding a ``hubconf.py`` (a clone of pytorch/vision for offline machines).  The weights come
from torchvision's own URL and cache (``torch.hub.get_dir()/checkpoints``), loaded with
``weights_only=True`` by torchvision on torch >= 2.6.  The pixels are prepared exactly as
torchvision's ``ImageClassification`` preset does for PIL input (bilinear resize of the short side,
centre crop, ImageNet mean/std), written out here so preprocessing needs no torchvision.
"""

from __future__ import annotations

import hashlib
import importlib.util
import socket
from pathlib import Path
from typing import Any

import numpy as np
from embedline.errors import ConfigError, ModelSourceError

DEFAULT_REPO = "pytorch/vision"
NO_TORCHVISION = (
    "the torchhub backend loads {repo}, which needs torchvision, and torchvision is not installed: "
    "`pip install torchvision` (the build matching your torch), or use the default "
    'backend = "transformers" with name = "microsoft/resnet-50" or a folder saved from it'
)
_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32).reshape(3, 1, 1)
_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32).reshape(3, 1, 1)


def load(spec, device: str) -> tuple[Any, str, str, dict[str, Any]]:
    import torch

    from embedline_resnet._backend import Backbone

    name = spec.name or DEFAULT_REPO
    entry, weights = spec.option("hub_model"), spec.option("hub_weights")
    location, source = _locate(name, spec)
    try:
        net = torch.hub.load(
            location, entry, source=source, weights=weights, trust_repo=True, skip_validation=True, verbose=False
        )
    except ImportError as exc:
        if "torchvision" in str(exc):
            raise ModelSourceError(f"model {name!r}: " + NO_TORCHVISION.format(repo=name)) from None
        raise ModelSourceError(f"model {name!r}: torch hub entry {entry!r} failed to import: {exc}") from exc
    except Exception as exc:  # network, missing weights, bad entry point: one line naming the model
        raise ModelSourceError(
            f"model {name!r}: torch hub could not load {entry!r} (weights {weights!r}): {type(exc).__name__}: "
            f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}. Offline, put the weight file in "
            f"{Path(torch.hub.get_dir()) / 'checkpoints'} and a clone of the repository in a folder given as name"
        ) from exc
    for head in ("fc", "classifier", "head"):  # the classifier goes; the pooled features stay
        if isinstance(getattr(net, head, None), torch.nn.Module):
            setattr(net, head, torch.nn.Identity())
            break
    net = net.to(device).eval()
    crop = spec.option("image_size") or 224
    resize = round(crop * (232 if "V2" in weights.upper() else 256) / 224)  # torchvision's presets

    def prepare(images: list[Any]) -> np.ndarray:
        return np.stack([_pixels(image, resize, crop) for image in images])

    def features(pixels: Any) -> Any:
        return net(pixels).flatten(1)

    settings = {
        "backend": "torchhub",
        "hub_model": entry,
        "hub_weights": weights,
        "pooling": "pooler",
        "processor": f"resize={resize} bilinear crop={crop} imagenet-mean-std",
    }
    return Backbone(net=net, prepare=prepare, features=features, device=device), name, _params_hash(net), settings


def _locate(name: str, spec) -> tuple[str, str]:
    """(repo or folder, ``torch.hub`` source), failing fast when nothing can be loaded."""
    import torch

    folder = Path(name).expanduser()
    if not folder.is_absolute():
        folder = Path(spec.base_dir) / folder
    if folder.is_dir():
        if not (folder / "hubconf.py").is_file():
            raise ModelSourceError(f"model {name!r}: {folder} has no hubconf.py (not a torch hub repository)")
        return str(folder), "local"
    if name.startswith((".", "/", "~")):
        raise ModelSourceError(f"model {name!r}: local path {folder} does not exist")
    repo = name.split(":")[0]
    if repo == DEFAULT_REPO and importlib.util.find_spec("torchvision") is None:
        raise ModelSourceError(f"model {name!r}: " + NO_TORCHVISION.format(repo=name))
    if repo != DEFAULT_REPO and not spec.trust_remote_code:
        raise ConfigError(
            f"loading {name!r} runs that repository's hubconf.py; set trust_remote_code = true if you trust it",
            key=f"{spec.key}.trust_remote_code",
        )
    owner, _, rest = name.partition("/")
    ref = rest.partition(":")[2] or "main"
    cached = Path(torch.hub.get_dir()) / "_".join([owner, rest.partition(":")[0], ref.replace("/", "_")])
    if cached.is_dir():  # already downloaded once: no GitHub round trip
        return str(cached), "local"
    if not _github_reachable():
        raise ModelSourceError(
            f"model {name!r} is not in the torch hub cache ({cached}) and github.com is unreachable; "
            f"clone the repository on a machine with network and set name to that folder"
        )
    return name, "github"


def _github_reachable(timeout: float = 3.0) -> bool:
    try:
        with socket.create_connection(("github.com", 443), timeout=timeout):
            return True
    except OSError:
        return False


def _pixels(image: Any, resize: int, crop: int) -> np.ndarray:
    """torchvision ``ImageClassification`` for a PIL image: resize, centre crop, scale, normalise."""
    from PIL import Image

    width, height = image.size
    if width <= height:
        size = (resize, max(1, int(resize * height / width)))
    else:
        size = (max(1, int(resize * width / height)), resize)
    image = image.resize(size, Image.Resampling.BILINEAR)
    left = round((size[0] - crop) / 2.0)
    top = round((size[1] - crop) / 2.0)
    image = image.crop((left, top, left + crop, top + crop))
    array = np.asarray(image, dtype=np.float32).transpose(2, 0, 1) / 255.0
    return (array - _MEAN) / _STD


def _params_hash(net: Any) -> str:
    """sha256 over the parameters and buffers: the exact weights, wherever they came from."""
    import torch

    digest = hashlib.sha256()
    for key, tensor in sorted(net.state_dict().items()):
        digest.update(key.encode() + b"\0")
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())  # any dtype
    return "params-sha256:" + digest.hexdigest()
