"""The parent's view of torch and the GPUs without importing torch (backends/probe.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pytest_hipkittens.backends import BackendError, detect, get_backend
from pytest_hipkittens.backends.probe import gpu_count, nvidia_capabilities, torch_build
from pytest_hipkittens.evaluate.build import nvcc_path

GPUS = """\
0, GPU-aaaa1111-0000-0000-0000-000000000000, 9.0, [N/A]
1, GPU-bbbb2222-0000-0000-0000-000000000000, 9.0, [N/A]
2, GPU-cccc3333-0000-0000-0000-000000000000, 9.0, Disabled
"""


@pytest.fixture
def smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A stand-in ``nvidia-smi`` on PATH that prints what the test gives it."""

    def install(stdout: str, code: int = 0) -> None:
        (tmp_path / "out.txt").write_text(stdout)
        script = tmp_path / "nvidia-smi"
        script.write_text(f"#!/bin/sh\ncat {tmp_path / 'out.txt'}\nexit {code}\n")
        script.chmod(0o755)
        monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)

    return install


def test_torch_build_is_read_from_the_version_file() -> None:
    import torch

    build = torch_build()
    assert build == {
        "version": torch.__version__,
        "cuda": torch.version.cuda,
        "hip": getattr(torch.version, "hip", None),
    }


def test_capabilities_follow_cuda_visible_devices(smi) -> None:
    smi(GPUS)
    assert nvidia_capabilities() == [(9, 0)] * 3
    assert nvidia_capabilities("2,0") == [(9, 0)] * 2
    assert nvidia_capabilities("GPU-bbbb2222-0000-0000-0000-000000000000") == [(9, 0)]
    assert nvidia_capabilities("GPU-cccc") == [(9, 0)]  # a unique prefix, as CUDA allows
    assert nvidia_capabilities("1,7,0") == [(9, 0)]  # CUDA stops at the first bad ordinal
    assert nvidia_capabilities("") == []
    assert nvidia_capabilities("MIG-1234") is None  # not resolved here: torch decides


def test_what_only_cuda_can_order_or_count_is_left_to_torch(smi, monkeypatch) -> None:
    mixed = GPUS.replace("9.0, Disabled", "8.6, Disabled")
    smi(mixed)  # CUDA numbers mixed GPUs fastest first, nvidia-smi by bus
    assert nvidia_capabilities() is None
    monkeypatch.setenv("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    assert nvidia_capabilities("2") == [(8, 6)]
    smi(GPUS.replace("Disabled", "Enabled"))  # MIG: CUDA counts instances
    assert nvidia_capabilities() is None


def test_unusable_answers_mean_ask_torch(smi) -> None:
    smi(GPUS, code=9)
    assert nvidia_capabilities() is None
    smi("0, GPU-x, not-a-number, [N/A]\n")
    assert nvidia_capabilities() is None
    smi("")
    assert nvidia_capabilities() == []


def test_cuda_backend_on_a_cpu_torch_is_refused_in_one_line(smi) -> None:
    import torch

    if torch.version.cuda is not None:
        pytest.skip("needs a CPU build of torch")
    smi(GPUS)
    with pytest.raises(BackendError, match="no usable CUDA device") as info:
        get_backend("cuda")
    assert "\n" not in str(info.value)
    assert detect() == "cpu" and gpu_count("cuda") == 3


def test_nvcc_is_found_like_torch_finds_it(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CUDA_HOME", str(tmp_path / "cuda-12"))
    assert nvcc_path() == tmp_path / "cuda-12" / "bin" / "nvcc"
    monkeypatch.delenv("CUDA_HOME")
    monkeypatch.delenv("CUDA_PATH", raising=False)
    (tmp_path / "tk" / "bin").mkdir(parents=True)
    fake = tmp_path / "tk" / "bin" / "nvcc"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    assert nvcc_path() == fake


def test_the_parent_never_imports_torch(tmp_path: Path) -> None:
    """Choosing the backend, the build's cache key and the compiler wrappers' environment
    (what runs before the first worker can start) import no torch: on a GPU host that
    import is 4-5 s of every one-candidate evaluation."""
    code = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from pytest_hipkittens.backends import get_backend
        from pytest_hipkittens.evaluate import EvalConfig, Evaluator
        from pytest_hipkittens.evaluate.build import cache_key, compiler_env
        import pytest_hipkittens.cli.eval, pytest_hipkittens.plugin
        cfg = EvalConfig(backend=get_backend("auto"), build_cache=Path({str(tmp_path)!r}))
        cache_key("class ModelNew: pass", cfg)
        Evaluator(cfg, Path({str(tmp_path / "work")!r}))._env(None)
        compiler_env(Path({str(tmp_path / "pch")!r}), "cuda", "c++")
        assert "torch" not in sys.modules, sorted(m for m in sys.modules if "torch" in m)[:5]
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
