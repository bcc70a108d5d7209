"""Symbolic dimensions (``f32[T,B,128]``) for ahead-of-time builds. Plain Python (no xDSL).

A symbol stands for a size known only when the built module runs. In the IR it is a *sentinel*:
a large prime (``2**20`` and up) that no real size of a step's values comes near, so every pass
handles it as an ordinary static size, and a size such as ``4 * H`` (four gate blocks fused by
``scan-fuse-matmul``) is ``4 * sentinel(H)``. The emitter writes sizes back as expressions of
the symbols (:func:`decode`), read from the arguments' shapes when the module runs.

The frontend cannot ask NumPy about arrays of sentinel size (a dummy result of that size would
be allocated), so it *probes*: it evaluates each operation three times on stand-ins whose
symbolic dimensions take small distinct primes, and reads each result dimension as ``a * S + b``
of one symbol ``S`` (:func:`solve`). A dimension that is not such a function (a product of two
symbols) is refused with a clear error.
"""

from __future__ import annotations

import contextlib
import contextvars
import keyword
import re
from dataclasses import dataclass

import numpy as np

from scanopt.errors import ScanValueError

_FIRST_SENTINEL = 2**20
# During a probe: sentinel → the small size the stand-ins get instead (signature.AVal.dummy).
PROBE: contextvars.ContextVar[dict[int, int] | None] = contextvars.ContextVar("probe",
                                                                             default=None)
# Three assignments of small distinct primes (one per symbol, in order).
_PROBE_PRIMES = ([7, 11, 13, 17, 19, 23, 29, 31],
                 [37, 41, 43, 47, 53, 59, 61, 67],
                 [71, 73, 79, 83, 89, 97, 101, 103])
MAX_SYMBOLS = len(_PROBE_PRIMES[0])


def _is_prime(n: int) -> bool:
    return n > 1 and all(n % p for p in range(2, int(n ** 0.5) + 1))


# A size in the IR is ``a * sentinel + b`` with 1 <= a <= MAX_MULTIPLE and |b| < MAX_OFFSET;
# sentinels are chosen so that no two such sizes of different symbols are closer than twice
# MAX_OFFSET, which makes every size decode to one symbol.
MAX_MULTIPLE, MAX_OFFSET = 16, 2048


def _far_apart(p: int, chosen: list[int]) -> bool:
    return all(abs(a * p - b * s) > 2 * MAX_OFFSET
               for s in chosen for a in range(1, MAX_MULTIPLE + 1)
               for b in range(1, MAX_MULTIPLE + 1))


def sentinels(names: list[str]) -> dict[str, int]:
    """A sentinel (a large prime, far from the others' multiples) for each symbol, in order."""
    if len(names) > MAX_SYMBOLS:
        raise ScanValueError(f"at most {MAX_SYMBOLS} symbolic dimensions are supported, got "
                             f"{len(names)}: {', '.join(names)}")
    result: dict[str, int] = {}
    candidate = _FIRST_SENTINEL
    for name in names:
        candidate += 1
        while not (_is_prime(candidate) and _far_apart(candidate, list(result.values()))):
            candidate += 1
        result[name] = candidate
    return result


def is_sentinel_size(d) -> bool:
    return isinstance(d, int) and d >= _FIRST_SENTINEL // 2


def probes(symbols: dict[str, int]) -> list[dict[int, int]]:
    """The three probe assignments (sentinel → small prime) for these symbols."""
    return [{s: primes[k] for k, s in enumerate(symbols.values())} for primes in _PROBE_PRIMES]


@contextlib.contextmanager
def probing(assignment: dict[int, int]):
    token = PROBE.set(assignment)
    try:
        yield
    finally:
        PROBE.reset(token)


def probe_size(d):
    """The size a stand-in gets for dimension ``d`` under the current probe."""
    assignment = PROBE.get()
    return assignment.get(d, d) if assignment else d


def solve(sizes: list[int], symbols: dict[str, int],
          assignments: list[dict[int, int]]) -> int | None:
    """The IR size of a result dimension measured as ``sizes`` under ``assignments``: a
    literal, or ``a * sentinel + b`` of the one symbol it varies with; None if it is neither."""
    if len(set(sizes)) == 1:
        return sizes[0]
    for sentinel in symbols.values():
        values = [assignment[sentinel] for assignment in assignments]
        a, rest = divmod(sizes[1] - sizes[0], values[1] - values[0])
        if rest or not 1 <= a <= MAX_MULTIPLE:
            continue
        b = sizes[0] - a * values[0]
        if abs(b) < MAX_OFFSET and all(size == a * v + b for size, v in zip(sizes, values)):
            return a * sentinel + b
    return None


def decode(d: int, symbols: dict[str, int]) -> tuple[int, str | None, int]:
    """``(a, name, b)`` with ``d == a * sentinel(name) + b``, or ``(0, None, d)`` for a literal."""
    if abs(d) < _FIRST_SENTINEL // 2:
        return 0, None, d
    for name, sentinel in symbols.items():
        a, b = divmod(d + MAX_OFFSET, sentinel)
        b -= MAX_OFFSET
        if 1 <= a <= MAX_MULTIPLE and abs(b) < MAX_OFFSET:
            return a, name, b
    raise ValueError(f"the size {d} is no multiple of a symbolic dimension ({symbols})")


# ---------------------------------------------------------------------------------------------
# Type signatures: ``f32[T,B,128]``


_DTYPES = {"f16": np.float16, "f32": np.float32, "f64": np.float64, "i32": np.int32,
           "i64": np.int64, "bool": np.bool_}
_SPEC = re.compile(r"^\s*([a-z0-9]+)\s*(?:\[(.*)\])?\s*$")


@dataclass(frozen=True)
class ArgType:
    """An argument's declared type: a dtype and dims (ints or symbol names), a generator, or
    ``none`` (a per-step output in outputs_info)."""

    kind: str  # "array" | "rng" | "none"
    dtype: np.dtype | None = None
    dims: tuple = ()

    def text(self) -> str:
        if self.kind != "array":
            return self.kind
        name = {np.dtype(v): k for k, v in _DTYPES.items()}[self.dtype]
        return f"{name}[{','.join(str(d) for d in self.dims)}]"


def parse_type(text: str, where: str) -> ArgType:
    """``f32[T,B,128]``, ``i64[]`` (a scalar), ``rng``, ``none``."""
    stripped = text.strip()
    if stripped in ("rng", "generator"):
        return ArgType("rng")
    if stripped in ("none", "None"):
        return ArgType("none")
    match = _SPEC.match(stripped)
    if match is None or match.group(1) not in _DTYPES:
        raise ScanValueError(
            f"{where}: cannot read the type {text!r}",
            hint="Write dtype[dims] with a dtype among " + ", ".join(_DTYPES)
                 + " and dims that are integers or symbols: f32[T,B,128]; `rng` for a "
                   "numpy.random.Generator; `none` for a per-step output in outputs_info.")
    dims = []
    for part in (match.group(2) or "").split(","):
        part = part.strip()
        if not part:
            continue
        if part.isdigit():
            dims.append(int(part))
        elif part.isidentifier() and not keyword.iskeyword(part):
            dims.append(part)
        else:
            raise ScanValueError(f"{where}: the dimension {part!r} of {text!r} is neither an "
                                 "integer nor a symbol name")
    if match.group(2) is None and stripped != match.group(1):
        raise ScanValueError(f"{where}: cannot read the type {text!r}")
    return ArgType("array", np.dtype(_DTYPES[match.group(1)]), tuple(dims))
