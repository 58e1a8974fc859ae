"""The results tree: every prompt, response, candidate and result, written atomically.

Layout (docs/architecture.md, "File contracts")::

    results/
      summary.json  detailed_report.txt  detailed_report.json  batch_run.log
      superseded/level1/19_ReLU.<ns>/   a problem's earlier work, set aside by --hk-redo
      level1/19_ReLU/
        prompt_N.txt  response_N.txt  code_N.py  result_N.json   (N = 1, 2, … per candidate)
        best_prompt.txt  best_code.py  best_result.json          (written when the problem ends)

Each candidate of a problem gets the next N; its result says which attempt and sample it
was. Files are written to a temporary name in the same folder and renamed, so a reader
(a report, a monitor, a resumed run) never sees half a file. A problem is *finished* once
``best_result.json`` exists; a re-run skips it unless asked to redo.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

INDEX_RE = re.compile(r"^result_(\d+)\.json$")


def _read_umask() -> int:
    """The process's umask: read by setting it and setting it back, once, at import (before
    any thread of ours could create a file in between)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def write_atomic(path: Path, data: str | bytes, mode: int | None = None) -> None:
    """Write ``data`` to ``path`` via a temp file + rename in the same directory.

    ``mode`` (e.g. 0o755) is set on the temp file, so the file never exists without it;
    by default the file gets the mode any file the user writes gets (0o666 less the umask:
    a temp file is 0o600, which hid a shared tree from ``hk-monitor`` run by a colleague).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    how = "wb" if isinstance(data, bytes) else "w"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, how, **({} if isinstance(data, bytes) else {"encoding": "utf-8"})) as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode if mode is not None else 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_if_changed(path: Path, text: str, mode: int | None = None) -> None:
    """``write_atomic`` unless ``path`` already holds ``text`` (files shared by processes)."""
    try:
        if path.read_text(encoding="utf-8") == text:
            return
    except OSError:
        pass
    write_atomic(path, text, mode)


def write_json(path: Path, obj: Any) -> None:
    write_atomic(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def read_json(path: Path) -> Any | None:
    """Parsed JSON, or None if the file is missing or unreadable (never raises)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


class ProblemResults:
    """The folder of one problem."""

    def __init__(self, root: Path, key: str) -> None:
        self.key = key
        self.root = root
        self.dir = root / key

    def next_index(self) -> int:
        used = [int(m.group(1)) for p in self._list() if (m := INDEX_RE.match(p.name))]
        return max(used, default=0) + 1

    def _list(self) -> list[Path]:
        return list(self.dir.iterdir()) if self.dir.is_dir() else []

    def write_candidate(
        self,
        n: int,
        *,
        prompt: str,
        response: str,
        code: str | None,
        result: dict[str, Any],
    ) -> None:
        write_atomic(self.dir / f"prompt_{n}.txt", prompt)
        write_atomic(self.dir / f"response_{n}.txt", response)
        if code is not None:
            write_atomic(self.dir / f"code_{n}.py", code)
        write_json(self.dir / f"result_{n}.json", result)

    def write_best(self, prompt: str | None, code: str | None, result: dict[str, Any]) -> None:
        """Mark the problem finished; best_result.json is written last."""
        if prompt is not None:
            write_atomic(self.dir / "best_prompt.txt", prompt)
        if code is not None:
            write_atomic(self.dir / "best_code.py", code)
        write_json(self.dir / "best_result.json", result)

    def best(self) -> dict[str, Any] | None:
        return read_json(self.dir / "best_result.json")

    def damaged(self) -> bool:
        """Whether ``best_result.json`` exists but is not a readable result (truncated,
        not JSON): the problem is neither finished nor missing, and readers say so."""
        path = self.dir / "best_result.json"
        return path.exists() and not isinstance(read_json(path), dict)

    def set_aside_damaged(self) -> Path:
        """Move a damaged ``best_result.json`` aside (records are never deleted) so the
        problem can be redone; the new name."""
        import time

        path = self.dir / "best_result.json"
        # nanoseconds: two set aside within a second must not replace one another
        aside = self.dir / f"best_result.damaged-{time.time_ns()}.json"
        path.rename(aside)
        return aside

    def best_code(self) -> str | None:
        try:
            return (self.dir / "best_code.py").read_text(encoding="utf-8")
        except OSError:
            return None

    def candidates(self) -> list[dict[str, Any]]:
        """All recorded candidate results, in order."""
        found = []
        for p in self._list():
            m = INDEX_RE.match(p.name)
            if m:
                data = read_json(p)
                if isinstance(data, dict):
                    found.append((int(m.group(1)), data))
        return [d for _, d in sorted(found, key=lambda x: x[0])]

    def supersede(self) -> Path | None:
        """Start this problem over (``--hk-redo``) without losing its earlier work: the
        folder moves to ``superseded/<key>.<ns>`` (outside ``level*/``, so no reader counts
        it as a problem); its new place, or None when there was nothing to move."""
        import time

        if not self.dir.exists():
            return None
        dest = self.root / "superseded" / f"{self.key}.{time.time_ns()}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        self.dir.rename(dest)
        return dest


class ResultsTree:
    """The whole results tree."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def problem(self, key: str) -> ProblemResults:
        return ProblemResults(self.root, key)

    def problems(self) -> list[ProblemResults]:
        """Every problem folder with a result, in a stable order."""
        keys = sorted(
            str(p.parent.relative_to(self.root)) for p in self.root.glob("level*/*/result_*.json")
        )
        keys += sorted(
            str(p.parent.relative_to(self.root))
            for p in self.root.glob("level*/*/best_result.json")
        )
        return [self.problem(k) for k in sorted(set(keys))]
