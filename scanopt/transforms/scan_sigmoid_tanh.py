"""``scan-sigmoid-tanh``: a float32 sigmoid written ``1 / (1 + exp(-z))`` becomes
``0.5 * tanh(0.5 * z) + 0.5``.

The two are the same function (``tanh(x) = 2 * sigmoid(2x) - 1``). The NumPy backend runs this
pass because NumPy's float32 ``tanh`` costs about half its ``exp`` per element (SIMD ``tanh``
in NumPy 2, measured on the development machine) and because, once ``scan-fold-scale`` has
moved the ``0.5 *`` into the weights, an LSTM's sigmoid gates and its ``tanh`` gate read the
same block through the same function: ``scan-fuse-slices`` then makes them one ``tanh`` over
the whole gate block — one transcendental pass per step instead of ``neg``, ``exp``, ``add``,
``div`` on the sigmoid columns and a ``tanh`` on the others.

Accuracy: the absolute error stays within a few float32 ulp of 0.5 (the tests bound it by
1.2e-7 over every float32 input), but the relative accuracy of sigmoid values below about
6e-8 is lost: they come out as 0 (or a multiple of 2**-25). The pass therefore rewrites a
sigmoid only when everything that reads it (through static slices) multiplies, adds or
subtracts it — an RNN's gates — and never one that reaches a ``log``, a division, a random
draw (``scan-fast-random`` turns ``binomial(1, sigmoid(z))`` into ``z > logistic noise``) or
the loop's outputs. It changes results in the last bits: not run with ``exact_random=True``.
float64 sigmoids are left alone (NumPy's float64 ``tanh`` is slower than its ``exp``).

Before::

    %n = scan.neg %z : (tensor<4x8xf32>) -> tensor<4x8xf32>
    %e = scan.exp %n : ...
    %d = scan.add %one, %e : (i64, tensor<4x8xf32>) -> tensor<4x8xf32>
    %s = scan.div %one, %d : (i64, tensor<4x8xf32>) -> tensor<4x8xf32>

After::

    %half = arith.constant 5.000000e-01 : f64
    %0 = scan.mul %z, %half : (tensor<4x8xf32>, f64) -> tensor<4x8xf32>
    %1 = scan.tanh %0 : ...
    %2 = scan.mul %1, %half : ...
    %s = scan.add %2, %half : ...

>>> from scanopt.transforms.testing import run_on_step
>>> import numpy as np
>>> def step(h, U):
...     g = 1 / (1 + np.exp(-(h @ U)))
...     return g * h
>>> ir = run_on_step(step, ["scan-sigmoid-tanh"], outputs_info=np.ones((2, 4), np.float32),
...                  non_sequences=np.eye(4, dtype=np.float32), n_steps=3)
>>> "scan.exp" in ir, ir.count("scan.tanh")
(False, 1)
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects import arith
from xdsl.dialects.builtin import FloatAttr, ModuleOp, TensorType, f32, f64
from xdsl.ir import Operation, SSAValue
from xdsl.passes import ModulePass

from scanopt.dialects import scan
from scanopt.transforms.loop_utils import copy_loc, erase_ops, insert_before, loops_in
from scanopt.transforms.remarks import remark
from scanopt.transforms.scan_fast_random import _sigmoid_argument

# Ops whose results depend on a gate value only in absolute terms (an error of 1e-7 in the gate
# moves them by 1e-7 times their other operand): what a rewritten sigmoid may feed.
_ABSOLUTE = (scan.MulOp, scan.AddOp, scan.SubOp)


def _only_absolute_uses(value: SSAValue) -> bool:
    """Whether every use of ``value`` (through static slices) multiplies, adds or subtracts it."""
    for use in value.uses:
        user = use.operation
        if isinstance(user, scan.IndexOp) and not user.indices:
            if not _only_absolute_uses(user.result):
                return False
        elif not isinstance(user, _ABSOLUTE):
            return False
    return True


def _half(anchor: Operation) -> SSAValue:
    constant = arith.ConstantOp(FloatAttr(0.5, f64))
    constant.result.name_hint = "half"
    insert_before(constant, anchor)
    return constant.result


def sigmoid_as_tanh(div: scan.DivOp) -> bool:
    """Rewrite ``div`` if it ends a float32 sigmoid whose readers only scale or shift it."""
    t = div.result.type
    if not isinstance(t, TensorType) or t.get_element_type() != f32:
        return False
    z = _sigmoid_argument(div.result)
    if z is None or not _only_absolute_uses(div.result):
        return False
    add = div.rhs.owner
    exp = next(o for o in add.operands if isinstance(o.owner, scan.ExpOp)).owner
    neg = exp.operand.owner
    if len(list(div.rhs.uses)) != 1 or len(list(exp.result.uses)) != 1 or \
            len(list(neg.result.uses)) != 1:
        return False  # the exp or its pieces are read elsewhere too: nothing would be saved
    half = _half(neg)
    scaled = copy_loc(scan.MulOp(z, half, t), neg)
    tanh = copy_loc(scan.TanhOp(scaled.result, t), exp)
    shrunk = copy_loc(scan.MulOp(tanh.result, half, t), add)
    shifted = copy_loc(scan.AddOp(shrunk.result, half, t), div)
    for op in (scaled, tanh, shrunk, shifted):
        insert_before(op, div)
    shifted.result.name_hint = div.result.name_hint
    div.result.replace_all_uses_with(shifted.result)
    erase_ops([neg, exp, add, div])
    return True


@dataclass(frozen=True)
class ScanSigmoidTanhPass(ModulePass):
    """float32 ``1 / (1 + exp(-z))`` feeding only products and sums → ``0.5*tanh(0.5*z)+0.5``."""

    name = "scan-sigmoid-tanh"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for loop in loops_in(op):
            for div in [o for o in loop.block.ops if isinstance(o, scan.DivOp)]:
                if sigmoid_as_tanh(div):
                    remark(self.name, "sigmoid 1 / (1 + exp(-z)) computed as 0.5 * tanh(0.5 * z) "
                                      "+ 0.5: NumPy's float32 tanh is cheaper than its exp",
                           [div])
