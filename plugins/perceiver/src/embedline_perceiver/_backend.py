"""The heavy half of the perceiver plugin: loading, clip decoding, the encoder and pooling."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from embedline.contracts import MODES, Failed, Item, Model
from embedline.errors import ConfigError, ModelSourceError
from embedline.toolkit import parse_device, resolve_device, resolve_model_source

from embedline_perceiver import DEFAULT_NAME
from embedline_perceiver._clips import Clip, Layout, read_clip

HINT = (
    "no offline copy of deepmind/multimodal-perceiver ships on PyPI; on a machine with access to the hub run "
    "`huggingface-cli download deepmind/multimodal-perceiver --local-dir models/multimodal-perceiver` and set "
    'name = "./models/multimodal-perceiver"'
)
POOLING = "mean over latents, then over the clip's windows"
WINDOWS_PER_PASS = 4  # model windows per forward pass: one 224 px window is ~10 MB of input


# -- loading ---------------------------------------------------------------------------------


def _device(requested: str, key: str) -> str:
    """The core's device rules (:func:`embedline.toolkit.resolve_device`), less mps: ``auto`` never picks it."""
    if parse_device(requested, key)[0] == "mps":
        raise ConfigError("device 'mps' is not available on this machine; use \"auto\" or \"cpu\"", key=f"{key}.device")
    device = resolve_device(requested, key)
    return "cpu" if device == "mps" else device


def load(spec) -> Model:
    import torch
    from transformers import PerceiverForMultimodalAutoencoding

    name = spec.name or DEFAULT_NAME
    hint = HINT if "multimodal-perceiver" in name else ""
    resolved = resolve_model_source(name, revision=spec.revision, base_dir=spec.base_dir, hint=hint)
    device = _device(spec.device, spec.key)
    try:
        # float32 whatever the checkpoint stores (half precision is slow or missing on CPU)
        if resolved.path is not None:
            whole = PerceiverForMultimodalAutoencoding.from_pretrained(
                str(resolved.path), local_files_only=True, dtype=torch.float32
            )
        else:
            whole = PerceiverForMultimodalAutoencoding.from_pretrained(
                resolved.hub_id, revision=spec.revision, dtype=torch.float32
            )
    except Exception as exc:  # any loader failure becomes one line naming the model
        first = (str(exc).strip().splitlines() or [""])[0]
        raise ModelSourceError(
            f"model {resolved.source!r}: cannot load a multimodal Perceiver from {resolved.location}: "
            f"{type(exc).__name__}: {first}"
        ) from exc
    config = whole.config
    if "PerceiverForMultimodalAutoencoding" not in (config.architectures or ["PerceiverForMultimodalAutoencoding"]):
        raise ModelSourceError(
            f"model {resolved.source!r} is a {', '.join(config.architectures)}, not a multimodal (video+audio) Perceiver"
        )
    perceiver = whole.perceiver
    # Only the input preprocessor, the latents and the encoder are used: drop the decoders.
    perceiver.decoder = None
    perceiver.output_postprocessor = None
    perceiver.eval().to(device)

    layout = Layout(
        num_frames=spec.option("num_frames") or int(config.num_frames),
        image_size=spec.option("image_size") or _side(config.image_size),
        fps=float(spec.option("fps") or 25.0),
        audio_samples_per_frame=int(config.audio_samples_per_frame),
    )
    if (layout.num_frames * layout.audio_samples_per_frame) % int(config.samples_per_patch):
        raise ConfigError(
            f"num_frames x {layout.audio_samples_per_frame} audio samples must be a multiple of the model's "
            f"{config.samples_per_patch} samples per patch",
            key=f"{spec.key}.num_frames",
        )
    clip = float(spec.option("clip_seconds") or 2.0)
    overlap = float(spec.option("clip_overlap") or 0.0)
    return Model(
        dim=int(config.d_latents),
        modalities=("video",),
        source=resolved.source,
        revision=resolved.revision,
        impl=_Encoder(perceiver, device, int(config.num_labels)),
        normalized=bool(spec.normalize),
        segment=(clip, overlap),
        settings={
            "num_frames": layout.num_frames,
            "image_size": layout.image_size,
            "fps": layout.fps,
            "audio_rate": layout.audio_rate,
            "crop": "centre square",
            "pooling": POOLING,
        },
        state={"layout": layout},
    )


def _side(size: Any) -> int:
    return int(size[0] if isinstance(size, (list, tuple)) else size)


class _Encoder:
    """The Perceiver's input preprocessor, latents and encoder: windows -> mean latent per window."""

    def __init__(self, perceiver: Any, device: str, num_labels: int):
        self.perceiver, self.device, self.num_labels = perceiver, device, num_labels

    def __call__(self, images: np.ndarray, audio: np.ndarray) -> np.ndarray:
        import torch

        p = self.perceiver
        with torch.inference_mode():
            inputs = {
                "image": torch.from_numpy(images).to(self.device),
                "audio": torch.from_numpy(audio).to(self.device),
                # The label is masked out entirely (mask probability 1) by the model's own
                # preprocessor; it still needs a tensor of the right shape.
                "label": torch.zeros((len(images), self.num_labels), device=self.device),
            }
            tokens, _, _ = p.input_preprocessor(inputs)
            latents = p.embeddings(batch_size=len(images))
            # All inputs are real (no padding), so no attention mask: as PerceiverModel.forward does
            # with an all-ones mask.
            states = p.encoder(latents, attention_mask=None, inputs=tokens, inputs_mask=None, return_dict=True)
            return states.last_hidden_state.mean(dim=1).float().cpu().numpy()


# -- preprocess / embed ----------------------------------------------------------------------


def preprocess(model: Model, items: Sequence[Item], mode: str) -> list[Any]:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    from embedline_media import MediaError
    from embedline_media.video import video_duration

    layout: Layout = model.state["layout"]
    out: list[Any] = []
    for item in items:
        if item.modality != "video" or item.path is None:
            out.append(Failed(f"{model.plugin or 'perceiver'} embeds video files, not {item.modality}"))
            continue
        try:
            start = float(item.metadata.get("start", 0.0) or 0.0)
            end = item.metadata.get("end")
            if end is None:  # a whole file (a query): its first clip
                total = video_duration(item.path)
                end = min(total, start + model.segment[0])
                if total > end:
                    model.count("truncated")
            clip = read_clip(item.path, start, float(end), layout)
        except (MediaError, OSError) as exc:
            out.append(Failed(str(exc)))
            continue
        if clip.no_audio:
            model.count("no_audio")
        out.append(clip)
    return out


def embed(model: Model, inputs: Sequence[Clip], mode: str) -> np.ndarray:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if not inputs:
        return np.zeros((0, model.dim), dtype=np.float32)
    images = np.concatenate([c.images for c in inputs])
    audio = np.concatenate([c.audio for c in inputs])
    per_window = np.concatenate(
        [model.impl(images[i : i + WINDOWS_PER_PASS], audio[i : i + WINDOWS_PER_PASS]) for i in range(0, len(images), WINDOWS_PER_PASS)]
    )
    bounds = np.cumsum([0] + [len(c.images) for c in inputs])
    vectors = np.stack([per_window[a:b].mean(axis=0) for a, b in zip(bounds[:-1], bounds[1:])]).astype(np.float32)
    if model.normalized:
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    return vectors
