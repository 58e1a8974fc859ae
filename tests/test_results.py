from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pytest_hipkittens.results import ResultsTree, read_json, write_atomic, write_json


def test_write_atomic_replaces_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b.txt"
    write_atomic(target, "one")
    write_atomic(target, "two")
    assert target.read_text() == "two"
    assert os.listdir(target.parent) == ["b.txt"]


def test_failed_write_keeps_old_file(tmp_path: Path) -> None:
    target = tmp_path / "r.json"
    write_json(target, {"ok": 1})
    with pytest.raises(TypeError):
        write_atomic(target, 123)  # type: ignore[arg-type]
    assert json.loads(target.read_text()) == {"ok": 1}
    assert os.listdir(tmp_path) == ["r.json"]


def test_read_json_never_raises(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("{")
    assert read_json(tmp_path / "bad.json") is None
    assert read_json(tmp_path / "missing.json") is None


def test_problem_files_layout_and_resume(tmp_path: Path) -> None:
    tree = ResultsTree(tmp_path)
    store = tree.problem("level1/19_ReLU")
    assert store.next_index() == 1 and store.best() is None
    store.write_candidate(1, prompt="p1", response="r1", code="c1", result={"status": "incorrect"})
    store.write_candidate(
        2, prompt="p2", response="r2", code=None, result={"status": "compile_error"}
    )
    assert store.next_index() == 3
    names = sorted(os.listdir(tmp_path / "level1" / "19_ReLU"))
    assert names == [
        "code_1.py",
        "prompt_1.txt",
        "prompt_2.txt",
        "response_1.txt",
        "response_2.txt",
        "result_1.json",
        "result_2.json",
    ]
    assert [c["status"] for c in store.candidates()] == ["incorrect", "compile_error"]
    store.write_best("p1", "c1", {"status": "incorrect"})
    assert store.best() == {"status": "incorrect"} and store.best_code() == "c1"
    assert [p.key for p in tree.problems()] == ["level1/19_ReLU"]
    kept = store.supersede()
    assert store.best() is None and tree.problems() == []
    # set aside, not deleted, and out of the readers' sight
    assert kept is not None and (kept / "best_result.json").is_file()
    assert kept.parent == tree.root / "superseded" / "level1" and store.supersede() is None
