"""Reports: summary.json, detailed_report.txt/.json, terminal table, pytest-html hooks.

Only plain data goes in: per-problem records (``Outcome.summary()`` dicts, which reach the
xdist controller on the test report) or the results tree read back from disk. Summary
numbers follow KernelBench: ``fast_p`` is the fraction of *all* problems that are correct
and faster than p× the reference (a speedup marked unconfirmed counts for fast_0 only);
the geometric-mean speedup is over correct kernels.
"""

from __future__ import annotations

import html
import json
import math
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .evaluate.schema import STATUSES, Result
from .results import ProblemResults, ResultsTree, write_atomic, write_json

FAST_P = (0.0, 1.0, 1.5, 2.0)


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts per status, solved rate, fast_p, geomean speedup, totals."""
    n = len(records)
    counts = Counter(r.get("status") or "unknown" for r in records)
    correct = [r for r in records if r.get("status") == "correct"]
    speedups = [float(r["speedup"]) for r in correct if r.get("speedup")]
    geomean = math.exp(sum(math.log(s) for s in speedups) / len(speedups)) if speedups else None

    def total(key: str) -> float:
        return sum(float(r.get(key) or 0) for r in records)

    return {
        "problems": n,
        "counts": {s: counts.get(s, 0) for s in STATUSES}
        | {k: v for k, v in counts.items() if k not in STATUSES},
        "outcomes": dict(Counter(outcome_of(r) for r in records)),
        "solved": len(correct),
        "solved_rate": len(correct) / n if n else 0.0,
        # An unconfirmed speedup (the profiler's device time does not show it) counts as
        # correct, never as faster than anything.
        "fast_p": {
            f"fast_{p:g}": (
                sum(
                    1
                    for r in correct
                    if (r.get("speedup") or 0) > p and (p == 0 or r.get("confirmed") is not False)
                )
                / n
                if n
                else 0.0
            )
            for p in FAST_P
        },
        "geomean_speedup_correct": geomean,
        "build_routes": dict(Counter(r["build_route"] for r in records if r.get("build_route"))),
        "totals": {
            "tokens": int(total("tokens")),
            "cost_usd": round(total("cost_usd"), 6),
            "candidates": int(total("candidates")),
        },
    }


def record_from_best(best: Result) -> dict[str, Any]:
    """A per-problem record (same keys as ``Outcome.summary()``) from best_result.json
    (typed by :class:`~.evaluate.schema.Result`, the schema every writer shares)."""
    t = best.get("timing") or {}
    totals = best.get("totals") or {}
    return {
        "problem": best.get("problem"),
        "status": best.get("status"),
        "category": best.get("category"),
        "message": best.get("message"),
        "speedup": t.get("speedup"),
        "ref_ms": t.get("ref_ms"),
        "new_ms": t.get("new_ms"),
        "compile_speedup": t.get("speedup_vs_compile"),
        "uses_library": best.get("uses_library") or [],
        "flagged": bool((best.get("plausibility") or {}).get("flagged")),
        "attempts_used": best.get("attempts_used"),
        "solved_at_attempt": best.get("solved_at_attempt"),
        "best_attempt": best.get("best_attempt", best.get("attempt")),
        "cv": t.get("cv"),
        "ref_cv": t.get("ref_cv"),
        "speedup_ci": t.get("speedup_ci"),
        "decided": t.get("decided"),
        "confirmed": (t.get("crosscheck") or {}).get("confirmed"),
        "pct_of_peak": (best.get("roofline") or {}).get("pct_of_peak"),
        "bound": (best.get("roofline") or {}).get("bound"),
        "roofline": best.get("roofline"),
        "wall_s": totals.get("wall_s"),
        "candidates": best.get("candidates"),
        "tokens": totals.get("tokens"),
        "cost_usd": totals.get("cost_usd"),
        "backend": best.get("backend"),
        "hardware": best.get("hardware"),
        "model": (best.get("llm") or {}).get("model"),
        "build_route": (best.get("build_route") or {}).get("route"),
    }


def what_ran(records: list[dict[str, Any]]) -> dict[str, str]:
    """Backend, device, torch and model of the records (for the report's environment
    table): every distinct value, so a merged or mixed tree says so."""

    def values(get: Any) -> str:
        seen = sorted({str(v) for r in records if (v := get(r))})
        return ", ".join(seen) or "-"

    def hw(key: str) -> Any:
        return lambda r: (r.get("hardware") or {}).get(key)

    return {
        "Benchmark backend": values(lambda r: r.get("backend")),
        "Device": values(lambda r: hw("gpu")(r) or hw("cpu")(r)),
        "Torch": values(hw("torch")),
        "LLM model": values(lambda r: r.get("model")),  # "replay" for recorded answers
    }


def records_from_tree(root: Path) -> list[dict[str, Any]]:
    """Records of every finished problem in a results tree, and of every damaged one
    (status ``damaged``: its best_result.json exists but cannot be read) — never dropped."""
    records = []
    for store in ResultsTree(root).problems():
        best = store.best()
        if isinstance(best, dict):
            rec = record_from_best(best)
            rec["problem"] = rec["problem"] or store.key
            if "best_attempt" not in best and rec["status"] == "correct":
                # Older trees recorded the best kernel's attempt as "solved at".
                found = [
                    c.get("attempt") for c in store.candidates() if c.get("status") == "correct"
                ]
                rec["solved_at_attempt"] = min((a for a in found if a), default=None)
            records.append(rec)
        elif store.damaged():
            records.append(damaged_record(store.key))
    return records


def damaged_record(key: str) -> dict[str, Any]:
    """The record of a problem whose best_result.json is unreadable."""
    return {
        **record_from_best({}),
        "problem": key,
        "status": "damaged",
        "category": "damaged",
        "message": f"{key}/best_result.json cannot be read (truncated or not a JSON object)",
    }


#: How a problem ended, for people: a correct kernel is faster, slower, not decided (its
#: speedup's confidence interval holds 1x) or unconfirmed (the profiler's device time does
#: not show its speedup); otherwise its status.
OUTCOMES = ("faster", "unconfirmed", "not decided", "slower")


def outcome_of(rec: dict[str, Any]) -> str:
    """``faster`` / ``slower`` / ``not decided`` for a correct kernel, else its status."""
    status = rec.get("status") or "unknown"
    if status != "correct":
        return status
    if rec.get("confirmed") is False:
        return "unconfirmed"  # the profiler's device time does not show this speedup
    if rec.get("decided") is False:
        return "not decided"
    return "faster" if (rec.get("speedup") or 0) >= 1 else "slower"


def fast_p_text(summary: dict[str, Any]) -> str:
    """``fast_0=1.00  fast_1=0.33 …`` of a summary."""
    return "  ".join(f"{k}={v:.2f}" for k, v in summary["fast_p"].items())


def solved_line(summary: dict[str, Any]) -> str:
    """The one-line verdict under a table: solved count and fast_p."""
    return f"solved {summary['solved']}/{summary['problems']}  {fast_p_text(summary)}"


def _fmt(value: Any, spec: str) -> str:
    return format(value, spec) if isinstance(value, (int, float)) else "-"


def table_lines(records: list[dict[str, Any]]) -> list[str]:
    """A fixed-width table of problems (terminal summary and detailed_report.txt)."""
    width = max([len(r.get("problem") or "") for r in records] + [7])
    head = (
        f"{'problem':<{width}}  {'outcome':<13} {'speedup':>8} {'95% CI':>11} "
        f"{'ref ms':>9} {'new ms':>9} {'%peak':>6} {'att':>3}"
    )
    lines = [head, "-" * len(head)]
    for r in sorted(records, key=lambda r: r.get("problem") or ""):
        mark = "*" if r.get("confirmed") is False else ""
        lines.append(
            f"{r.get('problem') or '?':<{width}}  {outcome_of(r):<13} "
            f"{_fmt(r.get('speedup'), '.2f') + mark:>8} {ci_text(r.get('speedup_ci')):>11} "
            f"{_fmt(r.get('ref_ms'), '9.4f'):>9} {_fmt(r.get('new_ms'), '9.4f'):>9} "
            f"{_fmt(r.get('pct_of_peak'), '6.0f'):>6} {_fmt(r.get('attempts_used'), 'd'):>3}"
        )
    if any(r.get("confirmed") is False for r in records):
        lines.append("* unconfirmed: the profiler's device time does not show this speedup")
    return lines


def write_reports(
    root: Path, records: list[dict[str, Any]], run: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Write summary.json, detailed_report.txt and detailed_report.json at ``root``;
    ``run`` is the tree's run metadata (:func:`runinfo.from_tree`), kept in summary.json."""
    summary = summarize(records)
    write_json(root / "summary.json", summary | {"run": run or {}})
    detailed = []
    tree = ResultsTree(root)
    for r in sorted(records, key=lambda r: r.get("problem") or ""):
        attempts = tree.problem(r["problem"]).candidates() if r.get("problem") else []
        detailed.append(
            r
            | {
                "candidates_detail": [
                    {
                        k: c.get(k)
                        for k in ("index", "attempt", "sample", "status", "category", "message")
                    }
                    | {"speedup": (c.get("timing") or {}).get("speedup")}
                    for c in attempts
                ]
            }
        )
    write_json(root / "detailed_report.json", {"summary": summary, "problems": detailed})
    gm = summary["geomean_speedup_correct"]
    text = [
        f"pytest-hipkittens report: {summary['problems']} problem(s), "
        f"{summary['solved']} correct ({summary['solved_rate']:.0%})",
        "fast_p: " + fast_p_text(summary),
        f"geomean speedup (correct): {gm:.3f}" if gm else "geomean speedup (correct): -",
        "",
        *table_lines(records),
        "",
    ]
    write_atomic(root / "detailed_report.txt", "\n".join(text))
    return summary


# -- pytest-html -------------------------------------------------------------------------


class HtmlHooks:
    """pytest-html columns, extras and summary plots (controller side only).

    Registered only when pytest-html is active. ``records`` returns the per-problem
    records collected so far (from the reports, so xdist workers' items are included).
    """

    COLUMNS = (
        ("hkstatus", "Outcome", outcome_of),
        ("hkattempts", "Attempts", lambda r: _fmt(r.get("attempts_used"), "d")),
        ("hkspeedup", "Speedup", lambda r: _fmt(r.get("speedup"), ".2f")),
        ("hkci", "95% CI", lambda r: ci_text(r.get("speedup_ci"))),
        ("hkcv", "CV", lambda r: _fmt(r.get("cv"), ".0%")),
        ("hkrefms", "Ref ms", lambda r: _fmt(r.get("ref_ms"), ".4f")),
        ("hknewms", "New ms", lambda r: _fmt(r.get("new_ms"), ".4f")),
        ("hkpeak", "% of peak", lambda r: _fmt(r.get("pct_of_peak"), ".1f")),
        ("hkcompile", "vs compile", lambda r: _fmt(r.get("compile_speedup"), ".2f")),
        ("hklibrary", "Library", lambda r: ", ".join(r.get("uses_library") or [])),
        ("hktokens", "Tokens", lambda r: _fmt(r.get("tokens"), "d")),
        ("hkcost", "Cost $", lambda r: _fmt(r.get("cost_usd"), ".4f")),
    )
    #: what a column means, as the header's tooltip
    TIPS = {
        "hkci": "95% bootstrap interval of the speedup (the run's own timing noise)",
        "hkcv": "per-trial coefficient of variation of the kernel's time (single calls; the "
        "median over all trials is far steadier: see the interval)",
        "hkpeak": "achieved rate over the roof at this problem's arithmetic intensity",
    }
    #: pytest-html's placeholder for a row without captured output (every benchmark row).
    NO_LOG = "No log output captured."

    def __init__(
        self,
        records: Callable[[], list[dict[str, Any]]],
        meta: Callable[[], dict[str, Any]] | None = None,
        rebuilt: bool = False,
    ) -> None:
        self.records = records
        self.meta = meta or dict
        #: the report is rebuilt from a tree (hk-report): pytest-html's own "took" line
        #: times the rebuild, so the problems' recorded time is said next to it
        self.rebuilt = rebuilt

    def pytest_html_results_table_header(self, cells: list[str]) -> None:
        """The problem id instead of the test's node id; the benchmark's columns after it."""
        if len(cells) > 1:
            cells[1] = '<th class="sortable" data-column-type="testId">Problem</th>'
        for i, (key, title, _) in enumerate(self.COLUMNS):
            tip = f' title="{html.escape(self.TIPS[key])}"' if key in self.TIPS else ""
            cells.insert(2 + i, f'<th class="sortable" data-column-type="{key}"{tip}>{title}</th>')

    def pytest_html_results_table_row(self, report: Any, cells: list[str]) -> None:
        """Fill the columns from the per-item record carried on the report."""
        rec = getattr(report, "hk", None) or {}
        if rec.get("problem") and len(cells) > 1:
            # The file and function are the same on every row: the problem says it all.
            title = html.escape(report.nodeid, quote=True)
            cells[1] = f'<td class="col-testId" title="{title}">{html.escape(rec["problem"])}</td>'
        for i, (key, _, get) in enumerate(self.COLUMNS):
            value = get(rec) if rec else ""
            if value == "-":
                value = ""
            flag = ""
            if key == "hkspeedup" and rec.get("flagged"):
                flag = ' title="implausible: re-verified"'
            elif key == "hkspeedup" and rec.get("confirmed") is False:
                flag = ' title="unconfirmed: the profiler\'s device time does not show it"'
            cells.insert(2 + i, f'<td class="col-{key}"{flag}>{html.escape(str(value or ""))}</td>')

    def pytest_html_results_table_html(self, report: Any, data: list[str]) -> None:
        """No empty "No log output captured." box under every row: the extras say it all."""
        if getattr(report, "hk", None) and data == [self.NO_LOG]:
            data.clear()

    def pytest_html_report_title(self, report: Any) -> None:
        report.title = "Kernel benchmark (pytest-hipkittens)"

    def pytest_html_results_summary(self, prefix: list[str], summary: Any, postfix: Any) -> None:
        """What ran and where, headline numbers and plots, above the table."""
        records = self.records()
        if records:
            from .plots import summary_html

            prefix.append(summary_html(records, self.meta()))
            if self.rebuilt:
                took = sum(float(r.get("wall_s") or 0) for r in records)
                postfix.append(
                    "<p>Rebuilt from the results tree: “… took …” above is the time of the "
                    f"rebuild; the problems took {took / 60:.1f} min when they ran (the "
                    "Duration column is the recorded one).</p>"
                )


def ci_text(ci: Any) -> str:
    """``0.93–1.08`` for a speedup's confidence interval, ``-`` without one."""
    if (
        isinstance(ci, (list, tuple))
        and len(ci) == 2
        and all(isinstance(v, (int, float)) for v in ci)
    ):
        return f"{ci[0]:.2f}–{ci[1]:.2f}"
    return "-"


def _table(head: list[str], rows: list[list[Any]]) -> str:
    cell = "padding:2px 8px;border-bottom:1px solid #ddd;text-align:left;font-family:monospace"
    out = ['<table style="border-collapse:collapse;margin:4px 0">', "<tr>"]
    out += [f'<th style="{cell}">{html.escape(h)}</th>' for h in head]
    out.append("</tr>")
    for row in rows:
        out.append(
            "<tr>"
            + "".join(f'<td style="{cell}">{html.escape(str(v))}</td>' for v in row)
            + "</tr>"
        )
    out.append("</table>")
    return "".join(out)


def attempts_table(candidates: list[dict[str, Any]]) -> str:
    """The reflection history: every result_N.json of a problem, its status and what went wrong."""
    rows = []
    for c in candidates:
        sp = (c.get("timing") or {}).get("speedup")
        rows.append(
            [
                c.get("index", ""),
                c.get("attempt", ""),
                c.get("sample", ""),
                c.get("status") or "",
                c.get("category") or "",
                _fmt(sp, ".2f"),
                (c.get("message") or "")[:200],
            ]
        )
    return _table(["#", "attempt", "sample", "status", "category", "speedup", "message"], rows)


def profile_html(profile: dict[str, Any]) -> str:
    """Kernel table and findings of a profiled kernel."""
    rows = [
        [
            (k.get("name") or "")[:90],
            _fmt(k.get("ms"), ".4f"),
            _fmt(k.get("share"), ".0%"),
            "PyTorch/vendor" if k.get("builtin") else "candidate",
        ]
        for k in (profile.get("kernels") or [])[:15]
    ]
    tool = html.escape(str(profile.get("tool") or "profiler"))
    findings = "".join(f"<li>{html.escape(f)}</li>" for f in profile.get("findings") or [])
    return (
        f"<p><b>{tool}</b></p>"
        + _table(["kernel / op", "ms per run", "share", "whose"], rows)
        + (f"<ul>{findings}</ul>" if findings else "")
    )


def item_extras(
    store: ProblemResults, best: dict[str, Any], code: str | None
) -> list[dict[str, Any]]:
    """pytest-html extras for one problem, from its results tree (live run or hk-report).

    Best code, the attempts' history, the profiler's kernel table and findings, the
    prompts sent (one per attempt), the best result's JSON and its log.
    """
    try:
        from pytest_html import extras
    except ImportError:
        return []
    out = []
    if code:
        out.append(extras.text(code, name="best code"))
    candidates = store.candidates()
    if candidates:
        out.append(extras.html(attempts_table(candidates)))
    if best.get("profile"):
        out.append(extras.html(profile_html(best["profile"])))
    seen: set[int] = set()
    for c in candidates:
        attempt, index = c.get("attempt"), c.get("index")
        if attempt in seen or index is None:
            continue
        seen.add(attempt)
        prompt = store.dir / f"prompt_{index}.txt"
        if prompt.is_file():
            out.append(
                extras.text(prompt.read_text(encoding="utf-8"), name=f"prompt, attempt {attempt}")
            )
    slim = {k: v for k, v in best.items() if k != "log"}
    out.append(extras.json(slim, name="best result"))
    if best.get("log"):
        out.append(extras.text(best["log"], name="log"))
    return out


def plain(obj: Any) -> Any:
    """``obj`` as plain JSON types (str subclasses, paths, … become str) for xdist transport."""
    return json.loads(json.dumps(obj, default=str))
