"""What the parent process needs to know about torch and the GPUs, without importing torch.

``import torch`` costs 1-2 s on a laptop and 4-5 s on a GPU host (the CUDA libraries it
maps); the parent (pytest, ``hk-eval``) never runs a tensor, and paying that before the
first worker can start doubles a one-candidate evaluation's wall time. So the build's
flavour is read from torch's own ``version.py`` and the devices from ``nvidia-smi``, and
callers fall back to importing torch whenever either answer is missing (None).
"""

from __future__ import annotations

import ast
import importlib.util
import os
import shutil
import subprocess
from pathlib import Path


def torch_build() -> dict[str, str | None] | None:
    """``{"version", "cuda", "hip"}`` of the installed torch (None where it has no such
    runtime), read from ``torch/version.py``; None if that file cannot be read."""
    try:
        spec = importlib.util.find_spec("torch")
    except (ImportError, ValueError):
        return None
    if spec is None or spec.origin is None:
        return None
    try:
        tree = ast.parse((Path(spec.origin).parent / "version.py").read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return None
    found: dict[str, str | None] = {}
    for node in tree.body:
        target = value = None
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign):
            target, value = node.target, node.value
        if isinstance(target, ast.Name) and value is not None:
            try:
                found[target.id] = ast.literal_eval(value)
            except ValueError:
                continue
    if "__version__" not in found or "cuda" not in found:
        return None
    return {"version": found["__version__"], "cuda": found["cuda"], "hip": found.get("hip")}


def nvidia_capabilities(visible: str | None = None) -> list[tuple[int, int]] | None:
    """Compute capability of each GPU CUDA will show this process, in CUDA's order.

    ``visible`` is ``CUDA_VISIBLE_DEVICES`` (indices or ``GPU-…`` UUIDs); None means the
    environment's. None — ask torch — when ``nvidia-smi`` is missing, fails, or the list
    cannot be matched: MIG mode (CUDA then counts instances), or GPUs of different kinds
    (CUDA numbers them fastest first, nvidia-smi by bus, unless
    ``CUDA_DEVICE_ORDER=PCI_BUS_ID``). An empty list when the driver sees no GPU.
    """
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        out = subprocess.run(
            [smi, "--query-gpu=index,uuid,compute_cap,mig.mode.current", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    gpus: list[tuple[str, str, tuple[int, int]]] = []
    for line in out.stdout.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 4 or parts[3] == "Enabled":
            return None
        try:
            major, minor = (int(x) for x in parts[2].split("."))
        except ValueError:
            return None
        gpus.append((parts[0], parts[1], (major, minor)))
    mixed = len({cap for _, _, cap in gpus}) > 1
    if mixed and os.environ.get("CUDA_DEVICE_ORDER") != "PCI_BUS_ID":
        return None
    if visible is None:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return [cap for _, _, cap in gpus]
    chosen = []
    for item in (v.strip() for v in visible.split(",")):
        if not item:
            break
        match = [cap for idx, uuid, cap in gpus if item in (idx, uuid) or uuid.startswith(item)]
        if not match:
            if item.lstrip("-").isdigit():
                break  # CUDA stops at the first invalid ordinal
            return None  # a MIG or other identifier this probe does not resolve
        chosen.append(match[0])
    return chosen


def gpu_count(backend: str) -> int:
    """GPUs this process's torch will see for ``backend`` (nvidia-smi on cuda, else torch)."""
    if backend == "cuda":
        caps = nvidia_capabilities()
        if caps is not None:
            return len(caps)
    import torch

    return torch.cuda.device_count()
