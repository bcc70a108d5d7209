"""The plain Python loop that defines what ``scanopt.scan`` computes.

``SCANOPT_DISABLE=1`` makes ``scanopt.scan`` run this loop instead of compiling, which is also what
a user can compare against. It takes the call as ``scanopt.api`` normalised it: each sequence's
window and taps, each output's initial value(s) and taps (see ``scanopt.arguments``).
"""

from __future__ import annotations

import numpy as np



def split_until(out) -> tuple[list, object | None]:
    """The returned values and the ``until`` condition (None without one), as the step
    returns them: ``until(c)``, ``h, c_, until(c)`` or ``(h, c_), until(c)``."""
    from scanopt.api import until

    if isinstance(out, until):
        return [], out.condition
    values = list(out) if isinstance(out, (tuple, list)) else [out]
    if values and isinstance(values[-1], until):
        condition = values.pop().condition
        if len(values) == 1 and isinstance(values[0], (tuple, list)):
            values = list(values[0])
        return values, condition
    return values, None


def reference_scan(fn, call, keep="all") -> list:
    """Run ``fn`` step by step; returns the list of outputs (``keep`` applied)."""
    n_steps, reverse = call.n_steps, call.key[3]
    # What each fed-back output's taps can read: the values before this step, oldest first.
    past = [None if taps is None else
            ([init] if taps == (-1,) else list(init))
            for init, taps in zip(call.inits, call.init_taps)]
    history: list[list] | None = None
    for t in range(n_steps):
        row = n_steps - 1 - t if reverse else t
        args = []
        for window, taps in zip(call.sequences, call.seq_taps):
            args.extend(window[row + k - min(taps)] for k in taps)
        for values, taps in zip(past, call.init_taps):
            if taps is not None:
                args.extend(values[len(values) + k] for k in taps)
        args.extend(call.non_sequences)
        out, condition = split_until(fn(*args))
        if history is None:
            history = [[] for _ in out]
        for k, value in enumerate(out):
            history[k].append(value)
            if k < len(past) and past[k] is not None:
                past[k] = [*past[k][1:], np.asarray(value)]  # fed back as an array
        if condition is not None and condition:
            break
    if history is None:
        raise ValueError("SCANOPT_DISABLE=1 cannot run zero steps: the output types come from "
                         "running the step")
    outs = [np.stack(h) if h else np.empty((0,)) for h in history]
    keeps = [keep] * len(outs) if isinstance(keep, str) else list(keep)
    return [o[-1] if k == "last" else o for o, k in zip(outs, keeps)]


def reference_carry_scan(f, init, xs, n_steps: int, reverse: bool):
    """JAX's ``lax.scan`` loop on NumPy values (``scanopt.carry_scan`` under SCANOPT_DISABLE)."""
    from scanopt import pytree

    x_leaves, x_def, _ = pytree.flatten(xs)
    carry_leaves, carry_def, _ = pytree.flatten(init)
    carry = pytree.unflatten(carry_def, [np.asarray(v) for v in carry_leaves])
    ys = []
    for i in (reversed(range(n_steps)) if reverse else range(n_steps)):
        carry, y = f(carry, pytree.unflatten(x_def, [np.asarray(v)[i] for v in x_leaves]))
        ys.append(y)
    if not ys:
        raise ValueError("SCANOPT_DISABLE=1 cannot run zero steps: the output types come from "
                         "running the step")
    if reverse:
        ys = ys[::-1]
    y_leaves = [pytree.flatten(y)[0] for y in ys]
    stacked = [np.stack([leaves[k] for leaves in y_leaves]) for k in range(len(y_leaves[0]))]
    return carry, pytree.unflatten(pytree.flatten(ys[0])[1], stacked)
