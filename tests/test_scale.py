"""Scale-out: shards, device/core assignment, xdist runs and merging shard trees."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_hipkittens.problems import Problem
from pytest_hipkittens.scale import (
    ScaleError,
    auto_workers,
    cpu_slice,
    device_for,
    parse_shard,
    shard,
    visible_devices,
)

from .conftest import SCALE_PROBLEM, fenced, html_report, python_candidate, write_problem
from .test_plugin import TEST_MODULE, responses_for, run_toy


def problems(n: int) -> list[Problem]:
    return [Problem(1 + i % 2, i, f"P{i}", Path(f"/x/{i}.py")) for i in range(n)]


def test_parse_shard() -> None:
    assert parse_shard("2/4") == (2, 4) and parse_shard(" 1 / 1 ") == (1, 1)
    for bad in ("0/4", "5/4", "1/0", "x", "1-4"):
        with pytest.raises(ScaleError):
            parse_shard(bad)


@pytest.mark.parametrize("count", [1, 2, 3, 4, 7])
def test_shards_cover_every_problem_once_and_balance(count: int) -> None:
    probs = problems(23)
    parts = [shard(probs, i, count) for i in range(1, count + 1)]
    keys = [p.key for part in parts for p in part]
    assert sorted(keys) == sorted(p.key for p in probs) and len(keys) == len(set(keys))
    sizes = [len(part) for part in parts]
    assert max(sizes) - min(sizes) <= 1
    # Independent of the order the problems arrive in.
    assert [p.key for p in shard(list(reversed(probs)), 1, count)] == [p.key for p in parts[0]]


def test_device_assignment() -> None:
    assert visible_devices("CUDA_VISIBLE_DEVICES", 2, {"CUDA_VISIBLE_DEVICES": "4,6"}) == ["4", "6"]
    assert visible_devices("CUDA_VISIBLE_DEVICES", 3, {}) == ["0", "1", "2"]
    assert device_for("gw1", 2, ["4", "6"]) == "6"
    with pytest.raises(ScaleError, match="two workers would time on the same GPU"):
        device_for("gw0", 3, ["0", "1"])
    assert (
        auto_workers("cuda", 4, 64) == 4
        and auto_workers("cpu", 0, 16) == 8
        and auto_workers("cpu", 0, 1) == 1
    )


def test_cpu_slices_are_disjoint_and_complete() -> None:
    cores = list(range(7))
    slices = [cpu_slice(f"gw{k}", 3, cores) for k in range(3)]
    assert slices == [[0, 1, 2], [3, 4], [5, 6]]
    with pytest.raises(ScaleError, match="3 xdist workers but 2 CPU core"):
        cpu_slice("gw0", 3, [0, 1])


@pytest.fixture
def two_toys(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "kb"
    write_problem(root, "1_Scale.py", SCALE_PROBLEM)
    write_problem(root, "2_Scale.py", SCALE_PROBLEM)
    responses = tmp_path / "responses"
    for key in ("level1/1_Scale", "level1/2_Scale"):
        responses_for(responses, key, {"1": fenced(python_candidate("x * self.factor"))})
    return root, responses


def run(pytester: pytest.Pytester, root: Path, responses: Path, *extra: str) -> pytest.RunResult:
    return run_toy(pytester, root, responses, "--hk-target-speedup", "0", *extra)


def test_shard_option_selects_and_validates(
    pytester: pytest.Pytester, hk_env: Path, two_toys
) -> None:
    pytester.makepyfile(test_kernelbench=TEST_MODULE)
    root, _ = two_toys
    first = pytester.runpytest(
        "--kernelbench-dir", str(root), "--collect-only", "-q", "--hk-shard", "1/2"
    )
    first.stdout.fnmatch_lines(["*level1/1_Scale*", "*1 test collected*"])
    second = pytester.runpytest(
        "--kernelbench-dir", str(root), "--collect-only", "-q", "--hk-shard", "2/2"
    )
    second.stdout.fnmatch_lines(["*level1/2_Scale*", "*1 test collected*"])
    empty = pytester.runpytest("--kernelbench-dir", str(root), "--hk-shard", "3/3")
    assert empty.ret == pytest.ExitCode.USAGE_ERROR
    empty.stderr.fnmatch_lines(["ERROR: --hk-shard 3/3 selects no problem (only 2 selected)"])
    bad = pytester.runpytest("--kernelbench-dir", str(root), "--hk-shard", "0/2")
    bad.stderr.fnmatch_lines(["*--hk-shard: I must be between 1 and N*"])


@pytest.mark.slow
def test_xdist_workers_split_the_cores(pytester: pytest.Pytester, hk_env: Path, two_toys) -> None:
    import os

    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs two cores")
    pytester.makepyfile(test_kernelbench=TEST_MODULE)
    root, responses = two_toys
    result = run(
        pytester, root, responses, "-n", "2", "--html", "report.html", "--self-contained-html"
    )
    result.assert_outcomes(passed=2)
    results = pytester.path / "results"
    # Each worker's items reach the controller's report: columns, extras and the plots.
    report = html_report(pytester.path / "report.html")
    assert sorted(report["rows"]) == ["level1/1_Scale", "level1/2_Scale"]
    assert all(
        r["cells"]["hkattempts"] == "1" and "best code" in r["extras"]
        for r in report["rows"].values()
    )
    assert report["plots"][:3] == [
        "speedup per problem",
        "outcomes",
        "first correct and best attempt",
    ]
    manifest = json.loads((results / "hk_run.json").read_text())
    assert manifest["problems"] == ["level1/1_Scale", "level1/2_Scale"]
    summary = json.loads((results / "summary.json").read_text())
    assert summary["problems"] == 2 and summary["solved"] == 2
    affinities = [
        tuple(
            json.loads((results / "level1" / name / "best_result.json").read_text())["hardware"][
                "cpu_affinity"
            ]
        )
        for name in ("1_Scale", "2_Scale")
    ]
    assert all(len(a) == len(os.sched_getaffinity(0)) // 2 for a in affinities)
    result.stdout.fnmatch_lines(["*hipkittens benchmark*", "solved 2/2*"])


def test_too_many_workers_is_a_usage_error(
    pytester: pytest.Pytester, hk_env: Path, two_toys
) -> None:
    import os

    pytester.makepyfile(test_kernelbench=TEST_MODULE)
    root, responses = two_toys
    n = len(os.sched_getaffinity(0)) + 1
    result = run(pytester, root, responses, "-n", str(n))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {n} xdist workers but * CPU core(s) for the cpu backend"])


@pytest.mark.slow
def test_merged_shards_equal_a_single_run(
    pytester: pytest.Pytester, hk_env: Path, two_toys, tmp_path: Path
) -> None:
    pytester.makepyfile(test_kernelbench=TEST_MODULE)
    root, responses = two_toys
    single, shard1, shard2 = tmp_path / "single", tmp_path / "s1", tmp_path / "s2"
    run(pytester, root, responses, "--hk-results", str(single)).assert_outcomes(passed=2)
    run(
        pytester, root, responses, "--hk-results", str(shard1), "--hk-shard", "1/2"
    ).assert_outcomes(passed=1)
    run(
        pytester, root, responses, "--hk-results", str(shard2), "--hk-shard", "2/2"
    ).assert_outcomes(passed=1)
    merged = tmp_path / "merged"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest_hipkittens.cli.report",
            str(shard1),
            str(shard2),
            "--output",
            str(merged),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    a = json.loads((single / "summary.json").read_text())
    b = json.loads((merged / "summary.json").read_text())
    for key in ("problems", "counts", "solved", "solved_rate"):
        assert a[key] == b[key], key
    merged_detail = json.loads((merged / "detailed_report.json").read_text())
    assert [p["problem"] for p in merged_detail["problems"]] == ["level1/1_Scale", "level1/2_Scale"]
