"""A fingerprint of the code a candidate's worker measures and reports with.

The candidate's timed calls run in its own worker, so the timer, the trial loop, the JSON
that carries the figures to the parent and the builtins they call are all within reach of
the candidate's Python: rebinding any one of them (a module attribute, a class's method, a
closure's captured function, a function's ``__code__``) changes the reported times without
touching the kernel. Rather than name the functions an attacker might pick, the worker
fingerprints whole namespaces before any candidate code is imported and compares after
each command that ran candidate code; any change is a rejection.

This is one of two layers. The parent's own clock around every timed round
(``timing.not_credible``) does not depend on anything in the worker, and catches what a
fingerprint cannot see (a patch below Python, in a library's machine code).
"""

from __future__ import annotations

import builtins
import types
from collections.abc import Iterable
from typing import Any

_MISSING = object()


def _parts(value: Any) -> tuple[Any, ...]:
    """What makes ``value`` behave as it does: itself, and for a Python function its code,
    defaults and the objects its closure captured (all assignable at run time)."""
    func = getattr(value, "__func__", value)  # a bound method's function
    if not isinstance(func, types.FunctionType):
        return (value,)
    cells = []
    for cell in func.__closure__ or ():
        try:
            cells.append(cell.cell_contents)
        except ValueError:  # an empty cell
            cells.append(_MISSING)
    return (value, func.__code__, func.__defaults__, func.__kwdefaults__, *cells)


def _same(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    """Element by element identity (``==`` on captured tensors or arrays would not say)."""
    return len(a) == len(b) and all(x is y for x, y in zip(a, b, strict=True))


def _tracked(value: Any) -> bool:
    return callable(value) or isinstance(
        value, (staticmethod, classmethod, property, types.ModuleType)
    )


class Fingerprint:
    """Namespaces and objects as they were when ``add`` saw them; ``changed`` names the
    entries that are no longer the same objects."""

    def __init__(self) -> None:
        # Per watched owner (its namespace looked up again at each check: an instance's
        # __dict__ can be replaced whole): attribute name -> (label, parts when watched).
        self._entries: dict[int, tuple[Any, dict[str, tuple[str, tuple[Any, ...]]]]] = {}
        self._closed: list[tuple[str, Any, frozenset[str]]] = []
        self._builtin_names = frozenset(vars(builtins))

    def add(self, label: str, owner: Any, names: Iterable[str] | None = None) -> None:
        """Watch ``owner``'s attributes (all callables when ``names`` is None). A class is
        watched along its MRO, so a method replaced on a base class is seen too."""
        owners = [owner]
        if isinstance(owner, type):
            owners = [k for k in owner.__mro__ if k is not object]
        for own in owners:
            space = _namespace(own)
            if space is None:
                continue
            keys = list(space) if names is None else [n for n in names if n in space]
            for name in keys:
                value = space[name]
                if names is None and not _tracked(value):
                    continue
                key = f"{label}.{name}" if own is owner else f"{label}({own.__name__}).{name}"
                self._entries.setdefault(id(own), (own, {}))[1][name] = (key, _parts(value))

    def add_module(self, module: types.ModuleType) -> None:
        """Watch a module's callables, and also names added to it later that would shadow
        a builtin for its code (``float``, ``sum``, ``min`` …)."""
        self.add(module.__name__, module)
        self._closed.append((module.__name__, module, frozenset(vars(module))))
        for value in list(vars(module).values()):
            if isinstance(value, type) and value.__module__ == module.__name__:
                self.add(f"{module.__name__}.{value.__name__}", value)

    def changed(self) -> list[str]:
        """Names of the watched entries that changed, in a stable order."""
        out = []
        for owner, entries in self._entries.values():
            space = _namespace(owner) or {}
            for name, (key, parts) in entries.items():
                now = space.get(name, _MISSING)
                if now is not parts[0] or (len(parts) > 1 and not _same(_parts(now), parts)):
                    out.append(key)
        for label, module, before in self._closed:
            added = (set(vars(module)) - before) & self._builtin_names
            out.extend(f"{label}.{name} (shadows the builtin)" for name in sorted(added))
        return out


def _namespace(owner: Any) -> Any:
    """The live attribute mapping of a module, class or instance, or a dict itself (None
    when it has none)."""
    if isinstance(owner, dict):
        return owner
    try:
        return owner.__dict__
    except AttributeError:
        return None
