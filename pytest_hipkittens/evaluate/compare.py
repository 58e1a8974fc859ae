"""Compare candidate outputs with reference outputs, in the trusted parent process.

The candidate's process only hands tensors back; whether they are right is decided here,
where nothing the candidate ran can reach the comparison code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: KernelBench's tolerance table (torchbench-inspired): atol = rtol per precision.
TOLERANCES = {"fp32": 1e-4, "fp16": 1e-2, "bf16": 1e-2}


@dataclass
class Comparison:
    ok: bool
    message: str = ""
    max_abs_err: float = 0.0
    max_rel_err: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)


def _flatten(out: Any) -> list[Any]:
    if isinstance(out, (list, tuple)):
        return [x for item in out for x in _flatten(item)]
    return [out]


def compare_outputs(ref: Any, new: Any, atol: float, rtol: float) -> Comparison:
    """Shape, dtype, NaN/Inf placement and ``allclose`` on every output tensor."""
    import torch

    refs, news = _flatten(ref), _flatten(new)
    if len(refs) != len(news):
        return Comparison(False, f"expected {len(refs)} output(s), got {len(news)}")
    worst_abs = worst_rel = 0.0
    for i, (r, n) in enumerate(zip(refs, news, strict=False)):
        where = f"output {i}: " if len(refs) > 1 else ""
        if not isinstance(r, torch.Tensor):
            r = torch.as_tensor(r)
        if not isinstance(n, torch.Tensor):
            try:
                n = torch.as_tensor(n)
            except (TypeError, ValueError, RuntimeError):
                return Comparison(False, f"{where}expected a tensor, got {type(n).__name__}")
        if tuple(n.shape) != tuple(r.shape):
            return Comparison(
                False, f"{where}shape mismatch: expected {tuple(r.shape)}, got {tuple(n.shape)}"
            )
        if n.dtype != r.dtype:
            return Comparison(False, f"{where}dtype mismatch: expected {r.dtype}, got {n.dtype}")
        r64, n64 = r.detach().cpu().double(), n.detach().cpu().double()
        r_fin, n_fin = torch.isfinite(r64), torch.isfinite(n64)
        if bool(r_fin.all()) and bool(n_fin.all()):
            rf, nf = r64.reshape(-1), n64.reshape(-1)  # the common case: no masked copies
        else:
            if not torch.equal(torch.isnan(r64), torch.isnan(n64)):
                return Comparison(False, f"{where}NaN in different places than the reference")
            finite = r_fin & n_fin
            if not torch.equal(r64[~finite].nan_to_num(), n64[~finite].nan_to_num()):
                return Comparison(False, f"{where}Inf in different places than the reference")
            rf, nf = r64[finite], n64[finite]
        if rf.numel():
            diff = (rf - nf).abs_()
            magnitude = rf.abs()
            abs_err = float(diff.max())
            bad = diff > magnitude * rtol + atol
            rel_err = float(diff.div_(magnitude.clamp_min_(1e-12)).max())
            worst_abs, worst_rel = max(worst_abs, abs_err), max(worst_rel, rel_err)
            if bool(bad.any()):
                count = int(bad.sum())
                return Comparison(
                    False,
                    f"{where}{count} of {rf.numel()} values outside atol={atol:g} "
                    f"rtol={rtol:g}; max abs err {abs_err:.3g}",
                    worst_abs,
                    worst_rel,
                )
    return Comparison(True, "", worst_abs, worst_rel)
