"""The rest of Theano's scan: sequence and output taps, maps, until, strict, n_steps rules.

Every case runs the step through ``tests/theano_oracle.py`` (Theano's semantics in a plain loop)
and through scanopt, with the passes on and off, in float32 and float64.
"""

from __future__ import annotations

import numpy as np
import pytest

import scanopt
from conftest import assert_matches
from theano_oracle import theano_scan

F32, F64 = np.float32, np.float64


def check(fn, optimize, *, keep="all", **kwargs):
    expected = theano_scan(fn, **kwargs)
    actual = scanopt.scan(fn, optimize=optimize, keep=keep, **kwargs)
    if keep == "last":
        expected = [np.asarray(e[-1]) for e in expected] if isinstance(expected, list) else \
            np.asarray(expected[-1])
    assert_matches(actual, expected)
    return actual


@pytest.fixture(params=[F32, F64], ids=["f32", "f64"])
def dtype(request):
    return request.param


def data(shape, dtype=F64, seed=0, scale=1.0):
    return (scale * np.random.default_rng(seed).standard_normal(shape)).astype(dtype)


# --------------------------------------------------------------------------------------------
# Sequence taps
# --------------------------------------------------------------------------------------------

def two_taps(u_a, u_b, h, W):
    return np.tanh(u_a @ W + 0.5 * u_b + h)


@pytest.mark.parametrize("taps", [[-4, 0], [0, 2], [-2, 3], [-3, -1], [1, 3], [2, -1]],
                         ids=str)
@pytest.mark.parametrize("go_backwards", [False, True], ids=["fwd", "bwd"])
@pytest.mark.parametrize("n_steps", [None, 3], ids=["all", "n3"])
def test_sequence_taps(taps, go_backwards, n_steps, optimize, dtype):
    U, W = data((11, 2, 4), dtype, 1), data((4, 4), dtype, 2, 0.5)
    h0 = np.zeros((2, 4), dtype)
    out = check(two_taps, optimize, sequences=dict(input=U, taps=taps), outputs_info=h0,
                non_sequences=W, n_steps=n_steps, go_backwards=go_backwards)
    lo, hi = min(min(taps), 0), max(max(taps), 0)
    assert len(out) == (n_steps if n_steps is not None else 11 - (hi - lo))


def one_tap(u, h):
    return h + u


@pytest.mark.parametrize("taps", [None, [0], [-2], [3], 0, -1], ids=str)
def test_one_sequence_tap(taps, optimize):
    U = np.arange(10.0)
    sequence = dict(input=U) if taps == "missing" else dict(input=U, taps=taps)
    check(one_tap, optimize, sequences=sequence, outputs_info=np.float64(0))


def test_taps_key_missing_means_zero(optimize):
    check(one_tap, optimize, sequences=dict(input=np.arange(6.0)), outputs_info=np.float64(0))


def mixed_sequences(u_tm2, x_t, v_t, v_tp1, h):
    return h * 0.5 + u_tm2 + x_t * v_t - v_tp1


@pytest.mark.parametrize("go_backwards", [False, True], ids=["fwd", "bwd"])
def test_several_sequences_with_and_without_taps(go_backwards, optimize, dtype):
    U, X, V = (data((n, 3), dtype, seed) for seed, n in enumerate((9, 7, 12)))
    check(mixed_sequences, optimize, go_backwards=go_backwards,
          sequences=[dict(input=U, taps=[-2]), X, dict(input=V, taps=[0, 1])],
          outputs_info=np.zeros(3, dtype))


def test_push_out_with_taps_is_one_gemm_read_at_two_offsets():
    """``u[t-4] @ W`` and ``u[t] @ W`` become one GEMM over the sequence, read at two rows."""
    U, W = data((10, 2, 4), F32, 1), data((4, 4), F32, 2, 0.5)
    args = dict(sequences=dict(input=U, taps=[-4, 0]), outputs_info=np.zeros((2, 4), F32),
                non_sequences=W)
    source = scanopt.step(two_taps_gemm).source(**args)
    gemms = [line for line in source.splitlines()
             if " @ " in line and not line.strip().startswith("#")]
    assert len(gemms) == 1 and "for t in" not in source.split(gemms[0])[0], source
    assert "UW[t]" in source and "UW[t + 4]" in source, source
    check(two_taps_gemm, True, **args)


def two_taps_gemm(u_tm4, u_t, h, W):
    return np.tanh(u_tm4 @ W + u_t @ W + h)


def test_sequence_too_short_for_n_steps_names_it():
    with pytest.raises(scanopt.ScanValueError,
                       match=r"n_steps=3 is larger than sequences\[1\], which allows 2 steps "
                             r"with taps \[-4, 0\] \(6 rows\)"):
        scanopt.scan(mixed_two, sequences=[np.zeros(10), dict(input=np.zeros(6), taps=[-4, 0])],
                     outputs_info=np.float64(0), n_steps=3)


def mixed_two(a, b_tm4, b, h):
    return h + a + b_tm4 + b


@pytest.mark.parametrize("bad, message", [
    (dict(input=np.zeros(5), taps=[0, 0]), "every tap must be different"),
    (dict(input=np.zeros(5), taps=[0.5]), "taps must be integers"),
    (dict(input=np.zeros(5), taps=[]), "has no taps"),
    (dict(inputs=np.zeros(5)), "unknown keys"),
    (dict(taps=[0]), "without 'input'"),
])
def test_bad_sequence_dicts(bad, message):
    with pytest.raises(scanopt.ScanValueError, match=message):
        scanopt.scan(one_tap, sequences=bad, outputs_info=np.float64(0))


# --------------------------------------------------------------------------------------------
# Output taps (Theano's mit_sot)
# --------------------------------------------------------------------------------------------

def fibonacci(a, b):
    return a + b


def test_fibonacci(optimize):
    out = check(fibonacci, optimize, outputs_info=dict(initial=np.array([0, 1]), taps=[-2, -1]),
                n_steps=10)
    np.testing.assert_array_equal(out, [1, 2, 3, 5, 8, 13, 21, 34, 55, 89])


def rnn_with_taps(u_tm4, u_t, x_tm3, x_tm1, W_in, W):
    """Theano's documentation: x(t) = tanh(W x(t-1) + W_in_1 u(t) + W_in_2 u(t-4) + W_feedback
    y(t-1)), here with taps [-3, -1] on x."""
    return np.tanh(x_tm1 @ W + u_t @ W_in + u_tm4 @ W_in * 0.5 + 0.1 * x_tm3)


@pytest.mark.parametrize("go_backwards", [False, True], ids=["fwd", "bwd"])
@pytest.mark.parametrize("keep", ["all", "last"])
def test_sequence_and_output_taps(go_backwards, keep, optimize, dtype):
    U, W_in, W = data((14, 2, 3), dtype, 1), data((3, 4), dtype, 2, 0.5), \
        data((4, 4), dtype, 3, 0.5)
    x0 = data((3, 2, 4), dtype, 4)
    check(rnn_with_taps, optimize, keep=keep, go_backwards=go_backwards,
          sequences=dict(input=U, taps=[-4, 0]), outputs_info=dict(initial=x0, taps=[-3, -1]),
          non_sequences=[W_in, W])


def only_older(x_tm2, c):
    return x_tm2 * c + 1.0


@pytest.mark.parametrize("keep", ["all", "last"])
def test_single_output_tap_below_minus_one(keep, optimize):
    check(only_older, optimize, keep=keep,
          outputs_info=dict(initial=np.array([1.0, 2.0, 99.0]), taps=[-2]), non_sequences=0.5,
          n_steps=7)


def test_output_taps_minus_one_in_a_dict_is_the_plain_carry(optimize):
    check(one_tap, optimize, sequences=np.arange(5.0),
          outputs_info=dict(initial=np.float64(3), taps=[-1]))
    check(one_tap, optimize, sequences=np.arange(5.0), outputs_info=dict(initial=np.float64(3)))


def test_keep_last_with_output_taps_stores_only_the_taps():
    args = dict(outputs_info=dict(initial=np.array([0.0, 1.0]), taps=[-2, -1]), n_steps=50,
                keep="last")
    source = scanopt.step(fibonacci).source(**args)
    assert "np.empty" not in source, source  # no history: the two values the taps read
    assert scanopt.scan(fibonacci, **args) == theano_scan(fibonacci, outputs_info=args[
        "outputs_info"], n_steps=50)[-1]


def test_keep_last_with_output_taps_after_zero_steps_is_the_newest_initial_value():
    out = scanopt.scan(fibonacci, outputs_info=dict(initial=np.array([3.0, 4.0]), taps=[-2, -1]),
                       n_steps=0, keep="last")
    assert out == 4.0


@pytest.mark.parametrize("entry, message", [
    (dict(initial=np.zeros(3), taps=[-1, 1]), r"outputs_info: output taps must be negative"),
    (dict(initial=np.zeros(3), taps=[0]), r"outputs_info: output taps must be negative"),
    (dict(initial=np.zeros(1), taps=[-2, -1]), r"outputs_info: taps \[-2, -1\] read 2 "
                                               r"value\(s\) before the first step, but the "
                                               r"initial value has 1 row"),
    (dict(initial=np.float64(0), taps=[-2]), r"initial value has a scalar"),
    (dict(taps=[-2]), r"outputs_info gives taps but no initial value"),
    (dict(initial=np.zeros(3), tap=[-1]), r"unknown keys \['tap'\]"),
])
def test_invalid_output_taps_name_the_output(entry, message):
    with pytest.raises(scanopt.ScanValueError, match=message):
        scanopt.scan(fibonacci, outputs_info=entry, n_steps=3)
    indexed = message.replace("outputs_info", r"outputs_info\[1\]", 1)
    with pytest.raises(scanopt.ScanValueError, match=indexed):
        scanopt.scan(fibonacci, outputs_info=[None, entry], n_steps=3)


def wrong_type_with_taps(x_tm2, x_tm1):
    return (x_tm2 + x_tm1).astype(np.float32)


def test_output_taps_type_mismatch_names_the_output():
    with pytest.raises(scanopt.ScanTypeError, match=r"`x_tm1` has type float64\[\] but the step "
                                                    r"returns float32\[\]"):
        scanopt.scan(wrong_type_with_taps,
                     outputs_info=dict(initial=np.zeros(2), taps=[-2, -1]), n_steps=3)


# --------------------------------------------------------------------------------------------
# Maps: outputs that are not fed back
# --------------------------------------------------------------------------------------------

def squares(x):
    return x * x


def test_empty_outputs_info_is_a_map(optimize):
    check(squares, optimize, sequences=np.arange(6.0), outputs_info=[])


def map_and_carries(u_tm2, u_t, h, c):
    return u_t * 2.0, h + u_tm2, c * 0.5 + u_t, u_tm2


@pytest.mark.parametrize("keep", ["all", "last"])
def test_none_outputs_in_any_position(keep, optimize):
    """Per-step outputs before, between and after carries; one returns a tap input itself."""
    U = np.arange(8.0)
    check(map_and_carries, optimize, keep=keep, sequences=dict(input=U, taps=[-2, 0]),
          outputs_info=[None, np.float64(0), np.float64(1), None])


def returns_previous(x_t, h):
    return h + x_t, h


def test_a_per_step_output_may_be_the_previous_carry(optimize):
    check(returns_previous, optimize, sequences=np.arange(5.0),
          outputs_info=[np.float64(1), None])


# --------------------------------------------------------------------------------------------
# until
# --------------------------------------------------------------------------------------------

def newton(x, a):
    x_new = x - (x * x - a) / (2 * x)
    return x_new, scanopt.until(np.abs(x_new - x) < 1e-10)


@pytest.mark.parametrize("n_steps", [1, 3, 100, 10_000])
def test_until_newton(n_steps, optimize):
    out = check(newton, optimize, outputs_info=np.float64(1.0), non_sequences=2.0,
                n_steps=n_steps)
    assert len(out) == min(n_steps, 5)


def cumulative_until(x_t, total, limit):
    total = total + x_t
    return (total,), scanopt.until(total.sum() > limit)


@pytest.mark.parametrize("go_backwards", [False, True], ids=["fwd", "bwd"])
@pytest.mark.parametrize("keep", ["all", "last"])
def test_until_with_sequences(go_backwards, keep, optimize, dtype):
    X = np.abs(data((40, 3), dtype, 5))
    out = check(cumulative_until, optimize, keep=keep, go_backwards=go_backwards, sequences=X,
                outputs_info=np.zeros(3, dtype), non_sequences=10.0)
    if keep == "all":
        assert 0 < len(out) < 40


def never(x):
    return x + 1, scanopt.until(x < 0)


def at_once(x):
    return x + 1, scanopt.until(x >= 0)


def test_until_never_true_runs_n_steps(optimize):
    assert len(check(never, optimize, outputs_info=np.int64(0), n_steps=600)) == 600


def test_until_true_on_the_first_step_keeps_it(optimize):
    out = check(at_once, optimize, outputs_info=np.int64(0), n_steps=600)
    np.testing.assert_array_equal(out, [1])


def collatz(n):
    n_new = np.where(n % 2 == 0, n // 2, 3 * n + 1)
    return n_new, scanopt.until(n_new == 1)


@pytest.mark.parametrize("keep", ["all", "last"])
def test_until_with_an_integer_carry(keep, optimize):
    out = check(collatz, optimize, keep=keep, outputs_info=np.int64(27), n_steps=1000)
    if keep == "all":
        assert len(out) == 111 and out[-1] == 1


def until_with_taps_and_map(u_tm1, u_t, x_tm2, x_tm1):
    x = 0.5 * (x_tm2 + x_tm1) + u_t - u_tm1
    return x, x * 2, scanopt.until(np.abs(x).max() > 3)


@pytest.mark.parametrize("keep", ["all", "last"])
def test_until_with_taps_and_a_map_output(keep, optimize, dtype):
    U = np.cumsum(np.abs(data((60, 2), dtype, 7)), axis=0).astype(dtype)
    check(until_with_taps_and_map, optimize, keep=keep,
          sequences=dict(input=U, taps=[-1, 0]),
          outputs_info=[dict(initial=np.zeros((2, 2), dtype), taps=[-2, -1]), None])


def until_alone(x):
    return scanopt.until(x > 3)


def test_until_as_the_only_return(optimize):
    out = scanopt.scan(until_alone, sequences=np.arange(10.0), optimize=optimize)
    assert out == []
    assert theano_scan(until_alone, sequences=np.arange(10.0)) == []


def until_nested_tuple(x_t, h):
    h = h + x_t
    return (h, h * 2), scanopt.until(h > 4)


def test_until_after_a_tuple_of_outputs(optimize):
    check(until_nested_tuple, optimize, sequences=np.arange(10.0),
          outputs_info=[np.float64(0), None])


def until_not_scalar(h):
    return h + 1, scanopt.until(h > 3)


def until_not_last(h):
    return scanopt.until(h.sum() > 3), h + 1


def test_until_errors():
    with pytest.raises(scanopt.ScanValueError, match="scanopt.until needs a scalar condition, "
                                                     r"got a value of type bool\[3\]"):
        scanopt.scan(until_not_scalar, outputs_info=np.zeros(3), n_steps=4)
    with pytest.raises(scanopt.ScanValueError, match="must be the last value the step returns"):
        scanopt.scan(until_not_last, outputs_info=[None, np.zeros(3)], n_steps=4)


def until_with_draws(x, rng):
    x_new = x + rng.random(3)
    return x_new, scanopt.until(x_new.sum() > 20)


def test_until_with_random_draws_exact():
    out = scanopt.scan(until_with_draws, outputs_info=np.zeros(3),
                       non_sequences=np.random.default_rng(3), n_steps=500, exact_random=True)
    expected = theano_scan(until_with_draws, outputs_info=np.zeros(3),
                           non_sequences=np.random.default_rng(3), n_steps=500)
    np.testing.assert_array_equal(out, expected)


def test_until_with_pre_drawn_randoms_stops_early():
    """The fast path draws state-independent numbers for many steps at once; the loop still
    stops at the first step whose condition holds, and the history has only those steps."""
    out = scanopt.scan(until_with_draws, outputs_info=np.zeros(3),
                       non_sequences=np.random.default_rng(3), n_steps=100_000)
    assert 0 < len(out) < 100 and out[-1].sum() > 20 and out[-2].sum() <= 20


def test_until_histories_grow_past_their_first_rows(optimize):
    out = check(never, optimize, outputs_info=np.int64(0), n_steps=2000)
    np.testing.assert_array_equal(out, np.arange(1, 2001))


# --------------------------------------------------------------------------------------------
# strict, n_steps rules, Theano's keyword arguments
# --------------------------------------------------------------------------------------------

W_GLOBAL = np.eye(3)


def reads_a_global(h):
    return h @ W_GLOBAL


def test_strict_refuses_a_captured_array():
    with pytest.raises(scanopt.ScanValueError,
                       match=r"test_theano.py:\d+:\d+: error: `W_GLOBAL` is an array the step "
                             r"reads from its enclosing scope, which strict=True forbids"):
        scanopt.scan(reads_a_global, outputs_info=np.ones(3), n_steps=2, strict=True)
    out = scanopt.scan(reads_a_global, outputs_info=np.ones(3), n_steps=2)  # default: captured
    np.testing.assert_array_equal(out, np.ones((2, 3)))


SCALE = 2.0


def reads_a_constant(h, W):
    return h @ W * SCALE


def test_strict_accepts_parameters_and_constants():
    out = scanopt.scan(reads_a_constant, outputs_info=np.ones(3), non_sequences=np.eye(3),
                       n_steps=2, strict=True)
    np.testing.assert_array_equal(out, [[2, 2, 2], [4, 4, 4]])


def test_zero_steps_with_taps(optimize):
    out = check(rnn_with_taps, optimize, n_steps=0,
                sequences=dict(input=data((6, 2, 3)), taps=[-4, 0]),
                outputs_info=dict(initial=data((3, 2, 4)), taps=[-3, -1]),
                non_sequences=[data((3, 4)), data((4, 4))])
    assert out.shape == (0, 2, 4)


def test_n_steps_rules():
    with pytest.raises(scanopt.ScanValueError, match="n_steps must not be negative"):
        scanopt.scan(squares, sequences=np.arange(3.0), n_steps=-1)
    with pytest.raises(scanopt.ScanValueError, match="no sequences and n_steps is None"):
        scanopt.scan(squares, outputs_info=np.float64(1))
    with pytest.raises(scanopt.ScanValueError, match="n_steps must be an integer"):
        scanopt.scan(squares, sequences=np.arange(3.0), n_steps=2.0)


def test_theano_keywords_that_change_nothing_are_accepted():
    out = scanopt.scan(squares, np.arange(3.0), None, None, None, -1, False, "FAST_RUN",
                       "my_scan", False, False, False, True)
    assert isinstance(out, list) and len(out) == 1
    np.testing.assert_array_equal(out[0], [0, 1, 4])
    assert isinstance(scanopt.scan(squares, np.arange(3.0), return_list=True), list)


def test_go_backwards_in_truncate_gradients_place_is_refused():
    with pytest.raises(scanopt.ScanValueError, match="truncate_gradient must be -1 or a "
                                                     "positive integer, got True"):
        scanopt.scan(squares, np.arange(3.0), None, None, None, True)


def test_disabled_scanopt_runs_the_theano_loop(monkeypatch):
    monkeypatch.setenv("SCANOPT_DISABLE", "1")
    U, W_in, W = data((14, 2, 3)), data((3, 4), scale=0.5), data((4, 4), scale=0.5)
    args = dict(sequences=dict(input=U, taps=[-4, 0]),
                outputs_info=dict(initial=data((3, 2, 4)), taps=[-3, -1]),
                non_sequences=[W_in, W], go_backwards=True)
    np.testing.assert_array_equal(scanopt.scan(rnn_with_taps, **args),
                                  theano_scan(rnn_with_taps, **args))
    np.testing.assert_array_equal(scanopt.scan(collatz, outputs_info=np.int64(27), n_steps=500),
                                  theano_scan(collatz, outputs_info=np.int64(27), n_steps=500))
