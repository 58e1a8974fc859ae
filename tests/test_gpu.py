"""The cuda backend end to end, on a machine with an NVIDIA GPU (skipped elsewhere, e.g. CI)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(
    not (torch.version.cuda and torch.cuda.is_available()),
    reason="needs a CUDA build of torch and an NVIDIA GPU",
)


def run_job(
    tmp_path: Path, build_cache: Path, *args: str
) -> tuple[subprocess.CompletedProcess, Path]:
    env = {k: v for k, v in os.environ.items() if k != "LLM_GATEWAY_KEY"}
    env["HK_BUILD_CACHE"] = str(build_cache)
    results = tmp_path / "results"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            str(REPO / "kernelbench_tests"),
            "--backend",
            "cuda",
            "--hk-samples",
            "1",
            "--hk-results",
            str(results),
            "-p",
            "no:cacheprovider",
            *args,
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    return proc, results


def test_cuda_replay_incorrect_then_fixed(tmp_path: Path, build_cache: Path) -> None:
    proc, results = run_job(tmp_path, build_cache, "--range", "4")
    assert proc.returncode == 0, proc.stdout[-3000:]
    tree = results / "level1" / "4_RMSNorm_affine"
    first = json.loads((tree / "result_1.json").read_text())
    best = json.loads((tree / "best_result.json").read_text())
    assert first["status"] == "incorrect" and best["status"] == "correct" and best["attempt"] == 2
    assert best["timing"]["method"] == "device_events_l2_flush"
    assert best["hardware"]["gpu"] and best["backend"] == "cuda"


@pytest.mark.skipif(
    not os.environ.get("THUNDERKITTENS_ROOT"), reason="THUNDERKITTENS_ROOT is not set"
)
def test_thunderkittens_sample_builds_and_is_correct(tmp_path: Path, build_cache: Path) -> None:
    proc, results = run_job(tmp_path, build_cache, "--range", "1", "--hk-attempts", "1")
    assert proc.returncode == 0, proc.stdout[-3000:]
    best = json.loads((results / "level1" / "1_ReLU" / "best_result.json").read_text())
    assert best["status"] == "correct"
