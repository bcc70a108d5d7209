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


def collecting() -> list[Remark]:
    """Start collecting remarks in this context; returns the list they go to."""
    remarks: list[Remark] = []
    _REMARKS.set(remarks)
    return remarks


def remark(pass_name: str, message: str, ops: Iterable[Operation] = ()) -> None:
    remarks = _REMARKS.get()
    if remarks is None:
        return
    lines = []
    for op in ops:
        loc = op.attributes.get("loc")
        if isinstance(loc, FileLineColLoc):
            lines.append((loc.filename.data, loc.line.data))
    remarks.append(Remark(pass_name, message, tuple(dict.fromkeys(lines))))


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
