"""Evaluating a polynomial, from Theano's scan tutorial, in NumPy with scanopt.

Theano's version scans over the coefficients and ``arange(max_coefficients_supported)`` together
(the loop stops at the shorter one), with ``outputs_info=None`` (nothing is fed back: a map),
and sums the terms afterwards:

    components, updates = theano.scan(
        fn=lambda coefficient, power, free_variable: coefficient * (free_variable ** power),
        outputs_info=None,
        sequences=[coefficients, theano.tensor.arange(max_coefficients_supported)],
        non_sequences=x)
    polynomial = components.sum()

Checks the tutorial's value (1 + 0*3 + 2*3**2 = 19) and a polynomial of 10 000 coefficients
against the plain loop; prints both times and exits non-zero on a mismatch.

    python examples/polynomial.py
"""

import sys

import numpy as np
from plain_vs_scanopt import compare_and_time

import scanopt

MAX_COEFFICIENTS_SUPPORTED = 10_000
N_COEFFICIENTS = 10_000


def term(coefficient, power, free_variable):
    return coefficient * (free_variable ** power)


def polynomial_scanopt(coefficients, x):
    components = scanopt.scan(term, sequences=[coefficients,
                                               np.arange(MAX_COEFFICIENTS_SUPPORTED)],
                              outputs_info=None, non_sequences=x)
    return components.sum()


def polynomial_plain(coefficients, x):
    # zip stops at the shorter sequence, as scan does
    components = [term(c, power, x)
                  for c, power in zip(coefficients, np.arange(MAX_COEFFICIENTS_SUPPORTED))]
    return np.stack(components).sum()


def main():
    tutorial = polynomial_scanopt(np.array([1.0, 0.0, 2.0]), 3.0)
    print(f"Theano tutorial: coefficients [1, 0, 2] at x = 3 give {tutorial}")
    if tutorial != 19.0:
        print("MISMATCH: expected 19.0")
        sys.exit(1)

    coefficients = np.random.default_rng(0).standard_normal(N_COEFFICIENTS)
    x = 0.999
    compare_and_time(
        f"\nPolynomial of {N_COEFFICIENTS} coefficients at x = {x}, float64 (a map: "
        "outputs_info=None)",
        lambda: polynomial_scanopt(coefficients, x), lambda: polynomial_plain(coefficients, x),
        ["the sum of the terms"], rtol=1e-12, atol=1e-12)


if __name__ == "__main__":
    main()
