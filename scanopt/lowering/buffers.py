"""Where each array result of a block is written: the emitter's buffer plan (Theano's
``allow_gc=False``).

For every op that NumPy can run with ``out=`` the planner picks a target:

- ``history``: the value is a fed-back or per-step output that is stacked — write it straight
  into this step's slot of the returned history (``out=hs[t]``), which also makes it the carry
  for the next step without a copy;
- ``inplace``: an operand of the same shape and dtype that dies here and is ours to overwrite
  (a temporary, never an input or a view) — ``np.exp(z, out=z)``;
- ``buffer``: a workspace array allocated once per compiled loop and reused across steps and
  across calls; buffers whose values are dead are recycled within the block (liveness).

Values the user gets back (histories, last values, anything returned) never live in a workspace
buffer, never share memory with an input or with each other, and inputs are never written.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from xdsl.dialects import arith, func
from xdsl.dialects.builtin import DYNAMIC_INDEX, TensorType
from xdsl.ir import Block, BlockArgument, Operation, SSAValue

from scanopt.dialects import scan
from scanopt.dialects.scan import extra_rows

_VIEW_OPS = (scan.IndexOp, scan.TransposeOp, scan.ReshapeOp)
_COMPARES = (scan.EqOp, scan.NeOp, scan.LtOp, scan.LeOp, scan.GtOp, scan.GeOp)


def is_view(op: Operation) -> bool:
    """Whether ``op``'s result shares its operand's memory (a contiguous transpose copies)."""
    return isinstance(op, _VIEW_OPS) and "contiguous" not in op.attributes


def _memory_root(value: SSAValue) -> SSAValue:
    """The value whose memory ``value`` may be: through views, and through contiguous
    transposes too (``np.ascontiguousarray`` returns its operand when it is contiguous already,
    as the transpose of a ``(1, n)`` array is)."""
    while isinstance(value.owner, _VIEW_OPS):
        value = value.owner.operands[0]
    return value


def draws_into_workspace(op: Operation) -> bool:
    """Whether ``op``'s draws for many steps are made chunk by chunk into one workspace array,
    which the next chunk's draws overwrite (without buffers, each chunk is a new array)."""
    return isinstance(op, scan.RandomOp) and op.steps is not None and \
        op.method.data in ("random", "standard_normal", "logistic")


def returns_to_copy(ret: func.ReturnOp) -> set[int]:
    """Positions of returned values that may share memory with an input or with an earlier
    returned value (``return hs, hs.T`` once the transpose is sunk after the loop, ``return W``):
    they are returned as a copy, so no two returned arrays, and no returned array and input,
    share memory."""
    copies: set[int] = set()
    seen: set[SSAValue] = set()
    for k, value in enumerate(ret.arguments):
        if not isinstance(value.type, TensorType):
            continue  # a scalar: immutable
        root = _memory_root(value)
        if root in seen or isinstance(root, BlockArgument):
            copies.add(k)
        seen.add(root)
    return copies


@dataclass(frozen=True)
class Target:
    kind: str  # "history" | "inplace" | "buffer" | "pingpong"
    buffer: str | None = None  # the workspace array's name ("buffer")
    operand: SSAValue | None = None  # the operand overwritten ("inplace")
    output: int | None = None  # the yielded output's index ("history")


@dataclass
class BufferPlan:
    targets: dict[Operation, Target] = field(default_factory=dict)
    # name → (shape with None for the number of steps, dtype element type attribute)
    buffers: dict[str, tuple[tuple, object]] = field(default_factory=dict)
    # yielded outputs already written into their history slot
    in_history: set[int] = field(default_factory=set)
    # returned values that are views of a workspace buffer: copied before they are returned
    copy_on_return: set[SSAValue] = field(default_factory=set)
    # carries (yield indices) that are views of a workspace buffer: carried as a copy
    copy_carries: set[int] = field(default_factory=set)
    # comparisons written straight into their cast's target (``np.less(u, p, out=v)``)
    folded: set[Operation] = field(default_factory=set)
    # carries kept without a history (keep="last"): output index → names of their two buffers
    pingpong: dict[int, tuple[str, str]] = field(default_factory=dict)
    # views in a loop body of a workspace buffer (a static slice, a transpose): the same array
    # in every step, so the emitter makes them once, before the loop
    fixed_views: set[Operation] = field(default_factory=set)


def supports_out(op: Operation) -> bool:
    result = op.results[0].type if op.results else None
    if not isinstance(result, TensorType) or not result.get_shape():
        return False
    if isinstance(op, scan.TransposeOp):
        return "contiguous" in op.attributes
    if isinstance(op, scan.RandomOp):
        return op.method.data in ("random", "standard_normal") and op.size is not None \
            and not op.steps
    return isinstance(op, scan.ElementwiseOp | scan.MatmulOp | scan.ReduceOp | scan.ClipOp
                      | scan.CastOp | scan.ConcatOp | scan.StackOp)


def _elementwise(op: Operation) -> bool:
    return isinstance(op, scan.ElementwiseOp | scan.ClipOp | scan.CastOp)


class _Planner:
    def __init__(self, block: Block, plan: BufferPlan, namer, histories: dict[int, bool],
                 carries: dict[int, str]):
        self.block = block
        self.carries = carries
        self.plan = plan
        self.namer = namer
        self.histories = histories  # yielded output index → has a stacked history
        self.ops = list(block.ops)
        self.index = {op: k for k, op in enumerate(self.ops)}
        self.last_use: dict[SSAValue, int] = {}
        self.storage: dict[SSAValue, tuple] = {}
        self.free: dict[tuple, list[str]] = {}
        self.yielded: dict[SSAValue, list[int]] = {}
        self.returned: set[SSAValue] = set()
        # carries whose previous value a step passes on to a carry (``return f(h), h``): read
        # two steps after they were written, so two arrays written in turn are not enough
        self.outliving: set[int] = set()

    def run(self) -> None:
        loop = self.block.parent_op()
        if isinstance(loop, scan.LoopOp):
            carried = {_memory_root(v) for j, v in enumerate(self.block.last_op.values)
                       if j in self.carries}
            self.outliving = {k for k, arg in enumerate(loop.carry_args) if arg in carried}
            # A slice of a chunk of pre-drawn numbers lives in a workspace array that the next
            # chunk's draws overwrite.
            for seq, arg in zip(loop.sequences, loop.seq_args):
                if draws_into_workspace(seq.owner):
                    self.storage[arg] = ("chunk",)
        for k, op in enumerate(self.ops):
            for operand in op.operands:
                self.last_use[operand] = k
            if isinstance(op, scan.YieldOp):
                for j, value in enumerate(op.values):
                    self.yielded.setdefault(value, []).append(j)
            if isinstance(op, func.ReturnOp):
                self.returned.update(op.arguments)
        # A comparison read only by a cast from bool is computed by the cast's out= call.
        for k, op in enumerate(self.ops):
            if isinstance(op, scan.CastOp) and isinstance(op.operand.owner, _COMPARES) and \
                    op.operand.owner.parent_block() is self.block and \
                    len(list(op.operand.uses)) == 1 and supports_out(op):
                compare = op.operand.owner
                self.plan.folded.add(compare)
                for operand in compare.operands:
                    self.last_use[operand] = max(self.last_use.get(operand, k), k)
        # A view keeps its source alive.
        for k in range(len(self.ops) - 1, -1, -1):
            op = self.ops[k]
            if is_view(op):
                view, source = op.results[0], op.operands[0]
                end = max(self.last_use.get(view, k), self.last_use.get(source, k))
                self.last_use[source] = end
        for k, op in enumerate(self.ops):
            self._plan_op(k, op)
        for value in self.returned:
            storage = self.storage.get(self._root(value))
            if storage is not None and storage[0] == "buffer":
                self.plan.copy_on_return.add(value)
        # A carry that is a view of a workspace buffer would be overwritten by the next step,
        # which reuses the buffer before it reads the carry: it is carried as a copy.
        terminator = self.ops[-1] if self.ops else None
        if isinstance(terminator, scan.YieldOp):
            for k, value in enumerate(terminator.values):
                storage = self.storage.get(self._root(value))
                if k in self.carries and storage is not None and storage[0] in ("buffer", "chunk"):
                    self.plan.copy_carries.add(k)
        if isinstance(loop, scan.LoopOp):
            for op in self.ops:
                if is_view(op) and not isinstance(op, scan.ReshapeOp) and \
                        not (isinstance(op, scan.IndexOp) and op.indices) and \
                        self.storage.get(self._root(op.results[0]), ("",))[0] == "buffer":
                    self.plan.fixed_views.add(op)
        self._name_buffers()

    def _name_buffers(self) -> None:
        """A buffer first made for an unnamed temporary takes the name of the first value the
        user named that lives in it (``hmean`` rather than ``work_1``)."""
        renames: dict[str, str] = {}
        for value, storage in self.storage.items():
            if storage[0] != "buffer" or not storage[1].startswith("work") or \
                    storage[1] in renames or not value.name_hint:
                continue
            hint = value.name_hint
            if hint.startswith(("tmp", "v_", "work")) or not hint.isidentifier():
                continue
            renames[storage[1]] = self.namer.fresh(hint)
        if not renames:
            return
        self.plan.buffers = {renames.get(k, k): v for k, v in self.plan.buffers.items()}
        for op, target in list(self.plan.targets.items()):
            if target.buffer in renames:
                self.plan.targets[op] = replace(target, buffer=renames[target.buffer])
        for value, storage in list(self.storage.items()):
            if storage[0] == "buffer" and storage[1] in renames:
                self.storage[value] = ("buffer", renames[storage[1]])

    def _root(self, value: SSAValue) -> SSAValue:
        while value in self.storage and self.storage[value][0] == "view":
            value = self.storage[value][1]
        return value

    def _plan_op(self, k: int, op: Operation) -> None:
        if op in self.plan.folded:
            return  # computed by its cast's out= call
        if is_view(op):
            self.storage[op.results[0]] = ("view", op.operands[0])
            return
        if isinstance(op, arith.ConstantOp | scan.YieldOp | func.ReturnOp):
            return
        if not op.results:
            return
        result = op.results[0]
        target = self._choose(k, op, result) if supports_out(op) else None
        if target is None:
            self.storage[result] = ("fresh",)
        else:
            self.plan.targets[op] = target
            if target.kind == "history":
                self.plan.in_history.add(target.output)
                self.storage[result] = ("history",)
            elif target.kind == "inplace":
                self.storage[result] = self.storage[target.operand]
            elif target.kind == "pingpong":
                self.storage[result] = ("pingpong",)
            else:
                self.storage[result] = ("buffer", target.buffer)
        self._release_dead_operands(k, op, result)

    def _choose(self, k: int, op: Operation, result: SSAValue) -> Target | None:
        if result in self.returned:
            return None  # handed to the user: a fresh array
        outputs = self.yielded.get(result)
        if outputs:
            first = outputs[0]
            if self.histories.get(first) and first not in self.plan.in_history:
                return Target("history", output=first)
            if first in self.carries and first not in self.plan.pingpong and \
                    first not in self.outliving:
                # Kept from step to step without a history: two arrays, written in turn, so
                # the new value never overwrites the one this step reads.
                pair = tuple(self.namer.fresh(f"{self.carries[first]}_{half}")
                             for half in ("even", "odd"))
                for name in pair:
                    self.plan.buffers[name] = (tuple(result.type.get_shape()),
                                               result.type.get_element_type())
                self.plan.pingpong[first] = pair
                return Target("pingpong", output=first)
            return None
        if _elementwise(op):
            for operand in op.operands:
                if self._can_overwrite(operand, k, result):
                    return Target("inplace", operand=operand)
        if not rows_are_steps(result):
            return None  # a workspace buffer's dynamic dimension is n_steps: not this value's
        key = (tuple(result.type.get_shape()), result.type.get_element_type())
        spare = self.free.get(key)
        if spare:
            return Target("buffer", buffer=spare.pop())
        name = self.namer.fresh(result.name_hint or "work")
        self.plan.buffers[name] = (tuple(None if d < 0 else d for d in result.type.get_shape()),
                                   result.type.get_element_type())
        return Target("buffer", buffer=name)

    def _can_overwrite(self, operand: SSAValue, k: int, result: SSAValue) -> bool:
        if operand.type != result.type or self.last_use.get(operand) != k:
            return False
        if operand in self.yielded or operand in self.returned:
            return False
        storage = self.storage.get(operand)
        # Ours alone: a workspace buffer or a fresh temporary, not an input, view or history.
        return storage is not None and storage[0] in ("buffer", "fresh")

    def _release_dead_operands(self, k: int, op: Operation, result: SSAValue) -> None:
        target = self.plan.targets.get(op)
        # Each buffer once: `b @ b.T` reads b directly and through a view of it.
        for root in dict.fromkeys(self._root(operand) for operand in op.operands):
            if self.last_use.get(root) != k or root in self.yielded:
                continue
            storage = self.storage.get(root)
            if storage is None or storage[0] != "buffer":
                continue
            if target is not None and target.kind == "inplace" and \
                    self._root(target.operand) is root:
                continue  # the result lives on in this buffer
            if self.storage.get(result) == storage:
                continue
            key = (tuple(root.type.get_shape()), root.type.get_element_type())
            self.free.setdefault(key, []).append(storage[1])


def rows_are_steps(value: SSAValue) -> bool:
    """Whether ``value``'s dynamic dimension, if it has one, is the number of steps (what the
    workspace sizes buffers by): not a sequence window with rows beyond the steps (taps), nor
    the history of a loop that may stop early, nor anything made from those."""
    if not isinstance(value.type, TensorType) or DYNAMIC_INDEX not in value.type.get_shape():
        return True
    return extra_rows(value) == 0


def plan_block(block: Block, plan: BufferPlan, namer, histories: dict[int, bool] | None = None,
               carries: dict[int, str] | None = None):
    """Add the targets of ``block``'s ops to ``plan``; ``carries`` names the fed-back outputs."""
    _Planner(block, plan, namer, histories or {}, carries or {}).run()
