"""What the step returns: checked against ``outputs_info`` (JAX-style carry messages), and
``keep``.
"""

from __future__ import annotations

import ast

from xdsl.ir import Operation, SSAValue

from scanopt.dialects import scan
from scanopt.dialects.types import aval_of
from scanopt.errors import ScanTypeError, ScanValueError, SourceLocation
from scanopt.frontend.source import function_source
from scanopt.frontend.values import Const, Scope, Value, describe
from scanopt.signature import RngVal, is_python_scalar


class OutputChecker:
    """Checks the returned values against the carries and orders them for ``scan.yield``."""

    def _check_outputs(self, returned: list[Value], node: ast.AST | None,
                       targets: list[SSAValue | None]) -> tuple[list[SSAValue], list[bool]]:
        """The returned values as SSA values, checked against the carries, and whether each is
        fed back. ``targets[k]``: the block argument that the k-th entry of ``outputs_info``
        feeds (its type is what the step must return), None for a per-step output."""
        spec = self.spec
        loc = self._loc(node)
        if spec.outputs_given and len(returned) != len(spec.inits):
            raise ScanValueError(
                f"the step returns {len(returned)} value{'s' * (len(returned) != 1)}, but "
                f"outputs_info has {len(spec.inits)} entr{'ies' if len(spec.inits) != 1 else 'y'}",
                loc, hint="Give one outputs_info entry per returned value (None for a value "
                          "that is not fed back).")
        targets = targets if spec.outputs_given else \
            targets + [None] * (len(returned) - len(targets))
        if len(returned) < len(targets):
            raise ScanValueError(
                f"the step returns {len(returned)} value{'s' * (len(returned) != 1)}, but "
                f"{len(targets)} outputs are expected", loc)
        values, mismatches = [], []
        for k, (value, arg) in enumerate(zip(returned, targets)):
            if isinstance(value, Const) and (value.value is None or not
                                             is_python_scalar(value.value)):
                raise ScanValueError(f"returned value #{k + 1} is {describe(value)}, not an "
                                     "array", loc)
            if not isinstance(value, SSAValue):
                if isinstance(value, Const):
                    value = self._materialize_at(value, node)
                else:
                    raise ScanValueError(f"returned value #{k + 1} is {describe(value)}, not "
                                         "an array", loc)
            if isinstance(aval_of(value.type), RngVal):
                raise ScanValueError("a step cannot return a generator", loc)
            if arg is not None:
                init, got = aval_of(arg.type), aval_of(value.type)
                if got.weak and init.shape == () and got.dtype == init.dtype:
                    # A Python scalar for a 0-d carry of its own dtype (a float for float64):
                    # the plain loop stacks it as that dtype, so it is carried as one.
                    value = self._emit_at(scan.CastOp(value, arg.type), node)
                if value.type != arg.type:
                    what = "dtype" if got.shape == init.shape else \
                        "shape" if not got.weak and got.dtype == init.dtype else "type"
                    if not mismatches and isinstance(node, ast.Tuple | ast.List) and \
                            len(node.elts) == len(returned) and spec.pytree is None:
                        loc = self._loc(node.elts[k])
                    label = self.carry_labels.get(arg, arg.name_hint)
                    mismatches.append(
                        f"The input carry `{label}` has type {init.describe()} but the "
                        f"{'step' if spec.pytree is None else 'function'} returns "
                        f"{got.describe()} for it, so the {what}s do not match.")
            values.append(value)
        if mismatches:
            if spec.pytree is None:
                header = ("the step function's output type does not match its initial state "
                          "(outputs_info)")
                hint = ("Revise the step so that each fed-back output keeps the dtype and shape "
                        "of its initial value (for example .astype(h.dtype)), or pass an "
                        "initial value of the type the step returns.")
            else:  # carry_scan
                header = "the carry f returns does not match the input carry (init)"
                hint = ("Revise f so that each leaf of the carry keeps the dtype and shape it "
                        "has in init (for example .astype(x.dtype)), or pass an init of the "
                        "types f returns.")
            body = mismatches[0] if len(mismatches) == 1 else \
                "\n".join(f"  * {m}" for m in mismatches)
            raise ScanTypeError(f"{header}\n\n{body}", loc, hint="\n" + hint)
        return values, [arg is not None for arg in targets]

    def _keep(self, n_outputs: int, node: ast.AST | None) -> list[str]:
        keep = self.spec.keep
        if isinstance(keep, str):
            return [keep] * n_outputs
        if len(keep) != n_outputs:
            raise ScanValueError(
                f"keep has {len(keep)} entries but the step returns {n_outputs} "
                f"value{'s' * (n_outputs != 1)}", self._loc(node),
                hint='Give keep="all", keep="last", or one of those per returned value.')
        return list(keep)

    def _emit_at(self, op: Operation, node) -> SSAValue:
        """Emit ``op`` located at ``node`` of the step function (its return statement)."""
        context = self.root_context
        return self._emit(op, node if node is not None else context.source.node,
                          Scope({}, context))

    def _materialize_at(self, value: Const, node) -> SSAValue:
        context = self.root_context
        return self._materialize(value, node if node is not None else context.source.node,
                                 Scope({}, context))

    def _loc(self, node: ast.AST | None) -> SourceLocation | None:
        if node is None or self.target_fn is None:
            return self.call_site
        return function_source(self.target_fn).loc(node)
