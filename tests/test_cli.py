"""The ``scanopt`` command line, run as a separate process: ``opt``, ``build``, ``passes``,
``--version``, and the error paths (a message and exit status 1, never a traceback).

The IR-level behaviour of each pass is pinned by the filecheck tests (``tests/filecheck``);
these tests cover the driver itself.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import inspect
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

import scanopt

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

ELMAN_IR = """\
func.func @elman(%X: tensor<?x2x3xf32>, %h_init: tensor<2x4xf32>, %W: tensor<3x4xf32>, %U: tensor<4x4xf32>, %n_steps: index) -> tensor<?x2x4xf32> {
  %hs = scan.loop seqs(%X : tensor<?x2x3xf32>) init(%h_init : tensor<2x4xf32>) params(%W, %U : tensor<3x4xf32>, tensor<4x4xf32>) steps %n_steps -> tensor<?x2x4xf32> {
  ^bb0(%x_t: tensor<2x3xf32>, %h: tensor<2x4xf32>, %W_1: tensor<3x4xf32>, %U_1: tensor<4x4xf32>):
    %WT = scan.transpose %U_1 {perm = array<i64: 1, 0>} : (tensor<4x4xf32>) -> tensor<4x4xf32>
    %0 = scan.matmul %x_t, %W_1 : (tensor<2x3xf32>, tensor<3x4xf32>) -> tensor<2x4xf32>
    %1 = scan.matmul %h, %WT : (tensor<2x4xf32>, tensor<4x4xf32>) -> tensor<2x4xf32>
    %2 = scan.add %0, %1 : (tensor<2x4xf32>, tensor<2x4xf32>) -> tensor<2x4xf32>
    %3 = scan.tanh %2 : (tensor<2x4xf32>) -> tensor<2x4xf32>
    scan.yield %3 : tensor<2x4xf32>
  }
  func.return %hs : tensor<?x2x4xf32>
}
"""

SCRIPT = '''\
import numpy as np
import scanopt


def step(x_t, h, W, U, b):
    return np.tanh(x_t @ W + h @ U + b)


def elman():
    rng = np.random.default_rng(0)
    return {"fn": step, "sequences": rng.standard_normal((5, 2, 3), dtype=np.float32),
            "outputs_info": np.zeros((2, 4), np.float32),
            "non_sequences": [rng.standard_normal((3, 4), dtype=np.float32),
                              rng.standard_normal((4, 4), dtype=np.float32),
                              rng.standard_normal(4, dtype=np.float32)]}


def bad_step(x_t, h, W):
    if h.sum() > 0:
        return h
    return x_t @ W


def bad():
    return {"fn": bad_step, "sequences": np.zeros((5, 2, 3)), "outputs_info": np.zeros((2, 3)),
            "non_sequences": [np.eye(3)]}


def not_a_dict():
    return [step]


def unknown_key():
    return {"fn": step, "sequences": np.zeros((5, 2, 3)), "taps": [-1]}


def broken():
    return helper_that_fails()


def helper_that_fails():
    raise RuntimeError("cannot load the data")


@scanopt.step(keep="last")
def decayed(h, W):
    return np.tanh(h @ W)


def decorated():
    return {"fn": decayed, "outputs_info": np.zeros(3), "non_sequences": [np.eye(3)],
            "n_steps": 4}
'''


def run_cli(*args: str, stdin: str | None = None, cwd: str | None = None):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO, env.get("PYTHONPATH")) if p)
    return subprocess.run([sys.executable, "-m", "scanopt.cli", *args], input=stdin,
                          check=False, capture_output=True, text=True, cwd=cwd, env=env, timeout=120)


def assert_user_error(result, *fragments: str):
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


@pytest.fixture
def script(tmp_path):
    path = tmp_path / "rnn.py"
    path.write_text(SCRIPT)
    return path


def load_module(path):
    spec = importlib.util.spec_from_file_location(f"built_{abs(hash(str(path)))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def plain_elman(X, h, W, U, b):
    hs = []
    for x_t in X:
        h = np.tanh(x_t @ W + h @ U + b)
        hs.append(h)
    return np.stack(hs)


# ---------------------------------------------------------------------------------------------
# --version, passes


def test_version():
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.startswith(f"scanopt {scanopt.__version__}")


def test_no_command_prints_usage():
    result = run_cli()
    assert result.returncode == 2
    assert "usage: scanopt" in result.stderr


def test_passes_lists_every_registered_pass():
    from scanopt.compiler import passes_for
    from scanopt.transforms import get_all_passes

    result = run_cli("passes")
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines() if line.strip()}
    for name in get_all_passes():
        assert name in lines
        assert len(lines[name].split(None, 1)[1]) > 10  # a summary, not just the name
    assert "move work that is the same in every step out of the loop" in lines["scan-licm"]
    assert "``" not in result.stdout
    # The pipelines scanopt.scan really runs, as the compiler chooses them.
    assert ",".join(passes_for()) in result.stdout
    assert ",".join(passes_for(backend="cupy")) in result.stdout
    assert ",".join(passes_for(exact_random=True)) in result.stdout


@pytest.mark.skipif(shutil.which("scanopt") is None, reason="the console script is not installed")
def test_console_script():
    result = subprocess.run(["scanopt", "--version"], check=False, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert result.stdout.startswith("scanopt ")


# ---------------------------------------------------------------------------------------------
# opt


def test_opt_round_trips_stdin():
    result = run_cli("opt", stdin=ELMAN_IR)
    assert result.returncode == 0, result.stderr
    again = run_cli("opt", "-", stdin=result.stdout)
    assert again.returncode == 0, again.stderr
    assert again.stdout == result.stdout
    assert "scan.transpose %U_1" in result.stdout


def test_opt_generic_form_round_trips():
    generic = run_cli("opt", "--print-op-generic", stdin=ELMAN_IR)
    assert generic.returncode == 0, generic.stderr
    assert '"scan.loop"(' in generic.stdout
    custom = run_cli("opt", stdin=generic.stdout)
    assert custom.stdout == run_cli("opt", stdin=ELMAN_IR).stdout


def test_opt_runs_passes_and_prints_between(tmp_path):
    path = tmp_path / "elman.mlir"
    path.write_text(ELMAN_IR)
    result = run_cli("opt", str(path), "-p", "scan-licm,scan-push-out-seq,dce",
                     "--print-between-passes", "--time-passes")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    # after every pass but the last, whose IR is the output
    assert out.count("// ----- IR after ") == 2
    after_licm = out.index("// ----- IR after scan-licm -----")
    after_push = out.index("// ----- IR after scan-push-out-seq -----")
    final = out[out.rindex("builtin.module"):]
    assert after_licm < after_push < out.rindex("builtin.module")
    assert final.index("scan.transpose %U") < final.index("scan.loop")
    assert final.index("scan.matmul %X, %W") < final.index("scan.loop")
    for name in ("scan-licm", "scan-push-out-seq", "dce"):
        assert re.search(rf"^pass {name}: [0-9.]+ ms$", result.stderr, re.MULTILINE)


def test_opt_without_passes_changes_nothing():
    result = run_cli("opt", stdin=ELMAN_IR)
    assert result.returncode == 0
    body = result.stdout[result.stdout.index("^bb0"):]
    assert "scan.transpose" in body  # still in the loop


def test_opt_emit_numpy_runs(tmp_path):
    result = run_cli("opt", "-p", "scan-licm,scan-push-out-seq", "--emit=numpy", stdin=ELMAN_IR)
    assert result.returncode == 0, result.stderr
    tree = ast.parse(result.stdout)
    imports = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert [alias.name for n in imports for alias in n.names] == ["numpy"]
    path = tmp_path / "elman_np.py"
    path.write_text(result.stdout)
    module = load_module(path)
    rng = np.random.default_rng(1)
    X = rng.standard_normal((6, 2, 3)).astype(np.float32)
    h0 = rng.standard_normal((2, 4)).astype(np.float32)
    W = rng.standard_normal((3, 4)).astype(np.float32)
    U = rng.standard_normal((4, 4)).astype(np.float32)
    hs = module.elman(X, h0, W, U, len(X))
    expected = plain_elman(X, h0, W, U.T, 0)
    np.testing.assert_allclose(hs, expected, rtol=2e-5, atol=1e-5)


def test_opt_split_input_file():
    text = ELMAN_IR + "\n// -----\n" + ELMAN_IR.replace("@elman", "@elman2")
    result = run_cli("opt", "--split-input-file", "-p", "scan-licm", stdin=text)
    assert result.returncode == 0, result.stderr
    chunks = result.stdout.split("// -----\n")
    assert len(chunks) == 2
    assert "@elman(" in chunks[0] and "@elman2(" in chunks[1]
    # without the flag the marker is a comment and both functions are in one module
    whole = run_cli("opt", stdin=text)
    assert whole.stdout.count("builtin.module") == 1


def test_opt_parse_error_names_the_line_of_the_whole_file(tmp_path):
    bad = ELMAN_IR.replace("@elman", "@elman2").replace("scan.tanh", "scan.tahn")
    path = tmp_path / "two.mlir"
    path.write_text(ELMAN_IR + "// -----\n" + bad)
    line = (ELMAN_IR + "// -----\n" + bad).splitlines().index(
        next(l for l in bad.splitlines() if "scan.tahn" in l)) + 1
    result = run_cli("opt", str(path), "--split-input-file")
    assert_user_error(result, f"two.mlir:{line}:", "error: ", "scan.tahn")
    # with --verify-diagnostics the message goes to stdout, the first chunk is still printed
    diag = run_cli("opt", str(path), "--split-input-file", "--verify-diagnostics")
    assert diag.returncode == 0
    assert "@elman(" in diag.stdout and f"two.mlir:{line}:" in diag.stdout


def test_opt_verify_error():
    bad = ELMAN_IR.replace("scan.yield %3 : tensor<2x4xf32>",
                           "scan.yield %3, %3 : tensor<2x4xf32>, tensor<2x4xf32>")
    result = run_cli("opt", stdin=bad)
    assert_user_error(result, "<stdin>: error: Expected scan.yield to yield 1 values, but got 2.",
                      "note: in %hs = scan.loop")


def test_opt_unknown_pass():
    result = run_cli("opt", "-p", "scan-licm,scan-bogus", stdin=ELMAN_IR)
    assert_user_error(result, "unknown pass 'scan-bogus'", "scan-licm")


def test_opt_missing_file(tmp_path):
    result = run_cli("opt", str(tmp_path / "nope.mlir"))
    assert_user_error(result, "cannot read", "nope.mlir")


def test_opt_emit_numpy_of_an_unsupported_op():
    text = ('func.func @f(%a: tensor<4xf32>) -> tensor<4xf32> {\n'
            '  %0 = "test.op"() : () -> tensor<4xf32>\n'
            '  %1 = scan.add %a, %0 : (tensor<4xf32>, tensor<4xf32>) -> tensor<4xf32>\n'
            '  func.return %1 : tensor<4xf32>\n}\n')
    assert run_cli("opt", stdin=text).returncode == 0  # "test.op" parses: opaque test inputs
    result = run_cli("opt", "--emit=numpy", stdin=text)
    assert_user_error(result, "cannot emit NumPy", "test.op")


def test_opt_writes_output_file(tmp_path):
    out = tmp_path / "out.mlir"
    result = run_cli("opt", "-o", str(out), stdin=ELMAN_IR)
    assert result.returncode == 0 and result.stdout == ""
    assert out.read_text() == run_cli("opt", stdin=ELMAN_IR).stdout


# ---------------------------------------------------------------------------------------------
# build


def check_built_elman(built, seed: int) -> None:
    """The built module's ``step`` (the rnn.py script's loop) matches the plain loop."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((7, 2, 3)).astype(np.float32)
    h0 = rng.standard_normal((2, 4)).astype(np.float32)
    W, U = rng.standard_normal((3, 4)).astype(np.float32), rng.standard_normal((4, 4)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    np.testing.assert_allclose(built.step(X, h0, W, U, b, len(X)), plain_elman(X, h0, W, U, b),
                               rtol=2e-5, atol=1e-5)


def test_build_writes_a_standalone_stamped_module(script, tmp_path):
    out = tmp_path / "elman_built.py"
    result = run_cli("build", str(script), "--call", "elman", "-o", str(out))
    assert result.returncode == 0, result.stderr
    source = out.read_text()

    # stamped with the version and the sha256 of the step function's source
    digest = hashlib.sha256(inspect.getsource(load_module(script).step).encode()).hexdigest()
    header = ast.get_docstring(ast.parse(source)).splitlines()[0]
    assert f"scanopt {scanopt.__version__}" in header
    assert digest in header
    assert "rnn.py:5" in header

    # numpy only, and it computes the loop
    tree = ast.parse(source)
    imported = [a.name for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))
                for a in n.names]
    assert imported == ["numpy"]
    check_built_elman(load_module(out), seed=3)

    # deterministic: building again gives the same bytes, and --emit=numpy prints them
    again = tmp_path / "again.py"
    run_cli("build", str(script), "--call", "elman", "-o", str(again))
    assert again.read_bytes() == out.read_bytes()
    printed = run_cli("build", str(script), "--call", "elman", "--emit=numpy")
    assert printed.stdout == source


def test_build_backend_numba_writes_a_compiled_module(script, tmp_path):
    pytest.importorskip("numba")
    out = tmp_path / "elman_jit.py"
    result = run_cli("build", str(script), "--call", "elman", "--backend", "numba", "-o", str(out))
    assert result.returncode == 0, result.stderr
    source = out.read_text()
    assert "import numba" in source and "@numba.njit" in source
    check_built_elman(load_module(out), seed=4)


def test_build_header_hash_is_that_of_inspect_getsource(script):
    from scanopt.cli import step_source_sha256

    module = load_module(script)
    expected = hashlib.sha256(inspect.getsource(module.step).encode()).hexdigest()
    assert step_source_sha256(module.step) == expected
    result = run_cli("build", str(script), "--call", "elman")
    assert expected in result.stdout.splitlines()[0]


def test_build_emit_stages(script):
    scan_ir = run_cli("build", str(script), "--call", "elman", "--emit=scan")
    assert scan_ir.returncode == 0, scan_ir.stderr
    body = scan_ir.stdout[scan_ir.stdout.index("^bb0"):]
    assert "scan.matmul %x_t" in body  # the frontend's IR: no pass has run
    assert 'loc("' in body and "rnn.py\":6:" in body

    opt_ir = run_cli("build", str(script), "--call", "elman", "--emit=scan-opt")
    assert opt_ir.returncode == 0, opt_ir.stderr
    assert opt_ir.stdout.index("scan.matmul %X") < opt_ir.stdout.index("scan.loop")

    explain = run_cli("build", str(script), "--call", "elman", "--emit=explain")
    assert explain.returncode == 0, explain.stderr
    assert explain.stdout.startswith(f"scanopt {scanopt.__version__}: how the loop of `step`")
    assert "[scan-push-out-seq]" in explain.stdout and "[5×2,3]" in explain.stdout

    with_ir = run_cli("build", str(script), "--call", "elman", "--emit=explain", "--show-ir")
    assert "// ----- IR after scan-licm -----" in with_ir.stdout


def test_build_uses_the_decorator_options(script):
    result = run_cli("build", str(script), "--call", "decorated", "--emit=scan-opt")
    assert result.returncode == 0, result.stderr
    assert "keep_last = array<i64: 0>" in result.stdout  # @scanopt.step(keep="last")


def test_build_step_error_is_the_scan_error_message(script):
    result = run_cli("build", str(script), "--call", "bad")
    line = SCRIPT.splitlines().index("    if h.sum() > 0:") + 1
    assert_user_error(result, f"{script}:{line}:8: error:", "if h.sum() > 0:", "np.where")
    assert result.stderr.startswith(f"{script}:{line}:8: error:")
    assert result.stdout == ""


@pytest.mark.parametrize("call, fragments", [
    ("missing", ["defines no function 'missing'"]),
    ("not_a_dict", ["not_a_dict() must return a dict", "returned list"]),
    ("unknown_key", ["unknown scan argument(s) 'taps'"]),
])
def test_build_script_mistakes(script, call, fragments):
    assert_user_error(run_cli("build", str(script), "--call", call), *fragments)


def test_build_exception_in_the_script_shows_only_its_frames(script):
    result = run_cli("build", str(script), "--call", "broken")
    assert result.returncode == 1
    assert "error: broken() failed:" in result.stderr
    assert "RuntimeError: cannot load the data" in result.stderr
    assert f'File "{script}"' in result.stderr and "helper_that_fails" in result.stderr
    assert "scanopt" + os.sep + "cli.py" not in result.stderr


def test_build_script_that_fails_to_import(tmp_path):
    path = tmp_path / "broken_script.py"
    path.write_text("import numpy as np\n\ndef f(:\n    pass\n")
    result = run_cli("build", str(path), "--call", "f")
    assert result.returncode == 1
    assert "importing broken_script.py failed" in result.stderr
    assert "SyntaxError" in result.stderr and "scanopt" + os.sep + "cli.py" not in result.stderr


def test_build_missing_script(tmp_path):
    assert_user_error(run_cli("build", str(tmp_path / "nope.py"), "--call", "f"), "no such file")
