"""Does the harness's time agree with the profiler's and with KernelBench's? Side by side.

For each (problem, candidate) pair, in one run on one GPU:

* the harness: the candidate evaluated as in a benchmark run (events with the cache flush,
  alternating rounds) — its ``new_ms`` and ``ref_ms``, and the profiler's device busy time
  it records as ``timing.crosscheck`` (CUPTI through torch's profiler);
* Nsight Compute on the same forward, ``gpu__time_duration.sum`` with the clocks **not**
  locked (``--clock-control none``; ``Evaluator.verify_timing``), candidate only;
* KernelBench's own ``time_execution_with_cuda_event`` from the user's KernelBench checkout
  (``$KERNELBENCH_DIR/src/kernelbench/timing.py``, imported, not copied), on the candidate
  and on the reference, in this process.

    python benchmarks/timing_agreement.py --kb-timing ~/src/KernelBench/src/kernelbench/timing.py \\
        PROBLEM.py:CANDIDATE.py[:torch] ...   [--json out.json]

``:torch`` accepts a candidate whose work PyTorch's own ops do (a reference as candidate).
Prints one row per pair and the ratios harness/ncu and harness/KernelBench.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def _module(path: Path, name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def kernelbench_ms(
    kb_timing: Path, problem: Path, candidate: Path, trials: int
) -> dict[str, float]:
    """KernelBench's event timing (median ms) of the candidate and the reference."""
    import torch

    timing = _module(kb_timing, "kb_timing")
    prob = _module(problem, "kb_problem")
    cand = _module(candidate, "kb_candidate")
    torch.manual_seed(42)
    init = prob.get_init_inputs()
    ref = prob.Model(*init).cuda()
    torch.manual_seed(42)
    new = cand.ModelNew(*init).cuda()
    inputs = [x.cuda() if isinstance(x, torch.Tensor) else x for x in prob.get_inputs()]
    out = {}
    with torch.no_grad():
        for name, model in (("new", new), ("ref", ref)):
            ms = timing.time_execution_with_cuda_event(
                model, inputs, num_warmup=3, num_trials=trials, verbose=False
            )
            out[name] = statistics.median(ms)
    del ref, new, inputs
    torch.cuda.empty_cache()
    return out


def harness(problem: Path, candidate: Path, torch_ops: bool, trials: int) -> dict[str, Any]:
    """One evaluation as a benchmark run makes it, then Nsight Compute on the candidate."""
    from pytest_hipkittens.backends import get_backend
    from pytest_hipkittens.evaluate import EvalConfig, Evaluator
    from pytest_hipkittens.problems import load_problem_file
    from pytest_hipkittens.session import default_build_cache

    cfg = EvalConfig(
        backend=get_backend("cuda"),
        build_cache=default_build_cache(),
        timing_trials=trials,
        allow_torch_ops=torch_ops,
        build_jobs=1,
    )
    ev = Evaluator(cfg)
    ev.spares_enabled = False
    prob = load_problem_file(str(problem))
    code = candidate.read_text(encoding="utf-8")
    try:
        result = ev.evaluate(prob, code)
        ncu = ev.verify_timing(prob, code) if result.get("status") == "correct" else None
    finally:
        ev.close()
    return {"result": result, "ncu": ncu}


def row(name: str, h: dict[str, Any], kb: dict[str, float] | None) -> dict[str, Any]:
    r = h["result"]
    t = r.get("timing") or {}
    cross = t.get("crosscheck") or {}
    ncu = (h.get("ncu") or {}).get("ncu_ms")
    out = {
        "pair": name,
        "status": r.get("status"),
        "message": (r.get("message") or "")[:160],
        "harness_new_ms": t.get("new_ms"),
        "harness_ref_ms": t.get("ref_ms"),
        "cupti_new_ms": cross.get("new_device_ms"),
        "cupti_ref_ms": cross.get("ref_device_ms"),
        "ncu_new_ms": ncu,
        "kb_new_ms": (kb or {}).get("new"),
        "kb_ref_ms": (kb or {}).get("ref"),
        "speedup": t.get("speedup"),
        "speedup_ci": t.get("speedup_ci"),
        "confirmed": cross.get("confirmed"),
        "pct_of_peak": (r.get("roofline") or {}).get("pct_of_peak"),
        "bound": (r.get("roofline") or {}).get("bound"),
    }
    for a, b in (
        ("harness_new_ms", "ncu_new_ms"),
        ("harness_new_ms", "kb_new_ms"),
        ("harness_ref_ms", "kb_ref_ms"),
        ("cupti_new_ms", "ncu_new_ms"),
    ):
        if out.get(a) and out.get(b):
            out[f"{a.split('_')[0]}/{b.split('_')[0]} {a.split('_')[1]}"] = out[a] / out[b]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pairs", nargs="+", metavar="PROBLEM.py:CANDIDATE.py[:torch]")
    parser.add_argument("--kb-timing", type=Path, help="KernelBench's src/kernelbench/timing.py")
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows = []
    for spec in args.pairs:
        parts = spec.split(":")
        problem, candidate = Path(parts[0]), Path(parts[1])
        torch_ops = parts[2:] == ["torch"]
        t0 = time.monotonic()
        h = harness(problem, candidate, torch_ops, args.trials)
        kb = None
        if args.kb_timing and h["result"].get("status") == "correct":
            kb = kernelbench_ms(args.kb_timing, problem, candidate, args.trials)
        rows.append(row(f"{problem.stem} / {candidate.stem}", h, kb))
        rows[-1]["seconds"] = round(time.monotonic() - t0, 1)
        print(json.dumps(rows[-1]), flush=True)
    cols = (
        "harness_new_ms",
        "cupti_new_ms",
        "ncu_new_ms",
        "kb_new_ms",
        "harness_ref_ms",
        "kb_ref_ms",
    )
    print()
    print(
        f"{'pair':44} " + " ".join(f"{c:>15}" for c in cols) + "  harness/ncu  harness/kb  ref h/kb"
    )
    for r in rows:
        cells = " ".join(
            f"{r[c]:15.4f}" if isinstance(r.get(c), float) else f"{'-':>15}" for c in cols
        )
        ratios = [r.get("harness/ncu new"), r.get("harness/kb new"), r.get("harness/kb ref")]
        print(
            f"{r['pair'][:44]:44} {cells}  "
            + "  ".join(f"{x:10.3f}" if x else f"{'-':>10}" for x in ratios)
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
