"""Start and talk to an evaluation worker as an untrusted, killable subprocess.

Each worker is a fresh interpreter in its own session (process group), with core dumps
off, an optional address-space limit, and an environment from which secrets are removed.
Every request has a wall-clock timeout; on expiry the whole group (compiler children
included) is killed. A worker that dies, hangs or prints garbage costs one candidate and
never the pytest session.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

#: Variables never handed to generated code (the gateway key first of all).
SECRET_PATTERNS = (
    "LLM_GATEWAY_KEY",
    "*_KEY",
    "*_TOKEN",
    "*_SECRET",
    "*_SECRET_*",
    "*PASSWORD*",
    "*_CREDENTIALS",
    "AWS_*",
    "OPENAI_*",
    "ANTHROPIC_*",
    "HF_TOKEN",
    "GITHUB_*",
)


#: print each request's round trip (HK_TRACE=1)
TRACE = os.environ.get("HK_TRACE") == "1"


_T0 = time.monotonic()


def trace(line: str) -> None:
    """One ``[hk-trace]`` line on stderr when ``HK_TRACE=1``, stamped with the seconds since
    this module was imported (``@…``: where the gaps between requests are)."""
    if TRACE:
        print(f"[hk-trace] {line} @{time.monotonic() - _T0:.3f}", file=sys.stderr, flush=True)


#: (stage, wall-clock time) marks of this worker's start-up, set in the worker only.
_BOOT: list[tuple[str, float]] = []


def boot_mark(stage: str) -> None:
    """Mark the end of a worker start-up stage (see boot_report)."""
    _BOOT.append((stage, time.time()))


def boot_report() -> dict[str, float]:
    """Seconds each start-up stage of this worker took, the first from the parent's spawn.

    Wall-clock times (the parent's ``HK_SPAWNED_AT`` and the worker's own marks) because
    the two processes share no monotonic origin; where a worker's seconds go before it can
    serve — interpreter, ``import torch``, set-up, idle, device context — decides whether
    starting workers ahead of need pays.
    """
    try:
        last = float(os.environ.get("HK_SPAWNED_AT", ""))
    except ValueError:
        return {}
    out = {}
    for stage, t in _BOOT:
        out[stage] = round(t - last, 3)
        last = t
    return out


#: The longest answer line a worker may send (specs, tables and scalars are small; a
#: candidate's worker that streams more is treated as crashed, not buffered without end).
MAX_REPLY_BYTES = 16 << 20


class WorkerDied(RuntimeError):
    """The worker exited or stopped answering; ``kind`` says which."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind  # "timeout" | "crash"


def scrub_env(env: Mapping[str, str], patterns: Iterable[str] = SECRET_PATTERNS) -> dict[str, str]:
    """Copy of ``env`` without any variable whose name matches a secret pattern."""
    pats = [p.upper() for p in patterns]
    return {
        k: v for k, v in env.items() if not any(fnmatch.fnmatchcase(k.upper(), p) for p in pats)
    }


def apply_limits() -> None:
    """In the worker, first thing: no core dumps, the memory cap and core set it was given.

    Set by the worker on itself rather than in a ``preexec_fn``, which is unsafe when the
    parent has threads (the evaluator builds from a thread pool).
    """
    import resource

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    memory = int(os.environ.pop("HK_LIMIT_AS", "0") or 0)
    if memory:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    cores = os.environ.pop("HK_CPU_CORES", "")
    if cores:
        os.sched_setaffinity(0, [int(c) for c in cores.split(",")])


def undumpable() -> None:
    """Close this process to other processes of its user: no ptrace, no reading of its
    ``/proc/<pid>/mem`` or ``environ`` (``PR_SET_DUMPABLE`` 0).

    The trusted worker holds the reference outputs (in host memory on the cpu backend);
    a candidate of the same user could otherwise read them from there. Only a process with
    CAP_SYS_PTRACE over this one still can — not a candidate in an isolated worker
    (isolation.py), whose user namespace holds no capability here.
    """
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE


class WorkerProcess:
    """One worker process; use as a context manager so it is always reaped."""

    def __init__(
        self,
        log_path: Path,
        env: Mapping[str, str],
        *,
        memory_bytes: int | None = None,
        cwd: Path | None = None,
        cpu_cores: list[int] | None = None,
        isolation: str = "off",
        writable: Iterable[Path | str] = (),
    ) -> None:
        self.log_path = log_path
        self.trusted = env.get("HK_ROLE") == "trusted"
        #: how trace lines name it
        self.role = "trusted" if self.trusted else "candidate"
        read_fd, write_fd = os.pipe()
        child_env = dict(env)
        child_env["HK_REPLY_FD"] = str(write_fd)
        child_env["PYTHONUNBUFFERED"] = "1"
        child_env["PYTHONDONTWRITEBYTECODE"] = "1"
        child_env["HK_SPAWNED_AT"] = repr(time.time())
        if memory_bytes:
            child_env["HK_LIMIT_AS"] = str(memory_bytes)
        if cpu_cores:
            child_env["HK_CPU_CORES"] = ",".join(map(str, cpu_cores))
        if isolation != "off":
            # The supervisor (reaper.py) makes everything but these folders read-only
            # (isolation.py); temporary files go to the worker's own folder.
            child_env["HK_ISOLATE"] = isolation
            child_env["HK_WRITABLE"] = os.pathsep.join(
                str(Path(p).resolve()) for p in (cwd, *writable) if p is not None
            )
            if cwd is not None:
                child_env["TMPDIR"] = str(cwd)
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            # The worker runs under its supervisor (reaper.py): whatever it starts ends
            # with it, even outside its process group.
            [sys.executable, "-m", "pytest_hipkittens.evaluate.reaper"],
            stdin=subprocess.PIPE,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=child_env,
            cwd=str(cwd) if cwd else None,
            pass_fds=(write_fd,),
            start_new_session=True,
        )
        os.close(write_fd)
        self._reply = read_fd
        self._buf = b""

    def request(self, timeout: float, **msg: Any) -> dict[str, Any]:
        """Send one command and wait at most ``timeout`` seconds for its answer.

        With ``HK_TRACE=1`` each request's round trip is printed to stderr (where
        evaluation time goes, request by request).
        """
        if not TRACE:
            return self._request(timeout, **msg)
        t0 = time.monotonic()
        try:
            return self._request(timeout, **msg)
        finally:
            trace(f"{self.role} {msg.get('cmd')} {time.monotonic() - t0:.3f} s")

    def _request(self, timeout: float, **msg: Any) -> dict[str, Any]:
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write((json.dumps(msg) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise self._died() from None
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                self.kill()
                raise WorkerDied("timeout", f"no answer to {msg.get('cmd')!r} within {timeout:g} s")
            ready, _, _ = select.select([self._reply], [], [], min(left, 1.0))
            if ready:
                chunk = os.read(self._reply, 1 << 16)
                if not chunk:
                    raise self._died()
                self._buf += chunk
                if len(self._buf) > MAX_REPLY_BYTES and b"\n" not in self._buf:
                    self.kill()
                    raise WorkerDied("crash", "worker sent an answer too large to read")
        line, self._buf = self._buf.split(b"\n", 1)
        try:
            answer = json.loads(line)
        except (ValueError, RecursionError):  # bad JSON, bad UTF-8, a huge int, deep nesting
            self.kill()
            raise WorkerDied("crash", "worker sent a malformed answer") from None
        if not isinstance(answer, dict):
            raise WorkerDied("crash", "worker sent a malformed answer")
        return answer

    def _died(self) -> WorkerDied:
        try:
            code = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.kill()
            code = self.proc.returncode
        if code is not None and code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            return WorkerDied("crash", f"worker killed by {name}")
        return WorkerDied("crash", f"worker exited with code {code} mid-request")

    def kill(self) -> None:
        """End the worker and everything it started.

        SIGTERM asks its supervisor (reaper.py) to kill the worker and every descendant,
        including those that left the process group; it exits once they are reaped. Should
        it not, the whole group is killed.
        """
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(self.proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=15)
        # Stragglers left in the group (a supervisor that did not finish).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)

    def close(self) -> None:
        """End the worker (see kill: its supervisor kills it and all it started) and reap it.

        No graceful exit: the worker holds nothing that must be saved, and an interpreter's
        finalisation (tensors freed one by one, atexit hooks) before the device context is
        torn down costs seconds on a GPU for nothing.
        """
        t0 = time.monotonic()
        self.kill()
        trace(f"{self.role} close {time.monotonic() - t0:.3f} s")
        for f in (self.proc.stdin,):
            try:
                if f:
                    f.close()
            except OSError:
                pass
        with contextlib.suppress(OSError):
            os.close(self._reply)
        self._log.close()

    def __enter__(self) -> WorkerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_log(path: Path, limit: int = 6000) -> str:
    """The tail of a worker log, trimmed for result files and prompts."""
    try:
        data = path.read_bytes()
    except OSError:
        return ""
    text = data.decode("utf-8", "replace")
    return text if len(text) <= limit else "…" + text[-limit:]


def shm_root() -> str | None:
    """A RAM-backed folder for cpu tensors (``/dev/shm``), else None (the temp dir is used)."""
    root = "/dev/shm"
    return root if os.path.isdir(root) and os.access(root, os.W_OK) else None
