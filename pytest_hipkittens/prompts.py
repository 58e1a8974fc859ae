"""``prompts/config.json``: which prompt a problem gets, and how reflection reads.

The config is user-editable, so it is validated on load and every mistake is reported as
one line naming the key. Shape::

    {
      "reflection_hints": {"compile_error": "...", "incorrect": "...", ...},
      "backends": {
        "hip":  {"default_prompt": "hip/elementwise_bf16.txt",
                 "patterns": {"relu|sigmoid|tanh": "hip/elementwise_bf16.txt", ...}},
        "cuda": {...}, "cpu": {...}
      }
    }

``patterns`` are regular expressions searched (case-insensitively) in the problem's name,
tried in file order; the first match wins, else ``default_prompt``. Paths are relative to
the config file. A prompt file is the instruction text; the harness appends the reference
program and the answer format.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .problems import Problem

TOP_KEYS = {"reflection_hints", "backends"}
BACKEND_KEYS = {"default_prompt", "patterns"}
CATEGORIES = {
    "compile_error",
    "runtime_error",
    "gpu_crash",
    "timeout",
    "build_timeout",
    "out_of_memory",
    "incorrect",
    "rejected",
    "no_model_new",
    "no_code",
    "slower",
}

ANSWER_FORMAT = """\
Write a new architecture named ModelNew that replaces the operators of Model with custom
kernels for the {backend} backend. Keep the constructor signature of Model (it receives the
values of get_init_inputs()) and the forward signature; do not change get_inputs() or
get_init_inputs(). Build the kernels from inline source with
torch.utils.cpp_extension.load_inline at import time. The work of forward must run in your
kernels: calling the PyTorch operators of the reference (or falling back to them) is not a
solution.

Answer with exactly one ```python code block containing the complete, self-contained
file (imports, kernel sources, load_inline call and class ModelNew). No testing code."""


class PromptConfigError(ValueError):
    """A bad prompts/config.json; the message names the offending key."""


@dataclass
class BackendPrompts:
    default_prompt: Path
    patterns: list[tuple[re.Pattern[str], Path]] = field(default_factory=list)


@dataclass
class PromptConfig:
    path: Path
    backends: dict[str, BackendPrompts]
    reflection_hints: dict[str, str]

    def prompt_file(self, prompt_set: str, problem: Problem) -> Path:
        """The prompt for ``problem``: first matching pattern, else the default."""
        if prompt_set not in self.backends:
            raise PromptConfigError(f"{self.path}: backends.{prompt_set} is not configured")
        entry = self.backends[prompt_set]
        for regex, file in entry.patterns:
            if regex.search(problem.name):
                return file
        return entry.default_prompt


def _file(base: Path, value: Any, where: str) -> Path:
    if not isinstance(value, str) or not value:
        raise PromptConfigError(f"{where}: expected a file name, got {value!r}")
    path = (base / value).resolve()
    if not path.is_file():
        raise PromptConfigError(f"{where}: prompt file {value} not found next to config.json")
    return path


def load_config(path: Path) -> PromptConfig:
    """Read and validate ``config.json``; raise PromptConfigError naming the key."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PromptConfigError(f"{path}: not found") from None
    except json.JSONDecodeError as exc:
        raise PromptConfigError(f"{path}: invalid JSON at line {exc.lineno}: {exc.msg}") from None
    if not isinstance(data, dict):
        raise PromptConfigError(f"{path}: top level must be an object")
    unknown = set(data) - TOP_KEYS
    if unknown:
        raise PromptConfigError(f"{path}: unknown key {sorted(unknown)[0]!r}")
    base = path.parent
    hints = data.get("reflection_hints", {})
    if not isinstance(hints, dict):
        raise PromptConfigError(f"{path}: reflection_hints must be an object")
    for cat, hint in hints.items():
        if cat not in CATEGORIES:
            raise PromptConfigError(
                f"{path}: reflection_hints.{cat} is not a category ({', '.join(sorted(CATEGORIES))})"
            )
        if not isinstance(hint, str):
            raise PromptConfigError(f"{path}: reflection_hints.{cat} must be a string")
    backends_raw = data.get("backends")
    if not isinstance(backends_raw, dict) or not backends_raw:
        raise PromptConfigError(f"{path}: backends must be a non-empty object")
    backends: dict[str, BackendPrompts] = {}
    for name, entry in backends_raw.items():
        where = f"{path}: backends.{name}"
        if not isinstance(entry, dict):
            raise PromptConfigError(f"{where} must be an object")
        unknown = set(entry) - BACKEND_KEYS
        if unknown:
            raise PromptConfigError(f"{where}: unknown key {sorted(unknown)[0]!r}")
        if "default_prompt" not in entry:
            raise PromptConfigError(f"{where}.default_prompt is missing")
        default = _file(base, entry["default_prompt"], f"{where}.default_prompt")
        patterns = []
        raw_patterns = entry.get("patterns", {})
        if not isinstance(raw_patterns, dict):
            raise PromptConfigError(f"{where}.patterns must be an object of regex -> file")
        for regex, file in raw_patterns.items():
            try:
                compiled = re.compile(regex, re.I)
            except re.error as exc:
                raise PromptConfigError(f"{where}.patterns[{regex!r}]: bad regex: {exc}") from None
            patterns.append((compiled, _file(base, file, f"{where}.patterns[{regex!r}]")))
        backends[name] = BackendPrompts(default, patterns)
    return PromptConfig(path, backends, {k: v for k, v in hints.items()})


def initial_prompt(template: str, problem: Problem, backend: str, notes: str = "") -> str:
    """The first prompt: instructions, build environment, the reference, the answer format."""
    env = f"Build environment:\n{notes.strip()}\n\n" if notes.strip() else ""
    return (
        f"{template.rstrip()}\n\n{env}"
        f"You are given the following PyTorch reference ({problem.key}):\n\n"
        f"```python\n{problem.source.rstrip()}\n```\n\n"
        f"{ANSWER_FORMAT.format(backend=backend)}\n"
    )


def reflection_prompt(
    first_prompt: str,
    previous_code: str | None,
    result: dict[str, Any],
    hints: dict[str, str],
    attempt: int,
    log_chars: int = 3000,
) -> str:
    """The prompt for the next attempt: what was tried, what went wrong, what to do."""
    category = result.get("category") or result.get("status") or "unknown"
    parts = [first_prompt.rstrip(), "", f"## Feedback on attempt {attempt}", ""]
    if previous_code:
        parts += ["Your previous answer was:", "", f"```python\n{previous_code.rstrip()}\n```", ""]
    parts.append(f"Result: {category} — {result.get('message', '')}".rstrip(" —"))
    corr = result.get("correctness") or {}
    if category == "incorrect" and corr.get("max_abs_err") is not None:
        parts.append(
            f"Max absolute error {corr['max_abs_err']:.3g}, max relative error "
            f"{corr.get('max_rel_err') or 0:.3g} (atol={corr.get('atol')}, rtol={corr.get('rtol')})."
        )
    timing = result.get("timing") or {}
    if timing.get("speedup") is not None:
        parts.append(
            f"Timing: reference {timing['ref_ms']:.4f} ms, yours {timing['new_ms']:.4f} ms, "
            f"speedup {timing['speedup']:.2f}x."
        )
    findings = ((result.get("profile") or {}).get("findings")) or []
    if findings:
        parts += ["", "Profiler findings:"] + [f"- {f}" for f in findings]
    log = (result.get("log") or "").strip()
    if log:
        excerpt = log[:log_chars] + ("\n…" if len(log) > log_chars else "")
        parts += ["", "Log excerpt:", "```", excerpt, "```"]
    hint = hints.get(category)
    if hint:
        parts += ["", f"Hint: {hint}"]
    parts += [
        "",
        "Fix the problem and answer with the complete corrected file, in the same format.",
    ]
    return "\n".join(parts) + "\n"
