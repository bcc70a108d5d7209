"""The AST walker: a step function (and the helpers it calls) → one ``scan.loop`` in a ``func.func``.

The walker *executes* the step function symbolically. Array values become SSA values of the loop
body; Python-level values that are known when compiling (constants, tuples, modules, functions,
``x.shape``) stay Python objects, so ``if USE_BIAS:``, ``for k in range(3):`` and ``args[1]`` are
resolved while compiling and leave no trace in the IR. Helper functions are inlined. Names the step
reads from its closure or module globals are looked up in the live function object; arrays and
generators found that way become extra loop inputs ("captures"), and every object looked up is
recorded in a :class:`~scanopt.frontend.captures.CapturePlan`, which the cache checks on later calls.

The type of every value comes from NumPy itself: each operation is first evaluated on stand-in
values of the operands' dtypes and shapes (zero-stride views, so no memory), which gives NumPy's
promotion, broadcasting and error rules exactly.
"""

from __future__ import annotations

import ast
import builtins
import functools
import inspect
import operator
import types
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from xdsl.builder import ImplicitBuilder
from xdsl.dialects import arith, func
from xdsl.dialects.builtin import (
    FileLineColLoc,
    FloatAttr,
    IndexType,
    IntAttr,
    IntegerAttr,
    ModuleOp,
    StringAttr,
    TensorType,
    f64,
    i1,
    i64,
)
from xdsl.ir import Attribute, Block, Operation, Region, SSAValue

from scanopt.dialects import scan
from scanopt.dialects.types import UnsupportedDtype, aval_of, ir_type
from scanopt.errors import ScanTypeError, ScanValueError, SourceLocation, UnsupportedSyntax
from scanopt.frontend.captures import CapturePlan, Path
from scanopt.signature import AVal, RngVal, aval_of_result, is_python_scalar, signature_of
from scanopt.frontend.source import FunctionSource, function_source

# ---------------------------------------------------------------------------------------------
# Compile-time values


@dataclass(frozen=True)
class Const:
    """A Python value known while compiling: a number, None, a slice, a dtype, a tuple of those."""

    value: Any


@dataclass(frozen=True)
class TupleVal:
    """A Python tuple or list of values (``*args``, ``(a, b)``, several returned values)."""

    items: tuple


@dataclass(frozen=True)
class PyObject:
    """A Python object the step uses by name: a module, a NumPy function, a dtype class."""

    obj: Any


@dataclass(frozen=True)
class PyFunction:
    """A plain Python function the step calls: it is inlined. ``path`` locates it for captures;
    ``prefix`` holds arguments already bound (a method's ``self``, a ``functools.partial``'s)."""

    fn: types.FunctionType
    path: Path
    prefix: tuple = ()
    bound_kwargs: tuple = ()  # (name, value) pairs


@dataclass(frozen=True)
class Instance:
    """An instance of a user class, reached by ``path``: the step may read its attributes."""

    obj: Any
    path: Path


@dataclass(frozen=True)
class LocalFunction:
    """A ``lambda`` or ``def`` written inside the step; sees the enclosing scope."""

    node: ast.Lambda | ast.FunctionDef
    scope: Scope


@dataclass(frozen=True)
class BoundMethod:
    """``x.sum``, ``rng.binomial``: a method of an array or generator, not yet called."""

    receiver: SSAValue
    name: str


Value = Any  # SSAValue | Const | TupleVal | PyObject | PyFunction | LocalFunction | BoundMethod


@dataclass
class FunctionContext:
    """The function whose code is being walked: where its names and errors come from."""

    fn: types.FunctionType | None
    source: FunctionSource
    path: Path


@dataclass
class Scope:
    names: dict[str, Value]
    context: FunctionContext
    parent: Scope | None = None

    def lookup(self, name: str) -> Value | None:
        scope: Scope | None = self
        while scope is not None:
            if name in scope.names:
                return scope.names[name]
            scope = scope.parent
        return None


class _Return(Exception):
    def __init__(self, value: Value, node: ast.AST):
        self.value = value
        self.node = node


_NOT_GIVEN = object()
_REQUIRED = object()


# ---------------------------------------------------------------------------------------------
# The supported NumPy functions: name → (handler method, parameters with defaults)

_REDUCTIONS = {"sum": "sum", "mean": "mean", "max": "max", "amax": "max", "min": "min",
               "amin": "min"}
_UNARY_ALIASES = {"exp": "exp", "log": "log", "tanh": "tanh", "sin": "sin", "cos": "cos",
                  "sqrt": "sqrt", "abs": "absolute", "absolute": "absolute",
                  "negative": "negative", "logical_not": "logical_not"}
_BINARY_ALIASES = {"add": "add", "subtract": "subtract", "multiply": "multiply",
                   "divide": "true_divide", "true_divide": "true_divide",
                   "floor_divide": "floor_divide", "mod": "remainder", "remainder": "remainder",
                   "power": "power", "maximum": "maximum", "minimum": "minimum",
                   "equal": "equal", "not_equal": "not_equal", "less": "less",
                   "less_equal": "less_equal", "greater": "greater",
                   "greater_equal": "greater_equal", "logical_and": "logical_and",
                   "logical_or": "logical_or"}
_OTHER_FUNCTIONS = {"dot", "matmul", "where", "clip", "transpose", "reshape", "concatenate",
                    "stack", "zeros_like", "ones_like", "full_like"}
_DTYPE_NAMES = {"float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8",
                "uint16", "uint32", "uint64", "bool_", "complex64", "complex128", "double",
                "single", "half", "intc", "intp"}
_NUMPY_CONSTANTS = {"pi", "e", "inf", "nan", "newaxis"}
_RNG_METHODS = ("random", "uniform", "normal", "standard_normal", "binomial")

SUPPORTED_NUMPY = sorted(set(_REDUCTIONS) | set(_UNARY_ALIASES) | set(_BINARY_ALIASES)
                         | _OTHER_FUNCTIONS)

_BINOPS: dict[type, str] = {ast.Add: "add", ast.Sub: "subtract", ast.Mult: "multiply",
                            ast.Div: "true_divide", ast.FloorDiv: "floor_divide",
                            ast.Mod: "remainder", ast.Pow: "power"}
_PY_BINOPS: dict[type, Callable] = {ast.Add: operator.add, ast.Sub: operator.sub,
                                    ast.Mult: operator.mul, ast.Div: operator.truediv,
                                    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
                                    ast.Pow: operator.pow, ast.BitAnd: operator.and_,
                                    ast.BitOr: operator.or_, ast.BitXor: operator.xor,
                                    ast.LShift: operator.lshift, ast.RShift: operator.rshift,
                                    ast.MatMult: operator.matmul}
# Python's own operators, for elementwise ops on Python scalars only (weak in, weak out).
_PY_OPERATORS: dict[str, Callable] = {
    "add": operator.add, "subtract": operator.sub, "multiply": operator.mul,
    "true_divide": operator.truediv, "floor_divide": operator.floordiv, "remainder": operator.mod,
    "power": operator.pow, "negative": operator.neg, "absolute": abs, "equal": operator.eq,
    "not_equal": operator.ne, "less": operator.lt, "less_equal": operator.le,
    "greater": operator.gt, "greater_equal": operator.ge}
_COMPARES: dict[type, str] = {ast.Eq: "equal", ast.NotEq: "not_equal", ast.Lt: "less",
                              ast.LtE: "less_equal", ast.Gt: "greater", ast.GtE: "greater_equal"}
_PY_COMPARES: dict[type, Callable] = {ast.Eq: operator.eq, ast.NotEq: operator.ne,
                                      ast.Lt: operator.lt, ast.LtE: operator.le,
                                      ast.Gt: operator.gt, ast.GtE: operator.ge,
                                      ast.Is: operator.is_, ast.IsNot: operator.is_not,
                                      ast.In: lambda a, b: a in b,
                                      ast.NotIn: lambda a, b: a not in b}

_SUBSET_HINT = (
    "A step function may use arithmetic, comparisons, @, the NumPy functions "
    + ", ".join(f"np.{n}" for n in ("exp", "log", "tanh", "sum", "where", "clip", "concatenate"))
    + " (and others listed in the documentation), calls of plain Python helper functions, and "
    "numpy.random.Generator methods."
)


@dataclass
class StepSpec:
    """What ``scan`` passes to the step function, as abstract values."""

    sequences: list[AVal]  # leading dimension None (the sequence length)
    inits: list[AVal | None]  # None: a per-step output that is not fed back
    non_sequences: list[AVal | RngVal]
    reverse: bool = False
    outputs_given: bool = False  # outputs_info was given: its length is checked
    keep: str | tuple[str, ...] = "all"  # "all"/"last", or one of those per returned value


@dataclass
class BuiltLoop:
    module: ModuleOp
    plan: CapturePlan
    n_outputs: int
    remarks: list = field(default_factory=list)  # what the passes did (filled by the compiler)


def build_loop(fn: Callable, spec: StepSpec, *, call_site: SourceLocation | None = None) -> BuiltLoop:
    """Compile ``fn`` for the argument types in ``spec`` into a module holding one ``func.func``."""
    return _StepBuilder(fn, spec, call_site).build()


class _StepBuilder:
    def __init__(self, fn: Callable, spec: StepSpec, call_site: SourceLocation | None):
        self.spec = spec
        self.plan = CapturePlan()
        self.call_stack: list[object] = []
        self.capture_args: dict[Path, SSAValue] = {}
        self.capture_types: list[Attribute] = []
        self.capture_names: list[str] = []
        self.call_site = call_site
        self.root_fn = fn
        self.target_fn: types.FunctionType | None = None  # the Python function walked
        self.root_context: FunctionContext | None = None
        self.block = Block()
        self.constants: dict[tuple, SSAValue] = {}

    # -- entry --------------------------------------------------------------------------------

    def build(self) -> BuiltLoop:
        spec = self.spec
        slice_types = [ir_type(AVal(a.dtype, a.shape[1:])) for a in spec.sequences]
        carry_types = [ir_type(a) for a in spec.inits if a is not None]
        param_types = [ir_type(a) for a in spec.non_sequences]
        self.block = Block(arg_types=[*slice_types, *carry_types, *param_types])
        args = list(self.block.args)

        target, base = unwrap_callable(self.root_fn)
        if target is not None:
            context = FunctionContext(target, function_source(target), base)
            self.target_fn = target
            self.root_context = context
            prefix, bound_kwargs = self._bound_arguments(context)
            result, return_node = self._call_root(context, args, prefix, bound_kwargs)
        else:
            result, return_node = self._call_numpy_root(args)

        returned = list(result.items) if isinstance(result, TupleVal) else [result]
        yielded, order = self._check_outputs(returned, return_node)
        keep = self._keep(len(returned), return_node)
        with ImplicitBuilder(self.block):
            scan.YieldOp(*yielded)

        out_types = []
        for value in yielded:
            aval = aval_of(value.type)
            stacked = AVal(np.asarray(aval.dummy()).dtype, (None, *aval.shape))
            out_types.append(ir_type(stacked))
        # The function's arguments: sequences, initial states, non-sequences, captures, n_steps.
        seq_types = [ir_type(a) for a in spec.sequences]
        fn_types = [*seq_types, *carry_types, *param_types, *self.capture_types, IndexType()]
        fblock = Block(arg_types=fn_types)
        names = self._argument_names()
        n_seq, n_carry = len(seq_types), len(carry_types)
        for arg, name in zip(fblock.args, names):
            arg.name_hint = name
        fargs = list(fblock.args)
        with ImplicitBuilder(fblock):
            loop = scan.LoopOp(
                fargs[:n_seq], fargs[n_seq : n_seq + n_carry], fargs[n_seq + n_carry : -1],
                Region(self.block), out_types, n_steps=fargs[-1], reverse=spec.reverse,
            )
            carry_names = [arg.name_hint for arg in loop.carry_args]
            for k, (res, value) in enumerate(zip(loop.outs, yielded)):
                hint = carry_names[k] if k < len(carry_names) else value.name_hint
                if hint:
                    res.name_hint = hint + "s"
            # The function returns the histories in the order the step returns its values.
            results = []
            for user_index, k in enumerate(order):
                value = loop.outs[k]
                if keep[user_index] == "last":
                    init = fargs[n_seq + k] if k < n_carry else None
                    last = scan.LastOp(value, init, yielded[k].type)
                    last.results[0].name_hint = (value.name_hint or "out")[:-1] + "_last" \
                        if value.name_hint else "last"
                    value = last.result
                results.append(value)
            func.ReturnOp(*results)
        name = getattr(self.target_fn or self.root_fn, "__name__", "step")
        if not name.isidentifier():
            name = "step"
        function = func.FuncOp(name, (fn_types, [r.type for r in results]), Region(fblock))
        module = ModuleOp([function])
        return BuiltLoop(module, self.plan, len(yielded))

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

    def _argument_names(self) -> list[str]:
        names = []
        for arg in self.block.args:
            names.append(arg.name_hint or f"arg{arg.index}")
        n_seq = len(self.spec.sequences)
        # Outside the loop a sequence is the whole array: X for a slice named x_t or x.
        outer = []
        for k, name in enumerate(names):
            if k < n_seq:
                outer.append(_sequence_name(name))
            elif k < n_seq + sum(a is not None for a in self.spec.inits):
                outer.append(name + "_init")
            else:
                outer.append(name)
        return [*outer, "n_steps"]

    def _bound_arguments(self, context: FunctionContext) -> tuple[list[Value], dict]:
        """Arguments bound before scan's: a method's ``self``, a partial's arguments."""
        root, node = self.root_fn, context.source.node
        if isinstance(root, types.MethodType):
            return [self._from_python(root.__self__, (("method_self", None),), "self", node,
                                      context)], {}
        if isinstance(root, functools.partial):
            self.plan.add((), ("partial", len(root.args), tuple(sorted(root.keywords))))
            args = [self._from_python(v, (("partial_arg", k),), f"argument {k}", node, context)
                    for k, v in enumerate(root.args)]
            kwargs = {k: self._from_python(v, (("partial_kw", k),), k, node, context)
                      for k, v in root.keywords.items()}
            return args, kwargs
        return [], {}

    def _call_root(self, context: FunctionContext, args: list[SSAValue], prefix=(),
                   bound_kwargs=None) -> tuple[Value, ast.AST]:
        node = context.source.node
        n_seq = len(self.spec.sequences)
        n_carry = sum(a is not None for a in self.spec.inits)
        n_params = len(self.spec.non_sequences)
        scope = Scope({}, context)
        try:
            self._bind_arguments(node, context.fn, context, scope, [*prefix, *args],
                                 bound_kwargs)
        except _ArityError as e:
            raise ScanValueError(
                f"{context.fn.__name__}() {e.reason}, but scan passes {len(args)}: "
                f"{n_seq} sequence slice{'s' * (n_seq != 1)}, {n_carry} previous "
                f"output{'s' * (n_carry != 1)} and {n_params} non-sequence{'s' * (n_params != 1)}",
                context.source.loc(node),
                hint="Check sequences, outputs_info (None entries are not passed to the step) "
                     "and non_sequences against the step's parameters.",
            ) from None
        for arg in args:
            if not arg.name_hint:
                arg.name_hint = f"arg{arg.index}"
        self.call_stack.append(context.fn.__code__)
        return self._run_body(node, scope)

    def _call_numpy_root(self, args: list[SSAValue]) -> tuple[Value, ast.AST | None]:
        """A NumPy function passed directly as ``fn`` (``scanopt.scan(np.add, ...)``)."""
        name = _numpy_name(self.root_fn)
        if name is None:
            raise UnsupportedSyntax(
                f"cannot compile {self.root_fn!r}: fn must be a Python function, a lambda, or a "
                "supported NumPy function", self.call_site,
                hint="Wrap it in a function written with NumPy operations.",
            )
        names = ["a", "b", "c", "d"]
        for k, arg in enumerate(args):
            arg.name_hint = names[k] if k < len(names) else f"arg{k}"
        # The ops point at the user's scan(...) call: that is where this "step" is written.
        node = ast.Call(func=ast.Name(id=name), args=[], keywords=[])
        line = self.call_site.line if self.call_site else 1
        col = self.call_site.col - 1 if self.call_site else 0
        for attr, value in (("lineno", line), ("end_lineno", line), ("col_offset", col),
                            ("end_col_offset", col)):
            setattr(node, attr, value)
        context = FunctionContext(None, FunctionSource(node, self.call_site.filename
                                                       if self.call_site else "<fn>"), ())
        self.root_context = context
        result = self._call_value(PyObject(self.root_fn), list(args), {}, node, context)
        return result, None

    # -- arguments and bodies -----------------------------------------------------------------

    def _bind_arguments(self, node, fn, context: FunctionContext, scope: Scope,
                        args: list[Value], kwargs: dict[str, Value] | None = None) -> None:
        kwargs = dict(kwargs or {})
        a = node.args
        positional = [p.arg for p in a.posonlyargs + a.args]
        defaults = self._defaults(node, fn, context)
        for k, name in enumerate(positional):
            if k < len(args):
                value = args[k]
                if name in kwargs:
                    raise _ArityError(f"got multiple values for argument {name!r}")
            elif name in kwargs:
                value = kwargs.pop(name)
            elif name in defaults:
                value = defaults[name]
            else:
                raise _ArityError(f"takes {len(positional)} positional argument"
                                  f"{'s' * (len(positional) != 1)}")
            scope.names[name] = value
            if isinstance(value, SSAValue) and not value.name_hint and \
                    isinstance(value.owner, Block):
                value.name_hint = name  # the step's own parameters, not a helper's
        extra = args[len(positional):]
        if a.vararg is not None:
            for k, value in enumerate(extra):
                if isinstance(value, SSAValue) and not value.name_hint:
                    value.name_hint = f"{a.vararg.arg}_{k}"
            scope.names[a.vararg.arg] = TupleVal(tuple(extra))
        elif extra:
            raise _ArityError(f"takes {len(positional)} positional argument"
                              f"{'s' * (len(positional) != 1)}")
        for p in a.kwonlyargs:
            if p.arg in kwargs:
                scope.names[p.arg] = kwargs.pop(p.arg)
            elif p.arg in defaults:
                scope.names[p.arg] = defaults[p.arg]
            else:
                raise _ArityError(f"needs keyword argument {p.arg!r}")
        if kwargs and a.kwarg is None:
            raise _ArityError(f"got unexpected keyword argument {next(iter(kwargs))!r}")
        if a.kwarg is not None:
            raise UnsupportedSyntax("**kwargs parameters are not supported in a step function",
                                    context.source.loc(node))

    def _defaults(self, node, fn, context: FunctionContext) -> dict[str, Value]:
        a = node.args
        positional = [p.arg for p in a.posonlyargs + a.args]
        result: dict[str, Value] = {}
        if fn is not None:
            for k, value in enumerate(fn.__defaults__ or ()):
                name = positional[len(positional) - len(fn.__defaults__) + k]
                result[name] = self._from_python(value, context.path + (("default", name),),
                                                 name, node, context)
            for name, value in (fn.__kwdefaults__ or {}).items():
                result[name] = self._from_python(value, context.path + (("kwdefault", name),),
                                                 name, node, context)
        else:
            # A local lambda/def: defaults are expressions in the enclosing scope.
            scope = getattr(node, "_scanopt_scope", None)
            for k, expr in enumerate(a.defaults):
                name = positional[len(positional) - len(a.defaults) + k]
                result[name] = self._expr(expr, scope)
            for p, expr in zip(a.kwonlyargs, a.kw_defaults):
                if expr is not None:
                    result[p.arg] = self._expr(expr, scope)
        return result

    def _run_body(self, node, scope: Scope) -> tuple[Value, ast.AST]:
        if isinstance(node, ast.Lambda):
            return self._expr(node.body, scope), node.body
        try:
            self._statements(node.body, scope)
        except _Return as ret:
            return ret.value, ret.node
        raise ScanValueError(
            f"{node.name}() returns nothing", scope.context.source.loc(node),
            hint="A step function must return the new value of each output "
                 "(return h, or return h, c for several).",
        )

    # -- statements ---------------------------------------------------------------------------

    def _statements(self, statements: Sequence[ast.stmt], scope: Scope) -> None:
        for stmt in statements:
            self._statement(stmt, scope)

    def _statement(self, stmt: ast.stmt, scope: Scope) -> None:
        loc = scope.context.source.loc(stmt)
        match stmt:
            case ast.Return(value=value):
                raise _Return(self._expr(value, scope) if value is not None else Const(None),
                              value if value is not None else stmt)
            case ast.Assign(targets=targets, value=value):
                result = self._expr(value, scope)
                for target in targets:
                    self._assign(target, result, scope)
            case ast.AnnAssign(target=target, value=value) if value is not None:
                self._assign(target, self._expr(value, scope), scope)
            case ast.AugAssign(target=ast.Name(id=name) as target, op=op, value=value):
                current = self._expr(ast.Name(id=name, ctx=ast.Load(), lineno=target.lineno,
                                              col_offset=target.col_offset), scope)
                result = self._binop(op, current, self._expr(value, scope), stmt, scope)
                if isinstance(current, SSAValue) and isinstance(result, SSAValue) and \
                        result.type != current.type:
                    raise ScanTypeError(
                        f"in-place {type(op).__name__.lower()} changes the type of `{name}` "
                        f"from {_describe(current)} to {_describe(result)}",
                        loc, hint=f"Write `{name} = ...` with an explicit .astype() instead.")
                self._assign(target, result, scope)
            case ast.AugAssign():
                raise UnsupportedSyntax(
                    "in-place update of an element or attribute is not supported in a step "
                    "function", loc,
                    hint="Step functions must not modify arrays: build a new value instead "
                         "(np.where, np.concatenate) and return it.")
            case ast.Expr(value=ast.Constant(value=str())):
                pass  # a docstring
            case ast.Expr(value=value):
                result = self._expr(value, scope)
                if isinstance(result, SSAValue) and isinstance(result.owner, scan.RandomOp):
                    return  # a draw whose value is unused still advances the generator
                if isinstance(result, SSAValue | Const):
                    return
                raise UnsupportedSyntax("this statement has no effect a step function can keep",
                                        loc)
            case ast.Pass():
                pass
            case ast.If(test=test, body=body, orelse=orelse):
                cond = self._expr(test, scope)
                if not isinstance(cond, Const):
                    raise UnsupportedSyntax(
                        "`if` on an array value is not supported inside a step function",
                        scope.context.source.loc(test),
                        hint="Select elementwise with np.where(cond, a, b) instead; an `if` on "
                             "a constant (a Python number or flag) is fine.")
                self._statements(body if cond.value else orelse, scope)
            case ast.For(target=target, iter=iterable, body=body, orelse=orelse):
                items = self._static_iteration(iterable, scope)
                for item in items:
                    self._assign(target, item, scope)
                    self._statements(body, scope)
                self._statements(orelse, scope)
            case ast.While(test=test):
                raise UnsupportedSyntax(
                    "`while` loops are not supported inside a step function",
                    scope.context.source.loc(test),
                    hint="The step is one iteration of the loop; put the iteration in scan "
                         "(n_steps) or unroll a fixed count with `for k in range(N)`.")
            case ast.FunctionDef(name=name):
                if stmt.decorator_list:
                    raise UnsupportedSyntax("decorated functions inside a step function are "
                                            "not supported", loc)
                local = LocalFunction(stmt, scope)
                scope.names[name] = local
            case ast.Assert():
                pass  # asserts only check; the plain loop would have raised while tracing
            case _:
                raise UnsupportedSyntax(
                    f"`{_statement_name(stmt)}` statements are not supported inside a step "
                    "function", loc, hint=_SUBSET_HINT)

    def _static_iteration(self, iterable: ast.expr, scope: Scope) -> list[Value]:
        value = self._expr(iterable, scope)
        if isinstance(value, TupleVal):
            return list(value.items)
        if isinstance(value, Const) and isinstance(value.value, (tuple, list, range)):
            return [Const(v) for v in value.value]
        raise UnsupportedSyntax(
            "a `for` loop over an array is not supported inside a step function",
            scope.context.source.loc(iterable),
            hint="Use a vectorised NumPy expression over the whole array instead; `for k in "
                 "range(N)` with a constant N and loops over tuples are unrolled.")

    def _assign(self, target: ast.expr, value: Value, scope: Scope) -> None:
        loc = scope.context.source.loc(target)
        match target:
            case ast.Name(id=name):
                if isinstance(value, SSAValue) and _can_name(value):
                    value.name_hint = name
                scope.names[name] = value
            case ast.Tuple(elts=elts) | ast.List(elts=elts):
                items = self._unpack(value, len(elts), target, scope)
                for elt, item in zip(elts, items):
                    self._assign(elt, item, scope)
            case ast.Subscript():
                raise UnsupportedSyntax(
                    "item assignment is not supported inside a step function", loc,
                    hint="Step functions must not modify arrays in place: build the new value "
                         "with np.where, np.concatenate or arithmetic and return it.")
            case ast.Attribute():
                raise UnsupportedSyntax(
                    "attribute assignment is not supported inside a step function", loc,
                    hint="Return the new value from the step instead of storing it on an "
                         "object.")
            case ast.Starred():
                raise UnsupportedSyntax("starred assignment is not supported", loc)
            case _:
                raise UnsupportedSyntax("unsupported assignment target", loc)

    def _unpack(self, value: Value, count: int, node: ast.AST, scope: Scope) -> list[Value]:
        loc = scope.context.source.loc(node)
        if isinstance(value, TupleVal):
            items = list(value.items)
        elif isinstance(value, Const) and isinstance(value.value, (tuple, list)):
            items = [Const(v) for v in value.value]
        elif isinstance(value, SSAValue) and isinstance(value.type, TensorType) \
                and value.type.get_shape():
            n = value.type.get_shape()[0]
            items = [self._index(value, [Const(k)], node, scope) for k in range(n)]
        else:
            raise UnsupportedSyntax(f"cannot unpack {_describe(value)}", loc)
        if len(items) != count:
            raise ScanValueError(f"cannot unpack {len(items)} values into {count} names", loc)
        return items

    # -- expressions --------------------------------------------------------------------------

    def _expr(self, node: ast.expr, scope: Scope) -> Value:
        loc = scope.context.source.loc(node)
        match node:
            case ast.Constant(value=value):
                return Const(value)
            case ast.Name(id=name):
                return self._name(name, node, scope)
            case ast.Tuple(elts=elts) | ast.List(elts=elts):
                items: list[Value] = []
                for elt in elts:
                    if isinstance(elt, ast.Starred):
                        items.extend(self._unpack_starred(elt, scope))
                    else:
                        items.append(self._expr(elt, scope))
                if all(isinstance(i, Const) for i in items):
                    return Const(tuple(i.value for i in items))
                return TupleVal(tuple(items))
            case ast.BinOp(left=left, op=op, right=right):
                return self._binop(op, self._expr(left, scope), self._expr(right, scope), node,
                                   scope)
            case ast.UnaryOp(op=op, operand=operand):
                value = self._expr(operand, scope)
                return self._unaryop(op, value, node, scope)
            case ast.Compare(left=left, ops=ops, comparators=comparators):
                if len(ops) != 1:
                    values = [self._expr(left, scope)] + [self._expr(c, scope) for c in comparators]
                    if all(isinstance(v, Const) for v in values):
                        return Const(all(_PY_COMPARES[type(op)](a.value, b.value)
                                         for op, a, b in zip(ops, values, values[1:])))
                    raise UnsupportedSyntax(
                        "chained comparisons of arrays are not supported", loc,
                        hint="Combine single comparisons with np.logical_and(a < b, b < c).")
                lhs, rhs = self._expr(left, scope), self._expr(comparators[0], scope)
                if isinstance(lhs, Const) and isinstance(rhs, Const):
                    return Const(_PY_COMPARES[type(ops[0])](lhs.value, rhs.value))
                if type(ops[0]) not in _COMPARES:
                    raise UnsupportedSyntax(f"`{type(ops[0]).__name__}` on arrays is not "
                                            "supported", loc)
                return self._elementwise(_COMPARES[type(ops[0])], [lhs, rhs], node, scope,
                                         python_syntax=True)
            case ast.BoolOp(op=op, values=values):
                evaluated = [self._expr(v, scope) for v in values]
                if all(isinstance(v, Const) for v in evaluated):
                    result = evaluated[0].value
                    for v in evaluated[1:]:
                        result = (result and v.value) if isinstance(op, ast.And) else \
                            (result or v.value)
                    return Const(result)
                raise UnsupportedSyntax(
                    f"`{'and' if isinstance(op, ast.And) else 'or'}` on array values is not "
                    "supported", loc,
                    hint="Use np.logical_and / np.logical_or (or & and | on boolean arrays).")
            case ast.IfExp(test=test, body=body, orelse=orelse):
                cond = self._expr(test, scope)
                if not isinstance(cond, Const):
                    raise UnsupportedSyntax(
                        "a conditional expression on an array value is not supported inside "
                        "a step function", scope.context.source.loc(test),
                        hint="Select elementwise with np.where(cond, a, b) instead.")
                return self._expr(body if cond.value else orelse, scope)
            case ast.Attribute(value=obj, attr=attr):
                return self._attribute(self._expr(obj, scope), attr, node, scope)
            case ast.Subscript(value=obj, slice=index):
                return self._subscript(self._expr(obj, scope), index, node, scope)
            case ast.Call(func=callee, args=args, keywords=keywords):
                fn_value = self._expr(callee, scope)
                arg_values: list[Value] = []
                for a in args:
                    if isinstance(a, ast.Starred):
                        arg_values.extend(self._unpack_starred(a, scope))
                    else:
                        arg_values.append(self._expr(a, scope))
                kw_values = {}
                for kw in keywords:
                    if kw.arg is None:
                        raise UnsupportedSyntax("**kwargs in a call is not supported",
                                                scope.context.source.loc(kw.value))
                    kw_values[kw.arg] = self._expr(kw.value, scope)
                return self._call_value(fn_value, arg_values, kw_values, node, scope.context,
                                        scope)
            case ast.Lambda():
                return LocalFunction(node, scope)
            case ast.Slice(lower=lower, upper=upper, step=step):
                parts = [self._expr(p, scope) if p is not None else Const(None)
                         for p in (lower, upper, step)]
                return TupleVal((Const("__slice__"), *parts))
            case ast.Starred():
                raise UnsupportedSyntax("a starred expression is not supported here", loc)
            case _:
                raise UnsupportedSyntax(
                    f"`{_expression_name(node)}` is not supported inside a step function", loc,
                    hint=_SUBSET_HINT)

    def _unpack_starred(self, node: ast.Starred, scope: Scope) -> list[Value]:
        value = self._expr(node.value, scope)
        if isinstance(value, TupleVal):
            return list(value.items)
        if isinstance(value, Const) and isinstance(value.value, (tuple, list)):
            return [Const(v) for v in value.value]
        raise UnsupportedSyntax(f"cannot unpack {_describe(value)} with *",
                                scope.context.source.loc(node))

    def _name(self, name: str, node: ast.AST, scope: Scope) -> Value:
        value = scope.lookup(name)
        if value is not None:
            return value
        context = scope.context
        fn = context.fn
        loc = context.source.loc(node)
        if fn is not None:
            code = fn.__code__
            if name in code.co_freevars:
                cell = fn.__closure__[code.co_freevars.index(name)]
                try:
                    obj = cell.cell_contents
                except ValueError:
                    raise ScanValueError(f"`{name}` is not yet assigned in the enclosing scope",
                                         loc) from None
                return self._from_python(obj, context.path + (("closure", name),), name, node,
                                         context)
            if name in fn.__globals__:
                return self._from_python(fn.__globals__[name],
                                         context.path + (("global", name),), name, node, context)
        if hasattr(builtins, name):
            return PyObject(getattr(builtins, name))
        raise UnsupportedSyntax(f"name `{name}` is not defined", loc,
                                hint="Every name a step function uses must be a parameter, a "
                                     "local variable, or defined in the enclosing scope.")

    def _from_python(self, obj: Any, path: Path, name: str, node: ast.AST,
                     context: FunctionContext) -> Value:
        """A Python object found by name (closure, global, default) → a compile-time value."""
        loc = context.source.loc(node)
        if isinstance(obj, (np.ndarray, np.generic, np.random.Generator)):
            sig = signature_of(obj)
            if sig is None:
                raise ScanTypeError(f"`{name}` is an array of dtype {obj.dtype}, which scanopt "
                                    "does not support", loc)
            self.plan.add(path, sig)
            if path not in self.capture_args:
                try:
                    t = ir_type(sig)
                except UnsupportedDtype as e:
                    raise ScanTypeError(f"`{name}` has unsupported dtype {e}", loc) from None
                arg = self.block.insert_arg(t, len(self.block.args))
                arg.name_hint = _unique_capture_name(name, self.capture_names)
                self.capture_names.append(arg.name_hint)
                self.capture_types.append(t)
                self.capture_args[path] = arg
            return self.capture_args[path]
        if obj is None or is_python_scalar(obj) or isinstance(obj, (str, slice)) or \
                obj is Ellipsis or isinstance(obj, np.dtype):
            self.plan.add(path, ("const", type(obj), obj))
            return Const(obj)
        if isinstance(obj, tuple) and all(is_python_scalar(v) or v is None for v in obj):
            self.plan.add(path, ("const", tuple, obj))
            return Const(obj)
        if isinstance(obj, (tuple, list)):
            self.plan.add(path, ("len", type(obj), len(obj)))
            return TupleVal(tuple(self._from_python(v, path + (("item", k),), f"{name}[{k}]",
                                                    node, context)
                                  for k, v in enumerate(obj)))
        if isinstance(obj, types.FunctionType):
            self.plan.add(path, ("code", obj.__code__))
            return PyFunction(obj, path)
        if isinstance(obj, types.MethodType) and isinstance(obj.__func__, types.FunctionType):
            self.plan.add(path + (("method_func", None),), ("code", obj.__func__.__code__))
            receiver = self._from_python(obj.__self__, path + (("method_self", None),),
                                         f"{name}.__self__", node, context)
            return PyFunction(obj.__func__, path + (("method_func", None),), (receiver,))
        if isinstance(obj, functools.partial) and isinstance(obj.func, types.FunctionType):
            self.plan.add(path + (("partial_func", None),), ("code", obj.func.__code__))
            self.plan.add(path, ("partial", len(obj.args), tuple(sorted(obj.keywords))))
            args = tuple(self._from_python(v, path + (("partial_arg", k),), f"{name}.args[{k}]",
                                           node, context) for k, v in enumerate(obj.args))
            kwargs = tuple((k, self._from_python(v, path + (("partial_kw", k),), k, node,
                                                 context)) for k, v in obj.keywords.items())
            return PyFunction(obj.func, path + (("partial_func", None),), args, kwargs)
        if _is_plain_object(obj):
            # An object whose attributes the step reads (``self.W``): each attribute read is
            # a capture of its own, so only the object's class is assumed here.
            self.plan.add(path, ("type", type(obj)))
            return Instance(obj, path)
        self.plan.add(path, ("is", obj))
        return PyObject(obj)

    # -- operators ----------------------------------------------------------------------------

    def _binop(self, op: ast.operator, lhs: Value, rhs: Value, node: ast.AST,
               scope: Scope) -> Value:
        if isinstance(lhs, Const) and isinstance(rhs, Const) and type(op) in _PY_BINOPS:
            try:
                return Const(_PY_BINOPS[type(op)](lhs.value, rhs.value))
            except Exception as e:
                raise ScanValueError(f"{e}", scope.context.source.loc(node)) from None
        if isinstance(lhs, TupleVal | Const) and isinstance(rhs, TupleVal | Const) and \
                isinstance(op, ast.Add):
            return TupleVal(_tuple_items(lhs) + _tuple_items(rhs))
        if isinstance(op, ast.MatMult):
            return self._matmul(lhs, rhs, node, scope)
        if isinstance(op, (ast.BitAnd, ast.BitOr, ast.BitXor)):
            name = {ast.BitAnd: "logical_and", ast.BitOr: "logical_or",
                    ast.BitXor: "not_equal"}[type(op)]
            for v in (lhs, rhs):
                if not (isinstance(v, SSAValue) and aval_of(v.type).dtype == np.bool_):
                    raise UnsupportedSyntax(
                        "bitwise operators are supported on boolean arrays only",
                        scope.context.source.loc(node))
            return self._elementwise(name, [lhs, rhs], node, scope)
        if type(op) not in _BINOPS:
            raise UnsupportedSyntax(f"the operator `{type(op).__name__}` is not supported",
                                    scope.context.source.loc(node))
        return self._elementwise(_BINOPS[type(op)], [lhs, rhs], node, scope,
                                 python_syntax=True)

    def _unaryop(self, op: ast.unaryop, value: Value, node: ast.AST, scope: Scope) -> Value:
        if isinstance(value, Const):
            py = {ast.USub: operator.neg, ast.UAdd: operator.pos, ast.Not: operator.not_,
                  ast.Invert: operator.invert}[type(op)]
            return Const(py(value.value))
        if isinstance(op, ast.UAdd):
            return value
        if isinstance(op, ast.USub):
            return self._elementwise("negative", [value], node, scope, python_syntax=True)
        if isinstance(op, ast.Invert) and isinstance(value, SSAValue) and \
                aval_of(value.type).dtype == np.bool_:
            return self._elementwise("logical_not", [value], node, scope)
        raise UnsupportedSyntax(
            f"`{'not' if isinstance(op, ast.Not) else '~'}` on an array value is not supported",
            scope.context.source.loc(node), hint="Use np.logical_not(x) for booleans.")

    # -- attributes, indexing -----------------------------------------------------------------

    def _attribute(self, obj: Value, attr: str, node: ast.AST, scope: Scope) -> Value:
        loc = scope.context.source.loc(node)
        if isinstance(obj, SSAValue):
            aval = aval_of(obj.type)
            if isinstance(aval, RngVal):
                if attr in _RNG_METHODS:
                    return BoundMethod(obj, attr)
                raise UnsupportedSyntax(
                    f"Generator.{attr} is not supported in a step function", loc,
                    hint="Supported draws: " + ", ".join(f"rng.{m}" for m in _RNG_METHODS)
                         + ".")
            if attr == "T":
                return self._transpose(obj, None, node, scope)
            if attr == "shape":
                return Const(tuple(aval.shape))
            if attr == "ndim":
                return Const(aval.ndim)
            if attr == "dtype":
                return Const(aval.dtype)
            if attr == "size":
                return Const(int(np.prod(aval.shape)))
            if attr in {"sum", "mean", "max", "min", "reshape", "astype", "transpose", "dot",
                        "clip", "copy"}:
                return BoundMethod(obj, attr)
            raise UnsupportedSyntax(f"the array attribute `.{attr}` is not supported in a step "
                                    "function", loc, hint=_SUBSET_HINT)
        if isinstance(obj, PyObject):
            module = obj.obj
            if module is np:
                return self._numpy_attribute(attr, loc)
            if module is np.random:
                raise UnsupportedSyntax(
                    f"np.random.{attr} uses NumPy's global random state, which scanopt does "
                    "not support", loc,
                    hint="Create a generator with np.random.default_rng(seed) and pass it as a "
                         "non-sequence (or capture it); then call rng.binomial(...), etc.")
            if isinstance(module, types.ModuleType):
                raise UnsupportedSyntax(f"`{module.__name__}.{attr}` is not supported inside a "
                                        "step function", loc, hint=_SUBSET_HINT)
        if isinstance(obj, Instance):
            try:
                value = getattr(obj.obj, attr)
            except AttributeError:
                raise UnsupportedSyntax(f"`{type(obj.obj).__name__}` object has no attribute "
                                        f"`{attr}`", loc) from None
            return self._from_python(value, obj.path + (("attr", attr),), attr, node,
                                     scope.context)
        if isinstance(obj, Const) and isinstance(obj.value, np.dtype):
            if attr in {"type", "name", "kind", "itemsize"}:
                return Const(getattr(obj.value, attr))
        if isinstance(obj, Const) and attr in {"real", "imag"} and is_python_scalar(obj.value):
            return Const(getattr(obj.value, attr))
        raise UnsupportedSyntax(f"attribute `.{attr}` of {_describe(obj)} is not supported in a "
                                "step function", loc, hint=_SUBSET_HINT)

    def _numpy_attribute(self, attr: str, loc: SourceLocation) -> Value:
        if attr in _NUMPY_CONSTANTS:
            return Const(getattr(np, attr))
        if attr in _DTYPE_NAMES:
            return PyObject(getattr(np, attr))
        if attr == "random":
            return PyObject(np.random)
        obj = getattr(np, attr, None)
        if obj is not None and _numpy_name(obj) is not None:
            return PyObject(obj)
        raise UnsupportedSyntax(
            f"np.{attr} is not supported inside a step function", loc,
            hint="Supported NumPy functions: " + ", ".join(f"np.{n}" for n in SUPPORTED_NUMPY)
                 + ".")

    def _subscript(self, obj: Value, index_node: ast.expr, node: ast.AST, scope: Scope) -> Value:
        loc = scope.context.source.loc(node)
        index = self._expr(index_node, scope)
        entries = list(index.items) if isinstance(index, TupleVal) and not _is_slice(index) \
            else [index]
        if isinstance(index, Const) and isinstance(index.value, tuple):
            entries = [Const(v) for v in index.value]
        if isinstance(obj, (TupleVal, Const)) and not isinstance(obj, SSAValue):
            items = _tuple_items(obj) if isinstance(obj, TupleVal) or \
                isinstance(obj.value, (tuple, list)) else None
            if items is None or len(entries) != 1:
                raise UnsupportedSyntax(f"cannot index {_describe(obj)}", loc)
            entry = entries[0]
            if _is_slice(entry):
                start, stop, step = (self._static_int(p, node, scope, allow_none=True)
                                     for p in entry.items[1:])
                picked = items[slice(start, stop, step)]
                return Const(tuple(i.value for i in picked)) if all(
                    isinstance(i, Const) for i in picked) else TupleVal(tuple(picked))
            k = self._static_int(entry, node, scope)
            try:
                return items[k]
            except IndexError:
                raise ScanValueError(f"index {k} is out of range for a tuple of {len(items)} "
                                     "values", loc) from None
        if isinstance(obj, SSAValue) and isinstance(obj.type, TensorType):
            return self._index(obj, entries, node, scope)
        raise UnsupportedSyntax(f"cannot index {_describe(obj)}", loc)

    def _static_int(self, value: Value, node, scope: Scope, allow_none=False):
        if isinstance(value, Const) and (isinstance(value.value, (int, np.integer))
                                         or (allow_none and value.value is None)):
            return value.value if value.value is None else int(value.value)
        raise UnsupportedSyntax("this index must be a constant integer",
                                scope.context.source.loc(node))

    def _index(self, obj: SSAValue, entries: list[Value], node: ast.AST, scope: Scope) -> SSAValue:
        loc = scope.context.source.loc(node)
        spec: list[str] = []
        operands: list[SSAValue] = []
        dummy_index: list[Any] = []
        for entry in entries:
            if _is_slice(entry):
                parts = [self._static_int(p, node, scope, allow_none=True)
                         for p in entry.items[1:]]
                if parts[2] is None:
                    parts = parts[:2]
                spec.append(":".join("" if p is None else str(p) for p in parts))
                dummy_index.append(slice(*parts))
            elif isinstance(entry, Const) and entry.value is None:
                spec.append("None")
                dummy_index.append(None)
            elif isinstance(entry, Const) and entry.value is Ellipsis:
                spec.append("...")
                dummy_index.append(Ellipsis)
            elif isinstance(entry, Const) and isinstance(entry.value, (int, np.integer)) and \
                    not isinstance(entry.value, bool):
                spec.append(str(int(entry.value)))
                dummy_index.append(int(entry.value))
            elif isinstance(entry, SSAValue) and isinstance(aval_of(entry.type), AVal) and \
                    aval_of(entry.type).dtype.kind in "iu":
                spec.append("?")
                operands.append(entry)
                aval = aval_of(entry.type)
                dummy_index.append(0 if aval.weak else
                                   np.zeros(aval.shape, aval.dtype))
            else:
                raise UnsupportedSyntax(
                    f"indexing with {_describe(entry)} is not supported", loc,
                    hint="Index with constant integers and slices, or with integer values "
                         "(for example an index taken from an integer sequence). Boolean masks "
                         "give data-dependent shapes: use np.where instead.")
        dummy = aval_of(obj.type).dummy()
        result_type = self._infer(lambda: dummy[tuple(dummy_index)], node, scope,
                                  "indexing")
        return self._emit(scan.IndexOp(obj, operands, spec, result_type), node, scope)

    # -- calls --------------------------------------------------------------------------------

    def _call_value(self, fn_value: Value, args: list[Value], kwargs: dict[str, Value],
                    node: ast.AST, context: FunctionContext, scope: Scope | None = None) -> Value:
        scope = scope or Scope({}, context)
        loc = context.source.loc(node)
        if isinstance(fn_value, PyFunction):
            return self._inline(fn_value.fn, fn_value.path, [*fn_value.prefix, *args],
                                {**dict(fn_value.bound_kwargs), **kwargs}, node, scope)
        if isinstance(fn_value, LocalFunction):
            return self._inline_local(fn_value, args, kwargs, node, scope)
        if isinstance(fn_value, BoundMethod):
            if isinstance(aval_of(fn_value.receiver.type), RngVal):
                return self._random(fn_value, args, kwargs, node, scope)
            return self._method(fn_value, args, kwargs, node, scope)
        if isinstance(fn_value, PyObject):
            obj = fn_value.obj
            if isinstance(obj, type) and issubclass(obj, np.generic) or obj in (float, int,
                                                                                 bool):
                return self._dtype_call(obj, args, kwargs, node, scope)
            name = _numpy_name(obj)
            if name is not None:
                return self._numpy_call(name, args, kwargs, node, scope)
            if obj in (len, abs, range, tuple, list, min, max, sum) and not kwargs:
                return self._builtin_call(obj, args, node, scope)
            label = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", repr(obj))
            raise UnsupportedSyntax(
                f"calling `{label}` is not supported inside a step function", loc,
                hint=_SUBSET_HINT + " To use another function, write it in NumPy as a Python "
                     "helper function.")
        raise UnsupportedSyntax(f"{_describe(fn_value)} is not callable", loc)

    def _inline(self, fn: types.FunctionType, path: Path, args, kwargs, node, scope: Scope):
        code = fn.__code__
        loc = scope.context.source.loc(node)
        if code in self.call_stack:
            raise UnsupportedSyntax(f"recursive call of {fn.__name__}() is not supported", loc)
        if code.co_flags & (inspect.CO_GENERATOR | inspect.CO_COROUTINE):
            raise UnsupportedSyntax(f"{fn.__name__}() is a generator, which cannot be inlined",
                                    loc)
        context = FunctionContext(fn, function_source(fn), path)
        callee_scope = Scope({}, context)
        try:
            self._bind_arguments(context.source.node, fn, context, callee_scope, args, kwargs)
        except _ArityError as e:
            raise ScanValueError(f"{fn.__name__}() {e.reason}", loc) from None
        self.call_stack.append(code)
        try:
            result, _ = self._run_body(context.source.node, callee_scope)
        finally:
            self.call_stack.pop()
        return result

    def _inline_local(self, local: LocalFunction, args, kwargs, node, scope: Scope):
        loc = scope.context.source.loc(node)
        if local.node in self.call_stack:
            raise UnsupportedSyntax("recursive calls are not supported", loc)
        callee_scope = Scope({}, local.scope.context, parent=local.scope)
        local.node._scanopt_scope = local.scope  # defaults are evaluated where it was defined
        try:
            self._bind_arguments(local.node, None, local.scope.context, callee_scope, args,
                                 kwargs)
        except _ArityError as e:
            raise ScanValueError(f"the local function {e.reason}", loc) from None
        self.call_stack.append(local.node)
        try:
            result, _ = self._run_body(local.node, callee_scope)
        finally:
            self.call_stack.pop()
        return result

    def _builtin_call(self, fn, args, node, scope: Scope) -> Value:
        loc = scope.context.source.loc(node)
        if fn is abs and len(args) == 1 and not isinstance(args[0], Const):
            return self._elementwise("absolute", args, node, scope, python_syntax=True)
        if fn is len and len(args) == 1:
            value = args[0]
            if isinstance(value, TupleVal):
                return Const(len(value.items))
            if isinstance(value, SSAValue) and isinstance(value.type, TensorType) and \
                    value.type.get_shape():
                return Const(value.type.get_shape()[0])
        if all(isinstance(a, Const) for a in args):
            try:
                result = fn(*(a.value for a in args))
            except Exception as e:
                raise ScanValueError(str(e), loc) from None
            return Const(tuple(result) if isinstance(result, range) else result)
        if fn in (tuple, list) and len(args) == 1 and isinstance(args[0], TupleVal):
            return args[0]
        raise UnsupportedSyntax(f"`{fn.__name__}()` on array values is not supported inside a "
                                "step function", loc,
                                hint="Use the NumPy function (np.sum, np.max, ...) instead.")

    def _dtype_call(self, dtype_class, args, kwargs, node, scope: Scope) -> Value:
        loc = scope.context.source.loc(node)
        if len(args) != 1 or kwargs:
            raise UnsupportedSyntax(f"{dtype_class.__name__}() takes one value here", loc)
        value = args[0]
        if isinstance(value, Const):
            if dtype_class in (float, int, bool):
                return Const(dtype_class(value.value))
            value = self._materialize(value, node, scope)
        if dtype_class in (float, int, bool):
            aval = aval_of(value.type)
            if isinstance(aval, AVal) and aval.shape == () and aval.dtype.kind in "biuf":
                # A Python scalar again (weak in NumPy's promotion), as in the plain loop.
                weak = AVal(np.dtype({float: np.float64, int: np.int64, bool: np.bool_}[
                    dtype_class]), (), weak=True)
                return self._emit(scan.CastOp(value, ir_type(weak)), node, scope)
            raise UnsupportedSyntax(
                f"{dtype_class.__name__}() of {_describe(value)} is not supported", loc,
                hint=f"{dtype_class.__name__}() takes a scalar (a 0-d value); keep an array as "
                     "an array, or use .astype(...).")
        return self._cast(value, np.dtype(dtype_class), node, scope)

    def _numpy_call(self, name: str, args, kwargs, node, scope: Scope) -> Value:
        if name in _UNARY_ALIASES:
            bound = _bind(name, ["x"], args, kwargs, node, scope)
            return self._elementwise(_UNARY_ALIASES[name], [bound["x"]], node, scope)
        if name in _BINARY_ALIASES:
            bound = _bind(name, ["x1", "x2"], args, kwargs, node, scope)
            return self._elementwise(_BINARY_ALIASES[name], [bound["x1"], bound["x2"]], node,
                                     scope)
        if name in _REDUCTIONS:
            bound = _bind(name, ["a", ("axis", None), ("keepdims", False)], args, kwargs, node,
                          scope)
            return self._reduce(_REDUCTIONS[name], bound["a"], bound["axis"],
                                bound["keepdims"], node, scope)
        if name in ("dot", "matmul"):
            bound = _bind(name, ["a", "b"], args, kwargs, node, scope)
            if name == "dot":
                return self._dot(bound["a"], bound["b"], node, scope)
            return self._matmul(bound["a"], bound["b"], node, scope)
        if name == "where":
            bound = _bind(name, ["condition", "x", "y"], args, kwargs, node, scope)
            operands = [self._materialize(bound[k], node, scope) for k in ("condition", "x", "y")]
            result_type = self._infer_values(np.where, operands, node, scope, "np.where")
            return self._emit(scan.WhereOp(*operands, result_type), node, scope)
        if name == "clip":
            bound = _bind(name, ["a", "a_min", "a_max"], args, kwargs, node, scope)
            return self._clip(bound["a"], bound["a_min"], bound["a_max"], node, scope)
        if name == "transpose":
            bound = _bind(name, ["a", ("axes", None)], args, kwargs, node, scope)
            return self._transpose(self._materialize(bound["a"], node, scope),
                                   self._const_ints(bound["axes"], node, scope, "axes"), node,
                                   scope)
        if name == "reshape":
            bound = _bind(name, ["a", "shape"], args, kwargs, node, scope)
            return self._reshape(self._materialize(bound["a"], node, scope),
                                 self._const_ints(bound["shape"], node, scope, "shape"), node,
                                 scope)
        if name in ("concatenate", "stack"):
            bound = _bind(name, ["arrays", ("axis", 0)], args, kwargs, node, scope)
            arrays = bound["arrays"]
            if not isinstance(arrays, TupleVal):
                raise UnsupportedSyntax(f"np.{name} needs a tuple or list of arrays", 
                                        scope.context.source.loc(node))
            operands = [self._materialize(a, node, scope) for a in arrays.items]
            axis = self._const_int(bound["axis"], node, scope, "axis")
            fn = np.concatenate if name == "concatenate" else np.stack
            result_type = self._infer(
                lambda: fn([aval_of(o.type).dummy() for o in operands], axis=axis), node, scope,
                f"np.{name}")
            op_class = scan.ConcatOp if name == "concatenate" else scan.StackOp
            return self._emit(op_class(operands, _normalize_axis(axis, result_type, node, scope),
                                       result_type), node, scope)
        if name in ("zeros_like", "ones_like", "full_like"):
            params = ["a", "fill_value"] if name == "full_like" else ["a"]
            bound = _bind(name, [*params, ("dtype", None), ("shape", None)], args, kwargs,
                          node, scope)
            a = self._materialize(bound["a"], node, scope)
            fill = {"zeros_like": Const(0), "ones_like": Const(1)}.get(name) or \
                bound["fill_value"]
            dtype = None if bound["dtype"] == Const(None) else \
                self._dtype_arg(bound["dtype"], node, scope)
            shape = self._const_ints(bound["shape"], node, scope, "shape")
            aval = aval_of(a.type)
            result_dtype = dtype if dtype is not None else np.asarray(aval.dummy()).dtype
            result_shape = tuple(shape) if shape is not None else aval.shape
            fill_value = self._materialize(fill, node, scope)
            return self._emit(scan.FullOp(fill_value, ir_type(AVal(result_dtype, result_shape))),
                              node, scope)
        raise AssertionError(name)

    def _method(self, method: BoundMethod, args, kwargs, node, scope: Scope) -> Value:
        x, name = method.receiver, method.name
        if name in _REDUCTIONS:
            bound = _bind(f".{name}", [("axis", None), ("keepdims", False)], args, kwargs, node,
                          scope)
            return self._reduce(_REDUCTIONS[name], x, bound["axis"], bound["keepdims"], node,
                                scope)
        if name == "reshape":
            shape = args[0] if len(args) == 1 else Const(tuple(
                self._const_int(a, node, scope, "shape") for a in args))
            if kwargs:
                raise UnsupportedSyntax(".reshape() keyword arguments are not supported",
                                        scope.context.source.loc(node))
            return self._reshape(x, self._const_ints(shape, node, scope, "shape"), node, scope)
        if name == "transpose":
            axes = None
            if len(args) == 1:
                axes = self._const_ints(args[0], node, scope, "axes")
            elif args:
                axes = [self._const_int(a, node, scope, "axes") for a in args]
            return self._transpose(x, axes, node, scope)
        if name == "astype":
            bound = _bind(".astype", ["dtype"], args, kwargs, node, scope)
            return self._cast(x, self._dtype_arg(bound["dtype"], node, scope), node, scope)
        if name == "dot":
            bound = _bind(".dot", ["b"], args, kwargs, node, scope)
            return self._dot(x, bound["b"], node, scope)
        if name == "clip":
            bound = _bind(".clip", [("min", None), ("max", None)], args, kwargs, node, scope)
            return self._clip(x, bound["min"], bound["max"], node, scope)
        if name == "copy":
            return x  # values are never modified in place, so a copy is the value itself
        raise AssertionError(name)

    # -- op builders --------------------------------------------------------------------------

    def _elementwise(self, numpy_name: str, values: list[Value], node, scope: Scope, *,
                     python_syntax: bool = False) -> Value:
        """An elementwise op. ``python_syntax``: written as a Python operator (``a - b``, ``-a``,
        ``abs(a)``, ``a < b``) rather than as a NumPy function call: on Python scalars alone
        that is Python arithmetic, whose result is again a (weak) Python scalar."""
        if all(isinstance(v, Const) for v in values):
            try:
                result = getattr(np, numpy_name)(*(v.value for v in values))
            except Exception as e:
                raise ScanValueError(str(e), scope.context.source.loc(node)) from None
            if isinstance(result, np.generic):
                return self._materialize_numpy(result, node, scope)
            return Const(result)
        operands = [self._materialize(v, node, scope) for v in values]
        if python_syntax and all(_is_weak(o) for o in operands):
            # ``1.0 - k`` with ``k`` a Python float: the plain loop computes a Python float,
            # which stays weak in NumPy's promotion (NEP 50); np.subtract would make it strong.
            python_op = _PY_OPERATORS[numpy_name]
            result_type = self._infer(
                lambda: python_op(*(self._dummy(o) for o in operands)), node, scope,
                _ufunc_label(numpy_name))
        else:
            ufunc = getattr(np, numpy_name)
            result_type = self._infer_values(ufunc, operands, node, scope,
                                             _ufunc_label(numpy_name))
        if len(operands) == 1:
            op = scan.UNARY_OPS[numpy_name](operands[0], result_type)
        else:
            op = scan.BINARY_OPS[numpy_name](operands[0], operands[1], result_type)
        return self._emit(op, node, scope)

    def _matmul(self, a: Value, b: Value, node, scope: Scope) -> SSAValue:
        loc = scope.context.source.loc(node)
        lhs, rhs = self._materialize(a, node, scope), self._materialize(b, node, scope)
        la, ra = aval_of(lhs.type), aval_of(rhs.type)
        if not isinstance(lhs.type, TensorType) or not isinstance(rhs.type, TensorType) or \
                la.ndim == 0 or ra.ndim == 0:
            raise ScanTypeError(
                f"matmul needs arrays of at least one dimension, got {la.describe()} @ "
                f"{ra.describe()}", loc, hint="Use * to multiply by a scalar.")
        result_type = self._matmul_type(la, ra, loc)
        return self._emit(scan.MatmulOp(lhs, rhs, result_type), node, scope)

    @staticmethod
    def _matmul_type(la: AVal, ra: AVal, loc) -> Attribute:
        # Shapes by NumPy's matmul rule, without computing a stand-in product.
        a_shape = (1, *la.shape) if la.ndim == 1 else la.shape
        b_shape = (*ra.shape, 1) if ra.ndim == 1 else ra.shape
        if a_shape[-1] != b_shape[-2]:
            raise ScanTypeError(
                f"matmul: the inner dimensions differ: {la.describe()} @ {ra.describe()} "
                f"({a_shape[-1]} vs {b_shape[-2]})", loc,
                hint="Check the shapes of the operands (transpose one with .T?).")
        try:
            batch = np.broadcast_shapes(a_shape[:-2], b_shape[:-2])
        except ValueError:
            raise ScanTypeError(f"matmul: batch dimensions of {la.describe()} and "
                                f"{ra.describe()} do not broadcast", loc) from None
        shape = (*batch, *(() if la.ndim == 1 else (a_shape[-2],)),
                 *(() if ra.ndim == 1 else (b_shape[-1],)))
        dtype = np.result_type(la.dtype, ra.dtype)
        return ir_type(AVal(dtype, shape))

    def _dot(self, a: Value, b: Value, node, scope: Scope) -> Value:
        lhs, rhs = self._materialize(a, node, scope), self._materialize(b, node, scope)
        la, ra = aval_of(lhs.type), aval_of(rhs.type)
        if la.ndim == 0 or ra.ndim == 0:
            return self._elementwise("multiply", [lhs, rhs], node, scope)
        if la.ndim > 2 or ra.ndim > 2:
            if ra.ndim <= 2:
                return self._matmul(lhs, rhs, node, scope)  # np.dot == matmul here
            raise UnsupportedSyntax(
                "np.dot with an N-d second operand is not supported", scope.context.source.loc(
                    node), hint="Use @ (np.matmul), whose batching rule scanopt supports.")
        return self._matmul(lhs, rhs, node, scope)

    def _reduce(self, kind: str, a: Value, axis: Value, keepdims: Value, node,
                scope: Scope) -> SSAValue:
        x = self._materialize(a, node, scope)
        axes = self._const_ints(axis, node, scope, "axis")
        keep = self._const_bool(keepdims, node, scope, "keepdims")
        fn = {"sum": np.sum, "mean": np.mean, "max": np.max, "min": np.min}[kind]
        dummy = aval_of(x.type).dummy()
        axis_arg = None if axes is None else (axes[0] if isinstance(axis.value, int) else
                                               tuple(axes))
        result_type = self._infer(lambda: fn(dummy, axis=axis_arg, keepdims=keep), node, scope,
                                  f"np.{kind}")
        ndim = aval_of(x.type).ndim
        normalized = None if axes is None else [a % ndim if ndim else a for a in axes]
        return self._emit(scan.ReduceOp(kind, x, normalized, keep, result_type), node, scope)

    def _transpose(self, x: SSAValue, axes, node, scope: Scope) -> SSAValue:
        aval = aval_of(x.type)
        if not isinstance(x.type, TensorType):
            return x
        perm = list(range(aval.ndim))[::-1] if axes is None else list(axes)
        dummy = aval.dummy()
        result_type = self._infer(lambda: np.transpose(dummy, perm), node, scope, "transpose")
        perm = [p % aval.ndim for p in perm]
        return self._emit(scan.TransposeOp(x, perm, result_type), node, scope)

    def _reshape(self, x: SSAValue, shape, node, scope: Scope) -> SSAValue:
        dummy = aval_of(x.type).dummy()
        result_type = self._infer(lambda: np.reshape(dummy, tuple(shape)), node, scope,
                                  "reshape")
        return self._emit(scan.ReshapeOp(x, result_type), node, scope)

    def _cast(self, x: SSAValue, dtype: np.dtype, node, scope: Scope) -> SSAValue:
        aval = aval_of(x.type)
        try:
            result_type = ir_type(AVal(dtype, aval.shape))
        except UnsupportedDtype:
            raise ScanTypeError(f"dtype {dtype} is not supported",
                                scope.context.source.loc(node)) from None
        return self._emit(scan.CastOp(x, result_type), node, scope)

    def _clip(self, a: Value, lo: Value, hi: Value, node, scope: Scope) -> Value:
        if isinstance(lo, Const) and lo.value is None:
            if isinstance(hi, Const) and hi.value is None:
                raise ScanValueError("np.clip needs a lower or an upper bound",
                                     scope.context.source.loc(node))
            return self._elementwise("minimum", [a, hi], node, scope)
        if isinstance(hi, Const) and hi.value is None:
            return self._elementwise("maximum", [a, lo], node, scope)
        operands = [self._materialize(v, node, scope) for v in (a, lo, hi)]
        result_type = self._infer_values(np.clip, operands, node, scope, "np.clip")
        return self._emit(scan.ClipOp(*operands, result_type), node, scope)

    def _random(self, method: BoundMethod, args, kwargs, node, scope: Scope) -> SSAValue:
        loc = scope.context.source.loc(node)
        name = method.name
        params = {"random": [("size", None), ("dtype", Const(np.float64))],
                  "standard_normal": [("size", None), ("dtype", Const(np.float64))],
                  "uniform": [("low", Const(0.0)), ("high", Const(1.0)), ("size", None)],
                  "normal": [("loc", Const(0.0)), ("scale", Const(1.0)), ("size", None)],
                  "binomial": ["n", "p", ("size", None)]}[name]
        bound = _bind(f"Generator.{name}", params, args, kwargs, node, scope)
        size = self._const_ints(bound["size"], node, scope, "size")
        distribution = [self._materialize(bound[p], node, scope)
                        for p in scan.RandomOp.METHODS[name]]
        if "dtype" in bound:
            dtype = self._dtype_arg(bound["dtype"], node, scope)
            if dtype not in (np.float32, np.float64):
                raise ScanTypeError(f"Generator.{name} supports dtype float32 or float64, not "
                                    f"{dtype}", loc)
        else:
            dtype = np.dtype(np.int64) if name == "binomial" else np.dtype(np.float64)
        if size is not None:
            aval = AVal(dtype, tuple(size))
        else:
            shapes = [aval_of(p.type).shape for p in distribution]
            try:
                shape = np.broadcast_shapes(*shapes) if shapes else ()
            except ValueError:
                raise ScanTypeError(f"the parameters of Generator.{name} do not broadcast: "
                                    + ", ".join(_describe(p) for p in distribution),
                                    loc) from None
            # With no size and only scalar parameters NumPy returns a Python scalar.
            aval = AVal(np.dtype(float) if dtype.kind == "f" else np.dtype(int), (), weak=True) \
                if shape == () else AVal(dtype, shape)
        return self._emit(scan.RandomOp(name, method.receiver, distribution, size,
                                        ir_type(aval)), node, scope)

    # -- helpers ------------------------------------------------------------------------------

    def _emit(self, op: Operation, node: ast.AST, scope: Scope) -> SSAValue:
        loc = scope.context.source.loc(node)
        op.attributes["loc"] = FileLineColLoc(StringAttr(loc.filename), IntAttr(loc.line),
                                              IntAttr(loc.col))
        self.block.add_op(op)
        return op.results[0]

    def _materialize(self, value: Value, node, scope: Scope) -> SSAValue:
        """A value where an array is needed: Python numbers become (weak) constants."""
        if isinstance(value, SSAValue):
            return value
        if isinstance(value, Const) and is_python_scalar(value.value):
            v = value.value
            if isinstance(v, bool):
                attr = IntegerAttr(int(v), i1)
            elif isinstance(v, int):
                if not -(2**63) <= v < 2**63:
                    raise ScanValueError(f"the integer {v} does not fit in int64",
                                         scope.context.source.loc(node))
                attr = IntegerAttr(v, i64)
            elif isinstance(v, float):
                attr = FloatAttr(v, f64)
            else:
                raise UnsupportedSyntax("complex constants are not supported",
                                        scope.context.source.loc(node))
            # One SSA value per constant (by type and exact spelling: -0.0 is not 0.0), so
            # that ops sharing a literal can be recognised as alike.
            key = (type(v), repr(v))
            if key not in self.constants:
                self.constants[key] = self._emit(arith.ConstantOp(attr), node, scope)
            return self.constants[key]
        if isinstance(value, Const) and isinstance(value.value, np.generic):
            return self._materialize_numpy(value.value, node, scope)
        if isinstance(value, TupleVal) and not _is_slice(value) or \
                isinstance(value, Const) and isinstance(value.value, tuple):
            items = [self._materialize(v, node, scope) for v in _tuple_items(value)]
            result_type = self._infer(
                lambda: np.asarray([aval_of(i.type).dummy() for i in items]), node, scope,
                "array construction")
            return self._emit(scan.StackOp(items, 0, result_type), node, scope)
        raise UnsupportedSyntax(f"{_describe(value)} cannot be used as an array value",
                                scope.context.source.loc(node))

    def _materialize_numpy(self, value: np.generic, node, scope: Scope) -> SSAValue:
        weak = self._materialize(Const(value.item()), node, scope)
        return self._cast(weak, value.dtype, node, scope)

    def _infer_values(self, fn, operands: list[SSAValue], node, scope: Scope, label: str):
        dummies = [self._dummy(o) for o in operands]
        return self._infer(lambda: fn(*dummies), node, scope, label)

    @staticmethod
    def _dummy(value: SSAValue):
        owner = value.owner
        if isinstance(owner, arith.ConstantOp):  # the real value: NumPy checks int ranges
            attr = owner.value
            v = attr.value.data
            return bool(v) if attr.type == i1 else v
        return aval_of(value.type).dummy()

    def _infer(self, thunk: Callable[[], Any], node, scope: Scope, label: str) -> Attribute:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                result = thunk()
            except Exception as e:  # NumPy's own message says what does not fit
                raise ScanTypeError(f"{label}: {e}", scope.context.source.loc(node)) from None
        aval = aval_of_result(result)
        try:
            return ir_type(aval)
        except UnsupportedDtype as e:
            raise ScanTypeError(f"{label} gives dtype {e}, which scanopt does not support",
                                scope.context.source.loc(node)) from None

    def _const_int(self, value: Value, node, scope: Scope, what: str) -> int:
        if isinstance(value, Const) and isinstance(value.value, (int, np.integer)) and \
                not isinstance(value.value, bool):
            return int(value.value)
        raise UnsupportedSyntax(f"`{what}` must be a constant integer",
                                scope.context.source.loc(node))

    def _const_ints(self, value: Value, node, scope: Scope, what: str) -> list[int] | None:
        if value is None or isinstance(value, Const) and value.value is None:
            return None
        if isinstance(value, Const) and isinstance(value.value, (int, np.integer)):
            return [int(value.value)]
        if isinstance(value, Const) and isinstance(value.value, (tuple, list)) and all(
                isinstance(v, (int, np.integer)) for v in value.value):
            return [int(v) for v in value.value]
        raise UnsupportedSyntax(f"`{what}` must be a constant integer or tuple of integers",
                                scope.context.source.loc(node),
                                hint="Shapes and axes are fixed when the loop is compiled.")

    def _const_bool(self, value: Value, node, scope: Scope, what: str) -> bool:
        if isinstance(value, Const) and isinstance(value.value, (bool, int, np.bool_)):
            return bool(value.value)
        raise UnsupportedSyntax(f"`{what}` must be a constant True or False",
                                scope.context.source.loc(node))

    def _dtype_arg(self, value: Value, node, scope: Scope) -> np.dtype:
        raw = value.obj if isinstance(value, PyObject) else \
            value.value if isinstance(value, Const) else None
        try:
            if raw is not None:
                return np.dtype(raw)
        except TypeError:
            pass
        raise UnsupportedSyntax("the dtype must be a constant (np.float32, 'float32', x.dtype)",
                                scope.context.source.loc(node))

    # -- outputs ------------------------------------------------------------------------------

    def _check_outputs(self, returned: list[Value],
                       node: ast.AST | None) -> tuple[list[SSAValue], list[int]]:
        """The values to yield (carries first, then per-step outputs) and, for each returned
        value in the user's order, its position among them."""
        spec = self.spec
        loc = self._loc(node)
        if spec.outputs_given and len(returned) != len(spec.inits):
            raise ScanValueError(
                f"the step returns {len(returned)} value{'s' * (len(returned) != 1)}, but "
                f"outputs_info has {len(spec.inits)} entr{'ies' if len(spec.inits) != 1 else 'y'}",
                loc, hint="Give one outputs_info entry per returned value (None for a value "
                          "that is not fed back).")
        inits = spec.inits if spec.outputs_given else \
            spec.inits + [None] * (len(returned) - len(spec.inits))
        if len(returned) < len(inits):
            raise ScanValueError(
                f"the step returns {len(returned)} value{'s' * (len(returned) != 1)}, but "
                f"{len(inits)} outputs are expected", loc)
        carries, outputs = [], []
        is_carry = []
        carry_args = iter(self.block.args[len(spec.sequences):])
        mismatches = []
        for k, (value, init) in enumerate(zip(returned, inits)):
            if isinstance(value, Const) and (value.value is None or not
                                             is_python_scalar(value.value)):
                raise ScanValueError(f"returned value #{k + 1} is {_describe(value)}, not an "
                                     "array", loc)
            if not isinstance(value, SSAValue):
                if isinstance(value, Const):
                    value = self._materialize_at(value, node)
                else:
                    raise ScanValueError(f"returned value #{k + 1} is {_describe(value)}, not "
                                         "an array", loc)
            if isinstance(aval_of(value.type), RngVal):
                raise ScanValueError("a step cannot return a generator", loc)
            is_carry.append(init is not None)
            if init is None:
                outputs.append(value)
                continue
            arg = next(carry_args)
            got = aval_of(value.type)
            if got.weak and init.shape == () and got.dtype == init.dtype:
                # A Python scalar for a 0-d carry of its own dtype (a float for float64): the
                # plain loop stacks it as that dtype, so it is carried as one.
                value = self._emit_at(scan.CastOp(value, arg.type), node)
            if value.type != arg.type:
                what = "dtype" if got.shape == init.shape else \
                    "shape" if not got.weak and got.dtype == init.dtype else "type"
                if not mismatches and isinstance(node, ast.Tuple | ast.List) and \
                        len(node.elts) == len(returned):
                    loc = self._loc(node.elts[k])
                mismatches.append(
                    f"The input carry `{arg.name_hint}` has type {init.describe()} but the step "
                    f"returns {got.describe()} for it, so the {what}s do not match.")
            carries.append(value)
        if mismatches:
            header = ("the step function's output type does not match its initial state "
                      "(outputs_info)")
            body = mismatches[0] if len(mismatches) == 1 else \
                "\n".join(f"  * {m}" for m in mismatches)
            raise ScanTypeError(
                f"{header}\n\n{body}", loc,
                hint="\nRevise the step so that each fed-back output keeps the dtype and shape "
                     "of its initial value (for example .astype(h.dtype)), or pass an initial "
                     "value of the type the step returns.")
        order, n_carry, n_out = [], 0, 0
        for carry in is_carry:
            order.append(n_carry if carry else len(carries) + n_out)
            n_carry, n_out = n_carry + carry, n_out + (not carry)
        return carries + outputs, order

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


def unwrap_callable(fn) -> tuple[types.FunctionType | None, Path]:
    """The Python function a step callable runs, and the path to it from the callable:
    a function itself, a bound method's ``__func__``, a ``functools.partial``'s ``func``."""
    if isinstance(fn, types.FunctionType):
        return fn, ()
    if isinstance(fn, types.MethodType) and isinstance(fn.__func__, types.FunctionType):
        return fn.__func__, (("method_func", None),)
    if isinstance(fn, functools.partial) and isinstance(fn.func, types.FunctionType):
        return fn.func, (("partial_func", None),)
    return None, ()


def _is_plain_object(obj) -> bool:
    """An instance of a user-defined class (not a module, function, type or NumPy object)."""
    return not isinstance(obj, (types.ModuleType, type, types.BuiltinFunctionType,
                                types.FunctionType, types.MethodType, np.ufunc)) and \
        type(obj).__module__ not in ("builtins", "numpy") and \
        not type(obj).__module__.startswith("numpy.") and hasattr(obj, "__dict__")


class _ArityError(Exception):
    def __init__(self, reason: str):
        self.reason = reason


# ---------------------------------------------------------------------------------------------
# Small helpers


def _bind(label: str, params: list, args: list[Value], kwargs: dict[str, Value], node,
          scope: Scope) -> dict[str, Value]:
    """Bind call arguments to a NumPy function's parameters (name or (name, default))."""
    loc = scope.context.source.loc(node)
    names = [p if isinstance(p, str) else p[0] for p in params]
    if len(args) > len(names):
        raise UnsupportedSyntax(f"{label}() takes at most {len(names)} arguments here", loc)
    bound: dict[str, Value] = dict(zip(names, args))
    for key, value in kwargs.items():
        if key not in names:
            raise UnsupportedSyntax(
                f"the argument `{key}=` of {label}() is not supported in a step function", loc,
                hint=f"Supported arguments: {', '.join(names)}.")
        if key in bound:
            raise ScanValueError(f"{label}() got two values for `{key}`", loc)
        bound[key] = value
    for p in params:
        if isinstance(p, str):
            if p not in bound:
                raise ScanValueError(f"{label}() is missing the argument `{p}`", loc)
        elif p[0] not in bound:
            bound[p[0]] = p[1] if isinstance(p[1], Const) or p[1] is None else Const(p[1])
    return {k: (Const(None) if v is None else v) for k, v in bound.items()}


def _numpy_name(obj) -> str | None:
    """The name of a supported NumPy function, or None."""
    for name in SUPPORTED_NUMPY:
        if getattr(np, name, None) is obj:
            return name
    return None


def _ufunc_label(numpy_name: str) -> str:
    symbols = {"add": "+", "subtract": "-", "multiply": "*", "true_divide": "/",
               "floor_divide": "//", "remainder": "%", "power": "**"}
    return f"`{symbols[numpy_name]}`" if numpy_name in symbols else f"np.{numpy_name}"


def _normalize_axis(axis: int, result_type: Attribute, node, scope: Scope) -> int:
    ndim = len(aval_of(result_type).shape)
    return axis % ndim if ndim else axis


def _is_slice(value: Value) -> bool:
    return isinstance(value, TupleVal) and value.items and value.items[0] == Const("__slice__")


def _tuple_items(value: Value) -> tuple:
    if isinstance(value, TupleVal):
        return value.items
    if isinstance(value, Const) and isinstance(value.value, (tuple, list)):
        return tuple(Const(v) for v in value.value)
    raise TypeError(value)


def _is_weak(value: SSAValue) -> bool:
    """A Python scalar (``float``, ``int``, ``bool``): NumPy's weak promotion applies to it."""
    aval = aval_of(value.type)
    return isinstance(aval, AVal) and aval.weak


def _can_name(value: SSAValue) -> bool:
    # Keep the first name a value gets (``a = b`` keeps b's name); block args keep theirs.
    return value.name_hint is None and not isinstance(value.owner, Block)


def _unique_capture_name(name: str, taken: list[str]) -> str:
    candidate, k = name, 1
    while candidate in taken:
        candidate, k = f"{name}_{k}", k + 1
    return candidate


def _sequence_name(slice_name: str) -> str:
    """X for the slice x_t / x, so the generated code reads like the user's."""
    base = slice_name[:-2] if slice_name.endswith("_t") and len(slice_name) > 2 else slice_name
    return base.upper() if base.islower() and base.upper() != base else base + "_seq"


def _describe(value: Value) -> str:
    if isinstance(value, SSAValue):
        aval = aval_of(value.type)
        return f"a value of type {aval.describe()}"
    if isinstance(value, Const):
        return f"the constant {value.value!r}"
    if isinstance(value, TupleVal):
        return f"a tuple of {len(value.items)} values"
    if isinstance(value, PyObject):
        return f"the object {getattr(value.obj, '__name__', repr(value.obj))}"
    if isinstance(value, PyFunction | LocalFunction):
        return "a function"
    if isinstance(value, BoundMethod):
        return f"the method .{value.name}"
    return repr(value)


def _statement_name(stmt: ast.stmt) -> str:
    return {ast.Delete: "del", ast.Global: "global", ast.Nonlocal: "nonlocal", ast.With: "with",
            ast.Try: "try", ast.Raise: "raise", ast.Import: "import", ast.ImportFrom: "import",
            ast.ClassDef: "class", ast.AsyncFunctionDef: "async def",
            ast.Break: "break", ast.Continue: "continue"}.get(type(stmt),
                                                              type(stmt).__name__.lower())


def _expression_name(node: ast.expr) -> str:
    return {ast.ListComp: "list comprehension", ast.GeneratorExp: "generator expression",
            ast.DictComp: "dict comprehension", ast.SetComp: "set comprehension",
            ast.Dict: "dict", ast.Set: "set", ast.JoinedStr: "f-string", ast.Await: "await",
            ast.Yield: "yield", ast.NamedExpr: ":="}.get(type(node), type(node).__name__)
