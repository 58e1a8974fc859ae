"""An nvcc wrapper that keeps torch's C++ frontend and Python bindings out of ``.cu`` files.

``load_inline`` candidates start their CUDA source with ``#include <torch/extension.h>``,
which is the whole C++ frontend (nn, optim, data, jit, serialize) plus pybind11 and
Python — parsed three times by nvcc (cudafe++, cicc, the host compiler): ~85 s of a
trivial kernel's cold build here, ~55 s on the 16-core device host. The bindings live in
``main.cpp`` (compiled by the host compiler, see pch.py); a kernel file needs tensors,
factories and streams, which ``torch/types.h`` declares.

For each ``-c x.cu`` the wrapper tries, in order, keeping the first that compiles:

1. the split build (splitcu.py): kernels to nvcc without torch (~1-3 s), the torch glue to
   the host compiler with a precompiled ``torch/types.h`` (~2-4 s), both at once, joined
   with ``ld -r`` into the object nvcc would have written;
2. nvcc with an include directory, searched before torch's own, whose
   ``torch/extension.h`` is ``torch/types.h`` (~30 s);
3. nvcc on the file exactly as the candidate wrote it.

Output of a failed attempt is discarded, so the log and the result of a candidate that
compiles nowhere are what plain nvcc gives; only time is lost. What is generated is the
candidate's own code in every case: the lean header removes declarations, the split moves
them. ``hk_nvcc.log`` next to the object says which way each file went and why, for
people; ``<object>.hk-route.json`` says it for the harness (routes.py: the result's
``build_route``).

A failed route whose every error is proven the candidate's own — a name nothing in the
compile as written declares (own_error.py) — ends the compile there with that route's log,
instead of compiling the same mistake three times.

Usage: ``PYTORCH_NVCC=<dir>/nvcc`` (torch honours it) where that script runs ``python -m
pytest_hipkittens.evaluate.nvcc "$@"``; ``HK_REAL_NVCC``, ``HK_LEAN_INCLUDE``,
``HK_SPLIT_CU=0`` (skip step 1).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from . import pch
from .own_error import Judge
from .routes import Recorder
from .schema import first_error

LEAN_HEADER = "#pragma once\n// pytest-hipkittens: torch/extension.h without the C++ frontend and Python\n#include <torch/types.h>\n"


def lean_include(folder: Path) -> Path:
    """The include directory whose ``torch/extension.h`` is the lean one for kernel files."""
    return pch.lean_include(folder, LEAN_HEADER)


def cu_source(args: list[str]) -> Path | None:
    """The ``.cu`` file an nvcc command line compiles (None: not a ``-c`` compile of one)."""
    if "-c" not in args:
        return None
    return next((Path(a) for a in args if a.endswith(".cu") and not a.startswith("-")), None)


# -- the split build (splitcu.py) --------------------------------------------------------------
#: nvcc flags that take the next argument and mean nothing to the host file.
_DEVICE_WITH_ARG = {
    "-gencode", "--generate-code", "-arch", "--gpu-architecture", "-code", "--gpu-code",
    "-Xptxas", "--ptxas-options", "-Xnvlink", "--nvlink-options", "-maxrregcount",
    "--maxrregcount", "-t", "--threads", "--diag-suppress", "-diag-suppress", "-x",
    "--dependency-output", "-MF", "-MT", "-o", "-ccbin", "--compiler-bindir",
}  # fmt: skip
_DEVICE_ONLY = {
    "-c", "--generate-dependencies-with-compile", "-MD", "-MMD", "--expt-relaxed-constexpr",
    "--expt-extended-lambda", "--extended-lambda", "-lineinfo", "--use_fast_math",
    "-use_fast_math", "-G", "--resource-usage", "-Wno-deprecated-gpu-targets", "-keep", "--keep",
}  # fmt: skip
_DEVICE_PREFIX = tuple(f"{f}=" for f in _DEVICE_WITH_ARG) + (
    "--ftz=", "-ftz=", "--prec-div=", "-prec-div=", "--prec-sqrt=", "-prec-sqrt=", "--fmad=",
    "-fmad=", "--use_fast_math=",
)  # fmt: skip
_HOST_WITH_ARG = {"-I", "-isystem", "-D", "-U", "-include", "--include-path", "--define-macro",
                  "--system-include", "--undefine-macro", "-O", "--optimize"}  # fmt: skip
_HOST_ALIAS = {"--include-path": "-I", "--define-macro": "-D", "--system-include": "-isystem",
               "--undefine-macro": "-U", "--optimize": "-O"}  # fmt: skip


#: device-side definitions of torch's scalar types, for kernel templates instantiated on them
C10_TYPES = (
    "#include <c10/util/Half.h>\n#include <c10/util/BFloat16.h>\n#include <c10/util/complex.h>\n"
)


class NotSplit(Exception):
    """This compile is not one the split build handles (the reason is logged)."""


class OwnError(Exception):
    """The split's halves failed on an error proven the candidate's own (own_error.py);
    ``log`` is what their compilers said, ``first`` its first error line."""

    def __init__(self, log: str, first: str) -> None:
        super().__init__(first)
        self.log, self.first = log, first


def _failed(halves: dict[str, tuple[Path, int]], judge: Judge | None) -> NotSplit:
    """What a split whose halves (name: log, exit status) did not all compile raises:
    :class:`OwnError` when ``judge`` proves the failure the candidate's own, else
    :class:`NotSplit` with the first error line."""
    texts = [
        log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
        for log, code in halves.values()
        if code
    ]
    first = next((e for t in texts if (e := first_error(t))), None)
    if judge is not None and (own := judge.own(*texts)):
        raise OwnError("".join(texts), own)
    detail = ", ".join(f"{half} {code}" for half, (_, code) in halves.items())
    return NotSplit(f"split halves did not compile ({detail}): {first or 'no error line'}")


def host_flags(args: list[str], cuda_include: Path | None) -> list[str]:
    """The host compiler flags nvcc would give the host half of ``args``: include paths,
    macros, language standard, optimisation and ``-Xcompiler`` options."""
    flags: list[str] = []
    it = iter(args)
    for arg in it:
        if arg in _DEVICE_WITH_ARG:
            next(it, None)
        elif arg in _DEVICE_ONLY or arg.startswith(_DEVICE_PREFIX) or arg.endswith(".cu"):
            continue
        elif arg in ("-Xcompiler", "--compiler-options"):
            flags += [f for f in next(it, "").split(",") if f]
        elif arg.startswith(("-Xcompiler=", "--compiler-options=")):
            flags += [f for f in arg.split("=", 1)[1].split(",") if f]
        elif arg in _HOST_WITH_ARG:
            flag = _HOST_ALIAS.get(arg, arg)
            value = next(it, "")
            flags += [flag + value] if flag == "-O" else [flag, value]
        elif arg.startswith(("-I", "-D", "-U", "-O", "-std=", "--std=", "-isystem")) or arg == "-g":
            flags.append(arg.replace("--std=", "-std="))
        elif arg.startswith(("-rdc", "--relocatable-device-code", "--default-stream")) or arg in (
            "-dc", "--device-c", "-dlink", "--device-link",
        ):  # fmt: skip
            raise NotSplit(f"{arg} changes how device code links or what host code means")
        else:
            raise NotSplit(f"unknown nvcc flag {arg}")
    if cuda_include is not None:
        flags += ["-isystem", str(cuda_include)]
        if (cuda_include / "cccl").is_dir():
            flags += ["-isystem", str(cuda_include / "cccl")]
    return flags


def cuda_include(real: str, env: dict[str, str]) -> Path | None:
    """The CUDA toolkit's include directory (nvcc adds it to every compile it runs)."""
    roots = [Path(os.path.realpath(shutil.which(real) or real)).parent.parent]
    roots += [Path(env[v]) for v in ("CUDA_HOME", "CUDA_PATH") if env.get(v)]
    roots.append(Path("/usr/local/cuda"))
    for root in roots:
        for inc in (root / "include", root / "targets" / "x86_64-linux" / "include"):
            if (inc / "cuda_runtime.h").is_file():
                return inc
    return None


def _value(args: list[str], *names: str) -> str | None:
    for k, arg in enumerate(args):
        if arg in names and k + 1 < len(args):
            return args[k + 1]
        for name in names:
            if arg.startswith(name + "="):
                return arg.split("=", 1)[1]
    return None


def _symbols(obj: Path, env: dict[str, str]) -> tuple[set[str], set[str]]:
    """(defined, undefined) symbols of an object file, demangled, from ``nm -C``."""
    out = subprocess.run(["nm", "-C", str(obj)], capture_output=True, text=True, env=env)
    if out.returncode:
        raise NotSplit(f"nm {obj.name}: {out.stderr.strip()}")
    defined, undefined = set(), set()
    for line in out.stdout.splitlines():
        m = re.match(r"^(?:[0-9a-fA-F]+| *) (\S) (.+)$", line)  # demangled names have spaces
        if m:
            (undefined if m.group(1) in ("U", "w", "v") else defined).add(m.group(2))
    return defined, undefined


def split_compile(
    args: list[str], env: dict[str, str], real: str, lean: Path, judge: Judge | None = None
) -> int:
    """Compile the ``.cu`` of ``args`` as a torch-free device file (nvcc) and a host file
    (host compiler, precompiled lean header) at the same time, then join the two objects
    into the output nvcc would have written. Raises :class:`NotSplit` when not applicable,
    :class:`OwnError` when the halves fail on what ``judge`` proves the candidate's own."""
    from .splitcu import Refused, instantiations, split

    source = cu_source(args)
    output = _value(args, "-o", "--output-file")
    if source is None or output is None:
        raise NotSplit("not a -c compile of a .cu with -o")
    flags = host_flags(args, cuda_include(real, env))
    try:
        parts = split(source.read_text(encoding="utf-8", errors="replace"), str(source))
    except (Refused, OSError) as exc:
        raise NotSplit(str(exc)) from None
    work = Path(output + ".hk-split")
    work.mkdir(parents=True, exist_ok=True)
    dev_src, host_src = work / "device.cu", work / "host.cpp"
    dev_obj, host_obj = work / "device.o", work / "host.o"
    dev_src.write_text(parts.device, encoding="utf-8")
    host_src.write_text(parts.host, encoding="utf-8")
    dev_args: list[str] = []
    it = iter(args)
    for arg in it:
        if arg in ("-o", "--output-file", "--dependency-output", "-MF", "-MT"):
            next(it, None)
        elif arg in ("--generate-dependencies-with-compile", "-MD", "-MMD"):
            continue
        else:
            dev_args.append(str(dev_src) if Path(arg) == source else arg)
    cxx = _value(args, "-ccbin", "--compiler-bindir") or env.get("HK_REAL_CXX") or "c++"
    host_env = env | {"HK_REAL_CXX": cxx}
    host_cmd = pch.command([*flags, "-c", str(host_src), "-o", str(host_obj)], host_env, str(lean))
    dev_cmd = [real, *dev_args, "-o", str(dev_obj)]
    needed: set[str] | None = None  # the host object's undefined symbols
    with open(work / "device.log", "wb") as dev_log, open(work / "host.log", "wb") as host_log:
        if any(k.tparams for k in parts.kernels):
            # Kernel templates: the host object says which instantiations it launches, then
            # the device file is compiled with exactly those (one more step on the path).
            if subprocess.call(host_cmd, stdout=host_log, stderr=host_log):
                host_log.flush()
                raise _failed({"host": (work / "host.log", 1)}, judge)
            _, needed = _symbols(host_obj, env)
            extra = instantiations(parts.kernels, sorted(needed))
            prefix = C10_TYPES if re.search(r"\b(?:c10|at)::", extra) else ""
            dev_src.write_text(f"{prefix}{parts.device}\n{extra}\n", encoding="utf-8")
            codes = [subprocess.call(dev_cmd, stdout=dev_log, stderr=dev_log), 0]
        else:
            procs = [
                subprocess.Popen(dev_cmd, stdout=dev_log, stderr=dev_log),
                subprocess.Popen(host_cmd, stdout=host_log, stderr=host_log),
            ]
            codes = [p.wait() for p in procs]
    if any(codes):
        raise _failed(
            {"device": (work / "device.log", codes[0]), "host": (work / "host.log", codes[1])},
            judge,
        )
    defined, _ = _symbols(dev_obj, env)
    if needed is None:
        needed = _symbols(host_obj, env)[1]
    missing = {n for n in needed if any(k.pointer in n for k in parts.kernels)} - defined
    if missing:
        raise NotSplit(f"device object lacks {', '.join(sorted(missing))}")
    joined = subprocess.run(
        [cxx, "-r", "-nostdlib", "-o", output, str(dev_obj), str(host_obj)],
        capture_output=True,
        text=True,
    )
    if joined.returncode:
        raise NotSplit(f"joining the objects: {joined.stderr.strip()[:300]}")
    depfile = _value(args, "--dependency-output", "-MF")
    if depfile:
        Path(depfile).write_text(f"{_escape(output)}: {_escape(str(source))}\n", encoding="utf-8")
    return 0


def _escape(path: str) -> str:
    return path.replace(" ", "\\ ")


def _note(args: list[str], line: str) -> None:
    """Append how this ``.cu`` was compiled to ``hk_nvcc.log`` next to its object."""
    output = _value(args, "-o", "--output-file")
    if output:
        with open(Path(output).parent / "hk_nvcc.log", "a", encoding="utf-8") as fh:
            fh.write(line + "\n")


def run(args: list[str], env: dict[str, str]) -> int:
    """Compile like nvcc would; for a ``.cu``, try the split build, then the lean header,
    then the file as written, recording the way it went (routes.py)."""
    real = env.get("HK_REAL_NVCC") or "nvcc"
    lean = env.get("HK_LEAN_INCLUDE")
    source = cu_source(args)
    if not lean or source is None:
        return subprocess.call([real, *args])
    t0 = time.monotonic()
    record = Recorder(_value(args, "-o", "--output-file"), source)
    judge = Judge(real, args, source)
    if env.get("HK_SPLIT_CU", "1") != "0":
        record.enter("split")
        try:
            split_compile(args, env, real, Path(lean), judge)
            _note(args, f"split {time.monotonic() - t0:.2f}s")
            record.done(True)
            return 0
        except OwnError as exc:
            sys.stderr.write(exc.log)
            _note(args, f"split: the candidate's own error: {exc.first}")
            record.done(False, own_error=exc.first)
            return 1
        except NotSplit as exc:
            _note(args, f"not split: {exc}")
            record.fell_back("split", str(exc))
        except Exception as exc:  # noqa: BLE001 - a speed-up must never fail a build
            _note(args, f"not split: {type(exc).__name__}: {exc}")
            record.fell_back("split", f"{type(exc).__name__}: {exc}")
    record.enter("lean")
    tried = subprocess.run([real, "-I", lean, *args], capture_output=True)
    log = (tried.stdout + tried.stderr).decode("utf-8", errors="replace")
    own = judge.own(log) if tried.returncode else None
    if tried.returncode == 0 or own:
        sys.stdout.buffer.write(tried.stdout)
        sys.stderr.buffer.write(tried.stderr)
        seconds = f"{time.monotonic() - t0:.2f}s"
        _note(
            args,
            f"lean header: the candidate's own error: {own}" if own else f"lean header {seconds}",
        )
        record.done(not own, own_error=own)
        return tried.returncode
    record.fell_back("lean", first_error(log) or f"nvcc exited with {tried.returncode}")
    _note(args, "as written")
    record.enter("as written")
    code = subprocess.call([real, *args])
    record.done(code == 0)
    return code


def main() -> int:
    return run(sys.argv[1:], dict(os.environ))


if __name__ == "__main__":
    sys.exit(main())
