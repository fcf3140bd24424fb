"""embedline plugin ``ray``: an executor that runs ``preprocess`` + ``embed`` on Ray actors.

    [executor]
    plugin = "ray"
    actors = 2              # per model
    cpus_per_actor = 0.5    # fractional is fine

The driver (the process running ``embedline run``) keeps the reader and the run's bookkeeping:
it reads and routes items, gives them their content ids, drops duplicates and ids already
stored, and records every outcome (the failure report, ``on_error``, the summary).  Each model
gets a pool of actors that load the model once and prepare + embed the windows sent to them.
Rows come back to the driver and are written by one writer thread (a Milvus Lite file, the
``memory`` store), or are written by the actors themselves when the store is a server every
actor can reach (a Milvus server or Zilliz Cloud URI).

This module only declares the plugin: Ray is imported when a run starts (``_executor``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from embedline import hookimpl
from embedline.contracts import Executor, ExecutorSpec, Option, PluginInfo

__version__ = "0.1.0"

WRITE_MODES = ("auto", "driver", "workers")


def _validate(options: Mapping[str, Any]) -> None:
    for key in ("actors", "batch_size", "threads_per_actor", "num_cpus", "inflight", "write_queue"):
        value = options.get(key)
        if value is not None and value < 1:
            raise ValueError(f"{key}: expected a positive integer, got {value}")
    for key in ("cpus_per_actor", "ready_timeout"):
        value = options.get(key)
        if value is not None and not value > 0:
            raise ValueError(f"{key}: expected a positive number, got {value}")
    gpus = options.get("gpus_per_actor")
    if gpus is not None and gpus < 0:
        raise ValueError(f"gpus_per_actor: expected 0 or more, got {gpus}")
    address = options.get("address")
    if address is not None and not address.strip():
        raise ValueError("address: expected a Ray address (\"auto\", \"HOST:PORT\" or \"ray://HOST:PORT\"), got an empty string")


plugin_info = PluginInfo(
    kind="executor",
    options={
        "address": Option(
            str,
            None,
            "the Ray cluster to join (\"auto\", \"HOST:PORT\", \"ray://HOST:10001\"); default: the Ray this "
            "process already started, else a local Ray started for the run and stopped when the pipeline closes",
        ),
        "actors": Option(int, 1, "actors per model; each loads its model once"),
        "cpus_per_actor": Option((int, float), 1.0, "CPUs Ray reserves for each actor (fractions allowed: 0.5)"),
        "gpus_per_actor": Option((int, float), 0.0, "GPUs Ray reserves for each actor (fractions allowed)"),
        "threads_per_actor": Option(
            int, None, "math library threads in an actor (OMP/MKL/torch); default: cpus_per_actor rounded, at least 1"
        ),
        "batch_size": Option(
            int,
            None,
            "items sent to an actor per call (default: the reader's window, about 2,048 texts or one model batch "
            "of images); the model's own batch_size still sets the embed batches",
        ),
        "inflight": Option(int, 2, "calls queued per actor, so an actor never waits for the driver"),
        "write": Option(
            str,
            "auto",
            "who writes rows: `driver` (one writer thread, any store), `workers` (each actor opens the store), "
            "`auto` (workers for a server URI, the driver for a local file or the memory store)",
            choices=WRITE_MODES,
        ),
        "write_queue": Option(int, 4, "embedded batches that may wait for the driver's writer thread"),
        "num_cpus": Option(
            int, None, "logical CPUs of a local Ray started here (default: cores + 1, and at least what the actors ask for)"
        ),
        "ready_timeout": Option(
            (int, float), 600.0, "seconds to wait for the actors to be placed and load their model before giving up"
        ),
    },
    description="Ray actors per model run preprocess + embed; the driver reads, records and writes (or workers write to a server)",
    validate=_validate,
)


@hookimpl
def executor(spec: ExecutorSpec) -> Executor:
    from embedline_ray._executor import RayExecutor, Settings

    return RayExecutor(Settings.from_spec(spec))
