"""A C++ compiler wrapper that serves torch's extension headers precompiled.

Most of a cold ``load_inline`` build is the host compiler parsing ``torch/extension.h``
(ATen, c10, pybind11, Python: ~800 MB of GCC state) for the binding file. The harness points
``CXX`` at this wrapper; for a source whose first line of code is
``#include <torch/extension.h>`` — what ``load_inline`` writes at the top of ``main.cpp`` —
it adds ``-include hk_torch.h`` backed by a GCC precompiled header built with the same
flags, which is exactly equivalent to the source's own first include. Anything else (other
sources, links, ``-v`` probes) goes to the real compiler untouched.

Such a binding file is first compiled against a lean ``torch/extension.h`` (``HK_LEAN_MAIN``,
searched first): tensors, pybind11 and torch's casters without the C++ frontend, whose
templates GCC instantiates at the end of *every* file that includes them (an empty file
with the full precompiled header costs ~11 s at -O3 on the 2-core machine, ~2 s with
``torch/types.h``). If that compile fails, its output is discarded and the file is compiled
as written. The lean header removes declarations, it replaces none.

A missing header is never waited for: the first compile with a new flag set compiles as
usual and starts the PCH build in the background, in its own session so the worker's
process-group kill does not reach it; it is written to a temporary name and renamed, so a
reader sees a complete file or none. One builder at a time per flag set: the builder holds
``building.lock`` (``filelock``, an OS lock the kernel releases when its holder exits or
dies, so a killed builder never blocks the next one) for the whole build; a worker waits on
those locks before timing (``wait_for_builds``). GCC itself refuses a PCH whose flags do not match
(``-Winvalid-pch`` says so in the log) and then parses the header as usual, so a wrong PCH
costs time, never correctness. The key covers the real compiler, every flag that reaches
the header, and ``HK_PCH_TAG`` (torch version and header mtime, set by the harness).

Usage: ``CXX=<dir>/c++`` where that script runs ``python -m
pytest_hipkittens.evaluate.pch "$@"``; ``HK_REAL_CXX``, ``HK_PCH_DIR``, ``HK_PCH_TAG``,
``HK_LEAN_MAIN``. ``python -m pytest_hipkittens.evaluate.pch --hk-build-header FOLDER CXX
FLAGS...`` is the background builder.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from filelock import FileLock, Timeout

HEADER = "hk_torch.h"
#: what a binding file needs of ``torch/extension.h``: tensors and factories, pybind11 with
#: torch's type casters, and ``wrap_pybind_function``; not the C++ frontend (nn, optim, data,
#: serialize), whose templates cost ~4 s of every compile that includes them.
LEAN_MAIN_HEADER = (
    "#pragma once\n// pytest-hipkittens: torch/extension.h for binding files\n"
    "#include <torch/types.h>\n#include <torch/csrc/utils/pybind.h>\n"
    "#include <torch/csrc/Exceptions.h>\n"
)
#: the lock a header's builder holds while it builds (in the header's folder)
LOCK = "building.lock"
#: a header build still running after this long is killed: a hung compiler must not hold
#: the lock (and the workers waiting on it) forever
BUILD_LIMIT_S = 1800
#: first argument of the background builder's command line (no compiler takes it)
BUILD_ARG = "--hk-build-header"
FIRST_INCLUDE = re.compile(r"^\s*#\s*include\s*[<\"]torch/extension\.h[>\"]")
#: flags that do not reach the header's meaning: outputs, dependency files, the source.
_SKIP_WITH_ARG = {"-o", "-MF", "-MT", "-MQ"}
_SKIP = {"-c", "-MMD", "-MD", "-MP"}


def first_code_line(path: Path) -> str:
    """The source's first line that is not blank or a comment (None-safe: '' if unreadable)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            in_block = False
            for line in fh:
                text = line.strip()
                if in_block:
                    if "*/" in text:
                        in_block = False
                        text = text.split("*/", 1)[1].strip()
                    else:
                        continue
                if not text or text.startswith("//"):
                    continue
                if text.startswith("/*"):
                    in_block = "*/" not in text
                    continue
                return text
    except OSError:
        return ""
    return ""


def header_flags(args: list[str]) -> tuple[list[str], Path | None]:
    """Flags that shape the header, and the C++ source being compiled (None: not a compile)."""
    flags: list[str] = []
    source = None
    skip_next = False
    for arg in args:
        if skip_next:
            skip_next = False
            continue
        if arg in _SKIP_WITH_ARG:
            skip_next = True
            continue
        if arg in _SKIP or arg.startswith("-DTORCH_EXTENSION_NAME="):
            continue
        if not arg.startswith("-") and arg.endswith((".cpp", ".cc", ".cxx", ".C")):
            source = Path(arg)
            continue
        flags.append(arg)
    if "-c" not in args:
        return flags, None
    return flags, source


def pch_key(real_cxx: str, flags: list[str], tag: str) -> str:
    return hashlib.sha256("\0".join([real_cxx, tag, *flags]).encode()).hexdigest()[:20]


def _lock(path: Path, timeout: float) -> FileLock:
    """An OS lock on ``path`` (``timeout`` 0: one try). filelock 4 would fall back to a
    marker file on a filesystem without flock, which a killed builder leaves behind:
    there, no lock and no PCH (it costs time, never correctness)."""
    try:
        return FileLock(path, timeout=timeout, fallback_to_soft=False)
    except TypeError:  # filelock 3: no soft fallback to turn off
        return FileLock(path, timeout=timeout)


#: builders this process started; kept so the handle of a running child is not dropped
#: (which warns) while it builds
_BUILDERS: list[subprocess.Popen] = []


def _start_pch_build(real_cxx: str, flags: list[str], folder: Path) -> None:
    """Build ``folder/hk_torch.h.gch`` in the background unless someone already is.

    The builder (``build_header``, a process of its own) answers one line once it holds the
    folder's lock or found it held; waiting for that line means a worker that looks for
    running builds after this compile finds this one."""
    folder.mkdir(parents=True, exist_ok=True)
    _BUILDERS[:] = [p for p in _BUILDERS if p.poll() is None]  # reap finished ones
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest_hipkittens.evaluate.pch", BUILD_ARG, str(folder)]
        + [real_cxx, *flags],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    assert proc.stdout is not None
    with proc.stdout:
        proc.stdout.readline()  # "locked", "busy", or nothing if it could not start
    _BUILDERS.append(proc)


def build_header(folder: Path, real_cxx: str, flags: list[str]) -> int:
    """The background builder: hold ``folder``'s lock for the whole build and compile the
    header unless a builder before this one already did; say on stdout whether it holds
    the lock, then close stdout (the starter stops reading)."""
    lock = _lock(folder / LOCK, timeout=0)
    try:
        lock.acquire()
    except (Timeout, OSError, NotImplementedError):
        print("busy", flush=True)  # another builder has it (or this filesystem cannot lock)
        return 0
    try:
        print("locked", flush=True)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        gch = folder / f"{HEADER}.gch"
        if gch.is_file():
            return 0
        header = folder / HEADER
        header.write_text("#include <torch/extension.h>\n", encoding="utf-8")
        tmp = folder / f"{HEADER}.gch.{os.getpid()}.tmp"
        cmd = [real_cxx, *flags, "-x", "c++-header", str(header), "-o", str(tmp)]
        try:
            with open(folder / "build.log", "wb") as log:
                done = subprocess.run(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    timeout=BUILD_LIMIT_S,
                )
            if done.returncode == 0:
                os.replace(tmp, gch)  # readers see a complete file or none
        except (OSError, subprocess.TimeoutExpired):
            pass  # no PCH: compiles go on parsing the header
        finally:
            tmp.unlink(missing_ok=True)
        return 0
    finally:
        lock.release()


def _held(path: Path) -> bool:
    """Whether a builder holds the lock file ``path`` now."""
    lock = _lock(path, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        return True
    except (OSError, NotImplementedError):
        return False
    lock.release()
    return False


def building(root: Path) -> list[Path]:
    """The header folders under ``root`` (HK_PCH_DIR) whose build is running now."""
    return [path.parent for path in sorted(root.glob(f"*/{LOCK}")) if _held(path)]


def wait_for_builds(root: Path, limit_s: float) -> list[Path]:
    """Wait, ``limit_s`` in all, for the header builds under ``root`` to end — finished,
    failed, or their builder dead, which releases its lock — and return the folders still
    building at the deadline."""
    deadline = time.monotonic() + limit_s
    late = []
    for path in sorted(root.glob(f"*/{LOCK}")):
        lock = _lock(path, timeout=max(0.0, deadline - time.monotonic()))
        try:
            lock.acquire()
        except Timeout:
            late.append(path.parent)
            continue
        except (OSError, NotImplementedError):
            continue
        lock.release()
    return late


def command(args: list[str], env: dict[str, str], lean: str | None = None) -> list[str]:
    """The real compiler's command line for ``args``, with ``-I lean`` first when given
    (its ``torch/extension.h`` is a lean one) and the precompiled header when it applies."""
    real = env.get("HK_REAL_CXX") or "c++"
    if lean:
        args = ["-I", lean, *args]
    pch_dir = env.get("HK_PCH_DIR")
    flags, source = header_flags(args)
    if not pch_dir or not starts_with_torch(source):
        return [real, *args]
    folder = Path(pch_dir) / pch_key(real, flags, env.get("HK_PCH_TAG", ""))
    gch = folder / f"{HEADER}.gch"
    if gch.is_file():
        return [real, "-include", str(folder / HEADER), "-Winvalid-pch", *args]
    _start_pch_build(real, flags, folder)
    return [real, *args]


def starts_with_torch(source: Path | None) -> bool:
    """``source`` is a C++ file whose first line of code includes ``torch/extension.h``."""
    return source is not None and bool(FIRST_INCLUDE.match(first_code_line(source)))


def lean_include(folder: Path, header: str) -> Path:
    """Create (atomically) an include directory whose ``torch/extension.h`` is ``header``."""
    from ..results import write_if_changed

    write_if_changed(folder / "torch" / "extension.h", header)
    return folder


def lean_main_include(folder: Path) -> Path:
    """The include directory whose ``torch/extension.h`` holds what bindings need."""
    return lean_include(folder, LEAN_MAIN_HEADER)


def quietly(cmd: list[str]) -> bool:
    """Run a first-choice compile; pass its output on only if it succeeds (a failed attempt
    leaves no trace: the fallback's log is the one the user reads)."""
    first = subprocess.run(cmd, capture_output=True)
    if first.returncode:
        return False
    sys.stdout.buffer.write(first.stdout)
    sys.stderr.buffer.write(first.stderr)
    return True


def run(args: list[str], env: dict[str, str]) -> int:
    """Compile; a binding file first against the lean header, then as written."""
    lean = env.get("HK_LEAN_MAIN")
    if lean and starts_with_torch(header_flags(args)[1]) and quietly(command(args, env, lean)):
        return 0
    cmd = command(args, env)
    os.execvp(cmd[0], cmd)
    return 127  # not reached


def main() -> int:
    if sys.argv[1:2] == [BUILD_ARG]:
        return build_header(Path(sys.argv[2]), sys.argv[3], sys.argv[4:])
    return run(sys.argv[1:], dict(os.environ))


if __name__ == "__main__":
    sys.exit(main())
