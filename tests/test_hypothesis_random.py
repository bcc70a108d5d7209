"""Property-based tests of random draws: with ``exact_random=True`` the compiled loop, passes on,
makes the same generator calls in the same order as the plain loop — results bit-for-bit equal
and the generators end in the same state — whatever the passes move around the draws."""

import textwrap

import numpy as np
import pytest
from hypothesis import given, note, settings
from hypothesis import strategies as st

import scanopt
from conftest import HYPOTHESIS_SETTINGS, generated_module, plain_loop

DRAWS = [
    "rng.random(size=({B}, {D}))",
    "rng.standard_normal(size=({B}, {D}))",
    "rng.uniform(-1.0, 1.0, size=({B}, {D}))",
    "rng.normal(h, 0.5)",
    "rng.normal(0.0, 1.0, size=({D},))",
    "rng.binomial(1, 1 / (1 + np.exp(-h))).astype(h.dtype)",
    "rng.binomial(1, 1 / (1 + np.exp(-(x_t @ W)))).astype(h.dtype)",
]


@st.composite
def random_programs(draw):
    B, D = draw(st.integers(1, 3)), draw(st.integers(1, 4))
    lines, names = [], []
    for k in range(draw(st.integers(1, 4))):
        expr = draw(st.sampled_from(DRAWS)).format(B=B, D=D)
        lines.append(f"d{k} = {expr}")
        names.append(f"d{k}")
        if draw(st.booleans()):
            lines.append(f"m{k} = x_t @ W + {names[-1]}")  # work that scan-push-out-seq may move
            names[-1] = f"m{k}"
    total = " + ".join(names)
    lines.append(f"h_new = np.tanh(0.5 * h + 0.1 * ({total}))")
    returned = ["h_new"]
    if draw(st.booleans()):
        returned.append(f"{names[0]} * 2.0")
    lines.append("return " + ", ".join(returned))
    body = textwrap.indent("\n".join(lines), "    ")
    return dict(source=f"import numpy as np\n\n\ndef step(x_t, h, W, rng):\n{body}\n",
                B=B, D=D, outputs=len(returned), T=draw(st.integers(0, 5)),
                go_backwards=draw(st.booleans()), keep=draw(st.sampled_from(["all", "last"])),
                seed=draw(st.integers(0, 2**32 - 1)))


@pytest.fixture(scope="module")
def gen_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("hypothesis_random")


def run_case(case, directory):
    note(case["source"])
    B, D, T = case["B"], case["D"], case["T"]
    data = np.random.default_rng(case["seed"])
    X, h0 = data.standard_normal((T, B, D)), data.standard_normal((B, D))
    W = data.standard_normal((D, D)) * 0.5
    outputs_info = [h0] + [None] * (case["outputs"] - 1)
    with generated_module(case["source"], directory, "_hyp_rng") as module:
        rng_loop, rng_scan = np.random.default_rng(7), np.random.default_rng(7)
        expected = plain_loop(module.step, sequences=X, outputs_info=outputs_info,
                              non_sequences=[W, rng_loop], go_backwards=case["go_backwards"])
        if T == 0 and case["keep"] == "last" and case["outputs"] > 1:
            return  # no last value of a per-step output after zero steps (a ScanValueError)
        actual = scanopt.scan(module.step, sequences=X, outputs_info=outputs_info,
                              non_sequences=[W, rng_scan], go_backwards=case["go_backwards"],
                              exact_random=True, keep=case["keep"])
        expected = expected if isinstance(expected, list) else [expected]
        actual = actual if isinstance(actual, list) else [actual]
        if case["keep"] == "last":
            expected = [e[-1] if T else h0 for e in expected]
        for a, e in zip(actual, expected):
            np.testing.assert_array_equal(a, e)
        assert rng_scan.bit_generator.state == rng_loop.bit_generator.state


_SETTINGS = HYPOTHESIS_SETTINGS


@settings(max_examples=25, **_SETTINGS)
@given(case=random_programs())
def test_exact_random_draws_are_the_plain_loops(gen_dir, case):
    run_case(case, gen_dir)


@pytest.mark.slow
@settings(max_examples=300, **_SETTINGS)
@given(case=random_programs())
def test_exact_random_draws_are_the_plain_loops_many(gen_dir, case):
    run_case(case, gen_dir)
