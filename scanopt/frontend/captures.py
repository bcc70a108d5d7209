"""Captured names: what the step reads from closures, globals and defaults, and how to re-check it.

While compiling, the frontend records every object it looked up by name, with the path that leads
to it from the step function (``(("global", "sigmoid"), ("global", "W"))``: the global ``W`` of the
global function ``sigmoid``) and what it expected there. On a later call the cache walks the same
paths in the live function objects: arrays are fetched (they are loop inputs), and everything else
is checked against what the compiled loop assumed (the same constant, the same helper code, the
same module). Any difference is a cache miss and a recompile, so rebinding a global never runs
stale code. Plain Python: no xDSL here.

A plan read back from the disk cache cannot hold live objects, so it names them instead:
``("source", digest)`` for a helper function (the digest of its source, see
:func:`code_fingerprint`) and ``("named", "numpy:tanh")`` for an object found again by name (see
:func:`name_of`). :meth:`CapturePlan.pinned` turns those back into identity guards on the live
objects once they have matched, so later calls check as fast as a freshly compiled plan.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import inspect
import json
import linecache
import os
import re
import sys
import types
from dataclasses import dataclass, field
from typing import Any

from scanopt.signature import AVal, RngVal, signature_of

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
            elif kind == "attr":
                obj = getattr(obj, key)
            elif kind == "method_func":
                obj = obj.__func__
            elif kind == "method_self":
                obj = obj.__self__
            elif kind == "partial_func":
                obj = obj.func
            elif kind == "partial_arg":
                obj = obj.args[key]
            elif kind == "partial_kw":
                obj = obj.keywords[key]
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
    if kind == "keys":  # a dict the step reads entries of: the same keys, in the same order
        return type(obj) is expected[1] and tuple(obj) == expected[2]
    if kind == "code":
        return getattr(obj, "__code__", None) is expected[1]
    if kind == "is":
        return obj is expected[1]
    if kind == "type":  # an object whose attributes the step reads: each has its own guard
        return type(obj) is expected[1]
    if kind == "partial":  # a functools.partial: the same number of bound arguments
        return isinstance(obj, functools.partial) and len(obj.args) == expected[1] and \
            tuple(sorted(obj.keywords)) == expected[2]
    if kind == "source":
        code = getattr(obj, "__code__", None)
        return isinstance(code, types.CodeType) and source_digest(code) == expected[1]
    if kind == "named":
        target = resolve_name(expected[1])
        return target is not MISSING and obj is target
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

    def first_mismatch(self, fn) -> Path | None:
        """The path of the first guard that fails for ``fn`` (None when all pass): for logs."""
        for path, expected in self.guards.items():
            if not _matches(resolve(fn, path), expected):
                return path
        return None

    def pinned(self, fn) -> CapturePlan:
        """This plan with by-name guards replaced by identity guards on ``fn``'s live objects.

        Call it only after :meth:`fetch` succeeded: the live objects are then the ones named.
        """
        plan = CapturePlan(inputs=list(self.inputs))
        for path, expected in self.guards.items():
            if isinstance(expected, tuple) and expected[0] == "source":
                expected = ("code", resolve(fn, path).__code__)
            elif isinstance(expected, tuple) and expected[0] == "named":
                expected = ("is", resolve(fn, path))
            plan.guards[path] = expected
        return plan


def describe_path(path: Path) -> str:
    """A path as a log line shows it: ``global sigmoid → global W``."""
    return " → ".join(f"{kind} {key}" for kind, key in path) or "the step function"


# ---------------------------------------------------------------------------------------------
# Naming live objects, for the disk cache


def code_fingerprint(code: types.CodeType) -> dict | None:
    """What identifies a function's code across processes: its source text and where it is.

    None when the source cannot be read (exec, the interactive prompt). The position of the
    first instruction tells apart lambdas that share a line (their source is the whole line).
    """
    source = _source_text(code)
    if source is None:
        return None
    # (RESUME and other synthetic instructions have an empty span at column 0: skip them.)
    positions = [(line, col) for line, end_line, col, end_col in code.co_positions()
                 if None not in (line, end_line, col, end_col)
                 and (end_line, end_col) > (line, col)]
    return {"name": code.co_name, "qualname": code.co_qualname, "file": code.co_filename,
            "line": code.co_firstlineno, "first": list(min(positions)) if positions else None,
            "source": source}


_DEF_LINE = re.compile(r"^(\s*def\s)|(\s*async\s+def\s)|(.*(?<!\w)lambda(:|\s))|^(\s*@)")


def _source_text(code: types.CodeType) -> str | None:
    """``inspect.getsource(code)``, without its walk over ``sys.modules`` for a file on disk.

    ``inspect`` first looks for the module that owns the file, which costs milliseconds per
    hundred imported modules: too slow for a cached call. For a ``.py`` file the text is the
    same; anything else (notebooks, zip imports) goes through ``inspect``.
    """
    filename = code.co_filename
    lnum = code.co_firstlineno - 1
    if filename.endswith(".py") and os.path.isfile(filename):
        linecache.checkcache(filename)
        lines = linecache.getlines(filename)
        if 0 <= lnum < len(lines) and _DEF_LINE.match(lines[lnum]):
            return "".join(inspect.getblock(lines[lnum:]))
    try:
        return inspect.getsource(code)
    except (OSError, TypeError, IndexError, SyntaxError):
        return None


def source_digest(code: types.CodeType) -> str | None:
    """The sha256 of :func:`code_fingerprint` (None when the source cannot be read)."""
    fingerprint = code_fingerprint(code)
    if fingerprint is None:
        return None
    text = json.dumps(fingerprint, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# Modules whose objects the disk cache may name, and import again by that name when it loads.
_NAMED_MODULES = ("numpy", "numpy.random", "numpy.linalg", "builtins", "math")


def _nameable_module(name: object) -> bool:
    return isinstance(name, str) and (name in _NAMED_MODULES or name.startswith("numpy."))


def name_of(obj: Any) -> str | None:
    """A name that finds ``obj`` again in another process, or None.

    ``"numpy"`` and ``"numpy.random"`` for those modules, ``"numpy:tanh"`` or ``"builtins:abs"``
    for an attribute of one of them that *is* ``obj``. Only NumPy, ``math`` and builtins count:
    resolving a name must not import user code.
    """
    if isinstance(obj, types.ModuleType):
        name = getattr(obj, "__name__", None)
        return name if _nameable_module(name) and sys.modules.get(name) is obj else None
    attr = getattr(obj, "__name__", None)
    if not isinstance(attr, str):
        return None
    for module_name in (*_NAMED_MODULES, getattr(obj, "__module__", None)):
        if _nameable_module(module_name):
            module = sys.modules.get(module_name)
            if module is not None and getattr(module, attr, None) is obj:
                return f"{module_name}:{attr}"
    return None


def resolve_name(name: str) -> Any:
    """The object :func:`name_of` named (MISSING when it cannot be found)."""
    module_name, _, attr = name.partition(":")
    if not _nameable_module(module_name):
        return MISSING
    try:
        module = sys.modules.get(module_name) or importlib.import_module(module_name)
        return getattr(module, attr) if attr else module
    except (ImportError, AttributeError, ValueError):
        return MISSING
