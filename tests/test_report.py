from __future__ import annotations

import math
from pathlib import Path

from pytest_hipkittens.report import records_from_tree, summarize, table_lines, write_reports
from pytest_hipkittens.results import ResultsTree


def rec(problem: str, status: str, speedup: float | None = None) -> dict:
    return {"problem": problem, "status": status, "speedup": speedup, "candidates": 3, "tokens": 10}


def test_summary_follows_kernelbench_fast_p() -> None:
    records = [
        rec("a", "correct", 2.5),
        rec("b", "correct", 0.5),
        rec("c", "compile_error"),
        rec("d", "correct", 1.2),
    ]
    s = summarize(records)
    assert s["problems"] == 4 and s["solved"] == 3 and s["solved_rate"] == 0.75
    assert s["counts"]["compile_error"] == 1 and s["counts"]["correct"] == 3
    assert s["fast_p"] == {"fast_0": 0.75, "fast_1": 0.5, "fast_1.5": 0.25, "fast_2": 0.25}
    assert math.isclose(s["geomean_speedup_correct"], (2.5 * 0.5 * 1.2) ** (1 / 3))
    assert s["totals"]["tokens"] == 40


def test_empty_summary() -> None:
    s = summarize([])
    assert (
        s["problems"] == 0 and s["geomean_speedup_correct"] is None and s["fast_p"]["fast_1"] == 0.0
    )


def test_reports_from_tree(tmp_path: Path) -> None:
    tree = ResultsTree(tmp_path)
    store = tree.problem("level1/1_A")
    store.write_candidate(
        1,
        prompt="p",
        response="r",
        code="c",
        result={"status": "incorrect", "attempt": 1, "index": 1},
    )
    store.write_best(
        "p",
        "c",
        {
            "problem": "level1/1_A",
            "status": "correct",
            "category": "correct",
            "timing": {"speedup": 1.5, "ref_ms": 3.0, "new_ms": 2.0},
            "attempts_used": 2,
        },
    )
    records = records_from_tree(tmp_path)
    assert records[0]["speedup"] == 1.5
    summary = write_reports(tmp_path, records)
    assert summary["solved"] == 1
    text = (tmp_path / "detailed_report.txt").read_text()
    assert "level1/1_A" in text and "1.50" in text
    assert (tmp_path / "detailed_report.json").is_file() and (tmp_path / "summary.json").is_file()
    assert table_lines(records)[2].startswith("level1/1_A")
