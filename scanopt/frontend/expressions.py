"""Statements and expressions of a step function, walked symbolically.

``if`` and ``for`` on values known while compiling are resolved here and leave no trace in the
IR; operators, attributes and subscripts become ops.
"""

from __future__ import annotations

import ast
import operator
import types
from collections.abc import Callable, Sequence

import numpy as np
from xdsl.dialects.builtin import TensorType
from xdsl.ir import SSAValue

from scanopt import symbolic
from scanopt.dialects import scan
from scanopt.dialects.types import aval_of
from scanopt.errors import ScanTypeError, ScanValueError, UnsupportedSyntax
from scanopt.frontend.generator_methods import RNG_METHODS
from scanopt.frontend.values import (BoundMethod, Const, DictMethod, DictVal, Instance,
                                     LocalFunction, PyObject, ReturnSignal, Scope, TupleVal, Value,
                                     can_name, describe, is_slice, name_value, tuple_items)
from scanopt.signature import RngVal, is_python_scalar

_BINOPS: dict[type, str] = {ast.Add: "add", ast.Sub: "subtract", ast.Mult: "multiply",
                            ast.Div: "true_divide", ast.FloorDiv: "floor_divide",
                            ast.Mod: "remainder", ast.Pow: "power"}


_PY_BINOPS: dict[type, Callable] = {ast.Add: operator.add, ast.Sub: operator.sub,
                                    ast.Mult: operator.mul, ast.Div: operator.truediv,
                                    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
                                    ast.Pow: operator.pow, ast.BitAnd: operator.and_,
                                    ast.BitOr: operator.or_, ast.BitXor: operator.xor,
                                    ast.LShift: operator.lshift, ast.RShift: operator.rshift,
                                    ast.MatMult: operator.matmul}


_COMPARES: dict[type, str] = {ast.Eq: "equal", ast.NotEq: "not_equal", ast.Lt: "less",
                              ast.LtE: "less_equal", ast.Gt: "greater", ast.GtE: "greater_equal"}


_PY_COMPARES: dict[type, Callable] = {ast.Eq: operator.eq, ast.NotEq: operator.ne,
                                      ast.Lt: operator.lt, ast.LtE: operator.le,
                                      ast.Gt: operator.gt, ast.GtE: operator.ge,
                                      ast.Is: operator.is_, ast.IsNot: operator.is_not,
                                      ast.In: lambda a, b: a in b,
                                      ast.NotIn: lambda a, b: a not in b}


SUBSET_HINT = (
    "A step function may use arithmetic, comparisons, @, the NumPy functions "
    + ", ".join(f"np.{n}" for n in ("exp", "log", "tanh", "sum", "where", "clip", "concatenate"))
    + " (and others listed in the documentation), calls of plain Python helper functions, and "
    "numpy.random.Generator methods."
)


class ExpressionWalker:
    """Statements (assignments, control flow on constants) and expressions."""

    def _statements(self, statements: Sequence[ast.stmt], scope: Scope) -> None:
        for stmt in statements:
            self._statement(stmt, scope)

    def _statement(self, stmt: ast.stmt, scope: Scope) -> None:
        loc = scope.context.source.loc(stmt)
        match stmt:
            case ast.Return(value=value):
                raise ReturnSignal(self._expr(value, scope) if value is not None else Const(None),
                              value if value is not None else stmt)
            case ast.Assign(targets=targets, value=value):
                result = self._expr(value, scope)
                for target in targets:
                    self._assign(target, result, scope)
            case ast.AnnAssign(target=target, value=value) if value is not None:
                self._assign(target, self._expr(value, scope), scope)
            case ast.AugAssign(target=ast.Name(id=name) as target, op=op, value=value):
                current = self._expr(ast.Name(id=name, ctx=ast.Load(), lineno=target.lineno,
                                              col_offset=target.col_offset), scope)
                result = self._binop(op, current, self._expr(value, scope), stmt, scope)
                if isinstance(current, SSAValue) and isinstance(result, SSAValue) and \
                        result.type != current.type:
                    raise ScanTypeError(
                        f"in-place {type(op).__name__.lower()} changes the type of `{name}` "
                        f"from {describe(current)} to {describe(result)}",
                        loc, hint=f"Write `{name} = ...` with an explicit .astype() instead.")
                self._assign(target, result, scope)
            case ast.AugAssign():
                raise UnsupportedSyntax(
                    "in-place update of an element or attribute is not supported in a step "
                    "function", loc,
                    hint="Step functions must not modify arrays: build a new value instead "
                         "(np.where, np.concatenate) and return it.")
            case ast.Expr(value=ast.Constant(value=str())):
                pass  # a docstring
            case ast.Expr(value=value):
                result = self._expr(value, scope)
                if isinstance(result, SSAValue) and isinstance(result.owner, scan.RandomOp):
                    return  # a draw whose value is unused still advances the generator
                if isinstance(result, SSAValue | Const):
                    return
                raise UnsupportedSyntax("this statement has no effect a step function can keep",
                                        loc)
            case ast.Pass():
                pass
            case ast.If(test=test, body=body, orelse=orelse):
                cond = self._expr(test, scope)
                if not isinstance(cond, Const):
                    self._needs_value(cond)
                    raise UnsupportedSyntax(
                        "`if` on an array value is not supported inside a step function",
                        scope.context.source.loc(test),
                        hint="Select elementwise with np.where(cond, a, b) instead; an `if` on "
                             "a constant (a Python number or flag) is fine.")
                self._statements(body if cond.value else orelse, scope)
            case ast.For(target=target, iter=iterable, body=body, orelse=orelse):
                items = self._static_iteration(iterable, scope)
                for item in items:
                    self._assign(target, item, scope)
                    self._statements(body, scope)
                self._statements(orelse, scope)
            case ast.While(test=test):
                raise UnsupportedSyntax(
                    "`while` loops are not supported inside a step function",
                    scope.context.source.loc(test),
                    hint="The step is one iteration of the loop; put the iteration in scan "
                         "(n_steps) or unroll a fixed count with `for k in range(N)`.")
            case ast.FunctionDef(name=name):
                if stmt.decorator_list:
                    raise UnsupportedSyntax("decorated functions inside a step function are "
                                            "not supported", loc)
                local = LocalFunction(stmt, scope)
                scope.names[name] = local
            case ast.Assert():
                pass  # asserts only check; the plain loop would have raised while tracing
            case _:
                raise UnsupportedSyntax(
                    f"`{_statement_name(stmt)}` statements are not supported inside a step "
                    "function", loc, hint=SUBSET_HINT)

    def _static_iteration(self, iterable: ast.expr, scope: Scope) -> list[Value]:
        value = self._expr(iterable, scope)
        if isinstance(value, TupleVal):
            return list(value.items)
        if isinstance(value, DictVal):  # a dict's keys, as Python iterates it
            return [Const(k) for k in value.keys]
        if isinstance(value, Const) and isinstance(value.value, (tuple, list, range)):
            return [Const(v) for v in value.value]
        self._needs_value(value)
        raise UnsupportedSyntax(
            "a `for` loop over an array is not supported inside a step function",
            scope.context.source.loc(iterable),
            hint="Use a vectorised NumPy expression over the whole array instead; `for k in "
                 "range(N)` with a constant N and loops over tuples are unrolled.")

    def _assign(self, target: ast.expr, value: Value, scope: Scope) -> None:
        loc = scope.context.source.loc(target)
        match target:
            case ast.Name(id=name):
                if isinstance(value, SSAValue) and can_name(value):
                    name_value(value, name)
                scope.names[name] = value
            case ast.Tuple(elts=elts) | ast.List(elts=elts):
                items = self._unpack(value, len(elts), target, scope)
                for elt, item in zip(elts, items):
                    self._assign(elt, item, scope)
            case ast.Subscript():
                raise UnsupportedSyntax(
                    "item assignment is not supported inside a step function", loc,
                    hint="Step functions must not modify arrays in place: build the new value "
                         "with np.where, np.concatenate or arithmetic and return it.")
            case ast.Attribute():
                raise UnsupportedSyntax(
                    "attribute assignment is not supported inside a step function", loc,
                    hint="Return the new value from the step instead of storing it on an "
                         "object.")
            case ast.Starred():
                raise UnsupportedSyntax("starred assignment is not supported", loc)
            case _:
                raise UnsupportedSyntax("unsupported assignment target", loc)

    def _unpack(self, value: Value, count: int, node: ast.AST, scope: Scope) -> list[Value]:
        loc = scope.context.source.loc(node)
        if isinstance(value, TupleVal):
            items = list(value.items)
        elif isinstance(value, Const) and isinstance(value.value, (tuple, list)):
            items = [Const(v) for v in value.value]
        elif isinstance(value, SSAValue) and isinstance(value.type, TensorType) \
                and value.type.get_shape():
            n = value.type.get_shape()[0]
            if n < 0 or symbolic.is_sentinel_size(n):
                raise UnsupportedSyntax(f"cannot unpack {describe(value)}: its length is known "
                                        "only when the loop runs", loc)
            items = [self._index(value, [Const(k)], node, scope) for k in range(n)]
        else:
            raise UnsupportedSyntax(f"cannot unpack {describe(value)}", loc)
        if len(items) != count:
            raise ScanValueError(f"cannot unpack {len(items)} values into {count} names", loc)
        return items

    def _expr(self, node: ast.expr, scope: Scope) -> Value:
        loc = scope.context.source.loc(node)
        match node:
            case ast.Constant(value=value):
                return Const(value)
            case ast.Name(id=name):
                return self._name(name, node, scope)
            case ast.Tuple(elts=elts) | ast.List(elts=elts):
                items: list[Value] = []
                for elt in elts:
                    if isinstance(elt, ast.Starred):
                        items.extend(self._unpack_starred(elt, scope))
                    else:
                        items.append(self._expr(elt, scope))
                if all(isinstance(i, Const) for i in items):
                    return Const(tuple(i.value for i in items))
                return TupleVal(tuple(items), is_list=isinstance(node, ast.List))
            case ast.BinOp(left=left, op=op, right=right):
                return self._binop(op, self._expr(left, scope), self._expr(right, scope), node,
                                   scope)
            case ast.UnaryOp(op=op, operand=operand):
                value = self._expr(operand, scope)
                return self._unaryop(op, value, node, scope)
            case ast.Compare(left=left, ops=ops, comparators=comparators):
                if len(ops) != 1:
                    values = [self._expr(left, scope)] + [self._expr(c, scope) for c in comparators]
                    if all(isinstance(v, Const) for v in values):
                        return Const(all(_PY_COMPARES[type(op)](a.value, b.value)
                                         for op, a, b in zip(ops, values, values[1:])))
                    raise UnsupportedSyntax(
                        "chained comparisons of arrays are not supported", loc,
                        hint="Combine single comparisons with np.logical_and(a < b, b < c).")
                lhs, rhs = self._expr(left, scope), self._expr(comparators[0], scope)
                if isinstance(lhs, Const) and isinstance(rhs, Const):
                    return Const(_PY_COMPARES[type(ops[0])](lhs.value, rhs.value))
                if type(ops[0]) not in _COMPARES:
                    raise UnsupportedSyntax(f"`{type(ops[0]).__name__}` on arrays is not "
                                            "supported", loc)
                return self._elementwise(_COMPARES[type(ops[0])], [lhs, rhs], node, scope,
                                         python_syntax=True)
            case ast.BoolOp(op=op, values=values):
                evaluated = [self._expr(v, scope) for v in values]
                if all(isinstance(v, Const) for v in evaluated):
                    result = evaluated[0].value
                    for v in evaluated[1:]:
                        result = (result and v.value) if isinstance(op, ast.And) else \
                            (result or v.value)
                    return Const(result)
                for v in evaluated:
                    self._needs_value(v)
                raise UnsupportedSyntax(
                    f"`{'and' if isinstance(op, ast.And) else 'or'}` on array values is not "
                    "supported", loc,
                    hint="Use np.logical_and / np.logical_or (or & and | on boolean arrays).")
            case ast.IfExp(test=test, body=body, orelse=orelse):
                cond = self._expr(test, scope)
                if not isinstance(cond, Const):
                    self._needs_value(cond)
                    raise UnsupportedSyntax(
                        "a conditional expression on an array value is not supported inside "
                        "a step function", scope.context.source.loc(test),
                        hint="Select elementwise with np.where(cond, a, b) instead.")
                return self._expr(body if cond.value else orelse, scope)
            case ast.Attribute(value=obj, attr=attr):
                return self._attribute(self._expr(obj, scope), attr, node, scope)
            case ast.Subscript(value=obj, slice=index):
                return self._subscript(self._expr(obj, scope), index, node, scope)
            case ast.Call(func=callee, args=args, keywords=keywords):
                fn_value = self._expr(callee, scope)
                arg_values: list[Value] = []
                for a in args:
                    if isinstance(a, ast.Starred):
                        arg_values.extend(self._unpack_starred(a, scope))
                    else:
                        arg_values.append(self._expr(a, scope))
                kw_values = {}
                for kw in keywords:
                    if kw.arg is None:
                        raise UnsupportedSyntax("**kwargs in a call is not supported",
                                                scope.context.source.loc(kw.value))
                    kw_values[kw.arg] = self._expr(kw.value, scope)
                return self._call_value(fn_value, arg_values, kw_values, node, scope.context,
                                        scope)
            case ast.Dict(keys=keys, values=values):
                return self._dict_literal(keys, values, scope)
            case ast.Lambda():
                return LocalFunction(node, scope)
            case ast.Slice(lower=lower, upper=upper, step=step):
                parts = [self._expr(p, scope) if p is not None else Const(None)
                         for p in (lower, upper, step)]
                return TupleVal((Const("__slice__"), *parts))
            case ast.Starred():
                raise UnsupportedSyntax("a starred expression is not supported here", loc)
            case _:
                raise UnsupportedSyntax(
                    f"`{_expression_name(node)}` is not supported inside a step function", loc,
                    hint=SUBSET_HINT)

    def _dict_literal(self, keys, values, scope: Scope) -> DictVal:
        """``{"h": h, **rest}``: a dict whose keys are constants."""
        result = DictVal((), ())
        for key_node, value_node in zip(keys, values):
            value = self._expr(value_node, scope)
            if key_node is None:  # {**other}
                if not isinstance(value, DictVal):
                    raise UnsupportedSyntax(f"cannot unpack {describe(value)} with **",
                                            scope.context.source.loc(value_node))
                result = result.merged(value)
                continue
            key = self._expr(key_node, scope)
            if not isinstance(key, Const) or not isinstance(key.value, (str, int, bool)):
                raise UnsupportedSyntax("a dict key must be a constant string or number in a "
                                        "step function", scope.context.source.loc(key_node))
            result = result.merged(DictVal((key.value,), (value,)))
        return result

    def _unpack_starred(self, node: ast.Starred, scope: Scope) -> list[Value]:
        value = self._expr(node.value, scope)
        if isinstance(value, TupleVal):
            return list(value.items)
        if isinstance(value, Const) and isinstance(value.value, (tuple, list)):
            return [Const(v) for v in value.value]
        raise UnsupportedSyntax(f"cannot unpack {describe(value)} with *",
                                scope.context.source.loc(node))

    def _binop(self, op: ast.operator, lhs: Value, rhs: Value, node: ast.AST,
               scope: Scope) -> Value:
        if isinstance(lhs, Const) and isinstance(rhs, Const) and type(op) in _PY_BINOPS:
            try:
                return Const(_PY_BINOPS[type(op)](lhs.value, rhs.value))
            except Exception as e:
                raise ScanValueError(f"{e}", scope.context.source.loc(node)) from None
        if isinstance(lhs, TupleVal | Const) and isinstance(rhs, TupleVal | Const) and \
                isinstance(op, ast.Add):
            return TupleVal(tuple_items(lhs) + tuple_items(rhs))
        if isinstance(op, ast.MatMult):
            return self._matmul(lhs, rhs, node, scope)
        if isinstance(op, (ast.BitAnd, ast.BitOr, ast.BitXor)):
            name = {ast.BitAnd: "logical_and", ast.BitOr: "logical_or",
                    ast.BitXor: "not_equal"}[type(op)]
            for v in (lhs, rhs):
                if not (isinstance(v, SSAValue) and aval_of(v.type).dtype == np.bool_):
                    raise UnsupportedSyntax(
                        "bitwise operators are supported on boolean arrays only",
                        scope.context.source.loc(node))
            return self._elementwise(name, [lhs, rhs], node, scope)
        if type(op) not in _BINOPS:
            raise UnsupportedSyntax(f"the operator `{type(op).__name__}` is not supported",
                                    scope.context.source.loc(node))
        return self._elementwise(_BINOPS[type(op)], [lhs, rhs], node, scope,
                                 python_syntax=True)

    def _unaryop(self, op: ast.unaryop, value: Value, node: ast.AST, scope: Scope) -> Value:
        if isinstance(value, Const):
            py = {ast.USub: operator.neg, ast.UAdd: operator.pos, ast.Not: operator.not_,
                  ast.Invert: operator.invert}[type(op)]
            return Const(py(value.value))
        if isinstance(op, ast.UAdd):
            return value
        if isinstance(op, ast.USub):
            return self._elementwise("negative", [value], node, scope, python_syntax=True)
        if isinstance(op, ast.Invert) and isinstance(value, SSAValue) and \
                aval_of(value.type).dtype == np.bool_:
            return self._elementwise("logical_not", [value], node, scope)
        raise UnsupportedSyntax(
            f"`{'not' if isinstance(op, ast.Not) else '~'}` on an array value is not supported",
            scope.context.source.loc(node), hint="Use np.logical_not(x) for booleans.")

    def _attribute(self, obj: Value, attr: str, node: ast.AST, scope: Scope) -> Value:
        loc = scope.context.source.loc(node)
        if isinstance(obj, SSAValue):
            aval = aval_of(obj.type)
            if isinstance(aval, RngVal):
                if attr in RNG_METHODS:
                    return BoundMethod(obj, attr)
                raise UnsupportedSyntax(
                    f"Generator.{attr} is not supported in a step function", loc,
                    hint="Supported draws: " + ", ".join(f"rng.{m}" for m in RNG_METHODS)
                         + ".")
            if attr == "T":
                return self._transpose(obj, None, node, scope)
            if attr == "shape":
                if any(d is None or symbolic.is_sentinel_size(d) for d in aval.shape):
                    # a dimension known when the loop runs
                    return TupleVal(tuple(
                        Const(d) if d is not None and not symbolic.is_sentinel_size(d) else
                        self._emit(scan.DimOp(obj, k), node, scope)
                        for k, d in enumerate(aval.shape)))
                return Const(tuple(aval.shape))
            if attr == "ndim":
                return Const(aval.ndim)
            if attr == "dtype":
                return Const(aval.dtype)
            if attr == "size":
                if any(d is None or symbolic.is_sentinel_size(d) for d in aval.shape):
                    raise UnsupportedSyntax("`.size` of an array whose shape is known only when "
                                            "the loop runs is not supported", loc,
                                            hint="Use the dimensions of x.shape.")
                return Const(int(np.prod(aval.shape)))
            if attr in {"sum", "mean", "max", "min", "reshape", "astype", "transpose", "dot",
                        "clip", "copy"}:
                return BoundMethod(obj, attr)
            raise UnsupportedSyntax(f"the array attribute `.{attr}` is not supported in a step "
                                    "function", loc, hint=SUBSET_HINT)
        if isinstance(obj, PyObject):
            module = obj.obj
            if module is np:
                return self._numpy_attribute(attr, loc)
            if module is np.random:
                raise UnsupportedSyntax(
                    f"np.random.{attr} uses NumPy's global random state, which scanopt does "
                    "not support", loc,
                    hint="Create a generator with np.random.default_rng(seed) and pass it as a "
                         "non-sequence (or capture it); then call rng.binomial(...), etc.")
            if isinstance(module, types.ModuleType) and module.__name__ == "scanopt" and \
                    attr in ("until", "scan"):
                return PyObject(getattr(module, attr))
            if isinstance(module, types.ModuleType):
                raise UnsupportedSyntax(f"`{module.__name__}.{attr}` is not supported inside a "
                                        "step function", loc, hint=SUBSET_HINT)
        if isinstance(obj, DictVal):
            if attr in ("items", "keys", "values", "get"):
                return DictMethod(obj, attr)
            raise UnsupportedSyntax(f"the dict method `.{attr}` is not supported in a step "
                                    "function", loc, hint="Use d[key], d.get(key), d.items(), "
                                                          "d.keys(), d.values().")
        if isinstance(obj, Instance):
            try:
                value = getattr(obj.obj, attr)
            except AttributeError:
                raise UnsupportedSyntax(f"`{type(obj.obj).__name__}` object has no attribute "
                                        f"`{attr}`", loc) from None
            return self._from_python(value, obj.path + (("attr", attr),), attr, node,
                                     scope.context)
        if isinstance(obj, Const) and isinstance(obj.value, np.dtype):
            if attr in {"type", "name", "kind", "itemsize"}:
                return Const(getattr(obj.value, attr))
        if isinstance(obj, Const) and attr in {"real", "imag"} and is_python_scalar(obj.value):
            return Const(getattr(obj.value, attr))
        raise UnsupportedSyntax(f"attribute `.{attr}` of {describe(obj)} is not supported in a "
                                "step function", loc, hint=SUBSET_HINT)

    def _subscript(self, obj: Value, index_node: ast.expr, node: ast.AST, scope: Scope) -> Value:
        loc = scope.context.source.loc(node)
        index = self._expr(index_node, scope)
        entries = list(index.items) if isinstance(index, TupleVal) and not is_slice(index) \
            else [index]
        if isinstance(index, Const) and isinstance(index.value, tuple):
            entries = [Const(v) for v in index.value]
        if isinstance(obj, DictVal):
            key = entries[0] if len(entries) == 1 else index
            if not isinstance(key, Const) or obj.get(key.value, _MISSING) is _MISSING:
                raise ScanValueError(
                    f"{describe(obj)} has no key {key.value!r}" if isinstance(key, Const) else
                    "a dict key must be a constant in a step function", loc)
            return obj.get(key.value)
        if isinstance(obj, (TupleVal, Const)) and not isinstance(obj, SSAValue):
            items = tuple_items(obj) if isinstance(obj, TupleVal) or \
                isinstance(obj.value, (tuple, list)) else None
            if items is None or len(entries) != 1:
                raise UnsupportedSyntax(f"cannot index {describe(obj)}", loc)
            entry = entries[0]
            if is_slice(entry):
                start, stop, step = (self._static_int(p, node, scope, allow_none=True)
                                     for p in entry.items[1:])
                picked = items[slice(start, stop, step)]
                return Const(tuple(i.value for i in picked)) if all(
                    isinstance(i, Const) for i in picked) else TupleVal(tuple(picked))
            k = self._static_int(entry, node, scope)
            try:
                return items[k]
            except IndexError:
                raise ScanValueError(f"index {k} is out of range for a tuple of {len(items)} "
                                     "values", loc) from None
        if isinstance(obj, SSAValue) and isinstance(obj.type, TensorType):
            return self._index(obj, entries, node, scope)
        raise UnsupportedSyntax(f"cannot index {describe(obj)}", loc)


_MISSING = object()


def _statement_name(stmt: ast.stmt) -> str:
    return {ast.Delete: "del", ast.Global: "global", ast.Nonlocal: "nonlocal", ast.With: "with",
            ast.Try: "try", ast.Raise: "raise", ast.Import: "import", ast.ImportFrom: "import",
            ast.ClassDef: "class", ast.AsyncFunctionDef: "async def",
            ast.Break: "break", ast.Continue: "continue"}.get(type(stmt),
                                                              type(stmt).__name__.lower())


def _expression_name(node: ast.expr) -> str:
    return {ast.ListComp: "list comprehension", ast.GeneratorExp: "generator expression",
            ast.DictComp: "dict comprehension", ast.SetComp: "set comprehension",
            ast.Dict: "dict", ast.Set: "set", ast.JoinedStr: "f-string", ast.Await: "await",
            ast.Yield: "yield", ast.NamedExpr: ":="}.get(type(node), type(node).__name__)
