"""``backend="numba"`` (scanopt/lowering/numba_emitter.py) against the plain loop.

A loop whose step is one fused region runs as one numba-compiled function; anything else
stays NumPy code with a :class:`NumbaWarning` saying why, and must still be right. Tolerance
(float32): rtol 2e-5, atol 1e-5 (``assert_matches``); the compiled float32 ``tanh`` is
within 7 ulp (4.2e-7) of the exact one (``test_tanh32_accuracy``). Skipped without numba
(``pip install 'scanopt[numba]'``).
"""

from __future__ import annotations

import ast
import importlib.util
import platform
import re
import warnings

import numpy as np
import pytest
from hypothesis import given, settings

import scanopt
from conftest import HYPOTHESIS_SETTINGS, assert_matches, plain_loop
from cupy_cases import elman_args, elman_step, gru_args, gru_step, lstm_args, lstm_step

if importlib.util.find_spec("numba") is None:
    pytest.skip("numba is not installed (pip install 'scanopt[numba]')", allow_module_level=True)

from scanopt import NumbaWarning  # noqa: E402
from test_hypothesis_gates import gated_programs, run_case  # noqa: E402

F32, F64 = np.float32, np.float64


def numba_scan(step, expect_compiled=True, **args):
    """scanopt.scan(backend="numba"), checked against the plain loop; whether the loop was
    compiled (no NumbaWarning) must be ``expect_compiled``."""
    expected = plain_loop(step, **args)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", NumbaWarning)
        actual = scanopt.scan(step, backend="numba", **args)
    fallbacks = [w for w in caught if issubclass(w.category, NumbaWarning)]
    assert not fallbacks if expect_compiled else fallbacks, [str(w.message) for w in fallbacks]
    assert_matches(actual, expected)
    return fallbacks


def loop_source(step, **args) -> str:
    return scanopt.step(step).source(args.get("sequences"), args.get("outputs_info"),
                                     args.get("non_sequences"), n_steps=args.get("n_steps"),
                                     backend="numba")


@pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])
@pytest.mark.parametrize("step,make", [
    (lstm_step, lambda dt: lstm_args(T=7, B=16, I=32, H=128, dtype=dt)),
    (lstm_step, lambda dt: lstm_args(T=5, B=3, I=4, H=6, dtype=dt)),
    (gru_step, lambda dt: _cast(gru_args(T=6, B=16, I=24, H=40), dt)),
    (elman_step, lambda dt: _cast(elman_args(T=6, B=5, I=7, H=9), dt)),
], ids=["lstm-blocks", "lstm-small", "gru", "elman"])
def test_cells_run_compiled_and_match_the_plain_loop(step, make, dtype):
    args = make(dtype)
    numba_scan(step, **args)
    source = loop_source(step, **args)
    main = next(n for n in ast.parse(source).body
                if isinstance(n, ast.FunctionDef) and n.name == step.__name__)
    assert not [n for n in ast.walk(main) if isinstance(n, ast.For)], "the steps run in Python"
    assert "_compiled_steps(" in ast.unparse(main)


def _cast(args, dtype):
    def cast(v):
        return v.astype(dtype) if isinstance(v, np.ndarray) else [cast(x) for x in v]
    return {k: cast(v) for k, v in args.items()}


def vector_gate_step(x_t, h, W, U, b, scale):
    z = 1 / (1 + np.exp(-(x_t @ W + h @ U + b)))
    return z * h * scale + (1 - z) * np.tanh(x_t @ W), np.sqrt(np.abs(h)) - h * h


def test_vector_carry_scalar_parameter_and_a_per_step_output():
    rng = np.random.default_rng(0)
    args = dict(sequences=rng.standard_normal((6, 4)).astype(F32),
                outputs_info=[rng.standard_normal(5).astype(F32), None],
                non_sequences=[rng.standard_normal((4, 5)).astype(F32),
                               (0.3 * rng.standard_normal((5, 5))).astype(F32),
                               rng.standard_normal(5).astype(F32), 0.5])
    numba_scan(vector_gate_step, **args)


def broadcast_step(h, U, row, column):
    return np.tanh(h @ U + row) * column + row / (1 + h * h)


def test_broadcast_operands_rows_columns_and_slices():
    rng = np.random.default_rng(1)
    args = dict(outputs_info=rng.standard_normal((3, 8)).astype(F64),
                non_sequences=[0.4 * rng.standard_normal((8, 8)), rng.standard_normal(8),
                               rng.standard_normal((3, 1))], n_steps=5)
    numba_scan(broadcast_step, **args)


def test_zero_steps():
    args = lstm_args(T=0, B=2, I=3, H=4)
    numba_scan(lstm_step, **args)


def relu_step(h, U):
    return np.maximum(h @ U, 0.0)


def until_step(h, U):
    h = np.tanh(h @ U)
    return h, scanopt.until(np.abs(h).sum() < 0.1)


@pytest.mark.parametrize("case,reason", [
    (lambda: (elman_step, dict(elman_args(), keep="last")), 'keep="last"'),
    (lambda: (elman_step, dict(elman_args(), go_backwards=True)), "go_backwards"),
    (lambda: (relu_step, dict(outputs_info=np.ones((2, 3)), non_sequences=np.eye(3),
                              n_steps=3)), "`maximum` has no numba lowering"),
    (lambda: (until_step, dict(outputs_info=np.ones((2, 3)), non_sequences=0.5 * np.eye(3),
                               n_steps=9)), "until"),
    (lambda: (lstm_step, lstm_args(T=3, B=64, I=8, H=512)), "above the BLAS's small-matrix"),
], ids=["keep-last", "go-backwards", "maximum", "until", "large-matmul"])
def test_what_is_not_compiled_warns_and_stays_right(case, reason):
    step, args = case()
    keep = args.pop("keep", "all")
    # (the oracle has no until: there, the NumPy backend's result, itself tested against
    # the Theano semantics in test_hypothesis_taps.py)
    expected = scanopt.scan(step, **args) if step is until_step else plain_loop(step, **args)
    with pytest.warns(NumbaWarning, match=re.escape(reason)) as caught:
        actual = scanopt.scan(step, backend="numba", keep=keep, **args)
    assert caught[0].filename == __file__  # at the user's call
    if keep == "last":
        expected = expected[-1]
    assert_matches(actual, expected)
    # The module says it too (a later process that loads it from the disk cache is not warned).
    source = scanopt.step(step).source(args.get("sequences"), args.get("outputs_info"),
                                       args.get("non_sequences"), n_steps=args.get("n_steps"),
                                       keep=keep, go_backwards=args.get("go_backwards", False),
                                       backend="numba")
    assert "this loop runs as NumPy code" in source and reason in source


def test_tanh32_accuracy():
    import numba

    from scanopt.lowering.numba_emitter import _TANH32_SOURCE

    space = {"np": np, "numba": numba, "_numba_cache": False}
    exec(compile(_TANH32_SOURCE, "<tanh32>", "exec"), space)
    tanh32 = space["_tanh32"]

    @numba.njit
    def apply(x, out):
        for i in range(x.size):
            out[i] = tanh32(x[i])

    x = np.concatenate([np.linspace(-12, 12, 2_000_001, dtype=F32),
                        np.array([1e-38, -1e-30, 3.9e-4, 4.1e-4, 0.0, -0.0], F32)])
    out = np.empty_like(x)
    apply(x, out)
    exact = np.tanh(x.astype(F64))
    ulp = np.spacing(np.abs(exact).astype(F32)).astype(F64)
    assert np.max(np.abs(out - exact) / ulp) <= 7.0
    assert np.max(np.abs(out - exact)) <= 4.2e-7
    special = np.array([np.nan, np.inf, -np.inf], F32)
    apply(special, out[:3])
    assert np.isnan(out[0]) and out[1] == 1 and out[2] == -1


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86-64 assembly")
def test_the_compiled_step_is_vectorised():
    """The gate math runs in SIMD registers (packed divisions of the rational tanh)."""
    args = lstm_args(T=3, B=16, I=8, H=128)
    numba_scan(lstm_step, **args)
    kernel = next(entry.run.__globals__["_compiled_steps"]
                  for entries in scanopt.api._STATS.entries.values() for entry in entries
                  if "_compiled_steps" in entry.run.__globals__)
    assembly = "\n".join(kernel.inspect_asm().values())
    assert re.search(r"vdivps\s+%[yz]mm", assembly), "the tanh loop is not vectorised"


def test_the_module_imports_numpy_and_numba_only():
    source = loop_source(elman_step, **elman_args())
    imports = {alias.name for node in ast.walk(ast.parse(source))
               if isinstance(node, ast.Import | ast.ImportFrom)
               for alias in node.names}
    assert imports == {"numpy", "numba"}


def test_the_module_text_also_runs_by_exec():
    """Text run by exec has no file for numba to keep its compiled loop beside: it compiles
    without caching instead of refusing (numba raises for cache=True there)."""
    args = elman_args()
    space: dict = {}
    exec(compile(loop_source(elman_step, **args), "<scanopt source>", "exec"), space)
    assert space["_numba_cache"] is False
    sequence, h0, params = args["sequences"], args["outputs_info"], args["non_sequences"]
    hs = space["elman_step"](sequence, h0, *params, len(sequence))
    assert_matches(hs, plain_loop(elman_step, **args))


def test_without_numba_the_error_says_what_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "numba" else real(name, *a))
    scanopt.clear_cache()
    with pytest.raises(scanopt.ScanValueError, match=r"scanopt\[numba\]"):
        scanopt.scan(lambda h: h * 0.5 + 1.0, outputs_info=np.ones(3), n_steps=2,
                     backend="numba")


@pytest.fixture(scope="module")
def gen_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("numba_gates")


def compilable(case):
    """A gated program as test_hypothesis_gates.py draws it, kept to what numba compiles: every
    output kept, forwards, no relu (maximum/minimum)."""
    return {**case, "keep": "all", "go_backwards": False}


def run_compiled(case, gen_dir):
    original = scanopt.scan

    def scan_with_numba(*a, **kw):
        if not kw.get("optimize", True):  # check_scan's run without passes: the NumPy loop
            return original(*a, **kw)
        with warnings.catch_warnings():
            warnings.simplefilter("error", NumbaWarning)  # it must be compiled
            return original(*a, **{**kw, "backend": "numba"})

    scanopt.scan = scan_with_numba
    try:
        run_case(case, gen_dir)
    finally:
        scanopt.scan = original


_PROGRAMS = gated_programs().map(compilable).filter(lambda c: "maximum" not in c["source"])


@settings(max_examples=5, **HYPOTHESIS_SETTINGS)
@given(case=_PROGRAMS)
def test_random_gated_recurrences(gen_dir, case):
    """The property-based gated recurrences of test_hypothesis_gates.py, compiled by numba."""
    run_compiled(case, gen_dir)


@pytest.mark.slow
@settings(max_examples=100, **HYPOTHESIS_SETTINGS)
@given(case=_PROGRAMS)
def test_random_gated_recurrences_many(gen_dir, case):
    run_compiled(case, gen_dir)


def test_exact_random_gives_the_numpy_loops_numbers():
    """exact_random=True promises the plain loop's numbers: no compiled loop then."""
    args = lstm_args(T=4, B=16, I=8, H=128)
    numba_result = scanopt.scan(lstm_step, backend="numba", exact_random=True, **args)
    numpy_result = scanopt.scan(lstm_step, exact_random=True, **args)
    for a, b in zip(numba_result, numpy_result):
        np.testing.assert_array_equal(a, b)
    assert "_compiled_steps" not in scanopt.step(lstm_step).source(
        args["sequences"], args["outputs_info"], args["non_sequences"], backend="numba",
        exact_random=True)


def test_non_contiguous_arguments():
    """Weights, sequences and initial states that are views (a transpose, every other row)
    are passed to the compiled loop as contiguous arrays."""
    rng = np.random.default_rng(3)
    X = rng.standard_normal((12, 16, 8)).astype(F32)[::2]
    U = (0.2 * rng.standard_normal((40, 40))).astype(F32).T
    W = (0.3 * rng.standard_normal((40, 8))).astype(F32).T
    h0 = rng.standard_normal((40, 16)).astype(F32).T
    numba_scan(elman_step, sequences=X, outputs_info=h0,
               non_sequences=[W, U, np.zeros(40, F32)])


NUMBA_CACHE_SCRIPT = '''
import sys
import numba
import numpy as np
import scanopt


def step(x_t, h, W, U):
    return np.tanh(x_t @ W + h @ U)


rng = np.random.default_rng(0)
X = rng.standard_normal((5, 3, 4)).astype(np.float32)
h0 = np.zeros((3, 6), np.float32)
W, U = (0.5 * rng.standard_normal(s).astype(np.float32) for s in ((4, 6), (6, 6)))
hs = scanopt.scan(step, sequences=X, outputs_info=h0, non_sequences=[W, U], backend="numba")
h = h0
for x_t in X:
    h = step(x_t, h, W, U)
assert np.allclose(hs[-1], h, rtol=2e-5, atol=1e-5)
hits = misses = 0
for name, module in list(sys.modules.items()):
    if name.startswith("scanopt_generated_"):
        for value in vars(module).values():
            if isinstance(value, numba.core.registry.CPUDispatcher):
                hits += sum(value.stats.cache_hits.values())
                misses += sum(value.stats.cache_misses.values())
print(scanopt.cache_info()["disk_hits"], hits, misses)
'''


def test_compiled_loops_are_kept_on_disk(tmp_path):
    """A second process served from the disk cache loads numba's compiled function too (numba's
    own cache beside the module, in generated/__pycache__), instead of compiling it again."""
    import os
    import subprocess
    import sys

    script = tmp_path / "job.py"
    script.write_text(NUMBA_CACHE_SCRIPT)
    env = {**os.environ, "SCANOPT_CACHE_DIR": str(tmp_path / "cache")}
    runs = [subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                           env=env, timeout=300, check=False) for _ in range(2)]
    for run in runs:
        assert run.returncode == 0, run.stderr
    (first_disk_hits, first_hits, first_misses), (disk_hits, hits, misses) = (
        map(int, run.stdout.split()) for run in runs)
    assert (first_disk_hits, first_hits) == (0, 0) and first_misses >= 1  # compiled, written
    assert (disk_hits, misses) == (1, 0) and hits >= 1  # both caches hit: nothing compiled
    assert list((tmp_path / "cache" / "generated" / "__pycache__").glob("*.nbi"))
