"""What the Theano-tutorial examples share: run scanopt and the plain loop, compare, time.

Each example (polynomial.py, rnn_taps.py, fibonacci.py, newton.py) writes its step function, the
scanopt call and the plain Python loop it stands for, then calls ``compare_and_time``: it prints
the first call's time (compile or disk cache), checks every output against the plain loop
(exits with status 1 on a mismatch), then prints the median times and the speed-up.
"""

import statistics
import sys
import time

import numpy as np

WARMUP, REPEAT = 2, 10


def median_time(run):
    for _ in range(WARMUP):
        run()
    times = []
    for _ in range(REPEAT):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def as_outputs(result):
    return list(result) if isinstance(result, (list, tuple)) else [result]


def compare_and_time(title, run_scanopt, run_plain, names, *, rtol=0.0, atol=0.0):
    """Compare ``run_scanopt()`` with ``run_plain()`` output by output (same shapes and dtypes,
    values within rtol/atol; 0 means bit-for-bit), exit 1 on a mismatch, print the times.
    Returns scanopt's outputs."""
    print(title)
    start = time.perf_counter()
    got = as_outputs(run_scanopt())
    print(f"first scanopt call (compile or disk cache): "
          f"{(time.perf_counter() - start) * 1e3:.1f} ms")
    expected = as_outputs(run_plain())
    try:
        assert len(got) == len(expected), f"{len(got)} outputs, expected {len(expected)}"
        for name, g, e in zip(names, got, expected):
            g, e = np.asarray(g), np.asarray(e)
            assert g.shape == e.shape, f"{name}: shape {g.shape}, expected {e.shape}"
            assert g.dtype == e.dtype, f"{name}: dtype {g.dtype}, expected {e.dtype}"
            np.testing.assert_allclose(g, e, rtol=rtol, atol=atol, err_msg=f"output {name}")
    except AssertionError as err:
        print(f"MISMATCH between scanopt and the plain loop:\n{err}")
        sys.exit(1)

    t_plain = median_time(run_plain)
    t_scanopt = median_time(run_scanopt)
    print(f"plain Python loop: {t_plain * 1e3:8.3f} ms  (median of {REPEAT} after {WARMUP} "
          "warm-up)")
    print(f"scanopt          : {t_scanopt * 1e3:8.3f} ms")
    print(f"speed-up         : {t_plain / t_scanopt:8.2f}x")
    tolerance = "bit for bit" if rtol == atol == 0 else f"rtol {rtol:g}, atol {atol:g}"
    print(f"OK: the same as the plain loop ({', '.join(names)}; {tolerance})")
    return got
