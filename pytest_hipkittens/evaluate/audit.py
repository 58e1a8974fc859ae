"""Runtime evidence of who did the work in one forward call (runs in the candidate worker).

A correct output proves nothing about *whose* code computed it: a candidate may call the
reference's PyTorch ops, call them from its C++ binding (``torch::matmul``), or hand the
work to numpy. One forward call is watched two ways:

* a ``TorchDispatchMode`` sees every ATen op that reaches the dispatcher — from Python and
  from C++ extensions alike — and times the compute ops among them (allocation, views and
  copies are bookkeeping, not work);
* ``sys.setprofile`` sees calls from Python into compiled functions, and keeps those whose
  module was built for this candidate (a file under the candidate's extension directory,
  working directory or the temp dir) or that are custom ops outside torch's namespaces.

On GPUs a second forward runs under torch.profiler followed by a marker kernel on the
harness's stream: a kernel of the candidate on another stream that is still running when
the harness's stream has moved on is work the timer misses.

The parent (trusted) decides; this module only reports what it saw.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

#: ATen ops that allocate, view, copy or fill: never "the work" of a kernel problem.
BOOKKEEPING = frozenset(
    [
        "empty",
        "empty_like",
        "empty_strided",
        "new_empty",
        "new_empty_strided",
        "zeros",
        "zeros_like",
        "ones",
        "ones_like",
        "full",
        "full_like",
        "new_zeros",
        "new_ones",
        "new_full",
        "scalar_tensor",
        "fill_",
        "zero_",
        "resize_",
        "set_",
        "view",
        "_unsafe_view",
        "view_as",
        "reshape",
        "_reshape_alias",
        "as_strided",
        "t",
        "transpose",
        "permute",
        "expand",
        "expand_as",
        "squeeze",
        "unsqueeze",
        "select",
        "slice",
        "narrow",
        "split",
        "split_with_sizes",
        "chunk",
        "unbind",
        "alias",
        "detach",
        "lift_fresh",
        "resolve_conj",
        "resolve_neg",
        "clone",
        "copy_",
        "_to_copy",
        "contiguous",
        "to",
        "_local_scalar_dense",
        "item",
        "is_nonzero",
        "sym_size",
        "sym_stride",
        "sym_numel",
        "sym_storage_offset",
        "size",
        "stride",
        "numel",
        "dim",
        "is_contiguous",
        "_has_compatible_shallow_copy_type",
        "record_stream",
        "unflatten",
        "flatten",
        "diagonal",
        "movedim",
        "view_as_real",
        "view_as_complex",
        "_copy_from",
    ]  # noqa: SIM905
)
#: Dispatcher namespaces that belong to PyTorch itself.
TORCH_NAMESPACES = frozenset({"aten", "prims", "_c10d_functional", "profiler", "c10d"})


def _own_roots() -> list[str]:
    roots = [os.getcwd(), tempfile.gettempdir()]
    for var in ("TORCH_EXTENSIONS_DIR", "TRITON_CACHE_DIR"):
        if os.environ.get(var):
            roots.append(os.environ[var])
    roots.append(str(Path.home() / ".triton"))
    return [os.path.realpath(r) for r in roots]


class _OpLog(TorchDispatchMode):
    """Counts every dispatcher op; times the compute ones (synchronising on GPUs).

    With ``flops`` it also adds up the FLOPs of the ops torch has a formula for (the
    formulas ``FlopCounterMode`` uses), so the trusted side measures a reference's work and
    its ops in one watched forward.
    """

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # torch wraps a mode's __torch_dispatch__ in torch._disable_dynamo, whose first call
        # imports torch._dynamo: 1-2 s here, 4-5 s on a busy GPU host, in every worker. This
        # mode need not be hidden from torch.compile unless a candidate compiles: then
        # _op_log picks _CompiledSafeOpLog (dynamo is imported by then anyway).
        return False

    def __init__(self, sync: Callable[[], None], flops: bool = False) -> None:
        super().__init__()
        self.sync = sync
        self.ops: dict[str, dict[str, float]] = {}
        self.flops = 0
        self._formulas: dict[Any, Any] | None = None
        if flops:
            from torch.utils.flop_counter import flop_registry

            self._formulas = flop_registry

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        kwargs = kwargs or {}
        schema = func._schema.name  # e.g. "aten::mm"
        ns, _, base = schema.partition("::")
        bookkeeping = base in BOOKKEEPING or base.rstrip("_") in BOOKKEEPING
        compute = ns in TORCH_NAMESPACES and not bookkeeping
        if not compute:
            out = func(*args, **kwargs)
            elapsed = 0.0
        else:
            self.sync()
            t0 = time.perf_counter()
            out = func(*args, **kwargs)
            self.sync()
            elapsed = (time.perf_counter() - t0) * 1e3
        row = self.ops.setdefault(schema, {"calls": 0, "ms": 0.0, "compute": compute})
        row["calls"] += 1
        row["ms"] += elapsed
        if self._formulas is not None:
            formula = self._formulas.get(func._overloadpacket)
            if formula is not None:
                self.flops += int(formula(*args, **kwargs, out_val=out))
        return out


class _CompiledSafeOpLog(_OpLog):
    """The same log with its dispatch frames hidden from torch.compile (torch's default)."""

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        return True

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        return _OpLog.__torch_dispatch__(self, func, types, args, kwargs)


def _op_log(sync: Callable[[], None], flops: bool = False) -> _OpLog:
    """An op log; the compile-safe one once torch._dynamo is loaded (a candidate compiles)."""
    cls = _CompiledSafeOpLog if "torch._dynamo" in sys.modules else _OpLog
    return cls(sync, flops)


def own_libraries(roots: list[str]) -> dict[str, str]:
    """Module name -> path of every shared object mapped into this process from ``roots``.

    torch's ``load_inline`` imports ``<name>.so`` without registering it in ``sys.modules``,
    so the process's memory map is where a candidate's compiled modules can be found; a
    Python extension's module name is its file's stem.
    """
    found: dict[str, str] = {}
    # Installed packages (torch, numpy, …) are never the candidate's, wherever the venv lives.
    installed = {os.path.realpath(p) + os.sep for p in {sys.prefix, sys.base_prefix}}
    installed.add(os.path.realpath(Path(torch.__file__).parent.parent) + os.sep)
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            paths = {line.split(None, 5)[-1].strip() for line in maps if "/" in line}
    except OSError:
        paths = {getattr(m, "__file__", "") or "" for m in list(sys.modules.values())}
    for path in paths:
        if not path.endswith((".so", ".pyd", ".dylib")):
            continue
        real = os.path.realpath(path)
        if any(real.startswith(p) for p in installed):
            continue
        if any(real.startswith(root + os.sep) for root in roots):
            found[Path(real).name.split(".")[0]] = real
    return found


def _compiled_owner(fn: Any, libraries: dict[str, str]) -> str | None:
    """``module.function`` when ``fn`` is a compiled function of a candidate-built module."""
    name = getattr(fn, "__module__", None)
    if isinstance(name, str) and name.split(".")[0] in libraries:
        return f"{name}.{getattr(fn, '__name__', '?')}"
    return None


def warm_mode() -> None:
    """Pay the first Python dispatch mode's one-time set-up at start-up, so the audit in
    the evaluation phase (which holds the device) does not."""
    with _op_log(lambda: None):
        torch.ones(1) + 1


def audit_forward(
    fn: Callable[[], Any], device: str, streams: bool = True, flops: bool = False
) -> dict[str, Any]:
    """Run ``fn`` once, watched; return the ops, compiled calls and timings seen (and its
    FLOPs with ``flops``)."""
    on_gpu = device != "cpu"
    sync = torch.cuda.synchronize if on_gpu else (lambda: None)
    libraries = own_libraries(_own_roots())
    own: dict[str, int] = {}

    def tracer(frame: Any, event: str, arg: Any) -> None:
        if event == "c_call":
            owner = _compiled_owner(arg, libraries)
            if owner:
                own[owner] = own.get(owner, 0) + 1

    fn()  # warm-up: lazy initialisation is not the forward's work
    sync()
    warm_mode()
    log = _op_log(sync, flops)
    t0 = time.perf_counter()
    previous = sys.getprofile()
    sys.setprofile(tracer)
    try:
        with log:
            fn()
            sync()
    finally:
        sys.setprofile(previous)
    total_ms = (time.perf_counter() - t0) * 1e3
    custom = {
        op: int(row["calls"])
        for op, row in log.ops.items()
        if op.partition("::")[0] not in TORCH_NAMESPACES
    }
    own.update(custom)
    torch_ops = sorted(
        (
            {"op": op, "calls": int(row["calls"]), "ms": round(row["ms"], 4)}
            for op, row in log.ops.items()
            if row["compute"]
        ),
        key=lambda r: -r["ms"],
    )
    report: dict[str, Any] = {
        "libraries": sorted(libraries),
        "own_calls": own,
        "torch_ops": torch_ops,
        "torch_ms": round(sum(r["ms"] for r in torch_ops), 4),
        "total_ms": round(total_ms, 4),
    }
    if flops:
        report["flops"] = log.flops
    if on_gpu and streams:
        report["streams"] = stream_check(fn)
    return report


def stream_check(fn: Callable[[], Any]) -> dict[str, Any]:
    """Kernels of ``fn`` still running on another stream when the harness stream moved on."""
    from ..profile import kineto

    torch.cuda.synchronize()
    with kineto("cuda") as prof:
        fn()
        torch.cuda._sleep(1)  # marker: runs once the harness stream's prior work is done
        torch.cuda.synchronize()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "trace.json"
        prof.export_chrome_trace(str(path))
        trace = json.loads(path.read_text(encoding="utf-8"))
    return unjoined_work(trace.get("traceEvents", []))


#: Runtime/driver calls after which the harness's stream (or the host) waits for other streams.
JOINS = re.compile(
    r"^(cuda|hip)(StreamWaitEvent|StreamSynchronize|DeviceSynchronize|EventSynchronize)|"
    r"^cu(StreamWaitEvent|StreamSynchronize|CtxSynchronize|EventSynchronize)"
)


def unjoined_work(events: list[dict[str, Any]], marker: str = "spin_kernel") -> dict[str, Any]:
    """From chrome-trace events: device work on other streams that the harness never waits for.

    The marker kernel runs on the harness's stream right after the forward returns. Work on
    another stream is *late* when it is still running once the marker started (the
    harness's stream did not wait), and *unjoined* when no wait or synchronisation call
    (``cudaStreamWaitEvent``, ``cudaStreamSynchronize``, …) follows its last launch before
    the marker is launched — then only luck (a slow host) lets the timer see it.
    """
    device = [
        e
        for e in events
        if e.get("ph") == "X" and e.get("cat") in ("kernel", "gpu_memcpy", "gpu_memset")
    ]
    marks = [e for e in device if marker in str(e.get("name", ""))]
    if not marks:
        return {"checked": False, "late": []}
    mark = marks[-1]

    def stream(e: dict[str, Any]) -> Any:
        return (e.get("args") or {}).get("stream")

    def corr(e: dict[str, Any]) -> Any:
        return (e.get("args") or {}).get("correlation")

    harness = stream(mark)
    host = [
        e
        for e in events
        if e.get("ph") == "X" and ("runtime" in str(e.get("cat")) or "driver" in str(e.get("cat")))
    ]
    launch_ts = {corr(e): float(e["ts"]) for e in host if corr(e) is not None}
    side = [e for e in device if e is not mark and stream(e) != harness]
    late = [
        {
            "name": str(e.get("name"))[:120],
            "stream": stream(e),
            "late_us": round(float(e["ts"]) + float(e.get("dur", 0)) - float(mark["ts"]), 3),
        }
        for e in side
        if float(e["ts"]) + float(e.get("dur", 0)) > float(mark["ts"]) + 1.0
    ]
    unjoined: list[dict[str, Any]] = []
    mark_launch = launch_ts.get(corr(mark))
    side_launches = [launch_ts[corr(e)] for e in side if corr(e) in launch_ts]
    if side_launches and mark_launch is not None:
        last = max(side_launches)
        joins = [
            e
            for e in host
            if JOINS.match(str(e.get("name"))) and last <= float(e["ts"]) <= mark_launch
        ]
        if not joins:
            e = max(side, key=lambda k: float(k["ts"]))
            unjoined.append({"name": str(e.get("name"))[:120], "stream": stream(e), "late_us": 0.0})
    streams = sorted({str(stream(e)) for e in device if e is not mark})
    return {
        "checked": True,
        "harness_stream": harness,
        "streams": streams,
        "late": (late or unjoined)[:5],
        "joined": not late and not unjoined,
    }
