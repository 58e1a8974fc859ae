"""The evaluation result record: its statuses and how a result dict starts and fails.

Every reader of results (results.py, report.py, plots.py, the CLIs) imports the statuses
from here, not from the runner.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

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


def base_result(code: str | None, cfg: EvalConfig) -> dict[str, Any]:
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
