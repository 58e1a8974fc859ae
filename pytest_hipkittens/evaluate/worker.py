"""The evaluation workers: the only processes that import a problem or a candidate.

Started by :mod:`pytest_hipkittens.evaluate.sandbox` as ``python -m
pytest_hipkittens.evaluate.worker`` in a fresh process group with a scrubbed environment.
Each reads one JSON command per line on stdin and answers one JSON line on the file
descriptor named by ``HK_REPLY_FD``; anything the candidate or the compiler prints goes
to stdout/stderr, which the parent sends to a log file.

Two roles (``HK_ROLE``): the *trusted* worker (trusted.py) makes the inputs, runs and times
the reference and compares, and never imports candidate code; a *candidate* worker
(:class:`Candidate`) builds one candidate and runs it on input buffers the trusted worker
fills, handing its outputs back as memory handles (tensors.py). The parent (runner.py)
relays between them and decides.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import traceback
from typing import Any

from .sandbox import boot_mark, boot_report

boot_mark("interpreter")  # before torch: start-up stages are reported by the first load
import torch  # noqa: E402

from .. import profile as _profile  # noqa: E402,F401 - fingerprinted: the cross-check's profiler
from .integrity import Fingerprint  # noqa: E402
from .loading import (  # noqa: E402
    DTYPES,
    build_model,
    import_file,
    is_oom,
    load_problem,
    make_inputs,
    peak_bytes,
    sync,
)
from .tensors import Arena, SpecError, describe, rebuild, spoil, tensors  # noqa: E402
from .timing import make_timer, run_trials, warm  # noqa: E402 - bound before any candidate

# Harness references taken before any candidate code runs.
_perf_counter = time.perf_counter
_active_threads = threading.enumerate

#: Set by ``main`` once the worker's own imports are done, before any candidate code runs.
_FINGERPRINT: Fingerprint | None = None

#: torch entry points the timing, flushing and checking code calls through (beyond the
#: worker's own modules and the standard library ones ``fingerprint`` watches whole).
_TORCH_NAMES: list[tuple[str, Any, list[str] | None]] = [
    ("torch", torch, ["manual_seed", "equal", "no_grad", "empty"]),
    ("torch.cuda", torch.cuda, ["synchronize", "current_stream", "current_device", "Event"]),
    ("torch.cuda.Event", torch.cuda.Event, None),
    ("torch.nn.Module", torch.nn.Module, ["__call__", "_call_impl"]),
    ("torch.Tensor", torch.Tensor, ["zero_", "data_ptr", "untyped_storage", "numel"]),
    ("torch.autograd.profiler", torch.autograd.profiler, ["profile", "record_function"]),
]


def fingerprint() -> Fingerprint:
    """What the worker measures and reports with, as it is now (see integrity.py): its own
    modules and their classes, the modules it reaches them through, ``time``, ``json``,
    the builtins and the torch entry points above."""
    import builtins
    import json.encoder

    fp = Fingerprint()
    ours = sorted(n for n in sys.modules if n.startswith(__package__ + "."))
    fp.add("sys.modules", sys.modules, ours)
    for name in ours:
        fp.add_module(sys.modules[name])
    for module in (time, json, json.encoder):
        fp.add_module(module)
    fp.add("builtins", builtins)
    for label, owner, names in _TORCH_NAMES:
        fp.add(label, owner, names)
    return fp


def tampered() -> list[str]:
    """Harness code that is no longer what it was before candidate code ran."""
    if _FINGERPRINT is None:
        return []
    changed = _FINGERPRINT.changed()
    if "torch._dynamo" in sys.modules:
        # Importing torch._dynamo (torch.compile, dispatch modes) rewraps manual_seed in
        # torch._disable_dynamo; seeding is not part of what is measured.
        changed = [c for c in changed if c != "torch.manual_seed"]
    return changed


def tamper_rejection(when: str = "") -> dict | None:
    """The rejection reply when candidate code changed harness code (``tampered``), else
    None; ``when`` says during what (`` while timed``)."""
    changed = tampered()
    if not changed:
        return None
    return _rejected(f"candidate replaced harness function(s){when}: {', '.join(changed)}")


def _wait_for_header_builds(limit_s: float = 600.0) -> None:
    """Let the precompiled-header builds this build started in the background (pch.py)
    finish before anything is timed: they are compilers on the cores the timing is about
    to use (on the cpu backend they turned a 1.0x kernel into 0.11x or 15.8x), and as this
    worker's descendants they would be ended with it, unfinished."""
    folder = os.environ.get("HK_PCH_DIR")
    if not folder:
        return
    from pathlib import Path

    from .pch import wait_for_builds

    wait_for_builds(Path(folder), limit_s)


def _rejected(message: str) -> dict:
    return {"ok": False, "category": "rejected", "message": message}


GPU_ERROR_MARKERS = (
    "CUDA error",
    "HIP error",
    "illegal memory access",
    "unspecified launch failure",
    "device-side assert",
    "hipErrorIllegalAddress",
)
BUILD_ERROR_MARKERS = ("Error building extension", "ninja: build stopped", "error:")


class Candidate:
    """Handlers of a candidate's worker: build it, run it on buffers the trusted side fills.

    The worker allocates (and exports) the buffers its inputs are written into and exports
    its outputs; it never sees the reference's outputs or the trusted copy of the inputs.
    """

    def __init__(self) -> None:
        self.problem: Any = None
        self.candidate: Any = None
        self.device = "cpu"
        self.dtype = torch.float32
        self.flush_bytes = 0
        self.init_seed = 0
        self.folder: str | None = None
        self._model: Any = None
        self._inputs: list[Any] | None = None
        self._in_arena: Arena | None = None
        self._out_arena: Arena | None = None
        self._timer: Any = None
        self._last: Any = None  # the last timed call's output, until exported or released

    def model(self) -> Any:
        """The one ``ModelNew`` instance of this worker (built like the reference)."""
        if self._model is None:
            self._model = build_model(
                self.problem, self.candidate.ModelNew, self.init_seed, self.device, self.dtype
            )
        return self._model

    # -- commands --------------------------------------------------------------------
    def load(self, msg: dict) -> dict:
        self.device = msg.get("device", "cpu")
        self.dtype = DTYPES[msg.get("precision", "fp32")]
        self.flush_bytes = int(msg.get("flush_bytes") or 0)
        self.init_seed = int(msg.get("init_seed") or 0)
        self.folder = msg.get("shm")
        self.problem, bad = load_problem(msg)
        if bad:
            return {"ok": False, "category": "bad_problem", "message": bad}
        if self.device != "cpu":
            torch.empty(1, device=self.device)  # the device context now, not when timed
        # The timer exists before the candidate does: its closures are fingerprinted too.
        self._timer = make_timer(self.device, self.flush_bytes)
        if _FINGERPRINT is not None:
            _FINGERPRINT.add("timer", self._timer)
        return {"ok": True}

    def build(self, msg: dict) -> dict:
        t0 = _perf_counter()
        if msg.get("ext_dir"):
            # The candidate's own content-addressed build folder (workers start before they
            # know which candidate they will serve).
            os.environ["TORCH_EXTENSIONS_DIR"] = msg["ext_dir"]
        try:
            self.candidate = import_file("hk_candidate", msg["code"])
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
        _wait_for_header_builds()
        if rejected := tamper_rejection():
            return rejected
        return {"ok": True, "seconds": _perf_counter() - t0}

    def alloc(self, msg: dict) -> dict:
        """Allocate input buffers laid out as the trusted side's inputs; export them.

        The same buffers serve every trial: the trusted side refills them with the next
        seed's values, so an implementation that caches results by pointer or shape
        returns stale outputs and fails the comparison.
        """
        self.model()  # constructed before the inputs exist, as in KernelBench
        self._in_arena = Arena(self.device, self.folder)
        made: list[dict[str, Any]] = []

        def alloc_one(spec: dict) -> torch.Tensor:
            assert self._in_arena is not None
            t, shared = self._in_arena.alloc(spec)
            made.append(shared)
            return t

        self._inputs = rebuild(msg["inputs"], alloc_one)
        it = iter(made)
        return {"ok": True, "buffers": describe(self._inputs, lambda t: next(it))}

    def _export(self, out: Any) -> Any:
        if self._out_arena is None:
            self._out_arena = Arena(self.device, self.folder)
        return describe(out, self._out_arena.export)

    def forward(self, msg: dict) -> dict:
        """One forward on the buffers; the outputs exported for the trusted comparison.

        Also reports what the trusted side cannot see from its end: threads the call left
        running and outputs that are the input buffers themselves.
        """
        assert self._inputs is not None
        self.release_outputs()
        model = self.model()
        threads_before = {t.ident for t in _active_threads()}
        with torch.no_grad():
            out = model(*self._inputs)
        sync(self.device)
        alive = [
            t.name for t in _active_threads() if t.ident not in threads_before and t.is_alive()
        ]
        in_ptrs = {t.untyped_storage().data_ptr() for t in tensors(self._inputs) if t.numel()}
        aliases = any(t.numel() and t.untyped_storage().data_ptr() in in_ptrs for t in tensors(out))
        if rejected := tamper_rejection():
            return rejected
        try:
            outputs = self._export(out)
        except SpecError as exc:
            return {"ok": False, "category": "incorrect", "message": f"outputs: {exc}"}
        return {
            "ok": True,
            "outputs": outputs,
            "threads_left": alive,
            "aliases_input": aliases,
            "peak_bytes": peak_bytes(self.device),
        }

    def release_outputs(self, msg: dict | None = None) -> dict:
        """Drop the last timed output and the exported ones (the trusted side is done)."""
        self._last = None
        if self._out_arena is not None:
            self._out_arena.release()
        return {"ok": True}

    def timed(self, msg: dict) -> dict:
        """Warm up (``warmup``: the median ms) or time the candidate on its buffers.

        Nothing but the calls happens here: the parent's clock around this command is held
        against the milliseconds it reports (timing.not_credible), so the export of the
        last call's output (``export_last``, which the trusted side then compares with the
        reference) and the release of what the round left (``release``) are commands of
        their own.
        """
        assert self._inputs is not None
        self._last = None
        model, inputs = self.model(), self._inputs
        if self.device == "cpu":
            # Timed on private memory, like the reference in the trusted process: a shared
            # file mapping is paged differently from the heap, which shows at these sizes.
            inputs = [t.clone() if isinstance(t, torch.Tensor) else t for t in inputs]
        last: list[Any] = [None]

        def call() -> None:
            # The previous output is freed first, inside the timed call, as the reference's
            # is (holding two outputs at once changes what the allocator must do).
            last[0] = None
            last[0] = model(*inputs)

        with torch.no_grad():
            if msg.get("warmup"):
                est = warm(call, self._timer, msg["warmup"], msg["warmup_s"])
                answer: dict[str, Any] = {"ok": True, "est_ms": est}
            else:
                ms = run_trials(
                    call, self._timer, msg["trials"], before=lambda: spoil(last[0], inputs)
                )
                answer = {"ok": True, "ms": ms}
        sync(self.device)
        if rejected := tamper_rejection(" while timed"):
            return rejected
        self._last = last[0]
        answer["method"] = self._timer.method
        return answer

    def crosscheck(self, msg: dict) -> dict:
        """The profiler's device time of the timed call (crosscheck.py), after the rounds."""
        from .crosscheck import device_times

        assert self._inputs is not None
        self.release_outputs()
        model, inputs = self.model(), self._inputs
        if self.device == "cpu":
            inputs = [t.clone() if isinstance(t, torch.Tensor) else t for t in inputs]
        timer = self._timer
        with torch.no_grad():
            answer = device_times(
                lambda: model(*inputs), timer.flush, timer.sync, self.device, msg.get("calls", 10)
            )
        if rejected := tamper_rejection(" while cross-checked"):
            return rejected
        return answer

    def export_last(self, msg: dict) -> dict:
        """The output of the last timed call, exported for the trusted comparison."""
        try:
            return {"ok": True, "outputs": self._export(self._last)}
        except SpecError as exc:
            return {"ok": False, "category": "incorrect", "message": f"outputs: {exc}"}

    def audit(self, msg: dict) -> dict:
        """One watched forward: which ops and compiled functions did the work (see audit.py)."""
        from .audit import audit_forward

        assert self._inputs is not None
        self.release_outputs()
        model, inputs = self.model(), self._inputs
        with torch.no_grad():
            report = audit_forward(lambda: model(*inputs), self.device, streams=True)
        if rejected := tamper_rejection():
            return rejected
        return {"ok": True, **report}

    def profile(self, msg: dict) -> dict:
        from ..profile import profile_torch

        assert self._inputs is not None
        self.release_outputs()
        model, inputs = self.model(), self._inputs
        with torch.no_grad():
            kernels = profile_torch(lambda: model(*inputs), self.device, runs=msg.get("runs", 5))
        return {"ok": True, "kernels": kernels}

    def handlers(self) -> dict[str, Any]:
        return {
            "load": self.load,
            "build": self.build,
            "alloc": self.alloc,
            "forward": self.forward,
            "release": self.release_outputs,
            "timed": self.timed,
            "export_last": self.export_last,
            "crosscheck": self.crosscheck,
            "audit": self.audit,
            "profile": self.profile,
        }


def _error_reply(exc: BaseException) -> dict:
    text = f"{type(exc).__name__}: {exc}"
    if is_oom(exc):
        category = "oom"
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
    worker = Candidate()
    worker.load({"problem": args.problem, "device": args.device, "precision": args.precision})
    built = worker.build({"code": args.code})
    if not built.get("ok"):
        print(built.get("message"), file=sys.stderr)
        return 2
    worker.init_seed = args.init_seed
    model = worker.model()
    inputs = make_inputs(worker.problem, args.seed, args.device, worker.dtype)
    on_gpu = args.device != "cpu"
    with torch.no_grad():
        model(*inputs)
        sync(args.device)
        if on_gpu:
            torch.cuda.profiler.start()
        start = time.monotonic_ns()
        for _ in range(args.runs):
            model(*inputs)
        sync(args.device)
        end = time.monotonic_ns()
        if on_gpu:
            torch.cuda.profiler.stop()
    # For tools that trace everything (rocprofv3): which dispatches were the timed runs.
    print(f"HK_PROBE_WINDOW {start} {end} {args.runs}", flush=True)
    return 0


def main() -> int:
    if sys.argv[1:2] == ["probe"]:
        return probe(sys.argv[2:])
    from .sandbox import apply_limits

    boot_mark("torch")
    apply_limits()
    reply_fd = int(os.environ["HK_REPLY_FD"])
    reply = os.fdopen(reply_fd, "w", buffering=1)
    if os.environ.get("HK_ROLE") == "trusted":
        from .sandbox import undumpable
        from .trusted import Trusted

        undumpable()
        handlers = Trusted().handlers()
    else:
        from .audit import warm_mode

        # ~1 s of one-time set-up for the audit, paid at start-up (usually ahead of need,
        # see Evaluator._spawn) instead of while the device is held.
        warm_mode()
        # Candidates build through torch's extension loader; importing it (and setuptools
        # under it, ~0.15 s) here keeps that out of a build-cache hit.
        import torch.utils.cpp_extension  # noqa: F401

        handlers = Candidate().handlers()
    global _FINGERPRINT
    _FINGERPRINT = fingerprint()
    boot_mark("setup")
    booting = True
    for line in sys.stdin:
        msg = json.loads(line)
        cmd = msg.get("cmd")
        if cmd == "exit":
            break
        if booting:
            boot_mark("idle")
        try:
            answer = handlers[cmd](msg)
        except BaseException as exc:  # noqa: BLE001 - report, keep the protocol alive
            answer = _error_reply(exc)
        if booting and cmd == "load":
            # The first load includes the device context: the last start-up stage.
            boot_mark("load")
            answer["boot"] = boot_report()
            answer["isolation"] = os.environ.get("HK_ISOLATION", "none")
        booting = False
        reply.write(json.dumps(answer, default=str) + "\n")
        reply.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
