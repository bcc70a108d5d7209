"""Mapping between NumPy dtypes/abstract values and builtin xDSL types."""

from __future__ import annotations

import numpy as np
from xdsl.dialects.builtin import (
    DYNAMIC_INDEX,
    ComplexType,
    IntegerType,
    Signedness,
    TensorType,
    f16,
    f32,
    f64,
    i1,
    i64,
)
from xdsl.ir import Attribute

from scanopt.dialects.scan import RngType
from scanopt.signature import AVal, RngVal

_ELEMENT_TYPES: dict[str, Attribute] = {
    "float16": f16,
    "float32": f32,
    "float64": f64,
    "bool": i1,
    "int8": IntegerType(8),
    "int16": IntegerType(16),
    "int32": IntegerType(32),
    "int64": i64,
    "uint8": IntegerType(8, Signedness.UNSIGNED),
    "uint16": IntegerType(16, Signedness.UNSIGNED),
    "uint32": IntegerType(32, Signedness.UNSIGNED),
    "uint64": IntegerType(64, Signedness.UNSIGNED),
    "complex64": ComplexType(f32),
    "complex128": ComplexType(f64),
}
_DTYPES = {t: np.dtype(name) for name, t in _ELEMENT_TYPES.items()}
# Python scalars (weak): bare builtin types, which NumPy values never get.
_WEAK_TYPES: dict[str, Attribute] = {"f": f64, "i": i64, "b": i1, "c": ComplexType(f64)}


class UnsupportedDtype(Exception):
    pass


def element_type(dtype: np.dtype) -> Attribute:
    try:
        return _ELEMENT_TYPES[np.dtype(dtype).name]
    except KeyError:
        raise UnsupportedDtype(np.dtype(dtype).name) from None


def ir_type(aval: AVal | RngVal) -> Attribute:
    if isinstance(aval, RngVal):
        return RngType()
    if aval.weak:
        return _WEAK_TYPES[aval.dtype.kind]
    shape = [DYNAMIC_INDEX if d is None else d for d in aval.shape]
    return TensorType(element_type(aval.dtype), shape)


def aval_of(t: Attribute) -> AVal | RngVal:
    if isinstance(t, RngType):
        return RngVal()
    if isinstance(t, TensorType):
        shape = tuple(None if d == DYNAMIC_INDEX else d for d in t.get_shape())
        return AVal(_DTYPES[t.get_element_type()], shape)
    for kind, weak in _WEAK_TYPES.items():
        if t == weak:
            return AVal(np.dtype({"f": np.float64, "i": np.int64, "b": bool,
                                  "c": np.complex128}[kind]), (), weak=True)
    raise TypeError(f"no abstract value for IR type {t}")
