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
reader sees a complete file or none. GCC itself refuses a PCH whose flags do not match
(``-Winvalid-pch`` says so in the log) and then parses the header as usual, so a wrong PCH
costs time, never correctness. The key covers the real compiler, every flag that reaches
the header, and ``HK_PCH_TAG`` (torch version and header mtime, set by the harness).

Usage: ``CXX=<dir>/c++`` where that script runs ``python -m
pytest_hipkittens.evaluate.pch "$@"``; ``HK_REAL_CXX``, ``HK_PCH_DIR``, ``HK_PCH_TAG``,
``HK_LEAN_MAIN``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

HEADER = "hk_torch.h"
#: what a binding file needs of ``torch/extension.h``: tensors and factories, pybind11 with
#: torch's type casters, and ``wrap_pybind_function``; not the C++ frontend (nn, optim, data,
#: serialize), whose templates cost ~4 s of every compile that includes them.
LEAN_MAIN_HEADER = (
    "#pragma once\n// pytest-hipkittens: torch/extension.h for binding files\n"
    "#include <torch/types.h>\n#include <torch/csrc/utils/pybind.h>\n"
    "#include <torch/csrc/Exceptions.h>\n"
)
STALE_CLAIM_S = 1800
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


def _start_pch_build(real_cxx: str, flags: list[str], folder: Path) -> None:
    """Build ``folder/hk_torch.h.gch`` in the background unless someone already is."""
    folder.mkdir(parents=True, exist_ok=True)
    claim = folder / "building"
    try:
        if time.time() - claim.stat().st_mtime > STALE_CLAIM_S:
            claim.unlink()  # a builder that died (machine restart) must not block forever
    except OSError:
        pass
    try:
        fd = os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.close(fd)
    header = folder / HEADER
    header.write_text("#include <torch/extension.h>\n", encoding="utf-8")
    tmp = folder / f"{HEADER}.gch.{os.getpid()}.tmp"
    # mv only after a successful compile; the claim is dropped either way.
    script = (
        f"{shlex.quote(real_cxx)} {' '.join(shlex.quote(f) for f in flags)} -x c++-header "
        f"{shlex.quote(str(header))} -o {shlex.quote(str(tmp))} >{shlex.quote(str(folder / 'build.log'))} 2>&1 "
        f"&& mv -f {shlex.quote(str(tmp))} {shlex.quote(str(header))}.gch; rm -f {shlex.quote(str(tmp))} "
        f"{shlex.quote(str(claim))}"
    )
    proc = subprocess.Popen(
        ["/bin/sh", "-c", script],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    # Who holds the claim: a worker waits for a live builder (see building()), never for
    # a dead one's leftover claim.
    with contextlib.suppress(OSError):
        claim.write_text(str(proc.pid), encoding="ascii")


def building(root: Path) -> list[int]:
    """Pids of the header builds under ``root`` (HK_PCH_DIR) still running."""
    alive = []
    for claim in root.glob("*/building"):
        try:
            pid = int(claim.read_text(encoding="ascii").strip())
            os.kill(pid, 0)
        except (OSError, ValueError):
            continue
        alive.append(pid)
    return alive


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
    return run(sys.argv[1:], dict(os.environ))


if __name__ == "__main__":
    sys.exit(main())
