"""The NumPy vocabulary of a step function: ``np.*`` functions, array methods, dtypes and
the few builtins that act on values.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

import numpy as np
from xdsl.dialects.builtin import DYNAMIC_INDEX, TensorType
from xdsl.ir import SSAValue

from scanopt import symbolic
from scanopt.dialects import scan
from scanopt.dialects.types import aval_of, ir_type
from scanopt.errors import ScanValueError, SourceLocation, UnsupportedSyntax
from scanopt.frontend.ops import normalize_axis
from scanopt.frontend.values import BoundMethod, Const, PyObject, Scope, TupleVal, Value, describe
from scanopt.signature import AVal

_REDUCTIONS = {"sum": "sum", "mean": "mean", "max": "max", "amax": "max", "min": "min",
               "amin": "min"}


@dataclass(frozen=True)
class NumpyFunction:
    """One supported ``np.<name>``: its parameters as NumPy names them (a name, or ``(name,
    default)``), the walker method that builds it from the bound arguments, and what that
    method computes (a ufunc's name, a reduction's kind, ``np.concatenate``...)."""

    params: tuple
    builder: str
    computes: str


def _unary(ufunc: str) -> NumpyFunction:
    return NumpyFunction(("x",), "_np_elementwise", ufunc)


def _binary(ufunc: str) -> NumpyFunction:
    return NumpyFunction(("x1", "x2"), "_np_elementwise", ufunc)


def _reduction(kind: str) -> NumpyFunction:
    return NumpyFunction(("a", ("axis", None), ("keepdims", False)), "_np_reduce", kind)


def _like(fill: str) -> NumpyFunction:
    params = ("a", "fill_value") if fill == "full" else ("a",)
    return NumpyFunction((*params, ("dtype", None), ("shape", None)), "_np_full_like", fill)


# The NumPy functions a step may call. Adding one is one entry here (and, for a new ufunc, its
# op in scanopt/dialects/scan.py).
NUMPY_FUNCTIONS: dict[str, NumpyFunction] = {
    **{name: _unary(ufunc) for name, ufunc in {
        "exp": "exp", "log": "log", "tanh": "tanh", "sin": "sin", "cos": "cos", "sqrt": "sqrt",
        "abs": "absolute", "absolute": "absolute", "negative": "negative",
        "logical_not": "logical_not", "sinh": "sinh", "cosh": "cosh", "tan": "tan",
        "arcsin": "arcsin", "arccos": "arccos", "arctan": "arctan", "arcsinh": "arcsinh",
        "arccosh": "arccosh", "arctanh": "arctanh", "exp2": "exp2", "expm1": "expm1",
        "log2": "log2", "log10": "log10", "log1p": "log1p", "square": "square",
        "reciprocal": "reciprocal", "sign": "sign", "floor": "floor", "ceil": "ceil",
        "trunc": "trunc", "rint": "rint"}.items()},
    **{name: _binary(ufunc) for name, ufunc in {
        "add": "add", "subtract": "subtract", "multiply": "multiply", "divide": "true_divide",
        "true_divide": "true_divide", "floor_divide": "floor_divide", "mod": "remainder",
        "remainder": "remainder", "power": "power", "maximum": "maximum", "minimum": "minimum",
        "equal": "equal", "not_equal": "not_equal", "less": "less", "less_equal": "less_equal",
        "greater": "greater", "greater_equal": "greater_equal", "logical_and": "logical_and",
        "logical_or": "logical_or", "logical_xor": "logical_xor", "arctan2": "arctan2",
        "hypot": "hypot", "logaddexp": "logaddexp", "fmax": "fmax", "fmin": "fmin"}.items()},
    **{name: _reduction(kind) for name, kind in _REDUCTIONS.items()},
    "dot": NumpyFunction(("a", "b"), "_np_matmul", "dot"),
    "matmul": NumpyFunction(("a", "b"), "_np_matmul", "matmul"),
    "where": NumpyFunction(("condition", "x", "y"), "_np_where", "where"),
    "clip": NumpyFunction(("a", "a_min", "a_max"), "_np_clip", "clip"),
    "transpose": NumpyFunction(("a", ("axes", None)), "_np_transpose", "transpose"),
    "reshape": NumpyFunction(("a", "shape"), "_np_reshape", "reshape"),
    "concatenate": NumpyFunction(("arrays", ("axis", 0)), "_np_join", "concatenate"),
    "stack": NumpyFunction(("arrays", ("axis", 0)), "_np_join", "stack"),
    "zeros": NumpyFunction(("shape", ("dtype", None)), "_np_full", "zeros"),
    "ones": NumpyFunction(("shape", ("dtype", None)), "_np_full", "ones"),
    "full": NumpyFunction(("shape", "fill_value", ("dtype", None)), "_np_full", "full"),
    "zeros_like": _like("zeros"),
    "ones_like": _like("ones"),
    "full_like": _like("full"),
}


_DTYPE_NAMES = {"float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8",
                "uint16", "uint32", "uint64", "bool_", "complex64", "complex128", "double",
                "single", "half", "intc", "intp"}


_NUMPY_CONSTANTS = {"pi", "e", "inf", "nan", "newaxis"}


SUPPORTED_NUMPY = sorted(NUMPY_FUNCTIONS)


# What to write instead of common functions that NumPy lacks or scanopt does not compile.
_ALTERNATIVES = {
    "sigmoid": "write 1 / (1 + np.exp(-x))",
    "expit": "write 1 / (1 + np.exp(-x))",
    "softmax": "write e = np.exp(x - x.max(axis=-1, keepdims=True)); "
               "e / e.sum(axis=-1, keepdims=True)",
    "logsumexp": "write m = x.max(axis=-1, keepdims=True); "
                 "m + np.log(np.sum(np.exp(x - m), axis=-1, keepdims=True))",
    "relu": "write np.maximum(x, 0)",
    "softplus": "write np.logaddexp(0, x)",
    "heaviside": "write np.where(x > 0, 1.0, 0.0)",
    "einsum": "write the contraction with @ / np.matmul (and .T, .reshape)",
    "tensordot": "write the contraction with @ / np.matmul (and .T, .reshape)",
    "inner": "use @ / np.dot",
    "vdot": "write np.sum(x * y)",
    "outer": "write x[:, None] * y[None, :]",
    "std": "write np.sqrt(np.mean((x - x.mean()) ** 2))",
    "var": "write np.mean((x - x.mean()) ** 2)",
    "hstack": "use np.concatenate(..., axis=-1)",
    "vstack": "use np.concatenate(..., axis=0) or np.stack",
    "fabs": "use np.abs",
    "round": "use np.rint (both round halves to even)",
    "around": "use np.rint (both round halves to even)",
    "copy": "use x.copy(), or x itself: values are never modified in place",
    "array": "build arrays outside the step and pass them as non-sequences, or use "
             "np.zeros_like / np.full_like",
    "asarray": "values in a step are arrays already; convert dtypes with .astype(...)",
    "empty": "use np.zeros(shape) (an empty array's values are whatever memory held)",
}


def unsupported_numpy_hint(name: str) -> str:
    """What to write instead of ``np.<name>``: a known alternative, or the supported functions
    whose names are nearest (never the whole list)."""
    if name in _ALTERNATIVES:
        return f"For np.{name}, {_ALTERNATIVES[name]}."
    nearest = difflib.get_close_matches(name, SUPPORTED_NUMPY, n=4, cutoff=0.6)
    if nearest:
        return ("Nearest supported NumPy functions: " + ", ".join(f"np.{n}" for n in nearest)
                + ". The README lists them all (\"What a step function may contain\").")
    return ("scanopt compiles NumPy's elementwise functions, reductions, matmul and shape "
            "functions (the README lists them all); write this one with those, in a helper "
            "function if you like.")


class NumpyCalls:
    """Calls of NumPy functions, array methods, dtype constructors and builtins."""

    def _numpy_call(self, name: str, args, kwargs, node, scope: Scope) -> Value:
        function = NUMPY_FUNCTIONS[name]
        bound = bind_call(name, list(function.params), args, kwargs, node, scope)
        return getattr(self, function.builder)(function.computes, bound, node, scope)

    def _np_elementwise(self, ufunc: str, bound, node, scope: Scope) -> Value:
        operands = [bound["x"]] if "x" in bound else [bound["x1"], bound["x2"]]
        return self._elementwise(ufunc, operands, node, scope)

    def _np_reduce(self, kind: str, bound, node, scope: Scope) -> Value:
        return self._reduce(kind, bound["a"], bound["axis"], bound["keepdims"], node, scope)

    def _np_matmul(self, name: str, bound, node, scope: Scope) -> Value:
        if name == "dot":
            return self._dot(bound["a"], bound["b"], node, scope)
        return self._matmul(bound["a"], bound["b"], node, scope)

    def _np_where(self, _: str, bound, node, scope: Scope) -> Value:
        operands = [self._materialize(bound[k], node, scope) for k in ("condition", "x", "y")]
        result_type = self._infer_values(np.where, operands, node, scope, "np.where")
        return self._emit(scan.WhereOp(*operands, result_type), node, scope)

    def _np_clip(self, _: str, bound, node, scope: Scope) -> Value:
        return self._clip(bound["a"], bound["a_min"], bound["a_max"], node, scope)

    def _np_transpose(self, _: str, bound, node, scope: Scope) -> Value:
        return self._transpose(self._materialize(bound["a"], node, scope),
                               self._const_ints(bound["axes"], node, scope, "axes"), node, scope)

    def _np_reshape(self, _: str, bound, node, scope: Scope) -> Value:
        return self._reshape(self._materialize(bound["a"], node, scope),
                             self._const_ints(bound["shape"], node, scope, "shape"), node, scope)

    def _np_join(self, name: str, bound, node, scope: Scope) -> Value:
        """``np.concatenate`` and ``np.stack``."""
        arrays = bound["arrays"]
        if isinstance(arrays, Const) and isinstance(arrays.value, (tuple, list)):
            arrays = TupleVal(tuple(Const(v) for v in arrays.value))  # constants: [0.5, 1.5]
        if not isinstance(arrays, TupleVal):
            raise UnsupportedSyntax(f"np.{name} needs a tuple or list of arrays",
                                    scope.context.source.loc(node))
        operands = [self._materialize(a, node, scope) for a in arrays.items]
        axis = self._const_int(bound["axis"], node, scope, "axis")
        fn = np.concatenate if name == "concatenate" else np.stack
        result_type = self._infer(
            lambda: fn([aval_of(o.type).dummy() for o in operands], axis=axis), node, scope,
            f"np.{name}")
        op_class = scan.ConcatOp if name == "concatenate" else scan.StackOp
        return self._emit(op_class(operands, normalize_axis(axis, result_type, node, scope),
                                   result_type), node, scope)

    def _np_full(self, fill: str, bound, node, scope: Scope) -> Value:
        """``np.zeros(shape)``, ``np.ones(shape)``, ``np.full(shape, value)`` with a constant
        shape; the dtype is NumPy's (float64, or the fill value's)."""
        shape = self._const_ints(bound["shape"], node, scope, "shape")
        fill_value = self._materialize(
            {"zeros": Const(0.0), "ones": Const(1.0)}.get(fill) or bound["fill_value"], node,
            scope)
        dtype = None if bound["dtype"] == Const(None) else \
            self._dtype_arg(bound["dtype"], node, scope)
        dummy = self._dummy(fill_value)
        result_type = self._infer(lambda: np.full(tuple(shape), dummy, dtype=dtype), node, scope,
                                  f"np.{fill}")
        return self._emit(scan.FullOp(fill_value, result_type), node, scope)

    def _np_full_like(self, fill: str, bound, node, scope: Scope) -> Value:
        """``np.zeros_like``, ``np.ones_like``, ``np.full_like``."""
        a = self._materialize(bound["a"], node, scope)
        fill_value = {"zeros": Const(0), "ones": Const(1)}.get(fill) or bound["fill_value"]
        dtype = None if bound["dtype"] == Const(None) else \
            self._dtype_arg(bound["dtype"], node, scope)
        shape = self._const_ints(bound["shape"], node, scope, "shape")
        aval = aval_of(a.type)
        result_dtype = dtype if dtype is not None else np.asarray(aval.dummy()).dtype
        result_shape = tuple(shape) if shape is not None else aval.shape
        return self._emit(scan.FullOp(self._materialize(fill_value, node, scope),
                                      ir_type(AVal(result_dtype, result_shape))), node, scope)

    def _method(self, method: BoundMethod, args, kwargs, node, scope: Scope) -> Value:
        x, name = method.receiver, method.name
        if name in _REDUCTIONS:
            bound = bind_call(f".{name}", [("axis", None), ("keepdims", False)], args, kwargs, node,
                          scope)
            return self._reduce(_REDUCTIONS[name], x, bound["axis"], bound["keepdims"], node,
                                scope)
        if name == "reshape":
            shape = args[0] if len(args) == 1 else Const(tuple(
                self._const_int(a, node, scope, "shape") for a in args))
            if kwargs:
                raise UnsupportedSyntax(".reshape() keyword arguments are not supported",
                                        scope.context.source.loc(node))
            return self._reshape(x, self._const_ints(shape, node, scope, "shape"), node, scope)
        if name == "transpose":
            axes = None
            if len(args) == 1:
                axes = self._const_ints(args[0], node, scope, "axes")
            elif args:
                axes = [self._const_int(a, node, scope, "axes") for a in args]
            return self._transpose(x, axes, node, scope)
        if name == "astype":
            bound = bind_call(".astype", ["dtype"], args, kwargs, node, scope)
            return self._cast(x, self._dtype_arg(bound["dtype"], node, scope), node, scope)
        if name == "dot":
            bound = bind_call(".dot", ["b"], args, kwargs, node, scope)
            return self._dot(x, bound["b"], node, scope)
        if name == "clip":
            bound = bind_call(".clip", [("min", None), ("max", None)], args, kwargs, node, scope)
            return self._clip(x, bound["min"], bound["max"], node, scope)
        if name == "copy":
            return x  # values are never modified in place, so a copy is the value itself
        raise AssertionError(name)

    def _numpy_attribute(self, attr: str, loc: SourceLocation) -> Value:
        if attr in _NUMPY_CONSTANTS:
            return Const(getattr(np, attr))
        if attr in _DTYPE_NAMES:
            return PyObject(getattr(np, attr))
        if attr == "random":
            return PyObject(np.random)
        obj = getattr(np, attr, None)
        if obj is not None and numpy_name(obj) is not None:
            return PyObject(obj)
        raise UnsupportedSyntax(f"np.{attr} is not supported inside a step function", loc,
                                hint=unsupported_numpy_hint(attr))

    def _dtype_call(self, dtype_class, args, kwargs, node, scope: Scope) -> Value:
        loc = scope.context.source.loc(node)
        if len(args) != 1 or kwargs:
            raise UnsupportedSyntax(f"{dtype_class.__name__}() takes one value here", loc)
        value = args[0]
        if isinstance(value, Const):
            if dtype_class in (float, int, bool):
                return Const(dtype_class(value.value))
            value = self._materialize(value, node, scope)
        if dtype_class in (float, int, bool):
            aval = aval_of(value.type)
            if isinstance(aval, AVal) and aval.shape == () and aval.dtype.kind in "biuf":
                # A Python scalar again (weak in NumPy's promotion), as in the plain loop.
                weak = AVal(np.dtype({float: np.float64, int: np.int64, bool: np.bool_}[
                    dtype_class]), (), weak=True)
                return self._emit(scan.CastOp(value, ir_type(weak)), node, scope)
            raise UnsupportedSyntax(
                f"{dtype_class.__name__}() of {describe(value)} is not supported", loc,
                hint=f"{dtype_class.__name__}() takes a scalar (a 0-d value); keep an array as "
                     "an array, or use .astype(...).")
        return self._cast(value, np.dtype(dtype_class), node, scope)

    def _builtin_call(self, fn, args, node, scope: Scope) -> Value:
        loc = scope.context.source.loc(node)
        if fn is abs and len(args) == 1 and not isinstance(args[0], Const):
            return self._elementwise("absolute", args, node, scope, python_syntax=True)
        if fn is len and len(args) == 1:
            value = args[0]
            if isinstance(value, TupleVal):
                return Const(len(value.items))
            if isinstance(value, SSAValue) and isinstance(value.type, TensorType) and \
                    value.type.get_shape():
                if value.type.get_shape()[0] == DYNAMIC_INDEX or \
                        symbolic.is_sentinel_size(value.type.get_shape()[0]):
                    return self._emit(scan.DimOp(value, 0), node, scope)
                return Const(value.type.get_shape()[0])
        if all(isinstance(a, Const) for a in args):
            try:
                result = fn(*(a.value for a in args))
            except Exception as e:
                raise ScanValueError(str(e), loc) from None
            return Const(tuple(result) if isinstance(result, range) else result)
        if fn in (tuple, list) and len(args) == 1 and isinstance(args[0], TupleVal):
            return args[0]
        if fn in (range, min, max):
            for arg in args:
                self._needs_value(arg)
        raise UnsupportedSyntax(f"`{fn.__name__}()` on array values is not supported inside a "
                                "step function", loc,
                                hint="Use the NumPy function (np.sum, np.max, ...) instead.")


def bind_call(label: str, params: list, args: list[Value], kwargs: dict[str, Value], node,
              scope: Scope) -> dict[str, Value]:
    """Bind call arguments to a NumPy function's parameters (name or (name, default))."""
    loc = scope.context.source.loc(node)
    names = [p if isinstance(p, str) else p[0] for p in params]
    if len(args) > len(names):
        raise UnsupportedSyntax(f"{label}() takes at most {len(names)} arguments here", loc)
    bound: dict[str, Value] = dict(zip(names, args))
    for key, value in kwargs.items():
        if key not in names:
            raise UnsupportedSyntax(
                f"the argument `{key}=` of {label}() is not supported in a step function", loc,
                hint=f"Supported arguments: {', '.join(names)}.")
        if key in bound:
            raise ScanValueError(f"{label}() got two values for `{key}`", loc)
        bound[key] = value
    for p in params:
        if isinstance(p, str):
            if p not in bound:
                raise ScanValueError(f"{label}() is missing the argument `{p}`", loc)
        elif p[0] not in bound:
            bound[p[0]] = p[1] if isinstance(p[1], Const) or p[1] is None else Const(p[1])
    return {k: (Const(None) if v is None else v) for k, v in bound.items()}


def numpy_name(obj) -> str | None:
    """The name of a supported NumPy function, or None."""
    for name in SUPPORTED_NUMPY:
        if getattr(np, name, None) is obj:
            return name
    return None
