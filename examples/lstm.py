"""An LSTM written the way users write it (four gates, eight small matmuls per step), compiled
with scanopt and compared with the plain Python loop.

scanopt should turn it into what the hand-optimised deeplearning.net lstm.py does: one input
GEMM for all steps before the loop and one `h @ U_all` per step. Prints both times, the speed-up
and the start of the generated module; exits non-zero if the results differ.

    python examples/lstm.py
"""

import statistics
import sys
import time

import numpy as np

import scanopt

T, B, N_IN, N_HIDDEN = 100, 16, 128, 128
WARMUP, REPEAT = 2, 10


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


@scanopt.step
def lstm_step(x_t, h, c, W_i, W_f, W_o, W_c, U_i, U_f, U_o, U_c, b_i, b_f, b_o, b_c):
    i = sigmoid(x_t @ W_i + h @ U_i + b_i)
    f = sigmoid(x_t @ W_f + h @ U_f + b_f)
    o = sigmoid(x_t @ W_o + h @ U_o + b_o)
    g = np.tanh(x_t @ W_c + h @ U_c + b_c)
    c = f * c + i * g
    h = o * np.tanh(c)
    return h, c


def make_data():
    rng = np.random.default_rng(0)

    def normal(*shape, scale=1.0):
        return (scale * rng.standard_normal(shape)).astype(np.float32)

    X = normal(T, B, N_IN)
    h0 = np.zeros((B, N_HIDDEN), np.float32)
    c0 = np.zeros((B, N_HIDDEN), np.float32)
    Ws = [normal(N_IN, N_HIDDEN, scale=N_IN ** -0.5) for _ in range(4)]        # W_i, W_f, W_o, W_c
    Us = [normal(N_HIDDEN, N_HIDDEN, scale=N_HIDDEN ** -0.5) for _ in range(4)]  # U_i, U_f, U_o, U_c
    bs = [normal(N_HIDDEN, scale=0.1) for _ in range(4)]                        # b_i, b_f, b_o, b_c
    return X, h0, c0, Ws + Us + bs


def plain_loop(X, h0, c0, params):
    h, c = h0, c0
    hs, cs = [], []
    for x_t in X:
        h, c = lstm_step(x_t, h, c, *params)   # the decorated function still runs as plain Python
        hs.append(h)
        cs.append(c)
    return np.stack(hs), np.stack(cs)


def median_time(run):
    for _ in range(WARMUP):
        run()
    times = []
    for _ in range(REPEAT):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    X, h0, c0, params = make_data()
    scan_args = dict(sequences=X, outputs_info=[h0, c0], non_sequences=params)

    def run_scanopt():
        return lstm_step.scan(**scan_args)

    def run_plain():
        return plain_loop(X, h0, c0, params)

    print(f"LSTM (unmerged gates), T={T} B={B} in={N_IN} hidden={N_HIDDEN}, float32")
    start = time.perf_counter()
    hs, cs = run_scanopt()
    print(f"first scanopt call (compile or disk cache): {(time.perf_counter() - start) * 1e3:.1f} ms")

    hs_ref, cs_ref = run_plain()
    try:
        for name, got, ref in [("h", hs, hs_ref), ("c", cs, cs_ref)]:
            assert got.dtype == ref.dtype, f"{name}: dtype {got.dtype}, expected {ref.dtype}"
            np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5, err_msg=f"output {name}")
    except AssertionError as err:
        print(f"MISMATCH between scanopt and the plain loop:\n{err}")
        sys.exit(1)

    t_plain = median_time(run_plain)
    t_scanopt = median_time(run_scanopt)
    print(f"plain Python loop: {t_plain * 1e3:7.2f} ms  (median of {REPEAT} after {WARMUP} warm-up)")
    print(f"scanopt          : {t_scanopt * 1e3:7.2f} ms")
    print(f"speed-up         : {t_plain / t_scanopt:7.2f}x")
    print("OK: results match the plain loop (rtol 1e-4, atol 1e-5)")

    print("\nGenerated module (first 40 lines):")
    print("\n".join(lstm_step.source(**scan_args).splitlines()[:40]))


if __name__ == "__main__":
    main()
