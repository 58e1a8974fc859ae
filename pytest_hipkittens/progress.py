"""Live progress of the running item: one compact line per stage change.

A benchmark item runs for minutes (LLM calls, builds, timing, profiling) while pytest only
prints a dot at the end, so the stage a problem is in — generating, building N
candidates, verifying + timing candidate i, profiling — is printed as it changes. Lines are
written through pytest's terminal reporter with output capture suspended (as ``log_cli``
does), styled by rich on a terminal and plain in CI logs. xdist workers have no terminal:
there, ``hk-monitor`` watching the results tree is the live view.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

STAGE_STYLE = {
    "reference": "cyan",
    "generating": "magenta",
    "building": "yellow",
    "verifying": "blue",
    "profiling": "bright_black",
    "done": "green",
}


class ProgressLine:
    """Prints ``problem · attempt a/N · stage · elapsed`` lines past pytest's capture."""

    def __init__(self, config: pytest.Config, mode: str, attempts: int) -> None:
        self.config = config
        self.attempts = attempts
        self.mode = mode
        self.started: dict[str, float] = {}

    def _writer(self) -> Any:
        return self.config.pluginmanager.get_plugin("terminalreporter")

    def styled(self) -> bool:
        tr = self._writer()
        return self.mode == "rich" or (self.mode == "auto" and bool(tr and tr.isatty))

    def text(self, problem: str, stage: str, attempt: int, sample: int) -> str:
        """The line, without styling."""
        elapsed = time.monotonic() - self.started.setdefault(problem, time.monotonic())
        parts = [f"[hk] {problem}"]
        if attempt:
            parts.append(f"attempt {attempt}/{self.attempts}")
        parts.append(f"{stage} {sample}" if sample else stage)
        parts.append(f"{int(elapsed) // 60}:{int(elapsed) % 60:02d}")
        return " · ".join(parts)

    def render(self, problem: str, stage: str, attempt: int, sample: int) -> str:
        plain = self.text(problem, stage, attempt, sample)
        if not self.styled():
            return plain
        from rich.console import Console
        from rich.text import Text

        style = next((v for k, v in STAGE_STYLE.items() if stage.startswith(k)), "white")
        line = Text()
        head, _, rest = plain.partition(" · ")
        line.append(head, style="bold")
        line.append(" · ")
        line.append(rest, style=style)
        console = Console(force_terminal=True, color_system="standard", width=400)
        with console.capture() as cap:
            console.print(line, end="", soft_wrap=True)
        return cap.get()

    def __call__(self, problem: str, stage: str, attempt: int = 0, sample: int = 0) -> None:
        if self.mode == "off":
            return
        tr = self._writer()
        if tr is None:
            return
        text = self.render(problem, stage, attempt, sample)
        capman = self.config.pluginmanager.get_plugin("capturemanager")
        if capman is None:
            self._write(tr, text)
            return
        with capman.global_and_fixture_disabled():
            self._write(tr, text)

    @staticmethod
    def _write(tr: Any, text: str) -> None:
        """On a line of its own, even after pytest's progress dots."""
        writer = getattr(tr, "_tw", None)
        if writer is not None and getattr(writer, "width_of_current_line", 0):
            tr.write_line("")
        tr.write_line(text)
