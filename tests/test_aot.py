"""Ahead-of-time builds from a type signature (``scanopt.build``, ``scanopt build FILE:FN``).

Each built module is imported in a subprocess where scanopt and xDSL cannot be imported
(``python -I -S`` with only NumPy on the path) and run over several shapes of its symbolic
dimensions; the results are compared with the plain loop here.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import scanopt
from conftest import assert_matches, plain_loop

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def lstm_step(x_t, h, c, W_i, W_f, W_c, W_o, U_i, U_f, U_c, U_o, b_i, b_f, b_c, b_o):
    i = sigmoid(x_t @ W_i + h @ U_i + b_i)
    f = sigmoid(x_t @ W_f + h @ U_f + b_f)
    o = sigmoid(x_t @ W_o + h @ U_o + b_o)
    g = np.tanh(x_t @ W_c + h @ U_c + b_c)
    c = f * c + i * g
    return o * np.tanh(c), c


def gru_step(x_t, h, W_z, W_r, W_h, U_z, U_r, U_h, b_z, b_r, b_h):
    z = sigmoid(x_t @ W_z + h @ U_z + b_z)
    r = sigmoid(x_t @ W_r + h @ U_r + b_r)
    h_tilde = np.tanh(x_t @ W_h + (r * h) @ U_h + b_h)
    return (1 - z) * h + z * h_tilde


def gibbs_step(v, W, bvis, bhid, rng):
    h = rng.binomial(1, sigmoid(v @ W + bhid)).astype(v.dtype)
    return rng.binomial(1, sigmoid(h @ W.T + bvis)).astype(v.dtype)


LSTM_SIGNATURE = dict(
    sequences={"X": "f32[T,B,I]"}, outputs_info={"h0": "f32[B,H]", "c0": "f32[B,H]"},
    non_sequences={**{f"W_{g}": "f32[I,H]" for g in "ifco"},
                   **{f"U_{g}": "f32[H,H]" for g in "ifco"},
                   **{f"b_{g}": "f32[H]" for g in "ifco"}})
GRU_SIGNATURE = dict(
    sequences={"X": "f64[T,B,I]"}, outputs_info={"h0": "f64[B,H]"},
    non_sequences={**{f"W_{g}": "f64[I,H]" for g in "zrh"},
                   **{f"U_{g}": "f64[H,H]" for g in "zrh"},
                   **{f"b_{g}": "f64[H]" for g in "zrh"}})
GIBBS_SIGNATURE = dict(outputs_info={"v0": "f32[B,V]"},
                       non_sequences={"W": "f32[V,K]", "bvis": "f32[V]", "bhid": "f32[K]",
                                      "rng": "rng"})


def lstm_args(rng, T, B, I, H, dtype=np.float32):
    def r(*shape):
        return (0.5 * rng.standard_normal(shape)).astype(dtype)
    return [r(T, B, I), r(B, H), r(B, H), *(r(I, H) for _ in range(4)),
            *(r(H, H) for _ in range(4)), *(r(H) for _ in range(4))]


def gru_args(rng, T, B, I, H):
    def r(*shape):
        return 0.5 * rng.standard_normal(shape)
    return [r(T, B, I), r(B, H), *(r(I, H) for _ in range(3)), *(r(H, H) for _ in range(3)),
            *(r(H) for _ in range(3))]


def numpy_only_run(tmp_path, module_path: str, cases: list[list], **run_kwargs) -> list:
    """Import the built module in a process that has NumPy and nothing else, call run() on each
    case, and return the results (lists of arrays)."""
    numpy_dir = tmp_path / "numpy_only"
    numpy_dir.mkdir(exist_ok=True)
    numpy_root = os.path.dirname(os.path.dirname(np.__file__))
    for name in os.listdir(numpy_root):
        if name == "numpy" or name.startswith("numpy.libs") or name.startswith("numpy-"):
            target = numpy_dir / name
            if not target.exists():
                target.symlink_to(os.path.join(numpy_root, name))
    inputs = tmp_path / "inputs.npz"
    flat = {f"c{k}_{j}": a for k, case in enumerate(cases) for j, a in enumerate(case)
            if isinstance(a, np.ndarray)}
    np.savez(inputs, **flat)
    script = textwrap.dedent(f"""
        import sys
        sys.path[:0] = [{str(numpy_dir)!r}, {os.path.dirname(module_path)!r}]
        for forbidden in ("scanopt", "xdsl"):
            try:
                __import__(forbidden)
            except ImportError:
                pass
            else:
                raise SystemExit(forbidden + " is importable here")
        import numpy as np
        import {os.path.basename(module_path)[:-3]} as built
        data = np.load({str(inputs)!r})
        results = {{}}
        for k, n in enumerate({[len(c) for c in cases]!r}):
            args = [data["c%d_%d" % (k, j)] if "c%d_%d" % (k, j) in data.files
                    else np.random.default_rng(5) for j in range(n)]
            out = built.run(*args, **{run_kwargs!r})
            for j, a in enumerate(out if isinstance(out, list) else [out]):
                results["r%d_%d" % (k, j)] = a
        np.savez({str(tmp_path / 'results.npz')!r}, **results)
    """)
    done = subprocess.run([sys.executable, "-I", "-S", "-c", script], capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    results = np.load(tmp_path / "results.npz")
    out = []
    for k in range(len(cases)):
        keys = sorted((key for key in results.files if key.startswith(f"r{k}_")),
                      key=lambda key: int(key.split("_")[1]))
        out.append([results[key] for key in keys])
    return out


def test_lstm_built_from_a_signature_runs_without_scanopt_for_several_shapes(tmp_path):
    path = str(tmp_path / "lstm_built.py")
    scanopt.build(lstm_step, **LSTM_SIGNATURE, path=path)
    shapes = [(5, 2, 3, 4), (7, 1, 6, 5), (3, 4, 2, 8), (0, 2, 3, 4)]
    cases = [lstm_args(np.random.default_rng(k), *shape) for k, shape in enumerate(shapes)]
    results = numpy_only_run(tmp_path, path, cases)
    for case, result, (T, B, I, H) in zip(cases, results, shapes):
        assert [r.shape for r in result] == [(T, B, H), (T, B, H)]
        if T:
            assert_matches(result, plain_loop(lstm_step, case[0], case[1:3], case[3:]))


def test_gru_built_from_the_command_line(tmp_path):
    script = tmp_path / "cells.py"
    script.write_text(textwrap.dedent('''
        import numpy as np

        def sigmoid(z):
            return 1 / (1 + np.exp(-z))

        def gru_step(x_t, h, W_z, W_r, W_h, U_z, U_r, U_h, b_z, b_r, b_h):
            z = sigmoid(x_t @ W_z + h @ U_z + b_z)
            r = sigmoid(x_t @ W_r + h @ U_r + b_r)
            h_tilde = np.tanh(x_t @ W_h + (r * h) @ U_h + b_h)
            return (1 - z) * h + z * h_tilde
    '''))
    out = tmp_path / "gru_built.py"
    types = [f"{name}={spec}" for name, spec in GRU_SIGNATURE["non_sequences"].items()]
    done = subprocess.run(
        [sys.executable, "-m", "scanopt", "build", f"{script}:gru_step", "-o", str(out),
         "--sequences", "X=f64[T,B,I]", "--outputs-info", "h0=f64[B,H]", "--non-sequences",
         *types], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    assert "X: f64[T,B,I]" in text and "scanopt build cells.py:gru_step" in text
    shapes = [(6, 3, 2, 4), (4, 1, 5, 3)]
    cases = [gru_args(np.random.default_rng(k), *shape) for k, shape in enumerate(shapes)]
    for case, result in zip(cases, numpy_only_run(tmp_path, str(out), cases)):
        assert_matches(result[0], plain_loop(gru_step, case[0], case[1], case[2:]))


def test_gibbs_built_with_a_generator_and_n_steps_at_run_time(tmp_path):
    path = str(tmp_path / "gibbs_built.py")
    scanopt.build(gibbs_step, **GIBBS_SIGNATURE, keep="last", exact_random=True, path=path)
    shapes = [(2, 6, 4), (1, 3, 5)]
    cases = []
    for k, (B, V, K) in enumerate(shapes):
        rng = np.random.default_rng(k)
        cases.append([(rng.random((B, V)) < 0.5).astype(np.float32),
                      (0.3 * rng.standard_normal((V, K))).astype(np.float32),
                      rng.standard_normal(V).astype(np.float32),
                      rng.standard_normal(K).astype(np.float32), None])
    results = numpy_only_run(tmp_path, path, cases, n_steps=7)
    for case, result in zip(cases, results):
        expected = plain_loop(gibbs_step, outputs_info=case[0],
                              non_sequences=[*case[1:4], np.random.default_rng(5)], n_steps=7)
        np.testing.assert_array_equal(result[0], expected[-1])


def load(path):
    import importlib.util

    spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_run_checks_its_arguments(tmp_path):
    path = str(tmp_path / "lstm_checked.py")
    scanopt.build(lstm_step, **LSTM_SIGNATURE, path=path)
    run = load(path).run
    args = lstm_args(np.random.default_rng(0), 4, 2, 3, 5)
    with pytest.raises(TypeError, match="h0 has dtype float64, but this module was built for "
                                        "float32"):
        run(args[0], args[1].astype(np.float64), *args[2:])
    with pytest.raises(ValueError, match="X has 2 dimension.*built for 3"):
        run(args[0][0], *args[1:])
    with pytest.raises(ValueError, match=r"c0 has size 4 in dimension 1, but H is 5 here"):
        run(*args[:2], args[2][:, :4], *args[3:])
    with pytest.raises(ValueError, match="n_steps=9 does not fit X, which has 4 steps"):
        run(*args, n_steps=9)
    out = run(*args, n_steps=2)
    assert_matches(out, plain_loop(lstm_step, args[0], args[1:3], args[3:], n_steps=2))


def test_go_backwards_and_keep_last(tmp_path):
    path = str(tmp_path / "gru_backwards.py")
    scanopt.build(gru_step, **GRU_SIGNATURE, go_backwards=True, keep="last", path=path)
    args = gru_args(np.random.default_rng(1), 6, 2, 3, 4)
    out = load(path).run(*args, n_steps=4)
    expected = plain_loop(gru_step, args[0], args[1], args[2:], n_steps=4, go_backwards=True)
    assert_matches(out, expected[-1])


@scanopt.step(signature=dict(sequences={"x": "f64[T,N]"}, outputs_info={"total": "f64[N]"},
                             non_sequences={"scale": "f64[]"}))
def decorated(x_t, total, scale):
    return total * scale + x_t


def test_decorator_signature_builds(tmp_path):
    path = str(tmp_path / "decorated_built.py")
    source = decorated.build(path)
    assert "x: f64[T,N]" in source
    X = np.arange(12.0).reshape(4, 3)
    out = load(path).run(X, np.zeros(3), np.float64(0.5))
    assert_matches(out, decorated.scan(X, np.zeros(3), np.float64(0.5)))


W_CAPTURED = np.eye(3)


def reads_a_global(x_t, h):
    return h @ W_CAPTURED + x_t


def test_errors():
    with pytest.raises(scanopt.ScanValueError, match="cannot read the type 'f33"):
        scanopt.build(gru_step, sequences={"X": "f33[T,B]"})
    with pytest.raises(scanopt.ScanValueError, match="reads `W_CAPTURED` from its enclosing "
                                                     "scope"):
        scanopt.build(reads_a_global, sequences={"x": "f64[T,3]"}, outputs_info={"h": "f64[3]"})
    with pytest.raises(scanopt.ScanValueError, match="'n_steps' cannot name an argument"):
        scanopt.build(reads_a_global, sequences={"n_steps": "f64[T,3]"})
    with pytest.raises(scanopt.ScanTypeError, match=r"matmul: the inner dimensions differ"):
        scanopt.build(lstm_step, sequences={"X": "f32[T,B,I]"},
                      outputs_info={"h0": "f32[B,H]", "c0": "f32[B,H]"},
                      non_sequences={**LSTM_SIGNATURE["non_sequences"], "W_i": "f32[H,H]"})


def reshape_by_a_product(x_t, h):
    return h + x_t.reshape(-1)


def test_a_size_that_is_a_product_of_symbols_is_refused():
    with pytest.raises(scanopt.ScanTypeError, match="in a way a built module cannot compute"):
        scanopt.build(reshape_by_a_product, sequences={"x": "f64[T,A,B]"},
                      outputs_info={"h": "f64[C]"})


def test_emit_stages_from_types():
    from scanopt.aot import build_stage

    ir = build_stage(gru_step, "scan", **GRU_SIGNATURE)
    assert "scan.loop" in ir
    assert "scan.matmul" in build_stage(gru_step, "scan-opt", **GRU_SIGNATURE)


def test_cupy_module_built_from_types_runs_on_the_cpu_stand_in(tmp_path):
    """backend="cupy": fixed sizes but the sequences' length; run() checks the arguments, then
    the module runs its kernels (here on tests/cupy_on_cpu.py's CPU stand-in for CuPy)."""
    import cupy_on_cpu
    from scanopt.lowering.cuda import emulate

    signature = dict(
        sequences={"X": "f32[T,2,3]"}, outputs_info={"h0": "f32[2,4]", "c0": "f32[2,4]"},
        non_sequences={**{f"W_{g}": "f32[3,4]" for g in "ifco"},
                       **{f"U_{g}": "f32[4,4]" for g in "ifco"},
                       **{f"b_{g}": "f32[4]" for g in "ifco"}})
    path = str(tmp_path / "lstm_gpu.py")
    source = scanopt.build(lstm_step, **signature, backend="cupy", path=path)
    assert "import cupy" in source and "import scanopt" not in source and "def run(" in source
    with pytest.raises(scanopt.ScanValueError, match="give B, I, H integer sizes"):
        scanopt.build(lstm_step, **LSTM_SIGNATURE, backend="cupy")
    why = emulate.available()
    if why is not None:
        pytest.skip(why)
    with cupy_on_cpu.installed():
        run = load(path).run
        for T in (5, 3):
            args = lstm_args(np.random.default_rng(T), T, 2, 3, 4)
            out = [cupy_on_cpu.asnumpy(r) for r in run(*args)]
            assert_matches(out, plain_loop(lstm_step, args[0], args[1:3], args[3:]),
                           rtol=1e-4, atol=1e-5)
        with pytest.raises(ValueError, match="h0 has size 3 in dimension 0, but 2"):
            run(args[0], np.zeros((3, 4), np.float32), *args[2:])


def test_numba_module_built_from_types_compiles_its_loop(tmp_path):
    """backend="numba": fixed sizes but the sequences' length, as for CuPy; the module's loop is
    one numba-compiled function and matches the plain loop."""
    pytest.importorskip("numba")
    signature = dict(
        sequences={"X": "f32[T,2,3]"}, outputs_info={"h0": "f32[2,4]", "c0": "f32[2,4]"},
        non_sequences={**{f"W_{g}": "f32[3,4]" for g in "ifco"},
                       **{f"U_{g}": "f32[4,4]" for g in "ifco"},
                       **{f"b_{g}": "f32[4]" for g in "ifco"}})
    path = str(tmp_path / "lstm_numba.py")
    source = scanopt.build(lstm_step, **signature, backend="numba", path=path)
    assert "import numba" in source and "@numba.njit" in source
    assert "import scanopt" not in source and "def run(" in source
    with pytest.raises(scanopt.ScanValueError, match="numba module's compiled loops are built "
                                                     "for fixed sizes: give B, I, H"):
        scanopt.build(lstm_step, **LSTM_SIGNATURE, backend="numba")
    run = load(path).run
    for T in (5, 1):
        args = lstm_args(np.random.default_rng(T), T, 2, 3, 4)
        assert_matches(list(run(*args)), plain_loop(lstm_step, args[0], args[1:3], args[3:]),
                       rtol=1e-4, atol=1e-5)
    # exact_random=True: the plain loop's numbers, so NumPy code (as scanopt.scan runs it).
    exact = scanopt.build(lstm_step, **signature, backend="numba", exact_random=True)
    assert "numba" not in exact


def branches(x_t, h, flag):
    if flag:
        return h + x_t
    return h - x_t


def test_a_step_that_branches_on_a_non_sequence_cannot_be_built_from_types():
    with pytest.raises(scanopt.ScanValueError, match="branches on .* the value of the "
                                                     "non-sequence\\(s\\) flag"):
        scanopt.build(branches, sequences={"x": "f64[T,3]"}, outputs_info={"h": "f64[3]"},
                      non_sequences={"flag": "bool[]"})
