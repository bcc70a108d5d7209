"""The ``fused`` dialect: a group of a step's ops that a backend runs as one unit (one kernel).

``scan-fuse-regions`` decides, on the IR and once for every target, which ops of a loop body
belong together: each maximal run of elementwise ops, static slices and transposes, and the
matmuls on the carry that feed them (``h @ U_all`` with an invariant right operand), becomes one
``fused.region``. Backends lower regions; they do not rediscover them (the CuPy backend turns a
region into one generated CUDA kernel per step).

``fused.region`` is isolated from above, like ``scan.loop``: its body sees only its block
arguments, one per operand (``inputs``), so what a kernel reads is explicit. Its results are
the body's values that are used after the region, in the order of ``fused.yield``::

    %h_new, %c_new = fused.region ins(%xW_t, %h, %c, %U_all : ...) -> tensor<4x8xf32>, ... {
    ^bb0(%xW_t_1: ..., %h_1: ..., %c_1: ..., %U_all_1: ...):
      %hU = scan.matmul %h_1, %U_all_1 : ...
      ...
      fused.yield %h_2, %c_2 : tensor<4x8xf32>, tensor<4x8xf32>
    }
"""

from __future__ import annotations

from collections.abc import Sequence

from xdsl.ir import Attribute, Dialect, Region, SSAValue
from xdsl.irdl import (
    IRDLOperation,
    irdl_op_definition,
    lazy_traits_def,
    region_def,
    traits_def,
    var_operand_def,
    var_result_def,
)
from xdsl.traits import (
    HasParent,
    IsolatedFromAbove,
    IsTerminator,
    RecursiveMemoryEffect,
    SingleBlockImplicitTerminator,
)
from xdsl.utils.exceptions import VerifyException


@irdl_op_definition
class YieldOp(IRDLOperation):
    """Ends a fused region: the values its results take."""

    name = "fused.yield"
    values = var_operand_def()
    traits = lazy_traits_def(lambda: (IsTerminator(), HasParent(RegionOp)))
    assembly_format = "($values^ `:` type($values))? attr-dict"

    def __init__(self, *values: SSAValue):
        super().__init__(operands=[values])


@irdl_op_definition
class RegionOp(IRDLOperation):
    """Ops of one step that run as one unit; the body's arguments are the ``inputs``."""

    name = "fused.region"
    inputs = var_operand_def()
    outs = var_result_def()
    body = region_def("single_block")
    traits = traits_def(SingleBlockImplicitTerminator(YieldOp), IsolatedFromAbove(),
                        RecursiveMemoryEffect())
    assembly_format = "`ins` `(` ($inputs^ `:` type($inputs))? `)` `->` type($outs) $body attr-dict"

    def __init__(self, inputs: Sequence[SSAValue], body: Region,
                 out_types: Sequence[Attribute]):
        super().__init__(operands=[inputs], result_types=[out_types], regions=[body])

    @property
    def block(self):
        return self.body.block

    def verify_(self) -> None:
        if len(self.block.args) != len(self.inputs):
            raise VerifyException(
                f"Expected {len(self.inputs)} block arguments (one per input), but got "
                f"{len(self.block.args)}.")
        for k, (value, arg) in enumerate(zip(self.inputs, self.block.args)):
            if value.type != arg.type:
                raise VerifyException(
                    f"Expected block argument #{k} to be {value.type}, but got {arg.type}. "
                    "The arguments of fused.region must match its inputs.")
        terminator = self.block.last_op
        if not isinstance(terminator, YieldOp):
            raise VerifyException("Expected the body of fused.region to end with fused.yield.")
        if len(terminator.values) != len(self.outs):
            raise VerifyException(
                f"Expected fused.yield to yield {len(self.outs)} values, but got "
                f"{len(terminator.values)}.")
        for k, (value, out) in enumerate(zip(terminator.values, self.outs)):
            if value.type != out.type:
                raise VerifyException(
                    f"Expected yield #{k} to be {out.type}, but got {value.type}. "
                    "fused.yield must match the result types of fused.region.")


Fused = Dialect("fused", [RegionOp, YieldOp], [])
