"""``scan-fuse-matmul``: matmuls that share an operand become one, and sums are reordered so that
the work scan-push-out-seq can move grows.

1. **Fusion.** Matmuls in a loop body with the same left operand and invariant 2-D right
   operands (``h @ U_i, h @ U_f, h @ U_o, h @ U_c``) become one matmul on the concatenated
   weights, ``h @ concat(U_i, U_f, U_o, U_c)``, followed by one column slice per original
   matmul. The concatenation depends only on non-sequences, so scan-licm hoists it. Theano's
   documentation calls this "an optimization that Theano cannot perform".
2. **Reassociation.** A sum such as ``(x_t @ W + h @ U) + b`` is regrouped by stage — invariant
   and sequence terms first, carried terms last — as ``(x_t @ W + b) + h @ U``, so the bias joins
   the part computed for all steps before the loop. Only float sums whose terms all have the
   result's dtype are regrouped (no change of type promotion); the results then agree with the
   plain loop to float rounding.

Before::

    %a = scan.matmul %h, %U_i : (tensor<4x16xf32>, tensor<16x16xf32>) -> tensor<4x16xf32>
    %b = scan.matmul %h, %U_f : (tensor<4x16xf32>, tensor<16x16xf32>) -> tensor<4x16xf32>

After::

    %U = scan.concat %U_i, %U_f {axis = 1 : i64} : (...) -> tensor<16x32xf32>
    %hU = scan.matmul %h, %U : (tensor<4x16xf32>, tensor<16x32xf32>) -> tensor<4x32xf32>
    %a = scan.index %hU {spec = ["...", "0:16"]} : (tensor<4x32xf32>) -> tensor<4x16xf32>
    %b = scan.index %hU {spec = ["...", "16:32"]} : (tensor<4x32xf32>) -> tensor<4x16xf32>

>>> from scanopt.transforms.testing import run_on_step
>>> import numpy as np
>>> def step(h, U_i, U_f):
...     return np.tanh(h @ U_i) * (h @ U_f)
>>> ir = run_on_step(step, ["scan-fuse-matmul"], outputs_info=np.zeros((4, 16)),
...                  non_sequences=[np.eye(16), np.eye(16)], n_steps=2)
>>> ir.count("scan.matmul")
1
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp, TensorType
from xdsl.ir import Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import Rewriter

from scanopt.dialects import scan
from scanopt.dialects.types import aval_of
from scanopt.transforms.loop_utils import (
    INVARIANT,
    copy_loc,
    insert_before,
    loops_in,
    rank,
    stages,
)
from scanopt.transforms.remarks import (
    describe_type,
    expression_text,
    remark,
    source_text,
    spell_as,
)


def last_axis_slice(value: SSAValue, start: int, stop: int, anchor: Operation,
                    result_type: TensorType, name: str | None = None) -> SSAValue:
    """Insert ``value[..., start:stop]`` before ``anchor``."""
    op = scan.IndexOp(value, [], ["...", f"{start}:{stop}"], result_type)
    copy_loc(op, anchor)
    insert_before(op, anchor)
    op.result.name_hint = name
    return op.result


def fuse_shared_lhs(loop: scan.LoopOp) -> int:
    """Fuse groups of matmuls sharing their left operand; returns how many matmuls went away."""
    stage = stages(loop)
    groups: dict[tuple, list[scan.MatmulOp]] = {}
    for op in loop.block.ops:
        if not isinstance(op, scan.MatmulOp):
            continue
        rhs = op.rhs
        rhs_is_outer = rhs in loop.param_args or rhs.owner.parent_block() is not loop.block
        if rank(rhs.type) != 2 or rank(op.lhs.type) < 1 or not rhs_is_outer or \
                stage.get(rhs, INVARIANT) != INVARIANT:
            continue
        key = (op.lhs, rhs.type.get_element_type(), rhs.type.get_shape()[0])
        groups.setdefault(key, []).append(op)
    removed = 0
    for members in groups.values():
        if len(members) < 2:
            continue
        first = members[0]
        widths = [m.rhs.type.get_shape()[1] for m in members]
        rhs0 = first.rhs.type
        concat_type = TensorType(rhs0.get_element_type(), [rhs0.get_shape()[0], sum(widths)])
        concat = copy_loc(scan.ConcatOp([m.rhs for m in members], 1, concat_type), first)
        concat.result.name_hint = _joined_name([m.rhs for m in members])
        insert_before(concat, first)
        result0 = first.result.type
        fused_shape = [*result0.get_shape()[:-1], sum(widths)]
        fused_type = TensorType(result0.get_element_type(), fused_shape)
        fused = copy_loc(scan.MatmulOp(first.lhs, concat.result, fused_type), first)
        lhs_name = (first.lhs.name_hint or "").removesuffix("_t")
        if lhs_name and concat.result.name_hint:
            # x_t @ W_all → xW_all_t: per-step names keep their ``_t``.
            step_suffix = "_t" if (first.lhs.name_hint or "").endswith("_t") else ""
            fused.result.name_hint = f"{lhs_name}{concat.result.name_hint}{step_suffix}"
        insert_before(fused, first)
        start = 0
        for member, width in zip(members, widths):
            piece = last_axis_slice(fused.result, start, start + width, first,
                                    member.result.type, member.result.name_hint)
            member.result.replace_all_uses_with(piece)
            start += width
        for member in members:
            Rewriter.erase_op(member)
        removed += len(members) - 1
        lhs_shape = describe_type(first.lhs.type)
        spelled = ", ".join(expression_text(m) for m in members)
        spell_as(fused, spelled, members)
        remark("scan-fuse-matmul",
               spelled
               + f" → one {lhs_shape} @ {describe_type(concat_type)} matmul on the "
               f"concatenated weights", members)
    return removed


def _joined_name(values: list[SSAValue]) -> str | None:
    """``U_i, U_f, U_o, U_c`` → ``U_all``; otherwise None."""
    names = [(v.name_hint or "").removesuffix("_1") for v in values]
    prefixes = {n.split("_")[0] for n in names if n}
    if len(prefixes) == 1 and all(names):
        return f"{prefixes.pop()}_all"
    return None


# ---------------------------------------------------------------------------------------------
# Reassociation of sums by stage


def reassociate_sums(loop: scan.LoopOp) -> int:
    stage = stages(loop)
    changed = 0
    for op in list(loop.block.ops):
        if not isinstance(op, scan.AddOp) or op.parent is None or _absorbed(op):
            continue
        result_type = op.result.type
        if not isinstance(result_type, TensorType) or not _is_float(result_type):
            continue
        tree: list[scan.AddOp] = []
        leaves: list[SSAValue] = []
        _collect(op, result_type, tree, leaves)
        if len(leaves) < 3:
            continue
        leaf_stages = [stage.get(v, INVARIANT) for v in leaves]
        order = sorted(range(len(leaves)), key=lambda k: leaf_stages[k])
        if order == list(range(len(leaves))):
            continue
        if not all(_same_element(v.type, result_type) for v in leaves):
            continue
        acc = leaves[order[0]]
        for k in order[1:]:
            leaf = leaves[k]
            shape = np.broadcast_shapes(_shape(acc.type), _shape(leaf.type))
            add = copy_loc(scan.AddOp(acc, leaf, TensorType(result_type.get_element_type(),
                                                            list(shape))), op)
            insert_before(add, op)
            acc = add.result
        acc.name_hint = op.result.name_hint
        op.result.replace_all_uses_with(acc)
        for dead in [op, *tree]:  # outermost first: each is unused once its user is gone
            Rewriter.erase_op(dead)
        changed += 1
        remark("scan-fuse-matmul",
               f"{source_text(op)}: sum regrouped so that terms known before the loop are "
               "added first", [op])
    return changed


def _absorbed(op: scan.AddOp) -> bool:
    """Whether ``op`` is an inner node of a bigger sum (its one user is an add of its type)."""
    uses = list(op.result.uses)
    return len(uses) == 1 and isinstance(uses[0].operation, scan.AddOp) and \
        uses[0].operation.result.type.get_element_type() == op.result.type.get_element_type() \
        and uses[0].operation.parent_block() is op.parent_block()


def _collect(op: scan.AddOp, result_type, tree: list, leaves: list) -> None:
    for operand in (op.lhs, op.rhs):
        owner = operand.owner
        if isinstance(owner, scan.AddOp) and len(list(operand.uses)) == 1 and \
                isinstance(owner.result.type, TensorType) and \
                owner.result.type.get_element_type() == result_type.get_element_type() and \
                owner.parent_block() is op.parent_block():
            tree.append(owner)
            _collect(owner, result_type, tree, leaves)
        else:
            leaves.append(operand)


def _is_float(t: TensorType) -> bool:
    return aval_of(t).dtype.kind == "f"


def _same_element(t, result_type: TensorType) -> bool:
    return isinstance(t, TensorType) and t.get_element_type() == result_type.get_element_type()


def _shape(t) -> tuple[int, ...]:
    return tuple(t.get_shape()) if isinstance(t, TensorType) else ()


@dataclass(frozen=True)
class ScanFuseMatmulPass(ModulePass):
    name = "scan-fuse-matmul"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for loop in loops_in(op):
            fuse_shared_lhs(loop)
            reassociate_sums(loop)
