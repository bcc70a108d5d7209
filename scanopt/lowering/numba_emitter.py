"""``backend="numba"``: a loop whose step is one fused region runs as one compiled function.

The NumPy emitter writes the module as for ``backend="numpy"`` (the work before and after the
loop, the histories); a loop that this lowering accepts is replaced by a call of a function
compiled by numba (``@numba.njit``) that runs every step: the matmuls on the carry through
BLAS (``np.dot`` into arrays allocated once per call, as column blocks where the NumPy backend
uses them), and each elementwise op of the step as a loop over its rows and columns that the
compiler vectorises, writing an array of the step (or the history row of a yielded value).
The Python interpreter then runs no step at all: no NumPy call overhead, and ``tanh`` (float32)
is a branch-free rational approximation (Eigen's, a few ulp; see ``TANH32``) that vectorises,
where NumPy calls its own ``tanh`` once per op.

Which ops form the step's region is decided by ``scan-fuse-regions``' ``fusible`` (the same
grouping as the CuPy backend's kernels): elementwise ops, static column slices, constants and
matmuls of the carry by a non-sequence. A loop is compiled when every op of its step is one
of those with a lowering here (``ELEMENTWISE``), on float32 or float64 arrays of rank 1 or 2,
and when it has no taps, ``go_backwards``, ``until``, ``keep="last"`` or pre-drawn random
numbers; otherwise it stays a NumPy loop and :func:`lower_loop` says why (the compiler warns).

Elementwise ops are lowered one loop nest each (no fusion across ops): measured on the small
LSTM, that runs within 5% of a hand-fused loop, the arrays of a step staying in L1.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

import numpy as np
from xdsl.dialects import arith
from xdsl.dialects.builtin import TensorType, f32, f64
from xdsl.ir import Operation, SSAValue

from scanopt.dialects import scan
from scanopt.errors import NumbaWarning
from scanopt.transforms.loop_utils import stages
from scanopt.transforms.scan_fuse_regions import fusible

HEADER = ("A NumPy module whose loops run as functions compiled by numba (backend=\"numba\"): "
          "it imports\nnumpy and numba. Edit the step function, not this file.")
TANH32 = "_tanh32"
# Whether numba keeps the compiled loops on disk, beside the module: only a module that is a
# file can (numba refuses cache=True for text run by exec, such as StepFunction.source()).
NUMBA_CACHE = "_numba_cache"
_NUMBA_CACHE_SOURCE = f'{NUMBA_CACHE} = "__file__" in globals()\n'
# A step's matmul above OpenBLAS's threading threshold (65536 * 4 multiply-adds) runs in the
# compiled loop as blocks of 64 columns: each on one thread (SciPy's OpenBLAS threads would
# otherwise spin on after it and slow NumPy's threaded GEMM before the loop), and a call costs
# no Python here: 16x128 @ 128x512 takes 9.8 us as 8 blocks of 64 columns against 11-12 us as
# 2 of 256, 16x128 @ 128x256 as fast as one GEMM (the development machine).
NARROW_BLOCK = 64
BLAS_THREADS_MNK = 65536 * 4
# Eigen's generic_fast_tanh_float: tanh(x) = x * P(x**2) / Q(x**2) on |x| <= 7.9053111,
# +-1 beyond; within 2 ulp of tanh over all float32 (tests/test_numba_backend.py). NaN stays NaN.
_TANH32_SOURCE = '''
@numba.njit(error_model="numpy", fastmath={"contract"}, inline="always")
def _tanh32(x):
    """tanh of a float32, branch-free (Eigen's rational approximation): it vectorises."""
    y = min(max(x, np.float32(-7.90531110763549805)), np.float32(7.90531110763549805))
    y2 = y * y
    p = y2 * np.float32(-2.76076847742355e-16) + np.float32(2.00018790482477e-13)
    p = y2 * p + np.float32(-8.60467152213735e-11)
    p = y2 * p + np.float32(5.12229709037114e-08)
    p = y2 * p + np.float32(1.48572235717979e-05)
    p = y2 * p + np.float32(6.37261928875436e-04)
    p = y2 * p + np.float32(4.89352455891786e-03)
    q = y2 * np.float32(1.19825839466702e-06) + np.float32(1.18534705686654e-04)
    q = y2 * q + np.float32(2.26843463243900e-03)
    q = y2 * q + np.float32(4.89352518554385e-03)
    r = y * p / q
    # tanh(x) = x to float32 precision below 4e-4 (Eigen's cut-off); NaN stays NaN
    return x if x != x or abs(x) < np.float32(0.0004) else r
'''


def _binary(op) -> ast.operator:
    return {"add": ast.Add, "subtract": ast.Sub, "multiply": ast.Mult,
            "true_divide": ast.Div}[op]()


# ufunc name → how one element is computed (operands are scalar expressions)
ELEMENTWISE = {
    "add", "subtract", "multiply", "true_divide", "negative", "tanh", "exp", "log", "sqrt",
    "absolute", "square", "reciprocal",
}
_FLOATS = {f32: np.float32, f64: np.float64}


def helpers() -> list[ast.stmt]:
    """Module-level statements the compiled loops need (after ``import numpy as np``)."""
    from scanopt.lowering.numpy_emitter import _comment

    return [ast.Import(names=[ast.alias("numba")]),
            _comment("numba keeps the compiled loops on disk beside this file (not when this "
                     "text is run by exec: no file)."),
            *ast.parse(_NUMBA_CACHE_SOURCE).body, *ast.parse(_TANH32_SOURCE).body]


@dataclass
class _Segment:
    """Columns ``start:stop`` of a value are ``array[..., offset:offset + stop - start]``."""
    start: int
    stop: int
    array: str
    offset: int


@dataclass
class _Value:
    shape: tuple[int, ...]
    segments: list[_Segment] | None = None  # an array (or slices of arrays)
    scalar: ast.expr | None = None  # a number


@dataclass
class Argument:
    """What the call passes: ``kind`` "sequence" | "sequence_base" (the array a sequence is
    columns of) | "history" | "init" | "param" | "block" | "steps", with the loop operand's
    index (and for a block of a weight, its columns)."""
    kind: str
    index: int = 0
    columns: tuple[int, int] | None = None


@dataclass
class NumbaLoop:
    name: str
    arguments: list[Argument]
    kernel: ast.FunctionDef




def require_numba() -> None:
    """A clear error when numba (the ``numba`` extra) is not installed."""
    import importlib.util

    from scanopt.errors import ScanValueError

    if importlib.util.find_spec("numba") is None:
        raise ScanValueError('backend="numba" needs numba, which is not installed',
                             hint="pip install 'scanopt[numba]' (numba and scipy), or use "
                                  "backend=\"numpy\".")


def warn_not_compiled(reasons: list[str], name: str) -> None:
    """One :class:`NumbaWarning` per loop left as NumPy code, at the user's call."""
    import os
    import sys
    import warnings

    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    level, frame = 1, sys._getframe(0)
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package):
        level, frame = level + 1, frame.f_back
    for reason in reasons:
        warnings.warn(f"backend=\"numba\": the loop of `{name}` runs as NumPy code: {reason}",
                      NumbaWarning, stacklevel=level)


class Unsupported(Exception):
    """Why a loop is not compiled (the message is for the user)."""


def lower_loop(loop: scan.LoopOp, name: str, histories: list[bool]) -> NumbaLoop | str:
    """The compiled function for ``loop``, or why not. ``histories[k]``: output ``k`` is kept
    for every step."""
    try:
        return _Lowering(loop, name, histories).lower()
    except Unsupported as why:
        return str(why)


class _Lowering:
    def __init__(self, loop: scan.LoopOp, name: str, histories: list[bool]):
        self.loop = loop
        self.name = name
        self.histories = histories
        self.taken: set[str] = {"np", "numba", "range", "abs", TANH32, NUMBA_CACHE, "t", "r", "j",
                                "n_steps"}
        self.values: dict[SSAValue, _Value] = {}
        self.arguments: list[Argument] = []
        self.parameters: list[str] = []
        self.setup: list[ast.stmt] = []  # scratch arrays, before the time loop
        self.step: list[ast.stmt] = []
        self.element = None

    # -- names ---------------------------------------------------------------------------

    def fresh(self, hint: str | None, default: str = "v") -> str:
        base = hint if hint and hint.isidentifier() and not hint.startswith("_") else default
        name, k = base, 1
        while name in self.taken:
            name, k = f"{base}_{k}", k + 1
        self.taken.add(name)
        return name

    def parameter(self, hint: str | None, argument: Argument) -> str:
        name = self.fresh(hint, "arg")
        self.parameters.append(name)
        self.arguments.append(argument)
        return name

    def scratch(self, shape: tuple[int, ...], hint: str | None) -> str:
        name = self.fresh(hint, "tmp")
        self.setup.append(ast.Assign([ast.Name(name, ast.Store())], ast.Call(
            ast.Attribute(ast.Name("np", ast.Load()), "empty", ast.Load()),
            [ast.Tuple([ast.Constant(d) for d in shape], ast.Load())],
            [ast.keyword("dtype", ast.Attribute(ast.Name("np", ast.Load()),
                                               np.dtype(_FLOATS[self.element]).name,
                                               ast.Load()))])))
        return name

    # -- checks --------------------------------------------------------------------------

    def check(self) -> None:
        loop = self.loop
        yield_op = loop.block.last_op
        assert isinstance(yield_op, scan.YieldOp)
        if isinstance(loop.parent_op(), scan.LoopOp):
            raise Unsupported("a loop nested in a step runs as NumPy code")
        if yield_op.until is not None:
            raise Unsupported("a loop with until(...) runs as NumPy code")
        if loop.reverse is not None or any(loop.offsets()):
            raise Unsupported("go_backwards and sequence taps run as NumPy code")
        if not all(self.histories):
            raise Unsupported('keep="last" runs as NumPy code')
        if len(loop.inits) != len(loop.carry_args) or any(
                isinstance(seq.owner, scan.RandomOp) for seq in loop.sequences):
            raise Unsupported("output taps and random draws run as NumPy code")
        elements = set()
        for value in (*loop.block.args, *(r for op in loop.block.ops for r in op.results)):
            if isinstance(value.type, TensorType) and value.uses:
                elements.add(value.type.get_element_type())
                if not 1 <= len(value.type.get_shape()) <= 2:
                    raise Unsupported("only arrays of one or two dimensions are compiled")
        if len(elements) != 1 or next(iter(elements)) not in _FLOATS:
            raise Unsupported("only loops on float32 or float64 arrays (one dtype) are compiled")
        self.element = next(iter(elements))
        stage = stages(loop)
        members: set[Operation] = set()
        for op in loop.block.ops:
            if isinstance(op, scan.YieldOp):
                continue
            if not fusible(op, stage, members):
                raise Unsupported(f"`{op.name.removeprefix('scan.')}` is not part of a fused "
                                  "region")
            if isinstance(op, scan.ElementwiseOp) and op.NUMPY_NAME not in ELEMENTWISE:
                raise Unsupported(f"`{op.NUMPY_NAME}` has no numba lowering yet")
            if not isinstance(op, scan.ElementwiseOp | scan.MatmulOp | scan.IndexOp |
                              arith.ConstantOp):
                raise Unsupported(f"`{op.name.removeprefix('scan.')}` has no numba lowering yet")
            members.add(op)
        produced = list(yield_op.values)
        if len(set(produced)) != len(produced) or not all(
                isinstance(v.owner, scan.ElementwiseOp) and v.owner.parent_block() is loop.block
                for v in produced):
            raise Unsupported("each output must be computed by an elementwise op of the step")

    # -- the function --------------------------------------------------------------------

    def lower(self) -> NumbaLoop:
        self.check()
        loop = self.loop
        yield_op = loop.block.last_op
        t = ast.Name("t", ast.Load())
        # A sequence that is some columns of an array computed before the loop (the GRU's
        # slices of the pushed-out x_t @ W_all) is read from that array, at a column offset:
        # no copy of the slice, and its rows stay contiguous.
        bases: dict[SSAValue, str] = {}
        sequence_names, offsets = [], []
        for k, (seq, arg) in enumerate(zip(loop.sequences, loop.seq_args)):
            base, offset = _column_block(seq)
            if not arg.uses:
                sequence_names.append("")
            elif base is not None:
                if base not in bases:
                    bases[base] = self.parameter(base.name_hint or "seq",
                                                 Argument("sequence_base", k))
                sequence_names.append(bases[base])
            else:
                sequence_names.append(self.parameter(seq.name_hint or "seq",
                                                     Argument("sequence", k)))
            offsets.append(offset if base is not None else 0)
        history_names = [self.parameter(f"{arg.name_hint or 'out'}s" if k < len(
            loop.carry_args) else "outs", Argument("history", k))
            for k, arg in enumerate([*loop.carry_args, *yield_op.values[len(loop.carry_args):]])]
        init_names = [self.parameter(f"{arg.name_hint or 'carry'}_init", Argument("init", k))
                      for k, arg in enumerate(loop.carry_args)]
        rows: dict[str, str] = {}
        for arg, seq_name, offset in zip(loop.seq_args, sequence_names, offsets):
            if arg.uses:
                if seq_name not in rows:
                    rows[seq_name] = self.fresh(arg.name_hint, "x_t")
                    self.step.append(ast.Assign([ast.Name(rows[seq_name], ast.Store())],
                                                ast.Subscript(ast.Name(seq_name, ast.Load()), t,
                                                              ast.Load())))
                shape = tuple(arg.type.get_shape())
                self.values[arg] = _Value(shape, [_Segment(0, shape[-1], rows[seq_name],
                                                           offset)])
        carry_names = []
        for arg, init in zip(loop.carry_args, init_names):
            name = self.fresh(arg.name_hint, "carry")
            carry_names.append(name)
            self.setup.append(ast.Assign([ast.Name(name, ast.Store())],
                                         ast.Name(init, ast.Load())))
            self.values[arg] = self.array_value(arg, name)
        matmul_rhs = {op.rhs for op in loop.block.ops if isinstance(op, scan.MatmulOp)}
        for k, arg in enumerate(loop.param_args):
            if not arg.uses or arg in matmul_rhs and all(
                    isinstance(u.operation, scan.MatmulOp) and u.index == 1 for u in arg.uses):
                continue  # not read, or read as blocks (below)
            name = self.parameter(arg.name_hint, Argument("param", k))
            self.values[arg] = self.array_value(arg, name) if isinstance(
                arg.type, TensorType) else _Value((), scalar=ast.Name(name, ast.Load()))
        # Yielded values are written straight into this step's history row.
        destinations: dict[SSAValue, str] = {}
        for k, value in enumerate(yield_op.values):
            row = self.fresh(f"{value.name_hint or 'out'}_row")
            destinations[value] = row
        self.rows = {value: (row, history_names[k])
                     for k, (value, row) in enumerate(destinations.items())}
        for op in loop.block.ops:
            if not isinstance(op, scan.YieldOp):
                self.lower_op(op)
        # The carries take this step's rows.
        carried = [(carry_names[k], self.rows[v][0])
                   for k, v in enumerate(yield_op.values[:len(carry_names)])]
        if len(carried) == 1:
            self.step.append(ast.Assign([ast.Name(carried[0][0], ast.Store())],
                                        ast.Name(carried[0][1], ast.Load())))
        elif carried:
            self.step.append(ast.Assign(
                [ast.Tuple([ast.Name(c, ast.Store()) for c, _ in carried], ast.Store())],
                ast.Tuple([ast.Name(r, ast.Load()) for _, r in carried], ast.Load())))
        self.arguments.append(Argument("steps"))
        self.parameters.append("n_steps")
        body = [*self.setup, ast.For(ast.Name("t", ast.Store()), ast.Call(
            ast.Name("range", ast.Load()), [ast.Name("n_steps", ast.Load())], []), self.step, [])]
        doc = ("All the steps of the loop, compiled by numba (see the module's header); writes "
               "the histories.")
        kernel = ast.FunctionDef(
            name=self.name,
            args=ast.arguments(posonlyargs=[], args=[ast.arg(p) for p in self.parameters],
                               kwonlyargs=[], kw_defaults=[], defaults=[]),
            body=[ast.Expr(ast.Constant(doc)), *body],
            decorator_list=[ast.Call(ast.Attribute(ast.Name("numba", ast.Load()), "njit",
                                                   ast.Load()), [],
                                     [ast.keyword("error_model", ast.Constant("numpy")),
                                      ast.keyword("fastmath", ast.Set([ast.Constant("contract")])),
                                      ast.keyword("cache", ast.Name(NUMBA_CACHE, ast.Load()))])],
            returns=None, type_params=[])
        return NumbaLoop(self.name, self.arguments, kernel)

    def array_value(self, value: SSAValue, name: str) -> _Value:
        shape = tuple(value.type.get_shape())
        return _Value(shape, [_Segment(0, shape[-1], name, 0)])

    # -- ops -----------------------------------------------------------------------------

    def lower_op(self, op: Operation) -> None:
        if isinstance(op, arith.ConstantOp):
            self.values[op.result] = _Value((), scalar=self.constant(op.value.value.data))
        elif isinstance(op, scan.IndexOp):
            self.values[op.result] = self.column_slice(op)
        elif isinstance(op, scan.MatmulOp):
            self.values[op.result] = self.matmul(op)
        else:
            self.values[op.results[0]] = self.elementwise(op)

    def constant(self, value) -> ast.expr:
        return ast.Call(ast.Attribute(ast.Name("np", ast.Load()),
                                      np.dtype(_FLOATS[self.element]).name, ast.Load()),
                        [ast.Constant(float(value))], [])

    def column_slice(self, op: scan.IndexOp) -> _Value:
        spec = [s.data for s in op.spec.data]
        source = self.values[op.operand]
        shape = tuple(op.result.type.get_shape())
        width = source.shape[-1]
        columns = spec[-1] if spec[:-1] in (["..."], [":"] * (len(source.shape) - 1)) else None
        if columns is None or columns.count(":") != 1 or source.segments is None:
            raise Unsupported("only column slices `x[..., a:b]` are compiled")
        start_text, stop_text = columns.split(":")
        start, stop = int(start_text or 0), int(stop_text or width)
        segments = [_Segment(max(s.start, start) - start, min(s.stop, stop) - start, s.array,
                             s.offset + max(start - s.start, 0))
                    for s in source.segments if s.start < stop and s.stop > start]
        return _Value(shape, segments)

    def matmul(self, op: scan.MatmulOp) -> _Value:
        from scanopt.lowering.numpy_emitter import BLAS_SMALL_MNK, MATMUL_MAX_ROWS, matmul_blocks

        lhs = self.values[op.lhs]
        rows, inner = (1, *lhs.shape) if len(lhs.shape) == 1 else lhs.shape
        if lhs.segments is None or len(lhs.segments) != 1 or lhs.segments[0].offset != 0 or \
                op.rhs not in self.loop.param_args:
            raise Unsupported("a matmul's left operand must be a whole array of the step")
        width = op.rhs.type.get_shape()[1]
        blocks = matmul_blocks(rows, inner, width) if len(lhs.shape) == 2 else 1
        if len(lhs.shape) == 2 and rows <= MATMUL_MAX_ROWS and width % NARROW_BLOCK == 0 and \
                rows * inner * width > BLAS_THREADS_MNK:
            blocks = width // NARROW_BLOCK
        step_width = width // blocks
        if rows * inner * step_width > BLAS_SMALL_MNK:
            # numba's np.dot calls SciPy's OpenBLAS: its threads and NumPy's (which ran the
            # pushed-out GEMM) would compete for the cores; NumPy's threaded GEMM is as fast.
            raise Unsupported(f"a {rows}x{inner}x{width} matmul is above the BLAS's small-matrix "
                              "size: NumPy's threaded GEMM runs it as fast")
        shape = tuple(op.result.type.get_shape())
        segments = []
        param = self.loop.param_args.index(op.rhs)
        for b in range(blocks):
            columns = (b * step_width, (b + 1) * step_width)
            block = self.parameter(f"{op.rhs.name_hint or 'w'}_{b}", Argument(
                "block", param, columns)) if blocks > 1 else \
                self.parameter(op.rhs.name_hint, Argument("block", param))
            out = self.scratch((*shape[:-1], step_width), op.result.name_hint or "prod")
            self.step.append(ast.Expr(ast.Call(
                ast.Attribute(ast.Name("np", ast.Load()), "dot", ast.Load()),
                [ast.Name(lhs.segments[0].array, ast.Load()), ast.Name(block, ast.Load()),
                 ast.Name(out, ast.Load())], [])))
            segments.append(_Segment(*columns, out, 0))
        return _Value(shape, segments)

    def elementwise(self, op: Operation) -> _Value:
        result = op.results[0]
        shape = tuple(result.type.get_shape())
        row = self.rows.get(result)
        if row is not None:
            row_name, history = row
            self.step.append(ast.Assign([ast.Name(row_name, ast.Store())], ast.Subscript(
                ast.Name(history, ast.Load()), ast.Name("t", ast.Load()), ast.Load())))
            target = row_name
        else:
            target = self.scratch(shape, result.name_hint)
        operands = [self.values[v] for v in op.operands]
        width = shape[-1]
        cuts = {0, width}
        for value in operands:
            if value.segments is not None and value.shape[-1] == width:
                cuts.update(s.start for s in value.segments)
        cuts = sorted(cuts)
        two_d = len(shape) == 2
        loops: list[ast.stmt] = []
        row_views: dict[str, str] = {}

        def row_of(array: str) -> str:
            if array not in row_views:
                row_views[array] = self.fresh(f"{array}_r")
            return row_views[array]

        for start, stop in zip(cuts, cuts[1:]):
            j = ast.Name("j", ast.Load())
            elements = [self.element_of(v, start, j, two_d, row_of, shape) for v in operands]
            store_array = row_of(target) if two_d else target
            store = ast.Subscript(ast.Name(store_array, ast.Load()),
                                  _plus(j, start), ast.Store())
            loops.append(ast.For(ast.Name("j", ast.Store()), ast.Call(
                ast.Name("range", ast.Load()), [ast.Constant(stop - start)], []),
                [ast.Assign([store], self.expression(op, elements))], []))
        if two_d:
            views = [ast.Assign([ast.Name(view, ast.Store())], ast.Subscript(
                ast.Name(array, ast.Load()), ast.Name("r", ast.Load()), ast.Load()))
                for array, view in row_views.items()]
            self.step.append(ast.For(ast.Name("r", ast.Store()), ast.Call(
                ast.Name("range", ast.Load()), [ast.Constant(shape[0])], []),
                [*views, *loops], []))
        else:
            self.step.extend(loops)
        return _Value(shape, [_Segment(0, width, target, 0)])

    def element_of(self, value: _Value, start: int, j: ast.expr, two_d: bool, row_of,
                   shape: tuple[int, ...]) -> ast.expr:
        """The scalar expression for ``value`` at column ``start + j`` (row ``r``)."""
        if value.scalar is not None:
            return value.scalar
        if value.shape[-1] == shape[-1]:
            segment = next(s for s in value.segments if s.start <= start < s.stop)
            column = _plus(j, start - segment.start + segment.offset)
        else:  # broadcast along the columns
            segment, column = value.segments[0], ast.Constant(value.segments[0].offset)
        array = segment.array
        if len(value.shape) == 2:
            if two_d and value.shape[0] == shape[0]:
                return ast.Subscript(ast.Name(row_of(array), ast.Load()), column, ast.Load())
            return ast.Subscript(ast.Name(array, ast.Load()),
                                 ast.Tuple([ast.Constant(0), column], ast.Load()), ast.Load())
        return ast.Subscript(ast.Name(array, ast.Load()), column, ast.Load())

    def expression(self, op: Operation, elements: list[ast.expr]) -> ast.expr:
        name = op.NUMPY_NAME
        if name in ("add", "subtract", "multiply", "true_divide"):
            return ast.BinOp(elements[0], _binary(name), elements[1])
        x = elements[0]
        if name == "negative":
            return ast.UnaryOp(ast.USub(), x)
        if name == "square":
            return ast.BinOp(x, ast.Mult(), x)
        if name == "reciprocal":
            return ast.BinOp(self.constant(1.0), ast.Div(), x)
        if name == "absolute":
            return ast.Call(ast.Name("abs", ast.Load()), [x], [])
        if name == "tanh" and self.element == f32:
            return ast.Call(ast.Name(TANH32, ast.Load()), [x], [])
        return ast.Call(ast.Attribute(ast.Name("np", ast.Load()), name, ast.Load()), [x], [])


def _column_block(sequence: SSAValue) -> tuple[SSAValue | None, int]:
    """``(base, start)`` when ``sequence`` is ``base[:, ..., start:stop]``, computed before the
    loop (rows of every step, some columns); else ``(None, 0)``."""
    op = sequence.owner
    if not isinstance(op, scan.IndexOp) or op.indices or \
            not isinstance(op.operand.type, TensorType):
        return None, 0
    spec = [s.data for s in op.spec.data]
    rank = len(op.operand.type.get_shape())
    if spec[:-1] not in ([":", "..."], [":"] * (rank - 1)) or spec[-1].count(":") != 1:
        return None, 0
    start, _ = spec[-1].split(":")
    return op.operand, int(start or 0)


def _plus(j: ast.expr, k: int) -> ast.expr:
    return j if k == 0 else ast.BinOp(j, ast.Add(), ast.Constant(k))

