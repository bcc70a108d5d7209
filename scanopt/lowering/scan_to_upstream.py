"""``convert-scan-to-upstream``: scan IR → upstream MLIR (``func``, ``scf``, ``tensor``, ``linalg``,
``arith``, ``math``), the text ``scanopt build/opt --emit mlir`` prints.

- ``scan.loop`` becomes ``scf.for`` over the steps with the carries and the stacked histories as
  ``iter_args`` (``scf.while`` when ``scan.yield`` has an ``until``: the loop then also carries
  the step count and a stop flag, and each history is cut to the steps that ran). A step reads
  row ``offset + t`` of each sequence (``offset + n - 1 - t`` with ``reverse``) with
  ``tensor.extract_slice``, and writes row ``t`` of each history with ``tensor.insert_slice``.
- ``scan.matmul`` becomes ``linalg.matmul`` (a stack of matrices times one matrix: collapsed to
  one GEMM and expanded back) or ``linalg.batch_matmul`` on zero-filled outs (``tensor.empty`` +
  ``linalg.fill``); other NumPy cases (1-D operands, broadcast batches) a ``linalg.generic``
  contraction.
- Elementwise ops become one ``linalg.generic`` each, its indexing maps making NumPy's
  broadcasting explicit and its body the ufunc on elements (``upstream_elements.py``); on Python
  scalars, the ``arith``/``math`` ops themselves.
- Reductions, transposes, reshapes, indexing, concatenation, stacking and ``full`` become
  ``linalg.generic``/``linalg.transpose``/``linalg.fill`` and ``tensor`` ops.
- Random draws become function arguments holding pre-drawn numbers (one row per step for a draw
  inside the loop), in place of the generator argument: uniforms on [0, 1) for ``random``,
  ``uniform`` and ``binomial(1, p)`` (``u < p``), standard normals for ``normal`` and
  ``standard_normal``, logistic noise for ``logistic``. The ``scan.draws`` attribute of each
  such argument says which.

What the lowering itself materialises (constants, ``tensor.empty``, zero fills, ``tensor.dim``
and index arithmetic) is placed before the loop when it does not depend on the step, so that
upstream's loop-invariant code motion finds in the loop only what the scan IR put there.
Constructs without a lowering raise :class:`scanopt.UnsupportedSyntax` at the user's line.

Before::

    %hs = scan.loop seqs(%X : tensor<?x2x3xf64>) init(%h0 : tensor<2x4xf64>) params(...) steps %n {
    ^bb0(%x_t: tensor<2x3xf64>, %h: tensor<2x4xf64>, %W_1: tensor<3x4xf64>):
      %0 = scan.matmul %x_t, %W_1 : (tensor<2x3xf64>, tensor<3x4xf64>) -> tensor<2x4xf64>
      %1 = scan.tanh %0 : (tensor<2x4xf64>) -> tensor<2x4xf64>
      scan.yield %1 : tensor<2x4xf64>
    }

After::

    %hs_1 = tensor.empty(%n) : tensor<?x2x4xf64>
    %2:2 = scf.for %t = %c0 to %n step %c1 iter_args(%h = %h0, %hs = %hs_1) -> (...) {
      %x_t = tensor.extract_slice %X[%t, 0, 0] [1, 2, 3] [1, 1, 1] : ... to tensor<2x3xf64>
      %3 = linalg.matmul ins(%x_t, %W : ...) outs(%zeros : tensor<2x4xf64>) -> tensor<2x4xf64>
      %4 = linalg.generic {...} ins(%3 : tensor<2x4xf64>) outs(%5 : tensor<2x4xf64>) {
      ^bb0(%in: f64, %out: f64):
        %6 = math.tanh %in : f64
        linalg.yield %6 : f64
      } -> tensor<2x4xf64>
      %hs_2 = tensor.insert_slice %4 into %hs[%t, 0, 0] [1, 2, 4] [1, 1, 1] : ...
      scf.yield %4, %hs_2 : tensor<2x4xf64>, tensor<?x2x4xf64>
    }

>>> import numpy as np
>>> from scanopt.transforms.testing import run_on_step
>>> def step(x_t, h, W):
...     return np.tanh(x_t @ W + h)
>>> ir = run_on_step(step, ["convert-scan-to-upstream"], sequences=np.zeros((5, 2, 3)),
...                  outputs_info=np.zeros((2, 4)), non_sequences=np.zeros((3, 4)))
>>> [name for name in ("scan.", "scf.for", "linalg.matmul", "math.tanh", "tensor.insert_slice")
...  if name in ir]
['scf.for', 'linalg.matmul', 'math.tanh', 'tensor.insert_slice']
"""

from __future__ import annotations

import math as pymath
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

from xdsl.context import Context
from xdsl.dialects import arith, func, scf, tensor
from xdsl.dialects.builtin import (
    DYNAMIC_INDEX,
    AffineMapAttr,
    ArrayAttr,
    DictionaryAttr,
    FileLineColLoc,
    FloatAttr,
    IndexType,
    IntegerAttr,
    ModuleOp,
    StringAttr,
    TensorType,
    f64,
    i1,
    i64,
)
from xdsl.dialects.linalg.abstract_ops import NamedOperation
from xdsl.dialects.linalg.attrs import IteratorTypeAttr
from xdsl.dialects.linalg.ops import (
    FillOp,
    GenericOp,
    MatmulOp,
    IndexOp as LinalgIndexOp,
    TransposeOp,
    YieldOp,
)
from xdsl.dialects.utils.dynamic_index_list import split_dynamic_index_list
from xdsl.ir import Attribute, Block, BlockArgument, Operation, Region, SSAValue
from xdsl.ir.affine import AffineConstantExpr, AffineDimExpr, AffineExpr, AffineMap
from xdsl.irdl import irdl_op_definition, prop_def
from xdsl.passes import ModulePass

from scanopt.dialects import scan
from scanopt.dialects.scan import SYMBOLS
from scanopt.errors import SourceLocation, UnsupportedSyntax
from scanopt.lowering import upstream_elements as el
from scanopt.lowering.upstream_elements import NoLowering

DRAWS = "scan.draws"  # on a function argument of pre-drawn numbers: which kind
# The numbers a draw is made from, per method: (kind, element type; None: the result's).
_NOISE = {"random": ("uniform", None), "uniform": ("uniform", None),
          "binomial": ("uniform", f64), "normal": ("standard_normal", None),
          "standard_normal": ("standard_normal", None), "logistic": ("logistic", None)}


@irdl_op_definition
class BatchMatmulOp(NamedOperation):
    """``linalg.batch_matmul``, which xDSL 0.74 lacks: ``C[b] += A[b] @ B[b]``."""

    name = "linalg.batch_matmul"
    PRINT_ATTRS_IN_FRONT: ClassVar[bool] = True
    indexing_maps = prop_def(ArrayAttr[AffineMapAttr], default_value=ArrayAttr([
        AffineMapAttr(AffineMap.from_callable(lambda b, i, _, k: (b, i, k))),
        AffineMapAttr(AffineMap.from_callable(lambda b, _, j, k: (b, k, j))),
        AffineMapAttr(AffineMap.from_callable(lambda b, i, j, _: (b, i, j))),
    ]))

    def __init__(self, inputs: Sequence[SSAValue], outputs: Sequence[SSAValue]):
        super().__init__(ins=inputs, outs=outputs, result_types=[[o.type for o in outputs]],
                         hidden_region=self.get_hidden_region(inputs, outputs))

    @classmethod
    def get_hidden_region(cls, inputs: Sequence[SSAValue],
                          outputs: Sequence[SSAValue]) -> Region:
        return MatmulOp.get_hidden_region(inputs, outputs)

    def get_default_indexing_maps(self) -> Sequence[AffineMap]:
        return tuple(m.data for m in self.indexing_maps.data)

    def get_indexing_maps(self) -> ArrayAttr[AffineMapAttr]:
        return self.indexing_maps

    def get_iterator_types(self) -> ArrayAttr[IteratorTypeAttr]:
        return ArrayAttr([IteratorTypeAttr.parallel()] * 3 + [IteratorTypeAttr.reduction()])


@dataclass(frozen=True)
class ConvertScanToUpstreamPass(ModulePass):
    name = "convert-scan-to-upstream"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for function in list(op.ops):
            if not isinstance(function, func.FuncOp):
                raise _unsupported(function, "only func.func ops can be exported")
            if SYMBOLS in function.attributes:
                names = ", ".join(function.attributes[SYMBOLS].data)
                raise UnsupportedSyntax(
                    f"cannot export to upstream MLIR with symbolic dimensions ({names}) other "
                    "than the sequences' length",
                    hint="Give those dimensions integer sizes for --emit mlir (a symbol for the "
                         "sequences' first dimension, such as T, is fine).")
            lowered = _FunctionLowering(function).lower()
            op.body.block.insert_op_before(lowered, function)
            function.detach()
            function.erase()


# ---------------------------------------------------------------------------------------------


def _unsupported(op: Operation, what: str) -> UnsupportedSyntax:
    loc = op.attributes.get("loc")
    where = None
    if isinstance(loc, FileLineColLoc):
        where = SourceLocation(loc.filename.data, loc.line.data, loc.column.data)
    return UnsupportedSyntax(
        f"cannot export `{op.name}` to upstream MLIR: {what}", where,
        "`--emit mlir` lowers the subset its documentation lists; the NumPy module "
        "(`--emit numpy`, scanopt.scan) has no such limit.")


def _shape(t: Attribute) -> tuple[int, ...]:
    return tuple(t.get_shape()) if isinstance(t, TensorType) else ()


def _dynamic(d: int) -> bool:
    return d == DYNAMIC_INDEX


def _identity(rank: int) -> AffineMapAttr:
    return AffineMapAttr(AffineMap.identity(rank))


def _reassociation(groups: list[list[int]]) -> ArrayAttr:
    return ArrayAttr([ArrayAttr([IntegerAttr(i, i64) for i in g]) for g in groups])


def _unit_dims_grouping(rank: int, unit: set[int]) -> list[list[int]]:
    """Reassociation from a tensor without the ``unit`` dims to one with them (each unit dim
    joins the group of the next kept dim, trailing ones the last group; none kept: [])."""
    groups: list[list[int]] = []
    pending: list[int] = []
    for j in range(rank):
        pending.append(j)
        if j not in unit:
            groups.append(pending)
            pending = []
    if pending and groups:
        groups[-1].extend(pending)
    return groups


class _Scope:
    """A block being built and the values defined in it (visible to inner scopes)."""

    def __init__(self, block: Block, keeps_bool_buffers: bool = False):
        self.block = block
        # IREE 3.13 cannot compile an scf.while whose body fills an i1 tensor.empty made
        # outside it ("failed to legalize unresolved target materialization from i1"): such
        # buffers stay in the body of a while loop.
        self.keeps_bool_buffers = keeps_bool_buffers
        self.defined: set[SSAValue] = set(block.args)
        self.cache: dict[object, SSAValue] = {}


class _FunctionLowering:
    def __init__(self, function: func.FuncOp):
        self.function = function
        self.values: dict[SSAValue, SSAValue] = {}
        self.scopes: list[_Scope] = []
        self.steps: list[SSAValue] = []  # the step index of each enclosing loop
        self.draws: dict[scan.RandomOp, SSAValue] = {}
        self.loc: Attribute | None = None

    # -- building -----------------------------------------------------------------------------

    def _emit(self, op: Operation) -> SSAValue | None:
        """Append ``op`` to the innermost block, with the loc of the scan op being lowered."""
        if self.loc is not None and not isinstance(op, tensor.ReshapeOp):
            # (xDSL prints tensor.reshape's attributes where upstream does not read them)
            op.attributes["loc"] = self.loc
        scope = self.scopes[-1]
        scope.block.add_op(op)
        scope.defined.update(op.results)
        return op.results[0] if op.results else None

    def _hoist(self, op: Operation) -> SSAValue:
        """Append ``op`` (pure, made by the lowering) to the outermost block where all its
        operands are defined: before the loop when it does not depend on the step."""
        target = 0
        for k, scope in enumerate(self.scopes):
            if any(v in scope.defined for v in op.operands) or (
                    scope.keeps_bool_buffers and isinstance(op, tensor.EmptyOp)
                    and el.is_bool(op.tensor.type.get_element_type())):
                target = k
        scope = self.scopes[target]
        scope.block.add_op(op)
        scope.defined.update(op.results)
        return op.results[0]

    def _cached(self, key: object, make: Callable[[], SSAValue]) -> SSAValue:
        for scope in self.scopes:
            if key in scope.cache:
                return scope.cache[key]
        value = make()
        for scope in self.scopes:
            if value in scope.defined:
                scope.cache[key] = value
        return value

    def _const(self, value: float | int | bool, t: Attribute) -> SSAValue:
        key = repr(float(value)) if el.is_float(t) else int(value)
        return self._cached(("const", key, t), lambda: el.constant(self._hoist, value, t))

    def _index(self, value: int) -> SSAValue:
        return self._const(value, IndexType())

    def _dim(self, value: SSAValue, axis: int) -> SSAValue:
        """The size of ``value`` along ``axis``, as an ``index``."""
        size = _shape(value.type)[axis]
        if not _dynamic(size):
            return self._index(size)
        owner = value.owner
        while isinstance(owner, GenericOp | MatmulOp | BatchMatmulOp | FillOp | TransposeOp):
            value = owner.outputs[value.index]  # a linalg op's result has the shape of its out
            owner = value.owner
        if isinstance(owner, tensor.EmptyOp | tensor.ExpandShapeOp):
            sizes = owner.dynamic_sizes if isinstance(owner, tensor.EmptyOp) else \
                owner.dynamic_output_shape
            return sizes[sum(1 for d in _shape(value.type)[:axis] if _dynamic(d))]
        return self._cached(("dim", value, axis),
                            lambda: self._hoist(tensor.DimOp(value, self._index(axis))))

    def _index_op(self, cls: type[Operation], a: SSAValue, b: SSAValue) -> SSAValue:
        return self._hoist(cls(a, b))

    def _empty(self, t: TensorType, sizes: Sequence[SSAValue]) -> SSAValue:
        return self._cached(("empty", t, tuple(sizes)),
                            lambda: self._hoist(tensor.EmptyOp(list(sizes), t)))

    def _filled(self, value: float | int | bool, t: TensorType,
                sizes: Sequence[SSAValue]) -> SSAValue:
        """A tensor of type ``t`` holding ``value`` everywhere (a zero-filled matmul out...)."""
        def make():
            fill = self._const(value, t.get_element_type())
            return self._hoist(FillOp([fill], [self._empty(t, sizes)], [t]))
        return self._cached(("filled", repr(value), t, tuple(sizes)), make)

    def _dynamic_sizes(self, t: TensorType, sources: Sequence[tuple[SSAValue, int]]
                       ) -> list[SSAValue]:
        """The ``index`` sizes of ``t``'s dynamic dims; ``sources[j]``: a (value, axis) of the
        same size as dim ``j`` of ``t`` (only read for dynamic dims)."""
        return [self._dim(*sources[j]) for j, d in enumerate(_shape(t)) if _dynamic(d)]

    def _scalar_put(self, op: Operation) -> SSAValue:
        return self._emit(op)

    # -- the function -------------------------------------------------------------------------

    def lower(self) -> func.FuncOp:
        old = self.function
        old_block = old.body.block
        draws_of = self._draw_arguments()
        arg_types: list[Attribute] = []
        arg_attrs: list[DictionaryAttr] = []
        old_attrs = old.arg_attrs.data if old.arg_attrs is not None else ()
        sources: list[SSAValue | tuple[scan.RandomOp, str]] = []
        for k, arg in enumerate(old_block.args):
            if isinstance(arg.type, scan.RngType):
                for draw, (t, kind) in draws_of.get(arg, {}).items():
                    arg_types.append(t)
                    arg_attrs.append(DictionaryAttr({DRAWS: StringAttr(kind)}))
                    sources.append((draw, kind))
                continue
            arg_types.append(arg.type)
            arg_attrs.append(old_attrs[k] if k < len(old_attrs) else DictionaryAttr({}))
            sources.append(arg)
        block = Block(arg_types=arg_types)
        for new, source in zip(block.args, sources):
            if isinstance(source, SSAValue):
                self.values[source] = new
                new.name_hint = source.name_hint
            else:
                self.draws[source[0]] = new
                new.name_hint = source[0].result.name_hint or "draws"
        self.scopes.append(_Scope(block))
        self._ops(old_block.ops)
        self.scopes.pop()
        _erase_unused(block)
        result_types = list(old.function_type.outputs.data)
        return func.FuncOp(old.sym_name.data, (arg_types, result_types), Region(block),
                           arg_attrs=ArrayAttr(arg_attrs) if any(a.data for a in arg_attrs)
                           else None)

    def _draw_arguments(self) -> dict[SSAValue, dict[scan.RandomOp, tuple[TensorType, str]]]:
        """Per generator argument, the argument type (and kind) of each draw from it, in order."""
        outer: dict[SSAValue, SSAValue] = {}
        draws: dict[SSAValue, dict[scan.RandomOp, tuple[Attribute, str]]] = {}
        for op in self.function.walk():
            if isinstance(op, scan.LoopOp):
                outer.update(zip(op.param_args, op.non_seqs))
            if not isinstance(op, scan.RandomOp):
                continue
            rng = op.rng
            while rng in outer:
                rng = outer[rng]
            if not isinstance(rng, BlockArgument) or rng.owner is not self.function.body.block:
                raise _unsupported(op, "a generator that is not an argument of the function")
            kind, element = _NOISE[op.method.data]
            result = op.result.type
            element = element or el.element_of(result)
            shape = list(_shape(result))
            depth = 0
            parent = op.parent_op()
            while isinstance(parent, scan.LoopOp):
                depth += 1
                parent = parent.parent_op()
            if depth > 1:
                raise _unsupported(op, "a random draw inside a loop nested in another loop")
            if depth == 1 and op.steps is None:
                shape.insert(0, DYNAMIC_INDEX)  # one row per step
            t = TensorType(element, shape) if shape or isinstance(result, TensorType) \
                else element
            draws.setdefault(rng, {})[op] = (t, kind)
        return draws

    def _ops(self, ops) -> None:
        for op in ops:
            self.loc = op.attributes.get("loc")
            try:
                self._op(op)
            except NoLowering as error:
                raise _unsupported(op, str(error)) from None
        self.loc = None

    def _get(self, value: SSAValue) -> SSAValue:
        return self.values[value]

    def _set(self, old: SSAValue, new: SSAValue) -> None:
        if old.name_hint and not new.name_hint:
            new.name_hint = old.name_hint
        self.values[old] = new

    def _op(self, op: Operation) -> None:
        if not isinstance(op, scan.LoopOp | func.ReturnOp):  # (they only pass values on)
            for value in (*op.operands, *op.results):
                if not isinstance(value.type, scan.RngType | IndexType):
                    el.check_element(el.element_of(value.type))
        handler = _HANDLERS.get(type(op))
        if handler is None:
            for base, method in _BASE_HANDLERS:
                if isinstance(op, base):
                    handler = method
                    break
        if handler is None:
            raise NoLowering("no lowering for this op")
        result = handler(self, op)
        if result is not None:
            self._set(op.results[0], result)

    def _dim_value(self, op: scan.DimOp) -> SSAValue:
        """``x.shape[axis]`` (a Python int): ``tensor.dim`` as an i64."""
        size = self._dim(self._get(op.operand), op.axis.value.data)
        return el.convert(self._scalar_put, size, op.result.type)

    def _count(self, op: scan.CountOp) -> SSAValue:
        """A nested loop's number of steps: ``int(n)``, or its shortest sequence's length."""
        if op.n is not None:
            return el.convert(self._scalar_put, self._scalar(self._get(op.n), i64),
                              IndexType())
        sizes = [self._dim(self._get(s), 0) for s in op.sequences]
        count = sizes[0]
        for size in sizes[1:]:
            count = self._emit(arith.MinSIOp(count, size))
        return count

    def _return(self, op: func.ReturnOp) -> None:
        self._emit(func.ReturnOp(*(self._get(v) for v in op.arguments)))

    def _constant(self, op: arith.ConstantOp) -> SSAValue:
        if isinstance(op.value, IntegerAttr | FloatAttr):
            return self._const(op.value.value.data, op.result.type)
        return self._hoist(op.clone())  # a dense array constant, as it is

    # -- elementwise --------------------------------------------------------------------------

    def _elementwise(self, op: Operation) -> SSAValue:
        types = el.operand_types(op)
        return self._map(op.results[0].type, [self._get(v) for v in op.operands], types,
                         lambda put, xs: el.compute(put, op, xs))

    def _map(self, result_type: Attribute, operands: Sequence[SSAValue],
             types: Sequence[Attribute], body: Callable[[el.Put, list[SSAValue]], SSAValue]
             ) -> SSAValue:
        """``body`` on the elements of ``operands`` (converted to ``types``), broadcast as NumPy
        does: one ``linalg.generic``, or the scalar ops themselves on Python scalars."""
        if not isinstance(result_type, TensorType):  # on Python scalars: the scalar ops
            return body(self._scalar_put, [self._scalar(v, t) for v, t in zip(operands, types)])
        shape = _shape(result_type)
        rank = len(shape)
        inputs, maps, sources = [], [], [None] * rank
        constants: dict[int, SSAValue] = {}  # operand → a constant the body reads directly
        for k, (value, t) in enumerate(zip(operands, types)):
            if not isinstance(value.type, TensorType):
                scalar = self._convert_scalar(value, t)
                if isinstance(scalar.owner, arith.ConstantOp):
                    constants[k] = scalar
                    continue
                inputs.append(scalar)
                maps.append(AffineMapAttr(AffineMap(rank, 0, ())))
                continue
            inputs.append(value)
            operand_shape = _shape(value.type)
            exprs: list[AffineExpr] = []
            for i, d in enumerate(operand_shape):
                j = rank - len(operand_shape) + i
                if d == 1 and shape[j] != 1:
                    exprs.append(AffineConstantExpr(0))
                else:
                    exprs.append(AffineDimExpr(j))
                    if _dynamic(d):
                        sources[j] = (value, i)
            maps.append(AffineMapAttr(AffineMap(rank, 0, tuple(exprs))))
        if any(_dynamic(d) and sources[j] is None for j, d in enumerate(shape)):
            raise NoLowering(f"the size of a dynamic dimension of {result_type}")
        out = self._empty(result_type, self._dynamic_sizes(result_type, sources))
        block = Block(arg_types=[*(el.element_of(v.type) for v in inputs),
                                 result_type.get_element_type()])

        put = _appender(block)

        args = iter(block.args)
        elements = [constants[k] if k in constants else el.convert(put, next(args), t)
                    for k, t in enumerate(types)]
        block.add_op(YieldOp(body(put, elements)))
        generic = GenericOp(inputs, [out], Region(block), [*maps, _identity(rank)],
                            [IteratorTypeAttr.parallel()] * rank, [result_type])
        return self._emit(generic)

    def _convert_scalar(self, value: SSAValue, t: Attribute) -> SSAValue:
        """A Python scalar converted once, outside the generic (constants are folded)."""
        if value.type == t:
            return value
        owner = value.owner
        if isinstance(owner, arith.ConstantOp):
            return self._const(owner.value.value.data, t)
        return el.convert(self._hoist, value, t)

    def _cast(self, value: SSAValue, element: Attribute) -> SSAValue:
        """``value.astype(element)`` (itself when it already is)."""
        if el.element_of(value.type) == element:
            return value
        t = TensorType(element, _shape(value.type)) if isinstance(value.type, TensorType) \
            else element
        return self._map(t, [value], [element], lambda put, xs: xs[0])

    def _scalar(self, value: SSAValue, element: Attribute) -> SSAValue:
        """The one element of a Python scalar or rank-0 array, as ``element``."""
        if not isinstance(value.type, TensorType):
            return self._convert_scalar(value, element)
        if isinstance(value.owner, tensor.FromElementsOp):
            value = value.owner.elements[0]
        else:
            value = self._emit(tensor.ExtractOp(value, [], el.element_of(value.type)))
        return el.convert(self._scalar_put, value, element)

    # -- linear algebra and reductions --------------------------------------------------------

    def _matmul(self, op: scan.MatmulOp) -> SSAValue:
        result_type = op.result.type
        element = el.element_of(result_type)
        lhs, rhs = (self._get(v) for v in (op.lhs, op.rhs))
        lhs_shape, rhs_shape = _shape(lhs.type), _shape(rhs.type)
        named = not el.is_bool(element)
        if named and len(lhs_shape) >= 2 and len(rhs_shape) == 2:
            lhs, rhs = self._cast(lhs, element), self._cast(rhs, element)
            if len(lhs_shape) == 2:
                return self._named_matmul(MatmulOp, lhs, rhs, result_type,
                                          [(lhs, 0), (rhs, 1)])
            return self._stacked_matmul(lhs, rhs, result_type)
        if named and len(lhs_shape) == len(rhs_shape) == 3 and \
                lhs_shape[0] == rhs_shape[0] and not _dynamic(lhs_shape[0]):
            lhs, rhs = self._cast(lhs, element), self._cast(rhs, element)
            return self._named_matmul(BatchMatmulOp, lhs, rhs, result_type,
                                      [(lhs, 0), (lhs, 1), (rhs, 2)])
        return self._contraction(lhs, rhs, result_type)

    def _named_matmul(self, cls, lhs: SSAValue, rhs: SSAValue, result_type: TensorType,
                      sources) -> SSAValue:
        out = self._filled(0, result_type, self._dynamic_sizes(result_type, sources))
        if cls is MatmulOp:
            return self._emit(MatmulOp([lhs, rhs], [out], [result_type]))
        return self._emit(cls([lhs, rhs], [out]))

    def _stacked_matmul(self, lhs: SSAValue, rhs: SSAValue, result_type: TensorType
                        ) -> SSAValue:
        """(..., M, K) @ (K, N): the rows of all matrices in one GEMM, then the stack again."""
        lhs_shape = _shape(lhs.type)
        rank = len(lhs_shape)
        rows = DYNAMIC_INDEX if any(_dynamic(d) for d in lhs_shape[:-1]) else \
            pymath.prod(lhs_shape[:-1])
        element = el.element_of(result_type)
        flat_type = TensorType(element, [rows, lhs_shape[-1]])
        groups = _reassociation([list(range(rank - 1)), [rank - 1]])
        flat = self._emit(tensor.CollapseShapeOp.build(
            operands=[lhs], result_types=[flat_type], properties={"reassociation": groups}))
        product_type = TensorType(element, [rows, _shape(rhs.type)[1]])
        product = self._named_matmul(MatmulOp, flat, rhs, product_type, [(flat, 0), (rhs, 1)])
        sizes = [self._dim(lhs, j) for j in range(rank - 1) if _dynamic(lhs_shape[j])]
        return self._emit(tensor.ExpandShapeOp(product, sizes, groups, _shape(result_type),
                                               result_type))

    def _contraction(self, lhs: SSAValue, rhs: SSAValue, result_type: TensorType
                     ) -> SSAValue:
        """np.matmul in general (1-D operands, broadcast batch dims): a ``linalg.generic``."""
        lhs_shape, rhs_shape = _shape(lhs.type), _shape(rhs.type)
        has_m, has_n = len(lhs_shape) >= 2, len(rhs_shape) >= 2
        shape = _shape(result_type)
        n_batch = len(shape) - has_m - has_n
        k = len(shape)  # the reduction dim comes last
        m_dim, n_dim = n_batch, n_batch + has_m

        def batch_exprs(operand_shape: tuple[int, ...], n_own: int) -> list[AffineExpr]:
            batch = operand_shape[:len(operand_shape) - n_own]
            return [AffineConstantExpr(0) if d == 1 and shape[n_batch - len(batch) + i] != 1
                    else AffineDimExpr(n_batch - len(batch) + i) for i, d in enumerate(batch)]

        lhs_exprs = [*batch_exprs(lhs_shape, 1 + has_m),
                     *([AffineDimExpr(m_dim)] if has_m else []), AffineDimExpr(k)]
        rhs_exprs = [*batch_exprs(rhs_shape, 1 + has_n), AffineDimExpr(k),
                     *([AffineDimExpr(n_dim)] if has_n else [])]
        sources = []
        for j in range(len(shape)):  # a (value, axis) of the size of each result dim
            if j == m_dim and has_m:
                sources.append((lhs, len(lhs_shape) - 2))
            elif j == n_dim and has_n:
                sources.append((rhs, len(rhs_shape) - 1))
            else:
                sources.append(next(((v, i) for v, exprs in ((lhs, lhs_exprs), (rhs, rhs_exprs))
                                     for i, e in enumerate(exprs)
                                     if isinstance(e, AffineDimExpr) and e.position == j
                                     and _dynamic(_shape(v.type)[i])), (lhs, 0)))
        element = result_type.get_element_type()
        out = self._filled(0, result_type, self._dynamic_sizes(result_type, sources))
        block = Block(arg_types=[el.element_of(lhs.type), el.element_of(rhs.type), element])

        put = _appender(block)

        a, b = (el.convert(put, x, element) for x in block.args[:2])
        block.add_op(YieldOp(el.binary(put, "add", block.args[2],
                                       el.binary(put, "multiply", a, b))))
        maps = [AffineMapAttr(AffineMap(k + 1, 0, tuple(e))) for e in (lhs_exprs, rhs_exprs)]
        maps.append(AffineMapAttr(AffineMap(k + 1, 0, tuple(AffineDimExpr(j)
                                                             for j in range(k)))))
        iterators = [IteratorTypeAttr.parallel()] * k + [IteratorTypeAttr.reduction()]
        return self._emit(GenericOp([lhs, rhs], [out], Region(block), maps, iterators,
                                    [result_type]))

    def _reduce(self, op: scan.ReduceOp) -> SSAValue:
        kind = op.kind.data
        source = self._get(op.operand)
        result_type = op.result.type
        element = el.element_of(result_type)
        if not isinstance(source.type, TensorType):  # of a Python scalar: itself
            value = el.convert(self._scalar_put, source, element)
            return self._emit(tensor.FromElementsOp(value, result_type=result_type)) \
                if isinstance(result_type, TensorType) else value
        shape = _shape(source.type)
        rank = len(shape)
        axes = sorted({a % rank for a in op.axis.get_values()}) if op.axis is not None \
            else list(range(rank))
        kept = [j for j in range(rank) if j not in axes]
        reduced_type = TensorType(element, [shape[j] for j in kept])
        if el.is_float(element):
            identity = {"max": -pymath.inf, "min": pymath.inf}.get(kind, 0.0)
        elif el.is_bool(element):
            identity = {"min": True}.get(kind, False)
        else:
            bits = element.width.data
            identity = {"max": -2 ** (bits - 1), "min": 2 ** (bits - 1) - 1}.get(kind, 0)
        out = self._filled(identity, reduced_type,
                           [self._dim(source, j) for j in kept if _dynamic(shape[j])])
        block = Block(arg_types=[el.element_of(source.type), element])

        put = _appender(block)

        combine = {"sum": "add", "mean": "add", "max": "maximum", "min": "minimum"}[kind]
        block.add_op(YieldOp(el.binary(put, combine, block.args[1],
                                       el.convert(put, block.args[0], element))))
        maps = [_identity(rank),
                AffineMapAttr(AffineMap(rank, 0, tuple(AffineDimExpr(j) for j in kept)))]
        iterators = [IteratorTypeAttr.reduction() if j in axes else IteratorTypeAttr.parallel()
                     for j in range(rank)]
        total = self._emit(GenericOp([source], [out], Region(block), maps, iterators,
                                     [reduced_type]))
        if kind == "mean":
            count = self._index(1)
            for j in axes:
                count = self._index_op(arith.MuliOp, count, self._dim(source, j))
            count = el.convert(self._hoist, el.convert(self._hoist, count, i64), element)
            total = self._map(reduced_type, [total, count], [element, element],
                              lambda put, xs: el.binary(put, "true_divide", *xs))
        if _shape(result_type) == _shape(reduced_type):
            return total
        groups = _unit_dims_grouping(rank, set(axes))
        sizes = [self._dim(source, j) for j in kept if _dynamic(shape[j])]
        return self._emit(tensor.ExpandShapeOp(total, sizes, _reassociation(groups),
                                               _shape(result_type), result_type))

    # -- shape ops ----------------------------------------------------------------------------

    def _transpose(self, op: scan.TransposeOp) -> SSAValue:
        source = self._get(op.operand)
        perm = list(op.perm.get_values())
        out = self._empty(op.result.type, [self._dim(source, p) for j, p in enumerate(perm)
                                           if _dynamic(_shape(op.result.type)[j])])
        return self._emit(TransposeOp(source, out, op.perm, op.result.type))

    def _reshape(self, op: scan.ReshapeOp) -> SSAValue:
        source = self._get(op.operand)
        result_type = op.result.type
        shape, source_shape = _shape(result_type), _shape(source.type)
        if not shape or not source_shape:  # to or from a rank-0 array: all dims are 1
            if any(d != 1 for d in (*shape, *source_shape)):
                raise NoLowering(f"a reshape of {source.type} to {result_type}")
            cls = tensor.CollapseShapeOp if not shape else tensor.ExpandShapeOp
            if cls is tensor.CollapseShapeOp:
                return self._emit(cls.build(operands=[source], result_types=[result_type],
                                            properties={"reassociation": _reassociation([])}))
            return self._emit(cls(source, [], _reassociation([]), shape, result_type))
        unknown = [j for j, d in enumerate(shape) if _dynamic(d)]
        if len(unknown) > 1:
            raise NoLowering(f"a reshape to {result_type} (more than one unknown dimension)")
        sizes: list[SSAValue] = [self._index(d) for d in shape]
        if unknown:
            total = self._index(1)
            for j in range(len(source_shape)):
                total = self._index_op(arith.MuliOp, total, self._dim(source, j))
            known = pymath.prod(d for d in shape if not _dynamic(d))
            sizes[unknown[0]] = self._index_op(arith.DivUIOp, total, self._index(known))
        shape_type = TensorType(IndexType(), [len(shape)])
        shape_value = self._hoist(tensor.FromElementsOp(*sizes, result_type=shape_type))
        return self._emit(tensor.ReshapeOp(source, shape_value, result_type))

    def _index_value(self, op: scan.IndexOp) -> SSAValue:
        source = self._get(op.operand)
        shape = _shape(source.type)
        spec = [s.data for s in op.spec.data]
        if spec.count("...") > 1:
            raise NoLowering("more than one `...` in an index")
        if "..." in spec:
            consumed = sum(1 for s in spec if s not in ("None", "..."))
            at = spec.index("...")
            spec[at:at + 1] = [":"] * (len(shape) - consumed)
        consumed = sum(1 for s in spec if s != "None")
        spec += [":"] * (len(shape) - consumed)
        arrays = [v for v in op.indices if _shape(v.type)]
        if arrays:
            if len(op.indices) != 1 or any(s not in (":", "?") for s in spec):
                raise NoLowering("an array of indices together with other indices")
            return self._gather(source, self._get(arrays[0]), spec.index("?"), op.result.type)
        dynamic = iter(op.indices)
        offsets: list[SSAValue | int] = []
        sizes: list[SSAValue | int] = []
        strides: list[int] = []
        kept_shape: list[int] = []  # the sliced tensor's shape, integer-indexed dims dropped
        new_axes: set[int] = set()  # positions of `None` in the result
        axis = 0
        for entry in spec:
            if entry == "None":
                new_axes.add(len(kept_shape) + len(new_axes))
                continue
            if entry == "?" or ":" not in entry:
                index = self._get(next(dynamic)) if entry == "?" else int(entry)
                offsets.append(self._position(index, source, axis))
                sizes.append(1)
                strides.append(1)
            else:
                start, stop, step = (int(p) if p else None for p in
                                     (entry.split(":") + [""])[:3])
                offset, length, step = self._slice(start, stop, step or 1, source, axis)
                offsets.append(offset)
                sizes.append(length)
                strides.append(step)
                kept_shape.append(length if isinstance(length, int) else DYNAMIC_INDEX)
            axis += 1
        element = el.element_of(op.result.type)
        sliced_type = TensorType(element, kept_shape)
        value = source
        if not (all(o == 0 for o in offsets) and tuple(kept_shape) == shape and
                all(s == 1 for s in strides)):
            value = self._emit(tensor.ExtractSliceOp(source, offsets, sizes, strides,
                                                     sliced_type))
        if new_axes:
            result_shape = _shape(op.result.type)
            groups = _unit_dims_grouping(len(result_shape), new_axes)
            dims = [s for s in sizes if isinstance(s, SSAValue)]
            value = self._emit(tensor.ExpandShapeOp(value, dims, _reassociation(groups),
                                                    result_shape, op.result.type))
        if not isinstance(op.result.type, TensorType):
            value = self._emit(tensor.ExtractOp(value, [], element))
        return value

    def _gather(self, source: SSAValue, indices: SSAValue, axis: int, result_type: TensorType
                ) -> SSAValue:
        """``source[:, ..., indices, ...]`` with an integer array ``indices`` at ``axis``."""
        index_rank = len(_shape(indices.type))
        rank = len(_shape(result_type))
        sources = [(source, j) for j in range(axis)] + \
            [(indices, j) for j in range(index_rank)] + \
            [(source, j) for j in range(axis + 1, len(_shape(source.type)))]
        out = self._empty(result_type, self._dynamic_sizes(result_type, sources))
        size = self._dim(source, axis)
        block = Block(arg_types=[el.element_of(indices.type), result_type.get_element_type()])

        put = _appender(block)

        position = el.convert(put, block.args[0], IndexType())
        wrapped = put(arith.AddiOp(position, size))  # a negative index counts from the end
        negative = put(arith.CmpiOp(position, self._index(0), "slt"))
        position = put(arith.SelectOp(negative, wrapped, position))
        coordinates = [*(put(LinalgIndexOp(j)) for j in range(axis)), position,
                       *(put(LinalgIndexOp(axis + index_rank + j))
                         for j in range(len(_shape(source.type)) - axis - 1))]
        block.add_op(YieldOp(put(tensor.ExtractOp(source, coordinates,
                                                  result_type.get_element_type()))))
        index_map = AffineMap(rank, 0, tuple(AffineDimExpr(axis + j) for j in range(index_rank)))
        return self._emit(GenericOp([indices], [out], Region(block),
                                    [AffineMapAttr(index_map), _identity(rank)],
                                    [IteratorTypeAttr.parallel()] * rank, [result_type]))

    def _position(self, index: SSAValue | int, source: SSAValue, axis: int) -> SSAValue | int:
        """An integer index (negative counts from the end, as NumPy) as an ``index``."""
        size = _shape(source.type)[axis]
        if isinstance(index, int):
            if index >= 0:
                return index
            if not _dynamic(size):
                return index + size
            return self._index_op(arith.SubiOp, self._dim(source, axis), self._index(-index))
        value = self._scalar(index, i64)
        value = el.convert(self._scalar_put, value, IndexType())
        negative = self._emit(arith.CmpiOp(value, self._index(0), "slt"))
        wrapped = self._emit(arith.AddiOp(value, self._dim(source, axis)))
        return self._emit(arith.SelectOp(negative, wrapped, value))

    def _slice(self, start: int | None, stop: int | None, step: int, source: SSAValue,
               axis: int) -> tuple[SSAValue | int, SSAValue | int, int]:
        size = _shape(source.type)[axis]
        if step < 1:
            raise NoLowering("a slice with a step below 1")
        if not _dynamic(size):
            first, last, _ = slice(start, stop, step).indices(size)
            return first, len(range(first, last, step)), step
        if step != 1 or (start or 0) < 0 or (stop is not None and stop < 0):
            raise NoLowering("a slice other than [a:] or [a:b] (a, b >= 0) of a dimension whose "
                             "size is only known at run time")
        first = start or 0
        end = self._dim(source, axis)
        if stop is not None:
            end = self._index_op(arith.MinUIOp, end, self._index(stop))
        end = self._index_op(arith.MaxUIOp, end, self._index(first))
        return first, self._index_op(arith.SubiOp, end, self._index(first)), 1

    def _join(self, op: scan.ConcatOp | scan.StackOp) -> SSAValue:
        result_type = op.result.type
        element = result_type.get_element_type()
        rank = len(_shape(result_type))
        axis = op.axis.value.data % rank
        values = [self._cast(self._get(v), element) for v in op.values]
        if isinstance(op, scan.StackOp):
            stacked = []
            for value in values:
                shape = list(_shape(value.type))
                shape.insert(axis, 1)
                groups = _unit_dims_grouping(rank, {axis})
                sizes = [self._dim(value, j) for j, d in enumerate(_shape(value.type))
                         if _dynamic(d)]
                stacked.append(self._emit(tensor.ExpandShapeOp(
                    value, sizes, _reassociation(groups), shape, TensorType(element, shape))))
            values = stacked
        if len(values) == 1:
            return values[0]
        return self._emit(tensor.ConcatOp(values, axis, result_type))

    def _full(self, op: scan.FullOp) -> SSAValue:
        result_type = op.result.type
        fill = self._scalar(self._get(op.fill), result_type.get_element_type())
        if any(_dynamic(d) for d in _shape(result_type)):
            raise NoLowering(f"an array of {result_type}, whose size is only known at run time")
        return self._emit(FillOp([fill], [self._empty(result_type, [])], [result_type]))

    # -- random draws and loop outputs --------------------------------------------------------

    def _random(self, op: scan.RandomOp) -> SSAValue:
        method = op.method.data
        draws = self.draws[op]
        if op.steps is None and self.steps:  # this step's row
            draws = self._row(draws, self.steps[-1],
                              scalar=not isinstance(op.result.type, TensorType))
        params = [self._get(v) for v in op.params]
        result_type = op.result.type
        element = el.element_of(result_type)
        if method == "binomial":
            n = op.params[0].owner
            if not (isinstance(n, arith.ConstantOp) and n.value.value.data == 1):
                raise NoLowering("binomial(n, p) with n other than the constant 1")
            return self._map(result_type, [draws, params[1]], [f64, f64],
                             lambda put, xs: el.convert(put, el.binary(put, "less", *xs),
                                                        element))
        if method in ("uniform", "normal"):  # low + (high - low) * u, loc + scale * z
            def body(put, xs):
                noise, a, b = xs
                if method == "uniform":
                    b = el.binary(put, "subtract", b, a)
                return el.binary(put, "add", a, el.binary(put, "multiply", b, noise))
            return self._map(result_type, [draws, *params], [element] * 3, body)
        return self._cast(draws, element)

    def _row(self, value: SSAValue, index: SSAValue, scalar: bool = False) -> SSAValue:
        """Row ``index`` of ``value``: a tensor of one rank less (the element itself of a 1-D
        ``value`` with ``scalar``)."""
        shape = _shape(value.type)
        element = el.element_of(value.type)
        if scalar:
            return self._emit(tensor.ExtractOp(value, [index], element))
        sizes = [1, *(self._dim(value, j) if _dynamic(d) else d
                      for j, d in enumerate(shape) if j)]
        row_type = TensorType(element, shape[1:])
        return self._emit(tensor.ExtractSliceOp(value, [index, *[0] * (len(shape) - 1)], sizes,
                                                [1] * len(shape), row_type))

    def _last(self, op: scan.LastOp) -> SSAValue:
        history = self._get(op.history)
        count = self._dim(history, 0)
        index = self._index_op(arith.SubiOp, count, self._index(1))

        def row():
            return self._row(history, index, scalar=not isinstance(op.result.type, TensorType))

        if op.init is None:
            return row()
        init = self._get(op.init)
        if isinstance(op.result.type, TensorType) and not isinstance(init.type, TensorType):
            init = self._emit(tensor.FromElementsOp(init, result_type=op.result.type))
        ran = self._hoist(arith.CmpiOp(count, self._index(0), "sgt"))
        then = Block()
        self.scopes.append(_Scope(then))
        self._emit(scf.YieldOp(row()))
        self.scopes.pop()
        otherwise = Block()
        otherwise.add_op(scf.YieldOp(init))
        return self._emit(scf.IfOp(ran, [op.result.type], [then], [otherwise]))

    # -- the loop -----------------------------------------------------------------------------

    def _loop(self, loop: scan.LoopOp) -> None:
        if loop.n_steps is not None:
            n = self._get(loop.n_steps)
        else:
            if not loop.sequences:
                raise NoLowering("a loop without sequences and without a number of steps")
            n = None
            for seq, offset in zip(loop.sequences, loop.offsets()):
                rows = self._dim(self._get(seq), 0)
                if offset:
                    rows = self._index_op(arith.SubiOp, rows, self._index(offset))
                n = rows if n is None else self._index_op(arith.MinSIOp, n, rows)
        yield_op = loop.block.last_op
        assert isinstance(yield_op, scan.YieldOp)
        until = yield_op.until
        last = set(loop.last_indices())
        n_carries = len(loop.inits)
        kept = [k for k in range(len(loop.outs)) if k not in last]
        lasts = [k for k in sorted(last) if k >= n_carries]
        inits = [self._get(v) for v in loop.inits]
        buffers: dict[Attribute, int] = {}  # per type, the buffers made so far
        for k in kept:
            t = loop.outs[k].type
            inits.append(self._buffer(t, [n] if _dynamic(_shape(t)[0]) else [], buffers))
        for k in lasts:
            t = yield_op.values[k].type
            inits.append(self._buffer(t, [], buffers) if isinstance(t, TensorType) else
                         self._const(0, t))
        names = [*(a.name_hint for a in loop.carry_args),
                 *(loop.outs[k].name_hint or f"out{k}s" for k in kept),
                 *((yield_op.values[k].name_hint or f"out{k}") + "_last" for k in lasts)]
        state_types = [v.type for v in inits]
        zero, one = self._index(0), self._index(1)
        if until is None:
            body = Block(arg_types=[IndexType(), *state_types])
            step, state = body.args[0], list(body.args[1:])
        else:
            body = Block(arg_types=[IndexType(), i1, *state_types])
            step, state = body.args[0], list(body.args[2:])
        step.name_hint = "t"
        for arg, name in zip(state, names):
            arg.name_hint = name
        self.scopes.append(_Scope(body, keeps_bool_buffers=until is not None))
        self.steps.append(step)
        for seq, arg, offset in zip(loop.sequences, loop.seq_args, loop.offsets()):
            if not arg.uses:
                continue
            row = step
            if loop.reverse is not None:  # offset + n - 1 - t
                last_row = self._index_op(arith.SubiOp, n, self._index(1 - offset))
                row = self._emit(arith.SubiOp(last_row, step))
            elif offset:
                row = self._emit(arith.AddiOp(step, self._index(offset)))
            self._set(arg, self._row(self._get(seq), row,
                                     scalar=not isinstance(arg.type, TensorType)))
        for arg, value in zip(loop.carry_args, state):
            self._set(arg, value)
        for arg, outer in zip(loop.param_args, loop.non_seqs):
            if not isinstance(arg.type, scan.RngType):
                self._set(arg, self._get(outer))
        self._ops(op for op in loop.block.ops if op is not yield_op)
        self.loc = loop.attributes.get("loc")
        values = [self._get(v) for v in yield_op.values]
        new_state = values[:n_carries]
        for k, history in zip(kept, state[n_carries:]):
            new_state.append(self._insert_row(values[k], history, step))
        new_state += [values[k] for k in lasts]
        if until is None:
            self._emit(scf.YieldOp(*new_state))
            self.steps.pop()
            self.scopes.pop()
            for_op = scf.ForOp(zero, n, one, inits, body)
            self._emit(for_op)
            results = list(for_op.results)
            steps_run = n
        else:
            stop = el.convert(self._scalar_put, self._scalar(self._get(until), i1), i1)
            next_step = self._emit(arith.AddiOp(step, one))
            self._emit(scf.YieldOp(next_step, stop, *new_state))
            self.steps.pop()
            self.scopes.pop()
            results = self._while(n, inits, state_types, body)
            steps_run, results = results[0], results[2:]
        for k, result in zip(kept, results[n_carries:]):
            if until is not None:  # the steps that ran
                result = self._first_rows(result, steps_run)
            self._set(loop.outs[k], result)
        for k in last:
            value = results[k] if k < n_carries else results[n_carries + len(kept) +
                                                              lasts.index(k)]
            if isinstance(loop.outs[k].type, TensorType) and \
                    not isinstance(value.type, TensorType):
                value = self._emit(tensor.FromElementsOp(value, result_type=loop.outs[k].type))
            self._set(loop.outs[k], value)

    def _buffer(self, t: TensorType, sizes: list[SSAValue], made: dict[Attribute, int]
                ) -> SSAValue:
        """The initial value of a history (or last-value slot) carried by the loop.

        Every row is written before it is read, so any contents do; but two of them must not
        start from equal values: IREE 3.13 then gives both one buffer (the LSTM's ``cs`` came
        out as garbage), whether they start from one ``tensor.empty`` or from two. So the
        ``k``-th buffer of a type starts filled with ``k``.
        """
        k = made.get(t, 0)
        made[t] = k + 1
        element = t.get_element_type()
        fill = self._const(min(k, 1) if el.is_bool(element) else k, element)
        return self._hoist(FillOp([fill], [self._hoist(tensor.EmptyOp(sizes, t))], [t]))

    def _while(self, n: SSAValue, inits: list[SSAValue], state_types: list[Attribute],
               after: Block) -> list[SSAValue]:
        """``scf.while``: runs ``after`` while ``t < n`` and no step has said stop."""
        types = [IndexType(), i1, *state_types]
        before = Block(arg_types=types)
        step, stopped = before.args[0], before.args[1]
        more = arith.CmpiOp(step, n, "slt")
        going = arith.XOrIOp(stopped, self._const(True, i1))
        run = arith.AndIOp(more, going)
        before.add_ops([more, going, run, scf.ConditionOp(run, *before.args)])
        op = scf.WhileOp([self._index(0), self._const(False, i1), *inits], types,
                         Region(before), Region(after))
        self._emit(op)
        return list(op.results)

    def _insert_row(self, value: SSAValue, history: SSAValue, step: SSAValue) -> SSAValue:
        """``history[step] = value``."""
        shape = _shape(history.type)
        if len(shape) == 1:
            if isinstance(value.type, TensorType):
                value = self._emit(tensor.ExtractOp(value, [], el.element_of(value.type)))
            return self._emit(tensor.InsertOp(value, history, [step]))
        offsets, dyn_offsets = split_dynamic_index_list([step, *[0] * (len(shape) - 1)],
                                                        DYNAMIC_INDEX)
        sizes, dyn_sizes = split_dynamic_index_list(
            [1, *(self._dim(value, j - 1) if _dynamic(d) else d
                  for j, d in enumerate(shape) if j)], DYNAMIC_INDEX)
        return self._emit(tensor.InsertSliceOp.build(
            operands=[value, history, dyn_offsets, dyn_sizes, []],
            result_types=[history.type],
            properties={"static_offsets": _array(offsets), "static_sizes": _array(sizes),
                        "static_strides": _array([1] * len(shape))}))

    def _first_rows(self, history: SSAValue, count: SSAValue) -> SSAValue:
        """``history[:count]``."""
        shape = _shape(history.type)
        sizes = [count, *(self._dim(history, j) if _dynamic(d) else d
                          for j, d in enumerate(shape) if j)]
        return self._emit(tensor.ExtractSliceOp(history, [0] * len(shape), sizes,
                                                [1] * len(shape), history.type))


def _appender(block: Block) -> el.Put:
    """``put`` for ops built into ``block`` (the body of a linalg.generic)."""
    def put(op: Operation) -> SSAValue:
        block.add_op(op)
        return op.results[0]
    return put


def _erase_unused(block: Block) -> None:
    """Erase what the lowering made and nothing uses (constants folded into others, ...)."""
    for op in reversed([op for op in block.walk()]):
        if isinstance(op, _MATERIALISED) and not any(r.uses for r in op.results):
            op.detach()
            op.erase()


_MATERIALISED = (arith.ConstantOp, tensor.FromElementsOp, tensor.EmptyOp, tensor.DimOp,
                 FillOp)


def _array(values: list[int]):
    from xdsl.dialects.builtin import DenseArrayBase

    return DenseArrayBase.from_list(i64, values)


_HANDLERS: dict[type[Operation], Callable[[_FunctionLowering, Operation], SSAValue | None]] = {
    func.ReturnOp: _FunctionLowering._return,
    arith.ConstantOp: _FunctionLowering._constant,
    scan.LoopOp: _FunctionLowering._loop,
    scan.MatmulOp: _FunctionLowering._matmul,
    scan.ReduceOp: _FunctionLowering._reduce,
    scan.TransposeOp: _FunctionLowering._transpose,
    scan.ReshapeOp: _FunctionLowering._reshape,
    scan.IndexOp: _FunctionLowering._index_value,
    scan.ConcatOp: _FunctionLowering._join,
    scan.StackOp: _FunctionLowering._join,
    scan.FullOp: _FunctionLowering._full,
    scan.RandomOp: _FunctionLowering._random,
    scan.LastOp: _FunctionLowering._last,
    scan.DimOp: _FunctionLowering._dim_value,
    scan.CountOp: _FunctionLowering._count,
}
_BASE_HANDLERS = (
    (scan.ElementwiseOp, _FunctionLowering._elementwise),
    (scan.WhereOp | scan.ClipOp | scan.CastOp, _FunctionLowering._elementwise),
)
