"""Export to upstream MLIR (``convert-scan-to-upstream``, ``--emit mlir``), checked by upstream MLIR.

The exported text is parsed and verified by the real MLIR Python bindings (``mlir.ir`` when
importable, else ``iree.compiler.ir`` from PyPI ``iree-base-compiler``), and upstream's own
``loop-invariant-code-motion`` is run on it. With ``iree-base-runtime`` installed as well, the
exported modules are compiled for the CPU by IREE and run, and their results compared with the
plain Python loop (the oracle). Both come with ``pip install -e '.[dev,mlir]'``; without them the
tests that need them are skipped with the reason, and the rest (lowering errors, the command
line) still run.
"""

from __future__ import annotations

import ast
import doctest
import importlib
import importlib.util
import os
import sys
import textwrap

import numpy as np
import pytest

import scanopt
from conftest import plain_loop
from test_cli import REPO, assert_user_error, run_cli

EXAMPLES = os.path.join(REPO, "examples")


def _bindings():
    for name in ("mlir", "iree.compiler"):
        try:
            ir = importlib.import_module(f"{name}.ir")
            passmanager = importlib.import_module(f"{name}.passmanager")
        except ImportError:
            continue
        return ir, passmanager
    return None, None


IR, PASSMANAGER = _bindings()
needs_bindings = pytest.mark.skipif(
    IR is None, reason="the upstream MLIR Python bindings are not installed "
                       "(pip install -e '.[mlir]' installs them from iree-base-compiler)")
needs_runtime = pytest.mark.skipif(
    IR is None or importlib.util.find_spec("iree.runtime") is None
    or importlib.util.find_spec("iree.compiler") is None,
    reason="IREE's compiler and runtime are not installed (pip install -e '.[mlir]')")


# --------------------------------------------------------------------------------------------
# Step functions: the examples and the cells used across the tests
# --------------------------------------------------------------------------------------------

def _example_module(name: str):
    if EXAMPLES not in sys.path:
        sys.path.insert(0, EXAMPLES)
    return importlib.import_module(name)


@pytest.fixture(scope="module")
def gibbs_example(tmp_path_factory):
    """``one_step_v2`` of examples/gibbs.py (defined inside its main()): its source, as the
    example has it, in a module of its own."""
    path = os.path.join(EXAMPLES, "gibbs.py")
    with open(path, encoding="utf-8") as f:
        source = f.read()
    tree = ast.parse(source)
    step = next(node for node in ast.walk(tree)
                if isinstance(node, ast.FunctionDef) and node.name == "one_step_v2")
    sigmoid = next(node for node in tree.body
                   if isinstance(node, ast.FunctionDef) and node.name == "sigmoid")
    text = "import numpy as np\n\n\n" + "\n\n\n".join(
        textwrap.dedent(ast.get_source_segment(source, node)) for node in (sigmoid, step))
    directory = tmp_path_factory.mktemp("gibbs_example")
    (directory / "gibbs_step.py").write_text(text + "\n")
    spec = importlib.util.spec_from_file_location("gibbs_step_example",
                                                  directory / "gibbs_step.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.one_step_v2


def elman_step(x_t, h, W, U, b):
    return np.tanh(x_t @ W + h @ U + b)


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def gru_step(x_t, h, W_z, W_r, W_h, U_z, U_r, U_h, b_z, b_r, b_h):
    z = _sigmoid(x_t @ W_z + h @ U_z + b_z)
    r = _sigmoid(x_t @ W_r + h @ U_r + b_r)
    h_tilde = np.tanh(x_t @ W_h + (r * h) @ U_h + b_h)
    return (1 - z) * h + z * h_tilde


def _normal(rng, *shape, scale=0.5, dtype=np.float32):
    return (scale * rng.standard_normal(shape)).astype(dtype)


def elman_args(rng, t=6, b=2, d=3, h=4):
    return dict(sequences=_normal(rng, t, b, d, scale=1.0), outputs_info=_normal(rng, b, h),
                non_sequences=[_normal(rng, d, h), _normal(rng, h, h), _normal(rng, h)])


def gru_args(rng, t=6, b=2, d=3, h=4):
    return dict(sequences=_normal(rng, t, b, d, scale=1.0), outputs_info=_normal(rng, b, h),
                non_sequences=[*(_normal(rng, d, h) for _ in range(3)),
                               *(_normal(rng, h, h) for _ in range(3)),
                               *(_normal(rng, h) for _ in range(3))])


def lstm_args(rng, t=6, b=2, d=3, h=4):
    return dict(sequences=_normal(rng, t, b, d, scale=1.0),
                outputs_info=[_normal(rng, b, h), _normal(rng, b, h)],
                non_sequences=[*(_normal(rng, d, h) for _ in range(4)),
                               *(_normal(rng, h, h) for _ in range(4)),
                               *(_normal(rng, h) for _ in range(4))])


def gibbs_args(rng, n_visible=6, n_hidden=4, n_steps=5):
    v0 = (rng.random(n_visible) < 0.5).astype(np.float32)
    return dict(outputs_info=v0,
                non_sequences=[_normal(rng, n_visible, n_hidden, scale=0.8),
                               _normal(rng, n_visible), _normal(rng, n_hidden),
                               np.random.default_rng(0)],
                n_steps=n_steps)


def cells(gibbs_step):
    """(name, step function, scan arguments) of each example and test cell."""
    rng = np.random.default_rng(0)
    lstm = _example_module("lstm")
    return [("lstm", lstm.lstm_step.fn, lstm_args(rng)), ("gibbs", gibbs_step, gibbs_args(rng)),
            ("elman", elman_step, elman_args(rng)), ("gru", gru_step, gru_args(rng))]


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------

PIPELINES = {"optimized": {"optimize": True}, "unoptimized": {"optimize": False},
             "exact": {"optimize": True, "exact_random": True}}


def export(step, *, optimize=True, exact_random=False, **scan_args):
    """The upstream MLIR text of ``step``'s loop, and what to call it with: (text, arguments
    before the pre-drawn numbers and n_steps are put in, n_steps)."""
    from scanopt.api import _prepare_call, _spec
    from scanopt.compiler import build_ir, make_context, print_ir
    from scanopt.transforms import run_pipeline

    call = _prepare_call(step, scan_args.get("sequences"), scan_args.get("outputs_info"),
                         scan_args.get("non_sequences"), scan_args.get("n_steps"),
                         scan_args.get("go_backwards", False), "numpy",
                         scan_args.get("keep", "all"))
    built = build_ir(step, _spec(call.key), optimize=optimize, exact_random=exact_random)
    run_pipeline(built.module, make_context(), passes=("convert-scan-to-upstream",))
    arguments = [*call.sequences, *(v for v in call.inits if v is not None),
                 *call.non_sequences, *built.plan.fetch(step)]
    return print_ir(built.module), arguments, call.n_steps


def parse_upstream(text: str):
    context = IR.Context()
    module = IR.Module.parse(text, context)
    assert module.operation.verify()
    return module


def loop_op_count(module) -> tuple[int, int]:
    """(ops nested inside scf.for/scf.while loops, linalg matmuls among them)."""
    counts = [0, 0]

    def walk(operation, inside: bool):
        for region in operation.regions:
            for block in region.blocks:
                for op in block.operations:
                    name = op.operation.name
                    if inside:
                        counts[0] += 1
                        counts[1] += name in ("linalg.matmul", "linalg.batch_matmul")
                    walk(op.operation, inside or name in ("scf.for", "scf.while"))

    walk(module.operation, False)
    return counts[0], counts[1]


def upstream_licm(module) -> None:
    manager = PASSMANAGER.PassManager.parse(
        "builtin.module(func.func(loop-invariant-code-motion))", module.context)
    manager.run(module.operation)


_DTYPES = {"f16": np.float16, "f32": np.float32, "f64": np.float64}


def run_exported(text: str, arguments: list, n_steps: int, uniforms: dict | None = None):
    """Compile the exported module for the CPU with IREE and call its function with
    ``arguments`` and ``n_steps``; the results as NumPy arrays.

    A generator among the arguments is replaced by the function's arguments of pre-drawn
    numbers, made from ``uniforms[shape]`` (one row per step, for the draw of that shape):
    the uniforms themselves, or logistic noise ``log(u) - log(1 - u)``.
    """
    import iree.compiler
    import iree.runtime

    module = parse_upstream(text)
    function = next(op for op in module.body.operations if op.operation.name == "func.func")
    values = [v for v in arguments if not isinstance(v, np.random.Generator)]
    position = next((k for k, v in enumerate(arguments) if isinstance(v, np.random.Generator)),
                    len(values))
    pre_drawn = []
    for kind, shape, element in _draw_arguments(function):
        u = uniforms[shape[1:]]
        noise = u if kind == "uniform" else np.log(u) - np.log1p(-u)
        assert kind in ("uniform", "logistic"), kind
        pre_drawn.append(noise.astype(_DTYPES[element]))
    values[position:position] = pre_drawn
    binary = iree.compiler.compile_str(text, target_backends=["llvm-cpu"], extra_args=[
        "--iree-llvmcpu-target-cpu=host", "--iree-input-demote-f64-to-f32=false"])
    context = iree.runtime.SystemContext(config=iree.runtime.Config("local-sync"))
    context.add_vm_module(iree.runtime.VmModule.copy_buffer(context.instance, binary))
    name = IR.StringAttr(function.attributes["sym_name"]).value
    results = context.modules.module[name](*values, n_steps)
    if isinstance(results, (tuple, list)):
        return [np.asarray(r.to_host()) for r in results]
    return np.asarray(results.to_host())


def _draw_arguments(function) -> list[tuple[str, tuple[int, ...], str]]:
    """(kind, shape, element type) of each argument of pre-drawn numbers, in order."""
    if "arg_attrs" not in function.attributes:
        return []
    found = []
    attrs = IR.ArrayAttr(function.attributes["arg_attrs"])
    for k, argument in enumerate(function.regions[0].blocks[0].arguments):
        entry = IR.DictAttr(attrs[k])
        if "scan.draws" in entry:
            t = IR.RankedTensorType(argument.type)
            found.append((IR.StringAttr(entry["scan.draws"]).value, tuple(t.shape),
                          str(t.element_type)))
    return found


class PreDrawn:
    """Stands in for the generator in the plain loop: ``binomial(1, p)`` is ``u < p`` with the
    next row of pre-drawn uniforms, per draw in the order the step draws (what the exported
    module computes from its arguments of pre-drawn numbers)."""

    def __init__(self, *uniforms):
        self.rows = [iter(u) for u in uniforms]
        self.draws = 0

    def binomial(self, n, p):
        assert n == 1
        u = next(self.rows[self.draws % len(self.rows)])
        self.draws += 1
        return (u < p).astype(np.int64)


# --------------------------------------------------------------------------------------------
# Upstream MLIR accepts what scanopt exports
# --------------------------------------------------------------------------------------------

def test_docstring_example_runs():
    module = importlib.import_module("scanopt.lowering.scan_to_upstream")
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


@needs_bindings
@pytest.mark.parametrize("pipeline", PIPELINES)
def test_cells_export_verified_upstream(gibbs_example, pipeline):
    for name, step, scan_args in cells(gibbs_example):
        text, _, _ = export(step, **PIPELINES[pipeline], **scan_args)
        assert "scan." not in text.replace("scan.draws", "").replace("scan.extra_rows", ""), name
        parse_upstream(text)


BUILD_SCRIPT = '''\
import sys

import numpy as np

sys.path.insert(0, {examples!r})
sys.path.insert(0, {here!r})
import gibbs
import lstm
from gibbs_step import one_step_v2


def lstm_job():
    X, h0, c0, params = lstm.make_data()
    return {{"fn": lstm.lstm_step, "sequences": X, "outputs_info": [h0, c0],
             "non_sequences": params}}


def gibbs_job():
    W, bvis, bhid, sample = gibbs.make_rbm()
    return {{"fn": one_step_v2, "outputs_info": sample,
             "non_sequences": [W, bvis, bhid, np.random.default_rng(1234)], "n_steps": 10}}


def uint8_step(x_t, h):
    return h + x_t


def uint8_job():
    return {{"fn": uint8_step, "sequences": np.zeros((4, 3), np.uint8),
             "outputs_info": np.zeros(3, np.uint8)}}
'''


@pytest.fixture(scope="module")
def build_script(gibbs_example, tmp_path_factory):
    directory = tmp_path_factory.mktemp("build")
    with open(gibbs_example.__code__.co_filename, encoding="utf-8") as f:
        (directory / "gibbs_step.py").write_text(f.read())
    path = directory / "jobs.py"
    path.write_text(BUILD_SCRIPT.format(examples=EXAMPLES, here=str(directory)))
    return path


@needs_bindings
@pytest.mark.parametrize("job", ["lstm_job", "gibbs_job"])
def test_examples_emit_mlir_verified_upstream(build_script, job, tmp_path):
    """`scanopt build ... --emit mlir` of each example: upstream parses and verifies it."""
    out = tmp_path / "loop.mlir"
    result = run_cli("build", str(build_script), "--call", job, "--emit", "mlir", "-o", str(out))
    assert result.returncode == 0, result.stderr
    text = out.read_text()
    assert text.startswith(f"// Generated by scanopt {scanopt.__version__} from `")
    module = parse_upstream(text)
    names = {op.operation.name for op in module.body.operations[0].regions[0].blocks[0]}
    assert "scf.for" in names


def test_unsupported_dtype_is_a_user_error(build_script):
    result = run_cli("build", str(build_script), "--call", "uint8_job", "--emit", "mlir")
    assert_user_error(result, "jobs.py:", "cannot export", "ui8", "--emit numpy")


@needs_bindings
def test_opt_emit_mlir():
    from test_cli import ELMAN_IR

    result = run_cli("opt", "-", "-p", "scan-licm,scan-push-out-seq", "--emit=mlir",
                     stdin=ELMAN_IR)
    assert result.returncode == 0, result.stderr
    module = parse_upstream(result.stdout)
    assert loop_op_count(module)[1] == 1  # h @ U; x_t @ W runs before the loop
    result = run_cli("opt", "-", "--emit=mlir", "--print-op-generic", stdin=ELMAN_IR)
    assert result.returncode == 0, result.stderr
    assert '"scf.for"' in result.stdout
    parse_upstream(result.stdout)


# --------------------------------------------------------------------------------------------
# Upstream's loop-invariant code motion against scanopt's passes
# --------------------------------------------------------------------------------------------

@needs_bindings
def test_upstream_licm_finds_nothing_to_hoist_after_scanopt(gibbs_example):
    for name, step, scan_args in cells(gibbs_example):
        for pipeline in ("optimized", "exact"):
            module = parse_upstream(export(step, **PIPELINES[pipeline], **scan_args)[0])
            before = loop_op_count(module)
            upstream_licm(module)
            assert loop_op_count(module) == before, (name, pipeline)


@needs_bindings
def test_upstream_licm_cannot_do_what_scanopt_does(gibbs_example):
    """Upstream LICM on the lowered unoptimised loop leaves more in the loop than scanopt's
    passes: it cannot fuse matmuls (the LSTM's four h @ U_*) nor push x_t @ W out of it."""
    counts = {}
    for name, step, scan_args in cells(gibbs_example):
        unoptimized = parse_upstream(export(step, optimize=False, **scan_args)[0])
        upstream_licm(unoptimized)
        optimized = parse_upstream(export(step, **scan_args)[0])
        counts[name] = loop_op_count(unoptimized), loop_op_count(optimized)
        assert counts[name][0][0] > counts[name][1][0], (name, counts[name])
    assert counts["lstm"][0][1] == 8 and counts["lstm"][1][1] == 1, counts["lstm"]
    assert counts["gru"][1][1] < counts["gru"][0][1] == 6, counts["gru"]
    assert counts["elman"][0][1] == 2 and counts["elman"][1][1] == 1, counts["elman"]


@needs_bindings
@pytest.mark.parametrize("dtype", ["float32", "float64", "int64", "int32", "bool"])
def test_every_elementwise_op_verified_upstream(dtype):
    """Each ufunc op of the scan dialect, on arrays (broadcast against a row) and on Python
    scalars, for every dtype NumPy has a loop for: upstream verifies the lowering."""
    from xdsl.parser import Parser

    from scanopt.compiler import make_context, print_ir
    from scanopt.dialects import scan
    from scanopt.dialects.types import element_type
    from scanopt.transforms import run_pipeline

    def ir_type(value):
        t = element_type(np.asarray(value).dtype)
        shape = "x".join(map(str, np.shape(value)))
        return f"tensor<{shape}x{t}>" if shape else f"tensor<{t}>"

    x, row = np.ones((2, 3), dtype), np.ones(3, dtype)
    lines, count = [], 0
    for name, op in [*scan.UNARY_OPS.items(), *scan.BINARY_OPS.items()]:
        operands = (x,) if name in scan.UNARY_OPS else (x, row)
        try:
            with np.errstate(all="ignore"):
                result = getattr(np, name)(*operands)
        except TypeError:
            continue  # no NumPy loop for this dtype
        names = ", ".join(["%x", "%row"][:len(operands)])
        types = ", ".join(ir_type(v) for v in operands)
        lines.append(f"  %r{count} = {op.name} {names} : ({types}) -> {ir_type(result)}")
        count += 1
    if dtype == "float32":  # Python floats: the arith/math ops themselves, no linalg
        lines += ["  %s0 = scan.mul %a, %a : (f64, f64) -> f64",
                  "  %s1 = scan.tanh %s0 : (f64) -> f64",
                  "  %s2 = scan.lt %s1, %a : (f64, f64) -> i1",
                  "  %s3 = scan.floordiv %n, %n : (i64, i64) -> i64",
                  "  %s4 = scan.where %s2, %s1, %n : (i1, f64, i64) -> f64"]
    text = (f"func.func @ops(%x: {ir_type(x)}, %row: {ir_type(row)}, %a: f64, %n: i64) {{\n"
            + "\n".join(lines) + "\n  func.return\n}\n")
    module = Parser(make_context(), text).parse_module()
    run_pipeline(module, make_context(), passes=("convert-scan-to-upstream",))
    parse_upstream(print_ir(module))
    assert count >= {"bool": 10, "int64": 20, "int32": 20}.get(dtype, 45)


# --------------------------------------------------------------------------------------------
# The exported modules compute what the plain loop computes (compiled and run by IREE)
# --------------------------------------------------------------------------------------------

def assert_close(actual, expected, rtol=2e-5, atol=2e-5):
    actual = actual if isinstance(actual, list) else [actual]
    expected = expected if isinstance(expected, list) else [expected]
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected):
        want = np.asarray(want)
        assert got.shape == want.shape and got.dtype == want.dtype, \
            (got.shape, want.shape, got.dtype, want.dtype)
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


@needs_runtime
@pytest.mark.parametrize("pipeline", ["optimized", "unoptimized"])
def test_cells_run_as_the_plain_loop(gibbs_example, pipeline):
    for name, step, scan_args in cells(gibbs_example):
        if name == "gibbs":
            continue  # draws random numbers: test_gibbs_runs_as_the_plain_loop
        text, arguments, n_steps = export(step, **PIPELINES[pipeline], **scan_args)
        assert_close(run_exported(text, arguments, n_steps), plain_loop(step, **scan_args))


@needs_runtime
@pytest.mark.parametrize("pipeline", ["optimized", "exact"])
def test_gibbs_runs_as_the_plain_loop(gibbs_example, pipeline):
    """The draws are arguments: with the same uniforms, binomial(1, p) is u < p (logistic
    noise after scan-fast-random), as in the plain loop with a generator that draws them."""
    scan_args = gibbs_args(np.random.default_rng(3), n_visible=6, n_hidden=4, n_steps=5)
    text, arguments, n_steps = export(gibbs_example, **PIPELINES[pipeline], **scan_args)
    rng = np.random.default_rng(4)
    hidden, visible = rng.random((n_steps, 4)), rng.random((n_steps, 6))
    actual = run_exported(text, arguments, n_steps, {(4,): hidden, (6,): visible})
    expected = plain_loop(gibbs_example, **dict(
        scan_args, non_sequences=[*scan_args["non_sequences"][:3], PreDrawn(hidden, visible)]))
    assert_close(actual, expected, rtol=0, atol=0)
    assert 0 < expected.mean() < 1  # the chain moves


def taps_step(i_t, x_t, x_tm2, h, acc, E, a, k):
    y = E[i_t] * a + h[..., 0:2].sum(axis=-1, keepdims=True) + k
    z = np.where(y > 0, y, -y).mean(axis=0)
    w = np.clip(np.concatenate([z, x_t.T @ x_tm2[:, 0]]), -1.0, 1.0)
    s = np.stack([w, w * 2], axis=1).reshape(-1)[:4]
    acc = acc + (s.astype(np.int64) > 0).sum() + np.zeros_like(acc)
    return np.tanh(h + s[None, :] - np.maximum(h, 0.1) ** 2), acc, (w ** 3).max()


def until_step(x_t, h, W, limit):
    h = np.tanh(h @ W + x_t)
    return h, scanopt.until(np.abs(h).sum() > limit)


def ufuncs_step(x_t, j_t, q, n, A, B, v, s):
    # (no np.log10: IREE's CPU backend has no log10f; upstream verifies it above)
    a = x_t // 0.7 + x_t % 0.7 - np.floor(x_t) * np.ceil(x_t) + np.trunc(x_t) + np.rint(x_t)
    b = j_t // 3 + j_t % 3 - (-j_t) % 4 + np.abs(j_t) * np.sign(j_t) + j_t ** 2
    c = np.exp2(x_t) + np.expm1(x_t) + np.log1p(np.abs(x_t)) + np.log2(1 + x_t * x_t)
    d = np.sinh(x_t) + np.cosh(x_t) + np.tan(x_t) + np.arctan(x_t) + np.arcsinh(x_t) + \
        np.arctanh(x_t / 4)
    e = np.arcsin(x_t / 4) + np.arccos(x_t / 4) + np.arccosh(2 + x_t * x_t) + \
        np.sqrt(np.abs(x_t)) + np.square(x_t)
    f = np.arctan2(x_t, 2.0) + np.hypot(x_t, 1.5) + np.logaddexp(x_t, -x_t) + \
        np.fmax(x_t, 0.2) + np.fmin(x_t, -0.2)
    g = np.reciprocal(x_t + 4) + np.sign(x_t) + np.sin(x_t) * np.cos(x_t) + np.log(x_t + 5)
    mask = np.logical_xor(x_t > 0, j_t > 1) & np.logical_not(x_t < -1) | (j_t == 0)
    m = np.where(mask, a + c, d - e) + f * g + b.astype(np.float32) + (A @ B).sum() + \
        (v @ A).max() + (A @ v).min()
    k = s * 2.5 - 1 + n
    q = q + (b.max() - b.min()) + (mask.sum() > 2)
    return q, n + 1, m * k


def batched_step(h, A, B, C):
    return np.tanh(A @ h @ B + (C @ h).mean(axis=(0, 1)) + h.T.reshape(h.shape))


def feature_cases():
    rng = np.random.default_rng(2)
    f32 = np.float32
    taps = dict(sequences=[rng.integers(0, 5, 8),
                           dict(input=rng.standard_normal((10, 3, 2), dtype=f32), taps=[0, -2])],
                outputs_info=[rng.standard_normal((3, 4), dtype=f32), np.int64(0), None],
                non_sequences=[rng.standard_normal((5, 4), dtype=f32), 0.5, 3])
    return {
        "taps": (taps_step, taps),
        "taps-backwards": (taps_step, dict(taps, go_backwards=True)),
        "taps-keep-last": (taps_step, dict(taps, keep=["last", "all", "last"])),
        "until": (until_step, dict(sequences=rng.standard_normal((20, 3), dtype=f32) * 0.4,
                                   outputs_info=np.zeros(3, f32),
                                   non_sequences=[rng.standard_normal((3, 3), dtype=f32) * 0.4,
                                                  1.5])),
        "ufuncs": (ufuncs_step, dict(
            sequences=[rng.standard_normal((6, 5), dtype=f32), rng.integers(-5, 5, (6, 5))],
            outputs_info=[np.int64(3), 2.0, None],
            non_sequences=[rng.standard_normal((5, 5), dtype=f32),
                           rng.standard_normal((5, 5), dtype=f32),
                           rng.standard_normal(5, dtype=f32), 0.5])),
        "batched": (batched_step, dict(
            outputs_info=rng.standard_normal((2, 4, 4), dtype=f32) * 0.3,
            non_sequences=[rng.standard_normal((2, 4, 4), dtype=f32) * 0.3,
                           rng.standard_normal((4, 4), dtype=f32) * 0.3,
                           rng.standard_normal((3, 1, 4, 4), dtype=f32) * 0.3],
            n_steps=4)),
    }


@needs_runtime
@pytest.mark.parametrize("case, pipeline", [
    *((case, "optimized") for case in ("taps", "taps-backwards", "taps-keep-last", "until",
                                       "ufuncs", "batched")),
    *((case, "unoptimized") for case in ("taps", "until", "ufuncs", "batched"))])
def test_features_run_as_the_plain_loop(case, pipeline):
    """Taps, go_backwards, keep="last", until (scf.while), gathers, Python scalars, integer
    and boolean arrays, reductions, reshapes, joins, batched and broadcast matmuls, the ufuncs:
    against Theano's semantics (tests/theano_oracle.py)."""
    from theano_oracle import theano_scan

    step, scan_args = feature_cases()[case]
    text, arguments, n_steps = export(step, **PIPELINES[pipeline], **scan_args)
    actual = run_exported(text, arguments, n_steps)
    keep = scan_args.get("keep", "all")
    expected = theano_scan(step, **{k: v for k, v in scan_args.items() if k != "keep"})
    if keep != "all":
        expected = [e[-1] if k == "last" else e for e, k in zip(expected, keep)]
    assert_close(actual, expected)
    if case == "until":
        assert 1 < len(actual) < 20  # it stopped early, after more than one step


def nested_rows(x_t, h):
    accs = scanopt.scan(lambda y, a: a + y * h, sequences=x_t, outputs_info=np.zeros(3,
                                                                                    np.float32))
    steps = scanopt.scan(lambda a: a * np.float32(0.5), outputs_info=h, n_steps=len(x_t))
    return np.tanh(accs[-1] + steps[-1]), x_t.shape[0] + 0 * accs.shape[0]


@needs_bindings
def test_nested_scans_and_run_time_sizes_verified_upstream():
    """scan.count (a nested loop's steps) and scan.dim (a size known when the loop runs)."""
    X = _normal(np.random.default_rng(0), 4, 5, 3)
    text, _, _ = export(nested_rows, sequences=X, outputs_info=[np.zeros(3, np.float32), None])
    assert text.count("scf.for") >= 3
    parse_upstream(text)


@needs_bindings
def test_ahead_of_time_build_emits_mlir_verified_upstream(tmp_path):
    script = tmp_path / "cell.py"
    script.write_text("import numpy as np\n\ndef elman(x_t, h, W, U, b):\n"
                      "    return np.tanh(x_t @ W + h @ U + b)\n")
    result = run_cli("build", f"{script}:elman", "--emit", "mlir", "--sequences",
                     "x=f32[T,4,3]", "--outputs-info", "h=f32[4,5]", "--non-sequences",
                     "W=f32[3,5]", "U=f32[5,5]", "b=f32[5]")
    assert result.returncode == 0, result.stderr
    assert "//     x: f32[T,4,3]  (sequence)" in result.stdout
    parse_upstream(result.stdout)
    symbolic = run_cli("build", f"{script}:elman", "--emit", "mlir", "--sequences",
                       "x=f32[T,B,3]", "--outputs-info", "h=f32[B,5]", "--non-sequences",
                       "W=f32[3,5]", "U=f32[5,5]", "b=f32[5]")
    assert symbolic.returncode == 1
    assert "cannot export to upstream MLIR with symbolic dimensions (B)" in symbolic.stderr
