"""Sandboxed evaluation: build, verify and time candidates in subprocesses."""

from __future__ import annotations

from .config import EvalConfig, ReferenceFailed
from .runner import Evaluator
from .schema import STATUSES

__all__ = ["STATUSES", "EvalConfig", "Evaluator", "ReferenceFailed"]
