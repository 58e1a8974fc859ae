"""Units of the runtime audit and the source checks (no worker, no build)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

from pytest_hipkittens.evaluate.audit import audit_forward, unjoined_work
from pytest_hipkittens.evaluate.plausibility import implausible, impossible, peaks
from pytest_hipkittens.evaluate.static import torch_fallback, uses_library


def kernel(name: str, stream: int, ts: float, dur: float, corr: int = 0) -> dict:
    args = {"stream": stream, "correlation": corr}
    return {"ph": "X", "cat": "kernel", "name": name, "ts": ts, "dur": dur, "args": args}


def runtime(name: str, ts: float, corr: int = 0) -> dict:
    return {
        "ph": "X",
        "cat": "cuda_runtime",
        "name": name,
        "ts": ts,
        "dur": 1.0,
        "args": {"correlation": corr},
    }


def test_work_still_running_on_another_stream_is_late() -> None:
    events = [
        runtime("cudaLaunchKernel", 90.0, 1),
        runtime("cudaLaunchKernel", 95.0, 2),
        kernel("my_kernel", 13, 100.0, 500.0, 1),  # still running at 600
        kernel("at::cuda::spin_kernel(long)", 7, 120.0, 1.0, 2),  # harness stream moved on
    ]
    report = unjoined_work(events)
    assert report["checked"] and report["harness_stream"] == 7 and not report["joined"]
    assert report["late"] == [{"name": "my_kernel", "stream": 13, "late_us": 480.0}]


def test_side_stream_never_waited_for_is_caught_even_when_it_finished_in_time() -> None:
    # A slow host (e.g. under the profiler) let the side stream finish before the marker:
    # no wait or synchronise call follows its launch, so the timer would miss it.
    events = [
        runtime("cudaLaunchKernel", 90.0, 1),
        kernel("my_kernel", 13, 100.0, 20.0, 1),
        runtime("cudaLaunchKernel", 300.0, 2),
        kernel("spin_kernel", 7, 310.0, 1.0, 2),
    ]
    report = unjoined_work(events)
    assert report["late"] == [{"name": "my_kernel", "stream": 13, "late_us": 0.0}]


def test_joined_side_stream_and_same_stream_work_pass() -> None:
    joined = [
        runtime("cudaLaunchKernel", 90.0, 1),
        runtime("cudaEventRecord", 92.0),
        runtime("cudaStreamWaitEvent", 93.0),
        runtime("cudaLaunchKernel", 95.0, 2),
        kernel("side", 13, 100.0, 50.0, 1),
        kernel("spin_kernel", 7, 151.0, 1.0, 2),
    ]
    same = [kernel("mine", 7, 100.0, 50.0), kernel("spin_kernel", 7, 150.0, 1.0)]
    assert unjoined_work(joined)["late"] == [] and unjoined_work(joined)["joined"]
    assert unjoined_work(same)["late"] == []
    assert unjoined_work([kernel("mine", 7, 0, 1)])["checked"] is False


def test_audit_counts_compute_ops_but_not_bookkeeping() -> None:
    x = torch.randn(8, 8)
    report = audit_forward(lambda: (x.t().contiguous() * 2).relu(), "cpu")
    assert [r["op"] for r in sorted(report["torch_ops"], key=lambda r: r["op"])] == [
        "aten::mul",
        "aten::relu",
    ]
    assert report["own_calls"] == {} and report["total_ms"] >= report["torch_ms"] >= 0


@pytest.mark.parametrize(
    ("module", "shapes"),
    [
        (torch.nn.Linear(64, 32), [(8, 64)]),
        (torch.nn.Conv2d(3, 16, 3), [(2, 3, 32, 32)]),
        (torch.nn.ConvTranspose3d(4, 8, 3), [(1, 4, 8, 8, 8)]),
        (torch.bmm, [(4, 16, 32), (4, 32, 8)]),
        (torch.relu, [(10,)]),
    ],
)
def test_reference_flops_match_torchs_flop_counter(module, shapes) -> None:
    from torch.utils.flop_counter import FlopCounterMode

    inputs = [torch.randn(*s) for s in shapes]
    counter = FlopCounterMode(display=False)
    with torch.no_grad():
        with counter:
            module(*inputs)
        report = audit_forward(lambda: module(*inputs), "cpu", streams=False, flops=True)
    assert report["flops"] == counter.get_total_flops()


def test_audit_and_kernel_table_do_not_import_the_compiler_stack() -> None:
    """The op log and the profiler must not import torch._dynamo (1-2 s here, 4-5 s on a
    GPU host, paid inside the phase that holds the device). A fresh process: this one may
    have imported it already."""
    code = textwrap.dedent(
        """
        import sys, torch
        from pytest_hipkittens.evaluate.audit import audit_forward, warm_mode
        from pytest_hipkittens.profile import profile_torch
        warm_mode()
        m = torch.nn.Linear(16, 16); x = torch.randn(4, 16)
        report = audit_forward(lambda: m(x), "cpu", streams=False, flops=True)
        assert report["flops"] == 2 * 4 * 16 * 16, report
        assert profile_torch(lambda: m(x), "cpu", runs=2)
        assert "torch._dynamo" not in sys.modules
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


def test_library_detection() -> None:
    assert uses_library("cublasLtMatmul(h, ...); cublasSgemm(h, ...)") == ["cublasLt", "cublas"]
    assert uses_library('extra_ldflags=["-lhipblaslt"]; rocblas_sgemm(h)') == [
        "hipblaslt",
        "rocblas",
    ]
    assert uses_library("// we do not use cublas here, plain CUDA") == []


def test_fallback_detection_ignores_honest_try_blocks() -> None:
    honest = (
        "class ModelNew:\n"
        "    def forward(self, x):\n"
        "        try:\n"
        "            return ext.run(x)\n"
        "        except RuntimeError as exc:\n"
        "            raise ValueError('bad shape') from exc\n"
    )
    assert torch_fallback(honest) is None
    cheat = honest.replace("raise ValueError('bad shape') from exc", "return F.relu(x)")
    assert "line 5" in torch_fallback(cheat)


def test_plausibility_limits() -> None:
    hw = {"gpu": "NVIDIA H100 80GB HBM3"}
    assert peaks("NVIDIA H100 PCIe")[0] == 2000.0 and peaks("NVIDIA H100 80GB HBM3")[0] == 3350.0
    assert implausible({"speedup": 3.0, "gbps": 2900.0}, hw, "fp32", 10.0) == []
    reasons = implausible({"speedup": 40.0, "gbps": 5000.0, "tflops": 1.0}, hw, "fp32", 10.0)
    assert len(reasons) == 2 and "above NVIDIA H100 80GB HBM3's peak bandwidth" in reasons[1]
    assert implausible({"speedup": 40.0}, {}, "fp32", 0) == []


def test_rates_no_card_can_reach_are_impossible() -> None:
    hw = {"gpu": "NVIDIA H200"}
    relu = {"bytes": 12_884_901_888, "gbps": 4214.0}  # real 19_ReLU, a good kernel
    assert impossible(relu, hw, "fp32", ["aten::relu"]) is None
    reason = impossible({**relu, "gbps": 9000.0}, hw, "fp32", ["aten::relu"])
    assert reason and "above NVIDIA H200's peak of 4800 GB/s" in reason
    # small enough for the caches to hold: fast is not impossible
    assert impossible({"bytes": 8 << 20, "gbps": 9000.0}, hw, "fp32", ["aten::relu"]) is None
    # FLOP rates prove something only for matrix products (not Winograd-able convolutions)
    assert impossible({"tflops": 900.0}, hw, "fp32", ["aten::mm"]) is not None
    assert impossible({"tflops": 900.0}, hw, "fp32", ["aten::convolution"]) is None
    assert impossible({"tflops": 900.0}, hw, "bf16", ["aten::mm"]) is None
    assert impossible({"gbps": 1e6, "bytes": 1 << 40}, {"gpu": "Unknown card"}, "fp32", []) is None
