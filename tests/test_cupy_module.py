"""The CuPy backend's generated module: its source without CuPy (structure: valid Python, only
cupy and numpy imported, no cuBLAS call inside the step loop and one kernel per step for the
LSTM, GRU, Elman and Gibbs), the error without CuPy, ``scanopt build --backend cupy``, and the
module run on the CPU (tests/cupy_on_cpu.py: kernels emulated from their CUDA text) against
the plain loop, including CUDA graph capture and replay."""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import cupy_on_cpu
import scanopt
from conftest import assert_matches, plain_loop
from cupy_cases import BENCH_CASES, CASES, elman_args, elman_step, gibbs_args, gibbs_step, \
    lstm_args, lstm_step
from scanopt.lowering.cuda import emulate

pytestmark = pytest.mark.skipif(importlib.util.find_spec("cupy") is not None,
                                reason="these tests stand in for CuPy; a real CuPy is installed")


@pytest.fixture(autouse=True)
def _fresh_cache():
    # A module loaded without CuPy (cp = None) must not serve a test that runs one with it.
    scanopt.clear_cache()
    yield
    scanopt.clear_cache()


def cupy_source(case_fn, args, **options) -> str:
    return scanopt.step(case_fn).source(backend="cupy", **args, **options)


def _function(tree: ast.Module, name: str) -> ast.FunctionDef:
    return next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == name)


def _calls_in(node: ast.AST) -> list[str]:
    return [ast.unparse(n.func) for n in ast.walk(node) if isinstance(n, ast.Call)]


# ---------------------------------------------------------------------------------------------
# The source, without CuPy


@pytest.mark.parametrize("case", sorted(CASES))
def test_source_without_cupy(case):
    assert "cupy" not in sys.modules
    fn, make = CASES[case]
    source = cupy_source(fn, make())
    tree = ast.parse(source)
    imported = {alias.name for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)
                for alias in n.names}
    assert imported == {"cupy", "numpy"}
    steps = _function(tree, "run_steps")
    calls = _calls_in(steps)
    assert not any(c.startswith("cp.") for c in calls), calls  # no cuBLAS, no CuPy call
    kernel_handles = {n.targets[0].id for n in ast.walk(tree) if isinstance(n, ast.Assign)
                      and isinstance(n.value, ast.Call) and ast.unparse(n.value.func) == "_kernel"}
    launches = [c for c in calls if c in kernel_handles]
    assert len(launches) == 1, calls  # one kernel per step
    assert "= _captured(work" in source  # replayed as a CUDA graph
    cuda = ast.literal_eval(next(
        n.value for n in tree.body if isinstance(n, ast.Assign)
        and n.targets[0].id == "_CUDA_SOURCE"))
    assert 'extern "C" __global__ void' in cuda
    assert "cupy" not in sys.modules  # generating the source imported nothing of CuPy


def test_benchmark_shapes_structure():
    """The benchmark workloads: the pushed-out input GEMM before the loop (cp.matmul), one
    kernel per step in the loop (two for the single-vector Gibbs chain, see kernels.py)."""
    for name, (fn, make) in BENCH_CASES.items():
        tree = ast.parse(cupy_source(fn, make()))
        steps = _function(tree, "run_steps")
        assert not any(c.startswith("cp.") for c in _calls_in(steps)), name
        launches = [c for c in _calls_in(steps) if not c.startswith(("range", "cp."))
                    and not c.endswith(".random")]
        # The single-vector Gibbs chain runs its two dependent matmuls as two kernels over the
        # whole GPU (kernels.py, split mode). The batch-64 chain's uniforms (200 kB a step) are
        # pre-drawn too (the CuPy pipeline raises scan-fast-random's per-step limit), so its
        # step is one kernel.
        expected = {"gibbs_vector_784x500": 2}.get(name, 1)
        assert len(launches) == expected, (name, launches)
        if name.startswith("lstm"):
            main = _function(tree, fn.__name__)
            assert "@" in ast.unparse(main)  # the input GEMM, for all steps at once


def test_scan_without_cupy_says_to_install_it():
    fn, make = CASES["elman"]
    with pytest.raises(scanopt.ScanError, match="needs CuPy, which is not installed") as error:
        scanopt.scan(fn, backend="cupy", **make())
    assert "pip install cupy-cuda12x" in str(error.value)


def test_unknown_backend_lists_cupy():
    fn, make = CASES["elman"]
    with pytest.raises(scanopt.ScanError, match="'numpy', 'cupy'"):
        scanopt.scan(fn, backend="jax", **make())


def test_numpy_backend_has_no_fused_regions():
    fn, make = CASES["lstm"]
    source = scanopt.step(fn).source(**make())
    assert "import cupy" not in source and "fused" not in source
    report = scanopt.explain(fn, **make())
    assert "scan-fuse-regions" not in report
    report = scanopt.explain(fn, backend="cupy", **make())
    assert "[scan-fuse-regions]" in report and "one CUDA kernel per step" in report


def test_build_command_writes_the_cupy_module(tmp_path):
    script = tmp_path / "job.py"
    script.write_text(textwrap.dedent("""
        import numpy as np

        def step(x_t, h, W, U, b):
            return np.tanh(x_t @ W + h @ U + b)

        def job():
            X = np.zeros((5, 4, 3), np.float32)
            h0 = np.zeros((4, 8), np.float32)
            return {"fn": step, "sequences": X, "outputs_info": h0,
                    "non_sequences": [np.zeros((3, 8), np.float32), np.eye(8, dtype=np.float32),
                                      np.zeros(8, np.float32)]}
    """))
    out = tmp_path / "job_loop.py"
    result = subprocess.run([sys.executable, "-m", "scanopt.cli", "build", str(script), "--call",
                             "job", "--backend", "cupy", "-o", str(out)],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    text = out.read_text()
    assert "import cupy as cp" in text and "_CUDA_SOURCE = r'''" in text
    ast.parse(text)


# ---------------------------------------------------------------------------------------------
# Run on the CPU


@pytest.fixture
def cp():
    why = emulate.available()
    if why is not None:
        pytest.skip(why)
    with cupy_on_cpu.installed() as module:
        module.GRAPHS.clear()
        yield module


def _host(result):
    if isinstance(result, list):
        return [cupy_on_cpu.asnumpy(r) for r in result]
    assert isinstance(result, cupy_on_cpu.ndarray), type(result)
    return cupy_on_cpu.asnumpy(result)


@pytest.mark.parametrize("case", ["lstm", "gru", "elman"])
def test_module_matches_the_plain_loop(cp, case):
    fn, make = CASES[case]
    args = make()
    expected = plain_loop(fn, **args)
    results = []
    for call in range(4):  # direct, captured, replayed, replayed
        result = scanopt.scan(fn, backend="cupy", **args)
        results.append(result)
        assert_matches(_host(result), expected, rtol=1e-4, atol=1e-5)
    assert len(cp.GRAPHS) == 1 and cp.GRAPHS[0].launches == 3
    first = results[0] if isinstance(results[0], list) else [results[0]]
    last = results[-1] if isinstance(results[-1], list) else [results[-1]]
    for a in first:  # every call returned fresh arrays
        assert all(not np.shares_memory(a, b) for b in last)


def test_new_inputs_replay_the_graph_with_new_values(cp):
    fn = lstm_step
    for seed in range(3):
        args = lstm_args(seed=seed)
        assert_matches(_host(scanopt.scan(fn, backend="cupy", **args)), plain_loop(fn, **args),
                       rtol=1e-4, atol=1e-5)
    assert len(cp.GRAPHS) == 1 and cp.GRAPHS[0].launches == 2  # seen, captured, replayed


def test_keep_last_backwards_and_float64(cp):
    args = elman_args()
    expected = plain_loop(elman_step, go_backwards=True, **args)[-1]
    for _ in range(3):
        got = scanopt.scan(elman_step, backend="cupy", go_backwards=True, keep="last", **args)
        assert_matches(_host(got), expected, rtol=1e-4, atol=1e-5)
    args = lstm_args(dtype=np.float64)
    assert_matches(_host(scanopt.scan(lstm_step, backend="cupy", **args)),
                   plain_loop(lstm_step, **args), rtol=1e-10, atol=1e-12)


def _logistic(u):
    with np.errstate(divide="ignore"):
        return -np.log(np.reciprocal(u) - np.float32(1))


@pytest.mark.parametrize("batch", [None, 9])
def test_gibbs_samples_with_the_module_uniforms(cp, batch):
    """The Gibbs chain against a NumPy loop that uses the uniforms the module drew: the same
    generator (seeded from the caller's, as the module does) and draw order."""
    args = gibbs_args(B=batch)
    W, bvis, bhid, rng = args["non_sequences"]
    seed = int(np.random.default_rng(103).integers(2 ** 63))  # gibbs_args' generator, copied
    got = _host(scanopt.scan(gibbs_step, backend="cupy", **args))
    device_rng = np.random.default_rng(seed)
    rows = () if batch is None else (batch,)
    noise_h = _logistic(device_rng.random((args["n_steps"], *rows, W.shape[1]), np.float32))
    noise_v = _logistic(device_rng.random((args["n_steps"], *rows, W.shape[0]), np.float32))
    v, expected = args["outputs_info"], []
    for t in range(args["n_steps"]):
        h = ((v @ W + bhid) > noise_h[t]).astype(np.float32)
        v = ((h @ W.T + bvis) > noise_v[t]).astype(np.float32)
        expected.append(v)
    np.testing.assert_array_equal(got, np.stack(expected))
    assert 0.1 < got.mean() < 0.9


def test_fallback_and_plain_cupy_calls_in_the_loop(cp):
    """A step the kernel generator cannot take whole (a matmul read with its rows reversed:
    cuBLAS plus elementwise kernels) and one with a reduction (a CuPy call in the step): no
    graph, same results."""
    def reversed_rows(x_t, h, U):
        return np.tanh(x_t + (h @ U)[::-1])

    def normalised(x_t, h, U):
        e = np.exp(h @ U + x_t)
        return e / e.sum(axis=1, keepdims=True)

    rng = np.random.default_rng(4)
    args = dict(sequences=rng.standard_normal((5, 4, 8)).astype(np.float32),
                outputs_info=rng.standard_normal((4, 8)).astype(np.float32),
                non_sequences=[(0.3 * rng.standard_normal((8, 8))).astype(np.float32)])
    for fn in (reversed_rows, normalised):
        source = scanopt.step(fn).source(backend="cupy", **args)
        assert "= _captured(work" not in source
        for _ in range(2):
            assert_matches(_host(scanopt.scan(fn, backend="cupy", **args)),
                           plain_loop(fn, **args), rtol=1e-4, atol=1e-5)
    assert "cuBLAS for the matmuls here" in scanopt.step(reversed_rows).source(
        backend="cupy", **args)
    assert not cp.GRAPHS


def test_exact_random_draws_in_the_loop(cp):
    """exact_random=True on CuPy: binomial draws stay in the loop, from the CuPy generator
    (the same distribution, reproducible for a seed; not the plain loop's stream)."""
    args = gibbs_args(N=40)
    first = _host(scanopt.scan(gibbs_step, backend="cupy", exact_random=True, **args))
    again = _host(scanopt.scan(gibbs_step, backend="cupy", exact_random=True,
                               **gibbs_args(N=40)))
    np.testing.assert_array_equal(first, again)
    assert set(np.unique(first)) <= {0.0, 1.0} and 0.1 < first.mean() < 0.9


def test_gpu_script_checks_run_on_the_cpu(cp, capsys):
    """benchmarks/gpu.py's checks, at tiny shapes on the CPU stand-in: the script itself works
    (its GPU run cannot happen here)."""
    import importlib.util
    import os

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "benchmarks", "gpu.py")
    spec = importlib.util.spec_from_file_location("scanopt_gpu_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    failures = module.run_checks(seed=5, tiny=True)
    out = capsys.readouterr().out
    assert failures == [], failures
    assert out.count("  ok  ") == 3 * 3 + 2


def test_arrays_already_on_the_device_are_taken_as_they_are(cp):
    """backend="cupy" accepts arrays with __cuda_array_interface__ (cupy.ndarray): no copy
    from the host; the NumPy backend refuses them with a clear error."""
    args = elman_args()
    device = {key: [cp.asarray(v) for v in value] if isinstance(value, list) else
              cp.asarray(value) for key, value in args.items()}
    expected = plain_loop(elman_step, **args)
    for _ in range(2):
        assert_matches(_host(scanopt.scan(elman_step, backend="cupy", **device)), expected,
                       rtol=1e-4, atol=1e-5)
    with pytest.raises(scanopt.ScanTypeError, match="ndarray subclass"):
        scanopt.scan(elman_step, **device)
