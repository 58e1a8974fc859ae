"""Every problem of a KernelBench level at its real size, through the real plugin path.

Each problem's reference is submitted as its own candidate (``Model`` renamed ``ModelNew``,
accepted with ``--hk-allow-torch-ops``), replayed as the LLM's answer, so what is measured
is the harness — trusted inputs on the device, the candidate's worker, the comparison, the
timing — and not a model's kernels. Per problem: wall seconds (pytest's own duration of the
item), seconds the device was held, peak memory of the trusted and the candidate process,
status; totals at the end.

    python benchmarks/level1_sweep.py --kernelbench-dir ~/src/KernelBench [--range 1-100]
        [-n 4] [--json sweep.json]

Never commit KernelBench's problem files: point ``--kernelbench-dir`` (or
``KERNELBENCH_DIR``) at a checkout.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def responses(problems: list[Path], backend: str, level: int, folder: Path) -> None:
    """A recorded answer per problem: the reference itself, renamed ``ModelNew``."""
    for path in problems:
        code = re.sub(r"\bModel\b", "ModelNew", path.read_text(encoding="utf-8"))
        target = folder / backend / f"level{level}" / path.stem
        target.mkdir(parents=True, exist_ok=True)
        (target / "1.md").write_text(f"```python\n{code}\n```\n", encoding="utf-8")


def durations(junit: Path) -> dict[str, float]:
    """pytest's duration of each item, keyed by the problem id in its name."""
    out = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        name = case.get("name", "")
        key = name.split("[", 1)[-1].rstrip("]")
        out[key.split("/")[-1]] = float(case.get("time", 0))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kernelbench-dir", type=Path, default=os.environ.get("KERNELBENCH_DIR"))
    parser.add_argument("--level", type=int, default=1)
    parser.add_argument("--range", dest="spans", help="problem ids, e.g. 1-100 or 19")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("-n", dest="workers", help="pytest-xdist workers (one per GPU)")
    parser.add_argument("--results", type=Path, help="results tree (default: a temp folder)")
    parser.add_argument("--timeout", type=float, default=3000, help="seconds for the whole run")
    parser.add_argument("--json", type=Path, help="write the per-problem table here")
    parser.add_argument("pytest_args", nargs="*", help="more pytest arguments (after --)")
    args = parser.parse_args()
    if not args.kernelbench_dir:
        parser.error("--kernelbench-dir or KERNELBENCH_DIR is needed")
    root = args.kernelbench_dir
    level_dir = root / f"level{args.level}"
    if not level_dir.is_dir():
        level_dir = root / "KernelBench" / f"level{args.level}"
    problems = sorted(level_dir.glob("*.py"))
    if not problems:
        parser.error(f"no problems in {level_dir}")

    backend = args.backend
    if backend == "auto":
        from pytest_hipkittens.backends import detect

        backend = detect()
    work = Path(tempfile.mkdtemp(prefix="hk-sweep-"))
    responses(problems, backend, args.level, work / "responses")
    results = args.results or work / "results"
    junit = work / "junit.xml"
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        str(REPO / "kernelbench_tests"),
        "-p",
        "no:cacheprovider",
        "-q",
        "--backend",
        backend,
        "--llm",
        "replay",
        "--kernelbench-dir",
        str(level_dir.parent),
        "--level",
        str(args.level),
        "--hk-responses",
        str(work / "responses"),
        "--hk-attempts",
        "1",
        "--hk-samples",
        "1",
        "--hk-allow-torch-ops",
        "--hk-profile",
        "never",
        "--hk-results",
        str(results),
        "--hk-progress",
        "plain",
        f"--junitxml={junit}",
    ]
    from importlib.metadata import entry_points

    if not any(ep.name == "hipkittens" for ep in entry_points(group="pytest11")):
        cmd += ["-p", "pytest_hipkittens.plugin"]  # a checkout that is not pip-installed
    if args.spans:
        cmd += ["--range", args.spans]
    if args.workers:
        cmd += ["-n", args.workers]
    cmd += args.pytest_args
    t0 = time.monotonic()
    try:
        code: int | str = subprocess.run(
            cmd, cwd=REPO, timeout=args.timeout, check=False
        ).returncode
    except subprocess.TimeoutExpired:
        code = f"timeout after {args.timeout:g} s"  # the table shows what finished
    wall = time.monotonic() - t0

    times = durations(junit) if junit.exists() else {}
    # Without pytest's durations (a run cut short), the gap between problems' finish times.
    finished = sorted(
        (f.stat().st_mtime, f.parent.name)
        for f in (results / f"level{args.level}").glob("*/best_result.json")
    )
    gaps = {name: t - prev for (prev, _), (t, name) in zip(finished, finished[1:], strict=False)}
    rows = []
    done = results / f"level{args.level}"
    for folder in sorted(
        done.iterdir() if done.is_dir() else [], key=lambda p: int(p.name.split("_")[0])
    ):
        try:
            best = json.loads((folder / "best_result.json").read_text())
        except (OSError, ValueError):
            best = {"status": "missing"}
        mem = best.get("memory_gb") or {}
        startup = best.get("startup") or {}
        rows.append(
            {
                "problem": folder.name,
                "status": best.get("status"),
                "message": (best.get("message") or "")[:80],
                "wall_s": times.get(folder.name) or gaps.get(folder.name),
                "ref_s": startup.get("reference_s"),
                # waiting for the candidate's worker to start, then for the trusted one
                "ready_s": startup.get("worker_ready_s"),
                "ref_wait_s": startup.get("reference_wait_s"),
                "eval_s": best.get("eval_seconds"),
                "device_s": best.get("device_seconds"),
                "trusted_gb": mem.get("trusted"),
                "candidate_gb": mem.get("candidate"),
                "speedup": (best.get("timing") or {}).get("speedup"),
            }
        )
    fmt = "{:40} {:10} {:>6} {:>6} {:>6} {:>6} {:>6} {:>5} {:>6} {:>6}"
    print(
        fmt.format(
            "problem",
            "status",
            "wall_s",
            "ready",
            "refwt",
            "ref_s",
            "dev_s",
            "busy",
            "trusGB",
            "candGB",
        )
    )
    for r in rows:
        busy = (r["device_s"] or 0) / r["wall_s"] if r["wall_s"] else None
        print(
            fmt.format(
                r["problem"][:40],
                str(r["status"]),
                *(
                    "-" if v is None else f"{v:.2f}"
                    for v in (
                        r["wall_s"],
                        r["ready_s"],
                        r["ref_wait_s"],
                        r["ref_s"],
                        r["device_s"],
                        busy,
                        r["trusted_gb"],
                        r["candidate_gb"],
                    )
                ),
            )
        )
    counts: dict[str, int] = {}
    for r in rows:
        counts[str(r["status"])] = counts.get(str(r["status"]), 0) + 1
    device = sum(r["device_s"] or 0 for r in rows)
    peak = max(((r["trusted_gb"] or 0) + (r["candidate_gb"] or 0) for r in rows), default=0)
    print(
        f"TOTAL {wall:.1f} s wall for {len(rows)} problems ({len(problems)} in the level); "
        f"device held {device:.1f} s ({device / wall:.0%}); statuses {counts}; "
        f"largest peak {peak:.1f} GB; "
        f"pytest exit {code}"
    )
    if args.json:
        args.json.write_text(json.dumps({"wall_s": wall, "rows": rows}, indent=1))
    return 0 if code in (0, 1) else 1


if __name__ == "__main__":
    sys.exit(main())
