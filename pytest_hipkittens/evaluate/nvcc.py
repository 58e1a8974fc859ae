"""An nvcc wrapper that keeps torch's C++ frontend and Python bindings out of ``.cu`` files.

``load_inline`` candidates start their CUDA source with ``#include <torch/extension.h>``,
which is the whole C++ frontend (nn, optim, data, jit, serialize) plus pybind11 and
Python — parsed three times by nvcc (cudafe++, cicc, the host compiler): ~85 s of a
trivial kernel's cold build here, ~55 s on the 16-core device host. The bindings live in
``main.cpp`` (compiled by the host compiler, see pch.py); a kernel file needs tensors,
factories and streams, which ``torch/types.h`` declares.

For each ``-c x.cu`` the wrapper first compiles with an include directory, searched before
torch's own, whose ``torch/extension.h`` is ``torch/types.h``. If that compile fails, its
output is discarded and the file is compiled again exactly as the candidate wrote it, so
the log and the result are what plain nvcc gives; only time is lost. What is generated
is the candidate's own code either way: the lean header removes declarations, it does
not replace any.

Usage: ``PYTORCH_NVCC=<dir>/nvcc`` (torch honours it) where that script runs ``python -m
pytest_hipkittens.evaluate.nvcc "$@"``; ``HK_REAL_NVCC``, ``HK_LEAN_INCLUDE``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

LEAN_HEADER = "#pragma once\n// pytest-hipkittens: torch/extension.h without the C++ frontend and Python\n#include <torch/types.h>\n"


def lean_include(folder: Path) -> Path:
    """Create (atomically) the include directory holding the lean ``torch/extension.h``."""
    from ..results import write_if_changed

    write_if_changed(folder / "torch" / "extension.h", LEAN_HEADER)
    return folder


def is_cu_compile(args: list[str]) -> bool:
    return "-c" in args and any(a.endswith(".cu") and not a.startswith("-") for a in args)


def run(args: list[str], env: dict[str, str]) -> int:
    """Compile like nvcc would; for a ``.cu``, try the lean header first."""
    real = env.get("HK_REAL_NVCC") or "nvcc"
    lean = env.get("HK_LEAN_INCLUDE")
    if lean and is_cu_compile(args):
        first = subprocess.run([real, "-I", lean, *args], capture_output=True)
        if first.returncode == 0:
            sys.stdout.buffer.write(first.stdout)
            sys.stderr.buffer.write(first.stderr)
            return 0
    return subprocess.call([real, *args])


def main() -> int:
    return run(sys.argv[1:], dict(os.environ))


if __name__ == "__main__":
    sys.exit(main())
