from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pytest_hipkittens.backends import get_backend
from pytest_hipkittens.evaluate.compare import compare_outputs
from pytest_hipkittens.evaluate.config import EvalConfig


@pytest.mark.parametrize(
    ("precision", "passes", "fails"),
    [("fp32", 9e-5, 2e-4), ("fp16", 9e-3, 2e-2), ("bf16", 9e-3, 2e-2)],
)
def test_precision_sets_kernelbench_tolerances(precision: str, passes: float, fails: float) -> None:
    """KernelBench's atol = rtol: 1e-4 in fp32, 1e-2 in fp16/bf16; what an evaluation
    configured for a precision accepts, on absolute (near 0) and relative (large) errors."""
    cfg = EvalConfig(backend=get_backend("cpu"), build_cache=Path("unused"), precision=precision)
    atol, rtol = cfg.tolerance
    near_zero = torch.zeros(64)
    assert compare_outputs(near_zero, near_zero + passes, atol, rtol).ok
    assert not compare_outputs(near_zero, near_zero + fails, atol, rtol).ok
    large = torch.full((64,), 1000.0)  # |ref| * rtol dominates atol here
    assert compare_outputs(large, large * (1 + passes), atol, rtol).ok
    assert not compare_outputs(large, large * (1 + fails), atol, rtol).ok
    # An explicit tolerance wins over the table.
    loose = EvalConfig(
        backend=get_backend("cpu"), build_cache=Path("unused"), precision=precision, atol=1.0
    )
    assert compare_outputs(near_zero, near_zero + 0.5, *loose.tolerance).ok


def test_equal_and_within_tolerance() -> None:
    ref = torch.randn(8, 8)
    assert compare_outputs(ref, ref.clone(), 1e-4, 1e-4).ok
    assert compare_outputs(ref, ref + 5e-5, 1e-4, 1e-4).ok


def test_shape_dtype_and_values() -> None:
    ref = torch.ones(4, 4)
    assert "shape mismatch" in compare_outputs(ref, torch.ones(16), 1e-4, 1e-4).message
    assert (
        "dtype mismatch"
        in compare_outputs(ref, torch.ones(4, 4, dtype=torch.float16), 1e-4, 1e-4).message
    )
    bad = ref.clone()
    bad[0, 0] = 2
    cmp = compare_outputs(ref, bad, 1e-4, 1e-4)
    assert not cmp.ok and "1 of 16 values" in cmp.message and cmp.max_abs_err == 1.0


def test_nan_and_inf_must_match_places() -> None:
    ref = torch.tensor([1.0, float("nan"), float("inf")])
    assert compare_outputs(ref, ref.clone(), 1e-4, 1e-4).ok
    assert "NaN" in compare_outputs(ref, torch.tensor([1.0, 0.0, float("inf")]), 1e-4, 1e-4).message
    assert (
        "Inf"
        in compare_outputs(
            ref, torch.tensor([1.0, float("nan"), -float("inf")]), 1e-4, 1e-4
        ).message
    )


def test_tuples_and_non_tensors() -> None:
    ref = (torch.ones(2), torch.zeros(2))
    assert compare_outputs(ref, [torch.ones(2), torch.zeros(2)], 1e-4, 1e-4).ok
    cmp = compare_outputs(ref, (torch.ones(2),), 1e-4, 1e-4)
    assert "expected 2 output(s), got 1" in cmp.message
    assert "expected a tensor" in compare_outputs(torch.ones(2), object(), 1e-4, 1e-4).message
