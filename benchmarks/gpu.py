"""The CuPy backend on a GPU: correctness checks, then the benchmark table, in one go.

Run from the checkout on a machine with an NVIDIA GPU, CuPy (cupy-cuda12x or cupy-cuda13x),
and optionally JAX with CUDA and PyTorch; no network is needed. scanopt runs from this
checkout (the script puts it on sys.path); its pure-Python dependencies (xdsl, platformdirs,
filelock) must be importable, e.g. carried as wheels and installed with
``pip install --no-index --no-deps --target /tmp/site wheels/*.whl`` and
``PYTHONPATH=/tmp/site``.

    python benchmarks/gpu.py            # checks, then the table (a few minutes)
    python benchmarks/gpu.py --quick    # fewer repeats, shorter loops

Checks (fresh random inputs each run, the seed printed): the LSTM, GRU and Elman loops against
a float64 NumPy reference within float32 tolerance, on every call path (first call, graph
capture, graph replay, new inputs through the same graph); the Gibbs chain against a float64
loop that uses the uniforms the module drew (re-drawn from a generator with the same seed).
Then each workload is timed for: the plain CuPy loop (the step function called on CuPy
arrays), scanopt's CuPy module (inputs given as NumPy arrays, and already on the device),
scanopt with the cuBLAS fallback for comparison, JAX ``lax.scan`` (jit) and ``torch.nn.LSTM``
(cuDNN) where they apply. Medians of timed calls after warm-up, with a device synchronisation
around each call. Exits non-zero if a check fails.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import tempfile
import time
import traceback

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("SCANOPT_CACHE_DIR", tempfile.mkdtemp(prefix="scanopt-gpu-"))
# JAX would otherwise take 75% of the GPU's memory when it starts, leaving CuPy short.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

F32 = np.float32


def _require():
    missing = []
    for name in ("cupy", "xdsl", "platformdirs", "filelock"):
        try:
            __import__(name)
        except ImportError as error:
            missing.append(f"{name} ({error})")
    if missing:
        sys.exit("benchmarks/gpu.py needs: " + ", ".join(missing) +
                 "\nInstall CuPy for the machine's CUDA, and scanopt's dependencies (pip install "
                 "-e . or wheels on PYTHONPATH, see this file's docstring).")


_require()

import cupy as cp  # noqa: E402

import scanopt  # noqa: E402
from scanopt.api import _lookup, _prepare_call  # noqa: E402


# ---------------------------------------------------------------------------------------------
# The step functions, as users write them (LSTM, Elman and Gibbs: bench_scan.py's)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_scan import elman_step, gibbs_step, lstm_step, sigmoid  # noqa: E402


def gru_step(x_t, h, W_z, W_r, W_h, U_z, U_r, U_h, b_z, b_r, b_h):
    z = sigmoid(x_t @ W_z + h @ U_z + b_z)
    r = sigmoid(x_t @ W_r + h @ U_r + b_r)
    hh = np.tanh(x_t @ W_h + (r * h) @ U_h + b_h)
    return (1 - z) * h + z * hh


# ---------------------------------------------------------------------------------------------
# Data


def lstm_data(rng, T, B, I, H):
    def n(*shape, scale=1.0):
        return (scale * rng.standard_normal(shape)).astype(F32)
    params = [n(I, H, scale=I ** -0.5) for _ in range(4)] + \
        [n(H, H, scale=H ** -0.5) for _ in range(4)] + [n(H, scale=0.1) for _ in range(4)]
    return dict(sequences=n(T, B, I), outputs_info=[n(B, H, scale=0.5), n(B, H, scale=0.5)],
                non_sequences=params)


def gru_data(rng, T, B, I, H):
    def n(*shape, scale=1.0):
        return (scale * rng.standard_normal(shape)).astype(F32)
    params = [n(I, H, scale=I ** -0.5) for _ in range(3)] + \
        [n(H, H, scale=H ** -0.5) for _ in range(3)] + [n(H, scale=0.1) for _ in range(3)]
    return dict(sequences=n(T, B, I), outputs_info=n(B, H, scale=0.5), non_sequences=params)


def elman_data(rng, T, B, I, H):
    def n(*shape, scale=1.0):
        return (scale * rng.standard_normal(shape)).astype(F32)
    return dict(sequences=n(T, B, I), outputs_info=n(B, H, scale=0.5),
                non_sequences=[n(I, H, scale=I ** -0.5), n(H, H, scale=H ** -0.5),
                               n(H, scale=0.1)])


def gibbs_data(rng, N, V, H, B=None, seed=0):
    W = rng.normal(0.0, 0.05, size=(V, H)).astype(F32)
    bvis = rng.normal(0.0, 0.5, size=V).astype(F32)
    bhid = rng.normal(0.0, 0.5, size=H).astype(F32)
    v0 = (rng.random((V,) if B is None else (B, V)) < 0.5).astype(F32)
    return dict(outputs_info=v0, non_sequences=[W, bvis, bhid, np.random.default_rng(seed)],
                n_steps=N)


def reference(fn, args):
    """The plain loop in float64 (the step's float32 inputs cast up)."""
    def up(x):
        return x.astype(np.float64) if isinstance(x, np.ndarray) else x
    seqs = [up(args["sequences"])] if "sequences" in args else []
    inits = args["outputs_info"] if isinstance(args["outputs_info"], list) else \
        [args["outputs_info"]]
    params = [up(p) for p in args["non_sequences"]]
    result = _loop(fn, seqs, [up(v) for v in inits], params, args.get("n_steps"), np.stack)
    return result[0] if len(result) == 1 else result


def _loop(fn, seqs, state, params, n, stack):
    """The plain loop: ``fn`` called step by step, each output's values stacked."""
    n = n or len(seqs[0])
    history = [[] for _ in state]
    for t in range(n):
        out = fn(*[s[t] for s in seqs], *state, *params)
        out = list(out) if isinstance(out, tuple) else [out]
        for k, v in enumerate(out):
            history[k].append(v)
        state = out
    return [stack(h) for h in history]


def host(x):
    return [cp.asnumpy(v) for v in x] if isinstance(x, list) else cp.asnumpy(x)


# ---------------------------------------------------------------------------------------------
# Checks


def check_close(name, got, expected, failures):
    got = got if isinstance(got, list) else [got]
    expected = expected if isinstance(expected, list) else [expected]
    worst = 0.0
    for g, e in zip(got, expected):
        if g.dtype != np.float32 or g.shape != e.shape:
            failures.append(f"{name}: got {g.dtype}{list(g.shape)}, expected float32"
                            f"{list(e.shape)}")
            return
        worst = max(worst, float(np.max(np.abs(g - e) / (1e-5 + np.abs(e)))))
        if not np.allclose(g, e, rtol=1e-4, atol=2e-5):
            failures.append(f"{name}: max |error| {np.max(np.abs(g - e)):.3g}")
            return
    print(f"  ok  {name:<48} max relative error {worst:.2e}")


def run_checks(seed: int, tiny: bool = False) -> list[str]:
    """``tiny``: small shapes, for a smoke run of this script on the CPU (the tests do)."""
    failures: list[str] = []
    rng = np.random.default_rng(seed)
    print(f"Checks (seed {seed}): scanopt's CuPy modules against float64 references")
    cases = [("LSTM T20 B16 H128", lstm_step, lambda: lstm_data(rng, 20, 16, 128, 128)),
             ("LSTM T10 B64 I256 H512", lstm_step, lambda: lstm_data(rng, 10, 64, 256, 512)),
             ("GRU T20 B16 H128", gru_step, lambda: gru_data(rng, 20, 16, 128, 128)),
             ("Elman T20 B37 H100", elman_step, lambda: elman_data(rng, 20, 37, 60, 100))]
    sizes = (784, 500)
    if tiny:
        cases = [("LSTM T4 B3 H8", lstm_step, lambda: lstm_data(rng, 4, 3, 5, 8)),
                 ("GRU T4 B3 H8", gru_step, lambda: gru_data(rng, 4, 3, 5, 8)),
                 ("Elman T4 B3 H8", elman_step, lambda: elman_data(rng, 4, 3, 5, 8))]
        sizes = (24, 10)
    for name, fn, make in cases:
        try:
            for call in ("first call", "captured", "replayed"):
                args = make()
                check_close(f"{name}, {call}", host(scanopt.scan(fn, backend="cupy", **args)),
                            reference(fn, args), failures)
        except Exception:  # noqa: BLE001 (reported, the other checks still run)
            failures.append(f"{name}: {traceback.format_exc()}")
    for name, batch in ((f"Gibbs vector {sizes[0]}x{sizes[1]}", None),
                        (f"Gibbs batch 16 {sizes[0]}x{sizes[1]}", 16)):
        try:
            check_gibbs(name, rng, batch, failures, *sizes)
        except Exception:  # noqa: BLE001
            failures.append(f"{name}: {traceback.format_exc()}")
    return failures


def check_gibbs(name, rng, batch, failures, V=784, H=500):
    """The module's samples against a float64 loop with the same uniforms: the module seeds a
    cupy generator with one draw from the caller's; re-drawing from it in the module's order
    gives the same uniforms. A threshold within float32 rounding of its noise may flip one
    sample (then the chain diverges), so the chains are short and a rare flip is reported."""
    n = 20
    seed = int(rng.integers(2 ** 32))
    args = gibbs_data(rng, n, V, H, batch, seed=seed)
    W, bvis, bhid, _ = args["non_sequences"]
    got = host(scanopt.scan(gibbs_step, backend="cupy", **args))
    device_seed = int(np.random.default_rng(seed).integers(2 ** 63))
    device = cp.random.default_rng(device_seed)
    rows = () if batch is None else (batch,)
    u_h = cp.asnumpy(device.random(size=(n, *rows, H), dtype=np.float32)).astype(np.float64)
    u_v = cp.asnumpy(device.random(size=(n, *rows, V), dtype=np.float32)).astype(np.float64)
    v = args["outputs_info"].astype(np.float64)
    W64 = W.astype(np.float64)
    expected = []
    for t in range(n):
        h = (sigmoid(v @ W64 + bhid) > u_h[t]).astype(np.float64)
        v = (sigmoid(h @ W64.T + bvis) > u_v[t]).astype(np.float64)
        expected.append(v)
    expected = np.stack(expected).astype(np.float32)
    if got.shape != expected.shape or got.dtype != np.float32:
        failures.append(f"{name}: got {got.dtype}{list(got.shape)}")
        return
    same_steps = int(np.argmax(np.any((got != expected).reshape(n, -1), axis=1))) \
        if np.any(got != expected) else n
    if same_steps < n // 2:
        failures.append(f"{name}: samples differ from step {same_steps} on")
        return
    print(f"  ok  {name:<48} samples equal for {same_steps} of {n} steps "
          f"(mean activation {got.mean():.3f})")


# ---------------------------------------------------------------------------------------------
# Timing


def timed(run, repeat, warmup=2):
    for _ in range(warmup):
        run()
    cp.cuda.Device().synchronize()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        cp.cuda.Device().synchronize()
        _sync_others()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


_OTHER_SYNCS = []


def _sync_others():
    for sync in _OTHER_SYNCS:
        sync()


def plain_cupy(fn, args):
    """The step function in a Python loop on CuPy arrays (NumPy's functions dispatch to CuPy)."""
    seqs = [cp.asarray(args["sequences"])] if "sequences" in args else []
    inits = args["outputs_info"] if isinstance(args["outputs_info"], list) else \
        [args["outputs_info"]]
    params = [cp.random.default_rng(1) if isinstance(p, np.random.Generator) else cp.asarray(p)
              for p in args["non_sequences"]]
    return lambda: _loop(fn, seqs, [cp.asarray(v) for v in inits], params,
                         args.get("n_steps"), cp.stack)


def scanopt_device(fn, args, keep="all"):
    """scanopt's compiled module called with arrays already on the device."""
    call = _prepare_call(fn, args.get("sequences"), args["outputs_info"],
                         args["non_sequences"], args.get("n_steps"), False, "cupy", keep)
    compiled, captured = _lookup(fn, call, exact_random=False, optimize=True, backend="cupy")
    device = [cp.asarray(a) for a in call.sequences] + \
        [cp.asarray(v) for v in call.inits if v is not None] + \
        [p if isinstance(p, np.random.Generator) else cp.asarray(p) for p in call.non_sequences]
    return lambda: compiled.run(*device, *captured, call.n_steps)


def scanopt_fallback(fn, args, keep="all"):
    """The same module with every region on the cuBLAS fallback (for comparison)."""
    from scanopt.lowering.cuda import kernels

    original, cache_dir = kernels.plan_region, os.environ["SCANOPT_CACHE_DIR"]
    kernels.plan_region = functools.partial(original, in_kernel=False)
    # Its own cache directory: the fallback module has the same cache key as the real one.
    os.environ["SCANOPT_CACHE_DIR"] = tempfile.mkdtemp(prefix="scanopt-fallback-")
    scanopt.clear_cache()
    try:
        run = scanopt_device(fn, args, keep)
    finally:
        kernels.plan_region = original
        os.environ["SCANOPT_CACHE_DIR"] = cache_dir
        scanopt.clear_cache()
    return run


def jax_runner(kind, args):
    import jax
    import jax.numpy as jnp

    def sig(x):
        return 1 / (1 + jnp.exp(-x))

    if kind == "lstm":
        X, (h0, c0), p = args["sequences"], args["outputs_info"], args["non_sequences"]
        Wi, Wf, Wo, Wc, Ui, Uf, Uo, Uc, bi, bf, bo, bc = [jnp.asarray(a) for a in p]

        def f(carry, x_t):
            h, c = carry
            i = sig(x_t @ Wi + h @ Ui + bi)
            f_ = sig(x_t @ Wf + h @ Uf + bf)
            o = sig(x_t @ Wo + h @ Uo + bo)
            g = jnp.tanh(x_t @ Wc + h @ Uc + bc)
            c = f_ * c + i * g
            h = o * jnp.tanh(c)
            return (h, c), (h, c)
        init, xs = (jnp.asarray(h0), jnp.asarray(c0)), jnp.asarray(X)
    elif kind in ("gru", "elman"):
        X, h0, p = args["sequences"], args["outputs_info"], args["non_sequences"]
        p = [jnp.asarray(a) for a in p]
        if kind == "gru":
            Wz, Wr, Wh, Uz, Ur, Uh, bz, br, bh = p

            def f(h, x_t):
                z = sig(x_t @ Wz + h @ Uz + bz)
                r = sig(x_t @ Wr + h @ Ur + br)
                hh = jnp.tanh(x_t @ Wh + (r * h) @ Uh + bh)
                h = (1 - z) * h + z * hh
                return h, h
        else:
            W, U, b = p

            def f(h, x_t):
                h = jnp.tanh(x_t @ W + h @ U + b)
                return h, h
        init, xs = jnp.asarray(h0), jnp.asarray(X)
    else:  # gibbs
        W, bvis, bhid, _ = args["non_sequences"]
        W, bvis, bhid = jnp.asarray(W), jnp.asarray(bvis), jnp.asarray(bhid)

        def f(carry, key):
            v = carry
            k1, k2 = jax.random.split(key)
            hmean = sig(v @ W + bhid)
            h = (jax.random.uniform(k1, hmean.shape) < hmean).astype(v.dtype)
            vmean = sig(h @ W.T + bvis)
            v = (jax.random.uniform(k2, vmean.shape) < vmean).astype(v.dtype)
            return v, None
        init = jnp.asarray(args["outputs_info"])
        xs = jax.random.split(jax.random.PRNGKey(0), args["n_steps"])
    scan = jax.jit(lambda init, xs: jax.lax.scan(f, init, xs))
    return lambda: jax.block_until_ready(scan(init, xs))


def torch_runner(args):
    import torch

    X, (h0, c0), p = args["sequences"], args["outputs_info"], args["non_sequences"]
    Wi, Wf, Wo, Wc, Ui, Uf, Uo, Uc, bi, bf, bo, bc = p
    T, B, I = X.shape
    H = Ui.shape[0]
    lstm = torch.nn.LSTM(I, H).cuda()
    with torch.no_grad():  # torch's gate order: i, f, g, o
        lstm.weight_ih_l0.copy_(torch.from_numpy(np.concatenate([Wi, Wf, Wc, Wo], 1).T.copy()))
        lstm.weight_hh_l0.copy_(torch.from_numpy(np.concatenate([Ui, Uf, Uc, Uo], 1).T.copy()))
        lstm.bias_ih_l0.copy_(torch.from_numpy(np.concatenate([bi, bf, bc, bo])))
        lstm.bias_hh_l0.zero_()
    x = torch.from_numpy(X).cuda()
    state = (torch.from_numpy(h0)[None].cuda(), torch.from_numpy(c0)[None].cuda())
    _OTHER_SYNCS.append(torch.cuda.synchronize)

    def run():
        with torch.no_grad():
            return lstm(x, state)
    return run


WORKLOADS = [
    # name, kind, step, data, steps, keep, targets (system: minimum speed-up of scanopt)
    ("LSTM T100 B16 H128", "lstm", lstm_step, lambda r: lstm_data(r, 100, 16, 128, 128), 100,
     "all", {"JAX lax.scan": 3.0, "torch.nn.LSTM (cuDNN)": 1 / 1.2}),
    ("LSTM T50 B64 I256 H512", "lstm", lstm_step, lambda r: lstm_data(r, 50, 64, 256, 512),
     50, "all", {"JAX lax.scan": 1.0}),
    ("Gibbs vector N1000", "gibbs", gibbs_step, lambda r: gibbs_data(r, 1000, 784, 500), 1000,
     "all", {"JAX lax.scan": 1.5}),
    ("Gibbs batch 64 N200 (last)", "gibbs", gibbs_step,
     lambda r: gibbs_data(r, 200, 784, 500, 64), 200, "last", {"JAX lax.scan": 1.0}),
    ("Elman T100 B16 H128", "elman", elman_step, lambda r: elman_data(r, 100, 16, 128, 128),
     100, "all", {}),
    ("GRU T100 B16 H128", "gru", gru_step, lambda r: gru_data(r, 100, 16, 128, 128), 100,
     "all", {}),
]
SCANOPT_DEVICE = "scanopt CuPy (device inputs)"


def run_benchmark(seed: int, quick: bool) -> list[str]:
    rng = np.random.default_rng(seed)
    repeat = 3 if quick else 15
    missed = []
    print("\nBenchmark (median ms per call; µs per step; speed-up = other / scanopt on device "
          "inputs)")
    for name, kind, fn, make, steps, keep, targets in WORKLOADS:
        args = make(rng)
        systems = {
            "plain CuPy loop": plain_cupy(fn, args),
            "scanopt CuPy (NumPy inputs)":
                lambda fn=fn, args=args, keep=keep: scanopt.scan(fn, backend="cupy", keep=keep,
                                                                 **args),
            SCANOPT_DEVICE: scanopt_device(fn, args, keep),
            "scanopt CuPy, cuBLAS fallback": scanopt_fallback(fn, args, keep),
        }
        try:
            systems["JAX lax.scan"] = jax_runner(kind, args)
        except Exception as error:  # noqa: BLE001 (JAX missing or without CUDA)
            print(f"  (JAX skipped: {type(error).__name__}: {error})")
        if kind == "lstm":
            try:
                systems["torch.nn.LSTM (cuDNN)"] = torch_runner(args)
            except Exception as error:  # noqa: BLE001
                print(f"  (PyTorch skipped: {type(error).__name__}: {error})")
        times = {}
        for system, run in systems.items():
            try:
                times[system] = timed(run, 1 if system == "plain CuPy loop" and quick else
                                      repeat)
            except Exception as error:  # noqa: BLE001 (one system failing keeps the table)
                print(f"  {system}: failed: {type(error).__name__}: {error}")
        ours = times.get(SCANOPT_DEVICE)
        print(f"\n{name}")
        for system, t in times.items():
            ratio = f"{t / ours:6.2f}x" if ours else ""
            print(f"  {system:<34} {t * 1e3:9.3f} ms {t * 1e6 / steps:9.2f} µs/step  {ratio}")
        for system, minimum in targets.items():
            if ours and system in times and times[system] / ours < minimum:
                missed.append(f"{name}: {times[system] / ours:.2f}x {system}, target "
                              f"{minimum:.2f}x")
        plain = times.get("plain CuPy loop")
        if ours and plain and plain / ours < 30:
            missed.append(f"{name}: {plain / ours:.1f}x the plain CuPy loop, target 30x")
    return missed


def describe_device() -> str:
    props = cp.cuda.runtime.getDeviceProperties(0)
    name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    versions = [f"CuPy {cp.__version__}", f"CUDA runtime {cp.cuda.runtime.runtimeGetVersion()}"]
    for module in ("jax", "torch"):
        try:
            versions.append(f"{module} {__import__(module).__version__}")
        except ImportError:
            versions.append(f"{module} not installed")
    return f"{name}; " + ", ".join(versions) + f"; scanopt {scanopt.__version__}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--seed", type=int, default=None,
                        help="seed of the random inputs (default: a fresh one, printed)")
    parser.add_argument("--checks-only", action="store_true")
    options = parser.parse_args()
    seed = options.seed if options.seed is not None else int.from_bytes(os.urandom(4), "little")
    print(f"Device: {describe_device()}")
    failures = run_checks(seed)
    for failure in failures:
        print(f"  FAIL {failure}")
    if options.checks_only:
        return 1 if failures else 0
    missed = run_benchmark(seed, options.quick)
    print("\nTargets missed:" if missed else "\nAll targets met.")
    for line in missed:
        print(f"  {line}")
    print("\nCHECKS FAILED" if failures else "\nChecks passed.")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
