"""The parent's handle on the trusted process with one problem loaded (see trusted.py).

The process serves the evaluator's problems one after another; while a problem is
loaded, the inputs and reference outputs it holds on the device are made once and reused by
every candidate of that problem, and a candidate's evaluation only relays memory handles
through it.
"""

from __future__ import annotations

import time
from typing import Any

from ..problems import Problem
from .config import EvalConfig, ReferenceFailed
from .sandbox import WorkerDied, WorkerProcess, read_log, trace


class Reference:
    """A trusted worker with this problem loaded and its reference run for every seed.

    The worker process outlives it (the evaluator loads the next problem into it); a
    failure here closes the worker, since its state is no longer known.
    """

    def __init__(
        self,
        problem: Problem,
        worker: WorkerProcess,
        cfg: EvalConfig,
        seeds: list[int],
        shm: str | None,
    ) -> None:
        self.problem = problem
        self.worker = worker
        self.cfg = cfg
        self.seeds = seeds
        self.key = reference_key(problem, cfg)
        self.info: dict[str, Any] = {}
        self.work: dict[str, Any] = {}
        self.hardware: dict[str, Any] = {}
        self.seconds = 0.0
        t0 = time.monotonic()
        try:
            self._start(shm)
        except WorkerDied as exc:
            self.close()
            raise ReferenceFailed(
                f"{problem.key}: reference model {exc}: {read_log(worker.log_path, 500)}"
            ) from None
        except ReferenceFailed:
            self.close()
            raise
        self.seconds = round(time.monotonic() - t0, 3)

    def _start(self, shm: str | None) -> None:
        cfg = self.cfg
        loaded = self._ok(
            "load",
            self.worker.request(
                120,
                cmd="load",
                problem=str(self.problem.path),
                device=cfg.backend.device,
                precision=cfg.precision,
                threads=cfg.threads,
                flush_bytes=cfg.backend.flush_bytes,
                init_seed=cfg.seed,
                cpu_inputs=cfg.cpu_inputs,
                cache_share=cfg.cache_share,
                shm=shm,
            ),
        )
        if loaded.get("boot"):
            trace(f"trusted boot {loaded['boot']}")
        self.info = self._ok(
            "run",
            self.worker.request(cfg.run_timeout, cmd="reference", seeds=self.seeds),
        )
        work = self.worker.request(cfg.run_timeout, cmd="work", seed=self.seeds[0])
        self.work = work if work.get("ok") else {}
        hw = self.worker.request(60, cmd="hardware")
        self.hardware = hw.get("hardware", {}) if hw.get("ok") else {}

    def _ok(self, what: str, answer: dict[str, Any]) -> dict[str, Any]:
        if answer.get("ok"):
            return answer
        message = answer.get("message", "")
        if answer.get("category") == "oom":
            raise ReferenceFailed(
                f"{self.problem.key}: out of memory running the reference ({message})",
                status="oom",
            )
        raise ReferenceFailed(f"{self.problem.key}: reference model failed to {what}: {message}")

    @property
    def flags(self) -> dict[str, bool]:
        """What the reference itself does to its inputs (mutates them, returns a view)."""
        return {
            "mutates_inputs": bool(self.info.get("mutates_inputs")),
            "aliases_input": bool(self.info.get("aliases_input")),
        }

    def request(self, timeout: float, **msg: Any) -> dict[str, Any]:
        """A command to the trusted worker; its death is the harness's problem, not the
        candidate's, and is raised as ReferenceFailed."""
        try:
            return self.worker.request(timeout, **msg)
        except WorkerDied as exc:
            raise ReferenceFailed(
                f"{self.problem.key}: the trusted worker {exc}: {read_log(self.worker.log_path, 500)}"
            ) from None

    def alive(self) -> bool:
        return self.worker.proc.poll() is None

    def close(self) -> None:
        self.worker.close()


def reference_key(problem: Problem, cfg: EvalConfig) -> str:
    """What a reference's outputs depend on: the problem and the run's input settings."""
    return (
        f"{problem.sha256()[:16]}-{cfg.precision}-{cfg.seed}-{cfg.correctness_trials}"
        f"-{int(cfg.cpu_inputs)}"
    )
