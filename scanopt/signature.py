"""Abstract values: what the compiler knows about a runtime value (dtype, shape, weak or strong).

NumPy arrays and NumPy scalars are *strong*: their dtype takes part in promotion. Python scalars are
*weak* (NEP 50): ``x_f32 * 0.5`` stays float32. A generator is its own kind. This module does not
import xDSL: the cached-call path computes signatures of the call's arguments with it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scanopt.symbolic import probe_size

DYNAMIC = None  # an unknown dimension: the length of a sequence


@dataclass(frozen=True)
class AVal:
    """An abstract array: dtype and shape; ``weak`` for a Python scalar (shape ``()``)."""

    dtype: np.dtype
    shape: tuple[int | None, ...]
    weak: bool = False

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def describe(self) -> str:
        """The type as a user reads it: ``float32[16,128]``, or ``Python float``."""
        if self.weak:
            return f"Python {_WEAK_NAMES[self.dtype.kind]}"
        dims = ",".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.dtype.name}[{dims}]"

    def dummy(self):
        """A stand-in value with this type, for asking NumPy what an operation returns.

        Zero-stride, so no memory; a symbolic dimension (a sentinel, see scanopt/symbolic.py)
        takes the current probe's small size."""
        if self.weak:
            return _WEAK_TYPES[self.dtype.kind](1)
        shape = tuple(1 if d is None else probe_size(d) for d in self.shape)
        return np.broadcast_to(np.ones((), self.dtype), shape)


@dataclass(frozen=True, eq=False)
class StaticVal:
    """A scalar non-sequence (a Python or NumPy scalar, a 0-d array) the loop is compiled for
    the value of: the step branches on it or counts with it (``if use_bias:``, ``range(n)``),
    which only its value can decide."""

    value: bool | int | float | np.generic

    def aval(self) -> AVal:
        return signature_of(self.value)

    def _identity(self) -> tuple:  # NaN is NaN here, and 1 is not 1.0 nor True
        return type(self.value).__name__, repr(self.value)

    def __eq__(self, other) -> bool:
        return isinstance(other, StaticVal) and self._identity() == other._identity()

    def __hash__(self) -> int:
        return hash(self._identity())

    def describe(self) -> str:
        return f"the value {self.value!r}"


@dataclass(frozen=True)
class RngVal:
    """A ``numpy.random.Generator``."""

    def describe(self) -> str:
        return "numpy.random.Generator"


_WEAK_NAMES = {"f": "float", "i": "int", "b": "bool", "c": "complex"}
_WEAK_TYPES = {"f": float, "i": int, "b": bool, "c": complex}
_WEAK_DTYPES = {bool: np.dtype(bool), int: np.dtype(np.int64), float: np.dtype(np.float64),
                complex: np.dtype(np.complex128)}


def is_python_scalar(value) -> bool:
    return type(value) in _WEAK_DTYPES


def aval_of_result(value) -> AVal:
    """The abstract value of what NumPy returned (Python scalars stay weak)."""
    if type(value) in _WEAK_DTYPES:
        return AVal(_WEAK_DTYPES[type(value)], (), weak=True)
    value = np.asarray(value)
    return AVal(value.dtype, tuple(value.shape))


def signature_of(value, *, sequence: bool = False):
    """The signature of one runtime argument, as the compiled loop is specialised on it.

    Returns ``None`` for a value scanopt cannot take as a loop input. A sequence's leading
    dimension is dynamic so that one compiled loop serves every length.
    """
    if isinstance(value, np.random.Generator):
        return RngVal()
    if type(value) in _WEAK_DTYPES:
        return AVal(_WEAK_DTYPES[type(value)], (), weak=True)
    if isinstance(value, (np.ndarray, np.generic)) or (
            hasattr(type(value), "__cuda_array_interface__") and hasattr(value, "dtype")):
        # (an array on the GPU, a cupy.ndarray, for the CuPy backend: only its type matters)
        if np.dtype(value.dtype).kind not in "biufc":
            return None
        shape = tuple(value.shape)
        if sequence:
            shape = (DYNAMIC, *shape[1:])
        return AVal(np.dtype(value.dtype), shape)
    return None


class ParameterValueNeeded(Exception):
    """The step branches on, or counts with, Python-scalar non-sequences (``if use_bias:``):
    the loop must be compiled for their values. ``indices``: their positions among the
    non-sequences. scanopt.api compiles again with those values (signature.StaticVal)."""

    def __init__(self, indices: frozenset[int]):
        super().__init__(sorted(indices))
        self.indices = indices
