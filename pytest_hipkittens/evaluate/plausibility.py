"""When a result is too good to believe without a second look.

A speedup above ``max_speedup`` (default 10x) or a rate above the card's datasheet peak
(bandwidth from bytes the reference must move; FLOP/s from its FLOP count) is far more
often a measurement artefact or a cheat than a breakthrough. Such results are re-verified
(outputs rechecked after timing, timed again with more trials) and flagged in the result.
"""

from __future__ import annotations

from typing import Any

#: Datasheet peaks per card-name fragment: (GB/s, dense TFLOP/s fp32-or-TF32, bf16/fp16).
PEAKS: dict[str, tuple[float, float, float]] = {
    "H100 PCIe": (2000.0, 378.0, 756.0),
    "H100 NVL": (3900.0, 418.0, 835.0),
    "H100": (3350.0, 495.0, 989.0),
    "H200": (4800.0, 495.0, 989.0),
    "H20": (4000.0, 74.0, 148.0),
    "A100": (2039.0, 156.0, 312.0),
    "L40S": (864.0, 183.0, 362.0),
    "MI300X": (5300.0, 654.0, 1307.0),
    "MI325X": (6000.0, 654.0, 1307.0),
    "MI300A": (5300.0, 490.0, 981.0),
    "MI355X": (8000.0, 1250.0, 2500.0),
    "MI350X": (8000.0, 1150.0, 2300.0),
}


def peaks(gpu_name: str | None) -> tuple[float, float, float] | None:
    """The datasheet peaks of the first (longest) matching name fragment, if known."""
    if not gpu_name:
        return None
    for fragment in sorted(PEAKS, key=len, reverse=True):
        if fragment.lower() in gpu_name.lower():
            return PEAKS[fragment]
    return None


def implausible(
    timing: dict[str, Any], hardware: dict[str, Any], precision: str, max_speedup: float
) -> list[str]:
    """Reasons this timing needs a second look (empty when it is believable)."""
    reasons = []
    speedup = timing.get("speedup") or 0.0
    if max_speedup > 0 and speedup > max_speedup:
        reasons.append(f"speedup {speedup:.1f}x is above the plausibility limit {max_speedup:g}x")
    peak = peaks(hardware.get("gpu"))
    if peak is not None:
        gbps, tflops = timing.get("gbps"), timing.get("tflops")
        flop_peak = peak[1] if precision == "fp32" else peak[2]
        if gbps and gbps > peak[0]:
            reasons.append(
                f"{gbps:.0f} GB/s is above {hardware['gpu']}'s peak bandwidth {peak[0]:.0f} GB/s"
            )
        if tflops and tflops > flop_peak:
            reasons.append(
                f"{tflops:.1f} TFLOP/s is above {hardware['gpu']}'s peak {flop_peak:.0f} TFLOP/s"
            )
    return reasons


#: Bytes a trial must move before its rate is a DRAM rate: above the largest last-level cache
#: (MI300X's 256 MB Infinity Cache), so written-back lines still in cache cannot explain it.
MIN_DRAM_BYTES = 1 << 30
#: Reference ops whose FLOP count no algorithm undercuts in practice (matrix products; a
#: convolution's may be, by Winograd or FFT, so its FLOP rate proves nothing).
EXACT_FLOP_OPS = frozenset({"aten::mm", "aten::bmm", "aten::addmm", "aten::baddbmm"})
#: Margin over the datasheet peak before a rate is impossible rather than fast.
PEAK_MARGIN = 1.1


def impossible(
    timing: dict[str, Any], hardware: dict[str, Any], precision: str, ref_ops: list[str]
) -> str | None:
    """Why a (re-timed) rate cannot be physical on this card, or None.

    Bandwidth counts the bytes the reference must read and write at least; above the
    card's peak (by ``PEAK_MARGIN``) for a trial large enough that caches cannot hold it,
    the time is wrong, not the kernel brilliant. Likewise FLOP/s above the dense peak when
    the reference's work is only matrix products.
    """
    peak = peaks(hardware.get("gpu"))
    if peak is None:
        return None
    gbps, tflops = timing.get("gbps"), timing.get("tflops")
    if gbps and (timing.get("bytes") or 0) >= MIN_DRAM_BYTES and gbps > peak[0] * PEAK_MARGIN:
        return f"{gbps:.0f} GB/s moved, above {hardware['gpu']}'s peak of {peak[0]:.0f} GB/s"
    flop_peak = peak[1] if precision == "fp32" else peak[2]
    exact = bool(ref_ops) and set(ref_ops) <= EXACT_FLOP_OPS
    if tflops and exact and tflops > flop_peak * PEAK_MARGIN:
        return f"{tflops:.0f} TFLOP/s, above {hardware['gpu']}'s dense peak of {flop_peak:.0f}"
    return None
