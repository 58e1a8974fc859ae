"""``hk-eval``: evaluate one candidate file against one problem (the seed's eval contract).

Prints the result JSON (the same dict as ``result_N.json``) and exits 0 when the candidate
is correct and at least as fast as PyTorch, 1 when correct but slower, 2 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from ..evaluate.sandbox import trace
from . import die


def exit_code(result: dict) -> int:
    if result.get("status") != "correct":
        return 2
    return 0 if (result.get("timing") or {}).get("speedup", 0) >= 1 else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hk-eval", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--code", required=True, metavar="CODE.py", help="candidate defining ModelNew"
    )
    parser.add_argument(
        "--problem", required=True, metavar="PROBLEM.py", help="KernelBench problem file"
    )
    parser.add_argument("--output", metavar="RESULT.json", help="also write the result here")
    parser.add_argument("--backend", default="auto", help="auto, cpu, cuda or hip (default: auto)")
    parser.add_argument("--arch", help="override the detected arch")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "bf16"))
    parser.add_argument("--correctness-trials", type=int, default=5, metavar="N")
    parser.add_argument("--timing-trials", type=int, default=30, metavar="N")
    parser.add_argument("--build-timeout", type=float, default=900.0, metavar="S")
    parser.add_argument("--run-timeout", type=float, default=300.0, metavar="S")
    parser.add_argument(
        "--build-cache",
        metavar="DIR",
        help="build cache (default: ~/.cache/pytest-hipkittens/builds)",
    )
    parser.add_argument(
        "--allow-torch-ops",
        action="store_true",
        help="accept a forward whose work PyTorch's own ops do (default: rejected)",
    )
    parser.add_argument(
        "--forbid-libraries",
        action="store_true",
        help="reject kernels calling cuBLAS/hipBLASLt/rocBLAS/cuDNN/MIOpen (default: recorded)",
    )
    parser.add_argument(
        "--max-speedup",
        type=float,
        default=10.0,
        metavar="X",
        help="re-verify and flag speedups above X (0: never; default: 10)",
    )
    parser.add_argument(
        "--compile-baseline", action="store_true", help="also time torch.compile's reference"
    )
    parser.add_argument(
        "--isolation",
        choices=("auto", "required", "off"),
        default="auto",
        help="read-only filesystem for the workers but their scratch folders (default: auto)",
    )
    parser.add_argument(
        "--cpu-inputs",
        action="store_true",
        help="draw inputs on the CPU generator (KernelBench's exact values; slower)",
    )
    args = parser.parse_args(argv)

    from ..backends import BackendError, get_backend
    from ..evaluate import EvalConfig, Evaluator, ReferenceFailed
    from ..problems import ProblemError, load_problem_file, top_level_names
    from ..session import default_build_cache

    try:
        problem = load_problem_file(args.problem)
    except ProblemError as exc:
        die(str(exc))
    try:
        backend = get_backend(args.backend, args.arch)
    except BackendError as exc:
        die(str(exc))
    code_path = Path(args.code)
    if not code_path.is_file():
        die(f"candidate file not found: {args.code}")
    code = code_path.read_text(encoding="utf-8")
    try:
        if "ModelNew" not in top_level_names(code, str(code_path)):
            print(f"error: {args.code}: candidate defines no class ModelNew", file=sys.stderr)
    except ProblemError:
        pass  # a syntax error is reported as compile_error in the result below
    cfg = EvalConfig(
        backend=backend,
        build_cache=Path(args.build_cache) if args.build_cache else default_build_cache(),
        precision=args.precision,
        correctness_trials=args.correctness_trials,
        timing_trials=args.timing_trials,
        build_timeout=args.build_timeout,
        run_timeout=args.run_timeout,
        build_jobs=1,
        allow_torch_ops=args.allow_torch_ops,
        forbid_libraries=args.forbid_libraries,
        max_speedup=args.max_speedup,
        compile_baseline=args.compile_baseline,
        cpu_inputs=args.cpu_inputs,
        isolation=args.isolation,
    )
    if args.isolation == "required":
        from ..evaluate.isolation import unavailable

        reason = unavailable()
        if reason:
            die(f"--isolation required: workers cannot be isolated on this host ({reason})")
    evaluator = Evaluator(cfg)
    evaluator.spares_enabled = False  # one candidate: no worker started ahead of need
    t0 = time.monotonic()
    try:
        result = evaluator.evaluate(problem, code)
    except ReferenceFailed as exc:
        die(str(exc))
    finally:
        t1 = time.monotonic()
        evaluator.close()
        trace(f"evaluate {t1 - t0:.3f} s, close {time.monotonic() - t1:.3f} s")
    result["problem"] = problem.key
    text = json.dumps(result, indent=2, default=str)
    print(text)
    if args.output:
        from ..results import write_atomic

        write_atomic(Path(args.output), text + "\n")
    return exit_code(result)


if __name__ == "__main__":
    sys.exit(main())
