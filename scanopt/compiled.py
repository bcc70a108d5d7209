"""A compiled loop as the API uses it. Plain Python: cached calls import this, never xDSL."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from scanopt.frontend.captures import CapturePlan


@dataclass
class CompiledLoop:
    """A compiled loop: the function to call, its source, and the captures it needs."""

    run: Callable[..., Any]
    source: str
    plan: CapturePlan
    n_outputs: int
    ir: str  # the optimised scan IR, for explain/debugging ("" when loaded from disk)
    last_without_init: bool = False  # keep="last" on an output that is not fed back
    remarks: tuple[str, ...] = ()  # what the passes did (explain)
    output_tree: tuple | None = None  # carry_scan: the structure of the step's y (pytree.py)
