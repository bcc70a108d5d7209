"""Shared test helpers: the plain-loop oracle, result comparison, and the ``optimize`` fixture.

``plain_loop`` is the reference loop of docs/semantics.md, written independently of scanopt:
the differential tests compare ``scanopt.scan(...)`` against it with the same arguments.
"""

from __future__ import annotations

import contextlib
import copy

import numpy as np
import pytest


# --------------------------------------------------------------------------------------------
# The oracle
# --------------------------------------------------------------------------------------------

def as_list(x):
    """``[]`` for None, ``list(x)`` for a list or tuple, else ``[x]`` (docs/semantics.md)."""
    if x is None:
        return []
    if isinstance(x, (list, tuple)):
        return list(x)
    return [x]


def _as_outputs(out):
    return list(out) if isinstance(out, (tuple, list)) else [out]


def _probe_outputs(fn, seqs, inits, params):
    """Call ``fn`` once, outside the loop, to learn the number, shapes and dtypes of its outputs.

    Only used when the loop runs zero times (the stacked results then have shape ``(0, ...)``,
    which needs the per-step value's shape). Random generators are deep-copied so the probe
    draws nothing from the caller's generators.
    """
    slices = [s[0] if len(s) > 0 else np.zeros(s.shape[1:], dtype=s.dtype) for s in seqs]
    params = [copy.deepcopy(p) if isinstance(p, np.random.Generator) else p for p in params]
    with np.errstate(all="ignore"):
        out = fn(*slices, *[v for v in inits if v is not None], *params)
    return [np.asarray(v) for v in _as_outputs(out)]


def plain_loop(fn, sequences=None, outputs_info=None, non_sequences=None, n_steps=None,
               go_backwards=False):
    """The reference loop of docs/semantics.md, in plain Python.

    Errors are raised as plain ``ValueError`` / ``TypeError`` (scanopt raises its own classes;
    the differential tests never feed the oracle an erroneous call).
    """
    seqs = [np.asarray(s) for s in as_list(sequences)]
    inits = as_list(outputs_info)
    inits = [None if v is None else np.asarray(v) for v in inits]
    params = as_list(non_sequences)  # passed as they are (Python scalars stay Python scalars)

    n = min(len(s) for s in seqs) if seqs else None
    if n_steps is not None:
        if n_steps < 0:
            raise ValueError(f"n_steps must be >= 0, got {n_steps}")
        if n is not None and n_steps > n:
            raise ValueError(f"n_steps={n_steps} is larger than the shortest sequence ({n})")
        n = n_steps
    if n is None:
        raise ValueError("scan needs sequences or n_steps")
    if go_backwards:  # Theano's rule: each sequence is read from its own end
        seqs = [s[len(s) - n:][::-1] for s in seqs]

    n_declared = len(inits) if outputs_info is not None else None

    def check_count(k):
        if n_declared is not None and k != n_declared:
            raise ValueError(f"step returned {k} values but outputs_info has {n_declared} entries")

    if n == 0:
        probe = _probe_outputs(fn, seqs, inits, params)
        check_count(len(probe))
        return _pack([np.empty((0,) + v.shape, dtype=v.dtype) for v in probe])

    state = list(inits)
    history = None
    for t in range(n):
        args = [s[t] for s in seqs] + [v for v in state if v is not None] + params
        out = _as_outputs(fn(*args))
        check_count(len(out))
        if history is None:
            history = [[] for _ in out]
            if n_declared is None:  # outputs_info=None: every returned value is a per-step output
                state = [None] * len(out)
        for k, v in enumerate(out):
            history[k].append(v)
            if state[k] is not None:
                va, init = np.asarray(v), inits[k]
                if va.dtype != init.dtype or va.shape != init.shape:
                    raise TypeError(
                        f"output {k}: step returns {va.dtype}{list(va.shape)} for a carry whose "
                        f"initial state is {init.dtype}{list(init.shape)}")
                state[k] = np.asarray(v)  # fed back as an array (docs/semantics.md)
    return _pack([np.stack(h) for h in history])


def _pack(result):
    return result[0] if len(result) == 1 else result


# --------------------------------------------------------------------------------------------
# Comparison
# --------------------------------------------------------------------------------------------

_RTOL = {np.dtype(np.float32): 2e-5, np.dtype(np.float64): 1e-12}
_ATOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}


def assert_matches(actual, expected, *, rtol=None, atol=None, _where="result"):
    """Same structure (array vs list of arrays), shape and dtype; values equal to tolerance.

    Integer and bool results must be exactly equal; floats use ``assert_allclose`` with
    rtol 2e-5 (float32) / 1e-12 (float64) and a small atol.
    """
    if isinstance(expected, list):
        assert isinstance(actual, list), (
            f"{_where}: expected a list of {len(expected)} arrays, got {type(actual).__name__}")
        assert len(actual) == len(expected), (
            f"{_where}: expected {len(expected)} outputs, got {len(actual)}")
        for k, (a, e) in enumerate(zip(actual, expected)):
            assert_matches(a, e, rtol=rtol, atol=atol, _where=f"{_where}[{k}]")
        return
    assert isinstance(expected, np.ndarray), f"oracle produced {type(expected).__name__}"
    assert isinstance(actual, np.ndarray), (
        f"{_where}: expected a numpy array, got {type(actual).__name__}")
    assert actual.shape == expected.shape, (
        f"{_where}: shape {actual.shape} != expected {expected.shape}")
    assert actual.dtype == expected.dtype, (
        f"{_where}: dtype {actual.dtype} != expected {expected.dtype}")
    if expected.dtype.kind in "biu":
        np.testing.assert_array_equal(actual, expected, err_msg=_where)
    else:
        r = rtol if rtol is not None else _RTOL.get(expected.dtype, 1e-3)
        a = atol if atol is not None else _ATOL.get(expected.dtype, 1e-3)
        np.testing.assert_allclose(actual, expected, rtol=r, atol=a, err_msg=_where)


def assert_same_values(actual, expected):
    """Bit-for-bit equality with the same structure, shapes and dtypes."""
    if isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected)
        for a, e in zip(actual, expected):
            assert_same_values(a, e)
        return
    assert isinstance(actual, np.ndarray)
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    np.testing.assert_array_equal(actual, expected)


# --------------------------------------------------------------------------------------------
# Fixtures and options
# --------------------------------------------------------------------------------------------

@pytest.fixture(params=[True, False], ids=["opt", "noopt"])
def optimize(request):
    """Run each differential case with every optimisation pass on and off."""
    return request.param


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False,
                     help="run tests marked slow (also run when -m selects them)")


def pytest_collection_modifyitems(config, items):
    # Slow tests run with --runslow or when a -m expression is given (e.g. -m slow);
    # a plain `pytest` run skips them so the suite stays fast.
    if config.getoption("--runslow") or config.getoption("markexpr"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow or -m slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True, scope="session")
def _private_cache_dir(tmp_path_factory):
    """Generated modules and the disk cache go to a temporary directory, not the user's."""
    import os

    previous = os.environ.get("SCANOPT_CACHE_DIR")
    os.environ["SCANOPT_CACHE_DIR"] = str(tmp_path_factory.mktemp("scanopt-cache"))
    yield
    if previous is None:
        os.environ.pop("SCANOPT_CACHE_DIR", None)
    else:
        os.environ["SCANOPT_CACHE_DIR"] = previous


# Shared by the property-based tests: hypothesis settings, and generated step functions written
# to real files (scanopt reads source with inspect) and imported for one test case.
try:
    from hypothesis import HealthCheck

    HYPOTHESIS_SETTINGS = dict(deadline=None, database=None,
                               suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                      HealthCheck.too_slow,
                                                      HealthCheck.data_too_large])
except ImportError:  # pragma: no cover - hypothesis is in the dev extra
    HYPOTHESIS_SETTINGS = {}



@contextlib.contextmanager
def generated_module(source, directory, prefix="_hyp_step"):
    """Write ``source`` to a .py file in ``directory``, import it, and forget it afterwards."""
    import hashlib
    import importlib.util
    import sys

    # Named by the source alone: hypothesis replays a failing example with the same file (and
    # so the same line numbers and code object), which lets it shrink the example.
    name = f"{prefix}_{hashlib.sha1(source.encode()).hexdigest()[:16]}"
    path = directory / f"{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(name, None)

# Profiles of the differential fuzzer (tests/test_fuzz.py). "fuzz-fast" runs in the default test
# run: under a minute on a 2-core machine, and derandomized, so that the default run tests the
# same cases every time. "fuzz-slow" is for the tests marked slow: new random cases each run,
# over 5,000 in all.
try:
    from hypothesis import settings as _settings

    _settings.register_profile("fuzz-fast", max_examples=500, derandomize=True,
                               **HYPOTHESIS_SETTINGS)
    _settings.register_profile("fuzz-slow", max_examples=5000, **HYPOTHESIS_SETTINGS)
except ImportError:  # pragma: no cover - hypothesis is in the dev extra
    pass
