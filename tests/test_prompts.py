from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_hipkittens.problems import SAMPLES_DIR, select
from pytest_hipkittens.prompts import (
    PromptConfigError,
    initial_prompt,
    load_config,
    reflection_prompt,
)


def problems_by_name() -> dict:
    return {p.name: p for p in select(SAMPLES_DIR, [1], None)}


def test_shipped_config_loads_and_routes_by_pattern(repo_prompts: Path) -> None:
    config = load_config(repo_prompts / "config.json")
    probs = problems_by_name()
    assert config.prompt_file("cpu", probs["Small_Matmul"]).name == "cpp_matmul.txt"
    assert config.prompt_file("cpu", probs["ReLU"]).name == "cpp_default.txt"
    assert set(config.backends) == {"cpu", "cuda", "hip"}
    assert "compile_error" in config.reflection_hints


def edit(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (lambda d: d.update(extra=1), "unknown key 'extra'"),
        (
            lambda d: d["backends"]["cpu"]["patterns"].update({"(unclosed": "cpu/cpp_default.txt"}),
            "backends.cpu.patterns['(unclosed']: bad regex",
        ),
        (
            lambda d: d["backends"]["cpu"].update(default_prompt="cpu/missing.txt"),
            "backends.cpu.default_prompt: prompt file cpu/missing.txt not found",
        ),
        (
            lambda d: d["reflection_hints"].update(typo_error="x"),
            "reflection_hints.typo_error is not a category",
        ),
        (
            lambda d: d["backends"]["cpu"].pop("default_prompt"),
            "backends.cpu.default_prompt is missing",
        ),
        (lambda d: d["backends"]["cpu"].update(colour="red"), "backends.cpu: unknown key 'colour'"),
        (
            lambda d: d["backends"]["cpu"].update(default_prompt=3),
            "backends.cpu.default_prompt: expected a string, got 3",
        ),
        (
            lambda d: d["backends"]["cpu"].update(default_prompt=""),
            'backends.cpu.default_prompt: expected a file name, got ""',
        ),
        (
            lambda d: d["backends"]["cpu"]["patterns"].update(relu=None),
            "backends.cpu.patterns['relu']: expected a string, got null",
        ),
        (lambda d: d.update(backends=[]), "backends: expected an object, got an array"),
        (lambda d: d.update(backends={}), "backends must not be empty"),
        (lambda d: d.pop("backends"), "backends is missing"),
        (
            lambda d: d["reflection_hints"].update(incorrect=["check", "the", "math"]),
            "reflection_hints.incorrect: expected a string, got an array",
        ),
    ],
)
def test_bad_config_names_the_key(repo_prompts: Path, change, needle: str) -> None:
    cfg = repo_prompts / "config.json"
    edit(cfg, change)
    with pytest.raises(PromptConfigError) as info:
        load_config(cfg)
    message = str(info.value)  # one line: the file, the JSON path, what is wrong
    assert message.startswith(f"{cfg}: {needle}") and "\n" not in message, message


def test_a_config_that_is_not_an_object(repo_prompts: Path) -> None:
    cfg = repo_prompts / "config.json"
    cfg.write_text("[1, 2]")
    with pytest.raises(PromptConfigError, match="top level: expected an object, got an array"):
        load_config(cfg)


def test_invalid_json_is_one_line(repo_prompts: Path) -> None:
    cfg = repo_prompts / "config.json"
    cfg.write_text("{ not json")
    with pytest.raises(PromptConfigError, match="invalid JSON at line 1") as info:
        load_config(cfg)
    assert "\n" not in str(info.value)


def test_initial_prompt_holds_instructions_problem_and_format() -> None:
    problem = problems_by_name()["ReLU"]
    prompt = initial_prompt("Be fast.", problem, "cpu")
    assert prompt.startswith("Be fast.")
    assert problem.source.strip() in prompt
    assert "ModelNew" in prompt and "```python" in prompt


def test_reflection_prompt_has_category_hint_error_and_previous_code() -> None:
    result = {
        "status": "incorrect",
        "category": "incorrect",
        "message": "trial 1: 12 of 100 values outside atol=0.0001",
        "correctness": {"max_abs_err": 0.5, "max_rel_err": 2.0, "atol": 1e-4, "rtol": 1e-4},
        "log": "",
    }
    text = reflection_prompt(
        "FIRST", "class ModelNew: pass", result, {"incorrect": "Check the math."}, 1
    )
    assert text.startswith("FIRST")
    for needle in (
        "attempt 1",
        "class ModelNew: pass",
        "incorrect",
        "12 of 100",
        "Max absolute error 0.5",
        "Hint: Check the math.",
    ):
        assert needle in text


def test_reflection_prompt_carries_timing_and_profile_findings() -> None:
    result = {
        "status": "correct",
        "category": "slower",
        "message": "correct, 0.50x vs PyTorch",
        "timing": {"ref_ms": 1.0, "new_ms": 2.0, "speedup": 0.5},
        "profile": {"findings": ["`aten::copy_` takes 40%"]},
    }
    text = reflection_prompt("FIRST", "code", result, {"slower": "Fuse."}, 2)
    assert "speedup 0.50x" in text and "`aten::copy_` takes 40%" in text and "Hint: Fuse." in text


def test_reflection_prompt_says_where_the_kernel_sits_on_the_roofline() -> None:
    from pytest_hipkittens.roofline import roofline

    timing = {"ref_ms": 0.25, "new_ms": 0.5, "speedup": 0.5, "bytes": 1e9, "flops": 0}
    result = {
        "status": "correct",
        "category": "slower",
        "message": "correct, 0.50x vs PyTorch",
        "timing": timing,
        "roofline": roofline(timing, {"gpu": "NVIDIA H200"}, "fp32"),
    }
    text = reflection_prompt("FIRST", "code", result, {}, 1)
    assert (
        "Roofline: your kernel is memory-bound, 42% of peak bandwidth (2,000 of 4,800 GB/s" in text
    )
    del result["roofline"]
    assert "Roofline" not in reflection_prompt("FIRST", "code", result, {}, 1)
