"""The AST walker: a step function (and the helpers it calls) → one ``scan.loop`` in a ``func.func``.

The walker *executes* the step function symbolically. Array values become SSA values of the loop
body; Python-level values that are known when compiling (constants, tuples, modules, functions,
``x.shape``) stay Python objects, so ``if USE_BIAS:``, ``for k in range(3):`` and ``args[1]`` are
resolved while compiling and leave no trace in the IR. Helper functions are inlined. Names the step
reads from its closure or module globals are looked up in the live function object; arrays and
generators found that way become extra loop inputs ("captures"), and every object looked up is
recorded in a :class:`~scanopt.frontend.captures.CapturePlan`, which the cache checks on later calls.

The walker is one class assembled from rooms, one file each:

- ``values.py``: what a value is while compiling (constants, tuples, functions, scopes);
- ``expressions.py``: statements and expressions; ``names.py``: names, captures, inlined calls;
- ``numpy_functions.py``: the NumPy vocabulary (one table entry per function);
- ``generator_methods.py``: ``numpy.random.Generator`` methods;
- ``ops.py``: building typed ``scan`` ops (types come from NumPy itself);
- ``outputs.py``: checking what the step returns against ``outputs_info``.
"""

from __future__ import annotations

import ast
import functools
import types
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from xdsl.builder import ImplicitBuilder
from xdsl.dialects import func
from xdsl.dialects.builtin import IndexType, ModuleOp
from xdsl.ir import Attribute, Block, Region, SSAValue

from scanopt.dialects import scan
from scanopt.dialects.types import aval_of, ir_type
from scanopt.errors import ScanValueError, SourceLocation, UnsupportedSyntax
from scanopt.frontend.captures import CapturePlan, Path
from scanopt.frontend.expressions import ExpressionWalker
from scanopt.frontend.generator_methods import GeneratorCalls
from scanopt.frontend.names import NameResolver
from scanopt.frontend.numpy_functions import NumpyCalls, numpy_name
from scanopt.frontend.ops import OpBuilder
from scanopt.frontend.outputs import OutputChecker
from scanopt.frontend.source import FunctionSource, function_source
from scanopt.frontend.values import ArityError, FunctionContext, PyObject, Scope, TupleVal, Value
from scanopt.signature import AVal, RngVal


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


class _StepBuilder(ExpressionWalker, NameResolver, NumpyCalls, GeneratorCalls, OutputChecker,
                   OpBuilder):
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
        except ArityError as e:
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
        name = numpy_name(self.root_fn)
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


def _sequence_name(slice_name: str) -> str:
    """X for the slice x_t / x, so the generated code reads like the user's."""
    base = slice_name[:-2] if slice_name.endswith("_t") and len(slice_name) > 2 else slice_name
    return base.upper() if base.islower() and base.upper() != base else base + "_seq"
