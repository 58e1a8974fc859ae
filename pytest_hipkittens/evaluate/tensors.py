"""Tensors between the trusted process and a candidate's worker: memory handles, never pickles.

KernelBench's level-1 tensors reach several GB, so evaluation data never goes through files
or serialisation. A tensor crosses as a small JSON *spec* that names memory the other
process maps:

* on a GPU, a CUDA/HIP IPC handle of the tensor's allocation (``cudaIpcGetMemHandle``,
  through the same torch machinery ``torch.multiprocessing`` uses), rebuilt on the other
  side from plain fields the receiver checks — no pickled callable is ever loaded;
* on the CPU, a file in a RAM-backed folder (``/dev/shm``) that both processes map shared.

Direction matters for safety: only the **candidate's worker exports** memory. It allocates
the buffers its inputs are written into and hands over its outputs; the trusted process
opens those and never exports any of its own memory, so nothing a candidate maps can reach
the reference's outputs or the trusted copy of the inputs. (An IPC handle exposes the
whole allocation block it lies in, which on the trusted side could hold other tensors.)

Values that are not tensors (ints, floats, bools, strings, None, nested lists of them)
travel inline in the spec.
"""

from __future__ import annotations

import base64
import functools
import os
import re
import uuid
from pathlib import Path
from typing import Any

import torch

#: Scalar types a spec may name (``str(torch.float32)`` → dtype).
DTYPES: dict[str, torch.dtype] = {
    str(d): d
    for d in (
        torch.float64,
        torch.float32,
        torch.float16,
        torch.bfloat16,
        torch.int64,
        torch.int32,
        torch.int16,
        torch.int8,
        torch.uint8,
        torch.bool,
        torch.complex64,
        torch.complex128,
    )
}


class SpecError(ValueError):
    """A spec this side refuses to map (wrong type, unknown dtype, bad sizes)."""


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode()


def _unb64(text: Any) -> bytes | None:
    if text is None:
        return None
    if not isinstance(text, str):
        raise SpecError("handle is not a string")
    return base64.b64decode(text.encode(), validate=True)


def _ints(value: Any, what: str) -> list[int]:
    if not isinstance(value, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        raise SpecError(f"{what} must be a list of ints")
    return value


def _extent(shape: list[int], stride: list[int], offset: int) -> int:
    """Elements a strided view needs from its storage (0 for an empty tensor)."""
    if any(s == 0 for s in shape):
        return 0
    return offset + 1 + sum((n - 1) * st for n, st in zip(shape, stride, strict=True))


def layout(t: torch.Tensor) -> dict[str, Any]:
    """Shape, stride and dtype of ``t``: what the other side allocates to receive it."""
    return {
        "kind": "tensor",
        "shape": list(t.shape),
        "stride": list(t.stride()),
        "dtype": str(t.dtype),
    }


def describe(value: Any, convert: Any) -> Any:
    """A JSON spec of ``value``: tensors through ``convert(t)``, plain values inline."""
    if isinstance(value, torch.Tensor):
        return convert(value)
    if isinstance(value, (list, tuple)):
        return {
            "kind": "tuple" if isinstance(value, tuple) else "list",
            "items": [describe(v, convert) for v in value],
        }
    if value is None or isinstance(value, (bool, int, float, str)):
        return {"kind": "value", "value": value}
    raise SpecError(f"cannot pass a {type(value).__name__} between processes")


def rebuild(spec: Any, open_tensor: Any) -> Any:
    """Inverse of :func:`describe`: tensors through ``open_tensor(spec)``."""
    if not isinstance(spec, dict):
        raise SpecError("spec is not an object")
    kind = spec.get("kind")
    if kind == "tensor":
        return open_tensor(spec)
    if kind in ("list", "tuple"):
        items = spec.get("items")
        if not isinstance(items, list):
            raise SpecError("items must be a list")
        out = [rebuild(s, open_tensor) for s in items]
        return tuple(out) if kind == "tuple" else out
    if kind == "value":
        value = spec.get("value")
        if value is not None and not isinstance(value, (bool, int, float, str)):
            raise SpecError("inline values must be plain scalars")
        return value
    raise SpecError(f"unknown spec kind {kind!r}")


def tensors(value: Any) -> list[torch.Tensor]:
    """Every tensor in a value (nested lists and tuples), in order."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in tensors(v)]
    return []


def _dtype(spec: dict[str, Any]) -> torch.dtype:
    dtype = DTYPES.get(spec.get("dtype"))  # type: ignore[arg-type]
    if dtype is None:
        raise SpecError(f"unsupported dtype {spec.get('dtype')!r}")
    return dtype


def _geometry(spec: dict[str, Any]) -> tuple[list[int], list[int], int]:
    shape = _ints(spec.get("shape"), "shape")
    stride = _ints(spec.get("stride"), "stride")
    offset = spec.get("offset", 0)
    if len(shape) != len(stride) or not isinstance(offset, int) or offset < 0:
        raise SpecError("shape, stride and offset do not fit")
    if any(n < 0 for n in shape) or any(s < 0 for s in stride):
        raise SpecError("negative sizes or strides")
    return shape, stride, offset


class Arena:
    """Memory this process shares: CUDA IPC on a GPU, files under ``folder`` on the CPU.

    Used by the candidate's worker only (see the module docstring). It keeps every shared
    tensor alive until :meth:`release`, so the trusted side never maps freed memory.
    """

    def __init__(self, device: str, folder: str | None) -> None:
        self.device = device
        self.folder = Path(folder) if folder else None
        self._held: list[torch.Tensor] = []
        self._files: list[tuple[torch.Tensor, Path]] = []
        #: released files by size, mapped already: the next trial's outputs reuse their pages
        self._spare: dict[int, list[tuple[torch.Tensor, Path]]] = {}

    def _shm(self, nbytes: int) -> tuple[torch.Tensor, str]:
        if self.folder is None:
            raise SpecError("no shared-memory folder for cpu tensors")
        if self._spare.get(nbytes):
            flat, path = self._spare[nbytes].pop()
        else:
            path = self.folder / f"t-{uuid.uuid4().hex}.bin"
            flat = torch.from_file(str(path), shared=True, size=nbytes, dtype=torch.uint8)
        self._files.append((flat, path))
        return flat, str(path)

    def alloc(self, spec: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
        """An uninitialised tensor laid out as ``spec`` says, and the spec to map it."""
        dtype = _dtype(spec)
        shape, stride, offset = _geometry(spec)
        numel = _extent(shape, stride, offset)
        if self.device == "cpu":
            nbytes = numel * torch.empty((), dtype=dtype).element_size()
            if nbytes == 0:
                t = torch.empty(shape, dtype=dtype)
                return t, {**layout(t), "empty": True}
            flat, path = self._shm(nbytes)
            t = flat.view(dtype).as_strided(shape, stride, offset)
            self._held.append(t)
            return t, {**layout(t), "offset": offset, "file": path, "nbytes": nbytes}
        storage = torch.empty(max(numel, 1), dtype=dtype, device=self.device)
        t = storage.as_strided(shape, stride, offset)
        return t, self.export(t)

    def export(self, t: torch.Tensor) -> dict[str, Any]:
        """A spec the other process can map ``t`` from (copied into shared memory on cpu)."""
        t = t.detach()
        if t.device.type == "cpu":
            if self.device != "cpu":
                raise SpecError(f"output is on the cpu, expected {self.device}")
            if t.numel() == 0:
                return {**layout(t), "empty": True}
            dense = t.contiguous()
            flat, path = self._shm(dense.numel() * dense.element_size())
            flat.view(dense.dtype).view(dense.shape).copy_(dense)
            self._held.append(flat)
            return {
                "kind": "tensor",
                "shape": list(dense.shape),
                "stride": list(dense.stride()),
                "dtype": str(dense.dtype),
                "offset": 0,
                "file": path,
                "nbytes": flat.numel(),
            }
        if self.device == "cpu":
            raise SpecError(f"output is on {t.device}, expected the cpu")
        if t.numel() == 0:
            return {**layout(t), "empty": True}
        from torch.multiprocessing.reductions import reduce_tensor

        _, args = reduce_tensor(t)
        (_, size, stride, offset, _, dtype, device, handle, size_bytes, offset_bytes) = args[:10]
        (_, ref_handle, ref_offset, event_handle, event_sync) = args[10:15]
        self._held.append(t)
        return {
            "kind": "tensor",
            "shape": list(size),
            "stride": list(stride),
            "offset": int(offset),
            "dtype": str(dtype),
            "device": int(device),
            "handle": _b64(handle),
            "size_bytes": int(size_bytes),
            "offset_bytes": int(offset_bytes),
            "ref_handle": _b64(ref_handle),
            "ref_offset": int(ref_offset),
            "event_handle": _b64(event_handle),
            "event_sync": bool(event_sync),
        }

    def release(self) -> None:
        """Drop every shared tensor (the other side has closed them); keep cpu files for reuse."""
        self._held.clear()
        for flat, path in self._files:
            self._spare.setdefault(flat.numel(), []).append((flat, path))
        self._files.clear()
        if self.device != "cpu":
            torch.cuda.synchronize()
            torch.cuda.ipc_collect()


def open_spec(spec: dict[str, Any], device: str, folder: str | None) -> torch.Tensor:
    """Map a tensor another process shared (the trusted side's end of :class:`Arena`).

    Every field is checked before use: the spec comes from an untrusted process. A CPU
    file must lie in ``folder`` (the evaluation's own shared-memory folder).
    """
    dtype = _dtype(spec)
    shape, stride, offset = _geometry(spec)
    if spec.get("empty"):
        if _extent(shape, stride, offset):
            raise SpecError("an empty spec with elements")
        return torch.empty(shape, dtype=dtype, device=device)
    numel = _extent(shape, stride, offset)
    itemsize = torch.empty((), dtype=dtype).element_size()
    if device == "cpu":
        path = spec.get("file")
        nbytes = spec.get("nbytes")
        if not isinstance(path, str) or not isinstance(nbytes, int) or folder is None:
            raise SpecError("cpu spec needs a file and its size")
        real = Path(os.path.realpath(path))
        if not real.is_relative_to(os.path.realpath(folder)) or not real.is_file():
            raise SpecError("shared file outside the evaluation's folder")
        if numel * itemsize > nbytes or real.stat().st_size < nbytes:
            raise SpecError("shared file is smaller than the tensor")
        flat = torch.from_file(str(real), shared=True, size=nbytes, dtype=torch.uint8)
        return flat[: nbytes - nbytes % itemsize].view(dtype).as_strided(shape, stride, offset)
    size_bytes, offset_bytes = spec.get("size_bytes"), spec.get("offset_bytes")
    ref_offset = spec.get("ref_offset")
    if not all(isinstance(v, int) for v in (size_bytes, offset_bytes, ref_offset)):
        raise SpecError("gpu spec needs its storage size and offsets")
    if offset_bytes < 0 or size_bytes < 0 or numel * itemsize > size_bytes:
        raise SpecError("storage is smaller than the tensor")
    if not 0 <= ref_offset < REF_COUNTER_SLOTS:
        raise SpecError("reference-counter offset out of range")
    ref_handle = _unb64(spec.get("ref_handle"))
    if ref_handle is None or not REF_COUNTER_NAME.fullmatch(ref_handle):
        raise SpecError("reference-counter handle is not torch's")
    handle, event = _unb64(spec.get("handle")), _unb64(spec.get("event_handle"))
    if handle is None or len(handle) > 512 or len(event or b"") > 512:
        raise SpecError("bad IPC handle")
    if event is None and spec.get("event_sync"):
        raise SpecError("an event to wait for, without its handle")
    from torch.multiprocessing.reductions import rebuild_cuda_tensor

    dev = spec.get("device")
    if not isinstance(dev, int) or dev != torch.cuda.current_device():
        raise SpecError("tensor is on another device")
    t = rebuild_cuda_tensor(
        torch.Tensor,
        torch.Size(shape),
        tuple(stride),
        offset,
        torch.UntypedStorage,
        dtype,
        dev,
        handle,
        size_bytes,
        offset_bytes,
        False,
        ref_handle,
        ref_offset,
        event,
        bool(spec.get("event_sync")),
    )
    # The handle names an allocation of the exporting process; the offsets are its word.
    # Check them against the mapping the driver made before anything reads or writes.
    base = t.untyped_storage().data_ptr() - offset_bytes
    mapped = allocation_range(base)
    if mapped is not None and not (
        mapped[0] <= base and base + offset_bytes + size_bytes <= mapped[0] + mapped[1]
    ):
        raise SpecError("the tensor lies outside the memory its handle maps")
    return t


#: torch's IPC reference counters: slots per shared file, and the files' names.
REF_COUNTER_SLOTS = 10000
REF_COUNTER_NAME = re.compile(rb"/torch_[A-Za-z0-9_]{1,64}")


#: Driver results that say nothing about the address (not initialised, no/invalid context,
#: deinitialised) in CUDA's and HIP's numbering.
NO_ANSWER = {3, 4, 201, 709, 101}


@functools.lru_cache(maxsize=1)
def _address_range_fn() -> tuple[Any, str] | None:
    """The driver's address-range query, looked up once per process."""
    import ctypes

    for lib, fn in (
        ("libcuda.so.1", "cuMemGetAddressRange_v2"),
        ("libamdhip64.so", "hipMemGetAddressRange"),
    ):
        try:
            return getattr(ctypes.CDLL(lib), fn), fn
        except (OSError, AttributeError):
            continue
    return None


def allocation_range(ptr: int) -> tuple[int, int] | None:
    """(base, size) of the device allocation holding ``ptr``, from the driver API.

    ``cuMemGetAddressRange`` (``hipMemGetAddressRange`` on ROCm); None where neither
    library can be loaded (the caller then relies on the checks it could make).
    """
    import ctypes

    found = _address_range_fn()
    if found is None:
        return None
    call, fn = found
    base, size = ctypes.c_uint64(0), ctypes.c_size_t(0)
    status = call(ctypes.byref(base), ctypes.byref(size), ctypes.c_uint64(ptr))
    if status in NO_ANSWER:  # no context on this thread, driver not set up: not a verdict
        return None
    if status != 0:
        raise SpecError(f"the driver does not know that address ({fn} returned {status})")
    return base.value, size.value


def spoil(out: Any, inputs: Any) -> None:
    """Overwrite the memory of a call's outputs (not of its inputs) with 0x7F bytes (NaN in
    fp16, about 3.4e38 in fp32 and bf16).

    Done between timed calls, outside the timed region, on both sides: the next call's
    output usually gets the same memory back from the allocator, and a kernel that skips
    work when its input comes back unchanged (as it does call after call in a timed loop)
    would otherwise find the previous call's answer there and pass the check of the
    round's last output. An output that shares memory with an input (problems that work
    in place) is left alone.
    """
    held = {t.untyped_storage().data_ptr() for t in tensors(inputs)}
    for t in tensors(out):
        storage = t.untyped_storage()
        if storage.nbytes() and storage.data_ptr() not in held:
            torch.empty(0, dtype=torch.uint8, device=t.device).set_(storage).fill_(0x7F)
