"""Bugs the differential fuzzer (tests/test_fuzz.py) found, each as a small step function
checked against the plain loop with every pass on and off (fuzz_steps.check_scan).

A test marked xfail(strict=True) is an open bug in scanopt; the fuzzer avoids its construct
while the bug is open (fuzz_steps.AVOID names the test). When the bug is fixed, remove the mark
and the AVOID entry.
"""

import numpy as np
import pytest

import fuzz_steps
from fuzz_steps import check_scan


def test_every_avoided_construct_has_its_regression_test():
    for construct, test in fuzz_steps.AVOID.items():
        assert test in globals(), f"AVOID[{construct!r}] names no test in this file: {test}"


@pytest.mark.parametrize("k", [2.0, 3, True], ids=["float", "int", "bool"])
def test_python_scalar_per_step_output_kept_last(k):
    def step(x_t, h, k):
        return h + x_t, k * 2

    check_scan(step, sequences=np.ones((2, 3)), outputs_info=[np.zeros(3), None],
               non_sequences=[k], keep="last")


@pytest.mark.parametrize("reduction", [np.sum, np.max])
def test_reduction_with_axis_on_a_scalar_sequence_slice(reduction):
    def vector_norm(v):  # written for vectors; NumPy also accepts axis=0 on a scalar
        return reduction(v * v, axis=0)

    def step(x_t, h):
        return h + vector_norm(h) + vector_norm(x_t)

    check_scan(step, sequences=np.linspace(-1.0, 1.0, 3), outputs_info=np.zeros(2))


RATE = 0.5


def test_stack_of_constant_python_scalars():
    def step(h):
        return h * np.stack([RATE, 1.0 - RATE])

    check_scan(step, outputs_info=np.ones(2), n_steps=3)


@pytest.mark.parametrize("k", [1.5, 2], ids=["float", "int"])
def test_reshape_of_a_python_scalar(k):
    def step(h, k):
        return h + np.reshape(k, -1)

    check_scan(step, outputs_info=np.zeros(1), non_sequences=[k], n_steps=2)


@pytest.mark.parametrize("keep", ["all", "last"])
@pytest.mark.parametrize("scale", [np.float32(2.0), np.array(2.0)], ids=["numpy", "0d"])
def test_per_step_output_from_the_transpose_of_a_scalar(scale, keep):
    def step(h, scale):
        return 0.5 * h, scale.T * 2.0

    check_scan(step, outputs_info=[np.ones(2), None], non_sequences=[scale], n_steps=2,
               keep=keep)


def test_temporary_used_with_its_own_transpose():
    def step(h):
        b = h * 2.0
        gram = b @ b.T
        a = np.exp(h)                # takes b's buffer
        h_new = np.tanh(h + h)       # the temporary h + h takes it too, overwriting a
        return h_new, np.mean(a), gram

    check_scan(step, outputs_info=[np.array([[0.5], [-0.25]]), None, None], n_steps=2)


def test_carry_updated_to_a_python_scalar():
    def step(h, x):
        return 0.1, x * h            # fed back as np.asarray(0.1): float64, as the initial h

    check_scan(step, outputs_info=[np.float64(0.1), None],
               non_sequences=[np.array([1.0, 3.0], np.float32)], n_steps=2)


@pytest.mark.parametrize("form", ["tuple", "list"])
def test_tuple_return_of_a_captured_constant(form):
    def tuple_step(x_t):
        return RATE,

    def list_step(x_t):
        return [RATE, 2 * RATE]

    check_scan(tuple_step if form == "tuple" else list_step, sequences=np.ones((3, 2)),
               outputs_info=[None] if form == "tuple" else [None, None])


def test_repeated_output_with_a_passthrough_carry():
    def step(h, previous):
        y = h * 2.0
        return y, y, h * 0.5, h      # previous <- h, as it is

    check_scan(step, outputs_info=[None, None, np.ones(1), np.zeros(1)], n_steps=2)
