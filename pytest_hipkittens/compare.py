"""Comparing runs and models (``hk-report --compare``): rows, changes, summaries, a page.

Two results trees — two models, two prompt sets, this week's run and last week's — are
compared problem by problem against the first: newly solved, lost, faster or slower. A
speed change counts only beyond the timing noise the results recorded: both speedups'
95% intervals (``timing.speedup_ci``) combined, or for older results the per-trial
coefficients of variation of reference and kernel (``timing.ref_cv``, ``timing.cv``) in
both runs; never below ``MIN_NOISE``. Per run: solved rate and fast_p (:func:`.report.summarize`, over the run's
own problems), the geometric-mean speedup over the problems *every* run solved (the only
set on which the runs' speedups compare), tokens and cost per solved problem. Runs made on
different cards or with different trial settings are flagged (:func:`.runinfo.not_comparable`).

Only reads the trees: what it writes is the caller's (the terminal, ``--html``).
"""

from __future__ import annotations

import html
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import runinfo
from .report import FAST_P, records_from_tree, summarize
from .results import ResultsTree

#: Smallest relative speed change that counts, whatever the recorded CVs say.
MIN_NOISE = 0.02
#: CV assumed for a timing that recorded none (results from older versions).
UNKNOWN_CV = 0.05

#: Change kinds, from the reader's point of view: good, bad, neither.
GOOD = ("newly solved", "faster")
BAD = ("lost", "slower", "damaged")
#: Kinds always counted in a run's summary (others only when they occur).
MAIN_KINDS = ("newly solved", "lost", "faster", "slower", "same")


class NotATree(ValueError):
    """A path that cannot be read as a results tree (the CLI's one-line error)."""


@dataclass
class Run:
    """One results tree: its name, metadata and per-problem records."""

    name: str
    root: Path
    meta: dict[str, Any]
    records: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class Comparison:
    """Runs, one row per problem of any run, per-run summaries and the warnings."""

    runs: list[Run]
    rows: list[dict[str, Any]]
    summaries: list[dict[str, Any]]
    warnings: list[str]
    common: list[str]

    @property
    def damaged(self) -> list[tuple[str, str]]:
        """(run, problem) of every damaged best_result.json."""
        return [
            (run.name, key)
            for run in self.runs
            for key, rec in run.records.items()
            if rec.get("status") == "damaged"
        ]


def is_results_tree(root: Path) -> bool:
    """A finished (or damaged) problem, a summary or a run manifest is there."""
    return (
        any(root.glob("level*/*/best_result.json"))
        or (root / "summary.json").is_file()
        or (root / "hk_run.json").is_file()
    )


def load_run(root: Path) -> Run:
    """Read one tree; :class:`NotATree` when ``root`` is not one."""
    if not root.is_dir():
        raise NotATree(f"{root} is not a directory")
    if not is_results_tree(root):
        hint = next((p.parents[2] for p in root.glob("*/level*/*/best_result.json")), None)
        raise NotATree(
            f"{root} is not a results tree (no level*/<problem>/best_result.json, "
            "no summary.json or hk_run.json)" + (f"; did you mean {hint}?" if hint else "")
        )
    # The timing's CVs, read from best_result.json itself: records of older versions of
    # report.record_from_best do not carry them.
    noise: dict[str, dict[str, Any]] = {}
    for store in ResultsTree(root).problems():
        best = store.best()
        if isinstance(best, dict):
            timing = best.get("timing") or {}
            noise[best.get("problem") or store.key] = {
                "cv": timing.get("cv"),
                "ref_cv": timing.get("ref_cv"),
            }
    records = {
        rec["problem"]: rec | noise.get(rec["problem"], {"cv": None, "ref_cv": None})
        for rec in records_from_tree(root)
    }
    meta = runinfo.from_tree(root)
    label = meta.get("label")
    name = str(label) if label not in (None, "") else root.resolve().name
    return Run(name=name, root=root, meta=meta, records=records)


def _problem_order(key: str) -> tuple[Any, ...]:
    """level1/2_B before level1/19_ReLU before level2/1_C."""
    m = re.match(r"level(\d+)/(\d+)_", key)
    return (0, int(m.group(1)), int(m.group(2)), key) if m else (1, 0, 0, key)


def _speedup(rec: dict[str, Any] | None) -> float | None:
    """The speedup of a correct record, else None."""
    if not rec or rec.get("status") != "correct":
        return None
    s = rec.get("speedup")
    return float(s) if isinstance(s, (int, float)) and s > 0 and math.isfinite(s) else None


def _log_half_width(rec: dict[str, Any]) -> float | None:
    """Half the width, in log space, of a record's 95% speedup interval (None without one)."""
    ci = rec.get("speedup_ci")
    if (
        isinstance(ci, (list, tuple))
        and len(ci) == 2
        and all(isinstance(v, (int, float)) and v > 0 and math.isfinite(v) for v in ci)
    ):
        return math.log(ci[1] / ci[0]) / 2
    return None


def noise(a: dict[str, Any], b: dict[str, Any]) -> float:
    """Relative noise of the ratio of two speedups, at least MIN_NOISE.

    From both results' 95% bootstrap intervals of the speedup (``timing.speedup_ci``)
    where both have one — the noise of the two medians, combined in log space; else, for
    results of older versions, the four per-trial CVs (reference and kernel, both runs)
    combined, ``UNKNOWN_CV`` for one not recorded (per-trial spread: more cautious)."""
    widths = [_log_half_width(a), _log_half_width(b)]
    if all(w is not None for w in widths):
        return max(MIN_NOISE, math.exp(math.hypot(*widths)) - 1)  # type: ignore[arg-type]
    cvs = [
        float(v) if isinstance(v, (int, float)) and math.isfinite(v) else UNKNOWN_CV
        for rec in (a, b)
        for v in (rec.get("ref_cv"), rec.get("cv"))
    ]
    return max(MIN_NOISE, math.sqrt(sum(cv * cv for cv in cvs)))


def change(first: dict[str, Any] | None, later: dict[str, Any] | None) -> dict[str, Any]:
    """How a problem changed from the first run to a later one: ``kind`` (newly solved,
    lost, faster, slower, same, unsolved, new, missing, damaged), ``ratio`` of speedups,
    ``noise`` and a short ``text``."""
    out: dict[str, Any] = {"kind": "", "ratio": None, "noise": None, "text": ""}
    if later is None:
        return out | {"kind": "missing", "text": "not in this run"}
    if first is None:
        return out | {"kind": "new", "text": "not in the first run"}
    if "damaged" in (first.get("status"), later.get("status")):
        return out | {"kind": "damaged", "text": "damaged result"}
    a_ok, b_ok = first.get("status") == "correct", later.get("status") == "correct"
    if b_ok and not a_ok:
        return out | {"kind": "newly solved", "text": "newly solved"}
    if a_ok and not b_ok:
        return out | {"kind": "lost", "text": f"lost ({later.get('status') or 'unknown'})"}
    if not a_ok:
        return out | {"kind": "unsolved", "text": "unsolved in both"}
    sa, sb = _speedup(first), _speedup(later)
    if sa is None or sb is None:
        return out | {"kind": "same", "text": "correct in both (no speedup)"}
    ratio, n = sb / sa, noise(first, later)
    kind = "faster" if ratio > 1 + n else "slower" if ratio < 1 / (1 + n) else "same"
    band = f"noise band {1 / (1 + n):.2f}-{1 + n:.2f}x"
    text = f"{kind} {ratio:.2f}x" if kind != "same" else f"same ({ratio:.2f}x, {band})"
    return out | {"kind": kind, "ratio": ratio, "noise": n, "text": text}


def _unique_names(runs: list[Run]) -> None:
    """Two runs with one label (or one folder name) get ``#2``, ``#3``: names are keys."""
    seen: Counter[str] = Counter()
    for run in runs:
        seen[run.name] += 1
        if seen[run.name] > 1:
            run.name = f"{run.name}#{seen[run.name]}"


def comparability_warnings(runs: list[Run]) -> list[str]:
    """One line per reason the runs' numbers do not compare directly."""
    out = []
    known = [r for r in runs if r.meta]
    for run in runs:
        if not run.meta:
            out.append(
                f"{run.name}: no run metadata (tree from an older version): its card and "
                "trial settings are unknown, so comparability cannot be checked"
            )
    reasons = runinfo.not_comparable([r.meta for r in known]) if len(known) > 1 else []
    if reasons:
        names = " vs ".join(r.name for r in known)
        out.append(f"not directly comparable ({names}): " + "; ".join(reasons))
    sets = [set(r.records) for r in runs]
    if len({frozenset(s) for s in sets}) > 1:
        every = set.intersection(*sets)
        sizes = ", ".join(f"{r.name} {len(r.records)}" for r in runs)
        out.append(
            f"the runs cover different problems ({sizes}; {len(every)} in every run): "
            "solved rate and fast_p are over each run's own problems"
        )
    return out


def summary_of(run: Run, common: list[str], changes: list[dict[str, Any]] | None) -> dict:
    """A run's headline numbers; ``changes`` are its rows' changes vs the first run."""
    s = summarize(list(run.records.values()))
    speedups = [_speedup(run.records.get(k)) for k in common]
    logs = [math.log(v) for v in speedups if v]
    solved = s["solved"]
    tokens, cost = s["totals"]["tokens"], s["totals"]["cost_usd"]
    return {
        "name": run.name,
        "problems": s["problems"],
        "solved": solved,
        "solved_rate": s["solved_rate"],
        "fast_p": s["fast_p"],
        "damaged": s["counts"].get("damaged", 0),
        "geomean_common": math.exp(sum(logs) / len(logs)) if logs else None,
        "tokens": tokens,
        "cost_usd": cost,
        "tokens_per_solved": tokens / solved if solved else None,
        "cost_per_solved": cost / solved if solved else None,
        "changes": dict(Counter(c["kind"] for c in changes)) if changes is not None else None,
    }


def compare(roots: list[Path]) -> Comparison:
    """Load the trees and compare every later run with the first."""
    runs = [load_run(root) for root in roots]
    _unique_names(runs)
    keys = sorted({k for r in runs for k in r.records}, key=_problem_order)
    rows = []
    for key in keys:
        recs = [r.records.get(key) for r in runs]
        rows.append(
            {
                "problem": key,
                "records": recs,
                "changes": [None] + [change(recs[0], rec) for rec in recs[1:]],
            }
        )
    common = [k for k in keys if all(_speedup(r.records.get(k)) for r in runs)]
    summaries = [
        summary_of(run, common, None if i == 0 else [row["changes"][i] for row in rows])
        for i, run in enumerate(runs)
    ]
    return Comparison(runs, rows, summaries, comparability_warnings(runs), common)


# -- plot data ---------------------------------------------------------------------------


def fast_p_curve(records: list[dict[str, Any]], lo: float, hi: float) -> tuple[list, list]:
    """fast_p over p: the fraction of *all* the run's problems correct and faster than p,
    as a step function (x, y) for ``drawstyle="steps-post"`` from ``lo`` to ``hi``."""
    n = len(records)
    speedups = sorted(s for r in records if (s := _speedup(r)))

    def frac(p: float) -> float:
        return sum(1 for s in speedups if s > p) / n if n else 0.0

    xs = [lo] + [s for s in dict.fromkeys(speedups) if lo < s < hi] + [hi]
    return xs, [frac(x) for x in xs]


def fast_p_curves(cmp: Comparison) -> list[tuple[str, list[float], list[float]]]:
    """One fast_p curve per run, over a common range of p around every speedup and 1..2."""
    speedups = [s for r in cmp.runs for rec in r.records.values() if (s := _speedup(rec))]
    lo = min(speedups + [min(FAST_P[1:])]) / 1.5
    hi = max(speedups + [max(FAST_P)]) * 1.5
    return [(r.name, *fast_p_curve(list(r.records.values()), lo, hi)) for r in cmp.runs]


def scatter_series(cmp: Comparison) -> list[tuple[str, list[tuple[str, float, float]]]]:
    """Per later run: (problem, speedup in the first run, speedup in this one) for every
    problem both solved."""
    out = []
    for i, run in enumerate(cmp.runs[1:], start=1):
        points = []
        for row in cmp.rows:
            a, b = _speedup(row["records"][0]), _speedup(row["records"][i])
            if a and b:
                points.append((row["problem"], a, b))
        out.append((run.name, points))
    return out


# -- text --------------------------------------------------------------------------------


def _num(value: Any, spec: str, none: str = "-") -> str:
    return format(value, spec) if isinstance(value, (int, float)) else none


def cells(rec: dict[str, Any] | None) -> list[str]:
    """status, speedup, solved at, tokens, cost of one run's record ('' when absent)."""
    if rec is None:
        return ["(absent)", "", "", "", ""]
    return [
        str(rec.get("status") or "unknown"),
        _num(rec.get("speedup"), ".2f") + ("x" if isinstance(rec.get("speedup"), float) else ""),
        _num(rec.get("solved_at_attempt"), "d"),
        _num(rec.get("tokens"), "d"),
        _num(rec.get("cost_usd"), ".4f"),
    ]


CELL_HEADS = ("status", "speedup", "solved at", "tokens", "cost $")
CELL_WIDTHS = (13, 8, 9, 8, 8)


def _run_line(run: Run) -> str:
    m = run.meta
    if not m:
        return f"  {run.name}: {run.root}  — no run metadata (older tree)"

    def v(dotted: str) -> str:
        value = runinfo.get(m, dotted)
        return runinfo.UNKNOWN if value in (None, "") else str(value)

    return (
        f"  {run.name}: {run.root}  — model {v('llm.model')}, device {v('device.name')}, "
        f"backend {v('backend')}, {v('settings.timing_trials')} timed trials, "
        f"precision {v('settings.precision')}"
    )


def summary_rows(cmp: Comparison) -> tuple[list[str], list[list[str]]]:
    """Head and rows of the per-run summary (shared by the text and the HTML)."""
    first = cmp.runs[0].name
    head = [
        "run",
        "problems",
        "solved",
        *(f"fast_{p:g}" for p in FAST_P),
        f"geomean ({len(cmp.common)} common)",
        "tokens/solved",
        "$/solved",
        f"vs {first}",
    ]
    rows = []
    for s in cmp.summaries:
        ch = s["changes"]
        versus = (
            ", ".join(
                f"{ch.get(k, 0)} {k}"
                for k in (*MAIN_KINDS, *sorted(k for k in ch if k not in MAIN_KINDS))
            )
            if ch is not None
            else "(first run)"
        )
        rows.append(
            [
                s["name"],
                str(s["problems"]),
                f"{s['solved']} ({s['solved_rate']:.0%})",
                *(f"{v:.2f}" for v in s["fast_p"].values()),
                _num(s["geomean_common"], ".3f") + ("x" if s["geomean_common"] else ""),
                _num(s["tokens_per_solved"], ".0f"),
                _num(s["cost_per_solved"], ".4f"),
                versus,
            ]
        )
    return head, rows


def _columns(head: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(x) for x in col) for col in zip(head, *rows, strict=True)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*head).rstrip(), "-" * (sum(widths) + 2 * (len(widths) - 1))]
    lines += [fmt.format(*row).rstrip() for row in rows]
    return lines


def text_lines(cmp: Comparison) -> list[str]:
    """The terminal's view: runs, warnings, one row per problem, the per-run summary."""
    first = cmp.runs[0].name
    lines = [f"Comparing {len(cmp.runs)} runs (changes are against {first}):"]
    lines += [_run_line(r) for r in cmp.runs]
    lines += [f"WARNING: {w}" for w in cmp.warnings]
    lines.append("")
    width = max([len(r["problem"]) for r in cmp.rows] + [7])
    group = sum(CELL_WIDTHS) + len(CELL_WIDTHS) - 1
    top = f"{'':<{width}}" + "".join(f" | {r.name[:group]:<{group}}" for r in cmp.runs)
    texts = [[row["changes"][i]["text"] for row in cmp.rows] for i in range(1, len(cmp.runs))]
    change_widths = [
        max([len(f"{r.name} vs {first}"), *map(len, col)])
        for r, col in zip(cmp.runs[1:], texts, strict=True)
    ]
    top += "".join(
        f" | {r.name + ' vs ' + first:<{w}}"
        for r, w in zip(cmp.runs[1:], change_widths, strict=True)
    )
    sub = f"{'problem':<{width}}" + (
        " | "
        + " ".join(
            f"{h:<{w}}" if i == 0 else f"{h:>{w}}"
            for i, (h, w) in enumerate(zip(CELL_HEADS, CELL_WIDTHS, strict=True))
        )
    ) * len(cmp.runs)
    sub += "".join(f" | {'change':<{w}}" for w in change_widths)
    lines += [top.rstrip(), sub.rstrip(), "-" * len(sub)]
    for row in cmp.rows:
        line = f"{row['problem']:<{width}}"
        for rec in row["records"]:
            parts = cells(rec)
            line += " | " + " ".join(
                f"{c:<{w}}" if i == 0 else f"{c:>{w}}"
                for i, (c, w) in enumerate(zip(parts, CELL_WIDTHS, strict=True))
            )
        for ch, w in zip(row["changes"][1:], change_widths, strict=True):
            line += f" | {ch['text']:<{w}}"
        lines.append(line.rstrip())
    lines.append("")
    head, rows = summary_rows(cmp)
    lines += _columns(head, rows)
    lines.append(
        f"geomean: over the {len(cmp.common)} problem(s) solved in every run; a speed change "
        f"counts beyond the runs' recorded timing noise (at least {MIN_NOISE:.0%})"
    )
    return lines


# -- HTML --------------------------------------------------------------------------------

#: Styles of the comparison, scoped to ``.hkc`` so they can sit inside pytest-html's page.
CSS = """
.hkc{font-family:system-ui,sans-serif;color:#222}
.hkc h1{font-size:22px;margin:0 0 4px} .hkc h2{font-size:17px;margin:22px 0 6px}
.hkc table{border-collapse:collapse;font-size:13px;width:auto}
.hkc th,.hkc td{padding:3px 8px;border-bottom:1px solid #ddd;text-align:left;
vertical-align:top;white-space:nowrap}
.hkc th{background:#f3f3f3} .hkc td.n{text-align:right;font-variant-numeric:tabular-nums}
.hkc th.run{border-left:2px solid #999;text-align:center} .hkc td.first{border-left:2px solid #999}
.hkc .warn{background:#fff3cd;border:1px solid #e0b000;padding:6px 10px;margin:6px 0;
border-radius:4px}
.hkc .good{background:#e3f4e4} .hkc .bad{background:#fbe3e3} .hkc .differs{background:#fff3cd}
.hkc .correct{color:#2e7d32;font-weight:600} .hkc .status{color:#b23c17}
.hkc .plots{display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start}
.hkc .plots img{max-width:100%;height:380px;border:1px solid #eee}
.hkc .muted{color:#666;font-size:12px} .hkc td.wrap{white-space:normal;min-width:16em}
"""


def _e(value: Any) -> str:
    return html.escape(str(value))


def runs_table(cmp: Comparison) -> str:
    """What ran, side by side; a row whose values differ is highlighted."""
    described = [dict(runinfo.describe(r.meta)) for r in cmp.runs]
    keys = list(described[0])
    out = ["<table><tr><th></th>"]
    out += [f'<th class="run">{_e(r.name)}</th>' for r in cmp.runs]
    out.append("</tr><tr><th>Tree</th>")
    out += [f'<td class="first">{_e(r.root)}</td>' for r in cmp.runs]
    out.append("</tr>")
    for key in keys:
        values = [d.get(key, runinfo.UNKNOWN) for d in described]
        cls = ' class="differs"' if len(set(values)) > 1 else ""
        out.append(f"<tr{cls}><th>{_e(key)}</th>")
        out += [f'<td class="first">{_e(v)}</td>' for v in values]
        out.append("</tr>")
    out.append("</table>")
    return "".join(out)


def _summary_table(cmp: Comparison) -> str:
    head, rows = summary_rows(cmp)
    out = ["<table><tr>", *(f"<th>{_e(h)}</th>" for h in head), "</tr>"]
    for row in rows:
        out.append("<tr>")
        last = len(row) - 1
        out += [
            f"<td{'' if i == 0 else ' class=wrap' if i == last else ' class=n'}>{_e(c)}</td>"
            for i, c in enumerate(row)
        ]
        out.append("</tr>")
    out.append("</table>")
    return "".join(out)


def _problems_table(cmp: Comparison) -> str:
    first = cmp.runs[0].name
    out = ['<table><tr><th rowspan="2">problem</th>']
    out += [f'<th class="run" colspan="{len(CELL_HEADS)}">{_e(r.name)}</th>' for r in cmp.runs]
    out += [f'<th class="run" rowspan="2">{_e(r.name)} vs {_e(first)}</th>' for r in cmp.runs[1:]]
    out.append("</tr><tr>")
    for _ in cmp.runs:
        out += [
            f"<th{' class=run' if i == 0 else ''}>{_e(h)}</th>" for i, h in enumerate(CELL_HEADS)
        ]
    out.append("</tr>")
    for row in cmp.rows:
        out.append(f"<tr><td>{_e(row['problem'])}</td>")
        for rec in row["records"]:
            for i, c in enumerate(cells(rec)):
                cls = ["first"] if i == 0 else ["n"]
                if i == 0 and rec is not None:
                    cls.append("correct" if rec.get("status") == "correct" else "status")
                out.append(f'<td class="{" ".join(cls)}">{_e(c)}</td>')
        for ch in row["changes"][1:]:
            cls = "good" if ch["kind"] in GOOD else "bad" if ch["kind"] in BAD else ""
            out.append(f'<td class="first {cls}">{_e(ch["text"])}</td>')
        out.append("</tr>")
    out.append("</table>")
    return "".join(out)


def summary_html(cmp: Comparison) -> str:
    """What the comparison says before the rows: how to read it, warnings, the per-run
    summary and the two plots (base64 PNGs)."""
    from .compare_plots import fast_p_plot, scatter_plot

    plots = []
    for alt, png, missing in (
        ("fast_p curves", fast_p_plot(fast_p_curves(cmp)), "no run has problems"),
        (
            "speedup scatter",
            scatter_plot(cmp.runs[0].name, scatter_series(cmp)),
            "no problem is solved both in the first run and in a later one",
        ),
    ):
        if png:
            plots.append(f'<img alt="{alt}" title="{alt}" src="data:image/png;base64,{png}"/>')
        else:
            plots.append(f'<p class="muted">{alt}: {missing}.</p>')
    return "".join(
        [
            f'<p class="muted">Changes are against {_e(cmp.runs[0].name)}. A speed change counts '
            "only beyond the timing noise the results recorded (both speedups' 95% intervals; "
            "for results without one, the per-trial CVs of reference and kernel in both runs; "
            f"at least {MIN_NOISE:.0%}). fast_p: fraction of a run's "
            "problems that are correct and faster than p x PyTorch.</p>",
            *(f'<div class="warn">⚠ {_e(w)}</div>' for w in cmp.warnings),
            "<h2>Per run</h2>",
            _summary_table(cmp),
            f'<p class="muted">geomean: speedup over the {len(cmp.common)} problem(s) solved '
            "in every run.</p>",
            '<div class="plots">',
            *plots,
            "</div>",
        ]
    )


def title(cmp: Comparison) -> str:
    return "Run comparison: " + " vs ".join(r.name for r in cmp.runs)


def html_page(cmp: Comparison) -> str:
    """One self-contained page (plots as base64 PNGs) a CI job can publish as it is."""
    return "".join(
        [
            "<!DOCTYPE html><html><head><meta charset='utf-8'>",
            f"<title>{_e(title(cmp))}</title><style>body{{margin:24px}}{CSS}</style></head>",
            f'<body><div class="hkc"><h1>{_e(title(cmp))}</h1>',
            summary_html(cmp),
            "<h2>Problems</h2>",
            _problems_table(cmp),
            "<h2>What ran</h2>",
            runs_table(cmp),
            "</div></body></html>\n",
        ]
    )
