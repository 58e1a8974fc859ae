"""The evaluation result record: its statuses and how a result dict starts and fails.

Every reader of results (results.py, report.py, plots.py, the CLIs) imports the statuses
from here, not from the runner.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from .. import __version__

if TYPE_CHECKING:
    from .config import EvalConfig

STATUSES = (
    "correct",
    "incorrect",
    "compile_error",
    "runtime_error",
    "timeout",
    "gpu_crash",
    "oom",
    "rejected",
)


# -- the record's shape ----------------------------------------------------------------
# One schema for everything that writes or reads a result (runner, verify, crosscheck,
# roofline, generation, results, report, compare). total=False: a result fills its blocks
# as the evaluation gets that far, and trees of older versions lack the newer keys.
# tests/test_schema.py holds real results against these declarations.


class Crosscheck(TypedDict, total=False):
    """``timing.crosscheck``: the profiler's view of both sides (crosscheck.judge)."""

    tool: str
    calls: int
    ref_device_ms: float  # busy: union of the call's kernels
    new_device_ms: float
    ref_span_ms: float  # first kernel's start to last kernel's end
    new_span_ms: float
    kernels_per_call: float
    device_speedup: float | None  # from the spans
    busy_speedup: float | None
    events_over_device: float | None
    ref_launch_ms: float  # what the events carry beyond the span
    new_launch_ms: float
    confirmed: bool | None
    reason: str | None
    escaped: str | None  # set: the candidate is rejected
    error: str | None  # the profiler saw nothing


class Timing(TypedDict, total=False):
    """``timing``: medians of alternating rounds (verify.timing_record)."""

    ref_ms: float
    new_ms: float
    speedup: float
    trials: int
    cv: float
    ref_cv: float
    method: str | None
    bytes: int | None
    flops: int | None
    gbps: float | None
    tflops: float | None
    compile_ms: float
    speedup_vs_compile: float
    compile_error: str
    wall_check: dict[str, float]
    speedup_ci: list[float]  # 95% bootstrap interval
    decided: bool  # the interval does not hold 1x
    extra_rounds: int
    crosscheck: Crosscheck
    # --hk-verify-timing: Nsight Compute on the best kernel (generation.verify_best)
    ncu: str
    ncu_ms: float
    ncu_launches_per_run: float
    events_over_ncu: float | None


class Rates(TypedDict, total=False):
    ms: float
    gbps: float
    gflops: float
    pct_of_peak: float | None


class Roof(TypedDict, total=False):
    gbps: float
    tflops: float
    source: str
    precision: str
    knee: float


class Roofline(TypedDict, total=False):
    """``roofline`` (roofline.roofline): the work, the roof, both sides' rates."""

    bytes: int
    flops: int
    intensity: float | None
    roof: Roof
    bound: str  # memory | compute
    ref: Rates | None
    new: Rates | None
    pct_of_peak: float | None


class Result(TypedDict, total=False):
    """A ``result_N.json`` / ``best_result.json``."""

    status: str | None  # one of STATUSES once evaluated
    category: str | None
    message: str
    log: str
    correctness: dict[str, Any]
    timing: Timing | None
    roofline: Roofline | None
    precision: str
    uses_library: list[str]
    profile: dict[str, Any] | None
    hardware: dict[str, Any]
    backend: str
    arch: str
    code_sha256: str | None
    versions: dict[str, str]
    build_seconds: float | None
    build_route: dict[str, Any] | None
    eval_seconds: float | None
    device_seconds: float | None
    eval_phases: dict[str, float]
    startup: dict[str, Any]
    memory_gb: dict[str, float]
    audit: dict[str, Any]
    plausibility: dict[str, Any]
    isolation: str
    # written by generation.py around the evaluation
    problem: str
    problem_path: str
    prompt_file: str
    index: int
    attempt: int
    sample: int
    extraction: dict[str, Any]
    llm: dict[str, Any]
    # best_result.json only
    attempts_used: int
    candidates: int
    solved_at_attempt: int | None  # first attempt with a correct kernel
    best_attempt: int | None  # the attempt the best kernel came from
    totals: dict[str, Any]


def code_sha256(code: str) -> str:
    import hashlib

    return hashlib.sha256(code.encode()).hexdigest()


def trim_log(text: str, limit: int = 4000) -> str:
    """Keep what explains a failure: from just before the first ``error:`` line, else the tail."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if "error:" in line.lower() and not line.lstrip().startswith(("FAILED", "RuntimeError")):
            text = "\n".join(lines[max(0, i - 2) :])
            return text if len(text) <= limit else text[:limit] + "\n…"
    return text if len(text) <= limit else "…" + text[-limit:]


def first_error(text: str) -> str | None:
    """The compiler's first ``error:`` line, with the long build path shortened."""
    for line in text.splitlines():
        if "error:" in line and not line.lstrip().startswith(("FAILED", "RuntimeError")):
            line = line.strip()
            head, sep, tail = line.partition(": error:")
            if sep:
                # gcc's file:line:col and nvcc's file(line) alike
                file, *where = head.split(":")
                line = f"{':'.join([Path(file).name, *where])}: error:{tail}"
            return line[:300]
    return None


def base_result(code: str | None, cfg: EvalConfig) -> Result:
    import platform

    from .build import torch_version

    atol, rtol = cfg.tolerance
    return {
        "status": None,
        "category": None,
        "message": "",
        "log": "",
        "correctness": {
            "trials": cfg.correctness_trials,
            "passed": 0,
            "max_abs_err": None,
            "max_rel_err": None,
            "atol": atol,
            "rtol": rtol,
        },
        "timing": None,
        "precision": cfg.precision,
        "uses_library": [],
        "profile": None,
        "hardware": {},
        "backend": cfg.backend.name,
        "arch": cfg.backend.arch,
        "code_sha256": code_sha256(code) if code else None,
        "versions": {
            "pytest_hipkittens": __version__,
            "torch": torch_version(),
            "python": platform.python_version(),
        },
        "build_seconds": None,
        #: which way each .cu compiled (routes.py); None: nothing was built
        "build_route": None,
        "eval_seconds": None,
        #: seconds the device was held (outputs, audit, timing) and per evaluation phase.
        "device_seconds": None,
        "eval_phases": {},
    }


def fail(result: dict[str, Any], status: str, category: str, message: str, log: str = "") -> dict:
    result.update(status=status, category=category, message=message, log=trim_log(log))
    return result


def failure_status(category: str) -> str:
    """Status for a worker's failed answer: rejections and GPU faults keep their own."""
    return {"gpu_crash": "gpu_crash", "rejected": "rejected", "oom": "oom"}.get(
        category, "runtime_error"
    )
