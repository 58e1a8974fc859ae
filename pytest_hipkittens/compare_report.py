"""A run comparison as a pytest-html report (``hk-report --compare --pytest-html``).

For CI jobs that publish one pytest-html file per job: pytest runs this module with
pytest-html, one item per problem carrying its comparison row (status, speedup, solved
at, tokens and cost per run, the change against the first run). An item fails when a
later run lost the problem, got slower beyond the timing noise, or its result is damaged,
so the report's pass/fail counts read as regressions. The summary above the table is the
comparison's own (warnings, per-run numbers, fast_p curves, speedup scatter, what ran).
Nothing is generated, built or timed, and the trees are only read.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import pytest

from pytest_hipkittens.compare import (
    BAD,
    CELL_HEADS,
    CSS,
    GOOD,
    Comparison,
    runs_table,
    summary_html,
    title,
)
from pytest_hipkittens.compare import cells as record_cells

#: Column keys of a run's cells (compare.CELL_HEADS).
CELL_KEYS = ("status", "speedup", "solved_at", "tokens", "cost")


class CompareHtml:
    """Parametrizes the items with the rows and fills pytest-html's table and summary."""

    def __init__(self, cmp: Comparison) -> None:
        self.cmp = cmp

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if "hk_row" in metafunc.fixturenames:
            rows = self.cmp.rows
            metafunc.parametrize("hk_row", rows, ids=[r["problem"] for r in rows])

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
        rep = yield
        callspec = getattr(item, "callspec", None)
        rep.hk_row = callspec.params.get("hk_row") if callspec else None
        return rep

    def _columns(self) -> list[tuple[str, str, int | None, int]]:
        """(column key, title, run index or None for a change column, cell index) per
        added column; the keys name the cells (``col-hk0_status``, ``col-hkchange1``)."""
        cols: list[tuple[str, str, int | None, int]] = []
        for i, run in enumerate(self.cmp.runs):
            cols += [
                (f"hk{i}_{key}", f"{run.name} {head}", i, k)
                for k, (key, head) in enumerate(zip(CELL_KEYS, CELL_HEADS, strict=True))
            ]
        first = self.cmp.runs[0].name
        cols += [
            (f"hkchange{i}", f"{r.name} vs {first}", None, i)
            for i, r in enumerate(self.cmp.runs)
            if i
        ]
        return cols

    def pytest_html_report_title(self, report: Any) -> None:
        report.title = title(self.cmp)

    def pytest_html_results_table_header(self, cells: list[str]) -> None:
        if len(cells) > 1:
            cells[1] = '<th class="sortable" data-column-type="testId">Problem</th>'
        for n, (key, head, _, _) in enumerate(self._columns()):
            cells.insert(
                2 + n, f'<th class="sortable" data-column-type="{key}">{html.escape(head)}</th>'
            )

    def pytest_html_results_table_row(self, report: Any, cells: list[str]) -> None:
        row = getattr(report, "hk_row", None)
        if not row:
            return
        if len(cells) > 1:
            cells[1] = f'<td class="col-testId">{html.escape(row["problem"])}</td>'
        for n, (key, _, run, k) in enumerate(self._columns()):
            if run is not None:
                text, style = record_cells(row["records"][run])[k], ""
            else:
                ch = row["changes"][k]
                text = ch["text"]
                style = (
                    ' style="background:#e3f4e4"'
                    if ch["kind"] in GOOD
                    else ' style="background:#fbe3e3"'
                    if ch["kind"] in BAD
                    else ""
                )
            cells.insert(2 + n, f'<td class="col-{key}"{style}>{html.escape(text)}</td>')

    def pytest_html_results_table_html(self, report: Any, data: list[str]) -> None:
        """No "No log output captured." box under every row: the row says it all."""
        if getattr(report, "hk_row", None) and data == ["No log output captured."]:
            data.clear()

    def pytest_html_results_summary(self, prefix: list[str], summary: Any, postfix: Any) -> None:
        prefix.append(
            f'<style>{CSS}</style><div class="hkc">{summary_html(self.cmp)}'
            f"<h2>What ran</h2>{runs_table(self.cmp)}</div>"
        )


def regressions(row: dict[str, Any]) -> list[str]:
    """The row's changes that count against a later run (lost, slower, damaged)."""
    return [ch["text"] for ch in row["changes"][1:] if ch and ch["kind"] in BAD]


def test_problem(hk_row: dict[str, Any]) -> None:
    """Passes unless a later run lost the problem, got slower beyond the noise, or its
    result is damaged."""
    bad = regressions(hk_row)
    if bad:
        pytest.fail(f"{hk_row['problem']}: " + "; ".join(bad), pytrace=False)


def render(cmp: Comparison, out: Path) -> tuple[int, str]:
    """pytest + pytest-html over this module; pytest's exit code and its output."""
    from .quiet_pytest import run

    # -p no:hipkittens: the plugin's own columns and summary are for live runs
    args = ["-p", "no:hipkittens", "--html", str(out), "--self-contained-html"]
    return run(__file__, args, plugins=[CompareHtml(cmp)])
