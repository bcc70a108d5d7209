"""User mistakes: the right ScanError subclass, reported at the user's ``file:line:col``.

Each erroneous step function marks its offending line with ``# ERR``; the expected line is
``step.__code__.co_firstlineno + offset`` and ``check_location`` first checks that the marker
really sits on that line, so the offsets below cannot silently drift.
"""

import linecache
import os
import re
import types

import numpy as np
import pytest

import scanopt

try:  # optional: the real scipy.special.expit, a classic "unknown function" in a step
    import scipy.special
except ImportError:  # pragma: no cover
    scipy = None

B, H = 3, 5


def f32(rng, shape):
    return rng.standard_normal(shape).astype(np.float32)


def data(seed=0):
    rng = np.random.default_rng(seed)
    return f32(rng, (4, B, H)), f32(rng, (B, H)), f32(rng, (B, H))  # X, h0, c0


def _scanopt_dir():
    f = getattr(scanopt, "__file__", None)
    return os.path.dirname(os.path.abspath(f)) + os.sep if f else None


def check_traceback(excinfo):
    """The error must not drag the user through scanopt's internals: at most 2 frames inside."""
    pkg = _scanopt_dir()
    inside = [e for e in excinfo.traceback
              if (str(e.path).startswith(pkg) if pkg else "/scanopt/" in str(e.path))]
    assert len(inside) <= 2, (
        f"{len(inside)} traceback entries inside scanopt:\n"
        + "\n".join(f"  {e.path}:{e.lineno + 1}" for e in inside))


def check_location(excinfo, cls, step, offset):
    err = excinfo.value
    assert isinstance(err, cls), f"expected {cls.__name__}, got {type(err).__name__}: {err}"
    assert isinstance(err, scanopt.ScanError)
    assert step.__code__.co_filename == __file__
    line = step.__code__.co_firstlineno + offset
    src = linecache.getline(__file__, line)
    assert "# ERR" in src, f"test bug: offset {offset} of {step.__name__} is not the # ERR line"
    msg = str(err)
    m = re.match(re.escape(__file__) + r":(\d+):(\d+): error: ", msg)
    assert m, f"message does not start with {__file__}:LINE:COL: error: \n{msg}"
    assert int(m.group(1)) == line, f"reported line {m.group(1)}, expected {line}\n{msg}"
    col = int(m.group(2))
    assert 1 <= col <= len(src.rstrip("\n")) + 1, f"column {col} outside the line\n{msg}"
    code = src.split("# ERR")[0].strip()
    assert code in msg, f"the source line {code!r} is not shown\n{msg}"
    assert re.search(r"^\s*\^", msg, re.MULTILINE), f"no caret line\n{msg}"
    check_traceback(excinfo)
    return msg


def test_error_hierarchy():
    assert issubclass(scanopt.ScanError, Exception)
    for cls in (scanopt.UnsupportedSyntax, scanopt.ScanTypeError, scanopt.ScanValueError):
        assert issubclass(cls, scanopt.ScanError)


# --------------------------------------------------------------------------------------------
# UnsupportedSyntax
# --------------------------------------------------------------------------------------------

def if_step(x_t, h):
    h = h + x_t
    if np.sum(h) > 0:  # ERR
        h = h * 0.5
    return h


def while_step(x_t, h):
    h = h + x_t
    while np.max(h) > 1.0:  # ERR
        h = h * 0.5
    return h


def for_step(x_t, h):
    acc = h * 0.0
    for row in x_t:  # ERR
        acc = acc + row
    return acc


def item_assign_step(x_t, h):
    y = h * 2.0
    y[0] = 1.0  # ERR
    return y + x_t


def attr_assign_step(x_t, h):
    y = h * 2.0 + x_t
    y.shape = (15,)  # ERR
    return y.reshape(3, 5)


def print_step(x_t, h):
    h = np.tanh(x_t + h)
    print(h)  # ERR
    return h


# A scipy.special-like namespace whose `expit` is a ufunc that is not NumPy's.
special = types.ModuleType("special")
special.expit = np.frompyfunc(lambda v: 1.0 / (1.0 + np.exp(-v)), 1, 1)


def scipy_like_step(x_t, h):
    z = x_t + h
    return special.expit(z)  # ERR


SYNTAX_CASES = [
    (if_step, 2),
    (while_step, 2),
    (for_step, 2),
    (item_assign_step, 2),
    (attr_assign_step, 2),
    (print_step, 2),
    (scipy_like_step, 2),
]


@pytest.mark.parametrize("step,offset", SYNTAX_CASES, ids=[c[0].__name__ for c in SYNTAX_CASES])
def test_unsupported_syntax(optimize, step, offset):
    X, h0, _ = data()
    with pytest.raises(scanopt.UnsupportedSyntax) as excinfo:
        scanopt.scan(step, sequences=X, outputs_info=h0, optimize=optimize)
    check_location(excinfo, scanopt.UnsupportedSyntax, step, offset)


def scipy_expit_step(x_t, h):
    return scipy.special.expit(x_t + h)  # ERR


def test_unsupported_real_scipy_function(optimize):
    if scipy is None:
        pytest.skip("scipy is not installed")
    X, h0, _ = data()
    with pytest.raises(scanopt.UnsupportedSyntax) as excinfo:
        scanopt.scan(scipy_expit_step, sequences=X, outputs_info=h0, optimize=optimize)
    check_location(excinfo, scanopt.UnsupportedSyntax, scipy_expit_step, 1)


# --------------------------------------------------------------------------------------------
# ScanTypeError: a carry's dtype or shape changes
# --------------------------------------------------------------------------------------------

def f64_array_step(x_t, h, b64):
    return np.tanh(x_t + h + b64)  # ERR


def astype_f64_step(x_t, h):
    return (h + x_t).astype(np.float64)  # ERR


def numpy_scalar_step(x_t, h, s):
    return h * s + x_t  # ERR


DTYPE_CASES = [
    (f64_array_step, [np.zeros(H, dtype=np.float64)]),
    (astype_f64_step, None),
    (numpy_scalar_step, [np.float64(2.0)]),
]


@pytest.mark.parametrize("step,non_sequences", DTYPE_CASES,
                         ids=[c[0].__name__ for c in DTYPE_CASES])
def test_float64_carry_for_float32_init(optimize, step, non_sequences):
    X, h0, _ = data()
    with pytest.raises(scanopt.ScanTypeError) as excinfo:
        scanopt.scan(step, sequences=X, outputs_info=h0, non_sequences=non_sequences,
                     optimize=optimize)
    msg = check_location(excinfo, scanopt.ScanTypeError, step, 1)
    assert "float32" in msg and "float64" in msg, msg


def concat_shape_step(x_t, h):
    return np.concatenate([h, x_t], axis=1)  # ERR


def reduce_shape_step(x_t, h):
    return np.sum(h + x_t, axis=0)  # ERR


@pytest.mark.parametrize("step", [concat_shape_step, reduce_shape_step],
                         ids=lambda s: s.__name__)
def test_carry_shape_change(optimize, step):
    X, h0, _ = data()
    with pytest.raises(scanopt.ScanTypeError) as excinfo:
        scanopt.scan(step, sequences=X, outputs_info=h0, optimize=optimize)
    check_location(excinfo, scanopt.ScanTypeError, step, 1)


# --------------------------------------------------------------------------------------------
# ScanValueError
# --------------------------------------------------------------------------------------------

def one_value_step(x_t, h, c):
    return np.tanh(x_t + h + c)  # ERR


def three_values_step(x_t, h, c):
    return h + x_t, c, h * c  # ERR


def two_values_step(x_t, h):
    return h + x_t, h  # ERR


@pytest.mark.parametrize("step,n_inits", [(one_value_step, 2), (three_values_step, 2),
                                          (two_values_step, 1)],
                         ids=["1_for_2", "3_for_2", "2_for_single"])
def test_wrong_number_of_returned_values(optimize, step, n_inits):
    X, h0, c0 = data()
    outputs_info = [h0, c0] if n_inits == 2 else h0
    with pytest.raises(scanopt.ScanValueError) as excinfo:
        scanopt.scan(step, sequences=X, outputs_info=outputs_info, optimize=optimize)
    check_location(excinfo, scanopt.ScanValueError, step, 1)


def ok_step(x_t, h):
    return np.tanh(x_t + h)


def test_n_steps_negative(optimize):
    X, h0, _ = data()
    with pytest.raises(scanopt.ScanValueError, match="n_steps") as excinfo:
        scanopt.scan(ok_step, sequences=X, outputs_info=h0, n_steps=-1, optimize=optimize)
    assert "-1" in str(excinfo.value)
    check_traceback(excinfo)


def test_n_steps_larger_than_shortest_sequence(optimize):
    X, h0, _ = data()  # X has 4 steps
    with pytest.raises(scanopt.ScanValueError, match="n_steps") as excinfo:
        scanopt.scan(ok_step, sequences=X, outputs_info=h0, n_steps=9, optimize=optimize)
    assert "9" in str(excinfo.value)
    check_traceback(excinfo)


def counter_step(c):
    return c + 1


def test_no_sequences_and_no_n_steps(optimize):
    with pytest.raises(scanopt.ScanValueError, match="n_steps") as excinfo:
        scanopt.scan(counter_step, outputs_info=np.float32(0.0), optimize=optimize)
    check_traceback(excinfo)
