"""embedline.devices: the device rules every torch plugin shares.

The machine running the tests may have no GPU, so the cases that need one (cuda or mps present)
are simulated by patching torch's availability checks.
"""

import json
import subprocess
import sys

import pytest
from embedline.devices import parse_device, resolve_device
from embedline.errors import ConfigError

torch = pytest.importorskip("torch")


@pytest.fixture
def machine(monkeypatch):
    """Make torch see ``cuda`` CUDA devices and (or not) mps; returns the setter."""

    def see(cuda: int = 0, mps: bool = False) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: cuda)
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)

    return see


def test_importing_the_module_does_not_import_torch():
    code = "import sys, json, embedline.devices\nprint(json.dumps('torch' in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) is False


@pytest.mark.parametrize(
    ("requested", "expected"),
    [
        ("auto", ("auto", None)),
        ("", ("auto", None)),
        (None, ("auto", None)),
        (" CPU ", ("cpu", None)),
        ("mps", ("mps", None)),
        ("cuda", ("cuda", None)),
        ("Cuda:1", ("cuda", 1)),
    ],
)
def test_parse_device(requested, expected):
    assert parse_device(requested) == expected


@pytest.mark.parametrize("requested", ["tpu", "cuda:", "cuda:x", "gpu", "cuda:-1"])
def test_an_unknown_device_is_a_config_error(requested):
    for check in (parse_device, resolve_device):
        with pytest.raises(ConfigError, match=r"unknown device .*expected auto, cpu, cuda, cuda:N or mps") as info:
            check(requested, "models.texts")
        assert info.value.key == "models.texts.device"


def test_auto_on_this_machine_is_cpu_without_a_gpu():
    if torch.cuda.is_available() or torch.backends.mps.is_available():
        pytest.skip("this machine has a GPU")
    assert resolve_device("auto") == "cpu"
    assert resolve_device("") == "cpu"


@pytest.mark.parametrize(
    ("cuda", "mps", "expected"), [(0, False, "cpu"), (0, True, "mps"), (1, False, "cuda"), (2, True, "cuda")]
)
def test_auto_picks_cuda_then_mps_then_cpu(machine, cuda, mps, expected):
    machine(cuda=cuda, mps=mps)
    assert resolve_device("auto") == expected


def test_cpu_always_works(machine):
    machine(cuda=0, mps=False)
    assert resolve_device("cpu") == resolve_device(" CPU ") == "cpu"


def test_cuda_must_exist_here(machine):
    machine(cuda=0)
    with pytest.raises(ConfigError, match="no CUDA device") as info:
        resolve_device("cuda")
    assert info.value.key == "model.device"
    assert 'use "auto" or "cpu"' in str(info.value)


def test_an_unavailable_cuda_on_this_machine():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ConfigError, match=r"model\.device: device 'cuda:0' is not available: torch sees no CUDA"):
        resolve_device("cuda:0")


def test_cuda_index_is_checked_against_the_count(machine):
    machine(cuda=2)
    assert resolve_device("cuda") == "cuda"
    assert resolve_device("CUDA:1") == "cuda:1"
    with pytest.raises(ConfigError, match=r"'cuda:2' is not available: torch sees 2 CUDA device\(s\)") as info:
        resolve_device("cuda:2", "models.images")
    assert info.value.key == "models.images.device"


def test_mps_must_be_available(machine):
    machine(mps=False)
    with pytest.raises(ConfigError, match="device 'mps' is not available on this machine") as info:
        resolve_device("mps", "models.x")
    assert info.value.key == "models.x.device"
    machine(mps=True)
    assert resolve_device("MPS") == "mps"
