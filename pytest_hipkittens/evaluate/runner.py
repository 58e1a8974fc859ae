"""Evaluate candidates: build, verify against the reference, time — each sandboxed.

The parent side of evaluation (the data flow is in docs/architecture.md). For one problem it

1. loads the problem into the evaluator's trusted worker (reference.py / trusted.py, one
   process for all problems), which makes every trial's inputs on the device and runs the
   reference, once for all the problem's candidates;
2. builds the candidates of an attempt concurrently, each in its own worker (the
   compiler is the slow part and needs no device);
3. verifies and times them one at a time under a per-process device lock, relaying memory
   handles between the candidate's worker and the trusted worker (verify.py);
4. returns the result dict (schema.py), written by this process only.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from ..problems import Problem, ProblemError, top_level_names
from ..roofline import roofline
from .build import cache_key, compiler_env, wrapped
from .config import EvalConfig, ReferenceFailed
from .plausibility import implausible, impossible
from .reference import Reference, reference_key
from .routes import build_route
from .sandbox import WorkerDied, WorkerProcess, read_log, scrub_env, shm_root, trace
from .schema import STATUSES, base_result, fail, first_error
from .static import torch_fallback, uses_library
from .verify import Run, Verdict, phase, timing_record

__all__ = ["STATUSES", "EvalConfig", "Evaluator", "ReferenceFailed"]

#: One evaluation at a time per process: under xdist each worker owns one device.
DEVICE_LOCK = threading.Lock()

#: Workers kept started ahead of need (each holds an interpreter with torch imported,
#: ~0.5 GB): up to one per concurrent build.
MAX_SPARES = 16

#: Share of the forward's time PyTorch's own compute ops may take before it is not a kernel.
MAX_TORCH_SHARE = 0.5


#: Progress callback: (stage, candidate number or count).
Stage = Callable[[str, int], None]


def _caches(root: Path) -> dict[str, str]:
    """Caches that default to the home folder — read-only to an isolated worker, and
    possibly left there by a candidate — placed under ``root`` (set even where the user
    set them: their folder is read-only inside)."""
    return {
        "TRITON_CACHE_DIR": str(root / "triton"),
        "TORCHINDUCTOR_CACHE_DIR": str(root / "inductor"),
        "CUDA_CACHE_PATH": str(root / "cuda-jit"),
        "MIOPEN_USER_DB_PATH": str(root / "miopen"),
        "MIOPEN_CUSTOM_CACHE_DIR": str(root / "miopen"),
        "XDG_CACHE_HOME": str(root / "xdg"),
    }


class _Candidate:
    """A candidate's worker between build and evaluation."""

    def __init__(
        self,
        code: str,
        result: dict[str, Any],
        worker: WorkerProcess | None,
        log: Path,
        shm: str | None = None,
    ) -> None:
        self.code = code
        self.result = result
        self.worker = worker
        self.log = log
        self.shm = shm

    def close(self) -> None:
        if self.worker is not None:
            self.worker.close()
        if self.shm:
            shutil.rmtree(self.shm, ignore_errors=True)


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
        #: candidates' shared-memory files (cpu tensors) live under this folder only
        self.shm = tempfile.mkdtemp(prefix="hk-shm-", dir=shm_root())
        # Gone with the evaluator even when nobody calls close() (RAM, not disk).
        weakref.finalize(self, shutil.rmtree, self.shm, ignore_errors=True)
        self._ref: Reference | None = None
        self._trusted: WorkerProcess | None = None
        #: a trusted worker that failed while relaying a candidate: replaced before reuse
        self._bad_trusted: WorkerProcess | None = None
        self._ref_lock = threading.Lock()
        self._spares: list[tuple[str, WorkerProcess, Path]] = []
        self._closer = ThreadPoolExecutor(max_workers=4, thread_name_prefix="hk-close")
        self._spare_lock = threading.Lock()
        #: closes of evaluated candidates' workers still under way (timing waits for them)
        self._closing: list[Future[None]] = []
        #: start workers ahead of need (off for one-shot tools that evaluate a single candidate)
        self.spares_enabled = True

    # -- environment -----------------------------------------------------------------
    def _env(self, ext_dir: Path | None) -> dict[str, str]:
        env = scrub_env(os.environ, self.cfg.secret_patterns)
        # pytest rewrites this one for every test phase: it would make each spare worker's
        # environment stale (and discarded) by the next problem, and it is not the
        # candidate's business.
        env.pop("PYTEST_CURRENT_TEST", None)
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
        if self.cfg.isolation != "off":
            env.update(_caches(self.cfg.build_cache))
        if wrapped(self.cfg):
            env.update(
                compiler_env(
                    self.cfg.build_cache / "pch", self.cfg.backend.name, env.get("CXX") or "c++"
                )
            )
        return env

    def _start(self, env: dict[str, str]) -> tuple[WorkerProcess, Path]:
        run_dir = Path(tempfile.mkdtemp(prefix="worker-", dir=self.workdir))
        log = run_dir / "worker.log"
        self.cfg.build_cache.mkdir(parents=True, exist_ok=True)
        # its own folder, the build cache (builds, precompiled headers) and the
        # shared-memory folder of this evaluator's tensors
        writable: tuple[Path | str, ...] = (self.cfg.build_cache, self.shm)
        if env.get("HK_ROLE") == "trusted":
            # Builds nothing, and loads nothing a candidate could have left: its caches
            # (Triton, inductor for --hk-compile-baseline, …) are its own.
            writable = (self.shm,)
            if self.cfg.isolation != "off":
                env = {**env, **_caches(run_dir)}
        worker = WorkerProcess(
            log,
            env,
            memory_bytes=self.cfg.memory_bytes,
            cwd=run_dir,
            cpu_cores=self.cfg.cpu_cores,
            isolation=self.cfg.isolation,
            writable=writable,
        )
        return worker, log

    def _spawn(self) -> tuple[WorkerProcess, Path]:
        """A fresh worker, started ahead of time when possible.

        A worker's start-up (interpreter, ``import torch``: ``startup.boot`` in the result)
        costs ~1.5 s on a laptop and 4-5 s on a GPU host, more when many start at once; spares
        started in the background — one per concurrent build — hide it, so a build-cache hit
        costs little more than the candidate's import. Each worker still serves one
        candidate; spares whose environment no longer matches the settings are discarded.

        On the cpu backend the device is the host's cores: a spare starting while a
        candidate is timed would slow whichever side it overlaps, so spares are topped up
        after each evaluation (``_refill``) instead of when one is taken.
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
            if self.cfg.backend.device != "cpu":
                self._top_up(env, key)
        return worker, log

    def _refill(self) -> None:
        """Top the spares up between evaluations (the cpu backend's moment, see _spawn)."""
        if self.cfg.backend.device == "cpu" and self.spares_enabled:
            env, key = self._spare_env()
            with self._spare_lock:
                self._top_up(env, key)

    def _spare_env(self) -> tuple[dict[str, str], str]:
        env = self._env(None)
        return env, hashlib.sha256(json.dumps(env, sort_keys=True).encode()).hexdigest()

    def _top_up(self, env: dict[str, str], key: str) -> None:
        # One per concurrent build, and at least a few on a big host: a worker takes
        # seconds to start (~10 s on a GPU host under load) while a problem whose build is
        # cached takes about two, so a pool of one drains and every problem waits for one.
        want = min(MAX_SPARES, max(1, self.cfg.build_jobs, (os.cpu_count() or 1) // 4))
        while self.spares_enabled and len(self._spares) < want:
            self._spares.append((key, *self._start(env)))

    def prestart(self) -> None:
        """Start the trusted process and the spare workers now, e.g. while the model is still
        writing the first candidates, so nothing waits for interpreters later."""
        with self._ref_lock:
            self._trusted_worker()
        env, key = self._spare_env()
        with self._spare_lock:
            self._top_up(env, key)

    def _load(self, worker: WorkerProcess, problem: Problem, shm: str) -> dict[str, Any]:
        return worker.request(
            120,
            cmd="load",
            problem=str(problem.path),
            device=self.cfg.backend.device,
            precision=self.cfg.precision,
            threads=self.cfg.threads,
            flush_bytes=self.cfg.backend.flush_bytes,
            init_seed=self.cfg.seed,
            shm=shm,
        )

    # -- reference -------------------------------------------------------------------
    def seeds(self) -> tuple[int, list[int]]:
        """Init seed and one input seed per correctness trial, derived from ``cfg.seed``."""
        import random

        rng = random.Random(self.cfg.seed)
        return self.cfg.seed, [rng.randrange(2**31) for _ in range(self.cfg.correctness_trials)]

    def reference(self, problem: Problem) -> Reference:
        """The problem's trusted worker, its reference run for every trial seed.

        One trusted process serves the evaluator's whole life (its start-up, seconds with
        torch imported, is paid once): a new problem is loaded into it, freeing the device
        memory the last one's inputs and outputs held. One that failed is replaced.
        """
        key = reference_key(problem, self.cfg)
        with self._ref_lock:
            if (
                self._ref is not None
                and self._ref.key == key
                and self._ref.alive()
                and self._ref.worker is not self._bad_trusted
            ):
                return self._ref
            with DEVICE_LOCK:
                worker = self._trusted_worker()
                self._ref = None
                try:
                    self._ref = Reference(problem, worker, self.cfg, self.seeds()[1], self.shm)
                except ReferenceFailed:
                    self._trusted = None  # closed by Reference: start afresh next time
                    raise
            return self._ref

    def _trusted_worker(self) -> WorkerProcess:
        """The running trusted process, or a new one (for a dead or distrusted one)."""
        bad = self._trusted is not None and self._trusted is self._bad_trusted
        if self._trusted is None or bad or self._trusted.proc.poll() is not None:
            if self._trusted is not None:
                self._closer.submit(self._trusted.close)
            self._bad_trusted = None
            env = self._env(None)
            env["HK_ROLE"] = "trusted"
            self._trusted, _ = self._start(env)
        return self._trusted

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
        shm = tempfile.mkdtemp(prefix="cand-", dir=self.shm)
        code_path = log.parent / "candidate.py"
        code_path.write_text(code, encoding="utf-8")
        t0 = time.monotonic()
        try:
            answer = self._load(worker, problem, shm)
            result["startup"] = {"worker_ready_s": round(time.monotonic() - t0, 3)}
            if answer.get("isolation"):
                result["isolation"] = answer["isolation"]
            if answer.get("boot"):
                result["startup"]["boot"] = answer["boot"]
                trace(f"candidate boot {answer['boot']}")
            if answer.get("ok"):
                answer = worker.request(
                    self.cfg.build_timeout, cmd="build", code=str(code_path), ext_dir=str(ext_dir)
                )
        except WorkerDied as exc:
            worker.close()
            result["build_route"] = build_route(ext_dir, self.cfg)  # where it was stuck
            shutil.rmtree(shm, ignore_errors=True)
            # A killed build may leave a partial directory (and torch's lock file): drop it.
            shutil.rmtree(ext_dir, ignore_errors=True)
            status = "timeout" if exc.kind == "timeout" else "runtime_error"
            category = "build_timeout" if exc.kind == "timeout" else "runtime_error"
            fail(result, status, category, f"build: {exc}", read_log(log))
            return _Candidate(code, result, None, log)
        result["build_seconds"] = round(time.monotonic() - t0, 3)
        result["build_route"] = build_route(ext_dir, self.cfg)
        if not answer.get("ok"):
            worker.close()
            shutil.rmtree(shm, ignore_errors=True)
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
        return _Candidate(code, result, worker, log, shm)

    def _run(self, problem: Problem, cand: _Candidate) -> dict[str, Any]:
        result, worker = cand.result, cand.worker
        assert worker is not None
        t_wait = time.monotonic()
        ref = self.reference(problem)
        result.setdefault("startup", {}).update(
            reference_wait_s=round(time.monotonic() - t_wait, 3), reference_s=ref.seconds
        )
        seeds = ref.seeds
        result["hardware"] = ref.hardware
        run = Run(ref, worker, self.cfg, cand.shm)
        t0 = time.monotonic()
        phases: dict[str, float] = {}
        result["eval_phases"] = phases
        try:
            with DEVICE_LOCK:
                with phase(phases, "outputs"):
                    run.correctness(seeds, result["correctness"])
                with phase(phases, "audit"):
                    reason = self._audit(problem, run, result)
                if reason:
                    return fail(result, "rejected", "rejected", reason)
                # Nothing of the last candidate — its processes, their device memory and
                # contexts — may still be running while this one is timed.
                self._wait_closed()
                with phase(phases, "timing"):
                    answer = run.timing(seeds, self.cfg.timing_trials)
                result["timing"] = timing_record(answer, ref.work, self.cfg.backend.device)
                escaped = (result["timing"].get("crosscheck") or {}).get("escaped")
                if escaped:
                    raise Verdict("rejected", "rejected", f"timing not credible: {escaped}")
                if self.cfg.backend.device == "cpu" and "roofs" not in ref.hardware:
                    # No datasheet for a cpu: measured once per trusted process, when the
                    # first roofline needs them (not at every problem's start).
                    measured = ref.request(120, cmd="roofs")
                    if measured.get("ok"):
                        ref.hardware["roofs"] = measured["roofs"]
                result["roofline"] = roofline(
                    result["timing"], result["hardware"], self.cfg.precision
                )
                reasons = implausible(
                    result["timing"], result["hardware"], self.cfg.precision, self.cfg.max_speedup
                )
                if reasons:
                    with phase(phases, "recheck"):
                        self._reverify(run, result, seeds, reasons)
                speedup = result["timing"]["speedup"]
                if speedup < 1 and self.cfg.profile_slow:
                    with phase(phases, "profile"):
                        result["profile"] = self._profile_in(
                            run, speedup, result["timing"]["new_ms"]
                        )
        except Verdict as v:
            return fail(result, v.status, v.category, v.message, v.log)
        except WorkerDied as exc:
            status = "timeout" if exc.kind == "timeout" else "runtime_error"
            return fail(result, status, status, str(exc), read_log(cand.log))
        except ReferenceFailed as exc:
            # The trusted worker died while relaying this candidate's buffers and outputs:
            # charged to the candidate, and the next one gets a fresh trusted process.
            run.trusted_suspect = True
            return fail(
                result,
                "runtime_error",
                "runtime_error",
                f"the trusted worker failed while evaluating this candidate: {exc}",
            )
        finally:
            with DEVICE_LOCK:
                self._after(run)
            result["memory_gb"] = {k: round(v / 1e9, 2) for k, v in run.peaks.items()}
            result["eval_seconds"] = round(time.monotonic() - t0, 3)
            result["device_seconds"] = round(sum(phases.values()), 3)
        result["status"] = "correct"
        result["category"] = "correct" if speedup >= 1 else "slower"
        result["message"] = f"correct, {speedup:.2f}x vs PyTorch"
        return result

    def _after(self, run: Run) -> None:
        """Free the trusted side's view of a candidate; a trusted worker it upset is marked
        for replacement before the next reference is used (under the device lock)."""
        if not run.trusted_suspect:
            try:
                run.release()
            except ReferenceFailed:
                run.trusted_suspect = True
        if run.trusted_suspect:
            self._bad_trusted = run.ref.worker

    def _audit(self, problem: Problem, run: Run, result: dict[str, Any]) -> str | None:
        """Watch one forward (audit.py); the reason to reject it, if any. Records the evidence."""
        answer = run.audit()
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
        ref_ops = set(run.ref.work.get("ref_ops") or ())
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
        self, run: Run, result: dict[str, Any], seeds: list[int], reasons: list[str]
    ) -> None:
        """Second look at an implausible result: outputs again after timing, a longer re-time."""
        check: dict[str, Any] = {"flagged": True, "reasons": reasons}
        result["plausibility"] = check
        try:
            run.correctness(seeds, {})
        except Verdict as v:
            check["recheck"] = v.message
            raise Verdict(
                "rejected",
                "rejected",
                f"outputs changed after timing ({v.message}); the result was implausible: "
                f"{reasons[0]}",
            ) from None
        check["recheck"] = "passed"
        again = timing_record(
            run.timing(seeds, self.cfg.timing_trials * 3), run.ref.work, self.cfg.backend.device
        )
        escaped = (again.get("crosscheck") or {}).get("escaped")
        if escaped:
            raise Verdict("rejected", "rejected", f"timing not credible: {escaped}")
        check["retimed_speedup"] = again["speedup"]
        check["retimed_trials"] = again["trials"]
        reason = impossible(
            again, result["hardware"], self.cfg.precision, run.ref.work.get("ref_ops") or []
        )
        if reason:
            raise Verdict("rejected", "rejected", f"timing not credible: {reason}")

    def _profile_in(
        self, run: Run, speedup: float | None, measured_ms: float | None = None
    ) -> dict[str, Any]:
        """torch.profiler kernel table + findings, taken in the candidate's own worker."""
        from ..profile import findings

        try:
            answer = run.profile()
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
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="hk-eval") as evals,
        ):
            # The first problem's reference runs on the device while the builds compile.
            evals.submit(self._quiet_reference, pairs[0][0]) if pairs else None
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

    def _quiet_reference(self, problem: Problem) -> None:
        """Start a reference ahead of need; a failure is raised again where it is used."""
        with contextlib.suppress(ReferenceFailed):
            self.reference(problem)

    def _run_and_close(self, problem: Problem, cand: _Candidate) -> dict[str, Any]:
        try:
            self._run(problem, cand)
            self._refill()
        finally:
            # A worker's exit (its device context torn down) takes a while on a GPU: the
            # next candidate need not wait for it.
            try:
                self._closing.append(self._closer.submit(cand.close))
            except RuntimeError:  # the evaluator is closing
                cand.close()
        return cand.result

    def _wait_closed(self) -> None:
        """Wait for the workers of earlier candidates to be gone (reaper.py)."""
        while self._closing:
            with contextlib.suppress(Exception):  # reported where the close failed
                self._closing.pop(0).result()

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
        ref = self.reference(problem)
        cand = self._build(problem, code)
        if cand.worker is None:
            return None
        try:
            with DEVICE_LOCK:
                run = Run(ref, cand.worker, self.cfg, cand.shm)
                try:
                    run.fill(ref.seeds[0])
                    return self._profile_in(run, speedup)
                except (Verdict, ReferenceFailed) as exc:
                    return {"tool": "torch.profiler", "kernels": [], "findings": [str(exc)]}
                finally:
                    self._after(run)
        finally:
            cand.close()

    def verify_timing(self, problem: Problem, code: str, runs: int = 10) -> dict[str, Any] | None:
        """Nsight Compute's device time of the candidate's forward (external.py)."""
        from .external import verify_timing

        return verify_timing(self, problem, code, runs)

    def vendor_profile(
        self,
        problem: Problem,
        code: str,
        speedup: float | None = None,
        measured_ms: float | None = None,
        runs: int = 10,
    ) -> dict[str, Any] | None:
        """The backend's own profiler on the candidate's forward (external.py)."""
        from .external import vendor_profile

        return vendor_profile(self, problem, code, speedup, measured_ms, runs)

    def close(self) -> None:
        """End every worker (in parallel: each exit can take a second on a GPU)."""
        with self._spare_lock:
            self.spares_enabled = False
            for _, worker, _ in self._spares:
                self._closer.submit(worker.close)
            self._spares.clear()
        with self._ref_lock:
            if self._trusted is not None:
                self._closer.submit(self._trusted.close)
            self._trusted = self._ref = None
        self._closer.shutdown(wait=True)
        shutil.rmtree(self.shm, ignore_errors=True)
        if self._tmp is not None:
            self._tmp.cleanup()
