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
- ``nested.py``: ``scanopt.scan`` called inside a step (a nested loop);
- ``ops.py``: building typed ``scan`` ops (types come from NumPy itself);
- ``outputs.py``: checking what the step returns against ``outputs_info``.
"""

from __future__ import annotations

import ast
import functools
import re
import types
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from xdsl.builder import ImplicitBuilder
from xdsl.dialects import func
from xdsl.dialects.builtin import (ArrayAttr, DenseArrayBase, DictionaryAttr, IndexType,
                                   IntegerAttr, ModuleOp, TensorType, i64)
from xdsl.ir import Attribute, Block, Region, SSAValue

from scanopt import pytree
from scanopt.arguments import tap_base_name, window_extra_rows
from scanopt.dialects import scan
from scanopt.dialects.scan import EXTRA_ROWS, SYMBOLS
from scanopt.dialects.types import aval_of, ir_type
from scanopt.errors import ScanTypeError, ScanValueError, SourceLocation, UnsupportedSyntax
from scanopt.frontend.captures import CapturePlan, Path
from scanopt.frontend.expressions import ExpressionWalker
from scanopt.frontend.generator_methods import GeneratorCalls
from scanopt.frontend.names import NameResolver
from scanopt.frontend.nested import NestedFrame, NestedScans
from scanopt.frontend.numpy_functions import NumpyCalls, numpy_name
from scanopt.frontend.ops import OpBuilder
from scanopt.frontend.outputs import OutputChecker
from scanopt.frontend.source import FunctionSource, function_source
from scanopt.frontend.values import (ArityError, Const, DictVal, FunctionContext, PyObject, Scope,
                                     TupleVal, UntilVal, Value, name_value)
from scanopt.signature import AVal, RngVal, StaticVal


@dataclass
class StepSpec:
    """What ``scan`` passes to the step function, as abstract values."""

    sequences: list[AVal]  # leading dimension None (the sequence length)
    inits: list[AVal | None]  # None: a per-step output that is not fed back
    non_sequences: list[AVal | RngVal]
    reverse: bool = False
    outputs_given: bool = False  # outputs_info was given: its length is checked
    keep: str | tuple[str, ...] = "all"  # "all"/"last", or one of those per returned value
    # Theano's taps (scanopt/arguments.py): per sequence (default (0,)); per output, None for a
    # per-step output, (-1,) for the previous value (default), else its negative taps, its
    # initial value then holding the -min(taps) values before the first step.
    seq_taps: list[tuple[int, ...]] = field(default_factory=list)
    init_taps: list[tuple[int, ...] | None] = field(default_factory=list)
    strict: bool = False  # arrays read from the enclosing scope are an error (Theano's strict)
    # scanopt.carry_scan: the structures (scanopt/pytree.py) of the carry (whose leaves are the
    # carries) and of xs (whose leaves are the sequences); the step is f(carry, x).
    pytree: tuple | None = None
    # Ahead-of-time builds: symbolic dimensions, name → sentinel size (scanopt/symbolic.py).
    symbols: tuple[tuple[str, int], ...] = ()

    def sequence_taps(self) -> list[tuple[int, ...]]:
        return self.seq_taps or [(0,)] * len(self.sequences)

    def output_taps(self) -> list[tuple[int, ...] | None]:
        return self.init_taps or [None if a is None else (-1,) for a in self.inits]


@dataclass
class BuiltLoop:
    module: ModuleOp
    plan: CapturePlan
    n_outputs: int
    remarks: list = field(default_factory=list)  # what the passes did (filled by the compiler)
    output_tree: tuple | None = None  # carry_scan: the structure of the step's y


def build_loop(fn: Callable, spec: StepSpec, *, call_site: SourceLocation | None = None) -> BuiltLoop:
    """Compile ``fn`` for the argument types in ``spec`` into a module holding one ``func.func``."""
    return _StepBuilder(fn, spec, call_site).build()


class _StepBuilder(ExpressionWalker, NameResolver, NumpyCalls, GeneratorCalls, NestedScans,
                   OutputChecker, OpBuilder):
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
        self.block = Block()  # the block ops are emitted into (an inner loop's, in a nested scan)
        self.root_block = self.block  # the body of the step's own loop
        self.constants: dict[tuple, SSAValue] = {}
        self.frames: list[NestedFrame] = []  # the nested scans being built, outermost first
        self.carry_labels: dict[SSAValue, str] = {}  # carry_scan: a carry's path (carry['h'])
        self.symbols: dict[str, int] = dict(spec.symbols)  # ahead-of-time: name → sentinel

    def build(self) -> BuiltLoop:
        spec = self.spec
        # Block arguments: one slice per sequence tap; per fed-back output a register of the
        # values its taps read (x[t-m] ... x[t-1], oldest first); the non-sequences.
        slice_types, slice_of, offsets = [], [], []
        for i, (aval, taps) in enumerate(zip(spec.sequences, spec.sequence_taps())):
            for k in taps:  # the window's first row is what the lowest tap reads at step 0
                slice_types.append(ir_type(AVal(aval.dtype, aval.shape[1:])))
                slice_of.append(i)
                offsets.append(k - min(taps))
        registers: list[tuple[int, int] | None] = []  # per output: (first carry, length)
        carry_types = []
        for aval, taps in zip(spec.inits, spec.output_taps()):
            if aval is None:
                registers.append(None)
                continue
            value = aval if taps == (-1,) else AVal(aval.dtype, aval.shape[1:])
            registers.append((len(carry_types), -min(taps)))
            carry_types.extend([ir_type(value)] * -min(taps))
        # A non-sequence the loop is compiled for the value of still comes in (and is unused).
        param_types = [ir_type(a.aval() if isinstance(a, StaticVal) else a)
                       for a in spec.non_sequences]
        self.block = Block(arg_types=[*slice_types, *carry_types, *param_types])
        self.root_block = self.block
        args = list(self.block.args)
        n_slices, n_carries = len(slice_types), len(carry_types)
        carry_args = args[n_slices:n_slices + n_carries]
        step_args = args[:n_slices]
        for register, taps in zip(registers, spec.output_taps()):
            if register is not None:
                first, length = register
                step_args.extend(carry_args[first + length + k] for k in taps)
        step_args.extend(Const(a.value) if isinstance(a, StaticVal) else arg
                         for a, arg in zip(spec.non_sequences, args[n_slices + n_carries:]))
        if spec.pytree is not None:  # carry_scan: f(carry, x) with the user's structures
            carry_def, x_def = spec.pytree
            step_args = [self._tree_value(carry_def, carry_args, "carry"),
                         self._tree_value(x_def, args[:n_slices], "x")]

        target, base = unwrap_callable(self.root_fn)
        if target is not None:
            context = FunctionContext(target, function_source(target), base)
            self.target_fn = target
            self.root_context = context
            prefix, bound_kwargs = self._bound_arguments(context)
            result, return_node = self._call_root(context, step_args, prefix, bound_kwargs)
        else:
            result, return_node = self._call_numpy_root(step_args)
        _name_registers(carry_args, registers)

        returned, until = self._split_until(result, return_node)
        output_tree = None
        if spec.pytree is not None:
            returned, output_tree = self._flatten_carry_scan(returned, spec.pytree[0],
                                                             return_node)
        targets = [None if r is None else carry_args[r[0] + r[1] - 1] for r in registers]
        new_values, is_carry = self._check_outputs(returned, return_node, targets)
        keep = self._keep(len(returned), return_node) if spec.pytree is None else \
            ["last" if carry else "all" for carry in is_carry]
        # Yielded: every register shifted by one step (the new value last), then the per-step
        # outputs. position[u]: where the u-th returned value's history is.
        yielded, position = [], {}
        for u, (value, carry) in enumerate(zip(new_values, is_carry)):
            if carry:
                first, length = registers[u]
                yielded.extend(carry_args[first + 1:first + length])
                position[u] = len(yielded)
                yielded.append(value)
        for u, (value, carry) in enumerate(zip(new_values, is_carry)):
            if not carry:
                position[u] = len(yielded)
                yielded.append(value)
        with ImplicitBuilder(self.block):
            scan.YieldOp(*yielded, until=until)
        internal = [k for k in range(n_carries) if k not in position.values()]

        out_types = []
        for k, value in enumerate(yielded):
            aval = aval_of(value.type)
            if k in internal:  # a register's older values: only the last is kept
                out_types.append(value.type if isinstance(value.type, TensorType)
                                 else TensorType(value.type, []))
                continue
            stacked = AVal(np.asarray(aval.dummy()).dtype, (None, *aval.shape))
            out_types.append(ir_type(stacked))
        # The function's arguments: sequences, initial states, non-sequences, captures, n_steps.
        seq_types = [ir_type(a) for a in spec.sequences]
        init_types = [ir_type(a) for a in spec.inits if a is not None]
        fn_types = [*seq_types, *init_types, *param_types, *self.capture_types, IndexType()]
        fblock = Block(arg_types=fn_types)
        for arg, name in zip(fblock.args, self._argument_names(slice_of, carry_args, registers)):
            arg.name_hint = name
        fargs = list(fblock.args)
        n_seq, n_init = len(seq_types), len(init_types)
        with ImplicitBuilder(fblock):
            inits = []
            for init, register, taps in zip(
                    fargs[n_seq:n_seq + n_init], [r for r in registers if r is not None],
                    [t for t in spec.output_taps() if t is not None]):
                if taps == (-1,):
                    inits.append(init)
                    continue
                for j in range(register[1]):  # the register starts with the initial rows
                    row = scan.IndexOp(init, [], [str(j)], carry_args[register[0] + j].type)
                    row.result.name_hint = carry_args[register[0] + j].name_hint
                    inits.append(row.result)
            loop = scan.LoopOp(
                [fargs[i] for i in slice_of], inits, fargs[n_seq + n_init:-1],
                Region(self.block), out_types, n_steps=fargs[-1], reverse=spec.reverse,
            )
            properties = {}
            if any(offsets):
                properties["seq_offsets"] = DenseArrayBase.from_list(i64, offsets)
            if internal:
                properties["keep_last"] = DenseArrayBase.from_list(i64, internal)
            loop.properties.update(properties)
            for k, (res, value) in enumerate(zip(loop.outs, yielded)):
                hint = carry_args[k].name_hint if k < n_carries else value.name_hint
                if hint and k < n_carries:
                    hint = tap_base_name(hint)  # y_tm1 → ys: the history of y
                if hint:
                    res.name_hint = hint + ("_last" if k in internal else "s")
            # The function returns the histories in the order the step returns its values.
            results = []
            for u in range(len(returned)):
                k = position[u]
                value = loop.outs[k]
                if keep[u] == "last":
                    # (a Python scalar output comes back as np.stack of them gives it: an array)
                    last_type = yielded[k].type if isinstance(yielded[k].type, TensorType) \
                        else TensorType(yielded[k].type, [])
                    last = scan.LastOp(value, inits[k] if k < n_carries else None, last_type)
                    last.results[0].name_hint = (value.name_hint or "out")[:-1] + "_last" \
                        if value.name_hint else "last"
                    value = last.result
                results.append(value)
            func.ReturnOp(*results)
        name = getattr(self.target_fn or self.root_fn, "__name__", "step")
        if not name.isidentifier():
            name = "step"
        # A sequence read at several taps comes as a window with rows beyond the steps: say
        # how many, so that buffers sized by n_steps are not used for values made from it.
        extra = [window_extra_rows(taps) for taps in spec.sequence_taps()]
        arg_attrs = None
        if any(extra):
            arg_attrs = ArrayAttr([DictionaryAttr(
                {EXTRA_ROWS: IntegerAttr(extra[k], i64)} if k < len(extra) and extra[k] else {})
                for k in range(len(fn_types))])
        function = func.FuncOp(name, (fn_types, [r.type for r in results]), Region(fblock),
                               arg_attrs=arg_attrs)
        if self.symbols:  # the emitter writes these sizes as expressions of the symbols
            function.attributes[SYMBOLS] = DictionaryAttr(
                {name: IntegerAttr(size, i64) for name, size in self.symbols.items()})
        module = ModuleOp([function])
        return BuiltLoop(module, self.plan, len(results), output_tree=output_tree)

    def _tree_value(self, treedef: tuple, leaves: list, root: str) -> Value:
        """The walker's value for a pytree whose leaves are ``leaves`` (block arguments),
        naming each after its path (``carry['h']`` → ``h``)."""
        remaining = iter(leaves)

        def build(node, path):
            kind = node[0]
            if kind == "leaf":
                leaf = next(remaining)
                name_value(leaf, _path_name(path))
                self.carry_labels[leaf] = path
                return leaf
            if kind == "none":
                return Const(None)
            if kind == "dict":
                return DictVal(tuple(node[1]), tuple(build(c, f"{path}[{k!r}]")
                                                     for k, c in zip(node[1], node[2])))
            return TupleVal(tuple(build(c, f"{path}[{k}]") for k, c in enumerate(node[1])),
                            is_list=kind == "list")

        return build(treedef, root)

    def _flatten_carry_scan(self, returned: list[Value], carry_def: tuple,
                            node) -> tuple[list[Value], tuple]:
        """``f(carry, x)`` returns ``(carry, y)``: the new carry's leaves (in the input carry's
        structure, JAX's rule) then y's, and y's structure."""
        loc = self._loc(node)
        if len(returned) != 2:
            raise ScanValueError(
                f"f must return a pair (carry, y), but it returns {len(returned)} value"
                f"{'s' * (len(returned) != 1)}", loc,
                hint="Return the new carry and this step's output: `return carry, y` (y may be "
                     "None).")
        carry, y = returned
        carry_leaves, got_def = _flatten_value(carry)
        if got_def != carry_def:
            raise ScanTypeError(
                "the carry f returns does not have the structure of the input carry\n\n"
                f"The input carry is {pytree.describe(carry_def)} but f returns "
                f"{pytree.describe(got_def)}.", loc,
                hint="Return the carry with the same containers and keys as `init` (JAX's "
                     "lax.scan has the same rule).")
        y_leaves, y_def = _flatten_value(y)
        return [*carry_leaves, *y_leaves], y_def

    def _split_until(self, result: Value, node) -> tuple[list[Value], SSAValue | None]:
        """The returned values and the ``until`` condition: ``until(c)``, ``h, c_, until(c)``
        or ``(h, c_), until(c)``."""
        if isinstance(result, UntilVal):
            return [], result.condition
        if isinstance(result, Const) and isinstance(result.value, (tuple, list)):
            result = TupleVal(tuple(Const(v) for v in result.value))  # `return C, 2 * C`
        items = list(result.items) if isinstance(result, TupleVal) else [result]
        until = None
        if items and isinstance(items[-1], UntilVal):
            until = items.pop().condition
            if len(items) == 1 and isinstance(items[0], TupleVal):
                items = list(items[0].items)
        if any(isinstance(v, UntilVal) for v in items):
            raise ScanValueError("scanopt.until(...) must be the last value the step returns",
                                 self._loc(node),
                                 hint="Write `return h, c, scanopt.until(cond)`.")
        return items, until

    def _argument_names(self, slice_of: list[int], carry_args, registers) -> list[str]:
        """Names of the function's arguments: a sequence is named after its slice (X for x_t),
        an initial value after its carry (h_init), then non-sequences and captures."""
        spec = self.spec
        slice_names = [arg.name_hint or f"arg{arg.index}" for arg in self.block.args]
        names = []
        for i, taps in enumerate(spec.sequence_taps()):
            own = [k for k, s in enumerate(slice_of) if s == i]
            at_zero = [k for k, tap in zip(own, taps) if tap == 0]
            name = slice_names[(at_zero or own)[0]]
            names.append(_sequence_name(name if at_zero else tap_base_name(name)))
        for register, taps in zip(registers, spec.output_taps()):
            if register is not None:
                last = carry_args[register[0] + register[1] - 1].name_hint or "carry"
                names.append((last if taps == (-1,) else tap_base_name(last)) + "_init")
        names.extend(slice_names[len(slice_of) + len(carry_args):])
        return [*names, "n_steps"]

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
        n_seq = sum(len(taps) for taps in self.spec.sequence_taps())
        n_carry = sum(len(taps) for taps in self.spec.output_taps() if taps is not None)
        n_params = len(self.spec.non_sequences)
        scope = Scope({}, context)
        try:
            self._bind_arguments(node, context.fn, context, scope, [*prefix, *args],
                                 bound_kwargs)
        except ArityError as e:
            if self.spec.pytree is not None:
                raise ScanValueError(
                    f"{context.fn.__name__}() {e.reason}, but carry_scan passes 2: the carry "
                    "and this step's slice of xs", context.source.loc(node),
                    hint="Write f(carry, x) -> (carry, y).") from None
            raise ScanValueError(
                f"{context.fn.__name__}() {e.reason}, but scan passes {len(args)}: "
                f"{n_seq} sequence slice{'s' * (n_seq != 1)}, {n_carry} previous "
                f"output{'s' * (n_carry != 1)} and {n_params} non-sequence{'s' * (n_params != 1)}",
                context.source.loc(node),
                hint="Check sequences, outputs_info (None entries are not passed to the step) "
                     "and non_sequences against the step's parameters.",
            ) from None
        for arg in self.block.args:  # what the step's parameters did not name
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


def _register_length(registers, carry: int) -> int:
    """How many carries hold the values of the output that carry number ``carry`` belongs to."""
    for register in registers:
        if register is not None and register[0] <= carry < register[0] + register[1]:
            return register[1]
    return 0


def _name_registers(carry_args, registers) -> None:
    """Register values the step does not take (x[t-2] with taps [-3, -1]) are named after the
    others: ``x_tm2``."""
    for register in registers:
        if register is None:
            continue
        first, length = register
        named = [a.name_hint for a in carry_args[first:first + length]
                 if a.name_hint and not a.name_hint.startswith("arg")]
        base = tap_base_name(named[-1]) if named else "carry"
        for j in range(length):
            arg = carry_args[first + j]
            if not arg.name_hint or arg.name_hint.startswith("arg"):
                arg.name_hint = f"{base}_tm{length - j}"


def _flatten_value(value: Value) -> tuple[list[Value], tuple]:
    """The leaves and structure of a value the step built (tuples, lists, dicts, None)."""
    leaves: list[Value] = []

    def walk(node):
        if isinstance(node, Const) and node.value is None:
            return pytree.NONE
        if isinstance(node, TupleVal):
            return ("list" if node.is_list else "tuple", tuple(walk(i) for i in node.items))
        if isinstance(node, Const) and isinstance(node.value, tuple):
            return ("tuple", tuple(walk(Const(v)) for v in node.value))
        if isinstance(node, DictVal):
            keys = tuple(sorted(node.keys))
            return ("dict", keys, tuple(walk(node.get(k)) for k in keys))
        leaves.append(node)
        return pytree.LEAF

    return leaves, walk(value)


def _path_name(path: str) -> str:
    """An identifier for a pytree path: ``carry['h']`` → ``h``, ``x[0]`` → ``x_0``."""
    parts = [p for p in re.split(r"[\[\]'\"]+", path) if p]
    name = parts[-1] if len(parts) > 1 and parts[-1].isidentifier() else "_".join(parts)
    return name if name.isidentifier() else parts[0]
