"""Repeated calls: a call with the argument types of an earlier call skips the argument checks.

``scanopt.api`` remembers, per step function, the compiled loop and sequence windows of calls
whose arguments were plain arrays and scalars; a later call with the same containers, dtypes,
shapes, scalar types, ``n_steps`` and options reuses them. Every test here makes the second
call differ from the first in something that must still be honoured (values, captured
arrays, windows, bad input) and compares with the plain loop.
"""

from __future__ import annotations

import numpy as np
import pytest

import scanopt
from scanopt import api
from conftest import assert_matches, plain_loop

F32 = np.float32


@pytest.fixture(autouse=True)
def fresh_memory(monkeypatch):
    monkeypatch.delenv("SCANOPT_DISABLE", raising=False)
    scanopt.clear_cache()
    yield
    scanopt.clear_cache()


def rnn_step(x_t, h, W, U):
    return np.tanh(x_t @ W + h @ U)


def leaky_step(h, k):
    return k * h + (1.0 - k) * np.tanh(h)


def rnn_args(rng, T=6, B=3, H=4, dtype=F32):
    return (rng.standard_normal((T, B, H)).astype(dtype), rng.standard_normal((B, H)).astype(dtype),
            [rng.standard_normal((H, H)).astype(dtype) / 2, rng.standard_normal((H, H)).astype(dtype) / 2])


def remembered(fn) -> int:
    return len(api._REPEATS.get(fn, {}))


def test_a_repeat_reuses_the_loop_and_computes_with_the_new_values():
    rng = np.random.default_rng(0)
    for k in range(3):
        X, h0, params = rnn_args(rng)
        out = scanopt.scan(rnn_step, sequences=X, outputs_info=h0, non_sequences=params)
        assert_matches(out, plain_loop(rnn_step, X, h0, params))
    info = scanopt.cache_info()
    assert (info["misses"], info["hits"], info["size"]) == (1, 2, 1)
    assert remembered(rnn_step) == 1


def test_the_output_of_a_repeat_is_a_new_array():
    rng = np.random.default_rng(1)
    X, h0, params = rnn_args(rng)
    first = scanopt.scan(rnn_step, sequences=X, outputs_info=h0, non_sequences=params)
    kept = first.copy()
    second = scanopt.scan(rnn_step, sequences=X, outputs_info=h0, non_sequences=params)
    assert second is not first and not np.shares_memory(first, second)
    np.testing.assert_array_equal(first, kept)


def test_a_new_shape_dtype_or_container_is_a_new_key():
    rng = np.random.default_rng(2)
    calls = [rnn_args(rng), rnn_args(rng, B=5), rnn_args(rng, dtype=np.float64)]
    for X, h0, params in calls:
        out = scanopt.scan(rnn_step, sequences=X, outputs_info=h0, non_sequences=params)
        assert_matches(out, plain_loop(rnn_step, X, h0, params))
    X, h0, params = calls[0]
    out = scanopt.scan(rnn_step, sequences=[X], outputs_info=[h0], non_sequences=tuple(params))
    assert_matches(out, plain_loop(rnn_step, X, h0, params))
    assert remembered(rnn_step) == 4
    assert scanopt.cache_info()["size"] == 3  # the containers change no compiled loop


def test_python_scalar_values_are_read_on_every_call():
    h0 = np.ones(3, F32)
    for k in (0.5, 0.25, 0.9):
        out = scanopt.scan(leaky_step, outputs_info=h0, non_sequences=[k], n_steps=4)
        assert_matches(out, plain_loop(leaky_step, None, h0, [k], n_steps=4))
        assert out.dtype == F32
    assert scanopt.cache_info()["misses"] == 1
    # a NumPy float64 scalar is strong: a different key, and the carry drifts as in the loop
    with pytest.raises(scanopt.ScanTypeError):
        scanopt.scan(leaky_step, outputs_info=h0, non_sequences=[np.float64(0.5)], n_steps=4)


def test_windows_follow_n_steps_and_go_backwards():
    rng = np.random.default_rng(3)
    X, h0, params = rnn_args(rng, T=9)
    for n_steps, backwards in [(None, False), (5, False), (5, True), (None, True)]:
        for _ in range(2):
            Y = rng.standard_normal(X.shape).astype(F32)
            out = scanopt.scan(rnn_step, sequences=Y, outputs_info=h0, non_sequences=params,
                               n_steps=n_steps, go_backwards=backwards)
            assert_matches(out, plain_loop(rnn_step, Y, h0, params, n_steps=n_steps,
                                           go_backwards=backwards))


def test_unequal_sequences_use_the_shortest():
    def step(a_t, b_t, h):
        return h + a_t * b_t

    rng = np.random.default_rng(4)
    for _ in range(2):
        a, b = rng.standard_normal((7, 2)), rng.standard_normal((4, 2))
        out = scanopt.scan(step, sequences=[a, b], outputs_info=np.zeros(2))
        assert_matches(out, plain_loop(step, [a, b], np.zeros(2)))


SCALE = np.float32(2.0)


def scaled_step(h):
    return h * SCALE


def test_captured_values_are_fetched_and_checked_on_every_call():
    global SCALE
    h0 = np.ones(2, F32)
    try:
        for scale in (2.0, 3.0):
            SCALE = np.float32(scale)
            for _ in range(2):
                out = scanopt.scan(scaled_step, outputs_info=h0, n_steps=3, keep="last")
                np.testing.assert_array_equal(out, h0 * SCALE ** 3)
        # a float64 capture makes the carry drift: refused, as on a first call
        SCALE = np.float64(0.5)
        with pytest.raises(scanopt.ScanTypeError):
            scanopt.scan(scaled_step, outputs_info=h0, n_steps=3, keep="last")
    finally:
        SCALE = np.float32(2.0)


def test_a_step_compiled_by_value_is_not_remembered():
    def step(h, flag):
        if flag:
            return h + 1
        return h - 1

    h0 = np.zeros(2)
    for flag in (True, False, True, False):
        out = scanopt.scan(step, outputs_info=h0, non_sequences=[flag], n_steps=2)
        np.testing.assert_array_equal(out[-1], h0 + (2 if flag else -2))
    assert remembered(step) == 0


def test_bad_input_after_a_good_call_still_raises():
    rng = np.random.default_rng(5)
    X, h0, params = rnn_args(rng)
    scanopt.scan(rnn_step, sequences=X, outputs_info=h0, non_sequences=params)
    with pytest.raises(scanopt.ScanValueError, match="n_steps"):
        scanopt.scan(rnn_step, sequences=X, outputs_info=h0, non_sequences=params, n_steps=99)
    with pytest.raises(scanopt.ScanValueError, match="n_steps"):
        scanopt.scan(rnn_step, sequences=X, outputs_info=h0, non_sequences=params, n_steps=-1)
    with pytest.raises(scanopt.ScanTypeError):
        scanopt.scan(rnn_step, sequences=X, outputs_info=h0,
                     non_sequences=[np.matrix(params[0]), params[1]])
    with pytest.raises(scanopt.ScanTypeError):
        scanopt.scan(rnn_step, sequences=X, outputs_info=h0,
                     non_sequences=[params[0].astype(object), params[1]])


def test_disabling_after_a_call_runs_the_plain_loop(monkeypatch):
    rng = np.random.default_rng(6)
    X, h0, params = rnn_args(rng)
    scanopt.scan(rnn_step, sequences=X, outputs_info=h0, non_sequences=params)
    monkeypatch.setenv("SCANOPT_DISABLE", "1")
    calls = []

    def counting_step(x_t, h, W, U):
        calls.append(1)
        return rnn_step(x_t, h, W, U)

    scanopt.scan(counting_step, sequences=X, outputs_info=h0, non_sequences=params)
    hits = scanopt.cache_info()["hits"]
    out = scanopt.scan(rnn_step, sequences=X, outputs_info=h0, non_sequences=params)
    assert scanopt.cache_info()["hits"] == hits  # nothing compiled served it
    assert_matches(out, plain_loop(rnn_step, X, h0, params))
    assert len(calls) == len(X)


def test_clear_cache_forgets_repeats():
    rng = np.random.default_rng(7)
    X, h0, params = rnn_args(rng)
    scanopt.scan(rnn_step, sequences=X, outputs_info=h0, non_sequences=params)
    assert remembered(rnn_step) == 1
    scanopt.clear_cache()
    assert remembered(rnn_step) == 0


def test_random_generators_and_maps_repeat():
    def step(p, rng):
        return (rng.random(p.shape) < p).astype(p.dtype)

    p = np.full((5, 3), 0.5)
    for seed in (1, 2):
        out = scanopt.scan(step, sequences=p, outputs_info=None,
                           non_sequences=[np.random.default_rng(seed)], exact_random=True)
        expected = plain_loop(step, p, None, [np.random.default_rng(seed)])
        np.testing.assert_array_equal(out, expected)
    assert remembered(step) == 1


def test_only_plain_values_are_remembered():
    rng = np.random.default_rng(8)
    X, h0, params = rnn_args(rng, dtype=np.float64)
    # a list of numbers, a dict with taps, an ndarray subclass: the full path every time
    for seq in ([X.tolist()], dict(input=X, taps=[0])):
        for _ in range(2):
            out = scanopt.scan(rnn_step, sequences=seq, outputs_info=h0, non_sequences=params)
            assert_matches(out, plain_loop(rnn_step, X, h0, params))
    assert remembered(rnn_step) == 0
