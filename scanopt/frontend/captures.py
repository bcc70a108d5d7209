"""Captured names: what the step reads from closures, globals and defaults, and how to re-check it.

While compiling, the frontend records every object it looked up by name, with the path that leads
to it from the step function (``(("global", "sigmoid"), ("global", "W"))``: the global ``W`` of the
global function ``sigmoid``) and what it expected there. On a later call the cache walks the same
paths in the live function objects: arrays are fetched (they are loop inputs), and everything else
is checked against what the compiled loop assumed (the same constant, the same helper code, the
same module). Any difference is a cache miss and a recompile, so rebinding a global never runs
stale code. Plain Python: no xDSL here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from scanopt.frontend.signature import AVal, RngVal, signature_of

Path = tuple[tuple[str, Any], ...]


class _Missing:
    pass


MISSING = _Missing()


def resolve(fn, path: Path) -> Any:
    """Follow ``path`` from ``fn`` in the live objects; MISSING when a step is gone."""
    obj = fn
    for kind, key in path:
        try:
            if kind == "global":
                obj = obj.__globals__[key]
            elif kind == "closure":
                obj = obj.__closure__[obj.__code__.co_freevars.index(key)].cell_contents
            elif kind == "default":
                code = obj.__code__
                names = code.co_varnames[: code.co_argcount]
                obj = obj.__defaults__[names.index(key) - (len(names) - len(obj.__defaults__))]
            elif kind == "kwdefault":
                obj = obj.__kwdefaults__[key]
            elif kind == "item":
                obj = obj[key]
            else:
                return MISSING
        except (KeyError, ValueError, IndexError, AttributeError, TypeError):
            return MISSING
    return obj


def _matches(obj: Any, expected: Any) -> bool:
    if isinstance(expected, (AVal, RngVal)):
        return signature_of(obj) == expected
    kind = expected[0]
    if kind == "const":
        return type(obj) is expected[1] and _same_value(obj, expected[2])
    if kind == "len":
        return type(obj) is expected[1] and len(obj) == expected[2]
    if kind == "code":
        return getattr(obj, "__code__", None) is expected[1]
    if kind == "is":
        return obj is expected[1]
    return False


def _same_value(a, b) -> bool:
    try:
        return bool(a == b) or (a != a and b != b)  # NaN equals NaN here
    except Exception:
        return False


@dataclass
class CapturePlan:
    """Paths looked up while compiling, and what was found there."""

    guards: dict[Path, Any] = field(default_factory=dict)
    # Paths of captured arrays/generators, in the order they are loop inputs.
    inputs: list[Path] = field(default_factory=list)

    def add(self, path: Path, expected: Any) -> None:
        if path not in self.guards:
            self.guards[path] = expected
            if isinstance(expected, (AVal, RngVal)):
                self.inputs.append(path)

    def fetch(self, fn) -> list[Any] | None:
        """The captured inputs for a call of ``fn``, or None if any guard fails."""
        for path, expected in self.guards.items():
            if not _matches(resolve(fn, path), expected):
                return None
        return [resolve(fn, path) for path in self.inputs]
