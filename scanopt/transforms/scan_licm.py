"""``scan-licm``: move work that is the same in every step out of the loop.

An op of the loop body whose operands are all non-sequences or constants (a transpose ``W.T``,
a sum of biases, a weight concatenation made by ``scan-fuse-matmul``) is computed once before
the loop and enters it as a new non-sequence. Constants stay where they are (they cost nothing).
Random draws never move: each step draws anew.

Before::

    %hs = scan.loop init(%h0 : tensor<4xf32>) params(%W : tensor<4x4xf32>) steps %n -> ... {
    ^bb0(%h: tensor<4xf32>, %W_1: tensor<4x4xf32>):
      %WT = scan.transpose %W_1 {perm = array<i64: 1, 0>} : ...
      %h_new = scan.matmul %h, %WT : ...
      scan.yield %h_new : tensor<4xf32>
    }

After::

    %WT = scan.transpose %W {perm = array<i64: 1, 0>} : ...
    %hs = scan.loop init(%h0 : ...) params(%W, %WT : ...) steps %n -> ... {
    ^bb0(%h: tensor<4xf32>, %W_1: tensor<4x4xf32>, %WT_1: tensor<4x4xf32>):
      %h_new = scan.matmul %h, %WT_1 : ...
      scan.yield %h_new : tensor<4xf32>
    }

>>> from scanopt.transforms.testing import run_on_step
>>> import numpy as np
>>> def step(h, W):
...     return h @ W.T
>>> ir = run_on_step(step, ["scan-licm"], outputs_info=np.zeros(4), non_sequences=np.eye(4))
>>> ir.index("scan.transpose") < ir.index("scan.loop")
True
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import arith
from xdsl.dialects.builtin import ModuleOp, UnitAttr
from xdsl.ir import Operation, SSAValue
from xdsl.passes import ModulePass

from scanopt.dialects import scan
from scanopt.transforms.loop_utils import erase_ops, insert_before, is_pure, loops_in, rebuild_loop
from scanopt.transforms.remarks import describe_op, remark


def hoist_invariants(loop: scan.LoopOp, exact: bool = False) -> scan.LoopOp:
    outer: dict[SSAValue, SSAValue] = dict(zip(loop.param_args, loop.non_seqs))
    constants: dict[SSAValue, Operation] = {}
    hoisted: list[Operation] = []
    for op in list(loop.block.ops):
        if isinstance(op, arith.ConstantOp):
            constants[op.result] = op
            continue
        if isinstance(op, scan.YieldOp) or not is_pure(op):
            continue
        if not all(o in outer or o in constants for o in op.operands):
            continue
        for o in op.operands:
            if o not in outer:  # a constant: give the hoisted op its own copy
                copy = constants[o].clone()
                insert_before(copy, loop)
                outer[o] = copy.results[0]
        clone = op.clone(value_mapper=dict(outer))
        if isinstance(clone, scan.TransposeOp):
            if not exact and len(clone.perm.get_values()) >= 2:
                # copied once, so that every step's matmul reads it in memory order (a 0-d or
                # 1-d transpose is the array itself: np.ascontiguousarray would make 0-d 1-d)
                clone.attributes["contiguous"] = UnitAttr()
            source = clone.operands[0].name_hint
            if op.results[0].name_hint is None and source:
                op.results[0].name_hint = f"{source}_T"
        insert_before(clone, loop)
        for res, new in zip(op.results, clone.results):
            new.name_hint = res.name_hint
            outer[res] = new
        hoisted.append(op)
    if not hoisted:
        return loop
    hoisted_set = set(hoisted)
    # Results still read by ops that stay in the loop enter it as new non-sequences.
    needed = [res for op in hoisted for res in op.results
              if any(use.operation not in hoisted_set for use in res.uses)]
    n_params = len(loop.non_seqs)
    loop = rebuild_loop(loop, non_seqs=[outer[res] for res in needed])
    for res, arg in zip(needed, list(loop.param_args)[n_params:]):
        arg.name_hint = res.name_hint
        res.replace_uses_with_if(arg, lambda use: use.operation not in hoisted_set)
    erase_ops(hoisted)
    remark("scan-licm",
           "computed once before the loop (the same in every step): "
           + ", ".join(describe_op(op) for op in hoisted), hoisted)
    return loop


@dataclass(frozen=True)
class ScanLICMPass(ModulePass):
    name = "scan-licm"
    # Keep transposes as views, as the step has them: a copy may change the GEMM kernel and so
    # the rounding (exact_random=True promises the plain loop's numbers bit for bit).
    exact: bool = False

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for loop in loops_in(op):
            hoist_invariants(loop, self.exact)
