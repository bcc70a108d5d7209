"""What the passes did, in the user's terms: collected while the pipeline runs, for ``explain``."""

from __future__ import annotations

import contextvars
import os
from collections.abc import Iterable
from dataclasses import dataclass

from xdsl.dialects.builtin import FileLineColLoc
from xdsl.ir import Operation


@dataclass(frozen=True)
class Remark:
    pass_name: str
    message: str
    lines: tuple[tuple[str, int], ...]  # (file, line) of the user's code it is about

    def render(self) -> str:
        if not self.lines:
            return f"[{self.pass_name}] {self.message}"
        files = {os.path.basename(f) for f, _ in self.lines}
        where = ", ".join(str(line) for line in sorted({line for _, line in self.lines}))
        label = "line" if len(set(self.lines)) == 1 else "lines"
        prefix = f"{next(iter(files))} " if len(files) == 1 else ""
        return f"[{self.pass_name}] {prefix}{label} {where}: {self.message}"


_REMARKS: contextvars.ContextVar[list[Remark] | None] = contextvars.ContextVar(
    "scanopt_remarks", default=None)


_SPELLINGS: contextvars.ContextVar[dict | None] = contextvars.ContextVar(
    "scanopt_spellings", default=None)


def collecting() -> list[Remark]:
    """Start collecting remarks in this context; returns the list they go to."""
    remarks: list[Remark] = []
    _REMARKS.set(remarks)
    _SPELLINGS.set({})
    return remarks


def spell_as(op: Operation, text: str, origins: Iterable[Operation] = ()) -> None:
    """Make later remarks call ``op`` by ``text``, at the lines of ``origins`` (a fused matmul by
    the user's matmuls)."""
    spellings = _SPELLINGS.get()
    if spellings is not None:
        spellings[op] = (text, _lines(origins))


def _lines(ops: Iterable[Operation]) -> list[tuple[str, int]]:
    spellings = _SPELLINGS.get() or {}
    lines = []
    for op in ops:
        if op in spellings:
            lines.extend(spellings[op][1])
            continue
        loc = op.attributes.get("loc")
        if isinstance(loc, FileLineColLoc):
            lines.append((loc.filename.data, loc.line.data))
    return lines


def remark(pass_name: str, message: str, ops: Iterable[Operation] = ()) -> None:
    remarks = _REMARKS.get()
    if remarks is None:
        return
    remarks.append(Remark(pass_name, message, tuple(dict.fromkeys(_lines(ops)))))


def source_text(op: Operation) -> str:
    """The user's source for ``op``'s line, stripped (for messages)."""
    import linecache

    loc = op.attributes.get("loc")
    if not isinstance(loc, FileLineColLoc):
        return op.name
    return linecache.getline(loc.filename.data, loc.line.data).strip()


def describe_type(t) -> str:
    from scanopt.dialects.types import aval_of

    return aval_of(t).describe()


_TREES: dict[str, object] = {}


def expression_text(op: Operation) -> str:
    """The user's expression for ``op`` (``x_t @ W_i``), or its whole line when not found."""
    import ast
    import linecache

    spelled = (_SPELLINGS.get() or {}).get(op)
    if spelled is not None:
        return spelled[0]
    loc = op.attributes.get("loc")
    if not isinstance(loc, FileLineColLoc):
        return op.name
    filename, line, col = loc.filename.data, loc.line.data, loc.column.data - 1
    if filename not in _TREES:
        try:
            _TREES[filename] = ast.parse("".join(linecache.getlines(filename)))
        except (SyntaxError, ValueError):
            _TREES[filename] = None
    tree = _TREES[filename]
    wanted = _AST_KINDS.get(op.name)
    if tree is not None and wanted is not None:
        best = None
        for node in ast.walk(tree):
            if getattr(node, "lineno", None) == line and node.col_offset == col and \
                    wanted(node):
                span = (node.end_lineno, node.end_col_offset)
                if best is None or span < (best.end_lineno, best.end_col_offset):
                    best = node
        if best is not None and best.end_lineno == line:
            text = linecache.getline(filename, line)
            return text[best.col_offset:best.end_col_offset]
    return source_text(op)


def _is_binop(op_type):
    import ast

    return lambda node: isinstance(node, ast.BinOp) and isinstance(node.op, op_type)


def _kinds():
    import ast

    return {"scan.matmul": lambda node: (isinstance(node, ast.BinOp) and isinstance(
                node.op, ast.MatMult)) or isinstance(node, ast.Call),
            "scan.add": _is_binop(ast.Add), "scan.mul": _is_binop(ast.Mult),
            "scan.transpose": lambda node: isinstance(node, ast.Attribute | ast.Call)}


_AST_KINDS = _kinds()


def describe_op(op: Operation) -> str:
    """``concat(U_i, U_f)``: an op in terms of the names of its operands."""
    names = [o.name_hint.removesuffix("_1") if o.name_hint else "…" for o in op.operands]
    return f"{op.name.removeprefix('scan.')}({', '.join(names)})"
