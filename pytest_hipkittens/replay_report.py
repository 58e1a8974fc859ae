"""The benchmark's HTML report rebuilt from a results tree (``hk-report --html``).

Run by pytest with pytest-html like a live run, but each item only reloads a finished
problem's folder: the same columns, extras and summary plots come out, and nothing is
generated, built or timed. The tree is the run's ``--hk-results``.
"""

from __future__ import annotations

import pytest

from pytest_hipkittens.fixtures import OUTCOME_KEY, SESSION_KEY
from pytest_hipkittens.generation import Outcome, outcome_from_store
from pytest_hipkittens.results import ProblemResults


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """One item per finished problem of the tree, with the live run's ids."""
    if "hk_store" in metafunc.fixturenames:
        tree = metafunc.config.stash[SESSION_KEY].tree
        stores = [s for s in tree.problems() if outcome_from_store(s) is not None or s.damaged()]
        metafunc.parametrize("hk_store", stores, ids=[s.key for s in stores])


@pytest.fixture
def hk_replayed(request: pytest.FixtureRequest, hk_store: ProblemResults) -> Outcome:
    outcome = outcome_from_store(hk_store)
    if outcome is None:  # damaged: a row of its own, never left out
        pytest.fail(f"damaged: {hk_store.key}/best_result.json cannot be read", pytrace=False)
    request.node.stash[OUTCOME_KEY] = outcome
    return outcome


def test_kernel(hk_replayed: Outcome) -> None:
    """Passes exactly when the recorded best kernel is correct, like the live item."""
    if not hk_replayed.correct:
        pytest.fail(hk_replayed.explain(), pytrace=False)
