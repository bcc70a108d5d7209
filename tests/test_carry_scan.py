"""``scanopt.carry_scan``: JAX's ``lax.scan`` front door with plain-container pytrees, and dicts in
step functions. The oracle is JAX's loop, written here in plain Python."""

from __future__ import annotations

import numpy as np
import pytest

import scanopt
from conftest import assert_matches


def tree_leaves(tree):
    if tree is None:
        return []
    if isinstance(tree, (tuple, list)):
        return [leaf for item in tree for leaf in tree_leaves(item)]
    if isinstance(tree, dict):
        return [leaf for key in sorted(tree) for leaf in tree_leaves(tree[key])]
    return [tree]


def tree_map(fn, tree, *others):
    if tree is None:
        return None
    if isinstance(tree, (tuple, list)):
        return type(tree)(tree_map(fn, t, *(o[k] for o in others)) for k, t in enumerate(tree))
    if isinstance(tree, dict):
        return {k: tree_map(fn, tree[k], *(o[k] for o in others)) for k in tree}
    return fn(tree, *others)


def jax_loop(f, init, xs=None, length=None, reverse=False):
    """What lax.scan computes, on NumPy arrays."""
    n = length if xs is None else len(tree_leaves(xs)[0])
    carry = tree_map(np.asarray, init)
    ys = []
    for i in (reversed(range(n)) if reverse else range(n)):
        carry, y = f(carry, tree_map(lambda leaf: leaf[i], xs))
        ys.append(y)
    if reverse:
        ys = ys[::-1]
    return carry, tree_map(lambda *leaves: np.stack(leaves), ys[0], *ys[1:])


def check_same_tree(actual, expected):
    if isinstance(expected, (tuple, list, dict)) or expected is None:
        assert type(actual) is type(expected), (type(actual), type(expected))
    if isinstance(expected, (tuple, list)):
        assert len(actual) == len(expected)
        for a, e in zip(actual, expected):
            check_same_tree(a, e)
    elif isinstance(expected, dict):
        assert sorted(actual) == sorted(expected)
        for k in expected:
            check_same_tree(actual[k], expected[k])
    elif expected is None:
        assert actual is None
    else:
        assert_matches(np.asarray(actual), np.asarray(expected))


def check(f, init, xs=None, length=None, reverse=False, optimize=True):
    expected = jax_loop(f, init, xs, length, reverse)
    actual = scanopt.carry_scan(f, init, xs, length=length, reverse=reverse, optimize=optimize)
    assert isinstance(actual, tuple) and len(actual) == 2
    check_same_tree(actual, expected)
    return actual


W = np.random.default_rng(0).standard_normal((3, 3)) * 0.5


def lstm_like(carry, x):
    h, c = carry["h"], carry["c"]
    c_new = 0.5 * c + np.tanh(x["u"] @ W.astype(h.dtype) + h)
    h_new = np.tanh(c_new) * x["gate"]
    return {"h": h_new, "c": c_new}, (h_new, [c_new.sum(), h_new])


@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dict_carry_and_tree_outputs(reverse, dtype, optimize):
    rng = np.random.default_rng(1)
    init = {"h": np.zeros(3, dtype), "c": np.zeros(3, dtype)}
    xs = {"u": rng.standard_normal((6, 3)).astype(dtype),
          "gate": rng.random((6, 3)).astype(dtype)}
    check(lstm_like, init, xs, reverse=reverse, optimize=optimize)


def counter(carry, x):
    i, total = carry
    return (i + 1, total + i), None


def test_no_xs_with_length_and_no_y(optimize):
    carry, ys = check(counter, (np.int64(0), np.int64(0)), length=5, optimize=optimize)
    assert ys is None and carry == (5, 10)


def cumulative(total, x):
    total = total + x
    return total, total


def test_single_array_carry_and_xs(optimize):
    check(cumulative, np.zeros(2), np.arange(10.0).reshape(5, 2), optimize=optimize)


def nested_tree(carry, xs):
    (a, [b, c]) = carry
    return (a * 0.9 + xs[0], [b + xs[1], c]), {"a": a, "pair": (b, c)}


def test_nested_tuples_and_lists(optimize):
    init = (np.ones(2), [np.zeros(2), np.float64(3)])
    xs = (np.arange(8.0).reshape(4, 2), np.ones((4, 2)))
    check(nested_tree, init, xs, optimize=optimize)


def test_zero_length_gives_the_initial_carry_and_empty_ys():
    carry, ys = scanopt.carry_scan(cumulative, np.ones(2), np.zeros((0, 2)))
    np.testing.assert_array_equal(carry, np.ones(2))
    assert ys.shape == (0, 2)


def wrong_structure(carry, x):
    return (carry["h"], carry["c"]), None


def wrong_dtype(carry, x):
    return {"h": carry["h"].astype(np.float32), "c": carry["c"]}, None


def not_a_pair(carry, x):
    return carry


def test_carry_errors_name_the_path_and_types():
    init, xs = {"h": np.zeros(3), "c": np.zeros(3)}, np.zeros((4, 3))
    with pytest.raises(scanopt.ScanTypeError,
                       match=r"test_carry_scan.py:\d+:\d+: error: the carry f returns does not "
                             r"have the structure of the input carry(.|\n)*The input carry is "
                             r"\{'c': \*, 'h': \*\} but f returns \(\*, \*\)"):
        scanopt.carry_scan(wrong_structure, init, xs)
    with pytest.raises(scanopt.ScanTypeError,
                       match=r"The input carry `carry\['h'\]` has type float64\[3\] but the "
                             r"function returns float32\[3\] for it, so the dtypes do not "
                             r"match"):
        scanopt.carry_scan(wrong_dtype, init, xs)
    with pytest.raises(scanopt.ScanValueError, match=r"f must return a pair \(carry, y\)"):
        scanopt.carry_scan(not_a_pair, (np.zeros(3), np.zeros(3), np.zeros(3)), xs)


def test_argument_errors():
    with pytest.raises(scanopt.ScanValueError, match="leaves of xs with different leading "
                                                     r"dimensions: xs\[0\] 4, xs\[1\] 5"):
        scanopt.carry_scan(cumulative, np.zeros(3), (np.zeros((4, 3)), np.zeros((5, 3))))
    with pytest.raises(scanopt.ScanValueError, match="length=3 disagrees"):
        scanopt.carry_scan(cumulative, np.zeros(3), np.zeros((4, 3)), length=3)
    with pytest.raises(scanopt.ScanValueError, match="needs xs or length"):
        scanopt.carry_scan(cumulative, np.zeros(3))
    with pytest.raises(scanopt.ScanValueError, match="carry_scan passes 2"):
        scanopt.carry_scan(lambda c: (c, c), np.zeros(3), np.zeros((4, 3)))


def test_a_second_process_gets_the_output_structure_from_the_disk_cache():
    init = {"h": np.zeros(3), "c": np.zeros(3)}
    xs = {"u": np.ones((3, 3)), "gate": np.ones((3, 3))}
    first = scanopt.carry_scan(lstm_like, init, xs)
    scanopt.clear_cache()
    again = scanopt.carry_scan(lstm_like, init, xs)
    assert scanopt.cache_info()["disk_hits"] == 1
    check_same_tree(again, first)


def test_disabled_runs_the_plain_loop(monkeypatch):
    monkeypatch.setenv("SCANOPT_DISABLE", "1")
    init = {"h": np.zeros(3), "c": np.zeros(3)}
    xs = {"u": np.ones((3, 3)), "gate": np.ones((3, 3))}
    check_same_tree(scanopt.carry_scan(lstm_like, init, xs, reverse=True),
                    jax_loop(lstm_like, init, xs, reverse=True))


# --- dicts in scan step functions ------------------------------------------------------------

PARAMS = {"W": np.eye(3) * 0.5, "b": np.ones(3)}


def dict_step(x_t, h):
    state = {"h": h, "x": x_t}
    more = {**state, "scale": 2.0}
    total = 0
    for key, value in more.items():
        if key != "scale":
            total = total + value
    layer = dict(W=PARAMS["W"], b=PARAMS.get("b"))
    return np.tanh(total @ layer["W"] + layer["b"] * more["scale"] + len(more))


def test_dicts_inside_a_step(optimize):
    from conftest import plain_loop

    X, h0 = np.arange(12.0).reshape(4, 3) / 10, np.zeros(3)
    assert_matches(scanopt.scan(dict_step, X, h0, optimize=optimize),
                   plain_loop(dict_step, X, h0))


def test_a_captured_dict_whose_keys_change_is_recompiled():
    global PARAMS
    X, h0 = np.ones((2, 3)), np.zeros(3)
    first = scanopt.scan(dict_step, X, h0)
    saved = PARAMS
    try:
        PARAMS = {"W": np.eye(3), "b": np.zeros(3)}  # same keys, other arrays: no recompile
        second = scanopt.scan(dict_step, X, h0)
        assert not np.allclose(first, second)
        PARAMS = {"b": np.zeros(3), "W": np.eye(3), "extra": 1}  # other keys: recompiled
        third = scanopt.scan(dict_step, X, h0)
        np.testing.assert_allclose(third, second)
    finally:
        PARAMS = saved
