"""Names and calls: what a name in the step refers to, and how calls of Python functions
are inlined.

Names the step reads from its closure or module globals are looked up in the live function
object; arrays and generators found that way become extra loop inputs ("captures"), and every
object looked up is recorded in a :class:`~scanopt.frontend.captures.CapturePlan`, which the
cache checks on later calls.
"""

from __future__ import annotations

import ast
import builtins
import functools
import inspect
import random
import types
from typing import Any

import numpy as np
from xdsl.ir import Block, SSAValue

from scanopt.dialects.types import UnsupportedDtype, aval_of, ir_type
from scanopt.errors import ScanTypeError, ScanValueError, UnsupportedSyntax
from scanopt.frontend.captures import Path
from scanopt.frontend.expressions import SUBSET_HINT
from scanopt.frontend.numpy_functions import bind_call, numpy_name, unsupported_numpy_hint
from scanopt.frontend.source import function_source
from scanopt.frontend.values import (ArityError, BoundMethod, Const, DictMethod, DictVal,
                                     FunctionContext, Instance, LocalFunction, PyFunction, PyObject,
                                     ReturnSignal, Scope, TupleVal, UntilVal, Value, describe,
                                     name_value)
from scanopt.signature import AVal, RngVal, is_python_scalar, signature_of


class NameResolver:
    """Name lookup (locals, closures, globals, builtins), captures, and inlined calls."""

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
        if isinstance(obj, (np.random.RandomState, random.Random)):
            kind = "np.random.RandomState" if isinstance(obj, np.random.RandomState) else \
                "Python random.Random"
            raise ScanTypeError(
                f"`{name}` is a {kind}; scanopt draws from a numpy.random.Generator", loc,
                hint=f"Make `{name}` a np.random.default_rng(seed) and call its methods "
                     "(rng.random, rng.normal, rng.binomial, ...).")
        if isinstance(obj, (np.ndarray, np.generic, np.random.Generator)):
            sig = signature_of(obj)
            if sig is None:
                raise ScanTypeError(f"`{name}` is an array of dtype {obj.dtype}, which scanopt "
                                    "does not support", loc)
            if self.spec.strict:
                what = "a generator" if isinstance(obj, np.random.Generator) else "an array"
                raise ScanValueError(
                    f"`{name}` is {what} the step reads from its enclosing scope, which "
                    "strict=True forbids", loc,
                    hint=f"Pass `{name}` in non_sequences (and take it as a parameter of the "
                         "step), or call scan with strict=False to capture it automatically.")
            self.plan.add(path, sig)
            if path not in self.capture_args:
                try:
                    t = ir_type(sig)
                except UnsupportedDtype as e:
                    raise ScanTypeError(f"`{name}` has unsupported dtype {e}", loc) from None
                # A loop input of the step's loop (also when a nested scan reads it first).
                arg = self.root_block.insert_arg(t, len(self.root_block.args))
                name_value(arg, _unique_capture_name(name, self.capture_names))
                self.capture_names.append(arg.name_hint or name)
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
        if type(obj) is dict and all(isinstance(k, (str, int)) and type(k) is not bool
                                     for k in obj):
            keys = tuple(obj)
            self.plan.add(path, ("keys", dict, keys))
            return DictVal(keys, tuple(self._from_python(v, path + (("item", k),),
                                                         f"{name}[{k!r}]", node, context)
                                       for k, v in obj.items()))
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
        if isinstance(obj, types.ModuleType) and \
                obj.__name__.partition(".")[0] not in ("numpy", "scanopt"):
            # A module of the user's (`helpers.act(z)`, `config.GAIN`): read like an object,
            # each attribute a capture with its own guard.
            self.plan.add(path, ("type", types.ModuleType))
            return Instance(obj, path)
        if _is_plain_object(obj):
            # An object whose attributes the step reads (``self.W``): each attribute read is
            # a capture of its own, so only the object's class is assumed here.
            self.plan.add(path, ("type", type(obj)))
            return Instance(obj, path)
        self.plan.add(path, ("is", obj))
        return PyObject(obj)

    def _call_value(self, fn_value: Value, args: list[Value], kwargs: dict[str, Value],
                    node: ast.AST, context: FunctionContext, scope: Scope | None = None) -> Value:
        scope = scope or Scope({}, context)
        loc = context.source.loc(node)
        if isinstance(fn_value, PyFunction):
            return self._inline(fn_value.fn, fn_value.path, [*fn_value.prefix, *args],
                                {**dict(fn_value.bound_kwargs), **kwargs}, node, scope)
        if isinstance(fn_value, LocalFunction):
            return self._inline_local(fn_value, args, kwargs, node, scope)
        if isinstance(fn_value, DictMethod):
            return _call_dict_method(fn_value, args, kwargs, loc)
        if isinstance(fn_value, BoundMethod):
            if isinstance(aval_of(fn_value.receiver.type), RngVal):
                return self._random(fn_value, args, kwargs, node, scope)
            return self._method(fn_value, args, kwargs, node, scope)
        if isinstance(fn_value, PyObject):
            obj = fn_value.obj
            if isinstance(obj, type) and issubclass(obj, np.generic) or obj in (float, int,
                                                                                 bool):
                return self._dtype_call(obj, args, kwargs, node, scope)
            if obj is _until_class():
                return self._until(args, kwargs, node, scope)
            if obj is _scan_function():
                return self._nested_scan(args, kwargs, node, scope)
            name = numpy_name(obj)
            if name is not None:
                return self._numpy_call(name, args, kwargs, node, scope)
            if obj is dict:
                return _call_dict(args, kwargs, loc)
            if obj is len and len(args) == 1 and isinstance(args[0], DictVal):
                return Const(len(args[0].keys))
            if obj in (len, abs, range, tuple, list, min, max, sum) and not kwargs:
                return self._builtin_call(obj, args, node, scope)
            label = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", repr(obj))
            numpy_label = getattr(obj, "__name__", None)
            if isinstance(numpy_label, str) and getattr(np, numpy_label, None) is obj:
                # np.einsum imported by name (``from numpy import einsum``)
                raise UnsupportedSyntax(
                    f"np.{numpy_label} is not supported inside a step function", loc,
                    hint=unsupported_numpy_hint(numpy_label))
            raise UnsupportedSyntax(
                f"calling `{label}` is not supported inside a step function", loc,
                hint=SUBSET_HINT + " To use another function, write it in NumPy as a Python "
                     "helper function.")
        raise UnsupportedSyntax(f"{describe(fn_value)} is not callable", loc)

    def _until(self, args, kwargs, node, scope: Scope) -> UntilVal:
        """``scanopt.until(cond)``: a scalar condition that stops the loop after this step."""
        bound = bind_call("scanopt.until", ["condition"], args, kwargs, node, scope)
        condition = self._materialize(bound["condition"], node, scope)
        aval = aval_of(condition.type)
        if not isinstance(aval, AVal) or aval.shape != ():
            raise ScanValueError(
                f"scanopt.until needs a scalar condition, got {describe(condition)}",
                scope.context.source.loc(node),
                hint="Reduce it to one value, e.g. until(np.all(np.abs(dx) < tol)) or "
                     "until(err.max() < tol).")
        return UntilVal(condition)

    def _inline(self, fn: types.FunctionType, path: Path, args, kwargs, node, scope: Scope):
        code = fn.__code__
        loc = scope.context.source.loc(node)
        if code in self.call_stack:
            raise _recursion_error(self.call_stack, code, loc)
        if code.co_flags & (inspect.CO_GENERATOR | inspect.CO_COROUTINE):
            raise UnsupportedSyntax(f"{fn.__name__}() is a generator, which cannot be inlined",
                                    loc)
        context = FunctionContext(fn, function_source(fn), path)
        callee_scope = Scope({}, context)
        try:
            self._bind_arguments(context.source.node, fn, context, callee_scope, args, kwargs)
        except ArityError as e:
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
            raise _recursion_error(self.call_stack, local.node, loc)
        callee_scope = Scope({}, local.scope.context, parent=local.scope)
        local.node._scanopt_scope = local.scope  # defaults are evaluated where it was defined
        try:
            self._bind_arguments(local.node, None, local.scope.context, callee_scope, args,
                                 kwargs)
        except ArityError as e:
            raise ScanValueError(f"the local function {e.reason}", loc) from None
        self.call_stack.append(local.node)
        try:
            result, _ = self._run_body(local.node, callee_scope)
        finally:
            self.call_stack.pop()
        return result

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
                    raise ArityError(f"got multiple values for argument {name!r}")
            elif name in kwargs:
                value = kwargs.pop(name)
            elif name in defaults:
                value = defaults[name]
            else:
                raise ArityError(f"takes {len(positional)} positional argument"
                                  f"{'s' * (len(positional) != 1)}")
            scope.names[name] = value
            if isinstance(value, SSAValue) and not value.name_hint and \
                    isinstance(value.owner, Block):
                name_value(value, name)  # the step's own parameters, not a helper's
        extra = args[len(positional):]
        if a.vararg is not None:
            for k, value in enumerate(extra):
                if isinstance(value, SSAValue) and not value.name_hint:
                    name_value(value, f"{a.vararg.arg}_{k}")
            scope.names[a.vararg.arg] = TupleVal(tuple(extra))
        elif extra:
            raise ArityError(f"takes {len(positional)} positional argument"
                              f"{'s' * (len(positional) != 1)}")
        for p in a.kwonlyargs:
            if p.arg in kwargs:
                scope.names[p.arg] = kwargs.pop(p.arg)
            elif p.arg in defaults:
                scope.names[p.arg] = defaults[p.arg]
            else:
                raise ArityError(f"needs keyword argument {p.arg!r}")
        if kwargs and a.kwarg is None:
            raise ArityError(f"got unexpected keyword argument {next(iter(kwargs))!r}")
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
        except ReturnSignal as ret:
            return ret.value, ret.node
        raise ScanValueError(
            f"{node.name}() returns nothing", scope.context.source.loc(node),
            hint="A step function must return the new value of each output "
                 "(return h, or return h, c for several).",
        )


def _is_plain_object(obj) -> bool:
    """An instance of a user-defined class (not a module, function, type or NumPy object)."""
    return not isinstance(obj, (types.ModuleType, type, types.BuiltinFunctionType,
                                types.FunctionType, types.MethodType, np.ufunc)) and \
        type(obj).__module__ not in ("builtins", "numpy") and \
        not type(obj).__module__.startswith("numpy.") and hasattr(obj, "__dict__")


def _recursion_error(call_stack: list, callee, loc) -> UnsupportedSyntax:
    """A call of a function that is already being inlined: name the cycle (f() → g() → f())."""
    cycle = [*call_stack[call_stack.index(callee):], callee]
    names = [f"{getattr(f, 'co_name', None) or getattr(f, 'name', 'lambda')}()" for f in cycle]
    what = f"{names[0]} calls itself" if len(cycle) == 2 else \
        f"{names[0]} calls itself through {', '.join(names[1:-1])}"
    return UnsupportedSyntax(
        f"recursion is not supported inside a step function: {what} "
        f"({' → '.join(names)})", loc,
        hint="scanopt inlines every call, so the depth must be known while compiling: write "
             "the recursion as a `for` loop over a constant range (for k in range(3): ...).")


def _unique_capture_name(name: str, taken: list[str]) -> str:
    candidate, k = name, 1
    while candidate in taken:
        candidate, k = f"{name}_{k}", k + 1
    return candidate


def _until_class():
    from scanopt.api import until

    return until


def _scan_function():
    from scanopt.api import scan

    return scan


def _call_dict(args, kwargs, loc) -> DictVal:
    """``dict(h=h, c=c)``, ``dict(other)``, ``dict(other, h=h)``."""
    result = DictVal((), ())
    if len(args) > 1 or args and not isinstance(args[0], DictVal):
        raise UnsupportedSyntax("dict() takes a dict and keyword arguments in a step function",
                                loc, hint='Write {"h": h, "c": c} or dict(h=h, c=c).')
    if args:
        result = args[0]
    return result.merged(DictVal(tuple(kwargs), tuple(kwargs.values())))


def _call_dict_method(method: DictMethod, args, kwargs, loc) -> Value:
    d = method.receiver
    if method.name == "get":
        if kwargs or not 1 <= len(args) <= 2 or not isinstance(args[0], Const):
            raise UnsupportedSyntax("d.get(key) or d.get(key, default), with a constant key",
                                    loc)
        return d.get(args[0].value, args[1] if len(args) == 2 else Const(None))
    if args or kwargs:
        raise UnsupportedSyntax(f"d.{method.name}() takes no arguments", loc)
    if method.name == "keys":
        return Const(tuple(d.keys))
    if method.name == "values":
        return TupleVal(tuple(d.items))
    return TupleVal(tuple(TupleVal((Const(k), v)) for k, v in zip(d.keys, d.items)))
