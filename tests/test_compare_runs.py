"""``hk-report --compare``: runs compared problem by problem, per-run summaries, the page.

Most trees here are written by hand following the file contract (a folder per problem with
``result_N.json`` and ``best_result.json``, ``summary.json`` holding the run's metadata),
with numbers chosen so every change and every fast_p can be worked out by hand. The last
test makes two real trees with the plugin on the bundled ReLU sample and compares them.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_hipkittens import compare
from pytest_hipkittens.cli.report import main as hk_report
from pytest_hipkittens.problems import SAMPLES_DIR

from .conftest import REPO, html_report


def meta(label: str | None, device: str = "NVIDIA H200", timing_trials: int = 100) -> dict:
    """Run metadata as runinfo.collect writes it (the fields compare reads)."""
    return {
        "label": label,
        "llm": {"mode": "openai", "model": f"model-{label}", "gateway_host": "gw.example"},
        "prompts": {"set": "cuda", "sha256": "0123456789abcdef"},
        "backend": "cuda",
        "arch": "sm_90a",
        "device": {"name": device, "driver": "550.54", "count": 1},
        "software": {"torch": "2.5.1", "cuda": "12.4", "harness": "0.1.0"},
        "settings": {
            "samples": 1,
            "attempts": 3,
            "correctness_trials": 5,
            "timing_trials": timing_trials,
            "precision": "fp32",
            "isolation": "auto",
        },
        "started": 1_700_000_000.0,
        "finished": 1_700_003_600.0,
        "runs": 1,
    }


def problem(
    root: Path,
    key: str,
    status: str,
    speedup: float | None = None,
    *,
    cv: float | None = 0.01,
    solved_at: int | None = None,
    tokens: int = 1000,
    cost: float = 0.01,
) -> None:
    """A finished problem: one result_N.json per attempt and its best_result.json."""
    folder = root / key
    folder.mkdir(parents=True)
    attempts = solved_at or 3
    for n in range(1, attempts + 1):
        last = n == attempts
        result = {
            "index": n,
            "attempt": n,
            "sample": 1,
            "status": status if last else "compile_error",
            "category": status if last else "compile_error",
            "message": "" if last else "kernel.cu:3: error: expected ';'",
            "timing": None,
        }
        if last and speedup is not None:
            new_ms = 1.0 / speedup
            result["timing"] = {
                "ref_ms": 1.0,
                "new_ms": new_ms,
                "speedup": speedup,
                "trials": 100,
                **({"cv": cv, "ref_cv": cv} if cv is not None else {}),
                "method": "device_events_l2_flush",
            }
        (folder / f"result_{n}.json").write_text(json.dumps(result))
    best = dict(result)
    best.update(
        problem=key,
        backend="cuda",
        hardware={"gpu": "NVIDIA H200"},
        llm={"model": "m"},
        attempts_used=attempts,
        solved_at_attempt=solved_at if status == "correct" else None,
        candidates=attempts,
        totals={"tokens": tokens, "cost_usd": cost},
    )
    (folder / "best_result.json").write_text(json.dumps(best, indent=2))


def summary_with(root: Path, run: dict) -> None:
    (root / "summary.json").write_text(json.dumps({"problems": 0, "run": run}))


@pytest.fixture
def trees(tmp_path: Path) -> dict[str, Path]:
    """Run A and run B on the same card and settings, five problems each.

    ReLU 1.2x → 1.5x (ratio 1.25, noise 2%: faster); Sum 2.0x → 1.0x (slower); Softmax
    compile error → 1.6x (newly solved); RMSNorm 0.8x → incorrect (lost); Matmul 1.0x →
    1.02x with a 5% CV on every timing (noise 10%: same).
    """
    a, b = tmp_path / "run-a", tmp_path / "run-b"
    problem(a, "level1/1_ReLU", "correct", 1.2, solved_at=1, tokens=1000, cost=0.01)
    problem(a, "level1/2_Sum", "correct", 2.0, solved_at=2, tokens=3000, cost=0.03)
    problem(a, "level1/3_Softmax", "compile_error", tokens=4000, cost=0.04)
    problem(a, "level1/4_RMSNorm", "correct", 0.8, solved_at=1, tokens=500, cost=0.005)
    problem(a, "level1/19_Matmul", "correct", 1.0, cv=0.05, solved_at=1, tokens=1500, cost=0.015)
    summary_with(a, meta("A"))
    problem(b, "level1/1_ReLU", "correct", 1.5, solved_at=1, tokens=800, cost=0.02)
    problem(b, "level1/2_Sum", "correct", 1.0, solved_at=1, tokens=700, cost=0.02)
    problem(b, "level1/3_Softmax", "correct", 1.6, solved_at=3, tokens=5000, cost=0.05)
    problem(b, "level1/4_RMSNorm", "incorrect", tokens=2000, cost=0.02)
    problem(b, "level1/19_Matmul", "correct", 1.02, cv=0.05, solved_at=1, tokens=500, cost=0.01)
    (b / "runs").mkdir()  # B's metadata as a run record, A's in summary.json
    (b / "runs" / "20240101T000000.000000-1.json").write_text(json.dumps({"run": meta("B")}))
    return {"a": a, "b": b}


def fingerprint(*roots: Path) -> dict[str, str]:
    """sha256 of every file under the trees (and the list of them)."""
    return {
        str(p): hashlib.sha256(p.read_bytes()).hexdigest()
        for root in roots
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def kinds(cmp: compare.Comparison, run: int = 1) -> dict[str, str]:
    return {row["problem"]: row["changes"][run]["kind"] for row in cmp.rows}


def test_rows_and_changes_against_the_first_run(trees: dict[str, Path]) -> None:
    cmp = compare.compare([trees["a"], trees["b"]])
    assert [r.name for r in cmp.runs] == ["A", "B"]  # the labels
    # numeric order: 19_Matmul after 4_RMSNorm
    assert [row["problem"] for row in cmp.rows] == [
        "level1/1_ReLU",
        "level1/2_Sum",
        "level1/3_Softmax",
        "level1/4_RMSNorm",
        "level1/19_Matmul",
    ]
    assert kinds(cmp) == {
        "level1/1_ReLU": "faster",
        "level1/2_Sum": "slower",
        "level1/3_Softmax": "newly solved",
        "level1/4_RMSNorm": "lost",
        "level1/19_Matmul": "same",
    }
    relu, _, _, _, matmul = (row["changes"][1] for row in cmp.rows)
    assert math.isclose(relu["ratio"], 1.25) and math.isclose(relu["noise"], 0.02)
    assert math.isclose(matmul["noise"], 0.10) and math.isclose(matmul["ratio"], 1.02)
    assert cmp.rows[0]["records"][1]["solved_at_attempt"] == 1
    assert cmp.rows[2]["records"][0]["tokens"] == 4000
    assert cmp.warnings == []  # same card, same settings, same problems


def test_speed_changes_within_the_noise_are_same() -> None:
    a = {"status": "correct", "speedup": 1.0, "cv": 0.1, "ref_cv": 0.1}
    b = {"status": "correct", "speedup": 1.3, "cv": 0.1, "ref_cv": 0.1}
    assert compare.change(a, b)["kind"] == "faster"  # 1.3 > 1 + 0.2
    assert compare.change(a, b | {"speedup": 1.15})["kind"] == "same"
    assert compare.change(a, b | {"speedup": 0.85})["kind"] == "same"  # 1/0.85 < 1.2
    assert compare.change(a, b | {"speedup": 0.8})["kind"] == "slower"
    # No CV recorded (older results): 5% assumed per timing, 10% over the four.
    old = {"status": "correct", "speedup": 1.0}
    assert compare.change(old, old | {"speedup": 1.09})["kind"] == "same"
    assert compare.change(old, old | {"speedup": 1.11})["kind"] == "faster"
    assert compare.change(old, None)["kind"] == "missing"
    assert compare.change(None, old)["kind"] == "new"
    assert compare.change({"status": "damaged"}, old)["kind"] == "damaged"


def test_summary_fast_p_geomean_and_cost_per_solved(trees: dict[str, Path]) -> None:
    cmp = compare.compare([trees["a"], trees["b"]])
    a, b = cmp.summaries
    # A: correct 1.2, 2.0, 0.8, 1.0 of 5 problems; B: 1.5, 1.0, 1.6, 1.02 of 5.
    assert a["fast_p"] == {"fast_0": 0.8, "fast_1": 0.4, "fast_1.5": 0.2, "fast_2": 0.0}
    assert b["fast_p"] == {"fast_0": 0.8, "fast_1": 0.6, "fast_1.5": 0.2, "fast_2": 0.0}
    assert (a["solved"], a["solved_rate"], b["solved"]) == (4, 0.8, 4)
    # Solved in both: ReLU, Sum, Matmul.
    assert cmp.common == ["level1/1_ReLU", "level1/2_Sum", "level1/19_Matmul"]
    assert math.isclose(a["geomean_common"], (1.2 * 2.0 * 1.0) ** (1 / 3))
    assert math.isclose(b["geomean_common"], (1.5 * 1.0 * 1.02) ** (1 / 3))
    assert math.isclose(a["cost_per_solved"], (0.01 + 0.03 + 0.04 + 0.005 + 0.015) / 4)
    assert a["tokens_per_solved"] == (1000 + 3000 + 4000 + 500 + 1500) / 4
    assert math.isclose(b["cost_per_solved"], 0.12 / 4)
    assert a["changes"] is None
    assert b["changes"] == {"faster": 1, "slower": 1, "newly solved": 1, "lost": 1, "same": 1}


def test_fast_p_curve_is_the_fraction_faster_than_p() -> None:
    records = [
        {"status": "correct", "speedup": 0.5},
        {"status": "correct", "speedup": 2.0},
        {"status": "incorrect"},
        {"status": "correct", "speedup": 3.0},
    ]
    xs, ys = compare.fast_p_curve(records, 0.1, 10.0)
    assert xs == [0.1, 0.5, 2.0, 3.0, 10.0]
    # Right after each speedup the problem at it no longer counts (strictly faster).
    assert ys == [0.75, 0.5, 0.25, 0.0, 0.0]


def test_terminal_table_and_the_html_page(
    trees: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = fingerprint(trees["a"], trees["b"])
    page = tmp_path / "out" / "compare.html"
    assert hk_report(["--compare", str(trees["a"]), str(trees["b"]), "--html", str(page)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    row = {ln.split()[0]: ln for ln in lines if ln.startswith("level1/")}
    assert re.search(
        r"\| correct\s+1\.20x\s+1\s+1000\s+0\.0100 \| correct\s+1\.50x\s+1", row["level1/1_ReLU"]
    )
    assert row["level1/1_ReLU"].endswith("| faster 1.25x")
    assert row["level1/2_Sum"].endswith("| slower 0.50x")
    assert row["level1/3_Softmax"].endswith("| newly solved")
    assert row["level1/4_RMSNorm"].endswith("| lost (incorrect)")
    assert row["level1/19_Matmul"].endswith("| same (1.02x, noise band 0.91-1.10x)")
    summary = {ln.split()[0]: ln.split() for ln in lines if ln.split() and ln.split()[0] in "AB"}
    assert summary["A"][1:8] == ["5", "4", "(80%)", "0.80", "0.40", "0.20", "0.00"]
    assert summary["B"][1:8] == ["5", "4", "(80%)", "0.80", "0.60", "0.20", "0.00"]
    assert "1 newly solved, 1 lost, 1 faster, 1 slower, 1 same" in out
    assert "WARNING" not in out
    text = page.read_text(encoding="utf-8")
    pngs = re.findall(r'<img alt="([^"]+)"[^>]*src="data:image/png;base64,([^"]+)"', text)
    assert [alt for alt, _ in pngs] == ["fast_p curves", "speedup scatter"]
    for _, data in pngs:
        assert base64.b64decode(data)[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Run comparison: A vs B" in text and "newly solved" in text
    assert fingerprint(trees["a"], trees["b"]) == before  # read only, byte for byte


def test_different_cards_and_trials_are_flagged(
    trees: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    c = tmp_path / "run-c"
    problem(c, "level1/1_ReLU", "correct", 3.0, solved_at=1)
    summary_with(c, meta("C", device="NVIDIA H100", timing_trials=50))
    page = tmp_path / "c.html"
    assert hk_report(["--compare", str(trees["a"]), str(c), "--html", str(page)]) == 0
    warning = (
        "not directly comparable (A vs C): device differs: NVIDIA H200 vs NVIDIA H100; "
        "timing_trials differs: 100 vs 50"
    )
    out = capsys.readouterr().out
    assert f"WARNING: {warning}" in out.splitlines()
    assert "the runs cover different problems (A 5, C 1; 1 in every run)" in out
    text = page.read_text(encoding="utf-8")
    assert f'<div class="warn">⚠ {warning}</div>' in text
    # Problems C did not run are "missing", not lost.
    assert kinds(compare.compare([trees["a"], c]))["level1/2_Sum"] == "missing"


def test_an_older_tree_and_a_damaged_result(
    trees: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = tmp_path / "results"  # no metadata anywhere: named by its folder
    problem(old, "level1/1_ReLU", "correct", 1.2, cv=None, solved_at=1)
    problem(old, "level1/2_Sum", "correct", 2.0, solved_at=1)
    (old / "level1/2_Sum/best_result.json").write_text('{"status": "corr')
    before = fingerprint(old)
    cmp = compare.compare([trees["a"], old])
    assert cmp.runs[1].name == "results" and cmp.runs[1].meta == {}
    assert cmp.runs[1].records["level1/2_Sum"]["status"] == "damaged"  # never dropped
    assert kinds(cmp)["level1/2_Sum"] == "damaged"
    # The older ReLU has no CV: 5% assumed for its two timings, A's 1% each.
    assert math.isclose(cmp.rows[0]["changes"][1]["noise"], math.sqrt(2 * 0.05**2 + 2 * 0.01**2))
    assert cmp.warnings[0].startswith("results: no run metadata (tree from an older version)")
    assert (
        hk_report(["--compare", str(trees["a"]), str(old), "--html", str(tmp_path / "o.html")]) == 1
    )
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [
        "hk-report: damaged: results: level1/2_Sum/best_result.json cannot be read"
    ]
    assert re.search(
        r"^level1/2_Sum\s+\| correct .*\| damaged\s+-\s+-\s+-\s+- \| damaged result$",
        captured.out,
        re.M,
    )
    assert "0 newly solved, 0 lost, 0 faster, 0 slower, 1 same, 1 damaged" in captured.out
    html_text = (tmp_path / "o.html").read_text(encoding="utf-8")
    assert "unknown" in html_text and "no run metadata" in html_text
    assert hk_report(["--compare", str(trees["a"]), str(old), "--allow-damaged"]) == 0
    assert fingerprint(old) == before


def test_same_labels_get_told_apart(trees: dict[str, Path], tmp_path: Path) -> None:
    twin = tmp_path / "twin"
    shutil.copytree(trees["a"], twin)
    cmp = compare.compare([trees["a"], twin])
    assert [r.name for r in cmp.runs] == ["A", "A#2"]
    assert set(kinds(cmp).values()) == {"same", "unsolved"}


def report_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pytest_hipkittens.cli.report", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_path_that_is_not_a_results_tree(trees: dict[str, Path], tmp_path: Path) -> None:
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "todo.txt").write_text("compare runs")
    proc = report_cli("--compare", str(trees["a"]), str(notes))
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == (
        f"error: {notes} is not a results tree (no level*/<problem>/best_result.json, "
        "no summary.json or hk_run.json)\n"
    )
    # The folder above a tree: pointed at the tree.
    proc = report_cli("--compare", str(trees["a"]), str(tmp_path))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert proc.stderr.rstrip().endswith("; did you mean " + str(trees["a"]) + "?") or (
        proc.stderr.rstrip().endswith("; did you mean " + str(trees["b"]) + "?")
    )
    proc = report_cli("--compare", str(trees["a"]), str(tmp_path / "missing"))
    assert (
        proc.returncode == 2
        and proc.stderr == f"error: {tmp_path / 'missing'} is not a directory\n"
    )
    proc = report_cli("--compare", str(trees["a"]))
    assert (
        proc.returncode == 2
        and proc.stderr == "error: --compare needs at least two results trees\n"
    )


def test_the_comparison_as_a_pytest_html_report(trees: dict[str, Path], tmp_path: Path) -> None:
    """One item per problem carrying its row; the regressions (lost, slower) fail."""
    before = fingerprint(trees["a"], trees["b"])
    out = tmp_path / "ci" / "compare-pytest.html"
    proc = report_cli("--compare", str(trees["a"]), str(trees["b"]), "--pytest-html", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("level1/1_ReLU") == 1  # the table once, no pytest output
    report = html_report(out)
    rows = report["rows"]
    assert list(rows) == [
        "level1/1_ReLU",
        "level1/2_Sum",
        "level1/3_Softmax",
        "level1/4_RMSNorm",
        "level1/19_Matmul",
    ]
    relu = rows["level1/1_ReLU"]["cells"]
    assert (relu["hk0_status"], relu["hk0_speedup"], relu["hk1_speedup"]) == (
        "correct",
        "1.20x",
        "1.50x",
    )
    assert relu["hk0_tokens"] == "1000" and relu["hk1_cost"] == "0.0200"
    assert relu["hkchange1"] == "faster 1.25x"
    assert rows["level1/3_Softmax"]["cells"]["hk1_solved_at"] == "3"
    blob = re.search(r'data-jsonblob="([^"]*)"', report["text"]).group(1)
    tests = json.loads(html.unescape(blob))["tests"]
    results = {k.split("[", 1)[1].rstrip("]"): v[-1]["result"] for k, v in tests.items()}
    assert results == {
        "level1/1_ReLU": "Passed",
        "level1/2_Sum": "Failed",  # slower
        "level1/3_Softmax": "Passed",  # newly solved
        "level1/4_RMSNorm": "Failed",  # lost
        "level1/19_Matmul": "Passed",  # same
    }
    assert report["plots"] == ["fast_p curves", "speedup scatter"]
    assert '<title id="head-title">Run comparison: A vs B</title>' in report["text"]
    assert fingerprint(trees["a"], trees["b"]) == before


# -- end to end: two real runs of the plugin -----------------------------------------------


def plugin_run(
    results: Path, label: str, responses: Path | None, cwd: Path, cache: Path
) -> subprocess.CompletedProcess:
    """``pytest kernelbench_tests -k ReLU`` on the cpu backend with replayed responses.

    The suite's build cache is used, so the unchanged ReLU kernel is a cache hit after its
    first build in the session (the main job's, in test_e2e)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("LLM_GATEWAY_KEY", "KERNELBENCH_DIR", "NUM_SAMPLES", "HK_ALLOW_TORCH_OPS")
    }
    env["HK_BUILD_CACHE"] = str(cache)
    args = [
        sys.executable,
        "-m",
        "pytest",
        str(REPO / "kernelbench_tests"),
        "-k",
        "ReLU",
        "--backend",
        "cpu",
        "--hk-results",
        str(results),
        "--hk-run-label",
        label,
        "-p",
        "no:cacheprovider",
    ]
    if responses is not None:
        args += ["--hk-responses", str(responses)]
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_two_real_runs_compared(tmp_path: Path, build_cache: Path) -> None:
    """Run A replays the bundled ReLU answer; run B's first answer does not compile and its
    second is the same kernel (one new, failing build; the good one is a cache hit)."""
    responses = tmp_path / "responses"
    shutil.copytree(SAMPLES_DIR / "responses", responses)
    relu = responses / "cpu" / "level1" / "1_ReLU"
    good = (relu / "1.md").read_text(encoding="utf-8")
    broken = good.replace(
        'extra_cflags=["-O3", "-fopenmp"]', 'extra_cflags=["-fno-such-flag-hk-compare"]'
    )
    assert broken != good
    (relu / "1.md").write_text(broken, encoding="utf-8")
    (relu / "2.md").write_text(good, encoding="utf-8")

    a, b = tmp_path / "a", tmp_path / "b"
    for results, label, resp in ((a, "A", None), (b, "B", responses)):
        proc = plugin_run(results, label, resp, tmp_path, build_cache)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    before = fingerprint(a, b)
    page = tmp_path / "compare.html"
    proc = report_cli("--compare", str(a), str(b), "--html", str(page))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert fingerprint(a, b) == before
    out = proc.stdout
    assert "WARNING" not in out  # same machine, same settings, same problem
    row = next(ln for ln in out.splitlines() if ln.startswith("level1/1_ReLU"))
    cols = [c.split() for c in row.split("|")]
    # A solved it at attempt 1, B at attempt 2 (after its compile error); replay: 0 tokens.
    assert cols[1][0] == "correct" and cols[1][2:4] == ["1", "0"]
    assert cols[2][0] == "correct" and cols[2][2:4] == ["2", "0"]
    assert cols[3][0] in ("faster", "slower", "same")
    first_b = json.loads((b / "level1" / "1_ReLU" / "result_1.json").read_text())
    assert first_b["status"] == "compile_error"
    assert json.loads((b / "summary.json").read_text())["run"]["label"] == "B"
    assert re.search(r"^A\s+1\s+1 \(100%\)", out, re.M) and re.search(
        r"^B\s+1\s+1 \(100%\)", out, re.M
    )
    assert page.read_text(encoding="utf-8").count('src="data:image/png;base64,') == 2


def test_recorded_intervals_set_the_noise_when_both_results_have_one() -> None:
    from pytest_hipkittens.compare import change, noise

    a = {"status": "correct", "speedup": 1.0, "speedup_ci": [0.98, 1.02], "cv": 0.5, "ref_cv": 0.5}
    b = {"status": "correct", "speedup": 1.06, "speedup_ci": [1.04, 1.08], "cv": 0.5, "ref_cv": 0.5}
    # Per-trial CVs of 50% would call anything "same"; the medians' intervals are narrow.
    assert noise(a, b) < 0.04
    assert change(a, b)["kind"] == "faster"
    older = {k: v for k, v in b.items() if k != "speedup_ci"}
    assert noise(a, older) > 0.9 and change(a, older)["kind"] == "same"
