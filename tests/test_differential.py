"""Differential tests: ``scanopt.scan(...)`` against the plain Python loop (tests/conftest.py).

Every case runs with the optimisation passes on and off (the ``optimize`` fixture). Step
functions live at module level where possible (scanopt reads their source with ``inspect``);
closure cases define them inside the test on purpose.
"""

import numpy as np
import pytest

import scanopt
from conftest import assert_matches, assert_same_values, plain_loop

T, B, D, H = 6, 3, 4, 5


def randn(rng, shape, dtype=np.float64, scale=1.0):
    return (scale * rng.standard_normal(shape)).astype(dtype)


def check(fn, optimize, **kw):
    """Run the oracle and scanopt with the same arguments; return (actual, expected)."""
    expected = plain_loop(fn, **kw)
    actual = scanopt.scan(fn, optimize=optimize, **kw)
    assert_matches(actual, expected)
    return actual, expected


@pytest.fixture(params=[np.float32, np.float64], ids=["f32", "f64"])
def dtype(request):
    return request.param


# --------------------------------------------------------------------------------------------
# Step functions used by several tests
# --------------------------------------------------------------------------------------------

def elman_step(x_t, h, W, U, b):
    return np.tanh(x_t @ W + h @ U + b)


def elman_data(rng, dtype=np.float64, t=T):
    X = randn(rng, (t, B, D), dtype)
    h0 = randn(rng, (B, H), dtype, 0.5)
    W = randn(rng, (D, H), dtype, 0.5)
    U = randn(rng, (H, H), dtype, 0.4)
    b = randn(rng, (H,), dtype, 0.1)
    return X, h0, [W, U, b]


def lstm_step(x_t, h, c, W_i, W_f, W_o, W_c, U_i, U_f, U_o, U_c, b_i, b_f, b_o, b_c):
    i = 1 / (1 + np.exp(-(x_t @ W_i + h @ U_i + b_i)))
    f = 1 / (1 + np.exp(-(x_t @ W_f + h @ U_f + b_f)))
    o = 1 / (1 + np.exp(-(x_t @ W_o + h @ U_o + b_o)))
    g = np.tanh(x_t @ W_c + h @ U_c + b_c)
    c = f * c + i * g
    h = o * np.tanh(c)
    return h, c


def lstm_data(rng, dtype=np.float64):
    X = randn(rng, (T, B, D), dtype)
    h0 = randn(rng, (B, H), dtype, 0.5)
    c0 = randn(rng, (B, H), dtype, 0.5)
    Ws = [randn(rng, (D, H), dtype, 0.5) for _ in range(4)]
    Us = [randn(rng, (H, H), dtype, 0.4) for _ in range(4)]
    bs = [randn(rng, (H,), dtype, 0.1) for _ in range(4)]
    return X, [h0, c0], Ws + Us + bs


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def _affine(x, W, b):
    return x @ W + b


def gru_step(x_t, h, W_z, W_r, W_h, U_z, U_r, U_h, b_z, b_r, b_h):
    z = _sigmoid(x_t @ W_z + h @ U_z + b_z)
    r = _sigmoid(x_t @ W_r + h @ U_r + b_r)
    h_tilde = np.tanh(x_t @ W_h + (r * h) @ U_h + b_h)
    return (1 - z) * h + z * h_tilde


def gibbs_step(vsample, W, bvis, bhid, rng):
    hmean = 1 / (1 + np.exp(-(vsample @ W + bhid)))
    hsample = rng.binomial(1, hmean).astype(np.float32)
    vmean = 1 / (1 + np.exp(-(hsample @ W.T + bvis)))
    return rng.binomial(1, vmean).astype(np.float32)


def gibbs_data(seed, batch):
    rng = np.random.default_rng(seed)
    n_vis, n_hid = 12, 7
    shape = (n_vis,) if batch is None else (batch, n_vis)
    v0 = (rng.random(shape) < 0.5).astype(np.float32)
    W = randn(rng, (n_vis, n_hid), np.float32, 0.8)
    bvis = randn(rng, (n_vis,), np.float32, 0.3)
    bhid = randn(rng, (n_hid,), np.float32, 0.3)
    return v0, W, bvis, bhid


# --------------------------------------------------------------------------------------------
# The classic models
# --------------------------------------------------------------------------------------------

def test_elman_rnn(optimize, dtype):
    X, h0, params = elman_data(np.random.default_rng(0), dtype)
    actual, _ = check(elman_step, optimize, sequences=X, outputs_info=h0, non_sequences=params)
    assert actual.shape == (T, B, H) and actual.dtype == dtype


def test_lstm_unmerged(optimize, dtype):
    X, inits, params = lstm_data(np.random.default_rng(1), dtype)
    actual, _ = check(lstm_step, optimize, sequences=[X], outputs_info=inits,
                      non_sequences=params)
    assert [a.shape for a in actual] == [(T, B, H), (T, B, H)]


def test_gru(optimize, dtype):
    rng = np.random.default_rng(2)
    X = randn(rng, (T, B, D), dtype)
    h0 = randn(rng, (B, H), dtype, 0.5)
    params = ([randn(rng, (D, H), dtype, 0.5) for _ in range(3)]
              + [randn(rng, (H, H), dtype, 0.4) for _ in range(3)]
              + [randn(rng, (H,), dtype, 0.1) for _ in range(3)])
    check(gru_step, optimize, sequences=X, outputs_info=[h0], non_sequences=params)


@pytest.mark.parametrize("batch", [None, 4], ids=["vector", "batch4"])
def test_rbm_gibbs_chain_exact_random(optimize, batch):
    v0, W, bvis, bhid = gibbs_data(3, batch)
    rng_scan = np.random.default_rng(1234)
    rng_loop = np.random.default_rng(1234)
    actual = scanopt.scan(gibbs_step, outputs_info=v0, non_sequences=[W, bvis, bhid, rng_scan],
                          n_steps=10, exact_random=True, optimize=optimize)
    expected = plain_loop(gibbs_step, outputs_info=v0, non_sequences=[W, bvis, bhid, rng_loop],
                          n_steps=10)
    assert isinstance(actual, np.ndarray)
    assert actual.shape == expected.shape == (10,) + v0.shape
    assert actual.dtype == expected.dtype == np.float32
    np.testing.assert_array_equal(actual, expected)
    # Same calls in the same order: both generators end in the same state.
    assert rng_scan.bit_generator.state == rng_loop.bit_generator.state


def polynomial_term(coefficient, power, free_variable):
    return coefficient * (free_variable ** power)


def test_polynomial_outputs_info_none(optimize):
    # Theano's documentation example: coefficients as a sequence, x as a non-sequence, the
    # powers from a longer np.arange sequence (the loop runs over the shortest).
    coefficients = np.random.default_rng(4).standard_normal(7)
    x = 1.5
    max_coefficients_supported = 100
    components, _ = check(polynomial_term, optimize,
                          sequences=[coefficients, np.arange(max_coefficients_supported)],
                          outputs_info=[None], non_sequences=x)
    assert components.shape == (7,)
    np.testing.assert_allclose(components.sum(),
                               np.polynomial.polynomial.polyval(x, coefficients), rtol=1e-12)


def two_carries_one_output_step(x_t, h, c, W, U, V):
    c_new = 0.9 * c + np.tanh(x_t @ W + h @ U)
    h_new = np.tanh(c_new)
    y = h_new @ V
    return h_new, c_new, y


def test_several_carries_plus_per_step_output(optimize, dtype):
    rng = np.random.default_rng(5)
    X = randn(rng, (T, B, D), dtype)
    h0, c0 = randn(rng, (B, H), dtype), randn(rng, (B, H), dtype)
    W, U, V = randn(rng, (D, H), dtype, 0.5), randn(rng, (H, H), dtype, 0.4), randn(rng, (H, 2), dtype)
    actual, _ = check(two_carries_one_output_step, optimize, sequences=X,
                      outputs_info=[h0, c0, None], non_sequences=[W, U, V])
    assert [a.shape for a in actual] == [(T, B, H), (T, B, H), (T, B, 2)]


def output_in_the_middle_step(x_t, h, c, W):
    h_new = np.tanh(x_t @ W + c)
    return h_new, h_new.sum(axis=1), c * 0.5 + h


def test_per_step_output_between_carries(optimize):
    # outputs_info=[h0, None, c0]: the step receives (x_t, h, c) and returns (h, y, c).
    rng = np.random.default_rng(6)
    X, W = randn(rng, (T, B, D)), randn(rng, (D, H))
    h0, c0 = randn(rng, (B, H)), randn(rng, (B, H))
    actual, _ = check(output_in_the_middle_step, optimize, sequences=X,
                      outputs_info=[h0, None, c0], non_sequences=W)
    assert [a.shape for a in actual] == [(T, B, H), (T, B), (T, B, H)]


# --------------------------------------------------------------------------------------------
# Iteration: go_backwards, n_steps, unequal lengths, zero steps
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n_steps", [None, 4, T], ids=["all", "n4", "nT"])
def test_go_backwards(optimize, dtype, n_steps):
    X, h0, params = elman_data(np.random.default_rng(7), dtype)
    check(elman_step, optimize, sequences=X, outputs_info=h0, non_sequences=params,
          n_steps=n_steps, go_backwards=True)


def per_step_identity(x_t):
    return x_t


def test_go_backwards_order_of_outputs(optimize):
    # Outputs are in iteration order, and (Theano's rule) a sequence is read from its end: with
    # n_steps=5 of 8 rows, the steps read rows 7, 6, 5, 4, 3.
    X = np.arange(8 * 2, dtype=np.float64).reshape(8, 2)
    actual, _ = check(per_step_identity, optimize, sequences=X, n_steps=5, go_backwards=True)
    np.testing.assert_array_equal(actual, X[::-1][:5])


def test_n_steps_smaller_than_sequence(optimize):
    X, h0, params = elman_data(np.random.default_rng(8))
    actual, _ = check(elman_step, optimize, sequences=X, outputs_info=h0, non_sequences=params,
                      n_steps=3)
    assert actual.shape == (3, B, H)


def two_sequence_step(x_t, y_t, h, W):
    return np.tanh(x_t @ W + y_t + h)


@pytest.mark.parametrize("go_backwards", [False, True], ids=["fwd", "bwd"])
def test_unequal_length_sequences_use_shortest(optimize, go_backwards):
    rng = np.random.default_rng(9)
    X, Y = randn(rng, (T, B, D)), randn(rng, (T - 2, B, H))
    h0, W = randn(rng, (B, H)), randn(rng, (D, H), scale=0.5)
    actual, _ = check(two_sequence_step, optimize, sequences=[X, Y], outputs_info=h0,
                      non_sequences=W, go_backwards=go_backwards)
    assert actual.shape == (T - 2, B, H)


def test_n_steps_zero(optimize, dtype):
    X, h0, params = elman_data(np.random.default_rng(10), dtype)
    actual, _ = check(elman_step, optimize, sequences=X, outputs_info=h0, non_sequences=params,
                      n_steps=0)
    assert actual.shape == (0, B, H) and actual.dtype == dtype


def test_n_steps_zero_several_outputs(optimize):
    rng = np.random.default_rng(11)
    X = randn(rng, (T, B, D))
    h0, c0 = randn(rng, (B, H)), randn(rng, (B, H))
    W, U, V = randn(rng, (D, H)), randn(rng, (H, H)), randn(rng, (H, 2))
    actual, _ = check(two_carries_one_output_step, optimize, sequences=X,
                      outputs_info=[h0, c0, None], non_sequences=[W, U, V], n_steps=0)
    assert [a.shape for a in actual] == [(0, B, H), (0, B, H), (0, B, 2)]


def test_empty_sequence(optimize):
    X, h0, params = elman_data(np.random.default_rng(12), t=0)
    actual, _ = check(elman_step, optimize, sequences=X, outputs_info=h0, non_sequences=params)
    assert actual.shape == (0, B, H)


def counter_step(c):
    return c + 1


def test_no_sequences_only_n_steps_python_int_init(optimize):
    actual, _ = check(counter_step, optimize, outputs_info=0, n_steps=7)
    np.testing.assert_array_equal(actual, np.arange(1, 8))
    assert actual.dtype == np.asarray(0).dtype


def decay_step(acc):
    return acc * 0.5 + 1.0


def test_numpy_scalar_init(optimize):
    actual, _ = check(decay_step, optimize, outputs_info=np.float32(0.0), n_steps=5)
    assert actual.shape == (5,) and actual.dtype == np.float32


# --------------------------------------------------------------------------------------------
# Non-sequences, closures, globals, step-function forms
# --------------------------------------------------------------------------------------------

def scaled_step(x_t, h, W, alpha):
    return np.tanh(x_t @ W + alpha * h)


@pytest.mark.parametrize("alpha", [0.5, -1.25, 2], ids=["float", "negfloat", "int"])
def test_python_scalar_non_sequence(optimize, dtype, alpha):
    rng = np.random.default_rng(13)
    X, h0, W = randn(rng, (T, B, D), dtype), randn(rng, (B, H), dtype), randn(rng, (D, H), dtype)
    actual, _ = check(scaled_step, optimize, sequences=X, outputs_info=h0, non_sequences=[W, alpha])
    assert actual.dtype == dtype  # Python scalars do not upcast float32 (NumPy 2 rules)


def test_python_scalar_non_sequence_value_changes_between_calls(optimize):
    # Same types, different scalar value: the value must not be baked into a cached module.
    rng = np.random.default_rng(14)
    X, h0, W = randn(rng, (T, B, D)), randn(rng, (B, H)), randn(rng, (D, H))
    check(scaled_step, optimize, sequences=X, outputs_info=h0, non_sequences=[W, 0.5])
    check(scaled_step, optimize, sequences=X, outputs_info=h0, non_sequences=[W, 0.75])


def leaky_step(x_t, h, alpha):
    return x_t + alpha * h


def test_single_scalar_non_sequence_not_in_a_list(optimize):
    rng = np.random.default_rng(15)
    X, h0 = randn(rng, (T, B, H)), randn(rng, (B, H))
    check(leaky_step, optimize, sequences=X, outputs_info=h0, non_sequences=0.5)


GLOBAL_U = (0.4 * np.random.default_rng(1234).standard_normal((H, H))).astype(np.float32)


def test_closure_and_module_global_capture(optimize):
    rng = np.random.default_rng(16)
    X, h0 = randn(rng, (T, B, D), np.float32), randn(rng, (B, H), np.float32)
    W = randn(rng, (D, H), np.float32, 0.5)

    def step(x_t, h):
        return np.tanh(x_t @ W + h @ GLOBAL_U)

    check(step, optimize, sequences=X, outputs_info=h0)


def test_closure_value_read_at_call_time(optimize):
    # Captured names are loop inputs: rebinding the captured variable changes the result.
    rng = np.random.default_rng(17)
    X, h0 = randn(rng, (T, B, D)), randn(rng, (B, H))
    W = randn(rng, (D, H), scale=0.5)

    def step(x_t, h):
        return np.tanh(x_t @ W + h)

    first, _ = check(step, optimize, sequences=X, outputs_info=h0)
    W = randn(rng, (D, H), scale=0.5)  # noqa: F841 (read by `step` through the closure)
    second, _ = check(step, optimize, sequences=X, outputs_info=h0)
    assert not np.allclose(first, second)


def test_rbm_version_one_equals_version_two(optimize):
    # Theano's "Optimizing Scan performance" page: W, bvis, bhid used implicitly (Version One)
    # or passed as non_sequences (Version Two) compile to the same thing.
    v0, W, bvis, bhid = gibbs_data(18, 3)
    rng = np.random.default_rng(99)

    def one_step(vsample):
        hmean = 1 / (1 + np.exp(-(vsample @ W + bhid)))
        hsample = rng.binomial(1, hmean).astype(np.float32)
        vmean = 1 / (1 + np.exp(-(hsample @ W.T + bvis)))
        return rng.binomial(1, vmean).astype(np.float32)

    version_one = scanopt.scan(one_step, outputs_info=v0, n_steps=10, exact_random=True,
                               optimize=optimize)
    rng = np.random.default_rng(99)
    expected = plain_loop(one_step, outputs_info=v0, n_steps=10)
    version_two = scanopt.scan(gibbs_step, outputs_info=v0,
                               non_sequences=[W, bvis, bhid, np.random.default_rng(99)],
                               n_steps=10, exact_random=True, optimize=optimize)
    assert_same_values(version_one, expected)
    assert_same_values(version_two, expected)


def mean_field_step(vsample, W, bvis, bhid):
    hmean = 1 / (1 + np.exp(-(vsample @ W + bhid)))
    return 1 / (1 + np.exp(-(hmean @ W.T + bvis)))


def test_mean_field_version_one_equals_version_two(optimize):
    v0, W, bvis, bhid = gibbs_data(19, 3)

    def one_step(vsample):
        hmean = 1 / (1 + np.exp(-(vsample @ W + bhid)))
        return 1 / (1 + np.exp(-(hmean @ W.T + bvis)))

    version_one, _ = check(one_step, optimize, outputs_info=v0, n_steps=10)
    version_two, _ = check(mean_field_step, optimize, outputs_info=v0,
                           non_sequences=[W, bvis, bhid], n_steps=10)
    assert_same_values(version_one, version_two)


def test_lambda_step(optimize):
    X, h0, (W, U, b) = elman_data(np.random.default_rng(20))
    step = lambda x_t, h, W: np.tanh(x_t @ W + h)  # noqa: E731
    check(step, optimize, sequences=X, outputs_info=h0, non_sequences=W)


def test_lambda_inline_in_call_theano_style(optimize):
    coefficients = np.random.default_rng(32).standard_normal(5)
    components = scanopt.scan(
        fn=lambda coefficient, power, free_variable: coefficient * (free_variable ** power),
        sequences=[coefficients, np.arange(10)],
        outputs_info=None,
        non_sequences=2.0,
        optimize=optimize)
    expected = plain_loop(polynomial_term, sequences=[coefficients, np.arange(10)],
                          non_sequences=2.0)
    assert_matches(components, expected)


def varargs_step(*args):
    return np.tanh(args[0] @ args[2] + args[1] @ args[3])


def test_varargs_step(optimize):
    X, h0, (W, U, b) = elman_data(np.random.default_rng(21))
    check(varargs_step, optimize, sequences=X, outputs_info=h0, non_sequences=[W, U])


def helper_step(x_t, h, W, U, b):
    return _sigmoid(_affine(x_t, W, b) + h @ U)


def test_helper_functions_are_inlined(optimize, dtype):
    X, h0, params = elman_data(np.random.default_rng(22), dtype)
    check(helper_step, optimize, sequences=X, outputs_info=h0, non_sequences=params)


@pytest.mark.parametrize("fn", [np.add, np.maximum, np.minimum], ids=lambda f: f.__name__)
@pytest.mark.parametrize("dt", [np.float64, np.int64], ids=["f64", "i64"])
def test_numpy_function_as_step(optimize, fn, dt):
    rng = np.random.default_rng(23)
    X = (10 * rng.standard_normal((T, D))).astype(dt)
    acc0 = np.zeros(D, dtype=dt)
    actual, _ = check(fn, optimize, sequences=X, outputs_info=acc0)
    if fn is np.add:
        np.testing.assert_allclose(actual, np.cumsum(X, axis=0), rtol=1e-12)


def tuple_return_step(x_t, h, c):
    return (np.tanh(x_t + h), c * 0.5 + h)


def list_return_step(x_t, h, c):
    return [np.tanh(x_t + h), c * 0.5 + h]


@pytest.mark.parametrize("step", [tuple_return_step, list_return_step], ids=["tuple", "list"])
def test_tuple_and_list_returns(optimize, step):
    rng = np.random.default_rng(24)
    X, h0, c0 = randn(rng, (T, B, H)), randn(rng, (B, H)), randn(rng, (B, H))
    actual, _ = check(step, optimize, sequences=X, outputs_info=[h0, c0])
    assert isinstance(actual, list) and len(actual) == 2


# --------------------------------------------------------------------------------------------
# Operator coverage: each case is a small step function over the supported subset
# --------------------------------------------------------------------------------------------

def sum_axis0_step(x_t, h):
    return h + np.sum(x_t, axis=0)


def sum_keepdims_step(x_t, h):
    return 0.5 * h + np.sum(x_t, axis=1, keepdims=True)


def mean_step(x_t, h):
    return 0.5 * h + np.mean(x_t, axis=1)


def max_step(x_t, h):
    return np.maximum(h * 0.9, np.max(x_t, axis=0))


def min_keepdims_step(x_t, h):
    return np.min(x_t, axis=0, keepdims=True) + 0.5 * h


def full_reductions_step(x_t):
    return np.sum(x_t), np.mean(x_t), np.max(x_t), np.min(x_t)


def method_reductions_step(x_t, h):
    h_new = 0.5 * h + x_t.sum(axis=1)
    return h_new, x_t.mean(axis=0, keepdims=True), x_t.max(axis=-1), x_t.min(axis=1, keepdims=True)


def where_step(x_t, h):
    return np.where(x_t > 0, x_t, 0.1 * x_t) + 0.5 * h


def clip_step(x_t, h):
    return np.clip(h + x_t, -1.0, 1.0)


def max_min_step(x_t, h):
    return np.maximum(h, x_t) * 0.5 + np.minimum(h, x_t) * 0.25


def concatenate_step(x_t, h, W):
    h_new = np.tanh(np.concatenate([x_t, h], axis=1) @ W)
    return h_new, np.concatenate((h_new, x_t), axis=1)


def stack_step(x_t, h):
    h_new = np.tanh(x_t + 0.5 * h)
    return h_new, np.stack([h_new, x_t]), np.stack([h_new, x_t], axis=1)


def transpose_step(x_t, h, W, U):
    return np.tanh((W.T @ x_t.T).T + h @ U.T + np.transpose(h @ U).T + (h @ U.transpose()) * 0.5)


def reshape_step(x_t, h, W):
    flat = (x_t @ W + h).reshape(-1)
    return np.tanh(flat * 0.5).reshape(3, 4), flat.reshape((2, 6))


def astype_step(x_t, i_t, h):
    return h + (x_t > 0).astype(np.float32) + i_t.astype(np.float32) * 0.5 + x_t.astype(np.float32)


def slicing_step(x_t, h):
    h_new = np.concatenate([h[:, 1:], h[:, :1]], axis=1) * 0.9 + x_t[:, :4]
    return h_new, x_t[0], h[-1, 1:3], x_t[1:3, ::2]


def embedding_step(i_t, h, W, U):
    return np.tanh(W[i_t] + h @ U)


def like_step(x_t, h):
    h_new = h * 0.5 + np.ones_like(h) * 0.25 + np.full_like(h, 0.125) + np.zeros_like(x_t) + x_t
    return h_new, np.zeros_like(h), np.full_like(x_t, 3.0), np.ones_like(x_t)


def comparison_step(x_t, h):
    h_new = np.tanh(x_t + h)
    return h_new, x_t > h, x_t <= 0.0, h_new >= h


def int_arith_step(i_t, acc):
    return acc + (i_t // 3) % 4 + i_t * 2 - i_t ** 2 + (-i_t)


def elementwise_math_step(x_t, h):
    return np.tanh(np.sqrt(np.abs(x_t)) + np.log(1 + h * h) - np.sin(h) * np.cos(x_t)
                   + np.exp(-np.abs(h)) - h / (1.0 + x_t * x_t) + x_t ** 2 * 0.1)


def dot_matmul_step(x_t, h, W, U, b):
    return np.tanh(np.dot(x_t, W) + np.matmul(h, U) + b)


def _op_cases():
    """(id, step, kwargs builder) for the operator-coverage test."""
    def seq_h(shape_x, shape_h, dtype=np.float64):
        def build(rng):
            return dict(sequences=randn(rng, shape_x, dtype), outputs_info=randn(rng, shape_h, dtype))
        return build

    def build_concatenate(rng):
        return dict(sequences=randn(rng, (T, B, D)), outputs_info=[randn(rng, (B, H)), None],
                    non_sequences=randn(rng, (D + H, H), scale=0.5))

    def build_transpose(rng):
        return dict(sequences=randn(rng, (T, B, D)), outputs_info=randn(rng, (B, H)),
                    non_sequences=[randn(rng, (D, H), scale=0.5), randn(rng, (H, H), scale=0.3)])

    def build_reshape(rng):
        return dict(sequences=randn(rng, (T, 3, D)), outputs_info=[randn(rng, (3, 4)), None],
                    non_sequences=randn(rng, (D, 4), scale=0.5))

    def build_astype(rng):
        return dict(sequences=[randn(rng, (T, B, D)), rng.integers(-3, 4, (T, B, D))],
                    outputs_info=randn(rng, (B, D), np.float32))

    def build_slicing(rng):
        return dict(sequences=randn(rng, (T, B, 6)), outputs_info=[randn(rng, (B, 4)), None, None, None])

    def build_embedding(ids_shape, h_shape):
        def build(rng):
            return dict(sequences=rng.integers(0, 7, (T,) + ids_shape), outputs_info=randn(rng, h_shape),
                        non_sequences=[randn(rng, (7, H)), randn(rng, (H, H), scale=0.4)])
        return build

    def build_int(rng):
        return dict(sequences=rng.integers(-20, 20, (T, B)), outputs_info=np.zeros(B, dtype=np.int64))

    def build_dot(rng):
        return dict(sequences=randn(rng, (T, B, D), np.float32),
                    outputs_info=randn(rng, (B, H), np.float32),
                    non_sequences=[randn(rng, (D, H), np.float32, 0.5),
                                   randn(rng, (H, H), np.float32, 0.4),
                                   randn(rng, (H,), np.float32, 0.1)])

    def with_none(build, n_none):
        def wrapped(rng):
            kw = build(rng)
            kw["outputs_info"] = [kw["outputs_info"]] + [None] * n_none
            return kw
        return wrapped

    return [
        ("sum_axis0", sum_axis0_step, seq_h((T, B, D), (D,))),
        ("sum_keepdims", sum_keepdims_step, seq_h((T, B, D), (B, 1))),
        ("mean_axis1", mean_step, seq_h((T, B, D), (B,))),
        ("max_axis0", max_step, seq_h((T, B, D), (D,))),
        ("min_keepdims", min_keepdims_step, seq_h((T, B, D), (1, D), np.float32)),
        ("full_reductions", full_reductions_step,
         lambda rng: dict(sequences=randn(rng, (T, B, D)))),
        ("method_reductions", method_reductions_step, with_none(seq_h((T, B, D), (B,)), 3)),
        ("where", where_step, seq_h((T, B, D), (B, D))),
        ("clip", clip_step, seq_h((T, B, D), (B, D), np.float32)),
        ("maximum_minimum", max_min_step, seq_h((T, B, D), (B, D))),
        ("concatenate", concatenate_step, build_concatenate),
        ("stack", stack_step, with_none(seq_h((T, B, D), (B, D)), 2)),
        ("transpose", transpose_step, build_transpose),
        ("reshape", reshape_step, build_reshape),
        ("astype", astype_step, build_astype),
        ("slicing", slicing_step, build_slicing),
        ("embedding_scalar_index", embedding_step, build_embedding((), (H,))),
        ("embedding_batch_index", embedding_step, build_embedding((B,), (B, H))),
        ("zeros_ones_full_like", like_step, with_none(seq_h((T, B, D), (B, D)), 3)),
        ("comparisons_bool_outputs", comparison_step, with_none(seq_h((T, B, D), (B, D)), 3)),
        ("int_arithmetic", int_arith_step, build_int),
        ("elementwise_math", elementwise_math_step, seq_h((T, B, D), (B, D))),
        ("dot_matmul_f32", dot_matmul_step, build_dot),
    ]


_OP_CASES = _op_cases()


@pytest.mark.parametrize("step,build", [c[1:] for c in _OP_CASES], ids=[c[0] for c in _OP_CASES])
def test_op_coverage(optimize, step, build):
    kw = build(np.random.default_rng(25))
    check(step, optimize, **kw)


# --------------------------------------------------------------------------------------------
# Inputs and results: no mutation, no aliasing across calls
# --------------------------------------------------------------------------------------------

def passthrough_step(x_t, h, c, W):
    return h, c + x_t @ W, x_t


def _copies(kw):
    return {k: [np.array(v, copy=True) for v in (val if isinstance(val, list) else [val])]
            for k, val in kw.items()}


@pytest.mark.parametrize("case", ["lstm", "passthrough"])
def test_inputs_not_mutated(optimize, case):
    rng = np.random.default_rng(26)
    if case == "lstm":
        X, inits, params = lstm_data(rng)
        fn, kw = lstm_step, dict(sequences=X, outputs_info=inits, non_sequences=params)
    else:
        X = randn(rng, (T, B, D))
        fn = passthrough_step
        kw = dict(sequences=[X], outputs_info=[randn(rng, (B, H)), randn(rng, (B, H)), None],
                  non_sequences=[randn(rng, (D, H))])
    before = _copies(kw)
    expected = plain_loop(fn, **kw)
    actual = scanopt.scan(fn, optimize=optimize, **kw)
    assert_matches(actual, expected)
    after = _copies(kw)
    for key in before:
        for a, b in zip(before[key], after[key]):
            np.testing.assert_array_equal(a, b, err_msg=f"{key} was mutated")


def _as_list(result):
    return result if isinstance(result, list) else [result]


@pytest.mark.parametrize("case", ["elman", "lstm"])
def test_second_call_returns_fresh_arrays(optimize, case):
    def make(seed):
        rng = np.random.default_rng(seed)
        if case == "elman":
            X, h0, params = elman_data(rng)
            return elman_step, dict(sequences=X, outputs_info=h0, non_sequences=params)
        X, inits, params = lstm_data(rng)
        return lstm_step, dict(sequences=X, outputs_info=inits, non_sequences=params)

    fn, kw1 = make(27)
    first = scanopt.scan(fn, optimize=optimize, **kw1)
    saved = [np.array(a, copy=True) for a in _as_list(first)]
    _, kw2 = make(28)
    second = scanopt.scan(fn, optimize=optimize, **kw2)
    assert_matches(second, plain_loop(fn, **kw2))
    for a, s, b in zip(_as_list(first), saved, _as_list(second)):
        np.testing.assert_array_equal(a, s, err_msg="first result changed after the second call")
        assert not np.shares_memory(a, b)
    # Writing into a returned array must not affect later calls.
    for a in _as_list(second):
        a[...] = 12345
    third = scanopt.scan(fn, optimize=optimize, **kw1)
    assert_matches(third, plain_loop(fn, **kw1))


# --------------------------------------------------------------------------------------------
# The decorator
# --------------------------------------------------------------------------------------------

def test_step_decorator_scan_and_direct_call(optimize, dtype):
    @scanopt.step
    def rnn(x_t, h, W, U, b):
        return np.tanh(x_t @ W + h @ U + b)

    X, h0, params = elman_data(np.random.default_rng(29), dtype)
    direct = rnn(X[0], h0, *params)
    np.testing.assert_array_equal(direct, elman_step(X[0], h0, *params))
    expected = plain_loop(rnn, sequences=X, outputs_info=h0, non_sequences=params)
    actual = rnn.scan(sequences=X, outputs_info=h0, non_sequences=params, optimize=optimize)
    assert_matches(actual, expected)


def test_step_decorator_with_options_exact_random(optimize):
    @scanopt.step(exact_random=True)
    def gibbs(vsample, W, bvis, bhid, rng):
        hmean = 1 / (1 + np.exp(-(vsample @ W + bhid)))
        hsample = rng.binomial(1, hmean).astype(np.float32)
        vmean = 1 / (1 + np.exp(-(hsample @ W.T + bvis)))
        return rng.binomial(1, vmean).astype(np.float32)

    v0, W, bvis, bhid = gibbs_data(30, 2)
    rng_scan, rng_loop = np.random.default_rng(5), np.random.default_rng(5)
    actual = gibbs.scan(outputs_info=v0, non_sequences=[W, bvis, bhid, rng_scan], n_steps=8,
                        optimize=optimize)
    expected = plain_loop(gibbs, outputs_info=v0, non_sequences=[W, bvis, bhid, rng_loop], n_steps=8)
    assert_same_values(actual, expected)
    assert rng_scan.bit_generator.state == rng_loop.bit_generator.state


def test_step_decorator_source(optimize):
    @scanopt.step
    def lstm(x_t, h, c, W_i, W_f, W_o, W_c, U_i, U_f, U_o, U_c, b_i, b_f, b_o, b_c):
        i = 1 / (1 + np.exp(-(x_t @ W_i + h @ U_i + b_i)))
        f = 1 / (1 + np.exp(-(x_t @ W_f + h @ U_f + b_f)))
        o = 1 / (1 + np.exp(-(x_t @ W_o + h @ U_o + b_o)))
        g = np.tanh(x_t @ W_c + h @ U_c + b_c)
        c = f * c + i * g
        h = o * np.tanh(c)
        return h, c

    X, inits, params = lstm_data(np.random.default_rng(31), np.float32)
    src = lstm.source(sequences=X, outputs_info=inits, non_sequences=params, optimize=optimize)
    assert isinstance(src, str)
    assert "import numpy" in src
    import_lines = [ln for ln in src.splitlines()
                    if ln.lstrip().startswith(("import ", "from "))]
    for ln in import_lines:
        assert "scanopt" not in ln and "xdsl" not in ln, f"generated module imports {ln!r}"
    compile(src, "gen", "exec")
    # The decorated object still scans correctly after producing its source.
    assert_matches(lstm.scan(sequences=X, outputs_info=inits, non_sequences=params,
                             optimize=optimize),
                   plain_loop(lstm, sequences=X, outputs_info=inits, non_sequences=params))


def test_two_lambdas_with_the_same_arguments_on_one_line(optimize):
    # Each lambda must be found by its own position on the line, not by its arguments.
    add, mul = (lambda x_t, h: x_t + h), (lambda x_t, h: x_t * h)
    X, h0 = np.full((3, 2), 2.0), np.full(2, 3.0)
    for step in (add, mul):
        check(step, optimize, sequences=X, outputs_info=h0)


def carry_is_a_view_of_a_temporary_step(x_t, h, c):
    z = np.tanh(c * 1.5)
    w = np.tanh(z[..., :4] + h)
    c_new = np.tanh(z + x_t)
    v = np.tanh(np.concatenate([w, w * 2.0], axis=-1) + 0.5)  # may reuse z's array
    return v[..., 2:6], c_new


@pytest.mark.parametrize("keep", ["all", "last"])
def test_a_carry_that_is_a_view_of_a_reused_temporary(optimize, keep):
    # The next step rewrites the temporary before it reads the carry: it must be carried as
    # a copy, not as a view into the reused array.
    rng = np.random.default_rng(11)
    X, h0, c0 = rng.standard_normal((6, 3, 8)), rng.standard_normal((3, 4)), \
        rng.standard_normal((3, 8))
    expected = plain_loop(carry_is_a_view_of_a_temporary_step, sequences=X,
                          outputs_info=[h0, c0])
    actual = scanopt.scan(carry_is_a_view_of_a_temporary_step, X, [h0, c0], keep=keep,
                          optimize=optimize)
    if keep == "last":
        expected = [e[-1] for e in expected]
        for a, e in zip(actual, expected):
            np.testing.assert_allclose(a, e, rtol=1e-12)
    else:
        assert_matches(actual, expected)


def test_rbm_version_one_and_version_two_compile_to_the_same_loop():
    # The same loop body, op for op; only the order of the loop's inputs may differ.
    from scanopt.compiler import passes_for
    from scanopt.dialects import scan as scan_dialect
    from scanopt.transforms.testing import build_step
    from scanopt.transforms import run_pipeline
    from scanopt.compiler import make_context

    v0, W, bvis, bhid = gibbs_data(18, 3)
    rng = np.random.default_rng(99)

    def one_step(vsample):
        hmean = 1 / (1 + np.exp(-(vsample @ W + bhid)))
        hsample = rng.binomial(1, hmean).astype(np.float32)
        vmean = 1 / (1 + np.exp(-(hsample @ W.T + bvis)))
        return rng.binomial(1, vmean).astype(np.float32)

    def body_ops(module):
        (loop,) = [op for op in module.walk() if isinstance(op, scan_dialect.LoopOp)]
        return [(op.name, [str(r.type) for r in op.results]) for op in loop.block.ops]

    for passes in ((), passes_for(optimize=True)):
        one = build_step(one_step, outputs_info=v0, n_steps=10)
        two = build_step(gibbs_step, outputs_info=v0, n_steps=10,
                         non_sequences=[W, bvis, bhid, np.random.default_rng(99)])
        for module in (one, two):
            run_pipeline(module, make_context(), passes=passes)
        assert body_ops(one) == body_ops(two)


def test_a_numpy_function_as_fn_with_a_non_sequence():
    rng = np.random.default_rng(21)
    X, W = rng.standard_normal((5, 3)), rng.standard_normal((3, 3))
    check(np.dot, True, sequences=X, non_sequences=W)
