"""What the walker knows about a value while it runs the step symbolically.

Array values are SSA values of the loop body (``xdsl.ir.SSAValue``). Everything that is known
while compiling stays a Python-level value: a constant (:class:`Const`), a tuple, a module or
NumPy function, a helper function to inline, an object whose attributes the step reads, a
bound method not yet called. :class:`Scope` maps the step's names to such values.
"""

from __future__ import annotations

import ast
import types
from dataclasses import dataclass, field
from typing import Any

from xdsl.ir import Block, SSAValue

from scanopt.dialects.types import aval_of
from scanopt.frontend.captures import Path
from scanopt.frontend.source import FunctionSource
from scanopt.signature import AVal


@dataclass(frozen=True)
class Const:
    """A Python value known while compiling: a number, None, a slice, a dtype, a tuple of those."""

    value: Any


@dataclass(frozen=True)
class TupleVal:
    """A Python tuple or list of values (``*args``, ``(a, b)``, several returned values)."""

    items: tuple
    is_list: bool = field(default=False, compare=False)  # written as a list: [a, b]


@dataclass(frozen=True)
class PyObject:
    """A Python object the step uses by name: a module, a NumPy function, a dtype class."""

    obj: Any


@dataclass(frozen=True)
class PyFunction:
    """A plain Python function the step calls: it is inlined. ``path`` locates it for captures;
    ``prefix`` holds arguments already bound (a method's ``self``, a ``functools.partial``'s)."""

    fn: types.FunctionType
    path: Path
    prefix: tuple = ()
    bound_kwargs: tuple = ()  # (name, value) pairs


@dataclass(frozen=True)
class Instance:
    """An instance of a user class, reached by ``path``: the step may read its attributes."""

    obj: Any
    path: Path


@dataclass(frozen=True)
class LocalFunction:
    """A ``lambda`` or ``def`` written inside the step; sees the enclosing scope."""

    node: ast.Lambda | ast.FunctionDef
    scope: Scope


@dataclass(frozen=True)
class BoundMethod:
    """``x.sum``, ``rng.binomial``: a method of an array or generator, not yet called."""

    receiver: SSAValue
    name: str


@dataclass(frozen=True)
class DictVal:
    """A Python dict built or read in the step (``{"h": h, "c": c}``, ``carry["h"]``): keys
    known while compiling, values of any kind. Pytrees of ``scanopt.carry_scan`` use it."""

    keys: tuple
    items: tuple

    def get(self, key, default=None):
        for k, v in zip(self.keys, self.items):
            if k == key:
                return v
        return default

    def merged(self, other: DictVal) -> DictVal:
        """``{**self, **other}``: later keys replace earlier ones, in first-seen order."""
        entries = dict(zip(self.keys, self.items))
        entries.update(zip(other.keys, other.items))
        return DictVal(tuple(entries), tuple(entries.values()))


@dataclass(frozen=True)
class DictMethod:
    """``d.items``, ``d.keys``, ``d.values``, ``d.get``: a dict method, not yet called."""

    receiver: DictVal
    name: str


@dataclass(frozen=True)
class UntilVal:
    """``scanopt.until(cond)``: the step's stop condition (a scalar value)."""

    condition: SSAValue


Value = Any  # SSAValue | Const | TupleVal | PyObject | PyFunction | LocalFunction | BoundMethod


@dataclass
class FunctionContext:
    """The function whose code is being walked: where its names and errors come from."""

    fn: types.FunctionType | None
    source: FunctionSource
    path: Path


@dataclass
class Scope:
    names: dict[str, Value]
    context: FunctionContext
    parent: Scope | None = None

    def lookup(self, name: str) -> Value | None:
        scope: Scope | None = self
        while scope is not None:
            if name in scope.names:
                return scope.names[name]
            scope = scope.parent
        return None


class ReturnSignal(Exception):
    def __init__(self, value: Value, node: ast.AST):
        self.value = value
        self.node = node


class ArityError(Exception):
    def __init__(self, reason: str):
        self.reason = reason


def is_slice(value: Value) -> bool:
    return isinstance(value, TupleVal) and value.items and value.items[0] == Const("__slice__")


def tuple_items(value: Value) -> tuple:
    if isinstance(value, TupleVal):
        return value.items
    if isinstance(value, Const) and isinstance(value.value, (tuple, list)):
        return tuple(Const(v) for v in value.value)
    raise TypeError(value)


def is_weak(value: SSAValue) -> bool:
    """A Python scalar (``float``, ``int``, ``bool``): NumPy's weak promotion applies to it."""
    aval = aval_of(value.type)
    return isinstance(aval, AVal) and aval.weak


def name_value(value: SSAValue, name: str) -> None:
    """Give ``value`` the user's name, for the IR and the generated code. xDSL takes ASCII
    names only; a value named ``α`` stays unnamed (the emitter then picks a name)."""
    if SSAValue.is_valid_name(name):
        value.name_hint = name


def can_name(value: SSAValue) -> bool:
    # Keep the first name a value gets (``a = b`` keeps b's name); block args keep theirs.
    return value.name_hint is None and not isinstance(value.owner, Block)


def describe(value: Value) -> str:
    if isinstance(value, SSAValue):
        aval = aval_of(value.type)
        return f"a value of type {aval.describe()}"
    if isinstance(value, Const):
        return f"the constant {value.value!r}"
    if isinstance(value, TupleVal):
        return f"a tuple of {len(value.items)} values"
    if isinstance(value, PyObject):
        return f"the object {getattr(value.obj, '__name__', repr(value.obj))}"
    if isinstance(value, PyFunction | LocalFunction):
        return "a function"
    if isinstance(value, BoundMethod):
        return f"the method .{value.name}"
    if isinstance(value, UntilVal):
        return "scanopt.until(...)"
    if isinstance(value, DictVal):
        return f"a dict with keys {list(value.keys)}"
    if isinstance(value, DictMethod):
        return f"the dict method .{value.name}"
    return repr(value)
