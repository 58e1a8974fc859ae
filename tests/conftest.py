"""Shared fixtures for the project's own tests.

Real C++ builds are the expensive part (~30 s each on two cores), so every test that builds
shares one build cache for the whole session (``HK_BUILD_CACHE``); the end-to-end tests
are arranged so each distinct candidate is compiled once.
"""

from __future__ import annotations

import os
import shutil
import textwrap
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Warnings are errors in this project's own tests.

    Set here and not as an ini ``filterwarnings`` because setup.cfg also configures the
    benchmark run (``pytest kernelbench_tests``), where a third-party plugin's warning at
    start-up (pytest-benchmark under xdist) must not become an INTERNALERROR.
    """
    for item in items:
        item.add_marker(pytest.mark.filterwarnings("error"))


REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _outer_xdist_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pytest runs a test starts (pytester, subprocesses) are sessions of their own:
    under ``pytest tests -n 2`` they must not see this process's xdist worker variables
    (pytest-benchmark, where installed, then warns that xdist is active, and warnings
    are errors here)."""
    for var in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(scope="session")
def build_cache(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    """One build cache for the whole run — shared by the xdist workers of ``make test``,
    as a benchmark run's workers share theirs, so a kernel one worker built is a cache hit
    in the other — or $HK_TEST_BUILD_CACHE to keep it across runs."""
    keep = os.environ.get("HK_TEST_BUILD_CACHE")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        return Path(keep)
    if worker_id == "master":
        return tmp_path_factory.mktemp("build-cache")
    shared = tmp_path_factory.getbasetemp().parent / "build-cache"
    shared.mkdir(exist_ok=True)
    return shared


@pytest.fixture
def hk_env(monkeypatch: pytest.MonkeyPatch, build_cache: Path) -> Path:
    """A clean environment for plugin runs: no gateway key, no KernelBench dir, shared cache."""
    for var in (
        "LLM_GATEWAY_KEY",
        "LLM_GATEWAY_URL",
        "KERNELBENCH_DIR",
        "NUM_SAMPLES",
        "HK_BACKEND",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HK_BUILD_CACHE", str(build_cache))
    # The toy candidates are pure-Python stand-ins for kernels (no C++ build: fast).
    monkeypatch.setenv("HK_ALLOW_TORCH_OPS", "1")
    return build_cache


def write_problem(folder: Path, name: str, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(body).lstrip(), encoding="utf-8")
    return path


SCALE_PROBLEM = """
    import torch
    import torch.nn as nn


    class Model(nn.Module):
        def __init__(self, factor):
            super().__init__()
            self.factor = factor

        def forward(self, x):
            return x * self.factor


    def get_inputs():
        return [torch.randn(64, 32)]


    def get_init_inputs():
        return [3.0]
"""


def python_candidate(expr: str, extra: str = "") -> str:
    """A pure-Python candidate (no C++ build: fast) computing ``expr`` from ``x``.

    ``extra`` is module-level code run at import, where a C++ candidate would build.
    """
    return (
        "import torch\n"
        "import torch.nn as nn\n"
        f"{extra}\n\n\n"
        "class ModelNew(nn.Module):\n"
        "    def __init__(self, factor):\n"
        "        super().__init__()\n"
        "        self.factor = factor\n\n"
        "    def forward(self, x):\n"
        f"        return {expr}\n"
    )


def fenced(code: str, prose: str = "Here is the kernel.") -> str:
    return f"{prose}\n\n```python\n{code}```\n"


@pytest.fixture
def toy_kb(tmp_path: Path) -> Path:
    """A flat problem folder with one cheap problem, and a responses folder beside it."""
    root = tmp_path / "kb"
    write_problem(root, "1_Scale.py", SCALE_PROBLEM)
    return root


@pytest.fixture
def repo_prompts(tmp_path: Path) -> Path:
    """A copy of the repository's prompts folder that a test may edit."""
    dest = tmp_path / "prompts"
    shutil.copytree(REPO / "prompts", dest)
    return dest


@pytest.fixture
def evaluator(tmp_path: Path):
    """A cpu Evaluator with small trial counts and short timeouts, in the test's tmp dir."""
    from pytest_hipkittens.backends import get_backend
    from pytest_hipkittens.evaluate import EvalConfig, Evaluator

    cfg = EvalConfig(
        backend=get_backend("cpu"),
        build_cache=tmp_path / "cache",
        correctness_trials=3,
        timing_trials=5,
        timing_budget_s=1.0,
        # A real C++ extension build takes ~34 s on two busy cores; tests of the timeout
        # itself set their own.
        build_timeout=300,
        run_timeout=30,
        allow_torch_ops=True,  # pure-Python stand-ins; tests of that check switch it off
    )
    ev = Evaluator(cfg, tmp_path / "work")
    ev.spares_enabled = False  # a test evaluates a few candidates: no worker started unused
    yield ev
    ev.close()


def html_report(path: Path) -> dict:
    """What a pytest-html report holds: per-test rows and extras, and the summary plots.

    pytest-html 4 keeps the results in a JSON blob in the page; the columns this plugin adds
    are the ``col-hk*`` cells of each row.
    """
    import html as htmllib
    import json
    import re

    text = path.read_text(encoding="utf-8")
    blob = re.search(r'data-jsonblob="([^"]*)"', text)
    assert blob, "no pytest-html data blob"
    data = json.loads(htmllib.unescape(blob.group(1)))
    rows = {}
    for nodeid, reports in data["tests"].items():
        cells = {}
        for cell in reports[-1]["resultsTableRow"]:
            m = re.match(r'<td class="col-(\w+)"[^>]*>(.*)</td>', cell, re.S)
            if m:
                cells[m.group(1)] = htmllib.unescape(m.group(2))
        extras = [
            e.get("name") or e.get("format_type") for r in reports for e in r.get("extras", [])
        ]
        rows[nodeid.split("[", 1)[-1].rstrip("]")] = {
            "cells": cells,
            "extras": extras,
            "log": reports[-1].get("log"),
        }
    return {
        "text": text,
        "rows": rows,
        "environment": data.get("environment") or {},
        "plots": re.findall(r'<img alt="([^"]+)"[^>]*src="data:image/png;base64,', text),
    }
