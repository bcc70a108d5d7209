"""The part of CuPy's API that generated CuPy modules use, on the CPU, for tests without a GPU.

Arrays are NumPy arrays in "device memory" (a subclass whose ``.data.ptr`` is the address);
``cupy.RawKernel`` compiles the module's CUDA text with g++ through the emulation of
``scanopt/lowering/cuda/emulate.py`` and runs the grid on CPU threads; streams and CUDA graphs
behave as CUDA's do where it matters here: between ``begin_capture`` and ``end_capture``
kernel launches are recorded, not run, and a graph replays them with the same pointers;
anything else during a capture (an allocation, a library call such as ``matmul``) raises, as
CuPy and CUDA refuse cuBLAS and allocations there.

It is strict on purpose: a name the generated modules do not use is an AttributeError, so a
module that starts using more of CuPy fails here until this file (and the GPU check in
benchmarks/gpu.py) covers it. What it cannot check is that real CuPy accepts the same calls:
that is benchmarks/gpu.py's job on a GPU machine.
"""

from __future__ import annotations

import contextlib
import re
import sys
import types

import numpy as np

from scanopt.lowering.cuda import emulate
from scanopt.lowering.cuda.kernels import Kernel, Param

_CAPTURING: list["Stream"] = []
_CURRENT: list["Stream"] = []


class _Memory:
    def __init__(self, array: np.ndarray):
        self.ptr = array.ctypes.data


class ndarray(np.ndarray):
    """A NumPy array standing for device memory."""

    @property
    def data(self):  # cupy: ``a.data.ptr`` is the device address
        return _Memory(self)

    @property
    def __cuda_array_interface__(self):  # what marks an array as a GPU array
        return {"shape": self.shape, "typestr": self.dtype.str, "version": 3,
                "data": (self.ctypes.data, False), "strides": self.strides}

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        _no_capture(f"the ufunc {ufunc.__name__}")
        inputs = tuple(np.asarray(x) if isinstance(x, ndarray) else x for x in inputs)
        if "out" in kwargs:
            kwargs["out"] = tuple(np.asarray(o) if isinstance(o, ndarray) else o
                                  for o in kwargs["out"])
        result = getattr(ufunc, method)(*inputs, **kwargs)
        if isinstance(result, tuple):
            return tuple(_device(r) for r in result)
        return _device(result)


def _no_capture(what: str) -> None:
    if _CAPTURING:
        raise RuntimeError(f"{what} during CUDA graph capture is not permitted "
                           "(only kernel launches can be captured)")


def _device(value):
    return value.view(ndarray) if isinstance(value, np.ndarray) else value


def _wrap(name: str, function):
    def call(*args, **kwargs):
        _no_capture(f"cupy.{name}")
        return _device(function(*args, **kwargs))
    call.__name__ = name
    return call


def asarray(value, dtype=None):
    _no_capture("cupy.asarray")
    if isinstance(value, ndarray) and (dtype is None or value.dtype == dtype):
        return value
    return np.array(value, dtype=dtype, copy=True).view(ndarray)  # a host → device copy


def ascontiguousarray(value):
    _no_capture("cupy.ascontiguousarray")
    if isinstance(value, ndarray) and value.flags.c_contiguous:
        return value
    return np.ascontiguousarray(value).view(ndarray)


def asnumpy(value):
    return np.array(value).view(np.ndarray)


_FUNCTIONS = ("empty", "zeros", "copyto", "concatenate", "stack", "matmul", "array", "full",
              "where", "clip", "reshape", "transpose", "sum", "mean", "max", "min", "exp",
              "log", "tanh", "sin", "cos", "sqrt", "abs", "absolute", "negative", "add",
              "subtract", "multiply", "divide", "true_divide", "floor_divide", "remainder",
              "power", "maximum", "minimum", "reciprocal", "less", "greater", "less_equal",
              "greater_equal", "equal", "not_equal", "logical_and", "logical_or",
              "logical_not", "logical_xor", "square", "sign", "floor", "ceil", "expm1", "log1p")
for _name in _FUNCTIONS:
    globals()[_name] = _wrap(_name, getattr(np, _name))


class RawKernel:
    """``cupy.RawKernel(code, name, options=...)``: the kernel ``name`` of ``code``."""

    def __init__(self, code: str, name: str, options=(), **kwargs):
        if kwargs:
            raise TypeError(f"RawKernel options not emulated: {sorted(kwargs)}")
        self.code, self.name, self.options = code, name, tuple(options)
        self._library = None

    def _load(self):
        if self._library is None:
            self._library = emulate.build(self.code, kernels_in(self.code))
        return self._library

    def __call__(self, grid, block, args, *, shared_mem=0):
        if shared_mem:
            raise TypeError("dynamic shared memory is not emulated")
        library = self._load()
        kernel = library.kernels[self.name]
        for param, arg in zip(kernel.params, args):
            if param.ctype.endswith(("*", "__restrict__")) and not isinstance(arg, ndarray):
                raise TypeError(f"{self.name}: argument {param.name} is a "
                                f"{type(arg).__name__}, not a device array")
            if not param.ctype.endswith(("*", "__restrict__")) and not isinstance(
                    arg, np.generic):
                raise TypeError(f"{self.name}: scalar {param.name} must be a NumPy scalar")
        launch = (self.name, tuple(grid), tuple(block), tuple(args))
        if _CAPTURING:
            _CAPTURING[-1].recorded.append((library, launch))
            return
        library.launch(self.name, grid, block, [np.asarray(a) if isinstance(a, ndarray) else a
                                                for a in args])


_SIGNATURE = re.compile(r'extern "C" __global__ void (\w+)\(\n(.*?)\)\n\{', re.S)


def kernels_in(code: str) -> list[Kernel]:
    """The kernels of a generated CUDA text (their parameter lists)."""
    found = []
    for name, params in _SIGNATURE.findall(code):
        plist = []
        for line in params.split(",\n"):
            decl = line.strip()
            ctype, pname = decl.rsplit(" ", 1)
            plist.append(Param(pname, ctype, "", 0))
        found.append(Kernel(name, plist, (1, 1), (1, 1), []))
    return found


class Graph:
    def __init__(self, recorded):
        self.recorded = list(recorded)
        self.launches = 0

    def launch(self, stream=None):
        _no_capture("Graph.launch")
        self.launches += 1
        for library, (name, grid, block, args) in self.recorded:
            library.launch(name, grid, block, [np.asarray(a) if isinstance(a, ndarray) else a
                                               for a in args])


class Stream:
    def __init__(self, non_blocking=False):
        self.recorded: list = []

    def __enter__(self):
        _CURRENT.append(self)
        return self

    def __exit__(self, *exc):
        _CURRENT.pop()

    def begin_capture(self):
        if _CAPTURING:
            raise RuntimeError("already capturing")
        self.recorded = []
        _CAPTURING.append(self)

    def end_capture(self):
        _CAPTURING.remove(self)
        graph = Graph(self.recorded)
        GRAPHS.append(graph)
        return graph


GRAPHS: list[Graph] = []  # every graph captured, for tests


def get_current_stream():
    return _CURRENT[-1] if _CURRENT else _NULL_STREAM


_NULL_STREAM = Stream()


class Generator:
    """``cupy.random.Generator``: the methods generated modules call, on NumPy's PCG64."""

    def __init__(self, seed):
        self._rng = np.random.default_rng(seed)

    def random(self, size=None, dtype=np.float64, out=None):
        _no_capture("Generator.random")
        if out is not None and tuple(size) != out.shape:
            raise ValueError("size must match out.shape when used together")
        values = self._rng.random(size, dtype=dtype)
        if out is not None:
            out[...] = values
            return out
        return _device(values)

    def standard_normal(self, size=None, dtype=np.float64, out=None):
        _no_capture("Generator.standard_normal")
        values = self._rng.standard_normal(size, dtype=dtype)
        if out is not None:
            out[...] = values
            return out
        return _device(values)

    def uniform(self, low=0.0, high=1.0, size=None, dtype=np.float64):
        _no_capture("Generator.uniform")
        return _device(self._rng.uniform(low, high, size).astype(dtype))

    def binomial(self, n, p, size=None):
        _no_capture("Generator.binomial")
        return _device(self._rng.binomial(n, np.asarray(p), size))

    def integers(self, low, high=None, size=None, dtype=np.int64):
        return _device(self._rng.integers(low, high, size, dtype=dtype))


random = types.SimpleNamespace(default_rng=Generator, Generator=Generator)
cuda = types.SimpleNamespace(Stream=Stream, get_current_stream=get_current_stream, Graph=Graph)


@contextlib.contextmanager
def installed():
    """This module as ``cupy`` while the block runs."""
    previous = sys.modules.get("cupy")
    sys.modules["cupy"] = sys.modules[__name__]
    try:
        yield sys.modules[__name__]
    finally:
        if previous is None:
            sys.modules.pop("cupy", None)
        else:
            sys.modules["cupy"] = previous
