"""``scan-push-out-seq``: compute work on sequence slices for all steps at once, before the loop.

An op of the body whose operands are the current sequence slices and invariants only does not
depend on the loop's state: it is computed once over whole sequences before the loop, and the
body reads step ``t`` of the result as a new sequence. Matmuls included: ``x_t @ W`` becomes one
GEMM over all ``T·B`` rows, ``(X @ W)[t]`` inside, where the plain loop runs T small ones. (Theano
and PyTensor push out elementwise ops only; PyTensor issue #2357 asks for this.)

Only ops that NumPy's semantics let us batch move: elementwise ops whose sequence operands have
the result's rank (invariants broadcast), ``x_t @ W`` with a 2-D invariant ``W``, constant
indexing, reductions, transposes and reshapes (their axes shift by one), concatenations of
sequence values, and ``W[i_t]`` lookups (one gather ``W[I]``).

Before::

    %hs = scan.loop seqs(%X : tensor<?x4x8xf32>) init(%h0 : ...) params(%W, %U : ...) ... {
    ^bb0(%x_t: tensor<4x8xf32>, %h: tensor<4x16xf32>, %W_1: ..., %U_1: ...):
      %xw = scan.matmul %x_t, %W_1 : ...
      %hu = scan.matmul %h, %U_1 : ...
      %h_new = scan.add %xw, %hu : ...

After::

    %xw = scan.matmul %X, %W : (tensor<?x4x8xf32>, tensor<8x16xf32>) -> tensor<?x4x16xf32>
    %hs = scan.loop seqs(%X, %xw : ...) init(%h0 : ...) params(%W, %U : ...) ... {
    ^bb0(%x_t: ..., %xw_1: tensor<4x16xf32>, %h: ..., %W_1: ..., %U_1: ...):
      %hu = scan.matmul %h, %U_1 : ...
      %h_new = scan.add %xw_1, %hu : ...

>>> from scanopt.transforms.testing import run_on_step
>>> import numpy as np
>>> def step(x_t, h, W, U):
...     return np.tanh(x_t @ W + h @ U)
>>> X, h0, W, U = np.ones((5, 4, 8)), np.zeros((4, 16)), np.ones((8, 16)), np.ones((16, 16))
>>> ir = run_on_step(step, ["scan-push-out-seq"], sequences=X, outputs_info=h0,
...                  non_sequences=[W, U])
>>> ir.index("scan.matmul %X") < ir.index("scan.loop")
True
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import arith
from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import Operation, SSAValue
from xdsl.passes import ModulePass

from scanopt.arguments import tap_base_name
from scanopt.dialects import scan
from scanopt.transforms.loop_utils import (
    batched_clone,
    erase_ops,
    insert_before,
    loops_in,
    rebuild_loop,
)
from scanopt.transforms.remarks import describe_type, expression_text, remark


def push_out_sequences(loop: scan.LoopOp, exact: bool = False) -> scan.LoopOp:
    whole: dict[SSAValue, SSAValue] = dict(zip(loop.seq_args, loop.sequences))
    # The row of the whole value that step 0 reads (Theano's taps read one sequence at several
    # offsets), and how many rows it has beyond the steps: an op runs over whole sequences only
    # if its operands are read at one offset and are as long.
    offset: dict[SSAValue, tuple[int, int | None]] = {
        arg: (o, scan.extra_rows(seq))
        for arg, seq, o in zip(loop.seq_args, loop.sequences, loop.offsets())}
    outer: dict[SSAValue, SSAValue] = dict(zip(loop.param_args, loop.non_seqs))
    constants: dict[SSAValue, Operation] = {}
    pushed: list[Operation] = []
    # The same op on the same whole values (``u[t-4] @ W`` and ``u[t] @ W`` on one sequence)
    # runs once; each tap reads it at its own offset.
    made: dict[tuple, SSAValue] = {}
    for op in list(loop.block.ops):
        if isinstance(op, arith.ConstantOp):
            constants[op.result] = op
            continue
        if isinstance(op, scan.YieldOp):
            continue
        if not all(o in whole or o in outer or o in constants for o in op.operands):
            continue
        batched = [o in whole for o in op.operands]
        if not any(batched):
            continue  # invariant: scan-licm's business
        offsets = {offset[o] for o, b in zip(op.operands, batched) if b}
        if len(offsets) != 1 or None in next(iter(offsets)):
            continue  # rows of one sequence at different taps: not one op over whole arrays
        for o in op.operands:
            if o in constants and o not in outer:
                copy = constants[o].clone()
                insert_before(copy, loop)
                outer[o] = copy.results[0]
        operands = [whole[o] if b else outer[o] for o, b in zip(op.operands, batched)]
        new = batched_clone(op, operands, batched, exact)
        if new is None:
            continue
        if op.results[0].name_hint is None:
            op.results[0].name_hint = _step_name(op, whole)
        key = (new.name, tuple(new.operands), tuple(sorted(
            (k, str(v)) for k, v in new.properties.items())))
        if key in made:
            whole[op.results[0]] = made[key]
            new.erase()
        else:
            insert_before(new, loop)
            new.results[0].name_hint = _whole_name(op.results[0].name_hint)
            whole[op.results[0]] = made[key] = new.results[0]
        offset[op.results[0]] = offsets.pop()
        pushed.append(op)
    if not pushed:
        return loop
    pushed_set = set(pushed)
    needed = [op.results[0] for op in pushed
              if any(use.operation not in pushed_set for use in op.results[0].uses)]
    n_seqs = len(loop.sequences)
    loop = rebuild_loop(loop, sequences=[whole[v] for v in needed],
                        offsets=[offset[v][0] for v in needed])
    for value, arg in zip(needed, list(loop.seq_args)[n_seqs:]):
        arg.name_hint = value.name_hint
        value.replace_uses_with_if(arg, lambda use: use.operation not in pushed_set)
    erase_ops(pushed)
    gemms: dict[Operation, list[Operation]] = {}  # one GEMM may serve several taps
    for op in pushed:
        if isinstance(op, scan.MatmulOp):
            gemms.setdefault(whole[op.results[0]].owner, []).append(op)
    for new, ops in gemms.items():
        lhs, rhs = new.operands
        remark("scan-push-out-seq",
               f"{', '.join(dict.fromkeys(expression_text(op) for op in ops))}: one "
               f"{describe_type(lhs.type)} @ {describe_type(rhs.type)} GEMM before the loop "
               "instead of one per step", ops)
    others = [op for op in pushed if not isinstance(op, scan.MatmulOp)]
    if others:
        remark("scan-push-out-seq",
               f"{len(others)} operation(s) on sequence slices computed for all steps before the "
               "loop", others)
    return loop


def _whole_name(hint: str | None) -> str | None:
    """The name of the value for all steps: ``xW_i_t`` → ``XW_i``, ``h`` → ``h_all``."""
    if not hint:
        return None
    if hint.endswith("_t") and hint[:1].islower():
        return hint[0].upper() + hint[1:-2]
    return f"{hint}_all"


def _step_name(op: Operation, whole: dict) -> str | None:
    """A name for an unnamed per-step value: ``x_t @ W_i`` → ``xW_i_t``; an elementwise op on
    one sequence value (``xW_t + b``) keeps that value's name."""
    if isinstance(op, scan.MatmulOp) and op.lhs.name_hint and op.rhs.name_hint:
        lhs = tap_base_name(op.lhs.name_hint)  # u_tm4 @ W and u_t @ W: one GEMM, U @ W
        return f"{lhs}{op.rhs.name_hint.removesuffix('_1')}_t"
    if isinstance(op, scan.ElementwiseOp):
        named = [o.name_hint for o in op.operands if o in whole and o.name_hint]
        if len(named) == 1 and named[0].endswith("_t"):
            return named[0]
    return None


@dataclass(frozen=True)
class ScanPushOutSeqPass(ModulePass):
    name = "scan-push-out-seq"
    # Only what computes bit-for-bit the same numbers (no batched GEMMs or sums): exact_random.
    exact: bool = False

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for loop in loops_in(op):
            push_out_sequences(loop, self.exact)
