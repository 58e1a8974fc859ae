"""The workers' read-only filesystem (evaluate/isolation.py), in a child process."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pytest_hipkittens.evaluate.isolation import unavailable

PROBE = textwrap.dedent(
    """
    import json, os, subprocess, sys
    from pytest_hipkittens.evaluate.isolation import IsolationError, isolate
    scratch, outside = sys.argv[1], sys.argv[2]
    os.chdir(scratch)
    try:
        left = isolate([scratch])
    except IsolationError as exc:
        print(json.dumps({"error": str(exc)})); sys.exit()
    def writes(path):
        try:
            with open(path, "w"):
                pass
            return True
        except OSError:
            return False
    import ctypes
    from pytest_hipkittens.evaluate.isolation import MS_BIND, MS_REMOUNT
    # mount(2) itself: remount / without MS_RDONLY (read-write) must be refused
    remount = ctypes.CDLL(None, use_errno=True).mount(None, b"/", None, MS_REMOUNT | MS_BIND, None)
    def sysctl():
        try:
            with open("/proc/sys/vm/swappiness", "r+") as fh:
                fh.write(fh.read())
            return True
        except OSError:
            return False
    def disks():
        import stat
        found = [e.path for e in os.scandir("/dev") if stat.S_ISBLK(e.stat(follow_symlinks=False).st_mode)]
        readable = []
        for path in found:
            try:
                with open(path, "rb") as fh:
                    if fh.read(512):
                        readable.append(path)
            except OSError:
                pass
        return readable
    print(json.dumps({
        "left": left,
        "disks": disks(),
        "sysctl": sysctl(),
        "relative": writes("in-scratch.txt"),
        "absolute": writes(os.path.join(scratch, "abs.txt")),
        "outside": writes(os.path.join(outside, "x.txt")),
        "remount": remount,
        "uid": os.geteuid(),
    }))
    """
)


def test_only_the_scratch_folder_is_writable(tmp_path: Path) -> None:
    import json
    import os

    scratch, outside = tmp_path / "scratch", tmp_path / "outside"
    scratch.mkdir()
    outside.mkdir()
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(scratch), str(outside)],
        capture_output=True,
        text=True,
        check=True,
    )
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    reason = unavailable()
    # A host without namespaces refuses, with the reason unavailable() gave.
    assert ("error" in seen) == (reason is not None) and seen.get("error") == reason
    if reason is not None:
        pytest.skip(f"this host refuses user and mount namespaces: {reason}")
    assert seen == {
        "left": [],  # every mount made read-only
        "disks": [],  # no raw disk to read (or write past the read-only mounts)
        "sysctl": False,  # the host's kernel settings too, even as root
        "relative": True,  # the working directory is re-entered through the bind
        "absolute": True,
        "outside": False,
        "remount": seen["remount"],
        "uid": os.geteuid(),  # files keep their owner
    }
    assert seen["remount"] != 0  # the nested namespace locks the read-only mounts
    assert not (outside / "x.txt").exists() and (scratch / "in-scratch.txt").exists()
