"""External profilers on a candidate's forward: Nsight Compute timing, rocprofv3 traces.

Each runs the candidate's forward in a fresh process under the tool (``worker.py probe``),
holding the device lock so nothing else runs on the GPU meanwhile.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..problems import Problem
from .build import cache_key
from .schema import trim_log

if TYPE_CHECKING:
    from .runner import Evaluator


def _device_lock() -> Any:
    from .runner import DEVICE_LOCK

    return DEVICE_LOCK


def probe_command(
    ev: Evaluator, problem: Problem, code: str, runs: int
) -> tuple[list[str], Path, Path] | None:
    """Command running the candidate's forward ``runs`` times for an external profiler.

    Builds first (a cache hit when the candidate was evaluated), so the profiler sees
    the forward passes and not the compiler. None when the candidate does not build.
    """
    cand = ev._build(problem, code)
    if cand.worker is None:
        return None
    cand.close()
    probe = [
        sys.executable,
        "-m",
        "pytest_hipkittens.evaluate.worker",
        "probe",
        "--problem",
        str(problem.path),
        "--code",
        str(cand.log.parent / "candidate.py"),
        "--device",
        ev.cfg.backend.device,
        "--precision",
        ev.cfg.precision,
        "--seed",
        str(ev.seeds()[1][0]),
        "--init-seed",
        str(ev.cfg.seed),
        "--runs",
        str(runs),
    ]
    return probe, cand.log.parent, ev.cfg.build_cache / cache_key(code, ev.cfg)


def run_tool(
    ev: Evaluator, cmd: list[str], cwd: Path, ext_dir: Path
) -> subprocess.CompletedProcess | None:
    try:
        with _device_lock():
            return subprocess.run(
                cmd,
                capture_output=True,
                text=True,
                timeout=ev.cfg.run_timeout * 2,
                env=ev._env(ext_dir),
                cwd=cwd,
                start_new_session=True,
            )
    except (OSError, subprocess.TimeoutExpired):
        return None


def verify_timing(
    ev: Evaluator, problem: Problem, code: str, runs: int = 10
) -> dict[str, Any] | None:
    """Time the candidate's forward under Nsight Compute (``gpu__time_duration.sum``).

    An independent measurement of the kernels' device time, to cross-check the event
    timing: it sees every kernel on every stream, but not launch gaps, so it is a lower
    bound of what the events measure. Returns None where ncu is unavailable or fails.
    """
    from ..profile import ncu_command, parse_ncu_csv

    if ev.cfg.backend.name != "cuda" or shutil.which("ncu") is None:
        return None
    probe = probe_command(ev, problem, code, runs)
    if probe is None:
        return None
    proc = run_tool(ev, ncu_command(probe[0]), probe[1], probe[2])
    if proc is None:
        return None
    launches = parse_ncu_csv(proc.stdout)
    if proc.returncode != 0 or not launches:
        return {"ok": False, "message": trim_log(proc.stderr or proc.stdout, 800)}
    total_ns = sum(k["ns"] for k in launches)
    return {
        "ok": True,
        "ncu_ms": total_ns / runs / 1e6,
        "launches_per_run": len(launches) / runs,
    }


def vendor_profile(
    ev: Evaluator,
    problem: Problem,
    code: str,
    speedup: float | None = None,
    measured_ms: float | None = None,
    runs: int = 10,
) -> dict[str, Any] | None:
    """The backend's own profiler on the candidate's forward (rocprofv3 on hip).

    Returns a profile dict like the torch.profiler one, with ``tool`` naming the vendor
    profiler; None when this backend has none or the tool is not installed (the caller
    keeps the torch.profiler table and says so).
    """
    from ..profile import (
        findings,
        parse_rocprof_kernel_trace,
        probe_window,
        rocprof_command,
        rocprof_table,
    )

    if ev.cfg.backend.profiler != "rocprofv3" or shutil.which("rocprofv3") is None:
        return None
    probe = probe_command(ev, problem, code, runs)
    if probe is None:
        return None
    out_dir = probe[1] / "rocprof"
    proc = run_tool(ev, rocprof_command(str(out_dir), probe[0]), probe[1], probe[2])
    traces = sorted(out_dir.rglob("*kernel_trace.csv")) if out_dir.is_dir() else []
    if proc is None or proc.returncode != 0 or not traces:
        detail = trim_log((proc.stderr or proc.stdout) if proc else "timed out", 800)
        return {"tool": "rocprofv3", "kernels": [], "findings": [f"rocprofv3 failed: {detail}"]}
    dispatches = [
        d for t in traces for d in parse_rocprof_kernel_trace(t.read_text(encoding="utf-8"))
    ]
    kernels = rocprof_table(dispatches, probe_window(proc.stdout), runs)
    return {
        "tool": "rocprofv3",
        "kernels": kernels,
        "findings": findings(kernels, speedup, measured_ms, device_times=True),
    }
