"""Where a kernel sits under the hardware's roofs: bytes, FLOPs, achieved rates, % of peak.

The work is the reference's (``timing.bytes``: what the problem must read and write at
least; ``timing.flops``: the FLOPs its ops count), so reference and candidate are placed at
the same arithmetic intensity and differ only in time. The roof at that intensity is
``min(peak FLOP/s, intensity × peak bandwidth)``; ``pct_of_peak`` is the achieved rate over
it — a memory-bound kernel at 41% moves data at 41% of the card's bandwidth.

GPU roofs are datasheet figures per card (fp32 on the CUDA/vector cores; bf16/fp16 dense
on the tensor/matrix cores). A cpu has no datasheet here: its roofs are measured once by
the trusted worker (a large copy and an fp32 matmul with the worker's threads) and the
result says they were measured.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .evaluate.schema import Roofline, Timing

#: fp32 on the CUDA / vector cores (TFLOP/s): what an fp32 kernel without TF32 can reach.
FP32_VECTOR: dict[str, float] = {
    "H100 PCIe": 51.0,
    "H100 NVL": 60.0,
    "H100": 67.0,
    "H200": 67.0,
    "H20": 44.0,
    "A100": 19.5,
    "L40S": 91.6,
    "MI300X": 163.4,
    "MI325X": 163.4,
    "MI300A": 122.6,
    "MI355X": 157.3,
    "MI350X": 144.2,
}


def _fragment(table: dict[str, Any], name: str) -> Any:
    for fragment in sorted(table, key=len, reverse=True):
        if fragment.lower() in name.lower():
            return table[fragment]
    return None


def roof(hardware: dict[str, Any], precision: str, nbytes: float = 0) -> dict[str, Any] | None:
    """The device's roofs for ``precision`` (and on cpu a working set of ``nbytes``):
    GB/s, TFLOP/s and where they come from."""
    from .evaluate.plausibility import peaks  # here: evaluate's runner imports this module

    gpu = hardware.get("gpu")
    if gpu:
        peak = peaks(gpu)
        if peak is None:
            return None
        if precision == "fp32":
            tflops, kind = _fragment(FP32_VECTOR, gpu) or peak[1], "fp32 vector"
        else:
            tflops, kind = peak[2], f"{precision} dense tensor"
        return {"gbps": peak[0], "tflops": tflops, "source": f"datasheet {gpu}, {kind}"}
    measured = hardware.get("roofs")
    if isinstance(measured, dict) and measured.get("gbps") and measured.get("tflops"):
        return {
            "gbps": cpu_bandwidth(measured, nbytes),
            "tflops": measured["tflops"],
            "source": f"measured on this cpu ({measured.get('how', 'copy and matmul')})",
        }
    return None


def _rates(nbytes: float, flops: float, ms: float | None) -> dict[str, float] | None:
    if not ms or ms <= 0:
        return None
    return {
        "ms": ms,
        "gbps": nbytes / ms / 1e6,
        "gflops": flops / ms / 1e6,
    }


def _pct(rate: dict[str, float] | None, r: dict[str, Any], intensity: float | None) -> float | None:
    if rate is None:
        return None
    if intensity:
        attainable = min(r["tflops"] * 1e3, intensity * r["gbps"])  # GFLOP/s
        return 100.0 * rate["gflops"] / attainable
    return 100.0 * rate["gbps"] / r["gbps"]


def roofline(timing: Timing, hardware: dict[str, Any], precision: str) -> Roofline | None:
    """The result's ``roofline`` object, or None without the work's size or a known roof."""
    nbytes, flops = float(timing.get("bytes") or 0), float(timing.get("flops") or 0)
    r = roof(hardware, precision, nbytes)
    if not nbytes or r is None:
        return None
    intensity = flops / nbytes if flops else None
    knee = r["tflops"] * 1e3 / r["gbps"]  # FLOP/byte where the two roofs meet
    bound = "compute" if intensity and intensity >= knee else "memory"
    ref = _rates(nbytes, flops, timing.get("ref_ms"))
    new = _rates(nbytes, flops, timing.get("new_ms"))
    if ref:
        ref["pct_of_peak"] = _pct(ref, r, intensity)
    if new:
        new["pct_of_peak"] = _pct(new, r, intensity)
    return {
        "bytes": int(nbytes),
        "flops": int(flops),
        "intensity": intensity,
        "roof": r | {"precision": precision, "knee": knee},
        "bound": bound,
        "ref": ref,
        "new": new,
        "pct_of_peak": new["pct_of_peak"] if new else None,
    }


def describe(rl: dict[str, Any] | None, who: str = "new") -> str | None:
    """``memory-bound, 41% of peak bandwidth (1,968 of 4,800 GB/s)`` for prompts and reports."""
    if not rl or not rl.get(who):
        return None
    rates, r = rl[who], rl["roof"]
    if rl["bound"] == "memory":
        return (
            f"memory-bound, {rates['pct_of_peak']:.0f}% of peak bandwidth "
            f"({rates['gbps']:,.0f} of {r['gbps']:,.0f} GB/s; {r['source']})"
        )
    return (
        f"compute-bound, {rates['pct_of_peak']:.0f}% of peak "
        f"({rates['gflops'] / 1e3:,.1f} of {r['tflops']:,.1f} TFLOP/s; {r['source']})"
    )


#: Sizes (MiB copied) at which a cpu's bandwidth is measured: a small problem's data stays
#: in the caches, and its roof is the caches' bandwidth, not the memory's.
COPY_MIB = (4, 16, 64)


def measure_cpu(threads: int) -> dict[str, Any]:
    """This cpu's roofs with torch and ``threads`` threads: copies and sums of ``COPY_MIB``
    (GB/s, every byte read or written counted, per size) and a 1024² fp32 matmul (TFLOP/s);
    best of several runs. Runs in the trusted worker, once per process (~0.3 s), when the
    first roofline needs it."""
    import time

    import torch

    def best(fn: Any, runs: int = 5) -> float:
        fn()
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return min(times)

    copy = {}
    for mib in COPY_MIB:
        src = torch.ones(mib << 18, dtype=torch.float32)
        dst = torch.empty_like(src)
        moved = 2 * (mib << 20)
        # A copy reads and writes; a reduction only reads, which a cpu does faster: the
        # roof is the better of the two, so no kernel reads above 100% of it.
        copy_gbps = moved / best(lambda s=src, d=dst: d.copy_(s), 6) / 1e9
        read = torch.ones(moved // 4, dtype=torch.float32)
        read_gbps = moved / best(lambda r=read: r.sum(), 6) / 1e9
        copy[str(moved)] = max(copy_gbps, read_gbps)
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    return {
        "gbps": copy[str(2 * COPY_MIB[-1] << 20)],
        "gbps_by_bytes": copy,
        "tflops": 2 * 1024**3 / best(lambda: torch.mm(a, b)) / 1e12,
        "how": f"copies and sums of {'/'.join(map(str, COPY_MIB))} MiB and a 1024x1024 fp32 matmul, "
        f"{threads} thread(s)",
    }


def cpu_bandwidth(measured: dict[str, Any], nbytes: float) -> float:
    """The measured bandwidth for a working set of ``nbytes``: the smallest measured copy
    that moves at least as much (the largest one beyond them)."""
    table = sorted((int(k), v) for k, v in (measured.get("gbps_by_bytes") or {}).items())
    for size, gbps in table:
        if size >= nbytes:
            return gbps
    return measured["gbps"]
