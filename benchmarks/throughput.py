"""Build throughput and latency: plain serial ``load_inline`` against the harness pipeline.

Makes ``--count`` distinct candidates for the ReLU sample (variants of one small kernel:
each has its own constant and name, so nothing is shared through a cache), then in one run:

1. plain ``load_inline``, serially, in this process's own fresh extension dir, without the
   harness (the baseline; ``--serial N`` of them are measured, the rest extrapolated);
2. the harness's cold latency for one new candidate, once its precompiled header exists;
3. the harness pipeline on all candidates: concurrent builds (``--jobs``) while the device
   verifies and times those already built;
4. a cache hit: the same candidate evaluated again.

It prints wall times, effective seconds per candidate, the ratio to serial, the fraction
of the pipeline's wall time the device spent evaluating (verify + time), and which way the
harness's builds went (each result's ``build_route``: split, lean header or as written, and
why a file fell back): a wrapper that quietly stopped splitting shows there as well as in
the times. Every build directory is fresh (a temporary build cache), so the numbers are
cold.

    python benchmarks/throughput.py --backend cuda --count 16 --jobs 16,8 --serial 2
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
from typing import Any

from pytest_hipkittens.backends import get_backend
from pytest_hipkittens.evaluate import EvalConfig, Evaluator
from pytest_hipkittens.evaluate.routes import tally
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


def ninja_steps(cache: Path, tags: list[str]) -> dict[str, float]:
    """Mean seconds of each build step (from ninja's own log) over the candidates ``tags``."""
    steps: dict[str, list[float]] = {}
    for tag in tags:
        for log in cache.glob(f"*/hk_tp_{tag}/.ninja_log"):
            for line in log.read_text(encoding="utf-8").splitlines()[1:]:
                start, end, _, output = line.split("\t")[:4]
                step = Path(output).suffix.lstrip(".") if output.endswith(".so") else output
                steps.setdefault(step, []).append((int(end) - int(start)) / 1000)
    return {k: statistics.fmean(v) for k, v in sorted(steps.items())}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--count", type=int, default=16, help="distinct candidates (>= 16)")
    parser.add_argument(
        "--jobs",
        default=str(os.cpu_count() or 2),
        help="concurrent builds; a comma list runs the pipeline once per value (new candidates)",
    )
    parser.add_argument("--serial", type=int, default=2, help="plain builds actually measured")
    parser.add_argument("--timing-trials", type=int, default=100, help="the harness's default: 100")
    parser.add_argument(
        "--correctness-trials", type=int, default=5, help="the harness's default: 5"
    )
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    jobs_list = [int(j) for j in str(args.jobs).split(",")]

    backend = get_backend(args.backend)
    problem = load_problem_file(SAMPLES_DIR / "level1" / "1_ReLU.py")
    salt = f"{os.getpid()}_{int(time.time())}"
    total = args.count * len(jobs_list) + args.serial + 2
    codes = [variant(backend.name, i, salt) for i in range(total)]
    tmp = Path(tempfile.mkdtemp(prefix="hk-throughput-"))
    cache = tmp / "cache"

    def evaluator(jobs: int) -> Evaluator:
        cfg = EvalConfig(
            backend=backend,
            build_cache=cache,
            build_jobs=jobs,
            timing_trials=args.timing_trials,
            correctness_trials=args.correctness_trials,
        )
        return Evaluator(cfg, tmp / f"work-{jobs}")

    ev = evaluator(jobs_list[0])
    figures: dict[str, Any] = {}
    evaluated: list[dict[str, Any]] = []  # every harness result, for the build routes

    # 0. warm-up: one harness build starts the precompiled headers in the background.
    first = ev.evaluate(problem, codes[0])
    evaluated.append(first)
    figures["first_build_s"] = first["build_seconds"] or float("nan")
    figures["pch_ready_after_s"] = wait_for_pch(cache / "pch")
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
    evaluated.append(lat)
    figures["harness_cold_build_s"] = lat["build_seconds"] or float("nan")
    figures["harness_cold_steps_s"] = ninja_steps(cache, [f"{salt}_{1 + args.serial}"])
    steps = ", ".join(f"{k} {v:.1f}" for k, v in figures["harness_cold_steps_s"].items())
    print(
        f"harness cold build: {figures['harness_cold_build_s']:.1f} s ({lat['status']}); "
        f"ninja steps: {steps}",
        flush=True,
    )

    # 3. the pipeline on `count` new candidates, once per --jobs value.
    rows = []
    offset = 2 + args.serial
    statuses: set[str] = set()
    for jobs in jobs_list:
        if jobs != jobs_list[0]:
            ev.close()
            ev = evaluator(jobs)
        batch = codes[offset : offset + args.count]
        tags = [f"{salt}_{offset + k}" for k in range(args.count)]
        offset += args.count
        cpu0 = os.times()
        t0 = time.monotonic()
        results = ev.evaluate_pairs([(problem, c) for c in batch])
        evaluated += results
        wall = time.monotonic() - t0
        cpu1 = os.times()
        # this process plus every finished (waited-for) descendant: workers, ninja, compilers
        cpu_s = sum(b - a for a, b in zip(cpu0[:4], cpu1[:4], strict=True))
        statuses |= {r["status"] for r in results}
        device_s = sum(r.get("device_seconds") or 0.0 for r in results)
        phases: dict[str, list[float]] = {}
        for r in results:
            for k, v in (r.get("eval_phases") or {}).items():
                phases.setdefault(k, []).append(v)
        row = {
            "jobs": jobs,
            "wall_s": wall,
            "effective_s": wall / len(batch),
            "device_busy": device_s / wall,
            "build_mean_s": statistics.fmean(r["build_seconds"] or 0 for r in results),
            "cpu_s_per_candidate": cpu_s / len(batch),
            "eval_phases_mean_s": {k: statistics.fmean(v) for k, v in phases.items()},
            "ninja_steps_mean_s": ninja_steps(cache, tags),
        }
        rows.append(row)
        print(
            f"pipeline, {jobs} concurrent builds: wall {wall:.1f} s, build mean "
            f"{row['build_mean_s']:.1f} s, CPU {row['cpu_s_per_candidate']:.1f} s per candidate, "
            f"device busy {row['device_busy']:.0%}; eval phases "
            + ", ".join(f"{k} {v:.2f}" for k, v in row["eval_phases_mean_s"].items())
            + "; ninja steps "
            + ", ".join(f"{k} {v:.1f}" for k, v in row["ninja_steps_mean_s"].items()),
            flush=True,
        )
    figures["pipelines"] = rows

    # 4. cache hit.
    hit = ev.evaluate(problem, codes[offset - 1])
    evaluated.append(hit)
    figures["cache_hit_build_s"] = hit["build_seconds"] or float("nan")
    ev.close()

    routes = tally(evaluated)
    figures["build_routes"] = routes
    print()
    print(
        f"backend {backend.name}, {os.cpu_count()} cores, {args.count} candidates per batch; "
        f"statuses: {', '.join(sorted(statuses))}"
    )
    serial_total = figures["serial_each_s"] * args.count
    print(f"{'way':32} {'wall s':>9} {'s/candidate':>12} {'ratio':>7}  note")
    print(
        f"{'plain load_inline, serial':32} {serial_total:9.1f} {figures['serial_each_s']:12.2f} "
        f"{1.0:6.1f}x  measured {args.serial}, x{args.count} extrapolated"
    )
    for row in rows:
        row["ratio_serial_over_pipeline"] = serial_total / row["wall_s"]
        name = f"harness pipeline, {row['jobs']} builds"
        print(
            f"{name:32} {row['wall_s']:9.1f} {row['effective_s']:12.2f} "
            f"{row['ratio_serial_over_pipeline']:6.1f}x  device busy {row['device_busy']:.0%}"
        )
    print(
        f"cold latency: plain {figures['serial_each_s']:.1f} s, harness with PCH "
        f"{figures['harness_cold_build_s']:.1f} s; cache hit {figures['cache_hit_build_s']:.2f} s"
    )
    print(
        "build routes (candidates): "
        + ", ".join(f"{k} {v}" for k, v in sorted(routes["candidates"].items()))
    )
    if routes["files"]:
        print(
            ".cu files compiled: "
            + ", ".join(f"{k} {v}" for k, v in sorted(routes["files"].items()))
        )
    for why, n in sorted(routes["fell_back"].items(), key=lambda kv: -kv[1]):
        print(f"  fell back x{n}: {why}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
