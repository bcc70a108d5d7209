"""Building ``scan`` ops, each typed by NumPy itself.

The type of every value comes from NumPy: each operation is first evaluated on stand-in values
of the operands' dtypes and shapes (zero-stride views, so no memory), which gives NumPy's
promotion, broadcasting and error rules exactly. Python scalars stay weak (NEP 50).
"""

from __future__ import annotations

import ast
import operator
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from xdsl.dialects import arith
from xdsl.dialects.builtin import (FileLineColLoc, FloatAttr, IntAttr, IntegerAttr, StringAttr,
                                   TensorType, f64, i1, i64)
from xdsl.ir import Attribute, Block, Operation, SSAValue

from scanopt import symbolic
from scanopt.dialects import scan
from scanopt.dialects.types import UnsupportedDtype, aval_of, ir_type
from scanopt.errors import ScanTypeError, ScanValueError, UnsupportedSyntax
from scanopt.frontend.values import (Const, PyObject, Scope, TupleVal, Value, describe, is_slice,
                                     is_weak, tuple_items)
from scanopt.signature import AVal, ParameterValueNeeded, aval_of_result, is_python_scalar

# Python's own operators, for elementwise ops on Python scalars only (weak in, weak out).
_PY_OPERATORS: dict[str, Callable] = {
    "add": operator.add, "subtract": operator.sub, "multiply": operator.mul,
    "true_divide": operator.truediv, "floor_divide": operator.floordiv, "remainder": operator.mod,
    "power": operator.pow, "negative": operator.neg, "absolute": abs, "equal": operator.eq,
    "not_equal": operator.ne, "less": operator.lt, "less_equal": operator.le,
    "greater": operator.gt, "greater_equal": operator.ge}


def _ufunc_label(numpy_name: str) -> str:
    symbols = {"add": "+", "subtract": "-", "multiply": "*", "true_divide": "/",
               "floor_divide": "//", "remainder": "%", "power": "**"}
    return f"`{symbols[numpy_name]}`" if numpy_name in symbols else f"np.{numpy_name}"


def normalize_axis(axis: int, result_type: Attribute, node, scope: Scope) -> int:
    ndim = len(aval_of(result_type).shape)
    return axis % ndim if ndim else axis


class OpBuilder:
    """Emits typed ops into the loop body (``self.block``), located at the user's line."""

    def _emit(self, op: Operation, node: ast.AST, scope: Scope) -> SSAValue:
        if self.frames:  # inside a nested scan: values of the enclosing step come in as inputs
            op.operands = [self._localize(o, node, scope) for o in op.operands]
        loc = scope.context.source.loc(node)
        op.attributes["loc"] = FileLineColLoc(StringAttr(loc.filename), IntAttr(loc.line),
                                              IntAttr(loc.col))
        self.block.add_op(op)
        return op.results[0] if op.results else None

    def _materialize(self, value: Value, node, scope: Scope) -> SSAValue:
        """A value where an array is needed: Python numbers become (weak) constants."""
        if isinstance(value, SSAValue):
            return value
        if isinstance(value, Const) and is_python_scalar(value.value):
            v = value.value
            if isinstance(v, bool):
                attr = IntegerAttr(int(v), i1)
            elif isinstance(v, int):
                if not -(2**63) <= v < 2**63:
                    raise ScanValueError(f"the integer {v} does not fit in int64",
                                         scope.context.source.loc(node))
                attr = IntegerAttr(v, i64)
            elif isinstance(v, float):
                attr = FloatAttr(v, f64)
            else:
                raise UnsupportedSyntax("complex constants are not supported",
                                        scope.context.source.loc(node))
            # One SSA value per constant (by type and exact spelling: -0.0 is not 0.0), so
            # that ops sharing a literal can be recognised as alike.
            key = (type(v), repr(v))
            if key not in self.constants:
                self.constants[key] = self._emit(arith.ConstantOp(attr), node, scope)
            return self.constants[key]
        if isinstance(value, Const) and isinstance(value.value, np.generic):
            return self._materialize_numpy(value.value, node, scope)
        if isinstance(value, TupleVal) and not is_slice(value) or \
                isinstance(value, Const) and isinstance(value.value, tuple):
            items = [self._materialize(v, node, scope) for v in tuple_items(value)]
            result_type = self._infer(
                lambda: np.asarray([aval_of(i.type).dummy() for i in items]), node, scope,
                "array construction")
            return self._emit(scan.StackOp(items, 0, result_type), node, scope)
        raise UnsupportedSyntax(f"{describe(value)} cannot be used as an array value",
                                scope.context.source.loc(node))

    def _materialize_numpy(self, value: np.generic, node, scope: Scope) -> SSAValue:
        weak = self._materialize(Const(value.item()), node, scope)
        return self._cast(weak, value.dtype, node, scope)

    def _infer_values(self, fn, operands: list[SSAValue], node, scope: Scope, label: str):
        return self._infer(lambda: fn(*(self._dummy(o) for o in operands)), node, scope, label)

    @staticmethod
    def _dummy(value: SSAValue):
        owner = value.owner
        if isinstance(owner, arith.ConstantOp):  # the real value: NumPy checks int ranges
            attr = owner.value
            v = attr.value.data
            return bool(v) if attr.type == i1 else v
        return aval_of(value.type).dummy()

    def _infer(self, thunk: Callable[[], Any], node, scope: Scope, label: str) -> Attribute:
        """The type of what ``thunk`` returns, asking NumPy on stand-ins (``AVal.dummy``, made
        inside the thunk). With symbolic dimensions, NumPy is asked three times with small
        sizes for the symbols and each result dimension solved for (scanopt/symbolic.py)."""
        assignments = symbolic.probes(self.symbols) if self.symbols else [None]
        avals = []
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for assignment in assignments:
                try:
                    if assignment is None:
                        result = thunk()
                    else:
                        with symbolic.probing(assignment):
                            result = thunk()
                except Exception as e:  # NumPy's own message says what does not fit
                    raise ScanTypeError(f"{label}: {e}",
                                        scope.context.source.loc(node)) from None
                avals.append(aval_of_result(result))
        aval = avals[0]
        if len(avals) > 1 and aval.shape:
            shape = []
            for k in range(aval.ndim):
                size = symbolic.solve([a.shape[k] for a in avals], self.symbols, assignments)
                if size is None:
                    raise ScanTypeError(
                        f"{label}: dimension {k} of the result depends on the symbolic sizes "
                        f"({', '.join(self.symbols)}) in a way a built module cannot compute",
                        scope.context.source.loc(node),
                        hint="A dimension may be a symbol, a multiple of one plus a constant "
                             "(4*H, H-1), or a constant; give this one a concrete size.")
                shape.append(size)
            aval = AVal(aval.dtype, tuple(shape), aval.weak)
        try:
            return ir_type(aval)
        except UnsupportedDtype as e:
            raise ScanTypeError(f"{label} gives dtype {e}, which scanopt does not support",
                                scope.context.source.loc(node)) from None

    def _needs_value(self, value: Value) -> None:
        """Where a constant is needed and ``value`` is not one: if it is computed from scalar
        non-sequences (Python or NumPy scalars, 0-d arrays) only, ask for the loop to be
        compiled for their values
        (ParameterValueNeeded); otherwise return, and the caller says what is not supported."""
        if not isinstance(value, SSAValue) or self.frames:
            return
        params = self._weak_parameters_of(value, set())
        if params:
            raise ParameterValueNeeded(frozenset(params))

    def _weak_parameters_of(self, value: SSAValue, seen: set) -> set[int] | None:
        """The non-sequences (positions) ``value`` is computed from, if it is computed from
        Python-scalar non-sequences and constants alone; else None."""
        owner = value.owner
        if isinstance(owner, Block):
            first_param = len(self.root_block.args) - len(self.spec.non_sequences) - \
                len(self.capture_types)
            k = value.index - first_param
            aval = aval_of(value.type)
            if owner is self.root_block and 0 <= k < len(self.spec.non_sequences) and \
                    isinstance(aval, AVal) and aval.shape == () and aval.dtype.kind in "biuf":
                return {k}  # a scalar non-sequence: Python, NumPy or 0-d
            return None
        if isinstance(owner, arith.ConstantOp):
            return set()
        if owner in seen:
            return set()
        seen.add(owner)
        if isinstance(owner, scan.RandomOp) or owner.regions:
            return None
        found: set[int] = set()
        for operand in owner.operands:
            params = self._weak_parameters_of(operand, seen)
            if params is None:
                return None
            found |= params
        return found

    def _const_int(self, value: Value, node, scope: Scope, what: str) -> int:
        if isinstance(value, Const) and isinstance(value.value, (int, np.integer)) and \
                not isinstance(value.value, bool):
            return int(value.value)
        self._needs_value(value)
        raise UnsupportedSyntax(f"`{what}` must be a constant integer",
                                scope.context.source.loc(node))

    def _const_ints(self, value: Value, node, scope: Scope, what: str) -> list[int] | None:
        if value is None or isinstance(value, Const) and value.value is None:
            return None
        if isinstance(value, Const) and isinstance(value.value, (int, np.integer)):
            return [int(value.value)]
        if isinstance(value, Const) and isinstance(value.value, (tuple, list)) and all(
                isinstance(v, (int, np.integer)) for v in value.value):
            return [int(v) for v in value.value]
        self._needs_value(value)
        raise UnsupportedSyntax(f"`{what}` must be a constant integer or tuple of integers",
                                scope.context.source.loc(node),
                                hint="Shapes and axes are fixed when the loop is compiled.")

    def _const_bool(self, value: Value, node, scope: Scope, what: str) -> bool:
        if isinstance(value, Const) and isinstance(value.value, (bool, int, np.bool_)):
            return bool(value.value)
        self._needs_value(value)
        raise UnsupportedSyntax(f"`{what}` must be a constant True or False",
                                scope.context.source.loc(node))

    def _dtype_arg(self, value: Value, node, scope: Scope) -> np.dtype:
        raw = value.obj if isinstance(value, PyObject) else \
            value.value if isinstance(value, Const) else None
        try:
            if raw is not None:
                return np.dtype(raw)
        except TypeError:
            pass
        raise UnsupportedSyntax("the dtype must be a constant (np.float32, 'float32', x.dtype)",
                                scope.context.source.loc(node))

    def _elementwise(self, numpy_name: str, values: list[Value], node, scope: Scope, *,
                     python_syntax: bool = False) -> Value:
        """An elementwise op. ``python_syntax``: written as a Python operator (``a - b``, ``-a``,
        ``abs(a)``, ``a < b``) rather than as a NumPy function call: on Python scalars alone
        that is Python arithmetic, whose result is again a (weak) Python scalar."""
        if all(isinstance(v, Const) for v in values):
            try:
                result = getattr(np, numpy_name)(*(v.value for v in values))
            except Exception as e:
                raise ScanValueError(str(e), scope.context.source.loc(node)) from None
            if isinstance(result, np.generic):
                return self._materialize_numpy(result, node, scope)
            return Const(result)
        operands = [self._materialize(v, node, scope) for v in values]
        if python_syntax and all(is_weak(o) for o in operands):
            # ``1.0 - k`` with ``k`` a Python float: the plain loop computes a Python float,
            # which stays weak in NumPy's promotion (NEP 50); np.subtract would make it strong.
            python_op = _PY_OPERATORS[numpy_name]
            result_type = self._infer(
                lambda: python_op(*(self._dummy(o) for o in operands)), node, scope,
                _ufunc_label(numpy_name))
        else:
            ufunc = getattr(np, numpy_name)
            result_type = self._infer_values(ufunc, operands, node, scope,
                                             _ufunc_label(numpy_name))
        if len(operands) == 1:
            op = scan.UNARY_OPS[numpy_name](operands[0], result_type)
        else:
            op = scan.BINARY_OPS[numpy_name](operands[0], operands[1], result_type)
        return self._emit(op, node, scope)

    def _matmul(self, a: Value, b: Value, node, scope: Scope) -> SSAValue:
        loc = scope.context.source.loc(node)
        lhs, rhs = self._materialize(a, node, scope), self._materialize(b, node, scope)
        la, ra = aval_of(lhs.type), aval_of(rhs.type)
        if not isinstance(lhs.type, TensorType) or not isinstance(rhs.type, TensorType) or \
                la.ndim == 0 or ra.ndim == 0:
            raise ScanTypeError(
                f"matmul needs arrays of at least one dimension, got {la.describe()} @ "
                f"{ra.describe()}", loc, hint="Use * to multiply by a scalar.")
        result_type = self._matmul_type(la, ra, loc)
        return self._emit(scan.MatmulOp(lhs, rhs, result_type), node, scope)

    @staticmethod
    def _matmul_type(la: AVal, ra: AVal, loc) -> Attribute:
        # Shapes by NumPy's matmul rule, without computing a stand-in product.
        a_shape = (1, *la.shape) if la.ndim == 1 else la.shape
        b_shape = (*ra.shape, 1) if ra.ndim == 1 else ra.shape
        if a_shape[-1] != b_shape[-2]:
            raise ScanTypeError(
                f"matmul: the inner dimensions differ: {la.describe()} @ {ra.describe()} "
                f"({a_shape[-1]} vs {b_shape[-2]})", loc,
                hint="Check the shapes of the operands (transpose one with .T?).")
        try:
            batch = np.broadcast_shapes(a_shape[:-2], b_shape[:-2])
        except ValueError:
            raise ScanTypeError(f"matmul: batch dimensions of {la.describe()} and "
                                f"{ra.describe()} do not broadcast", loc) from None
        shape = (*batch, *(() if la.ndim == 1 else (a_shape[-2],)),
                 *(() if ra.ndim == 1 else (b_shape[-1],)))
        dtype = np.result_type(la.dtype, ra.dtype)
        return ir_type(AVal(dtype, shape))

    def _dot(self, a: Value, b: Value, node, scope: Scope) -> Value:
        lhs, rhs = self._materialize(a, node, scope), self._materialize(b, node, scope)
        la, ra = aval_of(lhs.type), aval_of(rhs.type)
        if la.ndim == 0 or ra.ndim == 0:
            return self._elementwise("multiply", [lhs, rhs], node, scope)
        if la.ndim > 2 or ra.ndim > 2:
            if ra.ndim <= 2:
                return self._matmul(lhs, rhs, node, scope)  # np.dot == matmul here
            raise UnsupportedSyntax(
                "np.dot with an N-d second operand is not supported", scope.context.source.loc(
                    node), hint="Use @ (np.matmul), whose batching rule scanopt supports.")
        return self._matmul(lhs, rhs, node, scope)

    def _reduce(self, kind: str, a: Value, axis: Value, keepdims: Value, node,
                scope: Scope) -> SSAValue:
        x = self._materialize(a, node, scope)
        axes = self._const_ints(axis, node, scope, "axis")
        keep = self._const_bool(keepdims, node, scope, "keepdims")
        fn = {"sum": np.sum, "mean": np.mean, "max": np.max, "min": np.min}[kind]
        axis_arg = None if axes is None else (axes[0] if isinstance(axis.value, int) else
                                               tuple(axes))
        result_type = self._infer(
            lambda: fn(aval_of(x.type).dummy(), axis=axis_arg, keepdims=keep), node, scope,
            f"np.{kind}")
        ndim = aval_of(x.type).ndim
        # On a 0-d value NumPy accepts axis 0 or -1 and reduces nothing: no axis (all of it).
        normalized = None if axes is None or ndim == 0 else [a % ndim for a in axes]
        return self._emit(scan.ReduceOp(kind, x, normalized, keep, result_type), node, scope)

    def _as_array(self, x: SSAValue, node, scope: Scope) -> SSAValue:
        """A Python scalar as NumPy makes it when a function takes it as an array (a strong
        0-d array of its default dtype); anything else as it is."""
        aval = aval_of(x.type)
        if isinstance(aval, AVal) and aval.weak:
            return self._emit(scan.CastOp(x, ir_type(AVal(aval.dtype, ()))), node, scope)
        return x

    def _transpose(self, x: SSAValue, axes, node, scope: Scope) -> SSAValue:
        x = self._as_array(x, node, scope)
        aval = aval_of(x.type)
        perm = list(range(aval.ndim))[::-1] if axes is None else list(axes)
        result_type = self._infer(lambda: np.transpose(aval.dummy(), perm), node, scope,
                                  "transpose")
        perm = [p % aval.ndim for p in perm]
        return self._emit(scan.TransposeOp(x, perm, result_type), node, scope)

    def _reshape(self, x: SSAValue, shape, node, scope: Scope) -> SSAValue:
        x = self._as_array(x, node, scope)
        result_type = self._infer(lambda: np.reshape(aval_of(x.type).dummy(), tuple(shape)),
                                  node, scope, "reshape")
        return self._emit(scan.ReshapeOp(x, result_type), node, scope)

    def _cast(self, x: SSAValue, dtype: np.dtype, node, scope: Scope) -> SSAValue:
        aval = aval_of(x.type)
        try:
            result_type = ir_type(AVal(dtype, aval.shape))
        except UnsupportedDtype:
            raise ScanTypeError(f"dtype {dtype} is not supported",
                                scope.context.source.loc(node)) from None
        return self._emit(scan.CastOp(x, result_type), node, scope)

    def _clip(self, a: Value, lo: Value, hi: Value, node, scope: Scope) -> Value:
        if isinstance(lo, Const) and lo.value is None:
            if isinstance(hi, Const) and hi.value is None:
                raise ScanValueError("np.clip needs a lower or an upper bound",
                                     scope.context.source.loc(node))
            return self._elementwise("minimum", [a, hi], node, scope)
        if isinstance(hi, Const) and hi.value is None:
            return self._elementwise("maximum", [a, lo], node, scope)
        operands = [self._materialize(v, node, scope) for v in (a, lo, hi)]
        result_type = self._infer_values(np.clip, operands, node, scope, "np.clip")
        return self._emit(scan.ClipOp(*operands, result_type), node, scope)

    def _index(self, obj: SSAValue, entries: list[Value], node: ast.AST, scope: Scope) -> SSAValue:
        loc = scope.context.source.loc(node)
        spec: list[str] = []
        operands: list[SSAValue] = []
        dummy_index: list[Any] = []
        for entry in entries:
            if is_slice(entry):
                parts = [self._static_int(p, node, scope, allow_none=True)
                         for p in entry.items[1:]]
                if parts[2] is None:
                    parts = parts[:2]
                spec.append(":".join("" if p is None else str(p) for p in parts))
                dummy_index.append(slice(*parts))
            elif isinstance(entry, Const) and entry.value is None:
                spec.append("None")
                dummy_index.append(None)
            elif isinstance(entry, Const) and entry.value is Ellipsis:
                spec.append("...")
                dummy_index.append(Ellipsis)
            elif isinstance(entry, Const) and isinstance(entry.value, (int, np.integer)) and \
                    not isinstance(entry.value, bool):
                spec.append(str(int(entry.value)))
                dummy_index.append(int(entry.value))
            elif isinstance(entry, SSAValue) and isinstance(aval_of(entry.type), AVal) and \
                    aval_of(entry.type).dtype.kind in "iu":
                spec.append("?")
                operands.append(entry)
                aval = aval_of(entry.type)
                dummy_index.append(0 if aval.weak else aval)  # made in the thunk
            else:
                raise UnsupportedSyntax(
                    f"indexing with {describe(entry)} is not supported", loc,
                    hint="Index with constant integers and slices, or with integer values "
                         "(for example an index taken from an integer sequence). Boolean masks "
                         "give data-dependent shapes: use np.where instead.")
        def indexed():
            index = tuple(np.zeros(i.dummy().shape, i.dtype) if isinstance(i, AVal) else i
                          for i in dummy_index)
            return aval_of(obj.type).dummy()[index]

        result_type = self._infer(indexed, node, scope, "indexing")
        return self._emit(scan.IndexOp(obj, operands, spec, result_type), node, scope)

    def _static_int(self, value: Value, node, scope: Scope, allow_none=False):
        if isinstance(value, Const) and (isinstance(value.value, (int, np.integer))
                                         or (allow_none and value.value is None)):
            return value.value if value.value is None else int(value.value)
        self._needs_value(value)
        raise UnsupportedSyntax("this index must be a constant integer",
                                scope.context.source.loc(node))
