"""Build plumbing: the content address of a build and the compiler wrappers' environment."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

from ..results import write_if_changed
from .config import EvalConfig
from .schema import code_sha256


@functools.lru_cache(maxsize=4)
def compiler_id(cxx: str) -> str:
    """``$CXX --version`` (nvcc's first line is the same for every release, so all of it):
    part of the build-cache key."""
    try:
        out = subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=30)
        return out.stdout.strip() if out.stdout else cxx
    except (OSError, subprocess.SubprocessError):
        return cxx


@functools.lru_cache(maxsize=1)
def builder_id() -> str:
    """Hash of the compiler wrappers' code: a fixed or changed wrapper builds afresh instead
    of serving what an older one produced."""
    here = Path(__file__).parent
    digest = hashlib.sha256()
    for name in ("pch.py", "nvcc.py", "splitcu.py", "own_error.py", "routes.py"):
        digest.update((here / name).read_bytes())
    return digest.hexdigest()[:16]


def nvcc_path() -> Path:
    """The nvcc torch's extension builder will use, found the way it finds it (``CUDA_HOME``
    or ``CUDA_PATH``, else the ``nvcc`` on PATH, else /usr/local/cuda) without importing
    torch.utils.cpp_extension, which imports torch: 4-5 s of a GPU host's parent process
    before its first worker could start."""
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    if not home:
        found = shutil.which("nvcc")
        home = str(Path(found).parent.parent) if found else "/usr/local/cuda"
    return Path(home) / "bin" / "nvcc"


def _script(path: Path, module: str) -> Path:
    """An executable that runs ``python -m module "$@"`` (compiler variables take one path)."""
    write_if_changed(path, f'#!/bin/sh\nexec {sys.executable} -m {module} "$@"\n', 0o755)
    return path


@functools.lru_cache(maxsize=1)
def torch_version() -> str:
    """The installed torch's version, read without importing torch (~1 s the parent saves
    before its workers start)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("torch")
    except PackageNotFoundError:
        import torch

        return str(torch.__version__)


def torch_dir() -> Path:
    """Where the torch package lives, without importing it."""
    import importlib.util

    spec = importlib.util.find_spec("torch")
    assert spec is not None and spec.origin is not None, "torch is not installed"
    return Path(spec.origin).parent


@functools.lru_cache(maxsize=4)
def compiler_env(folder: Path, backend: str, cxx: str) -> dict[str, str]:
    """Route host compiles through the PCH and lean-binding-header wrapper (pch.py) and, on
    cuda, nvcc through the split / lean-header wrapper (nvcc.py)."""
    from .nvcc import lean_include
    from .pch import lean_main_include

    header = torch_dir() / "include" / "torch" / "extension.h"
    stamp = int(header.stat().st_mtime) if header.exists() else 0
    env = {
        "CXX": str(_script(folder / "bin" / "c++", "pytest_hipkittens.evaluate.pch")),
        "HK_REAL_CXX": shutil.which(cxx) or cxx,
        "HK_PCH_DIR": str(folder),
        "HK_PCH_TAG": f"{torch_version()}-{platform.python_version()}-{stamp}",
        "HK_LEAN_MAIN": str(lean_main_include(folder / "lean-main")),
    }
    if backend == "cuda":
        nvcc = nvcc_path()
        env.update(
            PYTORCH_NVCC=str(_script(folder / "bin" / "nvcc", "pytest_hipkittens.evaluate.nvcc")),
            HK_REAL_NVCC=str(nvcc),
            HK_LEAN_INCLUDE=str(lean_include(folder / "lean")),
        )
    return env


def wrapped(cfg: EvalConfig) -> bool:
    """Builds go through the harness's compiler wrappers (compiler_env)."""
    return cfg.fast_builds and cfg.backend.name in ("cpu", "cuda")


def cache_key(code: str, cfg: EvalConfig) -> str:
    """Content address of a build: source, backend flags, compilers, torch, python, and the
    harness's compiler wrappers (or none, with ``--hk-plain-builds``)."""
    parts = {
        "code": code_sha256(code),
        "backend": cfg.backend.describe(),
        "env": cfg.backend.env,
        "torch": torch_version(),
        "python": platform.python_version(),
        "cxx": compiler_id(os.environ.get("CXX", "c++")),
        "builder": builder_id() if wrapped(cfg) else "plain",
    }
    if cfg.backend.name == "cuda":
        parts["nvcc"] = compiler_id(str(nvcc_path()))
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]
