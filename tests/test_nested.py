"""A ``scanopt.scan`` inside a step compiles to a loop nested in the step's loop (as Theano
allows), checked against the plain loop, which calls scanopt.scan itself at every outer step."""

from __future__ import annotations

import numpy as np
import pytest

import scanopt
from conftest import assert_matches, plain_loop
from theano_oracle import theano_scan


def check(fn, optimize, **kwargs):
    expected = plain_loop(fn, **kwargs)
    actual = scanopt.scan(fn, optimize=optimize, **kwargs)
    assert_matches(actual, expected)
    return actual


def data(shape, seed=0, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def inner_step(y, acc, h):
    return acc + y * h


def rows_then_tanh(x_t, h):
    accs = scanopt.scan(inner_step, sequences=x_t, outputs_info=np.zeros(3), non_sequences=h)
    return np.tanh(accs[-1] + h)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_inner_loop_over_the_rows_of_a_slice(optimize, dtype):
    X = data((4, 5, 3), 1, dtype)
    h0 = np.zeros(3, dtype)

    def step(x_t, h):
        accs = scanopt.scan(inner_step, sequences=x_t, outputs_info=np.zeros(3, dtype),
                            non_sequences=h)
        return np.tanh(accs[-1] + h)

    check(step, optimize, sequences=X, outputs_info=h0)


def test_the_nested_loop_is_in_the_generated_module():
    source = scanopt.step(rows_then_tanh).source(sequences=data((4, 5, 3)),
                                                 outputs_info=np.zeros(3))
    assert "for t_1 in range(" in source and "import scanopt" not in source


def closes_over_the_carry(k_t, h):
    # The inner step reads h from the enclosing step; n_steps is a value of the outer loop.
    ys = scanopt.scan(lambda c: c * 0.5 + h, outputs_info=np.zeros(3), n_steps=k_t)
    return h + ys.sum(axis=0)


def test_inner_n_steps_from_the_outer_step_down_to_zero(optimize):
    check(closes_over_the_carry, optimize, sequences=np.array([0, 2, 3, 0, 1]),
          outputs_info=np.ones(3))


def inner_keep_last(x_t, h):
    last = scanopt.scan(lambda y, a: a * 0.9 + y, sequences=x_t, outputs_info=h,
                        keep="last")
    return last


def test_inner_keep_last(optimize):
    check(inner_keep_last, optimize, sequences=data((6, 4, 3), 2), outputs_info=np.zeros(3))


def inner_map_and_backwards(x_t, h):
    squares = scanopt.scan(lambda y: y * y, sequences=x_t)
    backwards = scanopt.scan(lambda y, a: a * 0.5 + y, sequences=x_t, outputs_info=h,
                             go_backwards=True)
    return h + squares.sum(axis=0) * 0.01 + backwards[-1] * 0.1, squares[0]


def test_inner_map_and_go_backwards(optimize):
    check(inner_map_and_backwards, optimize, sequences=data((5, 4, 3), 3),
          outputs_info=[np.zeros(3), None])


def newton_inner(a_t):
    roots = scanopt.scan(lambda x, a: (x - (x * x - a) / (2 * x),
                                       scanopt.until(np.abs(x * x - a) < 1e-12)),
                         outputs_info=np.float64(1.0), non_sequences=a_t, n_steps=100)
    return roots[-1], roots.shape[0]


def test_inner_until(optimize):
    A = np.array([2.0, 9.0, 1.0, 100.0])
    roots, counts = scanopt.scan(newton_inner, sequences=A, optimize=optimize)
    expected_roots, expected_counts = theano_scan(newton_inner, sequences=A)
    np.testing.assert_allclose(roots, expected_roots)
    np.testing.assert_array_equal(counts, expected_counts)


W_INNER = np.eye(3) * 0.5


def three_levels(x_t, h):
    def middle(row, acc):
        inner = scanopt.scan(lambda v, b: b + v @ W_INNER, sequences=row[None, :],
                             outputs_info=acc)
        return inner[-1]
    accs = scanopt.scan(middle, sequences=x_t, outputs_info=h)
    return accs[-1]


def test_three_levels_and_a_global_first_read_in_the_innermost(optimize):
    check(three_levels, optimize, sequences=data((3, 4, 3), 4), outputs_info=np.zeros(3))


def strict_inner(x_t, h):
    return scanopt.scan(lambda y, a: a + y * h, sequences=x_t, outputs_info=h,
                        strict=True)[-1]


def test_strict_inner_scan_refuses_values_of_the_enclosing_step():
    with pytest.raises(scanopt.ScanValueError, match="from the enclosing step, which "
                                                     "strict=True forbids"):
        scanopt.scan(strict_inner, sequences=data((3, 4, 3)), outputs_info=np.zeros(3))


def inner_type_drift(x_t, h):
    return scanopt.scan(lambda y, a: (a + y).astype(np.float32), sequences=x_t,
                        outputs_info=h)[-1]


def test_inner_carry_type_drift_is_a_type_error():
    with pytest.raises(scanopt.ScanTypeError, match=r"inner carry #1 has type float64\[3\] "
                                                    r"but the inner step returns "
                                                    r"float32\[3\]"):
        scanopt.scan(inner_type_drift, sequences=data((3, 4, 3)), outputs_info=np.zeros(3))


def inner_random(h, rng):
    draws = scanopt.scan(lambda a, r: a + r.standard_normal(3), outputs_info=h,
                         non_sequences=rng, n_steps=4)
    return draws[-1]


def test_inner_random_draws_in_the_plain_loops_order():
    out = scanopt.scan(inner_random, outputs_info=np.zeros(3),
                       non_sequences=np.random.default_rng(11), n_steps=3, exact_random=True)
    expected = plain_loop(inner_random, outputs_info=np.zeros(3),
                          non_sequences=np.random.default_rng(11), n_steps=3)
    np.testing.assert_array_equal(out, expected)


def inner_taps(x_t, h):
    return scanopt.scan(lambda a, b, c: c + a + b, sequences=dict(input=x_t, taps=[-1, 0]),
                        outputs_info=h)[-1]


def test_taps_in_a_nested_scan_are_refused_clearly():
    with pytest.raises(scanopt.UnsupportedSyntax, match="taps in a scan nested in a step are "
                                                        "not supported yet"):
        scanopt.scan(inner_taps, sequences=data((3, 4, 3)), outputs_info=np.zeros(3))
