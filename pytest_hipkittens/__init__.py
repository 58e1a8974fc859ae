"""pytest-hipkittens: a pytest plugin that benchmarks how well LLMs write GPU kernels."""

from __future__ import annotations

__version__ = "0.1.0"
