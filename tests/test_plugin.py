"""Plugin behaviour through pytester: options, collection, errors, the generation loop."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from .conftest import REPO, SCALE_PROBLEM, fenced, html_report, python_candidate, write_problem

TEST_MODULE = (REPO / "kernelbench_tests" / "test_kernelbench.py").read_text()


@pytest.fixture
def kb(pytester: pytest.Pytester, hk_env: Path) -> pytest.Pytester:
    """A pytester dir holding the benchmark test module (the plugin loads by entry point)."""
    pytester.makepyfile(test_kernelbench=TEST_MODULE)
    return pytester


def make_checkout(root: Path) -> Path:
    for level, ids in {1: [1, 2, 19, 20, 25, 26], 2: [1, 3]}.items():
        for i in ids:
            write_problem(root / "KernelBench" / f"level{level}", f"{i}_Op{i}.py", SCALE_PROBLEM)
    write_problem(root / "KernelBench" / "level1", "4_Matmul_square.py", SCALE_PROBLEM)
    return root


def test_help_lists_options(kb: pytest.Pytester) -> None:
    result = kb.runpytest("--help")
    result.stdout.fnmatch_lines(
        [
            "*pytest-hipkittens*",
            "*--range=SPEC*",
            "*--level=N*",
            "*--kernelbench-dir=DIR*",
            "*--backend=*",
            "*--hk-attempts=N*",
            "*--hk-samples=N*",
            "*--hk-results=DIR*",
            "*--llm=*",
            "*--hk-responses=DIR*",
        ]
    )


def test_collects_one_item_per_sample_with_readable_ids(kb: pytest.Pytester) -> None:
    result = kb.runpytest("--collect-only", "-q")
    result.stdout.fnmatch_lines(
        [
            "test_kernelbench.py::test_kernel[[]level1/1_ReLU[]]",
            "test_kernelbench.py::test_kernel[[]level1/3_Softmax_rows[]]",
            "test_kernelbench.py::test_kernel[[]level1/5_Small_Matmul[]]",
            "*6 tests collected*",
        ]
    )


def test_range_level_and_k_on_a_kernelbench_checkout(kb: pytest.Pytester, tmp_path: Path) -> None:
    root = make_checkout(tmp_path / "KB")
    result = kb.runpytest(
        "--collect-only", "-q", "--kernelbench-dir", str(root), "--range", "19-25"
    )
    result.stdout.fnmatch_lines(
        ["*level1/19_Op19*", "*level1/20_Op20*", "*level1/25_Op25*", "*3 tests collected*"]
    )
    assert "26_Op26" not in result.stdout.str()
    result = kb.runpytest("--collect-only", "-q", "--kernelbench-dir", str(root), "-k", "matmul")
    result.stdout.fnmatch_lines(
        ["*level1/4_Matmul_square*", "*1/7 tests collected (6 deselected)*"]
    )
    result = kb.runpytest(
        "--collect-only",
        "-q",
        "--kernelbench-dir",
        str(root),
        "--level",
        "1",
        "--level",
        "2",
        "--range",
        "1-3",
    )
    result.stdout.fnmatch_lines(
        [
            "*level1/1_Op1*",
            "*level1/2_Op2*",
            "*level2/1_Op1*",
            "*level2/3_Op3*",
            "*4 tests collected*",
        ]
    )


def test_env_kernelbench_dir(
    kb: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KERNELBENCH_DIR", str(make_checkout(tmp_path / "KB")))
    result = kb.runpytest("--collect-only", "-q", "--range", "1,26")
    result.stdout.fnmatch_lines(["*level1/1_Op1*", "*level1/26_Op26*", "*2 tests collected*"])


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--range", "25-19"], "*--range: '25-19' is empty (start is after end)*"),
        (["--range", "x"], "*--range: 'x' is not N or N-M*"),
        (["--range", "90-99"], "ERROR: --range 90-99 matches no problem in *"),
        (
            ["--kernelbench-dir", "/no/such/dir"],
            "ERROR: --kernelbench-dir: /no/such/dir is not a directory",
        ),
        (
            ["--backend", "metal"],
            "ERROR: --backend: 'metal' is not one of: auto, cpu, cuda, hip (from the command line)",
        ),
        (
            ["--hk-attempts", "0"],
            "ERROR: --hk-attempts: '0' must be at least 1 (from the command line)",
        ),
        (["--llm", "openai"], "ERROR: --llm openai needs the gateway key in $LLM_GATEWAY_KEY*"),
        (["--hk-prompts", "/no/such/dir"], "ERROR: --hk-prompts: no config.json in /no/such/dir"),
        (
            ["--backend", "hip", "--range", "1"],
            "ERROR: --backend hip: torch * is not a ROCm build*",
        ),
    ],
)
def test_bad_input_is_one_clear_line(kb: pytest.Pytester, args: list[str], needle: str) -> None:
    result = kb.runpytest(*args)
    assert result.ret in (pytest.ExitCode.USAGE_ERROR, 4)
    result.stderr.fnmatch_lines([needle])
    assert "Traceback" not in result.stderr.str() + result.stdout.str()


def test_isolation_setting_is_checked(kb: pytest.Pytester, monkeypatch) -> None:
    from pytest_hipkittens.evaluate import isolation

    result = kb.runpytest("--hk-isolation", "sometimes")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: --hk-isolation: 'sometimes' is not one of: auto, required, off (from the command line)"
        ]
    )
    monkeypatch.setattr(isolation, "unavailable", lambda: "unshare(user, mount): EPERM")
    result = kb.runpytest("--hk-isolation", "required", "--range", "1")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: --hk-isolation required: workers cannot be isolated on this host (unshare*"]
    )
    monkeypatch.setenv("HK_ISOLATION", "maybe")  # env and ini values are checked like flags
    result = kb.runpytest("--range", "1")
    result.stderr.fnmatch_lines(
        ["ERROR: --hk-isolation: 'maybe' is not one of: auto, required, off (from $HK_ISOLATION)"]
    )
    monkeypatch.delenv("HK_ISOLATION")
    result = kb.runpytest("--range", "1", "-o", "hk_progress=loud")
    result.stderr.fnmatch_lines(
        [
            "ERROR: --hk-progress: 'loud' is not one of: auto, rich, plain, off (from ini hk_progress)"
        ]
    )


def test_malformed_problem_file_is_a_usage_error(kb: pytest.Pytester, tmp_path: Path) -> None:
    root = tmp_path / "bad"
    write_problem(root, "1_Fine.py", SCALE_PROBLEM)
    write_problem(root, "2_NoInputs.py", "import torch\nclass Model(torch.nn.Module):\n    pass\n")
    result = kb.runpytest("--kernelbench-dir", str(root))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: */2_NoInputs.py: not a KernelBench problem, missing get_inputs, get_init_inputs"]
    )


def test_bad_prompt_config_is_a_usage_error(kb: pytest.Pytester, repo_prompts: Path) -> None:
    (repo_prompts / "config.json").write_text(
        json.dumps({"backends": {"cpu": {"default_prompt": "nope.txt"}}})
    )
    result = kb.runpytest("--hk-prompts", str(repo_prompts), "--range", "1", "--backend", "cpu")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: *backends.cpu.default_prompt: prompt file nope.txt not found*"]
    )


def test_unrelated_tests_are_untouched(pytester: pytest.Pytester, hk_env: Path) -> None:
    pytester.makepyfile("def test_plain():\n    assert True\n")
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)
    assert "hipkittens benchmark" not in result.stdout.str()


# -- the generation loop on cheap pure-Python candidates ---------------------------------


def responses_for(root: Path, key: str, answers: dict[str, str]) -> Path:
    folder = root / "cpu" / key
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in answers.items():
        (folder / f"{name}.md").write_text(text)
    return root


def run_toy(kb: pytest.Pytester, toy_kb: Path, responses: Path, *extra: str) -> pytest.RunResult:
    return kb.runpytest_subprocess(
        "--kernelbench-dir",
        str(toy_kb),
        "--hk-responses",
        str(responses),
        "--backend",
        "cpu",
        "--hk-samples",
        "1",
        "--hk-timing-trials",
        "5",
        "--hk-correctness-trials",
        "2",
        "--junitxml",
        "junit.xml",
        "-o",
        "junit_family=xunit1",
        "-p",
        "no:cacheprovider",
        *extra,
    )


def test_incorrect_then_fixed_with_reflection_and_resume(
    kb: pytest.Pytester, toy_kb: Path, tmp_path: Path
) -> None:
    responses = responses_for(
        tmp_path / "responses",
        "level1/1_Scale",
        {
            "1": fenced(python_candidate("x * 2.0")),
            "2": fenced(python_candidate("x * self.factor"), "Fixed the factor."),
        },
    )
    result = run_toy(kb, toy_kb, responses, "--hk-target-speedup", "0")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "*hipkittens benchmark*",
            "problem * outcome * speedup * 95% CI*",
            "level1/1_Scale *",
            "solved 1/1*",
        ]
    )
    tree = kb.path / "results" / "level1" / "1_Scale"
    r1 = json.loads((tree / "result_1.json").read_text())
    r2 = json.loads((tree / "result_2.json").read_text())
    assert (r1["status"], r1["attempt"]) == ("incorrect", 1)
    assert (r2["status"], r2["attempt"]) == ("correct", 2)
    prompt2 = (tree / "prompt_2.txt").read_text()
    assert "Feedback on attempt 1" in prompt2 and "x * 2.0" in prompt2 and "outside atol" in prompt2
    assert "Hint: The output does not match the reference" in prompt2
    best = json.loads((tree / "best_result.json").read_text())
    assert best["attempts_used"] == 2 and best["solved_at_attempt"] == 2 and best["candidates"] == 2
    assert (tree / "best_code.py").read_text() == python_candidate("x * self.factor")
    summary = json.loads((kb.path / "results" / "summary.json").read_text())
    assert summary["solved"] == 1 and summary["counts"]["correct"] == 1
    junit = (kb.path / "junit.xml").read_text()
    assert 'name="hk_status" value="correct"' in junit and 'name="hk_speedup"' in junit

    # A re-run resumes: nothing new is generated or written.
    before = sorted(p.name for p in tree.iterdir())
    again = run_toy(kb, toy_kb, responses, "--hk-target-speedup", "0")
    again.assert_outcomes(passed=1)
    assert sorted(p.name for p in tree.iterdir()) == before
    # --hk-redo starts the problem over.
    redo = run_toy(
        kb, toy_kb, responses, "--hk-target-speedup", "0", "--hk-redo", "--hk-attempts", "1"
    )
    redo.assert_outcomes(failed=1)
    assert not (tree / "result_2.json").exists()
    # … and the earlier work is set aside, never deleted.
    (kept,) = (kb.path / "results" / "superseded" / "level1").iterdir()
    assert kept.name.startswith("1_Scale.") and (kept / "result_2.json").is_file()


def test_never_correct_fails_with_category_and_last_error(
    kb: pytest.Pytester, toy_kb: Path, tmp_path: Path
) -> None:
    responses = responses_for(
        tmp_path / "responses",
        "level1/1_Scale",
        {"1": "Sorry, no code today.", "2": fenced(python_candidate("x.view(7, -1, 3)"))},
    )
    result = run_toy(kb, toy_kb, responses, "--hk-attempts", "2")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*level1/1_Scale: no correct kernel after 2 attempt(s), 2 candidate(s); best: runtime_error*"
        ]
    )
    r1 = json.loads((kb.path / "results" / "level1" / "1_Scale" / "result_1.json").read_text())
    assert (r1["status"], r1["category"]) == ("compile_error", "no_code")
    prompt2 = (kb.path / "results" / "level1" / "1_Scale" / "prompt_2.txt").read_text()
    assert "no_code" in prompt2 and "no python code block" in prompt2


def test_missing_recordings_fail_the_item_not_the_session(
    kb: pytest.Pytester, toy_kb: Path, tmp_path: Path
) -> None:
    write_problem(toy_kb, "2_Scale2.py", SCALE_PROBLEM)
    responses = responses_for(
        tmp_path / "responses", "level1/1_Scale", {"1": fenced(python_candidate("x * self.factor"))}
    )
    result = run_toy(kb, toy_kb, responses, "--hk-target-speedup", "0")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*LLM (replay): no recorded responses for level1/2_Scale2*"])
    assert "During handling" not in result.stdout.str()
    assert not (kb.path / "results" / "level1" / "2_Scale2" / "best_result.json").exists()


def test_openai_gateway_flow(
    kb: pytest.Pytester, toy_kb: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from .gateway import serve_for_plugin

    script = [
        (429, None),
        ("ok", fenced(python_candidate("x + 1"))),
        ("ok", fenced(python_candidate("x * self.factor"))),
    ]
    with serve_for_plugin(monkeypatch, script) as gw:
        result = run_toy(
            kb,
            toy_kb,
            tmp_path,
            "--llm",
            "openai",
            "--hk-model",
            "tiny",
            "--hk-target-speedup",
            "0",
        )
    result.assert_outcomes(passed=1)
    assert len(gw.requests) == 3 and gw.requests[0]["body"]["model"] == "tiny"
    second_prompt = gw.requests[2]["body"]["messages"][0]["content"]
    assert "Feedback on attempt 1" in second_prompt and "x + 1" in second_prompt
    best = json.loads((kb.path / "results" / "level1" / "1_Scale" / "best_result.json").read_text())
    assert best["llm"]["usage"] == {"prompt_tokens": 100, "completion_tokens": 50}
    assert best["totals"]["tokens"] == 300


def test_html_report_has_benchmark_columns(
    kb: pytest.Pytester, toy_kb: Path, tmp_path: Path
) -> None:
    responses = responses_for(
        tmp_path / "responses", "level1/1_Scale", {"1": fenced(python_candidate("x * self.factor"))}
    )
    result = run_toy(
        kb,
        toy_kb,
        responses,
        "--hk-target-speedup",
        "0",
        "--html",
        "report.html",
        "--self-contained-html",
    )
    result.assert_outcomes(passed=1)
    report = html_report(kb.path / "report.html")
    row = report["rows"]["level1/1_Scale"]
    assert row["cells"]["hkstatus"] in ("faster", "slower", "not decided")
    assert row["cells"]["hkattempts"] == "1"
    # best code, the attempts table (html), [the profile (html) when slower], prompt, result
    assert row["extras"][:2] == ["best code", "html"] and row["extras"][-1] == "best result"
    assert "prompt, attempt 1" in row["extras"]
    for title in ("Problem", "Outcome", "Speedup", "95% CI", "Ref ms", "New ms", "% of peak"):
        assert f">{title}</th>" in report["text"], title
    for title in ("vs compile", "Library", "Tokens", "Cost $"):
        assert f">{title}</th>" in report["text"], title
    assert report["plots"][:3] == [
        "speedup per problem",
        "outcomes",
        "first correct and best attempt",
    ]
    # What ran, from the records: the report's environment table says it.
    env = report["environment"]
    assert env["Benchmark backend"] == "cpu" and env["LLM model"] == "replay", env
    assert env["Torch"].startswith("2.") and env["Device"] != "-"
    # Not a terminal: the live progress comes as plain lines, one per stage.
    result.stdout.fnmatch_lines(
        [
            "[[]hk[]] level1/1_Scale · reference · *",
            "[[]hk[]] level1/1_Scale · attempt 1/3 · generating · *",
            "[[]hk[]] level1/1_Scale · attempt 1/3 · building 1 candidate(s) · *",
            "[[]hk[]] level1/1_Scale · attempt 1/3 · verifying + timing 1 · *",
            "[[]hk[]] level1/1_Scale · done: correct, *",
        ]
    )
    manifest = json.loads((kb.path / "results" / "hk_run.json").read_text())
    assert manifest["problems"] == ["level1/1_Scale"] and manifest["backend"] == "cpu"


def test_results_dir_option(kb: pytest.Pytester, toy_kb: Path, tmp_path: Path) -> None:
    responses = responses_for(
        tmp_path / "responses", "level1/1_Scale", {"1": fenced(python_candidate("x * self.factor"))}
    )
    out = tmp_path / "elsewhere"
    run_toy(
        kb, toy_kb, responses, "--hk-target-speedup", "0", "--hk-results", str(out)
    ).assert_outcomes(passed=1)
    assert (out / "level1" / "1_Scale" / "best_result.json").is_file()
    assert (out / "summary.json").is_file() and (out / "detailed_report.txt").is_file()
    shutil.rmtree(out)


def test_gateway_failure_errors_the_item_and_keeps_earlier_attempts(
    kb: pytest.Pytester, toy_kb: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from .gateway import serve_for_plugin

    # Attempt 1 answers (incorrect); every later request fails with 500 until retries run out.
    with serve_for_plugin(
        monkeypatch, [("ok", fenced(python_candidate("x * 2.0")))], default=(500, None)
    ) as gw:
        result = run_toy(kb, toy_kb, tmp_path, "--llm", "openai", "--hk-llm-retries", "1")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*LLM (openai): gateway answered HTTP 500 after retries*"])
    tree = kb.path / "results" / "level1" / "1_Scale"
    assert json.loads((tree / "result_1.json").read_text())["status"] == "incorrect"
    assert not (tree / "best_result.json").exists(), "an unfinished problem is resumed next run"
    assert len(gw.requests) == 3  # attempt 1, then attempt 2 and its one retry


def test_prices_file_drives_cost(
    kb: pytest.Pytester, toy_kb: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from .gateway import serve_for_plugin

    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"tiny": [2.0, 10.0]}))
    with serve_for_plugin(monkeypatch, [("ok", fenced(python_candidate("x * self.factor")))]):
        result = run_toy(
            kb,
            toy_kb,
            tmp_path,
            "--llm",
            "openai",
            "--hk-model",
            "tiny",
            "--hk-prices",
            str(prices),
            "--hk-target-speedup",
            "0",
        )
    result.assert_outcomes(passed=1)
    best = json.loads((kb.path / "results" / "level1" / "1_Scale" / "best_result.json").read_text())
    assert best["llm"]["cost_usd"] == pytest.approx((100 * 2.0 + 50 * 10.0) / 1e6)
    assert best["totals"]["cost_usd"] == pytest.approx(best["llm"]["cost_usd"])


def test_bad_prices_file_is_one_line(kb: pytest.Pytester, tmp_path: Path) -> None:
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"m": "cheap"}))
    result = kb.runpytest("--hk-prices", str(prices))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: --hk-prices: 'm' must map to [[]input, output[]] USD per million tokens"
            " (from the command line)"
        ]
    )


@pytest.mark.slow
def test_narrower_runs_never_shrink_the_tree_and_damage_is_redone_not_lost(
    kb: pytest.Pytester, toy_kb: Path, tmp_path: Path
) -> None:
    import json

    write_problem(toy_kb, "2_Scale2.py", SCALE_PROBLEM)
    answer = {"1": fenced(python_candidate("x * self.factor"))}
    responses = responses_for(tmp_path / "responses", "level1/1_Scale", answer)
    responses_for(responses, "level1/2_Scale2", answer)
    args = ("--hk-target-speedup", "0", "--hk-allow-torch-ops")
    run_toy(kb, toy_kb, responses, *args).assert_outcomes(passed=2)
    results = kb.path / "results"
    narrow = run_toy(kb, toy_kb, responses, *args, "-k", "Scale2")
    narrow.assert_outcomes(passed=1)
    summary = json.loads((results / "summary.json").read_text())
    assert summary["problems"] == 2 and summary["solved"] == 2  # the whole tree
    runs = sorted((results / "runs").glob("*.json"))
    assert [json.loads(p.read_text())["problems"] for p in runs] == [
        ["level1/1_Scale", "level1/2_Scale2"],
        ["level1/2_Scale2"],
    ]
    best = results / "level1" / "1_Scale" / "best_result.json"
    best.write_text('{"status": "cor')  # damaged (a crash mid-write elsewhere)
    again = run_toy(kb, toy_kb, responses, *args, "-k", "Scale and not Scale2")
    again.assert_outcomes(passed=1)
    kept = list(best.parent.glob("best_result.damaged-*.json"))
    assert len(kept) == 1 and kept[0].read_text() == '{"status": "cor'
    assert json.loads(best.read_text())["status"] == "correct"
