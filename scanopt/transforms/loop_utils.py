"""What the scan passes share: which values of a loop body depend on what, and loop rebuilding.

A value of a ``scan.loop`` body is at one of three *stages*:

- ``INVARIANT``: computed from non-sequences and constants only (the same in every step);
- ``SEQUENCE``: computed from the current sequence slices and invariants (known for all steps
  before the loop starts);
- ``CARRIED``: depends on a carry or on a random draw (known only when its step runs).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from xdsl.dialects import arith
from xdsl.dialects.builtin import DYNAMIC_INDEX, DenseArrayBase, TensorType, i64
from xdsl.ir import Attribute, Operation, Region, SSAValue
from xdsl.rewriter import InsertPoint, Rewriter
from xdsl.traits import Pure

from scanopt.dialects import scan

INVARIANT, SEQUENCE, CARRIED = 0, 1, 2


def is_pure(op: Operation) -> bool:
    return op.has_trait(Pure) and not op.regions


def stages(loop: scan.LoopOp) -> dict[SSAValue, int]:
    """The stage of every value defined in the loop body (block arguments included)."""
    stage: dict[SSAValue, int] = {}
    for arg in loop.seq_args:
        stage[arg] = SEQUENCE
    for arg in loop.carry_args:
        stage[arg] = CARRIED
    for arg in loop.param_args:
        stage[arg] = INVARIANT
    for op in loop.block.ops:
        if isinstance(op, arith.ConstantOp):
            s = INVARIANT
        elif not is_pure(op):
            s = CARRIED
        else:
            s = max((stage.get(o, INVARIANT) for o in op.operands), default=INVARIANT)
        for res in op.results:
            stage[res] = s
    return stage


def with_leading_dim(t: Attribute, rows: int = DYNAMIC_INDEX) -> TensorType:
    """``tensor<16x128xf32>`` → ``tensor<?x16x128xf32>`` (weak scalars become rank-1 tensors);
    ``rows`` when the number of steps is known (a nested loop over a static slice)."""
    if isinstance(t, TensorType):
        return TensorType(t.get_element_type(), [rows, *t.get_shape()])
    return TensorType(t, [rows])


def without_leading_dim(t: TensorType) -> TensorType:
    return TensorType(t.get_element_type(), list(t.get_shape())[1:])


def rank(t: Attribute) -> int:
    return len(t.get_shape()) if isinstance(t, TensorType) else 0


def rebuild_loop(loop: scan.LoopOp, *, sequences: Sequence[SSAValue] = (),
                 non_seqs: Sequence[SSAValue] = (), out_types: Sequence[Attribute] | None = None,
                 properties: dict | None = None,
                 offsets: Sequence[int] | None = None) -> scan.LoopOp:
    """Replace ``loop`` with one that has extra sequences/non-sequences (block arguments added
    for them, appended to their group) and moves the body over. Returns the new loop.

    ``offsets``: the row each new sequence reads at step 0 (default 0)."""
    block = loop.block
    for k, seq in enumerate(sequences):
        assert isinstance(seq.type, TensorType)
        block.insert_arg(without_leading_dim(seq.type), len(loop.sequences) + k)
    for seq in non_seqs:
        block.insert_arg(seq.type, len(block.args))
    new_region = Region()
    loop.body.move_blocks(new_region)
    new = scan.LoopOp(
        [*loop.sequences, *sequences], list(loop.inits), [*loop.non_seqs, *non_seqs],
        new_region, out_types if out_types is not None else [r.type for r in loop.outs],
        n_steps=loop.n_steps, reverse=loop.reverse is not None,
    )
    for key, value in (properties or {}).items():
        new.properties[key] = value
    all_offsets = [*loop.offsets(), *(offsets if offsets is not None else [0] * len(sequences))]
    if any(all_offsets):
        new.properties["seq_offsets"] = DenseArrayBase.from_list(i64, all_offsets)
    for key in loop.properties:
        if key not in ("reverse", "operandSegmentSizes", "seq_offsets") and \
                key not in new.properties:
            new.properties[key] = loop.properties[key]
    for key, value in loop.attributes.items():
        new.attributes[key] = value
    for old_res, new_res in zip(loop.outs, new.outs):
        new_res.name_hint = old_res.name_hint
    Rewriter.replace_op(loop, new, new_results=list(new.outs)[: len(loop.outs)] if
                        out_types is None else None)
    return new


def insert_before(op: Operation, anchor: Operation) -> None:
    Rewriter.insert_op(op, InsertPoint.before(anchor))


def erase_ops(ops: Iterable[Operation]) -> None:
    """Erase ops that only feed each other, last first."""
    for op in reversed(list(ops)):
        Rewriter.erase_op(op)


def loops_in(module) -> list[scan.LoopOp]:
    return [op for op in module.walk() if isinstance(op, scan.LoopOp)]


def copy_loc(target: Operation, source: Operation) -> Operation:
    loc = source.attributes.get("loc")
    if loc is not None:
        target.attributes["loc"] = loc
    return target


def rounds_the_same_batched(op: Operation) -> bool:
    """Whether ``op`` over all steps at once gives bit-for-bit the numbers it gives per step.

    Elementwise ops, indexing and reshaping do; a GEMM over more rows may be blocked (and so
    rounded) differently by BLAS, and NumPy's pairwise sums depend on the array's layout."""
    if isinstance(op, scan.MatmulOp):
        return False
    if isinstance(op, scan.ReduceOp):
        return op.kind.data in ("max", "min")
    return True


def batched_clone(op: Operation, operands: Sequence[SSAValue], batched: Sequence[bool],
                  exact: bool = False) -> Operation | None:
    """``op`` applied to every step at once, or None if that is not expressible.

    ``operands`` are the values to use outside the loop; ``batched[k]`` says whether operand k
    gained a leading step dimension (a whole sequence or history) or is the same for every step
    (an invariant). The result gains the leading dimension. NumPy semantics make most ops work
    unchanged on the bigger arrays: invariants broadcast from the right, so an elementwise op
    is fine when each batched operand has the result's rank; other ops shift their axes by one.
    """
    from xdsl.dialects.builtin import DenseArrayBase, IntegerAttr, StringAttr, i64
    from xdsl.dialects.builtin import ArrayAttr

    if not any(batched) or not is_pure(op) or isinstance(op, arith.ConstantOp):
        return None
    if exact and not rounds_the_same_batched(op):
        return None
    result_type = op.results[0].type
    out_rank = rank(result_type)
    props = dict(op.properties)
    ok = False
    if isinstance(op, scan.ElementwiseOp | scan.WhereOp | scan.ClipOp | scan.CastOp):
        ok = all(not b or rank(o.type) == out_rank for o, b in zip(op.operands, batched))
    elif isinstance(op, scan.MatmulOp):
        ok = batched[0] and not batched[1] and rank(op.rhs.type) == 2 and rank(op.lhs.type) >= 1
    elif isinstance(op, scan.IndexOp):
        spec = [s.data for s in op.spec.data]
        if batched[0] and not any(batched[1:]) and "?" not in spec:
            props["spec"] = ArrayAttr([StringAttr(s) for s in [":", *spec]])
            ok = True
        elif not batched[0] and spec == ["?"] and batched[1]:
            ok = True  # W[i_t] for every step: W[I], one gather
    elif isinstance(op, scan.ReduceOp):
        if batched[0]:
            n = rank(op.operand.type)
            axes = list(op.axis.get_values()) if op.axis is not None else list(range(n))
            props["axis"] = DenseArrayBase.from_list(i64, [a + 1 for a in axes])
            ok = True
    elif isinstance(op, scan.TransposeOp):
        if batched[0]:
            perm = [0, *(p + 1 for p in op.perm.get_values())]
            props["perm"] = DenseArrayBase.from_list(i64, perm)
            ok = True
    elif isinstance(op, scan.ReshapeOp):
        ok = batched[0]
    elif isinstance(op, scan.ConcatOp | scan.StackOp):
        if all(batched):
            props["axis"] = IntegerAttr(op.axis.value.data + 1, i64)
            ok = True
    if not ok:
        return None
    leading = {o.type.get_shape()[0] for o, b in zip(operands, batched)
               if b and isinstance(o.type, TensorType)}
    rows = leading.pop() if len(leading) == 1 else DYNAMIC_INDEX
    return type(op).create(operands=list(operands),
                           result_types=[with_leading_dim(result_type, rows)],
                           properties=props, attributes=dict(op.attributes))


def remove_outputs(loop: scan.LoopOp, indices: set[int]) -> scan.LoopOp:
    """A loop without the yielded values (and results) at ``indices``, which must be unused
    outside. ``keep_last`` indices are renumbered."""
    yield_op = loop.block.last_op
    assert isinstance(yield_op, scan.YieldOp)
    kept = [k for k in range(len(loop.outs)) if k not in indices]
    new_yield = scan.YieldOp(*(yield_op.values[k] for k in kept), until=yield_op.until)
    Rewriter.replace_op(yield_op, new_yield)
    props = {}
    if loop.keep_last is not None:
        renumbered = [kept.index(k) for k in loop.keep_last.get_values() if k in kept]
        props["keep_last"] = DenseArrayBase.from_list(i64, renumbered)
    new_region = Region()
    loop.body.move_blocks(new_region)
    new = scan.LoopOp(list(loop.sequences), list(loop.inits), list(loop.non_seqs), new_region,
                      [loop.outs[k].type for k in kept], n_steps=loop.n_steps,
                      reverse=loop.reverse is not None)
    for key, value in props.items():
        new.properties[key] = value
    if loop.seq_offsets is not None:
        new.properties["seq_offsets"] = loop.seq_offsets
    for key, value in loop.attributes.items():
        new.attributes[key] = value
    results: list[SSAValue | None] = [None] * len(loop.outs)
    for j, k in enumerate(kept):
        results[k] = new.outs[j]
        new.outs[j].name_hint = loop.outs[k].name_hint
    for k in indices:
        assert not loop.outs[k].uses, "remove_outputs: the output is still used"
        results[k] = new.outs[0] if new.outs else None
    Rewriter.insert_op(new, InsertPoint.before(loop))
    for k in kept:
        loop.outs[k].replace_all_uses_with(results[k])
    Rewriter.erase_op(loop)
    return new
