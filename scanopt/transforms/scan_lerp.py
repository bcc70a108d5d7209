"""``scan-lerp``: an interpolation written ``(1 - z) * p + z * q`` becomes ``p + z * (q - p)``.

A GRU blends its state with its candidate this way every step: four passes over the state
(``1 - z``, two products, a sum) become three. The two forms differ only in rounding (the
tests compare them with the plain loop within float32 tolerance), so the pass is not part of
the ``exact_random=True`` pipeline. Either factor and either term may come first
(``p * (1 - z) + q * z`` too), and ``1`` may be written ``1.0``.

Before::

    %a = scan.sub %one, %z : (i64, tensor<4x8xf32>) -> tensor<4x8xf32>
    %b = scan.mul %a, %h : ...
    %c = scan.mul %z, %hh : ...
    %d = scan.add %b, %c : ...

After::

    %0 = scan.sub %hh, %h : ...
    %1 = scan.mul %z, %0 : ...
    %d = scan.add %h, %1 : ...

>>> from scanopt.transforms.testing import run_on_step
>>> import numpy as np
>>> def step(h, U):
...     z = np.tanh(h @ U)
...     return (1 - z) * h + z * np.tanh(h)
>>> ir = run_on_step(step, ["scan-lerp"], outputs_info=np.ones((2, 4), np.float32),
...                  non_sequences=np.eye(4, dtype=np.float32), n_steps=3)
>>> ir.count("scan.mul"), ir.count("scan.sub")
(1, 1)
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import Operation, SSAValue
from xdsl.passes import ModulePass

from scanopt.dialects import scan
from scanopt.transforms.loop_utils import copy_loc, erase_ops, insert_before, loops_in
from scanopt.transforms.remarks import remark
from scanopt.transforms.scan_fast_random import _is_one_constant


def _single_use(value: SSAValue) -> bool:
    return len(list(value.uses)) == 1


def _one_minus(value: SSAValue) -> SSAValue | None:
    """``z`` when ``value`` is ``1 - z`` (read only here)."""
    op = value.owner
    if isinstance(op, scan.SubOp) and _is_one_constant(op.lhs) and _single_use(value):
        return op.rhs
    return None


def _product(value: SSAValue) -> tuple[SSAValue, SSAValue] | None:
    op = value.owner
    if isinstance(op, scan.MulOp) and _single_use(value):
        return op.lhs, op.rhs
    return None


def _match(add: scan.AddOp) -> tuple[SSAValue, SSAValue, SSAValue, list[Operation]] | None:
    """``(z, p, q, ops)`` when ``add`` is ``(1 - z) * p + z * q`` in any order."""
    for first, second in ((add.lhs, add.rhs), (add.rhs, add.lhs)):
        weighted, other = _product(first), _product(second)
        if weighted is None or other is None:
            continue
        for complement, p in (weighted, weighted[::-1]):
            z = _one_minus(complement)
            if z is None:
                continue
            for factor, q in (other, other[::-1]):
                if factor is z:
                    return z, p, q, [complement.owner, first.owner, second.owner]
    return None


def lerp(add: scan.AddOp) -> bool:
    found = _match(add)
    if found is None:
        return False
    z, p, q, ops = found
    t = add.result.type
    if p.type != t or q.type != t:
        return False  # a broadcast term: q - p would have another shape
    difference = copy_loc(scan.SubOp(q, p, t), add)
    scaled = copy_loc(scan.MulOp(z, difference.result, t), add)
    total = copy_loc(scan.AddOp(p, scaled.result, t), add)
    for op in (difference, scaled, total):
        insert_before(op, add)
    total.result.name_hint = add.result.name_hint
    add.result.replace_all_uses_with(total.result)
    erase_ops([*ops, add])
    return True


@dataclass(frozen=True)
class ScanLerpPass(ModulePass):
    """``(1 - z) * p + z * q`` → ``p + z * (q - p)``: three passes instead of four."""

    name = "scan-lerp"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for loop in loops_in(op):
            for add in [o for o in loop.block.ops if isinstance(o, scan.AddOp)]:
                if add.parent is not None and lerp(add):
                    remark(self.name, "(1 - z) * p + z * q computed as p + z * (q - p): one "
                                      "pass over the array fewer per step", [add])
