"""``scan-save-mem``: outputs kept with ``keep="last"`` store O(1), not O(n_steps).

The frontend expresses ``keep="last"`` as ``scan.last`` of the output's stacked history. When
that is the history's only use, the loop keeps just the final value of the output instead
(Theano's ScanSaveMem): a carry is already held from step to step, and a per-step output needs
one variable. The result's type loses its leading ``?`` dimension and its index is listed in the
loop's ``keep_last`` property.

Before::

    %hs = scan.loop init(%h0 : tensor<4xf32>) steps %n -> tensor<?x4xf32> { ... }
    %h_last = scan.last %hs, %h0 : (tensor<?x4xf32>, tensor<4xf32>) -> tensor<4xf32>

After::

    %h_last = scan.loop init(%h0 : tensor<4xf32>) steps %n -> tensor<4xf32> { ... }
        {keep_last = array<i64: 0>}

>>> from scanopt.transforms.testing import run_on_step
>>> import numpy as np
>>> def step(h):
...     return h * 0.5
>>> ir = run_on_step(step, ["scan-save-mem"], outputs_info=np.ones(4), n_steps=3, keep="last")
>>> "keep_last = array<i64: 0>" in ir and "scan.last" not in ir
True
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import DenseArrayBase, ModuleOp, TensorType, i64
from xdsl.passes import ModulePass
from xdsl.rewriter import Rewriter

from scanopt.dialects import scan
from scanopt.transforms.loop_utils import loops_in, rebuild_loop
from scanopt.transforms.remarks import remark


def save_memory(loop: scan.LoopOp) -> scan.LoopOp:
    yielded = loop.block.last_op
    assert isinstance(yielded, scan.YieldOp)
    already = set(loop.last_indices())
    lasts: dict[int, scan.LastOp] = {}
    for k, result in enumerate(loop.outs):
        uses = list(result.uses)
        if k not in already and len(uses) == 1 and isinstance(uses[0].operation, scan.LastOp):
            lasts[k] = uses[0].operation
    if not lasts:
        return loop
    out_types = []
    for k, result in enumerate(loop.outs):
        if k in lasts:
            value_type = yielded.values[k].type
            out_types.append(value_type if isinstance(value_type, TensorType)
                             else TensorType(value_type, []))
        else:
            out_types.append(result.type)
    indices = sorted(already | set(lasts))
    new = rebuild_loop(loop, out_types=out_types,
                       properties={"keep_last": DenseArrayBase.from_list(i64, indices)})
    for k, res in enumerate(new.outs):
        if k in lasts:
            last = lasts[k]
            res.name_hint = last.result.name_hint
            if last.result.type != res.type:  # a weak scalar output: keep the op's type
                continue
            last.result.replace_all_uses_with(res)
            Rewriter.erase_op(last)
    names = ", ".join(f"#{k}" for k in sorted(lasts))
    remark("scan-save-mem", f"output {names} kept with keep=\"last\": O(1) storage instead of "
                            "one slot per step", [])
    return new


@dataclass(frozen=True)
class ScanSaveMemPass(ModulePass):
    name = "scan-save-mem"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for loop in loops_in(op):
            save_memory(loop)
