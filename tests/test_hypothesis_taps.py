"""Property-based tests of Theano's taps and until against tests/theano_oracle.py.

Hypothesis draws a whole scan call: sequences with tap sets (negative, positive, without 0, in
any order; a plain array, a dict without taps, a bare integer tap; a sequence shorter than its
taps' span), outputs (a plain carry, a dict with or without ``taps=[-1]``, taps such as ``[-3,
-1]`` or ``[-2]`` with an initial value that may hold more rows than the taps read, per-step
outputs as ``None`` entries, ``[]`` or ``outputs_info=None``, an int64 step counter; a value fed
back or returned may be one of the step's arguments as it is), a stopping condition (none; the
counter reaching a limit; the largest element of a returned value crossing a threshold: at the
first step, at some step, or never), ``go_backwards``, ``n_steps`` given or not, keep
all/last/per output, the passes on or off, ``strict`` and ``return_list``, float32 or float64.
The step function is written to a real ``.py`` file and run by scanopt and by the oracle.

A threshold is chosen from the oracle's own trajectory (run first with a threshold never
crossed) and kept at least 1e-3 away from every value the condition sees, so rounding
differences between the compiled loop and the oracle cannot move the stopping step.
"""

from __future__ import annotations

import textwrap
import traceback

import numpy as np
import pytest
from hypothesis import event, given, note, settings
from hypothesis import strategies as st

import scanopt
from conftest import HYPOTHESIS_SETTINGS, assert_matches, generated_module
from theano_oracle import theano_scan

NEVER = 1e30  # a threshold no value reaches: the oracle's run that records the trajectory


def tap_name(tap: int) -> str:
    return "t" if tap == 0 else f"tm{-tap}" if tap < 0 else f"tp{tap}"


@st.composite
def sequence_specs(draw):
    """``(form, taps)``: form is "array" (taps [0]), "no_taps" (a dict without taps or with
    taps=None), "int" (a bare integer tap) or "taps" (a list, in any order)."""
    form = draw(st.sampled_from(["array", "no_taps", "int", "taps", "taps"]))
    if form in ("array", "no_taps"):
        return form, [0]
    if form == "int":
        return form, [draw(st.integers(-4, 3))]
    return form, draw(st.lists(st.integers(-4, 3), min_size=1, max_size=3, unique=True))


@st.composite
def output_specs(draw):
    """``(form, taps, extra_rows)``; taps None for a per-step output."""
    form = draw(st.sampled_from(["carry", "dict", "dict_minus_one", "taps", "taps", "map",
                                 "map"]))
    if form == "map":
        return form, None, 0
    if form == "taps":
        taps = draw(st.lists(st.integers(-4, -1), min_size=1, max_size=3, unique=True))
        return form, taps, draw(st.integers(0, 1))
    return form, [-1], 0


TERMS = ["{a}", "0.5 * {a}", "{a} @ M", "np.sin({a})", "{a} * {b}", "{a} * v"]


@st.composite
def expressions(draw, leaves):
    """A sum of 1 to 3 terms over ``leaves`` (names of values of the step's shape)."""
    terms = []
    for _ in range(draw(st.integers(1, 3))):
        a, b = draw(st.sampled_from(leaves)), draw(st.sampled_from(leaves))
        terms.append(draw(st.sampled_from(TERMS)).format(a=a, b=b))
    return " + ".join(terms)


@st.composite
def tap_cases(draw):
    sequences = draw(st.lists(sequence_specs(), max_size=2))
    outputs = draw(st.lists(output_specs(), min_size=1, max_size=3))
    until = draw(st.sampled_from(["counter", "value", "none", "value", "counter", "none"]))
    if until == "counter":  # an int64 carry counting the steps, in any position
        outputs.insert(draw(st.integers(0, len(outputs))), ("counter", [-1], 0))

    params, leaves, outputs_args = [], [], []
    for j, (_, taps) in enumerate(sequences):
        names = [f"s{j}_{tap_name(k)}" for k in taps]
        params += names
        leaves += names
    for i, (form, taps, _) in enumerate(outputs):
        if taps is not None:
            names = [f"x{i}_{tap_name(k)}" for k in taps]
            params += names
            outputs_args.append(names)
            if form != "counter":
                leaves += names
        else:
            outputs_args.append([])
    lines, returned = [], []
    for i, (form, taps, _) in enumerate(outputs):
        if form == "counter":
            lines.append(f"x{i}_new = {outputs_args[i][0]} + 1")
        elif form == "map":
            if leaves and draw(st.booleans()):  # a tap input (or previous carry) itself
                returned.append(draw(st.sampled_from(leaves)))
                continue
            expr = draw(expressions(leaves)) if leaves else "np.sin(v) * 2.0"
            lines.append(f"x{i}_new = {expr}")
        elif draw(st.integers(0, 4)) == 0:  # fed back as it is: one of its taps, or a sequence
            returned.append(draw(st.sampled_from(leaves)))  # value or another output's
            continue
        else:  # a fed-back output: the values stay in (-1, 1)
            own = draw(st.sampled_from(outputs_args[i]))
            lines.append(f"x{i}_new = np.tanh({own} + {draw(expressions(leaves))})")
        returned.append(f"x{i}_new")
    params += ["M", "v"]

    watched = None
    if until == "counter":
        counter = next(i for i, (form, _, _) in enumerate(outputs) if form == "counter")
        params.append("stop")
        condition = f"x{counter}_new >= stop"
    elif until == "value":
        watched = draw(st.sampled_from([k for k, (form, _, _) in enumerate(outputs)
                                        if form != "counter"]))
        params.append("threshold")
        condition = f"np.max({returned[watched]}) > threshold"
    values = ", ".join(returned)
    if until == "none":  # a value, a tuple (also of one value) or a list
        ret = draw(st.sampled_from([values, f"{values},", f"[{values}]"]))
    elif len(returned) > 1 and draw(st.booleans()):
        ret = f"({values}), scanopt.until({condition})"
    else:
        ret = f"{values}, scanopt.until({condition})"
    lines.append(f"return {ret}")
    body = textwrap.indent("\n".join(lines), "    ")
    source = (f"import numpy as np\n\nimport scanopt\n\n\n"
              f"def step({', '.join(params)}):\n{body}\n")

    # The steps each sequence allows (negative: it is shorter than its taps' span, and allows
    # none), and n_steps: hypothesis favours the first elements of sampled_from, so the steps
    # that run none come last.
    lengths = [max(draw(st.sampled_from([6, 8, 3, 5, 7, 4, 1, 2, 0, -1, -3])),
                   min(min(taps), 0) - max(max(taps), 0)) for _, taps in sequences]
    max_steps = min(lengths, default=None)
    if max_steps is not None and max_steps < 0:
        n_steps = draw(st.sampled_from([None, 0]))  # a too-short sequence allows no step
    elif max_steps is None or draw(st.booleans()):
        n_steps = draw(st.sampled_from(range(8 if max_steps is None else max_steps, -1, -1)))
    else:
        n_steps = None
    keep = draw(st.sampled_from(["all", "last", "per_output"]))
    if keep == "per_output":
        keep = [draw(st.sampled_from(["all", "last"])) for _ in outputs]
    return dict(
        source=source, sequences=sequences, outputs=outputs, lengths=lengths, n_steps=n_steps,
        until=until, watched=watched, go_backwards=draw(st.booleans()), keep=keep,
        # where the stopping step falls: the first step, some step, or never
        target=draw(st.sampled_from(["some", "first", "never", "some"])),
        pick=draw(st.integers(0, 10**6)),
        all_maps_as=draw(st.sampled_from(["nones", "empty", "none"])),
        shape=draw(st.sampled_from([(3,), (2, 3), (1, 2), (2,)])),
        dtype=draw(st.sampled_from([np.float32, np.float64])),
        optimize=draw(st.booleans()), strict=draw(st.booleans()),
        return_list=draw(st.booleans()), seed=draw(st.integers(0, 2**32 - 1)))


def scan_arguments(case):
    """The arguments of the scan call (without the stopping limit or threshold)."""
    rng = np.random.default_rng(case["seed"])
    dt, shape = case["dtype"], case["shape"]

    def normal(*dims, scale=1.0):
        return (scale * rng.standard_normal(dims)).astype(dt)

    sequences = []
    for (form, taps), steps in zip(case["sequences"], case["lengths"]):
        u = normal(steps + max(max(taps), 0) - min(min(taps), 0), *shape, scale=0.7)
        sequences.append({"array": u, "no_taps": dict(input=u, taps=None) if case["seed"] % 2
                          else dict(input=u), "int": dict(input=u, taps=taps[0]),
                          "taps": dict(input=u, taps=taps)}[form])
    outputs_info = []
    for form, taps, extra in case["outputs"]:
        if form == "map":
            outputs_info.append(None)
        elif form == "counter":
            outputs_info.append(np.int64(0))
        elif form == "taps" and taps != [-1]:  # taps=[-1]: the initial value is the value
            initial = rng.uniform(-1, 1, (-min(taps) + extra, *shape)).astype(dt)
            outputs_info.append(dict(initial=initial, taps=taps))
        else:
            initial = rng.uniform(-1, 1, shape).astype(dt)
            outputs_info.append({"carry": initial, "dict": dict(initial=initial),
                                 "dict_minus_one": dict(initial=initial, taps=[-1]),
                                 "taps": dict(initial=initial, taps=taps)}[form])
    if all(entry is None for entry in outputs_info):  # Theano's map, written three ways
        outputs_info = {"nones": outputs_info, "empty": [], "none": None}[case["all_maps_as"]]
    elif len(outputs_info) == 1 and case["seed"] % 3 == 0:
        outputs_info = outputs_info[0]  # one output, not in a list
    non_sequences = [normal(shape[-1], shape[-1], scale=shape[-1] ** -0.5),
                     normal(shape[-1], scale=0.5)]
    sequences = sequences[0] if len(sequences) == 1 and case["seed"] % 5 == 0 else sequences
    return dict(sequences=sequences, outputs_info=outputs_info, non_sequences=non_sequences,
                n_steps=case["n_steps"], go_backwards=case["go_backwards"])


def stopping_value(case, step, args):
    """The counter's limit or the threshold that stops the loop where ``case["target"]`` says
    (see the module docstring); the oracle runs first with a threshold never crossed."""
    if case["until"] == "counter":
        full = expected_steps(case, args)
        limit = {"first": 1, "never": full + 3,
                 "some": 1 + case["pick"] % max(full, 1)}[case["target"]]
        return limit if case["pick"] % 2 else np.int64(limit)
    history = as_outputs(theano_scan(step, **with_last(args, NEVER)))[case["watched"]]
    seen = [float(np.max(value)) for value in history]  # what the condition compares, per step
    if not seen:
        return 0.0
    # The loop stops at step s > 0 for a threshold between the largest value before s and the
    # value at s, when that is a new maximum by more than the margin.
    later = [(max(seen[:s]) + seen[s]) / 2 for s in range(1, len(seen))
             if seen[s] - max(seen[:s]) > 2e-3]
    candidates = {"first": [min(seen) - 1.0], "never": [max(seen) + 1.0],
                  "some": later or [max(seen) + 1.0]}[case["target"]]
    return candidates[case["pick"] % len(candidates)]


def expected_steps(case, args):
    if case["n_steps"] is not None:
        return case["n_steps"]
    return max(min(case["lengths"]), 0)


def with_last(args, value):
    return dict(args, non_sequences=[*args["non_sequences"], value])


def as_outputs(result):
    return result if isinstance(result, list) else [result]


def newest_initial(entry):
    """What ``keep="last"`` returns for a fed-back output after zero steps."""
    if isinstance(entry, dict):
        initial, taps = np.asarray(entry["initial"]), entry.get("taps")
        return initial if taps in (None, [-1]) else initial[-min(taps) - 1]
    return np.asarray(entry)


def kept(keep, args, expected):
    """The oracle's result as ``keep`` shapes it: the last value of the outputs kept "last"."""
    outputs = as_outputs(expected)
    keeps = [keep] * len(outputs) if isinstance(keep, str) else keep
    entries = args["outputs_info"] if isinstance(args["outputs_info"], list) else \
        [args["outputs_info"]] * (args["outputs_info"] is not None)
    result = []
    for k, (history, mode) in enumerate(zip(outputs, keeps)):
        if mode == "all":
            result.append(history)
        elif len(history):
            result.append(np.asarray(history[-1]))
        else:
            result.append(newest_initial(entries[k]).copy())
    return result if isinstance(expected, list) else result[0]


def keep_for_the_call(case, args):
    """``keep`` as passed: "last" of a per-step output after zero steps is an error (tested in
    test_theano.py), so those outputs are kept "all" when the loop can run no step."""
    keep = case["keep"]
    if expected_steps(case, args) > 0:
        return keep
    keeps = [keep] * len(case["outputs"]) if isinstance(keep, str) else list(keep)
    return ["all" if form == "map" else mode for (form, _, _), mode in
            zip(case["outputs"], keeps)]


def run_case(case, directory):
    note(case["source"])
    args = scan_arguments(case)
    keep = keep_for_the_call(case, args)
    with generated_module(case["source"], directory, "_hyp_taps") as module:
        if case["until"] != "none":
            args = with_last(args, stopping_value(case, module.step, args))
        note({k: v for k, v in args.items() if k != "sequences"})
        oracle = theano_scan(module.step, **args)
        expected = kept(keep, args, oracle)
        failure = None
        try:
            actual = scanopt.scan(module.step, optimize=case["optimize"], keep=keep,
                                  strict=case["strict"], return_list=case["return_list"], **args)
        except Exception as error:  # every generated call is valid: any error is a bug
            failure = "".join(traceback.format_exception(error)[-3:])
        if failure is not None:
            # Raised here, outside the handler and from one line, so that hypothesis sees the
            # same failure when it replays the case (the generated module's file differs).
            raise AssertionError(f"scanopt.scan raised instead of returning:\n{failure}")
        if case["return_list"] and not isinstance(expected, list):
            expected = [expected]
        assert_matches(actual, expected)
    ran, full = len(as_outputs(oracle)[0]), expected_steps(case, args)
    event(f"until={case['until']}: " + ("no step" if full == 0 else "all steps" if ran == full
                                        else "stopped at the first step" if ran == 1
                                        else "stopped at a later step"))
    event(f"sequence taps: {sorted({form for form, _ in case['sequences']})}")
    event(f"outputs: {sorted({form for form, _, _ in case['outputs']})}")


def add_first_and_fifth(u_tm4, u_t, h):
    return h + u_tm4 + u_t


def test_n_steps_zero_with_a_too_short_sequence():
    """A sequence shorter than its taps' span allows no step: n_steps=None runs none, and so
    must n_steps=0 (Theano checks only that each cut sequence has n_steps rows)."""
    args = dict(sequences=dict(input=np.arange(2.0), taps=[-4, 0]), outputs_info=np.float64(0))
    assert scanopt.scan(add_first_and_fifth, **args).shape == (0,)
    expected = theano_scan(add_first_and_fifth, n_steps=0, **args)
    assert_matches(scanopt.scan(add_first_and_fifth, n_steps=0, **args), expected)


def product_of_two_sequences(a_tm2, a_t, b_tm2, b_t, h):
    return h + a_t * b_t


def test_a_too_short_sequence_with_work_pushed_out():
    """b has no row, and its taps [-2, 0] need two rows more than the steps: the loop runs no
    step, as the oracle says, with the passes on as well as off."""
    args = dict(sequences=[dict(input=np.ones((5, 3)), taps=[-2, 0]),
                           dict(input=np.ones((0, 3)), taps=[-2, 0])],
                outputs_info=np.zeros(3))
    expected = theano_scan(product_of_two_sequences, **args)
    assert_matches(scanopt.scan(product_of_two_sequences, optimize=False, **args), expected)
    assert_matches(scanopt.scan(product_of_two_sequences, **args), expected)


@pytest.fixture(scope="module")
def gen_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("hypothesis_taps")


@settings(max_examples=200, **HYPOTHESIS_SETTINGS)
@given(case=tap_cases())
def test_random_taps_and_stopping_conditions(gen_dir, case):
    run_case(case, gen_dir)


@pytest.mark.slow
@settings(max_examples=2000, **HYPOTHESIS_SETTINGS)
@given(case=tap_cases())
def test_random_taps_and_stopping_conditions_many(gen_dir, case):
    run_case(case, gen_dir)
