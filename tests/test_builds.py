"""The compiler wrappers that make cold builds cheaper (no real compiler: a fake one records)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_hipkittens.evaluate import nvcc, pch

FAKE = """#!/bin/sh
echo "$@" >> {log}
case "$*" in *"{fail_on}"*) echo "lean header: error" >&2; exit 1;; esac
echo "ok $*"
"""


def fake_compiler(tmp_path: Path, fail_on: str = "\\x00") -> tuple[Path, Path]:
    log = tmp_path / "calls.log"
    exe = tmp_path / "fake-cc"
    exe.write_text(FAKE.format(log=log, fail_on=fail_on))
    exe.chmod(0o755)
    return exe, log


#: A host compiler whose header builds take ``delay`` seconds and write the output named last.
FAKE_HEADER_CXX = """#!/bin/sh
echo "$@" >> {log}
case "$*" in *c++-header*) sleep {delay}; for last; do :; done; echo gch > "$last";; esac
"""


def fake_header_compiler(tmp_path: Path, delay: float) -> tuple[Path, Path]:
    log = tmp_path / "cxx-calls.log"
    exe = tmp_path / "fake-cxx"
    exe.write_text(FAKE_HEADER_CXX.format(log=log, delay=delay))
    exe.chmod(0o755)
    return exe, log


def header_builds(log: Path) -> int:
    """How many precompiled-header compiles the fake compiler saw."""
    return sum("c++-header" in line for line in log.read_text().splitlines()) if log.exists() else 0


def binding_file(tmp_path: Path) -> tuple[Path, list[str]]:
    """A load_inline-style main.cpp and the compile line torch's builder gives it."""
    main = tmp_path / "main.cpp"
    main.write_text("// generated\n/* by load_inline */\n#include <torch/extension.h>\nint f();\n")
    args = ["-MMD", "-MF", "main.o.d", "-DTORCH_EXTENSION_NAME=abc", "-O3", "-c", str(main)]
    return main, [*args, "-o", "main.o"]


def test_pch_applies_only_to_sources_that_start_with_the_torch_include(tmp_path: Path) -> None:
    main, args = binding_file(tmp_path)
    other = tmp_path / "other.cpp"
    other.write_text("#define NDEBUG\n#include <torch/extension.h>\n")
    flags, source = pch.header_flags(args)
    assert flags == ["-O3"] and source == main
    cxx, log = fake_header_compiler(tmp_path, delay=0)
    root = tmp_path / "pch"
    env = {"HK_REAL_CXX": str(cxx), "HK_PCH_DIR": str(root), "HK_PCH_TAG": "t"}
    folder = root / pch.pch_key(str(cxx), ["-O3"], "t")
    assert pch.command(args, env) == [str(cxx), *args]  # not there yet: plain compile
    assert pch.wait_for_builds(root, 60) == []  # … and the header built in the background
    assert header_builds(log) == 1
    assert pch.command(args, env)[:4] == [
        str(cxx),
        "-include",
        str(folder / "hk_torch.h"),
        "-Winvalid-pch",
    ]
    # A macro before the include could change the header: no PCH.
    other_args = [a if a != str(main) else str(other) for a in args]
    assert pch.command(other_args, env) == [str(cxx), *other_args]
    # Links and probes go through untouched; another torch build gets another key.
    assert pch.command(["-v"], env) == [str(cxx), "-v"]
    assert pch.pch_key(str(cxx), ["-O3"], "other-torch") != folder.name
    assert header_builds(log) == 1


def test_lean_cuda_header_with_fallback(tmp_path: Path, capfd, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # k.cu does not exist: no split; hk_nvcc.log lands here
    exe, log = fake_compiler(tmp_path)
    lean = nvcc.lean_include(tmp_path / "lean")
    assert "torch/types.h" in (lean / "torch" / "extension.h").read_text()
    env = {"HK_REAL_NVCC": str(exe), "HK_LEAN_INCLUDE": str(lean)}
    assert nvcc.run(["-c", "k.cu", "-o", "k.o"], env) == 0
    assert log.read_text().splitlines() == [f"-I {lean} -c k.cu -o k.o"]
    # The lean header lacks something this kernel uses: its errors are dropped, the
    # candidate's own header is used, and the log is what plain nvcc says.
    exe, log = fake_compiler(
        tmp_path / "b" if (tmp_path / "b").mkdir() is None else tmp_path, str(lean)
    )
    capfd.readouterr()
    assert nvcc.run(["-c", "k.cu", "-o", "k.o"], env | {"HK_REAL_NVCC": str(exe)}) == 0
    assert log.read_text().splitlines() == [f"-I {lean} -c k.cu -o k.o", "-c k.cu -o k.o"]
    out = capfd.readouterr()
    assert "lean header: error" not in out.err and "ok -c k.cu" in out.out
    # Not a .cu compile (the link): straight through.
    assert nvcc.run(["--shared", "k.o", "-o", "k.so"], env | {"HK_REAL_NVCC": str(exe)}) == 0
    assert log.read_text().splitlines()[-1] == "--shared k.o -o k.so"


def test_cache_key_follows_what_goes_into_a_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keys differ when the build would differ — code, the backend's arch and flags, the
    compiler, plain or wrapped route, the wrappers' own code — and agree when only what the
    build does not see differs (where the cache is, trials, precision, timeouts, …)."""
    from dataclasses import replace

    from pytest_hipkittens.backends import get_backend
    from pytest_hipkittens.evaluate import build
    from pytest_hipkittens.evaluate.build import builder_id, cache_key
    from pytest_hipkittens.evaluate.config import EvalConfig

    cfg = EvalConfig(backend=get_backend("cpu"), build_cache=tmp_path / "cache")
    code = "x = 1\n"
    key = cache_key(code, cfg)
    assert cfg.fast_builds and len(builder_id()) == 16
    differing = {
        "code": cache_key("x = 2\n", cfg),
        "a byte of whitespace": cache_key(code + " ", cfg),
        "arch": cache_key(code, replace(cfg, backend=replace(cfg.backend, arch="znver4"))),
        "build flags": cache_key(
            code, replace(cfg, backend=replace(cfg.backend, env={"CXXFLAGS": "-O0"}))
        ),
        "plain route": cache_key(code, replace(cfg, fast_builds=False)),
    }
    other_cc = tmp_path / "other-cc"
    other_cc.write_text('#!/bin/sh\necho "other-cc 99.1"\n')
    other_cc.chmod(0o755)
    with monkeypatch.context() as m:
        m.setenv("CXX", str(other_cc))
        differing["compiler"] = cache_key(code, cfg)
    with monkeypatch.context() as m:
        m.setattr(build, "builder_id", lambda: "0123456789abcdef")  # a fixed wrapper
        differing["wrapper code"] = cache_key(code, cfg)
        # … which a plain build never runs: its key stays
        assert cache_key(code, replace(cfg, fast_builds=False)) == differing["plain route"]
    for what, other in differing.items():
        assert other != key, what
    assert len(set(differing.values())) == len(differing)
    unseen = replace(
        cfg,
        build_cache=tmp_path / "elsewhere",
        precision="bf16",
        correctness_trials=1,
        timing_trials=7,
        seed=1,
        build_timeout=5,
        run_timeout=5,
        build_jobs=9,
        isolation="off",
        allow_torch_ops=True,
        max_speedup=0,
    )
    assert cache_key(code, unseen) == key
    assert cache_key(code, cfg) == key  # and nothing in the key drifts between calls


def test_one_header_build_at_a_time_and_workers_wait_for_it(tmp_path: Path) -> None:
    """The first compile starts the build and returns once the builder holds the lock, so
    a worker looking right after sees it; compiles meanwhile start no second build; a
    worker's wait ends when the build does."""
    _, args = binding_file(tmp_path)
    cxx, log = fake_header_compiler(tmp_path, delay=3)
    root = tmp_path / "pch"
    env = {"HK_REAL_CXX": str(cxx), "HK_PCH_DIR": str(root), "HK_PCH_TAG": "t"}
    folder = root / pch.pch_key(str(cxx), ["-O3"], "t")
    assert pch.command(args, env) == [str(cxx), *args]
    assert pch.building(root) == [folder]
    assert pch.command(args, env) == [str(cxx), *args]  # still building: plain again
    assert pch.wait_for_builds(root, 0.2) == [folder]  # a deadline is kept
    assert pch.wait_for_builds(root, 60) == []
    assert pch.building(root) == [] and (folder / "hk_torch.h.gch").read_text() == "gch\n"
    assert header_builds(log) == 1


HOLDS_THE_LOCK = """
import sys, time
from filelock import FileLock
lock = FileLock(sys.argv[1])  # referenced: a collected FileLock lets go
lock.acquire()
print("held", flush=True)
time.sleep(120)
"""


def test_a_dead_builder_blocks_neither_workers_nor_the_next_build(tmp_path: Path) -> None:
    """The lock is the kernel's: a builder killed mid-build (OOM killer, a machine's
    shutdown, the worker's supervisor) releases it, with no stale claim to expire."""
    import subprocess
    import sys

    _, args = binding_file(tmp_path)
    cxx, log = fake_header_compiler(tmp_path, delay=0)
    root = tmp_path / "pch"
    env = {"HK_REAL_CXX": str(cxx), "HK_PCH_DIR": str(root), "HK_PCH_TAG": "t"}
    folder = root / pch.pch_key(str(cxx), ["-O3"], "t")
    folder.mkdir(parents=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDS_THE_LOCK, str(folder / pch.LOCK)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        assert pch.building(root) == [folder]
        assert pch.command(args, env) == [str(cxx), *args]  # no second builder meanwhile
        assert pch.wait_for_builds(root, 0.5) == [folder]
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    assert pch.building(root) == [] and pch.wait_for_builds(root, 5) == []
    assert header_builds(log) == 0
    assert pch.command(args, env) == [str(cxx), *args]  # the next compile builds it
    assert pch.wait_for_builds(root, 60) == [] and header_builds(log) == 1
    assert pch.command(args, env)[1:3] == ["-include", str(folder / "hk_torch.h")]
