"""The benchmark: one test item per KernelBench problem.

``kb_problem`` is parametrized by the pytest-hipkittens plugin over the selected problems
(``--kernelbench-dir``/``KERNELBENCH_DIR``, ``--level``, ``--range``; the bundled samples by
default), with ids such as ``level1/19_ReLU`` so ``-k ReLU`` and ``--lf`` work. The
``hk_solution`` fixture asks the LLM for kernels with reflection retries, builds, verifies
and times them in sandboxed subprocesses, and profiles a slow best kernel in its teardown.
"""

from __future__ import annotations

import pytest


def test_kernel(kb_problem, hk_solution, record_property):
    """The generated kernel must be correct; its speedup is recorded, not asserted."""
    for name, value in hk_solution.properties():
        record_property(name, value)
    if not hk_solution.correct:
        pytest.fail(hk_solution.explain(), pytrace=False)
