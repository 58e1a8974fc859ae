"""Build and evaluate every recorded sample response on this machine's backend; print a table.

Per candidate: compile seconds, evaluation seconds, reference and candidate median ms,
speedup, and the achieved rate (GB/s from the bytes the problem must move at minimum, and
TFLOP/s where the reference does matrix work). All candidates build concurrently first,
then evaluate one at a time on the device.

    python benchmarks/samples.py --backend cuda --jobs 16 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from pytest_hipkittens.backends import get_backend
from pytest_hipkittens.evaluate import EvalConfig, Evaluator
from pytest_hipkittens.extract import extract_code
from pytest_hipkittens.llm import DEFAULT_RESPONSES
from pytest_hipkittens.problems import SAMPLES_DIR, select
from pytest_hipkittens.session import default_build_cache


def fmt(value, spec: str) -> str:
    return format(value, spec) if isinstance(value, (int, float)) else "-"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--responses", type=Path, default=DEFAULT_RESPONSES)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2, help="concurrent builds")
    parser.add_argument("--build-cache", type=Path, default=default_build_cache())
    parser.add_argument("--timing-trials", type=int, default=50)
    parser.add_argument("--verify-timing", action="store_true", help="also time under ncu")
    parser.add_argument("--json", type=Path, help="write all results here")
    args = parser.parse_args()

    backend = get_backend(args.backend)
    cfg = EvalConfig(
        backend=backend,
        build_cache=args.build_cache,
        build_jobs=args.jobs,
        timing_trials=args.timing_trials,
    )
    evaluator = Evaluator(cfg)
    pairs, labels = [], []
    for problem in select(SAMPLES_DIR, [1], None):
        folder = args.responses / backend.name / problem.key
        for path in sorted(folder.glob("*.md")) if folder.is_dir() else []:
            code = extract_code(path.read_text()).code
            if code:
                pairs.append((problem, code))
                labels.append((problem.key, path.stem))
    t0 = time.monotonic()
    results = evaluator.evaluate_pairs(pairs)
    wall = time.monotonic() - t0
    checks = {}
    if args.verify_timing:
        for (problem, code), r in zip(pairs, results, strict=False):
            if r["status"] == "correct":
                checks[r["code_sha256"]] = evaluator.verify_timing(problem, code)
    evaluator.close()

    hw = next((r["hardware"] for r in results if r.get("hardware")), {})
    print(
        f"backend {backend.name} ({backend.arch}); device: {hw.get('gpu') or hw.get('cpu')}; torch {hw.get('torch')}"
    )
    head = f"{'problem':<24} {'resp':>4} {'status':<14} {'build s':>7} {'eval s':>6} {'ref ms':>9} {'new ms':>9} {'speedup':>7} {'GB/s':>7} {'TFLOP/s':>7}"
    if checks:
        head += f" {'ncu ms':>8} {'ev/ncu':>6}"
    print(head)
    print("-" * len(head))
    for (key, stem), r in zip(labels, results, strict=False):
        t = r.get("timing") or {}
        status = r["category"] if r["status"] == "correct" else r["status"]
        line = (
            f"{key:<24} {stem:>4} {status:<14} {fmt(r.get('build_seconds'), '7.1f')} "
            f"{fmt(r.get('eval_seconds'), '6.1f')} {fmt(t.get('ref_ms'), '9.4f')} {fmt(t.get('new_ms'), '9.4f')} "
            f"{fmt(t.get('speedup'), '7.2f')} {fmt(t.get('gbps'), '7.1f')} {fmt(t.get('tflops'), '7.2f')}"
        )
        check = checks.get(r.get("code_sha256")) if checks else None
        if checks:
            ncu = check.get("ncu_ms") if check and check.get("ok") else None
            line += f" {fmt(ncu, '8.4f')} {fmt(t['new_ms'] / ncu if ncu else None, '6.2f')}"
        print(line)
        if r["status"] not in ("correct",) and stem == max(s for k, s in labels if k == key):
            print(f"    {r['message'][:150]}")
    print(f"{len(pairs)} candidates in {wall:.1f} s wall ({args.jobs} concurrent builds)")
    if args.json:
        args.json.write_text(
            json.dumps({"results": results, "labels": labels, "ncu": checks}, indent=1, default=str)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
