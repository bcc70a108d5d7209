"""NumPy's typing rules for every kind of value a step sees, checked against the plain loop.

Under NumPy 2's promotion rules (NEP 50) a Python ``float``/``int``/``bool`` is a *weak* scalar:
``x_f32 * 0.5`` stays float32, and so does ``x_f32 * (1.0 - k)`` when ``k`` is a Python float,
because ``1.0 - k`` is Python arithmetic. NumPy scalars (``np.float64(0.5)``) and 0-d arrays are
strong. scanopt must type every value as the plain loop does: each case below runs the step in
the plain loop (the oracle) and through scanopt, and they must agree on dtype and values, or
both refuse the call (a carry whose dtype drifts).
"""

from __future__ import annotations

import numpy as np
import pytest

import scanopt
from conftest import assert_matches, plain_loop

# Every kind of scalar a user passes as a non-sequence.
SCALARS = {
    "py_float": 0.5,
    "py_int": 3,
    "py_bool": True,
    "np_float16": np.float16(0.5),
    "np_float32": np.float32(0.5),
    "np_float64": np.float64(0.5),
    "np_int8": np.int8(3),
    "np_int32": np.int32(3),
    "np_int64": np.int64(3),
    "np_uint8": np.uint8(3),
    "np_bool": np.bool_(True),
    "0d_float64": np.array(0.5),
    "0d_float32": np.array(0.5, np.float32),
    "0d_int16": np.array(3, np.int16),
}
CARRY_DTYPES = [np.float32, np.float64, np.int32, np.int8]

# `1 - np.uint8(3)` wraps around with a warning, in the plain loop and in scanopt alike.
pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")


def leaky(h, k):
    # A leaky integrator written for any numeric k: `1 - k` is Python arithmetic for a Python k.
    return k * h + (1 - k) * h


def leaky_tanh(h, k):
    return k * h + (1.0 - k) * np.tanh(h)


def run_both(fn, **kwargs):
    """(oracle result or exception, scanopt result or exception), same arguments."""
    try:
        expected = plain_loop(fn, **{k: v for k, v in kwargs.items()
                                     if k not in ("keep", "optimize")})
    except Exception as error:  # noqa: BLE001 - any failure of the plain loop
        expected = error
    try:
        actual = scanopt.scan(fn, **kwargs)
    except Exception as error:  # noqa: BLE001
        actual = error
    return expected, actual


def check(fn, *, keep="all", **kwargs):
    """scanopt agrees with the plain loop: the same dtypes and values, or both refuse."""
    expected, actual = run_both(fn, keep=keep, **kwargs)
    if isinstance(expected, Exception):
        assert isinstance(actual, Exception), (
            f"the plain loop fails ({type(expected).__name__}: {expected}) but scanopt "
            f"returned {actual!r}")
        if isinstance(expected, TypeError):
            assert isinstance(actual, (scanopt.ScanTypeError, TypeError)), actual
        return None
    assert not isinstance(actual, Exception), f"scanopt refused a loop that runs: {actual}"
    if keep == "last":
        expected = [e[-1] for e in expected] if isinstance(expected, list) else expected[-1]
        expected = [np.asarray(e) for e in expected] if isinstance(expected, list) else \
            np.asarray(expected)
    assert_matches(actual, expected)
    return actual


@pytest.mark.parametrize("carry_dtype", CARRY_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("kind", SCALARS)
def test_scalar_non_sequence(kind, carry_dtype, optimize):
    h0 = np.arange(1, 4).astype(carry_dtype)
    check(leaky, outputs_info=h0, non_sequences=[SCALARS[kind]], n_steps=4, optimize=optimize)


@pytest.mark.parametrize("kind", SCALARS)
def test_scalar_non_sequence_float_step(kind, optimize):
    """The issue's leaky integrator: float32 state, the rate given as each kind of scalar."""
    h0 = np.ones(3, np.float32)
    result = check(leaky_tanh, outputs_info=h0, non_sequences=[SCALARS[kind]], n_steps=3,
                   optimize=optimize)
    if kind.startswith("py_") or kind in ("np_float32", "np_float16", "0d_float32"):
        assert result is not None and result.dtype == np.float32


def test_issue_example():
    def step(h, k):
        return k * h + (1.0 - k) * np.tanh(h)

    hs = scanopt.scan(step, outputs_info=np.ones(3, np.float32), non_sequences=[0.5], n_steps=3)
    assert hs.dtype == np.float32
    expected = plain_loop(step, outputs_info=np.ones(3, np.float32), non_sequences=[0.5],
                          n_steps=3)
    assert_matches(hs, expected)


@pytest.mark.parametrize("keep", ["all", "last"])
@pytest.mark.parametrize("kind", ["py_float", "py_int", "py_bool", "np_float64", "0d_float32"])
def test_per_step_output_and_keep(kind, keep, optimize):
    """A fed-back output and a per-step output, each depending on the scalar."""
    def step(x_t, h, k):
        new = k * h + (1.0 - k) * x_t
        return new, new * (k * k) - k

    X = np.linspace(-1, 1, 12, dtype=np.float32).reshape(4, 3)
    check(step, sequences=X, outputs_info=[np.zeros(3, np.float32), None],
          non_sequences=[SCALARS[kind]], keep=keep, optimize=optimize)


# --- Python scalars reached other ways: closure, module global, literal, default ------------

GLOBAL_RATE = 0.25


def global_step(h):
    return GLOBAL_RATE * h + (1.0 - GLOBAL_RATE) * np.tanh(h)


def literal_step(h):
    return 0.25 * h + (1 - 0.25) * np.tanh(h) - 2 * (3 // 2)


def default_step(h, k=0.25):
    return k * h + (1.0 - k) * np.tanh(h)


def make_closure(rate):
    def closure_step(h):
        return rate * h + (1.0 - rate) * np.tanh(h)
    return closure_step


@pytest.mark.parametrize("keep", ["all", "last"])
@pytest.mark.parametrize("fn", [global_step, literal_step, default_step,
                                make_closure(0.25), make_closure(np.float64(0.25)),
                                make_closure(np.float32(0.25)), make_closure(np.array(0.25)),
                                make_closure(2), make_closure(True)],
                         ids=["global", "literal", "default", "closure_py_float",
                              "closure_np_float64", "closure_np_float32", "closure_0d",
                              "closure_py_int", "closure_py_bool"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_captured_scalars(fn, dtype, keep, optimize):
    check(fn, outputs_info=np.linspace(-1, 1, 3).astype(dtype), n_steps=4, keep=keep,
          optimize=optimize)


# --- Python ints with integer arrays ---------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16])
def test_python_int_keeps_integer_dtype(dtype, optimize):
    def step(h, k, m):
        return (h * k + (k * 2 + 1)) % m + h // (m - 1)

    h0 = np.arange(3, dtype=dtype)
    result = check(step, outputs_info=h0, non_sequences=[2, 7], n_steps=5, optimize=optimize)
    assert result.dtype == dtype


def test_python_int_out_of_range_raises_as_numpy_does():
    """NumPy refuses a Python int that does not fit the array's dtype; so does the loop."""
    def step(h, k):
        return h + k

    with pytest.raises(OverflowError):
        plain_loop(step, outputs_info=np.zeros(2, np.int8), non_sequences=[1000], n_steps=2)
    with pytest.raises(OverflowError):
        scanopt.scan(step, outputs_info=np.zeros(2, np.int8), non_sequences=[1000], n_steps=2)


# --- Python arithmetic stays Python arithmetic -----------------------------------------------

@pytest.mark.parametrize("expr", [
    "-k * h", "h * k ** 2", "h * abs(k)", "h * (k / 2)", "h * (k // 2 + k % 3)",
    "np.where(k > 0.1, h, -h)", "h * (k + True)", "h * (2 - k) ** 2",
    "h * float(k)", "h * int(k)", "h * (k == 3)", "h - (-k)",
])
@pytest.mark.parametrize("k", [0.5, 3, -1.5], ids=["half", "three", "neg"])
def test_python_operators_on_python_scalars(expr, k, tmp_path, optimize):
    from conftest import generated_module

    source = f"import numpy as np\n\ndef step(h, k):\n    return {expr}\n"
    with generated_module(source, tmp_path, prefix="_typing") as module:
        result = check(module.step, outputs_info=np.ones(3, np.float32), non_sequences=[k],
                       n_steps=3, optimize=optimize)
    if result is not None:
        assert result.dtype == np.float32


def test_numpy_function_of_python_scalar_is_strong():
    """np.tanh(k) of a Python float is a float64 NumPy scalar: strong, so h becomes float64."""
    def step(h, k):
        return h * np.tanh(k)

    with pytest.raises(scanopt.ScanTypeError, match="float32.*float64"):
        scanopt.scan(step, outputs_info=np.ones(3, np.float32), non_sequences=[0.5], n_steps=2)
    out = scanopt.scan(step, outputs_info=np.ones(3, np.float64), non_sequences=[0.5],
                       n_steps=2)
    assert_matches(out, plain_loop(step, outputs_info=np.ones(3, np.float64),
                                   non_sequences=[0.5], n_steps=2))


def test_float_of_an_array_is_refused_with_a_hint():
    def step(h):
        return h * float(h)

    with pytest.raises(scanopt.UnsupportedSyntax, match=r"float\(\) takes a scalar"):
        scanopt.scan(step, outputs_info=np.ones(3), n_steps=2)


# --- Python scalars as carries ----------------------------------------------------------------

def returns_python_float(h, k):
    return k * 2.0 + 1.0


def returns_draw(h, rng):
    return rng.normal()


@pytest.mark.parametrize("init", [0.0, np.float64(0.0), np.array(0.0)],
                         ids=["py_float", "np_float64", "0d"])
def test_python_scalar_returned_for_a_0d_carry(init, optimize):
    """A step may return a Python float for a float64 0-d carry: it is stacked as float64."""
    check(returns_python_float, outputs_info=init, non_sequences=[1.5], n_steps=3,
          optimize=optimize)


def test_python_scalar_draw_as_carry():
    out = scanopt.scan(returns_draw, outputs_info=0.0,
                       non_sequences=[np.random.default_rng(5)], n_steps=4, exact_random=True)
    expected = plain_loop(returns_draw, outputs_info=0.0,
                          non_sequences=[np.random.default_rng(5)], n_steps=4)
    np.testing.assert_array_equal(out, expected)
    assert out.dtype == np.float64


def test_python_float_for_a_float32_carry_is_a_type_error():
    with pytest.raises(scanopt.ScanTypeError, match="Python float"):
        scanopt.scan(returns_python_float, outputs_info=np.float32(0), non_sequences=[1.5],
                     n_steps=2)


def test_weak_and_strong_parameters_compile_separately():
    """0.5 and np.float64(0.5) type the loop differently: each gets its own compiled loop."""
    h0 = np.ones(3, np.float32)
    weak = scanopt.scan(leaky_tanh, outputs_info=h0, non_sequences=[0.5], n_steps=2)
    assert weak.dtype == np.float32
    with pytest.raises(scanopt.ScanTypeError):
        scanopt.scan(leaky_tanh, outputs_info=h0, non_sequences=[np.float64(0.5)], n_steps=2)
    again = scanopt.scan(leaky_tanh, outputs_info=h0, non_sequences=[0.5], n_steps=2)
    np.testing.assert_array_equal(weak, again)


# --- Python scalars the step branches on: compiled for their values ---------------------------

def branches_on_flags(x_t, h, W, use_bias, n_inner, scale):
    if use_bias and scale > 0:
        h = h + 1.0
    for _ in range(n_inner):
        h = np.tanh(h @ W + x_t) * scale
    return h if n_inner % 2 == 0 else -h


@pytest.mark.parametrize("use_bias, n_inner, scale", [(True, 2, 0.5), (False, 3, 0.5),
                                                       (True, 0, -0.5), (True, 2, 0.75)])
def test_a_step_may_branch_on_python_scalar_non_sequences(use_bias, n_inner, scale, optimize):
    """`if use_bias:` and `range(n_inner)` on non-sequences: the plain loop runs them, so
    scanopt compiles the loop for their values (and keeps `scale`, used only in arithmetic, a
    run-time value unless a branch reads it)."""
    X, h0, W = np.full((4, 3), 0.1), np.zeros(3), np.eye(3) * 0.5
    check(branches_on_flags, sequences=X, outputs_info=h0,
          non_sequences=[W, use_bias, n_inner, scale], optimize=optimize)


def test_the_same_values_hit_the_cache():
    X, h0, W = np.full((4, 3), 0.1), np.zeros(3), np.eye(3) * 0.5
    scanopt.scan(branches_on_flags, X, h0, [W, True, 2, 0.5])
    before = scanopt.cache_info()["hits"]
    scanopt.scan(branches_on_flags, X, h0, [W, True, 2, 0.5])
    assert scanopt.cache_info()["hits"] == before + 1


def sign_flip(h, k):
    if k > 0:
        return h
    return -h


@pytest.mark.parametrize("k", [np.float64(1.0), np.array(-2.0), np.int32(-1), np.float32(np.nan)],
                         ids=["np_float64", "0d", "np_int32", "nan"])
def test_numpy_scalars_and_0d_arrays_are_compiled_for_their_values(k, optimize):
    check(sign_flip, outputs_info=np.ones(2), non_sequences=[k], n_steps=2, optimize=optimize)


def test_branching_on_an_array_is_still_refused():
    def step(h, k):
        if k.sum() > 0:
            return h
        return -h

    with pytest.raises(scanopt.UnsupportedSyntax, match="`if` on an array value"):
        scanopt.scan(step, outputs_info=np.ones(2), non_sequences=[np.ones(3)], n_steps=2)
