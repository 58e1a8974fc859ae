"""Fixtures: the generation loop as a fixture, profiling in its teardown.

``hk_solution`` runs (or, on a re-run, reloads) the attempts × samples loop for the item's
``kb_problem`` and yields the :class:`~pytest_hipkittens.generation.Outcome`; the test body
asserts on it. Its teardown profiles a correct-but-slower best kernel, so the profiler's
time is charged to teardown and its findings reach the results tree and the report.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from .evaluate import ReferenceFailed
from .generation import GenerationError, Outcome, load_outcome, profile_best, solve, verify_best
from .problems import Problem
from .progress import ProgressLine
from .session import HKSession

log = logging.getLogger("pytest_hipkittens")

SESSION_KEY = pytest.StashKey[HKSession]()
OUTCOME_KEY = pytest.StashKey[Outcome]()
PROGRESS_KEY = pytest.StashKey[ProgressLine]()


@pytest.fixture(scope="session")
def hk_session(pytestconfig: pytest.Config) -> HKSession:
    """The run's shared state (settings, backend, LLM client, evaluator, results tree).

    Session-scoped because the evaluator caches reference outputs and the client holds the
    connection pool and concurrency limit shared by every item of this process.
    """
    return pytestconfig.stash[SESSION_KEY]


@pytest.fixture
def hk_solution(
    request: pytest.FixtureRequest, kb_problem: Problem, hk_session: HKSession
) -> Iterator[Outcome]:
    """Best candidate for ``kb_problem`` after generation with reflection.

    Reuses a finished problem from the results tree unless ``--hk-redo``, so an
    interrupted batch resumes where it stopped. A broken reference problem or a gateway
    that fails after its retries errors the item with one line; the files written so far
    stay, and the problem is not marked finished.
    """
    settings = hk_session.settings
    store = hk_session.tree.problem(kb_problem.key)
    outcome = None
    if settings.redo:
        store.supersede()
    else:
        outcome = load_outcome(hk_session, kb_problem)
        if outcome is None and store.damaged():
            aside = store.set_aside_damaged()
            log.warning(
                "%s: best_result.json was damaged (kept as %s): redoing the problem",
                kb_problem.key,
                aside.name,
            )
    line = request.config.stash.get(PROGRESS_KEY, None)

    def progress(stage: str, attempt: int = 0, sample: int = 0) -> None:
        log.info("%s: attempt %d: %s %s", kb_problem.key, attempt, stage, sample or "")
        if line is not None:
            line(kb_problem.key, stage, attempt, sample)

    if outcome is None:
        error = None
        try:
            outcome = solve(hk_session, kb_problem, progress)
        except GenerationError as exc:
            error = str(exc)
        except ReferenceFailed as exc:
            error = f"{exc.status}: {exc}"
        if error is not None:
            pytest.fail(error, pytrace=False)
    request.node.stash[OUTCOME_KEY] = outcome
    yield outcome
    # Teardown: explain a slow kernel (the profile lands in best_result.json and the report).
    if outcome.correct and (outcome.speedup or 0) < 1 and settings.profile != "never":
        progress("profiling")
    profile_best(hk_session, kb_problem, outcome)
    verify_best(hk_session, kb_problem, outcome)
    progress(f"done: {outcome.best.get('message') or outcome.best.get('status')}")
