"""The numbers behind a speedup: its interval, the profiler's cross-check, the roofline."""

from __future__ import annotations

import pytest

from pytest_hipkittens.evaluate.crosscheck import _union_us, judge
from pytest_hipkittens.evaluate.timing import decided, speedup_interval
from pytest_hipkittens.roofline import cpu_bandwidth, describe, roof, roofline


def test_interval_is_narrow_for_steady_timings_and_holds_1x_when_noisy() -> None:
    steady = speedup_interval([2.0] * 50, [1.0] * 50)
    assert steady == pytest.approx((2.0, 2.0))
    assert decided(steady)
    noisy_ref = [1.0, 1.3, 0.8, 1.1, 0.9, 1.2] * 5
    noisy_new = [1.1, 0.8, 1.2, 0.95, 1.05, 0.9] * 5
    lo, hi = speedup_interval(noisy_ref, noisy_new)
    assert lo < 1.0 < hi and not decided((lo, hi))
    assert speedup_interval(noisy_ref, noisy_new) == (lo, hi)  # seeded: reproducible


def test_union_counts_overlapping_kernels_once() -> None:
    assert _union_us([(0, 10), (5, 12), (20, 25)]) == 17
    assert _union_us([]) == 0


def side(busy: float, span: float | None = None) -> dict:
    return {"tool": "cupti", "calls": 10, "busy_ms": busy, "span_ms": span or busy}


def test_crosscheck_confirms_agreement_and_names_launch_overhead() -> None:
    timing = {"speedup": 1.9, "ref_ms": 0.21, "new_ms": 0.11}
    c = judge(timing, side(0.2), side(0.1, 0.102))
    assert c["confirmed"] and c["escaped"] is None
    assert c["busy_speedup"] == pytest.approx(2.0)
    assert c["device_speedup"] == pytest.approx(0.2 / 0.102)
    assert c["new_launch_ms"] == pytest.approx(0.008)
    # Launch overhead pulls the harness's speedup below the profiler's: not held against it.
    small = judge({"speedup": 1.2, "ref_ms": 0.012, "new_ms": 0.010}, side(0.006), side(0.003))
    assert small["confirmed"]
    # A slower small kernel: launch overhead pulls 0.63x up towards 1x (an H200 control).
    slower = judge({"speedup": 0.75, "ref_ms": 0.017, "new_ms": 0.023}, side(0.0097), side(0.0152))
    assert slower["confirmed"]


def test_a_fused_kernel_saves_the_references_launch_gaps_and_that_is_confirmed() -> None:
    # RMSNorm on an H200: five eager ops, busy 0.03 ms but spread over 0.12 ms of launches;
    # one fused kernel of 0.0116 ms. 8.5x by the events is real: the gaps are saved.
    timing = {"speedup": 8.5, "speedup_ci": [6.9, 9.1], "ref_ms": 0.128, "new_ms": 0.0151}
    c = judge(timing, side(0.03, 0.12), side(0.0116))
    assert c["confirmed"], c["reason"]
    assert c["device_speedup"] == pytest.approx(0.12 / 0.0116)
    assert c["busy_speedup"] == pytest.approx(0.03 / 0.0116)


def test_crosscheck_flags_a_speedup_the_device_does_not_show() -> None:
    c = judge({"speedup": 2.5, "ref_ms": 0.29, "new_ms": 0.115}, side(0.2), side(0.12))
    assert c["confirmed"] is False and "above the profiler's" in c["reason"]
    assert c["escaped"] is None


def test_events_shorter_than_the_kernels_are_escaped_work_on_gpus_only() -> None:
    timing = {"speedup": 1.5, "ref_ms": 0.15, "new_ms": 0.05}
    gpu = judge(timing, side(0.15), side(0.1))
    assert gpu["escaped"] and "outside the timed region" in gpu["escaped"]
    cpu = judge(timing, side(0.15), side(0.1), device="cpu")
    # the cpu profiler reads the host's clock after the rounds: recorded, not judged
    assert cpu["escaped"] is None and cpu["confirmed"] is None and cpu["reason"] is None


def test_roofline_places_both_sides_at_the_references_intensity() -> None:
    hw = {"gpu": "NVIDIA H200"}
    # 1 GB moved, no FLOPs: memory-bound; 0.5 ms is 2,000 GB/s of the H200's 4,800.
    rl = roofline({"bytes": 1e9, "flops": 0, "ref_ms": 0.25, "new_ms": 0.5}, hw, "fp32")
    assert rl["bound"] == "memory" and rl["intensity"] is None
    assert rl["pct_of_peak"] == pytest.approx(100 * 2000 / 4800)
    assert rl["ref"]["pct_of_peak"] == pytest.approx(100 * 4000 / 4800)
    assert describe(rl).startswith("memory-bound, 42% of peak bandwidth")
    # A 4096^3 matmul: intensity far above the knee, compute-bound against the fp32 roof.
    mm = {"bytes": 3 * 4096**2 * 4, "flops": 2 * 4096**3, "ref_ms": 2.7, "new_ms": 5.0}
    rl = roofline(mm, hw, "fp32")
    assert rl["bound"] == "compute" and rl["roof"]["tflops"] == 67.0
    assert rl["pct_of_peak"] == pytest.approx(100 * (2 * 4096**3 / 5e-3 / 1e12) / 67.0)
    assert roofline(mm, hw, "bf16")["roof"]["tflops"] == 989.0
    assert roofline(mm, {"gpu": "Some Unknown Card"}, "fp32") is None


def test_cpu_roofs_are_measured_and_follow_the_working_set() -> None:
    measured = {
        "gbps": 10.0,
        "tflops": 0.2,
        "gbps_by_bytes": {"8388608": 40.0, "536870912": 10.0},
        "how": "copies",
    }
    assert cpu_bandwidth(measured, 4 << 20) == 40.0
    assert cpu_bandwidth(measured, 100 << 20) == 10.0
    assert cpu_bandwidth(measured, 1 << 40) == 10.0
    r = roof({"roofs": measured}, "fp32", 4 << 20)
    assert r["gbps"] == 40.0 and r["source"].startswith("measured on this cpu")
    assert roof({}, "fp32") is None


@pytest.mark.parametrize(
    "answer",
    [
        {
            "ok": True,
            "tool": "t",
            "calls": 10,
            "busy_ms": "0.1",
            "span_ms": 0.1,
            "kernels_per_call": 1,
        },
        {"ok": True, "busy_ms": float("nan"), "span_ms": 0.1, "kernels_per_call": 1},
        {"ok": True, "busy_ms": -1.0, "span_ms": 0.1, "kernels_per_call": 1},
        {"ok": True, "span_ms": 0.1},
        ["not", "a", "dict"],
    ],
)
def test_a_forged_crosscheck_answer_is_a_failed_crosscheck_not_a_crash(answer: object) -> None:
    from pytest_hipkittens.evaluate.verify import checked_crosscheck, timing_record

    assert checked_crosscheck(answer)["ok"] is False
    ref = {
        "ok": True,
        "tool": "t",
        "calls": 10,
        "busy_ms": 0.1,
        "span_ms": 0.1,
        "kernels_per_call": 1,
    }
    run = {
        "ref_ms": [0.2] * 5,
        "new_ms": [0.1] * 5,
        "crosscheck": {"ref": checked_crosscheck(ref), "new": checked_crosscheck(answer)},
    }
    # On a GPU a candidate whose cross-check fails does not escape it: unconfirmed.
    cross = timing_record(run, {})["crosscheck"]
    assert cross["confirmed"] is False and cross["reason"].startswith("the candidate's cross-check")
    # On cpu nothing is judged.
    assert timing_record(run, {}, "cpu")["crosscheck"]["confirmed"] is None


@pytest.mark.parametrize(
    "forged",
    [
        {"busy_ms": 0.0, "span_ms": 0.0},  # "the profiler saw nothing"
        {"busy_ms": 1e-9, "span_ms": 1e-9, "calls": 1},  # too few calls
    ],
)
def test_a_candidate_that_hides_from_the_profiler_is_unconfirmed(forged: dict) -> None:
    from pytest_hipkittens.evaluate.verify import checked_crosscheck, timing_record

    base = {
        "ok": True,
        "tool": "t",
        "calls": 10,
        "busy_ms": 0.1,
        "span_ms": 0.1,
        "kernels_per_call": 1,
    }
    run = {
        "ref_ms": [1.0] * 5,
        "new_ms": [0.1] * 5,
        "crosscheck": {"ref": checked_crosscheck(base), "new": checked_crosscheck(base | forged)},
    }
    assert timing_record(run, {})["crosscheck"]["confirmed"] is False


@pytest.mark.parametrize(
    "ms",
    [
        [0.0] * 5,
        [float("nan")] * 5,
        [-1.0] * 5,
        [0.1] * 4,
        [0.1] * 1000,
        "0.1",
        None,
        [10**400] * 5,
    ],
)
def test_reported_times_must_be_the_trials_asked_for_positive_and_finite(ms: object) -> None:
    from pytest_hipkittens.evaluate.verify import Verdict, check_times

    with pytest.raises(Verdict) as info:
        check_times({"ok": True, "ms": ms}, 5)
    assert info.value.status == "rejected"
    check_times({"ok": True, "ms": [0.1] * 5}, 5)  # honest: no exception
    with pytest.raises(Verdict):
        check_times({"ok": True, "est_ms": float("inf")}, None)


def test_the_interval_stays_cheap_for_any_number_of_trials() -> None:
    lo, hi = speedup_interval([1.0] * 200_000, [0.5] * 200_000)
    assert lo == pytest.approx(2.0) and hi == pytest.approx(2.0)
