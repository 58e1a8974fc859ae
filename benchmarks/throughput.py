"""Build throughput and latency: plain serial ``load_inline`` against the harness pipeline.

Makes ``--count`` distinct candidates for the ReLU sample (variants of one small kernel:
each has its own constant and name, so nothing is shared through a cache), then in one run:

1. plain ``load_inline``, serially, in this process's own fresh extension dir, without the
   harness (the baseline; ``--serial N`` of them are measured, the rest extrapolated);
2. the harness's cold latency for one new candidate, once its precompiled header exists;
3. the harness pipeline on all candidates: concurrent builds (``--jobs``) while the device
   verifies and times those already built;
4. a cache hit: the same candidate evaluated again.

It prints wall times, effective seconds per candidate, the ratio to serial, and the
fraction of the pipeline's wall time the device spent evaluating (verify + time). Every
build directory is fresh (a temporary build cache), so the numbers are cold.

    python benchmarks/throughput.py --backend cuda --count 16 --jobs 16 --serial 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pytest_hipkittens.backends import get_backend
from pytest_hipkittens.evaluate import EvalConfig, Evaluator
from pytest_hipkittens.problems import SAMPLES_DIR, load_problem_file

CUDA = '''
import torch
import torch.nn as nn
from torch.utils.cpp_extension import load_inline

SOURCE = r"""
#include <torch/extension.h>
#include <c10/cuda/CUDAStream.h>
__global__ void relu_kernel(const float* __restrict__ x, float* __restrict__ y, long n) {{
    long i = blockIdx.x * (long)blockDim.x + threadIdx.x;
    if (i < n) y[i] = fmaxf(x[i], {zero}f);
}}
torch::Tensor relu(torch::Tensor x) {{
    auto y = torch::empty_like(x);
    long n = x.numel();
    relu_kernel<<<(n + {block} - 1) / {block}, {block}, 0, c10::cuda::getCurrentCUDAStream()>>>(
        x.data_ptr<float>(), y.data_ptr<float>(), n);
    return y;
}}
"""
ext = load_inline(name="hk_tp_{tag}", cpp_sources="torch::Tensor relu(torch::Tensor x);",
                  cuda_sources=SOURCE, functions=["relu"], extra_cuda_cflags=["-O3"])


class ModelNew(nn.Module):
    def forward(self, x):
        return ext.relu(x)
'''

CPU = '''
import torch
import torch.nn as nn
from torch.utils.cpp_extension import load_inline

SOURCE = r"""
#include <torch/extension.h>
#include <ATen/Parallel.h>
torch::Tensor relu(torch::Tensor x) {{
    auto xc = x.contiguous();
    auto y = torch::empty_like(xc);
    const float* s = xc.data_ptr<float>();
    float* d = y.data_ptr<float>();
    at::parallel_for(0, xc.numel(), {block} * 64, [&](int64_t b, int64_t e) {{
        for (int64_t i = b; i < e; ++i) d[i] = s[i] > {zero}f ? s[i] : {zero}f;
    }});
    return y;
}}
"""
ext = load_inline(name="hk_tp_{tag}", cpp_sources=SOURCE, functions=["relu"],
                  extra_cflags=["-O3", "-fopenmp"], extra_ldflags=["-fopenmp"])


class ModelNew(nn.Module):
    def forward(self, x):
        return ext.relu(x)
'''


def variant(backend: str, i: int, salt: str) -> str:
    """Candidate ``i``: same work, distinct source (its own name, block size and a -0.0)."""
    block = (128, 256, 512, 1024)[i % 4]
    zero = "-0.0" if i % 2 else "0.0"
    template = CUDA if backend == "cuda" else CPU
    return template.format(tag=f"{salt}_{i}", block=block, zero=zero)


PLAIN = """
import sys, time, importlib.util
t0 = time.monotonic()
spec = importlib.util.spec_from_file_location("cand", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
print(time.monotonic() - t0)
"""


def plain_build(code: str, workdir: Path) -> float:
    """One cold ``load_inline`` in a fresh interpreter and extension dir, no harness."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "candidate.py"
    path.write_text(code, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in ("CXX", "HK_PCH_DIR")}
    env["TORCH_EXTENSIONS_DIR"] = str(workdir / "ext")
    env.setdefault("MAX_JOBS", str(os.cpu_count() or 2))
    out = subprocess.run(
        [sys.executable, "-c", PLAIN, str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
        check=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


def wait_for_pch(folder: Path, timeout: float = 900) -> float:
    """Seconds until a precompiled header exists under ``folder`` (the background build)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if list(folder.rglob("*.gch")) and not list(folder.rglob("building")):
            return time.monotonic() - t0
        time.sleep(1)
    return float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--count", type=int, default=16, help="distinct candidates (>= 16)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2, help="concurrent builds")
    parser.add_argument("--serial", type=int, default=2, help="plain builds actually measured")
    parser.add_argument("--timing-trials", type=int, default=30)
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()

    backend = get_backend(args.backend)
    problem = load_problem_file(SAMPLES_DIR / "level1" / "1_ReLU.py")
    salt = f"{os.getpid()}_{int(time.time())}"
    codes = [variant(backend.name, i, salt) for i in range(args.count + args.serial + 2)]
    tmp = Path(tempfile.mkdtemp(prefix="hk-throughput-"))
    cfg = EvalConfig(
        backend=backend,
        build_cache=tmp / "cache",
        build_jobs=args.jobs,
        timing_trials=args.timing_trials,
        correctness_trials=3,
    )
    ev = Evaluator(cfg, tmp / "work")
    figures: dict[str, float] = {}

    # 0. warm-up: one harness build starts the precompiled header in the background.
    first = ev.evaluate(problem, codes[0])
    figures["first_build_s"] = first["build_seconds"] or float("nan")
    figures["pch_ready_after_s"] = wait_for_pch(tmp / "cache" / "pch")
    print(
        f"warm-up build {figures['first_build_s']:.1f} s ({first['status']}); "
        f"PCH ready {figures['pch_ready_after_s']:.1f} s later",
        flush=True,
    )

    # 1. plain serial load_inline (the baseline).
    serial = [plain_build(codes[1 + k], tmp / f"plain-{k}") for k in range(args.serial)]
    figures["serial_each_s"] = statistics.fmean(serial)
    print(f"plain load_inline: {', '.join(f'{s:.1f}' for s in serial)} s", flush=True)

    # 2. cold latency of one new candidate through the harness, PCH ready.
    lat = ev.evaluate(problem, codes[1 + args.serial])
    figures["harness_cold_build_s"] = lat["build_seconds"] or float("nan")
    print(
        f"harness cold build: {figures['harness_cold_build_s']:.1f} s ({lat['status']})", flush=True
    )

    # 3. the pipeline on `count` new candidates.
    batch = codes[2 + args.serial :]
    t0 = time.monotonic()
    results = ev.evaluate_pairs([(problem, c) for c in batch])
    wall = time.monotonic() - t0
    device_s = sum(r.get("eval_seconds") or 0.0 for r in results)
    statuses = sorted({r["status"] for r in results})
    figures.update(
        pipeline_wall_s=wall,
        pipeline_effective_s=wall / len(batch),
        pipeline_device_busy=device_s / wall,
        pipeline_build_mean_s=statistics.fmean(r["build_seconds"] or 0 for r in results),
    )

    # 4. cache hit.
    hit = ev.evaluate(problem, batch[0])
    figures["cache_hit_build_s"] = hit["build_seconds"] or float("nan")
    ev.close()

    serial_total = figures["serial_each_s"] * len(batch)
    figures["ratio_serial_over_pipeline"] = serial_total / wall
    print()
    print(
        f"backend {backend.name}, {os.cpu_count()} cores, {len(batch)} candidates, "
        f"{args.jobs} concurrent builds; statuses: {', '.join(statuses)}"
    )
    rows = [
        (
            "plain load_inline, serial",
            serial_total,
            figures["serial_each_s"],
            f"measured {args.serial}, x{len(batch)} extrapolated",
        ),
        (
            "harness pipeline",
            wall,
            figures["pipeline_effective_s"],
            f"device busy {figures['pipeline_device_busy']:.0%} of the wall time",
        ),
    ]
    print(f"{'way':28} {'wall s':>9} {'s/candidate':>12}  note")
    for name, w, each, note in rows:
        print(f"{name:28} {w:9.1f} {each:12.2f}  {note}")
    print(f"ratio serial/pipeline: {figures['ratio_serial_over_pipeline']:.1f}x")
    print(
        f"cold latency: plain {figures['serial_each_s']:.1f} s, harness with PCH "
        f"{figures['harness_cold_build_s']:.1f} s; cache hit {figures['cache_hit_build_s']:.2f} s"
    )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
