"""The arguments of a scan call, normalised as Theano (and PyTensor) read them.

Plain Python and NumPy (no xDSL): the cached-call path runs this on every call.

Sequences. ``dict(input=u, taps=[-4, 0])`` gives the step ``u[t-4]`` and ``u[t]`` (in tap order);
a plain array or a missing/None ``taps`` means ``taps=[0]``. With ``lo = min(taps, 0)`` and
``hi = max(taps, 0)`` a sequence allows ``len(u) - (hi - lo)`` steps, and at step ``t`` tap ``k``
reads ``u[t - lo + k]``. With ``go_backwards`` each tap's rows are read from the end of ``u``:
step ``t`` reads ``u[len(u) - 1 - (hi - k) - t]``. The loop reads a *window* of ``u``: the
``n_steps + max(taps) - min(taps)`` rows that the taps read, so tap ``k`` is row ``k - min(taps)
+ t`` of the window (``k - min(taps) + n_steps - 1 - t`` backwards).

Outputs. A plain initial value is ``taps=[-1]``: the step gets the previous value. ``dict(
initial=x0, taps=[-3, -1])`` (Theano's mit_sot) gives ``x[t-3]`` and ``x[t-1]``; ``x0`` holds the
``m = -min(taps)`` values before the first step (its first ``m`` rows are used). ``None`` is a
per-step output that is not fed back; ``outputs_info=[]`` makes every returned value one.
"""

from __future__ import annotations

import contextvars
import operator
import random
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from scanopt.errors import ScanTypeError, ScanValueError


@dataclass(frozen=True)
class SequenceArg:
    """One sequence: the rows the loop reads (its window) and its taps."""

    window: np.ndarray
    taps: tuple[int, ...]
    rows: slice  # window = array[rows]


@dataclass(frozen=True)
class OutputArg:
    """One entry of ``outputs_info``: its initial value(s) and taps, or a per-step output."""

    init: Any  # an array (m stacked values for taps below -1), or None
    taps: tuple[int, ...] | None  # None: not fed back


def tap_span(taps: tuple[int, ...]) -> tuple[int, int]:
    """``(lo, hi)``: the taps' range, stretched to include 0."""
    return min(min(taps), 0), max(max(taps), 0)


def as_list(value) -> list:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def _taps(value, what: str, *, output: bool) -> tuple[int, ...]:
    taps = as_list(value)
    if not taps:
        raise ScanValueError(f"{what} has no taps", hint="Give at least one tap, or omit taps.")
    for tap in taps:
        if isinstance(tap, (bool, np.bool_)) or not isinstance(tap, (int, np.integer)):
            raise ScanValueError(f"{what}: taps must be integers, got {tap!r}")
    taps = tuple(int(t) for t in taps)
    if len(set(taps)) != len(taps):
        raise ScanValueError(f"{what}: every tap must be different, got {list(taps)}")
    if output and max(taps) >= 0:
        raise ScanValueError(
            f"{what}: output taps must be negative (the step gets values computed before it), "
            f"got {list(taps)}", hint="Use taps such as [-2, -1]; -1 is the previous value.")
    return taps


def sequence_args(sequences) -> list[tuple[np.ndarray, tuple[int, ...], str]]:
    """``(array, taps, name)`` for each sequence; a dict is Theano's ``dict(input=, taps=)``."""
    result = []
    for where, entry in zip(argument_names("sequences", sequences), as_list(sequences)):
        taps: tuple[int, ...] = (0,)
        if isinstance(entry, dict):
            unknown = set(entry) - {"input", "taps"}
            if unknown:
                raise ScanValueError(f"{where} has unknown keys {sorted(unknown)}",
                                     hint="A sequence dict has the keys 'input' and 'taps'.")
            if "input" not in entry:
                raise ScanValueError(f"{where} is a dict without 'input'",
                                     hint="Write dict(input=array, taps=[-1, 0]).")
            if entry.get("taps") is not None:
                taps = _taps(entry["taps"], where, output=False)
            entry = entry["input"]
        if entry is None:
            raise ScanTypeError(f"{where} is None, but every sequence must be an array",
                                hint="Remove it from sequences, or pass the array it stands "
                                     "for.")
        array = input_array(entry, where)
        if array.ndim == 0:
            raise ScanValueError(f"{where} is a scalar; a sequence needs a leading (time) "
                                 "dimension", hint="Pass a constant as a non-sequence instead.")
        result.append((array, taps, where))
    return result


def output_args(outputs_info) -> list[tuple[np.ndarray | None, tuple[int, ...] | None]]:
    """``(initial, taps)`` for each entry of ``outputs_info`` (taps None: not fed back). For
    taps other than ``[-1]`` the initial value holds the values before the first step."""
    result = []
    for where, entry in zip(argument_names("outputs_info", outputs_info),
                            as_list(outputs_info)):
        if entry is None:
            result.append((None, None))
            continue
        taps: tuple[int, ...] = (-1,)
        if isinstance(entry, dict):
            unknown = set(entry) - {"initial", "taps", "inplace"}
            if unknown:
                raise ScanValueError(
                    f"{where} has unknown keys {sorted(unknown)}",
                    hint="An outputs_info dict has the keys 'initial' and 'taps'.")
            if entry.get("initial") is None:
                if entry.get("taps") is not None:
                    raise ScanValueError(f"{where} gives taps but no initial value",
                                         hint="Taps of an output read values before the first "
                                              "step: give them with initial=...")
                result.append((None, None))
                continue
            if entry.get("taps") is not None:
                taps = _taps(entry["taps"], where, output=True)
            entry = entry["initial"]
        initial = input_array(entry, where)
        if taps != (-1,):
            initial = stacked_initial(initial, taps, where)
        result.append((initial, taps))
    return result


def stacked_initial(initial: np.ndarray, taps: tuple[int, ...], what: str) -> np.ndarray:
    """The ``m = -min(taps)`` values before the first step, for an output with taps other than
    ``[-1]`` (Theano's mit_sot): the first ``m`` rows of ``initial``."""
    m = -min(taps)
    if initial.ndim == 0 or len(initial) < m:
        have = "a scalar" if initial.ndim == 0 else f"{len(initial)} row(s)"
        raise ScanValueError(
            f"{what}: taps {list(taps)} read {m} value(s) before the first step, but the "
            f"initial value has {have}",
            hint=f"Give initial= an array whose first dimension holds the {m} values before "
                 f"the first step (oldest first).")
    return initial[:m]


def steps_and_windows(sequences: list[tuple[np.ndarray, tuple[int, ...], str]], n_steps,
                      go_backwards: bool) -> tuple[int, list[SequenceArg]]:
    """The number of steps (Theano's rules) and the window of each sequence."""
    allowed = [len(array) - (tap_span(taps)[1] - tap_span(taps)[0])
               for array, taps, _ in sequences]
    if n_steps is None:
        if not allowed:
            raise ScanValueError(
                "cannot tell how many steps to run: there are no sequences and n_steps is None",
                hint="Pass n_steps=... (or a sequence to iterate over).")
        n_steps = max(min(allowed), 0)
    else:
        n_steps = step_count(n_steps)
        if n_steps < 0:
            raise ScanValueError(f"n_steps must not be negative, got {n_steps}",
                                 hint="To iterate from the end, pass go_backwards=True.")
        short = [k for k, n in enumerate(allowed) if max(n, 0) < n_steps]
        if short:
            k = min(short, key=lambda j: allowed[j])
            array, taps, where = sequences[k]
            steps = max(allowed[k], 0)
            detail = f"which has {len(array)} step{'s' * (len(array) != 1)}" if taps == (0,) \
                else f"which allows {steps} step{'s' * (steps != 1)} with taps {list(taps)} " \
                     f"({len(array)} rows)"
            others = "" if len(sequences) == 1 else \
                f" (sequence lengths: {', '.join(str(len(a)) for a, _, _ in sequences)})"
            raise ScanValueError(
                f"n_steps={n_steps} is larger than {where}, {detail}{others}",
                hint=f"Pass n_steps <= {steps}, or omit n_steps to run over the shortest "
                     "sequence.")
    windows = []
    for array, taps, _ in sequences:
        lo, hi = tap_span(taps)
        if n_steps == 0:  # nothing is read: empty windows (a short one would not broadcast)
            windows.append(SequenceArg(array[:0], taps, slice(0, 0)))
            continue
        rows = n_steps + window_extra_rows(taps)
        # Views: the loop reads exactly these rows, and work pushed out of the loop runs over
        # them only.
        start = len(array) - hi + min(taps) - n_steps if go_backwards else min(taps) - lo
        window_rows = slice(start, start + rows)
        windows.append(SequenceArg(array[window_rows], taps, window_rows))
    return n_steps, windows


def window_extra_rows(taps: tuple[int, ...]) -> int:
    """How many rows more than the number of steps a sequence's window has."""
    return max(taps) - min(taps)




_TAP_SUFFIX = re.compile(r"_(?:t|tm\d+|tp\d+|t_?[mp]_?\d+|prev\d*|lag\d+|minus\d+|plus\d+)$")


def tap_base_name(name: str) -> str:
    """A value's name without a tap suffix (``x_tm3``, ``u_tp2``, ``u_t`` → ``x``, ``u``), for
    naming what all taps share: the sequence, the initial values, the history."""
    base = _TAP_SUFFIX.sub("", name)
    return base if base and base.isidentifier() else name


# Checking the call's arguments: each helper takes one argument as the user passed it and
# returns what the loop receives, or raises a ScanError that names the argument
# (``sequences[1]``, ``n_steps``) and says what to pass instead. Nothing here copies or writes
# the user's arrays.


def argument_names(what: str, value) -> list[str]:
    """How the user names each entry of ``what``: ``sequences[1]`` in a list, else
    ``sequences``."""
    if isinstance(value, (list, tuple)):
        return [f"{what}[{k}]" for k in range(len(value))]
    return [] if value is None else [what]


def non_sequence_values(non_sequences) -> list:
    """Passed to the step as they are: arrays, NumPy or Python scalars, generators."""
    values = as_list(non_sequences)
    for where, value in zip(argument_names("non_sequences", non_sequences), values):
        if isinstance(value, np.random.Generator) or type(value) in _PYTHON_SCALARS:
            continue
        if DEVICE_ARRAYS.get() and is_device_array(value):
            _check_dtype(np.dtype(value.dtype), value, where)
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


# Set while the arguments of a call for the CuPy backend are checked: arrays already on the GPU
# (anything with ``__cuda_array_interface__``, a ``cupy.ndarray``) are taken as they are.
DEVICE_ARRAYS: contextvars.ContextVar[bool] = contextvars.ContextVar("device_arrays",
                                                                    default=False)


def is_device_array(value) -> bool:
    return hasattr(type(value), "__cuda_array_interface__") and hasattr(value, "dtype") and \
        hasattr(value, "shape")


def input_array(value, where: str) -> np.ndarray:
    """A sequence or initial value as an ndarray (lists and scalars are converted, as the plain
    loop's ``np.asarray`` does); anything that is not numbers or booleans is refused."""
    if DEVICE_ARRAYS.get() and is_device_array(value):
        _check_dtype(np.dtype(value.dtype), value, where)
        return value
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


def step_count(n_steps) -> int:
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
