"""Run generated CUDA kernels on the CPU: the same kernel text, compiled by g++.

A small header gives the CUDA names the kernels use a CPU meaning: ``__global__`` and
``__device__`` vanish, ``threadIdx`` and ``blockIdx`` are thread-local, ``__shared__`` arrays
are static (one copy, used by one block at a time), ``__syncthreads()`` is a ``std::barrier``
over the block's threads, which run as ``std::thread``s. A launch runs the grid block by block,
all threads of a block at once, so every barrier is a real one: a thread that reads shared
memory before the others wrote it would read stale data here too.

What this checks: the kernels' arithmetic and indexing (slices, broadcasting, the split of the
reduction across warps, rows per block, the phases of a step and their scratch arrays) against
NumPy, from the exact text NVRTC compiles. What it does not check: the GPU memory model (a
missing ``__syncthreads()`` between a write and a read by another thread may go unnoticed when
the threads happen to run in order), rounding of fused multiply-adds or of CUDA's own math
functions (``expf`` here is glibc's), occupancy, and speed.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass

import numpy as np

from scanopt.lowering.cuda.kernels import Kernel, ctype

HEADER = r"""// CUDA's names, on the CPU (scanopt/lowering/cuda/emulate.py).
#include <barrier>
#include <cmath>
#include <cstring>
#include <math.h>
#include <thread>
#include <vector>

struct so_dim3 { unsigned x = 0, y = 0, z = 0; };
thread_local so_dim3 threadIdx, blockIdx;
static so_dim3 blockDim, gridDim;
static std::barrier<>* so_block_barrier = nullptr;

static inline void __syncthreads() { so_block_barrier->arrive_and_wait(); }
static inline double __longlong_as_double(long long v) {
    double d;
    std::memcpy(&d, &v, sizeof d);
    return d;
}
#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static
"""

_PARAM_TYPES = {
    "float": ctypes.c_float, "double": ctypes.c_double, "bool": ctypes.c_bool,
    "signed char": ctypes.c_byte, "short": ctypes.c_short, "int": ctypes.c_int,
    "long long": ctypes.c_longlong, "unsigned char": ctypes.c_ubyte,
    "unsigned short": ctypes.c_ushort, "unsigned int": ctypes.c_uint,
    "unsigned long long": ctypes.c_ulonglong,
}


def available() -> str | None:
    """None when g++ (C++20, for std::barrier) is here, else why not."""
    if shutil.which("g++") is None:
        return "g++ is not installed (the CPU emulation compiles the kernels with it)"
    return None


def _launcher(kernel: Kernel) -> str:
    params = ", ".join(f"{p.ctype.replace('__restrict__', '').strip()} {p.name}"
                       for p in kernel.params)
    args = ", ".join(p.name for p in kernel.params)
    return f"""
extern "C" void so_launch_{kernel.name}(unsigned gx, unsigned gy, unsigned bx, unsigned by{
    ", " if params else ""}{params}) {{
    gridDim = {{gx, gy, 1}};
    blockDim = {{bx, by, 1}};
    for (unsigned y = 0; y < gy; ++y) {{
        for (unsigned x = 0; x < gx; ++x) {{
            std::barrier<> barrier(bx * by);
            so_block_barrier = &barrier;
            std::vector<std::thread> threads;
            for (unsigned ty = 0; ty < by; ++ty) {{
                for (unsigned tx = 0; tx < bx; ++tx) {{
                    threads.emplace_back([=] {{
                        blockIdx = {{x, y, 0}};
                        threadIdx = {{tx, ty, 0}};
                        {kernel.name}({args});
                    }});
                }}
            }}
            for (auto& t : threads) t.join();
        }}
    }}
}}
"""


@dataclass
class Library:
    """Kernels compiled for the CPU; ``launch`` runs one over a grid."""

    handle: ctypes.CDLL
    kernels: dict[str, Kernel]

    def launch(self, name: str, grid, block, args) -> None:
        kernel = self.kernels[name]
        grid = tuple(grid) + (1,) * (2 - len(tuple(grid)))
        block = tuple(block) + (1,) * (2 - len(tuple(block)))
        if len(args) != len(kernel.params):
            raise TypeError(f"{name} takes {len(kernel.params)} arguments, got {len(args)}")
        c_args = []
        for param, arg in zip(kernel.params, args):
            if param.ctype.endswith(("*", "__restrict__")):
                if not isinstance(arg, np.ndarray) or not arg.flags.c_contiguous:
                    raise TypeError(f"{name}: {param.name} needs a C-contiguous array")
                expected = param.ctype.replace("const ", "").replace("__restrict__", "") \
                    .replace("*", "").strip()
                if ctype(arg.dtype) != expected:
                    raise TypeError(f"{name}: {param.name} is {expected}*, got {arg.dtype}")
                c_args.append(ctypes.c_void_p(arg.ctypes.data))
            else:
                c_args.append(_PARAM_TYPES[param.ctype](arg.item() if hasattr(arg, "item")
                                                        else arg))
        function = getattr(self.handle, f"so_launch_{name}")
        function(ctypes.c_uint(grid[0]), ctypes.c_uint(grid[1]), ctypes.c_uint(block[0]),
                 ctypes.c_uint(block[1]), *c_args)


_LOADED: dict[str, Library] = {}


def build(source: str, kernels: list[Kernel], directory: str | None = None) -> Library:
    """Compile ``source`` (the CUDA text of ``kernels``) with g++ into a shared library."""
    text = HEADER + "\n" + source + "\n" + "".join(_launcher(k) for k in kernels)
    digest = hashlib.sha256(text.encode()).hexdigest()[:20]
    if digest in _LOADED:
        return _LOADED[digest]
    directory = directory or os.path.join(tempfile.gettempdir(),
                                          f"scanopt-emulate-{os.getuid()}")
    os.makedirs(directory, mode=0o700, exist_ok=True)
    library = os.path.join(directory, f"kernels_{digest}.so")
    if not os.path.exists(library):
        cpp = os.path.join(directory, f"kernels_{digest}.cpp")
        with open(cpp, "w", encoding="utf-8") as f:
            f.write(text)
        tmp = f"{library}.{os.getpid()}.tmp"
        result = subprocess.run(
            ["g++", "-std=c++20", "-O1", "-shared", "-fPIC", "-pthread", "-w", "-o", tmp, cpp],
            capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"g++ could not compile the emulated kernels:\n{result.stderr}")
        os.replace(tmp, library)
    loaded = Library(ctypes.CDLL(library), {k.name: k for k in kernels})
    _LOADED[digest] = loaded
    return loaded
