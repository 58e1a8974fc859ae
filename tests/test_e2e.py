"""End to end on the cpu backend: real C++ builds of the bundled replay samples.

The expensive module of the suite: it compiles three torch extensions (ReLU; Softmax's
broken first attempt and its fix) once, into the session's build cache, and the CLI tests
below reuse those builds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_hipkittens.problems import SAMPLES_DIR

from .conftest import REPO, html_report

SAMPLE = SAMPLES_DIR / "level1"


def run(
    args: list[str], cwd: Path, env: dict[str, str], timeout: float = 1200
) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def env(build_cache: Path) -> dict[str, str]:
    e = {
        k: v
        for k, v in os.environ.items()
        if k not in ("LLM_GATEWAY_KEY", "KERNELBENCH_DIR", "NUM_SAMPLES", "HK_ALLOW_TORCH_OPS")
    }
    e["HK_BUILD_CACHE"] = str(build_cache)
    return e


@pytest.fixture(scope="module")
def main_job(
    tmp_path_factory: pytest.TempPathFactory, env: dict[str, str]
) -> tuple[subprocess.CompletedProcess, Path]:
    """The README's main job on two samples: replay, cpu backend, HTML report."""
    out = tmp_path_factory.mktemp("main-job")
    proc = run(
        [
            sys.executable,
            "-m",
            "pytest",
            str(REPO / "kernelbench_tests"),
            "--range",
            "1,3",
            "--backend",
            "cpu",
            "--hk-samples",
            "2",
            "--hk-results",
            str(out / "results"),
            "--html",
            str(out / "report.html"),
            "--self-contained-html",
            "-p",
            "no:cacheprovider",
        ],
        cwd=REPO,
        env=env,
    )
    return proc, out


def test_main_job_passes_and_writes_everything(main_job) -> None:
    proc, out = main_job
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "2 passed" in proc.stdout
    results = out / "results"
    summary = json.loads((results / "summary.json").read_text())
    assert summary["problems"] == 2 and summary["solved"] == 2
    for name in ("detailed_report.txt", "detailed_report.json"):
        assert (results / name).is_file()
    report = html_report(out / "report.html")
    assert sorted(report["rows"]) == ["level1/1_ReLU", "level1/3_Softmax_rows"]
    plots = ["speedup per problem", "outcomes", "first correct and best attempt"]
    assert report["plots"][:3] == plots
    assert "Kernel benchmark (pytest-hipkittens)" in report["text"]
    # The first screen says what ran and where; rows are problems, without empty log boxes.
    for what in ("<th", "Backend", "cpu", "LLM", "replay", "Trials", "Precision", "fp32"):
        assert what in report["text"].split('id="results-table"')[0], what
    for key, row in report["rows"].items():
        assert row["cells"]["testId"] == key and not row["log"], row
    softmax = report["rows"]["level1/3_Softmax_rows"]
    assert softmax["cells"]["hkstatus"] in ("faster", "slower", "not decided")
    # Fixed at attempt 2, still slower than PyTorch: it goes on to attempt 3.
    assert softmax["cells"]["hkattempts"] == "3" and float(softmax["cells"]["hkspeedup"]) > 0
    for extra in ("best code", "prompt, attempt 1", "prompt, attempt 2", "best result"):
        assert extra in softmax["extras"], extra
    assert "compile_error" in report["text"]  # the attempts table of Softmax's first attempt


def test_relu_is_correct_on_the_first_attempt(main_job) -> None:
    _, out = main_job
    relu = out / "results" / "level1" / "1_ReLU"
    first = json.loads((relu / "result_1.json").read_text())
    assert (first["status"], first["attempt"]) == ("correct", 1)
    assert first["correctness"]["passed"] == first["correctness"]["trials"] == 5
    assert first["timing"]["ref_ms"] > 0 and first["timing"]["new_ms"] > 0
    # Two samples of the same recorded answer: evaluated once, recorded twice.
    second = json.loads((relu / "result_2.json").read_text())
    assert second["sample"] == 2 and second["code_sha256"] == first["code_sha256"]
    best = json.loads((relu / "best_result.json").read_text())
    assert best["status"] == "correct" and (relu / "best_code.py").is_file()
    # What a real run writes is what the shared schema declares.
    from pytest_hipkittens.evaluate.schema import Result

    for path in relu.glob("*result*.json"):
        assert set(json.loads(path.read_text())) <= set(Result.__annotations__), path
    # Every accepted result carries its noise, the profiler's cross-check and the roofline.
    timing = best["timing"]
    lo, hi = timing["speedup_ci"]
    assert lo <= timing["speedup"] <= hi and isinstance(timing["decided"], bool)
    cross = timing["crosscheck"]
    assert cross["tool"] == "torch.profiler (cpu clock)" and cross["new_device_ms"] > 0
    assert cross["confirmed"] is None and cross["escaped"] is None  # cpu: recorded, not judged
    roof = best["roofline"]
    assert roof["bytes"] == timing["bytes"] and roof["bound"] == "memory"
    assert roof["roof"]["source"].startswith("measured on this cpu") and roof["pct_of_peak"] > 0
    # --hk-profile slow (the default): a slower best kernel is profiled, a faster one is not.
    slower = best["timing"]["speedup"] < 1
    profiled = bool(best["profile"] and best["profile"]["kernels"])
    assert profiled == slower, (best["timing"]["speedup"], best["profile"])


def test_softmax_compile_error_then_fixed(main_job) -> None:
    _, out = main_job
    soft = out / "results" / "level1" / "3_Softmax_rows"
    first = json.loads((soft / "result_1.json").read_text())
    assert (first["status"], first["attempt"]) == ("compile_error", 1)
    assert "error:" in first["message"] and "max" in first["message"]
    fixed = [json.loads(p.read_text()) for p in sorted(soft.glob("result_*.json"))]
    assert any(r["status"] == "correct" and r["attempt"] == 2 for r in fixed)
    prompt = next(
        p for p in sorted(soft.glob("prompt_*.txt")) if "Feedback on attempt 1" in p.read_text()
    )
    text = prompt.read_text()
    assert first["message"] in text and "Hint: Read the first compiler error" in text


def hk(tool: str, *args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return run(
        [sys.executable, "-m", f"pytest_hipkittens.cli.{tool}", *args],
        cwd=cwd,
        env=env,
        timeout=600,
    )


def test_hk_eval_exit_codes(main_job, env: dict[str, str], tmp_path: Path) -> None:
    _, out = main_job
    best = out / "results" / "level1" / "1_ReLU" / "best_code.py"
    proc = hk(
        "eval",
        "--code",
        str(best),
        "--problem",
        str(SAMPLE / "1_ReLU.py"),
        "--backend",
        "cpu",
        "--output",
        str(tmp_path / "r.json"),
        env=env,
        cwd=tmp_path,
    )
    result = json.loads(proc.stdout)
    assert result["status"] == "correct"
    assert proc.returncode == (0 if result["timing"]["speedup"] >= 1 else 1)
    assert json.loads((tmp_path / "r.json").read_text())["code_sha256"] == result["code_sha256"]

    broken = tmp_path / "broken.py"
    broken.write_text(
        best.read_text().replace(
            'extra_cflags=["-O3", "-fopenmp"]', 'extra_cflags=["-fno-such-flag-hk"]'
        )
    )
    proc = hk(
        "eval",
        "--code",
        str(broken),
        "--problem",
        str(SAMPLE / "1_ReLU.py"),
        "--backend",
        "cpu",
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert json.loads(proc.stdout)["status"] == "compile_error"


def test_hk_eval_bad_input(env: dict[str, str], tmp_path: Path) -> None:
    no_model = tmp_path / "nomodel.py"
    no_model.write_text("import torch\n")
    proc = hk(
        "eval",
        "--code",
        str(no_model),
        "--problem",
        str(SAMPLE / "1_ReLU.py"),
        "--backend",
        "cpu",
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert "candidate defines no class ModelNew" in proc.stderr
    assert json.loads(proc.stdout)["status"] == "rejected"
    proc = hk(
        "eval",
        "--code",
        str(no_model),
        "--problem",
        str(tmp_path / "none.py"),
        env=env,
        cwd=tmp_path,
    )
    assert (
        proc.returncode == 2
        and proc.stderr.strip() == f"error: problem file not found: {tmp_path / 'none.py'}"
    )
    proc = hk(
        "eval",
        "--code",
        str(no_model),
        "--problem",
        str(SAMPLE / "1_ReLU.py"),
        "--backend",
        "hip",
        env=env,
        cwd=tmp_path,
    )
    assert (
        proc.returncode == 2
        and proc.stderr.startswith("error: --backend hip:")
        and proc.stderr.count("\n") == 1
    )
    proc = hk(
        "eval",
        "--code",
        str(no_model),
        "--problem",
        str(SAMPLE / "1_ReLU.py"),
        "--backend",
        "tpu",
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 2 and "unknown backend 'tpu'" in proc.stderr


def test_hk_generate_replays_a_response(env: dict[str, str], tmp_path: Path) -> None:
    response = SAMPLES_DIR / "responses" / "cpu" / "level1" / "1_ReLU" / "1.md"
    proc = hk(
        "generate",
        "--problem",
        str(SAMPLE / "1_ReLU.py"),
        "--output",
        str(tmp_path / "c.py"),
        "--response-file",
        str(response),
        "--save-prompt",
        str(tmp_path / "p.txt"),
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "class ModelNew" in (tmp_path / "c.py").read_text()
    assert "level1/1_ReLU" in (tmp_path / "p.txt").read_text()
    empty = tmp_path / "empty.md"
    empty.write_text("no code here")
    proc = hk(
        "generate",
        "--problem",
        str(SAMPLE / "1_ReLU.py"),
        "--output",
        str(tmp_path / "d.py"),
        "--response-file",
        str(empty),
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 2 and "no code in the response" in proc.stderr


def test_hk_report_rebuilds_from_the_tree(main_job, env: dict[str, str], tmp_path: Path) -> None:
    _, out = main_job
    results = out / "results"
    original = json.loads((results / "summary.json").read_text())
    before = sorted(p.relative_to(results) for p in results.rglob("*"))
    proc = hk("report", str(results), env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"solved {original['solved']}/{original['problems']}" in proc.stdout
    proc = hk("report", str(results), "--output", str(tmp_path / "copy"), env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "copy" / "summary.json").read_text()) == original
    # The HTML report rebuilt from the tree alone: same rows, cells, extras and plots.
    rebuilt = tmp_path / "rebuilt.html"
    proc = hk("report", str(results), "--html", str(rebuilt), env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr
    # the table once, no pytest progress from the re-render
    assert proc.stdout.count("solved ") == 1 and " passed" not in proc.stdout, proc.stdout
    live, again = html_report(out / "report.html"), html_report(rebuilt)
    assert again["plots"] == live["plots"] and sorted(again["rows"]) == sorted(live["rows"])
    assert "Rebuilt from the results tree" in again["text"]
    assert "Rebuilt from the results tree" not in live["text"]
    # Durations are the recorded ones (the problem's wall time), not the reload's.
    from pytest_html.basereport import _format_duration

    for key, row in again["rows"].items():
        best = json.loads((results / key / "best_result.json").read_text())
        assert row["cells"]["duration"] == _format_duration(best["totals"]["wall_s"]), key
    for key, row in live["rows"].items():
        cells = {k: v for k, v in row["cells"].items() if k.startswith("hk")}
        assert {k: v for k, v in again["rows"][key]["cells"].items() if k.startswith("hk")} == cells
        assert again["rows"][key]["extras"] == row["extras"]
    # Reading, rebuilding and rendering wrote nothing into the tree.
    assert sorted(p.relative_to(results) for p in results.rglob("*")) == before
    proc = hk("report", str(tmp_path / "nothing"), env=env, cwd=tmp_path)
    assert proc.returncode == 2 and "is not a directory" in proc.stderr
