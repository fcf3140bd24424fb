"""The heavy half of the resnet plugin: transformers and torch, loaded on first use.

``Model.impl`` is a :class:`Backbone`: the network, a thread-safe ``prepare`` (PIL images to a
float32 ``(N, 3, H, W)`` array) and ``features`` (a pixel tensor to ``(N, dim)`` vectors).  The
torch hub backend (``_torchhub``) builds the same object, so preprocess and embed do not care.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import attrs
import numpy as np
from embedline.contracts import Item, Model
from embedline.errors import ConfigError, ModelSourceError
from embedline.toolkit import pin_downloaded, resolve_device, resolve_model_source
from embedline_media.frames import describe_processor, embed_frames, preprocess_items, video_settings

from embedline_resnet import DEFAULT_NAME, plugin_info

HINT = (
    "no ResNet weights ship on PyPI; on a machine with the hub save them once with "
    "AutoModelForImageClassification.from_pretrained('microsoft/resnet-50').save_pretrained(DIR) and "
    "AutoImageProcessor.from_pretrained('microsoft/resnet-50').save_pretrained(DIR), then set name = DIR"
)
# Processor settings that change the pixels a model sees; they go into the fingerprint because a
# folder's revision hashes only its weight files, not preprocessor_config.json.
_PROCESSOR_KEYS = (
    "do_resize", "size", "resample", "crop_pct", "do_center_crop", "crop_size",
    "do_rescale", "rescale_factor", "do_normalize", "image_mean", "image_std",
)  # fmt: skip


@attrs.frozen
class Backbone:
    net: Any  # torch.nn.Module, eval mode, on ``device``
    prepare: Callable[[list[Any]], np.ndarray]
    features: Callable[[Any], Any]
    device: str
    processor: Any = None


# -- loading ---------------------------------------------------------------------------------


def load(spec) -> Model:
    device = resolve_device(spec.device, spec.key)
    if spec.option("backend") == "torchhub":
        from embedline_resnet import _torchhub

        backbone, source, revision, settings = _torchhub.load(spec, device)
    else:
        backbone, source, revision, settings = _load_transformers(spec, device)
    dim = _probe_dim(backbone, source)
    segment, video = video_settings(spec, plugin_info.modalities)
    return Model(
        dim=dim,
        modalities=("image", "video") if segment else ("image",),
        source=source,
        revision=revision,
        impl=backbone,
        normalized=bool(spec.normalize),
        settings={**settings, **video},
        segment=segment,
    )


def _load_transformers(spec, device: str) -> tuple[Backbone, str, str, dict[str, Any]]:
    name = spec.name or DEFAULT_NAME
    hint = HINT if "resnet" in name.lower() else ""
    resolved = resolve_model_source(name, revision=spec.revision, base_dir=spec.base_dir, hint=hint)
    kwargs: dict[str, Any] = {"trust_remote_code": spec.trust_remote_code}
    if resolved.path is not None:
        kwargs["local_files_only"] = True
    else:
        kwargs["revision"] = spec.revision
    location = resolved.location
    try:
        net, missing = _load_network(location, kwargs, name)
        net = net.to(device).eval()
        processor = _load_processor(location, kwargs, spec.option("image_size"), spec.key)
    except (ConfigError, ModelSourceError):
        raise
    except Exception as exc:  # any loader failure becomes one line naming the model
        raise ModelSourceError(
            f"model {name!r}: cannot load a transformers image model from {location}: "
            f"{type(exc).__name__}: {_first_line(exc)}"
        ) from exc
    if resolved.hub_id is not None:  # fetched just now: pin the commit that is now cached
        resolved = pin_downloaded(resolved, revision=spec.revision, base_dir=spec.base_dir)

    def prepare(images: list[Any]) -> np.ndarray:
        pixels = processor(images=images, return_tensors="np")["pixel_values"]
        return np.asarray(pixels, dtype=np.float32)

    # A pooler the checkpoint has no weights for is random (ViT saved without one): never use it.
    random_pooler = any("pooler" in k for k in missing)
    pooling = _choose_pooling(net, prepare, device, spec.option("pooling"), random_pooler, name, spec.key)

    def features(pixels: Any) -> Any:
        out = net(pixel_values=pixels)
        if pooling == "pooler":
            return out.pooler_output.flatten(1)  # ResNet: (N, 2048, 1, 1) -> (N, 2048)
        hidden = out.last_hidden_state
        return hidden.mean(dim=(2, 3)) if hidden.dim() == 4 else hidden.mean(dim=1)

    processor_line = describe_processor(processor, _PROCESSOR_KEYS)
    settings = {"backend": "transformers", "pooling": pooling, "processor": processor_line}
    backbone = Backbone(net=net, prepare=prepare, features=features, device=device, processor=processor)
    return backbone, resolved.source, resolved.revision, settings


def _load_network(location: str, kwargs: dict[str, Any], name: str) -> tuple[Any, list[str]]:
    """The backbone without a task head, and the names of weights the checkpoint lacked.

    Checkpoints saved as ``...ForImageClassification`` (microsoft/resnet-50 is one) are loaded whole
    and their base model taken: loading them with AutoModel works too, but prints a load report
    about the unused classifier on every run.  Missing weights other than a pooler mean random
    layers in the network: refused.
    """
    from transformers import AutoConfig, AutoModel, AutoModelForImageClassification

    config = AutoConfig.from_pretrained(location, **kwargs)
    architectures = getattr(config, "architectures", None) or []
    if any(a.endswith("ForImageClassification") for a in architectures):
        full, info = AutoModelForImageClassification.from_pretrained(location, output_loading_info=True, **kwargs)
        net = full.base_model
    else:
        net, info = AutoModel.from_pretrained(location, output_loading_info=True, **kwargs)
    missing = sorted(info.get("missing_keys") or ())
    unexplained = [k for k in missing if "pooler" not in k]
    if unexplained:
        raise ModelSourceError(
            f"model {name!r}: the checkpoint has no weights for {len(unexplained)} parameter(s) of "
            f"{type(net).__name__} (e.g. {unexplained[0]}); it is not a checkpoint of this architecture"
        )
    return net, missing


def _load_processor(location: str, kwargs: dict[str, Any], image_size: int | None, key: str) -> Any:
    """The model's image processor, PIL backend: the same pixels with or without torchvision."""
    from transformers import AutoImageProcessor

    def get(**overrides: Any) -> Any:
        try:
            return AutoImageProcessor.from_pretrained(location, backend="pil", **kwargs, **overrides)
        except (ValueError, KeyError):  # a processor with no PIL implementation
            return AutoImageProcessor.from_pretrained(location, **kwargs, **overrides)

    processor = get()
    if image_size is None:
        return processor
    config = processor.to_dict()
    size = config.get("size") or {}
    overrides: dict[str, Any] = {}
    if "shortest_edge" in size:
        overrides["size"] = {"shortest_edge": image_size}
    elif "height" in size or "width" in size:
        overrides["size"] = {"height": image_size, "width": image_size}
    if config.get("do_center_crop") and config.get("crop_size"):
        overrides["crop_size"] = {"height": image_size, "width": image_size}
    if not overrides:
        raise ConfigError(f"the model's image processor has no size to change ({size})", key=f"{key}.image_size")
    return get(**overrides)


def _choose_pooling(
    net: Any, prepare: Callable, device: str, requested: str, random_pooler: bool, name: str, key: str
) -> str:
    """``auto``: the pooled output when the network makes one (ResNet, ConvNeXt), else the mean."""
    import torch

    probe = torch.from_numpy(prepare([_blank()])).to(device)
    with torch.inference_mode():
        out = net(pixel_values=probe)
    has_pooler = getattr(out, "pooler_output", None) is not None and not random_pooler
    if requested == "pooler" and not has_pooler:
        why = "no trained pooler (its checkpoint has no pooler weights)" if random_pooler else "no pooled output"
        raise ConfigError(f'model {name!r} has {why}; use pooling = "mean" or "auto"', key=f"{key}.pooling")
    if requested == "auto":
        return "pooler" if has_pooler else "mean"
    return requested


def _probe_dim(backbone: Backbone, source: str) -> int:
    """The vector size, from one forward pass over a blank picture: exact for any backbone."""
    import torch

    pixels = backbone.prepare([_blank()])
    with torch.inference_mode():
        out = backbone.features(torch.from_numpy(pixels).to(backbone.device))
    if out.dim() != 2 or out.shape[0] != 1:
        raise ModelSourceError(f"model {source!r}: expected one vector per image, got shape {tuple(out.shape)}")
    return int(out.shape[1])


def _blank() -> Any:
    from PIL import Image

    return Image.new("RGB", (64, 64), (127, 127, 127))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


# -- preprocess / embed ----------------------------------------------------------------------


def preprocess(model: Model, items: Sequence[Item], mode: str) -> list[Any]:
    return preprocess_items(model, items, model.impl.prepare)


def embed(model: Model, inputs: Sequence[np.ndarray], mode: str) -> np.ndarray:
    if not inputs:
        return np.zeros((0, model.dim), dtype=np.float32)
    backbone: Backbone = model.impl
    return embed_frames(model, inputs, backbone.features, backbone.device)
