"""Console scripts mirroring the seed's tools: thin wrappers over the plain modules."""

from __future__ import annotations

import sys
from typing import NoReturn


def die(message: str, code: int = 2) -> NoReturn:
    """One clear line on stderr and a non-zero exit: how every CLI reports bad input."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)
