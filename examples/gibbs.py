"""RBM Gibbs chain from Theano's "Optimizing Scan performance" page, compiled with scanopt.

Version One uses W, bvis and bhid from the enclosing scope; Version Two passes them as
non_sequences. With exact_random=True both must give, bit for bit, the samples of the plain
Python loop (a fresh generator with the same seed for every run). Prints the three times and
exits non-zero on a mismatch.

    python examples/gibbs.py
"""

import statistics
import sys
import time

import numpy as np

import scanopt

N_VISIBLE = 784
N_HIDDEN = 500
N_STEPS = 1000
SEED = 1234
REPEAT = 5


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def make_rbm():
    """RBM parameters and a starting visible sample, all float32."""
    rng = np.random.default_rng(0)
    W = rng.normal(0.0, 0.05, size=(N_VISIBLE, N_HIDDEN)).astype(np.float32)
    bvis = rng.normal(0.0, 0.5, size=N_VISIBLE).astype(np.float32)
    bhid = rng.normal(0.0, 0.5, size=N_HIDDEN).astype(np.float32)
    sample = (rng.random(N_VISIBLE) < 0.5).astype(np.float32)
    return W, bvis, bhid, sample


def median_time(run, repeat=REPEAT):
    """Median wall time of `repeat` calls of run(), and the last result."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main():
    W, bvis, bhid, sample = make_rbm()

    # Version One: W, bvis and bhid come from the enclosing scope; only the state (and the
    # generator, so that every run can start from a fresh one) is passed.
    def one_step_v1(vsample, rng):
        hmean = sigmoid(vsample @ W + bhid)
        hsample = rng.binomial(1, hmean).astype(vsample.dtype)
        vmean = sigmoid(hsample @ W.T + bvis)
        return rng.binomial(1, vmean).astype(vsample.dtype)

    # Version Two: the same body, with the parameters passed explicitly as non_sequences.
    def one_step_v2(vsample, W, bvis, bhid, rng):
        hmean = sigmoid(vsample @ W + bhid)
        hsample = rng.binomial(1, hmean).astype(vsample.dtype)
        vmean = sigmoid(hsample @ W.T + bvis)
        return rng.binomial(1, vmean).astype(vsample.dtype)

    def run_plain():
        rng = np.random.default_rng(SEED)
        v = sample
        samples = []
        for _ in range(N_STEPS):
            v = one_step_v2(v, W, bvis, bhid, rng)
            samples.append(v)
        return np.stack(samples)

    def run_v1():
        rng = np.random.default_rng(SEED)
        return scanopt.scan(one_step_v1, outputs_info=sample, non_sequences=[rng],
                            n_steps=N_STEPS, exact_random=True)

    def run_v2():
        rng = np.random.default_rng(SEED)
        return scanopt.scan(one_step_v2, outputs_info=sample, non_sequences=[W, bvis, bhid, rng],
                            n_steps=N_STEPS, exact_random=True)

    print(f"RBM Gibbs chain: {N_VISIBLE} visible x {N_HIDDEN} hidden, float32, "
          f"{N_STEPS} steps on one vector, exact_random=True")

    # The first scanopt call compiles (or loads from the disk cache); time it on its own.
    start = time.perf_counter()
    first_v1 = run_v1()
    compile_v1 = time.perf_counter() - start
    start = time.perf_counter()
    first_v2 = run_v2()
    compile_v2 = time.perf_counter() - start

    t_plain, expected = median_time(run_plain)
    t_v1, samples_v1 = median_time(run_v1)
    t_v2, samples_v2 = median_time(run_v2)

    print(f"first call (compile): version one {compile_v1 * 1e3:8.1f} ms, "
          f"version two {compile_v2 * 1e3:8.1f} ms")
    print(f"plain Python loop   : {t_plain * 1e3:8.1f} ms  (median of {REPEAT})")
    print(f"scanopt version one : {t_v1 * 1e3:8.1f} ms  ({t_plain / t_v1:.2f}x)")
    print(f"scanopt version two : {t_v2 * 1e3:8.1f} ms  ({t_plain / t_v2:.2f}x)")

    checks = [
        ("version one (first call)", first_v1),
        ("version two (first call)", first_v2),
        ("version one", samples_v1),
        ("version two", samples_v2),
    ]
    failed = False
    for name, got in checks:
        if got.shape != expected.shape or got.dtype != expected.dtype:
            print(f"MISMATCH: {name} returned {got.dtype}{list(got.shape)}, "
                  f"the plain loop {expected.dtype}{list(expected.shape)}")
            failed = True
        elif not np.array_equal(got, expected):
            first_step = int(np.argmax((got != expected).any(axis=1)))
            print(f"MISMATCH: {name} differs from the plain loop from step {first_step} on")
            failed = True
    if failed:
        sys.exit(1)
    print(f"OK: both versions are bit-for-bit equal to the plain loop "
          f"({expected.shape[0]} samples, mean activation {expected.mean():.3f})")


if __name__ == "__main__":
    main()
