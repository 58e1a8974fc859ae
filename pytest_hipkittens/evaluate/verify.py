"""One candidate's evaluation, relayed between its worker and the trusted process.

The parent never touches tensors: it passes memory handles (tensors.py) from the candidate's
worker to the trusted worker and reads back scalars. The steps, each under the device lock
(runner.py):

1. **correctness** — the candidate's worker allocates input buffers; per trial the trusted
   worker writes that seed's inputs into them, the candidate runs one forward and exports
   its outputs, and the trusted worker compares them with the reference on the device,
   checks the buffers still hold the inputs (no mutation) and, for a wrong output, whether
   it is the previous trial's answer (results cached across calls);
2. **audit** — who did the work in one forward (audit.py);
3. **timing** — reference (trusted) and candidate (its worker) take turns in rounds on the
   same inputs; before each round the buffers are refilled with another trial's inputs and
   after the last round and a few others picked at random the output of the round's last
   timed call is compared with that trial's reference, so a candidate that does less once
   it is timed is caught.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Iterator
from typing import Any

from .config import EvalConfig
from .crosscheck import judge
from .reference import Reference
from .sandbox import WorkerProcess
from .schema import Timing, failure_status
from .timing import decided, plan, speedup_interval, summarize, wall_check, wall_reason

#: Timing rounds whose last output is compared, besides the last round (chosen at random).
CHECKED_ROUNDS = 3


class Verdict(Exception):
    """Ends a candidate's evaluation: (status, category, message, log)."""

    def __init__(self, status: str, category: str, message: str, log: str = "") -> None:
        super().__init__(message)
        self.status, self.category, self.message, self.log = status, category, message, log


def _answer(reply: dict[str, Any], what: str = "") -> dict[str, Any]:
    """A candidate worker's reply, or the Verdict its failure is."""
    if reply.get("ok"):
        return reply
    category = reply.get("category", "runtime_error")
    message = (what + reply.get("message", "")) if what else reply.get("message", "")
    if category == "incorrect":
        raise Verdict("incorrect", "incorrect", message)
    raise Verdict(failure_status(category), category, message, reply.get("log", ""))


@contextlib.contextmanager
def phase(phases: dict[str, float], name: str) -> Iterator[None]:
    """Add the seconds spent in the block to ``phases[name]`` (where evaluation time goes)."""
    t0 = time.monotonic()
    try:
        yield
    finally:
        phases[name] = round(phases.get(name, 0.0) + time.monotonic() - t0, 3)


class Run:
    """The relay for one candidate against one reference."""

    def __init__(
        self, ref: Reference, worker: WorkerProcess, cfg: EvalConfig, folder: str | None = None
    ) -> None:
        self.ref = ref
        self.worker = worker
        self.cfg = cfg
        #: the candidate's own shared-memory folder (cpu): the trusted side maps nothing else
        self.folder = folder
        #: the trusted worker answered an error while relaying this candidate: replace it
        self.trusted_suspect = False
        self.buffers: Any = None
        self.filled: int | None = None
        #: most memory each process held (bytes; device memory on GPUs, RSS on the cpu)
        self.peaks = {"trusted": int(ref.info.get("peak_bytes") or 0), "candidate": 0}
        #: (parent's wall seconds, reported trial ms) of each timed round, per side
        self.rounds: dict[str, list[tuple[float, list[float]]]] = {"ref": [], "new": []}

    def _cand(self, timeout: float | None = None, **msg: Any) -> dict[str, Any]:
        if (
            msg.get("cmd") in ("forward", "timed", "audit", "profile")
            and self.ref.flags["mutates_inputs"]
        ):
            self.filled = None  # an in-place problem's call changed the buffers: refill
        return self.worker.request(timeout or self.cfg.run_timeout, **msg)

    def _trusted(self, **msg: Any) -> dict[str, Any]:
        """A relay request to the trusted worker; an error there taints it for later."""
        reply = self.ref.request(self.cfg.run_timeout, folder=self.folder, **msg)
        if not reply.get("ok"):
            self.trusted_suspect = True
        return reply

    def fill(self, seed: int) -> None:
        if self.buffers is None:
            alloc = _answer(self._cand(cmd="alloc", inputs=self.ref.info["inputs"]), "inputs: ")
            self.buffers = alloc["buffers"]
        if self.filled == seed:
            return
        filled = self._trusted(cmd="fill", seed=seed, buffers=self.buffers)
        if not filled.get("ok"):
            raise Verdict("runtime_error", "runtime_error", filled.get("message", "fill failed"))
        self.filled = seed

    def _check(self, seed: int, outputs: Any, previous: int | None = None) -> dict[str, Any]:
        atol, rtol = self.cfg.tolerance
        try:
            return self._trusted(
                cmd="check", seed=seed, outputs=outputs, atol=atol, rtol=rtol, previous=previous
            )
        finally:
            self._cand(cmd="release")

    def _behaviour(self, forward: dict[str, Any], check: dict[str, Any]) -> None:
        """Reject what the candidate did besides its outputs (unless the reference does it)."""
        flags = self.ref.flags
        if forward.get("threads_left"):
            names = ", ".join(forward["threads_left"][:3])
            raise Verdict(
                "rejected",
                "rejected",
                f"forward left threads running after it returned ({names}): work outside "
                "the timed region",
            )
        if check.get("mutated") and not flags["mutates_inputs"]:
            raise Verdict(
                "rejected",
                "rejected",
                "forward modifies its input tensors (the reference does not)",
            )
        aliased = forward.get("aliases_input") or check.get("aliased")
        if aliased and not flags["aliases_input"]:
            raise Verdict(
                "rejected",
                "rejected",
                "output shares memory with an input (the reference's does not)",
            )

    def correctness(self, seeds: list[int], record: dict[str, Any]) -> None:
        """Every trial's outputs against the reference; error figures into ``record``."""
        worst_abs = worst_rel = 0.0
        for i, seed in enumerate(seeds):
            self.fill(seed)
            forward = _answer(self._cand(cmd="forward"))
            check = self._check(seed, forward["outputs"], seeds[i - 1] if i else None)
            if not check.get("ok"):
                raise Verdict("runtime_error", "runtime_error", check.get("message", ""))
            self.peaks["candidate"] = max(self.peaks["candidate"], forward.get("peak_bytes") or 0)
            self.peaks["trusted"] = max(self.peaks["trusted"], check.get("peak_bytes") or 0)
            worst_abs = max(worst_abs, check.get("max_abs_err") or 0.0)
            worst_rel = max(worst_rel, check.get("max_rel_err") or 0.0)
            record.update(max_abs_err=worst_abs, max_rel_err=worst_rel)
            self._behaviour(forward, check)
            if not check["match"]:
                record["passed"] = i
                if check.get("stale"):
                    raise Verdict(
                        "rejected",
                        "rejected",
                        f"trial {i + 1}: returned the previous call's output for new "
                        "inputs (results cached across calls)",
                    )
                raise Verdict("incorrect", "incorrect", f"trial {i + 1}: {check['message']}")
        record["passed"] = len(seeds)

    def release(self) -> None:
        """The trusted side lets go of the candidate's buffers (before its worker exits)."""
        if self.buffers is not None:
            self.ref.request(self.cfg.run_timeout, cmd="release")
            self.buffers = self.filled = None

    def audit(self) -> dict[str, Any]:
        """The candidate worker's audit of one forward, as it answered (runner decides)."""
        return self._cand(cmd="audit")

    def profile(self) -> dict[str, Any]:
        """The candidate worker's torch.profiler table, as it answered."""
        return self._cand(cmd="profile")

    def _timed_new(self, seed: int, when: str, checked: bool = True, **msg: Any) -> dict[str, Any]:
        """The candidate's timed calls; the last one's output must match the reference.

        The parent's clock runs around the timed calls alone (``timed``); the last output
        is exported afterwards, and only some rounds' are compared (``checked``), chosen at
        random, so the candidate cannot tell which round it may skip work in.
        """
        t0 = time.monotonic()
        reply = self._cand(cmd="timed", **msg)
        if reply.get("ok"):
            check_times(reply, msg.get("trials"))
        if reply.get("ok") and reply.get("ms"):
            self.rounds["new"].append((time.monotonic() - t0, reply["ms"]))
        if reply.get("ok") and not checked:
            self._cand(cmd="release")
            return reply
        exported = self._cand(cmd="export_last") if reply.get("ok") else reply
        if exported.get("ok"):
            check = self._check(seed, exported["outputs"])
        elif exported.get("category") == "incorrect":
            self._cand(cmd="release")
            check = {"ok": True, "match": False, "message": exported.get("message")}
        else:
            _answer(exported, "timing: ")
        # An in-place problem's timed calls see inputs changed by the calls before.
        in_place = self.ref.flags["mutates_inputs"]
        if not in_place and not (check.get("ok") and check.get("match")):
            raise Verdict(
                "rejected",
                "rejected",
                f"the output of a timed call was wrong ({when}: {check.get('message')}): "
                "the candidate computes less once it is timed",
            )
        return reply

    def _ref_timed(self, **msg: Any) -> dict[str, Any]:
        """The reference's (or torch.compile's) warm-up or timed round in the trusted worker."""
        t0 = time.monotonic()
        reply = self._trusted(cmd="timed", **msg)
        if not reply.get("ok"):
            raise Verdict("runtime_error", "runtime_error", reply.get("message", ""))
        if msg.get("which") == "ref" and reply.get("ms"):
            self.rounds["ref"].append((time.monotonic() - t0, reply["ms"]))
        return reply

    def _credible(self) -> dict[str, float] | None:
        """Reject reported times the parent's clock contradicts (timing.wall_check); the
        figures of that check otherwise, for the result."""
        device = self.cfg.backend.device
        copy_s = 0.0
        if device == "cpu":
            # The cpu worker copies its inputs to private memory and its last output to
            # shared memory in every round; allowed for at a slow 1 GB/s.
            copy_s = (self.ref.work.get("bytes") or 0) / 1e9
        check = wall_check(self.rounds["new"], self.rounds["ref"], copy_s, device)
        reason = wall_reason(check, self.rounds["new"])
        if reason:
            raise Verdict("rejected", "rejected", f"timing not credible: {reason}")
        return check

    def crosscheck(self, seed: int) -> dict[str, Any] | None:
        """Both sides' device time under the profiler (crosscheck.py), on the last round's
        inputs; None when either side's profiler saw nothing (said in the result)."""
        if not self.cfg.crosscheck:
            return None
        ref = self._trusted(cmd="crosscheck", seed=seed, calls=CROSSCHECK_CALLS)
        new = self._cand(cmd="crosscheck", calls=CROSSCHECK_CALLS)
        if new.get("category") == "rejected":
            _answer(new, "cross-check: ")
        return {"ref": checked_crosscheck(ref), "new": checked_crosscheck(new)}

    def timing(self, seeds: list[int], trials: int) -> dict[str, Any]:
        """Reference and candidate ms in alternating rounds; rounds' last outputs checked.

        Round ``r`` runs on trial ``seeds[-1 - r]``'s inputs (refilled into the candidate's
        buffers), so the timed inputs change between rounds in a way the candidate cannot
        tell from the buffers' addresses.
        """
        cfg = self.cfg
        seed = seeds[-1]
        self.fill(seed)
        compile_info: dict[str, Any] = {}
        timers = ["ref", "new"]
        if cfg.compile_baseline:
            done = self.ref.request(cfg.run_timeout * 2, cmd="compile", seed=seed)
            if done.get("ok"):
                compile_info["compile_seconds"] = done["seconds"]
                timers.append("compiled")
            else:
                compile_info["compile_error"] = done.get("message")
        warm = {"warmup": max(1, cfg.warmup), "warmup_s": 0.2}
        est = []
        method = None
        for which in timers:
            if which == "new":
                reply = self._timed_new(seed, "warm-up", **warm)
            else:
                reply = self._ref_timed(which=which, seed=seed, **warm)
            est.append(reply["est_ms"])
            method = reply.get("method") or method
        samples: dict[str, list[float]] = {w: [] for w in timers}
        counts = plan(est, trials, cfg.timing_budget_s)
        pick = random.SystemRandom()
        checked = {
            len(counts) - 1,
            *pick.sample(range(len(counts)), min(CHECKED_ROUNDS, len(counts))),
        }

        def round_(r: int, count: int, check: bool) -> None:
            seed = seeds[-1 - r % len(seeds)]
            self.fill(seed)
            for which in timers:
                if which == "new":
                    reply = self._timed_new(seed, f"round {r + 1}", checked=check, trials=count)
                else:
                    reply = self._ref_timed(which=which, seed=seed, trials=count)
                samples[which].extend(reply["ms"])

        t_rounds = time.monotonic()
        for r, count in enumerate(counts):
            round_(r, count, r in checked)
        # Noise acted on: while the speedup's interval still holds 1x, more rounds (each
        # one's output checked), up to as many again and within the timing budget.
        extra = 0
        while (
            extra < len(counts)
            and not decided(speedup_interval(samples["ref"], samples["new"]))
            and time.monotonic() - t_rounds < cfg.timing_budget_s
        ):
            round_(len(counts) + extra, counts[-1], True)
            extra += 1
        wall = self._credible()
        cross = self.crosscheck(seeds[-1 - (len(counts) + extra - 1) % len(seeds)])
        return {
            "crosscheck": cross,
            "extra_rounds": extra,
            "wall_check": wall,
            "ref_ms": samples["ref"],
            "new_ms": samples["new"],
            "compile_ms": samples.get("compiled"),
            "method": method,
            **compile_info,
        }


#: Calls each side runs under the profiler (crosscheck.device_times).
CROSSCHECK_CALLS = 10


def _finite(value: Any) -> float | None:
    """``value`` as a float when it is a finite real number a worker sent (not a bool, a
    string or a NaN), else None."""
    import math

    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)  # an int of 400 digits does not fit
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def check_times(reply: dict[str, Any], trials: int | None) -> None:
    """The candidate's reported times are data: exactly ``trials`` finite milliseconds
    above zero (or one finite estimate for a warm-up), else a rejection — a zero, a NaN, a
    negative or a million-entry list must neither crash the parent nor buy a speedup."""

    def good(v: Any) -> bool:
        n = _finite(v)
        return n is not None and n > 0

    if trials is None:
        if not good(reply.get("est_ms")):
            raise Verdict("rejected", "rejected", "timing: a malformed warm-up estimate")
        return
    ms = reply.get("ms")
    if not isinstance(ms, list) or len(ms) != trials or not all(good(v) for v in ms):
        raise Verdict(
            "rejected", "rejected", f"timing: the worker did not report {trials} positive times"
        )


def checked_crosscheck(answer: Any) -> dict[str, Any]:
    """A worker's cross-check answer as plain, finite numbers — or a failed one.

    The candidate's worker answers from a process its code runs in: whatever it sends is
    data to check, never to trust into arithmetic (a string or a NaN must not break the
    evaluation, let alone the session)."""
    if not isinstance(answer, dict) or not answer.get("ok"):
        message = answer.get("message") if isinstance(answer, dict) else None
        return {"ok": False, "message": str(message or "no answer")[:300]}
    out: dict[str, Any] = {"ok": True}
    for key in ("busy_ms", "span_ms", "kernels_per_call"):
        value = _finite(answer.get(key))
        if value is None or value < 0:
            return {"ok": False, "message": f"malformed cross-check answer ({key})"}
        out[key] = value
    if out["busy_ms"] <= 0 or out["span_ms"] <= 0:
        return {"ok": False, "message": "the profiler saw no device time in the calls"}
    calls = answer.get("calls")
    if isinstance(calls, bool) or not isinstance(calls, int) or calls < CROSSCHECK_CALLS // 2:
        return {"ok": False, "message": f"the profiler saw {calls!r} of {CROSSCHECK_CALLS} calls"}
    out["calls"] = calls
    out["tool"] = str(answer.get("tool") or "profiler")[:80]
    return out


def timing_record(answer: dict[str, Any], work: dict[str, Any], device: str = "cuda") -> Timing:
    """The result's ``timing`` block from per-trial milliseconds."""
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
    if answer.get("wall_check"):
        timing["wall_check"] = {k: round(v, 4) for k, v in answer["wall_check"].items()}
    interval = speedup_interval(answer["ref_ms"], answer["new_ms"])
    timing["speedup_ci"] = [round(interval[0], 4), round(interval[1], 4)]
    timing["decided"] = decided(interval)
    timing["extra_rounds"] = answer.get("extra_rounds", 0)
    cross = answer.get("crosscheck")
    if cross:
        ref, new = cross["ref"], cross["new"]
        if ref.get("ok") and new.get("ok"):
            timing["crosscheck"] = judge(timing, ref, new, device)
        elif ref.get("ok") and device != "cpu":
            # The reference's profile came out and the candidate's did not: a candidate that
            # fails its cross-check must not escape it (it could hide work behind the flush
            # and then simply not be profiled). Unconfirmed, with the reason.
            message = new.get("message") or "no answer"
            timing["crosscheck"] = {
                "confirmed": False,
                "reason": f"the candidate's cross-check failed: {message}",
                "error": message,
            }
        else:
            failed = new if not new.get("ok") else ref
            timing["crosscheck"] = {"confirmed": None, "error": failed.get("message")}
    return timing
