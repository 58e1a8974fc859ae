"""Backends: pick one from the installed torch, or as ``--backend`` says."""

from __future__ import annotations

from .base import Backend, BackendError

NAMES = ("auto", "cpu", "cuda", "hip")


def detect() -> str:
    """ROCm build → hip, CUDA with a device → cuda, else cpu.

    A CUDA or CPU build is told apart without importing torch where possible (probe.py).
    """
    from .probe import nvidia_capabilities, torch_build

    build = torch_build()
    if build is not None and not build["hip"]:
        if build["cuda"] is None:
            return "cpu"
        gpus = nvidia_capabilities()
        if gpus is not None:
            return "cuda" if gpus else "cpu"
    import torch

    if getattr(torch.version, "hip", None) and torch.cuda.is_available():
        return "hip"
    if torch.version.cuda and torch.cuda.is_available():
        return "cuda"
    return "cpu"


def get_backend(name: str = "auto", arch: str | None = None) -> Backend:
    """Resolve ``name`` (or ``auto``) to a ready Backend; raise BackendError if unusable."""
    if name not in NAMES:
        raise BackendError(f"unknown backend {name!r}; choose from {', '.join(NAMES)}")
    if name == "auto":
        name = detect()
    if name == "cpu":
        from . import cpu

        return cpu.make(arch)
    if name == "cuda":
        from . import cuda

        return cuda.make(arch)
    from . import hip

    return hip.make(arch)


__all__ = ["Backend", "BackendError", "NAMES", "detect", "get_backend"]
