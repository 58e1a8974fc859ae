"""Find and load KernelBench-format problems.

A problem is a ``.py`` file named ``<id>_<Name>.py`` that defines ``class Model``,
``get_inputs()`` and ``get_init_inputs()``. They live in ``level1/`` … ``level4/`` folders
(a KernelBench checkout keeps them under ``KernelBench/levelN``) or directly in a plain
directory, which counts as level 1.

Nothing here imports a problem: discovery and validation read the source with ``ast`` so
collection stays cheap and deterministic on every xdist worker, and a problem's top-level
code (which may allocate gigabytes) only ever runs inside an evaluation subprocess.
"""

from __future__ import annotations

import ast
import hashlib
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

PROBLEM_RE = re.compile(r"^(\d+)_(.+)\.py$")
LEVEL_RE = re.compile(r"^level(\d+)$")
REQUIRED_NAMES = ("Model", "get_inputs", "get_init_inputs")
SAMPLES_DIR = Path(__file__).parent / "samples"


class ProblemError(ValueError):
    """A problem directory, file or selection that cannot be used (one-line message)."""


@dataclass(frozen=True, order=True)
class Problem:
    """One KernelBench problem: where it is and how the run names it."""

    level: int
    id: int
    name: str
    path: Path

    @property
    def key(self) -> str:
        """Stable, readable id: ``level1/19_ReLU`` (test ids, results tree, reports)."""
        return f"level{self.level}/{self.id}_{self.name}"

    @property
    def source(self) -> str:
        return self.path.read_text(encoding="utf-8")

    def sha256(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


def parse_range(text: str) -> list[tuple[int, int]]:
    """Parse ``19-25``, ``19`` or ``1-5,9`` into inclusive ``(lo, hi)`` pairs.

    Raises ProblemError with a message that names the bad part, so the option's
    ``type=`` validator can turn it into one usage error line.
    """
    spans: list[tuple[int, int]] = []
    parts = [p.strip() for p in text.split(",")]
    if not text.strip() or any(not p for p in parts):
        raise ProblemError(f"--range {text!r}: expected N, N-M or a comma list such as 1-5,9")
    for part in parts:
        m = re.fullmatch(r"(\d+)(?:\s*-\s*(\d+))?", part)
        if not m:
            raise ProblemError(f"--range {text!r}: {part!r} is not N or N-M")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        if hi < lo:
            raise ProblemError(f"--range {text!r}: {part!r} is empty (start is after end)")
        spans.append((lo, hi))
    return spans


def in_ranges(value: int, spans: Sequence[tuple[int, int]] | None) -> bool:
    return spans is None or any(lo <= value <= hi for lo, hi in spans)


def resolve_root(cli_dir: str | None, env: dict[str, str] | None = None) -> Path:
    """Pick the problems root: ``--kernelbench-dir`` > ``KERNELBENCH_DIR`` > bundled samples."""
    env = os.environ if env is None else env
    raw = cli_dir or env.get("KERNELBENCH_DIR") or ""
    if not raw:
        return SAMPLES_DIR
    root = Path(raw).expanduser()
    if not root.is_dir():
        origin = "--kernelbench-dir" if cli_dir else "KERNELBENCH_DIR"
        raise ProblemError(f"{origin}: {raw} is not a directory")
    return root.resolve()


def _level_dirs(root: Path) -> dict[int, Path]:
    """Map level number to folder, for a checkout (``KernelBench/levelN``) or ``levelN``."""
    for base in (root / "KernelBench", root):
        found = {
            int(m.group(1)): child
            for child in (base.iterdir() if base.is_dir() else ())
            if child.is_dir() and (m := LEVEL_RE.match(child.name))
        }
        if found:
            return found
    return {}


def discover(root: Path, levels: Iterable[int] = (1,)) -> list[Problem]:
    """All problem files of the given levels under ``root``, sorted by (level, id).

    A directory without ``levelN`` folders is a flat directory of problems at level 1.
    """
    dirs = _level_dirs(root)
    if not dirs:
        dirs = {1: root}
    problems: list[Problem] = []
    for level in sorted(set(levels)):
        folder = dirs.get(level)
        if folder is None:
            continue
        for path in folder.iterdir():
            m = PROBLEM_RE.match(path.name)
            if m and path.is_file():
                problems.append(Problem(level, int(m.group(1)), m.group(2), path.resolve()))
    problems.sort()
    return problems


def select(
    root: Path, levels: Iterable[int], spans: Sequence[tuple[int, int]] | None
) -> list[Problem]:
    """Discover, filter by ``--range`` and validate; empty selections are an error."""
    levels = sorted(set(levels))
    problems = [p for p in discover(root, levels) if in_ranges(p.id, spans)]
    if not problems:
        where = f"{root} (levels {', '.join(map(str, levels))})"
        if spans is None:
            raise ProblemError(f"no KernelBench problems (<id>_<Name>.py) found in {where}")
        shown = ",".join(f"{lo}-{hi}" if lo != hi else str(lo) for lo, hi in spans)
        raise ProblemError(f"--range {shown} matches no problem in {where}")
    for p in problems:
        validate_source(p.source, str(p.path))
    return problems


def top_level_names(source: str, filename: str = "<source>") -> set[str]:
    """Names a module defines at top level (classes, functions, assignments, imports)."""
    try:
        tree = ast.parse(source, filename=filename)
    except SyntaxError as exc:
        raise ProblemError(f"{filename}: syntax error at line {exc.lineno}: {exc.msg}") from None
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


def validate_source(source: str, filename: str) -> None:
    """Check a problem defines what KernelBench needs; raise one clear line if not."""
    missing = [n for n in REQUIRED_NAMES if n not in top_level_names(source, filename)]
    if missing:
        raise ProblemError(f"{filename}: not a KernelBench problem, missing {', '.join(missing)}")


def load_problem_file(path: str | Path) -> Problem:
    """A single problem file given on a command line (``hk-eval --problem``)."""
    p = Path(path)
    if not p.is_file():
        raise ProblemError(f"problem file not found: {path}")
    m = PROBLEM_RE.match(p.name)
    level_m = LEVEL_RE.match(p.parent.name)
    level = int(level_m.group(1)) if level_m else 1
    pid, name = (int(m.group(1)), m.group(2)) if m else (0, p.stem)
    validate_source(p.read_text(encoding="utf-8"), str(p))
    return Problem(level, pid, name, p.resolve())
