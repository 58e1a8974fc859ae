"""The hip backend without AMD hardware: flags, fake devices, recorded rocprofv3 traces."""

from __future__ import annotations

import ast
import os
import stat
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from pytest_hipkittens.backends import BackendError, hip
from pytest_hipkittens.extract import extract_code
from pytest_hipkittens.problems import SAMPLES_DIR
from pytest_hipkittens.profile import (
    findings,
    parse_rocprof_kernel_trace,
    probe_window,
    rocprof_command,
    rocprof_table,
)

DATA = Path(__file__).parent / "data"
HIP_RESPONSES = SAMPLES_DIR / "responses" / "hip" / "level1"


def test_flags_follow_hipkittens_makefiles() -> None:
    assert hip.hip_flags("gfx942") == [
        "-O3",
        "-std=c++20",
        "--offload-arch=gfx942",
        "-w",
        "-DKITTENS_CDNA3",
    ]
    flags = hip.hip_flags("gfx950", "/opt/hk")
    assert "-DKITTENS_CDNA4" in flags and "--offload-arch=gfx950" in flags
    assert "-I/opt/hk/include" in flags and "-I/opt/hk/prototype" in flags
    assert hip.kittens_define("gfx90a") == "KITTENS_CDNA2" and hip.kittens_define("gfx1100") is None


@pytest.fixture
def fake_rocm(monkeypatch: pytest.MonkeyPatch):
    """A ROCm torch with one MI300X, as far as the backend can tell."""
    import torch

    monkeypatch.setattr(torch.version, "hip", "6.4.0", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(
        torch.cuda,
        "get_device_properties",
        lambda i: SimpleNamespace(gcnArchName="gfx942:sramecc+:xnack-", name="AMD Instinct MI300X"),
    )
    return torch


def test_arch_detection_and_environment(fake_rocm, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HIPKITTENS_ROOT", "/opt/HipKittens")
    backend = hip.make()
    assert backend.arch == "gfx942" and backend.device == "cuda" and backend.profiler == "rocprofv3"
    assert (
        backend.env["PYTORCH_ROCM_ARCH"] == "gfx942" and backend.env["HK_OFFLOAD_ARCH"] == "gfx942"
    )
    assert (
        backend.env["HK_KITTENS_DEFINE"] == "KITTENS_CDNA3"
        and backend.env["HIPKITTENS_ROOT"] == "/opt/HipKittens"
    )
    assert backend.pin_env("3") == {"HIP_VISIBLE_DEVICES": "3"}
    assert backend.flush_bytes == 512 << 20
    assert "HK_KITTENS_DEFINE" in backend.notes and "gfx942" in backend.notes
    assert hip.make("gfx950").env["HK_KITTENS_DEFINE"] == "KITTENS_CDNA4"


def test_hip_backend_without_rocm_is_one_line() -> None:
    import torch

    if getattr(torch.version, "hip", None):
        pytest.skip("this torch is a ROCm build")
    with pytest.raises(BackendError, match="not a ROCm build") as info:
        hip.make()
    assert "\n" not in str(info.value)


def test_rocprof_command_and_window() -> None:
    cmd = rocprof_command("/tmp/out", ["python", "-m", "x"])
    assert cmd[:3] == ["rocprofv3", "--kernel-trace", "--output-format"]
    assert cmd[cmd.index("--") + 1 :] == ["python", "-m", "x"]
    assert probe_window("noise\nHK_PROBE_WINDOW 10 20 5\n") == (10, 20, 5)
    assert probe_window("nothing") is None


def test_parse_mixed_trace_aggregates_and_flags_builtins() -> None:
    dispatches = parse_rocprof_kernel_trace(
        (DATA / "rocprof" / "mixed_kernel_trace.csv").read_text()
    )
    assert (
        len(dispatches) == 5
        and dispatches[0]["ns"] == 30000
        and dispatches[0]["grid"] == ["262144", "1", "1"]
    )
    table = rocprof_table(dispatches, (1_900_000, 2_100_000, 1), runs=1)  # the second forward only
    by_name = {k["name"]: k for k in table}
    assert set(by_name) == {
        "rmsnorm_hk(rmsnorm_globals)",
        "void at::native::elementwise_kernel<128, 4>(int, at::native::direct_copy_kernel_cuda)",
        "Cijk_Alik_Bljk_SB_MT64x64x16_SN_1LDSB0_APM1",
    }
    assert by_name["rmsnorm_hk(rmsnorm_globals)"]["ms"] == pytest.approx(0.03)
    assert not by_name["rmsnorm_hk(rmsnorm_globals)"]["builtin"]
    assert by_name["Cijk_Alik_Bljk_SB_MT64x64x16_SN_1LDSB0_APM1"]["builtin"]
    text = "\n".join(findings(table, 0.8, measured_ms=0.2, device_times=True))
    assert "direct_copy_kernel_cuda" in text and "33%" in text and "dtype cast" in text
    assert "launch and host overhead dominate" in text


def test_window_mismatch_falls_back_to_all_dispatches() -> None:
    dispatches = parse_rocprof_kernel_trace(
        (DATA / "rocprof" / "mixed_kernel_trace.csv").read_text()
    )
    table = rocprof_table(dispatches, (1, 2, 1), runs=1)  # no dispatch inside: clocks differ
    rms = next(k for k in table if k["name"].startswith("rmsnorm_hk"))
    assert rms["ms"] == pytest.approx(0.03)  # 2 dispatches over runs + warm-up = 2


def test_empty_trace() -> None:
    dispatches = parse_rocprof_kernel_trace(
        (DATA / "rocprof" / "empty_kernel_trace.csv").read_text()
    )
    assert dispatches == [] and rocprof_table(dispatches, None, 5) == []
    assert (
        findings([], 0.5)[-1]
        == "The profiler recorded no kernels for the candidate's forward pass."
    )


def test_trace_with_only_pytorch_kernels() -> None:
    dispatches = parse_rocprof_kernel_trace(
        (DATA / "rocprof" / "torch_only_kernel_trace.csv").read_text()
    )
    table = rocprof_table(dispatches, None, runs=1)
    assert all(k["builtin"] for k in table)
    text = "\n".join(findings(table, 0.5))
    assert "Built-in kernels take 100% of the time" in text and "Your own code" not in text


@pytest.mark.parametrize(
    "response", sorted(HIP_RESPONSES.glob("*/*.md")), ids=lambda p: p.parent.name
)
def test_hipkittens_responses_are_well_formed(response: Path, tmp_path: Path) -> None:
    code = extract_code(response.read_text()).code
    assert code is not None
    tree = ast.parse(code)
    assert any(isinstance(n, ast.ClassDef) and n.name == "ModelNew" for n in tree.body)
    assert (
        'os.environ["CXX"] = "hipcc"' in code
        and "HIPKITTENS_ROOT" in code
        and "HK_KITTENS_DEFINE" in code
    )
    source = code.split('r"""', 1)[1].split('"""', 1)[0]
    assert '#include "kittens.cuh"' in source and "rv_naive<float," in source
    # The C preprocessor accepts it (includes stripped: no ROCm headers on this machine).
    body = "\n".join(line for line in source.splitlines() if not line.startswith("#include"))
    (tmp_path / "k.cpp").write_text(body)
    proc = subprocess.run(
        ["cpp", "-P", "-undef", str(tmp_path / "k.cpp")], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert "UNVERIFIED" in (SAMPLES_DIR / "responses" / "hip" / "README.md").read_text()


def test_vendor_profile_runs_rocprofv3_on_the_probe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The teardown path end to end with a stand-in rocprofv3 (cpu device, pure-Python candidate)."""
    from dataclasses import replace

    from pytest_hipkittens.backends import get_backend
    from pytest_hipkittens.evaluate import EvalConfig, Evaluator
    from pytest_hipkittens.problems import load_problem_file

    from .conftest import SCALE_PROBLEM, python_candidate, write_problem

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tool = bin_dir / "rocprofv3"
    tool.write_text(f'#!/bin/sh\nexec {sys.executable} {DATA / "fake_rocprofv3.py"} "$@"\n')
    tool.chmod(tool.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    backend = replace(get_backend("cpu"), name="hip", profiler="rocprofv3")
    ev = Evaluator(
        EvalConfig(backend=backend, build_cache=tmp_path / "cache", run_timeout=60),
        tmp_path / "work",
    )
    try:
        problem = load_problem_file(write_problem(tmp_path / "kb", "1_Scale.py", SCALE_PROBLEM))
        profile = ev.vendor_profile(
            problem, python_candidate("x * self.factor"), speedup=0.5, measured_ms=0.01, runs=4
        )
    finally:
        ev.close()
    assert profile is not None and profile["tool"] == "rocprofv3", profile
    (kernel,) = profile["kernels"]
    assert kernel["name"] == "probe_kernel(float const*, float*)" and kernel["calls"] == 1
    assert kernel["ms"] == pytest.approx(0.002)
    assert any("2.00x slower" in f for f in profile["findings"])
