"""``convert-scan-to-numpy``: optimised scan IR → the source of a standalone NumPy module.

The module imports NumPy only. It is built as Python ``ast`` and unparsed; names come from the
user's variables (``h``, ``x_t``), made unique with a suffix; each group of statements is preceded
by a comment quoting the user's line it comes from. Values used once and named by nobody are
written inline, so ``np.tanh(x_t @ W + h @ U + b)`` reads as the user wrote it.

Hygiene: text from the user (names, the quoted lines, the function's name) reaches the source
only as a checked identifier that no name of the generated code's own can shadow, as a string
constant, or inside a comment that cannot end before its line does.
"""

from __future__ import annotations

import ast
import contextvars
import keyword
import linecache
import math
import os
import unicodedata
from collections.abc import Callable, Iterable

import numpy as np
from xdsl.dialects import arith, func
from xdsl.dialects.builtin import FileLineColLoc, IndexType, ModuleOp, StringAttr, TensorType
from xdsl.ir import BlockArgument, Operation, SSAValue

from scanopt import symbolic
from scanopt.dialects import scan
from scanopt.dialects.scan import SYMBOLS
from scanopt.dialects.types import aval_of
from scanopt.lowering.buffers import (BufferPlan, Target, draws_into_workspace, plan_block,
                                      returns_to_copy)

_COMMENT_MARKER = "__scanopt_comment__:"

_PY_BINOPS = {"add": ast.Add, "subtract": ast.Sub, "multiply": ast.Mult,
              "true_divide": ast.Div, "floor_divide": ast.FloorDiv, "remainder": ast.Mod,
              "power": ast.Pow}
_PY_COMPARES = {"equal": ast.Eq, "not_equal": ast.NotEq, "less": ast.Lt, "less_equal": ast.LtE,
                "greater": ast.Gt, "greater_equal": ast.GtE}
_NP_NAMES = {"absolute": "abs"}
# ufuncs whose output must be passed as out= (NumPy 2 deprecates a third positional argument)
_KEYWORD_OUT = frozenset({"maximum", "minimum"})
# Names the generated module looks up globally: numpy, the builtins it calls, and the helpers of
# the first function (later functions' helpers take suffixed names). No function and no variable
# may take one of them, nor one of the generated function's own variables.
_GLOBALS = ("np", "range", "min", "len", "float", "int", "bool", "abs", "IndexError",
            "_grown", "numba", "_tanh32", "_numba_cache")  # the last three: backend="numba"
_WORKSPACE, _SPARE = "_workspace", "_spare_workspaces"
_LOCALS = ("t", "t0", "steps_here", "work")
PREDRAW_BYTES = 64 * 2**20  # pre-drawn random numbers held at once, at most
# The symbolic dimensions of the function being emitted (name → sentinel); empty as a rule.
_SYMBOLS: contextvars.ContextVar[dict[str, int]] = contextvars.ContextVar("symbols", default={})
UNTIL_FIRST_ROWS = 256  # histories of a loop that may stop early start with this many rows
UNTIL_FIRST_CHUNK = 16  # and it pre-draws random numbers for this many steps first
# OpenBLAS (NumPy's BLAS) runs a GEMM of at most 100**3 multiply-adds with its small-matrix
# kernel on AVX-512 machines, unpacked and single-threaded; above that it packs the operands,
# which for a step's few rows costs more than the arithmetic (16x128 @ 128x512: 20 us as one
# GEMM, 12 us as two of 256 columns, on the development machine).
BLAS_SMALL_MNK = 1_000_000
# Measured with 1 and 2 threads: 1.2-3x faster for up to 16 rows, mixed for 32, slower for
# 64; within 7% either way with OpenBLAS's Haswell kernel (AVX2 machines), which has no
# small-matrix kernel.
MATMUL_MAX_ROWS = 16


def matmul_blocks(m: int, k: int, n: int) -> int:
    """Into how many column blocks a step's ``(m, k) @ (k, n)`` is split: 1 (no split) unless
    the product is above the small-matrix limit and 2 to 4 blocks of a multiple of 16 columns
    bring each under it."""
    if m > MATMUL_MAX_ROWS or m * k * n <= BLAS_SMALL_MNK:
        return 1
    for blocks in (2, 3, 4):
        width, rest = divmod(n, blocks)
        if not rest and width % 16 == 0 and m * k * width <= BLAS_SMALL_MNK:
            return blocks
    return 1


def emit_numpy_module(module: ModuleOp, *, header: str = "", buffers: bool = False,
                      reserved: Iterable[str] = (),
                      extra: Callable[[list[str]], list[ast.stmt]] | None = None,
                      numba: list[str] | None = None, matmul_blocks: bool = False) -> str:
    """The source text of a module defining one function per ``func.func`` in ``module``.

    With ``buffers``, temporaries are written with ``out=`` into arrays allocated once and reused
    across steps and calls, and stacked outputs are written in place (see ``buffers.py``).

    A function is defined under its ``sym_name`` when that is a valid name the module does not
    need for itself; otherwise (``np``, ``range``, a keyword, text that is no identifier) under
    a safe one, which becomes its ``sym_name`` so that callers find it.

    ``reserved``: more module-level names no function may take; ``extra(function_names)``: more
    statements for the end of the module (an ahead-of-time build's ``run``).

    ``matmul_blocks``: a step's matmul just above the BLAS's small-matrix limit is written as
    column blocks (``matmul_blocks()``); the BLAS may then round differently, so not for
    ``exact_random=True``.

    ``numba`` (a list): loops that ``numba_emitter.lower_loop`` accepts run as one function
    compiled by numba (``backend="numba"``); why each other loop stays NumPy code is appended
    to the list.
    """
    body: list[ast.stmt] = []
    if header:
        body.append(ast.Expr(ast.Constant(header)))
    body.append(ast.Import(names=[ast.alias("numpy", "np")]))
    module_names = _Namer((*_GLOBALS, _WORKSPACE, _SPARE))
    reserved = set(reserved)
    functions = [op for op in module.ops if isinstance(op, func.FuncOp)]
    needs_grow_helper = needs_numba = False
    for k, op in enumerate(functions):
        helpers = (_WORKSPACE, _SPARE) if k == 0 else \
            (module_names.fresh(_WORKSPACE), module_names.fresh(_SPARE))
        name = _identifier(op.sym_name.data)
        if name is None or (name.startswith("__") and name.endswith("__")):
            name = "step"  # a dunder would replace the module's own (__doc__, __builtins__)
        module_names.taken |= reserved  # other module-level code's names: no function's
        name = module_names.fresh(name)
        module_names.taken -= reserved - {name}
        if name != op.sym_name.data:
            op.sym_name = StringAttr(name)
        emitter = _FunctionEmitter(op, buffers=buffers, helpers=helpers,
                                   taken=module_names.taken,
                                   numba=(module_names, numba) if numba is not None else None,
                                   matmul_blocks=matmul_blocks)
        body.extend(emitter.emit())
        needs_grow_helper |= emitter.needs_grow_helper
        needs_numba |= emitter.compiled_loops
    after_import = body.index(next(s for s in body if isinstance(s, ast.Import))) + 1
    if needs_grow_helper:
        body[after_import:after_import] = _grown_helper()
    if needs_numba:
        from scanopt.lowering.numba_emitter import helpers as numba_helpers

        body[after_import:after_import] = numba_helpers()
    if extra is not None:
        body.extend(extra([op.sym_name.data for op in functions]))
    tree = ast.Module(body=body, type_ignores=[])
    ast.fix_missing_locations(tree)
    return _render(tree)


def _render(tree: ast.Module) -> str:
    """Unparse, turning comment statements (string constants marked by ``_comment``) into real
    comments.

    They are found by parsing the unparsed text again, not by how a line looks: a docstring line
    may look like anything. Each is one line (its text is printable, so ``repr`` keeps it on one)
    and is replaced by ``# text``.
    """
    text = ast.unparse(tree)
    lines = text.split("\n")  # unparse writes no other line break: the rest are escaped
    blank_before: set[int] = set()
    reparsed = ast.parse(text)
    docstrings = {id(node.body[0]) for node in ast.walk(reparsed)
                  if isinstance(node, ast.Module | ast.FunctionDef) and node.body}
    for node in ast.walk(reparsed):
        if isinstance(node, ast.Expr) and id(node) not in docstrings and \
                isinstance(node.value, ast.Constant) and isinstance(node.value.value, str) and \
                node.value.value.startswith(_COMMENT_MARKER):
            assert node.lineno == node.end_lineno
            comment = node.value.value[len(_COMMENT_MARKER):]
            lines[node.lineno - 1] = f"{' ' * node.col_offset}# {comment}"
    for node in reparsed.body[1:]:
        first = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", ()))])
        if isinstance(node, ast.Import | ast.FunctionDef) and lines[first - 2] != "":
            blank_before.add(first - 1)
    out: list[str] = []
    for k, line in enumerate(lines):
        if k in blank_before:
            out.append("")
        out.append(line)
    return "\n".join(out) + "\n"


def _comment(text: str) -> ast.stmt:
    """A comment statement (see ``_render``): one line of printable text, whitespace (line and
    paragraph separators included) collapsed to single spaces, other unprintable characters
    escaped as in a string literal."""
    text = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii")
                   for c in " ".join(text.split()))
    return ast.Expr(ast.Constant(_COMMENT_MARKER + text))


def _identifier(hint: str | None) -> str | None:
    """``hint`` as the name Python would bind for it (NFKC-normalised, as the parser does), if it
    is a valid one: an identifier and not a keyword (soft keywords like ``match`` are fine)."""
    if not hint:
        return None
    name = unicodedata.normalize("NFKC", hint)
    return name if name.isidentifier() and not keyword.iskeyword(name) else None


class _Namer:
    """Unique, valid Python names, preferring the user's."""

    def __init__(self, taken: Iterable[str] = ()) -> None:
        self.taken: set[str] = set(taken)
        self.names: dict[SSAValue, str] = {}

    def fresh(self, hint: str) -> str:
        base = _identifier(hint) or "v"
        candidate, k = base, 1
        while candidate in self.taken:
            candidate, k = f"{base}_{k}", k + 1
        self.taken.add(candidate)
        return candidate

    def name(self, value: SSAValue, default: str = "v") -> str:
        if value not in self.names:
            self.names[value] = self.fresh(value.name_hint or default)
        return self.names[value]


class _FunctionEmitter:
    def __init__(self, function: func.FuncOp, buffers: bool = False,
                 helpers: tuple[str, str] = (_WORKSPACE, _SPARE), taken: Iterable[str] = (),
                 numba: tuple[_Namer, list[str]] | None = None, matmul_blocks: bool = False):
        self.function = function
        self.blocks = matmul_blocks
        # backend="numba": the module's namer (for the compiled functions' names) and the list
        # of reasons why a loop stays NumPy code; the loops compiled, by loop op
        self.numba = numba
        self.compiled: dict[scan.LoopOp, object] = {}
        self.not_compiled: dict[scan.LoopOp, str] = {}
        self.compiled_loops = False
        self.workspace, self.spare = helpers  # the names of this function's workspace helpers
        # Every module-level name stays visible inside: no variable shadows one.
        self.namer = _Namer({*_GLOBALS, *_LOCALS, *helpers, *taken})
        self.inline: dict[SSAValue, ast.expr] = {}
        self.last_line: tuple[str, int] | None = None
        self.use_buffers = buffers
        self.plan = BufferPlan()
        self.needs_grow_helper = False
        self.index_name = "t"  # the step index of the loop being emitted (t_1 in a nested one)
        # statements the planned loop's body makes once, before the loop (None outside it)
        self.hoisted: list[ast.stmt] | None = None
        self.histories: list[str | None] = []
        # Built ahead of time with symbolic dimensions: name → the sentinel size standing for it.
        symbols = function.attributes.get(SYMBOLS)
        self.symbols: dict[str, int] = {} if symbols is None else {
            name: attr.value.data for name, attr in symbols.data.items()}
        self.namer.taken.update(self.symbols)

    def emit(self) -> list[ast.stmt]:
        token = _SYMBOLS.set(self.symbols)
        try:
            return self._emit_function()
        finally:
            _SYMBOLS.reset(token)

    def _emit_function(self) -> list[ast.stmt]:
        block = self.function.body.block
        params = [ast.arg(self.namer.name(arg, f"arg{arg.index}")) for arg in block.args]
        if self.use_buffers:
            plan_block(block, self.plan, self.namer)
            for op in block.ops:
                if isinstance(op, scan.LoopOp) and self._compile_with_numba(op):
                    continue  # its step is not NumPy code
                if isinstance(op, scan.LoopOp):
                    last = set(op.last_indices())
                    plan_block(op.block, self.plan, self.namer,
                               {k: k not in last for k in range(len(op.outs))},
                               {k: arg.name_hint or f"carry{k}"
                                for k, arg in enumerate(op.carry_args)})
        statements = self._block(block.ops)
        doc = (f"Run the compiled loop of `{self.function.sym_name.data}`.\n\n"
               "    Arguments: the sequences, the initial value of each fed-back output, the\n"
               "    non-sequences (and arrays the step reads from its enclosing scope), then the\n"
               "    number of steps. Returns the stacked history of every output.\n    ")
        prologue: list[ast.stmt] = self._symbol_sizes(block)
        module_level: list[ast.stmt] = []
        if self.plan.buffers:
            n_steps = ast.Name(self.namer.name(block.args[-1]), ast.Load())
            prologue.append(_comment("Temporaries live in arrays reused across steps and calls."))
            prologue.append(ast.Assign([ast.Name("work", ast.Store())], _call(
                self.workspace, [n_steps, *(ast.Name(n, ast.Load()) for n in self.symbols)])))
            for name in self.plan.buffers:
                prologue.append(ast.Assign([ast.Name(name, ast.Store())], ast.Subscript(
                    ast.Name("work", ast.Load()), ast.Constant(name), ast.Load())))
            module_level = self._workspace_helper()
        module_level.extend(lowered.kernel for lowered in self.compiled.values())
        function = ast.FunctionDef(
            name=self.function.sym_name.data,
            args=ast.arguments(posonlyargs=[], args=params, kwonlyargs=[], kw_defaults=[],
                               defaults=[]),
            body=[ast.Expr(ast.Constant(doc)), *prologue, *statements],
            decorator_list=[], returns=None, type_params=[],
        )
        return [*module_level, function]

    def _compile_with_numba(self, loop: scan.LoopOp) -> bool:
        """backend="numba": whether ``loop`` runs as one compiled function (else why not is
        reported)."""
        if self.numba is None or self.symbols:
            return False
        from scanopt.lowering.numba_emitter import lower_loop

        module_names, reasons = self.numba
        last = set(loop.last_indices())
        lowered = lower_loop(loop, module_names.fresh("_compiled_steps"),
                             [k not in last for k in range(len(loop.outs))])
        if isinstance(lowered, str):
            reasons.append(lowered)
            self.not_compiled[loop] = lowered
            return False
        self.compiled[loop] = lowered
        self.compiled_loops = True
        return True

    def _call_compiled(self, loop: scan.LoopOp, histories: list[str | None],
                       n_steps: ast.expr) -> list[ast.stmt]:
        """The call of the compiled function that runs every step of ``loop``."""
        lowered = self.compiled[loop]

        def contiguous(value: SSAValue) -> ast.expr:
            return _np_call("ascontiguousarray", [self._use(value)])

        arguments: list[ast.expr] = []
        for argument in lowered.arguments:
            if argument.kind == "sequence":
                arguments.append(contiguous(loop.sequences[argument.index]))
            elif argument.kind == "sequence_base":
                arguments.append(contiguous(loop.sequences[argument.index].owner.operands[0]))
            elif argument.kind == "history":
                arguments.append(ast.Name(histories[argument.index], ast.Load()))
            elif argument.kind == "init":
                arguments.append(contiguous(loop.inits[argument.index]))
            elif argument.kind == "param":
                arguments.append(self._use(loop.non_seqs[argument.index]))
            elif argument.kind == "block" and argument.columns is None:  # a whole weight
                arguments.append(contiguous(loop.non_seqs[argument.index]))
            elif argument.kind == "block":
                start, stop = argument.columns
                arguments.append(_np_call("ascontiguousarray", [ast.Subscript(
                    self._use(loop.non_seqs[argument.index]),
                    ast.Tuple([ast.Slice(), ast.Slice(ast.Constant(start), ast.Constant(stop))],
                              ast.Load()), ast.Load())]))
            else:
                arguments.append(n_steps)
        return [_comment("Every step at once, compiled by numba (the function above)."),
                ast.Expr(_call(lowered.name, arguments))]

    def _symbol_sizes(self, block) -> list[ast.stmt]:
        """``B = X.shape[1]``: each symbolic dimension's size, from an argument that has it."""
        statements = []
        for name, sentinel in self.symbols.items():
            for arg in block.args:
                shape = arg.type.get_shape() if isinstance(arg.type, TensorType) else ()
                if sentinel in shape:
                    statements.append(ast.Assign([ast.Name(name, ast.Store())], ast.Subscript(
                        ast.Attribute(ast.Name(self.namer.name(arg), ast.Load()), "shape",
                                      ast.Load()), ast.Constant(list(shape).index(sentinel)),
                        ast.Load())))
                    break
            else:
                raise NotImplementedError(f"no argument has the symbolic dimension {name}")
        if statements:
            statements.insert(0, _comment("The sizes this module was built for as symbols."))
        return statements

    def _workspace_helper(self) -> list[ast.stmt]:
        """``_workspace(n_steps)``: one set of temporaries per concurrent call, kept between
        calls (a call takes a set and gives it back when it returns). With symbolic dimensions,
        one set per size of each (``_workspace(n_steps, B)``)."""
        n_steps = ast.Name("n_steps", ast.Load())
        sizes = ast.Tuple([n_steps, *(ast.Name(n, ast.Load()) for n in self.symbols)],
                          ast.Load()) if self.symbols else n_steps
        arrays = {}
        for name, (shape, element) in self.plan.buffers.items():
            dims = [n_steps if d is None else
                    _call("min", [ast.Constant(d[1]), n_steps]) if isinstance(d, tuple) else
                    _dim_expr(d) for d in shape]
            dtype = _dtype_expr(aval_of(TensorType(element, [])).dtype)
            arrays[name] = _np_call("empty", [ast.Tuple(dims, ast.Load())], dtype=dtype)
        doc = ("Arrays for the temporaries of one call, reused across steps and calls.\n\n"
               "    A call takes a set and gives it back when it returns, so concurrent calls "
               "never\n    share one. Nothing in it is ever returned to the caller.\n    ")
        spare = ast.Name(self.spare, ast.Load())
        body = [
            ast.Expr(ast.Constant(doc)),
            _comment("list.pop is atomic: two concurrent calls never take the same set."),
            ast.Try([ast.Assign([ast.Name("work", ast.Store())],
                                ast.Call(ast.Attribute(spare, "pop", ast.Load()), [], []))],
                    [ast.ExceptHandler(ast.Name("IndexError", ast.Load()), None, [
                        ast.Assign([ast.Name("work", ast.Store())], ast.Constant(None))])],
                    [], []),
            ast.If(ast.BoolOp(ast.Or(), [
                ast.Compare(ast.Name("work", ast.Load()), [ast.Is()], [ast.Constant(None)]),
                ast.Compare(ast.Subscript(ast.Name("work", ast.Load()), ast.Constant("n_steps"),
                                          ast.Load()), [ast.NotEq()], [sizes])]),
                [ast.Assign([ast.Name("work", ast.Store())],
                            ast.Dict([ast.Constant("n_steps")], [sizes])),
                 *(ast.Assign([ast.Subscript(ast.Name("work", ast.Load()), ast.Constant(k),
                                             ast.Store())], array)
                   for k, array in arrays.items())], []),
            ast.Return(ast.Name("work", ast.Load())),
        ]
        helper = ast.FunctionDef(
            name=self.workspace,
            args=ast.arguments(posonlyargs=[], args=[ast.arg("n_steps"),
                                                     *(ast.arg(n) for n in self.symbols)],
                               kwonlyargs=[], kw_defaults=[], defaults=[]),
            body=body, decorator_list=[], returns=None, type_params=[])
        return [ast.Assign([ast.Name(self.spare, ast.Store())], ast.List([], ast.Load())),
                helper]

    # -- blocks -------------------------------------------------------------------------------

    def _block(self, ops: Iterable[Operation]) -> list[ast.stmt]:
        out: list[ast.stmt] = []
        for op in ops:
            out.extend(self._op(op))
        return out

    def _origin(self, op: Operation) -> list[ast.stmt]:
        loc = op.attributes.get("loc")
        if not isinstance(loc, FileLineColLoc):
            return []
        key = (loc.filename.data, loc.line.data)
        if key == self.last_line:
            return []
        self.last_line = key
        text = linecache.getline(key[0], key[1]).strip()
        return [_comment(f"{os.path.basename(key[0])}:{key[1]}: {text}")]

    def _op(self, op: Operation) -> list[ast.stmt]:
        if isinstance(op, func.ReturnOp):
            values = []
            copies = returns_to_copy(op)
            for k, v in enumerate(op.arguments):
                use = self._use(v)
                if v in self.plan.copy_on_return or k in copies:
                    use = ast.Call(ast.Attribute(use, "copy", ast.Load()), [], [])
                values.append(use)
            value = values[0] if len(values) == 1 else ast.Tuple(values, ast.Load())
            give_back = []
            if self.plan.buffers:
                give_back.append(ast.Expr(ast.Call(ast.Attribute(
                    ast.Name(self.spare, ast.Load()), "append", ast.Load()),
                    [ast.Name("work", ast.Load())], [])))
            return [*give_back, ast.Return(value)]
        if op in self.plan.targets:
            return self._op_with_out(op, self.plan.targets[op])
        if op in self.plan.folded:
            self.inline[op.results[0]] = self._expression(op)
            return []
        if isinstance(op, scan.LoopOp):
            return self._loop(op)
        if isinstance(op, scan.RandomOp) and op.steps:
            return []  # drawn chunk by chunk inside the loop's emission
        if isinstance(op, arith.ConstantOp):
            self.inline[op.result] = _literal(op)
            return []
        expr = self._expression(op)
        result = op.results[0]
        if op in self.plan.fixed_views and self.hoisted is not None:
            # A view of a workspace array: the same array every step, made before the loop.
            target = self.namer.name(result, _default_name(op))
            self.hoisted.append(ast.Assign([ast.Name(target, ast.Store())], expr))
            return []
        if self._inlinable(op):
            self.inline[result] = expr
            return []
        target = self.namer.name(result, _default_name(op))
        return [*self._origin(op), ast.Assign([ast.Name(target, ast.Store())], expr)]

    def _op_with_out(self, op: Operation, target: Target) -> list[ast.stmt]:
        """``np.f(a, b, out=target)``: the result is written where the buffer plan says."""
        out: list[ast.stmt] = [*self._origin(op)]
        result = op.results[0]
        if target.kind == "history":
            name = self.namer.name(result, "out")
            slot = ast.Subscript(ast.Name(self.histories[target.output], ast.Load()),
                                 ast.Name(self.index_name, ast.Load()), ast.Load())
            out.append(ast.Assign([ast.Name(name, ast.Store())], slot))
        elif target.kind == "inplace":
            name = self.namer.name(target.operand)
            self.namer.names[result] = name
        elif target.kind == "pingpong":
            name = self.namer.name(result, "out")
            even = ast.Compare(ast.BinOp(ast.Name(self.index_name, ast.Load()), ast.Mod(),
                                         ast.Constant(2)),
                               [ast.Eq()], [ast.Constant(0)])
            first, second = self.plan.pingpong[target.output]
            out.append(ast.Assign([ast.Name(name, ast.Store())], ast.IfExp(
                even, ast.Name(first, ast.Load()), ast.Name(second, ast.Load()))))
        else:
            name = target.buffer
            self.namer.names[result] = name
        destination = ast.Name(name, ast.Load())
        blocks = self._matmul_in_blocks(op, destination, fixed=target.kind == "buffer")
        if blocks is not None:
            out.extend(blocks)
            return out
        out.append(ast.Expr(self._out_call(op, destination)))
        return out

    def _matmul_in_blocks(self, op: Operation, destination: ast.Name,
                          fixed: bool) -> list[ast.stmt] | None:
        """A step's ``h @ U`` (``U`` invariant) as column blocks small enough for the BLAS's
        small-matrix kernel, when one GEMM would be just above its limit (``matmul_blocks``);
        the blocks of ``U``, and of the output when it is a workspace array, are views made
        before the loop. None: one call."""
        if not self.blocks or self.hoisted is None or self.symbols or \
                not isinstance(op, scan.MatmulOp):
            return None
        loop = op.parent_op()
        lhs, rhs = aval_of(op.lhs.type).shape, aval_of(op.rhs.type).shape
        if len(lhs) != 2 or len(rhs) != 2 or not isinstance(loop, scan.LoopOp) or \
                op.rhs not in loop.param_args:
            return None
        blocks = matmul_blocks(lhs[0], lhs[1], rhs[1])
        if blocks == 1:
            return None
        width = rhs[1] // blocks
        rhs_name = self._use(op.rhs)
        assert isinstance(rhs_name, ast.Name)
        statements: list[ast.stmt] = [_comment(
            f"{rhs_name.id} in {blocks} blocks of {width} columns: {lhs[0]}x{lhs[1]}x{width} "
            "products fit the BLAS's small-matrix kernel")]
        for j in range(blocks):
            columns = ast.Tuple([ast.Slice(), ast.Slice(ast.Constant(j * width),
                                                        ast.Constant((j + 1) * width))],
                                ast.Load())
            rhs_block = self.namer.fresh(f"{rhs_name.id}_{j}")
            self.hoisted.append(ast.Assign([ast.Name(rhs_block, ast.Store())],
                                           ast.Subscript(rhs_name, columns, ast.Load())))
            out_block: ast.expr = ast.Subscript(destination, columns, ast.Load())
            if fixed:
                name = self.namer.fresh(f"{destination.id}_{j}")
                self.hoisted.append(ast.Assign([ast.Name(name, ast.Store())], out_block))
                out_block = ast.Name(name, ast.Load())
            statements.append(ast.Expr(self._ufunc_call(
                "matmul", [self._use(op.lhs), ast.Name(rhs_block, ast.Load())], out_block)))
        return statements

    def _ufunc_call(self, name: str, operands: list[ast.expr], destination: ast.expr) -> ast.Call:
        """``np.name(*operands, out=destination)``; in the step loop the output is passed as the
        last positional argument, which NumPy parses faster than the keyword (about 0.1 us a
        call, a few percent of a small cell's step)."""
        if self.hoisted is not None and name not in _KEYWORD_OUT:
            return _np_call(name, [*operands, destination])
        return _np_call(name, operands, out=destination)

    def _out_call(self, op: Operation, destination: ast.expr) -> ast.expr:
        operands = [self._use(v) for v in op.operands]
        if isinstance(op, scan.ElementwiseOp):
            name = {"true_divide": "divide"}.get(op.NUMPY_NAME, op.NUMPY_NAME)
            return self._ufunc_call(name, operands, destination)
        if isinstance(op, scan.MatmulOp):
            lhs_shape = aval_of(op.lhs.type).shape
            if len(lhs_shape) >= 3 and len(aval_of(op.rhs.type).shape) == 2:
                rows = ast.Call(ast.Attribute(operands[0], "reshape", ast.Load()),
                                [_int_literal(-1), _dim_expr(lhs_shape[-1])], [])
                flat_out = ast.Call(ast.Attribute(destination, "reshape", ast.Load()),
                                    [_int_literal(-1),
                                     _dim_expr(aval_of(op.result.type).shape[-1])], [])
                return _np_call("matmul", [rows, operands[1]], out=flat_out)
            return self._ufunc_call("matmul", operands, destination)
        if isinstance(op, scan.ReduceOp | scan.ConcatOp | scan.StackOp | scan.ClipOp):
            call = self._expression(op)
            assert isinstance(call, ast.Call)
            call.keywords.append(ast.keyword("out", destination))
            return call
        if isinstance(op, scan.CastOp):
            compare = op.operand.owner
            if compare in self.plan.folded:
                # NumPy writes the comparison's booleans into the target's dtype directly.
                return _np_call(compare.NUMPY_NAME, [self._use(v) for v in compare.operands],
                                out=destination)
            return _np_call("copyto", [destination, operands[0]],
                            casting=ast.Constant("unsafe"))
        if isinstance(op, scan.TransposeOp):
            return _np_call("copyto", [destination, self._transpose_view(op, operands[0])])
        if isinstance(op, scan.RandomOp):
            dtype = aval_of(op.result.type).dtype
            kwargs = [ast.keyword("out", destination)]
            if dtype != np.float64:
                kwargs.insert(0, ast.keyword("dtype", _dtype_expr(dtype)))
            return ast.Call(ast.Attribute(operands[0], _known(op.method.data,
                                                               scan.RandomOp.METHODS),
                                          ast.Load()), [], kwargs)
        raise NotImplementedError(op.name)

    def _inlinable(self, op: Operation) -> bool:
        if isinstance(op, scan.RandomOp):
            return False  # draws stay statements, in the user's order
        if self.use_buffers and not isinstance(op, scan.IndexOp | scan.TransposeOp):
            return False  # a temporary may be overwritten in place: it needs a name
        result = op.results[0]
        uses = list(result.uses)
        if len(uses) != 1 or result.name_hint:
            return False
        user = uses[0].operation
        return user.parent_block() is op.parent_block() and not isinstance(
            user, scan.YieldOp | func.ReturnOp | scan.LoopOp)

    def _use(self, value: SSAValue) -> ast.expr:
        if value in self.inline:
            return self.inline[value]
        return ast.Name(self.namer.name(value), ast.Load())

    # -- the loop -----------------------------------------------------------------------------

    def _loop(self, loop: scan.LoopOp) -> list[ast.stmt]:
        if not isinstance(loop.parent_op(), scan.LoopOp):
            return self._loop_body(loop)
        # A loop nested in a step (scanopt.scan inside the step): its own step index.
        outer = (self.index_name, self.histories)
        self.index_name = self.namer.fresh("t")
        try:
            return self._loop_body(loop)
        finally:
            self.index_name, self.histories = outer

    def _loop_body(self, loop: scan.LoopOp) -> list[ast.stmt]:
        out: list[ast.stmt] = []
        # The buffer plan covers the step's own loop; a nested loop allocates as it goes.
        planned = not isinstance(loop.parent_op(), scan.LoopOp)
        in_history = self.plan.in_history if planned else set()
        copy_carries = self.plan.copy_carries if planned else set()
        n_steps = self._use(loop.n_steps) if loop.n_steps is not None else None
        assert n_steps is not None, "scan.loop without n_steps cannot be emitted"
        body = loop.block
        yield_op = body.last_op
        assert isinstance(yield_op, scan.YieldOp)
        until = yield_op.until
        histories: list[str | None] = []
        last_only = loop.last_indices()
        last_outputs: dict[int, str] = {}  # per-step outputs kept last: their variable
        carry_hints = [arg.name_hint or f"carry{k}" for k, arg in enumerate(loop.carry_args)]
        for k, (result, value) in enumerate(zip(loop.outs, yield_op.values)):
            hint = carry_hints[k] if k < len(carry_hints) else value.name_hint or f"out{k}"
            if k < len(carry_hints) and value.name_hint in (None, hint) and \
                    not isinstance(value, BlockArgument):
                value.name_hint = f"{hint}_new"  # not h_1: the step's next value of h
            if k in last_only:
                histories.append(None)
                if k >= len(carry_hints):
                    last_outputs[k] = self.namer.fresh(f"{hint}_last")
                    out.append(ast.Assign([ast.Name(last_outputs[k], ast.Store())],
                                          ast.Constant(None)))
                continue
            name = self.namer.name(result, hint + "s")
            histories.append(name)
            aval = aval_of(value.type)
            # A loop that may stop early starts small and grows (n_steps is only its maximum).
            rows = n_steps if until is None else _call("min", [n_steps, ast.Constant(
                UNTIL_FIRST_ROWS)])
            shape = ast.Tuple([rows, *(_dim_expr(d) for d in aval.shape)], ast.Load())
            out.append(ast.Assign(
                [ast.Name(name, ast.Store())],
                _np_call("empty", [shape], dtype=_dtype_expr(np.asarray(aval.dummy()).dtype))))
        self.histories = histories
        if until is not None:
            steps_run = self.namer.fresh("steps_run")
            out.append(_comment("The loop stops after the first step whose until(...) holds."))
            out.append(ast.Assign([ast.Name(steps_run, ast.Store())], n_steps))
        for outer, arg in zip(loop.non_seqs, loop.param_args):
            # Non-sequences are the same objects inside: share the name.
            self.namer.names[arg] = self.namer.name(outer) if outer not in self.inline else \
                self.namer.name(arg)
            if outer in self.inline:
                out.append(ast.Assign([ast.Name(self.namer.names[arg], ast.Store())],
                                      self.inline[outer]))
        if loop in self.compiled:
            out.extend(self._call_compiled(loop, histories, n_steps))
            for result, name in zip(loop.outs, histories):
                self.namer.names[result] = name
            return out
        if loop in self.not_compiled:
            out.append(_comment(f"backend=\"numba\": this loop runs as NumPy code: "
                                f"{self.not_compiled[loop]}."))
        # Carries start from their initial values.
        carry_names = []
        for init, arg in zip(loop.inits, loop.carry_args):
            name = self.namer.name(arg)
            carry_names.append(name)
            out.append(ast.Assign([ast.Name(name, ast.Store())], self._use(init)))
        index = ast.Name(self.index_name, ast.Load())
        inner: list[ast.stmt] = []
        predraws = [(seq, arg) for seq, arg in zip(loop.sequences, loop.seq_args)
                    if isinstance(seq.owner, scan.RandomOp) and seq.owner.steps]
        chunk_start = ast.Name("t0", ast.Load())
        if until is not None and any(name is not None for name in histories):
            inner.extend(self._grow_histories(histories, n_steps))
        for seq, arg, offset in zip(loop.sequences, loop.seq_args, loop.offsets()):
            if not arg.uses:
                continue
            position: ast.expr = index
            if (seq, arg) in predraws:
                position = ast.BinOp(index, ast.Sub(), chunk_start)
            elif loop.reverse is not None and isinstance(loop.parent_op(), scan.LoopOp):
                # A nested loop's sequence is read from its own end (Theano's go_backwards).
                position = ast.BinOp(ast.BinOp(_call("len", [self._use(seq)]), ast.Sub(),
                                               ast.Constant(1)), ast.Sub(), index)
            elif loop.reverse is not None:
                position = ast.BinOp(ast.BinOp(n_steps, ast.Sub(), ast.Constant(1)), ast.Sub(),
                                     index)
            if offset:  # a tap: this slice is `offset` rows further into the sequence
                position = ast.BinOp(position, ast.Add(), ast.Constant(offset))
            inner.append(ast.Assign([ast.Name(self.namer.name(arg), ast.Store())],
                                    ast.Subscript(self._use(seq), position, ast.Load())))
        # Only the planned loop hoists (a nested loop's body, or one without the buffer plan,
        # is emitted as it is).
        outer_hoisted, self.hoisted = self.hoisted, [] if planned and self.use_buffers else None
        try:
            for op in body.ops:
                if op is yield_op:
                    continue
                inner.extend(self._op(op))
            hoisted = self.hoisted or []
        finally:
            self.hoisted = outer_hoisted
        if hoisted:
            out.append(_comment("Views of the weights and of the step's workspace arrays, made "
                                "once."))
            out.extend(hoisted)
        if planned and any(op in self.plan.targets for op in body.ops):
            out.append(_comment("In the loop, each NumPy call's last argument is its out= array."))
        yielded = [self._use(v) for v in yield_op.values]
        for k, (name, value) in enumerate(zip(histories, yielded)):
            if k in in_history:
                continue  # already written into its slot
            if name is not None:
                inner.append(ast.Assign([ast.Subscript(ast.Name(name, ast.Load()), index,
                                                       ast.Store())], value))
            elif k in last_outputs:
                inner.append(ast.Assign([ast.Name(last_outputs[k], ast.Store())], value))
        if carry_names:
            targets = [ast.Name(n, ast.Store()) for n in carry_names]
            values = yielded[: len(carry_names)]
            for k in copy_carries:
                # The stacked copy if there is one, else a copy: the buffer is reused.
                values[k] = ast.Subscript(ast.Name(histories[k], ast.Load()), index,
                                          ast.Load()) if histories[k] is not None else \
                    ast.Call(ast.Attribute(values[k], "copy", ast.Load()), [], [])
            pairs = [(t, v) for t, v in zip(targets, values)
                     if not (isinstance(v, ast.Name) and v.id == t.id)]
            if len(pairs) == 1:
                inner.append(ast.Assign([pairs[0][0]], pairs[0][1]))
            elif pairs:
                inner.append(ast.Assign([ast.Tuple([p[0] for p in pairs], ast.Store())],
                                        ast.Tuple([p[1] for p in pairs], ast.Load())))
        if until is not None:
            inner.append(ast.If(self._use(until), [
                ast.Assign([ast.Name(steps_run, ast.Store())],
                           ast.BinOp(index, ast.Add(), ast.Constant(1))),
                ast.Break()], []))
        if not inner:
            inner.append(ast.Pass())
        if predraws:
            out.extend(self._chunked_loop(predraws, n_steps, inner,
                                          steps_run if until is not None else None))
        else:
            out.append(ast.For(ast.Name(self.index_name, ast.Store()),
                               _call("range", [n_steps]), inner, []))
        if until is not None:
            for name in histories:
                if name is not None:  # the steps that ran
                    out.append(ast.Assign([ast.Name(name, ast.Store())], ast.Subscript(
                        ast.Name(name, ast.Load()),
                        ast.Slice(None, ast.Name(steps_run, ast.Load())), ast.Load())))
        for k, (result, name) in enumerate(zip(loop.outs, histories)):
            if name is not None:
                self.namer.names[result] = name
                continue
            if not result.uses:
                continue  # an older value of an output read at several taps
            # Only the last value is kept: hand the user a copy, never a buffer of the loop
            # (nor, after zero steps, their own initial array).
            source = carry_names[k] if k < len(carry_names) else last_outputs[k]
            final = self.namer.name(result, result.name_hint or f"{source}_last")
            value = ast.Name(source, ast.Load())
            # np.array: a 0-d value may be a NumPy scalar at run time; the user gets an array.
            value_type = yield_op.values[k].type
            copy = _np_call("array", [value]) if not isinstance(value_type, TensorType) or \
                not value_type.get_shape() else \
                ast.Call(ast.Attribute(value, "copy", ast.Load()), [], [])
            out.append(ast.Assign([ast.Name(final, ast.Store())], copy))
        return out

    def _grow_histories(self, histories: list[str | None], n_steps: ast.expr) -> list[ast.stmt]:
        """``if t == len(xs): xs = _grown(xs, n_steps)``: room for this step's row."""
        self.needs_grow_helper = True
        statements = []
        for name in histories:
            if name is None:
                continue
            history = ast.Name(name, ast.Load())
            statements.append(ast.If(
                ast.Compare(ast.Name(self.index_name, ast.Load()), [ast.Eq()],
                            [_call("len", [history])]),
                [ast.Assign([ast.Name(name, ast.Store())], _call("_grown", [history, n_steps]))],
                []))
        return statements

    def _chunked_loop(self, predraws, n_steps: ast.expr, inner: list[ast.stmt],
                      steps_run: str | None = None):
        """The step loop inside a loop over chunks of steps, drawing each chunk's randoms first.
        ``steps_run``: the variable that an early stop (until) sets below n_steps."""
        bytes_per_step = sum(
            int(np.prod(aval_of(arg.type).shape)) * aval_of(arg.type).dtype.itemsize
            for _, arg in predraws)
        chunk = max(1, PREDRAW_BYTES // max(bytes_per_step, 1))
        steps_here = ast.Name("steps_here", ast.Load())
        # A loop that may stop early draws for a few steps first, then for twice as many each
        # time: what it draws past the stop stays small.
        growing = self.namer.fresh("chunk_steps") if steps_run is not None else None
        body: list[ast.stmt] = [ast.Assign(
            [ast.Name("steps_here", ast.Store())],
            _call("min", [ast.Name(growing, ast.Load()) if growing else ast.Constant(chunk),
                          ast.BinOp(n_steps, ast.Sub(), ast.Name("t0", ast.Load()))]))]
        released: list[str] = []  # names holding a chunk: dropped before the next is drawn
        for seq, arg in predraws:
            op = seq.owner
            body.extend(self._origin(op))
            name = self.namer.name(seq)
            if self.use_buffers and draws_into_workspace(op):
                # Drawn into one workspace array: no chunk is ever allocated twice.
                buffer = self.namer.fresh(f"{name}_chunk")
                self.plan.buffers[buffer] = (
                    (("min", chunk), *op.size.get_values()), op.result.type.get_element_type())
                body.append(ast.Assign([ast.Name(name, ast.Store())], ast.Subscript(
                    ast.Name(buffer, ast.Load()), ast.Slice(None, steps_here), ast.Load())))
                if op.method.data == "logistic":
                    body.extend(_logistic_in_place(self._use(op.rng), name,
                                                   aval_of(op.result.type).dtype))
                    continue
                call = self._random(op, [self._use(op.rng)])
                call.keywords = [k for k in call.keywords if k.arg != "size"]
                call.keywords.append(ast.keyword("out", ast.Name(name, ast.Load())))
                body.append(ast.Expr(call))
                continue
            size = ast.Tuple([steps_here, *(ast.Constant(d) for d in op.size.get_values())],
                             ast.Load())
            call = self._random(op, [self._use(v) for v in (op.rng, *op.params)])
            call.keywords = [k for k in call.keywords if k.arg != "size"]
            call.keywords.insert(0, ast.keyword("size", size))
            body.append(ast.Assign([ast.Name(name, ast.Store())], call))
            released.extend([name, self.namer.name(arg)] if arg.uses else [name])
        body.append(ast.For(ast.Name(self.index_name, ast.Store()), _call("range", [
            ast.Name("t0", ast.Load()),
            ast.BinOp(ast.Name("t0", ast.Load()), ast.Add(), steps_here)]), inner, []))
        if steps_run is not None:
            body.append(ast.If(ast.Compare(ast.Name(steps_run, ast.Load()), [ast.Lt()],
                                           [n_steps]), [ast.Break()], []))
        if released:
            body.append(ast.Assign([ast.Name(n, ast.Store()) for n in released],
                                   ast.Constant(None)))
        if growing:
            first = min(UNTIL_FIRST_CHUNK, chunk)
            t0 = ast.Name("t0", ast.Load())
            body.extend([
                ast.AugAssign(ast.Name("t0", ast.Store()), ast.Add(), steps_here),
                ast.Assign([ast.Name(growing, ast.Store())], _call("min", [
                    ast.BinOp(ast.Constant(2), ast.Mult(), ast.Name(growing, ast.Load())),
                    ast.Constant(chunk)]))])
            return [
                _comment(f"Draws that do not depend on the loop state, made {first}, then twice "
                         f"as many steps at a time (at most {chunk} steps, "
                         f"{PREDRAW_BYTES // 2**20} MiB): the loop may stop early."),
                ast.Assign([ast.Name("t0", ast.Store())], ast.Constant(0)),
                ast.Assign([ast.Name(growing, ast.Store())], ast.Constant(first)),
                ast.While(ast.Compare(t0, [ast.Lt()], [n_steps]), body, []),
            ]
        return [
            _comment(f"Draws that do not depend on the loop state, made {chunk} steps at a time "
                     f"(at most {PREDRAW_BYTES // 2**20} MiB)."),
            ast.For(ast.Name("t0", ast.Store()),
                    _call("range", [ast.Constant(0), n_steps, ast.Constant(chunk)]), body, []),
        ]

    # -- one op -------------------------------------------------------------------------------

    def _expression(self, op: Operation) -> ast.expr:
        operands = [self._use(v) for v in op.operands]
        if isinstance(op, scan.BinaryOp):
            name = op.NUMPY_NAME
            if name in _PY_BINOPS:
                return ast.BinOp(operands[0], _PY_BINOPS[name](), operands[1])
            if name in _PY_COMPARES:
                return ast.Compare(operands[0], [_PY_COMPARES[name]()], [operands[1]])
            return _np_call(name, operands)
        if isinstance(op, scan.UnaryOp):
            if op.NUMPY_NAME == "negative":
                return ast.UnaryOp(ast.USub(), operands[0])
            if op.NUMPY_NAME == "absolute" and not isinstance(op.result.type, TensorType):
                return _call("abs", operands)  # abs() of a Python scalar: a Python scalar
            return _np_call(_NP_NAMES.get(op.NUMPY_NAME, op.NUMPY_NAME), operands)
        if isinstance(op, scan.MatmulOp):
            lhs_shape = aval_of(op.lhs.type).shape
            if len(lhs_shape) >= 3 and len(aval_of(op.rhs.type).shape) == 2:
                # A stack of matrices times one matrix: one GEMM over all their rows.
                rows = ast.Call(ast.Attribute(operands[0], "reshape", ast.Load()),
                                [_int_literal(-1), _dim_expr(lhs_shape[-1])], [])
                product = ast.BinOp(rows, ast.MatMult(), operands[1])
                return ast.Call(ast.Attribute(product, "reshape", ast.Load()),
                                [_shape_expr(aval_of(op.result.type).shape)], [])
            return ast.BinOp(operands[0], ast.MatMult(), operands[1])
        if isinstance(op, scan.WhereOp):
            return _np_call("where", operands)
        if isinstance(op, scan.ClipOp):
            return _np_call("clip", operands)
        if isinstance(op, scan.CastOp):
            dtype = _dtype_expr(aval_of(op.result.type).dtype)
            if not isinstance(op.result.type, TensorType):
                # float(x), int(x), bool(x): a Python scalar
                kind = aval_of(op.result.type).dtype.kind
                return _call({"f": "float", "i": "int", "b": "bool"}[kind], operands)
            if isinstance(op.operand.type, TensorType):
                return ast.Call(ast.Attribute(operands[0], "astype", ast.Load()), [dtype], [])
            return ast.Call(dtype, [operands[0]], [])
        if isinstance(op, scan.ReduceOp):
            kwargs = {}
            if op.axis is not None:
                axes = op.axis.get_values()
                kwargs["axis"] = ast.Constant(axes[0]) if len(axes) == 1 else \
                    ast.Tuple([ast.Constant(a) for a in axes], ast.Load())
            if op.keepdims is not None:
                kwargs["keepdims"] = ast.Constant(True)
            return _np_call(_known(op.kind.data, scan.ReduceOp.KINDS), operands, **kwargs)
        if isinstance(op, scan.TransposeOp):
            view = self._transpose_view(op, operands[0])
            if "contiguous" in op.attributes:
                return _np_call("ascontiguousarray", [view])
            return view
        if isinstance(op, scan.ReshapeOp):
            shape = aval_of(op.result.type).shape
            return _np_call("reshape", [operands[0], _shape_expr(shape)])
        if isinstance(op, scan.IndexOp):
            return ast.Subscript(operands[0], self._index_expr(op, operands[1:]), ast.Load())
        if isinstance(op, scan.ConcatOp | scan.StackOp):
            name = "concatenate" if isinstance(op, scan.ConcatOp) else "stack"
            return _np_call(name, [ast.Tuple(operands, ast.Load())],
                            axis=ast.Constant(op.axis.value.data))
        if isinstance(op, scan.FullOp):
            aval = aval_of(op.result.type)
            return _np_call("full", [_shape_expr(aval.shape), operands[0]],
                            dtype=_dtype_expr(aval.dtype))
        if isinstance(op, scan.RandomOp):
            return self._random(op, operands)
        if isinstance(op, scan.DimOp):
            return ast.Subscript(ast.Attribute(operands[0], "shape", ast.Load()),
                                 ast.Constant(op.axis.value.data), ast.Load())
        if isinstance(op, scan.CountOp):
            if op.n is not None:
                return _call("int", [operands[0]])
            lengths = [_call("len", [o]) for o in operands]
            return lengths[0] if len(lengths) == 1 else _call("min", lengths)
        if isinstance(op, scan.LastOp):
            def copied(value: ast.expr) -> ast.expr:
                # A row of a 1-D history is a NumPy scalar: np.array makes it an array again.
                if aval_of(op.result.type).shape == ():
                    return _np_call("array", [value])
                return ast.Call(ast.Attribute(value, "copy", ast.Load()), [], [])

            last = copied(ast.Subscript(operands[0], _int_literal(-1), ast.Load()))
            if len(operands) == 1:
                return last
            return ast.IfExp(_call("len", [operands[0]]), last, copied(operands[1]))
        raise NotImplementedError(f"no NumPy lowering for {op.name}")

    @staticmethod
    def _transpose_view(op: scan.TransposeOp, operand: ast.expr) -> ast.expr:
        perm = list(op.perm.get_values())
        if perm == list(range(len(perm)))[::-1]:
            return ast.Attribute(operand, "T", ast.Load())
        return _np_call("transpose", [operand,
                                      ast.Tuple([ast.Constant(p) for p in perm], ast.Load())])

    def _index_expr(self, op: scan.IndexOp, dynamic: list[ast.expr]) -> ast.expr:
        dynamic_iter = iter(dynamic)
        parts: list[ast.expr] = []
        for entry in (s.data for s in op.spec.data):
            if entry == "?":
                parts.append(next(dynamic_iter))
            elif entry == "None":
                parts.append(ast.Constant(None))
            elif entry == "...":
                parts.append(ast.Constant(Ellipsis))
            elif ":" in entry and entry.count(":") <= 2:
                bounds = [_dim_expr(_index_int(p)) if p else None for p in entry.split(":")]
                parts.append(ast.Slice(*bounds))
            else:
                parts.append(_dim_expr(_index_int(entry)))
        return parts[0] if len(parts) == 1 else ast.Tuple(parts, ast.Load())

    def _random(self, op: scan.RandomOp, operands: list[ast.expr]) -> ast.expr:
        method = _known(op.method.data, scan.RandomOp.METHODS)
        rng, params = operands[0], operands[1:]
        kwargs: dict[str, ast.expr] = {}
        if op.size is not None:
            kwargs["size"] = _shape_expr(tuple(op.size.get_values()))
        if method in ("random", "standard_normal"):
            dtype = aval_of(op.result.type).dtype
            if isinstance(op.result.type, TensorType) and dtype != np.float64:
                kwargs["dtype"] = _dtype_expr(dtype)
        call = ast.Call(ast.Attribute(rng, method, ast.Load()), params,
                        [ast.keyword(k, v) for k, v in kwargs.items()])
        dtype = aval_of(op.result.type).dtype
        if method == "logistic" and dtype != np.float64:
            return ast.Call(ast.Attribute(call, "astype", ast.Load()), [_dtype_expr(dtype)], [])
        return call


# ---------------------------------------------------------------------------------------------


def _grown_helper() -> list[ast.stmt]:
    """``_grown(history, n_steps)``: a history with room for twice as many steps (at most
    ``n_steps``), for loops that may stop early (their n_steps is only a maximum)."""
    source = (
        "def _grown(history, n_steps):\n"
        "    \"\"\"The history with room for twice as many steps, at most n_steps.\"\"\"\n"
        "    bigger = np.empty((min(2 * len(history), n_steps), *history.shape[1:]), "
        "history.dtype)\n"
        "    bigger[:len(history)] = history\n"
        "    return bigger\n")
    return ast.parse(source).body


def _known(name: str, names: Iterable[str]) -> str:
    """A function or method name read from the IR, if its op's verifier allows it: an
    unverified module never puts other text in the code."""
    if name not in names:
        raise NotImplementedError(f"no NumPy lowering for {name!r}")
    return name


def _index_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise NotImplementedError(f"no NumPy lowering for the index {text!r}") from None


def _logistic_in_place(rng: ast.expr, name: str, dtype: np.dtype) -> list[ast.stmt]:
    """Standard logistic noise in ``name``: ``-log(1/u - 1)`` of uniforms ``u``, in place."""
    target = ast.Name(name, ast.Load())
    draw = ast.Call(ast.Attribute(rng, "random", ast.Load()), [], [
        *([ast.keyword("dtype", _dtype_expr(dtype))] if dtype != np.float64 else []),
        ast.keyword("out", target)])
    steps = [_np_call("reciprocal", [target], out=target),
             _np_call("subtract", [target, ast.Constant(1)], out=target),
             _np_call("log", [target], out=target),
             _np_call("negative", [target], out=target)]
    # u == 0 gives 1/u = inf and noise -inf, as it should: no warning for it.
    guarded = ast.With([ast.withitem(_np_call("errstate", [], divide=ast.Constant("ignore")))],
                       [ast.Expr(call) for call in steps])
    return [ast.Expr(draw), guarded]


def _default_name(op: Operation) -> str:
    if isinstance(op, scan.RandomOp):
        return "draw"
    return {scan.MatmulOp: "prod", scan.ReduceOp: "total"}.get(type(op), "tmp")


def _call(name: str, args: list[ast.expr], **kwargs: ast.expr) -> ast.Call:
    return ast.Call(ast.Name(name, ast.Load()), args,
                    [ast.keyword(k, v) for k, v in kwargs.items()])


def _np_call(name: str, args: list[ast.expr], **kwargs: ast.expr) -> ast.Call:
    return ast.Call(ast.Attribute(ast.Name("np", ast.Load()), name, ast.Load()), args,
                    [ast.keyword(k, v) for k, v in kwargs.items()])


def _dtype_expr(dtype: np.dtype) -> ast.expr:
    name = "bool_" if dtype == np.bool_ else np.dtype(dtype).name
    return ast.Attribute(ast.Name("np", ast.Load()), name, ast.Load())


def _dim_expr(d: int) -> ast.expr:
    """A size: an integer, or for a module built with symbolic dimensions an expression of
    them (``4 * H``) where the size is a sentinel standing for one (scanopt/symbolic.py)."""
    a, name, b = symbolic.decode(d, _SYMBOLS.get()) if _SYMBOLS.get() else (0, None, d)
    if name is None:
        return _int_literal(d)
    expr: ast.expr = ast.Name(name, ast.Load())
    if a != 1:
        expr = ast.BinOp(ast.Constant(a), ast.Mult(), expr)
    if b:
        expr = ast.BinOp(expr, ast.Add() if b > 0 else ast.Sub(), ast.Constant(abs(b)))
    return expr


def _shape_expr(shape: tuple) -> ast.expr:
    """A shape; the one unknown dimension (the number of steps) is -1."""
    return ast.Tuple([_int_literal(-1) if d is None else _dim_expr(d) for d in shape],
                     ast.Load())


def _int_literal(v: int) -> ast.expr:
    return ast.UnaryOp(ast.USub(), ast.Constant(-v)) if v < 0 else ast.Constant(v)


def _literal(op: arith.ConstantOp) -> ast.expr:
    attr = op.value
    v = attr.value.data
    if isinstance(op.result.type, IndexType):  # a step count
        return _int_literal(int(v))
    if aval_of(op.result.type).dtype == np.bool_:
        return ast.Constant(bool(v))
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            return _call("float", [ast.Constant(repr(v))])
        return ast.UnaryOp(ast.USub(), ast.Constant(-v)) if math.copysign(1, v) < 0 else \
            ast.Constant(v)
    return _int_literal(int(v))

