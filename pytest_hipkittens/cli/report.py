"""``hk-report``: rebuild summary.json and the detailed reports from results trees alone.

Several trees (the shards of a multi-host run) are merged into the first one given, or into
``--output``; nothing is re-run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import die


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hk-report", description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", metavar="RESULTS_DIR")
    parser.add_argument(
        "--output", metavar="DIR", help="where the reports go (default: the first tree)"
    )
    args = parser.parse_args(argv)

    from ..report import records_from_tree, table_lines, write_reports

    records: dict[str, dict] = {}
    for raw in args.results:
        root = Path(raw)
        if not root.is_dir():
            die(f"{raw} is not a directory")
        for rec in records_from_tree(root):
            records[rec["problem"]] = rec
    if not records:
        die(f"no finished problems (best_result.json) under {', '.join(args.results)}")
    out = Path(args.output or args.results[0])
    summary = write_reports(out, list(records.values()))
    print("\n".join(table_lines(list(records.values()))))
    print(f"solved {summary['solved']}/{summary['problems']}; reports written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
