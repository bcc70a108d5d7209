"""The ``scanopt`` command line.

::

    scanopt opt FILE.mlir [-p PASSES] [--emit=scan|numpy|mlir]   an xdsl-opt for scan IR text
    scanopt build SCRIPT.py --call NAME [-o OUT.py]          compile a loop ahead of time
            [--emit=scan|scan-opt|numpy|mlir|explain]        ... or print one stage of it
    scanopt build FILE.py:FN --sequences x=f32[T,B,128] ...  ... from argument types alone
    scanopt passes                                           the registered passes
    scanopt cache info | clear                               the disk cache: where, how big;
                                                             empty it
    scanopt --version

``python -m scanopt.cli`` is the same program; the filecheck tests run ``scanopt-opt`` as
``python -m scanopt.cli opt``.

``scanopt build`` is the ahead-of-time twin of ``@scanopt.step`` (one source, two entry points).
``SCRIPT.py`` defines a function ``NAME`` that takes no arguments and returns the arguments of a
``scanopt.scan`` call as a dict::

    def elman():
        return {"fn": step, "sequences": X, "outputs_info": h0, "non_sequences": [W, U, b]}

The argument values only fix the types (dtypes, ranks, static dims) the loop is compiled for,
exactly as in a call of ``scanopt.scan``. The written module imports NumPy only; its docstring
is stamped with the scanopt version and the sha256 of the step function's source.

Exit status: 0 on success; 1 for an error in the input (IR that does not parse or verify, a step
function scanopt rejects, a script that fails); 2 for bad command-line usage. Errors are printed
on stderr as ``file:line:col: error: ...`` with the offending line, never as a traceback of
scanopt's own frames. xDSL is imported only by the subcommands that need it.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import inspect
import os
import re
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from scanopt import __version__
from scanopt.errors import ScanError, SourceLocation

OPT_STAGES = ("scan", "numpy", "mlir")
BUILD_STAGES = ("scan", "scan-opt", "numpy", "mlir", "explain")
# Keys of the dict a build script returns: the keyword arguments of ``scanopt.scan``.
SCAN_ARGUMENTS = ("fn", "sequences", "outputs_info", "non_sequences", "n_steps", "go_backwards",
                  "keep", "exact_random", "optimize", "backend")
# ``// -----`` on a line of its own separates the chunks of ``--split-input-file`` (as MLIR).
_SPLIT_MARKER = re.compile(r"^[ \t]*// -----.*$", re.MULTILINE)
# xDSL's own passes have no module docstring to summarise.
_UPSTREAM_SUMMARIES = {
    "cse": "common subexpression elimination (xDSL).",
    "dce": "dead code elimination, regions included (xDSL).",
    "canonicalize": "canonicalization patterns, folding and region DCE (xDSL).",
}


class CommandError(Exception):
    """An error already worded for the user: printed as it is, exit status 1."""


def main(argv: list[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return args.run(args)
    except CommandError as error:
        print(f"{error}", file=sys.stderr)
        return 1
    except ScanError as error:
        # The message names the user's file:line:col and shows the line; our frames add nothing.
        print(str(error), file=sys.stderr)
        return 1
    except BrokenPipeError:  # `scanopt ... | head`
        sys.stderr.close()
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scanopt", description="Compile NumPy recurrences (scan step functions) into "
                                    "optimised, readable NumPy modules.")
    parser.add_argument("--version", action="version", version=_version_text())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    opt = sub.add_parser(
        "opt", help="parse scan IR, run passes, print the IR or the NumPy module (xdsl-opt style)",
        description="Parse scan IR text, run passes from the registry (none by default), and "
                    "print the resulting IR, or the NumPy module generated from it.")
    opt.add_argument("input", nargs="?", default="-", metavar="FILE",
                     help="an .mlir file of scan IR ('-', the default, reads stdin)")
    opt.add_argument("-p", "--passes", default="", metavar="PASSES",
                     help="comma-separated pass names, applied in order (see `scanopt passes`)")
    opt.add_argument("--emit", choices=OPT_STAGES, default="scan",
                     help="what to print: the IR (scan, default), the generated NumPy module, "
                          "or upstream MLIR (func/scf/tensor/linalg/arith/math)")
    opt.add_argument("-o", "--output", metavar="FILE", help="write there instead of stdout")
    opt.add_argument("--print-between-passes", action="store_true",
                     help="print the IR after every pass but the last (whose IR is the output)")
    opt.add_argument("--verify-each", action=argparse.BooleanOptionalAction, default=True,
                     help="verify the IR after every pass (default: on)")
    opt.add_argument("--split-input-file", action="store_true",
                     help="split the input at `// -----` lines and process each chunk on its own")
    opt.add_argument("--verify-diagnostics", action="store_true",
                     help="print parse and verification errors on stdout and carry on with the "
                          "next chunk, exit status 0 (for tests of error messages)")
    opt.add_argument("--print-op-generic", action="store_true",
                     help="print operations in the generic format")
    opt.add_argument("--time-passes", action="store_true",
                     help="print the time each pass took on stderr")
    opt.set_defaults(run=_run_opt)

    build = sub.add_parser(
        "build", help="compile a step function ahead of time into a standalone NumPy module",
        description="Import SCRIPT, call its function NAME (no arguments; it returns a dict of "
                    "scanopt.scan arguments: fn, sequences, outputs_info, non_sequences, "
                    "n_steps, go_backwards, keep, exact_random, optimize), compile that loop "
                    "and write the generated NumPy module, or print one stage of the "
                    "compilation.")
    build.add_argument("script", metavar="SCRIPT.py[:FUNCTION]",
                       help="a Python file defining NAME (with --call); or FILE.py:FUNCTION, the "
                            "step function itself, built from the types given below")
    build.add_argument("--call", metavar="NAME",
                       help="the function of SCRIPT that returns the scan arguments")
    types = build.add_argument_group(
        "ahead of time from types (FILE.py:FUNCTION)",
        "Each argument is NAME=TYPE: dtype[dims] with a dtype among f16 f32 f64 i32 i64 bool and "
        "dims that are integers or symbols (f32[T,B,128]); `rng` for a numpy.random.Generator; "
        "`none` in --outputs-info for a per-step output. A symbol makes the module work for "
        "any size of that dimension (the same symbol must agree across arguments).")
    for flag in ("--sequences", "--outputs-info", "--non-sequences"):
        types.add_argument(flag, nargs="+", default=None, metavar="NAME=TYPE")
    types.add_argument("--n-steps", type=int, metavar="N",
                       help="the number of steps when no sequence gives it (run() also takes "
                            "n_steps=)")
    types.add_argument("--keep", default="all",
                       help="all (default), last, or a comma-separated list of those per output")
    types.add_argument("--go-backwards", action="store_true")
    types.add_argument("--exact-random", action="store_true")
    types.add_argument("--no-optimize", action="store_true", help="turn every pass off")
    build.add_argument("-o", "--output", metavar="OUT.py",
                       help="write the result there (default: stdout)")
    build.add_argument("--emit", choices=BUILD_STAGES, default="numpy",
                       help="scan: the frontend's IR; scan-opt: the IR after the passes; numpy: "
                            "the generated module (default); mlir: upstream MLIR "
                            "(func/scf/tensor/linalg/arith/math) of the optimised loop; "
                            "explain: what each pass did")
    build.add_argument("--backend", choices=("numpy", "numba", "cupy"), default=None,
                       help="the module to generate: numpy (default), numba (its loops "
                            "compiled by numba when first run; needs the numba extra) or cupy "
                            "(CUDA kernels for the GPU; writing it needs no GPU and no CuPy)")
    build.add_argument("--show-ir", action="store_true",
                       help="with --emit=explain: add the IR after the frontend and every pass")
    build.set_defaults(run=_run_build)

    passes = sub.add_parser("passes", help="list the registered passes",
                            description="List the pass names that `scanopt opt -p` accepts, "
                                        "and the default pipeline.")
    passes.set_defaults(run=_run_passes)

    cache = sub.add_parser(
        "cache", help="show or empty the disk cache of compiled loops",
        description="The disk cache of compiled loops (SCANOPT_CACHE_DIR; see the README's "
                    "'Caching and configuration').")
    cache_sub = cache.add_subparsers(dest="cache_command", metavar="ACTION", required=True)
    cache_sub.add_parser(
        "info", help="where the cache is, whether it is used (and why not), entries, size, cap",
        description="Print the cache directory, whether scanopt uses it (and why not), the "
                    "number of entries, their size and the size cap. Creates nothing.",
    ).set_defaults(run=_run_cache_info)
    cache_sub.add_parser(
        "clear", help="remove every entry and generated module",
        description="Remove every entry and generated module from the cache directory. A "
                    "directory scanopt does not use because it is unsafe is left alone.",
    ).set_defaults(run=_run_cache_clear)
    return parser


def _version_text() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        xdsl = f" (xdsl {version('xdsl')})"
    except PackageNotFoundError:  # not worth failing --version for
        xdsl = ""
    return f"scanopt {__version__}{xdsl}"


def _write_output(text: str, path: str | None) -> None:
    if path is None or path == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError as error:
        raise CommandError(f"error: cannot write {path}: {error.strerror}") from None


# ---------------------------------------------------------------------------------------------
# scanopt opt


def _run_opt(args) -> int:
    from xdsl.dialects.test import Test
    from xdsl.parser import Parser
    from xdsl.passes import PassPipeline
    from xdsl.utils.exceptions import ArgSpecParseError, DiagnosticException, ParseError

    from scanopt.compiler import make_context, print_ir
    from scanopt.transforms import get_all_passes

    registry = get_all_passes()
    unknown = [name.split("{")[0].strip() for name in args.passes.split(",")
               if name.strip() and name.split("{")[0].strip() not in registry]
    if unknown:
        raise CommandError(f"error: unknown pass {', '.join(map(repr, unknown))}; the "
                           f"registered passes are: {', '.join(registry)}")
    timings: list[tuple[str, float]] = []
    dumps: list[str] = []
    started = time.perf_counter()

    def after_pass(previous, module, following) -> None:
        nonlocal started
        if previous is not None:
            timings.append((previous.name, time.perf_counter() - started))
            if args.verify_each:
                try:
                    module.verify()
                except DiagnosticException as error:
                    raise _PassBrokeIR(previous.name, error) from None
            if args.print_between_passes and following is not None:
                dumps.append(f"// ----- IR after {previous.name} -----\n"
                             f"{print_ir(module, args.print_op_generic)}\n")
        started = time.perf_counter()

    try:
        pipeline = PassPipeline.parse_spec(registry, args.passes, after_pass)
    except (ValueError, ArgSpecParseError) as error:
        raise CommandError(f"error: bad pass list {args.passes!r}: {error}") from None

    ctx = make_context()
    ctx.load_dialect(Test)  # "test.op" stands for opaque values in tests, as in xDSL's own
    name, text = _read_input(args.input)
    outputs: list[str] = []
    for chunk in _chunks(text, args.split_input_file):
        dumps.clear()
        module = None
        try:
            module = Parser(ctx, chunk, name).parse_module()
            module.verify()
            pipeline.apply(ctx, module)
            if args.emit == "numpy":
                out = _emit_numpy(module, name)
            elif args.emit == "mlir":
                out = emit_mlir(module, generic=args.print_op_generic)
            else:
                out = print_ir(module, args.print_op_generic) + "\n"
        except ParseError as error:
            message = _parse_error_text(error)
        except _PassBrokeIR as error:
            message = (f"{name}: error: the IR does not verify after pass {error.pass_name}: "
                       f"{error.error}{_failing_op_note(module)}")
        except DiagnosticException as error:
            message = f"{name}: error: {error}{_failing_op_note(module)}"
        else:
            outputs.append("".join(dumps) + out)
            continue
        if not args.verify_diagnostics:
            print(message.rstrip("\n"), file=sys.stderr)
            return 1
        outputs.append(message.rstrip("\n") + "\n")
    separator = "# -----\n" if args.emit == "numpy" else "// -----\n"
    _write_output(separator.join(outputs), args.output)
    if args.time_passes:
        for pass_name, seconds in timings:
            print(f"pass {pass_name}: {seconds * 1e3:.2f} ms", file=sys.stderr)
    return 0


@dataclass
class _PassBrokeIR(Exception):
    pass_name: str
    error: Exception


def _read_input(path: str) -> tuple[str, str]:
    if path == "-":
        return "<stdin>", sys.stdin.read()
    try:
        with open(path, encoding="utf-8") as f:
            return path, f.read()
    except OSError as error:
        raise CommandError(f"error: cannot read {path}: {error.strerror}") from None


def _chunks(text: str, split: bool) -> list[str]:
    """The input, or its ``// -----`` chunks, each padded with newlines so that the line numbers
    in error messages are those of the whole file."""
    if not split:
        return [text]
    chunks, start, line = [], 0, 0
    for marker in _SPLIT_MARKER.finditer(text):
        chunks.append("\n" * line + text[start:marker.start()])
        line = text.count("\n", 0, marker.end())
        start = marker.end()
    chunks.append("\n" * line + text[start:])
    return chunks


def _parse_error_text(error) -> str:
    """``file:line:col: error: message``, then the offending line with carets under it."""
    location = error.span.get_location()
    context = error.span.print_with_context().splitlines()[1:]
    return "\n".join([f"{location}: error: {error.msg}", *context])


def _failing_op_note(module) -> str:
    """``\nnote: in <first line of the op that fails to verify>``, or nothing.

    xDSL's verifier says what is wrong but not where; the innermost op whose own checks fail is
    found by verifying each op without its regions, innermost first."""
    from xdsl.utils.exceptions import DiagnosticException

    from scanopt.compiler import print_ir

    if module is None:
        return ""
    for op in reversed(list(module.walk())):
        try:
            op.verify(verify_nested_ops=False)
        except DiagnosticException:
            return f"\nnote: in {print_ir(op).splitlines()[0].strip()}"
        except Exception:  # noqa: BLE001 (an op the printer cannot show: the message alone)
            return ""
    return ""


def emit_mlir(module, generic: bool = False) -> str:
    """Upstream MLIR text of a scan module (``convert-scan-to-upstream``). A construct without
    a lowering raises UnsupportedSyntax naming the op and the user's line."""
    from scanopt.compiler import make_context, print_ir
    from scanopt.lowering.scan_to_upstream import ConvertScanToUpstreamPass

    ConvertScanToUpstreamPass().apply(make_context(), module)
    module.verify()
    return print_ir(module, generic) + "\n"


def _emit_numpy(module, name: str) -> str:
    from scanopt.lowering.numpy_emitter import emit_numpy_module

    try:
        return emit_numpy_module(module, buffers=True)
    except NotImplementedError as error:
        raise CommandError(f"{name}: error: cannot emit NumPy: {error}") from None


# ---------------------------------------------------------------------------------------------
# scanopt build


def _run_build(args) -> int:
    if args.call is None:
        return _run_build_from_types(args)
    if any(getattr(args, flag) is not None for flag in ("sequences", "outputs_info",
                                                         "non_sequences", "n_steps")):
        raise CommandError("error: --call takes the argument types from the script's arrays; "
                           "declare types with FILE.py:FUNCTION instead")
    script = os.path.abspath(args.script)
    if not os.path.isfile(script):
        raise CommandError(f"error: no such file: {args.script}")
    factory = getattr(_import_script(script), args.call, None)
    if not callable(factory):
        raise CommandError(f"error: {args.script} defines no function {args.call!r}")
    try:
        scan_args = factory()
    except ScanError:
        raise
    except Exception as error:  # noqa: BLE001 (anything the user's code raises)
        raise CommandError(_user_traceback(error, script, f"{args.call}() failed")) from None
    options = _scan_options(scan_args, f"{args.script}: {args.call}()")
    if args.backend is not None:
        options["backend"] = args.backend
    fn = options.pop("fn")
    call_site = SourceLocation(script, getattr(getattr(factory, "__code__", None),
                                               "co_firstlineno", 1), 1)
    text = _build_stage(fn, options, args.emit, call_site=call_site, show_ir=args.show_ir,
                        command=f"scanopt build {os.path.basename(script)} --call {args.call}")
    _write_output(text, args.output)
    return 0


def _run_build_from_types(args) -> int:
    """``scanopt build FILE.py:FUNCTION --sequences x=f32[T,B,128] ...``."""
    from scanopt.aot import build, build_stage

    target, sep, function = args.script.rpartition(":")
    if not sep or not function.isidentifier():
        raise CommandError("error: give FILE.py:FUNCTION (the step function and its types), or "
                           "SCRIPT.py --call NAME")
    script = os.path.abspath(target)
    if not os.path.isfile(script):
        raise CommandError(f"error: no such file: {target}")
    fn = getattr(_import_script(script), function, None)
    if not callable(fn):
        raise CommandError(f"error: {target} defines no function {function!r}")
    options = dict(getattr(fn, "options", {})) if hasattr(fn, "fn") else {}
    fn = getattr(fn, "fn", fn)  # @scanopt.step: the function itself, its options as defaults
    keep = args.keep if "," not in args.keep else tuple(args.keep.split(","))
    arguments = {"sequences": _named_types(args.sequences, "--sequences"),
                 "outputs_info": _named_types(args.outputs_info, "--outputs-info"),
                 "non_sequences": _named_types(args.non_sequences, "--non-sequences")}
    command = " ".join(["scanopt build", f"{os.path.basename(script)}:{function}", *(
        f"{flag} {' '.join(values)}" for flag, values in (
            ("--sequences", args.sequences), ("--outputs-info", args.outputs_info),
            ("--non-sequences", args.non_sequences)) if values)])
    kwargs = dict(arguments, n_steps=args.n_steps, go_backwards=args.go_backwards,
                  keep=keep if keep != "all" else options.get("keep", "all"),
                  exact_random=args.exact_random or options.get("exact_random", False),
                  optimize=not args.no_optimize and options.get("optimize", True),
                  backend=args.backend or options.get("backend", "numpy"))
    if args.emit == "numpy":
        text = build(fn, command=command, **kwargs)
    else:
        text = build_stage(fn, args.emit, show_ir=args.show_ir, **kwargs)
    _write_output(text, args.output)
    return 0


def _named_types(values: list[str] | None, flag: str) -> dict[str, str] | None:
    if values is None:
        return None
    named = {}
    for value in values:
        name, sep, spec = value.partition("=")
        if not sep or not name.strip().isidentifier():
            raise CommandError(f"error: {flag} takes NAME=TYPE entries (x=f32[T,B,128]), got "
                               f"{value!r}")
        if name.strip() in named:
            raise CommandError(f"error: {flag} names {name.strip()!r} twice")
        named[name.strip()] = spec
    return named


def _import_script(path: str):
    """Import the user's script as a module (a real file, so inspect finds the step's source)."""
    directory = os.path.dirname(path)
    if directory not in sys.path:
        sys.path.insert(0, directory)  # the script may import its neighbours, as `python SCRIPT`
    name = "__scanopt_build__"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise CommandError(f"error: cannot import {path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses, pickling and inspect look the module up
    try:
        spec.loader.exec_module(module)
    except ScanError:
        raise
    except Exception as error:  # noqa: BLE001 (anything the user's script raises)
        raise CommandError(_user_traceback(error, path, f"importing {os.path.basename(path)} "
                                                         "failed")) from None
    return module


def _user_traceback(error: BaseException, script: str, what: str) -> str:
    """The traceback of an exception raised by the user's script, from its first frame on."""
    tb = error.__traceback__
    while tb is not None and os.path.abspath(tb.tb_frame.f_code.co_filename) != script:
        tb = tb.tb_next
    text = "".join(traceback.format_exception(type(error), error, tb))
    return f"error: {what}:\n{text.rstrip()}"


def _scan_options(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise CommandError(f"error: {where} must return a dict of scan arguments "
                           f"({', '.join(SCAN_ARGUMENTS)}), but it returned "
                           f"{type(value).__name__}")
    unknown = sorted(set(value) - set(SCAN_ARGUMENTS), key=str)
    if unknown:
        raise CommandError(f"error: {where} returned unknown scan argument(s) "
                           f"{', '.join(map(repr, unknown))}; expected some of "
                           f"{', '.join(SCAN_ARGUMENTS)}")
    if "fn" not in value:
        raise CommandError(f"error: {where} returned no 'fn' (the step function)")
    options = dict(value)
    fn = options["fn"]
    decorator_options = getattr(fn, "options", None)
    if decorator_options is not None and hasattr(fn, "fn"):  # @scanopt.step: its options count
        options = {**decorator_options, **options, "fn": fn.fn}
    return options


def _build_stage(fn: Callable, options: dict[str, Any], stage: str, *,
                 call_site: SourceLocation | None, show_ir: bool = False,
                 command: str = "") -> str:
    from scanopt.api import _prepared, with_parameter_values

    call = _prepared(fn, options.get("sequences"), options.get("outputs_info"),
                     options.get("non_sequences"), options.get("n_steps"),
                     options.get("go_backwards", False), options.get("backend", "numpy"),
                     options.get("keep", "all"))
    # A step that branches on a scalar non-sequence is compiled for its value (api.py).
    return with_parameter_values(fn, call, lambda call: _stage_text(
        fn, call, options, stage, call_site=call_site, show_ir=show_ir, command=command))


def _stage_text(fn: Callable, call, options: dict[str, Any], stage: str, *,
                call_site: SourceLocation | None, show_ir: bool, command: str) -> str:
    from scanopt.api import _spec
    from scanopt.compiler import build_ir, explain_loop, print_ir
    from scanopt.frontend.builder import build_loop
    from scanopt.lowering.numpy_emitter import emit_numpy_module

    optimize = bool(options.get("optimize", True))
    exact_random = bool(options.get("exact_random", False))
    backend = options.get("backend", "numpy")
    spec = _spec(call.key)
    if stage == "scan":
        module = build_loop(fn, spec, call_site=call_site).module
        module.verify()
        return print_ir(module) + "\n"
    if stage == "explain":
        report = explain_loop(fn, spec, optimize=optimize, exact_random=exact_random,
                              show_ir=show_ir, call_site=call_site, backend=backend)
        return report.replace("[?,", f"[{call.n_steps}×")  # as scanopt.explain shows it
    built = build_ir(fn, spec, optimize=optimize, exact_random=exact_random,
                     call_site=call_site, backend=backend)
    if stage == "scan-opt":
        return print_ir(built.module) + "\n"
    if stage == "mlir":
        header = build_header(fn, command).split("\n")[0]
        return "".join(f"// {line}\n" for line in header.splitlines()) + emit_mlir(built.module)
    assert stage == "numpy", stage
    if backend == "cupy":
        from scanopt.lowering.cupy_emitter import HEADER, emit_cupy_module

        return emit_cupy_module(built.module, header=build_header(fn, command).replace(
            _NUMPY_HEADER, HEADER))
    if backend == "numba" and not exact_random:
        from scanopt.lowering.numba_emitter import HEADER, require_numba, warn_not_compiled

        require_numba()
        not_compiled: list[str] = []
        source = emit_numpy_module(built.module, header=build_header(fn, command).replace(
            _NUMPY_HEADER, HEADER), buffers=optimize, numba=not_compiled, matmul_blocks=True)
        warn_not_compiled(not_compiled, getattr(fn, "__name__", "step"))
        return source
    # NumPy (also backend="numba" with exact_random=True, as scanopt.scan runs it).
    return emit_numpy_module(built.module, header=build_header(fn, command),
                             buffers=optimize, matmul_blocks=not exact_random)


def step_source_sha256(fn: Callable) -> str:
    """sha256 of the step function's source text (``inspect.getsource``), as the header shows.

    A NumPy function passed as the step has no Python source: its name is hashed instead.
    """
    try:
        source = inspect.getsource(fn)
    except (OSError, TypeError):
        source = getattr(fn, "__name__", repr(fn))
    return hashlib.sha256(source.encode("utf-8")).hexdigest()


_NUMPY_HEADER = ("A standalone NumPy module: it imports numpy only. Edit the step function "
                 "and rebuild, not this file.")


def build_header(fn: Callable, command: str = "") -> str:
    """The docstring of a module written by ``scanopt build``: version and source hash first."""
    name = getattr(fn, "__name__", "step")
    code = getattr(fn, "__code__", None)
    origin = (f" ({os.path.basename(code.co_filename)}:{code.co_firstlineno})"
              if code is not None else "")
    lines = [(f"Generated by scanopt {__version__} from `{name}`{origin}; step source sha256 "
              f"{step_source_sha256(fn)}.")]
    if command:
        lines.append(f"Rebuild with: {command} -o <this file>")
    lines += ["", _NUMPY_HEADER]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# scanopt passes


def _run_passes(args) -> int:
    from scanopt.compiler import passes_for
    from scanopt.transforms import get_all_passes

    registry = get_all_passes()
    width = max(map(len, registry))
    lines = [f"{name:<{width}}  {pass_summary(name, get)}" for name, get in registry.items()]
    pipelines = [
        ("default pipeline (scanopt.scan; backend numpy or numba):", passes_for()),
        ("with backend=\"cupy\" (pre-draws every step's random numbers, fuses kernels):",
         passes_for(backend="cupy")),
        ("with exact_random=True (bit-for-bit the plain loop's numbers; cupy adds "
         "scan-fuse-regions):", passes_for(exact_random=True)),
    ]
    for title, passes in pipelines:
        lines += ["", title, "  " + ",".join(passes)]
    print("\n".join(lines))
    return 0


def _run_cache_info(args) -> int:
    from scanopt import cache

    info = cache.info()
    directory = info.directory
    usable = {"usable": "yes",
              "read-only": f"read only: {directory.why} (entries are read, none are written)",
              "unsafe": f"no: {directory.why}",
              "off": "no: the disk cache is off (SCANOPT_CACHE_DIR is empty)",
              "absent": "yes (the first compilation creates it)"}[directory.status]
    configured = "SCANOPT_CACHE_MAX_BYTES" if os.environ.get("SCANOPT_CACHE_MAX_BYTES", "").strip() \
        else "the default; set SCANOPT_CACHE_MAX_BYTES to change it"
    print("\n".join([f"location: {directory.path or 'none'}",
                     f"usable: {usable}",
                     f"entries: {info.entries}",
                     f"modules: {info.modules}",
                     f"size: {info.size} bytes ({_mib(info.size)})",
                     f"cap: {info.max_bytes} bytes ({_mib(info.max_bytes)}; {configured})"]))
    return 0


def _mib(n: int) -> str:
    return f"{n / 2 ** 20:.1f} MiB"


def _run_cache_clear(args) -> int:
    from scanopt import cache

    directory = cache.check_directory(create=False)
    if directory.status == "unsafe":
        raise CommandError(f"error: not clearing the cache directory {directory.path}: "
                           f"{directory.why}")
    if not directory.readable:
        why = "it does not exist" if directory.status == "absent" else directory.why
        print(f"nothing to clear: {why}")
        return 0
    entries, freed = cache.clear()
    left = cache.info()
    print(f"removed {entries} entries ({freed} bytes) from {directory.path}")
    if left.entries or left.modules:
        raise CommandError(f"error: {left.entries} entries and {left.modules} modules could not "
                           f"be removed from {directory.path}")
    return 0


def pass_summary(name: str, get_pass: Callable[[], type]) -> str:
    """The first paragraph of the pass module's docstring, without its ````name````: prefix."""
    if name in _UPSTREAM_SUMMARIES:
        return _UPSTREAM_SUMMARIES[name]
    cls = get_pass()
    doc = inspect.getdoc(sys.modules[cls.__module__]) or ""
    first = " ".join(doc.strip().split("\n\n")[0].split())
    first = re.sub(rf"^``{re.escape(name)}``:\s*", "", first)
    return first.replace("``", "`") or "(no description)"


if __name__ == "__main__":
    raise SystemExit(main())
