"""``scan-fold-scale``: multiplying a step's value by a power of two (or negating it) is moved into
the weights and inputs it is made from, where ``scan-licm`` and ``scan-push-out-seq`` do it once.

A sigmoid written ``1 / (1 + exp(-z))`` negates its argument every step; after
``scan-sigmoid-tanh`` it halves it instead. When ``z`` is a sum of matmuls with invariant
weights, biases and sequence terms (``x_t @ W + h @ U + b``), ``c * z`` is
``x_t @ (c * W) + h @ (c * U) + c * b``: the per-step pass over the gate block disappears and
the weights are scaled once per call. When the scaled value is a column slice of a block
(``z[..., 0:384]`` of the LSTM's fused gates), only those columns of the weights are scaled (by a
vector of per-column factors, ``c`` on the slice and 1 elsewhere), so the other gates read the
same block unchanged.

Only factors ``±2**k`` are folded: multiplying by them is exact, so every number is the same as
before (barring subnormal underflow). The pass still is not part of the ``exact_random=True``
pipeline, which runs only the passes that keep the user's own operations.

Before::

    %zb = scan.add %xW_t, %hU : ...            (%hU = h @ U, U a non-sequence)
    %n = scan.neg %zb : ...

After::

    %m = scan.neg %U_1 : ...                   (invariant: hoisted by scan-licm)
    %hU2 = scan.matmul %h, %m : ...
    %xW2 = scan.neg %xW_t : ...                (sequence: pushed out by scan-push-out-seq)
    %n = scan.add %xW2, %hU2 : ...

>>> from scanopt.transforms.testing import run_on_step
>>> import numpy as np
>>> def step(h, U):
...     return np.exp(-(h @ U)) * h
>>> ir = run_on_step(step, ["scan-fold-scale", "dce", "scan-licm"],
...                  outputs_info=np.ones((2, 4), np.float32),
...                  non_sequences=np.eye(4, dtype=np.float32), n_steps=3)
>>> ir.index("scan.neg") < ir.index("scan.loop")
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import arith
from xdsl.dialects.builtin import (FloatAttr, IntegerAttr, ModuleOp, TensorType, f16, f32, f64,
                                   i1)
from xdsl.ir import Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import Rewriter

from scanopt.dialects import scan
from scanopt.transforms.loop_utils import CARRIED, copy_loc, insert_before, loops_in, stages
from scanopt.transforms.remarks import remark

_FLOATS = (f16, f32, f64)
Pieces = tuple[tuple[int, int, float], ...]  # (start, stop, factor) over the last axis


def _constant_value(value: SSAValue) -> float | None:
    owner = value.owner
    if isinstance(owner, arith.ConstantOp) and owner.value.type != i1 and \
            isinstance(owner.value, FloatAttr | IntegerAttr):
        return float(owner.value.value.data)
    return None


def _power_of_two(c: float | None) -> bool:
    if c is None or c == 0 or not math.isfinite(c):
        return False
    mantissa, _ = math.frexp(abs(c))
    return mantissa == 0.5


def scaling(op: Operation) -> tuple[SSAValue, float] | None:
    """``(v, c)`` when ``op`` computes ``c * v`` with ``c = ±2**k``, keeping ``v``'s type."""
    if isinstance(op, scan.NegOp):
        v, c = op.operand, -1.0
    elif isinstance(op, scan.MulOp):
        for v, other in ((op.lhs, op.rhs), (op.rhs, op.lhs)):
            c = _constant_value(other)
            if _power_of_two(c):
                break
        else:
            return None
    elif isinstance(op, scan.DivOp):
        v, d = op.lhs, _constant_value(op.rhs)
        if not _power_of_two(d):
            return None
        c = 1.0 / d
    else:
        return None
    t = v.type
    if t != op.results[0].type or not isinstance(t, TensorType) or \
            t.get_element_type() not in _FLOATS or not t.get_shape():
        return None
    return v, c


def _column_slice(value: SSAValue) -> tuple[SSAValue, int, int] | None:
    """``(source, start, stop)`` when ``value`` is ``source[..., start:stop]`` (``[..., :8]``
    and ``[..., 8:]`` too), with non-negative bounds within ``source``'s last axis."""
    op = value.owner
    if not isinstance(op, scan.IndexOp) or op.indices:
        return None
    spec = [s.data for s in op.spec.data]
    width = _width(op.operand)
    if len(spec) != 2 or spec[0] != "..." or spec[1].count(":") != 1 or width is None:
        return None
    start, stop = spec[1].split(":")
    try:
        start_at, stop_at = int(start or 0), int(stop or width)
    except ValueError:
        return None
    if not 0 <= start_at < stop_at <= width:
        return None
    return op.operand, start_at, stop_at


def _width(value: SSAValue) -> int | None:
    t = value.type
    return t.get_shape()[-1] if isinstance(t, TensorType) and t.get_shape() else None


class _Folder:
    """Builds ``value * factors`` from ``value``'s own definition; commits only when it all
    works (``replacements`` applied at the end, new ops erased on failure)."""

    def __init__(self, loop: scan.LoopOp, anchor: Operation, stage: dict[SSAValue, int]):
        self.loop = loop
        self.stage = stage
        self.anchor = anchor  # the loop op whose location new ops take
        self.new_ops: list[Operation] = []
        self.replacements: list[tuple[SSAValue, SSAValue]] = []

    def _insert(self, op: Operation, before: Operation, *, at_anchor: bool = False) -> Operation:
        """Insert ``op`` before ``before``, located where ``before`` is (or, for the factors,
        at the scaling op: equal factors are then equal ops, which cse merges)."""
        located = before if before.parent_block() is self.loop.block and not at_anchor else \
            self.anchor
        copy_loc(op, located)
        insert_before(op, before)
        self.new_ops.append(op)
        return op

    def _where(self, value: SSAValue) -> Operation:
        """The op before which a value derived from ``value`` can be inserted: right after its
        definition (the first op of the body for block arguments and outer values)."""
        owner = value.owner
        if isinstance(owner, Operation) and owner.parent_block() is self.loop.block:
            return owner.next_op
        return self.loop.block.first_op

    def _factors(self, pieces: Pieces, element, before: Operation) -> SSAValue:
        """The vector of per-column factors, ``tensor<N x element>``."""
        parts = []
        for start, stop, c in pieces:
            fill = self._insert(arith.ConstantOp(FloatAttr(c, f64)), before,
                                at_anchor=True).result
            parts.append(self._insert(scan.FullOp(fill, TensorType(element, [stop - start])),
                                      before, at_anchor=True).result)
        width = pieces[-1][1]
        if len(parts) == 1:
            return parts[0]
        concat = self._insert(scan.ConcatOp(parts, 0, TensorType(element, [width])), before,
                              at_anchor=True)
        concat.result.name_hint = "scale"
        return concat.result

    def leaf(self, value: SSAValue, pieces: Pieces, element, before: Operation) -> SSAValue:
        """``value * factors`` as one multiplication (``value`` is not carried)."""
        uniform = len(pieces) == 1
        constant = _constant_value(value)
        if uniform and constant is not None:
            c = constant * pieces[0][2]
            return self._insert(arith.ConstantOp(FloatAttr(c, f64)), before).result
        if uniform and pieces[0][2] == -1.0:
            op = self._insert(scan.NegOp(value, value.type), before)
            op.result.name_hint = f"{value.name_hint}_neg" if value.name_hint else None
            return op.result
        if uniform:
            factor = self._insert(arith.ConstantOp(FloatAttr(pieces[0][2], f64)), before,
                                  at_anchor=True).result
            result_type = value.type
        else:
            factor = self._factors(pieces, element, before)
            width = pieces[-1][1]
            shape = list(value.type.get_shape()) if isinstance(value.type, TensorType) else []
            result_type = TensorType(element, [*shape[:-1], width]) if shape else \
                TensorType(element, [width])
        op = self._insert(scan.MulOp(value, factor, result_type), before)
        if value.name_hint:
            op.result.name_hint = f"{value.name_hint}_scaled"
        return op.result

    def scaled(self, value: SSAValue, pieces: Pieces, element, user: Operation | None):
        """A value equal to ``value`` with its last axis multiplied by ``pieces``, or None.
        ``user``: the one op that reads ``value`` (it is rebuilt), None for the root."""
        owner = value.owner
        single = user is None or all(use.operation is user for use in value.uses)
        in_body = isinstance(owner, Operation) and owner.parent_block() is self.loop.block
        if in_body and single:
            rebuilt = self.rebuild(owner, pieces, element)
            if rebuilt is not None:
                return rebuilt
        if self.stage.get(value, 0) == CARRIED:
            return None
        return self.leaf(value, pieces, element, self._where(value))

    def rebuild(self, op: Operation, pieces: Pieces, element) -> SSAValue | None:
        width = pieces[-1][1]
        if isinstance(op, scan.AddOp | scan.SubOp):
            operands = []
            for operand in op.operands:
                if _width(operand) == width:
                    new = self.scaled(operand, pieces, element, op)
                elif self.stage.get(operand, 0) != CARRIED:  # broadcast along the columns
                    new = self.leaf(operand, pieces, element, op)
                else:
                    new = None
                if new is None:
                    return None
                operands.append(new)
            return self._insert(type(op)(*operands, op.results[0].type), op).results[0]
        if isinstance(op, scan.NegOp):
            new = self.scaled(op.operand, pieces, element, op)
            return None if new is None else \
                self._insert(scan.NegOp(new, op.result.type), op).result
        if isinstance(op, scan.MatmulOp) and isinstance(op.rhs.type, TensorType) and \
                len(op.rhs.type.get_shape()) == 2 and self.stage.get(op.rhs, 0) != CARRIED:
            rhs = self.leaf(op.rhs, pieces, element, op)
            return self._insert(scan.MatmulOp(op.lhs, rhs, op.result.type), op).result
        found = _column_slice(op.results[0])
        if found is not None:
            source, start, stop = found
            outer = _embedded(pieces, start, stop, _width(source))
            if outer is None or not _slices_only(source, start, stop, op):
                return None
            new_source = self.scaled(source, outer, element, op if
                                     len(list(source.uses)) == 1 else None)
            if new_source is None:
                return None
            self.replacements.append((source, new_source))
            return self._insert(scan.IndexOp(new_source, [], ["...", f"{start}:{stop}"],
                                             op.results[0].type), op).result
        return None

    def abandon(self) -> None:
        for op in reversed(self.new_ops):
            if op.parent is not None:
                Rewriter.erase_op(op, safe_erase=False)


def _embedded(pieces: Pieces, start: int, stop: int, width: int | None) -> Pieces | None:
    """``pieces`` of columns ``start:stop`` as pieces of the whole width (1 elsewhere)."""
    if width is None or stop > width:
        return None
    out = [(start + a, start + b, c) for a, b, c in pieces]
    if start:
        out.insert(0, (0, start, 1.0))
    if stop < width:
        out.append((stop, width, 1.0))
    return _merged(tuple(out))


def _merged(pieces: Pieces) -> Pieces:
    out: list[tuple[int, int, float]] = []
    for a, b, c in pieces:
        if out and out[-1][2] == c:
            out[-1] = (out[-1][0], b, c)
        else:
            out.append((a, b, c))
    return tuple(out)


def _slices_only(source: SSAValue, start: int, stop: int, this: Operation) -> bool:
    """Whether every other reader of ``source`` is a column slice that does not overlap
    ``start:stop`` (it then reads the same numbers from the scaled block)."""
    for use in source.uses:
        user = use.operation
        if user is this:
            continue
        found = _column_slice(user.results[0]) if user.results else None
        if found is None or found[0] is not source or not (found[2] <= start or found[1] >= stop):
            return False
    return True


def _sampled_sigmoid(neg: Operation) -> bool:
    """Whether ``neg`` starts a sigmoid ``1 / (1 + exp(-z))`` that a random draw reads:
    ``scan-fast-random`` turns that draw into ``z > logistic noise``, which needs the ``-z``."""
    if not isinstance(neg, scan.NegOp):
        return False
    value = neg.result
    for kind in (scan.ExpOp, scan.AddOp, scan.DivOp):
        users = [use.operation for use in value.uses]
        if len(users) != 1 or not isinstance(users[0], kind):
            return False
        value = users[0].results[0]
    return any(isinstance(use.operation, scan.RandomOp) for use in value.uses)


def _root(op: Operation) -> tuple[SSAValue, Pieces, list[Operation]] | None:
    """What to scale for the scaling op ``op``: the value, its pieces, and the scaling ops that
    become no-ops."""
    found = scaling(op)
    if found is None or _sampled_sigmoid(op):
        return None
    v, c = found
    width = _width(v)
    sliced = _column_slice(v)
    if sliced is not None:
        source, start, stop = sliced
        readers = _same_scaling_readers(source, start, stop, c)
        if readers is not None:
            return source, _embedded(((0, stop - start, c),), start, stop, _width(source)), \
                readers
    if all(scaling(use.operation) == (v, c) for use in v.uses):
        return v, ((0, width, c),), [use.operation for use in v.uses]
    return None


def _same_scaling_readers(source: SSAValue, start: int, stop: int,
                          c: float) -> list[Operation] | None:
    """The scaling ops (factor ``c``) reading ``source[..., start:stop]``, if every reader of
    ``source`` is a column slice and those overlapping ``start:stop`` are exactly that slice,
    read only by such scaling ops."""
    readers: list[Operation] = []
    for use in source.uses:
        found = _column_slice(use.operation.results[0]) if use.operation.results else None
        if found is None or found[0] is not source:
            return None
        if found[2] <= start or found[1] >= stop:
            continue
        if found[1:] != (start, stop):
            return None
        for inner in use.operation.results[0].uses:
            if scaling(inner.operation) != (use.operation.results[0], c):
                return None
            readers.append(inner.operation)
    return readers


def fold_scales(loop: scan.LoopOp) -> int:
    folded = 0
    stage = stages(loop)
    for op in list(loop.block.ops):
        if op.parent is None:
            continue
        root = _root(op)
        if root is None:
            continue
        value, pieces, readers = root
        owner = value.owner
        # Only per-step work is worth folding (the rest is hoisted or pushed out as it is),
        # and only into the definition of the value: scaling it as a whole saves nothing.
        if pieces is None or stage.get(op.results[0]) != CARRIED or \
                not isinstance(owner, Operation) or owner.parent_block() is not loop.block:
            continue
        folder = _Folder(loop, op, stage)
        new = folder.rebuild(owner, pieces, value.type.get_element_type())
        if new is None:
            folder.abandon()
            continue
        for old, replacement in [(value, new), *folder.replacements]:
            for use in list(old.uses):
                if use.operation not in folder.new_ops:
                    use.operation.operands[use.index] = replacement
        for reader in readers:
            operand = scaling(reader)[0] if scaling(reader) is not None else None
            if operand is None:
                continue
            reader.results[0].replace_all_uses_with(operand)
            Rewriter.erase_op(reader)
        folded += 1
        stage = stages(loop)
        factors = sorted({c for _, _, c in pieces if c != 1.0})
        remark("scan-fold-scale", f"multiplication by {', '.join(f'{c:g}' for c in factors)} "
                                  "moved into the weights and inputs it is made from: no pass "
                                  "over the array in the step", [op])
    return folded


@dataclass(frozen=True)
class ScanFoldScalePass(ModulePass):
    """``c * (x_t @ W + h @ U + b)`` (``c = ±2**k``) → ``x_t @ (c*W) + h @ (c*U) + c*b``."""

    name = "scan-fold-scale"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for loop in loops_in(op):
            fold_scales(loop)
