from __future__ import annotations

from pathlib import Path

import pytest

from pytest_hipkittens.problems import (
    SAMPLES_DIR,
    ProblemError,
    discover,
    load_problem_file,
    parse_range,
    resolve_root,
    select,
    validate_source,
)

from .conftest import SCALE_PROBLEM, write_problem


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("19-25", [(19, 25)]),
        ("19", [(19, 19)]),
        ("1-5,9", [(1, 5), (9, 9)]),
        (" 3 - 4 , 7 ", [(3, 4), (7, 7)]),
    ],
)
def test_parse_range_accepts(text: str, expected: list[tuple[int, int]]) -> None:
    assert parse_range(text) == expected


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("25-19", "start is after end"),
        ("", "expected N"),
        ("a-b", "is not N or N-M"),
        ("1,,2", "expected N"),
        ("-3", "is not"),
    ],
)
def test_parse_range_rejects(text: str, needle: str) -> None:
    with pytest.raises(ProblemError, match=needle):
        parse_range(text)


def make_checkout(root: Path) -> Path:
    for level, names in {
        1: ["19_ReLU.py", "2_Matmul.py", "25_Swish.py", "100_Hinge.py"],
        2: ["1_Conv.py"],
    }.items():
        for name in names:
            write_problem(root / "KernelBench" / f"level{level}", name, SCALE_PROBLEM)
    (root / "KernelBench" / "level1" / "README.md").write_text("not a problem")
    (root / "KernelBench" / "level1" / "helper.py").write_text("x = 1")
    return root


def test_discover_kernelbench_checkout_layout(tmp_path: Path) -> None:
    root = make_checkout(tmp_path)
    keys = [p.key for p in discover(root, [1])]
    assert keys == ["level1/2_Matmul", "level1/19_ReLU", "level1/25_Swish", "level1/100_Hinge"]
    assert [p.key for p in discover(root, [2, 1])][-1] == "level2/1_Conv"


def test_discover_plain_directory_is_level_one(tmp_path: Path) -> None:
    write_problem(tmp_path, "7_Scale.py", SCALE_PROBLEM)
    write_problem(tmp_path, "3_Other.py", SCALE_PROBLEM)
    assert [p.key for p in discover(tmp_path, [1])] == ["level1/3_Other", "level1/7_Scale"]
    assert discover(tmp_path, [2]) == []


def test_select_filters_by_range_and_validates(tmp_path: Path) -> None:
    root = make_checkout(tmp_path)
    assert [p.id for p in select(root, [1], parse_range("19-25"))] == [19, 25]
    with pytest.raises(ProblemError, match="matches no problem"):
        select(root, [1], parse_range("30-40"))
    write_problem(
        root / "KernelBench" / "level1", "20_Broken.py", "import torch\nclass Model: pass\n"
    )
    with pytest.raises(
        ProblemError,
        match=r"20_Broken.py: not a KernelBench problem, missing get_inputs, get_init_inputs",
    ):
        select(root, [1], parse_range("19-25"))


def test_validate_reports_syntax_errors_in_one_line() -> None:
    with pytest.raises(ProblemError, match=r"p.py: syntax error at line 1"):
        validate_source("def (:\n", "p.py")


def test_resolve_root_precedence(tmp_path: Path) -> None:
    assert resolve_root(None, {}) == SAMPLES_DIR
    assert resolve_root(None, {"KERNELBENCH_DIR": str(tmp_path)}) == tmp_path.resolve()
    assert resolve_root(str(tmp_path), {"KERNELBENCH_DIR": "/nowhere"}) == tmp_path.resolve()
    with pytest.raises(ProblemError, match="KERNELBENCH_DIR: /nowhere is not a directory"):
        resolve_root(None, {"KERNELBENCH_DIR": "/nowhere"})
    with pytest.raises(ProblemError, match="--kernelbench-dir"):
        resolve_root("/nowhere", {})


def test_samples_cover_the_promised_kinds() -> None:
    problems = select(SAMPLES_DIR, [1], None)
    names = " ".join(p.name.lower() for p in problems)
    assert len(problems) >= 6
    for kind in ("relu", "sum", "softmax", "norm", "matmul", "loss"):
        assert kind in names
    with_init = [p for p in problems if "return []" not in p.source.split("def get_init_inputs")[1]]
    assert with_init, "at least one sample takes constructor arguments"


def test_load_problem_file(tmp_path: Path) -> None:
    path = write_problem(tmp_path / "level2", "5_Scale.py", SCALE_PROBLEM)
    problem = load_problem_file(path)
    assert problem.key == "level2/5_Scale"
    with pytest.raises(ProblemError, match="not found"):
        load_problem_file(tmp_path / "missing.py")
