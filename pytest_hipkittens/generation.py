"""The generation loop: attempts × samples with reflection, for one problem.

Plain Python (no pytest), so the fixture, the CLI and tests share it. Per attempt it asks
the LLM for ``samples`` candidates concurrently, evaluates the distinct ones (identical
code is evaluated once per problem), records every prompt/response/code/result, keeps the
best (correct first, then fastest), and stops early once a correct candidate reaches the
target speedup. Between attempts it builds a reflection prompt from the best candidate of
the attempt: its category, the config's hint, a trimmed log, the max error when incorrect,
and profiler findings when it is correct but slower.
"""

from __future__ import annotations

import functools
import hashlib
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from .evaluate.schema import base_result
from .extract import extract_code
from .llm import LLMError, LLMRequest, LLMResponse
from .problems import Problem
from .prompts import initial_prompt, reflection_prompt
from .report import record_from_best
from .results import ProblemResults
from .session import HKSession

#: How far a failed candidate got: reflection and "best" prefer the furthest.
PROGRESS = {
    "no_code": 0,
    "no_model_new": 1,
    "compile_error": 2,
    "build_timeout": 2,
    "rejected": 3,
    "runtime_error": 4,
    "out_of_memory": 4,
    "gpu_crash": 4,
    "timeout": 4,
    "incorrect": 5,
}

Progress = Callable[[str, int, int], None]


class GenerationError(RuntimeError):
    """Generation could not go on (e.g. the gateway failed after retries)."""


def rank(result: dict[str, Any]) -> tuple[int, float]:
    """Sort key: correct before anything, then speedup; failures by how far they got."""
    if result.get("status") == "correct":
        return (10, float((result.get("timing") or {}).get("speedup") or 0.0))
    return (PROGRESS.get(result.get("category") or "", 0), float(result.get("attempt", 0)))


@dataclass
class Outcome:
    """What a problem's generation produced (also rebuilt from the results tree on resume)."""

    problem: str
    best: dict[str, Any]
    best_code: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    cached: bool = False

    @property
    def correct(self) -> bool:
        return self.best.get("status") == "correct"

    @property
    def speedup(self) -> float | None:
        return (self.best.get("timing") or {}).get("speedup")

    def explain(self) -> str:
        """Short failure message: category and last error."""
        b = self.best
        tried = b.get("candidates", len(self.history))
        return (
            f"{self.problem}: no correct kernel after {b.get('attempts_used', '?')} attempt(s), "
            f"{tried} candidate(s); best: {b.get('category')} — {b.get('message', '')}"
        )

    def properties(self) -> list[tuple[str, Any]]:
        """``record_property`` pairs for the JUnit XML and pytest-html."""
        t = self.best.get("timing") or {}
        return [
            ("hk_status", self.best.get("status")),
            ("hk_category", self.best.get("category")),
            ("hk_speedup", t.get("speedup")),
            ("hk_ref_ms", t.get("ref_ms")),
            ("hk_new_ms", t.get("new_ms")),
            ("hk_attempts_used", self.best.get("attempts_used")),
        ]

    def summary(self) -> dict[str, Any]:
        """Compact, JSON-able record for reports (crosses xdist on the test report)."""
        return record_from_best(self.best) | {"problem": self.problem, "cached": self.cached}


def _stage(say: Progress, attempt: int, stage: str, n: int) -> None:
    """Evaluator stages as progress: "building" carries a count, the others a sample."""
    say(
        f"building {n} candidate(s)" if stage == "building" else stage,
        attempt,
        0 if stage == "building" else n,
    )


def _sha(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


def _ask(
    session: HKSession, problem: Problem, prompt: str, attempt: int, samples: int
) -> list[LLMResponse]:
    messages = [{"role": "user", "content": prompt}]
    requests = [LLMRequest(messages, problem.key, attempt, s) for s in range(1, samples + 1)]
    with ThreadPoolExecutor(max_workers=samples, thread_name_prefix="hk-llm") as pool:
        futures = [pool.submit(session.client.complete, r) for r in requests]
        answers: list[LLMResponse] = []
        errors: list[str] = []
        for f in futures:
            try:
                answers.append(f.result())
            except LLMError as exc:
                errors.append(str(exc))
    if not answers:
        raise GenerationError(f"LLM ({session.client.name}): {errors[0]}")
    return answers


def solve(session: HKSession, problem: Problem, progress: Progress | None = None) -> Outcome:
    """Generate, evaluate and reflect until solved or out of attempts; record everything."""
    s = session.settings
    say = progress or (lambda stage, attempt, sample: None)
    store = session.tree.problem(problem.key)
    evaluator = session.evaluator
    prompt_path, template = session.prompt_template(problem)
    first = initial_prompt(template, problem, session.backend.name, session.backend.notes)
    prompt = first
    seen: dict[str, dict[str, Any]] = {}
    history: list[dict[str, Any]] = []
    best: dict[str, Any] | None = None
    best_code: str | None = None
    best_prompt: str | None = None
    totals = {"tokens": 0, "cost_usd": 0.0, "llm_s": 0.0, "build_s": 0.0, "eval_s": 0.0}
    t_start = time.monotonic()
    say("reference", 0, 0)
    evaluator.reference(problem)  # fail fast, before spending tokens, if the problem is broken
    attempt = 0
    for attempt in range(1, s.attempts + 1):
        say("generating", attempt, 0)
        answers = _ask(session, problem, prompt, attempt, s.samples)
        extracted = [extract_code(a.text) for a in answers]
        fresh = []
        for ex in extracted:
            if ex.code and _sha(ex.code) not in seen and ex.code not in fresh:
                fresh.append(ex.code)
        if fresh:
            stage = functools.partial(_stage, say, attempt)
            results = evaluator.evaluate_many(problem, fresh, stage)
            for code, result in zip(fresh, results, strict=False):
                seen[_sha(code)] = result
                totals["build_s"] += result.get("build_seconds") or 0.0
                totals["eval_s"] += result.get("eval_seconds") or 0.0
        attempt_results: list[tuple[dict[str, Any], str | None]] = []
        for sample, (answer, ex) in enumerate(zip(answers, extracted, strict=False), start=1):
            if ex.code is None:
                result = base_result(None, evaluator.cfg)
                result.update(status="compile_error", category="no_code", message=ex.reason)
            else:
                result = dict(seen[_sha(ex.code)])
            n = store.next_index()
            result.update(
                problem=problem.key,
                problem_path=str(problem.path),
                attempt=attempt,
                sample=sample,
                index=n,
                prompt_file=str(prompt_path),
                llm=answer.record(),
                extraction=ex.reason,
            )
            usage = answer.usage or {}
            totals["tokens"] += int(usage.get("prompt_tokens", 0)) + int(
                usage.get("completion_tokens", 0)
            )
            totals["cost_usd"] += answer.cost_usd or 0.0
            totals["llm_s"] += answer.latency_s
            store.write_candidate(
                n, prompt=prompt, response=answer.text, code=ex.code, result=result
            )
            history.append(_brief(result))
            attempt_results.append((result, ex.code))
        top, top_code = max(attempt_results, key=lambda rc: rank(rc[0]))
        if best is None or rank(top) > rank(best):
            best, best_code, best_prompt = top, top_code, prompt
        if best.get("status") == "correct" and (best["timing"]["speedup"] or 0) >= s.target_speedup:
            break
        if attempt == s.attempts:
            break
        prompt = reflection_prompt(first, top_code, top, session.prompts.reflection_hints, attempt)
    assert best is not None
    totals["wall_s"] = time.monotonic() - t_start
    best = dict(best)
    best.update(
        attempts_used=attempt,
        candidates=len(history),
        # "Solved at" is the first attempt that produced a correct kernel; the best kernel
        # may come from a later attempt (a faster one after reflection): both are kept.
        solved_at_attempt=first_correct_attempt(history),
        best_attempt=best.get("attempt"),
        totals={k: round(v, 6) if isinstance(v, float) else v for k, v in totals.items()},
    )
    store.write_best(best_prompt, best_code, best)
    return Outcome(problem.key, best, best_code, history)


def _attach_profile(
    session: HKSession, problem: Problem, result: dict[str, Any], code: str
) -> None:
    """Profile a correct-but-slow candidate that has no profile yet (fresh worker)."""
    speedup = (result.get("timing") or {}).get("speedup")
    profile = session.evaluator.profile(problem, code, speedup)
    result["profile"] = profile or {"tool": None, "kernels": [], "findings": ["profiling failed"]}


def profile_best(session: HKSession, problem: Problem, outcome: Outcome) -> bool:
    """Teardown profiling of the best kernel when it is slower (or always, per option).

    The backend's own profiler runs here (rocprofv3 on hip); where it has none, or the tool
    is missing, the torch.profiler table from evaluation stands — with a note saying so
    when a vendor profiler was expected.
    """
    best, code = outcome.best, outcome.best_code
    if not outcome.correct or not code:
        return False
    mode = session.settings.profile
    if mode == "never" or (mode == "slow" and (outcome.speedup or 0) >= 1):
        return False
    timing = best.get("timing") or {}
    vendor = session.backend.profiler
    current = best.get("profile") or {}
    if vendor != "torch.profiler" and current.get("tool") != vendor:
        profile = session.evaluator.vendor_profile(
            problem, code, timing.get("speedup"), timing.get("new_ms")
        )
        if profile is not None:
            best["profile"] = profile
        else:
            if not current:
                _attach_profile(session, problem, best, code)
            best["profile"].setdefault("findings", []).append(
                f"{vendor} is not installed: kernel table from torch.profiler instead."
            )
    elif not current:
        _attach_profile(session, problem, best, code)
    else:
        return False
    session.tree.problem(outcome.problem).write_best(None, None, best)
    return True


def verify_best(session: HKSession, problem: Problem, outcome: Outcome) -> bool:
    """``--hk-verify-timing``: time the best kernel under ncu and record the ratio."""
    timing = outcome.best.get("timing") or {}
    if not (session.settings.verify_timing and outcome.correct and outcome.best_code):
        return False
    if "ncu_ms" in timing:
        return False
    check = session.evaluator.verify_timing(problem, outcome.best_code)
    if check is None:
        timing["ncu"] = "unavailable"
    elif not check.get("ok"):
        timing["ncu"] = f"failed: {check.get('message', '')}"
    else:
        timing["ncu_ms"] = check["ncu_ms"]
        timing["ncu_launches_per_run"] = check["launches_per_run"]
        timing["events_over_ncu"] = timing["new_ms"] / check["ncu_ms"] if check["ncu_ms"] else None
    session.tree.problem(outcome.problem).write_best(None, None, outcome.best)
    return True


def first_correct_attempt(history: list[dict[str, Any]]) -> int | None:
    """The first attempt any of whose candidates was correct (None: never solved)."""
    found = [h["attempt"] for h in history if h.get("status") == "correct" and h.get("attempt")]
    return min(found) if found else None


def _brief(result: dict[str, Any]) -> dict[str, Any]:
    t = result.get("timing") or {}
    return {
        "index": result.get("index"),
        "attempt": result.get("attempt"),
        "sample": result.get("sample"),
        "status": result.get("status"),
        "category": result.get("category"),
        "message": result.get("message"),
        "speedup": t.get("speedup"),
    }


def load_outcome(session: HKSession, problem: Problem) -> Outcome | None:
    """A finished problem from the results tree (resume), or None."""
    return outcome_from_store(session.tree.problem(problem.key))


def outcome_from_store(store: ProblemResults) -> Outcome | None:
    """The recorded outcome of a problem's folder, or None when it is not finished."""
    best = store.best()
    if not isinstance(best, dict) or best.get("status") is None:
        return None
    history = [_brief(r) for r in store.candidates()]
    return Outcome(store.key, best, store.best_code(), history, cached=True)
