"""``scan-fuse-slices``: the same elementwise op on adjacent column slices of one array becomes one
op on the wider slice.

After ``scan-fuse-matmul`` the four LSTM gates are column slices of one ``h @ U_all``; the user's
code still applies the same operations to each slice separately (``+ b_i``, ``sigmoid``, ...).
This pass merges them level by level: ``op(S[..., a:b], Y_1)``, ``op(S[..., b:c], Y_2)`` become
``op(S[..., a:c], Y)`` followed by slices, where the other operand ``Y`` is a matching slice of
one array, a concatenation of invariants (biases, which scan-licm then hoists), or one shared
value that broadcasts along the columns (a constant). Run to a fixed point this gives the
hand-optimised LSTM's structure: one add of ``x_t @ W_all + b_all`` and ``h @ U_all``, one sigmoid
over the i, f, o columns, one tanh over g.

Before::

    %a = scan.index %z {spec = ["...", "0:16"]} : ...
    %b = scan.index %z {spec = ["...", "16:32"]} : ...
    %ea = scan.exp %a : ...
    %eb = scan.exp %b : ...

After::

    %e = scan.exp %z : (tensor<4x32xf32>) -> tensor<4x32xf32>
    %ea = scan.index %e {spec = ["...", "0:16"]} : ...
    %eb = scan.index %e {spec = ["...", "16:32"]} : ...

>>> from scanopt.transforms.testing import run_on_step
>>> import numpy as np
>>> def step(h, U_i, U_f):
...     return np.exp(h @ U_i) * np.exp(h @ U_f)
>>> ir = run_on_step(step, ["scan-fuse-matmul", "scan-fuse-slices"],
...                  outputs_info=np.zeros((4, 16)), non_sequences=[np.eye(16), np.eye(16)],
...                  n_steps=2)
>>> ir.count("scan.exp")
1
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.context import Context
from xdsl.dialects.builtin import ModuleOp, TensorType
from xdsl.ir import Block, Operation, SSAValue
from xdsl.passes import ModulePass
from xdsl.rewriter import Rewriter

from scanopt.dialects import scan
from scanopt.transforms.loop_utils import INVARIANT, copy_loc, insert_before, loops_in, rank, stages
from scanopt.transforms.remarks import remark
from scanopt.transforms.scan_fuse_matmul import _joined_name, last_axis_slice


def _column_slice(value: SSAValue) -> tuple[SSAValue, int, int] | None:
    """``(source, start, stop)`` when ``value`` is ``source[..., start:stop]``."""
    op = value.owner
    if not isinstance(op, scan.IndexOp) or op.indices:
        return None
    spec = [s.data for s in op.spec.data]
    if len(spec) != 2 or spec[0] != "..." or spec[1].count(":") != 1:
        return None
    start, stop = spec[1].split(":")
    if not start or not stop:
        return None
    return op.operand, int(start), int(stop)


@dataclass
class _Member:
    op: Operation
    start: int
    stop: int
    other: SSAValue | None


def _candidates(block: Block, stage: dict) -> dict[tuple, list[_Member]]:
    groups: dict[tuple, list[_Member]] = {}
    for op in block.ops:
        if not isinstance(op, scan.ElementwiseOp):
            continue
        result = op.results[0].type
        if not isinstance(result, TensorType) or rank(result) == 0:
            continue
        for position, operand in enumerate(op.operands):
            found = _column_slice(operand)
            if found is None:
                continue
            source, start, stop = found
            if rank(operand.type) != rank(result):
                continue
            width = stop - start
            other = op.operands[1 - position] if len(op.operands) == 2 else None
            if other is None:
                kind: tuple = ("unary",)
            elif (other_slice := _column_slice(other)) is not None and \
                    other_slice[1:] == (start, stop) and rank(other.type) == rank(result):
                kind = ("slice", other_slice[0])
            elif isinstance(other.type, TensorType) and stage.get(other) == INVARIANT and \
                    rank(other.type) >= 1 and other.type.get_shape()[-1] == width and \
                    other.type.get_shape()[-1] != 1:
                kind = ("concat", tuple(other.type.get_shape()[:-1]),
                        other.type.get_element_type())
            elif not isinstance(other.type, TensorType) or rank(other.type) == 0 or \
                    other.type.get_shape()[-1] == 1:
                kind = ("same", other)
            else:
                continue
            key = (type(op), position, source, kind, result.get_element_type(),
                   tuple(result.get_shape()[:-1]))
            groups.setdefault(key, []).append(_Member(op, start, stop, other))
            break
    return groups


def _runs(members: list[_Member]) -> list[list[_Member]]:
    """Maximal runs of members whose column ranges are adjacent."""
    members = sorted(members, key=lambda m: m.start)
    runs, current = [], [members[0]]
    for m in members[1:]:
        if m.start == current[-1].stop:
            current.append(m)
        else:
            runs.append(current)
            current = [m]
    runs.append(current)
    return [r for r in runs if len(r) >= 2]


def fuse_column_slices(loop: scan.LoopOp) -> int:
    fused_total = 0
    while True:
        block = loop.block
        position = {op: k for k, op in enumerate(block.ops)}
        stage = stages(loop)
        progress = False
        for key, members in _candidates(block, stage).items():
            op_class, pos, source, kind = key[:4]
            for run in _runs(members):
                if any(m.op.parent is None for m in run):
                    continue  # already fused in this round
                first = min(run, key=lambda m: position[m.op])
                if kind[0] in ("concat", "same") and not all(
                        _defined_before(m.other, first.op, position) for m in run):
                    continue
                _fuse(run, op_class, pos, source, kind, first.op)
                fused_total += len(run) - 1
                progress = True
        if not progress:
            return fused_total


def _defined_before(value: SSAValue, anchor: Operation, position: dict) -> bool:
    owner = value.owner
    return not isinstance(owner, Operation) or owner not in position or \
        position[owner] < position[anchor]


def _fuse(run: list[_Member], op_class, pos: int, source: SSAValue, kind: tuple,
          anchor: Operation) -> None:
    lo, hi = run[0].start, run[-1].stop
    width = hi - lo
    example = run[0].op.results[0].type
    assert isinstance(example, TensorType)

    def wide(value: SSAValue) -> SSAValue:
        vt = value.type
        assert isinstance(vt, TensorType)
        if (lo, hi) == (0, vt.get_shape()[-1]):
            return value
        t = TensorType(vt.get_element_type(), [*vt.get_shape()[:-1], width])
        return last_axis_slice(value, lo, hi, anchor, t)

    operands: list[SSAValue] = [wide(source)]
    if kind[0] == "slice":
        operands.append(wide(kind[1]))
    elif kind[0] == "concat":
        others = [m.other for m in run]
        t0 = others[0].type
        t = TensorType(t0.get_element_type(), [*t0.get_shape()[:-1], width])
        concat = copy_loc(scan.ConcatOp(others, rank(t0) - 1, t), anchor)
        concat.result.name_hint = _joined_name(others)
        insert_before(concat, anchor)
        operands.append(concat.result)
    elif kind[0] == "same":
        operands.append(kind[1])
    if pos == 1:
        operands.reverse()
    result_type = TensorType(example.get_element_type(), [*example.get_shape()[:-1], width])
    fused = copy_loc(op_class.create(operands=operands, result_types=[result_type]), anchor)
    insert_before(fused, anchor)
    names = [m.op.results[0].name_hint for m in run]
    if all(names) and len("_".join(names)) <= 24:
        fused.results[0].name_hint = "_".join(names)
    for m in run:
        piece = last_axis_slice(fused.results[0], m.start - lo, m.stop - lo, anchor,
                                m.op.results[0].type, m.op.results[0].name_hint)
        m.op.results[0].replace_all_uses_with(piece)
    for m in run:
        Rewriter.erase_op(m.op)
    remark("scan-fuse-slices",
           f"{len(run)} `{op_class.name.removeprefix('scan.')}` on adjacent column slices → one "
           f"on {width} columns", [m.op for m in run])


@dataclass(frozen=True)
class ScanFuseSlicesPass(ModulePass):
    name = "scan-fuse-slices"

    def apply(self, ctx: Context, op: ModuleOp) -> None:
        for loop in loops_in(op):
            fuse_column_slices(loop)

