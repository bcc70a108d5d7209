"""NumPy's common elementwise functions inside a step, against the plain loop.

Each function is used twice per step: on a value that depends on the carry (so it runs inside
the loop) and on the sequence slices alone (so with passes on it runs once before the loop over
whole sequences). The steps call the NumPy function they capture, which scanopt resolves
exactly as it resolves ``np.<name>`` written out; the generated module must call ``np.<name>``. Inputs stay inside the function's domain: the carry is clipped to it and mixed
with a sequence slice drawn from it, a convex combination that stays there.
"""

import numpy as np
import pytest

import scanopt
from conftest import assert_matches, plain_loop


def mix(h, x, lo, hi):
    """The carry brought back into [lo, hi] and mixed with a slice from [lo, hi]."""
    return 0.5 * np.clip(h, lo, hi) + 0.5 * x


def unary_step(f):
    """A step using the unary ufunc ``f`` inside the loop (on the carry) and on slices alone."""
    def step(x, y, h, lo, hi):
        return f(mix(h, x, lo, hi)), f(x)
    return step


def binary_step(f):
    def step(x, y, h, lo, hi):
        return f(mix(h, x, lo, hi), y), f(x, y)
    return step


def xor_step(x, y, h, lo, hi):
    flip = np.logical_xor(h > 0, x > 0)
    return np.where(flip, x - h, h + y), np.logical_xor(x > 0, y < 0)


# name: the domain [lo, hi] the function's inputs are drawn from
UNARY = {"sinh": (-3, 3), "cosh": (-3, 3), "tan": (-1.2, 1.2), "arcsin": (-0.9, 0.9),
         "arccos": (-0.9, 0.9), "arctan": (-5, 5), "arcsinh": (-5, 5), "arccosh": (1.1, 5),
         "arctanh": (-0.9, 0.9), "exp2": (-4, 4), "expm1": (-3, 3), "log2": (0.1, 10),
         "log10": (0.1, 10), "log1p": (-0.9, 5), "square": (-3, 3), "reciprocal": (0.5, 4),
         "sign": (-2, 2), "floor": (-5, 5), "ceil": (-5, 5), "trunc": (-5, 5), "rint": (-5, 5)}
# fmax/fmin ignore a NaN operand (np.maximum/np.minimum would return it): y holds NaNs for them.
BINARY = {"arctan2": (-2, 2), "hypot": (-3, 3), "logaddexp": (-5, 5), "fmax": (-3, 3),
          "fmin": (-3, 3), "logical_xor": (-3, 3)}
STEPS = {**{name: unary_step(getattr(np, name)) for name in UNARY},
         **{name: binary_step(getattr(np, name)) for name in BINARY}, "logical_xor": xor_step}
CASES = {**UNARY, **BINARY}
T, B, H = 6, 2, 5


def _data(name, dtype):
    lo, hi = CASES[name]
    rng = np.random.default_rng(sorted(CASES).index(name))
    X = rng.uniform(lo, hi, (T, B, H)).astype(dtype)
    Y = rng.uniform(lo, hi, (T, B, H)).astype(dtype)
    if name in ("fmax", "fmin"):
        Y[rng.random((T, B, H)) < 0.3] = np.nan
    h0 = rng.uniform(lo, hi, (B, H)).astype(dtype)
    return X, Y, h0, float(lo), float(hi)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_ufunc_matches_plain_loop(optimize, name, dtype):
    step = STEPS[name]
    X, Y, h0, lo, hi = _data(name, dtype)
    args = dict(sequences=[X, Y], outputs_info=[h0, None], non_sequences=[lo, hi])
    expected = plain_loop(step, **args)
    with np.errstate(all="raise"):  # inputs inside the domain: NumPy must not warn
        actual = scanopt.scan(step, **args, optimize=optimize)
    assert_matches(actual, expected)
    source = scanopt.step(step).source(**args, optimize=optimize)
    assert f"np.{name}(" in source, f"np.{name} is not called in the generated module"


def scalar_step(f):
    return lambda h, k: 0.5 * h + 0.5 * f(k)


SCALAR_STEPS = {name: scalar_step(getattr(np, name)) for name in UNARY}


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_ufunc_of_a_python_float(name):
    """A Python float non-sequence through the ufunc: NumPy gives a float64 NumPy scalar, and
    the step computes with it as the plain loop does."""
    lo, hi = CASES[name]
    h0 = np.float64(0.5 * (lo + hi))
    args = dict(outputs_info=h0, non_sequences=0.25 * lo + 0.75 * hi, n_steps=3)
    expected = plain_loop(SCALAR_STEPS[name], **args)
    assert_matches(scanopt.scan(SCALAR_STEPS[name], **args), expected)


def softplus_rnn(x_t, h, W, U):
    """A recurrence written with the functions spelled out, as users write them."""
    z = np.logaddexp(0.0, x_t @ W + h @ U)            # softplus
    r = np.hypot(z, np.expm1(np.log1p(z)))
    return np.tanh(np.arctan2(r, 1.0 + np.square(h)) * np.sign(z) - np.trunc(h))


def test_ufuncs_spelled_out_in_a_recurrence(optimize):
    rng = np.random.default_rng(7)
    X = rng.standard_normal((8, B, 4)).astype(np.float32)
    W = (0.5 * rng.standard_normal((4, H))).astype(np.float32)
    U = (0.5 * rng.standard_normal((H, H))).astype(np.float32)
    h0 = np.zeros((B, H), np.float32)
    args = dict(sequences=X, outputs_info=h0, non_sequences=[W, U])
    assert_matches(scanopt.scan(softplus_rnn, **args, optimize=optimize),
                   plain_loop(softplus_rnn, **args))
