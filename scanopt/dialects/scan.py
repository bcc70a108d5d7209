"""The ``scan`` dialect: a loop over sequences with carried state, and NumPy-semantics array ops.

Types are builtin: an array or NumPy scalar of dtype ``float32`` and shape ``(16, 128)`` is
``tensor<16x128xf32>`` (NumPy scalars are rank-0 tensors), a sequence's unknown length is ``?``.
Python scalars keep NumPy's "weak" promotion (``x_f32 * 0.5`` stays float32), so they get bare
builtin types: ``f64`` is a Python float, ``i64`` a Python int, ``i1`` a Python bool. A
``numpy.random.Generator`` is ``!scan.rng``.

Every array op follows NumPy semantics (broadcasting, batched ``matmul``) and carries the ``Pure``
trait, so xDSL's cse/dce/canonicalize apply. ``scan.random`` draws from a generator and is not
pure: draws keep their order. Each op built by the frontend has a ``loc`` attribute pointing at the
user's line.

``scan.loop`` is isolated from above: its body sees only its block arguments, in the order
sequence slices, carries, non-sequences.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from xdsl.dialects.builtin import (
    ArrayAttr,
    DenseArrayBase,
    IndexType,
    IntegerAttr,
    StringAttr,
    TensorType,
    UnitAttr,
    i64,
)
from xdsl.ir import Attribute, Dialect, ParametrizedAttribute, Region, SSAValue, TypeAttribute
from xdsl.irdl import (
    AttrSizedOperandSegments,
    IRDLOperation,
    ParsePropInAttrDict,
    irdl_attr_definition,
    irdl_op_definition,
    lazy_traits_def,
    operand_def,
    opt_operand_def,
    opt_prop_def,
    prop_def,
    region_def,
    result_def,
    traits_def,
    var_operand_def,
    var_result_def,
)
from xdsl.traits import (
    HasParent,
    IsolatedFromAbove,
    IsTerminator,
    Pure,
    RecursiveMemoryEffect,
    SingleBlockImplicitTerminator,
)
from xdsl.utils.exceptions import VerifyException

_GENERIC_FORMAT = "operands attr-dict `:` functional-type(operands, results)"

# On a function argument that is a sequence window read at several taps: how many rows it has
# beyond the number of steps (max(taps) - min(taps)).
EXTRA_ROWS = "scan.extra_rows"
# On a function built ahead of time: its symbolic dimensions, name → the sentinel size that
# stands for it in the types (scanopt/symbolic.py).
SYMBOLS = "scan.symbols"


@irdl_attr_definition
class RngType(ParametrizedAttribute, TypeAttribute):
    """A ``numpy.random.Generator``: drawing from it advances its state."""

    name = "scan.rng"


# ---------------------------------------------------------------------------------------------
# The loop


@irdl_op_definition
class YieldOp(IRDLOperation):
    """Ends a step: the new value of every carry, then every per-step output that is not fed back.

    ``until`` (Theano's ``scan_module.until``): a scalar condition; the loop stops after the
    first step where it is true, that step included.
    """

    name = "scan.yield"
    values = var_operand_def()
    until = opt_operand_def()
    irdl_options = (AttrSizedOperandSegments(as_property=True),)
    traits = lazy_traits_def(lambda: (IsTerminator(), HasParent(LoopOp)))
    assembly_format = ("($values^ `:` type($values))? (`until` $until^ `:` type($until))? "
                       "attr-dict")

    def __init__(self, *values: SSAValue, until: SSAValue | None = None):
        super().__init__(operands=[values, [until] if until is not None else []])

    def verify_(self) -> None:
        if self.until is not None and _shape_of(self.until.type) != ():
            raise VerifyException(
                f"Expected the until condition to be a scalar, but got {self.until.type}.")


@irdl_op_definition
class LoopOp(IRDLOperation):
    """Runs its body ``n_steps`` times and returns the stacked history of every yielded value.

    Results: one ``tensor<?x...>`` per yielded value (carries first, then per-step outputs).
    ``reverse`` walks the sequences from their last element to their first (Theano's
    ``go_backwards``); the history is stored in iteration order. ``seq_offsets`` (Theano's
    sequence taps): step ``t`` reads row ``offset + t`` of a sequence (``offset + n_steps - 1 -
    t`` in reverse); one array read at several taps is several sequences with other offsets.
    When ``scan.yield`` has an ``until`` condition the loop may stop early, and every history
    holds the steps that ran.
    """

    name = "scan.loop"
    sequences = var_operand_def(TensorType)
    inits = var_operand_def()
    non_seqs = var_operand_def()
    n_steps = opt_operand_def(IndexType)
    outs = var_result_def(TensorType)
    body = region_def("single_block")
    reverse = opt_prop_def(UnitAttr)
    # Results that hold only the value after the last step (scan-save-mem), not a history.
    keep_last = opt_prop_def(DenseArrayBase.constr(i64))
    # Per sequence, the row read at step 0 (absent: all 0).
    seq_offsets = opt_prop_def(DenseArrayBase.constr(i64))
    irdl_options = (AttrSizedOperandSegments(as_property=True), ParsePropInAttrDict())
    traits = traits_def(
        SingleBlockImplicitTerminator(YieldOp), IsolatedFromAbove(), RecursiveMemoryEffect()
    )
    assembly_format = (
        "(`seqs` `(` $sequences^ `:` type($sequences) `)`)? "
        "(`init` `(` $inits^ `:` type($inits) `)`)? "
        "(`params` `(` $non_seqs^ `:` type($non_seqs) `)`)? "
        "(`steps` $n_steps^)? `->` type($outs) $body attr-dict"
    )

    def __init__(
        self,
        sequences: Sequence[SSAValue],
        inits: Sequence[SSAValue],
        non_seqs: Sequence[SSAValue],
        body: Region,
        out_types: Sequence[Attribute],
        n_steps: SSAValue | None = None,
        reverse: bool = False,
    ):
        super().__init__(
            operands=[sequences, inits, non_seqs, [n_steps] if n_steps is not None else []],
            result_types=[out_types],
            regions=[body],
            properties={"reverse": UnitAttr()} if reverse else {},
        )

    @property
    def block(self):
        return self.body.block

    @property
    def seq_args(self):
        return self.block.args[: len(self.sequences)]

    @property
    def carry_args(self):
        start = len(self.sequences)
        return self.block.args[start : start + len(self.inits)]

    @property
    def param_args(self):
        return self.block.args[len(self.sequences) + len(self.inits) :]

    def last_indices(self) -> tuple[int, ...]:
        return tuple(self.keep_last.get_values()) if self.keep_last is not None else ()

    def offsets(self) -> tuple[int, ...]:
        """The row of each sequence read at step 0."""
        if self.seq_offsets is None:
            return (0,) * len(self.sequences)
        return tuple(self.seq_offsets.get_values())

    @property
    def until(self) -> SSAValue | None:
        """The stop condition (a body value), or None for a loop that runs every step."""
        terminator = self.block.last_op
        return terminator.until if isinstance(terminator, YieldOp) else None

    def verify_(self) -> None:
        if self.seq_offsets is not None and len(self.offsets()) != len(self.sequences):
            raise VerifyException(
                f"Expected {len(self.sequences)} sequence offsets, but got "
                f"{len(self.offsets())}.")
        if any(o < 0 for o in self.offsets()):
            raise VerifyException("Sequence offsets must not be negative.")
        n_args = len(self.sequences) + len(self.inits) + len(self.non_seqs)
        if len(self.block.args) != n_args:
            raise VerifyException(
                f"Expected {n_args} block arguments (sequence slices, carries, non-sequences), "
                f"but got {len(self.block.args)}."
            )
        for k, (seq, arg) in enumerate(zip(self.sequences, self.seq_args)):
            seq_type = seq.type
            assert isinstance(seq_type, TensorType)
            if seq_type.get_shape()[1:] != tuple(_shape_of(arg.type)) or (
                seq_type.get_element_type() != _element_type_of(arg.type)
            ):
                raise VerifyException(
                    f"Expected slice #{k} to be one element of {seq_type}, but got {arg.type}."
                )
        for k, (init, arg) in enumerate(zip(self.inits, self.carry_args)):
            if init.type != arg.type:
                raise VerifyException(
                    f"Expected carry #{k} to be {init.type}, but got {arg.type}. "
                    "The block argument of a carry must match its initial value."
                )
        terminator = self.block.last_op
        if not isinstance(terminator, YieldOp):
            raise VerifyException("Expected the body of scan.loop to end with scan.yield.")
        if len(terminator.values) != len(self.outs):
            raise VerifyException(
                f"Expected scan.yield to yield {len(self.outs)} values, "
                f"but got {len(terminator.values)}."
            )
        for k, value in enumerate(terminator.values):
            if k < len(self.inits) and value.type != self.inits[k].type:
                raise VerifyException(
                    f"Expected yield #{k} to be {self.inits[k].type}, but got {value.type}. "
                    "scan.yield must match the carry types of scan.loop."
                )
            out_type = self.outs[k].type
            assert isinstance(out_type, TensorType)
            if k in self.last_indices():
                if out_type != _as_tensor(value.type):
                    raise VerifyException(
                        f"Expected result #{k} (last value only) to be "
                        f"{_as_tensor(value.type)}, but it is {out_type}.")
            elif out_type.get_shape()[1:] != tuple(_shape_of(value.type)):
                raise VerifyException(
                    f"Expected result #{k} to stack {value.type}, but it is {out_type}."
                )


def _as_tensor(t: Attribute) -> TensorType:
    return t if isinstance(t, TensorType) else TensorType(t, [])


def _shape_of(t: Attribute) -> tuple[int, ...]:
    return tuple(t.get_shape()) if isinstance(t, TensorType) else ()


def _element_type_of(t: Attribute) -> Attribute:
    return t.get_element_type() if isinstance(t, TensorType) else t


# ---------------------------------------------------------------------------------------------
# Elementwise ops (NumPy ufunc semantics: broadcasting, NumPy's type promotion)


class ElementwiseOp(IRDLOperation):
    """Base of the ops that map onto one NumPy ufunc; ``NUMPY_NAME`` is that ufunc."""

    NUMPY_NAME: ClassVar[str] = ""
    traits = traits_def(Pure())
    assembly_format = _GENERIC_FORMAT


class UnaryOp(ElementwiseOp):
    operand = operand_def()
    result = result_def()

    def __init__(self, operand: SSAValue, result_type: Attribute):
        super().__init__(operands=[operand], result_types=[result_type])


class BinaryOp(ElementwiseOp):
    lhs = operand_def()
    rhs = operand_def()
    result = result_def()

    def __init__(self, lhs: SSAValue, rhs: SSAValue, result_type: Attribute):
        super().__init__(operands=[lhs, rhs], result_types=[result_type])


def _unary(op_name: str, numpy_name: str) -> type[UnaryOp]:
    cls = type(f"{numpy_name.title().replace('_', '')}Op", (UnaryOp,),
               {"name": op_name, "NUMPY_NAME": numpy_name, "__module__": __name__,
                "__annotations__": {"NUMPY_NAME": ClassVar[str]}})
    return irdl_op_definition(cls)


def _binary(op_name: str, numpy_name: str) -> type[BinaryOp]:
    cls = type(f"{numpy_name.title().replace('_', '')}Op", (BinaryOp,),
               {"name": op_name, "NUMPY_NAME": numpy_name, "__module__": __name__,
                "__annotations__": {"NUMPY_NAME": ClassVar[str]}})
    return irdl_op_definition(cls)


NegOp = _unary("scan.neg", "negative")
ExpOp = _unary("scan.exp", "exp")
LogOp = _unary("scan.log", "log")
TanhOp = _unary("scan.tanh", "tanh")
SinOp = _unary("scan.sin", "sin")
CosOp = _unary("scan.cos", "cos")
SqrtOp = _unary("scan.sqrt", "sqrt")
AbsOp = _unary("scan.abs", "absolute")
NotOp = _unary("scan.not", "logical_not")
SinhOp = _unary("scan.sinh", "sinh")
CoshOp = _unary("scan.cosh", "cosh")
TanOp = _unary("scan.tan", "tan")
ArcsinOp = _unary("scan.arcsin", "arcsin")
ArccosOp = _unary("scan.arccos", "arccos")
ArctanOp = _unary("scan.arctan", "arctan")
ArcsinhOp = _unary("scan.arcsinh", "arcsinh")
ArccoshOp = _unary("scan.arccosh", "arccosh")
ArctanhOp = _unary("scan.arctanh", "arctanh")
Exp2Op = _unary("scan.exp2", "exp2")
Expm1Op = _unary("scan.expm1", "expm1")
Log2Op = _unary("scan.log2", "log2")
Log10Op = _unary("scan.log10", "log10")
Log1pOp = _unary("scan.log1p", "log1p")
SquareOp = _unary("scan.square", "square")
ReciprocalOp = _unary("scan.reciprocal", "reciprocal")
SignOp = _unary("scan.sign", "sign")
FloorOp = _unary("scan.floor", "floor")
CeilOp = _unary("scan.ceil", "ceil")
TruncOp = _unary("scan.trunc", "trunc")
RintOp = _unary("scan.rint", "rint")

AddOp = _binary("scan.add", "add")
SubOp = _binary("scan.sub", "subtract")
MulOp = _binary("scan.mul", "multiply")
DivOp = _binary("scan.div", "true_divide")
FloorDivOp = _binary("scan.floordiv", "floor_divide")
ModOp = _binary("scan.mod", "remainder")
PowOp = _binary("scan.pow", "power")
MaximumOp = _binary("scan.maximum", "maximum")
MinimumOp = _binary("scan.minimum", "minimum")
EqOp = _binary("scan.eq", "equal")
NeOp = _binary("scan.ne", "not_equal")
LtOp = _binary("scan.lt", "less")
LeOp = _binary("scan.le", "less_equal")
GtOp = _binary("scan.gt", "greater")
GeOp = _binary("scan.ge", "greater_equal")
AndOp = _binary("scan.and", "logical_and")
OrOp = _binary("scan.or", "logical_or")
XorOp = _binary("scan.xor", "logical_xor")
Arctan2Op = _binary("scan.arctan2", "arctan2")
HypotOp = _binary("scan.hypot", "hypot")
LogaddexpOp = _binary("scan.logaddexp", "logaddexp")
FmaxOp = _binary("scan.fmax", "fmax")
FminOp = _binary("scan.fmin", "fmin")

UNARY_OPS: dict[str, type[UnaryOp]] = {
    op.NUMPY_NAME: op
    for op in (NegOp, ExpOp, LogOp, TanhOp, SinOp, CosOp, SqrtOp, AbsOp, NotOp, SinhOp, CoshOp,
               TanOp, ArcsinOp, ArccosOp, ArctanOp, ArcsinhOp, ArccoshOp, ArctanhOp, Exp2Op,
               Expm1Op, Log2Op, Log10Op, Log1pOp, SquareOp, ReciprocalOp, SignOp, FloorOp,
               CeilOp, TruncOp, RintOp)
}
BINARY_OPS: dict[str, type[BinaryOp]] = {
    op.NUMPY_NAME: op
    for op in (AddOp, SubOp, MulOp, DivOp, FloorDivOp, ModOp, PowOp, MaximumOp, MinimumOp,
               EqOp, NeOp, LtOp, LeOp, GtOp, GeOp, AndOp, OrOp, XorOp, Arctan2Op, HypotOp,
               LogaddexpOp, FmaxOp, FminOp)
}


@irdl_op_definition
class WhereOp(IRDLOperation):
    """``np.where(cond, a, b)``."""

    name = "scan.where"
    cond = operand_def()
    lhs = operand_def()
    rhs = operand_def()
    result = result_def()
    traits = traits_def(Pure())
    assembly_format = _GENERIC_FORMAT

    def __init__(self, cond: SSAValue, lhs: SSAValue, rhs: SSAValue, result_type: Attribute):
        super().__init__(operands=[cond, lhs, rhs], result_types=[result_type])


@irdl_op_definition
class ClipOp(IRDLOperation):
    """``np.clip(x, lo, hi)``."""

    name = "scan.clip"
    operand = operand_def()
    lo = operand_def()
    hi = operand_def()
    result = result_def()
    traits = traits_def(Pure())
    assembly_format = _GENERIC_FORMAT

    def __init__(self, operand: SSAValue, lo: SSAValue, hi: SSAValue, result_type: Attribute):
        super().__init__(operands=[operand, lo, hi], result_types=[result_type])


@irdl_op_definition
class CastOp(IRDLOperation):
    """``x.astype(dtype)``: the result type names the dtype."""

    name = "scan.cast"
    operand = operand_def()
    result = result_def()
    traits = traits_def(Pure())
    assembly_format = _GENERIC_FORMAT

    def __init__(self, operand: SSAValue, result_type: Attribute):
        super().__init__(operands=[operand], result_types=[result_type])


# ---------------------------------------------------------------------------------------------
# Linear algebra, reductions, shape ops


@irdl_op_definition
class MatmulOp(IRDLOperation):
    """``lhs @ rhs`` with ``np.matmul`` semantics (batched over leading dims, 1-D promotion)."""

    name = "scan.matmul"
    lhs = operand_def(TensorType)
    rhs = operand_def(TensorType)
    result = result_def()
    traits = traits_def(Pure())
    assembly_format = _GENERIC_FORMAT

    def __init__(self, lhs: SSAValue, rhs: SSAValue, result_type: Attribute):
        super().__init__(operands=[lhs, rhs], result_types=[result_type])


@irdl_op_definition
class ReduceOp(IRDLOperation):
    """``np.sum / mean / max / min`` over ``axis`` (all axes when absent)."""

    name = "scan.reduce"
    operand = operand_def()
    result = result_def()
    kind = prop_def(StringAttr)
    axis = opt_prop_def(DenseArrayBase.constr(i64))
    keepdims = opt_prop_def(UnitAttr)
    irdl_options = (ParsePropInAttrDict(),)
    traits = traits_def(Pure())
    assembly_format = _GENERIC_FORMAT

    KINDS: ClassVar[tuple[str, ...]] = ("sum", "mean", "max", "min")

    def __init__(self, kind: str, operand: SSAValue, axis: Sequence[int] | None,
                 keepdims: bool, result_type: Attribute):
        props: dict[str, Attribute] = {"kind": StringAttr(kind)}
        if axis is not None:
            props["axis"] = DenseArrayBase.from_list(i64, list(axis))
        if keepdims:
            props["keepdims"] = UnitAttr()
        super().__init__(operands=[operand], result_types=[result_type], properties=props)

    def verify_(self) -> None:
        if self.kind.data not in self.KINDS:
            raise VerifyException(f"Expected kind in {self.KINDS}, but got {self.kind.data!r}.")


@irdl_op_definition
class TransposeOp(IRDLOperation):
    """``np.transpose(x, perm)``; ``x.T`` reverses the axes."""

    name = "scan.transpose"
    operand = operand_def(TensorType)
    result = result_def(TensorType)
    perm = prop_def(DenseArrayBase.constr(i64))
    irdl_options = (ParsePropInAttrDict(),)
    traits = traits_def(Pure())
    assembly_format = _GENERIC_FORMAT

    def __init__(self, operand: SSAValue, perm: Sequence[int], result_type: Attribute):
        super().__init__(operands=[operand], result_types=[result_type],
                         properties={"perm": DenseArrayBase.from_list(i64, list(perm))})


@irdl_op_definition
class ReshapeOp(IRDLOperation):
    """``x.reshape(shape)``: the result type gives the shape."""

    name = "scan.reshape"
    operand = operand_def(TensorType)
    result = result_def(TensorType)
    traits = traits_def(Pure())
    assembly_format = _GENERIC_FORMAT

    def __init__(self, operand: SSAValue, result_type: Attribute):
        super().__init__(operands=[operand], result_types=[result_type])


@irdl_op_definition
class IndexOp(IRDLOperation):
    """``x[spec]``: basic indexing, plus integer indices that are values (``W[i_t]``).

    ``spec`` has one entry per index: ``"3"`` an integer, ``"1:5:2"`` a slice (parts may be empty),
    ``"None"`` a new axis, ``"..."`` an ellipsis, ``"?"`` the next operand of ``indices``.
    """

    name = "scan.index"
    operand = operand_def(TensorType)
    indices = var_operand_def()
    result = result_def()
    spec = prop_def(ArrayAttr[StringAttr])
    irdl_options = (ParsePropInAttrDict(),)
    traits = traits_def(Pure())
    assembly_format = _GENERIC_FORMAT

    def __init__(self, operand: SSAValue, indices: Sequence[SSAValue], spec: Sequence[str],
                 result_type: Attribute):
        super().__init__(operands=[operand, indices], result_types=[result_type],
                         properties={"spec": ArrayAttr([StringAttr(s) for s in spec])})

    def verify_(self) -> None:
        n_dynamic = sum(1 for s in self.spec.data if s.data == "?")
        if n_dynamic != len(self.indices):
            raise VerifyException(
                f"Expected {n_dynamic} index operands for spec, but got {len(self.indices)}."
            )


class JoinOp(IRDLOperation):
    """Base of the ops that join arrays along an axis."""

    values = var_operand_def()
    result = result_def(TensorType)
    axis = prop_def(IntegerAttr[i64])
    irdl_options = (ParsePropInAttrDict(),)
    traits = traits_def(Pure())
    assembly_format = _GENERIC_FORMAT

    def __init__(self, values: Sequence[SSAValue], axis: int, result_type: Attribute):
        super().__init__(operands=[values], result_types=[result_type],
                         properties={"axis": IntegerAttr(axis, i64)})


@irdl_op_definition
class ConcatOp(JoinOp):
    """``np.concatenate(values, axis)``."""

    name = "scan.concat"


@irdl_op_definition
class StackOp(JoinOp):
    """``np.stack(values, axis)``."""

    name = "scan.stack"


@irdl_op_definition
class FullOp(IRDLOperation):
    """An array of the result type filled with ``fill`` (``zeros_like``, ``ones_like``, ``full_like``)."""

    name = "scan.full"
    fill = operand_def()
    result = result_def(TensorType)
    traits = traits_def(Pure())
    assembly_format = _GENERIC_FORMAT

    def __init__(self, fill: SSAValue, result_type: Attribute):
        super().__init__(operands=[fill], result_types=[result_type])


@irdl_op_definition
class RandomOp(IRDLOperation):
    """``rng.<method>(*params, size=...)`` on a ``numpy.random.Generator``.

    Not pure: each draw advances the generator, so draws keep their order. ``params`` are the
    method's distribution parameters in its positional order; ``size`` is a static shape when the
    user gave one. The result type gives the dtype (``random``/``standard_normal`` take a dtype).
    """

    name = "scan.random"
    rng = operand_def(RngType)
    params = var_operand_def()
    # Draws for this many steps at once (scan-fast-random): the result gains a leading dimension.
    steps = opt_operand_def(IndexType)
    result = result_def()
    method = prop_def(StringAttr)
    size = opt_prop_def(DenseArrayBase.constr(i64))
    irdl_options = (AttrSizedOperandSegments(as_property=True), ParsePropInAttrDict())
    assembly_format = ("$rng `(` $params `)` (`steps` $steps^)? attr-dict `:` type($rng) `,` "
                       "`(` type($params) `)` `->` type($result)")

    METHODS: ClassVar[dict[str, tuple[str, ...]]] = {
        "random": (),
        "standard_normal": (),
        "uniform": ("low", "high"),
        "normal": ("loc", "scale"),
        "binomial": ("n", "p"),
        # Standard logistic noise, made by scan-fast-random (``binomial(1, sigmoid(z))`` is
        # ``z > logistic noise``); users cannot call it from a step function.
        "logistic": (),
    }

    def __init__(self, method: str, rng: SSAValue, params: Sequence[SSAValue],
                 size: Sequence[int] | None, result_type: Attribute,
                 steps: SSAValue | None = None):
        props: dict[str, Attribute] = {"method": StringAttr(method)}
        if size is not None:
            props["size"] = DenseArrayBase.from_list(i64, list(size))
        super().__init__(operands=[rng, params, [steps] if steps is not None else []],
                         result_types=[result_type], properties=props)

    def verify_(self) -> None:
        method = self.method.data
        if method not in self.METHODS:
            raise VerifyException(f"Expected method in {sorted(self.METHODS)}, got {method!r}.")
        if len(self.params) != len(self.METHODS[method]):
            raise VerifyException(
                f"Expected {len(self.METHODS[method])} parameters for {method}, "
                f"but got {len(self.params)}."
            )


@irdl_op_definition
class DimOp(IRDLOperation):
    """``x.shape[axis]`` of a dimension known only when the loop runs (a history of a loop that
    may stop early, a sequence's length): a Python int."""

    name = "scan.dim"
    operand = operand_def(TensorType)
    axis = prop_def(IntegerAttr[i64])
    result = result_def()
    irdl_options = (ParsePropInAttrDict(),)
    traits = traits_def(Pure())
    assembly_format = _GENERIC_FORMAT

    def __init__(self, operand: SSAValue, axis: int):
        # A bare i64 is a Python int (see dialects/types.py).
        super().__init__(operands=[operand], result_types=[i64],
                         properties={"axis": IntegerAttr(axis, i64)})


@irdl_op_definition
class CountOp(IRDLOperation):
    """The number of steps of a nested loop (a ``scanopt.scan`` inside a step): ``int(n)`` when
    ``n`` is given, else the length of the shortest of ``sequences``."""

    name = "scan.count"
    n = opt_operand_def()
    sequences = var_operand_def(TensorType)
    result = result_def(IndexType)
    irdl_options = (AttrSizedOperandSegments(as_property=True),)
    traits = traits_def(Pure())
    assembly_format = ("(`n` $n^ `:` type($n))? (`of` $sequences^ `:` type($sequences))? "
                       "attr-dict")

    def __init__(self, n: SSAValue | None, sequences: Sequence[SSAValue]):
        super().__init__(operands=[[n] if n is not None else [], sequences],
                         result_types=[IndexType()])

    def verify_(self) -> None:
        if self.n is None and not self.sequences:
            raise VerifyException("Expected a step count or at least one sequence.")
        if self.n is not None and _shape_of(self.n.type) != ():
            raise VerifyException(f"Expected a scalar step count, but got {self.n.type}.")


@irdl_op_definition
class LastOp(IRDLOperation):
    """The value of a loop output after the last step (``keep="last"``).

    ``history`` is the output's stacked history; ``init``, for a fed-back output, is its initial
    value, which is the answer when the loop runs no step. ``scan-save-mem`` replaces the
    history by O(1) storage when this is its only use.
    """

    name = "scan.last"
    history = operand_def(TensorType)
    init = opt_operand_def()
    result = result_def()
    traits = traits_def(Pure())
    assembly_format = _GENERIC_FORMAT

    def __init__(self, history: SSAValue, init: SSAValue | None, result_type: Attribute):
        super().__init__(operands=[history, [init] if init is not None else []],
                         result_types=[result_type])


def extra_rows(value: SSAValue) -> int | None:
    """How many rows beyond the number of steps a value with a dynamic leading dimension has:
    0 for one row per step, ``max(taps) - min(taps)`` for a sequence window read at several taps
    (function arguments say so with ``scan.extra_rows``), None when that is not known before
    running (the history of a loop that may stop early, or values made from arrays of different
    lengths)."""
    from xdsl.dialects.builtin import DYNAMIC_INDEX
    from xdsl.ir import Block

    owner = value.owner
    if isinstance(owner, Block):
        function = owner.parent_op()
        attrs = getattr(function, "arg_attrs", None)
        if attrs is not None and value.index < len(attrs.data):
            rows = attrs.data[value.index].data.get(EXTRA_ROWS)
            if rows is not None:
                return rows.value.data
        return 0
    if isinstance(owner, LoopOp):
        return 0 if owner.until is None else None
    dynamic = [o for o in owner.operands if isinstance(o.type, TensorType)
               and DYNAMIC_INDEX in o.type.get_shape()]
    rows = {extra_rows(o) for o in dynamic}
    return rows.pop() if len(rows) == 1 else None


Scan = Dialect(
    "scan",
    [
        LoopOp, YieldOp, *UNARY_OPS.values(), *BINARY_OPS.values(), WhereOp, ClipOp, CastOp,
        MatmulOp, ReduceOp, TransposeOp, ReshapeOp, IndexOp, ConcatOp, StackOp, FullOp, RandomOp,
        LastOp, CountOp, DimOp,
    ],
    [RngType],
)
