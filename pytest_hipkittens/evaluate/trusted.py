"""The trusted process: inputs, the reference, the comparison and the reference's timing.

It runs as a worker (``HK_ROLE=trusted``, see worker.py) that never imports candidate
code. Per problem it

* makes each trial's inputs on the device from its seed (loading.py says how) and runs
  the reference on them; inputs and reference outputs stay in this process, on the device,
  cached per seed while they fit a memory budget and recomputed otherwise — they are never
  written anywhere and never exported;
* writes a trial's inputs into the buffers a candidate's worker allocated and exported
  (``fill``), then maps the candidate's outputs and compares them with the reference on the
  device (``check``), returning scalars: error figures, whether the candidate changed its
  input buffers, whether an output aliases an input, and a checksum of each output;
* times the reference (and ``torch.compile`` of it) with the same timer the candidate's
  worker uses, in a process no candidate code runs in (the candidate's own figures come
  from its process; see docs/architecture.md for what checks them);
* measures what the reference must move and compute (bytes, FLOPs) and which PyTorch ops
  it runs (to recognise a candidate that calls them).
"""

from __future__ import annotations

import gc
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

from .compare import compare_outputs, same_bits
from .loading import DTYPES, build_model, load_problem, make_inputs, peak_bytes, sync
from .tensors import SpecError, describe, layout, open_spec, rebuild, spoil, tensors


def _nbytes(value: Any) -> int:
    return sum(t.numel() * t.element_size() for t in tensors(value))


def moved_bytes(value: Any) -> int:
    """Bytes a forward must at least read and write: each storage once (an output that
    is a view of an input, or a broadcast input, adds nothing more), and no more of a
    storage than the tensor spans."""
    per_storage: dict[int, int] = {}
    for t in tensors(value):
        storage = t.untyped_storage()
        size = min(storage.nbytes(), t.numel() * t.element_size())
        key = storage.data_ptr()
        per_storage[key] = max(per_storage.get(key, 0), size)
    return sum(per_storage.values())


def _clone(value: list[Any]) -> list[Any]:
    return [v.clone() if isinstance(v, torch.Tensor) else v for v in value]


def _budget(device: str, share: float) -> int:
    """Bytes of cached inputs and reference outputs this process may keep."""
    if device != "cpu":
        _, total = torch.cuda.mem_get_info()
        return int(total * share)
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            info = dict(line.split(":", 1) for line in fh)
        avail = int(info["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        avail = 4 << 30
    return int(avail * share)


def _spans(value: Any) -> list[tuple[int, int]]:
    """Byte ranges of the storages behind every tensor of ``value``."""
    out = []
    for t in tensors(value):
        if t.numel():
            s = t.untyped_storage()
            out.append((s.data_ptr(), s.data_ptr() + s.nbytes()))
    return out


class Trusted:
    """Handlers of the trusted process (one problem at a time)."""

    def __init__(self) -> None:
        self._reset()
        self._timer: Any = None
        self._roofs: dict[str, Any] | None = None

    def _reset(self) -> None:
        """Forget the last problem: one trusted process serves a whole session's problems."""
        self.problem: Any = None
        self.model: Any = None
        self.device = "cpu"
        self.dtype = torch.float32
        self.cpu_inputs = False
        self.flush_bytes = 0
        self.folder: str | None = None
        self.init_seed = 0
        self.budget = 0
        #: seed -> (inputs, reference output), while they fit the budget
        self._cache: dict[int, tuple[list[Any], Any]] = {}
        #: the entry in use when it is not cached (large problems)
        self._current: tuple[int, list[Any], Any] | None = None
        #: the candidate's input buffers, mapped by ``fill``
        self._buffers: Any = None
        self._buffer_specs: Any = None
        self._folder: str | None = None
        self._compiled: Any = None
        #: what the reference does to its inputs, found on its first run
        self.flags: dict[str, bool] = {}

    # -- data ------------------------------------------------------------------------
    def load(self, msg: dict) -> dict:
        self._reset()
        if "torch._dynamo" in sys.modules:
            torch._dynamo.reset()  # the last problem's compiled graphs
        gc.collect()
        if torch.cuda.is_initialized():
            torch.cuda.empty_cache()
        self.device = msg.get("device", "cpu")
        self.dtype = DTYPES[msg.get("precision", "fp32")]
        self.cpu_inputs = bool(msg.get("cpu_inputs"))
        self.flush_bytes = int(msg.get("flush_bytes") or 0)
        self.folder = msg.get("shm")
        self.init_seed = int(msg["init_seed"])
        self.problem, bad = load_problem(msg)
        if bad:
            return {"ok": False, "category": "bad_problem", "message": bad}
        self.budget = _budget(self.device, float(msg.get("cache_share", 0.2)))
        self.model = build_model(
            self.problem, self.problem.Model, self.init_seed, self.device, self.dtype
        )
        return {"ok": True, "budget": self.budget}

    def _entry(self, seed: int) -> tuple[list[Any], Any]:
        """A trial's inputs and reference output: cached, current, or made now."""
        if seed in self._cache:
            return self._cache[seed]
        if self._current is not None and self._current[0] == seed:
            return self._current[1], self._current[2]
        self._current = None
        if self.device != "cpu":
            torch.cuda.empty_cache()
        inputs = make_inputs(self.problem, seed, self.device, self.dtype, self.cpu_inputs)
        # A reference that works in place would leave the kept inputs changed: it gets a
        # copy (found out on the first trial, which is checked on a copy).
        work = inputs if self.flags.get("mutates_inputs") is False else _clone(inputs)
        with torch.no_grad():
            out = self.model(*work)
        sync(self.device)
        if "mutates_inputs" not in self.flags:
            self.flags["mutates_inputs"] = any(
                not same_bits(a, b) for a, b in zip(tensors(inputs), tensors(work), strict=True)
            )
            self.flags["aliases_input"] = bool(set(_spans(out)) & set(_spans(work)))
        del work
        size = _nbytes(inputs) + _nbytes(out)
        held = sum(_nbytes(i) + _nbytes(o) for i, o in self._cache.values())
        if held + size <= self.budget:
            self._cache[seed] = (inputs, out)
        else:
            self._current = (seed, inputs, out)
        return inputs, out

    def _private(self, seed: int) -> list[Any]:
        """Inputs the reference may be run on again: a copy when it changes its inputs."""
        inputs, _ = self._entry(seed)
        return _clone(inputs) if self.flags.get("mutates_inputs") else inputs

    def reference(self, msg: dict) -> dict:
        """Run the reference for every seed (caching what fits); its flags and layouts."""
        seeds = msg["seeds"]
        t0 = time.perf_counter()
        for seed in seeds:  # what fits is made now; the rest when its trial comes
            self._entry(seed)
            if seed not in self._cache:
                break
        inputs, out = self._entry(seeds[0])
        return {
            "ok": True,
            "inputs": describe(inputs, layout),
            "outputs": describe(out, layout),
            "input_bytes": _nbytes(inputs),
            "output_bytes": _nbytes(out),
            "cached": sorted(self._cache),
            "seconds": round(time.perf_counter() - t0, 3),
            "peak_bytes": peak_bytes(self.device),
            **self.flags,
        }

    def fill(self, msg: dict) -> dict:
        """Write seed's inputs into the candidate's buffers (mapped once, refilled per trial)."""
        inputs, _ = self._entry(msg["seed"])
        if self._buffers is None or msg.get("buffers") != self._buffer_specs:
            try:
                self._candidate_folder(msg.get("folder"))
                self._buffers = rebuild(msg["buffers"], self._open)
            except Exception as exc:  # noqa: BLE001 - whatever the candidate's spec does
                return {"ok": False, "message": f"its input buffers could not be mapped: {exc}"}
            self._buffer_specs = msg["buffers"]
        mine, theirs = tensors(inputs), tensors(self._buffers)
        if len(mine) != len(theirs):
            return {"ok": False, "message": "the candidate allocated the wrong number of inputs"}
        for src, dst in zip(mine, theirs, strict=True):
            if src.shape != dst.shape or src.dtype != dst.dtype:
                return {"ok": False, "message": "the candidate's input buffers do not fit"}
            dst.copy_(src)
        sync(self.device)
        return {"ok": True}

    def _candidate_folder(self, folder: Any) -> None:
        """Map cpu files only from the candidate's own folder under the evaluator's."""
        if self.device != "cpu":
            return
        root = os.path.realpath(self.folder or "/nonexistent")
        if not isinstance(folder, str) or not Path(os.path.realpath(folder)).is_relative_to(root):
            raise SpecError("the candidate's folder is not under the evaluation's")
        self._folder = folder

    def _open(self, spec: dict) -> torch.Tensor:
        return open_spec(spec, self.device, self._folder)

    def check(self, msg: dict) -> dict:
        """Compare the candidate's outputs for ``seed`` with the reference, on the device."""
        inputs, ref = self._entry(msg["seed"])
        try:
            self._candidate_folder(msg.get("folder"))
            new = rebuild(msg["outputs"], self._open)
        except Exception as exc:  # noqa: BLE001 - whatever the candidate's spec does
            return {"ok": True, "match": False, "message": f"outputs could not be mapped: {exc}"}
        tol = (msg["atol"], msg["rtol"])
        cmp = compare_outputs(ref, new, *tol)
        mutated = self._buffers is not None and any(
            not same_bits(a, b)
            for a, b in zip(tensors(inputs), tensors(self._buffers), strict=False)
        )
        aliased = bool(set(_spans(new)) & set(_spans(self._buffers)))
        answer = {
            "ok": True,
            "match": cmp.ok,
            "message": cmp.message,
            "max_abs_err": cmp.max_abs_err,
            "max_rel_err": cmp.max_rel_err,
            "mutated": mutated,
            "aliased": aliased,
            # A wrong output that matches the previous trial's reference is a cache (looked
            # at while that reference is still held: never recomputed for this).
            "stale": bool(not cmp.ok and self._held(msg.get("previous"), new, tol)),
            "peak_bytes": peak_bytes(self.device),
        }
        del new
        sync(self.device)
        return answer

    def _held(self, seed: Any, new: Any, tol: tuple[float, float]) -> bool:
        if seed in self._cache:
            return compare_outputs(self._cache[seed][1], new, *tol).ok
        return False

    def release(self, msg: dict) -> dict:
        """Forget the candidate's buffers (its worker is about to free them)."""
        self._buffers = self._buffer_specs = self._folder = None
        if self.device != "cpu":
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
        return {"ok": True}

    # -- timing ----------------------------------------------------------------------
    def timed(self, msg: dict) -> dict:
        """Warm up or time the reference (``which=ref``) or torch.compile's (``compiled``)."""
        from .timing import make_timer, run_trials, warm

        inputs = self._private(msg["seed"])
        if self._timer is None:
            self._timer = make_timer(self.device, self.flush_bytes)
        if msg.get("which") == "compiled":
            if self._compiled is None:
                return {"ok": False, "message": "no compiled reference"}
            model = self._compiled
        else:
            model = self.model
        last: list[Any] = [None]

        def call() -> None:
            # As in the candidate's worker: the previous output is freed inside the call.
            last[0] = None
            last[0] = model(*inputs)

        with torch.no_grad():
            if msg.get("warmup"):
                est = warm(call, self._timer, msg["warmup"], msg["warmup_s"])
                return {"ok": True, "est_ms": est, "method": self._timer.method}
            samples = run_trials(
                call, self._timer, msg["trials"], before=lambda: spoil(last[0], inputs)
            )
        return {"ok": True, "ms": samples, "method": self._timer.method}

    def crosscheck(self, msg: dict) -> dict:
        """The profiler's device time of the reference's timed call (crosscheck.py)."""
        from .crosscheck import device_times
        from .timing import make_timer

        inputs = self._private(msg["seed"])
        if self._timer is None:
            self._timer = make_timer(self.device, self.flush_bytes)
        timer, model = self._timer, self.model
        with torch.no_grad():
            return device_times(
                lambda: model(*inputs), timer.flush, timer.sync, self.device, msg.get("calls", 10)
            )

    def compile(self, msg: dict) -> dict:
        """``torch.compile`` a fresh reference and run it once (not timed); errors said."""
        inputs = self._private(msg["seed"])
        model = build_model(
            self.problem, self.problem.Model, self.init_seed, self.device, self.dtype
        )
        t0 = time.perf_counter()
        try:
            compiled = torch.compile(model)
            with torch.no_grad():
                compiled(*inputs)
            sync(self.device)
        except Exception as exc:  # noqa: BLE001 - the baseline is optional
            return {"ok": False, "message": f"{type(exc).__name__}: {exc}".splitlines()[0][:300]}
        self._compiled = compiled
        return {"ok": True, "seconds": round(time.perf_counter() - t0, 3)}

    # -- facts -----------------------------------------------------------------------
    def work(self, msg: dict) -> dict:
        """Bytes the reference must move (inputs read + outputs written), its FLOPs and ops."""
        from .audit import audit_forward

        _, out = self._entry(msg["seed"])
        inputs = self._private(msg["seed"])
        with torch.no_grad():
            report = audit_forward(
                lambda: self.model(*inputs), self.device, streams=False, flops=True
            )
        return {
            "ok": True,
            "bytes": moved_bytes([inputs, out]),
            "flops": int(report["flops"]),
            "ref_ops": [r["op"] for r in report.get("torch_ops", [])],
        }

    def hardware(self, msg: dict) -> dict:
        import platform

        from ..runinfo import cpu_model

        info: dict[str, Any] = {
            "torch": torch.__version__,
            "python": platform.python_version(),
            "cpu": cpu_model(),
            "threads": torch.get_num_threads(),
            "cpu_affinity": sorted(os.sched_getaffinity(0)),
            "visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")
            or os.environ.get("HIP_VISIBLE_DEVICES"),
        }
        if self.device != "cpu" and torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            info["gpu"] = props.name
            info["gpu_memory_gb"] = round(props.total_memory / 1e9, 1)
            bus = getattr(props, "pci_bus_id", None)
            if bus is not None:
                domain = getattr(props, "pci_domain_id", 0) or 0
                dev = getattr(props, "pci_device_id", 0) or 0
                info["pci_bus_id"] = f"{domain:04x}:{bus:02x}:{dev:02x}.0"
            hip = getattr(torch.version, "hip", None)
            info["arch"] = props.gcnArchName if hip else f"sm_{props.major}{props.minor}"
            info["cuda"] = torch.version.cuda
            info["hip"] = hip
        return {"ok": True, "hardware": info}

    def roofs(self, msg: dict) -> dict:
        """This cpu's measured roofs (roofline.measure_cpu): there is no datasheet for a
        cpu. Measured once per trusted process, when the first roofline needs them."""
        from ..roofline import measure_cpu

        if self._roofs is None:
            self._roofs = measure_cpu(torch.get_num_threads())
        return {"ok": True, "roofs": self._roofs}

    def handlers(self) -> dict[str, Any]:
        return {
            "load": self.load,
            "reference": self.reference,
            "fill": self.fill,
            "check": self.check,
            "release": self.release,
            "timed": self.timed,
            "crosscheck": self.crosscheck,
            "compile": self.compile,
            "work": self.work,
            "hardware": self.hardware,
            "roofs": self.roofs,
        }
