"""Fibonacci numbers with output taps, as in Theano's scan documentation, with scanopt.

The step reads the output two steps back and one step back (``taps=[-2, -1]``); the initial
value holds those two values before the first step, oldest first, and the result leaves them
out. ``keep="last"`` returns only the final number and stores only the two values the taps
read. int64 holds the numbers exactly up to F(92).

Prints both times and exits non-zero if scanopt and the plain loop differ (bit for bit).

    python examples/fibonacci.py
"""

import sys

import numpy as np
from plain_vs_scanopt import compare_and_time

import scanopt

N_STEPS = 90


def fibonacci_step(f_tm2, f_tm1):
    return f_tm2 + f_tm1


FIRST_TWO = dict(initial=np.array([0, 1], dtype=np.int64), taps=[-2, -1])  # F(0), F(1)


def fibonacci_scanopt():
    return scanopt.scan(fibonacci_step, outputs_info=FIRST_TWO, n_steps=N_STEPS)


def fibonacci_plain():
    f_tm2, f_tm1 = FIRST_TWO["initial"]
    numbers = []
    for _ in range(N_STEPS):
        f_tm2, f_tm1 = f_tm1, fibonacci_step(f_tm2, f_tm1)
        numbers.append(f_tm1)
    return np.stack(numbers)


def main():
    (numbers,) = compare_and_time(
        f"Fibonacci with output taps [-2, -1], {N_STEPS} steps, int64", fibonacci_scanopt,
        fibonacci_plain, [f"F(2)..F({N_STEPS + 1})"])
    print(f"F(2)..F(11): {numbers[:10].tolist()}")
    last = scanopt.scan(fibonacci_step, outputs_info=FIRST_TWO, n_steps=N_STEPS, keep="last")
    print(f'keep="last": F({N_STEPS + 1}) = {last}')
    if last != numbers[-1] or numbers[:10].tolist() != [1, 2, 3, 5, 8, 13, 21, 34, 55, 89]:
        print("MISMATCH: wrong Fibonacci numbers")
        sys.exit(1)


if __name__ == "__main__":
    main()
