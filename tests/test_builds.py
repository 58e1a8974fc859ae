"""The compiler wrappers that make cold builds cheaper (no real compiler: a fake one records)."""

from __future__ import annotations

from pathlib import Path

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


def test_pch_applies_only_to_sources_that_start_with_the_torch_include(tmp_path: Path) -> None:
    main = tmp_path / "main.cpp"
    main.write_text("// generated\n/* by load_inline */\n#include <torch/extension.h>\nint f();\n")
    other = tmp_path / "other.cpp"
    other.write_text("#define NDEBUG\n#include <torch/extension.h>\n")
    args = [
        "-MMD",
        "-MF",
        "main.o.d",
        "-DTORCH_EXTENSION_NAME=abc",
        "-O3",
        "-c",
        str(main),
        "-o",
        "main.o",
    ]
    flags, source = pch.header_flags(args)
    assert flags == ["-O3"] and source == main
    env = {"HK_REAL_CXX": "g++", "HK_PCH_DIR": str(tmp_path / "pch"), "HK_PCH_TAG": "t"}
    folder = tmp_path / "pch" / pch.pch_key("g++", ["-O3"], "t")
    folder.mkdir(parents=True)
    (folder / "building").write_text("")  # someone is building it: do not start another
    assert pch.command(args, env) == ["g++", *args]  # not there yet: plain compile
    (folder / "hk_torch.h.gch").write_bytes(b"gch")
    assert pch.command(args, env)[:4] == [
        "g++",
        "-include",
        str(folder / "hk_torch.h"),
        "-Winvalid-pch",
    ]
    # A macro before the include could change the header: no PCH.
    other_args = [a if a != str(main) else str(other) for a in args]
    assert pch.command(other_args, env) == ["g++", *other_args]
    # Links and probes go through untouched; another torch build gets another key.
    assert pch.command(["-v"], env) == ["g++", "-v"]
    assert pch.pch_key("g++", ["-O3"], "other-torch") != folder.name


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


def test_cache_key_covers_the_build_route(tmp_path: Path) -> None:
    """A plain build and a wrapped build of the same code never share a cache entry, and the
    wrappers' own code is part of the key (a fixed wrapper builds afresh)."""
    from dataclasses import replace

    from pytest_hipkittens.backends import get_backend
    from pytest_hipkittens.evaluate.build import builder_id, cache_key
    from pytest_hipkittens.evaluate.config import EvalConfig

    cfg = EvalConfig(backend=get_backend("cpu"), build_cache=tmp_path)
    plain = replace(cfg, fast_builds=False)
    assert cfg.fast_builds
    assert cache_key("x = 1", cfg) != cache_key("x = 1", plain)
    assert cache_key("x = 1", cfg) == cache_key("x = 1", cfg)
    assert cache_key("x = 1", cfg) != cache_key("x = 2", cfg)
    assert len(builder_id()) == 16


def test_a_header_build_is_waited_for_only_while_its_builder_lives(tmp_path: Path) -> None:
    """Workers wait for running precompiled-header builds before timing (their compiler
    would share the cores), never for a claim a dead builder left behind."""
    import subprocess

    from pytest_hipkittens.evaluate.pch import building

    live = subprocess.Popen(["sleep", "30"])
    try:
        (tmp_path / "a").mkdir()
        (tmp_path / "a" / "building").write_text(str(live.pid))
        (tmp_path / "b").mkdir()
        (tmp_path / "b" / "building").write_text("999999999")  # no such process
        (tmp_path / "c").mkdir()
        (tmp_path / "c" / "building").write_text("")  # claimed, builder not started yet
        assert building(tmp_path) == [live.pid]
    finally:
        live.kill()
        live.wait()
    assert building(tmp_path) == []
