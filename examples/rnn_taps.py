"""The RNN with taps from Theano's scan documentation, in NumPy with scanopt.

    x(t) = tanh(W x(t-1) + W_in_1 u(t) + W_in_2 u(t-4) + W_feedback y(t-1))
    y(t) = W_out x(t-3)

The step reads the input sequence at two taps (``u[t-4]``, ``u[t]``: ``taps=[-4, 0]``) and
the state at two taps (``x[t-3]``, ``x[t-1]``: ``taps=[-3, -1]``, Theano's mit_sot), so ``x0``
holds the three states before the first step (oldest first) and the loop runs ``len(u) - 4``
steps. ``strict=True`` as in Theano's version: every weight is passed in ``non_sequences``.
Here each u(t), x(t) and y(t) is a batch of 16 rows.

Prints both times and exits non-zero if scanopt and the plain loop differ.

    python examples/rnn_taps.py
"""

import numpy as np
from plain_vs_scanopt import compare_and_time

import scanopt

T, B, N_IN, N_HIDDEN, N_OUT = 200, 16, 32, 64, 16


def one_step(u_tm4, u_t, x_tm3, x_tm1, y_tm1, W, W_in_1, W_in_2, W_feedback, W_out):
    x_t = np.tanh(x_tm1 @ W + u_t @ W_in_1 + u_tm4 @ W_in_2 + y_tm1 @ W_feedback)
    y_t = x_tm3 @ W_out
    return x_t, y_t


def make_data():
    rng = np.random.default_rng(0)

    def normal(*shape, scale=1.0):
        return (scale * rng.standard_normal(shape)).astype(np.float32)

    u = normal(T, B, N_IN)
    x0 = normal(3, B, N_HIDDEN, scale=0.1)  # x[-3], x[-2], x[-1]: it covers the oldest tap
    y0 = np.zeros((B, N_OUT), np.float32)   # y[-1]
    params = [normal(N_HIDDEN, N_HIDDEN, scale=N_HIDDEN ** -0.5),    # W
              normal(N_IN, N_HIDDEN, scale=N_IN ** -0.5),            # W_in_1
              normal(N_IN, N_HIDDEN, scale=N_IN ** -0.5),            # W_in_2
              normal(N_OUT, N_HIDDEN, scale=N_OUT ** -0.5),          # W_feedback
              normal(N_HIDDEN, N_OUT, scale=N_HIDDEN ** -0.5)]       # W_out
    return u, x0, y0, params


def rnn_scanopt(u, x0, y0, params):
    return scanopt.scan(one_step, sequences=dict(input=u, taps=[-4, 0]),
                        outputs_info=[dict(initial=x0, taps=[-3, -1]), y0],
                        non_sequences=params, strict=True)


def rnn_plain(u, x0, y0, params):
    x_past = list(x0)  # the states the taps can read, oldest first
    y = y0
    xs, ys = [], []
    for t in range(4, len(u)):
        x, y = one_step(u[t - 4], u[t], x_past[-3], x_past[-1], y, *params)
        x_past = x_past[1:] + [x]
        xs.append(x)
        ys.append(y)
    return np.stack(xs), np.stack(ys)


def main():
    u, x0, y0, params = make_data()
    x_vals, _ = compare_and_time(
        f"RNN with sequence taps [-4, 0] and output taps [-3, -1], T={T} B={B} in={N_IN} "
        f"hidden={N_HIDDEN} out={N_OUT}, float32",
        lambda: rnn_scanopt(u, x0, y0, params), lambda: rnn_plain(u, x0, y0, params),
        ["x_vals", "y_vals"], rtol=1e-4, atol=1e-5)
    print(f"{len(x_vals)} steps from {len(u)} inputs (taps [-4, 0] leave out the first 4)")


if __name__ == "__main__":
    main()
