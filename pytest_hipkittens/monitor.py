"""What a results tree says about a running batch (``hk-monitor``, the seed's monitor.sh).

Works from files alone, so it can watch a run in another process, on another host (a
shared filesystem) or under xdist: finished problems have ``best_result.json``; a problem
with candidate files but no best is in flight, and its newest file says what it is doing;
the run manifest (``hk_run.json``, written by the plugin when the run starts) gives the
problems selected, hence what is pending and an ETA from the observed throughput.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .results import ResultsTree, read_json

MANIFEST = "hk_run.json"
_INDEX = re.compile(r"^(prompt|response|code|result)_(\d+)\.(txt|py|json)$")


@dataclass
class Snapshot:
    """Counts and rates of one look at a tree."""

    finished: Counter = field(default_factory=Counter)
    in_flight: list[dict[str, Any]] = field(default_factory=list)
    #: problems finished in the tree outside this run's selection (earlier runs)
    elsewhere: int = 0
    total: int | None = None
    started: float | None = None
    finished_times: list[float] = field(default_factory=list)
    now: float = field(default_factory=time.time)
    #: what the run is (its metadata, from hk_run.json; empty for older trees)
    run: dict[str, Any] = field(default_factory=dict)

    @property
    def done(self) -> int:
        return sum(self.finished.values())

    @property
    def pending(self) -> int | None:
        if self.total is None:
            return None
        return max(0, self.total - self.done - len(self.in_flight))

    def rate_per_hour(self) -> float | None:
        """Problems this run finished per hour, from its start (or first finish) to now —
        or to its last finish once nothing is left, so a finished run's rate stays put."""
        times = [t for t in self.finished_times if self.started is None or t >= self.started]
        if not times:
            return None
        start = self.started or min(times)
        end = max(times) if not self.in_flight and self.pending == 0 else self.now
        span = max(end - start, 1.0)
        return len(times) / span * 3600

    def eta_seconds(self) -> float | None:
        rate = self.rate_per_hour()
        if rate is None or rate <= 0 or self.total is None:
            return None
        return (self.total - self.done) / rate * 3600


def _activity(folder: Path) -> dict[str, Any]:
    """Stage of an unfinished problem from its newest numbered file."""
    files = [(p.stat().st_mtime, p) for p in folder.iterdir() if _INDEX.match(p.name)]
    if not files:
        return {"stage": "starting", "candidates": 0, "last": folder.stat().st_mtime}
    last_time, last = max(files)
    kind, index = _INDEX.match(last.name).group(1, 2)  # type: ignore[union-attr]
    results = sum(1 for _, p in files if p.name.startswith("result_"))
    if kind == "result":
        res = read_json(last) or {}
        stage = f"candidate {index}: {res.get('category') or res.get('status') or '?'}"
    else:
        stage = f"candidate {index}: evaluating"
    return {"stage": stage, "candidates": results, "last": last_time}


def snapshot(root: Path) -> Snapshot:
    """Read the tree once."""
    snap = Snapshot()
    manifest = read_json(root / MANIFEST)
    selected: set[str] | None = None
    if isinstance(manifest, dict):
        selected = set(manifest.get("problems") or [])
        snap.total = len(selected) or None
        snap.started = manifest.get("started")
        snap.run = manifest.get("run") if isinstance(manifest.get("run"), dict) else {}
    for store in ResultsTree(root).problems():
        best_path = store.dir / "best_result.json"
        best = read_json(best_path)
        finished = isinstance(best, dict) or store.damaged()
        if selected is not None and store.key not in selected:
            snap.elsewhere += int(finished)
            continue
        if isinstance(best, dict):
            snap.finished[best.get("status") or "unknown"] += 1
            snap.finished_times.append(best_path.stat().st_mtime)
        elif finished:
            snap.finished["damaged"] += 1  # unreadable best_result.json: not running
        elif store.dir.is_dir():
            snap.in_flight.append({"problem": store.key, **_activity(store.dir)})
    return snap


def is_results_tree(root: Path) -> bool:
    """A run's manifest or a ``level*/`` problem folder is there."""
    return (root / MANIFEST).is_file() or any(p.is_dir() for p in root.glob("level*"))


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    return (
        f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
        if seconds >= 3600
        else f"{seconds // 60}m{seconds % 60:02d}s"
    )


def what_ran(meta: dict[str, Any]) -> str:
    """One line: label, model, backend and device, torch — what this monitor is watching."""
    from .runinfo import get

    parts = [
        get(meta, "label"),
        get(meta, "llm.model"),
        f"{get(meta, 'backend')} on {get(meta, 'device.name')}" if get(meta, "backend") else None,
        f"torch {get(meta, 'software.torch')}" if get(meta, "software.torch") else None,
    ]
    return " · ".join(str(p) for p in parts if p) or "unknown (a tree from an older version)"


def lines(snap: Snapshot) -> list[str]:
    """Plain-text view (``--once``, logs)."""
    total = snap.total if snap.total is not None else "?"
    rate = snap.rate_per_hour()
    out = [
        f"run: {what_ran(snap.run)}",
        f"finished {snap.done}/{total}  in flight {len(snap.in_flight)}  "
        f"pending {snap.pending if snap.pending is not None else '?'}",
        "status: "
        + (", ".join(f"{k} {v}" for k, v in sorted(snap.finished.items())) or "-")
        + (f"  (and {snap.elsewhere} finished by earlier runs)" if snap.elsewhere else ""),
        f"throughput: {rate:.1f} problems/h  ETA {_duration(snap.eta_seconds())}"
        if rate
        else "throughput: - (nothing finished yet)",
    ]
    for item in sorted(snap.in_flight, key=lambda i: i["problem"]):
        age = _duration(snap.now - item["last"])
        out.append(
            f"  running {item['problem']}: {item['stage']} ({item['candidates']} evaluated, last file {age} ago)"
        )
    return out


def table(snap: Snapshot) -> Any:
    """rich renderable for the live view."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    head = lines(snap)[:4]
    t = Table(title="in flight", expand=False)
    for col in ("problem", "stage", "evaluated", "last file"):
        t.add_column(col)
    for item in sorted(snap.in_flight, key=lambda i: i["problem"]):
        t.add_row(
            item["problem"],
            item["stage"],
            str(item["candidates"]),
            _duration(snap.now - item["last"]) + " ago",
        )
    return Group(*(Text(h) for h in head), t)
