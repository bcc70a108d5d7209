"""IR-level tests of the optimisation passes (scanopt/transforms/).

For each pass: what it changes, and what it must leave alone. The module is built by the
frontend (``scanopt.transforms.testing.build_step``), the passes run on it, and the tests walk
the resulting module (an op is "inside the loop" when its parent op is a ``scan.loop``). Every
module a pass leaves must verify and print/parse back to the same text. Where it is cheap, the
compiled loop (``scanopt.scan(..., optimize=True)``) is also checked against the plain Python
loop of tests/conftest.py.

Step functions live at module level: scanopt reads their source with ``inspect``.
"""

from __future__ import annotations

import numpy as np
import pytest
from xdsl.dialects import arith
from xdsl.dialects.builtin import DYNAMIC_INDEX
from xdsl.parser import Parser

import scanopt
from conftest import plain_loop
from scanopt.compiler import explain_loop, make_context, passes_for, print_ir
from scanopt.dialects import scan
from scanopt.transforms import FAST_RANDOM, PIPELINE, get_all_passes, run_pipeline
from scanopt.transforms.scan_fast_random import PREDRAW_MAX_STEP_BYTES
from scanopt.transforms.testing import build_step, run_on_step

T, B, D, H = 5, 4, 8, 16
F32, F64 = np.float32, np.float64
SCAN_PASSES = tuple(name for name in get_all_passes() if name.startswith("scan-"))


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------

def assert_roundtrips(module) -> str:
    """The module verifies, and its printed text parses back to a module printing the same."""
    module.verify()
    text = print_ir(module)
    parsed = Parser(make_context(), text).parse_module()
    parsed.verify()
    assert print_ir(parsed) == text
    return text


def compile_ir(step, passes, **scan_args):
    """The module of ``step`` after ``passes``; checks it after every pass."""
    module = build_step(step, **scan_args)
    assert_roundtrips(module)

    def after_each(name, text):
        parsed = Parser(make_context(), text).parse_module()
        parsed.verify()
        assert print_ir(parsed) == text, f"{name}: IR does not print/parse back identically"

    run_pipeline(module, make_context(), passes=tuple(passes), callback=after_each)
    assert_roundtrips(module)
    return module


def the_loop(module) -> scan.LoopOp:
    loops = [op for op in module.walk() if isinstance(op, scan.LoopOp)]
    assert len(loops) == 1
    return loops[0]


def in_loop(op) -> bool:
    return isinstance(op.parent_op(), scan.LoopOp)


def ops_of(module, cls, *, inside: bool | None = None) -> list:
    return [op for op in module.walk()
            if isinstance(op, cls) and (inside is None or in_loop(op) == inside)]


def shape(value) -> tuple:
    return tuple(value.type.get_shape())


def spec_of(op: scan.IndexOp) -> list[str]:
    return [s.data for s in op.spec.data]


def before_loop(op, module) -> bool:
    """``op`` is outside the loop and comes before it in the function body."""
    loop = the_loop(module)
    block = loop.parent_block()
    return op.parent_block() is block and \
        block.get_operation_index(op) < block.get_operation_index(loop)


def after_loop(op, module) -> bool:
    loop = the_loop(module)
    block = loop.parent_block()
    return op.parent_block() is block and \
        block.get_operation_index(op) > block.get_operation_index(loop)


def tolerance(dtype):
    return dict(rtol=1e-5, atol=1e-6) if np.dtype(dtype) == np.float32 else \
        dict(rtol=1e-10, atol=1e-12)


def assert_scan_matches(step, dtype=F64, keep="all", **scan_args):
    """scanopt.scan(optimize=True) agrees with the plain loop (rtol 1e-5 f32, 1e-10 f64)."""
    expected = plain_loop(step, **scan_args)
    actual = scanopt.scan(step, optimize=True, keep=keep, **scan_args)
    expected = expected if isinstance(expected, list) else [expected]
    actual = actual if isinstance(actual, list) else [actual]
    keeps = [keep] * len(expected) if isinstance(keep, str) else list(keep)
    assert len(actual) == len(expected)
    for a, e, k in zip(actual, expected, keeps):
        e = e[-1] if k == "last" else e
        assert a.shape == e.shape and a.dtype == e.dtype
        np.testing.assert_allclose(a, e, **tolerance(dtype))
    return actual


def randn(rng, shape, dtype=F64, scale=1.0):
    return (scale * rng.standard_normal(shape)).astype(dtype)


# --------------------------------------------------------------------------------------------
# Step functions
# --------------------------------------------------------------------------------------------

def elman_step(x_t, h, W, U, b):
    return np.tanh(x_t @ W + h @ U + b)


def elman_data(dtype=F64, seed=0, t=T):
    rng = np.random.default_rng(seed)
    return dict(sequences=randn(rng, (t, B, D), dtype), outputs_info=randn(rng, (B, H), dtype, 0.5),
                non_sequences=[randn(rng, (D, H), dtype, 0.5), randn(rng, (H, H), dtype, 0.3),
                               randn(rng, (H,), dtype, 0.1)])


def lstm_step(x_t, h, c, W_i, W_f, W_o, W_c, U_i, U_f, U_o, U_c, b_i, b_f, b_o, b_c):
    i = 1 / (1 + np.exp(-(x_t @ W_i + h @ U_i + b_i)))
    f = 1 / (1 + np.exp(-(x_t @ W_f + h @ U_f + b_f)))
    o = 1 / (1 + np.exp(-(x_t @ W_o + h @ U_o + b_o)))
    g = np.tanh(x_t @ W_c + h @ U_c + b_c)
    c = f * c + i * g
    h = o * np.tanh(c)
    return h, c


def lstm_data(dtype=F32, seed=1, hidden=H):
    rng = np.random.default_rng(seed)
    return dict(sequences=[randn(rng, (T, B, D), dtype)],
                outputs_info=[randn(rng, (B, hidden), dtype, 0.5),
                              randn(rng, (B, hidden), dtype, 0.5)],
                non_sequences=[randn(rng, (D, hidden), dtype, 0.5) for _ in range(4)]
                + [randn(rng, (hidden, hidden), dtype, 0.3) for _ in range(4)]
                + [randn(rng, (hidden,), dtype, 0.1) for _ in range(4)])


def gibbs_step(vsample, W, bvis, bhid, rng):
    hmean = 1 / (1 + np.exp(-(vsample @ W + bhid)))
    hsample = rng.binomial(1, hmean).astype(np.float32)
    vmean = 1 / (1 + np.exp(-(hsample @ W.T + bvis)))
    return rng.binomial(1, vmean).astype(np.float32)


def gibbs_data(seed=2):
    rng = np.random.default_rng(seed)
    return dict(outputs_info=(rng.random((3, 12)) < 0.5).astype(F32),
                non_sequences=[randn(rng, (12, 7), F32, 0.8), randn(rng, (12,), F32, 0.3),
                               randn(rng, (7,), F32, 0.3), np.random.default_rng(seed + 100)],
                n_steps=4)


# scan-licm

def transpose_step(h, W):
    return np.tanh(h @ W.T)


def bias_sum_step(h, U, b1, b2):
    return np.tanh(h @ U + (b1 + b2))


def bias_sum_unparenthesised_step(h, U, b1, b2):
    return np.tanh(h @ U + b1 + b2)


def constant_subexpression_step(h, W, b):
    return np.tanh(h @ (W * 0.5) + np.exp(b * 2.0))


def carry_dependent_step(h, W):
    return np.tanh((h * 2.0) @ W)


def sequence_dependent_step(x_t, h, b):
    return np.tanh(h + (x_t + b))


def random_invariant_step(h, rng):
    return h + rng.random(size=(3,))


# scan-push-out-seq

def push_matmul_step(x_t, h, W, U):
    return np.tanh(x_t @ W + h @ U)


def push_add_step(x_t, h, b):
    return np.tanh(h * 0.5 + (x_t + b))


def push_reduce_step(x_t, h):
    return h * 0.5 + x_t.sum(axis=1, keepdims=True) + x_t.sum() + x_t.mean(axis=0)


def push_slice_step(x_t, h):
    return h * 0.5 + x_t[:, 1:4] * x_t[:, 0:1]


def push_reshape_transpose_step(x_t, h):
    return h * 0.5 + x_t.T.reshape(D * B)


def mixed_step(x_t, h):
    return np.tanh(x_t * h)


def sequence_on_right_step(x_t, h, W):
    return np.tanh(W @ x_t + h)


def two_sequences_step(x_t, y_t, h, W):
    return np.tanh(x_t @ W + y_t + h)


# scan-fuse-matmul

def different_lhs_step(h, c, U1, U2):
    return np.tanh(h @ U1 + c @ U2), c * 0.9


def carry_rhs_step(h, M, U):
    return np.tanh(h @ U + h @ M), M * 0.9


def sequence_rhs_step(m_t, h, U):
    return np.tanh(h @ U + h @ m_t)


def gated_bias_step(h, U_i, U_f, b_i, b_f):
    return np.tanh(h @ U_i + b_i) * np.tanh(h @ U_f + b_f)


# scan-sink-outputs

def sink_step(x_t, h, U, W_out):
    h = np.tanh(x_t + h @ U)
    return h, h @ W_out


def output_feeds_carry_step(x_t, h, c, U, W_out):
    h = np.tanh(x_t + h @ U)
    y = h @ W_out
    return h, c + y, y


def output_from_previous_state_step(x_t, h, U, W_out):
    y = h @ W_out
    return np.tanh(x_t + h @ U), y


# scan-save-mem

def halve_step(h):
    return h * 0.5 + 1.0


# scan-fast-random

def binomial_invariant_p_step(h, p, rng):
    return rng.binomial(1, p).astype(np.float64)


def normal_on_carry_step(h, rng):
    return h + rng.normal(h, 1.0)


def huge_draw_step(h, rng):
    return h + rng.random(size=(128, 129)).sum(axis=1)


# --------------------------------------------------------------------------------------------
# Every pass leaves a module that verifies and prints/parses back identically
# --------------------------------------------------------------------------------------------

ROUNDTRIP_CASES = {
    "elman": (elman_step, lambda: elman_data(F32)),
    "elman_backwards": (elman_step, lambda: dict(elman_data(F64), go_backwards=True)),
    "lstm": (lstm_step, lambda: lstm_data(F32)),
    "gibbs": (gibbs_step, gibbs_data),
    "sink": (sink_step, lambda: dict(sequences=np.ones((T, B, H)),
                                     outputs_info=[np.zeros((B, H)), None],
                                     non_sequences=[np.eye(H), np.ones((H, 3))])),
    "keep_last": (sink_step, lambda: dict(sequences=np.ones((T, B, H)),
                                          outputs_info=[np.zeros((B, H)), None],
                                          non_sequences=[np.eye(H), np.ones((H, 3))],
                                          keep=["last", "last"])),
    "reductions": (push_reduce_step, lambda: dict(sequences=np.ones((T, B, D)),
                                                  outputs_info=np.zeros((B, D)))),
}


@pytest.mark.parametrize("case", ROUNDTRIP_CASES)
@pytest.mark.parametrize("pass_name", SCAN_PASSES)
def test_each_pass_alone_verifies_and_roundtrips(pass_name, case):
    step, data = ROUNDTRIP_CASES[case]
    compile_ir(step, [pass_name], **data())


@pytest.mark.parametrize("case", ROUNDTRIP_CASES)
def test_full_pipeline_verifies_and_roundtrips_after_every_pass(case):
    step, data = ROUNDTRIP_CASES[case]
    compile_ir(step, passes_for(optimize=True), **data())


# --------------------------------------------------------------------------------------------
# scan-licm
# --------------------------------------------------------------------------------------------

def test_licm_hoists_transpose_with_contiguous_attribute():
    W = np.random.default_rng(3).standard_normal((H, H))
    module = compile_ir(transpose_step, ["scan-licm"], outputs_info=np.zeros((B, H)),
                        non_sequences=W, n_steps=T)
    (transpose,) = ops_of(module, scan.TransposeOp)
    assert not in_loop(transpose) and before_loop(transpose, module)
    assert "contiguous" in transpose.attributes
    assert "contiguous" in print_ir(module)
    # The matmul stays and reads the hoisted transpose as a new non-sequence.
    (matmul,) = ops_of(module, scan.MatmulOp)
    assert in_loop(matmul)
    loop = the_loop(module)
    assert transpose.result in list(loop.non_seqs)
    k = list(loop.non_seqs).index(transpose.result)
    assert matmul.rhs is loop.param_args[k]
    assert_scan_matches(transpose_step, outputs_info=np.ones((B, H)) * 0.1, non_sequences=W,
                        n_steps=T)


def test_licm_hoists_bias_sum():
    rng = np.random.default_rng(4)
    args = dict(outputs_info=randn(rng, (B, H), F32), n_steps=T,
                non_sequences=[randn(rng, (H, H), F32, 0.3), randn(rng, (H,), F32),
                               randn(rng, (H,), F32)])
    module = compile_ir(bias_sum_step, ["scan-licm"], **args)
    loop = the_loop(module)
    outer_adds = ops_of(module, scan.AddOp, inside=False)
    assert len(outer_adds) == 1
    assert set(outer_adds[0].operands) == set(list(loop.non_seqs)[1:3])  # b1, b2
    assert len(ops_of(module, scan.AddOp, inside=True)) == 1  # h @ U + (b1 + b2)
    assert_scan_matches(bias_sum_step, F32, **args)


def test_licm_hoists_constant_subexpressions():
    rng = np.random.default_rng(5)
    args = dict(outputs_info=randn(rng, (B, H)), n_steps=T,
                non_sequences=[randn(rng, (H, H), scale=0.3), randn(rng, (H,))])
    module = compile_ir(constant_subexpression_step, ["scan-licm"], **args)
    # W * 0.5, b * 2.0 and exp(b * 2.0) are the same in every step.
    assert len(ops_of(module, scan.MulOp, inside=False)) == 2
    assert len(ops_of(module, scan.ExpOp, inside=False)) == 1
    assert not ops_of(module, scan.MulOp, inside=True)
    assert not ops_of(module, scan.ExpOp, inside=True)
    # The constants the hoisted ops read were copied out; the step keeps h @ W', + and tanh.
    kinds = {type(op) for op in the_loop(module).block.ops} - {arith.ConstantOp}
    assert kinds == {scan.MatmulOp, scan.AddOp, scan.TanhOp, scan.YieldOp}
    assert_scan_matches(constant_subexpression_step, **args)


def test_licm_does_not_hoist_an_op_on_the_carry():
    args = dict(outputs_info=np.full((B, H), 0.1), non_sequences=np.eye(H) * 0.5, n_steps=T)
    module = compile_ir(carry_dependent_step, ["scan-licm"], **args)
    assert len(ops_of(module, scan.MulOp, inside=True)) == 1
    assert len(ops_of(module, scan.MatmulOp, inside=True)) == 1
    assert not ops_of(module, scan.MulOp, inside=False)
    assert not ops_of(module, scan.MatmulOp, inside=False)
    assert_scan_matches(carry_dependent_step, **args)


def test_licm_does_not_hoist_an_op_on_a_sequence_slice():
    rng = np.random.default_rng(6)
    args = dict(sequences=randn(rng, (T, B, H)), outputs_info=randn(rng, (B, H)),
                non_sequences=randn(rng, (H,)))
    module = compile_ir(sequence_dependent_step, ["scan-licm"], **args)
    assert not ops_of(module, scan.AddOp, inside=False)
    assert len(ops_of(module, scan.AddOp, inside=True)) == 2
    assert len(the_loop(module).non_seqs) == 1  # nothing new entered the loop
    assert_scan_matches(sequence_dependent_step, **args)


def test_licm_never_hoists_random_draws():
    rng = np.random.default_rng(7)
    module = compile_ir(random_invariant_step, ["scan-licm"], outputs_info=np.zeros(3),
                        non_sequences=rng, n_steps=T)
    (draw,) = ops_of(module, scan.RandomOp)
    assert in_loop(draw) and draw.steps is None
    # Even in the whole pipeline without the fast-random pass: each step draws anew.
    module = compile_ir(random_invariant_step, passes_for(optimize=True, exact_random=True),
                        outputs_info=np.zeros(3), non_sequences=rng, n_steps=T)
    (draw,) = ops_of(module, scan.RandomOp)
    assert in_loop(draw) and draw.steps is None


def test_licm_leaves_a_loop_without_invariant_work_unchanged():
    args = dict(outputs_info=np.full((B, H), 0.1), non_sequences=np.eye(H), n_steps=T)
    before = run_on_step(carry_dependent_step, [], **args)
    assert run_on_step(carry_dependent_step, ["scan-licm"], **args) == before


# --------------------------------------------------------------------------------------------
# scan-push-out-seq
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])
def test_push_out_matmul_on_the_sequence(dtype):
    rng = np.random.default_rng(8)
    args = dict(sequences=randn(rng, (T, B, D), dtype), outputs_info=randn(rng, (B, H), dtype),
                non_sequences=[randn(rng, (D, H), dtype, 0.5), randn(rng, (H, H), dtype, 0.3)])
    module = compile_ir(push_matmul_step, ["scan-push-out-seq"], **args)
    loop = the_loop(module)
    func_args = list(loop.parent_block().args)
    (outer,) = ops_of(module, scan.MatmulOp, inside=False)
    assert before_loop(outer, module)
    assert outer.lhs is func_args[0] and outer.rhs is func_args[2]  # X @ W, the whole sequence
    assert shape(outer.result) == (DYNAMIC_INDEX, B, H)
    assert "tensor<?x4x16x" in str(outer.result.type)
    assert outer.result in list(loop.sequences)  # read as a sequence: (X @ W)[t]
    (inner,) = ops_of(module, scan.MatmulOp, inside=True)
    assert inner.lhs is loop.carry_args[0]  # h @ U stays
    assert_scan_matches(push_matmul_step, dtype, **args)


def test_push_out_elementwise_on_the_sequence():
    rng = np.random.default_rng(9)
    args = dict(sequences=randn(rng, (T, B, H)), outputs_info=randn(rng, (B, H)),
                non_sequences=randn(rng, (H,)))
    module = compile_ir(push_add_step, ["scan-push-out-seq"], **args)
    (outer,) = ops_of(module, scan.AddOp, inside=False)  # x_t + b for every step
    assert before_loop(outer, module)
    assert shape(outer.result) == (DYNAMIC_INDEX, B, H)
    assert outer.result in list(the_loop(module).sequences)
    assert len(ops_of(module, scan.AddOp, inside=True)) == 1  # h * 0.5 + ...
    assert len(ops_of(module, scan.MulOp, inside=True)) == 1
    assert_scan_matches(push_add_step, **args)


def test_push_out_reductions_of_the_sequence():
    rng = np.random.default_rng(10)
    args = dict(sequences=randn(rng, (T, B, D)), outputs_info=randn(rng, (B, D)))
    module = compile_ir(push_reduce_step, ["scan-push-out-seq"], **args)
    reductions = ops_of(module, scan.ReduceOp)
    assert len(reductions) == 3 and not any(in_loop(r) for r in reductions)
    axes = sorted(tuple(r.axis.get_values()) for r in reductions)
    assert axes == [(1,), (1, 2), (2,)]  # the step axis comes first
    # Inside, only the work on the carry is left.
    assert {type(op) for op in the_loop(module).block.ops} <= \
        {scan.MulOp, scan.AddOp, scan.YieldOp, arith.ConstantOp}
    assert_scan_matches(push_reduce_step, **args)


def test_push_out_slices_of_the_sequence():
    rng = np.random.default_rng(11)
    args = dict(sequences=randn(rng, (T, B, D)), outputs_info=randn(rng, (B, 3)))
    module = compile_ir(push_slice_step, ["scan-push-out-seq"], **args)
    slices = ops_of(module, scan.IndexOp)
    assert len(slices) == 2 and not any(in_loop(s) for s in slices)
    assert sorted(spec_of(s) for s in slices) == [[":", ":", "0:1"], [":", ":", "1:4"]]
    (product,) = ops_of(module, scan.MulOp, inside=False)  # x_t[:, 1:4] * x_t[:, 0:1]
    assert shape(product.result) == (DYNAMIC_INDEX, B, 3)
    assert_scan_matches(push_slice_step, **args)


def test_push_out_transpose_and_reshape_of_the_sequence():
    rng = np.random.default_rng(12)
    args = dict(sequences=randn(rng, (T, B, D)), outputs_info=randn(rng, (D * B,)))
    module = compile_ir(push_reshape_transpose_step, ["scan-push-out-seq"], **args)
    (transpose,) = ops_of(module, scan.TransposeOp)
    assert not in_loop(transpose) and list(transpose.perm.get_values()) == [0, 2, 1]
    (reshape,) = ops_of(module, scan.ReshapeOp)
    assert not in_loop(reshape) and shape(reshape.result) == (DYNAMIC_INDEX, D * B)
    assert_scan_matches(push_reshape_transpose_step, **args)


def test_push_out_keeps_an_op_mixing_the_slice_and_the_carry():
    rng = np.random.default_rng(13)
    args = dict(sequences=randn(rng, (T, B, H)), outputs_info=randn(rng, (B, H)))
    module = compile_ir(mixed_step, ["scan-push-out-seq"], **args)
    (mul,) = ops_of(module, scan.MulOp)
    assert in_loop(mul)
    assert len(the_loop(module).sequences) == 1
    assert_scan_matches(mixed_step, **args)


def test_push_out_keeps_a_matmul_with_the_sequence_on_the_right():
    rng = np.random.default_rng(14)
    args = dict(sequences=randn(rng, (T, D)), outputs_info=randn(rng, (H,)),
                non_sequences=randn(rng, (H, D), scale=0.5))
    module = compile_ir(sequence_on_right_step, ["scan-push-out-seq"], **args)
    (matmul,) = ops_of(module, scan.MatmulOp)
    assert in_loop(matmul)
    assert len(the_loop(module).sequences) == 1
    assert_scan_matches(sequence_on_right_step, **args)


def test_push_out_keeps_a_matmul_on_the_carry():
    rng = np.random.default_rng(15)
    args = dict(outputs_info=randn(rng, (B, H)), non_sequences=np.eye(H) * 0.5, n_steps=T)
    module = compile_ir(carry_dependent_step, ["scan-push-out-seq"], **args)
    assert len(ops_of(module, scan.MatmulOp, inside=True)) == 1
    assert not ops_of(module, scan.MatmulOp, inside=False)


@pytest.mark.parametrize("n_steps", [None, 3], ids=["all", "n3"])
def test_push_out_with_go_backwards(n_steps):
    args = dict(elman_data(F64, seed=16), go_backwards=True, n_steps=n_steps)
    module = compile_ir(elman_step, ["scan-push-out-seq"], **args)
    loop = the_loop(module)
    assert loop.reverse is not None
    (outer,) = ops_of(module, scan.MatmulOp, inside=False)
    assert outer.result in list(loop.sequences)
    assert_scan_matches(elman_step, **args)
    # With every pass as well.
    compile_ir(elman_step, passes_for(optimize=True), **args)


@pytest.mark.parametrize("go_backwards", [False, True], ids=["fwd", "bwd"])
def test_push_out_with_sequences_of_unequal_length(go_backwards):
    rng = np.random.default_rng(17)
    args = dict(sequences=[randn(rng, (T, B, D)), randn(rng, (T - 2, B, H))],
                outputs_info=randn(rng, (B, H)), non_sequences=randn(rng, (D, H), scale=0.5),
                go_backwards=go_backwards)
    module = compile_ir(two_sequences_step, ["scan-push-out-seq"], **args)
    assert len(ops_of(module, scan.MatmulOp, inside=False)) == 1
    assert_scan_matches(two_sequences_step, **args)


# --------------------------------------------------------------------------------------------
# scan-fuse-matmul
# --------------------------------------------------------------------------------------------

def test_fuse_matmul_four_gates_become_one_matmul_and_four_slices():
    data = lstm_data(F32)
    module = compile_ir(lstm_step, ["scan-fuse-matmul"], **data)
    loop = the_loop(module)
    h = loop.carry_args[0]
    on_h = [op for op in ops_of(module, scan.MatmulOp) if op.lhs is h]
    assert len(on_h) == 1
    fused = on_h[0]
    assert in_loop(fused) and shape(fused.result) == (B, 4 * H)
    concat = fused.rhs.owner
    assert isinstance(concat, scan.ConcatOp) and concat.axis.value.data == 1
    U_args = list(loop.param_args)[4:8]
    assert list(concat.values) == U_args  # U_i, U_f, U_o, U_c in that order
    slices = [use.operation for use in fused.result.uses]
    assert all(isinstance(s, scan.IndexOp) for s in slices) and len(slices) == 4
    assert sorted(spec_of(s)[1] for s in slices) == ["0:16", "16:32", "32:48", "48:64"]
    assert all(spec_of(s)[0] == "..." and shape(s.result) == (B, H) for s in slices)
    # x_t @ W_* share x_t: also one matmul. Eight matmuls became two.
    assert len(ops_of(module, scan.MatmulOp)) == 2
    assert_scan_matches(lstm_step, F32, **data)


def test_fuse_matmul_keeps_matmuls_with_different_left_operands_apart():
    rng = np.random.default_rng(18)
    args = dict(outputs_info=[randn(rng, (B, H)), randn(rng, (B, H))], n_steps=T,
                non_sequences=[randn(rng, (H, H), scale=0.3), randn(rng, (H, H), scale=0.3)])
    module = compile_ir(different_lhs_step, ["scan-fuse-matmul"], **args)
    matmuls = ops_of(module, scan.MatmulOp, inside=True)
    assert len(matmuls) == 2 and matmuls[0].lhs is not matmuls[1].lhs
    assert not ops_of(module, scan.ConcatOp)
    assert not ops_of(module, scan.IndexOp)
    # The Elman step's x_t @ W and h @ U share no operand either.
    module = compile_ir(elman_step, ["scan-fuse-matmul"], **elman_data(F64))
    assert len(ops_of(module, scan.MatmulOp)) == 2 and not ops_of(module, scan.ConcatOp)
    assert_scan_matches(different_lhs_step, **args)


def test_fuse_matmul_does_not_fuse_a_carried_right_operand():
    rng = np.random.default_rng(19)
    args = dict(outputs_info=[randn(rng, (B, H)), randn(rng, (H, H), scale=0.3)], n_steps=T,
                non_sequences=randn(rng, (H, H), scale=0.3))
    module = compile_ir(carry_rhs_step, ["scan-fuse-matmul"], **args)
    assert len(ops_of(module, scan.MatmulOp, inside=True)) == 2
    assert not ops_of(module, scan.ConcatOp)
    assert_scan_matches(carry_rhs_step, **args)


def test_fuse_matmul_does_not_fuse_a_sequence_right_operand():
    rng = np.random.default_rng(20)
    args = dict(sequences=randn(rng, (T, H, H), scale=0.3), outputs_info=randn(rng, (B, H)),
                non_sequences=randn(rng, (H, H), scale=0.3))
    module = compile_ir(sequence_rhs_step, ["scan-fuse-matmul"], **args)
    assert len(ops_of(module, scan.MatmulOp, inside=True)) == 2
    assert not ops_of(module, scan.ConcatOp)
    assert_scan_matches(sequence_rhs_step, **args)


def test_fuse_matmul_reassociates_the_sum_by_stage():
    data = elman_data(F32)
    module = compile_ir(elman_step, ["scan-fuse-matmul"], **data)
    loop = the_loop(module)
    adds = ops_of(module, scan.AddOp, inside=True)
    assert len(adds) == 2
    first, second = adds
    x_t, h = loop.seq_args[0], loop.carry_args[0]
    b = loop.param_args[2]
    # (x_t @ W + b) + h @ U: the invariant and sequence terms first, the carried term last.
    assert b in first.operands
    assert any(isinstance(o.owner, scan.MatmulOp) and o.owner.lhs is x_t for o in first.operands)
    assert first.result in second.operands
    assert any(isinstance(o.owner, scan.MatmulOp) and o.owner.lhs is h for o in second.operands)
    assert_scan_matches(elman_step, F32, **data)


@pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])
def test_full_pipeline_puts_the_elman_bias_add_outside_the_loop(dtype):
    data = elman_data(dtype)
    module = compile_ir(elman_step, PIPELINE, **data)
    loop = the_loop(module)
    func_args = list(loop.parent_block().args)
    b = func_args[4]
    (bias_add,) = [op for op in ops_of(module, scan.AddOp) if b in op.operands]
    assert not in_loop(bias_add) and before_loop(bias_add, module)
    assert shape(bias_add.result) == (DYNAMIC_INDEX, B, H)
    (gemm,) = ops_of(module, scan.MatmulOp, inside=False)  # X @ W, then + b, before the loop
    assert gemm.result in bias_add.operands
    # Per step: h @ U, one add, tanh.
    body = [type(op) for op in loop.block.ops if not isinstance(op, scan.YieldOp)]
    assert sorted(t.__name__ for t in body) == ["AddOp", "MatmulOp", "TanhOp"]
    assert_scan_matches(elman_step, dtype, **data)


def test_full_pipeline_hoists_an_unparenthesised_bias_sum():
    rng = np.random.default_rng(21)
    args = dict(outputs_info=randn(rng, (B, H)), n_steps=T,
                non_sequences=[randn(rng, (H, H), scale=0.3), randn(rng, (H,)),
                               randn(rng, (H,))])
    module = compile_ir(bias_sum_unparenthesised_step, PIPELINE, **args)
    # (h @ U + b1) + b2 → (b1 + b2) + h @ U, and b1 + b2 is invariant.
    assert len(ops_of(module, scan.AddOp, inside=False)) == 1
    assert len(ops_of(module, scan.AddOp, inside=True)) == 1
    assert_scan_matches(bias_sum_unparenthesised_step, **args)


# --------------------------------------------------------------------------------------------
# scan-fuse-slices
# --------------------------------------------------------------------------------------------

def _lstm_gate_ops(hidden):
    module = compile_ir(lstm_step, PIPELINE, **lstm_data(F32, hidden=hidden))
    return module, the_loop(module)


def test_fuse_slices_lstm_gates_share_one_neg_exp_chain_and_g_stays_separate():
    hidden = 128
    module, loop = _lstm_gate_ops(hidden)
    for cls in (scan.NegOp, scan.ExpOp):
        (op,) = ops_of(module, cls, inside=True)
        assert shape(op.result) == (B, 3 * hidden)  # i, f, o: 384 columns
    # g's tanh reads its own slice, the last 128 columns; tanh(c) is the other tanh.
    tanhs = ops_of(module, scan.TanhOp, inside=True)
    assert len(tanhs) == 2 and all(shape(t.result) == (B, hidden) for t in tanhs)
    g_slices = [t.operand.owner for t in tanhs if isinstance(t.operand.owner, scan.IndexOp)]
    assert [spec_of(s) for s in g_slices] == [["...", f"{3 * hidden}:{4 * hidden}"]]


def test_fuse_slices_lstm_sigmoids_become_one_chain_on_384_columns():
    hidden = 128
    module, loop = _lstm_gate_ops(hidden)
    # 1 / (1 + exp(-z)) for i, f, o: one neg, one exp, one add, one div, each on 3 * 128 columns.
    for cls in (scan.NegOp, scan.ExpOp, scan.AddOp, scan.DivOp):
        sigmoid_ops = [op for op in ops_of(module, cls, inside=True)
                       if cls in (scan.NegOp, scan.ExpOp)
                       or isinstance(op.operands[0].owner, arith.ConstantOp)]
        assert [shape(op.result) for op in sigmoid_ops] == [(B, 3 * hidden)], cls.name


def test_fuse_slices_concatenates_invariant_operands_of_adjacent_slices():
    rng = np.random.default_rng(22)
    args = dict(outputs_info=randn(rng, (B, H)), n_steps=T,
                non_sequences=[randn(rng, (H, H), scale=0.3), randn(rng, (H, H), scale=0.3),
                               randn(rng, (H,)), randn(rng, (H,))])
    module = compile_ir(gated_bias_step, ["scan-fuse-matmul", "scan-fuse-slices", "scan-licm",
                                          "dce"], **args)
    (add,) = ops_of(module, scan.AddOp, inside=True)
    (tanh,) = ops_of(module, scan.TanhOp, inside=True)
    assert shape(add.result) == shape(tanh.result) == (B, 2 * H)
    # concat(b_i, b_f) and concat(U_i, U_f) are invariant: hoisted by scan-licm.
    concats = ops_of(module, scan.ConcatOp)
    assert len(concats) == 2 and not any(in_loop(c) for c in concats)
    assert_scan_matches(gated_bias_step, **args)


def test_fuse_slices_leaves_different_ops_on_adjacent_slices_alone():
    # g = tanh(z[..., 48:64]) next to the sigmoids' exp(-z[..., 0:48]): different ops stay apart.
    data = lstm_data(F32)
    module = compile_ir(lstm_step, ["scan-fuse-matmul", "scan-fuse-slices"], **data)
    (exp,) = ops_of(module, scan.ExpOp, inside=True)
    assert shape(exp.result) == (B, 3 * H)
    tanhs = ops_of(module, scan.TanhOp, inside=True)
    assert len(tanhs) == 2 and all(shape(t.result) == (B, H) for t in tanhs)
    g_slices = [t.operand.owner for t in tanhs if isinstance(t.operand.owner, scan.IndexOp)]
    assert [spec_of(s) for s in g_slices] == [["...", f"{3 * H}:{4 * H}"]]
    assert_scan_matches(lstm_step, F32, **data)


# --------------------------------------------------------------------------------------------
# scan-sink-outputs
# --------------------------------------------------------------------------------------------

def sink_data(seed=23):
    rng = np.random.default_rng(seed)
    return dict(sequences=randn(rng, (T, B, H)), outputs_info=[randn(rng, (B, H)), None],
                non_sequences=[randn(rng, (H, H), scale=0.3), randn(rng, (H, 3))])


def test_sink_outputs_moves_a_per_step_output_after_the_loop():
    args = sink_data()
    module = compile_ir(sink_step, ["scan-sink-outputs"], **args)
    loop = the_loop(module)
    assert len(loop.outs) == 1  # only h's history is stored
    (y,) = ops_of(module, scan.MatmulOp, inside=False)
    assert after_loop(y, module)
    assert y.lhs is loop.outs[0] and shape(y.result) == (DYNAMIC_INDEX, B, 3)
    assert len(ops_of(module, scan.MatmulOp, inside=True)) == 1  # h @ U
    assert_scan_matches(sink_step, **args)


def test_sink_outputs_with_go_backwards_and_the_carry_kept_last():
    args = dict(sink_data(24), go_backwards=True)
    assert_scan_matches(sink_step, **args)
    module = compile_ir(sink_step, passes_for(optimize=True), **args, keep=["last", "all"])
    loop = the_loop(module)
    if ops_of(module, scan.MatmulOp, inside=False):
        # y was sunk: it is computed from h's history, which must then not be dropped.
        assert loop.keep_last is None or 0 not in loop.keep_last.get_values()
    assert_scan_matches(sink_step, keep=["last", "all"], **args)


def test_sink_outputs_keeps_an_output_kept_last():
    args = sink_data(26)
    module = compile_ir(sink_step, ["scan-sink-outputs"], **args, keep=["all", "last"])
    assert len(the_loop(module).outs) == 2
    assert len(ops_of(module, scan.MatmulOp, inside=True)) == 2
    assert not ops_of(module, scan.MatmulOp, inside=False)
    assert_scan_matches(sink_step, keep=["all", "last"], **args)


def test_full_pipeline_keep_last_everywhere_stores_o1():
    args = dict(sink_data(27), keep="last")
    module = compile_ir(sink_step, passes_for(optimize=True), **args)
    loop = the_loop(module)
    assert not ops_of(module, scan.LastOp)
    assert list(loop.keep_last.get_values()) == [0, 1]
    assert not ops_of(module, scan.MatmulOp, inside=False)


def test_full_pipeline_keep_last_everywhere_matches_the_plain_loop():
    args = dict(sink_data(27), keep="last")
    assert_scan_matches(sink_step, **args)


def test_sink_outputs_keeps_an_output_of_the_previous_state():
    # y reads the carry before the step's update: not a value whose history the loop stores.
    args = sink_data(27)
    module = compile_ir(output_from_previous_state_step, ["scan-sink-outputs"], **args)
    assert len(the_loop(module).outs) == 2
    assert len(ops_of(module, scan.MatmulOp, inside=True)) == 2
    assert_scan_matches(output_from_previous_state_step, **args)


# --------------------------------------------------------------------------------------------
# scan-save-mem
# --------------------------------------------------------------------------------------------

def test_save_mem_keep_last_gives_keep_last_and_no_scan_last():
    args = dict(outputs_info=np.ones((B, H)), n_steps=T, keep="last")
    before = compile_ir(halve_step, [], **args)
    assert len(ops_of(before, scan.LastOp)) == 1
    module = compile_ir(halve_step, ["scan-save-mem"], **args)
    loop = the_loop(module)
    assert not ops_of(module, scan.LastOp)
    assert list(loop.keep_last.get_values()) == [0]
    assert shape(loop.outs[0]) == (B, H)  # no leading ? dimension: O(1) storage
    assert_scan_matches(halve_step, keep="last", outputs_info=np.ones((B, H)), n_steps=T)


def test_save_mem_keep_per_output_only_marks_the_last_one():
    args = dict(sink_data(28), keep=["last", "all"])
    module = compile_ir(sink_step, ["scan-save-mem"], **args)
    loop = the_loop(module)
    assert list(loop.keep_last.get_values()) == [0]
    assert shape(loop.outs[0]) == (B, H)
    assert shape(loop.outs[1]) == (DYNAMIC_INDEX, B, 3)
    assert not ops_of(module, scan.LastOp)
    assert_scan_matches(sink_step, **args)


def test_save_mem_keep_last_of_a_per_step_output():
    args = dict(sink_data(29), keep=["all", "last"])
    module = compile_ir(sink_step, ["scan-save-mem"], **args)
    loop = the_loop(module)
    assert list(loop.keep_last.get_values()) == [1]
    assert shape(loop.outs[0]) == (DYNAMIC_INDEX, B, H)
    assert shape(loop.outs[1]) == (B, 3)
    assert_scan_matches(sink_step, **args)


def test_save_mem_keep_last_with_no_step_returns_the_initial_state():
    h0 = np.arange(3.0)
    module = compile_ir(halve_step, passes_for(optimize=True), outputs_info=h0, n_steps=0,
                        keep="last")
    assert list(the_loop(module).keep_last.get_values()) == [0]
    out = scanopt.scan(halve_step, outputs_info=h0, n_steps=0, keep="last")
    np.testing.assert_array_equal(out, h0)


def test_save_mem_without_keep_last_changes_nothing():
    args = dict(outputs_info=np.ones((B, H)), n_steps=T)
    assert run_on_step(halve_step, ["scan-save-mem"], **args) == run_on_step(halve_step, [], **args)


# --------------------------------------------------------------------------------------------
# scan-fast-random
# --------------------------------------------------------------------------------------------

def test_fast_random_binomial_of_a_sigmoid_becomes_a_logistic_threshold():
    # binomial(1, 1 / (1 + exp(-z))) is z > logistic noise: no sigmoid left in the step.
    module = compile_ir(gibbs_step, ["scan-fast-random", "dce"], **gibbs_data())
    draws = ops_of(module, scan.RandomOp)
    assert draws and all(d.method.data == "logistic" for d in draws)
    # The noise does not depend on the state: drawn for all steps before the loop.
    loop = the_loop(module)
    assert all(not in_loop(d) and d.steps is loop.n_steps for d in draws)
    assert all(d.result in list(loop.sequences) for d in draws)
    gts = ops_of(module, scan.GtOp, inside=True)
    assert len(gts) == 2
    assert all(gt.rhs in list(loop.seq_args) for gt in gts)  # z > noise_t
    assert not ops_of(module, scan.ExpOp, inside=True)
    assert "binomial" not in print_ir(module)


def test_fast_random_binomial_becomes_uniform_below_p():
    # p is not written as a sigmoid here: the draw becomes u < p.
    module = compile_ir(binomial_invariant_p_step, ["scan-fast-random"],
                        outputs_info=np.zeros(3),
                        non_sequences=[np.array([0.2, 0.5, 0.7]), np.random.default_rng(3)],
                        n_steps=4)
    (draw,) = ops_of(module, scan.RandomOp)
    assert draw.method.data == "random" and not in_loop(draw)
    loop = the_loop(module)
    (lt,) = ops_of(module, scan.LtOp, inside=True)
    assert lt.lhs in list(loop.seq_args)  # u_t < p
    assert not any(d.method.data == "binomial" for d in ops_of(module, scan.RandomOp))


def test_fast_random_gibbs_statistics_match_the_exact_sampler():
    # The sampled chain's mean activation agrees with the exact one (same model, many steps).
    args = gibbs_data()
    args["n_steps"] = 400
    fast = scanopt.scan(gibbs_step, **args)
    args["non_sequences"] = [*args["non_sequences"][:-1], np.random.default_rng(77)]
    exact = scanopt.scan(gibbs_step, exact_random=True, **args)
    assert fast.shape == exact.shape and set(np.unique(fast)) <= {0.0, 1.0}
    assert abs(fast[100:].mean() - exact[100:].mean()) < 0.05


def test_fast_random_binomial_with_invariant_p_statistics():
    p = np.array([0.0, 1.0, 0.5])
    out = scanopt.scan(binomial_invariant_p_step, outputs_info=np.zeros(3),
                       non_sequences=[p, np.random.default_rng(30)], n_steps=400)
    assert out.shape == (400, 3) and out.dtype == np.float64
    assert np.all(out[:, 0] == 0) and np.all(out[:, 1] == 1)
    assert set(np.unique(out[:, 2])) == {0.0, 1.0} and 0.35 < out[:, 2].mean() < 0.65
    module = compile_ir(binomial_invariant_p_step, ["scan-fast-random"], outputs_info=np.zeros(3),
                        non_sequences=[p, np.random.default_rng(30)], n_steps=4)
    (draw,) = ops_of(module, scan.RandomOp)
    assert draw.method.data == "random" and not in_loop(draw)


def test_fast_random_does_not_predraw_a_draw_on_the_carry():
    module = compile_ir(normal_on_carry_step, ["scan-fast-random"], outputs_info=np.zeros(3),
                        non_sequences=np.random.default_rng(31), n_steps=T)
    (draw,) = ops_of(module, scan.RandomOp)
    assert in_loop(draw) and draw.steps is None and draw.method.data == "normal"
    assert draw.params[0] is the_loop(module).carry_args[0]
    # Same after the whole default pipeline.
    module = compile_ir(normal_on_carry_step, passes_for(optimize=True),
                        outputs_info=np.zeros(3), non_sequences=np.random.default_rng(31),
                        n_steps=T)
    (draw,) = ops_of(module, scan.RandomOp)
    assert in_loop(draw) and draw.steps is None


def test_fast_random_predraws_a_state_independent_draw():
    module = compile_ir(random_invariant_step, ["scan-fast-random"], outputs_info=np.zeros(3),
                        non_sequences=np.random.default_rng(32), n_steps=T)
    loop = the_loop(module)
    (draw,) = ops_of(module, scan.RandomOp)
    assert not in_loop(draw) and before_loop(draw, module)
    assert draw.steps is loop.n_steps
    assert list(draw.size.get_values()) == [3]
    assert shape(draw.result) == (DYNAMIC_INDEX, 3)
    assert draw.result in list(loop.sequences)
    assert "steps %n_steps" in print_ir(module)
    # Each step gets its own numbers in [0, 1); a seed reproduces them.
    runs = [scanopt.scan(random_invariant_step, outputs_info=np.zeros(3),
                         non_sequences=np.random.default_rng(32), n_steps=50) for _ in range(2)]
    np.testing.assert_array_equal(runs[0], runs[1])
    increments = np.diff(np.vstack([np.zeros(3), runs[0]]), axis=0)
    assert np.all((increments >= 0) & (increments < 1))
    assert len(np.unique(increments.round(12))) == increments.size


def test_fast_random_keeps_a_huge_per_step_draw_in_the_loop():
    assert 128 * 129 * 8 > PREDRAW_MAX_STEP_BYTES
    module = compile_ir(huge_draw_step, ["scan-fast-random"], outputs_info=np.zeros(128),
                        non_sequences=np.random.default_rng(33), n_steps=T)
    (draw,) = ops_of(module, scan.RandomOp)
    assert in_loop(draw) and draw.steps is None
    out = scanopt.scan(huge_draw_step, outputs_info=np.zeros(128),
                       non_sequences=np.random.default_rng(33), n_steps=3)
    assert out.shape == (3, 128) and np.all(np.diff(out, axis=0) > 0)


def test_fast_random_is_off_with_exact_random():
    passes = passes_for(optimize=True, exact_random=True)
    assert "scan-fast-random" in FAST_RANDOM and "scan-fast-random" not in passes
    module = compile_ir(gibbs_step, passes, **gibbs_data())
    draws = ops_of(module, scan.RandomOp)
    assert len(draws) == 2 and all(d.method.data == "binomial" and in_loop(d) for d in draws)


# --------------------------------------------------------------------------------------------
# The user's unmerged LSTM: exactly two matmuls, one before the loop and one inside
# --------------------------------------------------------------------------------------------

def test_unmerged_lstm_compiles_to_two_matmuls():
    data = lstm_data(F32)
    module = compile_ir(lstm_step, passes_for(optimize=True), **data)
    matmuls = ops_of(module, scan.MatmulOp)
    assert len(matmuls) == 2
    outside = [m for m in matmuls if not in_loop(m)]
    inside = [m for m in matmuls if in_loop(m)]
    assert len(outside) == 1 and len(inside) == 1
    loop = the_loop(module)
    (gemm,), (step_mm,) = outside, inside
    # One input GEMM on the whole sequence before the loop, X @ W_all (B rows per step).
    assert before_loop(gemm, module)
    assert gemm.lhs is loop.parent_block().args[0]
    assert shape(gemm.result) == (DYNAMIC_INDEX, B, 4 * H)
    # One h @ U_all per step.
    assert step_mm.lhs is loop.carry_args[0] and shape(step_mm.result) == (B, 4 * H)
    # Its weights are concatenated once, before the loop.
    assert all(not in_loop(c) for c in ops_of(module, scan.ConcatOp))
    assert_scan_matches(lstm_step, F32, **data)


def test_unmerged_lstm_without_optimisation_has_eight_matmuls_in_the_loop():
    assert passes_for(optimize=False) == ()
    module = compile_ir(lstm_step, passes_for(optimize=False), **lstm_data(F32))
    matmuls = ops_of(module, scan.MatmulOp)
    assert len(matmuls) == 8 and all(in_loop(m) for m in matmuls)


def test_unmerged_lstm_float64_matches_the_plain_loop():
    assert_scan_matches(lstm_step, F64, **lstm_data(F64, seed=34))


def test_explain_reports_the_matmul_counts_of_the_lstm():
    from scanopt.api import _prepare_call, _spec

    data = lstm_data(F32)
    call = _prepare_call(lstm_step, data["sequences"], data["outputs_info"],
                         data["non_sequences"], None, False, "numpy", "all")
    text = explain_loop(lstm_step, _spec(call.key))
    assert "8 matmul(s) as written" in text
    assert "1 matmul(s) after the passes (1 matmul(s) run once, outside the step loop)" in text
