"""NumPy's elementwise semantics on single elements, as upstream ``arith`` and ``math`` ops.

Used by ``convert-scan-to-upstream`` for the bodies of ``linalg.generic`` ops and for ops on
Python scalars. A value here is one element: ``f16``/``f32``/``f64``, a signless integer, ``i1``
(a bool) or ``index``. ``put(op)`` appends ``op`` where the caller builds and returns its result.

Each scan op first converts its operands to the types :func:`operand_types` names (NumPy's
promotion, with Python scalars weak as in NEP 50), then :func:`compute` applies the ufunc.
"""

from __future__ import annotations

import math as pymath
from collections.abc import Callable

import numpy as np
from xdsl.dialects import arith, math
from xdsl.dialects.builtin import (
    AnyFloat,
    FloatAttr,
    IndexType,
    IntegerAttr,
    IntegerType,
    Signedness,
    TensorType,
    i1,
)
from xdsl.dialects.arith import FloatingPointLikeBinaryOperation
from xdsl.ir import Attribute, Operation, SSAValue
from xdsl.irdl import irdl_op_definition, traits_def
from xdsl.traits import Pure

from scanopt.dialects import scan
from scanopt.dialects.types import aval_of, element_type

Put = Callable[[Operation], SSAValue]

_MATH_UNARY: dict[str, type[Operation]] = {
    "exp": math.ExpOp, "log": math.LogOp, "tanh": math.TanhOp, "sin": math.SinOp,
    "cos": math.CosOp, "sqrt": math.SqrtOp, "sinh": math.SinhOp, "cosh": math.CoshOp,
    "tan": math.TanOp, "arcsin": math.AsinOp, "arccos": math.AcosOp, "arctan": math.AtanOp,
    "arcsinh": math.AsinhOp, "arccosh": math.AcoshOp, "arctanh": math.AtanhOp,
    "exp2": math.Exp2Op, "expm1": math.ExpM1Op, "log2": math.Log2Op, "log10": math.Log10Op,
    "log1p": math.Log1pOp, "floor": math.FloorOp, "ceil": math.CeilOp, "trunc": math.TruncOp,
    "rint": math.RoundEvenOp,
}
_ROUNDING = ("floor", "ceil", "trunc", "rint")  # the identity on integers
_COMPARES = {"equal": ("oeq", "eq", "eq"), "not_equal": ("une", "ne", "ne"),
             "less": ("olt", "slt", "ult"), "less_equal": ("ole", "sle", "ule"),
             "greater": ("ogt", "sgt", "ugt"), "greater_equal": ("oge", "sge", "uge")}
_LOGICAL = {"logical_and": arith.AndIOp, "logical_or": arith.OrIOp,
            "logical_xor": arith.XOrIOp}
# ufunc → (float op, integer op, bool op); None where NumPy has no such loop.
_ARITHMETIC: dict[str, tuple[type[Operation] | None, ...]] = {
    "add": (arith.AddfOp, arith.AddiOp, arith.OrIOp),
    "subtract": (arith.SubfOp, arith.SubiOp, None),
    "multiply": (arith.MulfOp, arith.MuliOp, arith.AndIOp),
    "true_divide": (arith.DivfOp, None, None),
    "power": (math.PowFOp, math.IPowIOp, None),
    "maximum": (arith.MaximumfOp, arith.MaxSIOp, arith.OrIOp),
    "minimum": (arith.MinimumfOp, arith.MinSIOp, arith.AndIOp),
    "fmax": (arith.MaxnumfOp, arith.MaxSIOp, arith.OrIOp),
    "fmin": (arith.MinnumfOp, arith.MinSIOp, arith.AndIOp),
    "arctan2": (math.Atan2Op, None, None),
}


@irdl_op_definition
class RemFOp(FloatingPointLikeBinaryOperation):
    """``arith.remf`` (C's fmod), which xDSL 0.74 lacks."""

    name = "arith.remf"
    traits = traits_def(Pure())


class NoLowering(Exception):
    """This op (or these types) has no upstream lowering; the message says what."""


def is_float(t: Attribute) -> bool:
    return isinstance(t, AnyFloat)


def is_bool(t: Attribute) -> bool:
    return t == i1


def check_element(t: Attribute) -> None:
    """Raise NoLowering for element types upstream arith cannot compute on as NumPy does."""
    if is_float(t) or isinstance(t, IndexType):
        return
    if isinstance(t, IntegerType) and t.signedness.data == Signedness.SIGNLESS:
        return
    raise NoLowering(f"the element type {t} (unsigned and complex dtypes have no lowering)")


def element_of(t: Attribute) -> Attribute:
    return t.get_element_type() if isinstance(t, TensorType) else t


def promoted(types: list[Attribute]) -> Attribute:
    """The element type NumPy computes in for operands of these IR types (weak scalars: NEP 50)."""
    operands = []
    for t in types:
        aval = aval_of(t)
        operands.append({"f": 0.0, "i": 0, "b": False}[aval.dtype.kind] if aval.weak
                        else aval.dtype)
    return element_type(np.result_type(*operands))


def operand_types(op: Operation) -> list[Attribute]:
    """The element type each operand of the elementwise ``op`` is converted to first."""
    result = element_of(op.results[0].type)
    n = len(op.operands)
    if isinstance(op, scan.BinaryOp) and op.NUMPY_NAME in _COMPARES:
        return [promoted([v.type for v in op.operands])] * n
    if isinstance(op, scan.BinaryOp | scan.UnaryOp) and op.NUMPY_NAME in (*_LOGICAL,
                                                                        "logical_not"):
        return [i1] * n
    if isinstance(op, scan.WhereOp):
        return [i1, result, result]
    return [result] * n


def constant(put: Put, value: float | int | bool, t: Attribute) -> SSAValue:
    if is_float(t):
        return put(arith.ConstantOp(FloatAttr(float(value), t)))
    if isinstance(t, IndexType):
        return put(arith.ConstantOp(IntegerAttr(int(value), t)))
    return put(arith.ConstantOp(IntegerAttr(int(bool(value)) if is_bool(t) else int(value), t)))


def convert(put: Put, value: SSAValue, to: Attribute) -> SSAValue:
    """``value`` as NumPy's ``astype(to)`` makes it (float → int truncates, x → bool is x != 0)."""
    source = value.type
    if source == to:
        return value
    if is_bool(to):
        zero = constant(put, 0, source)
        if is_float(source):
            return put(arith.CmpfOp(value, zero, "une"))
        return put(arith.CmpiOp(value, zero, "ne"))
    if isinstance(source, IndexType) or isinstance(to, IndexType):
        if is_float(source) or is_float(to):
            raise NoLowering(f"a conversion between {source} and {to}")
        return put(arith.IndexCastOp(value, to))
    if is_float(source) and is_float(to):
        wider = to.bitwidth > source.bitwidth
        return put(arith.ExtFOp(value, to) if wider else arith.TruncFOp(value, to))
    if is_float(to):
        return put(arith.UIToFPOp(value, to) if is_bool(source) else arith.SIToFPOp(value, to))
    if is_float(source):
        return put(arith.FPToSIOp(value, to))
    if is_bool(source):
        return put(arith.ExtUIOp(value, to))
    if to.width.data > source.width.data:
        return put(arith.ExtSIOp(value, to))
    return put(arith.TruncIOp(value, to))


def compute(put: Put, op: Operation, values: list[SSAValue]) -> SSAValue:
    """The element of ``op``'s result, from operand elements already of ``operand_types(op)``."""
    result = element_of(op.results[0].type)
    check_element(result)
    if isinstance(op, scan.CastOp):
        return values[0]
    if isinstance(op, scan.WhereOp):
        return put(arith.SelectOp(*values))
    if isinstance(op, scan.ClipOp):  # np.clip is minimum(maximum(x, lo), hi)
        x, lo, hi = values
        return binary(put, "minimum", binary(put, "maximum", x, lo), hi)
    if isinstance(op, scan.UnaryOp):
        return unary(put, op.NUMPY_NAME, values[0])
    if isinstance(op, scan.BinaryOp):
        value = binary(put, op.NUMPY_NAME, *values)
        return convert(put, value, result)
    raise NoLowering(f"{op.name} is not elementwise")


def unary(put: Put, name: str, x: SSAValue) -> SSAValue:
    t = x.type
    if name == "logical_not":
        return put(arith.XOrIOp(x, constant(put, True, i1)))
    if name in _ROUNDING and not is_float(t):
        return x
    if name in _MATH_UNARY:
        if not is_float(t):
            raise NoLowering(f"np.{name} on {t}")
        return put(_MATH_UNARY[name](x))
    if name == "absolute":
        if is_bool(t):
            return x
        return put(math.AbsFOp(x) if is_float(t) else math.AbsIOp(x))
    if name == "negative":
        if is_float(t):
            return put(arith.NegfOp(x))
        return put(arith.SubiOp(constant(put, 0, t), x))
    if name == "square":
        return binary(put, "multiply", x, x)
    if name == "reciprocal":
        one = constant(put, 1, t)
        return put(arith.DivfOp(one, x) if is_float(t) else arith.DivSIOp(one, x))
    if name == "sign":  # 1, -1, or x itself (0, -0.0, NaN)
        zero, one, minus_one = (constant(put, v, t) for v in (0, 1, -1))
        negative = put(arith.SelectOp(_compare(put, "less", x, zero), minus_one, x))
        return put(arith.SelectOp(_compare(put, "greater", x, zero), one, negative))
    raise NoLowering(f"np.{name}")


def binary(put: Put, name: str, a: SSAValue, b: SSAValue) -> SSAValue:
    t = a.type
    if name in _COMPARES:
        return _compare(put, name, a, b)
    if name in _LOGICAL:
        return put(_LOGICAL[name](a, b))
    if name == "power" and not is_float(t) and isinstance(b.owner, arith.ConstantOp) and \
            0 <= b.owner.value.value.data <= 64:
        return _integer_power(put, a, b.owner.value.value.data)
    if name in _ARITHMETIC:
        float_op, int_op, bool_op = _ARITHMETIC[name]
        cls = float_op if is_float(t) else bool_op if is_bool(t) else int_op
        if cls is None:
            raise NoLowering(f"np.{name} on {t}")
        return put(cls(a, b))
    if name == "floor_divide":
        if is_float(t):
            return put(math.FloorOp(put(arith.DivfOp(a, b))))
        return put(arith.FloorDivSIOp(a, b))
    if name == "remainder":  # the sign of the divisor, as NumPy (and Python)
        rem = put(RemFOp(a, b) if is_float(t) else arith.RemSIOp(a, b))
        zero = constant(put, 0, t)
        wrong_sign = put(arith.XOrIOp(_compare(put, "less", rem, zero),
                                      _compare(put, "less", b, zero)))
        fix = put(arith.AndIOp(_compare(put, "not_equal", rem, zero), wrong_sign))
        return put(arith.SelectOp(fix, binary(put, "add", rem, b), rem))
    if name == "hypot" and is_float(t):
        return put(math.SqrtOp(put(arith.AddfOp(put(arith.MulfOp(a, a)),
                                                put(arith.MulfOp(b, b))))))
    if name == "logaddexp" and is_float(t):
        # max + log1p(exp(-|a - b|)); a == b (also both infinite) gives a + log(2)
        high = put(arith.MaximumfOp(a, b))
        gap = put(arith.NegfOp(put(math.AbsFOp(put(arith.SubfOp(a, b))))))
        spread = put(arith.AddfOp(high, put(math.Log1pOp(put(math.ExpOp(gap))))))
        doubled = put(arith.AddfOp(a, constant(put, pymath.log(2.0), t)))
        return put(arith.SelectOp(_compare(put, "equal", a, b), doubled, spread))
    raise NoLowering(f"np.{name} on {t}")


def _integer_power(put: Put, x: SSAValue, exponent: int) -> SSAValue:
    """``x ** exponent`` by squaring (math.ipowi has no lowering in IREE 3.13's CPU backend)."""
    result = None
    while exponent:
        if exponent & 1:
            result = x if result is None else put(arith.MuliOp(result, x))
        exponent >>= 1
        if exponent:
            x = put(arith.MuliOp(x, x))
    return result if result is not None else constant(put, 1, x.type)


def _compare(put: Put, name: str, a: SSAValue, b: SSAValue) -> SSAValue:
    floating, signed, unsigned = _COMPARES[name]
    t = a.type
    if is_float(t):
        return put(arith.CmpfOp(a, b, floating))
    return put(arith.CmpiOp(a, b, unsigned if is_bool(t) else signed))
