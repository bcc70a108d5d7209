"""Every pass keeps working with Theano's taps, until and nested scans (IR-level tests).

Each test builds the loop with the frontend, runs passes, checks the IR, and compares the
compiled loop with tests/theano_oracle.py.
"""

from __future__ import annotations

import numpy as np

import scanopt
from conftest import assert_matches
from scanopt.compiler import passes_for
from scanopt.dialects import scan
from test_passes import compile_ir, ops_of, the_loop
from theano_oracle import theano_scan

F32 = np.float32


def data(shape, seed=0, scale=1.0):
    return (scale * np.random.default_rng(seed).standard_normal(shape)).astype(F32)


def check(fn, **kwargs):
    for optimize in (True, False):
        expected = theano_scan(fn, **kwargs)
        assert_matches(scanopt.scan(fn, optimize=optimize, **kwargs), expected)


# --- LICM ------------------------------------------------------------------------------------

def licm_with_taps(u_tm2, u_t, x_tm2, x_tm1, W, b):
    return np.tanh(u_tm2 @ W.T + u_t * b.sum() + x_tm2 @ W.T - x_tm1)


LICM_ARGS = dict(sequences=dict(input=data((9, 2, 3), 1), taps=[-2, 0]),
                 outputs_info=dict(initial=data((2, 2, 3), 2), taps=[-2, -1]),
                 non_sequences=[data((3, 3), 3, 0.5), data(3, 4)])


def test_licm_hoists_invariants_of_a_loop_with_taps():
    module = compile_ir(licm_with_taps, ["scan-licm"], **LICM_ARGS)
    assert not ops_of(module, scan.TransposeOp, inside=True)
    assert not ops_of(module, scan.ReduceOp, inside=True)
    assert the_loop(module).offsets() == (0, 2)
    check(licm_with_taps, **LICM_ARGS)


# --- matmul fusion ---------------------------------------------------------------------------

def gates_on_an_older_value(x_t, h_tm2, h_tm1, U_i, U_f):
    i = 1 / (1 + np.exp(-(x_t + h_tm2 @ U_i)))
    f = 1 / (1 + np.exp(-(x_t + h_tm2 @ U_f)))
    return f * h_tm1 + i


FUSE_ARGS = dict(sequences=data((6, 2, 4), 5),
                 outputs_info=dict(initial=data((2, 2, 4), 6), taps=[-2, -1]),
                 non_sequences=[data((4, 4), 7, 0.5), data((4, 4), 8, 0.5)])


def test_fuse_matmul_on_a_tapped_carry():
    module = compile_ir(gates_on_an_older_value, ["scan-licm", "scan-fuse-matmul", "cse"],
                        **FUSE_ARGS)
    inside = ops_of(module, scan.MatmulOp, inside=True)
    assert len(inside) == 1 and inside[0].lhs is the_loop(module).carry_args[0]
    check(gates_on_an_older_value, **FUSE_ARGS)


# --- push-out --------------------------------------------------------------------------------

def taps_of_one_gemm(u_tm4, u_t, h, W):
    return np.tanh(u_tm4 @ W + u_t @ W + h)


PUSH_ARGS = dict(sequences=dict(input=data((12, 2, 3), 9), taps=[-4, 0]),
                 outputs_info=np.zeros((2, 3), F32), non_sequences=data((3, 3), 10, 0.5))


def test_push_out_of_tapped_matmuls_is_one_gemm_read_at_shifted_rows():
    module = compile_ir(taps_of_one_gemm, ["scan-push-out-seq"], **PUSH_ARGS)
    outside = ops_of(module, scan.MatmulOp, inside=False)
    assert len(outside) == 1 and not ops_of(module, scan.MatmulOp, inside=True)
    loop = the_loop(module)
    gemm = outside[0].result
    offsets = [o for seq, o in zip(loop.sequences, loop.offsets()) if seq is gemm]
    assert sorted(offsets) == [0, 4]
    check(taps_of_one_gemm, **PUSH_ARGS)
    check(taps_of_one_gemm, go_backwards=True, **PUSH_ARGS)


def mixed_offsets(u_tm1, u_t, h):
    return h + u_tm1 * u_t  # two rows of one sequence: stays in the loop


def test_an_op_on_two_taps_stays_in_the_loop():
    args = dict(sequences=dict(input=data((7, 3), 11), taps=[-1, 0]),
                outputs_info=np.zeros(3, F32))
    module = compile_ir(mixed_offsets, ["scan-push-out-seq"], **args)
    assert len(ops_of(module, scan.MulOp, inside=True)) == 1
    check(mixed_offsets, **args)


# --- sinking and storage with until --------------------------------------------------------

def until_with_a_sinkable_output(x_t, h, W_out):
    h = np.tanh(h + x_t)
    return h, h @ W_out, scanopt.until(np.abs(h).sum() > 4.0)


SINK_ARGS = dict(sequences=np.abs(data((40, 2, 3), 12)), outputs_info=[np.zeros((2, 3), F32),
                                                                          None],
                 non_sequences=data((3, 2), 13))


def test_sinking_an_output_of_a_loop_that_stops_early():
    module = compile_ir(until_with_a_sinkable_output, ["scan-sink-outputs"], **SINK_ARGS)
    loop = the_loop(module)
    assert loop.until is not None and len(loop.outs) == 1
    (sunk,) = ops_of(module, scan.MatmulOp, inside=False)
    assert sunk.lhs is loop.outs[0]  # computed on the history of the steps that ran
    check(until_with_a_sinkable_output, **SINK_ARGS)


def test_keep_last_with_output_taps_keeps_only_the_taps_window():
    def fib(a, b):
        return a + b
    module = compile_ir(fib, passes_for(optimize=True),
                        outputs_info=dict(initial=np.array([0.0, 1.0]), taps=[-2, -1]),
                        n_steps=30, keep="last")
    loop = the_loop(module)
    assert set(loop.last_indices()) == {0, 1}  # both registers: no history at all
    assert not ops_of(module, scan.LastOp)


def draws_until(x, rng):
    x = x + rng.random(2)
    return x, scanopt.until(x.sum() > 10)


def test_pre_drawing_in_a_loop_that_stops_early_draws_in_growing_chunks():
    args = dict(outputs_info=np.zeros(2), non_sequences=np.random.default_rng(2),
                n_steps=1_000_000)
    module = compile_ir(draws_until, passes_for(optimize=True), **args)
    assert the_loop(module).until is not None
    source = scanopt.step(draws_until).source(**args)
    assert "while t0 < n_steps" in source and "chunk_steps = 16" in source
    out = scanopt.scan(draws_until, **args)
    assert 0 < len(out) < 100 and out[-1].sum() > 10 and out[-2].sum() <= 10


# --- nested loops ----------------------------------------------------------------------------

def nested_with_invariants(x_t, h, W):
    ys = scanopt.scan(lambda y, a: a + y @ W.T, sequences=x_t, outputs_info=h)
    return ys[-1]


def test_passes_on_a_nested_loop():
    args = dict(sequences=data((4, 5, 3), 14), outputs_info=np.zeros(3, F32),
                non_sequences=data((3, 3), 15, 0.5))
    module = compile_ir(nested_with_invariants, passes_for(optimize=True), **args)
    loops = [op for op in module.walk() if isinstance(op, scan.LoopOp)]
    assert len(loops) == 2
    inner = loops[1]
    assert isinstance(inner.parent_op(), scan.LoopOp)
    # W.T is invariant in both loops: it leaves both.
    assert not [op for op in module.walk() if isinstance(op, scan.TransposeOp)
                and isinstance(op.parent_op(), scan.LoopOp)]
    # The inner matmul runs on the rows of the outer slice: pushed out of the inner loop into
    # the outer step, as one matmul over the slice.
    assert not [op for op in inner.block.ops if isinstance(op, scan.MatmulOp)]
    check(nested_with_invariants, **args)
