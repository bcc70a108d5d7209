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
from xdsl.dialects.builtin import DYNAMIC_INDEX, TensorType
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


def with_leading_dim(t: Attribute) -> TensorType:
    """``tensor<16x128xf32>`` → ``tensor<?x16x128xf32>`` (weak scalars become rank-1 tensors)."""
    if isinstance(t, TensorType):
        return TensorType(t.get_element_type(), [DYNAMIC_INDEX, *t.get_shape()])
    return TensorType(t, [DYNAMIC_INDEX])


def without_leading_dim(t: TensorType) -> TensorType:
    return TensorType(t.get_element_type(), list(t.get_shape())[1:])


def rank(t: Attribute) -> int:
    return len(t.get_shape()) if isinstance(t, TensorType) else 0


def rebuild_loop(loop: scan.LoopOp, *, sequences: Sequence[SSAValue] = (),
                 non_seqs: Sequence[SSAValue] = (), out_types: Sequence[Attribute] | None = None,
                 properties: dict | None = None) -> scan.LoopOp:
    """Replace ``loop`` with one that has extra sequences/non-sequences (block arguments added
    for them, appended to their group) and moves the body over. Returns the new loop."""
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
    for key in loop.properties:
        if key not in ("reverse", "operandSegmentSizes") and key not in new.properties:
            new.properties[key] = loop.properties[key]
    for key, value in loop.attributes.items():
        new.attributes[key] = value
    for old_res, new_res in zip(loop.outs, new.outs):
        new_res.name_hint = old_res.name_hint
    Rewriter.replace_op(loop, new, new_results=list(new.outs)[: len(loop.outs)] if
                        out_types is None else None)
    return new


def new_block_args(loop: scan.LoopOp, first_new_seq: int, n_new_seqs: int,
                   first_new_param: int) -> tuple[list[SSAValue], list[SSAValue]]:
    seqs = list(loop.seq_args)[first_new_seq : first_new_seq + n_new_seqs]
    params = list(loop.param_args)[first_new_param:]
    return seqs, params


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
