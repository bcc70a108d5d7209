"""The public entry points: ``scan`` (Theano's signature) and the ``@step`` decorator.

This module and everything it imports on a cache hit are plain Python and NumPy: xDSL is imported
only when a loop has to be compiled.

Environment variables (the complete list):

- ``SCANOPT_DISABLE=1``: run the plain Python loop instead of compiling (the reference semantics).
- ``SCANOPT_CACHE_DIR``: where generated modules and the disk cache live (default: a private
  directory in the user cache directory). The empty string turns the disk cache off: nothing is
  read from or written to disk but generated modules, in a private temporary directory of the
  process. A directory that others can write to (or owned by another user) is not used.
- ``SCANOPT_CACHE_MAX_BYTES``: the size cap of the disk cache in bytes (default 268435456, 256
  MiB); the least recently used entries are evicted beyond it.
- ``SCANOPT_DEBUG_CACHE=1``: print one line per cache lookup to stderr (memory/disk hit, or miss
  and why).
"""

from __future__ import annotations

import functools
import os
import sys
import types
import weakref
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from scanopt import arguments, cache
from scanopt.errors import ScanError, ScanValueError, SourceLocation
from scanopt.signature import ParameterValueNeeded, StaticVal, signature_of

_BACKENDS = ("numpy", "cupy", "numba")


@dataclass
class _Stats:
    hits: int = 0
    misses: int = 0
    disk_hits: int = 0
    # (code, argument types, options) → the CompiledLoops compiled for them, one per set of
    # captured values' types (their plans tell them apart)
    entries: dict = field(default_factory=dict)


_STATS = _Stats()


def cache_info() -> dict[str, int]:
    """Counters of the in-memory cache of compiled loops: hits, misses, size.

    A miss is served from the disk cache (counted in ``disk_hits``) or compiled.
    """
    return {"hits": _STATS.hits, "misses": _STATS.misses, "disk_hits": _STATS.disk_hits,
            "size": sum(len(v) for v in _STATS.entries.values())}


def clear_cache() -> None:
    """Forget every compiled loop held in memory, and the temporaries they keep between calls
    (their workspaces). The disk cache is kept."""
    for entries in _STATS.entries.values():
        for entry in entries:
            spare = getattr(entry.run, "__globals__", {}).get("_spare_workspaces")
            if isinstance(spare, list):
                spare.clear()
    _STATS.entries.clear()
    _REPEATS.clear()
    _STATS.hits = _STATS.misses = _STATS.disk_hits = 0


class until:
    """``return h, scanopt.until(cond)``: stop the loop after this step if ``cond`` holds.

    Theano's ``theano.scan_module.until``. The step returns it as its last value (``return h,
    c, until(cond)``, or ``return (h, c), until(cond)``); ``cond`` is a scalar (``np.abs(dx) <
    tol``). The loop then runs until the first step whose condition is true, that step
    included, and at most ``n_steps`` steps; the outputs hold the steps that ran.
    """

    __slots__ = ("condition",)

    def __init__(self, condition):
        self.condition = condition

    def __repr__(self) -> str:
        return f"scanopt.until({self.condition!r})"


def scan(fn, sequences=None, outputs_info=None, non_sequences=None, n_steps=None,
         truncate_gradient=-1, go_backwards=False, mode=None, name=None, profile=False,
         allow_gc=None, strict=False, return_list=False, *, backend="numpy",
         exact_random=False, optimize=True, keep="all"):
    """Run ``fn`` over sequences with carried state, compiled to a NumPy loop.

    ``scan(fn, sequences, outputs_info, non_sequences, n_steps) -> array | list[array]``

    Same meaning and argument order as ``theano.scan``. Without taps it computes what this loop
    computes::

        n = min(len(s) for s in sequences) if n_steps is None else n_steps
        state, history = list(outputs_info), [[] for each output]
        for t in range(n):
            args = [s[t] for s in sequences] + [v for v in state if v is not None] + non_sequences
            out = fn(*args)                       # one value, or a tuple/list of values
            for k, v in enumerate(out):
                history[k].append(v)
                if state[k] is not None:          # None in outputs_info: not fed back
                    state[k] = np.asarray(v)  # fed back as an array
        return [np.stack(h) for h in history]     # one array if fn returns one value

    ``fn`` is compiled once per function and argument types (dtypes and shapes; the sequence
    length is free) into a standalone NumPy module; later calls reuse it. Each of
    ``sequences``, ``outputs_info`` and ``non_sequences`` may be one value or a list. Python
    scalars among the non-sequences keep NumPy's weak typing, as in the loop above.

    Theano's taps: a sequence ``dict(input=u, taps=[-4, 0])`` gives the step ``u[t-4]`` and
    ``u[t]``, and the loop runs the steps the taps allow; an output ``dict(initial=x0, taps=[-3,
    -1])`` gives ``x[t-3]`` and ``x[t-1]`` (``x0`` holds the 3 values before the first step; the
    result leaves them out). The step may return :class:`until` last, to stop early.
    ``go_backwards=True`` reads every sequence from its end (outputs in iteration order).
    ``strict=True`` refuses arrays the step reads from its enclosing scope instead of taking
    them from ``non_sequences``. ``return_list=True`` always returns a list.
    ``truncate_gradient``, ``mode``, ``name``, ``profile`` and ``allow_gc`` are accepted for
    Theano code and change nothing (there are no gradients, and memory is always reused).

    ``keep="last"`` (or one of "all"/"last" per returned value) returns only the value after
    the last step for those outputs, and the loop stores O(1) of them instead of O(n_steps).
    ``exact_random=True`` makes the same generator calls in the same order as the loop above,
    so the results are bit-for-bit equal. ``optimize=False`` turns every optimisation pass
    off. Errors in the step function raise :class:`scanopt.ScanError` subclasses naming
    ``file:line:col``. See docs/semantics.md for the exact rules.
    """
    try:
        _check_theano_options(truncate_gradient, go_backwards, return_list)
        outs = _scan(fn, sequences, outputs_info, non_sequences, n_steps, go_backwards,
                     backend=backend, exact_random=exact_random, optimize=optimize, keep=keep,
                     strict=strict)
    except ScanError as error:
        # The message names the user's line; our frames would only hide it.
        raise error.with_traceback(None) from None
    if return_list and not isinstance(outs, list):
        return [outs]
    return outs


def carry_scan(f, init, xs=None, length=None, reverse=False, unroll=1, *, backend="numpy",
               exact_random=False, optimize=True):
    """JAX's ``lax.scan``, compiled: ``carry, ys = carry_scan(f, init, xs)``.

    ``carry_scan(f: (carry, x) -> (carry, y), init, xs=None, length=None, reverse=False)
    -> (carry, ys)``

    ``init``, ``xs`` and what ``f`` returns may be pytrees of tuples, lists and dicts of arrays
    (``None`` for no ``x`` or no ``y``). It computes what this loop computes::

        carry, ys = init, []
        for i in (reversed(range(n)) if reverse else range(n)):  # n: len of xs' leaves, or length
            carry, y = f(carry, tree_map(lambda leaf: leaf[i], xs))
            ys.append(y)
        return carry, tree_map(np.stack, *(ys[::-1] if reverse else ys))

    with the carry's leaves as NumPy arrays (``np.asarray(leaf)``). The carry ``f`` returns must
    have the structure, dtypes and shapes of ``init`` (JAX's rule; an error names the leaf's
    path). The same compiler as :func:`scan` runs underneath. ``unroll`` is accepted and
    changes nothing.
    """
    try:
        return _carry_scan(f, init, xs, length, reverse, backend=backend,
                           exact_random=exact_random, optimize=optimize)
    except ScanError as error:
        raise error.with_traceback(None) from None


def _carry_scan(f, init, xs, length, reverse, *, backend, exact_random, optimize):
    from scanopt import pytree

    carry_leaves, carry_def, carry_paths = pytree.flatten(init, "init")
    x_leaves, x_def, x_paths = pytree.flatten(xs, "xs")
    carries = [arguments.input_array(v, path) for v, path in zip(carry_leaves, carry_paths)]
    sequences = [arguments.input_array(v, path) for v, path in zip(x_leaves, x_paths)]
    for array, path in zip(sequences, x_paths):
        if array.ndim == 0:
            raise ScanValueError(f"{path} is a scalar; every leaf of xs needs a leading "
                                 "dimension to scan over")
    lengths = sorted({len(a) for a in sequences})
    if len(lengths) > 1:
        raise ScanValueError(
            "carry_scan got leaves of xs with different leading dimensions: "
            + ", ".join(f"{p} {len(a)}" for p, a in zip(x_paths, sequences)),
            hint="Every leaf of xs is scanned along its first axis: give them one length.")
    if length is not None and lengths and arguments.step_count(length) != lengths[0]:
        raise ScanValueError(f"length={length} disagrees with the leading dimension of xs "
                             f"({lengths[0]})", hint="Omit length when xs is given.")
    if length is None and not lengths:
        raise ScanValueError("carry_scan needs xs or length to know how many steps to run",
                             hint="Pass length=... when xs is None.")
    n_steps = length if length is not None else lengths[0]
    call = _prepare_call(f, sequences, carries, None, n_steps, bool(reverse), backend,
                         pytree=(carry_def, x_def))
    if os.environ.get("SCANOPT_DISABLE") == "1":
        from scanopt.reference import reference_carry_scan

        return reference_carry_scan(f, init, xs, call.n_steps, bool(reverse))
    compiled, captured = _lookup(f, call, exact_random=exact_random, optimize=optimize,
                                 backend=backend)
    outs = compiled.run(*call.sequences, *carries, *captured, call.n_steps)
    outs = [outs] if compiled.n_outputs == 1 else list(outs)
    n_carry = len(carries)
    carry = pytree.unflatten(carry_def, outs[:n_carry])
    ys = outs[n_carry:]
    if reverse:  # JAX: ys[i] belongs to xs[i], whichever way the loop ran
        ys = [y[::-1].copy() for y in ys]
    return carry, pytree.unflatten(compiled.output_tree, ys)


def _check_theano_options(truncate_gradient, go_backwards, return_list) -> None:
    """Theano's options that change nothing here still must be what Theano accepts: a bool in
    ``truncate_gradient`` is ``go_backwards`` passed in the wrong position."""
    if isinstance(truncate_gradient, (bool, np.bool_)) or not isinstance(
            truncate_gradient, (int, np.integer)) or (truncate_gradient < 1 and
                                                       truncate_gradient != -1):
        raise ScanValueError(
            f"truncate_gradient must be -1 or a positive integer, got {truncate_gradient!r}",
            hint="It is Theano's sixth positional argument (gradients only; scanopt accepts and "
                 "ignores it). To iterate backwards pass go_backwards=True by keyword.")
    for label, value in (("go_backwards", go_backwards), ("return_list", return_list)):
        if not isinstance(value, (bool, np.bool_)):
            raise ScanValueError(f"{label} must be True or False, got {value!r}")


def _scan(fn, sequences, outputs_info, non_sequences, n_steps, go_backwards, *, backend,
          exact_random, optimize, keep, strict=False):
    disabled = os.environ.get("SCANOPT_DISABLE") == "1"
    repeat_key = None if disabled or backend == "cupy" else _repeat_key(
        sequences, outputs_info, non_sequences, n_steps, go_backwards, backend, exact_random,
        optimize, keep, strict)
    if repeat_key is not None:
        outs = _run_repeat(fn, repeat_key, sequences, outputs_info, non_sequences)
        if outs is not None:
            return outs
    call = _prepared(fn, sequences, outputs_info, non_sequences, n_steps, go_backwards,
                     backend, keep, strict=strict)
    if disabled:
        from scanopt.reference import reference_scan

        outs = reference_scan(fn, call, keep)
        return outs[0] if len(outs) == 1 else outs
    if backend == "cupy":
        _require_cupy()
    compiled, captured = _lookup(fn, call, exact_random=exact_random, optimize=optimize,
                                 backend=backend)
    if call.n_steps == 0 and compiled.last_without_init:
        raise ScanValueError(
            'keep="last" asks for the last value of an output that is not fed back, but the loop '
            "runs no step", hint="Run at least one step, or keep that output with keep=\"all\".")
    inits = [v for v in call.inits if v is not None]
    if repeat_key is not None:
        _remember_repeat(fn, repeat_key, call, compiled, outputs_info)
    outs = compiled.run(*call.sequences, *inits, *call.non_sequences, *captured, call.n_steps)
    if compiled.n_outputs == 1:
        return outs
    return list(outs)


# ---------------------------------------------------------------------------------------------
# Repeated calls
#
# Checking a call's arguments and building its key (_prepare_call) costs tens of microseconds,
# as much as a short loop. Its outcome depends only on what _repeat_key records: the
# containers, each array's exact type, dtype and shape, each scalar's type, n_steps and the
# options. So a call whose key was seen before with the same function reuses that call's
# compiled loop and sequence windows. The captured values are still fetched through the plan's
# guards on every call, and anything else (dicts, taps, lists of numbers, subclasses, CuPy,
# values the step is compiled for by value) takes the full path.

_REPEATS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # fn → {key: _Repeat}
_REPEATS_PER_FUNCTION = 64  # distinct argument types remembered per step function


@dataclass(frozen=True)
class _Repeat:
    compiled: Any  # the CompiledLoop
    seq_rows: tuple[slice, ...]  # each sequence's window
    n_steps: int


class _NotRepeatable(Exception):
    pass


def _value_token(value, *, none_ok: bool = False):
    kind = type(value)
    if kind is np.ndarray:
        return value.dtype, value.shape
    if kind in (bool, int, float, complex) or kind is np.random.Generator:
        return kind
    if isinstance(value, np.generic) and value.dtype.kind in "biufc":
        return kind, value.dtype
    if value is None and none_ok:
        return None
    raise _NotRepeatable


def _argument_token(value, *, none_ok: bool = False):
    if value is None:
        return None
    if type(value) in (list, tuple):
        return type(value), tuple(_value_token(v, none_ok=none_ok) for v in value)
    return _value_token(value)


def _repeat_key(sequences, outputs_info, non_sequences, n_steps, go_backwards, backend,
                exact_random, optimize, keep, strict):
    """What the outcome of checking these arguments depends on, or None for a call that
    always takes the full path."""
    try:
        if n_steps is not None and type(n_steps) is not int:
            raise _NotRepeatable
        keep_token = keep if type(keep) is str else (type(keep), tuple(keep))
        key = (_argument_token(sequences), _argument_token(outputs_info, none_ok=True),
               _argument_token(non_sequences), n_steps, bool(go_backwards), backend,
               bool(exact_random), bool(optimize), keep_token, bool(strict))
        hash(key)
        return key
    except (_NotRepeatable, TypeError):
        return None


def _run_repeat(fn, key, sequences, outputs_info, non_sequences):
    """The outputs of a call whose key was seen before for ``fn``, or None."""
    try:
        repeat = _REPEATS.get(fn, {}).get(key)
    except TypeError:  # fn cannot be weakly referenced
        return None
    if repeat is None:
        return None
    compiled = repeat.compiled
    captured = compiled.plan.fetch(fn)
    if captured is None:
        return None
    _STATS.hits += 1
    cache.log_memory_hit(fn)
    windows = [array[rows] for array, rows in zip(arguments.as_list(sequences),
                                                    repeat.seq_rows)]
    inits = [v for v in arguments.as_list(outputs_info) if v is not None]
    outs = compiled.run(*windows, *inits, *arguments.as_list(non_sequences), *captured,
                        repeat.n_steps)
    return outs if compiled.n_outputs == 1 else list(outs)


def _remember_repeat(fn, key, call: _Call, compiled, outputs_info) -> None:
    """Remember a call that took the full path, if a repeat of it can skip that path."""
    if _STATIC_PARAMS.get(_static_key(fn)):
        return  # compiled for the values of some non-sequences
    # The full path passed the initial values and non-sequences on as they are.
    inits = [v for v in arguments.as_list(outputs_info) if v is not None]
    if any(a is not b for a, b in zip(inits, (v for v in call.inits if v is not None))):
        return
    try:
        remembered = _REPEATS.setdefault(fn, {})
    except TypeError:
        return
    if len(remembered) >= _REPEATS_PER_FUNCTION:
        remembered.clear()
    remembered[key] = _Repeat(compiled, call.seq_rows, call.n_steps)


def _require_cupy() -> None:
    """backend="cupy" runs on CuPy: a clear error when it is not installed (generating the
    module's source, ``.source(..., backend="cupy")``, works without it)."""
    import importlib.util

    try:
        found = importlib.util.find_spec("cupy") is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise ScanValueError(
            'backend="cupy" needs CuPy, which is not installed',
            hint="Install the CuPy build for your CUDA version (pip install cupy-cuda12x or "
                 "cupy-cuda13x) on a machine with an NVIDIA GPU, or use backend=\"numpy\". "
                 ".source(..., backend=\"cupy\") shows the generated module without CuPy.")


@dataclass
class _Call:
    sequences: list[np.ndarray]  # the window of each sequence (arguments.py)
    inits: list[np.ndarray | None]  # per output: its initial value(s), None if not fed back
    non_sequences: list[Any]
    n_steps: int
    key: tuple
    seq_taps: tuple = ()
    init_taps: tuple = ()
    seq_rows: tuple = ()  # the slice of each sequence that is its window


def _normalize_keep(keep):
    if isinstance(keep, str) and keep in ("all", "last"):
        return keep
    if isinstance(keep, (list, tuple)) and all(k in ("all", "last") for k in keep):
        return tuple(keep)
    raise ScanValueError(f"keep must be \"all\", \"last\" or a list of those, got {keep!r}")


def _prepare_call(fn, sequences, outputs_info, non_sequences, n_steps, go_backwards, backend,
                  keep="all", *, strict=False, pytree=None):
    if backend not in _BACKENDS:
        raise ScanValueError(f"backend {backend!r} is not available",
                             hint=f"Available backends: {', '.join(map(repr, _BACKENDS))}.")
    if not callable(fn):
        raise ScanValueError(f"fn must be a function, got {type(fn).__name__}")
    token = arguments.DEVICE_ARRAYS.set(backend == "cupy")
    try:
        return _checked_call(sequences, outputs_info, non_sequences, n_steps, go_backwards,
                             keep, strict, pytree)
    finally:
        arguments.DEVICE_ARRAYS.reset(token)


def _checked_call(sequences, outputs_info, non_sequences, n_steps, go_backwards, keep, strict,
                  pytree) -> _Call:
    seq_entries = arguments.sequence_args(sequences)
    # outputs_info=[] is Theano's map: every returned value is a per-step output.
    outputs_given = outputs_info is not None and not (
        isinstance(outputs_info, (list, tuple)) and len(outputs_info) == 0) and pytree is None
    inits, init_taps = [], []
    for initial, taps in arguments.output_args(outputs_info):
        inits.append(initial)
        init_taps.append(taps)
    params = arguments.non_sequence_values(non_sequences)
    n_steps, windows = arguments.steps_and_windows(seq_entries, n_steps, bool(go_backwards))
    seq_sigs = tuple(signature_of(w.window, sequence=True) for w in windows)
    init_sigs = tuple(None if v is None else signature_of(v) for v in inits)
    param_sigs = tuple(signature_of(p) for p in params)
    seq_taps = tuple(w.taps for w in windows)
    key = (seq_sigs, init_sigs, param_sigs, bool(go_backwards), outputs_given,
           _normalize_keep(keep), seq_taps, tuple(init_taps), bool(strict), pytree)
    return _Call([w.window for w in windows], inits, params, n_steps, key, seq_taps,
                 tuple(init_taps), tuple(w.rows for w in windows))


def _prepared(fn, *args, **kwargs) -> _Call:
    """``_prepare_call``, with the non-sequences ``fn`` is known to branch on by value."""
    call = _prepare_call(fn, *args, **kwargs)
    static = _STATIC_PARAMS.get(_static_key(fn)) if callable(fn) else None
    return _with_static(call, static) if static else call


# Per step function (code, file): the Python-scalar non-sequences it branches on or counts with
# (``if use_bias:``); its loops are compiled for their values (signature.StaticVal).
_STATIC_PARAMS: dict[tuple, frozenset[int]] = {}


def _static_key(fn) -> tuple:
    code = _code_of(fn)
    return code, getattr(code, "co_filename", None)


def _with_static(call: _Call, indices) -> _Call:
    """``call`` compiled for the values of the Python-scalar non-sequences at ``indices``."""
    param_sigs = tuple(
        StaticVal(_scalar_value(value)) if k in indices and _scalar_value(value) is not None
        else sig for k, (value, sig) in enumerate(zip(call.non_sequences, call.key[2])))
    key = (*call.key[:2], param_sigs, *call.key[3:])
    return _Call(call.sequences, call.inits, call.non_sequences, call.n_steps, key,
                 call.seq_taps, call.init_taps, call.seq_rows)


def _scalar_value(value):
    """A Python or NumPy scalar as it is, a 0-d array as its NumPy scalar; else None."""
    if type(value) in (bool, int, float) or isinstance(value, np.generic):
        return value
    if isinstance(value, np.ndarray) and value.ndim == 0 and type(value) is np.ndarray:
        return value[()]
    return None


def with_parameter_values(fn, call: _Call, compile_for):
    """``compile_for(call)``, compiled again for the values of the Python-scalar non-sequences
    the step branches on when it asks for them (at most once per non-sequence)."""
    for _ in range(len(call.non_sequences) + 1):
        try:
            return compile_for(call)
        except ParameterValueNeeded as needed:
            key = _static_key(fn)
            _STATIC_PARAMS[key] = _STATIC_PARAMS.get(key, frozenset()) | needed.indices
            _REPEATS.clear()  # calls remembered before were not compiled by value
            call = _with_static(call, _STATIC_PARAMS[key])
    raise AssertionError("every non-sequence is compiled by value already")


def _lookup(fn, call: _Call, *, exact_random: bool, optimize: bool, backend: str = "numpy"):
    return with_parameter_values(fn, call, lambda call: _lookup_once(
        fn, call, exact_random=exact_random, optimize=optimize, backend=backend))


def _lookup_once(fn, call: _Call, *, exact_random: bool, optimize: bool,
                 backend: str = "numpy"):
    code = _code_of(fn)
    # Identical functions in two files have equal code objects: the file tells them apart.
    key = (code, getattr(code, "co_filename", None), call.key, bool(exact_random),
           bool(optimize), backend)
    try:
        entries = _STATS.entries.setdefault(key, [])
    except TypeError:  # an unhashable callable
        raise ScanValueError(f"cannot compile {fn!r}") from None
    for entry in entries:
        captured = entry.plan.fetch(fn)
        if captured is not None:
            _STATS.hits += 1
            cache.log_memory_hit(fn)
            return entry, captured
    _STATS.misses += 1
    options = {"backend": backend, "exact_random": bool(exact_random),
               "optimize": bool(optimize)}
    compiled, from_disk = cache.compiled_for(
        fn, call.key, options,
        lambda: _compile(fn, call, exact_random=exact_random, optimize=optimize,
                         backend=backend))
    _STATS.disk_hits += from_disk
    entries.append(compiled)
    captured = compiled.plan.fetch(fn)
    assert captured is not None
    return compiled, captured


def _code_of(fn):
    """What identifies a step callable's code: a function's, a method's or a partial's."""
    for attribute in ("__func__", "func"):
        inner = getattr(fn, attribute, None)
        if isinstance(inner, types.FunctionType):
            return inner.__code__
    return getattr(fn, "__code__", fn)


def _spec(call_key, outputs: list | None = None):
    from scanopt.frontend.builder import StepSpec

    (seq_sigs, init_sigs, param_sigs, go_backwards, outputs_given, keep, seq_taps, init_taps,
     strict, pytree) = call_key
    return StepSpec(list(seq_sigs), list(init_sigs), list(param_sigs), reverse=go_backwards,
                    outputs_given=outputs_given, keep=keep, seq_taps=list(seq_taps),
                    init_taps=list(init_taps), strict=strict, pytree=pytree)


def _compile(fn, call: _Call, *, exact_random: bool, optimize: bool, backend: str = "numpy"):
    from scanopt.compiler import compile_loop

    return compile_loop(fn, _spec(call.key), optimize=optimize, exact_random=exact_random,
                        call_site=_call_site(), backend=backend)


def _call_site() -> SourceLocation | None:
    """The user's line that called into scanopt (for errors about ``fn`` itself)."""
    frame = sys._getframe(1)
    package = os.path.dirname(os.path.abspath(__file__))
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package):
        frame = frame.f_back
    if frame is None:
        return None
    return SourceLocation(frame.f_code.co_filename, frame.f_lineno, 1)


def explain(fn, sequences=None, outputs_info=None, non_sequences=None, n_steps=None,
            go_backwards=False, *, show_ir=False, backend="numpy", exact_random=False,
            optimize=True, keep="all", strict=False, return_list=False) -> str:
    """A report of what the passes did to ``fn``'s loop for these arguments (a string).

    Same arguments as :func:`scan`; ``show_ir=True`` adds the IR after every pass. Always
    compiles afresh (the cache is neither read nor filled)."""
    try:
        call = _prepared(fn, sequences, outputs_info, non_sequences, n_steps, go_backwards,
                         backend, keep, strict=strict)
        from scanopt.compiler import explain_loop

        site = _call_site()
        report = with_parameter_values(fn, call, lambda call: explain_loop(
            fn, _spec(call.key), optimize=optimize, exact_random=exact_random, show_ir=show_ir,
            call_site=site, backend=backend))
    except ScanError as error:
        raise error.with_traceback(None) from None
    return report.replace("[?,", f"[{call.n_steps}×")


# ---------------------------------------------------------------------------------------------
# The decorator


class StepFunction:
    """A step function with compiled-scan methods; calling it runs the original function."""

    def __init__(self, fn, **options):
        self.fn = fn
        self.options = options
        functools.update_wrapper(self, fn)

    def __call__(self, *args, **kwargs):
        return self.fn(*args, **kwargs)

    def scan(self, sequences=None, outputs_info=None, non_sequences=None, n_steps=None,
             go_backwards=False, **options):
        """``scanopt.scan(this step, ...)`` with the decorator's options as defaults."""
        return scan(self.fn, sequences, outputs_info, non_sequences, n_steps,
                    go_backwards=go_backwards, **self._scan_options(options))

    def source(self, sequences=None, outputs_info=None, non_sequences=None, n_steps=None,
               go_backwards=False, **options) -> str:
        """The generated NumPy module for these arguments' types."""
        opts = self._scan_options(options)
        try:
            call = _prepared(self.fn, sequences, outputs_info, non_sequences, n_steps,
                             go_backwards, opts.get("backend", "numpy"),
                             opts.get("keep", "all"), strict=opts.get("strict", False))
            compiled, _ = _lookup(self.fn, call, exact_random=opts.get("exact_random", False),
                                  optimize=opts.get("optimize", True),
                                  backend=opts.get("backend", "numpy"))
        except ScanError as error:
            raise error.with_traceback(None) from None
        return compiled.source

    def explain(self, sequences=None, outputs_info=None, non_sequences=None, n_steps=None,
                go_backwards=False, *, show_ir=False, **options) -> str:
        """What each pass did for these arguments' types, pointing at the step's lines.

        ``show_ir=True`` adds the IR after the frontend and after every pass."""
        return explain(self.fn, sequences, outputs_info, non_sequences, n_steps, go_backwards,
                       show_ir=show_ir, **self._scan_options(options))

    def _scan_options(self, options: dict) -> dict:
        opts = {**self.options, **options}
        opts.pop("signature", None)  # for .build() only
        return opts

    def build(self, path=None, **options) -> str:
        """The module built ahead of time from the decorator's ``signature`` (see
        :func:`scanopt.build`); written to ``path`` when given, and returned."""
        from scanopt.aot import build

        opts = {**self.options, **options}
        signature = opts.pop("signature", None)
        if signature is None:
            raise ScanValueError(
                "this step has no signature to build from",
                hint="Decorate it with @scanopt.step(signature=dict(sequences={'x': "
                     "'f32[T,B,128]'}, outputs_info=..., non_sequences=...)).")
        unknown = set(signature) - {"sequences", "outputs_info", "non_sequences", "n_steps",
                                    "go_backwards"}
        if unknown:
            raise ScanValueError(f"unknown signature entries: {', '.join(sorted(unknown))}")
        for option in ("strict", "return_list"):
            opts.pop(option, None)
        return build(self.fn, **signature, path=path, **opts)

    def __repr__(self) -> str:
        return f"<scanopt.step {getattr(self.fn, '__qualname__', self.fn)!r}>"


def step(fn=None, **options):
    """Decorate a step function: ``@scanopt.step`` or ``@scanopt.step(exact_random=True)``.

    The result calls the original function when called, and adds ``.scan(...)`` (same arguments
    as :func:`scanopt.scan` without ``fn``) and ``.source(...)`` (the generated module's text).
    ``signature=dict(sequences={"x": "f32[T,B,128]"}, outputs_info=..., non_sequences=...)``
    declares argument types for ``.build(path)``, the ahead-of-time module (see
    :func:`scanopt.build`).
    """
    unknown = set(options) - {"backend", "exact_random", "optimize", "keep", "strict",
                              "return_list", "signature"}
    if unknown:
        raise ScanValueError(f"unknown option(s) for scanopt.step: {', '.join(sorted(unknown))}")
    if fn is None:
        return lambda f: StepFunction(f, **options)
    return StepFunction(fn, **options)


# re-exported for type checkers
__all__ = ["StepFunction", "cache_info", "carry_scan", "clear_cache", "explain", "scan", "step",
           "until"]
