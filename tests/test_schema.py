"""The result schema (evaluate/schema.py) holds what the writers really write."""

from __future__ import annotations

from pathlib import Path

from pytest_hipkittens.backends import get_backend
from pytest_hipkittens.evaluate import EvalConfig
from pytest_hipkittens.evaluate.crosscheck import judge
from pytest_hipkittens.evaluate.schema import Crosscheck, Result, Roofline, Timing, base_result
from pytest_hipkittens.evaluate.verify import timing_record
from pytest_hipkittens.roofline import roofline


def undeclared(obj: dict, schema: type) -> set[str]:
    return set(obj) - set(schema.__annotations__)


def test_every_block_a_writer_makes_is_declared(tmp_path: Path) -> None:
    cfg = EvalConfig(backend=get_backend("cpu"), build_cache=tmp_path)
    assert undeclared(base_result("x = 1", cfg), Result) == set()
    side = {"ok": True, "tool": "t", "calls": 10, "busy_ms": 0.1, "span_ms": 0.11}
    answer = {
        "ref_ms": [0.2] * 10,
        "new_ms": [0.1] * 10,
        "method": "m",
        "wall_check": {"hidden_ms": 0.0},
        "compile_ms": [0.15] * 10,
        "crosscheck": {"ref": side | {"busy_ms": 0.2, "span_ms": 0.21}, "new": side},
    }
    timing = timing_record(answer, {"bytes": 1 << 30, "flops": 1 << 20}, "cuda")
    assert undeclared(timing, Timing) == set()
    assert undeclared(timing["crosscheck"], Crosscheck) == set()
    assert undeclared(judge(timing, side, side), Crosscheck) == set()
    failed = timing_record(answer | {"crosscheck": {"ref": side, "new": {"ok": False}}}, {})
    assert undeclared(failed["crosscheck"], Crosscheck) == set()
    rl = roofline(timing, {"gpu": "NVIDIA H200"}, "fp32")
    assert rl is not None and undeclared(rl, Roofline) == set()
