"""Which way each ``.cu`` of a build compiled: the nvcc wrapper's record, the result's
``build_route``.

The wrapper (nvcc.py) tries the split build, then the lean header, then the file as
written, and falls back when it is unsure or a route fails. That is right, and it is also
how a CUDA or torch upgrade could send every build down the slow path without anyone
noticing; so every compile leaves a small JSON record beside its object
(``<object>.hk-route.json``, rewritten at each step, so a build killed mid-way still says
which route it was in), and the parent reads the records of a candidate's build folder
into its result:

``build_route``: ``{"route": R, "files": {"<extension>/cuda.cu": {...}}}`` where each file has
its ``route`` (``split``, ``lean``, ``as written``), ``ok`` (false: the compile failed there;
null: it never finished), ``seconds``, ``fell_back`` (``{route: why}`` for each faster route
refused or failed: the splitter's refusal, or the compiler's first error line) and, when
the wrapper stopped at a route because the error is the candidate's own (own_error.py),
``own_error``. ``R`` is the slowest route of the files, or

* ``host``: no ``.cu`` in the build folder (the cpu backend, C++ or Triton candidates);
* ``plain``: the compiler wrappers are off (``--hk-plain-builds``, the hip backend);
* ``unknown``: a ``.cu`` whose record is missing or unreadable.

The build folder is the candidate's (its process and compilers write there), so the parent
takes the records as untrusted data: regular files only (no links, FIFOs or devices, which
could block or redirect a read), at most :data:`MAX_BYTES` each, fields checked and cut to
size; anything else is ``unknown``, never an exception.
"""

from __future__ import annotations

import json
import os
import stat
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config import EvalConfig

#: the wrapper's routes, fastest first
ROUTES = ("split", "lean", "as written")
#: what a result's route can also be (see the module docstring)
OTHER_ROUTES = ("host", "plain", "unknown")
#: the record's name is its object's plus this
SUFFIX = ".hk-route.json"
#: a record, a reason, how many files and folders are read at most
MAX_BYTES = 64 * 1024
MAX_REASON = 300
MAX_FILES = 32
MAX_FOLDERS = 64
MAX_ENTRIES = 4096


def first_line(text: str) -> str:
    """The first non-blank line of ``text``, cut to :data:`MAX_REASON` characters."""
    return next((line.strip() for line in text.splitlines() if line.strip()), "")[:MAX_REASON]


class Recorder:
    """The wrapper's record of one ``.cu`` compile. Writing it never fails the compile."""

    def __init__(self, output: str | None, source: Path) -> None:
        self.path = Path(output + SUFFIX) if output else None
        self.t0 = time.monotonic()
        self.data: dict[str, Any] = {
            "source": source.name,
            "route": None,
            "ok": None,
            "seconds": None,
            "fell_back": {},
        }

    def enter(self, route: str) -> None:
        self.data["route"] = route
        self._write()

    def fell_back(self, route: str, why: str) -> None:
        self.data["fell_back"][route] = first_line(why) or "(no reason given)"
        self._write()

    def done(self, ok: bool, own_error: str | None = None) -> None:
        self.data.update(ok=ok, seconds=round(time.monotonic() - self.t0, 3))
        if own_error:
            self.data["own_error"] = first_line(own_error)
        self._write()

    def _write(self) -> None:
        if self.path is None:
            return
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        try:
            tmp.write_text(json.dumps(self.data) + "\n", encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError:
            pass


# -- the parent's side --------------------------------------------------------------------
def _entries(folder: Path) -> Iterator[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as it:
            for n, entry in enumerate(it):
                if n >= MAX_ENTRIES:
                    return
                yield entry
    except OSError:
        return


def _read_small(path: str) -> bytes | None:
    """The bytes of a regular file of at most MAX_BYTES, opened without following a link or
    blocking on a FIFO; None for anything else."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_BYTES:
            return None
        return os.read(fd, MAX_BYTES + 1)[:MAX_BYTES]
    except OSError:
        return None
    finally:
        os.close(fd)


def _text(value: Any) -> str | None:
    return first_line(value) if isinstance(value, str) else None


def parse(data: bytes | None) -> dict[str, Any] | None:
    """A record's fields, checked (None: not a record this harness wrote)."""
    try:
        raw = json.loads(data) if data is not None else None
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(raw, dict) or raw.get("route") not in ROUTES:
        return None
    out: dict[str, Any] = {"route": raw["route"]}
    ok = raw.get("ok")
    out["ok"] = ok if isinstance(ok, bool) else None
    seconds = raw.get("seconds")
    if isinstance(seconds, int | float) and not isinstance(seconds, bool) and seconds >= 0:
        out["seconds"] = round(float(seconds), 3)
    fell = raw.get("fell_back")
    out["fell_back"] = {
        k: why
        for k, v in (fell.items() if isinstance(fell, dict) else ())
        if k in ROUTES and (why := _text(v)) is not None
    }
    if own := _text(raw.get("own_error")):
        out["own_error"] = own
    return out


def _source_name(raw: bytes | None) -> str | None:
    try:
        name = json.loads(raw)["source"] if raw is not None else None
    except (ValueError, UnicodeDecodeError, RecursionError, TypeError, KeyError):
        return None
    return name if isinstance(name, str) and name.endswith(".cu") and "/" not in name else None


def _folder_files(folder: Path, prefix: str) -> dict[str, dict[str, Any]]:
    """The ``.cu`` files of one folder and their records."""
    cus: list[str] = []
    records: dict[str, dict[str, Any]] = {}
    for entry in _entries(folder):
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
        except OSError:
            continue
        if entry.name.endswith(".cu"):
            cus.append(entry.name)
        elif entry.name.endswith(SUFFIX):
            raw = _read_small(entry.path)
            record = parse(raw)
            # torch names the object of x.cu x.cuda.o: an unreadable record still says whose
            source = _source_name(raw) or entry.name.removesuffix(SUFFIX).replace(".cuda.o", ".cu")
            records[source] = record or {"route": "unknown", "why": "unreadable record"}
    files = {}
    for name in sorted(set(cus) | set(records)):
        files[prefix + name] = records.get(name) or {
            "route": "unknown",
            "why": "no record of its compile",
        }
    return files


def _slowest(routes: Iterable[str]) -> str:
    order = {r: n for n, r in enumerate((*ROUTES, "unknown"))}
    return max(routes, key=lambda r: order.get(r, len(order)))


def read(ext_dir: Path) -> dict[str, Any]:
    """``build_route`` of a wrapped cuda build whose extensions were built under ``ext_dir``
    (``TORCH_EXTENSIONS_DIR``: one folder per extension)."""
    files = _folder_files(ext_dir, "")
    folders = 0
    for entry in _entries(ext_dir):
        try:
            is_dir = entry.is_dir(follow_symlinks=False)
        except OSError:
            continue
        if is_dir:
            folders += 1
            if folders > MAX_FOLDERS:
                break
            files.update(_folder_files(Path(entry.path), f"{entry.name}/"))
    if len(files) > MAX_FILES:
        kept = dict(sorted(files.items())[:MAX_FILES])
        return {"route": _slowest(r["route"] for r in files.values()), "files": kept}
    if not files:
        return {"route": "host"}
    return {"route": _slowest(r["route"] for r in files.values()), "files": files}


def build_route(ext_dir: Path, cfg: EvalConfig) -> dict[str, Any]:
    """A candidate's ``build_route`` (module docstring), read after its build."""
    from .build import wrapped

    if not wrapped(cfg):
        why = "--hk-plain-builds" if cfg.backend.name in ("cpu", "cuda") else "hipcc as written"
        return {"route": "plain", "why": why}
    if cfg.backend.name != "cuda":
        return {"route": "host"}
    return read(ext_dir)


def tally(results: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Candidates per route, ``.cu`` files per route, and why files fell back (the reasons
    counted as given), for a batch of results (the throughput benchmark's summary)."""
    routes: Counter[str] = Counter()
    files: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    for r in results:
        route = r.get("build_route") or {}
        if not isinstance(route, dict) or not route.get("route"):
            continue
        routes[route["route"]] += 1
        for entry in (route.get("files") or {}).values():
            files[entry.get("route", "unknown")] += 1
            for fell, why in (entry.get("fell_back") or {}).items():
                reasons[f"{fell}: {why}"] += 1
            if entry.get("own_error"):
                reasons[f"stopped at {entry.get('route')}: the candidate's own error"] += 1
    return {"candidates": dict(routes), "files": dict(files), "fell_back": dict(reasons)}
