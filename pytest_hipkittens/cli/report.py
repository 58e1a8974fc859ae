"""``hk-report``: the table, summary and HTML report of results trees, rebuilt without re-running.

It never writes into the trees it reads. With ``--output DIR``, the trees (the shards of a
multi-host run) are merged into DIR — problem folders missing there are copied in — and
summary.json and the detailed reports are written there; ``--html`` renders the same
pytest-html report a live run makes. A problem whose best_result.json cannot be read is
*damaged*: named on stderr, counted as such, and the exit status is 1 unless
``--allow-damaged``. ``--compare`` compares whole runs instead (:mod:`..compare`): one row
per problem, the change against the first run, a summary per run, and with ``--html`` one
self-contained page with the fast_p curves and the speedup scatter.
"""

from __future__ import annotations

import argparse
import shutil
import sys
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
            finished = store.best() is not None or store.damaged()  # damage travels too
            if finished and not (dest / "best_result.json").exists():
                shutil.copytree(store.dir, dest, dirs_exist_ok=True)


def render_html(tree: Path, html: Path) -> tuple[int, str]:
    """pytest + pytest-html over the tree (replay_report.py), read only; pytest's exit code
    and its output (shown only when no report came out: the table is printed once, here)."""
    from .. import replay_report
    from ..quiet_pytest import run

    args = ["--hk-results", str(tree), "--hk-read-only", "--html", str(html)]
    return run(replay_report.__file__, [*args, "--self-contained-html", "--hk-progress", "off"])


def compare_main(args: argparse.Namespace) -> int:
    """``--compare``: each tree is one run, compared with the first; nothing is merged."""
    from ..compare import NotATree, compare, html_page, text_lines
    from ..results import write_atomic

    if len(args.results) < 2:
        die("--compare needs at least two results trees")
    if args.output:
        die("--compare reads the trees as they are; --output (merging) does not apply")
    try:
        cmp = compare([Path(raw) for raw in args.results])
    except NotATree as exc:
        die(str(exc))
    if not cmp.rows:
        die(f"no finished problems (best_result.json) under {', '.join(args.results)}")
    for name, key in cmp.damaged:
        print(f"hk-report: damaged: {name}: {key}/best_result.json cannot be read", file=sys.stderr)
    print("\n".join(text_lines(cmp)))
    if args.html:
        write_atomic(Path(args.html), html_page(cmp))
        print(f"HTML comparison: {args.html}")
    if args.pytest_html:
        from ..compare_report import render

        target = Path(args.pytest_html).resolve()
        code, noise = render(cmp, target)
        if not target.is_file():
            print(noise[-4000:], file=sys.stderr)
            die(f"pytest-html wrote no report (pytest exit {code})")
        print(f"pytest-html comparison: {args.pytest_html}")
    return 1 if cmp.damaged and not args.allow_damaged else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hk-report", description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", metavar="RESULTS_DIR")
    parser.add_argument(
        "--output",
        metavar="DIR",
        help="merge the trees into DIR and write summary.json and the reports there (default: write nothing)",
    )
    parser.add_argument("--html", metavar="REPORT.html", help="also write the HTML report here")
    parser.add_argument(
        "--allow-damaged",
        action="store_true",
        help="exit 0 even when a problem's best_result.json is damaged",
    )
    parser.add_argument(
        "--compare",
        action="store_true",
        help="compare the trees as runs (models, prompts, versions) against the first one",
    )
    parser.add_argument(
        "--pytest-html",
        metavar="REPORT.html",
        help="with --compare: the comparison as a pytest-html report too (an item per "
        "problem, failed when a later run lost it or got slower)",
    )
    args = parser.parse_args(argv)
    if args.compare:
        return compare_main(args)
    if args.pytest_html:
        die("--pytest-html goes with --compare (--html renders a tree's own report)")

    from ..report import records_from_tree, solved_line, summarize, table_lines, write_reports

    trees = [Path(raw) for raw in args.results]
    for root in trees:
        if not root.is_dir():
            die(f"{root} is not a directory")
    if args.output:
        out = Path(args.output)
        out.mkdir(parents=True, exist_ok=True)
        merge(trees, out)
        records = records_from_tree(out)
    else:
        out = trees[0]  # read only: several trees are merged by problem, the first wins
        found: dict[str, dict] = {}
        for root in trees:
            for rec in records_from_tree(root):
                found.setdefault(rec["problem"], rec)
        records = list(found.values())
    if not records:
        die(f"no finished problems (best_result.json) under {', '.join(args.results)}")
    damaged = [r for r in records if r.get("status") == "damaged"]
    for rec in damaged:
        print(f"hk-report: damaged: {rec['message']}", file=sys.stderr)
    print("\n".join(table_lines(records)))
    if args.output:
        from ..runinfo import from_tree
        from ..runinfo import merge as merge_runs

        summary = write_reports(out, records, merge_runs([from_tree(t) for t in trees]))
        where = f"; reports written to {out}"
    else:
        summary, where = summarize(records), ""
    print(solved_line(summary) + where)
    if args.html:
        if len(trees) > 1 and not args.output:
            die("--html with several trees needs --output (the merged tree it renders)")
        code, noise = render_html(out, Path(args.html).resolve())
        if not Path(args.html).is_file():
            print(noise[-4000:], file=sys.stderr)
            die(f"pytest-html wrote no report (pytest exit {code})")
        print(f"HTML report: {args.html}")
    return 1 if damaged and not args.allow_damaged else 0


if __name__ == "__main__":
    sys.exit(main())
