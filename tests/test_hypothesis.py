"""Property-based differential tests: random step functions built from the supported ops.

Hypothesis writes each step function as source text to a real ``.py`` file (scanopt reads the
source with ``inspect``), imports it with importlib, and checks ``scanopt.scan`` against the
plain loop. The grammar keeps values bounded (tanh on the carry, exp only of clipped values,
division only by ``1 + b*b``) so float32 comparisons stay within tolerance, and ``np.where``
only tests input data (never a computed value), so reordering cannot flip a branch.
"""

import textwrap

import numpy as np
import pytest
from hypothesis import given, note, settings
from hypothesis import strategies as st

import scanopt
from conftest import HYPOTHESIS_SETTINGS, assert_matches, generated_module, plain_loop

# Shape tags of generated expressions (B = batch rows, D = features):
#   "full" (B, D)   "col" (B, 1)   "row" (1, D)   "vec" (D,)
_BROADCAST = {
    frozenset(["col"]): "col",
    frozenset(["row"]): "row",
    frozenset(["vec"]): "vec",
    frozenset(["row", "vec"]): "row",
}


def combine(*tags):
    s = frozenset(tags)
    if "full" in s:
        return "full"
    return _BROADCAST.get(s, "full")  # col with row/vec broadcasts to (B, D)


CONSTS = ["0.5", "1.5", "-0.25", "2.0", "0.1"]


@st.composite
def expressions(draw, leaves, depth):
    """Return (source, tag) for a random expression over ``leaves`` (a dict name -> tag)."""
    if depth == 0 or draw(st.integers(0, 4)) == 0:
        name = draw(st.sampled_from(sorted(leaves)))
        return name, leaves[name]
    kind = draw(st.sampled_from(["add", "sub", "mul", "div", "const", "tanh", "exp", "neg",
                                 "maximum", "matmul", "sum", "where"]))
    sub = expressions(leaves, depth - 1)
    a, ta = draw(sub)
    if kind in ("add", "sub", "mul", "maximum", "where", "div"):
        b, tb = draw(sub)
        if kind == "add":
            return f"({a} + {b})", combine(ta, tb)
        if kind == "sub":
            return f"({a} - {b})", combine(ta, tb)
        if kind == "mul":
            return f"({a} * {b})", combine(ta, tb)
        if kind == "div":
            return f"({a} / (1.0 + {b} * {b}))", combine(ta, tb)
        if kind == "maximum":
            return f"np.maximum({a}, {b})", combine(ta, tb)
        cond = draw(st.sampled_from(["x_t > 0.0", "x_t > v", "x_t < -0.5"]))
        return f"np.where({cond}, {a}, {b})", "full"
    if kind == "const":
        c = draw(st.sampled_from(CONSTS))
        op = draw(st.sampled_from(["*", "+"]))
        return (f"({a} {op} {c})" if draw(st.booleans()) else f"({c} {op} {a})"), ta
    if kind == "tanh":
        return f"np.tanh({a})", ta
    if kind == "exp":
        return f"np.exp(np.clip({a}, -3.0, 3.0))", ta
    if kind == "neg":
        return f"(-{a})", ta
    if kind == "matmul":
        if ta == "col":
            return f"np.tanh({a})", ta
        return f"({a} @ M)", ta
    # sum with keepdims
    if ta != "full":
        return f"np.tanh({a})", ta
    axis = draw(st.sampled_from([0, 1]))
    return f"np.sum({a}, axis={axis}, keepdims=True)", ("row" if axis == 0 else "col")


@st.composite
def programs(draw, max_depth=3):
    leaves = {"x_t": "full", "h": "full", "v": "vec"}
    lines = []
    for k in range(draw(st.integers(0, 2))):
        src, tag = draw(expressions(dict(leaves), max_depth - 1))
        lines.append(f"t{k} = {src}")
        leaves[f"t{k}"] = tag
    e, tag = draw(expressions(dict(leaves), max_depth))
    if tag != "full":
        e = f"({e} + h)"
    lines.append(f"h_new = np.tanh({e})")
    with_output = draw(st.booleans())
    if with_output:
        y, _ = draw(expressions(dict(leaves, h_new="full"), 2))
        lines.append(f"return h_new, {y}")
    else:
        lines.append("return h_new")
    body = textwrap.indent("\n".join(lines), "    ")
    src = f"import numpy as np\n\n\ndef step(x_t, h, M, v):\n{body}\n"
    return dict(
        source=src,
        with_output=with_output,
        dtype=draw(st.sampled_from([np.float32, np.float64])),
        T=draw(st.integers(0, 5)),
        B=draw(st.integers(1, 3)),
        D=draw(st.integers(1, 4)),
        go_backwards=draw(st.booleans()),
        seed=draw(st.integers(0, 2**32 - 1)),
    )


@pytest.fixture(scope="module")
def gen_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("hypothesis_steps")


def run_case(case, optimize, directory):
    note(case["source"])
    dt, T, B, D = case["dtype"], case["T"], case["B"], case["D"]
    rng = np.random.default_rng(case["seed"])
    X = (0.7 * rng.standard_normal((T, B, D))).astype(dt)
    h0 = rng.uniform(-1, 1, (B, D)).astype(dt)
    M = (rng.standard_normal((D, D)) / np.sqrt(D)).astype(dt)
    v = (0.5 * rng.standard_normal(D)).astype(dt)
    outputs_info = [h0, None] if case["with_output"] else h0
    kw = dict(sequences=X, outputs_info=outputs_info, non_sequences=[M, v],
              go_backwards=case["go_backwards"])
    with generated_module(case["source"], directory) as module:
        expected = plain_loop(module.step, **kw)
        actual = scanopt.scan(module.step, optimize=optimize, **kw)
        assert_matches(actual, expected)


_SETTINGS = HYPOTHESIS_SETTINGS


@settings(max_examples=30, **_SETTINGS)
@given(case=programs())
def test_random_step_functions(optimize, gen_dir, case):
    run_case(case, optimize, gen_dir)


@pytest.mark.slow
@settings(max_examples=500, **_SETTINGS)
@given(case=programs(max_depth=4))
def test_random_step_functions_many(optimize, gen_dir, case):
    run_case(case, optimize, gen_dir)
