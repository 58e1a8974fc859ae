"""The evaluation worker: the only process that imports a problem or a candidate.

Started by :mod:`pytest_hipkittens.evaluate.sandbox` as ``python -m
pytest_hipkittens.evaluate.worker`` in a fresh process group with a scrubbed environment.
It reads one JSON command per line on stdin and answers one JSON line on the file
descriptor named by ``HK_REPLY_FD``; anything the candidate or the compiler prints goes
to stdout/stderr, which the parent sends to a log file. A *reference* worker never
imports candidate code; a *candidate* worker does, and only hands tensors back — the
parent decides whether they are right.

Commands: ``load``, ``build``, ``outputs``, ``audit``, ``time``, ``profile``, ``work``,
``hardware``, ``exit``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import torch

# Harness references taken before any candidate code runs.
_perf_counter = time.perf_counter
_torch_save = torch.save
_manual_seed = torch.manual_seed
_active_threads = threading.enumerate

#: What the timing and checking code relies on; a candidate that rebinds any is rejected.
HARNESS_FUNCTIONS: dict[str, tuple[Any, str, Any]] = {
    "time.perf_counter": (time, "perf_counter", time.perf_counter),
    "time.monotonic_ns": (time, "monotonic_ns", time.monotonic_ns),
    "torch.manual_seed": (torch, "manual_seed", torch.manual_seed),
    "torch.save": (torch, "save", torch.save),
    "torch.equal": (torch, "equal", torch.equal),
    "torch.cuda.synchronize": (torch.cuda, "synchronize", torch.cuda.synchronize),
    "torch.cuda.Event": (torch.cuda, "Event", torch.cuda.Event),
    "torch.nn.Module.__call__": (torch.nn.Module, "__call__", torch.nn.Module.__call__),
}


def _intact(current: Any, orig: Any) -> bool:
    """``current`` is ``orig``, or torch's own wrapper of it.

    Importing ``torch._dynamo`` (torch.compile, dispatch modes) rewraps ``torch.manual_seed``
    in ``torch._disable_dynamo``; the harness calls the references it saved, so that wrapper
    changes nothing it relies on.
    """
    if current is orig:
        return True
    return "torch._dynamo" in sys.modules and getattr(current, "__wrapped__", None) is orig


def tampered() -> list[str]:
    """Harness functions that no longer are what they were before candidate code ran."""
    return [
        name
        for name, (owner, attr, orig) in HARNESS_FUNCTIONS.items()
        if not _intact(getattr(owner, attr, None), orig)
    ]


def _rejected(message: str) -> dict:
    return {"ok": False, "category": "rejected", "message": message}


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bit-for-bit equal, NaN included (torch.equal says NaN != NaN)."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.is_floating_point() or a.is_complex():
        return bool(((a == b) | (torch.isnan(a) & torch.isnan(b))).all())
    return torch.equal(a, b)


DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
GPU_ERROR_MARKERS = (
    "CUDA error",
    "HIP error",
    "illegal memory access",
    "unspecified launch failure",
    "device-side assert",
    "hipErrorIllegalAddress",
)
BUILD_ERROR_MARKERS = ("Error building extension", "ninja: build stopped", "error:")


class Worker:
    def __init__(self) -> None:
        self.problem: Any = None
        self.candidate: Any = None
        self.device = "cpu"
        self.dtype = torch.float32
        self.flush_bytes = 0

    # -- helpers ---------------------------------------------------------------------
    def _import(self, name: str, path: str) -> Any:
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot import {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module

    def _cast(self, x: Any) -> Any:
        if isinstance(x, torch.Tensor):
            x = x.to(self.device)
            return x.to(self.dtype) if x.is_floating_point() else x
        return x

    def _inputs(self, seed: int) -> list[Any]:
        _manual_seed(seed)
        return [self._cast(x) for x in self.problem.get_inputs()]

    def _model(self, cls: type, seed: int) -> Any:
        _manual_seed(seed)
        init = [self._cast(x) for x in self.problem.get_init_inputs()]
        _manual_seed(seed)
        model = cls(*init)
        if isinstance(model, torch.nn.Module):
            model = model.to(self.device)
            if self.dtype != torch.float32:
                model = model.to(self.dtype)
            model.eval()
        return model

    def _sync(self) -> None:
        if self.device != "cpu":
            torch.cuda.synchronize()

    # -- commands --------------------------------------------------------------------
    def load(self, msg: dict) -> dict:
        self.device = msg.get("device", "cpu")
        self.dtype = DTYPES[msg.get("precision", "fp32")]
        self.flush_bytes = int(msg.get("flush_bytes") or 0)
        if msg.get("threads"):
            torch.set_num_threads(int(msg["threads"]))
        self.problem = self._import("hk_problem", msg["problem"])
        for name in ("Model", "get_inputs", "get_init_inputs"):
            if not hasattr(self.problem, name):
                return {"ok": False, "category": "bad_problem", "message": f"problem has no {name}"}
        return {"ok": True}

    def build(self, msg: dict) -> dict:
        t0 = _perf_counter()
        if msg.get("ext_dir"):
            # The candidate's own content-addressed build folder (workers start before they
            # know which candidate they will serve).
            os.environ["TORCH_EXTENSIONS_DIR"] = msg["ext_dir"]
        try:
            self.candidate = self._import("hk_candidate", msg["code"])
        except BaseException as exc:  # noqa: BLE001 - any failure of candidate code
            text = f"{type(exc).__name__}: {exc}"
            is_build = isinstance(exc, SyntaxError) or any(m in text for m in BUILD_ERROR_MARKERS)
            return {
                "ok": False,
                "category": "compile_error" if is_build else "runtime_error",
                "message": text.splitlines()[0][:300] if text else type(exc).__name__,
                "log": text + "\n" + traceback.format_exc(limit=5),
                "seconds": _perf_counter() - t0,
            }
        if not hasattr(self.candidate, "ModelNew"):
            return {
                "ok": False,
                "category": "no_model_new",
                "message": "candidate defines no ModelNew",
            }
        if tampered():
            return _rejected(f"candidate replaced harness function(s): {', '.join(tampered())}")
        return {"ok": True, "seconds": _perf_counter() - t0}

    def outputs(self, msg: dict) -> dict:
        """Run the reference (``which=ref``) or the candidate on each trial's inputs.

        The first trial's input tensors are reused: later trials refill the same buffers with
        the next seed's values, so an implementation that caches results by pointer or shape
        returns stale outputs and fails the comparison. Each call is also watched for
        mutating its inputs, returning a view of an input, and leaving threads running.
        """
        which = msg["which"]
        out_dir = Path(msg["dir"])
        cls = self.problem.Model if which == "ref" else self.candidate.ModelNew
        model = self._model(cls, msg["init_seed"])
        files = []
        flags = {"mutates_inputs": False, "aliases_input": False, "threads_left": []}
        buffers: list[Any] | None = None
        with torch.no_grad():
            for seed in msg["seeds"]:
                fresh = self._inputs(seed)
                if buffers is None:
                    buffers = fresh
                else:
                    for buf, new in zip(buffers, fresh, strict=False):
                        if (
                            isinstance(buf, torch.Tensor)
                            and isinstance(new, torch.Tensor)
                            and buf.shape == new.shape
                        ):
                            buf.copy_(new)
                    buffers = [
                        b if isinstance(b, torch.Tensor) else n
                        for b, n in zip(buffers, fresh, strict=False)
                    ]
                inputs = buffers
                pristine = [t.clone() if isinstance(t, torch.Tensor) else None for t in inputs]
                threads_before = {t.ident for t in _active_threads()}
                out = model(*inputs)
                self._sync()
                alive = [
                    t.name
                    for t in _active_threads()
                    if t.ident not in threads_before and t.is_alive()
                ]
                flags["threads_left"] = sorted(set(flags["threads_left"]) | set(alive))
                outs = out if isinstance(out, (list, tuple)) else [out]
                in_ptrs = {
                    t.untyped_storage().data_ptr() for t in inputs if isinstance(t, torch.Tensor)
                }
                if any(
                    isinstance(o, torch.Tensor) and o.untyped_storage().data_ptr() in in_ptrs
                    for o in outs
                ):
                    flags["aliases_input"] = True
                if any(
                    p is not None and not _same(p, t)
                    for p, t in zip(pristine, inputs, strict=False)
                ):
                    flags["mutates_inputs"] = True
                if isinstance(out, torch.Tensor):
                    out = out.detach().cpu().clone()
                elif isinstance(out, (list, tuple)):
                    out = type(out)(
                        o.detach().cpu().clone() if isinstance(o, torch.Tensor) else o for o in out
                    )
                path = out_dir / f"{which}_{seed}.pt"
                _torch_save(out, path)
                files.append(str(path))
                del out, pristine
        if which == "new" and tampered():
            return _rejected(f"candidate replaced harness function(s): {', '.join(tampered())}")
        return {"ok": True, "files": files, **flags}

    def time(self, msg: dict) -> dict:
        """Time reference and candidate interleaved; optionally ``torch.compile``'s reference too."""
        from .timing import make_timer, time_interleaved

        ref = self._model(self.problem.Model, msg["init_seed"])
        new = self._model(self.candidate.ModelNew, msg["init_seed"])
        inputs = self._inputs(msg["seed"])
        timer = make_timer(self.device, self.flush_bytes)
        fns = [lambda: ref(*inputs), lambda: new(*inputs)]
        extra: dict[str, Any] = {}
        if msg.get("compile"):
            compiled, extra = self._compiled(inputs, msg["init_seed"])
            if compiled is not None:
                fns.append(lambda: compiled(*inputs))
        with torch.no_grad():
            samples = time_interleaved(
                fns,
                timer,
                warmup=msg.get("warmup", 3),
                trials=msg.get("trials", 30),
                budget_s=msg.get("budget_s", 10.0),
            )
        if tampered():
            return _rejected(
                f"candidate replaced harness function(s) while timed: {', '.join(tampered())}"
            )
        if len(samples) == 3:
            extra["compile_ms"] = samples[2]
        return {
            "ok": True,
            "ref_ms": samples[0],
            "new_ms": samples[1],
            "method": timer.method,
            **extra,
        }

    def _compiled(self, inputs: list[Any], init_seed: int) -> tuple[Any, dict[str, Any]]:
        """``torch.compile`` of a fresh reference, compiled here (not timed); None if it fails."""
        model = self._model(self.problem.Model, init_seed)
        t0 = _perf_counter()
        try:
            compiled = torch.compile(model)
            with torch.no_grad():
                compiled(*inputs)
            self._sync()
        except Exception as exc:  # noqa: BLE001 - the baseline is optional
            return None, {"compile_error": f"{type(exc).__name__}: {exc}".splitlines()[0][:300]}
        return compiled, {"compile_seconds": round(_perf_counter() - t0, 3)}

    def audit(self, msg: dict) -> dict:
        """One watched forward: which ops and compiled functions did the work (see audit.py)."""
        from .audit import audit_forward

        ref = msg.get("which") == "ref"
        cls = self.problem.Model if ref else self.candidate.ModelNew
        model = self._model(cls, msg["init_seed"])
        inputs = self._inputs(msg["seed"])
        with torch.no_grad():
            report = audit_forward(lambda: model(*inputs), self.device, streams=not ref)
        if tampered():
            return _rejected(f"candidate replaced harness function(s): {', '.join(tampered())}")
        return {"ok": True, **report}

    def profile(self, msg: dict) -> dict:
        from ..profile import profile_torch

        new = self._model(self.candidate.ModelNew, msg["init_seed"])
        inputs = self._inputs(msg["seed"])
        with torch.no_grad():
            kernels = profile_torch(lambda: new(*inputs), self.device, runs=msg.get("runs", 5))
        return {"ok": True, "kernels": kernels}

    def work(self, msg: dict) -> dict:
        """Bytes the reference must move (inputs read + outputs written) and its FLOPs."""
        from torch.utils.flop_counter import FlopCounterMode

        model = self._model(self.problem.Model, msg["init_seed"])
        inputs = self._inputs(msg["seed"])
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            out = model(*inputs)
        outs = out if isinstance(out, (list, tuple)) else [out]
        tensors = [t for t in [*inputs, *outs] if isinstance(t, torch.Tensor)]
        return {
            "ok": True,
            "bytes": int(sum(t.numel() * t.element_size() for t in tensors)),
            "flops": int(counter.get_total_flops()),
        }

    def hardware(self, msg: dict) -> dict:
        import platform

        info: dict[str, Any] = {
            "torch": torch.__version__,
            "python": platform.python_version(),
            "cpu": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(),
            "cpu_affinity": sorted(os.sched_getaffinity(0)),
            "visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")
            or os.environ.get("HIP_VISIBLE_DEVICES"),
        }
        if self.device != "cpu" and torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            info["gpu"] = props.name
            bus = getattr(props, "pci_bus_id", None)
            if bus is not None:
                domain = getattr(props, "pci_domain_id", 0) or 0
                dev = getattr(props, "pci_device_id", 0) or 0
                info["pci_bus_id"] = f"{domain:04x}:{bus:02x}:{dev:02x}.0"
            info["arch"] = getattr(props, "gcnArchName", None) or f"sm_{props.major}{props.minor}"
            info["cuda"] = torch.version.cuda
            info["hip"] = getattr(torch.version, "hip", None)
        return {"ok": True, "hardware": info}


def _error_reply(exc: BaseException) -> dict:
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in text.lower():
        category = "out_of_memory"
    elif any(m in text for m in GPU_ERROR_MARKERS):
        category = "gpu_crash"
    else:
        category = "runtime_error"
    return {
        "ok": False,
        "category": category,
        "message": text.splitlines()[0][:300] if text else type(exc).__name__,
        "log": traceback.format_exc(limit=8)[-4000:],
    }


def probe(argv: list[str]) -> int:
    """Run the candidate's forward ``--runs`` times inside a profiler's capture range.

    Started under an external profiler (ncu, rocprofv3) that records only what runs
    between ``cudaProfilerStart`` and ``cudaProfilerStop``: the forward passes, not the
    build, the reference or the warm-up.
    """
    import argparse

    parser = argparse.ArgumentParser(prog="hk-probe")
    parser.add_argument("--problem", required=True)
    parser.add_argument("--code", required=True)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--init-seed", type=int, default=42)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    worker = Worker()
    worker.load({"problem": args.problem, "device": args.device, "precision": args.precision})
    built = worker.build({"code": args.code})
    if not built.get("ok"):
        print(built.get("message"), file=sys.stderr)
        return 2
    model = worker._model(worker.candidate.ModelNew, args.init_seed)
    inputs = worker._inputs(args.seed)
    on_gpu = args.device != "cpu"
    with torch.no_grad():
        model(*inputs)
        worker._sync()
        if on_gpu:
            torch.cuda.profiler.start()
        start = time.monotonic_ns()
        for _ in range(args.runs):
            model(*inputs)
        worker._sync()
        end = time.monotonic_ns()
        if on_gpu:
            torch.cuda.profiler.stop()
    # For tools that trace everything (rocprofv3): which dispatches were the timed runs.
    print(f"HK_PROBE_WINDOW {start} {end} {args.runs}", flush=True)
    return 0


def main() -> int:
    if sys.argv[1:2] == ["probe"]:
        return probe(sys.argv[2:])
    reply_fd = int(os.environ["HK_REPLY_FD"])
    reply = os.fdopen(reply_fd, "w", buffering=1)
    from .audit import warm_mode

    # ~1 s of one-time set-up for the audit, paid at start-up (usually ahead of need, see
    # Evaluator._spawn) instead of while the device is held.
    warm_mode()
    # Candidates build through torch's extension loader; importing it (and setuptools under
    # it, ~0.15 s) here keeps that out of a build-cache hit.
    import torch.utils.cpp_extension  # noqa: F401

    worker = Worker()
    handlers = {
        "load": worker.load,
        "build": worker.build,
        "outputs": worker.outputs,
        "time": worker.time,
        "profile": worker.profile,
        "hardware": worker.hardware,
        "work": worker.work,
        "audit": worker.audit,
    }
    for line in sys.stdin:
        msg = json.loads(line)
        cmd = msg.get("cmd")
        if cmd == "exit":
            break
        try:
            answer = handlers[cmd](msg)
        except BaseException as exc:  # noqa: BLE001 - report, keep the protocol alive
            answer = _error_reply(exc)
        reply.write(json.dumps(answer, default=str) + "\n")
        reply.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
