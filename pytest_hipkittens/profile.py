"""Explain a slow candidate: which kernels ran, how long, and whose they were.

``profile_torch`` runs inside the evaluation worker (torch.profiler; CPU ops on the cpu
backend, device kernels on GPUs). ``findings`` turns the kernel table into short sentences
that go into the result, the report and the next reflection prompt — e.g. that a PyTorch
built-in copy kernel takes 40% of the time, which usually means a dtype cast or a
``.contiguous()`` the candidate added.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

#: Host-side ops that cost nothing worth reporting (allocation, views, metadata).
TRIVIAL_OPS = re.compile(
    r"^aten::(empty|empty_like|empty_strided|zeros_like_meta|view|reshape|as_strided|"
    r"_reshape_alias|unsqueeze|squeeze|expand|t|transpose|permute|select|slice|detach|"
    r"alias|resolve_conj|resolve_neg|size|stride|is_nonzero|item|_local_scalar_dense|lift_fresh)$"
)
#: Device kernels that PyTorch or a vendor library launched, not the candidate's code.
BUILTIN_KERNELS = re.compile(
    r"at::native|at::cuda|void at::|^(void )?(cutlass|cublas|cudnn|triton_)|sm\d+_xmma|"
    r"(ampere|volta|turing|hopper|blackwell)_\w*gemm|gemv2[NT]_kernel|gemmSN_|gemmk1_|"
    r"Cijk_|rocblas|hipblaslt|^(void )?(elementwise_kernel|vectorized_elementwise_kernel|"
    r"reduce_kernel|softmax_warp_forward|cunn_)|^Memcpy|^Memset",
    re.I,
)
FORWARD_LABEL = "hk::ModelNew.forward"


def is_builtin(name: str) -> bool:
    """Whether a kernel/op name belongs to PyTorch or a vendor library."""
    return name.startswith("aten::") or bool(BUILTIN_KERNELS.search(name))


def kineto(device: str) -> Any:
    """A torch profiler context (CPU ops, and the GPU's kernels on a GPU).

    torch's own profiler API at the level below ``torch.profiler.profile``, which on entry
    asks ``hasattr(torch, "_inductor")`` and so imports inductor and dynamo: 1-2 s here,
    4-5 s on a GPU host, inside the phase that holds the device. The events and the
    chrome trace are the same.
    """
    from torch.autograd.profiler import profile

    return profile(use_cpu=True, use_device=None if device == "cpu" else "cuda", use_kineto=True)


def profile_torch(fn: Callable[[], Any], device: str, runs: int = 5) -> list[dict[str, Any]]:
    """Kernel table of ``fn`` (already warmed up by the caller or by one run here)."""
    import torch
    from torch.autograd.profiler import record_function

    fn()  # warm-up outside the trace
    with kineto(device) as prof:
        for _ in range(runs):
            with record_function(FORWARD_LABEL):
                fn()
            if device != "cpu":
                torch.cuda.synchronize()
    rows: list[dict[str, Any]] = []
    events = prof.key_averages()
    if device == "cpu":
        total_us = sum(e.cpu_time_total for e in events if e.key == FORWARD_LABEL)
        own_us = sum(e.self_cpu_time_total for e in events if e.key == FORWARD_LABEL)
        if own_us > 0:
            rows.append({"name": "candidate code (compiled extension + Python)", "us": own_us})
        for e in events:
            if e.key == FORWARD_LABEL or TRIVIAL_OPS.match(e.key) or e.self_cpu_time_total <= 0:
                continue
            rows.append({"name": e.key, "us": e.self_cpu_time_total, "calls": e.count})
    else:
        for e in events:
            dev_us = getattr(e, "self_device_time_total", None)
            if dev_us is None:
                dev_us = getattr(e, "self_cuda_time_total", 0)
            if dev_us > 0 and e.key != FORWARD_LABEL:
                rows.append({"name": e.key, "us": dev_us, "calls": e.count})
        total_us = sum(r["us"] for r in rows)
    return kernel_table(rows, total_us, runs)


def kernel_table(rows: list[dict[str, Any]], total_us: float, runs: int) -> list[dict[str, Any]]:
    """Per-run milliseconds, share of the total and builtin flag, largest first."""
    total = total_us or sum(r["us"] for r in rows) or 1.0
    table = [
        {
            "name": r["name"],
            "ms": r["us"] / 1e3 / max(1, runs),
            "share": r["us"] / total,
            "calls": int(r.get("calls", runs)) // max(1, runs) or 1,
            "builtin": is_builtin(r["name"]) and not r["name"].startswith("candidate code"),
        }
        for r in rows
    ]
    table.sort(key=lambda k: k["ms"], reverse=True)
    return table


def findings(
    kernels: list[dict[str, Any]],
    speedup: float | None = None,
    measured_ms: float | None = None,
    device_times: bool = False,
) -> list[str]:
    """Short, actionable sentences about a kernel table.

    With ``device_times`` (GPU tables) and the measured forward time, a forward whose
    kernels are busy for only a fraction of it is reported as launch/host-bound.
    """
    out: list[str] = []
    if speedup is not None and speedup < 1:
        out.append(f"The candidate is {1 / speedup:.2f}x slower than the PyTorch reference.")
    if device_times and kernels and measured_ms:
        busy = sum(k["ms"] for k in kernels)
        if busy < 0.6 * measured_ms:
            out.append(
                f"Kernels are busy for {busy:.4f} ms of the {measured_ms:.4f} ms forward "
                f"({busy / measured_ms:.0%}): launch and host overhead dominate — avoid extra "
                "allocations, host-side checks and launches; fuse into fewer kernels."
            )
    if not kernels:
        out.append("The profiler recorded no kernels for the candidate's forward pass.")
        return out
    builtin = [k for k in kernels if k["builtin"]]
    builtin_share = sum(k["share"] for k in builtin)
    for k in builtin[:3]:
        if k["share"] >= 0.1:
            out.append(
                f"PyTorch/vendor built-in `{k['name']}` takes {k['share']:.0%} of the forward "
                f"({k['ms']:.3f} ms, {k['calls']} call(s) per run): work your kernel left to "
                "PyTorch, e.g. a dtype cast, a copy/.contiguous(), or an op you called."
            )
    own = [k for k in kernels if not k["builtin"]]
    if own and builtin_share < 0.5:
        top = own[0]
        out.append(
            f"Your own code `{top['name']}` takes {top['share']:.0%} of the forward "
            f"({top['ms']:.3f} ms per run): the kernel itself is the bottleneck — improve its "
            "memory access pattern, vectorization and parallelism."
        )
    if builtin and builtin_share >= 0.5:
        out.append(
            f"Built-in kernels take {builtin_share:.0%} of the time in total: most of the work "
            "does not run in your kernel."
        )
    return out


# -- external profilers (cross-checks and vendor traces) ---------------------------------


def ncu_command(probe: list[str]) -> list[str]:
    """Nsight Compute timing only the probe's capture range, one metric, base units.

    ``--clock-control none``: by default ncu locks the clocks at base, which made a 16 ms
    matmul read 20% slower than the same kernel under the harness (and under any user's
    workload); the cross-check compares like with like."""
    return [
        "ncu",
        "--clock-control",
        "none",
        "--profile-from-start",
        "off",
        "--metrics",
        "gpu__time_duration.sum",
        "--print-units",
        "base",
        "--csv",
        "--target-processes",
        "all",
        *probe,
    ]


def parse_ncu_csv(text: str) -> list[dict[str, Any]]:
    """Per-launch kernel durations (ns) from ``ncu --csv`` output (preamble lines skipped)."""
    import csv

    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith('"ID"')), None)
    if start is None:
        return []
    launches = []
    for row in csv.DictReader(lines[start:]):
        if row.get("Metric Name") != "gpu__time_duration.sum":
            continue
        value = (row.get("Metric Value") or "").replace(",", "")
        unit = (row.get("Metric Unit") or "ns").strip().lower()
        scale = {
            "ns": 1.0,
            "nsecond": 1.0,
            "us": 1e3,
            "usecond": 1e3,
            "ms": 1e6,
            "msecond": 1e6,
        }.get(unit, 1.0)
        try:
            ns = float(value) * scale
        except ValueError:
            continue
        launches.append({"name": row.get("Kernel Name", "?"), "ns": ns})
    return launches


def rocprof_command(out_dir: str, probe: list[str]) -> list[str]:
    """rocprofv3 kernel trace of the probe, as CSV, into ``out_dir``."""
    return [
        "rocprofv3",
        "--kernel-trace",
        "--output-format",
        "csv",
        "--output-directory",
        out_dir,
        "--output-file",
        "hk",
        "--",
        *probe,
    ]


WINDOW_RE = re.compile(r"^HK_PROBE_WINDOW (\d+) (\d+) (\d+)$", re.M)


def probe_window(stdout: str) -> tuple[int, int, int] | None:
    """(start_ns, end_ns, runs) the probe printed around its timed forwards, if any."""
    m = WINDOW_RE.search(stdout)
    return (int(m.group(1)), int(m.group(2)), int(m.group(3))) if m else None


def parse_rocprof_kernel_trace(text: str) -> list[dict[str, Any]]:
    """Kernel dispatches from rocprofv3's ``*_kernel_trace.csv`` (documented columns).

    Each row of kind KERNEL_DISPATCH gives ``Kernel_Name``, ``Start_Timestamp`` and
    ``End_Timestamp`` (ns), workgroup and grid sizes; rows of other kinds are skipped.
    """
    import csv

    dispatches = []
    for row in csv.DictReader(text.splitlines()):
        if row.get("Kind", "KERNEL_DISPATCH") != "KERNEL_DISPATCH":
            continue
        try:
            start, end = int(row["Start_Timestamp"]), int(row["End_Timestamp"])
        except (KeyError, TypeError, ValueError):
            continue
        dispatches.append(
            {
                "name": row.get("Kernel_Name") or "?",
                "start": start,
                "end": end,
                "ns": max(0, end - start),
                "workgroup": [row.get(f"Workgroup_Size_{a}") for a in "XYZ"],
                "grid": [row.get(f"Grid_Size_{a}") for a in "XYZ"],
            }
        )
    return dispatches


def rocprof_table(
    dispatches: list[dict[str, Any]], window: tuple[int, int, int] | None, runs: int
) -> list[dict[str, Any]]:
    """Per-kernel table of the timed forwards.

    Dispatches inside the probe's window (host monotonic clock, which rocprofv3's
    timestamps share on Linux) are the timed forwards; if none fall inside it, the clocks
    disagree and every dispatch is used, divided over the warm-up run as well.
    """
    chosen = dispatches
    if window is not None:
        inside = [d for d in dispatches if window[0] <= d["start"] <= window[1]]
        if inside:
            chosen, runs = inside, window[2]
        else:
            runs += 1  # the probe's warm-up forward is in the trace too
    totals: dict[str, dict[str, float]] = {}
    for d in chosen:
        agg = totals.setdefault(d["name"], {"us": 0.0, "calls": 0})
        agg["us"] += d["ns"] / 1e3
        agg["calls"] += 1
    rows = [{"name": n, "us": v["us"], "calls": v["calls"]} for n, v in totals.items()]
    return kernel_table(rows, sum(r["us"] for r in rows), runs)
