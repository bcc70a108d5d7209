"""Helpers for pass tests and docstring examples: a step function → IR after chosen passes."""

from __future__ import annotations

from scanopt.compiler import make_context, print_ir
from scanopt.frontend.builder import build_loop
from scanopt.transforms import run_pipeline


def build_step(step, *, sequences=None, outputs_info=None, non_sequences=None, n_steps=None,
               go_backwards=False, keep="all"):
    """The module the frontend builds for these scan arguments (no passes)."""
    from scanopt.api import _prepare_call, _spec

    if n_steps is None and sequences is None:
        n_steps = 1
    call = _prepare_call(step, sequences, outputs_info, non_sequences, n_steps, go_backwards,
                         "numpy", keep)
    return build_loop(step, _spec(call.key)).module


def run_on_step(step, passes, **scan_args) -> str:
    """The IR text of ``step`` after running ``passes`` (names from the registry)."""
    module = build_step(step, **scan_args)
    module.verify()
    run_pipeline(module, make_context(), passes=tuple(passes))
    return print_ir(module)
