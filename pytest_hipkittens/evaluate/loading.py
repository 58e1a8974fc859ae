"""What both worker roles do alike: import a file, build a model, make a trial's inputs.

The trusted process and a candidate's worker must construct ``Model`` and ``ModelNew``
identically — the same init seed, the same order of RNG use, the same casts — or the
weights differ and a correct kernel looks wrong. One implementation serves both.

Seed semantics (documented in docs/architecture.md): a trial's inputs come from
``torch.manual_seed(seed)`` followed by the problem's ``get_inputs()`` run with the
evaluation device as torch's default device, so a 6 GB input is generated where it is used
instead of on the host and copied. Values therefore differ from KernelBench's (which draws
on the CPU generator); ``cpu_inputs`` draws on the CPU and moves them, for exact parity.
Model weights are always drawn on the CPU (``get_init_inputs()`` then the constructor,
each after ``torch.manual_seed(init_seed)``) and moved, as KernelBench does.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
from typing import Any

import torch

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}

# Taken before any candidate code runs in this process.
_manual_seed = torch.manual_seed


def import_file(name: str, path: str) -> Any:
    """Import ``path`` as module ``name`` (problem or candidate file)."""
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def load_problem(msg: dict[str, Any]) -> tuple[Any, str | None]:
    """A ``load`` command's problem module (threads set first), or the reason it is unusable."""
    if msg.get("threads"):
        torch.set_num_threads(int(msg["threads"]))
    problem = import_file("hk_problem", msg["problem"])
    for name in ("Model", "get_inputs", "get_init_inputs"):
        if not hasattr(problem, name):
            return problem, f"problem has no {name}"
    return problem, None


def cast(x: Any, device: str, dtype: torch.dtype) -> Any:
    """Move a tensor to ``device``; floating tensors to the run's precision."""
    if isinstance(x, torch.Tensor):
        x = x.to(device)
        return x.to(dtype) if x.is_floating_point() else x
    if isinstance(x, (list, tuple)):
        return type(x)(cast(v, device, dtype) for v in x)
    return x


def make_inputs(
    problem: Any, seed: int, device: str, dtype: torch.dtype, cpu_inputs: bool = False
) -> list[Any]:
    """One trial's inputs: drawn on ``device`` (default) or on the CPU and moved."""
    _manual_seed(seed)
    where = (
        contextlib.nullcontext()
        if cpu_inputs or device == "cpu"
        else torch.device(device)  # torch.device is a context manager: the default device
    )
    with where:
        raw = problem.get_inputs()
    return [cast(x, device, dtype) for x in raw]


def build_model(problem: Any, cls: type, init_seed: int, device: str, dtype: torch.dtype) -> Any:
    """``cls(*get_init_inputs())`` drawn on the CPU with the init seed, then moved and cast."""
    _manual_seed(init_seed)
    init = [cast(x, "cpu", dtype) for x in problem.get_init_inputs()]
    _manual_seed(init_seed)
    model = cls(*init)
    if isinstance(model, torch.nn.Module):
        model = model.to(device)
        if dtype != torch.float32:
            model = model.to(dtype)
        model.eval()
    return model


def sync(device: str) -> None:
    """Wait for every stream of this process's device (nothing to wait for on the CPU)."""
    if device != "cpu":
        torch.cuda.synchronize()


def is_oom(exc: BaseException) -> bool:
    """An out-of-memory error of the device or the host allocator."""
    text = str(exc).lower()
    return isinstance(exc, (torch.cuda.OutOfMemoryError, MemoryError)) or any(
        marker in text for marker in ("out of memory", "can't allocate memory")
    )


def peak_bytes(device: str) -> int:
    """The most memory this process has held: device memory reserved, or host RSS on cpu."""
    if device != "cpu":
        return int(torch.cuda.max_memory_reserved())
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024
