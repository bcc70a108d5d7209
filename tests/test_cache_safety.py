"""Cache directory safety: unsafe, read-only, full and disabled directories, many processes at
once, edits that must invalidate entries, the size cap, and ``scanopt cache info|clear``.

Unsafe directories are made for real (chmod; chown when the tests run as root; symbolic
links). A full disk is simulated: every write into the cache directory raises ENOSPC (or
EROFS), through the ``open`` the writers call. Tests compile real step functions (defined here,
or in a project in a temporary directory run in other processes) and compare with the plain loop.
"""

from __future__ import annotations

import errno
import json
import multiprocessing
import os
import shutil
import stat
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

import scanopt
from scanopt import cache
from scanopt.frontend.captures import CapturePlan
from conftest import assert_matches, plain_loop
from test_cache import CALL_KEY, OPTIONS, Project, fake_compiled, plain_step
from test_cache import cache_dir, project  # noqa: F401  (fixtures)
from test_cli import run_cli

ROOT = os.geteuid() == 0 if hasattr(os, "geteuid") else False
X = np.linspace(-1, 1, 12).reshape(4, 3)
H0 = np.zeros(3)


def step_a(x_t, h):
    return np.tanh(x_t + 0.5 * h)


def step_b(x_t, h):
    return np.tanh(x_t - 0.5 * h)


def run_steps(*steps) -> list[Path]:
    """Scan each step (checked against the plain loop); the files their modules run from."""
    files = []
    for step in steps:
        out = scanopt.scan(step, sequences=X, outputs_info=H0)
        assert_matches(out, plain_loop(step, sequences=X, outputs_info=H0))
        source = scanopt.step(step).source(X, H0)  # the in-memory entry just used
        files.append(Path(sys.modules[cache.module_file_name(source)[:-3]].__file__))
    return files


def snapshot(root: Path) -> dict[str, tuple[int, int, int]]:
    """Every name under ``root`` (links not followed) with mode, size and mtime: a write into
    any directory changes its mtime, so equal snapshots mean nothing was written."""
    found = {}
    for directory, subdirs, files in os.walk(root):
        for name in subdirs + files:
            st = os.lstat(os.path.join(directory, name))
            found[os.path.relpath(os.path.join(directory, name), root)] = (
                st.st_mode, st.st_size, st.st_mtime_ns)
    return found


def cache_warnings(caught) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, cache.CacheWarning)]


def assert_in_private_dir(module: Path, cache_path: Path) -> None:
    """Compiled in memory: the module was written, outside the cache, to a directory that only
    this process's user can use."""
    assert module.is_file()
    assert not module.resolve().is_relative_to(cache_path.resolve())
    st = os.stat(module.parent)
    assert stat.S_IMODE(st.st_mode) == 0o700 and st.st_uid == os.getuid()
    assert str(module.parent) == cache.generated_dir()


@pytest.fixture
def fresh(monkeypatch):
    """No in-memory entries, no inherited debug or disable switches."""
    monkeypatch.delenv("SCANOPT_DEBUG_CACHE", raising=False)
    monkeypatch.delenv("SCANOPT_DISABLE", raising=False)
    monkeypatch.delenv("SCANOPT_CACHE_MAX_BYTES", raising=False)
    scanopt.clear_cache()
    yield monkeypatch
    scanopt.clear_cache()


# ---------------------------------------------------------------------------------------------
# Unsafe directories: one warning, nothing read or written, compiled in memory


def private(path: Path, *subdirs: str) -> Path:
    path.mkdir(mode=0o700, parents=True)
    for name in subdirs:
        (path / name).mkdir(mode=0o700)
    return path


def give_away(path: Path, monkeypatch) -> None:
    """Make ``path`` another user's: for real as root, else by changing who we are."""
    if ROOT:
        os.chown(path, 4242, 4242)
    else:
        uid = os.geteuid() + 1
        monkeypatch.setattr(os, "geteuid", lambda: uid)


def world_writable(tmp, mp):
    path = private(tmp / "cache")
    path.chmod(0o777)
    return path


def group_writable(tmp, mp):
    path = private(tmp / "cache")
    path.chmod(0o770)
    return path


def another_users(tmp, mp):
    path = private(tmp / "cache")
    give_away(path, mp)
    return path


def world_writable_generated(tmp, mp):
    path = private(tmp / "cache", "generated", "index", "locks")
    (path / "generated").chmod(0o777)
    return path


def another_users_index(tmp, mp):
    if not ROOT:
        pytest.skip("giving a subdirectory to another user needs root")
    path = private(tmp / "cache", "generated", "index", "locks")
    give_away(path / "index", mp)
    return path


def symlinked_locks(tmp, mp):
    path = private(tmp / "cache", "generated", "index")
    (path / "locks").symlink_to(private(tmp / "elsewhere"))
    return path


def link_to_world_writable(tmp, mp):
    (tmp / "cache").symlink_to(world_writable(tmp / "target", mp))
    return tmp / "cache"


def in_world_writable_parent(tmp, mp):
    shared = private(tmp / "shared")
    shared.chmod(0o777)  # no sticky bit: anyone may rename `cache` and put theirs there
    return private(shared / "cache")


def in_another_users_sticky_parent(tmp, mp):
    if not ROOT:
        pytest.skip("giving a directory to another user needs root")
    shared = private(tmp / "shared")
    shared.chmod(0o1777)
    os.chown(shared, 4242, 4242)  # the owner of a sticky directory may rename what is in it
    return private(shared / "cache")


UNSAFE = {
    "world-writable": (world_writable, "is writable by other users (mode 0777)"),
    "group-writable": (group_writable, "is writable by other users (mode 0770)"),
    "another user's": (another_users, "is owned by another user"),
    "world-writable generated/": (world_writable_generated, "generated is writable by other"),
    "another user's index/": (another_users_index, "index is owned by another user"),
    "symlinked locks/": (symlinked_locks, "locks is a symbolic link"),
    "link to a world-writable directory": (link_to_world_writable, "writable by other users"),
    "world-writable parent": (in_world_writable_parent, "without the sticky bit"),
    "another user's sticky parent": (in_another_users_sticky_parent, "owned by another user"),
}


@pytest.mark.parametrize("kind", UNSAFE)
def test_an_unsafe_directory_is_neither_read_nor_written(tmp_path, fresh, kind):
    make, reason = UNSAFE[kind]
    path = make(tmp_path, fresh)
    fresh.setenv("SCANOPT_CACHE_DIR", str(path))
    before = snapshot(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        modules = run_steps(step_a, step_b)  # two compilations, one warning
    (message,) = cache_warnings(caught)
    assert reason in message and "is not used" in message
    assert snapshot(tmp_path) == before
    for module in modules:
        assert_in_private_dir(module, path)


def test_the_warning_is_given_once_per_directory(tmp_path, fresh):
    first, second = world_writable(tmp_path / "1", fresh), world_writable(tmp_path / "2", fresh)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for path in (first, second, first, second):
            fresh.setenv("SCANOPT_CACHE_DIR", str(path))
            scanopt.clear_cache()
            run_steps(step_a)
    messages = cache_warnings(caught)
    assert len(messages) == 2
    assert str(first) in messages[0] and str(second) in messages[1]


def test_a_private_directory_in_a_sticky_shared_directory_is_used(tmp_path, fresh):
    shared = private(tmp_path / "tmp")
    shared.chmod(0o1777)  # as /tmp: only the owner of `cache` may rename or remove it
    path = shared / "cache"
    fresh.setenv("SCANOPT_CACHE_DIR", str(path))
    with warnings.catch_warnings():
        warnings.simplefilter("error", cache.CacheWarning)
        (module,) = run_steps(step_a)
    assert module.parent == path / "generated"
    assert len(list((path / "index").glob("*.json"))) == 1


def test_a_symlinked_cache_directory_is_resolved_once(tmp_path, fresh):
    target = private(tmp_path / "target")
    link = tmp_path / "link"
    link.symlink_to(target)
    fresh.setenv("SCANOPT_CACHE_DIR", str(link))
    (module,) = run_steps(step_a)
    assert cache.cache_root() == str(target)
    assert module.parent == target / "generated"
    assert len(list((target / "index").glob("*.json"))) == 1


def test_symbolic_links_inside_the_cache_are_not_followed(cache_dir, tmp_path):
    run_steps(step_a)
    (index,) = (cache_dir / "index").glob("*.json")
    module = cache_dir / "generated" / json.loads(index.read_text())["module"]
    elsewhere = private(tmp_path / "elsewhere")

    for damaged, warning in ((index, "is a symbolic link"), (module, "missing or unreadable")):
        copy = elsewhere / damaged.name
        shutil.copyfile(damaged, copy)  # an intact copy: only the link is wrong
        damaged.unlink()
        damaged.symlink_to(copy)
        scanopt.clear_cache()
        with pytest.warns(cache.CacheWarning, match=warning):
            run_steps(step_a)
        assert scanopt.cache_info()["disk_hits"] == 0
        assert damaged.is_file() and not damaged.is_symlink()  # published again, as a file
    scanopt.clear_cache()
    run_steps(step_a)
    assert scanopt.cache_info()["disk_hits"] == 1


# ---------------------------------------------------------------------------------------------
# Read-only and full directories: one warning, compiled in memory, entries still read


@pytest.mark.skipif(ROOT, reason="root writes into a directory whatever its mode")
def test_a_read_only_directory_is_read_but_not_written(cache_dir):
    run_steps(step_a)
    directories = [cache_dir, *(cache_dir / name for name in ("generated", "index", "locks"))]
    for directory in directories:
        directory.chmod(0o500)
    try:
        scanopt.clear_cache()
        names = set(snapshot(cache_dir))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            modules = run_steps(step_a, step_b, step_b)
        assert scanopt.cache_info()["disk_hits"] == 1  # step_a, from the disk
        (message,) = cache_warnings(caught)
        assert "cannot write to the cache directory" in message and "read-only" in message
        assert set(snapshot(cache_dir)) == names
        assert_in_private_dir(modules[1], cache_dir)
    finally:
        for directory in directories:
            directory.chmod(0o700)


def refusing_writes(code: int, under: Path):
    """An ``open`` whose writes into ``under`` (or to a file descriptor) fail with ``code``."""
    def open_(file, mode="r", *args, **kwargs):
        into_cache = isinstance(file, int) or os.path.abspath(file).startswith(str(under))
        if into_cache and any(c in mode for c in "wax+"):
            refused.append(file)
            raise OSError(code, os.strerror(code), None if isinstance(file, int) else file)
        return open(file, mode, *args, **kwargs)
    refused: list = []
    return open_, refused


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS], ids=["full", "read-only"])
@pytest.mark.parametrize("failing", ["module", "index"])
def test_a_full_or_read_only_disk_is_one_warning(cache_dir, monkeypatch, code, failing):
    from scanopt import compiler

    run_steps(step_a)  # stored before the disk filled up
    scanopt.clear_cache()
    open_, refused = refusing_writes(code, cache_dir)
    monkeypatch.setattr(cache, "open", open_, raising=False)  # entries and published modules
    if failing == "module":  # the module written before its import, while compiling
        monkeypatch.setattr(compiler, "open", open_, raising=False)
    names = set(snapshot(cache_dir / "index"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        modules = run_steps(step_b)
        scanopt.clear_cache()
        run_steps(step_a, step_b)
    (message,) = cache_warnings(caught)
    assert f"cannot write to the cache directory {cache_dir}" in message
    assert os.strerror(code) in message
    assert len(refused) == 1  # nothing more is tried in this process
    assert scanopt.cache_info()["disk_hits"] == 1  # step_a: entries are still read
    assert set(snapshot(cache_dir / "index")) == names
    if failing == "module":
        assert_in_private_dir(modules[0], cache_dir)


# ---------------------------------------------------------------------------------------------
# SCANOPT_CACHE_DIR="" turns the disk cache off


def test_an_empty_cache_dir_turns_the_disk_cache_off(tmp_path, fresh, capsys):
    default = tmp_path / "user-cache"
    fresh.setattr(cache.platformdirs, "user_cache_dir", lambda name: str(default / name))
    fresh.delenv("SCANOPT_CACHE_DIR")
    assert cache.configured_root() == str(default / "scanopt")
    run_steps(step_a)  # an entry in the default place, which must now be left alone
    assert len(list((default / "scanopt" / "index").glob("*.json"))) == 1
    before = snapshot(tmp_path)

    fresh.setenv("SCANOPT_CACHE_DIR", "")
    fresh.setenv("SCANOPT_DEBUG_CACHE", "1")
    scanopt.clear_cache()
    capsys.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("error", cache.CacheWarning)
        (module,) = run_steps(step_a)
        scanopt.clear_cache()
        run_steps(step_a)
    assert scanopt.cache_info()["disk_hits"] == 0
    log = [line for line in capsys.readouterr().err.splitlines() if "hit: memory" not in line]
    assert len(log) == 2 and all(line.endswith(
        "miss: the disk cache is off (SCANOPT_CACHE_DIR is empty); compiled, not stored")
        for line in log)
    assert snapshot(tmp_path) == before  # not even the hit time of the entry
    assert cache.cache_root() is None
    assert_in_private_dir(module, default)


# ---------------------------------------------------------------------------------------------
# Many processes at once


WORKER = '''\
import traceback
import warnings

import numpy as np


def run(root, barrier, results):
    try:
        import scanopt
        import steps

        X, h0, W = (np.load(f"{root}/{name}.npy") for name in ("X", "h0", "W"))
        barrier.wait(timeout=120)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out = scanopt.scan(steps.step, sequences=X, outputs_info=h0, non_sequences=W)
        results.put((out, scanopt.cache_info()["disk_hits"], [str(w.message) for w in caught]))
    except BaseException:
        results.put(traceback.format_exc())
'''


def test_eight_processes_compile_one_entry(project, monkeypatch):
    (project.root / "scanopt_test_worker.py").write_text(WORKER)
    monkeypatch.syspath_prepend(str(project.root))  # spawned processes get the same sys.path
    monkeypatch.delitem(sys.modules, "scanopt_test_worker", raising=False)  # gone afterwards
    import scanopt_test_worker

    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(8), context.Queue()
    processes = [context.Process(target=scanopt_test_worker.run,
                                 args=(str(project.root), barrier, results))
                 for _ in range(8)]
    for process in processes:
        process.start()
    try:
        runs = [results.get(timeout=240) for _ in processes]
    finally:
        for process in processes:
            process.join(timeout=60)
            if process.is_alive():
                process.kill()
    failures = [run for run in runs if isinstance(run, str)]
    assert not failures, failures[0]
    outs, disk_hits, messages = zip(*runs)
    assert sorted(disk_hits) == [0] + [1] * 7  # one compiled and published, seven loaded it
    assert not any(messages), messages
    for out in outs[1:]:
        np.testing.assert_array_equal(out, outs[0])
    assert_matches(outs[0], project.expected())

    index, entry = project.entry()  # exactly one, and it is valid
    assert [p.name for p in index.parent.iterdir()] == [index.name]  # no temporaries either
    assert [p.name for p in (project.cache_dir / "generated").iterdir()] == [entry["module"]]
    steps = _import_file(project.root / "steps.py", monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("error", cache.CacheWarning)
        loaded = cache.load(index.stem, steps.step)
    assert loaded is not None and loaded.plan.fetch(steps.step) is not None


def _import_file(path: Path, monkeypatch):
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"_scanopt_test_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------------------------------
# Edits of what the step calls invalidate its entry, across processes


STEPS_WITH_HELPERS = '''\
import os

from helpers import act

GAIN = float(os.environ.get("STEP_GAIN", "1.0"))


def step(x_t, h, W, gain=GAIN):
    return act(x_t @ W + h) * gain
'''

HELPERS = '''\
import numpy as np


def act(z, k=1.0):
    return np.tanh(k * z)
'''


class HelperProject(Project):
    """The step calls ``act`` from another file, ``helpers.py``, and has a default argument."""

    def __init__(self, root: Path, cache_dir: Path):
        super().__init__(root, cache_dir)
        (root / "steps.py").write_text(STEPS_WITH_HELPERS)
        (root / "helpers.py").write_text(HELPERS)

    def edit_helpers(self, old: str, new: str) -> None:
        path = self.root / "helpers.py"
        assert old in path.read_text()
        path.write_text(path.read_text().replace(old, new))

    def expected(self, **env) -> np.ndarray:
        """The plain loop, with the current ``helpers.py`` imported afresh."""
        saved = sys.path[:], sys.dont_write_bytecode
        sys.path.insert(0, str(self.root))
        sys.dont_write_bytecode = True  # an edit within the same second must not hit a .pyc
        sys.modules.pop("helpers", None)
        try:
            return super().expected(**env)
        finally:
            sys.path[:], sys.dont_write_bytecode = saved
            sys.modules.pop("helpers", None)


def test_editing_a_helper_or_a_default_in_another_file_is_a_miss(tmp_path, cache_dir):
    project = HelperProject(tmp_path / "project", cache_dir)
    first = project.run()
    assert first.log[0] == "miss: no entry; compiled, stored"
    assert_matches(first.out, project.expected())

    outs = [first.out]
    for old, new in (("np.tanh(k * z)", "np.sin(k * z)"),  # the helper's body
                     ("k=1.0", "k=0.5")):                   # the helper's default
        project.edit_helpers(old, new)
        run = project.run()
        assert run.log[0] == "miss: captured `global act` changed; compiled, stored"
        assert_matches(run.out, project.expected())
        assert not np.allclose(run.out, outs[-1])
        outs.append(run.out)

    run = project.run(STEP_GAIN="2.0")  # the step's default, from an environment variable
    assert run.log[0] == "miss: captured `default gain` changed; compiled, stored"
    assert_matches(run.out, project.expected(STEP_GAIN="2.0"))
    assert not np.allclose(run.out, outs[-1])
    assert len(list((cache_dir / "index").glob("*.json"))) == 1


# ---------------------------------------------------------------------------------------------
# The size cap: least recently used entries go first


def publish(variant: int, source_variant: int | None = None) -> str:
    """Compile (a stand-in loop, fast) and publish an entry of its own; returns its key."""
    n = variant if source_variant is None else source_variant
    source = f"def plain_step(a, b, n):\n    return a + {n}\n"
    options = {**OPTIONS, "variant": variant}
    compiled, from_disk = cache.compiled_for(
        plain_step, CALL_KEY, options, lambda: fake_compiled(CapturePlan(), source))
    assert not from_disk
    return cache.disk_key(plain_step, CALL_KEY, options)


def age(cache_dir: Path, key: str, seconds_ago: float) -> None:
    when = time.time() - seconds_ago
    os.utime(cache_dir / "index" / f"{key}.json", (when, when))


def present(cache_dir: Path, *keys: str) -> list[bool]:
    return [(cache_dir / "index" / f"{key}.json").exists() for key in keys]


def total_size(cache_dir: Path) -> int:
    """Bytes of the entries, modules and numba's files of them (generated/__pycache__)."""
    return sum(p.stat().st_size for d in ("index", "generated") for p in (cache_dir / d).rglob("*")
               if p.is_file())


def test_least_recently_used_entries_are_evicted_when_publishing(cache_dir, fresh, capsys):
    a, b, c = (publish(i) for i in range(3))
    for key, seconds in ((a, 300), (b, 200), (c, 100)):
        age(cache_dir, key, seconds)
    b_module = json.loads((cache_dir / "index" / f"{b}.json").read_text())["module"]
    compiled, from_disk = cache.compiled_for(plain_step, CALL_KEY, {**OPTIONS, "variant": 0},
                                             lambda: pytest.fail("not a hit"))
    assert from_disk  # a hit makes `a` the most recently used

    one_entry = total_size(cache_dir) // 3
    fresh.setenv("SCANOPT_CACHE_MAX_BYTES", str(total_size(cache_dir) + one_entry // 2))
    fresh.setenv("SCANOPT_DEBUG_CACHE", "1")
    d = publish(3)
    assert capsys.readouterr().err.rstrip().endswith("compiled, stored; evicted 1 entry")
    assert present(cache_dir, a, b, c, d) == [True, False, True, True]
    remaining = sorted(p.name for p in (cache_dir / "generated").iterdir())
    assert b_module not in remaining and len(remaining) == 3  # b's module went with it

    fresh.setenv("SCANOPT_CACHE_MAX_BYTES", "0")  # the entry just published always stays
    e = publish(4)
    assert present(cache_dir, a, c, d, e) == [False, False, False, True]
    assert len(list((cache_dir / "generated").iterdir())) == 1


def test_a_shared_module_stays_until_its_last_entry_goes(cache_dir, fresh):
    f, g, h = publish(0), publish(1, source_variant=0), publish(2)
    assert len(list((cache_dir / "generated").iterdir())) == 2
    for key, seconds in ((f, 300), (g, 200), (h, 100)):
        age(cache_dir, key, seconds)
    root = str(cache_dir)

    fresh.setenv("SCANOPT_CACHE_MAX_BYTES", str(total_size(cache_dir) - 1))
    assert cache._evict(root, keep=h)[1] == 1
    assert present(cache_dir, f, g, h) == [False, True, True]
    assert len(list((cache_dir / "generated").iterdir())) == 2  # g still uses f's module

    fresh.setenv("SCANOPT_CACHE_MAX_BYTES", "1")
    assert cache._evict(root, keep=h) == (total_size(cache_dir), 1)
    assert present(cache_dir, g, h) == [False, True]
    assert len(list((cache_dir / "generated").iterdir())) == 1


def test_unused_modules_and_old_temporaries_are_evicted(cache_dir, fresh):
    key = publish(0)
    generated = cache_dir / "generated"
    orphan = generated / f"scanopt_generated_{'0' * 24}.py"  # a compilation not stored
    old_tmp, new_tmp = generated / ".x.py.1.tmp", cache_dir / "index" / ".y.json.2.tmp"
    for path in (orphan, old_tmp, new_tmp):
        path.write_text("x = 1\n")
    for path in (orphan, old_tmp):
        os.utime(path, (time.time() - 7200,) * 2)
    fresh.setenv("SCANOPT_CACHE_MAX_BYTES", "0")
    assert cache._evict(str(cache_dir), keep=key)[1] == 0
    assert not orphan.exists() and not old_tmp.exists()
    assert new_tmp.exists()  # maybe a write in progress
    assert present(cache_dir, key) == [True]


def numba_files(cache_dir: Path, module: str) -> list[Path]:
    """Files as numba's ``cache=True`` writes them for a function of ``module``."""
    pycache = cache_dir / "generated" / "__pycache__"
    pycache.mkdir(exist_ok=True)
    files = [pycache / f"{module[:-3]}._compiled_steps-12.py311.nbi",
             pycache / f"{module[:-3]}._compiled_steps-12.py311.1.nbc"]
    for path in files:
        path.write_bytes(b"\0" * 100)
    return files


def test_numba_cache_files_count_and_go_with_their_module(cache_dir, fresh):
    a, b = publish(0), publish(1)
    age(cache_dir, a, 300)
    age(cache_dir, b, 100)
    modules = [json.loads((cache_dir / "index" / f"{key}.json").read_text())["module"]
               for key in (a, b)]
    a_files, b_files = (numba_files(cache_dir, module) for module in modules)
    orphans = numba_files(cache_dir, f"scanopt_generated_{'0' * 24}.py")  # module gone
    assert cache._listing(str(cache_dir)).size == total_size(cache_dir)

    fresh.setenv("SCANOPT_CACHE_MAX_BYTES", str(total_size(cache_dir) - 1))
    assert cache._evict(str(cache_dir), keep=b) == (total_size(cache_dir), 1)
    assert present(cache_dir, a, b) == [False, True]
    assert [p.exists() for p in (*a_files, *b_files, *orphans)] == [False] * 2 + [True] * 4

    fresh.setenv("SCANOPT_CACHE_MAX_BYTES", "1")  # numba files without their module go next
    assert cache._evict(str(cache_dir), keep=b)[1] == 0
    assert [p.exists() for p in (*b_files, *orphans)] == [True] * 2 + [False] * 2

    size = total_size(cache_dir)
    assert cache.clear() == (1, size)
    assert not [p for p in cache_dir.rglob("*") if p.is_file() and "locks" not in p.parts]


def test_publishing_below_the_cap_keeps_a_running_total(cache_dir, fresh):
    listings = []
    count = cache._listing
    fresh.setattr(cache, "_listing", lambda root: listings.append(root) or count(root))
    publish(0)  # no total yet: the files are counted
    publish(1), publish(2)
    assert len(listings) == 1
    usage = cache_dir / "usage"
    assert int(usage.read_text().split()[0]) == total_size(cache_dir)

    usage.write_text(f"0 {time.time() - 2 * 86400:.0f}\n")  # counted two days ago: recounted
    publish(3)
    assert len(listings) == 2
    assert int(usage.read_text().split()[0]) == total_size(cache_dir)


def test_the_cap_is_read_from_the_environment(fresh):
    assert cache.max_bytes() == cache.DEFAULT_MAX_BYTES == 256 * 2 ** 20
    fresh.setenv("SCANOPT_CACHE_MAX_BYTES", "1000")
    assert cache.max_bytes() == 1000
    fresh.setenv("SCANOPT_CACHE_MAX_BYTES", "lots")
    with pytest.warns(cache.CacheWarning, match="SCANOPT_CACHE_MAX_BYTES='lots' is not"):
        assert cache.max_bytes() == cache.DEFAULT_MAX_BYTES


def test_a_disk_hit_records_its_use(cache_dir):
    run_steps(step_a)
    (index,) = (cache_dir / "index").glob("*.json")
    os.utime(index, (time.time() - 3600,) * 2)
    scanopt.clear_cache()
    run_steps(step_a)
    assert scanopt.cache_info()["disk_hits"] == 1
    assert time.time() - index.stat().st_mtime < 60


# ---------------------------------------------------------------------------------------------
# scanopt cache info | clear


def info_lines(result) -> dict[str, str]:
    assert result.returncode == 0, result.stderr
    return dict(line.split(": ", 1) for line in result.stdout.splitlines())


def test_cache_info_and_clear(cache_dir, fresh):
    info = info_lines(run_cli("cache", "info"))
    assert info["location"] == str(cache_dir)
    assert info["usable"].startswith("yes") and info["entries"] == "0"
    assert info["cap"] == "268435456 bytes (256.0 MiB; the default; set " \
                          "SCANOPT_CACHE_MAX_BYTES to change it)"

    publish(0), publish(1), publish(2, source_variant=0)
    fresh.setenv("SCANOPT_CACHE_MAX_BYTES", "1000000")
    info = info_lines(run_cli("cache", "info"))
    assert (info["usable"], info["entries"], info["modules"]) == ("yes", "3", "2")
    assert info["size"] == f"{total_size(cache_dir)} bytes (0.0 MiB)"
    assert info["cap"] == "1000000 bytes (1.0 MiB; SCANOPT_CACHE_MAX_BYTES)"

    size = total_size(cache_dir)
    result = run_cli("cache", "clear")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"removed 3 entries ({size} bytes) from {cache_dir}\n"
    assert not list((cache_dir / "index").iterdir())
    assert not list((cache_dir / "generated").iterdir())
    assert info_lines(run_cli("cache", "info"))["entries"] == "0"


def test_cache_info_says_why_a_directory_is_not_used(tmp_path, fresh):
    path = world_writable(tmp_path, fresh)
    planted = private(path / "index") / f"{'0' * 64}.json"
    planted.write_text("{}")
    fresh.setenv("SCANOPT_CACHE_DIR", str(path))
    info = info_lines(run_cli("cache", "info"))
    assert info["usable"] == f"no: {path} is writable by other users (mode 0777)"
    assert info["entries"] == "1"
    result = run_cli("cache", "clear")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"error: not clearing the cache directory {path}: ")
    assert planted.exists()

    fresh.setenv("SCANOPT_CACHE_DIR", "")
    info = info_lines(run_cli("cache", "info"))
    assert info["location"] == "none"
    assert info["usable"] == "no: the disk cache is off (SCANOPT_CACHE_DIR is empty)"
    result = run_cli("cache", "clear")
    assert result.returncode == 0
    assert result.stdout == "nothing to clear: the disk cache is off (SCANOPT_CACHE_DIR is empty)\n"
