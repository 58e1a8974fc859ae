"""Pull the candidate program out of an LLM response.

Models answer with prose around one or more fenced blocks. The candidate is a single
self-contained Python file defining ``ModelNew`` (kernel sources inline), so we pick the
python block that defines ``ModelNew``; failing that the last python block; failing that a
response that is itself bare Python with ``ModelNew``. No code at all is the ``no_code``
category, which reflection tells the model about.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

FENCE_RE = re.compile(r"^(`{3,}|~{3,})[ \t]*([\w+.#-]*)[^\n]*\n(.*?)^\1[ \t]*$", re.M | re.S)
PY_LANGS = {"python", "py", "python3", ""}
MODEL_NEW_RE = re.compile(r"^class\s+ModelNew\b", re.M)


@dataclass(frozen=True)
class Extracted:
    code: str | None
    reason: str  # why this block was chosen, or why nothing was


def blocks(text: str) -> list[tuple[str, str]]:
    """All fenced blocks as (language, body), in order."""
    return [(m.group(2).lower(), m.group(3)) for m in FENCE_RE.finditer(text)]


def extract_code(text: str) -> Extracted:
    """Choose the candidate program in ``text``."""
    found = blocks(text)
    python = [body for lang, body in found if lang in PY_LANGS]
    with_model = [body for body in python if MODEL_NEW_RE.search(body)]
    if with_model:
        return Extracted(with_model[-1].rstrip() + "\n", "python block defining ModelNew")
    # A python block without ModelNew, or ModelNew in an oddly tagged block.
    tagged = [body for lang, body in found if MODEL_NEW_RE.search(body)]
    if tagged:
        return Extracted(tagged[-1].rstrip() + "\n", "block defining ModelNew")
    if not found and MODEL_NEW_RE.search(text):
        return Extracted(text.strip() + "\n", "unfenced response defining ModelNew")
    if python:
        return Extracted(python[-1].rstrip() + "\n", "last python block (no ModelNew)")
    if found:
        return Extracted(None, "response has code blocks but none is Python")
    return Extracted(None, "response contains no code block")
