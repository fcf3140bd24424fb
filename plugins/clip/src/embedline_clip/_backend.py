"""The heavy half of the clip plugin: transformers and torch, loaded on first use.

Texts are tokenized in ``preprocess`` (cut to CLIP's 77-token context) with a private copy of
the model's tokenizer, kept in ``model.state``, configured once at load and only read afterwards:
the model's own tokenizer changes its truncation settings on every call, which breaks when two
threads share it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import attrs
import numpy as np
from embedline.contracts import Failed, Item, Model
from embedline.errors import ModelSourceError
from embedline.toolkit import ResolvedSource, pin_downloaded, resolve_device, resolve_model_source
from embedline_media.frames import describe_processor, embed_frames, preprocess_items, video_settings

from embedline_clip import DEFAULT_NAME, plugin_info

HINT = (
    "no CLIP weights ship on PyPI; on a machine with the hub save them once with "
    "CLIPModel.from_pretrained(ID).save_pretrained(DIR) and CLIPProcessor.from_pretrained(ID).save_pretrained(DIR), "
    "then set name = DIR"
)
_PROCESSOR_KEYS = (
    "do_resize", "size", "resample", "do_center_crop", "crop_size",
    "do_rescale", "rescale_factor", "do_normalize", "image_mean", "image_std",
)  # fmt: skip


@attrs.frozen
class Clip:
    net: Any  # CLIPModel, eval mode, on ``device``
    image_processor: Any
    device: str
    context: int  # tokens per text, start and end tokens included
    pad_id: int


@attrs.frozen
class TextInput:
    ids: np.ndarray  # int64 token ids, already truncated to the context
    truncated: bool = False


# -- loading ---------------------------------------------------------------------------------


def load(spec) -> Model:
    name = spec.name or DEFAULT_NAME
    hint = HINT if "clip" in name.lower() else ""
    resolved = resolve_model_source(name, revision=spec.revision, base_dir=spec.base_dir, hint=hint)
    device = resolve_device(spec.device, spec.key)
    net, image_processor, tokenizer = _load_parts(name, resolved, spec)
    net = net.to(device).eval()
    if resolved.hub_id is not None:  # fetched just now: pin the commit that is now cached
        resolved = pin_downloaded(resolved, revision=spec.revision, base_dir=spec.base_dir)

    context = int(net.config.text_config.max_position_embeddings)
    if 0 < (tokenizer.model_max_length or 0) < context:
        context = int(tokenizer.model_max_length)
    counter = _private_tokenizer(tokenizer, context)
    segment, video = video_settings(spec, plugin_info.modalities)
    model = Model(
        dim=int(net.config.projection_dim),
        modalities=("image", "text", "video") if segment else ("image", "text"),
        source=resolved.source,
        revision=resolved.revision,
        impl=Clip(net, image_processor, device, context, int(tokenizer.pad_token_id)),
        normalized=bool(spec.normalize),
        settings={
            "processor": describe_processor(image_processor, _PROCESSOR_KEYS),
            "context_length": context,
            # Tokenizer files are not weights: a changed vocabulary must still change the identity.
            "tokenizer": "sha256:" + hashlib.sha256(counter.to_str().encode()).hexdigest()[:16],
            **video,
        },
        segment=segment,
    )
    model.state["tokenizer"] = counter
    return model


def _load_parts(name: str, resolved: ResolvedSource, spec) -> tuple[Any, Any, Any]:
    from transformers import AutoConfig, AutoImageProcessor, AutoTokenizer, CLIPModel

    kwargs: dict[str, Any] = {"trust_remote_code": spec.trust_remote_code}
    if resolved.path is not None:
        kwargs["local_files_only"] = True
    else:
        kwargs["revision"] = spec.revision
    location = resolved.location
    try:
        config = AutoConfig.from_pretrained(location, **kwargs)
        if config.model_type != "clip":
            raise ModelSourceError(
                f"model {name!r} is a {config.model_type!r} model, not CLIP; the clip plugin loads CLIPModel checkpoints"
            )
        net = CLIPModel.from_pretrained(location, **kwargs)
        try:  # the PIL backend gives the same pixels with or without torchvision
            image_processor = AutoImageProcessor.from_pretrained(location, backend="pil", **kwargs)
        except (ValueError, KeyError):
            image_processor = AutoImageProcessor.from_pretrained(location, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(location, **kwargs)
    except ModelSourceError:
        raise
    except Exception as exc:  # any loader failure becomes one line naming the model
        text = str(exc).strip()
        raise ModelSourceError(
            f"model {name!r}: cannot load a CLIP model from {location}: {type(exc).__name__}: "
            f"{text.splitlines()[0] if text else ''}"
        ) from exc
    if getattr(tokenizer, "backend_tokenizer", None) is None:
        raise ModelSourceError(
            f"model {name!r}: needs a fast (tokenizers) CLIP tokenizer, got {type(tokenizer).__name__}"
        )
    return net, image_processor, tokenizer


def _private_tokenizer(tokenizer: Any, context: int) -> Any:
    from tokenizers import Tokenizer

    counter = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    counter.enable_truncation(max_length=context)
    counter.no_padding()
    return counter


# -- preprocess / embed ----------------------------------------------------------------------


def preprocess(model: Model, items: Sequence[Item], mode: str) -> list[Any]:
    clip: Clip = model.impl
    out: list[Any] = [None] * len(items)
    texts: list[tuple[int, str]] = []
    media: list[tuple[int, Item]] = []
    for i, item in enumerate(items):
        if item.modality == "text":
            if item.text is None or not item.text.strip():
                out[i] = Failed("no text to embed (empty)")
            else:
                texts.append((i, item.text))
        else:
            media.append((i, item))
    if texts:
        encodings = model.state["tokenizer"].encode_batch([t for _, t in texts])
        for (i, _), encoding in zip(texts, encodings):
            out[i] = TextInput(np.asarray(encoding.ids, dtype=np.int64), truncated=bool(encoding.overflowing))
    if media:

        def prepare(images: list[Any]) -> np.ndarray:
            pixels = clip.image_processor(images=images, return_tensors="np")["pixel_values"]
            return np.asarray(pixels, dtype=np.float32)

        for (i, _), value in zip(media, preprocess_items(model, [it for _, it in media], prepare)):
            out[i] = value
    return out


def embed(model: Model, inputs: Sequence[Any], mode: str) -> np.ndarray:
    clip: Clip = model.impl
    out = np.zeros((len(inputs), model.dim), dtype=np.float32)
    text_rows = [i for i, x in enumerate(inputs) if isinstance(x, TextInput)]
    pixel_rows = [i for i, x in enumerate(inputs) if not isinstance(x, TextInput)]
    if text_rows:
        out[text_rows] = _embed_texts(model, clip, [inputs[i].ids for i in text_rows])
    if pixel_rows:

        def features(pixels: Any) -> Any:
            return clip.net.get_image_features(pixel_values=pixels).pooler_output

        out[pixel_rows] = embed_frames(model, [inputs[i] for i in pixel_rows], features, clip.device)
    # Counted here, once the batch has worked, not in preprocess: preprocess runs in worker threads
    # (Model.count is a plain dict update) and is repeated item by item when a batch fails.
    truncated = sum(1 for i in text_rows if inputs[i].truncated)
    if truncated:
        model.count("truncated", truncated)
    return out


def _embed_texts(model: Model, clip: Clip, sequences: list[np.ndarray]) -> np.ndarray:
    """Pad to the longest text of the batch (as the tokenizer's ``padding=True`` does) and embed."""
    import torch

    chunk = model.spec.batch_size if model.spec is not None else 32
    rows = []
    with torch.inference_mode():
        for start in range(0, len(sequences), chunk):
            part = sequences[start : start + chunk]
            width = max(len(s) for s in part)
            ids = np.full((len(part), width), clip.pad_id, dtype=np.int64)
            mask = np.zeros((len(part), width), dtype=np.int64)
            for row, seq in enumerate(part):
                ids[row, : len(seq)] = seq
                mask[row, : len(seq)] = 1
            features = clip.net.get_text_features(
                input_ids=torch.from_numpy(ids).to(clip.device), attention_mask=torch.from_numpy(mask).to(clip.device)
            ).pooler_output.float()
            if model.normalized:
                features = torch.nn.functional.normalize(features, dim=-1)
            rows.append(features.cpu())
    return torch.cat(rows).numpy()
