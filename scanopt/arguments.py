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


def sequence_args(sequences) -> list[tuple[Any, tuple[int, ...]]]:
    """``(array, taps)`` for each sequence; dict entries are Theano's ``dict(input=, taps=)``."""
    result = []
    for k, entry in enumerate(as_list(sequences)):
        what = f"sequences[{k}]"
        taps: tuple[int, ...] = (0,)
        if isinstance(entry, dict):
            unknown = set(entry) - {"input", "taps"}
            if unknown:
                raise ScanValueError(f"{what} has unknown keys {sorted(unknown)}",
                                     hint="A sequence dict has the keys 'input' and 'taps'.")
            if "input" not in entry:
                raise ScanValueError(f"{what} is a dict without 'input'",
                                     hint="Write dict(input=array, taps=[-1, 0]).")
            if entry.get("taps") is not None:
                taps = _taps(entry["taps"], what, output=False)
            entry = entry["input"]
        result.append((entry, taps))
    return result


def output_args(outputs_info) -> list[tuple[Any, tuple[int, ...] | None]]:
    """``(initial, taps)`` for each entry of ``outputs_info`` (taps None: not fed back)."""
    result = []
    for k, entry in enumerate(as_list(outputs_info)):
        what = f"outputs_info[{k}]"
        if entry is None:
            result.append((None, None))
            continue
        if not isinstance(entry, dict):
            result.append((entry, (-1,)))
            continue
        unknown = set(entry) - {"initial", "taps", "inplace"}
        if unknown:
            raise ScanValueError(f"{what} has unknown keys {sorted(unknown)}",
                                 hint="An outputs_info dict has the keys 'initial' and 'taps'.")
        initial, taps = entry.get("initial"), entry.get("taps")
        if initial is None:
            if taps is not None:
                raise ScanValueError(f"{what} gives taps but no initial value",
                                     hint="Taps of an output read values before the first "
                                          "step: give them with initial=...")
            result.append((None, None))
            continue
        result.append((initial, (-1,) if taps is None else _taps(taps, what, output=True)))
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


def steps_and_windows(sequences: list[tuple[np.ndarray, tuple[int, ...]]], n_steps,
                      go_backwards: bool) -> tuple[int, list[SequenceArg]]:
    """The number of steps (Theano's rules) and the window of each sequence."""
    allowed = []
    for k, (array, taps) in enumerate(sequences):
        lo, hi = tap_span(taps)
        allowed.append(len(array) - (hi - lo))
    if n_steps is not None:
        if isinstance(n_steps, (bool, np.bool_)) or not isinstance(n_steps, (int, np.integer)):
            raise ScanValueError(f"n_steps must be an integer, got {n_steps!r}")
        n_steps = int(n_steps)
        if n_steps < 0:
            raise ScanValueError(f"n_steps must not be negative, got {n_steps}",
                                 hint="To iterate from the end, pass go_backwards=True.")
        for k, ((array, taps), n) in enumerate(zip(sequences, allowed)):
            if n < n_steps:
                with_taps = "" if taps == (0,) else f" with taps {list(taps)}"
                raise ScanValueError(
                    f"n_steps={n_steps} is larger than sequences[{k}] allows: it has "
                    f"{len(array)} rows, enough for {max(n, 0)} step(s){with_taps}",
                    hint="Pass n_steps <= the steps the sequences allow, or omit it (the loop "
                         "then runs over the shortest sequence).")
    elif allowed:
        n_steps = max(min(allowed), 0)
    else:
        raise ScanValueError(
            "cannot tell how many steps to run: there are no sequences and n_steps is None",
            hint="Pass n_steps=... (or a sequence to iterate over).")
    windows = []
    for array, taps in sequences:
        lo, hi = tap_span(taps)
        rows = n_steps + window_extra_rows(taps)
        # Views: the loop reads exactly these rows, and work pushed out of the loop runs over
        # them only.
        start = len(array) - hi + min(taps) - n_steps if go_backwards else min(taps) - lo
        windows.append(SequenceArg(array[start:start + rows], taps))
    return n_steps, windows


def window_extra_rows(taps: tuple[int, ...]) -> int:
    """How many rows more than the number of steps a sequence's window has."""
    return max(taps) - min(taps)


def check_sequence_array(value, what: str) -> np.ndarray:
    array = np.asarray(value)
    if array.ndim == 0:
        raise ScanValueError(f"{what} is a scalar; a sequence needs a leading (time) dimension")
    return array


def check_dtype_supported(sig, value, what: str) -> None:
    if sig is None and value is not None:
        kind = getattr(value, "dtype", type(value).__name__)
        raise ScanTypeError(
            f"{what} is {kind}, which scanopt cannot pass to a step function",
            hint="Pass NumPy arrays of numbers or booleans, NumPy or Python scalars, "
                 "or a numpy.random.Generator.")


_TAP_SUFFIX = re.compile(r"_(?:t|tm\d+|tp\d+|t_?[mp]_?\d+|prev\d*|lag\d+|minus\d+|plus\d+)$")


def tap_base_name(name: str) -> str:
    """A value's name without a tap suffix (``x_tm3``, ``u_tp2``, ``u_t`` → ``x``, ``u``), for
    naming what all taps share: the sequence, the initial values, the history."""
    base = _TAP_SUFFIX.sub("", name)
    return base if base and base.isidentifier() else name
