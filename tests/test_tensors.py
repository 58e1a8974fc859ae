"""Tensors between processes as specs (tensors.py) and the chunked comparison (compare.py).

Run in one process on the cpu backend: the spec an Arena exports is mapped back as the
trusted side would, from the same shared-memory files.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from pytest_hipkittens.evaluate import compare
from pytest_hipkittens.evaluate.tensors import (
    Arena,
    SpecError,
    describe,
    layout,
    open_spec,
    rebuild,
    tensors,
)
from pytest_hipkittens.evaluate.timing import not_credible, plan, wall_check


@pytest.fixture
def shm(tmp_path: Path) -> Path:
    folder = tmp_path / "shm"
    folder.mkdir()
    return folder


def test_buffers_allocated_by_one_side_are_seen_by_the_other(shm: Path) -> None:
    arena = Arena("cpu", str(shm))
    x = torch.randn(6, 4)
    spec = json.loads(json.dumps(describe([x, 3, None], layout)))  # what crosses: plain JSON
    made = []
    buffers = rebuild(spec, lambda s: (lambda t: made.append(t[1]) or t[0])(arena.alloc(s)))
    assert buffers[1:] == [3, None] and buffers[0].shape == (6, 4)
    it = iter(made)
    shared = json.loads(json.dumps(describe(buffers, lambda t: next(it))))
    mapped = rebuild(shared, lambda s: open_spec(s, "cpu", str(shm)))
    mapped[0].copy_(x)  # the trusted side fills ...
    assert torch.equal(buffers[0], x)  # ... and the candidate's buffer holds the values
    buffers[0].mul_(2)  # a candidate writing its buffer is seen by the trusted side
    assert torch.equal(mapped[0], x * 2)


def test_outputs_keep_strides_views_and_empty_tensors(shm: Path) -> None:
    arena = Arena("cpu", str(shm))
    base = torch.arange(24.0).reshape(4, 6)
    out = (base.t(), base[1:, 2:], torch.empty(0, 3), torch.tensor(5, dtype=torch.int64))
    spec = describe(out, arena.export)
    back = rebuild(json.loads(json.dumps(spec)), lambda s: open_spec(s, "cpu", str(shm)))
    assert isinstance(back, tuple) and len(back) == 4
    for a, b in zip(out, back, strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype and torch.equal(a, b)
    arena.release()
    assert len(list(shm.iterdir())) == 3  # kept for the next trial's outputs, not leaked
    again = describe(base.t(), arena.export)
    assert Path(again["file"]).exists() and len(list(shm.iterdir())) == 3


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"dtype": "torch.float128"}, "unsupported dtype"),
        ({"shape": [4, "6"]}, "list of ints"),
        ({"stride": [-1, 1]}, "negative"),
        ({"file": "/etc/passwd"}, "outside the evaluation's folder"),
        ({"nbytes": 10**12}, "smaller than the tensor"),
        ({"shape": [4000, 6]}, "smaller than the tensor"),
    ],
)
def test_specs_from_an_untrusted_process_are_checked(shm: Path, change: dict, error: str) -> None:
    spec = Arena("cpu", str(shm)).export(torch.ones(4, 6))
    with pytest.raises(SpecError, match=error):
        open_spec({**spec, **change}, "cpu", str(shm))


def test_what_cannot_cross_is_refused() -> None:
    with pytest.raises(SpecError, match="cannot pass a object"):
        describe([object()], layout)
    with pytest.raises(SpecError, match="unknown spec kind"):
        rebuild({"kind": "pickle", "data": "..."}, lambda s: None)
    with pytest.raises(SpecError, match="plain scalars"):
        rebuild({"kind": "value", "value": {"a": 1}}, lambda s: None)
    with pytest.raises(SpecError, match="output is on the cpu"):
        Arena("cuda", None).export(torch.ones(2))
    assert tensors([1, (torch.ones(1), [torch.zeros(2)])])[1].shape == (2,)


def test_comparison_in_chunks_finds_errors_in_any_chunk(monkeypatch) -> None:
    monkeypatch.setitem(compare.CHUNK, "cpu", 7)
    ref = torch.randn(10, 10)
    assert compare.compare_outputs(ref, ref + 5e-5, 1e-4, 1e-4).ok
    for where in (0, 55, 99):
        bad = ref.clone()
        bad.view(-1)[where] += 1.0
        cmp = compare.compare_outputs(ref, bad, 1e-4, 1e-4)
        assert not cmp.ok and "1 of 100 values" in cmp.message
        assert cmp.max_abs_err == pytest.approx(1.0, rel=1e-3)
    nan = ref.clone()
    nan.view(-1)[98] = float("nan")
    assert "NaN" in compare.compare_outputs(ref, nan, 1e-4, 1e-4).message
    assert compare.compare_outputs(nan, nan.clone(), 1e-4, 1e-4).ok
    assert compare.same_bits(nan, nan.clone()) and not compare.same_bits(nan, ref)
    ints = torch.arange(10)
    assert "exact match" in compare.compare_outputs(ints, ints + 1, 1e-4, 1e-4).message


def test_timing_plan_alternates_rounds_within_budget() -> None:
    assert plan([1.0, 1.0], 100, 10.0) == [10] * 10
    assert plan([1.0, 1.0], 20, 10.0) == [4, 4, 3, 3, 3, 3]  # at least 3 trials a round
    assert sum(plan([100.0, 100.0], 100, 10.0)) == 50  # 10 s / 200 ms a pair
    assert plan([5000.0, 5000.0], 100, 10.0) == [5]  # never fewer than 5 trials
    assert plan([0.0], 7, 1.0) == [4, 3]


def test_reported_times_must_explain_the_rounds_the_parent_saw() -> None:
    # (parent's wall seconds, reported ms) per round: the reference spends ~2 ms a round
    # on the relay and the timer besides its 10 x 3 ms.
    ref = [(0.035, [3.0] * 10)] * 5
    honest = [(0.048, [4.0] * 10)] * 5
    assert not_credible(honest, ref) is None
    hiccup = honest[:4] + [(2.0, [4.0] * 10)]  # one round caught a long pause
    assert not_credible(hiccup, ref) is None
    lying = [(0.44, [3.0] * 10)] * 5  # 10 calls of ~40 ms reported as 3 ms each
    reason = not_credible(lying, ref)
    assert reason and "407.0 ms more than 10 trials of the 3.000 ms" in reason
    assert "about 36.155 ms of each call" in reason
    assert not_credible(lying, ref, copy_s=0.5) is None  # within the allowance for copies


def test_a_small_lie_per_call_adds_up_over_a_round() -> None:
    # Reference: 10 trials of 0.013 ms in rounds of ~1 ms (flushes, relay), a little jitter.
    ref = [(0.0010 + j, [0.013] * 10) for j in (0.0, 0.0001, -0.0001, 0.0002, 0.0)] * 2
    honest = [(0.0014 + j, [0.011] * 10) for j in (0.0, 0.0002, 0.0001, -0.0001, 0.0)] * 2
    check = wall_check(honest, ref)
    assert check and check["hidden_ms"] == 0 and not_credible(honest, ref) is None
    # Kernels of ~1 ms reported as 0.05 ms: 11 calls a round leave ~10 ms unexplained.
    lying = [(0.0010 + 11 * 0.00095 + j, [0.05] * 10) for j in (0.0, 0.0003, 0.0)] * 3
    reason = not_credible(lying, ref)
    assert reason and "went unreported" in reason
    assert 0.5 < wall_check(lying, ref)["hidden_ms"] < 0.95


def test_bytes_a_forward_must_move_count_each_storage_once() -> None:
    from pytest_hipkittens.evaluate.trusted import moved_bytes

    x = torch.randn(256, 256)
    assert moved_bytes([x]) == 256 * 256 * 4
    assert moved_bytes([x, x.view(-1)]) == 256 * 256 * 4  # an output that is a view
    assert moved_bytes([torch.randn(256).expand(256, 256)]) == 256 * 4  # a broadcast input
    assert moved_bytes([x[:2]]) == 2 * 256 * 4  # a slice: what it spans
