"""Generated-code hygiene and aliasing (issue 6, part 5).

- Aliasing: inputs are never written (they are passed read-only, and compared byte for byte);
  returned arrays share no memory with inputs, with each other, with the loop's workspace, or
  with the results of other calls, and a later call changes no earlier result.
"""

from __future__ import annotations

import copy
import itertools

import numpy as np
import pytest

import scanopt
from scanopt.lowering import numpy_emitter
from conftest import as_list, assert_matches, plain_loop


# --------------------------------------------------------------------------------------------
# The check every case goes through
# --------------------------------------------------------------------------------------------

def _inputs(kw) -> list[np.ndarray]:
    return [a for key in ("sequences", "outputs_info", "non_sequences")
            for a in as_list(kw.get(key)) if isinstance(a, np.ndarray)]


def _read_only(kw):
    """The arguments with every array read-only: a write into an input raises."""
    for a in _inputs(kw):
        a.flags.writeable = False
    return kw


def _expected(fn, kw, keep):
    """The plain loop's result, reduced to ``result[-1]`` for outputs kept last (a copy of the
    initial value after zero steps, docs/semantics.md)."""
    result = plain_loop(fn, **copy.deepcopy(kw))
    outs = result if isinstance(result, list) else [result]
    keeps = [keep] * len(outs) if isinstance(keep, str) else keep
    inits = as_list(kw.get("outputs_info")) or [None] * len(outs)
    outs = [(o[-1] if len(o) else np.array(init, copy=True)) if k == "last" else o
            for o, k, init in zip(outs, keeps, inits)]
    return outs if isinstance(result, list) else outs[0]


def _compiled(fn) -> list:
    """The compiled loops of ``fn`` in the in-memory cache."""
    return [entry for key, entries in scanopt.api._STATS.entries.items()
            if key[0] is fn.__code__ for entry in entries]


def _workspace_arrays(fn) -> list[np.ndarray]:
    """The arrays of every spare workspace of ``fn``'s compiled loops."""
    return [a for entry in _compiled(fn)
            for work in entry.run.__globals__.get("_spare_workspaces", [])
            for a in work.values() if isinstance(a, np.ndarray)]


def _outputs(result) -> list[np.ndarray]:
    return result if isinstance(result, list) else [result]


def _assert_disjoint(results: list[np.ndarray], others: list[np.ndarray]):
    for k, a in enumerate(results):
        for b in results[k + 1:]:
            assert not np.shares_memory(a, b), "two returned arrays share memory"
        for b in others:
            assert not np.shares_memory(a, b), "a returned array shares memory with an input " \
                                               "or a workspace"


def check(fn, make, *, optimize=True, keep="all", captured=(), **options):
    """Two calls with different data (``make(seed)`` gives the arguments): each equals the plain
    loop, no input is written, the first result survives the second call, and no returned array
    shares memory with another, with an input, a captured array, or the workspace."""
    kw1, kw2 = _read_only(make(1)), _read_only(make(2))
    before = [a.tobytes() for a in [*_inputs(kw1), *captured]]
    first = scanopt.scan(fn, optimize=optimize, keep=keep, **options, **kw1)
    assert_matches(first, _expected(fn, make(1), keep))
    assert [a.tobytes() for a in [*_inputs(kw1), *captured]] == before, "an input was written"
    saved = [a.copy() for a in _outputs(first)]
    second = scanopt.scan(fn, optimize=optimize, keep=keep, **options, **kw2)
    assert_matches(second, _expected(fn, make(2), keep))
    for a, s in zip(_outputs(first), saved):
        np.testing.assert_array_equal(a, s, err_msg="a later call changed an earlier result")
    _assert_disjoint(_outputs(first) + _outputs(second),
                     [*_inputs(kw1), *_inputs(kw2), *captured, *_workspace_arrays(fn)])
    return first


def _data(n_seqs=1, n_carries=1, n_outs=0, n_params=1, rng=False, steps=5):
    """``make(seed)`` for steps over (3, 4) slices with (4, 4) weights."""
    def make(seed):
        r = np.random.default_rng(seed)
        kw = dict(outputs_info=[r.standard_normal((3, 4)) for _ in range(n_carries)]
                  + [None] * n_outs,
                  non_sequences=[r.standard_normal((4, 4)) for _ in range(n_params)]
                  + ([np.random.default_rng(seed + 100)] if rng else []))
        if n_seqs:  # longer than n_steps, and of another length in each call
            kw["sequences"] = [r.standard_normal((steps + seed, 3, 4)) for _ in range(n_seqs)]
        kw["n_steps"] = steps
        return kw
    return make


# --------------------------------------------------------------------------------------------
# Aliasing
# --------------------------------------------------------------------------------------------

CAPTURED = np.random.default_rng(9).standard_normal((3, 4))


def carry_reversed(x_t, h, W):
    return h[::-1]


def carry_is_the_slice(x_t, h, W):
    return x_t


def carry_unchanged(x_t, h, W):
    return h


def carry_is_captured(x_t, h, W):
    return CAPTURED


def carry_through_reshapes(h, W):
    return h.reshape(4, 3).reshape(3, 4)


def same_dtype_astype(x_t, h, W):
    return (h @ W).astype(np.float64)


def swapped_carries(x_t, h, c, W):
    return c, h


def same_value_twice(x_t, h, c, W):
    return h, h


def slice_twice(x_t, h, c, W):
    return x_t, x_t


def output_and_its_transpose(x_t, h, W):  # the transpose is sunk after the loop: a view of hs
    hn = np.tanh(h @ W)
    return hn, hn.T


def output_and_its_reverse(x_t, h, W):
    hn = np.tanh(h @ W)
    return hn, hn[::-1]


def reversed_carry_and_carry(x_t, h, W):
    return h[:, ::-1], h


def non_sequence_as_output(x_t, h, W):
    return h @ W, W


def captured_as_output(x_t, h, W):
    return CAPTURED + h, CAPTURED


def slice_as_output(x_t, h, W):
    return x_t + h, x_t


def three_outputs_one_value(x_t, h, W):
    y = h @ W
    return np.tanh(y), y, y


def per_step_and_transpose(x_t, W):
    y = x_t @ W
    return y, y.T


def non_sequence_only(x_t, W):
    return W


def reversed_slice_only(x_t, W):
    return x_t[::-1]


def passes_on_previous(h, c, s):  # c is the previous h: read two steps after h was written
    hn = np.tanh(h)
    return hn, h, s + c


def passes_on_previous_scaled(h, c, s):
    hn = np.tanh(h)
    sn = s + c * 2
    return hn, h, sn


def passes_on_previous_reversed(h, c):
    return np.tanh(h) + 0.5, h[::-1]


def reads_old_value_after_new(h, c):
    cn = c + h
    hn = np.tanh(cn)
    return hn, h


def _keeps(n):
    return ["all", "last", *map(list, itertools.product(["all", "last"], repeat=n))] \
        if n > 1 else ["all", "last"]


# function → (data, number of outputs, captured arrays)
ALIASING = {
    carry_reversed: (_data(), 1, ()),
    carry_is_the_slice: (_data(), 1, ()),
    carry_unchanged: (_data(), 1, ()),
    carry_is_captured: (_data(), 1, (CAPTURED,)),
    carry_through_reshapes: (_data(n_seqs=0), 1, ()),
    same_dtype_astype: (_data(), 1, ()),
    swapped_carries: (_data(n_carries=2), 2, ()),
    same_value_twice: (_data(n_carries=2), 2, ()),
    slice_twice: (_data(n_carries=2), 2, ()),
    output_and_its_transpose: (_data(n_outs=1), 2, ()),
    output_and_its_reverse: (_data(n_outs=1), 2, ()),
    reversed_carry_and_carry: (_data(n_outs=1), 2, ()),
    non_sequence_as_output: (_data(n_outs=1), 2, ()),
    captured_as_output: (_data(n_outs=1), 2, (CAPTURED,)),
    slice_as_output: (_data(n_outs=1), 2, ()),
    three_outputs_one_value: (_data(n_outs=2), 3, ()),
    per_step_and_transpose: (_data(n_carries=0, n_outs=2), 2, ()),
    non_sequence_only: (_data(n_carries=0, n_outs=1), 1, ()),
    reversed_slice_only: (_data(n_carries=0, n_outs=1), 1, ()),
    passes_on_previous: (_data(n_seqs=0, n_carries=3, n_params=0), 3, ()),
    passes_on_previous_scaled: (_data(n_seqs=0, n_carries=3, n_params=0), 3, ()),
    passes_on_previous_reversed: (_data(n_seqs=0, n_carries=2, n_params=0), 2, ()),
    reads_old_value_after_new: (_data(n_seqs=0, n_carries=2, n_params=0), 2, ()),
}


def _with_steps(make, steps):
    def made(seed):
        kw = make(seed)
        kw["n_steps"] = steps
        return kw
    return made


@pytest.mark.parametrize("fn", list(ALIASING), ids=lambda f: f.__name__)
def test_results_are_fresh_and_inputs_untouched(fn, optimize):
    make, n_outputs, captured = ALIASING[fn]
    n_carries = sum(v is not None for v in make(0)["outputs_info"])
    for keep, steps in itertools.product(_keeps(n_outputs), (5, 0)):
        keeps = [keep] * n_outputs if isinstance(keep, str) else keep
        if steps == 0 and "last" in keeps[n_carries:]:
            continue  # the last value of an output that is not fed back: an error
        check(fn, _with_steps(make, steps), optimize=optimize, keep=keep, captured=captured)


def _backwards_strided(make):
    """The same data as strided sequences, a Fortran-ordered initial state, go_backwards."""
    def made(seed):
        kw = make(seed)
        kw["sequences"] = [np.repeat(s, 2, axis=-1)[..., ::2] for s in kw["sequences"]]
        kw["outputs_info"] = [None if v is None else np.asfortranarray(v)
                              for v in kw["outputs_info"]]
        kw["go_backwards"] = True
        return kw
    return made


@pytest.mark.parametrize("fn", [carry_is_the_slice, slice_twice, slice_as_output,
                                reversed_slice_only, output_and_its_transpose, carry_unchanged],
                         ids=lambda f: f.__name__)
def test_results_are_fresh_backwards_and_from_strided_inputs(fn, optimize):
    make, n_outputs, captured = ALIASING[fn]
    for keep in ("all", "last"):
        check(fn, _backwards_strided(make), optimize=optimize, keep=keep, captured=captured)


def noise_carry(h, acc, rng):  # the carry is a pre-drawn number itself
    return rng.random((3, 4)), acc + h


def noise_carry_reversed(h, acc, rng):
    u = rng.standard_normal((3, 4))
    return u[::-1], acc + h


def noise_and_moving_average(e, y, rng):  # an MA(1) process
    e_new = rng.standard_normal((3, 4))
    return e_new, e_new + 0.5 * e + 0 * y


@pytest.mark.parametrize("fn", [noise_carry, noise_carry_reversed, noise_and_moving_average],
                         ids=lambda f: f.__name__)
def test_a_carry_drawn_in_chunks_survives_the_next_chunk(fn, optimize, monkeypatch):
    """Pre-drawn numbers live in a workspace array that each chunk's draws overwrite: a carry
    that is one of them must be carried as a copy. (Chunks are at most 64 MiB; here 3 steps.)"""
    monkeypatch.setattr(numpy_emitter, "PREDRAW_BYTES", 3 * 3 * 4 * 8)
    make = _data(n_seqs=0, n_carries=2, n_params=0, rng=True, steps=10)
    if optimize:
        source = scanopt.step(fn).source(**make(1), optimize=optimize)
        assert "for t0 in range(0, n_steps, 3)" in source
    for keep in _keeps(2):
        check(fn, make, optimize=optimize, keep=keep)
