"""``scan-sink-outputs``: per-step outputs that are not fed back are computed after the loop,
for all steps at once, from the stacked history they are made of.

A per-step output ``y_t = f(h_t)`` (``outputs_info=[h0, None]``) whose computation reads only
values the loop stacks anyway (fed-back outputs) and invariants does not need to run inside the
loop: ``Y = f(H)`` after the loop is one batched op — ``h_t @ W_out`` becomes one GEMM over all
``T·B`` rows. Outputs kept with ``keep="last"`` stay in the loop.

Before::

    %hs, %ys = scan.loop ... {
      %h_new = ...
      %y = scan.matmul %h_new, %W_out_1 : (tensor<4x16xf32>, tensor<16x3xf32>) -> tensor<4x3xf32>
      scan.yield %h_new, %y : ...
    }

After::

    %hs = scan.loop ... {
      %h_new = ...
      scan.yield %h_new : ...
    }
    %ys = scan.matmul %hs, %W_out : (tensor<?x4x16xf32>, tensor<16x3xf32>) -> tensor<?x4x3xf32>

>>> from scanopt.transforms.testing import run_on_step
>>> import numpy as np
>>> def step(x_t, h, W, W_out):
...     h = np.tanh(x_t + h @ W)
...     return h, h @ W_out
>>> ir = run_on_step(step, ["scan-sink-outputs"], sequences=np.ones((5, 4, 16)),
...                  outputs_info=[np.zeros((4, 16)), None],
...                  non_sequences=[np.eye(16), np.ones((16, 3))])
>>> ir.rindex("scan.matmul") > ir.index("scan.yield")
True
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import arith
from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import InsertPoint, Rewriter

from scanopt.dialects import scan
from scanopt.transforms.loop_utils import batched_clone, erase_ops, is_pure, loops_in, remove_outputs
from scanopt.transforms.remarks import remark, source_text


def _subtree(value: SSAValue, loop: scan.LoopOp, histories: dict, params: dict,
             ops: list[Operation]) -> bool:
    """Collect, in ``ops``, the body ops computing ``value`` from histories and invariants."""
    if value in histories or value in params:
        return True
    owner = value.owner
    if isinstance(owner, arith.ConstantOp):
        return True
    if not isinstance(owner, Operation) or owner.parent_block() is not loop.block or \
            not is_pure(owner) or isinstance(owner, scan.YieldOp):
        return False
    if owner in ops:
        return True
    for operand in owner.operands:
        if not _subtree(operand, loop, histories, params, ops):
            return False
    ops.append(owner)
    return True


def sink_outputs(loop: scan.LoopOp, exact: bool = False) -> scan.LoopOp:
    yield_op = loop.block.last_op
    assert isinstance(yield_op, scan.YieldOp)
    # Outputs kept with keep="last" (already O(1), or still a scan.last of the history) stay:
    # sinking would need their whole history.
    last = set(loop.last_indices()) | {
        k for k, result in enumerate(loop.outs)
        if any(isinstance(use.operation, scan.LastOp) for use in result.uses)}
    histories: dict[SSAValue, SSAValue] = {}
    for k, value in enumerate(yield_op.values):
        if k not in last and value not in histories:
            histories[value] = loop.outs[k]
    params = dict(zip(loop.param_args, loop.non_seqs))
    sunk: dict[int, SSAValue] = {}
    dead: list[Operation] = []
    for k in range(len(loop.inits), len(yield_op.values)):
        y = yield_op.values[k]
        if k in last or histories.get(y) is not loop.outs[k] or list(y.uses) != [
                u for u in y.uses if u.operation is yield_op]:
            continue
        if sum(1 for v in yield_op.values if v is y) > 1:
            continue  # returned twice (`return y, y`): it stays in the loop for both
        ops: list[Operation] = []
        histories.pop(y)
        found = _subtree(y, loop, histories, params, ops)
        histories[y] = loop.outs[k]
        if not found or not ops:
            continue
        op_set = set(ops)
        if any(use.operation not in op_set and not (use.operation is yield_op and res is y)
               for op in ops for res in op.results for use in res.uses):
            continue  # some value is needed inside the loop too
        outside: dict[SSAValue, SSAValue] = {}
        batched: set[SSAValue] = set()
        created: list[Operation] = []
        anchor: Operation = loop
        for op in ops:
            operands, flags = [], []
            for operand in op.operands:
                if operand in outside:
                    operands.append(outside[operand])
                    flags.append(operand in batched)
                elif operand in histories:
                    operands.append(histories[operand])
                    flags.append(True)
                elif operand in params:
                    operands.append(params[operand])
                    flags.append(False)
                else:  # a constant
                    copy = operand.owner.clone()
                    Rewriter.insert_op(copy, InsertPoint.after(anchor))
                    anchor = copy
                    created.append(copy)
                    operands.append(copy.results[0])
                    flags.append(False)
            new = batched_clone(op, operands, flags, exact) if any(flags) else None
            if new is None:
                break
            Rewriter.insert_op(new, InsertPoint.after(anchor))
            anchor = new
            created.append(new)
            outside[op.results[0]] = new.results[0]
            if any(flags):
                batched.add(op.results[0])
        else:
            result = outside[y]
            result.name_hint = loop.outs[k].name_hint
            loop.outs[k].replace_all_uses_with(result)
            sunk[k] = result
            dead.extend(ops)
            remark("scan-sink-outputs",
                   "; ".join(dict.fromkeys(source_text(op) for op in ops))
                   + ": computed after the loop for all steps at once", ops)
            continue
        erase_ops(created)
    if not sunk:
        return loop
    loop = remove_outputs(loop, set(sunk))
    erase_ops(sorted(dead, key=lambda op: loop.block.get_operation_index(op)))
    return loop


@dataclass(frozen=True)
class ScanSinkOutputsPass(ModulePass):
    name = "scan-sink-outputs"
    # Only what computes bit-for-bit the same numbers (no batched GEMMs or sums): exact_random.
    exact: bool = False

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for loop in loops_in(op):
            sink_outputs(loop, self.exact)
