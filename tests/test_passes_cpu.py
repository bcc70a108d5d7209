"""The NumPy backend's rewrites of a step's elementwise work, and the emitter's rules for the step
loop: what each changes in the IR or the generated module, what it leaves alone, and that the
compiled loop still agrees with the plain loop.

- ``scan-sigmoid-tanh``: float32 ``1 / (1 + exp(-z))`` → ``0.5 * tanh(0.5 * z) + 0.5``;
- ``scan-fold-scale``: ``c * z`` (``c = ±2**k``) folded into the weights and inputs of ``z``;
- ``scan-lerp``: ``(1 - z) * p + z * q`` → ``p + z * (q - p)``;
- the emitter: views of workspace arrays made once before the loop; a step's ``h @ U`` just
  above OpenBLAS's small-matrix limit written as column blocks under it.

Accuracy (float32): the rewrites change results in the last bits only. The compiled loops are
compared with the plain loop at rtol 2e-5, atol 1e-5 (tests/conftest.py ``assert_matches``),
here at the benchmark's sizes too; the sigmoid written with ``tanh`` is within 1.2e-7 of the
exact sigmoid for every float32 input (``test_sigmoid_as_tanh_error_bound``).
"""

from __future__ import annotations

import ast

import numpy as np
import pytest

import scanopt
from conftest import assert_matches, plain_loop
from cupy_cases import elman_args, elman_step, gibbs_args, gibbs_step, gru_args, gru_step, \
    lstm_args, lstm_step, sigmoid
from test_passes import ops_of, shape
from scanopt.compiler import load_source, make_context, passes_for
from scanopt.dialects import scan
from scanopt.lowering.numpy_emitter import emit_numpy_module, matmul_blocks
from scanopt.transforms import (EXACT_PIPELINE, FAST_RANDOM, NUMPY_PIPELINE, NUMPY_REWRITES,
                                PIPELINE, run_pipeline)
from scanopt.transforms.testing import build_step

F32, F64 = np.float32, np.float64
T, B, D, H = 5, 4, 8, 16


def randn(rng, shape, dtype=F32, scale=1.0):
    return (scale * rng.standard_normal(shape)).astype(dtype)


def compiled(step, passes, **scan_args):
    module = build_step(step, **scan_args)
    run_pipeline(module, make_context(), passes=tuple(passes))
    module.verify()
    return module


def run_module(module, step_name, *args):
    """Emit ``module`` (with buffers, as scanopt.scan does) and call its function."""
    source = emit_numpy_module(module, buffers=True)
    return load_source(source, step_name)(*args)


def check_against_plain_loop(step, **scan_args):
    expected = plain_loop(step, **scan_args)
    actual = scanopt.scan(step, **scan_args)
    assert_matches(actual if isinstance(actual, list) else actual,
                   expected if isinstance(expected, list) else expected)


# --------------------------------------------------------------------------------------------
# Step functions (the LSTM, GRU and Elman cells are the CuPy tests' and the benchmark's)
# --------------------------------------------------------------------------------------------

def gate_step(x_t, h, W, U, b):
    return sigmoid(x_t @ W + h @ U + b) * h


def gate_args(rng, dtype=F32):
    return dict(sequences=randn(rng, (T, B, D), dtype), outputs_info=randn(rng, (B, H), dtype),
                non_sequences=[randn(rng, (D, H), dtype, 0.5), randn(rng, (H, H), dtype, 0.3),
                               randn(rng, (H,), dtype, 0.1)])


# --------------------------------------------------------------------------------------------
# The pipelines
# --------------------------------------------------------------------------------------------

def test_numpy_pipeline_has_the_rewrites_and_the_others_do_not():
    assert passes_for() == NUMPY_PIPELINE + passes_for()[len(NUMPY_PIPELINE):]
    for name in ("scan-sigmoid-tanh", "scan-fold-scale", "scan-lerp"):
        assert name in NUMPY_REWRITES and name in passes_for()
        assert name not in passes_for(exact_random=True) and name not in EXACT_PIPELINE
        assert name not in passes_for(backend="cupy") and name not in PIPELINE
    # They run after scan-fuse-slices made the gate block, before the hoisting passes.
    first = NUMPY_PIPELINE.index("scan-sigmoid-tanh")
    assert NUMPY_PIPELINE.index("scan-fuse-slices") < first < \
        NUMPY_PIPELINE.index("scan-push-out-seq")


# --------------------------------------------------------------------------------------------
# scan-sigmoid-tanh
# --------------------------------------------------------------------------------------------

def test_sigmoid_as_tanh_error_bound():
    """Every float32 input (a dense sweep and the extremes): within 1.2e-7 of the sigmoid."""
    x = np.concatenate([np.linspace(-40, 40, 2_000_001, dtype=F32),
                        np.array([np.finfo(F32).min, -1e30, -88.7, 88.7, 1e30,
                                  np.finfo(F32).max, 0.0, -0.0], F32)])
    t = np.tanh(np.multiply(x, 0.5))          # as the module computes it, 0.5 folded or not
    approx = np.add(np.multiply(t, 0.5), 0.5)
    assert approx.dtype == F32
    with np.errstate(over="ignore"):
        exact = 1 / (1 + np.exp(-x.astype(F64)))
    assert np.max(np.abs(approx - exact)) <= 1.2e-7
    assert np.all((approx >= 0) & (approx <= 1))


def test_lstm_gates_become_one_tanh_over_the_whole_block():
    args = lstm_args(B=B, I=D, H=H)
    module = compiled(lstm_step, NUMPY_PIPELINE, **args)
    for cls in (scan.ExpOp, scan.NegOp, scan.DivOp):
        assert not ops_of(module, cls, inside=True), cls.name
    tanhs = ops_of(module, scan.TanhOp, inside=True)
    assert sorted(shape(t.result) for t in tanhs) == [(B, H), (B, 4 * H)]
    # The 0.5 went into the weights: per-column factors built and applied before the loop.
    assert ops_of(module, scan.FullOp, inside=False)
    assert not ops_of(module, scan.FullOp, inside=True)
    assert len(ops_of(module, scan.MatmulOp, inside=True)) == 1
    check_against_plain_loop(lstm_step, **args)


def test_sigmoid_tanh_leaves_float64_alone():
    module = compiled(gate_step, NUMPY_PIPELINE, **gate_args(np.random.default_rng(1), F64))
    assert len(ops_of(module, scan.ExpOp, inside=True)) == 1
    assert not ops_of(module, scan.TanhOp)


def log_sigmoid_step(h, U):
    return np.tanh(h + np.log(1 / (1 + np.exp(-(h @ U)))))


def returned_sigmoid_step(h, U):
    return 1 / (1 + np.exp(-(h @ U)))


@pytest.mark.parametrize("step", [log_sigmoid_step, returned_sigmoid_step],
                         ids=["read-by-log", "returned"])
def test_sigmoid_tanh_only_rewrites_gates(step):
    """A sigmoid read by a log, or returned, keeps its exp (its tiny values keep their
    relative accuracy)."""
    rng = np.random.default_rng(2)
    args = dict(outputs_info=randn(rng, (B, H)), non_sequences=randn(rng, (H, H), scale=3.0),
                n_steps=T)
    module = compiled(step, NUMPY_PIPELINE, **args)
    assert len(ops_of(module, scan.ExpOp, inside=True)) == 1
    assert len(ops_of(module, scan.TanhOp)) == len(ops_of(compiled(step, PIPELINE, **args),
                                                          scan.TanhOp))
    check_against_plain_loop(step, **args)


def test_sampled_sigmoids_are_left_to_scan_fast_random():
    args = gibbs_args(B=3)
    module = compiled(gibbs_step, passes_for(), **args)
    assert not ops_of(module, scan.TanhOp)
    without = compiled(gibbs_step, PIPELINE + FAST_RANDOM, **args)
    assert sorted(op.method.data for op in ops_of(module, scan.RandomOp)) == \
        sorted(op.method.data for op in ops_of(without, scan.RandomOp))


# --------------------------------------------------------------------------------------------
# scan-fold-scale
# --------------------------------------------------------------------------------------------

def test_fold_scale_moves_the_sigmoids_negation_into_the_weights():
    rng = np.random.default_rng(5)
    args = gate_args(rng, F64)  # float64: the sigmoid keeps its exp(-z)
    module = compiled(gate_step, NUMPY_PIPELINE, **args)
    assert not ops_of(module, scan.NegOp, inside=True)
    negated = [op.operand.name_hint for op in ops_of(module, scan.NegOp, inside=False)]
    assert sorted(negated) == ["U", "W", "b"]
    check_against_plain_loop(gate_step, **args)


def negated_gate_step(x_t, h, W, U, b):
    return np.tanh(-(x_t @ W + h @ U + b)) * 0.25 + h * 0.5


def halved_slice_step(h, U):
    z = h @ U
    return np.tanh(z[..., :8] * 0.5) + np.tanh(z[..., 8:])


@pytest.mark.parametrize("step,make", [
    (negated_gate_step, lambda rng: gate_args(rng, F32)),
    (negated_gate_step, lambda rng: gate_args(rng, F64)),
    (halved_slice_step, lambda rng: dict(outputs_info=randn(rng, (B, 8)),
                                         non_sequences=randn(rng, (8, 16)), n_steps=T)),
], ids=["neg-f32", "neg-f64", "half-of-a-slice"])
def test_fold_scale_changes_no_bit(step, make):
    """Scaling by a power of two is exact: the loop computes the same numbers with the scale
    folded into the weights as with it in the step."""
    args = make(np.random.default_rng(6))
    base = ("canonicalize", "cse", "scan-licm", "scan-fuse-matmul", "cse", "scan-fuse-slices",
            "dce")
    after = ("scan-licm", "scan-push-out-seq", "cse", "dce")
    plain = compiled(step, base + after, **args)
    folded = compiled(step, base + ("scan-fold-scale", "dce") + after, **args)
    assert ops_of(plain, scan.NegOp, inside=True) or ops_of(plain, scan.MulOp, inside=True)
    assert len(list(folded.walk())) != len(list(plain.walk()))
    inputs = [*([args["sequences"]] if "sequences" in args else []), args["outputs_info"],
              *(args["non_sequences"] if isinstance(args["non_sequences"], list)
                else [args["non_sequences"]]), T]
    name = step.__name__
    np.testing.assert_array_equal(run_module(folded, name, *inputs),
                                  run_module(plain, name, *inputs))


def scaled_by_three_step(h, U):
    return np.tanh((h @ U) * 3.0)


def read_twice_step(h, U):
    z = h @ U
    return np.tanh(-z) + z


def after_tanh_step(h):
    return np.exp(-np.tanh(h))


@pytest.mark.parametrize("step,cls", [
    (scaled_by_three_step, scan.MulOp),   # 3 is no power of two: the product would round
    (read_twice_step, scan.NegOp),        # z is read unscaled too
    (after_tanh_step, scan.NegOp),        # tanh(h) is computed in the step: nothing to fold into
], ids=["not-a-power-of-two", "read-unscaled-too", "nothing-to-fold-into"])
def test_fold_scale_leaves_other_scalings_in_the_step(step, cls):
    rng = np.random.default_rng(7)
    args = dict(outputs_info=randn(rng, (B, H)), n_steps=T,
                **({"non_sequences": randn(rng, (H, H), scale=0.3)}
                   if step is not after_tanh_step else {}))
    module = compiled(step, NUMPY_PIPELINE, **args)
    assert ops_of(module, cls, inside=True)
    check_against_plain_loop(step, **args)


# --------------------------------------------------------------------------------------------
# scan-lerp
# --------------------------------------------------------------------------------------------

def test_gru_blend_takes_three_ops():
    args = gru_args(B=B, I=D, H=H)
    module = compiled(gru_step, NUMPY_PIPELINE, **args)
    loop = next(op for op in module.walk() if isinstance(op, scan.LoopOp))
    h = loop.carry_args[0]
    # h + z * (h_tilde - h): no 1 - z left; one sub, and the new state is h plus a product.
    subs = ops_of(module, scan.SubOp, inside=True)
    assert len(subs) == 1 and subs[0].rhs is h
    new_h = loop.block.last_op.values[0].owner
    assert isinstance(new_h, scan.AddOp) and new_h.lhs is h
    check_against_plain_loop(gru_step, **args)


def blend_with_bias_step(h, U, b):
    z = np.tanh(h @ U)
    return (1 - z) * h + z * b


def test_lerp_leaves_a_broadcast_term_alone():
    rng = np.random.default_rng(9)
    args = dict(outputs_info=randn(rng, (B, H)), non_sequences=[randn(rng, (H, H), scale=0.3),
                                                                randn(rng, (H,))], n_steps=T)
    module = compiled(blend_with_bias_step, NUMPY_PIPELINE, **args)
    assert len(ops_of(module, scan.MulOp, inside=True)) == 2
    check_against_plain_loop(blend_with_bias_step, **args)


# --------------------------------------------------------------------------------------------
# The emitter's step loop
# --------------------------------------------------------------------------------------------

def _loop_body(source: str, fn_name: str) -> list[ast.stmt]:
    tree = ast.parse(source)
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == fn_name)
    return next(n for n in ast.walk(fn) if isinstance(n, ast.For)).body


def test_views_of_workspace_arrays_are_made_before_the_loop():
    args = lstm_args(B=B, I=D, H=H)
    source = scanopt.step(lstm_step).source(args["sequences"], args["outputs_info"],
                                            args["non_sequences"])
    body = _loop_body(source, "lstm_step")
    # In the loop, only rows of the sequences and histories are taken (x[t]); no column slice.
    for node in ast.walk(ast.Module(body=body, type_ignores=[])):
        if isinstance(node, ast.Subscript):
            assert ast.unparse(node.slice) == "t", ast.unparse(node)
    assert "i = i_f_o[..., 0:16]" in source.split("for t in range")[0]
    check_against_plain_loop(lstm_step, **args)


@pytest.mark.parametrize("m,k,n,blocks", [
    (16, 128, 512, 2),    # the small LSTM's h @ U_all: 1048576 multiply-adds, two of 524288
    (16, 128, 256, 1),    # under the limit already (the GRU's)
    (32, 128, 512, 1),    # a bigger batch: as one GEMM
    (4, 256, 1024, 2),    # few rows
    (16, 128, 1000, 1),   # no even split into multiples of 16 columns
    (16, 512, 2048, 1),   # far above the limit: blocks would not get under it
])
def test_matmul_blocks(m, k, n, blocks):
    assert matmul_blocks(m, k, n) == blocks


def test_small_lstm_step_matmul_runs_as_two_column_blocks():
    args = lstm_args(B=16, I=32, H=128)
    source = scanopt.step(lstm_step).source(args["sequences"], args["outputs_info"],
                                            args["non_sequences"])
    calls = [n for n in ast.walk(ast.Module(body=_loop_body(source, "lstm_step"),
                                            type_ignores=[]))
             if isinstance(n, ast.Call) and ast.unparse(n.func) == "np.matmul"]
    assert len(calls) == 2
    prelude = source.split("for t in range")[0]
    assert "[:, 0:256]" in prelude and "[:, 256:512]" in prelude
    check_against_plain_loop(lstm_step, **args)


# --------------------------------------------------------------------------------------------
# The benchmark's cells at its sizes (float32), against the plain loop
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("step,args", [
    (lstm_step, lstm_args(T=20, B=16, I=128, H=128)),
    (gru_step, gru_args(T=20, B=16, I=128, H=128)),
    (elman_step, elman_args(T=20, B=16, I=128, H=128)),
], ids=["lstm", "gru", "elman"])
def test_benchmark_cells_match_the_plain_loop(step, args):
    check_against_plain_loop(step, **args)


def test_every_ufunc_takes_its_output_where_the_step_loop_passes_it(recwarn):
    """In the step loop the out= array is the last positional argument, except where NumPy
    deprecates that (maximum, minimum): every ufunc the emitter writes accepts its form
    without a warning."""
    from scanopt.lowering.numpy_emitter import _KEYWORD_OUT

    for name in [*scan.UNARY_OPS, *scan.BINARY_OPS]:
        ufunc = getattr(np, {"true_divide": "divide"}.get(name, name))
        args = [np.full((2, 3), 1.5)] * ufunc.nin
        with np.errstate(all="ignore"):
            out = np.empty_like(ufunc(*args))
            if name in _KEYWORD_OUT:
                ufunc(*args, out=out)
            else:
                ufunc(*args, out)
    assert not [w for w in recwarn if issubclass(w.category, DeprecationWarning)]


def wide_step(h, W, V):
    return np.tanh(h @ W) @ V


def test_exact_random_keeps_wide_step_matmuls_whole_and_the_plain_loops_bits():
    """The column blocks may round differently from one GEMM: not with exact_random=True,
    whose numbers are the plain loop's, bit for bit."""
    rng = np.random.default_rng(13)
    args = dict(outputs_info=randn(rng, (16, 128)),
                non_sequences=[randn(rng, (128, 512), scale=0.05),
                               randn(rng, (512, 128), scale=0.05)], n_steps=4)
    step = scanopt.step(wide_step)
    blocked = step.source(None, args["outputs_info"], args["non_sequences"], n_steps=4)
    exact = step.source(None, args["outputs_info"], args["non_sequences"], n_steps=4,
                        exact_random=True)
    assert "W[:, 0:256]" in blocked and "V[:, 0:64]" in blocked
    assert "[:, 0:" not in exact
    np.testing.assert_array_equal(scanopt.scan(wide_step, exact_random=True, **args),
                                  plain_loop(wide_step, **args))
