"""pytest-hipkittens: hooks and options only; the work lives in plain modules.

Every KernelBench problem becomes a parametrized item of any test that requests the
``kb_problem`` argument (``kernelbench_tests/test_kernelbench.py``); the ``hk_solution``
fixture generates and evaluates kernels for it. Collection stays cheap and deterministic
(no LLM, no compiler, no torch import) so every xdist worker collects the same ids.
"""

from __future__ import annotations

import os
import re
from typing import Any

import pytest

from . import report, scale
from .fixtures import OUTCOME_KEY, PROGRESS_KEY, SESSION_KEY, hk_session, hk_solution
from .options import add_options, resolve_settings
from .problems import Problem, ProblemError, select
from .progress import ProgressLine
from .session import HKSession

__all__ = ["hk_session", "hk_solution"]

PROBLEM_ARG = "kb_problem"
_PARAM_ID = re.compile(r"\[(level\d+/[^\]]+)\]$")


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register the ``hipkittens`` option group and its ini twins."""
    add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    """Resolve settings once (bad options fail here) and register the session plugin.

    On an xdist worker, the device (or the cores) the controller assigned in
    ``pytest_configure_node`` pin every evaluation subprocess this worker starts.
    """
    settings = resolve_settings(config)
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:
        settings.device_index = workerinput.get("hk_device")
        settings.cpu_cores = workerinput.get("hk_cpu_cores")
    config.stash[SESSION_KEY] = HKSession(settings)
    mode = "off" if workerinput is not None else settings.progress
    config.stash[PROGRESS_KEY] = ProgressLine(config, mode, settings.attempts)
    workers = getattr(config.option, "numprocesses", None)
    if (
        workerinput is None
        and isinstance(workers, int)
        and workers > 0
        and _runs_kernelbench(config)
    ):
        _check_layout(config.stash[SESSION_KEY], workers)
    plugin = HKPlugin(config)
    config.pluginmanager.register(plugin, "hipkittens-session")
    if config.pluginmanager.hasplugin("html") and not hasattr(config, "workerinput"):
        config.pluginmanager.register(
            report.HtmlHooks(
                lambda: list(plugin.records.values()),
                plugin.run_meta,
                rebuilt=plugin.session.settings.read_only,
            ),
            "hipkittens-html",
        )


def _runs_kernelbench(config: pytest.Config) -> bool:
    """Whether this run is a benchmark run (the xdist hooks leave other projects alone)."""
    return any("kernelbench" in str(a) for a in config.args) or bool(
        config.getoption("hk_kernelbench_dir", None) or config.getoption("hk_range", None)
    )


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """``-n auto`` on a benchmark run: one worker per visible GPU (cpu: one per two cores)."""
    if not _runs_kernelbench(config):
        return None
    import os

    from .backends import get_backend

    try:
        backend = get_backend(config.getoption("hk_backend", None) or "auto")
    except Exception:  # noqa: BLE001 - a bad backend is reported later, as a usage error
        return None
    count = 0
    if backend.device != "cpu":
        from .backends.probe import gpu_count

        count = gpu_count(backend.name)
    return scale.auto_workers(backend.name, count, len(os.sched_getaffinity(0)))


def _check_layout(session: HKSession, workers: int) -> None:
    """Refuse an xdist layout that would put two timing workers on one device."""
    try:
        backend = session.backend
        if backend.device == "cpu":
            scale.cpu_slice("gw0", workers)
        else:
            from .backends.probe import gpu_count

            devices = scale.visible_devices(backend.visible_devices_var, gpu_count(backend.name))
            scale.device_for("gw0", workers, devices)
    except (scale.ScaleError, RuntimeError) as exc:
        raise pytest.UsageError(str(exc).splitlines()[0]) from None


class HKPlugin:
    """Per-run state: the problem selection, and the records that feed the summary."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.session: HKSession = config.stash[SESSION_KEY]
        self._problems: list[Problem] | None = None
        self.error: str | None = None
        self.records: dict[str, dict[str, Any]] = {}
        self.used = False
        self._manifest_written = False
        #: options validated and the backend usable: the run may write into the tree
        self.ready = False
        #: when the run started (its manifest was written), for its record under runs/
        self._started: float | None = None
        #: what this run is (runinfo.collect), once it has started
        self.meta: dict[str, Any] = {}

    def problems(self) -> list[Problem]:
        if self._problems is None:
            s = self.session.settings
            try:
                self._problems = select(s.root, s.levels, s.spans)
                if s.shard:
                    chosen = scale.shard(self._problems, *s.shard)
                    if not chosen:
                        raise ProblemError(
                            f"--hk-shard {s.shard[0]}/{s.shard[1]} selects no problem "
                            f"(only {len(self._problems)} selected)"
                        )
                    self._problems = chosen
            except ProblemError as exc:
                self.error = str(exc)
                self._problems = []
        return self._problems

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        """Controller side of xdist: give each worker its own GPU (or its own cores)."""
        workerid = node.workerinput["workerid"]
        workers = int(node.workerinput.get("workercount") or 1)
        backend = self.session.backend
        try:
            if backend.device == "cpu":
                node.workerinput["hk_cpu_cores"] = scale.cpu_slice(workerid, workers)
            else:
                from .backends.probe import gpu_count

                devices = scale.visible_devices(
                    backend.visible_devices_var, gpu_count(backend.name)
                )
                node.workerinput["hk_device"] = scale.device_for(workerid, workers, devices)
        except scale.ScaleError as exc:
            raise pytest.UsageError(str(exc)) from None

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
            self.ready = True

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        """hk_run.json: the problems this run selected (after ``-k``), for ``hk-monitor``.

        Only once the run has really started: pytest calls this hook even after a usage
        error in collection, and a run that never started must not touch the tree."""
        if not self.ready or hasattr(self.config, "workerinput"):
            return
        self._write_manifest(
            i.callspec.params[PROBLEM_ARG].key
            for i in session.items
            if PROBLEM_ARG in getattr(getattr(i, "callspec", None), "params", {})
        )

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        """Under xdist the controller collects nothing: the first worker's ids say it."""
        if self._manifest_written:
            return
        keys = {m.group(1) for i in ids if (m := _PARAM_ID.search(i))}
        if keys & {p.key for p in self.problems()}:
            self._write_manifest(keys)

    def _write_manifest(self, keys: Any) -> None:
        import time

        from .monitor import MANIFEST
        from .results import write_json

        self._manifest_written = True
        self._started = time.time()
        keys = sorted(set(keys))
        s = self.session.settings
        self.meta = self._collect_meta()
        self.meta["started"] = self._started
        s.results.mkdir(parents=True, exist_ok=True)
        write_json(
            s.results / MANIFEST,
            {
                "problems": keys,
                "started": self._started,
                "backend": self._backend_name(),
                "llm": s.llm,
                "run": self.meta,
            },
        )

    def run_meta(self) -> dict[str, Any]:
        """What ran, for the report's first screen: this run's metadata, or for a report
        rebuilt from a tree (``--hk-read-only``) the metadata its runs recorded."""
        if self.meta and not self.session.settings.read_only:
            import time

            return self.meta | {"finished": time.time()}  # the report is written at the end
        from . import runinfo

        return runinfo.from_tree(self.session.settings.results)

    def _collect_meta(self) -> dict[str, Any]:
        from . import runinfo

        try:
            backend = self.session.backend
            prompt_set, arch = backend.prompt_set, backend.arch
        except Exception:  # noqa: BLE001 - reported where the backend is used
            prompt_set, arch = "", ""
        return runinfo.collect(self.session.settings, self._backend_name(), prompt_set, arch)

    def _backend_name(self) -> str:
        """The backend the run uses ("cpu", not "auto"), for the tree's records."""
        try:
            return self.session.backend.name
        except Exception:  # noqa: BLE001 - reported where the backend is used
            return self.session.settings.backend

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
        """Carry the item's benchmark record on its report (crosses xdist by itself)."""
        rep = yield
        outcome = item.stash.get(OUTCOME_KEY, None)
        if outcome is not None and self.session.settings.read_only:
            # A report rebuilt from the tree: the Duration column shows how long the
            # problem took when it ran, not the milliseconds it takes to reload it.
            wall = (outcome.best.get("totals") or {}).get("wall_s")
            if isinstance(wall, (int, float)):
                rep.duration = float(wall) if rep.when == "call" else 0.0
        if outcome is not None and rep.when in ("call", "teardown"):
            # Plain JSON data only: it crosses to the xdist controller with the report.
            rep.hk = report.plain(outcome.summary())
            if rep.when == "call":
                extras = getattr(rep, "extras", [])
                store = self.session.tree.problem(outcome.problem)
                rep.extras = extras + report.plain(
                    report.item_extras(store, outcome.best, outcome.best_code)
                )
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

    @pytest.hookimpl(tryfirst=True)  # before pytest-html writes its report
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        """Write summary.json and the detailed reports of the **whole tree** (every problem
        finished in it, by whichever run: a narrower or failed run never shrinks them), and
        this run's own selection and outcome under ``runs/``. Only the controller writes
        shared files; ``--hk-read-only`` (reports rebuilt from a tree) writes nothing.

        First, what ran — backend, device, torch, model, from the records themselves — goes
        into the HTML report's environment table (pytest-metadata)."""
        if hasattr(self.config, "workerinput") or not self.records:
            return
        self._what_ran()
        if self.session.settings.read_only:
            return
        import time

        from . import runinfo
        from .results import write_json

        root = self.session.settings.results
        root.mkdir(parents=True, exist_ok=True)
        whole = {r["problem"]: r for r in report.records_from_tree(root)}
        whole.update(self.records)
        started = self._started or time.time()
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(started))
        stamp += f".{int(started * 1e6) % 1_000_000:06d}"  # several runs a second still sort
        mine = report.summarize(list(self.records.values()))
        meta = (self.meta or self._collect_meta()) | {
            "started": started,
            "finished": time.time(),
            "totals": mine["totals"],
        }
        write_json(
            root / "runs" / f"{stamp}-{os.getpid()}.json",
            {
                "started": started,
                "finished": meta["finished"],
                "exit_status": int(exitstatus),
                "backend": self._backend_name(),
                "llm": self.session.settings.llm,
                "problems": sorted(self.records),
                "summary": mine,
                "run": meta,
            },
        )
        report.write_reports(root, list(whole.values()), runinfo.from_tree(root))

    def _what_ran(self) -> None:
        try:
            from pytest_metadata.plugin import metadata_key
        except ImportError:
            return
        meta = self.config.stash.get(metadata_key, None)
        if isinstance(meta, dict):
            meta.update(report.what_ran(list(self.records.values())))

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        """A table of problems, statuses and speedups at the end of the run."""
        if not self.records:
            return
        tr = terminalreporter
        tr.write_sep("=", "hipkittens benchmark")
        for line in report.table_lines(list(self.records.values())):
            tr.write_line(line)
        summary = report.summarize(list(self.records.values()))
        tr.write_line(report.solved_line(summary))
        tr.write_line(f"results: {self.session.settings.results}")

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        self.session.close()
