"""The plain Python loop that defines what ``scanopt.scan`` computes.

``SCANOPT_DISABLE=1`` makes ``scanopt.scan`` run this loop instead of compiling, which is also what
a user can compare against.
"""

from __future__ import annotations

import numpy as np


def reference_scan(fn, sequences, inits, non_sequences, n_steps, go_backwards=False):
    """Run ``fn`` step by step. Arguments are already normalised lists (inits may hold None)."""
    if go_backwards:
        sequences = [s[:n_steps][::-1] for s in sequences]
    state = list(inits)
    history: list[list] | None = None
    for t in range(n_steps):
        args = [s[t] for s in sequences] + [v for v in state if v is not None] + list(non_sequences)
        out = fn(*args)
        out = list(out) if isinstance(out, (tuple, list)) else [out]
        if history is None:
            history = [[] for _ in out]
        for k, value in enumerate(out):
            history[k].append(value)
            if k < len(state) and state[k] is not None:
                state[k] = value
    if history is None:
        raise ValueError("SCANOPT_DISABLE=1 cannot run zero steps: the output types come from "
                         "running the step")
    return [np.stack(h) for h in history]
