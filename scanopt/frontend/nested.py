"""``scanopt.scan(...)`` called inside a step: a loop nested in the step's loop, as Theano allows.

The inner step is walked like the outer one, into the body of an inner ``scan.loop``. That loop is
isolated from above like every ``scan.loop``: values of the enclosing step the inner step reads
(``lambda y: y + h`` with the outer carry ``h``) become extra non-sequences of the inner loop, added
as they are first used (:meth:`NestedScans._localize`, called for every operand of every op the
walker emits). The number of inner steps may be a value of the outer step, down to 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from xdsl.dialects import arith
from xdsl.dialects.builtin import DYNAMIC_INDEX, IndexType, IntegerAttr, TensorType
from xdsl.ir import Block, Region, SSAValue

from scanopt.dialects import scan
from scanopt.dialects.types import aval_of, ir_type
from scanopt.errors import ScanTypeError, ScanValueError, UnsupportedSyntax
from scanopt.frontend.numpy_functions import bind_call
from scanopt.frontend.values import (Const, DictVal, Scope, TupleVal, UntilVal, Value,
                                     describe)
from scanopt.signature import AVal

# scanopt.scan's parameters in Theano's order, then its keyword-only ones.
_SCAN_PARAMETERS = ["fn", ("sequences", None), ("outputs_info", None), ("non_sequences", None),
                    ("n_steps", None), ("truncate_gradient", -1), ("go_backwards", False),
                    ("mode", None), ("name", None), ("profile", False), ("allow_gc", None),
                    ("strict", False), ("return_list", False), ("backend", "numpy"),
                    ("exact_random", False), ("optimize", True), ("keep", "all")]


@dataclass
class NestedFrame:
    """An inner loop's body being built: its block, the enclosing step's values it reads (in
    the order they became non-sequences), and its own constants."""

    block: Block
    strict: bool
    captured: dict[SSAValue, SSAValue] = field(default_factory=dict)
    constants: dict[tuple, SSAValue] = field(default_factory=dict)


class NestedScans:
    """``scanopt.scan`` inside a step, and moving values into the body being built."""

    def _localize(self, value: SSAValue, node, scope: Scope) -> SSAValue:
        """``value`` as the current block can use it: a value of an enclosing step becomes a
        non-sequence of each loop in between."""
        if not self.frames:
            return value
        return self._value_in(value, len(self.frames) - 1, node, scope)

    def _value_in(self, value: SSAValue, level: int, node, scope: Scope) -> SSAValue:
        frame = self.frames[level]
        if _defined_in(value, frame.block):
            return value
        outer = value if level == 0 else self._value_in(value, level - 1, node, scope)
        if outer not in frame.captured:
            if frame.strict:
                raise ScanValueError(
                    f"the inner step reads {describe(value)}"
                    + (f" (`{value.name_hint}`)" if value.name_hint else "")
                    + " from the enclosing step, which strict=True forbids",
                    scope.context.source.loc(node),
                    hint="Pass it in the inner scan's non_sequences, or use strict=False.")
            arg = frame.block.insert_arg(outer.type, len(frame.block.args))
            if outer.name_hint:
                arg.name_hint = outer.name_hint
            frame.captured[outer] = arg
        return frame.captured[outer]

    def _nested_scan(self, args, kwargs, node, scope: Scope) -> Value:
        loc = scope.context.source.loc(node)
        bound = bind_call("scanopt.scan", _SCAN_PARAMETERS, args, kwargs, node, scope)
        reverse = self._const_bool(bound["go_backwards"], node, scope, "go_backwards")
        strict = self._const_bool(bound["strict"], node, scope, "strict")
        return_list = self._const_bool(bound["return_list"], node, scope, "return_list")
        if not (isinstance(bound["keep"], Const) and bound["keep"].value in ("all", "last")):
            raise UnsupportedSyntax("keep of a nested scan must be \"all\" or \"last\"", loc)
        keep = bound["keep"].value

        sequences = [self._nested_sequence(v, k, node, scope)
                     for k, v in enumerate(_entries(bound["sequences"]))]
        inits = [None if isinstance(v, Const) and v.value is None else
                 self._nested_initial(v, k, node, scope)
                 for k, v in enumerate(_entries(bound["outputs_info"]))]
        params = [self._materialize(v, node, scope) for v in _entries(bound["non_sequences"])]
        count, static = self._nested_count(bound["n_steps"], sequences, node, scope)

        slice_types = [TensorType(s.type.get_element_type(), s.type.get_shape()[1:])
                       for s in sequences]
        carry_types = [v.type for v in inits if v is not None]
        inner = Block(arg_types=[*slice_types, *carry_types, *(p.type for p in params)])
        step_args = list(inner.args)
        frame = NestedFrame(inner, strict)
        outer_block, outer_constants = self.block, self.constants
        self.frames.append(frame)
        self.block, self.constants = inner, frame.constants
        try:
            result = self._call_value(bound["fn"], step_args, {}, node, scope.context, scope)
            returned, until = self._split_until(result, node)
            values = self._nested_outputs(returned, inits, node, scope)
            carries = [v for v, init in zip(values, inits) if init is not None]
            outputs = [v for v, init in zip(values, inits + [None] * len(values))
                       if init is None]
            yielded = [self._localize(v, node, scope) for v in [*carries, *outputs]]
            if until is not None:
                until = self._localize(until, node, scope)
            inner.add_op(scan.YieldOp(*yielded, until=until))
        finally:
            self.frames.pop()
            self.block, self.constants = outer_block, outer_constants

        rows = DYNAMIC_INDEX if static is None or until is not None else static
        out_types = [ir_type(AVal(np.asarray(aval_of(v.type).dummy()).dtype,
                                  (None, *aval_of(v.type).shape))) for v in yielded]
        out_types = [TensorType(t.get_element_type(), [rows, *t.get_shape()[1:]])
                     for t in out_types]
        loop = scan.LoopOp(sequences, [v for v in inits if v is not None],
                           [*params, *frame.captured], Region(inner), out_types,
                           n_steps=count, reverse=reverse)
        self._emit(loop, node, scope)
        # The histories in the order the inner step returns its values.
        n_carries = len(carries)
        results, carry_k, out_k = [], 0, n_carries
        for value, init in zip(values, inits + [None] * len(values)):
            k = carry_k if init is not None else out_k
            carry_k, out_k = carry_k + (init is not None), out_k + (init is None)
            history = loop.outs[k]
            if keep == "last":
                history = self._emit(scan.LastOp(history, loop.inits[k] if init is not None
                                                 else None, yielded[k].type), node, scope)
            results.append(history)
        if len(results) == 1 and not return_list:
            return results[0]
        return TupleVal(tuple(results))

    def _nested_sequence(self, value: Value, k: int, node, scope: Scope) -> SSAValue:
        if isinstance(value, DictVal):
            raise UnsupportedSyntax("taps in a scan nested in a step are not supported yet",
                                    scope.context.source.loc(node),
                                    hint="Slice the sequence yourself in the inner step.")
        array = self._materialize(value, node, scope)
        if not isinstance(array.type, TensorType) or not array.type.get_shape():
            raise ScanValueError(f"sequences[{k}] of the inner scan is {describe(array)}; a "
                                 "sequence needs a leading (time) dimension",
                                 scope.context.source.loc(node))
        return array

    def _nested_initial(self, value: Value, k: int, node, scope: Scope) -> SSAValue:
        initial = self._materialize(value, node, scope)
        aval = aval_of(initial.type)
        if aval.weak:  # the loop takes np.asarray(initial): a strong 0-d array
            initial = self._emit(scan.CastOp(initial, ir_type(AVal(aval.dtype, ()))), node,
                                 scope)
        return initial

    def _nested_count(self, n_steps: Value, sequences: list[SSAValue], node,
                      scope: Scope) -> tuple[SSAValue, int | None]:
        """The inner loop's number of steps, and its value when known while compiling."""
        lengths = [s.type.get_shape()[0] for s in sequences]
        static = None
        if isinstance(n_steps, Const) and n_steps.value is None:
            if not sequences:
                raise ScanValueError("the inner scan has no sequences and no n_steps",
                                     scope.context.source.loc(node),
                                     hint="Pass n_steps=... to the inner scan.")
            if DYNAMIC_INDEX not in lengths:
                static = min(lengths)
        elif isinstance(n_steps, Const):
            static = self._const_int(n_steps, node, scope, "n_steps")
            if static < 0:
                raise ScanValueError(f"n_steps must not be negative, got {static}",
                                     scope.context.source.loc(node))
            known = [n for n in lengths if n != DYNAMIC_INDEX]
            if known and static > min(known):
                raise ScanValueError(
                    f"n_steps={static} is larger than the shortest sequence of the inner scan "
                    f"({min(known)} steps)", scope.context.source.loc(node))
        if static is not None:
            return self._emit(arith.ConstantOp(IntegerAttr(static, IndexType())), node,
                              scope), static
        n = None
        if not (isinstance(n_steps, Const) and n_steps.value is None):
            n = self._materialize(n_steps, node, scope)
            aval = aval_of(n.type)
            if not isinstance(aval, AVal) or aval.shape != () or aval.dtype.kind not in "iu":
                raise ScanTypeError(f"n_steps of the inner scan must be an integer scalar, got "
                                    f"{describe(n)}", scope.context.source.loc(node))
        return self._emit(scan.CountOp(n, sequences if n is None else []), node, scope), None

    def _nested_outputs(self, returned: list[Value], inits: list, node,
                        scope: Scope) -> list[SSAValue]:
        """The inner step's returned values, checked against its carries."""
        loc = scope.context.source.loc(node)
        if inits and len(returned) != len(inits):
            raise ScanValueError(
                f"the inner step returns {len(returned)} value(s), but the inner scan's "
                f"outputs_info has {len(inits)} entr{'ies' if len(inits) != 1 else 'y'}", loc,
                hint="Give one outputs_info entry per returned value (None for a value that is "
                     "not fed back).")
        values = []
        for k, (value, init) in enumerate(zip(returned, inits + [None] * len(returned))):
            if not isinstance(value, SSAValue):
                if isinstance(value, Const) and not isinstance(value.value, (bool, int, float)):
                    raise ScanValueError(f"the inner step's value #{k + 1} is "
                                         f"{describe(value)}, not an array", loc)
                if isinstance(value, UntilVal | TupleVal):
                    raise ScanValueError(f"the inner step's value #{k + 1} is "
                                         f"{describe(value)}, not an array", loc)
                value = self._materialize(value, node, scope)
            if init is not None:
                expected = init.type
                got = aval_of(value.type)
                if got.weak and aval_of(expected).shape == () and \
                        got.dtype == aval_of(expected).dtype:
                    value = self._emit(scan.CastOp(value, expected), node, scope)
                if value.type != expected:
                    raise ScanTypeError(
                        "the inner step's output type does not match its initial state\n\n"
                        f"The inner carry #{k + 1} has type {aval_of(expected).describe()} but "
                        f"the inner step returns {aval_of(value.type).describe()} for it.", loc,
                        hint="Make the inner step keep the dtype and shape of each initial "
                             "value.")
            values.append(value)
        return values


def _entries(value: Value) -> list[Value]:
    """A scan argument's entries: one value or a list/tuple of them (None: none)."""
    if isinstance(value, Const) and value.value is None:
        return []
    if isinstance(value, TupleVal):
        return list(value.items)
    if isinstance(value, Const) and isinstance(value.value, (tuple, list)):
        return [Const(v) for v in value.value]
    return [value]


def _defined_in(value: SSAValue, block: Block) -> bool:
    owner = value.owner
    return owner is block if isinstance(owner, Block) else owner.parent_block() is block

