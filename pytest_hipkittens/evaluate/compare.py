"""Compare candidate outputs with reference outputs where they live, in the trusted process.

The trusted process holds the reference outputs and maps the candidate's outputs (see
tensors.py); the comparison runs on the device they are on and only scalars come back.
Large outputs (KernelBench has 6.4 GB ones) are compared in chunks, so the comparison needs
a bounded amount of scratch memory whatever the output's size, and never a host copy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: KernelBench's tolerance table (torchbench-inspired): atol = rtol per precision.
TOLERANCES = {"fp32": 1e-4, "fp16": 1e-2, "bf16": 1e-2}

#: Elements compared at a time (scratch memory is a few times this many floats): large
#: on a GPU, cache-sized on the CPU, where fresh multi-GB temporaries cost page faults.
CHUNK = {"cpu": 1 << 21}
GPU_CHUNK = 1 << 26


def _chunk(t: Any) -> int:
    return CHUNK.get(t.device.type, GPU_CHUNK)


def _pieces(*flat: Any) -> Any:
    """Aligned slices of equally long flat tensors, a chunk at a time."""
    step = _chunk(flat[0])
    for i in range(0, flat[0].numel(), step):
        yield tuple(t[i : i + step] for t in flat)


@dataclass
class Comparison:
    ok: bool
    message: str = ""
    max_abs_err: float = 0.0
    max_rel_err: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)


def flatten(out: Any) -> list[Any]:
    """Outputs as a flat list (a model may return nested tuples)."""
    if isinstance(out, (list, tuple)):
        return [x for item in out for x in flatten(item)]
    return [out]


def _chunk_errors(r: Any, n: Any, atol: float, rtol: float) -> tuple[Any, Any, Any, Any, Any]:
    """Device scalars for one chunk: bad count, max abs, max rel, NaN and Inf mismatches."""
    import torch

    work = torch.float64 if r.dtype in (torch.float64, torch.complex128) else torch.float32
    r, n = r.to(work), n.to(work)
    diff = torch.sub(r, n).abs_()
    mag = r.abs()
    # max(|r - n| - rtol * |r|) <= atol is allclose; a NaN or Inf anywhere makes it NaN/Inf.
    excess = torch.sub(diff, mag, alpha=rtol).max()
    if bool(excess <= atol):
        zero = torch.zeros((), dtype=torch.int64, device=r.device)
        return zero, diff.max(), diff.div_(mag.clamp_min_(1e-12)).max(), zero, zero
    close = diff <= mag * rtol + atol
    r_nan, n_nan = torch.isnan(r), torch.isnan(n)
    finite = torch.isfinite(r) & torch.isfinite(n)
    nan_bad = (r_nan != n_nan).sum()
    inf_bad = (~finite & ~r_nan & ~n_nan & (r != n)).sum()
    bad = (finite & ~close).sum()
    diff = torch.where(finite, diff, 0.0)
    rel = diff / mag.clamp_min_(1e-12)
    return bad, diff.max(), rel.max(), nan_bad, inf_bad


def _compare_tensor(r: Any, n: Any, atol: float, rtol: float, where: str) -> Comparison:
    import torch

    if r.dtype.is_floating_point or r.dtype.is_complex:
        rf, nf = r.reshape(-1), n.reshape(-1)
        if r.dtype.is_complex:
            rf, nf = torch.view_as_real(rf).reshape(-1), torch.view_as_real(nf).reshape(-1)
        parts = [_chunk_errors(r_, n_, atol, rtol) for r_, n_ in _pieces(rf, nf)]
        if not parts:
            return Comparison(True)
        bad, abs_err, rel_err, nan_bad, inf_bad = (
            torch.stack([p[k].double() for p in parts]) for k in range(5)
        )
        bad_n, nan_n, inf_n = int(bad.sum()), int(nan_bad.sum()), int(inf_bad.sum())
        worst_abs, worst_rel = float(abs_err.max()), float(rel_err.max())
        if nan_n:
            return Comparison(False, f"{where}NaN in different places than the reference")
        if inf_n:
            return Comparison(False, f"{where}Inf in different places than the reference")
        if bad_n:
            return Comparison(
                False,
                f"{where}{bad_n} of {rf.numel()} values outside atol={atol:g} "
                f"rtol={rtol:g}; max abs err {worst_abs:.3g}",
                worst_abs,
                worst_rel,
            )
        return Comparison(True, "", worst_abs, worst_rel)
    if torch.equal(r, n):
        return Comparison(True)
    count = int((r != n).sum())
    return Comparison(False, f"{where}{count} of {r.numel()} values differ (exact match needed)")


def compare_outputs(ref: Any, new: Any, atol: float, rtol: float) -> Comparison:
    """Shape, dtype, NaN/Inf placement and ``allclose`` on every output tensor.

    Both sides must be on the same device; the work happens there.
    """
    import torch

    refs, news = flatten(ref), flatten(new)
    if len(refs) != len(news):
        return Comparison(False, f"expected {len(refs)} output(s), got {len(news)}")
    worst_abs = worst_rel = 0.0
    for i, (r, n) in enumerate(zip(refs, news, strict=True)):
        where = f"output {i}: " if len(refs) > 1 else ""
        if not isinstance(r, torch.Tensor):
            r = torch.as_tensor(r)
        if not isinstance(n, torch.Tensor):
            try:
                n = torch.as_tensor(n, device=r.device)
            except (TypeError, ValueError, RuntimeError):
                return Comparison(False, f"{where}expected a tensor, got {type(n).__name__}")
        if tuple(n.shape) != tuple(r.shape):
            return Comparison(
                False, f"{where}shape mismatch: expected {tuple(r.shape)}, got {tuple(n.shape)}"
            )
        if n.dtype != r.dtype:
            return Comparison(False, f"{where}dtype mismatch: expected {r.dtype}, got {n.dtype}")
        if n.device != r.device:
            return Comparison(False, f"{where}on {n.device}, expected {r.device}")
        cmp = _compare_tensor(r.detach(), n.detach(), atol, rtol, where)
        worst_abs, worst_rel = max(worst_abs, cmp.max_abs_err), max(worst_rel, cmp.max_rel_err)
        if not cmp.ok:
            return Comparison(False, cmp.message, worst_abs, worst_rel)
    return Comparison(True, "", worst_abs, worst_rel)


def same_bits(a: Any, b: Any) -> bool:
    """Bit-for-bit equal tensors, NaN included (torch.equal says NaN != NaN)."""
    import torch

    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if not (a.is_floating_point() or a.is_complex()):
        return torch.equal(a, b)
    for x, y in _pieces(a.reshape(-1), b.reshape(-1)):
        if not torch.equal(x, y) and not bool(((x == y) | (torch.isnan(x) & torch.isnan(y))).all()):
            return False
    return True
