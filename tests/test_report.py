from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

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


def test_plots_are_embedded_pngs() -> None:
    import base64

    from pytest_hipkittens.plots import (
        attempts_plot,
        outcome_plot,
        roofline_plot,
        speedup_plot,
        summary_html,
    )

    roof = {"gbps": 100.0, "tflops": 1.0, "source": "measured"}
    records = [
        rec("level1/1_A", "correct", 2.5)
        | {"solved_at_attempt": 1, "best_attempt": 2, "speedup_ci": [2.1, 2.9], "decided": True}
        | {
            "roofline": {
                "intensity": 4.0,
                "roof": roof,
                "ref": {"gflops": 80.0},
                "new": {"gflops": 200.0},
            }
        },
        rec("level1/2_B", "correct", 0.4) | {"solved_at_attempt": 2, "best_attempt": 2},
        rec("level1/3_C", "compile_error"),
    ]
    for png in (
        speedup_plot(records),
        outcome_plot(records),
        attempts_plot(records),
        roofline_plot(records),
    ):
        assert base64.b64decode(png)[:8] == b"\x89PNG\r\n\x1a\n"
    meta = {"backend": "cpu", "llm": {"model": "replay"}, "device": {"name": "Test CPU"}}
    block = summary_html(records, meta)
    assert block.count('src="data:image/png;base64,') == 4
    assert "<b>2/3</b> problems correct" in block and "fast_1 = 0.33" in block
    assert "1 faster, 1 slower, 1 compile_error" in block
    assert "Test CPU" in block and "<th" in block  # what ran, on the first screen
    assert speedup_plot([rec("level1/3_C", "compile_error")]) is None
    assert roofline_plot(records[1:]) is None  # no roofline recorded: no plot


def test_outcomes_keep_slower_and_undecided_apart_from_faster() -> None:
    from pytest_hipkittens.report import outcome_of

    assert outcome_of(rec("a", "correct", 1.3) | {"decided": True}) == "faster"
    assert outcome_of(rec("a", "correct", 0.7)) == "slower"
    assert outcome_of(rec("a", "correct", 1.01) | {"decided": False}) == "not decided"
    assert outcome_of(rec("a", "timeout")) == "timeout"
    counts = summarize([rec("a", "correct", 1.3), rec("b", "correct", 0.5)])["outcomes"]
    assert counts == {"faster": 1, "slower": 1}


def test_first_correct_attempt_is_not_the_best_kernels_attempt(tmp_path: Path) -> None:
    from pytest_hipkittens.generation import first_correct_attempt

    history = [
        {"attempt": 1, "status": "compile_error"},
        {"attempt": 2, "status": "correct"},
        {"attempt": 3, "status": "correct"},
    ]
    assert first_correct_attempt(history) == 2
    assert first_correct_attempt(history[:1]) is None
    # A tree written before best_attempt was recorded: "solved at" comes from its results.
    store = ResultsTree(tmp_path).problem("level1/1_A")
    for i, (attempt, status) in enumerate([(1, "incorrect"), (2, "correct"), (3, "correct")], 1):
        store.write_candidate(
            i, prompt="p", response="r", code="c", result={"attempt": attempt, "status": status}
        )
    best = {"problem": "level1/1_A", "status": "correct", "attempt": 3, "solved_at_attempt": 3}
    store.write_best("p", "c", best)
    (r,) = records_from_tree(tmp_path)
    assert r["solved_at_attempt"] == 2 and r["best_attempt"] == 3


def test_attempts_and_profile_tables_escape_their_text() -> None:
    from pytest_hipkittens.report import attempts_table, profile_html

    table = attempts_table(
        [{"index": 1, "attempt": 1, "sample": 1, "status": "compile_error", "message": "a<b>"}]
    )
    assert "a&lt;b&gt;" in table and "<th" in table
    prof = profile_html(
        {
            "tool": "torch.profiler",
            "kernels": [{"name": "k<T>", "ms": 0.5, "share": 0.75, "builtin": False}],
            "findings": ["slow & steady"],
        }
    )
    assert "k&lt;T&gt;" in prof and "75%" in prof and "slow &amp; steady" in prof


def hk_monitor(folder: Path) -> subprocess.CompletedProcess:
    """``hk-monitor FOLDER --once`` in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "pytest_hipkittens.cli.monitor", str(folder), "--once"],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_monitor_snapshot_of_a_running_tree(tmp_path: Path) -> None:
    import json
    import time

    from pytest_hipkittens.monitor import MANIFEST, lines, snapshot
    from pytest_hipkittens.results import write_json

    tree = ResultsTree(tmp_path)
    done = tree.problem("level1/1_A")
    done.write_candidate(1, prompt="p", response="r", code="c", result={"status": "correct"})
    done.write_best("p", "c", {"status": "correct", "timing": {"speedup": 1.5}})
    failed = tree.problem("level1/2_B")
    failed.write_best(None, None, {"status": "compile_error"})
    running = tree.problem("level1/3_C")
    running.write_candidate(
        1,
        prompt="p",
        response="r",
        code="c",
        result={"status": "incorrect", "category": "incorrect"},
    )
    (running.dir / "prompt_2.txt").write_text("reflection")
    write_json(
        tmp_path / MANIFEST,
        {
            "problems": ["level1/1_A", "level1/2_B", "level1/3_C", "level1/4_D"],
            "started": time.time() - 3600,
        },
    )
    snap = snapshot(tmp_path)
    assert snap.done == 2 and snap.total == 4 and snap.pending == 1
    assert snap.finished == {"correct": 1, "compile_error": 1}
    assert [i["problem"] for i in snap.in_flight] == ["level1/3_C"]
    assert snap.in_flight[0]["stage"] == "candidate 2: evaluating"
    assert 1.9 < snap.rate_per_hour() < 2.1 and 3000 < snap.eta_seconds() < 3700
    text = "\n".join(lines(snap))
    assert "finished 2/4  in flight 1  pending 1" in text
    assert "status: compile_error 1, correct 1" in text
    proc = hk_monitor(tmp_path)
    assert proc.returncode == 0 and proc.stdout.splitlines()[0] == lines(snap)[0]
    assert "running level1/3_C: candidate 2: evaluating (1 evaluated" in proc.stdout
    missing = hk_monitor(tmp_path / "nope")
    assert missing.returncode == 2 and "is not a directory" in missing.stderr
    assert json.loads((tmp_path / MANIFEST).read_text())["problems"][0] == "level1/1_A"


def test_progress_line_is_plain_in_logs_and_styled_on_a_terminal() -> None:
    from types import SimpleNamespace

    from pytest_hipkittens.progress import ProgressLine

    config = SimpleNamespace(pluginmanager=SimpleNamespace(get_plugin=lambda name: None))
    plain = ProgressLine(config, "plain", attempts=3)  # type: ignore[arg-type]
    line = plain.render("level1/19_ReLU", "building 3 candidate(s)", 2, 0)
    assert line.startswith("[hk] level1/19_ReLU · attempt 2/3 · building 3 candidate(s) · 0:0")
    styled = ProgressLine(config, "rich", attempts=3)  # type: ignore[arg-type]
    text = styled.render("level1/19_ReLU", "verifying + timing", 2, 1)
    assert "\x1b[" in text and "verifying + timing 1" in text
    off = ProgressLine(config, "off", attempts=3)  # type: ignore[arg-type]
    assert off("level1/19_ReLU", "generating", 1) is None


def _finished(tree: ResultsTree, key: str, status: str = "correct", speedup: float = 1.5) -> None:
    store = tree.problem(key)
    store.write_best("p", "c", {"problem": key, "status": status, "timing": {"speedup": speedup}})


def test_a_damaged_result_is_named_counted_and_never_dropped(tmp_path: Path) -> None:
    import subprocess
    import sys

    from pytest_hipkittens.monitor import snapshot

    tree = ResultsTree(tmp_path / "tree")
    _finished(tree, "level1/1_A")
    _finished(tree, "level1/2_B")
    (tree.problem("level1/2_B").dir / "best_result.json").write_text('{"status": "corr')
    records = records_from_tree(tree.root)
    assert [(r["problem"], r["status"]) for r in records] == [
        ("level1/1_A", "correct"),
        ("level1/2_B", "damaged"),
    ]
    assert snapshot(tree.root).finished == {"correct": 1, "damaged": 1}  # not "running"
    before = sorted(p.name for p in tree.root.iterdir())

    def report(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "pytest_hipkittens.cli.report", str(tree.root), *args],
            capture_output=True,
            text=True,
            timeout=120,
        )

    done = report()
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "hk-report: damaged: level1/2_B/best_result.json cannot be read (truncated or not a JSON object)"
    )
    assert "solved 1/2" in done.stdout
    assert sorted(p.name for p in tree.root.iterdir()) == before  # read only
    assert report("--allow-damaged").returncode == 0
    out = tmp_path / "merged"
    assert report("--allow-damaged", "--output", str(out)).returncode == 0
    assert json.loads((out / "summary.json").read_text())["counts"]["damaged"] == 1


def test_monitor_counts_only_this_runs_selection_and_refuses_other_folders(
    tmp_path: Path,
) -> None:
    import time

    from pytest_hipkittens.monitor import MANIFEST, lines, snapshot
    from pytest_hipkittens.results import write_json

    tree = ResultsTree(tmp_path / "tree")
    for key in ("level1/1_A", "level1/2_B", "level1/3_C"):
        _finished(tree, key)
    # A narrower, finished run (-k) over a tree finished by an earlier one.
    write_json(tree.root / MANIFEST, {"problems": ["level1/1_A"], "started": time.time() - 60})
    snap = snapshot(tree.root)
    assert (snap.done, snap.total, snap.elsewhere) == (1, 1, 2)
    rate = snap.rate_per_hour()
    snap.now += 3600  # an hour later, nothing ran: a finished run's rate stays put
    assert snap.rate_per_hour() == rate
    assert lines(snap)[0] == "run: unknown (a tree from an older version)"
    assert "finished 1/1" in lines(snap)[1] and "finished by earlier runs" in lines(snap)[2]
    run = {"label": "nightly", "llm": {"model": "m-1"}, "backend": "cuda"}
    write_json(
        tree.root / MANIFEST,
        {"problems": ["level1/1_A"], "run": run | {"device": {"name": "NVIDIA H200"}}},
    )
    assert lines(snapshot(tree.root))[0] == "run: nightly · m-1 · cuda on NVIDIA H200"
    (tmp_path / "notes").mkdir()
    refused = hk_monitor(tmp_path / "notes")
    assert refused.returncode == 2 and "is not a results tree" in refused.stderr


def test_an_unconfirmed_speedup_is_correct_but_never_faster() -> None:
    records = [
        rec("level1/1_A", "correct", 3.0) | {"confirmed": False},
        rec("level1/2_B", "correct", 1.2) | {"confirmed": True},
        rec("level1/3_C", "correct", 1.1) | {"confirmed": None},  # cpu: not judged
    ]
    fast = summarize(records)["fast_p"]
    assert fast["fast_0"] == 1.0 and fast["fast_1"] == pytest.approx(2 / 3)
    assert fast["fast_1.5"] == 0.0 and fast["fast_2"] == 0.0
