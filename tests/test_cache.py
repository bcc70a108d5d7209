"""The disk cache: a new process is served from disk without xDSL; damage is a warned miss.

Most tests run the step in fresh processes (``sys.executable``) against a private
``SCANOPT_CACHE_DIR`` and read the ``SCANOPT_DEBUG_CACHE=1`` lines, one per lookup. The step
lives in a ``steps.py`` written to a temporary directory, so tests can edit it between runs.
Bytecode writing is off in those processes: an edit that keeps the file's size within the same
second would otherwise run a stale ``.pyc``.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import scanopt
from scanopt import cache
from scanopt.compiled import CompiledLoop
from scanopt.frontend.captures import CapturePlan
from scanopt.signature import AVal, RngVal
from conftest import assert_matches, plain_loop

REPO = Path(scanopt.__file__).resolve().parent.parent


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    path = tmp_path / "cache"
    monkeypatch.setenv("SCANOPT_CACHE_DIR", str(path))
    monkeypatch.delenv("SCANOPT_DEBUG_CACHE", raising=False)
    monkeypatch.delenv("SCANOPT_DISABLE", raising=False)
    scanopt.clear_cache()
    yield path
    scanopt.clear_cache()


# ---------------------------------------------------------------------------------------------
# A project in a temporary directory, run in new processes


STEPS = '''\
import os

import numpy as np

SCALE = float(os.environ.get("STEP_SCALE", "0.5"))


def step(x_t, h, W):
    return np.tanh(x_t @ W + sigmoid(h) * SCALE)


def sigmoid(z):
    return 1 / (1 + np.exp(-z))
'''

SCRIPT = '''\
import sys, time
import numpy as np
import scanopt, steps

X, h0, W = (np.load(n + ".npy") for n in ("X", "h0", "W"))
start = time.perf_counter()
out = scanopt.scan(steps.step, sequences=X, outputs_info=h0, non_sequences=W)
seconds = time.perf_counter() - start
xdsl = "xdsl" in sys.modules
again = scanopt.scan(steps.step, sequences=X, outputs_info=h0, non_sequences=W)
assert np.array_equal(out, again)
np.save("out.npy", out)
print(f"seconds={seconds:.6f} xdsl={xdsl}")
'''


@dataclass
class Run:
    out: np.ndarray
    seconds: float
    xdsl: bool
    log: list[str]  # the SCANOPT_DEBUG_CACHE lines, without the function and key
    stderr: str


class Project:
    def __init__(self, root: Path, cache_dir: Path):
        self.root, self.cache_dir = root, cache_dir
        root.mkdir(parents=True, exist_ok=True)
        (root / "steps.py").write_text(STEPS)
        (root / "main.py").write_text(SCRIPT)
        rng = np.random.default_rng(0)
        self.inputs = (rng.standard_normal((12, 4, 8)).astype(np.float32),
                       np.zeros((4, 8), np.float32),
                       (rng.standard_normal((8, 8)) * 0.3).astype(np.float32))
        for name, value in zip(("X", "h0", "W"), self.inputs):
            np.save(root / f"{name}.npy", value)

    def env(self, **extra) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SCANOPT_")}
        env.update(PYTHONPATH=os.pathsep.join([str(REPO), str(self.root)]),
                   PYTHONDONTWRITEBYTECODE="1", SCANOPT_CACHE_DIR=str(self.cache_dir),
                   SCANOPT_DEBUG_CACHE="1", **extra)
        return env

    def popen(self, **env) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "main.py"], cwd=self.root, env=self.env(**env),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def finish(self, process: subprocess.Popen) -> Run:
        stdout, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr
        match = re.search(r"seconds=([0-9.]+) xdsl=(True|False)", stdout)
        assert match, stdout
        log = [re.sub(r"^scanopt cache: \S+ \(\S+\) (\[\w+\] )?", "", line)
               for line in stderr.splitlines() if line.startswith("scanopt cache: ")]
        return Run(np.load(self.root / "out.npy"), float(match.group(1)),
                   match.group(2) == "True", log, stderr)

    def run(self, **env) -> Run:
        return self.finish(self.popen(**env))

    def expected(self, **env) -> np.ndarray:
        """The plain loop over the current steps.py, with ``env`` as its environment."""
        namespace: dict = {}
        saved = dict(os.environ)
        try:
            os.environ.update(env)
            path = self.root / "steps.py"
            exec(compile(path.read_text(), str(path), "exec"), namespace)
        finally:
            os.environ.clear()
            os.environ.update(saved)
        X, h0, W = self.inputs
        return plain_loop(namespace["step"], sequences=X, outputs_info=h0, non_sequences=W)

    def edit(self, old: str, new: str) -> None:
        path = self.root / "steps.py"
        text = path.read_text()
        assert old in text
        path.write_text(text.replace(old, new))

    def entry(self) -> tuple[Path, dict]:
        (path,) = (self.cache_dir / "index").glob("*.json")
        return path, json.loads(path.read_text())

    def module(self) -> Path:
        return self.cache_dir / "generated" / self.entry()[1]["module"]


@pytest.fixture
def project(tmp_path, cache_dir):
    return Project(tmp_path / "project", cache_dir)


def test_a_new_process_is_served_from_disk_without_importing_xdsl(project):
    first = project.run()
    assert first.log == ["miss: no entry; compiled, stored", "hit: memory"]
    assert first.xdsl

    second = project.run()
    assert second.log == ["hit: disk", "hit: memory"]
    assert not second.xdsl
    assert second.seconds < 0.1
    np.testing.assert_array_equal(second.out, first.out)
    assert_matches(second.out, project.expected())


def test_the_cache_directory_is_private(cache_dir):
    cache.cache_root()
    cache.generated_dir()
    assert stat.S_IMODE(os.stat(cache_dir).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(cache_dir / "generated").st_mode) == 0o700


def test_entries_are_json_with_the_version_first(project):
    project.run()
    path, entry = project.entry()
    assert list(entry)[:2] == ["format", "scanopt"]
    assert entry["scanopt"] == scanopt.__version__
    assert path.stem == entry["key"]
    module = project.module()
    assert module.name == f"scanopt_generated_{entry['sha256'][:24]}.py"
    assert stat.S_IMODE(os.stat(path).st_mode) & 0o077 == 0
    assert not list(path.parent.glob("*.tmp"))
    kinds = {tuple(g["path"][-1]): g["expect"][0] for g in entry["guards"]}
    assert kinds[("global", "SCALE")] == "const"
    assert kinds[("global", "sigmoid")] == "source"
    assert kinds[("global", "np")] == "named"


@pytest.mark.parametrize("damage", ["edited", "truncated", "deleted"])
def test_a_damaged_module_is_a_warned_miss(project, damage):
    project.run()
    module = project.module()
    if damage == "edited":
        module.write_text(module.read_text().replace("np.tanh", "np.sin"))
    elif damage == "truncated":
        module.write_bytes(module.read_bytes()[:40])
    else:
        module.unlink()

    run = project.run()
    assert "CacheWarning" in run.stderr
    why = "module missing" if damage == "deleted" else "module hash mismatch"
    assert run.log[0] == f"miss: {why}; compiled, stored"
    assert_matches(run.out, project.expected())
    assert project.run().log[0] == "hit: disk"  # the entry was published again


@pytest.mark.parametrize("damage", ["truncated", "edited", "garbage"])
def test_a_damaged_index_entry_is_a_warned_miss(project, damage):
    project.run()
    path, entry = project.entry()
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    elif damage == "edited":  # a field changed without its checksum
        path.write_text(path.read_text().replace('"n_outputs": 1', '"n_outputs": 2'))
    else:
        path.write_bytes(b"\x00\xff" * 50)

    run = project.run()
    assert "CacheWarning" in run.stderr
    assert run.log[0].startswith("miss: entry ")
    assert run.log[0].endswith("; compiled, stored")
    assert_matches(run.out, project.expected())
    assert project.run().log[0] == "hit: disk"


def test_editing_the_step_is_a_miss(project):
    project.run()
    project.edit("x_t @ W + sigmoid(h) * SCALE", "x_t @ W - sigmoid(h) * SCALE")
    run = project.run()
    assert run.log[0] == "miss: no entry; compiled, stored"
    assert_matches(run.out, project.expected())


def test_editing_a_helper_is_a_miss(project):
    project.run()
    project.edit("1 / (1 + np.exp(-z))", "1 / (1 + np.exp(-2 * z))")
    run = project.run()
    assert run.log[0] == "miss: captured `global sigmoid` changed; compiled, stored"
    assert_matches(run.out, project.expected())
    assert project.run().log[0] == "hit: disk"


def test_a_changed_captured_constant_is_a_miss(project):
    first = project.run(STEP_SCALE="0.5")
    assert project.run(STEP_SCALE="0.5").log[0] == "hit: disk"
    run = project.run(STEP_SCALE="2.0")
    assert run.log[0] == "miss: captured `global SCALE` changed; compiled, stored"
    assert_matches(run.out, project.expected(STEP_SCALE="2.0"))
    assert not np.array_equal(run.out, first.out)


def test_two_processes_compile_the_same_entry_once(project):
    processes = [project.popen(), project.popen()]
    runs = [project.finish(p) for p in processes]
    firsts = sorted(run.log[0] for run in runs)
    assert firsts[0].startswith("hit: disk"), firsts
    assert firsts[1] == "miss: no entry; compiled, stored", firsts
    np.testing.assert_array_equal(runs[0].out, runs[1].out)


# ---------------------------------------------------------------------------------------------
# In this process: guard kinds, the log, the key


from numpy import tanh as np_tanh  # noqa: E402  (a NumPy function captured under another name)

W_CAP = np.eye(3) * 0.5
SHAPE = (1, 3)
COEFS = [0.5, 2]
DT = np.float64
DTYPE = np.dtype(np.float64)
OFF = None
BIG = 2 ** 70


def helper(z):
    return np_tanh(z) * COEFS[0]


def make_step(scale):
    def step(x_t, h):
        y = helper(x_t @ W_CAP + h) * scale + np.reshape(h, SHAPE).astype(DTYPE) * 0
        return (y + BIG * 0 + (OFF is None)).astype(DT)
    return step


def test_every_guard_kind_survives_the_disk(cache_dir):
    global W_CAP
    step = make_step(1.5)
    X, h0 = np.linspace(-1, 1, 12).reshape(4, 1, 3), np.zeros((1, 3))
    first = scanopt.scan(step, sequences=X, outputs_info=h0)
    (path,) = (cache_dir / "index").glob("*.json")
    kinds = {g["expect"][0] for g in json.loads(path.read_text())["guards"]}
    assert kinds == {"aval", "source", "named", "len", "const"}

    scanopt.clear_cache()
    second = scanopt.scan(step, sequences=X, outputs_info=h0)
    assert scanopt.cache_info()["disk_hits"] == 1
    np.testing.assert_array_equal(second, first)
    # The plan loaded from disk guards the live objects like a fresh one.
    saved = W_CAP
    try:
        W_CAP = np.eye(3, dtype=np.float32)
        third = scanopt.scan(step, sequences=X, outputs_info=h0)
        assert_matches(third, plain_loop(step, sequences=X, outputs_info=h0))
    finally:
        W_CAP = saved
    assert scanopt.cache_info()["disk_hits"] == 1


def test_one_log_line_per_lookup(cache_dir, monkeypatch, capsys):
    monkeypatch.setenv("SCANOPT_DEBUG_CACHE", "1")
    step = make_step(0.25)
    X, h0 = np.ones((3, 1, 3)), np.zeros((1, 3))
    scanopt.scan(step, sequences=X, outputs_info=h0)
    scanopt.scan(step, sequences=X, outputs_info=h0)
    scanopt.clear_cache()
    scanopt.scan(step, sequences=X, outputs_info=h0)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 3
    prefix = "scanopt cache: make_step.<locals>.step (test_cache.py:"
    assert all(line.startswith(prefix) for line in lines)
    assert lines[0].endswith("miss: no entry; compiled, stored")
    assert lines[1].endswith("hit: memory")
    assert lines[2].endswith("hit: disk")


CALL_KEY = ((AVal(np.dtype(np.float32), (None, 8)),), (AVal(np.dtype(np.float32), (8,)),), (),
            False, True, "all")
OPTIONS = {"backend": "numpy", "exact_random": False, "optimize": True}


def plain_step(x_t, h):
    return x_t + h


def test_the_key_covers_options_signatures_and_which_lambda():
    key = cache.disk_key(plain_step, CALL_KEY, OPTIONS)
    assert key is not None and re.fullmatch(r"[0-9a-f]{64}", key)
    assert cache.disk_key(plain_step, CALL_KEY, OPTIONS) == key
    assert cache.disk_key(plain_step, CALL_KEY, {**OPTIONS, "optimize": False}) != key
    assert cache.disk_key(plain_step, CALL_KEY, {**OPTIONS, "backend": "cupy"}) != key
    f64 = ((AVal(np.dtype(np.float64), (None, 8)),),) + CALL_KEY[1:]
    assert cache.disk_key(plain_step, f64, OPTIONS) != key
    weak = CALL_KEY[:2] + ((AVal(np.dtype(np.float64), (), weak=True),),) + CALL_KEY[3:]
    assert cache.disk_key(plain_step, weak, OPTIONS) != key
    rng = CALL_KEY[:2] + ((RngVal(),),) + CALL_KEY[3:]
    assert cache.disk_key(plain_step, rng, OPTIONS) != key

    add, mul = (lambda x_t, h: x_t + h), (lambda x_t, h: x_t * h)  # one line, same arguments
    assert cache.disk_key(add, CALL_KEY, OPTIONS) != cache.disk_key(mul, CALL_KEY, OPTIONS)

    namespace: dict = {}
    exec("def f(x_t, h):\n    return x_t + h\n", namespace)
    assert cache.disk_key(namespace["f"], CALL_KEY, OPTIONS) is None  # no source file
    assert cache.disk_key(np.add, CALL_KEY, OPTIONS) is None


def fake_compiled(plan: CapturePlan, source: str = "def plain_step(a, b, n):\n    return a\n"):
    namespace: dict = {}
    exec(source, namespace)
    return CompiledLoop(namespace["plain_step"], source, plan, 1, "", False, ("a remark",))


def test_store_and_load_round_trip(cache_dir):
    plan = CapturePlan()
    plan.add((("global", "np"),), ("is", np))
    plan.add((("global", "helper"),), ("code", helper.__code__))
    plan.add((("global", "W_CAP"),), AVal(np.dtype(np.float64), (3, 3)))
    plan.add((("global", "COEFS"),), ("len", list, 2))
    plan.add((("global", "COEFS"), ("item", 0)), ("const", float, 0.5))
    plan.add((("global", "DTYPE"),), ("const", type(DTYPE), DTYPE))
    plan.add((("global", "DT"),), ("is", np.float64))
    key = cache.disk_key(plain_step, CALL_KEY, OPTIONS)
    assert cache.store(key, plain_step, fake_compiled(plan)) == "stored"

    loaded = cache.load(key, plain_step)
    assert loaded is not None
    assert loaded.remarks == ("a remark",) and loaded.n_outputs == 1 and loaded.ir == ""
    assert loaded.plan.inputs == plan.inputs
    assert loaded.plan.guards[(("global", "helper"),)][0] == "source"
    assert loaded.plan.guards[(("global", "DT"),)] == ("named", "numpy:float64")
    assert loaded.plan.fetch(plain_step) == [W_CAP]
    pinned = loaded.plan.pinned(plain_step)
    assert pinned.guards == plan.guards
    assert loaded.run.__code__.co_filename.endswith(
        f"generated{os.sep}{cache.module_file_name(loaded.source)}")


def test_a_capture_without_a_name_is_not_stored(cache_dir):
    plan = CapturePlan()
    plan.add((("global", "REPO"),), ("is", REPO))
    key = cache.disk_key(plain_step, CALL_KEY, OPTIONS)
    outcome = cache.store(key, plain_step, fake_compiled(plan))
    assert outcome.startswith("not stored (`global REPO` is a ")
    assert cache.load(key, plain_step) is None
    assert not list((cache_dir / "index").glob("*.json"))


def test_load_checks_the_module_against_its_hash(cache_dir):
    key = cache.disk_key(plain_step, CALL_KEY, OPTIONS)
    compiled = fake_compiled(CapturePlan())
    cache.store(key, plain_step, compiled)
    module = cache_dir / "generated" / cache.module_file_name(compiled.source)
    module.write_text(compiled.source.replace("return a", "return b"))
    with pytest.warns(cache.CacheWarning, match="does not match the sha256"):
        assert cache.load(key, plain_step) is None


def test_a_shared_cache_directory_is_not_used(cache_dir, monkeypatch):
    cache.cache_root()
    os.chmod(cache_dir, 0o777)
    compiled = fake_compiled(CapturePlan())
    with pytest.warns(cache.CacheWarning, match="writable by other users"):
        result, from_disk = cache.compiled_for(plain_step, CALL_KEY, OPTIONS, lambda: compiled)
    assert result is compiled and not from_disk
    assert not (cache_dir / "index").exists() or not list((cache_dir / "index").iterdir())


def test_the_compile_lock_excludes_another_holder(cache_dir):
    import filelock

    errors: list[BaseException] = []

    def other():
        try:
            with cache.compile_lock("k" * 64, timeout=0.2):
                pass
        except BaseException as error:
            errors.append(error)

    with cache.compile_lock("k" * 64):
        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
    assert len(errors) == 1 and isinstance(errors[0], filelock.Timeout)
