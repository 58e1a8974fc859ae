"""CPU backend: plain C++ through torch's extension builder, timed on the host.

It keeps the whole pipeline (generation, build, verification, timing, profiling) runnable
on machines with no GPU, which is what CI and newcomers have.
"""

from __future__ import annotations

import platform

from .base import Backend


def make(arch: str | None = None) -> Backend:
    return Backend(
        name="cpu",
        device="cpu",
        visible_devices_var=None,
        profiler="torch.profiler",
        arch=arch or platform.machine() or "native",
        prompt_set="cpu",
        notes="Target: the host CPU; kernels are C++ built by the host compiler (no GPU).",
    )
