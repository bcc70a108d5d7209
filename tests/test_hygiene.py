"""Generated-code hygiene and aliasing (issue 6, part 5).

- Names: step parameters, locals, helpers, captured globals and closure variables, and the step
  function itself may be called like anything the generated module uses (``np``, ``work``,
  ``range``, ``_workspace``, ``t0``, ``h_init``, the ``X`` a sequence ``x_t`` is named after, the
  namer's suffixes ``h_1``, ``h_new``, ``hs``...): results still equal the plain loop's.
- Source text: the user's lines are quoted in comments; no character on them (unicode line
  separators, form feeds, quotes, backslashes, the comment marker, bidi controls) changes the
  code, and text that is no identifier (an IR symbol name, a file name) never becomes code.
- Aliasing: inputs are never written (they are passed read-only, and compared byte for byte);
  returned arrays share no memory with inputs, with each other, with the loop's workspace, or
  with the results of other calls (also from several threads at once), and a later call changes
  no earlier result.
"""

from __future__ import annotations

import ast
import copy
import importlib.util
import itertools
import sys
import threading

import numpy as np
import pytest

import scanopt
from scanopt.lowering import numpy_emitter
from conftest import as_list, assert_matches, generated_module, plain_loop


# --------------------------------------------------------------------------------------------
# The check every case goes through
# --------------------------------------------------------------------------------------------

def _inputs(kw) -> list[np.ndarray]:
    return [a for key in ("sequences", "outputs_info", "non_sequences")
            for a in as_list(kw.get(key)) if isinstance(a, np.ndarray)]


def _read_only(kw):
    """The arguments with every array read-only: a write into an input raises."""
    for a in _inputs(kw):
        a.flags.writeable = False
    return kw


def _expected(fn, kw, keep):
    """The plain loop's result, reduced to ``result[-1]`` for outputs kept last (a copy of the
    initial value after zero steps, docs/semantics.md)."""
    result = plain_loop(fn, **copy.deepcopy(kw))
    outs = result if isinstance(result, list) else [result]
    keeps = [keep] * len(outs) if isinstance(keep, str) else keep
    inits = as_list(kw.get("outputs_info")) or [None] * len(outs)
    outs = [(o[-1] if len(o) else np.array(init, copy=True)) if k == "last" else o
            for o, k, init in zip(outs, keeps, inits)]
    return outs if isinstance(result, list) else outs[0]


def _compiled(fn) -> list:
    """The compiled loops of ``fn`` in the in-memory cache."""
    return [entry for key, entries in scanopt.api._STATS.entries.items()
            if key[0] is fn.__code__ for entry in entries]


def _workspace_arrays(fn) -> list[np.ndarray]:
    """The arrays of every spare workspace of ``fn``'s compiled loops."""
    return [a for entry in _compiled(fn)
            for work in entry.run.__globals__.get("_spare_workspaces", [])
            for a in work.values() if isinstance(a, np.ndarray)]


def _outputs(result) -> list[np.ndarray]:
    return result if isinstance(result, list) else [result]


def _assert_disjoint(results: list[np.ndarray], others: list[np.ndarray]):
    for k, a in enumerate(results):
        for b in results[k + 1:]:
            assert not np.shares_memory(a, b), "two returned arrays share memory"
        for b in others:
            assert not np.shares_memory(a, b), "a returned array shares memory with an input " \
                                               "or a workspace"


def check(fn, make, *, optimize=True, keep="all", captured=(), **options):
    """Two calls with different data (``make(seed)`` gives the arguments): each equals the plain
    loop, no input is written, the first result survives the second call, and no returned array
    shares memory with another, with an input, a captured array, or the workspace."""
    kw1, kw2 = _read_only(make(1)), _read_only(make(2))
    before = [a.tobytes() for a in [*_inputs(kw1), *captured]]
    first = scanopt.scan(fn, optimize=optimize, keep=keep, **options, **kw1)
    assert_matches(first, _expected(fn, make(1), keep))
    assert [a.tobytes() for a in [*_inputs(kw1), *captured]] == before, "an input was written"
    saved = [a.copy() for a in _outputs(first)]
    second = scanopt.scan(fn, optimize=optimize, keep=keep, **options, **kw2)
    assert_matches(second, _expected(fn, make(2), keep))
    for a, s in zip(_outputs(first), saved):
        np.testing.assert_array_equal(a, s, err_msg="a later call changed an earlier result")
    _assert_disjoint(_outputs(first) + _outputs(second),
                     [*_inputs(kw1), *_inputs(kw2), *captured, *_workspace_arrays(fn)])
    return first


def _data(n_seqs=1, n_carries=1, n_outs=0, n_params=1, rng=False, steps=5):
    """``make(seed)`` for steps over (3, 4) slices with (4, 4) weights."""
    def make(seed):
        r = np.random.default_rng(seed)
        kw = dict(outputs_info=[r.standard_normal((3, 4)) for _ in range(n_carries)]
                  + [None] * n_outs,
                  non_sequences=[r.standard_normal((4, 4)) for _ in range(n_params)]
                  + ([np.random.default_rng(seed + 100)] if rng else []))
        if n_seqs:  # longer than n_steps, and of another length in each call
            kw["sequences"] = [r.standard_normal((steps + seed, 3, 4)) for _ in range(n_seqs)]
        kw["n_steps"] = steps
        return kw
    return make


# --------------------------------------------------------------------------------------------
# Names
# --------------------------------------------------------------------------------------------

# Names the generated module uses itself, names the namer makes (suffixes, X for x_t, h_init),
# builtins, soft keywords, and non-ASCII identifiers (the parser normalises ℌ to H; one that
# starts with a non-ASCII letter fails in the frontend: test_non_ascii_names).
NAMES = ["np", "out", "work", "h_init", "_workspace", "_spare_workspaces", "t", "t0",
         "steps_here", "range", "min", "len", "float", "int", "bool", "abs", "IndexError",
         "__import__", "__builtins__", "match", "case", "type", "_", "X", "x", "n_steps", "h_1",
         "h_new", "h_last", "hs", "h_even", "h_odd", "xW_t", "XW", "work_1", "draw",
         "u_steps", "u_steps_chunk", "tmp", "v", "step", "carry0", "arg0", "ℌ", "ﬁ", "h_α"]


def _all_roles_source(names: list[str]) -> tuple[str, str]:
    """Two modules where each of ``names`` is, in turn, every kind of name a step can have:
    sequence slice, carry, non-sequence, local, captured global, closure variable (the first
    module) and helper function (the second)."""
    listed = ", ".join(names)
    total = " + ".join(names)
    n = len(names)
    carries = []
    for k, name in enumerate(names):  # odd ones pass the previous value of another carry on
        carries.append(names[k - 1] if k % 2 else
                       f"numpy.tanh(x_t @ W + {name} * 0.5 + {names[(k + 1) % n]} * 0.25)")
    chain = "\n".join(f"    {b} = {a} * 0.5 + x_t" for a, b in zip(names, names[1:]))
    helpers = "\n\n\n".join(f"def {name}(z):\n    return z * 0.5 + 0.25" for name in names)
    calls = "".join(f"{name}(" for name in names) + "x_t @ W + h" + ")" * n
    globals_ = "\n".join(f"{name} = numpy.linspace(-1.0, 1.0, 4) * {k}"
                         for k, name in enumerate(names))
    closure = "\n".join(f"    {name} = numpy.full(4, {k / n})" for k, name in enumerate(names))
    return f"""
import numpy

{globals_}


def as_sequences({listed}, h, W, rng):
    u = rng.random(4)  # drawn for many steps at once: the loop over chunks has t0, steps_here
    h_new = numpy.tanh(({total}) @ W * 0.1 + h) * u
    return h_new, {names[0]} * 2.0


def as_carries(x_t, {listed}, W):
    return {", ".join(carries)}


def as_non_sequences(x_t, h, {listed}):
    return numpy.tanh(x_t @ ({total}) * 0.1 + h)


def as_locals(x_t, h, W):
    {names[0]} = x_t @ W + h
{chain}
    return numpy.tanh({names[-1]}), {names[-1]}.T


def reads_globals(x_t, h, W):
    return numpy.tanh(x_t @ W + h * ({total}) * 0.01)


def closure():
{closure}

    def reads_closure(x_t, h, W):
        return numpy.tanh(x_t @ W + h * ({total}))
    return reads_closure
""", f"""
import numpy


{helpers}


def calls_helpers(x_t, h, W):
    return numpy.tanh({calls})
"""


def _shaped(shape_of_role):
    def make(seed):
        r = np.random.default_rng(seed)
        kw = shape_of_role(r)
        kw.setdefault("n_steps", 5)
        return kw
    return make


_N = len(NAMES)
# role → (data, keeps to try)
_ROLE_DATA = {
    "as_sequences": (_shaped(lambda r: dict(
        sequences=[r.standard_normal((6, 3, 4)) for _ in range(_N)],
        outputs_info=[r.standard_normal((3, 4)), None],
        non_sequences=[r.standard_normal((4, 4)), np.random.default_rng(r.integers(9))])),
        ("all", "last", ["last", "all"])),
    "as_carries": (_shaped(lambda r: dict(
        sequences=r.standard_normal((6, 3, 4)),
        outputs_info=[r.standard_normal((3, 4)) for _ in range(_N)],
        non_sequences=[r.standard_normal((4, 4))])), ("all", "last")),
    "as_non_sequences": (_shaped(lambda r: dict(
        sequences=r.standard_normal((6, 3, 4)), outputs_info=r.standard_normal((3, 4)),
        non_sequences=[r.standard_normal((4, 4)) for _ in range(_N)])), ("all", "last")),
    "as_locals": (_data(n_outs=1), ("all", "last", ["last", "all"])),
    "reads_globals": (_data(), ("all", "last")),
    "reads_closure": (_data(), ("all", "last")),
    "calls_helpers": (_data(), ("all", "last")),
}


@pytest.mark.parametrize("role", list(_ROLE_DATA))
def test_names_that_collide_with_the_generated_code(role, optimize, tmp_path):
    roles, helpers = _all_roles_source(NAMES)
    with generated_module(roles, tmp_path, "_names") as module, \
            generated_module(helpers, tmp_path, "_helpers") as helper_module:
        fn = {"reads_closure": module.closure(),
              "calls_helpers": helper_module.calls_helpers}.get(role) or getattr(module, role)
        captured = [v for v in vars(module).values() if isinstance(v, np.ndarray)]
        make, keeps = _ROLE_DATA[role]
        for keep in keeps:
            check(fn, make, optimize=optimize, keep=keep, captured=captured)
        source = scanopt.step(fn).source(**make(1), optimize=optimize)
    if role == "as_sequences" and optimize:  # the generated code's own names are there
        assert "for t0 in range(" in source and "steps_here = min(" in source
        assert "work = _workspace(n_steps)" in source


_ONE_NAME = """
import numpy


def as_non_sequence(x_t, h, W, NAME, rng):
    u = rng.random(4)
    nxt = numpy.tanh(x_t @ W + h * NAME) * u
    return nxt, nxt.sum(axis=1) + NAME[0]
"""


_ONE_NAME_DATA = _shaped(lambda r: dict(
    sequences=r.standard_normal((5, 3, 4)), outputs_info=[r.standard_normal((3, 4)), None],
    non_sequences=[r.standard_normal((4, 4)), r.standard_normal(4),
                   np.random.default_rng(r.integers(9))]))


@pytest.mark.parametrize("name", NAMES)
def test_one_name_that_collides(name, tmp_path):
    """Each name alone (above, they are all in one step)."""
    with generated_module(_ONE_NAME.replace("NAME", name), tmp_path, "_one") as module:
        check(module.as_non_sequence, _ONE_NAME_DATA, optimize=True, keep=["last", "all"])
        check(module.as_non_sequence, _ONE_NAME_DATA, optimize=False)


@pytest.mark.parametrize("name", ["α", "ψ0"])
def test_non_ascii_names(name, tmp_path):
    with generated_module(_ONE_NAME.replace("NAME", name), tmp_path, "_one") as module:
        check(module.as_non_sequence, _ONE_NAME_DATA, optimize=True, keep=["last", "all"])
        check(module.as_non_sequence, _ONE_NAME_DATA, optimize=False)


def test_names_differing_only_by_the_namers_suffixes(optimize, tmp_path):
    """xDSL strips ``_1`` from name hints, so ``h`` and ``h_1`` arrive as the same hint; the
    namer's suffixes then must not clash with the user's other names."""
    source = '''
import numpy as np


def step(x_t, h, h_1, h_new, hs, h_last, h_init, W):
    h_2 = np.tanh(x_t @ W + h * 0.5 + h_1 * 0.25)
    y = h_new + hs + h_last + h_init
    return h_2, h * 0.5 + h_1 * 0.5, y
'''
    def make(seed):
        r = np.random.default_rng(seed)
        return dict(sequences=r.standard_normal((6, 3, 4)),
                    outputs_info=[r.standard_normal((3, 4)), r.standard_normal((3, 4)), None],
                    non_sequences=[r.standard_normal((3, 4)) for _ in range(4)]
                    + [r.standard_normal((4, 4))])
    with generated_module(source, tmp_path, "_suffixes") as module:
        for keep in ("all", "last", ["last", "all", "all"], ["all", "last", "last"]):
            check(module.step, make, optimize=optimize, keep=keep)


# --------------------------------------------------------------------------------------------
# The step function's own name, and names that come from IR text
# --------------------------------------------------------------------------------------------

_RENAMED = '''
import numpy as np


def step(x_t, h, W):
    return np.tanh(x_t @ W + h)  # NAME


step.__name__ = step.__qualname__ = NAME
'''


def _module_level_names(source: str) -> list[str]:
    names = []
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef):
            names.append(node.name)
        elif isinstance(node, ast.Assign):
            names.extend(t.id for t in node.targets)
        elif isinstance(node, ast.Import):
            names.extend(a.asname or a.name for a in node.names)
    return names


# the step's __name__ → the name of its function in the generated module
_STEP_NAMES = {"np": "np_1", "range": "range_1", "min": "min_1", "IndexError": "IndexError_1",
               "_workspace": "_workspace_1", "_spare_workspaces": "_spare_workspaces_1",
               "__builtins__": "step", "__doc__": "step", "class": "step", "ｎｐ": "np_1",
               "ｃｌａｓｓ": "step", "match": "match", "ℌ": "H"}


@pytest.mark.parametrize("name", _STEP_NAMES)
def test_a_step_function_named_like_a_name_of_the_module(name, optimize, tmp_path):
    """A def named ``np`` or ``range`` would replace numpy or the builtin for the whole module;
    ``class`` (a ``__name__`` can be anything) would not parse."""
    # Equal code objects share what was compiled for them: blank lines make each differ.
    source = "\n" * list(_STEP_NAMES).index(name) + _RENAMED.replace("NAME", repr(name))
    with generated_module(source, tmp_path, "_renamed") as module:
        step = module.step
        check(step, _data(), optimize=optimize)
        check(step, _data(), optimize=optimize, keep="last")
        source = scanopt.step(step).source(**_data()(1), optimize=optimize)
    names = _module_level_names(source)
    assert names[0] == "np" and names[-1] == _STEP_NAMES[name] and len(names) == len(set(names))


_ELMAN = '''
func.func @NAME(%X: tensor<?x2x3xf64>, %h_init: tensor<2x4xf64>, %W: tensor<3x4xf64>,
                %U: tensor<4x4xf64>, %n_steps: index) -> tensor<?x2x4xf64> {
  %hs = scan.loop seqs(%X : tensor<?x2x3xf64>) init(%h_init : tensor<2x4xf64>)
                  params(%W, %U : tensor<3x4xf64>, tensor<4x4xf64>) steps %n_steps
                  -> tensor<?x2x4xf64> {
  ^bb0(%x_t: tensor<2x3xf64>, %h: tensor<2x4xf64>, %W_1: tensor<3x4xf64>,
       %U_1: tensor<4x4xf64>):
    %0 = scan.matmul %x_t, %W_1 : (tensor<2x3xf64>, tensor<3x4xf64>) -> tensor<2x4xf64>
    %1 = scan.matmul %h, %U_1 : (tensor<2x4xf64>, tensor<4x4xf64>) -> tensor<2x4xf64>
    %2 = scan.add %0, %1 : (tensor<2x4xf64>, tensor<2x4xf64>) -> tensor<2x4xf64>
    %3 = scan.tanh %2 : (tensor<2x4xf64>) -> tensor<2x4xf64>
    scan.yield %3 : tensor<2x4xf64>
  }
  func.return %hs : tensor<?x2x4xf64>
}
'''


def _parse_ir(text, verify=True):
    from xdsl.parser import Parser

    from scanopt.dialects.ir import make_context

    module = Parser(make_context(), text).parse_module()
    if verify:
        module.verify()
    return module


def _load(source: str, tmp_path, stem="_emitted"):
    path = tmp_path / f"{stem}.py"
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location(stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _elman_loop(X, h, W, U):
    hs = []
    for x_t in X:
        h = np.tanh(x_t @ W + h @ U)
        hs.append(h)
    return np.stack(hs)


def _elman_args(seed, steps=5, batch=2):
    r = np.random.default_rng(seed)
    return (r.standard_normal((steps, batch, 3)), r.standard_normal((batch, 4)),
            r.standard_normal((3, 4)), r.standard_normal((4, 4)))


@pytest.mark.parametrize("symbol", ['"a(): pass\\0Aimport os\\0Adef b"', '"np"', '"class"',
                                    '"range"', '"__builtins__"', '"h x"', '"1a"', '""'])
@pytest.mark.parametrize("buffers", [True, False])
def test_an_ir_symbol_name_never_becomes_code(symbol, buffers, tmp_path):
    """``scanopt opt FILE.mlir --emit=numpy`` emits whatever symbol names the file has."""
    module = _parse_ir(_ELMAN.replace("@NAME", f"@{symbol}"))
    source = numpy_emitter.emit_numpy_module(module, buffers=buffers)
    tree = ast.parse(source)
    assert [type(node).__name__ for node in tree.body] == (
        ["Import", "Assign", "FunctionDef", "FunctionDef"] if buffers else ["Import",
                                                                           "FunctionDef"])
    assert ast.unparse(tree.body[0]) == "import numpy as np"
    name = tree.body[-1].name
    assert module.ops.first.sym_name.data == name  # callers look the function up by it
    run = getattr(_load(source, tmp_path), name)
    args = _elman_args(0)
    np.testing.assert_allclose(run(*args, 5), _elman_loop(*args), rtol=1e-12)


_REDUCE = '''
func.func @total(%X: tensor<?x2x3xf64>, %n_steps: index) -> tensor<?x2xf64> {
  %ys = scan.loop seqs(%X : tensor<?x2x3xf64>) steps %n_steps -> tensor<?x2xf64> {
  ^bb0(%x_t: tensor<2x3xf64>):
    %r = scan.index %x_t {spec = ["SPEC"]} : (tensor<2x3xf64>) -> tensor<2x3xf64>
    %s = scan.reduce %r {kind = "KIND", axis = array<i64: 1>} : (tensor<2x3xf64>) -> tensor<2xf64>
    scan.yield %s : tensor<2xf64>
  }
  func.return %ys : tensor<?x2xf64>
}
'''


@pytest.mark.parametrize("kind, spec", [("sum(); import os; np.sum", ":"), ("sum", "0:1; 2"),
                                        ("sum", "1:2:3:4"), ("sum", "x")])
def test_unverified_ir_text_never_becomes_code(kind, spec):
    """The verifiers reject these; the emitter, given an unverified module, refuses them too."""
    module = _parse_ir(_REDUCE.replace("KIND", kind).replace("SPEC", spec), verify=False)
    with pytest.raises(NotImplementedError, match="no NumPy lowering for"):
        numpy_emitter.emit_numpy_module(module, buffers=True)


def test_valid_index_and_reduce_text_emits():
    module = _parse_ir(_REDUCE.replace("KIND", "max").replace("SPEC", "::-1"))
    source = numpy_emitter.emit_numpy_module(module, buffers=True)
    namespace: dict = {}
    exec(compile(source, "<emitted>", "exec"), namespace)
    X = np.random.default_rng(0).standard_normal((4, 2, 3))
    np.testing.assert_array_equal(namespace["total"](X, 4), X[:, ::-1].max(axis=2))


def test_several_functions_in_one_module_have_their_own_workspaces(tmp_path):
    text = _ELMAN.replace("@NAME", "@first") + _ELMAN.replace("@NAME", "@second").replace(
        "2x", "5x")
    source = numpy_emitter.emit_numpy_module(_parse_ir(text), buffers=True)
    names = _module_level_names(source)
    assert len(names) == len(set(names)), names
    module = _load(source, tmp_path)
    for _ in range(2):  # the second round reuses the workspaces
        for name, batch in (("first", 2), ("second", 5)):
            args = _elman_args(batch, batch=batch)
            np.testing.assert_allclose(getattr(module, name)(*args, 5), _elman_loop(*args),
                                       rtol=1e-12)


# --------------------------------------------------------------------------------------------
# The user's lines in comments
# --------------------------------------------------------------------------------------------

# Characters that str.splitlines() (and so an editor, or a careless renderer) treats as line
# breaks, unprintable and bidi-control characters, quotes, backslashes and the emitter's own
# comment marker.
_TAILS = ["\u2028 import os", "\u2029 import os", "\x85 import os", "\x0c import os",
          "\x0b import os", "\x1c\x1d\x1e import os", "\"\"\" ''' \" ' \\", "\\",
          "__scanopt_comment__: import os", "'__scanopt_comment__: x'", "\x1b[2J \x7f",
          "\u202e \u2066 \u200b \ufeff \ufffd", "# # # ''' \"\"\""]

_TAILED_STEP = '''
import numpy as np


def step(x_t, h, W, b):  # TAIL
    z = x_t @ W + b  # TAIL
    hn = np.tanh(z + h * 0.5)  # TAIL
    return hn, hn.sum(axis=1)  # TAIL
'''


def _code_only(source: str) -> str:
    """The module's code: its ast, without docstrings (they name the step's file)."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.FunctionDef) and node.body and \
                isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value,
                                                                  ast.Constant):
            node.body = node.body[1:]
    return ast.dump(tree)


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_no_text_on_the_users_lines_changes_the_code(optimize, newline, tmp_path):
    def make(seed):
        r = np.random.default_rng(seed)
        return dict(sequences=r.standard_normal((5, 3, 4)),
                    outputs_info=[r.standard_normal((3, 4)), None],
                    non_sequences=[r.standard_normal((4, 4)), r.standard_normal(4)])

    sources = {}
    for k, tail in enumerate(["plain", *_TAILS]):
        # Code objects equal but for comments share what was compiled for them (in memory, by
        # the frontend): k more lines before each step make their code objects differ.
        text = ("\n" * k + _TAILED_STEP.replace("TAIL", tail)).replace("\n", newline)
        with generated_module(text, tmp_path, "_tails") as module:
            check(module.step, make, optimize=optimize, keep=["last", "all"])
            sources[tail] = scanopt.step(module.step).source(**make(1), optimize=optimize,
                                                             keep=["last", "all"])
    for tail, source in sources.items():
        assert _code_only(source) == _code_only(sources["plain"]), tail
        assert all(c.isprintable() or c == "\n" for c in source), tail
        assert source.count("\n") == sources["plain"].count("\n"), tail
    # The comments quote the user's lines, their escapes visible.
    assert "hn = np.tanh(z + h * 0.5) # plain" in sources["plain"]
    bidi = "\u202e \u2066 \u200b \ufeff \ufffd"
    assert "\\u202e \\u2066 \\u200b \\ufeff \ufffd" in sources[bidi]


@pytest.mark.parametrize("header", [
    "Generated from `step` (evil\n'__scanopt_comment__: x'.py:2).",
    "x\n'__scanopt_comment__: unterminated\ndef f(): pass\nimport os",
    '__scanopt_comment__: x', "\"\"\"'''\\\r\u2028\x00"])
def test_a_header_is_a_docstring_whatever_it_says(header, tmp_path):
    module = _parse_ir(_ELMAN.replace("@NAME", "@elman"))
    source = numpy_emitter.emit_numpy_module(module, header=header, buffers=True)
    tree = ast.parse(source)
    assert ast.get_docstring(tree, clean=False) == header
    assert [ast.unparse(n) for n in tree.body if isinstance(n, ast.Import)] == \
        ["import numpy as np"]
    args = _elman_args(1)
    np.testing.assert_allclose(_load(source, tmp_path).elman(*args, 5), _elman_loop(*args),
                               rtol=1e-12)


def test_a_step_in_a_file_whose_name_has_a_line_break(tmp_path):
    """The header names the step's file: a line of it must not be taken for a comment."""
    path = tmp_path / "evil\n'__scanopt_comment__: x'.py"
    path.write_text("import numpy as np\n\n\ndef step(x_t, h):\n    return np.tanh(x_t + h)\n")
    spec = importlib.util.spec_from_file_location("_evil_file", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    X, h0 = np.random.default_rng(0).standard_normal((2, 4, 3))
    assert_matches(scanopt.scan(module.step, X, h0[0]),
                   plain_loop(module.step, sequences=X, outputs_info=h0[0]))


# --------------------------------------------------------------------------------------------
# Aliasing
# --------------------------------------------------------------------------------------------

CAPTURED = np.random.default_rng(9).standard_normal((3, 4))


def carry_reversed(x_t, h, W):
    return h[::-1]


def carry_is_the_slice(x_t, h, W):
    return x_t


def carry_unchanged(x_t, h, W):
    return h


def carry_is_captured(x_t, h, W):
    return CAPTURED


def carry_through_reshapes(h, W):
    return h.reshape(4, 3).reshape(3, 4)


def same_dtype_astype(x_t, h, W):
    return (h @ W).astype(np.float64)


def swapped_carries(x_t, h, c, W):
    return c, h


def same_value_twice(x_t, h, c, W):
    return h, h


def slice_twice(x_t, h, c, W):
    return x_t, x_t


def output_and_its_transpose(x_t, h, W):  # the transpose is sunk after the loop: a view of hs
    hn = np.tanh(h @ W)
    return hn, hn.T


def output_and_its_reverse(x_t, h, W):
    hn = np.tanh(h @ W)
    return hn, hn[::-1]


def reversed_carry_and_carry(x_t, h, W):
    return h[:, ::-1], h


def non_sequence_as_output(x_t, h, W):
    return h @ W, W


def captured_as_output(x_t, h, W):
    return CAPTURED + h, CAPTURED


def slice_as_output(x_t, h, W):
    return x_t + h, x_t


def three_outputs_one_value(x_t, h, W):
    y = h @ W
    return np.tanh(y), y, y


def per_step_and_transpose(x_t, W):
    y = x_t @ W
    return y, y.T


def non_sequence_only(x_t, W):
    return W


def reversed_slice_only(x_t, W):
    return x_t[::-1]


def passes_on_previous(h, c, s):  # c is the previous h: read two steps after h was written
    hn = np.tanh(h)
    return hn, h, s + c


def passes_on_previous_scaled(h, c, s):
    hn = np.tanh(h)
    sn = s + c * 2
    return hn, h, sn


def passes_on_previous_reversed(h, c):
    return np.tanh(h) + 0.5, h[::-1]


def reads_old_value_after_new(h, c):
    cn = c + h
    hn = np.tanh(cn)
    return hn, h


def _keeps(n):
    return ["all", "last", *map(list, itertools.product(["all", "last"], repeat=n))] \
        if n > 1 else ["all", "last"]


# function → (data, number of outputs, captured arrays)
ALIASING = {
    carry_reversed: (_data(), 1, ()),
    carry_is_the_slice: (_data(), 1, ()),
    carry_unchanged: (_data(), 1, ()),
    carry_is_captured: (_data(), 1, (CAPTURED,)),
    carry_through_reshapes: (_data(n_seqs=0), 1, ()),
    same_dtype_astype: (_data(), 1, ()),
    swapped_carries: (_data(n_carries=2), 2, ()),
    same_value_twice: (_data(n_carries=2), 2, ()),
    slice_twice: (_data(n_carries=2), 2, ()),
    output_and_its_transpose: (_data(n_outs=1), 2, ()),
    output_and_its_reverse: (_data(n_outs=1), 2, ()),
    reversed_carry_and_carry: (_data(n_outs=1), 2, ()),
    non_sequence_as_output: (_data(n_outs=1), 2, ()),
    captured_as_output: (_data(n_outs=1), 2, (CAPTURED,)),
    slice_as_output: (_data(n_outs=1), 2, ()),
    three_outputs_one_value: (_data(n_outs=2), 3, ()),
    per_step_and_transpose: (_data(n_carries=0, n_outs=2), 2, ()),
    non_sequence_only: (_data(n_carries=0, n_outs=1), 1, ()),
    reversed_slice_only: (_data(n_carries=0, n_outs=1), 1, ()),
    passes_on_previous: (_data(n_seqs=0, n_carries=3, n_params=0), 3, ()),
    passes_on_previous_scaled: (_data(n_seqs=0, n_carries=3, n_params=0), 3, ()),
    passes_on_previous_reversed: (_data(n_seqs=0, n_carries=2, n_params=0), 2, ()),
    reads_old_value_after_new: (_data(n_seqs=0, n_carries=2, n_params=0), 2, ()),
}


def _with_steps(make, steps):
    def made(seed):
        kw = make(seed)
        kw["n_steps"] = steps
        return kw
    return made


@pytest.mark.parametrize("fn", list(ALIASING), ids=lambda f: f.__name__)
def test_results_are_fresh_and_inputs_untouched(fn, optimize):
    make, n_outputs, captured = ALIASING[fn]
    n_carries = sum(v is not None for v in make(0)["outputs_info"])
    for keep, steps in itertools.product(_keeps(n_outputs), (5, 0)):
        keeps = [keep] * n_outputs if isinstance(keep, str) else keep
        if steps == 0 and "last" in keeps[n_carries:]:
            continue  # the last value of an output that is not fed back: an error
        check(fn, _with_steps(make, steps), optimize=optimize, keep=keep, captured=captured)


def _backwards_strided(make):
    """The same data as strided sequences, a Fortran-ordered initial state, go_backwards."""
    def made(seed):
        kw = make(seed)
        kw["sequences"] = [np.repeat(s, 2, axis=-1)[..., ::2] for s in kw["sequences"]]
        kw["outputs_info"] = [None if v is None else np.asfortranarray(v)
                              for v in kw["outputs_info"]]
        kw["go_backwards"] = True
        return kw
    return made


@pytest.mark.parametrize("fn", [carry_is_the_slice, slice_twice, slice_as_output,
                                reversed_slice_only, output_and_its_transpose, carry_unchanged],
                         ids=lambda f: f.__name__)
def test_results_are_fresh_backwards_and_from_strided_inputs(fn, optimize):
    make, n_outputs, captured = ALIASING[fn]
    for keep in ("all", "last"):
        check(fn, _backwards_strided(make), optimize=optimize, keep=keep, captured=captured)


def noise_carry(h, acc, rng):  # the carry is a pre-drawn number itself
    return rng.random((3, 4)), acc + h


def noise_carry_reversed(h, acc, rng):
    u = rng.standard_normal((3, 4))
    return u[::-1], acc + h


def noise_and_moving_average(e, y, rng):  # an MA(1) process
    e_new = rng.standard_normal((3, 4))
    return e_new, e_new + 0.5 * e + 0 * y


@pytest.mark.parametrize("fn", [noise_carry, noise_carry_reversed, noise_and_moving_average],
                         ids=lambda f: f.__name__)
def test_a_carry_drawn_in_chunks_survives_the_next_chunk(fn, optimize, monkeypatch):
    """Pre-drawn numbers live in a workspace array that each chunk's draws overwrite: a carry
    that is one of them must be carried as a copy. (Chunks are at most 64 MiB; here 3 steps.)"""
    monkeypatch.setattr(numpy_emitter, "PREDRAW_BYTES", 3 * 3 * 4 * 8)
    make = _data(n_seqs=0, n_carries=2, n_params=0, rng=True, steps=10)
    if optimize:
        source = scanopt.step(fn).source(**make(1), optimize=optimize)
        assert "for t0 in range(0, n_steps, 3)" in source
    for keep in _keeps(2):
        check(fn, make, optimize=optimize, keep=keep)


# --------------------------------------------------------------------------------------------
# Threads
# --------------------------------------------------------------------------------------------

def lstm_step(x_t, h, c, W, U, b):
    z = x_t @ W + h @ U + b
    i = 1 / (1 + np.exp(-z[:, :4]))
    f = 1 / (1 + np.exp(-z[:, 4:8]))
    o = 1 / (1 + np.exp(-z[:, 8:12]))
    c_new = f * c + i * np.tanh(z[:, 12:])
    return o * np.tanh(c_new), c_new


def _lstm_data(seed):
    r = np.random.default_rng(seed)
    return dict(sequences=r.standard_normal((4 + seed % 5, 3, 5)),
                outputs_info=[r.standard_normal((3, 4)), r.standard_normal((3, 4))],
                non_sequences=[r.standard_normal((5, 16)), r.standard_normal((4, 16)),
                               r.standard_normal(16)])


def test_a_spare_workspace_taken_by_another_call_meanwhile():
    """Two calls may both see one spare workspace, then both try to take it: a check of the
    list followed by a pop is a race (a free-threaded Python runs them in parallel)."""
    step_args = _lstm_data(3)
    scanopt.scan(lstm_step, **step_args)
    module_globals = _compiled(lstm_step)[0].run.__globals__

    class TakenMeanwhile(list):
        def __bool__(self):  # another call takes the set right after this one looked
            nonempty = len(self) > 0
            self.clear()
            return nonempty

    module_globals["_spare_workspaces"] = TakenMeanwhile(module_globals["_spare_workspaces"])
    try:
        assert_matches(scanopt.scan(lstm_step, **step_args), _expected(lstm_step, step_args,
                                                                         "all"))
    finally:
        module_globals["_spare_workspaces"] = []


@pytest.mark.parametrize("keep", ["all", "last"])
def test_threads_calling_one_compiled_loop(keep, optimize):
    n_threads, calls = 8, 12
    scanopt.scan(lstm_step, optimize=optimize, keep=keep, **_lstm_data(0))  # compile once
    results: dict[int, list] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(n_threads)

    def worker(k):
        try:
            start.wait()
            for call in range(calls):
                seed = 1 + k * calls + call  # sequence lengths differ: workspaces change
                kw = _read_only(_lstm_data(seed))
                out = scanopt.scan(lstm_step, optimize=optimize, keep=keep, **kw)
                results.setdefault(k, []).append((seed, out, [a.copy() for a in out]))
        except BaseException as error:  # reported below, with the thread's traceback
            errors.append(error)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    try:
        threads = [threading.Thread(target=worker, args=(k,)) for k in range(n_threads)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    if errors:
        raise errors[0]
    every = []
    for k in range(n_threads):
        for seed, out, saved in results[k]:
            assert_matches(out, _expected(lstm_step, _lstm_data(seed), keep))
            for a, s in zip(out, saved):  # no other thread's call changed it
                np.testing.assert_array_equal(a, s)
            every.extend(out)
    _assert_disjoint(every, _workspace_arrays(lstm_step))
