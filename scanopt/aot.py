"""Ahead-of-time builds from a type signature: ``scanopt.build`` and ``scanopt build FILE:FN``.

No array is made and none of the user's code runs (the step is read from its source). Each
argument is declared as ``dtype[dims]`` (``f32[T,B,128]``; ``rng`` for a generator; ``none`` in
outputs_info for a per-step output). A dimension is an integer or a symbol; symbols make the
module shape-polymorphic (scanopt/symbolic.py): the same symbol must agree across arguments,
which the module checks when it runs, and its buffers are sized from the actual shapes.

The written module is standalone (NumPy only) and exposes ``run(...)`` with scan()'s argument
order and return value; ``run`` checks dtypes, ranks and sizes first.
"""

from __future__ import annotations

import ast
import keyword
import os
from collections.abc import Mapping
from dataclasses import dataclass


from scanopt.errors import ScanError, ScanValueError
from scanopt.signature import AVal, ParameterValueNeeded, RngVal
from scanopt.symbolic import ArgType, parse_type, sentinels

_RESERVED = ("run", "_array", "_sizes")


@dataclass(frozen=True)
class Argument:
    name: str  # as run() takes it
    role: str  # "sequence" | "initial" | "non-sequence"
    type: ArgType


def build(fn, sequences=None, outputs_info=None, non_sequences=None, n_steps=None,
          go_backwards=False, *, keep="all", exact_random=False, optimize=True,
          backend="numpy", path=None, command="") -> str:
    """Build ``fn``'s compiled loop from argument types alone; returns the module's source
    (and writes it to ``path`` when given).

    Each of ``sequences``, ``outputs_info`` and ``non_sequences`` is a dict ``{name:
    "f32[T,B,128]"}`` (the names become run()'s parameters) or a list of type strings (named
    after the step's parameters). ``n_steps`` may be given when no sequence fixes it (run() then
    takes it too). The other options are scan()'s.
    """
    try:
        source = _build(fn, sequences, outputs_info, non_sequences, n_steps, go_backwards,
                        keep=keep, exact_random=exact_random, optimize=optimize,
                        backend=backend, command=command)
    except ScanError as error:
        raise error.with_traceback(None) from None
    if path is not None:
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(source)
        os.replace(tmp, path)
    return source


def build_stage(fn, stage: str, sequences=None, outputs_info=None, non_sequences=None,
                n_steps=None, go_backwards=False, *, keep="all", exact_random=False,
                optimize=True, backend="numpy", show_ir=False) -> str:
    """One stage of an ahead-of-time build, as ``scanopt build --emit``: ``scan`` (the
    frontend's IR), ``scan-opt`` (after the passes) or ``explain``."""
    from scanopt.compiler import build_ir, explain_loop
    from scanopt.dialects.ir import print_ir
    from scanopt.frontend.builder import build_loop

    arguments = _arguments(fn, sequences, outputs_info, non_sequences)
    _check_backend(backend)
    spec = _spec(arguments, _symbols(arguments), go_backwards, keep, outputs_info is not None)
    if stage == "scan":
        module = build_loop(fn, spec).module
        module.verify()
        return print_ir(module) + "\n"
    if stage == "explain":
        return explain_loop(fn, spec, optimize=optimize, exact_random=exact_random,
                            show_ir=show_ir, backend=backend)
    if stage == "scan-opt":
        return print_ir(build_ir(fn, spec, optimize=optimize, exact_random=exact_random,
                                 backend=backend).module) + "\n"
    if stage == "mlir":
        from scanopt.cli import build_header, emit_mlir

        module = build_ir(fn, spec, optimize=optimize, exact_random=exact_random).module
        header = build_header(fn).split("\n")[0]
        return f"// {header}\n// {_signature_text(arguments, n_steps, keep)}\n".replace(
            "\n    ", "\n//     ") + emit_mlir(module)
    raise ScanValueError(f"no stage {stage!r} for an ahead-of-time build")


def _check_backend(backend: str, symbols: dict | None = None) -> None:
    if backend not in ("numpy", "cupy", "numba"):
        raise ScanValueError(f"ahead-of-time builds for backend {backend!r} are not available",
                             hint="Build with backend='numpy', 'numba' or 'cupy'.")
    if backend == "numba":
        from scanopt.lowering.numba_emitter import require_numba

        require_numba()
    if backend in ("cupy", "numba") and symbols:
        what = "a CuPy module's kernels are" if backend == "cupy" else \
            "a numba module's compiled loops are"
        raise ScanValueError(
            f"{what} built for fixed sizes: give {', '.join(symbols)} integer sizes",
            hint="They are generated for the shapes (a symbol for the sequences' first "
                 "dimension, such as T, is fine); the NumPy backend takes symbolic sizes.")


def _build(fn, sequences, outputs_info, non_sequences, n_steps, go_backwards, *, keep,
           exact_random, optimize, backend, command):
    arguments = _arguments(fn, sequences, outputs_info, non_sequences)
    symbols = _symbols(arguments)
    _check_backend(backend, symbols)
    spec = _spec(arguments, symbols, go_backwards, keep, outputs_info is not None)
    from scanopt.cli import build_header
    from scanopt.compiler import build_ir
    from scanopt.lowering.numpy_emitter import emit_numpy_module

    try:
        built = build_ir(fn, spec, optimize=optimize, exact_random=exact_random,
                         backend=backend)
    except ParameterValueNeeded as needed:
        params = [a.name for a in arguments if a.role == "non-sequence"]
        names = ", ".join(params[k] for k in sorted(needed.indices))
        raise ScanValueError(
            f"the step branches on (or counts with) the value of the non-sequence(s) {names}, "
            "which a module built from types alone cannot know",
            hint="Make it a constant of the step (a default argument or a global), or build "
                 "from arrays with scanopt build SCRIPT.py --call NAME.") from None
    if built.plan.inputs:
        names = ", ".join(f"`{path[-1][1]}`" for path in built.plan.inputs)
        raise ScanValueError(
            f"the step reads {names} from its enclosing scope; a module built ahead of time "
            "cannot take it from there", hint="Pass it as a non-sequence (and declare its type).")
    header = build_header(fn, command) + "\n\n" + _signature_text(arguments, n_steps, keep)
    reserved = (*_RESERVED, *(a.name for a in arguments))

    def run(names):
        return _run_function(arguments, names[0], n_steps, go_backwards, built.n_outputs)

    if backend == "cupy":
        from scanopt.lowering.cupy_emitter import HEADER, emit_cupy_module
        from scanopt.cli import _NUMPY_HEADER

        return emit_cupy_module(built.module, header=header.replace(_NUMPY_HEADER, HEADER),
                                reserved=reserved, extra=run)
    if backend == "numba" and not exact_random:
        from scanopt.cli import _NUMPY_HEADER
        from scanopt.lowering.numba_emitter import HEADER, warn_not_compiled

        not_compiled: list[str] = []
        source = emit_numpy_module(built.module, header=header.replace(_NUMPY_HEADER, HEADER),
                                   buffers=optimize, reserved=reserved, extra=run,
                                   numba=not_compiled, matmul_blocks=True)
        warn_not_compiled(not_compiled, getattr(fn, "__name__", "step"))
        return source
    # NumPy (also backend="numba" with exact_random=True, as scanopt.scan runs it).
    return emit_numpy_module(built.module, header=header, buffers=optimize, reserved=reserved,
                             extra=run, matmul_blocks=not exact_random)


def _arguments(fn, sequences, outputs_info, non_sequences) -> list[Argument]:
    parameters = _parameter_names(fn)
    arguments: list[Argument] = []
    for role, what, given in (("sequence", "sequences", sequences),
                              ("initial", "outputs_info", outputs_info),
                              ("non-sequence", "non_sequences", non_sequences)):
        if given is None:
            continue
        items = list(given.items()) if isinstance(given, Mapping) else [
            (None, spec) for spec in (given if isinstance(given, (list, tuple)) else [given])]
        for k, (name, spec) in enumerate(items):
            where = f"{what}[{k}]" if name is None else f"{what} {name}"
            arg_type = spec if isinstance(spec, ArgType) else parse_type(str(spec), where)
            if name is None:
                index = len(arguments)
                name = parameters[index] if index < len(parameters) else f"{what}_{k}"
                if role == "initial" and arg_type.kind != "none":
                    name = f"{name}_init"
            if not str(name).isidentifier() or keyword.iskeyword(str(name)) or \
                    str(name) in (*_RESERVED, "np", "n_steps") or str(name).startswith("_"):
                raise ScanValueError(f"{where}: {name!r} cannot name an argument of run()",
                                     hint="Use another name (a Python identifier, not np, "
                                          "n_steps, run or one starting with _).")
            if role == "sequence" and (arg_type.kind != "array" or not arg_type.dims):
                raise ScanValueError(f"{where}: a sequence needs an array type with a leading "
                                     "(time) dimension, e.g. f32[T,B,128]")
            if role == "initial" and arg_type.kind == "rng":
                raise ScanValueError(f"{where}: a generator is a non-sequence")
            if role != "initial" and arg_type.kind == "none":
                raise ScanValueError(f"{where}: `none` is only for outputs_info")
            arguments.append(Argument(str(name), role, arg_type))
    names = [a.name for a in arguments if a.type.kind != "none"]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ScanValueError(f"arguments named twice: {', '.join(duplicates)}")
    return arguments


def _parameter_names(fn) -> list[str]:
    code = getattr(fn, "__code__", None)
    if code is None:
        return []
    return list(code.co_varnames[:code.co_argcount])


def _symbols(arguments: list[Argument]) -> dict[str, int]:
    """A sentinel for each symbol used anywhere but as a sequence's length."""
    names: list[str] = []
    for arg in arguments:
        dims = arg.type.dims[1:] if arg.role == "sequence" else arg.type.dims
        for d in dims:
            if isinstance(d, str) and d not in names:
                names.append(d)
    for name in names:
        if name in ("n_steps", "np", *_RESERVED) or name.startswith("_"):
            raise ScanValueError(f"{name!r} cannot be the name of a symbolic dimension")
    return sentinels(names)


def _spec(arguments, symbols, go_backwards, keep, outputs_given):
    from scanopt.api import _normalize_keep
    from scanopt.frontend.builder import StepSpec

    def aval(arg: Argument, drop_leading=False):
        if arg.type.kind == "rng":
            return RngVal()
        if arg.type.kind == "none":
            return None
        dims = [None if drop_leading and k == 0 else
                symbols[d] if isinstance(d, str) else d for k, d in enumerate(arg.type.dims)]
        return AVal(arg.type.dtype, tuple(dims))

    seqs = [aval(a, drop_leading=True) for a in arguments if a.role == "sequence"]
    inits = [aval(a) for a in arguments if a.role == "initial"]
    params = [aval(a) for a in arguments if a.role == "non-sequence"]
    return StepSpec(seqs, inits, params, reverse=bool(go_backwards),
                    outputs_given=outputs_given, keep=_normalize_keep(keep),
                    symbols=tuple(symbols.items()))


def _signature_text(arguments, n_steps, keep) -> str:
    lines = ["Built ahead of time for:"]
    for role in ("sequence", "initial", "non-sequence"):
        for arg in arguments:
            if arg.role == role:
                label = {"sequence": "sequence", "initial": "outputs_info",
                         "non-sequence": "non-sequence"}[role]
                lines.append(f"    {arg.name}: {arg.type.text()}  ({label})")
    if n_steps is not None:
        lines.append(f"    n_steps: {n_steps}")
    if keep != "all":
        lines.append(f"    keep: {keep}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# run(): the entry point, with its checks


def _run_function(arguments, loop_name, n_steps, go_backwards, n_outputs):
    """``_array`` and ``_sizes`` (the checks) and ``run`` (the entry point), as Python ast."""
    passed = [a for a in arguments if a.type.kind != "none"]
    sequences = [a for a in passed if a.role == "sequence"]
    lines = []
    params = ", ".join([a.name for a in passed] + [
        "n_steps=None" if n_steps is None else f"n_steps={int(n_steps)}"])
    doc = ("Run the loop. Arguments in scan()'s order: " +
           ", ".join(f"{a.name} ({a.type.text()})" for a in passed) +
           ". Returns what scanopt.scan returns for them.")
    lines.append(f"def run({params}):")
    lines.append(f"    {doc!r}")
    for a in passed:
        if a.type.kind == "rng":
            lines.append(f"    if not isinstance({a.name}, np.random.Generator):")
            lines.append(f"        raise TypeError({a.name + ' must be a numpy.random.Generator, got '!r}"
                         f" + type({a.name}).__name__)")
            continue
        lines.append(f"    {a.name} = _array({a.name}, {a.name!r}, np.{a.type.dtype.name}, "
                     f"{len(a.type.dims)})")
    # Sizes: every symbol takes the size where it first appears; everything else must agree.
    seen: dict[str, str] = {}
    for a in passed:
        for k, d in enumerate(a.type.dims):
            where = f"{a.name}.shape[{k}]"
            if isinstance(d, int):
                lines.append(f"    _sizes({where}, {d}, {a.name!r}, {k}, {str(d)!r})")
            elif d in seen:
                lines.append(f"    _sizes({where}, {seen[d]}, {a.name!r}, {k}, {d!r})")
            else:
                seen[d] = where
    if sequences:
        lengths = ", ".join(f"len({a.name})" for a in sequences)
        lines.append("    if n_steps is None:")
        lines.append(f"        n_steps = {lengths if len(sequences) == 1 else f'min({lengths})'}")
        for a in sequences:
            lines.append(f"    if not 0 <= n_steps <= len({a.name}):")
            lines.append(f"        raise ValueError('n_steps=%d does not fit {a.name}, which has "
                         f"%d steps' % (n_steps, len({a.name})))")
            window = (f"{a.name}[len({a.name}) - n_steps:]" if go_backwards
                      else f"{a.name}[:n_steps]")
            lines.append(f"    {a.name} = {window}")
    else:
        lines.append("    if n_steps is None:")
        lines.append("        raise ValueError('pass n_steps: no sequence gives the number of "
                     "steps')")
        lines.append("    if n_steps < 0:")
        lines.append("        raise ValueError('n_steps must not be negative, got %d' % "
                     "n_steps)")
    call = f"{loop_name}({', '.join(a.name for a in passed)}, n_steps)"
    lines.append(f"    return {call}" if n_outputs == 1 else f"    return list({call})")
    helpers = '''
def _array(value, name, dtype, ndim):
    """The argument as an array of the dtype and rank the module was built for."""
    array = np.asarray(value)
    if array.dtype != dtype:
        raise TypeError('%s has dtype %s, but this module was built for %s'
                        % (name, array.dtype, np.dtype(dtype)))
    if array.ndim != ndim:
        raise ValueError('%s has %d dimension(s), but this module was built for %d'
                         % (name, array.ndim, ndim))
    return array


def _sizes(size, expected, name, axis, symbol):
    """A dimension of an argument against its declared size or symbol."""
    if size != expected:
        raise ValueError('%s has size %d in dimension %d, but %s is %d here'
                         % (name, size, axis, symbol, expected))
'''
    return ast.parse(helpers + "\n\n" + "\n".join(lines)).body
