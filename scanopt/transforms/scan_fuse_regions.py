"""``scan-fuse-regions``: each step's elementwise chains, with the matmuls on the carry that feed
them, become ``fused.region`` ops that a backend runs as one unit.

Fusion is decided here, on the IR, once for every target; backends lower the regions. A region
is a maximal run of consecutive ops of a loop body that all are

- elementwise (every ``scan`` ufunc op, ``where``, ``clip``, ``astype``), static slices and
  integer indices (no index read from a sequence), transposes, constants;
- or a matmul whose right operand is the same in every step (``h @ U_all``, ``v @ W``: a
  kernel can compute it with the carry staged once per step) and whose left operand is not;

on arrays of rank 2 at most with static shapes and a real or integer dtype. Anything else (a
reduction, a random draw, a concatenation, an index read from a sequence) ends a region and
stays outside it. The CuPy backend turns each region into one generated kernel per step; the
NumPy backend does not run this pass.

Before::

    %hs = scan.loop ... {
    ^bb0(%xW_t: tensor<4x8xf32>, %h: tensor<4x8xf32>, %U_1: tensor<8x8xf32>):
      %0 = scan.matmul %h, %U_1 : (tensor<4x8xf32>, tensor<8x8xf32>) -> tensor<4x8xf32>
      %1 = scan.add %xW_t, %0 : ...
      %2 = scan.tanh %1 : ...
      scan.yield %2 : tensor<4x8xf32>
    }

After::

    %hs = scan.loop ... {
    ^bb0(%xW_t: tensor<4x8xf32>, %h: tensor<4x8xf32>, %U_1: tensor<8x8xf32>):
      %2 = fused.region ins(%xW_t, %h, %U_1 : ...) -> tensor<4x8xf32> {
      ^bb0(%xW_t_1: tensor<4x8xf32>, %h_1: tensor<4x8xf32>, %U_2: tensor<8x8xf32>):
        %0 = scan.matmul %h_1, %U_2 : ...
        %1 = scan.add %xW_t_1, %0 : ...
        %3 = scan.tanh %1 : ...
        fused.yield %3 : tensor<4x8xf32>
      }
      scan.yield %2 : tensor<4x8xf32>
    }

>>> from scanopt.transforms.testing import run_on_step
>>> import numpy as np
>>> def step(x_t, h, W, U, b):
...     return np.tanh(x_t @ W + h @ U + b)
>>> ir = run_on_step(step, ["scan-push-out-seq", "scan-fuse-regions"],
...                  sequences=np.ones((5, 4, 6)), outputs_info=np.zeros((4, 8)),
...                  non_sequences=[np.ones((6, 8)), np.eye(8), np.zeros(8)])
>>> ir.count("fused.region"), ir.index("fused.region") < ir.index("scan.tanh")
(1, True)
"""

from __future__ import annotations

from xdsl.context import Context
from xdsl.dialects import arith
from xdsl.dialects.builtin import IntegerType, ModuleOp, TensorType, f32, f64
from xdsl.ir import Block, Operation, Region, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import InsertPoint, Rewriter

from scanopt.dialects import fused, scan
from scanopt.transforms.loop_utils import INVARIANT, loops_in, stages
from scanopt.transforms.remarks import expression_text, remark, source_text

_VIEWS = (arith.ConstantOp, scan.IndexOp, scan.TransposeOp)
_ELEMENTWISE = (scan.ElementwiseOp, scan.WhereOp, scan.ClipOp, scan.CastOp, scan.TransposeOp)


def _supported_type(t) -> bool:
    """A static array of rank 2 at most with a real or integer dtype, or a Python scalar."""
    if isinstance(t, TensorType):
        element = t.get_element_type()
        shape = t.get_shape()
        return len(shape) <= 2 and all(d >= 0 for d in shape) and (
            element in (f32, f64) or isinstance(element, IntegerType))
    return t == f64 or isinstance(t, IntegerType)  # a Python float, int or bool


def static_index_spec(op: scan.IndexOp) -> list[str] | None:
    """The entries of an index with constant parts only (ints, slices, ``...``, ``None``)."""
    if op.indices:
        return None
    spec = [s.data for s in op.spec.data]
    for entry in spec:
        if entry in ("...", "None"):
            continue
        parts = entry.split(":")
        if len(parts) > 3 or not all(p == "" or p.lstrip("-").isdigit() for p in parts):
            return None
        if len(parts) == 3 and parts[2] == "0":
            return None
    return spec


def fusible(op: Operation, stage: dict[SSAValue, int], members: set[Operation]) -> bool:
    """Whether ``op`` may join the run of ``members`` (see the module docstring)."""
    if isinstance(op, arith.ConstantOp):
        return _supported_type(op.result.type)
    if len(op.results) != 1 or not isinstance(op.results[0].type, TensorType):
        return False
    if not all(_supported_type(v.type) for v in (*op.operands, op.results[0])):
        return False
    if isinstance(op, _ELEMENTWISE):
        return True
    if isinstance(op, scan.IndexOp):
        return static_index_spec(op) is not None
    if isinstance(op, scan.MatmulOp):
        lhs, rhs = op.lhs.type, op.rhs.type
        return len(lhs.get_shape()) in (1, 2) and len(rhs.get_shape()) == 2 and \
            stage.get(op.rhs, INVARIANT) == INVARIANT and op.rhs.owner not in members and \
            stage.get(op.lhs, INVARIANT) != INVARIANT
    return False


def _runs(loop: scan.LoopOp) -> list[list[Operation]]:
    """Maximal runs of consecutive fusible ops of the loop body (constants included)."""
    stage = stages(loop)
    runs: list[list[Operation]] = []
    current: list[Operation] = []
    members: set[Operation] = set()
    for op in loop.block.ops:
        if not isinstance(op, scan.YieldOp) and fusible(op, stage, members):
            current.append(op)
            members.add(op)
            continue
        runs.append(current)
        current, members = [], set()
    runs.append(current)
    # A region worth a kernel computes something: not only constants, slices and transposes.
    return [run for run in runs if any(not isinstance(op, _VIEWS) for op in run)]


def fuse_run(run: list[Operation]) -> fused.RegionOp:
    """Replace the ops of ``run`` (consecutive in one block) by one ``fused.region``."""
    members = [op for op in run if not isinstance(op, arith.ConstantOp)]
    inside = set(members)
    inputs: list[SSAValue] = []
    constants: list[arith.ConstantOp] = []
    for op in members:
        for operand in op.operands:
            if operand.owner in inside or operand in inputs:
                continue
            if isinstance(operand.owner, arith.ConstantOp):
                if operand.owner not in constants:
                    constants.append(operand.owner)
                continue
            inputs.append(operand)
    outputs = [result for op in members for result in op.results
               if any(use.operation not in inside for use in result.uses)]
    block = Block(arg_types=[v.type for v in inputs])
    for value, arg in zip(inputs, block.args):
        arg.name_hint = value.name_hint
    region = fused.RegionOp(inputs, Region(), [v.type for v in outputs])
    Rewriter.insert_op(region, InsertPoint.before(members[0]))
    for value, result in zip(outputs, region.outs):
        result.name_hint = value.name_hint
        for use in list(value.uses):
            if use.operation not in inside:
                use.operation.operands[use.index] = result
    mapping: dict[SSAValue, SSAValue] = dict(zip(inputs, block.args))
    for constant in constants:
        copy = constant.clone()
        copy.result.name_hint = constant.result.name_hint
        block.add_op(copy)
        mapping[constant.result] = copy.result
    for op in members:
        for k, operand in enumerate(op.operands):
            if operand in mapping:
                op.operands[k] = mapping[operand]
        op.detach()
        block.add_op(op)
    block.add_op(fused.YieldOp(*outputs))
    region.body.add_block(block)
    for constant in constants:
        if not constant.result.uses and constant.parent is not None:
            Rewriter.erase_op(constant)
    return region


def _describe(region: fused.RegionOp) -> str:
    ops = [op for op in region.block.ops if not isinstance(op, arith.ConstantOp | fused.YieldOp)]
    matmuls = [op for op in ops if isinstance(op, scan.MatmulOp)]
    text = f"{len(ops)} op(s) of the step fused into one region"
    if matmuls:
        names = ", ".join(f"`{expression_text(op)}`" for op in matmuls)
        text += f", with {len(matmuls)} matmul(s) on the loop state computed inside it ({names})"
    return text + ": a backend runs it as one unit (one CUDA kernel per step with backend=\"cupy\")"


class ScanFuseRegionsPass(ModulePass):
    """Group each loop body's fusible runs into ``fused.region`` ops."""

    name = "scan-fuse-regions"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for loop in loops_in(op):
            fused_ops: set[Operation] = set()
            for run in _runs(loop):
                fused_ops.update(run)
                region = fuse_run(run)
                remark(self.name, _describe(region),
                       [o for o in region.block.ops if "loc" in o.attributes])
            for other in loop.block.ops:
                if other in fused_ops or isinstance(
                        other, fused.RegionOp | scan.YieldOp | arith.ConstantOp):
                    continue
                remark(self.name, f"`{source_text(other)}` stays outside the fused regions "
                       f"({other.name.removeprefix('scan.')} is not fused)", [other])
