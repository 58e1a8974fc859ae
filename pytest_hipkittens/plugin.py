"""pytest-hipkittens: hooks and options only; the work lives in plain modules.

Every KernelBench problem becomes a parametrized item of any test that requests the
``kb_problem`` argument (``kernelbench_tests/test_kernelbench.py``); the ``hk_solution``
fixture generates and evaluates kernels for it. Collection stays cheap and deterministic
(no LLM, no compiler, no torch import) so every xdist worker collects the same ids.
"""

from __future__ import annotations

from typing import Any

import pytest

from . import report
from .fixtures import OUTCOME_KEY, SESSION_KEY, hk_session, hk_solution
from .options import add_options, resolve_settings
from .problems import Problem, ProblemError, select
from .session import HKSession

__all__ = ["hk_session", "hk_solution"]

PROBLEM_ARG = "kb_problem"


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register the ``hipkittens`` option group and its ini twins."""
    add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    """Resolve settings once (bad options fail here) and register the session plugin."""
    config.stash[SESSION_KEY] = HKSession(resolve_settings(config))
    config.pluginmanager.register(HKPlugin(config), "hipkittens-session")
    if config.pluginmanager.hasplugin("html") and not hasattr(config, "workerinput"):
        config.pluginmanager.register(report.HtmlHooks(), "hipkittens-html")


class HKPlugin:
    """Per-run state: the problem selection, and the records that feed the summary."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.session: HKSession = config.stash[SESSION_KEY]
        self._problems: list[Problem] | None = None
        self.error: str | None = None
        self.records: dict[str, dict[str, Any]] = {}
        self.used = False

    def problems(self) -> list[Problem]:
        if self._problems is None:
            s = self.session.settings
            try:
                self._problems = select(s.root, s.levels, s.spans)
            except ProblemError as exc:
                self.error = str(exc)
                self._problems = []
        return self._problems

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        """One item per problem, id ``levelN/<id>_<Name>`` (stable for -k, --lf, xdist)."""
        if PROBLEM_ARG in metafunc.fixturenames:
            problems = self.problems()
            metafunc.parametrize(PROBLEM_ARG, problems, ids=[p.key for p in problems])

    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        """Turn a bad selection into a usage error; fail fast on unusable backend/LLM/prompts."""
        if self.error:
            raise pytest.UsageError(self.error)
        self.used = any(PROBLEM_ARG in getattr(i, "fixturenames", ()) for i in items)
        if self.used and not self.config.option.collectonly:
            try:
                self.session.check()
            except (RuntimeError, ValueError) as exc:
                raise pytest.UsageError(str(exc).splitlines()[0]) from None

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
        """Carry the item's benchmark record on its report (crosses xdist by itself)."""
        rep = yield
        outcome = item.stash.get(OUTCOME_KEY, None)
        if outcome is not None and rep.when in ("call", "teardown"):
            rep.hk = outcome.summary()
            if rep.when == "call":
                extras = getattr(rep, "extras", [])
                rep.extras = extras + report.html_extras(rep.hk, outcome.best_code, outcome.best)
            elif (outcome.best.get("profile") or {}).get("findings"):
                rep.sections.append(
                    ("hipkittens profile", "\n".join(outcome.best["profile"]["findings"]))
                )
        return rep

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Collect records (on the controller under xdist: reports arrive from workers)."""
        rec = getattr(report, "hk", None)
        if rec and report.when in ("call", "teardown"):
            self.records[rec["problem"]] = rec

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """Write summary.json and detailed reports; only the controller writes shared files."""
        if hasattr(self.config, "workerinput") or not self.records:
            return
        root = self.session.settings.results
        root.mkdir(parents=True, exist_ok=True)
        report.write_reports(root, list(self.records.values()))

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        """A table of problems, statuses and speedups at the end of the run."""
        if not self.records:
            return
        tr = terminalreporter
        tr.write_sep("=", "hipkittens benchmark")
        for line in report.table_lines(list(self.records.values())):
            tr.write_line(line)
        summary = report.summarize(list(self.records.values()))
        fp = "  ".join(f"{k}={v:.2f}" for k, v in summary["fast_p"].items())
        tr.write_line(f"solved {summary['solved']}/{summary['problems']}  {fp}")
        tr.write_line(f"results: {self.session.settings.results}")

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        self.session.close()
