"""The generated step kernels, without a GPU: NVRTC compiles every kernel of every case for
compute_80 and compute_90, and the same kernel text, compiled by g++ with a CUDA emulation
header (scanopt/lowering/cuda/emulate.py), computes what NumPy computes for the fused region,
on random inputs, in every mode (tiles, block, split, elementwise, cuBLAS fallback)."""

from __future__ import annotations

import numpy as np
import pytest
from xdsl.dialects import arith

from cupy_cases import BENCH_CASES, CASES
from scanopt.api import _prepare_call, _spec
from scanopt.compiler import build_ir
from scanopt.dialects import fused, scan
from scanopt.dialects.types import aval_of
from scanopt.lowering.cuda import emulate, kernels, nvrtc


def regions_of(fn, args) -> list[fused.RegionOp]:
    call = _prepare_call(fn, args.get("sequences"), args["outputs_info"],
                         args["non_sequences"], args.get("n_steps"), False, "cupy")
    module = build_ir(fn, _spec(call.key), backend="cupy").module
    return [op for op in module.walk() if isinstance(op, fused.RegionOp)]


def numpy_region(region: fused.RegionOp, inputs: list) -> list[np.ndarray]:
    """The region's results computed op by op with NumPy (the reference)."""
    env = dict(zip(region.block.args, inputs))
    for op in region.block.ops:
        if isinstance(op, fused.YieldOp):
            return [np.asarray(env[v]) for v in op.values]
        values = [env[o] for o in op.operands]
        dtype = aval_of(op.results[0].type).dtype
        if isinstance(op, arith.ConstantOp):
            result = op.value.value.data
        elif isinstance(op, scan.MatmulOp):
            result = values[0] @ values[1]
        elif isinstance(op, scan.IndexOp):
            index = []
            for entry in (s.data for s in op.spec.data):
                if entry == "...":
                    index.append(Ellipsis)
                elif entry == "None":
                    index.append(None)
                elif ":" in entry:
                    index.append(slice(*[int(p) if p else None for p in entry.split(":")]))
                else:
                    index.append(int(entry))
            result = values[0][tuple(index)]
        elif isinstance(op, scan.TransposeOp):
            result = np.transpose(values[0], list(op.perm.get_values()))
        elif isinstance(op, scan.CastOp):
            result = np.asarray(values[0]).astype(dtype)
        elif isinstance(op, scan.WhereOp):
            result = np.where(*values)
        elif isinstance(op, scan.ClipOp):
            result = np.clip(*values)
        else:
            with np.errstate(all="ignore"):
                result = getattr(np, op.NUMPY_NAME)(*values)
        env[op.results[0]] = result
    raise AssertionError("no fused.yield")


def random_inputs(region, rng, integers=False):
    inputs = []
    for arg in region.block.args:
        aval = aval_of(arg.type)
        if aval.weak:
            inputs.append(aval.dtype.type(1.5) if aval.dtype.kind == "f" else 3)
        elif aval.dtype.kind in "iub":
            inputs.append(rng.integers(-5, 6, aval.shape).astype(aval.dtype))
        else:
            inputs.append(rng.standard_normal(aval.shape).astype(aval.dtype))
    return inputs


def run_emulated(plan: kernels.RegionPlan, region, inputs) -> list[np.ndarray]:
    """The plan's steps on the CPU: kernels emulated, cuBLAS matmuls by NumPy."""
    library = emulate.build(kernels.module_text(plan.kernels), plan.kernels)
    outputs = [np.full(aval_of(v.type).shape, -7, aval_of(v.type).dtype) for v in region.outs]
    scratch = [np.full(s.shape, np.nan if s.dtype.kind == "f" else -7, s.dtype)
               for s in plan.scratch]
    for step in plan.steps:
        if isinstance(step, kernels.ExternalMatmul):
            lhs = inputs[step.lhs[1]] if step.lhs[0] == "input" else scratch[step.lhs[1]]
            np.matmul(lhs, inputs[step.rhs], out=scratch[step.out])
            continue
        kernel = step.kernel
        args = []
        for param in kernel.params:
            if param.kind == "input":
                value = inputs[param.index]
                args.append(np.ascontiguousarray(value) if isinstance(value, np.ndarray)
                            else value)
            elif param.kind == "output":
                args.append(outputs[param.index])
            else:
                args.append(scratch[param.index])
        library.launch(kernel.name, kernel.grid, kernel.block, args)
    return outputs


def _all_plans(cases):
    for name, (fn, make) in cases.items():
        for k, region in enumerate(regions_of(fn, make())):
            for in_kernel in (True, False):
                yield f"{name}-{k}-{'kernel' if in_kernel else 'fallback'}", \
                    kernels.plan_region(region, f"{name}_step", in_kernel=in_kernel)


# ---------------------------------------------------------------------------------------------
# NVRTC


@pytest.fixture(scope="module")
def nvrtc_ready():
    why = nvrtc.available()
    if why is not None:
        pytest.skip(f"NVRTC is not available: {why}")


def test_every_kernel_compiles_with_nvrtc(nvrtc_ready):
    plans = dict(_all_plans({**CASES, **BENCH_CASES}))
    assert len(plans) >= 20
    for label, plan in plans.items():
        source = kernels.module_text(plan.kernels)
        for arch in nvrtc.ARCHITECTURES:
            ptx = nvrtc.compile_ptx(source, f"{label}.cu", arch=arch)
            for kernel in plan.kernels:
                assert f".entry {kernel.name}(" in ptx, (label, kernel.name)


def test_nvrtc_reports_an_error_with_its_log(nvrtc_ready):
    with pytest.raises(nvrtc.NVRTCError, match="undefined_name") as error:
        nvrtc.compile_ptx('extern "C" __global__ void k(float* x) { x[0] = undefined_name; }')
    assert "compute_90" in str(error.value)


# ---------------------------------------------------------------------------------------------
# The kernels on the CPU, against NumPy


@pytest.fixture(scope="module")
def gxx():
    why = emulate.available()
    if why is not None:
        pytest.skip(why)


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("in_kernel", [True, False], ids=["kernel", "fallback"])
def test_kernels_compute_the_region(gxx, case, in_kernel):
    fn, make = CASES[case]
    rng = np.random.default_rng(11)
    for region in regions_of(fn, make()):
        plan = kernels.plan_region(region, f"{case}_step", in_kernel=in_kernel)
        inputs = random_inputs(region, rng)
        expected = numpy_region(region, inputs)
        got = run_emulated(plan, region, inputs)
        for g, e in zip(got, expected):
            assert g.dtype == e.dtype
            np.testing.assert_allclose(g, e, rtol=2e-5, atol=2e-5)


def test_modes_are_chosen_from_shapes(gxx):
    expected = {"lstm": "tiles", "elman": "tiles", "gru": "block", "gibbs": "block",
                "gibbs_batch": "block"}
    for case, mode in expected.items():
        fn, make = CASES[case]
        (region,) = regions_of(fn, make())
        plan = kernels.plan_region(region, case)
        assert plan.mode == mode, case
        assert len(plan.kernels) == 1 and plan.graph_capturable, case
    # The benchmark's single-vector Gibbs chain: one block could not read 2 x 1.5 MB of
    # weights fast enough, so its two matmuls are two kernels over the whole GPU.
    fn, make = BENCH_CASES["gibbs_vector_784x500"]
    (region,) = regions_of(fn, make())
    plan = kernels.plan_region(region, "gibbs")
    assert plan.mode == "split" and len(plan.kernels) == 2
    ks = {k.block[1] for k in plan.kernels}
    assert max(ks) >= 16  # long reductions, small outputs: many warps split k
    fn, make = BENCH_CASES["lstm_T50_B64_I256_H512"]
    (region,) = regions_of(fn, make())
    (kernel,) = kernels.plan_region(region, "lstm").kernels
    assert kernel.grid == (16, 16)  # 4 rows per block: each block reads U for 4 rows


def test_split_mode_computes_the_region(gxx, monkeypatch):
    """The phases of GRU and Gibbs as separate kernels (forced on small shapes)."""
    monkeypatch.setattr(kernels, "MIN_ROW_BLOCKS", 10 ** 6)
    monkeypatch.setattr(kernels, "SMALL_WEIGHTS_BYTES", 0)
    rng = np.random.default_rng(12)
    for case in ("gru", "gibbs", "gibbs_batch"):
        fn, make = CASES[case]
        (region,) = regions_of(fn, make())
        plan = kernels.plan_region(region, f"{case}_split")
        assert plan.mode == "split" and len(plan.kernels) == 2
        inputs = random_inputs(region, rng)
        for g, e in zip(run_emulated(plan, region, inputs), numpy_region(region, inputs)):
            np.testing.assert_allclose(g, e, rtol=2e-5, atol=2e-5)


def _ufunc_step(x_t, h, W, a, n):
    z = h @ W
    y = np.where(z > 0.5, np.maximum(z, x_t), np.minimum(z, -x_t))
    y = np.clip(y, -2.0, a) + np.floor_divide(z, 0.7) + np.remainder(z, 0.3)
    y = y + np.power(np.abs(z), 1.5) * np.sign(x_t) - np.hypot(z, x_t) / np.exp2(x_t)
    y = y + np.logaddexp(z, x_t) + np.arctan2(z, x_t) + np.fmax(z, np.nan)
    k = (x_t * 3).astype(np.int32)
    y = y + (k // 2 + k % 3 + n).astype(h.dtype)
    y = y + np.logical_xor(z > 0, x_t < 0) + (z.T[::-1]).T[:, ::-1]
    return np.tanh(y * 0.1).astype(h.dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_many_elementwise_ops_and_dtypes(gxx, dtype):
    """NumPy's semantics (NaN propagation, floor division and modulo of negatives, integer
    casts, weak Python scalars, transposed and reversed slices) in both dtypes."""
    rng = np.random.default_rng(13)
    args = dict(sequences=rng.standard_normal((3, 4, 6)).astype(dtype),
                outputs_info=rng.standard_normal((4, 6)).astype(dtype),
                non_sequences=[rng.standard_normal((6, 6)).astype(dtype), 1.5, 2])
    regions = regions_of(_ufunc_step, args)
    assert regions
    for region in regions:
        for in_kernel in (True, False):
            plan = kernels.plan_region(region, "ufuncs", in_kernel=in_kernel)
            inputs = random_inputs(region, rng)
            got = run_emulated(plan, region, inputs)
            for g, e in zip(got, numpy_region(region, inputs)):
                assert g.dtype == e.dtype
                np.testing.assert_allclose(g, e, rtol=1e-5 if dtype == np.float32 else 1e-12,
                                           atol=1e-5 if dtype == np.float32 else 1e-12)


def test_kernel_text_is_readable():
    fn, make = CASES["lstm"]
    (region,) = regions_of(fn, make())
    text = kernels.module_text(kernels.plan_region(region, "lstm_step").kernels)
    import inspect

    import cupy_cases

    line = inspect.getsource(cupy_cases).splitlines().index("    c = f * c + i * g") + 1
    assert f"// cupy_cases.py:{line}: c = f * c + i * g" in text
    for name in ("const float i =", "const float f =", "const float o =", "const float g ="):
        assert name in text
    assert "h_out[" in text and "c_out[" in text
    assert "__shared__ float lhs_h[" in text
