"""CUDA backend: nvcc through torch's extension builder, ThunderKittens when available.

The arch comes from the device's compute capability (``sm_90a`` on H100, whose wgmma/TMA
instructions need the ``a`` suffix) unless overridden; it reaches the candidate's
``load_inline`` as ``TORCH_CUDA_ARCH_LIST``. ``THUNDERKITTENS_ROOT`` is passed through so a
candidate can add the include root the prompt tells it about.
"""

from __future__ import annotations

import os

from .base import Backend, BackendError
from .probe import nvidia_capabilities, torch_build


def sm_name(major: int, minor: int) -> str:
    """``sm_90a`` for (9, 0): Hopper's and later wgmma/TMA instructions need the suffix."""
    suffix = "a" if (major, minor) >= (9, 0) else ""
    return f"sm_{major}{minor}{suffix}"


def detect_arch() -> str:
    import torch

    return sm_name(*torch.cuda.get_device_capability(0))


def arch_list(arch: str) -> str:
    """``sm_90a`` → ``9.0a`` (the spelling TORCH_CUDA_ARCH_LIST expects)."""
    digits = arch.removeprefix("sm_")
    suffix = "a" if digits.endswith("a") else ""
    digits = digits.rstrip("a")
    return f"{digits[:-1]}.{digits[-1]}{suffix}"


def make(arch: str | None = None) -> Backend:
    # Without importing torch when its version file and nvidia-smi answer (probe.py).
    build, gpus = torch_build(), nvidia_capabilities()
    if build is not None and gpus is not None:
        if build["cuda"] is None or not gpus:
            raise BackendError(
                "--backend cuda: this torch has no usable CUDA device "
                f"(torch {build['version']}, cuda {build['cuda']}, {len(gpus)} GPUs visible)"
            )
        arch = arch or sm_name(*gpus[0])
    else:
        import torch

        if torch.version.cuda is None or not torch.cuda.is_available():
            raise BackendError(
                "--backend cuda: this torch has no usable CUDA device "
                f"(torch {torch.__version__}, cuda {torch.version.cuda})"
            )
        arch = arch or detect_arch()
    env = {"TORCH_CUDA_ARCH_LIST": arch_list(arch)}
    if os.environ.get("THUNDERKITTENS_ROOT"):
        env["THUNDERKITTENS_ROOT"] = os.environ["THUNDERKITTENS_ROOT"]
    notes = f"Target: NVIDIA GPU {arch}; the harness sets TORCH_CUDA_ARCH_LIST={env['TORCH_CUDA_ARCH_LIST']} (do not pass -arch)."
    if "THUNDERKITTENS_ROOT" in env:
        notes += '\nThunderKittens is available at os.environ["THUNDERKITTENS_ROOT"].'
    return Backend(
        name="cuda",
        device="cuda",
        visible_devices_var="CUDA_VISIBLE_DEVICES",
        profiler="torch.profiler",
        arch=arch,
        env=env,
        prompt_set="cuda",
        notes=notes,
    )
