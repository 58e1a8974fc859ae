"""Backends: pick one from the installed torch, or as ``--backend`` says."""

from __future__ import annotations

from .base import Backend, BackendError

NAMES = ("auto", "cpu", "cuda", "hip")


def detect() -> str:
    """ROCm build → hip, CUDA with a device → cuda, else cpu."""
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
