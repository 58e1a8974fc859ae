"""Plots of a run comparison (``hk-report --compare --html``), as base64 PNGs.

Two pictures: fast_p over p (how many problems each run solves at least p times faster than
PyTorch, for every p at once, log axis) and the speedup of each problem in a later run
against the first (log axes, the diagonal is "no change"). Plain data in, see
:mod:`.compare`; drawing reuses the report's Agg pyplot and PNG encoding.
"""

from __future__ import annotations

import math
from typing import Any

from .plots import _png, _pyplot

MARKERS = ("o", "s", "^", "D", "v", "P", "X")


def _log_axis(axis: Any, lo: float, hi: float) -> None:
    """Ticks that read as speedups (0.5x, 1x, 2x) on a log axis; the in-between ones
    (1.5x, 3x, 7x) are labelled only over a narrow range, where they do not collide."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    label = FuncFormatter(lambda v, _pos: f"{v:g}x")
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_minor_locator(LogLocator(base=10, subs=(1.5, 3.0, 7.0)))
    axis.set_major_formatter(label)
    axis.set_minor_formatter(label if hi / lo < 20 else NullFormatter())


def fast_p_plot(curves: list[tuple[str, list[float], list[float]]]) -> str | None:
    """One step line per run: fraction of its problems correct and faster than p."""
    if not curves:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for i, (name, xs, ys) in enumerate(curves):
        ax.plot(xs, ys, drawstyle="steps-post", linewidth=2, label=name, zorder=3 + i)
    ax.set_xscale("log")
    _log_axis(ax.xaxis, curves[0][1][0], curves[0][1][-1])
    ax.axvline(1.0, color="black", linewidth=1, linestyle="--")
    ax.set_ylim(-0.03, 1.05)
    ax.set_xlim(curves[0][1][0], curves[0][1][-1])
    ax.set_xlabel("p: speedup over PyTorch (log)")
    ax.set_ylabel("fast_p: fraction of problems")
    ax.set_title("fast_p: correct and faster than p (1x dashed)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper right", fontsize=9)
    return _png(fig)


def scatter_plot(
    first: str, series: list[tuple[str, list[tuple[str, float, float]]]]
) -> str | None:
    """Speedup per problem, later run (y) vs the first (x), one series per later run; the
    diagonal is no change. Problems are named when there are few. None without points."""
    points = [p for _, pts in series for p in pts]
    if not points:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 4.8))
    values = [v for _, a, b in points for v in (a, b)] + [1.0]
    lo, hi = min(values) / 1.5, max(values) * 1.5
    ax.plot([lo, hi], [lo, hi], color="black", linewidth=1, linestyle="--", label="no change")
    for i, (name, pts) in enumerate(series):
        if not pts:
            continue
        ax.scatter(
            [a for _, a, _ in pts],
            [b for _, _, b in pts],
            marker=MARKERS[i % len(MARKERS)],
            s=36,
            alpha=0.8,
            label=f"{name} ({len(pts)})",
            zorder=3,
        )
        if len(points) <= 12:
            for problem, a, b in pts:
                right = a > math.sqrt(lo * hi)  # label towards the middle, inside the frame
                ax.annotate(
                    problem.split("/")[-1],
                    (a, b),
                    textcoords="offset points",
                    xytext=(-5, 3) if right else (5, 3),
                    ha="right" if right else "left",
                    fontsize=7,
                )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    _log_axis(ax.xaxis, lo, hi)
    _log_axis(ax.yaxis, lo, hi)
    ax.set_xlabel(f"speedup in {first} (log)")
    later = series[0][0] if len(series) == 1 else "the later run"
    ax.set_ylabel(f"speedup in {later} (log)")
    ax.set_title(
        "Speedup per problem solved in both\n(above the diagonal: faster than " + first + ")"
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    return _png(fig)
