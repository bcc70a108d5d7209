"""``scan-fast-random``: cheaper random draws when bit-for-bit equality with the plain loop is not
asked for (the default; ``exact_random=True`` turns this pass off).

1. ``rng.binomial(1, p)`` becomes ``rng.random(size=p.shape, dtype=p.dtype) < p``: the same
   distribution, without NumPy's general binomial sampler (and, for float32 ``p``, with float32
   uniforms).
2. When ``p`` is written as a sigmoid, ``1 / (1 + exp(-z))``, the draw becomes ``z > noise`` with
   standard logistic noise: the same Bernoulli(sigmoid(z)) sample, without the sigmoid's four
   array operations in the step (the noise is made from uniforms, a chunk at a time).
3. Draws that do not depend on the loop's state (all their parameters are invariant, as the
   uniforms of step 1 always are) are made for many steps at once before the steps that use them:
   the body reads step ``t`` as a sequence. The emitter draws in chunks of steps so that the
   pre-drawn numbers stay under 64 MiB whatever ``n_steps`` is.

Results are reproducible for a given seed, but not equal to the plain loop's stream.

Before::

    %h = scan.random %rng_1, %one, %hmean {method = "binomial"} : (...) -> tensor<500xi64>

After::

    %u = scan.random %rng, %n_steps {method = "random", size = array<i64: 500>} : (...)
         -> tensor<?x500xf32>
    ... scan.loop seqs(%u : ...) ... {
    ^bb0(%u_t: tensor<500xf32>, ...):
      %below = scan.lt %u_t, %hmean : ... -> tensor<500xi1>
      %h = scan.cast %below : (tensor<500xi1>) -> tensor<500xi64>

>>> from scanopt.transforms.testing import run_on_step
>>> import numpy as np
>>> def step(v, W, rng):
...     p = 1 / (1 + np.exp(-(v @ W)))
...     return rng.binomial(1, p).astype(v.dtype)
>>> ir = run_on_step(step, ["scan-fast-random"], outputs_info=np.zeros(4, np.float32),
...                  non_sequences=[np.eye(4, dtype=np.float32), np.random.default_rng(0)],
...                  n_steps=3)
>>> "binomial" in ir, ir.index('method = "logistic"') < ir.index("scan.loop")
(False, True)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xdsl.context import Context
from xdsl.dialects import arith
from xdsl.dialects.builtin import IntegerAttr, ModuleOp, StringAttr, TensorType, i1
from xdsl.ir import Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import Rewriter

from scanopt.dialects import scan
from scanopt.dialects.types import aval_of
from scanopt.transforms.loop_utils import (
    INVARIANT,
    copy_loc,
    erase_ops,
    insert_before,
    loops_in,
    rebuild_loop,
    stages,
    with_leading_dim,
)
from scanopt.transforms.remarks import remark, source_text


def _is_one(value: SSAValue) -> bool:
    owner = value.owner
    return isinstance(owner, arith.ConstantOp) and isinstance(owner.value, IntegerAttr) and \
        owner.value.value.data == 1 and owner.value.type != i1


def binomial_to_compare(loop: scan.LoopOp) -> int:
    count = 0
    for op in list(loop.block.ops):
        if not isinstance(op, scan.RandomOp) or op.method.data != "binomial" or op.steps:
            continue
        n, p = op.params
        p_type = p.type
        if not _is_one(n) or not isinstance(p_type, TensorType) or not p_type.get_shape():
            continue
        if aval_of(p_type).dtype.kind != "f" or op.result.type.get_shape() != p_type.get_shape():
            continue
        shape = list(p_type.get_shape())
        uniform = copy_loc(scan.RandomOp("random", op.rng, [], shape, p_type), op)
        uniform.result.name_hint = "u"
        below = copy_loc(scan.LtOp(uniform.result, p, TensorType(i1, shape)), op)
        cast = copy_loc(scan.CastOp(below.result, op.result.type), op)
        for new in (uniform, below, cast):
            insert_before(new, op)
        cast.result.name_hint = op.result.name_hint
        op.result.replace_all_uses_with(cast.result)
        Rewriter.erase_op(op)
        _skip_double_cast(cast)
        count += 1
        remark("scan-fast-random", f"{source_text(op)}: binomial(1, p) drawn as "
                                   "random() < p", [op])
    return count


def _skip_double_cast(cast: scan.CastOp) -> None:
    """``bool → int64 → float32`` casts give the same 0/1 as ``bool → float32``."""
    for use in list(cast.result.uses):
        user = use.operation
        if isinstance(user, scan.CastOp):
            user.operands[0] = cast.operand
    if not cast.result.uses:
        Rewriter.erase_op(cast)


# Pre-drawing saves the per-call cost of small draws; a step's draw bigger than this gains
# nothing from it and would only make the pre-drawn chunk fall out of cache.
PREDRAW_MAX_STEP_BYTES = 64 * 1024


def _bytes_per_step(op: scan.RandomOp) -> int:
    aval = aval_of(op.result.type)
    return int(np.prod(aval.shape)) * aval.dtype.itemsize


def _sigmoid_argument(p: SSAValue) -> SSAValue | None:
    """``z`` when ``p`` is ``1 / (1 + exp(-z))``, the way users write a sigmoid."""
    div = p.owner
    if not isinstance(div, scan.DivOp) or not _is_one_constant(div.lhs):
        return None
    add = div.rhs.owner
    if not isinstance(add, scan.AddOp):
        return None
    one, exp_value = (add.lhs, add.rhs) if _is_one_constant(add.lhs) else (add.rhs, add.lhs)
    if not _is_one_constant(one) or not isinstance(exp_value.owner, scan.ExpOp):
        return None
    neg = exp_value.owner.operand.owner
    if not isinstance(neg, scan.NegOp) or neg.operand.type != p.type:
        return None
    return neg.operand


def _is_one_constant(value: SSAValue) -> bool:
    owner = value.owner
    return isinstance(owner, arith.ConstantOp) and owner.value.type != i1 and \
        float(owner.value.value.data) == 1.0


def logistic_threshold(loop: scan.LoopOp, max_step_bytes: int = PREDRAW_MAX_STEP_BYTES) -> int:
    """``random() < sigmoid(z)`` → ``z > logistic noise``: the same Bernoulli(sigmoid(z)) draw
    without computing the sigmoid in the step (the noise is pre-drawn with the uniforms)."""
    count = 0
    for op in list(loop.block.ops):
        if not isinstance(op, scan.RandomOp) or op.method.data != "random" or op.steps or \
                _bytes_per_step(op) > max_step_bytes:
            continue
        uses = list(op.result.uses)
        if len(uses) != 1 or not isinstance(uses[0].operation, scan.LtOp) or uses[0].index != 0:
            continue
        below = uses[0].operation
        z = _sigmoid_argument(below.rhs)
        if z is None or z.type != op.result.type:
            continue
        above = copy_loc(scan.GtOp(z, op.result, below.result.type), below)
        insert_before(above, below)
        below.result.replace_all_uses_with(above.result)
        Rewriter.erase_op(below)
        op.properties["method"] = StringAttr("logistic")
        op.result.name_hint = "noise"
        count += 1
        remark("scan-fast-random", "binomial(1, sigmoid(z)) drawn as z > logistic noise: no "
                                   "sigmoid in the step", [below])
    return count


def predraw(loop: scan.LoopOp, max_step_bytes: int = PREDRAW_MAX_STEP_BYTES) -> scan.LoopOp:
    stage = stages(loop)
    outer = dict(zip(loop.param_args, loop.non_seqs))
    moved: list[Operation] = []
    new_seqs: list[SSAValue] = []
    for op in list(loop.block.ops):
        if not isinstance(op, scan.RandomOp) or op.steps or op.rng not in outer:
            continue
        if not isinstance(op.result.type, TensorType) or not op.result.type.get_shape():
            continue
        if any(stage.get(p) != INVARIANT for p in op.params):
            continue
        if _bytes_per_step(op) > max_step_bytes:
            continue  # one call per step is cheap next to the numbers drawn
        params = []
        for p in op.params:
            if p in outer:
                params.append(outer[p])
            elif isinstance(p.owner, arith.ConstantOp):
                copy = p.owner.clone()
                insert_before(copy, loop)
                params.append(copy.result)
            else:
                break
        else:
            size = list(op.size.get_values()) if op.size is not None else \
                list(op.result.type.get_shape())
            draws = copy_loc(scan.RandomOp(op.method.data, outer[op.rng], params, size,
                                           with_leading_dim(op.result.type), steps=loop.n_steps),
                             op)
            draws.result.name_hint = f"{op.result.name_hint or 'draw'}_steps"
            insert_before(draws, loop)
            new_seqs.append(draws.result)
            moved.append(op)
    if not moved:
        return loop
    n_seqs = len(loop.sequences)
    loop = rebuild_loop(loop, sequences=new_seqs)
    for op, arg in zip(moved, list(loop.seq_args)[n_seqs:]):
        arg.name_hint = f"{op.result.name_hint or 'draw'}_t"
        op.result.replace_all_uses_with(arg)
    erase_ops(moved)
    remark("scan-fast-random", f"{len(moved)} draw(s) that do not depend on the loop state made "
                               "for many steps at once, in chunks under 64 MiB", moved)
    return loop


@dataclass(frozen=True)
class ScanFastRandomPass(ModulePass):
    name = "scan-fast-random"
    # Draws of more bytes per step stay in the step (NumPy: one call per step is cheap next to
    # the numbers drawn). The CuPy backend pre-draws them all: a draw in the step splits the
    # step's kernel and keeps the loop out of a CUDA graph.
    max_step_bytes: int = PREDRAW_MAX_STEP_BYTES

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        limit = int(self.max_step_bytes)
        for loop in loops_in(op):
            binomial_to_compare(loop)
            logistic_threshold(loop, limit)
        for loop in loops_in(op):
            if not isinstance(loop.parent_op(), scan.LoopOp):  # nested loops draw as they go
                predraw(loop, limit)
