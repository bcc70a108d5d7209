"""The public entry points: ``scan`` (Theano's signature) and the ``@step`` decorator.

This module and everything it imports on a cache hit are plain Python and NumPy: xDSL is imported
only when a loop has to be compiled.

Environment variables (the complete list):

- ``SCANOPT_DISABLE=1``: run the plain Python loop instead of compiling (the reference semantics).
- ``SCANOPT_CACHE_DIR``: where generated modules and the disk cache live (default: a private
  directory in the user cache directory).
- ``SCANOPT_DEBUG_CACHE=1``: print one line per cache lookup to stderr (memory/disk hit, or miss
  and why).
"""

from __future__ import annotations

import functools
import operator
import os
import random
import sys
import types
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from scanopt import cache
from scanopt.errors import ScanError, ScanTypeError, ScanValueError, SourceLocation
from scanopt.signature import signature_of

_BACKENDS = ("numpy",)


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
    _STATS.hits = _STATS.misses = _STATS.disk_hits = 0


def scan(fn, sequences=None, outputs_info=None, non_sequences=None, n_steps=None,
         go_backwards=False, *, backend="numpy", exact_random=False, optimize=True,
         keep="all"):
    """Run ``fn`` over sequences with carried state, compiled to a NumPy loop.

    ``scan(fn, sequences, outputs_info, non_sequences, n_steps) -> array | list[array]``

    Same meaning and argument order as ``theano.scan``. It computes what this loop computes::

        n = min(len(s) for s in sequences) if n_steps is None else n_steps
        state, history = list(outputs_info), [[] for each output]
        for t in range(n):
            args = [s[t] for s in sequences] + [v for v in state if v is not None] + non_sequences
            out = fn(*args)                       # one value, or a tuple/list of values
            for k, v in enumerate(out):
                history[k].append(v)
                if state[k] is not None:          # None in outputs_info: not fed back
                    state[k] = v
        return [np.stack(h) for h in history]     # one array if fn returns one value

    ``fn`` is compiled once per function and argument types (dtypes and shapes; the sequence
    length is free) into a standalone NumPy module; later calls reuse it. Each of
    ``sequences``, ``outputs_info`` and ``non_sequences`` may be one value or a list. Python
    scalars among the non-sequences keep NumPy's weak typing, as in the loop above.

    ``go_backwards=True`` walks ``s[:n]`` from its last element to its first (outputs in
    iteration order). ``keep="last"`` (or one of "all"/"last" per returned value) returns only
    the value after the last step for those outputs, and the loop stores O(1) of them instead of
    O(n_steps). ``exact_random=True`` makes the same generator calls in the same order as
    the loop above, so the results are bit-for-bit equal. ``optimize=False`` turns every
    optimisation pass off. Errors in the step function raise :class:`scanopt.ScanError`
    subclasses naming ``file:line:col``.
    """
    try:
        return _scan(fn, sequences, outputs_info, non_sequences, n_steps, go_backwards,
                     backend=backend, exact_random=exact_random, optimize=optimize, keep=keep)
    except ScanError as error:
        # The message names the user's line; our frames would only hide it.
        raise error.with_traceback(None) from None


def _scan(fn, sequences, outputs_info, non_sequences, n_steps, go_backwards, *, backend,
          exact_random, optimize, keep):
    call = _prepare_call(fn, sequences, outputs_info, non_sequences, n_steps, go_backwards,
                         backend, keep)
    if os.environ.get("SCANOPT_DISABLE") == "1":
        from scanopt.reference import reference_scan

        outs = reference_scan(fn, call.sequences, call.inits, call.non_sequences, call.n_steps,
                              go_backwards)
        keeps = [keep] * len(outs) if isinstance(keep, str) else list(keep)
        outs = [o[-1] if k == "last" else o for o, k in zip(outs, keeps)]
        return outs[0] if len(outs) == 1 else outs
    compiled, captured = _lookup(fn, call, exact_random=exact_random, optimize=optimize,
                                 backend=backend)
    if call.n_steps == 0 and compiled.last_without_init:
        raise ScanValueError(
            'keep="last" asks for the last value of an output that is not fed back, but the loop '
            "runs no step", hint="Run at least one step, or keep that output with keep=\"all\".")
    inits = [v for v in call.inits if v is not None]
    outs = compiled.run(*call.sequences, *inits, *call.non_sequences, *captured, call.n_steps)
    if compiled.n_outputs == 1:
        return outs
    return list(outs)


@dataclass
class _Call:
    sequences: list[np.ndarray]
    inits: list[np.ndarray | None]
    non_sequences: list[Any]
    n_steps: int
    key: tuple


def _as_list(value) -> list:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def _normalize_keep(keep):
    if isinstance(keep, str) and keep in ("all", "last"):
        return keep
    if isinstance(keep, (list, tuple)) and all(k in ("all", "last") for k in keep):
        return tuple(keep)
    raise ScanValueError(f"keep must be \"all\", \"last\" or a list of those, got {keep!r}")


def _prepare_call(fn, sequences, outputs_info, non_sequences, n_steps, go_backwards, backend,
                  keep="all"):
    if backend not in _BACKENDS:
        raise ScanValueError(f"backend {backend!r} is not available",
                             hint=f"Available backends: {', '.join(map(repr, _BACKENDS))}.")
    if not callable(fn):
        raise ScanValueError(f"fn must be a function, got {type(fn).__name__}")
    seqs = _sequence_arrays(sequences)
    outputs_given = outputs_info is not None
    inits = _initial_values(outputs_info)
    params = _non_sequence_values(non_sequences)
    n_steps = _steps_to_run(n_steps, seqs, _argument_names("sequences", sequences))

    seq_sigs = tuple(signature_of(s, sequence=True) for s in seqs)
    init_sigs = tuple(None if v is None else signature_of(v) for v in inits)
    param_sigs = tuple(signature_of(p) for p in params)
    key = (seq_sigs, init_sigs, param_sigs, bool(go_backwards), outputs_given,
           _normalize_keep(keep))
    # The loop reads the first n_steps elements only; views cost nothing and spare work that
    # runs over whole sequences (pushed-out matmuls).
    seqs = [s if len(s) == n_steps else s[:n_steps] for s in seqs]
    return _Call(seqs, inits, params, n_steps, key)


# ---------------------------------------------------------------------------------------------
# Checking the call's arguments: each helper takes one argument as the user passed it and
# returns what the loop receives, or raises a ScanError that names the argument
# (``sequences[1]``, ``n_steps``) and says what to pass instead. Nothing here copies or writes
# the user's arrays.


def _argument_names(what: str, value) -> list[str]:
    """How the user names each entry of ``what``: ``sequences[1]`` in a list, else
    ``sequences``."""
    if isinstance(value, (list, tuple)):
        return [f"{what}[{k}]" for k in range(len(value))]
    return [] if value is None else [what]


def _sequence_arrays(sequences) -> list[np.ndarray]:
    arrays = []
    for where, value in zip(_argument_names("sequences", sequences), _as_list(sequences)):
        if isinstance(value, dict):
            raise ScanValueError(
                f"{where} is a dict: taps (dict(input=..., taps=[...])) are not supported yet",
                hint="Pass the array itself and slice inside the step.")
        if value is None:
            raise ScanTypeError(f"{where} is None, but every sequence must be an array",
                                 hint="Remove it from sequences, or pass the array it stands "
                                      "for.")
        array = _input_array(value, where)
        if array.ndim == 0:
            raise ScanValueError(f"{where} is a scalar; a sequence needs a leading (time) "
                                 "dimension", hint="Pass a constant as a non-sequence instead.")
        arrays.append(array)
    return arrays


def _initial_values(outputs_info) -> list[np.ndarray | None]:
    values = []
    for where, value in zip(_argument_names("outputs_info", outputs_info),
                            _as_list(outputs_info)):
        if isinstance(value, dict):
            raise ScanValueError(f"{where} is a dict: taps are not supported yet",
                                 hint="Pass the initial value itself.")
        values.append(None if value is None else _input_array(value, where))
    return values


def _non_sequence_values(non_sequences) -> list:
    """Passed to the step as they are: arrays, NumPy or Python scalars, generators."""
    values = _as_list(non_sequences)
    for where, value in zip(_argument_names("non_sequences", non_sequences), values):
        if isinstance(value, np.random.Generator) or type(value) in _PYTHON_SCALARS:
            continue
        _refuse_other_generator(value, where)
        if isinstance(value, (np.ndarray, np.generic)):
            _refuse_array_subclass(value, where)
            _check_dtype(value.dtype, value, where)
        else:
            raise ScanTypeError(
                f"{where} is {_a_value_of_type(value)}, which scanopt cannot pass to a step "
                "function",
                hint="Pass NumPy arrays of numbers or booleans, NumPy or Python scalars, or a "
                     "numpy.random.Generator" + (f" (np.asarray({where}) for a list)"
                                                 if isinstance(value, (list, tuple)) else "")
                     + ".")
    return values


_PYTHON_SCALARS = (bool, int, float, complex)


def _input_array(value, where: str) -> np.ndarray:
    """A sequence or initial value as an ndarray (lists and scalars are converted, as the plain
    loop's ``np.asarray`` does); anything that is not numbers or booleans is refused."""
    _refuse_other_generator(value, where)
    if isinstance(value, np.random.Generator):
        raise ScanTypeError(f"{where} is a numpy.random.Generator",
                            hint="Pass a generator as a non-sequence (or let the step capture "
                                 "it).")
    if isinstance(value, (str, bytes, dict, set, frozenset)):
        raise ScanTypeError(f"{where} is {_a_value_of_type(value)}, not an array",
                            hint="Pass a NumPy array of numbers or booleans (or a nested list "
                                 "of numbers).")
    if isinstance(value, np.ndarray):
        _refuse_array_subclass(value, where)
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as error:
        # A ragged nested list: NumPy refuses to make an array of it.
        raise ScanValueError(
            f"{where} cannot be made into an array: {error}",
            hint="Its rows must all have the same length (pad them, or pass them as separate "
                 "sequences).") from None
    if array.dtype == object and not isinstance(value, np.ndarray) and \
            not isinstance(value, (list, tuple)):
        raise ScanTypeError(f"{where} is {_a_value_of_type(value)}, not an array",
                            hint="Pass a NumPy array of numbers or booleans.")
    _check_dtype(array.dtype, value, where)
    return array


def _check_dtype(dtype: np.dtype, value, where: str) -> None:
    """Numbers and booleans of the dtypes the compiled loop handles (``value``: as passed)."""
    if dtype.kind in "biuf" and dtype.itemsize <= 8 or dtype.kind == "c" and dtype.itemsize <= 16:
        return
    what = f"an array of dtype {dtype}" if isinstance(value, np.ndarray) else \
        f"a NumPy scalar of dtype {dtype}" if isinstance(value, np.generic) else \
        f"{_a_value_of_type(value)} that NumPy turns into an array of dtype {dtype}"
    strings = "Strings cannot be computed with: encode them as integer codes first."
    hints = {
        "O": "Convert it to numbers, e.g. np.asarray(x, dtype=np.float64); None or other "
             "Python objects inside cannot be compiled.",
        "U": strings, "S": strings,
        "M": "Convert datetimes to numbers first, e.g. (x - x[0]) / np.timedelta64(1, 's').",
        "m": "Convert durations to numbers first, e.g. x / np.timedelta64(1, 's').",
        "V": "Pass each field of a structured array as an array of its own (x['name']).",
    }
    raise ScanTypeError(
        f"{where} is {what}, which scanopt cannot compile",
        hint=hints.get(dtype.kind, "Convert it first, e.g. np.asarray(x, dtype=np.float64) "
                                   "(float128 and complex256 are not supported)."))


# ndarray subclasses whose operators or ufuncs compute something else than an ndarray's
# would: the compiled loop works on plain arrays, so it cannot reproduce them.
_SUBCLASS_HINTS = {
    np.matrix: "np.matrix is always 2-D and `*` on it is a matrix product. Pass np.asarray(x) "
               "and write `@` for matrix products in the step.",
    np.ma.MaskedArray: "Masks are not compiled. Pass x.filled(value) (masked entries replaced "
                       "by value), or np.asarray(x) to ignore the mask.",
}
_ARRAY_METHODS = ("__array_ufunc__", "__array_function__", "__add__", "__sub__", "__mul__",
                  "__truediv__", "__pow__", "__matmul__", "__neg__", "__eq__", "__lt__")


def _refuse_array_subclass(value: np.ndarray | np.generic, where: str) -> None:
    cls = type(value)
    if not isinstance(value, np.ndarray) or cls is np.ndarray:
        return
    for base, hint in _SUBCLASS_HINTS.items():
        if isinstance(value, base):
            raise ScanTypeError(f"{where} is a {cls.__module__}.{cls.__qualname__}, whose "
                                "semantics differ from a plain ndarray's", hint=hint)
    overridden = [m for m in _ARRAY_METHODS if getattr(cls, m) is not getattr(np.ndarray, m)]
    if overridden:
        raise ScanTypeError(
            f"{where} is a {cls.__qualname__}, an ndarray subclass that redefines "
            f"{', '.join(overridden)}", hint="Pass np.asarray(x): the compiled loop computes "
                                             "with plain NumPy arrays.")


def _refuse_other_generator(value, where: str) -> None:
    """Random-number sources that are not a ``numpy.random.Generator``."""
    if isinstance(value, np.random.RandomState) or value is np.random:
        kind = "the np.random module" if value is np.random else "a np.random.RandomState"
    elif isinstance(value, random.Random) or value is random:
        kind = "Python's random module" if value is random else "a Python random.Random"
    else:
        return
    raise ScanTypeError(f"{where} is {kind}; scanopt draws from a numpy.random.Generator",
                        hint="Pass np.random.default_rng(seed) and call its methods "
                             "(rng.random, rng.normal, rng.binomial, ...) in the step.")


def _a_value_of_type(value) -> str:
    if value is None:
        return "None"
    name = type(value).__name__
    return f"{'an' if name[0].lower() in 'aeiou' else 'a'} {name}"


def _steps_to_run(n_steps, seqs: list[np.ndarray], names: list[str]) -> int:
    """``n_steps`` checked against the sequences, or the length of the shortest one."""
    lengths = [len(s) for s in seqs]
    if n_steps is None:
        if not lengths:
            raise ScanValueError(
                "cannot tell how many steps to run: there are no sequences and n_steps is None",
                hint="Pass n_steps=... (or a sequence to iterate over).")
        return min(lengths)
    count = _step_count(n_steps)
    if count < 0:
        raise ScanValueError(f"n_steps must not be negative, got {count}",
                             hint="To iterate from the end, pass go_backwards=True.")
    if lengths and count > min(lengths):
        k = lengths.index(min(lengths))
        others = "" if len(lengths) == 1 else \
            f" (sequence lengths: {', '.join(map(str, lengths))})"
        raise ScanValueError(
            f"n_steps={count} is larger than {names[k]}, which has {lengths[k]} "
            f"step{'s' * (lengths[k] != 1)}{others}",
            hint=f"Pass n_steps <= {lengths[k]}, or omit n_steps to run over the shortest "
                 "sequence.")
    return count


def _step_count(n_steps) -> int:
    """``n_steps`` as an int: a Python or NumPy integer (not a bool, float or string)."""
    if not isinstance(n_steps, (bool, np.bool_)):
        try:
            return operator.index(n_steps)
        except TypeError:
            pass
    hint = "Pass the number of steps as an int, e.g. n_steps=10."
    if isinstance(n_steps, (float, np.floating)) and float(n_steps).is_integer():
        hint = f"Pass n_steps={int(n_steps)} (an int, not a {type(n_steps).__name__})."
    raise ScanValueError(f"n_steps must be an integer, got {n_steps!r} "
                         f"({_a_value_of_type(n_steps)})", hint=hint)


def _lookup(fn, call: _Call, *, exact_random: bool, optimize: bool, backend: str = "numpy"):
    key = (_code_of(fn), call.key, bool(exact_random), bool(optimize), backend)
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
        lambda: _compile(fn, call, exact_random=exact_random, optimize=optimize))
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

    seq_sigs, init_sigs, param_sigs, go_backwards, outputs_given, keep = call_key
    return StepSpec(list(seq_sigs), list(init_sigs), list(param_sigs), reverse=go_backwards,
                    outputs_given=outputs_given, keep=keep)


def _compile(fn, call: _Call, *, exact_random: bool, optimize: bool):
    from scanopt.compiler import compile_loop

    return compile_loop(fn, _spec(call.key), optimize=optimize, exact_random=exact_random,
                        call_site=_call_site())


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
            optimize=True, keep="all") -> str:
    """A report of what the passes did to ``fn``'s loop for these arguments (a string).

    Same arguments as :func:`scan`; ``show_ir=True`` adds the IR after every pass. Always
    compiles afresh (the cache is neither read nor filled)."""
    try:
        call = _prepare_call(fn, sequences, outputs_info, non_sequences, n_steps, go_backwards,
                             backend, keep)
        from scanopt.compiler import explain_loop

        report = explain_loop(fn, _spec(call.key), optimize=optimize, exact_random=exact_random,
                              show_ir=show_ir, call_site=_call_site())
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
        return scan(self.fn, sequences, outputs_info, non_sequences, n_steps, go_backwards,
                    **{**self.options, **options})

    def source(self, sequences=None, outputs_info=None, non_sequences=None, n_steps=None,
               go_backwards=False, **options) -> str:
        """The generated NumPy module for these arguments' types."""
        opts = {**self.options, **options}
        try:
            call = _prepare_call(self.fn, sequences, outputs_info, non_sequences, n_steps,
                                 go_backwards, opts.get("backend", "numpy"),
                                 opts.get("keep", "all"))
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
                       show_ir=show_ir, **{**self.options, **options})

    def __repr__(self) -> str:
        return f"<scanopt.step {getattr(self.fn, '__qualname__', self.fn)!r}>"


def step(fn=None, **options):
    """Decorate a step function: ``@scanopt.step`` or ``@scanopt.step(exact_random=True)``.

    The result calls the original function when called, and adds ``.scan(...)`` (same arguments
    as :func:`scanopt.scan` without ``fn``) and ``.source(...)`` (the generated module's text).
    """
    unknown = set(options) - {"backend", "exact_random", "optimize", "keep"}
    if unknown:
        raise ScanValueError(f"unknown option(s) for scanopt.step: {', '.join(sorted(unknown))}")
    if fn is None:
        return lambda f: StepFunction(f, **options)
    return StepFunction(fn, **options)


# re-exported for type checkers
__all__ = ["StepFunction", "cache_info", "clear_cache", "explain", "scan", "step"]
