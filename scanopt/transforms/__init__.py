"""Passes on scan IR, and the default pipeline.

Passes are registered by name in a lazy registry (``get_all_passes``), xDSL style, so importing
scanopt never imports them.
"""

from __future__ import annotations

from collections.abc import Callable

PIPELINE = ("canonicalize", "cse", "dce")


def get_all_passes() -> dict[str, Callable[[], type]]:
    """Pass name → a function returning the pass class."""

    def _cse():
        from xdsl.transforms.common_subexpression_elimination import (
            CommonSubexpressionElimination,
        )

        return CommonSubexpressionElimination

    def _dce():
        from xdsl.transforms.dead_code_elimination import DeadCodeElimination

        return DeadCodeElimination

    def _canonicalize():
        from xdsl.transforms.canonicalize import CanonicalizePass

        return CanonicalizePass

    return {"cse": _cse, "dce": _dce, "canonicalize": _canonicalize}


def run_pipeline(module, ctx, passes=PIPELINE,
                 callback: Callable[[str, str], None] | None = None) -> None:
    """Apply ``passes`` in order; ``callback(pass_name, ir_text)`` after each one."""
    registry = get_all_passes()
    for name in passes:
        registry[name]()().apply(ctx, module)
        module.verify()
        if callback is not None:
            from scanopt.compiler import print_ir

            callback(name, print_ir(module))
