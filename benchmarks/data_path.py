"""What the sandboxed evaluation costs next to a one-process one, side by side in one run.

A ReLU problem of ``--rows x --cols`` fp32 (default 4096 x 16384: 256 MiB a tensor) and one
candidate (default: the bundled sample's recorded answer for the backend) are evaluated
``--repeats`` times each way, alternately, each in a fresh interpreter:

- ``hk-eval``: the real path — trusted worker, candidate worker, buffers shared by handle,
  comparison on the device, alternating timing rounds, audit;
- one process, KernelBench-style: import the problem and the candidate, check
  ``--correctness-trials`` seeds with ``allclose``, time ``--timing-trials`` calls of each,
  no isolation and no checks beyond the outputs.

Both run the same numbers of correctness and timed trials on the same device (the one
process times as many calls of each side as ``hk-eval`` reported, which caps its trials by
a time budget); the build is cached before the first run (``HK_BUILD_CACHE`` and torch's
extension folder), so neither pays for a compile. Prints each wall time and the ratio of
medians.

    python benchmarks/data_path.py [--backend cpu|cuda] [--rows 4096 --cols 16384]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "pytest_hipkittens" / "samples"

PROBLEM = """import torch
import torch.nn as nn


class Model(nn.Module):
    def forward(self, x):
        return torch.relu(x)


def get_inputs():
    return [torch.randn({rows}, {cols})]


def get_init_inputs():
    return []
"""

# The one-process evaluation, run as ``python -c`` in a fresh interpreter.
ONE_PROCESS = r"""
import importlib.util, sys, time
t0 = time.perf_counter()
import torch

def load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod

problem, candidate = load(sys.argv[1], "problem"), load(sys.argv[2], "candidate")
device, n_check, n_time = sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
with torch.device(device):
    ref, new = problem.Model(*problem.get_init_inputs()), candidate.ModelNew(*problem.get_init_inputs())
    with torch.no_grad():
        for seed in range(n_check):
            torch.manual_seed(seed)
            xs = problem.get_inputs()
            assert torch.allclose(ref(*xs), new(*xs), atol=1e-4, rtol=1e-4), "incorrect"
        def median_ms(fn):
            fn(*xs); sync()
            out = []
            for _ in range(n_time):
                a = time.perf_counter(); fn(*xs); sync(); out.append(time.perf_counter() - a)
            return sorted(out)[len(out) // 2] * 1e3
        speedup = median_ms(ref) / median_ms(new)
print(f"ONE_PROCESS {time.perf_counter() - t0:.3f} {speedup:.3f}")
"""


def candidate_code(backend: str) -> str:
    """The bundled sample ReLU's recorded answer for ``backend``."""
    answer = (SAMPLES / "responses" / backend / "level1" / "1_ReLU" / "1.md").read_text()
    return re.search(r"```python\n(.*?)```", answer, re.S).group(1)


def run(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    t0 = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900, check=False)
    return time.monotonic() - t0, done.stdout + done.stderr


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--rows", type=int, default=4096)
    parser.add_argument("--cols", type=int, default=16384)
    parser.add_argument("--code", type=Path, help="candidate file (default: the sample answer)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--correctness-trials", type=int, default=5)
    parser.add_argument("--timing-trials", type=int, default=100)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="hk-datapath-"))
    problem = work / "1_ReLU_big.py"
    problem.write_text(PROBLEM.format(rows=args.rows, cols=args.cols))
    code = work / "candidate.py"
    code.write_text(args.code.read_text() if args.code else candidate_code(args.backend))
    env = dict(os.environ)
    env.setdefault("HK_BUILD_CACHE", str(work / "cache"))
    env.setdefault("TORCH_EXTENSIONS_DIR", str(work / "ext"))
    trials = [str(args.correctness_trials), str(args.timing_trials)]
    hk = [sys.executable, "-m", "pytest_hipkittens.cli.eval", "--backend", args.backend]
    hk += ["--problem", str(problem), "--code", str(code), "--output", str(work / "r.json")]
    hk += ["--correctness-trials", trials[0], "--timing-trials", trials[1]]
    one = [sys.executable, "-c", ONE_PROCESS, str(problem), str(code), args.backend, *trials]

    mib = args.rows * args.cols * 4 / 2**20
    print(f"ReLU {args.rows} x {args.cols} fp32 ({mib:.0f} MiB a tensor), backend {args.backend}")
    for name, cmd in (("warm-up build (hk-eval)", hk), ("warm-up build (one process)", one)):
        wall, _ = run(cmd, env)
        print(f"{name:28} {wall:7.2f} s")
    walls: dict[str, list[float]] = {"hk-eval": [], "one process": []}
    for _ in range(args.repeats):
        wall, out = run(hk, env)
        result = json.loads((work / "r.json").read_text())
        speed = (result.get("timing") or {}).get("speedup")
        print(f"{'hk-eval':28} {wall:7.2f} s  {result['status']}, speedup {speed}")
        walls["hk-eval"].append(wall)
        one[-1] = str((result.get("timing") or {}).get("trials") or args.timing_trials)
        wall, out = run(one, env)
        line = next((x for x in out.splitlines() if x.startswith("ONE_PROCESS")), out[-300:])
        print(f"{'one process':28} {wall:7.2f} s  {line} ({one[-1]} timed calls a side)")
        walls["one process"].append(wall)
    # Per pair: hk-eval caps its timed trials by a time budget, so pairs differ in length.
    ratios = [h / o for h, o in zip(walls["hk-eval"], walls["one process"], strict=True)]
    print(
        f"hk-eval / one process, per pair: {', '.join(f'{r:.2f}x' for r in ratios)}; "
        f"median {statistics.median(ratios):.2f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
