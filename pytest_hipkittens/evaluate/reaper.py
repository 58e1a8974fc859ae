"""A worker's supervisor: nothing a candidate starts outlives its worker.

``python -m pytest_hipkittens.evaluate.reaper`` is what the parent starts (sandbox.py). It
marks itself a *child subreaper* (``PR_SET_CHILD_SUBREAPER``), forks, and runs the worker
(worker.py) in the child. Any process the candidate starts — a daemon that double-forks, a
process in a new session or process group, which a kill of the worker's group misses — is
re-parented to this process when its own parent exits, never to init. When the worker
ends (it exits, crashes, or the parent asks with SIGTERM), the supervisor kills its
remaining descendants, generation by generation, until it has no children left, then
exits with the worker's own status, so the parent sees the worker's exit code or signal.

It imports only the standard library and holds none of the worker's pipes, so its cost is
one ``fork`` and a few megabytes.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import runpy
import signal
import sys
import time

PR_SET_CHILD_SUBREAPER = 36
#: Seconds the supervisor keeps killing descendants that keep forking before it gives up.
SWEEP_LIMIT_S = 10.0


def _subreaper() -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (from /proc: every thread's ``children`` list, else a
    scan of every process's parent)."""
    found: set[int] = set()
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children", encoding="ascii") as fh:
                found.update(int(c) for c in fh.read().split())
        return sorted(found)
    except OSError:
        pass
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 1 and fields[1] == str(pid):
            found.add(int(entry))
    return sorted(found)


def sweep(limit_s: float = SWEEP_LIMIT_S) -> int:
    """Kill and reap every descendant; the number of processes killed.

    Generation by generation: a killed process's children are re-parented here and show
    up on the next pass."""
    killed: set[int] = set()
    deadline = time.monotonic() + limit_s
    me = os.getpid()
    while time.monotonic() < deadline:
        kids = children(me)
        if not kids:
            break
        for pid in kids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.005)  # the killed need a moment to become reapable
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
    return len(killed)


def supervise(worker: int) -> int:
    """Wait for the worker, then clear its descendants; the worker's wait status."""

    reaped = False

    def stop(signum: int, frame: object) -> None:
        if not reaped:  # once reaped, its pid may be someone else's
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker, signal.SIGKILL)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when the worker ends
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            return 0
        if pid == worker:
            reaped = True
            break
    killed = sweep()
    if killed:
        print(
            f"[hk] killed {killed} process(es) the worker left running", file=sys.stderr, flush=True
        )
    return status


def _isolate() -> None:
    """Enter the read-only filesystem (isolation.py) when asked; say how it went in
    ``HK_ISOLATION`` for the worker to report."""
    mode = os.environ.pop("HK_ISOLATE", "off")
    writable = [p for p in os.environ.pop("HK_WRITABLE", "").split(os.pathsep) if p]
    if mode == "off":
        os.environ["HK_ISOLATION"] = "none (off)"
        return
    from .isolation import IsolationError, isolate, shortfall

    try:
        state = shortfall(isolate(writable))
    except IsolationError as exc:
        state = f"none ({exc})"
    if state:
        if mode == "required":
            print(f"[hk] isolation required but {state}", file=sys.stderr, flush=True)
            os._exit(3)
        os.environ["HK_ISOLATION"] = state
        return
    os.environ["HK_ISOLATION"] = "read-only"


def main() -> None:
    import resource

    # It re-raises the worker's fatal signal on itself: no core file for that either.
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    _isolate()  # before the fork and before any thread: the worker inherits it
    _subreaper()  # without it (not Linux), orphans escape as they would anyway
    worker = os.fork()
    if worker == 0:
        sys.argv = ["pytest_hipkittens.evaluate.worker", *sys.argv[1:]]
        runpy.run_module("pytest_hipkittens.evaluate.worker", run_name="__main__", alter_sys=True)
        return
    # The worker's pipes are the worker's: the parent must see them close when it dies.
    os.close(0)
    reply = os.environ.get("HK_REPLY_FD")
    if reply and reply.isdigit():
        with contextlib.suppress(OSError):
            os.close(int(reply))
    status = supervise(worker)
    sys.stderr.flush()
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig not in (signal.SIGKILL, signal.SIGSTOP):
            signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
    os._exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 1)


if __name__ == "__main__":
    main()
