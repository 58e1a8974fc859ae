"""The profiler's own clock on the timed forward: a second opinion on every timing.

Runs in the worker that timed the call (the trusted one for the reference, the
candidate's for the candidate), after the timed rounds, on the same buffers and with the
same cache flush before each call. torch's profiler (CUPTI on NVIDIA, roctracer/rocprofiler
on AMD, its own clock on cpu) records every kernel of the call on every stream; its
timestamps come from the device, not from the harness's timer object, which the candidate
shares a process with.

Per call it reports the device's **busy** time (the union of the call's kernels and
copies — what ``ncu``'s ``gpu__time_duration.sum`` adds up for kernels that do not
overlap) and its **span** (first kernel start to last kernel end). The harness's event time
also includes the launch of the first kernel and any host gaps between kernels: launch
overhead, which counts against a candidate but is not the kernel's device time. On cpu a
call's span and busy time are the profiler's range around it.

A kernel belongs to call *i* when it starts after the call was entered and before the
host's synchronisation after it returned; the flush is launched before that window and
waited for, so its kernel never falls in it.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .schema import Crosscheck, Timing

CALL = "hk_crosscheck_call"
DONE = "hk_crosscheck_done"


def _union_us(spans: list[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for a, b in sorted(spans):
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


def device_times(
    fn: Callable[[], Any],
    flush: Callable[[], None],
    sync: Callable[[], None],
    device: str,
    calls: int = 10,
) -> dict[str, Any]:
    """Median busy and span milliseconds of ``calls`` calls of ``fn`` under the profiler."""
    from torch.autograd import DeviceType
    from torch.autograd.profiler import record_function

    from ..profile import kineto

    fn()  # the profiler's own start-up is not the first call's cost
    sync()
    with kineto(device) as prof:
        for _ in range(calls):
            flush()
            sync()
            with record_function(CALL):
                fn()
            sync()
            with record_function(DONE):
                pass
    events = list(prof.function_events)
    # The host's ranges; kineto also draws each range on the device's timeline
    # (gpu_user_annotation), which must neither count as a window nor as device work.
    host = [e for e in events if e.device_type == DeviceType.CPU]
    starts = sorted(e.time_range.start for e in host if e.name == CALL)
    ends = sorted(e.time_range.start for e in host if e.name == DONE)
    windows = list(zip(starts, ends, strict=False))  # a missing marker drops a call
    if device == "cpu":
        ranges = sorted((e.time_range.start, e.time_range.end) for e in host if e.name == CALL)
        busy = [(b - a) / 1e3 for a, b in ranges]
        return _answer("torch.profiler (cpu clock)", busy, busy, 0, len(ranges))
    device_events = [
        (e.time_range.start, e.time_range.end)
        for e in events
        if e.device_type != DeviceType.CPU
        and e.name not in (CALL, DONE)
        and e.time_range.end > e.time_range.start
    ]
    busy, span, kernels = [], [], []
    for w0, w1 in windows:
        mine = [(a, b) for a, b in device_events if w0 <= a < w1]
        if not mine:
            continue
        busy.append(_union_us(mine) / 1e3)
        span.append((max(b for _, b in mine) - min(a for a, _ in mine)) / 1e3)
        kernels.append(len(mine))
    tool = "torch.profiler (roctracer)" if _is_hip() else "torch.profiler (CUPTI)"
    return _answer(tool, busy, span, statistics.median(kernels) if kernels else 0, len(windows))


def _is_hip() -> bool:
    import torch

    return bool(getattr(torch.version, "hip", None))


def _answer(tool: str, busy: list[float], span: list[float], kernels: float, calls: int) -> dict:
    if not busy:
        return {"ok": False, "message": f"{tool} recorded no device activity in {calls} calls"}
    return {
        "ok": True,
        "tool": tool,
        "calls": len(busy),
        "busy_ms": statistics.median(busy),
        "span_ms": statistics.median(span),
        "kernels_per_call": kernels,
    }


#: A harness speedup more favourable than the profiler's by more than this is unconfirmed.
TOLERANCE = 0.10


def judge(
    timing: Timing, ref: dict[str, Any], new: dict[str, Any], device: str = "cuda"
) -> Crosscheck:
    """The result's ``timing.crosscheck``: both sides' device times, the launch overhead the
    events carry on top, and whether the profiler confirms the harness's speedup.

    The events carry a few microseconds per call besides the kernels (the launch as the
    device sees it, host gaps between launches): for small kernels that pulls the speedup
    towards 1x from either side, never past it. So a harness speedup between the
    profiler's and 1x is launch overhead (said, not held against anyone); one above both by
    more than ``TOLERANCE`` is unconfirmed, and a candidate whose events are shorter than
    its own kernels' busy time is worse: the timer saw less than the device did — a
    rejection (``escaped``), not a flag. On cpu nothing is judged (``confirmed`` None):
    the profiler's clock is the host's, read after the rounds on cores it loads itself.
    """
    ref_dev, new_dev = ref["busy_ms"], new["busy_ms"]
    # The device's view of a call is its span: first kernel's start to last kernel's end,
    # the idle gaps between launches included. A reference of five eager ops spends most
    # of its time in those gaps, which a fused kernel really saves: the busy time alone
    # would call that saving unconfirmed (an RMSNorm at 8.5x on an H200 did).
    device_speedup = ref["span_ms"] / new["span_ms"] if new["span_ms"] > 0 else None
    busy_speedup = ref_dev / new_dev if new_dev > 0 else None
    speedup = timing.get("speedup")
    reasons = []
    # The harness's own noise is allowed for: its interval's low end is what it claims
    # with confidence (on a busy cpu the interval is wide; on a GPU it is narrow).
    claimed = (timing.get("speedup_ci") or [speedup])[0]
    if device_speedup and claimed and claimed > max(device_speedup, 1.0) * (1 + TOLERANCE):
        reasons.append(
            f"the harness's {speedup:.2f}x is above the profiler's {device_speedup:.2f}x "
            f"(device span {ref['span_ms']:.4f} vs {new['span_ms']:.4f} ms)"
        )
    new_ms = timing.get("new_ms") or 0.0
    escaped = None
    if device != "cpu" and new_ms and new_ms < new_dev * (1 - TOLERANCE):
        # Honest events bracket every kernel of the call: they cannot be shorter than the
        # device was busy with it. Work ran outside the timed region (e.g. on a stream
        # that did not wait for the harness's, overlapping the cache flush).
        escaped = (
            f"the candidate's timed calls took {new_ms:.4f} ms by the events but its kernels "
            f"kept the device busy {new_dev:.4f} ms per call ({new['tool']}): its work ran "
            "outside the timed region"
        )
        reasons.append(escaped)
    if device_speedup is None:
        reasons.append("the profiler saw no device time in the candidate's calls")
    if device == "cpu":
        # The profiler's clock on a cpu is the host's, read after the rounds on cores the
        # profiler itself loads (a 1-op C++ kernel read 2.7x slower under it on 2 cores):
        # recorded, never held against the speedup.
        reasons = []
    return {
        "tool": new["tool"],
        "calls": new["calls"],
        "ref_device_ms": ref_dev,
        "new_device_ms": new_dev,
        "ref_span_ms": ref["span_ms"],
        "new_span_ms": new["span_ms"],
        "kernels_per_call": new.get("kernels_per_call"),
        "device_speedup": device_speedup,
        "busy_speedup": busy_speedup,
        "events_over_device": new_ms / new_dev if new_dev > 0 else None,
        "ref_launch_ms": max(0.0, (timing.get("ref_ms") or 0.0) - ref["span_ms"]),
        "new_launch_ms": max(0.0, new_ms - new["span_ms"]),
        "confirmed": None if device == "cpu" else not reasons,
        "reason": "; ".join(reasons) or None,
        "escaped": escaped,
    }
