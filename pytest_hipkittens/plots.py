"""Summary plots for the HTML report, as base64 PNGs (the report stays one file).

Four pictures answer the questions a reader of a benchmark run asks first: how fast are
the kernels (speedup per problem, log scale, the 1x line, each speedup's 95% interval),
how did the problems end (faster, slower, not decided apart from the failures), how much
reflection did it take (the first correct attempt next to the best kernel's attempt), and
how close to the hardware the kernels are (the roofline). matplotlib's Agg backend draws
without a display, so CI can make them.
"""

from __future__ import annotations

import base64
import io
from collections import Counter
from typing import Any

from .evaluate.schema import STATUSES

STATUS_COLOURS = {
    "faster": "#2e7d32",
    "not decided": "#9ccc65",
    "unconfirmed": "#fbc02d",
    "slower": "#ef6c00",
    "damaged": "#000000",
    "correct": "#2e7d32",
    "incorrect": "#c62828",
    "compile_error": "#ef6c00",
    "runtime_error": "#ad1457",
    "timeout": "#6a1b9a",
    "gpu_crash": "#4e342e",
    "rejected": "#37474f",
}


def _pyplot() -> Any:
    """pyplot on the Agg backend (no display needed), imported only when a plot is drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def speedup_plot(records: list[dict[str, Any]]) -> str | None:
    """Bar per correct problem, log-scale speedup, the 1x line; None without correct ones."""
    plt = _pyplot()

    rows = sorted(
        (r for r in records if r.get("status") == "correct" and r.get("speedup")),
        key=lambda r: r["speedup"],
    )
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(max(5.0, 0.45 * len(rows) + 2), 3.6))
    values = [float(r["speedup"]) for r in rows]
    colours = ["#2e7d32" if v >= 1 else "#ef6c00" for v in values]
    # Bars grow from 1x (up: faster, down: slower), so 0.99x does not look like nothing.
    ax.bar(range(len(rows)), [v - 1.0 for v in values], bottom=1.0, color=colours)
    ci = [r.get("speedup_ci") for r in rows]
    with_ci = [i for i, c in enumerate(ci) if isinstance(c, (list, tuple)) and len(c) == 2]
    if with_ci:  # the timing noise: each speedup's 95% bootstrap interval
        ax.errorbar(
            with_ci,
            [values[i] for i in with_ci],
            yerr=[
                [max(0.0, values[i] - ci[i][0]) for i in with_ci],
                [max(0.0, ci[i][1] - values[i]) for i in with_ci],
            ],
            fmt="none",
            ecolor="black",
            capsize=3,
            linewidth=1,
        )
        values_span = [c for i in with_ci for c in ci[i]]
    else:
        values_span = []
    ax.set_yscale("log")
    low, high = min(values + values_span + [1.0]), max(values + values_span + [1.0])
    ax.set_ylim(low / 1.6, high * 1.6)
    from matplotlib.ticker import FuncFormatter, LogLocator

    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 1.5, 2.0, 3.0, 5.0, 7.0)))
    ax.yaxis.set_minor_locator(LogLocator(base=10, subs=()))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}x"))
    ax.axhline(1.0, color="black", linewidth=1, linestyle="--")
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([str(r["problem"]).split("/")[-1] for r in rows], rotation=60, ha="right")
    ax.set_ylabel("speedup vs PyTorch (log)")
    ax.set_title("Speedup of the best correct kernel (95% interval; 1x dashed)")
    for i, v in enumerate(values):
        ax.annotate(f"{v:.2f}x", (i, v), ha="center", va="bottom", fontsize=7)
    return _png(fig)


def outcome_plot(records: list[dict[str, Any]]) -> str | None:
    """How the problems ended: faster, not decided, slower, then each failure status."""
    from .report import OUTCOMES, outcome_of

    plt = _pyplot()
    counts = Counter(outcome_of(r) for r in records)
    if not counts:
        return None
    order = list(OUTCOMES) + [s for s in STATUSES if s != "correct"]
    names = [n for n in order if counts.get(n)] + sorted(k for k in counts if k not in order)
    fig, ax = plt.subplots(figsize=(4.5, 3.6))
    bars = ax.barh(
        names, [counts[n] for n in names], color=[STATUS_COLOURS.get(n, "grey") for n in names]
    )
    ax.bar_label(bars, padding=2)
    ax.invert_yaxis()
    ax.set_xlabel("problems")
    ax.set_title("How each problem ended")
    ax.xaxis.get_major_locator().set_params(integer=True)
    return _png(fig)


def attempts_plot(records: list[dict[str, Any]]) -> str | None:
    """Per attempt: problems first solved there, and problems whose best kernel came from it."""
    plt = _pyplot()

    first = Counter(int(r["solved_at_attempt"]) for r in records if r.get("solved_at_attempt"))
    best = Counter(
        int(r["best_attempt"])
        for r in records
        if r.get("status") == "correct" and r.get("best_attempt")
    )
    unsolved = sum(1 for r in records if r.get("status") != "correct")
    if not first and not unsolved:
        return None
    last = max(list(first) + list(best) + [1])
    xs = list(range(1, last + 1))
    fig, ax = plt.subplots(figsize=(4.5, 3.6))
    w = 0.38
    ax.bar(
        [x - w / 2 for x in xs],
        [first.get(x, 0) for x in xs],
        w,
        label="first correct",
        color="#1565c0",
    )
    ax.bar(
        [x + w / 2 for x in xs],
        [best.get(x, 0) for x in xs],
        w,
        label="best kernel",
        color="#90caf9",
    )
    ax.bar([last + 1], [unsolved], 2 * w, color="#9e9e9e", label="not solved")
    ax.set_xticks(xs + [last + 1], [str(x) for x in xs] + ["none"])
    ax.set_xlabel("attempt")
    ax.set_ylabel("problems")
    ax.set_title("Attempt of the first correct and of the best kernel")
    ax.legend(fontsize=7)
    ax.yaxis.get_major_locator().set_params(integer=True)
    return _png(fig)


def roofline_plot(records: list[dict[str, Any]]) -> str | None:
    """Arithmetic intensity against achieved FLOP/s, under the device's memory and compute
    roofs: one hollow point per reference, one filled per candidate, joined by a line."""
    plt = _pyplot()

    import math

    def finite(*values: Any) -> bool:
        return all(isinstance(v, (int, float)) and math.isfinite(v) and v > 0 for v in values)

    rows = [
        r
        for r in records
        if r.get("status") == "correct"
        and (rl := r.get("roofline"))
        and finite(rl.get("intensity"))
        and finite((rl.get("roof") or {}).get("tflops"), (rl.get("roof") or {}).get("gbps"))
        and finite((rl.get("new") or {}).get("gflops"))
    ]
    if rows:  # one roof per picture: the first record's device and precision
        first = rows[0]["roofline"]["roof"]
        rows = [r for r in rows if r["roofline"]["roof"].get("source") == first.get("source")]
    if not rows:
        return None
    roof = rows[0]["roofline"]["roof"]
    peak_gflops, gbps = roof["tflops"] * 1e3, roof["gbps"]
    fig, ax = plt.subplots(figsize=(5.2, 3.8))
    xs = [r["roofline"]["intensity"] for r in rows]
    lo, hi = min(xs + [peak_gflops / gbps]) / 4, max(xs + [peak_gflops / gbps]) * 4
    knee = peak_gflops / gbps
    ax.plot([lo, knee, hi], [lo * gbps, peak_gflops, peak_gflops], color="black", linewidth=1.2)
    ax.annotate(f"{gbps:,.3g} GB/s", (lo * 1.3, lo * gbps * 1.6), fontsize=7, rotation=30)
    ax.annotate(f"{roof['tflops']:.3g} TFLOP/s", (knee * 1.2, peak_gflops * 1.15), fontsize=7)
    for r in rows:
        rl = r["roofline"]
        x = rl["intensity"]
        ref = (rl.get("ref") or {}).get("gflops")
        new = (rl.get("new") or {}).get("gflops")
        if finite(ref, new):
            ax.plot([x, x], [ref, new], color="#bdbdbd", linewidth=0.8, zorder=1)
        if finite(ref):
            ax.scatter([x], [ref], facecolors="none", edgecolors="#616161", s=28, zorder=2)
        if new:
            ax.scatter([x], [new], color="#1565c0", s=28, zorder=3)
            ax.annotate(
                str(r["problem"]).split("/")[-1][:18],
                (x, new),
                fontsize=6,
                xytext=(3, 3),
                textcoords="offset points",
            )
    ax.set_xscale("log")
    ax.set_yscale("log")
    points = [
        v
        for r in rows
        for v in (
            (r["roofline"].get("ref") or {}).get("gflops"),
            (r["roofline"].get("new") or {}).get("gflops"),
        )
        if finite(v)
    ]
    ax.set_ylim(min(points + [lo * gbps]) / 2, max(points + [peak_gflops]) * 2.5)
    ax.set_xlabel("arithmetic intensity (FLOP/byte)")
    ax.set_ylabel("achieved GFLOP/s")
    ax.set_title("Roofline: reference ○, kernel ●")
    skipped = sum(1 for r in records if r.get("status") == "correct") - len(rows)
    note = f"roofs: {roof.get('source', 'unknown')}"
    if skipped > 0:
        note += (
            f"\n{skipped} correct problem(s) without FLOPs (elementwise, copies) are not drawn: "
            "memory-bound, their % of peak bandwidth is in the table"
        )
    fig.text(0.01, -0.02, note, fontsize=7, ha="left", va="top", wrap=True)
    return _png(fig)


def summary_html(records: list[dict[str, Any]], meta: dict[str, Any] | None = None) -> str:
    """The report's first screen: what ran and where, the headline numbers, the plots."""
    import html

    from . import runinfo
    from .report import summarize

    s = summarize(records)
    fp = "  ".join(f"{k} = {v:.2f}" for k, v in s["fast_p"].items())
    gm = s["geomean_speedup_correct"]
    outcomes = ", ".join(f"{v} {k}" for k, v in s["outcomes"].items())
    cell = "padding:1px 10px 1px 0;text-align:left;vertical-align:top"
    about = "".join(
        f'<tr><th style="{cell}">{html.escape(k)}</th><td style="{cell}">{html.escape(v)}</td></tr>'
        for k, v in runinfo.describe(meta)
    )
    parts = [
        '<div class="hk-summary"><h2>Kernel benchmark</h2>',
        f'<table class="hk-run" style="border-collapse:collapse;font-size:13px">{about}</table>',
        f"<p><b>{s['solved']}/{s['problems']}</b> problems correct "
        f"({s['solved_rate']:.0%}): {html.escape(outcomes)}; {html.escape(fp)}; "
        + (f"geomean speedup over correct kernels <b>{gm:.2f}x</b>; " if gm else "")
        + f"tokens {s['totals']['tokens']}, cost ${s['totals']['cost_usd']:.4f}.</p>",
        '<div class="hk-plots" style="display:flex;flex-wrap:wrap;gap:8px;align-items:flex-start">',
    ]
    for name, png in (
        ("speedup per problem", speedup_plot(records)),
        ("outcomes", outcome_plot(records)),
        ("first correct and best attempt", attempts_plot(records)),
        ("roofline", roofline_plot(records)),
    ):
        if png:
            parts.append(
                f'<img alt="{name}" title="{name}" style="height:300px;max-width:100%" '
                f'src="data:image/png;base64,{png}"/>'
            )
    parts.append("</div></div>")
    return "".join(parts)
