"""Property-based tests aimed at the fusion passes: random gated recurrences (LSTM/GRU-like).

Each generated step has K gates ``act_k(x_t @ W_k + h @ U_k + b_k)`` (the shape scan-fuse-matmul,
scan-fuse-slices and scan-push-out-seq rewrite), combined into the new state; optionally a
per-step output ``h_new @ W_out`` (scan-sink-outputs) and ``keep="last"`` (scan-save-mem). The
compiled loop must equal the plain loop, with passes on and off (fuzz_steps.check_scan). The
general fuzzer (test_fuzz.py) rarely builds several gates that share operands: this one does.
"""

import textwrap

import numpy as np
import pytest
from hypothesis import given, note, settings
from hypothesis import strategies as st

from conftest import HYPOTHESIS_SETTINGS, generated_module
from fuzz_steps import check_scan

ACTIVATIONS = {
    "sigmoid": "1 / (1 + np.exp(-({})))",
    "tanh": "np.tanh({})",
    "relu": "np.minimum(np.maximum({}, 0.0), 3.0)",
    "none": "np.tanh({})",
}


@st.composite
def gated_programs(draw):
    k = draw(st.integers(1, 4))
    acts = [draw(st.sampled_from(sorted(ACTIVATIONS))) for _ in range(k)]
    orders = [draw(st.sampled_from(["xhb", "hxb", "bxh", "xh", "hx"])) for _ in range(k)]
    lines = []
    for j, (act, order) in enumerate(zip(acts, orders)):
        terms = {"x": f"x_t @ W_{j}", "h": f"h @ U_{j}", "b": f"b_{j}"}
        pre = " + ".join(terms[c] for c in order)
        lines.append(f"g{j} = {ACTIVATIONS[act].format(pre)}")
    combine = draw(st.sampled_from(["sum", "product", "lstm"]))
    gates = [f"g{j}" for j in range(k)]
    if combine == "lstm" and k >= 3:
        lines.append(f"c_new = {gates[0]} * c + {gates[1]} * np.tanh({gates[2]})")
        lines.append(f"h_new = np.tanh(c_new) * {gates[-1]}")
        carries = ["h", "c"]
        returned = ["h_new", "c_new"]
    else:
        joined = (" + " if combine != "product" else " * ").join(gates)
        lines.append(f"h_new = np.tanh({joined} + 0.5 * h)")
        carries = ["h"]
        returned = ["h_new"]
    with_output = draw(st.booleans())
    if with_output:
        returned.append("h_new @ W_out")
    lines.append("return " + ", ".join(returned))
    params = [f"W_{j}" for j in range(k)] + [f"U_{j}" for j in range(k)] + \
        [f"b_{j}" for j in range(k)] + ["W_out"]
    args = ", ".join(["x_t", *carries, *params])
    body = textwrap.indent("\n".join(lines), "    ")
    return dict(
        source=f"import numpy as np\n\n\ndef step({args}):\n{body}\n",
        k=k, carries=len(carries), with_output=with_output,
        keep=draw(st.sampled_from(["all", "last", "mixed"])),
        dtype=draw(st.sampled_from([np.float32, np.float64])),
        T=draw(st.integers(1, 6)), B=draw(st.integers(1, 3)), D=draw(st.integers(1, 5)),
        H=draw(st.integers(1, 5)), go_backwards=draw(st.booleans()),
        seed=draw(st.integers(0, 2**32 - 1)),
    )


def run_case(case, directory):
    note(case["source"])
    dt, T, B, D, H, k = (case[n] for n in ("dtype", "T", "B", "D", "H", "k"))
    rng = np.random.default_rng(case["seed"])

    def normal(*shape, scale=1.0):
        return (scale * rng.standard_normal(shape)).astype(dt)

    X = normal(T, B, D)
    inits = [normal(B, H, scale=0.5) for _ in range(case["carries"])]
    params = [normal(D, H, scale=D ** -0.5) for _ in range(k)] + \
        [normal(H, H, scale=H ** -0.5) for _ in range(k)] + \
        [normal(H, scale=0.3) for _ in range(k)] + [normal(H, 2)]
    outputs_info = inits + ([None] if case["with_output"] else [])
    keep = {"all": "all", "last": "last",
            "mixed": ["last"] + ["all"] * (len(outputs_info) - 1)}[case["keep"]]
    with generated_module(case["source"], directory, "_hyp_gates") as module:
        check_scan(module.step, sequences=X, outputs_info=outputs_info, non_sequences=params,
                   go_backwards=case["go_backwards"], keep=keep)


@pytest.fixture(scope="module")
def gen_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("hypothesis_gates")


@settings(max_examples=25, **HYPOTHESIS_SETTINGS)
@given(case=gated_programs())
def test_random_gated_recurrences(gen_dir, case):
    run_case(case, gen_dir)


@pytest.mark.slow
@settings(max_examples=400, **HYPOTHESIS_SETTINGS)
@given(case=gated_programs())
def test_random_gated_recurrences_many(gen_dir, case):
    run_case(case, gen_dir)
