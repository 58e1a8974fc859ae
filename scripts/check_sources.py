"""Compile-check the kernel sources of candidate files without running them.

For each candidate ``.py`` this imports it with ``load_inline`` replaced by a recorder, then
compiles what it would have built: ``cuda_sources`` with nvcc (``-c`` only, for the arch in
``--arch``) and ``cpp_sources`` with the host compiler, using torch's include paths and the
candidate's own flags and include paths. Nothing is linked or run, so CUDA candidates can be
checked on a machine without a GPU (the CPU build of torch ships the CUDA headers).

    python scripts/check_sources.py --arch sm_90a pytest_hipkittens/samples/responses/cuda/level1/*/*.md
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from pytest_hipkittens.extract import extract_code


def capture(code: str) -> list[dict]:
    import torch.utils.cpp_extension as ext

    calls: list[dict] = []

    def record(**kwargs):
        calls.append(kwargs)

        class Stub:
            def __getattr__(self, name):
                return lambda *a, **k: None

        return Stub()

    original = ext.load_inline
    ext.load_inline = lambda *args, **kwargs: record(**kwargs)
    try:
        exec(compile(code, "candidate.py", "exec"), {"__name__": "candidate"})
    finally:
        ext.load_inline = original
    return calls


def stubs(workdir: Path) -> Path:
    """Headers a CPU build of torch does not generate (CUDA builds configure them)."""
    root = workdir / "stubs"
    macro = root / "c10" / "cuda" / "impl" / "cuda_cmake_macros.h"
    macro.parent.mkdir(parents=True, exist_ok=True)
    macro.write_text("#pragma once\n#define C10_CUDA_BUILD_SHARED_LIBS\n")
    return root


def as_text(src) -> str:
    return "\n".join(src) if isinstance(src, (list, tuple)) else (src or "")


def check(path: Path, arch: str, workdir: Path) -> bool:
    from torch.utils.cpp_extension import include_paths

    text = path.read_text()
    code = extract_code(text).code if path.suffix == ".md" else text
    if code is None:
        print(f"{path}: no code")
        return False
    ok = True
    for call in capture(code):
        import sysconfig

        incs = [
            f"-I{p}" for p in [*include_paths(), sysconfig.get_paths()["include"], stubs(workdir)]
        ] + [f"-I{p}" for p in call.get("extra_include_paths") or []]
        defines = ["-DTORCH_EXTENSION_NAME=check", "-DTORCH_API_INCLUDE_EXTENSION_H"]
        cuda = as_text(call.get("cuda_sources"))
        if cuda:
            src = workdir / "k.cu"
            # What load_inline prepends to cuda_sources.
            src.write_text(
                "#include <torch/types.h>\n#include <cuda.h>\n#include <cuda_runtime.h>\n" + cuda
            )
            flags = [f for f in call.get("extra_cuda_cflags") or [] if not f.startswith("-arch")]
            cmd = [
                "nvcc",
                "-c",
                "-std=c++17",
                f"-arch={arch}",
                *defines,
                *incs,
                *flags,
                str(src),
                "-o",
                str(workdir / "k.o"),
            ]
            ok &= run(path, "nvcc", cmd)
        cpp = as_text(call.get("cpp_sources"))
        if cpp:
            src = workdir / "k.cpp"
            src.write_text("#include <torch/extension.h>\n" + cpp)
            flags = [f for f in call.get("extra_cflags") or [] if f]
            cmd = [
                os.environ.get("CXX", "c++"),
                "-fsyntax-only",
                "-std=c++17",
                *defines,
                *incs,
                *flags,
                str(src),
            ]
            ok &= run(path, "c++", cmd)
    return ok


def run(path: Path, tool: str, cmd: list[str]) -> bool:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    status = "ok" if proc.returncode == 0 else "FAILED"
    print(f"{path}: {tool} {status}")
    if proc.returncode:
        errors = [line for line in (proc.stderr + proc.stdout).splitlines() if "error" in line]
        print("\n".join(errors)[:3000] or (proc.stderr + proc.stdout)[-3000:])
    return proc.returncode == 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--arch", default="sm_90a")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = [check(f, args.arch, Path(tmp)) for f in args.files]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
