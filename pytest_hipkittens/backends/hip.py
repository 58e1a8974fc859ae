"""HIP backend: hipcc through a ROCm build of torch, HipKittens when available.

The offload arch comes from the device's ``gcnArchName`` (``gfx942`` on MI300X/MI325X,
``gfx950`` on MI355X) unless overridden and reaches the build as ``PYTORCH_ROCM_ARCH``;
``HIPKITTENS_ROOT`` is passed through for the include root. Not yet run on AMD hardware.
"""

from __future__ import annotations

import os

from .base import Backend, BackendError


def detect_arch() -> str:
    import torch

    name = torch.cuda.get_device_properties(0).gcnArchName
    return name.split(":")[0]


def make(arch: str | None = None) -> Backend:
    import torch

    if getattr(torch.version, "hip", None) is None:
        raise BackendError(
            f"--backend hip: torch {torch.__version__} is not a ROCm build "
            "(install a ROCm wheel of torch and run on a machine with ROCm)"
        )
    if not torch.cuda.is_available():
        raise BackendError("--backend hip: ROCm torch sees no AMD GPU")
    arch = arch or detect_arch()
    env = {"PYTORCH_ROCM_ARCH": arch}
    if os.environ.get("HIPKITTENS_ROOT"):
        env["HIPKITTENS_ROOT"] = os.environ["HIPKITTENS_ROOT"]
    return Backend(
        name="hip",
        device="cuda",
        visible_devices_var="HIP_VISIBLE_DEVICES",
        profiler="rocprofv3",
        arch=arch,
        env=env,
        prompt_set="hip",
    )
