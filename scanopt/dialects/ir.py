"""Reading and writing scan IR text: the context that knows our dialects, and the printer."""

from __future__ import annotations

from io import StringIO

from xdsl.context import Context
from xdsl.dialects import arith, func
from xdsl.dialects.builtin import Builtin, ModuleOp
from xdsl.printer import Printer

from scanopt.dialects.fused import Fused
from scanopt.dialects.scan import Scan


def make_context() -> Context:
    """A context with the dialects scan IR uses (builtin, func, arith, scan, fused)."""
    ctx = Context()
    for dialect in (Builtin, func.Func, arith.Arith, Scan, Fused):
        ctx.load_dialect(dialect)
    return ctx


def print_ir(module: ModuleOp, generic: bool = False) -> str:
    stream = StringIO()
    Printer(stream=stream, print_generic_format=generic).print_op(module)
    return stream.getvalue()
