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
4. every other mount remounted read-only, keeping the flags it had — ``/sys`` and the
   kernel's settings under ``/proc`` (``/proc/sys``, ``sysrq-trigger``, …) included; only
   the rest of ``/proc`` and ``/dev`` stay as they are (no code there, drivers need them,
   and device nodes stay usable on read-only mounts anyway);
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
import re

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
#: Left writable: no code lives there, and drivers need them (device nodes stay usable on
#: read-only mounts anyway) — except the kernel's settings below.
SKIPPED = ("/proc", "/dev")
#: Made read-only although under /proc (as Docker does): host sysctls, sysrq and the like.
KERNEL_FILES = ("/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus", "/proc/fs")


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


def _mount(libc: ctypes.CDLL, source: bytes | None, target: bytes, flags: int, what: str) -> None:
    ret = libc.mount(source, target, None, flags, None)
    _check(ret, f"{what} {os.fsdecode(target)}")


_OCTAL = re.compile(rb"\\([0-7]{3})")


def mounts() -> list[tuple[bytes, int]]:
    """(mount point as bytes, kept flags) of every mount of this process, parents first.

    Read as bytes: a mount point may be any byte string, with space, tab, newline and
    backslash written as octal escapes."""
    out = []
    with open("/proc/self/mountinfo", "rb") as fh:
        for line in fh:
            fields = line.split()
            if len(fields) < 6:
                continue
            point = _OCTAL.sub(lambda m: bytes([int(m.group(1), 8)]), fields[4])
            flags = 0
            for opt in fields[5].split(b","):
                flags |= KEPT.get(opt.decode("ascii", "replace"), 0)
            out.append((point, flags))
    return out


def _under(path: bytes, roots: list[bytes]) -> bool:
    return any(path == r or path.startswith(r.rstrip(b"/") + b"/") for r in roots)


def _mask_disks(libc: ctypes.CDLL) -> None:
    """Cover every block device node with /dev/null: root keeps its uid in the namespace,
    and a raw disk opened for writing bypasses every read-only mount. Character devices
    (GPUs: nvidia*, kfd, dri) stay as they are."""
    import stat

    for folder in ("/dev", "/dev/mapper"):
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            try:
                if stat.S_ISBLK(entry.stat(follow_symlinks=False).st_mode):
                    path = os.fsencode(entry.path)
                    _mount(libc, b"/dev/null", path, MS_BIND, "mask")
            except (OSError, IsolationError):
                continue


def isolate(writable: list[str]) -> list[str]:
    """Make this process's (and its future children's) filesystem read-only except
    ``writable`` (existing folders, absolute paths).

    Returns the mount points that could not be made read-only (their filesystem refused;
    the caller reports them). Raises IsolationError when a step fails outright or a
    writable folder is missing. Call before any thread starts.
    """
    libc = _libc()
    uid, gid = os.geteuid(), os.getegid()
    missing = [p for p in writable if not os.path.isabs(p) or not os.path.isdir(p)]
    if missing:
        raise IsolationError(f"writable folder missing or relative: {missing[0]}")
    keep = sorted({os.fsencode(os.path.realpath(p)) for p in writable})
    _unshare(libc, uid, gid)
    _mount(libc, None, b"/", MS_REC | MS_PRIVATE, "make private")
    # The kernel's writable interfaces under /proc: as root (uid 0 keeps its uid here)
    # they would still change the host (sysctls, core_pattern, sysrq).
    for path in KERNEL_FILES:
        if os.path.exists(path):
            _mount(libc, os.fsencode(path), os.fsencode(path), MS_BIND | MS_REC, "bind")
    for path in keep:
        _mount(libc, path, path, MS_BIND | MS_REC, "bind")
    if uid == 0:
        _mask_disks(libc)
    kernel = [os.fsencode(p) for p in KERNEL_FILES]
    skipped = [os.fsencode(p) for p in SKIPPED]
    left: list[str] = []
    for point, flags in mounts():
        if point in keep or (_under(point, skipped) and not _under(point, kernel)):
            continue
        try:
            _mount(libc, None, point, MS_REMOUNT | MS_BIND | MS_RDONLY | flags, "read-only")
        except IsolationError:
            if point == b"/":
                raise
            left.append(os.fsdecode(point))  # its filesystem refused: reported
    _unshare(libc, uid, gid)  # locks every mount above against remounting
    # The working directory still points into the mount it was entered through (now
    # read-only) when a bind now covers it: enter it again by its path.
    with contextlib.suppress(OSError):
        os.chdir(os.getcwd())
    return left


def shortfall(left: list[str]) -> str | None:
    """How an isolation that left mounts writable falls short (None when it did not)."""
    return f"partial (still writable: {', '.join(left[:3])})" if left else None


def unavailable() -> str | None:
    """Why workers cannot be (fully) isolated on this host, or None — the same verdict
    the workers' supervisor reaches, tried in a child process (the namespaces cannot be
    left once entered)."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from pytest_hipkittens.evaluate.isolation import isolate, shortfall\n"
        "sys.exit(shortfall(isolate([])))"
    )
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
