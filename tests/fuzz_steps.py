"""Random step functions for differential fuzzing: scanopt against the plain loop.

A generated *case* is a whole Python module, written to a real ``.py`` file and imported (scanopt
reads the step's source with ``inspect``). It holds module globals, module-level helper
functions, the step function (inside a ``make_step`` factory when it captures closure variables)
and ``arguments()``, which builds the data and returns the keyword arguments of the scan call.
A failing case that hypothesis prints is therefore a complete reproduction::

    import fuzz_steps, case
    fuzz_steps.check_scan(**case.arguments())

``python tests/fuzz_steps.py N`` runs N cases without stopping at the first failure or shrinking,
and prints the shortest case of each distinct failure: the way to keep fuzzing past a bug.

What a step may contain is README's "What a step function may contain": a random DAG of the
supported operations over the step's arguments (0-2 sequences, 1-3 carries (rarely none), 0-3
non-sequences) and its captures (closure variables, module globals), with broadcasting, float32/float64/int/bool
arrays, Python scalars and NumPy scalars, helper functions (module-level, local ``def``s and
lambdas, which may close over the step's locals and are called again after a rebinding),
per-step outputs, tuple/list returns, ``go_backwards``, unequal sequence lengths, ``n_steps``
and ``keep``.

Every expression is evaluated while it is generated, on values of the types the first step sees
(Python scalars stay Python scalars), so NumPy itself decides each value's dtype and shape and
rejects invalid combinations; the generator never re-implements NumPy's typing rules. Two rules
keep the plain loop and the compiled loop comparable without filtering away what users write:

- *bounded values*: each value carries a bound on its magnitude; a statement whose bound grows
  past ``FLOAT_LIMIT`` is wrapped in ``np.tanh``/``np.clip`` (integers: ``% 7``), divisions are by
  ``1 + b*b`` or ``|b| + 0.5``, ``log``/``sqrt`` of ``|a| + eps`` or ``a*a + eps``. Carries are
  updated to stay within 2 in magnitude, so nothing overflows however many steps run;
- *stable discontinuities*: comparisons, ``//``, ``%``, casts to int/bool and ``sqrt(|a|)`` only
  take values that both loops compute bit for bit (inputs, exact transforms of them, one
  rounding of those, any integer), never a sum or matmul that a pass may regroup. Carries count
  as inputs: after the first step they may differ in the last bit, which flips a comparison
  only when a value lies within that bit of the threshold.

Carry updates are cast to the carry's dtype most of the time; otherwise the plain loop may
refuse the call (a carry whose dtype drifts), and scanopt must then raise ``ScanTypeError``.
"""

from __future__ import annotations

import copy
import itertools
import math
import textwrap
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from hypothesis import strategies as st

import scanopt
from conftest import _probe_outputs, as_list, assert_matches, plain_loop

# --------------------------------------------------------------------------------------------
# Switches
# --------------------------------------------------------------------------------------------

#: Constructs the generator avoids while a scanopt bug in them is open. Each key is a construct
#: the generator checks with ``enabled(...)``; each value names the strict-xfail regression test
#: in tests/test_fuzz_regressions.py that reproduces the bug. Delete an entry once its bug is
#: fixed (and the test's xfail mark), so that the fuzzer covers the construct again. Whole
#: statement kinds can be switched off the same way when a new bug needs working around:
#: "module-helper", "local-def", "lambda", "rebind", "keyword-argument", "astype-string".
AVOID: dict[str, str] = {
}


def enabled(construct: str) -> bool:
    return construct not in AVOID


# --------------------------------------------------------------------------------------------
# The oracle: what the plain loop does with these arguments, and scanopt against it
# --------------------------------------------------------------------------------------------

class PlainLoopRefuses(Exception):
    """The plain loop refuses the call; ``accepted`` are the exceptions scanopt may raise."""

    def __init__(self, message, accepted):
        super().__init__(message)
        self.accepted = accepted


def _steps(sequences, n_steps):
    lengths = [len(np.asarray(s)) for s in as_list(sequences)]
    return n_steps if n_steps is not None else min(lengths)


def plain_loop_kept(fn, *, keep="all", **kwargs):
    """The plain loop's result with ``keep`` applied (docs/semantics.md), or its refusal.

    Raises ``PlainLoopRefuses`` accepting ``ScanTypeError`` where the plain loop refuses a
    carry's type, also after zero steps (the step's first call returns the mismatched carry
    whatever the number of steps), and accepting ``ScanValueError`` for a per-step output kept
    "last" after zero steps (both, when both apply). Any other exception of the plain loop
    propagates.
    """
    try:
        result = plain_loop(fn, **kwargs)
    except TypeError as error:
        if str(error).startswith("output "):  # plain_loop's carry check
            raise PlainLoopRefuses(str(error), (scanopt.ScanTypeError,)) from error
        raise
    outputs = result if isinstance(result, list) else [result]
    inits = as_list(kwargs.get("outputs_info"))
    inits = inits + [None] * (len(outputs) - len(inits))
    keeps = [keep] * len(outputs) if isinstance(keep, str) else list(keep)
    n = _steps(kwargs.get("sequences"), kwargs.get("n_steps"))
    if n == 0:
        accepted, reasons = [], []
        seqs = [np.asarray(s) for s in as_list(kwargs.get("sequences"))]
        probe = _probe_outputs(fn, seqs, [None if v is None else np.asarray(v) for v in inits],
                               as_list(kwargs.get("non_sequences")))
        for k, (value, init) in enumerate(zip(probe, inits)):
            init = None if init is None else np.asarray(init)
            if init is not None and (value.dtype, value.shape) != (init.dtype, init.shape):
                accepted.append(scanopt.ScanTypeError)
                reasons.append(f"output {k}: step returns {value.dtype}{list(value.shape)} for "
                               f"a carry whose initial state is {init.dtype}{list(init.shape)}")
        if any(kind == "last" and init is None for kind, init in zip(keeps, inits)):
            accepted.append(scanopt.ScanValueError)
            reasons.append("no last value of a per-step output after zero steps")
        if accepted:
            raise PlainLoopRefuses("; ".join(reasons), tuple(dict.fromkeys(accepted)))
    kept = []
    for output, kind, init in zip(outputs, keeps, inits):
        if kind == "all":
            kept.append(output)
        elif n > 0:
            kept.append(output[-1])
        else:
            kept.append(np.array(init))
    return kept[0] if len(kept) == 1 else kept


def _assert_kept_matches(actual, expected):
    """``assert_matches``, where a kept last value may be a NumPy scalar as ``result[-1]`` is."""
    if isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), (
            f"expected a list of {len(expected)} results, got {actual!r:.200}")
        for a, e in zip(actual, expected):
            _assert_kept_matches(a, e)
        return
    if isinstance(expected, np.generic):
        assert isinstance(actual, (np.generic, np.ndarray)) and np.ndim(actual) == 0, (
            f"expected a NumPy scalar, got {actual!r:.200}")
        actual, expected = np.asarray(actual), np.asarray(expected)
    assert_matches(actual, expected)


def _arrays_in(kwargs):
    keys = ("sequences", "outputs_info", "non_sequences")
    return [v for key in keys for v in as_list(kwargs.get(key)) if isinstance(v, np.ndarray)]


def check_scan(fn, *, keep="all", **kwargs):
    """scanopt agrees with the plain loop, passes on and off, or refuses exactly what it refuses.

    - the plain loop runs: scanopt returns the same structure, dtypes, shapes and values (to
      tolerance), raises nothing, mutates no input, and a second call does not overwrite the
      arrays the first returned;
    - the plain loop refuses a carry's type: scanopt raises ``ScanTypeError``;
    - a per-step output kept "last" after zero steps: scanopt raises ``ScanValueError``;
    - the plain loop raises anything else: scanopt raises a ``ScanError`` or the same exception.

    Returns the outcome, for hypothesis statistics.
    """
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            expected, refusal = plain_loop_kept(fn, keep=keep, **kwargs), None
        except PlainLoopRefuses as error:
            refusal = error
        except Exception as error:  # noqa: BLE001 - any other refusal of the plain loop
            refusal = PlainLoopRefuses(f"{type(error).__name__}: {error}",
                                       (scanopt.ScanError, type(error)))
        inputs = _arrays_in(kwargs)
        before = [a.copy() for a in inputs]
        for optimize in (True, False):
            where = f"optimize={optimize}"
            try:
                actual = scanopt.scan(fn, keep=keep, optimize=optimize, **kwargs)
            except Exception as error:  # noqa: BLE001 - judged below
                if refusal is None:
                    kind = "refused" if isinstance(error, scanopt.ScanError) else "crashed on"
                    raise AssertionError(
                        f"{where}: scanopt {kind} a loop that the plain loop runs:\n"
                        f"{type(error).__name__}: {error}") from error
                if not isinstance(error, refusal.accepted):
                    names = " or ".join(c.__name__ for c in refusal.accepted)
                    raise AssertionError(
                        f"{where}: the plain loop refuses the call ({refusal}); scanopt should "
                        f"raise {names} but raised {type(error).__name__}:\n{error}") from error
                continue
            if refusal is not None:
                raise AssertionError(f"{where}: the plain loop refuses the call ({refusal}) but "
                                     f"scanopt returned {actual!r:.300}")
            _assert_kept_matches(actual, expected)
            if optimize:
                first = copy.deepcopy(actual)
                scanopt.scan(fn, keep=keep, optimize=optimize, **kwargs)
                _assert_kept_matches(actual, first)  # the second call left the first's alone
        for a, b in zip(inputs, before):
            np.testing.assert_array_equal(a, b, err_msg="scanopt mutated an input array")
    if refusal is None:
        return "runs"
    return "refused: " + " or ".join(c.__name__ for c in refusal.accepted)


# --------------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------------

FLOAT_LIMIT = 4.0    # floats beyond this bound are squashed (tanh/clip)
INT_LIMIT = 20       # integers beyond this bound are reduced (% 7)
CARRY_LIMIT = 2.0    # carry updates stay within this bound
MAX_SIZE = 64        # elements of any value
MAX_NDIM = 3


@dataclass
class Value:
    """A name in scope while generating: its example (a value of the type the first step sees),
    a bound on its magnitude, and its exactness ``level``: 0 = bit-exact function of the inputs
    (selections, transposes, casts; every integer), 1 = one rounding of level-0 values, None =
    may differ in the last bits between the plain loop and a compiled loop (sums, matmuls)."""

    src: str
    example: Any
    bound: float
    level: int | None = 0
    role: str = "local"

    @property
    def shape(self):
        return np.shape(self.example)

    @property
    def ndim(self):
        return np.ndim(self.example)

    @property
    def dtype(self):
        return np.asarray(self.example).dtype

    @property
    def kind(self):
        return self.dtype.kind

    @property
    def is_python(self):
        return isinstance(self.example, (bool, int, float))

    @property
    def is_array(self):
        """An ndarray of rank >= 1 (indexable, reshapeable, with methods)."""
        return isinstance(self.example, np.ndarray) and self.ndim > 0

    @property
    def stable(self):
        return self.kind in "biu" or self.level in (0, 1)


@dataclass
class Expr:
    src: str
    bound: float
    level: int | None


def literal(text: str) -> Value:
    value = eval(text)  # noqa: S307 - our own constant text
    return Value(text, value, abs(float(value)), 0, "literal")


FLOAT_LITERALS = ["0.5", "2.0", "(-1.5)", "0.25", "3.0"]
PARAMS = ["a", "b"]
INT_LITERALS = ["1", "2", "3", "(-1)"]


def exact(*values):
    """Level of an exact selection/transform of ``values``."""
    levels = [v.level for v in values]
    return None if None in levels else max(levels, default=0)


def rounded(*values):
    """Level of one rounding step applied to ``values``."""
    return 1 if exact(*values) == 0 else None


def broadcastable(*values):
    try:
        np.broadcast_shapes(*(v.shape for v in values))
        return True
    except ValueError:
        return False


def acceptable(example) -> bool:
    if isinstance(example, (bool, int, float)):
        return not isinstance(example, int) or abs(example) < 2**31
    if not isinstance(example, (np.ndarray, np.generic)):
        return False
    dt = example.dtype
    return ((dt.kind == "f" and dt.itemsize >= 4) or dt.kind == "b"
            or (dt.kind == "i" and dt.itemsize >= 4)) \
        and example.ndim <= MAX_NDIM and example.size <= MAX_SIZE


def evaluate(src: str, namespace: dict):
    """(True, value) of ``src`` evaluated on the examples, or (False, None) if NumPy refuses it."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return True, eval(src, namespace)  # noqa: S307 - generated from our own grammar
        except Exception:  # noqa: BLE001 - any refusal: the candidate is dropped
            return False, None


# --------------------------------------------------------------------------------------------
# Blocks of statements
# --------------------------------------------------------------------------------------------

def param_bound(example):
    """The bound a helper assumes for a parameter: the largest any value in scope can have."""
    return INT_LIMIT if np.asarray(example).dtype.kind in "iu" else FLOAT_LIMIT


class NoOperand(Exception):
    """Nothing in scope fits an operation's operand."""


@dataclass
class Helper:
    """A generated function: its name, the kinds of arguments its body was generated for, and
    the bounds and exactness levels of its results."""

    name: str
    kinds: tuple
    ndims: tuple
    results: list   # Values (bound, level) of the results

    @classmethod
    def called_with(cls, name, args, results):
        return cls(name, tuple(a.kind for a in args), tuple(a.ndim for a in args), results)


class Program:
    """What the whole generated module shares: the draw function, the evaluation namespace
    (one dict: module globals, helpers, and the current example of every name), fresh names,
    and the module-level helper sources."""

    def __init__(self, draw):
        self.draw = draw
        self.namespace: dict[str, Any] = {"np": np, "abs": abs}
        self._counter = itertools.count()
        self.helpers: list[Helper] = []
        self.helper_sources: list[str] = []
        self.depth = 0

    def fresh(self, prefix):
        return f"{prefix}{next(self._counter)}"

    def choice(self, options):
        return self.draw(st.sampled_from(options))

    def chance(self, percent):
        """True with probability ``percent``/100; shrinks to False."""
        return self.draw(st.integers(0, 99)) >= 100 - percent


class Block:
    """A sequence of assignments (a step body, a helper body or a local def body) with the
    names it can read (``pool``) and the names it may rebind (``own``). Lines are kept without
    the block's own indentation."""

    def __init__(self, program: Program, pool, own=(), module_level=False):
        self.p = program
        self.pool: dict[str, Value] = {v.src: v for v in pool}
        self.own = set(own)
        self.lines: list[str] = []
        self.local_fns: list[Helper] = []
        self.module_level = module_level

    # -- picking operands ------------------------------------------------------------------

    def values(self, pred=None):
        return [v for v in self.pool.values() if pred is None or pred(v)]

    def pick(self, pred=None):
        candidates = self.values(pred)
        return self.p.choice(candidates) if candidates else None

    def partner(self, a, pred=None, literals=FLOAT_LITERALS + INT_LITERALS, percent=30):
        """A second operand broadcastable with ``a``: a literal or a value in scope."""
        if not self.p.chance(percent):
            candidate = self.pick(lambda v: broadcastable(v, a) and (pred is None or pred(v)))
            if candidate is not None:
                return candidate
        return literal(self.p.choice(literals))

    # -- defining names --------------------------------------------------------------------

    def squash(self, expr: Expr, example):
        """Wrap ``expr`` if its bound is past the limit for its kind: (src, bound, level)."""
        kind = np.asarray(example).dtype.kind
        if kind == "f" and expr.bound > FLOAT_LIMIT:
            if self.p.chance(50):
                return f"np.clip({expr.src}, -{FLOAT_LIMIT}, {FLOAT_LIMIT})", FLOAT_LIMIT, \
                    expr.level
            return f"np.tanh({expr.src})", 1.0, None
        if kind in "iu" and expr.bound > INT_LIMIT:
            return f"({expr.src}) % 7", 7, 0
        return expr.src, expr.bound, expr.level

    def bounded(self, expr: Expr | None) -> tuple[Expr, Any] | None:
        """``expr`` squashed to its bound and evaluated, or None if NumPy refuses it."""
        if expr is None:
            return None
        ok, example = evaluate(expr.src, self.p.namespace)
        if not ok or not acceptable(example):
            return None
        src, bound, level = self.squash(expr, example)
        if src != expr.src:
            ok, example = evaluate(src, self.p.namespace)
            if not ok or not acceptable(example):
                return None
        if np.asarray(example).dtype.kind in "biu":
            level = 0
        return Expr(src, bound, level), example

    def bind(self, name, example, bound, level):
        self.p.namespace[name] = example
        self.pool.pop(name, None)
        self.pool[name] = value = Value(name, example, bound, level)
        self.own.add(name)
        return value

    def define(self, expr: Expr | None, name=None) -> Value | None:
        """If NumPy accepts ``expr``, add ``name = expr`` (bounded) to the block."""
        result = self.bounded(expr)
        if result is None:
            return None
        expr, example = result
        if name is None or not self._may_rebind(name, example):
            name = self.p.fresh("v")
        self.lines.append(f"{name} = {expr.src}")
        return self.bind(name, example, expr.bound, expr.level)

    def _may_rebind(self, name, example):
        old = self.pool.get(name)
        if name not in self.own or old is None:
            return False
        if old.role == "carry":  # the carry update below still needs the carry's type
            return np.shape(example) == old.shape and np.asarray(example).dtype == old.dtype
        return True

    # -- statements ------------------------------------------------------------------------

    def statements(self, count):
        for _ in range(count):
            self.statement()

    def statement(self):
        roll = self.p.draw(st.integers(0, 99))
        nested = self.p.depth < 2
        if roll >= 93 and nested and enabled("module-helper"):
            if self.module_helper_call():
                return
        elif roll >= 88 and nested and enabled("local-def"):
            if self.local_def_call():
                return
        elif roll >= 84 and nested and enabled("lambda"):
            if self.lambda_call():
                return
        for _ in range(4):
            name = None
            if self.own and self.p.chance(8) and enabled("rebind"):
                name = self.p.choice(sorted(self.own))
            if self.define(self.expression(), name) is not None:
                return
        a = self.pick(lambda v: v.kind in "iuf") or self.pick()
        self.define(Expr(f"np.abs({a.src})", a.bound, a.level))

    def expression(self) -> Expr | None:
        try:
            return getattr(self, f"op_{self.p.choice(OPS)}")()
        except NoOperand:
            return None

    # -- helper functions ------------------------------------------------------------------

    def _call(self, fn: Helper, args):
        parts = [a.src for a in args]
        if parts and self.p.chance(15) and enabled("keyword-argument"):
            parts[-1] = f"{PARAMS[len(parts) - 1]}={parts[-1]}"
        return f"{fn.name}({', '.join(parts)})"

    def _define_call(self, fn: Helper, args):
        """Bind the result(s) of calling ``fn`` on ``args``; False if NumPy refuses the call."""
        call = self._call(fn, args)
        if len(fn.results) == 1:
            r = fn.results[0]
            return self.define(Expr(call, r.bound, r.level)) is not None
        ok, examples = evaluate(call, self.p.namespace)
        if not ok or not all(acceptable(e) for e in examples):
            return False
        names = [self.p.fresh("v") for _ in examples]
        self.lines.append(f"{', '.join(names)} = {call}")
        for name, example, r in zip(names, examples, fn.results):
            kind = np.asarray(example).dtype.kind
            self.bind(name, example, r.bound, 0 if kind in "biu" else r.level)
        return True

    def _reuse(self, fns):
        """Call one of ``fns`` again, on arguments of the kinds its body was generated for."""
        fn = self.p.choice(fns)
        args = []
        # A helper generated for arrays may reduce over an axis or transpose: on a scalar,
        # those reach open bugs (see AVOID).
        scalars_ok = enabled("reduce-axis-on-0d") and enabled("transpose-0d")
        for kind, ndim in zip(fn.kinds, fn.ndims):
            arg = self.pick(lambda v: v.kind == kind and (scalars_ok or v.ndim > 0 or ndim == 0))
            if arg is None:
                return False
            args.append(arg)
        return self._define_call(fn, args)

    def _parameters(self):
        """(names, arguments in scope, Values inside) of a new function's parameters."""
        params = PARAMS[:self.p.draw(st.integers(1, 2))]
        args = [self.pick() for _ in params]
        inputs = []
        for name, arg in zip(params, args):
            self.p.namespace[name] = arg.example
            inputs.append(Value(name, arg.example, param_bound(arg.example), None, "arg"))
        return params, args, inputs

    def _new_function(self, outer, module_level):
        """(params, args, body block) of a new function generated for arguments in scope."""
        params, args, inputs = self._parameters()
        body = Block(self.p, outer + inputs, own=params, module_level=module_level)
        self.p.depth += 1
        try:
            body.statements(self.p.draw(st.integers(1, 3)))
        finally:
            self.p.depth -= 1
        return params, args, body

    def _results(self, body, most=2):
        results = [body.pick(lambda v: v.role == "local") or body.pick()]
        if most > 1 and self.p.chance(25):
            results.append(body.pick())
        return results

    def module_helper_call(self):
        """Call a module-level helper (new, or one defined before) and bind its result(s)."""
        if self.p.helpers and self.p.chance(40):
            return self._reuse(self.p.helpers)
        globals_ = [v for v in self.pool.values() if v.role == "global"]
        params, args, body = self._new_function(globals_, module_level=True)
        results = self._results(body)
        fn = Helper.called_with(self.p.fresh("helper"), args, results)
        source = "\n".join([f"def {fn.name}({', '.join(params)}):"]
                           + [f"    {line}" for line in body.lines]
                           + [f"    return {', '.join(r.src for r in results)}"])
        exec(source, self.p.namespace)  # noqa: S102 - generated from our own grammar
        if not self._define_call(fn, args):
            return False
        self.p.helper_sources.append(source)
        self.p.helpers.append(fn)
        return True

    def local_def_call(self):
        """Define a function inside this block (closing over its names) and call it."""
        if self.local_fns and self.p.chance(40):
            return self._reuse(self.local_fns)
        params, args, body = self._new_function(list(self.pool.values()), self.module_level)
        results = self._results(body, most=1)
        fn = Helper.called_with(self.p.fresh("local"), args, results)
        lines = ([f"def {fn.name}({', '.join(params)}):"] + [f"    {line}" for line in body.lines]
                 + [f"    return {results[0].src}"])
        exec("\n".join(lines), self.p.namespace)  # noqa: S102 - generated from our own grammar
        start = len(self.lines)
        self.lines.extend(lines)
        if not self._define_call(fn, args):
            del self.lines[start:]
            return False
        self.local_fns.append(fn)
        return True

    def lambda_call(self):
        """Bind a lambda (closing over this block's names) and call it."""
        params, args, inputs = self._parameters()
        inner = Block(self.p, list(self.pool.values()) + inputs)
        result = inner.bounded(inner.expression())
        if result is None:
            return False
        expr, _ = result
        fn = Helper.called_with(self.p.fresh("local"), args,
                                [Value(expr.src, None, expr.bound, expr.level)])
        line = f"{fn.name} = lambda {', '.join(params)}: {expr.src}"
        exec(line, self.p.namespace)  # noqa: S102 - generated from our own grammar
        self.lines.append(line)
        if not self._define_call(fn, args):
            self.lines.pop()
            return False
        self.local_fns.append(fn)
        return True

    # -- operations (each returns an Expr; NoOperand when nothing in scope fits) --------------

    def need(self, pred=None):
        value = self.pick(pred)
        if value is None:
            raise NoOperand
        return value

    def op_arith(self):
        a = self.need()
        op = self.p.choice(["+", "*", "-"])
        b = self.partner(a)
        if self.p.chance(30):
            a, b = b, a
        bound = a.bound * b.bound if op == "*" else a.bound + b.bound
        return Expr(f"{a.src} {op} {b.src}", bound, rounded(a, b))

    def op_unary(self):
        a = self.need(lambda v: v.kind in "iuf")
        fn = self.p.choice(["tanh", "neg", "abs", "exp", "sin", "cos", "log", "sqrt",
                            "builtin_abs"])
        if fn in ("tanh", "sin", "cos"):
            return Expr(f"np.{fn}({a.src})", 1.0, rounded(a))
        if fn == "neg":
            return Expr(f"-{a.src}", a.bound, exact(a))
        if fn == "abs":
            return Expr(f"np.abs({a.src})", a.bound, exact(a))
        if fn == "builtin_abs":
            return Expr(f"abs({a.src})", a.bound, exact(a))
        if fn == "exp":
            if a.bound <= 1.5:
                return Expr(f"np.exp({a.src})", math.exp(a.bound), rounded(a))
            return self.p.choice([
                Expr(f"np.exp(-np.abs({a.src}))", 1.0, None),
                Expr(f"np.exp(np.clip({a.src}, -1.0, 1.0))", math.e, None)])
        if fn == "log":
            return self.p.choice([
                Expr(f"np.log(np.abs({a.src}) + 0.5)", max(0.7, math.log(a.bound + 0.5)), None),
                Expr(f"np.log({a.src} * {a.src} + 1.0)", math.log(a.bound**2 + 1), None)])
        if a.stable and self.p.chance(50):
            return Expr(f"np.sqrt(np.abs({a.src}))", math.sqrt(a.bound), None)
        return Expr(f"np.sqrt({a.src} * {a.src} + 0.25)", math.sqrt(a.bound**2 + 0.25), None)

    def op_divide(self):
        a = self.need(lambda v: v.kind in "iuf")
        form = self.p.choice(["literal", "square", "abs"])
        if form == "literal":
            c = literal(self.p.choice(["2.0", "4", "(-0.5)", "3.0"]))
            return Expr(f"{a.src} / {c.src}", a.bound / abs(c.example), rounded(a))
        b = self.need(lambda v: v.kind in "iuf" and broadcastable(v, a))
        if form == "square":
            return Expr(f"{a.src} / (1.0 + {b.src} * {b.src})", a.bound, None)
        return Expr(f"{a.src} / (np.abs({b.src}) + 0.5)", 2 * a.bound, None)

    def op_power(self):
        a = self.need(lambda v: v.kind in "iuf")
        form = self.p.choice(["square", "cube", "abs_1_5", "base_2", "param", "abs_sqrt"])
        if form == "square" or (form == "cube" and a.kind != "f"):
            return Expr(f"{a.src} ** 2", a.bound**2, rounded(a))
        if form == "cube":
            return Expr(f"{a.src} ** 3", a.bound**3, rounded(a))
        if form == "abs_1_5":
            return Expr(f"np.abs({a.src}) ** 1.5", a.bound**1.5, None)
        if form == "base_2" and a.bound <= 3:
            return Expr(f"2.0 ** {a.src}", 2.0**a.bound, rounded(a))
        k = self.pick(lambda v: v.is_python and type(v.example) is int and 0 <= v.example <= 3)
        if form == "param" and k is not None:
            return Expr(f"{a.src} ** {k.src}", a.bound**k.example, rounded(a, k))
        if a.stable:
            return Expr(f"np.abs({a.src}) ** 0.5", math.sqrt(a.bound), None)
        return Expr(f"{a.src} ** 2", a.bound**2, rounded(a))

    def op_floor_mod(self):
        a = self.need(lambda v: v.stable and v.kind in "iuf")
        op = self.p.choice(["//", "%"])
        b = self.pick(lambda v: v.stable and v.kind in "iu" and broadcastable(v, a))
        if b is not None and self.p.chance(40):
            src = f"{a.src} {op} (np.abs({b.src}) + 1)"
            return Expr(src, a.bound + 1 if op == "//" else b.bound + 1, rounded(a, b))
        c = literal(self.p.choice(["2", "0.5", "1.5", "3"]))
        bound = a.bound / c.example + 1 if op == "//" else c.example
        return Expr(f"{a.src} {op} {c.src}", bound, rounded(a))

    def op_compare(self):
        a = self.need(lambda v: v.stable)
        b = self.partner(a, lambda v: v.stable, ["0.0", "0.5", "(-0.25)", "1", "0"])
        op = self.p.choice([">", "<", ">=", "<=", "==", "!="])
        return Expr(f"{a.src} {op} {b.src}", 1, 0)

    def _condition(self):
        cond = self.pick(lambda v: v.kind == "b")
        if cond is not None and self.p.chance(70):
            return cond.src
        a = self.pick(lambda v: v.stable and v.kind in "iuf")
        if a is None:
            return "True"
        return f"{a.src} > {self.p.choice(['0.0', '0.5', '(-0.25)'])}"

    def op_where(self):
        cond = self._condition()
        a = self.need()
        b = self.partner(a)
        return Expr(f"np.where({cond}, {a.src}, {b.src})", max(a.bound, b.bound), exact(a, b))

    def op_minmax(self):
        a = self.need()
        b = self.partner(a)
        fn = self.p.choice(["maximum", "minimum"])
        return Expr(f"np.{fn}({a.src}, {b.src})", max(a.bound, b.bound), exact(a, b))

    def op_clip(self):
        a = self.need()
        lo, hi = self.p.choice([("-1.0", "1.0"), ("0.0", "2.0"), ("-0.5", "0.5"), ("-2", "2")])
        bound = min(a.bound, max(abs(float(lo)), abs(float(hi))))
        if a.is_array and self.p.chance(30):
            return Expr(f"{a.src}.clip({lo}, {hi})", bound, exact(a))
        return Expr(f"np.clip({a.src}, {lo}, {hi})", bound, exact(a))

    def op_matmul(self):
        a = self.need(lambda v: v.is_array and v.ndim <= 2)

        def contracts(b):
            return b.is_array and b.ndim <= 2 and \
                b.shape[0 if b.ndim == 1 else -2] == a.shape[-1]

        b = self.pick(contracts)
        if b is None or self.p.chance(15):  # a with its own transpose: a Gram matrix
            if not enabled("gram-matmul"):
                return None
            b_src, b_bound = f"{a.src}.T", a.bound
        else:
            b_src, b_bound = b.src, b.bound
        form = self.p.choice(["{} @ {}", "np.dot({}, {})", "np.matmul({}, {})", "{}.dot({})"])
        return Expr(form.format(a.src, b_src), a.shape[-1] * a.bound * b_bound, None)

    def op_reduce(self):
        a = self.need()
        fn = self.p.choice(["sum", "mean", "max", "min"])
        axis = None
        if a.ndim > 0 and self.p.chance(75):
            axis = self.p.draw(st.integers(-a.ndim, a.ndim - 1))
        keepdims = self.p.chance(40)
        args = [a.src] + ([f"axis={axis}"] if axis is not None else []) + \
            (["keepdims=True"] if keepdims else [])
        n = a.shape[axis] if axis is not None else max(1, int(np.size(a.example)))
        bound = n * a.bound if fn == "sum" else a.bound
        level = exact(a) if fn in ("max", "min") else None
        if not a.is_python and self.p.chance(35):
            return Expr(f"{a.src}.{fn}({', '.join(args[1:])})", bound, level)
        return Expr(f"np.{fn}({', '.join(args)})", bound, level)

    def op_transpose(self):
        a = self.need(lambda v: v.ndim > 0 or enabled("transpose-0d"))
        forms = ["np.transpose({})"]
        if not a.is_python:
            forms += ["{}.T", "{}.transpose()"]
        if a.ndim == 2:
            forms.append("np.transpose({}, (1, 0))")
        return Expr(self.p.choice(forms).format(a.src), a.bound, exact(a))

    def op_reshape(self):
        a = self.need(lambda v: not v.is_python or enabled("reshape-python-scalar"))
        shape = a.shape
        n = int(np.prod(shape))
        targets = ["-1", "(1, -1)", "(-1, 1)", str(n)]
        if len(shape) == 2:
            targets.append(f"({shape[1]}, {shape[0]})")
        target = self.p.choice(targets)
        if a.is_python or self.p.chance(30):
            return Expr(f"np.reshape({a.src}, {target})", a.bound, exact(a))
        return Expr(f"{a.src}.reshape({target})", a.bound, exact(a))

    def op_astype(self):
        a = self.need(lambda v: not v.is_python)
        targets = ["np.float32", "np.float64"]
        if enabled("astype-string"):
            targets.append('"float32"')
        like = self.pick(lambda v: not v.is_python and v.kind == "f")
        if like is not None:
            targets.append(f"{like.src}.dtype")
        if a.stable:
            targets += ["np.int32", "np.int64", "bool"]
        return Expr(f"{a.src}.astype({self.p.choice(targets)})", a.bound, exact(a))

    def op_index(self):
        a = self.need(lambda v: v.is_array)
        n0 = a.shape[0]
        k = self.p.draw(st.integers(-n0, n0 - 1))
        i = self.p.draw(st.integers(0, n0 - 1))
        j = self.p.draw(st.integers(i + 1, n0))
        forms = [f"[{k}]", f"[{i}:{j}]", "[::-1]", f"[{i}:]", f"[:{j}]"]
        if a.ndim >= 2:
            n1 = a.shape[1]
            m = self.p.draw(st.integers(-n1, n1 - 1))
            q = self.p.draw(st.integers(0, n1 - 1))
            forms += [f"[:, {m}]", f"[:, {q}:]", f"[{k}, {q}:]", f"[..., {m}]", f"[{k}, {m}]"]
        return Expr(a.src + self.p.choice(forms), a.bound, exact(a))

    def op_concatenate(self):
        a = self.need(lambda v: v.is_array)
        axis = self.p.draw(st.integers(-a.ndim, a.ndim - 1))

        def fits(b):
            return b.is_array and b.ndim == a.ndim and all(
                x == y for d, (x, y) in enumerate(zip(a.shape, b.shape))
                if d != axis % a.ndim)

        b = self.pick(fits) or a
        if axis == 0 and self.p.chance(40):
            return Expr(f"np.concatenate(({a.src}, {b.src}))", max(a.bound, b.bound),
                        exact(a, b))
        return Expr(f"np.concatenate([{a.src}, {b.src}], axis={axis})", max(a.bound, b.bound),
                    exact(a, b))

    def op_stack(self):
        a = self.need(lambda v: v.ndim <= 2)
        b = self.pick(lambda v: v.shape == a.shape and (
            enabled("stack-python-scalars") or not (a.is_python and v.is_python))) or a
        if a.is_python and b.is_python and not enabled("stack-python-scalars"):
            return None
        axis = self.p.draw(st.integers(-a.ndim - 1, a.ndim))
        if axis == 0 and self.p.chance(40):
            return Expr(f"np.stack(({a.src}, {b.src}))", max(a.bound, b.bound), exact(a, b))
        return Expr(f"np.stack([{a.src}, {b.src}], axis={axis})", max(a.bound, b.bound),
                    exact(a, b))

    def op_like(self):
        a = self.need()
        form = self.p.choice(["zeros", "ones", "full"])
        if form == "full":
            c = literal(self.p.choice(["0.5", "2", "(-1.5)"]))
            return Expr(f"np.full_like({a.src}, {c.src})", c.bound, 0)
        return Expr(f"np.{form}_like({a.src})", 1.0, 0)


# Operations by weight (a name appears once per unit of weight).
OPS = (["arith"] * 6 + ["unary"] * 4 + ["matmul"] * 4 + ["reduce"] * 3 + ["divide"] * 2
       + ["power"] * 2 + ["compare"] * 2 + ["where"] * 2 + ["minmax"] * 2 + ["astype"] * 2
       + ["index"] * 2 + ["floor_mod", "clip", "transpose", "reshape", "concatenate", "stack",
                          "like"])


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------

@dataclass
class Input:
    """One argument or capture of the step: its name, its role, the source text that builds
    its data in ``arguments()`` (at module level, for a global), its example and bound."""

    name: str
    role: str            # "seq", "carry", "param", "closure", "global"
    data: str
    example: Any
    bound: float
    length: int | None = None   # of a sequence


FLOAT_VALUES = ["0.5", "0.25", "-0.75", "1.5"]
DTYPE_NAMES = {np.dtype(np.float32): "np.float32", np.dtype(np.float64): "np.float64",
               np.dtype(np.int32): "np.int32", np.dtype(np.int64): "np.int64",
               np.dtype(bool): "np.bool_"}
INT_CARRY_LIMIT = 9


def _array_data(shape, dtype, rng="data"):
    size = repr(tuple(shape))
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return f"{rng}.uniform(-1.0, 1.0, size={size}).astype({DTYPE_NAMES[dtype]})", 1.0
    if dtype.kind == "i":
        return f"{rng}.integers(-3, 4, size={size}).astype({DTYPE_NAMES[dtype]})", 3.0
    return f"{rng}.random(size={size}) < 0.5", 1.0


def _array_example(shape, dtype):
    dtype = np.dtype(dtype)
    return np.full(shape, {"f": 0.5, "i": 1, "b": True}[dtype.kind], dtype=dtype)


class Inputs:
    """Draws the step's arguments and captures: kinds, dtypes, shapes and data."""

    def __init__(self, program: Program, dims, base):
        self.p = program
        self.dims = dims
        self.base = np.dtype(base)
        self.items: list[Input] = []

    def of(self, *roles):
        return [i for i in self.items if i.role in roles]

    def array_dtype(self, floats_only=False):
        roll = self.p.draw(st.integers(0, 99))
        if roll < 78 or (floats_only and roll >= 90):
            return self.base
        if roll < 90:
            return np.dtype(np.float32 if self.base == np.float64 else np.float64)
        return np.dtype(self.p.choice([np.int32, np.int64, bool]))

    def scalar(self, kind):
        """(data source, example) of a Python scalar, a NumPy scalar or a 0-d array."""
        if kind == "python":
            text = self.p.choice(FLOAT_VALUES + ["2", "3", "1", "True", "False"])
            return text, eval(text)  # noqa: S307 - our own constant text
        dtype = np.dtype(self.p.choice([self.base, np.float32, np.float64, np.int64, np.int32,
                                        bool]))
        text = {"f": self.p.choice(FLOAT_VALUES), "i": "2", "b": "True"}[dtype.kind]
        example = np.array(eval(text), dtype=dtype)  # noqa: S307 - our own constant text
        if kind == "numpy":
            return f"{DTYPE_NAMES[dtype]}({text})", example[()]
        return f"np.array({text}, dtype={DTYPE_NAMES[dtype]})", example

    def add(self, name, role, shapes, rng="data"):
        kind = "array"
        if role in ("param", "closure", "global"):
            kind = self.p.choice(["array"] * 6 + ["python"] * 2 + ["numpy", "zero_d"])
        elif role == "carry" and self.p.chance(15):
            kind = self.p.choice(["zero_d", "numpy", "python"])
        if kind != "array":
            data, example = self.scalar(kind)
            if role == "carry":
                example = np.asarray(example)  # what the plain loop carries
            bound = abs(float(example))
        else:
            shape = tuple(self.dims[d] for d in self.p.choice(shapes))
            dtype = self.array_dtype(floats_only=role == "carry" and not self.p.chance(8))
            if role == "carry" and dtype.kind == "b":
                dtype = np.dtype(np.int32)
            if role == "seq":
                length = self.p.draw(st.integers(1, 6)) if not self.p.chance(5) else 0
                data, bound = _array_data((length,) + shape, dtype, rng)
                example = _array_example((1,) + shape, dtype)[0]   # a slice, as the loop sees it
                self.items.append(Input(name, role, data, example, bound, length))
                return
            data, bound = _array_data(shape, dtype, rng)
            example = _array_example(shape, dtype)
        if role == "carry":  # from the second step on, the carry holds an update
            bound = CARRY_LIMIT if example.dtype.kind == "f" else INT_CARRY_LIMIT
        self.items.append(Input(name, role, data, example, bound))


SLICE_SHAPES = [("B", "D"), ("D",), (), ("B", "E")]
CARRY_SHAPES = [("B", "D"), ("D",), ("B", "E"), (), ("E",)]
PARAM_SHAPES = [("D", "E"), ("D",), (), ("E", "D"), ("D", "D"), ("B", "D"), ("one", "D"),
                ("B", "one"), ("E",)]


# --------------------------------------------------------------------------------------------
# Carry updates and the return statement
# --------------------------------------------------------------------------------------------

def _fits(v, shape):
    """``v`` broadcasts to ``shape`` without changing it."""
    try:
        return np.broadcast_shapes(v.shape, shape) == shape
    except ValueError:
        return False


def _update_forms(block: Block, carry: Value):
    """Candidate (source, bound) updates of ``carry``, each of the carry's shape."""
    h, hb = carry.src, carry.bound
    if carry.kind == "f":
        v = block.pick(lambda v: v.kind in "iuf" and v.src != h and _fits(v, carry.shape))
        if v is None or block.p.chance(10):
            v = Value(f"np.mean({block.pick().src})", None, FLOAT_LIMIT)
        forms = [(f"0.5 * {h} + 0.5 * np.tanh({v.src})", 0.5 * hb + 0.5),
                 (f"np.tanh({v.src} + {h})", 1.0),
                 (f"np.clip({h} + {v.src}, -2.0, 2.0)", 2.0),
                 (f"0.9 * {h} - 0.1 * np.tanh({v.src})", 0.9 * hb + 0.1)]
        if v.example is not None and v.shape == carry.shape:
            forms.append((v.src, v.bound))
        return forms
    v = block.pick(lambda v: v.kind in "biu" and v.src != h and _fits(v, carry.shape))
    if v is None:
        return [(f"({h} + 1) % 5", 5)]
    return [(f"({h} + {v.src}) % 5", 5), (f"np.clip({h} - {v.src}, -9, 9)", 9),
            (f"np.minimum(np.maximum({h}, {v.src}), 9)", 9)]


def carry_update(block: Block, carry: Value) -> str:
    """An expression for the carry's next value: bounded, of the carry's shape, and (most of
    the time) of its dtype; sometimes any value in scope, which the plain loop may refuse."""
    p = block.p
    limit = CARRY_LIMIT if carry.kind == "f" else INT_CARRY_LIMIT
    if p.chance(3):
        value = block.pick()
        expr, bound = value.src, value.bound
    else:
        expr, bound = p.choice(_update_forms(block, carry))
    if bound > limit:
        expr = f"np.clip({expr}, -{limit}, {limit})"
    ok, example = evaluate(expr, p.namespace)
    if not ok:
        return f"np.clip({carry.src}, -1, 1)"
    if np.asarray(example).dtype != carry.dtype and not p.chance(15):
        cast = f"({expr}).astype({p.choice([carry.src + '.dtype', DTYPE_NAMES[carry.dtype]])})"
        ok, example = evaluate(cast, p.namespace)
        expr = cast if ok else f"np.zeros_like({carry.src}) + ({expr})"
    if isinstance(example, (bool, int, float)) and not enabled("python-scalar-carry-update"):
        expr = f"np.zeros_like({carry.src}) + ({expr})"
    return expr


def step_outputs(block: Block, carries, n_per_step):
    """(returned expressions, their Outputs): the carry updates in order, with the per-step
    outputs at random places between them."""
    updates, passthrough = [], False
    for carry in carries:
        expr = carry_update(block, carry)
        passthrough = passthrough or expr.isidentifier()  # a value in scope, returned as it is
        if block.p.chance(70):
            name = f"{carry.src}_new"
            block.lines.append(f"{name} = {expr}")
            updates.append(name)
        else:
            updates.append(expr)
    per_step = []
    distinct = passthrough and not enabled("repeated-output-with-passthrough-carry")
    for _ in range(n_per_step):
        v = block.pick(lambda v: v.role == "local") if block.p.chance(85) else None
        v = v or block.pick()
        if distinct and v in per_step:
            continue
        per_step.append(v)
    chosen = list(updates)  # carries stay in the order the step receives them
    for value in per_step:
        chosen.insert(block.p.draw(st.integers(0, len(chosen))), value)
    returned = [out if isinstance(out, str) else out.src for out in chosen]
    return returned, [Output(None if isinstance(out, str) else out) for out in chosen]


@dataclass
class Output:
    """One returned value: a carry update (``value`` None) or a per-step output."""

    value: Value | None

    @property
    def is_carry(self):
        return self.value is None

    def may_keep_last(self):
        return self.is_carry or enabled("python-scalar-output-kept-last") or \
            not self.value.is_python


# --------------------------------------------------------------------------------------------
# Whole cases
# --------------------------------------------------------------------------------------------

def _as_argument(names, bare_ok, p):
    if len(names) == 1 and bare_ok and p.chance(30):
        return names[0]
    return f"[{', '.join(names)}]"


@st.composite
def step_programs(draw, max_statements=8):
    """A generated case: the source text of a module defining ``arguments()``."""
    p = Program(draw)
    dims = {"B": draw(st.integers(1, 3)), "D": draw(st.integers(1, 4)),
            "E": draw(st.integers(1, 4)), "one": 1}
    inputs = Inputs(p, dims, draw(st.sampled_from([np.float64, np.float32])))
    for k in range(draw(st.integers(0, 2))):
        inputs.add(f"x{k}", "seq", SLICE_SHAPES)
    for k in range(draw(st.integers(1, 3)) if not p.chance(5) else 0):
        inputs.add(f"h{k}", "carry", CARRY_SHAPES)
    for k in range(draw(st.integers(0 if inputs.items else 1, 3))):  # something to read
        inputs.add(f"p{k}", "param", PARAM_SHAPES)
    for k in range(draw(st.integers(1, 2)) if p.chance(30) else 0):
        inputs.add(f"c{k}", "closure", PARAM_SHAPES)
    for k in range(draw(st.integers(1, 2)) if p.chance(30) else 0):
        inputs.add(f"G{k}", "global", PARAM_SHAPES,
                   rng=f"np.random.default_rng({draw(st.integers(0, 999))})")

    pool = [Value(i.name, i.example, i.bound, 0, i.role) for i in inputs.items]
    for value in pool:
        p.namespace[value.src] = value.example
    step = Block(p, pool, own=[i.name for i in inputs.of("seq", "carry", "param")])
    step.statements(draw(st.integers(1, max_statements)))

    # A carry name may have been rebound, always to a value of the carry's type.
    carries = [Value(i.name, step.pool[i.name].example,
                     max(i.bound, step.pool[i.name].bound), None, "carry")
               for i in inputs.of("carry")]
    n_per_step = draw(st.integers(0, 2))
    if not carries and n_per_step == 0:
        n_per_step = 1
    returned, outputs = step_outputs(step, carries, n_per_step)
    if all(o.value is not None and o.value.is_python for o in outputs) and \
            not enabled("constant-tuple-return"):
        returned, outputs = returned[:1], outputs[:1]  # returned bare: not a tuple
        step.lines.append(f"return {returned[0]}")
    elif len(returned) == 1 and p.chance(80):
        step.lines.append(f"return {returned[0]}")
    else:
        template = p.choice(["return {}", "return ({})", "return [{}]"])
        trailing = "," if len(returned) == 1 and "[" not in template else ""
        step.lines.append(template.format(", ".join(returned) + trailing))
    return _module(p, inputs, step, outputs)


def _call_arguments(p: Program, inputs: Inputs, outputs):
    """The keyword arguments of the scan call, as source lines."""
    seqs, carries, params = inputs.of("seq"), inputs.of("carry"), inputs.of("param")
    closures = inputs.of("closure")
    fn = f"make_step({', '.join(c.name for c in closures)})" if closures else "step"
    call = [f"fn={fn}"]
    if seqs:
        call.append(f"sequences={_as_argument([s.name for s in seqs], True, p)}")
    carry_names = iter(c.name for c in carries)
    outputs_info = [next(carry_names) if out.is_carry else "None" for out in outputs]
    if not carries and p.chance(50):
        call.append("outputs_info=None")
    else:
        single_carry = len(outputs) == 1 and outputs[0].is_carry
        call.append(f"outputs_info={_as_argument(outputs_info, single_carry, p)}")
    if params:
        call.append(f"non_sequences={_as_argument([q.name for q in params], True, p)}")
    lengths = [s.length for s in seqs]
    if not lengths:
        call.append(f"n_steps={p.draw(st.integers(0 if p.chance(10) else 1, 6))}")
    elif p.chance(40):
        call.append(f"n_steps={p.draw(st.integers(0, min(lengths)))}")
    if p.chance(50):
        call.append("go_backwards=True")
    keep = p.choice(["all", "last", "per-output"])
    if keep == "per-output" or (keep == "last" and not all(o.may_keep_last() for o in outputs)):
        keep = [p.choice(["all", "last"]) if o.may_keep_last() else "all" for o in outputs]
    call.append(f"keep={keep!r}")
    return call


def _module(p: Program, inputs: Inputs, step: Block, outputs):
    closures, globals_ = inputs.of("closure"), inputs.of("global")
    signature = ", ".join(i.name for i in inputs.of("seq", "carry", "param"))
    step_src = f"def step({signature}):\n" + textwrap.indent("\n".join(step.lines), "    ")
    if closures:
        step_src = (f"def make_step({', '.join(c.name for c in closures)}):\n"
                    + textwrap.indent(step_src, "    ") + "\n    return step")
    data = [f"    {i.name} = {i.data}" for i in inputs.of("seq", "carry", "param", "closure")]
    arguments = "\n".join(
        ["def arguments():", f"    data = np.random.default_rng({p.draw(st.integers(0, 9999))})"]
        + data + ["    return dict("]
        + [f"        {arg}," for arg in _call_arguments(p, inputs, outputs)] + ["    )"])
    parts = ['"""A fuzz case from tests/fuzz_steps.py: check_scan(**arguments())."""',
             "import numpy as np"]
    if globals_:
        parts.append("\n".join(f"{g.name} = {g.data}" for g in globals_))
    parts += p.helper_sources + [step_src, arguments]
    return "\n\n\n".join(parts) + "\n"


# --------------------------------------------------------------------------------------------
# Exploring: every failure of many cases, without stopping at the first or shrinking
# --------------------------------------------------------------------------------------------

def main():
    """``python tests/fuzz_steps.py [N] [--seed S]``: run N cases (hypothesis's generate phase
    only) and print, for each distinct failure, how often it occurred and its shortest case."""
    import argparse
    import os
    import re
    import tempfile
    from collections import Counter, defaultdict
    from pathlib import Path

    from hypothesis import HealthCheck, Phase, given, seed, settings

    from conftest import generated_module

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("n", type=int, nargs="?", default=200, help="cases to run")
    parser.add_argument("--seed", type=int, default=0)
    options = parser.parse_args()
    os.environ.setdefault("SCANOPT_CACHE_DIR", tempfile.mkdtemp(prefix="scanopt-fuzz-cache"))
    directory = Path(tempfile.mkdtemp(prefix="scanopt-fuzz"))
    failures, outcomes = defaultdict(list), Counter()

    @seed(options.seed)
    @settings(max_examples=options.n, phases=[Phase.generate], database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(step_programs(max_statements=12))
    def explore(source):
        with generated_module(source, directory, "_fuzz") as module:
            try:
                outcomes[check_scan(**module.arguments())] += 1
            except AssertionError as error:
                outcomes["failed"] += 1
                lines = re.sub(r"\d+", "#", re.sub(r"\S+\.py:\d+:\d+", "FILE", str(error)))
                failures[" | ".join(lines.splitlines()[:2])].append((source, str(error)))

    explore()
    print(dict(outcomes))
    for key, cases in sorted(failures.items(), key=lambda item: -len(item[1])):
        source, message = min(cases, key=lambda case: len(case[0]))
        print(f"\n{'=' * 100}\n{len(cases)} x {key}\n\n{source}\n{message}")


if __name__ == "__main__":
    main()
