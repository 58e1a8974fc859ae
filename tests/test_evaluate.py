"""The evaluator on pure-Python candidates (no C++ build), so every path runs in seconds."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_hipkittens.evaluate import Evaluator, ReferenceFailed
from pytest_hipkittens.evaluate.sandbox import scrub_env
from pytest_hipkittens.evaluate.schema import first_error, trim_log
from pytest_hipkittens.problems import load_problem_file

from .conftest import SCALE_PROBLEM, python_candidate, write_problem


@pytest.fixture
def scale(tmp_path: Path):
    return load_problem_file(write_problem(tmp_path / "kb", "1_Scale.py", SCALE_PROBLEM))


def test_correct_candidate_is_timed(evaluator: Evaluator, scale) -> None:
    result = evaluator.evaluate(scale, python_candidate("x * self.factor"))
    assert result["status"] == "correct", result
    assert result["correctness"]["passed"] == 3 and result["correctness"]["atol"] == 1e-4
    t = result["timing"]
    assert t["trials"] >= 5 and t["ref_ms"] > 0 and t["new_ms"] > 0
    assert t["speedup"] == pytest.approx(t["ref_ms"] / t["new_ms"])
    assert t["method"] == "cpu_perf_counter"
    assert result["category"] in ("correct", "slower")
    assert result["hardware"]["torch"] and result["backend"] == "cpu"
    assert len(result["code_sha256"]) == 64
    # Where the candidate's worker spent its start-up, stage by stage, all accounted for.
    boot = result["startup"]["boot"]
    assert list(boot) == ["interpreter", "torch", "setup", "idle", "load"]
    assert all(v >= 0 for v in boot.values()) and boot["torch"] > 0


def test_spare_workers_survive_pytests_per_test_variable(evaluator: Evaluator, monkeypatch) -> None:
    """pytest rewrites PYTEST_CURRENT_TEST for every phase; a worker started for one test
    must still match the next one's environment (else every spare is thrown away)."""
    monkeypatch.setenv("PYTEST_CURRENT_TEST", "tests/a.py::one (call)")
    env, key = evaluator._spare_env()
    monkeypatch.setenv("PYTEST_CURRENT_TEST", "tests/a.py::two (setup)")
    assert evaluator._spare_env()[1] == key and "PYTEST_CURRENT_TEST" not in env


def test_incorrect_candidate(evaluator: Evaluator, scale) -> None:
    result = evaluator.evaluate(scale, python_candidate("x * 2.0"))
    assert result["status"] == "incorrect"
    assert result["message"].startswith("trial 1:") and "outside atol" in result["message"]
    assert result["correctness"]["max_abs_err"] > 0 and result["timing"] is None


def test_candidate_without_model_new_is_rejected_without_a_worker(
    evaluator: Evaluator, scale
) -> None:
    result = evaluator.evaluate(scale, "import torch\nclass Model(torch.nn.Module):\n    pass\n")
    assert (result["status"], result["category"]) == ("rejected", "no_model_new")


def test_syntax_error_is_a_compile_error(evaluator: Evaluator, scale) -> None:
    result = evaluator.evaluate(scale, "class ModelNew(:\n")
    assert result["status"] == "compile_error" and "syntax error" in result["message"]


@pytest.mark.parametrize(
    ("extra", "status", "needle"),
    [
        ("raise ValueError('boom at import')", "runtime_error", "boom at import"),
        ("import os; os._exit(3)", "runtime_error", "exited with code 3"),
        ("import ctypes; ctypes.string_at(0)", "runtime_error", "SIGSEGV"),
        ("import sys; sys.exit(0)", "runtime_error", "SystemExit"),
        ("import time; time.sleep(60)", "timeout", "within"),
    ],
)
def test_misbehaving_candidates_cost_only_themselves(
    evaluator: Evaluator, scale, extra, status, needle
) -> None:
    evaluator.cfg.build_timeout = 5
    result = evaluator.evaluate(scale, python_candidate("x * self.factor", extra))
    assert result["status"] == status, result
    assert needle in result["message"], result["message"]


def test_crash_during_forward(evaluator: Evaluator, scale) -> None:
    code = python_candidate("__import__('os')._exit(7)")
    result = evaluator.evaluate(scale, code)
    assert result["status"] == "runtime_error" and "code 7" in result["message"]


def test_hang_during_forward_times_out(evaluator: Evaluator, scale) -> None:
    evaluator.cfg.run_timeout = 3
    result = evaluator.evaluate(scale, python_candidate("__import__('time').sleep(60)"))
    assert result["status"] == "timeout"


def test_exception_in_forward(evaluator: Evaluator, scale) -> None:
    result = evaluator.evaluate(scale, python_candidate("x.view(7, -1, 3)"))
    assert result["status"] == "runtime_error" and "RuntimeError" in result["message"]


def test_evaluate_many_keeps_order(evaluator: Evaluator, scale) -> None:
    codes = [python_candidate("x * 2.0"), python_candidate("x * self.factor"), "nothing"]
    statuses = [r["status"] for r in evaluator.evaluate_many(scale, codes)]
    assert statuses == ["incorrect", "correct", "rejected"]


def test_secrets_never_reach_the_candidate(evaluator: Evaluator, scale, monkeypatch) -> None:
    monkeypatch.setenv("LLM_GATEWAY_KEY", "sk-test-secret")
    monkeypatch.setenv("MY_SERVICE_TOKEN", "tok")
    leak = "import os\nassert 'LLM_GATEWAY_KEY' not in os.environ and 'MY_SERVICE_TOKEN' not in os.environ, 'leak'"
    result = evaluator.evaluate(scale, python_candidate("x * self.factor", leak))
    assert result["status"] == "correct", result["message"]


def test_scrub_env_patterns() -> None:
    env = {
        "LLM_GATEWAY_KEY": "1",
        "AWS_SECRET_ACCESS_KEY": "2",
        "GH_TOKEN": "3",
        "PATH": "/bin",
        "HOME": "/root",
        "db_password": "x",
    }
    assert scrub_env(env) == {"PATH": "/bin", "HOME": "/root"}


def test_broken_reference_is_not_the_candidates_fault(evaluator: Evaluator, tmp_path: Path) -> None:
    broken = SCALE_PROBLEM.replace(
        "return x * self.factor", "raise RuntimeError('reference broke')"
    )
    problem = load_problem_file(write_problem(tmp_path / "kb2", "2_Broken.py", broken))
    with pytest.raises(ReferenceFailed, match="reference broke"):
        evaluator.reference(problem)


def test_reference_runs_once_per_problem_in_its_own_process(evaluator: Evaluator, scale) -> None:
    first = evaluator.reference(scale)
    assert evaluator.reference(scale) is first
    # The trusted worker keeps every trial's inputs and outputs in its own memory: nothing
    # is written where a candidate could read it.
    assert first.info["cached"] == sorted(first.seeds)
    assert first.info["inputs"]["items"][0]["shape"] == [64, 32]
    assert first.info["output_bytes"] == 64 * 32 * 4
    assert list(Path(evaluator.shm).iterdir()) == []
    assert not list(evaluator.workdir.rglob("*.pt"))


def test_log_helpers() -> None:
    log = "c++ -c main.cpp\nFAILED: main.o\n/tmp/x/ext/main.cpp:24:65: error: no matching function\nmore"
    assert first_error(log) == "main.cpp:24:65: error: no matching function"
    assert trim_log(log).startswith("c++ -c main.cpp")
    assert trim_log("x" * 10000, 100).startswith("…")


def test_candidate_out_of_memory_is_a_status_of_its_own(evaluator: Evaluator, scale) -> None:
    result = evaluator.evaluate(scale, python_candidate("torch.empty(1 << 45) + x"))
    assert (result["status"], result["category"]) == ("oom", "oom"), result
    assert "can't allocate memory" in result["message"]


def test_reference_out_of_memory_fails_the_problem_with_the_sizes(
    evaluator: Evaluator, tmp_path: Path
) -> None:
    huge = SCALE_PROBLEM.replace("torch.randn(64, 32)", "torch.randn(1 << 23, 1 << 22)")
    problem = load_problem_file(write_problem(tmp_path / "kb3", "3_Huge.py", huge))
    with pytest.raises(ReferenceFailed, match="out of memory running the reference") as info:
        evaluator.reference(problem)
    assert info.value.status == "oom" and "bytes" in str(info.value)
    # The run goes on: the next problem gets a fresh trusted process.
    scale = load_problem_file(write_problem(tmp_path / "kb4", "4_Scale.py", SCALE_PROBLEM))
    assert evaluator.evaluate(scale, python_candidate("x * self.factor"))["status"] == "correct"


def test_one_trusted_process_serves_problem_after_problem(evaluator: Evaluator, tmp_path) -> None:
    first = load_problem_file(write_problem(tmp_path / "a", "1_Scale.py", SCALE_PROBLEM))
    double = SCALE_PROBLEM.replace("return [3.0]", "return [2.0]")
    second = load_problem_file(write_problem(tmp_path / "b", "2_Double.py", double))
    pid = evaluator.reference(first).worker.proc.pid
    assert evaluator.reference(second).worker.proc.pid == pid
    assert evaluator.evaluate(second, python_candidate("x * 2.0"))["status"] == "correct"
    assert evaluator.evaluate(first, python_candidate("x * 2.0"))["status"] == "incorrect"


@pytest.mark.parametrize(
    "line",
    [b"1" * 5000 + b"\n", b'{"ok": "\xff"}\n', b"[" * 20_000 + b"\n"],
    ids=["huge-int", "bad-utf8", "deep-nesting"],
)
def test_a_malformed_answer_line_is_a_dead_worker_not_an_exception(
    line: bytes, tmp_path: Path
) -> None:
    """Whatever a worker writes on its reply pipe, the parent sees WorkerDied."""
    import os

    from pytest_hipkittens.evaluate.sandbox import WorkerDied, WorkerProcess

    worker = WorkerProcess.__new__(WorkerProcess)
    r, w = os.pipe()
    os.write(w, line)
    os.close(w)
    worker._reply, worker._buf, worker.role = r, b"", "test"
    worker.kill = lambda: None  # type: ignore[method-assign]
    with open(os.devnull, "wb") as sink:
        worker.proc = type("P", (), {"stdin": sink})()  # type: ignore[assignment]
        with pytest.raises(WorkerDied):
            worker._request(5, cmd="x")
    os.close(r)
