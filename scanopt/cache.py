"""Where generated modules live on disk, and the disk cache of compiled loops.

``SCANOPT_CACHE_DIR`` overrides the location, and the empty string turns the disk cache off;
otherwise it is a private directory (mode 0700) in the user cache directory (platformdirs).
``SCANOPT_CACHE_MAX_BYTES`` caps its size (default 256 MiB). ``SCANOPT_DEBUG_CACHE=1`` prints
one line per lookup to stderr: hit or miss, and why. Plain Python and NumPy: this module never
imports xDSL or ``scanopt.compiler``, so a call served from disk does not either.

The layout under :func:`cache_root`::

    generated/scanopt_generated_<sha256[:24]>.py   generated modules, named by their content
    generated/__pycache__/scanopt_generated_<...>.<function>-<line>.py<XY>[.N].nbi|nbc
                                                   numba's cache of a module's compiled
                                                   functions (backend="numba")
    index/<key>.json                               one entry per key (see below)
    locks/<key[:2]>.lock                           held while compiling and publishing keys
                                                   starting with those two hex digits
    locks/evict.lock                               held while counting the size and evicting
    usage                                          the size: bytes, and when last counted

The directory holds code that gets imported, so it is used only when it is safe
(:func:`check_directory`): it and its three subdirectories must be real directories owned by
this user and writable by no one else, and no directory above it may be writable by everyone
unless it has the sticky bit and belongs to root or this user (as ``/tmp``). A ``SCANOPT_CACHE_DIR`` that is a symbolic
link is resolved once and its target checked; links inside the cache (subdirectories,
entries, modules) are never followed. An unsafe directory is neither read nor written: one
:class:`CacheWarning` per directory and process, and loops are compiled in memory. So are they
when the directory cannot be written (read-only, full disk: one warning, and nothing more is
written there by this process; entries already there are still read). Modules compiled in
memory are written, before their import, to a private directory (``tempfile.mkdtemp``, mode
0700) of this process, removed when it exits: tracebacks and pdb show them as usual.

The key (:func:`disk_key`) is the sha256 of the scanopt, xDSL, NumPy and Python versions (and
of scanopt's own source files, so that a changed compiler never serves old modules), the
backend and options, the step function's source and place (file, qualified name, line), its
closure's names and the call's argument signatures. What the step captures (globals, closure
cells, defaults, helper functions) is not in the key: the entry stores the capture guards, and
a load checks them against the live objects, as the in-memory cache does.

An entry is JSON, version first: the module's file name and sha256, the function to call in it,
the output count, the guards, and a checksum of all that. The module is read once, checked
against the sha256 and executed from those very bytes (no ``.pyc``), so what runs is
what was hashed. A ``backend="numba"`` module's functions are compiled by numba at their first
call and kept by numba itself (``cache=True``) beside the module, in ``generated/__pycache__``:
numba's index checks the module's timestamp and size, numba's version and the CPU, and
recompiles when any differs. Those files are numba's, not hashed here; they are trusted as the
directory is (its safety check covers them), count towards the cap, and go with their module. Every file is written to a temporary file and moved into place with
``os.replace``; compile-and-publish holds a lock (filelock) so that two processes do not
compile the same entry at once. An entry that cannot be read, is truncated or does not match its
hashes is a miss with a :class:`CacheWarning`, then recompiled and rewritten: never a crash.

The cache is bounded: each publish adds its bytes to a running total (``usage``), and when
that exceeds the cap the files are counted and the least recently used entries evicted (their
index file, and their module when no other entry uses it) until they fit; the entry just
published is always kept. Use is recorded explicitly, not by access time (often not kept:
``noatime``): a hit sets the modification time of its index file.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import hashlib
import json
import math
import os
import re
import shutil
import stat
import sys
import tempfile
import time
import types
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np
import platformdirs

from scanopt.compiled import CompiledLoop
from scanopt.frontend.captures import (CapturePlan, code_fingerprint, describe_path, name_of,
                                       source_digest)
from scanopt.signature import AVal, RngVal, StaticVal

_FORMAT = 1  # of the index entries; part of the key
_LOCK_TIMEOUT_S = 600.0
_MODULE_NAME = re.compile(r"scanopt_generated_([0-9a-f]{24})\.py")
_INDEX_NAME = re.compile(r"[0-9a-f]{64}\.json")
# numba's cache files of a generated module's functions (``cache=True`` keeps them here).
_NUMBA_DIR = os.path.join("generated", "__pycache__")
_NUMBA_NAME = re.compile(r"(scanopt_generated_[0-9a-f]{24})\.[\w.-]+\.(nbi|nbc)")
_SUBDIRS = ("generated", "index", "locks")
DEFAULT_MAX_BYTES = 256 * 2 ** 20
# Errors that mean "this directory cannot take more files", not "scanopt has a bug".
_STORAGE_ERRNOS = frozenset(getattr(errno, name) for name in
                            ("ENOSPC", "EDQUOT", "EROFS", "EACCES", "EPERM", "EFBIG")
                            if hasattr(errno, name))
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_STRAY_AGE_S = 3600.0  # a temporary file older than this was left by a writer that died
_RECOUNT_S = 86400.0  # the running total of the cache's size is recounted at least this often


class CacheWarning(UserWarning):
    """A disk cache entry could not be used or written; the loop is compiled instead."""


# ---------------------------------------------------------------------------------------------
# The directory: where it is, and whether it is safe and writable


@dataclass(frozen=True)
class CacheDir:
    """The disk cache directory as this process may use it.

    ``status`` is ``"usable"``, ``"read-only"`` (entries are read, none are written),
    ``"unsafe"`` (neither), ``"off"`` (``SCANOPT_CACHE_DIR`` is empty; ``path`` is None) or
    ``"absent"`` (not created yet; only when checked with ``create=False``). ``why`` says why
    it is not ``"usable"``.
    """

    path: str | None
    status: str
    why: str = ""

    @property
    def readable(self) -> bool:
        return self.status in ("usable", "read-only")

    @property
    def writable(self) -> bool:
        return self.status == "usable"


# Directories found unwritable while writing (full disk...): not written again by this process.
_UNWRITABLE: dict[str, str] = {}
_WARNED: set[tuple[str, str]] = set()


def configured_root() -> str | None:
    """The cache directory as configured (not resolved), or None when the disk cache is off."""
    configured = os.environ.get("SCANOPT_CACHE_DIR")
    if configured == "":
        return None
    return os.path.abspath(configured or platformdirs.user_cache_dir("scanopt"))


def check_directory(*, create: bool = True) -> CacheDir:
    """Where the disk cache is, and what this process may do with it (creating it, mode 0700).

    Runs on every lookup that misses the in-memory cache: a few ``stat`` calls.
    """
    configured = configured_root()
    if configured is None:
        return CacheDir(None, "off", "the disk cache is off (SCANOPT_CACHE_DIR is empty)")
    if create:
        try:
            os.makedirs(configured, mode=0o700, exist_ok=True)
        except OSError as error:
            return CacheDir(configured, "read-only",
                            f"cannot create {configured} ({error.strerror})")
    root = os.path.realpath(configured)
    try:
        st = os.stat(root)
    except FileNotFoundError:
        return CacheDir(root, "absent", f"{root} does not exist yet")
    except OSError as error:
        return CacheDir(root, "unsafe", f"cannot read {root} ({error.strerror})")
    problem = _not_private(root, st) or _exposed_ancestor(root)
    if problem:
        return CacheDir(root, "unsafe", problem)
    cannot_create = ""
    for name in _SUBDIRS:
        path = os.path.join(root, name)
        if create:
            try:
                os.mkdir(path, 0o700)
            except FileExistsError:
                pass
            except OSError as error:
                cannot_create = cannot_create or f"cannot create {path} ({error.strerror})"
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        except OSError as error:
            return CacheDir(root, "unsafe", f"cannot read {path} ({error.strerror})")
        if stat.S_ISLNK(st.st_mode):
            return CacheDir(root, "unsafe", f"{path} is a symbolic link")
        problem = _not_private(path, st)
        if problem:
            return CacheDir(root, "unsafe", problem)
    why = _UNWRITABLE.get(root) or cannot_create
    if not why and not all(os.access(p, os.W_OK | os.X_OK)
                           for p in (root, *(os.path.join(root, n) for n in _SUBDIRS))
                           if os.path.isdir(p)):
        why = f"{root} is read-only"
    return CacheDir(root, "read-only", why) if why else CacheDir(root, "usable")


def _not_private(path: str, st: os.stat_result) -> str:
    """Why ``path`` (``st`` its lstat) may hold code written by someone else ("" if it cannot)."""
    if not stat.S_ISDIR(st.st_mode):
        return f"{path} is not a directory"
    if os.name != "posix":  # mode bits mean nothing there; the user profile is private
        return ""
    if st.st_uid != os.geteuid():
        return f"{path} is owned by another user (uid {st.st_uid}; you are {os.geteuid()})"
    if st.st_mode & 0o022:
        return f"{path} is writable by other users (mode {stat.S_IMODE(st.st_mode):04o})"
    return ""


def _exposed_ancestor(path: str) -> str:
    """A directory above ``path`` in which anyone may replace ``path``: writable by everyone,
    without the sticky bit or owned by another user. (``/tmp`` has the bit and is root's: only
    the owner of a name in it, or root, may rename it.)"""
    if os.name != "posix":
        return ""
    parent = os.path.dirname(path)
    while True:
        with contextlib.suppress(OSError):
            st = os.stat(parent)
            if st.st_mode & 0o002 and not st.st_mode & stat.S_ISVTX:
                return (f"{parent}, above it, is writable by everyone without the sticky bit, so "
                        "anyone may replace the cache directory")
            if st.st_mode & 0o002 and st.st_uid not in (0, os.geteuid()):
                return (f"{parent}, above it, is writable by everyone and owned by another user "
                        f"(uid {st.st_uid}), who may replace the cache directory")
        if os.path.dirname(parent) == parent:
            return ""
        parent = os.path.dirname(parent)


def _announce(directory: CacheDir) -> None:
    """The one warning per directory and process for a directory that is not used fully."""
    if directory.status == "unsafe":
        _warn_once(directory.path, "unsafe",
                   f"the cache directory {directory.path} is not used: {directory.why}. It "
                   "holds code that gets imported, so it must be yours and writable only by "
                   "you. Loops are compiled in memory; make it private (chmod 700) or set "
                   "SCANOPT_CACHE_DIR to a private directory (the empty string turns the disk "
                   "cache off)")
    elif directory.status == "read-only":
        _warn_once(directory.path, "write",
                   f"cannot write to the cache directory {directory.path} ({directory.why}); "
                   "loops are compiled in memory and not stored by this process")


def _mark_unwritable(root: str, error: OSError) -> None:
    _UNWRITABLE.setdefault(root, f"writing failed: {error.strerror or error}")
    _announce(CacheDir(root, "read-only", _UNWRITABLE[root]))


def _is_storage_error(error: BaseException, root: str) -> bool:
    """``error`` is a failure to write into ``root`` (full, read-only...), not a bug."""
    if not isinstance(error, OSError) or error.errno not in _STORAGE_ERRNOS:
        return False
    name = error.filename
    return name is None or os.path.abspath(os.fsdecode(name)).startswith(root + os.sep)


def cache_root() -> str | None:
    """The disk cache directory (created, symlinks resolved); None when the disk cache is off."""
    return check_directory().path


def generated_dir() -> str:
    """Where a freshly compiled module is written before its import.

    The cache's ``generated/`` when it is usable; otherwise a private directory of this process.
    """
    directory = check_directory()
    if directory.writable:
        return os.path.join(directory.path, "generated")
    _announce(directory)
    return _private_dir()


_PRIVATE: tuple[int, str] | None = None  # (pid, path): a forked child makes its own


def _private_dir() -> str:
    """A directory only this process writes to (mode 0700), removed when the process exits."""
    global _PRIVATE
    pid = os.getpid()
    if _PRIVATE is None or _PRIVATE[0] != pid or not os.path.isdir(_PRIVATE[1]):
        _PRIVATE = (pid, tempfile.mkdtemp(prefix="scanopt-"))
        atexit.register(_remove_private, *_PRIVATE)
    return _PRIVATE[1]


def _remove_private(pid: int, path: str) -> None:
    if os.getpid() == pid:
        shutil.rmtree(path, ignore_errors=True)


def module_file_name(source: str) -> str:
    """The file name of a generated module: ``scanopt_generated_<sha256[:24]>.py``."""
    return f"scanopt_generated_{_sha256(source.encode('utf-8'))[:24]}.py"


# ---------------------------------------------------------------------------------------------
# The lookup the API makes on an in-memory miss


def compiled_for(fn, call_key: tuple, options: dict,
                 compile: Callable[[], CompiledLoop]) -> tuple[CompiledLoop, bool]:
    """The compiled loop for this call: from disk when an entry matches, else ``compile()``.

    Returns ``(compiled, from_disk)``. A loop from disk has a plan pinned to ``fn``'s live
    objects, so ``compiled.plan.fetch(fn)`` succeeds. A fresh compilation is published for the
    next process, under the compile lock, when the directory is usable. Errors raised by
    ``compile`` propagate, except a failure to write into the cache directory.
    """
    directory = check_directory()
    try:
        key = disk_key(fn, call_key, options)
    except Exception as error:  # a bug here must not break the call
        _warn(f"cannot compute the disk cache key of {_describe_fn(fn)}: {error!r}")
        key = None
    if key is None:
        why = "not cacheable on disk (not a Python function with a source file)"
        compiled = _compile(fn, key, why, compile, directory)
        _log(fn, key, f"miss: {why}; compiled")
        return compiled, False
    if not directory.readable:
        _announce(directory)
        why = directory.why if directory.status == "off" else \
            f"the cache directory is not used ({directory.why})"
        compiled = _compile(fn, key, why, compile, directory)
        _log(fn, key, f"miss: {why}; compiled, not stored")
        return compiled, False

    root = directory.path
    raw = _read_index(root, key)
    compiled, why = _load_for(root, key, fn, raw)
    if compiled is not None:
        _touch(_index_path(root, key))
        _log(fn, key, "hit: disk")
        return compiled, True
    lock = _acquire(root, key) if directory.writable else None
    try:
        if lock is not None:
            # Another process may have published this entry while we waited for the lock.
            again = _read_index(root, key)
            if again is not None and again != raw:
                compiled, why = _load_for(root, key, fn, again)
                if compiled is not None:
                    _touch(_index_path(root, key))
                    _log(fn, key, "hit: disk (published while waiting for the lock)")
                    return compiled, True
        compiled = _compile(fn, key, why, compile, directory)
        if lock is None:
            outcome, added = "not stored (" + (directory.why or "no lock") + ")", 0
        else:
            outcome, added = _store(root, key, fn, compiled)
    finally:
        if lock is not None:
            lock.release()
    if added:
        outcome += _account(root, key, added)
    _log(fn, key, f"miss: {why}; compiled, {outcome}")
    return compiled, False


def _compile(fn, key: str | None, why: str, compile: Callable[[], CompiledLoop],
             directory: CacheDir) -> CompiledLoop:
    """``compile()``; if it fails to write its module into the cache directory (full disk,
    read-only), the directory is marked unwritable (one warning) and it runs once more, writing
    into the private directory instead."""
    try:
        try:
            return compile()
        except OSError as error:
            if not (directory.writable and _is_storage_error(error, directory.path)):
                raise
            _mark_unwritable(directory.path, error)
        return compile()  # generated_dir() is now the private directory
    except BaseException as error:
        _log(fn, key, f"miss: {why}; compiling raised {type(error).__name__}")
        raise


def log_memory_hit(fn) -> None:
    """The ``SCANOPT_DEBUG_CACHE`` line for a call served from the in-memory cache."""
    _log(fn, None, "hit: memory")


def _load_for(root: str, key: str, fn, raw: bytes | None) -> tuple[CompiledLoop | None, str]:
    """A loaded entry whose guards pass for ``fn`` (pinned to its live objects), or why not."""
    if raw is None:
        return None, "no entry"
    try:
        compiled, why = _load(root, key, fn, raw)
    except Exception as error:  # a bug here must not break the call
        _warn(f"cannot load disk cache entry {_index_path(root, key)}: {error!r}; recompiling")
        return None, "entry unusable"
    if compiled is None:
        return None, why
    mismatch = compiled.plan.first_mismatch(fn)
    if mismatch is not None:
        return None, f"captured `{describe_path(mismatch)}` changed"
    plan = compiled.plan.pinned(fn)
    return CompiledLoop(compiled.run, compiled.source, plan, compiled.n_outputs, compiled.ir,
                        compiled.last_without_init, compiled.remarks,
                        compiled.output_tree), ""


# ---------------------------------------------------------------------------------------------
# The key


def disk_key(fn, call_key: tuple, options: dict) -> str | None:
    """The sha256 naming ``fn``'s entry for this call, or None when it cannot be cached on disk.

    ``options`` holds the backend and compile options (``exact_random``, ``optimize``...).
    Only plain Python functions whose source can be read have a key.
    """
    if not isinstance(fn, types.FunctionType):
        return None
    code = fn.__code__
    fingerprint = code_fingerprint(code)
    if fingerprint is None:
        return None
    try:
        parts = {
            "format": _FORMAT,
            "versions": _versions(),
            "options": {str(k): _encode_key_part(v) for k, v in options.items()},
            "step": fingerprint,
            "freevars": list(code.co_freevars),
            "call": _encode_key_part(call_key),
        }
    except _NotCacheable:
        return None
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"))
    return _sha256(text.encode("utf-8"))


_VERSIONS: dict[str, str] | None = None


def _versions() -> dict[str, str]:
    global _VERSIONS
    if _VERSIONS is None:
        import scanopt

        _VERSIONS = {"scanopt": scanopt.__version__, "scanopt_code": _package_digest(),
                     "xdsl": _installed_version("xdsl"), "numpy": np.__version__,
                     "python": sys.implementation.cache_tag or sys.version}
    return _VERSIONS


def _package_digest() -> str:
    """The sha256 of scanopt's own ``.py`` files.

    The version string alone would serve modules generated by an older compiler to anyone who
    changes scanopt without bumping it (every developer, every editable install).
    """
    package = os.path.dirname(os.path.abspath(__file__))
    digest = hashlib.sha256()
    for directory, subdirs, files in os.walk(package):
        subdirs[:] = sorted(d for d in subdirs if d != "__pycache__")
        for name in sorted(f for f in files if f.endswith(".py")):
            path = os.path.join(directory, name)
            digest.update(os.path.relpath(path, package).encode("utf-8") + b"\0")
            with open(path, "rb") as f:
                digest.update(hashlib.sha256(f.read()).digest())
    return digest.hexdigest()


def _installed_version(name: str) -> str:
    """The installed version of ``name``, read without importing it.

    The name of the ``<name>-<version>.dist-info`` directory beside the package gives it
    (importing ``importlib.metadata`` alone costs ~15 ms); otherwise ``importlib.metadata``.
    """
    import importlib.util

    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        return "none"
    if spec.origin:
        site = os.path.dirname(os.path.dirname(spec.origin))
        pattern = re.compile(rf"{re.escape(name)}-([^-]+)\.dist-info", re.IGNORECASE)
        with contextlib.suppress(OSError):
            found = [m.group(1) for n in os.listdir(site) if (m := pattern.fullmatch(n))]
            if len(found) == 1:
                return found[0]
    import importlib.metadata

    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


class _NotCacheable(Exception):
    """Something in an entry has no stable text form; the message says what."""


def _encode_key_part(value: Any) -> Any:
    """A JSON form of the call key and options: AVal, RngVal, None, bool, int, str, tuples."""
    if isinstance(value, AVal):
        return ["aval", value.dtype.str, list(value.shape), bool(value.weak)]
    if isinstance(value, RngVal):
        return ["rng"]
    if isinstance(value, StaticVal):  # a non-sequence the loop is compiled for the value of
        return ["static", _encode_value(value.value, "a non-sequence")]
    if value is None or type(value) in (bool, int, str):
        return value
    if isinstance(value, (tuple, list)):
        return ["seq", [_encode_key_part(v) for v in value]]
    raise _NotCacheable(f"{type(value).__name__} in the call key")


# ---------------------------------------------------------------------------------------------
# Store


def store(key: str, fn, compiled: CompiledLoop) -> str:
    """Publish ``compiled`` as the entry ``key``: the module first, then the index entry.

    Returns what happened, for the log: ``"stored"`` or ``"not stored (why)"``. A capture the
    disk cache cannot name (an arbitrary object) is not stored; a write that fails warns, once
    per directory for a full or read-only one. Nothing is evicted (see :func:`evict`).
    """
    directory = check_directory()
    if not directory.writable:
        _announce(directory)
        return f"not stored ({directory.why})"
    return _store(directory.path, key, fn, compiled)[0]


def _store(root: str, key: str, fn, compiled: CompiledLoop) -> tuple[str, int]:
    """What :func:`store` does, in ``root``; also returns the bytes written (or rewritten)."""
    if root in _UNWRITABLE:  # found full or read-only since the directory was checked
        return f"not stored ({_UNWRITABLE[root]})", 0
    try:
        entry = _entry(key, fn, compiled)
    except _NotCacheable as error:
        return f"not stored ({error})", 0
    except Exception as error:  # a bug here must not break the call
        _warn(f"cannot serialise disk cache entry {key[:12]}: {error!r}")
        return "not stored (serialisation failed)", 0
    module_path = os.path.join(root, "generated", entry["module"])
    data, index = compiled.source.encode("utf-8"), _dump_entry(entry)
    try:
        if _read_bytes(module_path) != data:
            _write_atomic(module_path, data)
        _write_atomic(_index_path(root, key), index)
    except OSError as error:
        if _is_storage_error(error, root):
            _mark_unwritable(root, error)
        else:
            _warn(f"cannot write disk cache entry {key[:12]}: {error}")
        return "not stored (write failed)", 0
    return "stored", len(data) + len(index)


def _entry(key: str, fn, compiled: CompiledLoop) -> dict:
    guards = [{"path": _encode_path(path), "expect": _encode_guard(path, expected)}
              for path, expected in compiled.plan.guards.items()]
    return {
        "format": _FORMAT,
        "scanopt": _versions()["scanopt"],
        "key": key,
        "step": f"{fn.__module__}.{fn.__qualname__}",
        "module": module_file_name(compiled.source),
        "sha256": _sha256(compiled.source.encode("utf-8")),
        "function": compiled.run.__name__,
        "n_outputs": int(compiled.n_outputs),
        "last_without_init": bool(compiled.last_without_init),
        "remarks": [str(r) for r in compiled.remarks],
        "output_tree": compiled.output_tree,
        "guards": guards,
        "inputs": [_encode_path(path) for path in compiled.plan.inputs],
    }


def _dump_entry(entry: dict) -> bytes:
    entry = dict(entry)
    entry.pop("checksum", None)
    entry["checksum"] = _checksum(entry)
    fields = []  # one field a line, one guard a line: readable, and diffs well
    for name, value in entry.items():
        if name == "guards" and value:
            guards = ",\n".join(f"  {json.dumps(g)}" for g in value)
            fields.append(f' "guards": [\n{guards}\n ]')
        else:
            fields.append(f" {json.dumps(name)}: {json.dumps(value)}")
    return ("{\n" + ",\n".join(fields) + "\n}\n").encode("utf-8")


def _checksum(entry: dict) -> str:
    body = {k: v for k, v in entry.items() if k != "checksum"}
    return _sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8"))


def _encode_path(path) -> list:
    out = []
    for kind, key in path:
        if not isinstance(kind, str) or type(key) not in (str, int):
            raise _NotCacheable(f"capture path {path!r} has no JSON form")
        out.append([kind, key])
    return out


_TYPES: dict[str, type] = {"NoneType": type(None), "bool": bool, "int": int, "float": float,
                           "complex": complex, "str": str, "slice": slice,
                           "ellipsis": type(Ellipsis), "tuple": tuple, "list": list}
_TYPE_NAMES = {t: name for name, t in _TYPES.items()}


def _encode_guard(path, expected) -> list:
    if isinstance(expected, AVal):
        return ["aval", expected.dtype.str, list(expected.shape), bool(expected.weak)]
    if isinstance(expected, RngVal):
        return ["rng"]
    kind = expected[0]
    where = f"`{describe_path(path)}`"
    if kind == "const":
        _, t, value = expected
        if isinstance(value, np.dtype):
            if type(value) is not t or np.dtype(value.str) != value or \
                    type(np.dtype(value.str)) is not t:
                raise _NotCacheable(f"{where} is a dtype without a stable text form")
            return ["const", "dtype", value.str]
        if t not in _TYPE_NAMES:
            raise _NotCacheable(f"{where} is a constant of type {t.__name__}")
        return ["const", _TYPE_NAMES[t], _encode_value(value, where)]
    if kind == "len":
        _, t, n = expected
        if t not in (tuple, list):
            raise _NotCacheable(f"{where} is a {t.__name__}")
        return ["len", _TYPE_NAMES[t], int(n)]
    if kind == "keys":
        _, t, keys = expected
        if t is not dict or not all(type(k) in (str, int) for k in keys):
            raise _NotCacheable(f"{where} is a dict with keys that are not strings or ints")
        return ["keys", [_encode_value(k, where) for k in keys]]
    if kind == "code":
        digest = source_digest(expected[1])
        if digest is None:
            raise _NotCacheable(f"the source of helper {where} cannot be read")
        return ["source", digest]
    if kind == "is":
        name = name_of(expected[1])
        if name is None:
            raise _NotCacheable(f"{where} is a {type(expected[1]).__name__} object, which the "
                                "disk cache cannot find again by name")
        return ["named", name]
    raise _NotCacheable(f"{where} has a guard of kind {kind!r}")


def _encode_value(value: Any, where: str) -> list:
    t = type(value)
    if value is None:
        return ["none"]
    if value is Ellipsis:
        return ["ellipsis"]
    if t is bool:
        return ["bool", value]
    if t is int:
        return ["int", str(value)]
    if t is float:
        return ["float", value.hex()]
    if t is complex:
        return ["complex", value.real.hex(), value.imag.hex()]
    if t is str:
        return ["str", value]
    if t is slice:
        return ["slice", [_encode_value(v, where) for v in (value.start, value.stop, value.step)]]
    if t is tuple:
        return ["tuple", [_encode_value(v, where) for v in value]]
    raise _NotCacheable(f"{where} holds a {t.__name__}")


# ---------------------------------------------------------------------------------------------
# Load


def load(key: str, fn) -> CompiledLoop | None:
    """The entry ``key`` with its module imported, or None (a miss; a warning if it is damaged).

    The plan's guards name helpers and modules instead of holding them; checking them against
    ``fn`` (``plan.fetch(fn) is not None``) is left to the caller.
    """
    directory = check_directory()
    if not directory.readable:
        return None
    raw = _read_index(directory.path, key)
    if raw is None:
        return None
    try:
        return _load(directory.path, key, fn, raw)[0]
    except Exception as error:
        _warn(f"cannot load disk cache entry {_index_path(directory.path, key)}: {error!r}; "
              "recompiling")
        return None


def _load(root: str, key: str, fn, raw: bytes) -> tuple[CompiledLoop | None, str]:
    where = _index_path(root, key)
    try:
        entry = json.loads(raw.decode("utf-8"))
        if not isinstance(entry, dict):
            raise ValueError("not a JSON object")
    except ValueError as error:
        _warn(f"disk cache entry {where} is unreadable or truncated ({error}); recompiling")
        return None, "entry unreadable"
    if entry.get("format") != _FORMAT:
        return None, f"entry format {entry.get('format')!r}"
    if entry.get("checksum") != _checksum(entry) or entry.get("key") != key:
        _warn(f"disk cache entry {where} does not match its checksum (modified or damaged); "
              "recompiling")
        return None, "entry checksum mismatch"
    try:
        plan = CapturePlan()
        for guard in entry["guards"]:
            plan.guards[_decode_path(guard["path"])] = _decode_guard(guard["expect"])
        plan.inputs = [_decode_path(path) for path in entry["inputs"]]
        module_name, digest = entry["module"], entry["sha256"]
        match = _MODULE_NAME.fullmatch(module_name)
        if match is None or not digest.startswith(match.group(1)):
            raise ValueError(f"module name {module_name!r} does not match its sha256")
        fn_name, n_outputs = str(entry["function"]), int(entry["n_outputs"])
        last_without_init = bool(entry["last_without_init"])
        remarks = tuple(str(r) for r in entry["remarks"])
        output_tree = _tuples(entry.get("output_tree"))
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as error:
        _warn(f"disk cache entry {where} is malformed ({error!r}); recompiling")
        return None, "entry malformed"

    path = os.path.join(root, "generated", module_name)
    data = _read_bytes(path)
    if data is None:
        if not os.path.lexists(where):  # evicted by another process since it was read
            return None, "entry evicted"
        _warn(f"the module of disk cache entry {where} is missing or unreadable ({path}); "
              "recompiling")
        return None, "module missing"
    if _sha256(data) != digest:
        _warn(f"generated module {path} does not match the sha256 in its cache entry "
              "(modified or damaged); recompiling")
        return None, "module hash mismatch"
    try:
        run = getattr(_exec_module(module_name[:-3], path, data), fn_name)
    except Exception as error:
        _warn(f"cannot import generated module {path}: {error!r}; recompiling")
        return None, "module import failed"
    return CompiledLoop(run, data.decode("utf-8"), plan, n_outputs, "", last_without_init,
                        remarks, output_tree), ""


def _tuples(data):
    """A pytree structure read back from JSON: its lists are tuples again."""
    return tuple(_tuples(v) for v in data) if isinstance(data, list) else data


def _exec_module(module_name: str, path: str, data: bytes) -> types.ModuleType:
    """Import the verified bytes of a generated module as the module at ``path``.

    Executed from ``data`` itself (not re-read, no ``.pyc``), so what runs is what was hashed;
    the code's file name is the real file, so tracebacks and pdb show it.
    """
    code = compile(data, path, "exec", dont_inherit=True)
    module = types.ModuleType(module_name)
    module.__file__ = path
    sys.modules[module_name] = module
    exec(code, module.__dict__)
    return module


def _decode_path(path) -> tuple:
    return tuple((str(kind), key if type(key) is int else str(key)) for kind, key in path)


def _decode_guard(data: list) -> Any:
    kind = data[0]
    if kind == "aval":
        return AVal(np.dtype(data[1]), tuple(None if d is None else int(d) for d in data[2]),
                    bool(data[3]))
    if kind == "rng":
        return RngVal()
    if kind == "const":
        if data[1] == "dtype":
            value = np.dtype(data[2])
            return ("const", type(value), value)
        return ("const", _TYPES[data[1]], _decode_value(data[2]))
    if kind == "len":
        return ("len", _TYPES[data[1]], int(data[2]))
    if kind == "keys":
        return ("keys", dict, tuple(_decode_value(k) for k in data[1]))
    if kind in ("source", "named"):
        return (kind, str(data[1]))
    raise ValueError(f"unknown guard kind {kind!r}")


def _decode_value(data: list) -> Any:
    tag = data[0]
    if tag == "none":
        return None
    if tag == "ellipsis":
        return Ellipsis
    if tag == "bool":
        return bool(data[1])
    if tag == "int":
        return int(data[1])
    if tag == "float":
        return float.fromhex(data[1])
    if tag == "complex":
        return complex(float.fromhex(data[1]), float.fromhex(data[2]))
    if tag == "str":
        return str(data[1])
    if tag == "slice":
        return slice(*(_decode_value(v) for v in data[1]))
    if tag == "tuple":
        return tuple(_decode_value(v) for v in data[1])
    raise ValueError(f"unknown constant tag {tag!r}")


# ---------------------------------------------------------------------------------------------
# Size: the cap, eviction, and what `scanopt cache info` and `scanopt cache clear` do


def max_bytes() -> int:
    """The size cap: ``SCANOPT_CACHE_MAX_BYTES`` (a number of bytes), or 256 MiB."""
    text = os.environ.get("SCANOPT_CACHE_MAX_BYTES", "").strip()
    if not text:
        return DEFAULT_MAX_BYTES
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        _warn_once(text, "max-bytes", f"SCANOPT_CACHE_MAX_BYTES={text!r} is not a number of "
                                      f"bytes; the default cap, {DEFAULT_MAX_BYTES}, is used")
        return DEFAULT_MAX_BYTES
    return value


@dataclass
class _File:
    path: str
    size: int
    mtime: float  # of an index entry: when it was last published or hit


@dataclass
class _Listing:
    """The files of a cache directory: index entries, modules, and anything else (strays)."""

    entries: list[_File]
    modules: list[_File]
    strays: list[_File]
    compiled: list[_File]  # numba's cache files, in generated/__pycache__

    @property
    def size(self) -> int:
        return sum(f.size for f in (*self.entries, *self.modules, *self.strays, *self.compiled))


def _listing(root: str) -> _Listing:
    listing = _Listing([], [], [], [])
    for subdir, pattern, files in (("index", _INDEX_NAME, listing.entries),
                                   ("generated", _MODULE_NAME, listing.modules),
                                   (_NUMBA_DIR, _NUMBA_NAME, listing.compiled)):
        if os.path.islink(os.path.join(root, subdir)):
            continue  # links inside the cache are never followed
        with contextlib.suppress(OSError), os.scandir(os.path.join(root, subdir)) as it:
            for item in it:
                with contextlib.suppress(OSError):
                    st = item.stat(follow_symlinks=False)
                    if stat.S_ISDIR(st.st_mode):
                        continue
                    regular = stat.S_ISREG(st.st_mode) and pattern.fullmatch(item.name)
                    (files if regular else listing.strays).append(
                        _File(item.path, st.st_size, st.st_mtime))
    return listing


def _compiled_of(listing: _Listing) -> dict[str, list[_File]]:
    """Module file name → numba's cache files of its functions."""
    compiled: dict[str, list[_File]] = {}
    for item in listing.compiled:
        match = _NUMBA_NAME.fullmatch(os.path.basename(item.path))
        assert match is not None
        compiled.setdefault(match.group(1) + ".py", []).append(item)
    return compiled


def _module_of(entry: _File) -> str | None:
    """The module file an index entry uses (None if it cannot be read)."""
    try:
        module = json.loads(_read_file(entry.path).decode("utf-8")).get("module")
    except (OSError, ValueError, AttributeError):
        return None
    return module if isinstance(module, str) else None


def _account(root: str, key: str, added: int) -> str:
    """Add an entry just published (``added`` bytes) to the cache's running total, and evict
    when it exceeds the cap.

    The total lives in ``<root>/usage`` (bytes, and when they were last counted), updated under
    ``locks/evict.lock``: a publish below the cap costs a lock and a few bytes read and written,
    not a listing of the cache. The files are counted again, and entries evicted
    (:func:`_evict`), when the total would exceed the cap or was counted more than a day ago
    (so that files the total missed, such as modules of loops that were not stored, count in
    the end). Returns ``""`` or ``"; evicted N entries"`` for the log.
    """
    import filelock

    lock = filelock.FileLock(os.path.join(root, "locks", "evict.lock"), timeout=10)
    try:
        lock.acquire()
    except (filelock.Timeout, OSError):
        return ""
    try:
        usage = os.path.join(root, "usage")
        try:
            recorded, counted = (float(n) for n in _read_file(usage).split())
        except (OSError, ValueError):
            recorded, counted = math.inf, 0.0
        now = time.time()
        if recorded + added <= max_bytes() and now - counted < _RECOUNT_S:
            _write_usage(usage, recorded + added, counted)
            return ""
        total, evicted = _evict(root, keep=key)
        _write_usage(usage, total, now)
    finally:
        lock.release()
    return f"; evicted {evicted} entr{'y' if evicted == 1 else 'ies'}" if evicted else ""


def _write_usage(path: str, total: float, counted: float) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _NOFOLLOW, 0o600)
        with open(fd, "w") as f:
            f.write(f"{int(total)} {counted:.0f}\n")


def _evict(root: str, keep: str) -> tuple[int, int]:
    """Evict least recently used entries until the cache fits its cap, keeping ``keep``.

    Returns the bytes left and the number of entries evicted. An entry's module goes with it
    when no other entry uses it, and numba's cache files of the module with the module. Modules
    no entry uses (left by compilations that were not stored), numba files without their module,
    and temporaries older than an hour are evicted too, in the same order.
    """
    cap = max_bytes()
    listing = _listing(root)
    total = listing.size
    if total <= cap:
        return total, 0
    module_of = {entry.path: _module_of(entry) for entry in listing.entries}
    users: dict[str | None, int] = {}
    for module in module_of.values():
        users[module] = users.get(module, 0) + 1
    modules = {os.path.basename(m.path): m for m in listing.modules}
    compiled = _compiled_of(listing)
    old = time.time() - _STRAY_AGE_S
    candidates = sorted([*listing.entries,
                         *(m for name, m in modules.items() if not users.get(name)),
                         *(f for name, files in compiled.items() if name not in modules
                           for f in files),
                         *(f for f in listing.strays if f.mtime < old)],
                        key=lambda f: f.mtime)

    def remove_module(name: str) -> int:
        """Bytes freed by removing module ``name`` and numba's files of it."""
        freed = modules[name].size if _unlink(modules[name].path) else 0
        return freed + sum(f.size for f in compiled.get(name, ()) if _unlink(f.path))

    kept, evicted = _index_path(root, keep), 0
    for item in candidates:
        if total <= cap:
            break
        if item.path == kept:
            continue
        name = os.path.basename(item.path)
        if item in listing.modules:
            total -= remove_module(name)
            continue
        if not _unlink(item.path):
            continue
        total -= item.size
        if item.path in module_of:
            evicted += 1
            module = module_of[item.path]
            users[module] -= 1
            if module in modules and not users[module]:
                total -= remove_module(module)
    return total, evicted


def _unlink(path: str) -> bool:
    """Remove ``path``; False if it was already gone or cannot be removed."""
    try:
        os.unlink(path)
    except OSError:
        return False
    return True


@dataclass(frozen=True)
class CacheInfo:
    """What ``scanopt cache info`` shows."""

    directory: CacheDir
    entries: int
    modules: int
    size: int  # bytes of index entries, modules and temporaries
    max_bytes: int


def info() -> CacheInfo:
    """The cache directory, its state, its contents and its cap (creates nothing)."""
    directory = check_directory(create=False)
    if directory.path is None or directory.status == "absent":
        return CacheInfo(directory, 0, 0, 0, max_bytes())
    listing = _listing(directory.path)
    return CacheInfo(directory, len(listing.entries), len(listing.modules), listing.size,
                     max_bytes())


def clear() -> tuple[int, int]:
    """Remove every index entry, then every module and temporary file, from a directory that
    is safe to use; returns (entries removed, bytes freed). Lock files stay (there are at most
    257, all empty): another process may be waiting on one."""
    directory = check_directory(create=False)
    if not directory.readable:
        return 0, 0
    listing = _listing(directory.path)
    _unlink(os.path.join(directory.path, "usage"))  # recounted at the next publish
    entries = freed = 0
    for item in (*listing.entries, *listing.modules, *listing.strays, *listing.compiled):
        if _unlink(item.path):
            freed += item.size
            entries += item in listing.entries
    return entries, freed


# ---------------------------------------------------------------------------------------------
# Files, lock, checks, log


@contextlib.contextmanager
def compile_lock(key: str, timeout: float = _LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold the compile lock of ``key`` (filelock) while compiling and publishing it.

    Raises ``filelock.Timeout`` after ``timeout`` seconds, ``OSError`` if the lock file cannot
    be created.
    """
    lock = _lock_for(cache_root(), key, timeout)
    with lock:
        yield


def _lock_for(root: str, key: str, timeout: float):
    """``locks/<key[:2]>.lock``: keys share 256 lock files, so that their number is bounded
    (removing a lock file that another process may be waiting on would break the lock)."""
    import filelock  # only a compilation needs it

    return filelock.FileLock(os.path.join(root, "locks", f"{key[:2]}.lock"), timeout=timeout)


def _acquire(root: str, key: str):
    """The acquired compile lock for ``key``, or None (with a warning) if it cannot be had."""
    import filelock

    lock = _lock_for(root, key, _LOCK_TIMEOUT_S)
    try:
        lock.acquire()
    except filelock.Timeout:
        _warn(f"waited {_LOCK_TIMEOUT_S:.0f} s for the compile lock {lock.lock_file}; "
              "compiling without publishing")
        return None
    except OSError as error:
        if _is_storage_error(error, root):
            _mark_unwritable(root, error)
        else:
            _warn(f"cannot take the compile lock {lock.lock_file}: {error}; compiling without "
                  "publishing")
        return None
    return lock


def _index_path(root: str, key: str) -> str:
    return os.path.join(root, "index", f"{key}.json")


def _read_index(root: str, key: str) -> bytes | None:
    path = _index_path(root, key)
    try:
        return _read_file(path)
    except FileNotFoundError:
        return None
    except OSError as error:
        why = "it is a symbolic link" if error.errno == errno.ELOOP else error.strerror
        _warn(f"cannot read disk cache entry {path} ({why}); recompiling")
        return None


def _read_file(path: str) -> bytes:
    """The bytes of ``path``, never through a symbolic link (``OSError`` ELOOP for one)."""
    with open(os.open(path, os.O_RDONLY | _NOFOLLOW), "rb") as f:
        return f.read()


def _read_bytes(path: str) -> bytes | None:
    try:
        return _read_file(path)
    except OSError:
        return None


def _write_atomic(path: str, data: bytes) -> None:
    """Write ``data`` to a private temporary file beside ``path``, then ``os.replace`` it there
    (which replaces a symbolic link at ``path`` rather than following it)."""
    directory, name = os.path.split(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
    try:
        with open(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _touch(path: str) -> None:
    """Record a use of an index entry (its mtime orders eviction); best effort."""
    with contextlib.suppress(OSError):
        os.utime(path)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _warn(message: str) -> None:
    """Warn at the user's line that called into scanopt."""
    package = os.path.dirname(os.path.abspath(__file__))
    frame, level = sys._getframe(0), 1
    while frame.f_back is not None and \
            os.path.abspath(frame.f_code.co_filename).startswith(package + os.sep):
        frame, level = frame.f_back, level + 1
    warnings.warn(f"scanopt cache: {message}", CacheWarning, stacklevel=level)


def _warn_once(directory: str | None, kind: str, message: str) -> None:
    if (str(directory), kind) not in _WARNED:
        _WARNED.add((str(directory), kind))
        _warn(message)


def _describe_fn(fn) -> str:
    code = getattr(fn, "__code__", None)
    name = getattr(fn, "__qualname__", None) or repr(fn)
    if code is None:
        return name
    return f"{name} ({os.path.basename(code.co_filename)}:{code.co_firstlineno})"


def _log(fn, key: str | None, message: str) -> None:
    if os.environ.get("SCANOPT_DEBUG_CACHE") == "1":
        entry = f" [{key[:12]}]" if key else ""
        print(f"scanopt cache: {_describe_fn(fn)}{entry} {message}", file=sys.stderr, flush=True)
