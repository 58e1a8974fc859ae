"""One pytest session run from inside a CLI, to render a pytest-html report.

``hk-report --html`` (replay_report.py) and ``hk-report --compare --pytest-html``
(compare_report.py) both render their page with pytest-html over a module of their own.
The session must not pick up the user's pytest configuration (a temporary ini and rootdir
stand in), must not write a cache, and must not talk on the CLI's stdout (its output is
returned, for when no report came out).
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path
from typing import Any


def run(module: str, args: list[str], plugins: list[Any] | None = None) -> tuple[int, str]:
    """``pytest MODULE ARGS`` in isolation; its exit code and what it printed."""
    import pytest

    out = io.StringIO()
    with tempfile.TemporaryDirectory(prefix="hk-render-") as tmp, contextlib.redirect_stdout(out):
        ini = Path(tmp) / "pytest.ini"
        ini.write_text("[pytest]\n", encoding="utf-8")
        base = [
            module,
            "-c",
            str(ini),
            "--rootdir",
            tmp,
            "-p",
            "no:cacheprovider",
            "-q",
            "--no-header",
        ]
        code = int(pytest.main([*base, *args], plugins=plugins or []))
    return code, out.getvalue()
