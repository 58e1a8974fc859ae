"""``hk-report``: rebuild summary.json, the detailed reports and the HTML report from results trees.

Several trees (the shards of a multi-host run) are merged into the first one given, or into
``--output``: problem folders missing there are copied in. Nothing is re-run; ``--html``
renders the same pytest-html report a live run makes, from the merged tree alone.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from . import die


def merge(trees: list[Path], out: Path) -> None:
    """Copy every finished problem folder of ``trees`` into ``out`` (first tree wins)."""
    from ..results import ResultsTree

    for root in trees:
        if root.resolve() == out.resolve():
            continue
        for store in ResultsTree(root).problems():
            dest = out / store.key
            if store.best() is not None and not (dest / "best_result.json").exists():
                shutil.copytree(store.dir, dest, dirs_exist_ok=True)


def render_html(tree: Path, html: Path) -> int:
    """pytest + pytest-html over the tree (replay_report.py); pytest's exit code."""
    import pytest

    from .. import replay_report

    with tempfile.TemporaryDirectory(prefix="hk-report-") as tmp:
        ini = Path(tmp) / "pytest.ini"
        ini.write_text("[pytest]\n", encoding="utf-8")
        return int(
            pytest.main(
                [
                    replay_report.__file__,
                    "-c",
                    str(ini),
                    "--rootdir",
                    tmp,
                    "-p",
                    "no:cacheprovider",
                    "-q",
                    "--no-header",
                    "--hk-results",
                    str(tree),
                    "--html",
                    str(html),
                    "--self-contained-html",
                ]
            )
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hk-report", description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", metavar="RESULTS_DIR")
    parser.add_argument(
        "--output",
        metavar="DIR",
        help="where the merged tree and reports go (default: the first tree)",
    )
    parser.add_argument("--html", metavar="REPORT.html", help="also write the HTML report here")
    args = parser.parse_args(argv)

    from ..report import records_from_tree, table_lines, write_reports

    trees = [Path(raw) for raw in args.results]
    for root in trees:
        if not root.is_dir():
            die(f"{root} is not a directory")
    out = Path(args.output or args.results[0])
    out.mkdir(parents=True, exist_ok=True)
    merge(trees, out)
    records = records_from_tree(out)
    if not records:
        die(f"no finished problems (best_result.json) under {', '.join(args.results)}")
    summary = write_reports(out, records)
    print("\n".join(table_lines(records)))
    print(f"solved {summary['solved']}/{summary['problems']}; reports written to {out}")
    if args.html:
        code = render_html(out, Path(args.html).resolve())
        if not Path(args.html).is_file():
            die(f"pytest-html wrote no report (pytest exit {code})")
        print(f"HTML report: {args.html}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
