"""Settings of one evaluator, and the error for a problem whose reference cannot run."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..backends import Backend
from .compare import TOLERANCES
from .sandbox import SECRET_PATTERNS


class ReferenceFailed(RuntimeError):
    """The problem's own reference model could not run: not the candidate's fault.

    ``status`` is ``oom`` when it did not fit the device's memory.
    """

    def __init__(self, message: str, status: str = "reference_error") -> None:
        super().__init__(message)
        self.status = status


@dataclass
class EvalConfig:
    backend: Backend
    build_cache: Path
    precision: str = "fp32"
    correctness_trials: int = 5
    seed: int = 42
    timing_trials: int = 100
    warmup: int = 3
    timing_budget_s: float = 10.0
    build_timeout: float = 900.0
    run_timeout: float = 300.0
    build_jobs: int = 2
    threads: int | None = None
    device_index: str | None = None
    #: cores the worker processes may use (cpu backend under xdist: each worker its own)
    cpu_cores: list[int] | None = None
    memory_bytes: int | None = None
    #: profile a correct-but-slower candidate in its evaluation worker (torch.profiler)
    profile_slow: bool = True
    atol: float | None = None
    rtol: float | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    #: accept forwards whose work PyTorch's own ops do (baselines, the project's tests)
    allow_torch_ops: bool = False
    #: reject candidates whose own code calls cuBLAS/hipBLASLt/rocBLAS/… (else recorded)
    forbid_libraries: bool = False
    #: speedups above this are re-verified and flagged (0: never)
    max_speedup: float = 10.0
    #: also time ``torch.compile`` of the reference: a second speedup column
    compile_baseline: bool = False
    #: precompiled torch headers for host compiles (pch.py), lean torch header for .cu (nvcc.py)
    fast_builds: bool = True
    #: environment variables never handed to a worker (fnmatch patterns)
    secret_patterns: tuple[str, ...] = SECRET_PATTERNS
    #: draw inputs on the CPU generator and move them (exact KernelBench parity; slower)
    cpu_inputs: bool = False
    #: workers' filesystem read-only but their scratch folders: auto | required | off
    isolation: str = "auto"
    #: share of device (or host) memory the trusted process may keep inputs and reference
    #: outputs cached in; beyond it they are recomputed per trial
    cache_share: float = 0.2
    #: the profiler's device time of both sides after timing (crosscheck.py)
    crosscheck: bool = True

    @property
    def tolerance(self) -> tuple[float, float]:
        base = TOLERANCES[self.precision]
        return (
            self.atol if self.atol is not None else base,
            self.rtol if self.rtol is not None else base,
        )
