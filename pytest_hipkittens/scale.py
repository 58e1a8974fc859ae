"""Scale out: one xdist worker per device on a host, deterministic shards across hosts.

Plain functions, no pytest: the plugin calls them from its xdist hooks. A worker is pinned
to one GPU by the visible-devices variable of its backend, which every evaluation
subprocess inherits, so two workers never time on the same GPU; on the cpu backend the
workers split the cores (CPU affinity + thread count) instead.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

from .problems import Problem


class ScaleError(ValueError):
    """A sharding or worker layout that cannot work (one-line message)."""


def parse_shard(text: str) -> tuple[int, int]:
    """``I/N`` with 1 <= I <= N."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not m:
        raise ScaleError(f"--hk-shard {text!r}: expected I/N, e.g. 1/4")
    i, n = int(m.group(1)), int(m.group(2))
    if n < 1 or not 1 <= i <= n:
        raise ScaleError(f"--hk-shard {text!r}: I must be between 1 and N")
    return i, n


def shard(problems: Sequence[Problem], index: int, count: int) -> list[Problem]:
    """Shard ``index`` of ``count`` (1-based): round-robin over the problems sorted by key.

    Deterministic on every host (it depends only on the selected problem set, not on
    collection order), every problem lands in exactly one shard, and shard sizes differ by
    at most one.
    """
    ordered = sorted(problems, key=lambda p: (p.level, p.id, p.name))
    return [p for pos, p in enumerate(ordered) if pos % count == index - 1]


def visible_devices(var: str | None, count: int, env: dict[str, str] | None = None) -> list[str]:
    """Device ids this process may hand out: the visible-devices list, else 0..count-1."""
    env = os.environ if env is None else env
    raw = env.get(var or "", "")
    if raw.strip():
        return [d.strip() for d in raw.split(",") if d.strip()][: count or None]
    return [str(i) for i in range(count)]


def worker_number(workerid: str) -> int:
    """``gw3`` -> 3."""
    m = re.fullmatch(r"gw(\d+)", workerid)
    if not m:
        raise ScaleError(f"unexpected xdist worker id {workerid!r}")
    return int(m.group(1))


def device_for(workerid: str, workers: int, devices: Sequence[str]) -> str:
    """The one device a worker owns; more workers than devices would share a GPU: refused."""
    if workers > len(devices):
        raise ScaleError(
            f"{workers} xdist workers but {len(devices)} visible GPU(s): two workers would time "
            f"on the same GPU; use -n {len(devices)} or -n auto"
        )
    return devices[worker_number(workerid)]


def cpu_slice(workerid: str, workers: int, cores: Sequence[int] | None = None) -> list[int]:
    """The cores a cpu-backend worker owns: the process's cores split into ``workers`` parts."""
    cores = sorted(os.sched_getaffinity(0)) if cores is None else sorted(cores)
    if workers > len(cores):
        raise ScaleError(
            f"{workers} xdist workers but {len(cores)} CPU core(s) for the cpu backend"
        )
    k = worker_number(workerid)
    size, extra = divmod(len(cores), workers)
    start = k * size + min(k, extra)
    return list(cores[start : start + size + (1 if k < extra else 0)])


def auto_workers(backend_name: str, device_count: int, cores: int) -> int:
    """``-n auto``: one worker per GPU; on the cpu backend one per two cores."""
    if backend_name in ("cuda", "hip"):
        return max(1, device_count)
    return max(1, cores // 2)
