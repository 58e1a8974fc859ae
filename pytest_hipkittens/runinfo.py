"""What a run was: model, prompts, backend, card, software, settings — its metadata.

A speedup means little without the card, the torch build and the trial counts behind it,
and two runs can only be compared (``hk-report --compare``) when both say what they were.
The metadata is collected once in the controller when the run really starts (no torch
import: versions come from torch's version file, the card from ``nvidia-smi`` or
``rocm-smi``), written into ``hk_run.json`` and the run's ``runs/<start>.json``, and
merged over every run of a tree into ``summary.json`` (a field the runs disagree on reads
``mixed: a | b``). The gateway's key never appears; its URL is reduced to the host.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from . import __version__

#: Settings that change what a speedup means; runs that differ in them are not comparable.
COMPARABILITY = ("device", "backend", "precision", "timing_trials", "correctness_trials")

UNKNOWN = "unknown"


def _lines(cmd: list[str], timeout: float = 10.0) -> list[str]:
    """A tool's non-empty output lines; empty when it is missing or fails."""
    if shutil.which(cmd[0]) is None:
        return []
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError):
        return []
    if out.returncode != 0:
        return []
    return [ln.strip() for ln in out.stdout.splitlines() if ln.strip()]


def _run(cmd: list[str]) -> str | None:
    """First line of a tool's output, or None."""
    lines = _lines(cmd)
    return lines[0] if lines else None


def cpu_model() -> str:
    """The CPU's marketing name (``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or UNKNOWN


def device_info(backend: str) -> dict[str, Any]:
    """The card (name, driver, how many) or the CPU (model, cores) the run measures on."""
    if backend == "cuda":
        # One line per GPU: the first names the card, their number is the count.
        gpus = _lines(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"])
        if gpus:
            name, _, driver = (p.strip() for p in gpus[0].partition(","))
            return {"name": name, "driver": driver, "count": len(gpus)}
    if backend == "hip":
        name = _run(["rocm-smi", "--showproductname", "--csv"])
        driver = _run(["rocm-smi", "--showdriverversion", "--csv"])
        if name:
            return {"name": name, "driver": driver, "count": None}
    if backend == "cpu":
        return {"name": cpu_model(), "driver": None, "count": len(os.sched_getaffinity(0))}
    return {"name": UNKNOWN, "driver": None, "count": None}


def compiler_version(backend: str) -> str | None:
    """The kernel compiler's version line (nvcc, hipcc, or the host C++ compiler)."""
    if backend == "cuda":
        lines = _lines(["nvcc", "--version"])
        return next((ln for ln in lines if "release" in ln), lines[-1] if lines else None)
    if backend == "hip":
        return _run(["hipcc", "--version"])
    return _run([os.environ.get("CXX") or "c++", "--version"])


def git_revision() -> str | None:
    """The harness's git revision when it runs from a checkout (``-dirty`` if modified)."""
    here = Path(__file__).resolve().parent.parent
    if not (here / ".git").exists():
        return None
    rev = _run(["git", "-C", str(here), "rev-parse", "--short=12", "HEAD"])
    if rev is None:
        return None
    dirty = _lines(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"])
    return rev + ("-dirty" if dirty else "")


def prompts_hash(prompts_dir: Path, prompt_file: Path | None = None) -> str:
    """sha256 (first 16 hex) over the prompt set's files, so an edited prompt is a new set."""
    h = hashlib.sha256()
    files = sorted(p for p in prompts_dir.rglob("*") if p.is_file()) if prompts_dir.is_dir() else []
    if prompt_file is not None:
        files.append(prompt_file)
    for path in files:
        h.update(
            str(
                path.relative_to(prompts_dir) if path.is_relative_to(prompts_dir) else path.name
            ).encode()
        )
        h.update(b"\0")
        try:
            h.update(path.read_bytes())
        except OSError:
            continue
    return h.hexdigest()[:16]


def collect(settings: Any, backend: str, prompt_set: str, arch: str = "") -> dict[str, Any]:
    """This run's metadata (``settings`` is :class:`~pytest_hipkittens.session.Settings`)."""
    from .backends.probe import torch_build

    torch = torch_build() or {}
    llm = settings.llm
    return {
        "label": settings.run_label,
        "started": time.time(),
        "llm": {
            "mode": llm,
            "model": settings.model if llm == "openai" else "replay",
            "gateway_host": (urlparse(settings.base_url).hostname if settings.base_url else None)
            if llm == "openai"
            else None,
            "responses": str(settings.responses) if llm == "replay" else None,
            "temperature": settings.temperature if llm == "openai" else None,
        },
        "prompts": {
            "dir": str(settings.prompts_dir),
            "set": prompt_set,
            "file": str(settings.prompt_file) if settings.prompt_file else None,
            "sha256": prompts_hash(Path(settings.prompts_dir), settings.prompt_file),
        },
        "backend": backend,
        "arch": arch or None,
        "device": device_info(backend),
        "software": {
            "torch": torch.get("version"),
            "cuda": torch.get("cuda"),
            "hip": torch.get("hip"),
            "python": platform.python_version(),
            "compiler": compiler_version(backend),
            "harness": __version__,
            "git": git_revision(),
        },
        "settings": {
            "samples": settings.samples,
            "attempts": settings.attempts,
            "correctness_trials": settings.correctness_trials,
            "timing_trials": settings.timing_trials,
            "precision": settings.precision,
            "isolation": settings.isolation,
            "seed": settings.seed,
            "max_speedup": settings.max_speedup,
            "allow_torch_ops": settings.allow_torch_ops,
            "forbid_libraries": settings.forbid_libraries,
        },
        "host": platform.node(),
    }


def _flat(meta: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in meta.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _unflat(flat: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in flat.items():
        node = out
        *path, last = key.split(".")
        for part in path:
            node = node.setdefault(part, {})
        node[last] = value
    return out


def merge(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One metadata for a tree built by several runs: a value all runs agree on stays,
    one they disagree on reads ``mixed: a | b``; started is the first, finished the last."""
    runs = [r for r in runs if isinstance(r, dict)]
    if not runs:
        return {}
    flats = [_flat(r) for r in runs]
    keys = sorted({k for f in flats for k in f})
    merged: dict[str, Any] = {}
    for key in keys:
        if key in ("started", "finished"):
            continue
        if key.startswith("totals.") or key == "runs":  # these add up over the runs
            merged[key] = sum(f.get(key) or 0 for f in flats)
            continue
        values = [f.get(key) for f in flats if f.get(key) is not None]
        distinct = list(dict.fromkeys(str(v) for v in values))
        if not distinct:
            merged[key] = None
        elif len(distinct) == 1:
            merged[key] = values[0]
        else:
            merged[key] = "mixed: " + " | ".join(distinct)
    out = _unflat(merged)
    starts = [r["started"] for r in runs if isinstance(r.get("started"), (int, float))]
    ends = [r["finished"] for r in runs if isinstance(r.get("finished"), (int, float))]
    out["started"] = min(starts) if starts else None
    out["finished"] = max(ends) if ends else None
    out["runs"] = sum(r.get("runs") or 1 for r in runs)
    return out


def from_tree(root: Path) -> dict[str, Any]:
    """The merged metadata of every run recorded in a results tree (``runs/*.json``), else
    what its manifest says; empty for trees older than run metadata. Read only."""
    from .results import read_json

    runs = [
        rec["run"]
        for path in sorted((root / "runs").glob("*.json"))
        if isinstance(rec := read_json(path), dict) and isinstance(rec.get("run"), dict)
    ]
    if runs:
        return merge(runs)
    manifest = read_json(root / "hk_run.json")
    if isinstance(manifest, dict) and isinstance(manifest.get("run"), dict):
        return merge([manifest["run"]])
    summary = read_json(root / "summary.json")
    if isinstance(summary, dict) and isinstance(summary.get("run"), dict):
        return summary["run"]
    return {}


def get(meta: dict[str, Any] | None, dotted: str) -> Any:
    """``meta["a"]["b"]`` for ``"a.b"``; None when any part is missing (older trees)."""
    node: Any = meta or {}
    for part in dotted.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def when(epoch: Any) -> str:
    """A UTC timestamp for people, or ``unknown``."""
    if not isinstance(epoch, (int, float)):
        return UNKNOWN
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(epoch))


def describe(meta: dict[str, Any] | None) -> list[tuple[str, str]]:
    """The rows of "what ran, where": label, LLM, prompts, backend, card, software, trials."""

    def v(dotted: str) -> str:
        value = get(meta, dotted)
        return UNKNOWN if value in (None, "") else str(value)

    llm = v("llm.model")
    host = get(meta, "llm.gateway_host")
    if host:
        llm += f" via {host}"
    device = v("device.name")
    if get(meta, "device.driver"):
        device += f" (driver {v('device.driver')})"
    torch = v("software.torch")
    for runtime in ("cuda", "hip"):
        if get(meta, f"software.{runtime}"):
            torch += f", {runtime.upper() if runtime == 'cuda' else 'ROCm/HIP'} {v(f'software.{runtime}')}"
    harness = v("software.harness")
    if get(meta, "software.git"):
        harness += f" ({v('software.git')})"
    runs = get(meta, "runs")
    rows = [
        ("Label", str(get(meta, "label") or "not set")),
        ("LLM", llm),
        ("Prompts", f"{v('prompts.set')} set, sha256 {v('prompts.sha256')}"),
        ("Backend", f"{v('backend')}" + (f" ({v('arch')})" if get(meta, "arch") else "")),
        ("Device", device),
        ("Torch", torch),
        ("Compiler", v("software.compiler")),
        (
            "Trials",
            f"{v('settings.correctness_trials')} correctness, {v('settings.timing_trials')} timed;"
            f" {v('settings.samples')} samples x {v('settings.attempts')} attempts",
        ),
        ("Precision", v("settings.precision")),
        ("Isolation", v("settings.isolation")),
        ("Harness", harness),
        (
            "When",
            f"{when(get(meta, 'started'))} – {when(get(meta, 'finished'))}"
            + (f" ({runs} runs)" if isinstance(runs, int) and runs > 1 else ""),
        ),
    ]
    return rows


def not_comparable(metas: list[dict[str, Any] | None]) -> list[str]:
    """Why runs cannot be compared directly: a setting in ``COMPARABILITY`` that differs."""
    reasons = []
    paths = {
        "device": "device.name",
        "backend": "backend",
        "precision": "settings.precision",
        "timing_trials": "settings.timing_trials",
        "correctness_trials": "settings.correctness_trials",
    }
    for name in COMPARABILITY:
        values = [str(get(m, paths[name])) for m in metas]
        if len(set(values)) > 1:
            reasons.append(f"{name} differs: {' vs '.join(values)}")
    return reasons
