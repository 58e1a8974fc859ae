"""Summary plots for the HTML report, as base64 PNGs (the report stays one file).

Three pictures answer the questions a reader of a benchmark run asks first: how fast are
the kernels (speedup per problem, log scale, with the 1x line), how did the problems end
(statuses), and how much reflection did it take (the attempt each problem was solved at).
matplotlib's Agg backend draws without a display, so CI can make them.
"""

from __future__ import annotations

import base64
import io
from collections import Counter
from typing import Any

from .evaluate.schema import STATUSES

STATUS_COLOURS = {
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
    ax.set_yscale("log")
    low, high = min(values + [1.0]), max(values + [1.0])
    ax.set_ylim(low / 1.6, high * 1.6)
    from matplotlib.ticker import FuncFormatter, LogLocator

    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 1.5, 2.0, 3.0, 5.0, 7.0)))
    ax.yaxis.set_minor_locator(LogLocator(base=10, subs=()))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}x"))
    ax.axhline(1.0, color="black", linewidth=1, linestyle="--")
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([str(r["problem"]).split("/")[-1] for r in rows], rotation=60, ha="right")
    ax.set_ylabel("speedup vs PyTorch (log)")
    ax.set_title("Speedup of the best correct kernel per problem (1x dashed)")
    for i, v in enumerate(values):
        ax.annotate(f"{v:.2f}x", (i, v), ha="center", va="bottom", fontsize=7)
    return _png(fig)


def status_plot(records: list[dict[str, Any]]) -> str | None:
    """How the problems ended: one bar per status present."""
    plt = _pyplot()

    counts = Counter(r.get("status") or "unknown" for r in records)
    if not counts:
        return None
    names = [s for s in STATUSES if counts.get(s)] + sorted(k for k in counts if k not in STATUSES)
    fig, ax = plt.subplots(figsize=(4.5, 3.6))
    ax.barh(names, [counts[n] for n in names], color=[STATUS_COLOURS.get(n, "grey") for n in names])
    ax.invert_yaxis()
    ax.set_xlabel("problems")
    ax.set_title("Best result per problem")
    ax.xaxis.get_major_locator().set_params(integer=True)
    return _png(fig)


def attempts_plot(records: list[dict[str, Any]]) -> str | None:
    """The attempt at which each problem was solved (1 = no reflection needed)."""
    plt = _pyplot()

    solved = Counter(int(r["solved_at_attempt"]) for r in records if r.get("solved_at_attempt"))
    unsolved = sum(1 for r in records if r.get("status") != "correct")
    if not solved and not unsolved:
        return None
    last = max(list(solved) + [1])
    labels = [str(a) for a in range(1, last + 1)] + ["not solved"]
    values = [solved.get(a, 0) for a in range(1, last + 1)] + [unsolved]
    fig, ax = plt.subplots(figsize=(4.5, 3.6))
    ax.bar(labels, values, color=["#1565c0"] * last + ["#9e9e9e"])
    ax.set_xlabel("attempt")
    ax.set_ylabel("problems")
    ax.set_title("Attempt at which each problem was solved")
    ax.yaxis.get_major_locator().set_params(integer=True)
    return _png(fig)


def summary_html(records: list[dict[str, Any]]) -> str:
    """The report's summary block: headline numbers and the three plots."""
    import html

    from .report import summarize

    s = summarize(records)
    fp = "  ".join(f"{k} = {v:.2f}" for k, v in s["fast_p"].items())
    gm = s["geomean_speedup_correct"]
    parts = [
        '<div class="hk-summary"><h2>Kernel benchmark</h2>',
        f"<p><b>{s['solved']}/{s['problems']}</b> problems correct "
        f"({s['solved_rate']:.0%}); {html.escape(fp)}; geomean speedup over correct kernels "
        f"<b>{gm:.2f}x</b>; tokens {s['totals']['tokens']}, cost "
        f"${s['totals']['cost_usd']:.4f}.</p>"
        if gm
        else f"<p><b>{s['solved']}/{s['problems']}</b> problems correct; {html.escape(fp)}.</p>",
        '<div class="hk-plots" style="display:flex;flex-wrap:wrap;gap:8px;align-items:flex-start">',
    ]
    for name, png in (
        ("speedup per problem", speedup_plot(records)),
        ("statuses", status_plot(records)),
        ("solved at attempt", attempts_plot(records)),
    ):
        if png:
            parts.append(
                f'<img alt="{name}" title="{name}" style="height:300px;max-width:100%" '
                f'src="data:image/png;base64,{png}"/>'
            )
    parts.append("</div></div>")
    return "".join(parts)
