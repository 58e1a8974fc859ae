from __future__ import annotations

from pytest_hipkittens.extract import extract_code

MODEL = "import torch\nclass ModelNew(torch.nn.Module):\n    pass\n"


def test_picks_python_block_defining_model_new() -> None:
    text = f"Intro\n```cpp\nint x;\n```\nthen\n```python\nhelper = 1\n```\nfinal\n```python\n{MODEL}```\nbye"
    got = extract_code(text)
    assert got.code == MODEL
    assert "ModelNew" in got.reason


def test_last_model_new_block_wins() -> None:
    text = f"```python\n{MODEL}```\nbetter:\n```py\n{MODEL}# v2\n```\n"
    assert extract_code(text).code.endswith("# v2\n")


def test_untagged_and_unfenced() -> None:
    assert extract_code(f"```\n{MODEL}```").code == MODEL
    assert extract_code(MODEL).reason == "unfenced response defining ModelNew"


def test_python_block_without_model_new_is_still_code() -> None:
    got = extract_code("```python\nprint(1)\n```")
    assert got.code == "print(1)\n"
    assert "no ModelNew" in got.reason


def test_no_code() -> None:
    assert extract_code("I cannot help with that.").code is None
    got = extract_code("```cpp\nint main() {}\n```")
    assert got.code is None and "none is Python" in got.reason
