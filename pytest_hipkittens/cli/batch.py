"""``hk-batch START END [PYTEST ARGS…]``: the seed's run_batch.sh as a thin wrapper.

Checks that ``$LLM_GATEWAY_KEY`` is set (unless ``--llm replay`` is passed on), then runs
``pytest kernelbench_tests --range START-END --llm openai`` with the remaining arguments,
showing the output and appending it to ``<results>/batch_run.log``. Exits with pytest's code.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

from . import die

PACKAGE_ROOT = Path(__file__).resolve().parents[2]


def tests_dir() -> Path:
    for base in (Path.cwd(), PACKAGE_ROOT):
        if (base / "kernelbench_tests").is_dir():
            return base / "kernelbench_tests"
    die("kernelbench_tests/ not found here or beside the package; run from a checkout")


def option_value(args: list[str], name: str) -> str | None:
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 2 or args[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if args[:1] in (["-h"], ["--help"]) else 2
    start, end, rest = args[0], args[1], args[2:]
    if not (start.isdigit() and end.isdigit()):
        die(f"START and END must be problem ids, got {start!r} {end!r}")
    if int(end) < int(start):
        die(f"empty range {start}-{end} (START is after END)")
    llm = option_value(rest, "--llm") or "openai"
    if llm == "openai" and not os.environ.get("LLM_GATEWAY_KEY"):
        die("LLM_GATEWAY_KEY is not set (export it, or pass --llm replay)")
    if option_value(rest, "--llm") is None:
        rest = ["--llm", "openai", *rest]
    results = Path(option_value(rest, "--hk-results") or "results")
    results.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pytest", str(tests_dir()), "--range", f"{start}-{end}", *rest]
    with open(results / "batch_run.log", "a", encoding="utf-8") as log:
        stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
        log.write(f"\n=== {stamp} {' '.join(cmd)}\n")
        log.flush()
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            log.write(line)
        code = proc.wait()
        log.write(f"=== exit {code}\n")
    return code


if __name__ == "__main__":
    sys.exit(main())
