"""HIP backend: AMD Instinct GPUs through a ROCm build of torch, HipKittens when available.

Candidates follow KernelBench's HIP convention: HIP source in ``cpp_sources`` compiled by
``hipcc`` as the C++ compiler (``CXX=hipcc``), so nothing is hipified behind their back.
The offload arch comes from the device's ``gcnArchName`` (``gfx942`` on MI300X/MI325X,
``gfx950`` on MI355X) unless overridden; it reaches the build as ``PYTORCH_ROCM_ARCH`` and
``HK_OFFLOAD_ARCH``, HipKittens' arch define (``KITTENS_CDNA3``/``KITTENS_CDNA4``) as
``HK_KITTENS_DEFINE``, and ``HIPKITTENS_ROOT`` is passed through for the include root.
The flags mirror HipKittens' own Makefiles (C++20, ``--offload-arch``, the arch define).

Not yet run on AMD hardware: built to the documented interfaces, unit-tested with a fake
device and recorded profiler output.
"""

from __future__ import annotations

import os
import shutil

from .base import Backend, BackendError

#: gfx target -> HipKittens' architecture define.
KITTENS_DEFINES = {"gfx90a": "KITTENS_CDNA2", "gfx942": "KITTENS_CDNA3", "gfx950": "KITTENS_CDNA4"}
#: Infinity Cache (MALL) is 256 MiB on MI300X; rewrite twice that between timed trials.
MALL_FLUSH_BYTES = 512 << 20


def detect_arch() -> str:
    """``gfx942`` from a device name like ``gfx942:sramecc+:xnack-``."""
    import torch

    name = torch.cuda.get_device_properties(0).gcnArchName
    return name.split(":")[0]


def kittens_define(arch: str) -> str | None:
    return KITTENS_DEFINES.get(arch)


def hip_flags(arch: str, hipkittens_root: str | None = None) -> list[str]:
    """Compiler flags for a HIP/HipKittens candidate built by hipcc through load_inline."""
    flags = ["-O3", "-std=c++20", f"--offload-arch={arch}", "-w"]
    define = kittens_define(arch)
    if define:
        flags.append(f"-D{define}")
    if hipkittens_root:
        flags += [
            f"-I{os.path.join(hipkittens_root, 'include')}",
            f"-I{os.path.join(hipkittens_root, 'prototype')}",
        ]
    return flags


def build_notes(arch: str, hipkittens_root: str | None) -> str:
    lines = [
        f"Target: AMD GPU {arch} (wavefront of 64 lanes). Follow KernelBench's HIP convention:",
        '`os.environ["CXX"] = "hipcc"` before load_inline, HIP code in cpp_sources,',
        '`extra_cflags=["-O3", "-std=c++20", "--offload-arch=" + os.environ["HK_OFFLOAD_ARCH"]]`.',
    ]
    if hipkittens_root:
        lines.append(
            "HipKittens is available: add "
            '`"-D" + os.environ["HK_KITTENS_DEFINE"]` to extra_cflags and '
            '`os.path.join(os.environ["HIPKITTENS_ROOT"], "include")` to extra_include_paths.'
        )
    return "\n".join(lines)


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
    root = os.environ.get("HIPKITTENS_ROOT")
    env = {"PYTORCH_ROCM_ARCH": arch, "HK_OFFLOAD_ARCH": arch}
    if kittens_define(arch):
        env["HK_KITTENS_DEFINE"] = kittens_define(arch) or ""
    if root:
        env["HIPKITTENS_ROOT"] = root
    hipcc = shutil.which("hipcc")
    if hipcc:
        env["CXX"] = hipcc
    return Backend(
        name="hip",
        device="cuda",
        visible_devices_var="HIP_VISIBLE_DEVICES",
        profiler="rocprofv3",
        arch=arch,
        env=env,
        prompt_set="hip",
        notes=build_notes(arch, root),
        flush_bytes=MALL_FLUSH_BYTES,
    )
