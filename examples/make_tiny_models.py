"""Build tiny random-weight models for the example pipelines, and the sample files they read.

    python examples/make_tiny_models.py                  # every model below
    python examples/make_tiny_models.py resnet clip      # some of them
    python examples/make_tiny_models.py all --out /tmp/models --images /tmp/images

Each model is saved to ``<out>/<name>`` (default ``examples/models/<name>``), the folder the example
pipelines point at, by its plugin's builder (``embedline_<plugin>.testing``).  The weights are random:
the pipelines run end to end, but hits mean nothing.  For real weights see docs/images.md.
Image models also get sample photos (public domain, shipped with scikit-image) in ``--images``;
whisper gets generated sounds (tones, noise, and espeak-ng speech when espeak-ng is installed) in
``--audio``, perceiver short synthetic videos with a tone in ``--video`` (docs/audio-video.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: model name -> "module:function" that builds it, in the plugin's testing module.  Add a line per model.
BUILDERS = {
    "resnet": "embedline_resnet.testing:build_tiny_resnet",
    "clip": "embedline_clip.testing:build_tiny_clip",
    "whisper": "embedline_whisper.testing:build_tiny_whisper",
    "perceiver": "embedline_perceiver.testing:build_tiny_perceiver",
}
#: model name -> sample files it needs (a writer below).
SAMPLES = {
    "resnet": "images",
    "clip": "images",
    "whisper": "audio",
    "perceiver": "video",
}
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "horse", "camera", "coins", "hubble_deep_field")


def write_images(folder: Path) -> list[Path]:
    """A few scikit-image photos as JPEG and PNG files."""
    import numpy as np
    from PIL import Image
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for i, name in enumerate(PHOTOS):
        array = getattr(data, name)()
        if array.dtype == bool:
            array = array.astype(np.uint8) * 255
        path = folder / f"{name}.{'jpg' if i % 2 == 0 else 'png'}"
        Image.fromarray(array).save(path)
        written.append(path)
    return written


SENTENCES = (
    "The quick brown fox jumps over the lazy dog.",
    "Please call Stella and ask her to bring these things with her from the store.",
    "It is raining again, so the football match has been cancelled.",
)
VOICES = (("en-us", 150), ("en-gb", 175), ("en+f3", 135))


def write_audio_samples(folder: Path) -> list[Path]:
    """Tones and noise in five formats, a 70 s file (three 30 s windows), and espeak-ng speech."""
    import shutil
    import subprocess

    import numpy as np
    from embedline_media.audio import write_audio

    folder.mkdir(parents=True, exist_ok=True)
    rate, rng = 16000, np.random.default_rng(0)
    t = np.arange(3 * rate) / rate
    sounds = {
        "tone-440hz.wav": 0.3 * np.sin(2 * np.pi * 440 * t),
        "tone-880hz.flac": 0.3 * np.sin(2 * np.pi * 880 * t),
        "chirp.ogg": 0.3 * np.sin(2 * np.pi * (200 + 600 * t) * t),
        "noise.mp3": 0.2 * rng.uniform(-1, 1, len(t)),
        "tone-220hz.m4a": 0.3 * np.sin(2 * np.pi * 220 * t),
    }
    long = np.arange(70 * rate) / rate
    sounds["long-70s.flac"] = 0.3 * np.sin(2 * np.pi * np.where(long < 35, 330, 660) * long)
    written = [Path(write_audio(folder / name, samples.astype(np.float32), rate)) for name, samples in sounds.items()]
    if shutil.which("espeak-ng"):
        for s, sentence in enumerate(SENTENCES):
            for voice, speed in VOICES:
                out = folder / f"speech-{s}-{voice.replace('+', '_')}.wav"
                subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(out), sentence], check=True)
                written.append(out)
    else:
        print("espeak-ng is not installed: no speech samples (apt-get install espeak-ng)", file=sys.stderr)
    return written


def write_video_samples(folder: Path) -> list[Path]:
    """Three 6 s videos at 25 fps: two with a tone, one without sound."""
    import numpy as np
    from embedline_media.video import write_video

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, colour, tone in (("red-440hz", 0, 440.0), ("green-880hz", 1, 880.0), ("blue-silent", 2, None)):
        frames = np.zeros((150, 96, 128, 3), dtype=np.uint8)
        for i in range(150):  # a white square crossing a background that brightens
            frames[i, :, :, colour] = 60 + i
            x = int(112 * i / 149)
            frames[i, 40:56, x : x + 16] = 255
        t = np.arange(6 * 48000) / 48000
        audio = None if tone is None else (0.3 * np.sin(2 * np.pi * tone * t)).astype(np.float32)
        written.append(Path(write_video(folder / f"{name}.mp4", frames, 25, audio=audio, audio_rate=48000)))
    return written


WRITERS = {"images": write_images, "audio": write_audio_samples, "video": write_video_samples}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="*", metavar="MODEL",
                        help=f"which models to build: {', '.join(BUILDERS)} or all (default)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=HERE / "models", help="folder for the models (default examples/models)")
    parser.add_argument("--images", type=Path, default=HERE / "images", help="folder for sample images (default examples/images)")
    parser.add_argument("--audio", type=Path, default=HERE / "audio", help="folder for sample sounds (default examples/audio)")
    parser.add_argument("--video", type=Path, default=HERE / "video", help="folder for sample videos (default examples/video)")
    args = parser.parse_args(argv)
    unknown = [m for m in args.models if m not in (*BUILDERS, "all")]
    if unknown:  # checked here: argparse's choices reject an empty nargs="*" list on some Pythons
        parser.error(f"unknown model {unknown[0]!r}; choose from {', '.join(BUILDERS)} or all")

    import importlib

    names = list(BUILDERS) if not args.models or "all" in args.models else list(dict.fromkeys(args.models))
    for name in names:
        module, _, function = BUILDERS[name].partition(":")
        path = getattr(importlib.import_module(module), function)(args.out / name)
        print(f"{name}: {path}")
    folders = {"images": args.images, "audio": args.audio, "video": args.video}
    for kind in dict.fromkeys(SAMPLES[n] for n in names if n in SAMPLES):
        written = WRITERS[kind](folders[kind])
        print(f"{kind}: {len(written)} file(s) in {folders[kind]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
