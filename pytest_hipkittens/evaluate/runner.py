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
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__
from ..backends import Backend
from ..problems import Problem, ProblemError, top_level_names
from .compare import TOLERANCES, compare_outputs
from .sandbox import Worker, WorkerDied, read_log, scrub_env
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

    @property
    def tolerance(self) -> tuple[float, float]:
        base = TOLERANCES[self.precision]
        return (
            self.atol if self.atol is not None else base,
            self.rtol if self.rtol is not None else base,
        )


@functools.lru_cache(maxsize=4)
def compiler_id(cxx: str) -> str:
    """First line of ``$CXX --version``: part of the build-cache key."""
    try:
        out = subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=30)
        return out.stdout.splitlines()[0] if out.stdout else cxx
    except (OSError, subprocess.SubprocessError):
        return cxx


def code_sha256(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


def cache_key(code: str, cfg: EvalConfig) -> str:
    """Content address of a build: source, backend flags, compiler, torch, python."""
    import torch

    parts = {
        "code": code_sha256(code),
        "backend": cfg.backend.describe(),
        "env": cfg.backend.env,
        "torch": str(torch.__version__),
        "python": platform.python_version(),
        "cxx": compiler_id(os.environ.get("CXX", "c++")),
    }
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
        self._ref_flags: dict[str, dict[str, Any]] = {}

    # -- environment -----------------------------------------------------------------
    def _env(self, ext_dir: Path | None) -> dict[str, str]:
        env = scrub_env(os.environ)
        env.update(self.cfg.backend.env)
        env.update(self.cfg.backend.pin_env(self.cfg.device_index))
        env.update(self.cfg.extra_env)
        env.setdefault(
            "MAX_JOBS", str(max(1, (os.cpu_count() or 2) // max(1, self.cfg.build_jobs)))
        )
        if self.cfg.threads:
            env["OMP_NUM_THREADS"] = str(self.cfg.threads)
        if ext_dir is not None:
            env["TORCH_EXTENSIONS_DIR"] = str(ext_dir)
        return env

    def _spawn(self, tag: str, ext_dir: Path | None) -> tuple[Worker, Path]:
        run_dir = Path(tempfile.mkdtemp(prefix=f"{tag}-", dir=self.workdir))
        log = run_dir / "worker.log"
        worker = Worker(
            log,
            self._env(ext_dir),
            memory_bytes=self.cfg.memory_bytes,
            cwd=run_dir,
            cpu_cores=self.cfg.cpu_cores,
        )
        return worker, log

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
            worker, log = self._spawn("ref", None)
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
        ext_dir = self.cfg.build_cache / cache_key(code, self.cfg)
        worker, log = self._spawn("cand", ext_dir)
        code_path = log.parent / "candidate.py"
        code_path.write_text(code, encoding="utf-8")
        t0 = time.monotonic()
        try:
            answer = self._load(worker, problem)
            if answer.get("ok"):
                answer = worker.request(self.cfg.build_timeout, cmd="build", code=str(code_path))
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
        import torch

        ref_dir, seeds = self.reference(problem)
        init_seed = self.cfg.seed
        out_dir = cand.log.parent
        atol, rtol = self.cfg.tolerance
        t0 = time.monotonic()
        try:
            with DEVICE_LOCK:
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
                worst_abs = worst_rel = 0.0
                previous: tuple[Any, Any] | None = None
                for i, seed in enumerate(seeds):
                    ref = self._ref_output(problem, ref_dir, seed)
                    try:
                        new = torch.load(out_dir / f"new_{seed}.pt", weights_only=True)
                    except Exception as exc:  # noqa: BLE001 - candidate returned junk
                        return fail(result, "incorrect", "incorrect", f"unreadable output: {exc}")
                    cmp = compare_outputs(ref, new, atol, rtol)
                    worst_abs = max(worst_abs, cmp.max_abs_err)
                    worst_rel = max(worst_rel, cmp.max_rel_err)
                    result["correctness"].update(max_abs_err=worst_abs, max_rel_err=worst_rel)
                    if not cmp.ok:
                        result["correctness"]["passed"] = i
                        if previous is not None and _repeats(previous, ref, new):
                            return fail(
                                result,
                                "rejected",
                                "rejected",
                                f"trial {i + 1}: returned the previous call's output for new "
                                "inputs (results cached across calls)",
                            )
                        return fail(
                            result, "incorrect", "incorrect", f"trial {i + 1}: {cmp.message}"
                        )
                    previous = (ref, new)
                result["correctness"]["passed"] = len(seeds)
                answer = worker.request(
                    self.cfg.run_timeout,
                    cmd="time",
                    seed=seeds[0],
                    init_seed=init_seed,
                    trials=self.cfg.timing_trials,
                    warmup=self.cfg.warmup,
                    budget_s=self.cfg.timing_budget_s,
                )
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
        work = self._work_cache.get(problem.sha256(), {})
        ref_s, new_s = summarize(answer["ref_ms"]), summarize(answer["new_ms"])
        speedup = ref_s["median"] / new_s["median"] if new_s["median"] > 0 else float("inf")
        result["timing"] = {
            "ref_ms": ref_s["median"],
            "new_ms": new_s["median"],
            "speedup": speedup,
            "trials": len(answer["new_ms"]),
            "cv": new_s["cv"],
            "ref_cv": ref_s["cv"],
            "method": answer.get("method"),
            "bytes": work.get("bytes"),
            "flops": work.get("flops"),
            "gbps": work["bytes"] / new_s["median"] / 1e6 if work.get("bytes") else None,
            "tflops": work["flops"] / new_s["median"] / 1e9 if work.get("flops") else None,
        }
        result["status"] = "correct"
        result["category"] = "correct" if speedup >= 1 else "slower"
        result["message"] = f"correct, {speedup:.2f}x vs PyTorch"
        if speedup < 1 and self.cfg.profile_slow:
            result["profile"] = self._profile_in(worker, speedup, new_s["median"])
        return result

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

    def evaluate_pairs(self, pairs: Sequence[tuple[Problem, str]]) -> list[dict[str, Any]]:
        """Build every (problem, code) concurrently, then verify and time them one by one.

        Compilers need no device, so ``build_jobs`` builds run at once while evaluation,
        which does, is serialised by the device lock. Results come back in input order.
        """
        jobs = max(1, min(self.cfg.build_jobs, len(pairs)))
        with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="hk-build") as pool:
            built = list(pool.map(lambda pc: self._build(*pc), pairs))
        results = []
        for (problem, _), cand in zip(pairs, built, strict=False):
            try:
                if cand.worker is not None:
                    self._run(problem, cand)
            finally:
                if cand.worker is not None:
                    cand.worker.close()
            results.append(cand.result)
        return results

    def evaluate_many(self, problem: Problem, codes: Sequence[str]) -> list[dict[str, Any]]:
        """Build all ``codes`` of one problem concurrently, then verify and time them."""
        return self.evaluate_pairs([(problem, c) for c in codes])

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
        if self._tmp is not None:
            self._tmp.cleanup()
