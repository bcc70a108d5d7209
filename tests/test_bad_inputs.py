"""The bad-input catalogue: every way a call can be wrong gets a ScanError subclass that names
the argument (``sequences[1]``, ``n_steps``) or the user's ``file:line:col`` with the line and a
caret, and says what to do; the inputs are left as they were and nothing is cached, neither in
memory nor on disk. Inputs scanopt must accept however unusual (NaN, overflow, a huge
``n_steps``, a lambda inside a table) are checked against the plain loop.
"""

import contextlib
import linecache
import os
import random
import tracemalloc
import warnings

import numpy as np
import pytest

import scanopt
from conftest import assert_matches, plain_loop
from test_errors import check_traceback

T, B, H = 4, 3, 5


def data(seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((T, B, H)).astype(dtype)
    return X, rng.standard_normal((B, H)).astype(dtype)


def rnn(x_t, h):
    return np.tanh(x_t + h)


# --------------------------------------------------------------------------------------------
# The contract of every refusal
# --------------------------------------------------------------------------------------------

def _state(value):
    """Everything observable about an input, to compare before and after a refused call."""
    if isinstance(value, np.ma.MaskedArray):
        return ("masked", _state(value.data), np.ma.getmaskarray(value).tobytes())
    if isinstance(value, np.ndarray):
        return (type(value), value.dtype.str, value.shape,
                value.tobytes() if value.dtype != object else repr(value.tolist()))
    if isinstance(value, (list, tuple)):
        return (type(value), tuple(_state(v) for v in value))
    if isinstance(value, dict):
        return tuple((k, _state(v)) for k, v in value.items())
    if isinstance(value, np.random.Generator):
        return repr(value.bit_generator.state)
    if isinstance(value, np.random.RandomState):
        return repr(value.get_state(legacy=False))
    if isinstance(value, random.Random):
        return repr(value.getstate())
    return repr(value)


def _index_entries() -> set:
    index = os.path.join(os.environ["SCANOPT_CACHE_DIR"], "index")
    return set(os.listdir(index)) if os.path.isdir(index) else set()


@contextlib.contextmanager
def refused(cls, *inputs, says=()):
    """The call in the block raises ``cls`` whose message holds each of ``says``; ``inputs``
    are unchanged and the memory and disk caches hold nothing new."""
    before = [_state(v) for v in inputs]
    size, index = scanopt.cache_info()["size"], _index_entries()
    with pytest.raises(cls) as excinfo:
        yield excinfo
    message = str(excinfo.value)
    for part in says:
        assert part in message, f"{part!r} is not in the message:\n{message}"
    assert [_state(v) for v in inputs] == before, "an input was modified"
    assert scanopt.cache_info()["size"] == size, "a compiled loop was kept in memory"
    assert _index_entries() == index, "a disk cache entry was written"
    check_traceback(excinfo)


def names_the_argument(excinfo, where):
    """An error about an argument: no file position (it is not in the step), the argument's
    name first, and a hint after the message."""
    err = excinfo.value
    assert str(err).startswith(f"error: {where} "), str(err)
    assert err.loc is None and err.hint, str(err)


def check_location(excinfo, cls, fn, offset):
    """An error about the user's code: ``file:line:col: error:`` at the line ``offset`` lines
    below ``fn``'s ``def`` (marked ``# ERR``), that line shown, and a caret under it."""
    err, filename = excinfo.value, fn.__code__.co_filename
    line = fn.__code__.co_firstlineno + offset
    source = linecache.getline(filename, line)
    assert isinstance(err, cls) and "# ERR" in source, (type(err), source)
    message = str(err)
    assert message.startswith(f"{filename}:{line}:{err.loc.col}: error: "), message
    assert 1 <= err.loc.col <= len(source.rstrip()), message
    assert f"\n    {source.strip()}\n" in message, message
    assert f"\n    {' ' * (err.loc.col - 1 - (len(source) - len(source.lstrip())))}^" in message
    return message


# --------------------------------------------------------------------------------------------
# n_steps
# --------------------------------------------------------------------------------------------

def test_n_steps_larger_than_the_shortest_sequence_names_it_and_both_lengths():
    X, h0 = data()
    Y = X[:2]
    with refused(scanopt.ScanValueError, X, Y, h0,
                 says=("n_steps=3", "sequences[1], which has 2 steps", "4, 2",
                       "n_steps <= 2")) as excinfo:
        scanopt.scan(lambda x_t, y_t, h: h + x_t + y_t, sequences=[X, Y], outputs_info=h0,
                     n_steps=3)
    names_the_argument(excinfo, "n_steps=3")


def test_n_steps_larger_than_a_single_sequence():
    X, h0 = data()
    with refused(scanopt.ScanValueError, X, h0,
                 says=("n_steps=9 is larger than sequences, which has 4 steps",)):
        scanopt.scan(rnn, sequences=X, outputs_info=h0, n_steps=9)


def test_negative_n_steps():
    X, h0 = data()
    with refused(scanopt.ScanValueError, X, h0,
                 says=("n_steps must not be negative, got -2", "go_backwards=True")) as excinfo:
        scanopt.scan(rnn, sequences=X, outputs_info=h0, n_steps=-2)
    names_the_argument(excinfo, "n_steps")


@pytest.mark.parametrize("n_steps,shown,hint", [
    (True, "True (a bool)", "as an int"),
    (2.0, "2.0 (a float)", "n_steps=2 (an int, not a float)"),
    (np.float32(3), "(a float32)", "n_steps=3"),
    (2.5, "2.5 (a float)", "as an int"),
    ("3", "'3' (a str)", "as an int"),
    (1j, "1j (a complex)", "as an int"),
], ids=["bool", "float", "float32", "fraction", "str", "complex"])
def test_n_steps_that_is_not_an_integer(n_steps, shown, hint):
    X, h0 = data()
    with refused(scanopt.ScanValueError, X, h0,
                 says=("n_steps must be an integer", shown, hint)) as excinfo:
        scanopt.scan(rnn, sequences=X, outputs_info=h0, n_steps=n_steps)
    names_the_argument(excinfo, "n_steps")


def test_numpy_integer_n_steps_is_an_integer():
    X, h0 = data()
    for n in (np.int64(3), np.uint8(3), np.array(3)):
        assert_matches(scanopt.scan(rnn, sequences=X, outputs_info=h0, n_steps=n),
                       plain_loop(rnn, sequences=X, outputs_info=h0, n_steps=3))


# --------------------------------------------------------------------------------------------
# What the step returns
# --------------------------------------------------------------------------------------------

def returns_one_for_two(x_t, h, c):
    h = np.tanh(x_t + h)
    return h  # ERR


def test_a_step_that_returns_the_wrong_number_of_values():
    X, h0 = data()
    c0 = h0.copy()
    with refused(scanopt.ScanValueError, X, h0, c0,
                 says=("the step returns 1 value, but outputs_info has 2 entries",
                       "None for a value")) as excinfo:
        scanopt.scan(returns_one_for_two, sequences=X, outputs_info=[h0, c0])
    check_location(excinfo, scanopt.ScanValueError, returns_one_for_two, 2)


def dtype_drift(x_t, h, scale):
    h = h + x_t
    return h * scale  # ERR


def test_dtype_drift_of_a_carry_names_the_carry_both_types_and_the_line():
    X, h0 = data()
    scale = np.float64(0.5)  # a float64 NumPy scalar promotes the float32 carry
    with refused(scanopt.ScanTypeError, X, h0,
                 says=("The input carry `h` has type float32[3,5] but the step returns "
                       "float64[3,5] for it, so the dtypes do not match", ".astype(h.dtype)")
                 ) as excinfo:
        scanopt.scan(dtype_drift, sequences=X, outputs_info=h0, non_sequences=scale)
    check_location(excinfo, scanopt.ScanTypeError, dtype_drift, 2)


def shape_drift(x_t, h):
    both = np.concatenate([h, x_t], axis=-1)
    return both  # ERR


def test_shape_drift_of_a_carry_names_the_carry_both_types_and_the_line():
    X, h0 = data()
    with refused(scanopt.ScanTypeError, X, h0,
                 says=("The input carry `h` has type float32[3,5] but the step returns "
                       "float32[3,10] for it, so the shapes do not match",)) as excinfo:
        scanopt.scan(shape_drift, sequences=X, outputs_info=h0)
    check_location(excinfo, scanopt.ScanTypeError, shape_drift, 2)


# --------------------------------------------------------------------------------------------
# Inputs that are not arrays of numbers
# --------------------------------------------------------------------------------------------

class Opaque:
    pass


with warnings.catch_warnings():
    warnings.simplefilter("ignore", PendingDeprecationWarning)  # np.matrix's own warning
    MATRIX = np.matrix(np.ones((T, H), np.float32))


NOT_ARRAYS = {
    # id: (where the bad value goes, the value, error class, what the message says)
    "str_sequence": ("sequences", "abc", scanopt.ScanTypeError,
                     ("sequences is a str, not an array",)),
    "dict_non_sequence": ("non_sequences", {"W": 1.0}, scanopt.ScanTypeError,
                          ("non_sequences is a dict",)),
    "object_non_sequence": ("non_sequences", [1.0, Opaque()], scanopt.ScanTypeError,
                            ("non_sequences[1] is an Opaque",)),
    "object_sequence": ("sequences", Opaque(), scanopt.ScanTypeError,
                        ("sequences is an Opaque, not an array",)),
    "none_in_sequences": ("sequences", [np.ones((T, B, H), np.float32), None],
                          scanopt.ScanTypeError, ("sequences[1] is None",)),
    "object_dtype": ("sequences", np.ones((T, B, H)).astype(object), scanopt.ScanTypeError,
                     ("sequences is an array of dtype object", "np.asarray(x, dtype=")),
    "list_with_none": ("outputs_info", [[1.0, None, 2.0, 3.0, 4.0]], scanopt.ScanTypeError,
                       ("outputs_info[0] is a list that NumPy turns into an array of dtype "
                        "object",)),
    "string_array": ("sequences", np.array([["a"] * H] * T), scanopt.ScanTypeError,
                     ("sequences is an array of dtype <U1", "integer codes")),
    "datetime_array": ("sequences", np.arange(T).astype("datetime64[D]"),
                       scanopt.ScanTypeError,
                       ("sequences is an array of dtype datetime64[D]", "np.timedelta64")),
    "float128": ("non_sequences", np.ones(H, np.longdouble), scanopt.ScanTypeError,
                 (f"non_sequences is an array of dtype {np.dtype(np.longdouble)}",)),
    "ragged_nested_list": ("sequences", [[[1.0, 2.0], [3.0]]], scanopt.ScanValueError,
                           ("sequences[0] cannot be made into an array", "same length")),
    "matrix": ("sequences", MATRIX, scanopt.ScanTypeError,
               ("sequences is a numpy.matrix", "`*` on it is a matrix product",
                "np.asarray(x)")),
    "masked_sequence": ("sequences", np.ma.masked_array(np.ones((T, H)), mask=False),
                        scanopt.ScanTypeError, ("sequences is a numpy.ma.MaskedArray",
                                                ".filled(")),
    "masked_init": ("outputs_info", np.ma.masked_array(np.ones(H), mask=[1, 0, 0, 0, 0]),
                    scanopt.ScanTypeError, ("outputs_info is a numpy.ma.MaskedArray",
                                            ".filled(")),
    "masked_non_sequence": ("non_sequences", [np.ma.masked_array(np.ones(H))],
                            scanopt.ScanTypeError,
                            ("non_sequences[0] is a numpy.ma.MaskedArray",)),
}


@pytest.mark.parametrize("case", list(NOT_ARRAYS))
def test_inputs_that_are_not_arrays_of_numbers(case):
    where, value, cls, says = NOT_ARRAYS[case]
    args = {"sequences": np.ones((T, H)), "outputs_info": np.zeros(H), "non_sequences": []}
    args[where] = value
    with refused(cls, *args.values(), says=says) as excinfo:
        scanopt.scan(lambda *a: a[-1], **args, n_steps=2)
    names_the_argument(excinfo, says[0].split(" ")[0])


def test_a_memmap_is_a_plain_array(tmp_path):
    X, h0 = data()
    mapped = np.memmap(tmp_path / "x.dat", dtype=X.dtype, mode="w+", shape=X.shape)
    mapped[:] = X
    assert_matches(scanopt.scan(rnn, sequences=mapped, outputs_info=h0),
                   plain_loop(rnn, sequences=X, outputs_info=h0))


GENERATORS = {"RandomState": (np.random.RandomState(0), "a np.random.RandomState"),
              "np_random": (np.random, "the np.random module"),
              "python_random": (random.Random(0), "a Python random.Random")}


def noisy(x_t, h, rng):
    return h + x_t * rng.standard_normal(h.shape).astype(h.dtype)


@pytest.mark.parametrize("case", list(GENERATORS))
def test_a_generator_that_is_not_a_numpy_generator(case):
    X, h0 = data()
    rng, kind = GENERATORS[case]
    with refused(scanopt.ScanTypeError, X, h0, rng,
                 says=(f"non_sequences is {kind}", "np.random.default_rng(seed)")) as excinfo:
        scanopt.scan(noisy, sequences=X, outputs_info=h0, non_sequences=rng)
    names_the_argument(excinfo, "non_sequences")


legacy_rng = np.random.RandomState(0)
python_rng = random.Random(0)


def captures_random_state(x_t, h):
    noise = legacy_rng.standard_normal(h.shape)  # ERR
    return h + x_t * noise


def captures_python_random(x_t, h):
    return h + x_t * python_rng.random()  # ERR


@pytest.mark.parametrize("step,says", [
    (captures_random_state, "`legacy_rng` is a np.random.RandomState"),
    (captures_python_random, "`python_rng` is a Python random.Random"),
], ids=["RandomState", "python_random"])
def test_a_captured_generator_that_is_not_a_numpy_generator(step, says):
    X, h0 = data()
    rng = legacy_rng if step is captures_random_state else python_rng
    with refused(scanopt.ScanTypeError, X, h0, rng,
                 says=(says, "np.random.default_rng(seed)")) as excinfo:
        scanopt.scan(step, sequences=X, outputs_info=h0)
    check_location(excinfo, scanopt.ScanTypeError, step, 1)


def test_a_numpy_generator_as_a_sequence_goes_to_non_sequences():
    X, h0 = data()
    rng = np.random.default_rng(0)
    with refused(scanopt.ScanTypeError, X, h0, rng,
                 says=("sequences[1] is a numpy.random.Generator", "as a non-sequence")):
        scanopt.scan(noisy, sequences=[X, rng], outputs_info=h0)


# --------------------------------------------------------------------------------------------
# Step functions scanopt cannot read or inline
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("filename,where", [("<string>", "by exec() or eval()"),
                                            ("<stdin>", "at the interactive prompt")])
def test_a_step_without_source(filename, where):
    namespace = {"np": np}
    exec(compile("def made(x_t, h):\n    return h + x_t\n", filename, "exec"), namespace)
    X, h0 = data()
    with refused(scanopt.UnsupportedSyntax, X, h0,
                 says=(f"cannot read the source of the function 'made': it was defined {where}",
                       "Define it in a .py file")) as excinfo:
        scanopt.scan(namespace["made"], sequences=X, outputs_info=h0)
    assert excinfo.value.hint


def countdown(h, k):
    return countdown(h * 0.5, k - 1)  # ERR


def recursive_step(x_t, h):
    return countdown(h + x_t, 3)


def ping(h):
    return pong(h * 0.5)


def pong(h):
    return ping(h + 1.0)  # ERR


def mutually_recursive_step(x_t, h):
    return ping(h + x_t)


@pytest.mark.parametrize("step,helper,cycle", [
    (recursive_step, countdown, "countdown() calls itself (countdown() → countdown())"),
    (mutually_recursive_step, pong, "ping() calls itself through pong() "
                                    "(ping() → pong() → ping())"),
], ids=["direct", "mutual"])
def test_recursion_in_helpers(step, helper, cycle):
    X, h0 = data()
    with refused(scanopt.UnsupportedSyntax, X, h0,
                 says=("recursion is not supported inside a step function: " + cycle,
                       "for k in range(3)")) as excinfo:
        scanopt.scan(step, sequences=X, outputs_info=h0)
    check_location(excinfo, scanopt.UnsupportedSyntax, helper, 1)


def sigmoid_step(x_t, h):
    z = x_t + h
    return np.sigmoid(z)  # ERR


def einsum_step(x_t, h):
    z = x_t + h
    return np.einsum("bi,bi->bi", z, z)  # ERR


def typo_step(x_t, h):
    z = x_t + h
    return np.expp(z)  # ERR


from numpy import cumsum  # noqa: E402  (imported by name, as users do)


def imported_by_name_step(x_t, h):
    z = x_t + h
    return cumsum(z, axis=0)  # ERR


@pytest.mark.parametrize("step,says", [
    (sigmoid_step, ("np.sigmoid is not supported", "write 1 / (1 + np.exp(-x))")),
    (einsum_step, ("np.einsum is not supported", "@ / np.matmul")),
    (typo_step, ("np.expp is not supported", "Nearest supported NumPy functions: np.exp")),
    (imported_by_name_step, ("np.cumsum is not supported", "Nearest supported NumPy "
                                                           "functions: np.sum")),
], ids=["sigmoid", "einsum", "typo", "imported_by_name"])
def test_an_unsupported_numpy_function_suggests_the_nearest(step, says):
    X, h0 = data()
    with refused(scanopt.UnsupportedSyntax, X, h0, says=says) as excinfo:
        scanopt.scan(step, sequences=X, outputs_info=h0)
    message = check_location(excinfo, scanopt.UnsupportedSyntax, step, 2)
    assert "np.concatenate" not in message and "np.full_like" not in message, (
        f"the whole list of supported functions is shown:\n{message}")


# --------------------------------------------------------------------------------------------
# Unusual values that are not errors: the plain loop's behaviour
# --------------------------------------------------------------------------------------------

def leaky_max(x_t, h):
    return np.maximum(h * 0.5, x_t) + 0.1 * x_t


def test_nan_and_inf_propagate_as_in_the_plain_loop(optimize):
    X, h0 = data(dtype=np.float64)
    X[1, 0, 0], X[2, 1, 1], X[0, 2, 2], X[3, 2, 3] = np.nan, np.inf, -np.inf, np.nan
    h0[0, 4] = np.nan
    with np.errstate(invalid="ignore"):
        expected = plain_loop(leaky_max, sequences=X, outputs_info=h0)
        actual = scanopt.scan(leaky_max, sequences=X, outputs_info=h0, optimize=optimize)
    assert np.isnan(expected).any() and np.isinf(expected).any()
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected))
    np.testing.assert_array_equal(np.isinf(actual), np.isinf(expected))
    assert_matches(actual, expected)


def grow(x_t, h):
    return h * 3 + x_t


@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.uint16, np.int64])
def test_integer_overflow_wraps_around_as_numpy_arrays_do(optimize, dtype):
    X = np.arange(1, 1 + 50 * B, dtype=dtype).reshape(50, B)
    h0 = np.ones(B, dtype)
    expected = plain_loop(grow, sequences=X, outputs_info=h0)
    assert (np.diff(expected.astype(np.float64), axis=0) < 0).any()  # it did wrap around
    assert_matches(scanopt.scan(grow, sequences=X, outputs_info=h0, optimize=optimize),
                   expected)


def test_a_0d_integer_carry_wraps_around_as_numpy_does(optimize):
    """A 0-d carry is fed back as a 0-d array (docs/semantics.md): it wraps around like any
    integer array (NumPy warns about overflow for NumPy scalars only)."""
    X = np.arange(1, 31, dtype=np.int32)
    h0 = np.int32(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        expected = plain_loop(grow, sequences=X, outputs_info=h0)
        actual = scanopt.scan(grow, sequences=X, outputs_info=h0, optimize=optimize)
    assert (np.diff(expected.astype(np.float64)) < 0).any()  # it did wrap around
    assert_matches(actual, expected)


def decay(h, a):
    return h * a + 1.0


def test_a_huge_n_steps_with_keep_last_runs_in_constant_memory():
    h0 = np.zeros(8)
    scanopt.scan(decay, outputs_info=h0, non_sequences=0.5, n_steps=10, keep="last")

    def peak(n_steps):
        tracemalloc.start()
        try:
            last = scanopt.scan(decay, outputs_info=h0, non_sequences=0.5, n_steps=n_steps,
                                keep="last")
            return tracemalloc.get_traced_memory()[1], last
        finally:
            tracemalloc.stop()

    small, _ = peak(10**3)
    large, last = peak(10**5)
    np.testing.assert_allclose(last, 2.0)
    # keep="all" would hold 10**5 * 8 float64: 6.4 MB
    assert large <= small + 4096, (small, large)


# --------------------------------------------------------------------------------------------
# Lambdas inside larger expressions
# --------------------------------------------------------------------------------------------

CASES = {
    "scale": (lambda h, k: k * h,
              2.0),
    "shift": (lambda h, k: h + k, 3.0), "again": (lambda h, k: h + k * 2.0, 1.0),
}
PAIRS = [(lambda h, k: k * h - 1.0, 1.0), (lambda h, k: h - k,
                                           2.0)]


@pytest.mark.parametrize("fn,k", [*CASES.values(), *PAIRS],
                         ids=[*CASES, "pair_0", "pair_1"])
def test_a_lambda_inside_a_dict_or_list_literal(fn, k):
    h0 = np.linspace(-1.0, 1.0, 4)
    assert_matches(scanopt.scan(fn, outputs_info=h0, non_sequences=k, n_steps=3),
                   plain_loop(fn, outputs_info=h0, non_sequences=k, n_steps=3))
