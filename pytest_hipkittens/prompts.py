"""``prompts/config.json``: which prompt a problem gets, and how reflection reads.

The config is user-editable, so it is validated on load (``SCHEMA``, a JSON Schema, for its
shape; the code for what a schema cannot say: prompt files exist, patterns are Python
regular expressions) and every mistake is reported as one line naming the file and the JSON
path of the bad value. Shape::

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
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .problems import Problem

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

#: The shape of config.json. Unknown keys are errors, not ignored: a typo (``default_promt``)
#: would otherwise silently fall back to another prompt.
SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {
        "reflection_hints": {
            "type": "object",
            "propertyNames": {"enum": sorted(CATEGORIES)},
            "additionalProperties": {"type": "string"},
        },
        "backends": {
            "type": "object",
            "minProperties": 1,
            "additionalProperties": {
                "type": "object",
                "properties": {
                    "default_prompt": {"$ref": "#/$defs/file"},
                    "patterns": {
                        "type": "object",
                        "additionalProperties": {"$ref": "#/$defs/file"},
                    },
                },
                "required": ["default_prompt"],
                "additionalProperties": False,
            },
        },
    },
    "required": ["backends"],
    "additionalProperties": False,
    "$defs": {"file": {"type": "string", "minLength": 1}},
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


def _file(base: Path, value: str, where: str) -> Path:
    path = (base / value).resolve()
    if not path.is_file():
        raise PromptConfigError(f"{where}: prompt file {value} not found next to config.json")
    return path


def _where(path: Sequence[str | int]) -> str:
    """A JSON path the way the config reads: ``backends.cpu.patterns['relu|gelu']`` (the
    keys of ``patterns`` are regular expressions, quoted)."""
    out = ""
    for i, part in enumerate(path):
        if i == 3 and path[0] == "backends" and path[2] == "patterns":
            out += f"[{part!r}]"
        else:
            out += f".{part}" if out else str(part)
    return out


_A = {"object": "an object", "array": "an array", "string": "a string"}


def _kind(value: Any) -> str:
    """What a JSON value is, for "expected a string, got …"."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    return json.dumps(value)[:60]


def _schema_message(error: Any) -> str:
    """One line for a jsonschema ValidationError: the JSON path, then what is wrong, in the
    config's own terms (jsonschema's messages name schema keywords and repeat the value)."""
    path = list(error.absolute_path)
    where = _where(path)
    at = f"{where}: " if where else ""
    below = f"{where}." if where else ""
    if "propertyNames" in error.schema_path:  # a reflection_hints key
        return f"{below}{error.instance} is not a category ({', '.join(sorted(CATEGORIES))})"
    if error.validator == "type":
        expected = _A.get(error.validator_value, error.validator_value)
        return f"{where or 'top level'}: expected {expected}, got {_kind(error.instance)}"
    if error.validator == "required":
        missing = next(k for k in error.validator_value if k not in error.instance)
        return f"{below}{missing} is missing"
    if error.validator == "additionalProperties":
        known = error.schema.get("properties", {})
        extra = next(k for k in error.instance if k not in known)
        return f"{at}unknown key {extra!r}"
    if error.validator == "minProperties":
        return f"{where} must not be empty"
    if error.validator == "minLength":
        return f"{where}: expected a file name, got {_kind(error.instance)}"
    return f"{at}{error.message}"


def _check_shape(path: Path, data: Any) -> None:
    """Raise PromptConfigError for the outermost place ``data`` departs from SCHEMA."""
    from jsonschema import Draft202012Validator

    errors = sorted(
        Draft202012Validator(SCHEMA).iter_errors(data), key=lambda e: len(e.absolute_path)
    )
    if errors:
        raise PromptConfigError(f"{path}: {_schema_message(errors[0])}")


def load_config(path: Path) -> PromptConfig:
    """Read and validate ``config.json``; raise PromptConfigError naming the key."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PromptConfigError(f"{path}: not found") from None
    except json.JSONDecodeError as exc:
        raise PromptConfigError(f"{path}: invalid JSON at line {exc.lineno}: {exc.msg}") from None
    _check_shape(path, data)
    base = path.parent
    backends: dict[str, BackendPrompts] = {}
    for name, entry in data["backends"].items():
        where = f"{path}: backends.{name}"
        default = _file(base, entry["default_prompt"], f"{where}.default_prompt")
        patterns = []
        for regex, file in entry.get("patterns", {}).items():
            try:
                compiled = re.compile(regex, re.I)
            except re.error as exc:
                raise PromptConfigError(f"{where}.patterns[{regex!r}]: bad regex: {exc}") from None
            patterns.append((compiled, _file(base, file, f"{where}.patterns[{regex!r}]")))
        backends[name] = BackendPrompts(default, patterns)
    return PromptConfig(path, backends, dict(data.get("reflection_hints", {})))


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
    from .roofline import describe

    where = describe(result.get("roofline"))
    if where:
        parts.append(f"Roofline: your kernel is {where}.")
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
