"""A worker's filesystem: read-only everywhere but its own scratch folders.

A candidate that may write anywhere its user may can poison what runs after it: a ``.pth``
file or a patched module in site-packages runs in every later Python process, the next
trusted (reference) worker included. So each worker's supervisor (reaper.py), before it
starts the worker, moves itself into new Linux namespaces — no privileges needed where
unprivileged user namespaces are allowed, and the same steps as root:

1. a user and a mount namespace (``unshare``), the user's own uid and gid mapped to
   themselves, so files keep their owners and the process gains nothing outside;
2. mount events made private (nothing here reaches the host's mounts);
3. the writable folders (the worker's scratch folder, the build cache, the shared-memory
   folder) bind-mounted onto themselves;
4. every other mount remounted read-only, keeping the flags it had — except ``/proc``,
   ``/sys`` and ``/dev``, which hold no code and which GPU drivers need as they are
   (device nodes stay usable on read-only mounts anyway);
5. a second, nested user and mount namespace: mounts copied into a namespace owned by a
   less privileged user namespace are locked, so code inside cannot remount them
   read-write or unmount them, whatever capabilities it holds there.

Where any step is refused (a container's seccomp policy, ``kernel.unprivileged_userns_clone
= 0``, not Linux), :func:`isolate` raises :class:`IsolationError` with the reason; the
worker then runs without it and the result says ``isolation: none`` (or, with
``--hk-isolation required``, the run refuses to start).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24

#: Per-mount options kept across a read-only remount (dropping a locked one is refused).
KEPT = {
    "nosuid": MS_NOSUID,
    "nodev": MS_NODEV,
    "noexec": MS_NOEXEC,
    "noatime": MS_NOATIME,
    "nodiratime": MS_NODIRATIME,
    "relatime": MS_RELATIME,
    "strictatime": MS_STRICTATIME,
}
#: Left as they are: no code lives there, and drivers need them.
SKIPPED = ("/proc", "/sys", "/dev")


class IsolationError(RuntimeError):
    """The namespaces could not be set up; the message says which step and why."""


def _libc() -> ctypes.CDLL:
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError as exc:
        raise IsolationError(f"no C library to call: {exc}") from None


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise IsolationError(f"{what}: {os.strerror(err)} ({errno.errorcode.get(err, err)})")


def _unshare(libc: ctypes.CDLL, uid: int, gid: int) -> None:
    _check(libc.unshare(CLONE_NEWUSER | CLONE_NEWNS), "unshare(user, mount)")
    try:
        with open("/proc/self/setgroups", "w", encoding="ascii") as fh:
            fh.write("deny")
        with open("/proc/self/uid_map", "w", encoding="ascii") as fh:
            fh.write(f"{uid} {uid} 1")
        with open("/proc/self/gid_map", "w", encoding="ascii") as fh:
            fh.write(f"{gid} {gid} 1")
    except OSError as exc:
        raise IsolationError(f"user namespace id maps: {exc}") from None


def _mount(libc: ctypes.CDLL, source: str | None, target: str, flags: int, what: str) -> None:
    src = source.encode() if source is not None else None
    _check(libc.mount(src, target.encode(), None, flags, None), f"{what} {target}")


def mounts() -> list[tuple[str, int]]:
    """(mount point, kept flags) of every mount of this process, parents first."""
    out = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as fh:
        for line in fh:
            fields = line.split()
            if len(fields) < 6:
                continue
            point = fields[4].encode().decode("unicode_escape")
            flags = 0
            for opt in fields[5].split(","):
                flags |= KEPT.get(opt, 0)
            out.append((point, flags))
    return out


def _under(path: str, roots: list[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def isolate(writable: list[str]) -> None:
    """Make this process's (and its future children's) filesystem read-only except
    ``writable`` (existing folders). Raises IsolationError; call before any thread starts."""
    libc = _libc()
    uid, gid = os.geteuid(), os.getegid()
    keep = sorted({os.path.realpath(p) for p in writable if os.path.isdir(p)})
    _unshare(libc, uid, gid)
    _mount(libc, None, "/", MS_REC | MS_PRIVATE, "make private")
    for path in keep:
        _mount(libc, path, path, MS_BIND | MS_REC, "bind")
    for point, flags in mounts():
        if _under(point, list(SKIPPED)) or point in keep:
            continue
        try:
            _mount(libc, None, point, MS_REMOUNT | MS_BIND | MS_RDONLY | flags, "read-only")
        except IsolationError:
            if point == "/":
                raise
            # A mount this namespace may not change (or one gone meanwhile): only its
            # own subtree stays writable, and only if its filesystem allows it.
            continue
    _unshare(libc, uid, gid)  # locks every mount above against remounting
    # The working directory still points into the mount it was entered through (now
    # read-only) when a bind now covers it: enter it again by its path.
    with contextlib.suppress(OSError):
        os.chdir(os.getcwd())


def unavailable() -> str | None:
    """Why workers cannot be isolated on this host, or None (tried in a child process:
    the namespaces cannot be left once entered)."""
    import subprocess
    import sys

    code = "from pytest_hipkittens.evaluate.isolation import isolate; isolate([])"
    try:
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return str(exc)
    if done.returncode == 0:
        return None
    lines = (done.stderr or "").strip().splitlines()
    last = lines[-1] if lines else "failed"
    return last.split("IsolationError: ", 1)[-1]
