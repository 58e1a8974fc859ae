"""The timing protocol, shared by reference and candidate so their numbers compare.

The reference is timed in the trusted process and the candidate in its own worker, on
bit-identical inputs, in alternating rounds (see ``plan``). Each trial starts from an
idle device and ends with a device-wide synchronisation; on GPUs a buffer larger than the
last-level cache is rewritten before every trial so neither side profits from a warm
cache left by the other, and the call is launched while that flush still runs, so the
events measure device time, as Nsight Compute does (``make_timer``). Work a candidate
starts on another stream without waiting for the harness's stream could overlap the
flush; the profiler's cross-check (crosscheck.py), which waits for the flush, sees it.
The median is the figure; the coefficient of variation says how far to trust it.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Timer:
    """Device-specific pieces of the protocol."""

    method: str
    sync: Callable[[], None]
    flush: Callable[[], None]
    measure: Callable[[Callable[[], object]], float]  # milliseconds of one call


def _host_measure(sync: Callable[[], None]) -> Callable[[Callable[[], object]], float]:
    def measure(fn: Callable[[], object]) -> float:
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        return (time.perf_counter() - t0) * 1e3

    return measure


def make_timer(device: str, flush_bytes: int = 0) -> Timer:
    """A timer for ``cpu`` (perf_counter) or ``cuda`` (events; ROCm maps them to HIP).

    ``flush_bytes`` overrides the size of the cache-flush buffer (AMD's MALL needs more than
    twice the L2); by default it is twice the L2 and at least 256 MiB.
    """
    if device == "cpu":
        return Timer("cpu_perf_counter", lambda: None, lambda: None, _host_measure(lambda: None))
    import torch

    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    l2 = int(getattr(props, "L2_cache_size", 0) or 0)
    # 2x the L2 (and at least 256 MiB so AMD's MALL / Infinity Cache is flushed too).
    size = flush_bytes or max(2 * l2, 256 << 20)
    flush_buf = torch.empty(size // 4, dtype=torch.int32, device="cuda")
    sync = torch.cuda.synchronize

    def flush() -> None:
        flush_buf.zero_()

    def measure(fn: Callable[[], object]) -> float:
        # No synchronisation between the flush and the start event: the flush is still
        # running while the host records the start and launches the call, so the events
        # time the call's device work from the moment the device is free for it, not the
        # host's launch latency on an idle device (25-35 us per call on an H200, which
        # Nsight Compute and KernelBench's own timing do not count). Host time between
        # the call's launches beyond the flush's duration still shows as device idle time.
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        sync()  # device-wide: work on every stream has finished
        return float(start.elapsed_time(end))

    return Timer("device_events_l2_flush", sync, flush, measure)


def summarize(samples: list[float]) -> dict[str, float]:
    """Median, mean, spread and coefficient of variation of per-trial milliseconds."""
    med = statistics.median(samples)
    mean = statistics.fmean(samples)
    std = statistics.pstdev(samples) if len(samples) > 1 else 0.0
    return {
        "median": med,
        "mean": mean,
        "std": std,
        "min": min(samples),
        "max": max(samples),
        "cv": std / mean if mean > 0 else 0.0,
    }


def speedup_interval(
    ref: list[float], new: list[float], level: float = 0.95, resamples: int = 2000
) -> tuple[float, float]:
    """Bootstrap interval of the speedup (median ref ms / median new ms) at ``level``.

    Both sides' trials are resampled independently; the interval is what the run's own
    noise allows the ratio of medians to be. Seeded: the same trials give the same interval.
    """
    import numpy as np

    rng = np.random.default_rng(0)
    r, n = np.asarray(ref, dtype=float), np.asarray(new, dtype=float)
    # Bounded work and memory whatever the trial count: a seeded subsample beyond 2,000.
    r = r if len(r) <= 2000 else rng.choice(r, 2000, replace=False)
    n = n if len(n) <= 2000 else rng.choice(n, 2000, replace=False)
    r_med = np.median(r[rng.integers(0, len(r), (resamples, len(r)))], axis=1)
    n_med = np.median(n[rng.integers(0, len(n), (resamples, len(n)))], axis=1)
    ratios = r_med / np.maximum(n_med, 1e-12)
    tail = (1 - level) / 2
    return float(np.quantile(ratios, tail)), float(np.quantile(ratios, 1 - tail))


def decided(interval: tuple[float, float]) -> bool:
    """Whether the interval says faster or slower than PyTorch (it does not hold 1x)."""
    return interval[0] > 1.0 or interval[1] < 1.0


def warm(fn: Callable[[], object], timer: Timer, warmup: int = 3, warmup_s: float = 0.2) -> float:
    """Run ``fn`` at least ``warmup`` times and ``warmup_s`` seconds; its median ms.

    Lazy initialisation, autotuning and a GPU's clock ramp after an idle build phase are
    over before the first timed trial; the estimate sizes the number of trials.
    """
    samples = []
    start = time.perf_counter()
    while len(samples) < max(1, warmup) or (
        time.perf_counter() - start < warmup_s and len(samples) < 1000
    ):
        timer.sync()
        timer.flush()
        samples.append(timer.measure(fn))
    return statistics.median(samples)


def run_trials(
    fn: Callable[[], object],
    timer: Timer,
    trials: int,
    before: Callable[[], None] | None = None,
) -> list[float]:
    """Milliseconds of ``trials`` calls, each after a cache flush.

    One untimed call comes first: a round starts after its inputs were refilled and, on
    either side, memory may have been handed back to the device between rounds; the first
    call of a round would pay for that on one side and not the other. ``before`` runs
    ahead of each timed call's flush, outside the timed region (both sides spoil the
    previous call's output there: ``tensors.spoil``).
    """
    timer.sync()
    timer.flush()
    timer.measure(fn)
    out = []
    for _ in range(trials):
        if before is not None:
            before()
        timer.sync()  # nothing of the call before, or of ``before``, overlaps the flush
        timer.flush()
        out.append(timer.measure(fn))
    return out


def plan(estimates_ms: list[float], trials: int, budget_s: float, rounds: int = 10) -> list[int]:
    """Trials per round for each side: at most ``trials``, within ``budget_s``, never below 5.

    Reference and candidate run in different processes, so they take turns in rounds
    (ref, new, ref, new, …) of at least 3 trials: drift in clock speed or background load
    (a build compiling beside the timing, on the cpu backend) hits both alike, and a burst
    that spoils a round or two moves neither median.
    """
    est = sum(estimates_ms)
    if est > 0:
        trials = max(5, min(trials, int(budget_s * 1e3 / est)))
    rounds = max(1, min(rounds, trials // 3))
    base, extra = divmod(trials, rounds)
    return [base + (1 if r < extra else 0) for r in range(rounds)]


def explained_s(ms: list[float]) -> float:
    """Seconds a round's reported trials account for: their sum, and the untimed settle
    call that opens the round at their median."""
    return (sum(ms) + statistics.median(ms)) / 1e3


def unaccounted_s(wall_s: float, ms: list[float]) -> float:
    """Seconds of a timed round, by the parent's clock, that its reported trials leave
    unexplained."""
    return wall_s - explained_s(ms)


#: A round's unexplained time may exceed the reference's by this much before the median
#: over rounds is held against the candidate (relay and scheduling jitter; seconds). On the
#: cpu backend the workers share a few busy cores with everything else (builds, the test
#: suite's other processes): an honest round there came out 4.3 ms over on 2 cores.
WALL_SLACK_S = {"cpu": 0.025}
WALL_SLACK_DEFAULT_S = 0.003


def wall_check(
    new: list[tuple[float, list[float]]],
    ref: list[tuple[float, list[float]]],
    copy_s: float = 0.0,
    device: str = "cuda",
) -> dict[str, float] | None:
    """The parent's clock against the candidate's reported times, in figures.

    The candidate's trials are timed in its own process, where its code can replace any
    function or method the timer uses. The parent's clock around each round (``(wall_s,
    trial ms)`` per round) is out of its reach: a round must be explained by its reported
    trials plus the harness's own overhead, which the reference's rounds (same timer code,
    same relay, in the trusted process) measure, with their jitter. ``copy_s`` allows for
    per-round copies only the candidate side makes (the cpu backend's private inputs and
    exported output). ``hidden_ms`` is the median round's unexplained time beyond the
    reference's spread over the calls of the round: what each call took that it did not
    report. ``allowance_ms`` is what a round may carry before that counts.
    """
    if not new or not ref:
        return None
    ref_u = [unaccounted_s(w, ms) for w, ms in ref]
    overhead = max(0.0, statistics.median(ref_u))
    jitter = 1.4826 * statistics.median(abs(u - overhead) for u in ref_u)
    slack = WALL_SLACK_S.get(device, WALL_SLACK_DEFAULT_S)
    allowance = 1.5 * overhead + max(slack, 4 * jitter) + copy_s
    excess = [
        (unaccounted_s(w, ms) - allowance - 0.1 * explained_s(ms)) / (len(ms) + 1) for w, ms in new
    ]
    return {
        "ref_overhead_ms": overhead * 1e3,
        "ref_jitter_ms": jitter * 1e3,
        "new_overhead_ms": statistics.median(unaccounted_s(w, ms) for w, ms in new) * 1e3,
        "allowance_ms": allowance * 1e3,
        "hidden_ms": max(0.0, statistics.median(excess)) * 1e3,
    }


def not_credible(
    new: list[tuple[float, list[float]]],
    ref: list[tuple[float, list[float]]],
    copy_s: float = 0.0,
    device: str = "cuda",
) -> str | None:
    """Why the candidate's reported times cannot be what its rounds took, or None.

    Judged on the median round (``wall_check``), so one scheduling hiccup convicts no one,
    and with 10% of the round's own reported time on top, so long honest rounds are not
    held to a fixed margin.
    """
    return wall_reason(wall_check(new, ref, copy_s, device), new)


def wall_reason(check: dict[str, float] | None, new: list[tuple[float, list[float]]]) -> str | None:
    """The rejection reason ``wall_check``'s figures ``check`` amount to, or None."""
    if not check or check["hidden_ms"] <= 0:
        return None
    trials = statistics.median(len(ms) for _, ms in new)
    reported = statistics.median(statistics.median(ms) for _, ms in new)
    return (
        f"its timed rounds took {check['new_overhead_ms']:.1f} ms more than {trials:g} "
        f"trials of the {reported:.3f} ms it reported can explain, where the reference's "
        f"rounds needed {check['ref_overhead_ms']:.1f} ms (jitter "
        f"{check['ref_jitter_ms']:.1f} ms): about {check['hidden_ms']:.3f} ms of each call "
        "went unreported"
    )
