"""Which device a model runs on: the ``device`` key of a model section, checked against this machine.

``auto`` picks cuda, then mps, then cpu; ``cpu`` always works; ``cuda`` / ``cuda:N`` and ``mps``
must be available to torch, else :class:`~embedline.errors.ConfigError` keyed ``<key>.device``
says what torch sees.  Plugins share these rules through :func:`resolve_device` (plugins do not
import each other); a plugin whose runtime has other needs (CTranslate2 wants a device index, a
model that does not run on mps) wraps it, or uses :func:`parse_device` and checks the device itself.

torch is imported inside :func:`resolve_device` only: importing this module costs nothing.
"""

from __future__ import annotations

import re

from embedline.errors import ConfigError

__all__ = ["parse_device", "resolve_device"]

_EXPECTED = "expected auto, cpu, cuda, cuda:N or mps"


def parse_device(requested: str | None, key: str = "model") -> tuple[str, int | None]:
    """The kind (``auto``, ``cpu``, ``cuda`` or ``mps``) and the CUDA index (None if not given).

    Only the spelling is checked (case and surrounding spaces do not matter; empty means ``auto``),
    not whether the device exists; an unknown name raises :class:`ConfigError`.
    """
    wanted = (requested or "auto").strip().lower()
    if wanted in ("auto", "cpu", "mps"):
        return wanted, None
    match = re.fullmatch(r"cuda(?::(\d+))?", wanted)
    if match:
        return "cuda", None if match.group(1) is None else int(match.group(1))
    raise ConfigError(f"unknown device {requested!r}; {_EXPECTED}", key=f"{key}.device")


def resolve_device(requested: str, key: str = "model") -> str:
    """A torch device name for ``requested``: ``auto`` picks cuda, then mps, then cpu.

    An explicit device must exist on this machine (``cuda:N`` needs more than N CUDA devices,
    ``mps`` an available MPS backend); if not, or if the name is unknown, :class:`ConfigError`
    keyed ``<key>.device``.  The result is ``"cpu"``, ``"mps"``, ``"cuda"`` or ``"cuda:N"``.
    """
    kind, index = parse_device(requested, key)
    if kind == "cpu":
        return "cpu"

    import torch

    mps = getattr(torch.backends, "mps", None)
    mps_ok = bool(mps is not None and mps.is_available())
    if kind == "auto":
        return "cuda" if torch.cuda.is_available() else "mps" if mps_ok else "cpu"
    if kind == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (index or 0) >= count:
            seen = f"{count} CUDA device(s)" if count else f"no CUDA device (torch {torch.__version__})"
            raise ConfigError(
                f'device {requested!r} is not available: torch sees {seen}; use "auto" or "cpu"', key=f"{key}.device"
            )
        return "cuda" if index is None else f"cuda:{index}"
    if not mps_ok:
        raise ConfigError('device \'mps\' is not available on this machine; use "auto" or "cpu"', key=f"{key}.device")
    return "mps"
