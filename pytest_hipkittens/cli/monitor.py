"""``hk-monitor RESULTS_DIR``: watch a batch through its results tree (the seed's monitor.sh).

Shows counts by status, the problems in flight and what each is doing, throughput and an
ETA. Refreshes live on a terminal; ``--once`` prints one plain snapshot and exits (scripts,
CI logs, tests).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from . import die


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hk-monitor", description=__doc__.splitlines()[0])
    parser.add_argument("results", metavar="RESULTS_DIR")
    parser.add_argument("--once", action="store_true", help="print one snapshot and exit")
    parser.add_argument(
        "--interval", type=float, default=5.0, metavar="S", help="seconds between refreshes"
    )
    args = parser.parse_args(argv)
    root = Path(args.results)
    if not root.is_dir():
        die(f"{root} is not a directory")
    if args.interval <= 0:
        die("--interval must be positive")

    from ..monitor import is_results_tree, lines, snapshot, table

    if not is_results_tree(root):
        die(f"{root} is not a results tree (no hk_run.json, no level*/ folder)")

    if args.once or not sys.stdout.isatty():
        print("\n".join(lines(snapshot(root))))
        return 0
    from rich.live import Live

    try:
        with Live(table(snapshot(root)), refresh_per_second=1) as live:
            while True:
                time.sleep(args.interval)
                live.update(table(snapshot(root)))
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
