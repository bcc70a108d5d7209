"""Step kernels: a ``fused.region`` → CUDA C for ``cupy.RawKernel``, and how to launch it.

One thread computes one element of the region's results at a time (a *job*: the elements of
the results of one shape). Every value of the region is evaluated *at an index*: an
elementwise op at the index of its result, a slice or transpose maps the index onto its operand,
broadcasting fixes size-1 dimensions to 0. A matmul on the carry (``h @ U_all``) evaluated at
column ``c`` is a dot product over ``k`` of the carry's row (staged in shared memory, once per
block) with column ``c`` of the weights; the LSTM's ``i, f, o, g`` at unit ``j`` read columns
``j, H + j, 2H + j, 3H + j`` of one ``h @ U_all``, so one thread computes those four dot
products and the whole gate tail.

The reduction over ``k`` is split across the warps of a block (*split-K*: a block is 32 columns
× ``KS`` warps; the split is chosen from the shapes, small outputs getting more warps), the
partial sums are added in shared memory, and a block handles ``TR`` batch rows at once so that
the weights it reads serve all of them (several rows per block for large batches).

A region whose matmuls depend on each other (GRU's ``(r * h) @ U_h`` after ``h @ U_zr``; the
Gibbs chain's ``h @ W.T`` after ``v @ W``) has *phases*: the earlier matmuls are written to a
scratch array, and the next phase stages its carry from there. In *block* mode one kernel runs
all phases for its rows, with ``__syncthreads()`` between them (one kernel per step); in *split*
mode each phase is its own kernel over the whole grid (when the batch is too small to fill the
GPU with blocks of rows while the weights are large: one block alone would read them all).

When a shape is outside what the generator handles (a carry row too long for shared memory, a
matmul read at a transposed index), the region falls back to ``cp.matmul`` for its matmuls and
one generated elementwise kernel per matmul level (``plan_region(..., in_kernel=False)``).

Kernel text is readable: the user's names, one comment per source line, shapes as constants.
"""

from __future__ import annotations

import linecache
import math
import os
import re
from dataclasses import dataclass, field

import numpy as np
from xdsl.dialects import arith
from xdsl.dialects.builtin import FileLineColLoc, TensorType
from xdsl.ir import BlockArgument, Operation, SSAValue

from scanopt.dialects import fused, scan
from scanopt.dialects.types import aval_of

WARP = 32
SHARED_BYTES = 40 * 1024  # static shared memory a kernel may use (48 KiB is the limit)
# Multi-phase regions run in one kernel per step when they have this many blocks of rows, or
# when their weights are this small (one block may read them all each step).
MIN_ROW_BLOCKS = 8
SMALL_WEIGHTS_BYTES = 256 * 1024


class KernelUnsupported(Exception):
    """The region is outside what the in-kernel generator handles (the reason is the message)."""


# ---------------------------------------------------------------------------------------------
# Types


_CTYPES = {"float32": "float", "float64": "double", "bool": "bool", "int8": "signed char",
           "int16": "short", "int32": "int", "int64": "long long", "uint8": "unsigned char",
           "uint16": "unsigned short", "uint32": "unsigned int", "uint64": "unsigned long long"}


def ctype(dtype: np.dtype) -> str:
    try:
        return _CTYPES[np.dtype(dtype).name]
    except KeyError:
        raise KernelUnsupported(f"no CUDA type for {np.dtype(dtype).name}") from None


def dtype_of(value: SSAValue) -> np.dtype:
    return aval_of(value.type).dtype


def shape_of(value: SSAValue) -> tuple[int, ...]:
    return tuple(aval_of(value.type).shape)


def _space(shape: tuple[int, ...]) -> tuple[int, int]:
    """(rows, columns) of the job that computes a value of ``shape`` (rank 2 at most)."""
    if len(shape) == 2:
        return shape[0], shape[1]
    if len(shape) == 1:
        return 1, shape[0]
    return 1, 1


# ---------------------------------------------------------------------------------------------
# Indices: one affine expression of one loop variable per dimension


@dataclass(frozen=True)
class Affine:
    var: str | None  # a C variable (``row``, ``col``, ``k``), or None for a constant
    scale: int = 1
    offset: int = 0

    def c(self) -> str:
        if self.var is None or self.scale == 0:
            return str(self.offset)
        term = self.var if self.scale == 1 else f"{self.scale} * {self.var}"
        if self.offset == 0:
            return term
        sign = "+" if self.offset > 0 else "-"
        return f"{term} {sign} {abs(self.offset)}"

    def then(self, scale: int, offset: int) -> Affine:
        """``offset + scale * self``."""
        if self.var is None:
            return Affine(None, 0, offset + scale * self.offset)
        return Affine(self.var, self.scale * scale, self.offset * scale + offset)


def _const(v: int) -> Affine:
    return Affine(None, 0, v)


def _flat(index: tuple[Affine, ...], shape: tuple[int, ...]) -> str:
    """The C-order offset of ``index`` in an array of ``shape``."""
    if not shape:
        return "0"
    terms = []
    stride = 1
    for idx, size in reversed(list(zip(index, shape))):
        if not (idx.var is None and idx.offset == 0):
            text = idx.c()
            terms.append(text if stride == 1 else f"({text}) * {stride}")
        stride *= size
    return " + ".join(reversed(terms)) if terms else "0"


def _broadcast(index: tuple[Affine, ...], shape: tuple[int, ...],
               operand_shape: tuple[int, ...]) -> tuple[Affine, ...]:
    """The index of an operand broadcast (NumPy rules) to ``shape`` at ``index``."""
    out = []
    for k, size in enumerate(operand_shape):
        j = len(shape) - len(operand_shape) + k
        out.append(_const(0) if size == 1 and shape[j] != 1 else index[j])
    return tuple(out)


def _index_map(op: scan.IndexOp, index: tuple[Affine, ...]) -> tuple[Affine, ...]:
    """The operand index read by ``op`` (a static basic index) at result ``index``."""
    spec = [s.data for s in op.spec.data]
    in_shape = shape_of(op.operand)
    n_consuming = sum(1 for s in spec if s not in ("...", "None"))
    out: list[Affine] = []
    pos = 0  # position in the result index
    dim = 0  # position in the operand's dimensions
    for entry in spec:
        if entry == "...":
            for _ in range(len(in_shape) - n_consuming):
                out.append(index[pos])
                pos += 1
                dim += 1
        elif entry == "None":
            pos += 1
        elif ":" in entry:
            parts = [int(p) if p else None for p in entry.split(":")]
            start, _stop, step = slice(*parts).indices(in_shape[dim])
            out.append(index[pos].then(step, start))
            pos += 1
            dim += 1
        else:
            k = int(entry)
            out.append(_const(k + in_shape[dim] if k < 0 else k))
            dim += 1
    while dim < len(in_shape):  # trailing dimensions not named by the spec
        out.append(index[pos])
        pos += 1
        dim += 1
    return tuple(out)


# ---------------------------------------------------------------------------------------------
# Elementwise ops in C

_FLOAT_FUNCS = {"exp": "exp", "log": "log", "tanh": "tanh", "sin": "sin", "cos": "cos",
                "sqrt": "sqrt", "sinh": "sinh", "cosh": "cosh", "tan": "tan",
                "arcsin": "asin", "arccos": "acos", "arctan": "atan", "arcsinh": "asinh",
                "arccosh": "acosh", "arctanh": "atanh", "exp2": "exp2", "expm1": "expm1",
                "log2": "log2", "log10": "log10", "log1p": "log1p", "floor": "floor",
                "ceil": "ceil", "trunc": "trunc", "rint": "rint"}
_FLOAT_BINARY = {"arctan2": "atan2", "hypot": "hypot", "fmax": "fmax", "fmin": "fmin"}
_C_OPERATORS = {"add": "+", "subtract": "-", "multiply": "*", "true_divide": "/"}
_COMPARES = {"equal": "==", "not_equal": "!=", "less": "<", "less_equal": "<=",
             "greater": ">", "greater_equal": ">="}
_HELPERS = {"floor_divide": "so_floor_divide", "remainder": "so_remainder",
            "power": "so_power", "maximum": "so_maximum", "minimum": "so_minimum",
            "logaddexp": "so_logaddexp", "sign": "so_sign", "absolute": "so_absolute"}

# Helpers for NumPy's semantics where C's differ (NaN propagation, Python's floor division and
# modulo, integer powers). Written once at the top of the kernel text.
PRELUDE = r"""// NumPy's semantics where C's differ (NaN propagation, floor division, modulo).
template <typename T> __device__ __forceinline__ T so_maximum(T a, T b) {
    return (a != a) ? a : (b != b) ? b : (a > b ? a : b);
}
template <typename T> __device__ __forceinline__ T so_minimum(T a, T b) {
    return (a != a) ? a : (b != b) ? b : (a < b ? a : b);
}
template <typename T> __device__ __forceinline__ T so_absolute(T a) {
    return a < T(0) ? -a : (a == T(0) ? T(0) : a);
}
template <typename T> __device__ __forceinline__ T so_sign(T a) {
    return (a != a) ? a : T((a > T(0)) - (a < T(0)));
}
__device__ __forceinline__ float so_floor_divide(float a, float b) {
    return floorf(a / b);
}
__device__ __forceinline__ double so_floor_divide(double a, double b) {
    return floor(a / b);
}
template <typename T> __device__ __forceinline__ T so_floor_divide(T a, T b) {
    if (b == T(0)) return T(0);
    T q = a / b;
    return ((a % b != T(0)) && ((a < T(0)) != (b < T(0)))) ? q - T(1) : q;
}
__device__ __forceinline__ float so_remainder(float a, float b) {
    float m = fmodf(a, b);
    return (m != 0.0f && ((b < 0.0f) != (m < 0.0f))) ? m + b : m;
}
__device__ __forceinline__ double so_remainder(double a, double b) {
    double m = fmod(a, b);
    return (m != 0.0 && ((b < 0.0) != (m < 0.0))) ? m + b : m;
}
template <typename T> __device__ __forceinline__ T so_remainder(T a, T b) {
    if (b == T(0)) return T(0);
    T m = a % b;
    return (m != T(0) && ((b < T(0)) != (m < T(0)))) ? m + b : m;
}
__device__ __forceinline__ float so_power(float a, float b) { return powf(a, b); }
__device__ __forceinline__ double so_power(double a, double b) { return pow(a, b); }
template <typename T> __device__ __forceinline__ T so_power(T a, T b) {
    T result = T(1);
    for (; b > T(0); b = b - T(1)) result = result * a;
    return result;
}
__device__ __forceinline__ float so_logaddexp(float a, float b) {
    if (a == b) return a + 0.693147180559945309f;
    float m = a > b ? a : b;
    return m + log1pf(expf(-fabsf(a - b)));
}
__device__ __forceinline__ double so_logaddexp(double a, double b) {
    if (a == b) return a + 0.693147180559945309;
    double m = a > b ? a : b;
    return m + log1p(exp(-fabs(a - b)));
}
__device__ __forceinline__ double so_inf() { return __longlong_as_double(0x7ff0000000000000LL); }
__device__ __forceinline__ double so_nan() { return __longlong_as_double(0x7ff8000000000000LL); }
"""


def _literal(value, dtype: np.dtype) -> str:
    c = ctype(dtype)
    if dtype == np.bool_:
        return "true" if value else "false"
    if dtype.kind == "f":
        v = float(value)
        if math.isnan(v):
            text = "so_nan()"
        elif math.isinf(v):
            text = "so_inf()" if v > 0 else "(-so_inf())"
        else:
            text = repr(v)
            if "e" not in text and "." not in text:
                text += ".0"
            if dtype == np.float32:
                return f"{text}f" if "so_" not in text else f"(float){text}"
        return text if dtype == np.float64 else f"({c}){text}"
    v = int(value)
    if dtype == np.int64:
        return f"{v}LL" if v >= 0 else f"({v}LL)"
    return f"({c}){v}"


def _cast(expr: str, source: np.dtype, target: np.dtype) -> str:
    if source == target:
        return expr
    if target == np.bool_:
        return f"({expr} != 0)"
    return f"({ctype(target)})({expr})"


def _compute_dtype(op: Operation) -> np.dtype:
    """The dtype NumPy computes ``op`` in: its operands' promoted type (weak scalars do not
    widen), which for comparisons and logical ops differs from the boolean result."""
    return np.result_type(*(aval_of(o.type).dummy() for o in op.operands))


# ---------------------------------------------------------------------------------------------
# Names


_RESERVED = {
    # C++ keywords and what kernels use
    "alignas", "alignof", "and", "asm", "auto", "bool", "break", "case", "catch", "char",
    "class", "const", "constexpr", "continue", "default", "delete", "do", "double", "else",
    "enum", "explicit", "export", "extern", "false", "float", "for", "friend", "goto", "if",
    "inline", "int", "long", "mutable", "namespace", "new", "noexcept", "not", "nullptr",
    "operator", "or", "private", "protected", "public", "register", "return", "short",
    "signed", "sizeof", "static", "struct", "switch", "template", "this", "throw", "true",
    "try", "typedef", "typeid", "typename", "union", "unsigned", "using", "virtual", "void",
    "volatile", "while", "xor", "min", "max", "abs", "dim3", "threadIdx", "blockIdx",
    "blockDim", "gridDim", "warpSize", "row", "col", "k", "r", "e", "w", "lane", "warp", "tid",
    "tile", "row0", "partial", "NAN", "INFINITY",
}


def _is_reserved(name: str) -> bool:
    return name in _RESERVED or name.startswith(("so_", "__", "lhs_", "dot_", "acc_", "w_")) \
        or name in _FLOAT_FUNCS.values() or name.rstrip("f") in _FLOAT_FUNCS.values() \
        or name in _FLOAT_BINARY.values() or name.endswith("_t") and name[:-2] in ("size", "int")


class _CNames:
    """Unique C identifiers, preferring the user's names (ASCII identifiers only)."""

    def __init__(self) -> None:
        self.taken: set[str] = set()

    def fresh(self, hint: str | None, default: str = "v", *, ours: str = "") -> str:
        """A new name from the user's ``hint`` (``ours``: a prefix of our own before it)."""
        base = hint if hint and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", hint) else default
        if _is_reserved(base):
            base = f"{base}_v"
        base = ours + base
        candidate, n = base, 1
        while candidate in self.taken:
            candidate, n = f"{base}_{n}", n + 1
        self.taken.add(candidate)
        return candidate


def comment_text(text: str) -> str:
    """Text safe in a ``//`` comment inside a Python triple-quoted raw string: one line, no
    backslash (it could splice the next line into the comment), no triple quote."""
    text = " ".join(text.split())
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text.replace("\\", "\u2216").replace("'''", "'' '").replace('"""', '"" "')


def _origin(op: Operation) -> str | None:
    loc = op.attributes.get("loc")
    if not isinstance(loc, FileLineColLoc):
        return None
    filename, line = loc.filename.data, loc.line.data
    text = linecache.getline(filename, line).strip()
    return comment_text(f"{os.path.basename(filename)}:{line}: {text}")


# ---------------------------------------------------------------------------------------------
# The region's structure


def _levels(region: fused.RegionOp, in_kernel: bool) -> dict[SSAValue, int]:
    """Phase of each value: 0 for inputs; a matmul computed in the kernel is one more than its
    left operand; anything else the maximum of its operands."""
    level: dict[SSAValue, int] = {arg: 0 for arg in region.block.args}
    for op in region.block.ops:
        if isinstance(op, fused.YieldOp):
            continue
        base = max((level.get(o, 0) for o in op.operands), default=0)
        if isinstance(op, scan.MatmulOp) and in_kernel:
            base = level.get(op.lhs, 0) + 1
        for r in op.results:
            level[r] = base
    return level


@dataclass
class Param:
    """One kernel parameter."""

    name: str
    ctype: str  # "const float*", "float*", "double", ...
    kind: str  # "input" | "output" | "scratch" | "matmul"
    index: int  # region input / result number, or scratch / external matmul number


@dataclass
class Kernel:
    name: str
    params: list[Param]
    grid: tuple[int, int]
    block: tuple[int, int]
    body: list[str]

    def text(self) -> str:
        params = ",\n".join(f"    {p.ctype} {p.name}" for p in self.params)
        return f'extern "C" __global__ void {self.name}(\n{params})\n{{\n' + \
            "\n".join(self.body) + "\n}\n"


@dataclass
class Scratch:
    """A per-step array the kernels write and read back (a matmul of an earlier phase, or a
    matmul's left operand in the fallback)."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype


@dataclass
class Launch:
    kernel: Kernel


@dataclass
class ExternalMatmul:
    """``cp.matmul(lhs, rhs, out=...)`` (cuBLAS), in the fallback: lhs is a region input or a
    scratch array, rhs a region input, the result goes to scratch ``out``."""

    lhs: tuple[str, int]  # ("input", k) | ("scratch", k)
    rhs: int  # region input number
    out: int  # scratch number
    text: str  # the user's expression, for a comment


@dataclass
class RegionPlan:
    """What runs for one region each step, in order."""

    steps: list[Launch | ExternalMatmul]
    scratch: list[Scratch]
    mode: str  # "tiles" | "block" | "split" | "elementwise" | "fallback"
    kernels: list[Kernel] = field(default_factory=list)
    reason: str = ""  # why the fallback was taken

    @property
    def graph_capturable(self) -> bool:
        return all(isinstance(s, Launch) for s in self.steps)


# ---------------------------------------------------------------------------------------------
# Evaluating values at an index, in one C scope


@dataclass
class _Dot:
    """A dot product computed in the kernel: ``lhs`` row (staged) · column ``col`` of ``rhs``."""

    matmul: scan.MatmulOp
    col: Affine
    name: str


class _Scope:
    """C statements computing values at indices (memoised), for one job or one staging loop."""

    def __init__(self, gen: "_Generator", indent: str, dot_level: int | None = None):
        self.gen = gen
        self.indent = indent
        self.lines: list[str] = []
        self.memo: dict[tuple, str] = {}
        # The matmuls of this phase are dot products computed here; earlier ones are read from
        # scratch. None: no dot products here (staging, elementwise kernels).
        self.dot_level = dot_level
        self.dots: dict[tuple, _Dot] = {}  # (matmul, column) → _Dot, filled while evaluating
        self.last_origin: str | None = None

    def emit(self, line: str) -> None:
        self.lines.append(self.indent + line)

    def origin(self, op: Operation) -> None:
        text = _origin(op)
        if text is not None and text != self.last_origin:
            self.last_origin = text
            self.emit(f"// {text}")

    def value(self, v: SSAValue, index: tuple[Affine, ...], hint: str | None = None) -> str:
        """A C expression of ``v``'s dtype for its element at ``index``; a temporary it makes
        is named ``hint`` (a slice's name: ``i`` for a column of ``i_f_o``) or ``v``'s name."""
        key = (v, index)
        if key in self.memo:
            return self.memo[key]
        expr = self._compute(v, index, hint or v.name_hint)
        self.memo[key] = expr
        return expr

    def _compute(self, v: SSAValue, index: tuple[Affine, ...], hint: str | None) -> str:
        gen = self.gen
        if isinstance(v, BlockArgument):
            name = gen.input_names[v.index]
            if not isinstance(v.type, TensorType):
                return name  # a Python scalar, passed by value
            return f"{name}[{_flat(index, shape_of(v))}]"
        op = v.owner
        if isinstance(op, arith.ConstantOp):
            return _literal(op.value.value.data, dtype_of(v))
        if isinstance(op, scan.IndexOp):
            return self.value(op.operand, _index_map(op, index), hint)
        if isinstance(op, scan.TransposeOp):
            perm = list(op.perm.get_values())
            inner = [None] * len(perm)
            for k, p in enumerate(perm):
                inner[p] = index[k]
            return self.value(op.operand, tuple(inner), hint)
        if isinstance(op, scan.MatmulOp):
            return self._matmul(op, index)
        return self._elementwise(op, index, hint)

    def _matmul(self, op: scan.MatmulOp, index: tuple[Affine, ...]) -> str:
        gen = self.gen
        col = index[-1]
        if self.dot_level is None or gen.level[op.result] != self.dot_level:
            # computed by an earlier phase, or by cuBLAS
            number = gen.scratch_of[op]
            return f"{gen.scratch_names[number]}[{_flat(index, shape_of(op.result))}]"
        if len(index) == 2 and index[0] != Affine("row"):
            raise KernelUnsupported(
                f"`{_origin(op) or op.name}` is read at another row than the one computed")
        if col.var not in ("col", None):
            raise KernelUnsupported(
                f"`{_origin(op) or op.name}` is read at a column that depends on the row")
        key = (op, col)
        if key not in self.dots:
            self.dots[key] = _Dot(op, col, f"dot_{len(self.dots)}")
        return self.dots[key].name

    def _elementwise(self, op: Operation, index: tuple[Affine, ...], hint: str | None) -> str:
        result = op.results[0]
        rtype = dtype_of(result)
        shape = shape_of(result)
        compute = _compute_dtype(op) if isinstance(
            op, scan.BinaryOp | scan.UnaryOp) else rtype
        if isinstance(op, scan.BinaryOp | scan.UnaryOp) and op.NUMPY_NAME in (
                *_COMPARES, "logical_and", "logical_or", "logical_xor", "logical_not"):
            pass  # computed in the operands' promoted type, boolean result
        elif not isinstance(op, scan.CastOp | scan.WhereOp):
            compute = rtype
        operands = []
        for o in op.operands:
            if isinstance(o.owner, arith.ConstantOp) and not isinstance(op, scan.CastOp):
                target = np.dtype(bool) if isinstance(op, scan.WhereOp) and o is op.cond \
                    else compute
                operands.append(_literal(o.owner.value.value.data, target))
                continue
            o_index = _broadcast(index, shape, shape_of(o)) if isinstance(
                o.type, TensorType) else ()
            expr = self.value(o, o_index)
            if isinstance(op, scan.WhereOp) and o is op.cond:
                operands.append(_cast(expr, dtype_of(o), np.dtype(bool)))
            elif isinstance(op, scan.CastOp):
                operands.append(expr)
            else:
                operands.append(_cast(expr, dtype_of(o), compute))
        text = self._c_expression(op, operands, compute, rtype)
        self.origin(op)
        name = self.gen.names.fresh(hint)
        self.emit(f"const {ctype(rtype)} {name} = {text};")
        return name

    def _c_expression(self, op: Operation, a: list[str], compute: np.dtype,
                      rtype: np.dtype) -> str:
        if isinstance(op, scan.CastOp):
            return _cast(a[0], dtype_of(op.operand), rtype)
        if isinstance(op, scan.WhereOp):
            return f"{a[0]} ? {a[1]} : {a[2]}"
        if isinstance(op, scan.ClipOp):
            return f"so_minimum(so_maximum({a[0]}, {a[1]}), {a[2]})"
        name = op.NUMPY_NAME
        is_float = compute.kind == "f"
        suffix = "f" if compute == np.float32 else ""
        if name in _COMPARES:
            return f"{a[0]} {_COMPARES[name]} {a[1]}"
        if name.startswith("logical_"):
            truth = [_cast(x, compute, np.dtype(bool)) for x in a]
            if name == "logical_not":
                return f"!{truth[0]}"
            operator = {"logical_and": "&&", "logical_or": "||", "logical_xor": "!="}[name]
            return f"{truth[0]} {operator} {truth[1]}"
        if compute == np.bool_ and name in ("add", "multiply"):
            return f"{a[0]} {'||' if name == 'add' else '&&'} {a[1]}"
        if name in _C_OPERATORS:
            if compute == np.bool_:
                raise KernelUnsupported(f"{name} of booleans")
            return f"{a[0]} {_C_OPERATORS[name]} {a[1]}"
        if name == "negative":
            return f"-{a[0]}"
        if name == "square":
            return f"{a[0]} * {a[0]}"
        if name == "reciprocal":
            if not is_float:
                raise KernelUnsupported("reciprocal of integers")
            return f"{_literal(1, compute)} / {a[0]}"
        if name in _HELPERS:
            return f"{_HELPERS[name]}({', '.join(a)})"
        if name in _FLOAT_FUNCS:
            if not is_float:
                raise KernelUnsupported(f"{name} of integers")
            return f"{_FLOAT_FUNCS[name]}{suffix}({a[0]})"
        if name in _FLOAT_BINARY:
            if not is_float:
                raise KernelUnsupported(f"{name} of integers")
            return f"{_FLOAT_BINARY[name]}{suffix}({a[0]}, {a[1]})"
        raise KernelUnsupported(f"no CUDA lowering for {op.name}")


# ---------------------------------------------------------------------------------------------
# Jobs and kernels


@dataclass
class _Job:
    """Compute ``outputs`` (values of one shape) at every element: (value, destination)."""

    shape: tuple[int, ...]
    outputs: list[tuple[SSAValue, str]]  # destination: a parameter name
    level: int = 0  # the phase whose matmuls it computes as dot products

    @property
    def rows(self) -> int:
        return _space(self.shape)[0]

    @property
    def cols(self) -> int:
        return _space(self.shape)[1]


class _Generator:
    def __init__(self, region: fused.RegionOp, name: str, in_kernel: bool):
        self.region = region
        self.base = name
        self.in_kernel = in_kernel
        self.names = _CNames()
        self.input_names = [self.names.fresh(arg.name_hint, f"in{k}")
                            for k, arg in enumerate(region.block.args)]
        terminator = region.block.last_op
        assert isinstance(terminator, fused.YieldOp)
        self.results = list(terminator.values)
        self.output_names = [self.names.fresh(f"{v.name_hint}_out" if v.name_hint else
                                              f"out{k}") for k, v in enumerate(self.results)]
        self.level = _levels(region, in_kernel)
        self.scratch: list[Scratch] = []
        self.scratch_names: list[str] = []
        self.scratch_of: dict[Operation, int] = {}  # matmul → scratch number (earlier phase)
        self.matmuls = [op for op in region.block.ops if isinstance(op, scan.MatmulOp)]

    # -- planning -----------------------------------------------------------------------------

    def plan(self) -> RegionPlan:
        if not self.in_kernel:
            return self._fallback()
        depth = max((self.level[m.result] for m in self.matmuls), default=0)
        phases: list[list[_Job]] = []
        for p in range(1, depth):  # earlier matmuls go to scratch
            jobs = []
            for m in self.matmuls:
                if self.level[m.result] == p:
                    jobs.append(_Job(shape_of(m.result), [(m.result, self._scratch_for(m))], p))
            phases.append(jobs)
        phases.append(self._result_jobs(depth))
        rows = {job.rows for jobs in phases for job in jobs}
        if depth <= 1:
            if len(rows) > 1:
                return self._split(phases)
            return RegionPlan(*self._one_kernel(phases, block_mode=False),
                              mode="tiles" if depth else "elementwise")
        tr, _ = self._tiling(phases)
        n_row_blocks = -(-max(rows) // tr)
        weights = sum(int(np.prod(shape_of(m.rhs))) * dtype_of(m.rhs).itemsize
                      for m in self.matmuls)
        if len(rows) == 1 and (n_row_blocks >= MIN_ROW_BLOCKS or weights <= SMALL_WEIGHTS_BYTES):
            return RegionPlan(*self._one_kernel(phases, block_mode=True), mode="block")
        return self._split(phases)

    def _split(self, phases: list[list[_Job]]) -> RegionPlan:
        steps, kernels = [], []
        for jobs in phases:
            for job in jobs:
                plan_steps, plan_scratch = self._one_kernel([[job]], block_mode=False,
                                                            suffix=f"_{len(kernels)}")
                steps.extend(plan_steps)
                kernels.extend(s.kernel for s in plan_steps)
        return RegionPlan(steps, self.scratch, mode="split")

    def _scratch_for(self, matmul: scan.MatmulOp) -> str:
        number = len(self.scratch)
        name = self.names.fresh(f"{matmul.result.name_hint or 'prod'}_scratch")
        self.scratch.append(Scratch(name, shape_of(matmul.result), dtype_of(matmul.result)))
        self.scratch_names.append(name)
        self.scratch_of[matmul] = number
        return name

    def _result_jobs(self, level: int = 0) -> list[_Job]:
        jobs: dict[tuple[int, int], _Job] = {}
        for value, dest in zip(self.results, self.output_names):
            shape = shape_of(value)
            key = _space(shape)
            job = jobs.setdefault(key, _Job(shape, [], level))
            if len(shape) > len(job.shape):
                job.shape = shape
            job.outputs.append((value, dest))
        return list(jobs.values())

    def _fallback(self) -> RegionPlan:
        """Matmuls by cuBLAS; per matmul level, one kernel writes the left operands the next
        matmuls need (when they are not plain inputs), then the results."""
        steps: list[Launch | ExternalMatmul] = []
        depth = max((self._external_level(m) for m in self.matmuls), default=0)
        for p in range(1, depth + 1):
            jobs: dict[tuple, _Job] = {}
            operands: dict[SSAValue, int] = {}
            for m in self.matmuls:
                if self._external_level(m) != p:
                    continue
                if not isinstance(m.lhs, BlockArgument) and m.lhs not in operands:
                    lhs_name = self.names.fresh(f"{m.lhs.name_hint or 'lhs'}_scratch")
                    operands[m.lhs] = len(self.scratch)
                    self.scratch.append(Scratch(lhs_name, shape_of(m.lhs), dtype_of(m.lhs)))
                    self.scratch_names.append(lhs_name)
                    jobs.setdefault(_space(shape_of(m.lhs)), _Job(shape_of(m.lhs), [])) \
                        .outputs.append((m.lhs, lhs_name))
            for job in jobs.values():
                k_steps, _ = self._one_kernel([[job]], block_mode=False,
                                              suffix=f"_{len(steps)}", elementwise=True)
                steps.extend(k_steps)
            for m in self.matmuls:
                if self._external_level(m) != p:
                    continue
                lhs = ("input", m.lhs.index) if isinstance(m.lhs, BlockArgument) else \
                    ("scratch", operands[m.lhs])
                out_name = self._scratch_for(m)
                steps.append(ExternalMatmul(lhs, m.rhs.index, self.scratch_of[m],
                                            _origin(m) or out_name))
        for job in self._result_jobs():
            k_steps, _ = self._one_kernel([[job]], block_mode=False, suffix=f"_{len(steps)}",
                                          elementwise=True)
            steps.extend(k_steps)
        return RegionPlan(steps, self.scratch, mode="fallback")

    def _external_level(self, m: scan.MatmulOp) -> int:
        def level(v: SSAValue) -> int:
            if isinstance(v, BlockArgument) or isinstance(v.owner, arith.ConstantOp):
                return 0
            base = max((level(o) for o in v.owner.operands), default=0)
            return base + 1 if isinstance(v.owner, scan.MatmulOp) else base
        return level(m.lhs) + 1

    # -- tiling -------------------------------------------------------------------------------

    def _tiling(self, phases: list[list[_Job]], n_dots: int = 4) -> tuple[int, int]:
        """Rows per block ``TR`` and warps per block ``KS`` (the split of the reduction)."""
        rows = max(job.rows for jobs in phases for job in jobs)
        k_max = max((shape_of(m.lhs)[-1] for m in self.matmuls), default=0)
        tr = 1
        if rows > 16:  # tile rows so that about 16 blocks of rows remain
            while tr < 8 and -(-rows // (2 * tr)) >= 16:
                tr *= 2
        ks = 1
        while ks < 32 and ks * 2 <= max(1, k_max // 8):
            ks *= 2
        if not self.matmuls:
            ks = 8
        itemsize = max((dtype_of(m.result).itemsize for m in self.matmuls), default=4)
        while ks > 1 and ks * tr * n_dots * WARP * itemsize > SHARED_BYTES // 2:
            ks //= 2
        while tr > 1 and tr * (n_dots * WARP + k_max) * itemsize > SHARED_BYTES // 2:
            tr //= 2
        if tr * k_max * itemsize > SHARED_BYTES // 2:
            raise KernelUnsupported(
                f"a carry row of {k_max} elements does not fit in shared memory")
        return tr, ks

    # -- kernel text --------------------------------------------------------------------------

    def _one_kernel(self, phases: list[list[_Job]], *, block_mode: bool, suffix: str = "",
                    elementwise: bool = False):
        name = self.names.fresh(f"{self.base}{suffix}")
        evaluated = [self._job_code(job, elementwise) for jobs in phases for job in jobs]
        n_dots = max((len(code.dots) for code in evaluated), default=0)
        # Without dot products a block is one warp over 32 elements of one row.
        tr, ks = self._tiling(phases, n_dots) if n_dots or block_mode else (1, 1)
        body: list[str] = []
        rows = max(job.rows for jobs in phases for job in jobs)
        tiles = max(-(-job.cols // WARP) for jobs in phases for job in jobs)
        grid = (1 if block_mode else tiles, -(-rows // tr))
        mode = "block" if block_mode else ("tiles" if n_dots else "elementwise")
        body.append(f"    // {self._describe(mode, tr, ks, grid)}")
        body.append("    const int lane = threadIdx.x, warp = threadIdx.y;")
        body.append(f"    const int tid = warp * {WARP} + lane;")
        body.append(f"    const int row0 = blockIdx.y * {tr};")
        shared = self._shared_arrays(evaluated, tr, ks)
        body.extend(shared)
        k = 0
        for p, jobs in enumerate(phases):
            if block_mode and p > 0:
                body.append("    __syncthreads();  // the scratch rows of the last phase are "
                            "written")
            for job in jobs:
                body.extend(self._job_text(evaluated[k], job, tr, ks))
                k += 1
        params = self._params(phases, evaluated)
        kernel = Kernel(name, params, grid, (WARP, ks), body)
        return [Launch(kernel)], self.scratch

    def _describe(self, mode: str, tr: int, ks: int, grid: tuple[int, int]) -> str:
        what = {"block": "every phase of the step for its rows, phases separated by "
                         "__syncthreads()",
                "tiles": "32 output columns",
                "elementwise": "32 elements per row"}[mode]
        return (f"Grid {grid[0]} x {grid[1]}, block {WARP} x {ks}: a block computes {what}, for "
                f"{tr} row(s); " + (f"the reduction over k is split across its {ks} warps."
                                    if mode != "elementwise" else "no reduction."))

    def _params(self, phases, evaluated) -> list[Param]:
        read = set()
        for code in evaluated:
            read.update(code.inputs)
        params: list[Param] = []
        for k, (arg, name) in enumerate(zip(self.region.block.args, self.input_names)):
            if arg not in read:
                continue
            if isinstance(arg.type, TensorType):
                params.append(Param(name, f"const {ctype(dtype_of(arg))}* __restrict__",
                                    "input", k))
            else:
                params.append(Param(name, ctype(dtype_of(arg)), "input", k))
        written = {dest for jobs in phases for job in jobs for _, dest in job.outputs}
        for k, (value, name) in enumerate(zip(self.results, self.output_names)):
            if name in written:
                params.append(Param(name, f"{ctype(dtype_of(value))}* __restrict__", "output",
                                    k))
        used_scratch = set()
        for code in evaluated:
            used_scratch.update(code.scratch)
        used_scratch.update(n for n in written if n in self.scratch_names)
        for k, (s, name) in enumerate(zip(self.scratch, self.scratch_names)):
            if name in used_scratch:
                # Written and read back within the step: no __restrict__, no read-only cache.
                params.append(Param(name, f"{ctype(s.dtype)}*", "scratch", k))
        return params

    def _shared_arrays(self, evaluated, tr: int, ks: int) -> list[str]:
        lines = []
        staged: dict[str, tuple[str, int]] = {}
        n_dots = 0
        dot_type = "float"
        for code in evaluated:
            for lhs, name in code.staged.items():
                size = tr * shape_of(lhs)[-1]
                c = ctype(dtype_of(lhs))
                if name not in staged or staged[name][1] < size:
                    staged[name] = (c, size)
            n_dots = max(n_dots, len(code.dots))
            for dot in code.dots.values():
                if dtype_of(dot.matmul.result) == np.float64:
                    dot_type = "double"
        for name, (c, size) in staged.items():
            lines.append(f"    __shared__ {c} {name}[{size}];  // the rows this block multiplies")
        if n_dots:
            lines.append(f"    __shared__ {dot_type} partial[{ks}][{tr}][{n_dots}][{WARP}];"
                         "  // one partial sum per warp")
        return lines

    def _job_code(self, job: _Job, elementwise: bool) -> "_JobCode":
        """Evaluate the job's outputs at (row, col) (collecting the dots it needs), then the
        staging of the carry rows those dots read."""
        index = (Affine("row"), Affine("col"))[2 - len(job.shape):] if job.shape else ()
        tail = _Scope(self, " " * 16, dot_level=None if elementwise else job.level)
        writes = []
        for value, dest in job.outputs:
            expr = tail.value(value, self._reindex(index, job.shape, shape_of(value)))
            writes.append(f"{dest}[{_flat(index, job.shape)}] = {expr};")
        dots = tail.dots
        staged: dict[SSAValue, str] = {}
        staging: list[_Scope] = []
        for dot in dots.values():
            lhs = dot.matmul.lhs
            if lhs in staged:
                continue
            staged[lhs] = self.names.fresh(lhs.name_hint, "x", ours="lhs_")
            scope = _Scope(self, " " * 12)
            k_index = (Affine("row"), Affine("k")) if len(shape_of(lhs)) == 2 else (Affine("k"),)
            scope.emit(f"{staged[lhs]}[e] = {scope.value(lhs, k_index)};")
            staging.append(scope)
        code = _JobCode(tail, writes, dots, staged, staging)
        code.inputs = self._reads(code)
        code.scratch = {n for n in self.scratch_names
                        if any(n + "[" in line for line in code.all_lines())}
        return code

    @staticmethod
    def _reindex(index, job_shape, shape):
        return index[len(index) - len(shape):] if shape else ()

    def _reads(self, code: "_JobCode") -> set[BlockArgument]:
        lines = code.all_lines()
        found = set()
        for arg, name in zip(self.region.block.args, self.input_names):
            pattern = re.compile(rf"\b{re.escape(name)}\b")
            if any(pattern.search(line) for line in lines):
                found.add(arg)
        for dot in code.dots.values():
            found.add(dot.matmul.rhs)
        return found

    def _job_text(self, code: "_JobCode", job: _Job, tr: int, ks: int) -> list[str]:
        rows, cols = job.rows, job.cols
        tiles = -(-cols // WARP)
        names = ", ".join(dest for _, dest in job.outputs)
        out = [f"    // Computes {names}: {rows} x {cols} elements."]
        for (lhs, sname), scope in zip(code.staged.items(), code.staging):
            k = shape_of(lhs)[-1]
            out.append(f"    // The rows of `{self._value_label(lhs)}` this block multiplies, "
                       "in shared memory.")
            out.append(f"    for (int e = tid; e < {tr} * {k}; e += {WARP * ks}) {{")
            out.append(f"        const int r = e / {k}, k = e % {k}, row = row0 + r;")
            out.append(f"        if (row < {rows}) {{")
            out.extend(scope.lines)
            out.append("        } else {")
            out.append(f"            {sname}[e] = 0;")
            out.append("        }")
            out.append("    }")
            out.append("    __syncthreads();")
        out.append(f"    for (int tile = blockIdx.x; tile < {tiles}; tile += gridDim.x) {{")
        out.append(f"        const int col = tile * {WARP} + lane;")
        dots = list(code.dots.values())
        if dots:
            out.extend(self._partial_sums(dots, code.staged, tr, ks, cols))
            out.append("        __syncthreads();")
        out.append(f"        for (int r = warp; r < {tr}; r += {ks}) {{")
        out.append("            const int row = row0 + r;")
        out.append(f"            if (row < {rows} && col < {cols}) {{")
        for d, dot in enumerate(dots):
            t = ctype(dtype_of(dot.matmul.result))
            out.append(f"                {t} {dot.name} = 0;  // "
                       f"{comment_text(self._dot_label(dot))}")
            out.append(f"                for (int w = 0; w < {ks}; ++w) "
                       f"{dot.name} += partial[w][r][{d}][lane];")
        out.extend(code.tail.lines)
        out.extend(" " * 16 + line for line in code.writes)
        out.append("            }")
        out.append("        }")
        if dots:
            out.append("        __syncthreads();  // partial is reused by the next tile")
        out.append("    }")
        return out

    def _partial_sums(self, dots: list[_Dot], staged: dict, tr: int, ks: int,
                      cols: int) -> list[str]:
        ks_len = {}
        lines = ["        {"]
        lhs_list = []
        for dot in dots:
            if dot.matmul.lhs not in lhs_list:
                lhs_list.append(dot.matmul.lhs)
        for lhs in lhs_list:
            ks_len[lhs] = shape_of(lhs)[-1]
        acc_type = "double" if any(dtype_of(d.matmul.result) == np.float64 for d in dots) \
            else "float"
        lines.append(f"            {acc_type} acc[{tr}][{len(dots)}] = {{}};")
        lines.append(f"            if (col < {cols}) {{")
        for lhs in lhs_list:
            k = ks_len[lhs]
            chunk = -(-k // ks)
            mine = [(d, dot) for d, dot in enumerate(dots) if dot.matmul.lhs is lhs]
            lines.append(f"                // This warp's share of k for "
                         f"`{self._value_label(lhs)}`.")
            lines.append(f"                const int k_end = warp * {chunk} + {chunk} < {k} ? "
                         f"warp * {chunk} + {chunk} : {k};")
            lines.append(f"                for (int k = warp * {chunk}; k < k_end; ++k) {{")
            for d, dot in mine:
                rhs = dot.matmul.rhs
                n = shape_of(rhs)[1]
                lines.append(f"                    const {acc_type} w_{d} = "
                             f"{self.input_names[rhs.index]}[k * {n} + {dot.col.c()}];")
            lines.append(f"                    for (int r = 0; r < {tr}; ++r) {{")
            lines.append(f"                        const {acc_type} x = "
                         f"{staged[lhs]}[r * {k} + k];")
            for d, _ in mine:
                lines.append(f"                        acc[r][{d}] += x * w_{d};")
            lines.append("                    }")
            lines.append("                }")
        lines.append("            }")
        lines.append(f"            for (int r = 0; r < {tr}; ++r)")
        lines.append(f"                for (int d = 0; d < {len(dots)}; ++d) "
                     "partial[warp][r][d][lane] = acc[r][d];")
        lines.append("        }")
        return lines

    @staticmethod
    def _value_label(value: SSAValue) -> str:
        return comment_text(value.name_hint or (value.owner.name if isinstance(
            value.owner, Operation) else "input"))

    def _dot_label(self, dot: _Dot) -> str:
        lhs = self._value_label(dot.matmul.lhs)
        rhs = self._value_label(dot.matmul.rhs)
        return f"({lhs} @ {rhs})[row, {dot.col.c()}]"


@dataclass
class _JobCode:
    tail: _Scope
    writes: list[str]
    dots: dict
    staged: dict
    staging: list[_Scope]
    inputs: set = field(default_factory=set)
    scratch: set = field(default_factory=set)

    def all_lines(self) -> list[str]:
        return [*self.tail.lines, *self.writes, *(l for s in self.staging for l in s.lines)]


def plan_region(region: fused.RegionOp, name: str, *, in_kernel: bool = True) -> RegionPlan:
    """The kernels (and cuBLAS calls, in the fallback) that compute ``region`` for one step.

    ``name`` is the kernels' base name (an identifier). With ``in_kernel`` the matmuls are
    computed in the kernels; a region the generator cannot take that way falls back to cuBLAS
    matmuls and elementwise kernels, with the reason in ``RegionPlan.reason``.
    """
    try:
        plan = _Generator(region, name, in_kernel).plan()
    except KernelUnsupported as why:
        if not in_kernel:
            raise
        plan = _Generator(region, name, False).plan()
        plan.reason = str(why)
    plan.kernels = [s.kernel for s in plan.steps if isinstance(s, Launch)]
    return plan


def module_text(kernels: list[Kernel], header: str = "") -> str:
    """The CUDA C of a module's kernels: a header comment, the helpers, each kernel."""
    parts = []
    if header:
        parts.extend(f"// {comment_text(line)}" if line else "//" for line in header.split("\n"))
        parts.append("")
    parts.append(PRELUDE)
    parts.extend(k.text() for k in kernels)
    return "\n".join(parts)
