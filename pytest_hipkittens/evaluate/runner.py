"""Evaluate candidates: build, verify against the reference, time — each sandboxed.

The trusted side of evaluation. For one problem it

1. computes reference outputs once, in a worker that never sees candidate code;
2. builds the candidates of an attempt concurrently, each in its own worker (the
   compiler is the slow part and needs no device);
3. verifies and times them one at a time under a per-process device lock, comparing
   the tensors the worker hands back here, in the parent;
4. returns the result dict of DESIGN.md's contract, written by this process only.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__
from ..backends import Backend
from ..problems import Problem, ProblemError, top_level_names
from ..results import write_if_changed
from .compare import TOLERANCES, compare_outputs
from .plausibility import implausible
from .sandbox import SECRET_PATTERNS, Worker, WorkerDied, read_log, scrub_env
from .static import torch_fallback, uses_library
from .timing import summarize

STATUSES = (
    "correct",
    "incorrect",
    "compile_error",
    "runtime_error",
    "timeout",
    "gpu_crash",
    "rejected",
)

#: Reference outputs up to this size are held in the pytest process, not in files.
REF_MEMORY_LIMIT = 1 << 30

#: One evaluation at a time per process: under xdist each worker owns one device.
DEVICE_LOCK = threading.Lock()

#: Evaluations in flight per process: their device phases still take turns (DEVICE_LOCK),
#: but one candidate's output comparison runs while another's uses the device.
EVAL_THREADS = 2

#: Workers kept started ahead of need (each holds an interpreter with torch imported,
#: ~0.5 GB): up to one per concurrent build.
MAX_SPARES = 16

#: Share of the forward's time PyTorch's own compute ops may take before it is not a kernel.
MAX_TORCH_SHARE = 0.5


#: Progress callback: (stage, candidate number or count).
Stage = Callable[[str, int], None]


class ReferenceFailed(RuntimeError):
    """The problem's own reference model could not run: not the candidate's fault."""


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

    @property
    def tolerance(self) -> tuple[float, float]:
        base = TOLERANCES[self.precision]
        return (
            self.atol if self.atol is not None else base,
            self.rtol if self.rtol is not None else base,
        )


@functools.lru_cache(maxsize=4)
def compiler_id(cxx: str) -> str:
    """``$CXX --version`` (nvcc's first line is the same for every release, so all of it):
    part of the build-cache key."""
    try:
        out = subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=30)
        return out.stdout.strip() if out.stdout else cxx
    except (OSError, subprocess.SubprocessError):
        return cxx


@functools.lru_cache(maxsize=1)
def builder_id() -> str:
    """Hash of the compiler wrappers' code: a fixed or changed wrapper builds afresh instead
    of serving what an older one produced."""
    here = Path(__file__).parent
    digest = hashlib.sha256()
    for name in ("pch.py", "nvcc.py", "splitcu.py"):
        digest.update((here / name).read_bytes())
    return digest.hexdigest()[:16]


def nvcc_path() -> Path:
    from torch.utils.cpp_extension import CUDA_HOME

    return Path(CUDA_HOME or "/usr/local/cuda") / "bin" / "nvcc"


def _script(path: Path, module: str) -> Path:
    """An executable that runs ``python -m module "$@"`` (compiler variables take one path)."""
    write_if_changed(path, f'#!/bin/sh\nexec {sys.executable} -m {module} "$@"\n', 0o755)
    return path


@functools.lru_cache(maxsize=4)
def compiler_env(folder: Path, backend: str, cxx: str) -> dict[str, str]:
    """Route host compiles through the PCH and lean-binding-header wrapper (pch.py) and, on
    cuda, nvcc through the split / lean-header wrapper (nvcc.py)."""
    import torch

    from .nvcc import lean_include
    from .pch import lean_main_include

    header = Path(torch.__file__).parent / "include" / "torch" / "extension.h"
    stamp = int(header.stat().st_mtime) if header.exists() else 0
    env = {
        "CXX": str(_script(folder / "bin" / "c++", "pytest_hipkittens.evaluate.pch")),
        "HK_REAL_CXX": shutil.which(cxx) or cxx,
        "HK_PCH_DIR": str(folder),
        "HK_PCH_TAG": f"{torch.__version__}-{platform.python_version()}-{stamp}",
        "HK_LEAN_MAIN": str(lean_main_include(folder / "lean-main")),
    }
    if backend == "cuda":
        nvcc = nvcc_path()
        env.update(
            PYTORCH_NVCC=str(_script(folder / "bin" / "nvcc", "pytest_hipkittens.evaluate.nvcc")),
            HK_REAL_NVCC=str(nvcc),
            HK_LEAN_INCLUDE=str(lean_include(folder / "lean")),
        )
    return env


def _wrapped(cfg: EvalConfig) -> bool:
    """Builds go through the harness's compiler wrappers (compiler_env)."""
    return cfg.fast_builds and cfg.backend.name in ("cpu", "cuda")


def code_sha256(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


def cache_key(code: str, cfg: EvalConfig) -> str:
    """Content address of a build: source, backend flags, compilers, torch, python, and the
    harness's compiler wrappers (or none, with ``--hk-plain-builds``)."""
    import torch

    parts = {
        "code": code_sha256(code),
        "backend": cfg.backend.describe(),
        "env": cfg.backend.env,
        "torch": str(torch.__version__),
        "python": platform.python_version(),
        "cxx": compiler_id(os.environ.get("CXX", "c++")),
        "builder": builder_id() if _wrapped(cfg) else "plain",
    }
    if cfg.backend.name == "cuda":
        parts["nvcc"] = compiler_id(str(nvcc_path()))
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


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
                line = (
                    f"{Path(head.split(':')[0]).name}:{':'.join(head.split(':')[1:])}: error:{tail}"
                )
            return line[:300]
    return None


def base_result(code: str | None, cfg: EvalConfig) -> dict[str, Any]:
    import torch

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
            "torch": str(torch.__version__),
            "python": platform.python_version(),
        },
        "build_seconds": None,
        "eval_seconds": None,
        #: seconds the device was held (outputs, audit, timing) and per evaluation phase.
        "device_seconds": None,
        "eval_phases": {},
    }


def fail(result: dict[str, Any], status: str, category: str, message: str, log: str = "") -> dict:
    result.update(status=status, category=category, message=message, log=trim_log(log))
    return result


def _repeats(previous: tuple[Any, Any], ref: Any, new: Any) -> bool:
    """The candidate's output did not change although the reference's did: a cache."""
    prev_ref, prev_new = previous
    return (
        compare_outputs(prev_new, new, 0.0, 0.0).ok
        and not compare_outputs(prev_ref, ref, 0.0, 0.0).ok
    )


@contextlib.contextmanager
def _phase(phases: dict[str, float], name: str) -> Iterator[None]:
    """Add the seconds spent in the block to ``phases[name]`` (where evaluation time goes)."""
    t0 = time.monotonic()
    try:
        yield
    finally:
        phases[name] = round(phases.get(name, 0.0) + time.monotonic() - t0, 3)


def load_output(path: Path) -> tuple[Any, str | None]:
    """A candidate's output file: ``(value, None)``, or ``(None, why)`` when it is junk."""
    import torch

    try:
        return torch.load(path, weights_only=True), None
    except Exception as exc:  # noqa: BLE001 - the candidate decides what it returned
        return None, f"unreadable output: {exc}"


def _failure_status(category: str) -> str:
    """Status for a worker's failed answer: rejections and GPU faults keep their own."""
    return {"gpu_crash": "gpu_crash", "rejected": "rejected"}.get(category, "runtime_error")


class _Candidate:
    """A candidate's worker between build and evaluation."""

    def __init__(self, code: str, result: dict[str, Any], worker: Worker | None, log: Path) -> None:
        self.code = code
        self.result = result
        self.worker = worker
        self.log = log


class Evaluator:
    """Builds, verifies and times candidates for problems, one device per process."""

    def __init__(self, cfg: EvalConfig, workdir: Path | None = None) -> None:
        self.cfg = cfg
        self._tmp = None
        if workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="hk-eval-")
            workdir = Path(self._tmp.name)
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._refs: dict[str, tuple[Path, list[int]]] = {}
        #: reference outputs held in this process (their files deleted) when they are small
        self._ref_memory: dict[tuple[str, int], Any] = {}
        self._ref_lock = threading.Lock()
        self._hardware: dict[str, Any] | None = None
        self._work_cache: dict[str, dict[str, Any]] = {}
        self._spares: list[tuple[str, Worker, Path]] = []
        self._spare_lock = threading.Lock()
        #: start workers ahead of need (off for one-shot tools that evaluate a single candidate)
        self.spares_enabled = True
        self._ref_flags: dict[str, dict[str, Any]] = {}

    # -- environment -----------------------------------------------------------------
    def _env(self, ext_dir: Path | None) -> dict[str, str]:
        env = scrub_env(os.environ, self.cfg.secret_patterns)
        env.update(self.cfg.backend.env)
        env.update(self.cfg.backend.pin_env(self.cfg.device_index))
        env.update(self.cfg.extra_env)
        # At least 2: the binding file and the kernel file of one build compile side by side.
        env.setdefault(
            "MAX_JOBS", str(max(2, (os.cpu_count() or 2) // max(1, self.cfg.build_jobs)))
        )
        if self.cfg.threads:
            env["OMP_NUM_THREADS"] = str(self.cfg.threads)
        if ext_dir is not None:
            env["TORCH_EXTENSIONS_DIR"] = str(ext_dir)
        if _wrapped(self.cfg):
            env.update(
                compiler_env(
                    self.cfg.build_cache / "pch", self.cfg.backend.name, env.get("CXX") or "c++"
                )
            )
        return env

    def _start(self, env: dict[str, str]) -> tuple[Worker, Path]:
        run_dir = Path(tempfile.mkdtemp(prefix="worker-", dir=self.workdir))
        log = run_dir / "worker.log"
        worker = Worker(
            log,
            env,
            memory_bytes=self.cfg.memory_bytes,
            cwd=run_dir,
            cpu_cores=self.cfg.cpu_cores,
        )
        return worker, log

    def _spawn(self) -> tuple[Worker, Path]:
        """A fresh worker, started ahead of time when possible.

        A worker's start-up (interpreter, ``import torch``, the audit's dispatch-mode set-up)
        costs ~2-3 s, several times that when a batch of builds starts at once; spares
        started in the background — one per concurrent build — hide it, so a build-cache hit
        costs little more than the candidate's import. Each worker still serves one
        candidate; spares whose environment no longer matches the settings are discarded.
        """
        env, key = self._spare_env()
        with self._spare_lock:
            while self._spares:
                spare_key, worker, log = self._spares.pop(0)  # the oldest: most likely ready
                if spare_key == key and worker.proc.poll() is None:
                    break
                worker.close()
            else:
                worker, log = self._start(env)
            self._top_up(env, key)
        return worker, log

    def _spare_env(self) -> tuple[dict[str, str], str]:
        env = self._env(None)
        return env, hashlib.sha256(json.dumps(env, sort_keys=True).encode()).hexdigest()

    def _top_up(self, env: dict[str, str], key: str) -> None:
        want = min(MAX_SPARES, max(1, self.cfg.build_jobs))
        while self.spares_enabled and len(self._spares) < want:
            self._spares.append((key, *self._start(env)))

    def prestart(self) -> None:
        """Start the spare workers now, e.g. while the model is still writing the first
        candidates, so the first builds do not wait for interpreters."""
        env, key = self._spare_env()
        with self._spare_lock:
            self._top_up(env, key)

    def _load(self, worker: Worker, problem: Problem) -> dict[str, Any]:
        return worker.request(
            120,
            cmd="load",
            problem=str(problem.path),
            device=self.cfg.backend.device,
            precision=self.cfg.precision,
            threads=self.cfg.threads,
            flush_bytes=self.cfg.backend.flush_bytes,
        )

    def _outputs(
        self, worker: Worker, which: str, out_dir: Path, seeds: list[int]
    ) -> dict[str, Any]:
        """Have ``worker`` run the reference (``ref``) or the candidate (``new``) per seed."""
        return worker.request(
            self.cfg.run_timeout,
            cmd="outputs",
            which=which,
            dir=str(out_dir),
            seeds=seeds,
            init_seed=self.cfg.seed,
        )

    # -- reference -------------------------------------------------------------------
    def seeds(self) -> tuple[int, list[int]]:
        """Init seed and one input seed per correctness trial, derived from ``cfg.seed``."""
        import random

        rng = random.Random(self.cfg.seed)
        return self.cfg.seed, [rng.randrange(2**31) for _ in range(self.cfg.correctness_trials)]

    def reference(self, problem: Problem) -> tuple[Path, list[int]]:
        """Reference outputs for every trial, computed once per problem, apart from candidates."""
        key = f"{problem.sha256()[:16]}-{self.cfg.precision}-{self.cfg.seed}-{self.cfg.correctness_trials}"
        with self._ref_lock:
            if key in self._refs:
                return self._refs[key]
            out_dir = self.workdir / "ref" / key
            out_dir.mkdir(parents=True, exist_ok=True)
            init_seed, seeds = self.seeds()
            worker, log = self._spawn()
            try:
                with worker, DEVICE_LOCK:
                    answer = self._load(worker, problem)
                    if answer.get("ok"):
                        answer = self._outputs(worker, "ref", out_dir, seeds)
                    if answer.get("ok"):
                        self._ref_flags[problem.sha256()] = answer
                        work = worker.request(
                            self.cfg.run_timeout, cmd="work", seed=seeds[0], init_seed=init_seed
                        )
                        self._work_cache[problem.sha256()] = work if work.get("ok") else {}
                        ops = worker.request(
                            self.cfg.run_timeout,
                            cmd="audit",
                            which="ref",
                            seed=seeds[0],
                            init_seed=init_seed,
                        )
                        answer["ref_ops"] = [r["op"] for r in ops.get("torch_ops", [])]
            except WorkerDied as exc:
                raise ReferenceFailed(
                    f"{problem.key}: reference model {exc}: {read_log(log, 500)}"
                ) from None
            if not answer.get("ok"):
                raise ReferenceFailed(
                    f"{problem.key}: reference model failed: {answer.get('message')}"
                )
            self._keep_in_memory(key, out_dir, seeds)
            self._refs[key] = (out_dir, seeds)
            return self._refs[key]

    def _keep_in_memory(self, key: str, out_dir: Path, seeds: list[int]) -> None:
        """Move small reference outputs into this process and delete their files.

        Candidate workers run as the same user and could read files; what only this
        process holds, they cannot. Outputs above REF_MEMORY_LIMIT stay on disk.
        """
        import torch

        files = [out_dir / f"ref_{seed}.pt" for seed in seeds]
        if sum(f.stat().st_size for f in files) > REF_MEMORY_LIMIT:
            return
        for seed, f in zip(seeds, files, strict=True):
            self._ref_memory[(key, seed)] = torch.load(f, weights_only=True)
            f.unlink()

    def _ref_output(self, problem: Problem, ref_dir: Path, seed: int) -> Any:
        import torch

        held = self._ref_memory.get((ref_dir.name, seed))
        return (
            held if held is not None else torch.load(ref_dir / f"ref_{seed}.pt", weights_only=True)
        )

    # -- candidates ------------------------------------------------------------------
    def _build(self, problem: Problem, code: str) -> _Candidate:
        result = base_result(code, self.cfg)
        try:
            names = top_level_names(code, "candidate.py")
        except ProblemError as exc:
            return _Candidate(
                code, fail(result, "compile_error", "compile_error", str(exc)), None, Path()
            )
        if "ModelNew" not in names:
            fail(result, "rejected", "no_model_new", "candidate defines no class ModelNew")
            return _Candidate(code, result, None, Path())
        result["uses_library"] = uses_library(code)
        reason = torch_fallback(code)
        if reason is None and self.cfg.forbid_libraries and result["uses_library"]:
            reason = (
                f"calls {', '.join(result['uses_library'])} (vendor libraries are forbidden "
                "in this run: --hk-forbid-libraries)"
            )
        if reason and not (self.cfg.allow_torch_ops and "falls back" in reason):
            return _Candidate(code, fail(result, "rejected", "rejected", reason), None, Path())
        ext_dir = self.cfg.build_cache / cache_key(code, self.cfg)
        worker, log = self._spawn()
        code_path = log.parent / "candidate.py"
        code_path.write_text(code, encoding="utf-8")
        t0 = time.monotonic()
        try:
            answer = self._load(worker, problem)
            if answer.get("ok"):
                answer = worker.request(
                    self.cfg.build_timeout, cmd="build", code=str(code_path), ext_dir=str(ext_dir)
                )
        except WorkerDied as exc:
            worker.close()
            # A killed build may leave a partial directory (and torch's lock file): drop it.
            shutil.rmtree(ext_dir, ignore_errors=True)
            status = "timeout" if exc.kind == "timeout" else "runtime_error"
            category = "build_timeout" if exc.kind == "timeout" else "runtime_error"
            fail(result, status, category, f"build: {exc}", read_log(log))
            return _Candidate(code, result, None, log)
        result["build_seconds"] = round(time.monotonic() - t0, 3)
        if not answer.get("ok"):
            worker.close()
            category = answer.get("category", "runtime_error")
            status = {
                "compile_error": "compile_error",
                "no_model_new": "rejected",
                "rejected": "rejected",
            }.get(category, "runtime_error")
            log_text = answer.get("log") or read_log(log)
            message = answer.get("message", "")
            if category == "compile_error":
                message = first_error(log_text) or message
            return _Candidate(code, fail(result, status, category, message, log_text), None, log)
        return _Candidate(code, result, worker, log)

    def _run(self, problem: Problem, cand: _Candidate) -> dict[str, Any]:
        result, worker = cand.result, cand.worker
        assert worker is not None

        ref_dir, seeds = self.reference(problem)
        out_dir = cand.log.parent
        t0 = time.monotonic()
        phases: dict[str, float] = {}
        result["eval_phases"] = phases
        try:
            with DEVICE_LOCK, _phase(phases, "outputs"):
                if self._hardware is None:
                    hw = worker.request(60, cmd="hardware")
                    self._hardware = hw.get("hardware", {}) if hw.get("ok") else {}
                result["hardware"] = self._hardware
                answer = self._outputs(worker, "new", out_dir, seeds)
            if answer.get("ok"):
                reason = self._behaviour(problem, answer)
                if reason:
                    return fail(result, "rejected", "rejected", reason)
            if not answer.get("ok"):
                category = answer.get("category", "runtime_error")
                status = _failure_status(category)
                return fail(
                    result, status, category, answer.get("message", ""), answer.get("log", "")
                )
            # The comparison needs no device: another candidate's turn can use it meanwhile.
            with _phase(phases, "compare"):
                reason, status = self._compare(problem, result, ref_dir, out_dir, seeds)
            if reason:
                return fail(result, status, status, reason)
            with DEVICE_LOCK:
                with _phase(phases, "audit"):
                    reason = self._audit(problem, worker, result, seeds[0])
                if reason:
                    return fail(result, "rejected", "rejected", reason)
                with _phase(phases, "timing"):
                    answer = self._time(worker, seeds[0], self.cfg.timing_trials)
                if not answer.get("ok"):
                    category = answer.get("category", "runtime_error")
                    status = _failure_status(category)
                    return fail(
                        result,
                        status,
                        category,
                        "timing: " + answer.get("message", ""),
                        answer.get("log", ""),
                    )
        except WorkerDied as exc:
            status = "timeout" if exc.kind == "timeout" else "runtime_error"
            return fail(result, status, status, str(exc), read_log(cand.log))
        finally:
            result["eval_seconds"] = round(time.monotonic() - t0, 3)
            result["device_seconds"] = round(sum(v for k, v in phases.items() if k != "compare"), 3)
        result["timing"] = self._timing(problem, answer)
        reasons = implausible(
            result["timing"], result["hardware"], self.cfg.precision, self.cfg.max_speedup
        )
        if reasons:
            reason = self._reverify(problem, cand, seeds, reasons)
            if reason:
                return fail(result, "rejected", "rejected", reason)
        speedup = result["timing"]["speedup"]
        result["status"] = "correct"
        result["category"] = "correct" if speedup >= 1 else "slower"
        result["message"] = f"correct, {speedup:.2f}x vs PyTorch"
        if speedup < 1 and self.cfg.profile_slow:
            result["profile"] = self._profile_in(worker, speedup, result["timing"]["new_ms"])
        return result

    def _compare(
        self,
        problem: Problem,
        result: dict[str, Any],
        ref_dir: Path,
        out_dir: Path,
        seeds: list[int],
    ) -> tuple[str | None, str]:
        """Check each trial's output against the reference: (reason, status) of a failure."""
        atol, rtol = self.cfg.tolerance
        worst_abs = worst_rel = 0.0
        previous: tuple[Any, Any] | None = None
        for i, seed in enumerate(seeds):
            ref = self._ref_output(problem, ref_dir, seed)
            new, junk = load_output(out_dir / f"new_{seed}.pt")
            if junk:
                return f"trial {i + 1}: {junk}", "incorrect"
            cmp = compare_outputs(ref, new, atol, rtol)
            worst_abs = max(worst_abs, cmp.max_abs_err)
            worst_rel = max(worst_rel, cmp.max_rel_err)
            result["correctness"].update(max_abs_err=worst_abs, max_rel_err=worst_rel)
            if not cmp.ok:
                result["correctness"]["passed"] = i
                if previous is not None and _repeats(previous, ref, new):
                    return (
                        f"trial {i + 1}: returned the previous call's output for new "
                        "inputs (results cached across calls)",
                        "rejected",
                    )
                return f"trial {i + 1}: {cmp.message}", "incorrect"
            previous = (ref, new)
        result["correctness"]["passed"] = len(seeds)
        return None, "correct"

    def _time(self, worker: Worker, seed: int, trials: int) -> dict[str, Any]:
        return worker.request(
            self.cfg.run_timeout * (2 if self.cfg.compile_baseline else 1),
            cmd="time",
            seed=seed,
            init_seed=self.cfg.seed,
            trials=trials,
            warmup=self.cfg.warmup,
            budget_s=self.cfg.timing_budget_s,
            compile=self.cfg.compile_baseline,
        )

    def _timing(self, problem: Problem, answer: dict[str, Any]) -> dict[str, Any]:
        """The result's ``timing`` block from a worker's per-trial milliseconds."""
        work = self._work_cache.get(problem.sha256(), {})
        ref_s, new_s = summarize(answer["ref_ms"]), summarize(answer["new_ms"])
        new_ms = new_s["median"]
        timing = {
            "ref_ms": ref_s["median"],
            "new_ms": new_ms,
            "speedup": ref_s["median"] / new_ms if new_ms > 0 else float("inf"),
            "trials": len(answer["new_ms"]),
            "cv": new_s["cv"],
            "ref_cv": ref_s["cv"],
            "method": answer.get("method"),
            "bytes": work.get("bytes"),
            "flops": work.get("flops"),
            "gbps": work["bytes"] / new_ms / 1e6 if work.get("bytes") else None,
            "tflops": work["flops"] / new_ms / 1e9 if work.get("flops") else None,
        }
        if answer.get("compile_ms"):
            compile_ms = summarize(answer["compile_ms"])["median"]
            timing["compile_ms"] = compile_ms
            timing["speedup_vs_compile"] = compile_ms / new_ms if new_ms > 0 else float("inf")
        if answer.get("compile_error"):
            timing["compile_error"] = answer["compile_error"]
        return timing

    def _audit(
        self, problem: Problem, worker: Worker, result: dict[str, Any], seed: int
    ) -> str | None:
        """Watch one forward (audit.py); the reason to reject it, if any. Records the evidence."""
        answer = worker.request(
            self.cfg.run_timeout, cmd="audit", seed=seed, init_seed=self.cfg.seed
        )
        if not answer.get("ok"):
            if answer.get("category") == "rejected":
                return answer.get("message")
            result["audit"] = {"error": answer.get("message")}
            return f"the forward failed while audited: {answer.get('message')}"
        total = answer.get("total_ms") or 0.0
        share = min(1.0, answer["torch_ms"] / total) if total > 0 else 0.0
        result["audit"] = {
            "own_calls": answer["own_calls"],
            "torch_ops": answer["torch_ops"][:8],
            "torch_share": round(share, 3),
            "streams": answer.get("streams"),
        }
        late = (answer.get("streams") or {}).get("late")
        if late:
            what = (
                f"was still running {late[0]['late_us']:.0f} us after the forward returned"
                if late[0]["late_us"] > 0
                else "is never waited for (no stream wait or synchronize after its launch)"
            )
            return (
                f"work on stream {late[0]['stream']} ({late[0]['name']}) {what}: the "
                "harness's timer misses it (join side streams before returning)"
            )
        if self.cfg.allow_torch_ops:
            return None
        ops = ", ".join(f"{r['op']} x{r['calls']}" for r in answer["torch_ops"][:3])
        if not answer["own_calls"]:
            return "the forward runs no compiled code of its own" + (
                f": PyTorch ops do the work ({ops})" if ops else " (the work happens elsewhere)"
            )
        ref_ops = set(self._ref_flags.get(problem.sha256(), {}).get("ref_ops") or ())
        mine = {r["op"] for r in answer["torch_ops"]}
        if ref_ops and ref_ops <= mine:
            return (
                f"the forward runs the reference's own PyTorch ops ({', '.join(sorted(ref_ops))}) "
                "besides its kernel: the candidate's kernel must do the work"
            )
        if share >= MAX_TORCH_SHARE:
            return (
                f"PyTorch's own ops take {share:.0%} of the forward's time ({ops}): "
                "the candidate's kernel must do the work"
            )
        return None

    def _reverify(
        self, problem: Problem, cand: _Candidate, seeds: list[int], reasons: list[str]
    ) -> str | None:
        """Second look at an implausible result: outputs again after timing, a longer re-time."""
        result, worker = cand.result, cand.worker
        assert worker is not None
        check: dict[str, Any] = {"flagged": True, "reasons": reasons}
        result["plausibility"] = check
        out_dir = cand.log.parent / "recheck"
        out_dir.mkdir(exist_ok=True)
        ref_dir, _ = self.reference(problem)
        try:
            with DEVICE_LOCK:
                answer = self._outputs(worker, "new", out_dir, seeds)
            if not answer.get("ok"):
                check["recheck"] = f"failed: {answer.get('message')}"
                return f"implausible result failed its recheck: {answer.get('message')}"
            # The same comparison as the first look (outside the device lock, as there); its
            # error figures go to a scratch record, not over the first look's.
            why, _ = self._compare(problem, {"correctness": {}}, ref_dir, out_dir, seeds)
            if why is not None:
                check["recheck"] = why
                return (
                    f"outputs changed after timing ({why}); "
                    f"the result was implausible: {reasons[0]}"
                )
            check["recheck"] = "passed"
            with DEVICE_LOCK:
                retime = self._time(worker, seeds[0], self.cfg.timing_trials * 3)
        except WorkerDied as exc:
            check["recheck"] = f"failed: {exc}"
            return f"implausible result failed its recheck: {exc}"
        if retime.get("ok"):
            again = self._timing(problem, retime)
            check["retimed_speedup"] = again["speedup"]
            check["retimed_trials"] = again["trials"]
        return None

    def _profile_in(
        self, worker: Worker, speedup: float | None, measured_ms: float | None = None
    ) -> dict[str, Any]:
        """torch.profiler kernel table + findings, taken in the candidate's own worker."""
        from ..profile import findings

        try:
            with DEVICE_LOCK:
                answer = worker.request(
                    self.cfg.run_timeout,
                    cmd="profile",
                    seed=self.seeds()[1][0],
                    init_seed=self.cfg.seed,
                )
        except WorkerDied as exc:
            return {
                "tool": "torch.profiler",
                "kernels": [],
                "findings": [f"profiling failed: {exc}"],
            }
        if not answer.get("ok"):
            return {
                "tool": "torch.profiler",
                "kernels": [],
                "findings": [f"profiling failed: {answer.get('message')}"],
            }
        kernels = answer["kernels"]
        on_device = self.cfg.backend.device != "cpu"
        return {
            "tool": "torch.profiler",
            "kernels": kernels,
            "findings": findings(kernels, speedup, measured_ms, device_times=on_device),
        }

    def _behaviour(self, problem: Problem, answer: dict[str, Any]) -> str | None:
        """Reason to reject what the candidate did while computing its outputs, if any.

        Mutating inputs or returning a view of an input is only held against a candidate
        whose reference does not do the same.
        """
        ref = self._ref_flags.get(problem.sha256(), {})
        if answer.get("threads_left"):
            names = ", ".join(answer["threads_left"][:3])
            return f"forward left threads running after it returned ({names}): work outside the timed region"
        if answer.get("mutates_inputs") and not ref.get("mutates_inputs"):
            return "forward modifies its input tensors (the reference does not)"
        if answer.get("aliases_input") and not ref.get("aliases_input"):
            return "output shares memory with an input (the reference's does not)"
        return None

    def evaluate_pairs(
        self, pairs: Sequence[tuple[Problem, str]], on_stage: Stage | None = None
    ) -> list[dict[str, Any]]:
        """Build every (problem, code) concurrently; evaluate each as soon as it is built.

        Compilers need no device, so ``build_jobs`` builds run at once while the device,
        serialised by the device lock, verifies and times whatever finished building first —
        the GPU works while later candidates still compile. Results come back in input
        order. ``on_stage(stage, i)`` hears "building" once, then "verifying" per candidate.
        """
        if on_stage is not None:
            on_stage("building", len(pairs))
        results: list[dict[str, Any] | None] = [None] * len(pairs)
        jobs = max(1, min(self.cfg.build_jobs, len(pairs)))
        with (
            ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="hk-build") as pool,
            ThreadPoolExecutor(max_workers=EVAL_THREADS, thread_name_prefix="hk-eval") as evals,
        ):
            futures = {pool.submit(self._build, *pc): i for i, pc in enumerate(pairs)}
            runs = []
            done = 0
            for future in as_completed(futures):
                i = futures[future]
                cand = future.result()
                if cand.worker is None:
                    results[i] = cand.result
                    continue
                done += 1
                if on_stage is not None:
                    on_stage("verifying + timing", done)
                runs.append((i, evals.submit(self._run_and_close, pairs[i][0], cand)))
            for i, run in runs:
                results[i] = run.result()
        return [r for r in results if r is not None]

    def _run_and_close(self, problem: Problem, cand: _Candidate) -> dict[str, Any]:
        try:
            self._run(problem, cand)
        finally:
            if cand.worker is not None:
                cand.worker.close()
        return cand.result

    def evaluate_many(
        self, problem: Problem, codes: Sequence[str], on_stage: Stage | None = None
    ) -> list[dict[str, Any]]:
        """Build all ``codes`` of one problem concurrently, then verify and time them."""
        return self.evaluate_pairs([(problem, c) for c in codes], on_stage)

    def evaluate(self, problem: Problem, code: str) -> dict[str, Any]:
        return self.evaluate_many(problem, [code])[0]

    def profile(
        self, problem: Problem, code: str, speedup: float | None = None
    ) -> dict[str, Any] | None:
        """Kernel table and findings of a candidate's forward (a fresh worker; cache hit)."""
        cand = self._build(problem, code)
        if cand.worker is None:
            return None
        try:
            return self._profile_in(cand.worker, speedup)
        finally:
            cand.worker.close()

    def _probe(self, problem: Problem, code: str, runs: int) -> tuple[list[str], Path, Path] | None:
        """Command running the candidate's forward ``runs`` times for an external profiler.

        Builds first (a cache hit when the candidate was evaluated), so the profiler sees
        the forward passes and not the compiler. None when the candidate does not build.
        """
        cand = self._build(problem, code)
        if cand.worker is None:
            return None
        cand.worker.close()
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
            self.cfg.backend.device,
            "--precision",
            self.cfg.precision,
            "--seed",
            str(self.seeds()[1][0]),
            "--init-seed",
            str(self.cfg.seed),
            "--runs",
            str(runs),
        ]
        return probe, cand.log.parent, self.cfg.build_cache / cache_key(code, self.cfg)

    def _run_tool(
        self, cmd: list[str], cwd: Path, ext_dir: Path
    ) -> subprocess.CompletedProcess | None:
        try:
            with DEVICE_LOCK:
                return subprocess.run(
                    cmd,
                    capture_output=True,
                    text=True,
                    timeout=self.cfg.run_timeout * 2,
                    env=self._env(ext_dir),
                    cwd=cwd,
                    start_new_session=True,
                )
        except (OSError, subprocess.TimeoutExpired):
            return None

    def verify_timing(self, problem: Problem, code: str, runs: int = 10) -> dict[str, Any] | None:
        """Time the candidate's forward under Nsight Compute (``gpu__time_duration.sum``).

        An independent measurement of the kernels' device time, to cross-check the event
        timing: it sees every kernel on every stream, but not launch gaps, so it is a lower
        bound of what the events measure. Returns None where ncu is unavailable or fails.
        """
        from ..profile import ncu_command, parse_ncu_csv

        if self.cfg.backend.name != "cuda" or shutil.which("ncu") is None:
            return None
        probe = self._probe(problem, code, runs)
        if probe is None:
            return None
        proc = self._run_tool(ncu_command(probe[0]), probe[1], probe[2])
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
        self,
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

        if self.cfg.backend.profiler != "rocprofv3" or shutil.which("rocprofv3") is None:
            return None
        probe = self._probe(problem, code, runs)
        if probe is None:
            return None
        out_dir = probe[1] / "rocprof"
        proc = self._run_tool(rocprof_command(str(out_dir), probe[0]), probe[1], probe[2])
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

    def close(self) -> None:
        with self._spare_lock:
            self.spares_enabled = False
            for _, worker, _ in self._spares:
                worker.close()
            self._spares.clear()
        if self._tmp is not None:
            self._tmp.cleanup()
