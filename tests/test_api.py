"""The API around compiled loops: caching, the decorator, explain, keep, SCANOPT_DISABLE."""

import subprocess
import sys

import numpy as np
import pytest

import scanopt
from conftest import assert_matches, plain_loop


def elman(x_t, h, W, U, b):
    return np.tanh(x_t @ W + h @ U + b)


def data(T=6, B=3, D=4, H=5, dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((T, B, D)).astype(dtype)
    h0 = np.zeros((B, H), dtype)
    W = rng.standard_normal((D, H)).astype(dtype)
    U = (0.5 * rng.standard_normal((H, H))).astype(dtype)
    b = rng.standard_normal(H).astype(dtype)
    return X, h0, [W, U, b]


def test_a_second_call_with_the_same_types_does_not_compile_again(monkeypatch):
    import scanopt.frontend.builder as builder

    scanopt.clear_cache()
    calls = []
    real = builder.build_loop
    monkeypatch.setattr(builder, "build_loop", lambda *a, **k: calls.append(1) or real(*a, **k))
    import scanopt.compiler as compiler
    monkeypatch.setattr(compiler, "build_loop", builder.build_loop)
    X, h0, params = data()
    first = scanopt.scan(elman, X, h0, params)
    n_frontend_runs = len(calls)
    second = scanopt.scan(elman, X[:4], h0 + 1, [p * 2 for p in params])  # other values, same types
    assert len(calls) == n_frontend_runs
    assert scanopt.cache_info()["hits"] >= 1
    assert_matches(second, plain_loop(elman, sequences=X[:4], outputs_info=h0 + 1,
                                      non_sequences=[p * 2 for p in params]))
    assert first.shape == (6, 3, 5)


def test_other_argument_types_compile_a_new_loop():
    scanopt.clear_cache()
    X, h0, params = data()
    scanopt.scan(elman, X, h0, params)
    X64, h064, params64 = data(dtype=np.float64)
    result = scanopt.scan(elman, X64, h064, params64)
    assert result.dtype == np.float64
    assert scanopt.cache_info()["misses"] == 2


def test_explain_names_the_users_expressions_and_passes():
    X, h0, params = data()
    report = scanopt.explain(elman, X, h0, params)
    assert "scan-push-out-seq" in report
    assert "x_t @ W" in report
    assert "test_api.py" in report
    with_ir = scanopt.step(elman).explain(X, h0, params, show_ir=True)
    assert "// ----- IR after scan-licm -----" in with_ir
    assert "scan.loop" in with_ir


@pytest.mark.parametrize("optimize", [True, False], ids=["opt", "noopt"])
def test_keep_last_returns_the_final_values(optimize):
    X, h0, params = data()

    def step(x_t, h, W, U, b):
        h_new = elman(x_t, h, W, U, b)
        return h_new, h_new.sum(axis=1)

    full = plain_loop(step, sequences=X, outputs_info=[h0, None], non_sequences=params)
    last = scanopt.scan(step, X, [h0, None], params, keep="last", optimize=optimize)
    assert_matches(last[0], full[0][-1])
    np.testing.assert_allclose(last[1], full[1][-1], rtol=2e-5)
    mixed = scanopt.scan(step, X, [h0, None], params, keep=["last", "all"], optimize=optimize)
    assert mixed[1].shape == full[1].shape
    # A later call must not change what an earlier one returned.
    kept = last[0].copy()
    scanopt.scan(step, X * 2, [h0, None], params, keep="last", optimize=optimize)
    np.testing.assert_array_equal(last[0], kept)


def test_keep_last_after_zero_steps_is_the_initial_value_and_a_copy():
    X, h0, params = data()
    out = scanopt.scan(elman, X, h0, params, n_steps=0, keep="last")
    np.testing.assert_array_equal(out, h0)
    assert out is not h0 and not np.shares_memory(out, h0)


def test_bad_keep_is_a_value_error():
    X, h0, params = data()
    with pytest.raises(scanopt.ScanValueError, match="keep"):
        scanopt.scan(elman, X, h0, params, keep="first")
    with pytest.raises(scanopt.ScanValueError, match="keep has 2 entries"):
        scanopt.scan(elman, X, h0, params, keep=["last", "all"])


def test_unknown_backend_is_a_value_error():
    X, h0, params = data()
    with pytest.raises(scanopt.ScanValueError, match="backend"):
        scanopt.scan(elman, X, h0, params, backend="tpu")


def test_scanopt_disable_runs_the_plain_loop(tmp_path):
    script = tmp_path / "disabled.py"
    script.write_text(
        "import numpy as np, sys, scanopt\n"
        "def step(x_t, h):\n"
        "    return h + x_t\n"
        "out = scanopt.scan(step, np.ones((4, 2)), np.zeros(2))\n"
        "print(out.tolist(), 'xdsl' in sys.modules)\n")
    env = {"SCANOPT_DISABLE": "1", "PATH": "/usr/bin:/bin"}
    import os
    env = {**os.environ, **env}
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                            env=env, check=True)
    assert result.stdout.strip() == "[[1.0, 1.0], [2.0, 2.0], [3.0, 3.0], [4.0, 4.0]] False"


def test_import_does_not_load_xdsl():
    result = subprocess.run([sys.executable, "-c", "import sys, scanopt; "
                             "print('xdsl' in sys.modules)"],
                            capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_generated_source_is_standalone_and_readable():
    X, h0, params = data()
    source = scanopt.step(elman).source(X, h0, params)
    imports = [line for line in source.splitlines() if line.startswith(("import", "from"))]
    assert imports == ["import numpy as np"]
    assert "# test_api.py:" in source  # origin comments point at the user's line
    assert "def elman(" in source
    namespace = {}
    exec(compile(source, "generated", "exec"), namespace)
    n = len(X)
    out = namespace["elman"](X, h0, *params, n)
    assert_matches(out, plain_loop(elman, sequences=X, outputs_info=h0, non_sequences=params))


def test_inputs_are_never_written():
    X, h0, params = data()
    copies = [a.copy() for a in (X, h0, *params)]
    for optimize in (True, False):
        scanopt.scan(elman, X, h0, params, optimize=optimize, keep="last")
        scanopt.scan(elman, X, h0, params, optimize=optimize)
    for before, after in zip(copies, (X, h0, *params)):
        np.testing.assert_array_equal(before, after)


class _Cell:
    def __init__(self, W, U):
        self.W, self.U, self.scale = W, U, 0.5

    def activation(self, z):
        return np.tanh(z) * self.scale

    def step(self, x_t, h):
        return self.activation(x_t @ self.W + h @ self.U)


def test_a_bound_method_reads_attributes_of_its_object():
    X, h0, (W, U, _) = data()
    cell = _Cell(W, U)
    assert_matches(scanopt.scan(cell.step, X, h0),
                   plain_loop(cell.step, sequences=X, outputs_info=h0))
    cell.W = W * 2  # attributes are read on every call
    assert_matches(scanopt.scan(cell.step, X, h0),
                   plain_loop(cell.step, sequences=X, outputs_info=h0))
    misses = scanopt.cache_info()["misses"]
    other = _Cell(W * 3, U)  # another object of the class: the same compiled loop
    assert_matches(scanopt.scan(other.step, X, h0),
                   plain_loop(other.step, sequences=X, outputs_info=h0))
    assert scanopt.cache_info()["misses"] == misses
    other.scale = 2.0  # a Python number is compiled in: changing it recompiles
    assert_matches(scanopt.scan(other.step, X, h0),
                   plain_loop(other.step, sequences=X, outputs_info=h0))
    assert scanopt.cache_info()["misses"] == misses + 1


def _leaky(alpha, x_t, h, *, gain):
    return (1 - alpha) * h + alpha * np.tanh(gain * x_t)


def test_a_functools_partial_step():
    import functools

    X = np.random.default_rng(3).standard_normal((5, 4))
    step = functools.partial(_leaky, 0.25, gain=2.0)
    assert_matches(scanopt.scan(step, X, np.zeros(4)),
                   plain_loop(step, sequences=X, outputs_info=np.zeros(4)))


def test_clear_cache_releases_the_workspaces():
    scanopt.clear_cache()
    X, h0, params = data()
    scanopt.scan(elman, X, h0, params)
    (entries,) = [e for e in scanopt.api._STATS.entries.values()]
    spare = entries[0].run.__globals__["_spare_workspaces"]
    assert len(spare) == 1  # kept between calls
    scanopt.clear_cache()
    assert spare == [] and scanopt.cache_info()["size"] == 0


def test_identical_steps_in_two_files_are_told_apart(tmp_path):
    """Their code objects compare equal; errors and generated comments must name each one's own
    file, and each gets its own compiled loop."""
    from conftest import generated_module

    source = "import numpy as np\n\ndef step(x_t, h):\n    return np.tanh(x_t + h) + print(h)\n"
    X, h0 = np.zeros((3, 2)), np.zeros(2)
    for directory in ("a", "b"):
        (tmp_path / directory).mkdir()
        with generated_module(source, tmp_path / directory, prefix=f"_twin_{directory}") as mod:
            with pytest.raises(scanopt.UnsupportedSyntax) as error:
                scanopt.scan(mod.step, X, h0)
            assert mod.__file__ in str(error.value)


def test_helpers_and_constants_of_an_imported_module(tmp_path, monkeypatch):
    """`helpers.act(z)` and `helpers.GAIN`: a module of the user's is read like an object, and
    rebinding its constant recompiles."""
    (tmp_path / "cell_helpers.py").write_text(
        "import numpy as np\nGAIN = 0.5\n\ndef act(z):\n    return np.tanh(z) * GAIN\n")
    (tmp_path / "cell_main.py").write_text(
        "import math\nimport cell_helpers\n\n"
        "def step(x_t, h):\n    return cell_helpers.act(x_t + h) * math.pi\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import cell_helpers
    import cell_main
    from conftest import assert_matches, plain_loop

    X, h0 = np.linspace(-1, 1, 6).reshape(3, 2), np.zeros(2)
    assert_matches(scanopt.scan(cell_main.step, X, h0), plain_loop(cell_main.step, X, h0))
    monkeypatch.setattr(cell_helpers, "GAIN", 2.0)
    assert_matches(scanopt.scan(cell_main.step, X, h0), plain_loop(cell_main.step, X, h0))
