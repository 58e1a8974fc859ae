"""Sandboxed evaluation: build, verify and time candidates in subprocesses."""

from __future__ import annotations

from .runner import STATUSES, EvalConfig, Evaluator, ReferenceFailed

__all__ = ["STATUSES", "EvalConfig", "Evaluator", "ReferenceFailed"]
