"""Console scripts that need no C++ build (hk-eval and friends with builds are in test_e2e)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from .conftest import REPO, fenced, python_candidate
from .test_plugin import responses_for


def batch(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pytest_hipkittens.cli.batch", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def clean_env(build_cache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("LLM_GATEWAY_KEY", "KERNELBENCH_DIR")}
    env["HK_BUILD_CACHE"] = str(build_cache)
    env["HK_ALLOW_TORCH_OPS"] = "1"  # the toy candidates are pure Python
    return env


def test_hk_batch_needs_the_key(tmp_path: Path, build_cache: Path) -> None:
    proc = batch(["1", "3"], REPO, clean_env(build_cache))
    assert proc.returncode == 2
    assert (
        proc.stderr.strip() == "error: LLM_GATEWAY_KEY is not set (export it, or pass --llm replay)"
    )
    proc = batch(["5", "3", "--llm", "replay"], REPO, clean_env(build_cache))
    assert proc.returncode == 2 and "empty range 5-3" in proc.stderr


def test_hk_batch_runs_the_range_and_logs(toy_kb: Path, tmp_path: Path, build_cache: Path) -> None:
    responses = responses_for(
        tmp_path / "responses", "level1/1_Scale", {"1": fenced(python_candidate("x * self.factor"))}
    )
    results = tmp_path / "results"
    proc = batch(
        [
            "1",
            "1",
            "--llm",
            "replay",
            "--kernelbench-dir",
            str(toy_kb),
            "--hk-responses",
            str(responses),
            "--backend",
            "cpu",
            "--hk-samples",
            "1",
            "--hk-results",
            str(results),
            "--hk-target-speedup",
            "0",
            "-p",
            "no:cacheprovider",
        ],
        REPO,
        clean_env(build_cache),
    )
    assert proc.returncode == 0, proc.stdout[-2000:]
    log = (results / "batch_run.log").read_text()
    assert "--range 1-1" in log and "1 passed" in log and "=== exit 0" in log
    assert (results / "level1" / "1_Scale" / "best_result.json").is_file()
