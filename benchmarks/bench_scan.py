"""Benchmark scanopt against the plain Python loop, hand-optimised NumPy, PyTensor scan and JAX.

One process and the same data for every system. Each system's first call (compilation) is timed on
its own and checked against the plain loop; after warm-up the systems run round-robin and the
median is reported, with ratios (plain loop time / system time, and system time / scanopt time).
PyTensor and JAX run only when they are importable (`pip install -e .[bench]`).

The compile latency of scanopt is measured in fresh subprocesses: the first LSTM call with an
empty SCANOPT_CACHE_DIR, then again served from that disk cache.

    python benchmarks/bench_scan.py                      # everything, results in benchmarks/results.json
    python benchmarks/bench_scan.py --quick              # smoke run
    python benchmarks/bench_scan.py --only lstm,compile  # workloads whose name contains a word

Machine noise is about ±30% between runs: compare ratios from one run, not times across runs.
"""

import argparse
import importlib.metadata
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

SEED = 1234
F32 = np.float32
DEFAULT_JSON = Path(__file__).resolve().parent / "results.json"

PLAIN = "plain loop"
SCANOPT = "scanopt"
SCANOPT_EXACT = "scanopt exact_random"
SCANOPT_NUMBA = "scanopt numba"
HAND = "hand NumPy"
PYTENSOR = "PyTensor scan"
JAX = "JAX lax.scan"


# ---------------------------------------------------------------------------------------------
# Step functions, as users write them. The plain loop and scanopt run these same functions.
# ---------------------------------------------------------------------------------------------

def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def lstm_step(x_t, h, c, W_i, W_f, W_o, W_c, U_i, U_f, U_o, U_c, b_i, b_f, b_o, b_c):
    i = sigmoid(x_t @ W_i + h @ U_i + b_i)
    f = sigmoid(x_t @ W_f + h @ U_f + b_f)
    o = sigmoid(x_t @ W_o + h @ U_o + b_o)
    g = np.tanh(x_t @ W_c + h @ U_c + b_c)
    c = f * c + i * g
    h = o * np.tanh(c)
    return h, c


def gru_step(x_t, h, W_z, W_r, W_h, U_z, U_r, U_h, b_z, b_r, b_h):
    z = sigmoid(x_t @ W_z + h @ U_z + b_z)
    r = sigmoid(x_t @ W_r + h @ U_r + b_r)
    h_tilde = np.tanh(x_t @ W_h + (r * h) @ U_h + b_h)
    return (1 - z) * h + z * h_tilde


def elman_step(x_t, h, W, U, b):
    return np.tanh(x_t @ W + h @ U + b)


def gibbs_step(v, W, bvis, bhid, rng):
    hmean = sigmoid(v @ W + bhid)
    h = rng.binomial(1, hmean).astype(v.dtype)
    vmean = sigmoid(h @ W.T + bvis)
    return rng.binomial(1, vmean).astype(v.dtype)


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------

def _normal(rng, shape, scale=1.0):
    return (scale * rng.standard_normal(shape)).astype(F32)


def lstm_data(T, B, n_in, n_hidden):
    rng = np.random.default_rng(0)
    X = _normal(rng, (T, B, n_in))
    h0 = np.zeros((B, n_hidden), F32)
    c0 = np.zeros((B, n_hidden), F32)
    Ws = [_normal(rng, (n_in, n_hidden), n_in ** -0.5) for _ in range(4)]          # i, f, o, c
    Us = [_normal(rng, (n_hidden, n_hidden), n_hidden ** -0.5) for _ in range(4)]  # i, f, o, c
    bs = [_normal(rng, (n_hidden,), 0.1) for _ in range(4)]                        # i, f, o, c
    return dict(X=X, h0=h0, c0=c0, params=Ws + Us + bs)


def gru_data(T, B, n_in, n_hidden):
    rng = np.random.default_rng(0)
    Ws = [_normal(rng, (n_in, n_hidden), n_in ** -0.5) for _ in range(3)]          # z, r, h
    Us = [_normal(rng, (n_hidden, n_hidden), n_hidden ** -0.5) for _ in range(3)]  # z, r, h
    bs = [_normal(rng, (n_hidden,), 0.1) for _ in range(3)]                        # z, r, h
    return dict(X=_normal(rng, (T, B, n_in)), h0=np.zeros((B, n_hidden), F32),
                params=Ws + Us + bs)


def elman_data(T, B, n_in, n_hidden):
    rng = np.random.default_rng(0)
    return dict(X=_normal(rng, (T, B, n_in)),
                h0=np.zeros((B, n_hidden), F32),
                W=_normal(rng, (n_in, n_hidden), n_in ** -0.5),
                U=_normal(rng, (n_hidden, n_hidden), n_hidden ** -0.5),
                b=_normal(rng, (n_hidden,), 0.1))


def gibbs_data(batch, n_steps, n_visible=784, n_hidden=500):
    rng = np.random.default_rng(0)
    shape = (n_visible,) if batch is None else (batch, n_visible)
    return dict(v0=(rng.random(shape) < 0.5).astype(F32),
                W=_normal(rng, (n_visible, n_hidden), 0.05),
                bvis=_normal(rng, (n_visible,), 0.5),
                bhid=_normal(rng, (n_hidden,), 0.5),
                n_steps=n_steps)


# ---------------------------------------------------------------------------------------------
# Plain Python loops (what users write around the step function)
# ---------------------------------------------------------------------------------------------

def plain_lstm(d):
    def run():
        h, c = d["h0"], d["c0"]
        hs, cs = [], []
        for x_t in d["X"]:
            h, c = lstm_step(x_t, h, c, *d["params"])
            hs.append(h)
            cs.append(c)
        return np.stack(hs), np.stack(cs)
    return run


def plain_gru(d):
    def run():
        h = d["h0"]
        hs = []
        for x_t in d["X"]:
            h = gru_step(x_t, h, *d["params"])
            hs.append(h)
        return np.stack(hs)
    return run


def plain_elman(d):
    def run():
        h = d["h0"]
        hs = []
        for x_t in d["X"]:
            h = elman_step(x_t, h, d["W"], d["U"], d["b"])
            hs.append(h)
        return np.stack(hs)
    return run


def plain_gibbs(d, keep_all):
    def run():
        rng = np.random.default_rng(SEED)
        v = d["v0"]
        samples = []
        for _ in range(d["n_steps"]):
            v = gibbs_step(v, d["W"], d["bvis"], d["bhid"], rng)
            if keep_all:
                samples.append(v)
        return np.stack(samples) if keep_all else v
    return run


# ---------------------------------------------------------------------------------------------
# scanopt (NumPy backend)
# ---------------------------------------------------------------------------------------------

def load_scanopt():
    """(module, None) or (None, why not)."""
    try:
        import scanopt
    except ImportError as err:
        return None, f"not importable: {err}"
    if not hasattr(scanopt, "scan"):
        return None, "scanopt.scan does not exist yet"
    return scanopt, None


def require_scanopt():
    """The scanopt module, or ImportError saying why not (the benchmark skips the row)."""
    scanopt, why = load_scanopt()
    if scanopt is None:
        raise ImportError(why)
    return scanopt


def with_backend(run, backend):
    """``run``, checked for ``backend`` ("numba": skipped without numba; a loop left as NumPy
    code, with the compiler's reason, becomes the row's note)."""
    if backend != "numba":
        return run
    import importlib.util
    import warnings

    if importlib.util.find_spec("numba") is None:
        raise ImportError("numba is not installed (pip install -e .[numba])")

    def first_call():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = run()
        notes = [str(w.message) for w in caught if "numba" in str(w.message)]
        if notes:
            wrapped.note = notes[0].split(": ", 1)[-1]
        wrapped.call = run
        return result

    def wrapped():
        return wrapped.call()
    wrapped.call = first_call
    return wrapped


def scanopt_lstm(d, backend="numpy"):
    scanopt = require_scanopt()

    def run():
        return scanopt.scan(lstm_step, sequences=d["X"], outputs_info=[d["h0"], d["c0"]],
                            non_sequences=d["params"], backend=backend)
    return with_backend(run, backend)


def scanopt_gru(d, backend="numpy"):
    scanopt = require_scanopt()

    def run():
        return scanopt.scan(gru_step, sequences=d["X"], outputs_info=d["h0"],
                            non_sequences=d["params"], backend=backend)
    return with_backend(run, backend)


def scanopt_elman(d, backend="numpy"):
    scanopt = require_scanopt()

    def run():
        return scanopt.scan(elman_step, sequences=d["X"], outputs_info=d["h0"],
                            non_sequences=[d["W"], d["U"], d["b"]], backend=backend)
    return with_backend(run, backend)


def scanopt_gibbs(d, keep_all, exact_random=False):
    scanopt = require_scanopt()

    def call(**extra):
        rng = np.random.default_rng(SEED)
        return scanopt.scan(gibbs_step, outputs_info=d["v0"],
                            non_sequences=[d["W"], d["bvis"], d["bhid"], rng],
                            n_steps=d["n_steps"], backend="numpy", exact_random=exact_random,
                            **extra)

    if keep_all:
        return call

    # Only the last sample is needed: ask for keep="last", or keep all and take the last where
    # this scanopt does not accept the option (decided on the first call, reported as a note).
    def run():
        if run.keep_last:
            try:
                return call(keep="last")
            except TypeError as err:
                if isinstance(err, scanopt.ScanError):
                    raise
                run.keep_last = False
                run.note = f"keep='last' not accepted ({err}); kept all samples, took [-1]"
                print(f"    note: {run.note}")
        return call()[-1]
    run.keep_last = True
    run.note = "keep='last'"
    return run


# ---------------------------------------------------------------------------------------------
# Hand-optimised NumPy: input GEMM for all steps, merged U, buffers preallocated once and
# reused across steps and calls (out=), in-place sigmoid; Gibbs draws `rng.random(out=) < p`.
# Outputs are fresh arrays on every call (never a buffer that the next call overwrites).
# ---------------------------------------------------------------------------------------------

def sigmoid_inplace(z):
    np.negative(z, out=z)
    np.exp(z, out=z)
    z += 1
    np.reciprocal(z, out=z)


def hand_lstm(d):
    X, h0, c0 = d["X"], d["h0"], d["c0"]
    T, B, n_in = X.shape
    H = h0.shape[1]
    W_i, W_f, W_o, W_c, U_i, U_f, U_o, U_c, b_i, b_f, b_o, b_c = d["params"]
    xw = np.empty((T * B, 4 * H), F32)      # x_t @ W_all + b_all for every step
    z = np.empty((B, 4 * H), F32)           # gate pre-activations of one step: [i | f | o | g]
    ig = np.empty((B, H), F32)

    def run():
        # Merging is counted in the time: every system receives the same unmerged weights.
        W_all = np.concatenate([W_i, W_f, W_o, W_c], axis=1)
        U_all = np.concatenate([U_i, U_f, U_o, U_c], axis=1)
        b_all = np.concatenate([b_i, b_f, b_o, b_c])
        np.matmul(X.reshape(T * B, n_in), W_all, out=xw)
        np.add(xw, b_all, out=xw)
        xw_t = xw.reshape(T, B, 4 * H)
        hs = np.empty((T, B, H), F32)
        cs = np.empty((T, B, H), F32)
        h, c = h0, c0
        for t in range(T):
            np.matmul(h, U_all, out=z)
            np.add(z, xw_t[t], out=z)
            sigmoid_inplace(z[:, :3 * H])
            g = z[:, 3 * H:]
            np.tanh(g, out=g)
            i, f, o = z[:, :H], z[:, H:2 * H], z[:, 2 * H:3 * H]
            c_new, h_new = cs[t], hs[t]
            np.multiply(f, c, out=c_new)
            np.multiply(i, g, out=ig)
            c_new += ig
            np.tanh(c_new, out=h_new)
            h_new *= o
            h, c = h_new, c_new
        return hs, cs
    return run


def hand_gru(d):
    X, h0 = d["X"], d["h0"]
    T, B, n_in = X.shape
    H = h0.shape[1]
    W_z, W_r, W_h, U_z, U_r, U_h, b_z, b_r, b_h = d["params"]
    xw = np.empty((T * B, 3 * H), F32)      # x_t @ W_all + b_all for every step
    zr = np.empty((B, 2 * H), F32)          # [z | r] of one step
    rh = np.empty((B, H), F32)
    hh = np.empty((B, H), F32)

    def run():
        W_all = np.concatenate([W_z, W_r, W_h], axis=1)
        U_zr = np.concatenate([U_z, U_r], axis=1)
        b_all = np.concatenate([b_z, b_r, b_h])
        np.matmul(X.reshape(T * B, n_in), W_all, out=xw)
        np.add(xw, b_all, out=xw)
        xw_t = xw.reshape(T, B, 3 * H)
        hs = np.empty((T, B, H), F32)
        h = h0
        z, r = zr[:, :H], zr[:, H:]
        for t in range(T):
            np.matmul(h, U_zr, out=zr)
            np.add(zr, xw_t[t, :, :2 * H], out=zr)
            sigmoid_inplace(zr)
            np.multiply(r, h, out=rh)
            np.matmul(rh, U_h, out=hh)
            np.add(hh, xw_t[t, :, 2 * H:], out=hh)
            np.tanh(hh, out=hh)
            h_new = hs[t]                    # (1 - z) * h + z * hh = h + z * (hh - h)
            np.subtract(hh, h, out=hh)
            np.multiply(z, hh, out=hh)
            np.add(h, hh, out=h_new)
            h = h_new
        return hs
    return run


def hand_elman(d):
    X, h0, W, U, b = d["X"], d["h0"], d["W"], d["U"], d["b"]
    T, B, n_in = X.shape
    H = h0.shape[1]
    xw = np.empty((T * B, H), F32)

    def run():
        np.matmul(X.reshape(T * B, n_in), W, out=xw)
        np.add(xw, b, out=xw)
        xw_t = xw.reshape(T, B, H)
        hs = np.empty((T, B, H), F32)
        h = h0
        for t in range(T):
            h_new = hs[t]
            np.matmul(h, U, out=h_new)
            h_new += xw_t[t]
            np.tanh(h_new, out=h_new)
            h = h_new
        return hs
    return run


def hand_gibbs(d, keep_all):
    v0, W, bvis, bhid, n_steps = d["v0"], d["W"], d["bvis"], d["bhid"], d["n_steps"]
    WT = W.T
    h_shape = v0.shape[:-1] + W.shape[1:]
    hmean, u_h, h = (np.empty(h_shape, F32) for _ in range(3))
    vmean, u_v = (np.empty(v0.shape, F32) for _ in range(2))
    v_bufs = [np.empty(v0.shape, F32) for _ in range(2)]   # ping-pong when only the last is kept

    def run():
        rng = np.random.default_rng(SEED)
        samples = np.empty((n_steps,) + v0.shape, F32) if keep_all else None
        v = v0
        for t in range(n_steps):
            np.matmul(v, W, out=hmean)
            np.add(hmean, bhid, out=hmean)
            sigmoid_inplace(hmean)
            rng.random(out=u_h, dtype=F32)
            np.less(u_h, hmean, out=h)
            np.matmul(h, WT, out=vmean)
            np.add(vmean, bvis, out=vmean)
            sigmoid_inplace(vmean)
            rng.random(out=u_v, dtype=F32)
            v = samples[t] if keep_all else v_bufs[t % 2]
            np.less(u_v, vmean, out=v)
        return samples if keep_all else v.copy()
    return run


# ---------------------------------------------------------------------------------------------
# PyTensor scan (default mode: C backend; float32)
# ---------------------------------------------------------------------------------------------

def _pytensor():
    import pytensor
    import pytensor.tensor as pt
    pytensor.config.floatX = "float32"
    # PyTensor 3 warns that scan will stop returning the updates dict (the Gibbs chain needs it),
    warnings.filterwarnings("ignore", message="Scan return signature will change",
                            category=DeprecationWarning)
    # RandomStream is deprecated in PyTensor 3 but is the pattern of the Theano documentation.
    warnings.filterwarnings("ignore", message="RandomStream is deprecated", category=FutureWarning)
    return pytensor, pt


def _lstm_cell(x_t, h, c, params, sigmoid_fn, tanh_fn):
    W_i, W_f, W_o, W_c, U_i, U_f, U_o, U_c, b_i, b_f, b_o, b_c = params
    i = sigmoid_fn(x_t @ W_i + h @ U_i + b_i)
    f = sigmoid_fn(x_t @ W_f + h @ U_f + b_f)
    o = sigmoid_fn(x_t @ W_o + h @ U_o + b_o)
    g = tanh_fn(x_t @ W_c + h @ U_c + b_c)
    c = f * c + i * g
    return o * tanh_fn(c), c


def pytensor_lstm(d):
    pytensor, pt = _pytensor()
    X = pt.tensor3("X", dtype="float32")
    h0 = pt.matrix("h0", dtype="float32")
    c0 = pt.matrix("c0", dtype="float32")
    params = [pt.matrix(f"W{k}", dtype="float32") for k in range(8)]
    params += [pt.vector(f"b{k}", dtype="float32") for k in range(4)]

    def step(x_t, h, c, *p):
        return _lstm_cell(x_t, h, c, p, pt.sigmoid, pt.tanh)

    (hs, cs), _ = pytensor.scan(step, sequences=X, outputs_info=[h0, c0], non_sequences=params)
    f = pytensor.function([X, h0, c0, *params], [hs, cs])
    args = [d["X"], d["h0"], d["c0"], *d["params"]]
    return lambda: tuple(f(*args))


def _gru_cell(x_t, h, params, sigmoid_fn, tanh_fn):
    W_z, W_r, W_h, U_z, U_r, U_h, b_z, b_r, b_h = params
    z = sigmoid_fn(x_t @ W_z + h @ U_z + b_z)
    r = sigmoid_fn(x_t @ W_r + h @ U_r + b_r)
    h_tilde = tanh_fn(x_t @ W_h + (r * h) @ U_h + b_h)
    return (1 - z) * h + z * h_tilde


def pytensor_gru(d):
    pytensor, pt = _pytensor()
    X = pt.tensor3("X", dtype="float32")
    h0 = pt.matrix("h0", dtype="float32")
    params = [pt.matrix(f"W{k}", dtype="float32") for k in range(6)]
    params += [pt.vector(f"b{k}", dtype="float32") for k in range(3)]
    hs, _ = pytensor.scan(lambda x_t, h, *p: _gru_cell(x_t, h, p, pt.sigmoid, pt.tanh),
                          sequences=X, outputs_info=h0, non_sequences=params)
    f = pytensor.function([X, h0, *params], hs)
    return lambda: f(d["X"], d["h0"], *d["params"])


def pytensor_elman(d):
    pytensor, pt = _pytensor()
    X = pt.tensor3("X", dtype="float32")
    h0 = pt.matrix("h0", dtype="float32")
    W, U = pt.matrix("W", dtype="float32"), pt.matrix("U", dtype="float32")
    b = pt.vector("b", dtype="float32")
    hs, _ = pytensor.scan(lambda x_t, h, W, U, b: pt.tanh(x_t @ W + h @ U + b),
                          sequences=X, outputs_info=h0, non_sequences=[W, U, b])
    f = pytensor.function([X, h0, W, U, b], hs)
    return lambda: f(d["X"], d["h0"], d["W"], d["U"], d["b"])


def pytensor_gibbs(d, keep_all):
    pytensor, pt = _pytensor()
    from pytensor.tensor.random.utils import RandomStream
    srng = RandomStream(SEED)
    v0 = pt.tensor("v0", dtype="float32", shape=(None,) * d["v0"].ndim)
    W = pt.matrix("W", dtype="float32")
    bvis, bhid = pt.vector("bvis", dtype="float32"), pt.vector("bhid", dtype="float32")

    def step(v, W, bvis, bhid):
        h = srng.binomial(1, pt.sigmoid(v @ W + bhid)).astype("float32")
        return srng.binomial(1, pt.sigmoid(h @ W.T + bvis)).astype("float32")

    vs, updates = pytensor.scan(step, outputs_info=v0, non_sequences=[W, bvis, bhid],
                                n_steps=d["n_steps"])
    f = pytensor.function([v0, W, bvis, bhid], vs if keep_all else vs[-1], updates=updates)
    return lambda: f(d["v0"], d["W"], d["bvis"], d["bhid"])


# ---------------------------------------------------------------------------------------------
# JAX lax.scan under jax.jit (float32, CPU unless JAX finds an accelerator)
# ---------------------------------------------------------------------------------------------

def jax_lstm(d):
    import jax
    import jax.numpy as jnp

    @jax.jit
    def f(X, h0, c0, params):
        def step(carry, x_t):
            h, c = _lstm_cell(x_t, *carry, params, jax.nn.sigmoid, jnp.tanh)
            return (h, c), (h, c)
        return jax.lax.scan(step, (h0, c0), X)[1]

    args = jax.device_put((d["X"], d["h0"], d["c0"], d["params"]))
    return lambda: jax.block_until_ready(f(*args))


def jax_gru(d):
    import jax
    import jax.numpy as jnp

    @jax.jit
    def f(X, h0, params):
        def step(h, x_t):
            h = _gru_cell(x_t, h, params, jax.nn.sigmoid, jnp.tanh)
            return h, h
        return jax.lax.scan(step, h0, X)[1]

    args = jax.device_put((d["X"], d["h0"], d["params"]))
    return lambda: jax.block_until_ready(f(*args))


def jax_elman(d):
    import jax
    import jax.numpy as jnp

    @jax.jit
    def f(X, h0, W, U, b):
        def step(h, x_t):
            h = jnp.tanh(x_t @ W + h @ U + b)
            return h, h
        return jax.lax.scan(step, h0, X)[1]

    args = jax.device_put((d["X"], d["h0"], d["W"], d["U"], d["b"]))
    return lambda: jax.block_until_ready(f(*args))


def jax_gibbs(d, keep_all):
    import jax
    import jax.numpy as jnp
    n_steps = d["n_steps"]

    @jax.jit
    def f(v0, key, W, bvis, bhid):
        def step(carry, _):
            v, key = carry
            key, k_h, k_v = jax.random.split(key, 3)
            h = jax.random.bernoulli(k_h, jax.nn.sigmoid(v @ W + bhid)).astype(jnp.float32)
            v = jax.random.bernoulli(k_v, jax.nn.sigmoid(h @ W.T + bvis)).astype(jnp.float32)
            return (v, key), (v if keep_all else None)
        (v, _), vs = jax.lax.scan(step, (v0, key), None, length=n_steps)
        return vs if keep_all else v

    args = jax.device_put((d["v0"], jax.random.PRNGKey(SEED), d["W"], d["bvis"], d["bhid"]))
    return lambda: jax.block_until_ready(f(*args))


# ---------------------------------------------------------------------------------------------
# Checks against the plain loop
# ---------------------------------------------------------------------------------------------

def check_close(got, ref):
    """Deterministic workloads: equal within float32 tolerance."""
    got = [np.asarray(g) for g in (got if isinstance(got, (tuple, list)) else [got])]
    ref = list(ref) if isinstance(ref, (tuple, list)) else [ref]
    assert len(got) == len(ref), f"{len(got)} outputs, expected {len(ref)}"
    worst = 0.0
    for k, (g, r) in enumerate(zip(got, ref)):
        assert g.shape == r.shape, f"output {k}: shape {g.shape}, expected {r.shape}"
        assert g.dtype == r.dtype, f"output {k}: dtype {g.dtype}, expected {r.dtype}"
        np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-5, err_msg=f"output {k}")
        worst = max(worst, float(np.max(np.abs(g - r))))
    return f"max abs diff {worst:.1e}"


def check_samples(got, ref):
    """Gibbs with another random stream: same shape and dtype, binary, similar mean."""
    got = np.asarray(got)
    assert got.shape == ref.shape, f"shape {got.shape}, expected {ref.shape}"
    assert got.dtype == ref.dtype, f"dtype {got.dtype}, expected {ref.dtype}"
    assert np.isin(got, (0, 1)).all(), "samples are not all 0 or 1"
    diff = abs(float(got.mean()) - float(ref.mean()))
    assert diff < 0.02, f"mean {got.mean():.4f}, plain loop {ref.mean():.4f}"
    return f"mean {got.mean():.4f} (plain {ref.mean():.4f})"


def check_equal(got, ref):
    """exact_random=True: bit-for-bit the plain loop's samples."""
    got = np.asarray(got)
    assert got.shape == ref.shape and got.dtype == ref.dtype, \
        f"{got.dtype}{list(got.shape)}, expected {ref.dtype}{list(ref.shape)}"
    assert np.array_equal(got, ref), f"{int((got != ref).sum())} values differ from the plain loop"
    return "bit-for-bit equal"


# ---------------------------------------------------------------------------------------------
# Workloads
# ---------------------------------------------------------------------------------------------

def numba_backend(factory):
    return lambda d: factory(d, backend="numba")


def workloads():
    """name -> (description, data factory, [(system, factory(data) -> run, check)])."""
    def lstm(T, B, n_in, H):
        return (f"LSTM unmerged T{T} B{B} I{n_in} H{H} float32", lambda: lstm_data(T, B, n_in, H),
                [(PLAIN, plain_lstm, check_close), (SCANOPT, scanopt_lstm, check_close),
                 (SCANOPT_NUMBA, numba_backend(scanopt_lstm), check_close),
                 (HAND, hand_lstm, check_close), (PYTENSOR, pytensor_lstm, check_close),
                 (JAX, jax_lstm, check_close)])

    def gibbs(batch, n_steps, keep_all):
        def bind(factory, **kw):
            return lambda d: factory(d, keep_all=keep_all, **kw)
        systems = [(PLAIN, bind(plain_gibbs), check_samples),
                   (SCANOPT, bind(scanopt_gibbs), check_samples)]
        if batch is None:
            systems.append((SCANOPT_EXACT, bind(scanopt_gibbs, exact_random=True), check_equal))
        systems += [(HAND, bind(hand_gibbs), check_samples),
                    (PYTENSOR, bind(pytensor_gibbs), check_samples),
                    (JAX, bind(jax_gibbs), check_samples)]
        what = "single vector" if batch is None else f"batch {batch}"
        kept = "all samples kept" if keep_all else "last sample kept"
        return (f"RBM Gibbs 784x500 {what} N{n_steps} ({kept})",
                lambda: gibbs_data(batch, n_steps), systems)

    return {
        "lstm-t100-b16-h128": lstm(100, 16, 128, 128),
        "lstm-t50-b64-i256-h512": lstm(50, 64, 256, 512),
        "gibbs-vector-n1000": gibbs(None, 1000, keep_all=True),
        "gibbs-batch64-n200": gibbs(64, 200, keep_all=False),
        "gru-t100-b16-h128": ("GRU unmerged T100 B16 I128 H128 float32",
                              lambda: gru_data(100, 16, 128, 128),
                              [(PLAIN, plain_gru, check_close), (SCANOPT, scanopt_gru, check_close),
                               (SCANOPT_NUMBA, numba_backend(scanopt_gru), check_close),
                               (HAND, hand_gru, check_close), (PYTENSOR, pytensor_gru, check_close),
                               (JAX, jax_gru, check_close)]),
        "elman-t100-b16-h128": ("Elman RNN T100 B16 H128 float32",
                                lambda: elman_data(100, 16, 128, 128),
                                [(PLAIN, plain_elman, check_close),
                                 (SCANOPT, scanopt_elman, check_close),
                                 (SCANOPT_NUMBA, numba_backend(scanopt_elman), check_close),
                                 (HAND, hand_elman, check_close),
                                 (PYTENSOR, pytensor_elman, check_close),
                                 (JAX, jax_elman, check_close)]),
    }


def wanted(system, words):
    """Whether ``--systems`` selects ``system``: its name contains a word, and no ``-word``."""
    name = system.lower()
    if any(w[1:] in name for w in words if w.startswith("-")):
        return False
    included = [w for w in words if not w.startswith("-")]
    return not included or any(w in name for w in included)


def run_workload(name, description, make_data, systems, warmup, repeat, wanted_systems):
    print(f"\n== {name}: {description}")
    data = make_data()
    rows, runs = [], {}
    reference = None
    for system, factory, check in systems:
        if system != PLAIN and not wanted(system, wanted_systems):
            continue
        row = dict(workload=name, system=system, status="ok")
        rows.append(row)
        try:
            start = time.perf_counter()
            run = factory(data)
            result = run()                       # first call: builds / compiles
            row["first_call_ms"] = (time.perf_counter() - start) * 1e3
        except ImportError as err:
            row.update(status="skipped", detail=str(err))
            print(f"  {system:22s} skipped: {err}")
            continue
        except Exception as err:                 # report it, keep benchmarking the others
            row.update(status="error", detail=f"{type(err).__name__}: {err}")
            print(f"  {system:22s} ERROR {type(err).__name__}:\n{err}")
            continue
        if getattr(run, "note", None):
            row["note"] = run.note
        if system == PLAIN:
            reference = result
        try:
            row["check"] = check(result, reference)
        except AssertionError as err:
            row.update(status="wrong", check=str(err).strip())
            print(f"  {system:22s} WRONG RESULT: {str(err).strip()}")
        print(f"  {system:22s} first call {row['first_call_ms']:9.1f} ms   {row.get('check', '')}")
        if system == SCANOPT_NUMBA and row.get("note"):
            print(f"    note: {row['note']}")
        runs[system] = run
        for _ in range(warmup):
            run()

    times = {system: [] for system in runs}
    for _ in range(repeat):                      # round-robin, so drift hits every system alike
        for system, run in runs.items():
            start = time.perf_counter()
            run()
            times[system].append((time.perf_counter() - start) * 1e3)

    for row in rows:
        if row["system"] in times:
            row["times_ms"] = [round(t, 4) for t in times[row["system"]]]
            row["median_ms"] = statistics.median(times[row["system"]])
    medians = {row["system"]: row["median_ms"] for row in rows if "median_ms" in row}
    for row in rows:
        if "median_ms" in row:
            if PLAIN in medians:
                row["plain_over_system"] = medians[PLAIN] / row["median_ms"]
            if SCANOPT in medians:
                row["system_over_scanopt"] = row["median_ms"] / medians[SCANOPT]
    return rows


# ---------------------------------------------------------------------------------------------
# Compile latency (fresh subprocesses sharing one new, empty SCANOPT_CACHE_DIR)
# ---------------------------------------------------------------------------------------------

def compile_child():
    """Runs in a fresh interpreter: times `import scanopt` and the first LSTM call; prints JSON."""
    d = lstm_data(100, 16, 128, 128)
    start = time.perf_counter()
    import scanopt
    import_s = time.perf_counter() - start
    xdsl_after_import = "xdsl" in sys.modules
    start = time.perf_counter()
    scanopt.scan(lstm_step, sequences=d["X"], outputs_info=[d["h0"], d["c0"]],
                 non_sequences=d["params"], backend="numpy")
    first_call_s = time.perf_counter() - start
    xdsl_after_call = "xdsl" in sys.modules
    start = time.perf_counter()
    scanopt.scan(lstm_step, sequences=d["X"], outputs_info=[d["h0"], d["c0"]],
                 non_sequences=d["params"], backend="numpy")
    second_call_s = time.perf_counter() - start
    print(json.dumps(dict(import_s=import_s, first_call_s=first_call_s,
                          second_call_s=second_call_s, xdsl_after_import=xdsl_after_import,
                          xdsl_after_call=xdsl_after_call)))


def measure_compile_latency():
    print("\n== compile: first LSTM (T100 B16 H128) call in a fresh process")
    scanopt, why = load_scanopt()
    if scanopt is None:
        print(f"  skipped: scanopt {why}")
        return dict(status="skipped", detail=why)
    cache_dir = tempfile.mkdtemp(prefix="scanopt-bench-cache-")
    env = dict(os.environ, SCANOPT_CACHE_DIR=cache_dir)
    report = dict(status="ok", cache_dir_was_empty=True)
    try:
        for label in ("empty_cache", "disk_cache"):
            proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--compile-child"],
                                  env=env, capture_output=True, text=True, timeout=600)
            if proc.returncode != 0:
                print(f"  {label}: child failed (exit {proc.returncode}):\n{proc.stderr}")
                report.update(status="error", detail=proc.stderr[-4000:])
                break
            child = json.loads(proc.stdout.strip().splitlines()[-1])
            if label == "empty_cache":
                child["cache_files"] = sum(len(files) for _, _, files in os.walk(cache_dir))
            report[label] = child
            print(f"  {label:12s}: first call {child['first_call_s']:7.3f} s, "
                  f"second call {child['second_call_s'] * 1e3:7.2f} ms, "
                  f"import scanopt {child['import_s']:6.3f} s, "
                  f"xdsl imported after the call: {child['xdsl_after_call']}")
        if report.get("disk_cache", {}).get("xdsl_after_call"):
            print("  NOTE: the call served from the disk cache imported xDSL "
                  "(DESIGN.md: a cached call must not)")
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)
    return report


# ---------------------------------------------------------------------------------------------
# Machine information, table, main
# ---------------------------------------------------------------------------------------------

def _version(dist):
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_info():
    info = dict(platform=platform.platform(), machine=platform.machine(),
                python=platform.python_version(), cpu_count=os.cpu_count(),
                numpy=np.__version__,
                versions={k: _version(k) for k in ("scanopt", "xdsl", "jax", "jaxlib", "pytensor")})
    if hasattr(os, "sched_getaffinity"):
        info["cpus_usable"] = len(os.sched_getaffinity(0))
    try:
        with open("/proc/cpuinfo") as fh:
            info["cpu"] = next(line.split(":", 1)[1].strip() for line in fh
                               if line.startswith("model name"))
    except (OSError, StopIteration):
        info["cpu"] = platform.processor()
    try:
        import threadpoolctl
        info["blas"] = [{k: p.get(k) for k in ("internal_api", "version", "num_threads",
                                                "threading_layer", "architecture")}
                        for p in threadpoolctl.threadpool_info()]
    except ImportError:
        try:
            blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
            info["blas"] = [{k: blas.get(k) for k in ("name", "version", "openblas configuration")}]
        except Exception as err:                 # show_config's layout varies across versions
            info["blas"] = f"unknown ({err})"
    return info


def print_machine_info(info):
    print("Machine:")
    print(f"  {info['platform']}, {info.get('cpu')}, cpu_count={info['cpu_count']}"
          f"{', usable=' + str(info['cpus_usable']) if 'cpus_usable' in info else ''}")
    print(f"  Python {info['python']}, numpy {info['numpy']}, "
          + ", ".join(f"{k} {v}" for k, v in info["versions"].items() if v))
    blas = info["blas"]
    if isinstance(blas, list):
        for entry in blas:
            print("  BLAS: " + ", ".join(f"{k}={v}" for k, v in entry.items() if v is not None))
    else:
        print(f"  BLAS: {blas}")


def _fmt(x, spec, suffix=""):
    return "-" if x is None else f"{x:{spec}}{suffix}"


def print_table(rows):
    print("\nratio vs plain = plain loop time / system time (higher is faster);"
          " scanopt vs system = system time / scanopt time (above 1: scanopt is faster)")
    header = f"{'workload':24s} {'system':22s} {'median ms':>10s} {'vs plain':>9s} {'scanopt vs it':>14s}"
    print(header)
    print("-" * len(header))
    for row in rows:
        if "median_ms" not in row:
            print(f"{row['workload']:24s} {row['system']:22s} {row['status']:>10s}")
            continue
        status = "" if row["status"] == "ok" else f"  ({row['status'].upper()})"
        print(f"{row['workload']:24s} {row['system']:22s} {row['median_ms']:10.2f} "
              f"{_fmt(row.get('plain_over_system'), '9.2f', 'x')} "
              f"{_fmt(row.get('system_over_scanopt'), '13.2f', 'x')}{status}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, help="timed calls per system (default 7, --quick 3)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 3 repeats, no extra warm-up")
    parser.add_argument("--only", action="append", default=[], metavar="NAME",
                        help="run only workloads whose name contains NAME (comma-separated or "
                             "repeated; 'compile' selects the compile-latency measurement)")
    parser.add_argument("--systems", default="", metavar="NAMES",
                        help="comma-separated words: run only systems whose name contains one "
                             "and none of the words written -word (the plain loop always runs), "
                             "e.g. --systems scanopt,hand,-numba")
    parser.add_argument("--json", default=str(DEFAULT_JSON), metavar="PATH",
                        help=f"where to write the results (default {DEFAULT_JSON})")
    parser.add_argument("--compile-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.compile_child:
        compile_child()
        return 0

    repeat = args.repeat or (3 if args.quick else 7)
    warmup = 0 if args.quick else 1
    only = [w.strip() for item in args.only for w in item.split(",") if w.strip()]
    wanted_systems = [w.strip().lower() for w in args.systems.split(",") if w.strip()]

    def selected(name):
        return not only or any(w in name for w in only)

    info = machine_info()
    print_machine_info(info)
    scanopt, why = load_scanopt()
    if scanopt is None:
        print(f"NOTE: scanopt {why}: its rows and the compile latency are skipped")
    print(f"Repeats: {repeat} timed calls per system after the first call and {warmup} warm-up")

    all_workloads = workloads()
    unknown = [w for w in only if w != "compile" and not any(w in n for n in all_workloads)]
    if unknown:
        parser.error(f"--only {','.join(unknown)} matches no workload "
                     f"(workloads: {', '.join(all_workloads)}, compile)")

    rows = []
    for name, (description, make_data, systems) in all_workloads.items():
        if selected(name):
            rows += run_workload(name, description, make_data, systems, warmup, repeat,
                                 wanted_systems)
    compile_report = measure_compile_latency() if selected("compile") else None

    if rows:
        print_table(rows)
    results = dict(machine=info, repeat=repeat, warmup=warmup, seed=SEED,
                   scanopt_available=scanopt is not None, results=rows,
                   compile_latency=compile_report)
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {path}")

    wrong = [f"{r['workload']} / {r['system']}" for r in rows if r["status"] in ("wrong", "error")]
    if wrong:
        print("FAILED (wrong result or error): " + "; ".join(wrong))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
