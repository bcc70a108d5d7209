"""Newton's method to a tolerance with ``scanopt.until`` (Theano's ``theano.scan_module.until``).

Solves Kepler's equation ``E - e sin(E) = M`` for 100 000 mean anomalies M at once. The step
returns the new estimate and ``scanopt.until(condition)``: the loop stops after the first step
whose largest update is below the tolerance (that step included), and runs at most
``n_steps`` steps, as Theano's ``scan(..., n_steps=MAX_STEPS)`` with ``until`` does.

Prints both times and exits non-zero if scanopt and the plain loop differ (in the estimates or
in the number of steps).

    python examples/newton.py
"""

import numpy as np
from plain_vs_scanopt import compare_and_time

import scanopt

N, ECCENTRICITY, TOLERANCE, MAX_STEPS = 100_000, 0.6, 1e-12, 50


def newton_step(E, M, e, tol):
    E_new = E - (E - e * np.sin(E) - M) / (1 - e * np.cos(E))
    return E_new, scanopt.until(np.max(np.abs(E_new - E)) < tol)


def newton_scanopt(M):
    return scanopt.scan(newton_step, outputs_info=M, non_sequences=[M, ECCENTRICITY, TOLERANCE],
                        n_steps=MAX_STEPS)


def newton_plain(M):
    E = M
    estimates = []
    for _ in range(MAX_STEPS):
        E, stop = newton_step(E, M, ECCENTRICITY, TOLERANCE)  # stop: the scanopt.until object
        estimates.append(E)
        if stop.condition:
            break
    return np.stack(estimates)


def main():
    M = np.random.default_rng(0).uniform(0, 2 * np.pi, N)
    (estimates,) = compare_and_time(
        f"Newton's method on Kepler's equation, {N} values, e={ECCENTRICITY}, float64, "
        f"until the largest update < {TOLERANCE:g} (at most {MAX_STEPS} steps)",
        lambda: newton_scanopt(M), lambda: newton_plain(M), ["estimates"], rtol=1e-12,
        atol=1e-12)
    E = estimates[-1]
    residual = np.max(np.abs(E - ECCENTRICITY * np.sin(E) - M))
    print(f"stopped after {len(estimates)} of at most {MAX_STEPS} steps; "
          f"largest residual {residual:.1e}")


if __name__ == "__main__":
    main()
