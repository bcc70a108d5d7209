"""Step functions and arguments for the CuPy backend's tests (LSTM, GRU, Elman, Gibbs), in a
real file so that scanopt can read their source. ``size="bench"`` gives the benchmark's shapes
(benchmarks/gpu.py), used where only types matter (kernel generation, NVRTC)."""

from __future__ import annotations

import numpy as np


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
    hh = np.tanh(x_t @ W_h + (r * h) @ U_h + b_h)
    return (1 - z) * h + z * hh


def elman_step(x_t, h, W, U, b):
    return np.tanh(x_t @ W + h @ U + b)


def gibbs_step(v, W, bvis, bhid, rng):
    hmean = sigmoid(v @ W + bhid)
    h = rng.binomial(1, hmean).astype(v.dtype)
    vmean = sigmoid(h @ W.T + bvis)
    return rng.binomial(1, vmean).astype(v.dtype)


def _normal(rng, *shape, scale=1.0, dtype=np.float32):
    return (scale * rng.standard_normal(shape)).astype(dtype)


def lstm_args(T=6, B=5, I=7, H=40, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return dict(sequences=_normal(rng, T, B, I, dtype=dtype),
                outputs_info=[_normal(rng, B, H, dtype=dtype), _normal(rng, B, H, dtype=dtype)],
                non_sequences=[_normal(rng, I, H, scale=I ** -0.5, dtype=dtype) for _ in range(4)]
                + [_normal(rng, H, H, scale=H ** -0.5, dtype=dtype) for _ in range(4)]
                + [_normal(rng, H, scale=0.1, dtype=dtype) for _ in range(4)])


def gru_args(T=6, B=5, I=7, H=40, seed=1):
    rng = np.random.default_rng(seed)
    return dict(sequences=_normal(rng, T, B, I), outputs_info=_normal(rng, B, H),
                non_sequences=[_normal(rng, I, H, scale=I ** -0.5) for _ in range(3)]
                + [_normal(rng, H, H, scale=H ** -0.5) for _ in range(3)]
                + [_normal(rng, H, scale=0.1) for _ in range(3)])


def elman_args(T=6, B=37, I=5, H=33, seed=2):
    rng = np.random.default_rng(seed)
    return dict(sequences=_normal(rng, T, B, I), outputs_info=_normal(rng, B, H),
                non_sequences=[_normal(rng, I, H, scale=I ** -0.5),
                               _normal(rng, H, H, scale=H ** -0.5), _normal(rng, H, scale=0.1)])


def gibbs_args(N=6, V=50, H=37, B=None, seed=3):
    rng = np.random.default_rng(seed)
    v0 = (rng.random((V,) if B is None else (B, V)) < 0.5).astype(np.float32)
    return dict(outputs_info=v0,
                non_sequences=[_normal(rng, V, H, scale=0.3), _normal(rng, V, scale=0.5),
                               _normal(rng, H, scale=0.5), np.random.default_rng(seed + 100)],
                n_steps=N)


CASES = {
    "lstm": (lstm_step, lstm_args),
    "gru": (gru_step, gru_args),
    "elman": (elman_step, elman_args),
    "gibbs": (gibbs_step, gibbs_args),
    "gibbs_batch": (gibbs_step, lambda: gibbs_args(B=9)),
}

# The benchmark's workloads (benchmarks/gpu.py): only their types are used on the CPU.
BENCH_CASES = {
    "lstm_T100_B16_H128": (lstm_step, lambda: lstm_args(T=2, B=16, I=128, H=128)),
    "lstm_T50_B64_I256_H512": (lstm_step, lambda: lstm_args(T=2, B=64, I=256, H=512)),
    "gru_T100_B16_H128": (gru_step, lambda: gru_args(T=2, B=16, I=128, H=128)),
    "elman_T100_B16_H128": (elman_step, lambda: elman_args(T=2, B=16, I=128, H=128)),
    "gibbs_vector_784x500": (gibbs_step, lambda: gibbs_args(N=2, V=784, H=500)),
    "gibbs_batch64_784x500": (gibbs_step, lambda: gibbs_args(N=2, V=784, H=500, B=64)),
}
